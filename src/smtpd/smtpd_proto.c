/*
 * smtpd_proto.c - the command table: each command pairs a check (state and
 * syntax, answered with Postfix's reply) with an action. Replies and their
 * texts follow Postfix's smtpd.c; smtpd_helo_required = yes.
 * Not here: line reading and pipelining (smtpd_session.c), the body and the
 * commit (smtpd_txn.c, smtpd_data.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "smtpd_int.h"

void smtpd_proto_greet(struct smtpd_session *s)
{
    smtpd_reply(s, "220 %s ESMTP mta", s->srv->hostname);
}

/* smtpd_proto_trim - drop trailing blanks of ARG in place (the line buffer is ours). */
static char *smtpd_proto_trim(const char *arg)
{
    char *a = (char *)arg;
    size_t n = strlen(a);
    while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
        a[--n] = 0;
    return a;
}

/* smtpd_proto_helo - HELO and EHLO: a new start, the transaction is reset. */
static void smtpd_proto_helo(struct smtpd_session *s, const char *arg, int esmtp)
{
    const struct conf *c = s->srv->conf;
    char *name = smtpd_proto_trim(arg);

    if (!*name) {
        smtpd_reply(s, "501 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    smtpd_txn_reset(s);
    free(s->helo);
    /* the Received: header, the envelope and the log get Postfix's printable form */
    s->helo = strdup(name);
    if (s->helo)
        smtpd_data_helo_name(s->helo);
    s->esmtp = esmtp;
    if (!esmtp) {
        smtpd_reply(s, "250 %s", s->srv->hostname);
        return;
    }
    /* Postfix's order; STARTTLS and AUTH join here when TLS/SASL are configured */
    smtpd_reply(s, "250-%s", s->srv->hostname);
    smtpd_reply(s, "250-PIPELINING");
    smtpd_reply(s, "250-SIZE %lld", c->message_size_limit);
    smtpd_reply(s, "250-VRFY");
    if (s->srv->tls && !s->tls)
        smtpd_reply(s, "250-STARTTLS");
    if (smtpd_sasl_offered(s) && !s->authenticated)
        smtpd_reply(s, "250-AUTH %s", s->srv->sasl_mechs);
    smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
    smtpd_reply(s, "250-8BITMIME");
    smtpd_reply(s, "250-DSN");
    smtpd_reply(s, "250-SMTPUTF8");
    smtpd_reply(s, "250 CHUNKING");
}

/* smtpd_proto_prefix - skip "FROM:" / "TO:" (case-insensitive); NULL when absent. */
static const char *smtpd_proto_prefix(const char *arg, const char *word)
{
    size_t n = strlen(word);
    if (strncasecmp(arg, word, n) != 0)
        return NULL;
    return arg + n;
}

/* smtpd_proto_mail - MAIL FROM:<sender> [params]. */
static void smtpd_proto_mail(struct smtpd_session *s, const char *arg)
{
    const struct conf *c = s->srv->conf;
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256];
    const char *p, *end, *reply;
    struct smtpd_mail_params mp;
    int r;

    if (!s->helo) {
        smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (s->tx) {
        smtpd_reply(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (!(p = smtpd_proto_prefix(smtpd_proto_trim(arg), "FROM:")) || !*p) {
        smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    r = smtpd_addr_parse(p, 1, 1, addr, &end);
    if (r == SMTPD_ADDR_OK && *end && *end != ' ')
        r = SMTPD_ADDR_ESYNTAX;
    if (r != SMTPD_ADDR_OK) {
        smtpd_reply(s, "501 5.1.7 Bad sender address syntax");
        return;
    }
    if (smtpd_mail_params_parse(end, &mp, rbuf, sizeof(rbuf), &reply) < 0) {
        smtpd_reply(s, "%s", reply);
        return;
    }
    if (mp.auth_given && !smtpd_sasl_offered(s)) { /* AUTH= only where AUTH is offered */
        const char *a = strcasestr(end, "AUTH=");
        smtpd_reply(s, "555 5.5.4 Unsupported option: %.*s", a ? (int)strcspn(a, " ") : 4,
                    a ? a : "AUTH");
        return;
    }
    if (!mp.smtputf8 && smtpd_addr_has_8bit(addr)) {
        smtpd_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        return;
    }
    if (mp.size > c->message_size_limit) {
        smtpd_reply_reject(s, "MAIL", NULL, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    if (spool_unavailable(s->srv->spool)) {
        /* read-only or vanished volume (logged by the spool): as Postfix when cleanup cannot
         * create the queue file, at MAIL, before the client sends a body in vain */
        smtpd_reply_reject(s, "MAIL", NULL, "451 4.3.0 Error: queue file write error");
        return;
    }
    if (!spool_space_ok(s->srv->spool, mp.size > 0 ? mp.size : 0)) {
        smtpd_reply_reject(s, "MAIL", NULL, "452 4.3.1 Insufficient system storage");
        return;
    }
    if (!(s->tx = smtpd_txn_new()) || !(s->tx->sender = strdup(addr))) {
        smtpd_txn_reset(s);
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        return;
    }
    s->tx->mp = mp;
    smtpd_reply(s, "250 2.1.0 Ok");
}

/* smtpd_proto_rcpt - RCPT TO:<recipient> [params]. */
static void smtpd_proto_rcpt(struct smtpd_session *s, const char *arg)
{
    const struct conf *c = s->srv->conf;
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256];
    const char *p, *end, *reply;
    struct smtpd_rcpt_params rp;
    struct smtpd_txn *tx = s->tx;
    int r;

    if (!tx) {
        smtpd_reply(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (!(p = smtpd_proto_prefix(smtpd_proto_trim(arg), "TO:")) || !*p) {
        smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    r = smtpd_addr_parse(p, 0, 1, addr, &end);
    if (r == SMTPD_ADDR_OK && *end && *end != ' ')
        r = SMTPD_ADDR_ESYNTAX;
    if (r != SMTPD_ADDR_OK) {
        smtpd_reply(s, "501 5.1.3 Bad recipient address syntax");
        return;
    }
    if (smtpd_rcpt_params_parse(end, &rp, rbuf, sizeof(rbuf), &reply) < 0) {
        smtpd_reply(s, "%s", reply);
        return;
    }
    if (!tx->mp.smtputf8 && smtpd_addr_has_8bit(addr)) {
        smtpd_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        return;
    }
    if (tx->nrcpt >= c->smtpd_recipient_limit) {
        smtpd_reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    if (!smtpd_policy_relay_ok(s, addr)) {
        smtpd_reply_reject(s, "RCPT", addr, "554 5.7.1 <%s>: Relay access denied", addr);
        return;
    }
    if (!tx->msg) {
        if (!(tx->msg = spool_msg_new(s->srv->spool))) {
            smtpd_reply(s, "451 4.3.0 Error: queue file write error");
            return;
        }
        snprintf(tx->id, sizeof(tx->id), "%s", spool_msg_id(tx->msg));
        if (s->authenticated)
            log_mail_pid("smtpd", s->log_pid, "%s: client=%s[%s], sasl_method=%s, sasl_username=%s",
                         tx->id, s->name, s->addr, s->sasl_method,
                         s->sasl_username ? s->sasl_username : "");
        else
            log_mail_pid("smtpd", s->log_pid, "%s: client=%s[%s]", tx->id, s->name, s->addr);
    }
    if (smtpd_txn_add_rcpt(tx, addr, &rp) < 0) {
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        return;
    }
    smtpd_reply(s, "250 2.1.5 Ok");
}

/* smtpd_proto_need_rcpt - the DATA/BDAT precondition; 0 when a reply was sent. */
static int smtpd_proto_need_rcpt(struct smtpd_session *s)
{
    if (!s->tx) {
        smtpd_reply(s, "503 5.5.1 Error: need RCPT command");
        return 0;
    }
    if (s->tx->nrcpt == 0) {
        smtpd_reply(s, "554 5.5.1 Error: no valid recipients");
        return 0;
    }
    return 1;
}

/* smtpd_proto_data - DATA: the 354, then the body machine reads. */
static void smtpd_proto_data(struct smtpd_session *s, const char *arg)
{
    if (*smtpd_proto_trim(arg)) {
        smtpd_reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (!smtpd_proto_need_rcpt(s))
        return;
    if (s->tx->bdat) {
        smtpd_reply(s, "503 5.5.1 Error: BDAT and DATA are mutually exclusive");
        return;
    }
    smtpd_txn_body_start(s, 1);
    s->state = SMTPD_STATE_DATA;
    s->where = "DATA";
    smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* smtpd_proto_bdat - BDAT n [LAST] (RFC 3030): exactly n bytes follow, always consumed. */
static void smtpd_proto_bdat(struct smtpd_session *s, const char *arg)
{
    char *a = smtpd_proto_trim(arg), *e;
    long long n = 0;
    int last = 0, digits = 0;

    for (e = a; *e >= '0' && *e <= '9' && digits < 18; e++, digits++)
        n = n * 10 + (*e - '0');
    if (digits > 0 && *e == ' ') {
        while (*e == ' ')
            e++;
        if (strcasecmp(e, "LAST") == 0)
            last = 1, e += 4;
    }
    if (digits == 0 || *e) {
        smtpd_reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
        return;
    }
    s->where = "BDAT";
    if (!smtpd_proto_need_rcpt(s)) {
        s->bdat_discard = n; /* the chunk must never be read as commands */
        return;
    }
    if (!s->tx->bdat) {
        if (s->tx->body_active) {
            s->bdat_discard = n;
            smtpd_reply(s, "503 5.5.1 Error: BDAT and DATA are mutually exclusive");
            return;
        }
        smtpd_txn_body_start(s, 0);
        s->tx->bdat = 1;
    }
    s->tx->bdat_left = n;
    s->tx->bdat_chunk = n;
    s->tx->bdat_last = last;
    if (n == 0) {
        if (last)
            smtpd_txn_end(s);
        else
            smtpd_reply(s, "250 2.0.0 Ok: 0 bytes");
        return;
    }
    s->state = SMTPD_STATE_BDAT;
}

/* smtpd_proto_local_part - 1 when A is a bare RFC 5321 dot-atom local part ("postmaster"). */
static int smtpd_proto_local_part(const char *a)
{
    size_t n = strlen(a);

    if (n == 0 || n > 64 || a[0] == '.' || a[n - 1] == '.' || strstr(a, ".."))
        return 0;
    for (; *a; a++)
        if (!isalnum((unsigned char)*a) && !strchr("!#$%&'*+-/=?^_`{|}~.", *a))
            return 0;
    return 1;
}

/*
 * smtpd_proto_vrfy - VRFY: Postfix without a local recipient table answers 252,
 * for a full address and for a bare local part alike (RFC 5321 3.5.3).
 */
static void smtpd_proto_vrfy(struct smtpd_session *s, const char *arg)
{
    char addr[SMTPD_ADDR_MAX + 1];
    const char *end;
    char *a = smtpd_proto_trim(arg);

    if (!*a) {
        smtpd_reply(s, "501 5.5.4 Syntax: VRFY address");
        return;
    }
    if (smtpd_proto_local_part(a)) {
        smtpd_reply(s, "252 2.0.0 %s", a);
        return;
    }
    if (smtpd_addr_parse(a, 0, 1, addr, &end) != SMTPD_ADDR_OK || *end) {
        smtpd_reply(s, "501 5.1.3 Bad recipient address syntax");
        return;
    }
    smtpd_reply(s, "252 2.0.0 %s", addr);
}

void smtpd_proto_dispatch(struct smtpd_session *s, enum smtpd_cmd_id id, const char *arg)
{
    s->where = smtpd_cmd_defs[id].name;
    if (s->submission && !smtpd_policy_submission(s, id, arg))
        return;
    switch (id) {
    case SMTPD_CMD_HELO:
        smtpd_proto_helo(s, arg, 0);
        break;
    case SMTPD_CMD_EHLO:
        smtpd_proto_helo(s, arg, 1);
        break;
    case SMTPD_CMD_STARTTLS:
        smtpd_tls_starttls(s, smtpd_proto_trim(arg));
        break;
    case SMTPD_CMD_AUTH:
        smtpd_sasl_auth(s, smtpd_proto_trim(arg));
        break;
    case SMTPD_CMD_MAIL:
        smtpd_proto_mail(s, arg);
        break;
    case SMTPD_CMD_RCPT:
        smtpd_proto_rcpt(s, arg);
        break;
    case SMTPD_CMD_DATA:
        smtpd_proto_data(s, arg);
        break;
    case SMTPD_CMD_BDAT:
        smtpd_proto_bdat(s, arg);
        break;
    case SMTPD_CMD_RSET:
        if (*smtpd_proto_trim(arg)) {
            smtpd_reply(s, "501 5.5.4 Syntax: RSET");
            break;
        }
        smtpd_txn_reset(s);
        smtpd_reply(s, "250 2.0.0 Ok");
        break;
    case SMTPD_CMD_NOOP:
        smtpd_reply(s, "250 2.0.0 Ok");
        break;
    case SMTPD_CMD_VRFY:
        smtpd_proto_vrfy(s, arg);
        break;
    case SMTPD_CMD_HELP:
        smtpd_reply(s, "214 2.0.0 Commands: HELO EHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP "
                       "VRFY HELP QUIT");
        break;
    case SMTPD_CMD_QUIT:
        smtpd_reply(s, "221 2.0.0 Bye");
        s->close_after = 1;
        break;
    default:
        smtpd_reply(s, "502 5.5.2 Error: command not recognized");
        break;
    }
}
