/*
 * spool_edit.c - edits to a message before it is committed (milter header and
 * body changes, a DKIM signature put in front) and reading the message back
 * before the commit (the milter sees the content, the signer hashes it).
 *
 * A message under edit is a view over the received bytes O (size N):
 *     FRONT + O[skip .. tail) + REPL
 * FRONT and REPL live in memory; O is where the intake put it (the streamed
 * tmp/ID.body for its first `streamed` bytes, the rest in m->buf). Nothing is
 * rewritten until the commit: spool_edit_write, called by the worker that
 * writes the message file, writes the envelope and then the view. A message
 * with no edit has m->edit == NULL and is written exactly as before.
 * Not here: the commit itself (spool_intake.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "mta/fsutil.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "sched_int.h"
#include "spool_int.h"

struct spool_edit {
    int hold;               /* committed on hold (a milter's quarantine) */
    struct evbuffer *front; /* replaces O[0 .. skip) */
    long long skip;
    long long tail; /* O[tail .. N) is dropped and REPL follows */
    struct evbuffer *repl;
};

void spool_edit_free(struct spool_edit *e)
{
    if (!e)
        return;
    evbuffer_free(e->front);
    evbuffer_free(e->repl);
    free(e);
}

/* spool_edit_get - M's edit, created on first use (tail = N: nothing replaced yet). */
static struct spool_edit *spool_edit_get(struct spool_msg *m)
{
    if (m->edit)
        return m->edit;
    struct spool_edit *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->front = evbuffer_new();
    e->repl = evbuffer_new();
    if (!e->front || !e->repl) {
        spool_edit_free(e);
        return NULL;
    }
    e->tail = m->size;
    m->edit = e;
    return e;
}

/* spool_edit_size - bytes of the view. */
static long long spool_edit_size(const struct spool_edit *e)
{
    return (long long)evbuffer_get_length(e->front) + (e->tail - e->skip) +
           (long long)evbuffer_get_length(e->repl);
}

long long spool_msg_size(const struct spool_msg *m)
{
    return m->edit ? spool_edit_size(m->edit) : m->size;
}

/* spool_edit_truncate - keep only the first LEN bytes of B. */
static int spool_edit_truncate(struct evbuffer **b, size_t len)
{
    if (evbuffer_get_length(*b) <= len)
        return 0;
    struct evbuffer *n = evbuffer_new();
    if (!n || evbuffer_remove_buffer(*b, n, len) != (int)len) {
        if (n)
            evbuffer_free(n);
        return -1;
    }
    evbuffer_free(*b);
    *b = n;
    return 0;
}

int spool_msg_set_front(struct spool_msg *m, struct evbuffer *front, size_t skip)
{
    if (m->state != SPOOL_MSG_OPEN || (long long)skip > spool_msg_size(m)) {
        errno = EINVAL;
        return -1;
    }
    struct spool_edit *e = spool_edit_get(m);
    if (!e) {
        errno = ENOMEM;
        return -1;
    }
    size_t flen = evbuffer_get_length(e->front);
    if (skip <= flen) {
        evbuffer_drain(e->front, skip);
    } else {
        long long rest = (long long)(skip - flen); /* from the kept part of O, then REPL */
        evbuffer_drain(e->front, flen);
        long long kept = e->tail - e->skip;
        if (rest <= kept) {
            e->skip += rest;
        } else {
            e->skip = e->tail;
            evbuffer_drain(e->repl, (size_t)(rest - kept));
        }
    }
    if (evbuffer_prepend_buffer(e->front, front) < 0) {
        errno = ENOMEM;
        return -1;
    }
    m->size = spool_edit_size(e);
    return 0;
}

int spool_msg_replace_from(struct spool_msg *m, long long off, struct evbuffer *bytes)
{
    if (m->state != SPOOL_MSG_OPEN || off < 0 || off > spool_msg_size(m)) {
        errno = EINVAL;
        return -1;
    }
    struct spool_edit *e = spool_edit_get(m);
    if (!e) {
        errno = ENOMEM;
        return -1;
    }
    long long flen = (long long)evbuffer_get_length(e->front);
    long long kept = e->tail - e->skip;
    int r = 0;
    if (off <= flen) {
        r = spool_edit_truncate(&e->front, (size_t)off);
        e->tail = e->skip;
        evbuffer_drain(e->repl, evbuffer_get_length(e->repl));
    } else if (off <= flen + kept) {
        e->tail = e->skip + (off - flen);
        evbuffer_drain(e->repl, evbuffer_get_length(e->repl));
    } else {
        r = spool_edit_truncate(&e->repl, (size_t)(off - flen - kept));
    }
    if (r < 0 || evbuffer_add_buffer(e->repl, bytes) < 0) {
        errno = ENOMEM;
        return -1;
    }
    m->size = spool_edit_size(e);
    return 0;
}

