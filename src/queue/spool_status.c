/*
 * spool_status.c - the per-message status file "queue/X/ID.st": which delivery
 * slots (recipients, then cc_mta copies) are done, how many attempts were made
 * and when the next retry is due. Written by tmp + fsync + rename + directory
 * fsync, so after a crash it is either the old or the new version, never torn.
 * It exists only once some slot is final (or the message was held);
 * spool_remove deletes it with the message.
 * Before that, a deferral's retry time and attempt count go where Postfix keeps
 * its retry time, in the queue file's own modification time: seconds = the next
 * retry, nanoseconds = the attempts. No file is created, so a deferred queue
 * costs one inode per message, not two (creating inodes is most of the disk
 * work of a deferral). Such a time is later than the file's change time, which
 * no write of the file can give (a write sets both), so it is never mistaken
 * for one; a rename or chown after it only moves the change time, and once the
 * retry time has passed that way the message is simply due. Not flushed:
 * losing it costs an early retry, as losing a status file does.
 * Not here: the scheduling decisions (sched.c) or the message file (spool_*.c).
 */
#include "mta/fsutil.h"
#include "mta/text.h"
#include "sched_int.h"
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATUS_VERSION_LINE "MTA-STATUS 1"
#define STATUS_MAX (1024 * 1024)           /* a status file larger than this is corrupt */
#define STATUS_TIME_MAX 253402300799ULL    /* next retry: at most the end of the year 9999 */
#define STATUS_MARK_ATTEMPTS_MAX 999999999 /* the nanoseconds of a modification time */

char *spool_status_encode(const struct spool_status *st, size_t *len)
{
    size_t cap = 128 + (size_t)st->nslots;
    char *buf = malloc(cap);
    int n;

    if (!buf)
        return NULL;
    /* "hold 1" only on hold: the file of a message never held reads as before */
    n = snprintf(buf, cap, STATUS_VERSION_LINE "\nattempts %d\nnext %lld\n%sslots ", st->attempts,
                 st->next_retry, st->hold ? "hold 1\n" : "");
    if (n < 0 || (size_t)n >= cap) {
        free(buf);
        return NULL;
    }
    memcpy(buf + n, st->slots, (size_t)st->nslots);
    n += st->nslots;
    memcpy(buf + n, "\nend\n", 5);
    *len = (size_t)n + 5;
    return buf;
}

/* spool_status_line - the next line of TEXT at *POS (without '\n'), or NULL at the end. */
static const char *spool_status_line(const char *text, size_t len, size_t *pos, size_t *llen)
{
    const char *p, *nl;

    if (*pos >= len)
        return NULL;
    p = text + *pos;
    nl = memchr(p, '\n', len - *pos);
    if (!nl)
        return NULL; /* an unterminated line: the file is torn or foreign */
    *llen = (size_t)(nl - p);
    *pos += *llen + 1;
    return p;
}

int spool_status_decode(const char *text, size_t len, struct spool_status *st)
{
    size_t pos = 0, ll;
    const char *l;
    int have_end = 0, have_attempts = 0, have_next = 0, have_hold = 0;

    memset(st, 0, sizeof(*st));
    l = spool_status_line(text, len, &pos, &ll);
    if (!l || ll != strlen(STATUS_VERSION_LINE) || memcmp(l, STATUS_VERSION_LINE, ll) != 0)
        return -1;
    while ((l = spool_status_line(text, len, &pos, &ll))) {
        unsigned long long v;
        if (ll == 3 && memcmp(l, "end", 3) == 0) {
            have_end = 1;
            break;
        }
        if (ll >= 9 && memcmp(l, "attempts ", 9) == 0) {
            /* numbers from disk: checked, in range, or the file is unreadable */
            if (have_attempts++ || text_parse_u64(l + 9, ll - 9, STATUS_ATTEMPTS_MAX, &v) < 0)
                goto bad;
            st->attempts = (int)v;
        } else if (ll >= 5 && memcmp(l, "next ", 5) == 0) {
            if (have_next++ || text_parse_u64(l + 5, ll - 5, STATUS_TIME_MAX, &v) < 0)
                goto bad;
            st->next_retry = (long long)v;
        } else if (ll >= 5 && memcmp(l, "hold ", 5) == 0) {
            if (have_hold++ || text_parse_u64(l + 5, ll - 5, 1, &v) < 0)
                goto bad;
            st->hold = (int)v;
        } else if (ll >= 6 && memcmp(l, "slots ", 6) == 0) {
            if (st->slots)
                goto bad; /* twice */
            size_t i;
            free(st->slots);
            st->nslots = (int)(ll - 6);
            st->slots = malloc(ll - 6 + 1);
            if (!st->slots)
                return -1;
            memcpy(st->slots, l + 6, ll - 6);
            for (i = 0; i < ll - 6; i++)
                if (st->slots[i] != SCHED_SLOT_PENDING && st->slots[i] != SCHED_SLOT_SENT &&
                    st->slots[i] != SCHED_SLOT_BOUNCED)
                    st->slots[i] = SCHED_SLOT_PENDING; /* unknown: deliver (at least once) */
        }
        /* unknown lines are ignored: a newer version may add some */
    }
    if (!have_end || !st->slots)
        goto bad;
    return 0;
bad:
    free(st->slots);
    st->slots = NULL;
    return -1;
}

