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
 * without the two flushes when no slot is final yet). BLOCKS: worker threads only. 0 or
 * errno. */
int spool_status_write(struct spool *sp, const char *id, const struct spool_status *st);
/* spool_status_read - read the status file of ID. BLOCKS: worker threads only.
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

struct sched_msg {
    char id[SPOOL_ID_SIZE];
    struct sched *sched;
    struct htab_node hnode;      /* in sched.msg_tab, by id */
    TAILQ_ENTRY(sched_msg) link; /* sched.msgs, in arrival order (mailq) */
    struct spool_envelope *env;
    struct evbuffer *content; /* the message, kept from intake (sched_job_content), or NULL */
    int nslots;               /* env->nrcpt recipients, then the cc_mta copies */
    char *slots;              /* SCHED_SLOT_* per slot */
    char *active;             /* 1 while the slot is in a job */
    char **reason;            /* last deferral reason per slot */
    int attempts;
    long long next_retry; /* unix seconds */
    long long active_us;
    int njobs;     /* jobs queued or taken */
    int deferred;  /* waiting for next_retry */
    int had_defer; /* a job of this round deferred a slot */
    int loading, writing, removing, gone;
    int status_dirty; /* slots changed since the status file was last written */
    int round_final;  /* a slot became final in this round (decides the retry) */
    int write_retry;  /* the last status write failed: retried at the next queue run */
    int remove_retry; /* spool_remove failed: retried at the next queue run */
    int recovered;    /* queued before this start */
    int activations;  /* entries into the active queue */
    /* postsuper -h: no delivery starts until released; a hold or release not yet on stable
     * storage (the status file) is unsynced until a flushed write carries it */
    int held, hold_unsynced, hold_writing;
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
};

/* A destination exists while it has ready or taken jobs (then it is freed). */
struct sched_dest {
    char *name;
    enum sched_dest_kind kind;
    TAILQ_ENTRY(sched_dest) link;  /* sched.dests, the round-robin order */
    struct htab_node hnode;        /* in sched.dest_tab, by name and kind */
    TAILQ_HEAD(, sched_jobx) jobs; /* ready jobs */
    int ntaken;                    /* jobs handed to the relay, not done yet */
};

struct sched {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct workers *io;
    struct event *run_ev;
    struct sched_token *tok;
    struct htab msg_tab;                           /* sched_msg by id */
    TAILQ_HEAD(, sched_msg) msgs;                  /* in arrival order */
    struct htab dest_tab;                          /* sched_dest by name and kind */
    TAILQ_HEAD(sched_dest_list, sched_dest) dests; /* the round-robin order */
    struct sched_dest *rr;                         /* served last */
    size_t nready;
    unsigned long long job_seq;
    size_t content_bytes; /* held in sched_msg.content, at most SCHED_CONTENT_MAX */
    /* sched_msg_settle, set by sched_new: how sched_load.c and sched_persist.c hand a message
     * back after a load or write without calling up into sched.c */
    void (*settle)(struct sched *s, struct sched_msg *m);
    void (*ready_cb)(void *arg);
    void *ready_arg;
    int stopping;
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

/* sched_persist.c */
/* sched_status_write - write M's status file on a worker; sched.settle follows. */
void sched_status_write(struct sched *s, struct sched_msg *m);
/* sched_status_write_now - write M's status file on this thread (shutdown only: blocks). */
void sched_status_write_now(struct sched *s, struct sched_msg *m);
/* sched_msg_remove - remove M from the spool; M is freed when nothing refers to it. */
void sched_msg_remove(struct sched *s, struct sched_msg *m, const char *service);

#endif
