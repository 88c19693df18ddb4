/*
 * milter.c - the milter client's sessions: one connection per configured milter per SMTP
 * session, opened at the first event, negotiated (SMFIC_OPTNEG), then one event at a time
 * to each milter in order, each answer awaited under milter_command_timeout (the content
 * and end of message under milter_content_timeout). All I/O is on bufferevents; nothing
 * waits on the loop. A milter that fails is logged in Postfix's words once and from then on
 * answered by milter_default_action for the rest of the session, as Postfix does.
 * Not here: the wire details and header edits (milter_proto.c), SMTP replies (smtpd).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "milter_int.h"
#include "mta/log.h"

static void milter_read_cb(struct bufferevent *bev, void *arg);
static void milter_pass_reset(struct milter_sess *s);

/* milter_cmd_name - Postfix's name of command CMD, for the log. */
const char *milter_cmd_name(char cmd)
{
    switch (cmd) {
    case SMFIC_CONNECT:
        return "SMFIC_CONNECT";
    case SMFIC_HELO:
        return "SMFIC_HELO";
    case SMFIC_MAIL:
        return "SMFIC_MAIL";
    case SMFIC_RCPT:
        return "SMFIC_RCPT";
    case SMFIC_DATA:
        return "SMFIC_DATA";
    case SMFIC_HEADER:
        return "SMFIC_HEADER";
    case SMFIC_EOH:
        return "SMFIC_EOH";
    case SMFIC_BODY:
        return "SMFIC_BODY";
    case SMFIC_BODYEOB:
        return "SMFIC_BODYEOB";
    case SMFIC_OPTNEG:
        return "SMFIC_OPTNEG";
    default:
        return "(unknown MTA event)";
    }
}

/* milter_default_reply - what a failed milter answers (Postfix's texts). */
static void milter_default_reply(struct milter_conn *c)
{
    if (c->s->set->defact == MILTER_DEF_REJECT) {
        c->verdict = MILTER_REJECT;
        snprintf(c->reply, sizeof c->reply, "550 5.5.0 Service unavailable");
    } else {
        c->verdict = MILTER_TEMPFAIL;
        snprintf(c->reply, sizeof c->reply, "451 4.7.1 Service unavailable - try again later");
    }
}

/* milter_close - drop the connection (no more I/O on it). */
void milter_close(struct milter_conn *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

/* milter_finish - the event is answered: DONE runs from the loop's next turn. */
static void milter_finish(struct milter_sess *s)
{
    s->waiting = 0;
    event_del(s->timer);
    event_active(s->done_ev, EV_TIMEOUT, 1);
}

/* milter_fail - C failed (logged by the caller): default action now and for the session. */
static void milter_fail(struct milter_conn *c)
{
    struct milter_sess *s = c->s;
    int current = s->busy && &s->c[s->cur] == c;
    milter_close(c);
    c->state = MC_ERROR;
    milter_default_reply(c);
    if (current) {
        s->waiting = 0;
        event_del(s->timer);
        milter_step(s); /* accept: the next milter; else the default reply */
    }
}

/* milter_warn - Postfix's "warning: milter NAME: ..." line, then the failure. */
void milter_warn(struct milter_conn *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_warning("smtpd", "%s%s%s", c->s->qid[0] ? c->s->qid : "", c->s->qid[0] ? ": " : "", buf);
    milter_fail(c);
}

/* milter_arm - the reply timer of the current wait. */
static void milter_arm(struct milter_sess *s, int seconds)
{
    struct timeval tv = {seconds, 0};
    event_add(s->timer, &tv);
}

/* milter_send - CMD with the payload BUF (copied) to C. */
static void milter_send(struct milter_conn *c, char cmd, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t pos;
    milter_pkt_begin(out, &pos);
    evbuffer_add(out, &cmd, 1);
    if (len)
        evbuffer_add(out, data, len);
    milter_pkt_end(out, pos);
}

/* milter_send_macros - SMFIC_MACRO for STAGE before command CMD, when any has a value. */
static void milter_send_macros(struct milter_conn *c, char cmd, int stage)
{
    struct milter_sess *s = c->s;
    const char *list = c->symlist[stage] ? c->symlist[stage] : s->set->macros[stage];
    struct evbuffer *b = evbuffer_new();
    if (!b || !list || !s->macro) {
        if (b)
            evbuffer_free(b);
        return;
    }
    evbuffer_add(b, &cmd, 1);
    int pairs = 0;
    char name[128];
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, " ,\t");
        if (k > 0 && k < sizeof name) {
            memcpy(name, p, k);
            name[k] = 0;
            const char *v = s->macro(s->macro_arg, name);
            if (v) {
                evbuffer_add(b, name, k + 1);
                evbuffer_add(b, v, strlen(v) + 1);
                pairs++;
            }
        }
        p += k;
        p += strspn(p, " ,\t");
    }
    if (pairs)
        milter_send(c, SMFIC_MACRO, evbuffer_pullup(b, -1), evbuffer_get_length(b));
    evbuffer_free(b);
}

