/*
 * smtpd_proxy_parse.c - the PROXY protocol header parser (HAProxy's
 * proxy-protocol.txt, v1 and v2), with the acceptance rules and error texts of
 * Postfix's haproxy_srvr.c so that log tools and administrators see the same
 * warnings. Pure: no I/O, no logging (smtpd_proxy.c reads and logs).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtpd_proxy.h"

static const unsigned char smtpd_proxy_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define SMTPD_PROXY_V2_HDR 16   /* signature, ver_cmd, fam, len */
#define SMTPD_PROXY_V2_INET 12  /* two IPv4 addresses, two ports */
#define SMTPD_PROXY_V2_INET6 36 /* two IPv6 addresses, two ports */

/* smtpd_proxy_set - SA (of family FAM) from the address bytes ADDR and the port in network
 * order; a v4-mapped IPv6 address becomes IPv4, as Postfix normalises it. */
static void smtpd_proxy_set(struct sockaddr_storage *sa, socklen_t *salen, int fam,
                            const unsigned char *addr, uint16_t nport)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(sa, 0, sizeof(*sa));
    /* bytes, not IN6_IS_ADDR_V4MAPPED: ADDR points into the header, not aligned */
    if (fam == AF_INET6 && memcmp(addr, v4mapped, 12) != 0) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, addr, 16);
        in6->sin6_port = nport;
        *salen = sizeof(*in6);
        return;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, fam == AF_INET6 ? addr + 12 : addr, 4);
    in->sin_port = nport;
    *salen = sizeof(*in);
}

/* smtpd_proxy_nport - the two bytes at P as a port in network order (as sockaddr keeps it). */
static uint16_t smtpd_proxy_nport(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* smtpd_proxy_token - the next token of *CP separated by spaces or CRs (Postfix's mystrtok with
 * " \r"), NUL-terminated in place; NULL when none is left. */
static char *smtpd_proxy_token(char **cp)
{
    char *s = *cp, *e;

    s += strspn(s, " \r");
    if (!*s)
        return NULL;
    e = s + strcspn(s, " \r");
    if (*e)
        *e++ = 0;
    *cp = e;
    return s;
}

/* smtpd_proxy_addr - TOK as an address of family FAM into ADDR (16 bytes for IPv6); 0 ok. */
static int smtpd_proxy_addr(const char *tok, int fam, unsigned char *addr)
{
    if (!tok || strlen(tok) >= INET6_ADDRSTRLEN)
        return -1;
    return inet_pton(fam, tok, addr) == 1 ? 0 : -1;
}

/* smtpd_proxy_port - TOK as a TCP port (1 to 5 digits, at most 65535) in network order. */
static int smtpd_proxy_port(const char *tok, uint16_t *nport)
{
    unsigned long v = 0;
    size_t n;

    if (!tok || (n = strlen(tok)) == 0 || n > 5 || strspn(tok, "0123456789") != n)
        return -1;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned long)(tok[i] - '0');
    if (v > 65535)
        return -1;
    *nport = htons((uint16_t)v);
    return 0;
}

/* smtpd_proxy_v1 - the text form: one line, at most SMTPD_PROXY_V1_MAX bytes with its LF. */
static enum smtpd_proxy_res smtpd_proxy_v1(const unsigned char *buf, size_t len, int eof,
                                           size_t *hdrlen, struct smtpd_proxy_info *pi,
                                           const char **err)
{
    size_t scan = len < SMTPD_PROXY_V1_MAX ? len : SMTPD_PROXY_V1_MAX;
    const unsigned char *lf = memchr(buf, '\n', scan);
    char line[SMTPD_PROXY_V1_MAX + 1], *cp = line, *tok;
    unsigned char src[16], dst[16];
    uint16_t sport, dport;
    int fam;

    if (!lf) {
        if (len < SMTPD_PROXY_V1_MAX && !eof)
            return SMTPD_PROXY_MORE;
        *err = "missing protocol header terminator";
        return SMTPD_PROXY_ERR;
    }
    memcpy(line, buf, (size_t)(lf - buf));
    line[lf - buf] = 0;
    if (memchr(line, 0, (size_t)(lf - buf))) {
        *err = "bad or missing protocol header";
        return SMTPD_PROXY_ERR;
    }
    tok = smtpd_proxy_token(&cp);
    if (!tok || strcmp(tok, "PROXY") != 0) {
        *err = "bad or missing protocol header";
        return SMTPD_PROXY_ERR;
    }
    tok = smtpd_proxy_token(&cp);
    if (tok && strcasecmp(tok, "TCP4") == 0)
        fam = AF_INET;
    else if (tok && strcasecmp(tok, "TCP6") == 0)
        fam = AF_INET6;
    else {
        *err = "bad or missing protocol type"; /* also UNKNOWN, as in Postfix */
        return SMTPD_PROXY_ERR;
    }
    if (smtpd_proxy_addr(smtpd_proxy_token(&cp), fam, src) < 0)
        *err = "bad or missing client address";
    else if (smtpd_proxy_addr(smtpd_proxy_token(&cp), fam, dst) < 0)
        *err = "bad or missing server address";
    else if (smtpd_proxy_port(smtpd_proxy_token(&cp), &sport) < 0)
        *err = "bad or missing client port";
    else if (smtpd_proxy_port(smtpd_proxy_token(&cp), &dport) < 0)
        *err = "bad or missing server port";
    else {
        pi->local = 0;
        smtpd_proxy_set(&pi->client, &pi->client_len, fam, src, sport);
        smtpd_proxy_set(&pi->server, &pi->server_len, fam, dst, dport);
        *hdrlen = (size_t)(lf - buf) + 1;
        return SMTPD_PROXY_OK;
    }
    return SMTPD_PROXY_ERR;
}

