/*
 * relay_body.c - the message as it goes out after DATA, made and sent a chunk at
 * a time so that an outbound connection holds a bounded amount of it whatever
 * the message size (Postfix's smtp client streams the queue file the same way).
 * Two parts: the text rules (dot-stuffing, CRLF line ends, bare CR, long lines),
 * pure and carrying their state across chunk borders; and the stream, which
 * reads the queue file on a worker thread RELAY_CHUNK bytes at a time and hands
 * the text to the connection one chunk ahead of its socket.
 * Not here: when to write (relay_xact.c drives it from its write watermark).
 */
#include "relay_int.h"

#include "mta/spool.h"
#include "mta/workers.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    b->done = 1;
    return 0;
}

size_t relay_body_ready(const struct relay_body *b)
{
    /* the last bytes of an unfinished line stay: a later line break may move the
     * start of a UTF-8 sequence (at most 3 bytes) to the next line */
    size_t keep = b->done ? 0 : (b->col < 3 ? b->col : 3);

    return b->len > keep ? b->len - keep : 0;
}

void relay_body_consume(struct relay_body *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* --- the stream --- */

struct relay_stream {
    struct spool *spool;
    struct workers *io;
    char qid[SPOOL_ID_SIZE];
    int fd;          /* the queue file, -1 before the first fill */
    long long start; /* file offset of the first message byte */
    long long size;  /* message bytes */
    long long off;   /* message bytes read so far */
    struct relay_body body;
    size_t limit;
    int err;    /* errno of opening or reading; 0 */
    int busy;   /* a worker has it: the loop leaves it alone */
    int orphan; /* freed while busy: the completion frees it */
    int used;   /* text was taken: a new transaction needs a new stream */
    void (*cb)(void *arg);
    void *arg;
};

/* relay_stream_close - the stream's file and memory. */
static void relay_stream_close(struct relay_stream *st)
{
    if (st->fd >= 0)
        close(st->fd); /* a read-only file: close does not wait for the disk */
    free(st->body.p);
    free(st);
}

/* relay_stream_fill_work - worker: open the file on the first call, then read the next chunk
 * and make its text (the end of data after the last one). */
static void relay_stream_fill_work(void *arg)
{
    struct relay_stream *st = arg;
    char buf[RELAY_CHUNK];
    size_t got = 0;

    if (st->fd < 0) {
        st->fd = spool_open_message(st->spool, st->qid, NULL, &st->size);
        if (st->fd < 0) {
            st->err = errno ? errno : EIO;
            return;
        }
        if ((st->start = lseek(st->fd, 0, SEEK_CUR)) < 0) {
            st->err = errno;
            return;
        }
    }
    while (got < sizeof(buf) && st->off + (long long)got < st->size) {
        long long left = st->size - st->off - (long long)got;
        size_t want = sizeof(buf) - got;
        ssize_t n;

        if ((long long)want > left)
            want = (size_t)left;
        n = pread(st->fd, buf + got, want, (off_t)(st->start + st->off + (long long)got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            st->err = n < 0 ? errno : EIO; /* shorter than its envelope said */
            return;
        }
        got += (size_t)n;
    }
    st->off += (long long)got;
    if ((st->err = relay_body_add(&st->body, buf, got)) == 0 && st->off >= st->size)
        st->err = relay_body_end(&st->body);
}

/* relay_stream_fill_done - loop: the chunk is made; tell the owner, or free an orphan. */
static void relay_stream_fill_done(void *arg)
{
    struct relay_stream *st = arg;

    st->busy = 0;
    if (st->orphan) {
        relay_stream_close(st);
        return;
    }
    st->cb(st->arg);
}

struct relay_stream *relay_stream_new(struct spool *spool, struct workers *io, const char *qid,
                                      size_t limit, struct evbuffer *kept, void (*cb)(void *arg),
                                      void *arg)
{
    struct relay_stream *st = calloc(1, sizeof(*st));
    size_t n = kept ? evbuffer_get_length(kept) : 0;

    if (!st)
        return NULL;
    st->spool = spool;
    st->io = io;
    st->fd = -1;
    st->limit = limit;
    st->cb = cb;
    st->arg = arg;
    snprintf(st->qid, sizeof(st->qid), "%s", qid);
    if (relay_body_init(&st->body, limit, RELAY_CHUNK)) {
        free(st);
        return NULL;
    }
    if (kept && n <= RELAY_KEPT_MAX) {
        /* a small fresh message the scheduler kept: made here, no file read at all */
        const char *p = (const char *)evbuffer_pullup(kept, -1);

        st->size = st->off = (long long)n;
        st->err = n && !p ? ENOMEM : relay_body_add(&st->body, p, n);
        if (!st->err)
            st->err = relay_body_end(&st->body);
        return st;
    }
    relay_stream_fill(st);
    return st;
}

void relay_stream_fill(struct relay_stream *st)
{
    if (st->busy || st->err || st->body.done)
        return;
    st->busy = 1;
    workers_submit(st->io, relay_stream_fill_work, relay_stream_fill_done, st);
}

int relay_stream_busy(const struct relay_stream *st)
{
    return st->busy;
}

int relay_stream_error(const struct relay_stream *st)
{
    return st->busy ? 0 : st->err;
}

long long relay_stream_size(const struct relay_stream *st)
{
    return st->size;
}

int relay_stream_used(const struct relay_stream *st)
{
    return st->used;
}

int relay_stream_broken(const struct relay_stream *st)
{
    return !st->busy && st->body.broken;
}

size_t relay_stream_ready(const struct relay_stream *st)
{
    return st->busy ? 0 : relay_body_ready(&st->body);
}

int relay_stream_take(struct relay_stream *st, struct evbuffer *out)
{
    size_t n = relay_stream_ready(st);

    if (n == 0 || st->err)
        return 0;
    if (evbuffer_add(out, st->body.p, n) < 0) {
        st->err = ENOMEM;
        return 0;
    }
    st->used = 1;
    relay_body_consume(&st->body, n);
    return st->body.done && st->body.len == 0;
}

void relay_stream_free(struct relay_stream *st)
{
    if (!st)
        return;
    if (st->busy)
        st->orphan = 1; /* the worker still reads into it */
    else
        relay_stream_close(st);
}
