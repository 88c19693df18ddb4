/*
 * test_spool_envelope.c - the envelope text format: hostile values survive an
 * encode/decode round trip and cannot forge lines or fields; malformed or
 * truncated text is refused (never accepted, never a crash); fields over their
 * limits or with control bytes are refused on write and on read; the status
 * file's numbers are range-checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/spool.h"
#include "queue/sched_int.h"
#include "queue/spool_int.h"

static struct spool_envelope *decode_ok(const char *text)
{
    struct spool_envelope *e = NULL;
    size_t hl = 0;
    assert_int_equal(spool_env_decode(text, strlen(text), &e, &hl), 0);
    assert_int_equal(hl, strlen(text));
    return e;
}

static int decode_rc(const char *text)
{
    struct spool_envelope *e = NULL;
    size_t hl = 0;
    int rc = spool_env_decode(text, strlen(text), &e, &hl);
    if (rc == 0)
        spool_envelope_free(e);
    return rc;
}

static void test_roundtrip_hostile(void **state)
{
    /* the longest path the spool takes: 64 + '@' + 191 = 256 bytes */
    char longv[SPOOL_ADDR_MAX + 1];
    memset(longv, 'a', SPOOL_ADDR_MAX);
    longv[SPOOL_LOCAL_MAX] = '@';
    longv[SPOOL_ADDR_MAX] = '\0';
    struct spool_rcpt rc[] = {
        {"evil%rcpt_-_injected@example.com", "rfc822;x%end", SPOOL_NOTIFY_DELAY},
        {"-", "-", SPOOL_NOTIFY_NEVER},
        {"\"quoted local\"@example.com", "%41%",
         SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY},
        {"j\xc3\xbcrgen@b\xc3\xbc"
         "cher.example",
         "utf-8;j\xc3\xbcrgen", 0},
        {longv, "", 0},
    };
    struct spool_envelope in = {0};
    snprintf(in.id, sizeof in.id, "0123456789ABCDEF");
    in.sender = "";
    in.rcpt = rc;
    in.nrcpt = 5;
    in.envid = "id with spaces and %% and \xc3\xbc";
    in.ret = SPOOL_RET_FULL;
    in.smtputf8 = 1;
    in.body_8bit = 0;
    in.client_name = "unknown";
    in.client_addr = "2001:db8::1";
    in.helo = "-leading dash\r\n.\r\n";
    in.arrival_us = 1;
    in.size = 123456789012LL;
    size_t len;
    char *text = spool_env_encode(&in, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    /* plain printable ASCII lines: exactly 12 fixed lines + 1 per recipient + end */
    int lines = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            lines++;
        else
            assert_true(text[i] >= 0x20 && text[i] < 0x7f);
    }
    assert_int_equal(lines, 12 + 5 + 1);
    assert_int_equal(strncmp(text, "MTA-QUEUE 2\n", 12), 0);
    assert_int_equal(strcmp(text + len - 4, "end\n"), 0);

    struct spool_envelope *out = decode_ok(text);
    assert_string_equal(out->id, in.id);
    assert_string_equal(out->sender, "");
    assert_int_equal(out->nrcpt, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(out->rcpt[i].addr, rc[i].addr);
        assert_string_equal(out->rcpt[i].orcpt, rc[i].orcpt);
        assert_int_equal(out->rcpt[i].notify, rc[i].notify);
    }
    assert_string_equal(out->envid, in.envid);
    assert_int_equal(out->ret, SPOOL_RET_FULL);
    assert_int_equal(out->smtputf8, 1);
    assert_int_equal(out->body_8bit, 0);
    assert_string_equal(out->client_name, in.client_name);
    assert_string_equal(out->client_addr, in.client_addr);
    /* informational fields are written printable (never refused): CR LF become '?' */
    assert_string_equal(out->helo, "-leading dash??.??");
    assert_int_equal(out->arrival_us, 1);
    assert_int_equal(out->size, 123456789012LL);
    spool_envelope_free(out);

    /* every truncation is refused ("need more" or invalid), never accepted */
    for (size_t cut = 0; cut < len; cut++) {
        struct spool_envelope *e = NULL;
        size_t hl;
        int r = spool_env_decode(text, cut, &e, &hl);
        assert_int_not_equal(r, 0);
        assert_null(e);
    }
    /* bytes after the end line are the message, not envelope */
    char *more = malloc(len + 10);
    memcpy(more, text, len);
    memcpy(more + len, "rcpt - - x", 10);
    struct spool_envelope *e = NULL;
    size_t hl;
    assert_int_equal(spool_env_decode(more, len + 10, &e, &hl), 0);
    assert_int_equal(hl, len);
    assert_int_equal(e->nrcpt, 5);
    spool_envelope_free(e);
    free(more);
    free(text);
}

