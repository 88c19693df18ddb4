/*
 * smtpd_session.c - one SMTP connection: accept-time limits, the read loop
 * (command lines, DATA bodies, BDAT chunks), pipelining rules, backpressure,
 * the STARTTLS layer swap, the disconnect log line, and freeing (the reaper).
 * Sessions are found by numeric id for async work (commits, SASL steps); while
 * such work is in flight the session does not read.
 * Not here: what each command does (smtpd_proto.c), commits (smtpd_txn.c), the
 * phase and its timeouts (smtpd_state.c).
 *
 * Ownership: the server owns its sessions (srv->sessions). A session is never freed
 * where it is used: every end (QUIT, an error reply, timeout, lost connection,
 * a failed TLS handshake, shutdown) goes through smtpd_session_kill, which logs
 * the disconnect, unhooks it from the registry and puts it in srv->grave; the
 * reaper, an event of its own, frees the grave from the event loop, outside
 * every callback that may still hold the pointer. Async work never holds the
 * pointer: it keeps the session's id and looks it up when done (state.c), and
 * finds nothing once the session is dead. Nothing else frees a session.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "smtpd_int.h"

/* An ending session with more unsent reply bytes than this still counts (smtpd_session_live_from).
 */
#define SMTPD_ENDING_UNSENT_MAX 4096

static void smtpd_session_read_cb(struct bufferevent *bev, void *arg);
static void smtpd_session_write_cb(struct bufferevent *bev, void *arg);
static void smtpd_session_event_cb(struct bufferevent *bev, short what, void *arg);
static void smtpd_session_process(struct smtpd_session *s);
static void smtpd_session_flush(struct smtpd_session *s);
static void smtpd_session_check_drained(struct smtpd *srv);

/* smtpd_session_ipkey - the per-client key: IPv4 (also v4-mapped) as ::ffff:a.b.c.d. */
static void smtpd_session_ipkey(const struct sockaddr *sa, unsigned char key[16], char *addr)
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &in->sin_addr, 4);
        inet_ntop(AF_INET, &in->sin_addr, addr, INET6_ADDRSTRLEN);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(key, &in6->sin6_addr, 16);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, key + 12, addr, INET6_ADDRSTRLEN);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, addr, INET6_ADDRSTRLEN);
    }
}

/* smtpd_session_refuse - one reply on a fresh socket, then close (it always fits the socket
 * buffer). */
static void smtpd_session_refuse(int fd, const char *text)
{
    ssize_t r = send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)r;
    close(fd);
}

/* smtpd_session_drained - the spool wrote out what this session's message had buffered. */
static void smtpd_session_drained(void *arg)
{
    struct smtpd_session *s = arg;
    s->paused = 0;
    smtpd_session_resume(s, 0);
}

/* smtpd_session_delay_cb - the error sleep is over. */
static void smtpd_session_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_session *s = arg;
    s->paused = 0;
    smtpd_session_resume(s, 0);
}

/* smtpd_session_setup_bev - callbacks, watermarks and the phase's timeout of a new bev. */
static void smtpd_session_setup_bev(struct smtpd_session *s)
{
    const struct conf *c = s->srv->conf;
    struct timeval tv = {c->smtpd_timeout, 0};

    bufferevent_setcb(s->bev, smtpd_session_read_cb, smtpd_session_write_cb, smtpd_session_event_cb,
                      s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, (size_t)c->smtpd_session_buffer_limit);
    bufferevent_setwatermark(s->bev, EV_WRITE, (size_t)c->smtpd_session_buffer_limit / 2, 0);
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    s->timeout = (int)c->smtpd_timeout;
}

/* smtpd_session_unsent - reply bytes of S not yet taken by its client: ours, the TLS layer's and
 * the kernel's send queue. */
