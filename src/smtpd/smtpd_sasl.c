/*
 * smtpd_sasl.c - SMTP AUTH (RFC 4954) over Cyrus SASL: the EHLO mechanism
 * list, AUTH with or without an initial response, 334 challenges, the 235 and
 * 535 replies and the failure log line as Postfix words them. A failed AUTH is
 * answered after the error delay (the session's timer, never a sleep) and
 * counts as an error, so smtpd_hard_error_limit closes a guessing client.
 *
 * Cyrus is initialised once per process with the application name
 * smtpd_sasl_path (it reads NAME.conf) and, when smtpd_sasl_config_dir is
 * set, a SASL_CB_GETCONFPATH callback pointing there. No SASL security layer
 * is negotiated (max_ssf 0), as in Postfix: TLS protects the session.
 * The password check runs inline: with auxprop/sasldb it is a local lookup.
 * Not here: the relay decision (smtpd_policy.c reads s->authenticated).
 */
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "smtpd_int.h"

static int smtpd_sasl_ready;      /* sasl_server_init succeeded (process-wide) */
static char smtpd_sasl_dir[1024]; /* smtpd_sasl_config_dir, for the callback */

/* smtpd_sasl_confpath_cb - where NAME.conf lives (smtpd_sasl_config_dir). */
static int smtpd_sasl_confpath_cb(void *ctx, const char **path)
{
    (void)ctx;
    *path = smtpd_sasl_dir;
    return SASL_OK;
}

/* smtpd_sasl_log_cb - Cyrus's own complaints (bad config, missing sasldb) into the mail log. */
static int smtpd_sasl_log_cb(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level <= SASL_LOG_WARN)
        log_mail("smtpd", "warning: SASL: %s", msg ? msg : "");
    return SASL_OK;
}

/* smtpd_sasl_conn_new - a server connection with Postfix's security properties. */
static sasl_conn_t *smtpd_sasl_conn_new(struct smtpd *srv)
{
    sasl_conn_t *conn = NULL;
    sasl_security_properties_t sp;

    if (sasl_server_new("smtp", srv->hostname, NULL, NULL, NULL, NULL, 0, &conn) != SASL_OK)
        return NULL;
    memset(&sp, 0, sizeof(sp));
    sp.max_ssf = 0; /* no SASL security layer */
    sp.maxbufsize = 0;
    sp.security_flags = SASL_SEC_NOANONYMOUS;
    sasl_setprop(conn, SASL_SEC_PROPS, &sp);
    return conn;
}

int smtpd_sasl_init(struct smtpd *srv, char **err)
{
    static sasl_callback_t cbs[] = {
        {SASL_CB_LOG, (int (*)(void))(void (*)(void))smtpd_sasl_log_cb, NULL},
        {SASL_CB_GETCONFPATH, (int (*)(void))(void (*)(void))smtpd_sasl_confpath_cb, NULL},
        {SASL_CB_LIST_END, NULL, NULL},
    };
    const struct conf *c = srv->conf;
    const char *list = NULL;
    unsigned len = 0;
    int count = 0, r;
    sasl_conn_t *conn;

    *err = NULL;
    if (!smtpd_sasl_ready) {
        if (*c->smtpd_sasl_config_dir) {
            snprintf(smtpd_sasl_dir, sizeof(smtpd_sasl_dir), "%s", c->smtpd_sasl_config_dir);
        } else { /* the Cyrus default: drop our callback */
            cbs[1].id = SASL_CB_LIST_END;
        }
        if ((r = sasl_server_init(cbs, c->smtpd_sasl_path)) != SASL_OK) {
            if (asprintf(err, "SASL: cannot initialise (%s): %s", c->smtpd_sasl_path,
                         sasl_errstring(r, NULL, NULL)) < 0)
                *err = NULL;
            return -1;
        }
        smtpd_sasl_ready = 1;
    }
    if (!(conn = smtpd_sasl_conn_new(srv)) ||
        sasl_listmech(conn, NULL, "", " ", "", &list, &len, &count) != SASL_OK || count == 0) {
        if (asprintf(err, "SASL: no authentication mechanism available (check %s.conf%s%s)",
                     c->smtpd_sasl_path, *c->smtpd_sasl_config_dir ? " in " : "",
                     c->smtpd_sasl_config_dir) < 0)
            *err = NULL;
        if (conn)
            sasl_dispose(&conn);
        return -1;
    }
    snprintf(srv->sasl_mechs, sizeof(srv->sasl_mechs), "%s", list);
    sasl_dispose(&conn);
    srv->sasl = 1;
    return 0;
}

int smtpd_sasl_offered(const struct smtpd_session *s)
{
    return s->srv->sasl && (s->tls || !s->srv->conf->smtpd_tls_auth_only);
}

void smtpd_sasl_reset(struct smtpd_session *s)
{
    if (s->sasl_conn) {
        sasl_conn_t *conn = s->sasl_conn;
        sasl_dispose(&conn);
        s->sasl_conn = NULL;
    }
    s->sasl_active = 0;
    free(s->sasl_username);
    s->sasl_username = NULL;
}

