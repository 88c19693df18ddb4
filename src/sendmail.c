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

#define SM_DEFAULT_SIZE_LIMIT 10240000LL /* message_size_limit when the file is unreadable */
#define SM_HEADER_FIELDS_MAX 1000        /* header fields looked at for -t */
#define SM_SMTP_LINE_MAX 2048            /* -bs command line (line_length_limit) */

enum sm_mode { SM_ENQUEUE, SM_MAILQ, SM_FLUSHQ, SM_NEWALIAS, SM_USER, SM_IGNORE, SM_DAEMON };

struct sm_buf {
    char *p;
    size_t len, cap;
};

struct sm_rcpts {
    char **v;
    int n;
};

static const char *sm_prog = "sendmail";
static const char *sm_config; /* the configuration file chosen */
static int sm_config_custom;  /* chosen by -C or MAIL_CONFIG */
static struct conf *sm_conf;  /* NULL when the file could not be read (not ours) */
static long long sm_size_limit = SM_DEFAULT_SIZE_LIMIT;
static char sm_cmd_dir[PATH_MAX]; /* where postdrop and postqueue are */

/* sm_fatal - "sendmail: fatal: ..." on stderr and exit STATUS (sysexits.h), as Postfix's. */
static void __attribute__((format(printf, 2, 3), noreturn))
sm_fatal(int status, const char *fmt, ...)
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

/* sm_add - append N bytes of P to B. */
static void sm_add(struct sm_buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(b->p = realloc(b->p, cap)))
            sm_fatal(EX_OSERR, "out of memory");
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sm_adds(struct sm_buf *b, const char *s)
{
    sm_add(b, s, strlen(s));
}

/* sm_rcpt_add - add ADDR to R unless it is there already (exact match, as given). */
static void sm_rcpt_add(struct sm_rcpts *r, const char *addr)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->v[i], addr) == 0)
            return;
    if (r->n == MAILDROP_RCPT_MAX)
        sm_fatal(EX_USAGE, "too many recipients (at most %d)", MAILDROP_RCPT_MAX);
    if (r->n % 64 == 0 && !(r->v = realloc(r->v, sizeof(char *) * (size_t)(r->n + 64))))
        sm_fatal(EX_OSERR, "out of memory");
    if (!(r->v[r->n++] = strdup(addr)))
        sm_fatal(EX_OSERR, "out of memory");
}

/* sm_rcpts_free - free R's addresses and list. */
static void sm_rcpts_free(struct sm_rcpts *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->v[i]);
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* sm_addr_finish - one element of an address list: the <route-addr> if there is one, else
 * the text with whitespace outside quotes removed; empty elements are skipped. */
static void sm_addr_finish(struct sm_rcpts *r, const char *text, size_t tlen, const char *angle,
                           size_t alen, int had_angle, const char *where)
{
    char addr[MAILDROP_ADDR_MAX + 2];
    size_t n = 0;
    const char *p = had_angle ? angle : text, *end = p + (had_angle ? alen : tlen);
    int quoted = 0;

    if (had_angle) { /* obsolete source route "@a,@b:user@c" */
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (p < end && *p == '@' && colon)
            p = colon + 1;
    }
    for (; p < end; p++) {
        if (*p == '"')
            quoted = !quoted;
        if (!quoted && (*p == ' ' || *p == '\t'))
            continue;
        if (n == sizeof(addr) - 1)
            sm_fatal(EX_DATAERR, "address too long in %s", where);
        addr[n++] = *p;
    }
    addr[n] = 0;
    if (n == 0)
        return;
    if (!maildrop_addr_ok(addr, 0))
        sm_fatal(EX_DATAERR, "bad address syntax in %s: %s", where, addr);
    sm_rcpt_add(r, addr);
}

/*
 * sm_addr_list - the addresses of an RFC 5322 address list (a To:/Cc:/Bcc: value or a
 * command-line argument) into R: comments and display names dropped, groups opened,
 * quoted strings kept whole.
 */