static size_t smtpd_session_unsent(const struct smtpd_session *s, int fd)
{
    size_t n = evbuffer_get_length(s->out) + evbuffer_get_length(bufferevent_get_output(s->bev));
    struct bufferevent *u = bufferevent_get_underlying(s->bev);
    int q = 0;
    if (u)
        n += evbuffer_get_length(bufferevent_get_output(u));
    if (fd >= 0 && ioctl(fd, SIOCOUTQ, &q) == 0 && q > 0)
        n += (size_t)q;
    return n;
}

/* smtpd_session_ip_hash - FNV-1a of a client address key. */
static size_t smtpd_session_ip_hash(const unsigned char key[16])
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

/* smtpd_session_client_match - the entry of the address KEY. */
static int smtpd_session_client_match(const struct htab_node *n, const void *key)
{
    return memcmp(HTAB_ENTRY(n, struct smtpd_client, node)->key, key, 16) == 0;
}

/* smtpd_session_client - the live sessions' entry of address KEY, NULL when none. */
static struct smtpd_client *smtpd_session_client(struct smtpd *srv, const unsigned char key[16])
{
    struct htab_node *n =
        htab_find(&srv->by_ip, smtpd_session_ip_hash(key), smtpd_session_client_match, key);
    return n ? HTAB_ENTRY(n, struct smtpd_client, node) : NULL;
}

/* smtpd_session_live_from - at the per-client limit only: the sessions from KEY that count. A
 * client that ends a session and at once opens the next can be accepted before the loop has
 * finished the old one (the listener accepts every waiting connection in one go): a session that
 * is ending (QUIT answered) or whose client has closed its side is over, as Postfix's anvil would
 * have seen, and does not count - unless it still has more than SMTPD_ENDING_UNSENT_MAX bytes of
 * replies its client is not taking: such a session can linger until smtpd_timeout, and not
 * counting it would let one client hold any number of them. */
