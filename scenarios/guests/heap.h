/* heap.h: the heap functions a freestanding heapscope guest calls.
 *
 * heapscope services these calls with the allocator model under study: a hook at each
 * function's address does the work and returns to the caller, so the bodies in heap_stubs.c
 * never run. They exist only so that the symbols are in the executable. */
#ifndef HEAPSCOPE_HEAP_H
#define HEAPSCOPE_HEAP_H

typedef unsigned long size_t;
#define NULL ((void *)0)

void *malloc(size_t size);
void *calloc(size_t count, size_t size);
void *realloc(void *ptr, size_t size);
void free(void *ptr);
void *aligned_alloc(size_t alignment, size_t size);
int posix_memalign(void **out, size_t alignment, size_t size);

#endif
