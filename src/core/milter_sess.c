/*
 * milter_sess.c - the milter client's public side: a session per SMTP session, the
 * events it is asked to send (each answered once, from the loop's next turn), the reply
 * timer, the end of a message (header block rebuilt, replacement body made CRLF), abort
 * and QUIT.
 * Not here: the connection and reply machine (milter.c), the wire format (milter_proto.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "milter_int.h"
#include "mta/log.h"

/* milter_res_clear - free the previous event's result. */
static void milter_res_clear(struct milter_sess *s)
{
    for (int i = 0; i < s->res.nmods; i++) {
        free(s->res.mods[i].name);
        free(s->res.mods[i].value);
    }
    free(s->res.mods);
    if (s->res.hdrs)
        evbuffer_free(s->res.hdrs);
    memset(&s->res, 0, sizeof s->res);
    evbuffer_drain(s->repl, evbuffer_get_length(s->repl));
}

/* milter_timer_cb - no reply in time: the milter in question fails. */
static void milter_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct milter_sess *s = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < s->n; i++) {
        struct milter_conn *c = &s->c[i];
        if (c->state == MC_CONNECTING) {
            milter_warn(c, "connect to Milter service %s: Connection timed out", c->spec->name);
            return;
        }
        if (c->state == MC_NEGOTIATING) {
            milter_warn(c,
                        "milter %s: can't read SMFIC_OPTNEG reply packet header: Connection "
                        "timed out",
                        c->spec->name);
            return;
        }
    }
    if (s->busy && s->cur < s->n)
        milter_warn(&s->c[s->cur],
                    "milter %s: can't read %s reply packet header: Connection "
                    "timed out",
                    s->c[s->cur].spec->name, milter_cmd_name(s->cmd));
}

/* milter_msg_end - the end of a message: the result gets the edits in their final form. */
static void milter_msg_end(struct milter_sess *s)
{
    int hdr_mods = 0;
    for (int i = 0; i < s->res.nmods; i++)
        hdr_mods |= s->res.mods[i].type <= MILTER_MOD_CHGHDR;
    s->res.hdr_len = s->hdr_len;
    if (hdr_mods && s->have_hdrs && (s->res.hdrs = evbuffer_new()) &&
        milter_edit_headers(s->hdrblock, s->res.mods, s->res.nmods, s->res.hdrs) < 0) {
        evbuffer_free(s->res.hdrs);
        s->res.hdrs = NULL;
    }
    if (s->res.body) { /* milters may send bare LF lines: the queue holds CRLF */
        struct evbuffer *crlf = evbuffer_new();
        if (crlf) {
            milter_lf_to_crlf(s->repl, crlf);
            evbuffer_add_buffer(s->repl, crlf);
            evbuffer_free(crlf);
        }
    }
    for (int i = 0; i < s->n; i++)
        if (s->c[i].state == MC_ACCEPT_MSG)
            s->c[i].state = MC_READY;
    s->msg = 0;
}

/* milter_done_cb - the loop's next turn after the answer: tell the caller. */
static void milter_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct milter_sess *s = arg;
    (void)fd;
    (void)what;
    if (!s->busy)
        return;
    if (s->msg)
        milter_msg_end(s);
    s->busy = 0;
    s->waiting = 0;
    s->wait_write = 0;
    event_del(s->timer);
    if (s->done)
        s->done(s->arg, &s->res);
}

struct milter_sess *milter_sess_new(struct event_base *base, struct milter_set *set,
                                    milter_macro_fn macro, void *macro_arg)
{
    if (!set)
        return NULL;
    struct milter_sess *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->set = set;
    s->macro = macro;
    s->macro_arg = macro_arg;
    s->n = set->n;
    s->c = calloc((size_t)set->n, sizeof *s->c);
    s->timer = evtimer_new(base, milter_timer_cb, s);
    s->done_ev = evtimer_new(base, milter_done_cb, s);
    s->payload = evbuffer_new();
    s->cbuf = evbuffer_new();
    s->hdrblock = evbuffer_new();
    s->repl = evbuffer_new();
    if (!s->c || !s->timer || !s->done_ev || !s->payload || !s->cbuf || !s->hdrblock || !s->repl) {
        milter_sess_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n; i++) {
        s->c[i].s = s;
        s->c[i].spec = &set->v[i];
    }
    return s;
}

