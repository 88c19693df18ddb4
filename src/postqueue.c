/*
 * postqueue.c - Postfix's postqueue(1) for mta: the queue operations any local
 * user may run.
 *   postqueue [-c FILE] -p       the mail queue in mailq format (also: mailq, sendmail -bp)
 *   postqueue [-c FILE] -j       the mail queue as JSON lines (Postfix 3.7's fields)
 *   postqueue [-c FILE] -f       deliver all deferred mail now
 *   postqueue [-c FILE] -i ID    deliver one deferred message now
 *   postqueue [-c FILE] -s SITE  refused: mta has no per-destination flush service
 * The configuration is -c FILE, else $MAIL_CONFIG, else the installed default
 * (mta's configuration is one file, where Postfix's -c names a directory).
 * It asks the running mtad over DATA_VOLUME/control with the public commands
 * ("queue page", "queue-json page", "flush", "flush-id ID"), so the listing is the
 * daemon's one formatter (sched_list), the same bytes as mtactl queue and
 * /api/queue. The listing comes in pages of POSTQUEUE_PAGE messages, each
 * continuing after the last ID of the one before, so neither the daemon nor its
 * loop ever holds or formats the whole of a large queue at once; the mailq
 * trailer is written here from what was listed, as Postfix's showq counts. Installed setgid
 * setgid_group (as Postfix's postqueue is setgid postdrop) it reaches the socket for an
 * unprivileged user; a configuration file given with -c or $MAIL_CONFIG keeps that group only when
 * it is root's own and world-readable, so a user's file cannot borrow it. Messages and exit codes
 * (sysexits.h) as Postfix 3.7's postqueue. Not here: what the commands do
 * (src/queue/sched_admin.c).
 */
#include "mta/conf.h"
#include "mta/control.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

enum postqueue_mode {
    PQ_MODE_DEFAULT = 0,
    PQ_MODE_MAILQ,
    PQ_MODE_JSON,
    PQ_MODE_FLUSH,
    PQ_MODE_FLUSH_ID,
    PQ_MODE_FLUSH_SITE,
};

/* postqueue_fatal - "postqueue: fatal: TEXT" on stderr, exit STATUS (Postfix's msg_fatal_status).
 */
