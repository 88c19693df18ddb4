/*
 * maildrop.h - the maildrop file: how postdrop (setgid setgid_group, run by
 * sendmail for a local user) hands one message to the daemon's pickup through
 * DATA/maildrop (docs/sendmail.md). One format, two readers: postdrop checks
 * what sendmail wrote on its standard input (a "stream", without the uid and
 * time lines, which postdrop adds itself), and pickup checks the file again,
 * since anything a local user can influence is untrusted input.
 * Not here: where the file goes, its durability (postdrop), what becomes of it
 * (pickup).
 *
 *   MAILDROP 1\n
 *   uid N\n            (file only: the submitting user's real uid)
 *   time T\n           (file only: seconds since the epoch)
 *   sender ADDR\n      (empty: the null sender)
 *   fullname TEXT\n    (optional: sendmail -F, for a missing From:)
 *   8bit\n             (optional: sendmail -B8BITMIME)
 *   rcpt ADDR\n        (1 .. MAILDROP_RCPT_MAX)
 *   content N\n
 *   N bytes: the message, lines ending in LF
 *   end\n
 */
#ifndef MTA_MAILDROP_H
#define MTA_MAILDROP_H

#include <stddef.h>

#define MAILDROP_DIR "maildrop"
#define MAILDROP_MAGIC "MAILDROP 1"
#define MAILDROP_LINE_MAX 1024           /* one envelope line, LF included */
#define MAILDROP_RCPT_MAX 10000          /* recipients of one message */
#define MAILDROP_ADDR_MAX 255            /* bytes of one address (spool.h SPOOL_ADDR_MAX - 1) */
#define MAILDROP_FULLNAME_MAX 255        /* bytes of -F text */
#define MAILDROP_TIME_MAX 253402300799LL /* the end of the year 9999 */
/* the most envelope bytes a valid file can have (bounds what is read before content) */
#define MAILDROP_ENVELOPE_MAX ((size_t)MAILDROP_RCPT_MAX * (MAILDROP_ADDR_MAX + 6) + 4096)

struct maildrop {
    long uid;       /* -1 in a stream */
    long long time; /* -1 in a stream */
    char *sender;   /* "" for the null sender */
    char *fullname; /* "" when not given */
    int body_8bit;
    char **rcpt;
    int nrcpt;
    const char *content; /* points into the parsed buffer (not owned) */
    size_t content_len;
};

enum maildrop_kind { MAILDROP_STREAM, MAILDROP_FILE };

/*
 * maildrop_addr_ok - 1 when A may be an envelope address in a maildrop file:
 * at most MAILDROP_ADDR_MAX bytes, no control byte, no space outside a quoted
 * local part, no '<' or '>'; EMPTY_OK for the null sender.
 */
int maildrop_addr_ok(const char *a, int empty_ok);
/* maildrop_text_ok - 1 when T (LEN bytes) holds no control byte (for -F text). */
int maildrop_text_ok(const char *t, size_t len);
/*
 * maildrop_parse - check and parse BUF (LEN bytes) as KIND into *OUT (free with
 * maildrop_free). CONTENT_MAX bounds the message bytes (message_size_limit).
 * 0 ok; -1 with *WHY a static text naming what is wrong.
 */
int maildrop_parse(const char *buf, size_t len, enum maildrop_kind kind, long long content_max,
                   struct maildrop *out, const char **why);
void maildrop_free(struct maildrop *m);

#endif
