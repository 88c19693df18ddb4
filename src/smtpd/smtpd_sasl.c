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
 *
 * sasl_server_start/step (the password check: saslauthd, PAM, LDAP, SQL may
 * take seconds) run on a small worker pool, never on the event loop. While a
 * step is in flight the job owns the sasl_conn_t (one thread at a time uses
 * it) and the session stops reading, as during a commit; the result comes
 * back on the loop to the session found by its numeric id, which goes on
 * through srv->resume. A session that is gone (or no longer waits) by then is
 * not touched: the job disposes of the connection itself.
 * Cyrus gets real pthread mutexes (sasl_set_mutex) because several
 * connections are now used by several threads at once.
 * Not here: the relay decision (smtpd_policy.c reads s->authenticated).
 */
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/workers.h"
#include "smtpd_int.h"

#define SMTPD_SASL_THREADS 2 /* concurrent password checks; more sessions queue */

/* One AUTH step on a worker: the job owns CONN until its done() runs on the loop. */
struct smtpd_sasl_job {
    struct smtpd *srv;
    uint64_t session; /* looked up again on the loop: the session may be gone */
    sasl_conn_t *conn;
    int start; /* sasl_server_start (else sasl_server_step) */
    char mech[32];
    char *in; /* client data (NULL: no initial response); wiped after use */
    unsigned inlen;
    int r;     /* the SASL result */
    char *out; /* a copy of the challenge on SASL_CONTINUE */
    unsigned outlen;
};

static int smtpd_sasl_ready;      /* sasl_server_init succeeded (process-wide) */
static char smtpd_sasl_dir[1024]; /* smtpd_sasl_config_dir, for the callback */

/* smtpd_sasl_confpath_cb - where NAME.conf lives (smtpd_sasl_config_dir). */
static int smtpd_sasl_confpath_cb(void *ctx, const char **path)
{
    (void)ctx;
    *path = smtpd_sasl_dir;
    return SASL_OK;
}

/* smtpd_sasl_log_cb - Cyrus's own complaints (bad config, missing sasldb, a wrong password)
 * into the mail log, worded as Postfix's xsasl_cyrus_log words them. */
static int smtpd_sasl_log_cb(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level == SASL_LOG_FAIL)
        log_mail("smtpd", "warning: SASL authentication failure: %s", msg ? msg : "");
    else if (level == SASL_LOG_ERR || level == SASL_LOG_WARN)
        log_mail("smtpd", "warning: SASL authentication problem: %s", msg ? msg : "");
    return SASL_OK;
}

/* smtpd_sasl_mutex_alloc - Cyrus's mutexes (its defaults do nothing): we use it from several
 * threads. */
static void *smtpd_sasl_mutex_alloc(void)
{
    pthread_mutex_t *m = malloc(sizeof(*m));
    if (m && pthread_mutex_init(m, NULL) != 0) {
        free(m);
        m = NULL;
    }
    return m;
}

