/*
 * log_smb_stream.c - the log terminal's record stream: the bounded memory queue
 * the log writer fills (log_smb_sink_write) and the spill file on the data
 * volume that takes the whole queue when the share is away or slow, with its
 * persisted replay offset. The stream is, in order: the spill file from its
 * offset, then the memory queue; the share writes from its head.
 * Not here: the share (log_smb_share.c) or when to spill (log_smb.c).
 */
#include "mta/log_smb.h"
#include "log_smb_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mta/counters.h"
#include "mta/fsutil.h"

/* log_smb_spilled_add - the spill file gained (or lost) N records. */
static void log_smb_spilled_add(long long n)
{
    long long v = __atomic_add_fetch(&log_smb_st.spill_records, n, __ATOMIC_RELAXED);

    counter_set(CNT_LOG_SPILLED, v);
}

/* --- the memory queue (shared with the log writer thread) --- */

int log_smb_sink_write(void *ctx, const char *buf, size_t len)
{
    long long n;

    (void)ctx;
    pthread_mutex_lock(&log_smb_st.mu);
    if (!log_smb_st.accepting) {
        pthread_mutex_unlock(&log_smb_st.mu);
        return -1;
    }
    size_t used = log_smb_st.qtail - log_smb_st.qhead;
    if (used + len > log_smb_st.qbound && used > 0) {
        /* full: the log writer keeps these and retries; make room meanwhile */
        log_smb_st.rejected = 1;
        pthread_cond_signal(&log_smb_st.wake);
        pthread_mutex_unlock(&log_smb_st.mu);
        return -1;
    }
    if (log_smb_st.qtail + len > log_smb_st.qcap) {
        if (log_smb_st.qhead > 0) {
            memmove(log_smb_st.q, log_smb_st.q + log_smb_st.qhead, used);
            log_smb_st.qhead = 0;
            log_smb_st.qtail = used;
        }
        if (log_smb_st.qtail + len > log_smb_st.qcap) {
            /* one batch larger than the bound, into an empty queue: grow for it */
            char *nq = realloc(log_smb_st.q, log_smb_st.qtail + len);
            if (nq == NULL) {
                pthread_mutex_unlock(&log_smb_st.mu);
                return -1;
            }
            log_smb_st.q = nq;
            log_smb_st.qcap = log_smb_st.qtail + len;
        }
    }
    memcpy(log_smb_st.q + log_smb_st.qtail, buf, len);
    log_smb_st.qtail += len;
    n = log_smb_count_nl(buf, len);
    log_smb_st.qrecords += n;
    counter_add(CNT_LOG_BACKLOG, n);
    pthread_cond_signal(&log_smb_st.wake);
    pthread_mutex_unlock(&log_smb_st.mu);
    return 0;
}

/* log_smb_queue_peek - copy up to MAX bytes from the queue head, whole records when possible. */
size_t log_smb_queue_peek(char *out, size_t max)
{
    size_t n;

    pthread_mutex_lock(&log_smb_st.mu);
    n = log_smb_st.qtail - log_smb_st.qhead;
    if (n > max)
        n = max;
    memcpy(out, log_smb_st.q + log_smb_st.qhead, n);
    if (n < log_smb_st.qtail - log_smb_st.qhead) {
        char *nl = memrchr(out, '\n', n);
        if (nl != NULL)
            n = (size_t)(nl - out) + 1;
    }
    pthread_mutex_unlock(&log_smb_st.mu);
    return n;
}

/* log_smb_queue_pop - drop N bytes from the queue head (they are stored elsewhere now). */
void log_smb_queue_pop(size_t n, long long records, int written)
{
    pthread_mutex_lock(&log_smb_st.mu);
    log_smb_st.qhead += n;
    log_smb_st.qrecords -= records;
    if (log_smb_st.qhead == log_smb_st.qtail)
        log_smb_st.qhead = log_smb_st.qtail = 0;
    pthread_mutex_unlock(&log_smb_st.mu);
    if (written)
        counter_add(CNT_LOG_BACKLOG, -records);
}

/* log_smb_queue_used - bytes in the memory queue. */
size_t log_smb_queue_used(void)
{
    size_t n;

    pthread_mutex_lock(&log_smb_st.mu);
    n = log_smb_st.qtail - log_smb_st.qhead;
    pthread_mutex_unlock(&log_smb_st.mu);
    return n;
}

/* --- the spill file on the data volume --- */

/* log_smb_offset_save - persist the replay offset (fixed width, one sector). */
static int log_smb_offset_save(long long off)
{
    char b[32];
    int n = snprintf(b, sizeof(b), "%020lld\n", off);

    if (pwrite(log_smb_st.offset_fd, b, (size_t)n, 0) != n || fdatasync(log_smb_st.offset_fd) != 0)
        return -1;
    return 0;
}

