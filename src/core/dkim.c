/*
 * dkim.c - the DKIM signer: the settings and the key (read once at start-up,
 * like the TLS key), one libopendkim library handle shared by the signing
 * threads, and per message a job that buffers the header block, decides from
 * its From: field whether the message is ours to sign, then feeds libopendkim
 * the header fields and the body and signs at the end (dkim_eom: the RSA or
 * Ed25519 operation). libopendkim parses the PEM key again for every message
 * (dkim_sign); that is part of the measured cost (docs/dkim.md). Ed25519 keys are
 * signed by dkim_ed25519.c instead: libopendkim 2.11 leaks memory on each of those.
 * Not here: which clients' mail is signed, reading the spool (spool_dkim.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>

#include "dkim_int.h"
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/dkim.h"
#include "mta/keystore.h"
#include "mta/log.h"
#include "mta/workers.h"

#define DKIM_PUB_MAX 1024 /* base64 public key: RSA 4096 is ~740 characters */

struct dkim_signer {
    DKIM_LIB *lib;
    char *key; /* the PEM text, NUL-terminated (libopendkim takes a C string) */
    size_t keylen;
    enum dkim_key_type type;
    int bits;
    char pub[DKIM_PUB_MAX];
    EVP_PKEY *edkey; /* an Ed25519 key, signed with by dkim_ed25519.c */
    char *selector;
    char *domains[DKIM_HEADERS_MAX];
    int ndomains;
    char *headers[DKIM_HEADERS_MAX + 1]; /* NULL-terminated, for DKIM_OPTS_SIGNHDRS */
    int nheaders;
    size_t header_max; /* header bytes a job buffers before it gives up */
    int test_fail;     /* MTA_TEST_DKIM_FAIL: every signature fails (tests only) */
    struct workers *w;
};

struct dkim_job {
    struct dkim_signer *s;
    char qid[32];
    char *hbuf; /* the header block until its blank line */
    size_t hlen, hcap;
    int in_body;
    int decided; /* verdict is final (skip or failure) before the end */
    size_t hend; /* the header block's length in hbuf (without the blank line) */
    DKIM *d;
    struct dkim_ed *ed; /* instead of D for an Ed25519 key */
    struct dkim_result r;
};

/* dkim_err - *ERR = "Error: SETTING ...: WHY" for the start-up; always NULL. */
static struct dkim_signer *dkim_err(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct dkim_signer *dkim_err(char **err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
    return NULL;
}

/* dkim_default_domain - the domain of myhostname (Postfix's mydomain): all but its first label. */
static const char *dkim_default_domain(const char *host)
{
    const char *dot = strchr(host, '.');
    return dot && dot[1] ? dot + 1 : host;
}

/* dkim_selector_ok - a selector is one or more DNS labels (RFC 6376 3.1). */
static int dkim_selector_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '.' || s[n - 1] == '.' || strstr(s, ".."))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

struct dkim_signer *dkim_signer_new(const struct conf *c, char **err)
{
    struct dkim_signer *s;
    struct keystore_pem pem;
    const char *msg = NULL;
    char *detail = NULL, why[256];

