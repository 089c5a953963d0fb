/* An overflow that runs over the end of one block into the next one's header, then frees both:
 * allocators that keep headers between blocks find the damage (freeing-bump poisons itself,
 * segregated-fit sees a bad magic, dlmalloc's invariants fail). */
#include "heap.h"

long main(void) {
    unsigned char *a = malloc(24);
    unsigned char *b = malloc(24);
    if (a == NULL || b == NULL) return -1;
    for (int i = 0; i < 24; i++) b[i] = 0x62;
    for (int i = 0; i < 64; i++) a[i] = 0x41; /* 40 bytes too many */
    free(b);
    free(a);
    return 0;
}
