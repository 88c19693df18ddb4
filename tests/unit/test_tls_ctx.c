/*
 * test_tls_ctx.c - tls_ctx_new on PEM bytes made here with OpenSSL: a matching
 * pair builds a context; a foreign key is a mismatch; an encrypted key is
 * reported as password-protected (never prompts); garbage is a PEM error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mta/tls.h"

/* pem_key - KEY as PEM (encrypted with PASS when not NULL) into a malloc'd string. */
static char *pem_key(EVP_PKEY *k, const char *pass)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    assert_int_equal(PEM_write_bio_PrivateKey(b, k, pass ? EVP_aes_256_cbc() : NULL,
                                              (unsigned char *)pass, pass ? (int)strlen(pass) : 0,
                                              NULL, NULL),
                     1);
    n = BIO_get_mem_data(b, &p);
    out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

/* pem_cert - a self-signed certificate for K. */
static char *pem_cert(EVP_PKEY *k)
{
    X509 *x = X509_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"mta.test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &p);
    out = strndup(p, (size_t)n);
    BIO_free(b);
    X509_free(x);
    return out;
}

static void test_tls_pairs(void **state)
{
    EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256");
    char *ka = pem_key(a, NULL), *kb = pem_key(b, NULL), *kp = pem_key(a, "pw");
    char *ca = pem_cert(a), *err = NULL;
    enum tls_err kind;
    struct tls_ctx *t;

    (void)state;
    t = tls_ctx_new(ka, strlen(ka), ca, strlen(ca), &kind, &err);
    assert_non_null(t);
    assert_int_equal(kind, TLS_ERR_NONE);
    {
        struct ssl_st *ssl = tls_ctx_ssl_new(t);
        assert_non_null(ssl);
        SSL_free(ssl);
    }
    tls_ctx_free(t);

    assert_null(tls_ctx_new(kb, strlen(kb), ca, strlen(ca), &kind, &err));
    assert_int_equal(kind, TLS_ERR_MISMATCH);
    assert_non_null(strstr(err, "does not match"));
    free(err);

    assert_null(tls_ctx_new(kp, strlen(kp), ca, strlen(ca), &kind, &err));
    assert_int_equal(kind, TLS_ERR_PASSWORD);
    free(err);

    assert_null(tls_ctx_new(ka, strlen(ka), "junk", 4, &kind, &err));
    assert_int_equal(kind, TLS_ERR_CERT);
    free(err);
    assert_null(tls_ctx_new("junk", 4, ca, strlen(ca), &kind, &err));
    assert_int_equal(kind, TLS_ERR_KEY);
    free(err);

    free(ka);
    free(kb);
    free(kp);
    free(ca);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tls_pairs)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
