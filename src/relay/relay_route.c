/*
 * relay_route.c - the next hop of one destination, as Postfix's smtp_connect
 * finds it: smart_relay / cc_mta in next-hop syntax ([host] means no MX
 * lookup), else the domain's MX hosts in preference order (null MX refuses,
 * no MX means the domain itself, RFC 5321 5.1), then each host's addresses,
 * one after the other. The owner (a connection) asks for the next address
 * when one fails; the answers come through the callback it handed over.
 * Not here: connecting or talking SMTP (relay_client.c).
 */
#include "relay_int.h"

#include "mta/nexthop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct relay_route {
    struct dns *dns;
    enum sched_dest_kind kind;
    char dest[DNS_NAME_MAX];
    int port;
    struct dns_mx hosts[RELAY_HOSTS_MAX];
    int nhosts, hi;
    struct dns_addr addrs[DNS_MAX_RECORDS];
    int naddrs, ai;
    char nexthop[DNS_NAME_MAX]; /* the name whose MX hosts these are (or the [host]) */
    int mx_secure;              /* the MX answer had a trusted AD bit (DANE) */
    int pending; /* a DNS query is out: its completion owns the route if it is orphaned */
    int orphan;  /* freed while pending */
    relay_route_cb cb;
    void *arg;
};

struct relay_route *relay_route_new(struct dns *dns, enum sched_dest_kind kind, const char *dest,
                                    relay_route_cb cb, void *arg)
{
    struct relay_route *rt = calloc(1, sizeof(*rt));

    if (!rt)
        return NULL;
    rt->dns = dns;
    rt->kind = kind;
    snprintf(rt->dest, sizeof(rt->dest), "%s", dest);
    rt->cb = cb;
    rt->arg = arg;
    return rt;
}

void relay_route_free(struct relay_route *rt)
{
    if (!rt)
        return;
    if (rt->pending)
        rt->orphan = 1; /* the DNS completion frees it */
    else
        free(rt);
}

/* relay_route_dns_end - a query of RT completed: RT if its owner still wants the answer. */
static struct relay_route *relay_route_dns_end(struct relay_route *rt, enum dns_status st)
{
    rt->pending = 0;
    if (rt->orphan) {
        free(rt);
        return NULL;
    }
    return st == DNS_CANCELLED ? NULL : rt; /* relay_free: the owner goes next */
}

/* relay_route_addr_done - the addresses of hosts[hi]. */
static void relay_route_addr_done(void *arg, enum dns_status st, const struct dns_addr *a, int n,
                                  const char *errtext)
{
    struct relay_route *rt = relay_route_dns_end(arg, st);
    char text[700];

    if (!rt)
        return;
    if (st != DNS_OK) {
        snprintf(text, sizeof(text),
                 "Host or domain name not found. Name service error for name=%s type=A: %s",
                 rt->hosts[rt->hi].host, errtext);
        rt->naddrs = 0;
        rt->cb(rt->arg, RELAY_ROUTE_HOST_FAILED,
               st == DNS_TEMPFAIL ? SCHED_CLASS_TEMP : SCHED_CLASS_PERM,
               st == DNS_TEMPFAIL ? "4.4.3" : "5.4.4", text);
        return;
    }
    memcpy(rt->addrs, a, sizeof(*a) * (size_t)n);
    rt->naddrs = n;
    rt->ai = 0;
    rt->cb(rt->arg, RELAY_ROUTE_CONNECT, SCHED_CLASS_NONE, "", "");
}

/* relay_route_resolve - the addresses of hosts[hi]: a literal at once, else from DNS. */
static void relay_route_resolve(struct relay_route *rt)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&rt->addrs[0].ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&rt->addrs[0].ss;
    const char *h = rt->hosts[rt->hi].host;

    memset(&rt->addrs[0], 0, sizeof(rt->addrs[0]));
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        rt->addrs[0].len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        rt->addrs[0].len = sizeof(*sin6);
    }
    if (rt->addrs[0].len) {
        rt->naddrs = 1;
        rt->ai = 0;
        rt->cb(rt->arg, RELAY_ROUTE_CONNECT, SCHED_CLASS_NONE, "", "");
        return;
    }
    rt->pending = 1;
    dns_query_addr(rt->dns, h, relay_route_addr_done, rt);
}

