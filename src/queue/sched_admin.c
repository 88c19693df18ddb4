/*
 * sched_admin.c - the queue listing and queue administration over the control
 * socket. sched_list is the one listing formatter (mailq in Postfix's
 * showq_compat layout for long queue IDs, postqueue -j JSON lines): the control
 * commands "queue"/"queue-json" and the HTTP API's /api/queue all call it, one
 * bounded page at a time (limit=N, offset=N or after=ID; "all" for postqueue and
 * mailq, which list everything as Postfix's do). The commands: "queue",
 * "queue-json", "flush", "flush-id ID" are public (any local user, through the
 * setgid postqueue, as Postfix allows); "delete", "hold", "release" (ID...|ALL,
 * "--count" first: unknown IDs are no error and the reply is the number, as
 * postsuper wants) and "hold-sync" (how many holds or releases are not yet
 * durable) are for root and mail_owner. The data comes from the scheduler; the
 * operations behind the commands (flush, delete, hold, release, the views the
 * listing reads) are at the end of this file.
 * Not here: the socket (core/control.c) or the programs' command lines.
 */
#include "mta/control.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/sched.h"
#include "mta/text.h"
#include "sched_int.h"

#include <event2/buffer.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One reply of "queue"/"queue-json" lists at most this many messages (limit=N). */
#define SCHED_ADMIN_LIMIT_DEFAULT 1000
#define SCHED_ADMIN_LIMIT_MAX 100000
#define SCHED_ADMIN_OFFSET_MAX 1000000000L

struct sched_list_acc {
    struct evbuffer *out;
    const struct sched_list_page *pg;
    enum sched_list_format fmt;
    long seen;      /* matches from the start of the walk */
    int count_rest; /* walk on past the page to count the rest (else stop at the first) */
    long long page_bytes;
    struct sched_list_result *res;
};

/*
 * Postfix's mailq layout for long queue IDs (showq_compat.c with
 * enable_long_queue_ids = yes): our IDs are 16 hex digits, wider than the
 * short layout's 11-column ID field.
 */
#define SCHED_LIST_STRING_FORMAT "%-17s %8s %-19s %s\n"
#define SCHED_LIST_SENDER_FORMAT "%-17s %8lld %19.19s %s\n"