/* --- writing the view at commit (worker) --- */

/* spool_edit_copy_mem - append B[off .. off+len) to OUT without draining B. */
static int spool_edit_copy_mem(struct evbuffer *b, long long off, long long len, int out)
{
    struct evbuffer_ptr pos;
    if (len <= 0)
        return 0;
    if (evbuffer_ptr_set(b, &pos, (size_t)off, EVBUFFER_PTR_SET) < 0) {
        errno = EIO;
        return -1;
    }
    struct evbuffer_iovec v[16];
    while (len > 0) {
        int n = evbuffer_peek(b, (ev_ssize_t)len, &pos, v, 16);
        if (n <= 0) {
            errno = EIO;
            return -1;
        }
        for (int i = 0; i < n && i < 16 && len > 0; i++) {
            size_t k = v[i].iov_len < (size_t)len ? v[i].iov_len : (size_t)len;
            if (fs_write_all(out, v[i].iov_base, k) < 0)
                return -1;
            len -= (long long)k;
            if (evbuffer_ptr_set(b, &pos, k, EVBUFFER_PTR_ADD) < 0 && len > 0) {
                errno = EIO;
                return -1;
            }
        }
    }
    return 0;
}

/* spool_edit_copy_orig - append O[from .. to) from the streamed file and m->buf. */
static int spool_edit_copy_orig(struct spool_msg *m, long long from, long long to, int out)
{
    if (from < m->streamed) {
        long long end = to < m->streamed ? to : m->streamed;
        if (spool_copy_fd(m->body_fd, from, end - from, out) < 0)
            return -1;
        from = end;
    }
    if (from >= to)
        return 0;
    return spool_edit_copy_mem(m->buf, from - m->streamed, to - from, out);
}

int spool_msg_set_hold(struct spool_msg *m)
{
    struct spool_edit *e = m->state == SPOOL_MSG_OPEN ? spool_edit_get(m) : NULL;
    if (!e) {
        errno = m->state == SPOOL_MSG_OPEN ? ENOMEM : EINVAL;
        return -1;
    }
    e->hold = 1;
    return 0;
}

/* spool_edit_hold - worker, before the message's rename: its status file says "hold 1",
 * in place in queue/X/ (flushed) before the message is written, so the scheduler, which then loads
 * the message from disk, never sees it unheld. Quarantine is rare: its own two flushes cost nothing
 * in the common case. */