/* smtpd_sasl_end - drop the exchange (not the authenticated identity). */
static void smtpd_sasl_end(struct smtpd_session *s)
{
    if (s->sasl_conn) {
        sasl_conn_t *conn = s->sasl_conn;
        sasl_dispose(&conn);
        s->sasl_conn = NULL;
    }
    s->sasl_active = 0;
}

/* smtpd_sasl_failed - log, 535 after the error delay, forget the exchange. */
static void smtpd_sasl_failed(struct smtpd_session *s, int r)
{
    const char *why = sasl_errstring(r, NULL, NULL);

    log_mail("smtpd", "warning: %s[%s]: SASL %s authentication failed: %s", s->name, s->addr,
             s->sasl_method, why);
    smtpd_sasl_end(s);
    smtpd_reply(s, "535 5.7.8 Error: authentication failed: %s", why);
    s->delay_pending = 1; /* slows down password guessing; the loop is never blocked */
}

/* smtpd_sasl_result - act on a sasl_server_start/step result. */
static void smtpd_sasl_result(struct smtpd_session *s, int r, const char *out, unsigned outlen)
{
    if (r == SASL_CONTINUE) {
        size_t cap = ((size_t)outlen + 2) / 3 * 4 + 1;
        char *enc = malloc(cap);
        unsigned elen = 0;
        if (!enc || sasl_encode64(out, outlen, enc, (unsigned)cap, &elen) != SASL_OK) {
            free(enc);
            smtpd_sasl_end(s);
            smtpd_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
            return;
        }
        s->sasl_active = 1;
        smtpd_reply(s, "334 %s", enc);
        free(enc);
        return;
    }
    if (r == SASL_OK) {
        const void *user = NULL;
        sasl_getprop(s->sasl_conn, SASL_USERNAME, &user);
        free(s->sasl_username);
        s->sasl_username = strdup(user ? (const char *)user : "");
        s->authenticated = 1;
        smtpd_sasl_end(s);
        smtpd_reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    smtpd_sasl_failed(s, r);
}

/* smtpd_sasl_decode - base64 TEXT into a malloc'd buffer; -1 when invalid. */
static int smtpd_sasl_decode(const char *text, char **buf, unsigned *len)
{
    size_t n = strlen(text), cap = n / 4 * 3 + 4;

    *len = 0;
    if (!(*buf = malloc(cap)))
        return -1;
    if (n == 0)
        return 0;
    if (sasl_decode64(text, (unsigned)n, *buf, (unsigned)cap, len) != SASL_OK) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

void smtpd_sasl_auth(struct smtpd_session *s, const char *arg)
{
    char mech[32], *init = NULL;
    const char *out = NULL, *sp;
    unsigned outlen = 0, inlen = 0;
    size_t n;
    int r;

    if (!smtpd_sasl_offered(s)) {
        smtpd_reply(s, "503 5.5.1 Error: authentication not enabled");
        return;
    }
    if (!s->helo) {
        smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (s->authenticated) {
        smtpd_reply(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (s->tx) {
        smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    sp = strchr(arg, ' ');
    n = sp ? (size_t)(sp - arg) : strlen(arg);
    if (n == 0 || n >= sizeof(mech)) {
        smtpd_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    memcpy(mech, arg, n);
    mech[n] = 0;
    for (char *p = mech; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    snprintf(s->sasl_method, sizeof(s->sasl_method), "%s", mech);
    while (sp && *sp == ' ')
        sp++;
    if (sp && *sp) { /* initial response; "=" is an empty one (RFC 4954) */
        if (strcmp(sp, "=") == 0) {
            init = calloc(1, 1);
        } else if (smtpd_sasl_decode(sp, &init, &inlen) < 0) {
            smtpd_reply(s, "501 5.5.2 Cannot decode AUTH parameter %.64s", sp);
            return;
        }
        if (!init) {
            smtpd_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
            return;
        }
    }
    if (!s->sasl_conn && !(s->sasl_conn = smtpd_sasl_conn_new(s->srv))) {
        free(init);
        smtpd_reply(s, "454 4.7.0 Temporary authentication failure: no SASL connection");
        return;
    }
    r = sasl_server_start(s->sasl_conn, mech, init, inlen, &out, &outlen);
    free(init);
    smtpd_sasl_result(s, r, out, outlen);
}

void smtpd_sasl_response(struct smtpd_session *s, const char *line)
{
    const char *out = NULL;
    unsigned outlen = 0, inlen = 0;
    char *in = NULL;
    int r;

    if (strcmp(line, "*") == 0) {
        smtpd_sasl_end(s);
        smtpd_reply(s, "501 5.7.0 Authentication aborted");
        return;
    }
    if (smtpd_sasl_decode(line, &in, &inlen) < 0) {
        smtpd_sasl_end(s);
        smtpd_reply(s, "501 5.5.2 Invalid base64 data in continued response");
        return;
    }
    r = sasl_server_step(s->sasl_conn, in, inlen, &out, &outlen);
    free(in);
    smtpd_sasl_result(s, r, out, outlen);
}
