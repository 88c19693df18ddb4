/*
 * test_relay_util.c - the delivery engine's pure helpers: SMTP reply collection
 * (multi-line, malformed), enhanced status codes, Postfix's delay notation,
 * xtext, EHLO keywords, the RFC 3464 notification text, and the message text
 * as sent after DATA (dot-stuffing, bare CR/LF, smtp_line_length_limit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_int.h"

static int feed(struct relay_reply *r, const char *line)
{
    return relay_reply_feed(r, line, strlen(line));
}

static void test_reply_multiline(void **state)
{
    struct relay_reply r;

    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(feed(&r, "250-mx.example"), 0);
    assert_int_equal(feed(&r, "250-PIPELINING"), 0);
    assert_int_equal(feed(&r, "250 SIZE 1000"), 1);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.text, "250-mx.example PIPELINING SIZE 1000");
    memset(&r, 0, sizeof(r));
    assert_int_equal(feed(&r, "hello"), -1);
    assert_int_equal(feed(&r, "25"), -1);
    assert_int_equal(feed(&r, "250x"), -1);
    assert_int_equal(feed(&r, "354"), 1); /* a bare code is a complete reply */
    assert_int_equal(r.code, 354);
}

static void test_reply_long_is_cut(void **state)
{
    struct relay_reply r;
    char *line = malloc(10000);
    int i;

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(line, 'a', 9999);
    line[9999] = '\0';
    memcpy(line, "550-", 4);
    for (i = 0; i < 5; i++)
        assert_int_equal(feed(&r, line), 0);
    line[3] = ' ';
    assert_int_equal(feed(&r, line), 1);
    assert_true(r.len < sizeof(r.text));
    assert_int_equal(strlen(r.text), r.len);
    free(line);
}

static void dsn_of(const char *line, const char *want)
{
    struct relay_reply r;
    char dsn[16];

    memset(&r, 0, sizeof(r));
    assert_int_equal(feed(&r, line), 1);
    relay_reply_dsn(&r, dsn, sizeof(dsn));
    assert_string_equal(dsn, want);
}

static void test_reply_dsn(void **state)
{
    (void)state;
    dsn_of("250 2.0.0 Ok: queued as X", "2.0.0");
    dsn_of("550 5.1.1 <u@x>: Recipient address rejected", "5.1.1");
    dsn_of("451 4.7.1 Greylisted", "4.7.1");
    dsn_of("550 User unknown", "5.0.0");   /* no enhanced code: class default */
    dsn_of("450 5.1.1 mismatch", "4.0.0"); /* class must agree with the reply */
    dsn_of("421 4.4.2", "4.4.2");
    dsn_of("554 5.x.1 junk", "5.0.0");
    dsn_of("250 2.1.5.9 too many", "2.0.0");
    /* found by tests/fuzz/fuzz_relay_reply: RFC 3463 wants 1-3 digits in each of the
     * subject and detail, and classes 2, 4, 5 only */
    dsn_of("421 4..30 closing", "4.0.0");
    dsn_of("550 5.1234.1 long subject", "5.0.0");
    dsn_of("550 5.1.1234 long detail", "5.0.0");
    dsn_of("999 9.1.1 no such class", "4.0.0");
    dsn_of("199 1.2.3 nor this", "4.0.0");
    dsn_of("550 5.10.100 widest", "5.10.100");
}

