/*
 * postdrop.c - the setgid (setgid_group) helper that sendmail runs to put one
 * message into DATA/maildrop, as Postfix's postdrop: the only way into that
 * directory (mode 1730, group setgid_group), so the uid it records - the real
 * uid of whoever ran it - can be trusted by the daemon's pickup. It reads the
 * maildrop stream (include/mta/maildrop.h) on standard input, checks it,
 * writes it to a temporary file, fsyncs it, renames it to its final name and
 * syncs the file system, so the message survives a crash or a stopped daemon.
 * Small on purpose: no network, no exec, no environment beyond MAIL_CONFIG.
 * Not here: option parsing of sendmail, header processing (pickup).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mta/conf.h"
#include "mta/maildrop.h"

static const char *postdrop_tmp; /* temporary file to remove on a fatal error */
static int postdrop_dirfd = -1;

#ifdef __SANITIZE_ADDRESS__
/* __lsan_is_turned_off - sanitizer builds: LeakSanitizer cannot trace a setgid process (it is
 * not dumpable) and would turn every successful run into exit 1, so it stays off there. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return getegid() != getgid();
}
#endif

/* postdrop_fatal - "postdrop: fatal: ..." on stderr, remove the temporary file, exit STATUS. */
static void __attribute__((format(printf, 2, 3), noreturn))
postdrop_fatal(int status, const char *fmt, ...)
{
    va_list ap;

    if (postdrop_tmp && postdrop_dirfd >= 0)
        unlinkat(postdrop_dirfd, postdrop_tmp, 0);
    fputs("postdrop: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

/* postdrop_config - the configuration file: -C/-c, else $MAIL_CONFIG (a directory means
 * DIR/mtad.conf, as Postfix's config_directory), else the installed one. *CUSTOM: not the
 * installed one (then it is read with the caller's own rights, see main). */
static const char *postdrop_config(const char *opt, int *custom)
{
    static char buf[PATH_MAX];
    const char *env = getenv("MAIL_CONFIG");
    struct stat st;

    *custom = 1;
    if (opt)
        return opt;
    if (env && *env) {
        if (stat(env, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (snprintf(buf, sizeof(buf), "%s/mtad.conf", env) >= (int)sizeof(buf))
                postdrop_fatal(EX_USAGE, "MAIL_CONFIG: path too long");
            return buf;
        }
        return env;
    }
    *custom = 0;
    return MTA_DEFAULT_CONF;
}

/* postdrop_read - all of standard input, at most MAX bytes (*LEN set). */
static char *postdrop_read(size_t max, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);

    if (!buf)
        postdrop_fatal(EX_OSERR, "out of memory");
    for (;;) {
        ssize_t r;
        if (n == cap) {
            if (cap > max)
                postdrop_fatal(EX_UNAVAILABLE, "uid=%lu: message file too big",
                               (unsigned long)getuid());
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                postdrop_fatal(EX_OSERR, "out of memory");
            buf = bigger;
            cap *= 2;
        }
        r = read(0, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            postdrop_fatal(EX_IOERR, "error reading input: %s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max)
        postdrop_fatal(EX_UNAVAILABLE, "uid=%lu: message file too big", (unsigned long)getuid());
    *len = n;
    return buf;
}

/* postdrop_write_all - write N bytes of P to FD (fatal on error). */
static void postdrop_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            postdrop_fatal(EX_TEMPFAIL, "write maildrop file: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    gid_t rgid = getgid(), egid = getegid();
    uid_t uid = getuid();
    int set_gid = rgid != egid, custom, ch, fd;
    const char *opt_config = NULL, *config, *why;
    char *errors = NULL, *in, dir[PATH_MAX], tmp[64], name[64], head[128];
    struct conf *c;
    struct maildrop md;
    struct stat st;
    size_t len, max, skip;
    unsigned rnd = 0;
    time_t now = time(NULL);

    /* a signal would leave a temporary file behind: pickup removes old ones */
    signal(SIGPIPE, SIG_IGN);
    umask(022);
    while ((ch = getopt(argc, argv, "+C:c:rv")) != -1) {
        switch (ch) {
        case 'C':
        case 'c':
            opt_config = optarg;
            break;
        case 'r': /* Postfix: raw record input; ours is always the maildrop stream */
        case 'v':
            break;
        default:
            postdrop_fatal(EX_USAGE, "usage: postdrop [-C config_file]");
        }
    }
    if (optind != argc)
        postdrop_fatal(EX_USAGE, "usage: postdrop [-C config_file]");
    config = postdrop_config(opt_config, &custom);

    /* A configuration of the caller's choosing is read with the caller's rights only:
     * setgid_group must not help anyone read a file they could not read themselves. */
    if (set_gid && custom && uid != 0 && setegid(rgid) != 0)
        postdrop_fatal(EX_OSERR, "setegid: %s", strerror(errno));
    c = conf_load(config, NULL, 0, &errors);
    if (!c) {
        fprintf(stderr, "%s", errors ? errors : "");
        postdrop_fatal(EX_CONFIG, "cannot read the configuration %s", config);
    }
    if (set_gid && custom && uid != 0 && setegid(egid) != 0)
        postdrop_fatal(EX_OSERR, "setegid: %s", strerror(errno));
    if (set_gid) {
        struct group *gr = getgrnam(c->setgid_group);
        if (!gr || gr->gr_gid != egid)
            postdrop_fatal(EX_SOFTWARE, "postdrop runs setgid to group %lu, not to setgid_group %s",
                           (unsigned long)egid, c->setgid_group);
    }

    max = (size_t)c->message_size_limit + MAILDROP_ENVELOPE_MAX;
    in = postdrop_read(max, &len);
    if (maildrop_parse(in, len, MAILDROP_STREAM, c->message_size_limit, &md, &why) != 0)
        postdrop_fatal(strcmp(why, "message file too big") == 0 ? EX_UNAVAILABLE : EX_DATAERR,
                       "uid=%lu: %s", (unsigned long)uid, why);
    maildrop_free(&md);

    /* the maildrop: a real one is setgid_group's, sticky and closed to others, so a
     * configuration naming some other directory gets nothing written with our group */
    if (snprintf(dir, sizeof(dir), "%s/%s", c->data_volume, MAILDROP_DIR) >= (int)sizeof(dir))
        postdrop_fatal(EX_CONFIG, "data_volume: path too long");
    postdrop_dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (postdrop_dirfd < 0)
        postdrop_fatal(errno == EACCES ? EX_NOPERM : EX_TEMPFAIL, "open %s: %s%s", dir,
                       strerror(errno),
                       errno == ENOENT ? " (mtad creates it at its first start)" : "");
    if (fstat(postdrop_dirfd, &st) != 0 || !S_ISDIR(st.st_mode))
        postdrop_fatal(EX_TEMPFAIL, "%s: not a directory", dir);
    if (set_gid && (st.st_gid != egid || !(st.st_mode & S_ISVTX) || (st.st_mode & S_IWOTH)))
        postdrop_fatal(EX_TEMPFAIL, "%s: not group %s with mode 1730", dir, c->setgid_group);

    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (unsigned)now ^ (unsigned)getpid() << 8;
    snprintf(tmp, sizeof(tmp), ".tmp.%ld.%08x", (long)getpid(), rnd);
    fd = openat(postdrop_dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        postdrop_fatal(errno == EACCES ? EX_NOPERM : EX_TEMPFAIL, "create %s/%s: %s", dir, tmp,
                       strerror(errno));
    postdrop_tmp = tmp;
    /* pickup reads it as mail_owner ("other"); nobody else can reach into the maildrop */
    if (fchmod(fd, 0644) != 0)
        postdrop_fatal(EX_TEMPFAIL, "chmod %s/%s: %s", dir, tmp, strerror(errno));
    snprintf(head, sizeof(head), "%s\nuid %lu\ntime %lld\n", MAILDROP_MAGIC, (unsigned long)uid,
             (long long)now);
    skip = strlen(MAILDROP_MAGIC) + 1; /* the stream's own first line */
    postdrop_write_all(fd, head, strlen(head));
    postdrop_write_all(fd, in + skip, len - skip);
    if (fsync(fd) != 0)
        postdrop_fatal(EX_TEMPFAIL, "fsync %s/%s: %s", dir, tmp, strerror(errno));
    for (int attempt = 0;; attempt++) {
        snprintf(name, sizeof(name), "%010llX%06lX%08X", (long long)now,
                 (unsigned long)getpid() & 0xffffff, rnd + (unsigned)attempt);
        if (renameat2(postdrop_dirfd, tmp, postdrop_dirfd, name, RENAME_NOREPLACE) == 0)
            break;
        if (errno != EEXIST || attempt == 100)
            postdrop_fatal(EX_TEMPFAIL, "rename %s/%s: %s", dir, tmp, strerror(errno));
    }
    postdrop_tmp = NULL;
    /* the new name must be durable too; the directory cannot be opened for fsync (setgid_group
     * may not read it), so the whole file system is synced (docs/sendmail.md) */
    if (syncfs(fd) != 0)
        postdrop_fatal(EX_TEMPFAIL, "syncfs %s: %s", dir, strerror(errno));
    close(fd);
    free(in);
    conf_free(c);
    return 0;
}