void milter_sess_free(struct milter_sess *s)
{
    if (!s)
        return;
    for (int i = 0; s->c && i < s->n; i++) {
        struct milter_conn *c = &s->c[i];
        if (c->bev && c->state != MC_CONNECTING && c->state != MC_NEGOTIATING) {
            /* QUIT, written now if the socket takes it (5 bytes, never blocks) */
            struct evbuffer *out = bufferevent_get_output(c->bev);
            static const unsigned char quit[5] = {0, 0, 0, 1, SMFIC_QUIT};
            evbuffer_add(out, quit, sizeof quit);
            evbuffer_write(out, bufferevent_getfd(c->bev));
        }
        milter_close(c);
        for (int k = 0; k < MILTER_STAGE_COUNT; k++)
            free(c->symlist[k]);
    }
    free(s->c);
    if (s->timer)
        event_free(s->timer);
    if (s->done_ev)
        event_free(s->done_ev);
    if (s->repl)
        milter_res_clear(s);
    if (s->payload)
        evbuffer_free(s->payload);
    if (s->cbuf)
        evbuffer_free(s->cbuf);
    if (s->hdrblock)
        evbuffer_free(s->hdrblock);
    if (s->repl)
        evbuffer_free(s->repl);
    free(s);
}

void milter_sess_set_queue_id(struct milter_sess *s, const char *id)
{
    snprintf(s->qid, sizeof s->qid, "%s", id ? id : "");
}

int milter_active(const struct milter_sess *s)
{
    for (int i = 0; s && i < s->n; i++)
        if (s->c[i].state != MC_ACCEPT_CON &&
            !(s->c[i].state == MC_ERROR && s->set->defact == MILTER_DEF_ACCEPT))
            return 1;
    return 0;
}

/* milter_begin - start event CMD (payload already in s->payload). */
static void milter_begin(struct milter_sess *s, char cmd, int stage, uint32_t nosend,
                         uint32_t noreply, milter_done_fn done, void *arg)
{
    milter_res_clear(s);
    s->cmd = cmd;
    s->stage = stage;
    s->nosend = nosend;
    s->noreply = noreply;
    s->done = done;
    s->arg = arg;
    s->cur = 0;
    s->busy = 1;
    s->waiting = s->wait_write = 0;
    milter_step(s);
}

/* milter_add_str - a NUL-terminated string into the payload. */
static void milter_add_str(struct milter_sess *s, const char *str)
{
    evbuffer_add(s->payload, str, strlen(str) + 1);
}

void milter_connect(struct milter_sess *s, const char *host, const char *addr, int port,
                    milter_done_fn done, void *arg)
{
    evbuffer_drain(s->payload, evbuffer_get_length(s->payload));
    milter_add_str(s, host);
    char family = strchr(addr, ':') ? '6' : '4';
    unsigned char p[2] = {(unsigned char)(port >> 8), (unsigned char)port};
    evbuffer_add(s->payload, &family, 1);
    evbuffer_add(s->payload, p, 2);
    milter_add_str(s, addr);
    milter_begin(s, SMFIC_CONNECT, MILTER_STAGE_CONNECT, SMFIP_NOCONNECT, SMFIP_NR_CONN, done, arg);
}

void milter_helo(struct milter_sess *s, const char *helo, milter_done_fn done, void *arg)
{
    evbuffer_drain(s->payload, evbuffer_get_length(s->payload));
    milter_add_str(s, helo);
    milter_begin(s, SMFIC_HELO, MILTER_STAGE_HELO, SMFIP_NOHELO, SMFIP_NR_HELO, done, arg);
}

