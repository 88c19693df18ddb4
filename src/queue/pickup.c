/*
 * pickup.c - local submission, the daemon's side (include/mta/pickup.h and
 * docs/sendmail.md). It lives in the queue layer because all it needs is the
 * spool: it turns a maildrop file into a queue file, as smtpd turns a DATA
 * stream into one, but shares none of smtpd's session code.
 *
 * One file at a time: the loop picks a name (from inotify's IN_MOVED_TO or a
 * scan), takes a queue ID, and a worker reads, checks and rewrites the file
 * into the stored form (CRLF lines, completed header). Back on the loop the
 * message is committed; only once it is durable is the maildrop file removed,
 * so a crash in between may deliver a message twice but never loses one.
 * Not here: the format checks themselves (maildrop.c), delivery.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/dkim.h"
#include "mta/milter.h"
#include "mta/log.h"
#include "mta/maildrop.h"
#include "mta/pickup.h"
#include "mta/privilege.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "pickup_milter.h"

#define PICKUP_PENDING_MAX 10000 /* names remembered at once; a later scan finds the rest */
#define PICKUP_TMP_MAX_AGE 86400 /* postdrop's temporary files older than this are removed */
#define PICKUP_NAME_MAX 64

struct pickup_file {
    struct pickup *p;
    char name[PICKUP_NAME_MAX];
    struct spool_msg *msg;
    char id[SPOOL_ID_SIZE];
    /* the worker's verdict */
    int gone;      /* the file vanished: nothing to do */
    char why[200]; /* not empty: move it to corrupt/ */
    char moved[PICKUP_NAME_MAX + 16];
    struct evbuffer *content; /* the message as stored */
    long uid;
    char *sender_raw; /* as submitted, for pickup's log line */
    char msgid[1024]; /* for cleanup's message-id= line */
    struct spool_envelope env;
    struct dkim_result dkim;    /* signed on the worker (dkim_sign = yes) */
    int signing;                /* a signer was asked */
    struct pickup_milter *mjob; /* non_smtpd_milters at work (pickup_milter.c) */
};

struct pickup {
    struct event_base *base;
    const struct conf *conf;
    struct spool *spool;
    struct workers *w;
    struct dkim_signer *dkim;   /* NULL: local mail is not signed */
    struct milter_set *milters; /* non_smtpd_milters; NULL: none */
    int ifd;
    struct event *iev, *timer;
    char **pending;
    int npending;
    struct pickup_file *busy;
    int scanning;
    int stopping;
    char dir[PATH_MAX], corrupt[PATH_MAX];
};

static void pickup_kick(struct pickup *p);
static void pickup_milter_done(void *arg, int verdict, const char *reply);
static void pickup_scan(struct pickup *p);

/* pickup_pending_add - remember NAME (a maildrop file) unless it is known or busy already. */
static void pickup_pending_add(struct pickup *p, const char *name)
{
    if (name[0] == '.' || strlen(name) >= PICKUP_NAME_MAX)
        return; /* postdrop's temporary files; no name postdrop gives is that long */
    if (p->busy && strcmp(p->busy->name, name) == 0)
        return;
    for (int i = 0; i < p->npending; i++)
        if (strcmp(p->pending[i], name) == 0)
            return;
    if (p->npending == PICKUP_PENDING_MAX)
        return;
    char *copy = strdup(name);
    char **v = realloc(p->pending, sizeof(*v) * (size_t)(p->npending + 1));
    if (!copy || !v) {
        free(copy);
        if (v)
            p->pending = v;
        return; /* the next scan finds it */
    }
    p->pending = v;
    p->pending[p->npending++] = copy;
}

/* --- the worker's part: read, check, rewrite --- */

/* pickup_qualify - ADDR, with "@myhostname" appended when it has no domain (Postfix's
 * append_at_myorigin); "" stays the null sender. */
static char *pickup_qualify(const char *addr, const char *host)
{
    char *out;

    if (!*addr || strchr(addr, '@'))
        return strdup(addr);
    if (asprintf(&out, "%s@%s", addr, host) < 0)
        return NULL;
    return out;
}

