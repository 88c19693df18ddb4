/*
 * smtpd_int.h - the private structs of the SMTP intake: the server (listeners,
 * session registry, limits), the session (one connection: HELO, auth, error
 * counts, I/O) and the transaction (sender, recipients, body, error bits).
 * RSET, HELO and EHLO reset only the transaction. Not for other modules.
 */
#ifndef SMTPD_INT_H
#define SMTPD_INT_H

#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "mta/htab.h"
#include "mta/spool.h"
#include "smtpd_addr.h"
#include "smtpd_cmd.h"
#include "smtpd_data.h"

struct event_base;
struct event;
struct evbuffer;
struct bufferevent;
struct evconnlistener;
struct conf;
struct cidr_list;
struct tls_ctx;
struct workers;

struct smtpd_session;

/* The sessions from one client address (smtpd_client_connection_count_limit). */
struct smtpd_client {
    struct htab_node node; /* in srv->by_ip */
    unsigned char key[16]; /* the address, IPv4 as ::ffff:a.b.c.d */
    long count;            /* its live sessions; the entry goes with the last one */
};

TAILQ_HEAD(smtpd_sessions, smtpd_session);

struct smtpd {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct cidr_list *trusted;
    struct evconnlistener *lev[3]; /* smtp, smtps, submission (smtpd_listen_kind) */
    int nlev;
    struct rlimit_accept *pause; /* accept() back-off of lev[] (smtpd_listen.c) */
    char hostname[256];
    int barelf;                     /* enum smtpd_barelf from smtpd_forbid_bare_newline */
    struct htab by_id;              /* live sessions by id (smtpd_state_find) */
    struct htab by_ip;              /* struct smtpd_client by address */
    struct smtpd_sessions sessions; /* live sessions, newest first */
    size_t nsessions;
    uint64_t next_id;
    struct smtpd_sessions grave; /* closed, freed by the reaper outside their callbacks */
    struct event *reaper;
    int stopping;
    void (*drained)(void *arg);
    void *drained_arg;
    /* The session layer's continuation, handed down by smtpd_new: an async completion in a
     * file below the session (a commit, a SASL step) lets the session go on reading through
     * it, never by calling up into smtpd_session.c. FLUSH: write the replies now. */
    void (*resume)(struct smtpd_session *s, int flush);
    /* PROXY headers awaited (smtpd_proxy.c); NULL: smtpd_upstream_proxy_protocol is empty */
    struct smtpd_proxy *proxy;
    int commits;           /* commits in flight: smtpd_free waits for them (spool_drain) */
    struct tls_ctx *tls;   /* NULL: no STARTTLS/SMTPS; swapped on reload (smtpd_set_tls) */
    int sasl;              /* SMTP AUTH is enabled (Cyrus SASL initialised) */
    char sasl_mechs[256];  /* the AUTH line of EHLO, e.g. "PLAIN LOGIN" */
    struct workers *saslw; /* threads that run the SASL password checks (smtpd_sasl.c) */
    /* the DKIM signer (smtpd_dkim.c); NULL: dkim_sign = no */
    struct dkim_signer *dkim;
    /* smtpd_milters; NULL: none (smtpd_milter.c) */
    struct milter_set *milters;
};

struct smtpd_txn {
    char *sender; /* "" for <> */
    struct smtpd_mail_params mp;
    struct spool_rcpt *rcpt;
    int nrcpt, rcpt_cap;
    struct spool_msg *msg; /* from the first accepted RCPT */
    char id[SPOOL_ID_SIZE];
    struct smtpd_body body;
    int body_active;
    struct evbuffer *buf; /* stored bytes on their way to spool_msg_append */
    long long stored;     /* bytes appended to the message */
    int nospace;          /* the spool refused the body: queue_minfree (452 4.3.1) */
    int bdat;             /* BDAT used: DATA is refused */
    long long bdat_left;
    long long bdat_chunk; /* size of the current chunk, for its 250 reply */
    int bdat_last;
    char msgid_line[320], date_line[128];
};

/*
 * The session's phase: one value, changed only by smtpd_enter_state (smtpd_state.c), which
 * logs the change (SMTPD_DEBUG_STATES builds) and sets the phase's timeout. The command table
 * (smtpd_proto.c) says in which phases each command proceeds and what it answers in the
 * others. What is not a phase stays a boolean of the session: TLS on, authenticated, ESMTP,
 * reading paused (error sleep, spool backpressure), output blocked.
 */