/* --- connecting and negotiation --- */

static void milter_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct milter_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        /* SMFIC_OPTNEG: version, the actions we allow, the steps the milter may skip */
        uint32_t v[3] = {htonl((uint32_t)c->s->set->version), htonl(SMFIF_ALL),
                         htonl(MILTER_V6_OFFER)};
        c->state = MC_NEGOTIATING;
        bufferevent_enable(bev, EV_READ);
        milter_send(c, SMFIC_OPTNEG, v, sizeof v);
        milter_arm(c->s, c->s->set->cmd_timeout);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (c->state == MC_CONNECTING)
        milter_warn(c, "connect to Milter service %s: %s", c->spec->name,
                    err ? strerror(err) : "Connection refused");
    else
        milter_warn(c, "milter %s: can't read %s reply packet header: %s", c->spec->name,
                    milter_cmd_name(c->state == MC_NEGOTIATING ? SMFIC_OPTNEG : c->s->cmd),
                    (what & BEV_EVENT_EOF) || !err ? "Unexpected end of file" : strerror(err));
}

/* milter_write_cb - the output drained (a body written without replies waits for it). */
static void milter_write_cb(struct bufferevent *bev, void *arg)
{
    struct milter_conn *c = arg;
    (void)bev;
    if (c->s->wait_write) {
        c->s->wait_write = 0;
        milter_step(c->s);
    }
}

/* milter_conn_start - open the connection of C (the event waits for its negotiation). */
static void milter_conn_start(struct milter_conn *c)
{
    struct milter_sess *s = c->s;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (c->spec->unix_path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", c->spec->path);
        sl = sizeof *un;
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, c->spec->host, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons((uint16_t)c->spec->port);
            sl = sizeof *in4;
        } else {
            inet_pton(AF_INET6, c->spec->host, &in6->sin6_addr);
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)c->spec->port);
            sl = sizeof *in6;
        }
    }
    /* connect(2) here, not in bufferevent_socket_connect: a refusal that comes at once is
     * reported by it in a way that may never reach the event callback */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS)) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        c->state = MC_CONNECTING;
        milter_warn(c, "connect to Milter service %s: %s", c->spec->name, strerror(err));
        return;
    }
    if (!c->spec->unix_path) {
        /* one small packet per step, each awaited: without this, Nagle holds a packet
         * until the previous one's delayed ACK (~40 ms a step) */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        milter_warn(c, "connect to Milter service %s: %s", c->spec->name, strerror(ENOMEM));
        return;
    }
    bufferevent_setcb(c->bev, milter_read_cb, milter_write_cb, milter_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, MILTER_PKT_MAX + 64);
    c->state = MC_CONNECTING;
    milter_arm(s, s->set->conn_timeout);
    if (bufferevent_socket_connect(c->bev, NULL, 0) < 0) /* NULL: already connecting */
        milter_warn(c, "connect to Milter service %s: %s", c->spec->name, strerror(errno));
}

