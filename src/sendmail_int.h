/*
 * sendmail_int.h - what the parts of the sendmail program share: sendmail.c
 * (options, configuration, reading the message, handing it to postdrop),
 * sendmail_rcpt.c (address lists: the command line and -t's header fields),
 * sendmail_smtp.c (-bs). Private to src/sendmail*.c.
 */
#ifndef MTA_SENDMAIL_INT_H
#define MTA_SENDMAIL_INT_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct conf;

#define SM_HEADER_FIELDS_MAX 1000 /* header fields looked at for -t */
#define SM_SMTP_LINE_MAX 2048     /* -bs command line (line_length_limit) */

/* A growing byte buffer (the message, a header value). */
struct sm_buf {
    char *p;
    size_t len, cap;
};

/* A list of recipient addresses, without duplicates. */
struct sm_rcpts {
    char **v;
    int n;
};

extern struct conf *sm_conf;    /* NULL when the file could not be read (not ours) */
extern long long sm_size_limit; /* message_size_limit */

/* sm_fatal - "sendmail: fatal: ..." on stderr and exit STATUS (sysexits.h), as Postfix's. */
void sm_fatal(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* sendmail_rcpt.c */
/* sm_add - append N bytes of P to B (fatal when out of memory). */
void sm_add(struct sm_buf *b, const char *p, size_t n);
/* sm_adds - append the string S to B. */
void sm_adds(struct sm_buf *b, const char *s);
/* sm_rcpt_add - add ADDR to R unless it is there already (exact match, as given). */
void sm_rcpt_add(struct sm_rcpts *r, const char *addr);
/* sm_rcpts_free - free R's addresses and list. */
void sm_rcpts_free(struct sm_rcpts *r);
/* sm_addr_list - add the addresses of the RFC 5322 address list V to R (WHERE names it in
 * messages). */
void sm_addr_list(struct sm_rcpts *r, const char *v, const char *where);
/* sm_extract - -t: the recipients of To:, Cc:, Bcc: of MSG's header (or the Resent- ones). */
void sm_extract(const struct sm_buf *msg, struct sm_rcpts *normal, struct sm_rcpts *resent,
                int *is_resent);

/* sendmail.c */
/* sm_getline - the next line of IN into *BUF, at most MAX bytes kept (*OVER: more was
 * dropped). The length kept, or -1 at the end. */
ssize_t sm_getline(FILE *in, char **buf, size_t *cap, size_t max, int *over);
/* sm_postdrop - run postdrop with the message: 0 when it is in the maildrop. */
int sm_postdrop(const char *sender, const char *fullname, int body_8bit, const struct sm_rcpts *r,
                const struct sm_buf *msg);

/* sendmail_smtp.c */
/* sm_smtp - the -bs dialogue on standard input and output; the exit status. */
int sm_smtp(void);

#endif
