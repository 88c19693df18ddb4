/*
 * smtpd_proto.c - the command table and its dispatcher. Each row says in which
 * phases a command proceeds, what it answers in the others (Postfix's 503
 * texts), whether submission_port lets it run before STARTTLS and AUTH, and
 * pairs an optional check_ (syntax or availability, answered first, as
 * Postfix orders its replies) with the proceed_ action. Replies and their
 * texts follow Postfix's smtpd.c; smtpd_helo_required = yes.
 * Not here: line reading and pipelining (smtpd_session.c), the body and the
 * commit (smtpd_txn.c, smtpd_data.c), the phase itself (smtpd_state.c).
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

/* smtpd_proto_banner - the 220 greeting. */
static void smtpd_proto_banner(struct smtpd_session *s)
{
    smtpd_reply(s, "220 %s ESMTP mta", s->srv->hostname);
}

void smtpd_proto_greet(struct smtpd_session *s)
{
    /* smtpd_milters: the connect event first, the banner once they have answered */
    if (!smtpd_milter_connect(s, smtpd_proto_banner))
        smtpd_proto_banner(s);
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

static void smtpd_proto_helo_reply(struct smtpd_session *s);
static void smtpd_proto_helo_undo(struct smtpd_session *s);

/* smtpd_proto_helo - HELO and EHLO: a new start, the transaction is reset. */
static void smtpd_proto_helo(struct smtpd_session *s, char *arg, int esmtp)
{
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
    smtpd_enter_state(s, smtpd_state_idle(s));
    if (!smtpd_milter_helo(s, s->helo ? s->helo : name, smtpd_proto_helo_reply,
                           smtpd_proto_helo_undo))
        smtpd_proto_helo_reply(s);
}

/* smtpd_proto_helo_undo - a milter refused HELO/EHLO: as if none was given (MAIL needs one). */
static void smtpd_proto_helo_undo(struct smtpd_session *s)
{
    free(s->helo);
    s->helo = NULL;
    smtpd_enter_state(s, smtpd_state_idle(s));
}

/* smtpd_proto_helo_reply - HELO's 250, or EHLO's with the extensions. */
static void smtpd_proto_helo_reply(struct smtpd_session *s)
{
    const struct conf *c = s->srv->conf;

    if (!s->esmtp) {
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

/* proceed_helo - HELO hostname. */
static void proceed_helo(struct smtpd_session *s, char *arg)
{
    smtpd_proto_helo(s, arg, 0);
}

/* proceed_ehlo - EHLO hostname. */
static void proceed_ehlo(struct smtpd_session *s, char *arg)
{
    smtpd_proto_helo(s, arg, 1);
}

/* proceed_mail_ok - MAIL is accepted (by the milters too). */
static void proceed_mail_ok(struct smtpd_session *s)
{
    smtpd_reply(s, "250 2.1.0 Ok");
}

/* proceed_mail_undo - a milter refused MAIL: no transaction. */
static void proceed_mail_undo(struct smtpd_session *s)
{
    smtpd_txn_reset(s);
    smtpd_enter_state(s, smtpd_state_idle(s));
}

/* proceed_rcpt_ok - RCPT is accepted (by the milters too). */
static void proceed_rcpt_ok(struct smtpd_session *s)
{
    smtpd_reply(s, "250 2.1.5 Ok");
}

/* proceed_rcpt_undo - a milter refused the recipient just added: it goes again. */
static void proceed_rcpt_undo(struct smtpd_session *s)
{
    struct smtpd_txn *tx = s->tx;
    if (!tx || tx->nrcpt == 0)
        return;
    tx->nrcpt--;
    free(tx->rcpt[tx->nrcpt].addr);
    free(tx->rcpt[tx->nrcpt].orcpt);
    if (tx->nrcpt == 0)
        smtpd_enter_state(s, SMTPD_STATE_MAIL);
}

/* proceed_mail - MAIL FROM:<sender> [params]. */
static void proceed_mail(struct smtpd_session *s, char *arg)
{
    const struct conf *c = s->srv->conf;
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256];
    const char *p, *end, *reply;
    struct smtpd_mail_params mp;
    int r;

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
    smtpd_enter_state(s, SMTPD_STATE_MAIL);
    if (!smtpd_milter_mail(s, addr, end, proceed_mail_ok, proceed_mail_undo))
        proceed_mail_ok(s);
}

/* proceed_rcpt - RCPT TO:<recipient> [params]. */
static void proceed_rcpt(struct smtpd_session *s, char *arg)
{
    const struct conf *c = s->srv->conf;
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256];
    const char *p, *end, *reply;
    struct smtpd_rcpt_params rp;
    struct smtpd_txn *tx = s->tx;
    int r;

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
    smtpd_enter_state(s, SMTPD_STATE_RCPT);
    if (!smtpd_milter_rcpt(s, addr, end, proceed_rcpt_ok, proceed_rcpt_undo))
        proceed_rcpt_ok(s);
}

/* check_data - DATA takes no argument (answered before the phase, as Postfix does). */
static int check_data(struct smtpd_session *s, char *arg)
{
    if (*smtpd_proto_trim(arg)) {
        smtpd_reply(s, "501 5.5.4 Syntax: DATA");
        return 0;
    }
    return 1;
}

/* proceed_data_ok - DATA is accepted (by the milters too): the 354, the body machine. */
static void proceed_data_ok(struct smtpd_session *s)
{
    smtpd_txn_body_start(s, 1);
    smtpd_enter_state(s, SMTPD_STATE_DATA);
    s->where = "DATA";
    smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* proceed_data - DATA: the 354, then the body machine reads. */
static void proceed_data(struct smtpd_session *s, char *arg)
{
    (void)arg;
    if (s->tx->bdat) {
        smtpd_reply(s, "503 5.5.1 Error: BDAT and DATA are mutually exclusive");
        return;
    }
    if (!smtpd_milter_data(s, proceed_data_ok))
        proceed_data_ok(s);
}

/* check_bdat - BDAT n [LAST] (RFC 3030): the count is kept, as a refused chunk is still
 * read past (its bytes must never be taken for commands). */
static int check_bdat(struct smtpd_session *s, char *arg)
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
        return 0;
    }
    s->where = "BDAT";
    s->bdat_arg_size = n;
    s->bdat_arg_last = last;
    return 1;
}

