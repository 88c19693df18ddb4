/*
 * spool_dir.c - making directory entries durable: one directory's fsync, and
 * one flush for a batch of entries changed in the queue/X directories (commits,
 * removals, status files share it). Blocking: worker threads and start-up only.
 * Not here: which entries change (the callers).
 */
#include <errno.h>
#include <unistd.h>

#include "spool_int.h"

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
