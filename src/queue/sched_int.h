/*
 * sched_int.h - private to the scheduler files in src/queue/: the status file
 * (spool_status.c) that records which recipients of a message are done, so a
 * restart never delivers them again; and the scheduler's structs and the
 * functions sched.c, sched_load.c, sched_persist.c and sched_admin.c share.
 * Not for other modules: they use include/mta/sched.h.
 */
#ifndef MTA_SCHED_INT_H
#define MTA_SCHED_INT_H

#include <stddef.h>
#include <sys/queue.h>

#include "mta/htab.h"
#include "mta/sched.h"

struct spool;

#define SCHED_SLOT_PENDING 'P'
#define SCHED_SLOT_SENT 'S'
#define SCHED_SLOT_BOUNCED 'B'

/* The most delivery attempts counted: a larger count in a status file makes it unreadable,
 * and the scheduler stops counting there (one attempt a second for 30 years). */
#define STATUS_ATTEMPTS_MAX 1000000000

/* What the status file holds: one state byte per delivery slot (recipients, then cc copies). */
struct spool_status {
    int attempts;
    long long next_retry; /* unix seconds */
    int nslots;
    char *slots; /* nslots bytes of SCHED_SLOT_*, no NUL needed */
    int hold;    /* on hold (postsuper -h): never delivered until released */
    int sync;    /* write only: flush even with no final slot (a hold or release) */
};

/* spool_status_encode - the status text (malloc'd, *LEN bytes). NULL on out-of-memory. */
char *spool_status_encode(const struct spool_status *st, size_t *len);
/* spool_status_decode - parse TEXT into *ST (slots malloc'd). 0, or -1 when malformed. */
int spool_status_decode(const char *text, size_t len, struct spool_status *st);
/* spool_status_write - replace the status file of ID (tmp, fsync, rename, directory fsync;
 * without the two flushes when no slot is final yet; while none is final, not held and no
 * status file exists, only the queue file's modification time). BLOCKS: worker threads only.
 * 0 or errno. */
int spool_status_write(struct spool *sp, const char *id, const struct spool_status *st);
/* spool_status_read - read the status file of ID, or the status kept in its queue file's
 * modification time (no slots then). BLOCKS: worker threads only.
 * 0, ENOENT when there is none, EBADMSG when unreadable, or another errno. */
int spool_status_read(struct spool *sp, const char *id, struct spool_status *st);

/* --- the scheduler (sched*.c) --- */

struct event;
struct workers;

/* Outlives the scheduler while spool callbacks that name it are in flight. */
struct sched_token {
    struct sched *s; /* NULL once freed */
    int refs;
};

/*
 * What a parked message keeps for the listings (one block): a deferred or held message
 * outside the active set has no envelope in memory, only this (sched_active.c).
 */
struct sched_park {
    long long arrival; /* unix seconds */
    long long size;    /* message bytes */
    int nrcpt;         /* recipients still pending */
    int slot[];        /* their slot numbers; then the strings: sender, (address, ORCPT)... */
};

/* Which wait list of struct sched a message is on (sched_msg.onq). */
enum sched_q { SCHED_Q_NONE = 0, SCHED_Q_RECOVER, SCHED_Q_DUE_NEW, SCHED_Q_DUE_OLD };

