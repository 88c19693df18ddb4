/*
 * mtad.c - the daemon: start-up in order (configuration, log, spool, intake,
 * delivery, statistics), signals, graceful shutdown. No mail logic lives here:
 * each step is one call into its module, and each failure is one exact message.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <systemd/sd-daemon.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/dkim.h"
#include "mta/keystore.h"
#include "mta/log.h"
#include "mta/log_smb.h"
#include "mta/pickup.h"
#include "mta/privilege.h"
#include "mta/smtpd.h"
#include "mta/spool.h"
#include "mta/dns.h"
#include "mta/err.h"
#include "mta/relay.h"
#include "mta/rlimit.h"
#include "mta/control.h"
#include "mta/sched.h"
#include "mta/stats.h"
#include "mta/tls.h"
#include "mta/workers.h"

#define MTAD_VERSION "0.1.0"
#define MTAD_MAX_OVERRIDES 256

struct mtad {
    struct event_base *base;
    struct conf *conf;
    struct spool *spool;
    struct smtpd *smtpd;
    struct pickup *pickup; /* local submission: DATA/maildrop */
    struct dns *dns;
    struct relay *relay;
    struct control *control;
    struct sched *sched;
    struct stats *stats;
    struct dkim_signer *dkim; /* dkim_sign = yes */
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *watchdog; /* systemd WatchdogSec= ping (NULL: not asked for) */
    struct workers *keyw;   /* SIGHUP certificate reload (NULL: TLS off) */
    int reloading;
    int stopping;
    int stop_signal;
};

/* mtad_usage - the command line, on bad arguments. */
static void mtad_usage(void)
{
    fprintf(stderr, "usage: mtad [-c FILE] [-o name=value ...]   (FILE: " MTA_DEFAULT_CONF ")\n"
                    "       mtad -V\n");
}

/* mtad_relay_drained - outbound transactions have their replies: end the loop. */
static void mtad_relay_drained(void *arg)
{
    struct mtad *d = arg;

    event_base_loopexit(d->base, NULL);
}

/* mtad_drained - the intake is closed and empty: let deliveries in mid-transaction
 * finish (so no recipient is sent twice), then end the loop. */
static void mtad_drained(void *arg)
{
    struct mtad *d = arg;

    if (d->relay)
        relay_stop(d->relay, mtad_relay_drained, d);
    else
        event_base_loopexit(d->base, NULL);
}

/* mtad_tls_reloaded - the new certificate is ready (or not): swap it in, or keep the old one. */
static void mtad_tls_reloaded(struct tls_ctx *ctx, const char *why, void *arg)
{
    struct mtad *d = arg;
    char *err = NULL;

    d->reloading = 0;
    if (!ctx) {
        /* after the drop the files are read as mail_owner: root-only keys need a restart */
        int denied = priv_dropped() && why && strstr(why, strerror(EACCES));
        log_warning("tls", "certificate reload failed, keeping the current one: %s%s%s%s", why,
                    denied ? " (mtad runs as mail_owner " : "", denied ? priv_owner_name() : "",
                    denied ? ": make the files readable by it, or restart mtad)" : "");
        return;
    }
    if (smtpd_set_tls(d->smtpd, ctx, &err) < 0)
        log_warning("tls", "certificate reload failed: %s", err ? err : "");
    free(err);
}

/* mtad_conf_dir - the directory of the configuration file: Postfix's master names its
 * configuration directory in "daemon started" and "reload", and log readers expect one. */
static const char *mtad_conf_dir(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s", path ? path : "");
    char *slash = strrchr(buf, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == buf)
        slash[1] = 0;
    else
        *slash = 0;
    return buf;
}

/* mtad_signal_cb - SIGTERM/SIGINT: graceful stop; SIGHUP: reopen logs, reload the certificate. */
static void mtad_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct mtad *d = arg;

    if (sig == SIGHUP) {
        char cdir[4096];
        log_info("reload -- version %s, configuration %s", MTAD_VERSION,
                 mtad_conf_dir(d->conf->path, cdir, sizeof(cdir)));
        log_reopen();
        if (d->keyw && d->smtpd && !d->reloading && !d->stopping) {
            d->reloading = 1;
            keystore_reload(d->keyw, d->conf, mtad_tls_reloaded, d);
        }
        return;
    }
    if (d->stopping)
        return;
    d->stopping = 1;
    d->stop_signal = (int)sig;
    sd_notify(0, "STOPPING=1");
    log_info("terminating on signal %d", (int)sig);
    if (d->smtpd)
        smtpd_stop(d->smtpd, mtad_drained, d);
    else
        mtad_drained(d);
}

/* mtad_watchdog_cb - systemd's WatchdogSec=: the loop is alive (a hung loop stops the pings). */
static void mtad_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sd_notify(0, "WATCHDOG=1");
}

/* mtad_fail - one exact start-up message (and the detail) to stderr, then exit 1. */
static void mtad_fail(const char *message, const char *detail)
{
    /* records already queued (e.g. "running as mta") go out first: the exact start-up message
     * must be the last line on stderr, where scripts and the appliance look for it */
    log_flush();
    if (detail && *detail)
        fprintf(stderr, "mtad: %s\n", detail);
    fprintf(stderr, "%s\n", message);
    log_shutdown();
    log_smb_stop();
    exit(1);
}

