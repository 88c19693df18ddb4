/*
 * dns.c - c-ares on the libevent loop: the sock-state callback keeps one event
 * per resolver socket, each event calls ares_process_fd, and one evtimer is
 * re-armed from ares_timeout after every step. Queries for MX and A/AAAA with
 * results copied into plain arrays, so callers never touch c-ares structures.
 * Not here: delivery policy (MX order, null MX handling: relay).
 */
#include "mta/dns.h"

#include "mta/conf.h"
#include "dns_int.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct dns_sock {
    ares_socket_t fd;
    struct event *ev;
    LIST_ENTRY(dns_sock) link;
};

struct dns {
    struct event_base *base;
    ares_channel ch;
    struct event *timer;
    LIST_HEAD(, dns_sock) socks;
    int in_submit; /* >0 while inside ares_query/ares_getaddrinfo: results are deferred */
    SLIST_HEAD(, dns_req) deferred; /* results waiting for the next loop turn */
    struct event *deliver_ev;       /* delivers them */
    int trust_ad; /* smtp_dns_support_level = dnssec: the resolver's AD bit is believed */
};

enum dns_kind { DNS_KIND_ADDR, DNS_KIND_MX, DNS_KIND_TLSA, DNS_KIND_TXT };

/* A finished or pending request; results are delivered through dns_deliver_cb. */
struct dns_req {
    struct dns *d;
    enum dns_kind kind;
    char name[DNS_NAME_MAX];
    void (*mx_done)(void *, enum dns_status, const struct dns_mx *, int, const char *);
    void (*addr_done)(void *, enum dns_status, const struct dns_addr *, int, const char *);
    void (*tlsa_done)(void *, enum dns_status, int, const struct dns_tlsa *, int, const char *);
    void (*txt_done)(void *, enum dns_status, int, const struct dns_txt *, int, const char *);
    void *arg;
    enum dns_status st;
    int secure;            /* trusted AD bit on the answer */
    struct dns_tlsa *tlsa; /* DNS_KIND_TLSA: DNS_MAX_RECORDS of them */
    struct dns_txt *txt;   /* DNS_KIND_TXT: likewise */
    const char *errtext;
    struct dns_mx mx[DNS_MAX_RECORDS];
    struct dns_addr addr[DNS_MAX_RECORDS];
    int n;
    SLIST_ENTRY(dns_req) link; /* on dns->deferred */
};

static void dns_rearm(struct dns *d);
static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg);

/* dns_sock_cb - a resolver socket is readable/writable: let c-ares work on it. */
static void dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;

    ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    dns_rearm(d);
}

/* dns_timer_cb - a c-ares timeout is due: retransmit or fail queries. */
static void dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;

    (void)fd;
    (void)what;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_rearm(d);
}

/* dns_rearm - arm the timer from ares_timeout (only while queries are pending). */
static void dns_rearm(struct dns *d)
{
    struct timeval tv, *tvp;

    if (!d->timer)
        return;
    tvp = ares_timeout(d->ch, NULL, &tv);
    if (tvp)
        evtimer_add(d->timer, tvp);
    else
        evtimer_del(d->timer);
}

/* dns_sock_state_cb - c-ares opens, closes or changes interest in a socket. */
static void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_sock *s;

    LIST_FOREACH(s, &d->socks, link)
    if (s->fd == fd)
        break;
    if (!readable && !writable) {
        if (s) {
            LIST_REMOVE(s, link);
            event_free(s->ev);
            free(s);
        }
        return;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return; /* the query then times out: degraded, not broken */
        s->fd = fd;
        LIST_INSERT_HEAD(&d->socks, s, link);
    } else {
        event_free(s->ev);
    }
    s->ev =
        event_new(d->base, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST,
                  dns_sock_cb, d);
    if (s->ev)
        event_add(s->ev, NULL);
}

