/*
 * log.c - the mail log writer: formats Postfix-style records on the calling
 * thread, queues them in a bounded FIFO and lets ONE writer thread hand them,
 * in order and in batches, to standard error, maillog_file and extra sinks.
 * The caller never waits for I/O: a full queue drops the record and counts it.
 * Not here: the wording of records (each module owns its own), the CIFS share
 * (a sink registered by the log-share module, which keeps its own backlog).
 */
#include "mta/clock.h"
#include "mta/conf.h"
#include "mta/log.h"
#include "mta/counters.h"
#include "mta/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_DEFAULT_MAX_RECORDS ((size_t)64 * 1024)
#define LOG_DEFAULT_MAX_BYTES ((size_t)16 * 1024 * 1024)
#define LOG_DEFAULT_RETRY_MS 1000u
#define LOG_SINK_BACKLOG_MAX ((size_t)16 * 1024 * 1024)
#define LOG_MAX_SINKS 8
#define LOG_FLUSH_WAIT_SEC 10
#define LOG_GATHER_NS 1000000L /* a woken writer waits this long for more records */
#define LOG_NAME_MAX 255

/* One queued record; data holds the whole line, '\n' included. */
struct log_rec {
    STAILQ_ENTRY(log_rec) link;
    size_t len;
    char data[];
};

/* A registered sink plus what it has not accepted yet (writer thread only). */
struct log_sink_slot {
    struct log_sink sink;
    char *name;
    char *backlog;
    size_t len, cap;
    struct timespec retry_at;
    int failing;
};

/* The whole writer state; mu guards the queue, the flags and nsinks. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the writer waits here (CLOCK_MONOTONIC) */
    pthread_cond_t done; /* log_flush waits here */
    int cond_ready;
    int running;   /* writer thread exists */
    int accepting; /* log_vmail may enqueue */
    int stop, reopen;
    STAILQ_HEAD(log_rec_list, log_rec) queue;
    size_t count, bytes;
    size_t max_records, max_bytes;
    unsigned retry_ms;
    unsigned long long enq_seq, done_seq;
    pthread_t thread;
    int fd; /* maillog_file or -1; touched by the writer while running */
    char *path;
    int to_stderr;
    struct log_sink_slot sinks[LOG_MAX_SINKS];
    size_t nsinks;
} log_st = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .queue = STAILQ_HEAD_INITIALIZER(log_st.queue),
    .fd = -1,
};

static atomic_ulong log_ndropped;
static atomic_uint log_time_gen; /* bumped when the zone changes: per-thread caches expire */

/* Identity of each record; set by log_init while no writer runs. */
static char log_host[LOG_NAME_MAX + 1];
static char log_name[LOG_NAME_MAX + 1] = "postfix";
static pthread_once_t log_host_once = PTHREAD_ONCE_INIT;

static const char log_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* log_copy_name - copy a host or syslog name, bounded, with blanks/controls made '_'. */
static void log_copy_name(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c <= ' ' || c == 0x7f) ? '_' : (char)c;
    }
    dst[i] = 0;
}

/* The pid in every record, read once with the host name (getpid is a system call, five per
 * message otherwise); a child of fork() reads its own. */
static long log_pid;

static void log_pid_child(void)
{
    log_pid = (long)getpid();
}

/* log_host_default - the host field before log_init names one: gethostname(). Also the pid. */
static void log_host_default(void)
{
    log_pid = (long)getpid();
    pthread_atfork(NULL, NULL, log_pid_child);
    char h[LOG_NAME_MAX + 1] = "";
    if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
        strcpy(h, "localhost");
    h[sizeof(h) - 1] = 0;
    log_copy_name(log_host, sizeof(log_host), h);
}

void log_format_time(long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!buf || !len)
        return;
    if (!localtime_r(&tt, &tm))
        memset(&tm, 0, sizeof(tm));
    /* the fields reduced to their ranges, so the compiler can see the result fits 16 bytes
     * (a Release build's -Wformat-truncation otherwise assumes eleven digits each, and a
     * month name as long as the whole table: hence %.3s) */
    snprintf(buf, len, "%.3s %2u %02u:%02u:%02u", log_months[(unsigned)tm.tm_mon % 12u],
             (unsigned)tm.tm_mday % 32u, (unsigned)tm.tm_hour % 24u, (unsigned)tm.tm_min % 60u,
             (unsigned)tm.tm_sec % 61u);
}

