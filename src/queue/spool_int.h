/*
 * spool_int.h - private to src/queue/: the spool's structs and the helpers its
 * files share (queue IDs, the envelope text format, the in-memory index, the
 * committer). Not for other modules: they use include/mta/spool.h.
 */
#ifndef MTA_SPOOL_INT_H
#define MTA_SPOOL_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "mta/htab.h"
#include "mta/spool.h"

struct event;
struct workers;

#define SPOOL_NHASH 16                     /* queue/0 .. queue/F, by the ID's last hex digit */
#define SPOOL_STREAM_THRESHOLD (64 * 1024) /* buffered bytes beyond which a worker writes */
#define SPOOL_ENV_MAX (64LL * 1024 * 1024) /* an envelope larger than this is corrupt */
#define SPOOL_ID_LEN 16                    /* 13 hex digits of microseconds + 3 of sequence */
#define SPOOL_VERSION_LINE "MTA-QUEUE 2"   /* written: the envelope, then a commit record */
#define SPOOL_VERSION1_LINE "MTA-QUEUE 1"  /* still read: no commit record, length exact */
#define SPOOL_END_LINE "end"

/* --- queue IDs (spool_id.c) --- */
struct spool_idgen {
    long long last_us; /* microseconds of the last ID handed out */
    int seq;           /* sequence within last_us */
};
/* spool_id_next - write the next ID (SPOOL_ID_LEN hex digits + NUL) into OUT. */
void spool_id_next(struct spool_idgen *g, char out[SPOOL_ID_SIZE]);
/* spool_id_seen - make later IDs sort after ID (used at recovery, clocks may go back). */
void spool_id_seen(struct spool_idgen *g, const char *id);
/* spool_id_valid - 1 when S is exactly a queue ID (16 upper-case hex digits). */
int spool_id_valid(const char *s);
/* spool_id_hash - the hash subdirectory index 0..15 of a valid ID. */
int spool_id_hash(const char *id);

/* --- envelope text (spool_envelope.c) --- */
/* spool_env_encode - the envelope text (version line .. end line) as a malloc'd
 * string; *LEN its length. NULL on out-of-memory. */
char *spool_env_encode(const struct spool_envelope *env, size_t *len);
/* spool_env_decode - parse BUF[0..LEN): when an end line is found, *HDRLEN gets
 * the envelope's byte length and *OUT the envelope, return 0. -1 when the text is
 * not a valid envelope, 1 when more bytes are needed (no end line yet). */
int spool_env_decode(const char *buf, size_t len, struct spool_envelope **out, size_t *hdrlen);
/* spool_env_read_fd - read and parse the envelope at the start of FD (blocking).
 * 0 and *OUT, *HDRLEN; or an errno value (EBADMSG when unparseable). */
int spool_env_read_fd(int fd, struct spool_envelope **out, size_t *hdrlen);
/* spool_copy_fd - append IN[FROM .. FROM+LEN) to OUT (at its file offset), in the kernel
 * (copy_file_range) when it can; 0, or -1/errno (EIO: IN is shorter). spool_intake.c. */
int spool_copy_fd(int in, long long from, long long len, int out);

/* --- the in-memory index of queued IDs (spool_index.c); loop thread only --- */
struct spool_index_entry {
    struct htab_node node; /* in spool_index.tab, keyed by id */
    long long size;
    char id[SPOOL_ID_SIZE];
};
struct spool_index {
    struct htab tab;
};
int spool_index_add(struct spool_index *ix, const char *id, long long size);
/* spool_index_del - remove ID; returns its size, or -1 when absent. */
long long spool_index_del(struct spool_index *ix, const char *id);
struct spool_index_entry *spool_index_find(const struct spool_index *ix, const char *id);
/* spool_index_snapshot - a sorted malloc'd snapshot of the entries (copies); *N their count. */
struct spool_index_entry *spool_index_snapshot(const struct spool_index *ix, size_t *n);
void spool_index_free(struct spool_index *ix);

/* --- the commit record (spool_record.c); any thread --- */
#define SPOOL_RECORD_LEN 81 /* "MTA-COMMIT " ID, 5 hex fields, "\n" */
/* spool_crc32c - CRC-32C of DATA[0..N) continuing CRC (start with 0). */
uint32_t spool_crc32c(uint32_t crc, const void *data, size_t n);
/* spool_record_encode - the record of a message ID written as HDRLEN bytes of envelope with CRC
 * ENVCRC, then SIZE bytes with CRC BODYCRC; OUT gets SPOOL_RECORD_LEN bytes and a NUL. */
void spool_record_encode(char out[SPOOL_RECORD_LEN + 1], const char *id, size_t hdrlen,
                         long long size, uint32_t envcrc, uint32_t bodycrc);
