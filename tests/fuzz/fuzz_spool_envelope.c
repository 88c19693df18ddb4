/*
 * fuzz_spool_envelope.c - the envelope at the head of a queue file
 * (spool_envelope.c), as recovery and delivery read it from a damaged or
 * crafted spool: the first byte chooses the buffer parser or the file reader
 * (a memfd), the rest is the file. Whatever parses must encode again, and the
 * encoding must parse back to the same envelope (a field the encoder cannot
 * write faithfully would change the mail on its way through the queue).
 * Every field read must be within spool.h's limits and free of control bytes
 * (issue 12, items 2 and 4: CR/LF toward the next hop, sizes that overflow).
 */
#include <errno.h>

#include "fuzz_util.h"
#include "queue/spool_int.h"

/* fuzz_str_eq - 1 when A and B are both NULL or equal strings. */
static int fuzz_str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* fuzz_env_eq - 1 when the two envelopes hold the same fields. */
static int fuzz_env_eq(const struct spool_envelope *a, const struct spool_envelope *b)
{
    if (strcmp(a->id, b->id) != 0 || !fuzz_str_eq(a->sender, b->sender) || a->nrcpt != b->nrcpt ||
        !fuzz_str_eq(a->envid, b->envid) || a->ret != b->ret || a->smtputf8 != b->smtputf8 ||
        a->body_8bit != b->body_8bit || !fuzz_str_eq(a->client_name, b->client_name) ||
        !fuzz_str_eq(a->client_addr, b->client_addr) || !fuzz_str_eq(a->helo, b->helo) ||
        a->arrival_us != b->arrival_us || a->size != b->size)
        return 0;
    for (int i = 0; i < a->nrcpt; i++)
        if (!fuzz_str_eq(a->rcpt[i].addr, b->rcpt[i].addr) ||
            !fuzz_str_eq(a->rcpt[i].orcpt, b->rcpt[i].orcpt) ||
            a->rcpt[i].notify != b->rcpt[i].notify)
            return 0;
    return 1;
}

/* fuzz_field_ok - S is set, at most MAX bytes and free of control bytes (spool.h's promise:
 * nothing read from a queue file can carry CR/LF into an SMTP command or a header). */
static int fuzz_field_ok(const char *s, size_t max)
{
    size_t n;

    if (!s || (n = strlen(s)) > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

/* fuzz_env_bounded - every field of E within the limits of include/mta/spool.h. */
static int fuzz_env_bounded(const struct spool_envelope *e)
{
    if (!fuzz_field_ok(e->sender, SPOOL_ADDR_MAX) || !fuzz_field_ok(e->envid, SPOOL_ENVID_MAX) ||
        !fuzz_field_ok(e->helo, SPOOL_HELO_MAX) ||
        !fuzz_field_ok(e->client_name, SPOOL_CLIENT_NAME_MAX) ||
        !fuzz_field_ok(e->client_addr, SPOOL_CLIENT_ADDR_MAX) || e->size < 0 ||
        e->size > SPOOL_SIZE_MAX || e->arrival_us < 0 || e->arrival_us > SPOOL_TIME_US_MAX)
        return 0;
    for (int i = 0; i < e->nrcpt; i++)
        if (!fuzz_field_ok(e->rcpt[i].addr, SPOOL_ADDR_MAX) ||
            !fuzz_field_ok(e->rcpt[i].orcpt, SPOOL_ORCPT_MAX))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    struct fuzz_in in = {data, size};
    unsigned op = fuzz_byte(&in);
    struct spool_envelope *env = NULL, *again = NULL;
    size_t hdrlen = 0, len = 0, hdrlen2 = 0;
    char *text;

    if (op & 1) {
        if (fuzz_memfd(&fd, in.p, in.n) < 0)
            abort();
        if (spool_env_read_fd(fd, &env, &hdrlen) != 0)
            return 0;
    } else {
        /* a private copy: the parser must not read past LEN (ASan sees it) */
        char *copy = malloc(in.n ? in.n : 1);
        int rc;
        if (!copy)
            abort();
        if (in.n)
            memcpy(copy, in.p, in.n);
        rc = spool_env_decode(copy, in.n, &env, &hdrlen);
        free(copy);
        FUZZ_CHECK(rc == 0 || rc == 1 || rc == -1);
        if (rc != 0)
            return 0;
    }
    FUZZ_CHECK(hdrlen <= in.n);
    FUZZ_CHECK(env->nrcpt > 0 && env->sender);
    FUZZ_CHECK(fuzz_env_bounded(env));
    text = spool_env_encode(env, &len);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(spool_env_decode(text, len, &again, &hdrlen2) == 0);
    FUZZ_CHECK(hdrlen2 == len);
    FUZZ_CHECK(fuzz_env_eq(env, again));
    free(text);
    spool_envelope_free(again);
    spool_envelope_free(env);
    return 0;
}
