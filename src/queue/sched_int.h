/*
 * sched_int.h - private to the scheduler files in src/queue/: the status file
 * (spool_status.c) that records which recipients of a message are done, so a
 * restart never delivers them again. Not for other modules.
 */
#ifndef MTA_SCHED_INT_H
#define MTA_SCHED_INT_H

#include <stddef.h>

struct spool;

#define SCHED_SLOT_PENDING 'P'
#define SCHED_SLOT_SENT 'S'
#define SCHED_SLOT_BOUNCED 'B'

/* The most delivery attempts counted: a larger count in a status file makes it unreadable,
 * and the scheduler stops counting there (one attempt a second for 30 years). */
#define STATUS_ATTEMPTS_MAX 1000000000

/* What the status file holds: one state byte per delivery slot (recipients, then cc copies). */
struct spool_status {
    int attempts;
    long long next_retry; /* unix seconds */
    int nslots;
    char *slots; /* nslots bytes of SCHED_SLOT_*, no NUL needed */
    int hold;    /* on hold (postsuper -h): never delivered until released */
    int sync;    /* write only: flush even with no final slot (a hold or release) */
};

/* spool_status_encode - the status text (malloc'd, *LEN bytes). NULL on out-of-memory. */
char *spool_status_encode(const struct spool_status *st, size_t *len);
/* spool_status_decode - parse TEXT into *ST (slots malloc'd). 0, or -1 when malformed. */
int spool_status_decode(const char *text, size_t len, struct spool_status *st);
/* spool_status_write - replace the status file of ID (tmp, fsync, rename, directory fsync;
 * without the two flushes when no slot is final yet). BLOCKS: worker threads only. 0 or
 * errno. */
int spool_status_write(struct spool *sp, const char *id, const struct spool_status *st);
/* spool_status_read - read the status file of ID. BLOCKS: worker threads only.
 * 0, ENOENT when there is none, EBADMSG when unreadable, or another errno. */
int spool_status_read(struct spool *sp, const char *id, struct spool_status *st);

#endif
