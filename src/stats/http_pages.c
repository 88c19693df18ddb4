/*
 * http_pages.c - the HTML pages for people: the dashboard (/), the queue listing
 * (/queue, mailq-like, ?q= searches queue ID, sender and recipients) and one
 * message (/queue/ID), plus the embedded static assets (/assets/NAME). The HTML
 * is in the *.html templates of src/stats/assets (rendered by template.c, which
 * escapes every text value); this file only picks the figures, formats them and
 * decides which fragments a page gets. Every figure is in the HTML as served, so
 * the pages work without JavaScript; assets/app.js only refreshes them from
 * /api/stats.
 * Not here: the JSON API (http_api.c), auth and routing (http_server.c), markup.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/sched.h"

#include "stats_int.h"

/*
 * http_page_send - a finished page (RC 0), or 500 when a template did not match the
 * code (RC -1, ERR says which; the unit test renders every page, so this is a bug).
 */
static void http_page_send(struct evhttp_request *req, int rc, int code, const char *reason,
                           struct evbuffer *b, const char *err)
{
    if (rc < 0) {
        log_error("stats", "page template error: %s", err);
        http_reply_text(req, 500, "Internal Server Error", "Page template error.");
    } else {
        http_reply(req, code, reason, "text/html; charset=utf-8", b);
    }
    evbuffer_free(b);
}

/* http_fmt_bytes - "12.3 MiB" (the same rules as fmtBytes in app.js). */
static void http_fmt_bytes(char *buf, size_t len, long long v)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 4) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%lld B", v);
    else
        snprintf(buf, len, "%.1f %s", d, units[u]);
}

/* http_fmt_duration - "2d 3h 4m", "5m 6s", "7s" (the same rules as fmtDur in app.js). */
static void http_fmt_duration(char *buf, size_t len, long long s)
{
    if (s < 0)
        s = 0;
    long long d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60, sec = s % 60;
    if (d)
        snprintf(buf, len, "%lldd %lldh %lldm", d, h, m);
    else if (h)
        snprintf(buf, len, "%lldh %lldm", h, m);
    else if (m)
        snprintf(buf, len, "%lldm %llds", m, sec);
    else
        snprintf(buf, len, "%llds", sec);
}

/* http_fmt_time - a unix time as "YYYY-MM-DD HH:MM:SS ZONE" in the daemon's time zone. */
static void http_fmt_time(char *buf, size_t len, long long t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t <= 0 || !localtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm))
        snprintf(buf, len, "-");
}

/*
 * A page being rendered: the fragments made so far (freed together) and the first
 * error. After an error every further fragment is NULL (renders as nothing) and
 * the page fails as a whole, so the code building it needs no error paths.
 */
#define HTTP_RENDER_PARTS 16
struct http_render {
    struct evbuffer *parts[HTTP_RENDER_PARTS];
    int nparts;
    int failed;
    char *err;
    size_t errlen;
};

/* http_render_fail - remember the first error of R (ERR is set by the renderer or here). */
static void http_render_fail(struct http_render *r, const char *why)
{
    if (!r->failed && why && r->err && r->errlen)
        snprintf(r->err, r->errlen, "%s", why);
    r->failed = 1;
}

/* http_part_new - an empty fragment buffer owned by R; NULL after a failure. */
static struct evbuffer *http_part_new(struct http_render *r)
{
    if (r->failed)
        return NULL;
    if (r->nparts == HTTP_RENDER_PARTS) {
        http_render_fail(r, "too many fragments on one page (HTTP_RENDER_PARTS)");
        return NULL;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_render_fail(r, "out of memory");
        return NULL;
    }
    r->parts[r->nparts++] = b;
    return b;
}

/* http_add - append template TMPL rendered with VARS to OUT; R fails on a mismatch. */
static void http_add(struct http_render *r, struct evbuffer *out, const char *tmpl,
                     const struct stats_tvar *vars, size_t nvars)
{
    if (r->failed || !out)
        return;
    if (stats_template_render(out, tmpl, vars, nvars, r->err, r->errlen) < 0)
        r->failed = 1;
}

/* http_part - TMPL rendered with VARS as a new fragment of R (NULL after a failure). */
static struct evbuffer *http_part(struct http_render *r, const char *tmpl,
                                  const struct stats_tvar *vars, size_t nvars)
{
    struct evbuffer *b = http_part_new(r);
    http_add(r, b, tmpl, vars, nvars);
    return b;
}

