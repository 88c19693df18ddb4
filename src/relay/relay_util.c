/*
 * relay_util.c - small pure helpers of the delivery engine, kept apart so unit
 * tests reach them without a network: SMTP reply collection (made printable:
 * a server's reply reaches the log, bounces and `mtactl queue`), enhanced status
 * codes, Postfix's delay notation, RFC 3461 xtext and EHLO keywords.
 * Not here: anything with I/O or connection state; the message text after DATA
 * (relay_body.c).
 */
#include "relay_int.h"

#include "mta/text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int relay_reply_feed(struct relay_reply *r, const char *line, size_t len)
{
    int code;
    size_t add;

    if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-'))
        return -1;
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (r->len == 0) {
        r->code = code;
        add = len < sizeof(r->text) - 1 ? len : sizeof(r->text) - 1;
        memcpy(r->text, line, add);
        r->len = add;
    } else if (len > 4 && r->len + 1 < sizeof(r->text) - 1) {
        /* continuation lines: keep the text after "NNN-", joined by a space */
        size_t room = sizeof(r->text) - 1 - r->len - 1;
        add = len - 4 < room ? len - 4 : room;
        r->text[r->len++] = ' ';
        memcpy(r->text + r->len, line + 4, add);
        r->len += add;
    }
    r->text[r->len] = '\0';
    /* as Postfix's smtp_chat: only printable ASCII is kept, so a reply can carry no
     * terminal escape or control byte into the log, a bounce or the queue listing */
    text_printable(r->text, '?');
    return len == 3 || line[3] == ' ' ? 1 : 0;
}

void relay_reply_dsn(const struct relay_reply *r, char *dsn, size_t len)
{
    const char *p = r->text + (r->len > 4 ? 4 : r->len);
    int cls = r->code / 100;

    /* "250 2.1.5 Ok": class 2, 4 or 5, agreeing with the reply code, then subject and
     * detail of 1-3 digits each (RFC 3463); a server's "4..30" or "9.1.1" is no status */
    if ((cls == 2 || cls == 4 || cls == 5) && p[0] == '0' + cls && p[1] == '.') {
        size_t i = 2, subject = 0, detail = 0;
        while (isdigit((unsigned char)p[i]) && subject < 4)
            i++, subject++;
        if (subject >= 1 && subject <= 3 && p[i] == '.') {
            i++;
            while (isdigit((unsigned char)p[i]) && detail < 4)
                i++, detail++;
            if (detail >= 1 && detail <= 3 && (p[i] == ' ' || p[i] == '\0') && i < len) {
                memcpy(dsn, p, i);
                dsn[i] = '\0';
                return;
            }
        }
    }
    snprintf(dsn, len, "%d.0.0", cls >= 2 && cls <= 5 ? (cls == 3 ? 2 : cls) : 4);
}

void relay_fmt_delay(double s, char *buf, size_t len)
{
    char *p;

    if (s < 0.005) {
        snprintf(buf, len, "0");
        return;
    }
    if (s >= 10)
        snprintf(buf, len, "%.0f", s);
    else if (s >= 1)
        snprintf(buf, len, "%.1f", s);
    else
        snprintf(buf, len, "%.2f", s);
    /* Postfix prints "0.1", not "0.10", and "1", not "1.0" */
    if (strchr(buf, '.')) {
        for (p = buf + strlen(buf) - 1; *p == '0'; p--)
            *p = '\0';
        if (*p == '.')
            *p = '\0';
    }
}

void relay_xtext(const char *s, char *buf, size_t len)
{
    size_t o = 0;

    if (!len)
        return;
    for (; *s && o + 1 < len; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 33 || ch > 126 || ch == '+' || ch == '=') {
            if (o + 3 >= len)
                break;
            snprintf(buf + o, len - o, "+%02X", ch);
            o += 3;
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o] = '\0';
}

int relay_ehlo_line(const char *kw, size_t len, long long *size_limit)
{
    size_t n = 0;

    while (n < len && kw[n] != ' ' && kw[n] != '=')
        n++;
#define KW(s) (n == sizeof(s) - 1 && strncasecmp(kw, s, n) == 0)
    if (KW("PIPELINING"))
        return RELAY_EXT_PIPELINING;
    if (KW("SIZE")) {
        if (size_limit) {
            /* "SIZE 10240000": a number from the network, checked (0: no limit given) */
            unsigned long long v = 0;
            if (n >= len || text_parse_u64(kw + n + 1, len - n - 1, LLONG_MAX, &v) < 0)
                v = 0;
            *size_limit = (long long)v;
        }
        return RELAY_EXT_SIZE;
    }
    if (KW("8BITMIME"))
        return RELAY_EXT_8BITMIME;
    if (KW("SMTPUTF8"))
        return RELAY_EXT_SMTPUTF8;
    if (KW("DSN"))
        return RELAY_EXT_DSN;
    if (KW("STARTTLS"))
        return RELAY_EXT_STARTTLS;
#undef KW
    return 0;
}
