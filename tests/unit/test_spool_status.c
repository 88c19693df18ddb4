/*
 * test_spool_status.c - where a message's delivery status lives on a real spool in a
 * temporary directory (spool_status.c): a deferral with every recipient pending is kept in
 * the queue file's modification time (no status file), read back with its retry time and
 * attempt count; a final recipient or a hold makes a status file, which then stays the
 * record; a rename after the retry time has passed, or a plain write, is never read as one;
 * reading a deferred message leaves its access time (and so its inode) untouched.
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
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/sched.h"
#include "mta/spool.h"
#include "queue/sched_int.h"

#include "spool_fixture.h"

/* setup - a spool with one committed message; f->id names it, f->path is its queue file. */
static int setup(void **state)
{
    spool_fixture_setup_open(state);
    struct spool_fixture *f = *state;
    struct spool_msg *m = spool_msg_new(f->sp);
    const char *body = "Subject: x\r\n\r\nbody\r\n";
    spool_fixture_append(m, body, strlen(body));
    struct spool_rcpt rc[2] = {{"a@example.com", "", 0}, {"b@example.com", "", 0}};
    struct spool_envelope e = {.sender = "s@example.net", .rcpt = rc, .nrcpt = 2};
    e.envid = e.client_name = e.client_addr = e.helo = "";
    spool_fixture_commit(f, m, &e);
    return 0;
}

static int status_file_exists(struct spool_fixture *f)
{
    char p[420];
    snprintf(p, sizeof p, "%s.st", f->path);
    return access(p, F_OK) == 0;
}

static void test_deferral_is_kept_in_the_modification_time(void **state)
{
    struct spool_fixture *f = *state;
    struct spool_status st;
    /* freshly committed: nothing to read */
    assert_int_equal(spool_status_read(f->sp, f->id, &st), ENOENT);
    char slots[2] = {SCHED_SLOT_PENDING, SCHED_SLOT_PENDING};
    long long retry = (long long)time(NULL) + 3600;
    struct spool_status w = {.attempts = 3, .next_retry = retry, .nslots = 2, .slots = slots};
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    assert_false(status_file_exists(f));
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal((long long)sb.st_mtim.tv_sec, retry);
    /* read back: the retry time, the attempts, no slot (every one pending) */
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    assert_int_equal(st.next_retry, retry);
    assert_int_equal(st.attempts, 3);
    assert_int_equal(st.nslots, 0);
    assert_int_equal(st.hold, 0);
    free(st.slots);
    /* the next deferral moves it */
    w.attempts = 4;
    w.next_retry = retry + 600;
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    assert_int_equal(st.next_retry, retry + 600);
    assert_int_equal(st.attempts, 4);
    free(st.slots);
    /* a rename (recovery moving it) keeps a retry time still ahead */
    char other[420];
    snprintf(other, sizeof other, "%s.tmp", f->path);
    assert_int_equal(rename(f->path, other), 0);
    assert_int_equal(rename(other, f->path), 0);
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    assert_int_equal(st.next_retry, retry + 600);
    free(st.slots);
}

static void test_passed_retry_time_or_a_write_is_no_status(void **state)
{
    struct spool_fixture *f = *state;
    struct spool_status st;
    char slots[2] = {SCHED_SLOT_PENDING, SCHED_SLOT_PENDING};
    /* a retry time already passed when it was set (a flush): due, nothing kept */
    struct spool_status w = {
        .attempts = 2, .next_retry = (long long)time(NULL) - 10, .nslots = 2, .slots = slots};
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    assert_int_equal(spool_status_read(f->sp, f->id, &st), ENOENT);
    /* a retry time ahead, then the file written: a write's time is never a retry time */
    w.next_retry = (long long)time(NULL) + 3600;
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "M", 1, 0), 1);
    close(fd);
    assert_int_equal(spool_status_read(f->sp, f->id, &st), ENOENT);
    /* a message that is gone */
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(spool_status_write(f->sp, f->id, &w), ENOENT);
}

static void test_final_slot_or_hold_makes_a_status_file(void **state)
{
    struct spool_fixture *f = *state;
    struct spool_status st;
    char slots[2] = {SCHED_SLOT_PENDING, SCHED_SLOT_PENDING};
    struct spool_status w = {.attempts = 1,
                             .next_retry = (long long)time(NULL) + 300,
                             .nslots = 2,
                             .slots = slots,
                             .hold = 1};
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    assert_true(status_file_exists(f));
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    assert_int_equal(st.hold, 1);
    assert_int_equal(st.nslots, 2);
    free(st.slots);
    /* released, every recipient still pending: the status file stays the record */
    w.hold = 0;
    w.sync = 1;
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    w.sync = 0;
    w.attempts = 2;
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    assert_true(status_file_exists(f));
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    assert_int_equal(st.hold, 0);
    assert_int_equal(st.attempts, 2);
    free(st.slots);
    /* one recipient done */
    slots[0] = SCHED_SLOT_SENT;
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    assert_int_equal(st.nslots, 2);
    assert_int_equal(st.slots[0], SCHED_SLOT_SENT);
    assert_int_equal(st.slots[1], SCHED_SLOT_PENDING);
    free(st.slots);
}

/* A deferred queue file's modification time is in the future, so under relatime every read
 * of it would update the access time and dirty the inode: a million inode writes when mtad
 * starts on a million deferred messages. The spool's reads must not. */
static void test_reading_a_deferred_message_keeps_its_access_time(void **state)
{
    struct spool_fixture *f = *state;
    char slots[2] = {SCHED_SLOT_PENDING, SCHED_SLOT_PENDING};
    struct spool_status w = {
        .attempts = 1, .next_retry = (long long)time(NULL) + 3600, .nslots = 2, .slots = slots};
    assert_int_equal(spool_status_write(f->sp, f->id, &w), 0);
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 0}, {.tv_nsec = UTIME_OMIT}};
    assert_int_equal(utimensat(AT_FDCWD, f->path, ts, 0), 0);
    /* what the start-up check, the scheduler and a delivery read */
    struct spool_status st;
    assert_int_equal(spool_status_read(f->sp, f->id, &st), 0);
    free(st.slots);
    struct spool_envelope *env = NULL;
    assert_int_equal(spool_load_envelope(f->sp, f->id, &env), 0);
    spool_envelope_free(env);
    long long size = 0;
    free(spool_fixture_read_message(f->sp, f->id, &size, &env));
    spool_envelope_free(env);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal((long long)sb.st_atim.tv_sec, 1000000000LL);
    /* the control: a plain read on this file system does update it (else the above proved
     * nothing: a noatime mount) */
    int fd = open(f->path, O_RDONLY);
    char c;
    assert_true(fd >= 0);
    assert_int_equal(read(fd, &c, 1), 1);
    close(fd);
    assert_int_equal(stat(f->path, &sb), 0);
    if (sb.st_atim.tv_sec == 1000000000)
        skip();
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, spool_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_deferral_is_kept_in_the_modification_time),
        T(test_passed_retry_time_or_a_write_is_no_status),
        T(test_final_slot_or_hold_makes_a_status_file),
        T(test_reading_a_deferred_message_keeps_its_access_time),
    };
    if (spool_fixture_begin("spstatus") != 0)
        return 1;
    return spool_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
