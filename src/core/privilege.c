/*
 * privilege.c - least privilege (privilege.h): the mail_owner account, the
 * data volume made that account's and entered, listening sockets bound while
 * still root, and the drop itself (initgroups, setresgid, setresuid, verified).
 * Everything here blocks and runs once at start-up, before the event loop.
 * The volume is mode 0710 with group setgid_group, and DATA/maildrop mode 1730
 * with that group: Postfix's model, where only the setgid postdrop (and
 * postqueue) programs may enter the queue, to add a file or reach the socket.
 *
 * Why the data volume is walked by descriptor: the walk runs as root over a
 * tree that the unprivileged account may write. Following a path (nftw, chown)
 * lets that account swap a directory for a symbolic link to /etc between the
 * check and the chown; openat(O_NOFOLLOW) from a descriptor we hold cannot be
 * redirected, a file with more than one link (a hard link to someone else's
 * file) is left alone, and symbolic links are never followed or changed.
 *
 * Why the walk has two passes: the directories must be mail_owner's before the
 * spool lists them, but giving every file to mail_owner means an fstatat of every
 * file - 3-20 s before the greeting with a million queued messages. So the start
 * walks directories and the volume's top-level files only (readdir's d_type says
 * what is a regular file, without a stat), and a child forked as root walks
 * everything while the daemon, dropped to mail_owner, already serves SMTP; the
 * spool checks the queued files only after priv_walk_wait has seen that child
 * finish. The child never logs (the log writer
 * thread is not in it): it writes its warnings and its result down a pipe.
 * Not here: the order of the start-up (mtad.c), the listeners (smtpd, stats).
 */
#include "mta/privilege.h"

#include "mta/conf.h"
#include "mta/fsutil.h"
#include "mta/log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PRIV_WALK_DEPTH 16 /* the spool is 3 levels deep; deeper is not ours */
#define PRIV_MAX_PREBOUND 8
#define PRIV_MAILDROP "maildrop"
#define PRIV_VOLUME_MODE 0710    /* setgid_group may enter (the maildrop, the control socket) */
#define PRIV_MAILDROP_MODE 01730 /* setgid_group may add files; nobody else may list them */

static struct {
    int root;    /* started as root: the drop is to come */
    int dropped; /* priv_drop succeeded */
    uid_t uid;
    gid_t gid;
    gid_t sgid; /* setgid_group: the maildrop's and the control socket's group */
    char name[256];
    char entered[4096]; /* the data volume that is the working directory, or "" */
} priv;

/* the background walk (the head of this file): its child and the pipe it reports down */
static struct {
    pid_t pid;      /* the child, or 0: none running or it has been waited for */
    int fd;         /* the pipe's read end in the daemon, -1 when none */
    int out;        /* in the child: the write end, where warnings go instead of the log */
    char buf[4096]; /* the daemon's reading of the pipe: a partial line */
    size_t len;
} priv_bg = {0, -1, -1, "", 0};

static struct {
    struct sockaddr_storage sa;
    socklen_t len;
    int fd;
} priv_pre[PRIV_MAX_PREBOUND];
static int priv_npre;