/* http_render_done - free R's fragments; 0 when the page rendered, else -1. */
static int http_render_done(struct http_render *r)
{
    for (int i = 0; i < r->nparts; i++)
        evbuffer_free(r->parts[i]);
    r->nparts = 0;
    return r->failed ? -1 : 0;
}

/* http_layout - CONTENT framed by layout.html onto OUT, PAGE ("dashboard", "queue") marked. */
static void http_layout(struct http_render *r, struct evbuffer *out, const char *title,
                        const char *page, const char *host, int admin, struct evbuffer *content)
{
    struct evbuffer *active = http_part(r, "nav_active.html", NULL, 0);
    int dash = strcmp(page, "dashboard") == 0;
    const struct stats_tvar v[] = {
        STATS_TEXT("title", title),
        STATS_TEXT("host", host),
        STATS_TEXT("page", page),
        STATS_TEXT("admin", admin ? "1" : "0"),
        STATS_HTML("nav_dashboard", dash ? active : NULL),
        STATS_HTML("nav_queue", dash ? NULL : active),
        STATS_HTML("content", content),
    };
    http_add(r, out, "layout.html", v, STATS_NVARS(v));
}

/* http_render_dashboard - the dashboard of snapshot S as a whole page onto OUT. */
int http_render_dashboard(struct evbuffer *out, const char *host, int admin,
                          const struct stats_snapshot *s, char *err, size_t errlen)
{
    struct http_render r = {.err = err, .errlen = errlen};
    const long long figures[] = {
        s->cnt[CNT_MQUEUE_MESSAGES],   s->mqueue_kilobytes,          s->cnt[CNT_SMTP_ACTIVE],
        s->cnt[CNT_RECEIVED],          s->cnt[CNT_DELIVERED],        s->cnt[CNT_DEFERRED],
        s->cnt[CNT_BOUNCED],           s->cnt[CNT_REJECTED],         s->cnt[CNT_DKIM_SIGNED],
        s->cnt[CNT_DKIM_FAILED],       s->cnt[CNT_MILTER_ACCEPTED],  s->cnt[CNT_MILTER_REJECTED],
        s->cnt[CNT_MILTER_TEMPFAILED], s->cnt[CNT_MILTER_DISCARDED], s->cnt[CNT_MILTER_QUARANTINED],
    };
    char n[STATS_NVARS(figures)][32], cpu[32], rss[32], pct[32], bar[32], up[32];
    for (size_t i = 0; i < STATS_NVARS(figures); i++)
        snprintf(n[i], sizeof n[i], "%lld", figures[i]);
    snprintf(cpu, sizeof cpu, "%.2f s", s->cpu_seconds);
    http_fmt_bytes(rss, sizeof rss, s->rss_bytes);
    if (s->free_percent >= 0)
        snprintf(pct, sizeof pct, "%.1f%%", s->free_percent);
    else
        snprintf(pct, sizeof pct, "unknown");
    snprintf(bar, sizeof bar, "%.1f", s->free_percent >= 0 ? s->free_percent : 0.0);
    http_fmt_duration(up, sizeof up, s->uptime_seconds);

    struct evbuffer *alerts = http_part_new(&r);
    for (int i = 0; i < s->nmsgs; i++) {
        const struct stats_tvar a[] = {
            STATS_TEXT("level", strcmp(s->msgs[i], STATS_MSG_FREE_5) == 0 ? "warn" : "crit"),
            STATS_TEXT("message", s->msgs[i]),
        };
        http_add(&r, alerts, "alert.html", a, STATS_NVARS(a));
    }
    if (s->nmsgs == 0)
        http_add(&r, alerts, "alert_ok.html", NULL, 0);
    const struct stats_tvar v[] = {
        STATS_HTML("alerts", alerts),
        STATS_TEXT("mqueue_messages", n[0]),
        STATS_TEXT("mqueue_kilobytes", n[1]),
        STATS_TEXT("smtp_active_sessions", n[2]),
        STATS_TEXT("received", n[3]),
        STATS_TEXT("delivered", n[4]),
        STATS_TEXT("deferred", n[5]),
        STATS_TEXT("bounced", n[6]),
        STATS_TEXT("rejected", n[7]),
        STATS_TEXT("dkim_signed", n[8]),
        STATS_TEXT("dkim_sign_failed", n[9]),
        STATS_TEXT("milter_accepted", n[10]),
        STATS_TEXT("milter_rejected", n[11]),
        STATS_TEXT("milter_tempfailed", n[12]),
        STATS_TEXT("milter_discarded", n[13]),
        STATS_TEXT("milter_quarantined", n[14]),
        STATS_TEXT("cpu_seconds", cpu),
        STATS_TEXT("rss_bytes", rss),
        STATS_TEXT("free_percent", pct),
        STATS_TEXT("free_bar", bar),
        STATS_TEXT("log_share", stats_log_share_state(s)),
        STATS_TEXT("uptime", up),
    };
    struct evbuffer *content = http_part(&r, "dashboard.html", v, STATS_NVARS(v));
    http_layout(&r, out, "Dashboard", "dashboard", host, admin, content);
    return http_render_done(&r);
}

