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

#include "mta/spool.h"

struct event_base;
struct conf;
struct spool;
struct evbuffer;
struct sched;

/* --- read-only views (stats pages, /api/queue, mtactl queue): postqueue -j fields --- */
struct sched_view_rcpt {
    const char *address;
    const char *orig_address; /* ORCPT or "" */
    const char *delay_reason; /* last deferral reason, "" if none */
    const char *status;       /* "active", "deferred", "sent", "bounced" */
    long long next_retry;     /* unix seconds, 0 if none */
};
struct sched_view_msg {
    const char *queue_id;
    const char *queue_name; /* "active", "deferred" or "hold" */
    long long arrival_time; /* unix seconds */
    long long message_size; /* bytes */
    const char *sender;     /* "" for the null sender */
    int attempts;           /* delivery attempts so far */
    const struct sched_view_rcpt *recipients;
    int nrecipients;
};

/* sched_view_foreach - CB for every queued message (stop early when CB returns non-zero). */
void sched_view_foreach(struct sched *s, int (*cb)(void *arg, const struct sched_view_msg *m),
                        void *arg);
/* sched_view_get - CB for message ID; 0 when found, -1 when not queued. */
int sched_view_get(struct sched *s, const char *id,
                   void (*cb)(void *arg, const struct sched_view_msg *m), void *arg);

/* One destination's Postfix qmgr state, for /api/stats (sched_dest.c). */
struct sched_view_dest {
    const char *name;   /* the next-hop domain, smart_relay or cc_mta value */
    int window;         /* deliveries allowed at once now (0: dead) */
    int active;         /* deliveries under way */
    int ready;          /* jobs waiting */
    int dead;           /* throttled */
    const char *reason; /* why it is dead, "" when not */
};
/* sched_dest_view_foreach - CB for each destination, throttled ones first, at most MAX;
 * returns how many destinations there are in all. */
int sched_dest_view_foreach(struct sched *s, int max,
                            void (*cb)(void *arg, const struct sched_view_dest *d), void *arg);

/* --- the queue listing: the one formatter behind mtactl queue, postqueue -p/-j, mailq and
 * /api/queue (sched_admin.c), so that they all show the same bytes --- */
enum sched_list_format {
    SCHED_LIST_MAILQ, /* Postfix 3.7 showq_compat, long queue IDs (header, trailer) */
    SCHED_LIST_JSON,  /* Postfix 3.7 postqueue -j: one JSON object per line */
};
struct sched_list_page {
    long limit;        /* at most this many listed */
    long offset;       /* skip this many matches first */
    const char *after; /* or: start after this queue ID (NULL: not used) */
    int (*match)(void *arg, const struct sched_view_msg *m); /* NULL: every message */
    void *match_arg;
    const char *more; /* MAILQ: the command named in the "... N more Requests" hint */
    int stream;       /* one page of a paged listing (postqueue -p and -j page through it):
                       * MAILQ without the trailer; after= may name a message gone since */
};
struct sched_list_result {
    long total;                  /* matching messages in the whole queue */
    long shown;                  /* listed */
    long rest;                   /* matches after the page (a walk, for filters and mtactl
                                  * pages only; else 1 when more follow, 0 at the end) */
    long long bytes;             /* sizes of all matching messages */
    long long page_bytes;        /* sizes of the messages listed */
    char last_id[SPOOL_ID_SIZE]; /* the last one listed: after= of the next page */
};
/*
 * sched_list - the page PG of the queue onto OUT in FMT, counts in *RES (may be NULL).
 * -1 (nothing written) when PG->after names no queued message.
 */
int sched_list(struct sched *s, enum sched_list_format fmt, const struct sched_list_page *pg,
               struct evbuffer *out, struct sched_list_result *res);

/* --- administration (mtactl, HTTP API) --- */
/* sched_flush - make every deferred message due now (a queue run in chunks; due messages
 * enter the active set as it has room). Returns how many messages the run looks at. */
