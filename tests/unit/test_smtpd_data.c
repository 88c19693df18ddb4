/*
 * test_smtpd_data.c - the DATA/BDAT body machine: end of data only on
 * CRLF.CRLF, dot-unstuffing, bare LF/CR handling, every smuggling sequence,
 * the header pass (Received count, Message-Id/Date added, header size limit),
 * size limit. Every input is fed in every two-way split and byte by byte; all
 * must give the same stored bytes, the same consumed length and error bits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtpd_data.h"

struct result {
    char *out;
    size_t outlen;
    size_t consumed;
    int err, done;
    char msgid[256];
};

/* run - feed IN split at SPLIT (or byte by byte when SPLIT == (size_t)-1). */
static struct result run(const struct smtpd_body_opts *o, const char *in, size_t len, size_t split,
                         int finish)
{
    struct evbuffer *out = evbuffer_new();
    struct smtpd_body b;
    struct result r = {0};
    size_t pos = 0;

    smtpd_body_init(&b, o, out);
    while (pos < len && !b.done) {
        size_t n = split == (size_t)-1 ? 1 : (pos < split ? split - pos : len - pos);
        if (n == 0)
            n = len - pos;
        size_t k = smtpd_body_feed(&b, in + pos, n);
        pos += k;
        if (k < n)
            break;
    }
    if (finish || b.done)
        smtpd_body_finish(&b);
    r.outlen = evbuffer_get_length(out);
    r.out = calloc(1, r.outlen + 1);
    evbuffer_remove(out, r.out, r.outlen);
    r.consumed = pos;
    r.err = b.err;
    r.done = b.done;
    snprintf(r.msgid, sizeof(r.msgid), "%s", b.msgid);
    smtpd_body_free(&b);
    evbuffer_free(out);
    return r;
}

