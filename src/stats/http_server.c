/*
 * http_server.c - the HTTP service on in_address:ui_port (evhttp on the daemon's
 * loop): the listening socket with its accept() back-off, request limits (header
 * and body size, http_timeout, http_connection_limit counted at accept), Basic
 * authentication with its per-client throttle, security headers and the routing
 * of paths to pages and API handlers. Also stats_new/stats_free. It calls the
 * pages and the API, which answer through http_reply.c; neither calls back here.
 * Not here: page and API content (http_pages.c, http_api.c), replies (http_reply.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "mta/conf.h"
#include "mta/err.h"
#include "mta/log.h"
#include "mta/privilege.h"
#include "mta/rlimit.h"
#include "mta/stats.h"

#include "stats_int.h"

#define STATS_LISTEN_BACKLOG 512

/*
 * Counting connections. libevent 2.1's evhttp has no connection limit and tells
 * nothing about a connection until its first request is complete, so a client
 * could hold any number of connections that never send one (each a descriptor,
 * for http_timeout). Every connection's bufferevent is therefore made here
 * (evhttp_set_bevcb) and kept with a reference of ours: evhttp's
 * bufferevent_free clears its callbacks, and a sweep (at each accept and every
 * HTTP_SWEEP_MS while connections are open) drops our reference to those, which
 * closes the socket. The reference also keeps the bufferevent valid for us
 * after evhttp is done with it, whatever order libevent frees things in.
 */
#define HTTP_SWEEP_MS 250

struct http_conn {
    struct bufferevent *bev; /* evhttp's, with our reference */
    struct event *refuse;    /* over the limit: 503 and close, from the loop */
};

/* http_conn_done - 1 when evhttp has freed BEV (only our reference is left). */
static int http_conn_done(struct bufferevent *bev)
{
    bufferevent_data_cb rd = NULL, wr = NULL;
    bufferevent_event_cb ev = NULL;
    void *arg = NULL;
    bufferevent_getcb(bev, &rd, &wr, &ev, &arg);
    return !rd && !wr && !ev;
}

/* http_conn_release - drop connection I (our reference closes its socket). */
static void http_conn_release(struct stats *st, int i)
{
    struct http_conn *hc = &st->hconns[i];
    if (hc->refuse)
        event_free(hc->refuse);
    bufferevent_decref(hc->bev);
    *hc = st->hconns[--st->nhconns];
}

/* http_conn_arm - sweep again later while connections are open. */
static void http_conn_arm(struct stats *st)
{
    if (st->nhconns > 0 && !evtimer_pending(st->sweep, NULL)) {
        struct timeval tv = {0, HTTP_SWEEP_MS * 1000};
        evtimer_add(st->sweep, &tv);
    }
}

/* http_conn_sweep - forget the connections evhttp has freed. */
static void http_conn_sweep(struct stats *st)
{
    for (int i = 0; i < st->nhconns;)
        if (http_conn_done(st->hconns[i].bev))
            http_conn_release(st, i);
        else
            i++;
    http_conn_arm(st);
}

/* http_conn_sweep_cb - the sweep's timer. */
static void http_conn_sweep_cb(evutil_socket_t unused, short what, void *arg)
{
    http_conn_sweep(arg);
}

/*
 * http_conn_refuse_cb - a connection over http_connection_limit: a 503 written
 * straight to the socket, then both directions shut, so evhttp reads the end and
 * frees the connection at once (it does not wait for a request or the timeout).
 */
