/*
 * smtpd_map.c - chained hash map with 16-byte keys (FNV-1a), grown at load 1.
 * Not for anything shared between threads.
 */
#include "smtpd_map.h"

#include <stdlib.h>
#include <string.h>

struct smtpd_map_ent {
    struct smtpd_map_ent *next;
    unsigned char key[16];
    void *val;
};

struct smtpd_map {
    struct smtpd_map_ent **b;
    size_t nb, n;
};

/* smtpd_map_hash - FNV-1a of the key. */
static size_t smtpd_map_hash(const unsigned char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 16; i++)
        h = (h ^ k[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

struct smtpd_map *smtpd_map_new(void)
{
    struct smtpd_map *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nb = 64;
    if (!(m->b = calloc(m->nb, sizeof(*m->b)))) {
        free(m);
        return NULL;
    }
    return m;
}

void smtpd_map_free(struct smtpd_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        struct smtpd_map_ent *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            free(e);
        }
    }
    free(m->b);
    free(m);
}

void *smtpd_map_get(const struct smtpd_map *m, const unsigned char key[16])
{
    for (struct smtpd_map_ent *e = m->b[smtpd_map_hash(key) % m->nb]; e; e = e->next)
        if (memcmp(e->key, key, 16) == 0)
            return e->val;
    return NULL;
}

/* smtpd_map_grow - double the bucket array (best effort). */
static void smtpd_map_grow(struct smtpd_map *m)
{
    size_t nb = m->nb * 2;
    struct smtpd_map_ent **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        struct smtpd_map_ent *e = m->b[i], *nx;
        for (; e; e = nx) {
            size_t h = smtpd_map_hash(e->key) % nb;
            nx = e->next;
            e->next = b[h];
            b[h] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int smtpd_map_put(struct smtpd_map *m, const unsigned char key[16], void *val)
{
    size_t h = smtpd_map_hash(key) % m->nb;
    struct smtpd_map_ent *e;
    for (e = m->b[h]; e; e = e->next) {
        if (memcmp(e->key, key, 16) == 0) {
            e->val = val;
            return 0;
        }
    }
    if (!(e = malloc(sizeof(*e))))
        return -1;
    memcpy(e->key, key, 16);
    e->val = val;
    e->next = m->b[h];
    m->b[h] = e;
    if (++m->n > m->nb)
        smtpd_map_grow(m);
    return 0;
}

void smtpd_map_del(struct smtpd_map *m, const unsigned char key[16])
{
    struct smtpd_map_ent **pp = &m->b[smtpd_map_hash(key) % m->nb];
    for (; *pp; pp = &(*pp)->next) {
        if (memcmp((*pp)->key, key, 16) == 0) {
            struct smtpd_map_ent *e = *pp;
            *pp = e->next;
            free(e);
            m->n--;
            return;
        }
    }
}

void smtpd_map_key_u64(unsigned char key[16], uint64_t id)
{
    memset(key, 0, 16);
    memcpy(key, &id, sizeof(id));
}
