/*
 * test_mtasts.c - the MTA-STS policy parser and MX pattern match (RFC 8461
 * 3.2, 3.4), and the TLSA/TXT answer parsers behind DANE and the _mta-sts
 * record, fed hand-made DNS packets (truncated ones must be refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dns_int.h"
#include "relay/relay_mtasts.h"

static int parse(const char *text, struct relay_sts_policy *p, char *why)
{
    return relay_sts_parse(text, strlen(text), p, why, 200);
}

static void test_policy_valid(void **state)
{
    struct relay_sts_policy p;
    char why[200];

    (void)state;
    assert_int_equal(parse("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\n"
                           "mx: *.example.net\r\nmax_age: 604800\r\n",
                           &p, why),
                     0);
    assert_int_equal(p.mode, RELAY_STS_ENFORCE);
    assert_int_equal(p.max_age, 604800);
    assert_int_equal(p.nmx, 2);
    assert_string_equal(p.mx[1], "*.example.net");
    /* LF line ends, blanks around values, unknown keys ignored, max_age capped at a year */
    assert_int_equal(parse("version:STSv1\nmode:  testing \nfoo: bar\nmx: a.test\n"
                           "max_age: 99999999999\n",
                           &p, why),
                     0);
    assert_int_equal(p.mode, RELAY_STS_TESTING);
    assert_int_equal(p.max_age, 31557600);
    /* mode none needs no mx */
    assert_int_equal(parse("version: STSv1\nmode: none\nmax_age: 86400\n", &p, why), 0);
}

static void test_policy_invalid(void **state)
{
    struct relay_sts_policy p;
    char why[200];

    (void)state;
    assert_int_equal(parse("mode: enforce\nmx: a.test\nmax_age: 1\n", &p, why), -1);
    assert_string_equal(why, "invalid policy: no version: STSv1");
    assert_int_equal(parse("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", &p, why), -1);
    assert_int_equal(parse("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", &p, why), -1);
    assert_string_equal(why, "invalid policy: bad or missing mode");
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -5\n", &p, why),
                     -1);
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1x\n", &p, why),
                     -1);
    assert_string_equal(why, "invalid policy: bad or missing max_age");
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmax_age: 10\n", &p, why), -1);
    assert_string_equal(why, "invalid policy: no mx");
    assert_int_equal(parse("", &p, why), -1);
}

static void test_mx_match(void **state)
{
    struct relay_sts_policy p;
    char why[200];

    (void)state;
    assert_int_equal(parse("version: STSv1\nmode: enforce\nmx: mail.example.com\n"
                           "mx: *.example.net\nmax_age: 10\n",
                           &p, why),
                     0);
    assert_true(relay_sts_mx_match(&p, "mail.example.com"));
    assert_true(relay_sts_mx_match(&p, "MAIL.Example.COM."));
    assert_true(relay_sts_mx_match(&p, "mx1.example.net"));
    assert_false(relay_sts_mx_match(&p, "a.mx1.example.net")); /* one label only */
    assert_false(relay_sts_mx_match(&p, "example.net"));
    assert_false(relay_sts_mx_match(&p, "xexample.net"));
    assert_false(relay_sts_mx_match(&p, "mail.example.com.evil.test"));
}

/* put_name - NAME in DNS wire form at P; its length. */
static size_t put_name(unsigned char *p, const char *name)
{
    size_t n = 0;

    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        p[n++] = (unsigned char)l;
        memcpy(p + n, name, l);
        n += l;
        name += l + (dot ? 1 : 0);
    }
    p[n++] = 0;
    return n;
}

/* answer - a response with one question and one answer of TYPE holding RD. */
static size_t answer(unsigned char *buf, const char *name, int type, const unsigned char *rd,
                     size_t rdlen)
{
    size_t n = 12;

    memset(buf, 0, 12);
    buf[2] = 0x81;
    buf[3] = 0xa0; /* RA, AD */
    buf[5] = 1;
    buf[7] = 1;
    n += put_name(buf + n, name);
    buf[n++] = 0;
    buf[n++] = (unsigned char)type;
    buf[n++] = 0;
    buf[n++] = 1;
    buf[n++] = 0xc0; /* pointer to the question's name */
    buf[n++] = 12;
    buf[n++] = 0;
    buf[n++] = (unsigned char)type;
    buf[n++] = 0;
    buf[n++] = 1;
    memset(buf + n, 0, 4); /* TTL */
    n += 4;
    buf[n++] = (unsigned char)(rdlen >> 8);
    buf[n++] = (unsigned char)rdlen;
    memcpy(buf + n, rd, rdlen);
    return n + rdlen;
}

static void test_tlsa_and_txt_packets(void **state)
{
    unsigned char buf[512], rd[64];
    struct dns_tlsa t[4];
    struct dns_txt x[2];
    size_t n;

    (void)state;
    rd[0] = 3;
    rd[1] = 1;
    rd[2] = 1;
    memset(rd + 3, 0xab, 32);
    n = answer(buf, "_25._tcp.mx.example", 52, rd, 35);
    assert_int_equal(dns_tlsa_parse(buf, (int)n, t, 4), 1);
    assert_int_equal(t[0].usage, 3);
    assert_int_equal(t[0].len, 32);
    assert_int_equal(t[0].data[31], 0xab);
    /* every truncation of the packet is refused or yields nothing, never read past */
    for (size_t cut = 0; cut < n; cut++)
        assert_true(dns_tlsa_parse(buf, (int)cut, t, 4) <= 0);
    /* TXT: two character-strings joined */
    memcpy(rd, "\x07v=STSv1\x06; id=7", 15);
    n = answer(buf, "_mta-sts.example", 16, rd, 15);
    assert_int_equal(dns_txt_parse(buf, (int)n, x, 2), 1);
    assert_string_equal(x[0].text, "v=STSv1; id=7");
    /* a string longer than its record is skipped */
    rd[0] = 40;
    n = answer(buf, "_mta-sts.example", 16, rd, 15);
    assert_int_equal(dns_txt_parse(buf, (int)n, x, 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_valid),
        cmocka_unit_test(test_policy_invalid),
        cmocka_unit_test(test_mx_match),
        cmocka_unit_test(test_tlsa_and_txt_packets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
