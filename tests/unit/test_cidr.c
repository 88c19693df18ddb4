/*
 * test_cidr.c - smtpd_trusted_networks lists: parsing (good and bad entries, with
 * the error a user sees) and matching of IPv4, IPv6 and IPv4-mapped clients.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mta/cidr.h"

/* match - does client address ADDR (v4 or v6 text) match list TEXT? */
static int match(const char *text, const char *addr)
{
    struct sockaddr_storage ss;
    char *err = NULL;
    struct cidr_list *l = cidr_list_parse(text, &err);

    assert_non_null(l);
    assert_null(err);
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
    }
    int r = cidr_list_match(l, (struct sockaddr *)&ss);
    cidr_list_free(l);
    return r;
}

/* parse_error - the error text for a list that must be refused. */
static char *parse_error(const char *text)
{
    char *err = NULL;
    struct cidr_list *l = cidr_list_parse(text, &err);

    assert_null(l);
    assert_non_null(err);
    return err;
}

static void test_v4(void **state)
{
    assert_true(match("127.0.0.1", "127.0.0.1"));
    assert_false(match("127.0.0.1", "127.0.0.2"));
    assert_true(match("10.0.0.0/8", "10.255.1.2"));
    assert_false(match("10.0.0.0/8", "11.0.0.0"));
    assert_true(match("192.168.1.128/25", "192.168.1.255"));
    assert_false(match("192.168.1.128/25", "192.168.1.127"));
    assert_true(match("10.1.2.3/32", "10.1.2.3"));
    assert_false(match("10.1.2.3/32", "10.1.2.4"));
    assert_true(match("0.0.0.0/0", "203.0.113.9"));  /* open relay, as the spec says */
    assert_false(match("0.0.0.0/0", "2001:db8::1")); /* an IPv4 /0 is not all of IPv6 */
}

static void test_v6(void **state)
{
    assert_true(match("::1", "::1"));
    assert_false(match("::1", "::2"));
    assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(match("2001:db8::/32", "2001:db9::1"));
    assert_true(match("[2001:db8::]/48", "2001:db8:0:ffff::1"));
    assert_true(match("[::1]", "::1"));
    assert_true(match("::/0", "2001:db8::1"));
    assert_false(match("::1", "127.0.0.1"));
    assert_true(match("2001:db8::2/127", "2001:db8::3")); /* odd prefix inside a byte */
    assert_false(match("2001:db8::2/127", "2001:db8::4"));
    assert_false(match("2001:db8::2/127", "2001:db8::1"));
}

static void test_mapped(void **state)
{
    /* dual-stack listeners see IPv4 clients as ::ffff:a.b.c.d */
    assert_true(match("127.0.0.1", "::ffff:127.0.0.1"));
    assert_true(match("10.0.0.0/8", "::ffff:10.9.8.7"));
    assert_false(match("10.0.0.0/8", "::ffff:11.9.8.7"));
    assert_true(match("0.0.0.0/0", "::ffff:1.2.3.4"));
    /* and an IPv6 entry in mapped form matches plain IPv4 clients */
    assert_true(match("::ffff:10.0.0.0/104", "10.1.1.1"));
    assert_false(match("::ffff:10.0.0.0/104", "11.1.1.1"));
    /* a client that merely ends in the same 4 bytes is not mapped */
    assert_false(match("127.0.0.1", "::127.0.0.1"));
}

static void test_lists(void **state)
{
    const char *l = "127.0.0.1, 10.0.0.0/8 ::1,,\t192.168.0.0/16";
    assert_true(match(l, "127.0.0.1"));
    assert_true(match(l, "10.3.3.3"));
    assert_true(match(l, "::1"));
    assert_true(match(l, "192.168.44.1"));
    assert_false(match(l, "172.16.0.1"));
    assert_false(match("", "127.0.0.1")); /* empty list: nobody is trusted */
    assert_false(match(" , ", "127.0.0.1"));
}

static void test_bad(void **state)
{
    char *e;

    e = parse_error("10.0.0.0/33");
    assert_string_equal(e, "prefix length /33 in '10.0.0.0/33' is larger than /32");
    free(e);
    e = parse_error("::/129");
    assert_string_equal(e, "prefix length /129 in '::/129' is larger than /128");
    free(e);
    e = parse_error("127.0.0.1 example.com");
    assert_string_equal(e, "'example.com' is not an IPv4 or IPv6 address or CIDR block");
    free(e);
    e = parse_error("10.0.0.0/");
    assert_string_equal(e, "bad prefix length in '10.0.0.0/' (expected /0 to /32)");
    free(e);
    e = parse_error("10.0.0.0/-1");
    assert_string_equal(e, "bad prefix length in '10.0.0.0/-1' (expected /0 to /32)");
    free(e);
    e = parse_error("10.0.0.0/8x");
    free(e);
    e = parse_error("10.0.0.0/0008");
    free(e);
    e = parse_error("10.1.2.3/8");
    assert_string_equal(e, "'10.1.2.3/8' has host bits set beyond the prefix; did you mean "
                           "'10.0.0.0/8'?");
    free(e);
    e = parse_error("2001:db8::1/32");
    assert_string_equal(e, "'2001:db8::1/32' has host bits set beyond the prefix; did you mean "
                           "'2001:db8::/32'?");
    free(e);
    e = parse_error("256.1.1.1");
    free(e);
    e = parse_error("1.2.3");
    free(e);
    e = parse_error("[127.0.0.1]"); /* brackets are for IPv6 only */
    free(e);
    e = parse_error("[::1");
    free(e);
    e = parse_error("/8");
    free(e);
    char big[400];
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    e = parse_error(big);
    free(e);
}

static void test_edge(void **state)
{
    struct sockaddr sa = {.sa_family = AF_UNIX};
    struct cidr_list *l = cidr_list_parse("0.0.0.0/0 ::/0", NULL);

    assert_non_null(l);
    assert_false(cidr_list_match(l, &sa)); /* not an IP client */
    assert_false(cidr_list_match(NULL, &sa));
    cidr_list_free(l);
    cidr_list_free(NULL);
    l = cidr_list_parse(NULL, NULL);
    assert_non_null(l);
    cidr_list_free(l);
    assert_null(cidr_list_parse("bogus", NULL)); /* err may be NULL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),    cmocka_unit_test(test_v6),  cmocka_unit_test(test_mapped),
        cmocka_unit_test(test_lists), cmocka_unit_test(test_bad), cmocka_unit_test(test_edge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
