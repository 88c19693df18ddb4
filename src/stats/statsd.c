/*
 * statsd.c - the StatsD side of the mon terminal without any I/O: parsing the
 * mon_terminal target (an IP literal with a port; no DNS on the loop) and
 * formatting a snapshot as gauge lines "mta.NAME:VALUE|g".
 * Not here: the socket and the timer (mon_push.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "stats_int.h"

/*
 * stats_mon_parse_target - "ip:port" or "[ipv6]:port" into SA (a struct
 * sockaddr_storage) and *SALEN. 0 ok, -1 when it is not an IP literal with a port.
 */
int stats_mon_parse_target(const char *text, void *sa, int *salen)
{
    char host[64];
    const char *colon, *hs = text;
    size_t hl;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return -1;
        hs = text + 1;
        hl = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || memchr(text, ':', (size_t)(colon - text)))
            return -1; /* bare IPv6 needs brackets */
        hl = (size_t)(colon - text);
    }
    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || port < 1 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(struct sockaddr_storage));
    struct sockaddr_in *s4 = sa;
    struct sockaddr_in6 *s6 = sa;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *salen = (int)sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *salen = (int)sizeof *s6;
        return 0;
    }
    return -1;
}

/* stats_statsd_gauge - one "mta.NAME:VALUE|g" line; StatsD reads "-N" as a decrement, so clamp at
 * 0. */
static void stats_statsd_gauge(struct evbuffer *out, const char *name, long long v)
{
    evbuffer_add_printf(out, "mta.%s:%lld|g\n", name, v < 0 ? 0 : v);
}

/* stats_statsd_format - every gauge line for S; the appliance's three counters come first. */
void stats_statsd_format(struct evbuffer *out, const struct stats_snapshot *s, double cpu_percent)
{
    static const char *names[CNT__COUNT] = {
#define STATS_X_NAME(id, name, kind, help) [id] = name,
        COUNTERS(STATS_X_NAME)
#undef STATS_X_NAME
    };
    stats_statsd_gauge(out, "mqueue_messages", s->cnt[CNT_MQUEUE_MESSAGES]);
    stats_statsd_gauge(out, "mqueue_kilobytes", s->mqueue_kilobytes);
    stats_statsd_gauge(out, "smtp_active_sessions", s->cnt[CNT_SMTP_ACTIVE]);
    for (int i = 0; i < CNT__COUNT; i++)
        if (i != CNT_MQUEUE_MESSAGES && i != CNT_SMTP_ACTIVE)
            stats_statsd_gauge(out, names[i], s->cnt[i]);
    evbuffer_add_printf(out, "mta.cpu_percent:%.2f|g\n", cpu_percent < 0 ? 0 : cpu_percent);
    evbuffer_add_printf(out, "mta.cpu_seconds:%.3f|g\n", s->cpu_seconds);
    stats_statsd_gauge(out, "rss_bytes", s->rss_bytes);
    stats_statsd_gauge(out, "uptime_seconds", s->uptime_seconds);
    if (s->free_percent >= 0)
        evbuffer_add_printf(out, "mta.data_volume_free_percent:%.2f|g\n", s->free_percent);
}