/* sched_list_mailq - one message: ID line, then "(reason)" lines above the recipients. */
static void sched_list_mailq(struct evbuffer *out, const struct sched_view_msg *m, int first)
{
    static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char when[64], idmark[80];
    time_t t = (time_t)m->arrival_time;
    struct tm tm;
    const char *saved_reason = "";
    int i;

    if (first)
        evbuffer_add_printf(out, SCHED_LIST_STRING_FORMAT, "----Queue ID-----", "--Size--",
                            "---Arrival Time----", "--Sender/Recipient------");
    else
        evbuffer_add(out, "\n", 1);
    /* asctime()'s first 19 characters, "Sat Nov  8 02:12:35", in the C locale always */
    if (!localtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    snprintf(when, sizeof(when), "%.3s %.3s%3d %.2d:%.2d:%.2d", wday[(unsigned)tm.tm_wday % 7],
             mon[(unsigned)tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    /* showq marks active messages with '*' and held ones with '!' right after the ID */
    snprintf(idmark, sizeof(idmark), "%.64s%s", m->queue_id,
             strcmp(m->queue_name, "active") == 0 ? "*"
             : strcmp(m->queue_name, "hold") == 0 ? "!"
                                                  : "");
    evbuffer_add_printf(out, SCHED_LIST_SENDER_FORMAT, idmark, m->message_size, when,
                        m->sender[0] ? m->sender : "MAILER-DAEMON");
    for (i = 0; i < m->nrecipients; i++) {
        const char *r = m->recipients[i].delay_reason ? m->recipients[i].delay_reason : "";
        /*
         * As showq_compat: a "(reason)" line only when it differs from the previous
         * recipient's, right-aligned to column 78 (no wrapping: a longer reason
         * starts in column 1), "(reason unavailable)" when a reason is followed by none.
         */
        if (strcmp(r, saved_reason) != 0) {
            const char *show = r[0] ? r : "reason unavailable";
            int padding = 76 - (int)strlen(show);
            saved_reason = r;
            evbuffer_add_printf(out, "%*s(%s)\n", padding < 0 ? 0 : padding, "", show);
        }
        evbuffer_add_printf(out, SCHED_LIST_STRING_FORMAT, "", "", "", m->recipients[i].address);
    }
}

/* sched_list_json - one message as one postqueue -j line (Postfix 3.7's bytes: ", " and ": "). */
static void sched_list_json(struct evbuffer *out, const struct sched_view_msg *m)
{
    int i;

    evbuffer_add_printf(out, "{\"queue_name\": ");
    text_json_string(out, m->queue_name);
    evbuffer_add_printf(out, ", \"queue_id\": ");
    text_json_string(out, m->queue_id);
    evbuffer_add_printf(out,
                        ", \"arrival_time\": %lld, \"message_size\": %lld, \"forced_expire\": "
                        "false, \"sender\": ",
                        m->arrival_time, m->message_size);
    text_json_string(out, m->sender);
    evbuffer_add_printf(out, ", \"recipients\": [");
    for (i = 0; i < m->nrecipients; i++) {
        evbuffer_add_printf(out, "%s{\"address\": ", i ? ", " : "");
        text_json_string(out, m->recipients[i].address);
        /* as postqueue -j: only when there is one */
        if (m->recipients[i].delay_reason && m->recipients[i].delay_reason[0]) {
            evbuffer_add_printf(out, ", \"delay_reason\": ");
            text_json_string(out, m->recipients[i].delay_reason);
        }
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "]}\n");
}

/* sched_list_each - list the matches of the page; past it count the rest or stop. */
static int sched_list_each(void *arg, const struct sched_view_msg *m)
{
    struct sched_list_acc *a = arg;

    if (a->pg->match && !a->pg->match(a->pg->match_arg, m))
        return 0;
    if (++a->seen <= a->pg->offset)
        return 0;
    if (a->res->shown < a->pg->limit) {
        if (a->fmt == SCHED_LIST_MAILQ)
            /* the header opens the listing; a later page of a stream continues it */
            sched_list_mailq(a->out, m, a->res->shown == 0 && !(a->pg->stream && a->pg->after));
        else
            sched_list_json(a->out, m);
        a->res->shown++;
        a->page_bytes += m->message_size;
        snprintf(a->res->last_id, sizeof(a->res->last_id), "%s", m->queue_id);
        return 0;
    }
    a->res->rest++;
    return !a->count_rest; /* one past the page says that more follow */
}

/* sched_list_total - count every match and its bytes (a filter's totals: a full walk). */
static int sched_list_total(void *arg, const struct sched_view_msg *m)
{
    struct sched_list_acc *a = arg;

    if (!a->pg->match || a->pg->match(a->pg->match_arg, m)) {
        a->res->total++;
        a->res->bytes += m->message_size;
    }
    return 0;
}

/*
 * A page costs the page, not the queue: the walk starts at the message after= names
 * (looked up by ID) and stops one past the page. The totals of an unfiltered listing are
 * the queue's counters; only a search (MATCH) walks everything, and the "... N more"
 * hint of an mtactl page counts the rest without formatting it. The mailq trailer counts
 * the whole queue as Postfix does (Kbytes rounded down); a STREAM page has none (the
 * paging client writes it from what it listed).
 */
int sched_list(struct sched *s, enum sched_list_format fmt, const struct sched_list_page *pg,
               struct evbuffer *out, struct sched_list_result *res)
{
    struct sched_list_result dummy;
    struct sched_list_acc a = {out, pg, fmt, 0, 0, 0, res ? res : &dummy};
    int all = pg->limit == LONG_MAX;

    memset(a.res, 0, sizeof(*a.res));
    a.count_rest = all || pg->match || (fmt == SCHED_LIST_MAILQ && !pg->stream && pg->after);
    if (sched_view_walk(s, pg->after, pg->stream, sched_list_each, &a) < 0)
        return -1;
    if (pg->match) {
        sched_view_foreach(s, sched_list_total, &a);
    } else if (all && !pg->after) {
        a.res->total = a.seen; /* everything was walked: the exact figures */
        a.res->bytes = a.page_bytes;
    } else {
        a.res->total = spool_count(s->spool);
        a.res->bytes = counter_get(CNT_MQUEUE_BYTES);
        if (!a.count_rest) {
            /* the first page of an unfiltered listing: the rest is what the queue holds more */
            long left = a.res->total - pg->offset - a.res->shown;
            if (!pg->after && a.res->rest)
                a.res->rest = left > 0 ? left : 1;
        }
    }
    a.res->page_bytes = a.page_bytes;
    if (fmt != SCHED_LIST_MAILQ || pg->stream)
        return 0;
    if (a.res->total == 0) {
        evbuffer_add_printf(out, "Mail queue is empty\n");
        return 0;
    }
    if (a.res->rest > 0)
        evbuffer_add_printf(out, "\n... %ld more Request%s: %s after=%s\n", a.res->rest,
                            a.res->rest == 1 ? "" : "s", pg->more ? pg->more : "queue",
                            a.res->last_id);
    evbuffer_add_printf(out, "%s-- %lld Kbytes in %ld Request%s.\n",
                        a.res->shown || a.res->rest ? "\n" : "", a.res->bytes / 1024, a.res->total,
                        a.res->total == 1 ? "" : "s");
    return 0;
}

/* sched_admin_num - VALUE as a decimal in [MIN, MAX]; -1 when it is not one. */
static long sched_admin_num(const char *value, long min, long max)
{
    char *end;
    long v;

    if (value[0] < '0' || value[0] > '9' || strlen(value) > 10)
        return -1;
    v = strtol(value, &end, 10);
    if (*end || v < min || v > max)
        return -1;
    return v;
}

/*
 * sched_admin_parse - the paging arguments "limit=N", "offset=N", "after=ID" or
 * "all" (everything: postqueue, mailq) of ARGV[1..] into PG; -1 with the reason on
 * OUT when one is bad.
 */
static int sched_admin_parse(int argc, char **argv, struct sched_list_page *pg,
                             struct evbuffer *out)
{
    int i;

    memset(pg, 0, sizeof(*pg));
    pg->limit = SCHED_ADMIN_LIMIT_DEFAULT;
    pg->more = "mtactl queue";
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "all") == 0) {
            pg->limit = LONG_MAX;
            continue;
        }
        if (strcmp(argv[i], "page") == 0) {
            pg->stream = 1;
            continue;
        }
        if (strncmp(argv[i], "limit=", 6) == 0 &&
            (pg->limit = sched_admin_num(argv[i] + 6, 1, SCHED_ADMIN_LIMIT_MAX)) > 0)
            continue;
        if (strncmp(argv[i], "offset=", 7) == 0 &&
            (pg->offset = sched_admin_num(argv[i] + 7, 0, SCHED_ADMIN_OFFSET_MAX)) >= 0)
            continue;
        if (strncmp(argv[i], "after=", 6) == 0 && argv[i][6]) {
            pg->after = argv[i] + 6;
            continue;
        }
        evbuffer_add_printf(out, "%s: bad argument '%.64s' (limit=1..%d, offset=N, after=ID)",
                            argv[0], argv[i], SCHED_ADMIN_LIMIT_MAX);
        return -1;
    }
    if ((pg->after && pg->offset) || (pg->stream && (pg->offset || pg->limit == LONG_MAX))) {
        evbuffer_add_printf(out, "%s: give offset= or after=, not both (page: after= only)",
                            argv[0]);
        return -1;
    }
    return 0;
}

