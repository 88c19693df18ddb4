/*
 * fuzz_smtpd_addr.c - envelope path and ESMTP parameter parsing on their own
 * (smtpd_addr.c): the first byte picks the parser and its flags, the rest is
 * the text. Checks the documented bounds of every output.
 */
#include "fuzz_util.h"
#include "smtpd/smtpd_addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned op = fuzz_byte(&in);
    char *text = fuzz_strndup(in.p, in.n);
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256], xout[600];
    const char *end = NULL, *reply = NULL;
    int r;

    switch (op % 4) {
    case 0:
        r = smtpd_addr_parse(text, op & 4, op & 8, addr, &end);
        FUZZ_CHECK(r == SMTPD_ADDR_OK || r == SMTPD_ADDR_ESYNTAX || r == SMTPD_ADDR_EUTF8);
        if (r == SMTPD_ADDR_OK) {
            FUZZ_CHECK(strlen(addr) <= SMTPD_ADDR_MAX);
            FUZZ_CHECK(end >= text && end <= text + strlen(text));
            if (!(op & 8))
                FUZZ_CHECK(!smtpd_addr_has_8bit(addr));
            if (!(op & 4))
                FUZZ_CHECK(addr[0] != '\0');
        }
        break;
    case 1: {
        /* the output size comes from the input too: every size must be respected */
        size_t outlen = (op >> 2) % sizeof(xout) + 1;
        char *out = malloc(outlen);
        if (!out)
            abort();
        if (smtpd_xtext_decode(in.p ? (const char *)in.p : "", in.n, out, outlen) == 0)
            FUZZ_CHECK(memchr(out, '\0', outlen) != NULL);
        free(out);
        break;
    }
    case 2: {
        struct smtpd_mail_params mp;
        if (smtpd_mail_params_parse(text, &mp, rbuf, sizeof(rbuf), &reply) < 0)
            FUZZ_CHECK(reply && strlen(reply) > 4);
        else
            FUZZ_CHECK(strlen(mp.envid) <= SMTPD_ENVID_MAX && mp.size >= -1);
        break;
    }
    default: {
        struct smtpd_rcpt_params rp;
        if (smtpd_rcpt_params_parse(text, &rp, rbuf, sizeof(rbuf), &reply) < 0)
            FUZZ_CHECK(reply && strlen(reply) > 4);
        else
            FUZZ_CHECK(strlen(rp.orcpt) <= SMTPD_ORCPT_MAX);
        break;
    }
    }
    free(text);
    return 0;
}