enum smtpd_state {
    SMTPD_STATE_CONNECT,   /* banner sent (or queued under TLS): no HELO/EHLO yet */
    SMTPD_STATE_TLS,       /* TLS handshake: SMTPS, or after STARTTLS's 220 */
    SMTPD_STATE_HELO,      /* HELO/EHLO given, no transaction */
    SMTPD_STATE_AUTH,      /* an AUTH exchange: input lines are SASL responses */
    SMTPD_STATE_AUTH_WAIT, /* a SASL step runs on a worker: not reading (the job owns the conn) */
    SMTPD_STATE_MAIL,      /* MAIL accepted, no recipient yet */
    SMTPD_STATE_RCPT,      /* at least one recipient (also between BDAT chunks) */
    SMTPD_STATE_DATA,      /* reading a DATA body */
    SMTPD_STATE_BDAT,      /* reading a BDAT chunk */
    SMTPD_STATE_COMMIT,    /* the commit (or a refused body's removal) is in flight: not reading */
    SMTPD_STATE_CLOSING,   /* the final reply is chosen: flush it, then close */
    SMTPD_STATE_DEAD,      /* closed: in the grave until the reaper frees it */
    SMTPD_STATE_COUNT
};

/* SMTPD_S - the bit of a phase in a set of phases (the command table's columns). */
#define SMTPD_S(name) (1u << SMTPD_STATE_##name)

struct smtpd_session {
    uint64_t id;
    long log_pid; /* the pseudo-pid of this session's smtpd lines (log_new_pid) */
    struct smtpd *srv;
    TAILQ_ENTRY(smtpd_session) link; /* in srv->sessions, then in srv->grave */
    struct htab_node id_node;        /* in srv->by_id while live */
    struct smtpd_client *client;     /* its address's count */
    struct bufferevent *bev;
    struct evbuffer *out;   /* replies of the current batch, flushed together */
    struct event *delay_ev; /* error sleep and spool backpressure */
    unsigned char ipkey[16];
    char addr[INET6_ADDRSTRLEN];
    int port;         /* the client's TCP port (behind a balancer: its PROXY header's) */
    const char *name; /* "unknown": no reverse DNS */
    int trusted, authenticated, tls;
    int submission;         /* came in on submission_port: STARTTLS, then AUTH, before MAIL */
    enum smtpd_state state; /* set at accept, then only by smtpd_enter_state */
    int timeout;            /* the read/write timeout in force on bev, seconds */
    char *helo;
    int esmtp;
    int errors; /* client errors; forgiven when a message is queued (Postfix) */
    int junk;   /* junk commands (SMTPD_CMDF_JUNK); reset when a message is queued */
    int cnt_ok[SMTPD_CMD_COUNT], cnt_all[SMTPD_CMD_COUNT];
    int cur_cmd;       /* the command whose success is counted by its reply, -1 none */
    const char *where; /* for "lost connection after X" */
    struct smtpd_txn *tx;
    long long bdat_discard;  /* bytes of a refused BDAT chunk still to skip */
    long long bdat_arg_size; /* BDAT's parsed count: a refused chunk is still skipped */
    int bdat_arg_last;       /* BDAT's parsed LAST */
    int skip_line;           /* discarding the rest of an overlong command line */
    int delay_pending;       /* an error reply must be delayed (soft error limit) */
    int paused;              /* waiting on delay_ev */
    int wait_write;          /* output above the buffer limit */
    char *line;              /* command line buffer (line_length_limit + 1) */
    void *tls_next;          /* STARTTLS answered: the SSL the session layers on next */
    char tls_info[128];      /* "TLSv1.3 with cipher ... (256/256 bits)" once established */
    void *sasl_conn;         /* sasl_conn_t of an AUTH exchange (smtpd_sasl.c) */
    char sasl_method[32];
    char *sasl_username; /* after a successful AUTH */
    int sasl_login;      /* LOGIN: 1 user name asked, 2 empty name answered (smtpd_sasl.c) */
    /* smtpd_milters of this session (smtpd_milter.c); milter_wait: an event is in flight,
     * read nothing until it is answered */
    struct smtpd_milter *mil;
    int milter_wait;
};

/*
 * Calls run one way: listen (the server) -> session (I/O, lines, bodies) -> proto (the
 * command table) -> txn, sasl, tls, policy, reply -> state, and the pure data, addr, cmd,
 * map. A file below reaches the session only through srv->resume.
 */

/* smtpd_session.c */
void smtpd_session_accept(struct smtpd *srv, int fd, const struct sockaddr *sa, int salen,
                          int implicit_tls);
