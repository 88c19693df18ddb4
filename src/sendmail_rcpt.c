/*
 * sendmail_rcpt.c - sendmail's recipients: the addresses of the command line
 * and, with -t, of the To:, Cc: and Bcc: header fields (or the Resent- ones),
 * parsed as RFC 5322 address lists (groups, comments, quoted strings,
 * <route-addr>), each bounded; and the small byte buffer they are built in.
 * Not here: reading the message (sendmail.c), removing Bcc: (pickup).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "mta/maildrop.h"
#include "sendmail_int.h"

/* sm_add - append N bytes of P to B. */
void sm_add(struct sm_buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(b->p = realloc(b->p, cap)))
            sm_fatal(EX_OSERR, "out of memory");
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sm_adds(struct sm_buf *b, const char *s)
{
    sm_add(b, s, strlen(s));
}

/* sm_rcpt_add - add ADDR to R unless it is there already (exact match, as given). */
void sm_rcpt_add(struct sm_rcpts *r, const char *addr)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->v[i], addr) == 0)
            return;
    if (r->n == MAILDROP_RCPT_MAX)
        sm_fatal(EX_USAGE, "too many recipients (at most %d)", MAILDROP_RCPT_MAX);
    if (r->n % 64 == 0 && !(r->v = realloc(r->v, sizeof(char *) * (size_t)(r->n + 64))))
        sm_fatal(EX_OSERR, "out of memory");
    if (!(r->v[r->n++] = strdup(addr)))
        sm_fatal(EX_OSERR, "out of memory");
}

/* sm_rcpts_free - free R's addresses and list. */
void sm_rcpts_free(struct sm_rcpts *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->v[i]);
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* sm_addr_finish - one element of an address list: the <route-addr> if there is one, else
 * the text with whitespace outside quotes removed; empty elements are skipped. */
static void sm_addr_finish(struct sm_rcpts *r, const char *text, size_t tlen, const char *angle,
                           size_t alen, int had_angle, const char *where)
{
    char addr[MAILDROP_ADDR_MAX + 2];
    size_t n = 0;
    const char *p = had_angle ? angle : text, *end = p + (had_angle ? alen : tlen);
    int quoted = 0;

    if (had_angle) { /* obsolete source route "@a,@b:user@c" */
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (p < end && *p == '@' && colon)
            p = colon + 1;
    }
    for (; p < end; p++) {
        if (*p == '"')
            quoted = !quoted;
        if (!quoted && (*p == ' ' || *p == '\t'))
            continue;
        if (n == sizeof(addr) - 1)
            sm_fatal(EX_DATAERR, "address too long in %s", where);
        addr[n++] = *p;
    }
    addr[n] = 0;
    if (n == 0)
        return;
    if (!maildrop_addr_ok(addr, 0))
        sm_fatal(EX_DATAERR, "bad address syntax in %s: %s", where, addr);
    sm_rcpt_add(r, addr);
}

/*
 * sm_addr_list - the addresses of an RFC 5322 address list (a To:/Cc:/Bcc: value or a
 * command-line argument) into R: comments and display names dropped, groups opened,
 * quoted strings kept whole.
 */
void sm_addr_list(struct sm_rcpts *r, const char *v, const char *where)
{
    size_t vlen = strlen(v);
    char *text = malloc(vlen + 1), *angle = malloc(vlen + 1);
    size_t tlen = 0, alen = 0;
    int quoted = 0, comment = 0, in_angle = 0, had_angle = 0;

    if (!text || !angle)
        sm_fatal(EX_OSERR, "out of memory");
    for (const char *p = v;; p++) {
        char ch = *p;
        if (ch == 0 || (!quoted && !comment && !in_angle && (ch == ',' || ch == ';'))) {
            sm_addr_finish(r, text, tlen, angle, alen, had_angle, where);
            tlen = alen = 0;
            had_angle = 0;
            if (ch == 0)
                break;
            continue;
        }
        if (comment) {
            if (ch == '\\' && p[1])
                p++;
            else if (ch == '(')
                comment++;
            else if (ch == ')')
                comment--;
            continue;
        }
        if (quoted) {
            if (ch == '\\' && p[1]) {
                (in_angle ? angle : text)[in_angle ? alen++ : tlen++] = ch;
                ch = *++p;
            } else if (ch == '"')
                quoted = 0;
        } else if (ch == '"')
            quoted = 1;
        else if (ch == '(') {
            comment = 1;
            continue;
        } else if (ch == '<' && !in_angle) {
            in_angle = 1;
            had_angle = 1;
            alen = 0;
            continue;
        } else if (ch == '>' && in_angle) {
            in_angle = 0;
            continue;
        } else if (ch == ':' && !in_angle) {
            tlen = 0; /* "group name:" opens a group: the name is no address */
            continue;
        }
        if (in_angle)
            angle[alen++] = ch;
        else
            text[tlen++] = ch;
    }
    free(text);
    free(angle);
}

/* sm_hdr_name - when LINE is a header field "Name:", the length of Name; else 0. */
static size_t sm_hdr_name(const char *line, size_t len)
{
    size_t i = 0;

    while (i < len && line[i] > 32 && line[i] < 127 && line[i] != ':')
        i++;
    /* "Name :" (space before the colon) is obsolete syntax, still a header */
    size_t j = i;
    while (j < len && (line[j] == ' ' || line[j] == '\t'))
        j++;
    return (i > 0 && j < len && line[j] == ':') ? i : 0;
}

/*
 * sm_extract - -t: the recipients of the To:, Cc: and Bcc: fields of the header of MSG
 * (LF lines), or of Resent-To/Cc/Bcc when the message has Resent- fields (Postfix).
 */
void sm_extract(const struct sm_buf *msg, struct sm_rcpts *normal, struct sm_rcpts *resent,
                int *is_resent)
{
    const char *p = msg->p, *end = msg->p + msg->len;
    int fields = 0;

    *is_resent = 0;
    while (p < end && fields < SM_HEADER_FIELDS_MAX) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *hname = p;
        size_t len = (size_t)(nl - p), name;
        struct sm_buf v = {0};
        const char *q;

        name = sm_hdr_name(p, len);
        if (!name)
            break; /* the empty line, or the body starts without one */
        fields++;
        q = (const char *)memchr(p, ':', len) + 1;
        sm_add(&v, q, (size_t)(p + len - q));
        /* unfold continuation lines */
        for (p = nl + 1; p < end && (*p == ' ' || *p == '\t'); p = nl + 1) {
            nl = memchr(p, '\n', (size_t)(end - p));
            sm_add(&v, " ", 1);
            sm_add(&v, p, (size_t)(nl - p));
        }
        struct {
            const char *n;
            struct sm_rcpts *r;
        } kinds[] = {{"To", normal},        {"Cc", normal},        {"Bcc", normal},
                     {"Resent-To", resent}, {"Resent-Cc", resent}, {"Resent-Bcc", resent}};
        if (name > 7 && strncasecmp(hname, "Resent-", 7) == 0)
            *is_resent = 1;
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            if (strlen(kinds[k].n) == name && strncasecmp(hname, kinds[k].n, name) == 0) {
                char where[32];
                snprintf(where, sizeof(where), "%s: header", kinds[k].n);
                sm_addr_list(kinds[k].r, v.p ? v.p : "", where);
            }
        }
        free(v.p);
    }
}