struct sched_msg {
    char id[SPOOL_ID_SIZE];
    struct sched *sched;
    struct htab_node hnode;       /* in sched.msg_tab, by id */
    TAILQ_ENTRY(sched_msg) link;  /* sched.msgs, in arrival order (mailq) */
    TAILQ_ENTRY(sched_msg) qlink; /* on the wait list onq names */
    enum sched_q onq;
    /* the full state (envelope, active, content) exists only in the active set; a parked
     * message has PARK instead and keeps slots (and reasons, once it has one) */
    struct spool_envelope *env;
    struct spool_envelope *lenv; /* the worker's load result, moved to env on the loop */
    struct sched_park *park;
    struct evbuffer *content; /* the message, kept from intake (sched_job_content), or NULL */
    int nslots;               /* env->nrcpt recipients, then the cc_mta copies */
    char *slots;              /* SCHED_SLOT_* per slot */
    char *active;             /* 1 while the slot is in a job */
    char **reason;            /* last deferral reason per slot */
    int attempts;
    long long next_retry; /* unix seconds */
    long long active_us;
    int njobs;       /* jobs queued or taken */
    int activations; /* entries into the active queue */
    /* flags, one bit each (a million parked messages keep them): the loop thread alone
     * writes these; what workers write (the *_err, have_status, wst, lenv) is apart */
    unsigned deferred : 1;  /* waiting for next_retry */
    unsigned had_defer : 1; /* a job of this round deferred a slot */
    unsigned loading : 1, writing : 1, removing : 1, gone : 1;
    unsigned reload : 1;       /* the load in flight brings a parked message back */
    unsigned status_dirty : 1; /* slots changed since the status file was last written */
    unsigned round_final : 1;  /* a slot became final in this round (decides the retry) */
    unsigned write_retry : 1;  /* the last status write failed: retried at the next queue run */
    unsigned remove_retry : 1; /* spool_remove failed: retried at the next queue run */
    unsigned recovered : 1;    /* queued before this start */
    /* postsuper -h: no delivery starts until released; a hold or release not yet on stable
     * storage (the status file) is unsynced until a flushed write carries it */
    unsigned held : 1, hold_unsynced : 1, hold_writing : 1;
    int load_err, status_err, write_err, have_status;
    struct spool_status wst; /* the snapshot being written (or just read) */
};

struct sched_jobx {
    struct sched_job pub; /* first: the relay sees only this */
    struct sched_msg *m;
    struct sched_dest *dest;
    TAILQ_ENTRY(sched_jobx) qlink; /* sched_dest.jobs while ready */
    int *rcpt, *result;
    int taken;
    int site_fail;     /* the relay found the destination unusable (sched_job_site_fail) */
    char fail_dsn[16]; /* and its status and reason, for the throttled destination */
    char *fail_reason;
};

/* A destination exists while it has ready or taken jobs (then it is freed). */
struct sched_dest {
    char *name;
    enum sched_dest_kind kind;
    TAILQ_ENTRY(sched_dest) link;  /* sched.dests, the round-robin order */
    struct htab_node hnode;        /* in sched.dest_tab, by name and kind */
    TAILQ_HEAD(, sched_jobx) jobs; /* ready jobs */
    int ntaken;                    /* jobs handed to the relay, not done yet */
    /* Postfix qmgr's per-destination state (sched_dest.c): the concurrency window
     * (slow start, feedback), throttling (dead), the rate delay */
    int window;              /* most jobs out at once now; 0 before the first take */
    double success, failure; /* feedback accumulated towards the next window step */
    double fail_cohorts;     /* failed cohorts since the last success */
    int dead;                /* throttled: no job is taken until it is unthrottled */
    char dsn[16];            /* why it is dead */
    char *reason;            /* (malloc'd) */
    long long next_us;       /* smtp_destination_rate_delay: no job before this */
    struct event *timer_ev;  /* unthrottle or rate delay wake-up (NULL when none) */
    struct event *defer_ev;  /* defers the ready jobs of a dead destination */
    struct sched *sched;
    int pinned; /* a callback of sched_dest.c runs: not freed meanwhile */
};

TAILQ_HEAD(sched_msgq, sched_msg);

