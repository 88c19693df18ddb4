/*
 * sched.c - the in-memory scheduler (Postfix qmgr's job): every queued message
 * with one state per delivery slot (each recipient, plus each recipient's cc_mta
 * copy when cc_mta is set), grouped into jobs per destination, handed to the
 * relay round-robin over destinations, and retried with clamped exponential
 * backoff. Rebuilt from the spool at start (envelope + status file, read on a
 * worker thread). A slot that is final is written to the status file before it
 * could be forgotten, so a restart never delivers it again.
 * Not here: how a job is delivered (src/relay) or how messages are stored (spool).
 */
#include "mta/sched.h"

#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "mta/text.h"
#include "mta/workers.h"
#include "sched_int.h"
#include "sched_priv.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHED_JOB_RCPT_MAX 50 /* Postfix smtp_destination_recipient_limit */

long sched_backoff(int attempts, long min, long max)
{
    long d = min;
    int i;

    if (min < 1)
        min = d = 1;
    for (i = 1; i < attempts && d < max; i++)
        d = d > max / 2 ? max : d * 2;
    if (d > max)
        d = max;
    if (d < min)
        d = min;
    return d;
}

/* --- messages by ID --- */

static unsigned sched_hash(const char *id)
{
    unsigned h = 5381;

    while (*id)
        h = h * 33 + (unsigned char)*id++;
    return h;
}

struct sched_msg *sched_msg_find(struct sched *s, const char *id)
{
    struct sched_msg *m;

    for (m = s->htab[sched_hash(id) % s->hsize]; m; m = m->hnext)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

/* sched_hash_grow - double the table when it gets crowded (keeps lookups O(1)). */
static void sched_hash_grow(struct sched *s)
{
    size_t nsize = s->hsize * 2, i;
    struct sched_msg **nt = calloc(nsize, sizeof(*nt)), *m, *next;

    if (!nt)
        return; /* longer chains, still correct */
    for (i = 0; i < s->hsize; i++)
        for (m = s->htab[i]; m; m = next) {
            next = m->hnext;
            m->hnext = nt[sched_hash(m->id) % nsize];
            nt[sched_hash(m->id) % nsize] = m;
        }
    free(s->htab);
    s->htab = nt;
    s->hsize = nsize;
}

static struct sched_msg *sched_msg_add(struct sched *s, const char *id)
{
    struct sched_msg *m = calloc(1, sizeof(*m));
    unsigned h;

    if (!m)
        return NULL;
    snprintf(m->id, sizeof(m->id), "%s", id);
    if (s->nmsg > s->hsize * 2)
        sched_hash_grow(s);
    h = sched_hash(id) % s->hsize;
    m->hnext = s->htab[h];
    s->htab[h] = m;
    /* append: the list stays in arrival order for mailq */
    m->prev = s->tail;
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->nmsg++;
    return m;
}

/* sched_msg_drop_content - forget M's in-memory copy (later loads read the spool). */
static void sched_msg_drop_content(struct sched *s, struct sched_msg *m)
{
    if (!m->content)
        return;
    s->content_bytes -= evbuffer_get_length(m->content);
    evbuffer_free(m->content);
    m->content = NULL;
}

struct evbuffer *sched_job_content(struct sched *s, const struct sched_job *job)
{
    const struct sched_jobx *j = (const struct sched_jobx *)job;
    (void)s;
    return j->m->removing || j->m->gone ? NULL : j->m->content;
}

/* sched_msg_free - unlink and free M (no job, load, write or removal may be pending). */
static void sched_msg_free(struct sched *s, struct sched_msg *m)
{
    struct sched_msg **pp;
    int i;

    for (pp = &s->htab[sched_hash(m->id) % s->hsize]; *pp; pp = &(*pp)->hnext)
        if (*pp == m) {
            *pp = m->hnext;
            break;
        }
    if (m->prev)
        m->prev->next = m->next;
    else
        s->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        s->tail = m->prev;
    s->nmsg--;
    if (m->held)
        counter_add(CNT_MQUEUE_HELD, -1);
    if (m->reason)
        for (i = 0; i < m->nslots; i++)
            free(m->reason[i]);
    free(m->reason);
    free(m->slots);
    free(m->active);
    if (m->env)
        spool_envelope_free(m->env);
    sched_msg_drop_content(s, m);
    free(m);
}

/* sched_msg_idle - nothing refers to M any more (no job, load, write, removal). */
static int sched_msg_idle(const struct sched_msg *m)
{
    return !m->loading && !m->njobs && !m->writing && !m->removing;
}

/* --- destinations --- */

static unsigned sched_dest_slot(const char *name, enum sched_dest_kind kind)
{
    return (sched_hash(name) * 3u + (unsigned)kind) % SCHED_DEST_HSIZE;
}

/* sched_dest_get - the destination NAME of KIND, created when missing (NULL: out of memory). */
static struct sched_dest *sched_dest_get(struct sched *s, const char *name,
                                         enum sched_dest_kind kind)
{
    unsigned h = sched_dest_slot(name, kind);
    struct sched_dest *d;

