/*
 * smtpd_tls.c - TLS for the SMTP intake: the SMTPS listener's bufferevent
 * (implicit TLS), STARTTLS's 220 and the OpenSSL filter the session layers on
 * after it, the handshake outcome in the mail log.
 *
 * STARTTLS follows Postfix's starttls_cmd: the 220 goes out in plaintext, then
 * every byte the client pipelined after STARTTLS is dropped and the session
 * forgets HELO, the transaction and any AUTH (smtpd_session_starttls,
 * proceed_starttls). The TLS layer is an OpenSSL filter over the socket's
 * bufferevent, so the socket, its limits and its id stay the same.
 * Not here: the TLS policy and key loading (core tls.c, keystore.c), the
 * context swap of a reload (smtpd_set_tls, smtpd_listen.c).
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

int smtpd_tls_starttls(struct smtpd_session *s)
{
    SSL *ssl;

    if (!(ssl = tls_ctx_ssl_new(s->srv->tls))) {
        smtpd_reply(s, "454 4.7.0 TLS not available due to local problem");
        return 0;
    }
    smtpd_reply(s, "220 2.0.0 Ready to start TLS");
    s->tls_next = ssl;
    return 1;
}

struct bufferevent *smtpd_tls_filter(struct smtpd_session *s, struct bufferevent *bev, void *ssl)
{
    struct bufferevent *nb = bufferevent_openssl_filter_new(
        s->srv->base, bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);

    if (!nb) {
        SSL_free(ssl);
        log_mail_pid("smtpd", s->log_pid, "warning: %s[%s]: cannot start TLS", s->name, s->addr);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(nb, 1);
    return nb;
}

int smtpd_tls_handshaking(const struct smtpd_session *s)
{
    /* a failed handshake ends its session at once (smtpd_session_event_cb): no flag needed */
    return !s->tls && s->state != SMTPD_STATE_DEAD && smtpd_tls_layered(s);
}

/* smtpd_tls_connected - the handshake is complete: TLS is on, the client starts over. */
static void smtpd_tls_connected(struct smtpd_session *s, SSL *ssl)
{
    s->tls = 1;
    tls_describe(ssl, s->tls_info, sizeof(s->tls_info));
    log_mail_pid("smtpd", s->log_pid, "Anonymous TLS connection established from %s[%s]: %s",
                 s->name, s->addr, s->tls_info);
    smtpd_enter_state(s, smtpd_state_idle(s));
}

void smtpd_tls_check_connected(struct smtpd_session *s)
{
    SSL *ssl;

    if (!smtpd_tls_handshaking(s) || !(ssl = bufferevent_openssl_get_ssl(s->bev)))
        return;
    if (SSL_is_init_finished(ssl))
        smtpd_tls_connected(s, ssl);
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

    if (ssl)
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