static long smtpd_session_live_from(struct smtpd *srv, const unsigned char key[16])
{
    long n = 0;
    struct smtpd_session *s;

    TAILQ_FOREACH(s, &srv->sessions, link)
    {
        if (memcmp(s->ipkey, key, 16) != 0)
            continue;
        struct pollfd p = {.fd = s->bev ? bufferevent_getfd(s->bev) : -1, .events = POLLRDHUP};
        int over =
            s->state == SMTPD_STATE_CLOSING ||
            (p.fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
        if (over && smtpd_session_unsent(s, p.fd) <= SMTPD_ENDING_UNSENT_MAX)
            continue;
        n++;
    }
    return n;
}

void smtpd_session_accept(struct smtpd *srv, int fd, const struct sockaddr *sa, int salen,
                          int implicit_tls)
{
    const struct conf *c = srv->conf;
    unsigned char key[16];
    char addr[INET6_ADDRSTRLEN], peek[128], buf[512];
    struct smtpd_client *cl;
    long count;
    struct smtpd_session *s;
    int one = 1;
    ssize_t n;

    (void)salen;
    counter_add(CNT_CONNECTIONS, 1);
    smtpd_session_ipkey(sa, key, addr);
    if (srv->stopping) {
        snprintf(buf, sizeof(buf), "421 4.3.2 %s Service shutting down\r\n", srv->hostname);
        smtpd_session_refuse(fd, buf);
        return;
    }
    if ((long)srv->nsessions >= c->smtpd_session_limit) {
        log_mail("smtpd", "warning: session limit exceeded: %zu sessions, refusing %s[%s]",
                 srv->nsessions, "unknown", addr);
        counter_add(CNT_REJECTED, 1);
        smtpd_session_refuse(fd, "421 4.3.2 Service not available, too many sessions\r\n");
        return;
    }
    cl = smtpd_session_client(srv, key);
    count = cl ? cl->count : 0;
    long live = 0;
    if (c->smtpd_client_connection_count_limit > 0 &&
        count >= c->smtpd_client_connection_count_limit &&
        (live = smtpd_session_live_from(srv, key)) >= c->smtpd_client_connection_count_limit) {
        /* Postfix's smtpd has accepted the connection when anvil says no: a session of
         * its own (connect, warning, disconnect) that log tools count like any other */
        long pid = log_new_pid();
        log_mail_pid("smtpd", pid, "connect from unknown[%s]", addr);
        log_mail_pid("smtpd", pid,
                     "warning: Connection concurrency limit exceeded: %ld from unknown[%s] for "
                     "service smtp",
                     live + 1, addr);
        log_mail_pid("smtpd", pid, "disconnect from unknown[%s] commands=0", addr);
        counter_add(CNT_REJECTED, 1);
        snprintf(buf, sizeof(buf), "421 4.7.0 %s Error: too many connections from %s\r\n",
                 srv->hostname, addr);
        smtpd_session_refuse(fd, buf);
        return;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        close(fd);
        return;
    }
    s->srv = srv;
    s->id = ++srv->next_id;
    s->log_pid = log_new_pid();
    memcpy(s->ipkey, key, 16);
    memcpy(s->addr, addr, sizeof(addr));
    s->port = ntohs(sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                              : ((const struct sockaddr_in *)sa)->sin_port);
    s->name = "unknown";
    s->where = "CONNECT";
    s->state = SMTPD_STATE_CONNECT; /* the first phase, before there is a bev to time */
    s->cur_cmd = -1;
    s->trusted = smtpd_policy_trusted(srv, sa);
    evutil_make_socket_nonblocking(fd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->submission = implicit_tls == SMTPD_LISTEN_SUBMISSION;
    /* SMTPS: the handshake runs first, the greeting waits for it */
    if (implicit_tls == SMTPD_LISTEN_SMTPS) {
        s->bev = smtpd_tls_socket_bev(srv, fd);
        s->state = SMTPD_STATE_TLS; /* the greeting waits in the TLS layer */
    } else {
        s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    s->out = evbuffer_new();
    s->delay_ev = evtimer_new(srv->base, smtpd_session_delay_cb, s);
    s->line = malloc((size_t)c->line_length_limit + 2);
    if (!cl && (cl = calloc(1, sizeof(*cl)))) {
        memcpy(cl->key, key, 16);
        if (htab_insert(&srv->by_ip, &cl->node, smtpd_session_ip_hash(key)) < 0) {
            free(cl);
            cl = NULL;
        }
    }
    if (!s->bev || !s->out || !s->delay_ev || !s->line || !cl ||
        htab_insert(&srv->by_id, &s->id_node, smtpd_state_id_hash(s->id)) < 0) {
        if (cl && cl->count == 0) {
            htab_remove(&srv->by_ip, &cl->node);
            free(cl);
        }
        if (s->bev)
            bufferevent_free(s->bev);
        else
            close(fd);
        if (s->out)
            evbuffer_free(s->out);
        if (s->delay_ev)
            event_free(s->delay_ev);
        free(s->line);
        free(s);
        return;
    }
    s->client = cl;
    cl->count++;
    TAILQ_INSERT_HEAD(&srv->sessions, s, link);
    srv->nsessions++;
    counter_add(CNT_SMTP_ACTIVE, 1);

    log_mail_pid("smtpd", s->log_pid, "connect from %s[%s]", s->name, s->addr);
    smtpd_session_setup_bev(s);
    /* smtpd_forbid_unauth_pipelining: a client that talks before the banner is a bot
     * (on SMTPS the client speaks first: its ClientHello) */
    n = implicit_tls == SMTPD_LISTEN_SMTPS
            ? 0
            : recv(fd, peek, sizeof(peek) - 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        char esc[400];
        size_t o = 0;
        for (ssize_t i = 0; i < n && o + 5 < sizeof(esc); i++) {
            unsigned char ch = (unsigned char)peek[i];
            if (ch == '\r')
                o += (size_t)snprintf(esc + o, sizeof(esc) - o, "\\r");
            else if (ch == '\n')
                o += (size_t)snprintf(esc + o, sizeof(esc) - o, "\\n");
            else if (ch < 32 || ch >= 127)
                o += (size_t)snprintf(esc + o, sizeof(esc) - o, "?");
            else
                esc[o++] = (char)ch;
        }
        esc[o] = 0;
        log_mail_pid("smtpd", s->log_pid,
                     "improper command pipelining after CONNECT from %s[%s]: %s", s->name, s->addr,
                     esc);
        smtpd_reply(s, "554 5.5.0 Error: SMTP protocol synchronization");
        smtpd_session_close(s);
        return;
    }
    smtpd_proto_greet(s);
    smtpd_session_flush(s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* smtpd_session_flush - hand the replies of the batch to the socket (or the bufferevent). */
static void smtpd_session_flush(struct smtpd_session *s)
{
    if (s->state == SMTPD_STATE_DEAD || evbuffer_get_length(s->out) == 0)
        return;
    /* Plain TCP with nothing queued yet: write the replies now. Through the bufferevent each
     * reply costs two epoll_ctl calls (arm and disarm the write event) and a loop turn; a
     * client that does not read leaves the rest to the bufferevent as before. */
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0 && !smtpd_tls_layered(s)) {
        evutil_socket_t fd = bufferevent_getfd(s->bev);
        if (fd >= 0)
            (void)evbuffer_write(s->out, fd); /* an error: the bufferevent meets it again */
    }
    if (evbuffer_get_length(s->out) > 0)
        bufferevent_write_buffer(s->bev, s->out);
}

/* smtpd_session_reaper_cb - free closed sessions, outside any of their callbacks. */
static void smtpd_session_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd *srv = arg;
    struct smtpd_session *s;

    while ((s = TAILQ_FIRST(&srv->grave))) {
        TAILQ_REMOVE(&srv->grave, s, link);
        smtpd_tls_flush_underlying(s); /* a last reply still below the TLS layer */
        smtpd_sasl_reset(s);
        bufferevent_free(s->bev);
        evbuffer_free(s->out);
        event_free(s->delay_ev);
        free(s->helo);
        free(s->line);
        free(s);
    }
    smtpd_session_check_drained(srv);
}

/* smtpd_session_check_drained - while stopping: report "no session left" once. */
static void smtpd_session_check_drained(struct smtpd *srv)
{
    if (srv->stopping && srv->nsessions == 0 && TAILQ_EMPTY(&srv->grave) && srv->drained) {
        void (*cb)(void *) = srv->drained;
        srv->drained = NULL;
        cb(srv->drained_arg);
    }
}

/* smtpd_session_disconnect_log - Postfix 3.x "disconnect from ... ehlo=1 mail=1 ... commands=N". */
static void smtpd_session_disconnect_log(struct smtpd_session *s)
{
    char buf[512];
    size_t o = 0;
    long long ok = 0, all = 0; /* sums of saturated ints */

    for (int i = 0; i < SMTPD_CMD_COUNT; i++) {
        if (s->cnt_all[i] == 0)
            continue;
        ok += s->cnt_ok[i];
        all += s->cnt_all[i];
        if (s->cnt_ok[i] == s->cnt_all[i])
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, " %s=%d", smtpd_cmd_defs[i].lname,
                                  s->cnt_all[i]);
        else
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, " %s=%d/%d", smtpd_cmd_defs[i].lname,
                                  s->cnt_ok[i], s->cnt_all[i]);
        if (o >= sizeof(buf))
            o = sizeof(buf) - 1;
    }
    if (ok == all)
        snprintf(buf + o, sizeof(buf) - o, " commands=%lld", all);
    else
        snprintf(buf + o, sizeof(buf) - o, " commands=%lld/%lld", ok, all);
    log_mail_pid("smtpd", s->log_pid, "disconnect from %s[%s]%s", s->name, s->addr, buf);
}

/* smtpd_session_kill - the end of every session: log, unhook, hand it to the reaper. */
static void smtpd_session_kill(struct smtpd_session *s)
{
    struct smtpd *srv = s->srv;

    if (s->state == SMTPD_STATE_DEAD)
        return;
    smtpd_enter_state(s, SMTPD_STATE_DEAD);
    smtpd_session_disconnect_log(s);
    smtpd_txn_reset(s);
    smtpd_milter_free(s); /* QUIT to its milters; no callback of theirs runs after this */
    bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    event_del(s->delay_ev);
    htab_remove(&srv->by_id, &s->id_node);
    if (--s->client->count == 0) {
        htab_remove(&srv->by_ip, &s->client->node);
        free(s->client);
    }
    s->client = NULL;
    TAILQ_REMOVE(&srv->sessions, s, link);
    srv->nsessions--;
    counter_add(CNT_SMTP_ACTIVE, -1);
    TAILQ_INSERT_TAIL(&srv->grave, s, link);
    event_active(srv->reaper, EV_TIMEOUT, 1);
}

void smtpd_session_close(struct smtpd_session *s)
{
    if (s->state == SMTPD_STATE_DEAD)
        return;
    smtpd_enter_state(s, SMTPD_STATE_CLOSING);
    smtpd_session_flush(s);
    /* TLS may need to read to finish a write (OpenSSL WANT_READ): keep reading there;
     * input is ignored while CLOSING */
    if (!smtpd_tls_layered(s))
        bufferevent_disable(s->bev, EV_READ);
    event_del(s->delay_ev);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
        smtpd_session_kill(s);
        return;
    }
    /* wait for the write callback; the write timeout bounds a client that never reads */
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    bufferevent_enable(s->bev, EV_WRITE);
}

