/*
 * rlimit.c - the open-file limit raised to what the configuration needs, and the
 * accept() back-off shared by the SMTP and HTTP listeners (see rlimit.h).
 * Not here: counting sessions or connections (smtpd, stats).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/log.h"
#include "mta/rlimit.h"

long rlimit_nofile_need(const struct conf *c)
{
    return c->smtpd_session_limit + c->http_connection_limit + c->default_process_limit +
           RLIMIT_NOFILE_SLACK;
}

long rlimit_nofile_want(const struct conf *c)
{
    return rlimit_nofile_need(c) + c->smtpd_session_limit;
}

/* rlimit_fmt - a limit for messages ("unlimited" for RLIM_INFINITY). */
static const char *rlimit_fmt(rlim_t v, char *buf, size_t len)
{
    if (v == RLIM_INFINITY)
        snprintf(buf, len, "unlimited");
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
    return buf;
}

/* rlimit_try - set the soft limit to CUR, and the hard one to CUR when HARD is lower. */
static int rlimit_try(rlim_t cur, rlim_t hard)
{
    struct rlimit want = {.rlim_cur = cur, .rlim_max = hard};
    if (hard != RLIM_INFINITY && hard < cur)
        want.rlim_max = cur; /* only with CAP_SYS_RESOURCE, and up to fs.nr_open */
    return setrlimit(RLIMIT_NOFILE, &want);
}

int rlimit_nofile_raise(const struct conf *c, long *before, long *after, char **err)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)rlimit_nofile_need(c), want = (rlim_t)rlimit_nofile_want(c);
    char hard[32];

    *err = NULL;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        if (asprintf(err, "Error: cannot read the open-file limit (RLIMIT_NOFILE): %s",
                     strerror(errno)) < 0)
            *err = NULL;
        return -1;
    }
    *before = *after = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return 0;
    /* as much as we want; else all the hard limit gives, if that is enough */
    rlim_t got = want;
    if (rlimit_try(want, rl.rlim_max) != 0) {
        got = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : need;
        if (got < need || got <= rl.rlim_cur || rlimit_try(got, rl.rlim_max) != 0)
            got = rl.rlim_cur;
    }
    if (got < need) {
        if (asprintf(err,
                     "Error: smtpd_session_limit = %ld needs at least %llu open files (one per "
                     "SMTP session, plus http_connection_limit = %ld, default_process_limit = "
                     "%ld and %d for the daemon itself), but the hard limit of open files "
                     "(RLIMIT_NOFILE) is %s and cannot be raised: lower "
                     "smtpd_session_limit, or raise the limit (ulimit -Hn as root, LimitNOFILE= "
                     "in the systemd unit).",
                     c->smtpd_session_limit, (unsigned long long)need, c->http_connection_limit,
                     c->default_process_limit, RLIMIT_NOFILE_SLACK,
                     rlimit_fmt(rl.rlim_max, hard, sizeof hard)) < 0)
            *err = NULL;
        return -1;
    }
    *after = (long)got;
    return 0;
}

/* ---- the accept back-off ---- */

struct rlimit_accept {
    struct event_base *base;
    char service[16];
    struct evconnlistener *lev[RLIMIT_MAX_LISTENERS];
    int nlev;
    struct event *timer;
    int paused;
    int pause_ms;          /* the next pause */
    int logged;            /* a line was logged (at last_log) */
    time_t last_log;       /* monotonic seconds of the last log line */
    unsigned long skipped; /* failures since then that were not logged */
};

/* rlimit_now - monotonic seconds (the log interval must not jump with the clock). */
static time_t rlimit_now(void)
{
    return (time_t)(clock_mono_us() / 1000000);
}

/* rlimit_accept_resume_cb - the pause is over: accept again (a failure pauses anew). */
static void rlimit_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rlimit_accept *a = arg;
    a->paused = 0;
    for (int i = 0; i < a->nlev; i++)
        evconnlistener_enable(a->lev[i]);
}

struct rlimit_accept *rlimit_accept_new(struct event_base *base, const char *service)
{
    struct rlimit_accept *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->base = base;
    snprintf(a->service, sizeof(a->service), "%s", service);
    a->pause_ms = RLIMIT_PAUSE_MIN_MS;
    if (!(a->timer = evtimer_new(base, rlimit_accept_resume_cb, a))) {
        free(a);
        return NULL;
    }
    return a;
}

int rlimit_accept_add(struct rlimit_accept *a, struct evconnlistener *l)
{
    if (a->nlev == RLIMIT_MAX_LISTENERS)
        return -1;
    a->lev[a->nlev++] = l;
    if (a->paused)
        evconnlistener_disable(l);
    return 0;
}

void rlimit_accept_clear(struct rlimit_accept *a)
{
    if (!a)
        return;
    evtimer_del(a->timer);
    a->paused = 0;
    a->nlev = 0;
}

void rlimit_accept_failed(struct rlimit_accept *a, int err)
{
    int ms = a->pause_ms;
    time_t now = rlimit_now();

    /* A listening socket with a connection waiting stays readable: without the
     * pause the loop would call accept() again at once, fail again, forever. */
    if (!a->paused) {
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        for (int i = 0; i < a->nlev; i++)
            evconnlistener_disable(a->lev[i]);
        a->paused = 1;
        evtimer_add(a->timer, &tv);
        if (a->pause_ms < RLIMIT_PAUSE_MAX_MS)
            a->pause_ms =
                a->pause_ms * 2 > RLIMIT_PAUSE_MAX_MS ? RLIMIT_PAUSE_MAX_MS : a->pause_ms * 2;
    }
    if (a->logged && now - a->last_log < RLIMIT_LOG_INTERVAL) {
        a->skipped++;
        return;
    }
    if (a->skipped)
        log_warning(a->service,
                    "accept: %s: not accepting new connections for %d ms (%lu more accept "
                    "failures in the last %ld s not logged)",
                    strerror(err), ms, a->skipped, (long)(now - a->last_log));
    else
        log_warning(a->service, "accept: %s: not accepting new connections for %d ms",
                    strerror(err), ms);
    a->logged = 1;
    a->last_log = now;
    a->skipped = 0;
}

void rlimit_accept_ok(struct rlimit_accept *a)
{
    if (a)
        a->pause_ms = RLIMIT_PAUSE_MIN_MS;
}

void rlimit_accept_free(struct rlimit_accept *a)
{
    if (!a)
        return;
    event_free(a->timer);
    free(a);
}