#define HEAD "MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 5\nsize 7\nsender a@b\n"

static void test_decode_minimal_and_unknown(void **state)
{
    struct spool_envelope *e = decode_ok(HEAD "future_key some%20value\nrcpt - - x@y\nend\n");
    assert_string_equal(e->envid, "");
    assert_string_equal(e->helo, "");
    assert_int_equal(e->ret, SPOOL_RET_DEFAULT);
    assert_string_equal(e->rcpt[0].addr, "x@y");
    spool_envelope_free(e);
}

static void test_decode_rejects(void **state)
{
    assert_int_equal(decode_rc("MTA-QUEUE 3\nid 0123456789ABCDEF\nend\n"), -1); /* version */
    assert_int_equal(decode_rc("garbage\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - - x@y\n"), 1); /* no end yet */
    assert_int_equal(decode_rc(HEAD "end\n"), -1);         /* no rcpt */
    assert_int_equal(
        decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\nsize 1\nsender a\nrcpt - - x\nend\n"),
        -1);                                                                 /* no arrival */
    assert_int_equal(decode_rc(HEAD "sender c@d\nrcpt - - x@y\nend\n"), -1); /* duplicate */
    assert_int_equal(decode_rc(HEAD "rcpt - - x%0\nend\n"), -1);             /* bad escape */
    assert_int_equal(decode_rc(HEAD "rcpt - - x%00y\nend\n"), -1);           /* NUL */
    assert_int_equal(decode_rc(HEAD "rcpt - - x%ZZ\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt BOGUS - x@y\nend\n"), -1); /* notify */
    assert_int_equal(decode_rc(HEAD "rcpt SUCCESS, - x@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - - x@y extra\nend\n"), -1);     /* trailing */
    assert_int_equal(decode_rc(HEAD "rcpt - x@y\nend\n"), -1);             /* missing */
    assert_int_equal(decode_rc(HEAD "rcpt - - x@y\r\nend\n"), -1);         /* CR */
    assert_int_equal(decode_rc(HEAD "helo a b\nrcpt - - x@y\nend\n"), -1); /* space */
    assert_int_equal(decode_rc(HEAD "ret maybe\nrcpt - - x@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "smtputf8 2\nrcpt - - x@y\nend\n"), -1);
    assert_int_equal(
        decode_rc(
            "MTA-QUEUE 1\nid 0123456789abcdef\narrival 5\nsize 7\nsender a\nrcpt - - x\nend\n"),
        -1); /* lower-case id */
    assert_int_equal(decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\narrival "
                               "99999999999999999999\nsize 7\nsender a\nrcpt - - x\nend\n"),
                     -1);
    assert_int_equal(
        decode_rc(
            "MTA-QUEUE 1\nid 0123456789ABCDEF\narrival -5\nsize 7\nsender a\nrcpt - - x\nend\n"),
        -1);
}

/* env_with - a valid envelope with one recipient ADDR, sender SENDER. */
static struct spool_envelope env_with(struct spool_rcpt *rc, const char *sender)
{
    struct spool_envelope e = {0};
    snprintf(e.id, sizeof e.id, "0123456789ABCDEF");
    e.sender = (char *)sender;
    e.rcpt = rc;
    e.nrcpt = 1;
    e.envid = "";
    e.client_name = "c";
    e.client_addr = "192.0.2.1";
    e.helo = "h";
    e.arrival_us = 1;
    e.size = 1;
    return e;
}

static void rep(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

/* The writer refuses what the reader would refuse (smtpd enforces the same limits, so only a
 * caller's bug gets here), and makes informational fields fit instead of refusing them. */
static void test_encode_limits(void **state)
{
    char big[4000], addr[600];
    struct spool_rcpt rc = {"x@example.com", "", 0};
    struct spool_envelope e = env_with(&rc, "s@example.org");
    size_t len;
    char *t;

    rc.addr = "x@example.com\r\nRSET";
    assert_null(spool_env_encode(&e, &len));
    rc.addr = "x\x1b[2J@example.com";
    assert_null(spool_env_encode(&e, &len));
    rep(addr, 'a', SPOOL_LOCAL_MAX + 1);
    strcat(addr, "@example.com");
    rc.addr = addr;
    assert_null(spool_env_encode(&e, &len)); /* local part of 65 */
    rep(addr, 'a', 300);
    addr[10] = '@';
    assert_null(spool_env_encode(&e, &len)); /* path of 300 */
    rc.addr = "x@example.com";
    rep(big, 'o', SPOOL_ORCPT_MAX + 1);
    rc.orcpt = big;
    assert_null(spool_env_encode(&e, &len));
    rc.orcpt = "";
    rep(big, 'e', SPOOL_ENVID_MAX + 1);
    e.envid = big;
    assert_null(spool_env_encode(&e, &len));
    e.envid = "";
    e.sender = "s\n@example.org";
    assert_null(spool_env_encode(&e, &len));
    e.sender = "s@example.org";
    e.size = SPOOL_SIZE_MAX + 1;
    assert_null(spool_env_encode(&e, &len));
    e.size = 1;
    /* a HELO of 4000 bytes with an escape: written cut and printable, read back */
    rep(big, 'h', sizeof big - 1);
    big[5] = '\x1b';
    e.helo = big;
    t = spool_env_encode(&e, &len);
    assert_non_null(t);
    struct spool_envelope *out = decode_ok(t);
    assert_int_equal(strlen(out->helo), SPOOL_HELO_MAX);
    assert_int_equal(out->helo[5], '?');
    spool_envelope_free(out);
    free(t);
}

/* A damaged or crafted file: fields over their limits or with control bytes are refused
 * (the file is quarantined), never handed to the relay. */
static void test_decode_limits(void **state)
{
    char text[8000], v[3000];

    /* CR LF, ESC, DEL, TAB decoded inside an address: a command toward the next hop */
    assert_int_equal(decode_rc(HEAD "rcpt - - x@y%0D%0ARSET\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - - x@y%0Aquit\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - - x%1B[2J@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - - x%7F@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - - x%09@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - rfc822;a%0D%0Ab - x@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "rcpt - rfc822;a%0D%0Ab x@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "envid a%0D%0Ab\nrcpt - - x@y\nend\n"), -1);
    assert_int_equal(decode_rc(HEAD "helo a%0D%0Ab\nrcpt - - x@y\nend\n"), -1);
    assert_int_equal(decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 5\nsize 7\n"
                               "sender a%0D%0ARCPT%20TO:%3Cx@evil%3E@b\nrcpt - - x@y\nend\n"),
                     -1);
    /* lengths: an address at the limit is taken, one byte more is not */
    rep(v, 'a', SPOOL_LOCAL_MAX);
    snprintf(text, sizeof text, HEAD "rcpt - - %s@y\nend\n", v);
    spool_envelope_free(decode_ok(text));
    rep(v, 'a', SPOOL_LOCAL_MAX + 1);
    snprintf(text, sizeof text, HEAD "rcpt - - %s@y\nend\n", v);
    assert_int_equal(decode_rc(text), -1);
    rep(v, 'd', SPOOL_DOMAIN_MAX + 1);
    snprintf(text, sizeof text, HEAD "rcpt - - x@%s\nend\n", v);
    assert_int_equal(decode_rc(text), -1);
    rep(v, 'a', 2500); /* the overflow of the relay's MAIL line */
    v[10] = '@';
    snprintf(text, sizeof text,
             "MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 5\nsize 7\nsender %s\nrcpt - - x@y\nend\n",
             v);
    assert_int_equal(decode_rc(text), -1);
    snprintf(text, sizeof text, HEAD "rcpt - - %s\nend\n", v);
    assert_int_equal(decode_rc(text), -1);
    rep(v, 'o', SPOOL_ORCPT_MAX + 1);
    snprintf(text, sizeof text, HEAD "rcpt - %s x@y\nend\n", v);
    assert_int_equal(decode_rc(text), -1);
    rep(v, 'e', SPOOL_ENVID_MAX + 1);
    snprintf(text, sizeof text, HEAD "envid %s\nrcpt - - x@y\nend\n", v);
    assert_int_equal(decode_rc(text), -1);
    rep(v, 'h', SPOOL_HELO_MAX + 1);
    snprintf(text, sizeof text, HEAD "helo %s\nrcpt - - x@y\nend\n", v);
    assert_int_equal(decode_rc(text), -1);
    /* numbers: in range or refused (no overflow: a size near LLONG_MAX made recovery's
     * "header + size = file size" check overflow) */
    assert_int_equal(decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 5\n"
                               "size 9223372036854775807\nsender a\nrcpt - - x\nend\n"),
                     -1);
    assert_int_equal(decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 5\n"
                               "size 1099511627777\nsender a\nrcpt - - x\nend\n"),
                     -1);
    assert_int_equal(decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 5\n"
                               "size +7\nsender a\nrcpt - - x\nend\n"),
                     -1);
    assert_int_equal(decode_rc("MTA-QUEUE 1\nid 0123456789ABCDEF\narrival 9223372036854775807\n"
                               "size 7\nsender a\nrcpt - - x\nend\n"),
                     -1);
}

