/*
 * sendmail_smtp.c - `sendmail -bs`: SMTP on standard input and output, as
 * Postfix runs its smtpd there. A small blocking dialogue (this is its own
 * process): EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; each message goes
 * to postdrop like a piped one, with the real uid whatever MAIL FROM says.
 * Not here: the maildrop hand-off itself (sm_postdrop in sendmail.c).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "mta/conf.h"
#include "mta/maildrop.h"
#include "sendmail_int.h"

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
int sm_smtp(void)
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
