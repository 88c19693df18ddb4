/*
 * test_smtpd_cmd.c - the command lexer: verbs case-insensitive, arguments
 * after any run of blanks, unknown verbs, and the RFC 2920 "last in group"
 * flags that the pipelining rule relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "smtpd/smtpd_cmd.h"

static void test_verbs(void **st)
{
    const char *arg;
    assert_int_equal(smtpd_cmd_parse("EHLO client.example", &arg), SMTPD_CMD_EHLO);
    assert_string_equal(arg, "client.example");
    assert_int_equal(smtpd_cmd_parse("ehlo   x", &arg), SMTPD_CMD_EHLO);
    assert_string_equal(arg, "x");
    assert_int_equal(smtpd_cmd_parse("Mail FROM:<a@b> SIZE=1", &arg), SMTPD_CMD_MAIL);
    assert_string_equal(arg, "FROM:<a@b> SIZE=1");
    assert_int_equal(smtpd_cmd_parse("RCPT\tTO:<a@b>", &arg), SMTPD_CMD_RCPT);
    assert_string_equal(arg, "TO:<a@b>");
    assert_int_equal(smtpd_cmd_parse("DATA", &arg), SMTPD_CMD_DATA);
    assert_string_equal(arg, "");
    assert_int_equal(smtpd_cmd_parse("bdat 100 LAST", &arg), SMTPD_CMD_BDAT);
    assert_string_equal(arg, "100 LAST");
    assert_int_equal(smtpd_cmd_parse("QUIT", &arg), SMTPD_CMD_QUIT);
    assert_int_equal(smtpd_cmd_parse("rset", &arg), SMTPD_CMD_RSET);
    assert_int_equal(smtpd_cmd_parse("NOOP x", &arg), SMTPD_CMD_NOOP);
    assert_int_equal(smtpd_cmd_parse("VRFY a@b", &arg), SMTPD_CMD_VRFY);
    assert_int_equal(smtpd_cmd_parse("HELP", &arg), SMTPD_CMD_HELP);
    assert_int_equal(smtpd_cmd_parse("HELO h", &arg), SMTPD_CMD_HELO);
}

static void test_unknown(void **st)
{
    const char *arg;
    /* a verb prefix or a longer word is not the command */
    assert_int_equal(smtpd_cmd_parse("MAI FROM:<a@b>", &arg), SMTPD_CMD_UNKNOWN);
    assert_int_equal(smtpd_cmd_parse("MAILX FROM:<a@b>", &arg), SMTPD_CMD_UNKNOWN);
    assert_int_equal(smtpd_cmd_parse("STARTTLSX", &arg), SMTPD_CMD_UNKNOWN);
    assert_int_equal(smtpd_cmd_parse("starttls", &arg), SMTPD_CMD_STARTTLS);
    assert_int_equal(smtpd_cmd_parse("AUTH PLAIN", &arg), SMTPD_CMD_AUTH);
    assert_int_equal(smtpd_cmd_parse("GET / HTTP/1.0", &arg), SMTPD_CMD_UNKNOWN);
    assert_int_equal(smtpd_cmd_parse("", &arg), SMTPD_CMD_UNKNOWN);
    assert_int_equal(smtpd_cmd_parse("   ", &arg), SMTPD_CMD_UNKNOWN);
}

static void test_flags(void **st)
{
    /* RFC 2920 3.1: EHLO, DATA, VRFY, NOOP end a pipelined group; MAIL/RCPT/RSET/BDAT do not */
    assert_true(smtpd_cmd_defs[SMTPD_CMD_EHLO].flags & SMTPD_CMDF_LAST);
    assert_true(smtpd_cmd_defs[SMTPD_CMD_DATA].flags & SMTPD_CMDF_LAST);
    assert_false(smtpd_cmd_defs[SMTPD_CMD_MAIL].flags & SMTPD_CMDF_LAST);
    assert_false(smtpd_cmd_defs[SMTPD_CMD_RCPT].flags & SMTPD_CMDF_LAST);
    assert_false(smtpd_cmd_defs[SMTPD_CMD_BDAT].flags & SMTPD_CMDF_LAST);
    assert_string_equal(smtpd_cmd_defs[SMTPD_CMD_UNKNOWN].lname, "unknown");
}

static void test_junk_flags(void **st)
{
    /* Postfix's smtpd_junk_command_limit set (its SMTPD_CMD_FLAG_LIMIT) plus HELP */
    static const enum smtpd_cmd_id junk[] = {SMTPD_CMD_HELO, SMTPD_CMD_EHLO, SMTPD_CMD_RSET,
                                             SMTPD_CMD_NOOP, SMTPD_CMD_VRFY, SMTPD_CMD_HELP};
    int n = 0;
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_true(smtpd_cmd_defs[junk[i]].flags & SMTPD_CMDF_JUNK);
    for (int i = 0; i < SMTPD_CMD_COUNT; i++)
        n += (smtpd_cmd_defs[i].flags & SMTPD_CMDF_JUNK) != 0;
    assert_int_equal(n, 6); /* MAIL, RCPT, DATA, AUTH, STARTTLS, QUIT are not junk */
}

static void test_count_saturates(void **st)
{
    int n = INT_MAX - 2;
    for (int i = 0; i < 5; i++)
        smtpd_count_inc(&n);
    assert_int_equal(n, INT_MAX); /* stays there: no wrap to INT_MIN */
    n = 0;
    smtpd_count_inc(&n);
    assert_int_equal(n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),           cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_flags),           cmocka_unit_test(test_junk_flags),
        cmocka_unit_test(test_count_saturates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