/* pickup_date - an RFC 5322 date for T, in the configured zone. */
static void pickup_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    size_t n;

    localtime_r(&t, &tm);
    n = strftime(buf, len, "%a, %e %b %Y %H:%M:%S %z (%Z)", &tm);
    if (n == 0)
        snprintf(buf, len, "Thu,  1 Jan 1970 00:00:00 +0000 (UTC)");
}

/* pickup_hdr_name - the length of the field name when LINE (LEN bytes) starts a header field. */
static size_t pickup_hdr_name(const char *line, size_t len)
{
    size_t i = 0, j;

    while (i < len && line[i] > 32 && line[i] < 127 && line[i] != ':')
        i++;
    for (j = i; j < len && (line[j] == ' ' || line[j] == '\t'); j++)
        ;
    return (i > 0 && j < len && line[j] == ':') ? i : 0;
}

/* pickup_is - 1 when the field name at NAME (LEN bytes) is WHAT (any case). */
static int pickup_is(const char *name, size_t len, const char *what)
{
    return strlen(what) == len && strncasecmp(name, what, len) == 0;
}

/* pickup_add_line - LINE (LEN bytes, no line end) as a CRLF line to B. */
static void pickup_add_line(struct evbuffer *b, const char *line, size_t len)
{
    while (len > 0 && line[len - 1] == '\r')
        len--;
    evbuffer_add(b, line, len);
    evbuffer_add(b, "\r\n", 2);
}

/* pickup_from_line - the From: header for a message without one (Postfix's cleanup forms:
 * "Full Name <addr>", quoted when the name needs it, or just the address). */
static void pickup_from_line(struct evbuffer *b, const char *fullname, const char *sender)
{
    const char *addr = *sender ? sender : "MAILER-DAEMON";

    if (!*fullname) {
        evbuffer_add_printf(b, "From: %s\r\n", addr);
        return;
    }
    if (strpbrk(fullname, "()<>[]:;@\\,.\"") == NULL) {
        evbuffer_add_printf(b, "From: %s <%s>\r\n", fullname, addr);
        return;
    }
    evbuffer_add(b, "From: \"", 7);
    for (const char *p = fullname; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add(b, "\\", 1);
        evbuffer_add(b, p, 1);
    }
    evbuffer_add_printf(b, "\" <%s>\r\n", addr);
}

/* pickup_build - the stored message of MD: our Received: line first, the header with
 * Bcc:, Resent-Bcc:, Content-Length: and Return-Path: dropped (Postfix's
 * message_drop_headers) and Message-Id:, Date:, From: and To: added when missing, then
 * the body; every line ends in CRLF. The header ends at the first empty or non-header line
 * or after header_size_limit bytes. */
