/*
 * spool.c - the spool on the data volume: opening it (directories, the lock
 * that keeps a second mtad out, purging tmp/, rebuilding the index and the
 * mqueue counters from queue/, quarantining unreadable files in corrupt/),
 * closing it, the free-space figure (statvfs in a worker every second) and the
 * notification of queued messages. Layout and format: docs/spool-format.md.
 * Not here: intake and group commit (spool_intake.c), reading and removing
 * queued messages (spool_read.c), the envelope text (spool_envelope.c).
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
#include <sys/statvfs.h>
#include <unistd.h>

#include <event2/event.h>

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

int spool_fsync_dir(int fd)
{
    return fsync(fd) < 0 ? errno : 0;
}

int spool_flush_hashdirs(struct spool *sp, const int touched[SPOOL_NHASH])
{
    int ntouched = 0, last = 0;
    for (int h = 0; h < SPOOL_NHASH; h++)
        if (touched[h]) {
            ntouched++;
            last = h;
        }
    if (ntouched == 0)
        return -1;
    if (ntouched == 1)
        return spool_fsync_dir(sp->qfd[last]);
    return syncfs(sp->dirfd) < 0 ? errno : 0;
}

/* spool_subdir - mkdirat + open a subdirectory of PARENT. */
static int spool_subdir(int parent, const char *name)
{
    if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
        return -1;
    return openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* spool_purge_tmp - remove what a previous run left in tmp/ (never acknowledged), except the
 * recycled files the pool takes back. */
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
        unsigned seq;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (spool_pool_is_name(de->d_name, &seq) && spool_pool_adopt(&sp->pool, seq))
            continue; /* a recycled file: reused, never held queued mail */
        if (unlinkat(sp->tmpfd, de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n > 0)
        spool_fsync_dir(sp->tmpfd);
}

/* spool_quarantine - move DIRFD/NAME into corrupt/ under a free name; never deletes. */
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

/* spool_check_file - 0 when DIRFD/NAME is a complete queue file of ID NAME; else a reason. */
static const char *spool_check_file(int dirfd, const char *name, long long *size)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return "cannot open";
    struct stat st;
    struct spool_envelope *env = NULL;
    size_t hdrlen = 0;
    const char *why = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (spool_env_read_fd(fd, &env, &hdrlen) != 0)
        why = "unreadable envelope (bad version, no end marker or truncated)";
    else if (strcmp(env->id, name) != 0)
        why = "envelope names another queue ID";
    else if ((long long)hdrlen + env->size != (long long)st.st_size)
        why = "message size does not match the envelope (truncated)";
    else
        *size = env->size;
    spool_envelope_free(env);
    close(fd);
    return why;
}

/* spool_scan_dir - recover queue/H: index good messages, quarantine the rest. */
static void spool_scan_dir(struct spool *sp, int h)
{
    int fd = dup(sp->qfd[h]);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL; /* the dup shares the offset: rewind */
    if (!d) {
        if (fd >= 0)
            close(fd);
        log_warning("queue", "cannot read %s/queue/%X: %s", sp->dir, h, strerror(errno));
        return;
    }
    rewinddir(d);
    char where[64];
    snprintf(where, sizeof where, "queue/%X", h);
    int moved = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        size_t nl = strlen(name);
        if (nl == SPOOL_ID_LEN + 3 && strcmp(name + SPOOL_ID_LEN, ".st") == 0)
            continue; /* status files: checked once the index is complete */
        long long size = 0;
        const char *why = spool_id_valid(name) ? spool_check_file(sp->qfd[h], name, &size)
                                               : "not a queue file name";
        if (why) {
            spool_quarantine(sp, sp->qfd[h], where, name, why);
            moved = 1;
            continue;
        }
        int want = spool_id_hash(name);
        if (want != h) {
            /* a good message in the wrong hash directory: put it where lookups go */
            if (renameat2(sp->qfd[h], name, sp->qfd[want], name, RENAME_NOREPLACE) < 0) {
                spool_quarantine(sp, sp->qfd[h], where, name, "in the wrong hash directory");
                moved = 1;
                continue;
            }
            /* its status file goes along (delivered recipients must stay delivered);
             * the status is moved after the message so a crash between the two
             * leaves at worst a status file without its message, quarantined later */
            char stname[SPOOL_ID_LEN + 4];
            snprintf(stname, sizeof(stname), "%s.st", name);
            if (renameat(sp->qfd[h], stname, sp->qfd[want], stname) < 0 && errno != ENOENT)
                log_warning("queue", "%s/%s: cannot move it with its message: %s", where, stname,
                            strerror(errno));
            spool_fsync_dir(sp->qfd[want]);
            moved = 1;
        }
        spool_id_seen(&sp->idgen, name);
        if (strcmp(name, sp->recovered_max) > 0)
            memcpy(sp->recovered_max, name, SPOOL_ID_LEN + 1); /* a valid ID: 16 chars */
        spool_queued(sp, name, size);
    }
    closedir(d);
    if (moved) {
        spool_fsync_dir(sp->qfd[h]);
        spool_fsync_dir(sp->corruptfd);
    }
}

