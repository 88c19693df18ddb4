/*
 * sched_load.c - how messages enter the scheduler: at start every queued
 * message the spool finds (its envelope and status file read on a worker
 * thread, the slots, attempts, hold and retry time taken from the status
 * file), and afterwards each message the spool commits (envelope in hand, and
 * its content while the in-memory total stays under SCHED_CONTENT_MAX).
 * Not here: delivery rounds and retries (sched.c), writing state (sched_persist.c).
 */
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "sched_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sched_load_work(void *arg)
{
    struct sched_msg *m = arg;
    struct spool_status st;
    int rc;

    m->load_err = spool_load_envelope(m->sched->spool, m->id, &m->env);
    if (m->load_err)
        return;
    rc = spool_status_read(m->sched->spool, m->id, &st);
    if (rc == 0) {
        m->wst = st; /* handed to the loop in sched_load_done */
        m->have_status = 1;
    } else if (rc != ENOENT) {
        m->status_err = rc;
    }
}

static void sched_load_done(void *arg)
{
    struct sched_msg *m = arg;
    struct sched *s = m->sched;
    int i, ncc;

    m->loading = 0;
    if (m->load_err || m->gone || s->stopping) {
        if (m->load_err && m->load_err != ENOENT)
            log_warning("qmgr", "%s: cannot read queue file: %s", m->id, strerror(m->load_err));
        free(m->wst.slots);
        m->wst.slots = NULL;
        if (!m->removing)
            sched_msg_free(s, m);
        return;
    }
    ncc = s->conf->cc_mta[0] && !s->conf->smart_relay[0] ? m->env->nrcpt : 0;
    m->nslots = m->env->nrcpt + ncc;
    m->slots = malloc((size_t)m->nslots + 1);
    m->active = calloc((size_t)m->nslots + 1, 1);
    m->reason = calloc((size_t)m->nslots + 1, sizeof(char *));
    if (!m->slots || !m->active || !m->reason) {
        log_warning("qmgr", "%s: out of memory; retried at restart", m->id);
        free(m->wst.slots);
        m->wst.slots = NULL;
        m->gone = 1;
        sched_msg_free(s, m);
        return;
    }
    memset(m->slots, SCHED_SLOT_PENDING, (size_t)m->nslots);
    if (m->status_err)
        log_warning("qmgr", "%s: unreadable status file: %s; delivering to all recipients", m->id,
                    strerror(m->status_err));
    if (m->have_status) {
        for (i = 0; i < m->nslots && i < m->wst.nslots; i++)
            m->slots[i] = m->wst.slots[i];
        m->attempts = m->wst.attempts;
        if (m->wst.hold && !m->held) {
            m->held = 1; /* held before the restart: stays held */
            counter_add(CNT_MQUEUE_HELD, 1);
        }
        if (m->wst.next_retry > (long long)time(NULL)) {
            /* the backoff survives a restart; never beyond maximal_backoff_time from now
             * (a clock that went back, or a damaged file, must not park it for years) */
            long long latest = (long long)time(NULL) + s->conf->maximal_backoff_time;
            m->next_retry = m->wst.next_retry < latest ? m->wst.next_retry : latest;
            m->deferred = 1;
        }
        free(m->wst.slots);
        m->wst.slots = NULL;
        m->have_status = 0;
    }
    s->settle(s, m);
}

/* sched_notify_cb - the spool has a new message (with ENV, which we own) or a recovered one
 * (ENV NULL: its envelope and status file are read on a worker). */
static void sched_notify_cb(void *arg, const char *id, struct spool_envelope *env,
                            struct evbuffer *content)
{
    struct sched *s = arg;
    struct sched_msg *m;

    if (s->stopping || sched_msg_find(s, id)) {
        spool_envelope_free(env);
        if (content)
            evbuffer_free(content);
        return;
    }
    m = sched_msg_add(s, id);
    if (!m) {
        log_warning("qmgr", "%s: out of memory; delivered after a restart", id);
        spool_envelope_free(env);
        if (content)
            evbuffer_free(content);
        return;
    }
    m->sched = s;
    m->loading = 1;
    if (content) {
        size_t len = evbuffer_get_length(content);
        if (s->content_bytes + len <= SCHED_CONTENT_MAX) {
            m->content = content;
            s->content_bytes += len;
        } else {
            evbuffer_free(content);
        }
    }
    if (env) {
        /* just committed: no status file yet, and the envelope is in hand */
        m->env = env;
        sched_load_done(m);
        return;
    }
    workers_submit(s->io, sched_load_work, sched_load_done, m);
}

static void sched_foreach_cb(void *arg, const char *id, long long size)
{
    struct sched_msg *m;

    (void)size;
    sched_notify_cb(arg, id, NULL, NULL);
    if ((m = sched_msg_find(arg, id)))
        m->recovered = 1;
}

void sched_load_start(struct sched *s)
{
    spool_set_notify(s->spool, sched_notify_cb, s);
    spool_foreach(s->spool, sched_foreach_cb, s);
}