static void http_conn_refuse_cb(evutil_socket_t unused, short what, void *arg)
{
    static const char reply[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Length: 22\r\n"
                                "Connection: close\r\n\r\n"
                                "Too many connections.\n";
    struct bufferevent *bev = arg;
    evutil_socket_t fd = bufferevent_getfd(bev);
    char junk[4096];
    if (fd < 0 || http_conn_done(bev))
        return;
    /* a request already sent is read first: closing with unread bytes would send a reset,
     * which may reach the client before it has read the 503 */
    for (int i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
        ;
    (void)!send(fd, reply, sizeof(reply) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_RDWR);
}

/*
 * http_bev_cb - evhttp accepted a connection and asks for its bufferevent (the
 * socket is set on it afterwards): count it; beyond the limit refuse it from the
 * loop. NULL (out of memory) lets evhttp make an uncounted one of its own.
 */
static struct bufferevent *http_bev_cb(struct event_base *base, void *arg)
{
    struct stats *st = arg;
    struct bufferevent *bev;

    rlimit_accept_ok(st->pause);
    http_conn_sweep(st);
    if (st->nhconns == st->hconns_cap) {
        int cap = st->hconns_cap ? 2 * st->hconns_cap : 64;
        struct http_conn *n = realloc(st->hconns, (size_t)cap * sizeof(*n));
        if (!n)
            return NULL;
        st->hconns = n;
        st->hconns_cap = cap;
    }
    if (!(bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)))
        return NULL;
    struct http_conn *hc = &st->hconns[st->nhconns++];
    hc->bev = bev;
    hc->refuse = NULL;
    bufferevent_incref(bev);
    if (st->nhconns > st->conf->http_connection_limit) {
        if ((hc->refuse = evtimer_new(base, http_conn_refuse_cb, bev)))
            event_active(hc->refuse, EV_TIMEOUT, 1);
    }
    http_conn_arm(st); /* not a sweep: evhttp sets the callbacks after we return */
    return bev;
}

/*
 * http_accept_error_cb - accept() failed (out of descriptors): pause the listener
 * (rlimit.h). ARG is evhttp's, so the back-off is found through the listener.
 */
static struct stats *http_paused_st; /* the stats object whose listener is st->lev */
static void http_accept_error_cb(struct evconnlistener *lev, void *arg)
{
    int err = errno;
    if (http_paused_st && http_paused_st->lev == lev)
        rlimit_accept_failed(http_paused_st->pause, err);
}

/* http_client_addr - the client's address text of REQ ("" when unknown). */
static const char *http_client_addr(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    return addr ? addr : "";
}

/*
 * http_authorized - 1 when no auth is configured or the request carries the right
 * credentials; 0 after a 401 or 429 reply. A client with http_auth_failure_limit
 * wrong credentials in http_auth_lockout_time gets 429 for that long without its
 * credentials being checked (right ones would otherwise tell a guesser it won).
 */
static int http_authorized(struct stats *st, struct evhttp_request *req)
{
    const struct conf *c = st->conf;
    if (c->username[0] == '\0')
        return 1;
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    const char *addr = http_client_addr(req);
    double now = stats_mono_now(), wait = 0;
    if (a && st->authf)
        wait = stats_auth_throttle_wait(st->authf, addr, now);
    if (wait > 0) {
        char secs[32];
        snprintf(secs, sizeof(secs), "%ld", (long)wait + 1);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
        http_reply_text(req, 429, "Too Many Requests",
                        "Too many failed logins from your address; try again later.");
        return 0;
    }
    int ok = stats_auth_check(a, c->username, c->password);
    /* a request without credentials is a browser's first try, not a guess */
    if (a && st->authf && stats_auth_throttle_result(st->authf, addr, ok, now))
        log_warning("stats", "%s: %ld failed web UI logins: refusing its logins for %ld s (429)",
                    addr, c->http_auth_failure_limit, c->http_auth_lockout_time);
    if (ok)
        return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      "Basic realm=\"mta\", charset=\"UTF-8\"");
    http_reply_text(req, 401, "Unauthorized", "Authentication required.");
    return 0;
}

/* http_only - 1 when the method is one of ALLOWED; otherwise replies 405 with Allow. */
static int http_only(struct evhttp_request *req, int allowed, const char *allow)
{
    if (evhttp_request_get_command(req) & allowed)
        return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    http_reply_text(req, 405, "Method Not Allowed", "Method not allowed.");
    return 0;
}

