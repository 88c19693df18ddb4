/*
 * sched_active.c - the bound on the scheduler's memory, as Postfix's
 * qmgr_message_active_limit: only messages in the active set (being delivered,
 * or due and loaded) keep their full state (envelope, per-slot flags, content).
 * A deferred or held message is "parked": its envelope is dropped and one small
 * block (sched_park: arrival, size, sender and pending recipients) stays for the
 * listings. When a parked message is due it waits on a due list and is read
 * back on a worker as the active set has room. The queue run that finds due
 * messages walks the queue in bounded chunks, one per loop turn, so a queue of
 * a million messages never stalls the loop; a probe timer records the longest
 * stall (loop_stall_max).
 * Not here: delivery rounds (sched.c), the reads themselves (sched_load.c).
 */
#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "sched_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Messages the queue run looks at per loop turn (a few ms at most). */
#define SCHED_RUN_CHUNK 2000
/* Start-up loads (envelope and status file) in flight at once. */
#define SCHED_RECOVER_INFLIGHT 64
/* Parked messages being read back at once (each completion starts the next). */
#define SCHED_RELOAD_INFLIGHT 256
/* The stall probe's period. */
#define SCHED_LAG_PERIOD_US 100000

void sched_loaded(struct sched *s, int delta)
{
    s->nloaded += (size_t)(long)delta;
    counter_add(CNT_QMGR_ACTIVE, delta);
}

/* sched_park_make - the listing summary of loaded message M (NULL: out of memory). */
static struct sched_park *sched_park_make(const struct sched_msg *m)
{
    const struct spool_envelope *env = m->env;
    size_t len = strlen(env->sender) + 1;
    int i, n = 0;
    struct sched_park *p;
    char *w;

    for (i = 0; i < env->nrcpt && i < m->nslots; i++)
        if (m->slots[i] == SCHED_SLOT_PENDING) {
            len += strlen(env->rcpt[i].addr) + strlen(env->rcpt[i].orcpt) + 2;
            n++;
        }
    p = malloc(sizeof(*p) + (size_t)n * sizeof(int) + len);
    if (!p)
        return NULL;
    p->arrival = env->arrival_us / 1000000;
    p->size = env->size;
    p->nrcpt = n;
    w = (char *)(p->slot + n);
    w += sprintf(w, "%s", env->sender) + 1;
    for (i = 0, n = 0; i < env->nrcpt && i < m->nslots; i++)
        if (m->slots[i] == SCHED_SLOT_PENDING) {
            p->slot[n++] = i;
            w += sprintf(w, "%s", env->rcpt[i].addr) + 1;
            w += sprintf(w, "%s", env->rcpt[i].orcpt) + 1;
        }
    return p;
}

void sched_msg_park(struct sched *s, struct sched_msg *m)
{
    struct sched_park *p;
    int i, reasons = 0;

    /* a status write may still run or be due: it needs only the slots, which stay */
    if (!m->env || m->loading || m->njobs || m->gone || m->removing)
        return; /* not loaded, or something still needs its full state */
    if (!(p = sched_park_make(m)))
        return; /* stays loaded: parked at its next round */
    m->park = p;
    spool_envelope_free(m->env);
    m->env = NULL;
    sched_loaded(s, -1);
    free(m->active);
    m->active = NULL;
    for (i = 0; m->reason && i < m->nslots; i++)
        reasons += m->reason[i] != NULL;
    if (!reasons) {
        free(m->reason); /* most parked messages have none yet: no array either */
        m->reason = NULL;
    }
    sched_msg_drop_content(s, m);
    sched_pump(s); /* room for the next due message */
}

void sched_q_remove(struct sched *s, struct sched_msg *m)
{
    switch (m->onq) {
    case SCHED_Q_RECOVER:
        TAILQ_REMOVE(&s->recover, m, qlink); /* still unread: qmgr_unloaded_messages stays */
        break;
    case SCHED_Q_DUE_NEW:
        TAILQ_REMOVE(&s->due_new, m, qlink);
        break;
    case SCHED_Q_DUE_OLD:
        TAILQ_REMOVE(&s->due_old, m, qlink);
        break;
    case SCHED_Q_NONE:
        break;
    }
    m->onq = SCHED_Q_NONE;
}

void sched_msg_due(struct sched *s, struct sched_msg *m, int old)
{
    if (m->held || m->removing || m->gone || s->stopping)
        return;
    if (m->env) {
        if (!m->loading)
            sched_msg_activate(s, m);
        return;
    }
    if (m->loading || m->onq != SCHED_Q_NONE || !m->park)
        return; /* on its way already (or not read yet: the start-up load decides) */
    m->next_retry = 0;
    m->onq = old ? SCHED_Q_DUE_OLD : SCHED_Q_DUE_NEW;
    TAILQ_INSERT_TAIL(old ? &s->due_old : &s->due_new, m, qlink);
    sched_pump(s);
}

