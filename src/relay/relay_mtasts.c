/*
 * relay_mtasts.c - MTA-STS (RFC 8461) for MX delivery: the _mta-sts.DOMAIN TXT
 * record through c-ares, the policy fetched from
 * https://mta-sts.DOMAIN/.well-known/mta-sts.txt with evhttp over
 * bufferevent_openssl (certificate verified against smtp_tls_CAfile/CApath, else
 * the system store; the address of mta-sts.DOMAIN comes from our resolver, so the
 * loop never blocks in getaddrinfo), kept in memory and on the data volume
 * (DATA/mta-sts/DOMAIN, written on a worker) until its max_age runs out.
 * relay_tlspolicy.c asks for a domain's policy and applies it per MX host.
 * Not here: what enforce/testing do to a connection (relay_tlspolicy.c).
 */
#include "relay_mtasts.h"

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/workers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STS_BODY_MAX 65536         /* RFC 8461 3.3: policies are at most 64 KiB */
#define STS_MAX_AGE 31557600L      /* RFC 8461 3.2: max_age at most one year */
#define STS_CACHE_MAX 10000        /* domains kept in memory */
#define STS_FAIL_RETRY_SECONDS 300 /* a failed fetch is not retried sooner for the domain */

struct sts_entry {
    char domain[DNS_NAME_MAX];
    struct relay_sts_policy pol;
    LIST_ENTRY(sts_entry) link;
};

struct relay_sts {
    struct relay *r;
    LIST_HEAD(, sts_entry) entries;
    int n;
    int loaded; /* the data volume's copies were asked for */
};

/* --- the policy text (RFC 8461 3.2) --- */

/* sts_trim - the value without surrounding blanks, cut into BUF. */
static void sts_trim(const char *p, size_t n, char *buf, size_t len)
{
    while (n && isspace((unsigned char)*p))
        p++, n--;
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    if (n >= len)
        n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
}

int relay_sts_parse(const char *text, size_t len, struct relay_sts_policy *p, char *why,
                    size_t wlen)
{
    const char *line = text, *end = text + len;
    int version = 0, mode = -1;
    long max_age = -1;

    memset(p, 0, sizeof(*p));
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl ? nl : end, *colon = memchr(line, ':', (size_t)(le - line));
        char key[32], val[DNS_NAME_MAX];
        if (colon) {
            sts_trim(line, (size_t)(colon - line), key, sizeof(key));
            sts_trim(colon + 1, (size_t)(le - colon - 1), val, sizeof(val));
            if (!strcmp(key, "version"))
                version = !strcmp(val, "STSv1");
            else if (!strcmp(key, "mode"))
                mode = !strcmp(val, "enforce")   ? RELAY_STS_ENFORCE
                       : !strcmp(val, "testing") ? RELAY_STS_TESTING
                       : !strcmp(val, "none")    ? RELAY_STS_NONE
                                                 : -1;
            else if (!strcmp(key, "max_age")) {
                char *e;
                errno = 0;
                max_age = strtol(val, &e, 10);
                if (errno || *e || !val[0] || max_age < 0)
                    max_age = -1;
                else if (max_age > STS_MAX_AGE)
                    max_age = STS_MAX_AGE;
            } else if (!strcmp(key, "mx") && p->nmx < RELAY_STS_MX_MAX && val[0])
                snprintf(p->mx[p->nmx++], sizeof(p->mx[0]), "%s", val);
        }
        line = le + 1;
    }
    if (!version || mode < 0 || max_age < 0 || (mode != RELAY_STS_NONE && p->nmx == 0)) {
        snprintf(why, wlen, "invalid policy: %s",
                 !version      ? "no version: STSv1"
                 : mode < 0    ? "bad or missing mode"
                 : max_age < 0 ? "bad or missing max_age"
                               : "no mx");
        return -1;
    }
    p->mode = mode;
    p->max_age = max_age;
    return 0;
}

