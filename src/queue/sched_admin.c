/*
 * sched_admin.c - queue administration over the control socket: "queue" (the
 * mailq listing, Postfix showq_compat format for long queue IDs), "queue-json"
 * (postqueue -j lines), both one bounded page at a time (limit=N, offset=N or
 * after=ID), "flush" and "delete ID...|ALL". The data comes from the
 * scheduler's views.
 * Not here: the socket (core/control.c) or mtactl's command line.
 */
#include "mta/control.h"
#include "mta/sched.h"
#include "mta/text.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One reply of "queue"/"queue-json" lists at most this many messages (limit=N). */
#define SCHED_ADMIN_LIMIT_DEFAULT 1000
#define SCHED_ADMIN_LIMIT_MAX 100000
#define SCHED_ADMIN_OFFSET_MAX 1000000000L

/* The page of a listing: which messages of the scheduler's order are shown. */
struct sched_admin_page {
    long limit;        /* at most this many shown */
    long offset;       /* skip this many first */
    const char *after; /* or: skip up to and including this queue ID (NULL: not used) */
};

struct sched_admin_acc {
    struct evbuffer *out;
    const struct sched_admin_page *pg;
    int (*show)(struct sched_admin_acc *a, const struct sched_view_msg *m);
    int skipping;      /* after=ID: still looking for ID */
    long seen;         /* messages after the skipped ones */
    long shown;        /* messages written to OUT */
    long total;        /* every message in the queue */
    long long bytes;   /* their sizes */
    char last_id[65];  /* the last message shown: where the next page starts */
};

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
 * sched_admin_parse - the paging arguments "limit=N", "offset=N", "after=ID" of
 * ARGV[1..] into PG; -1 with the reason on OUT when one is bad.
 */
static int sched_admin_parse(int argc, char **argv, struct sched_admin_page *pg,
                             struct evbuffer *out)
{
    int i;

    pg->limit = SCHED_ADMIN_LIMIT_DEFAULT;
    pg->offset = 0;
    pg->after = NULL;
    for (i = 1; i < argc; i++) {
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
    if (pg->after && pg->offset) {
        evbuffer_add_printf(out, "%s: give offset= or after=, not both", argv[0]);
        return -1;
    }
    return 0;
}

/* sched_admin_each - count every message; hand the ones of the page to a->show. */
static int sched_admin_each(void *arg, const struct sched_view_msg *m)
{
    struct sched_admin_acc *a = arg;

    a->total++;
    a->bytes += m->message_size;
    if (a->skipping) {
        if (strcmp(m->queue_id, a->pg->after) == 0)
            a->skipping = 0;
        return 0;
    }
    a->seen++;
    if (a->seen > a->pg->offset && a->shown < a->pg->limit) {
        a->show(a, m);
        a->shown++;
        snprintf(a->last_id, sizeof(a->last_id), "%s", m->queue_id);
    }
    return 0;
}

/* sched_admin_none - sched_view_get callback when only the existence matters. */
static void sched_admin_none(void *arg, const struct sched_view_msg *m)
{
    (void)arg;
    (void)m;
}

/*
 * sched_admin_list - walk the queue for one page. Every message is visited (for
 * the totals: cheap, nothing is formatted) but only the page is written, so one
 * reply stays bounded. -1 with the reason on OUT when after=ID is not queued.
 */
static int sched_admin_list(struct sched *s, struct sched_admin_acc *a)
{
    if (a->pg->after && sched_view_get(s, a->pg->after, sched_admin_none, NULL) < 0) {
        evbuffer_add_printf(a->out, "after=%.64s: no such queue ID", a->pg->after);
        return -1;
    }
    a->skipping = a->pg->after != NULL;
    sched_view_foreach(s, sched_admin_each, a);
    return 0;
}

/*
 * Postfix's mailq layout for long queue IDs (showq_compat.c with
 * enable_long_queue_ids = yes): our IDs are 16 hex digits, wider than the
 * short layout's 11-column ID field.
 */
#define SCHED_ADMIN_STRING_FORMAT "%-17s %8s %-19s %s\n"
#define SCHED_ADMIN_SENDER_FORMAT "%-17s %8lld %19.19s %s\n"

/* sched_admin_mailq_cb - one message: ID line, then "(reason)" lines above the recipients. */
static int sched_admin_mailq_cb(struct sched_admin_acc *a, const struct sched_view_msg *m)
{
    static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char when[64], idmark[80];
    time_t t = (time_t)m->arrival_time;
    struct tm tm;
    const char *saved_reason = "";
    int i;

    if (a->shown == 0)
        evbuffer_add_printf(a->out, SCHED_ADMIN_STRING_FORMAT, "----Queue ID-----", "--Size--",
                            "---Arrival Time----", "--Sender/Recipient------");
    else
        evbuffer_add(a->out, "\n", 1);
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
    evbuffer_add_printf(a->out, SCHED_ADMIN_SENDER_FORMAT, idmark, m->message_size, when,
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
            evbuffer_add_printf(a->out, "%*s(%s)\n", padding < 0 ? 0 : padding, "", show);
        }
        evbuffer_add_printf(a->out, SCHED_ADMIN_STRING_FORMAT, "", "", "",
                            m->recipients[i].address);
    }
    return 0;
}