/* http_page_dashboard - GET /: the counters, resources and dashboard messages. */
void http_page_dashboard(struct stats *st, struct evhttp_request *req)
{
    struct stats_snapshot s;
    char err[256] = "";
    stats_snapshot_take(st, &s);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    int rc = http_render_dashboard(b, st->conf->myhostname, st->conf->username[0] != '\0', &s, err,
                                   sizeof err);
    http_page_send(req, rc, 200, "OK", b, err);
}

struct http_queue_ctx {
    struct http_render *r;
    struct evbuffer *rows, *rcpts, *reason; /* rcpts and reason: scratch, per row */
    const char *q;
    long long matched, bytes;
};

/* http_page_queue_row - one message of the listing (mailq's columns plus a link). */
static int http_page_queue_row(void *arg, const struct sched_view_msg *m)
{
    struct http_queue_ctx *c = arg;
    char size[32], arrival[64];
    if (!stats_queue_match(m, c->q))
        return 0;
    c->matched++;
    c->bytes += m->message_size;
    if (c->matched > STATS_QUEUE_PAGE_ROWS || c->r->failed)
        return 0; /* keep counting for the summary */
    evbuffer_drain(c->rcpts, evbuffer_get_length(c->rcpts));
    for (int i = 0; i < m->nrecipients; i++) {
        const struct sched_view_rcpt *rc = &m->recipients[i];
        int deferred = rc->delay_reason && rc->delay_reason[0];
        evbuffer_drain(c->reason, evbuffer_get_length(c->reason));
        if (deferred) {
            const struct stats_tvar w[] = {STATS_TEXT("reason", rc->delay_reason)};
            http_add(c->r, c->reason, "queue_rcpt_reason.html", w, STATS_NVARS(w));
        }
        const struct stats_tvar v[] = {
            STATS_TEXT("address", rc->address),
            STATS_HTML("reason", c->reason),
        };
        http_add(c->r, c->rcpts, "queue_rcpt.html", v, STATS_NVARS(v));
    }
    snprintf(size, sizeof size, "%lld", m->message_size);
    http_fmt_time(arrival, sizeof arrival, m->arrival_time);
    const struct stats_tvar v[] = {
        STATS_TEXT("queue_id", m->queue_id),
        STATS_TEXT("queue_name", m->queue_name),
        STATS_TEXT("size", size),
        STATS_TEXT("arrival", arrival),
        STATS_TEXT("sender", m->sender[0] ? m->sender : "<>"),
        STATS_HTML("recipients", c->rcpts),
    };
    http_add(c->r, c->rows, "queue_row.html", v, STATS_NVARS(v));
    return 0;
}

/* http_render_queue - the /queue page for search Q (NULL: all) onto OUT; EACH(SRC) lists the queue.
 * TOTALS (messages, bytes of the whole queue) or NULL: EACH lists everything and is counted. */