/* relay_route_mx_done - the MX answer for the destination (or next-hop host). */
static void relay_route_mx_done(void *arg, enum dns_status st, const struct dns_mx *mx, int n,
                                const char *errtext)
{
    struct relay_route *rt = relay_route_dns_end(arg, st);
    struct dns_mx sorted[DNS_MAX_RECORDS];
    char text[700];
    const char *name;
    int i;

    if (!rt)
        return;
    name = rt->hosts[0].host; /* the name looked up */
    switch (st) {
    case DNS_OK:
        if (n == 1 && mx[0].host[0] == '\0') {
            snprintf(text, sizeof(text), "Domain %s does not accept mail (nullMX)", name);
            rt->cb(rt->arg, RELAY_ROUTE_FAILED, SCHED_CLASS_PERM, "5.1.0", text);
            return;
        }
        rt->mx_secure = mx[0].secure;
        memcpy(sorted, mx, sizeof(*mx) * (size_t)n);
        dns_mx_sort(sorted, n, NULL);
        rt->nhosts = 0;
        for (i = 0; i < n && rt->nhosts < RELAY_HOSTS_MAX; i++)
            if (sorted[i].host[0])
                rt->hosts[rt->nhosts++] = sorted[i];
        break;
    case DNS_NODATA:
        /* no MX: the domain itself is the implicit MX (RFC 5321 5.1) */
        rt->nhosts = 1;
        break;
    default: /* NXDOMAIN bounces; SERVFAIL, timeouts and the like defer */
        snprintf(text, sizeof(text),
                 "Host or domain name not found. Name service error for name=%s type=MX: %s", name,
                 errtext);
        if (st == DNS_NXDOMAIN)
            rt->cb(rt->arg, RELAY_ROUTE_FAILED, SCHED_CLASS_PERM, "5.1.2", text);
        else
            rt->cb(rt->arg, RELAY_ROUTE_FAILED, SCHED_CLASS_TEMP, "4.4.3", text);
        return;
    }
    rt->hi = 0;
    relay_route_resolve(rt);
}

void relay_route_start(struct relay_route *rt)
{
    struct nexthop nh;
    int mx = 1;

    rt->hi = rt->ai = rt->nhosts = rt->naddrs = 0;
    if (rt->kind == SCHED_DEST_DOMAIN) {
        snprintf(rt->hosts[0].host, sizeof(rt->hosts[0].host), "%s", rt->dest);
        rt->port = 25;
    } else {
        if (nexthop_parse(rt->dest, &nh, NULL) < 0) {
            rt->cb(rt->arg, RELAY_ROUTE_FAILED, SCHED_CLASS_TEMP, "4.3.5",
                   "bad next-hop syntax in configuration");
            return;
        }
        snprintf(rt->hosts[0].host, sizeof(rt->hosts[0].host), "%s", nh.host);
        rt->port = nh.port;
        mx = !nh.no_mx;
    }
    rt->hosts[0].pref = 0;
    rt->nhosts = 1;
    rt->mx_secure = 0;
    snprintf(rt->nexthop, sizeof(rt->nexthop), "%s", rt->hosts[0].host);
    if (!mx) {
        relay_route_resolve(rt);
        return;
    }
    rt->pending = 1;
    dns_query_mx(rt->dns, rt->hosts[0].host, relay_route_mx_done, rt);
}

int relay_route_next(struct relay_route *rt)
{
    if (++rt->ai < rt->naddrs) {
        rt->cb(rt->arg, RELAY_ROUTE_CONNECT, SCHED_CLASS_NONE, "", "");
        return 1;
    }
    if (++rt->hi < rt->nhosts) {
        relay_route_resolve(rt);
        return 1;
    }
    return 0;
}

const char *relay_route_host(const struct relay_route *rt)
{
    /* past the last host (every one failed): the last one tried */
    int i = rt->hi < rt->nhosts ? rt->hi : rt->nhosts - 1;

    return rt->hosts[i > 0 ? i : 0].host;
}

const char *relay_route_nexthop(const struct relay_route *rt)
{
    return rt->nexthop;
}

int relay_route_mx_secure(const struct relay_route *rt)
{
    return rt->mx_secure;
}

int relay_route_port(const struct relay_route *rt)
{
    return rt->port;
}

socklen_t relay_route_addr(const struct relay_route *rt, struct sockaddr_storage *ss, char *ip,
                           size_t iplen)
{
    const struct dns_addr *a = &rt->addrs[rt->ai];

    memcpy(ss, &a->ss, sizeof(*ss));
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons((unsigned short)rt->port);
        inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, ip, (socklen_t)iplen);
    } else {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((unsigned short)rt->port);
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, ip, (socklen_t)iplen);
    }
    return (socklen_t)a->len;
}
