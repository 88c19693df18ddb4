/*
 * tls.c - the server TLS context (see tls.h): parse the PEM key and
 * certificate from memory (the key store read them, possibly over NFS), apply
 * the protocol and cipher policy, check that key and certificate belong
 * together. A password-protected key is detected through the password
 * callback (we never prompt: the appliance starts unattended).
 * Not here: reading files, the SMTP handshake glue (smtpd_tls.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mta/tls.h"

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all fine). */
#define TLS_CIPHERS12                                                                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
#define TLS_CIPHERS13 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"

struct tls_ctx {
    SSL_CTX *ctx;
};

void tls_last_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    if (len == 0)
        return;
    if (e && r)
        snprintf(buf, len, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, len);
    else
        buf[0] = 0;
    ERR_clear_error();
}

/* tls_pw_cb - a key that asks for a password: note it and refuse (no prompt). */
static int tls_pw_cb(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)arg = 1;
    return -1;
}

/* tls_fail - set the error outputs; always returns NULL. */
static struct tls_ctx *tls_fail(struct tls_ctx *t, enum tls_err k, enum tls_err *kind, char **err,
                                const char *what)
{
    char detail[256];

    tls_last_error(detail, sizeof(detail));
    *kind = k;
    if (asprintf(err, "%s%s%s", what, *detail ? ": " : "", detail) < 0)
        *err = NULL;
    tls_ctx_free(t);
    return NULL;
}

/* tls_load_certs - the first PEM certificate, then any chain certificates after it. */
static int tls_load_certs(SSL_CTX *ctx, const char *cert, size_t cert_len)
{
    BIO *b = BIO_new_mem_buf(cert, (int)cert_len);
    X509 *x;
    int ok = 0;

    if (!b)
        return -1;
    if ((x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL)) && SSL_CTX_use_certificate(ctx, x) == 1) {
        X509 *ca;
        ok = 1;
        while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
                X509_free(ca);
                ok = 0;
                break;
            }
        }
        if (ok)
            ERR_clear_error(); /* the end of the PEM stream is reported as an error */
    }
    X509_free(x);
    BIO_free(b);
    return ok ? 0 : -1;
}

struct tls_ctx *tls_ctx_new(const char *key, size_t key_len, const char *cert, size_t cert_len,
                            enum tls_err *kind, char **err)
{
    struct tls_ctx *t = calloc(1, sizeof(*t));
    static const unsigned char sid_ctx[] = "mta-smtpd";
    EVP_PKEY *pk;
    BIO *b;
    int asked = 0;

    *err = NULL;
    *kind = TLS_ERR_NONE;
    ERR_clear_error();
    if (!t || key_len > 0x7fffffff || cert_len > 0x7fffffff)
        return tls_fail(t, TLS_ERR_INTERNAL, kind, err, "out of memory");
    if (!(t->ctx = SSL_CTX_new(TLS_server_method())))
        return tls_fail(t, TLS_ERR_INTERNAL, kind, err, "cannot create the TLS context");
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                    SSL_OP_NO_RENEGOTIATION | SSL_OP_SINGLE_ECDH_USE);
    if (SSL_CTX_set_cipher_list(t->ctx, TLS_CIPHERS12) != 1 ||
        SSL_CTX_set_ciphersuites(t->ctx, TLS_CIPHERS13) != 1 ||
        SSL_CTX_set1_groups_list(t->ctx, "X25519:P-256:P-384") != 1)
        return tls_fail(t, TLS_ERR_INTERNAL, kind, err, "cannot set the cipher policy");
    /* resumption: a server-side cache (TLS 1.2 ids) and stateless tickets (both versions) */
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(t->ctx, 20480);
    SSL_CTX_set_timeout(t->ctx, 3600);
    SSL_CTX_set_session_id_context(t->ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);

    if (tls_load_certs(t->ctx, cert, cert_len) < 0)
        return tls_fail(t, TLS_ERR_CERT, kind, err, "cannot read the certificate (PEM)");
    if (!(b = BIO_new_mem_buf(key, (int)key_len)))
        return tls_fail(t, TLS_ERR_INTERNAL, kind, err, "out of memory");
    pk = PEM_read_bio_PrivateKey(b, NULL, tls_pw_cb, &asked);
    BIO_free(b);
    if (!pk && (asked || memmem(key, key_len, "ENCRYPTED", 9)))
        return tls_fail(t, TLS_ERR_PASSWORD, kind, err, "the private key is password-protected");
    if (!pk)
        return tls_fail(t, TLS_ERR_KEY, kind, err, "cannot read the private key (PEM)");
    if (SSL_CTX_use_PrivateKey(t->ctx, pk) != 1) {
        EVP_PKEY_free(pk);
        return tls_fail(t, TLS_ERR_MISMATCH, kind, err,
                        "the private key does not match the certificate");
    }
    EVP_PKEY_free(pk);
    if (SSL_CTX_check_private_key(t->ctx) != 1)
        return tls_fail(t, TLS_ERR_MISMATCH, kind, err,
                        "the private key does not match the certificate");
    return t;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx); /* live SSLs hold their own reference */
    free(t);
}

struct ssl_st *tls_ctx_ssl_new(struct tls_ctx *t)
{
    return SSL_new(t->ctx);
}

void tls_describe(const struct ssl_st *ssl, char *buf, size_t len)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    int alg = 0, bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;

    snprintf(buf, len, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
             c ? SSL_CIPHER_get_name(c) : "unknown", bits, alg);
}
