/*
 * stats_int.h - declarations shared by the files of src/stats only: the service
 * object, the snapshot of figures every output is rendered from, and the pure
 * formatting helpers (escaping, auth parsing, Prometheus, StatsD, dashboard
 * messages) that the unit tests call directly.
 * Not here: anything another module may use (that is include/mta/stats.h).
 */
#ifndef MTA_STATS_INT_H
#define MTA_STATS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mta/counters.h"

struct evbuffer;
struct evhttp;
struct evhttp_request;
struct evhttp_connection;
struct event;
struct event_base;
struct conf;
struct spool;
struct sched;
struct sched_view_msg;
struct stats_mon;
struct stats_auth_throttle;
struct http_conn;
struct rlimit_accept;
struct evconnlistener;

#define STATS_HTTP_MAX_HEADERS 8192 /* bytes of request line + headers */
#define STATS_HTTP_MAX_BODY 65536   /* bytes of a request body */
#define STATS_HTTP_MAX_CONNS 128    /* unused: http_connection_limit (kept for tests/fuzz) */
#define STATS_QUEUE_PAGE_ROWS 1000  /* messages listed on one /queue page */
#define STATS_DASHBOARD_MAX 8       /* dashboard messages at most */

/* The service: one per daemon. */
struct stats {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct sched *sched;
    struct evhttp *http;
    double start_mono;                /* monotonic seconds at stats_new (uptime) */
    struct evhttp_connection **conns; /* unused (tests/fuzz/fuzz_http.c still allocates it) */
    int nconns;
    struct stats_mon *mon;    /* NULL without mon_terminal */
    struct http_conn *hconns; /* open connections (http_connection_limit) */
    int nhconns, hconns_cap;
    struct event *sweep;               /* forgets closed connections (http_server.c) */
    struct rlimit_accept *pause;       /* accept() back-off of the listener */
    struct evconnlistener *lev;        /* evhttp's listener (owned by evhttp) */
    struct stats_auth_throttle *authf; /* wrong credentials per client; NULL: not throttled */
};

/* Everything the pages, the JSON, /metrics and StatsD show, taken at one instant. */
struct stats_snapshot {
    long long cnt[CNT__COUNT];
    long long mqueue_kilobytes; /* mqueue_bytes / 1024, rounded up */
    long long uptime_seconds;
    double cpu_seconds;       /* user + system CPU of the process */
    long long rss_bytes;      /* resident memory of the process */
    double free_percent;      /* data volume free space; < 0 when unknown */
    int log_share_configured; /* log_terminal set and logs_enabled */
    const char *msgs[STATS_DASHBOARD_MAX];
    int nmsgs;
    long long now; /* unix seconds */
};

/* snapshot.c */
void stats_snapshot_take(struct stats *st, struct stats_snapshot *s);
const char *stats_log_share_state(const struct stats_snapshot *s);

/* resource.c */
void stats_resource_read(double *cpu_seconds, long long *rss_bytes);
double stats_mono_now(void);

/* escape.c */
void stats_html_escape(struct evbuffer *out, const char *s);

/* auth.c */
int stats_ct_equal(const void *a, size_t alen, const void *b, size_t blen);
long stats_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outmax);
int stats_auth_check(const char *authorization, const char *user, const char *pass);
/* per client address: after LIMIT wrong credentials within LOCKOUT seconds the client is refused
 * (429) for LOCKOUT seconds; right credentials forget its failures. NOW: monotonic seconds. */
struct stats_auth_throttle *stats_auth_throttle_new(int limit, double lockout);
void stats_auth_throttle_free(struct stats_auth_throttle *t);
/* stats_auth_throttle_wait - seconds ADDR must still wait (> 0: refuse without checking). */
double stats_auth_throttle_wait(struct stats_auth_throttle *t, const char *addr, double now);
/* stats_auth_throttle_result - record a check; 1 when this failure locked ADDR out. */
int stats_auth_throttle_result(struct stats_auth_throttle *t, const char *addr, int ok, double now);

/* dashboard.c */
#define STATS_MSG_FREE_5 "Data volume free space is below 5%."
#define STATS_MSG_FREE_1 "Data volume free space is below 1%."
#define STATS_MSG_LOG_DOWN                                                                         \
    "Log share is not reachable; mail log records wait on the data volume until it returns."