/* esc - printable form of a byte string for failure messages. */
static const char *esc(const char *p, size_t n, char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < 512; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            o += (size_t)sprintf(buf + o, "\\r");
        else if (c == '\n')
            o += (size_t)sprintf(buf + o, "\\n");
        else if (c < 32 || c > 126)
            o += (size_t)sprintf(buf + o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = 0;
    return buf;
}

static struct smtpd_body_opts opts_data(void)
{
    struct smtpd_body_opts o = {0};
    o.dot = 1;
    o.barelf = SMTPD_BARELF_NORMALIZE;
    o.max_size = 0;
    o.header_limit = 102400;
    o.hop_limit = 50;
    return o;
}

/* check_all_splits - every split gives EXPECT (stored), CONSUMED and ERR. */
static void check_all_splits(const struct smtpd_body_opts *o, const char *in, size_t len,
                             const char *expect, size_t consumed, int err, int done)
{
    for (size_t split = 0; split <= len + 1; split++) {
        size_t sp = split == len + 1 ? (size_t)-1 : split;
        struct result r = run(o, in, len, sp, !o->dot);
        if (r.outlen != strlen(expect) || memcmp(r.out, expect, r.outlen) != 0 ||
            r.consumed != consumed || r.err != err || r.done != done) {
            char e1[512], e2[512];
            print_error("split %zu: got [%s] consumed %zu err %d done %d; want [%s] %zu %d %d\n",
                        sp, esc(r.out, r.outlen, e1), r.consumed, r.err, r.done,
                        esc(expect, strlen(expect), e2), consumed, err, done);
            free(r.out);
            fail();
        }
        free(r.out);
    }
}

#define CHECK(o, in, expect, consumed, err, done)                                                  \
    check_all_splits(o, in, sizeof(in) - 1, expect, consumed, err, done)

static void test_simple_end(void **st)
{
    struct smtpd_body_opts o = opts_data();
    /* a header, a body, the end; what follows the end is the next command */
    CHECK(&o, "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", "Subject: x\r\n\r\nhello\r\n", 24, 0, 1);
    /* an empty message ends at once */
    CHECK(&o, ".\r\nMAIL", "", 3, 0, 1);
}

static void test_dot_unstuffing(void **st)
{
    struct smtpd_body_opts o = opts_data();
    CHECK(&o, "\r\n..\r\n.x\r\n...\r\n.\r\n", "\r\n.\r\nx\r\n..\r\n", 18, 0, 1);
}

static void test_smuggling_normalize(void **st)
{
    struct smtpd_body_opts o = opts_data();
    /* "\n.\n": the dot line is content, never an end */
    CHECK(&o, "\r\na\n.\nMAIL FROM:<x@y>\r\n.\r\n", "\r\na\r\n.\r\nMAIL FROM:<x@y>\r\n", 26, 0, 1);
    /* "\n.\r\n": the line before ended in a bare LF */
    CHECK(&o, "\r\na\n.\r\nRCPT TO:<x@y>\r\n.\r\n", "\r\na\r\n.\r\nRCPT TO:<x@y>\r\n", 25, 0, 1);
    /* "\r\n.\n": the dot line ends in a bare LF */
    CHECK(&o, "\r\na\r\n.\nDATA\r\n.\r\n", "\r\na\r\n.\r\nDATA\r\n", 16, 0, 1);
    /* "\r.\r": bare CRs are content */
    CHECK(&o, "\r\na\r.\r\nb\r\n.\r\n", "\r\na\r.\r\nb\r\n", 13, 0, 1);
    /* a bare LF first line, then a dot line */
    CHECK(&o, "\n.\r\n.\r\n", "\r\n.\r\n", 7, 0, 1);
    /* CR CR LF: the first CR is content */
    CHECK(&o, "\r\nx\r\r\n.\r\n", "\r\nx\r\r\n", 9, 0, 1);
}

static void test_smuggling_reject(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.barelf = SMTPD_BARELF_REJECT;
    /* still never an end, and the error bit is set for the 521 */
    CHECK(&o, "\r\na\n.\nMAIL\r\n.\r\n", "\r\na\r\n.\r\nMAIL\r\n", 15, SMTPD_BODY_ERR_BARELF, 1);
}

static void test_legacy_no(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.barelf = SMTPD_BARELF_NO;
    /* the pre-3.9 behaviour, only when explicitly configured */
    CHECK(&o, "\r\na\n.\nMAIL", "\r\na\r\n", 6, 0, 1);
}

static void test_dot_cr_content(void **st)
{
    struct smtpd_body_opts o = opts_data();
    /* ".\rX": dot dropped, the bare CR is content */
    CHECK(&o, "\r\n.\rX\r\n.\r\n", "\r\n\rX\r\n", 10, 0, 1);
}

static void test_unterminated(void **st)
{
    struct smtpd_body_opts o = opts_data();
    /* no end yet: everything consumed, not done */
    CHECK(&o, "\r\nabc\r\n.", "\r\nabc\r\n", 8, 0, 0);
}

static void test_8bit_passthrough(void **st)
{
    struct smtpd_body_opts o = opts_data();
    CHECK(&o,
          "\r\n\xc3\xa4\xff"
          "z\r\n.\r\n",
          "\r\n\xc3\xa4\xff"
          "z\r\n",
          11, 0, 1);
}

static void test_8bit_nul_exact(void **st)
{
    /* NUL bytes are stored too (CHECK's strlen would stop there, so compare by hand) */
    struct smtpd_body_opts o = opts_data();
    static const char in[] = "\r\n\xff\x00z\r\n.\r\n";
    struct result r = run(&o, in, sizeof(in) - 1, 3, 0);
    size_t outlen = r.outlen;
    int same = outlen == 7 && memcmp(r.out, "\r\n\xff\x00z\r\n", 7) == 0;
    free(r.out);
    assert_int_equal(outlen, 7);
    assert_true(same);
}

static void test_size_limit(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.max_size = 10;
    /* storing stops, reading continues to the end */
    CHECK(&o, "\r\n0123456789abcdef\r\n.\r\nNOOP", "\r\n01234567", 23, SMTPD_BODY_ERR_SIZE, 1);
    /* exactly at the limit is fine */
    CHECK(&o, "\r\n123456\r\n.\r\n", "\r\n123456\r\n", 13, 0, 1);
}

static void test_hops(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.hop_limit = 3;
    o.hops_initial = 1;
    CHECK(&o, "Received: a\r\n\r\n.\r\n", "Received: a\r\n\r\n", 18, 0, 1);
    CHECK(&o, "Received: a\r\nreceived : b\r\n\r\n.\r\n", "Received: a\r\nreceived : b\r\n\r\n", 32,
          SMTPD_BODY_ERR_HOPS, 1);
    /* Received: in the body does not count */
    CHECK(&o, "X: 1\r\n\r\nReceived: a\r\nReceived: b\r\n.\r\n",
          "X: 1\r\n\r\nReceived: a\r\nReceived: b\r\n", 37, 0, 1);
}

static void test_header_additions(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.add_msgid = "Message-Id: <m@h>\r\n";
    o.add_date = "Date: D\r\n";
    CHECK(&o, "Subject: s\r\n\tfolded\r\n\r\nbody\r\n.\r\n",
          "Subject: s\r\n\tfolded\r\nMessage-Id: <m@h>\r\nDate: D\r\n\r\nbody\r\n", 32, 0, 1);
    /* present ones are not added again */
    CHECK(&o, "date: x\r\nMESSAGE-ID:  <a@b> \r\n\r\n.\r\n",
          "date: x\r\nMESSAGE-ID:  <a@b> \r\n\r\n", 35, 0, 1);
    /* a body without a header gets a separating empty line */
    CHECK(&o, "hello world\r\n.\r\n", "Message-Id: <m@h>\r\nDate: D\r\n\r\nhello world\r\n", 16, 0,
          1);
    /* a header-only message */
    CHECK(&o, "X: y\r\n.\r\n", "X: y\r\nMessage-Id: <m@h>\r\nDate: D\r\n", 9, 0, 1);
}

static void test_msgid_captured(void **st)
{
    struct smtpd_body_opts o = opts_data();
    static const char in[] = "Message-ID:   <abc@example.com>  \r\n\r\n.\r\n";
    struct result r = run(&o, in, sizeof(in) - 1, 5, 0);
    assert_string_equal(r.msgid, "<abc@example.com>");
    free(r.out);
}

static void test_header_size_limit(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.header_limit = 20;
    o.add_date = "Date: D\r\n";
    /* the header that does not fit starts the body, as Postfix keeps it */
    CHECK(&o, "A: 1\r\nB: 0123456789012345\r\n\r\n.\r\n",
          "A: 1\r\nDate: D\r\n\r\nB: 0123456789012345\r\n\r\n", 32, 0, 1);
}

static void test_bdat(void **st)
{
    struct smtpd_body_opts o = opts_data();
    o.dot = 0;
    /* no dot handling, no end; a bare LF becomes CRLF; a partial last line is closed */
    CHECK(&o, "S: x\r\n\r\n.\r\n..\nlast", "S: x\r\n\r\n.\r\n..\r\nlast\r\n", 18, 0, 0);
}

static void test_helo_name(void **st)
{
    char a[] = "mail.example.org", b[] = "evil\r\nX-Injected: 1\x1b[2J\x7f\x80\xff",
         c[] = "a (b) <c@d> \"e\\\";f", d[] = "[IPv6:2001:db8::1]", e[] = "[192.0.2.1]";
    (void)st;
    assert_string_equal(smtpd_data_helo_name(a), "mail.example.org");
    assert_string_equal(smtpd_data_helo_name(b), "evil??X-Injected:?1?[2J???");
    assert_string_equal(smtpd_data_helo_name(c), "a??b???c?d???e???f");
    assert_string_equal(smtpd_data_helo_name(d), "[IPv6:2001:db8::1]");
    assert_string_equal(smtpd_data_helo_name(e), "[192.0.2.1]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_end),
        cmocka_unit_test(test_dot_unstuffing),
        cmocka_unit_test(test_smuggling_normalize),
        cmocka_unit_test(test_smuggling_reject),
        cmocka_unit_test(test_legacy_no),
        cmocka_unit_test(test_dot_cr_content),
        cmocka_unit_test(test_unterminated),
        cmocka_unit_test(test_8bit_passthrough),
        cmocka_unit_test(test_8bit_nul_exact),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_hops),
        cmocka_unit_test(test_header_additions),
        cmocka_unit_test(test_msgid_captured),
        cmocka_unit_test(test_header_size_limit),
        cmocka_unit_test(test_bdat),
        cmocka_unit_test(test_helo_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