static void delay(double s, const char *want)
{
    char buf[32];

    relay_fmt_delay(s, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void test_delay_format(void **state)
{
    (void)state;
    delay(0, "0");
    delay(0.004, "0");
    delay(0.01, "0.01");
    delay(0.1, "0.1");
    delay(0.31, "0.31");
    delay(1.23, "1.2");
    delay(1.0, "1");
    delay(17.4, "17");
    delay(367.0, "367");
}

static void test_xtext(void **state)
{
    char buf[64];

    (void)state;
    relay_xtext("a+b=c d", buf, sizeof(buf));
    assert_string_equal(buf, "a+2Bb+3Dc+20d");
    relay_xtext("user@example.com", buf, sizeof(buf));
    assert_string_equal(buf, "user@example.com");
    relay_xtext("++++", buf, 8); /* cut, never overrun */
    assert_string_equal(buf, "+2B+2B");
}

static void test_ehlo_keywords(void **state)
{
    long long size = -1;

    (void)state;
    assert_int_equal(relay_ehlo_line("PIPELINING", 10, &size), RELAY_EXT_PIPELINING);
    assert_int_equal(relay_ehlo_line("size 10240000", 13, &size), RELAY_EXT_SIZE);
    assert_int_equal(size, 10240000);
    assert_int_equal(relay_ehlo_line("STARTTLS", 8, NULL), RELAY_EXT_STARTTLS);
    assert_int_equal(relay_ehlo_line("DSN", 3, NULL), RELAY_EXT_DSN);
    assert_int_equal(relay_ehlo_line("8BITMIME", 8, NULL), RELAY_EXT_8BITMIME);
    assert_int_equal(relay_ehlo_line("SMTPUTF8", 8, NULL), RELAY_EXT_SMTPUTF8);
    assert_int_equal(relay_ehlo_line("PIPELININGX", 11, NULL), 0);
    assert_int_equal(relay_ehlo_line("AUTH PLAIN", 10, NULL), 0);
}

/* A server's reply is kept printable (Postfix smtp_chat): no ESC, CR or other control byte
 * reaches the log, a bounce or `mtactl queue`. */
static void test_reply_printable(void **state)
{
    struct relay_reply r;
    const char l1[] = "451-4.7.1 \x1b]0;owned\x07\x1b[2J first";
    const char l2[] = "451 4.7.1 second\x1b[31m red \x7f\xc3\xbc";

    memset(&r, 0, sizeof(r));
    assert_int_equal(relay_reply_feed(&r, l1, sizeof(l1) - 1), 0);
    assert_int_equal(relay_reply_feed(&r, l2, sizeof(l2) - 1), 1);
    assert_int_equal(r.code, 451);
    assert_string_equal(r.text, "451-4.7.1 ?]0;owned??[2J first 4.7.1 second?[31m red ???");
}

/* EHLO SIZE is a number from the network: checked, never overflowing (0: no limit known). */
static void test_ehlo_size_checked(void **state)
{
    long long size = -1;

    assert_int_equal(relay_ehlo_line("SIZE 99999999999999999999999", 27, &size), RELAY_EXT_SIZE);
    assert_int_equal(size, 0);
    assert_int_equal(relay_ehlo_line("SIZE -5", 7, &size), RELAY_EXT_SIZE);
    assert_int_equal(size, 0);
    assert_int_equal(relay_ehlo_line("SIZE 9223372036854775807", 24, &size), RELAY_EXT_SIZE);
    assert_int_equal(size, 9223372036854775807LL);
    assert_int_equal(relay_ehlo_line("SIZE=52428800", 13, &size), RELAY_EXT_SIZE);
    assert_int_equal(size, 52428800);
}

static void test_dsn_text(void **state)
{
    struct relay_dsn_info info = {
        .hostname = "mta.example",
        .queue_id = "ABC123",
        .sender = "s@src.example",
        .envid = "env-1",
        .arrival_us = 1700000000LL * 1000000,
        .now = 1700000100,
        .boundary = "ABC123.1700000100/mta.example",
        .msgid = "x@mta.example",
        .success = 0,
        .hdrs_only = 1,
    };
    struct relay_dsn_rcpt r[2] = {
        {"bad@dst.example", "rfc822;Bad@dst.example", "failed", "5.1.1", "mx.dst.example",
         "550 5.1.1 unknown\r\ninjected: header"},
        {"other@dst.example", "", "failed", "4.4.1", "", "connect to x: Connection refused"},
    };
    const char *orig = "Subject: hi\r\nFrom: s@src.example\r\n";
    struct evbuffer *out = evbuffer_new();
    char *text;
    size_t len;

    (void)state;
    relay_dsn_build(&info, r, 2, orig, strlen(orig), out);
    len = evbuffer_get_length(out);
    text = calloc(1, len + 1);
    evbuffer_remove(out, text, len);
    assert_non_null(strstr(text, "From: MAILER-DAEMON@mta.example (Mail Delivery System)\r\n"));
    assert_non_null(strstr(text, "Subject: Undelivered Mail Returned to Sender\r\n"));
    assert_non_null(strstr(text, "Content-Type: multipart/report; report-type=delivery-status;"));
    assert_non_null(strstr(text, "Reporting-MTA: dns; mta.example\r\n"));
    assert_non_null(strstr(text, "Original-Envelope-Id: env-1\r\n"));
    assert_non_null(strstr(text, "Final-Recipient: rfc822; bad@dst.example\r\n"
                                 "Original-Recipient: rfc822;Bad@dst.example\r\n"
                                 "Action: failed\r\nStatus: 5.1.1\r\n"
                                 "Remote-MTA: dns; mx.dst.example\r\n"
                                 "Diagnostic-Code: smtp; 550 5.1.1 unknown  injected: header\r\n"));
    assert_non_null(strstr(text, "Final-Recipient: rfc822; other@dst.example\r\n"
                                 "Action: failed\r\nStatus: 4.4.1\r\n"
                                 "Diagnostic-Code: X-Postfix; connect to x"));
    assert_null(strstr(text, "\r\ninjected: header"));
    assert_non_null(strstr(text, "Content-Type: text/rfc822-headers\r\n"));
    assert_non_null(strstr(text, "\r\n--ABC123.1700000100/mta.example--\r\n"));
    /* every line ends in CRLF */
    assert_null(strstr(text, "\n\n"));
    free(text);
    evbuffer_free(out);
}

/* body_make - the DATA text for IN (LEN bytes) with line limit LIMIT, fed in pieces of CHUNK. */
static char *body_make(const char *in, size_t len, size_t limit, size_t chunk, size_t *outlen,
                       int *broken)
{
    struct relay_body b;
    size_t i;
    char *out;

    assert_int_equal(relay_body_init(&b, limit, len), 0);
    for (i = 0; i < len; i += chunk)
        assert_int_equal(relay_body_add(&b, in + i, len - i < chunk ? len - i : chunk), 0);
    assert_int_equal(relay_body_end(&b), 0);
    *outlen = b.len;
    if (broken)
        *broken = b.broken;
    out = malloc(b.len + 1);
    memcpy(out, b.p, b.len);
    out[b.len] = '\0';
    free(b.p);
    return out;
}

/* body_lines_ok - every line of OUT ends in CRLF, holds no CR/LF and is at most LIMIT bytes. */
static void body_lines_ok(const char *out, size_t len, size_t limit)
{
    size_t i = 0;

    while (i < len) {
        const char *nl = memchr(out + i, '\n', len - i);
        size_t l;
        assert_non_null(nl);
        l = (size_t)(nl - (out + i));
        assert_true(l >= 1 && out[i + l - 1] == '\r');
        assert_null(memchr(out + i, '\r', l - 1));
        if (limit)
            assert_true(l - 1 <= limit);
        i += l + 1;
    }
}

/* body_unbreak - OUT without the final ".\r\n", with every inserted "\r\n " removed. */
static char *body_unbreak(const char *out, size_t len, size_t *ulen)
{
    char *u = malloc(len + 1);
    size_t i, o = 0;

    assert_true(len >= 3 && memcmp(out + len - 3, ".\r\n", 3) == 0);
    len -= 3;
    for (i = 0; i < len; i++) {
        if (i + 2 < len && out[i] == '\r' && out[i + 1] == '\n' && out[i + 2] == ' ') {
            i += 2;
            continue;
        }
        u[o++] = out[i];
    }
    u[o] = '\0';
    *ulen = o;
    return u;
}

static void test_body_short_lines(void **state)
{
    static const char in[] = "Subject: x\r\n\r\n.dot\r\n..two\r\nend";
    static const char want[] = "Subject: x\r\n\r\n..dot\r\n...two\r\nend\r\n.\r\n";
    size_t chunk, len;
    int broken;

    (void)state;
    for (chunk = 1; chunk <= sizeof(in); chunk++) {
        char *out = body_make(in, sizeof(in) - 1, 998, chunk, &len, &broken);
        assert_int_equal(len, sizeof(want) - 1);
        assert_memory_equal(out, want, len);
        assert_false(broken);
        free(out);
    }
    {
        char *out = body_make("", 0, 998, 1, &len, NULL);
        assert_int_equal(len, 3);
        assert_memory_equal(out, ".\r\n", 3);
        free(out);
    }
}

static void test_body_long_line_broken(void **state)
{
    size_t n = 5100, len, ulen, chunk;
    char *in = malloc(n);
    static const size_t chunks[] = {1, 7, 998, 999, 65536};
    size_t k;

    (void)state;
    memcpy(in, "Subject: t\r\n\r\n", 14);
    memset(in + 14, 'x', 5000);
    memcpy(in + 14 + 5000, "\r\nend\r\n", 7);
    n = 14 + 5000 + 7;
    for (k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        int broken;
        char *out, *u;
        chunk = chunks[k];
        out = body_make(in, n, 998, chunk, &len, &broken);
        assert_true(broken);
        body_lines_ok(out, len, 998);
        /* Postfix's form: 998 bytes, then CRLF SPACE and 997 more per line */
        assert_int_equal(memcmp(out + 14 + 998, "\r\n x", 4), 0);
        assert_int_equal(memcmp(out + 14 + 998 + 3 + 997, "\r\n x", 4), 0);
        u = body_unbreak(out, len, &ulen);
        assert_int_equal(ulen, n);
        assert_memory_equal(u, in, n);
        free(u);
        free(out);
    }
    /* exactly 998 bytes stay one line; 0 means no limit */
    {
        char *out = body_make(in + 14, 998, 998, 4096, &len, NULL);
        assert_int_equal(len, 998 + 2 + 3);
        free(out);
        out = body_make(in, n, 0, 4096, &len, NULL);
        assert_int_equal(len, n + 3);
        assert_memory_equal(out, in, n);
        free(out);
    }
    /* a leading dot is doubled and counts against the limit */
    {
        char *out;
        in[14] = '.';
        out = body_make(in, n, 998, 4096, &len, NULL);
        body_lines_ok(out, len, 998);
        assert_int_equal(memcmp(out + 14, "..x", 3), 0);
        free(out);
    }
    free(in);
}

static void test_body_bare_cr_lf(void **state)
{
    static const char in[] = "a\rb\nc\r\r\nd\r\n\re\r";
    static const char want[] = "a b\r\nc \r\nd\r\n e \r\n.\r\n";
    size_t chunk, len;

    (void)state;
    for (chunk = 1; chunk <= sizeof(in); chunk++) {
        char *out = body_make(in, sizeof(in) - 1, 998, chunk, &len, NULL);
        assert_int_equal(len, sizeof(want) - 1);
        assert_memory_equal(out, want, len);
        free(out);
    }
    /* a bare LF before a dot: the dot starts a line and is stuffed */
    {
        char *out = body_make("x\n.\r\n", 5, 998, 1, &len, NULL);
        assert_int_equal(len, sizeof("x\r\n..\r\n.\r\n") - 1);
        assert_memory_equal(out, "x\r\n..\r\n.\r\n", len);
        free(out);
    }
}

/* utf8_valid - S (N bytes) is well-formed UTF-8 (no sequence cut). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k, need;

    while (i < n) {
        if (s[i] < 0x80)
            need = 0;
        else if (s[i] >= 0xC2 && s[i] <= 0xDF)
            need = 1;
        else if (s[i] >= 0xE0 && s[i] <= 0xEF)
            need = 2;
        else if (s[i] >= 0xF0 && s[i] <= 0xF4)
            need = 3;
        else
            return 0;
        for (k = 1; k <= need; k++)
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

static void test_body_utf8_not_split(void **state)
{
    static const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    size_t c, off;

    (void)state;
    for (c = 0; c < 3; c++)
        for (off = 0; off < 4; off++) {
            size_t cl = strlen(chars[c]), n = 0, len, ulen, i = 0;
            char *in = malloc(off + 3000 * 4 + 2), *out, *u;
            memset(in, 'a', off);
            n = off;
            while (n < off + 3000) {
                memcpy(in + n, chars[c], cl);
                n += cl;
            }
            memcpy(in + n, "\r\n", 2);
            n += 2;
            out = body_make(in, n, 998, 333, &len, NULL);
            body_lines_ok(out, len, 998);
            /* every output line is valid UTF-8 on its own */
            while (i < len - 3) {
                const char *nl = memchr(out + i, '\n', len - i);
                assert_true(utf8_valid((const unsigned char *)out + i, (size_t)(nl - out) - i - 1));
                i = (size_t)(nl - out) + 1;
            }
            u = body_unbreak(out, len, &ulen);
            assert_int_equal(ulen, n);
            assert_memory_equal(u, in, n);
            free(u);
            free(out);
            free(in);
        }
}

