/*
 * sched_view.c - the read-only views of queued messages that the listings
 * (sched_admin.c's sched_list, the stats pages) format: from the full state of
 * a message in the active set, or from the summary a parked one keeps
 * (sched_park), so no listing reads the disk. And the walk a listing page
 * takes: from the message after= names (found by ID in the table, not by
 * walking from the start) over at most one page, so a page costs the same with
 * ten or a million messages queued.
 * Not here: the formats (sched_admin.c), the parking (sched_active.c).
 */
#include "mta/sched.h"
#include "sched_int.h"

#include <stdlib.h>
#include <string.h>

/* sched_view_listed - whether M shows in listings (read, not being removed). */
int sched_view_listed(const struct sched_msg *m)
{
    return !m->removing && !m->gone && (m->env || m->park);
}

/* sched_view_fill - the view of M (into caller-provided storage R, M->nslots + 1 entries). */
static void sched_view_fill(struct sched_msg *m, struct sched_view_msg *v,
                            struct sched_view_rcpt *r)
{
    int i;

    memset(v, 0, sizeof(*v));
    v->queue_id = m->id;
    v->queue_name = m->held ? "hold" : m->deferred ? "deferred" : "active";
    v->attempts = m->attempts;
    v->recipients = r;
    if (!m->env) {
        /* parked: the summary, in slot order like the envelope */
        const char *p = (const char *)(m->park->slot + m->park->nrcpt);
        v->arrival_time = m->park->arrival;
        v->message_size = m->park->size;
        v->sender = p;
        p += strlen(p) + 1;
        for (i = 0; i < m->park->nrcpt; i++) {
            int slot = m->park->slot[i];
            r[i].address = p;
            p += strlen(p) + 1;
            r[i].orig_address = p;
            p += strlen(p) + 1;
            r[i].delay_reason = m->reason && m->reason[slot] ? m->reason[slot] : "";
            r[i].status = m->held ? "hold" : "deferred";
            r[i].next_retry = m->deferred && !m->held ? m->next_retry : 0;
        }
        v->nrecipients = m->park->nrcpt;
        return;
    }
    v->arrival_time = m->env->arrival_us / 1000000;
    v->message_size = m->env->size;
    v->sender = m->env->sender;
    for (i = 0; i < m->env->nrcpt && i < m->nslots; i++) {
        if (m->slots[i] != SCHED_SLOT_PENDING)
            continue; /* mailq shows only recipients still to be delivered */
        r[v->nrecipients].address = m->env->rcpt[i].addr;
        r[v->nrecipients].orig_address = m->env->rcpt[i].orcpt;
        r[v->nrecipients].delay_reason = m->reason && m->reason[i] ? m->reason[i] : "";
        r[v->nrecipients].status = m->active && m->active[i] ? "active"
                                   : m->held                 ? "hold"
                                   : m->deferred             ? "deferred"
                                                             : "active";
        r[v->nrecipients].next_retry = m->deferred && !m->held ? m->next_retry : 0;
        v->nrecipients++;
    }
}

/* sched_view_call - CB with the view of M; CB's answer, or -1 when out of memory. */
static int sched_view_call(struct sched_msg *m,
                           int (*cb)(void *arg, const struct sched_view_msg *m), void *arg)
{
    struct sched_view_rcpt one[4], *r = one;
    struct sched_view_msg v;
    int stop;

    /* most messages have a recipient or two: no allocation for them */
    if ((size_t)m->nslots + 1 > sizeof(one) / sizeof(one[0]) &&
        !(r = calloc((size_t)m->nslots + 1, sizeof(*r))))
        return -1;
    sched_view_fill(m, &v, r);
    stop = cb(arg, &v);
    if (r != one)
        free(r);
    return stop;
}

void sched_view_foreach(struct sched *s, int (*cb)(void *arg, const struct sched_view_msg *m),
                        void *arg)
{
    struct sched_msg *m;

    TAILQ_FOREACH(m, &s->msgs, link)
    if (sched_view_listed(m) && sched_view_call(m, cb, arg) != 0)
        return;
}

/* sched_view_walk - CB for listed messages from the one after AFTER (NULL: the first) on,
 * until CB returns non-zero. -1 when AFTER is not queued and not STREAM; with STREAM a
 * cursor that is gone (delivered meanwhile) goes on at the first message with a greater
 * ID (IDs grow with time, so that is where it was; found by a walk, which is rare). */
int sched_view_walk(struct sched *s, const char *after, int stream,
                    int (*cb)(void *arg, const struct sched_view_msg *m), void *arg)
{
    struct sched_msg *m = NULL;

    if (after) {
        struct sched_msg *a = sched_msg_find(s, after);
        if (a && (sched_view_listed(a) || stream)) {
            m = TAILQ_NEXT(a, link);
        } else if (!stream) {
            return -1;
        } else {
            TAILQ_FOREACH(m, &s->msgs, link)
            if (strcmp(m->id, after) > 0)
                break;
        }
    } else {
        m = TAILQ_FIRST(&s->msgs);
    }
    for (; m; m = TAILQ_NEXT(m, link))
        if (sched_view_listed(m) && sched_view_call(m, cb, arg) != 0)
            break;
    return 0;
}

/* sched_view_get_cb - adapts sched_view_get's void callback. */
struct sched_view_get_arg {
    void (*cb)(void *arg, const struct sched_view_msg *m);
    void *arg;
};

static int sched_view_get_cb(void *arg, const struct sched_view_msg *m)
{
    struct sched_view_get_arg *g = arg;

    g->cb(g->arg, m);
    return 0;
}

int sched_view_get(struct sched *s, const char *id,
                   void (*cb)(void *arg, const struct sched_view_msg *m), void *arg)
{
    struct sched_msg *m = sched_msg_find(s, id);
    struct sched_view_get_arg g = {cb, arg};

    if (!m || !sched_view_listed(m))
        return -1;
    return sched_view_call(m, sched_view_get_cb, &g) < 0 ? -1 : 0;
}
