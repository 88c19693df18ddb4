/*
 * test_smtpd_proxy.c - the PROXY protocol header parser (smtpd_proxy_parse.c):
 * v1 and v2 headers as HAProxy sends them, every prefix of a valid header
 * (incomplete, never an error until EOF), v2 LOCAL, TLVs skipped, and the
 * refusals with Postfix's haproxy_srvr.c texts: UNKNOWN and UNSPEC, truncated,
 * oversized and garbage headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "smtpd/smtpd_proxy.h"

static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* parse - smtpd_proxy_parse over LEN bytes of BUF; *ERR gets the error text. */
static int parse(const void *buf, size_t len, int eof, size_t *hdrlen, struct smtpd_proxy_info *pi,
                 const char **err)
{
    return smtpd_proxy_parse(buf, len, eof, hdrlen, pi, err);
}

/* addr_of - the printable address and the port of SA. */
static void addr_of(const struct sockaddr_storage *sa, char *out, int *port)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, out, INET6_ADDRSTRLEN);
        *port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, out, INET6_ADDRSTRLEN);
        *port = ntohs(in6->sin6_port);
    }
}

/* expect_err - TEXT (LEN bytes) is refused with WHY, at once (not only at EOF). */
static void expect_err(const void *text, size_t len, const char *why)
{
    struct smtpd_proxy_info pi;
    size_t hl;
    const char *err;
    assert_int_equal(parse(text, len, 0, &hl, &pi, &err), SMTPD_PROXY_ERR);
    assert_string_equal(err, why);
}

