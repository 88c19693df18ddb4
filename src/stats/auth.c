/*
 * auth.c - HTTP Basic authentication: parse the Authorization header and compare
 * the credentials with username/password in constant time (our own compare, so
 * the stats layer needs no libcrypto); and the per-client throttle of wrong
 * credentials (http_auth_failure_limit, http_auth_lockout_time), as SMTP AUTH
 * failures are slowed down and end the session.
 * Not here: deciding which paths need auth (http_server.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stats_int.h"

/*
 * stats_ct_equal - 1 when A and B are equal. The time depends only on BLEN (the
 * client's input length), never on where the bytes differ or on A's content.
 */
int stats_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile unsigned char *pa = a, *pb = b;
    unsigned diff = (alen != blen);
    for (size_t i = 0; i < blen; i++) {
        unsigned char ca = alen ? pa[i % alen] : 0; /* reads A without branching on content */
        diff |= (unsigned)(ca ^ pb[i]);
    }
    return diff == 0;
}

/* stats_b64_value - the 6-bit value of a base64 character, -1 when not one. */
static int stats_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * stats_base64_decode - strict RFC 4648 base64 (padding required when the length
 * is not a multiple of 4). Returns the decoded length, -1 on bad input or when
 * more than OUTMAX bytes would result.
 */
long stats_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outmax)
{
    size_t o = 0;
    if (inlen % 4 != 0)
        return -1;
    for (size_t i = 0; i < inlen; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == inlen && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad) {
                return -1; /* data after padding */
            } else if ((v[k] = stats_b64_value(c)) < 0) {
                return -1;
            }
        }
        unsigned long w = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) |
                          ((unsigned long)v[2] << 6) | (unsigned long)v[3];
        int n = 3 - pad;
        if (o + (size_t)n > outmax)
            return -1;
        for (int k = 0; k < n; k++)
            out[o++] = (unsigned char)(w >> (16 - 8 * k));
    }
    return (long)o;
}

/*
 * stats_auth_check - 1 when AUTHORIZATION ("Basic base64(user:pass)", scheme
 * case-insensitive) carries exactly USER and PASS. Both halves are always
 * compared so the time does not tell which one was wrong.
 */
int stats_auth_check(const char *authorization, const char *user, const char *pass)
{
    unsigned char buf[768];
    if (!authorization)
        return 0;
    const char *p = authorization;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Basic", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
        return 0;
    p += 5;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strlen(p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    long n = stats_base64_decode(p, len, buf, sizeof buf);
    if (n < 0)
        return 0;
    unsigned char *colon = memchr(buf, ':', (size_t)n);
    if (!colon)
        return 0;
    size_t ulen = (size_t)(colon - buf), plen = (size_t)n - ulen - 1;
    int ok_user = stats_ct_equal(user, strlen(user), buf, ulen);
    int ok_pass = stats_ct_equal(pass, strlen(pass), colon + 1, plen);
    return ok_user & ok_pass;
}

/* ---- throttling wrong credentials per client address ---- */

#define STATS_AUTH_CLIENTS 1024 /* client addresses remembered; the oldest is forgotten first */

struct stats_auth_client {
    char addr[64];
    int failures;        /* wrong credentials since window_start */
    double window_start; /* monotonic seconds */
    double locked_until; /* > now: refused with 429 */
    double last;         /* the latest failure (which entry to forget first) */
};

struct stats_auth_throttle {
    int limit;
    double lockout;
    int n;
    struct stats_auth_client c[STATS_AUTH_CLIENTS];
};

struct stats_auth_throttle *stats_auth_throttle_new(int limit, double lockout)
{
    struct stats_auth_throttle *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->limit = limit > 0 ? limit : 1;
    t->lockout = lockout;
    return t;
}

void stats_auth_throttle_free(struct stats_auth_throttle *t)
{
    free(t);
}

/* stats_auth_find - the entry of ADDR, or NULL. */
static struct stats_auth_client *stats_auth_find(struct stats_auth_throttle *t, const char *addr)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->c[i].addr, addr) == 0)
            return &t->c[i];
    return NULL;
}

double stats_auth_throttle_wait(struct stats_auth_throttle *t, const char *addr, double now)
{
    struct stats_auth_client *e = stats_auth_find(t, addr);
    return e && e->locked_until > now ? e->locked_until - now : 0;
}

int stats_auth_throttle_result(struct stats_auth_throttle *t, const char *addr, int ok, double now)
{
    struct stats_auth_client *e = stats_auth_find(t, addr);
    if (ok) {
        if (e)
            *e = t->c[--t->n]; /* forgotten: its next failures count from zero */
        return 0;
    }
    if (!e) {
        if (t->n < STATS_AUTH_CLIENTS) {
            e = &t->c[t->n++];
        } else { /* full: forget the client whose last failure is oldest, locked ones last */
            e = &t->c[0];
            for (int i = 1; i < t->n; i++) {
                struct stats_auth_client *x = &t->c[i];
                int xl = x->locked_until > now, el = e->locked_until > now;
                if (xl < el || (xl == el && x->last < e->last))
                    e = x;
            }
        }
        memset(e, 0, sizeof(*e));
        snprintf(e->addr, sizeof(e->addr), "%s", addr);
        e->window_start = now;
    }
    if (now - e->window_start >= t->lockout) { /* the failures counted are too old */
        e->failures = 0;
        e->window_start = now;
    }
    e->last = now;
    if (++e->failures < t->limit)
        return 0;
    e->failures = 0;
    e->window_start = now + t->lockout;
    e->locked_until = now + t->lockout;
    return 1;
}
