/*
 * relay_xact.c - one mail transaction on a ready outbound session: the message
 * text made (relay_body.c stream), MAIL FROM with SIZE/BODY/SMTPUTF8/RET/ENVID,
 * RCPT TO with NOTIFY/ORCPT (every line built with checked lengths), DATA
 * (pipelined when offered), the text streamed under the write watermark with
 * its final dot after the last bytes, and a result for every recipient from the
 * replies. It ends through the connection's handed callbacks: xact_done (the
 * next job or idle) and fail (the session broke: next host).
 * Not here: the session (relay_client.c), the next hop (relay_route.c).
 */
#include "relay_int.h"

#include "mta/conf.h"
#include "mta/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void relay_conn_stream_cb(void *arg);
static void relay_conn_body_pump(struct relay_conn *c);

/* relay_result - report CLS for job recipient I to the scheduler, which decides what it
 * means, and log its decision (Postfix's to=<..>, relay=, delays=, dsn=, status=): one
 * result per attempt. */
void relay_result(struct relay *r, struct relay_job *rj, int i, enum sched_class cls,
                  const char *dsn, const char *relay_field, const char *remote,
                  const char *status_text, const char *diag)
{
    struct sched_job *job = rj->job;
    const struct spool_envelope *env = job->env;
    int slot = job->rcpt[i];
    const char *addr = env->rcpt[slot < env->nrcpt ? slot : slot - env->nrcpt].addr;
    long long now = clock_now_us();
    long long conn_us = rj->conn_us ? rj->conn_us : now;
    char d0[16], d1[16], d2[16], d3[16], d4[16];
    enum sched_result res = sched_job_report(r->sched, job, i, cls, status_text);
    const char *st = res == SCHED_RESULT_SENT     ? "sent"
                     : res == SCHED_RESULT_BOUNCE ? "bounced"
                                                  : "deferred";

    if (res == SCHED_RESULT_NONE)
        return; /* one result per attempt */
    snprintf(rj->ri[i].dsn, sizeof(rj->ri[i].dsn), "%s", dsn);
    free(rj->ri[i].diag);
    rj->ri[i].diag = strdup(diag ? diag : status_text);
    free(rj->ri[i].remote);
    rj->ri[i].remote = strdup(remote ? remote : "");
    relay_fmt_delay((now - env->arrival_us) / 1e6, d0, sizeof(d0));
    relay_fmt_delay((job->active_us - env->arrival_us) / 1e6, d1, sizeof(d1));
    relay_fmt_delay((job->dispatch_us - job->active_us) / 1e6, d2, sizeof(d2));
    relay_fmt_delay((conn_us - job->dispatch_us) / 1e6, d3, sizeof(d3));
    relay_fmt_delay((now - conn_us) / 1e6, d4, sizeof(d4));
    log_mail_pid("smtp", rj->log_pid,
                 "%s: to=<%s>, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
                 job->queue_id, addr, relay_field[0] ? relay_field : "none", d0, d1, d2, d3, d4,
                 dsn, st, status_text);
}

/* relay_conn_timeout - set the read (and write) timeout for the next stage. */
void relay_conn_timeout(struct relay_conn *c, long read_s, long write_s)
{
    struct timeval rt = {read_s, 0}, wt = {write_s, 0};

    if (c->bev)
        bufferevent_set_timeouts(c->bev, &rt, &wt);
}

/* relay_conn_send - write a command line. */
void relay_conn_send(struct relay_conn *c, const char *line)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add(out, line, strlen(line));
    evbuffer_add(out, "\r\n", 2);
}

/* relay_xact_clear - forget the commands of the last transaction. */
void relay_xact_clear(struct relay_conn *c)
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
struct relay_job *relay_job_new(struct relay_conn *c, struct sched_job *job, int load_now)
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

/* relay_all_results - report the same class for every unresolved recipient. */
void relay_all_results(struct relay_conn *c, enum sched_class cls, const char *dsn,
                       const char *text)
{
    int i;

    for (i = 0; c->rj && i < c->rj->job->nrcpt; i++)
        if (c->rj->job->result[i] == SCHED_RESULT_NONE)
            relay_result(c->r, c->rj, i, cls, dsn, c->relay_field[0] ? c->relay_field : "none",
                         c->bev ? relay_route_host(c->route) : "", text, text);
}