struct dns *dns_new(struct event_base *base, const struct conf *conf, char **err)
{
    struct ares_options opt;
    struct dns *d;
    int rc, mask;

    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        if (err && asprintf(err, "c-ares: %s", ares_strerror(rc)) < 0)
            *err = NULL;
        return NULL;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        if (err)
            *err = strdup("out of memory");
        return NULL;
    }
    d->base = base;
    d->trust_ad =
        conf && conf->smtp_dns_support_level && !strcmp(conf->smtp_dns_support_level, "dnssec");
    memset(&opt, 0, sizeof(opt));
    opt.timeout = 2000; /* ms per try; two tries per server */
    opt.tries = 2;
    opt.lookups = (char *)"b"; /* DNS only: /etc/hosts must not answer for mail domains */
    opt.flags = ARES_FLAG_NOSEARCH;
    opt.sock_state_cb = dns_sock_state_cb;
    opt.sock_state_cb_data = d;
    mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS | ARES_OPT_FLAGS |
           ARES_OPT_SOCK_STATE_CB;
    rc = ares_init_options(&d->ch, &opt, mask);
    if (rc != ARES_SUCCESS) {
        if (err && asprintf(err, "c-ares: %s", ares_strerror(rc)) < 0)
            *err = NULL;
        free(d);
        return NULL;
    }
    if (conf && conf->dns_servers && conf->dns_servers[0]) {
        /* "ip[:port]" separated by commas and/or spaces; c-ares wants commas only */
        char csv[1024];
        size_t i, j = 0;
        for (i = 0; conf->dns_servers[i] && j + 1 < sizeof(csv); i++)
            csv[j++] = conf->dns_servers[i] == ' ' || conf->dns_servers[i] == '\t'
                           ? ','
                           : conf->dns_servers[i];
        csv[j] = '\0';
        rc = ares_set_servers_ports_csv(d->ch, csv);
        if (rc != ARES_SUCCESS) {
            if (err &&
                asprintf(err, "dns_servers = %s: %s", conf->dns_servers, ares_strerror(rc)) < 0)
                *err = NULL;
            ares_destroy(d->ch);
            free(d);
            return NULL;
        }
    }
    d->timer = evtimer_new(base, dns_timer_cb, d);
    d->deliver_ev = event_new(base, -1, 0, dns_deliver_cb, d);
    if (!d->timer) {
        if (err)
            *err = strdup("out of memory");
        if (d->deliver_ev)
            event_free(d->deliver_ev);
        ares_destroy(d->ch);
        free(d);
        return NULL;
    }
    return d;
}

static void dns_deliver(struct dns_req *r);

/* dns_deferred_cancel - deferred results not delivered yet complete as DNS_CANCELLED now,
 * so no caller is called back later (its object may be gone) and nothing leaks. */
static void dns_deferred_cancel(struct dns *d)
{
    struct dns_req *r;

    while ((r = SLIST_FIRST(&d->deferred))) {
        SLIST_REMOVE_HEAD(&d->deferred, link);
        r->st = DNS_CANCELLED;
        r->errtext = "cancelled";
        r->n = 0;
        dns_deliver(r);
    }
}

void dns_cancel_all(struct dns *d)
{
    if (!d)
        return;
    ares_cancel(d->ch);
    dns_deferred_cancel(d);
}

void dns_free(struct dns *d)
{
    struct dns_sock *s;

    if (!d)
        return;
    event_free(d->timer);
    d->timer = NULL;
    ares_destroy(d->ch); /* runs every pending callback with ARES_EDESTRUCTION */
    dns_deferred_cancel(d);
    if (d->deliver_ev)
        event_free(d->deliver_ev);
    while ((s = LIST_FIRST(&d->socks))) {
        LIST_REMOVE(s, link);
        event_free(s->ev);
        free(s);
    }
    free(d);
    ares_library_cleanup();
}

