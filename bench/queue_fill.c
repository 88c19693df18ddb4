/*
 * queue_fill.c - fill a data volume with N deferred messages quickly, for the
 * queue-size benchmark (bench/queue_scale.sh) and the scaling tests. It is not
 * SMTP: it links the project's queue library and commits every message through
 * the spool's own intake (spool_msg_new, spool_msg_append, spool_msg_commit,
 * group commit with many in flight), so the files follow whatever on-disk
 * format the spool writes. Each message then gets the status of a deferral (the
 * scheduler's own writer, spool_status_write: the retry time in the queue file's
 * modification time, or a status file for a held message) with one attempt made
 * and the next retry in the future, so mtad finds a deferred queue, as after an outage of the
 * next hop. Run it while no mtad uses the data volume (the spool lock says so).
 *
 *   queue_fill -d DATA_VOLUME -n COUNT [-s BYTES] [-c IN_FLIGHT] [-r RETRY_SECONDS] [-H EVERY]
 *
 * -H EVERY: every EVERY-th message is on hold (postsuper -h) instead of deferred.
 * Prints "queue_fill: N messages in S s (R msg/s)" at the end; exit 1 on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "../src/queue/sched_int.h"
#include "mta/conf.h"
#include "mta/spool.h"

struct fill {
    struct event_base *base;
    struct spool *sp;
    long total, started, done, errors, hold_every;
    long long next_retry;
    int inflight;
    char *body;
    size_t size;
    char ids[1024][SPOOL_ID_SIZE]; /* committed, waiting for their status file */
    int nids;
};

/* One commit in flight: its ID, kept for the status file. */
struct fill_commit {
    struct fill *f;
    char id[SPOOL_ID_SIZE];
};

static void fill_start_one(struct fill *f);

/* fill_status_flush - the status files of the messages committed so far (no flush of their
 * own: a status file without a final slot is written without fsync, as the scheduler does). */
static void fill_status_flush(struct fill *f)
{
    for (int i = 0; i < f->nids; i++) {
        char slot = SCHED_SLOT_PENDING;
        long k = f->done - f->nids + i + 1;
        struct spool_status st = {.attempts = 1,
                                  .next_retry = f->next_retry,
                                  .nslots = 1,
                                  .slots = &slot,
                                  .hold = f->hold_every > 0 && k % f->hold_every == 0,
                                  .sync = 0};
        if (spool_status_write(f->sp, f->ids[i], &st) != 0)
            f->errors++;
    }
    f->nids = 0;
}

/* fill_done - one commit ended: remember its ID for the status file, start the next. */
static void fill_done(void *arg, int err)
{
    struct fill_commit *cid = arg;
    struct fill *f = cid->f;

    f->inflight--;
    if (err) {
        f->errors++;
    } else {
        snprintf(f->ids[f->nids++], SPOOL_ID_SIZE, "%s", cid->id);
        f->done++;
        if (f->nids == (int)(sizeof f->ids / sizeof f->ids[0]))
            fill_status_flush(f);
    }
    free(cid);
    if (f->started < f->total && !f->errors)
        fill_start_one(f);
}

/* fill_start_one - commit one more message of F->size bytes through the spool's intake. */
static void fill_start_one(struct fill *f)
{
    struct spool_msg *m = spool_msg_new(f->sp);
    struct evbuffer *eb = evbuffer_new();
    struct fill_commit *arg = malloc(sizeof *arg);
    char rcpt[64];

    if (!m || !eb || !arg) {
        fprintf(stderr, "queue_fill: out of memory\n");
        exit(1);
    }
    arg->f = f;
    snprintf(arg->id, sizeof arg->id, "%s", spool_msg_id(m));
    evbuffer_add(eb, f->body, f->size);
    spool_msg_append(m, eb);
    evbuffer_free(eb);
    /* a few thousand destinations, as a real backlog has */
    snprintf(rcpt, sizeof rcpt, "user%ld@d%ld.example.net", f->started, f->started % 4096);
    struct spool_rcpt r = {rcpt, "", 0};
    struct spool_envelope e = {.sender = "bench@example.com",
                               .rcpt = &r,
                               .nrcpt = 1,
                               .envid = "",
                               .client_name = "localhost",
                               .client_addr = "127.0.0.1",
                               .helo = "localhost",
                               .arrival_us = (long long)time(NULL) * 1000000LL};
    f->inflight++;
    f->started++;
    spool_msg_commit(m, &e, fill_done, arg);
}

/* fill_body - SIZE bytes of CRLF-terminated text lines with a few headers. */
static char *fill_body(size_t size)
{
    char *b = malloc(size + 1);
    size_t n;

    if (!b)
        return NULL;
    n = (size_t)snprintf(b, size + 1,
                         "From: bench@example.com\r\nTo: someone@example.net\r\n"
                         "Subject: queue_fill\r\n\r\n");
    for (; n + 2 <= size; n++)
        b[n] = (n % 72 == 70) ? '\r' : (n % 72 == 71) ? '\n' : 'x';
    for (; n < size; n++)
        b[n] = '\n';
    if (size >= 2) {
        b[size - 2] = '\r';
        b[size - 1] = '\n';
    }
    return b;
}

static double fill_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct fill f = {0};
    struct conf conf = {0};
    long retry = 3600;
    int c, inflight = 256;
    char *err = NULL;

    f.size = 4096;
    while ((c = getopt(argc, argv, "d:n:s:c:r:H:")) != -1) {
        switch (c) {
        case 'd':
            conf.data_volume = optarg;
            break;
        case 'n':
            f.total = atol(optarg);
            break;
        case 's':
            f.size = (size_t)atol(optarg);
            break;
        case 'c':
            inflight = atoi(optarg);
            break;
        case 'r':
            retry = atol(optarg);
            break;
        case 'H':
            f.hold_every = atol(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (!conf.data_volume || f.total <= 0 || f.size < 64 || f.size > (64u << 20) || inflight < 1 ||
        inflight > 1000 || retry < 0)
        goto usage;
    f.body = fill_body(f.size);
    f.base = event_base_new();
    f.sp = f.base && f.body ? spool_open(f.base, &conf, &err) : NULL;
    if (!f.sp) {
        fprintf(stderr, "queue_fill: %s\n", err ? err : "cannot start");
        return 1;
    }
    f.next_retry = (long long)time(NULL) + retry;
    double t0 = fill_now();
    for (int i = 0; i < inflight && f.started < f.total; i++)
        fill_start_one(&f);
    while ((f.done < f.total && !f.errors) || f.inflight > 0)
        event_base_loop(f.base, EVLOOP_ONCE);
    fill_status_flush(&f);
    double dt = fill_now() - t0;
    spool_close(f.sp);
    event_base_free(f.base);
    free(f.body);
    printf("queue_fill: %ld messages in %.1f s (%.0f msg/s)%s\n", f.done, dt,
           dt > 0 ? (double)f.done / dt : 0.0, f.errors ? ", with errors" : "");
    return f.errors ? 1 : 0;
usage:
    fprintf(stderr, "usage: queue_fill -d DATA_VOLUME -n COUNT [-s BYTES] [-c IN_FLIGHT] "
                    "[-r RETRY_SECONDS] [-H HOLD_EVERY]\n");
    return 2;
}
