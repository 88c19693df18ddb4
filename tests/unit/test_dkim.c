/*
 * test_dkim.c - the DKIM signer's parsing and header selection (src/core/dkim*.c):
 * dkim_headers/dkim_domains lists, the key check (RSA sizes, Ed25519, password,
 * other key types, garbage) with the DNS public key, the From: domain in the forms
 * mail clients write, header field splitting, and which fields a signature covers
 * (h=) for the default list and a configured one. Signatures are verified end to
 * end by tests/integration/test_dkim_sign.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "mta/conf.h"
#include "mta/dkim.h"

/* pem_of - PEM text of a new key of TYPE ("RSA" with BITS, "ED25519", "EC"); PASS encrypts. */
static char *pem_of(const char *type, int bits, const char *pass)
{
    EVP_PKEY *k = !strcmp(type, "RSA")  ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
                  : !strcmp(type, "EC") ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                        : EVP_PKEY_Q_keygen(NULL, NULL, type);
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    assert_non_null(k);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, pass ? EVP_aes_128_cbc() : NULL,
                                              (const unsigned char *)pass,
                                              pass ? (int)strlen(pass) : 0, NULL, NULL),
                     1);
    n = BIO_get_mem_data(b, &data);
    out = strndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    return out;
}

static int key_check(const char *pem, enum dkim_key_type *type, int *bits, char *pub, char *why)
{
    return dkim_parse_key(pem, strlen(pem), type, bits, pub, 1024, why, 256);
}

static void test_keys(void **state)
{
    enum dkim_key_type type;
    int bits;
    char pub[1024], why[256];
    char *pem;

    (void)state;
    pem = pem_of("RSA", 2048, NULL);
    assert_int_equal(key_check(pem, &type, &bits, pub, why), 0);
    assert_int_equal(type, DKIM_KEY_RSA);
    assert_int_equal(bits, 2048);
    assert_true(strncmp(pub, "MIIBIjAN", 8) == 0); /* SubjectPublicKeyInfo, rsaEncryption */
    free(pem);
    pem = pem_of("ED25519", 0, NULL);
    assert_int_equal(key_check(pem, &type, &bits, pub, why), 0);
    assert_int_equal(type, DKIM_KEY_ED25519);
    assert_int_equal(strlen(pub), 44); /* RFC 8463: 32 raw bytes in base64 */
    free(pem);
    pem = pem_of("RSA", 768, NULL);
    assert_int_equal(key_check(pem, &type, &bits, pub, why), -1);
    assert_non_null(strstr(why, "768 bits"));
    free(pem);
    pem = pem_of("EC", 0, NULL);
    assert_int_equal(key_check(pem, &type, &bits, pub, why), -1);
    assert_non_null(strstr(why, "RSA or Ed25519"));
    free(pem);
    pem = pem_of("RSA", 1024, "secret");
    assert_int_equal(key_check(pem, &type, &bits, pub, why), -1);
    assert_non_null(strstr(why, "password-protected"));
    free(pem);
    assert_int_equal(key_check("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
                               &type, &bits, pub, why),
                     -1);
    assert_string_equal(why, "not a PEM private key");
}

static void test_name_lists(void **state)
{
    char *names[DKIM_HEADERS_MAX], why[256];
    int n;

    (void)state;
    assert_int_equal(dkim_parse_names("From, Subject\tTO ,,x-Custom", 0, names, DKIM_HEADERS_MAX,
                                      &n, why, sizeof(why)),
                     0);
    assert_int_equal(n, 4);
    assert_string_equal(names[0], "from");
    assert_string_equal(names[2], "to");
    assert_string_equal(names[3], "x-custom");
    while (n > 0)
        free(names[--n]);
    assert_int_equal(
        dkim_parse_names("from subject:", 0, names, DKIM_HEADERS_MAX, &n, why, sizeof(why)), -1);
    assert_string_equal(why, "\"subject:\" is not a header field name");
    assert_int_equal(n, 0);
    assert_int_equal(dkim_parse_names("Example.COM sub.example.org", 1, names, DKIM_HEADERS_MAX, &n,
                                      why, sizeof(why)),
                     0);
    assert_string_equal(names[0], "example.com");
    while (n > 0)
        free(names[--n]);
    assert_int_equal(dkim_parse_names("a..b", 1, names, DKIM_HEADERS_MAX, &n, why, sizeof(why)),
                     -1);
    assert_int_equal(dkim_parse_names("a b c", 1, names, 2, &n, why, sizeof(why)), -1);
    assert_string_equal(why, "more than 2 names");
}