/* dns_deliver - hand a finished request to its caller and free it. */
static void dns_deliver(struct dns_req *r)
{
    switch (r->kind) {
    case DNS_KIND_MX:
        r->mx_done(r->arg, r->st, r->mx, r->n, r->errtext);
        break;
    case DNS_KIND_ADDR:
        r->addr_done(r->arg, r->st, r->addr, r->n, r->errtext);
        break;
    case DNS_KIND_TLSA:
        r->tlsa_done(r->arg, r->st, r->secure, r->tlsa, r->n, r->errtext);
        break;
    case DNS_KIND_TXT:
        r->txt_done(r->arg, r->st, r->secure, r->txt, r->n, r->errtext);
        break;
    }
    free(r->tlsa);
    free(r->txt);
    free(r);
}

/* dns_deliver_cb - deferred delivery of results that c-ares produced synchronously. */
static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;
    struct dns_req *r;

    (void)fd;
    (void)what;
    while ((r = SLIST_FIRST(&d->deferred))) {
        SLIST_REMOVE_HEAD(&d->deferred, link);
        dns_deliver(r);
    }
}

/* dns_finish - deliver now, or on the next loop turn when still inside the submit call
 * (kept on a list the resolver owns, so dns_cancel_all and dns_free can end it). */
static void dns_finish(struct dns_req *r)
{
    struct dns *d = r->d;

    if (d->in_submit && r->st != DNS_CANCELLED && d->deliver_ev) {
        SLIST_INSERT_HEAD(&d->deferred, r, link);
        event_active(d->deliver_ev, EV_TIMEOUT, 0);
        return;
    }
    dns_deliver(r);
}

/* dns_map_status - c-ares status to ours, with Postfix's wording of the reason. */
static enum dns_status dns_map_status(int status, const char **errtext)
{
    switch (status) {
    case ARES_SUCCESS:
        *errtext = "";
        return DNS_OK;
    case ARES_ENODATA:
        *errtext = "No address associated with hostname";
        return DNS_NODATA;
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
        *errtext = "Host not found";
        return DNS_NXDOMAIN;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        *errtext = "cancelled";
        return DNS_CANCELLED;
    default:
        *errtext = "Host not found, try again";
        return DNS_TEMPFAIL;
    }
}

enum dns_status dns_mx_parse(const unsigned char *abuf, int alen, struct dns_mx *out, int *n,
                             const char **errtext)
{
    struct ares_mx_reply *mx = NULL, *p;
    int rc = ares_parse_mx_reply(abuf, alen, &mx);

    *n = 0;
    if (rc == ARES_ENODATA) {
        *errtext = "No address associated with hostname";
        return DNS_NODATA;
    }
    if (rc != ARES_SUCCESS) {
        *errtext = "malformed or unexpected name server reply";
        return DNS_TEMPFAIL;
    }
    for (p = mx; p && *n < DNS_MAX_RECORDS; p = p->next) {
        snprintf(out[*n].host, sizeof(out[*n].host), "%s", p->host ? p->host : "");
        /* "." and "" both denote the root: the null MX of RFC 7505 */
        if (strcmp(out[*n].host, ".") == 0)
            out[*n].host[0] = '\0';
        out[*n].pref = p->priority;
        (*n)++;
    }
    ares_free_data(mx);
    if (*n == 0) {
        *errtext = "No address associated with hostname";
        return DNS_NODATA;
    }
    *errtext = "";
    return DNS_OK;
}

/* dns_raw_status - the status of a raw answer from ares_send (which, unlike ares_query, leaves
 * the RCODE to us), and whether its AD bit counts. */
static enum dns_status dns_raw_status(struct dns_req *r, int status, const unsigned char *abuf,
                                      int alen)
{
    int rcode;

    if (status != ARES_SUCCESS)
        return dns_map_status(status, &r->errtext);
    if (!abuf || alen < 12)
        return dns_map_status(ARES_EBADRESP, &r->errtext);
    rcode = abuf[3] & 0x0f;
    if (rcode == 3)
        return dns_map_status(ARES_ENOTFOUND, &r->errtext);
    if (rcode != 0)
        return dns_map_status(ARES_ESERVFAIL, &r->errtext);
    r->secure = r->d->trust_ad && (abuf[3] & 0x20);
    if ((abuf[6] << 8 | abuf[7]) == 0)
        return dns_map_status(ARES_ENODATA, &r->errtext);
    return dns_map_status(ARES_SUCCESS, &r->errtext);
}

