/*
 * relay.c - the delivery engine's glue: jobs in, results out. Takes jobs from
 * the scheduler within the concurrency limits (smtp_destination_concurrency_limit
 * per destination, default_process_limit in all), feeds idle connections first,
 * and when a job ends has the scheduler make its decisions on the whole job
 * (sched_job_decide: expiry, double bounces), then the notices it says are due
 * queued (relay_notify.c) before it records the results (sched_job_done).
 * Not here: the SMTP conversation (relay_client.c, relay_xact.c), notifications
 * (relay_notify.c).
 */
#include "relay_int.h"
#include "relay_mtasts.h"

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/nexthop.h"
#include "mta/spool.h"
#include "mta/workers.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void relay_drain_check(struct relay *r);

/* relay_dest_limit - the most connections to one destination, idle ones included
 * (smtp_destination_concurrency_limit, 1 with smtp_destination_rate_delay); the scheduler
 * keeps the deliveries within its slow-start window below that (sched_dest.c). */
int relay_dest_limit(const struct relay *r)
{
    const struct conf *c = r->conf;

    if (c->smtp_destination_rate_delay > 0)
        return 1;
    return (int)(c->smtp_destination_concurrency_limit > 0
                     ? c->smtp_destination_concurrency_limit
                     : c->default_destination_concurrency_limit);
}

/* relay_can_cb - may a new connection to DEST start now? */
int relay_can_cb(void *arg, const char *dest)
{
    struct relay *r = arg;
    struct relay_dest *d;

    if (r->nconn >= r->conf->default_process_limit)
        return 0;
    LIST_FOREACH(d, &r->dests, entry)
    {
        if (strcmp(d->name, dest) == 0)
            return d->nconn < relay_dest_limit(r);
    }
    return 1;
}

/* relay_kick - the scheduler has ready jobs: feed idle connections first, then open new ones. */
void relay_kick(void *arg)
{
    struct relay *r = arg;
    struct relay_conn *c, *next;
    struct sched_job *job;

    if (r->stopping)
        return;
    for (c = TAILQ_FIRST(&r->conns); c; c = next) {
        next = relay_conn_next(c);
        if (relay_conn_is_idle(c))
            relay_conn_idle_take(c);
    }
    while (r->nconn < r->conf->default_process_limit &&
           (job = sched_job_take(r->sched, relay_can_cb, r))) {
        if (!relay_conn_new(r, job))
            break; /* out of memory: the job was handed back */
    }
}

static void relay_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    relay_kick(arg);
}

static void relay_kick_later(struct relay *r)
{
    if (r->kick_ev && !r->stopping)
        event_active(r->kick_ev, EV_TIMEOUT, 0);
}

/* --- end of a job: notifications (relay_notify.c), then the scheduler --- */

/* relay_conn_gone - the clients' conn_gone hook: capacity is free again, and relay_stop may
 * have waited for this connection. */
static void relay_conn_gone(struct relay *r)
{
    relay_kick_later(r);
    relay_drain_check(r);
}

/* relay_job_release - hand the job back to the scheduler and free the relay side. */
static void relay_job_release(struct relay *r, struct relay_job *rj)
{
    int i;

    if (rj->listed) {
        rj->listed = 0;
        TAILQ_REMOVE(&r->notifying, rj, nentry);
    }
    sched_job_done(r->sched, rj->job);
    for (i = 0; rj->ri && i < rj->job_nrcpt_saved; i++) {
        free(rj->ri[i].diag);
        free(rj->ri[i].remote);
    }
    free(rj->ri);
    relay_stream_free(rj->st);
    free(rj);
    relay_drain_check(r);
}

/* relay_job_finish - every recipient has a result (or NONE): expiry, notifications, then
 * sched_job_done (through relay_job_release); the clients' job_ended hook. */
static void relay_job_finish(struct relay *r, struct relay_job *rj)
{
    struct sched_job *job = rj->job;

    rj->job_nrcpt_saved = job->nrcpt;
    /* the file is closed before the scheduler hears of the job: it may then recycle it */
    relay_stream_free(rj->st);
    rj->st = NULL;
    /* the lifetimes are the scheduler's: it turns too old deferrals into bounces, whose
     * notifications are made here (not while stopping: the next start decides) */
    sched_job_decide(r->sched, job, r->stopping);
    /* on the notifying list until released, so relay_free can hand it back */
    TAILQ_INSERT_HEAD(&r->notifying, rj, nentry);
    rj->listed = 1;
    relay_notify_begin(r, rj, relay_job_release);
}

/* --- life cycle --- */

struct relay *relay_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        struct sched *sched, struct dns *dns, char **err)
{
    struct relay *r = calloc(1, sizeof(*r));
    struct nexthop nh;
    char *perr = NULL;

