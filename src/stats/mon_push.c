/*
 * mon_push.c - the mon terminal: every STATS_MON_INTERVAL seconds (and once right
 * at start) the counters and the process's resource usage are sent as StatsD
 * gauges ("mta.NAME:VALUE|g", one per line, several lines per datagram) over UDP
 * to mon_terminal. The target must be an IP literal (ip:port or [ipv6]:port):
 * the loop never waits for DNS. A lost datagram is simply lost (UDP).
 * Not here: what the figures mean (snapshot.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/log.h"

#include "stats_int.h"

#define STATS_MON_INTERVAL 5    /* seconds between pushes */
#define STATS_MON_DATAGRAM 1400 /* bytes of one datagram at most (no IP fragmentation) */

struct stats_mon {
    struct stats *st;
    int fd;
    struct event *timer;
    double last_mono, last_cpu; /* for cpu_percent over the interval */
    int warned;                 /* one log line per failure streak, not one per push */
};

/* stats_mon_send - send BUF as datagrams of whole lines, each at most STATS_MON_DATAGRAM bytes. */
static void stats_mon_send(struct stats_mon *m, struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf);
    const char *p = (const char *)evbuffer_pullup(buf, -1);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (n > STATS_MON_DATAGRAM) {
            n = STATS_MON_DATAGRAM;
            while (n > 0 && p[off + n - 1] != '\n')
                n--;
            if (n == 0)
                n = STATS_MON_DATAGRAM;
        }
        size_t dlen = n;
        if (p[off + dlen - 1] == '\n')
            dlen--; /* no trailing newline in a datagram */
        if (send(m->fd, p + off, dlen, MSG_DONTWAIT) < 0) {
            /* ECONNREFUSED from an earlier ICMP or a full buffer: report once per streak */
            if (!m->warned)
                log_warning("stats", "mon_terminal %s: %s", m->st->conf->mon_terminal,
                            strerror(errno));
            m->warned = 1;
            return;
        }
        off += n;
    }
    m->warned = 0;
}

/* stats_mon_cb - the push timer. */
static void stats_mon_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stats_mon *m = arg;
    struct stats_snapshot s;
    stats_snapshot_take(m->st, &s);
    double now = stats_mono_now(), pct = 0;
    if (now - m->last_mono > 0.01)
        pct = (s.cpu_seconds - m->last_cpu) * 100.0 / (now - m->last_mono);
    m->last_mono = now;
    m->last_cpu = s.cpu_seconds;
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        return;
    stats_statsd_format(buf, &s, pct);
    stats_mon_send(m, buf);
    evbuffer_free(buf);
}

/* stats_mon_new - a UDP socket connected to TARGET and the push timer; NULL and *err on a bad
 * target. */
struct stats_mon *stats_mon_new(struct stats *st, const char *target, char **err)
{
    struct sockaddr_storage ss;
    int salen;
    if (stats_mon_parse_target(target, &ss, &salen) < 0) {
        if (asprintf(err,
                     "mon_terminal must be ip:port or [ipv6]:port with an IP address, not '%s'.",
                     target) < 0)
            *err = NULL;
        return NULL;
    }
    struct stats_mon *m = calloc(1, sizeof *m);
    if (!m)
        goto fail;
    m->st = st;
    m->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m->fd < 0 || connect(m->fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
        goto fail;
    m->timer = event_new(st->base, -1, EV_PERSIST, stats_mon_cb, m);
    struct timeval tv = {STATS_MON_INTERVAL, 0};
    if (!m->timer || event_add(m->timer, &tv) < 0)
        goto fail;
    stats_resource_read(&m->last_cpu, &(long long){0});
    m->last_mono = stats_mono_now();
    event_active(m->timer, EV_TIMEOUT, 0); /* first push now, then every interval */
    return m;
fail:
    if (asprintf(err, "mon_terminal %s: %s.", target, strerror(errno)) < 0)
        *err = NULL;
    stats_mon_free(m);
    return NULL;
}

/* stats_mon_free - stop pushing (NULL ok). */
void stats_mon_free(struct stats_mon *m)
{
    if (!m)
        return;
    if (m->timer)
        event_free(m->timer);
    if (m->fd >= 0)
        close(m->fd);
    free(m);
}