/* dns_mx_cb - MX answer: copy the records (a malformed answer is a temporary failure). */
static void dns_mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_req *r = arg;
    int i;

    (void)timeouts;
    r->st = dns_raw_status(r, status, abuf, alen);
    if (r->st == DNS_OK)
        r->st = dns_mx_parse(abuf, alen, r->mx, &r->n, &r->errtext);
    for (i = 0; i < r->n; i++)
        r->mx[i].secure = r->secure;
    dns_finish(r);
}

/* dns_rr_cb - TLSA or TXT answer: the records of the type asked for (none: NODATA). */
static void dns_rr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_req *r = arg;

    (void)timeouts;
    r->st = dns_raw_status(r, status, abuf, alen);
    if (r->st == DNS_OK) {
        r->n = r->kind == DNS_KIND_TLSA ? dns_tlsa_parse(abuf, alen, r->tlsa, DNS_MAX_RECORDS)
                                        : dns_txt_parse(abuf, alen, r->txt, DNS_MAX_RECORDS);
        if (r->n < 0) {
            r->n = 0;
            r->st = DNS_TEMPFAIL;
            r->errtext = "malformed or unexpected name server reply";
        } else if (r->n == 0) {
            r->st = DNS_NODATA;
            r->errtext = "No address associated with hostname";
        }
    }
    dns_finish(r);
}

/* dns_send - ask for TYPE records of R's name with AD (RFC 6840 5.7) and EDNS DO set, so a
 * validating resolver says whether the answer is authentic; CB gets the raw answer. */
static void dns_send(struct dns *d, struct dns_req *r, int type, ares_callback cb)
{
    unsigned char *q = NULL;
    int qlen = 0;

    d->in_submit++;
    if (ares_create_query(r->name, ns_c_in, type, 0, 1, &q, &qlen, 1232) != ARES_SUCCESS ||
        qlen < 12 + 11) {
        if (q)
            ares_free_string(q);
        cb(r, ARES_ENOMEM, 0, NULL, 0);
    } else {
        q[3] |= 0x20;        /* AD */
        q[qlen - 4] |= 0x80; /* DO, in the flags of the OPT record at the end */
        ares_send(d->ch, q, qlen, cb, r);
        ares_free_string(q);
    }
    d->in_submit--;
    dns_rearm(d);
}

/* dns_addr_cb - A/AAAA answer from ares_getaddrinfo. */
static void dns_addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct dns_req *r = arg;
    struct ares_addrinfo_node *nd;

    (void)timeouts;
    r->st = dns_map_status(status, &r->errtext);
    if (r->st == DNS_OK && res) {
        for (nd = res->nodes; nd && r->n < DNS_MAX_RECORDS; nd = nd->ai_next) {
            if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
                nd->ai_addrlen > sizeof(r->addr[0].ss))
                continue;
            memcpy(&r->addr[r->n].ss, nd->ai_addr, nd->ai_addrlen);
            r->addr[r->n].len = nd->ai_addrlen;
            r->n++;
        }
        if (r->n == 0) {
            r->st = DNS_NODATA;
            r->errtext = "No address associated with hostname";
        }
    }
    if (res)
        ares_freeaddrinfo(res);
    dns_finish(r);
}

/* dns_req_new - a request, or NULL (then DONE already ran with DNS_TEMPFAIL on the next turn). */
static struct dns_req *dns_req_new(struct dns *d, const char *name)
{
    struct dns_req *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->d = d;
    snprintf(r->name, sizeof(r->name), "%s", name);
    return r;
}