int sched_flush(struct sched *s);
/* sched_delete - remove ID ("ALL": every message) from the queue. Returns how many. */
int sched_delete(struct sched *s, const char *id);
/* sched_flush_one - make deferred message ID due now (postqueue -i). 1, or 0 when it is not
 * queued, not deferred or on hold. */
int sched_flush_one(struct sched *s, const char *id);
/*
 * sched_hold - put ID ("ALL": every message) on hold (postsuper -h): no delivery of it
 * starts until it is released; deliveries already under way finish. The hold is kept in
 * the status file (flushed), so it survives a restart or a crash once
 * sched_hold_unsynced no longer counts it. Returns how many were placed on hold.
 */
int sched_hold(struct sched *s, const char *id);
/* sched_release - release ID ("ALL": every held message) from hold (postsuper -H) into the
 * deferred queue, due at the next queue run. Returns how many were released. */
int sched_release(struct sched *s, const char *id);
/* sched_hold_unsynced - how many holds and releases are not yet on stable storage. */
int sched_hold_unsynced(struct sched *s);

/* --- life cycle (mtad.c) --- */
/*
 * sched_new - the scheduler for SPOOL: registers with spool_set_notify and loads
 * every queued message (envelope and status file) on worker threads. NULL and
 * *err (malloc'd) on failure. CONF must outlive it.
 */
struct sched *sched_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        char **err);
/* sched_free - forget the in-memory queue (the spool keeps every message). Call after
 * relay_free (no job may be out) and before spool_close. NULL is fine. */
void sched_free(struct sched *s);

struct control;
/* sched_control_attach - serve "queue", "queue-json", "flush", "flush-id" (public: any local
 * user, as Postfix's postqueue), "delete", "hold", "release", "hold-sync" (root and
 * mail_owner) on CTL. */
void sched_control_attach(struct sched *s, struct control *ctl);

/* --- delivery side (src/relay) --- */
enum sched_dest_kind {
    SCHED_DEST_DOMAIN = 0, /* dest is the recipient domain: MX lookup */
    SCHED_DEST_SMART,      /* dest is the smart_relay next hop */
    SCHED_DEST_CC,         /* dest is the cc_mta next hop: the independent copy */
};
/* What the relay saw for one recipient: the class of the answer, not what to do with it
 * (Postfix's delivery agents write the same per-recipient status for qmgr to act on). */
enum sched_class {
    SCHED_CLASS_NONE = 0, /* no answer (not tried) */
    SCHED_CLASS_SUCCESS,  /* 2xx: the next hop took it */
    SCHED_CLASS_TEMP,     /* 4xx, a timeout, a lost connection, a DNS failure that may pass */
    SCHED_CLASS_PERM,     /* 5xx, a name that does not exist, a message that cannot be sent */
};
/* The scheduler's decision on a recipient (job->result), made by sched_job_report and
 * sched_job_decide; the relay logs it and notifies as it says. */
enum sched_result {
    SCHED_RESULT_NONE = 0, /* not tried (shutdown): stays pending, nothing counted */
    SCHED_RESULT_SENT,     /* delivered: never again */
    SCHED_RESULT_DEFER,    /* try again after the backoff */
    SCHED_RESULT_BOUNCE,   /* final failure: a failure notice is due (sched_job_notice) */
};
/* The notice due for a recipient after the decision (relay_notify.c writes it). */
enum sched_notice {
    SCHED_NOTICE_NONE = 0,
    SCHED_NOTICE_SUCCESS, /* delivered and NOTIFY=SUCCESS asked for it */
    SCHED_NOTICE_FAILURE, /* bounced, and the sender did not refuse it (NOTIFY) */
};

/*
 * One unit of work: some recipients of one message that share a destination.
 * Everything is owned by the scheduler and valid until sched_job_done.
 */
