/*
 * stats.h - the runtime-statistics service: the HTTP service on in_address:ui_port
 * (dashboard and queue pages, JSON API, Prometheus /metrics, /healthz, admin
 * actions) and the StatsD push to the mon terminal. Everything runs on the
 * caller's event loop and reads counters, the spool's free space and the
 * scheduler's views; it never scans the spool per request.
 * Not here: the counters themselves (core) or the queue (queue).
 */
#ifndef MTA_STATS_H
#define MTA_STATS_H

struct event_base;
struct conf;
struct spool;
struct sched;
struct stats;
struct mta_err;

/*
 * stats_new - bind the HTTP service and start the mon push. SPOOL and SCHED may
 * be NULL (no free-space figure, empty queue). NULL and *err on failure, always
 * MTA_ERR_UI: without a text when the HTTP port cannot be bound (the reason is
 * logged), with one naming mon_terminal when that is not ip:port or unusable.
 * CONF must outlive the returned object.
 */
struct stats *stats_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        struct sched *sched, struct mta_err *err);
/* stats_free - close the listener and every HTTP connection, stop the mon push (NULL ok). */
void stats_free(struct stats *st);

#endif