    for (d = s->dtab[h]; d; d = d->hnext)
        if (d->kind == kind && strcmp(d->name, name) == 0)
            return d;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->name = strdup(name);
    if (!d->name) {
        free(d);
        return NULL;
    }
    d->kind = kind;
    d->hnext = s->dtab[h];
    s->dtab[h] = d;
    d->next = s->dests;
    if (s->dests)
        s->dests->prev = d;
    s->dests = d;
    return d;
}

/* sched_dest_release - free D once it has no ready and no taken job (keeps the
 * destination table as small as the active queue). */
static void sched_dest_release(struct sched *s, struct sched_dest *d)
{
    struct sched_dest **pp;

    if (d->qhead || d->ntaken > 0)
        return;
    for (pp = &s->dtab[sched_dest_slot(d->name, d->kind)]; *pp; pp = &(*pp)->hnext)
        if (*pp == d) {
            *pp = d->hnext;
            break;
        }
    if (s->rr == d)
        s->rr = d->prev; /* round robin goes on with the one after D */
    if (d->prev)
        d->prev->next = d->next;
    else
        s->dests = d->next;
    if (d->next)
        d->next->prev = d->prev;
    free(d->name);
    free(d);
}

/* sched_slot_dest - the destination of slot I of M: smart_relay, cc_mta, or the domain. */
static struct sched_dest *sched_slot_dest(struct sched *s, struct sched_msg *m, int i)
{
    char dom[256];
    const char *addr, *at;
    size_t k;

