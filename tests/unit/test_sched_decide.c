/*
 * test_sched_decide.c - the scheduler's decision table: what the relay reports per
 * recipient (success, temporary, permanent) becomes sent, deferred or bounced; a
 * deferral past maximal_queue_lifetime (bounce_queue_lifetime for the null sender)
 * becomes bounced (expired); and which notice is due (none for the null sender).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mta/conf.h"
#include "mta/sched.h"
#include "queue/sched_int.h"

struct fixture {
    struct conf conf;
    struct sched s;
    struct spool_envelope env;
    struct spool_rcpt rcpt[3];
    struct sched_msg m;
    char *reason[3];
    int rcptidx[3], result[3];
    struct sched_jobx j;
};

/* fixture_new - a job of three recipients of a message that arrived AGE seconds ago from
 * SENDER, lifetimes of one day (maximal) and one hour (bounce). */
static struct fixture *fixture_new(const char *sender, long long age)
{
    struct fixture *f = calloc(1, sizeof(*f));
    int i;

    assert_non_null(f);
    f->conf.maximal_queue_lifetime = 86400;
    f->conf.bounce_queue_lifetime = 3600;
    f->s.conf = &f->conf;
    f->env.sender = (char *)sender;
    f->env.arrival_us = ((long long)time(NULL) - age) * 1000000LL;
    f->env.rcpt = f->rcpt;
    f->env.nrcpt = 3;
    for (i = 0; i < 3; i++) {
        f->rcpt[i].addr = (char *)"u@example.org";
        f->rcptidx[i] = i;
    }
    f->m.env = &f->env;
    f->m.nslots = 3;
    f->m.reason = f->reason;
    f->j.m = &f->m;
    f->j.pub.env = &f->env;
    f->j.pub.nrcpt = 3;
    f->j.pub.rcpt = f->rcptidx;
    f->j.pub.result = f->result;
    strcpy(f->j.pub.queue_id, "TESTID");
    return f;
}

static void fixture_free(struct fixture *f)
{
    int i;

    for (i = 0; i < 3; i++)
        sched_reason_put(&f->s, f->reason[i]); /* shared strings (sched_msg.c) */
    htab_free(&f->s.reason_tab);
    free(f);
}

static void test_report_decides(void **state)
{
    struct fixture *f = fixture_new("a@example.com", 10);
    struct sched_job *job = &f->j.pub;

    (void)state;
    assert_int_equal(sched_job_report(&f->s, job, 0, SCHED_CLASS_SUCCESS, "250 ok"),
                     SCHED_RESULT_SENT);
    assert_int_equal(sched_job_report(&f->s, job, 1, SCHED_CLASS_TEMP, "451 later"),
                     SCHED_RESULT_DEFER);
    assert_int_equal(sched_job_report(&f->s, job, 2, SCHED_CLASS_PERM, "550 no"),
                     SCHED_RESULT_BOUNCE);
    assert_int_equal(job->result[0], SCHED_RESULT_SENT);
    assert_int_equal(job->result[1], SCHED_RESULT_DEFER);
    assert_int_equal(job->result[2], SCHED_RESULT_BOUNCE);
    /* the deferral reason is what mailq shows */
    assert_string_equal(f->reason[1], "451 later");
    /* one result per attempt: a second report changes nothing */
    assert_int_equal(sched_job_report(&f->s, job, 1, SCHED_CLASS_PERM, "550 no"),
                     SCHED_RESULT_NONE);
    assert_int_equal(job->result[1], SCHED_RESULT_DEFER);
    /* young enough: nothing expires */
    assert_int_equal(sched_job_decide(&f->s, job, 0), 0);
    assert_int_equal(job->result[1], SCHED_RESULT_DEFER);
    assert_int_equal(sched_job_notice(job, 0), SCHED_NOTICE_NONE); /* no NOTIFY=SUCCESS */
    assert_int_equal(sched_job_notice(job, 1), SCHED_NOTICE_NONE);
    assert_int_equal(sched_job_notice(job, 2), SCHED_NOTICE_FAILURE);
    f->rcpt[0].notify = SPOOL_NOTIFY_SUCCESS;
    f->rcpt[2].notify = SPOOL_NOTIFY_NEVER;
    assert_int_equal(sched_job_notice(job, 0), SCHED_NOTICE_SUCCESS);
    assert_int_equal(sched_job_notice(job, 2), SCHED_NOTICE_NONE);
    fixture_free(f);
}

static void test_temp_past_lifetime_expires(void **state)
{
    struct fixture *f = fixture_new("a@example.com", 86400 + 60);
    struct sched_job *job = &f->j.pub;

    (void)state;
    sched_job_report(&f->s, job, 0, SCHED_CLASS_TEMP, "451 later");
    sched_job_report(&f->s, job, 1, SCHED_CLASS_SUCCESS, "250 ok");
    /* stopping: the next start decides */
    assert_int_equal(sched_job_decide(&f->s, job, 1), 0);
    assert_int_equal(job->result[0], SCHED_RESULT_DEFER);
    assert_int_equal(sched_job_decide(&f->s, job, 0), 1);
    assert_int_equal(job->result[0], SCHED_RESULT_BOUNCE);
    assert_int_equal(job->result[1], SCHED_RESULT_SENT);
    assert_int_equal(job->result[2], SCHED_RESULT_NONE); /* not tried: stays pending */
    assert_int_equal(sched_job_notice(job, 0), SCHED_NOTICE_FAILURE);
    /* a notice that cannot be queued: deferred again, not lost */
    sched_job_unbounce(&f->s, job, 0, SCHED_RESULT_DEFER);
    assert_int_equal(job->result[0], SCHED_RESULT_DEFER);
    fixture_free(f);
}

static void test_null_sender(void **state)
{
    /* the null sender's lifetime is bounce_queue_lifetime; it never gets a notice */
    struct fixture *f = fixture_new("", 3600 + 60);
    struct sched_job *job = &f->j.pub;

    (void)state;
    sched_job_report(&f->s, job, 0, SCHED_CLASS_TEMP, "451 later");
    sched_job_report(&f->s, job, 1, SCHED_CLASS_PERM, "550 no");
    assert_int_equal(sched_job_decide(&f->s, job, 0), 1);
    assert_int_equal(job->result[0], SCHED_RESULT_BOUNCE);
    assert_int_equal(sched_job_notice(job, 0), SCHED_NOTICE_NONE);
    assert_int_equal(sched_job_notice(job, 1), SCHED_NOTICE_NONE);
    fixture_free(f);
}

static void test_cc_copy_no_notice(void **state)
{
    /* slot 3 is the cc_mta copy of recipient 0: never a notice */
    struct fixture *f = fixture_new("a@example.com", 10);
    struct sched_job *job = &f->j.pub;

    (void)state;
    f->rcptidx[0] = 3;
    f->m.nslots = 4;
    job->nrcpt = 1;
    f->m.reason = NULL;
    assert_int_equal(sched_job_report(&f->s, job, 0, SCHED_CLASS_PERM, "550 no"),
                     SCHED_RESULT_BOUNCE);
    assert_int_equal(sched_job_notice(job, 0), SCHED_NOTICE_NONE);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_decides),
        cmocka_unit_test(test_temp_past_lifetime_expires),
        cmocka_unit_test(test_null_sender),
        cmocka_unit_test(test_cc_copy_no_notice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