enum {
    SPOOL_REC_OK,   /* version 2, committed: *ENV, *HDRLEN, *BODYCRC set */
    SPOOL_REC_V1,   /* version 1 (no record), length exact: *ENV, *HDRLEN set */
    SPOOL_REC_FREE, /* a slot holding no message of its name: reuse or remove, silently */
    SPOOL_REC_TORN, /* a write of this ID that never completed (never acknowledged): *WHY */
    SPOOL_REC_BAD   /* unreadable for another reason: *WHY */
};
/* spool_record_check - classify queue file FD named NAME of FSIZE bytes (blocking). *ENV is
 * set (free it) for OK and V1, maybe for others. The body's CRC is not checked here. */
int spool_record_check(int fd, const char *name, long long fsize, struct spool_envelope **env,
                       size_t *hdrlen, uint32_t *bodycrc, const char **why);
/* spool_record_verify_body - 0 when the SIZE bytes at HDRLEN in FD have CRC BODYCRC; EBADMSG or
 * an errno value. */
int spool_record_verify_body(int fd, size_t hdrlen, long long size, uint32_t bodycrc);

/* --- slots: files in queue/ whose names are durable, ready for a message (spool_pool.c) --- */
#define SPOOL_POOL_MAX 1024               /* free slots kept */
#define SPOOL_POOL_FILE_MAX (64LL * 1024) /* larger messages' files are unlinked, not recycled */
#define SPOOL_POOL_LOW 256                /* below this many, a worker makes new slots */
#define SPOOL_POOL_FILL 512               /* ... up to this many, in one batch with one flush */
#define SPOOL_POOL_FIRST 32               /* the batch when none is free */
#define SPOOL_SLOT_PREALLOC 8192          /* bytes of zeros written into a new slot */
#define SPOOL_SLOT_PREALLOC_MIN_FREE (1LL << 30) /* ... when more than this is free */
struct spool_pool {
    pthread_mutex_t mu;
    char id[SPOOL_POOL_MAX][SPOOL_ID_SIZE]; /* free slots, by queue ID */
    int n;                                  /* how many are free */
    int reserved;                           /* slots being made or renamed, not yet durable */
    int filling;                            /* a worker is making slots */
    int prealloc;                           /* it writes SPOOL_SLOT_PREALLOC bytes into each */
    long long flushes; /* batches of slots made durable (part of CNT_SPOOL_FLUSHES) */
};
void spool_pool_init(struct spool_pool *p);
void spool_pool_destroy(struct spool_pool *p);
/* spool_pool_take - 1 and the ID of a free slot, now owned by the caller; 0 if none. */
int spool_pool_take(struct spool_pool *p, char out[SPOOL_ID_SIZE]);
/* spool_pool_put - rename queue file DIRFD/NAME to a new slot ID (*OUT); 0, or -1 and errno
 * (ENOSPC: the pool is full) when the caller must remove the file itself. The slot is not handed
 * out before spool_pool_publish: call it once the rename is durable, so that a crash can never
 * leave the old name on a file that already holds the next message. */
struct spool;
int spool_pool_put(struct spool *sp, int dirfd, const char *name, char out[SPOOL_ID_SIZE]);
/* spool_pool_publish - OK: slot ID is free for use; else it is unlinked. */
void spool_pool_publish(struct spool *sp, const char *id, int ok);
/* spool_pool_want - after a take: start a worker making slots if the pool runs low. */
void spool_pool_want(struct spool *sp);
/* spool_new_id - a fresh queue ID (any thread). */
void spool_new_id(struct spool *sp, char out[SPOOL_ID_SIZE]);

/* --- the spool --- */
struct spool_msg;

struct spool_remove_job;

struct spool {
    /* removals waiting for the next batch (loop thread only); one batch in flight at a time */
    STAILQ_HEAD(spool_remove_list, spool_remove_job) rm_wait;
    struct spool_remove_list rm_batch; /* the batch a worker is removing (rm_inflight) */
    int rm_inflight;
    int rm_now;          /* shutting down: batches start at once (spool_remove_flush) */
    struct event *rm_ev; /* the gathering delay before each batch */
    struct event_base *base;
    char *dir;
    int dirfd, tmpfd, corruptfd, lockfd;
    int qfd[SPOOL_NHASH];
    struct workers *io;
    struct spool_idgen idgen;
    pthread_mutex_t idmu; /* idgen: the loop and the slot makers take IDs */
    struct spool_index index;
    struct spool_pool pool;
    long long minfree;
    /* live messages (not yet handed to commit/abort), freed at close */
    LIST_HEAD(, spool_msg) live;
    int busy; /* spool operations whose loop completion has not run yet */
    /* free space, as last measured (loop thread) */
    long long free_bytes, total_bytes;
    long long test_free, test_total; /* MTA_TEST_FREE_BYTES; -1: not set */
    int statvfs_running;
    /* the volume as last checked with the free space (loop thread): remounted read-only, or its
     * path no longer leads to the directory we hold open (renamed, removed, unmounted) */
    int rdonly, gone;
    char *abspath; /* data_volume resolved at open, for that check; NULL: not checked */
    struct event *space_ev;
    /* the start-up scan (spool.c): NULL once over; one job in flight at a time */
    struct spool_scan *scan;
    int scan_inflight, scan_stop;
    void (*notify_cb)(void *arg, const char *id, struct spool_envelope *env,
                      struct evbuffer *content);
    void *notify_arg;
    /* the group committer */
    pthread_t committer;
    int committer_started;
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
    STAILQ_HEAD(spool_msg_list, spool_msg) cq; /* commits waiting for the next group */
    int cstop;
};