/* log_now_str - "Mon DD HH:MM:SS" for now, cached per thread for the current second. */
static const char *log_now_str(void)
{
    static __thread time_t last = (time_t)-1;
    static __thread unsigned gen;
    static __thread char str[32];
    time_t now = time(NULL);
    unsigned g = atomic_load_explicit(&log_time_gen, memory_order_relaxed);
    if (now != last || g != gen) {
        log_format_time((long)now, str, sizeof(str));
        last = now;
        gen = g;
    }
    return str;
}

/* log_sanitize - CR/LF become spaces, other control bytes '?': one record = one line. */
static void log_sanitize(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n')
            s[i] = ' ';
        else if ((c < ' ' && c != '\t') || c == 0x7f)
            s[i] = '?';
    }
}

/* log_utf8_cut - length <= len that does not end inside a UTF-8 sequence. */
static size_t log_utf8_cut(const char *s, size_t len)
{
    size_t i = len;
    size_t back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0)
        return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && back + 1 < need)
        return i - 1; /* incomplete sequence: drop it */
    return len;
}

/*
 * log_format - build one record in buf (LOG_RECORD_MAX bytes); returns its
 * length, '\n' included. prefix ("warning: ") goes before the caller's text.
 */
__attribute__((format(printf, 5, 0))) static size_t log_format(char *buf, const char *service,
                                                               long pid, const char *prefix,
                                                               const char *fmt, va_list ap)
{
    pthread_once(&log_host_once, log_host_default);
    if (!service || !*service)
        service = "mta";
    int n = snprintf(buf, LOG_RECORD_MAX, "%s %s %s/%.64s[%ld]: %s", log_now_str(), log_host,
                     log_name, service, pid > 0 ? pid : log_pid, prefix ? prefix : "");
    size_t head = (n < 0) ? 0 : (size_t)n;
    if (head > LOG_RECORD_MAX - 2)
        head = LOG_RECORD_MAX - 2;       /* absurd names: keep room for the newline */
    size_t room = LOG_RECORD_MAX - head; /* text + NUL; the NUL slot becomes '\n' */
    int t = fmt ? vsnprintf(buf + head, room, fmt, ap) : 0;
    size_t text = (t < 0) ? 0 : (size_t)t;
    if (text >= room)
        text = log_utf8_cut(buf + head, room - 1);
    log_sanitize(buf, head + text);
    buf[head + text] = '\n';
    return head + text + 1;
}

/* log_mkdirs - create the missing parent directories of PATH (mkdir -p dirname). */
static int log_mkdirs(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char dir[PATH_MAX];
    if ((size_t)(slash - path) >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    return fs_mkdir_p(dir, 0750);
}

/* log_open_file - open the mail log for appending, creating it and its directories. */
static int log_open_file(const char *path)
{
    if (log_mkdirs(path) != 0)
        return -1;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* log_count_lines - records in a batch (for drop accounting). */
static unsigned long log_count_lines(const char *buf, size_t len)
{
    unsigned long n = 0;
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++)
        n++;
    return n;
}

/* log_note_dropped - count records lost outside the queue (sink backlog overflow). */
static void log_note_dropped(unsigned long n)
{
    if (!n)
        return;
    atomic_fetch_add(&log_ndropped, n);
    counter_add(CNT_LOG_DROPPED, (long long)n);
}

/* log_sink_append - keep bytes a sink did not take; beyond the bound they are dropped. */
static void log_sink_append(struct log_sink_slot *s, const char *buf, size_t len)
{
    if (s->len + len > LOG_SINK_BACKLOG_MAX) {
        log_note_dropped(log_count_lines(buf, len));
        return;
    }
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + len)
            cap *= 2;
        char *nb = realloc(s->backlog, cap);
        if (!nb) {
            log_note_dropped(log_count_lines(buf, len));
            return;
        }
        s->backlog = nb;
        s->cap = cap;
    }
    memcpy(s->backlog + s->len, buf, len);
    s->len += len;
}