    if (i >= m->env->nrcpt)
        return sched_dest_get(s, s->conf->cc_mta, SCHED_DEST_CC);
    if (s->conf->smart_relay[0])
        return sched_dest_get(s, s->conf->smart_relay, SCHED_DEST_SMART);
    addr = m->env->rcpt[i].addr;
    at = strrchr(addr, '@');
    snprintf(dom, sizeof(dom), "%s", at ? at + 1 : "");
    for (k = 0; dom[k]; k++)
        dom[k] = (char)tolower((unsigned char)dom[k]);
    return sched_dest_get(s, dom, SCHED_DEST_DOMAIN);
}

/* --- jobs --- */

static void sched_dest_push(struct sched *s, struct sched_dest *d, struct sched_jobx *j)
{
    j->qnext = NULL;
    if (d->qtail)
        d->qtail->qnext = j;
    else
        d->qhead = j;
    d->qtail = j;
    s->nready++;
}

/* sched_msg_activate - M is due: log it entering the active queue and queue its pending slots as
 * jobs. */
static void sched_msg_activate(struct sched *s, struct sched_msg *m)
{
    struct sched_jobx *open[16];
    int nopen = 0, i, k, any = 0;

    if (m->held)
        return; /* the one gate: no path (queue run, flush, restart) starts a held message */
    m->deferred = 0;
    m->active_us = clock_now_us();
    for (i = 0; i < m->nslots; i++) {
        struct sched_dest *d;
        struct sched_jobx *j = NULL;
        if (m->slots[i] != SCHED_SLOT_PENDING || m->active[i])
            continue;
        d = sched_slot_dest(s, m, i);
        if (!d)
            continue; /* out of memory: retried at the next queue run */
        for (k = 0; k < nopen; k++)
            if (open[k]->dest == d && open[k]->pub.nrcpt < SCHED_JOB_RCPT_MAX) {
                j = open[k];
                break;
            }
        if (!j) {
            j = calloc(1, sizeof(*j));
            if (!j)
                continue;
            j->rcpt = calloc(SCHED_JOB_RCPT_MAX, sizeof(int));
            j->result = calloc(SCHED_JOB_RCPT_MAX, sizeof(int));
            if (!j->rcpt || !j->result) {
                free(j->rcpt);
                free(j->result);
                free(j);
                continue;
            }
            j->m = m;
            j->dest = d;
            j->pub.id = ++s->job_seq;
            snprintf(j->pub.queue_id, sizeof(j->pub.queue_id), "%s", m->id);
            j->pub.env = m->env;
            j->pub.kind = d->kind;
            j->pub.dest = d->name;
            j->pub.rcpt = j->rcpt;
            j->pub.result = j->result;
            j->pub.active_us = m->active_us;
            j->pub.attempts = m->attempts;
            m->njobs++;
            if (nopen == (int)(sizeof(open) / sizeof(open[0]))) {
                /* many destinations: the oldest open job is complete enough */
                sched_dest_push(s, open[0]->dest, open[0]);
                memmove(open, open + 1, sizeof(open[0]) * (size_t)(nopen - 1));
                nopen--;
            }
            open[nopen++] = j;
        }
        j->rcpt[j->pub.nrcpt++] = i;
        m->active[i] = 1;
        any = 1;
    }
    for (k = 0; k < nopen; k++)
        sched_dest_push(s, open[k]->dest, open[k]);
    if (any && (m->recovered || m->activations++ > 0))
        /* intake logs the first entry of a new message (smtpd_txn.c); retries and
         * messages recovered at start are logged here, as Postfix's qmgr does */
        log_mail("qmgr", "%s: from=<%s>, size=%lld, nrcpt=%d (queue active)", m->id, m->env->sender,
                 m->env->size, m->env->nrcpt);
    if (any && s->ready_cb && !s->stopping)
        s->ready_cb(s->ready_arg);
}

struct sched_job *sched_job_take(struct sched *s, int (*can)(void *arg, const char *dest),
                                 void *arg)
{
    struct sched_dest *d, *start;
    struct sched_jobx *j;
    int pass;

    if (!s->nready || s->stopping)
        return NULL;
    /* round robin: continue after the destination served last */
    start = s->rr && s->rr->next ? s->rr->next : s->dests;
    d = start;
    for (pass = 0; d && pass < 2;) {
        if (d->qhead && (!can || can(arg, d->name))) {
            j = d->qhead;
            d->qhead = j->qnext;
            if (!d->qhead)
                d->qtail = NULL;
            s->nready--;
            s->rr = d;
            d->ntaken++;
            j->pub.dispatch_us = clock_now_us();
            j->taken = 1;
            return &j->pub;
        }
        d = d->next;
        if (!d) {
            d = s->dests;
            pass++;
        }
        if (d == start)
            break;
    }
    return NULL;
}

void sched_job_reason(struct sched *s, struct sched_job *job, int i, const char *reason)
{
    struct sched_jobx *j = (struct sched_jobx *)job;
    int slot;

    (void)s;
    if (i < 0 || i >= job->nrcpt || !j->m->reason)
        return;
    slot = job->rcpt[i];
    free(j->m->reason[slot]);
    /* stored printable: `mtactl queue` shows it to a terminal (Postfix printable()) */
    j->m->reason[slot] = text_printable(strdup(reason ? reason : ""), '?');
}

static void sched_msg_settle(struct sched *s, struct sched_msg *m);

void sched_job_done(struct sched *s, struct sched_job *job)
{
    struct sched_jobx *j = (struct sched_jobx *)job;
    struct sched_msg *m = j->m;
    int i, changed = 0;

    for (i = 0; i < job->nrcpt; i++) {
        int slot = job->rcpt[i];
        m->active[slot] = 0;
        if (m->removing)
            continue; /* deleted meanwhile: results no longer matter */
        switch (job->result[i]) {
        case SCHED_RESULT_SENT:
            m->slots[slot] = SCHED_SLOT_SENT;
            changed = 1;
            break;
        case SCHED_RESULT_BOUNCE:
            m->slots[slot] = SCHED_SLOT_BOUNCED;
            changed = 1;
            break;
        case SCHED_RESULT_DEFER:
            m->had_defer = 1;
            break;
        default:
            break;
        }
    }
    if (changed)
        m->status_dirty = m->round_final = 1;
    m->njobs--;
    if (j->taken) {
        j->dest->ntaken--;
        sched_dest_release(s, j->dest);
    }
    free(j->rcpt);
    free(j->result);
    free(j);
    sched_msg_settle(s, m);
}

/* --- persistence of results --- */

static void sched_status_done(void *arg);

/* sched_status_work - worker: write the status file snapshot. */
static void sched_status_work(void *arg)
{
    struct sched_msg *m = arg;

    m->write_err = spool_status_write(m->sched->spool, m->id, &m->wst);
}

/* sched_status_write - start writing M's status file (one write in flight per message). */
static void sched_status_write(struct sched *s, struct sched_msg *m)
{
    m->status_dirty = 0;
    m->writing = 1;
    m->wst.attempts = m->attempts;
    m->wst.next_retry = m->next_retry;
    m->wst.hold = m->held;
    m->wst.sync = m->hold_unsynced;
    m->hold_writing = m->hold_unsynced;
    m->wst.nslots = m->nslots;
    free(m->wst.slots);
    m->wst.slots = malloc((size_t)m->nslots);
    if (!m->wst.slots) {
        m->writing = 0;
        m->status_dirty = 1;
        return;
    }
    memcpy(m->wst.slots, m->slots, (size_t)m->nslots);
    workers_submit(s->io, sched_status_work, sched_status_done, m);
}

static void sched_status_done(void *arg)
{
    struct sched_msg *m = arg;
    struct sched *s = m->sched;

    m->writing = 0;
    free(m->wst.slots);
    m->wst.slots = NULL;
    /* the hold change is durable once a flushed write carried the state it still has */
    if (m->hold_writing && (!m->write_err || m->write_err == ENOENT) && m->wst.hold == m->held)
        m->hold_unsynced = 0;
    m->hold_writing = 0;
    if (m->write_err && m->write_err != ENOENT) {
        log_warning("qmgr",
                    "%s: cannot write status file: %s (recipients already delivered may "
                    "be delivered again after a restart)",
                    m->id, strerror(m->write_err));
        /* not written: try again at the next queue run (not now: the disk may be full) */
        m->status_dirty = 1;
        m->write_retry = 1;
    }
    sched_msg_settle(s, m);
}

struct sched_rm {
    struct sched_token *tok;
    char id[SPOOL_ID_SIZE];
    const char *service;
};

/* sched_remove_done - the spool removed the message (or it was gone already). */
static void sched_remove_done(void *arg, int err)
{
    struct sched_rm *rm = arg;
    struct sched *s = rm->tok->s;
    struct sched_msg *m;

    if (!err || err == ENOENT)
        log_mail(rm->service, "%s: removed", rm->id);
    else
        log_warning(rm->service, "%s: cannot remove: %s; retrying at the next queue run", rm->id,
                    strerror(err));
    if (s && (m = sched_msg_find(s, rm->id)) && m->removing) {
        m->removing = 0;
        if (err && err != ENOENT && m->env && !m->gone && strcmp(rm->service, "qmgr") == 0) {
            /* still queued: record that every slot is done (a restart must not deliver
             * again), and remove it at the next queue run */
            m->remove_retry = 1;
            m->status_dirty = 1;
            sched_msg_settle(s, m);
        } else {
            m->gone = 1;
            if (sched_msg_idle(m))
                sched_msg_free(s, m);
        }
    }
    if (--rm->tok->refs == 0 && !rm->tok->s)
        free(rm->tok);
    free(rm);
}

/* sched_msg_remove - remove M from the spool; M is freed when nothing refers to it. */
static void sched_msg_remove(struct sched *s, struct sched_msg *m, const char *service)
{
    struct sched_rm *rm = calloc(1, sizeof(*rm));

    if (!rm)
        return; /* stays queued: deliveries are done, so a restart just removes it */
    m->removing = 1;
    sched_msg_drop_content(s, m);
    rm->tok = s->tok;
    rm->tok->refs++;
    rm->service = service;
    snprintf(rm->id, sizeof(rm->id), "%s", m->id);
    /* its file may be reused only when no delivery or load can still be reading it */
    spool_remove(s->spool, m->id, !m->loading && !m->njobs, sched_remove_done, rm);
}

/* sched_msg_settle - after a result or write: persist, remove when all done, or defer. */
static void sched_msg_settle(struct sched *s, struct sched_msg *m)
{
    int i, pending = 0;

    if (m->gone || m->removing) {
        if (m->gone && sched_msg_idle(m))
            sched_msg_free(s, m);
        return;
    }
    if (m->loading || m->writing)
        return;
    for (i = 0; i < m->nslots; i++)
        if (m->slots[i] == SCHED_SLOT_PENDING)
            pending++;
    if (!pending && !m->njobs && !m->remove_retry) {
        sched_msg_remove(s, m, "qmgr"); /* removes the status file too: no write needed */
        return;
    }
    if (pending && !m->njobs && (m->had_defer || m->round_final)) {
        /* the round is over with slots left: retry after the backoff */
        long delay;
        m->had_defer = 0;
        m->round_final = 0;
        if (m->attempts < STATUS_ATTEMPTS_MAX)
            m->attempts++; /* saturates: never a signed overflow */
        delay = sched_backoff(m->attempts, s->conf->minimal_backoff_time,
                              s->conf->maximal_backoff_time);
        m->next_retry = (long long)time(NULL) + delay;
        m->deferred = 1;
        sched_msg_drop_content(s, m); /* a retry is minutes away: read the spool then */
        /* the retry time goes to the status file, so that a restart keeps the backoff
         * instead of trying every deferred message at once (Postfix keeps it in the
         * deferred queue file's time stamp) */
        m->status_dirty = 1;
    }
    /* a final slot is written at once, even while other jobs of the message still
     * run or wait behind the concurrency limits: a crash or a stop must not
     * deliver it again. At shutdown sched_free writes synchronously instead. */
    if (m->status_dirty && !m->write_retry && !s->stopping) {
        sched_status_write(s, m);
        return;
    }
    if (!pending || m->njobs)
        return; /* other jobs of this message still run: decide when the last ends */
    if (!m->deferred && !s->stopping)
        sched_msg_activate(s, m); /* NONE results (shutdown) or recipients left over */
}

/* --- loading from the spool --- */

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
    sched_msg_settle(s, m);
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

/* sched_run_cb - the queue run (every queue_run_delay): deferred messages that are due. */
static void sched_run_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sched *s = arg;
    struct sched_msg *m, *next;
    long long now = time(NULL);