    if (!r)
        goto oom;
    r->base = base;
    TAILQ_INIT(&r->conns);
    TAILQ_INIT(&r->notifying);
    LIST_INIT(&r->dests);
    r->conf = conf;
    r->spool = spool;
    r->sched = sched;
    r->dns = dns;
    if (conf->smart_relay[0] && nexthop_parse(conf->smart_relay, &nh, &perr) < 0) {
        if (err && asprintf(err, "smart_relay = %s: %s", conf->smart_relay,
                            perr ? perr : "bad next hop") < 0)
            *err = NULL;
        free(perr);
        free(r);
        return NULL;
    }
    if (conf->cc_mta[0]) {
        if (conf->smart_relay[0])
            log_warning("qmgr", "cc_mta = %s is ignored because smart_relay is set", conf->cc_mta);
        else if (nexthop_parse(conf->cc_mta, &nh, &perr) < 0) {
            if (err &&
                asprintf(err, "cc_mta = %s: %s", conf->cc_mta, perr ? perr : "bad next hop") < 0)
                *err = NULL;
            free(perr);
            free(r);
            return NULL;
        }
    }
    r->myhostname = conf->myhostname;
    r->tok = calloc(1, sizeof(*r->tok));
    r->io = workers_new(base, 2, "relay");
    if (!r->tok || !r->io)
        goto oom;
    r->tok->r = r;
    r->job_ended = relay_job_finish;
    r->conn_gone = relay_conn_gone;
    r->kick_ev = event_new(base, -1, 0, relay_kick_cb, r);
    if (!r->kick_ev)
        goto oom;
    /* the TLS context is made at the first STARTTLS (relay_tls_ctx): OpenSSL's
     * initialisation costs ~4 MB resident that a relay without TLS peers never needs */
    r->tls_wanted = strcmp(conf->smtp_tls_security_level, "none") != 0;
    if (conf->smtp_mta_sts)
        relay_sts_cached(r, ""); /* starts reading DATA/mta-sts on a worker now */
    sched_set_ready(sched, relay_kick, r);
    return r;
oom:
    if (err)
        *err = strdup("relay: out of memory");
    relay_free(r);
    return NULL;
}

/* relay_drain_done - relay_stop is over (or its time is up): tell the caller once. */
static void relay_drain_done(struct relay *r)
{
    void (*cb)(void *) = r->drained;

    r->drained = NULL;
    if (r->drain_ev)
        event_del(r->drain_ev);
    if (cb)
        cb(r->drained_arg);
}

static void relay_drain_check(struct relay *r)
{
    if (r->drained && !r->freeing && TAILQ_EMPTY(&r->conns) && TAILQ_EMPTY(&r->notifying))
        relay_drain_done(r);
}

static void relay_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;

    (void)fd;
    (void)what;
    if (!TAILQ_EMPTY(&r->conns))
        log_warning("smtp", "stop: %d outbound connection(s) still waiting for a reply; closing",
                    r->nconn);
    relay_drain_done(r);
}

void relay_stop(struct relay *r, void (*drained)(void *arg), void *arg)
{
    struct relay_conn *c, *next;
    struct timeval tv = {RELAY_STOP_SECONDS, 0};

    if (!r) {
        if (drained)
            drained(arg);
        return;
    }
    if (r->stopping)
        return;
    r->stopping = 1;
    r->drained = drained;
    r->drained_arg = arg;
    if (r->sched)
        sched_set_ready(r->sched, NULL, NULL);
    /* a connection whose server has the whole message must hear the reply, or the
     * recipients would be sent again after the restart; every other one closes now
     * (nothing was handed over: its recipients simply stay queued) */
    for (c = TAILQ_FIRST(&r->conns); c; c = next) {
        next = relay_conn_next(c);
        if (!relay_conn_awaits_dot(c))
            relay_conn_free(c);
    }
    if (!r->drain_ev)
        r->drain_ev = evtimer_new(r->base, relay_drain_timeout_cb, r);
    if (r->drain_ev)
        evtimer_add(r->drain_ev, &tv);
    relay_drain_check(r);
    if (r->drained && !r->drain_ev)
        relay_drain_done(r); /* out of memory: no time limit possible */
}

void relay_free(struct relay *r)
{
    struct relay_dest *d;
    int rounds = 0;

    if (!r)
        return;
    r->stopping = 1;
    r->freeing = 1;
    r->drained = NULL;
    if (r->drain_ev)
        event_free(r->drain_ev);
    r->drain_ev = NULL;
    if (r->sched)
        sched_set_ready(r->sched, NULL, NULL);
    if (r->dns)
        dns_cancel_all(r->dns);
    while (!TAILQ_EMPTY(&r->conns))
        relay_conn_free(TAILQ_FIRST(&r->conns));
    /* notifications in flight (built on r->io, committed by the spool): finish them,
     * so a bounced recipient is recorded bounced only with its bounce queued, and
     * a bounce that made it to the spool is not made again after the restart */
    while (!TAILQ_EMPTY(&r->notifying) && r->io && rounds++ < 1000) {
        if (workers_pending(r->io) > 0)
            workers_run_done(r->io, 1000);
        else if (spool_drain(r->spool) == 0)
            break; /* nothing left that could end them */
    }
    if (r->io)
        workers_free(r->io); /* pending loads and notification builds end here */
    while (!TAILQ_EMPTY(&r->notifying)) {
        /* cannot happen unless a commit hangs: their recipients stay queued */
        struct relay_job *rj = TAILQ_FIRST(&r->notifying);
        int i;
        for (i = 0; i < rj->job->nrcpt; i++)
            sched_job_unbounce(r->sched, rj->job, i, SCHED_RESULT_NONE);
        relay_job_release(r, rj);
    }
    if (r->kick_ev)
        event_free(r->kick_ev);
    while ((d = LIST_FIRST(&r->dests))) {
        LIST_REMOVE(d, entry);
        free(d->name);
        free(d);
    }
    relay_sts_free(r);
    if (r->tls)
        SSL_CTX_free(r->tls);
    if (r->tok) {
        r->tok->r = NULL;
        if (r->tok->refs == 0)
            free(r->tok);
    }
    free(r);
}
