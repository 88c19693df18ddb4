/*
 * smtpd_milter.c - smtpd_milters in the SMTP session (docs/milter.md): the connect, HELO,
 * MAIL, RCPT and DATA events after smtpd's own checks (as Postfix orders them), and at
 * end-of-data the message content read back from the spool and sent to the milters; their
 * changes (headers, body, recipients, sender, hold) are applied to the spool message
 * before the commit, so the 250 still follows the durable, modified message.
 * While a milter event is in flight the session reads nothing (milter_wait, or the COMMIT
 * phase at end-of-data); the milter client bounds each wait with its timeouts.
 * Not here: the milter protocol (src/core/milter*.c), the commit (smtpd_txn.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/milter.h"
#include "mta/spool.h"
#include "smtpd_int.h"

/* What the session keeps about its milters. */
struct smtpd_milter {
    struct milter_sess *ms;
    struct spool_read *read; /* the content read in flight */
    void (*ok)(struct smtpd_session *s);
    void (*undo)(struct smtpd_session *s);
    void (*next)(struct smtpd_session *s);
    const char *cmd;  /* CONNECT, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE */
    char *rcpt;       /* the recipient of the RCPT event, for its log line */
    int discard;      /* SMFIR_DISCARD before the end of message */
    long long off;    /* where the content read in flight starts */
    char port[8];     /* {client_port} */
    char daemon[256]; /* {daemon_name} */
};

void smtpd_milter_free(struct smtpd_session *s)
{
    struct smtpd_milter *m = s->mil;
    if (!m)
        return;
    spool_read_cancel(m->read);
    milter_sess_free(m->ms);
    free(m->rcpt);
    free(m);
    s->mil = NULL;
    s->milter_wait = 0;
}

/* smtpd_milter_macro - Sendmail's macro values from the session (Postfix's set). */
static const char *smtpd_milter_macro(void *arg, const char *name)
{
    struct smtpd_session *s = arg;
    struct smtpd_txn *tx = s->tx;
    static char buf[600];
    if (strcmp(name, "j") == 0)
        return s->srv->hostname;
    if (strcmp(name, "{daemon_name}") == 0)
        return s->mil->daemon;
    if (strcmp(name, "v") == 0)
        return "mta";
    if (strcmp(name, "_") == 0) {
        snprintf(buf, sizeof buf, "%s [%s]", s->name, s->addr);
        return buf;
    }
    if (strcmp(name, "{client_addr}") == 0)
        return s->addr;
    if (strcmp(name, "{client_name}") == 0)
        return s->name;
    if (strcmp(name, "{client_port}") == 0)
        return s->mil->port[0] ? s->mil->port : NULL;
    if (strcmp(name, "i") == 0)
        return tx && tx->msg ? tx->id : NULL;
    if (strcmp(name, "{auth_type}") == 0)
        return s->authenticated ? s->sasl_method : NULL;
    if (strcmp(name, "{auth_authen}") == 0)
        return s->authenticated && s->sasl_username ? s->sasl_username : NULL;
    if (strcmp(name, "{mail_addr}") == 0)
        return tx ? tx->sender : NULL;
    if (strcmp(name, "{mail_mailer}") == 0 || strcmp(name, "{rcpt_mailer}") == 0)
        return "smtp";
    if (strcmp(name, "{rcpt_addr}") == 0)
        return s->mil->rcpt;
    if (strcmp(name, "{rcpt_host}") == 0 || strcmp(name, "{mail_host}") == 0) {
        const char *a = name[2] == 'c' ? s->mil->rcpt : tx ? tx->sender : NULL;
        const char *at = a ? strrchr(a, '@') : NULL;
        return at ? at + 1 : NULL;
    }
    if (strcmp(name, "{tls_version}") == 0 && s->tls && s->tls_info[0]) {
        snprintf(buf, sizeof buf, "%.*s", (int)strcspn(s->tls_info, " "), s->tls_info);
        return buf; /* "TLSv1.3" from "TLSv1.3 with cipher ..." */
    }
    return NULL;
}

/* smtpd_milter_log - Postfix's "milter-reject"/"milter-discard"/"milter-hold" line. */
static void smtpd_milter_log(struct smtpd_session *s, const char *what, const char *text)
{
    struct smtpd_txn *tx = s->tx;
    char from[SMTPD_ADDR_MAX + 16] = "", to[SMTPD_ADDR_MAX + 16] = "";
    const char *rcpt = s->mil->rcpt      ? s->mil->rcpt
                       : tx && tx->nrcpt ? tx->rcpt[tx->nrcpt - 1].addr
                                         : NULL;
    if (tx && tx->sender)
        snprintf(from, sizeof from, " from=<%s>", tx->sender);
    if (rcpt)
        snprintf(to, sizeof to, " to=<%s>", rcpt);
    log_mail_pid("smtpd", s->log_pid, "%s: %s: %s from %s[%s]: %s;%s%s proto=%s%s%s%s",
                 tx && tx->msg ? tx->id : "NOQUEUE", what, s->mil->cmd, s->name, s->addr, text,
                 from, to, s->esmtp ? "ESMTP" : "SMTP", s->helo ? " helo=<" : "",
                 s->helo ? s->helo : "", s->helo ? ">" : "");
}

