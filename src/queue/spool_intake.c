/*
 * spool_intake.c - receiving a message into the spool: the in-memory buffer,
 * background streaming of large messages, and the group commit.
 *
 * Life of a message: spool_msg_new (an ID: the name of a free slot, a file in
 * queue/X/ whose name is already durable, spool_pool.c; no I/O) ->
 * spool_msg_append (bytes move into an evbuffer; beyond 64 KiB a worker appends
 * them to tmp/ID.body, one write job at a time so order is kept) ->
 * spool_msg_commit: the committer thread writes envelope + message + commit
 * record (spool_record.c) over the slot (a streamed message is written by a
 * worker first, so that copying a large body never holds up a group), and
 * makes the whole group durable with ONE device flush: fdatasync of the one
 * file; for several, sync_file_range (write back, wait, no flush) on each but
 * the last, then fdatasync of the last, whose cache flush covers the writes
 * already completed; syncfs when a file was created or grew (its name or size
 * is metadata). Only then does done() run on the loop, so no 250 precedes
 * durability, and nothing is renamed after the write. A write cut short by a
 * crash has no valid record and is never delivered (spool.c).
 * Without a free slot (start-up, intake faster than the slot maker) the file is
 * created at commit in queue/X/ and the group uses syncfs.
 * Each append re-checks queue_minfree against the bytes received so far
 * (spool_space_ok); below it the message fails with ENOSPC.
 * Not here: the envelope text (spool_envelope.c), recovery (spool.c), free space
 * (spool_space.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "mta/clock.h"
#include "mta/counters.h"
#include "mta/fsutil.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "spool_int.h"

/* --- small I/O helpers (worker threads) --- */

/* spool_write_evbuffer - write and drain all of B; on error B is drained too. */
static int spool_write_evbuffer(int fd, struct evbuffer *b, long long *written)
{
    while (evbuffer_get_length(b) > 0) {
        int w = evbuffer_write(b, fd);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            evbuffer_drain(b, evbuffer_get_length(b));
            errno = e;
            return -1;
        }
        if (written)
            *written += w;
    }
    return 0;
}