    *err = NULL;
    if (!c->dkim_sign)
        return NULL;
    if (!*c->dkim_selector)
        return dkim_err(err, "Error: dkim_sign = yes but dkim_selector is not set.");
    if (!dkim_selector_ok(c->dkim_selector))
        return dkim_err(err, "Error: dkim_selector: \"%s\" is not a DNS label", c->dkim_selector);
    if (!*c->dkim_key_file)
        return dkim_err(err, "Error: dkim_sign = yes but dkim_key_file is not set.");
    if (!(s = calloc(1, sizeof(*s))))
        return dkim_err(err, "Error: out of memory");
    s->header_max = (size_t)c->header_size_limit + DKIM_HEADER_SLACK;
    s->test_fail = getenv("MTA_TEST_DKIM_FAIL") != NULL;
    if (!(s->selector = strdup(c->dkim_selector)))
        goto oom;
    if (dkim_parse_names(*c->dkim_domains ? c->dkim_domains : dkim_default_domain(c->myhostname), 1,
                         s->domains, DKIM_HEADERS_MAX, &s->ndomains, why, sizeof(why)) < 0) {
        dkim_err(err, "Error: dkim_domains: %s", why);
        goto fail;
    }
    if (s->ndomains == 0) {
        dkim_err(err, "Error: dkim_domains is empty");
        goto fail;
    }
    if (dkim_parse_names(c->dkim_headers, 0, s->headers, DKIM_HEADERS_MAX, &s->nheaders, why,
                         sizeof(why)) < 0) {
        dkim_err(err, "Error: dkim_headers: %s", why);
        goto fail;
    }
    int from = 0;
    for (int i = 0; i < s->nheaders; i++)
        from |= !strcmp(s->headers[i], "from");
    if (!from) { /* RFC 6376 5.4: the From field must be signed */
        dkim_err(err, "Error: dkim_headers: must name From (RFC 6376 5.4)");
        goto fail;
    }
    if (keystore_read_key(c, c->dkim_key_file, &pem, &msg, &detail) < 0) {
        dkim_err(err, "Error: dkim_key_file %s: %s%s%s", c->dkim_key_file, detail ? detail : "",
                 detail ? ": " : "", msg ? msg : "cannot read it");
        free(detail);
        goto fail;
    }
    if (pem.warning)
        log_warning("dkim", "%s", pem.warning);
    s->key = pem.key;
    s->keylen = pem.key_len;
    pem.key = NULL;
    pem.key_len = 0;
    keystore_pem_free(&pem);
    if (dkim_parse_key(s->key, s->keylen, &s->type, &s->bits, s->pub, sizeof(s->pub), why,
                       sizeof(why)) < 0) {
        dkim_err(err, "Error: dkim_key_file %s: %s", c->dkim_key_file, why);
        goto fail;
    }
    if (!(s->lib = dkim_init(NULL, NULL))) {
        dkim_err(err, "Error: dkim_sign: cannot initialise libopendkim");
        goto fail;
    }
    if (s->type == DKIM_KEY_ED25519) {
        BIO *b = BIO_new_mem_buf(s->key, (int)s->keylen);
        s->edkey = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!s->edkey) {
            dkim_err(err, "Error: dkim_key_file %s: cannot load the Ed25519 key", c->dkim_key_file);
            goto fail;
        }
    }
    if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, s->headers, sizeof(char **)) !=
        DKIM_STAT_OK) {
        dkim_err(err, "Error: dkim_headers: libopendkim refused the list");
        goto fail;
    }
    return s;
oom:
    dkim_err(err, "Error: out of memory");
fail:
    dkim_signer_free(s);
    return NULL;
}

int dkim_signer_start(struct dkim_signer *s, struct event_base *base, char **err)
{
    if (!(s->w = workers_new(base, DKIM_THREADS, "dkim"))) {
        dkim_err(err, "cannot start the DKIM signing threads");
        return -1;
    }
    return 0;
}

struct workers *dkim_signer_workers(struct dkim_signer *s)
{
    return s->w;
}

void dkim_signer_free(struct dkim_signer *s)
{
    if (!s)
        return;
    if (s->w)
        workers_free(s->w);
    if (s->lib)
        dkim_close(s->lib);
    EVP_PKEY_free(s->edkey);
    if (s->key) {
        memset(s->key, 0, s->keylen); /* do not leave the key in freed memory */
        free(s->key);
    }
    free(s->selector);
    for (int i = 0; i < s->ndomains; i++)
        free(s->domains[i]);
    for (int i = 0; i < s->nheaders; i++)
        free(s->headers[i]);
    free(s);
}

void dkim_signer_describe(const struct dkim_signer *s, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "s=%s, a=%s, %d bits, domains", s->selector,
                                s->type == DKIM_KEY_RSA ? "rsa-sha256" : "ed25519-sha256", s->bits);
    for (int i = 0; i < s->ndomains && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, " %s", s->domains[i]);
    if (n < len)
        snprintf(buf + n, len - n, "; DNS: %s._domainkey.DOMAIN TXT \"v=DKIM1; k=%s; p=%s\"",
                 s->selector, s->type == DKIM_KEY_RSA ? "rsa" : "ed25519", s->pub);
}

/* --- jobs --- */

struct dkim_job *dkim_job_new(struct dkim_signer *s, const char *qid)
{
    struct dkim_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->s = s;
    snprintf(j->qid, sizeof(j->qid), "%s", qid);
    return j;
}

