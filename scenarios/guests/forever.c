/* A program that never returns: the instruction budget ends it. */
#include "heap.h"

long main(void) {
    long *counter = malloc(sizeof(long));
    if (counter == NULL) return -1;
    *counter = 0;
    volatile long spin = 0;
    for (;;) spin++;
}
