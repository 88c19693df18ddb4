/*
 * relay_client.c - one outbound SMTP session, modelled on OpenSMTPD's
 * mta_session.c: the route's addresses tried in order (relay_route.c), connect
 * (TCP_NODELAY, net_source_address), greeting, EHLO (HELO fallback),
 * opportunistic STARTTLS, then transactions (relay_xact.c) one job after the
 * other to the same destination, RSET between them, QUIT when idle. Every reply
 * is dispatched on the session's state; every stage has its Postfix
 * smtp_*_timeout. A failed session moves on to the next address or MX host.
 * Not here: the transaction (relay_xact.c), logging and notifications (relay.c,
 * relay_notify.c), queue state (sched).
 */
#include "relay_int.h"

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void relay_conn_route(struct relay_conn *c);
static void relay_conn_try_next(struct relay_conn *c);
static void relay_conn_xact_end(struct relay_conn *c);
static void relay_conn_fail(struct relay_conn *c, const char *text, const char *dsn, int perm);
static void relay_conn_route_cb(void *arg, enum relay_route_event ev, enum sched_class cls,
                                const char *dsn, const char *text);

struct relay_conn *relay_conn_next(const struct relay_conn *c)
{
    return TAILQ_NEXT(c, entry);
}

int relay_conn_is_idle(const struct relay_conn *c)
{
    return c->state == RS_IDLE;
}

struct relay_job *relay_conn_job(const struct relay_conn *c)
{
    return c->rj;
}

int relay_conn_awaits_dot(const struct relay_conn *c)
{
    return c->state == RS_DOT && c->rj && c->bev;
}

/* relay_conn_find - the connection with ID, if it still exists. */
static struct relay_conn *relay_conn_find(struct relay *r, unsigned long long id)
{
    struct relay_conn *c;

    TAILQ_FOREACH(c, &r->conns, entry)
    {
        if (c->id == id)
            return c;
    }
    return NULL;
}

/* relay_dest_put - C's connection to D is gone: free D when it has none left, so the
 * list holds only destinations with connections (at most default_process_limit). */
static void relay_dest_put(struct relay *r, struct relay_dest *d)
{
    (void)r;
    if (--d->nconn > 0)
        return;
    LIST_REMOVE(d, entry);
    free(d->name);
    free(d);
}

static struct relay_dest *relay_dest_get(struct relay *r, const char *name)
{
    struct relay_dest *d;

    LIST_FOREACH(d, &r->dests, entry)
    {
        if (strcmp(d->name, name) == 0)
            return d;
    }
    d = calloc(1, sizeof(*d));
    if (!d || !(d->name = strdup(name))) {
        free(d);
        return NULL;
    }
    LIST_INSERT_HEAD(&r->dests, d, entry);
    return d;
}

/* relay_conn_close - drop the socket (the connection object lives on). */
static void relay_conn_close(struct relay_conn *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->tls_on = 0;
    c->ext = 0;
    c->size_limit = 0;
    memset(&c->reply, 0, sizeof(c->reply));
}

/* relay_conn_unresolved - job recipients without a result yet. */
static int relay_conn_unresolved(const struct relay_conn *c)
{
    int i, n = 0;

    if (!c->rj)
        return 0;
    for (i = 0; i < c->rj->job->nrcpt; i++)
        if (c->rj->job->result[i] == SCHED_RESULT_NONE)
            n++;
    return n;
}

/* relay_conn_finish_job - the job is over on this connection: results to relay.c. */
static void relay_conn_finish_job(struct relay_conn *c)
{
    struct relay_job *rj = c->rj;

    relay_xact_clear(c);
    if (!rj)
        return;
    c->rj = NULL;
    c->r->job_ended(c->r, rj);
}

