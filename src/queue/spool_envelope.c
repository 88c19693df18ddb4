/*
 * spool_envelope.c - the envelope's text format at the head of each queue file
 * (docs/spool-format.md): a version line, "key value" lines, one "rcpt" line per
 * recipient and an end line. Every value is %-escaped so that no CR, LF, NUL,
 * space or non-ASCII byte can reach the file: a hostile address cannot forge a
 * field or a line. Every field has a length limit (include/mta/spool.h) and
 * never holds a control byte, checked both when writing and when reading: a
 * damaged or crafted file cannot make the relay overflow a buffer or send a
 * command of its own to the next hop. The parser is strict about what it needs
 * and rejects anything malformed (the caller quarantines the file); unknown keys
 * are skipped so that a later version can add fields.
 * Not here: file handling beyond reading the head of one fd.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mta/text.h"
#include "spool_int.h"

/* --- encoding --- */

struct spool_sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

/* spool_sbuf_add - append N bytes; remembers out-of-memory instead of failing each call. */
static void spool_sbuf_add(struct spool_sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void spool_sbuf_str(struct spool_sbuf *b, const char *s)
{
    spool_sbuf_add(b, s, strlen(s));
}

/* spool_sbuf_value - append S %-escaped: "-" stands for the empty string, so a
 * literal leading '-' is escaped; only printable ASCII other than '%' is kept. */
static void spool_sbuf_value(struct spool_sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s || !*s) {
        spool_sbuf_add(b, "-", 1);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p > 0x20 && *p < 0x7F && *p != '%' && !(*p == '-' && p == (const unsigned char *)s)) {
            spool_sbuf_add(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 0xF]};
            spool_sbuf_add(b, e, 3);
        }
    }
}

static void spool_sbuf_line(struct spool_sbuf *b, const char *key, const char *value)
{
    spool_sbuf_str(b, key);
    spool_sbuf_add(b, " ", 1);
    spool_sbuf_value(b, value);
    spool_sbuf_add(b, "\n", 1);
}

static void spool_sbuf_num(struct spool_sbuf *b, const char *key, long long v)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s %lld\n", key, v);
    spool_sbuf_str(b, tmp);
}

/* spool_has_ctl - 1 when S holds a control byte (C0 or DEL); 8-bit bytes (UTF-8) are fine. */
static int spool_has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7F)
            return 1;
    return 0;
}

/* spool_addr_ok - S (N bytes) fits an RFC 5321 path: the whole, its local part and its
 * domain within their limits, no control byte. */
static int spool_addr_ok(const char *s, size_t n)
{
    const char *at = n ? memrchr(s, '@', n) : NULL;
    size_t local = at ? (size_t)(at - s) : n;
    return n <= SPOOL_ADDR_MAX && local <= SPOOL_LOCAL_MAX &&
           (!at || n - local - 1 <= SPOOL_DOMAIN_MAX) && !spool_has_ctl(s, n);
}

/* spool_text_ok - S (N bytes) has at most MAX bytes and no control byte. */
static int spool_text_ok(const char *s, size_t n, size_t max)
{
    return n <= max && !spool_has_ctl(s, n);
}

static int spool_str_ok(const char *s, size_t max)
{
    return spool_text_ok(s ? s : "", s ? strlen(s) : 0, max);
}

/* spool_env_valid - every field the next hop will see is within its limits (smtpd
 * enforces the same, so this refuses only a caller's bug, before anything is acknowledged). */
static int spool_env_valid(const struct spool_envelope *env)
{
    if (!env->sender || !spool_addr_ok(env->sender, strlen(env->sender)) ||
        !spool_str_ok(env->envid, SPOOL_ENVID_MAX) || env->size < 0 || env->size > SPOOL_SIZE_MAX ||
        env->arrival_us < 0 || env->arrival_us > SPOOL_TIME_US_MAX)
        return 0;
    for (int i = 0; i < env->nrcpt; i++)
        if (!env->rcpt[i].addr || !spool_addr_ok(env->rcpt[i].addr, strlen(env->rcpt[i].addr)) ||
            !spool_str_ok(env->rcpt[i].orcpt, SPOOL_ORCPT_MAX))
            return 0;
    return 1;
}

/* spool_sbuf_info - an informational field (HELO, client name): control bytes become '?'
 * and it is cut at MAX bytes, so that what is written is always read back. */
