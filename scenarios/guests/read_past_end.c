/* An off-by-one loop that reads one element past the end of an array. */
#include "heap.h"

long main(void) {
    int *a = malloc(8 * sizeof(int));
    if (a == NULL) return -1;
    for (int i = 0; i < 8; i++) a[i] = i + 1;
    long sum = 0;
    for (int i = 0; i <= 8; i++) sum += a[i]; /* a[8] is past the end */
    free(a);
    return sum;
}
