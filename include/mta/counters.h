/*
 * counters.h - the registry of runtime counters that every layer bumps and the
 * stats layer reads (web UI, JSON, Prometheus, StatsD). Lock-free atomics, so
 * worker threads may bump them too.
 */
#ifndef MTA_COUNTERS_H
#define MTA_COUNTERS_H

/* X(id, name, kind, help): kind "counter" only grows, "gauge" goes up and down; "counter_us" is a
 * counter of microseconds whose NAME ends in _us (Prometheus gets it in seconds, metrics.c). */
#define COUNTERS(X)                                                                                \
    X(CNT_RECEIVED, "received", "counter", "Messages accepted and queued")                         \
    X(CNT_DELIVERED, "delivered", "counter", "Recipients delivered")                               \
    X(CNT_DEFERRED, "deferred", "counter", "Delivery attempts deferred")                           \
    X(CNT_BOUNCED, "bounced", "counter", "Recipients bounced")                                     \
    X(CNT_REJECTED, "rejected", "counter", "SMTP commands rejected with 4xx/5xx")                  \
    X(CNT_CONNECTIONS, "smtp_connections", "counter", "SMTP connections accepted")                 \
    X(CNT_SMTP_ACTIVE, "smtp_active_sessions", "gauge", "SMTP sessions open now")                  \
    X(CNT_MQUEUE_MESSAGES, "mqueue_messages", "gauge", "Messages in the mail queue")               \
    X(CNT_MQUEUE_BYTES, "mqueue_bytes", "gauge", "Bytes of messages in the mail queue")            \
    X(CNT_MQUEUE_HELD, "mqueue_held", "gauge", "Messages on hold (postsuper -h)")                  \
    X(CNT_QMGR_ACTIVE, "qmgr_active_messages", "gauge",                                            \
      "Messages the scheduler holds in full (at most qmgr_message_active_limit)")                  \
    X(CNT_QMGR_LOADING, "qmgr_unloaded_messages", "gauge",                                         \
      "Queued messages the scheduler has not read yet (start-up load)")                            \
    X(CNT_LOOP_LAG_MAX, "loop_stall_max", "gauge",                                                 \
      "Longest event-loop stall seen, microseconds (a 100 ms timer's lateness)")                   \
    X(CNT_DKIM_SIGNED, "dkim_signed", "counter", "Messages signed with DKIM")                      \
    X(CNT_DKIM_FAILED, "dkim_sign_failed", "counter",                                              \
      "Messages refused (451) as DKIM signing failed")                                             \
    X(CNT_MILTER_ACCEPTED, "milter_accepted", "counter",                                           \
      "Messages the milters let through (smtpd_milters, non_smtpd_milters)")                       \
    X(CNT_MILTER_REJECTED, "milter_rejected", "counter", "Commands or messages a milter rejected") \
    X(CNT_MILTER_TEMPFAILED, "milter_tempfailed", "counter",                                       \
      "Commands or messages a milter tempfailed (also milter_default_action = tempfail)")          \
    X(CNT_MILTER_DISCARDED, "milter_discarded", "counter", "Messages a milter discarded")          \
    X(CNT_MILTER_QUARANTINED, "milter_quarantined", "counter",                                     \
      "Messages a milter put on hold (SMFIR_QUARANTINE)")                                          \
    X(CNT_SPOOL_COMMITS, "spool_commits", "counter", "Messages made durable")                      \
    X(CNT_SPOOL_FLUSHES, "spool_flushes", "counter", "Disk flushes (group commits)")               \
    X(CNT_SPOOL_COMMIT_WAIT_US, "spool_commit_wait_us", "counter_us",                              \
      "Time, summed over commits, from the end of data until the committer took it")               \
    X(CNT_SPOOL_COMMIT_WRITE_US, "spool_commit_write_us", "counter_us",                            \
      "Time, summed over commits, that the commit's group took to write")                          \
    X(CNT_SPOOL_COMMIT_FLUSH_US, "spool_commit_flush_us", "counter_us",                            \
      "Time, summed over commits, that the commit's group took to flush")                          \
    X(CNT_SPOOL_COMMIT_REPLY_US, "spool_commit_reply_us", "counter_us",                            \
      "Time, summed over commits, from the flush's end until the loop replied")                    \
    X(CNT_LOG_BACKLOG, "log_backlog_records", "gauge", "Log records not yet written")              \
    X(CNT_LOG_DROPPED, "log_dropped_records", "counter", "Log records lost")                       \
    X(CNT_LOG_SHARE_UP, "log_share_up", "gauge", "1 when the CIFS log share is writable")          \
    X(CNT_LOG_SPILLED, "log_spilled_records", "gauge", "Log records waiting in the spill file")

enum counter_id {
#define COUNTER_X_ENUM(id, name, kind, help) id,
    COUNTERS(COUNTER_X_ENUM)
#undef COUNTER_X_ENUM
        CNT__COUNT
};

void counter_add(enum counter_id id, long long delta);
void counter_set(enum counter_id id, long long value);
long long counter_get(enum counter_id id);
const char *counter_name(enum counter_id id);
const char *counter_kind(enum counter_id id);
const char *counter_help(enum counter_id id);

#endif
