/*
 * spool_index.c - the in-memory index of queued messages (ID -> message size):
 * a hash table (core htab) rebuilt from queue/ at start and kept current by
 * commit and remove. It answers "is it queued", feeds the mqueue counters and
 * the listings. Loop thread only. Not here: anything on disk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/counters.h"
#include "mta/log.h"
#include "spool_int.h"

/* spool_index_match - whether index entry N has the ID KEY. */
static int spool_index_match(const struct htab_node *n, const void *key)
{
    return strcmp(HTAB_ENTRY(n, const struct spool_index_entry, node)->id, key) == 0;
}

struct spool_index_entry *spool_index_find(const struct spool_index *ix, const char *id)
{
    struct htab_node *n = htab_find(&ix->tab, htab_hash_str(id), spool_index_match, id);

    return n ? HTAB_ENTRY(n, struct spool_index_entry, node) : NULL;
}

int spool_index_add(struct spool_index *ix, const char *id, long long size)
{
    struct spool_index_entry *e = spool_index_find(ix, id);
    if (e) {
        e->size = size;
        return 0;
    }
    e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->size = size;
    if (htab_insert(&ix->tab, &e->node, htab_hash_str(e->id)) < 0) {
        free(e);
        return -1;
    }
    return 0;
}

long long spool_index_del(struct spool_index *ix, const char *id)
{
    struct spool_index_entry *e = spool_index_find(ix, id);
    long long size;

    if (!e)
        return -1;
    size = e->size;
    htab_remove(&ix->tab, &e->node);
    free(e);
    return size;
}

static int spool_index_cmp(const void *a, const void *b)
{
    return strcmp(((const struct spool_index_entry *)a)->id,
                  ((const struct spool_index_entry *)b)->id);
}

struct spool_index_entry *spool_index_snapshot(const struct spool_index *ix, size_t *n)
{
    struct spool_index_entry *v = malloc((ix->tab.count ? ix->tab.count : 1) * sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    for (struct htab_node *p = htab_next(&ix->tab, NULL); p; p = htab_next(&ix->tab, p))
        v[(*n)++] = *HTAB_ENTRY(p, struct spool_index_entry, node);
    qsort(v, *n, sizeof *v, spool_index_cmp);
    return v;
}

void spool_index_free(struct spool_index *ix)
{
    struct htab_node *p, *next;

    for (p = htab_next(&ix->tab, NULL); p; p = next) {
        next = htab_next(&ix->tab, p);
        htab_remove(&ix->tab, p);
        free(HTAB_ENTRY(p, struct spool_index_entry, node));
    }
    htab_free(&ix->tab);
}

void spool_queued(struct spool *sp, const char *id, long long size)
{
    if (spool_index_find(&sp->index, id))
        return;
    if (spool_index_add(&sp->index, id, size) < 0)
        log_warning("queue", "%s: out of memory for the queue index", id);
    counter_add(CNT_MQUEUE_MESSAGES, 1);
    counter_add(CNT_MQUEUE_BYTES, size);
}