int spool_copy_fd(int in, long long from, long long len, int out)
{
    loff_t off = from, end = from + len;
    int kernel = 1;
    char buf[65536];
    while (off < end) {
        if (kernel) {
            ssize_t n = copy_file_range(in, &off, out, NULL, (size_t)(end - off), 0);
            if (n > 0)
                continue;
            if (n == 0) {
                errno = EIO; /* the body file is shorter than what we wrote to it */
                return -1;
            }
            if (errno == EINTR)
                continue;
            if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
                return -1;
            kernel = 0;
        }
        size_t want = (size_t)(end - off) < sizeof buf ? (size_t)(end - off) : sizeof buf;
        ssize_t n = pread(in, buf, want, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        if (fs_write_all(out, buf, (size_t)n) < 0)
            return -1;
        off += n;
    }
    return 0;
}

/* spool_crc_evbuffer - CRC continued over the bytes of B (left in place). */
static uint32_t spool_crc_evbuffer(uint32_t crc, struct evbuffer *b)
{
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[8];
    evbuffer_ptr_set(b, &pos, 0, EVBUFFER_PTR_SET);
    for (;;) {
        int n = evbuffer_peek(b, -1, &pos, v, 8);
        size_t adv = 0;
        for (int i = 0; i < n && i < 8; i++) {
            crc = spool_crc32c(crc, v[i].iov_base, v[i].iov_len);
            adv += v[i].iov_len;
        }
        /* with len -1, peek stops at the vectors given and returns their number */
        if (n < 8 || adv == 0 || evbuffer_ptr_set(b, &pos, adv, EVBUFFER_PTR_ADD) < 0)
            return crc;
    }
}

/* spool_crc_range - *CRC of LEN bytes at OFF of FD; 0 or -1 and errno. */
static int spool_crc_range(int fd, long long off, long long len, uint32_t *crc)
{
    char buf[65536];
    uint32_t c = 0;
    while (len > 0) {
        size_t want = len < (long long)sizeof buf ? (size_t)len : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        c = spool_crc32c(c, buf, (size_t)n);
        off += n;
        len -= n;
    }
    *crc = c;
    return 0;
}

/* spool_body_name - "ID.body", the streaming file in tmp/. */
static void spool_body_name(const struct spool_msg *m, char *buf, size_t len)
{
    snprintf(buf, len, "%s.body", m->id);
}

/* spool_msg_close_body - close and unlink tmp/ID.body if it exists (worker or close). */
static void spool_msg_close_body(struct spool_msg *m)
{
    if (m->body_fd >= 0) {
        char name[SPOOL_ID_SIZE + 8];
        spool_body_name(m, name, sizeof name);
        close(m->body_fd);
        m->body_fd = -1;
        unlinkat(m->sp->tmpfd, name, 0);
    }
}

/* --- the message object (loop) --- */

/* spool_live_unlink - M leaves the live list (only while SPOOL_MSG_OPEN: it is on it then). */
static void spool_live_unlink(struct spool_msg *m)
{
    LIST_REMOVE(m, live);
}

static void spool_msg_free(struct spool_msg *m)
{
    if (m->buf)
        evbuffer_free(m->buf);
    evbuffer_free(m->wbuf);
    spool_edit_free(m->edit);
    free(m->env_text);
    free(m);
}

struct spool_msg *spool_msg_new(struct spool *sp)
{
    struct spool_msg *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->sp = sp;
    m->buf = evbuffer_new();
    m->wbuf = evbuffer_new();
    if (!m->buf || !m->wbuf) {
        if (m->buf)
            evbuffer_free(m->buf);
        if (m->wbuf)
            evbuffer_free(m->wbuf);
        free(m);
        return NULL;
    }
    m->body_fd = m->fd = -1;
    /* the slot's name is the queue ID: the commit then only writes into it */
    m->slot = spool_pool_take(&sp->pool, m->id);
    if (!m->slot)
        spool_new_id(sp, m->id);
    spool_pool_want(sp);
    LIST_INSERT_HEAD(&sp->live, m, live);
    return m;
}

const char *spool_msg_id(const struct spool_msg *m)
{
    return m->id;
}

size_t spool_msg_buffered(const struct spool_msg *m)
{
    return evbuffer_get_length(m->buf) + (m->writing ? m->inflight : 0);
}

int spool_msg_on_drain(struct spool_msg *m, void (*cb)(void *arg), void *arg)
{
    if (m->state != SPOOL_MSG_OPEN || !m->writing)
        return 0;
    m->drain_cb = cb;
    m->drain_arg = arg;
    return 1;
}

/* --- streaming (one write job in flight per message) --- */

/* spool_stream_work - worker: append wbuf to tmp/ID.body (created O_EXCL on first use). */
static void spool_stream_work(void *arg)
{
    struct spool_msg *m = arg;
    if (m->err) {
        evbuffer_drain(m->wbuf, evbuffer_get_length(m->wbuf));
        return;
    }
    if (m->body_fd < 0) {
        char name[SPOOL_ID_SIZE + 8];
        spool_body_name(m, name, sizeof name);
        m->body_fd = openat(m->sp->tmpfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (m->body_fd < 0) {
            m->err = errno;
            evbuffer_drain(m->wbuf, evbuffer_get_length(m->wbuf));
            return;
        }
    }
    m->bodycrc = spool_crc_evbuffer(m->bodycrc, m->wbuf);
    if (spool_write_evbuffer(m->body_fd, m->wbuf, &m->streamed) < 0)
        m->err = errno;
}

static void spool_commit_start(struct spool_msg *m);
static void spool_abort_start(struct spool_msg *m);
static void spool_stream_done(void *arg);

/* spool_stream_kick - start a write job when enough is buffered and none is running. */
static void spool_stream_kick(struct spool_msg *m)
{
    if (m->writing || m->loop_err || evbuffer_get_length(m->buf) <= SPOOL_STREAM_THRESHOLD)
        return;
    evbuffer_add_buffer(m->wbuf, m->buf);
    m->inflight = evbuffer_get_length(m->wbuf);
    m->writing = 1;
    m->sp->busy++;
    workers_submit(m->sp->io, spool_stream_work, spool_stream_done, m);
}

/* spool_stream_done - loop: a write job finished; continue whatever the message waits for. */
static void spool_stream_done(void *arg)
{
    struct spool_msg *m = arg;
    m->writing = 0;
    m->inflight = 0;
    m->sp->busy--;
    if (m->err && !m->loop_err) {
        /* said once here: smtpd only sees the append fail, and answers 451 or 452 at the end */
        log_warning("queue", "%s: cannot write %s/tmp/%s.body: %s", m->id, m->sp->dir, m->id,
                    strerror(m->err));
        m->loop_err = m->err;
    }
    switch (m->state) {
    case SPOOL_MSG_OPEN:
        spool_stream_kick(m);
        if (m->drain_cb) {
            void (*cb)(void *) = m->drain_cb;
            m->drain_cb = NULL;
            cb(m->drain_arg); /* last: it may append, commit or abort */
        }
        break;
    case SPOOL_MSG_COMMITTING:
        spool_commit_start(m);
        break;
    case SPOOL_MSG_ABORTING:
        spool_abort_start(m);
        break;
    }
}

int spool_msg_append(struct spool_msg *m, struct evbuffer *buf)
{
    if (m->state != SPOOL_MSG_OPEN)
        return -1;
    m->size += (long long)evbuffer_get_length(buf);
    evbuffer_add_buffer(m->buf, buf);
    if (!m->loop_err && !spool_space_ok(m->sp, m->size)) {
        /* queue_minfree also while streaming: MAIL only saw SIZE=, which a client may omit
         * or understate. The commit then fails with ENOSPC (452 4.3.1 at the SMTP level). */
        log_warning("queue",
                    "%s: not enough free space in the queue: %lld bytes received, "
                    "free space minus queue_minfree is below 1.5 times that",
                    m->id, m->size);
        m->loop_err = ENOSPC;
    }
    if (m->loop_err) {
        evbuffer_drain(m->buf, evbuffer_get_length(m->buf)); /* it will never be written */
        errno = m->loop_err;
        return -1;
    }
    spool_stream_kick(m);
    return 0;
}

/* --- abort --- */

/* spool_abort_work - worker: remove tmp/ID.body, and the slot when the pool had no room for it. */
static void spool_abort_work(void *arg)
{
    struct spool_msg *m = arg;
    spool_msg_close_body(m);
    if (m->slot)
        unlinkat(m->sp->qfd[spool_id_hash(m->id)], m->id, 0);
}

/* spool_abort_done - loop: the temp file is gone; free M, then tell the caller who waits. */
static void spool_abort_done(void *arg)
{
    struct spool_msg *m = arg;
    void (*done)(void *, int) = m->done;
    void *done_arg = m->done_arg;
    m->sp->busy--;
    spool_msg_free(m);
    if (done)
        done(done_arg, 0);
}

/* spool_abort_start - remove tmp/ID.body in a worker (nothing to do if never written; a
 * waiting caller still hears of it through the workers, never from inside its own call). */
static void spool_abort_start(struct spool_msg *m)
{
    /* the slot goes too: its ID may be in the log already, and an ID names one message */
    if (m->body_fd < 0 && !m->slot && !m->done) {
        spool_msg_free(m);
        return;
    }
    m->sp->busy++;
    workers_submit(m->sp->io, m->body_fd >= 0 || m->slot ? spool_abort_work : NULL,
                   spool_abort_done, m);
}

void spool_msg_abort_done(struct spool_msg *m, void (*done)(void *arg, int err), void *arg)
{
    if (!m || m->state != SPOOL_MSG_OPEN)
        return;
    spool_live_unlink(m);
    m->state = SPOOL_MSG_ABORTING;
    m->drain_cb = NULL;
    m->done = done;
    m->done_arg = arg;
    evbuffer_drain(m->buf, evbuffer_get_length(m->buf));
    if (!m->writing)
        spool_abort_start(m); /* else spool_stream_done starts it when the write ends */
}

void spool_msg_abort(struct spool_msg *m)
{
    spool_msg_abort_done(m, NULL, NULL);
}

void spool_msg_drop_live(struct spool *sp)
{
    struct spool_msg *m;

    while ((m = LIST_FIRST(&sp->live))) {
        spool_live_unlink(m);
        spool_msg_close_body(m);
        spool_msg_free(m);
    }
}

/* --- commit --- */

/* spool_commit_finish - loop: report the outcome, account for the queued message, free M. */
static void spool_commit_finish(struct spool_msg *m, int err)
{
    struct spool *sp = m->sp;
    sp->busy--;
    if (!err) {
        counter_add(CNT_SPOOL_COMMITS, 1);
        if (m->t_flushed) { /* through the committer: the latency, part by part */
            counter_add(CNT_SPOOL_COMMIT_WAIT_US, m->t_taken - m->t_start);
            counter_add(CNT_SPOOL_COMMIT_WRITE_US, m->t_written - m->t_taken);
            counter_add(CNT_SPOOL_COMMIT_FLUSH_US, m->t_flushed - m->t_written);
            counter_add(CNT_SPOOL_COMMIT_REPLY_US, clock_mono_us() - m->t_flushed);
        }
        spool_queued(sp, m->id, m->size);
    }
    if (m->done)
        m->done(m->done_arg, err);
    if (!err && sp->notify_cb) {
        /* the envelope as written, parsed from the same text: the scheduler need not
         * read the file back (on failure it gets NULL and reads it); and the message
         * itself when it was held in memory */
        struct spool_envelope *env = NULL;
        size_t hdrlen;
        if (m->env_text && spool_env_decode(m->env_text, m->env_len, &env, &hdrlen) != 0)
            env = NULL;
        struct evbuffer *content = NULL;
        if (m->kept && env && (long long)evbuffer_get_length(m->buf) == m->size) {
            content = m->buf;
            m->buf = NULL;
        }
        sp->notify_cb(sp->notify_arg, m->id, env, content);
    }
    spool_msg_free(m);
}

/* spool_write_message - write envelope + message + commit record at the start of M's open file;
 * 0 or -1 and errno. The one place that writes a message's content. */
static int spool_write_message(struct spool_msg *m)
{
    char rec[SPOOL_RECORD_LEN + 1];
    uint32_t envcrc = spool_crc32c(0, m->env_text, m->env_len);
    if (m->edit) {
        /* changed before the commit (milter, DKIM): written as edited (spool_edit.c), then its
         * checksum read back from the page cache (edits are rare; the view has no flat copy) */
        uint32_t bodycrc = 0;
        if (spool_edit_write(m) < 0 ||
            spool_crc_range(m->fd, (long long)m->env_len, m->size, &bodycrc) < 0)
            return -1;
        spool_record_encode(rec, m->id, m->env_len, m->size, envcrc, bodycrc);
        return fs_write_all(m->fd, rec, SPOOL_RECORD_LEN);
    }
    if (m->body_fd < 0) {
        /* held in memory: one gathered write, and the bytes stay for the scheduler */
        size_t len = evbuffer_get_length(m->buf);
        unsigned char *p = evbuffer_pullup(m->buf, -1); /* at most the 64 KiB held in memory */
        if (!p && len > 0) {
            errno = ENOMEM;
            return -1;
        }
        spool_record_encode(rec, m->id, m->env_len, m->size, envcrc, spool_crc32c(0, p, len));
        struct iovec iov[3] = {{m->env_text, m->env_len}, {p, len}, {rec, SPOOL_RECORD_LEN}};
        if (fs_writev_all(m->fd, iov, 3) < 0)
            return -1;
        m->kept = 1;
        return 0;
    }
    uint32_t bodycrc = spool_crc_evbuffer(m->bodycrc, m->buf);
    spool_record_encode(rec, m->id, m->env_len, m->size, envcrc, bodycrc);
    if (fs_write_all(m->fd, m->env_text, m->env_len) < 0 ||
        spool_copy_fd(m->body_fd, 0, m->streamed, m->fd) < 0 ||
        spool_write_evbuffer(m->fd, m->buf, NULL) < 0 ||
        fs_write_all(m->fd, rec, SPOOL_RECORD_LEN) < 0)
        return -1;
    return 0;
}

/* spool_commit_prepare_work - worker: write queue/X/ID, over its slot (overwritten in place, never
 * cut to length: a shorter length is metadata the flush would have to write too; what follows the
 * record is ignored), or into a new file when there was no slot. */
static void spool_commit_prepare_work(void *arg)
{
    struct spool_msg *m = arg;
    int dfd = m->sp->qfd[spool_id_hash(m->id)];
    struct stat st;
    if (m->loop_err) {
        m->err = m->loop_err;
        goto fail;
    }
    if (!m->env_text) {
        m->err = ENOMEM;
        goto fail;
    }
    if (m->slot) {
        m->fd = openat(dfd, m->id, O_RDWR | O_CLOEXEC | O_NOFOLLOW); /* RDWR: edits read back */
        if (m->fd >= 0 && fstat(m->fd, &st) < 0) {
            close(m->fd);
            m->fd = -1;
        }
    }
    if (m->fd < 0 && m->slot && errno != ENOENT) {
        m->err = errno; /* e.g. EROFS: say that, not what a create would say */
        goto fail;
    }
    if (m->fd < 0) {
        m->fd = openat(dfd, m->id, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        m->created = 1;
        st.st_size = 0;
    }
    if (m->fd < 0) {
        m->err = errno;
        goto fail;
    }
    if (spool_write_message(m) < 0) {
        m->err = errno ? errno : EIO;
        goto fail;
    }
    m->grew = (long long)m->env_len + m->size + SPOOL_RECORD_LEN > (long long)st.st_size;
    spool_msg_close_body(m);
    return;
fail:
    if (m->fd >= 0) {
        /* half a write: the file goes, slot or not (a record of this ID may be in it) */
        close(m->fd);
        m->fd = -1;
        unlinkat(dfd, m->id, 0);
    } else if (m->slot) {
        unlinkat(dfd, m->id, 0); /* never written, but its ID is spent (it is in the log) */
    }
    m->slot = 0;
    spool_msg_close_body(m);
    evbuffer_drain(m->buf, evbuffer_get_length(m->buf));
}

/* spool_committer_enqueue - any thread: put M on the committer's queue. */
static void spool_committer_enqueue(struct spool *sp, struct spool_msg *m)
{
    pthread_mutex_lock(&sp->cmu);
    STAILQ_INSERT_TAIL(&sp->cq, m, cnext);
    pthread_cond_signal(&sp->ccv);
    pthread_mutex_unlock(&sp->cmu);
}

/* spool_commit_prepare_done - loop: hand a file written by a worker to the committer, or fail. */
static void spool_commit_prepare_done(void *arg)
{
    struct spool_msg *m = arg;
    if (m->err) {
        spool_commit_finish(m, m->err);
        return;
    }
    m->prepared = 1;
    spool_committer_enqueue(m->sp, m);
}

/* spool_commit_start - loop: a message held in memory goes straight to the committer, which
 * writes it with the rest of its batch (no thread hop more than needed); a streamed one is
 * first assembled by a worker, so that copying a large body never holds up a batch. */
static void spool_commit_start(struct spool_msg *m)
{
    m->sp->busy++;
    m->t_start = clock_mono_us();
    if (m->body_fd >= 0 || m->loop_err || !m->env_text)
        workers_submit(m->sp->io, spool_commit_prepare_work, spool_commit_prepare_done, m);
    else
        spool_committer_enqueue(m->sp, m);
}

void spool_msg_commit(struct spool_msg *m, const struct spool_envelope *env,
                      void (*done)(void *arg, int err), void *arg)
{
    if (!m || m->state != SPOOL_MSG_OPEN)
        return; /* a caller bug: committed or aborted twice */
    spool_live_unlink(m);
    m->state = SPOOL_MSG_COMMITTING;
    m->drain_cb = NULL;
    m->done = done;
    m->done_arg = arg;
    struct spool_envelope e = *env;
    memcpy(e.id, m->id, sizeof e.id);
    e.size = m->size;
    if (e.arrival_us <= 0)
        e.arrival_us = clock_now_us();
    /* Encoded here because ENV is only valid during this call; a NULL result
     * (out of memory) fails the commit in the worker. */
    m->env_text = spool_env_encode(&e, &m->env_len);
    if (m->sp->gone && !m->loop_err)
        m->loop_err = ENOENT; /* renamed into a directory nobody looks at: fail, never 250 */
    if (!m->writing)
        spool_commit_start(m);
}

/* --- the committer thread --- */

/* spool_commit_posted - loop: the committer is done with M; report it. */
static void spool_commit_posted(void *arg)
{
    struct spool_msg *m = arg;
    spool_commit_finish(m, m->err);
}

/* spool_commit_flush - make the written files of BATCH durable with one device flush; 0 or errno.
 * fdatasync of one file. For several overwritten in place: sync_file_range starts the write-back
 * of every file, the last one's too, so that the device has them all at once; then it waits for
 * each but the last (in the device's cache, no flush), and fdatasync of the last waits for its
 * write and sends the one cache flush, which covers every write completed before it. Leaving the
 * last file's write to fdatasync would start it only after the others were done: one more round
 * trip to the device per group. A created file's name, or a file's new length, is metadata that
 * only fsync/syncfs flush: then one syncfs for the group. */
static int spool_commit_flush(struct spool_msg_list *batch, int n, struct spool_msg *last, int meta)
{
    struct spool_msg *m;
    if (n == 1 && last->created) {
        /* no slot: the file and then its name, two flushes, but none of syncfs's wait for
         * whatever else is dirty on the volume */
        if (fdatasync(last->fd) < 0)
            return errno;
        counter_add(CNT_SPOOL_FLUSHES, 1);
        return spool_fsync_dir(last->sp->qfd[spool_id_hash(last->id)]);
    }
    if (meta && n > 1)
        return syncfs(last->fd) < 0 ? errno : 0;
    /* two passes: start every write-back, then wait for each, so that the device works on all
     * of them at once instead of one round trip per file */
    for (int pass = 0; pass < 2 && n > 1; pass++) {
        STAILQ_FOREACH(m, batch, cnext)
        {
            if (m->fd < 0 || (m == last && pass == 1))
                continue;
            unsigned flags = pass == 0 ? SYNC_FILE_RANGE_WRITE
                                       : SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                             SYNC_FILE_RANGE_WAIT_AFTER;
            if (sync_file_range(m->fd, 0, 0, flags) < 0)
                return errno;
        }
    }
    return fdatasync(last->fd) < 0 ? errno : 0;
}

/* spool_commit_batch - write a batch into its files and make it durable (committer thread). */
static void spool_commit_batch(struct spool *sp, struct spool_msg_list *batch)
{
    int n = 0, meta = 0;
    struct spool_msg *last = NULL, *m;
    long long taken = clock_mono_us();
    /* 1. write the messages held in memory (streamed ones a worker wrote) */
    STAILQ_FOREACH(m, batch, cnext)
    {
        if (!m->prepared)
            spool_commit_prepare_work(m);
        if (m->fd >= 0) {
            n++;
            last = m;
            meta |= m->created || m->grew;
        }
    }
    /* 2. one flush for the whole batch */
    long long written = clock_mono_us();
    int ferr = 0;
    if (n > 0) {
        ferr = spool_commit_flush(batch, n, last, meta);
        counter_add(CNT_SPOOL_FLUSHES, 1);
    }
    long long flushed = clock_mono_us();
    STAILQ_FOREACH(m, batch, cnext)
    {
        if (m->fd < 0)
            continue; /* its write failed: m->err says why */
        m->t_taken = taken;
        m->t_written = written;
        m->t_flushed = flushed;
        close(m->fd);
        m->fd = -1;
        m->err = ferr;
        if (ferr) /* not known to be durable: a 451 must not be followed by a delivery */
            unlinkat(sp->qfd[spool_id_hash(m->id)], m->id, 0);
    }
    /* 3. only now the replies */
    while ((m = STAILQ_FIRST(batch))) {
        /* off the list first: once posted, M belongs to the loop */
        STAILQ_REMOVE_HEAD(batch, cnext);
        workers_submit(sp->io, NULL, spool_commit_posted, m);
    }
}

/* spool_committer_main - collect every ready commit, flush them together, repeat. */
static void *spool_committer_main(void *arg)
{
    struct spool *sp = arg;
    pthread_mutex_lock(&sp->cmu);
    for (;;) {
        while (STAILQ_EMPTY(&sp->cq) && !sp->cstop)
            pthread_cond_wait(&sp->ccv, &sp->cmu);
        if (STAILQ_EMPTY(&sp->cq))
            break;
        struct spool_msg_list batch = STAILQ_HEAD_INITIALIZER(batch);
        STAILQ_CONCAT(&batch, &sp->cq);
        pthread_mutex_unlock(&sp->cmu);
        spool_commit_batch(sp, &batch);
        pthread_mutex_lock(&sp->cmu);
    }
    pthread_mutex_unlock(&sp->cmu);
    return NULL;
}

int spool_committer_start(struct spool *sp)
{
    if (pthread_create(&sp->committer, NULL, spool_committer_main, sp) != 0)
        return -1;
    pthread_setname_np(sp->committer, "spool-commit");
    sp->committer_started = 1;
    return 0;
}

void spool_committer_stop(struct spool *sp)
{
    if (!sp->committer_started)
        return;
    pthread_mutex_lock(&sp->cmu);
    sp->cstop = 1;
    pthread_cond_signal(&sp->ccv);
    pthread_mutex_unlock(&sp->cmu);
    pthread_join(sp->committer, NULL);
    sp->committer_started = 0;
}
