/*
 * milter_int.h - private to the milter client (milter.c: sessions and events,
 * milter_proto.c: the wire format, the configured set, the header block edits).
 */
#ifndef MTA_MILTER_INT_H
#define MTA_MILTER_INT_H

#include <stdint.h>

#include "mta/milter.h"

struct bufferevent;
struct event;

/* commands (MTA -> filter) */
#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'

/* replies (filter -> MTA) */
#define SMFIR_ADDRCPT '+'
#define SMFIR_DELRCPT '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_ACCEPT 'a'
#define SMFIR_REPLBODY 'b'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_CHGFROM 'e'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_PROGRESS 'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

/* actions the filter may take (SMFIF_*) */
#define SMFIF_ALL                                                                                  \
    0x1ffu /* ADDHDRS CHGBODY ADDRCPT DELRCPT CHGHDRS QUARANTINE CHGFROM                           \
            * ADDRCPT_PAR SETSYMLIST: all of them are supported */
/* protocol steps (SMFIP_*) */
#define SMFIP_NOCONNECT 0x1u
#define SMFIP_NOHELO 0x2u
#define SMFIP_NOMAIL 0x4u
#define SMFIP_NORCPT 0x8u
#define SMFIP_NOBODY 0x10u
#define SMFIP_NOHDRS 0x20u
#define SMFIP_NOEOH 0x40u
#define SMFIP_NR_HDR 0x80u
#define SMFIP_NOUNKNOWN 0x100u
#define SMFIP_NODATA 0x200u
#define SMFIP_SKIP 0x400u
#define SMFIP_NR_CONN 0x1000u
#define SMFIP_NR_HELO 0x2000u
#define SMFIP_NR_MAIL 0x4000u
#define SMFIP_NR_RCPT 0x8000u
#define SMFIP_NR_DATA 0x10000u
#define SMFIP_NR_EOH 0x40000u
#define SMFIP_NR_BODY 0x80000u
#define SMFIP_HDR_LEADSPC 0x100000u
/* what we offer with version 6 (Postfix's V6 mask without RCPT_REJ and the unknown command,
 * which we never send) */
#define MILTER_V6_OFFER 0x1f77ffu

#define MILTER_CHUNK 65535           /* body bytes per SMFIC_BODY, as Postfix */
#define MILTER_PKT_MAX (1024 * 1024) /* the largest reply packet taken */

struct milter_spec {
    char *name; /* as configured: inet:host:port or unix:/path */
    int unix_path;
    char host[64];
    int port;
    char path[108];
};

enum milter_defact { MILTER_DEF_TEMPFAIL, MILTER_DEF_ACCEPT, MILTER_DEF_REJECT };

struct milter_set {
    struct milter_spec *v;
    int n;
    enum milter_defact defact;
    int conn_timeout, cmd_timeout, msg_timeout, version;
    char *macros[MILTER_STAGE_COUNT];
};

enum mc_state {
    MC_NEW,         /* not connected yet */
    MC_CONNECTING,  /* TCP/UNIX connect in progress */
    MC_NEGOTIATING, /* SMFIC_OPTNEG sent */
    MC_READY,       /* takes events */
    MC_ACCEPT_MSG,  /* SMFIR_ACCEPT for this message: no more events until its end */
    MC_ACCEPT_CON,  /* SMFIR_ACCEPT at connect/helo: no more events in this session */
    MC_REJECT_CON,  /* refused the connection: every event gets its reply */
    MC_ERROR,       /* failed: milter_default_action from now on */
};

struct milter_conn {
    struct milter_sess *s;
    const struct milter_spec *spec;
    struct bufferevent *bev;
    enum mc_state state;
    uint32_t pflags, actions, version;
    char *symlist[MILTER_STAGE_COUNT]; /* SMFIR_SETSYMLIST overrides */
    enum milter_verdict verdict;       /* REJECT_CON, ERROR: the answer to every event */
    char reply[1024];
    int skip_body; /* SMFIR_SKIP */
};

enum milter_phase { PH_HDR, PH_EOH, PH_BODY, PH_EOB, PH_WAIT_EOM };

struct milter_sess {
    struct event_base *base;
    struct milter_set *set;
    milter_macro_fn macro;
    void *macro_arg;
    struct milter_conn *c;
    int n;
    struct event *timer, *done_ev;
    char qid[32];
    /* the event in flight */
    int busy, cur, waiting, wait_write;
    char cmd;
    int stage;
    uint32_t nosend, noreply;
    struct evbuffer *payload;
    milter_done_fn done;
    void *arg;
    struct milter_result res;
    /* the message */
    int msg;
    milter_need_fn need;
    size_t hdr_max;
    long long body_max, off;
    struct evbuffer *cbuf, *hdrblock, *repl;
    int eof, asked, phase, have_hdrs;
    long long hdr_len;
};

/* --- milter.c --- */
/* milter_step - take the event in flight as far as it goes without waiting. */
void milter_step(struct milter_sess *s);
/* milter_warn - log "warning: ..." (Postfix's words), then C fails: milter_default_action. */
void milter_warn(struct milter_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* milter_cmd_name - "SMFIC_MAIL" etc. for the log. */
const char *milter_cmd_name(char cmd);
/* milter_close - drop C's connection. */
void milter_close(struct milter_conn *c);

/* --- milter_proto.c --- */
/* milter_pkt - append a packet CMD with the N strings/blobs of PARTS to OUT. */
void milter_pkt_begin(struct evbuffer *out, size_t *lenpos);
void milter_pkt_end(struct evbuffer *out, size_t lenpos);
/* milter_get32 - the network-order 32-bit number at P. */
uint32_t milter_get32(const unsigned char *p);
/* milter_str - the NUL-terminated string at *P within END, advancing *P; NULL if none. */
const char *milter_str(const unsigned char **p, const unsigned char *end);
/* milter_valid_reply - 1 when TEXT is an SMTP reply "4xx"/"5xx" (lines joined by CRLF). */
int milter_valid_reply(const char *text);
/* milter_unpercent - Sendmail's doubled '%' back to one, single ones removed, in place. */
void milter_unpercent(char *text);
/* milter_edit_headers - the header block HDRS (raw, CRLF) with MODS applied, into OUT. */
int milter_edit_headers(struct evbuffer *hdrs, const struct milter_mod *mods, int nmods,
                        struct evbuffer *out);
/* milter_lf_to_crlf - OUT gets IN with every bare LF made CRLF. */
void milter_lf_to_crlf(struct evbuffer *in, struct evbuffer *out);

#endif