static void pickup_build(struct pickup_file *f, const struct maildrop *md, time_t when)
{
    const struct conf *c = f->p->conf;
    const char *p = md->content, *end = md->content + md->content_len;
    struct evbuffer *b = f->content;
    char date[80];
    long long hbytes = 0;
    int seen_from = 0, seen_date = 0, seen_msgid = 0, seen_rcpt = 0, drop = 0;

    pickup_date(when, date, sizeof(date));
    evbuffer_add_printf(b, "Received: by %s (mta, from userid %ld)\r\n\tid %s; %s\r\n",
                        c->myhostname, md->uid, f->id, date);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)(nl - p), name;

        if ((*p == ' ' || *p == '\t') && hbytes > 0) { /* continuation of the last field */
            hbytes += (long long)len + 1;
            if (!drop)
                pickup_add_line(b, p, len);
            p = nl + 1;
            if (hbytes <= c->header_size_limit)
                continue;
            break;
        }
        name = pickup_hdr_name(p, len);
        if (!name || hbytes + (long long)len + 1 > c->header_size_limit)
            break;
        hbytes += (long long)len + 1;
        drop = pickup_is(p, name, "Bcc") || pickup_is(p, name, "Resent-Bcc") ||
               pickup_is(p, name, "Content-Length") || pickup_is(p, name, "Return-Path");
        if (pickup_is(p, name, "From"))
            seen_from = 1;
        else if (pickup_is(p, name, "Date"))
            seen_date = 1;
        else if (pickup_is(p, name, "To") || pickup_is(p, name, "Cc") ||
                 pickup_is(p, name, "Resent-To") || pickup_is(p, name, "Resent-Cc"))
            seen_rcpt = 1;
        else if (pickup_is(p, name, "Message-Id") && !seen_msgid) {
            const char *v = (const char *)memchr(p, ':', len) + 1;
            size_t vl = (size_t)(p + len - v);
            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t' || v[vl - 1] == '\r'))
                vl--;
            seen_msgid = 1;
            snprintf(f->msgid, sizeof(f->msgid), "%.*s", (int)(vl < 900 ? vl : 900), v);
        }
        if (!drop)
            pickup_add_line(b, p, len);
        p = nl + 1;
    }
    /* cleanup's additions for local mail, in its order */
    if (!seen_msgid) {
        struct tm tm;
        char stamp[32];
        time_t t = time(NULL);
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
        snprintf(f->msgid, sizeof(f->msgid), "<%s.%s@%s>", stamp, f->id, c->myhostname);
        evbuffer_add_printf(b, "Message-Id: %s\r\n", f->msgid);
    }
    if (!seen_date) {
        pickup_date(time(NULL), date, sizeof(date));
        evbuffer_add_printf(b, "Date: %s\r\n", date);
    }
    if (!seen_from)
        pickup_from_line(b, md->fullname, f->env.sender);
    if (!seen_rcpt)
        evbuffer_add_printf(b, "To: undisclosed-recipients:;\r\n");
    /* a body that starts without the empty line gets one: it is no header */
    if (p < end && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n'))
        evbuffer_add(b, "\r\n", 2);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        pickup_add_line(b, p, (size_t)(nl - p));
        p = nl + 1;
    }
}

/* pickup_envelope - F's envelope from MD: addresses qualified, 0 or -1 (out of memory). */
static int pickup_envelope(struct pickup_file *f, const struct maildrop *md)
{
    const char *host = f->p->conf->myhostname;
    int utf8 = 0;

    if (!(f->sender_raw = strdup(md->sender)) ||
        !(f->env.sender = pickup_qualify(md->sender, host)) ||
        !(f->env.rcpt = calloc((size_t)md->nrcpt, sizeof(*f->env.rcpt))))
        return -1;
    for (int i = 0; i < md->nrcpt; i++) {
        if (!(f->env.rcpt[i].addr = pickup_qualify(md->rcpt[i], host)) ||
            !(f->env.rcpt[i].orcpt = strdup("")))
            return -1;
        f->env.nrcpt = i + 1;
        for (const char *q = md->rcpt[i]; *q; q++)
            utf8 |= (unsigned char)*q >= 0x80;
    }
    for (const char *q = md->sender; *q; q++)
        utf8 |= (unsigned char)*q >= 0x80;
    f->env.envid = "";
    f->env.smtputf8 = utf8;
    f->env.body_8bit = md->body_8bit;
    f->env.client_name = "localhost";
    f->env.client_addr = "127.0.0.1";
    f->env.helo = "";
    f->env.arrival_us = clock_now_us();
    return 0;
}

/* pickup_sign - worker: the DKIM signature of the built message, put in front of it. Local mail
 * is our own users' (sendmail), so it is signed when its From: domain is ours; the message is
 * whole in memory already and this is the pickup's own thread, so it signs here. */
static void pickup_sign(struct pickup_file *f)
{
    struct evbuffer_iovec v[64];
    struct dkim_job *j;
    int n;

    if (!f->p->dkim)
        return;
    f->signing = 1;
    if (!(j = dkim_job_new(f->p->dkim, f->id))) {
        f->dkim.verdict = DKIM_FAILED;
        snprintf(f->dkim.why, sizeof(f->dkim.why), "out of memory");
        return;
    }
    n = evbuffer_peek(f->content, -1, NULL, v, 64);
    if (n > 64) { /* one piece, so that the peek sees all of it */
        evbuffer_pullup(f->content, -1);
        n = evbuffer_peek(f->content, -1, NULL, v, 64);
    }
    for (int i = 0; i < n && i < 64; i++)
        dkim_job_feed(j, v[i].iov_base, v[i].iov_len);
    dkim_job_finish(j, &f->dkim);
    dkim_job_free(j);
    if (f->dkim.verdict == DKIM_SIGNED &&
        evbuffer_prepend(f->content, f->dkim.header, strlen(f->dkim.header)) < 0) {
        f->dkim.verdict = DKIM_FAILED;
        snprintf(f->dkim.why, sizeof(f->dkim.why), "out of memory");
    }
}