/*
 * sched_admin_queue - "queue[-json] [all|limit=N] [offset=N|after=ID]": mailq or postqueue
 * -j. With "page" (postqueue's paged listing) the reply is one page of a stream: a first
 * line "page SHOWN BYTES MORE LAST_ID" (MORE 1 when more follow; LAST_ID is the after= of
 * the next page, "-" when none was listed), then the page's entries; the client writes the
 * mailq trailer from what it listed, so no reply grows with the queue.
 */
static int sched_admin_queue(void *arg, int argc, char **argv, struct evbuffer *out)
{
    struct sched_list_page pg;
    struct sched_list_result res;
    enum sched_list_format fmt =
        strcmp(argv[0], "queue-json") == 0 ? SCHED_LIST_JSON : SCHED_LIST_MAILQ;
    char meta[128];

    if (sched_admin_parse(argc, argv, &pg, out) < 0)
        return -1;
    if (sched_list(arg, fmt, &pg, out, &res) < 0) {
        evbuffer_add_printf(out, "after=%.64s: no such queue ID", pg.after);
        return -1;
    }
    if (pg.stream) {
        snprintf(meta, sizeof(meta), "page %ld %lld %d %s\n", res.shown, res.page_bytes,
                 res.rest > 0, res.shown ? res.last_id : "-");
        evbuffer_prepend(out, meta, strlen(meta));
    }
    return 0;
}

static int sched_admin_flush(void *arg, int argc, char **argv, struct evbuffer *out)
{
    (void)argc;
    (void)argv;
    (void)out;
    sched_flush(arg);
    return 0;
}