/* smtpd_proxy_v2 - the binary form: a 16-byte header, then LEN bytes of addresses and TLVs. */
static enum smtpd_proxy_res smtpd_proxy_v2(const unsigned char *buf, size_t len, int eof,
                                           size_t *hdrlen, struct smtpd_proxy_info *pi,
                                           const char **err)
{
    size_t alen, total;

    if (len < SMTPD_PROXY_V2_HDR) {
        if (!eof)
            return SMTPD_PROXY_MORE;
        *err = "short protocol header";
        return SMTPD_PROXY_ERR;
    }
    if ((buf[12] & 0xf0) != 0x20) {
        *err = "unrecognized protocol version";
        return SMTPD_PROXY_ERR;
    }
    alen = ((size_t)buf[14] << 8) | buf[15];
    total = SMTPD_PROXY_V2_HDR + alen;
    if (total > SMTPD_PROXY_MAX) { /* bounded: TLVs beyond it are not waited for */
        *err = "version 2 protocol header too long";
        return SMTPD_PROXY_ERR;
    }
    if (len < total) {
        if (!eof)
            return SMTPD_PROXY_MORE;
        *err = "short version 2 protocol header";
        return SMTPD_PROXY_ERR;
    }
    switch (buf[12] & 0x0f) {
    case 0x01: /* PROXY: the connection was relayed on behalf of the addresses below */
        if (buf[13] == 0x11) { /* TCP over IPv4 */
            if (alen < SMTPD_PROXY_V2_INET) {
                *err = "short address field";
                return SMTPD_PROXY_ERR;
            }
            const unsigned char *a = buf + SMTPD_PROXY_V2_HDR;
            smtpd_proxy_set(&pi->client, &pi->client_len, AF_INET, a, smtpd_proxy_nport(a + 8));
            smtpd_proxy_set(&pi->server, &pi->server_len, AF_INET, a + 4,
                            smtpd_proxy_nport(a + 10));
        } else if (buf[13] == 0x21) { /* TCP over IPv6 */
            if (alen < SMTPD_PROXY_V2_INET6) {
                *err = "short address field";
                return SMTPD_PROXY_ERR;
            }
            const unsigned char *a = buf + SMTPD_PROXY_V2_HDR;
            smtpd_proxy_set(&pi->client, &pi->client_len, AF_INET6, a, smtpd_proxy_nport(a + 32));
            smtpd_proxy_set(&pi->server, &pi->server_len, AF_INET6, a + 16,
                            smtpd_proxy_nport(a + 34));
        } else {
            /* UNSPEC, UDP and UNIX sockets: no address to apply access control to */
            *err = "unsupported network protocol";
            return SMTPD_PROXY_ERR;
        }
        pi->local = 0;
        break;
    case 0x00: /* LOCAL: the proxy's own connection (health checks); its address stands */
        pi->local = 1;
        break;
    default:
        *err = "bad command in proxy header";
        return SMTPD_PROXY_ERR;
    }
    *hdrlen = total; /* the TLVs after the addresses are skipped */
    return SMTPD_PROXY_OK;
}

enum smtpd_proxy_res smtpd_proxy_parse(const unsigned char *buf, size_t len, int eof,
                                       size_t *hdrlen, struct smtpd_proxy_info *pi,
                                       const char **err)
{
    size_t n;

    *err = NULL;
    *hdrlen = 0;
    if (len == 0) {
        if (!eof)
            return SMTPD_PROXY_MORE;
        *err = "EOF";
        return SMTPD_PROXY_ERR;
    }
    /* which version: a mismatch in the first bytes ends it at once, without waiting */
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) == 0)
        return smtpd_proxy_v1(buf, len, eof, hdrlen, pi, err);
    n = len < sizeof(smtpd_proxy_sig) ? len : sizeof(smtpd_proxy_sig);
    if (memcmp(buf, smtpd_proxy_sig, n) == 0)
        return smtpd_proxy_v2(buf, len, eof, hdrlen, pi, err);
    *err = "unrecognized protocol header";
    return SMTPD_PROXY_ERR;
}

void smtpd_proxy_escape(const unsigned char *buf, size_t len, char *out, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return;
    for (size_t i = 0; i < len && o + 5 < n; i++) {
        unsigned char c = buf[i];
        const char *e = c == '\r'   ? "\\r"
                        : c == '\n' ? "\\n"
                        : c == '\t' ? "\\t"
                        : c == '\\' ? "\\\\"
                                    : NULL;
        if (e)
            o += (size_t)snprintf(out + o, n - o, "%s", e);
        else if (c < 32 || c >= 127)
            o += (size_t)snprintf(out + o, n - o, "\\%03o", c);
        else
            out[o++] = (char)c;
    }
    out[o] = 0;
}
