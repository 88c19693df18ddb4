/*
 * test_fsutil.c - the shared write-everything loops and mkdir -p: every byte
 * arrives in order also when the kernel takes less than asked (a pipe), and
 * mkdir -p creates what is missing, accepts what exists, and fails with errno.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mta/fsutil.h"

#define BIG (1024 * 1024 + 17) /* far more than a pipe holds: writes come back short */

struct reader {
    int fd;
    char *got;
    size_t len;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    ssize_t n;
    while (r->len < BIG && (n = read(r->fd, r->got + r->len, BIG - r->len)) > 0)
        r->len += (size_t)n;
    return NULL;
}

static char *pattern(void)
{
    char *p = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        p[i] = (char)(i * 7 + i / 251);
    return p;
}

/* drain - run WRITE_FN(fd) against a reader thread on a pipe; returns what arrived. */
static struct reader drain(int (*write_fn)(int fd, void *arg), void *arg, int *rc)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct reader r = {fds[0], malloc(BIG), 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
    *rc = write_fn(fds[1], arg);
    close(fds[1]);
    pthread_join(t, NULL);
    close(fds[0]);
    return r;
}

static int write_one(int fd, void *arg)
{
    return fs_write_all(fd, arg, BIG);
}

static int write_pieces(int fd, void *arg)
{
    /* 100 pieces of uneven sizes, so that short writes end inside a piece */
    char *p = arg;
    struct iovec iov[100];
    size_t off = 0;
    for (int i = 0; i < 100; i++) {
        size_t len = i == 99 ? BIG - off : (size_t)(BIG / 100 + (i % 7) * 13 - 40);
        iov[i].iov_base = p + off;
        iov[i].iov_len = len;
        off += len;
    }
    assert_int_equal(off, BIG);
    return fs_writev_all(fd, iov, 100);
}

static void test_write_all(void **state)
{
    (void)state;
    char *p = pattern();
    int rc;
    struct reader r = drain(write_one, p, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(r.len, BIG);
    assert_memory_equal(r.got, p, BIG);
    free(r.got);
    r = drain(write_pieces, p, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(r.len, BIG);
    assert_memory_equal(r.got, p, BIG);
    free(r.got);
    /* a closed descriptor: -1 and errno */
    errno = 0;
    assert_int_equal(fs_write_all(-1, p, 10), -1);
    assert_int_equal(errno, EBADF);
    free(p);
}

static void test_mkdir_p(void **state)
{
    (void)state;
    char base[] = "/tmp/mta-fsutil-XXXXXX", path[256], file[256];
    struct stat st;
    assert_non_null(mkdtemp(base));
    snprintf(path, sizeof path, "%s/a/b/c", base);
    assert_int_equal(fs_mkdir_p(path, 0700), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(fs_mkdir_p(path, 0700), 0); /* all there already */
    snprintf(path, sizeof path, "%s/a/b/c/", base);
    assert_int_equal(fs_mkdir_p(path, 0700), 0); /* a trailing slash */
    /* a file in the way */
    snprintf(file, sizeof file, "%s/a/f", base);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s/a/f/d", base);
    errno = 0;
    assert_int_equal(fs_mkdir_p(path, 0700), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(fs_mkdir_p("", 0700), -1);
    unlink(file);
    snprintf(path, sizeof path, "rm -rf '%s'", base);
    assert_int_equal(system(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_all),
        cmocka_unit_test(test_mkdir_p),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