/* milter_optneg - the milter's SMFIC_OPTNEG answer: version, actions, steps, macro lists. */
static void milter_optneg(struct milter_conn *c, const unsigned char *d, size_t len)
{
    if (len < 12) {
        milter_warn(c, "milter %s: no protocol version information", c->spec->name);
        return;
    }
    c->version = milter_get32(d);
    c->actions = milter_get32(d + 4);
    c->pflags = milter_get32(d + 8);
    if (c->version > (uint32_t)c->s->set->version || c->version < 2) {
        milter_warn(c, "milter %s: protocol version %u conflict with MTA protocol version %d",
                    c->spec->name, c->version, c->s->set->version);
        return;
    }
    if ((c->actions & SMFIF_ALL) != c->actions) {
        milter_warn(c, "milter %s: request mask 0x%x conflict with MTA request mask 0x%x",
                    c->spec->name, c->actions, SMFIF_ALL);
        return;
    }
    /* SMFIR_SETSYMLIST data: (stage, "macro list") pairs after the three numbers */
    const unsigned char *p = d + 12, *end = d + len;
    while (end - p >= 5) {
        uint32_t stage = milter_get32(p);
        p += 4;
        const char *list = milter_str(&p, end);
        if (!list)
            break;
        if (stage < MILTER_STAGE_COUNT) {
            free(c->symlist[stage]);
            c->symlist[stage] = strdup(list);
        } else {
            log_warning("smtpd", "milter %s: ignoring unknown macro type %u", c->spec->name, stage);
        }
    }
    c->state = MC_READY;
    event_del(c->s->timer);
    if (c->s->busy)
        milter_step(c->s);
}

/* --- replies --- */

/* milter_mod_add - one modification request of the end of message. */
static void milter_mod_add(struct milter_conn *c, char cmd, const unsigned char *d, size_t len)
{
    struct milter_sess *s = c->s;
    const unsigned char *p = d, *end = d + len;
    struct milter_mod m = {0};
    const char *a = NULL, *b = NULL;
    if (cmd == SMFIR_REPLBODY) {
        if ((long long)(evbuffer_get_length(s->repl) + len) > s->body_max) {
            milter_warn(c, "milter %s: body replacement exceeds message_size_limit", c->spec->name);
            return;
        }
        evbuffer_add(s->repl, d, len);
        s->res.body = s->repl; /* marks "replaced", even when empty */
        return;
    }
    if (cmd == SMFIR_INSHEADER || cmd == SMFIR_CHGHEADER) {
        if (len < 4)
            goto bad;
        m.index = (long)milter_get32(p);
        p += 4;
    }
    if (!(a = milter_str(&p, end)))
        goto bad;
    if (cmd != SMFIR_ADDRCPT && cmd != SMFIR_DELRCPT && !(b = milter_str(&p, end)))
        b = "";
    switch (cmd) {
    case SMFIR_ADDHEADER:
        m.type = MILTER_MOD_ADDHDR;
        break;
    case SMFIR_INSHEADER:
        m.type = MILTER_MOD_INSHDR;
        break;
    case SMFIR_CHGHEADER:
        m.type = MILTER_MOD_CHGHDR;
        break;
    case SMFIR_ADDRCPT:
    case SMFIR_ADDRCPT_PAR:
        m.type = MILTER_MOD_ADDRCPT;
        break;
    case SMFIR_DELRCPT:
        m.type = MILTER_MOD_DELRCPT;
        break;
    default:
        m.type = MILTER_MOD_CHGFROM;
        break;
    }
    m.name = strdup(a);
    if (m.type <= MILTER_MOD_CHGHDR && *b && !(c->pflags & SMFIP_HDR_LEADSPC)) {
        /* Sendmail eats one space after the colon; a milter without HDR_LEADSPC gets it
         * back on the way out (Postfix's MILTER8_HDR_SPACE) */
        m.value = malloc(strlen(b) + 2);
        if (m.value)
            sprintf(m.value, " %s", b);
    } else {
        m.value = strdup(b ? b : "");
    }
    struct milter_mod *v = realloc(s->res.mods, (size_t)(s->res.nmods + 1) * sizeof *v);
    if (!m.name || !m.value || !v || s->res.nmods >= 10000) {
        free(m.name);
        free(m.value);
        if (v)
            s->res.mods = v;
        return;
    }
    s->res.mods = v;
    s->res.mods[s->res.nmods++] = m;
    return;
bad:
    milter_warn(c, "milter %s: malformed reply data for %c", c->spec->name, cmd);
}

