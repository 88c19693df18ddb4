/*
 * spool_commit_bench.c - informational throughput of durable commits (4 KB
 * messages) with 1 and with 50 commits kept in flight, and how many messages
 * shared each device flush (counter spool_flushes: one per commit group, plus the
 * slot maker's batches). Figures are printed, not asserted (machines differ); the
 * test only checks that every commit succeeded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/spool.h"

static char topdir[256];

struct bench {
    struct event_base *base;
    struct spool *sp;
    int inflight, started, done, errors, total;
    char body[4096];
};

static void bench_start_one(struct bench *b);

static void bench_done(void *arg, int err)
{
    struct bench *b = arg;
    b->inflight--;
    b->done++;
    if (err)
        b->errors++;
    if (b->started < b->total)
        bench_start_one(b);
}

static void bench_start_one(struct bench *b)
{
    struct spool_msg *m = spool_msg_new(b->sp);
    struct evbuffer *eb = evbuffer_new();
    evbuffer_add(eb, b->body, sizeof b->body);
    spool_msg_append(m, eb);
    evbuffer_free(eb);
    struct spool_rcpt r = {"rcpt@example.com", "", 0};
    struct spool_envelope e = {.sender = "s@example.com", .rcpt = &r, .nrcpt = 1};
    b->inflight++;
    b->started++;
    spool_msg_commit(m, &e, bench_done, b);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bench_run(int concurrency, int total)
{
    static int n;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/b%d", topdir, ++n);
    struct conf conf = {0};
    conf.data_volume = dir;
    struct bench *b = calloc(1, sizeof *b);
    b->base = event_base_new();
    char *err = NULL;
    b->sp = spool_open(b->base, &conf, &err);
    assert_non_null(b->sp);
    memset(b->body, 'x', sizeof b->body);
    b->total = total;
    /* as in a running mtad, the first slots are made before the first message comes: give
     * the worker that makes them a moment (docs/spool-format.md, Slots) */
    struct timeval settle = {1, 0};
    event_base_loopexit(b->base, &settle);
    event_base_dispatch(b->base);
    long long f0 = counter_get(CNT_SPOOL_FLUSHES);
    double t0 = now_s();
    for (int i = 0; i < concurrency && b->started < total; i++)
        bench_start_one(b);
    while (b->done < total)
        event_base_loop(b->base, EVLOOP_ONCE);
    double dt = now_s() - t0;
    long long flushes = counter_get(CNT_SPOOL_FLUSHES) - f0;
    print_message("spool commits, %2d in flight: %6.0f commits/s (%d in %.2f s, %.1f per flush)\n",
                  concurrency, total / dt, total, dt, flushes ? (double)total / flushes : 0.0);
    assert_int_equal(b->errors, 0);
    spool_close(b->sp);
    event_base_free(b->base);
    free(b);
}

static void test_bench(void **state)
{
    bench_run(1, 300);
    bench_run(50, 3000);
}

int main(void)
{
    snprintf(topdir, sizeof topdir, "%s/mta-spool-bench-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(topdir))
        return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bench)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", topdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