/* log_smb_spill_open - open the spill file and offset, count what still waits. */
int log_smb_spill_open(const char *dir, char **err)
{
    struct stat st;
    char b[32];
    ssize_t n;

    if (fs_mkdir_p(dir, 0700) != 0) {
        log_smb_errf(err, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if (log_smb_path(&log_smb_st.spill_path, dir, "/maillog.spill") != 0 ||
        log_smb_path(&log_smb_st.offset_path, dir, "/maillog.spill.offset") != 0) {
        log_smb_errf(err, "out of memory");
        return -1;
    }
    /* (the caller's cleanup closes what was opened when this fails) */
    log_smb_st.spill_fd =
        open(log_smb_st.spill_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_smb_st.spill_fd < 0 || fstat(log_smb_st.spill_fd, &st) != 0) {
        log_smb_errf(err, "cannot open %s: %s", log_smb_st.spill_path, strerror(errno));
        return -1;
    }
    log_smb_st.offset_fd = open(log_smb_st.offset_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (log_smb_st.offset_fd < 0) {
        log_smb_errf(err, "cannot open %s: %s", log_smb_st.offset_path, strerror(errno));
        return -1;
    }
    log_smb_st.spill_size = st.st_size;
    log_smb_st.spill_off = 0;
    n = pread(log_smb_st.offset_fd, b, sizeof(b) - 1, 0);
    if (n > 0) {
        b[n] = 0;
        log_smb_st.spill_off = strtoll(b, NULL, 10);
    }
    if (log_smb_st.spill_off < 0 || log_smb_st.spill_off > log_smb_st.spill_size)
        log_smb_st.spill_off = log_smb_st.spill_size; /* stale offset of an emptied file */
    /* count the records still waiting from an earlier run */
    long long recs = 0;
    char *buf = malloc(LOG_SMB_BATCH);
    if (buf == NULL) {
        log_smb_errf(err, "out of memory");
        return -1;
    }
    for (long long off = log_smb_st.spill_off; off < log_smb_st.spill_size;) {
        n = pread(log_smb_st.spill_fd, buf, LOG_SMB_BATCH, off);
        if (n <= 0)
            break;
        recs += log_smb_count_nl(buf, (size_t)n);
        off += n;
    }
    free(buf);
    log_smb_st.spill_records = 0;
    log_smb_spilled_add(recs);
    counter_add(CNT_LOG_BACKLOG, recs);
    return 0;
}

/* log_smb_spill_memory - move the whole memory queue to the end of the spill file. */
int log_smb_spill_memory(void)
{
    size_t used, n;
    char *buf;
    long long recs;

    if (!log_smb_passed(log_smb_st.spill_retry))
        return -1;
    pthread_mutex_lock(&log_smb_st.mu);
    log_smb_st.rejected = 0;
    used = log_smb_st.qtail - log_smb_st.qhead;
    buf = used ? malloc(used) : NULL;
    if (buf)
        memcpy(buf, log_smb_st.q + log_smb_st.qhead, used);
    pthread_mutex_unlock(&log_smb_st.mu);
    if (used == 0)
        return 0;
    if (buf == NULL)
        goto fail;
    for (n = 0; n < used;) {
        ssize_t w = write(log_smb_st.spill_fd, buf + n, used - n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* cut back to what was there, so no half batch is replayed twice */
            if (ftruncate(log_smb_st.spill_fd, log_smb_st.spill_size) != 0) {
                /* nothing better to do: the records stay in memory */
            }
            goto fail;
        }
        n += (size_t)w;
    }
    if (fdatasync(log_smb_st.spill_fd) != 0)
        goto fail;
    recs = log_smb_count_nl(buf, used);
    log_smb_st.spill_size += (long long)used;
    free(buf);
    log_smb_queue_pop(used, recs, 0);
    log_smb_spilled_add(recs);
    return 0;
fail:
    free(buf);
    log_smb_st.spill_retry = clock_mono_after(1000);
    return -1;
}

/* log_smb_spill_consume - N bytes at the replay offset are on the share now. */
void log_smb_spill_consume(size_t n, long long recs)
{
    log_smb_st.spill_off += (long long)n;
    log_smb_spilled_add(-recs);
    counter_add(CNT_LOG_BACKLOG, -recs);
    if (log_smb_st.spill_off >= log_smb_st.spill_size) {
        /* all replayed: empty the file first, then the offset (a crash in
         * between leaves offset > size, which reads as "empty") */
        if (ftruncate(log_smb_st.spill_fd, 0) == 0 && fsync(log_smb_st.spill_fd) == 0) {
            log_smb_st.spill_size = log_smb_st.spill_off = 0;
            log_smb_offset_save(0);
            return;
        }
    }
    log_smb_offset_save(log_smb_st.spill_off);
}

/* log_smb_spill_peek - up to MAX bytes at the replay offset, whole records when possible. */
size_t log_smb_spill_peek(char *out, size_t max)
{
    long long left = log_smb_st.spill_size - log_smb_st.spill_off;
    size_t n = left < (long long)max ? (size_t)left : max;
    ssize_t r = pread(log_smb_st.spill_fd, out, n, log_smb_st.spill_off);

    if (r <= 0)
        return 0;
    if ((size_t)r < (size_t)left) {
        char *nl = memrchr(out, '\n', (size_t)r);
        if (nl != NULL)
            r = nl - out + 1;
    }
    return (size_t)r;
}

/* log_smb_stream_drop - N bytes at the stream head already reached the share: skip them. */
void log_smb_stream_drop(size_t n)
{
    while (n > 0) {
        size_t k;
        if (log_smb_st.spill_off < log_smb_st.spill_size) {
            k = log_smb_spill_peek(log_smb_st.batch, n < LOG_SMB_BATCH ? n : LOG_SMB_BATCH);
            if (k == 0)
                return;
            if (k > n)
                k = n;
            log_smb_spill_consume(k, log_smb_count_nl(log_smb_st.batch, k));
        } else {
            k = log_smb_queue_peek(log_smb_st.batch, n < LOG_SMB_BATCH ? n : LOG_SMB_BATCH);
            if (k == 0)
                return;
            log_smb_queue_pop(k, log_smb_count_nl(log_smb_st.batch, k), 1);
        }
        n -= k;
    }
}