/* smtpd_milter_refused - count and log a refusal; the reply is the milter's text. */
static void smtpd_milter_refused(struct smtpd_session *s, const struct milter_result *r)
{
    counter_add(r->verdict == MILTER_TEMPFAIL ? CNT_MILTER_TEMPFAILED : CNT_MILTER_REJECTED, 1);
    smtpd_milter_log(s, "milter-reject", r->reply);
}

/* smtpd_milter_event_done - the answer to connect/HELO/MAIL/RCPT/DATA. */
static void smtpd_milter_event_done(void *arg, const struct milter_result *r)
{
    struct smtpd_session *s = arg;
    struct smtpd_milter *m = s->mil;
    s->milter_wait = 0;
    if (smtpd_state_final(s))
        return;
    switch (r->verdict) {
    case MILTER_DISCARD:
        m->discard = 1; /* the message is accepted and dropped at its end, as Postfix does */
        /* fall through */
    case MILTER_CONTINUE:
        m->ok(s);
        break;
    case MILTER_SHUTDOWN:
        smtpd_reply_close(s, "421 4.7.0 %s Service unavailable", s->srv->hostname);
        break;
    case MILTER_TEMPFAIL:
        if (strcmp(m->cmd, "CONNECT") == 0 && strncmp(r->reply, "421", 3) != 0) {
            /* as Postfix: the banner all the same; the later events get the reply */
            smtpd_milter_refused(s, r);
            m->ok(s);
            break;
        }
        /* fall through */
    default:
        smtpd_milter_refused(s, r);
        if (m->undo)
            m->undo(s);
        if (strcmp(m->cmd, "CONNECT") == 0 && r->reply[0] == '4') /* 421 */
            smtpd_reply_close(s, "421 %s Service unavailable - try again later", s->srv->hostname);
        else if (strcmp(m->cmd, "CONNECT") == 0) /* Postfix's banner for a refusal */
            smtpd_reply(s, "554 %s ESMTP not accepting connections", s->srv->hostname);
        else
            smtpd_reply(s, "%s", r->reply);
        break;
    }
    free(m->rcpt);
    m->rcpt = NULL;
    s->srv->resume(s, 1);
}

/* smtpd_milter_start - the session waits for an event: OK or UNDO when it is answered. */
static int smtpd_milter_start(struct smtpd_session *s, const char *cmd,
                              void (*ok)(struct smtpd_session *),
                              void (*undo)(struct smtpd_session *))
{
    if (!s->mil || !milter_active(s->mil->ms))
        return 0;
    s->mil->cmd = cmd;
    s->mil->ok = ok;
    s->mil->undo = undo;
    s->milter_wait = 1;
    bufferevent_disable(s->bev, EV_READ);
    return 1;
}

