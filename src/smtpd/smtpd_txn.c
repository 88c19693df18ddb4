/*
 * smtpd_txn.c - the mail transaction: recipients, the body's way into the
 * spool, and the end of data: one reply from the accumulated error bits, or
 * the durable commit whose done callback sends the 250 (looked up by session
 * id: a session that died meanwhile gets nothing, the mail stays queued). The
 * session goes on through srv->resume, the continuation it handed down.
 * Not here: command checks (smtpd_proto.c), the byte machine (smtpd_data.c).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "smtpd_int.h"

/* What a commit's done callback needs, without a pointer to the session. */
struct smtpd_commit {
    struct smtpd *srv;
    uint64_t session;
    char id[SPOOL_ID_SIZE];
    char *sender;
    int nrcpt;
    long long size;
    const char *refusal; /* a refused message: this reply once its temp files are gone */
};

struct smtpd_txn *smtpd_txn_new(void)
{
    struct smtpd_txn *tx = calloc(1, sizeof(*tx));
    if (tx && !(tx->buf = evbuffer_new())) {
        free(tx);
        return NULL;
    }
    return tx;
}

void smtpd_txn_free(struct smtpd_txn *tx)
{
    if (!tx)
        return;
    if (tx->msg)
        spool_msg_abort(tx->msg);
    for (int i = 0; i < tx->nrcpt; i++) {
        free(tx->rcpt[i].addr);
        free(tx->rcpt[i].orcpt);
    }
    free(tx->rcpt);
    free(tx->sender);
    smtpd_body_free(&tx->body);
    evbuffer_free(tx->buf);
    free(tx);
}

/* smtpd_txn_reset - drop the transaction; the caller chooses the phase that follows. */
void smtpd_txn_reset(struct smtpd_session *s)
{
    if (s->tx)
        smtpd_milter_abort(s); /* uncommitted: the milters forget it too */
    smtpd_txn_free(s->tx);
    s->tx = NULL;
}

/* smtpd_txn_proto - the protocol name of the Received: header (Postfix's with ... ). */
const char *smtpd_txn_proto(const struct smtpd_session *s)
{
    if (!s->esmtp)
        return "SMTP";
    if (s->tx && s->tx->mp.smtputf8)
        return s->tls ? (s->authenticated ? "UTF8SMTPSA" : "UTF8SMTPS")
                      : (s->authenticated ? "UTF8SMTPA" : "UTF8SMTP");
    return s->tls ? (s->authenticated ? "ESMTPSA" : "ESMTPS")
                  : (s->authenticated ? "ESMTPA" : "ESMTP");
}

int smtpd_txn_add_rcpt(struct smtpd_txn *tx, const char *addr, const struct smtpd_rcpt_params *p)
{
    struct spool_rcpt *r;
    if (tx->nrcpt == tx->rcpt_cap) {
        int cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
        struct spool_rcpt *n = realloc(tx->rcpt, (size_t)cap * sizeof(*n));
        if (!n)
            return -1;
        tx->rcpt = n;
        tx->rcpt_cap = cap;
    }
    r = &tx->rcpt[tx->nrcpt];
    r->addr = strdup(addr);
    r->orcpt = strdup(p->orcpt);
    r->notify = p->notify;
    if (!r->addr || !r->orcpt) {
        free(r->addr);
        free(r->orcpt);
        return -1;
    }
    tx->nrcpt++;
    return 0;
}

void smtpd_txn_body_start(struct smtpd_session *s, int dot)
{
    struct smtpd *srv = s->srv;
    const struct conf *c = srv->conf;
    struct smtpd_txn *tx = s->tx;
    struct smtpd_body_opts o;
    time_t now = time(NULL);

    smtpd_data_received(tx->buf, s->helo ? s->helo : s->addr, s->name, s->addr, srv->hostname,
                        smtpd_txn_proto(s), tx->id, tx->nrcpt == 1 ? tx->rcpt[0].addr : NULL, now,
                        s->tls ? s->tls_info : NULL);
    memset(&o, 0, sizeof(o));
    o.dot = dot;
    o.barelf = srv->barelf;
    o.max_size = c->message_size_limit;
    o.header_limit = (size_t)c->header_size_limit;
    o.hop_limit = (int)c->hopcount_limit;
    o.hops_initial = 1;
    if (s->trusted || s->authenticated) {
        /* cleanup's behaviour for local clients: complete the header */
        smtpd_data_msgid_line(tx->msgid_line, sizeof(tx->msgid_line), now, tx->id, srv->hostname);
        smtpd_data_date_line(tx->date_line, sizeof(tx->date_line), now);
        o.add_msgid = tx->msgid_line;
        o.add_date = tx->date_line;
    }
    smtpd_body_init(&tx->body, &o, tx->buf);
    tx->body_active = 1;
}

