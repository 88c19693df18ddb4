/*
 * keystore.c - read the SSL key and certificate from the key volume (a local
 * directory) or from the fs terminal (an NFS export via libnfs, synchronous
 * API, 5 s RPC timeout, no reconnect), check the key file's permissions, and
 * build the TLS context. Everything here blocks: it runs before the event loop
 * starts, or on a worker thread for a SIGHUP reload.
 *
 * Permissions: a private key readable or writable by "others" is refused, as
 * OpenSSH refuses an unprotected identity file: anyone with an account on the
 * host that serves the volume could copy the appliance's identity. A
 * group-readable key is only warned about (Debian's ssl-cert group convention,
 * and volumes often grant a service group read access on purpose).
 * Not here: the TLS policy (tls.c), the SMTP glue (smtpd_tls.c).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h> /* before libnfs.h: it uses struct timeval without including it */
#include <unistd.h>

#include <nfsc/libnfs.h> /* types only: the library itself is loaded by keystore_nfs_load */

#include "mta/conf.h"
#include "mta/keystore.h"
#include "mta/log.h"
#include "mta/tls.h"
#include "mta/workers.h"

/* keystore_fail - set the outputs; always -1. */
static int keystore_fail(const char **message, char **detail, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int keystore_fail(const char **message, char **detail, const char *msg, const char *fmt, ...)
{
    va_list ap;

    *message = msg;
    va_start(ap, fmt);
    if (vasprintf(detail, fmt, ap) < 0)
        *detail = NULL;
    va_end(ap);
    return -1;
}

/* keystore_rel - the file name relative to the volume root (leading slashes dropped). */
static const char *keystore_rel(const char *name)
{
    while (*name == '/')
        name++;
    return name;
}

/*
 * keystore_mode_check - the permission rule for the private key (see the file
 * comment). 0 ok (maybe with a warning), -1 refused.
 */
static int keystore_mode_check(unsigned mode, const char *where, struct keystore_pem *out,
                               const char **message, char **detail)
{
    if (mode & (S_IROTH | S_IWOTH))
        return keystore_fail(message, detail, KEYSTORE_MSG_PERMS,
                             "%s: mode %04o: the private key is accessible by other users", where,
                             mode & 07777);
    if ((mode & (S_IRGRP | S_IWGRP)) && !out->warning) {
        if (asprintf(&out->warning, "%s: mode %04o: the private key is readable by its group",
                     where, mode & 07777) < 0)
            out->warning = NULL;
    }
    return 0;
}

/* keystore_buf_free - wipe the first LEN bytes of *BUF, free it, forget it. */
static void keystore_buf_free(char **buf, size_t len)
{
    if (*buf)
        memset(*buf, 0, len);
    free(*buf);
    *buf = NULL;
}

/* keystore_read_local - one file below DIRFD into *BUF. */
static int keystore_read_local(int dirfd, const char *dir, const char *name, int is_key,
                               struct keystore_pem *out, char **buf, size_t *len,
                               const char **message, char **detail)
{
    const char *rel = keystore_rel(name);
    int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    size_t got = 0;

    if (fd < 0)
        return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "%s/%s: %s", dir, rel,
                             strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "%s/%s: not a regular file",
                             dir, rel);
    }
    if (st.st_size > KEYSTORE_FILE_MAX) {
        close(fd);
        return keystore_fail(message, detail, KEYSTORE_MSG_BADPEM, "%s/%s: larger than %d bytes",
                             dir, rel, KEYSTORE_FILE_MAX);
    }
    if (is_key) {
        char where[4200];
        snprintf(where, sizeof(where), "%s/%s", dir, rel);
        if (keystore_mode_check((unsigned)st.st_mode, where, out, message, detail) < 0) {
            close(fd);
            return -1;
        }
    }
    if (!(*buf = malloc((size_t)st.st_size + 1))) {
        close(fd);
        return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "out of memory");
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            keystore_buf_free(buf, got); /* a partial key must not stay in freed memory */
            return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "%s/%s: %s", dir, rel,
                                 strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    (*buf)[got] = 0;
    *len = got;
    return 0;
}

