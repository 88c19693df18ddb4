/*
 * workers.c - a fixed pool of threads for blocking calls. Jobs wait in one
 * mutex/condvar FIFO; a finished job's done() is queued on a second list and
 * the loop is woken through an eventfd watched by a libevent event, so every
 * done() runs on the event loop thread. The loop never waits for a worker
 * (except in workers_run_done/workers_free, which are for shutdown).
 * Not here: what the jobs do; ordering between jobs (N threads run in parallel).
 */
#include "mta/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mta/clock.h"

struct workers_job {
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
    STAILQ_ENTRY(workers_job) link;
};

STAILQ_HEAD(workers_list, workers_job);

struct workers {
    struct event_base *base;
    struct event *ev;
    int efd;
    char name[16];
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a job is queued, or stopping */
    pthread_cond_t done_cv; /* a done() became ready (for workers_run_done; CLOCK_MONOTONIC) */
    struct workers_list todo, ready;
    int pending; /* submitted, done() not yet run; under mu */
    int stopping;
};

/* workers_post_ready - queue J's completion for the loop and wake it on the first one. */
static void workers_post_ready(struct workers *w, struct workers_job *j)
{
    pthread_mutex_lock(&w->mu);
    int was_empty = STAILQ_EMPTY(&w->ready);
    STAILQ_INSERT_TAIL(&w->ready, j, link);
    pthread_cond_broadcast(&w->done_cv);
    pthread_mutex_unlock(&w->mu);
    if (was_empty) {
        /* The loop reads the eventfd before taking the list, so one wake per
         * empty->non-empty transition is enough. */
        uint64_t one = 1;
        ssize_t r;
        do
            r = write(w->efd, &one, sizeof one);
        while (r < 0 && errno == EINTR);
    }
}

/* workers_main - a worker thread: run jobs until told to stop and the FIFO is empty. */
static void *workers_main(void *arg)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (STAILQ_EMPTY(&w->todo) && !w->stopping)
            pthread_cond_wait(&w->work_cv, &w->mu);
        struct workers_job *j = STAILQ_FIRST(&w->todo);
        if (!j)
            break; /* stopping and nothing left */
        STAILQ_REMOVE_HEAD(&w->todo, link);
        pthread_mutex_unlock(&w->mu);
        j->work(j->arg);
        if (j->done == NULL) {
            /* nothing to run on the loop: don't wake it */
            free(j);
            pthread_mutex_lock(&w->mu);
            w->pending--;
            pthread_cond_broadcast(&w->done_cv);
            continue;
        }
        workers_post_ready(w, j);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* workers_take_ready - move the ready completions to L (empty before). */
static void workers_take_ready(struct workers *w, struct workers_list *l)
{
    pthread_mutex_lock(&w->mu);
    STAILQ_CONCAT(l, &w->ready);
    pthread_mutex_unlock(&w->mu);
}

/* workers_run_ready - run each ready done() in order, outside the mutex; returns how many. */
static int workers_run_ready(struct workers *w)
{
    struct workers_list l = STAILQ_HEAD_INITIALIZER(l);
    struct workers_job *j;
    int n = 0;

    workers_take_ready(w, &l);
    while ((j = STAILQ_FIRST(&l))) {
        STAILQ_REMOVE_HEAD(&l, link);
        if (j->done)
            j->done(j->arg);
        free(j);
        pthread_mutex_lock(&w->mu);
        w->pending--;
        pthread_mutex_unlock(&w->mu);
        n++;
    }
    return n;
}

/* workers_wake_cb - the eventfd fired: run every ready done() on the loop. */
static void workers_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct workers *w = arg;
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN && errno != EINTR)
        return;
    workers_run_ready(w);
}

struct workers *workers_new(struct event_base *base, int nthreads, const char *name)
{
    if (nthreads < 1)
        nthreads = 1;
    struct workers *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->base = base;
    snprintf(w->name, sizeof w->name, "%s", name ? name : "worker");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    STAILQ_INIT(&w->todo);
    STAILQ_INIT(&w->ready);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0)
        goto fail;
    w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, workers_wake_cb, w);
    if (!w->ev || event_add(w->ev, NULL) < 0)
        goto fail;
    w->threads = calloc((size_t)nthreads, sizeof *w->threads);
    if (!w->threads)
        goto fail;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&w->threads[i], NULL, workers_main, w) != 0)
            break;
        pthread_setname_np(w->threads[i], w->name);
        w->nthreads++;
    }
    if (w->nthreads == 0)
        goto fail;
    return w;
fail:
    if (w->ev)
        event_free(w->ev);
    if (w->efd >= 0)
        close(w->efd);
    free(w->threads);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->done_cv);
    free(w);
    return NULL;
}

void workers_submit(struct workers *w, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
    struct workers_job *j = malloc(sizeof *j);
    if (!j) {
        /* Out of memory: run inline rather than lose a completion the caller waits for. */
        if (work)
            work(arg);
        if (done)
            done(arg);
        return;
    }
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&w->mu);
    w->pending++;
    if (work) {
        STAILQ_INSERT_TAIL(&w->todo, j, link);
        pthread_cond_signal(&w->work_cv);
        pthread_mutex_unlock(&w->mu);
    } else {
        pthread_mutex_unlock(&w->mu);
        workers_post_ready(w, j);
    }
}

int workers_pending(const struct workers *w)
{
    struct workers *mw = (struct workers *)w; /* the mutex is not logically state */
    pthread_mutex_lock(&mw->mu);
    int n = mw->pending;
    pthread_mutex_unlock(&mw->mu);
    return n;
}

int workers_run_done(struct workers *w, int wait_ms)
{
    if (wait_ms > 0) {
        struct timespec until = clock_mono_after((unsigned)wait_ms);
        pthread_mutex_lock(&w->mu);
        while (STAILQ_EMPTY(&w->ready)) {
            if (pthread_cond_timedwait(&w->done_cv, &w->mu, &until) == ETIMEDOUT)
                break;
        }
        pthread_mutex_unlock(&w->mu);
    }
    return workers_run_ready(w);
}

void workers_free(struct workers *w)
{
    if (!w)
        return;
    /* done() callbacks may submit follow-up jobs, so drain until nothing is pending. */
    while (workers_pending(w) > 0)
        workers_run_done(w, 1000);
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_broadcast(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    event_free(w->ev);
    close(w->efd);
    free(w->threads);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->done_cv);
    free(w);
}
