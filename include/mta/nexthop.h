/*
 * nexthop.h - Postfix next-hop syntax (smart_relay, cc_mta): "host", "host:port",
 * "[host]", "[host]:port", "[ip]:port", "[ipv6addr]:port". Brackets mean: no MX
 * lookup, connect to the A/AAAA (or literal address) of the host itself.
 * Not here: resolving the host (relay does that).
 */
#ifndef MTA_NEXTHOP_H
#define MTA_NEXTHOP_H

struct nexthop {
    char host[256]; /* host name or IP literal, without brackets */
    int port;       /* 1..65535; 25 when not given */
    int no_mx;      /* 1 when the host was written in brackets */
};

/* nexthop_parse - 0 and *out filled, or -1 and *err (malloc'd, when err is not NULL). */
int nexthop_parse(const char *s, struct nexthop *out, char **err);
/* nexthop_valid_hostname - 1 for dot-separated labels of letters, digits, '-', '_' (1..63 each). */
int nexthop_valid_hostname(const char *h);

#endif