void relay_conn_free(struct relay_conn *c)
{
    struct relay *r = c->r;

    relay_conn_close(c);
    if (c->rj)
        relay_conn_finish_job(c); /* shutdown: unresolved recipients stay queued */
    relay_xact_clear(c);
    relay_route_free(c->route);
    relay_tls_conn_free(c);
    if (c->idle_ev)
        event_free(c->idle_ev);
    TAILQ_REMOVE(&r->conns, c, entry);
    if (c->dest)
        relay_dest_put(r, c->dest);
    r->nconn--;
    free(c);
    r->conn_gone(r); /* capacity is free again; relay_stop may be waiting for it */
}

/* relay_conn_give_up - every unresolved recipient gets the report CLS, the job ends, the connection
 * goes. */
static void relay_conn_give_up(struct relay_conn *c, enum sched_class cls, const char *dsn,
                               const char *text)
{
    if (c->rj && cls == SCHED_CLASS_TEMP) /* the destination failed: it backs off (sched) */
        sched_job_site_fail(c->r->sched, c->rj->job, dsn, text);
    relay_all_results(c, cls, dsn, text);
    relay_conn_finish_job(c);
    relay_conn_free(c);
}

/* --- next hop (relay_route.c) --- */

static void relay_conn_connect(struct relay_conn *c);

/* relay_conn_route - find the hosts for the destination, then connect (relay_conn_route_cb). */
static void relay_conn_route(struct relay_conn *c)
{
    c->relay_field[0] = '\0';
    c->state = RS_DNS;
    relay_route_start(c->route);
}

/* relay_conn_route_cb - the route's answer: an address to connect to, a host without
 * addresses (the next one is tried), or no route at all. */
static void relay_conn_route_cb(void *arg, enum relay_route_event ev, enum sched_class cls,
                                const char *dsn, const char *text)
{
    struct relay_conn *c = arg;

    switch (ev) {
    case RELAY_ROUTE_CONNECT:
        relay_tls_prepare(c, relay_conn_connect); /* the host's TLS level, then connect */
        return;
    case RELAY_ROUTE_HOST_FAILED:
        snprintf(c->last_err, sizeof(c->last_err), "%s", text);
        snprintf(c->last_dsn, sizeof(c->last_dsn), "%s", dsn);
        c->last_perm = cls == SCHED_CLASS_PERM;
        relay_conn_try_next(c);
        return;
    case RELAY_ROUTE_FAILED:
        relay_conn_give_up(c, cls, dsn, text);
        return;
    }
}

/* relay_conn_try_next - this address failed: next address, next MX host, or give up. */
static void relay_conn_try_next(struct relay_conn *c)
{
    relay_conn_close(c);
    if (!relay_conn_unresolved(c)) {
        relay_conn_finish_job(c);
        relay_conn_free(c);
        return;
    }
    c->state = RS_DNS;
    if (relay_route_next(c->route))
        return; /* relay_conn_route_cb goes on */
    /* every host failed: the last reason decides (a 5xx session refusal bounces) */
    if (!c->last_err[0])
        snprintf(c->last_err, sizeof(c->last_err), "delivery temporarily suspended");
    relay_conn_give_up(c, c->last_perm ? SCHED_CLASS_PERM : SCHED_CLASS_TEMP,
                       c->last_dsn[0] ? c->last_dsn : "4.4.1", c->last_err);
}

/* relay_conn_fail - the session with the current host failed (TEXT is the reason). */
static void relay_conn_fail(struct relay_conn *c, const char *text, const char *dsn, int perm)
{
    if (!c->rj || c->state == RS_IDLE || c->state == RS_QUIT) {
        relay_conn_close(c);
        relay_conn_free(c);
        return;
    }
    if (c->reused && !c->retried && !c->nreplied) {
        /* a cached connection the server closed meanwhile: start afresh once */
        c->retried = 1;
        c->reused = 0;
        relay_conn_close(c);
        relay_xact_clear(c);
        relay_conn_route(c);
        return;
    }
    snprintf(c->last_err, sizeof(c->last_err), "%s", text);
    snprintf(c->last_dsn, sizeof(c->last_dsn), "%s", dsn);
    c->last_perm = perm;
    if (c->state == RS_CONNECT)
        c->relay_field[0] = '\0'; /* no session: Postfix logs relay=none */
    relay_xact_clear(c);
    relay_conn_try_next(c);
}