    (void)fd;
    (void)what;
    for (m = s->head; m; m = next) {
        next = m->next;
        if (m->removing || m->gone || m->loading)
            continue;
        if (m->remove_retry && !m->status_dirty && !m->writing && !m->njobs) {
            /* the removal failed last time (its status file says all done): again */
            m->remove_retry = 0;
            sched_msg_remove(s, m, "qmgr");
            continue;
        }
        if (m->write_retry) {
            /* the status write failed last time: again */
            m->write_retry = 0;
            sched_msg_settle(s, m);
        }
        if (m->deferred && m->next_retry <= now)
            sched_msg_activate(s, m);
    }
}

struct sched *sched_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        char **err)
{
    struct sched *s = calloc(1, sizeof(*s));
    struct timeval tv;

    if (!s)
        goto oom;
    s->base = base;
    s->conf = conf;
    s->spool = spool;
    s->hsize = 1024;
    s->htab = calloc(s->hsize, sizeof(*s->htab));
    s->dtab = calloc(SCHED_DEST_HSIZE, sizeof(*s->dtab));
    s->tok = calloc(1, sizeof(*s->tok));
    if (!s->htab || !s->dtab || !s->tok)
        goto oom;
    s->tok->s = s;
    s->io = workers_new(base, 2, "sched");
    s->run_ev = event_new(base, -1, EV_PERSIST, sched_run_cb, s);
    if (!s->io || !s->run_ev)
        goto oom;
    /* the queue run: Postfix scans the deferred queue every queue_run_delay; a
     * shorter backoff than that cannot take effect earlier, as in Postfix */
    tv.tv_sec = conf->queue_run_delay < conf->minimal_backoff_time ? conf->queue_run_delay
                                                                   : conf->minimal_backoff_time;
    if (tv.tv_sec < 1)
        tv.tv_sec = 1;
    tv.tv_usec = 0;
    event_add(s->run_ev, &tv);
    spool_set_notify(spool, sched_notify_cb, s);
    spool_foreach(spool, sched_foreach_cb, s);
    return s;
oom:
    if (err)
        *err = strdup("scheduler: out of memory");
    sched_free(s);
    return NULL;
}