static void sm_addr_list(struct sm_rcpts *r, const char *v, const char *where)
{
    size_t vlen = strlen(v);
    char *text = malloc(vlen + 1), *angle = malloc(vlen + 1);
    size_t tlen = 0, alen = 0;
    int quoted = 0, comment = 0, in_angle = 0, had_angle = 0;

    if (!text || !angle)
        sm_fatal(EX_OSERR, "out of memory");
    for (const char *p = v;; p++) {
        char ch = *p;
        if (ch == 0 || (!quoted && !comment && !in_angle && (ch == ',' || ch == ';'))) {
            sm_addr_finish(r, text, tlen, angle, alen, had_angle, where);
            tlen = alen = 0;
            had_angle = 0;
            if (ch == 0)
                break;
            continue;
        }
        if (comment) {
            if (ch == '\\' && p[1])
                p++;
            else if (ch == '(')
                comment++;
            else if (ch == ')')
                comment--;
            continue;
        }
        if (quoted) {
            if (ch == '\\' && p[1]) {
                (in_angle ? angle : text)[in_angle ? alen++ : tlen++] = ch;
                ch = *++p;
            } else if (ch == '"')
                quoted = 0;
        } else if (ch == '"')
            quoted = 1;
        else if (ch == '(') {
            comment = 1;
            continue;
        } else if (ch == '<' && !in_angle) {
            in_angle = 1;
            had_angle = 1;
            alen = 0;
            continue;
        } else if (ch == '>' && in_angle) {
            in_angle = 0;
            continue;
        } else if (ch == ':' && !in_angle) {
            tlen = 0; /* "group name:" opens a group: the name is no address */
            continue;
        }
        if (in_angle)
            angle[alen++] = ch;
        else
            text[tlen++] = ch;
    }
    free(text);
    free(angle);
}

/* sm_hdr_name - when LINE is a header field "Name:", the length of Name; else 0. */
static size_t sm_hdr_name(const char *line, size_t len)
{
    size_t i = 0;

    while (i < len && line[i] > 32 && line[i] < 127 && line[i] != ':')
        i++;
    /* "Name :" (space before the colon) is obsolete syntax, still a header */
    size_t j = i;
    while (j < len && (line[j] == ' ' || line[j] == '\t'))
        j++;
    return (i > 0 && j < len && line[j] == ':') ? i : 0;
}

/*
 * sm_extract - -t: the recipients of the To:, Cc: and Bcc: fields of the header of MSG
 * (LF lines), or of Resent-To/Cc/Bcc when the message has Resent- fields (Postfix).
 */
static void sm_extract(const struct sm_buf *msg, struct sm_rcpts *normal, struct sm_rcpts *resent,
                       int *is_resent)
{
    const char *p = msg->p, *end = msg->p + msg->len;
    int fields = 0;

    *is_resent = 0;
    while (p < end && fields < SM_HEADER_FIELDS_MAX) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *hname = p;
        size_t len = (size_t)(nl - p), name;
        struct sm_buf v = {0};
        const char *q;

        name = sm_hdr_name(p, len);
        if (!name)
            break; /* the empty line, or the body starts without one */
        fields++;
        q = (const char *)memchr(p, ':', len) + 1;
        sm_add(&v, q, (size_t)(p + len - q));
        /* unfold continuation lines */
        for (p = nl + 1; p < end && (*p == ' ' || *p == '\t'); p = nl + 1) {
            nl = memchr(p, '\n', (size_t)(end - p));
            sm_add(&v, " ", 1);
            sm_add(&v, p, (size_t)(nl - p));
        }
        struct {
            const char *n;
            struct sm_rcpts *r;
        } kinds[] = {{"To", normal},        {"Cc", normal},        {"Bcc", normal},
                     {"Resent-To", resent}, {"Resent-Cc", resent}, {"Resent-Bcc", resent}};
        if (name > 7 && strncasecmp(hname, "Resent-", 7) == 0)
            *is_resent = 1;
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            if (strlen(kinds[k].n) == name && strncasecmp(hname, kinds[k].n, name) == 0) {
                char where[32];
                snprintf(where, sizeof(where), "%s: header", kinds[k].n);
                sm_addr_list(kinds[k].r, v.p ? v.p : "", where);
            }
        }
        free(v.p);
    }
}

