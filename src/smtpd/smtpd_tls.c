/*
 * smtpd_tls.c - TLS for the SMTP intake: the SMTPS listener's bufferevent
 * (implicit TLS), STARTTLS on the plain port, the handshake outcome in the mail
 * log, and the context swap of a certificate reload.
 *
 * STARTTLS follows Postfix's starttls_cmd: the 220 goes out in plaintext, then
 * every byte the client pipelined after STARTTLS is dropped (CVE-2011-0411:
 * plaintext injected before the handshake must never be answered inside TLS),
 * and the session forgets HELO, the transaction and any AUTH: the client starts
 * over with EHLO. The TLS layer is an OpenSSL filter over the socket's
 * bufferevent, so the socket, its limits and its id stay the same.
 * Not here: the TLS policy and key loading (core tls.c, keystore.c).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/smtpd.h"
#include "mta/tls.h"
#include "smtpd_int.h"

int smtpd_set_tls(struct smtpd *s, struct tls_ctx *ctx, char **err)
{
    int first = s->tls == NULL;

    *err = NULL;
    tls_ctx_free(s->tls); /* sessions hold their own SSL_CTX reference */
    s->tls = ctx;
    /* the listeners that need a certificate open with the first one */
    if (first && ctx &&
        (smtpd_listen_open(s, s->conf->smtps_port, SMTPD_LISTEN_SMTPS, err) < 0 ||
         (s->conf->submission_port &&
          smtpd_listen_open(s, s->conf->submission_port, SMTPD_LISTEN_SUBMISSION, err) < 0))) {
        tls_ctx_free(s->tls);
        s->tls = NULL;
        return -1;
    }
    if (!first)
        log_info("TLS certificate reloaded");
    return 0;
}

struct bufferevent *smtpd_tls_socket_bev(struct smtpd *srv, int fd)
{
    SSL *ssl = srv->tls ? tls_ctx_ssl_new(srv->tls) : NULL;
    struct bufferevent *bev;

    if (!ssl)
        return NULL;
    bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* a client that closes without close_notify is a normal disconnect, not an error */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void smtpd_tls_starttls(struct smtpd_session *s, const char *arg)
{
    struct smtpd *srv = s->srv;
    struct bufferevent *nb;
    struct evbuffer *in;
    size_t junk;
    SSL *ssl;

    if (*arg) {
        smtpd_reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (!srv->tls) {
        /* ssl_disabled = yes: Postfix's exact reply when TLS is off (not offered in EHLO) */
        smtpd_reply(s, "502 5.5.1 Error: command not implemented");
        return;
    }
    if (s->tls || s->tls_pending) {
        smtpd_reply(s, "554 5.5.1 Error: TLS already active");
        return;
    }
    if (s->tx) {
        smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (!(ssl = tls_ctx_ssl_new(srv->tls))) {
        smtpd_reply(s, "454 4.7.0 TLS not available due to local problem");
        return;
    }
    smtpd_reply(s, "220 2.0.0 Ready to start TLS");
    smtpd_session_flush(s); /* the 220 and any earlier replies of the batch, in plaintext */
    in = bufferevent_get_input(s->bev);
    if ((junk = evbuffer_get_length(in)) > 0) {
        log_mail_pid("smtpd", s->log_pid,
                     "warning: %s[%s]: %zu bytes of plaintext pipelined after STARTTLS "
                     "discarded",
                     s->name, s->addr, junk);
        evbuffer_drain(in, junk);
    }
    nb = bufferevent_openssl_filter_new(srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                        BEV_OPT_CLOSE_ON_FREE);
    if (!nb) {
        SSL_free(ssl);
        log_mail_pid("smtpd", s->log_pid, "warning: %s[%s]: cannot start TLS", s->name, s->addr);
        s->close_after = 1;
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(nb, 1);
    s->bev = nb;
    s->tls_pending = 1;
    smtpd_session_setup_bev(s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    /* a new start: RFC 3207 4.2 */
    smtpd_txn_reset(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = 0;
    smtpd_sasl_reset(s);
    s->authenticated = 0;
}

void smtpd_tls_connected(struct smtpd_session *s)
{
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

    if (!s->tls_pending || !ssl)
        return;
    s->tls_pending = 0;
    s->tls = 1;
    tls_describe(ssl, s->tls_info, sizeof(s->tls_info));
    log_mail_pid("smtpd", s->log_pid, "Anonymous TLS connection established from %s[%s]: %s",
                 s->name, s->addr, s->tls_info);
}

void smtpd_tls_check_connected(struct smtpd_session *s)
{
    SSL *ssl;

    if (!s->tls_pending || !s->bev || !(ssl = bufferevent_openssl_get_ssl(s->bev)))
        return;
    if (SSL_is_init_finished(ssl))
        smtpd_tls_connected(s);
}

void smtpd_tls_failed(struct smtpd_session *s)
{
    unsigned long e = bufferevent_get_openssl_error(s->bev);
    char buf[256] = "";

    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    while (bufferevent_get_openssl_error(s->bev))
        ;
    log_mail_pid("smtpd", s->log_pid, "SSL_accept error from %s[%s]: %s", s->name, s->addr,
                 *buf ? buf : "lost connection");
    s->tls_pending = 0;
}

int smtpd_tls_layered(const struct smtpd_session *s)
{
    return s->bev && bufferevent_openssl_get_ssl(s->bev) != NULL;
}

void smtpd_tls_flush_underlying(struct smtpd_session *s)
{
    struct bufferevent *u = s->bev ? bufferevent_get_underlying(s->bev) : NULL;
    SSL *ssl = s->bev && s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    struct evbuffer *o;

    if (ssl && !s->tls_pending)
        SSL_shutdown(ssl); /* close_notify, best effort: the socket is non-blocking */

    if (!u || !(o = bufferevent_get_output(u)) || evbuffer_get_length(o) == 0)
        return;
    /* one non-blocking attempt: a final reply is small and the socket buffer takes it */
    {
        /* the TLS layer freezes this buffer's start: peek, then non-blocking sends */
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(o, -1, NULL, v, 8);
        for (int i = 0; i < nv && i < 8; i++) {
            ssize_t w = send(bufferevent_getfd(u), v[i].iov_base, v[i].iov_len,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < (ssize_t)v[i].iov_len)
                break;
        }
    }
}
