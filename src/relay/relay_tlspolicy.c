/*
 * relay_tlspolicy.c - the outbound TLS policy, Postfix's smtp_tls_security_level:
 * none (never STARTTLS), may (STARTTLS when offered, any certificate), encrypt
 * (TLS required, not authenticated), verify (a trusted chain naming the MX host),
 * secure (a trusted chain naming the next-hop domain or a subdomain: Postfix's
 * smtp_tls_secure_cert_match = nexthop, dot-nexthop) and dane (RFC 7672: DANE-EE(3)
 * and DANE-TA(2) TLSA records of _25._tcp.MXHOST verified with OpenSSL's DANE API
 * when the MX and TLSA answers are DNSSEC-validated, else "may"). Decided per MX host
 * before its connection, applied to the SSL before the handshake, checked after it.
 * Not here: the SMTP conversation (relay_client.c), DNS plumbing (core dns.c).
 */
#include "relay_int.h"

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per connection: the TLSA records of the host being tried (DANE). */
struct relay_tlspol {
    struct relay_conn *c; /* NULL once the connection is gone while a query is out */
    int pending;
    void (*done)(struct relay_conn *c);
    char host[DNS_NAME_MAX]; /* the TLSA records below are for host:port */
    int port;
    int looked_up;
    struct dns_tlsa tlsa[DNS_MAX_RECORDS];
    int ntlsa; /* usable ones: usage 2 or 3, selector 0 or 1, matching type 0, 1 or 2 */
};

