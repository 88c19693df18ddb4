/*
 * sched_dest.c - Postfix qmgr's per-destination rules for the scheduler's
 * destinations (a recipient domain, the smart_relay or the cc_mta host): the
 * concurrency window with slow start (initial_destination_concurrency, grown by
 * positive feedback, shrunk by negative feedback, never above
 * smtp_destination_concurrency_limit), throttling after
 * default_destination_concurrency_failed_cohort_limit failed cohorts (the
 * destination is "dead": its mail is deferred at once with "delivery
 * temporarily suspended" until minimal_backoff_time has passed, as Postfix's
 * qmgr_queue_throttle does), smtp_destination_rate_delay (concurrency 1, the
 * next delivery no earlier than the delay after the last one ended), and
 * smtp_destination_recipient_limit. Only the destination that failed backs off.
 * Not here: the destination table and the round robin (sched.c), connections
 * and their reuse (src/relay).
 */
#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/log.h"
#include "mta/sched.h"
#include "sched_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* sched_dest_feedback_parse - Postfix's feedback syntax: "N/concurrency" (*PER set) or a
 * number N, 0 < N <= 1. 0, or -1 when malformed. */
static int sched_dest_feedback_parse(const char *v, double *val, int *per)
{
    char *end;
    double n = strtod(v, &end);

    if (end == v || n <= 0 || n > 1)
        return -1;
    *per = 0;
    if (*end == '/') {
        if (strcmp(end + 1, "concurrency") != 0)
            return -1;
        *per = 1;
    } else if (*end) {
        return -1;
    }
    *val = n;
    return 0;
}

int sched_dest_policy(struct sched *s, char **err)
{
    const struct conf *c = s->conf;
    struct sched_dpol *p = &s->dpol;
    const char *name = NULL;

    memset(p, 0, sizeof(*p));
    p->limit =
        (int)(c->smtp_destination_concurrency_limit > 0 ? c->smtp_destination_concurrency_limit
                                                        : c->default_destination_concurrency_limit);
    p->rate_delay_us = (long long)c->smtp_destination_rate_delay * 1000000;
    if (p->rate_delay_us > 0)
        p->limit = 1; /* Postfix: a rate delay means one delivery at a time */
    p->initial = (int)c->initial_destination_concurrency;
    if (p->initial > p->limit)
        p->initial = p->limit;
    p->rcpt_limit =
        (int)(c->smtp_destination_recipient_limit > 0 ? c->smtp_destination_recipient_limit
                                                      : c->default_destination_recipient_limit);
    p->cohort_limit = (int)c->default_destination_concurrency_failed_cohort_limit;
    if (sched_dest_feedback_parse(c->default_destination_concurrency_positive_feedback, &p->pos,
                                  &p->pos_per) < 0)
        name = "default_destination_concurrency_positive_feedback";
    else if (sched_dest_feedback_parse(c->default_destination_concurrency_negative_feedback,
                                       &p->neg, &p->neg_per) < 0)
        name = "default_destination_concurrency_negative_feedback";
    if (name) {
        if (err && asprintf(err,
                            "bad value for %s: expected a number (0 < N <= 1) or "
                            "N/concurrency",
                            name) < 0)
            *err = NULL;
        return -1;
    }
    return 0;
}

int sched_dest_rcpt_limit(const struct sched *s)
{
    return s->dpol.rcpt_limit > 0 ? s->dpol.rcpt_limit : 50;
}

int sched_dest_busy(const struct sched_dest *d)
{
    return d->dead || d->pinned || (d->timer_ev && evtimer_pending(d->timer_ev, NULL));
}

void sched_dest_fini(struct sched_dest *d)
{
    if (d->timer_ev)
        event_free(d->timer_ev);
    if (d->defer_ev)
        event_free(d->defer_ev);
    d->timer_ev = d->defer_ev = NULL;
    free(d->reason);
    d->reason = NULL;
}

/* sched_dest_log_window - the destination's state, in the words of Postfix's
 * destination_concurrency_feedback_debug (QMGR_LOG_WINDOW). */
static void sched_dest_log_window(struct sched *s, struct sched_dest *d, const char *what)
{
    log_mail("qmgr", "%s: queue smtp:%s: limit %d window %d success %g failure %g fail_cohorts %g",
             what, d->name, s->dpol.limit, d->dead ? 0 : d->window, d->success, d->failure,
             d->fail_cohorts);
}

static void sched_dest_wake_cb(evutil_socket_t fd, short what, void *arg);
static void sched_dest_defer_cb(evutil_socket_t fd, short what, void *arg);

/* sched_dest_events - D's two events, made when first needed. -1: out of memory. */
static int sched_dest_events(struct sched *s, struct sched_dest *d)
{
    d->sched = s;
    if (!d->timer_ev)
        d->timer_ev = evtimer_new(s->base, sched_dest_wake_cb, d);
    if (!d->defer_ev)
        d->defer_ev = event_new(s->base, -1, 0, sched_dest_defer_cb, d);
    return d->timer_ev && d->defer_ev ? 0 : -1;
}