/* sched_admin_flush_id - "flush-id ID": postqueue -i, deliver one deferred message now. As
 * Postfix's flush service: a well-formed ID that is not deferred is no error. */
static int sched_admin_flush_id(void *arg, int argc, char **argv, struct evbuffer *out)
{
    if (argc != 2 || !argv[1][0] || strlen(argv[1]) >= SPOOL_ID_SIZE ||
        argv[1][strspn(argv[1], "0123456789ABCDEFabcdef")]) {
        evbuffer_add_printf(out, "flush-id: give one queue ID");
        return -1;
    }
    sched_flush_one(arg, argv[1]);
    return 0;
}

/*
 * sched_admin_ids - "delete"/"hold"/"release" [--count] ID...|ALL: OP on each ID.
 * Without --count (mtactl) an unknown ID is an error and the reply is postsuper's
 * summary line WHAT; with --count (postsuper) unknown IDs are skipped, as
 * Postfix's postsuper does, and the reply is the number.
 */
static int sched_admin_ids(struct sched *s, int argc, char **argv, struct evbuffer *out,
                           int (*op)(struct sched *s, const char *id), const char *what)
{
    int i, n = 0, missing = 0, count = argc > 1 && strcmp(argv[1], "--count") == 0;

    if (argc < 2 + count) {
        evbuffer_add_printf(out, "%s: give queue IDs or ALL", argv[0]);
        return -1;
    }
    for (i = 1 + count; i < argc; i++) {
        int k = op(s, argv[i]);
        if (k == 0 && !count && strcmp(argv[i], "ALL") != 0) {
            missing++;
            evbuffer_add_printf(out, "%s%s: no such queue ID", missing > 1 ? "; " : "", argv[i]);
        }
        n += k;
    }
    if (missing)
        return -1;
    if (count)
        evbuffer_add_printf(out, "%d\n", n);
    else
        evbuffer_add_printf(out, "postsuper: %s: %d message%s\n", what, n, n == 1 ? "" : "s");
    return 0;
}

static int sched_admin_delete(void *arg, int argc, char **argv, struct evbuffer *out)
{
    return sched_admin_ids(arg, argc, argv, out, sched_delete, "Deleted");
}

static int sched_admin_hold(void *arg, int argc, char **argv, struct evbuffer *out)
{
    return sched_admin_ids(arg, argc, argv, out, sched_hold, "Placed on hold");
}

static int sched_admin_release(void *arg, int argc, char **argv, struct evbuffer *out)
{
    return sched_admin_ids(arg, argc, argv, out, sched_release, "Released from hold");
}

/* sched_admin_hold_sync - "hold-sync": how many holds/releases are not yet on stable
 * storage (the clients wait for 0 before they report, as postsuper's rename is durable). */
static int sched_admin_hold_sync(void *arg, int argc, char **argv, struct evbuffer *out)
{
    (void)argc;
    (void)argv;
    evbuffer_add_printf(out, "%d\n", sched_hold_unsynced(arg));
    return 0;
}

void sched_control_attach(struct sched *s, struct control *ctl)
{
    control_register_public(ctl, "queue", sched_admin_queue, s);
    control_register_public(ctl, "queue-json", sched_admin_queue, s);
    control_register_public(ctl, "flush", sched_admin_flush, s);
    control_register_public(ctl, "flush-id", sched_admin_flush_id, s);
    control_register(ctl, "delete", sched_admin_delete, s);
    control_register(ctl, "hold", sched_admin_hold, s);
    control_register(ctl, "release", sched_admin_release, s);
    control_register(ctl, "hold-sync", sched_admin_hold_sync, s);
}

/* --- operations on queued messages (flush, delete, hold, views) --- */

int sched_flush(struct sched *s)
{
    /* a queue run that takes every deferred message, in chunks: a million of them do
     * not stall the loop, and they enter the active set as it has room */
    /* messages the spool's background scan has not reported yet are flushed too */
    if (spool_scanning(s->spool) || s->nrecover)
        s->flush_recovered = 1;
    sched_run_start(s, 1);
    return (int)s->msg_tab.count;
}

/* sched_msg_unqueue - drop M's jobs that no delivery has taken yet (their slots are free
 * again); jobs already taken run to their end. */