int relay_sts_mx_match(const struct relay_sts_policy *p, const char *host)
{
    size_t hl = strlen(host);
    int i;

    if (hl && host[hl - 1] == '.')
        hl--;
    for (i = 0; i < p->nmx; i++) {
        const char *pat = p->mx[i];
        if (pat[0] == '*' && pat[1] == '.') {
            /* "*.example.com" stands for exactly one more label on the left (3.4) */
            const char *dot = memchr(host, '.', hl);
            size_t rest = strlen(pat + 1);
            if (dot && dot > host && (size_t)(host + hl - dot) == rest &&
                !strncasecmp(dot, pat + 1, rest))
                return 1;
        } else if (strlen(pat) == hl && !strncasecmp(pat, host, hl)) {
            return 1;
        }
    }
    return 0;
}

/* --- the cache --- */

static struct relay_sts *sts_of(struct relay *r)
{
    if (!r->sts && (r->sts = calloc(1, sizeof(*r->sts))))
        r->sts->r = r;
    return r->sts;
}

static struct sts_entry *sts_find(struct relay_sts *s, const char *domain)
{
    struct sts_entry *e;

    LIST_FOREACH(e, &s->entries, link)
    if (!strcasecmp(e->domain, domain))
        return e;
    return NULL;
}

/* sts_put - remember DOMAIN's policy (replacing an older one); the oldest goes when full. */
static void sts_put(struct relay_sts *s, const char *domain, const struct relay_sts_policy *p)
{
    struct sts_entry *e = sts_find(s, domain);

    if (!e) {
        if (s->n >= STS_CACHE_MAX)
            return; /* bounded: the policy is then fetched each time */
        if (!(e = calloc(1, sizeof(*e))))
            return;
        snprintf(e->domain, sizeof(e->domain), "%s", domain);
        LIST_INSERT_HEAD(&s->entries, e, link);
        s->n++;
    }
    e->pol = *p;
}

/* A copy written to or read from the data volume on a worker. */
struct sts_io {
    char path[4400];
    char dir[4096];
    char domain[DNS_NAME_MAX];
    struct relay_sts_policy pol;
    struct relay_sts_policy *loaded; /* reads: the policies found */
    char (*names)[DNS_NAME_MAX];
    int nloaded;
    struct relay *r;
};

/* sts_save_work - DATA/mta-sts/DOMAIN by tmp + rename (a torn copy is never read). */
static void sts_save_work(void *arg)
{
    struct sts_io *io = arg;
    char tmp[4500];
    FILE *f;

    mkdir(io->dir, 0700);
    snprintf(tmp, sizeof(tmp), "%s.tmp", io->path);
    if (!(f = fopen(tmp, "w")))
        return;
    fwrite(&io->pol, sizeof(io->pol), 1, f);
    if (fclose(f) == 0)
        rename(tmp, io->path);
    else
        unlink(tmp);
}

static void sts_free_io(void *arg)
{
    struct sts_io *io = arg;

    free(io->loaded);
    free(io->names);
    free(io);
}

/* sts_domain_ok - a domain name usable as a file name (no '/', no leading dot). */
static int sts_domain_ok(const char *d)
{
    return d[0] && d[0] != '.' && strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == strlen(d);
}

/* sts_load_work - every copy under DATA/mta-sts whose policy has not expired. */
static void sts_load_work(void *arg)
{
    struct sts_io *io = arg;
    DIR *dir = opendir(io->dir);
    struct dirent *de;

    io->loaded = calloc(STS_CACHE_MAX, sizeof(*io->loaded));
    io->names = calloc(STS_CACHE_MAX, sizeof(*io->names));
    if (!dir || !io->loaded || !io->names) {
        if (dir)
            closedir(dir);
        return;
    }
    while ((de = readdir(dir)) && io->nloaded < STS_CACHE_MAX) {
        char p[4400 + 256];
        FILE *f;
        struct relay_sts_policy pol;
        if (!sts_domain_ok(de->d_name) || strstr(de->d_name, ".tmp"))
            continue;
        snprintf(p, sizeof(p), "%s/%s", io->dir, de->d_name);
        if (!(f = fopen(p, "r")))
            continue;
        if (fread(&pol, sizeof(pol), 1, f) == 1 && pol.magic == RELAY_STS_MAGIC &&
            pol.expires > time(NULL) && pol.nmx >= 0 && pol.nmx <= RELAY_STS_MX_MAX &&
            pol.mode >= RELAY_STS_NONE && pol.mode <= RELAY_STS_ENFORCE) {
            pol.id[sizeof(pol.id) - 1] = '\0';
            for (int i = 0; i < pol.nmx; i++)
                pol.mx[i][sizeof(pol.mx[i]) - 1] = '\0';
            io->loaded[io->nloaded] = pol;
            snprintf(io->names[io->nloaded++], DNS_NAME_MAX, "%s", de->d_name);
        }
        fclose(f);
    }
    closedir(dir);
}

