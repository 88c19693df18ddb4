/*
 * htab.h - one chained hash table for the whole daemon (queue IDs, destinations,
 * lookup tables). Intrusive: the caller embeds a struct htab_node in its own
 * object and keeps ownership of it; the table holds only the bucket array and
 * never allocates or frees nodes. The caller hashes (htab_hash_str, or its own
 * mix for composite keys) and says what "equal" means through a match function,
 * so one implementation serves string keys and (name, kind) keys alike.
 * Not thread-safe: each table belongs to one thread (the event loop).
 * Not here: ordering (keep a TAILQ next to the table when order matters).
 */
#ifndef MTA_HTAB_H
#define MTA_HTAB_H

#include <stddef.h>

struct htab_node {
    struct htab_node *next; /* bucket chain */
    size_t hash;            /* kept so that growing never rehashes keys */
};

struct htab {
    struct htab_node **slot;
    size_t nslot, count;
};

#define HTAB_INIT                                                                                  \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* HTAB_ENTRY - the object of TYPE whose MEMBER is the node N. */
#define HTAB_ENTRY(n, type, member) ((type *)(void *)((char *)(n)-offsetof(type, member)))

/* htab_hash_str - FNV-1a of the string S. */
size_t htab_hash_str(const char *s);
/* htab_find - the first node of hash HASH for which MATCH(node, KEY) is true, or NULL. */
struct htab_node *htab_find(const struct htab *t, size_t hash,
                            int (*match)(const struct htab_node *n, const void *key),
                            const void *key);
/* htab_insert - add node N with hash HASH (duplicates are the caller's business);
 * 0, or -1 when the first bucket array cannot be allocated (a failed growth later only
 * makes chains longer). */
int htab_insert(struct htab *t, struct htab_node *n, size_t hash);
/* htab_reserve - make room for N nodes now, so that inserting them never doubles the bucket
 * array (a doubling moves every node: ~0.1 s at a million, one stall of the loop);
 * 0, or -1 when out of memory (the table is unchanged then). */
int htab_reserve(struct htab *t, size_t n);
/* htab_remove - take node N (which must be in T) out of T. */
void htab_remove(struct htab *t, struct htab_node *n);
/* htab_next - the node after N in bucket order (N NULL: the first), or NULL at the end.
 * Take the next node before removing N. */
struct htab_node *htab_next(const struct htab *t, const struct htab_node *n);
/* htab_free - free the bucket array (not the nodes: they belong to the caller). */
void htab_free(struct htab *t);

#endif
