/*
 * test_sched_dest.c - Postfix qmgr's per-destination arithmetic in sched_dest.c: slow
 * start from initial_destination_concurrency up to the limit by positive feedback
 * (1/concurrency: one step per window's worth of deliveries), a smaller window after a
 * failure, the destination dead after the failed cohort limit and back at the initial
 * concurrency when unthrottled; the feedback syntax; the rate delay's concurrency of 1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "mta/conf.h"
#include "mta/sched.h"
#include "queue/sched_int.h"

struct fixture {
    struct conf conf;
    struct sched s;
    struct sched_dest d;
    struct sched_jobx j;
    int result[1], rcpt[1];
};

/* fixture_new - a scheduler policy with LIMIT and the Postfix defaults otherwise. */
static struct fixture *fixture_new(long limit, long rate_delay)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;

    assert_non_null(f);
    f->conf.default_destination_concurrency_limit = 20;
    f->conf.smtp_destination_concurrency_limit = limit;
    f->conf.initial_destination_concurrency = 5;
    f->conf.default_destination_recipient_limit = 50;
    f->conf.default_destination_concurrency_failed_cohort_limit = 1;
    f->conf.default_destination_concurrency_positive_feedback = (char *)"1/concurrency";
    f->conf.default_destination_concurrency_negative_feedback = (char *)"1/concurrency";
    f->conf.smtp_destination_rate_delay = rate_delay;
    f->conf.minimal_backoff_time = 300;
    f->s.conf = &f->conf;
    f->s.base = event_base_new();
    assert_non_null(f->s.base);
    assert_int_equal(sched_dest_policy(&f->s, &err), 0);
    TAILQ_INIT(&f->d.jobs);
    f->d.name = (char *)"example.org";
    f->j.pub.nrcpt = 1;
    f->j.pub.rcpt = f->rcpt;
    f->j.pub.result = f->result;
    f->j.result = f->result;
    return f;
}

static void fixture_free(struct fixture *f)
{
    sched_dest_fini(&f->d);
    event_base_free(f->s.base);
    free(f);
}

/* deliver - one job of D ends: a delivery that reached the site, or a site failure. */
static void deliver(struct fixture *f, int ok)
{
    f->result[0] = ok ? SCHED_RESULT_SENT : SCHED_RESULT_DEFER;
    f->j.site_fail = !ok;
    strcpy(f->j.fail_dsn, "4.3.2");
    f->j.fail_reason = ok ? NULL : (char *)"host x[1.2.3.4] refused to talk to me: 421";
    sched_dest_job_done(&f->s, &f->d, &f->j);
}

static void test_slow_start_to_limit(void **state)
{
    struct fixture *f = fixture_new(8, 0);
    int i;

    (void)state;
    assert_true(sched_dest_may_take(&f->s, &f->d));
    assert_int_equal(f->d.window, 5);
    f->d.ntaken = 5;
    assert_false(sched_dest_may_take(&f->s, &f->d)); /* the window is full */
    for (i = 0; i < 5; i++)
        deliver(f, 1); /* one window's worth of positive feedback: one step */
    assert_int_equal(f->d.window, 6);
    for (i = 0; i < 100; i++)
        deliver(f, 1);
    assert_int_equal(f->d.window, 8); /* never above the limit */
    fixture_free(f);
}

static void test_failures_shrink_then_throttle(void **state)
{
    struct fixture *f = fixture_new(0, 0);
    int i;

    (void)state;
    assert_true(sched_dest_may_take(&f->s, &f->d));
    deliver(f, 0);
    assert_int_equal(f->d.window, 4);
    assert_false(f->d.dead);
    for (i = 0; i < 10 && !f->d.dead; i++)
        deliver(f, 0);
    assert_true(f->d.dead); /* a whole cohort failed */
    assert_true(f->d.fail_cohorts >= 1);
    assert_false(sched_dest_may_take(&f->s, &f->d));
    assert_true(sched_dest_busy(&f->d)); /* kept while dead */
    assert_string_equal(f->d.dsn, "4.3.2");
    deliver(f, 1); /* a delivery under way succeeded: back, at the initial concurrency */
    assert_false(f->d.dead);
    assert_int_equal(f->d.window, 5);
    assert_true(sched_dest_may_take(&f->s, &f->d));
    fixture_free(f);
}

static void test_policy(void **state)
{
    struct fixture *f = fixture_new(3, 0);
    char *err = NULL;

    (void)state;
    assert_int_equal(f->s.dpol.limit, 3);
    assert_int_equal(f->s.dpol.initial, 3); /* never above the limit */
    assert_int_equal(sched_dest_rcpt_limit(&f->s), 50);
    f->conf.smtp_destination_recipient_limit = 7;
    f->conf.smtp_destination_rate_delay = 2;
    assert_int_equal(sched_dest_policy(&f->s, &err), 0);
    assert_int_equal(sched_dest_rcpt_limit(&f->s), 7);
    assert_int_equal(f->s.dpol.limit, 1); /* a rate delay: one at a time */
    f->conf.default_destination_concurrency_positive_feedback = (char *)"2";
    assert_int_equal(sched_dest_policy(&f->s, &err), -1);
    assert_non_null(strstr(err, "default_destination_concurrency_positive_feedback"));
    free(err);
    err = NULL;
    f->conf.default_destination_concurrency_positive_feedback = (char *)"0.5";
    f->conf.default_destination_concurrency_negative_feedback = (char *)"1/window";
    assert_int_equal(sched_dest_policy(&f->s, &err), -1);
    assert_non_null(strstr(err, "negative_feedback"));
    free(err);
    fixture_free(f);
}

static void test_rate_delay_waits(void **state)
{
    struct fixture *f = fixture_new(0, 60);

    (void)state;
    assert_true(sched_dest_may_take(&f->s, &f->d));
    deliver(f, 1);
    assert_false(sched_dest_may_take(&f->s, &f->d)); /* 60 s after the last delivery */
    assert_true(sched_dest_busy(&f->d));             /* kept for its wake-up */
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_start_to_limit),
        cmocka_unit_test(test_failures_shrink_then_throttle),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_rate_delay_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