/* sched_dest_arm - wake D after US microseconds (0: on the next loop turn). */
static void sched_dest_arm(struct sched *s, struct sched_dest *d, long long us)
{
    struct timeval tv;

    if (us < 0)
        us = 0;
    tv.tv_sec = (time_t)(us / 1000000);
    tv.tv_usec = (suseconds_t)(us % 1000000);
    if (sched_dest_events(s, d) == 0)
        evtimer_add(d->timer_ev, &tv);
}

int sched_dest_may_take(struct sched *s, struct sched_dest *d)
{
    long long now;

    if (d->dead)
        return 0;
    if (d->window <= 0)
        d->window = s->dpol.initial; /* a new destination starts slow */
    if (d->ntaken >= d->window)
        return 0;
    if (s->dpol.rate_delay_us > 0 && (now = clock_now_us()) < d->next_us) {
        if (!d->timer_ev || !evtimer_pending(d->timer_ev, NULL))
            sched_dest_arm(s, d, d->next_us - now);
        return 0;
    }
    return 1;
}

/* sched_dest_unthrottle - positive feedback (Postfix qmgr_queue_unthrottle): a dead
 * destination comes back with the concurrency in use or the initial one; a live one grows
 * its window by one per window's worth of feedback, while it is below the limit and not
 * far ahead of what is in use. */
static void sched_dest_unthrottle(struct sched *s, struct sched_dest *d)
{
    const struct sched_dpol *p = &s->dpol;
    double fb;

    d->fail_cohorts = 0;
    if (d->dead) {
        d->dead = 0;
        if (d->timer_ev)
            evtimer_del(d->timer_ev);
        d->window = d->ntaken > 0 ? d->ntaken : p->initial;
        d->success = d->failure = 0;
        free(d->reason);
        d->reason = NULL;
        sched_dest_log_window(s, d, "qmgr_queue_unthrottle");
        return;
    }
    if (d->window <= 0)
        d->window = p->initial;
    if (d->window < p->limit && d->window < d->ntaken + p->initial) {
        fb = p->pos_per ? p->pos / d->window : p->pos;
        d->success += fb;
        while (d->success + fb / 2 >= 1) {
            d->window++;
            d->success -= 1;
            d->failure = 0;
        }
        if (d->window > p->limit)
            d->window = p->limit;
    }
}

/* sched_dest_throttle - negative feedback (Postfix qmgr_queue_throttle): one failed
 * cohort more; at the cohort limit the destination is dead for minimal_backoff_time and
 * its waiting mail is deferred, else the window shrinks (never below 1). */
static void sched_dest_throttle(struct sched *s, struct sched_dest *d, const char *dsn,
                                const char *reason)
{
    const struct sched_dpol *p = &s->dpol;
    double fb;

    if (d->dead)
        return;
    if (d->window <= 0)
        d->window = p->initial;
    d->fail_cohorts += 1.0 / d->window;
    if (p->cohort_limit > 0 && d->fail_cohorts >= p->cohort_limit) {
        d->dead = 1;
        snprintf(d->dsn, sizeof(d->dsn), "%s", dsn && dsn[0] ? dsn : "4.4.1");
        free(d->reason);
        d->reason = strdup(reason && reason[0] ? reason : "destination not available");
        sched_dest_log_window(s, d, "qmgr_queue_throttle");
        log_warning("qmgr", "%s: destination throttled for %lds after %g failed cohort(s): %s",
                    d->name, s->conf->minimal_backoff_time, d->fail_cohorts,
                    d->reason ? d->reason : "");
        if (d->timer_ev)
            evtimer_del(d->timer_ev);
        sched_dest_arm(s, d, (long long)s->conf->minimal_backoff_time * 1000000);
        if (!TAILQ_EMPTY(&d->jobs) && d->defer_ev)
            event_active(d->defer_ev, EV_TIMEOUT, 0);
        return;
    }
    fb = p->neg_per ? p->neg / d->window : p->neg;
    d->failure -= fb;
    while (d->failure - fb / 2 < 0) {
        d->window--;
        d->success = 0;
        d->failure += 1;
    }
    if (d->window < 1)
        d->window = 1;
}

void sched_dest_job_done(struct sched *s, struct sched_dest *d, struct sched_jobx *j)
{
    int i, tried = 0;

    for (i = 0; i < j->pub.nrcpt; i++)
        if (j->result[i] != SCHED_RESULT_NONE)
            tried = 1;
    if (j->site_fail)
        sched_dest_throttle(s, d, j->fail_dsn, j->fail_reason);
    else if (tried)
        sched_dest_unthrottle(s, d);
    if (d->dead || s->stopping)
        return;
    if (s->dpol.rate_delay_us > 0) {
        d->next_us = clock_now_us() + s->dpol.rate_delay_us;
        if (d->timer_ev)
            evtimer_del(d->timer_ev);
        sched_dest_arm(s, d, s->dpol.rate_delay_us);
    } else if (!TAILQ_EMPTY(&d->jobs) && d->ntaken + 1 >= d->window &&
               (!d->timer_ev || !evtimer_pending(d->timer_ev, NULL))) {
        /* the window was full, so no connection could take the next: now one can (a
         * connection that ended a job asks by itself, but maybe before this release) */
        sched_dest_arm(s, d, 0);
    }
}