void sched_set_ready(struct sched *s, void (*cb)(void *arg), void *arg)
{
    s->ready_cb = cb;
    s->ready_arg = arg;
    if (cb && s->nready)
        cb(arg);
}

/* sched_status_write_now - write M's status file on this thread (shutdown only: blocks). */
static void sched_status_write_now(struct sched *s, struct sched_msg *m)
{
    struct spool_status st;
    int err;

    st.attempts = m->attempts;
    st.next_retry = m->next_retry;
    st.nslots = m->nslots;
    st.slots = m->slots;
    st.hold = m->held;
    st.sync = m->hold_unsynced;
    err = spool_status_write(s->spool, m->id, &st);
    if (err && err != ENOENT)
        log_warning("qmgr",
                    "%s: cannot write status file: %s (recipients already delivered may "
                    "be delivered again after a restart)",
                    m->id, strerror(err));
    else
        m->status_dirty = 0;
}

void sched_free(struct sched *s)
{
    struct sched_dest *d;
    struct sched_jobx *j;
    struct sched_msg *m;
    int i;

    if (!s)
        return;
    s->stopping = 1;
    if (s->spool)
        spool_set_notify(s->spool, NULL, NULL);
    /* jobs still waiting for a connection: dropped (their slots stay pending) */
    for (d = s->dests; d; d = d->next) {
        while ((j = d->qhead)) {
            d->qhead = j->qnext;
            for (i = 0; i < j->pub.nrcpt; i++)
                j->m->active[j->rcpt[i]] = 0;
            j->m->njobs--;
            free(j->rcpt);
            free(j->result);
            free(j);
        }
        d->qtail = NULL;
    }
    s->nready = 0;
    if (s->io)
        workers_free(s->io); /* runs the pending done callbacks: loads and writes end */
    s->io = NULL;
    /* every final slot not yet on disk is written now (blocking is fine at shutdown),
     * so a restart never delivers it again */
    for (m = s->head; m; m = m->next)
        if (m->env && m->slots && m->status_dirty && !m->removing && !m->gone)
            sched_status_write_now(s, m);
    if (s->run_ev)
        event_free(s->run_ev);
    while ((d = s->dests)) {
        s->dests = d->next;
        free(d->name);
        free(d);
    }
    while (s->head)
        sched_msg_free(s, s->head);
    free(s->htab);
    free(s->dtab);
    if (s->tok) {
        s->tok->s = NULL;
        if (s->tok->refs == 0)
            free(s->tok);
    }
    free(s);
}

