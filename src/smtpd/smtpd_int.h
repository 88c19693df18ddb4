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
#include <time.h>

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
struct smtpd_map;
struct tls_ctx;
struct workers;

struct smtpd_session;

struct smtpd {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct cidr_list *trusted;
    struct evconnlistener *lev[3]; /* smtp, smtps, submission (smtpd_listen_kind) */
    int nlev;
    struct rlimit_accept *pause; /* accept() back-off of lev[] (smtpd_listen.c) */
    char hostname[256];
    int barelf;                 /* enum smtpd_barelf from smtpd_forbid_bare_newline */
    struct smtpd_map *by_id;    /* session id -> session */
    struct smtpd_map *by_ip;    /* client address -> session count */
    struct smtpd_session *head; /* live sessions */
    size_t nsessions;
    uint64_t next_id;
    struct smtpd_session *grave; /* closed, freed by the reaper outside their callbacks */
    struct event *reaper;
    int stopping;
    void (*drained)(void *arg);
    void *drained_arg;
    int commits;           /* commits in flight (their done callbacks hold this struct) */
    int freed;             /* smtpd_free ran while commits were in flight */
    struct tls_ctx *tls;   /* NULL: no STARTTLS/SMTPS; swapped on reload (smtpd_set_tls) */
    int sasl;              /* SMTP AUTH is enabled (Cyrus SASL initialised) */
    char sasl_mechs[256];  /* the AUTH line of EHLO, e.g. "PLAIN LOGIN" */
    struct workers *saslw; /* threads that run the SASL password checks (smtpd_sasl.c) */
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

enum smtpd_state {
    SMTPD_STATE_CMD,     /* reading commands */
    SMTPD_STATE_DATA,    /* reading a DATA body */
    SMTPD_STATE_BDAT,    /* reading (or discarding) a BDAT chunk */
    SMTPD_STATE_COMMIT,  /* the commit is in flight: not reading */
    SMTPD_STATE_CLOSING, /* last replies are being written */
};

struct smtpd_session {
    uint64_t id;
    long log_pid; /* the pseudo-pid of this session's smtpd lines (log_new_pid) */
    struct smtpd *srv;
    struct smtpd_session *prev, *next;
    struct bufferevent *bev;
    struct evbuffer *out;   /* replies of the current batch, flushed together */
    struct event *delay_ev; /* error sleep and spool backpressure */
    unsigned char ipkey[16];
    char addr[INET6_ADDRSTRLEN];
    const char *name; /* "unknown": no reverse DNS */
    int trusted, authenticated, tls;
    int submission; /* came in on submission_port: STARTTLS, then AUTH, before MAIL */
    enum smtpd_state state;
    char *helo;
    int esmtp;
    int errors; /* client errors; forgiven when a message is queued (Postfix) */
    int junk;   /* junk commands (SMTPD_CMDF_JUNK); reset when a message is queued */
    int cnt_ok[SMTPD_CMD_COUNT], cnt_all[SMTPD_CMD_COUNT];
    int cur_cmd;       /* the command whose success is counted by its reply, -1 none */
    const char *where; /* for "lost connection after X" */
    struct smtpd_txn *tx;
    long long bdat_discard; /* bytes of a refused BDAT chunk still to skip */
    int skip_line;          /* discarding the rest of an overlong command line */
    int delay_pending;      /* an error reply must be delayed (soft error limit) */
    int paused;             /* waiting on delay_ev */
    int wait_write;         /* output above the buffer limit */
    int close_after;        /* close once the replies are flushed */
    int dead;
    char *line;         /* command line buffer (line_length_limit + 1) */
    int tls_pending;    /* a TLS handshake is running (STARTTLS or SMTPS) */
    char tls_info[128]; /* "TLSv1.3 with cipher ... (256/256 bits)" once established */
    void *sasl_conn;    /* sasl_conn_t of an AUTH exchange (smtpd_sasl.c) */
    int sasl_active;    /* input lines are SASL responses, not commands */
    int sasl_busy;      /* a SASL step runs on a worker: not reading (the job owns the conn) */
    char sasl_method[32];
    char *sasl_username; /* after a successful AUTH */
    int sasl_login;      /* LOGIN: 1 user name asked, 2 empty name answered (smtpd_sasl.c) */
};

/* smtpd_session.c */
void smtpd_session_accept(struct smtpd *srv, int fd, const struct sockaddr *sa, int salen,
                          int implicit_tls);
void smtpd_session_setup_bev(struct smtpd_session *s);
struct smtpd_session *smtpd_session_find(struct smtpd *srv, uint64_t id);
void smtpd_session_close(struct smtpd_session *s);
void smtpd_session_kill(struct smtpd_session *s);
void smtpd_session_resume(struct smtpd_session *s);
void smtpd_session_flush(struct smtpd_session *s);
void smtpd_session_process(struct smtpd_session *s);
void smtpd_session_free_all(struct smtpd *srv);
void smtpd_session_check_drained(struct smtpd *srv);
const char *smtpd_session_proto(const struct smtpd_session *s);

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
int smtpd_policy_submission(struct smtpd_session *s, enum smtpd_cmd_id id, const char *arg);

/* what a listener serves (smtpd_listen_open, smtpd_session_accept) */
enum smtpd_listen_kind {
    SMTPD_LISTEN_SMTP,       /* smtp_port */
    SMTPD_LISTEN_SMTPS,      /* smtps_port: implicit TLS */
    SMTPD_LISTEN_SUBMISSION, /* submission_port: STARTTLS and AUTH required */
};

/* smtpd_proto.c */
void smtpd_proto_dispatch(struct smtpd_session *s, enum smtpd_cmd_id id, const char *arg);
void smtpd_proto_greet(struct smtpd_session *s);

/* smtpd_listen.c */
int smtpd_listen_open(struct smtpd *s, long port, int implicit_tls, char **err);

/* smtpd_tls.c */
struct bufferevent *smtpd_tls_socket_bev(struct smtpd *srv, int fd);
void smtpd_tls_starttls(struct smtpd_session *s, const char *arg);
void smtpd_tls_connected(struct smtpd_session *s);
/* smtpd_tls_check_connected - a handshake in progress has finished: apply it now (the
 * CONNECTED event may come after the first read callback). */
void smtpd_tls_check_connected(struct smtpd_session *s);
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
int smtpd_txn_add_rcpt(struct smtpd_txn *tx, const char *addr, const struct smtpd_rcpt_params *p);
void smtpd_txn_body_start(struct smtpd_session *s, int dot);
int smtpd_txn_body_push(struct smtpd_session *s);
void smtpd_txn_end(struct smtpd_session *s);

#endif
