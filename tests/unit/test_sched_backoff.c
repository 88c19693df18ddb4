/*
 * test_sched_backoff.c - the scheduler's retry delay (exponential, clamped to
 * minimal_backoff_time..maximal_backoff_time) and the status file text that
 * keeps delivered recipients from being delivered again after a restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mta/sched.h"
#include "queue/sched_int.h"

static void test_backoff_clamped(void **state)
{
    (void)state;
    assert_int_equal(sched_backoff(1, 300, 4000), 300);
    assert_int_equal(sched_backoff(2, 300, 4000), 600);
    assert_int_equal(sched_backoff(3, 300, 4000), 1200);
    assert_int_equal(sched_backoff(4, 300, 4000), 2400);
    assert_int_equal(sched_backoff(5, 300, 4000), 4000);
    assert_int_equal(sched_backoff(100000, 300, 4000), 4000);
    assert_int_equal(sched_backoff(0, 300, 4000), 300);
    assert_int_equal(sched_backoff(3, 1, 2), 2);
    /* max below min (a misconfiguration): never below the minimum */
    assert_int_equal(sched_backoff(5, 300, 100), 300);
    assert_int_equal(sched_backoff(64, LONG_MAX / 2, LONG_MAX), LONG_MAX);
}

static void test_status_round_trip(void **state)
{
    struct spool_status st = {3, 1700000000LL, 4, (char *)"SBPP", 0, 0}, back;
    size_t len;
    char *text = spool_status_encode(&st, &len);

    (void)state;
    assert_non_null(text);
    assert_int_equal(spool_status_decode(text, len, &back), 0);
    assert_int_equal(back.attempts, 3);
    assert_int_equal(back.next_retry, 1700000000LL);
    assert_int_equal(back.nslots, 4);
    assert_memory_equal(back.slots, "SBPP", 4);
    assert_int_equal(back.hold, 0);
    assert_null(memmem(text, len, "hold", 4)); /* never held: the file reads as before */
    free(back.slots);
    /* torn (no end line) or foreign files are refused */
    assert_int_equal(spool_status_decode(text, len - 4, &back), -1);
    assert_int_equal(spool_status_decode("garbage\n", 8, &back), -1);
    free(text);
}

static void test_status_unknown_slot_is_pending(void **state)
{
    const char *t = "MTA-STATUS 1\nattempts 1\nnext 5\nslots SX?\nfuture line\nend\n";
    struct spool_status back;

    (void)state;
    assert_int_equal(spool_status_decode(t, strlen(t), &back), 0);
    assert_int_equal(back.nslots, 3);
    assert_memory_equal(back.slots, "SPP", 3);
    free(back.slots);
}

/* A hold is kept in the status file ("hold 1") and survives a decode; a bad or repeated
 * hold line makes the file unreadable (quarantined), never silently "not held". */
static void test_status_hold(void **state)
{
    struct spool_status st = {0, 0, 2, (char *)"PP", 1, 1}, back;
    size_t len;
    char *text = spool_status_encode(&st, &len);
    const char *twice = "MTA-STATUS 1\nattempts 0\nnext 0\nhold 1\nhold 1\nslots P\nend\n";
    const char *bad = "MTA-STATUS 1\nattempts 0\nnext 0\nhold 2\nslots P\nend\n";

    (void)state;
    assert_non_null(text);
    assert_non_null(memmem(text, len, "\nhold 1\n", 8));
    assert_int_equal(spool_status_decode(text, len, &back), 0);
    assert_int_equal(back.hold, 1);
    assert_memory_equal(back.slots, "PP", 2);
    free(back.slots);
    free(text);
    assert_int_equal(spool_status_decode(twice, strlen(twice), &back), -1);
    assert_int_equal(spool_status_decode(bad, strlen(bad), &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_clamped),
        cmocka_unit_test(test_status_round_trip),
        cmocka_unit_test(test_status_unknown_slot_is_pending),
        cmocka_unit_test(test_status_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
