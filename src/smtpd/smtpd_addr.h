/*
 * smtpd_addr.h - parsing of SMTP envelope paths (RFC 5321 4.1.2, RFC 6531)
 * and of the ESMTP parameters of MAIL and RCPT (SIZE, BODY, SMTPUTF8, RET,
 * ENVID, NOTIFY, ORCPT). Pure functions: text in, result or Postfix reply out.
 * Not here: policy (who may relay), replies to the socket.
 */
#ifndef SMTPD_ADDR_H
#define SMTPD_ADDR_H

#include <stddef.h>

#define SMTPD_ADDR_MAX 256 /* longest path incl. <> (RFC 5321 4.5.3.1.3) */
#define SMTPD_LOCAL_MAX 64 /* local part */
#define SMTPD_DOMAIN_MAX 255
#define SMTPD_ENVID_MAX 100 /* RFC 3461 4.4 */
#define SMTPD_ORCPT_MAX 500

enum smtpd_addr_err {
    SMTPD_ADDR_OK = 0,
    SMTPD_ADDR_ESYNTAX = -1, /* not an address: 501 5.1.7 / 5.1.3 */
    SMTPD_ADDR_EUTF8 = -2,   /* valid, but UTF-8 without SMTPUTF8: 553 5.6.7 */
};

/*
 * smtpd_addr_parse - parse a path at TEXT ("<a@b>", "<@r1,@r2:a@b>", "<>", or
 * a bare a@b as Postfix tolerates). OUT (size SMTPD_ADDR_MAX+1) gets the
 * mailbox without <> and without a source route ("" for <>). *END points after
 * the path. ALLOW_NULL: <> permitted; UTF8: 8-bit (UTF-8) text permitted.
 */
int smtpd_addr_parse(const char *text, int allow_null, int utf8, char *out, const char **end);

/* smtpd_addr_has_8bit - 1 when S has a byte >= 0x80. */
int smtpd_addr_has_8bit(const char *s);

/* smtpd_xtext_decode - RFC 3461 xtext to plain text into OUT (size OUTLEN). 0 ok, -1 bad. */
int smtpd_xtext_decode(const char *in, size_t inlen, char *out, size_t outlen);

/* The parsed parameters of MAIL FROM. */
struct smtpd_mail_params {
    long long size; /* SIZE=, -1 when not given */
    int body_8bit;  /* BODY=8BITMIME */
    int body_given;
    int smtputf8;                    /* SMTPUTF8 */
    int ret;                         /* enum spool_ret: 0 default, 1 FULL, 2 HDRS */
    char envid[SMTPD_ENVID_MAX + 1]; /* decoded ENVID ("" if none) */
    int envid_given;
    int auth_given; /* AUTH=<mailbox> (RFC 4954): accepted, not used further */
};

/* The parsed parameters of RCPT TO. */
struct smtpd_rcpt_params {
    int notify;                      /* SPOOL_NOTIFY_* bits, 0 when not given */
    char orcpt[SMTPD_ORCPT_MAX + 1]; /* "type;decoded-addr" ("" if none) */
};

/*
 * smtpd_mail_params_parse / smtpd_rcpt_params_parse - parse the text after the
 * path. 0 ok; -1 with *REPLY set to the complete Postfix reply text (static
 * or written into REPLYBUF of size REPLYLEN).
 */
int smtpd_mail_params_parse(const char *text, struct smtpd_mail_params *p, char *replybuf,
                            size_t replylen, const char **reply);
int smtpd_rcpt_params_parse(const char *text, struct smtpd_rcpt_params *p, char *replybuf,
                            size_t replylen, const char **reply);

#endif
