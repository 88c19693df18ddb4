/*
 * spool_fixture.c - the fixture the spool unit tests share (spool_fixture.h): one temporary top
 * directory and maillog a test program, a fresh data volume and event loop a test, and the
 * open/wait/commit/read helpers around the real spool. It holds no test of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/log.h"
#include "queue/spool_int.h"

#include "spool_fixture.h"

static char topdir[256];
static char logpath[300];

/* spool_fixture_begin - make the temporary top directory (NAME in its name) and the maillog. */
int spool_fixture_begin(const char *name)
{
    snprintf(topdir, sizeof topdir, "%s/mta-%s-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
    if (!mkdtemp(topdir))
        return -1;
    snprintf(logpath, sizeof logpath, "%s/maillog", topdir);
    struct log_options lo = {.hostname = "test", .syslog_name = "mta", .maillog_file = logpath};
    char *lerr = NULL;
    if (log_init(&lo, &lerr) != 0) {
        fprintf(stderr, "log_init: %s\n", lerr ? lerr : "?");
        return -1;
    }
    return 0;
}

/* spool_fixture_end - shut the log down; remove the top directory if RC (cmocka's) is 0. A
 * failed run leaves it for a look at the files and the maillog. */
int spool_fixture_end(int rc)
{
    log_shutdown();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", topdir);
    if (rc == 0 && system(cmd) != 0)
        rc = 1;
    return rc;
}

/* spool_fixture_log_path - the maillog the spool writes to. */
const char *spool_fixture_log_path(void)
{
    return logpath;
}

/* spool_fixture_setup - cmocka setup: a fresh struct spool_fixture, the spool not open. */
int spool_fixture_setup(void **state)
{
    static int n;
    struct spool_fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    snprintf(f->dir, sizeof f->dir, "%s/t%d", topdir, ++n);
    f->conf.data_volume = f->dir;
    *state = f;
    return 0;
}

/* spool_fixture_setup_open - spool_fixture_setup, then the spool opened into f->sp. */
int spool_fixture_setup_open(void **state)
{
    spool_fixture_setup(state);
    struct spool_fixture *f = *state;
    char *err = NULL;
    f->sp = spool_open(f->base, &f->conf, &err);
    assert_non_null(f->sp);
    return 0;
}

/* spool_fixture_teardown - cmocka teardown: close f->sp if open, free the rest. */
int spool_fixture_teardown(void **state)
{
    struct spool_fixture *f = *state;
    if (f->sp)
        spool_close(f->sp);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* spool_fixture_open - open the spool on F's volume and wait for its start-up scan. */
struct spool *spool_fixture_open(struct spool_fixture *f)
{
    char *err = NULL;
    struct spool *sp = spool_open(f->base, &f->conf, &err);
    if (!sp)
        fail_msg("spool_open: %s", err ? err : "?");
    while (spool_scanning(sp)) /* the queue files are checked in the background */
        event_base_loop(f->base, EVLOOP_ONCE);
    return sp;
}

/* spool_fixture_run_until - run F's loop until *FLAG reaches N (30 s at most). */
void spool_fixture_run_until(struct spool_fixture *f, int *flag, int n)
{
    time_t end = time(NULL) + 30;
    while (*flag < n && time(NULL) < end)
        event_base_loop(f->base, EVLOOP_ONCE);
}

/* spool_fixture_wait_slots - run F's loop until the slot maker has made SP's first slots. */
void spool_fixture_wait_slots(struct spool_fixture *f, struct spool *sp)
{
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&sp->pool.mu);
        int n = sp->pool.n;
        pthread_mutex_unlock(&sp->pool.mu);
        if (n > 0)
            return;
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    fail_msg("no slots were made");
}

/* spool_fixture_append - append LEN bytes of S to M; the buffer is moved, not copied. */
void spool_fixture_append(struct spool_msg *m, const char *s, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, s, len);
    assert_int_equal(spool_msg_append(m, b), 0);
    assert_int_equal(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}

/* commit_done - the commit's reply: 1 for success, else the negated errno. */
static void commit_done(void *arg, int err)
{
    int *done = arg;
    *done = err ? -err : 1;
}

/* spool_fixture_commit - commit M with E, wait for the reply and assert it succeeded; its ID
 * and queue file in f->id and f->path. */
void spool_fixture_commit(struct spool_fixture *f, struct spool_msg *m,
                          const struct spool_envelope *e)
{
    snprintf(f->id, sizeof f->id, "%s", spool_msg_id(m)); /* M is gone after the commit */
    int done = 0;
    spool_msg_commit(m, e, commit_done, &done);
    time_t end = time(NULL) + 30;
    while (!done && time(NULL) < end)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(done, 1);
    snprintf(f->path, sizeof f->path, "%s/queue/%c/%s", f->dir, f->id[strlen(f->id) - 1], f->id);
}

/* spool_fixture_read_message - the message bytes of ID (malloc'd), its size and envelope. */
char *spool_fixture_read_message(struct spool *sp, const char *id, long long *size,
                                 struct spool_envelope **env)
{
    int fd = spool_open_message(sp, id, env, size);
    assert_true(fd >= 0);
    char *buf = malloc((size_t)*size + 1);
    long long got = 0;
    ssize_t n;
    while (got < *size && (n = read(fd, buf + got, (size_t)(*size - got))) > 0)
        got += n;
    assert_int_equal(got, *size);
    close(fd);
    buf[got] = '\0';
    return buf;
}
