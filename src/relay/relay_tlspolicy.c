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
#include "relay_mtasts.h"

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
    int ntlsa;      /* usable ones: usage 2 or 3, selector 0 or 1, matching type 0, 1 or 2 */
    int tlsa_level; /* what they made of the level: dane, encrypt (none usable) or may */
    /* MTA-STS of the next-hop domain (smtp_mta_sts = yes) */
    int sts_known;                 /* the lookup below is over */
    int sts_have;                  /* a policy applies */
    struct relay_sts_policy sts;   /* that policy */
    char sts_id[64];               /* the TXT record's id */
    struct relay_sts_fetch *fetch; /* the HTTPS request in flight */
    int sts_mode;                  /* this host: 0, or the policy's mode when it raised the level */
};

static void relay_sts_start(struct relay_conn *c);

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
    /* an MTA-STS policy in testing mode raises the level only to report failures */
    if (c->tlspol && c->tlspol->sts_mode == RELAY_STS_TESTING)
        return 0;
    return c->tls_level >= RELAY_TLS_ENCRYPT;
}

/* relay_tls_rpt - one line per failure with RFC 8460's fields, for a TLS-RPT report
 * generator that reads the mail log. */
static void relay_tls_rpt(struct relay_conn *c, const char *policy, const char *result,
                          const char *reason)
{
    log_warning_pid("smtp", c->log_pid,
                    "tlsrpt: policy-domain=%s policy-type=%s result-type=%s "
                    "receiving-mx-hostname=%s receiving-ip=%s failure-reason=\"%s\"",
                    relay_route_nexthop(c->route), policy, result, relay_route_host(c->route),
                    c->ip[0] ? c->ip : "none", reason);
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
    tp->tlsa_level = tp->ntlsa ? RELAY_TLS_DANE : all ? RELAY_TLS_ENCRYPT : RELAY_TLS_MAY;
    c->tls_level = tp->tlsa_level;
    relay_sts_start(c);
}

