/*
 * relay_smtp.c - one outbound SMTP connection and its conversation, modelled
 * on OpenSMTPD's mta_session.c: next hop (smart_relay / cc_mta next-hop syntax,
 * MX with fallback to the next MX or address, implicit MX, null MX), connect
 * (TCP_NODELAY, net_source_address), greeting, EHLO (HELO fallback),
 * opportunistic STARTTLS, MAIL/RCPT/DATA (pipelined when offered), the message
 * with its final dot in the same write, per-recipient results, and reuse of the
 * connection for the next job to the same destination. Every stage has its
 * Postfix smtp_*_timeout.
 * Not here: logging format and notifications (relay.c), queue state (sched).
 */
#include "relay_int.h"

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/nexthop.h"
#include "mta/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum relay_state {
    RS_DNS,
    RS_CONNECT,
    RS_GREETING,
    RS_EHLO,
    RS_HELO,
    RS_STARTTLS,
    RS_TLS,
    RS_READY, /* session up, waiting for the message to be loaded */
    RS_XACT,  /* MAIL/RCPT/DATA replies */
    RS_BODY,  /* the message goes out, chunk by chunk */
    RS_DOT,   /* reply to the end of data */
    RS_DOT_DISCARD,
    RS_RSET,
    RS_IDLE,
    RS_QUIT,
};

#define EXP_MAIL (-1)
#define EXP_DATA (-2)

struct relay_conn {
    struct relay *r;
    unsigned long long id;
    struct relay_conn *prev, *next;
    struct relay_dest *dest;
    char destname[256];
    enum sched_dest_kind kind;
    struct relay_job *rj;
    enum relay_state state;
    struct relay_route *route; /* next hop: hosts and addresses in the order to try */
    /* the session */
    struct bufferevent *bev;
    char ip[INET6_ADDRSTRLEN];
    char relay_field[400]; /* host[ip]:port, or "none" */
    long log_pid;          /* this connection's pseudo-pid in the maillog */
    int ext;
    long long size_limit;
    int tls_on;
    struct relay_reply reply;
    int reused, retried, need_rset;
    struct event *idle_ev;
    /* the transaction */
    char **cmds;
    int *exp;
    int ncmd, nsent, nreplied;
    int mail_failed;
    struct relay_reply mail_reply;
    char *accepted; /* per job recipient */
    /* the last session failure, for the recipients when no host is left */
    char last_err[RELAY_REPLY_MAX + 200];
    char last_dsn[16];
    int last_perm;
};

static void relay_conn_route(struct relay_conn *c);
static void relay_conn_try_next(struct relay_conn *c);
static void relay_conn_ready(struct relay_conn *c);
static void relay_conn_xact_end(struct relay_conn *c);
static void relay_conn_fail(struct relay_conn *c, const char *text, const char *dsn, int perm);
static void relay_conn_stream_cb(void *arg);
static void relay_conn_route_cb(void *arg, enum relay_route_event ev, enum sched_result res,
                                const char *dsn, const char *text);
static void relay_conn_body_pump(struct relay_conn *c);

struct relay_conn *relay_conn_next(const struct relay_conn *c)
{
    return c->next;
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

struct relay_conn *relay_conn_find(struct relay *r, unsigned long long id)
{
    struct relay_conn *c;