void smtpd_session_close(struct smtpd_session *s);
void smtpd_session_resume(struct smtpd_session *s, int flush);
void smtpd_session_free_all(struct smtpd *srv);
struct event *smtpd_session_reaper_new(struct smtpd *srv);

/* smtpd_state.c */
/* smtpd_enter_state - the one place the phase changes: log it, set its timeout. CLOSING and
 * DEAD are final: a later change to an earlier phase is ignored. */
void smtpd_enter_state(struct smtpd_session *s, enum smtpd_state state);
/* smtpd_state_idle - the phase between transactions: HELO once the client gave one. */
enum smtpd_state smtpd_state_idle(const struct smtpd_session *s);
const char *smtpd_state_name(enum smtpd_state state);
/* smtpd_state_final - the session is closing or closed: its last reply is chosen. */
int smtpd_state_final(const struct smtpd_session *s);
/* smtpd_state_find - a live session by id (async completions), NULL when it is gone. */
struct smtpd_session *smtpd_state_find(struct smtpd *srv, uint64_t id);
/* smtpd_state_id_hash - the hash of a session id in srv->by_id. */
size_t smtpd_state_id_hash(uint64_t id);

/* smtpd_reply.c */
void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtpd_vreply(struct smtpd_session *s, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* smtpd_reply_log_reject - the reject line alone, in log_whatsup form (replies differ). */
void smtpd_reply_log_reject(struct smtpd_session *s, const char *cmd, const char *sender,
                            const char *rcpt, const char *text);
void smtpd_reply_reject(struct smtpd_session *s, const char *cmd, const char *rcpt, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
/* smtpd_reply_reject_from - a reject at MAIL by a restriction: the log names SENDER, the
 * address of the refused command (Postfix's smtpd_check_mail), as no transaction has it. */
void smtpd_reply_reject_from(struct smtpd_session *s, const char *cmd, const char *sender,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void smtpd_reply_close(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* smtpd_reply_error - count one client error (saturating): the error sleep from
 * smtpd_soft_error_limit on, 421 and close at smtpd_hard_error_limit. */
void smtpd_reply_error(struct smtpd_session *s);
/* smtpd_reply_junk - count one junk command (NOOP, RSET, VRFY, HELP, HELO, EHLO): beyond
 * smtpd_junk_command_limit each one is also an error, as in Postfix. */
void smtpd_reply_junk(struct smtpd_session *s);

/* smtpd_policy.c */
int smtpd_policy_trusted(const struct smtpd *srv, const struct sockaddr *sa);
int smtpd_policy_relay_ok(const struct smtpd_session *s, const char *rcpt);
/* smtpd_policy_submission_mail - submission_port's MAIL before AUTH: refused, logged. */
void smtpd_policy_submission_mail(struct smtpd_session *s, const char *arg);

/* what a listener serves (smtpd_listen_open, smtpd_session_accept) */
enum smtpd_listen_kind {
    SMTPD_LISTEN_SMTP,       /* smtp_port */
    SMTPD_LISTEN_SMTPS,      /* smtps_port: implicit TLS */
    SMTPD_LISTEN_SUBMISSION, /* submission_port: STARTTLS and AUTH required */
};

/* smtpd_proto.c */
void smtpd_proto_dispatch(struct smtpd_session *s, enum smtpd_cmd_id id, const char *arg);
void smtpd_proto_greet(struct smtpd_session *s);
/* smtpd_proto_table_ok - every command has an action and an answer in every phase in which
 * commands are read (checked once at start: a gap would be a fatal error mid-session). */
int smtpd_proto_table_ok(void);
/* smtpd_proto_end_chunk - a BDAT chunk has been read: its 250, or the end of the message. */
void smtpd_proto_end_chunk(struct smtpd_session *s);

/* smtpd_listen.c */
int smtpd_listen_open(struct smtpd *s, long port, int implicit_tls, char **err);

/* smtpd_proxy.c: listen -> proxy -> session. smtpd_proxy_accept starts the session at once
 * when smtpd_upstream_proxy_protocol is empty, else once the PROXY header has named the
 * client (KIND: an smtpd_listen_kind). */
int smtpd_proxy_new(struct smtpd *srv);
void smtpd_proxy_accept(struct smtpd *srv, int fd, const struct sockaddr *sa, int salen, int kind);
void smtpd_proxy_stop(struct smtpd *srv);
void smtpd_proxy_free(struct smtpd *srv);

/* smtpd_tls.c */
struct bufferevent *smtpd_tls_socket_bev(struct smtpd *srv, int fd);
/* smtpd_tls_starttls - STARTTLS accepted (the command table checked it): the 220, and
 * s->tls_next for the session to layer on once the 220 is out. 1 when TLS starts (the
 * caller resets the session); 0 when refused with a reply. */
int smtpd_tls_starttls(struct smtpd_session *s);
/* smtpd_tls_filter - the OpenSSL filter over BEV with SSL (taken); NULL on failure. */
struct bufferevent *smtpd_tls_filter(struct smtpd_session *s, struct bufferevent *bev, void *ssl);
/* smtpd_tls_check_connected - a handshake in progress has finished: apply it now (the
 * CONNECTED event may come after the first read callback). */
void smtpd_tls_check_connected(struct smtpd_session *s);
/* smtpd_tls_handshaking - the session's handshake has neither finished nor failed. */
int smtpd_tls_handshaking(const struct smtpd_session *s);
void smtpd_tls_failed(struct smtpd_session *s);
void smtpd_tls_flush_underlying(struct smtpd_session *s);
/* smtpd_tls_layered - the session's bufferevent is an OpenSSL one (SMTPS, or after STARTTLS,
 * also when its handshake failed): its bytes must go through it. */
int smtpd_tls_layered(const struct smtpd_session *s);

/* smtpd_sasl.c */
int smtpd_sasl_init(struct smtpd *srv, char **err);
int smtpd_sasl_offered(const struct smtpd_session *s);
void smtpd_sasl_auth(struct smtpd_session *s, const char *arg);
void smtpd_sasl_response(struct smtpd_session *s, const char *line);
void smtpd_sasl_reset(struct smtpd_session *s);
void smtpd_sasl_free(struct smtpd *srv);
/* smtpd_sasl_decode - base64 TEXT (an AUTH argument or response line) into a malloc'd *BUF
 * of *LEN bytes; -1 when invalid (then *BUF is NULL). Exposed for tests/fuzz. */
int smtpd_sasl_decode(const char *text, char **buf, unsigned *len);

/* smtpd_txn.c */
struct smtpd_txn *smtpd_txn_new(void);
void smtpd_txn_free(struct smtpd_txn *tx);
void smtpd_txn_reset(struct smtpd_session *s);
const char *smtpd_txn_proto(const struct smtpd_session *s);
int smtpd_txn_add_rcpt(struct smtpd_txn *tx, const char *addr, const struct smtpd_rcpt_params *p);
void smtpd_txn_body_start(struct smtpd_session *s, int dot);
int smtpd_txn_body_push(struct smtpd_session *s);
void smtpd_txn_end(struct smtpd_session *s);

/* smtpd_milter.c: each event function returns 1 when the session now waits for the
 * milters (OK, or on refusal UNDO and the milter's reply, follow), 0 when there is none (the
 * caller goes on at once). */
int smtpd_milter_connect(struct smtpd_session *s, void (*ok)(struct smtpd_session *));
int smtpd_milter_helo(struct smtpd_session *s, const char *helo, void (*ok)(struct smtpd_session *),
                      void (*undo)(struct smtpd_session *));
int smtpd_milter_mail(struct smtpd_session *s, const char *addr, const char *params,
                      void (*ok)(struct smtpd_session *), void (*undo)(struct smtpd_session *));
int smtpd_milter_rcpt(struct smtpd_session *s, const char *addr, const char *params,
                      void (*ok)(struct smtpd_session *), void (*undo)(struct smtpd_session *));
int smtpd_milter_data(struct smtpd_session *s, void (*ok)(struct smtpd_session *));
/* smtpd_milter_eom - end of data: 1 when the milters get the message (NEXT commits it once
 * their changes are applied; a refusal is replied here), 0 when there are none. */
int smtpd_milter_eom(struct smtpd_session *s, void (*next)(struct smtpd_session *s));
/* smtpd_milter_abort - the transaction ends uncommitted (SMFIC_ABORT). */
void smtpd_milter_abort(struct smtpd_session *s);
void smtpd_milter_free(struct smtpd_session *s);

/* smtpd_dkim.c */
/* smtpd_dkim_start - end of data: 1 when the message is being signed (the session waits; NEXT
 * commits it afterwards) or was refused (the reply is given), 0 when it is not to be signed. */
int smtpd_dkim_start(struct smtpd_session *s, void (*next)(struct smtpd_session *s));

#endif
