/*
 * smtpd_data.c - the DATA/BDAT body machine and the headers smtpd adds.
 * Three layers, bottom up: bytes -> lines (line ends, dot handling, the end of
 * DATA), lines -> header pass (Received count, Message-ID/Date seen, the end
 * of the header block), then the size-bounded output. Only the current header
 * line is ever buffered; body lines stream straight through.
 * Not here: sockets, the spool, the reply chosen from the error bits.
 */
#include "smtpd_data.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    SMTPD_BODY_SOL,   /* at the start of a line */
    SMTPD_BODY_LINE,  /* inside a line */
    SMTPD_BODY_CR,    /* a CR is pending: CRLF or a bare CR */
    SMTPD_BODY_DOT,   /* "." at the start of a line */
    SMTPD_BODY_DOTCR, /* ".\r" at the start of a line */
};

void smtpd_body_init(struct smtpd_body *b, const struct smtpd_body_opts *o, struct evbuffer *out)
{
    memset(b, 0, sizeof(*b));
    b->o = *o;
    b->out = out;
    b->state = SMTPD_BODY_SOL;
    b->in_header = 1;
    b->hops = o->hops_initial;
}

void smtpd_body_free(struct smtpd_body *b)
{
    free(b->line);
    b->line = NULL;
    b->line_len = b->line_cap = 0;
}

/* smtpd_body_out - write stored bytes unless an error already stops storing. */
static void smtpd_body_out(struct smtpd_body *b, const char *p, size_t n)
{
    if (n == 0 || (b->err & SMTPD_BODY_ERR_SIZE))
        return;
    if (evbuffer_add(b->out, p, n) == 0)
        b->stored += (long long)n;
    else
        b->err |= SMTPD_BODY_ERR_IO;
}

/*
 * smtpd_body_count - count N content bytes against message_size_limit and
 * return how many of them still fit (so every split stores the same prefix).
 */
static size_t smtpd_body_count(struct smtpd_body *b, size_t n)
{
    long long before = b->size;
    b->size += (long long)n;
    if (b->o.max_size > 0 && b->size > b->o.max_size) {
        b->err |= SMTPD_BODY_ERR_SIZE;
        return before < b->o.max_size ? (size_t)(b->o.max_size - before) : 0;
    }
    return n;
}

/* smtpd_body_out_limited - body bytes: the part within the size limit is stored. */
static void smtpd_body_out_limited(struct smtpd_body *b, const char *p, size_t n, size_t room)
{
    if (room > n)
        room = n;
    if (room == 0)
        return;
    if (evbuffer_add(b->out, p, room) == 0)
        b->stored += (long long)room;
    else
        b->err |= SMTPD_BODY_ERR_IO;
}

/* smtpd_body_end_header - leave the header block: add missing headers, then SEP ("\r\n" or ""). */
static void smtpd_body_end_header(struct smtpd_body *b, const char *sep)
{
    b->in_header = 0;
    if (b->o.add_msgid && !b->seen_msgid)
        smtpd_body_out(b, b->o.add_msgid, strlen(b->o.add_msgid));
    if (b->o.add_date && !b->seen_date)
        smtpd_body_out(b, b->o.add_date, strlen(b->o.add_date));
    smtpd_body_out(b, sep, strlen(sep));
}

/* smtpd_body_hdr_name - length of the field name when LINE starts a header ("Name:"), else 0. */
static size_t smtpd_body_hdr_name(const char *line, size_t len)
{
    size_t i = 0, name;
    while (i < len && (unsigned char)line[i] > 32 && (unsigned char)line[i] < 127 && line[i] != ':')
        i++;
    name = i;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    return (name > 0 && i < len && line[i] == ':') ? name : 0;
}

