/*
 * dashboard.c - the dashboard messages (appliance-spec.md "Dashboard messages"):
 * which of them apply now, worded exactly as the spec words them. Only the most
 * severe free-space message is shown: below 1% free the page says "below 1%"
 * and not also "below 5%" (the 5% one would be true but redundant).
 * Not here: where the figures come from (snapshot.c) or how messages are shown.
 */
#include "stats_int.h"
#include "mta/log_smb.h"

static const char *stats_dash_msgs[STATS_DASHBOARD_MAX];
static int stats_dash_n;
static char stats_dash_log[256]; /* the log terminal's own wording, with its count */

/* stats_dashboard_update - recompute the messages from IN (called on the loop thread). */
void stats_dashboard_update(const struct stats_dashboard_input *in)
{
    int n = 0;
    if (in->free_percent >= 0 && in->free_percent < 1.0)
        stats_dash_msgs[n++] = STATS_MSG_FREE_1;
    else if (in->free_percent >= 0 && in->free_percent < 5.0)
        stats_dash_msgs[n++] = STATS_MSG_FREE_5;
    /* the log sink words its state itself ("unreachable; N records are waiting") */
    if (in->log_share_configured && log_smb_message(stats_dash_log, sizeof(stats_dash_log)))
        stats_dash_msgs[n++] = stats_dash_log;
    else if (in->log_share_configured && !in->log_share_up)
        stats_dash_msgs[n++] = STATS_MSG_LOG_DOWN;
    stats_dash_n = n;
}

/* stats_dashboard_messages - up to MAX current messages into OUT; returns how many. */
int stats_dashboard_messages(const char **out, int max)
{
    int n = 0;
    for (; n < stats_dash_n && n < max; n++)
        out[n] = stats_dash_msgs[n];
    return n;
}
