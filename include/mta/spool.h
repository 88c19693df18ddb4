/*
 * spool.h - the durable mail queue on the data volume (the contract between
 * intake and delivery). A message is acknowledged only after spool_msg_commit's
 * done callback reports success: by then its file is written, fsync'd, renamed
 * into the queue and the directory fsync'd. All file I/O runs on worker threads;
 * these functions never block the event loop (except spool_open at start-up).
 * Commits that arrive together share one disk flush (group commit).
 * Not here: scheduling and delivery (they ask the spool for messages).
 */
#ifndef MTA_SPOOL_H
#define MTA_SPOOL_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct conf;
struct spool;
struct spool_msg;

#define SPOOL_ID_SIZE 24 /* queue ID incl. NUL; IDs are upper-case hex, Postfix-style */

/* DSN (RFC 3461) per recipient: NOTIFY bits; 0 means "not given" (default). */
enum {
    SPOOL_NOTIFY_NEVER = 1,
    SPOOL_NOTIFY_SUCCESS = 2,
    SPOOL_NOTIFY_FAILURE = 4,
    SPOOL_NOTIFY_DELAY = 8,
};
enum spool_ret { SPOOL_RET_DEFAULT = 0, SPOOL_RET_FULL, SPOOL_RET_HDRS };

/*
 * What one envelope field may hold at most (decoded bytes), enforced when an
 * envelope is written and again when it is read back (docs/spool-format.md):
 * RFC 5321 4.5.3.1 for paths, RFC 3461 for ENVID and ORCPT, the rest bounded
 * because nothing on disk is trusted. No field ever holds a control byte.
 */
#define SPOOL_ADDR_MAX 256   /* sender, recipient (smtpd's path limit) */
#define SPOOL_LOCAL_MAX 64   /* local part (before the last '@') */
#define SPOOL_DOMAIN_MAX 255 /* domain (after the last '@') */
#define SPOOL_ORCPT_MAX 500  /* "type;address" */
#define SPOOL_ENVID_MAX 100
#define SPOOL_HELO_MAX 1024 /* longer HELO names are cut when written */
#define SPOOL_CLIENT_NAME_MAX 255
#define SPOOL_CLIENT_ADDR_MAX 64
#define SPOOL_SIZE_MAX (1LL << 40)             /* message bytes */
#define SPOOL_TIME_US_MAX 253402300799999999LL /* arrival: the end of the year 9999 */

struct spool_rcpt {
    char *addr;  /* as given in RCPT TO, without <> */
    char *orcpt; /* DSN ORCPT=, "" when not given (stored xtext-decoded as "rfc822;addr") */
    int notify;  /* SPOOL_NOTIFY_* bits */
};

struct spool_envelope {
    char id[SPOOL_ID_SIZE];
    char *sender; /* "" for the null sender */
    struct spool_rcpt *rcpt;
    int nrcpt;
    char *envid;   /* DSN ENVID=, "" when not given */
    int ret;       /* enum spool_ret */
    int smtputf8;  /* MAIL ... SMTPUTF8 */
    int body_8bit; /* BODY=8BITMIME */
    char *client_name, *client_addr, *helo;
    long long arrival_us; /* arrival time, microseconds since the epoch */
    long long size;       /* bytes of the stored message (CRLF lines, dot-unstuffed) */
};

/*
 * spool_open - create DATA_VOLUME's directories if missing, purge tmp/, rebuild
 * the queue counters from queue/ and quarantine unreadable files into corrupt/
 * (never deleting them). May block: call at start-up only. NULL and *err on error.
 */
struct spool *spool_open(struct event_base *base, const struct conf *conf, char **err);
/* spool_close - wait for every commit in flight (running its done callback), then free. */
void spool_close(struct spool *sp);
/* spool_drain - on the loop thread while the loop does not run (shutdown): wait for
 * every commit, write and removal in flight and run its done(). Returns how many ran. */
int spool_drain(struct spool *sp);

/* --- intake --- */

/* spool_msg_new - a new message with a fresh queue ID. No I/O on the loop. */
struct spool_msg *spool_msg_new(struct spool *sp);
const char *spool_msg_id(const struct spool_msg *m);
/*
 * spool_msg_append - move all of BUF (message bytes as stored: CRLF line ends,
 * dot-unstuffed) into the message. Large messages are written out by a worker
 * in the background. Returns 0, or -1 when an earlier background write failed
 * (the commit will then fail too).
 */