/* keystore_load_local - both files from the key volume directory. */
static int keystore_load_local(const struct conf *c, struct keystore_pem *out, const char **message,
                               char **detail)
{
    int dfd = open(c->key_volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r, dd = -1;
    DIR *d = NULL;

    if (dfd < 0)
        return keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "key_volume %s: %s",
                             c->key_volume, strerror(errno));
    /* a directory we may open but not list is as unusable as a failed mount; the listing
     * gets its own descriptor (closedir closes it), which is ours to close when fdopendir
     * fails */
    errno = 0;
    if ((dd = fcntl(dfd, F_DUPFD_CLOEXEC, 0)) < 0 || !(d = fdopendir(dd)) || !readdir(d)) {
        int e = errno ? errno : EACCES;
        if (d)
            closedir(d);
        else if (dd >= 0)
            close(dd);
        close(dfd);
        return keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "key_volume %s: %s",
                             c->key_volume, strerror(e));
    }
    closedir(d);
    r = keystore_read_local(dfd, c->key_volume, c->ssl_key_file, 1, out, &out->key, &out->key_len,
                            message, detail);
    if (r == 0)
        r = keystore_read_local(dfd, c->key_volume, c->ssl_cert_file, 0, out, &out->cert,
                                &out->cert_len, message, detail);
    close(dfd);
    return r;
}

/* libnfs is loaded with dlopen only when the fs terminal is used, so a daemon that reads
 * its keys from a local volume (or runs without TLS) never maps it. Every libnfs function
 * this file calls is in this list and called via ks_nfs. */
#define KEYSTORE_NFS_LIBNAME "libnfs.so.13"
/* One function a line: clang-format 14 reflows a packed list differently on each run. */
#define KEYSTORE_NFS_FUNCS(X)                                                                      \
    X(nfs_init_context)                                                                            \
    X(nfs_destroy_context)                                                                         \
    X(nfs_set_timeout)                                                                             \
    X(nfs_set_autoreconnect)                                                                       \
    X(nfs_parse_url_dir)                                                                           \
    X(nfs_destroy_url)                                                                             \
    X(nfs_mount)                                                                                   \
    X(nfs_umount)                                                                                  \
    X(nfs_open)                                                                                    \
    X(nfs_fstat64)                                                                                 \
    X(nfs_read)                                                                                    \
    X(nfs_close)                                                                                   \
    X(nfs_get_error)

#define KEYSTORE_NFS_FIELD(f) __typeof__(f) *f;
static struct {
    void *handle; /* kept for the life of the process once loaded */
    KEYSTORE_NFS_FUNCS(KEYSTORE_NFS_FIELD)
} ks_nfs;
static pthread_once_t keystore_nfs_once = PTHREAD_ONCE_INIT;
static char keystore_nfs_why[512]; /* why the load failed; set once, read-only afterwards */

/* keystore_nfs_load_once - dlopen libnfs and resolve every function used (pthread_once:
 * a SIGHUP reload runs on a worker thread). */
