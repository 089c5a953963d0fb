/* A block freed twice. */
#include "heap.h"

long main(void) {
    char *p = malloc(24);
    if (p == NULL) return -1;
    p[0] = 1;
    free(p);
    free(p); /* double free */
    return 0;
}
