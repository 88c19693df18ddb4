/*
 * smtpd_data.h - the message body machine of DATA and BDAT, and the headers
 * smtpd writes (Received:, Message-Id:, Date:). Pure: bytes in, stored bytes
 * out (an evbuffer) plus error bits, so every split of the input can be tested
 * without sockets. Stored form: CRLF line ends, dot-unstuffed.
 *
 * End of DATA is only CRLF "." CRLF where the line before the dot also ended
 * in CRLF. With smtpd_forbid_bare_newline = normalize a bare LF ends a line
 * (stored as CRLF) but "\n.\n", "\n.\r\n" and "\r\n.\n" never end the data:
 * the lone "." line stays content, so no second transaction can be smuggled
 * through us. A bare CR is kept as content, as Postfix does: it never ends a
 * line here and the next hop's parser sees it inside a line too.
 * Not here: the socket, the spool, replies.
 */
#ifndef SMTPD_DATA_H
#define SMTPD_DATA_H

#include <stddef.h>
#include <time.h>

struct evbuffer;

enum smtpd_barelf {
    SMTPD_BARELF_NORMALIZE, /* bare LF ends a line, never the data */
    SMTPD_BARELF_REJECT,    /* as normalize, but sets SMTPD_BODY_ERR_BARELF (521 + close) */
    SMTPD_BARELF_NO,        /* legacy: any LF ends a line and a lone "." line ends the data */
};

/* Error bits accumulated during the body; one reply at the end (most severe first). */
enum {
    SMTPD_BODY_ERR_BARELF = 1, /* 521 5.5.2 ... bare <LF> received */
    SMTPD_BODY_ERR_IO = 2,     /* 451 4.3.0 Error: queue file write error (set by the session) */
    SMTPD_BODY_ERR_SIZE = 4,   /* 552 5.3.4 Error: message file too big */
    SMTPD_BODY_ERR_HOPS = 8,   /* 554 5.4.6 Error: too many hops */
};

struct smtpd_body_opts {
    int dot;               /* 1: DATA (dot end, dot-unstuffing); 0: BDAT chunks */
    int barelf;            /* enum smtpd_barelf */
    long long max_size;    /* most content bytes (0: no limit) */
    size_t header_limit;   /* header_size_limit: more is kept as body */
    int hop_limit;         /* hopcount_limit */
    int hops_initial;      /* Received: headers already written by the caller */
    const char *add_msgid; /* whole "Message-Id: ...\r\n" line added when missing, or NULL */
    const char *add_date;  /* whole "Date: ...\r\n" line added when missing, or NULL */
};

struct smtpd_body {
    struct smtpd_body_opts o;
    struct evbuffer *out;
    int state;
    int prev_bare;   /* the previous line ended in a bare LF */
    int in_header;   /* still in the header block */
    int hdr_cont_ok; /* a header was seen, so a WSP line continues it */
    char *line;      /* the current header line (bounded by header_limit) */
    size_t line_len, line_cap;
    size_t hdr_bytes;
    int hops;
    int seen_msgid, seen_date;
    char msgid[256];  /* Message-ID value as given (for the log) */
    long long size;   /* content bytes received (normalized) */
    long long stored; /* bytes written to OUT */
    int err;          /* SMTPD_BODY_ERR_* */
    int done;         /* DATA: the end-of-data line was seen */
};

void smtpd_body_init(struct smtpd_body *b, const struct smtpd_body_opts *o, struct evbuffer *out);
/*
 * smtpd_body_feed - process up to N bytes. Returns the bytes consumed: in DATA
 * mode it stops right after the end-of-data line (b->done set); the rest is
 * the next command.
 */
size_t smtpd_body_feed(struct smtpd_body *b, const char *p, size_t n);
/* smtpd_body_finish - end of the content: close a partial line (BDAT), add missing headers. */
void smtpd_body_finish(struct smtpd_body *b);
void smtpd_body_free(struct smtpd_body *b);

/* smtpd_data_date - RFC 5322 date "Tue,  6 Feb 2024 10:00:00 +0100 (CET)" in local time. */
void smtpd_data_date(time_t t, char *buf, size_t len);

/*
 * smtpd_data_received - the Received: header as Postfix writes it, into OUT.
 * ADDR is the printable client address (IPv6 gets the "IPv6:" prefix), PROTO
 * "SMTP", "ESMTP", "ESMTPS", ...; RCPT is the only recipient or NULL; TLS is
 * the tls_describe() text ("TLSv1.3 with cipher ...") or NULL without TLS.
 */
void smtpd_data_received(struct evbuffer *out, const char *helo, const char *name, const char *addr,
                         const char *hostname, const char *proto, const char *id, const char *rcpt,
                         time_t t, const char *tls);

/*
 * smtpd_data_helo_name - make HELO/EHLO text (NUL-terminated, in place) safe for the
 * Received: header, the envelope and the log, as Postfix's helo_cmd does with
 * printable() and neuter() (Postfix 3.x's set): every byte outside printable ASCII
 * (0x20..0x7E: CR, ESC and other controls, 8-bit bytes) and each of space and
 * <>()\";@ (which could forge the header's comment or address parts) becomes '?';
 * ':' stays for "[IPv6:...]". Returns S.
 */
char *smtpd_data_helo_name(char *s);

/* smtpd_data_msgid_line / smtpd_data_date_line - the header lines cleanup would add. */
void smtpd_data_msgid_line(char *buf, size_t len, time_t t, const char *id, const char *hostname);
void smtpd_data_date_line(char *buf, size_t len, time_t t);

#endif
