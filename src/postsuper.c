/*
 * postsuper.c - Postfix's postsuper(1) for mta: queue maintenance for the
 * superuser.
 *   postsuper [-c FILE] [-d ID|ALL|-] [-h ID|ALL|-] [-H ID|ALL|-] ...
 * -d deletes, -h puts on hold, -H releases from hold; each may be given many
 * times and runs in the order given; "-" reads queue IDs from standard input,
 * one per line. The summary ("Deleted: N messages", "Placed on hold: ...",
 * "Released from hold: ...") goes to stderr as Postfix's does; the per-message
 * records ("ID: removed", "ID: placed on hold", "ID: released from hold") are
 * written to the mail log by mtad. -p, -s, -S and -v are accepted and do
 * nothing (mtad's start-up recovery checks the spool); -e, -f and -r and queue
 * name arguments are refused.
 * Only root, mail_owner and the owner of the data volume may run it (Postfix:
 * root only; mta's daemon may run as an ordinary user). It talks to the running
 * mtad over DATA_VOLUME/control ("delete/hold/release --count ID...", then
 * "hold-sync" until holds and releases are on stable storage); Postfix's
 * postsuper renames queue files itself, mta's queue lives in the daemon.
 * Not here: what the commands do (src/queue/sched_admin.c, sched.c).
 */
#include "mta/conf.h"
#include "mta/control.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* IDs per control request: well within CONTROL_ARGS_MAX and CONTROL_LINE_MAX */
#define POSTSUPER_BATCH 32
#define POSTSUPER_ID_MAX 23

enum { PS_DELETE, PS_HOLD, PS_RELEASE, PS_NOPS };

static const char *const postsuper_cmd[PS_NOPS] = {"delete", "hold", "release"};

struct postsuper {
    const char *data_volume;
    int asked[PS_NOPS]; /* the operation was requested: its summary line is printed */
    long done[PS_NOPS]; /* messages it applied to */
    char *ids[POSTSUPER_BATCH];
    int nids, op;
};

/* postsuper_fatal - "postsuper: fatal: TEXT" on stderr, exit 1 (Postfix's msg_fatal). */
static void postsuper_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void postsuper_fatal(const char *fmt, ...)
{
    va_list ap;

    fputs("postsuper: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* postsuper_request - LINE to the daemon; its output (malloc'd) or a fatal error. */
static char *postsuper_request(struct postsuper *ps, const char *line)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *of = open_memstream(&out, &outlen);
    struct control_reply r;

    if (!of)
        postsuper_fatal("out of memory");
    control_call(ps->data_volume, line, of, &r);
    fclose(of);
    if (r.rc != CONTROL_OK) {
        r.text[strcspn(r.text, "\n")] = '\0';
        if (r.rc == CONTROL_REFUSED && strstr(r.text, "permission denied"))
            postsuper_fatal("use of this command is reserved for the superuser");
        postsuper_fatal("%s%s", r.rc == CONTROL_DOWN ? "mail system is down: " : "", r.text);
    }
    return out;
}

/* postsuper_flush - run the batched IDs of the current operation. */
static void postsuper_flush(struct postsuper *ps)
{
    char line[CONTROL_LINE_MAX], *out;
    size_t n;
    int i;

    if (!ps->nids)
        return;
    n = (size_t)snprintf(line, sizeof(line), "%s --count", postsuper_cmd[ps->op]);
    for (i = 0; i < ps->nids; i++) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", ps->ids[i]);
        free(ps->ids[i]);
    }
    ps->nids = 0;
    out = postsuper_request(ps, line);
    ps->done[ps->op] += strtol(out ? out : "0", NULL, 10);
    free(out);
}

/* postsuper_id_ok - 1 when ID may be a queue ID (Postfix mail_queue_id_ok: alphanumerics). */
static int postsuper_id_ok(const char *id)
{
    size_t n = strlen(id);

    return n > 0 && n <= POSTSUPER_ID_MAX &&
           strspn(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == n;
}

/* postsuper_one - OP on ID ("ALL": every message), batched with the IDs before it. */
static void postsuper_one(struct postsuper *ps, int op, const char *id)
{
    if (strcmp(id, "ALL") != 0 && !postsuper_id_ok(id)) {
        fprintf(stderr, "postsuper: warning: invalid mail queue id: %s\n", id);
        return;
    }
    if (ps->nids && (ps->op != op || ps->nids == POSTSUPER_BATCH))
        postsuper_flush(ps);
    ps->op = op;
    if (!(ps->ids[ps->nids] = strdup(id)))
        postsuper_fatal("out of memory");
    ps->nids++;
}

/* postsuper_stream - OP on each queue ID read from standard input, one per line. */
static void postsuper_stream(struct postsuper *ps, int op)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;

    while ((n = getline(&buf, &cap, stdin)) >= 0) {
        if (n > 0 && buf[n - 1] == '\n')
            buf[--n] = '\0';
        postsuper_one(ps, op, buf);
    }
    free(buf);
}

