/* Benchmark guest.
 * spin(n): a compute loop with a load and a store to the stack per iteration, no heap access.
 * sweep_at(a, n): n reads and n writes of the 256-word heap array a.
 * sweep(n): sweep_at on a block from malloc. */
#include "heap.h"

__attribute__((noinline)) unsigned long spin(unsigned long n) {
    volatile unsigned long acc = 1; /* on the stack */
    for (unsigned long i = 0; i < n; i++) acc = acc * 6364136223846793005UL + i;
    return acc;
}

__attribute__((noinline)) unsigned long sweep_at(unsigned long *a, unsigned long n) {
    unsigned long x = 0;
    for (unsigned long i = 0; i < n; i++) {
        volatile unsigned long *slot = &a[i & 255];
        x += *slot;
        *slot = x + i;
    }
    return x;
}

__attribute__((noinline)) unsigned long sweep(unsigned long n) {
    unsigned long *a = malloc(256 * sizeof(unsigned long));
    if (a == NULL) return 0;
    unsigned long x = sweep_at(a, n);
    free(a);
    return x;
}

long main(void) { return (long)sweep(1000) + (long)spin(1000); }
