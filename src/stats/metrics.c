/*
 * metrics.c - the Prometheus text exposition format 0.0.4 for /metrics: every
 * counter of counters.h with the mta_ prefix (counters end in _total; those kept in
 * microseconds are given in seconds, as _seconds_total), plus the
 * process's CPU and memory, uptime and the data volume's free space as a ratio
 * (base units, as Prometheus naming asks, so no kilobytes here).
 * Not here: the HTTP reply (http_api.c).
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "stats_int.h"

struct stats_metric_def {
    const char *name, *kind, *help;
};

static const struct stats_metric_def stats_metric_defs[CNT__COUNT] = {
#define STATS_X_DEF(id, name, kind, help) [id] = {name, kind, help},
    COUNTERS(STATS_X_DEF)
#undef STATS_X_DEF
};

/* stats_metric_help - a HELP line; its text escapes backslash and newline as the format asks. */
static void stats_metric_help(struct evbuffer *out, const char *name, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*p == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, p, 1);
    }
    evbuffer_add(out, ".\n", 2);
}

/* stats_metric - HELP, TYPE and the single sample of one metric. */
static void stats_metric(struct evbuffer *out, const char *name, const char *type, const char *help,
                         const char *value)
{
    stats_metric_help(out, name, help);
    evbuffer_add_printf(out, "# TYPE %s %s\n%s %s\n", name, type, name, value);
}

/* stats_metrics_format - the whole /metrics body for S. */
void stats_metrics_format(struct evbuffer *out, const struct stats_snapshot *s)
{
    char name[128], value[64];
    for (int i = 0; i < CNT__COUNT; i++) {
        const struct stats_metric_def *d = &stats_metric_defs[i];
        int counter = d->kind[0] == 'c';
        size_t len = strlen(d->name);
        if (strcmp(d->kind, "counter_us") == 0 && len > 3) {
            /* microseconds: in seconds, the base unit Prometheus asks for */
            long long v = s->cnt[i] > 0 ? s->cnt[i] : 0;
            snprintf(name, sizeof name, "mta_%.*s_seconds_total", (int)(len - 3), d->name);
            snprintf(value, sizeof value, "%lld.%06lld", v / 1000000, v % 1000000);
        } else {
            snprintf(name, sizeof name, "mta_%s%s", d->name, counter ? "_total" : "");
            snprintf(value, sizeof value, "%lld", s->cnt[i]);
        }
        stats_metric(out, name, counter ? "counter" : "gauge", d->help, value);
    }
    snprintf(value, sizeof value, "%.3f", s->cpu_seconds);
    stats_metric(out, "mta_process_cpu_seconds_total", "counter",
                 "User and system CPU time of the daemon in seconds", value);
    snprintf(value, sizeof value, "%lld", s->rss_bytes);
    stats_metric(out, "mta_process_resident_memory_bytes", "gauge",
                 "Resident memory of the daemon in bytes", value);
    snprintf(value, sizeof value, "%lld", s->uptime_seconds);
    stats_metric(out, "mta_uptime_seconds", "gauge", "Seconds since the daemon started", value);
    if (s->free_percent >= 0) {
        snprintf(value, sizeof value, "%.4f", s->free_percent / 100.0);
        stats_metric(out, "mta_data_volume_free_ratio", "gauge",
                     "Free space of the data volume (0 to 1)", value);
    }
    snprintf(value, sizeof value, "%d", s->nmsgs);
    stats_metric(out, "mta_dashboard_messages", "gauge", "Dashboard messages (warnings) shown now",
                 value);
}
