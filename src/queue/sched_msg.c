/*
 * sched_msg.c - the scheduler's messages: the table by queue ID, the list in
 * arrival order (mailq lists in that order), the in-memory copy of a fresh
 * message and its accounting, and freeing a message nothing refers to.
 * Not here: what happens to a message (sched.c), loading or writing it
 * (sched_load.c, sched_persist.c).
 */
#include "mta/counters.h"
#include "mta/htab.h"
#include "mta/spool.h"
#include "sched_int.h"

#include <event2/buffer.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* sched_msg_match - whether message N has the ID KEY. */
static int sched_msg_match(const struct htab_node *n, const void *key)
{
    return strcmp(HTAB_ENTRY(n, const struct sched_msg, hnode)->id, key) == 0;
}

struct sched_msg *sched_msg_find(struct sched *s, const char *id)
{
    struct htab_node *n = htab_find(&s->msg_tab, htab_hash_str(id), sched_msg_match, id);

    return n ? HTAB_ENTRY(n, struct sched_msg, hnode) : NULL;
}

struct sched_msg *sched_msg_add(struct sched *s, const char *id)
{
    struct sched_msg *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    snprintf(m->id, sizeof(m->id), "%s", id);
    if (htab_insert(&s->msg_tab, &m->hnode, htab_hash_str(m->id)) < 0) {
        free(m);
        return NULL;
    }
    /* append: the list stays in arrival order for mailq */
    TAILQ_INSERT_TAIL(&s->msgs, m, link);
    return m;
}

/* sched_msg_drop_content - forget M's in-memory copy (later loads read the spool). */
void sched_msg_drop_content(struct sched *s, struct sched_msg *m)
{
    if (!m->content)
        return;
    s->content_bytes -= evbuffer_get_length(m->content);
    evbuffer_free(m->content);
    m->content = NULL;
}

/* sched_msg_free - unlink and free M (no job, load, write or removal may be pending). */
void sched_msg_free(struct sched *s, struct sched_msg *m)
{
    int i;

    htab_remove(&s->msg_tab, &m->hnode);
    if (s->run_next == m)
        s->run_next = TAILQ_NEXT(m, link); /* the queue run goes on after it */
    TAILQ_REMOVE(&s->msgs, m, link);
    if (m->onq == SCHED_Q_RECOVER)
        counter_add(CNT_QMGR_LOADING, -1); /* deleted before it was read */
    sched_q_remove(s, m);
    if (m->held)
        counter_add(CNT_MQUEUE_HELD, -1);
    if (m->reason)
        for (i = 0; i < m->nslots; i++)
            sched_reason_put(s, m->reason[i]);
    free(m->reason);
    free(m->slots);
    free(m->active);
    if (m->env) {
        spool_envelope_free(m->env);
        sched_loaded(s, -1);
    }
    spool_envelope_free(m->lenv);
    free(m->park);
    free(m->wst.slots);
    sched_msg_drop_content(s, m);
    free(m);
    if (!s->stopping)
        sched_pump(s); /* its place in the active set is free */
}

/* One shared deferral reason: TEXT and how many slots point at it. */
struct sched_reason {
    struct htab_node node; /* in sched.reason_tab, by text */
    int refs;
    char text[];
};

/* sched_reason_match - whether reason N has the text KEY. */
static int sched_reason_match(const struct htab_node *n, const void *key)
{
    return strcmp(HTAB_ENTRY(n, const struct sched_reason, node)->text, key) == 0;
}

char *sched_reason_get(struct sched *s, const char *text)
{
    size_t h = htab_hash_str(text), len = strlen(text);
    struct htab_node *n = htab_find(&s->reason_tab, h, sched_reason_match, text);
    struct sched_reason *r;

    if (n) {
        r = HTAB_ENTRY(n, struct sched_reason, node);
        r->refs++;
        return r->text;
    }
    r = malloc(sizeof(*r) + len + 1);
    if (!r)
        return NULL;
    r->refs = 1;
    memcpy(r->text, text, len + 1);
    if (htab_insert(&s->reason_tab, &r->node, h) < 0) {
        free(r);
        return NULL;
    }
    return r->text;
}

void sched_reason_put(struct sched *s, char *reason)
{
    struct sched_reason *r;

    if (!reason)
        return;
    r = (struct sched_reason *)(reason - offsetof(struct sched_reason, text));
    if (--r->refs > 0)
        return;
    htab_remove(&s->reason_tab, &r->node);
    free(r);
}

/* sched_msg_idle - nothing refers to M any more (no job, load, write, removal). */
int sched_msg_idle(const struct sched_msg *m)
{
    return !m->loading && !m->njobs && !m->writing && !m->removing;
}
