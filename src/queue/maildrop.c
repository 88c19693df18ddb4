/*
 * maildrop.c - check and parse the maildrop format (include/mta/maildrop.h).
 * Shared by postdrop (which checks sendmail's stream before writing a file)
 * and pickup (which checks the file again: local users can influence it).
 * Strict on purpose: a fixed order of lines, bounded sizes, decimal numbers
 * checked for range, no control bytes; anything else is refused with a reason.
 * Not here: any file I/O.
 */
#include <stdlib.h>
#include <string.h>

#include "mta/maildrop.h"

int maildrop_text_ok(const char *t, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return 1;
}

int maildrop_addr_ok(const char *a, int empty_ok)
{
    size_t len = strlen(a);
    int quoted = 0;

    if (len == 0)
        return empty_ok;
    if (len > MAILDROP_ADDR_MAX || !maildrop_text_ok(a, len))
        return 0;
    for (const char *p = a; *p; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (*p == '\\' && quoted && p[1])
            p++;
        else if (!quoted && (*p == ' ' || *p == '<' || *p == '>'))
            return 0;
    }
    return !quoted;
}

/* maildrop_number - a decimal number in [0, MAX] from S (LEN bytes); -1 when not one. */
static long long maildrop_number(const char *s, size_t len, long long max)
{
    long long v = 0;

    if (len == 0 || len > 18 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

struct maildrop_cursor {
    const char *p, *end;
    const char *line; /* the current line without its LF */
    size_t len;
};

/* maildrop_next - the next envelope line into C; 0, or -1 when there is none or it is too long. */
static int maildrop_next(struct maildrop_cursor *c)
{
    size_t avail = (size_t)(c->end - c->p);
    const char *nl = memchr(c->p, '\n', avail < MAILDROP_LINE_MAX ? avail : MAILDROP_LINE_MAX);

    if (!nl)
        return -1;
    c->line = c->p;
    c->len = (size_t)(nl - c->p);
    c->p = nl + 1;
    return 0;
}

/* maildrop_key - when the current line is "KEY VALUE", *VAL and *VLEN the value and 1; else 0. */
static int maildrop_key(const struct maildrop_cursor *c, const char *key, const char **val,
                        size_t *vlen)
{
    size_t k = strlen(key);

    if (c->len < k + 1 || memcmp(c->line, key, k) != 0 || c->line[k] != ' ')
        return 0;
    *val = c->line + k + 1;
    *vlen = c->len - k - 1;
    return 1;
}

/* maildrop_dup - a NUL-terminated copy of LEN bytes at S (NULL when out of memory). */
static char *maildrop_dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);

    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}

void maildrop_free(struct maildrop *m)
{
    if (!m)
        return;
    free(m->sender);
    free(m->fullname);
    for (int i = 0; i < m->nrcpt; i++)
        free(m->rcpt[i]);
    free(m->rcpt);
    memset(m, 0, sizeof(*m));
}

/* maildrop_fail - free what OUT holds, set *WHY, -1. */
static int maildrop_fail(struct maildrop *out, const char **why, const char *text)
{
    maildrop_free(out);
    *why = text;
    return -1;
}

int maildrop_parse(const char *buf, size_t len, enum maildrop_kind kind, long long content_max,
                   struct maildrop *out, const char **why)
{
    struct maildrop_cursor c = {.p = buf, .end = buf + len};
    const char *v;
    size_t vl;
    long long n;

    memset(out, 0, sizeof(*out));
    out->uid = -1;
    out->time = -1;
    if (maildrop_next(&c) < 0 || c.len != strlen(MAILDROP_MAGIC) ||
        memcmp(c.line, MAILDROP_MAGIC, c.len) != 0)
        return maildrop_fail(out, why, "not a maildrop file (first line)");
    if (kind == MAILDROP_FILE) {
        if (maildrop_next(&c) < 0 || !maildrop_key(&c, "uid", &v, &vl) ||
            (n = maildrop_number(v, vl, 0x7fffffffLL)) < 0)
            return maildrop_fail(out, why, "bad or missing uid line");
        out->uid = (long)n;
        if (maildrop_next(&c) < 0 || !maildrop_key(&c, "time", &v, &vl) ||
            (n = maildrop_number(v, vl, MAILDROP_TIME_MAX)) < 0)
            return maildrop_fail(out, why, "bad or missing time line");
        out->time = n;
    }
    /* "sender ADDR", or "sender " for the null sender */
    if (maildrop_next(&c) < 0 || !maildrop_key(&c, "sender", &v, &vl))
        return maildrop_fail(out, why, "missing sender line");
    if (!(out->sender = maildrop_dup(v, vl)))
        return maildrop_fail(out, why, "out of memory");
    if (strlen(out->sender) != vl || !maildrop_addr_ok(out->sender, 1))
        return maildrop_fail(out, why, "bad sender address");
    if (maildrop_next(&c) < 0)
        return maildrop_fail(out, why, "truncated envelope");
    if (maildrop_key(&c, "fullname", &v, &vl)) {
        if (vl > MAILDROP_FULLNAME_MAX || !maildrop_text_ok(v, vl))
            return maildrop_fail(out, why, "bad fullname");
        if (!(out->fullname = maildrop_dup(v, vl)))
            return maildrop_fail(out, why, "out of memory");
        if (maildrop_next(&c) < 0)
            return maildrop_fail(out, why, "truncated envelope");
    } else if (!(out->fullname = maildrop_dup("", 0)))
        return maildrop_fail(out, why, "out of memory");
    if (c.len == 4 && memcmp(c.line, "8bit", 4) == 0) {
        out->body_8bit = 1;
        if (maildrop_next(&c) < 0)
            return maildrop_fail(out, why, "truncated envelope");
    }
    while (maildrop_key(&c, "rcpt", &v, &vl)) {
        char *a;
        if (out->nrcpt == MAILDROP_RCPT_MAX)
            return maildrop_fail(out, why, "too many recipients");
        if (out->nrcpt % 64 == 0) {
            char **r = realloc(out->rcpt, sizeof(*r) * (size_t)(out->nrcpt + 64));
            if (!r)
                return maildrop_fail(out, why, "out of memory");
            out->rcpt = r;
        }
        if (!(a = maildrop_dup(v, vl)))
            return maildrop_fail(out, why, "out of memory");
        out->rcpt[out->nrcpt++] = a;
        if (strlen(a) != vl || !maildrop_addr_ok(a, 0))
            return maildrop_fail(out, why, "bad recipient address");
        if (maildrop_next(&c) < 0)
            return maildrop_fail(out, why, "truncated envelope");
    }
    if (out->nrcpt == 0)
        return maildrop_fail(out, why, "no recipients");
    if (!maildrop_key(&c, "content", &v, &vl) || (n = maildrop_number(v, vl, 1LL << 60)) < 0)
        return maildrop_fail(out, why, "bad or missing content line");
    if (n > content_max)
        return maildrop_fail(out, why, "message file too big");
    if ((size_t)(c.end - c.p) < (size_t)n + 4 || memcmp(c.p + n, "end\n", 4) != 0 ||
        (size_t)(c.end - c.p) != (size_t)n + 4)
        return maildrop_fail(out, why, "content length does not match, or no end line");
    if (n > 0 && c.p[n - 1] != '\n')
        return maildrop_fail(out, why, "content does not end in a newline");
    out->content = c.p;
    out->content_len = (size_t)n;
    return 0;
}
