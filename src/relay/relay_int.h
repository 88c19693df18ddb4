/*
 * relay_int.h - private to src/relay/: the delivery engine's structs and the
 * small pure helpers its files share (reply parsing, delay formatting, xtext,
 * DSN text). Not for other modules: they use include/mta/relay.h.
 */
#ifndef MTA_RELAY_INT_H
#define MTA_RELAY_INT_H

#include <stddef.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "mta/clock.h"
#include "mta/dns.h"
#include "mta/relay.h"
#include "mta/sched.h"

struct bufferevent;
struct event;
struct workers;
struct evbuffer;
typedef struct ssl_ctx_st SSL_CTX;

#define RELAY_REPLY_MAX 2048  /* one (possibly multi-line) reply, joined; longer is cut */
#define RELAY_HOSTS_MAX 16    /* MX hosts tried per delivery */
#define RELAY_CMD_MAX 2600    /* MAIL/RCPT line: path + parameters, xtext ORCPT (3 x 500) */
#define RELAY_STOP_SECONDS 10 /* relay_stop waits this long for replies to the final dot */
#define RELAY_BOUNCE_FULL_MAX (1024 * 1024) /* larger originals are returned as headers only */

/* --- pure helpers (relay_util.c) --- */

/*
 * relay_reply_feed - add one reply line (without CRLF) to a reply being
 * collected. Returns 1 when the reply is complete (*CODE set), 0 when more
 * lines follow, -1 when the line is not an SMTP reply line.
 */
struct relay_reply {
    int code;
    size_t len;
    char text[RELAY_REPLY_MAX]; /* "250 first line second line", lines joined by ' ' */
};
int relay_reply_feed(struct relay_reply *r, const char *line, size_t len);
/* relay_reply_dsn - the enhanced status of REPLY ("5.1.1"), or the class default
 * (4.0.0/5.0.0/2.0.0). */
void relay_reply_dsn(const struct relay_reply *r, char *dsn, size_t len);
/* relay_fmt_delay - SECONDS as Postfix prints delays: "0", "0.01", "0.31", "1.2", "17". */
void relay_fmt_delay(double seconds, char *buf, size_t len);
/* relay_xtext - RFC 3461 xtext encoding of S into BUF (cut at LEN). */
void relay_xtext(const char *s, char *buf, size_t len);
/* relay_ehlo_parse - EHLO reply lines -> capability bits and the SIZE limit. */
enum {
    RELAY_EXT_PIPELINING = 1,
    RELAY_EXT_SIZE = 2,
    RELAY_EXT_8BITMIME = 4,
    RELAY_EXT_SMTPUTF8 = 8,
    RELAY_EXT_DSN = 16,
    RELAY_EXT_STARTTLS = 32,
};
int relay_ehlo_line(const char *kw, size_t len, long long *size_limit);

/*
 * The message as it goes out after DATA (relay_util.c): dot-stuffed, every line
 * ending in CRLF and at most LIMIT bytes long (smtp_line_length_limit; 0: no
 * limit), ending in CRLF "." CRLF. A stored bare LF ends a line (as in a locally
 * submitted message), a stored bare CR becomes a space (Postfix's
 * cleanup_replace_stray_cr_lf): a strict next hop refuses either with 500, and
 * passing them on lets a peer that reads them as line ends be smuggled a
 * message. A longer line is broken with CRLF SPACE, as Postfix's smtp client
 * does, but not inside a UTF-8 sequence when it can be avoided.
 */
struct relay_body {
    char *p;
    size_t len, cap;
    size_t limit; /* 0: no limit; else at least RELAY_LINE_MIN */
    size_t col;   /* bytes on the current output line */
    int bol;      /* the next byte starts a line */
    int cr;       /* a stored CR is pending: CRLF or a bare CR */
    int broken;   /* a line was broken (logged once per message, as Postfix does) */
    int done;     /* relay_body_end ran: the final dot is in */
};
#define RELAY_LINE_MIN 8 /* smaller limits leave no room after the CRLF SPACE */
/* relay_body_init - an empty body with line limit LIMIT, room for about HINT bytes; 0 or ENOMEM. */
int relay_body_init(struct relay_body *b, size_t limit, size_t hint);
/* relay_body_add - append N bytes of the stored message; 0 or ENOMEM. */
int relay_body_add(struct relay_body *b, const char *buf, size_t n);
/* relay_body_end - the end of data: the last line's CRLF if missing, then "." CRLF; 0 or ENOMEM. */
int relay_body_end(struct relay_body *b);
/* relay_body_ready - how many bytes at the start of B->p are final and may be sent now. */
size_t relay_body_ready(const struct relay_body *b);
/* relay_body_consume - drop the first N bytes (at most relay_body_ready) once they were sent. */
void relay_body_consume(struct relay_body *b, size_t n);