/* mtad_fail_code - fail with the summary line of CODE (err.h) and DETAIL. */
static void mtad_fail_code(enum mta_err_code code, const char *detail)
{
    mtad_fail(mta_err_summary(code), detail);
}

int main(int argc, char **argv)
{
    struct mtad d;
    char *overrides[MTAD_MAX_OVERRIDES];
    int noverrides = 0;
    const char *config = MTA_DEFAULT_CONF; /* the installed one; a missing file names it */
    char *errors = NULL, *err = NULL;
    struct mta_err merr = {MTA_ERR_NONE, NULL};
    int ch;

    memset(&d, 0, sizeof(d));
    while ((ch = getopt(argc, argv, "c:o:Vh")) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'o':
            if (noverrides == MTAD_MAX_OVERRIDES) {
                fprintf(stderr, "mtad: too many -o options (at most %d)\n", MTAD_MAX_OVERRIDES);
                return 1;
            }
            overrides[noverrides++] = optarg;
            break;
        case 'V':
            printf("mtad %s\n", MTAD_VERSION);
            return 0;
        default:
            mtad_usage();
            return 1;
        }
    }
    if (optind != argc) {
        mtad_usage();
        return 1;
    }

    /* 1. configuration: every error, then the spec's summary line */
    d.conf = conf_load(config, overrides, noverrides, &errors);
    if (d.conf == NULL) {
        fputs(errors ? errors : "Error: unknown configuration error\n", stderr);
        free(errors);
        fprintf(stderr, "%s\n", mta_err_summary(MTA_ERR_CONFIG));
        return 1;
    }
    /* 1b. the account to run as (started as root): a missing one names mail_owner; paths
     * absolute, as mtad will work inside the data volume */
    if (priv_prepare(d.conf, &err) != 0 || priv_absolute_paths(d.conf, &err) != 0)
        mtad_fail_code(MTA_ERR_CONFIG, err);

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0)
        mtad_fail_code(MTA_ERR_START, "libevent threading unavailable");
    d.base = event_base_new();
    if (d.base == NULL)
        mtad_fail_code(MTA_ERR_START, "cannot create the event loop");

    /* 2. the mail log */
    struct log_options lo = {
        .hostname = d.conf->myhostname,
        .syslog_name = d.conf->syslog_name,
        .maillog_file = d.conf->maillog_file,
        .timezone = d.conf->timezone,
        .to_stderr = 1,
    };
    if (log_init(&lo, &err) != 0)
        mtad_fail_code(MTA_ERR_CONFIG, err);

    /* 2a. open files for every session the limits allow (while still root: may raise hard) */
    long nofile_was, nofile_now;
    if (rlimit_nofile_raise(d.conf, &nofile_was, &nofile_now, &err) != 0)
        mtad_fail(err ? err : "Error: cannot raise the open-file limit", NULL);
    if (nofile_now != nofile_was)
        log_info("open-file limit raised from %ld to %ld", nofile_was, nofile_now);

    /* 2b. what needs root, then the drop to mail_owner before any worker thread starts
     * (the log writer, started above, changes with the process: glibc applies set*id to
     * every thread). The data volume becomes mail_owner's and the working directory, so
     * the path above it may stay root-only; maillog_file was opened above, as root; the
     * keys are read now (root-only keys work; a SIGHUP reload reads them as mail_owner);
     * the listening ports are bound now (ports below 1024). */
    if (priv_enter_data_volume(d.conf, &err) != 0)
        mtad_fail_code(MTA_ERR_START, err);
    struct tls_ctx *tls = NULL;
    if (!d.conf->ssl_disabled) {
        const char *msg = NULL;
        tls = keystore_tls_new(d.conf, &msg, &err);
        if (tls == NULL)
            mtad_fail(msg, err);
    }
    /* the DKIM key, read now like the TLS key (root-only keys work) */
    d.dkim = dkim_signer_new(d.conf, &err);
    if (d.dkim == NULL && err)
        mtad_fail_code(MTA_ERR_CONFIG, err);
    priv_prebind(d.conf);
    if (priv_drop(&err) != 0)
        mtad_fail_code(MTA_ERR_START, err);
    if (priv_dropped())
        log_info("running as %s (uid %lu, gid %lu)", priv_owner_name(), (unsigned long)getuid(),
                 (unsigned long)getgid());

    /* 2c. the log terminal: the mail log on the CIFS share */
    if (d.conf->logs_enabled && d.conf->maillog_filename[0] && d.conf->log_terminal[0]) {
        char *spill = NULL;

        /* relative to the data volume, the working directory (see 2b) */
        if (asprintf(&spill, "%s/log-spill", priv_data_volume_path(d.conf->data_volume)) < 0)
            mtad_fail_code(MTA_ERR_CONFIG, "out of memory");
        log_smb_set_rotation(d.conf->maillog_rotate_size, (int)d.conf->maillog_rotate_count);
        if (log_smb_start(d.conf->log_terminal, d.conf->maillog_filename, spill, &merr) != 0)
            mtad_fail_code(merr.code, merr.text);
        free(spill);
    }

    /* 3. the spool on the data volume (recovery runs here) */
    d.spool = spool_open(d.base, d.conf, &err);
    if (d.spool == NULL)
        mtad_fail_code(MTA_ERR_START, err);

    /* 3b. delivery: resolver, scheduler (rebuilt from the spool), relay, control socket */
    d.dns = dns_new(d.base, d.conf, &err);
    if (d.dns == NULL)
        mtad_fail_code(MTA_ERR_START, err);
    d.sched = sched_new(d.base, d.conf, d.spool, &err);
    if (d.sched == NULL)
        mtad_fail_code(MTA_ERR_START, err);
    d.relay = relay_new(d.base, d.conf, d.spool, d.sched, d.dns, &err);
    if (d.relay == NULL)
        mtad_fail_code(MTA_ERR_START, err);
    d.control = control_new(d.base, d.conf, &err);
    if (d.control == NULL)
        mtad_fail_code(MTA_ERR_START, err);
    sched_control_attach(d.sched, d.control);

    /* 4. intake (with SSL the key and certificate were read in 2b) */
    d.smtpd = smtpd_new(d.base, d.conf, d.spool, &err);
    if (d.smtpd == NULL)
        mtad_fail_code(MTA_ERR_START, err);
    if (tls) {
        if (smtpd_set_tls(d.smtpd, tls, &err) < 0)
            mtad_fail_code(MTA_ERR_START, err);
        d.keyw = workers_new(d.base, 1, "keys");
    }

    if (d.dkim) {
        char what[2048];
        if (dkim_signer_start(d.dkim, d.base, &err) < 0)
            mtad_fail_code(MTA_ERR_START, err);
        smtpd_set_dkim(d.smtpd, d.dkim);
        dkim_signer_describe(d.dkim, what, sizeof(what));
        log_info("dkim: signing %s", what);
    }

    /* 4b. local submission: what sendmail/postdrop put in the maildrop, also while we were down */
    d.pickup = pickup_new(d.base, d.conf, d.spool, &err);
    if (d.pickup == NULL)
        mtad_fail_code(MTA_ERR_START, err);
    pickup_set_dkim(d.pickup, d.dkim);

    /* 5. statistics: web UI, JSON API, /metrics, the mon push */
    d.stats = stats_new(d.base, d.conf, d.spool, d.sched, &merr);
    if (d.stats == NULL)
        mtad_fail_code(merr.code, merr.text);
    priv_prebind_release();

    d.sig_term = evsignal_new(d.base, SIGTERM, mtad_signal_cb, &d);
    d.sig_int = evsignal_new(d.base, SIGINT, mtad_signal_cb, &d);
    d.sig_hup = evsignal_new(d.base, SIGHUP, mtad_signal_cb, &d);
    event_add(d.sig_term, NULL);
    event_add(d.sig_int, NULL);
    event_add(d.sig_hup, NULL);

    /* systemd (Type=notify): ready once every listener is bound; WatchdogSec= asks for a
     * ping at least every WATCHDOG_USEC, sent from the loop at half that interval */
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        struct timeval half = {(time_t)(wd_usec / 2000000), (suseconds_t)(wd_usec / 2 % 1000000)};
        d.watchdog = event_new(d.base, -1, EV_PERSIST, mtad_watchdog_cb, &d);
        if (d.watchdog)
            event_add(d.watchdog, &half);
    }
    char cdir[4096];
    log_info("daemon started -- version %s, configuration %s", MTAD_VERSION,
             mtad_conf_dir(d.conf->path, cdir, sizeof(cdir)));
    sd_notify(0, "READY=1\nSTATUS=accepting mail");
    event_base_dispatch(d.base);

    /* shutdown, in reverse order: nothing acknowledged is lost */
    stats_free(d.stats);
    if (d.keyw)
        workers_free(d.keyw); /* a reload in flight finishes while smtpd still exists */
    /* signing jobs of sessions that died meanwhile end now: their completion finds no session
     * and drops the message (pickup's signing runs on its own worker) */
    dkim_signer_free(d.dkim);
    /* every commit in flight ends first, while its session, pickup, the scheduler and the
     * relay still exist: the done callbacks answer their clients, and smtpd_free then
     * frees a server that no commit holds (one owner, freed from the loop) */
    spool_drain(d.spool);
    smtpd_free(d.smtpd);
    pickup_free(d.pickup);
    control_free(d.control);
    relay_free(d.relay);
    sched_free(d.sched);
    dns_free(d.dns);
    spool_close(d.spool);
    event_free(d.sig_term);
    event_free(d.sig_int);
    event_free(d.sig_hup);
    if (d.watchdog)
        event_free(d.watchdog);
    log_info("stopped");
    log_shutdown();
    log_smb_stop();
    event_base_free(d.base);
    conf_free(d.conf);
    return 0;
}
