/*
 * smtpd_addr.c - envelope path and ESMTP parameter parsing for MAIL/RCPT.
 * Strict where it protects the queue (lengths, syntax, UTF-8 well-formedness),
 * lenient where Postfix is (a space after the colon, a path without <>).
 * Not here: what the session does with the result.
 */
#include "smtpd_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mta/spool.h"

/* smtpd_addr_atext - RFC 5322 atext (ASCII part). */
static int smtpd_addr_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* smtpd_addr_utf8_ok - well-formed UTF-8 (no overlongs, no surrogates) in [p, p+n). */
static int smtpd_addr_utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

int smtpd_addr_has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

/* smtpd_addr_domain - a domain or address literal at P; returns the end or NULL. */
static const char *smtpd_addr_domain(const char *p)
{
    const char *start = p;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        char lit[64];
        unsigned char bin[16];
        size_t n;
        if (!close)
            return NULL;
        n = (size_t)(close - p - 1);
        if (n == 0 || n >= sizeof(lit))
            return NULL;
        memcpy(lit, p + 1, n);
        lit[n] = 0;
        if (strncasecmp(lit, "IPv6:", 5) == 0) {
            if (inet_pton(AF_INET6, lit + 5, bin) != 1)
                return NULL;
        } else if (inet_pton(AF_INET, lit, bin) != 1) {
            return NULL; /* general address literals are not routable for us */
        }
        return close + 1;
    }
    for (;;) {
        const char *label = p;
        unsigned char c = (unsigned char)*p;
        if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9')))
            return NULL;
        while ((c = (unsigned char)*p) >= 0x80 || (c >= 'a' && c <= 'z') ||
               (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_')
            p++;
        if (p[-1] == '-' || p - label > 63)
            return NULL;
        if (*p != '.')
            break;
        p++;
    }
    if (p - start > SMTPD_DOMAIN_MAX)
        return NULL;
    return p;
}

/* smtpd_addr_local - a dot-string or quoted-string local part at P; end or NULL. */
static const char *smtpd_addr_local(const char *p)
{
    const char *start = p;
    if (*p == '"') {
        p++;
        for (;;) {
            unsigned char c = (unsigned char)*p;
            if (c == '"')
                break;
            if (c == '\\') {
                unsigned char d = (unsigned char)p[1];
                if (d < 32 || d == 127)
                    return NULL;
                p += 2;
                continue;
            }
            if (c < 32 || c == 127)
                return NULL; /* includes NUL: unterminated */
            p++;
        }
        p++;
    } else {
        for (;;) {
            const char *atom = p;
            while (smtpd_addr_atext((unsigned char)*p) || (unsigned char)*p >= 0x80)
                p++;
            if (p == atom)
                return NULL;
            if (*p != '.')
                break;
            p++;
        }
    }
    if (p - start > SMTPD_LOCAL_MAX)
        return NULL;
    return p;
}

int smtpd_addr_parse(const char *text, int allow_null, int utf8, char *out, const char **end)
{
    const char *p = text, *start, *mbox, *q;
    int bracket = 0;
    size_t n;

    out[0] = 0;
    while (*p == ' ')
        p++;
    start = p;
    if (*p == '<') {
        bracket = 1;
        p++;
        if (*p == '>') {
            if (!allow_null)
                return SMTPD_ADDR_ESYNTAX;
            *end = p + 1;
            return SMTPD_ADDR_OK;
        }
        /* source route "@a,@b:" (RFC 5321 obsolete, accepted and dropped) */
        if (*p == '@') {
            for (;;) {
                p++;
                if (!(p = smtpd_addr_domain(p)))
                    return SMTPD_ADDR_ESYNTAX;
                if (*p == ',' && p[1] == '@') {
                    p++;
                    continue;
                }
                if (*p != ':')
                    return SMTPD_ADDR_ESYNTAX;
                p++;
                break;
            }
        }
    }
    mbox = p;
    if (!(q = smtpd_addr_local(p)) || *q != '@')
        return SMTPD_ADDR_ESYNTAX;
    if (!(q = smtpd_addr_domain(q + 1)))
        return SMTPD_ADDR_ESYNTAX;
    n = (size_t)(q - mbox);
    if (bracket) {
        if (*q != '>')
            return SMTPD_ADDR_ESYNTAX;
        q++;
    } else if (*q != 0 && *q != ' ') {
        return SMTPD_ADDR_ESYNTAX;
    }
    if ((size_t)(q - start) > SMTPD_ADDR_MAX || n > SMTPD_ADDR_MAX)
        return SMTPD_ADDR_ESYNTAX;
    if (!smtpd_addr_utf8_ok((const unsigned char *)mbox, n))
        return SMTPD_ADDR_ESYNTAX;
    memcpy(out, mbox, n);
    out[n] = 0;
    *end = q;
    if (!utf8 && smtpd_addr_has_8bit(out)) {
        out[0] = 0;
        return SMTPD_ADDR_EUTF8;
    }
    return SMTPD_ADDR_OK;
}

/* smtpd_xtext_hex - value of a hex digit (upper case only, RFC 3461), -1 otherwise. */
static int smtpd_xtext_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int smtpd_xtext_decode(const char *in, size_t inlen, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+') {
            int h, l;
            if (i + 2 >= inlen)
                return -1;
            h = smtpd_xtext_hex(in[i + 1]);
            l = smtpd_xtext_hex(in[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (unsigned char)(h * 16 + l);
            i += 2;
            if (c < 33 || c > 126)
                return -1; /* xtext encodes printable ASCII only */
        } else if (c < 33 || c > 126 || c == '=') {
            return -1;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

/* smtpd_param - one KEY[=VALUE] token. */
struct smtpd_param {
    const char *key, *val; /* val NULL: no '=' */
    size_t keylen, vallen;
};

/* smtpd_param_next - split the next token off *P; 0 at the end, -1 on a control char. */
static int smtpd_param_next(const char **pp, struct smtpd_param *t, const char **tok,
                            size_t *toklen)
{
    const char *p = *pp, *s;
    while (*p == ' ')
        p++;
    if (!*p)
        return 0;
    s = p;
    while (*p && *p != ' ') {
        if ((unsigned char)*p < 32 || *p == 127)
            return -1;
        p++;
    }
    *tok = s;
    *toklen = (size_t)(p - s);
    t->key = s;
    t->val = memchr(s, '=', *toklen);
    if (t->val) {
        t->keylen = (size_t)(t->val - s);
        t->val++;
        t->vallen = (size_t)(p - t->val);
    } else {
        t->keylen = *toklen;
        t->vallen = 0;
    }
    *pp = p;
    return 1;
}

/* smtpd_param_is - case-insensitive key comparison. */
static int smtpd_param_is(const struct smtpd_param *t, const char *name)
{
    return t->keylen == strlen(name) && strncasecmp(t->key, name, t->keylen) == 0;
}

/* smtpd_param_val_is - case-insensitive value comparison. */
static int smtpd_param_val_is(const char *v, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(v, name, n) == 0;
}

/* smtpd_param_unsupported - the 555 reply naming the token, truncated like Postfix. */
static int smtpd_param_unsupported(const char *tok, size_t len, char *buf, size_t buflen,
                                   const char **reply)
{
    if (len > 100)
        len = 100;
    snprintf(buf, buflen, "555 5.5.4 Unsupported option: %.*s", (int)len, tok);
    *reply = buf;
    return -1;
}

/* smtpd_param_dup - the reply for a parameter given twice. */
static int smtpd_param_dup(const char *name, char *buf, size_t buflen, const char **reply)
{
    snprintf(buf, buflen, "501 5.5.4 Error: duplicate %s parameter", name);
    *reply = buf;
    return -1;
}

int smtpd_mail_params_parse(const char *text, struct smtpd_mail_params *p, char *buf, size_t buflen,
                            const char **reply)
{
    struct smtpd_param t;
    const char *tok;
    size_t toklen;
    int r, seen = 0;

    memset(p, 0, sizeof(*p));
    p->size = -1;
    while ((r = smtpd_param_next(&text, &t, &tok, &toklen)) != 0) {
        if (r < 0) {
            *reply = "501 5.5.4 Syntax: MAIL FROM:<address>";
            return -1;
        }
        if (smtpd_param_is(&t, "SIZE") && t.val) {
            long long v = 0;
            if (seen & 1)
                return smtpd_param_dup("SIZE", buf, buflen, reply);
            seen |= 1;
            if (t.vallen == 0 || t.vallen > 18) {
                *reply = "501 5.5.4 Bad message size syntax";
                return -1;
            }
            for (size_t i = 0; i < t.vallen; i++) {
                if (t.val[i] < '0' || t.val[i] > '9') {
                    *reply = "501 5.5.4 Bad message size syntax";
                    return -1;
                }
                v = v * 10 + (t.val[i] - '0');
            }
            p->size = v;
        } else if (smtpd_param_is(&t, "BODY") && t.val) {
            if (seen & 2)
                return smtpd_param_dup("BODY", buf, buflen, reply);
            seen |= 2;
            p->body_given = 1;
            if (smtpd_param_val_is(t.val, t.vallen, "8BITMIME"))
                p->body_8bit = 1;
            else if (!smtpd_param_val_is(t.val, t.vallen, "7BIT")) {
                *reply = "501 5.5.4 Unsupported BODY parameter value";
                return -1;
            }
        } else if (smtpd_param_is(&t, "SMTPUTF8")) {
            if (seen & 4)
                return smtpd_param_dup("SMTPUTF8", buf, buflen, reply);
            seen |= 4;
            if (t.val) {
                *reply = "501 5.5.4 Bad SMTPUTF8 parameter syntax";
                return -1;
            }
            p->smtputf8 = 1;
        } else if (smtpd_param_is(&t, "RET") && t.val) {
            if (seen & 8)
                return smtpd_param_dup("RET", buf, buflen, reply);
            seen |= 8;
            if (smtpd_param_val_is(t.val, t.vallen, "FULL"))
                p->ret = SPOOL_RET_FULL;
            else if (smtpd_param_val_is(t.val, t.vallen, "HDRS"))
                p->ret = SPOOL_RET_HDRS;
            else {
                *reply = "501 5.5.4 Bad RET parameter syntax";
                return -1;
            }
        } else if (smtpd_param_is(&t, "ENVID") && t.val) {
            if (seen & 16)
                return smtpd_param_dup("ENVID", buf, buflen, reply);
            seen |= 16;
            if (t.vallen == 0 ||
                smtpd_xtext_decode(t.val, t.vallen, p->envid, sizeof(p->envid)) < 0) {
                *reply = "501 5.5.4 Bad ENVID parameter syntax";
                return -1;
            }
            p->envid_given = 1;
        } else if (smtpd_param_is(&t, "AUTH") && t.val) {
            char tmp[SMTPD_ADDR_MAX + 1];
            if (seen & 32)
                return smtpd_param_dup("AUTH", buf, buflen, reply);
            seen |= 32;
            if (t.vallen == 0 || smtpd_xtext_decode(t.val, t.vallen, tmp, sizeof(tmp)) < 0) {
                *reply = "501 5.5.4 Bad AUTH parameter syntax";
                return -1;
            }
            p->auth_given = 1;
        } else {
            return smtpd_param_unsupported(tok, toklen, buf, buflen, reply);
        }
    }
    return 0;
}

/* smtpd_notify_parse - NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY. -1 bad. */
static int smtpd_notify_parse(const char *v, size_t n)
{
    int bits = 0;
    size_t i = 0;
    if (n == 0)
        return -1;
    while (i <= n) {
        size_t j = i;
        int b;
        while (j < n && v[j] != ',')
            j++;
        if (smtpd_param_val_is(v + i, j - i, "NEVER"))
            b = SPOOL_NOTIFY_NEVER;
        else if (smtpd_param_val_is(v + i, j - i, "SUCCESS"))
            b = SPOOL_NOTIFY_SUCCESS;
        else if (smtpd_param_val_is(v + i, j - i, "FAILURE"))
            b = SPOOL_NOTIFY_FAILURE;
        else if (smtpd_param_val_is(v + i, j - i, "DELAY"))
            b = SPOOL_NOTIFY_DELAY;
        else
            return -1;
        if (bits & b)
            return -1;
        bits |= b;
        i = j + 1;
    }
    if ((bits & SPOOL_NOTIFY_NEVER) && bits != SPOOL_NOTIFY_NEVER)
        return -1; /* NEVER must stand alone (RFC 3461 4.1) */
    return bits;
}

int smtpd_rcpt_params_parse(const char *text, struct smtpd_rcpt_params *p, char *buf, size_t buflen,
                            const char **reply)
{
    struct smtpd_param t;
    const char *tok;
    size_t toklen;
    int r, seen = 0;

    memset(p, 0, sizeof(*p));
    while ((r = smtpd_param_next(&text, &t, &tok, &toklen)) != 0) {
        if (r < 0) {
            *reply = "501 5.5.4 Syntax: RCPT TO:<address>";
            return -1;
        }
        if (smtpd_param_is(&t, "NOTIFY") && t.val) {
            int bits;
            if (seen & 1)
                return smtpd_param_dup("NOTIFY", buf, buflen, reply);
            seen |= 1;
            if ((bits = smtpd_notify_parse(t.val, t.vallen)) < 0) {
                *reply = "501 5.5.4 Error: Bad NOTIFY parameter syntax";
                return -1;
            }
            p->notify = bits;
        } else if (smtpd_param_is(&t, "ORCPT") && t.val) {
            const char *semi = memchr(t.val, ';', t.vallen);
            size_t tlen;
            char dec[SMTPD_ORCPT_MAX + 1];
            if (seen & 2)
                return smtpd_param_dup("ORCPT", buf, buflen, reply);
            seen |= 2;
            tlen = semi ? (size_t)(semi - t.val) : 0;
            if (!semi || tlen == 0 || tlen > 32 || t.vallen - tlen - 1 == 0 ||
                smtpd_xtext_decode(semi + 1, t.vallen - tlen - 1, dec, sizeof(dec)) < 0 ||
                tlen + 1 + strlen(dec) > SMTPD_ORCPT_MAX) {
                *reply = "501 5.5.4 Error: Bad ORCPT parameter syntax";
                return -1;
            }
            for (size_t i = 0; i < tlen; i++) {
                char c = t.val[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-')) {
                    *reply = "501 5.5.4 Error: Bad ORCPT parameter syntax";
                    return -1;
                }
            }
            memcpy(p->orcpt, t.val, tlen); /* fits: checked against SMTPD_ORCPT_MAX above */
            p->orcpt[tlen] = ';';
            memcpy(p->orcpt + tlen + 1, dec, strlen(dec) + 1);
        } else {
            return smtpd_param_unsupported(tok, toklen, buf, buflen, reply);
        }
    }
    return 0;
}
