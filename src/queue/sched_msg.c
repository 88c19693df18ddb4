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
            free(m->reason[i]);
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

/* sched_msg_idle - nothing refers to M any more (no job, load, write, removal). */
int sched_msg_idle(const struct sched_msg *m)
{
    return !m->loading && !m->njobs && !m->writing && !m->removing;
}