void milter_mail(struct milter_sess *s, char *const *argv, milter_done_fn done, void *arg)
{
    evbuffer_drain(s->payload, evbuffer_get_length(s->payload));
    for (int i = 0; argv[i]; i++)
        milter_add_str(s, argv[i]);
    for (int i = 0; i < s->n; i++)
        if (s->c[i].state == MC_ACCEPT_MSG) /* a new message */
            s->c[i].state = MC_READY;
    milter_begin(s, SMFIC_MAIL, MILTER_STAGE_MAIL, SMFIP_NOMAIL, SMFIP_NR_MAIL, done, arg);
}

void milter_rcpt(struct milter_sess *s, char *const *argv, milter_done_fn done, void *arg)
{
    evbuffer_drain(s->payload, evbuffer_get_length(s->payload));
    for (int i = 0; argv[i]; i++)
        milter_add_str(s, argv[i]);
    milter_begin(s, SMFIC_RCPT, MILTER_STAGE_RCPT, SMFIP_NORCPT, SMFIP_NR_RCPT, done, arg);
}

void milter_data(struct milter_sess *s, milter_done_fn done, void *arg)
{
    evbuffer_drain(s->payload, evbuffer_get_length(s->payload));
    milter_begin(s, SMFIC_DATA, MILTER_STAGE_DATA, SMFIP_NODATA, SMFIP_NR_DATA, done, arg);
}

void milter_message(struct milter_sess *s, long long size, size_t hdr_max, long long body_max,
                    milter_need_fn need, milter_done_fn done, void *arg)
{
    (void)size;
    s->msg = 1;
    s->need = need;
    s->hdr_max = hdr_max;
    s->body_max = body_max;
    s->phase = PH_HDR;
    s->off = s->hdr_len = 0;
    s->eof = s->asked = s->have_hdrs = 0;
    evbuffer_drain(s->cbuf, evbuffer_get_length(s->cbuf));
    evbuffer_drain(s->hdrblock, evbuffer_get_length(s->hdrblock));
    for (int i = 0; i < s->n; i++)
        s->c[i].skip_body = 0;
    milter_begin(s, SMFIC_HEADER, MILTER_STAGE_EOH, 0, 0, done, arg);
}

void milter_abort(struct milter_sess *s)
{
    if (!s)
        return;
    if (s->busy) {
        /* an event in flight is cancelled: its milter would answer out of turn later */
        for (int i = 0; i < s->n; i++) {
            struct milter_conn *c = &s->c[i];
            if ((s->waiting && i == s->cur) || c->state == MC_CONNECTING ||
                c->state == MC_NEGOTIATING) {
                milter_close(c);
                c->state = MC_ERROR; /* no resync mid-reply: default action from now on */
                c->verdict = s->set->defact == MILTER_DEF_REJECT ? MILTER_REJECT : MILTER_TEMPFAIL;
                snprintf(c->reply, sizeof c->reply, "%s",
                         s->set->defact == MILTER_DEF_REJECT
                             ? "550 5.5.0 Service unavailable"
                             : "451 4.7.1 Service unavailable - try again later");
            }
        }
        s->busy = s->waiting = s->wait_write = 0;
        event_del(s->timer);
        event_del(s->done_ev);
    }
    s->msg = 0;
    for (int i = 0; i < s->n; i++) {
        struct milter_conn *c = &s->c[i];
        if (c->state == MC_ACCEPT_MSG)
            c->state = MC_READY;
        if (c->state == MC_READY && c->bev) {
            static const unsigned char abort_pkt[5] = {0, 0, 0, 1, SMFIC_ABORT};
            evbuffer_add(bufferevent_get_output(c->bev), abort_pkt, sizeof abort_pkt);
        }
    }
}
