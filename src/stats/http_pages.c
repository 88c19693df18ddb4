/*
 * http_pages.c - the HTML pages for people: the dashboard (/), the queue listing
 * (/queue, mailq-like, ?q= searches queue ID, sender and recipients) and one
 * message (/queue/ID), plus the embedded static assets (/assets/NAME). Every
 * figure is in the HTML as served, so the pages work without JavaScript;
 * assets/app.js only refreshes them from /api/stats. Everything from mail goes
 * through stats_html_escape.
 * Not here: the JSON API (http_api.c), auth and routing (http_server.c).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "mta/conf.h"
#include "mta/sched.h"

#include "stats_priv.h"

/* http_page_host - the configured host name, else the system's. */
static const char *http_page_host(const struct stats *st, char *buf, size_t len)
{
    if (st->conf->hostname[0])
        return st->conf->hostname;
    if (gethostname(buf, len) < 0)
        return "mta";
    buf[len - 1] = '\0';
    return buf;
}

/* http_page_head - doctype, head and the top bar with PAGE marked active in the navigation. */
static void http_page_head(struct stats *st, struct evbuffer *b, const char *title,
                           const char *page)
{
    char hbuf[256];
    const char *host = http_page_host(st, hbuf, sizeof hbuf);
    evbuffer_add_printf(b,
                        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                        "<title>%s · ",
                        title);
    stats_html_escape(b, host);
    evbuffer_add_printf(b,
                        "</title><link rel=\"icon\" href=\"data:,\">"
                        "<link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\n"
                        "<body data-page=\"%s\" data-admin=\"%d\"><header class=\"top\">"
                        "<div class=\"brand\"><span class=\"logo\" aria-hidden=\"true\"></span>"
                        "mta <span class=\"host\">",
                        page, st->conf->username[0] != '\0');
    stats_html_escape(b, host);
    evbuffer_add_printf(
        b,
        "</span></div><nav>"
        "<a href=\"/\"%s>Dashboard</a><a href=\"/queue\"%s>Queue</a>"
        "<a href=\"/metrics\">Metrics</a><a href=\"/api/stats\">JSON</a></nav>"
        "<div class=\"live\" id=\"live\" title=\"Live refresh\"></div></header>\n<main>",
        strcmp(page, "dashboard") == 0 ? " class=\"active\"" : "",
        strcmp(page, "dashboard") ? " class=\"active\"" : "");
}

/* http_page_tail - closes the page and loads the refresh script. */
static void http_page_tail(struct evbuffer *b)
{
    evbuffer_add_printf(b, "</main><footer>mta mail relay · figures refresh every 5 seconds"
                           "</footer><script src=\"/assets/app.js\"></script></body></html>\n");
}