/* dkim_job_fail - the final verdict DKIM_FAILED with WHY. */
static void dkim_job_fail(struct dkim_job *j, const char *what, DKIM_STAT st)
{
    const char *detail = j->d ? dkim_geterror(j->d) : NULL;
    j->decided = 1;
    j->r.verdict = DKIM_FAILED;
    snprintf(j->r.why, sizeof(j->r.why), "%s: %s%s%s", what, dkim_getresultstr(st),
             detail && *detail ? ": " : "", detail && *detail ? detail : "");
}

/* dkim_job_start - the header block H[0..LEN) (without the blank line): ours to sign? Then
 * open the libopendkim handle and feed it every field. */
static void dkim_job_start(struct dkim_job *j, const char *h, size_t len)
{
    struct dkim_signer *s = j->s;
    const char *from = NULL;
    size_t off = 0, flen, step, fromlen = 0;
    int nfrom = 0;
    DKIM_STAT st;

    while ((step = dkim_split_header(h + off, len - off, &flen)) > 0) {
        if (flen >= 5 && !strncasecmp(h + off, "from:", 5)) {
            from = h + off + 5;
            fromlen = flen - 5;
            nfrom++;
        }
        off += step;
    }
    j->decided = 1;
    if (nfrom != 1 || dkim_from_domain(from, fromlen, j->r.domain, sizeof(j->r.domain)) < 0) {
        j->r.verdict = DKIM_SKIP_NOFROM;
        return;
    }
    int ours = 0;
    for (int i = 0; i < s->ndomains && !ours; i++)
        ours = !strcmp(s->domains[i], j->r.domain);
    if (!ours) {
        j->r.verdict = DKIM_SKIP_DOMAIN;
        return;
    }
    j->decided = 0;
    j->hend = len;
    if (s->edkey) {
        if (!(j->ed = dkim_ed_new())) {
            j->decided = 1;
            j->r.verdict = DKIM_FAILED;
            snprintf(j->r.why, sizeof(j->r.why), "out of memory");
        }
        return;
    }
    j->d =
        dkim_sign(s->lib, (const unsigned char *)j->qid, NULL, (unsigned char *)s->key,
                  (const unsigned char *)s->selector, (const unsigned char *)j->r.domain,
                  DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
                  s->type == DKIM_KEY_RSA ? DKIM_SIGN_RSASHA256 : DKIM_SIGN_ED25519SHA256, -1, &st);
    if (!j->d) {
        dkim_job_fail(j, "dkim_sign()", st);
        return;
    }
    for (off = 0; (step = dkim_split_header(h + off, len - off, &flen)) > 0; off += step) {
        st = dkim_header(j->d, (unsigned char *)h + off, flen);
        if (st != DKIM_STAT_OK) {
            dkim_job_fail(j, "dkim_header()", st);
            return;
        }
    }
    if ((st = dkim_eoh(j->d)) != DKIM_STAT_OK)
        dkim_job_fail(j, "dkim_eoh()", st);
}

/* dkim_job_body - body bytes for the handle. */
static void dkim_job_body(struct dkim_job *j, const void *p, size_t n)
{
    DKIM_STAT st;
    if (j->decided || n == 0)
        return;
    if (j->ed) {
        dkim_ed_body(j->ed, p, n);
        return;
    }
    if ((st = dkim_body(j->d, (unsigned char *)p, n)) != DKIM_STAT_OK)
        dkim_job_fail(j, "dkim_body()", st);
}

void dkim_job_feed(struct dkim_job *j, const void *p, size_t n)
{
    if (j->decided || n == 0)
        return;
    if (j->in_body) {
        dkim_job_body(j, p, n);
        return;
    }
    size_t scan = j->hlen >= 3 ? j->hlen - 3 : 0;
    size_t take = n;
    if (j->hlen + take > j->s->header_max)
        take = j->s->header_max - j->hlen;
    if (j->hlen + take + 1 > j->hcap) {
        size_t cap = j->hcap ? j->hcap : 4096;
        while (cap < j->hlen + take + 1)
            cap *= 2;
        char *nb = realloc(j->hbuf, cap);
        if (!nb) {
            j->decided = 1;
            j->r.verdict = DKIM_FAILED;
            snprintf(j->r.why, sizeof(j->r.why), "out of memory");
            return;
        }
        j->hbuf = nb;
        j->hcap = cap;
    }
    memcpy(j->hbuf + j->hlen, p, take);
    j->hlen += take;
    /* the end of the header: a blank line (an empty header is a blank first line) */
    size_t end = 0;
    int found = 0;
    if (j->hlen >= 2 && j->hbuf[0] == '\r' && j->hbuf[1] == '\n')
        found = 1;
    for (size_t i = scan; !found && i + 4 <= j->hlen; i++)
        if (!memcmp(j->hbuf + i, "\r\n\r\n", 4)) {
            end = i + 2;
            found = 1;
        }
    if (!found) {
        if (j->hlen >= j->s->header_max) {
            j->decided = 1;
            j->r.verdict = DKIM_FAILED;
            snprintf(j->r.why, sizeof(j->r.why), "header larger than %zu bytes", j->s->header_max);
        }
        return;
    }
    j->in_body = 1;
    dkim_job_start(j, j->hbuf, end);
    /* what came after the blank line: the buffered rest, then the part of P not taken */
    dkim_job_body(j, j->hbuf + end + 2, j->hlen - end - 2);
    dkim_job_body(j, (const char *)p + take, n - take);
}

