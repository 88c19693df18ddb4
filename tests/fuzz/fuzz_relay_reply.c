/*
 * fuzz_relay_reply.c - what the delivery client reads from a remote SMTP
 * server (src/relay): reply lines (CRLF-split as relay_conn_read_cb does)
 * collected by relay_reply_feed, EHLO keywords (relay_ehlo_line), the enhanced
 * status taken from the reply (relay_reply_dsn), and the delivery status
 * notification built from that reply text with relay_dsn_build, the first
 * line of the input standing in for the envelope fields a DSN quotes (and
 * for an ORCPT/ENVID sent out as xtext, which must decode back unchanged).
 */
#include <event2/buffer.h>

#include "fuzz_util.h"
#include "relay/relay_int.h"
#include "smtpd/smtpd_addr.h"

/* fuzz_dsn_ok - 1 when DSN is an RFC 3463 status "C.S.D": class 2, 4 or 5, 1-3 digit parts. */
static int fuzz_dsn_ok(const char *dsn)
{
    size_t i = 0, digits = 0, dots = 0;

    if ((dsn[0] != '2' && dsn[0] != '4' && dsn[0] != '5') || dsn[1] != '.')
        return 0;
    for (i = 2; dsn[i]; i++) {
        if (dsn[i] == '.') {
            if (digits == 0 || digits > 3)
                return 0;
            dots++, digits = 0;
        } else if (dsn[i] >= '0' && dsn[i] <= '9') {
            digits++;
        } else {
            return 0;
        }
    }
    return dots == 1 && digits > 0 && digits <= 3;
}

/* fuzz_dsn - build a notification quoting reply RP and the fields in FIELD. */
static void fuzz_dsn(const struct relay_reply *rp, const char *field, const uint8_t *orig,
                     size_t origlen, int success)
{
    struct evbuffer *out = evbuffer_new();
    char dsn[16];
    struct relay_dsn_info info = {
        .hostname = "mx.example",
        .queue_id = "0123456789ABCDEF",
        .sender = field,
        .envid = field,
        .arrival_us = 1700000000000000LL,
        .now = 1700000100,
        .boundary = "0123456789ABCDEF.1700000100/mx.example",
        .msgid = "20231114221500.0123456789ABCDEF@mx.example",
        .success = success,
        .hdrs_only = !success,
    };
    struct relay_dsn_rcpt r = {field, field, success ? "relayed" : "failed", dsn, field, rp->text};

    if (!out)
        abort();
    relay_reply_dsn(rp, dsn, sizeof(dsn));
    if (!fuzz_dsn_ok(dsn))
        fprintf(stderr, "reply \"%.80s\" gave status \"%s\"\n", rp->text, dsn);
    FUZZ_CHECK(fuzz_dsn_ok(dsn));
    relay_dsn_build(&info, &r, 1, (const char *)orig, origlen, out);
    evbuffer_free(out);
}

/*
 * fuzz_xtext - ORCPT/ENVID travel out as relay_xtext and come in through smtpd_xtext_decode
 * (the next hop may be us): printable ASCII must survive the round trip unchanged.
 */
static void fuzz_xtext(const char *s)
{
    size_t n = strlen(s), cap = 3 * n + 1;
    char *enc = malloc(cap), *dec = malloc(n + 1);
    int printable = 1;

    if (!enc || !dec)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126)
            printable = 0;
    relay_xtext(s, enc, cap);
    FUZZ_CHECK(strlen(enc) < cap);
    if (printable) {
        FUZZ_CHECK(smtpd_xtext_decode(enc, strlen(enc), dec, n + 1) == 0);
        FUZZ_CHECK(strcmp(dec, s) == 0);
    }
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct evbuffer *in = evbuffer_new();
    struct relay_reply rp;
    char *line, *field = NULL;
    size_t len;
    int ehlo = 1, replies = 0;

    if (!in)
        abort();
    evbuffer_add(in, data, size);
    memset(&rp, 0, sizeof(rp));
    field = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
    if (!field) {
        evbuffer_free(in);
        return 0;
    }
    fuzz_xtext(field);
    while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
        int first = rp.len == 0, rc;
        long long size_limit = -1;
        if (ehlo && !first && len > 4)
            (void)relay_ehlo_line(line + 4, len - 4, &size_limit);
        rc = relay_reply_feed(&rp, line, len);
        free(line);
        FUZZ_CHECK(rc >= -1 && rc <= 1);
        FUZZ_CHECK(rp.len < sizeof(rp.text) && strlen(rp.text) <= rp.len);
        if (rc < 0)
            break; /* the client gives up on a malformed reply */
        if (rc == 1) {
            FUZZ_CHECK(rp.code >= 0 && rp.code <= 999);
            fuzz_dsn(&rp, field, data, size, replies & 1);
            memset(&rp, 0, sizeof(rp));
            ehlo = 0;
            replies++;
        }
    }
    free(field);
    evbuffer_free(in);
    return 0;
}