/*
 * sched_admin_queue - "queue [limit=N] [offset=N|after=ID]": mailq. The trailer
 * counts the whole queue as Postfix does (Kbytes rounded down); when the page
 * does not reach the end, a line "... N more Requests: ..." says how to see them.
 */
static int sched_admin_queue(void *arg, int argc, char **argv, struct evbuffer *out)
{
    struct sched_admin_page pg;
    struct sched_admin_acc a = {out, &pg, sched_admin_mailq_cb, 0, 0, 0, 0, 0, ""};
    long rest;

    if (sched_admin_parse(argc, argv, &pg, out) < 0 || sched_admin_list(arg, &a) < 0)
        return -1;
    if (a.total == 0) {
        evbuffer_add_printf(out, "Mail queue is empty\n");
        return 0;
    }
    rest = a.seen - (pg.offset < a.seen ? pg.offset : a.seen) - a.shown;
    if (rest > 0)
        evbuffer_add_printf(out, "\n... %ld more Request%s: mtactl queue after=%s\n", rest,
                            rest == 1 ? "" : "s", a.last_id);
    evbuffer_add_printf(out, "%s-- %lld Kbytes in %ld Request%s.\n", a.shown || rest ? "\n" : "",
                        a.bytes / 1024, a.total, a.total == 1 ? "" : "s");
    return 0;
}

/* sched_admin_json_cb - one message as one postqueue -j JSON object line. */
static int sched_admin_json_cb(struct sched_admin_acc *a, const struct sched_view_msg *m)
{
    int i;

    evbuffer_add_printf(a->out, "{\"queue_name\": ");
    text_json_string(a->out, m->queue_name);
    evbuffer_add_printf(a->out, ", \"queue_id\": ");
    text_json_string(a->out, m->queue_id);
    evbuffer_add_printf(a->out,
                        ", \"arrival_time\": %lld, \"message_size\": %lld, \"forced_expire\": "
                        "false, \"sender\": ",
                        m->arrival_time, m->message_size);
    text_json_string(a->out, m->sender);
    evbuffer_add_printf(a->out, ", \"recipients\": [");
    for (i = 0; i < m->nrecipients; i++) {
        evbuffer_add_printf(a->out, "%s{\"address\": ", i ? ", " : "");
        text_json_string(a->out, m->recipients[i].address);
        if (m->recipients[i].delay_reason && m->recipients[i].delay_reason[0]) {
            evbuffer_add_printf(a->out, ", \"delay_reason\": ");
            text_json_string(a->out, m->recipients[i].delay_reason);
        }
        evbuffer_add_printf(a->out, "}");
    }
    evbuffer_add_printf(a->out, "]}\n");
    return 0;
}

/* sched_admin_queue_json - "queue-json [limit=N] [offset=N|after=ID]": postqueue -j lines, one page. */
static int sched_admin_queue_json(void *arg, int argc, char **argv, struct evbuffer *out)
{
    struct sched_admin_page pg;
    struct sched_admin_acc a = {out, &pg, sched_admin_json_cb, 0, 0, 0, 0, 0, ""};

    if (sched_admin_parse(argc, argv, &pg, out) < 0 || sched_admin_list(arg, &a) < 0)
        return -1;
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

static int sched_admin_delete(void *arg, int argc, char **argv, struct evbuffer *out)
{
    int i, n = 0, missing = 0;

    if (argc < 2) {
        evbuffer_add_printf(out, "delete: give queue IDs or ALL");
        return -1;
    }
    for (i = 1; i < argc; i++) {
        int k = sched_delete(arg, argv[i]);
        if (k == 0 && strcmp(argv[i], "ALL") != 0) {
            missing++;
            evbuffer_add_printf(out, "%s%s: no such queue ID", missing > 1 ? "; " : "", argv[i]);
        }
        n += k;
    }
    if (missing)
        return -1;
    evbuffer_add_printf(out, "postsuper: Deleted: %d message%s\n", n, n == 1 ? "" : "s");
    return 0;
}

void sched_control_attach(struct sched *s, struct control *ctl)
{
    control_register(ctl, "queue", sched_admin_queue, s);
    control_register(ctl, "queue-json", sched_admin_queue_json, s);
    control_register(ctl, "flush", sched_admin_flush, s);
    control_register(ctl, "delete", sched_admin_delete, s);
}