    for (c = r->conns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

/* relay_conn_timeout - set the read (and write) timeout for the next stage. */
static void relay_conn_timeout(struct relay_conn *c, long read_s, long write_s)
{
    struct timeval rt = {read_s, 0}, wt = {write_s, 0};

    if (c->bev)
        bufferevent_set_timeouts(c->bev, &rt, &wt);
}

/* relay_conn_send - write a command line. */
static void relay_conn_send(struct relay_conn *c, const char *line)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add(out, line, strlen(line));
    evbuffer_add(out, "\r\n", 2);
}

/* relay_xact_clear - forget the commands of the last transaction. */
static void relay_xact_clear(struct relay_conn *c)
{
    int i;

    for (i = 0; i < c->ncmd; i++)
        free(c->cmds[i]);
    free(c->cmds);
    free(c->exp);
    free(c->accepted);
    c->cmds = NULL;
    c->exp = NULL;
    c->accepted = NULL;
    c->ncmd = c->nsent = c->nreplied = 0;
    c->mail_failed = 0;
}

/* relay_conn_load - start making RJ's text: at once from the scheduler's kept copy, else its
 * first chunk on a worker (relay_conn_stream_cb goes on). A stream already used by an earlier
 * transaction (a retry with the next MX host) is replaced: the text starts again. */
static void relay_conn_load(struct relay_conn *c, struct relay_job *rj)
{
    struct relay *r = c->r;

    rj->load_started = 1;
    rj->body_err = -1;
    relay_stream_free(rj->st);
    rj->st = relay_stream_new(r->spool, r->io, rj->job->queue_id,
                              (size_t)r->conf->smtp_line_length_limit,
                              sched_job_content(r->sched, rj->job), relay_conn_stream_cb, c);
    if (!rj->st) {
        rj->body_err = ENOMEM;
        return;
    }
    if (!relay_stream_busy(rj->st)) {
        rj->body_err = relay_stream_error(rj->st);
        rj->msg_size = relay_stream_size(rj->st);
    }
}

/* relay_job_new - the relay side of JOB; its message is loaded at once when the connection is
 * up (LOAD_NOW), else when it comes up (relay_conn_ready): reading the file for a destination
 * that then refuses the connection would be wasted, as in every retry of a down host. */
static struct relay_job *relay_job_new(struct relay_conn *c, struct sched_job *job, int load_now)
{
    struct relay_job *rj = calloc(1, sizeof(*rj));

