/*
 * sched.h - the scheduler: the in-memory queue of messages and recipients, rebuilt
 * from the spool at start, with retry times (clamped exponential backoff) and
 * lifetimes. Delivery (src/relay) asks it for work and reports results; the stats
 * layer and the control socket read it through the view functions below.
 * Not here: how mail is sent (relay) or stored (spool).
 */
#ifndef MTA_SCHED_H
#define MTA_SCHED_H

#include <stddef.h>

struct event_base;
struct conf;
struct spool;
struct sched;

/* --- read-only views (stats pages, /api/queue, mtactl queue): postqueue -j fields --- */
struct sched_view_rcpt {
    const char *address;
    const char *orig_address;     /* ORCPT or "" */
    const char *delay_reason;     /* last deferral reason, "" if none */
    const char *status;           /* "active", "deferred", "sent", "bounced" */
    long long next_retry;         /* unix seconds, 0 if none */
};
struct sched_view_msg {
    const char *queue_id;
    const char *queue_name;       /* "active", "deferred" or "hold" */
    long long arrival_time;       /* unix seconds */
    long long message_size;       /* bytes */
    const char *sender;           /* "" for the null sender */
    int attempts;                 /* delivery attempts so far */
    const struct sched_view_rcpt *recipients;
    int nrecipients;
};

/* sched_view_foreach - CB for every queued message (stop early when CB returns non-zero). */
void sched_view_foreach(struct sched *s, int (*cb)(void *arg, const struct sched_view_msg *m),
                        void *arg);
/* sched_view_get - CB for message ID; 0 when found, -1 when not queued. */
int sched_view_get(struct sched *s, const char *id,
                   void (*cb)(void *arg, const struct sched_view_msg *m), void *arg);

/* --- administration (mtactl, HTTP API) --- */
/* sched_flush - make every deferred message due now. Returns how many. */
int sched_flush(struct sched *s);
/* sched_delete - remove ID ("ALL": every message) from the queue. Returns how many. */
int sched_delete(struct sched *s, const char *id);

#endif