/* http_page_send - a finished page. */
static void http_page_send(struct evhttp_request *req, int code, const char *reason,
                           struct evbuffer *b)
{
    http_reply(req, code, reason, "text/html; charset=utf-8", b);
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

/* http_card - one figure: LABEL, the value as text, KEY/FMT for the refresh script, a CLASS. */
static void http_card(struct evbuffer *b, const char *cls, const char *label, const char *key,
                      const char *fmt, const char *text, const char *hint)
{
    evbuffer_add_printf(b,
                        "<div class=\"card %s\"><div class=\"label\">%s</div>"
                        "<div class=\"value%s\" data-k=\"%s\" data-f=\"%s\">",
                        cls, label, strcmp(fmt, "text") == 0 ? " text" : "", key, fmt);
    stats_html_escape(b, text);
    evbuffer_add_printf(b, "</div>%s%s%s</div>", hint ? "<div class=\"hint\">" : "",
                        hint ? hint : "", hint ? "</div>" : "");
}

/* http_card_num - a card with an integer value. */
static void http_card_num(struct evbuffer *b, const char *cls, const char *label, const char *key,
                          long long v, const char *hint)
{
    char t[32];
    snprintf(t, sizeof t, "%lld", v);
    http_card(b, cls, label, key, "int", t, hint);
}

/* http_page_dashboard - GET /: the counters, resources and dashboard messages. */
void http_page_dashboard(struct stats *st, struct evhttp_request *req)
{
    struct stats_snapshot s;
    char t[64];
    stats_snapshot_take(st, &s);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    http_page_head(st, b, "Dashboard", "dashboard");

    evbuffer_add_printf(b, "<section id=\"messages\" class=\"alerts\" aria-live=\"polite\">");
    for (int i = 0; i < s.nmsgs; i++) {
        evbuffer_add_printf(b, "<div class=\"alert %s\">",
                            strcmp(s.msgs[i], STATS_MSG_FREE_5) == 0 ? "warn" : "crit");
        stats_html_escape(b, s.msgs[i]);
        evbuffer_add_printf(b, "</div>");
    }
    if (s.nmsgs == 0)
        evbuffer_add_printf(b, "<div class=\"alert ok\">All systems normal.</div>");
    evbuffer_add_printf(b, "</section>\n<h2>Mail queue</h2><section class=\"grid hero\">");
    http_card_num(b, "big", "Mqueue messages", "mqueue_messages", s.cnt[CNT_MQUEUE_MESSAGES],
                  "messages waiting for delivery");
    http_card_num(b, "big", "Mqueue kilobytes", "mqueue_kilobytes", s.mqueue_kilobytes,
                  "size of the mail queue");
    http_card_num(b, "big", "SMTP active sessions", "smtp_active_sessions", s.cnt[CNT_SMTP_ACTIVE],
                  "clients connected now");
    evbuffer_add_printf(b, "</section>\n<h2>Mail flow <span class=\"sub\">since start</span></h2>"
                           "<section class=\"grid flow\">");
    http_card_num(b, "in", "Received", "received", s.cnt[CNT_RECEIVED], "messages accepted");
    http_card_num(b, "good", "Delivered", "delivered", s.cnt[CNT_DELIVERED], "recipients");
    http_card_num(b, "warn", "Deferred", "deferred", s.cnt[CNT_DEFERRED], "attempts");
    http_card_num(b, "bad", "Bounced", "bounced", s.cnt[CNT_BOUNCED], "recipients");
    http_card_num(b, "bad", "Rejected", "rejected", s.cnt[CNT_REJECTED], "SMTP commands");
    evbuffer_add_printf(b, "</section>\n<h2>System</h2><section class=\"grid sys\">");
    snprintf(t, sizeof t, "%.2f s", s.cpu_seconds);
    http_card(b, "", "CPU time", "cpu_seconds", "sec", t, "user + system");
    http_fmt_bytes(t, sizeof t, s.rss_bytes);
    http_card(b, "", "Memory (RSS)", "rss_bytes", "bytes", t, "resident set");
    if (s.free_percent >= 0)
        snprintf(t, sizeof t, "%.1f%%", s.free_percent);
    else
        snprintf(t, sizeof t, "unknown");
    evbuffer_add_printf(b,
                        "<div class=\"card\"><div class=\"label\">Data volume free</div>"
                        "<div class=\"value\" data-k=\"data_volume_free_percent\" "
                        "data-f=\"pct\">%s</div><progress id=\"freebar\" max=\"100\" "
                        "value=\"%.1f\"></progress></div>",
                        t, s.free_percent >= 0 ? s.free_percent : 0.0);
    http_card(b, "", "Log share", "log_share", "text", stats_log_share_state(&s), "CIFS mail log");
    http_fmt_duration(t, sizeof t, s.uptime_seconds);
    http_card(b, "", "Uptime", "uptime_seconds", "dur", t, NULL);
    evbuffer_add_printf(b, "</section>\n");
    http_page_tail(b);
    http_page_send(req, 200, "OK", b);
}

struct http_queue_ctx {
    struct evbuffer *b;
    const char *q;
    long long matched, bytes;
};

/* http_page_queue_row - one message of the listing (mailq's columns plus a link). */
static int http_page_queue_row(void *arg, const struct sched_view_msg *m)
{
    struct http_queue_ctx *c = arg;
    char t[64];
    if (!stats_queue_match(m, c->q))
        return 0;
    c->matched++;
    c->bytes += m->message_size;
    if (c->matched > STATS_QUEUE_PAGE_ROWS)
        return 0; /* keep counting for the summary */
    evbuffer_add_printf(c->b, "<tr><td class=\"id\"><a href=\"/queue/");
    stats_html_escape(c->b, m->queue_id);
    evbuffer_add_printf(c->b, "\">");
    stats_html_escape(c->b, m->queue_id);
    evbuffer_add_printf(c->b, "</a></td><td><span class=\"tag q-");
    stats_html_escape(c->b, m->queue_name);
    evbuffer_add_printf(c->b, "\">");
    stats_html_escape(c->b, m->queue_name);
    http_fmt_time(t, sizeof t, m->arrival_time);
    evbuffer_add_printf(c->b,
                        "</span></td><td class=\"num\">%lld</td><td class=\"time\">%s</td>"
                        "<td class=\"addr\">",
                        m->message_size, t);
    stats_html_escape(c->b, m->sender[0] ? m->sender : "<>");
    evbuffer_add_printf(c->b, "</td><td>");
    for (int i = 0; i < m->nrecipients; i++) {
        const struct sched_view_rcpt *r = &m->recipients[i];
        evbuffer_add_printf(c->b, "<div class=\"addr\">");
        stats_html_escape(c->b, r->address);
        evbuffer_add_printf(c->b, "</div>");
        if (r->delay_reason && r->delay_reason[0]) {
            evbuffer_add_printf(c->b, "<div class=\"reason\">(");
            stats_html_escape(c->b, r->delay_reason);
            evbuffer_add_printf(c->b, ")</div>");
        }
    }
    evbuffer_add_printf(c->b, "</td></tr>\n");
    return 0;
}

/* http_page_queue - GET /queue[?q=TEXT]: the queue like mailq, with search. */
void http_page_queue(struct stats *st, struct evhttp_request *req)
{
    char qbuf[256];
    struct http_queue_ctx c = {evbuffer_new(), http_query_param(req, "q", qbuf, sizeof qbuf), 0, 0};
    struct evbuffer *rows = evbuffer_new();
    if (!c.b || !rows) {
        if (c.b)
            evbuffer_free(c.b);
        if (rows)
            evbuffer_free(rows);
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    struct evbuffer *page = c.b;
    c.b = rows;
    if (st->sched)
        sched_view_foreach(st->sched, http_page_queue_row, &c);

    http_page_head(st, page, "Queue", "queue");
    evbuffer_add_printf(page, "<div class=\"toolbar\"><form class=\"search\" method=\"get\" "
                              "action=\"/queue\"><input type=\"search\" name=\"q\" value=\"");
    stats_html_escape(page, c.q ? c.q : "");
    evbuffer_add_printf(page, "\" placeholder=\"Search queue ID, sender or recipient\" "
                              "aria-label=\"Search\"><button type=\"submit\">Search</button>");
    if (c.q && c.q[0])
        evbuffer_add_printf(page, "<a class=\"clear\" href=\"/queue\">Clear</a>");
    evbuffer_add_printf(page, "</form>");
    if (st->conf->username[0])
        evbuffer_add_printf(page, "<button class=\"action\" data-action=\"flush\">Flush queue"
                                  "</button>");
    evbuffer_add_printf(page, "</div>\n<p class=\"summary\" id=\"summary\">");
    if (c.matched == 0)
        evbuffer_add_printf(page, "%s",
                            c.q && c.q[0] ? "No message matches." : "Mail queue is empty");
    else
        evbuffer_add_printf(page, "-- %lld Kbytes in %lld Request%s.%s", stats_kilobytes(c.bytes),
                            c.matched, c.matched == 1 ? "" : "s",
                            c.matched > STATS_QUEUE_PAGE_ROWS ? " Showing the first 1000." : "");
    evbuffer_add_printf(page, "</p>\n");
    if (c.matched) {
        evbuffer_add_printf(page,
                            "<table class=\"queue\"><thead><tr><th>Queue ID</th><th>Queue</th>"
                            "<th class=\"num\">Size</th><th>Arrival time</th><th>Sender</th>"
                            "<th>Recipients</th></tr></thead><tbody>\n");
        evbuffer_add_buffer(page, rows);
        evbuffer_add_printf(page, "</tbody></table>\n");
    }
    evbuffer_free(rows);
    http_page_tail(page);
    http_page_send(req, 200, "OK", page);
}

/* http_page_message_cb - the envelope and recipients of one message. */
static void http_page_message_cb(void *arg, const struct sched_view_msg *m)
{
    struct evbuffer *b = arg;
    char t[64], n[64];
    evbuffer_add_printf(b, "<h2>Message <span class=\"mono\">");
    stats_html_escape(b, m->queue_id);
    evbuffer_add_printf(b, "</span></h2><section class=\"panel\"><dl class=\"env\"><dt>Queue</dt>"
                           "<dd><span class=\"tag q-");
    stats_html_escape(b, m->queue_name);
    evbuffer_add_printf(b, "\">");
    stats_html_escape(b, m->queue_name);
    http_fmt_time(t, sizeof t, m->arrival_time);
    http_fmt_bytes(n, sizeof n, m->message_size);
    evbuffer_add_printf(b,
                        "</span></dd><dt>Arrival time</dt><dd>%s</dd><dt>Size</dt>"
                        "<dd>%lld bytes (%s)</dd><dt>Sender</dt><dd class=\"addr\">",
                        t, m->message_size, n);
    stats_html_escape(b, m->sender[0] ? m->sender : "<> (null sender)");
    evbuffer_add_printf(b,
                        "</dd><dt>Delivery attempts</dt><dd>%d</dd></dl></section>\n"
                        "<h2>Recipients</h2><table class=\"queue\"><thead><tr><th>Address</th>"
                        "<th>Status</th><th>Next retry</th><th>Reason of the last delay</th>"
                        "</tr></thead><tbody>\n",
                        m->attempts);
    for (int i = 0; i < m->nrecipients; i++) {
        const struct sched_view_rcpt *r = &m->recipients[i];
        evbuffer_add_printf(b, "<tr><td class=\"addr\">");
        stats_html_escape(b, r->address);
        if (r->orig_address && r->orig_address[0]) {
            evbuffer_add_printf(b, "<div class=\"reason\">original: ");
            stats_html_escape(b, r->orig_address);
            evbuffer_add_printf(b, "</div>");
        }
        evbuffer_add_printf(b, "</td><td><span class=\"tag s-");
        stats_html_escape(b, r->status);
        evbuffer_add_printf(b, "\">");
        stats_html_escape(b, r->status);
        http_fmt_time(t, sizeof t, r->next_retry);
        evbuffer_add_printf(b, "</span></td><td>%s</td><td class=\"reason\">", t);
        stats_html_escape(b, r->delay_reason && r->delay_reason[0] ? r->delay_reason : "-");
        evbuffer_add_printf(b, "</td></tr>\n");
    }
    evbuffer_add_printf(b, "</tbody></table>\n");
}

/* http_page_message - GET /queue/ID: one message, 404 when it is not queued (any more). */
void http_page_message(struct stats *st, struct evhttp_request *req, const char *id)
{
    struct evbuffer *b = evbuffer_new(), *body = evbuffer_new();
    if (!b || !body) {
        if (b)
            evbuffer_free(b);
        if (body)
            evbuffer_free(body);
        http_reply_text(req, 500, "Internal Server Error", "Out of memory.");
        return;
    }
    int found = st->sched && sched_view_get(st->sched, id, http_page_message_cb, body) == 0;
    http_page_head(st, b, "Message", "queue");
    evbuffer_add_printf(
        b, "<div class=\"toolbar\"><a class=\"back\" href=\"/queue\">&larr; Queue</a>");
    if (found && st->conf->username[0]) {
        evbuffer_add_printf(b, "<button class=\"action danger\" data-action=\"delete\" data-id=\"");
        stats_html_escape(b, id);
        evbuffer_add_printf(b, "\">Delete message</button>");
    }
    evbuffer_add_printf(b, "</div>\n");
    if (found) {
        evbuffer_add_buffer(b, body);
    } else {
        evbuffer_add_printf(b, "<p class=\"summary\">Message ");
        stats_html_escape(b, id);
        evbuffer_add_printf(b, " is not in the queue (delivered, bounced or deleted).</p>\n");
    }
    evbuffer_free(body);
    http_page_tail(b);
    http_page_send(req, found ? 200 : 404, found ? "OK" : "Not Found", b);
}

/* http_page_asset - GET /assets/NAME from the embedded files; 0 when there is no such asset. */
int http_page_asset(struct evhttp_request *req, const char *name)
{
    for (size_t i = 0; i < stats_nassets; i++) {
        if (strcmp(stats_assets[i].name, name) != 0)
            continue;
        const char *dot = strrchr(name, '.');
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