/* pickup_read_work - worker: open F's maildrop file without following links, check it
 * (regular, one link, bounded, well formed, uid = the file's owner) and build the message. */
static void pickup_read_work(void *arg)
{
    struct pickup_file *f = arg;
    const struct conf *c = f->p->conf;
    char path[PATH_MAX + PICKUP_NAME_MAX];
    size_t max = (size_t)c->message_size_limit + MAILDROP_ENVELOPE_MAX, got = 0;
    struct maildrop md;
    const char *why;
    struct stat st;
    char *buf = NULL;
    long long lines = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", f->p->dir, f->name);
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            f->gone = 1;
        else
            snprintf(f->why, sizeof(f->why), "%s",
                     errno == ELOOP ? "a symbolic link" : strerror(errno));
        return;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(f->why, sizeof(f->why), "fstat: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(f->why, sizeof(f->why), "not a regular file");
    } else if (st.st_nlink != 1) {
        snprintf(f->why, sizeof(f->why), "%lu hard links", (unsigned long)st.st_nlink);
    } else if ((unsigned long long)st.st_size > max) {
        snprintf(f->why, sizeof(f->why), "message file too big (%lld bytes)",
                 (long long)st.st_size);
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        snprintf(f->why, sizeof(f->why), "out of memory");
    } else {
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != (size_t)st.st_size)
            snprintf(f->why, sizeof(f->why), "short read");
    }
    close(fd);
    if (f->why[0]) {
        free(buf);
        return;
    }
    if (maildrop_parse(buf, got, MAILDROP_FILE, c->message_size_limit, &md, &why) != 0) {
        snprintf(f->why, sizeof(f->why), "%s", why);
        free(buf);
        return;
    }
    for (size_t i = 0; i < md.content_len; i++)
        lines += md.content[i] == '\n';
    if ((long long)md.content_len + lines > c->message_size_limit)
        snprintf(f->why, sizeof(f->why), "message file too big");
    else if ((unsigned long)md.uid != (unsigned long)st.st_uid)
        snprintf(f->why, sizeof(f->why), "uid %ld does not match the file's owner %lu", md.uid,
                 (unsigned long)st.st_uid);
    else if (!(f->content = evbuffer_new()) || pickup_envelope(f, &md) != 0)
        snprintf(f->why, sizeof(f->why), "out of memory");
    else {
        f->uid = md.uid;
        pickup_build(f, &md, st.st_mtime);
        pickup_sign(f);
    }
    maildrop_free(&md);
    free(buf);
}

/* pickup_corrupt_work - worker: move F's file into corrupt/ under a free name. */
static void pickup_corrupt_work(void *arg)
{
    struct pickup_file *f = arg;
    char from[PATH_MAX + PICKUP_NAME_MAX], to[PATH_MAX + 2 * PICKUP_NAME_MAX];

    snprintf(from, sizeof(from), "%s/%s", f->p->dir, f->name);
    for (int n = 0; n < 100; n++) {
        if (n == 0)
            snprintf(f->moved, sizeof(f->moved), "maildrop-%s", f->name);
        else
            snprintf(f->moved, sizeof(f->moved), "maildrop-%s.%d", f->name, n);
        snprintf(to, sizeof(to), "%s/%s", f->p->corrupt, f->moved);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
            return;
        if (errno != EEXIST)
            break;
    }
    f->moved[0] = 0;
}

/* pickup_unlink_work - worker: the message is queued, its maildrop file goes. */
static void pickup_unlink_work(void *arg)
{
    struct pickup_file *f = arg;
    char path[PATH_MAX + PICKUP_NAME_MAX];

    snprintf(path, sizeof(path), "%s/%s", f->p->dir, f->name);
    if (unlink(path) != 0 && errno != ENOENT)
        snprintf(f->why, sizeof(f->why), "%s", strerror(errno));
}

/* --- the loop's part --- */

