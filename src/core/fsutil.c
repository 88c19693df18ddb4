/*
 * fsutil.c - write-everything loops, mkdir -p and opening a file for reading without
 * dirtying its inode (fsutil.h). Blocking calls: for
 * worker threads and start-up, never the event loop.
 * Not here: what is written or where (spool, log).
 */
#include "mta/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int fs_write_all(int fd, const void *p, size_t n)
{
    struct iovec v = {(void *)p, n};
    return fs_writev_all(fd, &v, 1);
}

int fs_mkdir_p(const char *path, mode_t mode)
{
    size_t len = path ? strlen(path) : 0;
    if (len == 0) {
        errno = ENOENT;
        return -1;
    }
    char *p = strdup(path);
    if (!p)
        return -1;
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return -1;
        }
        p[i] = c;
    }
    free(p);
    return 0;
}

/* Why: a read updates the access time under relatime whenever it is older than the
 * modification time, and a deferred queue file's modification time is its next retry, in
 * the future (docs/spool-format.md): without O_NOATIME every read of such a file - the
 * start-up check, the scheduler's load, each retry - made its inode dirty, a million inode
 * writes after a start with a million deferred messages. mtad never uses access times. */
int fs_openat_noatime(int dirfd, const char *name, int flags)
{
    int fd = openat(dirfd, name, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, name, flags); /* not the owner (e.g. started as another user) */
    return fd;
}
