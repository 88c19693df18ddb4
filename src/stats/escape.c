/*
 * escape.c - escaping of untrusted text (addresses, reasons, queue IDs) for HTML
 * and for JSON strings. Everything that came from mail goes through here before
 * it reaches a page or the API.
 * Not here: URL encoding (pages only link to validated queue IDs).
 */
#include <string.h>

#include <event2/buffer.h>

#include "stats_int.h"
#include "mta/text.h"

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
        int n = *p >= 0x80 ? text_utf8_len(p) : 0;
        if (n > 0) {
            evbuffer_add(out, p, (size_t)n);
            p += n;
        } else {
            evbuffer_add(out, "\xef\xbf\xbd", 3);
            p++;
        }
    }
}
