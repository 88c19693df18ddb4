/*
 * relay_mtasts.h - private to src/relay/: MTA-STS policies (relay_mtasts.c) for
 * relay_tlspolicy.c: the parser, the MX pattern match, the cache (memory and
 * DATA/mta-sts) and the HTTPS fetch of one policy.
 */
#ifndef MTA_RELAY_MTASTS_H
#define MTA_RELAY_MTASTS_H

#include "relay_int.h"

#define RELAY_STS_MX_MAX 16
#define RELAY_STS_MAGIC 0x53545331u /* "STS1": the on-disk copy's format */
enum { RELAY_STS_NONE = 0, RELAY_STS_TESTING = 1, RELAY_STS_ENFORCE = 2 };

struct relay_sts_policy {
    unsigned magic;
    int mode;
    long max_age;
    long long expires; /* unix seconds: fetched + max_age */
    char id[64];       /* the TXT record's id= when it was fetched */
    int nmx;
    char mx[RELAY_STS_MX_MAX][DNS_NAME_MAX];
};

/* relay_sts_parse - policy TEXT (RFC 8461 3.2) into P; -1 with WHY when it is not valid. */
int relay_sts_parse(const char *text, size_t len, struct relay_sts_policy *p, char *why,
                    size_t wlen);
/* relay_sts_mx_match - HOST matches one of P's mx patterns ("*.d" = one label more). */
int relay_sts_mx_match(const struct relay_sts_policy *p, const char *host);
/* relay_sts_cached - DOMAIN's unexpired policy, or NULL. The first call starts reading the
 * copies in DATA/mta-sts on a worker (relay_new makes it, so they are in before mail is). */
const struct relay_sts_policy *relay_sts_cached(struct relay *r, const char *domain);
/* relay_sts_store - remember DOMAIN's policy in memory and (on a worker) on the volume. */
void relay_sts_store(struct relay *r, const char *domain, const struct relay_sts_policy *p);
/* relay_sts_free - forget every policy (relay_free). */
void relay_sts_free(struct relay *r);

/* One HTTPS GET of https://mta-sts.DOMAIN/.well-known/mta-sts.txt at IP:smtp_mta_sts_port. */
struct relay_sts_fetch;
struct relay_sts_fetch *relay_sts_fetch_start(struct relay *r, const char *domain, const char *ip,
                                              void (*done)(void *arg, struct relay_sts_fetch *f),
                                              void *arg);
/* relay_sts_fetch_result - 0 with the body, or -1 with WHY (certificate, status, ...). */
int relay_sts_fetch_result(struct relay_sts_fetch *f, const char **body, size_t *len,
                           const char **why);
/* relay_sts_fetch_free - end it (a request in flight is cancelled; DONE is not called). */
void relay_sts_fetch_free(struct relay_sts_fetch *f);

#endif
