/*
 * spool_space.c - the data volume's state as intake sees it: free space
 * (statvfs on a worker every second, or MTA_TEST_FREE_BYTES in tests), the
 * queue_minfree check, and whether the volume went read-only or away (intake
 * refuses mail meanwhile).
 * Not here: opening the spool (spool.c), what is refused and how (callers).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <event2/event.h>

#include "mta/log.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "spool_int.h"

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
void spool_space_cb(evutil_socket_t fd, short what, void *arg)
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

int spool_space_init(struct spool *sp)
{
    spool_test_free(sp);
    return spool_statvfs(sp->dirfd, &sp->free_bytes, &sp->total_bytes, NULL);
}