/* proceed_bdat - one chunk of the body; exactly n bytes follow, always consumed. */
static void proceed_bdat(struct smtpd_session *s, char *arg)
{
    long long n = s->bdat_arg_size;

    (void)arg;
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
    s->tx->bdat_last = s->bdat_arg_last;
    if (n == 0) {
        if (s->bdat_arg_last)
            smtpd_txn_end(s);
        else
            smtpd_reply(s, "250 2.0.0 Ok: 0 bytes");
        return;
    }
    smtpd_enter_state(s, SMTPD_STATE_BDAT);
}

void smtpd_proto_end_chunk(struct smtpd_session *s)
{
    if (s->tx->bdat_last) {
        smtpd_txn_end(s);
        return;
    }
    smtpd_enter_state(s, SMTPD_STATE_RCPT);
    s->cur_cmd = SMTPD_CMD_BDAT;
    smtpd_reply(s, "250 2.0.0 Ok: %lld bytes", s->tx->bdat_chunk);
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
static void proceed_vrfy(struct smtpd_session *s, char *arg)
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

/* check_starttls - STARTTLS takes no argument, needs a certificate and runs once. */
static int check_starttls(struct smtpd_session *s, char *arg)
{
    if (*smtpd_proto_trim(arg)) {
        smtpd_reply(s, "501 5.5.4 Syntax: STARTTLS");
        return 0;
    }
    if (!s->srv->tls) {
        /* ssl_disabled = yes: Postfix's exact reply when TLS is off (not offered in EHLO) */
        smtpd_reply(s, "502 5.5.1 Error: command not implemented");
        return 0;
    }
    if (s->tls) {
        smtpd_reply(s, "554 5.5.1 Error: TLS already active");
        return 0;
    }
    return 1;
}

/* proceed_starttls - the 220; the session forgets HELO, the transaction and any AUTH: the
 * client starts over with EHLO (RFC 3207 4.2). The session layers TLS on after the 220. */
static void proceed_starttls(struct smtpd_session *s, char *arg)
{
    (void)arg;
    if (!smtpd_tls_starttls(s))
        return;
    smtpd_txn_reset(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = 0;
    smtpd_sasl_reset(s);
    s->authenticated = 0;
    smtpd_enter_state(s, SMTPD_STATE_TLS);
}

/* check_auth - AUTH only where it is offered, and once. */
static int check_auth(struct smtpd_session *s, char *arg)
{
    (void)arg;
    if (!smtpd_sasl_offered(s)) {
        smtpd_reply(s, "503 5.5.1 Error: authentication not enabled");
        return 0;
    }
    /* before the phase's answers: an authenticated client has sent HELO (STARTTLS, the
     * only thing that forgets HELO, forgets the authentication too) */
    if (s->authenticated) {
        smtpd_reply(s, "503 5.5.1 Error: already authenticated");
        return 0;
    }
    return 1;
}

/* proceed_auth - AUTH mechanism [initial-response]. */
static void proceed_auth(struct smtpd_session *s, char *arg)
{
    smtpd_sasl_auth(s, smtpd_proto_trim(arg));
}

/* proceed_rset - RSET: the transaction goes, the session stays. */
static void proceed_rset(struct smtpd_session *s, char *arg)
{
    if (*smtpd_proto_trim(arg)) {
        smtpd_reply(s, "501 5.5.4 Syntax: RSET");
        return;
    }
    smtpd_txn_reset(s);
    smtpd_enter_state(s, smtpd_state_idle(s));
    smtpd_reply(s, "250 2.0.0 Ok");
}

/* proceed_noop - NOOP. */
static void proceed_noop(struct smtpd_session *s, char *arg)
{
    (void)arg;
    smtpd_reply(s, "250 2.0.0 Ok");
}

/* proceed_help - HELP. */
static void proceed_help(struct smtpd_session *s, char *arg)
{
    (void)arg;
    smtpd_reply(s, "214 2.0.0 Commands: HELO EHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP "
                   "VRFY HELP QUIT");
}

/* proceed_quit - QUIT: the 221 is the last reply. */
static void proceed_quit(struct smtpd_session *s, char *arg)
{
    (void)arg;
    smtpd_reply(s, "221 2.0.0 Bye");
    smtpd_enter_state(s, SMTPD_STATE_CLOSING);
}

/* proceed_unknown - anything else (ETRN included: there is no fast-flush service). */
static void proceed_unknown(struct smtpd_session *s, char *arg)
{
    (void)arg;
    smtpd_reply(s, "502 5.5.2 Error: command not recognized");
}

/* The phases in which commands are read (smtpd_session.c reads no command in the others). */
#define SMTPD_CMD_PHASES (SMTPD_S(CONNECT) | SMTPD_S(HELO) | SMTPD_S(MAIL) | SMTPD_S(RCPT))

/* Rules of a row (submission_port only: Postfix's master.cf submission entry). */
enum {
    SMTPD_RULE_PRE_TLS = 1,  /* allowed before STARTTLS (Postfix's SMTPD_CMD_FLAG_PRE_TLS) */
    SMTPD_RULE_NEED_AUTH = 2 /* refused before AUTH (smtpd_policy_submission_mail) */
};

/* An answer for a command sent in the wrong phase. */
struct smtpd_proto_refusal {
    unsigned states;
    const char *reply;
};

struct smtpd_proto_cmd {
    unsigned states; /* where proceed runs; any other command phase gets a refusal */
    struct smtpd_proto_refusal refuse[2];
    unsigned rules;                               /* SMTPD_RULE_* */
    int discard_chunk;                            /* refused BDAT: its bytes are still skipped */
    int (*check)(struct smtpd_session *, char *); /* before the phase: 0 = answered */
    void (*proceed)(struct smtpd_session *, char *);
};

/*
 * The table, by command id (the verbs, their pipelining and junk flags are the vocabulary in
 * smtpd_cmd.c). Milter hooks plug in here: connect at smtpd_proto_greet, and helo, mail, rcpt
 * and data between a row's checks and its proceed_ (smtpd_proto_dispatch), eom where
 * smtpd_txn_end has the whole message and before it commits.
 */
static const struct smtpd_proto_cmd smtpd_proto_cmds[SMTPD_CMD_COUNT] = {
    [SMTPD_CMD_HELO] =
        {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, SMTPD_RULE_PRE_TLS, 0, NULL, proceed_helo},
    [SMTPD_CMD_EHLO] =
        {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, SMTPD_RULE_PRE_TLS, 0, NULL, proceed_ehlo},
    [SMTPD_CMD_STARTTLS] = {SMTPD_S(CONNECT) | SMTPD_S(HELO),
                            {{SMTPD_S(MAIL) | SMTPD_S(RCPT),
                              "503 5.5.1 Error: MAIL transaction in progress"},
                             {0, NULL}},
                            SMTPD_RULE_PRE_TLS,
                            0,
                            check_starttls,
                            proceed_starttls},
    [SMTPD_CMD_AUTH] = {SMTPD_S(HELO),
                        {{SMTPD_S(CONNECT), "503 5.5.1 Error: send HELO/EHLO first"},
                         {SMTPD_S(MAIL) | SMTPD_S(RCPT),
                          "503 5.5.1 Error: MAIL transaction in progress"}},
                        0,
                        0,
                        check_auth,
                        proceed_auth},
    [SMTPD_CMD_MAIL] = {SMTPD_S(HELO),
                        {{SMTPD_S(CONNECT), "503 5.5.1 Error: send HELO/EHLO first"},
                         {SMTPD_S(MAIL) | SMTPD_S(RCPT), "503 5.5.1 Error: nested MAIL command"}},
                        SMTPD_RULE_NEED_AUTH,
                        0,
                        NULL,
                        proceed_mail},
    [SMTPD_CMD_RCPT] = {SMTPD_S(MAIL) | SMTPD_S(RCPT),
                        {{SMTPD_S(CONNECT) | SMTPD_S(HELO), "503 5.5.1 Error: need MAIL command"},
                         {0, NULL}},
                        0,
                        0,
                        NULL,
                        proceed_rcpt},
    [SMTPD_CMD_DATA] = {SMTPD_S(RCPT),
                        {{SMTPD_S(CONNECT) | SMTPD_S(HELO), "503 5.5.1 Error: need RCPT command"},
                         {SMTPD_S(MAIL), "554 5.5.1 Error: no valid recipients"}},
                        0,
                        0,
                        check_data,
                        proceed_data},
    [SMTPD_CMD_BDAT] = {SMTPD_S(RCPT),
                        {{SMTPD_S(CONNECT) | SMTPD_S(HELO), "503 5.5.1 Error: need RCPT command"},
                         {SMTPD_S(MAIL), "554 5.5.1 Error: no valid recipients"}},
                        0,
                        1,
                        check_bdat,
                        proceed_bdat},
    [SMTPD_CMD_RSET] = {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, 0, 0, NULL, proceed_rset},
    [SMTPD_CMD_NOOP] =
        {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, SMTPD_RULE_PRE_TLS, 0, NULL, proceed_noop},
    [SMTPD_CMD_VRFY] = {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, 0, 0, NULL, proceed_vrfy},
    [SMTPD_CMD_HELP] =
        {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, SMTPD_RULE_PRE_TLS, 0, NULL, proceed_help},
    [SMTPD_CMD_QUIT] =
        {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, SMTPD_RULE_PRE_TLS, 0, NULL, proceed_quit},
    [SMTPD_CMD_UNKNOWN] =
        {SMTPD_CMD_PHASES, {{0, NULL}, {0, NULL}}, SMTPD_RULE_PRE_TLS, 0, NULL, proceed_unknown},
};

int smtpd_proto_table_ok(void)
{
    for (int id = 0; id < SMTPD_CMD_COUNT; id++) {
        const struct smtpd_proto_cmd *c = &smtpd_proto_cmds[id];
        unsigned covered = c->states | c->refuse[0].states | c->refuse[1].states;
        if (!c->proceed || (covered & SMTPD_CMD_PHASES) != SMTPD_CMD_PHASES)
            return 0;
    }
    return 1;
}

/* smtpd_proto_refuse - the answer to C in the wrong phase; 1 when the command may proceed. */
static int smtpd_proto_refuse(struct smtpd_session *s, const struct smtpd_proto_cmd *c)
{
    unsigned bit = 1u << s->state;

    if (c->states & bit)
        return 1;
    for (int i = 0; i < 2; i++) {
        if (c->refuse[i].states & bit) {
            smtpd_reply(s, "%s", c->refuse[i].reply);
            return 0;
        }
    }
    log_fatal("smtpd", "command table: %s has no answer in state %s", s->where,
              smtpd_state_name(s->state));
}

/*
 * smtpd_proto_dispatch - one command, in Postfix's order of answers: submission_port's
 * rules, the row's check_ (syntax, availability), the phase, then proceed_. A junk command
 * counts against smtpd_junk_command_limit whatever its answer.
 */
void smtpd_proto_dispatch(struct smtpd_session *s, enum smtpd_cmd_id id, const char *arg)
{
    const struct smtpd_proto_cmd *c = &smtpd_proto_cmds[id];
    char *a = (char *)arg; /* the line buffer is the session's: handlers may trim it */

    s->where = smtpd_cmd_defs[id].name;
    if (s->submission && !(c->rules & SMTPD_RULE_PRE_TLS) && !s->tls)
        smtpd_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
    else if (s->submission && (c->rules & SMTPD_RULE_NEED_AUTH) && !s->authenticated)
        smtpd_policy_submission_mail(s, arg);
    else if (c->check && !c->check(s, a))
        ;
    else if (!smtpd_proto_refuse(s, c)) {
        if (c->discard_chunk)
            s->bdat_discard = s->bdat_arg_size;
    } else {
        /* milter events (helo, mail, rcpt, data) come inside proceed_, after its own checks,
         * before its 250: the order Postfix uses (smtpd_milter.c) */
        c->proceed(s, a);
    }
    if (smtpd_cmd_defs[id].flags & SMTPD_CMDF_JUNK)
        smtpd_reply_junk(s);
}