/* milter_refuse - the event is refused with VERDICT and REPLY (final for it). */
static void milter_refuse(struct milter_sess *s, enum milter_verdict verdict, const char *reply)
{
    s->res.verdict = verdict;
    snprintf(s->res.reply, sizeof s->res.reply, "%s", reply);
    milter_finish(s);
}

/* milter_reply - one reply packet CMD (data D, LEN) to the event in flight. */
static void milter_reply(struct milter_conn *c, char cmd, const unsigned char *d, size_t len)
{
    struct milter_sess *s = c->s;
    int conn_ev = s->cmd == SMFIC_CONNECT || s->cmd == SMFIC_HELO;
    char text[sizeof s->res.reply];
    switch (cmd) {
    case SMFIR_PROGRESS:
        milter_arm(s, s->msg ? s->set->msg_timeout : s->set->cmd_timeout);
        return;
    case SMFIR_CONTINUE:
        break;
    case SMFIR_SKIP:
        c->skip_body = 1;
        break;
    case SMFIR_ACCEPT:
        c->state = conn_ev ? MC_ACCEPT_CON : MC_ACCEPT_MSG;
        break;
    case SMFIR_DISCARD:
        if (conn_ev ||
            !(s->msg || s->cmd == SMFIC_MAIL || s->cmd == SMFIC_RCPT || s->cmd == SMFIC_DATA)) {
            log_warning("smtpd", "milter %s: DISCARD action is not allowed for connect or helo",
                        c->spec->name);
            break;
        }
        c->state = MC_ACCEPT_MSG;
        milter_refuse(s, MILTER_DISCARD, "");
        return;
    case SMFIR_REJECT:
    case SMFIR_TEMPFAIL:
    case SMFIR_REPLYCODE:
        if (cmd == SMFIR_REPLYCODE) {
            if (len == 0 || d[len - 1] != 0 || len > sizeof text) {
                milter_warn(c, "milter %s: malformed reply", c->spec->name);
                return;
            }
            memcpy(text, d, len);
            milter_unpercent(text);
            if (!milter_valid_reply(text)) {
                milter_warn(c, "milter %s: malformed reply: %s", c->spec->name, text);
                return;
            }
        } else {
            snprintf(text, sizeof text, "%s",
                     cmd == SMFIR_REJECT ? "550 5.7.1 Command rejected"
                                         : "451 4.7.1 Service unavailable - try again later");
        }
        enum milter_verdict v = text[0] == '5' ? MILTER_REJECT : MILTER_TEMPFAIL;
        if (conn_ev) { /* the whole session: every later event gets it too */
            milter_close(c);
            c->state = MC_REJECT_CON;
            c->verdict = v;
            snprintf(c->reply, sizeof c->reply, "%s", text);
        }
        milter_refuse(s, v, text);
        return;
    case SMFIR_QUARANTINE:
        s->res.quarantine = 1;
        snprintf(s->res.quarantine_why, sizeof s->res.quarantine_why, "%.*s",
                 (int)(len && d[len - 1] == 0 ? len - 1 : len), (const char *)d);
        return; /* not final: the answer to the end of message follows */
    case SMFIR_ADDHEADER:
    case SMFIR_INSHEADER:
    case SMFIR_CHGHEADER:
    case SMFIR_ADDRCPT:
    case SMFIR_ADDRCPT_PAR:
    case SMFIR_DELRCPT:
    case SMFIR_CHGFROM:
    case SMFIR_REPLBODY:
        if (s->msg && s->phase == PH_WAIT_EOM) {
            milter_mod_add(c, cmd, d, len);
            return;
        }
        /* fall through */
    default:
        milter_warn(c, "milter %s: unexpected filter response %c after event %s", c->spec->name,
                    cmd, milter_cmd_name(s->cmd));
        return;
    }
    /* continue, accept, skip: on to the next step or milter */
    s->waiting = 0;
    event_del(s->timer);
    if (s->msg && (s->phase == PH_WAIT_EOM || c->state == MC_ACCEPT_MSG)) {
        s->cur++; /* this milter has seen the message: the next one reads it from the start */
        milter_pass_reset(s);
    } else if (!s->msg) {
        s->cur++;
    }
    milter_step(s);
}