int spool_msg_append(struct spool_msg *m, struct evbuffer *buf);
/* spool_msg_buffered - bytes appended but not yet on disk (for backpressure). */
size_t spool_msg_buffered(const struct spool_msg *m);
/* spool_msg_on_drain - 1: CB(arg) will run once on the loop when the background write of M in
 * flight finishes (so spool_msg_buffered falls), for a session that stops reading meanwhile;
 * 0: no write is in flight, nothing to wait for. Forgotten at commit and abort. */
int spool_msg_on_drain(struct spool_msg *m, void (*cb)(void *arg), void *arg);
/*
 * spool_msg_commit - make the message durable with envelope ENV (copied; env->id
 * and env->size are filled in by the spool). DONE(arg, 0) runs on the loop when it is
 * on stable storage, DONE(arg, errno) when it failed (nothing then stays queued).
 * The spool owns and frees M from here on.
 */
void spool_msg_commit(struct spool_msg *m, const struct spool_envelope *env,
                      void (*done)(void *arg, int err), void *arg);
/*
 * Edits before the commit (milter actions, a DKIM signature): call them after the last
 * spool_msg_append and before spool_msg_commit. Offsets count the message as edited so far;
 * the file is written once, as edited, at the commit. 0, or -1 and errno (EINVAL: out of range
 * or not open, ENOMEM).
 * spool_msg_set_front - replace the first SKIP bytes with FRONT (moved out of FRONT): a new
 * header block (SKIP = the old one's length) or a header put in front (SKIP = 0).
 * spool_msg_replace_from - keep the first OFF bytes and replace the rest with BYTES (moved);
 * OFF = spool_msg_size appends, so a replacement body can arrive in pieces. The caller
 * bounds what it adds (message_size_limit).
 * spool_msg_size - the message's size as edited so far.
 */
int spool_msg_set_front(struct spool_msg *m, struct evbuffer *front, size_t skip);
int spool_msg_replace_from(struct spool_msg *m, long long off, struct evbuffer *bytes);
long long spool_msg_size(const struct spool_msg *m);
/* spool_msg_set_hold - commit the message on hold (a milter's quarantine; postsuper -H
 * releases it): its status file says so before the message is findable. */
int spool_msg_set_hold(struct spool_msg *m);
/*
 * spool_msg_read - read up to MAX (at most SPOOL_READ_MAX) bytes of the message as edited so
 * far from OFF before the commit; DONE(arg, out, err) runs on the loop later (never from this
 * call) with the bytes in OUT (fewer at a piece's end; none at the end of the message; OUT is
 * freed after DONE). err EAGAIN: a streaming write is in flight, wait with
 * spool_msg_on_drain. spool_read_cancel (before DONE) means DONE will not run; M may be freed
 * meanwhile (the read holds its own copy or file descriptor). NULL when out of memory.
 */
#define SPOOL_READ_MAX (64 * 1024)
struct spool_read;
struct spool_read *spool_msg_read(struct spool_msg *m, long long off, size_t max,
                                  void (*done)(void *arg, struct evbuffer *out, int err),
                                  void *arg);
void spool_read_cancel(struct spool_read *r);
/* spool_msg_abort - drop an uncommitted message and its temp file. */
void spool_msg_abort(struct spool_msg *m);
/* spool_msg_abort_done - as spool_msg_abort, then DONE(ARG, 0) on the loop once its temp
 * files are gone (always later, never from this call): a refusal replied from DONE leaves
 * nothing behind by the time the client reads it. */
void spool_msg_abort_done(struct spool_msg *m, void (*done)(void *arg, int err), void *arg);

/* --- space --- */

/*
 * spool_space_ok - 1 when a message of SIZE bytes (0: unknown) may be accepted:
 * free space (refreshed in the background) minus queue_minfree must exceed 1.5 x
 * SIZE, as Postfix checks; 0 means reply 452 4.3.1 Insufficient system storage.
 */