int http_render_queue(struct evbuffer *out, const char *host, int admin, const char *q,
                      void (*each)(void *src, int (*cb)(void *arg, const struct sched_view_msg *m),
                                   void *arg),
                      void *src, const long long *totals, char *err, size_t errlen)
{
    struct http_render r = {.err = err, .errlen = errlen};
    struct http_queue_ctx c = {&r, http_part_new(&r), http_part_new(&r), http_part_new(&r), q, 0,
                               0};
    if (!r.failed && each)
        each(src, http_page_queue_row, &c);
    if (totals && !(q && q[0])) {
        c.matched = totals[0]; /* the live queue stopped after the page: its counters */
        c.bytes = totals[1];
    }

    char summary[160];
    if (c.matched == 0)
        snprintf(summary, sizeof summary, "%s",
                 q && q[0] ? "No message matches." : "Mail queue is empty");
    else
        snprintf(summary, sizeof summary, "-- %lld Kbytes in %lld Request%s.%s",
                 stats_kilobytes(c.bytes), c.matched, c.matched == 1 ? "" : "s",
                 c.matched > STATS_QUEUE_PAGE_ROWS ? " Showing the first 1000." : "");
    const struct stats_tvar t[] = {STATS_HTML("rows", c.rows)};
    const struct stats_tvar v[] = {
        STATS_TEXT("q", q ? q : ""),
        STATS_HTML("clear", q && q[0] ? http_part(&r, "queue_clear.html", NULL, 0) : NULL),
        STATS_HTML("flush", admin ? http_part(&r, "queue_flush.html", NULL, 0) : NULL),
        STATS_TEXT("summary", summary),
        STATS_HTML("table", c.matched ? http_part(&r, "queue_table.html", t, 1) : NULL),
    };
    struct evbuffer *content = http_part(&r, "queue.html", v, STATS_NVARS(v));
    http_layout(&r, out, "Queue", "queue", host, admin, content);
    return http_render_done(&r);
}

struct http_queue_src {
    struct sched *sched;
    const char *q;
    int (*cb)(void *arg, const struct sched_view_msg *m);
    void *arg;
    long n;
};

/* http_page_queue_first - the rows of the first page, then stop (no search: the summary
 * comes from the counters, so a large queue is not walked per request). */
static int http_page_queue_first(void *arg, const struct sched_view_msg *m)
{
    struct http_queue_src *w = arg;
    if (++w->n > STATS_QUEUE_PAGE_ROWS)
        return 1;
    return w->cb(w->arg, m);
}

/* http_page_queue_each - the live queue for http_render_queue: all of it for a search. */
static void http_page_queue_each(void *src, int (*cb)(void *arg, const struct sched_view_msg *m),
                                 void *arg)
{
    struct http_queue_src *w = src;
    if (!w->sched)
        return;
    if (w->q && w->q[0]) {
        sched_view_foreach(w->sched, cb, arg);
        return;
    }
    w->cb = cb;
    w->arg = arg;
    sched_view_foreach(w->sched, http_page_queue_first, w);
}

/* http_page_queue - GET /queue[?q=TEXT]: the queue like mailq, with search. */
void http_page_queue(struct stats *st, struct evhttp_request *req)
{
    char qbuf[256], err[256] = "";
    const char *q = http_query_param(req, "q", qbuf, sizeof qbuf);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    struct http_queue_src src = {st->sched, q, NULL, NULL, 0};
    long long totals[2] = {st->spool ? spool_count(st->spool) : 0, counter_get(CNT_MQUEUE_BYTES)};
    int rc =
        http_render_queue(b, st->conf->myhostname, st->conf->username[0] != '\0', q,
                          http_page_queue_each, &src, st->spool ? totals : NULL, err, sizeof err);
    http_page_send(req, rc, 200, "OK", b, err);
}