static void milter_read_cb(struct bufferevent *bev, void *arg)
{
    struct milter_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!c->spec->unix_path) {
        /* ACK at once (Linux clears this after each delayed-ACK decision): a milter that
         * writes its reply in two small pieces (libmilter: a modification, then the verdict)
         * is otherwise held by its Nagle until our delayed ACK, ~40 ms a message */
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    while (c->bev && evbuffer_get_length(in) >= 5) {
        unsigned char h[5];
        evbuffer_copyout(in, h, 5);
        uint32_t len = milter_get32(h);
        if (len < 1 || len > MILTER_PKT_MAX) {
            milter_warn(c, "milter %s: unreasonable packet length: %u > %d", c->spec->name, len,
                        MILTER_PKT_MAX);
            return;
        }
        if (evbuffer_get_length(in) < 4 + (size_t)len)
            return;
        unsigned char *p = evbuffer_pullup(in, 4 + (ev_ssize_t)len);
        unsigned char *data = malloc(len);
        if (!p || !data) {
            free(data);
            milter_warn(c, "milter %s: out of memory", c->spec->name);
            return;
        }
        memcpy(data, p + 5, len - 1);
        evbuffer_drain(in, 4 + (size_t)len);
        char cmd = (char)h[4];
        if (c->state == MC_NEGOTIATING) {
            if (cmd == SMFIC_OPTNEG)
                milter_optneg(c, data, len - 1);
            else
                milter_warn(c, "milter %s: unexpected reply \"%c\" in initial handshake",
                            c->spec->name, cmd);
        } else if (c->s->busy && c->s->waiting && &c->s->c[c->s->cur] == c) {
            milter_reply(c, cmd, data, len - 1);
        } else {
            milter_warn(c, "milter %s: unexpected filter response %c", c->spec->name, cmd);
        }
        free(data);
    }
}

/* --- the event sequence --- */

/* milter_skip_conn - C takes no part in the event now: 1 to go to the next milter, 0 when
 * the event ends (or waits) here. */
static int milter_conn_usable(struct milter_sess *s, struct milter_conn *c)
{
    switch (c->state) {
    case MC_NEW:
        milter_conn_start(c);
        return 0;
    case MC_CONNECTING:
    case MC_NEGOTIATING:
        return 0;
    case MC_ERROR:
        if (s->set->defact == MILTER_DEF_ACCEPT)
            return -1;
        /* fall through */
    case MC_REJECT_CON:
        milter_refuse(s, c->verdict, c->reply);
        return 0;
    case MC_ACCEPT_CON:
    case MC_ACCEPT_MSG:
        return -1;
    case MC_READY:
        return 1;
    }
    return -1;
}

/* milter_send_event - the simple event in flight to C; 1 when a reply is awaited. */
static int milter_send_event(struct milter_sess *s, struct milter_conn *c)
{
    if ((c->pflags & s->nosend) || (s->cmd == SMFIC_DATA && c->version < 4))
        return 0;
    milter_send_macros(c, s->cmd, s->stage);
    milter_send(c, s->cmd, evbuffer_pullup(s->payload, -1), evbuffer_get_length(s->payload));
    if ((c->pflags & s->noreply) && c->version >= 6)
        return 0;
    s->waiting = 1;
    milter_arm(s, s->set->cmd_timeout);
    return 1;
}

/* milter_header_next - the next complete header in cbuf: *LEN its raw length; 0 when more
 * bytes are needed, -1 when the header block ends here (*LEN: the empty line's 2 or 0). */
