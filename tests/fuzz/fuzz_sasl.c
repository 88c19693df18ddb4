/*
 * fuzz_sasl.c - the base64 decoders that take client bytes: the SMTP AUTH
 * argument and continued responses (smtpd_sasl_decode, Cyrus sasl_decode64)
 * and the HTTP Basic credentials (stats_base64_decode, stats_auth_check). The
 * first byte chooses what is fed; where the strict HTTP decoder accepts a
 * text, the AUTH decoder must accept it with the same bytes.
 */
#include "fuzz_util.h"
#include "smtpd/smtpd_int.h"
#include "stats_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned op = fuzz_byte(&in);
    char *text = fuzz_strndup(in.p, in.n), *dec = NULL;
    size_t tlen = strlen(text);
    unsigned char sbuf[768];
    unsigned dlen = 0;
    long n;

    switch (op % 3) {
    case 0: /* an AUTH line as smtpd gets it (NUL-terminated, no line end) */
        if (smtpd_sasl_decode(text, &dec, &dlen) == 0) {
            FUZZ_CHECK(dec != NULL && dlen <= tlen / 4 * 3 + 3);
            n = stats_base64_decode(text, tlen, sbuf, sizeof(sbuf));
            if (n >= 0)
                FUZZ_CHECK((unsigned)n == dlen && memcmp(sbuf, dec, dlen) == 0);
            free(dec);
        } else {
            FUZZ_CHECK(dec == NULL);
            /* a text the strict decoder takes must not be refused by AUTH */
            FUZZ_CHECK(stats_base64_decode(text, tlen, sbuf, sizeof(sbuf)) < 0 || tlen == 0);
        }
        break;
    case 1: { /* the HTTP decoder with an output size from the input */
        size_t outmax = (op >> 2) % sizeof(sbuf);
        n = stats_base64_decode(text, tlen, sbuf, outmax);
        FUZZ_CHECK(n >= -1 && n <= (long)outmax);
        break;
    }
    default: /* an Authorization header value */
        (void)stats_auth_check(text, (op & 4) ? "admin" : "", (op & 8) ? "secret" : "");
        break;
    }
    free(text);
    return 0;
}
