/*
 * sendmail.c - the Sendmail/Postfix command-line contract for local programs
 * (PHP's mail(), cron, Java's sendmail transports): `sendmail [options]
 * [recipient ...]` reads a message on standard input and hands it, with its
 * sender and recipients, to postdrop (setgid setgid_group), which puts it in
 * the maildrop where the daemon's pickup finds it - also while mtad is down.
 * Also `mailq` (= -bp: postqueue -p), -q (postqueue -f), `newaliases` (-bi:
 * nothing to do, mta has no alias database) and -bs (SMTP on standard input and
 * output: a small blocking dialogue, this is its own process). Options and exit
 * codes (sysexits.h) as Postfix's sendmail; docs/sendmail.md lists them.
 * Not privileged: what it checks, postdrop and pickup check again.
 * The address lists are in sendmail_rcpt.c, -bs in sendmail_smtp.c.
 * Not here: header completion (Received:, Date:, Message-Id:, From:, Bcc
 * removal: pickup, as Postfix's cleanup), the maildrop file itself (postdrop).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "mta/conf.h"
#include "mta/maildrop.h"
#include "sendmail_int.h"

#define SM_DEFAULT_SIZE_LIMIT 10240000LL /* message_size_limit when the file is unreadable */

enum sm_mode { SM_ENQUEUE, SM_MAILQ, SM_FLUSHQ, SM_NEWALIAS, SM_USER, SM_IGNORE, SM_DAEMON };

static const char *sm_prog = "sendmail";
static const char *sm_config; /* the configuration file chosen */
static int sm_config_custom;  /* chosen by -C or MAIL_CONFIG */
struct conf *sm_conf;         /* NULL when the file could not be read (not ours) */
long long sm_size_limit = SM_DEFAULT_SIZE_LIMIT;
static char sm_cmd_dir[PATH_MAX]; /* where postdrop and postqueue are */