static void spool_sbuf_info(struct spool_sbuf *b, const char *key, const char *value, size_t max)
{
    size_t n = value ? strnlen(value, max) : 0;
    char *copy = malloc(n + 1);
    if (!copy) {
        b->oom = 1;
        return;
    }
    memcpy(copy, value ? value : "", n);
    copy[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)copy[i] < 0x20 || (unsigned char)copy[i] == 0x7F)
            copy[i] = '?';
    spool_sbuf_line(b, key, copy);
    free(copy);
}

static const struct {
    int bit;
    const char *name;
} spool_notify_names[] = {
    {SPOOL_NOTIFY_NEVER, "NEVER"},
    {SPOOL_NOTIFY_SUCCESS, "SUCCESS"},
    {SPOOL_NOTIFY_FAILURE, "FAILURE"},
    {SPOOL_NOTIFY_DELAY, "DELAY"},
};
#define SPOOL_NNOTIFY (sizeof spool_notify_names / sizeof spool_notify_names[0])

char *spool_env_encode(const struct spool_envelope *env, size_t *len)
{
    struct spool_sbuf b = {0};
    if (!spool_env_valid(env)) {
        errno = EINVAL;
        return NULL;
    }
    spool_sbuf_str(&b, SPOOL_VERSION_LINE "\n");
    spool_sbuf_line(&b, "id", env->id);
    spool_sbuf_num(&b, "arrival", env->arrival_us);
    spool_sbuf_num(&b, "size", env->size);
    spool_sbuf_line(&b, "sender", env->sender);
    spool_sbuf_line(&b, "envid", env->envid);
    spool_sbuf_str(&b, env->ret == SPOOL_RET_FULL   ? "ret full\n"
                       : env->ret == SPOOL_RET_HDRS ? "ret hdrs\n"
                                                    : "ret -\n");
    spool_sbuf_num(&b, "smtputf8", env->smtputf8 ? 1 : 0);
    spool_sbuf_str(&b, env->body_8bit ? "body 8bitmime\n" : "body 7bit\n");
    spool_sbuf_info(&b, "client_name", env->client_name, SPOOL_CLIENT_NAME_MAX);
    spool_sbuf_info(&b, "client_addr", env->client_addr, SPOOL_CLIENT_ADDR_MAX);
    spool_sbuf_info(&b, "helo", env->helo, SPOOL_HELO_MAX);
    for (int i = 0; i < env->nrcpt; i++) {
        const struct spool_rcpt *r = &env->rcpt[i];
        spool_sbuf_str(&b, "rcpt ");
        int any = 0;
        for (size_t k = 0; k < SPOOL_NNOTIFY; k++) {
            if (r->notify & spool_notify_names[k].bit) {
                if (any)
                    spool_sbuf_add(&b, ",", 1);
                spool_sbuf_str(&b, spool_notify_names[k].name);
                any = 1;
            }
        }
        if (!any)
            spool_sbuf_add(&b, "-", 1);
        spool_sbuf_add(&b, " ", 1);
        spool_sbuf_value(&b, r->orcpt);
        spool_sbuf_add(&b, " ", 1);
        spool_sbuf_value(&b, r->addr);
        spool_sbuf_add(&b, "\n", 1);
    }
    spool_sbuf_str(&b, SPOOL_END_LINE "\n");
    if (b.oom) {
        free(b.p);
        errno = ENOMEM;
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* --- decoding --- */

static int spool_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* spool_unescape - decode the token S[0..N) into a malloc'd string; NULL when
 * malformed (bad escape, an escaped control byte, a raw byte that is never written)
 * or longer than MAX decoded bytes. */
static char *spool_unescape(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > 3 * max + 3)
        return NULL;
    if (n == 1 && s[0] == '-')
        return strdup("");
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? spool_hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? spool_hexval(s[i + 2]) : -1;
            /* no control byte (NUL, CR, LF, ESC, ..., DEL) in any field: an address
             * with CR LF would be a command of its own toward the next hop */
            if (hi < 0 || lo < 0 || hi * 16 + lo < 0x20 || hi * 16 + lo == 0x7F) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c > 0x20 && c < 0x7F) {
            out[o++] = (char)c;
        } else {
            free(out);
            return NULL;
        }
    }
    out[o] = '\0';
    if (o > max) {
        free(out);
        return NULL;
    }
    return out;
}

