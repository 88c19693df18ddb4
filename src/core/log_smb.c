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
 * This file: start, stop, the status for the dashboard, and the thread's loop
 * (connect, write, spill, back off). The parts it drives: log_smb_share.c
 * (libsmbclient), log_smb_stream.c (memory queue and spill file), log_smb_url.c.
 * Not here: record formatting (log.c), deciding whether logging is on (mtad.c).
 */
#include "mta/log_smb.h"
#include "log_smb_int.h"

#include "mta/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mta/counters.h"
#include "mta/log.h"

#define LOG_SMB_QUEUE_DEFAULT (8u << 20) /* memory queue bound */
#define LOG_SMB_BACKOFF_MIN_MS 500
#define LOG_SMB_BACKOFF_MAX_DEFAULT 30000
#define LOG_SMB_TIMEOUT_DEFAULT 5000
#define LOG_SMB_STOP_WAIT_MS 5000
#define LOG_SMB_SERVICE "maillog"

struct log_smb log_smb_st = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .spill_fd = -1,
    .offset_fd = -1,
    .rot_count = 5,
};

/* log_smb_set_up - the share state, for the counters and the dashboard. */
static void log_smb_set_up(int up)
{
    __atomic_store_n(&log_smb_st.up, up, __ATOMIC_RELAXED);
    counter_set(CNT_LOG_SHARE_UP, up);
}

/* log_smb_went_down - a failure: warn once per outage, schedule the reconnect (backoff). */
static void log_smb_went_down(void)
{
    log_smb_st.connected = 0;
    log_smb_set_up(0);
    if (!log_smb_st.warned) {
        log_warning(LOG_SMB_SERVICE,
                    "mail log share unreachable (%s); records are kept and "
                    "written when it returns",
                    log_smb_st.why);
        log_smb_st.warned = 1;
    }
    if (log_smb_st.backoff_ms == 0)
        log_smb_st.backoff_ms = LOG_SMB_BACKOFF_MIN_MS;
    else if ((log_smb_st.backoff_ms *= 2) > log_smb_st.backoff_max_ms)
        log_smb_st.backoff_ms = log_smb_st.backoff_max_ms;
    log_smb_st.next_try = clock_mono_after(log_smb_st.backoff_ms);
}

/* log_smb_went_up - the share took a write (or has nothing to take): the outage is over.
 * Only a successful write ends it, so a full or read-only share that still accepts
 * connections does not flap between "back" and "unreachable". */
static void log_smb_went_up(void)
{
    log_smb_st.backoff_ms = 0;
    if (__atomic_load_n(&log_smb_st.up, __ATOMIC_RELAXED))
        return;
    log_smb_set_up(1);
    if (log_smb_st.warned) {
        log_smb_st.warned = 0;
        log_mail(LOG_SMB_SERVICE, "mail log share is back; writing %lld waiting records",
                 log_smb_waiting());
    }
}

/* log_smb_has_work - records wait (spill or memory). */
static int log_smb_has_work(void)
{
    return log_smb_st.spill_off < log_smb_st.spill_size || log_smb_queue_used() > 0;
}

