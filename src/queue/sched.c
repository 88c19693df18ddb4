/*
 * sched.c - the in-memory scheduler (Postfix qmgr's job): every queued message
 * with one state per delivery slot (each recipient, plus each recipient's cc_mta
 * copy when cc_mta is set), grouped into jobs per destination, handed to the
 * relay round-robin over destinations, and retried with clamped exponential
 * backoff. A slot that is final is written to the status file before it could
 * be forgotten, so a restart never delivers it again.
 * It calls down into sched_msg.c (the messages by ID), sched_load.c and
 * sched_persist.c; those reach back only through sched.settle, which it sets.
 * Not here: loading at start and intake (sched_load.c), writing the status file
 * and removing (sched_persist.c), administration (sched_admin.c), how a job is
 * delivered (src/relay) or how messages are stored (spool).
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

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

struct evbuffer *sched_job_content(struct sched *s, const struct sched_job *job)
{
    const struct sched_jobx *j = (const struct sched_jobx *)job;
    (void)s;
    return j->m->removing || j->m->gone ? NULL : j->m->content;
}

/* --- destinations --- */

/* sched_dest_hash - the hash of destination NAME of KIND. */
static size_t sched_dest_hash(const char *name, enum sched_dest_kind kind)
{
    return htab_hash_str(name) * 3u + (size_t)kind;
}

struct sched_dest_key {
    const char *name;
    enum sched_dest_kind kind;
};

/* sched_dest_match - whether destination N is KEY's name and kind. */
static int sched_dest_match(const struct htab_node *n, const void *key)
{
    const struct sched_dest *d = HTAB_ENTRY(n, const struct sched_dest, hnode);
    const struct sched_dest_key *k = key;

    return d->kind == k->kind && strcmp(d->name, k->name) == 0;
}

/* sched_dest_get - the destination NAME of KIND, created when missing (NULL: out of memory). */
static struct sched_dest *sched_dest_get(struct sched *s, const char *name,
                                         enum sched_dest_kind kind)
{
    struct sched_dest_key key = {name, kind};
    size_t h = sched_dest_hash(name, kind);
    struct htab_node *n = htab_find(&s->dest_tab, h, sched_dest_match, &key);
    struct sched_dest *d;

    if (n)
        return HTAB_ENTRY(n, struct sched_dest, hnode);
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->name = strdup(name);
    if (!d->name) {
        free(d);
        return NULL;
    }
    d->kind = kind;
    TAILQ_INIT(&d->jobs);
    if (htab_insert(&s->dest_tab, &d->hnode, h) < 0) {
        free(d->name);
        free(d);
        return NULL;
    }
    TAILQ_INSERT_HEAD(&s->dests, d, link);
    return d;
}

/* sched_dest_release - free D once it has no ready and no taken job (keeps the
 * destination table as small as the active queue). */
void sched_dest_release(struct sched *s, struct sched_dest *d)
{
    if (!TAILQ_EMPTY(&d->jobs) || d->ntaken > 0 || sched_dest_busy(d))
        return; /* a dead destination is kept until it is unthrottled (sched_dest.c) */
    htab_remove(&s->dest_tab, &d->hnode);
    if (s->rr == d)
        s->rr = TAILQ_PREV(d, sched_dest_list, link); /* round robin goes on after D */
    TAILQ_REMOVE(&s->dests, d, link);
    sched_dest_fini(d);
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
    TAILQ_INSERT_TAIL(&d->jobs, j, qlink);
    s->nready++;
    sched_dest_pushed(s, d);
}

/* sched_msg_activate - M is due: log it entering the active queue and queue its pending slots as
 * jobs. */