void relay_tls_prepare(struct relay_conn *c, void (*done)(struct relay_conn *c))
{
    struct relay *r = c->r;
    struct relay_tlspol *tp = c->tlspol;
    const char *host = relay_route_host(c->route);
    int port = relay_route_port(c->route);
    char name[DNS_NAME_MAX + 16];

    c->tls_level = relay_tls_conf_level(r);
    if (tp)
        tp->sts_mode = 0;
    if (c->tls_level == RELAY_TLS_NONE ||
        (c->tls_level != RELAY_TLS_DANE &&
         (!r->conf->smtp_mta_sts || c->kind != SCHED_DEST_DOMAIN))) {
        done(c);
        return;
    }
    if (!tp && !(tp = c->tlspol = calloc(1, sizeof(*tp)))) {
        c->fail(c, "TLS policy lookup error: out of memory", "4.3.0", 0);
        return;
    }
    tp->c = c;
    tp->done = done;
    if (c->tls_level != RELAY_TLS_DANE) {
        relay_sts_start(c);
        return;
    }
    /* DANE needs an authenticated MX answer for a domain (RFC 7672 2.2.1) and a
     * resolver whose AD bit we were told to trust; otherwise it is "may" */
    if (c->kind != SCHED_DEST_DOMAIN || !relay_route_mx_secure(c->route) ||
        strcmp(r->conf->smtp_dns_support_level, "dnssec") != 0) {
        c->tls_level = RELAY_TLS_MAY;
        relay_sts_start(c);
        return;
    }
    if (tp->looked_up && tp->port == port && !strcasecmp(tp->host, host)) {
        c->tls_level = tp->tlsa_level;
        relay_sts_start(c); /* another address of the same host */
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
    relay_sts_fetch_free(tp->fetch); /* cancelled: its completion never runs */
    tp->fetch = NULL;
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
    /* Postfix's warning, a TLS-RPT line, then Postfix's reason */
    snprintf(why, len, "%s", peer ? X509_verify_cert_error_string(vr) : "no certificate");
    log_warning_pid("smtp", c->log_pid, "server certificate verification failed for %s: num=%ld:%s",
                    c->relay_field, peer ? vr : 0L, why);
    relay_tls_rpt(c,
                  c->tls_level == RELAY_TLS_DANE     ? "tlsa"
                  : c->tlspol && c->tlspol->sts_mode ? "sts"
                                                     : "no-policy-found",
                  !peer                                ? "certificate-not-trusted"
                  : c->tls_level == RELAY_TLS_DANE     ? "validation-failure"
                  : vr == X509_V_ERR_HOSTNAME_MISMATCH ? "certificate-host-mismatch"
                  : vr == X509_V_ERR_CERT_HAS_EXPIRED  ? "certificate-expired"
                                                       : "certificate-not-trusted",
                  why);
    if (c->tlspol && c->tlspol->sts_mode == RELAY_STS_TESTING) {
        log_mail_pid("smtp", c->log_pid,
                     "MTA-STS policy for %s (mode testing): certificate of %s not verified; "
                     "delivering anyway",
                     relay_route_nexthop(c->route), c->relay_field);
        return 0;
    }
    snprintf(why, len, "Server certificate not verified");
    return -1;
}

/* --- MTA-STS (relay_mtasts.c has the policy, the cache and the fetch) --- */

/* relay_sts_apply - the host about to be tried against the domain's policy: in enforce a
 * host the policy does not list is skipped, a listed one needs a verified certificate
 * naming it (verify); in testing both are only reported. */
static void relay_sts_apply(struct relay_conn *c)
{
    struct relay_tlspol *tp = c->tlspol;
    const char *host = relay_route_host(c->route), *dom = relay_route_nexthop(c->route);
    char text[DNS_NAME_MAX * 2 + 100];
    struct sockaddr_storage ss;

    relay_route_addr(c->route, &ss, c->ip, sizeof(c->ip));
    if (!tp->sts_have || tp->sts.mode == RELAY_STS_NONE || c->tls_level == RELAY_TLS_DANE) {
        tp->done(c); /* RFC 8461 2: DANE, where it applies, comes first */
        return;
    }
    if (!relay_sts_mx_match(&tp->sts, host)) {
        snprintf(text, sizeof(text), "MTA-STS policy for %s does not list MX host %s", dom, host);
        relay_tls_rpt(c, "sts", "validation-failure", text);
        if (tp->sts.mode == RELAY_STS_ENFORCE) {
            c->fail(c, text, "4.7.5", 0);
            return;
        }
        log_mail_pid("smtp", c->log_pid, "%s (mode testing): delivering anyway", text);
        tp->done(c);
        return;
    }
    if (c->tls_level < RELAY_TLS_VERIFY) {
        c->tls_level = RELAY_TLS_VERIFY; /* RFC 8461 4.2: PKIX, the MX host's name */
        tp->sts_mode = tp->sts.mode;
    }
    tp->done(c);
}

/* relay_sts_known - the domain's policy is settled (maybe none): apply it to the host. */
static void relay_sts_known(struct relay_conn *c, const struct relay_sts_policy *p)
{
    struct relay_tlspol *tp = c->tlspol;

    tp->sts_known = 1;
    tp->sts_have = p != NULL;
    if (p)
        tp->sts = *p;
    relay_sts_apply(c);
}

/* relay_sts_fallback - no fresh policy could be had: a cached one still holds (RFC 8461
 * 5.1), else there is none; WHY is logged in TLS-RPT form. */
static void relay_sts_fallback(struct relay_conn *c, const char *result, const char *why)
{
    relay_tls_rpt(c, "sts", result, why);
    relay_sts_known(c, relay_sts_cached(c->r, relay_route_nexthop(c->route)));
}

/* relay_sts_fetch_done - the policy's HTTPS answer. */
static void relay_sts_fetch_done(void *arg, struct relay_sts_fetch *f)
{
    struct relay_tlspol *tp = arg;
    struct relay_conn *c = tp->c;
    struct relay_sts_policy pol;
    const char *body, *why;
    size_t len;
    char perr[200];

    tp->fetch = NULL;
    if (relay_sts_fetch_result(f, &body, &len, &why) < 0) {
        relay_sts_fallback(
            c, strstr(why, "certificate") ? "sts-webpki-invalid" : "sts-policy-fetch-error", why);
    } else if (relay_sts_parse(body, len, &pol, perr, sizeof(perr)) < 0) {
        relay_sts_fallback(c, "sts-policy-invalid", perr);
    } else {
        pol.magic = RELAY_STS_MAGIC;
        pol.expires = (long long)time(NULL) + pol.max_age;
        snprintf(pol.id, sizeof(pol.id), "%s", tp->sts_id);
        relay_sts_store(c->r, relay_route_nexthop(c->route), &pol);
        log_mail_pid("smtp", c->log_pid,
                     "MTA-STS policy for %s: mode %s, %d mx pattern(s), max_age %ld",
                     relay_route_nexthop(c->route),
                     pol.mode == RELAY_STS_ENFORCE   ? "enforce"
                     : pol.mode == RELAY_STS_TESTING ? "testing"
                                                     : "none",
                     pol.nmx, pol.max_age);
        relay_sts_known(c, &pol);
    }
    relay_sts_fetch_free(f);
}

/* relay_sts_addr_done - the address of mta-sts.DOMAIN: fetch the policy there. */
static void relay_sts_addr_done(void *arg, enum dns_status st, const struct dns_addr *a, int n,
                                const char *errtext)
{
    struct relay_tlspol *tp = arg;
    struct relay_conn *c = tp->c;
    char ip[64] = "", why[DNS_NAME_MAX + 100];

    tp->pending = 0;
    if (!c) {
        free(tp);
        return;
    }
    if (st == DNS_CANCELLED)
        return;
    if (st == DNS_OK && n > 0) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[0].ss;
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a[0].ss;
        if (a[0].ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
    }
    if (!ip[0] || !(tp->fetch = relay_sts_fetch_start(c->r, relay_route_nexthop(c->route), ip,
                                                      relay_sts_fetch_done, tp))) {
        snprintf(why, sizeof(why), "policy host mta-sts.%s: %s", relay_route_nexthop(c->route),
                 ip[0] ? "cannot start the request" : errtext);
        relay_sts_fallback(c, "sts-policy-fetch-error", why);
    }
}

/* relay_sts_txt_id - the id of the one "v=STSv1" record (RFC 8461 3.1), or NULL. */
static const char *relay_sts_txt_id(const struct dns_txt *t, int n, char *id, size_t len)
{
    int i, found = 0;

    for (i = 0; i < n; i++) {
        const char *p = t[i].text, *q;
        size_t l;
        if (strncmp(p, "v=STSv1", 7) != 0 || (p[7] && p[7] != ';' && p[7] != ' '))
            continue;
        if (found++ || !(q = strstr(p, "id=")))
            return NULL; /* two records, or no id: as if there were none */
        q += 3;
        l = strcspn(q, "; \t");
        if (l == 0 || l >= len)
            return NULL;
        memcpy(id, q, l);
        id[l] = '\0';
    }
    return found ? id : NULL;
}

/* relay_sts_txt_done - the _mta-sts TXT answer: a cached policy with that id is used, a new
 * id (or none cached) fetches the policy. */
static void relay_sts_txt_done(void *arg, enum dns_status st, int secure, const struct dns_txt *t,
                               int n, const char *errtext)
{
    struct relay_tlspol *tp = arg;
    struct relay_conn *c = tp->c;
    const struct relay_sts_policy *cached;
    char host[DNS_NAME_MAX + 16];

    (void)secure;
    (void)errtext;
    tp->pending = 0;
    if (!c) {
        free(tp);
        return;
    }
    if (st == DNS_CANCELLED)
        return;
    cached = relay_sts_cached(c->r, relay_route_nexthop(c->route));
    if (st != DNS_OK || !relay_sts_txt_id(t, n, tp->sts_id, sizeof(tp->sts_id))) {
        relay_sts_known(c, cached); /* no record: a cached policy holds until max_age */
        return;
    }
    if (cached && !strcmp(cached->id, tp->sts_id)) {
        relay_sts_known(c, cached);
        return;
    }
    snprintf(host, sizeof(host), "mta-sts.%s", relay_route_nexthop(c->route));
    tp->pending = 1;
    dns_query_addr(c->r->dns, host, relay_sts_addr_done, tp);
}

/* relay_sts_start - the domain's MTA-STS policy (once per connection), then the host. */
static void relay_sts_start(struct relay_conn *c)
{
    struct relay_tlspol *tp = c->tlspol;
    char name[DNS_NAME_MAX + 16];

    if (!c->r->conf->smtp_mta_sts || c->kind != SCHED_DEST_DOMAIN) {
        tp->done(c);
        return;
    }
    if (tp->sts_known) {
        relay_sts_apply(c);
        return;
    }
    snprintf(name, sizeof(name), "_mta-sts.%s", relay_route_nexthop(c->route));
    tp->pending = 1;
    dns_query_txt(c->r->dns, name, relay_sts_txt_done, tp);
}