/* pickup_file_free - F and what it holds (not its spool message). */
static void pickup_file_free(struct pickup_file *f)
{
    if (f->content)
        evbuffer_free(f->content);
    free(f->sender_raw);
    free(f->env.sender);
    for (int i = 0; i < f->env.nrcpt; i++) {
        free(f->env.rcpt[i].addr);
        free(f->env.rcpt[i].orcpt);
    }
    free(f->env.rcpt);
    dkim_result_clear(&f->dkim);
    pickup_milter_free(f->mjob);
    free(f);
}

/* pickup_done_file - F is finished (whatever became of it): take the next one. */
static void pickup_done_file(void *arg)
{
    struct pickup_file *f = arg;
    struct pickup *p = f->p;

    if (f->why[0] && !f->gone && f->moved[0] == 0 && f->msg == NULL && f->content)
        log_warning("pickup", "%s: remove %s/%s: %s", f->id, p->dir, f->name, f->why);
    if (p->busy == f)
        p->busy = NULL;
    pickup_file_free(f);
    pickup_kick(p);
}

/* pickup_corrupt_done - say where the bad file went. */
static void pickup_corrupt_done(void *arg)
{
    struct pickup_file *f = arg;

    if (f->moved[0])
        log_warning("pickup", "%s/%s: %s; moved to corrupt/%s", MAILDROP_DIR, f->name, f->why,
                    f->moved);
    else
        log_warning("pickup", "%s/%s: %s; cannot move it to corrupt/: %s", MAILDROP_DIR, f->name,
                    f->why, strerror(errno));
    f->why[0] = 0;
    pickup_done_file(f);
}

/* pickup_commit_done - the queue file is durable (or not): log as Postfix's qmgr, then
 * remove the maildrop file; on failure keep it for a later attempt. */
static void pickup_commit_done(void *arg, int err)
{
    struct pickup_file *f = arg;
    struct pickup *p = f->p;

    f->msg = NULL; /* the spool freed it */
    if (err) {
        log_warning("pickup", "%s: queue file write error: %s; %s/%s stays for a later attempt",
                    f->id, strerror(err), MAILDROP_DIR, f->name);
        pickup_done_file(f);
        return;
    }
    counter_add(CNT_RECEIVED, 1);
    log_mail("qmgr", "%s: from=<%s>, size=%zu, nrcpt=%d (queue active)", f->id, f->env.sender,
             f->env.size > 0 ? (size_t)f->env.size : (size_t)0, f->env.nrcpt);
    if (p->stopping) {
        /* the loop no longer runs (pickup_free drains): remove it now, or it comes twice */
        pickup_unlink_work(f);
        pickup_done_file(f);
        return;
    }
    workers_submit(p->w, pickup_unlink_work, pickup_done_file, f);
}

/* pickup_read_done - the worker's verdict on F: commit, quarantine or forget it. */
static void pickup_read_done(void *arg)
{
    struct pickup_file *f = arg;
    struct pickup *p = f->p;

    if (p->stopping || f->gone) {
        spool_msg_abort(f->msg);
        f->msg = NULL;
        f->why[0] = 0;
        pickup_done_file(f);
        return;
    }
    if (f->why[0]) {
        spool_msg_abort(f->msg);
        f->msg = NULL;
        workers_submit(p->w, pickup_corrupt_work, pickup_corrupt_done, f);
        return;
    }
    log_mail("pickup", "%s: uid=%ld from=<%s>", f->id, f->uid, f->sender_raw);
    log_mail("cleanup", "%s: message-id=%s", f->id, f->msgid);
    if (f->signing)
        dkim_report(p->dkim, f->id, &f->dkim);
    if (f->signing && f->dkim.verdict == DKIM_FAILED) {
        log_warning("pickup",
                    "%s: not queued: DKIM signing failed; %s/%s stays for a later attempt", f->id,
                    MAILDROP_DIR, f->name);
        spool_msg_abort(f->msg);
        f->msg = NULL;
        pickup_done_file(f);
        return;
    }
    f->env.size = (long long)evbuffer_get_length(f->content);
    if (spool_msg_append(f->msg, f->content) < 0) {
        log_warning("pickup", "%s: queue file write error; %s/%s stays for a later attempt", f->id,
                    MAILDROP_DIR, f->name);
        spool_msg_abort(f->msg);
        f->msg = NULL;
        pickup_done_file(f);
        return;
    }
    if (p->milters) { /* the milters first; their answer commits (pickup_milter_done) */
        if (!(f->mjob = pickup_milter_start(p->base, p->milters, p->conf, f->msg, &f->env,
                                            pickup_milter_done, f)))
            pickup_milter_done(f, MILTER_TEMPFAIL, "out of memory");
        return;
    }
    spool_msg_commit(f->msg, &f->env, pickup_commit_done, f);
}