/* smtpd_session_pause - stop reading for a while (the error sleep). */
static void smtpd_session_pause(struct smtpd_session *s, long usec)
{
    struct timeval tv = {usec / 1000000, usec % 1000000};
    s->paused = 1;
    bufferevent_disable(s->bev, EV_READ);
    evtimer_add(s->delay_ev, &tv);
}

/* smtpd_session_resume - async work (a commit, a SASL step, a timer) is done: FLUSH the
 * replies it made now, then go on reading; a session that is closing goes on closing. This
 * is the continuation smtpd_new hands to the files below the session (srv->resume). */
void smtpd_session_resume(struct smtpd_session *s, int flush)
{
    if (s->state == SMTPD_STATE_DEAD)
        return;
    if (flush)
        smtpd_session_flush(s);
    smtpd_session_process(s);
}

/* smtpd_session_pipelining_ok - RFC 2920 rules, enforced as smtpd_forbid_unauth_pipelining = yes.
 */
static int smtpd_session_pipelining_ok(struct smtpd_session *s, enum smtpd_cmd_id id,
                                       struct evbuffer *in)
{
    char peek[101], esc[400];
    size_t n, o = 0;

    if (evbuffer_get_length(in) == 0)
        return 1;
    if (!(smtpd_cmd_defs[id].flags & SMTPD_CMDF_LAST) && (s->esmtp || id == SMTPD_CMD_BDAT))
        return 1;
    if (id == SMTPD_CMD_QUIT)
        return 1;
    n = (size_t)evbuffer_copyout(in, peek, sizeof(peek) - 1);
    for (size_t i = 0; i < n && o + 5 < sizeof(esc); i++) {
        unsigned char ch = (unsigned char)peek[i];
        if (ch == '\r' || ch == '\n')
            o += (size_t)snprintf(esc + o, sizeof(esc) - o, "%s", ch == '\r' ? "\\r" : "\\n");
        else
            esc[o++] = (ch < 32 || ch >= 127) ? '?' : (char)ch;
    }
    esc[o] = 0;
    log_mail_pid("smtpd", s->log_pid, "improper command pipelining after %s from %s[%s]: %s",
                 smtpd_cmd_defs[id].name, s->name, s->addr, esc);
    return 0;
}