static void test_v1_tcp4(void **st)
{
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 40001 25\r\nEHLO x\r\n";
    struct smtpd_proxy_info pi;
    size_t hl;
    const char *err;
    char a[INET6_ADDRSTRLEN];
    int port;

    (void)st;
    assert_int_equal(parse(h, strlen(h), 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    assert_int_equal(hl, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 40001 25\r\n"));
    assert_int_equal(pi.local, 0);
    addr_of(&pi.client, a, &port);
    assert_string_equal(a, "192.0.2.7");
    assert_int_equal(port, 40001);
    addr_of(&pi.server, a, &port);
    assert_string_equal(a, "198.51.100.1");
    assert_int_equal(port, 25);
    /* every shorter prefix is a valid beginning: wait for more */
    for (size_t i = 0; i < hl; i++) {
        assert_int_equal(parse(h, i, 0, &hl, &pi, &err), SMTPD_PROXY_MORE);
        hl = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 40001 25\r\n");
    }
    /* ... and at EOF an error */
    assert_int_equal(parse(h, 20, 1, &hl, &pi, &err), SMTPD_PROXY_ERR);
    assert_string_equal(err, "missing protocol header terminator");
    assert_int_equal(parse(h, 0, 1, &hl, &pi, &err), SMTPD_PROXY_ERR);
    assert_string_equal(err, "EOF");
}

static void test_v1_tcp6(void **st)
{
    const char *h = "PROXY TCP6 2001:db8::5 2001:db8::1 1234 587\n";
    const char *m = "PROXY tcp6 ::ffff:192.0.2.9 ::ffff:192.0.2.1 5 465\r\n";
    struct smtpd_proxy_info pi;
    size_t hl;
    const char *err;
    char a[INET6_ADDRSTRLEN];
    int port;

    (void)st;
    assert_int_equal(parse(h, strlen(h), 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    addr_of(&pi.client, a, &port);
    assert_string_equal(a, "2001:db8::5");
    assert_int_equal(port, 1234);
    /* v4-mapped addresses become IPv4, as Postfix normalises them */
    assert_int_equal(parse(m, strlen(m), 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    assert_int_equal(pi.client.ss_family, AF_INET);
    addr_of(&pi.client, a, &port);
    assert_string_equal(a, "192.0.2.9");
}

static void test_v1_bad(void **st)
{
    (void)st;
    expect_err("PROXY UNKNOWN\r\n", 15, "bad or missing protocol type");
    expect_err("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", 35, "bad or missing protocol type");
    expect_err("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 30, "bad or missing client address");
    expect_err("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", 28, "bad or missing client address");
    expect_err("PROXY TCP4 1.2.3.4 5.6.7.8.9 1 2\r\n", 34, "bad or missing server address");
    expect_err("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 36, "bad or missing client port");
    expect_err("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 33, "bad or missing client port");
    expect_err("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 30, "bad or missing server port");
    expect_err("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", 33, "bad or missing server port");
    expect_err("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 34, "bad or missing protocol header");
    expect_err("EHLO client\r\n", 13, "unrecognized protocol header");
    expect_err("PROXZ", 5, "unrecognized protocol header");
    expect_err("\x16\x03\x01", 3, "unrecognized protocol header"); /* a TLS ClientHello */

    /* oversized: no LF within the 107 bytes the protocol allows */
    char big[200];
    memset(big, ' ', sizeof(big));
    memcpy(big, "PROXY TCP4", 10);
    expect_err(big, SMTPD_PROXY_V1_MAX, "missing protocol header terminator");
    struct smtpd_proxy_info pi;
    size_t hl;
    const char *err;
    assert_int_equal(parse(big, SMTPD_PROXY_V1_MAX - 1, 0, &hl, &pi, &err), SMTPD_PROXY_MORE);
    big[150] = '\n';
    expect_err(big, 151, "missing protocol header terminator");
}

/* v2 - a v2 header in OUT: CMD, FAM, ADDR (ALEN bytes), then TLV bytes; its length. */
static size_t v2(unsigned char *out, unsigned cmd, unsigned fam, const void *addr, size_t alen,
                 size_t tlv)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char)(0x20 | cmd);
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)((alen + tlv) >> 8);
    out[15] = (unsigned char)(alen + tlv);
    memcpy(out + 16, addr, alen);
    memset(out + 16 + alen, 0x04, tlv); /* any TLV bytes: skipped unread */
    return 16 + alen + tlv;
}

static void test_v2(void **st)
{
    unsigned char h[700], a4[12], a6[36];
    struct smtpd_proxy_info pi;
    size_t hl, n;
    const char *err;
    char a[INET6_ADDRSTRLEN];
    int port;

    (void)st;
    inet_pton(AF_INET, "127.0.0.2", a4);
    inet_pton(AF_INET, "127.0.0.1", a4 + 4);
    a4[8] = 0x9c, a4[9] = 0x41; /* 40001 */
    a4[10] = 0, a4[11] = 25;
    n = v2(h, 1, 0x11, a4, 12, 7);
    memcpy(h + n, "EHLO", 4); /* the client's bytes after the header stay unread */
    assert_int_equal(parse(h, n + 4, 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    assert_int_equal(hl, n);
    addr_of(&pi.client, a, &port);
    assert_string_equal(a, "127.0.0.2");
    assert_int_equal(port, 40001);
    addr_of(&pi.server, a, &port);
    assert_int_equal(port, 25);
    for (size_t i = 0; i < n; i++) /* truncated: wait; at EOF an error */
        assert_int_equal(parse(h, i, 0, &hl, &pi, &err), SMTPD_PROXY_MORE);
    assert_int_equal(parse(h, 10, 1, &hl, &pi, &err), SMTPD_PROXY_ERR);
    assert_string_equal(err, "short protocol header");
    assert_int_equal(parse(h, n - 1, 1, &hl, &pi, &err), SMTPD_PROXY_ERR);
    assert_string_equal(err, "short version 2 protocol header");

    inet_pton(AF_INET6, "2001:db8::7", a6);
    inet_pton(AF_INET6, "2001:db8::1", a6 + 16);
    a6[32] = 0, a6[33] = 99, a6[34] = 0, a6[35] = 25;
    n = v2(h, 1, 0x21, a6, 36, 0);
    assert_int_equal(parse(h, n, 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    addr_of(&pi.client, a, &port);
    assert_string_equal(a, "2001:db8::7");
    assert_int_equal(port, 99);

    /* LOCAL (HAProxy's health checks): no address, the connection's own stands */
    n = v2(h, 0, 0x00, a4, 0, 5);
    assert_int_equal(parse(h, n, 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    assert_int_equal(pi.local, 1);
    assert_int_equal(hl, n);

    /* the largest header accepted, then one byte more */
    n = v2(h, 1, 0x11, a4, 12, SMTPD_PROXY_MAX - 16 - 12);
    assert_int_equal(parse(h, n, 0, &hl, &pi, &err), SMTPD_PROXY_OK);
    n = v2(h, 1, 0x11, a4, 12, SMTPD_PROXY_MAX - 16 - 12 + 1);
    expect_err(h, 16, "version 2 protocol header too long");
    h[14] = h[15] = 0xff;
    expect_err(h, 16, "version 2 protocol header too long");

    n = v2(h, 1, 0x00, a4, 0, 0); /* PROXY with UNSPEC: no address to check */
    expect_err(h, n, "unsupported network protocol");
    n = v2(h, 1, 0x12, a4, 12, 0); /* UDP */
    expect_err(h, n, "unsupported network protocol");
    n = v2(h, 1, 0x31, a4, 12, 0); /* UNIX */
    expect_err(h, n, "unsupported network protocol");
    n = v2(h, 1, 0x11, a4, 8, 0);
    expect_err(h, n, "short address field");
    n = v2(h, 1, 0x21, a6, 20, 0);
    expect_err(h, n, "short address field");
    n = v2(h, 2, 0x11, a4, 12, 0);
    expect_err(h, n, "bad command in proxy header");
    n = v2(h, 1, 0x11, a4, 12, 0);
    h[12] = 0x11; /* version 1 in the binary form */
    expect_err(h, n, "unrecognized protocol version");
    n = v2(h, 1, 0x11, a4, 12, 0);
    h[5] = 'X'; /* a damaged signature */
    expect_err(h, n, "unrecognized protocol header");
}

static void test_escape(void **st)
{
    char out[64];
    (void)st;
    smtpd_proxy_escape((const unsigned char *)"A\r\n\0\\\x80", 6, out, sizeof(out));
    assert_string_equal(out, "A\\r\\n\\000\\\\\\200");
    smtpd_proxy_escape((const unsigned char *)"\x01\x01\x01\x01", 4, out, 8);
    assert_true(strlen(out) < 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4), cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_bad),  cmocka_unit_test(test_v2),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