/*
 * The stream (relay_body.c): the text above made from the queue file RELAY_CHUNK
 * bytes at a time on a worker thread, at most one chunk ahead of the socket, so a
 * connection holds about RELAY_CHUNK + RELAY_WRITE_LOW of the message (plus the
 * TLS filter's RELAY_TLS_HIGH) whatever its size. The file offset is never
 * shared (pread), and a stream freed while a worker reads is freed by the
 * worker's completion.
 */
#define RELAY_CHUNK (32 * 1024)     /* message bytes read and made per step */
#define RELAY_WRITE_LOW (32 * 1024) /* the next chunk goes out when the output is below this */
#define RELAY_TLS_HIGH (64 * 1024)  /* ciphertext the TLS filter may queue on the socket */
#define RELAY_KEPT_MAX (64 * 1024)  /* a kept in-memory copy up to this is made at once */
struct relay_stream;
struct spool;
/*
 * relay_stream_new - the text of queued message QID. From KEPT (the scheduler's
 * copy, when at most RELAY_KEPT_MAX bytes) the whole text is made at once and
 * CB is not called; else the file is opened and the first chunk made on IO, and
 * CB(ARG) runs on the loop when that is done, as after every relay_stream_fill.
 * NULL when out of memory.
 */
struct relay_stream *relay_stream_new(struct spool *spool, struct workers *io, const char *qid,
                                      size_t limit, struct evbuffer *kept, void (*cb)(void *arg),
                                      void *arg);
/* relay_stream_fill - make the next chunk on the worker (nothing when busy, failed or all made). */
void relay_stream_fill(struct relay_stream *st);
int relay_stream_busy(const struct relay_stream *st);
/* relay_stream_error - 0, or the errno of opening or reading the file. */
int relay_stream_error(const struct relay_stream *st);
/* relay_stream_size - the stored message's size (known once the first chunk is made). */
long long relay_stream_size(const struct relay_stream *st);
/* relay_stream_used - text was taken: another transaction needs a new stream. */
int relay_stream_used(const struct relay_stream *st);
/* relay_stream_broken - a line was broken at smtp_line_length_limit so far. */
int relay_stream_broken(const struct relay_stream *st);
/* relay_stream_ready - bytes of text ready to be taken (0 while a worker makes more). */
size_t relay_stream_ready(const struct relay_stream *st);
/* relay_stream_take - move the ready text to OUT; 1 when that included the final dot. */
int relay_stream_take(struct relay_stream *st, struct evbuffer *out);
/* relay_stream_free - close the file and free; deferred to the completion while busy. NULL ok. */
void relay_stream_free(struct relay_stream *st);

/* --- DSN messages (relay_notify.c) --- */
struct relay_dsn_rcpt {
    const char *addr;   /* Final-Recipient */
    const char *orcpt;  /* "rfc822;addr" or "" */
    const char *action; /* failed, relayed, delivered, expanded */
    const char *status; /* 5.1.1 */
    const char *remote; /* Remote-MTA host or "" */
    const char *diag;   /* Diagnostic-Code text ("550 5.1.1 ...") or "" */
};
struct relay_dsn_info {
    const char *hostname;
    const char *queue_id;
    const char *sender;
    const char *envid;
    long long arrival_us;
    long long now;        /* unix seconds (Date:) */
    const char *boundary; /* unique MIME boundary */
    const char *msgid;    /* Message-Id of the notification, without <> */
    int success;          /* 1: delivery notification, 0: non-delivery */
    int hdrs_only;        /* return only the original headers */
};
/*
 * relay_dsn_build - the whole notification (CRLF lines) into OUT: a
 * multipart/report; report-type=delivery-status with the human text, the
 * message/delivery-status part and the original message (or its headers).
 */
