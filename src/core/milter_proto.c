/*
 * milter_proto.c - the milter client's pure parts: the configured set (smtpd_milters and
 * the milter_* settings), packet framing, reply checks, and the header block rebuilt with
 * the header changes a milter asked for.
 * Not here: connections and the event sequence (milter.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <event2/buffer.h>

#include "milter_int.h"
#include "mta/conf.h"

/* milter_spec_parse - one list element: inet:host:port (an IP address or localhost) or
 * unix:/path. 0, or -1 with a message in ERR. */
static int milter_spec_parse(const char *word, struct milter_spec *sp, char *err, size_t errlen)
{
    memset(sp, 0, sizeof *sp);
    if (strncmp(word, "unix:", 5) == 0) {
        if (word[5] != '/' || strlen(word + 5) >= sizeof sp->path) {
            snprintf(err, errlen, "milter %s: unix: needs an absolute path", word);
            return -1;
        }
        sp->unix_path = 1;
        snprintf(sp->path, sizeof sp->path, "%s", word + 5);
    } else if (strncmp(word, "inet:", 5) == 0) {
        const char *h = word + 5, *colon = strrchr(h, ':');
        char *end;
        if (!colon || colon == h || (size_t)(colon - h) >= sizeof sp->host) {
            snprintf(err, errlen, "milter %s: needs inet:host:port", word);
            return -1;
        }
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535) {
            snprintf(err, errlen, "milter %s: bad port", word);
            return -1;
        }
        memcpy(sp->host, h, (size_t)(colon - h));
        if (sp->host[0] == '[') { /* inet:[::1]:port */
            size_t n = strlen(sp->host);
            if (sp->host[n - 1] != ']') {
                snprintf(err, errlen, "milter %s: bad address", word);
                return -1;
            }
            memmove(sp->host, sp->host + 1, n - 2);
            sp->host[n - 2] = 0;
        }
        if (strcmp(sp->host, "localhost") == 0)
            snprintf(sp->host, sizeof sp->host, "127.0.0.1");
        unsigned char a[16];
        if (inet_pton(AF_INET, sp->host, a) != 1 && inet_pton(AF_INET6, sp->host, a) != 1) {
            /* a name would need a DNS lookup for each connection: addresses only */
            snprintf(err, errlen, "milter %s: host must be an IP address or localhost", word);
            return -1;
        }
        sp->port = (int)port;
    } else {
        snprintf(err, errlen, "Milter service needs transport:endpoint instead of \"%s\"", word);
        return -1;
    }
    sp->name = strdup(word);
    return sp->name ? 0 : -1;
}

void milter_set_free(struct milter_set *ms)
{
    if (!ms)
        return;
    for (int i = 0; i < ms->n; i++)
        free(ms->v[i].name);
    free(ms->v);
    for (int i = 0; i < MILTER_STAGE_COUNT; i++)
        free(ms->macros[i]);
    free(ms);
}

/* milter_defact_parse - milter_default_action; -1 when not one of ours. */
static int milter_defact_parse(const char *s)
{
    if (strcasecmp(s, "tempfail") == 0)
        return MILTER_DEF_TEMPFAIL;
    if (strcasecmp(s, "accept") == 0)
        return MILTER_DEF_ACCEPT;
    if (strcasecmp(s, "reject") == 0)
        return MILTER_DEF_REJECT;
    return -1;
}

