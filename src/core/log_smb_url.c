/*
 * log_smb_url.c - the log terminal's URLs: smb://server[:port]/share and
 * maillog_filename turned into the file URL and its parent directory URLs that
 * libsmbclient is given, %-encoded. Pure: no I/O, no state.
 * Not here: connecting (log_smb_share.c).
 */
#include "mta/log_smb.h"
#include "log_smb_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* log_smb_append_enc - append S to the growing URL, %-encoding all but unreserved bytes. */
static int log_smb_append_enc(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '~';
        if (*len + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[(*len)++] = (char)c;
        } else {
            out[(*len)++] = '%';
            out[(*len)++] = hex[c >> 4];
            out[(*len)++] = hex[c & 15];
        }
    }
    out[*len] = 0;
    return 0;
}

int log_smb_target_parse(struct log_smb_target *t, const char *url, const char *file, char **err)
{
    char buf[2048];
    size_t len, ulen;
    const char *p, *host_end;

    memset(t, 0, sizeof(*t));
    if (url == NULL || strncmp(url, "smb://", 6) != 0) {
        log_smb_errf(err, "log_terminal must be smb://server[:port]/share, not '%s'",
                     url ? url : "");
        return -1;
    }
    host_end = strchr(url + 6, '/');
    if (host_end == NULL || host_end == url + 6 || host_end[1] == 0 || host_end[1] == '/') {
        log_smb_errf(err, "log_terminal must be smb://server[:port]/share, not '%s'", url);
        return -1;
    }
    for (p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#') {
            log_smb_errf(err, "log_terminal '%s' holds a space, control byte, '?' or '#'", url);
            return -1;
        }
    }
    ulen = strlen(url);
    while (ulen > 0 && url[ulen - 1] == '/')
        ulen--;
    if (ulen + 2 >= sizeof(buf)) {
        log_smb_errf(err, "log_terminal is too long");
        return -1;
    }
    memcpy(buf, url, ulen);
    len = ulen;
    buf[len] = 0;

    /* each component of FILE: no empty ones, no "." or "..", no control bytes */
    if (file == NULL)
        file = "";
    p = file;
    int ncomp = 0;
    while (*p) {
        while (*p == '/')
            p++;
        if (*p == 0)
            break;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            log_smb_errf(err, "maillog_filename '%s' must not contain '.' or '..'", file);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)p[i] < ' ' || p[i] == '\\') {
                log_smb_errf(err, "maillog_filename '%s' holds a control byte or '\\'", file);
                goto fail;
            }
        }
        /* the URL so far is the parent directory of this component */
        if (ncomp > 0) {
            if (t->ndirs == LOG_SMB_MAX_DIRS) {
                log_smb_errf(err, "maillog_filename '%s' has too many directories", file);
                goto fail;
            }
            if ((t->dir_urls[t->ndirs] = strdup(buf)) == NULL)
                goto nomem;
            t->ndirs++;
        }
        if (len + 1 >= sizeof(buf))
            goto toolong;
        buf[len++] = '/';
        buf[len] = 0;
        if (log_smb_append_enc(buf, sizeof(buf), &len, p, n) != 0)
            goto toolong;
        ncomp++;
        p = e;
    }
    if (ncomp == 0) {
        log_smb_errf(err, "maillog_filename is empty");
        goto fail;
    }
    if ((t->file_url = strdup(buf)) == NULL)
        goto nomem;
    return 0;
toolong:
    log_smb_errf(err, "maillog_filename '%s' is too long", file);
    goto fail;
nomem:
    log_smb_errf(err, "out of memory");
fail:
    log_smb_target_free(t);
    return -1;
}

void log_smb_target_free(struct log_smb_target *t)
{
    free(t->file_url);
    t->file_url = NULL;
    for (int i = 0; i < t->ndirs; i++)
        free(t->dir_urls[i]);
    t->ndirs = 0;
}