    if (!rj)
        return NULL;
    rj->ri = calloc((size_t)job->nrcpt + 1, sizeof(*rj->ri));
    if (!rj->ri) {
        free(rj);
        return NULL;
    }
    rj->job = job;
    rj->job_nrcpt_saved = job->nrcpt;
    rj->log_pid = c->log_pid;
    rj->body_err = -1;
    if (load_now)
        relay_conn_load(c, rj);
    return rj;
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
    relay_job_finish(c->r, rj);
}

void relay_conn_free(struct relay_conn *c)
{
    struct relay *r = c->r;

    relay_conn_close(c);
    if (c->rj)
        relay_conn_finish_job(c); /* shutdown: unresolved recipients stay queued */
    relay_xact_clear(c);
    relay_route_free(c->route);
    if (c->idle_ev)
        event_free(c->idle_ev);
    if (c->prev)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->dest)
        relay_dest_put(r, c->dest);
    r->nconn--;
    free(c);
    relay_kick_later(r); /* capacity is free again */
    relay_drain_check(r);
}

/* relay_all_results - give every unresolved recipient the same result. */
static void relay_all_results(struct relay_conn *c, enum sched_result res, const char *dsn,
                              const char *text)
{
    int i;

    for (i = 0; c->rj && i < c->rj->job->nrcpt; i++)
        if (c->rj->job->result[i] == SCHED_RESULT_NONE)
            relay_result(c->r, c->rj, i, res, dsn, c->relay_field[0] ? c->relay_field : "none",
                         c->bev ? relay_route_host(c->route) : "", text, text);
}

/* relay_conn_give_up - every unresolved recipient gets RES, the job ends, the connection goes. */
static void relay_conn_give_up(struct relay_conn *c, enum sched_result res, const char *dsn,
                               const char *text)
{
    relay_all_results(c, res, dsn, text);
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
static void relay_conn_route_cb(void *arg, enum relay_route_event ev, enum sched_result res,
                                const char *dsn, const char *text)
{
    struct relay_conn *c = arg;

    switch (ev) {
    case RELAY_ROUTE_CONNECT:
        relay_conn_connect(c);
        return;
    case RELAY_ROUTE_HOST_FAILED:
        snprintf(c->last_err, sizeof(c->last_err), "%s", text);
        snprintf(c->last_dsn, sizeof(c->last_dsn), "%s", dsn);
        c->last_perm = res == SCHED_RESULT_BOUNCE;
        relay_conn_try_next(c);
        return;
    case RELAY_ROUTE_FAILED:
        relay_conn_give_up(c, res, dsn, text);
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
    relay_conn_give_up(c, c->last_perm ? SCHED_RESULT_BOUNCE : SCHED_RESULT_DEFER,
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

static const char *relay_stage_name(const struct relay_conn *c)
{
    switch (c->state) {
    case RS_CONNECT:
    case RS_GREETING:
        return "receiving the initial server greeting";
    case RS_EHLO:
        return "sending EHLO";
    case RS_HELO:
        return "sending HELO";
    case RS_STARTTLS:
    case RS_TLS:
        return "sending STARTTLS";
    case RS_BODY:
        return "sending message body";
    case RS_XACT:
        if (c->nreplied < c->ncmd && c->exp[c->nreplied] == EXP_MAIL)
            return "sending MAIL FROM";
        if (c->nreplied < c->ncmd && c->exp[c->nreplied] == EXP_DATA)
            return "sending DATA command";
        return "sending RCPT TO";
    case RS_DOT:
    case RS_DOT_DISCARD:
        return "sending end of data -- message may be sent more than once";
    case RS_RSET:
        return "sending RSET";
    default:
        return "performing the SMTP conversation";
    }
}

static void relay_ehlo_send(struct relay_conn *c, const char *verb)
{
    char line[400];

    snprintf(line, sizeof(line), "%s %s", verb, c->r->myhostname);
    relay_conn_send(c, line);
    relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
}

/* relay_conn_said - "host H[ip] said: REPLY (in reply to WHAT command)". */
static void relay_conn_said(struct relay_conn *c, const struct relay_reply *rp, const char *what,
                            char *buf, size_t len)
{
    snprintf(buf, len, "host %s[%s] said: %s (in reply to %s)", relay_route_host(c->route), c->ip,
             rp->text, what);
}

/* A command line being built: every piece is added with its length checked, so a long
 * envelope field can never write past the buffer (the spool bounds each field; a line that
 * still does not fit, or holds a control byte, is refused instead of sent). */
struct relay_cmdline {
    char buf[RELAY_CMD_MAX];
    size_t len;
    int bad; /* too long, or a control byte: never sent */
};

static void relay_cmd_add(struct relay_cmdline *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* relay_cmd_add - append formatted text; marks the line bad instead of overflowing. */
static void relay_cmd_add(struct relay_cmdline *l, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(l->buf) - l->len, i;
    int n;

    if (l->bad)
        return;
    va_start(ap, fmt);
    n = vsnprintf(l->buf + l->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        l->bad = 1;
        l->buf[l->len] = '\0';
        return;
    }
    for (i = l->len; i < l->len + (size_t)n; i++)
        if ((unsigned char)l->buf[i] < 0x20 || (unsigned char)l->buf[i] == 0x7f)
            l->bad = 1; /* CR/LF would start a command of its own at the next hop */
    l->len += (size_t)n;
}

/* relay_conn_xact_start - MAIL, RCPT..., DATA for the current job (pipelined when offered). */
static void relay_conn_xact_start(struct relay_conn *c)
{
    const struct spool_envelope *env = c->rj->job->env;
    struct sched_job *job = c->rj->job;
    char text[600], x[3 * SPOOL_ORCPT_MAX + 1];
    struct relay_cmdline line;
    int i;

    if ((c->ext & RELAY_EXT_SIZE) && c->size_limit > 0 && c->rj->msg_size > c->size_limit) {
        snprintf(text, sizeof(text), "message size %lld exceeds size limit %lld of server %s[%s]",
                 c->rj->msg_size, c->size_limit, relay_route_host(c->route), c->ip);
        relay_all_results(c, SCHED_RESULT_BOUNCE, "5.3.4", text);
        relay_conn_xact_end(c);
        return;
    }
    if (env->smtputf8 && !(c->ext & RELAY_EXT_SMTPUTF8)) {
        snprintf(text, sizeof(text), "SMTPUTF8 is required, but was not offered by host %s[%s]",
                 relay_route_host(c->route), c->ip);
        relay_all_results(c, SCHED_RESULT_BOUNCE, "5.6.7", text);
        relay_conn_xact_end(c);
        return;
    }
    c->cmds = calloc((size_t)job->nrcpt + 2, sizeof(char *));
    c->exp = calloc((size_t)job->nrcpt + 2, sizeof(int));
    c->accepted = calloc((size_t)job->nrcpt + 1, 1);
    if (!c->cmds || !c->exp || !c->accepted) {
        relay_conn_fail(c, "out of memory", "4.3.0", 0);
        return;
    }
    memset(&line, 0, sizeof(line));
    relay_cmd_add(&line, "MAIL FROM:<%s>", env->sender);
    if (c->ext & RELAY_EXT_SIZE)
        relay_cmd_add(&line, " SIZE=%lld", c->rj->msg_size);
    if (env->body_8bit && (c->ext & RELAY_EXT_8BITMIME))
        relay_cmd_add(&line, " BODY=8BITMIME");
    if (env->smtputf8)
        relay_cmd_add(&line, " SMTPUTF8");
    if (c->ext & RELAY_EXT_DSN) {
        if (env->ret == SPOOL_RET_FULL || env->ret == SPOOL_RET_HDRS)
            relay_cmd_add(&line, " RET=%s", env->ret == SPOOL_RET_FULL ? "FULL" : "HDRS");
        if (env->envid[0]) {
            relay_xtext(env->envid, x, sizeof(x));
            relay_cmd_add(&line, " ENVID=%s", x);
        }
    }
    if (line.bad) {
        /* cannot happen with an envelope the spool accepted: refuse rather than send it */
        relay_all_results(c, SCHED_RESULT_BOUNCE, "5.5.4",
                          "sender or MAIL parameters do not fit an SMTP command line");
        relay_conn_xact_end(c);
        return;
    }
    c->cmds[c->ncmd] = strdup(line.buf);
    c->exp[c->ncmd++] = EXP_MAIL;
    for (i = 0; i < job->nrcpt; i++) {
        int slot = job->rcpt[i];
        const struct spool_rcpt *rc = &env->rcpt[slot < env->nrcpt ? slot : slot - env->nrcpt];
        if (job->result[i] != SCHED_RESULT_NONE)
            continue;
        memset(&line, 0, sizeof(line));
        relay_cmd_add(&line, "RCPT TO:<%s>", rc->addr);
        if ((c->ext & RELAY_EXT_DSN) && slot < env->nrcpt) {
            if (rc->notify) {
                static const struct {
                    int bit;
                    const char *name;
                } kw[] = {{SPOOL_NOTIFY_SUCCESS, "SUCCESS"},
                          {SPOOL_NOTIFY_FAILURE, "FAILURE"},
                          {SPOOL_NOTIFY_DELAY, "DELAY"}};
                int k, first = 1;
                relay_cmd_add(&line, " NOTIFY=");
                if (rc->notify & SPOOL_NOTIFY_NEVER)
                    relay_cmd_add(&line, "NEVER");
                else
                    for (k = 0; k < 3; k++)
                        if (rc->notify & kw[k].bit) {
                            relay_cmd_add(&line, "%s%s", first ? "" : ",", kw[k].name);
                            first = 0;
                        }
            }
            if (rc->orcpt[0]) {
                const char *semi = strchr(rc->orcpt, ';');
                relay_xtext(semi ? semi + 1 : rc->orcpt, x, sizeof(x));
                relay_cmd_add(&line, " ORCPT=rfc822;%s", x);
            }
        }
        if (line.bad) {
            relay_result(c->r, c->rj, i, SCHED_RESULT_BOUNCE, "5.5.4", c->relay_field,
                         relay_route_host(c->route),
                         "recipient or RCPT parameters do not fit an SMTP command line", NULL);
            continue;
        }
        c->cmds[c->ncmd] = strdup(line.buf);
        c->exp[c->ncmd++] = i;
    }
    if (c->ncmd == 1) {
        /* every recipient was refused above: no transaction to start */
        relay_conn_xact_end(c);
        return;
    }
    c->cmds[c->ncmd] = strdup("DATA");
    c->exp[c->ncmd++] = EXP_DATA;
    for (i = 0; i < c->ncmd; i++)
        if (!c->cmds[i]) {
            relay_conn_fail(c, "out of memory", "4.3.0", 0);
            return;
        }
    c->state = RS_XACT;
    c->need_rset = 1;
    if (c->ext & RELAY_EXT_PIPELINING) {
        for (i = 0; i < c->ncmd; i++)
            relay_conn_send(c, c->cmds[i]);
        c->nsent = c->ncmd;
    } else {
        relay_conn_send(c, c->cmds[0]);
        c->nsent = 1;
    }
    relay_conn_timeout(c, c->r->conf->smtp_mail_timeout, c->r->conf->smtp_mail_timeout);
}

/* relay_conn_ready - the session is up: start the transaction once the message is loaded. */
static void relay_conn_ready(struct relay_conn *c)
{
    char text[300];

    c->state = RS_READY;
    if (!c->rj->conn_us)
        c->rj->conn_us = relay_now_us();
    if (!c->rj->load_started || (c->rj->st && relay_stream_used(c->rj->st)))
        relay_conn_load(c, c->rj);
    if (c->rj->body_err == -1)
        return; /* relay_conn_stream_cb continues */
    if (c->rj->body_err == ENOENT) {
        /* deleted meanwhile (mtactl delete): nothing to deliver, nothing to record */
        relay_conn_xact_end(c);
        return;
    }
    if (c->rj->body_err) {
        snprintf(text, sizeof(text), "cannot read the queue file: %s", strerror(c->rj->body_err));
        relay_all_results(c, SCHED_RESULT_DEFER, "4.3.0", text);
        relay_conn_xact_end(c);
        return;
    }
    relay_conn_xact_start(c);
}

/* relay_conn_note_broken - log the first line broken at smtp_line_length_limit, once per
 * message as Postfix does. */
static void relay_conn_note_broken(struct relay_conn *c)
{
    if (c->rj->broken_logged || !relay_stream_broken(c->rj->st))
        return;
    c->rj->broken_logged = 1;
    log_mail_pid("smtp", c->rj->log_pid, "%s: breaking line > %zu bytes with <CR><LF>SPACE",
                 c->rj->job->queue_id,
                 (size_t)c->r->conf->smtp_line_length_limit < RELAY_LINE_MIN
                     ? (size_t)RELAY_LINE_MIN
                     : (size_t)c->r->conf->smtp_line_length_limit);
}

/* relay_conn_stream_cb - the stream made a chunk (its owner, this connection's job, still
 * exists: a stream freed meanwhile never calls back). */
static void relay_conn_stream_cb(void *arg)
{
    struct relay_conn *c = arg;
    struct relay_job *rj = c->rj;

    if (rj->body_err == -1) {
        /* the first chunk: the size is known, the transaction may start */
        rj->body_err = relay_stream_error(rj->st);
        rj->msg_size = relay_stream_size(rj->st);
        if (c->state == RS_READY)
            relay_conn_ready(c);
        return;
    }
    if (c->state == RS_BODY)
        relay_conn_body_pump(c);
}

/* relay_conn_body_pump - keep the socket's output fed from the stream: the next chunk goes out
 * when the output is below RELAY_WRITE_LOW, and the one after is made meanwhile; the final dot
 * goes out with the last bytes of text. */
static void relay_conn_body_pump(struct relay_conn *c)
{
    struct relay_stream *st = c->rj->st;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char text[300];
    int err;

    relay_conn_note_broken(c);
    if (relay_stream_ready(st) > 0 && evbuffer_get_length(out) <= RELAY_WRITE_LOW &&
        relay_stream_take(st, out)) {
        c->state = RS_DOT;
        relay_conn_timeout(c, c->r->conf->smtp_data_done_timeout,
                           c->r->conf->smtp_data_xfer_timeout);
        return;
    }
    if ((err = relay_stream_error(st)) != 0) {
        /* without its final dot the server drops the message: the recipients stay queued */
        snprintf(text, sizeof(text), "cannot read the queue file: %s", strerror(err));
        relay_all_results(c, SCHED_RESULT_DEFER, "4.3.0", text);
        relay_conn_finish_job(c);
        relay_conn_free(c);
        return;
    }
    if (relay_stream_ready(st) == 0)
        relay_stream_fill(st);
}

/* relay_conn_write_cb - the output fell below RELAY_WRITE_LOW. */
static void relay_conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct relay_conn *c = arg;

    (void)bev;
    if (c->state == RS_BODY && c->rj)
        relay_conn_body_pump(c);
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
    struct sched_job *job =
        c->r->stopping ? NULL : sched_job_take(c->r->sched, relay_same_dest_cb, c);
    struct timeval tv = {RELAY_IDLE_SECONDS, 0};

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
        else
            relay_idle_cb(-1, 0, c);
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

/* relay_conn_rcpt_reply - the reply to RCPT for job recipient I. */
static void relay_conn_rcpt_reply(struct relay_conn *c, int i, const struct relay_reply *rp)
{
    char text[RELAY_REPLY_MAX + 200], dsn[16];

    if (rp->code / 100 == 2) {
        c->accepted[i] = 1;
        c->rj->accepted++;
        return;
    }
    relay_conn_said(c, rp, "RCPT TO command", text, sizeof(text));
    relay_reply_dsn(rp, dsn, sizeof(dsn));
    relay_result(c->r, c->rj, i, rp->code / 100 == 5 ? SCHED_RESULT_BOUNCE : SCHED_RESULT_DEFER,
                 dsn, c->relay_field, relay_route_host(c->route), text, rp->text);
}

/* relay_conn_accepted_results - a result for every recipient the server accepted. */
static void relay_conn_accepted_results(struct relay_conn *c, const struct relay_reply *rp,
                                        const char *what)
{
    char text[RELAY_REPLY_MAX + 200], dsn[16];
    enum sched_result res = rp->code / 100 == 2   ? SCHED_RESULT_SENT
                            : rp->code / 100 == 5 ? SCHED_RESULT_BOUNCE
                                                  : SCHED_RESULT_DEFER;
    int i;

    relay_reply_dsn(rp, dsn, sizeof(dsn));
    if (res == SCHED_RESULT_SENT)
        snprintf(text, sizeof(text), "%s", rp->text);
    else
        relay_conn_said(c, rp, what, text, sizeof(text));
    for (i = 0; i < c->rj->job->nrcpt; i++)
        if (c->accepted[i]) {
            if (res == SCHED_RESULT_SENT && (c->ext & RELAY_EXT_DSN))
                c->rj->ri[i].notified = 1; /* NOTIFY went along: the next hop reports success */
            relay_result(c->r, c->rj, i, res, dsn, c->relay_field, relay_route_host(c->route), text,
                         rp->text);
        }
}

/* relay_conn_xact_reply - one reply of MAIL/RCPT/DATA, in order. */
static void relay_conn_xact_reply(struct relay_conn *c, const struct relay_reply *rp)
{
    int e = c->exp[c->nreplied++];
    char text[RELAY_REPLY_MAX + 200], dsn[16];

    if (e == EXP_MAIL) {
        if (rp->code / 100 != 2) {
            c->mail_failed = 1;
            c->mail_reply = *rp;
        }
    } else if (e >= 0) {
        if (!c->mail_failed)
            relay_conn_rcpt_reply(c, e, rp);
    } else { /* DATA */
        if (rp->code == 354) {
            if (!c->mail_failed && c->rj->accepted > 0) {
                /* a small message and its final dot go out in one write (no delayed-ACK
                 * stall); a large one a chunk at a time under the write watermark */
                c->state = RS_BODY;
                relay_conn_timeout(c, c->r->conf->smtp_data_xfer_timeout,
                                   c->r->conf->smtp_data_xfer_timeout);
                relay_conn_body_pump(c);
            } else {
                relay_conn_send(c, ".");
                c->state = RS_DOT_DISCARD;
                relay_conn_timeout(c, c->r->conf->smtp_data_done_timeout,
                                   c->r->conf->smtp_data_xfer_timeout);
            }
            return;
        }
        if (!c->mail_failed && c->rj->accepted > 0)
            relay_conn_accepted_results(c, rp, "DATA command");
    }
    if (c->nreplied < c->ncmd) {
        if (c->nsent == c->nreplied) {
            /* not pipelining: send the next command unless the transaction is lost */
            int next = c->exp[c->nsent];
            if (c->mail_failed || (next == EXP_DATA && c->rj->accepted == 0)) {
                c->nreplied = c->ncmd; /* nothing more to send */
            } else {
                relay_conn_send(c, c->cmds[c->nsent++]);
                relay_conn_timeout(c,
                                   next == EXP_DATA ? c->r->conf->smtp_data_init_timeout
                                                    : c->r->conf->smtp_rcpt_timeout,
                                   c->r->conf->smtp_rcpt_timeout);
                return;
            }
        } else {
            return; /* more pipelined replies to come */
        }
    }
    /* the transaction ended without the message being sent */
    if (c->mail_failed) {
        relay_conn_said(c, &c->mail_reply, "MAIL FROM command", text, sizeof(text));
        if (c->mail_reply.code / 100 == 5) {
            relay_reply_dsn(&c->mail_reply, dsn, sizeof(dsn));
            relay_all_results(c, SCHED_RESULT_BOUNCE, dsn, text);
        } else {
            /* 4xx to MAIL: try the next MX host with these recipients */
            relay_reply_dsn(&c->mail_reply, dsn, sizeof(dsn));
            c->state = RS_XACT;
            relay_conn_fail(c, text, dsn, 0);
            return;
        }
    }
    relay_conn_xact_end(c);
}

/* relay_conn_tls_start - STARTTLS accepted: wrap the connection. */
static void relay_conn_tls_start(struct relay_conn *c);

/* relay_conn_reply - a complete reply arrived: advance the state machine. */
static void relay_conn_reply(struct relay_conn *c)
{
    struct relay_reply rp = c->reply;
    char text[RELAY_REPLY_MAX + 200], dsn[16];
    int cls = rp.code / 100;

    memset(&c->reply, 0, sizeof(c->reply));
    switch (c->state) {
    case RS_GREETING:
        if (cls != 2) {
            snprintf(text, sizeof(text), "host %s[%s] refused to talk to me: %s",
                     relay_route_host(c->route), c->ip, rp.text);
            relay_reply_dsn(&rp, dsn, sizeof(dsn));
            relay_conn_fail(c, text, dsn, cls == 5);
            return;
        }
        c->state = RS_EHLO;
        relay_ehlo_send(c, "EHLO");
        return;
    case RS_EHLO:
        if (cls != 2) {
            c->ext = 0;
            c->state = RS_HELO;
            relay_ehlo_send(c, "HELO");
            return;
        }
        if ((c->ext & RELAY_EXT_STARTTLS) && !c->tls_on && relay_tls_ctx(c->r)) {
            c->state = RS_STARTTLS;
            relay_conn_send(c, "STARTTLS");
            relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
            return;
        }
        relay_conn_ready(c);
        return;
    case RS_HELO:
        if (cls != 2) {
            relay_conn_said(c, &rp, "HELO command", text, sizeof(text));
            relay_reply_dsn(&rp, dsn, sizeof(dsn));
            relay_conn_fail(c, text, dsn, cls == 5);
            return;
        }
        relay_conn_ready(c);
        return;
    case RS_STARTTLS:
        if (rp.code != 220) {
            relay_conn_ready(c); /* "may": go on in plaintext */
            return;
        }
        relay_conn_tls_start(c);
        return;
    case RS_XACT:
        relay_conn_xact_reply(c, &rp);
        return;
    case RS_BODY:
        /* a reply before the final dot: the server gave up on the message (a 2xx here is
         * a broken server); the connection cannot go on in the middle of the text */
        if (cls == 2) {
            snprintf(text, sizeof(text), "host %s[%s] replied before the end of data: %s",
                     relay_route_host(c->route), c->ip, rp.text);
            relay_conn_fail(c, text, "4.4.2", 0);
            return;
        }
        relay_conn_accepted_results(c, &rp, "end of DATA command");
        relay_conn_finish_job(c);
        relay_conn_free(c);
        return;
    case RS_DOT:
        relay_conn_accepted_results(c, &rp, "end of DATA command");
        c->need_rset = 0;
        relay_conn_xact_end(c);
        return;
    case RS_DOT_DISCARD:
        c->need_rset = 0;
        relay_conn_xact_end(c);
        return;
    case RS_RSET:
        if (cls != 2) {
            relay_conn_close(c);
            c->reused = 1;
            c->retried = 0;
            relay_conn_fail(c, "RSET failed", "4.4.2", 0);
            return;
        }
        c->need_rset = 0;
        relay_conn_ready(c);
        return;
    case RS_QUIT:
        relay_conn_free(c);
        return;
    case RS_IDLE:
        /* an unsolicited reply (e.g. 421 timeout) on an idle connection: drop it */
        relay_conn_free(c);
        return;
    default:
        return;
    }
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

static void relay_conn_tls_log(struct relay_conn *c, SSL *ssl)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    const char *trust = !peer                                     ? "Anonymous"
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
            c->state = RS_GREETING;
            relay_conn_timeout(c, c->r->conf->smtp_helo_timeout, c->r->conf->smtp_helo_timeout);
        } else if (c->state == RS_TLS) {
            c->tls_on = 1;
            relay_conn_tls_log(c, bufferevent_openssl_get_ssl(bev));
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
    SSL *ssl = SSL_new(c->r->tls);
    struct bufferevent *tb;
    struct in6_addr tmp;

    if (!ssl) {
        relay_conn_fail(c, "cannot start TLS: out of memory", "4.7.5", 0);
        return;
    }
    if (inet_pton(AF_INET, relay_route_host(c->route), &tmp) != 1 &&
        inet_pton(AF_INET6, relay_route_host(c->route), &tmp) != 1)
        SSL_set_tlsext_host_name(ssl, relay_route_host(c->route));
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
    c->next = r->conns;
    if (r->conns)
        r->conns->prev = c;
    r->conns = c;
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