static int milter_header_next(struct milter_sess *s, size_t *len)
{
    size_t n = evbuffer_get_length(s->cbuf);
    const char *p = (const char *)evbuffer_pullup(s->cbuf, n < 4096 ? -1 : (ev_ssize_t)4096);
    if (n == 0) {
        *len = 0;
        return s->eof ? -1 : 0;
    }
    size_t avail = n < 4096 ? n : 4096;
    if (p[0] == '\r' || p[0] == '\n') {
        if (avail < 2 && !s->eof)
            return 0;
        *len = (avail >= 2 && p[0] == '\r' && p[1] == '\n') ? 2 : 1;
        return -1;
    }
    struct evbuffer_ptr at;
    evbuffer_ptr_set(s->cbuf, &at, 0, EVBUFFER_PTR_SET);
    for (;;) {
        struct evbuffer_ptr e = evbuffer_search(s->cbuf, "\n", 1, &at);
        if (e.pos < 0) {
            if (n > s->hdr_max || s->eof) {
                *len = 0; /* an overlong or unterminated header: the rest is body */
                return -1;
            }
            return 0;
        }
        size_t end = (size_t)e.pos + 1;
        if (end >= n) {
            if (!s->eof)
                return 0; /* the next line's first byte tells whether it continues */
            *len = end;
            return 1;
        }
        char next;
        struct evbuffer_ptr q;
        evbuffer_ptr_set(s->cbuf, &q, end, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(s->cbuf, &q, &next, 1);
        if (next != ' ' && next != '\t') {
            *len = end;
            return 1;
        }
        evbuffer_ptr_set(s->cbuf, &at, end, EVBUFFER_PTR_SET);
    }
}

/* milter_send_header - one raw header (RAW, LEN) as SMFIC_HEADER name\0value\0. */
static void milter_send_header(struct milter_conn *c, const char *raw, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    const char *colon = memchr(raw, ':', len);
    if (!b)
        return;
    size_t nl = colon ? (size_t)(colon - raw) : len;
    while (nl > 0 && (raw[nl - 1] == ' ' || raw[nl - 1] == '\t'))
        nl--;
    evbuffer_add(b, raw, nl);
    evbuffer_add(b, "", 1);
    size_t v = colon ? (size_t)(colon - raw) + 1 : len;
    if (v < len && raw[v] == ' ' && !(c->pflags & SMFIP_HDR_LEADSPC))
        v++; /* Sendmail eats one space (not tab) after the colon */
    size_t vend = len;
    while (vend > v && (raw[vend - 1] == '\n' || raw[vend - 1] == '\r'))
        vend--;
    /* folded lines are sent separated by a bare newline, as Sendmail and Postfix do */
    for (size_t i = v; i < vend; i++)
        if (!(raw[i] == '\r' && i + 1 < vend && raw[i + 1] == '\n'))
            evbuffer_add(b, &raw[i], 1);
    evbuffer_add(b, "", 1);
    milter_send_macros(c, SMFIC_HEADER, MILTER_STAGE_EOH);
    milter_send(c, SMFIC_HEADER, evbuffer_pullup(b, -1), evbuffer_get_length(b));
    evbuffer_free(b);
}

/* milter_msg_wait - a reply is due (unless NR): 1 when waiting. */
static int milter_msg_wait(struct milter_sess *s, struct milter_conn *c, uint32_t nr)
{
    if (nr && (c->pflags & nr) && c->version >= 6)
        return 0;
    s->waiting = 1;
    milter_arm(s, s->set->msg_timeout);
    return 1;
}

/* milter_msg_pass - send the message to C as far as the bytes in hand allow; 1 when it
 * waits (a reply, bytes, the socket), 0 when C is done with it. */
static int milter_msg_pass(struct milter_sess *s, struct milter_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    for (;;) {
        if (evbuffer_get_length(out) > 4 * MILTER_CHUNK) {
            s->wait_write = 1; /* replies not awaited: bound what is queued to the milter */
            bufferevent_setwatermark(c->bev, EV_WRITE, MILTER_CHUNK, 0);
            return 1;
        }
        size_t len, n = evbuffer_get_length(s->cbuf);
        int r;
        switch (s->phase) {
        case PH_HDR:
            r = milter_header_next(s, &len);
            if (r == 0)
                goto need;
            if (r < 0) {
                if (!s->have_hdrs)
                    evbuffer_remove_buffer(s->cbuf, s->hdrblock, len);
                else
                    evbuffer_drain(s->cbuf, len);
                s->off += (long long)len;
                if (!s->have_hdrs) {
                    s->hdr_len = s->off;
                    s->have_hdrs = 1;
                }
                s->phase = PH_EOH;
                break;
            }
            {
                const char *raw = (const char *)evbuffer_pullup(s->cbuf, (ev_ssize_t)len);
                if (!(c->pflags & SMFIP_NOHDRS))
                    milter_send_header(c, raw, len);
                if (!s->have_hdrs && evbuffer_get_length(s->hdrblock) + len <= s->hdr_max)
                    evbuffer_add(s->hdrblock, raw, len);
                evbuffer_drain(s->cbuf, len);
                s->off += (long long)len;
            }
            if (!(c->pflags & SMFIP_NOHDRS) && milter_msg_wait(s, c, SMFIP_NR_HDR))
                return 1;
            break;
        case PH_EOH:
            s->phase = PH_BODY;
            if (!(c->pflags & SMFIP_NOEOH)) {
                milter_send_macros(c, SMFIC_EOH, MILTER_STAGE_EOH);
                milter_send(c, SMFIC_EOH, NULL, 0);
                if (milter_msg_wait(s, c, SMFIP_NR_EOH))
                    return 1;
            }
            break;
        case PH_BODY:
            if ((c->pflags & SMFIP_NOBODY) || c->skip_body) {
                s->phase = PH_EOB; /* the rest need not even be read */
                break;
            }
            if (n < MILTER_CHUNK && !s->eof)
                goto need;
            if (n == 0) {
                s->phase = PH_EOB;
                break;
            }
            len = n < MILTER_CHUNK ? n : MILTER_CHUNK;
            milter_send_macros(c, SMFIC_BODY, MILTER_STAGE_EOM);
            milter_send(c, SMFIC_BODY, evbuffer_pullup(s->cbuf, (ev_ssize_t)len), len);
            evbuffer_drain(s->cbuf, len);
            s->off += (long long)len;
            if (milter_msg_wait(s, c, SMFIP_NR_BODY))
                return 1;
            break;
        case PH_EOB:
            milter_send_macros(c, SMFIC_BODYEOB, MILTER_STAGE_EOM);
            milter_send(c, SMFIC_BODYEOB, NULL, 0);
            s->phase = PH_WAIT_EOM;
            s->cmd = SMFIC_BODYEOB;
            milter_msg_wait(s, c, 0);
            return 1;
        default:
            return 1;
        }
    }
need:
    if (!s->asked) {
        s->asked = 1;
        s->need(s->arg, s->off + (long long)evbuffer_get_length(s->cbuf));
    }
    return 1;
}

/* milter_pass_reset - the next milter reads the message from its start. */
static void milter_pass_reset(struct milter_sess *s)
{
    s->phase = PH_HDR;
    s->off = 0;
    s->eof = 0;
    s->asked = 0;
    evbuffer_drain(s->cbuf, evbuffer_get_length(s->cbuf));
    if (!s->have_hdrs) /* a milter that accepted early saw only part of the header block */
        evbuffer_drain(s->hdrblock, evbuffer_get_length(s->hdrblock));
}

/* milter_step - take the event in flight as far as it goes without waiting. */
void milter_step(struct milter_sess *s)
{
    while (s->busy && !s->waiting && !s->wait_write && s->cur < s->n) {
        struct milter_conn *c = &s->c[s->cur];
        int u = milter_conn_usable(s, c);
        if (u == 0)
            return;
        if (u > 0) {
            if (!s->msg ? milter_send_event(s, c) : milter_msg_pass(s, c))
                return;
            if (s->msg)
                continue;
        }
        /* this milter is done with the event (or takes no part): the next one */
        s->cur++;
        if (s->msg)
            milter_pass_reset(s);
    }
    if (s->busy && !s->waiting && !s->wait_write && s->cur >= s->n &&
        !event_pending(s->done_ev, EV_TIMEOUT, NULL))
        milter_finish(s);
}

void milter_content(struct milter_sess *s, struct evbuffer *buf)
{
    s->asked = 0;
    if (!s->busy || !s->msg)
        return;
    if (evbuffer_get_length(buf) == 0)
        s->eof = 1;
    evbuffer_add_buffer(s->cbuf, buf);
    milter_step(s);
}