/* log_sink_push - offer a batch to one sink, oldest bytes first; a refusal waits retry_ms. */
static void log_sink_push(struct log_sink_slot *s, const char *buf, size_t len, unsigned retry_ms)
{
    struct timespec now = clock_mono_after(0);
    if (s->len == 0) {
        if (len == 0 || s->sink.write(s->sink.ctx, buf, len) == 0)
            return;
        log_sink_append(s, buf, len);
        s->retry_at = clock_mono_after(retry_ms);
        if (!s->failing) {
            s->failing = 1; /* say it once per outage, not per retry */
            log_warning("master", "log sink %s refuses records; keeping them for a retry", s->name);
        }
        return;
    }
    log_sink_append(s, buf, len);
    if (clock_ts_before(&now, &s->retry_at))
        return;
    if (s->sink.write(s->sink.ctx, s->backlog, s->len) == 0) {
        s->len = 0;
        s->failing = 0;
        log_info("log sink %s accepts records again", s->name);
        if (s->cap > 1024 * 1024) { /* give a big outage's memory back */
            free(s->backlog);
            s->backlog = NULL;
            s->cap = 0;
        }
    } else {
        s->retry_at = clock_mono_after(retry_ms);
    }
}

/* log_buf_add - append to the writer's batch buffer (grown as needed). */
static int log_buf_add(char **b, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 65536;
        while (c < *len + n)
            c *= 2;
        char *nb = realloc(*b, c);
        if (!nb)
            return -1;
        *b = nb;
        *cap = c;
    }
    memcpy(*b + *len, data, n);
    *len += n;
    return 0;
}

/* log_file_reopen - writer side of log_reopen: swap to a fresh descriptor if it opens. */
static void log_file_reopen(void)
{
    if (!log_st.path)
        return;
    int fd = log_open_file(log_st.path);
    if (fd < 0) {
        log_warning("master", "cannot reopen maillog_file %s: %s", log_st.path, strerror(errno));
        return; /* keep writing to the old file */
    }
    if (log_st.fd >= 0)
        close(log_st.fd);
    log_st.fd = fd;
}

