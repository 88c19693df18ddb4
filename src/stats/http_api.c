/*
 * http_api.c - the machine-readable side of the HTTP service: /api/stats (one
 * JSON object), /api/queue (JSON lines, one postqueue -j object per message, like
 * `postqueue -j` and `mtactl queue --json`, Content-Type application/x-ndjson,
 * one bounded page per reply: ?limit=N&offset=N or &after=ID),
 * /metrics (Prometheus text) and the admin actions POST /api/flush and POST
 * /api/delete?id=ID.
 * The admin actions exist only when username is set (else 403) and are
 * CSRF-safe: they need the header "X-MTA-Request: 1", which a browser never sends
 * cross-origin without a CORS preflight (that we never approve), and a foreign
 * Origin header is refused.
 * Not here: authentication and routing (http_server.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "mta/sched.h"
#include "mta/spool.h"

#include "stats_int.h"
#include "mta/text.h"

/* /api/stats lists at most this many destinations (the throttled ones first). */
#define HTTP_API_DEST_MAX 100

/* http_api_dest - one destination of /api/stats "destinations" (Postfix qmgr's view). */
static void http_api_dest(void *arg, const struct sched_view_dest *d)
{
    struct evbuffer *b = arg; /* holds only the list: a comma before all but the first */

    evbuffer_add_printf(b, "%s{\"name\":", evbuffer_get_length(b) ? "," : "");
    text_json_string(b, d->name);
    evbuffer_add_printf(b, ",\"window\":%d,\"active\":%d,\"ready\":%d,\"dead\":%s,\"reason\":",
                        d->window, d->active, d->ready, d->dead ? "true" : "false");
    text_json_string(b, d->reason);
    evbuffer_add(b, "}", 1);
}

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
    text_json_string(b, st->conf->hostname);
    for (int i = 0; i < CNT__COUNT; i++)
        evbuffer_add_printf(b, ",\"%s\":%lld", names[i], s.cnt[i]);
    evbuffer_add_printf(b, ",\"mqueue_kilobytes\":%lld,\"uptime_seconds\":%lld", s.mqueue_kilobytes,
                        s.uptime_seconds);
    /* while true, mqueue_* and listings do not count the messages still to be scanned */
    evbuffer_add_printf(b, ",\"spool_scanning\":%s",
                        st->spool && spool_scanning(st->spool) ? "true" : "false");
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
        text_json_string(b, s.msgs[i]);
    }
    evbuffer_add_printf(b, "]");
    if (st->sched) {
        /* per-destination concurrency and throttling, as Postfix's qmgr keeps them */
        struct evbuffer *db = evbuffer_new();
        int total =
            db ? sched_dest_view_foreach(st->sched, HTTP_API_DEST_MAX, http_api_dest, db) : 0;
        evbuffer_add_printf(b, ",\"destinations_total\":%d,\"destinations\":[", total);
        if (db) {
            evbuffer_add_buffer(b, db);
            evbuffer_free(db);
        }
        evbuffer_add_printf(b, "]");
    }
    evbuffer_add_printf(b, ",\"time\":%lld}\n", s.now);
    http_reply(req, 200, "OK", "application/json", b);
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
            text_json_string(b, error);
            evbuffer_add(b, "}\n", 2);
        } else {
            evbuffer_add_printf(b, "{\"%s\":%ld}\n", key, n);
        }
    }
    http_reply(req, code, reason, "application/json", b);
    if (b)
        evbuffer_free(b);
}

/* One /api/queue reply lists at most this many messages (?limit=N). */
#define HTTP_API_QUEUE_LIMIT 1000
#define HTTP_API_QUEUE_LIMIT_MAX 100000
#define HTTP_API_QUEUE_OFFSET_MAX 1000000000L

/* http_api_number - query parameter NAME as a decimal in [MIN, MAX]: DEF when absent, -1 when bad.
 */
static long http_api_number(struct evhttp_request *req, const char *name, long def, long min,
                            long max)
{
    char buf[1024], *end; /* longer than any request line we accept: NULL means absent */
    const char *v = http_query_param(req, name, buf, sizeof buf);
    if (!v)
        return def;
    if (v[0] < '0' || v[0] > '9' || strlen(v) > 10)
        return -1;
    long n = strtol(v, &end, 10);
    return *end || n < min || n > max ? -1 : n;
}

/* http_api_queue_match - sched_list's filter: the search ?q= (ARG). */
static int http_api_queue_match(void *arg, const struct sched_view_msg *m)
{
    return stats_queue_match(m, arg);
}

/*
 * http_api_queue - GET /api/queue[?q=TEXT][&limit=N][&offset=N|&after=ID]: JSON
 * lines (sched_list: the same bytes as postqueue -j), none when nothing matches. One
 * reply holds at most LIMIT messages (default 1000, at most 100000); X-Total-Count
 * says how many match in all and, when more follow, X-Next-After names the ID to
 * pass as after= for the next page.
 */
void http_api_queue(struct stats *st, struct evhttp_request *req)
{
    char qbuf[256], abuf[65];
    struct sched_list_page pg = {0};
    struct sched_list_result res = {0};
    const char *q = http_query_param(req, "q", qbuf, sizeof qbuf);

    pg.after = http_query_param(req, "after", abuf, sizeof abuf);
    pg.match = q && q[0] ? http_api_queue_match : NULL;
    pg.match_arg = (void *)q;
    pg.limit = http_api_number(req, "limit", HTTP_API_QUEUE_LIMIT, 1, HTTP_API_QUEUE_LIMIT_MAX);
    pg.offset = http_api_number(req, "offset", 0, 0, HTTP_API_QUEUE_OFFSET_MAX);
    if (pg.limit < 0 || pg.offset < 0) {
        http_api_json(req, 400, "Bad Request", NULL, 0,
                      "limit must be 1..100000 and offset a number of messages.");
        return;
    }
    if (pg.after && pg.offset) {
        http_api_json(req, 400, "Bad Request", NULL, 0, "Give offset or after, not both.");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    if (st->sched ? sched_list(st->sched, SCHED_LIST_JSON, &pg, b, &res) < 0 : pg.after != NULL) {
        evbuffer_free(b);
        http_api_json(req, 404, "Not Found", NULL, 0, "after: no such message in the queue.");
        return;
    }
    char n[32];
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    snprintf(n, sizeof n, "%ld", res.total);
    evhttp_add_header(h, "X-Total-Count", n);
    if (res.rest > 0)
        evhttp_add_header(h, "X-Next-After", res.last_id);
    http_reply(req, 200, "OK", "application/x-ndjson; charset=utf-8", b);
    evbuffer_free(b);
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
