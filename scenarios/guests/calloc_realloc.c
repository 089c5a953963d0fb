/* A zeroed array from calloc grown with realloc as it fills: no findings. */
#include "heap.h"

long main(void) {
    size_t capacity = 4;
    long *v = calloc(capacity, sizeof(long));
    if (v == NULL) return -1;
    long zeros = 0;
    for (size_t i = 0; i < capacity; i++) zeros += (v[i] == 0);
    for (size_t i = 0; i < 40; i++) {
        if (i == capacity) {
            capacity *= 2;
            long *grown = realloc(v, capacity * sizeof(long));
            if (grown == NULL) return -1;
            v = grown;
        }
        v[i] = (long)i;
    }
    long sum = 0;
    for (size_t i = 0; i < 40; i++) sum += v[i];
    free(v);
    return sum + zeros; /* 780 + 4 */
}