struct sched_job {
    unsigned long long id;
    char queue_id[SPOOL_ID_SIZE];
    const struct spool_envelope *env;
    enum sched_dest_kind kind;
    const char *dest; /* domain, smart_relay or cc_mta value */
    int nrcpt;
    const int *rcpt;       /* indices into env->rcpt */
    int *result;           /* enum sched_result per job recipient: the scheduler's decision */
    long long active_us;   /* when the message entered the active queue (delays= a ends) */
    long long dispatch_us; /* when this job was taken (delays= b ends) */
    int attempts;          /* earlier delivery attempts of the message */
};

/* sched_set_ready - CB(arg) whenever jobs become ready (new mail, retry due, flush). */
void sched_set_ready(struct sched *s, void (*cb)(void *arg), void *arg);
/*
 * sched_job_take - the next ready job whose destination CAN accepts (CAN NULL:
 * any), round-robin over destinations; NULL when none.
 */
struct sched_job *sched_job_take(struct sched *s, int (*can)(void *arg, const char *dest),
                                 void *arg);
/* sched_job_content - JOB's message as stored after its envelope, in one piece, when it is still
 * held in memory from intake (do not change it; copy it before the loop runs on), else NULL:
 * read it from the spool (spool_open_message). */
struct evbuffer *sched_job_content(struct sched *s, const struct sched_job *job);
/*
 * sched_job_report - the relay's report CLS for job recipient I (TEXT: the reply or the
 * reason): the scheduler decides sent, deferred or bounced, records it in job->result[I],
 * counts it and keeps TEXT as the deferral reason shown by mailq. One report per attempt:
 * a later one is ignored and returns SCHED_RESULT_NONE; else returns the decision, which
 * the relay logs (status=sent|deferred|bounced).
 */
enum sched_result sched_job_report(struct sched *s, struct sched_job *job, int i,
                                   enum sched_class cls, const char *text);
/*
 * sched_job_site_fail - the relay could not use JOB's destination as a whole (no host
 * answered, every session failed, a 4xx greeting such as 421): DSN and TEXT say why. At
 * sched_job_done this is negative feedback (Postfix qmgr's): the destination's concurrency
 * shrinks, and after default_destination_concurrency_failed_cohort_limit failed cohorts it
 * is throttled (no delivery is tried, its mail is deferred "delivery temporarily suspended")
 * for minimal_backoff_time. A job without it that got any result is positive feedback.
 */
void sched_job_site_fail(struct sched *s, struct sched_job *job, const char *dsn, const char *text);
/*
 * sched_job_decide - the scheduler's decisions on a job once every report is in, before
 * the notifications are made: a recipient deferred past maximal_queue_lifetime
 * (bounce_queue_lifetime for the null sender) becomes bounced, counted and logged as
 * Postfix's qmgr does ("status=expired, returned to sender"); bounced mail from the null
 * sender is logged as getting no notice (double bounce). STOPPING (the relay is stopping):
 * no expiry, the next start decides. Returns how many expired.
 */
int sched_job_decide(struct sched *s, struct sched_job *job, int stopping);
/* sched_job_notice - the notice due for job recipient I after the decisions: none for
 * the null sender, cc_mta copies or NOTIFY=NEVER, as the recipient's NOTIFY asks. */
enum sched_notice sched_job_notice(const struct sched_job *job, int i);
/* sched_job_unbounce - the failure notice for bounced job recipient I cannot be queued:
 * the decision becomes TO (SCHED_RESULT_DEFER: retried after the backoff, or
 * SCHED_RESULT_NONE: stays pending untried), so that the notice is not lost. */
void sched_job_unbounce(struct sched *s, struct sched_job *job, int i, enum sched_result to);
/* sched_job_done - results are in job->result: record them (status file, removal, retry). */
void sched_job_done(struct sched *s, struct sched_job *job);
/* sched_backoff - retry delay after ATTEMPTS failed attempts: MIN * 2^(attempts-1), within [MIN,
 * MAX]. */
long sched_backoff(int attempts, long min, long max);

#endif
