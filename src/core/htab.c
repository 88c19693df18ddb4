/*
 * htab.c - the intrusive chained hash table (htab.h). The bucket array doubles
 * when the table holds more nodes than buckets, so chains stay short; each node
 * keeps its hash, so growing costs no key hashing.
 * Not here: keys, node memory, ordering (the callers own those).
 */
#include "mta/htab.h"

#include <stdlib.h>

#define HTAB_MIN_SLOTS 64

size_t htab_hash_str(const char *s)
{
    size_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* htab_resize - move every node into a new bucket array of NSLOT; -1 when out of memory. */
static int htab_resize(struct htab *t, size_t nslot)
{
    struct htab_node **slot = calloc(nslot, sizeof(*slot));

    if (!slot)
        return -1;
    for (size_t i = 0; i < t->nslot; i++) {
        struct htab_node *n = t->slot[i], *next;
        for (; n; n = next) {
            next = n->next;
            n->next = slot[n->hash % nslot];
            slot[n->hash % nslot] = n;
        }
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = nslot;
    return 0;
}

/* htab_grow - double the bucket array (or make the first one); -1 when out of memory. */
static int htab_grow(struct htab *t)
{
    return htab_resize(t, t->nslot ? t->nslot * 2 : HTAB_MIN_SLOTS);
}

int htab_reserve(struct htab *t, size_t n)
{
    size_t nslot = t->nslot ? t->nslot : HTAB_MIN_SLOTS;
    while (nslot < n && nslot <= ((size_t)-1 / sizeof(struct htab_node *)) / 2)
        nslot *= 2;
    return nslot == t->nslot ? 0 : htab_resize(t, nslot);
}

struct htab_node *htab_find(const struct htab *t, size_t hash,
                            int (*match)(const struct htab_node *n, const void *key),
                            const void *key)
{
    if (!t->nslot)
        return NULL;
    for (struct htab_node *n = t->slot[hash % t->nslot]; n; n = n->next)
        if (n->hash == hash && match(n, key))
            return n;
    return NULL;
}

int htab_insert(struct htab *t, struct htab_node *n, size_t hash)
{
    if (t->count >= t->nslot && htab_grow(t) < 0 && !t->nslot)
        return -1;
    n->hash = hash;
    n->next = t->slot[hash % t->nslot];
    t->slot[hash % t->nslot] = n;
    t->count++;
    return 0;
}

void htab_remove(struct htab *t, struct htab_node *n)
{
    if (!t->nslot)
        return;
    for (struct htab_node **pp = &t->slot[n->hash % t->nslot]; *pp; pp = &(*pp)->next)
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            t->count--;
            return;
        }
}

struct htab_node *htab_next(const struct htab *t, const struct htab_node *n)
{
    size_t i = 0;

    if (n) {
        if (n->next)
            return n->next;
        i = n->hash % t->nslot + 1;
    }
    for (; i < t->nslot; i++)
        if (t->slot[i])
            return t->slot[i];
    return NULL;
}

void htab_free(struct htab *t)
{
    free(t->slot);
    t->slot = NULL;
    t->nslot = t->count = 0;
}