/* --- administration --- */

int sched_flush(struct sched *s)
{
    struct sched_msg *m, *next;
    int n = 0;

    for (m = s->head; m; m = next) {
        next = m->next;
        if (m->deferred && !m->held && !m->removing && !m->gone && !m->loading) {
            m->next_retry = 0;
            sched_msg_activate(s, m);
            n++;
        }
    }
    return n;
}

/* sched_msg_unqueue - drop M's jobs that no delivery has taken yet (their slots are free
 * again); jobs already taken run to their end. */
static void sched_msg_unqueue(struct sched *s, struct sched_msg *m)
{
    struct sched_dest *d, *dnext;
    struct sched_jobx **pp;
    int i;

    for (d = s->dests; d; d = dnext) {
        dnext = d->next;
        d->qtail = NULL;
        for (pp = &d->qhead; *pp;) {
            if ((*pp)->m == m) {
                struct sched_jobx *j = *pp;
                *pp = j->qnext;
                for (i = 0; i < j->pub.nrcpt; i++)
                    m->active[j->rcpt[i]] = 0;
                m->njobs--;
                s->nready--;
                free(j->rcpt);
                free(j->result);
                free(j);
            } else {
                d->qtail = *pp;
                pp = &(*pp)->qnext;
            }
        }
        sched_dest_release(s, d);
    }
}

