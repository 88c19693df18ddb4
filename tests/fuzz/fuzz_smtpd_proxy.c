/*
 * fuzz_smtpd_proxy.c - the PROXY protocol header parser (smtpd_proxy_parse.c)
 * on its own: the first byte says whether the input ends (EOF), the rest is
 * what the load balancer sent. Checks the documented bounds: a complete
 * header never claims more bytes than given nor more than SMTPD_PROXY_MAX
 * (v1: SMTPD_PROXY_V1_MAX), an address is IPv4 or IPv6, every error has a
 * text, and "more" is never the answer at EOF.
 */
#include "fuzz_util.h"
#include "smtpd/smtpd_proxy.h"

#include <netinet/in.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    int eof = fuzz_byte(&in) & 1;
    struct smtpd_proxy_info pi;
    size_t hl = 0;
    const char *err = NULL;
    char esc[SMTPD_PROXY_MAX * 4 + 1];

    enum smtpd_proxy_res r = smtpd_proxy_parse(in.p, in.n, eof, &hl, &pi, &err);
    switch (r) {
    case SMTPD_PROXY_OK:
        FUZZ_CHECK(hl > 0 && hl <= in.n && hl <= SMTPD_PROXY_MAX);
        if (in.p[0] == 'P')
            FUZZ_CHECK(hl <= SMTPD_PROXY_V1_MAX && in.p[hl - 1] == '\n');
        if (!pi.local) {
            FUZZ_CHECK(pi.client.ss_family == AF_INET || pi.client.ss_family == AF_INET6);
            FUZZ_CHECK(pi.client_len <= sizeof(pi.client));
        }
        break;
    case SMTPD_PROXY_MORE:
        FUZZ_CHECK(!eof && in.n < SMTPD_PROXY_MAX);
        break;
    case SMTPD_PROXY_ERR:
        FUZZ_CHECK(err && *err);
        smtpd_proxy_escape(in.p, in.n, esc, sizeof(esc));
        FUZZ_CHECK(strlen(esc) < sizeof(esc));
        break;
    }
    return 0;
}