/* http_valid_id - 1 when ID looks like a queue ID (letters and digits, bounded). */
static int http_valid_id(const char *id)
{
    size_t n = strspn(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
    return n > 0 && n < 64 && id[n] == '\0';
}

/* http_request_cb - every request: auth (not for /healthz), then route by path. */
void http_request_cb(struct evhttp_request *req, void *arg)
{
    struct stats *st = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    enum { GET = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD };
    if (strcmp(path, "/healthz") == 0) {
        if (http_only(req, GET, "GET, HEAD"))
            http_reply_text(req, 200, "OK", "ok");
        return;
    }
    if (!http_authorized(st, req))
        return;
    if (strcmp(path, "/api/flush") == 0 || strcmp(path, "/api/delete") == 0) {
        if (http_only(req, EVHTTP_REQ_POST, "POST"))
            http_api_admin(st, req, path + 5);
        return;
    }
    if (!http_only(req, GET, "GET, HEAD"))
        return;
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
        http_page_dashboard(st, req);
    else if (strcmp(path, "/queue") == 0 || strcmp(path, "/queue/") == 0)
        http_page_queue(st, req);
    else if (strncmp(path, "/queue/", 7) == 0 && http_valid_id(path + 7))
        http_page_message(st, req, path + 7);
    else if (strcmp(path, "/api/stats") == 0)
        http_api_stats(st, req);
    else if (strcmp(path, "/api/queue") == 0)
        http_api_queue(st, req);
    else if (strcmp(path, "/metrics") == 0)
        http_api_metrics(st, req);
    else if (strncmp(path, "/assets/", 8) == 0 && http_page_asset(req, path + 8))
        ;
    else
        http_reply_text(req, 404, "Not Found", "Not found.");
}

/*
 * http_listen - a listening socket on ADDR:PORT; ADDR "" means every IPv4 and
 * IPv6 address (one dual-stack socket, IPv4-only when the host has no IPv6).
 */
static evutil_socket_t http_listen(const char *addr, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    char host[64];
    size_t al = strlen(addr);
    if (al >= 2 && addr[0] == '[' && addr[al - 1] == ']' && al - 2 < sizeof host) {
        memcpy(host, addr + 1, al - 2); /* [ipv6] as in Postfix notation */
        host[al - 2] = '\0';
    } else if (al < sizeof host) {
        memcpy(host, addr, al + 1);
    } else {
        return -1;
    }
    int dual = host[0] == '\0';
    if (dual || inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof *s6;
    } else if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof *s4;
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && dual && errno == EAFNOSUPPORT) {
        memset(&ss, 0, sizeof ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof *s4;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof one);
    /* priv_bind: the port may have been bound before the privilege drop (privilege.h) */
    if (priv_bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, STATS_LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* stats_new - see stats.h. */
struct stats *stats_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        struct sched *sched, struct mta_err *err)
{
    struct stats *st = calloc(1, sizeof *st);
    if (!st) {
        mta_err_set(err, MTA_ERR_UI, NULL);
        return NULL;
    }
    st->base = base;
    st->conf = conf;
    st->spool = spool;
    st->sched = sched;
    st->start_mono = stats_mono_now();
    st->http = evhttp_new(base);
    st->sweep = evtimer_new(base, http_conn_sweep_cb, st);
    st->pause = rlimit_accept_new(base, "stats");
    st->authf = stats_auth_throttle_new((int)conf->http_auth_failure_limit,
                                        (double)conf->http_auth_lockout_time);
    evutil_socket_t fd = -1;
    struct evhttp_bound_socket *bound = NULL;
    if (st->http && st->sweep && st->pause && st->authf)
        fd = http_listen(conf->in_address, (int)conf->ui_port);
    if (fd >= 0)
        bound = evhttp_accept_socket_with_handle(st->http, fd);
    if (!bound) {
        log_error("stats", "cannot listen on %s:%ld for HTTP: %s",
                  conf->in_address[0] ? conf->in_address : "*", conf->ui_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        stats_free(st);
        mta_err_set(err, MTA_ERR_UI, NULL); /* the reason is in the log */
        return NULL;
    }
    st->lev = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(st->lev, http_accept_error_cb);
    rlimit_accept_add(st->pause, st->lev);
    http_paused_st = st;
    evhttp_set_bevcb(st->http, http_bev_cb, st);
    evhttp_set_max_headers_size(st->http, STATS_HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(st->http, STATS_HTTP_MAX_BODY);
    evhttp_set_timeout(st->http, (int)conf->http_timeout);
    evhttp_set_allowed_methods(st->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(st->http, http_request_cb, st);
    if (conf->mon_terminal[0]) {
        char *why = NULL;
        st->mon = stats_mon_new(st, conf->mon_terminal, &why);
        if (!st->mon) {
            if (why)
                mta_err_set(err, MTA_ERR_UI, "%s", why);
            else
                mta_err_set(err, MTA_ERR_UI, NULL);
            free(why);
            stats_free(st);
            return NULL;
        }
    }
    return st;
}

/* stats_free - see stats.h. */
void stats_free(struct stats *st)
{
    if (!st)
        return;
    stats_mon_free(st->mon);
    if (http_paused_st == st)
        http_paused_st = NULL;
    rlimit_accept_clear(st->pause);
    if (st->http)
        evhttp_free(st->http); /* frees every connection: our references are the last */
    while (st->nhconns > 0)
        http_conn_release(st, st->nhconns - 1);
    free(st->hconns);
    if (st->sweep)
        event_free(st->sweep);
    rlimit_accept_free(st->pause);
    stats_auth_throttle_free(st->authf);
    free(st);
}