/* --- the SMTP conversation --- */

static void relay_ehlo_send(struct relay_conn *c, const char *verb)
{
    char line[400];

    snprintf(line, sizeof(line), "%s %s", verb, c->r->myhostname);
    relay_conn_send(c, line);
    relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
}

/* relay_same_dest_cb - sched_job_take filter: only jobs for this connection's destination. */
static int relay_same_dest_cb(void *arg, const char *dest)
{
    return strcmp(((struct relay_conn *)arg)->destname, dest) == 0;
}

static void relay_idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state != RS_IDLE)
        return;
    c->state = RS_QUIT;
    relay_conn_send(c, "QUIT");
    relay_conn_timeout(c, c->r->conf->smtp_quit_timeout, c->r->conf->smtp_quit_timeout);
}

/* relay_conn_next_job - after a transaction: the next job to this destination, or idle. */
static void relay_conn_next_job(struct relay_conn *c)
{
    const struct conf *conf = c->r->conf;
    /* Postfix's smtp_connection_cache_on_demand and reuse limits: past them, no next job */
    int reuse =
        conf->smtp_connection_cache_on_demand &&
        clock_now_us() - c->connected_us < conf->smtp_connection_reuse_time_limit * 1000000LL &&
        (conf->smtp_connection_reuse_count_limit == 0 ||
         c->reuses < conf->smtp_connection_reuse_count_limit);
    struct sched_job *job =
        c->r->stopping || !reuse ? NULL : sched_job_take(c->r->sched, relay_same_dest_cb, c);
    struct timeval tv = {conf->smtp_connection_cache_time_limit, 0};

    if (!job && c->r->stopping) {
        relay_conn_free(c); /* relay_stop: this was the reply it waited for */
        return;
    }
    if (!job) {
        c->state = RS_IDLE;
        relay_conn_timeout(c, 3600, 3600);
        if (!c->idle_ev)
            c->idle_ev = evtimer_new(c->r->base, relay_idle_cb, c);
        if (c->idle_ev)
            evtimer_add(c->idle_ev, &tv);
        if (!c->idle_ev || !reuse)
            relay_idle_cb(-1, 0, c); /* not for reuse: QUIT now */
        return;
    }
    if (c->idle_ev)
        evtimer_del(c->idle_ev);
    c->rj = relay_job_new(c, job, 1);
    if (!c->rj) {
        job->result[0] = SCHED_RESULT_NONE;
        sched_job_done(c->r->sched, job);
        relay_idle_cb(-1, 0, c);
        return;
    }
    c->reused = 1;
    c->retried = 0;
    c->reuses++;
    if (c->need_rset) {
        c->state = RS_RSET;
        relay_conn_send(c, "RSET");
        relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
        return;
    }
    relay_conn_ready(c);
}

int relay_conn_idle_take(struct relay_conn *c)
{
    if (c->state != RS_IDLE || c->r->stopping)
        return 0;
    relay_conn_next_job(c);
    return c->state != RS_IDLE && c->state != RS_QUIT;
}

/* relay_conn_xact_end - the transaction is over: results to the scheduler, next job. */
static void relay_conn_xact_end(struct relay_conn *c)
{
    relay_conn_finish_job(c);
    if (!c->bev) {
        relay_conn_free(c);
        return;
    }
    relay_conn_next_job(c);
}

/* relay_conn_tls_start - STARTTLS accepted: wrap the connection. */
static void relay_conn_tls_start(struct relay_conn *c);
static void relay_conn_plain_ready(struct relay_conn *c);

