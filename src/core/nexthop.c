/*
 * nexthop.c - parse Postfix next-hop syntax for smart_relay and cc_mta:
 * host, host:port, [host], [host]:port, [ip]:port, [ipv6addr]:port.
 * The port is numeric (Postfix also takes service names; we don't, so that a
 * typo is an error at start and not a lookup failure at delivery time).
 * "[IPv6:addr]" (the RFC 5321 address-literal spelling) is accepted too.
 * Not here: DNS lookups or connection policy.
 */
#include "mta/nexthop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* nexthop_fail - set *err from a format and return -1. */
static int nexthop_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int nexthop_fail(char **err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return -1;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
    return -1;
}

/* nexthop_valid_hostname - letters, digits, '-', '_' in dot-separated labels of 1..63. */
int nexthop_valid_hostname(const char *h)
{
    size_t len = strlen(h), label = 0;

    if (len == 0 || len > 254 || (len == 254 && h[253] != '.'))
        return 0;
    for (const char *p = h; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return 0; /* empty label: leading dot or ".." */
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

/* nexthop_parse_port - decimal 1..65535 only; -1 otherwise. */
static int nexthop_parse_port(const char *p)
{
    size_t nd = strspn(p, "0123456789");
    long v = 0;

    if (nd == 0 || nd > 5 || p[nd] != '\0')
        return -1;
    for (size_t i = 0; i < nd; i++)
        v = v * 10 + (p[i] - '0');
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

int nexthop_parse(const char *s, struct nexthop *out, char **err)
{
    char host[256];
    const char *port = NULL;
    size_t hlen;

    if (err)
        *err = NULL;
    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return nexthop_fail(err, "empty next hop");

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return nexthop_fail(err, "missing ']' in '%s'", s);
        const char *in = s + 1;
        hlen = (size_t)(close - in);
        if (hlen > 5 && strncasecmp(in, "IPv6:", 5) == 0) {
            in += 5;
            hlen -= 5;
        }
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return nexthop_fail(err, "unexpected text after ']' in '%s' (expected [host]:port)", s);
        out->no_mx = 1;
        if (hlen == 0)
            return nexthop_fail(err, "empty host in '%s'", s);
        if (hlen >= sizeof(host))
            return nexthop_fail(err, "host name in '%.40s...' is too long", s);
        memcpy(host, in, hlen);
        host[hlen] = '\0';
        if (strchr(host, ':')) {
            struct in6_addr a6;
            if (inet_pton(AF_INET6, host, &a6) != 1)
                return nexthop_fail(err, "'%s' is not a valid IPv6 address", host);
        } else if (!nexthop_valid_hostname(host)) {
            return nexthop_fail(err, "'%s' is not a valid host name or IP address", host);
        }
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            return nexthop_fail(err, "an IPv6 address must be written in brackets: '[%s]'", s);
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (colon)
            port = colon + 1;
        if (hlen == 0)
            return nexthop_fail(err, "empty host in '%s'", s);
        if (hlen >= sizeof(host))
            return nexthop_fail(err, "host name in '%.40s...' is too long", s);
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (!nexthop_valid_hostname(host))
            return nexthop_fail(err, "'%s' is not a valid host name", host);
    }

    out->port = 25;
    if (port) {
        out->port = nexthop_parse_port(port);
        if (out->port < 0) {
            out->port = 0;
            return nexthop_fail(err, "bad port '%s' in '%s' (expected 1 to 65535)", port, s);
        }
    }
    memcpy(out->host, host, strlen(host) + 1);
    return 0;
}
