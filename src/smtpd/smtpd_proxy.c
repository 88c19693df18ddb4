/*
 * smtpd_proxy.c - smtpd_upstream_proxy_protocol = haproxy: before the banner,
 * read the PROXY header a load balancer (HAProxy send-proxy / send-proxy-v2)
 * sends, then start the session with the original client's address, so that
 * the logs, smtpd_trusted_networks, the per-client connection limit, the
 * Received: header and every later use of the session's address name the real
 * client. The read is non-blocking and bounded in bytes (SMTPD_PROXY_MAX) and
 * time (smtpd_upstream_proxy_timeout); it never takes a byte past the header
 * (peek, then read exactly what belongs to it), so that an SMTPS ClientHello
 * or early SMTP text stays for the session. A bad or missing header closes the
 * connection as Postfix's smtpd does: "warning: haproxy read: ...", then
 * 421 4.3.0 Server local error. Applies to every SMTP listener (smtp,
 * submission, smtps). Not here: the header's syntax (smtpd_proxy_parse.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "smtpd_int.h"
#include "smtpd_proxy.h"

/* One connection whose header is still awaited. */
struct smtpd_proxy_wait {
    TAILQ_ENTRY(smtpd_proxy_wait) link;
    struct smtpd *srv;
    struct event *ev;
    int fd, kind;
    struct sockaddr_storage peer; /* the proxy's own address (v2 LOCAL keeps it) */
    socklen_t peer_len;
    struct timespec deadline;
    size_t have; /* header bytes taken off the socket so far */
    unsigned char buf[SMTPD_PROXY_MAX + 1];
};

struct smtpd_proxy {
    TAILQ_HEAD(, smtpd_proxy_wait) waits;
    size_t n;
};

static void smtpd_proxy_read_cb(evutil_socket_t fd, short what, void *arg);

/* smtpd_proxy_new - the handshake registry of SRV when its configuration asks for it. */
int smtpd_proxy_new(struct smtpd *srv)
{
    if (!*srv->conf->smtpd_upstream_proxy_protocol)
        return 0;
    if (!(srv->proxy = calloc(1, sizeof(*srv->proxy))))
        return -1;
    TAILQ_INIT(&srv->proxy->waits);
    return 0;
}

/* smtpd_proxy_end - forget W (its socket is closed or handed on by the caller). */
static void smtpd_proxy_end(struct smtpd_proxy_wait *w)
{
    struct smtpd_proxy *p = w->srv->proxy;

    TAILQ_REMOVE(&p->waits, w, link);
    p->n--;
    event_free(w->ev);
    free(w);
}

/* smtpd_proxy_fail - no usable header: Postfix's warning, its "unknown" session and
 * 421 4.3.0, then close (the client's rights are unknown). DATA: what was seen, escaped. */
static void smtpd_proxy_fail(struct smtpd_proxy_wait *w, const char *why, const unsigned char *data,
                             size_t len)
{
    char esc[SMTPD_PROXY_MAX * 4 + 1], reply[320];
    long pid = log_new_pid();
    ssize_t r;

    if (len > 0) {
        smtpd_proxy_escape(data, len, esc, sizeof(esc));
        log_mail_pid("smtpd", pid, "warning: haproxy read: %s: %s", why, esc);
    } else {
        log_mail_pid("smtpd", pid, "warning: haproxy read: %s", why);
    }
    log_mail_pid("smtpd", pid, "connect from unknown[unknown]");
    log_mail_pid("smtpd", pid, "disconnect from unknown[unknown] commands=0");
    counter_add(CNT_CONNECTIONS, 1);
    snprintf(reply, sizeof(reply), "421 4.3.0 %s Server local error\r\n", w->srv->hostname);
    r = send(w->fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)r;
    close(w->fd);
    smtpd_proxy_end(w);
}

/* smtpd_proxy_arm - wait for more bytes until the deadline; 0, or -1 when it has passed. */
static int smtpd_proxy_arm(struct smtpd_proxy_wait *w)
{
    struct timespec now;
    struct timeval tv;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(w->deadline.tv_sec - now.tv_sec) * 1000 +
         (w->deadline.tv_nsec - now.tv_nsec) / 1000000;
    if (ms <= 0)
        return -1;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    event_add(w->ev, &tv);
    return 0;
}

