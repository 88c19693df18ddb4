/*
 * spool_pool.c - recycled message files. A delivered message's file is not
 * unlinked but renamed into tmp/ under a pool name ("P" + 8 hex digits), and the
 * next message is written over it (then cut to length) instead of into a new file.
 * So a busy relay neither allocates nor frees an inode per message: on ext4,
 * creating a file right after many deletions scans past every recently freed
 * inode (measured here: 2,000 creates/s after deleting 5,000 files against
 * 40,000/s on a settled file system), and unlink frees what the next message
 * would allocate again.
 * When the pool runs low (intake faster than delivery, or no delivery at all), a
 * worker tops it up with new empty files, so that inode allocation happens beside
 * the committer's flushes instead of inside its batch.
 * The pool is bounded (SPOOL_POOL_MAX files, each at most SPOOL_POOL_FILE_MAX
 * bytes, so at most 32 MiB of disk) and shared by the threads under a mutex.
 * Pool files hold no queued mail: a crash leaves them in tmp/, where start-up
 * adopts them again (spool_pool_adopt) or removes what does not fit.
 * Not here: when a file is written (spool_intake.c) or removed (spool_read.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "mta/workers.h"

#include "spool_int.h"

void spool_pool_init(struct spool_pool *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
}

void spool_pool_destroy(struct spool_pool *p)
{
    pthread_mutex_destroy(&p->mu);
}

/* spool_pool_name - the tmp/ name of pool file number SEQ. */
static void spool_pool_name(unsigned seq, char out[SPOOL_POOL_NAME_SIZE])
{
    snprintf(out, SPOOL_POOL_NAME_SIZE, "P%08X", seq);
}

int spool_pool_is_name(const char *name, unsigned *seq)
{
    if (name[0] != 'P' || strlen(name) != SPOOL_POOL_NAME_SIZE - 1)
        return 0;
    unsigned v = 0;
    for (int i = 1; i < SPOOL_POOL_NAME_SIZE - 1; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (unsigned)d;
    }
    *seq = v;
    return 1;
}

int spool_pool_adopt(struct spool_pool *p, unsigned seq)
{
    int ok = 0;
    pthread_mutex_lock(&p->mu);
    if (p->n < SPOOL_POOL_MAX) {
        p->seq[p->n++] = seq;
        ok = 1;
    }
    if (seq >= p->next)
        p->next = seq + 1;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

int spool_pool_take(struct spool_pool *p, char out[SPOOL_POOL_NAME_SIZE])
{
    int got = 0;
    unsigned seq = 0;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0) {
        seq = p->seq[--p->n];
        got = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (got)
        spool_pool_name(seq, out);
    return got;
}

/* spool_pool_reserve - a number for a file about to join the pool, while fewer than LIMIT are in
 * it or on their way; 0 and *SEQ, or -1 (the pool is full enough). */
static int spool_pool_reserve(struct spool_pool *p, int limit, unsigned *seq)
{
    int ok = 0;
    pthread_mutex_lock(&p->mu);
    if (p->n + p->reserved < limit) {
        *seq = p->next++;
        p->reserved++;
        ok = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return ok ? 0 : -1;
}

/* spool_pool_release - the reserved file SEQ joins the pool (OK) or never came to be. */
static void spool_pool_release(struct spool_pool *p, unsigned seq, int ok)
{
    pthread_mutex_lock(&p->mu);
    p->reserved--;
    if (ok)
        p->seq[p->n++] = seq;
    pthread_mutex_unlock(&p->mu);
}

int spool_pool_put(struct spool_pool *p, int tmpfd, int dirfd, const char *name, unsigned *out)
{
    unsigned seq;
    if (spool_pool_reserve(p, SPOOL_POOL_MAX, &seq) < 0) {
        errno = ENOSPC;
        return -1;
    }
    char pname[SPOOL_POOL_NAME_SIZE];
    spool_pool_name(seq, pname);
    if (renameat(dirfd, name, tmpfd, pname) < 0) {
        int e = errno;
        spool_pool_release(p, seq, 0);
        errno = e;
        return -1;
    }
    *out = seq;
    return 0;
}

void spool_pool_publish(struct spool_pool *p, int tmpfd, unsigned seq, int ok)
{
    if (!ok) {
        char pname[SPOOL_POOL_NAME_SIZE];
        spool_pool_name(seq, pname);
        unlinkat(tmpfd, pname, 0);
    }
    spool_pool_release(p, seq, ok);
}

/* spool_pool_fill_work - worker: create empty pool files until SPOOL_POOL_FILL are ready. */
static void spool_pool_fill_work(void *arg)
{
    struct spool *sp = arg;
    struct spool_pool *p = &sp->pool;
    unsigned seq;
    int fd = 0;
    while (fd >= 0 && spool_pool_reserve(p, SPOOL_POOL_FILL, &seq) == 0) {
        char name[SPOOL_POOL_NAME_SIZE];
        spool_pool_name(seq, name);
        fd = openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
        spool_pool_release(p, seq, fd >= 0); /* on ENOSPC etc. the committer creates its own */
    }
    pthread_mutex_lock(&p->mu);
    p->filling = 0;
    pthread_mutex_unlock(&p->mu);
}

void spool_pool_want(struct spool *sp)
{
    struct spool_pool *p = &sp->pool;
    int start = 0;
    pthread_mutex_lock(&p->mu);
    if (!p->filling && p->n + p->reserved < SPOOL_POOL_LOW) {
        p->filling = 1;
        start = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (start)
        workers_submit(sp->io, spool_pool_fill_work, NULL, sp);
}
