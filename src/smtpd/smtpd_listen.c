/*
 * smtpd_listen.c - the SMTP server object: listening sockets on
 * in_address:smtp_port (empty: IPv6 wildcard with v4-mapped clients, or
 * 0.0.0.0 when the host has no IPv6), backlog 4096, and graceful stop.
 * Per-client and total session limits are applied at accept time
 * (smtpd_session_accept), behind a load balancer once its PROXY header has
 * named the client (smtpd_proxy.c); when accept() fails (out of descriptors) the
 * listeners pause briefly (rlimit.h). The TLS context and its reload
 * (smtpd_set_tls) belong to the server too. Not here: the session protocol.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mta/cidr.h"
#include "mta/conf.h"
#include "mta/log.h"
#include "mta/milter.h"
#include "mta/privilege.h"
#include "mta/rlimit.h"
#include "mta/smtpd.h"
#include "mta/tls.h"
#include "smtpd_int.h"

#define SMTPD_BACKLOG 4096

/* smtpd_listen_accept_cb - a new connection. */
static void smtpd_listen_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                                   struct sockaddr *sa, int salen, void *arg)
{
    struct smtpd *s = arg;
    rlimit_accept_ok(s->pause);
    smtpd_proxy_accept(s, fd, sa, salen, 0);
}

/* smtpd_listen_accept_tls_cb - a new SMTPS connection (implicit TLS). */
static void smtpd_listen_accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd,
                                       struct sockaddr *sa, int salen, void *arg)
{
    struct smtpd *s = arg;
    rlimit_accept_ok(s->pause);
    smtpd_proxy_accept(s, fd, sa, salen, 1);
}

/* smtpd_listen_accept_sub_cb - a new connection on submission_port. */
static void smtpd_listen_accept_sub_cb(struct evconnlistener *l, evutil_socket_t fd,
                                       struct sockaddr *sa, int salen, void *arg)
{
    struct smtpd *s = arg;
    rlimit_accept_ok(s->pause);
    smtpd_proxy_accept(s, fd, sa, salen, SMTPD_LISTEN_SUBMISSION);
}

/*
 * smtpd_listen_error_cb - accept() failed (EMFILE, ENFILE, ENOBUFS, ENOMEM...):
 * the waiting connection keeps the socket readable, so the listeners pause for
 * a moment (else the loop spins at 100% CPU logging the error), with one
 * rate-limited log line. The connections wait in the listen queue meanwhile.
 */
static void smtpd_listen_error_cb(struct evconnlistener *l, void *arg)
{
    struct smtpd *s = arg;
    rlimit_accept_failed(s->pause, errno);
}

/* smtpd_listen_socket - a bound, non-blocking socket for SA, or -1 with errno. */
static int smtpd_listen_socket(const struct sockaddr *sa, socklen_t len, int v6only)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, e;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    if (priv_bind(fd, sa, len) < 0) { /* a port bound before the drop, or bind(2) */
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* smtpd_listen_add - listen on FD. 0 ok, -1 with errno. */
static int smtpd_listen_add(struct smtpd *s, int fd, int implicit_tls)
{
    if (s->nlev >= (int)(sizeof(s->lev) / sizeof(s->lev[0]))) { /* a new kind without a slot */
        close(fd);
        errno = ENOBUFS;
        return -1;
    }
    struct evconnlistener *l =
        evconnlistener_new(s->base,
                           implicit_tls == SMTPD_LISTEN_SMTPS        ? smtpd_listen_accept_tls_cb
                           : implicit_tls == SMTPD_LISTEN_SUBMISSION ? smtpd_listen_accept_sub_cb
                                                                     : smtpd_listen_accept_cb,
                           s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, SMTPD_BACKLOG, fd);
    if (!l) {
        int e = errno;
        close(fd);
        errno = e ? e : EADDRINUSE;
        return -1;
    }
    evconnlistener_set_error_cb(l, smtpd_listen_error_cb);
    rlimit_accept_add(s->pause, l);
    s->lev[s->nlev++] = l;
    return 0;
}

/* smtpd_listen_barelf - smtpd_forbid_bare_newline as an enum (unknown values: the safe one). */
static int smtpd_listen_barelf(const char *v)
{
    if (strcmp(v, "reject") == 0)
        return SMTPD_BARELF_REJECT;
    if (strcmp(v, "no") == 0)
        return SMTPD_BARELF_NO;
    return SMTPD_BARELF_NORMALIZE;
}

/* smtpd_listen_open - listen on in_address:PORT (IMPLICIT_TLS: an smtpd_listen_kind). 0 ok,
 * -1 and *err. */
int smtpd_listen_open(struct smtpd *s, long port, int implicit_tls, char **err)
{
    const struct conf *conf = s->conf;
    char addr[256];
    int fd;

    snprintf(addr, sizeof(addr), "%s", conf->in_address);
    if (addr[0] == '[' && addr[strlen(addr) - 1] == ']') { /* [::1] */
        memmove(addr, addr + 1, strlen(addr));
        addr[strlen(addr) - 1] = 0;
    }
    if (!*addr) {
        struct sockaddr_in6 a6 = {
            .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
        struct sockaddr_in a4 = {
            .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
        fd = smtpd_listen_socket((struct sockaddr *)&a6, sizeof(a6), 0);
        if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL))
            fd = smtpd_listen_socket((struct sockaddr *)&a4, sizeof(a4), 0);
        snprintf(addr, sizeof(addr), "*");
    } else {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
        if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
            fd = smtpd_listen_socket((struct sockaddr *)&a4, sizeof(a4), 0);
        } else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
            fd = smtpd_listen_socket((struct sockaddr *)&a6, sizeof(a6), 1);
        } else {
            if (asprintf(err, "in_address: not an IP address: %s", addr) < 0)
                *err = NULL;
            return -1;
        }
    }
    if (fd < 0 || smtpd_listen_add(s, fd, implicit_tls) < 0) {
        if (asprintf(err, "cannot listen on %s:%ld: %s", addr, port, strerror(errno)) < 0)
            *err = NULL;
        return -1;
    }
    return 0;
}