/* spool_parse_ll - a decimal in [0, MAX] that fills the whole token. */
static int spool_parse_ll(const char *s, size_t n, long long max, long long *out)
{
    unsigned long long v;
    if (text_parse_u64(s, n, (unsigned long long)max, &v) < 0)
        return -1;
    *out = (long long)v;
    return 0;
}

static int spool_tok_is(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* spool_parse_notify - "-" or a comma list of NOTIFY keywords. */
static int spool_parse_notify(const char *s, size_t n, int *out)
{
    *out = 0;
    if (spool_tok_is(s, n, "-"))
        return 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        size_t k;
        for (k = 0; k < SPOOL_NNOTIFY; k++)
            if (spool_tok_is(s + i, j - i, spool_notify_names[k].name))
                break;
        if (k == SPOOL_NNOTIFY)
            return -1;
        *out |= spool_notify_names[k].bit;
        i = j + 1;
        if (j + 1 == n && s[j] == ',')
            return -1;
    }
    return 0;
}

/* spool_set_str - store a decoded single-valued field of at most MAX bytes; duplicates are
 * invalid. */
static int spool_set_str(char **field, const char *s, size_t n, size_t max)
{
    if (*field)
        return -1;
    *field = spool_unescape(s, n, max);
    return *field ? 0 : -1;
}

/* spool_set_addr - store a decoded path (sender), checked as spool_addr_ok. */
static int spool_set_addr(char **field, const char *s, size_t n)
{
    if (spool_set_str(field, s, n, SPOOL_ADDR_MAX) < 0)
        return -1;
    return spool_addr_ok(*field, strlen(*field)) ? 0 : -1;
}

/* spool_add_rcpt - parse "NOTIFY ORCPT ADDR" into a new recipient. */
static int spool_add_rcpt(struct spool_envelope *e, int *cap, const char *s, size_t n)
{
    const char *f[3];
    size_t fl[3];
    size_t i = 0;
    for (int k = 0; k < 3; k++) {
        if (i >= n)
            return -1;
        size_t j = i;
        while (j < n && s[j] != ' ')
            j++;
        f[k] = s + i;
        fl[k] = j - i;
        if (fl[k] == 0 || (k < 2 && j >= n))
            return -1;
        i = j + 1;
    }
    if (f[2] + fl[2] != s + n)
        return -1; /* trailing fields */
    if (e->nrcpt == *cap) {
        if (*cap > INT_MAX / 2)
            return -1;
        int ncap = *cap ? *cap * 2 : 4;
        struct spool_rcpt *r = realloc(e->rcpt, (size_t)ncap * sizeof *r);
        if (!r)
            return -1;
        e->rcpt = r;
        *cap = ncap;
    }
    struct spool_rcpt *r = &e->rcpt[e->nrcpt];
    memset(r, 0, sizeof *r);
    if (spool_parse_notify(f[0], fl[0], &r->notify) < 0)
        return -1;
    r->orcpt = spool_unescape(f[1], fl[1], SPOOL_ORCPT_MAX);
    r->addr = spool_unescape(f[2], fl[2], SPOOL_ADDR_MAX);
    e->nrcpt++; /* counted even when half-built so that free releases it */
    return r->orcpt && r->addr && spool_addr_ok(r->addr, strlen(r->addr)) ? 0 : -1;
}

/* spool_env_fill_defaults - optional fields absent from the file become "". */
static int spool_env_fill_defaults(struct spool_envelope *e)
{
    char **opt[] = {&e->envid, &e->client_name, &e->client_addr, &e->helo};
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        if (!*opt[i] && !(*opt[i] = strdup("")))
            return -1;
    return 0;
}

