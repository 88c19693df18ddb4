/*
 * log_smb.c - the log terminal sink: appends mail log records to a file on a
 * CIFS share through libsmbclient, on a thread of its own.
 *
 * libsmbclient blocks and is not thread-safe, so exactly one thread (this
 * module's) owns the one SMBCCTX. The log writer only copies records into a
 * bounded memory queue (log_smb_sink_write) and returns. The stream of
 * records is, in order: the spill file from its replay offset, then the memory
 * queue. The thread writes batches from the head of that stream; when the
 * memory queue passes half its bound (share away or slow) it moves the whole
 * queue to the end of the spill file (fsync'd), which keeps the order. When a
 * write fails, the file size seen after reconnecting tells how much of the
 * failed batch reached the share, so that part is not written twice.
 * Guarantees: nothing is lost or doubled across share outages; a crash (not a
 * clean stop) loses what was in the memory queue (it is still in stderr and
 * maillog_file) and may double at most one replayed batch (the replay offset
 * is persisted after each batch).
 * Not here: record formatting (log.c), deciding whether logging is on (mtad.c).
 */
#include "mta/log_smb.h"
#include "mta/clock.h"
#include "log_smb_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libsmbclient.h> /* types only: the library itself is loaded by log_smb_lib_load */

#include "mta/counters.h"
#include "mta/fsutil.h"
#include "mta/log.h"

#define LOG_SMB_BATCH (64 * 1024)        /* bytes per share write / replay step */
#define LOG_SMB_QUEUE_DEFAULT (8u << 20) /* memory queue bound */
#define LOG_SMB_BACKOFF_MIN_MS 500
#define LOG_SMB_BACKOFF_MAX_DEFAULT 30000
#define LOG_SMB_TIMEOUT_DEFAULT 5000
#define LOG_SMB_STOP_WAIT_MS 5000
#define LOG_SMB_SERVICE "maillog"

/* libsmbclient pulls in Samba's whole library tree (~10 MB resident): it is loaded with
 * dlopen only when the log terminal is started, so a daemon without one never maps it.
 * Every libsmbclient function this file calls is in this list and called via smb_lib. */
#define LOG_SMB_LIBNAME "libsmbclient.so.0"
#define LOG_SMB_FUNCS(X)                                                                           \
    X(smbc_new_context)                                                                            \
    X(smbc_init_context)                                                                           \
    X(smbc_free_context) X(smbc_setDebug) X(smbc_setLogCallback) X(smbc_setConfiguration)          \
        X(smbc_setTimeout) X(smbc_setOptionUseKerberos) X(smbc_setOptionFallbackAfterKerberos)     \
            X(smbc_setOptionNoAutoAnonymousLogin) X(smbc_setOptionUseCCache)                       \
                X(smbc_setOptionProtocols) X(smbc_setFunctionAuthDataWithContext)                  \
                    X(smbc_getFunctionOpen) X(smbc_getFunctionClose) X(smbc_getFunctionFstat)      \
                        X(smbc_getFunctionWrite) X(smbc_getFunctionMkdir)                          \
                            X(smbc_getFunctionUnlink) X(smbc_getFunctionRename)                    \
                                X(smbc_getFunctionPurgeCachedServers)

#define LOG_SMB_FN_FIELD(f) __typeof__(f) *f;
static struct {
    void *handle; /* kept for the life of the process: Samba does not unload cleanly */
    LOG_SMB_FUNCS(LOG_SMB_FN_FIELD)
} smb_lib;

struct log_smb {
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* to the thread: records, stop */
    pthread_cond_t started; /* to log_smb_start: first connect done */
    pthread_t thread;
    int running; /* thread exists (start succeeded, stop not yet joined) */
    /* under mu */
    char *q; /* memory queue: bytes [qhead, qtail) */
    size_t qhead, qtail, qcap, qbound;
    long long qrecords;
    int stop;        /* stop requested */
    int accepting;   /* sink accepts records */
    int rejected;    /* the sink refused a write: make room now */
    int start_state; /* 0 pending, 1 up, -1 failed */
    /* read by any thread (atomics) */
    int up;
    long long spill_records;
    /* owned by the thread */
    struct log_smb_target tgt;
    char *url;
    char *conf_path;
    char *home_path; /* HOME while libsmbclient initialises: its .smb/smb.conf is ours */
    char *spill_path, *offset_path;
    int spill_fd, offset_fd;
    long long spill_size, spill_off;
    SMBCCTX *ctx;
    SMBCFILE *fh;
    int connected;          /* file open on the share (this thread's view) */
    int reconf;             /* a new start: reload the client config into the kept context */
    int warned;             /* the outage warning was logged; "back" not yet */
    long long fsize;        /* size of the file on the share, as we know it */
    int pending;            /* a batch failed: it may be partly on the share */
    long long pending_base; /* file size before that batch */
    size_t pending_len;
    unsigned backoff_ms;
    struct timespec next_try;
    struct timespec spill_retry;
    char *batch;
    char why[2400]; /* last failure, for the warning */
    /* settings */
    long long rot_size;
    int rot_count;
    unsigned backoff_max_ms, timeout_ms;
};

