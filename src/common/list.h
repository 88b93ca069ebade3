/*
 * list.h - intrusive circular doubly-linked lists: a list_node is embedded in
 * the element, so linking and unlinking never allocate.
 */
#ifndef SPATE_LIST_H
#define SPATE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list_node {
    struct list_node *prev, *next;
} list_node;

#define list_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void list_init(list_node *head)
{
    head->prev = head->next = head;
}

static inline bool list_empty(const list_node *head)
{
    return head->next == head;
}

static inline void list_insert_after(list_node *at, list_node *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

static inline void list_push_front(list_node *head, list_node *n)
{
    list_insert_after(head, n);
}

static inline void list_push_back(list_node *head, list_node *n)
{
    list_insert_after(head->prev, n);
}

/* Unlinks n and leaves it linked to itself, so a second remove is harmless. */
static inline void list_remove(list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define list_first(head) ((head)->next)
#define list_last(head) ((head)->prev)

#endif
