/*
 * fuzz_smtpd_data.c - the DATA/BDAT body machine (smtpd_data.c): the first
 * bytes choose the options (dot or BDAT mode, bare-LF policy, size, header and
 * hop limits, added headers) and a chunking seed; the rest is the client's
 * bytes. The input is fed once in one piece and once in the chunks the seed
 * gives: smtpd_data.h promises that every split gives the same stored bytes,
 * consumed length, error bits and end-of-data, so any difference aborts.
 */
#include <event2/buffer.h>

#include "fuzz_util.h"
#include "smtpd/smtpd_data.h"

struct fuzz_result {
    struct evbuffer *out;
    size_t consumed;
    int err, done;
    long long size;
};

/* fuzz_run - feed P[0..N) in chunks of the sizes SEED gives (SEED 0: one piece). */
static void fuzz_run(const struct smtpd_body_opts *o, const uint8_t *p, size_t n, unsigned seed,
                     struct fuzz_result *r)
{
    struct smtpd_body b;
    size_t pos = 0;

    r->out = evbuffer_new();
    if (!r->out)
        abort();
    smtpd_body_init(&b, o, r->out);
    while (pos < n && !b.done) {
        size_t want = n - pos, k;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            want = 1 + (seed >> 16) % 7;
            if (want > n - pos)
                want = n - pos;
        }
        k = smtpd_body_feed(&b, (const char *)p + pos, want);
        FUZZ_CHECK(k <= want);
        pos += k;
        if (k < want) {
            FUZZ_CHECK(b.done); /* it stops early only at the end of data */
            break;
        }
    }
    smtpd_body_finish(&b);
    r->consumed = pos;
    r->err = b.err;
    r->done = b.done;
    r->size = b.size;
    FUZZ_CHECK(strlen(b.msgid) < sizeof(b.msgid));
    if (!o->dot)
        FUZZ_CHECK(!b.done && pos == n); /* BDAT consumes every byte */
    smtpd_body_free(&b);
}

/* fuzz_dump - R on standard error, bytes escaped, to see how two runs differ. */
static void fuzz_dump(const char *what, struct fuzz_result *r)
{
    size_t n = evbuffer_get_length(r->out);
    const unsigned char *p = n ? evbuffer_pullup(r->out, -1) : NULL;

    fprintf(stderr, "%s: consumed %zu err %d done %d size %lld stored %zu: \"", what, r->consumed,
            r->err, r->done, r->size, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, p[i] >= 32 && p[i] < 127 && p[i] != '\\' ? "%c" : "\\x%02x", p[i]);
    fprintf(stderr, "\"\n");
}

/* fuzz_same_output - 1 when A and B stored the same bytes. */
static int fuzz_same_output(struct fuzz_result *a, struct fuzz_result *b)
{
    size_t la = evbuffer_get_length(a->out), lb = evbuffer_get_length(b->out);
    return la == lb &&
           (la == 0 || memcmp(evbuffer_pullup(a->out, -1), evbuffer_pullup(b->out, -1), la) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned f = fuzz_byte(&in), seed;
    struct smtpd_body_opts o = {0};
    struct fuzz_result a, b;
    int fuzz_same = 1;

    o.dot = !(f & 1);
    o.barelf = (int)((f >> 1) % 3);
    o.max_size = (f & 8) ? (long long)fuzz_byte(&in) * 4 : 0;
    o.header_limit = 16 + fuzz_byte(&in) * 4;
    o.hop_limit = 1 + (int)(fuzz_byte(&in) % 8);
    o.hops_initial = (f & 16) ? 1 : 0;
    o.add_msgid = (f & 32) ? "Message-Id: <x@mx.example>\r\n" : NULL;
    o.add_date = (f & 64) ? "Date: Tue, 6 Feb 2024 10:00:00 +0100\r\n" : NULL;
    seed = fuzz_byte(&in) | 1u;

    fuzz_run(&o, in.p, in.n, 0, &a);
    fuzz_run(&o, in.p, in.n, seed, &b);
    /* once an error bit is set the message is refused and what was stored is discarded,
     * so the stored bytes must agree only for a message that is accepted */
    if (a.err == 0 && b.err == 0)
        fuzz_same = fuzz_same_output(&a, &b);
    if (a.consumed != b.consumed || a.err != b.err || a.done != b.done || a.size != b.size ||
        !fuzz_same) {
        fuzz_dump("one piece", &a);
        fuzz_dump("in chunks", &b);
    }
    FUZZ_CHECK(a.consumed == b.consumed);
    FUZZ_CHECK(a.err == b.err);
    FUZZ_CHECK(a.done == b.done);
    FUZZ_CHECK(a.size == b.size);
    FUZZ_CHECK(fuzz_same);
    evbuffer_free(a.out);
    evbuffer_free(b.out);
    return 0;
}