static void keystore_nfs_load_once(void)
{
    void *h = dlopen(KEYSTORE_NFS_LIBNAME, RTLD_NOW | RTLD_LOCAL);
    const char *missing = NULL;

    if (h == NULL) {
        snprintf(keystore_nfs_why, sizeof(keystore_nfs_why), "cannot load %s: %.400s",
                 KEYSTORE_NFS_LIBNAME, dlerror());
        return;
    }
#define KEYSTORE_NFS_LOAD(f)                                                                       \
    if ((ks_nfs.f = (__typeof__(f) *)dlsym(h, #f)) == NULL && missing == NULL)                     \
        missing = #f;
    KEYSTORE_NFS_FUNCS(KEYSTORE_NFS_LOAD)
#undef KEYSTORE_NFS_LOAD
    if (missing != NULL) {
        snprintf(keystore_nfs_why, sizeof(keystore_nfs_why), "cannot load %s: symbol %s not found",
                 KEYSTORE_NFS_LIBNAME, missing);
        dlclose(h);
        return;
    }
    ks_nfs.handle = h;
}

/* keystore_nfs_load - libnfs ready: 0; -1 and the reason in keystore_nfs_why. */
static int keystore_nfs_load(void)
{
    pthread_once(&keystore_nfs_once, keystore_nfs_load_once);
    return ks_nfs.handle != NULL ? 0 : -1;
}

/* keystore_read_nfs - one file of the mounted export into *BUF. */
static int keystore_read_nfs(struct nfs_context *nfs, const char *url, const char *name, int is_key,
                             struct keystore_pem *out, char **buf, size_t *len,
                             const char **message, char **detail)
{
    char path[4200], where[8400];
    struct nfsfh *fh = NULL;
    struct nfs_stat_64 st;
    size_t got = 0;

    snprintf(path, sizeof(path), "/%s", keystore_rel(name));
    snprintf(where, sizeof(where), "%s: %s", url, path + 1);
    if (ks_nfs.nfs_open(nfs, path, O_RDONLY, &fh) < 0)
        return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "%s: %s", where,
                             ks_nfs.nfs_get_error(nfs));
    if (ks_nfs.nfs_fstat64(nfs, fh, &st) < 0 || !S_ISREG((mode_t)st.nfs_mode)) {
        ks_nfs.nfs_close(nfs, fh);
        return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "%s: not a regular file",
                             where);
    }
    if (st.nfs_size > KEYSTORE_FILE_MAX) {
        ks_nfs.nfs_close(nfs, fh);
        return keystore_fail(message, detail, KEYSTORE_MSG_BADPEM, "%s: larger than %d bytes",
                             where, KEYSTORE_FILE_MAX);
    }
    if (is_key && keystore_mode_check((unsigned)st.nfs_mode, where, out, message, detail) < 0) {
        ks_nfs.nfs_close(nfs, fh);
        return -1;
    }
    if (!(*buf = malloc((size_t)st.nfs_size + 1))) {
        ks_nfs.nfs_close(nfs, fh);
        return keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "out of memory");
    }
    while (got < (size_t)st.nfs_size) {
        int n = ks_nfs.nfs_read(nfs, fh, (uint64_t)(st.nfs_size - got), *buf + got);
        if (n <= 0) {
            int r = keystore_fail(message, detail, KEYSTORE_MSG_MISSING, "%s: read: %s", where,
                                  n < 0 ? ks_nfs.nfs_get_error(nfs) : "short file");
            ks_nfs.nfs_close(nfs, fh);
            keystore_buf_free(buf, got);
            return r;
        }
        got += (size_t)n;
    }
    ks_nfs.nfs_close(nfs, fh);
    (*buf)[got] = 0;
    *len = got;
    return 0;
}

/* keystore_nfs_read - from the fs terminal's export (mount, read, unmount): the key KEY_NAME and,
 * when CERT_NAME is not NULL, the certificate CERT_NAME. */
static int keystore_nfs_read(const struct conf *c, const char *key_name, const char *cert_name,
                             struct keystore_pem *out, const char **message, char **detail)
{
    const char *url = c->fs_terminal;
    struct nfs_context *nfs;
    struct nfs_url *u = NULL;
    int r = -1;

    if (keystore_nfs_load() < 0)
        return keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "%s: %s", url, keystore_nfs_why);
    if (!(nfs = ks_nfs.nfs_init_context()))
        return keystore_fail(message, detail, KEYSTORE_MSG_MOUNT,
                             "%s: cannot create an NFS context", url);
    ks_nfs.nfs_set_timeout(nfs, 5000);
    ks_nfs.nfs_set_autoreconnect(nfs, 0);
    if (!(u = ks_nfs.nfs_parse_url_dir(nfs, url))) {
        keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "%s: bad NFS URL: %s", url,
                      ks_nfs.nfs_get_error(nfs));
        goto out;
    }
    if (ks_nfs.nfs_mount(nfs, u->server, u->path) < 0) {
        keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "cannot mount %s: %s", url,
                      ks_nfs.nfs_get_error(nfs));
        goto out;
    }
    r = keystore_read_nfs(nfs, url, key_name, 1, out, &out->key, &out->key_len, message, detail);
    if (r == 0 && cert_name)
        r = keystore_read_nfs(nfs, url, cert_name, 0, out, &out->cert, &out->cert_len, message,
                              detail);
    ks_nfs.nfs_umount(nfs);
out:
    if (u)
        ks_nfs.nfs_destroy_url(u);
    ks_nfs.nfs_destroy_context(nfs);
    return r;
}

void keystore_pem_free(struct keystore_pem *p)
{
    if (p->key)
        memset(p->key, 0, p->key_len); /* do not leave the key in freed memory */
    free(p->key);
    free(p->cert);
    free(p->warning);
    memset(p, 0, sizeof(*p));
}

int keystore_load(const struct conf *c, struct keystore_pem *out, const char **message,
                  char **detail)
{
    int r;

    memset(out, 0, sizeof(*out));
    *message = NULL;
    *detail = NULL;
    if (!*c->ssl_key_file || !*c->ssl_cert_file)
        return keystore_fail(message, detail,
                             "Error: ssl_disabled=no but ssl key files are not defined.", "%s",
                             "ssl_key_file and ssl_cert_file must be set");
    if (*c->fs_terminal)
        r = keystore_nfs_read(c, c->ssl_key_file, c->ssl_cert_file, out, message, detail);
    else if (*c->key_volume)
        r = keystore_load_local(c, out, message, detail);
    else
        r = keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "%s",
                          "ssl_disabled=no but neither key_volume nor fs_terminal is set");
    if (r < 0)
        keystore_pem_free(out);
    return r;
}