int spool_space_ok(const struct spool *sp, long long size);
/* spool_free_percent - free space of the data volume in percent (0..100).
 * Test hook: MTA_TEST_FREE_BYTES=FREE[/TOTAL] in the environment at spool_open
 * replaces the measured figures (tests only; docs/spool-format.md). */
double spool_free_percent(const struct spool *sp);
/* spool_unavailable - NULL when the data volume takes mail; else why not (it was remounted
 * read-only, or its path no longer leads to it: removed, renamed away, unmounted), as last
 * checked with the free space (every second). Intake answers 451 4.3.0 meanwhile. */
const char *spool_unavailable(const struct spool *sp);

/* --- the queue, for the scheduler and administration --- */

/* spool_set_notify - CB(arg, id, env, content) on the loop for each committed and each recovered
 * message (recovered ones on the loop's first turn after spool_open, oldest first: set it
 * before running the loop). For a message just committed ENV is its envelope, which the
 * callback owns (free it with spool_envelope_free), so it need not read the file back; for a
 * recovered one ENV is NULL (read it with spool_load_envelope). CONTENT, when not NULL, is the
 * message as stored after the envelope (what spool_open_message reads) in one piece, kept from a
 * message that was held in memory; the callback owns it (evbuffer_free). */
void spool_set_notify(struct spool *sp,
                      void (*cb)(void *arg, const char *id, struct spool_envelope *env,
                                 struct evbuffer *content),
                      void *arg);
/* spool_envelope_free - free an envelope returned by the spool. */
void spool_envelope_free(struct spool_envelope *env);

/* --- reading, for delivery ---
 * spool_load_envelope and spool_open_message BLOCK on disk I/O: call them on a
 * worker thread only (workers.h), never on the event loop. They only read
 * files, so several threads may call them at once.
 */

/* spool_load_envelope - parse the envelope of queued message ID into *OUT (free
 * with spool_envelope_free). 0, or an errno value (ENOENT: not queued, EBADMSG:
 * unreadable envelope). */
int spool_load_envelope(struct spool *sp, const char *id, struct spool_envelope **out);
/* spool_open_message - open queued message ID for reading: returns an fd
 * (O_CLOEXEC, the caller closes it) positioned at the first message byte, with
 * *SIZE the number of message bytes; *ENV (if ENV is not NULL) gets the parsed
 * envelope. -1 and errno on error. */
int spool_open_message(struct spool *sp, const char *id, struct spool_envelope **env,
                       long long *size);
/*
 * spool_status_path - "queue/X/ID.st" relative to the data volume: where the
 * delivery layer keeps a message's per-recipient status (replaced by writing
 * "tmp/ID.st.tmp", fsync, rename). spool_remove removes it with the message.
 * Returns 0, or -1 when ID is not a queue ID.
 */
int spool_status_path(const char *id, char *buf, size_t len);

/*
 * spool_remove - remove queued message ID (and its status file) in a worker:
 * unlink, then fsync the directory; the mqueue counters drop when it is gone.
 * With REUSE the file may instead be kept and overwritten by a later message
 * (docs/spool-format.md, recycled files): pass it only when nothing can still
 * be reading the message (no delivery or load in flight), since a reader's open
 * file would then change under it. DONE(arg, 0 or errno) runs on the loop
 * (ENOENT when ID is not queued). Called on the loop.
 */
void spool_remove(struct spool *sp, const char *id, int reuse, void (*done)(void *arg, int err),
                  void *arg);
/* spool_foreach - CB(arg, id, size) for every queued message, oldest ID first,
 * from a snapshot (CB may remove messages). Loop thread. */
void spool_foreach(struct spool *sp, void (*cb)(void *arg, const char *id, long long size),
                   void *arg);
/* spool_scanning - 1 while the start-up scan of queue/ runs: counts and listings are partial. */
int spool_scanning(const struct spool *sp);
/* spool_count - messages queued now (same figure as CNT_MQUEUE_MESSAGES). */
long spool_count(const struct spool *sp);
/* spool_expected - messages queued now plus those the start-up scan has still to check:
 * about what the queue holds once the scan is done (to size tables up front). */
long spool_expected(const struct spool *sp);
/* spool_contains - 1 when ID is queued. */
int spool_contains(const struct spool *sp, const char *id);

#endif
