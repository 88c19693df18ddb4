/*
 * spool_pool.c - slots: files in queue/X/ whose names (fresh queue IDs) are
 * already durable, so that committing a message is writing into one and one
 * fdatasync (spool_intake.c, spool_record.c), with no rename and no directory
 * flush on the way to the 250. spool_msg_new takes a slot and the message's
 * queue ID is the slot's name.
 * Slots come from two places, each in a batch with one flush, on a worker and
 * off any client's path:
 * - a delivered message's file is renamed to a new ID (spool_read.c's removal
 *   batch): the file keeps its blocks, so the next message overwrites allocated
 *   blocks and its fdatasync is a pure data flush (no journal commit); the old
 *   content names the old ID, so it is no message of the new name;
 * - when the pool runs low, a worker makes new files of SPOOL_SLOT_PREALLOC
 *   zero bytes (written, not fallocate'd: unwritten extents would need a
 *   metadata update at the first real write) and flushes them with one syncfs.
 * A slot is handed out only once its name is durable: a message written into
 * a file whose rename could still be undone by a crash would come back under
 * the old name, which its record does not name, and be lost after its 250.
 * Start-up removes the slots it finds (spool.c): they hold no mail.
 * The pool is bounded (SPOOL_POOL_MAX slots; files over SPOOL_POOL_FILE_MAX
 * are unlinked rather than recycled) and shared by the threads under a mutex.
 * Not here: writing a message (spool_intake.c), removing one (spool_read.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "mta/counters.h"
#include "mta/fsutil.h"
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

void spool_new_id(struct spool *sp, char out[SPOOL_ID_SIZE])
{
    pthread_mutex_lock(&sp->idmu);
    spool_id_next(&sp->idgen, out);
    pthread_mutex_unlock(&sp->idmu);
}

int spool_pool_take(struct spool_pool *p, char out[SPOOL_ID_SIZE])
{
    int got = 0;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0) {
        /* the oldest first: IDs then still sort by arrival, roughly */
        memcpy(out, p->id[0], SPOOL_ID_SIZE);
        memmove(p->id[0], p->id[1], (size_t)(p->n - 1) * SPOOL_ID_SIZE);
        p->n--;
        got = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return got;
}

/* spool_pool_reserve - room for a slot about to join the pool, while fewer than LIMIT are in it
 * or on their way; 0, or -1 (the pool is full enough). */
static int spool_pool_reserve(struct spool_pool *p, int limit)
{
    int ok = 0;
    pthread_mutex_lock(&p->mu);
    if (p->n + p->reserved < limit) {
        p->reserved++;
        ok = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return ok ? 0 : -1;
}

/* spool_pool_release - a reserved slot ID joins the pool (ID not NULL) or never came to be. */
static void spool_pool_release(struct spool_pool *p, const char *id)
{
    pthread_mutex_lock(&p->mu);
    p->reserved--;
    if (id && p->n < SPOOL_POOL_MAX)
        memcpy(p->id[p->n++], id, SPOOL_ID_SIZE);
    pthread_mutex_unlock(&p->mu);
}

int spool_pool_put(struct spool *sp, int dirfd, const char *name, char out[SPOOL_ID_SIZE])
{
    if (spool_pool_reserve(&sp->pool, SPOOL_POOL_MAX) < 0) {
        errno = ENOSPC;
        return -1;
    }
    spool_new_id(sp, out);
    if (renameat(dirfd, name, sp->qfd[spool_id_hash(out)], out) < 0) {
        int e = errno;
        spool_pool_release(&sp->pool, NULL);
        errno = e;
        return -1;
    }
    return 0;
}

void spool_pool_publish(struct spool *sp, const char *id, int ok)
{
    if (!ok)
        unlinkat(sp->qfd[spool_id_hash(id)], id, 0);
    spool_pool_release(&sp->pool, ok ? id : NULL);
}

/* spool_slot_make - create queue/X/ID, with SPOOL_SLOT_PREALLOC zero bytes if PREALLOC; 0 or -1. */
static int spool_slot_make(struct spool *sp, const char *id, int prealloc)
{
    static const char zeros[SPOOL_SLOT_PREALLOC];
    int dfd = sp->qfd[spool_id_hash(id)];
    int fd = openat(dfd, id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int r = prealloc ? fs_write_all(fd, zeros, sizeof zeros) : 0;
    close(fd);
    if (r < 0)
        unlinkat(dfd, id, 0);
    return r;
}

/* spool_pool_fill_work - worker: make slots until SPOOL_POOL_FILL are free, then make them (data
 * and names) durable with one flush, and only then hand them out. */
static void spool_pool_fill_work(void *arg)
{
    struct spool *sp = arg;
    struct spool_pool *p = &sp->pool;
    char(*made)[SPOOL_ID_SIZE] = malloc(SPOOL_POOL_FILL * sizeof *made);
    int n = 0;
    pthread_mutex_lock(&p->mu);
    int prealloc = p->prealloc;
    /* an empty pool (start-up, or intake outran us) gets a small batch first, flushed and
     * handed out sooner: meanwhile every commit pays for creating its own file */
    int batch = p->n == 0 ? SPOOL_POOL_FIRST : SPOOL_POOL_FILL;
    pthread_mutex_unlock(&p->mu);
    while (made && n < batch && spool_pool_reserve(p, SPOOL_POOL_FILL) == 0) {
        spool_new_id(sp, made[n]);
        if (spool_slot_make(sp, made[n], prealloc) < 0) {
            spool_pool_release(p, NULL); /* ENOSPC etc.: commits create their own files */
            break;
        }
        n++;
    }
    int ok = n > 0 && syncfs(sp->dirfd) == 0;
    if (n > 0) { /* both under the lock: a reader sees the pair change together */
        pthread_mutex_lock(&p->mu);
        counter_add(CNT_SPOOL_FLUSHES, 1);
        p->flushes++;
        pthread_mutex_unlock(&p->mu);
    }
    for (int i = 0; i < n; i++) {
        if (!ok)
            unlinkat(sp->qfd[spool_id_hash(made[i])], made[i], 0);
        spool_pool_release(p, ok ? made[i] : NULL);
    }
    free(made);
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
        /* blocks written ahead are space taken from the queue: only on a roomy volume (a full
         * small one must still refuse mail with 452 when the write itself fails) */
        p->prealloc = sp->free_bytes - sp->minfree > SPOOL_SLOT_PREALLOC_MIN_FREE;
    }
    pthread_mutex_unlock(&p->mu);
    if (start)
        workers_submit(sp->io, spool_pool_fill_work, NULL, sp);
}