int smtpd_txn_body_push(struct smtpd_session *s)
{
    struct smtpd_txn *tx = s->tx;
    size_t n = evbuffer_get_length(tx->buf);
    if (n == 0)
        return 0;
    tx->stored += (long long)n;
    if (spool_msg_append(tx->msg, tx->buf) < 0) {
        if (errno == ENOSPC)
            tx->nospace = 1; /* queue_minfree reached mid-message: 452, not 451 */
        return -1;
    }
    return 0;
}

/* smtpd_txn_commit_done - the spool's verdict; the session may be gone. */
static void smtpd_txn_commit_done(void *arg, int err)
{
    struct smtpd_commit *cm = arg;
    struct smtpd *srv = cm->srv;
    struct smtpd_session *s;

    srv->commits--;
    if (cm->refusal) {
        /* smtpd_txn_end refused it: the abort is done, nothing to log */
    } else if (err == 0) {
        counter_add(CNT_RECEIVED, 1);
        log_mail("qmgr", "%s: from=<%s>, size=%lld, nrcpt=%d (queue active)", cm->id, cm->sender,
                 cm->size, cm->nrcpt);
    } else {
        log_mail("smtpd", "warning: %s: queue file write error: %s", cm->id, strerror(err));
    }
    s = smtpd_state_find(srv, cm->session);
    free(cm->sender);
    if (s && s->state == SMTPD_STATE_COMMIT) {
        smtpd_enter_state(s, smtpd_state_idle(s));
        s->where = "END-OF-MESSAGE";
        if (cm->refusal)
            smtpd_reply(s, "%s", cm->refusal);
        else if (err == 0) {
            /* Postfix forgives earlier errors and junk once a message is received */
            s->errors = 0;
            s->junk = 0;
            smtpd_reply(s, "250 2.0.0 Ok: queued as %s", cm->id);
        } else if (err == ENOSPC)
            smtpd_reply(s, "452 4.3.1 Insufficient system storage");
        else
            smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        if (srv->stopping)
            smtpd_reply_close(s, "421 4.3.2 %s Service shutting down", srv->hostname);
        srv->resume(s, 1); /* the reply now; then reading again, or the close */
    }
    free(cm);
    if (srv->stopping)
        event_active(srv->reaper, EV_TIMEOUT, 1); /* it reports "no session left" */
}

static void smtpd_txn_commit(struct smtpd_session *s);
static void smtpd_txn_filtered(struct smtpd_session *s);