/* relay_on_greeting - the server's 220 (anything else refuses this host). */
static void relay_on_greeting(struct relay_conn *c, const struct relay_reply *rp)
{
    char text[RELAY_REPLY_MAX + 200], dsn[16];

    if (rp->code / 100 != 2) {
        snprintf(text, sizeof(text), "host %s[%s] refused to talk to me: %s",
                 relay_route_host(c->route), c->ip, rp->text);
        relay_reply_dsn(rp, dsn, sizeof(dsn));
        relay_conn_fail(c, text, dsn, rp->code / 100 == 5);
        return;
    }
    c->state = RS_EHLO;
    relay_ehlo_send(c, "EHLO");
}

/* relay_on_ehlo - EHLO answered: STARTTLS when offered (and TLS is on), else the session is up;
 * a refusal falls back to HELO. */
static void relay_on_ehlo(struct relay_conn *c, const struct relay_reply *rp)
{
    if (rp->code / 100 != 2) {
        c->ext = 0;
        c->state = RS_HELO;
        relay_ehlo_send(c, "HELO");
        return;
    }
    if ((c->ext & RELAY_EXT_STARTTLS) && !c->tls_on && c->tls_level != RELAY_TLS_NONE &&
        relay_tls_ctx(c->r)) {
        c->state = RS_STARTTLS;
        relay_conn_send(c, "STARTTLS");
        relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
        return;
    }
    relay_conn_plain_ready(c);
}

/* relay_conn_plain_ready - the session is up without TLS: fine unless the level requires it
 * (Postfix's reasons: not offered, or our TLS engine cannot start). */
static void relay_conn_plain_ready(struct relay_conn *c)
{
    char text[600];

    if (c->tls_on || !relay_tls_required(c)) {
        relay_conn_ready(c);
        return;
    }
    if (!(c->ext & RELAY_EXT_STARTTLS)) {
        snprintf(text, sizeof(text), "TLS is required, but was not offered by host %s[%s]",
                 relay_route_host(c->route), c->ip);
        relay_conn_fail(c, text, "4.7.4", 0);
    } else {
        relay_conn_fail(c, "TLS is required, but our TLS engine is unavailable", "4.7.5", 0);
    }
}

static void relay_on_helo(struct relay_conn *c, const struct relay_reply *rp)
{
    char text[RELAY_REPLY_MAX + 200], dsn[16];

    if (rp->code / 100 != 2) {
        relay_conn_said(c, rp, "HELO command", text, sizeof(text));
        relay_reply_dsn(rp, dsn, sizeof(dsn));
        relay_conn_fail(c, text, dsn, rp->code / 100 == 5);
        return;
    }
    relay_conn_plain_ready(c);
}

static void relay_on_starttls(struct relay_conn *c, const struct relay_reply *rp)
{
    char text[RELAY_REPLY_MAX + 200], dsn[16];

    if (rp->code != 220 && relay_tls_required(c)) {
        snprintf(text, sizeof(text), "TLS is required, but host %s[%s] refused to start TLS: %s",
                 relay_route_host(c->route), c->ip, rp->text);
        relay_reply_dsn(rp, dsn, sizeof(dsn));
        relay_conn_fail(c, text, dsn, rp->code / 100 == 5);
        return;
    }
    if (rp->code != 220) {
        relay_conn_ready(c); /* "may": go on in plaintext */
        return;
    }
    relay_conn_tls_start(c);
}

/* relay_on_body - a reply before the final dot: the server gave up on the message (a 2xx here
 * is a broken server); the connection cannot go on in the middle of the text. */
static void relay_on_body(struct relay_conn *c, const struct relay_reply *rp)
{
    char text[RELAY_REPLY_MAX + 200];

    if (rp->code / 100 == 2) {
        snprintf(text, sizeof(text), "host %s[%s] replied before the end of data: %s",
                 relay_route_host(c->route), c->ip, rp->text);
        relay_conn_fail(c, text, "4.4.2", 0);
        return;
    }
    relay_conn_accepted_results(c, rp, "end of DATA command");
    relay_conn_finish_job(c);
    relay_conn_free(c);
}