void dns_query_mx(struct dns *d, const char *name,
                  void (*done)(void *arg, enum dns_status st, const struct dns_mx *mx, int n,
                               const char *errtext),
                  void *arg)
{
    struct dns_req *r = dns_req_new(d, name);

    if (!r) {
        done(arg, DNS_TEMPFAIL, NULL, 0, "out of memory");
        return;
    }
    r->kind = DNS_KIND_MX;
    r->mx_done = done;
    r->arg = arg;
    dns_send(d, r, ns_t_mx, dns_mx_cb);
}

void dns_query_tlsa(struct dns *d, const char *name,
                    void (*done)(void *arg, enum dns_status st, int secure,
                                 const struct dns_tlsa *t, int n, const char *errtext),
                    void *arg)
{
    struct dns_req *r = dns_req_new(d, name);

    if (r && !(r->tlsa = calloc(DNS_MAX_RECORDS, sizeof(*r->tlsa)))) {
        free(r);
        r = NULL;
    }
    if (!r) {
        done(arg, DNS_TEMPFAIL, 0, NULL, 0, "out of memory");
        return;
    }
    r->kind = DNS_KIND_TLSA;
    r->tlsa_done = done;
    r->arg = arg;
    dns_send(d, r, 52, dns_rr_cb);
}

void dns_query_txt(struct dns *d, const char *name,
                   void (*done)(void *arg, enum dns_status st, int secure, const struct dns_txt *t,
                                int n, const char *errtext),
                   void *arg)
{
    struct dns_req *r = dns_req_new(d, name);

    if (r && !(r->txt = calloc(DNS_MAX_RECORDS, sizeof(*r->txt)))) {
        free(r);
        r = NULL;
    }
    if (!r) {
        done(arg, DNS_TEMPFAIL, 0, NULL, 0, "out of memory");
        return;
    }
    r->kind = DNS_KIND_TXT;
    r->txt_done = done;
    r->arg = arg;
    dns_send(d, r, ns_t_txt, dns_rr_cb);
}

void dns_query_addr(struct dns *d, const char *name,
                    void (*done)(void *arg, enum dns_status st, const struct dns_addr *a, int n,
                                 const char *errtext),
                    void *arg)
{
    struct ares_addrinfo_hints hints;
    struct dns_req *r = dns_req_new(d, name);

    if (!r) {
        done(arg, DNS_TEMPFAIL, NULL, 0, "out of memory");
        return;
    }
    r->kind = DNS_KIND_ADDR;
    r->addr_done = done;
    r->arg = arg;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT; /* keep the server's order; no connect() probing */
    d->in_submit++;
    ares_getaddrinfo(d->ch, r->name, NULL, &hints, dns_addr_cb, r);
    d->in_submit--;
    dns_rearm(d);
}

/* dns_mx_cmp - ascending preference; ties are broken by the shuffle key in host[] order. */
static int dns_mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;

    return (x->pref > y->pref) - (x->pref < y->pref);
}

void dns_mx_sort(struct dns_mx *mx, int n, unsigned (*rnd)(void))
{
    int i, j, k;

    if (n <= 1)
        return;
    /* shuffle first (Fisher-Yates), then a stable insertion sort by preference:
     * records of equal preference keep their random relative order */
    for (i = n - 1; i > 0; i--) {
        struct dns_mx t;
        j = (int)((rnd ? rnd() : (unsigned)random()) % (unsigned)(i + 1));
        t = mx[i];
        mx[i] = mx[j];
        mx[j] = t;
    }
    for (i = 1; i < n; i++) {
        struct dns_mx t = mx[i];
        for (k = i - 1; k >= 0 && dns_mx_cmp(&mx[k], &t) > 0; k--)
            mx[k + 1] = mx[k];
        mx[k + 1] = t;
    }
}

const char *dns_status_name(enum dns_status st)
{
    switch (st) {
    case DNS_OK:
        return "OK";
    case DNS_NODATA:
        return "NODATA";
    case DNS_NXDOMAIN:
        return "NXDOMAIN";
    case DNS_TEMPFAIL:
        return "TEMPFAIL";
    case DNS_CANCELLED:
        return "CANCELLED";
    }
    return "?";
}
