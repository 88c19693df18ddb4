/*
 * test_spool_record.c - the commit record and the one-flush commit on real
 * files: CRC-32C against its check value, one flush per commit, and what start-up
 * and delivery do with free slots, writes cut short (no record, a record of
 * another ID, a damaged envelope) and a body damaged between envelope and
 * record: never queued or never delivered, moved to corrupt/ and logged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "queue/spool_int.h"

#include "spool_fixture.h"

/* commit - queue BODY on SP, wait for the reply; the queue ID into ID. */
static void commit(struct spool_fixture *f, struct spool *sp, const char *body,
                   char id[SPOOL_ID_SIZE])
{
    static struct spool_rcpt rcpt = {.addr = "rcpt@example.org"};
    struct spool_envelope e = {0};
    e.sender = "sender@example.net";
    e.rcpt = &rcpt;
    e.nrcpt = 1;
    struct spool_msg *m = spool_msg_new(sp);
    spool_fixture_append(m, body, strlen(body));
    spool_fixture_commit(f, m, &e);
    snprintf(id, SPOOL_ID_SIZE, "%s", f->id);
}

/* path_of - DIR/queue/X/ID. */
static void path_of(struct spool_fixture *f, const char *id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/queue/%X/%s", f->dir, spool_id_hash(id), id);
}

/* exists - 1 when DIR/REL exists. */
static int exists(struct spool_fixture *f, const char *rel)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", f->dir, rel);
    return stat(p, &st) == 0;
}

/* patch - overwrite LEN bytes at OFF of PATH with DATA; or (DATA NULL) truncate it to OFF. */
static void patch(const char *path, long off, const char *data, size_t len)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    if (!data)
        assert_int_equal(ftruncate(fd, off), 0);
    else
        assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
}

/* text_off - the offset of the first NEEDLE in the first 8 KiB of PATH. */
static long text_off(const char *path, const char *needle)
{
    char *text = calloc(1, 8193);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, text, 8192);
    close(fd);
    assert_true(n > 0);
    char *p = memmem(text, (size_t)n, needle, strlen(needle));
    assert_non_null(p);
    long off = p - text;
    free(text);
    return off;
}

/* rec_off - where the commit record of PATH starts. */
static long rec_off(const char *path)
{
    return text_off(path, "MTA-COMMIT ");
}

static void test_crc(void **state)
{
    (void)state;
    assert_int_equal(spool_crc32c(0, "123456789", 9), 0xE3069283u); /* the CRC-32C check value */
    uint32_t c = spool_crc32c(0, "1234", 4);
    assert_int_equal(spool_crc32c(c, "56789", 5), 0xE3069283u); /* continued */
    char big[1000];
    memset(big, 'a', sizeof big);
    assert_int_equal(spool_crc32c(0, big, sizeof big),
                     spool_crc32c(spool_crc32c(0, big, 3), big + 3, 997));
}

/* commit_flushes - flushes so far that were not the slot maker's (it may make a batch of slots
 * at any time, on its own worker). */
static long long commit_flushes(struct spool *sp)
{
    pthread_mutex_lock(&sp->pool.mu);
    long long n = counter_get(CNT_SPOOL_FLUSHES) - sp->pool.flushes;
    pthread_mutex_unlock(&sp->pool.mu);
    return n;
}

/* test_one_flush - a commit into a slot costs one flush, and the file is the slot itself */
static void test_one_flush(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    spool_fixture_wait_slots(f, sp);
    char id[SPOOL_ID_SIZE], path[600];
    pthread_mutex_lock(&sp->pool.mu);
    char next[SPOOL_ID_SIZE];
    memcpy(next, sp->pool.id[0], SPOOL_ID_SIZE);
    pthread_mutex_unlock(&sp->pool.mu);
    long long f0 = commit_flushes(sp);
    commit(f, sp, "one flush\r\n", id);
    assert_int_equal(commit_flushes(sp) - f0, 1);
    assert_string_equal(id, next); /* the slot's name is the queue ID */
    commit(f, sp, "and another\r\n", id);
    assert_int_equal(commit_flushes(sp) - f0, 2);
    path_of(f, id, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, SPOOL_SLOT_PREALLOC); /* overwritten in place, not cut */
    spool_close(sp);
}

/* test_torn_and_free - start-up: slots go, writes cut short go to corrupt/; delivery: a body whose
 * checksum fails is never handed out */
static void test_torn_and_free(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    spool_fixture_wait_slots(f, sp);
    char good[SPOOL_ID_SIZE], norec[SPOOL_ID_SIZE], badrec[SPOOL_ID_SIZE], badenv[SPOOL_ID_SIZE],
        badbody[SPOOL_ID_SIZE], path[600];
    commit(f, sp, "good\r\n", good);
    commit(f, sp, "no record\r\n", norec);
    commit(f, sp, "record damaged\r\n", badrec);
    commit(f, sp, "envelope damaged\r\n", badenv);
    commit(f, sp, "body damaged in the middle\r\n", badbody);
    spool_close(sp);

    path_of(f, norec, path, sizeof path);
    patch(path, rec_off(path) + 20, NULL, 0); /* cut inside the record */
    path_of(f, badrec, path, sizeof path);
    patch(path, rec_off(path) + 30, "#", 1); /* a field of the record */
    path_of(f, badenv, path, sizeof path);
    patch(path, text_off(path, "\nsender ") + 2, "X", 1); /* the envelope's checksum fails */
    path_of(f, badbody, path, sizeof path);
    patch(path, rec_off(path) - 3, "#", 1); /* between envelope and record: seen at delivery */

    sp = spool_fixture_open(f);
    assert_int_equal(spool_count(sp), 2);
    assert_true(spool_contains(sp, good));
    assert_true(spool_contains(sp, badbody));
    char rel[64];
    snprintf(rel, sizeof rel, "corrupt/%s", norec);
    assert_true(exists(f, rel));
    snprintf(rel, sizeof rel, "corrupt/%s", badrec);
    assert_true(exists(f, rel));
    snprintf(rel, sizeof rel, "corrupt/%s", badenv);
    assert_true(exists(f, rel));
    /* the slots of the last run are gone (they might sort below recovered IDs) */
    long long size;
    int mfd = spool_open_message(sp, good, NULL, &size);
    assert_true(mfd >= 0);
    assert_int_equal(size, 6);
    close(mfd);
    errno = 0;
    assert_int_equal(spool_open_message(sp, badbody, NULL, &size), -1);
    assert_int_equal(errno, EBADMSG);
    snprintf(rel, sizeof rel, "corrupt/%s", badbody);
    assert_true(exists(f, rel));
    assert_int_equal(spool_open_message(sp, badbody, NULL, &size), -1); /* and stays so */
    spool_close(sp);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, spool_fixture_setup, spool_fixture_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),
        T(test_one_flush),
        T(test_torn_and_free),
    };
    if (spool_fixture_begin("record") != 0)
        return 1;
    return spool_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