static void relay_on_dot(struct relay_conn *c, const struct relay_reply *rp)
{
    relay_conn_accepted_results(c, rp, "end of DATA command");
    c->need_rset = 0;
    relay_conn_xact_end(c);
}

static void relay_on_dot_discard(struct relay_conn *c, const struct relay_reply *rp)
{
    (void)rp;
    c->need_rset = 0;
    relay_conn_xact_end(c);
}

static void relay_on_rset(struct relay_conn *c, const struct relay_reply *rp)
{
    if (rp->code / 100 != 2) {
        relay_conn_close(c);
        c->reused = 1;
        c->retried = 0;
        relay_conn_fail(c, "RSET failed", "4.4.2", 0);
        return;
    }
    c->need_rset = 0;
    relay_conn_ready(c);
}

/* relay_on_close - QUIT answered, or an unsolicited reply (e.g. 421 timeout) while idle. */
static void relay_on_close(struct relay_conn *c, const struct relay_reply *rp)
{
    (void)rp;
    relay_conn_free(c);
}

/*
 * The session's states in one table: what the session was doing (Postfix's
 * "lost connection with H[ip] while DOING") and the handler of a complete reply
 * (NULL: no reply is expected, it is ignored). RS_XACT names its stage from the
 * command whose reply is next.
 */
static const struct relay_state_info {
    const char *doing;
    void (*on_reply)(struct relay_conn *c, const struct relay_reply *rp);
} relay_states[] = {
    [RS_DNS] = {"performing the SMTP conversation", NULL},
    [RS_CONNECT] = {"receiving the initial server greeting", NULL},
    [RS_GREETING] = {"receiving the initial server greeting", relay_on_greeting},
    [RS_EHLO] = {"sending EHLO", relay_on_ehlo},
    [RS_HELO] = {"sending HELO", relay_on_helo},
    [RS_STARTTLS] = {"sending STARTTLS", relay_on_starttls},
    [RS_TLS] = {"sending STARTTLS", NULL},
    [RS_READY] = {"performing the SMTP conversation", NULL},
    [RS_XACT] = {"sending RCPT TO", relay_conn_xact_reply},
    [RS_BODY] = {"sending message body", relay_on_body},
    [RS_DOT] = {"sending end of data -- message may be sent more than once", relay_on_dot},
    [RS_DOT_DISCARD] = {"sending end of data -- message may be sent more than once",
                        relay_on_dot_discard},
    [RS_RSET] = {"sending RSET", relay_on_rset},
    [RS_IDLE] = {"performing the SMTP conversation", relay_on_close},
    [RS_QUIT] = {"performing the SMTP conversation", relay_on_close},
};

/* relay_stage_name - what the session was doing, for a failure's text. */
static const char *relay_stage_name(const struct relay_conn *c)
{
    if (c->state == RS_XACT && c->nreplied < c->ncmd && c->exp[c->nreplied] == EXP_MAIL)
        return "sending MAIL FROM";
    if (c->state == RS_XACT && c->nreplied < c->ncmd && c->exp[c->nreplied] == EXP_DATA)
        return "sending DATA command";
    return relay_states[c->state].doing;
}

/* relay_conn_reply - a complete reply arrived: the state's handler advances the session. */
static void relay_conn_reply(struct relay_conn *c)
{
    struct relay_reply rp = c->reply;

    memset(&c->reply, 0, sizeof(c->reply));
    if (relay_states[c->state].on_reply)
        relay_states[c->state].on_reply(c, &rp);
}

