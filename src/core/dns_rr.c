/*
 * dns_rr.c - raw DNS answers (as c-ares hands them to ares_send's callback) to
 * plain arrays for the record types c-ares 1.18 has no parser for: TLSA
 * (RFC 6698, for DANE) and TXT joined per record (for MTA-STS's _mta-sts
 * record). Every length is checked against the packet; a malformed packet is
 * refused as a whole.
 * Not here: sending queries or the AD bit's meaning (dns.c).
 */
#include "dns_int.h"

#include <ares.h>
#include <string.h>

/* dns_skip_name - the length of the (possibly compressed) name at P, or -1. */
static long dns_skip_name(const unsigned char *abuf, int alen, int p)
{
    char *name = NULL;
    long enclen = 0;

    if (p >= alen || ares_expand_name(abuf + p, abuf, alen, &name, &enclen) != ARES_SUCCESS)
        return -1;
    ares_free_string(name);
    return enclen;
}

int dns_rr_each(const unsigned char *abuf, int alen, int type,
                int (*fn)(void *arg, const unsigned char *rd, int rdlen), void *arg)
{
    int qd, an, p = 12, i;
    long n;

    if (alen < 12)
        return -1;
    qd = abuf[4] << 8 | abuf[5];
    an = abuf[6] << 8 | abuf[7];
    for (i = 0; i < qd; i++) {
        if ((n = dns_skip_name(abuf, alen, p)) < 0 || p + n + 4 > alen)
            return -1;
        p += (int)n + 4;
    }
    for (i = 0; i < an; i++) {
        int rtype, rclass, rdlen;
        if ((n = dns_skip_name(abuf, alen, p)) < 0 || p + n + 10 > alen)
            return -1;
        p += (int)n;
        rtype = abuf[p] << 8 | abuf[p + 1];
        rclass = abuf[p + 2] << 8 | abuf[p + 3];
        rdlen = abuf[p + 8] << 8 | abuf[p + 9];
        p += 10;
        if (p + rdlen > alen)
            return -1;
        if (rtype == type && rclass == 1 && fn(arg, abuf + p, rdlen))
            return 0;
        p += rdlen;
    }
    return 0;
}

struct dns_tlsa_acc {
    struct dns_tlsa *out;
    int n, max;
};

/* dns_tlsa_one - one TLSA rdata: usage, selector, matching type, association data. */
static int dns_tlsa_one(void *arg, const unsigned char *rd, int rdlen)
{
    struct dns_tlsa_acc *a = arg;
    struct dns_tlsa *t;

    if (rdlen < 4 || rdlen - 3 > DNS_TLSA_DATA_MAX)
        return 0; /* no data, or a full certificate we do not keep: skipped */
    t = &a->out[a->n++];
    t->usage = rd[0];
    t->selector = rd[1];
    t->mtype = rd[2];
    t->len = (unsigned short)(rdlen - 3);
    memcpy(t->data, rd + 3, (size_t)rdlen - 3);
    return a->n >= a->max;
}

int dns_tlsa_parse(const unsigned char *abuf, int alen, struct dns_tlsa *out, int max)
{
    struct dns_tlsa_acc a = {out, 0, max};

    if (max <= 0)
        return 0;
    return dns_rr_each(abuf, alen, 52, dns_tlsa_one, &a) < 0 ? -1 : a.n;
}

struct dns_txt_acc {
    struct dns_txt *out;
    int n, max;
};

/* dns_txt_one - one TXT rdata: its character-strings joined (RFC 7208 3.3 style). */
static int dns_txt_one(void *arg, const unsigned char *rd, int rdlen)
{
    struct dns_txt_acc *a = arg;
    struct dns_txt *t = &a->out[a->n];
    size_t used = 0;
    int p = 0;

    while (p < rdlen) {
        int l = rd[p++];
        if (p + l > rdlen)
            return 0; /* malformed string: this record is skipped */
        if (used + (size_t)l < sizeof(t->text)) {
            memcpy(t->text + used, rd + p, (size_t)l);
            used += (size_t)l;
        }
        p += l;
    }
    t->text[used] = '\0';
    a->n++;
    return a->n >= a->max;
}

int dns_txt_parse(const unsigned char *abuf, int alen, struct dns_txt *out, int max)
{
    struct dns_txt_acc a = {out, 0, max};

    if (max <= 0)
        return 0;
    return dns_rr_each(abuf, alen, 16, dns_txt_one, &a) < 0 ? -1 : a.n;
}