int spool_env_decode(const char *buf, size_t len, struct spool_envelope **out, size_t *hdrlen)
{
    struct spool_envelope *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    int rcap = 0, have_id = 0, have_arrival = 0, have_size = 0, have_ret = 0, have_utf8 = 0,
        have_body = 0;
    size_t pos = 0, lineno = 0;
    int rc = -1;
    for (;;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl) {
            rc = len > (size_t)SPOOL_ENV_MAX ? -1 : 1;
            goto out;
        }
        const char *line = buf + pos;
        size_t n = (size_t)(nl - line);
        pos += n + 1;
        if (lineno++ == 0) {
            /* version 2 is version 1 followed by a commit record (spool_record.c) */
            if (!spool_tok_is(line, n, SPOOL_VERSION_LINE) &&
                !spool_tok_is(line, n, SPOOL_VERSION1_LINE))
                goto out;
            continue;
        }
        if (spool_tok_is(line, n, SPOOL_END_LINE))
            break;
        const char *sp = memchr(line, ' ', n);
        if (!sp)
            goto out;
        size_t kl = (size_t)(sp - line);
        const char *v = sp + 1;
        size_t vl = n - kl - 1;
        if (memchr(v, ' ', vl) && !spool_tok_is(line, kl, "rcpt"))
            goto out;
        if (spool_tok_is(line, kl, "id")) {
            if (have_id++ || vl != SPOOL_ID_LEN)
                goto out;
            memcpy(e->id, v, vl);
            e->id[vl] = '\0';
            if (!spool_id_valid(e->id))
                goto out;
        } else if (spool_tok_is(line, kl, "arrival")) {
            if (have_arrival++ || spool_parse_ll(v, vl, SPOOL_TIME_US_MAX, &e->arrival_us) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "size")) {
            if (have_size++ || spool_parse_ll(v, vl, SPOOL_SIZE_MAX, &e->size) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "sender")) {
            if (spool_set_addr(&e->sender, v, vl) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "envid")) {
            if (spool_set_str(&e->envid, v, vl, SPOOL_ENVID_MAX) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "client_name")) {
            if (spool_set_str(&e->client_name, v, vl, SPOOL_CLIENT_NAME_MAX) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "client_addr")) {
            if (spool_set_str(&e->client_addr, v, vl, SPOOL_CLIENT_ADDR_MAX) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "helo")) {
            if (spool_set_str(&e->helo, v, vl, SPOOL_HELO_MAX) < 0)
                goto out;
        } else if (spool_tok_is(line, kl, "ret")) {
            if (have_ret++)
                goto out;
            if (spool_tok_is(v, vl, "full"))
                e->ret = SPOOL_RET_FULL;
            else if (spool_tok_is(v, vl, "hdrs"))
                e->ret = SPOOL_RET_HDRS;
            else if (!spool_tok_is(v, vl, "-"))
                goto out;
        } else if (spool_tok_is(line, kl, "smtputf8")) {
            if (have_utf8++ || !(spool_tok_is(v, vl, "0") || spool_tok_is(v, vl, "1")))
                goto out;
            e->smtputf8 = v[0] == '1';
        } else if (spool_tok_is(line, kl, "body")) {
            if (have_body++)
                goto out;
            if (spool_tok_is(v, vl, "8bitmime"))
                e->body_8bit = 1;
            else if (!spool_tok_is(v, vl, "7bit"))
                goto out;
        } else if (spool_tok_is(line, kl, "rcpt")) {
            if (spool_add_rcpt(e, &rcap, v, vl) < 0)
                goto out;
        } else {
            /* an unknown key from a later minor version: skip it, but it must be
             * made of the same safe bytes as everything else */
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7F)
                    goto out;
        }
    }
    if (!have_id || !have_arrival || !have_size || !e->sender || e->nrcpt == 0 ||
        spool_env_fill_defaults(e) < 0)
        goto out;
    *out = e;
    *hdrlen = pos;
    return 0;
out:
    spool_envelope_free(e);
    return rc;
}

int spool_env_read_fd(int fd, struct spool_envelope **out, size_t *hdrlen)
{
    static const char marker[] = "\n" SPOOL_END_LINE "\n";
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return ENOMEM;
    int err = EBADMSG;
    for (;;) {
        if (len == cap) {
            if (cap >= (size_t)SPOOL_ENV_MAX)
                goto out;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                err = ENOMEM;
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            goto out;
        }
        if (r == 0)
            goto out; /* no end line: truncated */
        size_t from = len > sizeof marker ? len - sizeof marker : 0;
        len += (size_t)r;
        char *m = memmem(buf + from, len - from, marker, sizeof marker - 1);
        if (m) {
            size_t end = (size_t)(m - buf) + sizeof marker - 1;
            err = spool_env_decode(buf, end, out, hdrlen) == 0 ? 0 : EBADMSG;
            goto out;
        }
    }
out:
    free(buf);
    return err;
}

void spool_envelope_free(struct spool_envelope *env)
{
    if (!env)
        return;
    for (int i = 0; i < env->nrcpt; i++) {
        free(env->rcpt[i].addr);
        free(env->rcpt[i].orcpt);
    }
    free(env->rcpt);
    free(env->sender);
    free(env->envid);
    free(env->client_name);
    free(env->client_addr);
    free(env->helo);
    free(env);
}