struct milter_set *milter_set_new(const struct conf *c, const char *list, char **err)
{
    char msg[300];
    *err = NULL;
    int defact = milter_defact_parse(c->milter_default_action);
    if (defact < 0) {
        snprintf(msg, sizeof msg, "milter_default_action: unknown value \"%s\"",
                 c->milter_default_action);
        *err = strdup(msg);
        return NULL;
    }
    if (c->milter_protocol == 5) {
        *err = strdup("milter_protocol: 5 is not a milter protocol version (2, 3, 4 or 6)");
        return NULL;
    }
    if (!*list)
        return NULL;
    struct milter_set *ms = calloc(1, sizeof *ms);
    char *copy = strdup(list);
    if (!ms || !copy)
        goto oom;
    ms->defact = defact;
    ms->conn_timeout = (int)c->milter_connect_timeout;
    ms->cmd_timeout = (int)c->milter_command_timeout;
    ms->msg_timeout = (int)c->milter_content_timeout;
    ms->version = (int)c->milter_protocol;
    const char *lists[MILTER_STAGE_COUNT] = {
        c->milter_connect_macros,      c->milter_helo_macros, c->milter_mail_macros,
        c->milter_rcpt_macros,         c->milter_data_macros, c->milter_end_of_data_macros,
        c->milter_end_of_header_macros};
    for (int i = 0; i < MILTER_STAGE_COUNT; i++)
        if (!(ms->macros[i] = strdup(lists[i])))
            goto oom;
    char *save = NULL;
    for (char *w = strtok_r(copy, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
        struct milter_spec *v = realloc(ms->v, (size_t)(ms->n + 1) * sizeof *v);
        if (!v)
            goto oom;
        ms->v = v;
        if (milter_spec_parse(w, &ms->v[ms->n], msg, sizeof msg) < 0) {
            *err = strdup(msg);
            free(copy);
            milter_set_free(ms);
            return NULL;
        }
        ms->n++;
    }
    free(copy);
    if (ms->n == 0) {
        milter_set_free(ms);
        return NULL;
    }
    return ms;
oom:
    free(copy);
    milter_set_free(ms);
    *err = strdup("out of memory");
    return NULL;
}

int milter_list_check(const char *list, char *why, size_t n)
{
    char *copy = strdup(list), *save = NULL;
    int rc = 0;
    if (!copy)
        return -1;
    for (char *w = strtok_r(copy, " ,\t", &save); w && rc == 0; w = strtok_r(NULL, " ,\t", &save)) {
        struct milter_spec sp;
        rc = milter_spec_parse(w, &sp, why, n);
        if (rc == 0)
            free(sp.name);
    }
    free(copy);
    return rc;
}

int milter_action_check(const char *v, char *why, size_t n)
{
    if (milter_defact_parse(v) >= 0)
        return 0;
    snprintf(why, n, "expected tempfail, accept or reject");
    return -1;
}

int milter_check(const struct conf *c, char **err)
{
    const char *lists[2] = {c->smtpd_milters, c->non_smtpd_milters};
    for (int i = 0; i < 2; i++) {
        struct milter_set *ms = milter_set_new(c, lists[i], err);
        milter_set_free(ms);
        if (*err)
            return -1;
    }
    return 0;
}

/* --- packets --- */

void milter_pkt_begin(struct evbuffer *out, size_t *lenpos)
{
    *lenpos = evbuffer_get_length(out);
    uint32_t zero = 0;
    evbuffer_add(out, &zero, 4);
}

void milter_pkt_end(struct evbuffer *out, size_t lenpos)
{
    uint32_t n = htonl((uint32_t)(evbuffer_get_length(out) - lenpos - 4));
    struct evbuffer_ptr p;
    evbuffer_ptr_set(out, &p, lenpos, EVBUFFER_PTR_SET);
    /* the length was reserved as 4 zero bytes: overwrite them in place */
    struct evbuffer_iovec v[4];
    int nv = evbuffer_peek(out, 4, &p, v, 4);
    const unsigned char *src = (const unsigned char *)&n;
    size_t k = 0;
    for (int i = 0; i < nv && k < 4; i++)
        for (size_t j = 0; j < v[i].iov_len && k < 4; j++)
            ((unsigned char *)v[i].iov_base)[j] = src[k++];
}

uint32_t milter_get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *milter_str(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *z = memchr(*p, 0, (size_t)(end - *p));
    if (!z)
        return NULL;
    const char *s = (const char *)*p;
    *p = z + 1;
    return s;
}

int milter_valid_reply(const char *t)
{
    /* each line "ddd" then ' ' or '-' (or the end), the first digit 4 or 5, all the same */
    if ((t[0] != '4' && t[0] != '5') || !isdigit((unsigned char)t[1]) ||
        !isdigit((unsigned char)t[2]) || (t[3] && t[3] != ' ' && t[3] != '-'))
        return 0;
    for (const char *l = t; l; l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL) {
        if (!*l)
            break;
        if (strncmp(l, t, 3) != 0 || (l[3] && l[3] != ' ' && l[3] != '-' && l[3] != '\r'))
            return 0;
    }
    return 1;
}

void milter_unpercent(char *t)
{
    char *r = t;
    for (const char *p = t; *p; p++) {
        if (*p == '%') {
            if (p[1] == '%')
                *r++ = *++p;
            continue;
        }
        *r++ = *p;
    }
    *r = 0;
}

/* --- header block edits --- */

struct milter_hdr {
    const char *p; /* raw bytes, CRLF included; or a new header's text (owned) */
    size_t len;
    char *own;
};

/* milter_hdr_new - "Name:value\r\n" with VALUE's folded lines (\n) made CRLF. */
static int milter_hdr_new(struct milter_hdr *h, const char *name, const char *value)
{
    struct evbuffer *b = evbuffer_new(), *v = evbuffer_new();
    if (!b || !v)
        goto fail;
    evbuffer_add_printf(v, "%s", value);
    evbuffer_add_printf(b, "%s:", name);
    milter_lf_to_crlf(v, b);
    evbuffer_add(b, "\r\n", 2);
    h->len = evbuffer_get_length(b);
    h->own = malloc(h->len);
    if (!h->own)
        goto fail;
    evbuffer_remove(b, h->own, h->len);
    h->p = h->own;
    evbuffer_free(b);
    evbuffer_free(v);
    return 0;
fail:
    if (b)
        evbuffer_free(b);
    if (v)
        evbuffer_free(v);
    return -1;
}

/* milter_hdr_is - 1 when header H is named NAME (case-insensitive). */
static int milter_hdr_is(const struct milter_hdr *h, const char *name)
{
    size_t n = strlen(name);
    if (h->len <= n || strncasecmp(h->p, name, n) != 0)
        return 0;
    size_t i = n;
    while (i < h->len && (h->p[i] == ' ' || h->p[i] == '\t'))
        i++;
    return i < h->len && h->p[i] == ':';
}

int milter_edit_headers(struct evbuffer *hdrs, const struct milter_mod *mods, int nmods,
                        struct evbuffer *out)
{
    size_t len = evbuffer_get_length(hdrs);
    const char *raw = (const char *)evbuffer_pullup(hdrs, -1);
    int n = 0, cap = 16, blank = 0, rc = -1;
    struct milter_hdr *v = calloc((size_t)cap, sizeof *v);
    if (!v || (!raw && len))
        goto done;
    /* split into headers: a line, then its continuation lines */
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(raw + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - raw) + 1 : len;
        if (end - i <= 2 && raw[i] == '\r') { /* the empty line ending the block */
            blank = 1;
            break;
        }
        if ((raw[i] == ' ' || raw[i] == '\t') && n > 0) {
            v[n - 1].len = end - (size_t)(v[n - 1].p - raw);
        } else {
            if (n == cap) {
                struct milter_hdr *nv = realloc(v, (size_t)cap * 2 * sizeof *nv);
                if (!nv)
                    goto done;
                v = nv;
                cap *= 2;
            }
            v[n].p = raw + i;
            v[n].len = end - i;
            v[n].own = NULL;
            n++;
        }
        i = end;
    }
    for (int m = 0; m < nmods; m++) {
        const struct milter_mod *md = &mods[m];
        if (md->type != MILTER_MOD_ADDHDR && md->type != MILTER_MOD_INSHDR &&
            md->type != MILTER_MOD_CHGHDR)
            continue;
        int at = n; /* where a new header goes */
        if (md->type == MILTER_MOD_INSHDR)
            at = md->index < 0 ? 0 : md->index > n ? n : (int)md->index;
        if (md->type == MILTER_MOD_CHGHDR) {
            long seen = 0;
            int found = -1;
            for (int k = 0; k < n && found < 0; k++)
                if (milter_hdr_is(&v[k], md->name) && ++seen == (md->index < 1 ? 1 : md->index))
                    found = k;
            if (found >= 0) {
                free(v[found].own);
                if (!*md->value || strspn(md->value, " \t") == strlen(md->value)) {
                    memmove(&v[found], &v[found + 1], (size_t)(n - found - 1) * sizeof *v);
                    n--;
                } else if (milter_hdr_new(&v[found], md->name, md->value) < 0) {
                    v[found].own = NULL;
                    goto done;
                }
                continue;
            }
            if (!*md->value)
                continue; /* deleting a header that is not there */
        }
        if (n == cap) {
            struct milter_hdr *nv = realloc(v, (size_t)cap * 2 * sizeof *nv);
            if (!nv)
                goto done;
            v = nv;
            cap *= 2;
        }
        memmove(&v[at + 1], &v[at], (size_t)(n - at) * sizeof *v);
        v[at].own = NULL;
        n++;
        if (milter_hdr_new(&v[at], md->name, md->value) < 0)
            goto done;
    }
    for (int k = 0; k < n; k++)
        evbuffer_add(out, v[k].p, v[k].len);
    if (blank)
        evbuffer_add(out, "\r\n", 2);
    rc = 0;
done:
    for (int k = 0; v && k < n; k++)
        free(v[k].own);
    free(v);
    return rc;
}

