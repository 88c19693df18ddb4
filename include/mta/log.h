/*
 * log.h - the mail log: Postfix-format records ("Mon DD HH:MM:SS host
 * syslog_name/service[pid]: text") handed to one writer thread, which writes
 * them to standard error, to maillog_file and to any extra sink (the CIFS share
 * of the log terminal). Callers never block on I/O: a record is formatted into
 * a bounded in-memory queue; when the queue is full the oldest-first order is
 * kept and the overflow is counted (see log_dropped()). A record is at most
 * LOG_RECORD_MAX bytes (longer text is cut); CR and LF in the text become
 * spaces and other control bytes '?', so a client cannot forge log lines.
 * Not here: what the records say (each module words its own).
 */
#ifndef MTA_LOG_H
#define MTA_LOG_H

#include <stddef.h>
#include <stdarg.h>

struct log_options {
    const char *hostname;     /* the host field of each record */
    const char *syslog_name;  /* "postfix" -> "postfix/smtpd[pid]" */
    const char *maillog_file; /* "" or NULL: none */
    const char *timezone;     /* "" or NULL: unchanged; else a tz name, validated */
    int to_stderr;            /* 1: also to standard error */
    /* Tuning, mostly for tests; 0 = default. */
    size_t max_records;     /* queue bound in records (default 65536) */
    size_t max_bytes;       /* queue bound in bytes (default 16 MiB) */
    unsigned sink_retry_ms; /* pause before retrying a failed sink (default 1000) */
};

#define LOG_RECORD_MAX 4096 /* bytes of one record, '\n' included */

/*
 * A sink receives whole records (each ends in '\n') on the writer thread only,
 * so it may block. write returns 0 when the bytes are stored, -1 when not (the
 * writer keeps them and retries later, in order).
 * buf may hold several records (one batch); -1 means none of them is stored,
 * and the retry passes them again with any newer ones appended. A failing sink
 * never holds back standard error, maillog_file or the other sinks; its own
 * backlog is bounded (16 MiB, overflow counted as dropped). The sink struct is
 * copied; ctx must stay valid until log_shutdown, which forgets all sinks.
 */
struct log_sink {
    const char *name;
    int (*write)(void *ctx, const char *buf, size_t len);
    void *ctx;
};

/* log_init - validate options and start the writer thread. 0 ok; -1 and *err (malloc'd). */
int log_init(const struct log_options *opt, char **err);
/* log_add_sink - attach an extra sink (before or after init). */
void log_add_sink(const struct log_sink *sink);
/* log_shutdown - flush every queued record and stop the writer thread (safe twice). */
void log_shutdown(void);
/* log_reopen - reopen maillog_file on the writer thread (SIGHUP after logrotate). */
void log_reopen(void);
/* log_flush - wait (at most 10 s) until every record logged so far is written. */
void log_flush(void);

/* log_mail - one mail log record from SERVICE ("smtpd", "qmgr", "smtp", "bounce", ...). */
void log_mail(const char *service, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmail(const char *service, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * Pseudo-pids: the records of one SMTP session (or one outbound delivery
 * connection) carry their own number in "service[PID]", so tools that pair
 * lines by pid (pflogsumm --smtpd-stats: "connect from" with "disconnect
 * from") see one process per session, as with Postfix's smtpd processes.
 * PID 0 means the daemon's real pid (lines not tied to a session).
 */
/* log_new_pid - a fresh pseudo-pid, above any real Linux pid (docs/logging.md). */
long log_new_pid(void);
/* log_mail_pid - log_mail with the pseudo-pid PID (0: the real pid). */
void log_mail_pid(const char *service, long pid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* log_warning_pid - log_warning with the pseudo-pid PID. */
void log_warning_pid(const char *service, long pid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Daemon messages, in the mail log as Postfix words them ("warning: ...", "fatal: ..."). */
#define log_info(...) log_mail("master", __VA_ARGS__)
void log_warning(const char *service, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_error(const char *service, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* log_fatal - broken invariant: log, flush, abort. Never for bad input. */
void log_fatal(const char *service, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* log_format_time - "Mon DD HH:MM:SS" for t in the configured zone (for tests and DSNs). */
void log_format_time(long t, char *buf, size_t len);
/* log_dropped - records lost because the queue was full (should stay 0). */
unsigned long log_dropped(void);

#endif