void sched_pump(struct sched *s)
{
    size_t limit = (size_t)s->conf->qmgr_message_active_limit;
    struct sched_msg *m;

    if (s->stopping)
        return;
    /* start-up: a bounded number of reads in flight, refilled as each ends */
    while (s->nrecover < SCHED_RECOVER_INFLIGHT && (m = TAILQ_FIRST(&s->recover))) {
        sched_q_remove(s, m);
        s->nrecover++;
        sched_load_msg(s, m, 0);
    }
    /* due messages come back into the active set while it has room; new mail and retries
     * take turns, so a flushed backlog does not starve new mail */
    while (s->nreload < SCHED_RELOAD_INFLIGHT && s->nloaded + s->nreload < limit) {
        struct sched_msgq *q = s->due_turn ? &s->due_old : &s->due_new;
        if (TAILQ_EMPTY(q))
            q = q == &s->due_old ? &s->due_new : &s->due_old;
        if (!(m = TAILQ_FIRST(q)))
            break;
        s->due_turn = !s->due_turn;
        sched_q_remove(s, m);
        if (m->held || m->removing || m->gone || m->env || m->loading || !m->park)
            continue;
        s->nreload++;
        sched_load_msg(s, m, 1);
    }
}

/* sched_run_chunk - the next SCHED_RUN_CHUNK messages of the queue run. */
static void sched_run_chunk(struct sched *s)
{
    struct sched_msg *m;
    int n;

    for (n = 0; (m = s->run_next) && n < SCHED_RUN_CHUNK; n++) {
        s->run_next = TAILQ_NEXT(m, link);
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
        if (m->deferred && !m->held && (s->run_force || m->next_retry <= s->run_now))
            sched_msg_due(s, m, 1);
    }
    if (s->run_next)
        event_active(s->chunk_ev, 0, 0); /* the rest after other events had their turn */
    else
        s->run_force = 0;
}

/* sched_chunk_cb - the loop's turn for the next chunk. */
static void sched_chunk_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sched_run_chunk(arg);
}

void sched_run_start(struct sched *s, int force)
{
    if (force)
        s->run_force = 1;
    s->run_now = (long long)time(NULL);
    if (s->run_next)
        return; /* a run is under way: it goes on (with FORCE from here on) */
    s->run_next = TAILQ_FIRST(&s->msgs);
    if (s->run_next)
        sched_run_chunk(s);
    else
        s->run_force = 0;
}

/* sched_lag_cb - the probe: how late this timer ran is how long the loop was busy. */
static void sched_lag_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sched *s = arg;
    long long now = clock_now_us(), late = now - s->lag_due_us;
    struct timeval tv = {0, SCHED_LAG_PERIOD_US};

    (void)fd;
    (void)what;
    /* the first turn measures start-up (before the loop ran), not a stall: skipped */
    if (s->lag_due_us && late > counter_get(CNT_LOOP_LAG_MAX))
        counter_add(CNT_LOOP_LAG_MAX, late - counter_get(CNT_LOOP_LAG_MAX));
    s->lag_due_us = now + SCHED_LAG_PERIOD_US;
    event_add(s->lag_ev, &tv);
}

int sched_active_init(struct sched *s)
{
    struct timeval tv = {0, SCHED_LAG_PERIOD_US};

    const char *delay = getenv("MTA_TEST_LOAD_DELAY_US");

    /* test hook: a start-up read this much slower, so a test can watch the load happen
     * (at most a second a message; never set outside the tests) */
    if (delay && delay[strspn(delay, "0123456789")] == '\0' && strlen(delay) < 8)
        s->test_load_delay_us = atol(delay) > 1000000 ? 1000000 : atol(delay);
    TAILQ_INIT(&s->recover);
    TAILQ_INIT(&s->due_new);
    TAILQ_INIT(&s->due_old);
    s->chunk_ev = event_new(s->base, -1, 0, sched_chunk_cb, s);
    s->lag_ev = evtimer_new(s->base, sched_lag_cb, s);
    if (!s->chunk_ev || !s->lag_ev)
        return -1;
    s->lag_due_us = 0;
    event_add(s->lag_ev, &tv);
    return 0;
}

void sched_active_free(struct sched *s)
{
    if (s->chunk_ev)
        event_free(s->chunk_ev);
    if (s->lag_ev)
        event_free(s->lag_ev);
    s->chunk_ev = s->lag_ev = NULL;
}