/* relay_conn_said - "host H[ip] said: REPLY (in reply to WHAT command)". */
void relay_conn_said(struct relay_conn *c, const struct relay_reply *rp, const char *what,
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
        relay_all_results(c, SCHED_CLASS_PERM, "5.3.4", text);
        c->xact_done(c);
        return;
    }
    if (env->smtputf8 && !(c->ext & RELAY_EXT_SMTPUTF8)) {
        snprintf(text, sizeof(text), "SMTPUTF8 is required, but was not offered by host %s[%s]",
                 relay_route_host(c->route), c->ip);
        relay_all_results(c, SCHED_CLASS_PERM, "5.6.7", text);
        c->xact_done(c);
        return;
    }
    c->cmds = calloc((size_t)job->nrcpt + 2, sizeof(char *));
    c->exp = calloc((size_t)job->nrcpt + 2, sizeof(int));
    c->accepted = calloc((size_t)job->nrcpt + 1, 1);
    if (!c->cmds || !c->exp || !c->accepted) {
        c->fail(c, "out of memory", "4.3.0", 0);
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
        relay_all_results(c, SCHED_CLASS_PERM, "5.5.4",
                          "sender or MAIL parameters do not fit an SMTP command line");
        c->xact_done(c);
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
            relay_result(c->r, c->rj, i, SCHED_CLASS_PERM, "5.5.4", c->relay_field,
                         relay_route_host(c->route),
                         "recipient or RCPT parameters do not fit an SMTP command line", NULL);
            continue;
        }
        c->cmds[c->ncmd] = strdup(line.buf);
        c->exp[c->ncmd++] = i;
    }
    if (c->ncmd == 1) {
        /* every recipient was refused above: no transaction to start */
        c->xact_done(c);
        return;
    }
    c->cmds[c->ncmd] = strdup("DATA");
    c->exp[c->ncmd++] = EXP_DATA;
    for (i = 0; i < c->ncmd; i++)
        if (!c->cmds[i]) {
            c->fail(c, "out of memory", "4.3.0", 0);
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
void relay_conn_ready(struct relay_conn *c)
{
    char text[300];

    c->state = RS_READY;
    if (!c->rj->conn_us)
        c->rj->conn_us = clock_now_us();
    if (!c->rj->load_started || (c->rj->st && relay_stream_used(c->rj->st)))
        relay_conn_load(c, c->rj);
    if (c->rj->body_err == -1)
        return; /* relay_conn_stream_cb continues */
    if (c->rj->body_err == ENOENT) {
        /* deleted meanwhile (mtactl delete): nothing to deliver, nothing to record */
        c->xact_done(c);
        return;
    }
    if (c->rj->body_err) {
        snprintf(text, sizeof(text), "cannot read the queue file: %s", strerror(c->rj->body_err));
        relay_all_results(c, SCHED_CLASS_TEMP, "4.3.0", text);
        c->xact_done(c);
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
        relay_all_results(c, SCHED_CLASS_TEMP, "4.3.0", text);
        c->fail(c, text, "4.3.0", 0); /* every recipient has its result: the connection ends */
        return;
    }
    if (relay_stream_ready(st) == 0)
        relay_stream_fill(st);
}

/* relay_conn_write_cb - the output fell below RELAY_WRITE_LOW. */
void relay_conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct relay_conn *c = arg;

    (void)bev;
    if (c->state == RS_BODY && c->rj)
        relay_conn_body_pump(c);
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
    relay_result(c->r, c->rj, i, rp->code / 100 == 5 ? SCHED_CLASS_PERM : SCHED_CLASS_TEMP, dsn,
                 c->relay_field, relay_route_host(c->route), text, rp->text);
}

/* relay_conn_accepted_results - a result for every recipient the server accepted. */
void relay_conn_accepted_results(struct relay_conn *c, const struct relay_reply *rp,
                                 const char *what)
{
    char text[RELAY_REPLY_MAX + 200], dsn[16];
    enum sched_class cls = rp->code / 100 == 2   ? SCHED_CLASS_SUCCESS
                           : rp->code / 100 == 5 ? SCHED_CLASS_PERM
                                                 : SCHED_CLASS_TEMP;
    int i;

    relay_reply_dsn(rp, dsn, sizeof(dsn));
    if (cls == SCHED_CLASS_SUCCESS)
        snprintf(text, sizeof(text), "%s", rp->text);
    else
        relay_conn_said(c, rp, what, text, sizeof(text));
    for (i = 0; i < c->rj->job->nrcpt; i++)
        if (c->accepted[i]) {
            if (cls == SCHED_CLASS_SUCCESS && (c->ext & RELAY_EXT_DSN))
                c->rj->ri[i].notified = 1; /* NOTIFY went along: the next hop reports success */
            relay_result(c->r, c->rj, i, cls, dsn, c->relay_field, relay_route_host(c->route), text,
                         rp->text);
        }
}

/* relay_conn_xact_reply - one reply of MAIL/RCPT/DATA, in order. */
void relay_conn_xact_reply(struct relay_conn *c, const struct relay_reply *rp)
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
            relay_all_results(c, SCHED_CLASS_PERM, dsn, text);
        } else {
            /* 4xx to MAIL: try the next MX host with these recipients */
            relay_reply_dsn(&c->mail_reply, dsn, sizeof(dsn));
            c->state = RS_XACT;
            c->fail(c, text, dsn, 0);
            return;
        }
    }
    c->xact_done(c);
}