void milter_lf_to_crlf(struct evbuffer *in, struct evbuffer *out)
{
    char prev = 0;
    struct evbuffer_iovec iv[8];
    struct evbuffer_ptr p;
    evbuffer_ptr_set(in, &p, 0, EVBUFFER_PTR_SET);
    size_t total = evbuffer_get_length(in);
    while (total > 0) {
        int nv = evbuffer_peek(in, -1, &p, iv, 8);
        size_t used = 0;
        for (int i = 0; i < nv && i < 8; i++) {
            const char *s = iv[i].iov_base;
            size_t start = 0;
            for (size_t j = 0; j < iv[i].iov_len; j++) {
                if (s[j] == '\n' && !(j > 0 ? s[j - 1] == '\r' : prev == '\r')) {
                    evbuffer_add(out, s + start, j - start);
                    evbuffer_add(out, "\r\n", 2);
                    start = j + 1;
                }
            }
            evbuffer_add(out, s + start, iv[i].iov_len - start);
            if (iv[i].iov_len)
                prev = s[iv[i].iov_len - 1];
            used += iv[i].iov_len;
        }
        total -= used;
        if (used == 0 || evbuffer_ptr_set(in, &p, used, EVBUFFER_PTR_ADD) < 0)
            break;
    }
    evbuffer_drain(in, evbuffer_get_length(in));
}