struct stats_dashboard_input {
    double free_percent; /* < 0: unknown */
    int log_share_configured;
    int log_share_up;
};
void stats_dashboard_update(const struct stats_dashboard_input *in);
int stats_dashboard_messages(const char **out, int max);

/* metrics.c */
void stats_metrics_format(struct evbuffer *out, const struct stats_snapshot *s);

/* mon_push.c */
int stats_mon_parse_target(const char *text, void *sa, int *salen);
void stats_statsd_format(struct evbuffer *out, const struct stats_snapshot *s, double cpu_percent);
struct stats_mon *stats_mon_new(struct stats *st, const char *target, char **err);
void stats_mon_free(struct stats_mon *m);

/* queue_view.c */
int stats_queue_match(const struct sched_view_msg *m, const char *q);
long long stats_kilobytes(long long bytes);

/* http_reply.c */
void http_reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                struct evbuffer *body);
void http_reply_text(struct evhttp_request *req, int code, const char *reason, const char *text);
const char *http_query_param(struct evhttp_request *req, const char *name, char *buf, size_t len);

/* http_server.c */
/* http_request_cb - the evhttp callback of every request (ARG: the struct stats): cap, auth,
 * routing; exposed for tests/fuzz/fuzz_http.c, which hands it requests without a socket. */
void http_request_cb(struct evhttp_request *req, void *arg);

/* template.c: {{text}} always HTML-escaped, {{{html}}} only for rendered templates */
#define STATS_TEMPLATE_NAME_MAX 48 /* bytes of a placeholder name */
struct stats_tvar {
    const char *name;
    const char *text;      /* for {{name}}: escaped on output; NULL renders as "" */
    struct evbuffer *html; /* for {{{name}}}: rendered templates, copied; NULL renders as "" */
    int is_html;
};
#define STATS_TEXT(n, v)                                                                           \
    {                                                                                              \
        .name = (n), .text = (v), .html = NULL, .is_html = 0                                       \
    }
#define STATS_HTML(n, b)                                                                           \
    {                                                                                              \
        .name = (n), .text = NULL, .html = (b), .is_html = 1                                       \
    }
#define STATS_NVARS(a) (sizeof(a) / sizeof((a)[0]))
const char *stats_template_get(const char *name, size_t *len);
int stats_template_render(struct evbuffer *out, const char *name, const struct stats_tvar *vars,
                          size_t nvars, char *err, size_t errlen);
int stats_template_render_text(struct evbuffer *out, const char *tname, const char *tmpl,
                               size_t len, const struct stats_tvar *vars, size_t nvars, char *err,
                               size_t errlen);
int stats_template_scan(const char *tname, const char *tmpl, size_t len,
                        void (*cb)(void *arg, const char *name, int is_html), void *arg, char *err,
                        size_t errlen);

/* http_pages.c */
void http_page_dashboard(struct stats *st, struct evhttp_request *req);
void http_page_queue(struct stats *st, struct evhttp_request *req);
void http_page_message(struct stats *st, struct evhttp_request *req, const char *id);
int http_page_asset(struct evhttp_request *req, const char *name);
/* the pages as HTML from the templates, without a request (the unit test renders them):
 * HOST for the title, ADMIN when username is set; 0, or -1 with ERR (a template mismatch) */
int http_render_dashboard(struct evbuffer *out, const char *host, int admin,
                          const struct stats_snapshot *s, char *err, size_t errlen);
int http_render_queue(struct evbuffer *out, const char *host, int admin, const char *q,
                      void (*each)(void *src, int (*cb)(void *arg, const struct sched_view_msg *m),
                                   void *arg),
                      void *src, const long long *totals, char *err, size_t errlen);
int http_render_message(struct evbuffer *out, const char *host, int admin, const char *id,
                        const struct sched_view_msg *m, char *err, size_t errlen);

/* http_api.c */
void http_api_stats(struct stats *st, struct evhttp_request *req);
void http_api_queue(struct stats *st, struct evhttp_request *req);
void http_api_metrics(struct stats *st, struct evhttp_request *req);
void http_api_admin(struct stats *st, struct evhttp_request *req, const char *action);

/* assets (generated from src/stats/assets/ by cmake/embed.cmake) */
struct stats_asset {
    const char *name;
    const unsigned char *data; /* NUL-terminated; len excludes the NUL */
    size_t len;
};
extern const struct stats_asset stats_assets[];
extern const size_t stats_nassets;

#endif
