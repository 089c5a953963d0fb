/* A string duplicated into a buffer one byte too small: the terminating NUL is written one
 * byte past the end of the block. */
#include "heap.h"

static size_t length(const char *s) {
    size_t n = 0;
    while (s[n] != 0) n++;
    return n;
}

static char *dup(const char *s) {
    size_t n = length(s);
    char *copy = malloc(n); /* forgot the + 1 for the NUL */
    if (copy == NULL) return NULL;
    for (size_t i = 0; i <= n; i++) copy[i] = s[i];
    return copy;
}

long main(void) {
    char *copy = dup("heapscope");
    if (copy == NULL) return -1;
    long n = (long)length(copy);
    free(copy);
    return n;
}