/*
 * postsuper_sync - wait until the daemon has the holds and releases on stable storage
 * (Postfix's postsuper has renamed the file when it reports), at most 30 s.
 */
static void postsuper_sync(struct postsuper *ps)
{
    struct timespec ms10 = {0, 10 * 1000 * 1000};
    long pending = 0;
    int i;

    for (i = 0; i < 3000; i++) {
        char *out = postsuper_request(ps, "hold-sync");
        pending = strtol(out ? out : "0", NULL, 10);
        free(out);
        if (pending <= 0)
            return;
        nanosleep(&ms10, NULL);
    }
    fprintf(stderr, "postsuper: warning: %ld hold or release change%s not yet on stable storage\n",
            pending, pending == 1 ? " is" : "s are");
}

/* postsuper_allowed - root, mail_owner, or the owner of the data volume (the daemon's
 * account when it runs as an ordinary user). */
static int postsuper_allowed(const struct conf *c)
{
    uid_t uid = getuid();
    struct passwd *pw;
    struct stat st;

    if (uid == 0)
        return 1;
    if (c->mail_owner[0] && (pw = getpwnam(c->mail_owner)) && pw->pw_uid == uid)
        return 1;
    return stat(c->data_volume, &st) == 0 && st.st_uid == uid;
}

int main(int argc, char **argv)
{
    static const char *const summary[PS_NOPS] = {"Deleted", "Placed on hold", "Released from hold"};
    const char *file = getenv("MAIL_CONFIG");
    struct postsuper ps;
    struct conf *c;
    char *errors = NULL;
    int ch, op, i, any_hold = 0;

    memset(&ps, 0, sizeof(ps));
    if (getuid() != geteuid() || getgid() != getegid())
        postsuper_fatal("this postfix command must not run as a set-uid process");
    if (file && !file[0])
        file = NULL;
    /* first pass: the options, so the configuration and permission come before any work */
    while ((ch = getopt(argc, argv, "c:d:e:f:h:H:pr:sSv")) != -1) {
        switch (ch) {
        case 'c':
            file = optarg;
            break;
        case 'd':
        case 'h':
        case 'H':
        case 'p':
        case 's':
        case 'S':
        case 'v':
            break;
        case 'e':
        case 'f':
        case 'r':
            postsuper_fatal("-%c is not supported by mta (supported: -d, -h, -H)", ch);
        default:
            postsuper_fatal("usage: postsuper [-c config_file] [-d queue_id (delete)] "
                            "[-h queue_id (hold)] [-H queue_id (un-hold)] [-p] [-s] [-S] [-v]");
        }
    }
    if (optind < argc)
        postsuper_fatal("queue name arguments are not supported by mta: %s "
                        "(-d, -h and -H apply to every queue)",
                        argv[optind]);
    c = conf_load(file ? file : MTA_DEFAULT_CONF, NULL, 0, &errors);
    if (!c) {
        fputs(errors ? errors : "cannot load the configuration\n", stderr);
        postsuper_fatal("cannot read the configuration %s", file ? file : MTA_DEFAULT_CONF);
    }
    if (!postsuper_allowed(c))
        postsuper_fatal("use of this command is reserved for the superuser");
    ps.data_volume = c->data_volume;
    /* second pass: the operations in the order given, as Postfix's */
    optind = 1;
    while ((ch = getopt(argc, argv, "c:d:e:f:h:H:pr:sSv")) != -1) {
        op = ch == 'd' ? PS_DELETE : ch == 'h' ? PS_HOLD : ch == 'H' ? PS_RELEASE : -1;
        if (op < 0)
            continue;
        ps.asked[op] = 1;
        any_hold |= op != PS_DELETE;
        if (strcmp(optarg, "-") == 0)
            postsuper_stream(&ps, op);
        else
            postsuper_one(&ps, op, optarg);
    }
    postsuper_flush(&ps);
    if (any_hold)
        postsuper_sync(&ps);
    for (i = 0; i < PS_NOPS; i++)
        if (ps.asked[i])
            fprintf(stderr, "postsuper: %s: %ld message%s\n", summary[i], ps.done[i],
                    ps.done[i] == 1 ? "" : "s");
    conf_free(c);
    return 0;
}