static void from_is(const char *value, const char *want)
{
    char dom[DKIM_DOMAIN_MAX + 1];
    int r = dkim_from_domain(value, strlen(value), dom, sizeof(dom));
    if (!want) {
        assert_int_equal(r, -1);
        return;
    }
    assert_int_equal(r, 0);
    assert_string_equal(dom, want);
}

static void test_from_domain(void **state)
{
    (void)state;
    from_is(" a@Src.Test", "src.test");
    from_is(" Alice <a@src.test>", "src.test");
    from_is(" \"Bob, a@evil.test\" <b@src.test>", "src.test");
    from_is(" a@src.test (Mallory <m@evil.test>)", "src.test");
    from_is(" Alice\r\n <a@src.test>", "src.test");
    from_is(" alice@evil.test <a@src.test>", "src.test"); /* the address is in the brackets */
    from_is(" a@x.test, b@y.test", NULL);                 /* two authors: no d= to choose */
    from_is(" undisclosed-recipients:;", NULL);
    from_is(" <a@src.test", NULL);
    from_is(" a@", NULL);
    from_is(" a@bad..test", NULL);
}

static void test_split_header(void **state)
{
    const char *h = "Subject: one\r\n two\r\nFrom: a@b\r\n\r\nbody";
    size_t flen, step;

    (void)state;
    step = dkim_split_header(h, strlen(h), &flen);
    assert_int_equal(flen, strlen("Subject: one\r\n two"));
    assert_int_equal(step, flen + 2);
    h += step;
    step = dkim_split_header(h, strlen(h), &flen);
    assert_int_equal(flen, strlen("From: a@b"));
    h += step;
    assert_int_equal(dkim_split_header(h, strlen(h), &flen), 0); /* the blank line */
}

/* sign_with - the DKIM-Signature a signer with a key of TYPE ("RSA", "ED25519") and HEADERS
 * (NULL: the default) gives MSG; NULL if none. */
static char *sign_with(const char *type, const char *headers, const char *msg,
                       enum dkim_verdict *verdict)
{
    char keyfile[] = "/tmp/test_dkim_keyXXXXXX", o1[4200], *ov[6], *errs = NULL, *err = NULL;
    char o2[512];
    int fd = mkstemp(keyfile), n = 0;
    char *pem = pem_of(type, 2048, NULL);
    struct dkim_result r;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
    close(fd);
    free(pem);
    snprintf(o1, sizeof(o1), "dkim_key_file=%s", keyfile);
    ov[n++] = "data_volume=/tmp";
    ov[n++] = "dkim_sign=yes";
    ov[n++] = "dkim_selector=sel";
    ov[n++] = "dkim_domains=src.test";
    ov[n++] = o1;
    if (headers) {
        snprintf(o2, sizeof(o2), "dkim_headers=%s", headers);
        ov[n++] = o2;
    }
    struct conf *c = conf_load(NULL, ov, n, &errs);
    assert_non_null(c);
    struct dkim_signer *s = dkim_signer_new(c, &err);
    unlink(keyfile);
    if (!s)
        fail_msg("%s", err ? err : "no signer");
    struct dkim_job *j = dkim_job_new(s, "0123456789ABCDEF");
    /* fed in odd pieces: the header's end may fall between two */
    for (size_t off = 0, len = strlen(msg); off < len; off += 7)
        dkim_job_feed(j, msg + off, len - off < 7 ? len - off : 7);
    dkim_job_finish(j, &r);
    dkim_job_free(j);
    dkim_signer_free(s);
    conf_free(c);
    *verdict = r.verdict;
    return r.header;
}