/* smtpd_body_header_line - one complete line while in the header block. */
static void smtpd_body_header_line(struct smtpd_body *b)
{
    const char *l = b->line ? b->line : "";
    size_t len = b->line_len, name;

    b->line_len = 0;
    if (len == 0) {
        smtpd_body_end_header(b, "\r\n");
        return;
    }
    if ((name = smtpd_body_hdr_name(l, len)) > 0) {
        const char *v = (const char *)memchr(l, ':', len) + 1;
        size_t vlen = len - (size_t)(v - l);
        b->hdr_cont_ok = 1;
        if (name == 8 && strncasecmp(l, "Received", 8) == 0) {
            if (++b->hops >= b->o.hop_limit)
                b->err |= SMTPD_BODY_ERR_HOPS;
        } else if (name == 10 && strncasecmp(l, "Message-ID", 10) == 0 && !b->seen_msgid) {
            b->seen_msgid = 1;
            while (vlen > 0 && (*v == ' ' || *v == '\t'))
                v++, vlen--;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= sizeof(b->msgid))
                vlen = sizeof(b->msgid) - 1;
            memcpy(b->msgid, v, vlen);
            b->msgid[vlen] = 0;
        } else if (name == 4 && strncasecmp(l, "Date", 4) == 0) {
            b->seen_date = 1;
        }
    } else if (!((l[0] == ' ' || l[0] == '\t') && b->hdr_cont_ok)) {
        /* not a header: the body starts here, separated by the empty line it lacked */
        smtpd_body_end_header(b, "\r\n");
        smtpd_body_out(b, l, len);
        smtpd_body_out(b, "\r\n", 2);
        return;
    }
    b->hdr_bytes += len + 2;
    smtpd_body_out(b, l, len);
    smtpd_body_out(b, "\r\n", 2);
}

/* smtpd_body_put - content bytes of the current line. */
static void smtpd_body_put(struct smtpd_body *b, const char *p, size_t n)
{
    int was_over = (b->err & SMTPD_BODY_ERR_SIZE) != 0;
    size_t room = smtpd_body_count(b, n);
    if (!b->in_header) {
        if (!was_over)
            smtpd_body_out_limited(b, p, n, room);
        return;
    }
    if (b->err & SMTPD_BODY_ERR_SIZE)
        return; /* nothing more is stored; don't grow the header buffer either */
    if (b->hdr_bytes + b->line_len + n + 2 > b->o.header_limit) {
        /* header_size_limit: the rest is kept as body, as Postfix does */
        smtpd_body_end_header(b, "\r\n");
        smtpd_body_out(b, b->line, b->line_len);
        b->line_len = 0;
        smtpd_body_out(b, p, n);
        return;
    }
    if (b->line_len + n > b->line_cap) {
        size_t cap = b->line_cap ? b->line_cap : 256;
        char *nl;
        while (cap < b->line_len + n)
            cap *= 2;
        if (!(nl = realloc(b->line, cap))) {
            b->err |= SMTPD_BODY_ERR_IO;
            return;
        }
        b->line = nl;
        b->line_cap = cap;
    }
    memcpy(b->line + b->line_len, p, n);
    b->line_len += n;
}

/* smtpd_body_eol - the end of a line (BARE: a lone LF). */
static void smtpd_body_eol(struct smtpd_body *b, int bare)
{
    int was_over = (b->err & SMTPD_BODY_ERR_SIZE) != 0;
    size_t room;
    if (bare && b->o.barelf == SMTPD_BARELF_REJECT)
        b->err |= SMTPD_BODY_ERR_BARELF;
    room = smtpd_body_count(b, 2);
    if (b->in_header && !(b->err & SMTPD_BODY_ERR_SIZE))
        smtpd_body_header_line(b);
    else if (!b->in_header && !was_over)
        smtpd_body_out_limited(b, "\r\n", 2, room);
    b->prev_bare = bare;
    b->state = SMTPD_BODY_SOL;
}

