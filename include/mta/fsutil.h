/*
 * fsutil.h - small file-system helpers shared by the spool and the logs: writing
 * everything despite short writes and EINTR, mkdir -p, and reading without touching the
 * access time.
 * Not here: anything that decides what to write or where (spool, log).
 */
#ifndef MTA_FSUTIL_H
#define MTA_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* fs_write_all - write all N bytes of P to FD; 0, or -1 with errno. */
int fs_write_all(int fd, const void *p, size_t n);
/* fs_writev_all - write all of IOV[0..N) with gathered writes (IOV is used up); 0 or -1/errno. */
int fs_writev_all(int fd, struct iovec *iov, int n);
/* fs_mkdir_p - create directory PATH and its missing parents with MODE; 0 or -1/errno. */
int fs_mkdir_p(const char *path, mode_t mode);
/* fs_openat_noatime - openat(DIRFD, NAME, FLAGS) with O_NOATIME when the file is ours (the
 * kernel refuses it with EPERM otherwise: then without); the descriptor or -1/errno. */
int fs_openat_noatime(int dirfd, const char *name, int flags);

#endif
