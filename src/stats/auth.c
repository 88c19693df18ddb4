/*
 * auth.c - HTTP Basic authentication: parse the Authorization header and compare
 * the credentials with username/password in constant time (our own compare, so
 * the stats layer needs no libcrypto).
 * Not here: deciding which paths need auth (http_server.c).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "stats_priv.h"

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