/* The status file: counts and times in range, or the file is unreadable (quarantined). */
static void test_status_numbers(void **state)
{
    struct spool_status st;

    const char *good = "MTA-STATUS 1\nattempts 3\nnext 1700000000\nslots PS\nend\n";
    assert_int_equal(spool_status_decode(good, strlen(good), &st), 0);
    assert_int_equal(st.attempts, 3);
    assert_int_equal(st.next_retry, 1700000000LL);
    assert_int_equal(st.nslots, 2);
    free(st.slots);
    static const char *bad[] = {
        "MTA-STATUS 1\nattempts 2147483648\nnext 1\nslots P\nend\n",
        "MTA-STATUS 1\nattempts 99999999999999999999999\nnext 1\nslots P\nend\n",
        "MTA-STATUS 1\nattempts -1\nnext 1\nslots P\nend\n",
        "MTA-STATUS 1\nattempts 1\nnext 9223372036854775807\nslots P\nend\n",
        "MTA-STATUS 1\nattempts 1\nnext 1x\nslots P\nend\n",
        "MTA-STATUS 1\nattempts \nnext 1\nslots P\nend\n",
        "MTA-STATUS 1\nattempts 1\nattempts 2\nnext 1\nslots P\nend\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(spool_status_decode(bad[i], strlen(bad[i]), &st), -1);
        assert_null(st.slots);
    }
}

