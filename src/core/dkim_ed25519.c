/*
 * dkim_ed25519.c - ed25519-sha256 DKIM signatures (RFC 8463) made here with
 * OpenSSL instead of libopendkim: Debian 12's libopendkim 2.11 signs them but
 * leaks about 470 bytes per signature (its key load for Ed25519 is never freed;
 * measured with ASan, docs/dkim.md), which a relay that runs for months cannot
 * carry. What it takes is small: relaxed/relaxed canonicalization (RFC 6376
 * 3.4.2, 3.4.4), the body hash, the header hash over the selected fields and
 * the signature field itself with an empty b=, and one Ed25519 signature of
 * that SHA-256 digest. RSA stays with libopendkim (dkim.c).
 * Not here: which messages are signed, the header field split (dkim_parse.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "dkim_int.h"
#include "mta/dkim.h"

struct dkim_ed {
    EVP_MD_CTX *body; /* SHA-256 of the relaxed body */
    int wsp;          /* WSP seen in the line, not yet written (one SP if content follows) */
    int cr;           /* a CR seen, its LF not yet */
    int content;      /* the line has content */
    long long blank;  /* empty lines held back (dropped at the end of the body) */
    int err;
    size_t olen;             /* canonical bytes in out, not yet hashed */
    unsigned char out[8192]; /* hashing byte by byte would cost 4x */
};

struct dkim_ed *dkim_ed_new(void)
{
    struct dkim_ed *e = calloc(1, sizeof(*e));
    if (e &&
        (!(e->body = EVP_MD_CTX_new()) || EVP_DigestInit_ex(e->body, EVP_sha256(), NULL) != 1)) {
        dkim_ed_free(e);
        return NULL;
    }
    return e;
}

void dkim_ed_free(struct dkim_ed *e)
{
    if (!e)
        return;
    EVP_MD_CTX_free(e->body);
    free(e);
}

/* dkim_ed_flush - the canonical bytes gathered so far into the hash. */
static void dkim_ed_flush(struct dkim_ed *e)
{
    if (e->olen > 0 && EVP_DigestUpdate(e->body, e->out, e->olen) != 1)
        e->err = 1;
    e->olen = 0;
}

/* dkim_ed_put - bytes of the canonical body (N <= 2) for the hash. */
static void dkim_ed_put(struct dkim_ed *e, const void *p, size_t n)
{
    if (e->olen + n > sizeof(e->out))
        dkim_ed_flush(e);
    memcpy(e->out + e->olen, p, n);
    e->olen += n;
}

/* dkim_ed_run - N more content bytes of the current line, as they are. */
static void dkim_ed_run(struct dkim_ed *e, const unsigned char *p, size_t n)
{
    if (e->olen + n > sizeof(e->out))
        dkim_ed_flush(e);
    if (n >= sizeof(e->out)) {
        if (EVP_DigestUpdate(e->body, p, n) != 1)
            e->err = 1;
        return;
    }
    memcpy(e->out + e->olen, p, n);
    e->olen += n;
}

/* dkim_ed_char - one content byte: first the empty lines held back and a pending SP. */
static void dkim_ed_char(struct dkim_ed *e, unsigned char c)
{
    for (; e->blank > 0; e->blank--)
        dkim_ed_put(e, "\r\n", 2);
    if (e->wsp)
        dkim_ed_put(e, " ", 1);
    e->wsp = 0;
    e->content = 1;
    dkim_ed_put(e, &c, 1);
}

/* dkim_ed_eol - the end of a line: trailing WSP goes; an empty line is held back. */
static void dkim_ed_eol(struct dkim_ed *e)
{
    e->wsp = 0;
    if (e->content)
        dkim_ed_put(e, "\r\n", 2);
    else
        e->blank++;
    e->content = 0;
}