void sched_msg_activate(struct sched *s, struct sched_msg *m)
{
    struct sched_jobx *open[16];
    int nopen = 0, i, k, any = 0, cap = sched_dest_rcpt_limit(s);

    if (m->held)
        return; /* the one gate: no path (queue run, flush, restart) starts a held message */
    if (!m->env) {
        sched_msg_due(s, m, 1); /* parked: read back first, as the active set has room */
        return;
    }
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
            if (open[k]->dest == d && open[k]->pub.nrcpt < cap) {
                j = open[k];
                break;
            }
        if (!j) {
            j = calloc(1, sizeof(*j));
            if (!j)
                continue;
            /* smtp_destination_recipient_limit recipients per job at most */
            k = cap < m->nslots - i ? cap : m->nslots - i;
            j->rcpt = calloc((size_t)k, sizeof(int));
            j->result = calloc((size_t)k, sizeof(int));
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
    start = s->rr && TAILQ_NEXT(s->rr, link) ? TAILQ_NEXT(s->rr, link) : TAILQ_FIRST(&s->dests);
    d = start;
    for (pass = 0; d && pass < 2;) {
        if (!TAILQ_EMPTY(&d->jobs) && sched_dest_may_take(s, d) && (!can || can(arg, d->name))) {
            j = TAILQ_FIRST(&d->jobs);
            TAILQ_REMOVE(&d->jobs, j, qlink);
            s->nready--;
            s->rr = d;
            d->ntaken++;
            j->pub.dispatch_us = clock_now_us();
            j->taken = 1;
            return &j->pub;
        }
        d = TAILQ_NEXT(d, link);
        if (!d) {
            d = TAILQ_FIRST(&s->dests);
            pass++;
        }
        if (d == start)
            break;
    }
    return NULL;
}

enum sched_result sched_job_report(struct sched *s, struct sched_job *job, int i,
                                   enum sched_class cls, const char *text)
{
    struct sched_jobx *j = (struct sched_jobx *)job;
    enum sched_result res;
    int slot;

    if (i < 0 || i >= job->nrcpt || job->result[i] != SCHED_RESULT_NONE || cls == SCHED_CLASS_NONE)
        return SCHED_RESULT_NONE; /* one result per attempt */
    /* the decision table: what to do is the scheduler's (Postfix's qmgr acts on the
     * delivery agent's per-recipient status the same way); the lifetimes come at the
     * end of the job (sched_job_decide), after every recipient was tried */
    res = cls == SCHED_CLASS_SUCCESS ? SCHED_RESULT_SENT
          : cls == SCHED_CLASS_PERM  ? SCHED_RESULT_BOUNCE
                                     : SCHED_RESULT_DEFER;
    job->result[i] = res;
    if (res == SCHED_RESULT_SENT) {
        counter_add(CNT_DELIVERED, 1);
    } else if (res == SCHED_RESULT_BOUNCE) {
        counter_add(CNT_BOUNCED, 1);
    } else {
        counter_add(CNT_DEFERRED, 1);
        slot = job->rcpt[i];
        if (j->m->reason) {
            /* stored printable: `mtactl queue` shows it to a terminal (Postfix printable()) */
            char *p = text_printable(strdup(text ? text : ""), '?');
            sched_reason_put(s, j->m->reason[slot]);
            j->m->reason[slot] = p ? sched_reason_get(s, p) : NULL;
            free(p);
        }
    }
    (void)s;
    return res;
}

int sched_job_decide(struct sched *s, struct sched_job *job, int stopping)
{
    const struct spool_envelope *env = job->env;
    long long age = time(NULL) - env->arrival_us / 1000000;
    long life = env->sender[0] ? s->conf->maximal_queue_lifetime : s->conf->bounce_queue_lifetime;
    int i, n = 0, nullbounce = 0;

    for (i = 0; !stopping && age >= life && i < job->nrcpt; i++)
        if (job->result[i] == SCHED_RESULT_DEFER) {
            /* too old: return it (Postfix: "status=expired, returned to sender") */
            job->result[i] = SCHED_RESULT_BOUNCE;
            counter_add(CNT_BOUNCED, 1);
            n++;
        }
    if (n)
        log_mail("qmgr", "%s: from=<%s>, status=expired, returned to sender", job->queue_id,
                 env->sender);
    for (i = 0; i < job->nrcpt; i++)
        if (job->result[i] == SCHED_RESULT_BOUNCE && !env->sender[0] && job->rcpt[i] < env->nrcpt)
            nullbounce = 1;
    if (nullbounce)
        log_mail("bounce",
                 "%s: undeliverable mail from the null sender: no notification sent "
                 "(double bounce)",
                 job->queue_id);
    return n;
}

enum sched_notice sched_job_notice(const struct sched_job *job, int i)
{
    int slot, notify;

    if (i < 0 || i >= job->nrcpt)
        return SCHED_NOTICE_NONE;
    slot = job->rcpt[i];
    if (slot >= job->env->nrcpt || !job->env->sender[0])
        return SCHED_NOTICE_NONE; /* cc_mta copies and bounces themselves never get one */
    notify = job->env->rcpt[slot].notify;
    if (notify & SPOOL_NOTIFY_NEVER)
        return SCHED_NOTICE_NONE;
    if (job->result[i] == SCHED_RESULT_SENT && (notify & SPOOL_NOTIFY_SUCCESS))
        return SCHED_NOTICE_SUCCESS;
    if (job->result[i] == SCHED_RESULT_BOUNCE && (!notify || (notify & SPOOL_NOTIFY_FAILURE)))
        return SCHED_NOTICE_FAILURE;
    return SCHED_NOTICE_NONE;
}

void sched_job_unbounce(struct sched *s, struct sched_job *job, int i, enum sched_result to)
{
    (void)s;
    if (i >= 0 && i < job->nrcpt && job->result[i] == SCHED_RESULT_BOUNCE &&
        (to == SCHED_RESULT_DEFER || to == SCHED_RESULT_NONE))
        job->result[i] = to;
}

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
        sched_dest_job_done(s, j->dest, j); /* feedback, rate delay (sched_dest.c) */
        sched_dest_release(s, j->dest);
    }
    free(j->fail_reason);
    free(j->rcpt);
    free(j->result);
    free(j);
    sched_msg_settle(s, m);
}

