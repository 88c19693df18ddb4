/*
 * rlimit.h - descriptors as a bounded resource: the open-file limit
 * (RLIMIT_NOFILE) raised at start-up to what the configured limits need, and
 * the accept() back-off every listener uses when the process or the system runs
 * out of descriptors or memory (Postfix/nginx: stop accepting for a moment, log
 * once, never spin on a listening socket that stays readable).
 * Not here: the limits themselves (smtpd, stats) or what a listener accepts.
 */
#ifndef MTA_RLIMIT_H
#define MTA_RLIMIT_H

struct conf;
struct event_base;
struct evconnlistener;

/*
 * Descriptors the daemon may hold at once besides its sessions: listeners, the
 * event loop, worker pipes, the spool's directories and pool files, the mail
 * log, the log share and its spill file, the control socket and its clients,
 * c-ares sockets, key files during a reload. Generous: too few means EMFILE.
 */
#define RLIMIT_NOFILE_SLACK 256

/*
 * rlimit_nofile_need - descriptors the configuration cannot do without: one per
 * SMTP session (its socket), per HTTP connection and per outbound delivery, plus
 * RLIMIT_NOFILE_SLACK. Below it mtad does not start.
 */
long rlimit_nofile_need(const struct conf *c);
/*
 * rlimit_nofile_want - what every limit reached at once can use: a session that
 * streams a large message to the spool holds a second descriptor, so two per
 * SMTP session. Between need and want the soft limit is as high as the hard one
 * allows; a descriptor missing then gets that message a 4xx, never a crash.
 */
long rlimit_nofile_want(const struct conf *c);

/*
 * rlimit_nofile_raise - raise the soft RLIMIT_NOFILE to rlimit_nofile_want (and
 * the hard one too when it is lower and the process may: root with
 * CAP_SYS_RESOURCE), else as far as the hard limit goes. Never lowers a limit.
 * Returns 0 (*before and *after: the soft limits, -1 for unlimited), or -1 with
 * *err (malloc'd, a start-up message naming smtpd_session_limit) when even
 * rlimit_nofile_need cannot be had.
 */
int rlimit_nofile_raise(const struct conf *c, long *before, long *after, char **err);

/*
 * The accept back-off of one service: when accept() fails (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM, ...) every listener of the service is disabled for a short
 * pause (RLIMIT_PAUSE_MIN_MS, doubling while failures repeat, at most
 * RLIMIT_PAUSE_MAX_MS) and re-enabled by a timer; at most one log line per
 * RLIMIT_LOG_INTERVAL seconds, with the number of failures not logged.
 */
#define RLIMIT_PAUSE_MIN_MS 100
#define RLIMIT_PAUSE_MAX_MS 1000
#define RLIMIT_LOG_INTERVAL 10
#define RLIMIT_MAX_LISTENERS 4

struct rlimit_accept;

/* rlimit_accept_new - the back-off of SERVICE (the log line's service name); NULL on ENOMEM. */
struct rlimit_accept *rlimit_accept_new(struct event_base *base, const char *service);
/* rlimit_accept_add - pause L too (up to RLIMIT_MAX_LISTENERS); 0, or -1 when full. */
int rlimit_accept_add(struct rlimit_accept *a, struct evconnlistener *l);
/* rlimit_accept_clear - forget every listener (before they are freed); the timer is stopped. */
void rlimit_accept_clear(struct rlimit_accept *a);
/* rlimit_accept_failed - accept() failed with ERR: pause the listeners, maybe log. */
void rlimit_accept_failed(struct rlimit_accept *a, int err);
/* rlimit_accept_ok - a connection was accepted: the next failure starts with the shortest pause. */
void rlimit_accept_ok(struct rlimit_accept *a);
/* rlimit_accept_free - stop and free (NULL ok); the listeners are not freed. */
void rlimit_accept_free(struct rlimit_accept *a);

#endif