enum spool_msg_state { SPOOL_MSG_OPEN, SPOOL_MSG_COMMITTING, SPOOL_MSG_ABORTING };

struct spool_msg {
    struct spool *sp;
    LIST_ENTRY(spool_msg) live;    /* spool.live while SPOOL_MSG_OPEN */
    STAILQ_ENTRY(spool_msg) cnext; /* spool.cq, then the group being committed */
    char id[SPOOL_ID_SIZE];
    enum spool_msg_state state;
    struct evbuffer *buf;  /* appended, not yet handed to a worker (loop) */
    struct evbuffer *wbuf; /* being written by the worker job in flight */
    size_t inflight;       /* bytes in wbuf when the job started */
    int writing;           /* a write job is in flight */
    int loop_err;          /* an earlier background write failed (loop copy) */
    int err;               /* errno of the worker side (read on the loop after done) */
    int body_fd;           /* tmp/ID.body while streaming, -1 if none yet */
    int fd;                /* queue/X/ID at commit */
    int slot;              /* ID names a slot from the pool (file exists, name durable) */
    int created;           /* no slot: the commit created the file (its name needs a flush) */
    int grew;              /* the write went past the file's end (metadata to flush) */
    uint32_t bodycrc;      /* CRC-32C of the bytes written to tmp/ID.body so far */
    int prepared;          /* a worker wrote the file (streamed messages) */
    int kept;              /* written from buf, which still holds the message */
    long long streamed;    /* bytes in tmp/ID.body */
    char *env_text;        /* encoded envelope (commit) */
    size_t env_len;
    long long size;
    void (*done)(void *arg, int err);
    void *done_arg;
    void (*drain_cb)(void *arg); /* spool_msg_on_drain */
    void *drain_arg;
    struct spool_edit *edit; /* edits before the commit (spool_edit.c), NULL: none */
    /* monotonic microseconds: the commit asked for, its group taken, written, flushed (the
     * spool_commit_*_us counters: where a commit's latency goes) */
    long long t_start, t_taken, t_written, t_flushed;
};

/* --- edits before the commit (spool_edit.c) --- */
struct spool_edit;
void spool_edit_free(struct spool_edit *e);
/* spool_edit_write - worker, at commit: write the envelope and the edited message to m->fd
 * (from tmp/ID.body, m->buf and the edit); 0, or -1 and errno. */
int spool_edit_write(struct spool_msg *m);

/* spool_committer_start/stop - the committer thread (spool_intake.c); cmu/ccv are initialised by
 * spool_open. */
int spool_committer_start(struct spool *sp);
void spool_committer_stop(struct spool *sp);
/* spool_msg_drop_live - at close: remove the temp files of messages never committed. */
void spool_msg_drop_live(struct spool *sp);
/* spool_queued - a message is now in queue/ (loop): index and counters (spool_index.c). */
void spool_queued(struct spool *sp, const char *id, long long size);
#define SPOOL_REMOVE_GATHER_US 10000 /* removals gather this long before each batch */
/* spool_remove_gather_cb - the gathering delay is over: start the removal batch (loop). */
void spool_remove_gather_cb(int fd, short what, void *arg);
/* spool_remove_flush - start waiting removals now, and later ones without gathering (at close
 * and drain, when the loop no longer runs timers). */
void spool_remove_flush(struct spool *sp);
/* spool_flush_hashdirs - make the entries changed in the queue/X directories marked in TOUCHED
 * durable with one device flush: fsync of the one directory, or one syncfs for several (each
 * directory fsync is a flush of its own). 0 or errno; -1 when none was touched (no flush). */
int spool_flush_hashdirs(struct spool *sp, const int touched[SPOOL_NHASH]);
/* spool_quarantine_queued - move queue/X/ID into corrupt/ and say WHY in the log (any thread;
 * blocking). The index still lists ID until it is removed: later opens fail with ENOENT. */
void spool_quarantine_queued(struct spool *sp, const char *id, const char *why);
/* spool_fsync_dir - fsync a directory fd; 0 or errno. */
int spool_fsync_dir(int fd);
/* spool_space_init - the first free-space figure (start-up, blocking; spool_space.c); 0 or -1
 * with errno. */
int spool_space_init(struct spool *sp);
/* spool_space_cb - the timer that measures free space every second (spool_space.c). */
void spool_space_cb(int fd, short what, void *arg);

#endif
