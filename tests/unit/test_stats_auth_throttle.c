/*
 * test_stats_auth_throttle.c - the web UI's per-client throttle of wrong Basic
 * credentials (src/stats/auth.c) on a fake clock: the limit, the lockout and its
 * end, old failures expiring, a success forgetting failures, other clients
 * untouched, and a full table forgetting the oldest client rather than a locked one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "stats/stats_int.h"

static void test_lockout_after_limit(void **state)
{
    struct stats_auth_throttle *t = stats_auth_throttle_new(3, 60);
    assert_non_null(t);
    assert_int_equal(stats_auth_throttle_result(t, "10.0.0.1", 0, 100), 0);
    assert_int_equal(stats_auth_throttle_result(t, "10.0.0.1", 0, 101), 0);
    assert_true(stats_auth_throttle_wait(t, "10.0.0.1", 102) == 0);
    assert_int_equal(stats_auth_throttle_result(t, "10.0.0.1", 0, 102), 1); /* locked now */
    assert_true(stats_auth_throttle_wait(t, "10.0.0.1", 103) > 58);
    assert_true(stats_auth_throttle_wait(t, "10.0.0.2", 103) == 0);   /* others are not */
    assert_true(stats_auth_throttle_wait(t, "10.0.0.1", 162.5) == 0); /* lockout over */
    /* and its count starts again from zero */
    assert_int_equal(stats_auth_throttle_result(t, "10.0.0.1", 0, 163), 0);
    assert_int_equal(stats_auth_throttle_result(t, "10.0.0.1", 0, 164), 0);
    assert_int_equal(stats_auth_throttle_result(t, "10.0.0.1", 0, 165), 1);
    stats_auth_throttle_free(t);
}

static void test_old_failures_expire_and_success_forgets(void **state)
{
    struct stats_auth_throttle *t = stats_auth_throttle_new(3, 10);
    stats_auth_throttle_result(t, "a", 0, 0);
    stats_auth_throttle_result(t, "a", 0, 1);
    /* 10 s after the first failure the window starts again */
    assert_int_equal(stats_auth_throttle_result(t, "a", 0, 11), 0);
    assert_int_equal(stats_auth_throttle_result(t, "a", 0, 12), 0);
    stats_auth_throttle_result(t, "a", 1, 13); /* the right password */
    assert_int_equal(stats_auth_throttle_result(t, "a", 0, 14), 0);
    assert_int_equal(stats_auth_throttle_result(t, "a", 0, 15), 0);
    assert_int_equal(stats_auth_throttle_result(t, "a", 0, 16), 1);
    stats_auth_throttle_free(t);
}

static void test_full_table_keeps_locked_clients(void **state)
{
    struct stats_auth_throttle *t = stats_auth_throttle_new(2, 100);
    char a[32];
    stats_auth_throttle_result(t, "locked", 0, 0);
    assert_int_equal(stats_auth_throttle_result(t, "locked", 0, 0), 1);
    for (int i = 0; i < 5000; i++) { /* more addresses than the table holds */
        snprintf(a, sizeof a, "c%d", i);
        stats_auth_throttle_result(t, a, 0, 1 + i * 0.001);
    }
    assert_true(stats_auth_throttle_wait(t, "locked", 50) > 0);
    stats_auth_throttle_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lockout_after_limit),
        cmocka_unit_test(test_old_failures_expire_and_success_forgets),
        cmocka_unit_test(test_full_table_keeps_locked_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