/* smtpd_proxy_done - the header is read: the session starts with the address it names. */
static void smtpd_proxy_done(struct smtpd_proxy_wait *w, const struct smtpd_proxy_info *pi)
{
    struct smtpd *srv = w->srv;
    struct sockaddr_storage sa;
    socklen_t len;
    int fd = w->fd, kind = w->kind;

    if (pi->local) {
        sa = w->peer;
        len = w->peer_len;
    } else {
        sa = pi->client;
        len = pi->client_len;
    }
    smtpd_proxy_end(w);
    smtpd_session_accept(srv, fd, (struct sockaddr *)&sa, (int)len, kind);
}

/* smtpd_proxy_read_cb - bytes (or the deadline) on a connection whose header is awaited. */
static void smtpd_proxy_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_proxy_wait *w = arg;
    struct smtpd_proxy_info pi;
    const char *err;
    size_t hdrlen, take;
    ssize_t n;
    enum smtpd_proxy_res res;

    if (what & EV_TIMEOUT) {
        smtpd_proxy_fail(w, "timeout error", NULL, 0);
        return;
    }
    /* peek: the bytes after the header belong to the session, not to us */
    n = recv(fd, w->buf + w->have, SMTPD_PROXY_MAX - w->have, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (smtpd_proxy_arm(w) < 0)
            smtpd_proxy_fail(w, "timeout error", NULL, 0);
        return;
    }
    if (n < 0) {
        smtpd_proxy_fail(w, strerror(errno), NULL, 0);
        return;
    }
    res = smtpd_proxy_parse(w->buf, w->have + (size_t)n, n == 0, &hdrlen, &pi, &err);
    if (res == SMTPD_PROXY_ERR) {
        smtpd_proxy_fail(w, err, w->buf, w->have + (size_t)n);
        return;
    }
    /* MORE: every byte seen is header (the parser says so), take them all and wait */
    take = res == SMTPD_PROXY_OK ? hdrlen - w->have : (size_t)n;
    errno = 0;
    if (take > 0 && recv(fd, w->buf + w->have, take, MSG_DONTWAIT) != (ssize_t)take) {
        smtpd_proxy_fail(w, errno ? strerror(errno) : "short read", NULL, 0);
        return;
    }
    w->have += take;
    if (res == SMTPD_PROXY_OK)
        smtpd_proxy_done(w, &pi);
    else if (smtpd_proxy_arm(w) < 0)
        smtpd_proxy_fail(w, "timeout error", NULL, 0);
}

void smtpd_proxy_accept(struct smtpd *srv, int fd, const struct sockaddr *sa, int salen, int kind)
{
    struct smtpd_proxy *p = srv->proxy;
    struct smtpd_proxy_wait *w;

    if (!p || srv->stopping) { /* off, or the session layer's own 421 while stopping */
        smtpd_session_accept(srv, fd, sa, salen, kind);
        return;
    }
    if ((long)(srv->nsessions + p->n) >= srv->conf->smtpd_session_limit) {
        /* handshakes in progress count as sessions: smtpd_session_limit bounds both */
        char addr[INET6_ADDRSTRLEN] = "unknown";
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
        log_mail("smtpd", "warning: session limit exceeded: %zu sessions, refusing proxy %s",
                 srv->nsessions + p->n, addr);
        counter_add(CNT_CONNECTIONS, 1);
        counter_add(CNT_REJECTED, 1);
        ssize_t r = send(fd, "421 4.3.2 Service not available, too many sessions\r\n", 52,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
        close(fd);
        return;
    }
    if (!(w = calloc(1, sizeof(*w))) ||
        !(w->ev = event_new(srv->base, fd, EV_READ, smtpd_proxy_read_cb, w))) {
        free(w);
        close(fd);
        return;
    }
    w->srv = srv;
    w->fd = fd;
    w->kind = kind;
    w->peer_len = (socklen_t)salen <= sizeof(w->peer) ? (socklen_t)salen : sizeof(w->peer);
    memcpy(&w->peer, sa, w->peer_len);
    evutil_make_socket_nonblocking(fd);
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += srv->conf->smtpd_upstream_proxy_timeout;
    TAILQ_INSERT_TAIL(&p->waits, w, link);
    p->n++;
    smtpd_proxy_arm(w);
}

/* smtpd_proxy_stop - shutdown: close every connection whose header has not come. */
void smtpd_proxy_stop(struct smtpd *srv)
{
    struct smtpd_proxy_wait *w;

    if (!srv->proxy)
        return;
    while ((w = TAILQ_FIRST(&srv->proxy->waits))) {
        close(w->fd);
        smtpd_proxy_end(w);
    }
}

void smtpd_proxy_free(struct smtpd *srv)
{
    smtpd_proxy_stop(srv);
    free(srv->proxy);
    srv->proxy = NULL;
}
