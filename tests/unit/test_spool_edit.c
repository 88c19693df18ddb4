/*
 * test_spool_edit.c - edits before the commit (spool_edit.c) on a real spool in a temporary
 * directory: a new header block in front, a header prepended, a replaced body (in pieces),
 * reading the edited view back before the commit, for a message held in memory and for a
 * large streamed one; the committed file holds exactly the edited bytes and its size.
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
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/spool.h"

#include "spool_fixture.h"

static struct evbuffer *buf_of(const char *s)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, s, strlen(s));
    return b;
}

struct reader {
    int done, err;
    struct evbuffer *got;
};

static void read_done(void *arg, struct evbuffer *out, int err)
{
    struct reader *r = arg;
    r->done++;
    r->err = err;
    evbuffer_add_buffer(r->got, out);
}

/* read_all - the whole message as edited, through spool_msg_read; malloc'd, *LEN its size. */
static char *read_all(struct spool_fixture *f, struct spool_msg *m, size_t *len)
{
    struct reader r = {.got = evbuffer_new()};
    for (;;) {
        size_t before = evbuffer_get_length(r.got);
        r.done = 0;
        assert_non_null(spool_msg_read(m, (long long)before, 100000, read_done, &r));
        assert_int_equal(r.done, 0); /* never from inside the call */
        spool_fixture_run_until(f, &r.done, 1);
        assert_int_equal(r.err, 0);
        if (evbuffer_get_length(r.got) == before)
            break;
    }
    *len = evbuffer_get_length(r.got);
    char *s = malloc(*len + 1);
    evbuffer_remove(r.got, s, *len);
    s[*len] = 0;
    evbuffer_free(r.got);
    return s;
}

/* commit_and_read - commit M, then the stored message bytes. */
static char *commit_and_read(struct spool_fixture *f, struct spool_msg *m, long long *size)
{
    struct spool_rcpt rc = {"a@example.com", "", 0};
    struct spool_envelope e = {.sender = "s@example.net", .rcpt = &rc, .nrcpt = 1};
    e.envid = e.client_name = e.client_addr = e.helo = "";
    spool_fixture_commit(f, m, &e);
    struct spool_envelope *env = NULL;
    char *s = spool_fixture_read_message(f->sp, f->id, size, &env);
    assert_int_equal(env->size, *size);
    spool_envelope_free(env);
    return s;
}

static void test_small_edits(void **state)
{
    struct spool_fixture *f = *state;
    struct spool_msg *m = spool_msg_new(f->sp);
    const char *orig = "Subject: hi\r\nX-Old: 1\r\n\r\nbody line\r\n";
    spool_fixture_append(m, orig, strlen(orig));
    size_t hdr = strlen("Subject: hi\r\nX-Old: 1\r\n\r\n");
    /* a new header block replaces the old one */
    struct evbuffer *front = buf_of("Subject: hi\r\nX-New: 2\r\n\r\n");
    assert_int_equal(spool_msg_set_front(m, front, hdr), 0);
    assert_int_equal(evbuffer_get_length(front), 0);
    evbuffer_free(front);
    /* a header in front (DKIM) */
    front = buf_of("DKIM-Signature: x\r\n");
    assert_int_equal(spool_msg_set_front(m, front, 0), 0);
    evbuffer_free(front);
    const char *want = "DKIM-Signature: x\r\nSubject: hi\r\nX-New: 2\r\n\r\nbody line\r\n";
    assert_int_equal(spool_msg_size(m), (long long)strlen(want));
    size_t len;
    char *s = read_all(f, m, &len);
    assert_string_equal(s, want);
    free(s);
    /* out of range */
    front = buf_of("x");
    assert_int_equal(spool_msg_set_front(m, front, 1000), -1);
    evbuffer_free(front);
    long long size;
    s = commit_and_read(f, m, &size);
    assert_string_equal(s, want);
    free(s);
}

static void test_replace_body(void **state)
{
    struct spool_fixture *f = *state;
    struct spool_msg *m = spool_msg_new(f->sp);
    const char *orig = "A: 1\r\n\r\nold body\r\n";
    spool_fixture_append(m, orig, strlen(orig));
    struct evbuffer *b = buf_of("new ");
    assert_int_equal(spool_msg_replace_from(m, 8, b), 0);
    evbuffer_free(b);
    b = buf_of("body\r\n");
    assert_int_equal(spool_msg_replace_from(m, spool_msg_size(m), b), 0); /* appends */
    evbuffer_free(b);
    b = buf_of("B: 2\r\n\r\n");
    assert_int_equal(spool_msg_set_front(m, b, 8), 0);
    evbuffer_free(b);
    long long size;
    char *s = commit_and_read(f, m, &size);
    assert_string_equal(s, "B: 2\r\n\r\nnew body\r\n");
    free(s);
}

static void drained(void *arg)
{
    *(int *)arg = 1;
}

static void test_large_streamed(void **state)
{
    struct spool_fixture *f = *state;
    struct spool_msg *m = spool_msg_new(f->sp);
    const char *hdr = "Subject: big\r\n\r\n";
    spool_fixture_append(m, hdr, strlen(hdr));
    size_t total = 600 * 1024;
    char *body = malloc(total);
    for (size_t i = 0; i < total; i++)
        body[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
    for (size_t off = 0; off < total; off += 8192)
        spool_fixture_append(m, body + off, total - off < 8192 ? total - off : 8192);
    int d = 0;
    while (spool_msg_on_drain(m, drained, &d)) { /* each write may start the next one */
        spool_fixture_run_until(f, &d, 1);
        d = 0;
    }
    struct evbuffer *front = buf_of("X-Added: yes\r\nSubject: big\r\n\r\n");
    assert_int_equal(spool_msg_set_front(m, front, strlen(hdr)), 0);
    evbuffer_free(front);
    size_t len;
    char *s = read_all(f, m, &len);
    size_t flen = strlen("X-Added: yes\r\nSubject: big\r\n\r\n");
    assert_int_equal(len, flen + total);
    assert_memory_equal(s, "X-Added: yes\r\n", 14);
    assert_memory_equal(s + flen, body, total);
    free(s);
    long long size;
    s = commit_and_read(f, m, &size);
    assert_int_equal(size, (long long)(flen + total));
    assert_memory_equal(s + flen, body, total);
    assert_memory_equal(s, "X-Added: yes\r\nSubject: big\r\n\r\n", flen);
    free(s);
    free(body);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, spool_fixture_setup_open, spool_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_small_edits),
        T(test_replace_body),
        T(test_large_streamed),
    };
    if (spool_fixture_begin("spedit") != 0)
        return 1;
    return spool_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
