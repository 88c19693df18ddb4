/*
 * http_server.c - the HTTP service on in_address:ui_port (evhttp on the daemon's
 * loop): the listening socket, request limits (header and body size, timeout, a
 * connection cap), Basic authentication, security headers and the routing of
 * paths to pages and API handlers. Also stats_new/stats_free.
 * Not here: page and API content (http_pages.c, http_api.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/stats.h"

#include "stats_priv.h"

#define STATS_LISTEN_BACKLOG 512

/* http_security_headers - headers on every reply: no caching of live figures, no framing, strict
 * CSP. */
static void http_security_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (!evhttp_find_header(h, "Cache-Control"))
        evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'none'; style-src 'self'; script-src 'self'; "
                      "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                      "frame-ancestors 'none'; base-uri 'none'");
}

/* http_reply - send BODY (may be NULL) with status CODE and content type CTYPE. */
void http_reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (ctype)
        evhttp_add_header(h, "Content-Type", ctype);
    http_security_headers(req);
    evhttp_send_reply(req, code, reason, body);
}

/* http_reply_text - a short text/plain reply (errors, /healthz). */
void http_reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add_printf(b, "%s\n", text);
    http_reply(req, code, reason, "text/plain; charset=utf-8", b);
    if (b)
        evbuffer_free(b);
}

/* http_query_param - the decoded query parameter NAME into BUF, or NULL when absent or too long. */
const char *http_query_param(struct evhttp_request *req, const char *name, char *buf, size_t len)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    const char *res = NULL;
    if (!query)
        return NULL;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(query, &params) == 0) {
        const char *v = evhttp_find_header(&params, name);
        if (v && strlen(v) < len) {
            strcpy(buf, v);
            res = buf;
        }
    }
    evhttp_clear_headers(&params);
    return res;
}

/* http_conn_close_cb - a connection went away: forget it for the cap. */
static void http_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
    struct stats *st = arg;
    for (int i = 0; i < st->nconns; i++)
        if (st->conns[i] == evcon) {
            st->conns[i] = st->conns[--st->nconns];
            return;
        }
}

/*
 * http_conn_admit - 1 when the request's connection may be served. libevent 2.1
 * has no connection limit of its own, so connections are counted at their first
 * request (the close callback forgets them); idle ones are bounded by the timeout.
 */
static int http_conn_admit(struct stats *st, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return 1;
    for (int i = 0; i < st->nconns; i++)
        if (st->conns[i] == evcon)
            return 1;
    if (st->nconns >= STATS_HTTP_MAX_CONNS)
        return 0;
    st->conns[st->nconns++] = evcon;
    evhttp_connection_set_closecb(evcon, http_conn_close_cb, st);
    return 1;
}

/* http_authorized - 1 when no auth is configured or the request carries the right credentials. */
static int http_authorized(struct stats *st, struct evhttp_request *req)
{
    if (st->conf->username[0] == '\0')
        return 1;
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    return stats_auth_check(a, st->conf->username, st->conf->password);
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

/* http_request_cb - every request: cap, auth, then route by path. */
static void http_request_cb(struct evhttp_request *req, void *arg)
{
    struct stats *st = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    if (!http_conn_admit(st, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        http_reply_text(req, 503, "Service Unavailable", "Too many connections.");
        return;
    }
    enum { GET = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD };
    if (strcmp(path, "/healthz") == 0) {
        if (http_only(req, GET, "GET, HEAD"))
            http_reply_text(req, 200, "OK", "ok");
        return;
    }
    if (!http_authorized(st, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Basic realm=\"mta\", charset=\"UTF-8\"");
        http_reply_text(req, 401, "Unauthorized", "Authentication required.");
        return;
    }
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
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, STATS_LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* stats_new - see stats.h. */
struct stats *stats_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        struct sched *sched, char **err)
{
    struct stats *st = calloc(1, sizeof *st);
    if (!st) {
        *err = strdup("Failed to initialize UI backend.");
        return NULL;
    }
    st->base = base;
    st->conf = conf;
    st->spool = spool;
    st->sched = sched;
    st->start_mono = stats_mono_now();
    st->conns = calloc(STATS_HTTP_MAX_CONNS, sizeof *st->conns);
    st->http = evhttp_new(base);
    evutil_socket_t fd = -1;
    if (st->conns && st->http)
        fd = http_listen(conf->in_address, (int)conf->ui_port);
    if (fd < 0 || !evhttp_accept_socket_with_handle(st->http, fd)) {
        log_error("stats", "cannot listen on %s:%ld for HTTP: %s",
                  conf->in_address[0] ? conf->in_address : "*", conf->ui_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        stats_free(st);
        *err = strdup("Failed to initialize UI backend.");
        return NULL;
    }
    evhttp_set_max_headers_size(st->http, STATS_HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(st->http, STATS_HTTP_MAX_BODY);
    evhttp_set_timeout(st->http, STATS_HTTP_TIMEOUT);
    evhttp_set_allowed_methods(st->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(st->http, http_request_cb, st);
    if (conf->mon_terminal[0]) {
        st->mon = stats_mon_new(st, conf->mon_terminal, err);
        if (!st->mon) {
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
    if (st->http)
        evhttp_free(st->http); /* runs the close callbacks while st is still valid */
    free(st->conns);
    free(st);
}
