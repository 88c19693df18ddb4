/*
 * cidr.c - lists of IPv4/IPv6 addresses and CIDR blocks (smtpd_trusted_networks)
 * and the test "is this client inside the list".
 * Parsing follows Postfix's mynetworks rules: a bare address is a /32 or /128,
 * an IPv6 address may be written in brackets ([::1]/128), and an entry with
 * host bits set beyond its prefix is an error (Postfix refuses it too), so a
 * typo never silently trusts a larger or smaller network than meant.
 * Not here: host names, "!" exclusions or table lookups (Postfix has them, we don't).
 */
#include "mta/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct cidr_entry {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, 4 or 16 bytes used */
    int prefix;             /* 0..32 or 0..128 */
};

struct cidr_list {
    size_t n;
    struct cidr_entry e[];
};

/* cidr_prefix_match - do the first PREFIX bits of A and B agree? */
static int cidr_prefix_match(const unsigned char *a, const unsigned char *b, int prefix)
{
    int full = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/* cidr_host_bits_set - does ADDR have a 1 bit after the first PREFIX bits? */
static int cidr_host_bits_set(const unsigned char *addr, int len, int prefix)
{
    for (int bit = prefix; bit < len * 8; bit++)
        if (addr[bit / 8] & (0x80 >> (bit % 8)))
            return 1;
    return 0;
}

/* cidr_parse_entry - one "addr", "addr/len", "[v6]" or "[v6]/len"; 0 ok, -1 with *err set. */
static int cidr_parse_entry(const char *tok, struct cidr_entry *out, char **err)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(tok, '/');
    size_t alen = slash ? (size_t)(slash - tok) : strlen(tok);
    const char *a = tok;
    int bracketed = 0;

    if (alen >= 2 && tok[0] == '[' && tok[alen - 1] == ']') {
        a = tok + 1;
        alen -= 2;
        bracketed = 1;
    }
    if (alen == 0 || alen >= sizeof(buf))
        goto bad_addr;
    memcpy(buf, a, alen);
    buf[alen] = '\0';

    memset(out, 0, sizeof(*out));
    if (!bracketed && inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
    } else {
        goto bad_addr;
    }
    int maxlen = out->family == AF_INET ? 32 : 128;

    out->prefix = maxlen;
    if (slash) {
        const char *p = slash + 1;
        int v = 0;
        size_t nd = strspn(p, "0123456789");
        if (nd == 0 || nd > 3 || p[nd] != '\0') {
            if (err &&
                asprintf(err, "bad prefix length in '%s' (expected /0 to /%d)", tok, maxlen) < 0)
                *err = NULL;
            return -1;
        }
        for (size_t i = 0; i < nd; i++)
            v = v * 10 + (p[i] - '0');
        if (v > maxlen) {
            if (err &&
                asprintf(err, "prefix length /%d in '%s' is larger than /%d", v, tok, maxlen) < 0)
                *err = NULL;
            return -1;
        }
        out->prefix = v;
    }
    if (cidr_host_bits_set(out->addr, maxlen / 8, out->prefix)) {
        /* Postfix refuses this too: "10.1.2.3/8" is almost always a typo. */
        unsigned char net[16];
        char nbuf[INET6_ADDRSTRLEN];
        memcpy(net, out->addr, sizeof(net));
        for (int bit = out->prefix; bit < maxlen; bit++)
            net[bit / 8] &= (unsigned char)~(0x80 >> (bit % 8));
        inet_ntop(out->family, net, nbuf, sizeof(nbuf));
        if (err && asprintf(err, "'%s' has host bits set beyond the prefix; did you mean '%s/%d'?",
                            tok, nbuf, out->prefix) < 0)
            *err = NULL;
        return -1;
    }
    return 0;

bad_addr:
    if (err && asprintf(err, "'%s' is not an IPv4 or IPv6 address or CIDR block", tok) < 0)
        *err = NULL;
    return -1;
}

struct cidr_list *cidr_list_parse(const char *text, char **err)
{
    static const char sep[] = ", \t\r\n";
    size_t cap = 0;

    if (err)
        *err = NULL;
    if (!text)
        text = "";
    /* Upper bound on entries: every entry needs at least one non-separator byte. */
    for (const char *p = text; *p;) {
        p += strspn(p, sep);
        if (!*p)
            break;
        cap++;
        p += strcspn(p, sep);
    }
    struct cidr_list *l = calloc(1, sizeof(*l) + cap * sizeof(l->e[0]));
    if (!l) {
        if (err)
            *err = strdup("out of memory");
        return NULL;
    }
    for (const char *p = text; *p;) {
        p += strspn(p, sep);
        if (!*p)
            break;
        size_t len = strcspn(p, sep);
        char tok[128];
        if (len >= sizeof(tok)) {
            if (err && asprintf(err, "entry '%.40s...' is too long", p) < 0)
                *err = NULL;
            free(l);
            return NULL;
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (cidr_parse_entry(tok, &l->e[l->n], err) < 0) {
            free(l);
            return NULL;
        }
        l->n++;
        p += len;
    }
    return l;
}

int cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
    unsigned char v4[4], v6[16];
    int have4 = 0, have6 = 0;

    if (!l || !sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(v4, &s4->sin_addr, 4);
        have4 = 1;
        /* Also as ::ffff:a.b.c.d, so "::ffff:10.0.0.0/104" entries work both ways. */
        memset(v6, 0, 10);
        v6[10] = v6[11] = 0xff;
        memcpy(v6 + 12, v4, 4);
        have6 = 1;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(v6, &s6->sin6_addr, 16);
        have6 = 1;
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memcpy(v4, v6 + 12, 4);
            have4 = 1;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct cidr_entry *e = &l->e[i];
        if (e->family == AF_INET && have4 && cidr_prefix_match(e->addr, v4, e->prefix))
            return 1;
        if (e->family == AF_INET6 && have6 && cidr_prefix_match(e->addr, v6, e->prefix))
            return 1;
    }
    return 0;
}

void cidr_list_free(struct cidr_list *l)
{
    free(l);
}