int sched_delete(struct sched *s, const char *id)
{
    struct sched_msg *m, *next;
    int all = strcmp(id, "ALL") == 0, n = 0;

    for (m = s->head; m; m = next) {
        next = m->next;
        if (!all && strcmp(m->id, id) != 0)
            continue;
        if (!m->removing && !m->gone) {
            sched_msg_unqueue(s, m);
            m->deferred = 0;
            if (m->loading)
                m->gone = 1; /* the load completion frees it; the file is removed now */
            sched_msg_remove(s, m, "postsuper");
            n++;
        }
        if (!all)
            break;
    }
    return n;
}

/*
 * sched_hold_set - put M on hold (HOLD 1) or release it (0). The state is in memory at
 * once (no delivery starts from now on) and reaches the status file on a worker thread,
 * flushed (sched_hold_unsynced counts the changes not yet durable). A message being
 * loaded at start takes the hold when its load ends.
 */
static void sched_hold_set(struct sched *s, struct sched_msg *m, int hold)
{
    m->held = hold;
    counter_add(CNT_MQUEUE_HELD, hold ? 1 : -1);
    m->hold_unsynced = 1;
    m->status_dirty = 1;
    if (hold) {
        sched_msg_unqueue(s, m);
        log_mail("postsuper", "%s: placed on hold", m->id);
    } else {
        /* as Postfix's postsuper -H: into the deferred queue, due at the next queue run
         * unless a retry time from before the hold is still ahead (postqueue -f: now) */
        if (!m->deferred && !m->njobs) {
            m->deferred = 1;
            m->next_retry = (long long)time(NULL);
        }
        log_mail("postsuper", "%s: released from hold", m->id);
    }
    sched_msg_settle(s, m);
}