void relay_dsn_build(const struct relay_dsn_info *info, const struct relay_dsn_rcpt *r, int n,
                     const char *orig, size_t origlen, struct evbuffer *out);

/*
 * relay_notify_begin - queue the notifications RJ's results call for (success
 * first, then the bounce), each built on a worker and committed through the
 * spool; then DONE(R, RJ). A bounce that cannot be queued turns its recipients
 * back to deferred, so that it is not lost.
 */
struct relay_job;
void relay_notify_begin(struct relay *r, struct relay_job *rj,
                        void (*done)(struct relay *r, struct relay_job *rj));

/*
 * The next hop of one destination (relay_route.c): MX hosts in order, then each
 * host's addresses. relay_route_start and relay_route_next answer through CB,
 * at once or after a DNS query: RELAY_ROUTE_CONNECT (relay_route_addr is the
 * address to try), RELAY_ROUTE_HOST_FAILED (a host has no address: RES/DSN/TEXT
 * say why; call relay_route_next), RELAY_ROUTE_FAILED (no route: every
 * recipient gets RES/DSN/TEXT). A route freed while a query is out is freed
 * by the query's completion, and its owner hears nothing more.
 */
struct relay_route;
struct sockaddr_storage;
enum relay_route_event { RELAY_ROUTE_CONNECT, RELAY_ROUTE_HOST_FAILED, RELAY_ROUTE_FAILED };
typedef void (*relay_route_cb)(void *arg, enum relay_route_event ev, enum sched_class cls,
                               const char *dsn, const char *text);
struct relay_route *relay_route_new(struct dns *dns, enum sched_dest_kind kind, const char *dest,
                                    relay_route_cb cb, void *arg);
/* relay_route_start - from the first host again (MX lookup unless the next hop is [host]). */
void relay_route_start(struct relay_route *rt);
/* relay_route_next - the next address or MX host: 1 (CB follows), or 0 when none is left. */
int relay_route_next(struct relay_route *rt);
/* relay_route_host - the host being tried (an MX name, the next-hop host or the domain). */
const char *relay_route_host(const struct relay_route *rt);
/* relay_route_nexthop - the next-hop domain (or next-hop host) the route was made for. */
const char *relay_route_nexthop(const struct relay_route *rt);
/* relay_route_mx_secure - the MX hosts came from a DNSSEC-validated answer (AD bit trusted). */
int relay_route_mx_secure(const struct relay_route *rt);
int relay_route_port(const struct relay_route *rt);
/* relay_route_addr - the address to connect to, port set, into SS and IP; its length. */
socklen_t relay_route_addr(const struct relay_route *rt, struct sockaddr_storage *ss, char *ip,
                           size_t iplen);
void relay_route_free(struct relay_route *rt);

/* --- the engine --- */
struct relay_conn;

struct relay_dest {
    char *name;
    int nconn;
    LIST_ENTRY(relay_dest) entry; /* relay->dests: only destinations with connections */
};

struct relay {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct sched *sched;
    struct dns *dns;
    struct workers *io;
    SSL_CTX *tls;          /* outbound client context: made at the first STARTTLS (relay_tls_ctx) */
    int tls_wanted;        /* smtp_tls_security_level is not "none" */
    int tls_failed;        /* creating it failed once: plaintext from then on */
    struct relay_sts *sts; /* MTA-STS policies known (relay_mtasts.c), or NULL */
    TAILQ_HEAD(, relay_conn) conns;
    LIST_HEAD(, relay_dest) dests;
    int nconn;
    unsigned long long conn_seq;
    const char *myhostname;
    int stopping;               /* relay_stop or relay_free: no new jobs */
    int freeing;                /* relay_free: the loop no longer runs */
    void (*drained)(void *arg); /* relay_stop's callback, until it ran */
    void *drained_arg;
    struct event *drain_ev; /* relay_stop's time limit */
    struct relay_token *tok;
    struct event *kick_ev;
    /* what the clients hand back up (set by relay_new) */
    void (*job_ended)(struct relay *r, struct relay_job *rj); /* results in: settle, release */
    void (*conn_gone)(struct relay *r);                       /* a connection was freed */
    TAILQ_HEAD(, relay_job) notifying; /* jobs whose notifications are being made */
};