/* priv_seterr - *err = formatted text (malloc'd); always -1. */
static int priv_seterr(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int priv_seterr(char **err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
    return -1;
}

/* priv_prepare_group - look up setgid_group (as root): the group that the setgid
 * postdrop and postqueue programs run with. 0 ok, -1 and *err. */
static int priv_prepare_group(const struct conf *c, char **err)
{
    struct group *gr;

    if (!*c->setgid_group)
        return priv_seterr(err, "setgid_group: empty; name the group of the setgid postdrop and "
                                "postqueue programs");
    errno = 0;
    gr = getgrnam(c->setgid_group);
    if (!gr)
        return priv_seterr(err,
                           "setgid_group: group \"%s\" does not exist%s%s (create it: groupadd "
                           "--system %s)",
                           c->setgid_group, errno ? ": " : "", errno ? strerror(errno) : "",
                           c->setgid_group);
    if (gr->gr_gid == 0)
        return priv_seterr(err,
                           "setgid_group: group \"%s\" has the group ID of root; choose a group "
                           "of its own",
                           c->setgid_group);
    priv.sgid = gr->gr_gid;
    return 0;
}

int priv_prepare(const struct conf *c, char **err)
{
    struct passwd *pw;

    *err = NULL;
    if (geteuid() != 0) {
        /* an ordinary user (the developer's embedded default) stays who it is */
        pw = getpwuid(geteuid());
        snprintf(priv.name, sizeof(priv.name), "%s", pw ? pw->pw_name : "");
        priv.sgid = getegid(); /* nobody else's programs can be setgid for us */
        return 0;
    }
    if (!*c->mail_owner)
        return priv_seterr(err, "mail_owner: empty; name the unprivileged account mtad runs as");
    errno = 0;
    pw = getpwnam(c->mail_owner);
    if (!pw)
        return priv_seterr(err,
                           "mail_owner: user \"%s\" does not exist%s%s (create it: useradd "
                           "--system --no-create-home --shell /usr/sbin/nologin %s)",
                           c->mail_owner, errno ? ": " : "", errno ? strerror(errno) : "",
                           c->mail_owner);
    if (pw->pw_uid == 0)
        return priv_seterr(err,
                           "mail_owner: user \"%s\" has the user ID of root; choose an "
                           "unprivileged account",
                           c->mail_owner);
    if (pw->pw_gid == 0)
        return priv_seterr(err,
                           "mail_owner: user \"%s\" has the group ID of root; choose an "
                           "unprivileged account",
                           c->mail_owner);
    if (strlen(pw->pw_name) >= sizeof(priv.name))
        return priv_seterr(err, "mail_owner: user name too long");
    if (priv_prepare_group(c, err) < 0)
        return -1;
    priv.root = 1;
    priv.uid = pw->pw_uid;
    priv.gid = pw->pw_gid;
    snprintf(priv.name, sizeof(priv.name), "%s", pw->pw_name);
    return 0;
}

/* priv_absolute - *P made absolute against CWD (unchanged when empty or absolute). */
static int priv_absolute(char **p, const char *cwd)
{
    char *abs;

    if (!**p || **p == '/')
        return 0;
    if (asprintf(&abs, "%s/%s", cwd, *p) < 0)
        return -1;
    free(*p);
    *p = abs;
    return 0;
}

int priv_absolute_paths(struct conf *c, char **err)
{
    char *cwd = getcwd(NULL, 0);
    int r = 0;

    *err = NULL;
    if (!cwd)
        return priv_seterr(err, "cannot read the working directory: %s", strerror(errno));
    if (priv_absolute(&c->data_volume, cwd) < 0 || priv_absolute(&c->key_volume, cwd) < 0 ||
        priv_absolute(&c->maillog_file, cwd) < 0 ||
        priv_absolute(&c->smtpd_sasl_config_dir, cwd) < 0 || priv_absolute(&c->path, cwd) < 0)
        r = priv_seterr(err, "out of memory");
    free(cwd);
    return r;
}

int priv_will_drop(void)
{
    return priv.root;
}

int priv_dropped(void)
{
    return priv.dropped;
}

const char *priv_owner_name(void)
{
    return priv.name;
}

/* priv_give - make the object at DIRFD/NAME mail_owner's (group GID) unless it is a
 * symbolic link or a file with several links. 1 changed, 0 left alone, -1 error (errno). */
static int priv_give(int dirfd, const char *name, const char *where, const struct stat *st,
                     gid_t gid)
{
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    struct stat now;
    int r = 0;

    if (fd < 0)
        return errno == ENOENT ? 0 : -1; /* gone meanwhile: nothing to give */
    if (fstat(fd, &now) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (now.st_dev != st->st_dev || now.st_ino != st->st_ino || S_ISLNK(now.st_mode)) {
        close(fd); /* replaced between the two looks: leave it alone */
        return 0;
    }
    if (!S_ISDIR(now.st_mode) && now.st_nlink > 1) {
        if (priv_bg.out >= 0)
            dprintf(priv_bg.out, "warning %s/%s: not given to %s: the file has %lu links\n", where,
                    name, priv.name, (unsigned long)now.st_nlink);
        else
            log_warning("master", "%s/%s: not given to %s: the file has %lu links", where, name,
                        priv.name, (unsigned long)now.st_nlink);
        close(fd);
        return 0;
    }
    if (fchownat(fd, "", priv.uid, gid, AT_EMPTY_PATH) < 0)
        r = -1;
    else
        r = 1;
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

/* priv_walk - give everything below directory DFD (named WHERE in messages) to
 * mail_owner, or with FILES 0 everything but regular files (the head of this file says
 * why); *changed counts what was changed. 0 ok, -1 and *err. */
static int priv_walk(int dfd, const char *where, int depth, int files, long *changed, char **err)
{
    int lfd = dup(dfd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    struct dirent *e;
    int r = 0;

    if (!d) {
        int er = errno;
        if (lfd >= 0)
            close(lfd);
        return priv_seterr(err, "data volume %s: %s", where, strerror(er));
    }
    rewinddir(d); /* the dup shares DFD's offset: an earlier walk of it left it at the end */
    while (r == 0 && (errno = 0, e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (!files && depth > 0 && e->d_type == DT_REG)
            continue; /* the background walk's (DT_UNKNOWN: looked at, as any other); the
                       * volume's own files (lock, log-spill) are opened right after */
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            r = priv_seterr(err, "data volume %s/%s: %s", where, e->d_name, strerror(errno));
            break;
        }
        if (S_ISLNK(st.st_mode))
            continue; /* never followed, never changed: the spool makes none */
        if (depth == 0 && strcmp(e->d_name, PRIV_MAILDROP) == 0)
            continue; /* the maildrop's files are the submitting users' (postdrop's); the
                       * directory itself is set up by priv_maildrop */
        if (st.st_uid != priv.uid || st.st_gid != priv.gid) {
            int g = priv_give(dfd, e->d_name, where, &st, priv.gid);
            if (g < 0) {
                r = priv_seterr(err, "data volume %s/%s: cannot give it to %s: %s", where,
                                e->d_name, priv.name, strerror(errno));
                break;
            }
            *changed += g;
        }
        if (S_ISDIR(st.st_mode)) {
            char sub[4096];
            int sfd;
            if (depth >= PRIV_WALK_DEPTH) {
                r = priv_seterr(err, "data volume %s/%s: nested deeper than %d levels", where,
                                e->d_name, PRIV_WALK_DEPTH);
                break;
            }
            sfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sfd < 0) {
                if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
                    continue; /* replaced meanwhile: not ours to follow */
                r = priv_seterr(err, "data volume %s/%s: %s", where, e->d_name, strerror(errno));
                break;
            }
            snprintf(sub, sizeof(sub), "%s/%s", where, e->d_name);
            r = priv_walk(sfd, sub, depth + 1, files, changed, err);
            close(sfd);
        }
    }
    if (r == 0 && errno != 0)
        r = priv_seterr(err, "data volume %s: %s", where, strerror(errno));
    closedir(d);
    return r;
}

/* priv_maildrop - make DFD/maildrop (created if missing) mail_owner's, group
 * setgid_group, mode 1730: the setgid postdrop adds files, only mtad lists them.
 * Started unprivileged, the daemon's own ids. 0 ok, -1 and *err. */
static int priv_maildrop(int dfd, const char *where, char **err)
{
    struct stat st;
    int fd;

    if (mkdirat(dfd, PRIV_MAILDROP, 0700) < 0 && errno != EEXIST)
        return priv_seterr(err, "data volume %s/" PRIV_MAILDROP ": %s", where, strerror(errno));
    fd = openat(dfd, PRIV_MAILDROP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        goto fail;
    if (priv.root && (st.st_uid != priv.uid || st.st_gid != priv.sgid) &&
        fchown(fd, priv.uid, priv.sgid) < 0)
        goto fail;
    if ((st.st_mode & 07777) != PRIV_MAILDROP_MODE && fchmod(fd, PRIV_MAILDROP_MODE) < 0)
        goto fail;
    close(fd);
    return 0;
fail:
    priv_seterr(err, "data volume %s/" PRIV_MAILDROP ": %s", where, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* priv_walk_start - fork the child that gives every file below DFD (the data volume PATH)
 * to mail_owner, as root, while the daemon goes on; 0, or -1/errno. */
static int priv_walk_start(int dfd, const char *path)
{
    int p[2];
    pid_t parent = getpid();

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        long changed = 0;
        char *err = NULL;
        close(p[0]);
        /* the daemon gone (killed, stopped): so is the walk, which it alone waits for */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(2);
        priv_bg.out = p[1];
        int r = priv_walk(dfd, path, 0, 1, &changed, &err);
        if (r < 0)
            dprintf(p[1], "error %s\n", err ? err : "out of memory");
        else
            dprintf(p[1], "done %ld\n", changed);
        _exit(r < 0);
    }
    close(p[1]);
    priv_bg.pid = pid;
    priv_bg.fd = p[0];
    priv_bg.len = 0;
    return 0;
}

/* priv_walk_line - the daemon: one line the walking child wrote, logged. */
static void priv_walk_line(const char *l)
{
    char *end;
    if (strncmp(l, "warning ", 8) == 0) {
        log_warning("master", "%s", l + 8);
    } else if (strncmp(l, "error ", 6) == 0) {
        log_warning("master", "%s (what was not given to %s stays as it is)", l + 6, priv.name);
    } else if (strncmp(l, "done ", 5) == 0) {
        long n = strtol(l + 5, &end, 10);
        if (n > 0 && *end == '\0')
            log_info("data volume %s: %ld entries given to %s", priv.entered, n, priv.name);
    }
}

int priv_walk_wait(int timeout_ms)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int done = 0;

    pthread_mutex_lock(&lock);
    if (priv_bg.fd < 0) {
        pthread_mutex_unlock(&lock);
        return 1;
    }
    struct pollfd pfd = {.fd = priv_bg.fd, .events = POLLIN};
    while (!done && poll(&pfd, 1, timeout_ms) > 0) {
        ssize_t n =
            read(priv_bg.fd, priv_bg.buf + priv_bg.len, sizeof(priv_bg.buf) - 1 - priv_bg.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            done = 1; /* the end: the child exited (or died: what it did not do stays) */
            if (priv_bg.len) {
                priv_bg.buf[priv_bg.len] = '\0';
                priv_walk_line(priv_bg.buf);
            }
            break;
        }
        priv_bg.len += (size_t)n;
        priv_bg.buf[priv_bg.len] = '\0';
        char *l = priv_bg.buf, *nl;
        while ((nl = strchr(l, '\n')) != NULL) {
            *nl = '\0';
            priv_walk_line(l);
            l = nl + 1;
        }
        priv_bg.len = strlen(l);
        memmove(priv_bg.buf, l, priv_bg.len);
        if (priv_bg.len == sizeof(priv_bg.buf) - 1)
            priv_bg.len = 0; /* a line longer than the buffer: dropped, not looped on */
        timeout_ms = 0;      /* what is there now, then back to the caller */
    }
    if (done) {
        close(priv_bg.fd);
        priv_bg.fd = -1;
        while (waitpid(priv_bg.pid, NULL, 0) < 0 && errno == EINTR)
            ;
        priv_bg.pid = 0;
    }
    pthread_mutex_unlock(&lock);
    return done;
}

int priv_enter_data_volume(const struct conf *c, char **err)
{
    const char *path = c->data_volume;
    struct stat st;
    long changed = 0;
    int fd;

    *err = NULL;
    if (!*path)
        return priv_seterr(err, "data_volume is not set");
    if (strlen(path) >= sizeof(priv.entered))
        return priv_seterr(err, "data_volume: path too long");
    if (fs_mkdir_p(path, 0700) < 0)
        return priv_seterr(err, "cannot create data volume %s: %s", path, strerror(errno));
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return priv_seterr(err, "data volume %s: %s", path, strerror(errno));
    if (priv.root) {
        if (fstat(fd, &st) < 0)
            goto fail_errno;
        if ((st.st_uid != priv.uid || st.st_gid != priv.sgid) &&
            fchown(fd, priv.uid, priv.sgid) < 0)
            goto fail_errno;
        if ((st.st_mode & 07777) != PRIV_VOLUME_MODE && fchmod(fd, PRIV_VOLUME_MODE) < 0)
            goto fail_errno;
        if (priv_walk(fd, path, 0, 0, &changed, err) < 0) {
            close(fd);
            return -1;
        }
        if (changed)
            log_info("data volume %s: %ld directories given to %s", path, changed, priv.name);
        if (priv_walk_start(fd, path) < 0) {
            priv_seterr(err, "data volume %s: cannot start the walk over its files: %s", path,
                        strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (priv_maildrop(fd, path, err) < 0) {
        close(fd);
        return -1;
    }
    if (fchdir(fd) < 0)
        goto fail_errno;
    close(fd);
    snprintf(priv.entered, sizeof(priv.entered), "%s", path);
    return 0;
fail_errno:
    priv_seterr(err, "data volume %s: %s", path, strerror(errno));
    close(fd);
    return -1;
}

gid_t priv_setgid_group(void)
{
    return priv.sgid;
}

const char *priv_data_volume_path(const char *path)
{
    if (priv.entered[0] && path && strcmp(path, priv.entered) == 0)
        return ".";
    return path;
}

/* priv_prebind_one - bind a listening socket for SA as root and keep it. 0 ok, -1/errno. */
static int priv_prebind_one(const struct sockaddr *sa, socklen_t len, int v6only)
{
    int fd, one = 1;

    if (priv_npre == PRIV_MAX_PREBOUND) {
        errno = ENOSPC;
        return -1;
    }
    for (int i = 0; i < priv_npre; i++)
        if (priv_pre[i].len == len && memcmp(&priv_pre[i].sa, sa, len) == 0)
            return 0; /* the same address twice: the module's second bind reports it */
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* the same options the listeners set themselves: they must be set before bind */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    if (bind(fd, sa, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    memset(&priv_pre[priv_npre].sa, 0, sizeof(priv_pre[priv_npre].sa));
    memcpy(&priv_pre[priv_npre].sa, sa, len);
    priv_pre[priv_npre].len = len;
    priv_pre[priv_npre].fd = fd;
    priv_npre++;
    return 0;
}

/* priv_prebind_port - in_address:PORT as smtpd and stats will ask for it: the wildcard is
 * the dual-stack IPv6 socket, or 0.0.0.0 where the host has no IPv6. */
static void priv_prebind_port(const char *in_address, long port)
{
    char addr[256];
    size_t n;

    snprintf(addr, sizeof(addr), "%s", in_address);
    n = strlen(addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
        memmove(addr, addr + 1, n - 2);
        addr[n - 2] = 0;
    }
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!*addr) {
        a6.sin6_addr = in6addr_any;
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        if (priv_prebind_one((struct sockaddr *)&a6, sizeof(a6), 0) < 0 &&
            (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL))
            priv_prebind_one((struct sockaddr *)&a4, sizeof(a4), 0);
    } else if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
        priv_prebind_one((struct sockaddr *)&a4, sizeof(a4), 0);
    } else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
        priv_prebind_one((struct sockaddr *)&a6, sizeof(a6), 1);
    }
    /* anything else: not an address; the listener says so */
}

void priv_prebind(const struct conf *c)
{
    if (!priv.root || priv.dropped)
        return;
    priv_prebind_port(c->in_address, c->smtp_port);
    if (!c->ssl_disabled)
        priv_prebind_port(c->in_address, c->smtps_port);
    if (!c->ssl_disabled && c->submission_port)
        priv_prebind_port(c->in_address, c->submission_port);
    priv_prebind_port(c->in_address, c->ui_port);
}

/* priv_same_addr - SA (LEN bytes) names the same address and port as pre-bound slot P. */
static int priv_same_addr(const struct sockaddr *sa, socklen_t len, int p)
{
    const struct sockaddr *q = (const struct sockaddr *)&priv_pre[p].sa;

    if (sa->sa_family != q->sa_family)
        return 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const void *)sa, *b = (const void *)q;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const void *)sa, *b = (const void *)q;
        return a->sin6_port == b->sin6_port &&
               memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0 &&
               a->sin6_scope_id == b->sin6_scope_id;
    }
    return 0;
}

int priv_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    for (int i = 0; i < priv_npre; i++) {
        if (!priv_same_addr(sa, len, i))
            continue;
        if (dup3(priv_pre[i].fd, fd, O_CLOEXEC) < 0)
            return -1;
        close(priv_pre[i].fd);
        priv_pre[i] = priv_pre[--priv_npre];
        return 0;
    }
    return bind(fd, sa, len);
}

void priv_prebind_release(void)
{
    while (priv_npre > 0)
        close(priv_pre[--priv_npre].fd);
}

/* priv_add_group - add GID to the supplementary groups (after initgroups): the daemon
 * reads the maildrop's files (mode 0640, group setgid_group) and gives the control
 * socket that group. 0 ok, -1/errno. */
static int priv_add_group(gid_t gid)
{
    gid_t groups[NGROUPS_MAX + 1];
    int n = getgroups(NGROUPS_MAX, groups);

    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return 0;
    groups[n++] = gid;
    return setgroups((size_t)n, groups);
}

int priv_drop(char **err)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;

    *err = NULL;
    if (!priv.root || priv.dropped)
        return 0;
    /* groups first: after setresuid we could no longer change them; initgroups gives
     * the account its supplementary groups (e.g. sasl for saslauthd), nothing else */
    if (initgroups(priv.name, priv.gid) < 0)
        return priv_seterr(err, "mail_owner %s: initgroups: %s", priv.name, strerror(errno));
    if (priv_add_group(priv.sgid) < 0)
        return priv_seterr(err, "setgid_group: cannot add group %lu to %s's groups: %s",
                           (unsigned long)priv.sgid, priv.name, strerror(errno));
    if (setresgid(priv.gid, priv.gid, priv.gid) < 0)
        return priv_seterr(err, "mail_owner %s: setresgid(%lu): %s", priv.name,
                           (unsigned long)priv.gid, strerror(errno));
    if (setresuid(priv.uid, priv.uid, priv.uid) < 0)
        return priv_seterr(err, "mail_owner %s: setresuid(%lu): %s", priv.name,
                           (unsigned long)priv.uid, strerror(errno));
    /* verify: every id is the account's, and root cannot be regained */
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != priv.uid ||
        eu != priv.uid || su != priv.uid || rg != priv.gid || eg != priv.gid || sg != priv.gid)
        return priv_seterr(err, "mail_owner %s: the user and group IDs did not change", priv.name);
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0)
        return priv_seterr(err, "mail_owner %s: root privileges could be regained after the drop",
                           priv.name);
    priv.dropped = 1;
    return 0;
}
