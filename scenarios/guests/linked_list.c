/* A linked list built, walked and torn down correctly: no findings under any allocator. */
#include "heap.h"

struct node {
    long value;
    struct node *next;
};

long main(void) {
    struct node *head = NULL;
    for (long i = 1; i <= 16; i++) {
        struct node *n = malloc(sizeof *n);
        if (n == NULL) return -1;
        n->value = i;
        n->next = head;
        head = n;
    }
    long sum = 0;
    for (struct node *n = head; n != NULL; n = n->next) sum += n->value;
    while (head != NULL) {
        struct node *next = head->next;
        free(head);
        head = next;
    }
    return sum; /* 136 */
}