int smtpd_milter_connect(struct smtpd_session *s, void (*ok)(struct smtpd_session *))
{
    struct smtpd *srv = s->srv;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int port = 0;
    if (!srv->milters)
        return 0;
    struct smtpd_milter *m = calloc(1, sizeof *m);
    if (!m)
        return 0;
    s->mil = m;
    const char *dn = srv->conf->milter_macro_daemon_name;
    snprintf(m->daemon, sizeof m->daemon, "%s", *dn ? dn : srv->hostname);
    if (getpeername(bufferevent_getfd(s->bev), (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(m->port, sizeof m->port, "%d", port);
    m->ms = milter_sess_new(srv->base, srv->milters, smtpd_milter_macro, s);
    if (!m->ms) {
        smtpd_milter_free(s);
        return 0;
    }
    if (!smtpd_milter_start(s, "CONNECT", ok, NULL))
        return 0;
    milter_connect(m->ms, s->name, s->addr, port, smtpd_milter_event_done, s);
    return 1;
}

int smtpd_milter_helo(struct smtpd_session *s, const char *helo, void (*ok)(struct smtpd_session *),
                      void (*undo)(struct smtpd_session *))
{
    if (!smtpd_milter_start(s, "HELO", ok, undo))
        return 0;
    milter_helo(s->mil->ms, helo, smtpd_milter_event_done, s);
    return 1;
}

/* smtpd_milter_argv - "<ADDR>" and the ESMTP parameters of PARAMS as a NULL-ended vector in
 * BUF (at most 32 words). */
static void smtpd_milter_argv(const char *addr, const char *params, char *buf, size_t len,
                              char **argv)
{
    int n = 0;
    snprintf(buf, len, "<%s>%c%s", addr, 0, params ? params : "");
    argv[n++] = buf;
    char *p = buf + strlen(buf) + 1, *save = NULL;
    for (char *w = strtok_r(p, " ", &save); w && n < 32; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    argv[n] = NULL;
}

int smtpd_milter_mail(struct smtpd_session *s, const char *addr, const char *params,
                      void (*ok)(struct smtpd_session *), void (*undo)(struct smtpd_session *))
{
    char buf[SMTPD_ADDR_MAX + 2048], *argv[34];
    if (!smtpd_milter_start(s, "MAIL", ok, undo))
        return 0;
    s->mil->discard = 0;
    smtpd_milter_argv(addr, params, buf, sizeof buf, argv);
    milter_mail(s->mil->ms, argv, smtpd_milter_event_done, s);
    return 1;
}

int smtpd_milter_rcpt(struct smtpd_session *s, const char *addr, const char *params,
                      void (*ok)(struct smtpd_session *), void (*undo)(struct smtpd_session *))
{
    char buf[SMTPD_ADDR_MAX + 2048], *argv[34];
    if (!smtpd_milter_start(s, "RCPT", ok, undo))
        return 0;
    free(s->mil->rcpt);
    s->mil->rcpt = strdup(addr);
    smtpd_milter_argv(addr, params, buf, sizeof buf, argv);
    milter_rcpt(s->mil->ms, argv, smtpd_milter_event_done, s);
    return 1;
}

int smtpd_milter_data(struct smtpd_session *s, void (*ok)(struct smtpd_session *))
{
    if (!smtpd_milter_start(s, "DATA", ok, NULL))
        return 0;
    milter_data(s->mil->ms, smtpd_milter_event_done, s);
    return 1;
}

void smtpd_milter_abort(struct smtpd_session *s)
{
    if (s->mil) {
        spool_read_cancel(s->mil->read);
        s->mil->read = NULL;
        s->mil->discard = 0;
        milter_abort(s->mil->ms);
    }
}

/* --- end of message --- */

static void smtpd_milter_need(void *arg, long long off);

/* smtpd_milter_drained - the spool's streaming write is done: read on. */
static void smtpd_milter_drained(void *arg)
{
    struct smtpd_session *s = arg;
    if (s->mil)
        smtpd_milter_need(s, s->mil->off);
}

/* smtpd_milter_fail_eom - the message cannot be read back: 451, nothing queued. */
static void smtpd_milter_fail_eom(struct smtpd_session *s)
{
    log_mail_pid("smtpd", s->log_pid, "warning: %s: queue file read error: %s", s->tx->id,
                 strerror(errno ? errno : EIO));
    smtpd_enter_state(s, smtpd_state_idle(s));
    smtpd_txn_reset(s);
    smtpd_reply(s, "451 4.3.0 Error: queue file write error");
    s->srv->resume(s, 1);
}

/* smtpd_milter_read_done - a piece of the message for the milters. */
static void smtpd_milter_read_done(void *arg, struct evbuffer *out, int err)
{
    struct smtpd_session *s = arg;
    struct smtpd_milter *m = s->mil;
    m->read = NULL;
    if (err == EAGAIN && spool_msg_on_drain(s->tx->msg, smtpd_milter_drained, s))
        return;
    if (err == EAGAIN) {
        smtpd_milter_need(s, m->off);
        return;
    }
    if (err) {
        errno = err;
        smtpd_milter_fail_eom(s);
        return;
    }
    milter_content(m->ms, out);
}

/* smtpd_milter_need - the milters want the message from OFF. */
static void smtpd_milter_need(void *arg, long long off)
{
    struct smtpd_session *s = arg;
    s->mil->off = off;
    s->mil->read = spool_msg_read(s->tx->msg, off, SPOOL_READ_MAX, smtpd_milter_read_done, s);
    if (!s->mil->read) {
        errno = ENOMEM;
        smtpd_milter_fail_eom(s);
    }
}

/* smtpd_milter_addr - ADDR without its angle brackets, into BUF. */
static const char *smtpd_milter_addr(const char *a, char *buf, size_t len)
{
    size_t n = strlen(a);
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
        snprintf(buf, len, "%.*s", (int)(n - 2), a + 1);
    else
        snprintf(buf, len, "%s", a);
    return buf;
}

/* smtpd_milter_apply - the milters' changes into the transaction and the spool message:
 * 0, -1 on failure (451), -2 when the message grew past message_size_limit (552). */
static int smtpd_milter_apply(struct smtpd_session *s, const struct milter_result *r)
{
    struct smtpd_txn *tx = s->tx;
    char a[SMTPD_ADDR_MAX + 1];
    for (int i = 0; i < r->nmods; i++) {
        const struct milter_mod *md = &r->mods[i];
        smtpd_milter_addr(md->name, a, sizeof a);
        if (md->type == MILTER_MOD_CHGFROM) {
            char *n = strdup(a);
            if (!n)
                return -1;
            free(tx->sender);
            tx->sender = n;
        } else if (md->type == MILTER_MOD_ADDRCPT) {
            struct smtpd_rcpt_params rp;
            memset(&rp, 0, sizeof rp);
            if (smtpd_txn_add_rcpt(tx, a, &rp) < 0)
                return -1;
        } else if (md->type == MILTER_MOD_DELRCPT) {
            for (int k = 0; k < tx->nrcpt; k++) {
                if (strcasecmp(tx->rcpt[k].addr, a) != 0)
                    continue;
                free(tx->rcpt[k].addr);
                free(tx->rcpt[k].orcpt);
                memmove(&tx->rcpt[k], &tx->rcpt[k + 1],
                        (size_t)(tx->nrcpt - k - 1) * sizeof(tx->rcpt[0]));
                tx->nrcpt--;
                k--;
            }
        }
    }
    long long hlen = r->hdr_len;
    if (r->hdrs) {
        size_t nh = evbuffer_get_length(r->hdrs);
        if (spool_msg_set_front(tx->msg, r->hdrs, (size_t)hlen) < 0)
            return -1;
        hlen = (long long)nh;
    }
    if (r->body && spool_msg_replace_from(tx->msg, hlen, r->body) < 0)
        return -1;
    if (r->quarantine && spool_msg_set_hold(tx->msg) < 0)
        return -1;
    if (spool_msg_size(tx->msg) > s->srv->conf->message_size_limit)
        return -2;
    tx->stored = spool_msg_size(tx->msg);
    return 0;
}

/* smtpd_milter_eom_done - the milters' answer to the message. */
static void smtpd_milter_eom_done(void *arg, const struct milter_result *r)
{
    struct smtpd_session *s = arg;
    struct smtpd_milter *m = s->mil;
    struct smtpd_txn *tx = s->tx;
    char id[SPOOL_ID_SIZE];
    m->cmd = "END-OF-MESSAGE";
    snprintf(id, sizeof id, "%s", tx->id);
    if (r->verdict == MILTER_REJECT || r->verdict == MILTER_TEMPFAIL ||
        r->verdict == MILTER_SHUTDOWN) {
        smtpd_milter_refused(s, r);
        smtpd_enter_state(s, smtpd_state_idle(s));
        smtpd_txn_reset(s);
        if (r->verdict == MILTER_SHUTDOWN)
            smtpd_reply_close(s, "421 4.7.0 %s Service unavailable", s->srv->hostname);
        else
            smtpd_reply(s, "%s", r->reply);
        s->srv->resume(s, 1);
        return;
    }
    int rc = r->verdict == MILTER_DISCARD || m->discard ? 1 : smtpd_milter_apply(s, r);
    if (rc == 0 && tx->nrcpt == 0)
        rc = 1; /* every recipient deleted: nothing to deliver */
    if (rc != 0) {
        if (rc == 1) {
            counter_add(CNT_MILTER_DISCARDED, 1);
            smtpd_milter_log(s, "milter-discard", "milter triggers DISCARD action");
        }
        smtpd_enter_state(s, smtpd_state_idle(s));
        smtpd_txn_reset(s);
        if (rc == 1) /* as Postfix: the client is told it was queued */
            smtpd_reply(s, "250 2.0.0 Ok: queued as %s", id);
        else if (rc == -2)
            smtpd_reply(s, "552 5.3.4 Error: message file too big");
        else
            smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        s->srv->resume(s, 1);
        return;
    }
    counter_add(CNT_MILTER_ACCEPTED, 1);
    if (r->quarantine) {
        counter_add(CNT_MILTER_QUARANTINED, 1);
        smtpd_milter_log(s, "milter-hold",
                         r->quarantine_why[0] ? r->quarantine_why : "milter triggers HOLD action");
    }
    m->next(s);
}

int smtpd_milter_eom(struct smtpd_session *s, void (*next)(struct smtpd_session *s))
{
    struct smtpd_milter *m = s->mil;
    if (!m || !milter_active(m->ms))
        return 0;
    m->next = next;
    m->cmd = "END-OF-MESSAGE";
    smtpd_enter_state(s, SMTPD_STATE_COMMIT); /* not reading until the milters answer */
    bufferevent_disable(s->bev, EV_READ);
    milter_sess_set_queue_id(m->ms, s->tx->id);
    const struct conf *c = s->srv->conf;
    milter_message(m->ms, spool_msg_size(s->tx->msg), (size_t)c->header_size_limit,
                   c->message_size_limit, smtpd_milter_need, smtpd_milter_eom_done, s);
    return 1;
}