/* spool_scan_status - a status file whose message is not queued, or that cannot be read,
 * goes to corrupt/ too. */
static void spool_scan_status(struct spool *sp, int h)
{
    int fd = dup(sp->qfd[h]);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL; /* the dup shares the offset: rewind */
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    rewinddir(d);
    char where[64];
    snprintf(where, sizeof where, "queue/%X", h);
    struct dirent *de;
    int moved = 0;
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl != SPOOL_ID_LEN + 3 || strcmp(de->d_name + SPOOL_ID_LEN, ".st") != 0)
            continue;
        char id[SPOOL_ID_SIZE];
        memcpy(id, de->d_name, SPOOL_ID_LEN);
        id[SPOOL_ID_LEN] = '\0';
        struct spool_status st;
        if (!spool_index_find(&sp->index, id)) {
            spool_quarantine(sp, sp->qfd[h], where, de->d_name, "status file without a message");
            moved = 1;
        } else if (spool_status_read(sp, id, &st) == EBADMSG) {
            /* a damaged status (or a count out of range): its message is delivered to
             * every recipient, as without one; the file is kept for inspection */
            spool_quarantine(sp, sp->qfd[h], where, de->d_name, "unreadable status file");
            moved = 1;
        } else {
            free(st.slots);
        }
    }
    closedir(d);
    if (moved) {
        spool_fsync_dir(sp->qfd[h]);
        spool_fsync_dir(sp->corruptfd);
    }
}

void spool_queued(struct spool *sp, const char *id, long long size)
{
    if (spool_index_find(&sp->index, id))
        return;
    if (spool_index_add(&sp->index, id, size) < 0)
        log_warning("queue", "%s: out of memory for the queue index", id);
    counter_add(CNT_MQUEUE_MESSAGES, 1);
    counter_add(CNT_MQUEUE_BYTES, size);
}

/* --- free space --- */

struct spool_space_job {
    struct spool *sp;
    long long free_bytes, total_bytes;
    int ok;
    int rdonly, gone;
};

/* spool_statvfs - free (available to us) and total bytes of the data volume, and whether it is
 * mounted read-only (RDONLY may be NULL). */
static int spool_statvfs(int fd, long long *free_bytes, long long *total_bytes, int *rdonly)
{
    struct statvfs v;
    if (fstatvfs(fd, &v) < 0)
        return -1;
    *free_bytes = (long long)v.f_bavail * (long long)v.f_frsize;
    *total_bytes = (long long)v.f_blocks * (long long)v.f_frsize;
    if (rdonly)
        *rdonly = (v.f_flag & ST_RDONLY) != 0;
    return 0;
}

/* spool_unmounted - 1 when the mount that FD lies on is no longer in our mount table (lazily
 * unmounted: the descriptors still work, on a volume nobody else sees); 0 when it is, or unknown.
 * Needs no permission on the path, which after the privilege drop may be root-only. */
static int spool_unmounted(int fd)
{
#ifdef STATX_MNT_ID
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) < 0 || !(sx.stx_mask & STATX_MNT_ID))
        return 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(line, &end, 10);
        found = end != line && errno == 0 && id == sx.stx_mnt_id;
        while (!strchr(line, '\n') && fgets(line, sizeof line, f))
            ; /* the rest of an overlong line */
    }
    fclose(f);
    return !found;
#else
    (void)fd;
    return 0;
#endif
}

/* spool_gone - 1 when the data volume went away under the directory DIRFD holds open: removed,
 * or PATH leads elsewhere (renamed away, unmounted) or nowhere. When PATH cannot be looked up (a
 * root-only parent after the privilege drop), the mount table still tells an unmount. The path
 * check also sees it come back (renamed back, the same file system mounted again). */
static int spool_gone(int dirfd, const char *path)
{
    struct stat held, now;
    if (fstat(dirfd, &held) < 0)
        return 0;
    if (held.st_nlink == 0)
        return 1; /* removed */
    if (path && stat(path, &now) == 0)
        return now.st_dev != held.st_dev || now.st_ino != held.st_ino;
    if (path && (errno == ENOENT || errno == ENOTDIR))
        return 1;
    return spool_unmounted(dirfd);
}

static void spool_space_work(void *arg)
{
    struct spool_space_job *j = arg;
    j->ok = spool_statvfs(j->sp->dirfd, &j->free_bytes, &j->total_bytes, &j->rdonly) == 0;
    j->gone = spool_gone(j->sp->dirfd, j->sp->abspath);
}

/* spool_space_done - loop: take the new figures; a volume that became read-only or went away,
 * or came back, is logged once per change (intake refuses mail meanwhile, spool_unavailable). */