/* Outlives the relay while spool commits that name it are in flight. */
struct relay_token {
    struct relay *r; /* NULL once freed */
    int refs;
};

/* Per job recipient: what happened, for the log and for notifications. */
struct relay_rinfo {
    char dsn[16];
    char *diag;   /* server reply or our reason */
    char *remote; /* remote host name, "" when none */
    int notified; /* DSN pass-through: the next hop takes over success notification */
};

/* One job in delivery (relay side of a sched_job). */
struct relay_job {
    struct sched_job *job;
    struct relay_rinfo *ri;
    long long conn_us;       /* the session was ready for this job (delays= c ends) */
    long log_pid;            /* pseudo-pid of the delivering connection (log_new_pid) */
    struct relay_stream *st; /* the message text, while a connection works on the job */
    long long msg_size;
    int body_err;     /* errno of opening the message or making its first chunk; -1 while loading */
    int load_started; /* relay_conn_load ran (a new connection loads once it is up) */
    int broken_logged; /* the "breaking line" record was written */
    int accepted;      /* recipients accepted by RCPT in this transaction */
    int notify_stage;  /* 0: none yet, 1: success DSN done, 2: bounce done */
    void (*notify_done)(struct relay *r, struct relay_job *rj); /* relay_notify_begin's */
    int job_nrcpt_saved;
    int listed;                    /* on relay->notifying */
    TAILQ_ENTRY(relay_job) nentry; /* relay->notifying while notifications are made */
};

/*
 * One outbound connection, shared by relay_client.c (the session: it owns the
 * struct) and relay_xact.c (the transaction on it, below the session).
 */
#include <netinet/in.h>

enum relay_state {
    RS_DNS,
    RS_CONNECT,
    RS_GREETING,
    RS_EHLO,
    RS_HELO,
    RS_STARTTLS,
    RS_TLS,
    RS_READY, /* session up, waiting for the message to be loaded */
    RS_XACT,  /* MAIL/RCPT/DATA replies */
    RS_BODY,  /* the message goes out, chunk by chunk */
    RS_DOT,   /* reply to the end of data */
    RS_DOT_DISCARD,
    RS_RSET,
    RS_IDLE,
    RS_QUIT,
};

#define EXP_MAIL (-1)
#define EXP_DATA (-2)

struct relay_conn {
    struct relay *r;
    unsigned long long id;
    TAILQ_ENTRY(relay_conn) entry; /* relay->conns */
    struct relay_dest *dest;
    char destname[256];
    enum sched_dest_kind kind;
    struct relay_job *rj;
    enum relay_state state;
    struct relay_route *route; /* next hop: hosts and addresses in the order to try */
    /* the session */
    struct bufferevent *bev;
    char ip[INET6_ADDRSTRLEN];
    char relay_field[400]; /* host[ip]:port, or "none" */
    long log_pid;          /* this connection's pseudo-pid in the maillog */
    int ext;
    long long size_limit;
    int tls_on;
    int tls_level;               /* this host's RELAY_TLS_* (relay_tlspolicy.c decides) */
    struct relay_tlspol *tlspol; /* per-host DANE/MTA-STS state (relay_tlspolicy.c), or NULL */
    struct relay_reply reply;
    int reused, retried, need_rset;
    long long connected_us; /* the session began (smtp_connection_reuse_time_limit) */
    long reuses;            /* transactions after the first (smtp_connection_reuse_count_limit) */
    struct event *idle_ev;
    /* the transaction */
    char **cmds;
    int *exp;
    int ncmd, nsent, nreplied;
    int mail_failed;
    struct relay_reply mail_reply;
    char *accepted; /* per job recipient */
    /* the last session failure, for the recipients when no host is left */
    char last_err[RELAY_REPLY_MAX + 200];
    char last_dsn[16];
    int last_perm;
    /* what the transaction hands back up to the session (relay_client.c sets them) */
    void (*xact_done)(struct relay_conn *c); /* over: the next job, or idle */
    void (*fail)(struct relay_conn *c, const char *text, const char *dsn, int perm);
};

