/*
 * fuzz_dns_mx.c - raw DNS answers as the name server sends them, through
 * c-ares's ares_parse_mx_reply into our MX array (dns_mx_parse, the body of
 * the MX query callback) and the preference sort the relay applies; the same
 * packet also goes through the A and AAAA parsers c-ares uses for addresses.
 */
#include <ares.h>

#include "core/dns_int.h"
#include "fuzz_util.h"

/* fuzz_rnd - a fixed sequence, so a crash reproduces. */
static unsigned fuzz_rnd(void)
{
    static unsigned s = 1;
    s = s * 1103515245u + 12345u;
    return s >> 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_mx mx[DNS_MAX_RECORDS];
    const char *errtext = NULL;
    unsigned char *copy = malloc(size ? size : 1);
    struct ares_addrttl a4[8];
    struct ares_addr6ttl a6[8];
    struct hostent *he = NULL;
    int n = -1, na;
    enum dns_status st;

    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    st = dns_mx_parse(copy, (int)size, mx, &n, &errtext);
    FUZZ_CHECK(errtext != NULL);
    FUZZ_CHECK(n >= 0 && n <= DNS_MAX_RECORDS);
    if (st == DNS_OK) {
        FUZZ_CHECK(n > 0);
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(strlen(mx[i].host) < sizeof(mx[i].host) && mx[i].pref >= 0 &&
                       mx[i].pref <= 65535);
        dns_mx_sort(mx, n, fuzz_rnd);
        for (int i = 1; i < n; i++)
            FUZZ_CHECK(mx[i - 1].pref <= mx[i].pref);
    } else {
        FUZZ_CHECK(st == DNS_NODATA || st == DNS_TEMPFAIL);
    }
    na = 8;
    if (ares_parse_a_reply(copy, (int)size, &he, a4, &na) == ARES_SUCCESS && he)
        ares_free_hostent(he);
    he = NULL;
    na = 8;
    if (ares_parse_aaaa_reply(copy, (int)size, &he, a6, &na) == ARES_SUCCESS && he)
        ares_free_hostent(he);
    free(copy);
    return 0;
}