void smtpd_txn_end(struct smtpd_session *s)
{
    struct smtpd *srv = s->srv;
    struct smtpd_txn *tx = s->tx;
    struct smtpd_commit *cm;
    int err;

    smtpd_body_finish(&tx->body);
    if (smtpd_txn_body_push(s) < 0)
        tx->body.err |= SMTPD_BODY_ERR_IO;
    err = tx->body.err;
    smtpd_enter_state(s, smtpd_state_idle(s));
    s->where = "END-OF-MESSAGE";
    s->cur_cmd = tx->bdat ? SMTPD_CMD_BDAT : SMTPD_CMD_DATA;
    if (err) {
        if (err & SMTPD_BODY_ERR_BARELF) {
            smtpd_reply_log_reject(s, "END-OF-MESSAGE", tx->sender,
                                   tx->nrcpt ? tx->rcpt[tx->nrcpt - 1].addr : NULL,
                                   "bare <LF> received");
            counter_add(CNT_REJECTED, 1);
            smtpd_reply_close(s, "521 5.5.2 %s Error: bare <LF> received", srv->hostname);
        } else {
            const char *refusal = (err & SMTPD_BODY_ERR_SIZE)
                                      ? "552 5.3.4 Error: message file too big"
                                  : (err & SMTPD_BODY_ERR_HOPS) ? "554 5.4.6 Error: too many hops"
                                  : tx->nospace ? "452 4.3.1 Insufficient system storage"
                                                : "451 4.3.0 Error: queue file write error";
            /* the reply waits until the spool has removed the partial body, so that a
             * refused message has left nothing behind when the client reads it */
            if (tx->msg && (cm = calloc(1, sizeof(*cm)))) {
                struct spool_msg *m = tx->msg;
                cm->srv = srv;
                cm->session = s->id;
                cm->refusal = refusal;
                tx->msg = NULL;
                smtpd_enter_state(s, SMTPD_STATE_COMMIT);
                bufferevent_disable(s->bev, EV_READ);
                srv->commits++;
                spool_msg_abort_done(m, smtpd_txn_commit_done, cm);
                smtpd_txn_reset(s); /* the done callback ends SMTPD_STATE_COMMIT */
                return;
            }
            smtpd_reply(s, "%s", refusal);
        }
        smtpd_txn_reset(s);
        return;
    }
    if (tx->body.seen_msgid)
        log_mail("cleanup", "%s: message-id=%s", tx->id, tx->body.msgid);
    else if (tx->body.o.add_msgid) /* "Message-Id: <...>\r\n": log the value */
        log_mail("cleanup", "%s: message-id=%.*s", tx->id, (int)strlen(tx->msgid_line) - 14,
                 tx->msgid_line + 12);
    else
        log_mail("cleanup", "%s: message-id=<>", tx->id);
    if (smtpd_milter_eom(s, smtpd_txn_filtered))
        return; /* the milters first: their answer goes on with smtpd_txn_filtered */
    smtpd_txn_filtered(s);
}

/* smtpd_txn_filtered - past the milters (their changes applied): sign, then commit. */
static void smtpd_txn_filtered(struct smtpd_session *s)
{
    if (smtpd_dkim_start(s, smtpd_txn_commit))
        return; /* the signature first; the commit follows from its completion */
    smtpd_txn_commit(s);
}

/* smtpd_txn_commit - the message is final (signed when it is to be): make it durable; the
 * done callback replies. */
static void smtpd_txn_commit(struct smtpd_session *s)
{
    struct smtpd *srv = s->srv;
    struct smtpd_txn *tx = s->tx;
    struct spool_envelope env;
    struct smtpd_commit *cm;

    memset(&env, 0, sizeof(env));
    env.sender = tx->sender;
    env.rcpt = tx->rcpt;
    env.nrcpt = tx->nrcpt;
    env.envid = tx->mp.envid;
    env.ret = tx->mp.ret;
    env.smtputf8 = tx->mp.smtputf8;
    env.body_8bit = tx->mp.body_8bit;
    env.client_name = (char *)s->name;
    env.client_addr = s->addr;
    env.helo = s->helo ? s->helo : "";
    env.arrival_us = clock_now_us();
    if (!(cm = calloc(1, sizeof(*cm))) || !(cm->sender = strdup(tx->sender))) {
        free(cm);
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        smtpd_txn_reset(s);
        return;
    }
    cm->srv = srv;
    cm->session = s->id;
    snprintf(cm->id, sizeof(cm->id), "%s", tx->id);
    cm->nrcpt = tx->nrcpt;
    cm->size = tx->stored;
    smtpd_enter_state(s, SMTPD_STATE_COMMIT);
    bufferevent_disable(s->bev, EV_READ);
    srv->commits++;
    {
        struct spool_msg *m = tx->msg;
        tx->msg = NULL; /* the spool owns it now */
        s->tx = NULL;   /* a done callback that runs early must find no transaction */
        spool_msg_commit(m, &env, smtpd_txn_commit_done, cm);
    }
    smtpd_txn_free(tx);
}
