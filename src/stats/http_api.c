/*
 * http_api.c - the machine-readable side of the HTTP service: /api/stats (one
 * JSON object), /api/queue (JSON lines, one postqueue -j object per message, like
 * `postqueue -j` and `mtactl queue --json`, Content-Type application/x-ndjson),
 * /metrics (Prometheus text) and the admin actions POST /api/flush and POST
 * /api/delete?id=ID.
 * The admin actions exist only when username is set (else 403) and are
 * CSRF-safe: they need the header "X-MTA-Request: 1", which a browser never sends
 * cross-origin without a CORS preflight (that we never approve), and a foreign
 * Origin header is refused.
 * Not here: authentication and routing (http_server.c).
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/sched.h"

#include "stats_priv.h"

/* http_api_stats - GET /api/stats. */
void http_api_stats(struct stats *st, struct evhttp_request *req)
{
    static const char *names[CNT__COUNT] = {
#define STATS_X_NAME(id, name, kind, help) [id] = name,
        COUNTERS(STATS_X_NAME)
#undef STATS_X_NAME
    };
    struct stats_snapshot s;
    stats_snapshot_take(st, &s);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    evbuffer_add(b, "{\"hostname\":", 12);
    stats_json_string(b, st->conf->hostname);
    for (int i = 0; i < CNT__COUNT; i++)
        evbuffer_add_printf(b, ",\"%s\":%lld", names[i], s.cnt[i]);
    evbuffer_add_printf(b, ",\"mqueue_kilobytes\":%lld,\"uptime_seconds\":%lld", s.mqueue_kilobytes,
                        s.uptime_seconds);
    if (s.free_percent >= 0)
        evbuffer_add_printf(b, ",\"data_volume_free_percent\":%.2f", s.free_percent);
    else
        evbuffer_add_printf(b, ",\"data_volume_free_percent\":null");
    evbuffer_add_printf(b, ",\"cpu_seconds\":%.3f,\"rss_bytes\":%lld,\"log_share\":\"%s\"",
                        s.cpu_seconds, s.rss_bytes, stats_log_share_state(&s));
    evbuffer_add_printf(b, ",\"dashboard_messages\":[");
    for (int i = 0; i < s.nmsgs; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        stats_json_string(b, s.msgs[i]);
    }
    evbuffer_add_printf(b, "],\"time\":%lld}\n", s.now);
    http_reply(req, 200, "OK", "application/json", b);
    evbuffer_free(b);
}

/* http_api_msg_json - one message as a postqueue -j object (one line). */
static void http_api_msg_json(struct evbuffer *b, const struct sched_view_msg *m)
{
    evbuffer_add(b, "{\"queue_name\":", 14);
    stats_json_string(b, m->queue_name);
    evbuffer_add(b, ",\"queue_id\":", 12);
    stats_json_string(b, m->queue_id);
    evbuffer_add_printf(b,
                        ",\"arrival_time\":%lld,\"message_size\":%lld,\"forced_expire\":false,"
                        "\"sender\":",
                        m->arrival_time, m->message_size);
    stats_json_string(b, m->sender);
    evbuffer_add(b, ",\"recipients\":[", 15);
    for (int i = 0; i < m->nrecipients; i++) {
        const struct sched_view_rcpt *r = &m->recipients[i];
        evbuffer_add(b, i ? ",{\"address\":" : "{\"address\":", i ? 12 : 11);
        stats_json_string(b, r->address);
        if (r->delay_reason && r->delay_reason[0]) { /* as postqueue -j: only when there is one */
            evbuffer_add(b, ",\"delay_reason\":", 16);
            stats_json_string(b, r->delay_reason);
        }
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add(b, "]}\n", 3);
}

struct http_api_queue_ctx {
    struct evbuffer *b;
    const char *q;
};

/* http_api_queue_each - one message of the view into the listing when it matches. */
static int http_api_queue_each(void *arg, const struct sched_view_msg *m)
{
    struct http_api_queue_ctx *c = arg;
    if (stats_queue_match(m, c->q))
        http_api_msg_json(c->b, m);
    return 0;
}

/* http_api_queue - GET /api/queue[?q=TEXT]: JSON lines, none when the queue is empty. */
void http_api_queue(struct stats *st, struct evhttp_request *req)
{
    char qbuf[256];
    struct http_api_queue_ctx c = {evbuffer_new(), http_query_param(req, "q", qbuf, sizeof qbuf)};
    if (!c.b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    if (st->sched)
        sched_view_foreach(st->sched, http_api_queue_each, &c);
    http_reply(req, 200, "OK", "application/x-ndjson; charset=utf-8", c.b);
    evbuffer_free(c.b);
}

/* http_api_metrics - GET /metrics. */
void http_api_metrics(struct stats *st, struct evhttp_request *req)
{
    struct stats_snapshot s;
    stats_snapshot_take(st, &s);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    stats_metrics_format(b, &s);
    http_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

/* http_api_json - a one-line JSON reply {"KEY":N} or {"error":TEXT}. */
static void http_api_json(struct evhttp_request *req, int code, const char *reason, const char *key,
                          long n, const char *error)
{
    struct evbuffer *b = evbuffer_new();
    if (b) {
        if (error) {
            evbuffer_add(b, "{\"error\":", 9);
            stats_json_string(b, error);
            evbuffer_add(b, "}\n", 2);
        } else {
            evbuffer_add_printf(b, "{\"%s\":%ld}\n", key, n);
        }
    }
    http_reply(req, code, reason, "application/json", b);
    if (b)
        evbuffer_free(b);
}

/* http_api_same_origin - 1 when the request has no Origin or one naming this very host. */
static int http_api_same_origin(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    const char *host = evhttp_find_header(in, "Host");
    if (!origin)
        return 1;
    if (!host || strncmp(origin, "http://", 7) != 0)
        return 0;
    return strcmp(origin + 7, host) == 0;
}

/* http_api_admin - POST /api/flush and POST /api/delete?id=ID (ACTION "flush" or "delete"). */
void http_api_admin(struct stats *st, struct evhttp_request *req, const char *action)
{
    if (st->conf->username[0] == '\0') {
        http_api_json(req, 403, "Forbidden", NULL, 0,
                      "Admin actions need username and password to be set.");
        return;
    }
    const char *hdr = evhttp_find_header(evhttp_request_get_input_headers(req), "X-MTA-Request");
    if (!hdr || strcmp(hdr, "1") != 0 || !http_api_same_origin(req)) {
        http_api_json(req, 403, "Forbidden", NULL, 0,
                      "Admin actions need the header X-MTA-Request: 1 and no foreign Origin.");
        return;
    }
    if (strcmp(action, "flush") == 0) {
        int n = st->sched ? sched_flush(st->sched) : 0;
        log_info("stats: flush requested over HTTP: %d message(s)", n);
        http_api_json(req, 200, "OK", "flushed", n, NULL);
        return;
    }
    char id[64];
    if (!http_query_param(req, "id", id, sizeof id) || !id[0] ||
        id[strspn(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] != '\0') {
        http_api_json(req, 400, "Bad Request", NULL, 0, "Give the queue ID as ?id=ID (or ALL).");
        return;
    }
    int n = st->sched ? sched_delete(st->sched, id) : 0;
    log_info("stats: delete %s requested over HTTP: %d message(s)", id, n);
    if (n == 0)
        http_api_json(req, 404, "Not Found", NULL, 0, "No such message in the queue.");
    else
        http_api_json(req, 200, "OK", "deleted", n, NULL);
}