/* sched_hold_apply - hold (HOLD 1) or release every message ID names ("ALL": all). */
static int sched_hold_apply(struct sched *s, const char *id, int hold)
{
    struct sched_msg *m, *next;
    int all = strcmp(id, "ALL") == 0, n = 0;

    for (m = s->head; m; m = next) {
        next = m->next;
        if (!all && strcmp(m->id, id) != 0)
            continue;
        /* a message still loading cannot be known to be held: release skips it */
        if (!m->removing && !m->gone && m->held != hold && (hold || !m->loading)) {
            sched_hold_set(s, m, hold);
            n++;
        }
        if (!all)
            break;
    }
    return n;
}

int sched_hold(struct sched *s, const char *id)
{
    return sched_hold_apply(s, id, 1);
}

int sched_release(struct sched *s, const char *id)
{
    return sched_hold_apply(s, id, 0);
}

int sched_hold_unsynced(struct sched *s)
{
    struct sched_msg *m;
    int n = 0;

    for (m = s->head; m; m = m->next)
        n += m->hold_unsynced && !m->removing && !m->gone;
    return n;
}

int sched_flush_one(struct sched *s, const char *id)
{
    struct sched_msg *m = sched_msg_find(s, id);

    if (!m || !m->deferred || m->held || m->removing || m->gone || m->loading)
        return 0;
    m->next_retry = 0;
    sched_msg_activate(s, m);
    return 1;
}

/* sched_view_fill - the view of M (into caller-provided storage). */
static void sched_view_fill(struct sched_msg *m, struct sched_view_msg *v,
                            struct sched_view_rcpt *r)
{
    int i;

    memset(v, 0, sizeof(*v));
    v->queue_id = m->id;
    v->queue_name = m->held ? "hold" : m->deferred ? "deferred" : "active";
    v->arrival_time = m->env->arrival_us / 1000000;
    v->message_size = m->env->size;
    v->sender = m->env->sender;
    v->attempts = m->attempts;
    v->recipients = r;
    for (i = 0; i < m->env->nrcpt && i < m->nslots; i++) {
        if (m->slots[i] != SCHED_SLOT_PENDING)
            continue; /* mailq shows only recipients still to be delivered */
        r[v->nrecipients].address = m->env->rcpt[i].addr;
        r[v->nrecipients].orig_address = m->env->rcpt[i].orcpt;
        r[v->nrecipients].delay_reason = m->reason[i] ? m->reason[i] : "";
        r[v->nrecipients].status = m->active[i]  ? "active"
                                   : m->held     ? "hold"
                                   : m->deferred ? "deferred"
                                                 : "active";
        r[v->nrecipients].next_retry = m->deferred && !m->held ? m->next_retry : 0;
        v->nrecipients++;
    }
}

void sched_view_foreach(struct sched *s, int (*cb)(void *arg, const struct sched_view_msg *m),
                        void *arg)
{
    struct sched_msg *m;
    struct sched_view_msg v;

    for (m = s->head; m; m = m->next) {
        struct sched_view_rcpt *r;
        int stop;
        if (m->loading || m->removing || m->gone || !m->env)
            continue;
        r = calloc((size_t)m->nslots + 1, sizeof(*r));
        if (!r)
            return;
        sched_view_fill(m, &v, r);
        stop = cb(arg, &v);
        free(r);
        if (stop)
            return;
    }
}

int sched_view_get(struct sched *s, const char *id,
                   void (*cb)(void *arg, const struct sched_view_msg *m), void *arg)
{
    struct sched_msg *m = sched_msg_find(s, id);
    struct sched_view_msg v;
    struct sched_view_rcpt *r;

    if (!m || m->loading || m->removing || m->gone || !m->env)
        return -1;
    r = calloc((size_t)m->nslots + 1, sizeof(*r));
    if (!r)
        return -1;
    sched_view_fill(m, &v, r);
    cb(arg, &v);
    free(r);
    return 0;
}