void sched_dest_pushed(struct sched *s, struct sched_dest *d)
{
    if (d->dead && sched_dest_events(s, d) == 0)
        event_active(d->defer_ev, EV_TIMEOUT, 0);
}

/* sched_dest_wake_cb - the unthrottle time, or the rate delay, is over (or the window has
 * room): tell the relay that D has work, then free D when it has none. */
static void sched_dest_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sched_dest *d = arg;
    struct sched *s = d->sched;

    (void)fd;
    (void)what;
    if (d->dead)
        sched_dest_unthrottle(s, d);
    d->pinned = 1; /* the relay may end jobs of D from inside the callback */
    if (!TAILQ_EMPTY(&d->jobs) && !s->stopping && s->ready_cb)
        s->ready_cb(s->ready_arg);
    d->pinned = 0;
    sched_dest_release(s, d);
}

/* sched_dest_fmt_delay - SECONDS as Postfix prints delays ("0", "0.01", "1.2", "17"). */
static void sched_dest_fmt_delay(double sec, char *buf, size_t len)
{
    char *p;

    if (sec < 0.005) {
        snprintf(buf, len, "0");
        return;
    }
    snprintf(buf, len, sec >= 10 ? "%.0f" : sec >= 1 ? "%.1f" : "%.2f", sec);
    if (strchr(buf, '.')) {
        for (p = buf + strlen(buf) - 1; *p == '0'; p--)
            *p = '\0';
        if (*p == '.')
            *p = '\0';
    }
}

/* sched_dest_defer_cb - D is dead: every job waiting for it is deferred now, logged as
 * Postfix's qmgr does ("delivery temporarily suspended: REASON"), so that its messages
 * leave the active set and other destinations go on. */
static void sched_dest_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sched_dest *d = arg;
    struct sched *s = d->sched;
    struct sched_jobx *j;
    char text[1200], d0[16], d1[16], d2[16];
    long long now = clock_now_us();
    int i;

    (void)fd;
    (void)what;
    if (!d->dead)
        return;
    snprintf(text, sizeof(text), "delivery temporarily suspended: %s", d->reason ? d->reason : "");
    d->pinned = 1;
    while (!s->stopping && (j = TAILQ_FIRST(&d->jobs))) {
        const struct spool_envelope *env = j->pub.env;
        TAILQ_REMOVE(&d->jobs, j, qlink);
        s->nready--;
        j->pub.dispatch_us = now;
        sched_dest_fmt_delay((now - env->arrival_us) / 1e6, d0, sizeof(d0));
        sched_dest_fmt_delay((j->pub.active_us - env->arrival_us) / 1e6, d1, sizeof(d1));
        sched_dest_fmt_delay((now - j->pub.active_us) / 1e6, d2, sizeof(d2));
        for (i = 0; i < j->pub.nrcpt; i++) {
            int slot = j->rcpt[i];
            const char *addr = env->rcpt[slot < env->nrcpt ? slot : slot - env->nrcpt].addr;
            if (sched_job_report(s, &j->pub, i, SCHED_CLASS_TEMP, text) == SCHED_RESULT_NONE)
                continue;
            log_mail("qmgr",
                     "%s: to=<%s>, relay=none, delay=%s, delays=%s/%s/0/0, dsn=%s, "
                     "status=deferred (%s)",
                     j->pub.queue_id, addr, d0, d1, d2, d->dsn, text);
        }
        sched_job_done(s, &j->pub);
    }
    d->pinned = 0;
}

void sched_job_site_fail(struct sched *s, struct sched_job *job, const char *dsn, const char *text)
{
    struct sched_jobx *j = (struct sched_jobx *)job;

    (void)s;
    j->site_fail = 1;
    snprintf(j->fail_dsn, sizeof(j->fail_dsn), "%s", dsn ? dsn : "4.4.1");
    free(j->fail_reason);
    j->fail_reason = strdup(text ? text : "");
}

int sched_dest_view_foreach(struct sched *s, int max,
                            void (*cb)(void *arg, const struct sched_view_dest *d), void *arg)
{
    struct sched_dest *d;
    struct sched_jobx *j;
    struct sched_view_dest v;
    int pass, n = 0, total = 0;

    for (pass = 0; pass < 2; pass++) {
        TAILQ_FOREACH(d, &s->dests, link)
        {
            if (pass == 0)
                total++;
            if (d->dead != (pass == 0) || n >= max)
                continue; /* the throttled ones first: they are what an administrator seeks */
            memset(&v, 0, sizeof(v));
            v.name = d->name;
            v.window = d->dead ? 0 : d->window > 0 ? d->window : s->dpol.initial;
            v.active = d->ntaken;
            TAILQ_FOREACH(j, &d->jobs, qlink)
            v.ready++;
            v.dead = d->dead;
            v.reason = d->dead && d->reason ? d->reason : "";
            cb(arg, &v);
            n++;
        }
    }
    return total;
}
