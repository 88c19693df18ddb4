/*
 * test_workers.c - the worker pool: work() runs off the loop thread, done()
 * on it, every job completes, workers_free drains queued jobs (and follow-ups
 * submitted from done()), and submission from another thread works.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mta/workers.h"

struct job {
    pthread_t loop;
    int work_ran, done_ran, work_on_loop, done_off_loop;
    int *done_count;
    struct workers *w;
    int follow_ups; /* submit this many more jobs from done() */
    int order;      /* position in which done ran */
};

static int done_seq;

static void job_work(void *arg)
{
    struct job *j = arg;
    j->work_ran++;
    if (pthread_equal(pthread_self(), j->loop))
        j->work_on_loop = 1;
    usleep(200);
}

static void job_done(void *arg)
{
    struct job *j = arg;
    j->done_ran++;
    j->order = ++done_seq;
    if (!pthread_equal(pthread_self(), j->loop))
        j->done_off_loop = 1;
    if (j->done_count)
        (*j->done_count)++;
    if (j->follow_ups > 0) {
        j->follow_ups--;
        workers_submit(j->w, job_work, job_done, j);
    }
}

/* run_loop_until - run BASE until *COUNT reaches N or 10 s pass. */
static void run_loop_until(struct event_base *base, int *count, int n)
{
    time_t end = time(NULL) + 10;
    while (*count < n && time(NULL) < end)
        event_base_loop(base, EVLOOP_ONCE);
}

static void test_jobs_complete_on_loop(void **state)
{
    struct event_base *base = event_base_new();
    struct workers *w = workers_new(base, 3, "t");
    assert_non_null(w);
    enum { N = 100 };
    struct job jobs[N] = {0};
    int count = 0;
    for (int i = 0; i < N; i++) {
        jobs[i].loop = pthread_self();
        jobs[i].done_count = &count;
        workers_submit(w, job_work, job_done, &jobs[i]);
    }
    assert_int_equal(workers_pending(w), N);
    run_loop_until(base, &count, N);
    assert_int_equal(count, N);
    assert_int_equal(workers_pending(w), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].work_ran, 1);
        assert_int_equal(jobs[i].done_ran, 1);
        assert_false(jobs[i].work_on_loop);
        assert_false(jobs[i].done_off_loop);
    }
    workers_free(w);
    event_base_free(base);
}

static void test_null_work_is_deferred(void **state)
{
    struct event_base *base = event_base_new();
    struct workers *w = workers_new(base, 1, "t");
    struct job j = {.loop = pthread_self()};
    int count = 0;
    j.done_count = &count;
    workers_submit(w, NULL, job_done, &j);
    assert_int_equal(count, 0); /* not run inside submit */
    run_loop_until(base, &count, 1);
    assert_int_equal(count, 1);
    assert_false(j.done_off_loop);
    workers_free(w);
    event_base_free(base);
}

static void test_free_drains(void **state)
{
    struct event_base *base = event_base_new();
    struct workers *w = workers_new(base, 2, "t");
    enum { N = 50 };
    struct job jobs[N] = {0};
    int count = 0;
    for (int i = 0; i < N; i++) {
        jobs[i].loop = pthread_self();
        jobs[i].done_count = &count;
        jobs[i].w = w;
        jobs[i].follow_ups = i % 3; /* chains submitted from done() */
        workers_submit(w, job_work, job_done, &jobs[i]);
    }
    /* the loop never runs: workers_free itself must finish everything */
    workers_free(w);
    int expect = 0;
    for (int i = 0; i < N; i++) {
        expect += 1 + i % 3;
        assert_int_equal(jobs[i].done_ran, 1 + i % 3);
        assert_int_equal(jobs[i].work_ran, 1 + i % 3);
        assert_false(jobs[i].done_off_loop);
    }
    assert_int_equal(count, expect);
    event_base_free(base);
}

struct xthread {
    struct workers *w;
    struct job *jobs;
    int n;
};

static void *submit_thread(void *arg)
{
    struct xthread *x = arg;
    for (int i = 0; i < x->n; i++)
        workers_submit(x->w, i % 2 ? NULL : job_work, job_done, &x->jobs[i]);
    return NULL;
}

static void test_submit_from_other_thread(void **state)
{
    struct event_base *base = event_base_new();
    struct workers *w = workers_new(base, 2, "t");
    enum { N = 200 };
    struct job jobs[N] = {0};
    int count = 0;
    for (int i = 0; i < N; i++) {
        jobs[i].loop = pthread_self();
        jobs[i].done_count = &count;
    }
    struct xthread x = {w, jobs, N};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, submit_thread, &x), 0);
    pthread_join(t, NULL);
    run_loop_until(base, &count, N);
    assert_int_equal(count, N);
    for (int i = 0; i < N; i++)
        assert_false(jobs[i].done_off_loop);
    workers_free(w);
    event_base_free(base);
}

static void test_run_done_waits(void **state)
{
    struct event_base *base = event_base_new();
    struct workers *w = workers_new(base, 1, "t");
    struct job j = {.loop = pthread_self()};
    workers_submit(w, job_work, job_done, &j);
    int ran = 0;
    for (int i = 0; i < 50 && !ran; i++)
        ran = workers_run_done(w, 100);
    assert_int_equal(ran, 1);
    assert_int_equal(j.done_ran, 1);
    assert_int_equal(workers_run_done(w, 0), 0);
    workers_free(w);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_complete_on_loop),
        cmocka_unit_test(test_null_work_is_deferred),
        cmocka_unit_test(test_free_drains),
        cmocka_unit_test(test_submit_from_other_thread),
        cmocka_unit_test(test_run_done_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