/* smtpd_sasl_mutex_lock - lock a mutex from smtpd_sasl_mutex_alloc. */
static int smtpd_sasl_mutex_lock(void *m)
{
    return m && pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

/* smtpd_sasl_mutex_unlock - unlock a mutex from smtpd_sasl_mutex_alloc. */
static int smtpd_sasl_mutex_unlock(void *m)
{
    return m && pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

/* smtpd_sasl_mutex_free - free a mutex from smtpd_sasl_mutex_alloc. */
static void smtpd_sasl_mutex_free(void *m)
{
    if (m) {
        pthread_mutex_destroy(m);
        free(m);
    }
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
        sasl_set_mutex(smtpd_sasl_mutex_alloc, smtpd_sasl_mutex_lock, smtpd_sasl_mutex_unlock,
                       smtpd_sasl_mutex_free);
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
    if (!(srv->saslw = workers_new(srv->base, SMTPD_SASL_THREADS, "sasl"))) {
        if (asprintf(err, "SASL: cannot start the authentication threads") < 0)
            *err = NULL;
        return -1;
    }
    srv->sasl = 1;
    return 0;
}

void smtpd_sasl_free(struct smtpd *srv)
{
    /* waits for checks in flight; their sessions are gone, so done() only disposes */
    if (srv->saslw)
        workers_free(srv->saslw);
    srv->saslw = NULL;
}

int smtpd_sasl_offered(const struct smtpd_session *s)
{
    /* submission_port: AUTH only inside TLS whatever smtpd_tls_auth_only says */
    return s->srv->sasl && (s->tls || (!s->submission && !s->srv->conf->smtpd_tls_auth_only));
}

/* smtpd_sasl_end - drop the exchange (not the authenticated identity); an exchange that
 * ends returns the session to HELO, the only phase AUTH starts from. */
static void smtpd_sasl_end(struct smtpd_session *s)
{
    if (s->state == SMTPD_STATE_AUTH || s->state == SMTPD_STATE_AUTH_WAIT)
        smtpd_enter_state(s, SMTPD_STATE_HELO);
    if (s->sasl_conn) {
        sasl_conn_t *conn = s->sasl_conn;
        sasl_dispose(&conn);
        s->sasl_conn = NULL;
    }
    s->sasl_login = 0;
}

void smtpd_sasl_reset(struct smtpd_session *s)
{
    smtpd_sasl_end(s);
    free(s->sasl_username);
    s->sasl_username = NULL;
}

/* smtpd_sasl_failed - log, 535 after the error delay, forget the exchange. */
static void smtpd_sasl_failed(struct smtpd_session *s, int r)
{
    const char *why = sasl_errstring(r, NULL, NULL);

    log_mail_pid("smtpd", s->log_pid, "warning: %s[%s]: SASL %s authentication failed: %s", s->name,
                 s->addr, s->sasl_method, why);
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
        smtpd_enter_state(s, SMTPD_STATE_AUTH);
        s->sasl_login =
            strcmp(s->sasl_method, "LOGIN") == 0 && outlen == 9 && memcmp(out, "Username:", 9) == 0;
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
int smtpd_sasl_decode(const char *text, char **buf, unsigned *len)
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

/* smtpd_sasl_wipe_free - free client data that may hold a password. */
static void smtpd_sasl_wipe_free(char *p, unsigned len)
{
    if (p)
        explicit_bzero(p, len);
    free(p);
}

/* smtpd_sasl_work - worker: the SASL step itself (may block on the password backend). */
static void smtpd_sasl_work(void *arg)
{
    struct smtpd_sasl_job *j = arg;
    const char *out = NULL;
    unsigned outlen = 0;

    if (j->start)
        j->r = sasl_server_start(j->conn, j->mech, j->in, j->inlen, &out, &outlen);
    else
        j->r = sasl_server_step(j->conn, j->in, j->inlen, &out, &outlen);
    smtpd_sasl_wipe_free(j->in, j->inlen);
    j->in = NULL;
    if (j->r == SASL_CONTINUE) { /* OUT belongs to the conn: copy it while we own both */
        if (!(j->out = malloc((size_t)outlen + 1))) {
            j->r = SASL_NOMEM;
        } else {
            if (outlen)
                memcpy(j->out, out, outlen);
            j->outlen = outlen;
        }
    }
}

/* smtpd_sasl_job_free - dispose of what the job still owns (loop thread). */
static void smtpd_sasl_job_free(struct smtpd_sasl_job *j)
{
    if (j->conn)
        sasl_dispose(&j->conn);
    smtpd_sasl_wipe_free(j->in, j->inlen);
    free(j->out);
    free(j);
}

/* smtpd_sasl_done - loop: the step's result goes back to its session, if it still exists. */
static void smtpd_sasl_done(void *arg)
{
    struct smtpd_sasl_job *j = arg;
    struct smtpd *srv = j->srv;
    struct smtpd_session *s = smtpd_state_find(srv, j->session);

    /* the client left, the server stops or a 421 is said already: just dispose */
    if (!s || s->state != SMTPD_STATE_AUTH_WAIT) {
        smtpd_sasl_job_free(j);
        return;
    }
    s->sasl_conn = j->conn;
    j->conn = NULL;
    smtpd_sasl_result(s, j->r, j->out, j->outlen);
    smtpd_sasl_job_free(j);
    srv->resume(s, 0); /* the error delay, the reply, then reading again */
}

/* smtpd_sasl_submit - hand a start (START) or a step to a worker; takes IN. */
static void smtpd_sasl_submit(struct smtpd_session *s, int start, const char *mech, char *in,
                              unsigned inlen)
{
    struct smtpd_sasl_job *j = calloc(1, sizeof(*j));

    if (!j) {
        smtpd_sasl_wipe_free(in, inlen);
        smtpd_sasl_end(s);
        smtpd_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
        return;
    }
    j->srv = s->srv;
    j->session = s->id;
    j->conn = s->sasl_conn;
    j->start = start;
    if (mech)
        snprintf(j->mech, sizeof(j->mech), "%s", mech);
    j->in = in;
    j->inlen = inlen;
    s->sasl_conn = NULL; /* the job's until done(): smtpd_sasl_reset must not dispose it */
    smtpd_enter_state(s, SMTPD_STATE_AUTH_WAIT); /* the session stops reading */
    workers_submit(s->srv->saslw, smtpd_sasl_work, smtpd_sasl_done, j);
}

void smtpd_sasl_auth(struct smtpd_session *s, const char *arg)
{
    char mech[32], *init = NULL;
    const char *sp;
    unsigned inlen = 0;
    size_t n;

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
    smtpd_sasl_submit(s, 1, mech, init, inlen);
}

void smtpd_sasl_response(struct smtpd_session *s, const char *line)
{
    unsigned inlen = 0;
    char *in = NULL;

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
    /*
     * Cyrus's LOGIN plugin fails an empty user name only after the password, and leaks the
     * password's copy then (found by tests/fuzz/fuzz_smtpd_session): any client could grow
     * our memory with such attempts. The plugin never sees an empty name; the client gets the
     * same exchange and reply as from the plugin.
     */
    if (s->sasl_login == 2) {
        smtpd_sasl_wipe_free(in, inlen);
        smtpd_sasl_failed(s, SASL_FAIL);
        return;
    }
    if (s->sasl_login == 1 && inlen == 0) {
        free(in);
        s->sasl_login = 2;
        smtpd_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
        return;
    }
    s->sasl_login = 0;
    smtpd_sasl_submit(s, 0, NULL, in, inlen);
}