/*
 * smtpd_session_starttls - STARTTLS was answered 220 (s->tls_next holds the SSL): as
 * Postfix's starttls_cmd, the 220 and every earlier reply go out in plaintext, every byte
 * the client pipelined after STARTTLS is dropped (CVE-2011-0411: plaintext injected before
 * the handshake is never answered inside TLS), then the OpenSSL filter replaces the bev;
 * the socket, its limits and the session's id stay the same.
 */
static void smtpd_session_starttls(struct smtpd_session *s)
{
    struct bufferevent *nb;
    struct evbuffer *in;
    void *ssl = s->tls_next;
    size_t junk;

    s->tls_next = NULL;
    smtpd_session_flush(s);
    in = bufferevent_get_input(s->bev);
    if ((junk = evbuffer_get_length(in)) > 0) {
        log_mail_pid("smtpd", s->log_pid,
                     "warning: %s[%s]: %zu bytes of plaintext pipelined after STARTTLS "
                     "discarded",
                     s->name, s->addr, junk);
        evbuffer_drain(in, junk);
    }
    if (!(nb = smtpd_tls_filter(s, s->bev, ssl))) {
        smtpd_enter_state(s, SMTPD_STATE_CLOSING);
        return;
    }
    s->bev = nb;
    smtpd_session_setup_bev(s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* smtpd_session_line - handle one complete command line at the head of IN. */
static void smtpd_session_line(struct smtpd_session *s, struct evbuffer *in, size_t pos)
{
    const struct conf *c = s->srv->conf;
    size_t len = pos, limit = (size_t)c->line_length_limit;
    int bare;
    const char *arg;
    enum smtpd_cmd_id id;

    if (s->skip_line || len > limit + 1) {
        evbuffer_drain(in, pos + 1);
        s->skip_line = 0;
        smtpd_reply(s, "500 5.5.2 Error: line too long");
        return;
    }
    evbuffer_remove(in, s->line, pos + 1);
    s->line[pos] = 0;
    bare = !(len > 0 && s->line[len - 1] == '\r');
    if (!bare)
        s->line[--len] = 0;
    if (len > limit) {
        smtpd_reply(s, "500 5.5.2 Error: line too long");
        return;
    }
    if (s->state == SMTPD_STATE_AUTH) { /* a SASL response line, never a command */
        smtpd_sasl_response(s, s->line);
        return;
    }
    if (bare && s->srv->barelf == SMTPD_BARELF_REJECT) {
        smtpd_reply_log_reject(s, s->where, s->tx ? s->tx->sender : NULL,
                               s->tx && s->tx->nrcpt ? s->tx->rcpt[s->tx->nrcpt - 1].addr : NULL,
                               "bare <LF> received");
        counter_add(CNT_REJECTED, 1);
        smtpd_reply_close(s, "521 5.5.2 %s Error: bare <LF> received", s->srv->hostname);
        return;
    }
    if (memchr(s->line, 0, len) || len == 0) {
        smtpd_reply(s, "500 5.5.2 Error: bad syntax");
        return;
    }
    id = smtpd_cmd_parse(s->line, &arg);
    smtpd_count_inc(&s->cnt_all[id]);
    s->cur_cmd = id;
    if (!smtpd_session_pipelining_ok(s, id, in)) {
        s->cur_cmd = -1;
        counter_add(CNT_REJECTED, 1);
        smtpd_reply_close(s, "554 5.5.0 Error: SMTP protocol synchronization");
        return;
    }
    smtpd_proto_dispatch(s, id, arg);
    if (s->tls_next)
        smtpd_session_starttls(s);
}

/* smtpd_session_body - feed buffered input to the DATA machine or the BDAT chunk. */
static void smtpd_session_body(struct smtpd_session *s, struct evbuffer *in)
{
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(in, -1, NULL, v, 8);
    size_t used = 0;

    for (int i = 0; i < nv && i < 8; i++) {
        size_t n = v[i].iov_len, k;
        if (s->state == SMTPD_STATE_BDAT) {
            long long left = s->tx ? s->tx->bdat_left : 0;
            if ((long long)n > left)
                n = (size_t)left;
            k = s->tx && s->tx->body_active ? smtpd_body_feed(&s->tx->body, v[i].iov_base, n) : n;
            s->tx->bdat_left -= (long long)k;
        } else {
            k = smtpd_body_feed(&s->tx->body, v[i].iov_base, n);
        }
        used += k;
        if (k < v[i].iov_len)
            break;
    }
    evbuffer_drain(in, used);
    if (smtpd_txn_body_push(s) < 0)
        s->tx->body.err |= SMTPD_BODY_ERR_IO;
    if (s->state == SMTPD_STATE_DATA && s->tx->body.done)
        smtpd_txn_end(s);
    else if (s->state == SMTPD_STATE_BDAT && s->tx->bdat_left == 0)
        smtpd_proto_end_chunk(s);
}

/* smtpd_session_reading - phases whose input the loop reads (the others wait for an event). */
static int smtpd_session_reading(const struct smtpd_session *s)
{
    return ((SMTPD_S(CONNECT) | SMTPD_S(HELO) | SMTPD_S(AUTH) | SMTPD_S(MAIL) | SMTPD_S(RCPT) |
             SMTPD_S(DATA) | SMTPD_S(BDAT)) &
            (1u << s->state)) != 0;
}

/* smtpd_session_process - read what the phase allows, answer, then choose to read on or not. */
static void smtpd_session_process(struct smtpd_session *s)
{
    const struct conf *c = s->srv->conf;
    struct evbuffer *in;
    size_t limit = (size_t)c->smtpd_session_buffer_limit;

    if (s->state == SMTPD_STATE_DEAD)
        return;
    /* bufferevent_openssl runs the read callback for the bytes that came with the client's
     * Finished before it reports BEV_EVENT_CONNECTED: the TLS state must be in force before
     * any of them is parsed, or an EHLO sent at once gets the plaintext capabilities */
    smtpd_tls_check_connected(s);
    if (s->state == SMTPD_STATE_CLOSING) {
        smtpd_session_close(s); /* input is ignored; the last replies are on their way */
        return;
    }
    if (s->paused || s->milter_wait || s->state == SMTPD_STATE_COMMIT ||
        s->state == SMTPD_STATE_AUTH_WAIT)
        return;
    if (s->delay_pending) { /* a failed AUTH came back from its worker */
        s->delay_pending = 0;
        smtpd_session_pause(s, c->smtpd_error_sleep_time * 1000000L);
        return;
    }
    in = bufferevent_get_input(s->bev);
    while (smtpd_session_reading(s)) {
        size_t avail;
        in = bufferevent_get_input(s->bev); /* STARTTLS replaces the bufferevent */
        avail = evbuffer_get_length(in);
        if (evbuffer_get_length(s->out) + evbuffer_get_length(bufferevent_get_output(s->bev)) >
            limit) {
            /* the socket may take the replies at once (smtpd_session_flush); only what it
             * leaves to the bufferevent, whose write callback resumes us, is worth waiting for */
            smtpd_session_flush(s);
            if (evbuffer_get_length(bufferevent_get_output(s->bev)) > limit) {
                s->wait_write = 1; /* the client does not read its replies: stop reading too */
                break;
            }
        }
        if (s->tx && s->tx->msg && spool_msg_buffered(s->tx->msg) > limit &&
            spool_msg_on_drain(s->tx->msg, smtpd_session_drained, s)) {
            /* the disk is behind: stop reading until the spool's write in flight is done */
            smtpd_session_flush(s);
            s->paused = 1;
            bufferevent_disable(s->bev, EV_READ);
            return;
        }
        if (avail == 0)
            break;
        if (s->bdat_discard > 0) {
            size_t n = avail < (size_t)s->bdat_discard ? avail : (size_t)s->bdat_discard;
            evbuffer_drain(in, n);
            s->bdat_discard -= (long long)n;
            continue;
        }
        if (s->state == SMTPD_STATE_DATA || s->state == SMTPD_STATE_BDAT) {
            smtpd_session_body(s, in);
            continue;
        } else {
            size_t eol_len;
            struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
            if (p.pos < 0) {
                if (avail > (size_t)c->line_length_limit + 1) {
                    evbuffer_drain(in, avail); /* bounded: keep only the verdict */
                    s->skip_line = 1;
                }
                break;
            }
            smtpd_session_line(s, in, (size_t)p.pos);
            if (s->milter_wait) { /* the milters answer first (smtpd_milter.c) */
                smtpd_session_flush(s);
                bufferevent_disable(s->bev, EV_READ);
                return;
            }
        }
        if (s->delay_pending && !smtpd_state_final(s)) {
            s->delay_pending = 0;
            smtpd_session_pause(s, c->smtpd_error_sleep_time * 1000000L);
            return; /* the delayed reply is flushed when the timer fires */
        }
    }
    if (s->state == SMTPD_STATE_DEAD)
        return;
    s->delay_pending = 0;
    if (s->state == SMTPD_STATE_CLOSING) {
        smtpd_session_close(s);
        return;
    }
    smtpd_session_flush(s);
    if (s->state == SMTPD_STATE_COMMIT || s->state == SMTPD_STATE_AUTH_WAIT || s->wait_write)
        bufferevent_disable(s->bev, EV_READ);
    else
        bufferevent_enable(s->bev, EV_READ);
}

/* smtpd_session_read_cb - new input. */
static void smtpd_session_read_cb(struct bufferevent *bev, void *arg)
{
    smtpd_session_process(arg);
}

/* smtpd_session_write_cb - output drained below the low watermark (or to zero). */
static void smtpd_session_write_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = arg;
    if (s->state == SMTPD_STATE_DEAD)
        return;
    if (s->state == SMTPD_STATE_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            smtpd_session_kill(s);
        return;
    }
    if (s->wait_write) {
        s->wait_write = 0;
        smtpd_session_process(s);
    }
}

/*
 * smtpd_session_log_abort - "REASON after WHERE from name[addr]" as Postfix's smtpd logs an
 * abnormal end: with the byte count while a DATA or BDAT body streams, and nothing for a
 * client that leaves without QUIT once its message was answered (no fault: Postfix has no
 * "lost connection after END-OF-MESSAGE", and log tools count what Postfix writes).
 */
static void smtpd_session_log_abort(struct smtpd_session *s, const char *reason)
{
    if ((s->state == SMTPD_STATE_DATA || s->state == SMTPD_STATE_BDAT) && s->tx)
        log_mail_pid("smtpd", s->log_pid, "%s after %s (%lld bytes) from %s[%s]", reason,
                     s->state == SMTPD_STATE_DATA ? "DATA" : "BDAT", s->tx->body.size, s->name,
                     s->addr);
    else if (strcmp(reason, "lost connection") != 0 || strcmp(s->where, "END-OF-MESSAGE") != 0)
        log_mail_pid("smtpd", s->log_pid, "%s after %s from %s[%s]", reason, s->where, s->name,
                     s->addr);
}

/* smtpd_session_event_cb - EOF, error or timeout. */
static void smtpd_session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_session *s = arg;

    if (s->state == SMTPD_STATE_DEAD)
        return;
    if (what & BEV_EVENT_CONNECTED) { /* the TLS handshake is complete */
        smtpd_tls_check_connected(s);
        return;
    }
    if ((what & BEV_EVENT_ERROR) && smtpd_tls_handshaking(s))
        smtpd_tls_failed(s);
    if (s->state == SMTPD_STATE_CLOSING) {
        smtpd_session_kill(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        smtpd_session_log_abort(s, "timeout");
        smtpd_reply_close(s, "421 4.4.2 %s Error: timeout exceeded", s->srv->hostname);
        smtpd_session_close(s);
        return;
    }
    smtpd_session_log_abort(s, "lost connection");
    smtpd_session_kill(s);
}

void smtpd_session_free_all(struct smtpd *srv)
{
    while (!TAILQ_EMPTY(&srv->sessions))
        smtpd_session_kill(TAILQ_FIRST(&srv->sessions));
    smtpd_session_reaper_cb(-1, 0, srv);
}

/* smtpd_session_reaper_new - the event that frees closed sessions (the one deferred free). */
struct event *smtpd_session_reaper_new(struct smtpd *srv)
{
    return event_new(srv->base, -1, 0, smtpd_session_reaper_cb, srv);
}