/* sts_load_done - on the loop: copies from the volume, unless a newer one is known. */
static void sts_load_done(void *arg)
{
    struct sts_io *io = arg;
    struct relay_sts *s = io->r->sts;

    for (int i = 0; s && i < io->nloaded; i++)
        if (!sts_find(s, io->names[i]))
            sts_put(s, io->names[i], &io->loaded[i]);
    sts_free_io(io);
}

/* sts_io_new - a job for DOMAIN's file (or the directory when DOMAIN is NULL). */
static struct sts_io *sts_io_new(struct relay *r, const char *domain)
{
    struct sts_io *io = calloc(1, sizeof(*io));

    if (!io)
        return NULL;
    io->r = r;
    snprintf(io->dir, sizeof(io->dir), "%s/mta-sts", r->conf->data_volume);
    if (domain) {
        snprintf(io->domain, sizeof(io->domain), "%s", domain);
        snprintf(io->path, sizeof(io->path), "%s/%s", io->dir, domain);
    }
    return io;
}

const struct relay_sts_policy *relay_sts_cached(struct relay *r, const char *domain)
{
    struct relay_sts *s = sts_of(r);
    struct sts_entry *e;
    struct sts_io *io;

    if (!s)
        return NULL;
    if (!s->loaded && r->io && (io = sts_io_new(r, NULL))) {
        s->loaded = 1;
        workers_submit(r->io, sts_load_work, sts_load_done, io);
    }
    e = sts_find(s, domain);
    return e && e->pol.expires > time(NULL) ? &e->pol : NULL;
}

void relay_sts_store(struct relay *r, const char *domain, const struct relay_sts_policy *p)
{
    struct relay_sts *s = sts_of(r);
    struct sts_io *io;

    if (!s)
        return;
    sts_put(s, domain, p);
    if (r->io && sts_domain_ok(domain) && (io = sts_io_new(r, domain))) {
        io->pol = *p;
        workers_submit(r->io, sts_save_work, sts_free_io, io);
    }
}

void relay_sts_free(struct relay *r)
{
    struct sts_entry *e;

    if (!r->sts)
        return;
    while ((e = LIST_FIRST(&r->sts->entries))) {
        LIST_REMOVE(e, link);
        free(e);
    }
    free(r->sts);
    r->sts = NULL;
}

/* --- the HTTPS fetch --- */

struct relay_sts_fetch {
    struct relay *r;
    struct evhttp_connection *evcon;
    SSL *ssl; /* owned by the bufferevent */
    struct event *done_ev;
    char domain[DNS_NAME_MAX];
    char why[600];
    struct evbuffer *body;
    int ok;
    void (*done)(void *arg, struct relay_sts_fetch *f);
    void *arg;
};

/* sts_req_cb - evhttp's answer (REQ NULL: the connection failed): kept, then finished
 * from done_ev, because the connection cannot be freed inside its own callback. */
