/*
 * snapshot.c - take one consistent set of figures (counters, resource usage, free
 * space, dashboard messages) that a page, the JSON API, /metrics or a StatsD push
 * is then rendered from. Reads in-memory values only: never the spool files.
 * Not here: formatting.
 */
#include <string.h>
#include <time.h>

#include "mta/conf.h"
#include "mta/spool.h"

#include "stats_int.h"

/* stats_snapshot_take - fill S with the figures of this instant. */
void stats_snapshot_take(struct stats *st, struct stats_snapshot *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < CNT__COUNT; i++)
        s->cnt[i] = counter_get((enum counter_id)i);
    s->mqueue_kilobytes = stats_kilobytes(s->cnt[CNT_MQUEUE_BYTES]);
    s->uptime_seconds = (long long)(stats_mono_now() - st->start_mono);
    stats_resource_read(&s->cpu_seconds, &s->rss_bytes);
    s->free_percent = st->spool ? spool_free_percent(st->spool) : -1;
    s->log_share_configured = st->conf->log_terminal[0] != '\0' && st->conf->logs_enabled &&
                              st->conf->maillog_filename[0] != '\0';
    s->now = (long long)time(NULL);

    struct stats_dashboard_input in = {
        .free_percent = s->free_percent,
        .log_share_configured = s->log_share_configured,
        .log_share_up = s->cnt[CNT_LOG_SHARE_UP] != 0,
    };
    stats_dashboard_update(&in);
    s->nmsgs = stats_dashboard_messages(s->msgs, STATS_DASHBOARD_MAX);
}

/* stats_log_share_state - "up", "down" or "not connected", for people. */
const char *stats_log_share_state(const struct stats_snapshot *s)
{
    if (!s->log_share_configured)
        return "not connected";
    return s->cnt[CNT_LOG_SHARE_UP] ? "up" : "down";
}
