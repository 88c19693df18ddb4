/*
 * http_reply.c - how every HTTP answer goes out: the status, the content type
 * and the security headers on every reply (no caching of live figures, no
 * framing, a strict CSP), and reading a query parameter. Used by the server
 * and by the pages and API it routes to.
 * Not here: routing, authentication (http_server.c), content (http_pages.c, http_api.c).
 */
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "stats_int.h"

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