static void sts_req_cb(struct evhttp_request *req, void *arg)
{
    struct relay_sts_fetch *f = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    long vr = f->ssl ? SSL_get_verify_result(f->ssl) : X509_V_OK;

    if (code == 200) {
        const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        if (ct && strncasecmp(ct, "text/plain", 10) != 0) {
            snprintf(f->why, sizeof(f->why), "policy media type is %s, not text/plain", ct);
        } else {
            evbuffer_add_buffer(f->body, evhttp_request_get_input_buffer(req));
            f->ok = 1;
        }
    } else if (vr != X509_V_OK) {
        snprintf(f->why, sizeof(f->why), "certificate verification failed for mta-sts.%s: %s",
                 f->domain, X509_verify_cert_error_string(vr));
    } else if (code) {
        snprintf(f->why, sizeof(f->why), "policy fetch from mta-sts.%s: HTTP status %d", f->domain,
                 code);
    } else {
        snprintf(f->why, sizeof(f->why), "policy fetch from mta-sts.%s failed (connection or TLS)",
                 f->domain);
    }
    event_active(f->done_ev, EV_TIMEOUT, 0);
}

/* sts_done_cb - the request is over: drop the connection, tell the owner. */
static void sts_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay_sts_fetch *f = arg;

    (void)fd;
    (void)what;
    if (f->evcon) {
        evhttp_connection_free(f->evcon);
        f->evcon = NULL;
        f->ssl = NULL;
    }
    f->done(f->arg, f);
}

struct relay_sts_fetch *relay_sts_fetch_start(struct relay *r, const char *domain, const char *ip,
                                              void (*done)(void *arg, struct relay_sts_fetch *f),
                                              void *arg)
{
    struct relay_sts_fetch *f = calloc(1, sizeof(*f));
    char host[DNS_NAME_MAX + 16];
    struct bufferevent *bev;
    struct evhttp_request *req;
    SSL_CTX *ctx = relay_tls_ctx(r);

    if (!f)
        return NULL;
    f->r = r;
    f->done = done;
    f->arg = arg;
    snprintf(f->domain, sizeof(f->domain), "%s", domain);
    snprintf(host, sizeof(host), "mta-sts.%s", domain);
    f->body = evbuffer_new();
    f->done_ev = event_new(r->base, -1, 0, sts_done_cb, f);
    if (!ctx || !f->body || !f->done_ev || !(f->ssl = SSL_new(ctx)))
        goto fail;
    /* RFC 8461 3.3: a valid chain naming mta-sts.DOMAIN, or no policy */
    SSL_set_verify(f->ssl, SSL_VERIFY_PEER, NULL);
    SSL_set_tlsext_host_name(f->ssl, host);
    if (SSL_set1_host(f->ssl, host) != 1)
        goto fail;
    bev = bufferevent_openssl_socket_new(r->base, -1, f->ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev)
        goto fail;
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    f->evcon = evhttp_connection_base_bufferevent_new(r->base, NULL, bev, ip,
                                                      (unsigned short)r->conf->smtp_mta_sts_port);
    if (!f->evcon) {
        bufferevent_free(bev); /* frees the SSL */
        f->ssl = NULL;
        goto fail;
    }
    evhttp_connection_set_timeout(f->evcon, (int)r->conf->smtp_mta_sts_timeout);
    evhttp_connection_set_max_body_size(f->evcon, STS_BODY_MAX);
    evhttp_connection_set_retries(f->evcon, 0);
    if (!(req = evhttp_request_new(sts_req_cb, f)))
        goto fail;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", host);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (evhttp_make_request(f->evcon, req, EVHTTP_REQ_GET, "/.well-known/mta-sts.txt") != 0)
        goto fail; /* evhttp freed the request */
    return f;
fail:
    if (f->ssl && !f->evcon)
        SSL_free(f->ssl);
    f->ssl = NULL;
    relay_sts_fetch_free(f);
    ERR_clear_error();
    return NULL;
}

int relay_sts_fetch_result(struct relay_sts_fetch *f, const char **body, size_t *len,
                           const char **why)
{
    *why = f->why;
    if (!f->ok)
        return -1;
    *len = evbuffer_get_length(f->body);
    *body = (const char *)evbuffer_pullup(f->body, -1);
    return *body || !*len ? 0 : -1;
}

void relay_sts_fetch_free(struct relay_sts_fetch *f)
{
    if (!f)
        return;
    if (f->evcon)
        evhttp_connection_free(f->evcon); /* a request in flight goes without its callback */
    if (f->done_ev)
        event_free(f->done_ev);
    if (f->body)
        evbuffer_free(f->body);
    free(f);
}
