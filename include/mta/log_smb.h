/*
 * log_smb.h - the log terminal: a mail log sink that appends every record to
 * maillog_filename on a CIFS share (libsmbclient, anonymous login, SMB2/3).
 * It has its own thread and a bounded in-memory queue, so the log writer (and
 * so the event loop) never waits on the share. While the share is away (down,
 * full, read-only) records stay in order, overflow to a spill file on the data
 * volume, and are replayed when it returns. Optional size-based rotation.
 * Not here: formatting records (log.c), the local maillog_file, stderr.
 */
#ifndef MTA_LOG_SMB_H
#define MTA_LOG_SMB_H

#include <stddef.h>

#include "mta/err.h"

/* The dashboard message while the share is away (printf format, one %lld). */
#define LOG_SMB_MSG_UNREACHABLE "The mail log share is unreachable; %lld records are waiting."
/* ... and while the share is back but the spill file is still being replayed. */
#define LOG_SMB_MSG_CATCHING_UP "The mail log share is catching up; %lld records are waiting."

/*
 * log_smb_set_rotation - rotate maillog -> maillog.1 ... maillog.COUNT when the
 * file would grow beyond SIZE bytes (0: never). Call before log_smb_start.
 */
void log_smb_set_rotation(long long size, int count);

/*
 * log_smb_set_tuning - for tests; 0 keeps a default. queue_bytes: the memory
 * queue bound (default 8 MiB; half of it full -> spill); backoff_max_ms: the
 * longest reconnect pause (default 30000); timeout_ms: libsmbclient's per-call
 * timeout (default 5000). Call before log_smb_start.
 */
void log_smb_set_tuning(size_t queue_bytes, unsigned backoff_max_ms, unsigned timeout_ms);

/*
 * log_smb_start - URL is the log terminal (smb://host[:port]/share),
 * MAILLOG_FILENAME the file on it ("/srv1_logs/maillog"; directories are
 * created), SPILL_DIR a directory on the data volume (created if missing) for
 * the spill file, its replay offset and libsmbclient's private client config.
 * Connects and opens the file synchronously (may block start-up for up to the
 * call timeout, never a session), then registers the sink with log_add_sink.
 * 0 ok; -1 and *err: MTA_ERR_LOG_SHARE when the share is unreachable (the
 * reason is logged as a warning), MTA_ERR_CONFIG with a text for a bad URL or
 * file name or an unusable SPILL_DIR.
 */
int log_smb_start(const char *url, const char *maillog_filename, const char *spill_dir,
                  struct mta_err *err);

/*
 * log_smb_stop - after log_shutdown: write what is queued (at most ~5 s), spill
 * the rest to the spill file (replayed at the next start), stop the thread.
 * Safe when never started and safe twice.
 */
void log_smb_stop(void);

/* log_smb_behind - 1 when the share is away or records still wait to be written; else 0. */
int log_smb_behind(void);
/* log_smb_waiting - records not yet on the share (memory queue + spill file). */
long long log_smb_waiting(void);
/* log_smb_message - the dashboard message into BUF ("" when none); returns 1 if there is one. */
int log_smb_message(char *buf, size_t len);

#endif