/* pickup_milter_done - the milters' verdict: commit, drop the maildrop file (discard; reject,
 * logged: there is no client to tell) or leave it for a later attempt (tempfail). */
static void pickup_milter_done(void *arg, int verdict, const char *reply)
{
    struct pickup_file *f = arg;
    struct spool_msg *m = f->msg;
    char text[1024];
    snprintf(text, sizeof(text), "%s", reply); /* REPLY lives in the job */
    reply = text;
    pickup_milter_free(f->mjob);
    f->mjob = NULL;
    if (verdict == MILTER_CONTINUE) {
        spool_msg_commit(m, &f->env, pickup_commit_done, f);
        return;
    }
    f->msg = NULL;
    spool_msg_abort(m);
    log_mail("cleanup", "%s: milter-%s: END-OF-MESSAGE from localhost[127.0.0.1]: %s; from=<%s>",
             f->id, verdict == MILTER_DISCARD ? "discard" : "reject",
             verdict == MILTER_DISCARD ? "milter triggers DISCARD action" : reply, f->env.sender);
    if (verdict == MILTER_TEMPFAIL || verdict == MILTER_SHUTDOWN)
        pickup_done_file(f); /* stays in the maildrop: the next scan tries again */
    else
        workers_submit(f->p->w, pickup_unlink_work, pickup_done_file, f);
}

/* pickup_kick - start on the next pending file when none is in flight. */
static void pickup_kick(struct pickup *p)
{
    struct pickup_file *f;

    while (!p->busy && !p->stopping && p->npending > 0) {
        if (spool_unavailable(p->spool) || !spool_space_ok(p->spool, 0))
            return; /* the files stay; the next scan tries again */
        if (!(f = calloc(1, sizeof(*f))))
            return;
        f->p = p;
        snprintf(f->name, sizeof(f->name), "%s", p->pending[0]);
        free(p->pending[0]);
        memmove(p->pending, p->pending + 1, sizeof(*p->pending) * (size_t)(p->npending - 1));
        p->npending--;
        if (!(f->msg = spool_msg_new(p->spool))) {
            pickup_pending_add(p, f->name);
            free(f);
            return;
        }
        snprintf(f->id, sizeof(f->id), "%s", spool_msg_id(f->msg));
        p->busy = f;
        workers_submit(p->w, pickup_read_work, pickup_read_done, f);
    }
}

struct pickup_scan_job {
    struct pickup *p;
    char **names;
    int n;
};

/* pickup_scan_work - worker: list the maildrop; remove postdrop's temporary files that a
 * killed postdrop left behind long ago. */
static void pickup_scan_work(void *arg)
{
    struct pickup_scan_job *j = arg;
    DIR *d = opendir(j->p->dir);
    struct dirent *e;
    time_t now = time(NULL);

    if (!d)
        return;
    while ((e = readdir(d)) && j->n < PICKUP_PENDING_MAX) {
        struct stat st;
        if (strncmp(e->d_name, ".tmp.", 5) == 0) {
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                st.st_mtime < now - PICKUP_TMP_MAX_AGE)
                unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (e->d_name[0] == '.')
            continue;
        char **v = realloc(j->names, sizeof(*v) * (size_t)(j->n + 1));
        if (!v)
            break;
        j->names = v;
        if (!(j->names[j->n] = strdup(e->d_name)))
            break;
        j->n++;
    }
    closedir(d);
}