static void relay_conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct relay_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned long long id = c->id;
    struct relay *r = c->r;
    char *line;
    size_t len;

    while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
        int first = c->reply.len == 0, rc;
        if (c->state == RS_EHLO && !first && len > 4)
            c->ext |= relay_ehlo_line(line + 4, len - 4, &c->size_limit);
        rc = relay_reply_feed(&c->reply, line, len);
        if (rc < 0) {
            char text[300];
            snprintf(text, sizeof(text), "host %s[%s] sent a malformed reply",
                     relay_route_host(c->route), c->ip);
            free(line);
            relay_conn_fail(c, text, "4.4.2", 0);
            return;
        }
        free(line);
        if (rc == 1) {
            relay_conn_reply(c);
            /* the state machine may have freed or re-connected this connection */
            if (relay_conn_find(r, id) != c || c->bev != bev)
                return;
        }
    }
    if (evbuffer_get_length(in) > 65536) {
        relay_conn_fail(c, "reply line too long", "4.4.2", 0);
    }
}

static void relay_conn_tls_log(struct relay_conn *c, SSL *ssl, int verified)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    const char *trust = !peer                                     ? "Anonymous"
                        : verified                                ? "Verified"
                        : SSL_get_verify_result(ssl) == X509_V_OK ? "Trusted"
                                                                  : "Untrusted";
    char how[200];

    tls_describe(ssl, how, sizeof(how));
    log_mail_pid("smtp", c->log_pid, "%s TLS connection established to %s: %s", trust,
                 c->relay_field, how);
    if (peer)
        X509_free(peer);
}

