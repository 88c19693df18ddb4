/*
 * dns_int.h - private to src/core/: the part of dns.c that turns a raw DNS
 * answer (as c-ares hands it to the query callback) into our MX array,
 * exposed so that the fuzz target tests/fuzz/fuzz_dns_mx.c feeds it packets.
 * Not for other modules: they use include/mta/dns.h.
 */
#ifndef MTA_DNS_INT_H
#define MTA_DNS_INT_H

#include "mta/dns.h"

/*
 * dns_mx_parse - the MX records of answer ABUF[0..ALEN) into OUT (room for
 * DNS_MAX_RECORDS; more are ignored), *N their count; a null MX ("0 .") gets
 * host "". DNS_OK, DNS_NODATA (no MX record) or DNS_TEMPFAIL (malformed), with
 * *ERRTEXT the Postfix-style reason ("" for DNS_OK).
 */
enum dns_status dns_mx_parse(const unsigned char *abuf, int alen, struct dns_mx *out, int *n,
                             const char **errtext);

/*
 * dns_rr_each - call FN(ARG, RDATA, RDLEN) for each answer record of TYPE (class IN) in
 * ABUF[0..ALEN); stops when FN returns non-zero. -1 when the packet is malformed, else 0.
 */
int dns_rr_each(const unsigned char *abuf, int alen, int type,
                int (*fn)(void *arg, const unsigned char *rd, int rdlen), void *arg);
/* dns_tlsa_parse - the TLSA records of ABUF into OUT (room for MAX): their count, or -1 when
 * the packet is malformed. */
int dns_tlsa_parse(const unsigned char *abuf, int alen, struct dns_tlsa *out, int max);
/* dns_txt_parse - the TXT records of ABUF into OUT (room for MAX); their count, -1 if malformed. */
int dns_txt_parse(const unsigned char *abuf, int alen, struct dns_txt *out, int max);

#endif
