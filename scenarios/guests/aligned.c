/* posix_memalign and aligned_alloc, each block filled and checked: no findings where the
 * allocator can align (the others refuse, and the program says so). */
#include "heap.h"

long main(void) {
    void *p = NULL;
    if (posix_memalign(&p, 64, 40) != 0) return -1;
    unsigned char *a = p;
    unsigned char *b = aligned_alloc(32, 96);
    if (b == NULL) return -2;
    long misaligned = ((unsigned long)a % 64 != 0) + ((unsigned long)b % 32 != 0);
    for (int i = 0; i < 40; i++) a[i] = (unsigned char)i;
    for (int i = 0; i < 96; i++) b[i] = (unsigned char)(2 * i);
    long sum = 0;
    for (int i = 0; i < 40; i++) sum += a[i];
    for (int i = 0; i < 96; i++) sum += b[i];
    free(a);
    free(b);
    return sum + 1000 * misaligned; /* 780 + 9120 */
}
