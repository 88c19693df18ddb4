/*
 * test_dns_mx.c - MX ordering: ascending preference, and records of equal
 * preference shuffled (every order occurs, lower preferences always first).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/dns.h"

static unsigned seq_state;
static unsigned test_rnd(void)
{
    seq_state = seq_state * 1103515245u + 12345u;
    return seq_state >> 8;
}

static void test_sorted_by_preference(void **state)
{
    struct dns_mx mx[4] = {{"c", 30, 0}, {"a", 10, 0}, {"d", 40, 0}, {"b", 20, 0}};
    int i;

    (void)state;
    dns_mx_sort(mx, 4, test_rnd);
    for (i = 0; i < 4; i++)
        assert_int_equal(mx[i].pref, (i + 1) * 10);
    assert_string_equal(mx[0].host, "a");
    assert_string_equal(mx[3].host, "d");
}

static void test_equal_preferences_shuffled(void **state)
{
    int seen_first[3] = {0, 0, 0}, run, i;

    (void)state;
    for (run = 0; run < 300; run++) {
        struct dns_mx mx[4] = {{"x", 10, 0}, {"y", 10, 0}, {"z", 10, 0}, {"backup", 50, 0}};
        seq_state = (unsigned)run * 7919u + 1;
        dns_mx_sort(mx, 4, test_rnd);
        assert_string_equal(mx[3].host, "backup");
        for (i = 0; i < 3; i++)
            assert_int_equal(mx[i].pref, 10);
        seen_first[mx[0].host[0] - 'x']++;
    }
    /* each of the three equal hosts comes first in a fair share of runs */
    for (i = 0; i < 3; i++)
        assert_true(seen_first[i] > 50);
}

static void test_small_inputs(void **state)
{
    struct dns_mx one = {"only", 5, 0};

    (void)state;
    dns_mx_sort(&one, 1, NULL);
    assert_string_equal(one.host, "only");
    dns_mx_sort(NULL, 0, NULL);
    assert_string_equal(dns_status_name(DNS_NXDOMAIN), "NXDOMAIN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sorted_by_preference),
        cmocka_unit_test(test_equal_preferences_shuffled),
        cmocka_unit_test(test_small_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
