/*
 * text.c - text encodings more than one layer writes: UTF-8 validation and JSON
 * strings (the HTTP API and the control socket's postqueue -j output share them,
 * so both always emit JSON that parses); printable text and checked decimal
 * numbers for what comes from disk or the network.
 * Not here: HTML escaping (stats) or SMTP address syntax (smtpd).
 */
#include <event2/buffer.h>

#include "mta/text.h"

/* text_utf8_len - length of a valid UTF-8 sequence at S (1..4), 0 when invalid. */
int text_utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    int n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/*
 * text_json_string - S as a quoted JSON string: quote, backslash and control
 * characters escaped, valid UTF-8 passed through, invalid bytes as \ufffd so the
 * output always parses.
 */
void text_json_string(struct evbuffer *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    evbuffer_add(out, "\"", 1);
    while (*p) {
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            evbuffer_add(out, run, (size_t)(p - run));
        if (!*p)
            break;
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            evbuffer_add(out, e, 2);
            p++;
        } else if (*p < 0x20) {
            switch (*p) {
            case '\n':
                evbuffer_add(out, "\\n", 2);
                break;
            case '\r':
                evbuffer_add(out, "\\r", 2);
                break;
            case '\t':
                evbuffer_add(out, "\\t", 2);
                break;
            case '\b':
                evbuffer_add(out, "\\b", 2);
                break;
            case '\f':
                evbuffer_add(out, "\\f", 2);
                break;
            default: {
                char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
                evbuffer_add(out, e, 6);
            }
            }
            p++;
        } else {
            int n = text_utf8_len(p);
            if (n > 0) {
                evbuffer_add(out, p, (size_t)n);
                p += n;
            } else {
                evbuffer_add(out, "\\ufffd", 6);
                p++;
            }
        }
    }
    evbuffer_add(out, "\"", 1);
}

/* text_printable - non-printable bytes of S replaced with REPL (Postfix printable()). */
char *text_printable(char *s, char repl)
{
    for (unsigned char *p = (unsigned char *)s; p && *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            *p = (unsigned char)repl;
    return s;
}

/* text_parse_u64 - a decimal of digits only, at most MAX; -1 instead of overflowing. */
int text_parse_u64(const char *s, size_t len, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;

    if (!s || len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)((unsigned char)s[i] - '0');
        if (d > 9)
            return -1;
        /* v * 10 + d <= max, checked without computing it */
        if (v > max / 10 || (v == max / 10 && d > max % 10))
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