/* pickup_scan_done - what the scan found joins the pending names (oldest name first). */
static int pickup_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void pickup_scan_done(void *arg)
{
    struct pickup_scan_job *j = arg;
    struct pickup *p = j->p;

    p->scanning = 0;
    if (j->n > 1)
        qsort(j->names, (size_t)j->n, sizeof(*j->names), pickup_name_cmp);
    for (int i = 0; i < j->n; i++) {
        if (!p->stopping)
            pickup_pending_add(p, j->names[i]);
        free(j->names[i]);
    }
    free(j->names);
    free(j);
    pickup_kick(p);
}

/* pickup_scan - list the maildrop on the worker (one scan at a time). */
static void pickup_scan(struct pickup *p)
{
    struct pickup_scan_job *j;

    if (p->scanning || p->stopping || !(j = calloc(1, sizeof(*j))))
        return;
    j->p = p;
    p->scanning = 1;
    workers_submit(p->w, pickup_scan_work, pickup_scan_done, j);
}

/* pickup_timer_cb - the periodic scan (files inotify missed, retries after errors). */
static void pickup_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pickup_scan(arg);
}

/* pickup_inotify_cb - new names in the maildrop (postdrop's rename). Non-blocking reads. */
static void pickup_inotify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pickup *p = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    (void)what;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (char *q = buf; q < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)q;
            if (ev->mask & IN_Q_OVERFLOW)
                pickup_scan(p);
            else if (ev->len > 0 && !p->stopping)
                pickup_pending_add(p, ev->name);
            q += sizeof(*ev) + ev->len;
        }
    }
    pickup_kick(p);
}

struct pickup *pickup_new(struct event_base *base, const struct conf *conf, struct spool *sp,
                          char **err)
{
    struct pickup *p = calloc(1, sizeof(*p));
    const char *dv = priv_data_volume_path(conf->data_volume);
    struct timeval iv = {PICKUP_SCAN_INTERVAL, 0};

    if (!p)
        return *err = strdup("pickup: out of memory"), NULL;
    p->base = base;
    p->conf = conf;
    p->spool = sp;
    p->milters = milter_set_new(conf, conf->non_smtpd_milters, err);
    if (*err) {
        free(p);
        return NULL;
    }
    p->ifd = -1;
    snprintf(p->dir, sizeof(p->dir), "%s/%s", dv, MAILDROP_DIR);
    snprintf(p->corrupt, sizeof(p->corrupt), "%s/corrupt", dv);
    if (!(p->w = workers_new(base, 1, "pickup"))) {
        free(p);
        return *err = strdup("pickup: cannot start its worker thread"), NULL;
    }
    p->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (p->ifd >= 0 && inotify_add_watch(p->ifd, p->dir, IN_MOVED_TO) < 0) {
        log_warning("pickup", "inotify on %s: %s; scanning every %d s only", p->dir,
                    strerror(errno), PICKUP_SCAN_INTERVAL);
        close(p->ifd);
        p->ifd = -1;
    }
    if (p->ifd >= 0) {
        p->iev = event_new(base, p->ifd, EV_READ | EV_PERSIST, pickup_inotify_cb, p);
        event_add(p->iev, NULL);
    }
    p->timer = event_new(base, -1, EV_PERSIST, pickup_timer_cb, p);
    event_add(p->timer, &iv);
    pickup_scan(p); /* what arrived while mtad was down */
    return p;
}

void pickup_free(struct pickup *p)
{
    if (!p)
        return;
    p->stopping = 1;
    if (p->iev)
        event_free(p->iev);
    if (p->ifd >= 0)
        close(p->ifd);
    event_free(p->timer);
    if (p->busy && p->busy->mjob) /* the milters' answer would need the loop: not now */
        pickup_milter_done(p->busy, MILTER_TEMPFAIL, "shutting down");
    /* the file in flight: its read finishes (and is dropped), or its commit completes and
     * its maildrop file is removed, before the worker and the struct go */
    for (int round = 0; p->busy && round < 600; round++) {
        workers_run_done(p->w, 100);
        if (p->busy)
            spool_drain(p->spool);
    }
    workers_free(p->w);
    for (int i = 0; i < p->npending; i++)
        free(p->pending[i]);
    free(p->pending);
    milter_set_free(p->milters);
    free(p);
}

void pickup_set_dkim(struct pickup *p, struct dkim_signer *d)
{
    p->dkim = d;
}