static void relay_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct relay_conn *c = arg;
    char text[600];
    int err;

    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == RS_CONNECT) {
            c->connected_us = clock_now_us();
            c->state = RS_GREETING;
            relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
        } else if (c->state == RS_TLS) {
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            int verified;
            if (relay_tls_check(c, ssl, &verified, text, sizeof(text)) < 0) {
                relay_conn_tls_log(c, ssl, 0);
                relay_conn_fail(c, text, "4.7.5", 0);
                return;
            }
            c->tls_on = 1;
            relay_conn_tls_log(c, ssl, verified);
            c->ext = 0;
            c->state = RS_EHLO;
            relay_ehlo_send(c, "EHLO");
        }
        return;
    }
    if (c->state == RS_CONNECT) {
        err = evutil_socket_geterror(bufferevent_getfd(bev));
        snprintf(text, sizeof(text), "connect to %s[%s]:%d: %s", relay_route_host(c->route), c->ip,
                 relay_route_port(c->route),
                 (what & BEV_EVENT_TIMEOUT) ? "Connection timed out"
                                            : strerror(err ? err : ECONNREFUSED));
        relay_conn_fail(c, text, "4.4.1", 0);
        return;
    }
    if (c->state == RS_IDLE || c->state == RS_QUIT) {
        relay_conn_free(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        snprintf(text, sizeof(text), "conversation with %s[%s] timed out while %s",
                 relay_route_host(c->route), c->ip, relay_stage_name(c));
    else if (c->state == RS_TLS)
        snprintf(text, sizeof(text), "Cannot start TLS: handshake failure with %s[%s]",
                 relay_route_host(c->route), c->ip);
    else
        snprintf(text, sizeof(text), "lost connection with %s[%s] while %s",
                 relay_route_host(c->route), c->ip, relay_stage_name(c));
    relay_conn_fail(c, text, "4.4.2", 0);
}

static void relay_conn_tls_start(struct relay_conn *c)
{
    SSL *ssl = relay_tls_ssl_new(c);
    struct bufferevent *tb;

    if (!ssl) {
        relay_conn_fail(c, "cannot start TLS: out of memory", "4.7.5", 0);
        return;
    }
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    tb = bufferevent_openssl_filter_new(c->r->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                        BEV_OPT_CLOSE_ON_FREE);
    if (!tb) {
        SSL_free(ssl);
        relay_conn_fail(c, "cannot start TLS", "4.7.5", 0);
        return;
    }
    /* the filter encrypts into the plain bufferevent only up to this: without it the
     * whole message would pile up there as ciphertext as fast as it is made */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, RELAY_TLS_HIGH);
    c->bev = tb; /* owns the plain bufferevent now */
    c->state = RS_TLS;
    bufferevent_setcb(tb, relay_conn_read_cb, relay_conn_write_cb, relay_conn_event_cb, c);
    bufferevent_setwatermark(tb, EV_WRITE, RELAY_WRITE_LOW, 0);
    relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

/* relay_conn_connect - open a TCP connection to addrs[ai]. */
static void relay_conn_connect(struct relay_conn *c)
{
    const struct conf *conf = c->r->conf;
    struct sockaddr_storage ss;
    socklen_t sslen = relay_route_addr(c->route, &ss, c->ip, sizeof(c->ip));
    int fd, one = 1, port = relay_route_port(c->route);
    char text[600];
    snprintf(c->relay_field, sizeof(c->relay_field), "%s[%s]:%d", relay_route_host(c->route), c->ip,
             port);
    c->state = RS_CONNECT;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(text, sizeof(text), "connect to %s[%s]:%d: %s", relay_route_host(c->route), c->ip,
                 port, strerror(errno));
        relay_conn_fail(c, text, "4.4.1", 0);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (conf->net_source_address[0]) {
        struct sockaddr_storage src;
        socklen_t slen = 0;
        memset(&src, 0, sizeof(src));
        if (ss.ss_family == AF_INET && inet_pton(AF_INET, conf->net_source_address,
                                                 &((struct sockaddr_in *)&src)->sin_addr) == 1) {
            src.ss_family = AF_INET;
            slen = sizeof(struct sockaddr_in);
        } else if (ss.ss_family == AF_INET6 &&
                   inet_pton(AF_INET6, conf->net_source_address,
                             &((struct sockaddr_in6 *)&src)->sin6_addr) == 1) {
            src.ss_family = AF_INET6;
            slen = sizeof(struct sockaddr_in6);
        }
        if (slen && bind(fd, (struct sockaddr *)&src, slen) < 0) {
            snprintf(text, sizeof(text), "connect to %s[%s]:%d: cannot bind to %s: %s",
                     relay_route_host(c->route), c->ip, port, conf->net_source_address,
                     strerror(errno));
            close(fd);
            relay_conn_fail(c, text, "4.4.1", 0);
            return;
        }
    }
    c->bev = bufferevent_socket_new(c->r->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        relay_conn_fail(c, "out of memory", "4.3.0", 0);
        return;
    }
    bufferevent_setcb(c->bev, relay_conn_read_cb, relay_conn_write_cb, relay_conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, RELAY_WRITE_LOW, 0);
    relay_conn_timeout(c, conf->smtp_connect_timeout, conf->smtp_connect_timeout);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
        snprintf(text, sizeof(text), "connect to %s[%s]:%d: %s", relay_route_host(c->route), c->ip,
                 port, strerror(errno ? errno : ECONNREFUSED));
        relay_conn_fail(c, text, "4.4.1", 0);
    }
}

struct relay_conn *relay_conn_new(struct relay *r, struct sched_job *job)
{
    struct relay_conn *c = calloc(1, sizeof(*c));

    if (!c) {
        sched_job_done(r->sched, job); /* results NONE: stays queued */
        return NULL;
    }
    c->r = r;
    c->id = ++r->conn_seq;
    c->log_pid = log_new_pid();
    c->kind = job->kind;
    snprintf(c->destname, sizeof(c->destname), "%s", job->dest);
    c->dest = relay_dest_get(r, job->dest);
    if (c->dest)
        c->dest->nconn++;
    r->nconn++;
    TAILQ_INSERT_HEAD(&r->conns, c, entry);
    c->fail = relay_conn_fail;
    c->xact_done = relay_conn_xact_end;
    c->route = relay_route_new(r->dns, job->kind, job->dest, relay_conn_route_cb, c);
    c->rj = c->route ? relay_job_new(c, job, 0) : NULL;
    if (!c->rj) {
        sched_job_done(r->sched, job);
        relay_conn_free(c);
        return NULL;
    }
    relay_conn_route(c);
    return c;
}
