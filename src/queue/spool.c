/*
 * spool.c - the spool on the data volume: opening it (directories, the lock
 * that keeps a second mtad out, purging tmp/, rebuilding the index and the
 * mqueue counters from queue/, quarantining unreadable files in corrupt/),
 * closing it, and the notification of queued messages. It calls down into the
 * other spool files and none of them calls it. Layout and format:
 * docs/spool-format.md.
 * Not here: intake and group commit (spool_intake.c), reading and removing
 * queued messages (spool_read.c), the envelope text (spool_envelope.c), the
 * free-space figure (spool_space.c), directory flushes (spool_dir.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/fsutil.h"
#include "mta/log.h"
#include "mta/privilege.h"
#include "mta/workers.h"
#include "sched_int.h"
#include "spool_int.h"

#define SPOOL_IO_THREADS 4
#define SPOOL_QUARANTINE_TRIES 1000

/* spool_seterr - *ERR = malloc'd formatted message. */
static void spool_seterr(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void spool_seterr(char **err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
}

/* spool_subdir - mkdirat + open a subdirectory of PARENT. */
static int spool_subdir(int parent, const char *name)
{
    if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
        return -1;
    return openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* spool_purge_tmp - remove what a previous run left in tmp/ (never acknowledged; also the pool
 * files "PNNNNNNNN" of versions before slots). */
static void spool_purge_tmp(struct spool *sp)
{
    int fd = dup(sp->tmpfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL; /* the dup shares the offset: rewind */
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    rewinddir(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(sp->tmpfd, de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n > 0)
        spool_fsync_dir(sp->tmpfd);
}

/* spool_quarantine - move DIRFD/NAME into corrupt/ under a free name; never deletes. */
static void spool_quarantine(struct spool *sp, int dirfd, const char *where, const char *name,
                             const char *why);

void spool_quarantine_queued(struct spool *sp, const char *id, const char *why)
{
    char where[64];
    int h = spool_id_hash(id);
    snprintf(where, sizeof where, "queue/%X", h);
    spool_quarantine(sp, sp->qfd[h], where, id, why);
    spool_fsync_dir(sp->qfd[h]);
    spool_fsync_dir(sp->corruptfd);
}

static void spool_quarantine(struct spool *sp, int dirfd, const char *where, const char *name,
                             const char *why)
{
    char dst[300];
    snprintf(dst, sizeof dst, "%s", name);
    for (int i = 1; i <= SPOOL_QUARANTINE_TRIES; i++) {
        if (renameat2(dirfd, name, sp->corruptfd, dst, RENAME_NOREPLACE) == 0) {
            log_warning("queue", "%s/%s: %s; moved to %s/corrupt/%s", where, name, why, sp->dir,
                        dst);
            return;
        }
        if (errno == EINVAL || errno == ENOSYS) {
            /* no RENAME_NOREPLACE on this file system: check, then rename */
            struct stat st;
            if (fstatat(sp->corruptfd, dst, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
                renameat(dirfd, name, sp->corruptfd, dst) == 0) {
                log_warning("queue", "%s/%s: %s; moved to %s/corrupt/%s", where, name, why, sp->dir,
                            dst);
                return;
            }
        } else if (errno != EEXIST) {
            break;
        }
        snprintf(dst, sizeof dst, "%s.%d", name, i);
    }
    log_warning("queue", "%s/%s: %s; cannot move it to corrupt/: %s (left in place)", where, name,
                why, strerror(errno));
}

/* spool_check_file - classify DIRFD/NAME (SPOOL_REC_*, spool_record.c); *SIZE for a message,
 * *WHY for a file that is none. */
static int spool_check_file(int dirfd, const char *name, long long *size, const char **why)
{
    int fd = fs_openat_noatime(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        *why = "cannot open";
        return SPOOL_REC_BAD;
    }
    struct stat st;
    struct spool_envelope *env = NULL;
    size_t hdrlen = 0;
    uint32_t bodycrc;
    int rc;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        rc = SPOOL_REC_BAD;
    } else {
        rc = spool_record_check(fd, name, (long long)st.st_size, &env, &hdrlen, &bodycrc, why);
    }
    if (rc == SPOOL_REC_OK || rc == SPOOL_REC_V1)
        *size = env->size;
    spool_envelope_free(env);
    close(fd);
    return rc;
}

/* --- the start-up scan ---
 * spool_open only lists the names in queue/H (no file is opened): the ID generator is then
 * above every name found, so no slot or message made from now on can share a name with a file
 * still to be checked, and files made after the listing are never checked. The files listed
 * are checked on a worker, SPOOL_SCAN_CHUNK at a time; the loop indexes each chunk's good
 * messages and tells the scheduler; the status files are checked after the last chunk, when
 * the index is complete. Until then listings and counts are partial (spool_scanning). */

#define SPOOL_SCAN_CHUNK 256

struct spool_scan_ent {
    char id[SPOOL_ID_SIZE];
    unsigned char h;  /* the directory it was listed in */
    unsigned char ok; /* a good message (queue files); its message is queued (status files) */
    long long size;
};

struct spool_scan {
    struct spool_scan_ent *msg, *st;
    size_t nmsg, msgcap, nst, stcap, pos, end;
    long long t0_us, delay_us;
    long recovered;
    int freed, quarantined;
    int walked; /* the start-up walk has given every file to mail_owner (privilege.h) */
    unsigned char dirty[SPOOL_NHASH];
};

/* spool_scan_push - append ID (listed in queue/H) to *V; 0 or -1 (out of memory). */
static int spool_scan_push(struct spool_scan_ent **v, size_t *n, size_t *cap, const char *id, int h)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        struct spool_scan_ent *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    struct spool_scan_ent *e = &(*v)[(*n)++];
    memcpy(e->id, id, SPOOL_ID_LEN);
    e->id[SPOOL_ID_LEN] = '\0';
    e->h = (unsigned char)h;
    e->ok = 0;
    e->size = 0;
    return 0;
}

/* spool_scan_list - list queue/H into the scan (names only); a name that is no queue ID goes to
 * corrupt/ now (rare, one rename). 0 or -1 (out of memory). */
static int spool_scan_list(struct spool *sp, struct spool_scan *sc, int h)
{
    int fd = dup(sp->qfd[h]);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL; /* the dup shares the offset: rewind */
    if (!d) {
        if (fd >= 0)
            close(fd);
        log_warning("queue", "cannot read %s/queue/%X: %s", sp->dir, h, strerror(errno));
        return 0;
    }
    rewinddir(d);
    char where[64];
    snprintf(where, sizeof where, "queue/%X", h);
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        size_t nl = strlen(name);
        if (nl == SPOOL_ID_LEN + 3 && strcmp(name + SPOOL_ID_LEN, ".st") == 0) {
            r = spool_scan_push(&sc->st, &sc->nst, &sc->stcap, name, h);
        } else if (spool_id_valid(name)) {
            spool_id_seen(&sp->idgen, name);
            r = spool_scan_push(&sc->msg, &sc->nmsg, &sc->msgcap, name, h);
        } else {
            spool_quarantine(sp, sp->qfd[h], where, name, "not a queue file name");
            sc->dirty[h] = 1;
            sc->quarantined++;
        }
    }
    closedir(d);
    return r;
}

/* spool_scan_chunk_work - worker: check the next chunk of listed files; free slots removed,
 * torn or bad files quarantined, good messages in the wrong directory moved. */
static void spool_scan_chunk_work(void *arg)
{
    struct spool *sp = arg;
    struct spool_scan *sc = sp->scan;
    for (size_t i = sc->pos; i < sc->end; i++) {
        struct spool_scan_ent *e = &sc->msg[i];
        const char *name = e->id;
        int h = e->h;
        char where[64];
        snprintf(where, sizeof where, "queue/%X", h);
        if (sc->delay_us > 0)
            usleep((useconds_t)sc->delay_us); /* a slow disk, for the tests */
        long long size = 0;
        const char *why = "not a queue file name";
        int rc = spool_check_file(sp->qfd[h], name, &size, &why);
        if (rc == SPOOL_REC_FREE) {
            /* a slot holding no message of its name (spool_pool.c): no mail, and its ID may
             * sort below messages recovered here, so it is not reused */
            if (unlinkat(sp->qfd[h], name, 0) == 0)
                sc->freed++;
            sc->dirty[h] = 1;
            continue;
        }
        if (rc == SPOOL_REC_TORN || rc == SPOOL_REC_BAD) {
            /* torn: a write cut short by a crash, never acknowledged, never delivered; kept */
            spool_quarantine(sp, sp->qfd[h], where, name, why);
            sc->dirty[h] = 1;
            sc->quarantined++;
            continue;
        }
        int want = spool_id_hash(name);
        if (want != h) {
            /* a good message in the wrong hash directory: put it where lookups go */
            sc->dirty[h] = 1;
            if (renameat2(sp->qfd[h], name, sp->qfd[want], name, RENAME_NOREPLACE) < 0) {
                spool_quarantine(sp, sp->qfd[h], where, name, "in the wrong hash directory");
                sc->quarantined++;
                continue;
            }
            /* its status file goes along (delivered recipients must stay delivered); moved
             * after the message, so a crash between the two leaves at worst a status file
             * without its message, quarantined later */
            char stname[SPOOL_ID_SIZE + 16];
            snprintf(stname, sizeof(stname), "%s.st", name);
            if (renameat(sp->qfd[h], stname, sp->qfd[want], stname) < 0 && errno != ENOENT)
                log_warning("queue", "%s/%s: cannot move it with its message: %s", where, stname,
                            strerror(errno));
            spool_fsync_dir(sp->qfd[want]);
        }
        e->ok = 1;
        e->size = size;
    }
}

/* spool_scan_status_work - worker: a status file whose message is not queued, or that cannot
 * be read, goes to corrupt/ too (the loop marked which messages are queued). */
static void spool_scan_status_work(void *arg)
{
    struct spool *sp = arg;
    struct spool_scan *sc = sp->scan;
    for (size_t i = 0; i < sc->nst; i++) {
        struct spool_scan_ent *e = &sc->st[i];
        char where[64], name[SPOOL_ID_SIZE + 16];
        snprintf(where, sizeof where, "queue/%X", e->h);
        snprintf(name, sizeof name, "%s.st", e->id);
        struct stat sb;
        if (fstatat(sp->qfd[e->h], name, &sb, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
            continue; /* removed with its message since, or moved along with it */
        struct spool_status st;
        if (!e->ok) {
            spool_quarantine(sp, sp->qfd[e->h], where, name, "status file without a message");
        } else if (spool_status_read(sp, e->id, &st) == EBADMSG) {
            /* a damaged status (or a count out of range): its message is delivered to
             * every recipient, as without one; the file is kept for inspection */
            spool_quarantine(sp, sp->qfd[e->h], where, name, "unreadable status file");
        } else {
            free(st.slots);
            continue;
        }
        sc->dirty[e->h] = 1;
        sc->quarantined++;
    }
    int any = 0;
    for (int h = 0; h < SPOOL_NHASH; h++)
        if (sc->dirty[h]) {
            spool_fsync_dir(sp->qfd[h]);
            any = 1;
        }
    if (any)
        spool_fsync_dir(sp->corruptfd);
}

/* spool_scan_free - the scan is over (or stopped): free it. */
static void spool_scan_free(struct spool *sp)
{
    if (!sp->scan)
        return;
    free(sp->scan->msg);
    free(sp->scan->st);
    free(sp->scan);
    sp->scan = NULL;
}

/* spool_scan_status_done - loop: the scan is complete. */
static void spool_scan_status_done(void *arg)
{
    struct spool *sp = arg;
    struct spool_scan *sc = sp->scan;
    sp->scan_inflight = 0;
    if (sc->freed)
        log_mail("queue", "removed %d free slot%s (no mail)", sc->freed, sc->freed == 1 ? "" : "s");
    /* an empty queue says nothing, as Postfix's start does: the log tools (test_log_tools.py)
     * count every line they cannot parse */
    if (sc->recovered || sc->quarantined)
        log_mail("queue", "recovered %ld message%s in %.3f s%s", sc->recovered,
                 sc->recovered == 1 ? "" : "s", (double)(clock_now_us() - sc->t0_us) / 1e6,
                 sc->quarantined ? "; see corrupt/" : "");
    spool_scan_free(sp);
}

static void spool_scan_chunk_done(void *arg);

/* spool_scan_walk_work - worker: wait a little for the start-up walk over the files (a file
 * still root's could not be opened, and would be quarantined as unreadable). */
static void spool_scan_walk_work(void *arg)
{
    struct spool *sp = arg;
    sp->scan->walked = priv_walk_wait(100);
}

static void spool_scan_walk_done(void *arg);

/* spool_scan_next - loop: start the next chunk, or the status files after the last one; the
 * first only once the start-up walk is over (checked in steps, so a stop need not wait). */
static void spool_scan_next(struct spool *sp)
{
    struct spool_scan *sc = sp->scan;
    if (sp->scan_stop) {
        spool_scan_free(sp); /* shutting down: what is unchecked stays for the next start */
        return;
    }
    sp->scan_inflight = 1;
    if (!sc->walked) {
        workers_submit(sp->io, spool_scan_walk_work, spool_scan_walk_done, sp);
        return;
    }
    if (sc->pos < sc->nmsg) {
        sc->end = sc->pos + SPOOL_SCAN_CHUNK < sc->nmsg ? sc->pos + SPOOL_SCAN_CHUNK : sc->nmsg;
        workers_submit(sp->io, spool_scan_chunk_work, spool_scan_chunk_done, sp);
        return;
    }
    for (size_t i = 0; i < sc->nst; i++)
        sc->st[i].ok = spool_index_find(&sp->index, sc->st[i].id) != NULL;
    workers_submit(sp->io, spool_scan_status_work, spool_scan_status_done, sp);
}

/* spool_scan_walk_done - loop: the wait for the walk is over, finished or not. */
static void spool_scan_walk_done(void *arg)
{
    struct spool *sp = arg;
    sp->scan_inflight = 0;
    spool_scan_next(sp);
}

/* spool_scan_chunk_done - loop: index a chunk's good messages and announce them. */
static void spool_scan_chunk_done(void *arg)
{
    struct spool *sp = arg;
    struct spool_scan *sc = sp->scan;
    sp->scan_inflight = 0;
    for (size_t i = sc->pos; i < sc->end; i++) {
        struct spool_scan_ent *e = &sc->msg[i];
        if (!e->ok || spool_index_find(&sp->index, e->id))
            continue;
        spool_queued(sp, e->id, e->size);
        sc->recovered++;
        if (sp->notify_cb)
            sp->notify_cb(sp->notify_arg, e->id, NULL, NULL);
    }
    sc->pos = sc->end;
    spool_scan_next(sp);
}

int spool_scanning(const struct spool *sp)
{
    return sp && sp->scan != NULL;
}

long spool_expected(const struct spool *sp)
{
    return (long)sp->index.tab.count + (sp->scan ? (long)(sp->scan->nmsg - sp->scan->pos) : 0);
}

/* --- notification --- */

void spool_set_notify(struct spool *sp,
                      void (*cb)(void *arg, const char *id, struct spool_envelope *env,
                                 struct evbuffer *content),
                      void *arg)
{
    sp->notify_cb = cb;
    sp->notify_arg = arg;
}

/* --- open / close --- */

struct spool *spool_open(struct event_base *base, const struct conf *conf, char **err)
{
    if (err)
        *err = NULL;
    if (!conf->data_volume || !*conf->data_volume) {
        spool_seterr(err, "data_volume is not set");
        return NULL;
    }
    struct spool *sp = calloc(1, sizeof *sp);
    if (!sp) {
        spool_seterr(err, "out of memory");
        return NULL;
    }
    sp->base = base;
    pthread_mutex_init(&sp->cmu, NULL);
    pthread_cond_init(&sp->ccv, NULL);
    pthread_mutex_init(&sp->idmu, NULL);
    spool_pool_init(&sp->pool);
    sp->dirfd = sp->tmpfd = sp->corruptfd = sp->lockfd = -1;
    STAILQ_INIT(&sp->rm_wait);
    STAILQ_INIT(&sp->rm_batch);
    STAILQ_INIT(&sp->cq);
    for (int h = 0; h < SPOOL_NHASH; h++)
        sp->qfd[h] = -1;
    sp->minfree = conf->queue_minfree;
    sp->dir = strdup(conf->data_volume);
    if (!sp->dir)
        goto fail_errno;
    /* "." when mtad entered the data volume (privilege.h): the path above may be root-only */
    const char *open_dir = priv_data_volume_path(sp->dir);
    if (fs_mkdir_p(open_dir, 0700) < 0) {
        spool_seterr(err, "cannot create data volume %s: %s", sp->dir, strerror(errno));
        goto fail;
    }
    sp->dirfd = open(open_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0)
        goto fail_errno;
    /* for spool_gone; NULL (no path check) when a relative path cannot be resolved */
    sp->abspath = sp->dir[0] == '/' ? strdup(sp->dir) : realpath(sp->dir, NULL);
    /* read-only: flock needs no more, and a descriptor held open for writing for the daemon's
     * life would keep an administrator from remounting the volume read-only (EBUSY) */
    sp->lockfd = openat(sp->dirfd, "lock", O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lockfd < 0)
        goto fail_errno;
    if (flock(sp->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            spool_seterr(err, "data volume %s is in use by another mtad", sp->dir);
        else
            spool_seterr(err, "cannot lock data volume %s: %s", sp->dir, strerror(errno));
        goto fail;
    }
    int qdir = -1;
    if ((sp->tmpfd = spool_subdir(sp->dirfd, "tmp")) < 0 ||
        (sp->corruptfd = spool_subdir(sp->dirfd, "corrupt")) < 0 ||
        (qdir = spool_subdir(sp->dirfd, "queue")) < 0)
        goto fail_errno;
    for (int h = 0; h < SPOOL_NHASH; h++) {
        char name[4];
        snprintf(name, sizeof name, "%X", h);
        if ((sp->qfd[h] = spool_subdir(qdir, name)) < 0) {
            close(qdir);
            goto fail_errno;
        }
    }
    spool_fsync_dir(qdir); /* the hash directories themselves must survive a crash */
    close(qdir);
    spool_fsync_dir(sp->dirfd);

    spool_purge_tmp(sp);
    sp->scan = calloc(1, sizeof *sp->scan);
    if (!sp->scan)
        goto fail_errno;
    sp->scan->t0_us = clock_now_us();
    const char *delay = getenv("MTA_TEST_SCAN_DELAY_US");
    sp->scan->delay_us = delay ? atoll(delay) : 0;
    for (int h = 0; h < SPOOL_NHASH; h++)
        if (spool_scan_list(sp, sp->scan, h) < 0)
            goto fail_errno;
    /* the index will hold what was listed: sized now, before the loop runs (best effort) */
    (void)htab_reserve(&sp->index.tab, sp->scan->nmsg);

    if (spool_space_init(sp) < 0)
        goto fail_errno;
    sp->io = workers_new(base, SPOOL_IO_THREADS, "spool-io");
    if (!sp->io || spool_committer_start(sp) < 0)
        goto fail_errno;
    spool_pool_want(sp); /* slots for the first messages */
    sp->space_ev = event_new(base, -1, EV_PERSIST, spool_space_cb, sp);
    sp->rm_ev = evtimer_new(base, spool_remove_gather_cb, sp);
    struct timeval second = {1, 0};
    if (!sp->space_ev || !sp->rm_ev || event_add(sp->space_ev, &second) < 0)
        goto fail_errno;
    spool_scan_next(sp); /* the files listed are checked in the background */
    return sp;
fail_errno:
    spool_seterr(err, "data volume %s: %s", sp->dir ? sp->dir : conf->data_volume, strerror(errno));
fail:
    spool_close(sp);
    return NULL;
}

int spool_drain(struct spool *sp)
{
    int n = 0;

    if (sp) {
        sp->scan_stop = 1; /* shutting down: the scan's chunk in flight is the last */
        spool_remove_flush(sp);
    }
    while (sp && sp->io && sp->busy > 0)
        n += workers_run_done(sp->io, 1000);
    return n;
}

void spool_close(struct spool *sp)
{
    if (!sp)
        return;
    if (sp->io)
        spool_remove_flush(sp); /* removals still gathering start now */
    if (sp->rm_ev)
        event_free(sp->rm_ev);
    sp->rm_ev = NULL;
    if (sp->space_ev)
        event_free(sp->space_ev);
    sp->scan_stop = 1;
    while (sp->io && sp->scan_inflight)
        workers_run_done(sp->io, 1000); /* the chunk in flight ends; no next one starts */
    spool_scan_free(sp);
    if (sp->io) {
        /* Every commit, abort, write and remove in flight finishes, with its done(). */
        while (sp->busy > 0)
            workers_run_done(sp->io, 1000);
    }
    spool_committer_stop(sp);
    if (sp->io)
        workers_free(sp->io);
    spool_msg_drop_live(sp);
    long long bytes = 0;
    size_t n = 0;
    struct spool_index_entry *v = spool_index_snapshot(&sp->index, &n);
    for (size_t i = 0; v && i < n; i++)
        bytes += v[i].size;
    free(v);
    counter_add(CNT_MQUEUE_MESSAGES, -(long long)sp->index.tab.count);
    counter_add(CNT_MQUEUE_BYTES, -bytes);
    spool_index_free(&sp->index);
    int fds[] = {sp->tmpfd, sp->corruptfd, sp->lockfd, sp->dirfd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (int h = 0; h < SPOOL_NHASH; h++)
        if (sp->qfd[h] >= 0)
            close(sp->qfd[h]);
    pthread_mutex_destroy(&sp->cmu);
    pthread_cond_destroy(&sp->ccv);
    pthread_mutex_destroy(&sp->idmu);
    spool_pool_destroy(&sp->pool);
    free(sp->abspath);
    free(sp->dir);
    free(sp);
}
