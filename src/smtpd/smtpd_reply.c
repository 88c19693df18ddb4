/*
 * smtpd_reply.c - every reply goes through here: it lands in the session's
 * batch buffer (flushed once per pipelined batch), 4xx/5xx replies count as
 * errors (CNT_REJECTED, soft limit -> delayed reply, hard limit -> 421 and
 * close), and policy rejects are logged as Postfix logs them.
 * A leaf: it changes no phase but CLOSING (smtpd_reply_close).
 * Not here: choosing the reply (smtpd_proto.c, smtpd_txn.c).
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "smtpd_int.h"

/* smtpd_reply_put - append one reply line; returns its code (0 when not a final line). */
static int smtpd_reply_put(struct smtpd_session *s, const char *text)
{
    size_t n = strlen(text);
    evbuffer_add(s->out, text, n);
    evbuffer_add(s->out, "\r\n", 2);
    if (n >= 4 && text[3] == '-')
        return 0;
    if (n < 3 || text[0] < '1' || text[0] > '5')
        return 0;
    return (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
}

void smtpd_vreply(struct smtpd_session *s, const char *fmt, va_list ap)
{
    char buf[1024];
    int code;

    vsnprintf(buf, sizeof(buf), fmt, ap);
    code = smtpd_reply_put(s, buf);
    if (code == 0)
        return;
    if (code < 300 && s->cur_cmd >= 0) {
        smtpd_count_inc(&s->cnt_ok[s->cur_cmd]);
        s->cur_cmd = -1;
    }
    if (code >= 300)
        s->cur_cmd = code < 400 ? s->cur_cmd : -1;
    if (code < 400)
        return;
    counter_add(CNT_REJECTED, 1);
    smtpd_reply_error(s);
}

void smtpd_reply_error(struct smtpd_session *s)
{
    const struct conf *c = s->srv->conf;

    smtpd_count_inc(&s->errors);
    if (smtpd_state_final(s))
        return; /* the final reply is chosen already */
    if (s->errors >= c->smtpd_hard_error_limit) {
        log_mail_pid("smtpd", s->log_pid, "too many errors after %s from %s[%s]", s->where, s->name,
                     s->addr);
        smtpd_reply_close(s, "421 4.7.0 %s Error: too many errors", s->srv->hostname);
    } else if (s->errors >= c->smtpd_soft_error_limit && c->smtpd_error_sleep_time > 0) {
        s->delay_pending = 1; /* smtpd_session_process waits before it flushes */
    }
}

void smtpd_reply_junk(struct smtpd_session *s)
{
    smtpd_count_inc(&s->junk);
    if (s->junk > s->srv->conf->smtpd_junk_command_limit)
        smtpd_reply_error(s);
}

void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    smtpd_vreply(s, fmt, ap);
    va_end(ap);
}

/*
 * smtpd_reply_vreject - the reply and its log line, in Postfix's log_whatsup order:
 * "ID: reject: CMD from name[addr]: REPLY; from=<S> to=<R> proto=P helo=<H>". from= and
 * to= only when known; proto= is Postfix's session protocol (SMTP or ESMTP: the S and A
 * of TLS and AUTH go in the Received: header only).
 */
__attribute__((format(printf, 5, 0))) static void
smtpd_reply_vreject(struct smtpd_session *s, const char *cmd, const char *sender, const char *rcpt,
                    const char *fmt, va_list ap)
{
    char buf[1024];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    smtpd_reply_log_reject(s, cmd, sender, rcpt, buf);
    smtpd_reply(s, "%s", buf);
}

void smtpd_reply_log_reject(struct smtpd_session *s, const char *cmd, const char *sender,
                            const char *rcpt, const char *text)
{
    char from[SMTPD_ADDR_MAX + 16] = "", to[SMTPD_ADDR_MAX + 16] = "";

    if (sender)
        snprintf(from, sizeof(from), " from=<%s>", sender);
    if (rcpt)
        snprintf(to, sizeof(to), " to=<%s>", rcpt);
    /* Postfix: helo= only once the client has given one */
    log_mail_pid("smtpd", s->log_pid, "%s: reject: %s from %s[%s]: %s;%s%s proto=%s%s%s%s",
                 s->tx && s->tx->msg ? s->tx->id : "NOQUEUE", cmd, s->name, s->addr, text, from, to,
                 s->esmtp ? "ESMTP" : "SMTP", s->helo ? " helo=<" : "", s->helo ? s->helo : "",
                 s->helo ? ">" : "");
}

void smtpd_reply_reject(struct smtpd_session *s, const char *cmd, const char *rcpt, const char *fmt,
                        ...)
{
    va_list ap;

    va_start(ap, fmt);
    smtpd_reply_vreject(s, cmd, s->tx ? s->tx->sender : NULL, rcpt, fmt, ap);
    va_end(ap);
}

void smtpd_reply_reject_from(struct smtpd_session *s, const char *cmd, const char *sender,
                             const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    smtpd_reply_vreject(s, cmd, sender, NULL, fmt, ap);
    va_end(ap);
}

void smtpd_reply_close(struct smtpd_session *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (smtpd_state_final(s))
        return; /* one final reply only */
    smtpd_reply_put(s, buf);
    smtpd_enter_state(s, SMTPD_STATE_CLOSING); /* the session closes once it is flushed */
}