/* sched_msg_settle - after a result or write: persist, remove when all done, or defer. */
void sched_msg_settle(struct sched *s, struct sched_msg *m)
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
        if ((m->deferred || m->held) && !m->njobs)
            sched_msg_park(s, m); /* the write needs only the slots: room for the next */
        return;
    }
    if (!pending || m->njobs)
        return; /* other jobs of this message still run: decide when the last ends */
    if (s->stopping)
        return;
    if (!m->deferred && !m->held && m->env &&
        s->nloaded > (size_t)s->conf->qmgr_message_active_limit) {
        /* due, but the active set is full (new mail or a start-up load beyond the limit):
         * it waits parked, first in line among new mail */
        m->deferred = 1;
        sched_msg_park(s, m);
        sched_msg_due(s, m, 0);
        return;
    }
    if (!m->deferred && !m->held)
        sched_msg_activate(s, m); /* NONE results (shutdown) or recipients left over */
    else
        sched_msg_park(s, m); /* waits for its retry time or its release outside the active set */
}

/* sched_run_cb - the queue run (every queue_run_delay): deferred messages that are due,
 * found in chunks (sched_active.c). */
static void sched_run_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sched_run_start(arg, 0);
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
    TAILQ_INIT(&s->msgs);
    TAILQ_INIT(&s->dests);
    TAILQ_INIT(&s->recover);
    TAILQ_INIT(&s->due_new);
    TAILQ_INIT(&s->due_old);
    s->settle = sched_msg_settle;
    if (sched_dest_policy(s, err) < 0) {
        sched_free(s);
        return NULL;
    }
    s->tok = calloc(1, sizeof(*s->tok));
    if (!s->tok)
        goto oom;
    s->tok->s = s;
    s->io = workers_new(base, 2, "sched");
    s->run_ev = event_new(base, -1, EV_PERSIST, sched_run_cb, s);
    if (!s->io || !s->run_ev || sched_active_init(s) < 0)
        goto oom;
    /* the queue run: Postfix scans the deferred queue every queue_run_delay; a
     * shorter backoff than that cannot take effect earlier, as in Postfix */
    tv.tv_sec = conf->queue_run_delay < conf->minimal_backoff_time ? conf->queue_run_delay
                                                                   : conf->minimal_backoff_time;
    if (tv.tv_sec < 1)
        tv.tv_sec = 1;
    tv.tv_usec = 0;
    event_add(s->run_ev, &tv);
    sched_load_start(s);
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
    TAILQ_FOREACH(d, &s->dests, link)
    {
        while ((j = TAILQ_FIRST(&d->jobs))) {
            TAILQ_REMOVE(&d->jobs, j, qlink);
            for (i = 0; i < j->pub.nrcpt; i++)
                j->m->active[j->rcpt[i]] = 0;
            j->m->njobs--;
            free(j->rcpt);
            free(j->result);
            free(j);
        }
    }
    s->nready = 0;
    if (s->io)
        workers_free(s->io); /* runs the pending done callbacks: loads and writes end */
    s->io = NULL;
    /* every final slot not yet on disk is written now (blocking is fine at shutdown),
     * so a restart never delivers it again */
    TAILQ_FOREACH(m, &s->msgs, link)
    if ((m->env || m->park) && m->slots && m->status_dirty && !m->removing && !m->gone)
        sched_status_write_now(s, m);
    if (s->run_ev)
        event_free(s->run_ev);
    sched_active_free(s);
    while ((d = TAILQ_FIRST(&s->dests))) {
        TAILQ_REMOVE(&s->dests, d, link);
        sched_dest_fini(d);
        free(d->name);
        free(d);
    }
    htab_free(&s->dest_tab);
    while ((m = TAILQ_FIRST(&s->msgs)))
        sched_msg_free(s, m);
    htab_free(&s->msg_tab);
    htab_free(&s->reason_tab); /* empty now: every message gave its reasons back */
    if (s->tok) {
        s->tok->s = NULL;
        if (s->tok->refs == 0)
            free(s->tok);
    }
    free(s);
}
