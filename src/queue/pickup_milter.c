/*
 * pickup_milter.c - non_smtpd_milters for local mail (sendmail/postdrop, picked up from the
 * maildrop): the message goes to the milters as if from localhost[127.0.0.1] (connect,
 * HELO, MAIL, each RCPT, DATA, the content read back from the spool message, end of
 * message), and their changes are applied to the envelope and the spool message before
 * pickup commits it, as smtpd does for smtpd_milters (docs/milter.md).
 * Not here: the milter protocol (src/core/milter*.c), the maildrop file's fate (pickup.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/milter.h"
#include "mta/spool.h"
#include "pickup_milter.h"

enum { PM_CONNECT, PM_HELO, PM_MAIL, PM_RCPT, PM_DATA, PM_MESSAGE };

struct pickup_milter {
    struct milter_sess *ms;
    const struct conf *conf;
    struct spool_msg *m;
    struct spool_envelope *env;
    struct spool_read *read;
    struct event *kick; /* the content's next piece, from the loop (no deep recursion) */
    struct evbuffer *piece;
    long long off;
    int step, rcpt, discard;
    char id[SPOOL_ID_SIZE];
    void (*done)(void *arg, int verdict, const char *reply);
    void *arg;
};

void pickup_milter_free(struct pickup_milter *j)
{
    if (!j)
        return;
    spool_read_cancel(j->read);
    milter_sess_free(j->ms);
    if (j->kick)
        event_free(j->kick);
    if (j->piece)
        evbuffer_free(j->piece);
    free(j);
}

/* pickup_milter_macro - the macros of a local submission. */
static const char *pickup_milter_macro(void *arg, const char *name)
{
    struct pickup_milter *j = arg;
    if (strcmp(name, "j") == 0 || strcmp(name, "{daemon_name}") == 0)
        return *j->conf->milter_macro_daemon_name && name[0] == '{'
                   ? j->conf->milter_macro_daemon_name
                   : j->conf->myhostname;
    if (strcmp(name, "v") == 0)
        return "mta";
    if (strcmp(name, "_") == 0)
        return "localhost [127.0.0.1]";
    if (strcmp(name, "{client_addr}") == 0)
        return "127.0.0.1";
    if (strcmp(name, "{client_name}") == 0)
        return "localhost";
    if (strcmp(name, "i") == 0)
        return j->id;
    if (strcmp(name, "{mail_addr}") == 0)
        return j->env->sender;
    if (strcmp(name, "{rcpt_addr}") == 0 && j->step == PM_RCPT && j->rcpt < j->env->nrcpt)
        return j->env->rcpt[j->rcpt].addr;
    if (strcmp(name, "{mail_mailer}") == 0 || strcmp(name, "{rcpt_mailer}") == 0)
        return "local";
    return NULL;
}

static void pickup_milter_next(void *arg, const struct milter_result *r);

/* pickup_milter_finish - tell pickup (which frees the job). */
static void pickup_milter_finish(struct pickup_milter *j, int verdict, const char *reply)
{
    j->done(j->arg, verdict, reply);
}

static void pickup_milter_need(void *arg, long long off);

/* pickup_milter_kick_cb - hand the piece read to the milters. */
static void pickup_milter_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pickup_milter *j = arg;
    (void)fd;
    (void)what;
    milter_content(j->ms, j->piece);
}

static void pickup_milter_drained(void *arg)
{
    struct pickup_milter *j = arg;
    pickup_milter_need(j, j->off);
}

/* pickup_milter_read_done - a piece of the message for the milters. */
static void pickup_milter_read_done(void *arg, struct evbuffer *out, int err)
{
    struct pickup_milter *j = arg;
    j->read = NULL;
    if (err == EAGAIN && spool_msg_on_drain(j->m, pickup_milter_drained, j))
        return;
    if (err == EAGAIN) {
        pickup_milter_need(j, j->off);
        return;
    }
    if (err) {
        pickup_milter_finish(j, MILTER_TEMPFAIL, "451 4.3.0 Error: queue file read error");
        return;
    }
    milter_content(j->ms, out);
}

/* pickup_milter_need - the milters want the message from OFF. */
static void pickup_milter_need(void *arg, long long off)
{
    struct pickup_milter *j = arg;
    j->off = off;
    j->read = spool_msg_read(j->m, off, SPOOL_READ_MAX, pickup_milter_read_done, j);
    if (!j->read) {
        evbuffer_drain(j->piece, evbuffer_get_length(j->piece));
        event_active(j->kick, EV_TIMEOUT, 1); /* out of memory: end the content there */
    }
}

/* pickup_milter_addr - ADDR without angle brackets, malloc'd. */
static char *pickup_milter_addr(const char *a)
{
    size_t n = strlen(a);
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
        return strndup(a + 1, n - 2);
    return strdup(a);
}

