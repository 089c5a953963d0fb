/* Placeholder bodies for the heap functions: heapscope hooks their addresses and services
 * each call with an allocator model, so none of this runs under heapscope. `_start` lets the
 * file link as an ordinary static executable; heapscope starts at `main` itself. */
#include "heap.h"

__attribute__((noinline)) void *malloc(size_t size) { (void)size; return NULL; }
__attribute__((noinline)) void *calloc(size_t count, size_t size) { (void)count; (void)size; return NULL; }
__attribute__((noinline)) void *realloc(void *ptr, size_t size) { (void)ptr; (void)size; return NULL; }
__attribute__((noinline)) void free(void *ptr) { (void)ptr; }
__attribute__((noinline)) void *aligned_alloc(size_t alignment, size_t size) { (void)alignment; (void)size; return NULL; }
__attribute__((noinline)) int posix_memalign(void **out, size_t alignment, size_t size) { (void)out; (void)alignment; (void)size; return 12; }

int main(void);

__attribute__((noreturn)) void _start(void) {
    main();
    for (;;) {
        __asm__ volatile("hlt");
    }
}