static void test_id_helpers(void **state)
{
    assert_true(spool_id_valid("0123456789ABCDEF"));
    assert_false(spool_id_valid("0123456789ABCDE"));
    assert_false(spool_id_valid("0123456789ABCDEF0"));
    assert_false(spool_id_valid("0123456789abcdef"));
    assert_false(spool_id_valid("../../etc/passwd"));
    assert_int_equal(spool_id_hash("0123456789ABCDEF"), 15);
    char buf[64];
    assert_int_equal(spool_status_path("0123456789ABCDE3", buf, sizeof buf), 0);
    assert_string_equal(buf, "queue/3/0123456789ABCDE3.st");
    assert_int_equal(spool_status_path("../x", buf, sizeof buf), -1);
    struct spool_idgen g = {0};
    char a[SPOOL_ID_SIZE], b[SPOOL_ID_SIZE];
    spool_id_seen(&g, "FFFFFFFFFFFFF000"); /* far future: later IDs still increase */
    spool_id_next(&g, a);
    spool_id_next(&g, b);
    assert_true(strcmp("FFFFFFFFFFFFF000", a) < 0);
    assert_true(strcmp(a, b) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_hostile), cmocka_unit_test(test_decode_minimal_and_unknown),
        cmocka_unit_test(test_decode_rejects),    cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_decode_limits),     cmocka_unit_test(test_status_numbers),
        cmocka_unit_test(test_id_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