/* pickup_milter_apply - the milters' changes into the envelope and the spool message. */
static int pickup_milter_apply(struct pickup_milter *j, const struct milter_result *r)
{
    struct spool_envelope *env = j->env;
    for (int i = 0; i < r->nmods; i++) {
        const struct milter_mod *md = &r->mods[i];
        char *a = pickup_milter_addr(md->name);
        if (!a)
            return -1;
        if (md->type == MILTER_MOD_CHGFROM) {
            free(env->sender);
            env->sender = a;
            continue;
        }
        if (md->type == MILTER_MOD_ADDRCPT) {
            struct spool_rcpt *v = realloc(env->rcpt, (size_t)(env->nrcpt + 1) * sizeof *v);
            char *o = strdup("");
            if (!v || !o) {
                if (v)
                    env->rcpt = v;
                free(o);
                free(a);
                return -1;
            }
            env->rcpt = v;
            env->rcpt[env->nrcpt].addr = a;
            env->rcpt[env->nrcpt].orcpt = o;
            env->rcpt[env->nrcpt].notify = 0;
            env->nrcpt++;
            continue;
        }
        if (md->type == MILTER_MOD_DELRCPT) {
            for (int k = 0; k < env->nrcpt; k++) {
                if (strcasecmp(env->rcpt[k].addr, a) != 0)
                    continue;
                free(env->rcpt[k].addr);
                free(env->rcpt[k].orcpt);
                memmove(&env->rcpt[k], &env->rcpt[k + 1],
                        (size_t)(env->nrcpt - k - 1) * sizeof(env->rcpt[0]));
                env->nrcpt--;
                k--;
            }
        }
        free(a);
    }
    long long hlen = r->hdr_len;
    if (r->hdrs) {
        size_t nh = evbuffer_get_length(r->hdrs);
        if (spool_msg_set_front(j->m, r->hdrs, (size_t)hlen) < 0)
            return -1;
        hlen = (long long)nh;
    }
    if (r->body && spool_msg_replace_from(j->m, hlen, r->body) < 0)
        return -1;
    if (r->quarantine && spool_msg_set_hold(j->m) < 0)
        return -1;
    if (spool_msg_size(j->m) > j->conf->message_size_limit)
        return -1;
    env->size = spool_msg_size(j->m);
    return 0;
}

/* pickup_milter_next - one event answered: the next one, or the end. */
static void pickup_milter_next(void *arg, const struct milter_result *r)
{
    struct pickup_milter *j = arg;
    if (r->verdict == MILTER_DISCARD) {
        j->discard = 1;
    } else if (r->verdict != MILTER_CONTINUE) {
        counter_add(r->verdict == MILTER_TEMPFAIL ? CNT_MILTER_TEMPFAILED : CNT_MILTER_REJECTED, 1);
        pickup_milter_finish(j, r->verdict, r->reply);
        return;
    }
    if (j->step == PM_MESSAGE || (j->discard && j->step >= PM_MAIL)) {
        if (j->discard || j->env->nrcpt == 0) {
            counter_add(CNT_MILTER_DISCARDED, 1);
            pickup_milter_finish(j, MILTER_DISCARD, "");
            return;
        }
        if (pickup_milter_apply(j, r) < 0) {
            pickup_milter_finish(j, MILTER_TEMPFAIL, "451 4.3.0 Error: queue file write error");
            return;
        }
        counter_add(CNT_MILTER_ACCEPTED, 1);
        if (r->quarantine) {
            counter_add(CNT_MILTER_QUARANTINED, 1);
            log_mail("cleanup",
                     "%s: milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: %s; "
                     "from=<%s>",
                     j->id,
                     r->quarantine_why[0] ? r->quarantine_why : "milter triggers HOLD action",
                     j->env->sender);
        }
        pickup_milter_finish(j, MILTER_CONTINUE, "");
        return;
    }
    char buf[SPOOL_ADDR_MAX + 3], *argv[2] = {buf, NULL};
    switch (j->step) {
    case PM_CONNECT:
        j->step = PM_HELO;
        milter_helo(j->ms, "localhost", pickup_milter_next, j);
        break;
    case PM_HELO:
        j->step = PM_MAIL;
        snprintf(buf, sizeof buf, "<%s>", j->env->sender);
        milter_mail(j->ms, argv, pickup_milter_next, j);
        break;
    case PM_MAIL:
    case PM_RCPT:
        if (j->step == PM_RCPT)
            j->rcpt++;
        j->step = PM_RCPT;
        if (j->rcpt < j->env->nrcpt) {
            snprintf(buf, sizeof buf, "<%s>", j->env->rcpt[j->rcpt].addr);
            milter_rcpt(j->ms, argv, pickup_milter_next, j);
            break;
        }
        j->step = PM_DATA;
        milter_data(j->ms, pickup_milter_next, j);
        break;
    case PM_DATA:
        j->step = PM_MESSAGE;
        milter_sess_set_queue_id(j->ms, j->id);
        milter_message(j->ms, spool_msg_size(j->m), (size_t)j->conf->header_size_limit,
                       j->conf->message_size_limit, pickup_milter_need, pickup_milter_next, j);
        break;
    }
}

struct pickup_milter *pickup_milter_start(struct event_base *base, struct milter_set *set,
                                          const struct conf *conf, struct spool_msg *m,
                                          struct spool_envelope *env,
                                          void (*done)(void *arg, int verdict, const char *reply),
                                          void *arg)
{
    struct pickup_milter *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->conf = conf;
    j->m = m;
    j->env = env;
    j->done = done;
    j->arg = arg;
    snprintf(j->id, sizeof j->id, "%s", spool_msg_id(m));
    j->ms = milter_sess_new(base, set, pickup_milter_macro, j);
    j->kick = evtimer_new(base, pickup_milter_kick_cb, j);
    j->piece = evbuffer_new();
    if (!j->ms || !j->kick || !j->piece) {
        pickup_milter_free(j);
        return NULL;
    }
    j->step = PM_CONNECT;
    milter_connect(j->ms, "localhost", "127.0.0.1", 0, pickup_milter_next, j);
    return j;
}