void dkim_ed_body(struct dkim_ed *e, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (!e->cr && c != ' ' && c != '\t' && c != '\r') {
            /* a run of plain bytes: the first settles what is pending, the rest go as is */
            size_t r = i + 1;
            while (r < n && p[r] != ' ' && p[r] != '\t' && p[r] != '\r')
                r++;
            dkim_ed_char(e, c);
            dkim_ed_run(e, p + i + 1, r - i - 1);
            i = r - 1;
            continue;
        }
        if (e->cr) {
            e->cr = 0;
            if (c == '\n') {
                dkim_ed_eol(e);
                continue;
            }
            dkim_ed_char(e, '\r'); /* a bare CR is content */
        }
        if (c == '\r')
            e->cr = 1;
        else if (c == ' ' || c == '\t')
            e->wsp = 1;
        else
            dkim_ed_char(e, c);
    }
}

/* dkim_ed_canon_header - FIELD[0..LEN) relaxed (RFC 6376 3.4.2) onto OUT: the name in lower
 * case, no WSP around the colon, unfolded, WSP runs as one SP, none at the end. */
static size_t dkim_ed_canon_header(const char *f, size_t len, char *out)
{
    size_t i = 0, o = 0;
    int wsp = 0;

    while (i < len && f[i] != ':' && f[i] != ' ' && f[i] != '\t') {
        char c = f[i++];
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    while (i < len && f[i] != ':')
        i++; /* WSP before the colon */
    out[o++] = ':';
    for (i++; i < len && strchr(" \t\r\n", f[i]); i++)
        ; /* WSP (and folds) after the colon */
    for (; i < len; i++) {
        char c = f[i];
        if (c == '\r' || c == '\n')
            continue; /* unfold */
        if (c == ' ' || c == '\t') {
            wsp = 1;
            continue;
        }
        if (wsp)
            out[o++] = ' ';
        wsp = 0;
        out[o++] = c;
    }
    return o;
}

/* dkim_ed_b64 - base64 of P[0..N) into a malloc'd string. */
static char *dkim_ed_b64(const unsigned char *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (s)
        EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    return s;
}

/* dkim_ed_add - append TEXT to the field being built in *BUF (*LEN used, *COL its column),
 * folded onto a new line first when it would pass 78 columns. */
static int dkim_ed_add(char **buf, size_t *len, size_t *cap, size_t *col, const char *text)
{
    size_t n = strlen(text);
    if (*len + n + 4 > *cap) {
        size_t c = (*cap + n + 4) * 2;
        char *b = realloc(*buf, c);
        if (!b)
            return -1;
        *buf = b;
        *cap = c;
    }
    if (*col + n > 78 && *col > 1) {
        memcpy(*buf + *len, "\r\n\t", 3);
        *len += 3;
        *col = 8;
    } else if (*len > 0 && (*buf)[*len - 1] == ';') {
        (*buf)[(*len)++] = ' ';
        (*col)++;
    }
    memcpy(*buf + *len, text, n + 1);
    *len += n;
    *col += n;
    return 0;
}

char *dkim_ed_sign(struct dkim_ed *e, EVP_PKEY *key, const char *h, size_t hlen, char *const *names,
                   int nnames, const char *domain, const char *selector, char *why, size_t whylen)
{
    unsigned char bh[32], digest[32], sig[64];
    unsigned int bhlen = 0, dlen = 0;
    size_t siglen = sizeof(sig), len = 0, cap = 0, col = 0, off, flen, step, clen;
    char *field = NULL, *bh64 = NULL, *b64 = NULL, *canon = malloc(hlen + 16), tag[600];
    char *result = NULL;
    char *hnames = calloc(1, hlen + 8);
    EVP_MD_CTX *hh = EVP_MD_CTX_new(), *sc = EVP_MD_CTX_new();
    const char *fail = "out of memory";

    if (!canon || !hnames || !hh || !sc)
        goto out;
    /* the end of the body: a last line without CRLF gets one, empty lines at the end go */
    if (e->cr)
        dkim_ed_char(e, '\r');
    e->cr = 0;
    if (e->content)
        dkim_ed_eol(e);
    dkim_ed_flush(e);
    if (e->err || EVP_DigestFinal_ex(e->body, bh, &bhlen) != 1 ||
        !(bh64 = dkim_ed_b64(bh, bhlen))) {
        fail = "body hash failed";
        goto out;
    }
    if (EVP_DigestInit_ex(hh, EVP_sha256(), NULL) != 1)
        goto out;
    /* the selected fields: for each name, every instance from the bottom up (RFC 6376 5.4.2) */
    for (int i = 0; i < nnames; i++) {
        size_t nl = strlen(names[i]);
        const char *inst[256];
        int ninst = 0;
        for (off = 0; (step = dkim_split_header(h + off, hlen - off, &flen)) > 0; off += step) {
            size_t k = 0;
            while (k < flen && h[off + k] != ':' && h[off + k] != ' ' && h[off + k] != '\t')
                k++;
            if (k != nl || strncasecmp(h + off, names[i], nl))
                continue;
            if (ninst == 256) /* keep the last 256: verifiers take instances from the bottom */
                memmove(inst, inst + 1, 255 * sizeof(inst[0]));
            inst[ninst < 256 ? ninst++ : 255] = h + off;
        }
        while (ninst-- > 0) {
            dkim_split_header(inst[ninst], hlen - (size_t)(inst[ninst] - h), &flen);
            clen = dkim_ed_canon_header(inst[ninst], flen, canon);
            memcpy(canon + clen, "\r\n", 2);
            if (EVP_DigestUpdate(hh, canon, clen + 2) != 1)
                goto out;
            if (*hnames)
                strcat(hnames, ":");
            strncat(hnames, inst[ninst], nl);
        }
    }
    /* the field with an empty b=, as it will be written: its relaxed form ends the hash */
    snprintf(tag, sizeof(tag), "DKIM-Signature: v=1;");
    col = 0;
    if (dkim_ed_add(&field, &len, &cap, &col, tag) < 0)
        goto out;
    const char *tags[] = {"a=ed25519-sha256;", "c=relaxed/relaxed;", NULL, NULL, NULL, NULL};
    char d[DKIM_DOMAIN_MAX + 8], s[80], t[40], *bht = NULL, *ht = NULL;
    snprintf(d, sizeof(d), "d=%s;", domain);
    snprintf(s, sizeof(s), "s=%s;", selector);
    snprintf(t, sizeof(t), "t=%lld;", (long long)time(NULL));
    tags[2] = d;
    tags[3] = s;
    tags[4] = t;
    if (asprintf(&bht, "bh=%s;", bh64) < 0)
        bht = NULL;
    if (asprintf(&ht, "h=%s;", hnames) < 0)
        ht = NULL;
    int ok = bht && ht;
    for (int i = 0; ok && tags[i]; i++)
        ok = dkim_ed_add(&field, &len, &cap, &col, tags[i]) == 0;
    ok = ok && dkim_ed_add(&field, &len, &cap, &col, bht) == 0 &&
         dkim_ed_add(&field, &len, &cap, &col, ht) == 0;
    col = 79; /* b= on a line of its own: the value follows it */
    ok = ok && dkim_ed_add(&field, &len, &cap, &col, "b=") == 0;
    free(bht);
    free(ht);
    char *bigger = ok ? realloc(canon, len + hlen + 16) : NULL;
    if (!bigger)
        goto out;
    canon = bigger;
    clen = dkim_ed_canon_header(field, len, canon); /* without a CRLF: RFC 6376 3.7 */
    if (EVP_DigestUpdate(hh, canon, clen) != 1 || EVP_DigestFinal_ex(hh, digest, &dlen) != 1)
        goto out;
    /* RFC 8463 3: pure Ed25519 over the SHA-256 digest of the header data */
    if (EVP_DigestSignInit(sc, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(sc, sig, &siglen, digest, dlen) != 1) {
        fail = "Ed25519 signature failed";
        goto out;
    }
    if (!(b64 = dkim_ed_b64(sig, siglen)) || !(result = realloc(field, len + strlen(b64) + 3)))
        goto out;
    field = NULL;
    snprintf(result + len, strlen(b64) + 3, "%s\r\n", b64);
    fail = NULL;
out:
    if (fail)
        snprintf(why, whylen, "%s", fail);
    free(canon);
    EVP_MD_CTX_free(hh);
    EVP_MD_CTX_free(sc);
    free(field);
    free(bh64);
    free(b64);
    free(hnames);
    return result;
}