static void spool_space_done(void *arg)
{
    struct spool_space_job *j = arg;
    struct spool *sp = j->sp;
    sp->statvfs_running = 0;
    if (j->ok) {
        sp->free_bytes = j->free_bytes;
        sp->total_bytes = j->total_bytes;
        if (j->rdonly != sp->rdonly) {
            if (j->rdonly)
                log_warning("queue",
                            "data volume %s is read-only: mail is refused until it is "
                            "writable again",
                            sp->dir);
            else
                log_warning("queue", "data volume %s is writable again: accepting mail", sp->dir);
            sp->rdonly = j->rdonly;
        }
    }
    if (j->gone != sp->gone) {
        if (j->gone)
            log_warning("queue",
                        "data volume %s is gone (removed, renamed away or unmounted): "
                        "mail is refused until it is back",
                        sp->dir);
        else
            log_warning("queue", "data volume %s is back: accepting mail", sp->dir);
        sp->gone = j->gone;
    }
    free(j);
}

const char *spool_unavailable(const struct spool *sp)
{
    if (sp->gone)
        return "the data volume is gone";
    if (sp->rdonly)
        return "the data volume is read-only";
    return NULL;
}

/* spool_space_cb - every second: measure free space off the loop. */
static void spool_space_cb(evutil_socket_t fd, short what, void *arg)
{
    struct spool *sp = arg;
    if (sp->statvfs_running)
        return;
    struct spool_space_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->sp = sp;
    sp->statvfs_running = 1;
    workers_submit(sp->io, spool_space_work, spool_space_done, j);
}

/* spool_test_free - MTA_TEST_FREE_BYTES=FREE[/TOTAL]: a fixed free-space figure (tests only). */
static void spool_test_free(struct spool *sp)
{
    sp->test_free = sp->test_total = -1;
    const char *s = getenv("MTA_TEST_FREE_BYTES");
    if (!s || !*s)
        return;
    char *end;
    long long f = strtoll(s, &end, 10);
    if (end == s || f < 0)
        return;
    sp->test_free = f;
    if (*end == '/') {
        long long t = strtoll(end + 1, &end, 10);
        if (t > 0)
            sp->test_total = t;
    }
    log_warning("queue", "MTA_TEST_FREE_BYTES is set: free space figures are fake (tests only)");
}

int spool_space_ok(const struct spool *sp, long long size)
{
    long long free_bytes = sp->test_free >= 0 ? sp->test_free : sp->free_bytes;
    double need = 1.5 * (double)(size > 0 ? size : 0);
    return (double)free_bytes - (double)sp->minfree > need;
}

double spool_free_percent(const struct spool *sp)
{
    long long free_bytes = sp->test_free >= 0 ? sp->test_free : sp->free_bytes;
    long long total = sp->test_total > 0 ? sp->test_total : sp->total_bytes;
    if (total <= 0)
        return 0.0;
    double p = 100.0 * (double)free_bytes / (double)total;
    return p < 0 ? 0.0 : p > 100 ? 100.0 : p;
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

/* spool_notify_recovered_cb - first loop turn after open: announce every recovered message. */
static void spool_notify_recovered_cb(evutil_socket_t fd, short what, void *arg)
{
    struct spool *sp = arg;
    if (!sp->notify_cb)
        return;
    size_t n;
    struct spool_index_entry *v = spool_index_snapshot(&sp->index, &n);
    for (size_t i = 0; v && i < n; i++) {
        /* IDs above the last recovered one were committed since and already announced */
        if (strcmp(v[i].id, sp->recovered_max) > 0)
            break;
        if (spool_index_find(&sp->index, v[i].id))
            sp->notify_cb(sp->notify_arg, v[i].id, NULL, NULL);
    }
    free(v);
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
    spool_pool_init(&sp->pool);
    sp->dirfd = sp->tmpfd = sp->corruptfd = sp->lockfd = -1;
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
    for (int h = 0; h < SPOOL_NHASH; h++)
        spool_scan_dir(sp, h);
    for (int h = 0; h < SPOOL_NHASH; h++)
        spool_scan_status(sp, h);

    spool_test_free(sp);
    if (spool_statvfs(sp->dirfd, &sp->free_bytes, &sp->total_bytes, NULL) < 0)
        goto fail_errno;
    sp->io = workers_new(base, SPOOL_IO_THREADS, "spool-io");
    if (!sp->io || spool_committer_start(sp) < 0)
        goto fail_errno;
    sp->space_ev = event_new(base, -1, EV_PERSIST, spool_space_cb, sp);
    sp->rm_ev = evtimer_new(base, spool_remove_gather_cb, sp);
    sp->notify_ev = evtimer_new(base, spool_notify_recovered_cb, sp);
    struct timeval second = {1, 0}, now = {0, 0};
    if (!sp->space_ev || !sp->notify_ev || !sp->rm_ev || event_add(sp->space_ev, &second) < 0 ||
        event_add(sp->notify_ev, &now) < 0)
        goto fail_errno;
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

    if (sp)
        spool_remove_flush(sp);
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
    if (sp->notify_ev)
        event_free(sp->notify_ev);
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
    spool_pool_destroy(&sp->pool);
    free(sp->abspath);
    free(sp->dir);
    free(sp);
}
