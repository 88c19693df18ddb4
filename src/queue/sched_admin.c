/*
 * sched_admin.c - queue administration over the control socket: "queue" (the
 * mailq listing, Postfix showq format), "queue-json" (postqueue -j lines),
 * "flush" and "delete ID...|ALL". The data comes from the scheduler's views.
 * Not here: the socket (core/control.c) or mtactl's command line.
 */
#include "mta/control.h"
#include "mta/sched.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct sched_admin_acc {
    struct evbuffer *out;
    long long bytes;
    int n;
};

/* sched_json_str - S as a JSON string (control characters escaped). */
static void sched_json_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            evbuffer_add_printf(out, "\\u%04x", ch);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

/* sched_admin_mailq_cb - one message in showq's layout. */
static int sched_admin_mailq_cb(void *arg, const struct sched_view_msg *m)
{
    struct sched_admin_acc *a = arg;
    char when[32], idmark[40];
    time_t t = (time_t)m->arrival_time;
    struct tm tm;
    const char *last_reason = NULL;
    int i;

    if (a->n == 0)
        evbuffer_add_printf(a->out, "-Queue ID-  --Size-- ----Arrival Time---- "
                                    "-Sender/Recipient-------\n");
    localtime_r(&t, &tm);
    strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
    snprintf(idmark, sizeof(idmark), "%s%s", m->queue_id,
             strcmp(m->queue_name, "active") == 0 ? "*"
             : strcmp(m->queue_name, "hold") == 0 ? "!"
                                                   : "");
    evbuffer_add_printf(a->out, "%-11s %8lld %20s  %s\n", idmark, m->message_size, when,
                        m->sender[0] ? m->sender : "MAILER-DAEMON");
    for (i = 0; i < m->nrecipients; i++) {
        const char *r = m->recipients[i].delay_reason;
        if (r[0] && (!last_reason || strcmp(r, last_reason) != 0)) {
            evbuffer_add_printf(a->out, "(%s)\n", r);
            last_reason = r;
        }
        evbuffer_add_printf(a->out, "%41s%s\n", "", m->recipients[i].address);
    }
    evbuffer_add(a->out, "\n", 1);
    a->bytes += m->message_size;
    a->n++;
    return 0;
}

static int sched_admin_queue(void *arg, int argc, char **argv, struct evbuffer *out)
{
    struct sched_admin_acc a = {out, 0, 0};

    (void)argc;
    (void)argv;
    sched_view_foreach(arg, sched_admin_mailq_cb, &a);
    if (a.n == 0)
        evbuffer_add_printf(out, "Mail queue is empty\n");
    else
        evbuffer_add_printf(out, "-- %lld Kbytes in %d Request%s.\n", (a.bytes + 1023) / 1024, a.n,
                            a.n == 1 ? "" : "s");
    return 0;
}

/* sched_admin_json_cb - one message as one postqueue -j JSON object line. */
static int sched_admin_json_cb(void *arg, const struct sched_view_msg *m)
{
    struct sched_admin_acc *a = arg;
    int i;

    evbuffer_add_printf(a->out, "{\"queue_name\": ");
    sched_json_str(a->out, m->queue_name);
    evbuffer_add_printf(a->out, ", \"queue_id\": ");
    sched_json_str(a->out, m->queue_id);
    evbuffer_add_printf(a->out,
                        ", \"arrival_time\": %lld, \"message_size\": %lld, \"forced_expire\": "
                        "false, \"sender\": ",
                        m->arrival_time, m->message_size);
    sched_json_str(a->out, m->sender);
    evbuffer_add_printf(a->out, ", \"recipients\": [");
    for (i = 0; i < m->nrecipients; i++) {
        evbuffer_add_printf(a->out, "%s{\"address\": ", i ? ", " : "");
        sched_json_str(a->out, m->recipients[i].address);
        if (m->recipients[i].delay_reason[0]) {
            evbuffer_add_printf(a->out, ", \"delay_reason\": ");
            sched_json_str(a->out, m->recipients[i].delay_reason);
        }
        evbuffer_add_printf(a->out, "}");
    }
    evbuffer_add_printf(a->out, "]}\n");
    return 0;
}

static int sched_admin_queue_json(void *arg, int argc, char **argv, struct evbuffer *out)
{
    struct sched_admin_acc a = {out, 0, 0};

    (void)argc;
    (void)argv;
    sched_view_foreach(arg, sched_admin_json_cb, &a);
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