/*
 * Outbound TLS policy (relay_tlspolicy.c): smtp_tls_security_level with Postfix's
 * meanings, decided per MX host before the connection (DANE TLSA lookups), applied
 * to the SSL before the handshake (names, CAs, TLSA records) and checked after it.
 */
enum relay_tls_level {
    RELAY_TLS_NONE,
    RELAY_TLS_MAY,
    RELAY_TLS_ENCRYPT,
    RELAY_TLS_DANE,
    RELAY_TLS_VERIFY,
    RELAY_TLS_SECURE,
};
struct relay_tlspol;
/* relay_tls_ctx - the outbound context, made at the first need; NULL when TLS is off or broken. */
SSL_CTX *relay_tls_ctx(struct relay *r);
/* relay_tls_prepare - decide C's level for the host about to be tried, then DONE(C) (at once or
 * after a DNS query), or C->fail with the reason. */
void relay_tls_prepare(struct relay_conn *c, void (*done)(struct relay_conn *c));
/* relay_tls_required - the level does not allow plaintext (encrypt and above). */
int relay_tls_required(const struct relay_conn *c);
/* relay_tls_ssl_new - an SSL for C's STARTTLS with the level's names, CAs and TLSA records. */
struct ssl_st *relay_tls_ssl_new(struct relay_conn *c);
/* relay_tls_check - after the handshake: 0 when the level is met (*VERIFIED: the peer was
 * authenticated), else -1 with Postfix's reason in WHY. */
int relay_tls_check(struct relay_conn *c, struct ssl_st *ssl, int *verified, char *why, size_t len);
/* relay_tls_conn_free - C goes: forget its policy state (a query in flight ends quietly). */
void relay_tls_conn_free(struct relay_conn *c);

/* relay_xact.c: called by the session */
void relay_conn_timeout(struct relay_conn *c, long read_s, long write_s);
void relay_conn_send(struct relay_conn *c, const char *line);
void relay_xact_clear(struct relay_conn *c);
struct relay_job *relay_job_new(struct relay_conn *c, struct sched_job *job, int load_now);
void relay_all_results(struct relay_conn *c, enum sched_class cls, const char *dsn,
                       const char *text);
void relay_conn_said(struct relay_conn *c, const struct relay_reply *rp, const char *what,
                     char *buf, size_t len);
/* relay_conn_ready - the session is up: start the transaction once the message is loaded. */
void relay_conn_ready(struct relay_conn *c);
void relay_conn_write_cb(struct bufferevent *bev, void *arg);
void relay_conn_accepted_results(struct relay_conn *c, const struct relay_reply *rp,
                                 const char *what);
void relay_conn_xact_reply(struct relay_conn *c, const struct relay_reply *rp);

/* relay_client.c: called by relay.c */
struct relay_conn *relay_conn_new(struct relay *r, struct sched_job *job);
void relay_conn_free(struct relay_conn *c);
int relay_conn_idle_take(
    struct relay_conn *c); /* try to reuse an idle connection; 1 if it took a job */
int relay_conn_is_idle(const struct relay_conn *c);
struct relay_conn *relay_conn_next(const struct relay_conn *c);
/* relay_conn_job - the job the connection works on, NULL when none. */
struct relay_job *relay_conn_job(const struct relay_conn *c);
/* relay_conn_awaits_dot - the message and its final dot went out, the reply has not come. */
int relay_conn_awaits_dot(const struct relay_conn *c);

/* relay.c: the glue, above the clients (which call up only through r->job_ended/conn_gone) */
int relay_can_cb(void *arg, const char *dest);
int relay_dest_limit(const struct relay *r);
void relay_kick(void *arg);

/* relay_xact.c: called by relay_client.c */
/* relay_result - report CLS for job recipient I to the scheduler and log its decision. */
void relay_result(struct relay *r, struct relay_job *rj, int i, enum sched_class cls,
                  const char *dsn, const char *relay_field, const char *remote,
                  const char *status_text, const char *diag);

#endif