/* spool_status_mark - keep a status with every slot pending in the modification time of ID's
 * queue file (the head of this file says why); 0 or errno (ENOENT: the message is gone). */
static int spool_status_mark(int qfd, const char *id, const struct spool_status *st)
{
    struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, {0, 0}};
    ts[1].tv_sec = (time_t)(st->next_retry > 0 ? st->next_retry : 0);
    if (st->attempts > 0)
        ts[1].tv_nsec =
            st->attempts < STATUS_MARK_ATTEMPTS_MAX ? st->attempts : STATUS_MARK_ATTEMPTS_MAX;
    return utimensat(qfd, id, ts, AT_SYMLINK_NOFOLLOW) < 0 ? errno : 0;
}

/* spool_status_unmark - the status kept in ID's modification time, if there is one: 0 and *ST
 * (no slots: every one pending), or ENOENT. */
static int spool_status_unmark(int qfd, const char *id, struct spool_status *st)
{
    struct stat sb;
    if (fstatat(qfd, id, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno;
    if (!S_ISREG(sb.st_mode) || sb.st_mtim.tv_sec < sb.st_ctim.tv_sec ||
        (sb.st_mtim.tv_sec == sb.st_ctim.tv_sec && sb.st_mtim.tv_nsec <= sb.st_ctim.tv_nsec))
        return ENOENT; /* the time of a write (or a retry time already passed at a rename) */
    st->slots = malloc(1);
    if (!st->slots)
        return ENOMEM;
    st->nslots = 0;
    st->next_retry = (long long)sb.st_mtim.tv_sec;
    st->attempts = (int)sb.st_mtim.tv_nsec; /* 0 on a file system without nanoseconds */
    return 0;
}

int spool_status_write(struct spool *sp, const char *id, const struct spool_status *st)
{
    char tmpname[SPOOL_ID_SIZE + 16], name[SPOOL_ID_SIZE + 8];
    size_t len;
    char *text;
    int fd, err = 0, qfd, durable = 0;

    if (!spool_id_valid(id))
        return EINVAL;
    /* Only a final slot must survive a crash (else it is delivered again). A status with
     * every slot pending holds just the retry time and count, rewritten at each deferral:
     * it skips both flushes (a deferred queue would cost two per message and retry), since
     * losing it, or finding it torn and quarantined at start, costs an early retry. */
    for (int i = 0; i < st->nslots; i++)
        if (st->slots[i] != SCHED_SLOT_PENDING)
            durable = 1;
    /* A hold must survive a crash too (a torn file read as "no status" would deliver the
     * held message): every write of a held message is flushed, and so is a release. */
    if (st->hold || st->sync)
        durable = 1;
    qfd = sp->qfd[spool_id_hash(id)];
    if (!durable) {
        snprintf(name, sizeof(name), "%s.st", id);
        if (faccessat(qfd, name, F_OK, 0) < 0 && errno == ENOENT)
            return spool_status_mark(qfd, id, st);
    }
    text = spool_status_encode(st, &len);
    if (!text)
        return ENOMEM;
    snprintf(tmpname, sizeof(tmpname), "%s.st.tmp", id);
    snprintf(name, sizeof(name), "%s.st", id);
    fd = openat(sp->tmpfd, tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(text);
        return errno;
    }
    if (fs_write_all(fd, text, len) < 0)
        err = errno;
    free(text);
    if (!err && durable && fsync(fd) < 0)
        err = errno;
    close(fd);
    /* the message may have been removed meanwhile (delete, last recipient done):
     * then the status must not outlive it */
    if (!err && faccessat(qfd, id, F_OK, 0) < 0)
        err = errno;
    if (!err && renameat(sp->tmpfd, tmpname, qfd, name) < 0)
        err = errno;
    if (err)
        unlinkat(sp->tmpfd, tmpname, 0);
    else if (durable)
        err = spool_fsync_dir(qfd);
    return err;
}

int spool_status_read(struct spool *sp, const char *id, struct spool_status *st)
{
    char name[SPOOL_ID_SIZE + 8];
    struct stat sb;
    char *buf;
    ssize_t n;
    size_t got = 0;
    int fd, rc;

    memset(st, 0, sizeof(*st));
    if (!spool_id_valid(id))
        return EINVAL;
    snprintf(name, sizeof(name), "%s.st", id);
    fd = fs_openat_noatime(sp->qfd[spool_id_hash(id)], name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return spool_status_unmark(sp->qfd[spool_id_hash(id)], id, st);
    if (fd < 0)
        return errno;
    if (fstat(fd, &sb) < 0 || sb.st_size > STATUS_MAX) {
        close(fd);
        return EBADMSG;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        close(fd);
        return ENOMEM;
    }
    while (got < (size_t)sb.st_size && (n = read(fd, buf + got, (size_t)sb.st_size - got)) > 0)
        got += (size_t)n;
    close(fd);
    rc = spool_status_decode(buf, got, st);
    free(buf);
    return rc == 0 ? 0 : EBADMSG;
}
