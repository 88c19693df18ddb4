/*
 * spool_status.c - the per-message status file "queue/X/ID.st": which delivery
 * slots (recipients, then cc_mta copies) are done, how many attempts were made
 * and when the next retry is due. Written by tmp + fsync + rename + directory
 * fsync, so after a crash it is either the old or the new version, never torn.
 * It exists only once some slot is final; spool_remove deletes it with the message.
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
#include <unistd.h>

#define STATUS_VERSION_LINE "MTA-STATUS 1"
#define STATUS_MAX (1024 * 1024)        /* a status file larger than this is corrupt */
#define STATUS_TIME_MAX 253402300799ULL /* next retry: at most the end of the year 9999 */

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
    fd = openat(sp->qfd[spool_id_hash(id)], name, O_RDONLY | O_CLOEXEC);
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