/* relay_tls_conf_level - smtp_tls_security_level as RELAY_TLS_* (the value was checked). */
static int relay_tls_conf_level(const struct relay *r)
{
    static const char *const names[] = {"none", "may", "encrypt", "dane", "verify", "secure"};
    int i;

    for (i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (!strcmp(r->conf->smtp_tls_security_level, names[i]))
            return i;
    return RELAY_TLS_MAY;
}

SSL_CTX *relay_tls_ctx(struct relay *r)
{
    const char *cafile = r->conf->smtp_tls_CAfile, *capath = r->conf->smtp_tls_CApath;
    char err[256];

    if (r->tls || r->tls_failed || relay_tls_conf_level(r) == RELAY_TLS_NONE)
        return r->tls;
    /* made at the first need: OpenSSL's initialisation costs ~4 MB resident that a relay
     * without TLS peers never needs */
    if (!(r->tls = SSL_CTX_new(TLS_client_method())))
        goto fail;
    SSL_CTX_set_min_proto_version(r->tls, TLS1_2_VERSION);
    /* as Postfix with tls_append_default_CA = no: set CAs replace the system's */
    if (cafile[0] || capath[0]) {
        if (SSL_CTX_load_verify_locations(r->tls, cafile[0] ? cafile : NULL,
                                          capath[0] ? capath : NULL) != 1)
            goto fail;
    } else {
        SSL_CTX_set_default_verify_paths(r->tls);
    }
    if (SSL_CTX_dane_enable(r->tls) <= 0)
        goto fail;
    /* the handshake always completes; relay_tls_check decides what the level demands,
     * so that the reason is Postfix's and the log says what was wrong */
    SSL_CTX_set_verify(r->tls, SSL_VERIFY_NONE, NULL);
    return r->tls;
fail:
    tls_last_error(err, sizeof(err));
    log_warning("smtp",
                "cannot create the outbound TLS context (smtp_tls_CAfile=%s, "
                "smtp_tls_CApath=%s): %s",
                cafile, capath, err[0] ? err : "out of memory");
    if (r->tls)
        SSL_CTX_free(r->tls);
    r->tls = NULL;
    r->tls_failed = 1;
    return NULL;
}

int relay_tls_required(const struct relay_conn *c)
{
    return c->tls_level >= RELAY_TLS_ENCRYPT;
}

/* relay_tlsa_usable - RFC 7672 3.1.3: only DANE-TA(2) and DANE-EE(3) count for SMTP. */
static int relay_tlsa_usable(const struct dns_tlsa *t)
{
    return (t->usage == 2 || t->usage == 3) && t->selector <= 1 && t->mtype <= 2;
}

/* relay_tlsa_done - the TLSA answer for the host about to be tried. */
static void relay_tlsa_done(void *arg, enum dns_status st, int secure, const struct dns_tlsa *t,
                            int n, const char *errtext)
{
    struct relay_tlspol *tp = arg;
    struct relay_conn *c = tp->c;
    char text[DNS_NAME_MAX + 100];
    int i, all = 0;

    tp->pending = 0;
    if (!c) {
        free(tp);
        return;
    }
    if (st == DNS_CANCELLED)
        return; /* relay_free: the connection goes next */
    tp->looked_up = 1;
    tp->ntlsa = 0;
    if (st == DNS_TEMPFAIL) {
        /* RFC 7672 2.2.1: an indeterminate answer must not downgrade to plaintext */
        snprintf(text, sizeof(text), "TLSA lookup error for %s:%d: %s", tp->host, tp->port,
                 errtext);
        tp->looked_up = 0;
        c->fail(c, text, "4.7.5", 0);
        return;
    }
    if (st == DNS_OK && secure) {
        for (i = 0; i < n; i++) {
            all++;
            if (relay_tlsa_usable(&t[i]))
                tp->tlsa[tp->ntlsa++] = t[i];
        }
    }
    /* secure records, none usable: RFC 7672 2.2 says TLS, without authentication */
    c->tls_level = tp->ntlsa ? RELAY_TLS_DANE : all ? RELAY_TLS_ENCRYPT : RELAY_TLS_MAY;
    tp->done(c);
}

void relay_tls_prepare(struct relay_conn *c, void (*done)(struct relay_conn *c))
{
    struct relay *r = c->r;
    struct relay_tlspol *tp = c->tlspol;
    const char *host = relay_route_host(c->route);
    int port = relay_route_port(c->route);
    char name[DNS_NAME_MAX + 16];

    c->tls_level = relay_tls_conf_level(r);
    if (c->tls_level != RELAY_TLS_DANE) {
        done(c);
        return;
    }
    /* DANE needs an authenticated MX answer for a domain (RFC 7672 2.2.1) and a
     * resolver whose AD bit we were told to trust; otherwise it is "may" */
    if (c->kind != SCHED_DEST_DOMAIN || !relay_route_mx_secure(c->route) ||
        strcmp(r->conf->smtp_dns_support_level, "dnssec") != 0) {
        c->tls_level = RELAY_TLS_MAY;
        done(c);
        return;
    }
    if (!tp && !(tp = c->tlspol = calloc(1, sizeof(*tp)))) {
        c->fail(c, "TLSA lookup error: out of memory", "4.3.0", 0);
        return;
    }
    tp->c = c;
    tp->done = done;
    if (tp->looked_up && tp->port == port && !strcasecmp(tp->host, host)) {
        c->tls_level = tp->ntlsa ? RELAY_TLS_DANE : RELAY_TLS_MAY;
        done(c); /* another address of the same host */
        return;
    }
    snprintf(tp->host, sizeof(tp->host), "%s", host);
    tp->port = port;
    tp->looked_up = 0;
    tp->pending = 1;
    snprintf(name, sizeof(name), "_%d._tcp.%s", port, host);
    dns_query_tlsa(r->dns, name, relay_tlsa_done, tp);
}

void relay_tls_conn_free(struct relay_conn *c)
{
    struct relay_tlspol *tp = c->tlspol;

    c->tlspol = NULL;
    if (!tp)
        return;
    if (tp->pending)
        tp->c = NULL; /* relay_tlsa_done frees it */
    else
        free(tp);
}

/* relay_is_ip - HOST is an address literal (no SNI, no name to match). */
static int relay_is_ip(const char *host)
{
    struct in6_addr tmp;

    return inet_pton(AF_INET, host, &tmp) == 1 || inet_pton(AF_INET6, host, &tmp) == 1;
}

SSL *relay_tls_ssl_new(struct relay_conn *c)
{
    SSL *ssl = SSL_new(c->r->tls);
    const char *host = relay_route_host(c->route), *nexthop = relay_route_nexthop(c->route);
    struct relay_tlspol *tp = c->tlspol;
    char dot[DNS_NAME_MAX + 2];
    int i, ok = 1;

    if (!ssl)
        return NULL;
    if (!relay_is_ip(host))
        SSL_set_tlsext_host_name(ssl, host);
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    switch (c->tls_level) {
    case RELAY_TLS_VERIFY: /* Postfix smtp_tls_verify_cert_match = hostname */
        ok = SSL_set1_host(ssl, host) == 1;
        break;
    case RELAY_TLS_SECURE: /* smtp_tls_secure_cert_match = nexthop, dot-nexthop */
        snprintf(dot, sizeof(dot), ".%s", nexthop);
        ok = SSL_set1_host(ssl, nexthop) == 1 && SSL_add1_host(ssl, dot) == 1;
        break;
    case RELAY_TLS_DANE:
        /* the TLSA base domain is the reference name (DANE-TA); DANE-EE matches the key
         * alone (RFC 7672 3.1.1), the next-hop domain is accepted too (3.2.2) */
        ok = tp && SSL_dane_enable(ssl, host) > 0;
        if (ok) {
            SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
            SSL_add1_host(ssl, nexthop);
            for (i = 0; i < tp->ntlsa; i++)
                SSL_dane_tlsa_add(ssl, tp->tlsa[i].usage, tp->tlsa[i].selector, tp->tlsa[i].mtype,
                                  tp->tlsa[i].data, tp->tlsa[i].len);
        }
        break;
    default:
        break;
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    return ssl;
}

int relay_tls_check(struct relay_conn *c, SSL *ssl, int *verified, char *why, size_t len)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    long vr = SSL_get_verify_result(ssl);

    *verified = 0;
    if (c->tls_level < RELAY_TLS_DANE || c->tls_level == RELAY_TLS_ENCRYPT)
        return 0;
    if (peer && vr == X509_V_OK) {
        *verified = 1;
        return 0;
    }
    /* Postfix's warning, then its reason; the warning is what a TLS-RPT report counts */
    log_warning_pid("smtp", c->log_pid,
                    "server certificate verification failed for %s: num=%ld:%s "
                    "(smtp_tls_security_level=%s, policy-type=%s, result-type=%s)",
                    c->relay_field, peer ? vr : 0L,
                    peer ? X509_verify_cert_error_string(vr) : "no certificate",
                    c->r->conf->smtp_tls_security_level,
                    c->tls_level == RELAY_TLS_DANE ? "tlsa" : "no-policy-found",
                    !peer                                ? "certificate-not-trusted"
                    : c->tls_level == RELAY_TLS_DANE     ? "validation-failure"
                    : vr == X509_V_ERR_HOSTNAME_MISMATCH ? "certificate-host-mismatch"
                    : vr == X509_V_ERR_CERT_HAS_EXPIRED  ? "certificate-expired"
                                                         : "certificate-not-trusted");
    snprintf(why, len, "Server certificate not verified");
    return -1;
}
