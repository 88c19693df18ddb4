/*
 * escape.c - escaping of untrusted text (addresses, reasons, queue IDs) for HTML
 * and for JSON strings. Everything that came from mail goes through here before
 * it reaches a page or the API.
 * Not here: URL encoding (pages only link to validated queue IDs).
 */
#include <string.h>

#include <event2/buffer.h>

#include "stats_priv.h"

/* stats_utf8_len - length of a valid UTF-8 sequence at S (1..4), 0 when invalid. */
static int stats_utf8_len(const unsigned char *s)
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
 * stats_html_escape - S as HTML text or attribute value: the five markup
 * characters become entities, control bytes and invalid UTF-8 become U+FFFD so
 * a hostile address can neither inject markup nor garble the page.
 */
void stats_html_escape(struct evbuffer *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        const unsigned char *run = p;
        while (*p && *p >= 0x20 && *p < 0x7f && !strchr("&<>\"'", *p))
            p++;
        if (p > run)
            evbuffer_add(out, run, (size_t)(p - run));
        if (!*p)
            break;
        switch (*p) {
        case '&':
            evbuffer_add(out, "&amp;", 5);
            p++;
            continue;
        case '<':
            evbuffer_add(out, "&lt;", 4);
            p++;
            continue;
        case '>':
            evbuffer_add(out, "&gt;", 4);
            p++;
            continue;
        case '"':
            evbuffer_add(out, "&quot;", 6);
            p++;
            continue;
        case '\'':
            evbuffer_add(out, "&#39;", 5);
            p++;
            continue;
        default:
            break;
        }
        int n = *p >= 0x80 ? stats_utf8_len(p) : 0;
        if (n > 0) {
            evbuffer_add(out, p, (size_t)n);
            p += n;
        } else {
            evbuffer_add(out, "\xef\xbf\xbd", 3);
            p++;
        }
    }
}

/*
 * stats_json_string - S as a quoted JSON string: quote, backslash and control
 * characters escaped, valid UTF-8 passed through, invalid bytes as \ufffd so the
 * output always parses.
 */
void stats_json_string(struct evbuffer *out, const char *s)
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
            int n = stats_utf8_len(p);
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