static void postqueue_fatal(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void postqueue_fatal(int status, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("postqueue: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

/* postqueue_usage - Postfix's usage line, EX_USAGE. */
static void postqueue_usage(void) __attribute__((noreturn));
static void postqueue_usage(void)
{
    postqueue_fatal(EX_USAGE, "usage: postqueue -f | postqueue -i queueid | postqueue -j | "
                              "postqueue -p | postqueue -s site");
}

/* postqueue_queue_id_ok - 1 when ID looks like a queue ID (Postfix mail_queue_id_ok). */
static int postqueue_queue_id_ok(const char *id)
{
    return id[0] && strlen(id) < 24 && id[strspn(id, "0123456789ABCDEFabcdef")] == '\0';
}

/* postqueue_site_ok - 1 when SITE is a host name or [address] (Postfix valid_hostname). */
static int postqueue_site_ok(const char *site)
{
    size_t n = strlen(site);

    if (n == 0 || n > 255)
        return 0;
    if (site[0] == '[')
        return n > 2 && site[n - 1] == ']' && strspn(site + 1, "0123456789abcdefABCDEF.:") == n - 2;
    return strspn(site, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_") == n &&
           site[0] != '.' && site[0] != '-';
}

static int postqueue_setgid; /* started set-group-ID (the group may have been dropped since) */

#ifdef __SANITIZE_ADDRESS__
/* LeakSanitizer cannot run in a set-group-ID process (it is not dumpable, and the sanitizer
 * ignores ASAN_OPTIONS there): sanitizer builds skip the leak check in that case only. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return postqueue_setgid;
}
#endif

/* postqueue_trusted - 1 when FILE is root's, writable only by root and readable by all. */
static int postqueue_trusted(const char *file)
{
    struct stat st;

    return stat(file, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 &&
           (st.st_mode & (S_IWGRP | S_IWOTH)) == 0 && (st.st_mode & S_IROTH) != 0;
}

/* Messages asked for per page of the listing. */
#define POSTQUEUE_PAGE 1000

/*
 * postqueue_list - the paged listing ("queue page" or "queue-json page" as CMD) onto stdout,
 * the mailq trailer at the end when MAILQ. Returns control_call's result (R says why).
 */
static int postqueue_list(const char *data_volume, const char *cmd, int mailq,
                          struct control_reply *r)
{
    char line[CONTROL_LINE_MAX], after[64] = "", last[64];
    long long bytes = 0, pbytes;
    long total = 0, shown;
    int more, rc;

    do {
        char *buf = NULL, *nl;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        if (!mem)
            postqueue_fatal(EX_OSERR, "out of memory");
        snprintf(line, sizeof(line), "%s page limit=%d%s%s", cmd, POSTQUEUE_PAGE,
                 after[0] ? " after=" : "", after);
        rc = control_call(data_volume, line, mem, r);
        if (fclose(mem) != 0)
            postqueue_fatal(EX_OSERR, "out of memory");
        if (rc != CONTROL_OK) {
            free(buf);
            return rc;
        }
        nl = buf ? memchr(buf, '\n', len) : NULL;
        if (!nl || sscanf(buf, "page %ld %lld %d %63s", &shown, &pbytes, &more, last) != 4 ||
            shown < 0 || pbytes < 0 || (shown > 0 && strcmp(last, "-") == 0) ||
            (shown > 0 && strcmp(last, after) == 0)) { /* no progress: never loop */
            free(buf);
            postqueue_fatal(EX_SOFTWARE, "malformed showq server response");
        }
        fwrite(nl + 1, 1, len - (size_t)(nl + 1 - buf), stdout);
        free(buf);
        total += shown;
        bytes += pbytes;
        if (shown > 0)
            snprintf(after, sizeof(after), "%s", last);
    } while (more && shown > 0);
    if (!mailq)
        return CONTROL_OK;
    if (total == 0)
        fputs("Mail queue is empty\n", stdout);
    else
        printf("\n-- %lld Kbytes in %ld Request%s.\n", bytes / 1024, total, total == 1 ? "" : "s");
    return CONTROL_OK;
}

int main(int argc, char **argv)
{
    const char *file = getenv("MAIL_CONFIG"), *site = NULL, *id = NULL, *line = NULL;
    enum postqueue_mode mode = PQ_MODE_DEFAULT;
    char *errors = NULL, cmd[64];
    struct control_reply r;
    struct conf *c;
    int ch, rc;

    postqueue_setgid = getegid() != getgid();
    /* set-gid: make sure 0, 1 and 2 are open before anything else is (Postfix does too) */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            postqueue_fatal(EX_UNAVAILABLE, "open /dev/null: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN); /* mailq | head: end quietly */
    if (file && !file[0])
        file = NULL;
    while ((ch = getopt(argc, argv, "c:fi:jps:v")) != -1) {
        switch (ch) {
        case 'c':
            file = optarg;
            break;
        case 'f':
            if (mode != PQ_MODE_DEFAULT)
                postqueue_usage();
            mode = PQ_MODE_FLUSH;
            break;
        case 'i':
            if (mode != PQ_MODE_DEFAULT)
                postqueue_usage();
            mode = PQ_MODE_FLUSH_ID;
            id = optarg;
            break;
        case 'j':
            if (mode != PQ_MODE_DEFAULT)
                postqueue_usage();
            mode = PQ_MODE_JSON;
            break;
        case 'p':
            if (mode != PQ_MODE_DEFAULT)
                postqueue_usage();
            mode = PQ_MODE_MAILQ;
            break;
        case 's':
            if (mode != PQ_MODE_DEFAULT)
                postqueue_usage();
            mode = PQ_MODE_FLUSH_SITE;
            site = optarg;
            break;
        case 'v':
            break; /* accepted, as Postfix's (verbose logging for root only) */
        default:
            postqueue_usage();
        }
    }
    if (optind < argc || mode == PQ_MODE_DEFAULT)
        postqueue_usage();
    /*
     * Set-gid: a configuration file the caller chose keeps the group only when it is the
     * administrator's (owned by root, writable by nobody else) and readable by everyone, so
     * it can neither lead the group's access elsewhere nor show what the group may read
     * (Postfix trusts only alternate_config_directories for the same reason).
     */
    if (file && getuid() != 0 && getegid() != getgid() && !postqueue_trusted(file) &&
        setgid(getgid()) < 0)
        postqueue_fatal(EX_UNAVAILABLE, "setgid: %s", strerror(errno));
    c = conf_load(file ? file : MTA_DEFAULT_CONF, NULL, 0, &errors);
    if (!c) {
        fflush(stdout);
        fputs(errors ? errors : "cannot load the configuration\n", stderr);
        postqueue_fatal(EX_UNAVAILABLE, "cannot read the configuration %s",
                        file ? file : MTA_DEFAULT_CONF);
    }
    if (site && !postqueue_site_ok(site))
        postqueue_fatal(EX_USAGE, "Cannot flush mail queue - invalid destination: \"%.100s%s\"",
                        site, strlen(site) > 100 ? "..." : "");
    if (id && !postqueue_queue_id_ok(id))
        postqueue_fatal(EX_USAGE, "Cannot flush queue ID - invalid name: \"%.100s%s\"", id,
                        strlen(id) > 100 ? "..." : "");
    switch (mode) {
    case PQ_MODE_MAILQ:
        line = "queue";
        break;
    case PQ_MODE_JSON:
        line = "queue-json";
        break;
    case PQ_MODE_FLUSH:
        line = "flush";
        break;
    case PQ_MODE_FLUSH_ID:
        snprintf(cmd, sizeof(cmd), "flush-id %s", id);
        line = cmd;
        break;
    case PQ_MODE_FLUSH_SITE:
        /* Postfix flushes a site only through its fast flush service, for the domains of
         * fast_flush_domains; mta keeps no per-site logs: -f flushes everything */
        postqueue_fatal(EX_UNAVAILABLE, "Flush service is not configured for destination \"%s\"",
                        site);
    default:
        postqueue_usage();
    }
    if (mode == PQ_MODE_MAILQ || mode == PQ_MODE_JSON)
        rc = postqueue_list(c->data_volume, line, mode == PQ_MODE_MAILQ, &r);
    else
        rc = control_call(c->data_volume, line, stdout, &r);
    conf_free(c);
    if (rc == CONTROL_DOWN && r.err == 0) /* connected, but the daemon answered nothing */
        postqueue_fatal(EX_SOFTWARE, "malformed showq server response");
    if (rc == CONTROL_DOWN && (r.err == EACCES || r.err == EPERM))
        /* not "down": the user lacks the group (postqueue not installed setgid) */
        postqueue_fatal(EX_SOFTWARE, "Connect to the mta control service %s: %s", r.path,
                        strerror(r.err));
    if (rc == CONTROL_DOWN && (mode == PQ_MODE_MAILQ || mode == PQ_MODE_JSON))
        postqueue_fatal(EX_UNAVAILABLE,
                        "Queue report unavailable - mail system is down (Connect to the mta "
                        "control service %s: %s)",
                        r.path, strerror(r.err));
    if (rc == CONTROL_DOWN)
        postqueue_fatal(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down");
    if (rc == CONTROL_REFUSED) {
        r.text[strcspn(r.text, "\n")] = '\0';
        postqueue_fatal(EX_SOFTWARE, "%s", r.text);
    }
    if (fflush(stdout) != 0 && errno != EPIPE)
        postqueue_fatal(EX_IOERR, "output write error: %s", strerror(errno));
    return 0;
}