/* test_body_flushed_in_chunks - sending the text a chunk at a time (relay_body_ready, then
 * relay_body_consume, as the relay's stream does) gives the same bytes as making it whole:
 * dot-stuffing, CR/LF, line breaks and the UTF-8 look-back carry across the chunk borders. */
static void test_body_flushed_in_chunks(void **state)
{
    static const char *pieces[] = {
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", ".", "..", "\r", "\n", "\r\n", "x", "yz",
        " "};
    static const size_t limits[] = {0, 8, 9, 10, 998};
    static const size_t chunks[] = {1, 2, 3, 7, 64};
    unsigned seed = 14;
    size_t round, li, ci;

    (void)state;
    for (round = 0; round < 40; round++) {
        size_t n = 0, i;
        char in[4096];
        while (n < sizeof(in) - 8) {
            const char *p;
            seed = seed * 1103515245u + 12345u;
            p = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(in + n, p, strlen(p));
            n += strlen(p);
        }
        for (li = 0; li < sizeof(limits) / sizeof(limits[0]); li++)
            for (ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
                size_t wlen, glen = 0, k;
                char *want = body_make(in, n, limits[li], n, &wlen, NULL);
                char *got = malloc(wlen + 1);
                struct relay_body b;

                assert_int_equal(relay_body_init(&b, limits[li], chunks[ci]), 0);
                for (i = 0; i < n; i += chunks[ci]) {
                    assert_int_equal(
                        relay_body_add(&b, in + i, n - i < chunks[ci] ? n - i : chunks[ci]), 0);
                    k = relay_body_ready(&b);
                    assert_true(glen + k <= wlen);
                    memcpy(got + glen, b.p, k);
                    glen += k;
                    relay_body_consume(&b, k);
                }
                assert_int_equal(relay_body_end(&b), 0);
                k = relay_body_ready(&b);
                assert_int_equal(k, b.len); /* after the end nothing is held back */
                assert_true(glen + k <= wlen);
                memcpy(got + glen, b.p, k);
                glen += k;
                assert_int_equal(glen, wlen);
                assert_memory_equal(got, want, wlen);
                free(b.p);
                free(got);
                free(want);
            }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_multiline),
        cmocka_unit_test(test_reply_long_is_cut),
        cmocka_unit_test(test_reply_dsn),
        cmocka_unit_test(test_delay_format),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_ehlo_keywords),
        cmocka_unit_test(test_dsn_text),
        cmocka_unit_test(test_reply_printable),
        cmocka_unit_test(test_ehlo_size_checked),
        cmocka_unit_test(test_body_short_lines),
        cmocka_unit_test(test_body_long_line_broken),
        cmocka_unit_test(test_body_bare_cr_lf),
        cmocka_unit_test(test_body_utf8_not_split),
        cmocka_unit_test(test_body_flushed_in_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