struct sched {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct workers *io;
    struct event *run_ev;
    struct sched_token *tok;
    struct htab msg_tab;    /* sched_msg by id */
    struct htab reason_tab; /* deferral reasons, shared by the slots that have the same text */
    TAILQ_HEAD(, sched_msg) msgs;                  /* in arrival order */
    struct htab dest_tab;                          /* sched_dest by name and kind */
    TAILQ_HEAD(sched_dest_list, sched_dest) dests; /* the round-robin order */
    struct sched_dest *rr;                         /* served last */
    size_t nready;
    unsigned long long job_seq;
    size_t content_bytes; /* held in sched_msg.content, at most SCHED_CONTENT_MAX */
    /* the active set (sched_active.c): messages with full state, at most
     * qmgr_message_active_limit (plus the start-up loads in flight) */
    size_t nloaded;      /* messages with an envelope in memory */
    size_t nreload;      /* parked messages being loaded back */
    size_t nrecover;     /* start-up loads in flight */
    int flush_recovered; /* a flush came during the start-up scan or load: recovered mail is due */
    struct sched_msgq recover;          /* found at start, not read yet */
    struct sched_msgq due_new, due_old; /* parked and due: new mail, then retries */
    int due_turn;                       /* alternates between the two */
    struct sched_msg *run_next;         /* where the chunked queue run goes on */
    int run_force;                      /* the run makes every deferred message due (flush) */
    long long run_now;                  /* the time the run compares retry times with */
    struct event *chunk_ev;             /* the next chunk of the queue run */
    struct event *lag_ev;               /* the loop stall probe */
    long long lag_due_us;
    long test_load_delay_us; /* MTA_TEST_LOAD_DELAY_US: each start-up read sleeps (tests only) */
    /* sched_msg_settle, set by sched_new: how sched_load.c and sched_persist.c hand a message
     * back after a load or write without calling up into sched.c */
    void (*settle)(struct sched *s, struct sched_msg *m);
    void (*ready_cb)(void *arg);
    void *ready_arg;
    int stopping;
    /* the per-destination policy (sched_dest.c), from the configuration */
    struct sched_dpol {
        int limit;        /* smtp_destination_concurrency_limit (1 with a rate delay) */
        int initial;      /* initial_destination_concurrency */
        int rcpt_limit;   /* smtp_destination_recipient_limit */
        int cohort_limit; /* default_destination_concurrency_failed_cohort_limit */
        double pos, neg;  /* feedback: N, or N/concurrency when *_per */
        int pos_per, neg_per;
        long long rate_delay_us; /* smtp_destination_rate_delay */
    } dpol;
};

/* Messages just received are kept in memory for their first delivery while their total stays
 * under this; the rest are read from the spool when their connection is up. */
#define SCHED_CONTENT_MAX (8u << 20)

/* The scheduler's files call each other through these, one way: sched_admin.c (the
 * administrator) uses sched.c (jobs and rounds), which uses sched_load.c (messages in) and
 * sched_persist.c (their state on disk); all use sched_msg.c (the messages by ID). */

/* sched_msg.c */
/* sched_msg_find - the message ID, or NULL. */
struct sched_msg *sched_msg_find(struct sched *s, const char *id);
/* sched_msg_add - a new message ID at the end of the arrival-order list (NULL: out of memory). */
struct sched_msg *sched_msg_add(struct sched *s, const char *id);
/* sched_msg_free - unlink and free M (no job, load, write or removal may be pending). */
void sched_msg_free(struct sched *s, struct sched_msg *m);
/* sched_msg_idle - nothing refers to M any more (no job, load, write, removal). */
int sched_msg_idle(const struct sched_msg *m);
/* sched_msg_drop_content - forget M's in-memory copy (later loads read the spool). */
void sched_msg_drop_content(struct sched *s, struct sched_msg *m);
/* sched_reason_get - TEXT as a shared reason string (one copy per distinct text: a million
 * messages deferred for the same reason keep it once); NULL when out of memory. */
char *sched_reason_get(struct sched *s, const char *text);
/* sched_reason_put - drop one use of REASON (from sched_reason_get; NULL is fine). */
void sched_reason_put(struct sched *s, char *reason);