struct smtpd *smtpd_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        char **err)
{
    struct smtpd *s = calloc(1, sizeof(*s));
    char *cerr = NULL;

    *err = NULL;
    if (!smtpd_proto_table_ok())
        log_fatal("smtpd", "the SMTP command table leaves a command without an answer");
    if (!s)
        goto oom;
    TAILQ_INIT(&s->sessions);
    TAILQ_INIT(&s->grave);
    s->base = base;
    s->conf = conf;
    s->spool = spool;
    s->resume = smtpd_session_resume; /* handed to the files below the session */
    s->barelf = smtpd_listen_barelf(conf->smtpd_forbid_bare_newline);
    snprintf(s->hostname, sizeof(s->hostname), "%s", conf->myhostname);
    if (!(s->trusted = cidr_list_parse(conf->smtpd_trusted_networks, &cerr))) {
        if (asprintf(err, "smtpd_trusted_networks: %s", cerr ? cerr : "bad value") < 0)
            *err = NULL;
        free(cerr);
        smtpd_free(s);
        return NULL;
    }
    if (!(s->reaper = smtpd_session_reaper_new(s)) ||
        !(s->pause = rlimit_accept_new(base, "smtpd")) || smtpd_proxy_new(s) < 0)
        goto oom;

    if (smtpd_listen_open(s, conf->smtp_port, SMTPD_LISTEN_SMTP, err) < 0) {
        smtpd_free(s);
        return NULL;
    }
    if (conf->smtpd_sasl_auth_enable && smtpd_sasl_init(s, err) < 0) {
        smtpd_free(s);
        return NULL;
    }
    s->milters = milter_set_new(conf, conf->smtpd_milters, &cerr);
    if (cerr) {
        if (asprintf(err, "smtpd_milters: %s", cerr) < 0)
            *err = NULL;
        free(cerr);
        smtpd_free(s);
        return NULL;
    }
    return s;
oom:
    if (asprintf(err, "smtpd: out of memory") < 0)
        *err = NULL;
    smtpd_free(s);
    return NULL;
}

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

void smtpd_stop(struct smtpd *s, void (*drained)(void *arg), void *arg)
{
    struct smtpd_session *x, *nx;

    s->stopping = 1;
    s->drained = drained;
    s->drained_arg = arg;
    rlimit_accept_clear(s->pause);
    for (int i = 0; i < s->nlev; i++)
        evconnlistener_free(s->lev[i]);
    s->nlev = 0;
    smtpd_proxy_stop(s); /* headers not yet come: those connections never became sessions */
    for (x = TAILQ_FIRST(&s->sessions); x; x = nx) {
        nx = TAILQ_NEXT(x, link); /* x may move to the grave */
        if (x->state == SMTPD_STATE_COMMIT)
            continue; /* its done callback replies 250, then closes */
        smtpd_reply_close(x, "421 4.3.2 %s Service shutting down", s->hostname);
        smtpd_session_close(x);
    }
    /* the reaper reports "no session left" from the loop, never from inside smtpd_stop */
    event_active(s->reaper, EV_TIMEOUT, 1);
}

void smtpd_free(struct smtpd *s)
{
    if (!s)
        return;
    rlimit_accept_clear(s->pause);
    for (int i = 0; i < s->nlev; i++)
        evconnlistener_free(s->lev[i]);
    s->nlev = 0;
    rlimit_accept_free(s->pause);
    s->pause = NULL;
    s->drained = NULL;
    /* commits hold the server: they must have ended (mtad drains the spool first); if
     * not, end them now, while the sessions they answer still exist */
    s->stopping = 1; /* a done callback closes its session instead of reading on */
    if (s->commits > 0)
        spool_drain(s->spool);
    if (s->reaper)
        smtpd_session_free_all(s);
    smtpd_sasl_free(s); /* after the sessions: a check still in flight finds none */
    /* after the sessions, whose milter connections use it */
    milter_set_free(s->milters);
    smtpd_proxy_free(s);
    if (s->reaper)
        event_free(s->reaper);
    htab_free(&s->by_id);
    htab_free(&s->by_ip);
    if (s->trusted)
        cidr_list_free(s->trusted);
    tls_ctx_free(s->tls);
    s->tls = NULL;
    free(s);
}
