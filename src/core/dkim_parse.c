/*
 * dkim_parse.c - the pure parts of DKIM signing, kept apart so the unit tests
 * reach them without a key or a loop: the dkim_headers and dkim_domains lists,
 * the private key check (OpenSSL: RSA >= 1024 bits or Ed25519, no password) with
 * the public key for the DNS record, the From: domain, and header field splitting.
 * Not here: libopendkim (dkim.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "mta/dkim.h"

/* dkim_name_ok - 1 when TOK[0..N) may be a header field name (or a domain with IS_DOMAIN). */
static int dkim_name_ok(const char *tok, size_t n, int is_domain)
{
    if (n == 0 || n > (is_domain ? DKIM_DOMAIN_MAX : DKIM_HDRNAME_MAX))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)tok[i];
        if (is_domain ? !(isalnum(ch) || ch == '-' || (ch == '.' && i > 0 && tok[i - 1] != '.'))
                      : (ch < 33 || ch > 126 || ch == ':'))
            return 0;
    }
    return !is_domain || tok[n - 1] != '.';
}

int dkim_parse_names(const char *list, int is_domain, char **out, int max, int *n, char *why,
                     size_t whylen)
{
    const char *p = list;

    *n = 0;
    while (*p) {
        size_t len = strcspn(p, ", \t");
        if (len == 0) {
            p++;
            continue;
        }
        if (!dkim_name_ok(p, len, is_domain)) {
            snprintf(why, whylen, "\"%.*s\" is not a %s", (int)(len > 80 ? 80 : len), p,
                     is_domain ? "domain name" : "header field name");
            goto fail;
        }
        if (*n == max) {
            snprintf(why, whylen, "more than %d names", max);
            goto fail;
        }
        if (!(out[*n] = strndup(p, len))) {
            snprintf(why, whylen, "out of memory");
            goto fail;
        }
        for (char *c = out[*n]; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        (*n)++;
        p += len;
    }
    return 0;
fail:
    while (*n > 0)
        free(out[--(*n)]);
    return -1;
}

/* dkim_pem_password_cb - a key that asks for a password is refused (no prompt at start-up). */
static int dkim_pem_password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)u = 1;
    return -1;
}

int dkim_parse_key(const char *pem, size_t len, enum dkim_key_type *type, int *bits, char *pub,
                   size_t publen, char *why, size_t whylen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    int asked = 0, r = -1;
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, dkim_pem_password_cb, &asked) : NULL;
    unsigned char raw[64], *der = NULL;
    size_t rawlen = sizeof(raw);
    int derlen = 0;

    BIO_free(bio);
    if (!k) {
        snprintf(why, whylen, "%s",
                 asked ? "the key is password-protected (remove the password: openssl pkey "
                         "-in protected.key -out dkim.key)"
                       : "not a PEM private key");
        return -1;
    }
    switch (EVP_PKEY_base_id(k)) {
    case EVP_PKEY_RSA:
        *type = DKIM_KEY_RSA;
        *bits = EVP_PKEY_bits(k);
        if (*bits < 1024) { /* RFC 8301 3.2: verifiers must not accept smaller keys */
            snprintf(why, whylen, "an RSA key of %d bits; DKIM needs at least 1024 (2048 advised)",
                     *bits);
            goto out;
        }
        derlen = i2d_PUBKEY(k, &der); /* p= for k=rsa: the SubjectPublicKeyInfo */
        break;
    case EVP_PKEY_ED25519:
        *type = DKIM_KEY_ED25519;
        *bits = 256;
        /* p= for k=ed25519 (RFC 8463): the 32 raw bytes */
        if (EVP_PKEY_get_raw_public_key(k, raw, &rawlen) == 1)
            derlen = (int)rawlen;
        break;
    default:
        snprintf(why, whylen, "a %s key; DKIM signs with RSA or Ed25519 only",
                 OBJ_nid2sn(EVP_PKEY_base_id(k)));
        goto out;
    }
    if (derlen <= 0 || publen < 4 * (((size_t)derlen + 2) / 3) + 1) {
        snprintf(why, whylen, "cannot derive the public key");
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)pub, der ? der : raw, derlen);
    r = 0;
out:
    OPENSSL_free(der);
    EVP_PKEY_free(k);
    return r;
}

/* dkim_skip_cfws - past a quoted string or (nested) comment starting at P, within END. */
static const char *dkim_skip_special(const char *p, const char *end)
{
    if (*p == '"') {
        for (p++; p < end && *p != '"'; p++)
            if (*p == '\\' && p + 1 < end)
                p++;
        return p < end ? p + 1 : end;
    }
    int depth = 0;
    for (; p < end; p++) {
        if (*p == '\\' && p + 1 < end)
            p++;
        else if (*p == '(')
            depth++;
        else if (*p == ')' && --depth == 0)
            return p + 1;
    }
    return end;
}

int dkim_from_domain(const char *value, size_t len, char *out, size_t outlen)
{
    const char *p = value, *end = value + len, *at = NULL, *lt = NULL, *gt = NULL;
    int angle = 0;

    /* one address: quoted strings and comments may hide '@', ',' and '<' */
    while (p < end) {
        if (*p == '"' || *p == '(') {
            p = dkim_skip_special(p, end);
            continue;
        }
        if (*p == ',' && !angle)
            return -1; /* more than one address: RFC 6376 leaves the signer without a d= */
        if (*p == '<' && !lt) {
            lt = p;
            angle = 1;
            at = NULL; /* an '@' in the display name does not count */
        } else if (*p == '>' && angle) {
            gt = p;
            angle = 0;
        } else if (*p == '@' && (!lt || angle))
            at = p;
        p++;
    }
    if (!at || (lt && !gt))
        return -1;
    const char *d = at + 1, *de = lt ? gt : end;
    /* the domain ends at the first space or comment (a trailing one without <>) */
    size_t n = 0;
    while (d < de && (*d == ' ' || *d == '\t' || *d == '\r' || *d == '\n'))
        d++;
    while (d + n < de && !strchr(" \t\r\n(", d[n]))
        n++;
    if (!dkim_name_ok(d, n, 1) || n + 1 > outlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)d[i]);
    out[n] = 0;
    return 0;
}

size_t dkim_split_header(const char *p, size_t len, size_t *field_len)
{
    size_t i = 0;

    if (len == 0 || (len >= 2 && p[0] == '\r' && p[1] == '\n'))
        return 0;
    for (;;) {
        const char *nl = memchr(p + i, '\n', len - i);
        if (!nl) {
            *field_len = len;
            return len;
        }
        i = (size_t)(nl - p) + 1;
        if (i < len && (p[i] == ' ' || p[i] == '\t'))
            continue; /* a folded line belongs to the same field */
        *field_len = i - ((i >= 2 && p[i - 2] == '\r') ? 2 : 1);
        return i;
    }
}