/* http_render_message - the page of message ID onto OUT; M is NULL when it is not queued. */
int http_render_message(struct evbuffer *out, const char *host, int admin, const char *id,
                        const struct sched_view_msg *m, char *err, size_t errlen)
{
    struct http_render r = {.err = err, .errlen = errlen};
    struct evbuffer *body;
    if (m) {
        struct evbuffer *rcpts = http_part_new(&r), *orig = http_part_new(&r);
        char t[64], n[64], size[32], attempts[32];
        for (int i = 0; i < m->nrecipients && !r.failed; i++) {
            const struct sched_view_rcpt *rc = &m->recipients[i];
            evbuffer_drain(orig, evbuffer_get_length(orig));
            if (rc->orig_address && rc->orig_address[0]) {
                const struct stats_tvar o[] = {STATS_TEXT("address", rc->orig_address)};
                http_add(&r, orig, "message_original.html", o, STATS_NVARS(o));
            }
            http_fmt_time(t, sizeof t, rc->next_retry);
            const struct stats_tvar v[] = {
                STATS_TEXT("address", rc->address),
                STATS_HTML("original", orig),
                STATS_TEXT("status", rc->status),
                STATS_TEXT("next_retry", t),
                STATS_TEXT("reason",
                           rc->delay_reason && rc->delay_reason[0] ? rc->delay_reason : "-"),
            };
            http_add(&r, rcpts, "message_rcpt.html", v, STATS_NVARS(v));
        }
        http_fmt_time(t, sizeof t, m->arrival_time);
        http_fmt_bytes(n, sizeof n, m->message_size);
        snprintf(size, sizeof size, "%lld", m->message_size);
        snprintf(attempts, sizeof attempts, "%d", m->attempts);
        const struct stats_tvar v[] = {
            STATS_TEXT("queue_id", m->queue_id),
            STATS_TEXT("queue_name", m->queue_name),
            STATS_TEXT("arrival", t),
            STATS_TEXT("size", size),
            STATS_TEXT("size_human", n),
            STATS_TEXT("sender", m->sender[0] ? m->sender : "<> (null sender)"),
            STATS_TEXT("attempts", attempts),
            STATS_HTML("recipients", rcpts),
        };
        body = http_part(&r, "message_envelope.html", v, STATS_NVARS(v));
    } else {
        const struct stats_tvar v[] = {STATS_TEXT("queue_id", id)};
        body = http_part(&r, "message_missing.html", v, STATS_NVARS(v));
    }
    const struct stats_tvar d[] = {STATS_TEXT("queue_id", id)};
    const struct stats_tvar v[] = {
        STATS_HTML("delete", m && admin ? http_part(&r, "message_delete.html", d, 1) : NULL),
        STATS_HTML("body", body),
    };
    struct evbuffer *content = http_part(&r, "message.html", v, STATS_NVARS(v));
    http_layout(&r, out, "Message", "queue", host, admin, content);
    return http_render_done(&r);
}

struct http_message_ctx {
    struct evbuffer *out;
    const char *host, *id;
    int admin, rc;
    char *err;
    size_t errlen;
};

/* http_page_message_cb - render the page while the scheduler lends us the message. */
static void http_page_message_cb(void *arg, const struct sched_view_msg *m)
{
    struct http_message_ctx *c = arg;
    c->rc = http_render_message(c->out, c->host, c->admin, c->id, m, c->err, c->errlen);
}

/* http_page_message - GET /queue/ID: one message, 404 when it is not queued (any more). */
void http_page_message(struct stats *st, struct evhttp_request *req, const char *id)
{
    char err[256] = "";
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    struct http_message_ctx c = {
        b, st->conf->myhostname, id, st->conf->username[0] != '\0', 0, err, sizeof err};
    int found = st->sched && sched_view_get(st->sched, id, http_page_message_cb, &c) == 0;
    if (!found)
        c.rc = http_render_message(b, c.host, c.admin, id, NULL, err, sizeof err);
    http_page_send(req, c.rc, found ? 200 : 404, found ? "OK" : "Not Found", b, err);
}

/*
 * http_page_asset - GET /assets/NAME from the embedded files; 0 when there is no such
 * asset. The *.html files are the page templates, not pages: never served raw.
 */
int http_page_asset(struct evhttp_request *req, const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return 0;
    for (size_t i = 0; i < stats_nassets; i++) {
        if (strcmp(stats_assets[i].name, name) != 0)
            continue;
        const char *ctype = "application/octet-stream";
        if (dot && strcmp(dot, ".css") == 0)
            ctype = "text/css; charset=utf-8";
        else if (dot && strcmp(dot, ".js") == 0)
            ctype = "text/javascript; charset=utf-8";
        else if (dot && strcmp(dot, ".svg") == 0)
            ctype = "image/svg+xml";
        struct evbuffer *b = evbuffer_new();
        if (!b)
            return 0;
        evbuffer_add_reference(b, stats_assets[i].data, stats_assets[i].len, NULL, NULL);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "max-age=300");
        http_reply(req, 200, "OK", ctype, b);
        evbuffer_free(b);
        return 1;
    }
    return 0;
}