/* sched.c */
/* sched_msg_activate - M is due: queue its pending slots as jobs. */
void sched_msg_activate(struct sched *s, struct sched_msg *m);
/* sched_msg_settle - after a result, load or write: persist, remove when all done, or defer. */
void sched_msg_settle(struct sched *s, struct sched_msg *m);
/* sched_dest_release - free D once it has no ready and no taken job. */
void sched_dest_release(struct sched *s, struct sched_dest *d);

/* sched_load.c */
/* sched_load_start - take the spool's new messages from now on and load the queued ones. */
void sched_load_start(struct sched *s);
/* sched_load_msg - read M's envelope (and, unless RELOAD, its status file) on a worker;
 * sched.settle follows (RELOAD: a parked message enters the active set). */
void sched_load_msg(struct sched *s, struct sched_msg *m, int reload);

/* sched_active.c */
/* sched_active_init - the queue run's chunk event and the loop stall probe. -1: out of memory. */
int sched_active_init(struct sched *s);
/* sched_active_free - free what sched_active_init made. */
void sched_active_free(struct sched *s);
/* sched_msg_park - M (idle, deferred or held) leaves the active set: only a summary stays. */
void sched_msg_park(struct sched *s, struct sched_msg *m);
/* sched_msg_due - M is due: activate it when loaded, else queue it to be loaded (OLD: a
 * retry, else new mail) as room in the active set allows. */
void sched_msg_due(struct sched *s, struct sched_msg *m, int old);
/* sched_pump - start loads while the active set has room (and start-up loads). */
void sched_pump(struct sched *s);
/* sched_q_remove - take M off its wait list, if any. */
void sched_q_remove(struct sched *s, struct sched_msg *m);
/* sched_run_start - start the chunked queue run (FORCE: every deferred message is due). */
void sched_run_start(struct sched *s, int force);
/* sched_loaded - account M's envelope arriving (1) or leaving (-1) memory. */
void sched_loaded(struct sched *s, int delta);

/* sched_dest.c: Postfix qmgr's per-destination concurrency, throttling and rate delay */
/* sched_dest_policy - read the limits from the configuration; -1 with *ERR (malloc'd). */
int sched_dest_policy(struct sched *s, char **err);
/* sched_dest_rcpt_limit - recipients per job (smtp_destination_recipient_limit). */
int sched_dest_rcpt_limit(const struct sched *s);
/* sched_dest_may_take - whether a ready job of D may be handed out now. */
int sched_dest_may_take(struct sched *s, struct sched_dest *d);
/* sched_dest_pushed - a job was queued on D (a dead destination defers it soon). */
void sched_dest_pushed(struct sched *s, struct sched_dest *d);
/* sched_dest_job_done - taken job J of D ended (D->ntaken already down): feedback, delay. */
void sched_dest_job_done(struct sched *s, struct sched_dest *d, struct sched_jobx *j);
/* sched_dest_busy - D must outlive its jobs (dead, or a rate delay pending). */
int sched_dest_busy(const struct sched_dest *d);
/* sched_dest_fini - free D's throttling state (before D itself is freed). */
void sched_dest_fini(struct sched_dest *d);

/* sched_view.c */
/* sched_view_listed - whether M shows in listings (read, not being removed). */
int sched_view_listed(const struct sched_msg *m);
/* sched_view_walk - CB for each listed message after AFTER (NULL: from the first) until CB
 * returns non-zero; -1 when AFTER is not queued (STREAM: go on after where it was). */
int sched_view_walk(struct sched *s, const char *after, int stream,
                    int (*cb)(void *arg, const struct sched_view_msg *m), void *arg);

/* sched_persist.c */
/* sched_status_write - write M's status file on a worker; sched.settle follows. */
void sched_status_write(struct sched *s, struct sched_msg *m);
/* sched_status_write_now - write M's status file on this thread (shutdown only: blocks). */
void sched_status_write_now(struct sched *s, struct sched_msg *m);
/* sched_msg_remove - remove M from the spool; M is freed when nothing refers to it. */
void sched_msg_remove(struct sched *s, struct sched_msg *m, const char *service);

#endif