/*
 * sm_getline - the next line of IN (its LF included when there is one) into *BUF, keeping at
 * most MAX bytes: the rest of a longer line is read and dropped and *OVER set, so that no
 * input makes us hold more than the message size limit. The length kept, or -1 at the end.
 */
static ssize_t sm_getline(FILE *in, char **buf, size_t *cap, size_t max, int *over)
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
static int sm_postdrop(const char *sender, const char *fullname, int body_8bit,
                       const struct sm_rcpts *r, const struct sm_buf *msg)
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

/* --- -bs: SMTP on standard input and output --- */

/* sm_smtp_reply - one reply line, flushed (the client waits for it). */
static void __attribute__((format(printf, 1, 2))) sm_smtp_reply(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputs("\r\n", stdout);
    fflush(stdout);
}

/* sm_smtp_line - the next command line without CRLF into BUF; -1 at end of input. A longer
 * line than the buffer is read to its end and reported by *TOO_LONG. */
static int sm_smtp_line(char *buf, size_t len, int *too_long)
{
    size_t n = 0;
    int ch;

    *too_long = 0;
    while ((ch = getchar()) != EOF && ch != '\n') {
        if (n + 1 < len)
            buf[n++] = (char)ch;
        else
            *too_long = 1;
    }
    if (ch == EOF && n == 0)
        return -1;
    while (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = 0;
    return 0;
}

/* sm_smtp_path - the address of "FROM:<addr> params" / "TO:<addr>" at ARG, or NULL. */
static char *sm_smtp_path(const char *arg, const char *key)
{
    size_t k = strlen(key);
    const char *p, *end;

    if (strncasecmp(arg, key, k) != 0)
        return NULL;
    p = arg + k;
    while (*p == ' ')
        p++;
    if (*p != '<' || !(end = strchr(p, '>')))
        return NULL;
    return strndup(p + 1, (size_t)(end - p - 1));
}

/* sm_smtp - the -bs dialogue (Postfix runs its smtpd -S there): every message goes to
 * postdrop like a piped one; the uid is still the real one, whatever MAIL FROM says. */
static int sm_smtp(void)
{
    const char *host = sm_conf ? sm_conf->myhostname : NULL;
    char hostbuf[256], line[SM_SMTP_LINE_MAX + 1];
    char *sender = NULL;
    int body_8bit = 0; /* MAIL FROM:<...> BODY=8BITMIME */
    struct sm_rcpts r = {0};
    int too_long;

    if (!host) {
        if (gethostname(hostbuf, sizeof(hostbuf) - 1) != 0)
            snprintf(hostbuf, sizeof(hostbuf), "localhost");
        hostbuf[sizeof(hostbuf) - 1] = 0;
        host = hostbuf;
    }
    sm_smtp_reply("220 %s ESMTP mta", host);
    while (sm_smtp_line(line, sizeof(line), &too_long) == 0) {
        char *arg = line;
        while (*arg && *arg != ' ')
            arg++;
        size_t cl = (size_t)(arg - line);
        while (*arg == ' ')
            arg++;
        if (too_long) {
            sm_smtp_reply("500 5.5.2 Error: line too long");
        } else if (cl == 4 && strncasecmp(line, "HELO", 4) == 0) {
            sm_smtp_reply(*arg ? "250 %s" : "501 Syntax: HELO hostname", host);
        } else if (cl == 4 && strncasecmp(line, "EHLO", 4) == 0) {
            if (!*arg)
                sm_smtp_reply("501 Syntax: EHLO hostname");
            else
                sm_smtp_reply("250-%s\r\n250-PIPELINING\r\n250-SIZE %lld\r\n250-8BITMIME\r\n"
                              "250 ENHANCEDSTATUSCODES",
                              host, sm_size_limit);
        } else if (cl == 4 && strncasecmp(line, "MAIL", 4) == 0) {
            char *a;
            if (sender)
                sm_smtp_reply("503 5.5.1 Error: nested MAIL command");
            else if (!(a = sm_smtp_path(arg, "FROM:")) || !maildrop_addr_ok(a, 1)) {
                free(a);
                sm_smtp_reply("501 5.1.7 Bad sender address syntax");
            } else {
                sender = a;
                body_8bit = strcasestr(arg, " BODY=8BITMIME") != NULL;
                sm_smtp_reply("250 2.1.0 Ok");
            }
        } else if (cl == 4 && strncasecmp(line, "RCPT", 4) == 0) {
            char *a;
            if (!sender)
                sm_smtp_reply("503 5.5.1 Error: need MAIL command");
            else if (!(a = sm_smtp_path(arg, "TO:")) || !maildrop_addr_ok(a, 0)) {
                free(a);
                sm_smtp_reply("501 5.1.3 Bad recipient address syntax");
            } else if (r.n == MAILDROP_RCPT_MAX) {
                free(a);
                sm_smtp_reply("452 4.5.3 Error: too many recipients");
            } else {
                sm_rcpt_add(&r, a);
                free(a);
                sm_smtp_reply("250 2.1.5 Ok");
            }
        } else if (cl == 4 && strncasecmp(line, "DATA", 4) == 0) {
            struct sm_buf msg = {0};
            long long stored = 0;
            int big = 0, eof = 1;
            if (!sender) {
                sm_smtp_reply("503 5.5.1 Error: need MAIL command");
                continue;
            }
            if (r.n == 0) {
                sm_smtp_reply("503 5.5.1 Error: need RCPT command");
                continue;
            }
            sm_smtp_reply("354 End data with <CR><LF>.<CR><LF>");
            char *dl = NULL;
            size_t dcap = 0;
            ssize_t n;
            int over;
            while ((n = sm_getline(stdin, &dl, &dcap, (size_t)sm_size_limit + 2, &over)) >= 0) {
                size_t len = (size_t)n;
                if (over)
                    big = 1;
                if (len == 0)
                    continue;
                if (dl[len - 1] == '\n')
                    len--;
                while (len > 0 && dl[len - 1] == '\r')
                    len--;
                if (len == 1 && dl[0] == '.') {
                    eof = 0;
                    break;
                }
                const char *p = dl;
                if (len > 0 && dl[0] == '.') { /* dot-unstuffing */
                    p++;
                    len--;
                }
                stored += (long long)len + 2;
                if (stored > sm_size_limit)
                    big = 1;
                if (!big) {
                    sm_add(&msg, p, len);
                    sm_add(&msg, "\n", 1);
                }
            }
            free(dl);
            if (eof) {
                free(msg.p);
                free(sender);
                sm_rcpts_free(&r);
                return EX_DATAERR; /* the client went away mid-message: nothing queued */
            }
            if (big)
                sm_smtp_reply("552 5.3.4 Error: message file too big");
            else if (sm_postdrop(sender, "", body_8bit, &r, &msg) == 0)
                sm_smtp_reply("250 2.0.0 Ok: queued");
            else
                sm_smtp_reply("451 4.3.0 Error: queue file write error");
            free(msg.p);
            free(sender);
            sender = NULL;
            for (int i = 0; i < r.n; i++)
                free(r.v[i]);
            r.n = 0;
        } else if (cl == 4 && strncasecmp(line, "RSET", 4) == 0) {
            free(sender);
            sender = NULL;
            for (int i = 0; i < r.n; i++)
                free(r.v[i]);
            r.n = 0;
            sm_smtp_reply("250 2.0.0 Ok");
        } else if (cl == 4 && strncasecmp(line, "NOOP", 4) == 0) {
            sm_smtp_reply("250 2.0.0 Ok");
        } else if (cl == 4 && strncasecmp(line, "VRFY", 4) == 0) {
            sm_smtp_reply("502 5.5.1 VRFY command is disabled");
        } else if (cl == 4 && strncasecmp(line, "QUIT", 4) == 0) {
            sm_smtp_reply("221 2.0.0 Bye");
            break;
        } else {
            sm_smtp_reply("502 5.5.2 Error: command not recognized");
        }
    }
    free(sender);
    sm_rcpts_free(&r);
    return 0;
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
            } else
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