size_t smtpd_body_feed(struct smtpd_body *b, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && !b->done) {
        char c = p[i];
        switch (b->state) {
        case SMTPD_BODY_SOL:
            if (c == '.' && b->o.dot) {
                b->state = SMTPD_BODY_DOT;
                i++;
            } else {
                b->state = SMTPD_BODY_LINE; /* C is processed there */
            }
            break;
        case SMTPD_BODY_LINE: {
            size_t j = i;
            while (j < n && p[j] != '\r' && p[j] != '\n')
                j++;
            if (j > i) {
                smtpd_body_put(b, p + i, j - i);
                i = j;
            } else if (c == '\r') {
                b->state = SMTPD_BODY_CR;
                i++;
            } else {
                smtpd_body_eol(b, 1);
                i++;
            }
            break;
        }
        case SMTPD_BODY_CR:
            if (c == '\n') {
                smtpd_body_eol(b, 0);
                i++;
            } else if (c == '\r') {
                smtpd_body_put(b, "\r", 1); /* the earlier CR was bare: content */
                i++;
            } else {
                smtpd_body_put(b, "\r", 1);
                b->state = SMTPD_BODY_LINE;
            }
            break;
        case SMTPD_BODY_DOT:
            if (c == '\r') {
                b->state = SMTPD_BODY_DOTCR;
                i++;
            } else if (c == '\n') {
                /* ".\n": never an end unless legacy "no" */
                i++;
                if (b->o.barelf == SMTPD_BARELF_NO) {
                    b->done = 1;
                    b->state = SMTPD_BODY_SOL;
                } else {
                    smtpd_body_put(b, ".", 1);
                    smtpd_body_eol(b, 1);
                }
            } else {
                b->state = SMTPD_BODY_LINE; /* dot-unstuffing: the leading dot is dropped */
            }
            break;
        case SMTPD_BODY_DOTCR:
            if (c == '\n') {
                i++;
                if (!b->prev_bare || b->o.barelf == SMTPD_BARELF_NO) {
                    b->done = 1;
                    b->state = SMTPD_BODY_SOL;
                } else {
                    /* "\n.\r\n": the line before ended in a bare LF, so this is content */
                    smtpd_body_put(b, ".", 1);
                    smtpd_body_eol(b, 0);
                }
            } else {
                b->state = SMTPD_BODY_CR; /* ".\r" + more: dot dropped, the CR is pending */
            }
            break;
        }
    }
    return i;
}

void smtpd_body_finish(struct smtpd_body *b)
{
    /* BDAT may end inside a line; DATA ends after a line end. */
    if (b->state == SMTPD_BODY_LINE || b->state == SMTPD_BODY_CR)
        smtpd_body_eol(b, 0);
    else if (b->state == SMTPD_BODY_DOT || b->state == SMTPD_BODY_DOTCR) {
        smtpd_body_put(b, ".", 1);
        smtpd_body_eol(b, 0);
    }
    if (b->in_header)
        smtpd_body_end_header(b, "");
}

void smtpd_data_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    char zone[64];
    size_t n;

    localtime_r(&t, &tm);
    n = strftime(buf, len, "%a, %e %b %Y %H:%M:%S ", &tm);
    if (strftime(zone, sizeof(zone), "%z (%Z)", &tm) == 0)
        snprintf(zone, sizeof(zone), "+0000 (UTC)");
    snprintf(buf + n, len - n, "%s", zone);
}

char *smtpd_data_helo_name(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e || strchr(" <>()\\\";@", *p))
            *p = '?';
    return s;
}

void smtpd_data_received(struct evbuffer *out, const char *helo, const char *name, const char *addr,
                         const char *hostname, const char *proto, const char *id, const char *rcpt,
                         time_t t, const char *tls)
{
    char date[80];
    const char *v6 = strchr(addr, ':') ? "IPv6:" : "";

    smtpd_data_date(t, date, sizeof(date));
    evbuffer_add_printf(out, "Received: from %s (%s [%s%s])\r\n", helo, name, v6, addr);
    if (tls && *tls) /* Postfix's TLS note (smtpd_tls_received_header) */
        evbuffer_add_printf(out, "\t(using %s)\r\n\t(No client certificate requested)\r\n", tls);
    evbuffer_add_printf(out, "\tby %s (mta) with %s id %s", hostname, proto, id);
    if (rcpt)
        evbuffer_add_printf(out, "\r\n\tfor <%s>; %s\r\n", rcpt, date);
    else
        evbuffer_add_printf(out, ";\r\n\t%s\r\n", date);
}

void smtpd_data_msgid_line(char *buf, size_t len, time_t t, const char *id, const char *hostname)
{
    struct tm tm;
    char stamp[32];

    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
    snprintf(buf, len, "Message-Id: <%s.%s@%s>\r\n", stamp, id, hostname);
}

void smtpd_data_date_line(char *buf, size_t len, time_t t)
{
    char date[80];
    smtpd_data_date(t, date, sizeof(date));
    snprintf(buf, len, "Date: %s\r\n", date);
}
