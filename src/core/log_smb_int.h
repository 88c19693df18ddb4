/*
 * log_smb_int.h - private to the log terminal files in src/core: the state
 * they share (one log terminal per process), and what the unit tests reach:
 * turning the log terminal URL and maillog_filename into the URLs libsmbclient
 * is given, and feeding records to the sink without the log writer.
 * The files call one way: log_smb.c (start, stop, the thread) uses
 * log_smb_share.c (libsmbclient) and log_smb_stream.c (memory queue and spill
 * file); the share uses the stream; log_smb_url.c is used at start.
 * Not for other modules: they use include/mta/log_smb.h.
 */
#ifndef MTA_CORE_LOG_SMB_INT_H
#define MTA_CORE_LOG_SMB_INT_H

#include <libsmbclient.h> /* types only: the library itself is loaded by log_smb_lib_load */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mta/clock.h"

#define LOG_SMB_MAX_DIRS 16

struct log_smb_target {
    char *file_url;                   /* smb://host:port/share/dir/maillog */
    char *dir_urls[LOG_SMB_MAX_DIRS]; /* each parent directory, outermost first */
    int ndirs;
};

/* log_smb_target_parse - 0 ok; -1 and *err (malloc'd) for a bad URL or file name. */
int log_smb_target_parse(struct log_smb_target *t, const char *url, const char *file, char **err);
/* log_smb_target_free - release what parse allocated (safe on a zeroed struct). */
void log_smb_target_free(struct log_smb_target *t);

/* log_smb_sink_write - the sink's write: enqueue whole records; 0 stored, -1 not (queue full). */
int log_smb_sink_write(void *ctx, const char *buf, size_t len);

#define LOG_SMB_BATCH (64 * 1024) /* bytes per share write / replay step */

struct log_smb {
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* to the thread: records, stop */
    pthread_cond_t started; /* to log_smb_start: first connect done */
    pthread_t thread;
    int running; /* thread exists (start succeeded, stop not yet joined) */
    /* under mu */
    char *q; /* memory queue: bytes [qhead, qtail) */
    size_t qhead, qtail, qcap, qbound;
    long long qrecords;
    int stop;        /* stop requested */
    int accepting;   /* sink accepts records */
    int rejected;    /* the sink refused a write: make room now */
    int start_state; /* 0 pending, 1 up, -1 failed */
    /* read by any thread (atomics) */
    int up;
    long long spill_records;
    /* owned by the thread */
    struct log_smb_target tgt;
    char *url;
    char *conf_path;
    char *home_path; /* HOME while libsmbclient initialises: its .smb/smb.conf is ours */
    char *spill_path, *offset_path;
    int spill_fd, offset_fd;
    long long spill_size, spill_off;
    SMBCCTX *ctx;
    SMBCFILE *fh;
    int connected;          /* file open on the share (this thread's view) */
    int reconf;             /* a new start: reload the client config into the kept context */
    int warned;             /* the outage warning was logged; "back" not yet */
    long long fsize;        /* size of the file on the share, as we know it */
    int pending;            /* a batch failed: it may be partly on the share */
    long long pending_base; /* file size before that batch */
    size_t pending_len;
    unsigned backoff_ms;
    struct timespec next_try;
    struct timespec spill_retry;
    char *batch;
    char why[2400]; /* last failure, for the warning */
    /* settings */
    long long rot_size;
    int rot_count;
    unsigned backoff_max_ms, timeout_ms;
};

/* log_smb_st - the one log terminal of the process (defined in log_smb.c). */
extern struct log_smb log_smb_st;

/* --- the record stream (log_smb_stream.c) --- */

/* log_smb_queue_peek - copy up to MAX bytes from the queue head, whole records when possible. */
size_t log_smb_queue_peek(char *out, size_t max);
/* log_smb_queue_pop - drop N bytes from the queue head (they are stored elsewhere now). */
void log_smb_queue_pop(size_t n, long long records, int written);
/* log_smb_queue_used - bytes in the memory queue. */
size_t log_smb_queue_used(void);
/* log_smb_spill_open - open the spill file and offset in DIR, count what still waits. */
int log_smb_spill_open(const char *dir, char **err);
/* log_smb_spill_memory - move the whole memory queue to the end of the spill file. */
int log_smb_spill_memory(void);
/* log_smb_spill_consume - N bytes (RECS records) at the replay offset are on the share now. */
void log_smb_spill_consume(size_t n, long long recs);
/* log_smb_spill_peek - up to MAX bytes at the replay offset, whole records when possible. */
size_t log_smb_spill_peek(char *out, size_t max);
/* log_smb_stream_drop - N bytes at the stream head already reached the share: skip them. */
void log_smb_stream_drop(size_t n);

/* --- the share (log_smb_share.c; the log terminal's thread only) --- */

/* log_smb_lib_load - dlopen libsmbclient once; 0, or -1 with the reason in log_smb_st.why. */
int log_smb_lib_load(void);
/* log_smb_connect - (re)connect: directories, file; 0 up, or -1 with log_smb_st.why. */
int log_smb_connect(void);
/* log_smb_disconnect - close the file and drop the server connections (the context stays). */
void log_smb_disconnect(void);
/* log_smb_write_batch - one batch from the head of the stream to the share; 0 or -1. */
int log_smb_write_batch(void);

/* --- small helpers of all the log terminal files --- */

/* log_smb_errf - *err = malloc'd printf text. */
static inline void log_smb_errf(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void log_smb_errf(char **err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
}

/* log_smb_path - *OUT = malloc'd DIR + SUFFIX; 0, or -1 with *OUT NULL (asprintf leaves it
 * undefined on failure, and the cleanup frees every path). */
static inline int log_smb_path(char **out, const char *dir, const char *suffix)
{
    if (asprintf(out, "%s%s", dir, suffix) < 0) {
        *out = NULL;
        return -1;
    }
    return 0;
}

/* log_smb_count_nl - records in BUF (each ends in '\n'). */
static inline long long log_smb_count_nl(const char *buf, size_t len)
{
    long long n = 0;
    const char *p = buf, *end = buf + len;

    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* log_smb_passed - has monotonic time T come? */
static inline int log_smb_passed(struct timespec t)
{
    struct timespec n = clock_mono_after(0);

    return !clock_ts_before(&n, &t);
}

#endif
