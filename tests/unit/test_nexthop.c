/*
 * test_nexthop.c - Postfix next-hop syntax of smart_relay and cc_mta: every
 * accepted form with the host, port and MX flag it yields, and the errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mta/nexthop.h"

/* ok - S parses to HOST, PORT, NO_MX. */
static void ok(const char *s, const char *host, int port, int no_mx)
{
    struct nexthop nh;
    char *err = NULL;

    assert_int_equal(nexthop_parse(s, &nh, &err), 0);
    assert_null(err);
    assert_string_equal(nh.host, host);
    assert_int_equal(nh.port, port);
    assert_int_equal(nh.no_mx, no_mx);
}

/* bad - S is refused with message WANT (NULL: any message). */
static void bad(const char *s, const char *want)
{
    struct nexthop nh;
    char *err = NULL;

    assert_int_equal(nexthop_parse(s, &nh, &err), -1);
    assert_non_null(err);
    if (want)
        assert_string_equal(err, want);
    free(err);
}

static void test_forms(void **state)
{
    ok("mail.example.com", "mail.example.com", 25, 0);
    ok("mail.example.com:587", "mail.example.com", 587, 0);
    ok("[mail.example.com]", "mail.example.com", 25, 1);
    ok("[mail.example.com]:2525", "mail.example.com", 2525, 1);
    ok("[192.0.2.1]:26", "192.0.2.1", 26, 1);
    ok("[192.0.2.1]", "192.0.2.1", 25, 1);
    ok("[2001:db8::1]:25", "2001:db8::1", 25, 1);
    ok("[::1]", "::1", 25, 1);
    ok("[IPv6:2001:db8::2]:465", "2001:db8::2", 465, 1);
    ok("example.com.", "example.com.", 25, 0);
    ok("relay_1.example", "relay_1.example", 25, 0);
    ok("h:65535", "h", 65535, 0);
    ok("h:1", "h", 1, 0);
}

static void test_errors(void **state)
{
    bad("", "empty next hop");
    bad(NULL, "empty next hop");
    bad("[mail.example.com", "missing ']' in '[mail.example.com'");
    bad("[]", "empty host in '[]'");
    bad("[]:25", "empty host in '[]:25'");
    bad(":25", "empty host in ':25'");
    bad("host:0", "bad port '0' in 'host:0' (expected 1 to 65535)");
    bad("host:65536", "bad port '65536' in 'host:65536' (expected 1 to 65535)");
    bad("host:", "bad port '' in 'host:' (expected 1 to 65535)");
    bad("host:smtp", "bad port 'smtp' in 'host:smtp' (expected 1 to 65535)");
    bad("host:-1", NULL);
    bad("host:99999999999999999999", NULL);
    bad("2001:db8::1", "an IPv6 address must be written in brackets: '[2001:db8::1]'");
    bad("[2001:db8::zz]:25", "'2001:db8::zz' is not a valid IPv6 address");
    bad("[host]x", "unexpected text after ']' in '[host]x' (expected [host]:port)");
    bad("[host]:", NULL);
    bad("bad host", "'bad host' is not a valid host name");
    bad("a..b", NULL);
    bad(".a", NULL);
    bad("[a/b]", "'a/b' is not a valid host name or IP address");
}

static void test_long(void **state)
{
    char s[600];

    /* a 64-character label is one too many */
    memset(s, 'a', 64);
    strcpy(s + 64, ".example");
    bad(s, NULL);
    memset(s, 'a', 63);
    strcpy(s + 63, ".example");
    ok(s, s, 25, 0);
    /* longer than struct nexthop can hold: refused, never truncated */
    memset(s, 'a', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    for (int i = 50; i < (int)sizeof(s) - 1; i += 50)
        s[i] = '.';
    bad(s, NULL);
    s[0] = '[';
    bad(s, NULL);
}

static void test_null_err(void **state)
{
    struct nexthop nh;

    assert_int_equal(nexthop_parse("[x", &nh, NULL), -1);
    assert_int_equal(nexthop_parse("x", &nh, NULL), 0);
    assert_true(nexthop_valid_hostname("a-b.c"));
    assert_false(nexthop_valid_hostname(""));
    assert_false(nexthop_valid_hostname("a b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_long),
        cmocka_unit_test(test_null_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