/* log_writer_main - the writer thread: drain the queue in order, batch by batch. */
static void *log_writer_main(void *arg)
{
    char *batch = NULL;
    size_t cap = 0;
    unsigned long reported = atomic_load(&log_ndropped);
    int file_err = 0;

    pthread_mutex_lock(&log_st.mu);
    for (;;) {
        while (STAILQ_EMPTY(&log_st.queue) && !log_st.stop && !log_st.reopen) {
            /* a refused sink needs a wake-up even when nothing new arrives */
            int pending = 0;
            struct timespec due = {0, 0};
            for (size_t i = 0; i < log_st.nsinks; i++) {
                struct log_sink_slot *s = &log_st.sinks[i];
                if (s->len && (!pending || clock_ts_before(&s->retry_at, &due))) {
                    due = s->retry_at;
                    pending = 1;
                }
            }
            if (!pending) {
                pthread_cond_wait(&log_st.wake, &log_st.mu);
                continue;
            }
            if (pthread_cond_timedwait(&log_st.wake, &log_st.mu, &due) == ETIMEDOUT)
                break;
        }
        if (!STAILQ_EMPTY(&log_st.queue) && !log_st.stop) {
            /* Let the records of the next millisecond join this batch: under load one wake-up
             * and one write() then carry many records instead of one each (a message makes
             * about five), which costs the loop thread a wake-up call per record otherwise. */
            pthread_mutex_unlock(&log_st.mu);
            struct timespec gather = {0, LOG_GATHER_NS};
            nanosleep(&gather, NULL);
            pthread_mutex_lock(&log_st.mu);
        }
        struct log_rec_list list = STAILQ_HEAD_INITIALIZER(list);
        STAILQ_CONCAT(&list, &log_st.queue);
        size_t n = log_st.count;
        log_st.count = log_st.bytes = 0;
        int do_reopen = log_st.reopen;
        int stopping = log_st.stop;
        size_t nsinks = log_st.nsinks;
        log_st.reopen = 0;
        counter_add(CNT_LOG_BACKLOG, -(long long)n);
        pthread_mutex_unlock(&log_st.mu);

        if (do_reopen)
            log_file_reopen();

        size_t len = 0;
        struct log_rec *r;
        STAILQ_FOREACH(r, &list, link)
        if (log_buf_add(&batch, &len, &cap, r->data, r->len) != 0)
            log_note_dropped(1);
        unsigned long dropped = atomic_load(&log_ndropped);
        if (dropped != reported) {
            /* say it in the log itself, so a reader sees the gap */
            char rec[LOG_RECORD_MAX];
            size_t m = 0;
            int k = snprintf(rec, sizeof(rec),
                             "%s %s %s/master[%ld]: warning: mail log queue full: %lu "
                             "record(s) dropped\n",
                             log_now_str(), log_host, log_name, log_pid, dropped - reported);
            m = (k < 0) ? 0 : (size_t)k < sizeof(rec) ? (size_t)k : sizeof(rec) - 1;
            if (m && log_buf_add(&batch, &len, &cap, rec, m) == 0)
                reported = dropped;
        }
        if (len) {
            if (log_st.to_stderr)
                (void)fs_write_all(2, batch, len);
            if (log_st.fd >= 0) {
                if (fs_write_all(log_st.fd, batch, len) != 0) {
                    if (!file_err) /* once per failure streak (e.g. disk full) */
                        log_warning("master", "cannot write maillog_file %s: %s", log_st.path,
                                    strerror(errno));
                    file_err = 1;
                } else {
                    file_err = 0;
                }
            }
        }
        for (size_t i = 0; i < nsinks; i++)
            log_sink_push(&log_st.sinks[i], batch, len, log_st.retry_ms);
        while ((r = STAILQ_FIRST(&list))) {
            STAILQ_REMOVE_HEAD(&list, link);
            free(r);
        }

        pthread_mutex_lock(&log_st.mu);
        log_st.done_seq += n;
        pthread_cond_broadcast(&log_st.done);
        if (stopping && STAILQ_EMPTY(&log_st.queue))
            break;
    }
    size_t nsinks = log_st.nsinks;
    pthread_mutex_unlock(&log_st.mu);

    /* last chance for sinks still holding a backlog; what they refuse is lost */
    for (size_t i = 0; i < nsinks; i++) {
        struct log_sink_slot *s = &log_st.sinks[i];
        if (s->len && s->sink.write(s->sink.ctx, s->backlog, s->len) != 0) {
            unsigned long lost = log_count_lines(s->backlog, s->len);
            log_note_dropped(lost);
            /* no writer any more: this goes to standard error */
            log_warning("master", "log sink %s: %lu record(s) not stored at shutdown", s->name,
                        lost);
        }
        s->len = 0;
    }
    free(batch);
    return NULL;
}

/* log_cond_init - the condition variables, once (the writer's uses CLOCK_MONOTONIC). */
static void log_cond_init(void)
{
    if (log_st.cond_ready)
        return;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log_st.wake, &ca);
    pthread_cond_init(&log_st.done, &ca);
    pthread_condattr_destroy(&ca);
    log_st.cond_ready = 1;
}

