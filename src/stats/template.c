/*
 * template.c - the tiny renderer of the page templates (the *.html files of src/stats/assets,
 * embedded at build time by cmake/embed.cmake). The syntax is all there is:
 *   {{name}}     a text value, always HTML-escaped (stats_html_escape), so text
 *                from mail can never become markup;
 *   {{{name}}}   HTML the C code built from other rendered templates (rows,
 *                optional fragments), copied as is; a text value is refused here;
 *   {{! note }}  a comment, dropped together with the newline right after it;
 * names are [a-z0-9_]+, and the final newline of a file is not part of it (editors
 * add one). A placeholder without a value, a value of the wrong kind, a malformed
 * or unterminated placeholder and an unknown template are errors, never an empty
 * string: tests/unit/test_stats_template.c renders every page, so a mismatch
 * between a template and the C code fails the tests instead of reaching a user.
 * Values are never scanned again, so a value that contains "{{x}}" stays text.
 * A comment ends at the first "}}"; a literal "{{" cannot be written (none is needed).
 * Not here: what the pages show (http_pages.c); there is no logic in templates:
 * conditions and loops are the C code's, which passes their result as {{{name}}}.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "stats_int.h"

/* stats_template_fail - format an error into ERR (bounded); always returns -1. */
static int stats_template_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int stats_template_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* stats_template_get - the embedded template NAME and its length; NULL when there is none. */
const char *stats_template_get(const char *name, size_t *len)
{
    for (size_t i = 0; i < stats_nassets; i++) {
        if (strcmp(stats_assets[i].name, name) == 0) {
            *len = stats_assets[i].len;
            return (const char *)stats_assets[i].data;
        }
    }
    return NULL;
}

/* stats_template_find - the value NAME (LEN bytes) among VARS; NULL when not given. */
static const struct stats_tvar *stats_template_find(const struct stats_tvar *vars, size_t nvars,
                                                    const char *name, size_t len)
{
    for (size_t i = 0; i < nvars; i++)
        if (vars[i].name && strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0)
            return &vars[i];
    return NULL;
}

/* stats_template_line - the line number of AT in TMPL, for error messages. */
static size_t stats_template_line(const char *tmpl, const char *at)
{
    size_t line = 1;
    for (const char *c = tmpl; c < at; c++)
        line += *c == '\n';
    return line;
}

/*
 * stats_template_walk - the one parser: goes through template TNAME (TMPL, LEN bytes)
 * and, with OUT, writes the result there using VARS; without OUT it only reports
 * each placeholder to CB (scan mode, for the tests). 0, or -1 with ERR.
 */
static int stats_template_walk(const char *tname, const char *tmpl, size_t len,
                               const struct stats_tvar *vars, size_t nvars, struct evbuffer *out,
                               void (*cb)(void *arg, const char *name, int is_html), void *arg,
                               char *err, size_t errlen)
{
    const char *p = tmpl, *end = tmpl + len;
    if (len && end[-1] == '\n')
        end--; /* the file's final newline is not part of the template */
    while (p < end) {
        const char *open = memmem(p, (size_t)(end - p), "{{", 2);
        if (!open) {
            if (out)
                evbuffer_add(out, p, (size_t)(end - p));
            break;
        }
        if (out && open > p)
            evbuffer_add(out, p, (size_t)(open - p));
        if (open + 2 < end && open[2] == '!') {
            const char *close = memmem(open + 3, (size_t)(end - open - 3), "}}", 2);
            if (!close)
                return stats_template_fail(err, errlen, "%s:%zu: unterminated {{! comment", tname,
                                           stats_template_line(tmpl, open));
            p = close + 2;
            if (p < end && *p == '\n')
                p++;
            continue;
        }
        int is_html = open + 2 < end && open[2] == '{';
        const char *name = open + (is_html ? 3 : 2), *n = name;
        while (n < end && ((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_'))
            n++;
        size_t nlen = (size_t)(n - name), clen = is_html ? 3 : 2;
        if (nlen == 0 || nlen > STATS_TEMPLATE_NAME_MAX || (size_t)(end - n) < clen ||
            memcmp(n, "}}}", clen) != 0 || (n + clen < end && n[clen] == '}'))
            return stats_template_fail(err, errlen,
                                       "%s:%zu: malformed placeholder (names are [a-z0-9_]+, "
                                       "{{name}} or {{{name}}})",
                                       tname, stats_template_line(tmpl, open));
        p = n + clen;
        if (!out) {
            char nbuf[STATS_TEMPLATE_NAME_MAX + 1];
            memcpy(nbuf, name, nlen);
            nbuf[nlen] = '\0';
            if (cb)
                cb(arg, nbuf, is_html);
            continue;
        }
        const struct stats_tvar *v = stats_template_find(vars, nvars, name, nlen);
        if (!v)
            return stats_template_fail(err, errlen, "%s:%zu: no value for %s%.*s%s", tname,
                                       stats_template_line(tmpl, open), is_html ? "{{{" : "{{",
                                       (int)nlen, name, is_html ? "}}}" : "}}");
        if (v->is_html != is_html)
            return stats_template_fail(err, errlen, "%s:%zu: %.*s is given as %s but used as %s",
                                       tname, stats_template_line(tmpl, open), (int)nlen, name,
                                       v->is_html ? "HTML" : "text",
                                       is_html ? "{{{HTML}}}" : "{{text}}");
        if (!is_html) {
            stats_html_escape(out, v->text);
        } else if (v->html && evbuffer_get_length(v->html)) {
            /* copied, not moved: the same fragment may be used twice */
            size_t hl = evbuffer_get_length(v->html);
            const unsigned char *h = evbuffer_pullup(v->html, -1);
            if (!h || evbuffer_add(out, h, hl) < 0)
                return stats_template_fail(err, errlen, "%s: out of memory", tname);
        }
    }
    return 0;
}

/* stats_template_render_text - render TMPL (LEN bytes, called TNAME in errors) onto OUT. */
int stats_template_render_text(struct evbuffer *out, const char *tname, const char *tmpl,
                               size_t len, const struct stats_tvar *vars, size_t nvars, char *err,
                               size_t errlen)
{
    /* rendered aside so that a failure never leaves half a fragment on OUT */
    struct evbuffer *tmp = evbuffer_new();
    if (!tmp)
        return stats_template_fail(err, errlen, "%s: out of memory", tname);
    int rc = stats_template_walk(tname, tmpl, len, vars, nvars, tmp, NULL, NULL, err, errlen);
    if (rc == 0 && evbuffer_add_buffer(out, tmp) < 0)
        rc = stats_template_fail(err, errlen, "%s: out of memory", tname);
    evbuffer_free(tmp);
    return rc;
}

/* stats_template_render - render the embedded template NAME with VARS onto OUT; 0 or -1 + ERR. */
int stats_template_render(struct evbuffer *out, const char *name, const struct stats_tvar *vars,
                          size_t nvars, char *err, size_t errlen)
{
    size_t len;
    const char *tmpl = stats_template_get(name, &len);
    if (!tmpl)
        return stats_template_fail(err, errlen, "no template %s in src/stats/assets", name);
    return stats_template_render_text(out, name, tmpl, len, vars, nvars, err, errlen);
}

/* stats_template_scan - report every placeholder of TMPL to CB (name, 1 for {{{HTML}}}). */
int stats_template_scan(const char *tname, const char *tmpl, size_t len,
                        void (*cb)(void *arg, const char *name, int is_html), void *arg, char *err,
                        size_t errlen)
{
    return stats_template_walk(tname, tmpl, len, NULL, 0, NULL, cb, arg, err, errlen);
}
