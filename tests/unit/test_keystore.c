/*
 * test_keystore.c - the key volume's error paths (src/core/keystore.c) leave no
 * descriptor open: a listing that fails (fdopendir, made to fail here by
 * interposing it: the executable's definition wins over libc's), a missing key,
 * a world-readable key, and a good pair for comparison. Open descriptors are
 * counted in /proc/self/fd before and after each load.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mta/conf.h"
#include "mta/keystore.h"

static int fail_fdopendir; /* the next fdopendir calls fail with ENOMEM */

/* fdopendir - libc's, unless the test asks for a failure. */
DIR *fdopendir(int fd)
{
    static DIR *(*real)(int);
    if (fail_fdopendir) {
        errno = ENOMEM;
        return NULL;
    }
    if (!real)
        real = (DIR * (*)(int)) dlsym(RTLD_NEXT, "fdopendir");
    return real(fd);
}

/* open_fds - descriptors open in this process now. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the listing's own */
}

static char dir[64];

/* write_file - NAME in the key volume with TEXT and MODE. */
static void write_file(const char *name, const char *text, mode_t mode)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(p, mode);
}

static struct conf *conf_for(const char *key)
{
    char kv[96], kf[96], *err = NULL;
    snprintf(kv, sizeof kv, "key_volume=%s", dir);
    snprintf(kf, sizeof kf, "ssl_key_file=%s", key);
    char *ov[] = {"data_volume=/nonexistent/test", "ssl_disabled=no", kv, kf};
    struct conf *c = conf_load(NULL, ov, 4, &err);
    if (!c)
        fail_msg("conf_load: %s", err ? err : "?");
    return c;
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/test_keystore.XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file("server.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
               0600);
    write_file("open.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0644);
    write_file("server.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
               0644);
    return 0;
}

static int teardown(void **state)
{
    char p[128];
    const char *names[] = {"server.key", "open.key", "server.pem"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

/* load - keystore_load with C; returns its result, checks no descriptor stayed open. */
static int load(struct conf *c, const char **msg)
{
    struct keystore_pem pem;
    char *detail = NULL;
    int before = open_fds();
    int r = keystore_load(c, &pem, msg, &detail);
    assert_int_equal(open_fds(), before);
    if (r == 0)
        keystore_pem_free(&pem);
    free(detail);
    return r;
}

static void test_fdopendir_failure_closes_everything(void **state)
{
    struct conf *c = conf_for("server.key");
    const char *msg = NULL;
    fail_fdopendir = 1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(load(c, &msg), -1);
        assert_string_equal(msg, KEYSTORE_MSG_MOUNT);
    }
    fail_fdopendir = 0;
    conf_free(c);
}

static void test_other_paths_close_everything(void **state)
{
    const char *msg = NULL;
    struct conf *c = conf_for("server.key");
    fail_fdopendir = 0; /* also when the test before failed half-way */
    assert_int_equal(load(c, &msg), 0);
    conf_free(c);
    c = conf_for("missing.key");
    assert_int_equal(load(c, &msg), -1);
    assert_string_equal(msg, KEYSTORE_MSG_MISSING);
    conf_free(c);
    c = conf_for("open.key");
    assert_int_equal(load(c, &msg), -1);
    assert_string_equal(msg, KEYSTORE_MSG_PERMS);
    conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fdopendir_failure_closes_everything),
        cmocka_unit_test(test_other_paths_close_everything),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
