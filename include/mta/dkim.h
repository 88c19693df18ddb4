/*
 * dkim.h - built-in DKIM signing (RFC 6376, libopendkim): one key (RSA or
 * Ed25519, dkim_key_file from the key volume or the fs terminal), one selector,
 * the From: domains of dkim_domains, relaxed/relaxed. The signer is made at
 * start-up (the key is read as root); each message gets a job that is fed the
 * stored message bytes (CRLF lines) and yields the DKIM-Signature header field.
 * Jobs run on the signer's own worker threads (dkim_signer_workers): reading a
 * streamed body and an RSA signature take milliseconds (docs/dkim.md).
 * Not here: which clients' mail is signed and where the field goes (smtpd,
 * pickup and spool_dkim.c decide and prepend).
 */
#ifndef MTA_DKIM_H
#define MTA_DKIM_H

#include <stddef.h>

struct conf;
struct event_base;
struct workers;
struct dkim_signer;
struct dkim_job;

#define DKIM_DOMAIN_MAX 253     /* a domain name */
#define DKIM_HEADERS_MAX 64     /* names in dkim_headers */
#define DKIM_HDRNAME_MAX 76     /* one header field name (RFC 5322: printable, no colon) */
#define DKIM_SIGHDR_MAX 8192    /* the DKIM-Signature field we produce */
#define DKIM_THREADS 2          /* signing threads (the appliance has few cores) */
#define DKIM_HEADER_SLACK 65536 /* header bytes beyond header_size_limit a job buffers */

enum dkim_key_type { DKIM_KEY_RSA = 1, DKIM_KEY_ED25519 };

/* What one job concluded. */
enum dkim_verdict {
    DKIM_SIGNED,      /* header holds the field */
    DKIM_SKIP_DOMAIN, /* the From: domain is not in dkim_domains */
    DKIM_SKIP_NOFROM, /* no single parsable From: address: not signed (as OpenDKIM) */
    DKIM_FAILED,      /* why says it: the message must not be accepted unsigned (451) */
};

struct dkim_result {
    enum dkim_verdict verdict;
    char *header; /* DKIM_SIGNED: "DKIM-Signature: ...\r\n" (malloc'd; dkim_result_clear) */
    char domain[DKIM_DOMAIN_MAX + 1];
    char why[256];
};

/* --- the signer (start-up) --- */

/* dkim_signer_new - dkim_sign = yes: check the settings and read dkim_key_file (blocking:
 * at start-up, as root, before the privilege drop). NULL with *err NULL when dkim_sign = no;
 * NULL with *err (malloc'd, names the setting) on error. */
struct dkim_signer *dkim_signer_new(const struct conf *c, char **err);
/* dkim_signer_start - the signing threads (after the privilege drop). 0, or -1 and *err. */
int dkim_signer_start(struct dkim_signer *s, struct event_base *base, char **err);
/* dkim_signer_workers - where jobs run (done() comes back on the loop). */
struct workers *dkim_signer_workers(struct dkim_signer *s);
/* dkim_signer_free - finishes queued jobs (their done() runs), then frees. NULL is fine. */
void dkim_signer_free(struct dkim_signer *s);
/* dkim_signer_describe - "s=SEL, a=ALG, KEYBITS bits, domains D1 D2" for the start-up log. */
void dkim_signer_describe(const struct dkim_signer *s, char *buf, size_t len);

/* --- one message (any one thread at a time) --- */

struct dkim_job *dkim_job_new(struct dkim_signer *s, const char *qid);
/* dkim_job_feed - the next bytes of the message as stored (CRLF lines, header first). */
void dkim_job_feed(struct dkim_job *j, const void *p, size_t n);
/* dkim_job_finish - the end of the message: sign (the costly step) and fill *R. */
void dkim_job_finish(struct dkim_job *j, struct dkim_result *r);
void dkim_job_free(struct dkim_job *j);
void dkim_result_clear(struct dkim_result *r);
/* dkim_report - on the loop: the counters and the log line of a job's result for queue ID
 * QID: "QID: DKIM-Signature field added (s=SEL, d=DOMAIN)" as OpenDKIM logs it, or the
 * warning of a failure. */
void dkim_report(const struct dkim_signer *s, const char *qid, const struct dkim_result *r);

/* --- parsing, exposed for the unit tests (dkim_parse.c) --- */

/* dkim_parse_names - a comma/space separated list of header field names (or domains with
 * IS_DOMAIN) into OUT[max] (malloc'd, lower-case); *N their count. 0, or -1 and WHY. */
int dkim_parse_names(const char *list, int is_domain, char **out, int max, int *n, char *why,
                     size_t whylen);
/* dkim_parse_key - check PEM[0..LEN): an unencrypted RSA (>= 1024 bits) or Ed25519 private
 * key. 0 with *TYPE, *BITS and PUB (the base64 public key for the DNS record, p=); -1, WHY. */
int dkim_parse_key(const char *pem, size_t len, enum dkim_key_type *type, int *bits, char *pub,
                   size_t publen, char *why, size_t whylen);
/* dkim_from_domain - the domain of the address in the From: field VALUE[0..LEN) (unfolded
 * or not, comments and display names allowed), lower-case into OUT. 0, or -1 when there is
 * not exactly one address with a domain. */
int dkim_from_domain(const char *value, size_t len, char *out, size_t outlen);
/* dkim_split_header - the next header field of the header block P[0..LEN) (CRLF lines):
 * *FIELD_LEN bytes without the final CRLF, returns the bytes to skip past it (incl. CRLF);
 * 0 at the blank line or the end. */
size_t dkim_split_header(const char *p, size_t len, size_t *field_len);

#endif