static struct log_smb smb = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .spill_fd = -1,
    .offset_fd = -1,
    .rot_count = 5,
};

/* ---------------------------------------------------------------------- */
/* small helpers */

/* log_smb_errf - *err = malloc'd printf text. */
static void log_smb_errf(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_smb_errf(char **err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
}

/* log_smb_path - *OUT = malloc'd DIR + SUFFIX; 0, or -1 with *OUT NULL (asprintf leaves it
 * undefined on failure, and the cleanup frees every path). */
static int log_smb_path(char **out, const char *dir, const char *suffix)
{
    if (asprintf(out, "%s%s", dir, suffix) < 0) {
        *out = NULL;
        return -1;
    }
    return 0;
}

/* log_smb_count_nl - records in BUF (each ends in '\n'). */
static long long log_smb_count_nl(const char *buf, size_t len)
{
    long long n = 0;
    const char *p = buf, *end = buf + len;

    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* log_smb_passed - has monotonic time T come? */
static int log_smb_passed(struct timespec t)
{
    struct timespec n = clock_mono_after(0);

    return !clock_ts_before(&n, &t);
}

/* log_smb_set_up - the share state, for the counters and the dashboard. */
static void log_smb_set_up(int up)
{
    __atomic_store_n(&smb.up, up, __ATOMIC_RELAXED);
    counter_set(CNT_LOG_SHARE_UP, up);
}

/* log_smb_spilled_add - the spill file gained (or lost) N records. */
static void log_smb_spilled_add(long long n)
{
    long long v = __atomic_add_fetch(&smb.spill_records, n, __ATOMIC_RELAXED);

    counter_set(CNT_LOG_SPILLED, v);
}

/* ---------------------------------------------------------------------- */
/* URLs */

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

/* ---------------------------------------------------------------------- */
/* the memory queue (shared with the log writer thread) */

int log_smb_sink_write(void *ctx, const char *buf, size_t len)
{
    long long n;

    (void)ctx;
    pthread_mutex_lock(&smb.mu);
    if (!smb.accepting) {
        pthread_mutex_unlock(&smb.mu);
        return -1;
    }
    size_t used = smb.qtail - smb.qhead;
    if (used + len > smb.qbound && used > 0) {
        /* full: the log writer keeps these and retries; make room meanwhile */
        smb.rejected = 1;
        pthread_cond_signal(&smb.wake);
        pthread_mutex_unlock(&smb.mu);
        return -1;
    }
    if (smb.qtail + len > smb.qcap) {
        if (smb.qhead > 0) {
            memmove(smb.q, smb.q + smb.qhead, used);
            smb.qhead = 0;
            smb.qtail = used;
        }
        if (smb.qtail + len > smb.qcap) {
            /* one batch larger than the bound, into an empty queue: grow for it */
            char *nq = realloc(smb.q, smb.qtail + len);
            if (nq == NULL) {
                pthread_mutex_unlock(&smb.mu);
                return -1;
            }
            smb.q = nq;
            smb.qcap = smb.qtail + len;
        }
    }
    memcpy(smb.q + smb.qtail, buf, len);
    smb.qtail += len;
    n = log_smb_count_nl(buf, len);
    smb.qrecords += n;
    counter_add(CNT_LOG_BACKLOG, n);
    pthread_cond_signal(&smb.wake);
    pthread_mutex_unlock(&smb.mu);
    return 0;
}

/* log_smb_queue_peek - copy up to MAX bytes from the queue head, whole records when possible. */
static size_t log_smb_queue_peek(char *out, size_t max)
{
    size_t n;

    pthread_mutex_lock(&smb.mu);
    n = smb.qtail - smb.qhead;
    if (n > max)
        n = max;
    memcpy(out, smb.q + smb.qhead, n);
    if (n < smb.qtail - smb.qhead) {
        char *nl = memrchr(out, '\n', n);
        if (nl != NULL)
            n = (size_t)(nl - out) + 1;
    }
    pthread_mutex_unlock(&smb.mu);
    return n;
}

/* log_smb_queue_pop - drop N bytes from the queue head (they are stored elsewhere now). */
static void log_smb_queue_pop(size_t n, long long records, int written)
{
    pthread_mutex_lock(&smb.mu);
    smb.qhead += n;
    smb.qrecords -= records;
    if (smb.qhead == smb.qtail)
        smb.qhead = smb.qtail = 0;
    pthread_mutex_unlock(&smb.mu);
    if (written)
        counter_add(CNT_LOG_BACKLOG, -records);
}

/* log_smb_queue_used - bytes in the memory queue. */
static size_t log_smb_queue_used(void)
{
    size_t n;

    pthread_mutex_lock(&smb.mu);
    n = smb.qtail - smb.qhead;
    pthread_mutex_unlock(&smb.mu);
    return n;
}

/* ---------------------------------------------------------------------- */
/* the spill file on the data volume */

/* log_smb_offset_save - persist the replay offset (fixed width, one sector). */
static int log_smb_offset_save(long long off)
{
    char b[32];
    int n = snprintf(b, sizeof(b), "%020lld\n", off);

    if (pwrite(smb.offset_fd, b, (size_t)n, 0) != n || fdatasync(smb.offset_fd) != 0)
        return -1;
    return 0;
}

/* log_smb_spill_open - open the spill file and offset, count what still waits. */
static int log_smb_spill_open(const char *dir, char **err)
{
    struct stat st;
    char b[32];
    ssize_t n;

    if (fs_mkdir_p(dir, 0700) != 0) {
        log_smb_errf(err, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if (log_smb_path(&smb.spill_path, dir, "/maillog.spill") != 0 ||
        log_smb_path(&smb.offset_path, dir, "/maillog.spill.offset") != 0) {
        log_smb_errf(err, "out of memory");
        return -1;
    }
    /* (the caller's cleanup closes what was opened when this fails) */
    smb.spill_fd = open(smb.spill_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (smb.spill_fd < 0 || fstat(smb.spill_fd, &st) != 0) {
        log_smb_errf(err, "cannot open %s: %s", smb.spill_path, strerror(errno));
        return -1;
    }
    smb.offset_fd = open(smb.offset_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (smb.offset_fd < 0) {
        log_smb_errf(err, "cannot open %s: %s", smb.offset_path, strerror(errno));
        return -1;
    }
    smb.spill_size = st.st_size;
    smb.spill_off = 0;
    n = pread(smb.offset_fd, b, sizeof(b) - 1, 0);
    if (n > 0) {
        b[n] = 0;
        smb.spill_off = strtoll(b, NULL, 10);
    }
    if (smb.spill_off < 0 || smb.spill_off > smb.spill_size)
        smb.spill_off = smb.spill_size; /* stale offset of an emptied file */
    /* count the records still waiting from an earlier run */
    long long recs = 0;
    char *buf = malloc(LOG_SMB_BATCH);
    if (buf == NULL) {
        log_smb_errf(err, "out of memory");
        return -1;
    }
    for (long long off = smb.spill_off; off < smb.spill_size;) {
        n = pread(smb.spill_fd, buf, LOG_SMB_BATCH, off);
        if (n <= 0)
            break;
        recs += log_smb_count_nl(buf, (size_t)n);
        off += n;
    }
    free(buf);
    smb.spill_records = 0;
    log_smb_spilled_add(recs);
    counter_add(CNT_LOG_BACKLOG, recs);
    return 0;
}

/* log_smb_spill_memory - move the whole memory queue to the end of the spill file. */
static int log_smb_spill_memory(void)
{
    size_t used, n;
    char *buf;
    long long recs;

    if (!log_smb_passed(smb.spill_retry))
        return -1;
    pthread_mutex_lock(&smb.mu);
    smb.rejected = 0;
    used = smb.qtail - smb.qhead;
    buf = used ? malloc(used) : NULL;
    if (buf)
        memcpy(buf, smb.q + smb.qhead, used);
    pthread_mutex_unlock(&smb.mu);
    if (used == 0)
        return 0;
    if (buf == NULL)
        goto fail;
    for (n = 0; n < used;) {
        ssize_t w = write(smb.spill_fd, buf + n, used - n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* cut back to what was there, so no half batch is replayed twice */
            if (ftruncate(smb.spill_fd, smb.spill_size) != 0) {
                /* nothing better to do: the records stay in memory */
            }
            goto fail;
        }
        n += (size_t)w;
    }
    if (fdatasync(smb.spill_fd) != 0)
        goto fail;
    recs = log_smb_count_nl(buf, used);
    smb.spill_size += (long long)used;
    free(buf);
    log_smb_queue_pop(used, recs, 0);
    log_smb_spilled_add(recs);
    return 0;
fail:
    free(buf);
    smb.spill_retry = clock_mono_after(1000);
    return -1;
}

/* log_smb_spill_consume - N bytes at the replay offset are on the share now. */
static void log_smb_spill_consume(size_t n, long long recs)
{
    smb.spill_off += (long long)n;
    log_smb_spilled_add(-recs);
    counter_add(CNT_LOG_BACKLOG, -recs);
    if (smb.spill_off >= smb.spill_size) {
        /* all replayed: empty the file first, then the offset (a crash in
         * between leaves offset > size, which reads as "empty") */
        if (ftruncate(smb.spill_fd, 0) == 0 && fsync(smb.spill_fd) == 0) {
            smb.spill_size = smb.spill_off = 0;
            log_smb_offset_save(0);
            return;
        }
    }
    log_smb_offset_save(smb.spill_off);
}

/* log_smb_spill_peek - up to MAX bytes at the replay offset, whole records when possible. */
static size_t log_smb_spill_peek(char *out, size_t max)
{
    long long left = smb.spill_size - smb.spill_off;
    size_t n = left < (long long)max ? (size_t)left : max;
    ssize_t r = pread(smb.spill_fd, out, n, smb.spill_off);

    if (r <= 0)
        return 0;
    if ((size_t)r < (size_t)left) {
        char *nl = memrchr(out, '\n', (size_t)r);
        if (nl != NULL)
            r = nl - out + 1;
    }
    return (size_t)r;
}

/* log_smb_stream_drop - N bytes at the stream head already reached the share: skip them. */
static void log_smb_stream_drop(size_t n)
{
    while (n > 0) {
        size_t k;
        if (smb.spill_off < smb.spill_size) {
            k = log_smb_spill_peek(smb.batch, n < LOG_SMB_BATCH ? n : LOG_SMB_BATCH);
            if (k == 0)
                return;
            if (k > n)
                k = n;
            log_smb_spill_consume(k, log_smb_count_nl(smb.batch, k));
        } else {
            k = log_smb_queue_peek(smb.batch, n < LOG_SMB_BATCH ? n : LOG_SMB_BATCH);
            if (k == 0)
                return;
            log_smb_queue_pop(k, log_smb_count_nl(smb.batch, k), 1);
        }
        n -= k;
    }
}

/* ---------------------------------------------------------------------- */
/* the share (this thread only) */

/* log_smb_auth_cb - anonymous login: empty user and password. */
static void log_smb_auth_cb(SMBCCTX *c, const char *srv, const char *shr, char *wg, int wglen,
                            char *un, int unlen, char *pw, int pwlen)
{
    (void)c, (void)srv, (void)shr, (void)wg, (void)wglen;
    if (unlen > 0)
        un[0] = 0;
    if (pwlen > 0)
        pw[0] = 0;
}

/* log_smb_lib_load - dlopen libsmbclient once and resolve every function used.
 * 0 ok; -1 with the reason in smb.why (the library stays unloaded then). */
static int log_smb_lib_load(void)
{
    void *h;
    const char *missing = NULL;

    if (smb_lib.handle != NULL)
        return 0;
    if ((h = dlopen(LOG_SMB_LIBNAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        snprintf(smb.why, sizeof(smb.why), "cannot load %s: %.400s", LOG_SMB_LIBNAME, dlerror());
        return -1;
    }
#define LOG_SMB_FN_LOAD(f)                                                                         \
    if ((smb_lib.f = (__typeof__(f) *)dlsym(h, #f)) == NULL && missing == NULL)                    \
        missing = #f;
    LOG_SMB_FUNCS(LOG_SMB_FN_LOAD)
#undef LOG_SMB_FN_LOAD
    if (missing != NULL) {
        snprintf(smb.why, sizeof(smb.why), "cannot load %s: symbol %s not found", LOG_SMB_LIBNAME,
                 missing);
        memset(&smb_lib, 0, sizeof(smb_lib));
        dlclose(h);
        return -1;
    }
    smb_lib.handle = h;
    return 0;
}

/* log_smb_debug_cb - libsmbclient's own chatter: dropped (our warnings say what matters). */
static void log_smb_debug_cb(void *priv, int level, const char *msg)
{
    (void)priv, (void)level, (void)msg;
}

/* log_smb_disconnect - close the file and drop the server connections. The context itself
 * is kept for the life of the process and reused: smbc_free_context (and every new context)
 * leaks inside libsmbclient 4.17 (its debug log file name), which sanitizer builds report. */
static void log_smb_disconnect(void)
{
    if (smb.ctx == NULL)
        return;
    if (smb.fh != NULL)
        smb_lib.smbc_getFunctionClose(smb.ctx)(smb.ctx, smb.fh);
    smb.fh = NULL;
    smb_lib.smbc_getFunctionPurgeCachedServers(smb.ctx)(smb.ctx);
}

/* log_smb_fail - remember why (for the warning) and drop the connection. */
static int log_smb_fail(const char *what, const char *url)
{
    snprintf(smb.why, sizeof(smb.why), "%.40s %.2100s: %.200s", what, url, strerror(errno));
    log_smb_disconnect();
    return -1;
}

/* log_smb_open_file - open maillog for appending; learn its size. */
static int log_smb_open_file(void)
{
    struct stat st;

    /* O_RDWR, not O_WRONLY: with O_APPEND libsmbclient queries the size, which a
     * write-only handle may not do (ENXIO) */
    smb.fh = smb_lib.smbc_getFunctionOpen(smb.ctx)(smb.ctx, smb.tgt.file_url,
                                                   O_CREAT | O_RDWR | O_APPEND, 0644);
    if (smb.fh == NULL)
        return log_smb_fail("cannot open", smb.tgt.file_url);
    if (smb_lib.smbc_getFunctionFstat(smb.ctx)(smb.ctx, smb.fh, &st) != 0)
        return log_smb_fail("cannot stat", smb.tgt.file_url);
    smb.fsize = st.st_size;
    return 0;
}

/* log_smb_context - the thread's one libsmbclient context, created at first use. */
static SMBCCTX *log_smb_context(void)
{
    SMBCCTX *c;

    if (smb.ctx != NULL) {
        if (smb.reconf) { /* a later start (tests) may use another config and timeout */
            smb_lib.smbc_setConfiguration(smb.ctx, smb.conf_path);
            smb_lib.smbc_setTimeout(smb.ctx, (int)smb.timeout_ms);
            smb.reconf = 0;
        }
        return smb.ctx;
    }
    errno = 0;
    {
        /* the library loads its configuration once, in the first smbc_new_context: only
         * from $HOME/.smb/smb.conf when that exists (ours), else from the system's file */
        const char *home = getenv("HOME");
        char *saved = home ? strdup(home) : NULL;

        setenv("HOME", smb.home_path, 1);
        c = smb_lib.smbc_new_context();
        if (saved) {
            setenv("HOME", saved, 1);
            free(saved);
        } else {
            unsetenv("HOME");
        }
    }
    if (c == NULL) {
        snprintf(smb.why, sizeof(smb.why), "cannot create an SMB client context");
        return NULL;
    }
    smb_lib.smbc_setDebug(c, 0);
    smb_lib.smbc_setLogCallback(c, NULL, log_smb_debug_cb);
    /* our own client settings, loaded over whatever the library read at first use */
    smb_lib.smbc_setConfiguration(c, smb.conf_path);
    smb_lib.smbc_setTimeout(c, (int)smb.timeout_ms);
    smb_lib.smbc_setOptionUseKerberos(c, 0);
    smb_lib.smbc_setOptionFallbackAfterKerberos(c, 1);
    smb_lib.smbc_setOptionNoAutoAnonymousLogin(c, 0);
    smb_lib.smbc_setOptionUseCCache(c, 0);
    smb_lib.smbc_setOptionProtocols(c, "SMB2_02", "SMB3");
    smb_lib.smbc_setFunctionAuthDataWithContext(c, log_smb_auth_cb);
    if (smb_lib.smbc_init_context(c) == NULL) {
        snprintf(smb.why, sizeof(smb.why), "cannot initialise the SMB client: %s", strerror(errno));
        smb_lib.smbc_free_context(c, 1);
        return NULL;
    }
    smb.ctx = c;
    return c;
}

/* log_smb_connect - (re)connect: directories, file. 0 up; -1 with smb.why. */
static int log_smb_connect(void)
{
    SMBCCTX *c = log_smb_context();

    if (c == NULL)
        return -1;
    for (int i = 0; i < smb.tgt.ndirs; i++) {
        if (smb_lib.smbc_getFunctionMkdir(c)(c, smb.tgt.dir_urls[i], 0755) != 0 && errno != EEXIST)
            return log_smb_fail("cannot create directory", smb.tgt.dir_urls[i]);
    }
    if (log_smb_open_file() != 0)
        return -1;
    if (smb.pending) {
        /* the last batch failed: whatever of it reached the file is not written again */
        if (smb.fsize > smb.pending_base &&
            smb.fsize - smb.pending_base <= (long long)smb.pending_len)
            log_smb_stream_drop((size_t)(smb.fsize - smb.pending_base));
        smb.pending = 0;
    }
    return 0;
}

/* log_smb_rotated_url - FILE_URL.N into BUF. */
static void log_smb_rotated_url(char *buf, size_t len, int n)
{
    if (n == 0)
        snprintf(buf, len, "%s", smb.tgt.file_url);
    else
        snprintf(buf, len, "%s.%d", smb.tgt.file_url, n);
}

/* log_smb_rotate - maillog.N-1 -> maillog.N ... maillog -> maillog.1, then a new maillog.
 * Only between batches, so every record is in exactly one file. */
static int log_smb_rotate(void)
{
    char from[2100], to[2100];
    SMBCCTX *c = smb.ctx;

    smb_lib.smbc_getFunctionClose(c)(c, smb.fh);
    smb.fh = NULL;
    log_smb_rotated_url(to, sizeof(to), smb.rot_count);
    if (smb_lib.smbc_getFunctionUnlink(c)(c, to) != 0 && errno != ENOENT)
        return log_smb_fail("cannot remove", to);
    for (int i = smb.rot_count - 1; i >= 0; i--) {
        log_smb_rotated_url(from, sizeof(from), i);
        log_smb_rotated_url(to, sizeof(to), i + 1);
        if (smb_lib.smbc_getFunctionRename(c)(c, from, c, to) != 0 && errno != ENOENT)
            return log_smb_fail("cannot rename", from);
    }
    return log_smb_open_file();
}

/* log_smb_write_all - append LEN bytes to the open file. */
static int log_smb_write_all(const char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t w = smb_lib.smbc_getFunctionWrite(smb.ctx)(smb.ctx, smb.fh, buf + done, len - done);
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* log_smb_fit - the longest prefix of the batch's N bytes that ends a record and fits ROOM. */
static size_t log_smb_fit(size_t n, long long room)
{
    if (room <= 0)
        return 0;
    if ((long long)n <= room && n > 0 && smb.batch[n - 1] == '\n')
        return n;
    size_t lim = (long long)n < room ? n : (size_t)room;
    char *nl = memrchr(smb.batch, '\n', lim);
    return nl ? (size_t)(nl - smb.batch) + 1 : 0;
}

/* log_smb_write_batch - one batch from the head of the stream to the share. */
static int log_smb_write_batch(void)
{
    int from_spill = smb.spill_off < smb.spill_size;
    size_t n = from_spill ? log_smb_spill_peek(smb.batch, LOG_SMB_BATCH)
                          : log_smb_queue_peek(smb.batch, LOG_SMB_BATCH);

    if (n == 0)
        return 0;
    if (smb.rot_size > 0) {
        /* whole records only, and never past the rotation size (one record alone may) */
        size_t fit = log_smb_fit(n, smb.rot_size - smb.fsize);
        if (fit == 0 && smb.fsize > 0) {
            if (log_smb_rotate() != 0)
                return -1;
            fit = log_smb_fit(n, smb.rot_size);
        }
        if (fit == 0) {
            char *nl = memchr(smb.batch, '\n', n);
            fit = nl ? (size_t)(nl - smb.batch) + 1 : n;
        }
        n = fit;
    }
    if (log_smb_write_all(smb.batch, n) != 0) {
        smb.pending = 1;
        smb.pending_base = smb.fsize;
        smb.pending_len = n;
        return log_smb_fail("cannot write", smb.tgt.file_url);
    }
    smb.fsize += (long long)n;
    if (from_spill)
        log_smb_spill_consume(n, log_smb_count_nl(smb.batch, n));
    else
        log_smb_queue_pop(n, log_smb_count_nl(smb.batch, n), 1);
    return 0;
}

/* log_smb_went_down - a failure: warn once per outage, schedule the reconnect (backoff). */
static void log_smb_went_down(void)
{
    smb.connected = 0;
    log_smb_set_up(0);
    if (!smb.warned) {
        log_warning(LOG_SMB_SERVICE,
                    "mail log share unreachable (%s); records are kept and "
                    "written when it returns",
                    smb.why);
        smb.warned = 1;
    }
    if (smb.backoff_ms == 0)
        smb.backoff_ms = LOG_SMB_BACKOFF_MIN_MS;
    else if ((smb.backoff_ms *= 2) > smb.backoff_max_ms)
        smb.backoff_ms = smb.backoff_max_ms;
    smb.next_try = clock_mono_after(smb.backoff_ms);
}

/* log_smb_went_up - the share took a write (or has nothing to take): the outage is over.
 * Only a successful write ends it, so a full or read-only share that still accepts
 * connections does not flap between "back" and "unreachable". */
static void log_smb_went_up(void)
{
    smb.backoff_ms = 0;
    if (__atomic_load_n(&smb.up, __ATOMIC_RELAXED))
        return;
    log_smb_set_up(1);
    if (smb.warned) {
        smb.warned = 0;
        log_mail(LOG_SMB_SERVICE, "mail log share is back; writing %lld waiting records",
                 log_smb_waiting());
    }
}

/* log_smb_has_work - records wait (spill or memory). */
static int log_smb_has_work(void)
{
    return smb.spill_off < smb.spill_size || log_smb_queue_used() > 0;
}

/* log_smb_main - the thread: first connect, then write, spill, reconnect until stopped. */
static void *log_smb_main(void *arg)
{
    (void)arg;
    int rc = log_smb_connect();

    if (rc == 0) {
        /* up before log_smb_start returns, so the counter is right from the start */
        smb.connected = 1;
        log_smb_went_up();
    }
    pthread_mutex_lock(&smb.mu);
    smb.start_state = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&smb.started);
    pthread_mutex_unlock(&smb.mu);
    if (rc != 0) {
        log_smb_disconnect();
        return NULL;
    }
    for (;;) {
        int stop, spill, conn = smb.connected;

        pthread_mutex_lock(&smb.mu);
        for (;;) {
            size_t used = smb.qtail - smb.qhead;
            spill = smb.rejected || used > smb.qbound / 2;
            stop = smb.stop;
            if (stop || (spill && log_smb_passed(smb.spill_retry)))
                break;
            if (conn && (used > 0 || smb.spill_off < smb.spill_size))
                break;
            if (!conn && log_smb_passed(smb.next_try))
                break;
            if (!conn) {
                pthread_cond_timedwait(&smb.wake, &smb.mu, &smb.next_try);
            } else if (spill) {
                pthread_cond_timedwait(&smb.wake, &smb.mu, &smb.spill_retry);
            } else {
                pthread_cond_wait(&smb.wake, &smb.mu);
            }
        }
        pthread_mutex_unlock(&smb.mu);

        if (stop)
            break;
        if (spill)
            log_smb_spill_memory();
        if (!conn) {
            if (!log_smb_passed(smb.next_try))
                continue;
            if (log_smb_connect() != 0) {
                log_smb_went_down();
                continue;
            }
            smb.connected = 1;
            if (!log_smb_has_work())
                log_smb_went_up();
            continue;
        }
        if (log_smb_write_batch() != 0)
            log_smb_went_down();
        else
            log_smb_went_up();
    }

    /* stopping: write what we can within the bound, keep the rest in the spill file */
    struct timespec deadline = clock_mono_after(LOG_SMB_STOP_WAIT_MS);
    while (smb.connected && log_smb_has_work() && !log_smb_passed(deadline)) {
        if (log_smb_write_batch() != 0)
            smb.connected = 0;
    }
    smb.spill_retry.tv_sec = 0;
    smb.spill_retry.tv_nsec = 0;
    log_smb_spill_memory();
    log_smb_disconnect();
    log_smb_set_up(0);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* public API */

void log_smb_set_rotation(long long size, int count)
{
    smb.rot_size = size > 0 ? size : 0;
    smb.rot_count = count >= 1 ? count : 1;
}

void log_smb_set_tuning(size_t queue_bytes, unsigned backoff_max_ms, unsigned timeout_ms)
{
    smb.qbound = queue_bytes;
    smb.backoff_max_ms = backoff_max_ms;
    smb.timeout_ms = timeout_ms;
}

/* log_smb_write_conf - libsmbclient's client settings, private to us (never the system's
 * choice of protocol, kerberos, name resolution or state directories). */
static int log_smb_write_conf(const char *dir, char **err)
{
    char *state = NULL;
    FILE *f;

    char *dotsmb = NULL;

    /* libsmbclient reads $HOME/.smb/smb.conf instead of /etc/samba/smb.conf when it
     * exists, so the file lives there and HOME points at it while the library starts */
    if (log_smb_path(&smb.home_path, dir, "/smb-home") != 0 ||
        log_smb_path(&dotsmb, dir, "/smb-home/.smb") != 0 ||
        log_smb_path(&smb.conf_path, dir, "/smb-home/.smb/smb.conf") != 0 ||
        log_smb_path(&state, dir, "/smb-client") != 0) {
        log_smb_errf(err, "out of memory");
        free(state);
        free(dotsmb);
        return -1;
    }
    if ((mkdir(state, 0700) != 0 && errno != EEXIST) ||
        (mkdir(smb.home_path, 0700) != 0 && errno != EEXIST) ||
        (mkdir(dotsmb, 0700) != 0 && errno != EEXIST)) {
        log_smb_errf(err, "cannot create %s: %s", dotsmb, strerror(errno));
        free(state);
        free(dotsmb);
        return -1;
    }
    free(dotsmb);
    f = fopen(smb.conf_path, "we");
    if (f == NULL) {
        log_smb_errf(err, "cannot write %s: %s", smb.conf_path, strerror(errno));
        free(state);
        return -1;
    }
    fprintf(f,
            "# Written by mtad at every start: libsmbclient settings for the log terminal.\n"
            "[global]\n"
            "   client min protocol = SMB2_02\n"
            "   client max protocol = SMB3\n"
            "   client use kerberos = off\n"
            "   client signing = if_required\n"
            "   client smb encrypt = if_required\n"
            "   disable netbios = yes\n"
            "   name resolve order = host\n"
            "   log level = 0\n"
            "   lock directory = %s\n"
            "   state directory = %s\n"
            "   cache directory = %s\n"
            "   private dir = %s\n"
            "   ncalrpc dir = %s\n",
            state, state, state, state, state);
    free(state);
    if (fclose(f) != 0) {
        log_smb_errf(err, "cannot write %s: %s", smb.conf_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* log_smb_cleanup - free everything start allocated (thread not running). */
static void log_smb_cleanup(void)
{
    log_smb_target_free(&smb.tgt);
    free(smb.url);
    free(smb.conf_path);
    free(smb.home_path);
    free(smb.spill_path);
    free(smb.offset_path);
    free(smb.batch);
    free(smb.q);
    smb.url = smb.conf_path = smb.home_path = smb.spill_path = smb.offset_path = smb.batch = smb.q =
        NULL;
    smb.qhead = smb.qtail = smb.qcap = 0;
    if (smb.spill_fd >= 0)
        close(smb.spill_fd);
    if (smb.offset_fd >= 0)
        close(smb.offset_fd);
    smb.spill_fd = smb.offset_fd = -1;
    counter_add(CNT_LOG_BACKLOG, -(smb.qrecords + smb.spill_records));
    smb.qrecords = 0;
    smb.spill_records = 0;
    counter_set(CNT_LOG_SPILLED, 0);
}

int log_smb_start(const char *url, const char *maillog_filename, const char *spill_dir, char **err)
{
    pthread_condattr_t ca;

    if (err)
        *err = NULL;
    if (smb.running) {
        log_smb_errf(err, "the log share is already started");
        return -1;
    }
    if (log_smb_target_parse(&smb.tgt, url, maillog_filename, err) != 0)
        return -1;
    if (log_smb_lib_load() != 0) {
        log_warning(LOG_SMB_SERVICE, "%s", smb.why);
        log_smb_errf(err, "%s", LOG_SMB_ERR_MOUNT);
        log_smb_cleanup();
        return -1;
    }
    smb.url = strdup(url);
    if (!smb.qbound)
        smb.qbound = LOG_SMB_QUEUE_DEFAULT;
    if (!smb.backoff_max_ms)
        smb.backoff_max_ms = LOG_SMB_BACKOFF_MAX_DEFAULT;
    if (smb.backoff_max_ms < LOG_SMB_BACKOFF_MIN_MS)
        smb.backoff_max_ms = LOG_SMB_BACKOFF_MIN_MS;
    if (!smb.timeout_ms)
        smb.timeout_ms = LOG_SMB_TIMEOUT_DEFAULT;
    smb.qcap = smb.qbound;
    smb.q = malloc(smb.qcap);
    smb.batch = malloc(LOG_SMB_BATCH);
    if (smb.url == NULL || smb.q == NULL || smb.batch == NULL) {
        log_smb_errf(err, "out of memory");
        goto fail;
    }
    if (log_smb_spill_open(spill_dir, err) != 0 || log_smb_write_conf(spill_dir, err) != 0)
        goto fail;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&smb.wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&smb.started, NULL);
    smb.stop = 0;
    smb.start_state = 0;
    smb.connected = smb.warned = 0;
    smb.reconf = 1;
    smb.backoff_ms = 0;
    smb.pending = 0;
    smb.spill_retry.tv_sec = smb.spill_retry.tv_nsec = 0;
    if (pthread_create(&smb.thread, NULL, log_smb_main, NULL) != 0) {
        log_smb_errf(err, "cannot start the log share thread");
        goto fail_cond;
    }
    pthread_mutex_lock(&smb.mu);
    while (smb.start_state == 0)
        pthread_cond_wait(&smb.started, &smb.mu);
    int ok = smb.start_state == 1;
    if (ok)
        smb.accepting = 1;
    pthread_mutex_unlock(&smb.mu);
    if (!ok) {
        pthread_join(smb.thread, NULL);
        log_warning(LOG_SMB_SERVICE, "%s", smb.why);
        log_smb_errf(err, "%s", LOG_SMB_ERR_MOUNT);
        goto fail_cond;
    }
    smb.running = 1;
    struct log_sink sink = {.name = "log_terminal", .write = log_smb_sink_write, .ctx = &smb};
    log_add_sink(&sink);
    return 0;

fail_cond:
    pthread_cond_destroy(&smb.wake);
    pthread_cond_destroy(&smb.started);
fail:
    log_smb_cleanup();
    return -1;
}

void log_smb_stop(void)
{
    if (!smb.running)
        return;
    pthread_mutex_lock(&smb.mu);
    smb.accepting = 0;
    smb.stop = 1;
    pthread_cond_signal(&smb.wake);
    pthread_mutex_unlock(&smb.mu);
    pthread_join(smb.thread, NULL);
    smb.running = 0;
    pthread_cond_destroy(&smb.wake);
    pthread_cond_destroy(&smb.started);
    log_smb_cleanup();
}

long long log_smb_waiting(void)
{
    long long q;

    pthread_mutex_lock(&smb.mu);
    q = smb.qrecords;
    pthread_mutex_unlock(&smb.mu);
    return q + __atomic_load_n(&smb.spill_records, __ATOMIC_RELAXED);
}

int log_smb_behind(void)
{
    if (!smb.running)
        return 0;
    return !__atomic_load_n(&smb.up, __ATOMIC_RELAXED) ||
           __atomic_load_n(&smb.spill_records, __ATOMIC_RELAXED) > 0;
}

int log_smb_message(char *buf, size_t len)
{
    if (len > 0)
        buf[0] = 0;
    if (!log_smb_behind())
        return 0;
    if (!__atomic_load_n(&smb.up, __ATOMIC_RELAXED))
        snprintf(buf, len, LOG_SMB_MSG_UNREACHABLE, log_smb_waiting());
    else
        snprintf(buf, len, LOG_SMB_MSG_CATCHING_UP, log_smb_waiting());
    return 1;
}
