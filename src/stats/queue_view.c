/*
 * queue_view.c - helpers over the scheduler's read-only queue view shared by the
 * queue page and /api/queue: the search filter and the kilobyte rounding.
 * Not here: rendering.
 */
#include <string.h>

#include "mta/sched.h"

#include "stats_int.h"

/* stats_queue_match - 1 when Q is empty or occurs (case-insensitively) in M's queue ID, sender or a
 * recipient. */
int stats_queue_match(const struct sched_view_msg *m, const char *q)
{
    if (!q || !*q)
        return 1;
    if ((m->queue_id && strcasestr(m->queue_id, q)) || (m->sender && strcasestr(m->sender, q)))
        return 1;
    for (int i = 0; i < m->nrecipients; i++) {
        const struct sched_view_rcpt *r = &m->recipients[i];
        if ((r->address && strcasestr(r->address, q)) ||
            (r->orig_address && strcasestr(r->orig_address, q)))
            return 1;
    }
    return 0;
}

/* stats_kilobytes - BYTES in kilobytes, rounded up so a non-empty queue never shows 0. */
long long stats_kilobytes(long long bytes)
{
    return bytes <= 0 ? 0 : (bytes + 1023) / 1024;
}