/* log_smb_main - the thread: first connect, then write, spill, reconnect until stopped. */
static void *log_smb_main(void *arg)
{
    (void)arg;
    int rc = log_smb_connect();

    if (rc == 0) {
        /* up before log_smb_start returns, so the counter is right from the start */
        log_smb_st.connected = 1;
        log_smb_went_up();
    }
    pthread_mutex_lock(&log_smb_st.mu);
    log_smb_st.start_state = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&log_smb_st.started);
    pthread_mutex_unlock(&log_smb_st.mu);
    if (rc != 0) {
        log_smb_disconnect();
        return NULL;
    }
    for (;;) {
        int stop, spill, conn = log_smb_st.connected;

        pthread_mutex_lock(&log_smb_st.mu);
        for (;;) {
            size_t used = log_smb_st.qtail - log_smb_st.qhead;
            spill = log_smb_st.rejected || used > log_smb_st.qbound / 2;
            stop = log_smb_st.stop;
            if (stop || (spill && log_smb_passed(log_smb_st.spill_retry)))
                break;
            if (conn && (used > 0 || log_smb_st.spill_off < log_smb_st.spill_size))
                break;
            if (!conn && log_smb_passed(log_smb_st.next_try))
                break;
            if (!conn) {
                pthread_cond_timedwait(&log_smb_st.wake, &log_smb_st.mu, &log_smb_st.next_try);
            } else if (spill) {
                pthread_cond_timedwait(&log_smb_st.wake, &log_smb_st.mu, &log_smb_st.spill_retry);
            } else {
                pthread_cond_wait(&log_smb_st.wake, &log_smb_st.mu);
            }
        }
        pthread_mutex_unlock(&log_smb_st.mu);

        if (stop)
            break;
        if (spill)
            log_smb_spill_memory();
        if (!conn) {
            if (!log_smb_passed(log_smb_st.next_try))
                continue;
            if (log_smb_connect() != 0) {
                log_smb_went_down();
                continue;
            }
            log_smb_st.connected = 1;
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
    while (log_smb_st.connected && log_smb_has_work() && !log_smb_passed(deadline)) {
        if (log_smb_write_batch() != 0)
            log_smb_st.connected = 0;
    }
    log_smb_st.spill_retry.tv_sec = 0;
    log_smb_st.spill_retry.tv_nsec = 0;
    log_smb_spill_memory();
    log_smb_disconnect();
    log_smb_set_up(0);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* public API */

void log_smb_set_rotation(long long size, int count)
{
    log_smb_st.rot_size = size > 0 ? size : 0;
    log_smb_st.rot_count = count >= 1 ? count : 1;
}

void log_smb_set_tuning(size_t queue_bytes, unsigned backoff_max_ms, unsigned timeout_ms)
{
    log_smb_st.qbound = queue_bytes;
    log_smb_st.backoff_max_ms = backoff_max_ms;
    log_smb_st.timeout_ms = timeout_ms;
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
    if (log_smb_path(&log_smb_st.home_path, dir, "/smb-home") != 0 ||
        log_smb_path(&dotsmb, dir, "/smb-home/.smb") != 0 ||
        log_smb_path(&log_smb_st.conf_path, dir, "/smb-home/.smb/smb.conf") != 0 ||
        log_smb_path(&state, dir, "/smb-client") != 0) {
        log_smb_errf(err, "out of memory");
        free(state);
        free(dotsmb);
        return -1;
    }
    if ((mkdir(state, 0700) != 0 && errno != EEXIST) ||
        (mkdir(log_smb_st.home_path, 0700) != 0 && errno != EEXIST) ||
        (mkdir(dotsmb, 0700) != 0 && errno != EEXIST)) {
        log_smb_errf(err, "cannot create %s: %s", dotsmb, strerror(errno));
        free(state);
        free(dotsmb);
        return -1;
    }
    free(dotsmb);
    f = fopen(log_smb_st.conf_path, "we");
    if (f == NULL) {
        log_smb_errf(err, "cannot write %s: %s", log_smb_st.conf_path, strerror(errno));
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
        log_smb_errf(err, "cannot write %s: %s", log_smb_st.conf_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* log_smb_cleanup - free everything start allocated (thread not running). */
static void log_smb_cleanup(void)
{
    log_smb_target_free(&log_smb_st.tgt);
    free(log_smb_st.url);
    free(log_smb_st.conf_path);
    free(log_smb_st.home_path);
    free(log_smb_st.spill_path);
    free(log_smb_st.offset_path);
    free(log_smb_st.batch);
    free(log_smb_st.q);
    log_smb_st.url = log_smb_st.conf_path = log_smb_st.home_path = log_smb_st.spill_path =
        log_smb_st.offset_path = log_smb_st.batch = log_smb_st.q = NULL;
    log_smb_st.qhead = log_smb_st.qtail = log_smb_st.qcap = 0;
    if (log_smb_st.spill_fd >= 0)
        close(log_smb_st.spill_fd);
    if (log_smb_st.offset_fd >= 0)
        close(log_smb_st.offset_fd);
    log_smb_st.spill_fd = log_smb_st.offset_fd = -1;
    counter_add(CNT_LOG_BACKLOG, -(log_smb_st.qrecords + log_smb_st.spill_records));
    log_smb_st.qrecords = 0;
    log_smb_st.spill_records = 0;
    counter_set(CNT_LOG_SPILLED, 0);
}

/* log_smb_start_fail - report a failed start as CODE with the detail WHY (freed); -1. */
static int log_smb_start_fail(struct mta_err *err, enum mta_err_code code, char *why)
{
    if (why)
        mta_err_set(err, code, "%s", why);
    else
        mta_err_set(err, code, NULL);
    free(why);
    return -1;
}

int log_smb_start(const char *url, const char *maillog_filename, const char *spill_dir,
                  struct mta_err *err)
{
    pthread_condattr_t ca;
    char *why = NULL;
    enum mta_err_code code = MTA_ERR_CONFIG;

    mta_err_clear(err);
    if (log_smb_st.running) {
        log_smb_errf(&why, "the log share is already started");
        return log_smb_start_fail(err, MTA_ERR_CONFIG, why);
    }
    if (log_smb_target_parse(&log_smb_st.tgt, url, maillog_filename, &why) != 0)
        return log_smb_start_fail(err, MTA_ERR_CONFIG, why);
    if (log_smb_lib_load() != 0) {
        /* the reason goes to the log; the summary line says the rest */
        log_warning(LOG_SMB_SERVICE, "%s", log_smb_st.why);
        log_smb_cleanup();
        return log_smb_start_fail(err, MTA_ERR_LOG_SHARE, NULL);
    }
    log_smb_st.url = strdup(url);
    if (!log_smb_st.qbound)
        log_smb_st.qbound = LOG_SMB_QUEUE_DEFAULT;
    if (!log_smb_st.backoff_max_ms)
        log_smb_st.backoff_max_ms = LOG_SMB_BACKOFF_MAX_DEFAULT;
    if (log_smb_st.backoff_max_ms < LOG_SMB_BACKOFF_MIN_MS)
        log_smb_st.backoff_max_ms = LOG_SMB_BACKOFF_MIN_MS;
    if (!log_smb_st.timeout_ms)
        log_smb_st.timeout_ms = LOG_SMB_TIMEOUT_DEFAULT;
    log_smb_st.qcap = log_smb_st.qbound;
    log_smb_st.q = malloc(log_smb_st.qcap);
    log_smb_st.batch = malloc(LOG_SMB_BATCH);
    if (log_smb_st.url == NULL || log_smb_st.q == NULL || log_smb_st.batch == NULL) {
        log_smb_errf(&why, "out of memory");
        goto fail;
    }
    if (log_smb_spill_open(spill_dir, &why) != 0 || log_smb_write_conf(spill_dir, &why) != 0)
        goto fail;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log_smb_st.wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&log_smb_st.started, NULL);
    log_smb_st.stop = 0;
    log_smb_st.start_state = 0;
    log_smb_st.connected = log_smb_st.warned = 0;
    log_smb_st.reconf = 1;
    log_smb_st.backoff_ms = 0;
    log_smb_st.pending = 0;
    log_smb_st.spill_retry.tv_sec = log_smb_st.spill_retry.tv_nsec = 0;
    if (pthread_create(&log_smb_st.thread, NULL, log_smb_main, NULL) != 0) {
        log_smb_errf(&why, "cannot start the log share thread");
        goto fail_cond;
    }
    pthread_mutex_lock(&log_smb_st.mu);
    while (log_smb_st.start_state == 0)
        pthread_cond_wait(&log_smb_st.started, &log_smb_st.mu);
    int ok = log_smb_st.start_state == 1;
    if (ok)
        log_smb_st.accepting = 1;
    pthread_mutex_unlock(&log_smb_st.mu);
    if (!ok) {
        pthread_join(log_smb_st.thread, NULL);
        log_warning(LOG_SMB_SERVICE, "%s", log_smb_st.why);
        code = MTA_ERR_LOG_SHARE; /* the warning has the reason */
        goto fail_cond;
    }
    log_smb_st.running = 1;
    struct log_sink sink = {
        .name = "log_terminal", .write = log_smb_sink_write, .ctx = &log_smb_st};
    log_add_sink(&sink);
    return 0;

fail_cond:
    pthread_cond_destroy(&log_smb_st.wake);
    pthread_cond_destroy(&log_smb_st.started);
fail:
    log_smb_cleanup();
    return log_smb_start_fail(err, code, why);
}

void log_smb_stop(void)
{
    if (!log_smb_st.running)
        return;
    pthread_mutex_lock(&log_smb_st.mu);
    log_smb_st.accepting = 0;
    log_smb_st.stop = 1;
    pthread_cond_signal(&log_smb_st.wake);
    pthread_mutex_unlock(&log_smb_st.mu);
    pthread_join(log_smb_st.thread, NULL);
    log_smb_st.running = 0;
    pthread_cond_destroy(&log_smb_st.wake);
    pthread_cond_destroy(&log_smb_st.started);
    log_smb_cleanup();
}

long long log_smb_waiting(void)
{
    long long q;

    pthread_mutex_lock(&log_smb_st.mu);
    q = log_smb_st.qrecords;
    pthread_mutex_unlock(&log_smb_st.mu);
    return q + __atomic_load_n(&log_smb_st.spill_records, __ATOMIC_RELAXED);
}

int log_smb_behind(void)
{
    if (!log_smb_st.running)
        return 0;
    return !__atomic_load_n(&log_smb_st.up, __ATOMIC_RELAXED) ||
           __atomic_load_n(&log_smb_st.spill_records, __ATOMIC_RELAXED) > 0;
}

int log_smb_message(char *buf, size_t len)
{
    if (len > 0)
        buf[0] = 0;
    if (!log_smb_behind())
        return 0;
    if (!__atomic_load_n(&log_smb_st.up, __ATOMIC_RELAXED))
        snprintf(buf, len, LOG_SMB_MSG_UNREACHABLE, log_smb_waiting());
    else
        snprintf(buf, len, LOG_SMB_MSG_CATCHING_UP, log_smb_waiting());
    return 1;
}