int keystore_read_key(const struct conf *c, const char *name, struct keystore_pem *out,
                      const char **message, char **detail)
{
    int r;

    memset(out, 0, sizeof(*out));
    *message = NULL;
    *detail = NULL;
    if (*c->fs_terminal)
        r = keystore_nfs_read(c, name, NULL, out, message, detail);
    else if (!*c->key_volume && name[0] != '/')
        r = keystore_fail(message, detail, KEYSTORE_MSG_MISSING,
                          "%s: a relative path needs key_volume or fs_terminal", name);
    else {
        const char *dir = *c->key_volume ? c->key_volume : "/";
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return keystore_fail(message, detail, KEYSTORE_MSG_MOUNT, "key_volume %s: %s", dir,
                                 strerror(errno));
        r = keystore_read_local(dfd, dir, name, 1, out, &out->key, &out->key_len, message, detail);
        close(dfd);
    }
    if (r < 0)
        keystore_pem_free(out);
    return r;
}

/* keystore_build - the TLS context from loaded PEM bytes. */
static struct tls_ctx *keystore_build(const struct conf *c, const struct keystore_pem *p,
                                      const char **message, char **detail)
{
    enum tls_err kind;
    char *err = NULL;
    struct tls_ctx *t = tls_ctx_new(p->key, p->key_len, p->cert, p->cert_len, &kind, &err);

    if (t)
        return t;
    switch (kind) {
    case TLS_ERR_PASSWORD:
        *message = KEYSTORE_MSG_PASSWORD;
        break;
    case TLS_ERR_MISMATCH:
        *message = KEYSTORE_MSG_MISMATCH;
        break;
    case TLS_ERR_KEY:
    case TLS_ERR_CERT:
        *message = KEYSTORE_MSG_BADPEM;
        break;
    default:
        *message = "Error: Failed to start MTA server. See the appliance log for details.";
        break;
    }
    if (asprintf(detail, "%s (key %s, certificate %s)", err ? err : "TLS error", c->ssl_key_file,
                 c->ssl_cert_file) < 0)
        *detail = NULL;
    free(err);
    return NULL;
}

struct tls_ctx *keystore_tls_new(const struct conf *c, const char **message, char **detail)
{
    struct keystore_pem p;
    struct tls_ctx *t;

    if (keystore_load(c, &p, message, detail) < 0)
        return NULL;
    if (p.warning)
        log_warning("tls", "%s", p.warning);
    t = keystore_build(c, &p, message, detail);
    keystore_pem_free(&p);
    return t;
}

/* A reload in flight: the worker fills ctx or err. */
struct keystore_job {
    const struct conf *conf;
    struct tls_ctx *ctx;
    char *err;
    void (*done)(struct tls_ctx *ctx, const char *err, void *arg);
    void *arg;
};

/* keystore_reload_work - on a worker thread: read and build (blocking is fine here). */
static void keystore_reload_work(void *arg)
{
    struct keystore_job *j = arg;
    const char *msg = NULL;
    char *detail = NULL;

    j->ctx = keystore_tls_new(j->conf, &msg, &detail);
    if (!j->ctx && asprintf(&j->err, "%s%s%s", detail ? detail : "", detail ? ": " : "",
                            msg ? msg : "error") < 0)
        j->err = NULL;
    free(detail);
}

/* keystore_reload_done - on the loop: hand the result over. */
static void keystore_reload_done(void *arg)
{
    struct keystore_job *j = arg;

    j->done(j->ctx, j->ctx ? NULL : (j->err ? j->err : "reload failed"), j->arg);
    free(j->err);
    free(j);
}

void keystore_reload(struct workers *w, const struct conf *c,
                     void (*done)(struct tls_ctx *ctx, const char *err, void *arg), void *arg)
{
    struct keystore_job *j = calloc(1, sizeof(*j));

    if (!j) {
        done(NULL, "out of memory", arg);
        return;
    }
    j->conf = c;
    j->done = done;
    j->arg = arg;
    workers_submit(w, keystore_reload_work, keystore_reload_done, j);
}