static void sched_msg_unqueue(struct sched *s, struct sched_msg *m)
{
    struct sched_dest *d, *dnext;
    struct sched_jobx *j, *jnext;
    int i;

    for (d = TAILQ_FIRST(&s->dests); d; d = dnext) {
        dnext = TAILQ_NEXT(d, link);
        for (j = TAILQ_FIRST(&d->jobs); j; j = jnext) {
            jnext = TAILQ_NEXT(j, qlink);
            if (j->m != m)
                continue;
            TAILQ_REMOVE(&d->jobs, j, qlink);
            for (i = 0; i < j->pub.nrcpt; i++)
                m->active[j->rcpt[i]] = 0;
            m->njobs--;
            s->nready--;
            free(j->rcpt);
            free(j->result);
            free(j);
        }
        sched_dest_release(s, d);
    }
}

/* sched_admin_named - run FN on the message ID names ("ALL": every message; one ID is
 * looked up in the table by ID); the number FN counted. */
static int sched_admin_named(struct sched *s, const char *id,
                             int (*fn)(struct sched *s, struct sched_msg *m, int arg), int arg)
{
    struct sched_msg *m, *next;
    int n = 0;

    if (strcmp(id, "ALL") != 0)
        return (m = sched_msg_find(s, id)) ? fn(s, m, arg) : 0;
    for (m = TAILQ_FIRST(&s->msgs); m; m = next) {
        next = TAILQ_NEXT(m, link); /* FN may remove M */
        n += fn(s, m, arg);
    }
    return n;
}

/* sched_delete_one - postsuper -d of M: 1 when it was removed. */
static int sched_delete_one(struct sched *s, struct sched_msg *m, int unused)
{
    (void)unused;
    if (m->removing || m->gone)
        return 0;
    sched_msg_unqueue(s, m);
    m->deferred = 0;
    if (m->loading)
        m->gone = 1; /* the load completion frees it; the file is removed now */
    sched_msg_remove(s, m, "postsuper");
    return 1;
}

int sched_delete(struct sched *s, const char *id)
{
    return sched_admin_named(s, id, sched_delete_one, 0);
}

/*
 * sched_hold_set - put M on hold (HOLD 1) or release it (0). The state is in memory at
 * once (no delivery starts from now on) and reaches the status file on a worker thread,
 * flushed (sched_hold_unsynced counts the changes not yet durable). A message being
 * loaded at start takes the hold when its load ends.
 */
static void sched_hold_set(struct sched *s, struct sched_msg *m, int hold)
{
    m->held = hold;
    counter_add(CNT_MQUEUE_HELD, hold ? 1 : -1);
    m->hold_unsynced = 1;
    m->status_dirty = 1;
    if (hold) {
        sched_msg_unqueue(s, m);
        log_mail("postsuper", "%s: placed on hold", m->id);
    } else {
        /* as Postfix's postsuper -H: into the deferred queue, due at the next queue run
         * unless a retry time from before the hold is still ahead (postqueue -f: now) */
        if (!m->deferred && !m->njobs) {
            m->deferred = 1;
            m->next_retry = (long long)time(NULL);
        }
        log_mail("postsuper", "%s: released from hold", m->id);
    }
    sched_msg_settle(s, m);
}

/* sched_hold_one - hold (HOLD 1) or release M: 1 when its state changed. A message still
 * loading cannot be known to be held: release skips it. */
static int sched_hold_one(struct sched *s, struct sched_msg *m, int hold)
{
    if (m->removing || m->gone || m->held == hold || (!hold && m->loading))
        return 0;
    sched_hold_set(s, m, hold);
    return 1;
}

/* sched_hold_apply - hold (HOLD 1) or release every message ID names ("ALL": all). */
static int sched_hold_apply(struct sched *s, const char *id, int hold)
{
    return sched_admin_named(s, id, sched_hold_one, hold);
}

int sched_hold(struct sched *s, const char *id)
{
    return sched_hold_apply(s, id, 1);
}

int sched_release(struct sched *s, const char *id)
{
    return sched_hold_apply(s, id, 0);
}

int sched_hold_unsynced(struct sched *s)
{
    struct sched_msg *m;
    int n = 0;

    TAILQ_FOREACH(m, &s->msgs, link)
    n += m->hold_unsynced && !m->removing && !m->gone;
    return n;
}

int sched_flush_one(struct sched *s, const char *id)
{
    struct sched_msg *m = sched_msg_find(s, id);

    if (!m || !m->deferred || m->held || m->removing || m->gone || m->loading)
        return 0;
    m->next_retry = 0;
    sched_msg_activate(s, m);
    return 1;
}