/* sm_fatal - "sendmail: fatal: ..." on stderr and exit STATUS (sysexits.h), as Postfix's. */
void sm_fatal(int status, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: fatal: ", sm_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

/* sm_warn - "sendmail: warning: ..." on stderr. */
static void __attribute__((format(printf, 1, 2))) sm_warn(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: warning: ", sm_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * sm_getline - the next line of IN (its LF included when there is one) into *BUF, keeping at
 * most MAX bytes: the rest of a longer line is read and dropped and *OVER set, so that no
 * input makes us hold more than the message size limit. The length kept, or -1 at the end.
 */
ssize_t sm_getline(FILE *in, char **buf, size_t *cap, size_t max, int *over)
{
    size_t n = 0;
    int ch;

    *over = 0;
    while ((ch = getc_unlocked(in)) != EOF) {
        if (n < max) {
            if (n + 2 > *cap) {
                size_t c = *cap ? *cap * 2 : 1024;
                if (!(*buf = realloc(*buf, c)))
                    sm_fatal(EX_OSERR, "out of memory");
                *cap = c;
            }
            (*buf)[n++] = (char)ch;
        } else
            *over = 1;
        if (ch == '\n')
            break;
    }
    if (n == 0 && !*over)
        return -1;
    if (*buf)
        (*buf)[n] = 0;
    return (ssize_t)n;
}

/*
 * sm_read_message - the message on standard input into MSG as LF lines: trailing CRs
 * stripped (CRLF input from PHP on Windows-style programs and pipes alike), leading
 * "From " (mbox) lines skipped, a lone "." ends it unless IGNORE_DOTS (-i), a last line
 * without LF completed. Over the size limit (counted as stored, CRLF): fatal.
 */
static void sm_read_message(FILE *in, struct sm_buf *msg, int ignore_dots, const char *sender)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int first = 1;
    long long stored = 0;

    int over;

    while ((n = sm_getline(in, &line, &cap, (size_t)sm_size_limit + 2, &over)) >= 0) {
        size_t len = (size_t)n;
        if (over)
            sm_fatal(EX_UNAVAILABLE, "%s(%lu): message file too big", sender,
                     (unsigned long)getuid());
        if (len == 0)
            continue; /* only after an overlong line: never */
        if (line[len - 1] == '\n')
            len--;
        while (len > 0 && line[len - 1] == '\r')
            len--;
        if (first) {
            size_t gt = strspn(line, ">");
            if (gt < len && len - gt >= 5 && memcmp(line + gt, "From ", 5) == 0)
                continue;
            first = 0;
        }
        if (!ignore_dots && len == 1 && line[0] == '.')
            break;
        stored += (long long)len + 2;
        if (stored > sm_size_limit)
            sm_fatal(EX_UNAVAILABLE, "%s(%lu): message file too big", sender,
                     (unsigned long)getuid());
        sm_add(msg, line, len);
        sm_add(msg, "\n", 1);
    }
    if (ferror(in))
        sm_fatal(EX_DATAERR, "%s(%lu): error reading input: %s", sender, (unsigned long)getuid(),
                 strerror(errno));
    free(line);
}

/* sm_fullname - -F, else $NAME, else the GECOS name ("&" is the capitalized login), as
 * Postfix's; "" when there is none or it is unusable (too long, control bytes). */
static void sm_fullname(const char *opt, const struct passwd *pw, char *out, size_t outlen)
{
    const char *src = opt ? opt : getenv("NAME");
    size_t n = 0;

    out[0] = 0;
    if (src) {
        snprintf(out, outlen, "%s", src);
    } else if (pw && pw->pw_gecos) {
        for (const char *p = pw->pw_gecos; *p && *p != ',' && n + 1 < outlen; p++) {
            if (*p == '&') {
                for (const char *l = pw->pw_name; *l && n + 1 < outlen; l++)
                    out[n++] = (char)(l == pw->pw_name ? toupper((unsigned char)*l) : *l);
            } else
                out[n++] = *p;
        }
        out[n] = 0;
    }
    if (strlen(out) > MAILDROP_FULLNAME_MAX || !maildrop_text_ok(out, strlen(out)))
        out[0] = 0;
}

/* sm_exec_path - PROG in the command directory (command_directory, else our own). */
static void sm_exec_path(const char *prog, char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/%s", sm_cmd_dir, prog) >= (int)len)
        sm_fatal(EX_SOFTWARE, "command_directory: path too long");
}

/*
 * sm_postdrop - run postdrop with the maildrop stream for one message; its exit status
 * (0: the message is in the maildrop, on stable storage). postdrop reports its own
 * errors on stderr.
 */
int sm_postdrop(const char *sender, const char *fullname, int body_8bit, const struct sm_rcpts *r,
                const struct sm_buf *msg)
{
    char path[PATH_MAX], num[32];
    struct sm_buf s = {0};
    int pfd[2], status;
    pid_t pid;

    sm_exec_path("postdrop", path, sizeof(path));
    sm_adds(&s, MAILDROP_MAGIC "\nsender ");
    sm_adds(&s, sender);
    sm_adds(&s, "\n");
    if (*fullname) {
        sm_adds(&s, "fullname ");
        sm_adds(&s, fullname);
        sm_adds(&s, "\n");
    }
    if (body_8bit)
        sm_adds(&s, "8bit\n");
    for (int i = 0; i < r->n; i++) {
        sm_adds(&s, "rcpt ");
        sm_adds(&s, r->v[i]);
        sm_adds(&s, "\n");
    }
    snprintf(num, sizeof(num), "content %zu\n", msg->len);
    sm_adds(&s, num);
    if (msg->len)
        sm_add(&s, msg->p, msg->len);
    sm_adds(&s, "end\n");

    if (pipe2(pfd, O_CLOEXEC) != 0)
        sm_fatal(EX_OSERR, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        sm_fatal(EX_OSERR, "fork: %s", strerror(errno));
    if (pid == 0) {
        char *argv[5];
        int a = 0;
        dup2(pfd[0], 0);
        argv[a++] = "postdrop";
        if (sm_config_custom) {
            argv[a++] = "-C";
            argv[a++] = (char *)sm_config;
        }
        argv[a] = NULL;
        execv(path, argv);
        fprintf(stderr, "%s: fatal: %s(%lu): unable to execute %s: %s\n", sm_prog, sender,
                (unsigned long)getuid(), path, strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    close(pfd[0]);
    for (size_t off = 0; off < s.len;) {
        ssize_t w = write(pfd[1], s.p + off, s.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* postdrop refused early: its status says why */
        off += (size_t)w;
    }
    close(pfd[1]);
    free(s.p);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            sm_fatal(EX_OSERR, "waitpid: %s", strerror(errno));
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return EX_TEMPFAIL;
}

/* sm_run_replace - exec PROG (postqueue) from the command directory with ARGS. */
static void __attribute__((noreturn))
sm_run_replace(const char *prog, const char *a1, const char *a2)
{
    char path[PATH_MAX];
    char *argv[6];
    int a = 0;

    sm_exec_path(prog, path, sizeof(path));
    argv[a++] = (char *)prog;
    if (sm_config_custom) {
        argv[a++] = "-c";
        argv[a++] = (char *)sm_config;
    }
    argv[a++] = (char *)a1;
    if (a2)
        argv[a++] = (char *)a2;
    argv[a] = NULL;
    fflush(NULL);
    execv(path, argv);
    sm_fatal(EX_UNAVAILABLE, "execvp %s: %s", path, strerror(errno));
}

/* sm_sender - the envelope sender from -f (angle brackets dropped; "<>" is the null sender),
 * else the login name of the real uid. */
static char *sm_sender(const char *opt, const struct passwd *pw)
{
    char *s;

    if (opt) {
        size_t len = strlen(opt);
        if (len >= 2 && opt[0] == '<' && opt[len - 1] == '>')
            s = strndup(opt + 1, len - 2);
        else
            s = strdup(opt);
        if (!s)
            sm_fatal(EX_OSERR, "out of memory");
        if (!maildrop_addr_ok(s, 1))
            sm_fatal(EX_USAGE, "bad sender address syntax: %s", opt);
        return s;
    }
    if (!pw)
        sm_fatal(EX_OSERR, "no login name found for user ID %lu", (unsigned long)getuid());
    if (!(s = strdup(pw->pw_name)))
        sm_fatal(EX_OSERR, "out of memory");
    return s;
}

/* --- configuration --- */

/* sm_load_config - choose the file (-C, else $MAIL_CONFIG, else the installed one) and read
 * it when we may: the installed one is often readable by root and setgid_group only, and
 * then postdrop (setgid) reads it and applies its limits. */
static void sm_load_config(const char *opt)
{
    static char buf[PATH_MAX];
    const char *env = getenv("MAIL_CONFIG");
    char *errors = NULL;
    struct stat st;

    sm_config_custom = 1;
    if (opt)
        sm_config = opt;
    else if (env && *env) {
        if (stat(env, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (snprintf(buf, sizeof(buf), "%s/mtad.conf", env) >= (int)sizeof(buf))
                sm_fatal(EX_USAGE, "MAIL_CONFIG: path too long");
            sm_config = buf;
        } else
            sm_config = env;
    } else {
        sm_config = MTA_DEFAULT_CONF;
        sm_config_custom = 0;
    }
    if (access(sm_config, R_OK) != 0 && errno == EACCES)
        sm_conf = NULL;
    else if (!(sm_conf = conf_load(sm_config, NULL, 0, &errors))) {
        fputs(errors ? errors : "", stderr);
        sm_fatal(EX_TEMPFAIL, "cannot read the configuration %s", sm_config);
    }
    if (sm_conf)
        sm_size_limit = sm_conf->message_size_limit;
    if (sm_conf && sm_conf->command_directory[0]) {
        snprintf(sm_cmd_dir, sizeof(sm_cmd_dir), "%s", sm_conf->command_directory);
    } else {
        /* our own directory: postdrop and postqueue are installed and built next to us */
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        char *slash;
        if (n <= 0)
            sm_fatal(EX_SOFTWARE, "cannot find the command directory: set command_directory");
        self[n] = 0;
        slash = strrchr(self, '/');
        *slash = 0;
        snprintf(sm_cmd_dir, sizeof(sm_cmd_dir), "%s", self[0] ? self : "/");
    }
}

int main(int argc, char **argv)
{
    enum sm_mode mode = SM_ENQUEUE;
    const char *opt_sender = NULL, *opt_fullname = NULL, *opt_config = NULL, *base;
    const char *flush_site = NULL, *flush_id = NULL, *qtime = NULL;
    int extract = 0, ignore_dots = 0, body_8bit = 0, c;

    signal(SIGPIPE, SIG_IGN);
    base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (strcmp(base, "mailq") == 0)
        mode = SM_MAILQ;
    else if (strcmp(base, "newaliases") == 0)
        mode = SM_NEWALIAS;
    if (mode != SM_ENQUEUE)
        sm_prog = mode == SM_MAILQ ? "mailq" : "newaliases";

    /* Postfix's option loop: "-q" alone is no getopt option; the rest stops at the first
     * recipient ("+"), so a recipient starting with '-' after them is not an option */
    opterr = 0;
    while (argv[optind ? optind : 1]) {
        if (optind == 0)
            optind = 1;
        if (strcmp(argv[optind], "-q") == 0) {
            if (mode != SM_DAEMON)
                mode = SM_FLUSHQ;
            optind++;
            continue;
        }
        if ((c = getopt(argc, argv, "+A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx")) == -1)
            break;
        switch (c) {
        default: /* -A -G -L -U -c -e -h -m -p -x, -N and -R (DSN), -V (ENVID), -O: ignored */
            break;
        case 'n':
            sm_fatal(EX_USAGE, "-%c option not supported", c);
        case 'B':
            if (strcmp(optarg, "8BITMIME") == 0)
                body_8bit = 1;
            else if (strcmp(optarg, "7BIT") != 0)
                sm_fatal(EX_USAGE, "-B option needs 8BITMIME or 7BIT");
            break;
        case 'C':
            opt_config = optarg;
            break;
        case 'F':
            opt_fullname = optarg;
            break;
        case 'I':
            mode = SM_NEWALIAS;
            break;
        case 'X':
            if (optarg[0] != 'V')
                sm_fatal(EX_USAGE, "unsupported: -%c%c", c, optarg[0]);
            sm_warn("VERP (-XV) is not supported -- ignored");
            break;
        case 'b':
            switch (optarg[0]) {
            case 'd':
            case 'l':
                mode = SM_DAEMON;
                break;
            case 'h':
            case 'H':
                mode = SM_IGNORE;
                break;
            case 'i':
                mode = SM_NEWALIAS;
                break;
            case 'm':
                mode = SM_ENQUEUE;
                break;
            case 'p':
                mode = SM_MAILQ;
                break;
            case 's':
                mode = SM_USER;
                break;
            default:
                sm_fatal(EX_USAGE, "unsupported: -%c%c", c, optarg[0]);
            }
            break;
        case 'f':
        case 'r':
            opt_sender = optarg;
            break;
        case 'i':
            ignore_dots = 1;
            break;
        case 'o':
            if (optarg[0] == 'i')
                ignore_dots = 1;
            break; /* -oA (alias file), -oem, -om, -o7/-o8 and the rest: ignored */
        case 'q':
            if (isdigit((unsigned char)optarg[0]))
                qtime = optarg;
            else if (optarg[0] == 'R') {
                if (!*(flush_site = optarg + 1))
                    sm_fatal(EX_USAGE, "specify: -qRsitename");
            } else if (optarg[0] == 'I') {
                if (!*(flush_id = optarg + 1))
                    sm_fatal(EX_USAGE, "specify: -qIqueueid");
            } else /* -qS, -qQ, ...: refused in Postfix's words (docs/sendmail.md) */
                sm_fatal(EX_USAGE, "-q%c is not implemented", optarg[0]);
            break;
        case 't':
            extract = 1;
            break;
        case 'v':
            break;
        case '?':
        case ':':
            sm_fatal(EX_USAGE, "usage: %s [options]", argv[0]);
        }
    }
    if (extract && mode != SM_ENQUEUE)
        sm_fatal(EX_USAGE, "-t can be used only in delivery mode");
    if (flush_site && mode != SM_ENQUEUE)
        sm_fatal(EX_USAGE, "-qR can be used only in delivery mode");
    if (flush_id && mode != SM_ENQUEUE)
        sm_fatal(EX_USAGE, "-qI can be used only in delivery mode");
    if (qtime && mode != SM_DAEMON)
        return 0; /* "-q30m": a queue-run interval for a Sendmail daemon; nothing to do */

    if (mode == SM_NEWALIAS) {
        /* Postfix's newaliases with empty alias_maps: nothing to rebuild, exit 0. mta has
         * no local delivery, hence no alias database (docs/sendmail.md); no configuration
         * is needed for that, so package scripts that run newaliases never fail here. */
        if (argv[optind])
            sm_fatal(EX_USAGE, "alias initialization mode requires no recipient");
        return 0;
    }
    if (mode == SM_IGNORE)
        return 0;
    sm_load_config(opt_config);
    switch (mode) {
    case SM_MAILQ:
        if (argv[optind])
            sm_fatal(EX_USAGE, "display queue mode requires no recipient");
        sm_run_replace("postqueue", "-p", NULL);
    case SM_FLUSHQ:
        if (argv[optind])
            sm_fatal(EX_USAGE, "flush queue mode requires no recipient");
        sm_run_replace("postqueue", "-f", NULL);
    case SM_DAEMON:
        sm_fatal(EX_USAGE, "daemon mode is not supported: start mtad (systemctl start mtad)");
    case SM_NEWALIAS:
    case SM_IGNORE:
        return 0; /* handled above */
    case SM_USER:
        if (argv[optind])
            sm_fatal(EX_USAGE, "stand-alone mode requires no recipient");
        c = sm_smtp();
        conf_free(sm_conf);
        return c;
    case SM_ENQUEUE:
        break;
    }
    if (flush_site || flush_id) {
        if (argv[optind])
            sm_fatal(EX_USAGE, "flush %s requires no recipient", flush_site ? "site" : "queue_id");
        if (flush_id)
            sm_run_replace("postqueue", "-i", flush_id);
        sm_run_replace("postqueue", "-f", NULL); /* one queue: flushing a site flushes all */
    }

    /* enqueue: sender, message, recipients; then postdrop */
    struct passwd *pw = getpwuid(getuid());
    char *sender = sm_sender(opt_sender, pw);
    char fullname[MAILDROP_FULLNAME_MAX + 2];
    struct sm_buf msg = {0};
    struct sm_rcpts rcpts = {0}, normal = {0}, resent = {0};
    int is_resent = 0, status;

    sm_fullname(opt_fullname, pw, fullname, sizeof(fullname));
    for (int i = optind; i < argc; i++)
        sm_addr_list(&rcpts, argv[i], "command line");
    sm_read_message(stdin, &msg, ignore_dots, sender);
    if (extract) {
        /* Postfix 2.1+: header recipients are added to those on the command line */
        sm_extract(&msg, &normal, &resent, &is_resent);
        struct sm_rcpts *from = is_resent ? &resent : &normal;
        for (int i = 0; i < from->n; i++)
            sm_rcpt_add(&rcpts, from->v[i]);
    }
    if (rcpts.n == 0)
        sm_fatal(EX_USAGE,
                 extract ? "%s(%lu): No recipient addresses found in message header"
                         : "%s(%lu): Recipient addresses must be specified on the command line "
                           "or via the -t option",
                 sender, (unsigned long)getuid());
    status = sm_postdrop(sender, fullname, body_8bit, &rcpts, &msg);
    if (status != 0)
        sm_fatal(status, "%s(%lu): unable to queue the message: postdrop exit status %d", sender,
                 (unsigned long)getuid(), status);
    free(sender);
    free(msg.p);
    sm_rcpts_free(&rcpts);
    sm_rcpts_free(&normal);
    sm_rcpts_free(&resent);
    conf_free(sm_conf);
    return 0;
}