/* sign - as sign_with, with an RSA key. */
static char *sign(const char *headers, const char *msg, enum dkim_verdict *verdict)
{
    return sign_with("RSA", headers, msg, verdict);
}

static void test_header_selection_ed25519(void **state)
{
    const char *msg = "From: Alice <a@src.test>\r\nSubject: one\r\nX-Custom: no\r\n"
                      "Subject: two\r\n\r\nbody\r\n";
    enum dkim_verdict v;
    char *h;

    (void)state;
    h = sign_with("ED25519", NULL, msg, &v);
    assert_int_equal(v, DKIM_SIGNED);
    assert_true(strncmp(h, "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;", 57) == 0);
    assert_non_null(strstr(h, " d=src.test;"));
    assert_non_null(strstr(h, "h=From:Subject:Subject;")); /* every instance, none unlisted */
    /* the body hash: SHA-256 of "body\r\n" (openssl dgst -sha256 -binary | base64) */
    assert_non_null(strstr(h, "bh=Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=;"));
    for (const char *p = h; (p = strchr(p, '\n')); p++)
        assert_int_equal(p[-1], '\r');
    assert_int_equal(strlen(strstr(h, "\tb=") + 3), 88 + 2); /* 64 bytes in base64, CRLF */
    free(h);
    h = sign_with("ED25519", NULL, "From: x@other.test\r\n\r\nbody\r\n", &v);
    assert_int_equal(v, DKIM_SKIP_DOMAIN);
    assert_null(h);
}

static void test_header_selection(void **state)
{
    const char *msg = "Received: from x by y; Thu, 3 Dec 2026 10:00:00 +0000\r\n"
                      "From: Alice <a@src.test>\r\nTo: b@dst.test\r\nSubject: hi\r\n"
                      "X-Custom: yes\r\nMessage-ID: <1@src.test>\r\n\r\nbody\r\n";
    enum dkim_verdict v;
    char *h;

    (void)state;
    h = sign(NULL, msg, &v);
    assert_int_equal(v, DKIM_SIGNED);
    assert_true(
        strncmp(h, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=src.test;", 65) == 0);
    assert_non_null(strstr(h, " s=sel;"));
    assert_non_null(strstr(h, "h=From:To:Subject;")); /* OpenDKIM's list: no Received, X-, ID */
    assert_int_equal(strcmp(h + strlen(h) - 2, "\r\n"), 0);
    for (const char *p = h; (p = strchr(p, '\n')); p++)
        assert_int_equal(p[-1], '\r'); /* stored lines end in CRLF */
    free(h);
    h = sign("from x-custom message-id", msg, &v);
    assert_int_equal(v, DKIM_SIGNED);
    assert_non_null(strstr(h, "h=From:X-Custom:Message-ID;"));
    free(h);
    h = sign(NULL, "From: x@other.test\r\n\r\nbody\r\n", &v);
    assert_int_equal(v, DKIM_SKIP_DOMAIN);
    assert_null(h);
    h = sign(NULL, "From: a@src.test\r\nFrom: b@src.test\r\n\r\nbody\r\n", &v);
    assert_int_equal(v, DKIM_SKIP_NOFROM);
    assert_null(h);
    h = sign(NULL, "From: a@src.test\r\nSubject: no body", &v); /* no blank line at all */
    assert_int_equal(v, DKIM_SIGNED);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_name_lists),
        cmocka_unit_test(test_from_domain),
        cmocka_unit_test(test_split_header),
        cmocka_unit_test(test_header_selection),
        cmocka_unit_test(test_header_selection_ed25519),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