int log_init(const struct log_options *opt, char **err)
{
    struct log_options none = {0};
    if (err)
        *err = NULL;
    if (!opt)
        opt = &none;

    pthread_mutex_lock(&log_st.mu);
    int busy = log_st.running;
    pthread_mutex_unlock(&log_st.mu);
    if (busy) {
        if (err && asprintf(err, "log_init: the mail log is already started") < 0)
            *err = NULL;
        return -1;
    }

    if (opt->timezone && *opt->timezone) {
        if (!conf_timezone_valid(opt->timezone)) {
            if (err && asprintf(err, "unknown timezone \"%.200s\"", opt->timezone) < 0)
                *err = NULL;
            return -1;
        }
        setenv("TZ", opt->timezone, 1);
        tzset();
        atomic_fetch_add(&log_time_gen, 1);
    }

    int fd = -1;
    char *path = NULL;
    if (opt->maillog_file && *opt->maillog_file) {
        fd = log_open_file(opt->maillog_file);
        if (fd < 0) {
            if (err && asprintf(err, "cannot open maillog_file %.1024s: %s", opt->maillog_file,
                                strerror(errno)) < 0)
                *err = NULL;
            return -1;
        }
        path = strdup(opt->maillog_file);
        if (!path) {
            close(fd);
            if (err)
                *err = strdup("log_init: out of memory");
            return -1;
        }
    }

    pthread_once(&log_host_once, log_host_default);
    if (opt->hostname && *opt->hostname)
        log_copy_name(log_host, sizeof(log_host), opt->hostname);
    log_copy_name(log_name, sizeof(log_name),
                  (opt->syslog_name && *opt->syslog_name) ? opt->syslog_name : "postfix");

    pthread_mutex_lock(&log_st.mu);
    log_cond_init();
    log_st.fd = fd;
    log_st.path = path;
    log_st.to_stderr = opt->to_stderr;
    log_st.max_records = opt->max_records ? opt->max_records : LOG_DEFAULT_MAX_RECORDS;
    log_st.max_bytes = opt->max_bytes ? opt->max_bytes : LOG_DEFAULT_MAX_BYTES;
    log_st.retry_ms = opt->sink_retry_ms ? opt->sink_retry_ms : LOG_DEFAULT_RETRY_MS;
    log_st.stop = log_st.reopen = 0;
    int rc = pthread_create(&log_st.thread, NULL, log_writer_main, NULL);
    if (rc != 0) {
        log_st.fd = -1;
        log_st.path = NULL;
        pthread_mutex_unlock(&log_st.mu);
        if (fd >= 0)
            close(fd);
        free(path);
        if (err && asprintf(err, "log_init: cannot start the writer thread: %s", strerror(rc)) < 0)
            *err = NULL;
        return -1;
    }
    log_st.running = 1;
    log_st.accepting = 1;
    pthread_mutex_unlock(&log_st.mu);
    return 0;
}

void log_add_sink(const struct log_sink *sink)
{
    if (!sink || !sink->write)
        return;
    char *name = strdup(sink->name ? sink->name : "sink");
    pthread_mutex_lock(&log_st.mu);
    if (log_st.nsinks >= LOG_MAX_SINKS || !name) {
        pthread_mutex_unlock(&log_st.mu);
        free(name);
        log_warning("master", "log_add_sink: no room for sink %s",
                    sink->name ? sink->name : "sink");
        return;
    }
    struct log_sink_slot *s = &log_st.sinks[log_st.nsinks];
    memset(s, 0, sizeof(*s));
    s->sink = *sink;
    s->name = name;
    s->sink.name = name;
    log_st.nsinks++; /* the writer reads slots below nsinks only */
    pthread_mutex_unlock(&log_st.mu);
}

void log_shutdown(void)
{
    pthread_mutex_lock(&log_st.mu);
    int was_running = log_st.running;
    if (was_running && pthread_equal(pthread_self(), log_st.thread)) {
        pthread_mutex_unlock(&log_st.mu); /* from a sink: joining itself would hang */
        return;
    }
    if (was_running) {
        log_st.accepting = 0;
        log_st.stop = 1;
        pthread_cond_signal(&log_st.wake);
    }
    pthread_mutex_unlock(&log_st.mu);
    if (was_running)
        pthread_join(log_st.thread, NULL);

    pthread_mutex_lock(&log_st.mu);
    log_st.running = 0;
    log_st.stop = 0;
    if (log_st.fd >= 0)
        close(log_st.fd);
    log_st.fd = -1;
    free(log_st.path);
    log_st.path = NULL;
    for (size_t i = 0; i < log_st.nsinks; i++) {
        free(log_st.sinks[i].backlog);
        free(log_st.sinks[i].name);
        memset(&log_st.sinks[i], 0, sizeof(log_st.sinks[i]));
    }
    log_st.nsinks = 0;
    pthread_mutex_unlock(&log_st.mu);
}

void log_reopen(void)
{
    pthread_mutex_lock(&log_st.mu);
    if (log_st.running) {
        log_st.reopen = 1;
        pthread_cond_signal(&log_st.wake);
    }
    pthread_mutex_unlock(&log_st.mu);
}

/* log_flush_locked - wait (bounded) until the writer has passed seq; mu held. */
static void log_flush_locked(unsigned long long seq)
{
    struct timespec until = clock_mono_after(LOG_FLUSH_WAIT_SEC * 1000u);
    pthread_cond_signal(&log_st.wake);
    while (log_st.running && log_st.done_seq < seq)
        if (pthread_cond_timedwait(&log_st.done, &log_st.mu, &until) == ETIMEDOUT)
            break;
}

