/*
 * sched_load.c - how messages enter the scheduler: at start every queued
 * message the spool finds (its envelope and status file read on a worker
 * thread, a bounded number at a time in the background, the slots, attempts,
 * hold and retry time taken from the status file), afterwards each message the
 * spool commits (envelope in hand, and its content while the in-memory total
 * stays under SCHED_CONTENT_MAX), and a parked message coming back into the
 * active set (its envelope read again; sched_active.c decides when).
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
#include <unistd.h>

static void sched_load_work(void *arg)
{
    struct sched_msg *m = arg;
    struct spool_status st;
    int rc;

    if (m->sched->test_load_delay_us > 0 && !m->reload)
        usleep((useconds_t)m->sched->test_load_delay_us); /* a slow disk, for the tests */
    /* into lenv, not env: a parked message being read back is still listed meanwhile */
    m->load_err = spool_load_envelope(m->sched->spool, m->id, &m->lenv);
    if (m->load_err || m->reload)
        return; /* a parked message's slots are in memory: no status file to read */
    rc = spool_status_read(m->sched->spool, m->id, &st);
    if (rc == 0) {
        m->wst = st; /* handed to the loop in sched_load_done */
        m->have_status = 1;
    } else if (rc != ENOENT) {
        m->status_err = rc;
    }
}

/* sched_reload_done - a parked message read back: into the active set. */
static void sched_reload_done(struct sched *s, struct sched_msg *m)
{
    s->nreload--;
    if (m->load_err || m->gone || s->stopping || m->removing) {
        spool_envelope_free(m->lenv);
        m->lenv = NULL;
        if (m->load_err && m->load_err != ENOENT && !m->gone && !s->stopping && !m->removing) {
            /* still queued but unreadable now: stays parked, tried again after the backoff */
            log_warning("qmgr", "%s: cannot read queue file: %s", m->id, strerror(m->load_err));
            m->deferred = 1;
            m->next_retry = (long long)time(NULL) + s->conf->minimal_backoff_time;
        } else if (m->gone && sched_msg_idle(m)) {
            sched_msg_free(s, m);
            return;
        }
        sched_pump(s);
        return;
    }
    m->active = calloc((size_t)m->nslots + 1, 1);
    if (!m->reason)
        m->reason = calloc((size_t)m->nslots + 1, sizeof(char *));
    if (!m->active || !m->reason) {
        spool_envelope_free(m->lenv);
        m->lenv = NULL;
        m->deferred = 1; /* parked still: the next queue run tries again */
        m->next_retry = (long long)time(NULL) + s->conf->minimal_backoff_time;
        return;
    }
    m->env = m->lenv;
    m->lenv = NULL;
    sched_loaded(s, 1);
    free(m->park);
    m->park = NULL;
    m->deferred = 0;
    s->settle(s, m); /* due: sched_msg_settle activates it (or parks it again when held) */
    sched_pump(s);   /* the next read back */
}

static void sched_load_done(void *arg)
{
    struct sched_msg *m = arg;
    struct sched *s = m->sched;
    int i, ncc;

    m->loading = 0;
    if (m->reload) {
        m->reload = 0;
        sched_reload_done(s, m);
        return;
    }
    s->nrecover--;
    if (m->recovered)
        counter_add(CNT_QMGR_LOADING, -1); /* read (or found unreadable): loaded */
    sched_pump(s);                         /* the next start-up load */
    if (m->lenv) {
        m->env = m->lenv;
        m->lenv = NULL;
        sched_loaded(s, 1);
    }
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
        if (m->wst.next_retry > (long long)time(NULL) && !(m->recovered && s->flush_recovered)) {
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
    m->recovered = !env; /* found by the spool's start-up scan */
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
        m->lenv = env;
        s->nrecover++; /* sched_load_done counts it back */
        sched_load_done(m);
        return;
    }
    /* found at start: read in the background, SCHED_RECOVER_INFLIGHT at a time (sched_pump),
     * so a large queue neither floods the workers nor holds up SMTP */
    m->loading = 1; /* as good as being read: listings and releases wait for it */
    m->onq = SCHED_Q_RECOVER;
    TAILQ_INSERT_TAIL(&s->recover, m, qlink);
    counter_add(CNT_QMGR_LOADING, 1);
    sched_pump(s);
}

void sched_load_msg(struct sched *s, struct sched_msg *m, int reload)
{
    m->loading = 1;
    m->reload = reload;
    m->load_err = 0;
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
    /* every queued message gets an entry: sized once rather than doubled under load */
    (void)htab_reserve(&s->msg_tab, (size_t)spool_expected(s->spool));
    spool_set_notify(s->spool, sched_notify_cb, s);
    spool_foreach(s->spool, sched_foreach_cb, s);
}
