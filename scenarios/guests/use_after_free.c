/* A block read and written after it was freed. */
#include "heap.h"

long main(void) {
    long *p = malloc(4 * sizeof(long));
    if (p == NULL) return -1;
    p[0] = 42;
    free(p);
    long seen = p[0]; /* read after free */
    p[1] = 7;         /* write after free */
    return seen;
}