void log_flush(void)
{
    pthread_mutex_lock(&log_st.mu);
    if (log_st.running && !pthread_equal(pthread_self(), log_st.thread))
        log_flush_locked(log_st.enq_seq);
    pthread_mutex_unlock(&log_st.mu);
}

unsigned long log_dropped(void)
{
    return atomic_load(&log_ndropped);
}

/*
 * log_submit - queue one formatted record (or write it to stderr when no writer
 * runs). force: ignore the bounds (a fatal record must not be lost). Returns the
 * record's sequence number, 0 when it was not queued.
 */
static unsigned long long log_submit(const char *buf, size_t len, int force)
{
    struct log_rec *r = malloc(sizeof(*r) + len);
    pthread_mutex_lock(&log_st.mu);
    if (!log_st.accepting) {
        pthread_mutex_unlock(&log_st.mu);
        free(r);
        (void)fs_write_all(2, buf, len);
        return 0;
    }
    if (!r ||
        (!force && (log_st.count >= log_st.max_records || log_st.bytes + len > log_st.max_bytes))) {
        pthread_mutex_unlock(&log_st.mu);
        free(r);
        log_note_dropped(1);
        return 0;
    }
    memcpy(r->data, buf, len);
    r->len = len;
    STAILQ_INSERT_TAIL(&log_st.queue, r, link);
    log_st.count++;
    log_st.bytes += len;
    unsigned long long seq = ++log_st.enq_seq;
    counter_add(CNT_LOG_BACKLOG, 1);
    if (log_st.count == 1)
        pthread_cond_signal(&log_st.wake);
    pthread_mutex_unlock(&log_st.mu);
    return seq;
}

/* log_emit - format and queue one record with an optional severity prefix. */
__attribute__((format(printf, 4, 0))) static void
log_emit(const char *service, long pid, const char *prefix, const char *fmt, va_list ap)
{
    char buf[LOG_RECORD_MAX];
    size_t len = log_format(buf, service, pid, prefix, fmt, ap);
    (void)log_submit(buf, len, 0);
}

/*
 * log_new_pid - the pseudo-pid of one SMTP session or delivery connection.
 * Linux pids never exceed PID_MAX_LIMIT (2^22, the largest pid_max), so a
 * counter above it cannot name a real process; it wraps below INT_MAX (tools
 * and Postfix itself hold pids in an int) after about 2.1e9 sessions, far more
 * than a day brings. Atomic: sessions and connections may start on any thread.
 */
long log_new_pid(void)
{
    static _Atomic unsigned long next;
    const unsigned long base = 4194304UL; /* PID_MAX_LIMIT on 64-bit Linux */
    const unsigned long span = 2147483647UL - base;
    unsigned long n = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
    return (long)(base + 1 + n % span);
}

void log_mail_pid(const char *service, long pid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, pid, NULL, fmt, ap);
    va_end(ap);
}

void log_warning_pid(const char *service, long pid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, pid, "warning: ", fmt, ap);
    va_end(ap);
}

void log_vmail(const char *service, const char *fmt, va_list ap)
{
    log_emit(service, 0, NULL, fmt, ap);
}

void log_mail(const char *service, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, 0, NULL, fmt, ap);
    va_end(ap);
}

void log_warning(const char *service, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, 0, "warning: ", fmt, ap);
    va_end(ap);
}

void log_error(const char *service, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(service, 0, "error: ", fmt, ap);
    va_end(ap);
}

void log_fatal(const char *service, const char *fmt, ...)
{
    char buf[LOG_RECORD_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t len = log_format(buf, service, 0, "fatal: ", fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_st.mu);
    int on_writer = log_st.running && pthread_equal(pthread_self(), log_st.thread);
    pthread_mutex_unlock(&log_st.mu);
    if (on_writer) {
        /* the writer cannot wait for itself: write straight out */
        (void)fs_write_all(2, buf, len);
        if (log_st.fd >= 0)
            (void)fs_write_all(log_st.fd, buf, len);
        abort();
    }
    unsigned long long seq = log_submit(buf, len, 1);
    if (seq) {
        pthread_mutex_lock(&log_st.mu);
        log_flush_locked(seq);
        pthread_mutex_unlock(&log_st.mu);
    }
    abort();
}
