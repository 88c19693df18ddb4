/*
 * spool_index.c - the in-memory index of queued messages (ID -> message size):
 * a chained hash table rebuilt from queue/ at start and kept current by commit
 * and remove. It answers "is it queued", feeds the mqueue counters and the
 * listings. Loop thread only. Not here: anything on disk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool_int.h"

/* spool_index_hash - FNV-1a of the ID. */
static size_t spool_index_hash(const char *id)
{
    size_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h;
}

/* spool_index_grow - double the table so chains stay short. */
static int spool_index_grow(struct spool_index *ix)
{
    size_t nslot = ix->nslot ? ix->nslot * 2 : 256;
    struct spool_index_entry **slot = calloc(nslot, sizeof *slot);
    if (!slot)
        return -1;
    for (size_t i = 0; i < ix->nslot; i++) {
        struct spool_index_entry *e = ix->slot[i], *next;
        for (; e; e = next) {
            next = e->next;
            size_t h = spool_index_hash(e->id) % nslot;
            e->next = slot[h];
            slot[h] = e;
        }
    }
    free(ix->slot);
    ix->slot = slot;
    ix->nslot = nslot;
    return 0;
}

struct spool_index_entry *spool_index_find(const struct spool_index *ix, const char *id)
{
    if (!ix->nslot)
        return NULL;
    struct spool_index_entry *e = ix->slot[spool_index_hash(id) % ix->nslot];
    for (; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

int spool_index_add(struct spool_index *ix, const char *id, long long size)
{
    struct spool_index_entry *e = spool_index_find(ix, id);
    if (e) {
        e->size = size;
        return 0;
    }
    if (ix->count >= ix->nslot && spool_index_grow(ix) < 0 && !ix->nslot)
        return -1;
    e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->size = size;
    size_t h = spool_index_hash(id) % ix->nslot;
    e->next = ix->slot[h];
    ix->slot[h] = e;
    ix->count++;
    return 0;
}

long long spool_index_del(struct spool_index *ix, const char *id)
{
    if (!ix->nslot)
        return -1;
    struct spool_index_entry **pp = &ix->slot[spool_index_hash(id) % ix->nslot];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            struct spool_index_entry *e = *pp;
            long long size = e->size;
            *pp = e->next;
            free(e);
            ix->count--;
            return size;
        }
    }
    return -1;
}

static int spool_index_cmp(const void *a, const void *b)
{
    return strcmp(((const struct spool_index_entry *)a)->id,
                  ((const struct spool_index_entry *)b)->id);
}

struct spool_index_entry *spool_index_snapshot(const struct spool_index *ix, size_t *n)
{
    struct spool_index_entry *v = malloc((ix->count ? ix->count : 1) * sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    for (size_t i = 0; i < ix->nslot; i++)
        for (struct spool_index_entry *e = ix->slot[i]; e; e = e->next)
            v[(*n)++] = *e;
    qsort(v, *n, sizeof *v, spool_index_cmp);
    return v;
}

void spool_index_free(struct spool_index *ix)
{
    for (size_t i = 0; i < ix->nslot; i++) {
        struct spool_index_entry *e = ix->slot[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(ix->slot);
    memset(ix, 0, sizeof *ix);
}
