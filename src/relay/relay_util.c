/*
 * relay_util.c - small pure helpers of the delivery engine, kept apart so unit
 * tests reach them without a network: SMTP reply collection (made printable:
 * a server's reply reaches the log, bounces and `mtactl queue`), enhanced status
 * codes, Postfix's delay notation, RFC 3461 xtext, EHLO keywords, and the
 * message text as it goes out after DATA (dot-stuffing, line ends, long lines).
 * Not here: anything with I/O or connection state.
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

/* --- the message text after DATA --- */

/* relay_body_reserve - room for MORE bytes after the current end. */
static int relay_body_reserve(struct relay_body *b, size_t more)
{
    size_t want, ncap;
    char *np;

    if (b->len + more <= b->cap)
        return 0;
    want = b->len + more;
    ncap = b->cap * 2;
    if (ncap < want)
        ncap = want;
    np = realloc(b->p, ncap);
    if (!np)
        return ENOMEM;
    b->p = np;
    b->cap = ncap;
    return 0;
}

int relay_body_init(struct relay_body *b, size_t limit, size_t hint)
{
    memset(b, 0, sizeof(*b));
    b->bol = 1;
    b->limit = limit && limit < RELAY_LINE_MIN ? RELAY_LINE_MIN : limit;
    /* room for the usual growth (stuffed dots, line breaks) without a copy */
    return relay_body_reserve(b, hint + hint / 64 + 64);
}

/* relay_body_eol - end the current output line. */
static int relay_body_eol(struct relay_body *b)
{
    if (relay_body_reserve(b, 2))
        return ENOMEM;
    memcpy(b->p + b->len, "\r\n", 2);
    b->len += 2;
    b->col = 0;
    b->bol = 1;
    return 0;
}

/* relay_utf8_len - the length of the UTF-8 sequence lead byte C starts (1: not a lead byte). */
static size_t relay_utf8_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    if (c >= 0xC2)
        return 2;
    return 1;
}

/*
 * relay_body_break - the line is full and NEXT belongs on it: continue on a new
 * line that starts with a space (Postfix's CRLF SPACE: inside a header it reads
 * as folding, in MIME body parts it does the least damage). When NEXT continues
 * a UTF-8 sequence, the sequence's first bytes move to the new line too, so
 * that no character is cut in two (8BITMIME text stays valid UTF-8).
 */
static int relay_body_break(struct relay_body *b, unsigned char next)
{
    char keep[3];
    size_t k = 0, j;

    if ((next & 0xC0) == 0x80) {
        /* at most 3 bytes back, and never the whole line: something stays before the break */
        for (j = 1; j <= 3 && j + 1 < b->col; j++) {
            unsigned char c = (unsigned char)b->p[b->len - j];
            if ((c & 0xC0) == 0x80)
                continue;
            if (relay_utf8_len(c) > j)
                k = j;
            break;
        }
    }
    if (relay_body_reserve(b, 3))
        return ENOMEM;
    memcpy(keep, b->p + b->len - k, k);
    b->len -= k;
    memcpy(b->p + b->len, "\r\n ", 3);
    b->len += 3;
    memcpy(b->p + b->len, keep, k);
    b->len += k;
    b->col = 1 + k;
    b->broken = 1;
    return 0;
}

/* relay_body_put - append N content bytes (no CR, no LF) to the current line. */
static int relay_body_put(struct relay_body *b, const char *s, size_t n)
{
    while (n > 0) {
        size_t run = n;
        if (b->bol) {
            b->bol = 0;
            if (s[0] == '.') {
                /* the transparency dot counts against the limit: RFC 5321 lets a
                 * receiver ignore it, but a strict one may measure the line as sent */
                if (relay_body_reserve(b, 1))
                    return ENOMEM;
                b->p[b->len++] = '.';
                b->col++;
            }
        }
        if (b->limit && b->col >= b->limit && relay_body_break(b, (unsigned char)s[0]))
            return ENOMEM;
        if (b->limit && run > b->limit - b->col)
            run = b->limit - b->col;
        if (relay_body_reserve(b, run))
            return ENOMEM;
        memcpy(b->p + b->len, s, run);
        b->len += run;
        b->col += run;
        s += run;
        n -= run;
    }
    return 0;
}

int relay_body_add(struct relay_body *b, const char *buf, size_t n)
{
    size_t i = 0, j;
    int err = 0;

    while (i < n && !err) {
        if (b->cr) {
            b->cr = 0;
            if (buf[i] == '\n') {
                err = relay_body_eol(b);
                i++;
            } else {
                err = relay_body_put(b, " ", 1); /* a bare CR; buf[i] is looked at again */
            }
            continue;
        }
        for (j = i; j < n && buf[j] != '\r' && buf[j] != '\n'; j++)
            ;
        if (j > i) {
            err = relay_body_put(b, buf + i, j - i);
            i = j;
        } else if (buf[i] == '\r') {
            b->cr = 1; /* CRLF or bare: the next byte (maybe in the next piece) decides */
            i++;
        } else {
            err = relay_body_eol(b); /* a bare LF ends the line */
            i++;
        }
    }
    return err;
}

int relay_body_end(struct relay_body *b)
{
    if (b->cr) {
        b->cr = 0;
        if (relay_body_put(b, " ", 1))
            return ENOMEM;
    }
    if (!b->bol && relay_body_eol(b))
        return ENOMEM;
    if (relay_body_reserve(b, 3))
        return ENOMEM;
    memcpy(b->p + b->len, ".\r\n", 3);
    b->len += 3;
    return 0;
}