static int spool_edit_hold(struct spool_msg *m)
{
    struct spool_envelope *env = NULL;
    size_t hdrlen, len;
    char tmpname[SPOOL_ID_SIZE + 16], name[SPOOL_ID_SIZE + 8];
    if (spool_env_decode(m->env_text, m->env_len, &env, &hdrlen) != 0) {
        errno = EINVAL;
        return -1;
    }
    struct spool_status st = {.nslots = env->nrcpt, .hold = 1, .sync = 1};
    st.slots = malloc((size_t)env->nrcpt + 1);
    spool_envelope_free(env);
    if (!st.slots) {
        errno = ENOMEM;
        return -1;
    }
    memset(st.slots, SCHED_SLOT_PENDING, (size_t)st.nslots);
    char *text = spool_status_encode(&st, &len);
    free(st.slots);
    if (!text) {
        errno = ENOMEM;
        return -1;
    }
    snprintf(tmpname, sizeof tmpname, "%s.st.tmp", m->id);
    snprintf(name, sizeof name, "%s.st", m->id);
    int fd = openat(m->sp->tmpfd, tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = fd < 0 ? -1 : fs_write_all(fd, text, len);
    free(text);
    if (r == 0 && fsync(fd) < 0)
        r = -1;
    if (fd >= 0)
        close(fd);
    int qfd = m->sp->qfd[spool_id_hash(m->id)];
    if (r == 0 && renameat(m->sp->tmpfd, tmpname, qfd, name) < 0)
        r = -1;
    if (r == 0 && (errno = spool_fsync_dir(qfd)) != 0) /* the hold is durable on its own */
        r = -1;
    if (r < 0) {
        int e = errno;
        unlinkat(m->sp->tmpfd, tmpname, 0);
        errno = e;
        return -1;
    }
    return 0;
}

int spool_edit_write(struct spool_msg *m)
{
    struct spool_edit *e = m->edit;
    if ((e->hold && spool_edit_hold(m) < 0) || fs_write_all(m->fd, m->env_text, m->env_len) < 0 ||
        spool_edit_copy_mem(e->front, 0, (long long)evbuffer_get_length(e->front), m->fd) < 0 ||
        spool_edit_copy_orig(m, e->skip, e->tail, m->fd) < 0 ||
        spool_edit_copy_mem(e->repl, 0, (long long)evbuffer_get_length(e->repl), m->fd) < 0)
        return -1;
    evbuffer_drain(m->buf, evbuffer_get_length(m->buf));
    if (e->hold) {
        /* no envelope handed to the scheduler: it reads the message and the status back */
        free(m->env_text);
        m->env_text = NULL;
    }
    return 0;
}

/* --- reading the view before the commit --- */

struct spool_read {
    int fd; /* dup of tmp/ID.body for a file read, else -1 */
    long long off, len;
    struct evbuffer *out;
    int err;
    void (*done)(void *arg, struct evbuffer *out, int err);
    void *arg;
};

/* spool_read_work - worker: pread the file part. */
static void spool_read_work(void *arg)
{
    struct spool_read *r = arg;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(r->out, (ev_ssize_t)r->len, &v, 1) < 1) {
        r->err = ENOMEM;
        return;
    }
    size_t got = 0;
    while (got < (size_t)r->len) {
        ssize_t n = pread(r->fd, (char *)v.iov_base + got, (size_t)r->len - got,
                          (off_t)(r->off + (long long)got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r->err = n < 0 ? errno : EIO;
            break;
        }
        got += (size_t)n;
    }
    v.iov_len = got;
    evbuffer_commit_space(r->out, &v, 1);
}

/* spool_read_done - loop: hand the bytes to the reader (unless it cancelled). */
static void spool_read_done(void *arg)
{
    struct spool_read *r = arg;
    if (r->fd >= 0)
        close(r->fd);
    if (r->done)
        r->done(r->arg, r->out, r->err);
    evbuffer_free(r->out);
    free(r);
}

/* spool_read_copy - R's bytes are SRC[off .. off+len), copied (SRC may change later). */
static void spool_read_copy(struct evbuffer *src, long long off, long long len,
                            struct spool_read *r)
{
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v;
    if (len <= 0)
        return;
    if (evbuffer_ptr_set(src, &pos, (size_t)off, EVBUFFER_PTR_SET) < 0 ||
        evbuffer_reserve_space(r->out, (ev_ssize_t)len, &v, 1) < 1) {
        r->err = EIO;
        return;
    }
    ev_ssize_t n = evbuffer_copyout_from(src, &pos, v.iov_base, (size_t)len);
    v.iov_len = n > 0 ? (size_t)n : 0;
    evbuffer_commit_space(r->out, &v, 1);
    if (n != (ev_ssize_t)len)
        r->err = EIO;
}

struct spool_read *spool_msg_read(struct spool_msg *m, long long off, size_t max,
                                  void (*done)(void *arg, struct evbuffer *out, int err), void *arg)
{
    struct spool_read *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->fd = -1;
    r->out = evbuffer_new();
    r->done = done;
    r->arg = arg;
    if (!r->out) {
        free(r);
        return NULL;
    }
    struct spool_edit *e = m->edit;
    long long size = spool_msg_size(m), flen = e ? (long long)evbuffer_get_length(e->front) : 0;
    long long skip = e ? e->skip : 0, tail = e ? e->tail : m->size;
    if (max > SPOOL_READ_MAX)
        max = SPOOL_READ_MAX;
    if (off > size)
        off = size;
    long long len = size - off < (long long)max ? size - off : (long long)max;
    if (m->writing || m->state != SPOOL_MSG_OPEN) {
        r->err = EAGAIN; /* a streaming write is in flight: wait for spool_msg_on_drain */
    } else if (off < flen) {
        len = len < flen - off ? len : flen - off;
        spool_read_copy(e->front, off, len, r);
    } else if (off < flen + (tail - skip)) {
        long long o = skip + (off - flen); /* offset in O */
        len = len < tail - o ? len : tail - o;
        if (o < m->streamed) {
            len = len < m->streamed - o ? len : m->streamed - o;
            r->fd = dup(m->body_fd);
            if (r->fd < 0) {
                r->err = errno;
            } else {
                r->off = o;
                r->len = len;
                workers_submit(m->sp->io, spool_read_work, spool_read_done, r);
                return r;
            }
        } else {
            spool_read_copy(m->buf, o - m->streamed, len, r);
        }
    } else if (e) {
        spool_read_copy(e->repl, off - flen - (tail - skip), len, r);
    }
    /* from memory: still answered from the loop's next turn, never from inside this call */
    workers_submit(m->sp->io, NULL, spool_read_done, r);
    return r;
}

void spool_read_cancel(struct spool_read *r)
{
    if (r)
        r->done = NULL;
}