/* dkim_crlf - the header field libopendkim folded with bare "\n\t" as stored lines: CRLF. */
static char *dkim_crlf(const unsigned char *v, size_t len)
{
    char *out = malloc(16 + 2 * len + 3), *o = out;
    if (!out)
        return NULL;
    o += sprintf(o, "DKIM-Signature: ");
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r'))
            *o++ = '\r';
        *o++ = (char)v[i];
    }
    memcpy(o, "\r\n", 3);
    return out;
}

void dkim_job_finish(struct dkim_job *j, struct dkim_result *r)
{
    DKIM_STAT st;
    unsigned char *hdr = NULL;
    size_t hlen = 0;

    if (!j->in_body && !j->decided) {
        j->in_body = 1; /* a header with no body (no blank line) */
        dkim_job_start(j, j->hbuf ? j->hbuf : "", j->hlen);
    }
    if (!j->decided && j->s->test_fail) {
        j->decided = 1;
        j->r.verdict = DKIM_FAILED;
        snprintf(j->r.why, sizeof(j->r.why), "test hook MTA_TEST_DKIM_FAIL");
    }
    if (!j->decided && j->ed) {
        j->decided = 1;
        j->r.header =
            dkim_ed_sign(j->ed, j->s->edkey, j->hbuf ? j->hbuf : "", j->hend, j->s->headers,
                         j->s->nheaders, j->r.domain, j->s->selector, j->r.why, sizeof(j->r.why));
        j->r.verdict = j->r.header ? DKIM_SIGNED : DKIM_FAILED;
    }
    if (!j->decided) {
        if ((st = dkim_eom(j->d, NULL)) != DKIM_STAT_OK)
            dkim_job_fail(j, "dkim_eom()", st);
        else if ((st = dkim_getsighdr_d(j->d, strlen("DKIM-Signature: "), &hdr, &hlen)) !=
                 DKIM_STAT_OK)
            dkim_job_fail(j, "dkim_getsighdr_d()", st);
        else if (hlen > DKIM_SIGHDR_MAX || !(j->r.header = dkim_crlf(hdr, hlen))) {
            j->decided = 1;
            j->r.verdict = DKIM_FAILED;
            snprintf(j->r.why, sizeof(j->r.why), "signature field too large or out of memory");
        } else
            j->r.verdict = DKIM_SIGNED;
    }
    *r = j->r;
    memset(&j->r, 0, sizeof(j->r));
}

void dkim_job_free(struct dkim_job *j)
{
    if (!j)
        return;
    if (j->d)
        dkim_free(j->d);
    dkim_ed_free(j->ed);
    free(j->hbuf);
    dkim_result_clear(&j->r);
    free(j);
}

void dkim_result_clear(struct dkim_result *r)
{
    free(r->header);
    r->header = NULL;
}

void dkim_report(const struct dkim_signer *s, const char *qid, const struct dkim_result *r)
{
    switch (r->verdict) {
    case DKIM_SIGNED:
        counter_add(CNT_DKIM_SIGNED, 1);
        log_mail("dkim", "%s: DKIM-Signature field added (s=%s, d=%s)", qid, s->selector,
                 r->domain);
        break;
    case DKIM_FAILED:
        counter_add(CNT_DKIM_FAILED, 1);
        log_warning("dkim", "%s: DKIM signing failed (s=%s, d=%s): %s", qid, s->selector, r->domain,
                    r->why);
        break;
    default: /* not ours: nothing to say, as OpenDKIM says nothing for mail it does not sign */
        break;
    }
}
