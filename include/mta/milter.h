/*
 * milter.h - the Sendmail milter protocol client (version 6, as Postfix's milter8 speaks
 * it): one connection per milter per SMTP session (or per local submission), on
 * bufferevents, never blocking the loop. Each event (connect, helo, mail, rcpt, data, the
 * message content, end of message) goes to the configured milters in order; the caller
 * gets one verdict per event through a callback and, at the end of the message, the
 * modifications the milters asked for (applied by the caller before the commit).
 * A milter that cannot be reached, times out or breaks the protocol is logged in Postfix's
 * words and then treated by milter_default_action.
 * Not here: SMTP replies and the spool (the caller applies verdicts and edits).
 */
#ifndef MTA_MILTER_H
#define MTA_MILTER_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct conf;

/* the macro stages of Postfix's milter_*_macros (and of SMFIR_SETSYMLIST) */
enum milter_stage {
    MILTER_STAGE_CONNECT,
    MILTER_STAGE_HELO,
    MILTER_STAGE_MAIL,
    MILTER_STAGE_RCPT,
    MILTER_STAGE_DATA,
    MILTER_STAGE_EOM,
    MILTER_STAGE_EOH,
    MILTER_STAGE_COUNT
};

enum milter_verdict {
    MILTER_CONTINUE, /* go on (also: accepted, or a milter skipped by milter_default_action) */
    MILTER_REJECT,   /* refuse with reply (5xx, or the milter's SMFIR_REPLYCODE) */
    MILTER_TEMPFAIL, /* refuse with reply (4xx) */
    MILTER_DISCARD,  /* accept the message and throw it away (message stages only) */
    MILTER_SHUTDOWN, /* 421 and close */
};

/* A header/recipient/sender change, in the order the milters asked for it. */
enum milter_mod_type {
    MILTER_MOD_ADDHDR, /* append header NAME: VALUE */
    MILTER_MOD_INSHDR, /* insert before the INDEX-th header (0: first) */
    MILTER_MOD_CHGHDR, /* change the INDEX-th (1-based) NAME header; empty VALUE: delete */
    MILTER_MOD_ADDRCPT,
    MILTER_MOD_DELRCPT,
    MILTER_MOD_CHGFROM,
};

struct milter_mod {
    enum milter_mod_type type;
    long index;
    char *name;  /* header name, or the address (ADDRCPT, DELRCPT, CHGFROM) */
    char *value; /* header value (folded lines with \n), or ESMTP args ("" if none) */
};

struct milter_result {
    enum milter_verdict verdict;
    char reply[1024]; /* the SMTP reply for REJECT/TEMPFAIL/SHUTDOWN (may be multi-line) */
    /* end of message only */
    int quarantine; /* SMFIR_QUARANTINE: put the message on hold */
    char quarantine_why[128];
    struct milter_mod *mods;
    int nmods;
    struct evbuffer *body; /* SMFIR_REPLBODY: the new body, NULL when unchanged */
    long long hdr_len;     /* bytes of the header block seen (incl. the empty line) */
    struct evbuffer *hdrs; /* the header block after the header mods (NULL: unchanged) */
};

/* milter_defaults - the configured milter set: NULL when LIST is empty; NULL and *ERR when
 * LIST is malformed (inet:host:port, unix:/path). */
struct milter_set;
struct milter_set *milter_set_new(const struct conf *c, const char *list, char **err);
void milter_set_free(struct milter_set *ms);
/* milter_check - validate the milter settings of C (mtactl check, start-up). */
int milter_check(const struct conf *c, char **err);
/* milter_list_check / milter_action_check - the syntax of smtpd_milters (and
 * non_smtpd_milters) and of milter_default_action for the configuration checks: 0, or -1
 * with the reason in WHY. */
int milter_list_check(const char *list, char *why, size_t n);
int milter_action_check(const char *v, char *why, size_t n);

/* MACRO(arg, name) - the value of macro NAME ("i", "{client_addr}"), NULL when unknown. */
typedef const char *(*milter_macro_fn)(void *arg, const char *name);
/* DONE(arg, result) - the verdict of an event (RESULT lives until the next call). */
typedef void (*milter_done_fn)(void *arg, const struct milter_result *r);
/* NEED(arg, off) - the content phase wants the message bytes from OFF: answer with
 * milter_content (possibly later). */
typedef void (*milter_need_fn)(void *arg, long long off);

struct milter_sess;
/* milter_sess_new - a session of SET for one SMTP session; LOG_ID names it in the log. */
struct milter_sess *milter_sess_new(struct event_base *base, struct milter_set *set,
                                    milter_macro_fn macro, void *macro_arg);
/* milter_sess_free - send QUIT where connected, close, free (no callback runs after). */
void milter_sess_free(struct milter_sess *s);
/* milter_sess_set_queue_id - the queue ID for log lines of the message stages. */
void milter_sess_set_queue_id(struct milter_sess *s, const char *id);

/* The events. Each runs DONE exactly once, later (never from inside the call). */
void milter_connect(struct milter_sess *s, const char *host, const char *addr, int port,
                    milter_done_fn done, void *arg);
void milter_helo(struct milter_sess *s, const char *helo, milter_done_fn done, void *arg);
/* ARGV: "<addr>" then the ESMTP parameters; NULL-terminated. */
void milter_mail(struct milter_sess *s, char *const *argv, milter_done_fn done, void *arg);
void milter_rcpt(struct milter_sess *s, char *const *argv, milter_done_fn done, void *arg);
void milter_data(struct milter_sess *s, milter_done_fn done, void *arg);
/* milter_message - the content and end of message: NEED asks for bytes (CRLF lines, as
 * stored); DONE has the verdict and the modifications. HDR_MAX bounds the header block
 * kept for header edits, BODY_MAX a replacement body. */
void milter_message(struct milter_sess *s, long long size, size_t hdr_max, long long body_max,
                    milter_need_fn need, milter_done_fn done, void *arg);
/* milter_content - the bytes asked for by NEED (BUF drained); an empty BUF: the end. */
void milter_content(struct milter_sess *s, struct evbuffer *buf);
/* milter_abort - the transaction ends without a message (RSET, error): SMFIC_ABORT. Also
 * cancels an event in flight (its DONE will not run). */
void milter_abort(struct milter_sess *s);
/* milter_active - 1 when any milter still wants events of this session. */
int milter_active(const struct milter_sess *s);

#endif
