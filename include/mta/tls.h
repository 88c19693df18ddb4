/*
 * tls.h - the server's TLS context: one SSL_CTX built from the PEM bytes of the
 * private key and the certificate (chain), with the appliance's policy: TLS 1.2
 * and 1.3 only, a modern cipher list, server cipher preference, a session cache
 * and session tickets. Built once at start and again on SIGHUP (certificate
 * rotation); live sessions keep the SSL_CTX they started with (OpenSSL counts
 * references), so swapping contexts never drops a session.
 * Not here: where the PEM bytes come from (keystore.h), the SMTP side (smtpd).
 */
#ifndef MTA_TLS_H
#define MTA_TLS_H

#include <stddef.h>

struct ssl_st;
struct ssl_ctx_st;
struct tls_ctx;

/*
 * tls_ctx_new - a server context from KEY and CERT (PEM, not NUL-terminated).
 * NULL on error with *err (malloc'd, one line, no "Error:" prefix) and *kind
 * set to one of TLS_ERR_*, so the caller can print the matching start-up line.
 */
enum tls_err {
    TLS_ERR_NONE,
    TLS_ERR_KEY,      /* the key cannot be parsed */
    TLS_ERR_PASSWORD, /* the key is password-protected */
    TLS_ERR_CERT,     /* the certificate cannot be parsed */
    TLS_ERR_MISMATCH, /* the key does not belong to the certificate */
    TLS_ERR_INTERNAL, /* OpenSSL failed otherwise (out of memory, ...) */
};
struct tls_ctx *tls_ctx_new(const char *key, size_t key_len, const char *cert, size_t cert_len,
                            enum tls_err *kind, char **err);
void tls_ctx_free(struct tls_ctx *t);

/* tls_ctx_ssl_new - a fresh server-side SSL for one connection (NULL on OOM). */
struct ssl_st *tls_ctx_ssl_new(struct tls_ctx *t);

/*
 * tls_describe - Postfix's wording of the negotiated protocol and cipher:
 * "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)".
 */
void tls_describe(const struct ssl_st *ssl, char *buf, size_t len);

/* tls_last_error - the reason of the newest OpenSSL error on this thread ("" if none); clears the
 * queue. */
void tls_last_error(char *buf, size_t len);

#endif
