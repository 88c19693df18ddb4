/*
 * spool_read.c - the delivery side's access to queued messages: parsing a
 * queued envelope, opening the message bytes, removing a message, listing the
 * queue. spool_load_envelope and spool_open_message block on disk I/O and are
 * meant for worker threads; they only read immutable state of the spool (the
 * directory fds), so any thread may call them. spool_remove, spool_foreach,
 * spool_count and spool_contains are for the loop thread.
 * Not here: writing (spool_intake.c); per-recipient status files (delivery).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "mta/counters.h"
#include "mta/fsutil.h"
#include "mta/workers.h"
#include "spool_int.h"

/* spool_open_queued - open queue/X/ID read-only; -1 and errno. */
static int spool_open_queued(struct spool *sp, const char *id)
{
    if (!id || !spool_id_valid(id)) {
        errno = ENOENT;
        return -1;
    }
    return fs_openat_noatime(sp->qfd[spool_id_hash(id)], id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

int spool_load_envelope(struct spool *sp, const char *id, struct spool_envelope **out)
{
    *out = NULL;
    int fd = spool_open_queued(sp, id);
    if (fd < 0)
        return errno;
    size_t hdrlen;
    int err = spool_env_read_fd(fd, out, &hdrlen);
    close(fd);
    return err;
}

int spool_open_message(struct spool *sp, const char *id, struct spool_envelope **env,
                       long long *size)
{
    if (env)
        *env = NULL;
    int fd = spool_open_queued(sp, id);
    if (fd < 0)
        return -1;
    struct spool_envelope *e = NULL;
    size_t hdrlen = 0;
    struct stat st;
    uint32_t bodycrc = 0;
    const char *why = NULL;
    int err = 0, rc = SPOOL_REC_BAD;
    if (fstat(fd, &st) < 0)
        err = errno;
    else
        rc = spool_record_check(fd, id, (long long)st.st_size, &e, &hdrlen, &bodycrc, &why);
    if (!err && rc != SPOOL_REC_OK && rc != SPOOL_REC_V1)
        err = EBADMSG;
    /* the body's checksum, before any byte of it is delivered: a write that a crash cut short in
     * its middle (the envelope and the record made it to the disk, a page between them did not)
     * is never delivered half */
    if (!err && rc == SPOOL_REC_OK &&
        (err = spool_record_verify_body(fd, hdrlen, e->size, bodycrc)))
        why = "message checksum mismatch (write not completed, or damaged since)";
    if (!err && lseek(fd, (off_t)hdrlen, SEEK_SET) < 0)
        err = errno;
    if (err) {
        if (err == EBADMSG)
            spool_quarantine_queued(sp, id, why ? why : "unreadable queue file");
        spool_envelope_free(e);
        close(fd);
        errno = err;
        return -1;
    }
    *size = e->size;
    if (env)
        *env = e;
    else
        spool_envelope_free(e);
    return fd;
}

int spool_status_path(const char *id, char *buf, size_t len)
{
    if (!id || !spool_id_valid(id))
        return -1;
    int n = snprintf(buf, len, "queue/%X/%s.st", spool_id_hash(id), id);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* --- remove --- */

struct spool_remove_job {
    struct spool *sp;
    char id[SPOOL_ID_SIZE];
    int err;
    int gone;    /* the file no longer exists (even if the directory fsync failed) */
    int recycle; /* small enough to go into the pool of reusable files */
    int pooled;  /* renamed to slot ID slot, not yet published */
    char slot[SPOOL_ID_SIZE];
    void (*done)(void *arg, int err);
    void *arg;
    STAILQ_ENTRY(spool_remove_job) link; /* spool.rm_wait, then spool.rm_batch */
};

/* A batch of removals (sp->rm_batch, one in flight): all unlinked, then each touched
 * directory fsync'd once, so removals that arrive together share the flush (like commits).
 * Every batch waits SPOOL_REMOVE_GATHER_US (10 ms) for company, also the one that follows a batch
 * in flight: nobody waits for a removal, and without the wait a steady stream of deliveries made
 * one removal flush per few messages, each competing with the commits' flushes for the disk
 * (relay at 10 sessions: ~650 removal flushes/s back to back, under 100/s gathered). */
static void spool_remove_kick(struct spool *sp);
static void spool_remove_gather(struct spool *sp);

/* spool_remove_work - worker: move each message into the pool of reusable files (or unlink it),
 * unlink its status file, then make it durable with one flush. */
static void spool_remove_work(void *arg)
{
    struct spool *sp = arg;
    int touched[SPOOL_NHASH] = {0};

    struct spool_remove_job *j;

    STAILQ_FOREACH(j, &sp->rm_batch, link)
    {
        int h = spool_id_hash(j->id);
        int dfd = sp->qfd[h];
        char st[SPOOL_ID_SIZE + 4];

        snprintf(st, sizeof st, "%s.st", j->id);
        j->pooled = j->recycle && spool_pool_put(sp, dfd, j->id, j->slot) == 0;
        if (!j->pooled && unlinkat(dfd, j->id, 0) < 0) {
            j->err = errno;
            j->gone = errno == ENOENT;
            continue;
        }
        j->gone = 1;
        unlinkat(dfd, st, 0); /* usually absent */
        touched[h] = 1;
        if (j->pooled)
            touched[spool_id_hash(j->slot)] = 1;
    }
    int derr = spool_flush_hashdirs(sp, touched); /* one flush for the batch */
    STAILQ_FOREACH(j, &sp->rm_batch, link)
    {
        if (!j->err)
            j->err = derr > 0 ? derr : 0;
        if (j->pooled) /* reusable only now that its old name is durably gone */
            spool_pool_publish(sp, j->slot, !j->err);
    }
}

/* spool_remove_finish - loop: account for one removal and report it. */
static void spool_remove_finish(struct spool_remove_job *j)
{
    struct spool *sp = j->sp;
    sp->busy--;
    if (j->gone) {
        long long size = spool_index_del(&sp->index, j->id);
        if (size >= 0) {
            counter_add(CNT_MQUEUE_MESSAGES, -1);
            counter_add(CNT_MQUEUE_BYTES, -size);
        }
    }
    if (j->done)
        j->done(j->arg, j->err);
    free(j);
}

/* spool_remove_done - loop: the batch is durable; report each, then start the next batch. */
static void spool_remove_done(void *arg)
{
    struct spool *sp = arg;
    struct spool_remove_list jobs = STAILQ_HEAD_INITIALIZER(jobs);
    struct spool_remove_job *j;

    STAILQ_CONCAT(&jobs, &sp->rm_batch);
    sp->rm_inflight = 0;
    while ((j = STAILQ_FIRST(&jobs))) {
        STAILQ_REMOVE_HEAD(&jobs, link);
        spool_remove_finish(j);
    }
    spool_remove_gather(sp);
}

/* spool_remove_gather - loop: start the next batch after the gathering delay (at once when
 * shutting down, or if the timer cannot be set). */
static void spool_remove_gather(struct spool *sp)
{
    if (sp->rm_inflight || STAILQ_EMPTY(&sp->rm_wait) ||
        (sp->rm_ev && evtimer_pending(sp->rm_ev, NULL)))
        return;
    struct timeval tv = {0, SPOOL_REMOVE_GATHER_US};
    if (sp->rm_now || !sp->rm_ev || evtimer_add(sp->rm_ev, &tv) < 0)
        spool_remove_kick(sp);
}

/* spool_remove_kick - loop: hand every waiting removal to a worker as one batch. */
static void spool_remove_kick(struct spool *sp)
{
    if (sp->rm_inflight || STAILQ_EMPTY(&sp->rm_wait))
        return;
    STAILQ_CONCAT(&sp->rm_batch, &sp->rm_wait);
    sp->rm_inflight = 1;
    workers_submit(sp->io, spool_remove_work, spool_remove_done, sp);
}

/* spool_remove_unknown - loop: report ENOENT for an ID that is not queued. */
static void spool_remove_unknown(void *arg)
{
    struct spool_remove_job *j = arg;
    j->sp->busy--;
    if (j->done)
        j->done(j->arg, ENOENT);
    free(j);
}

void spool_remove(struct spool *sp, const char *id, int reuse, void (*done)(void *arg, int err),
                  void *arg)
{
    struct spool_remove_job *j = calloc(1, sizeof *j);
    if (!j) {
        if (done)
            done(arg, ENOMEM);
        return;
    }
    j->sp = sp;
    j->done = done;
    j->arg = arg;
    sp->busy++;
    struct spool_index_entry *e =
        id && spool_id_valid(id) ? spool_index_find(&sp->index, id) : NULL;
    if (!e) {
        workers_submit(sp->io, NULL, spool_remove_unknown, j);
        return;
    }
    j->recycle = reuse && e->size + 4096 <= SPOOL_POOL_FILE_MAX; /* envelopes: rarely > 4 KiB */
    memcpy(j->id, id, SPOOL_ID_SIZE);
    STAILQ_INSERT_TAIL(&sp->rm_wait, j, link);
    spool_remove_gather(sp);
}

void spool_remove_gather_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    spool_remove_kick(arg);
}

void spool_remove_flush(struct spool *sp)
{
    sp->rm_now = 1;
    if (sp->rm_ev)
        evtimer_del(sp->rm_ev);
    spool_remove_kick(sp);
}

/* --- listing --- */

void spool_foreach(struct spool *sp, void (*cb)(void *arg, const char *id, long long size),
                   void *arg)
{
    size_t n;
    struct spool_index_entry *v = spool_index_snapshot(&sp->index, &n);
    for (size_t i = 0; v && i < n; i++)
        cb(arg, v[i].id, v[i].size);
    free(v);
}

long spool_count(const struct spool *sp)
{
    return (long)sp->index.tab.count;
}

int spool_contains(const struct spool *sp, const char *id)
{
    return id && spool_id_valid(id) && spool_index_find(&sp->index, id) != NULL;
}
