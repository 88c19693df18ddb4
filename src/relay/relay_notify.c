/*
 * relay_notify.c - delivery status notifications (RFC 3464), as Postfix's bounce
 * daemon makes them: for the recipients of an ended job that the scheduler says
 * get one (sched_job_notice: a bounce, or a success notice that NOTIFY=SUCCESS
 * asked for; here: not when the next hop took it over), the text (a multipart/report from
 * MAILER-DAEMON with the human part, the message/delivery-status part and the original message or
 * its headers, read on a worker), and its commit through the spool as a new message from
 * <>, logged as Postfix's cleanup, bounce and qmgr do.
 * Not here: whether a recipient bounced or gets a notice (the scheduler), releasing the job
 * (the caller's done callback).
 */
#include "relay_int.h"

#include "mta/log.h"
#include "mta/spool.h"
#include "mta/workers.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* relay_dsn_date - RFC 5322 date of T in local time. */
static void relay_dsn_date(long long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    localtime_r(&tt, &tm);
    strftime(buf, len, "%a, %e %b %Y %H:%M:%S %z", &tm);
}

/* relay_dsn_clean - copy S without CR/LF (a header value must stay one line). */
static void relay_dsn_clean(const char *s, char *buf, size_t len)
{
    size_t o = 0;

    for (; *s && o + 1 < len; s++)
        buf[o++] = (*s == '\r' || *s == '\n') ? ' ' : *s;
    buf[o] = '\0';
}

void relay_dsn_build(const struct relay_dsn_info *info, const struct relay_dsn_rcpt *r, int n,
                     const char *orig, size_t origlen, struct evbuffer *out)
{
    char date[64], arrival[64], v[RELAY_REPLY_MAX + 64];
    int i;

    relay_dsn_date(info->now, date, sizeof(date));
    relay_dsn_date(info->arrival_us / 1000000, arrival, sizeof(arrival));
    evbuffer_add_printf(out, "Date: %s\r\n", date);
    evbuffer_add_printf(out, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", info->hostname);
    evbuffer_add_printf(out, "Subject: %s\r\n",
                        info->success ? "Successful Mail Delivery Report"
                                      : "Undelivered Mail Returned to Sender");
    evbuffer_add_printf(out, "To: %s\r\n", info->sender);
    evbuffer_add_printf(out, "Auto-Submitted: auto-replied\r\n");
    evbuffer_add_printf(out, "MIME-Version: 1.0\r\n");
    evbuffer_add_printf(out,
                        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                        "\tboundary=\"%s\"\r\n",
                        info->boundary);
    evbuffer_add_printf(out, "Content-Transfer-Encoding: 8bit\r\n");
    evbuffer_add_printf(out, "Message-Id: <%s>\r\n\r\n", info->msgid);
    evbuffer_add_printf(out, "This is a MIME-encapsulated message.\r\n\r\n");

    /* part 1: for people */
    evbuffer_add_printf(out, "--%s\r\n", info->boundary);
    evbuffer_add_printf(out, "Content-Description: %s\r\n",
                        info->success ? "Notification" : "Notification");
    evbuffer_add_printf(out, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    evbuffer_add_printf(out, "This is the mail system at host %s.\r\n\r\n", info->hostname);
    if (info->success) {
        evbuffer_add_printf(out,
                            "Your message was successfully delivered to the destination(s)\r\n"
                            "listed below. If the message was delivered to mailbox you will\r\n"
                            "receive no further notifications. Otherwise you may still receive\r\n"
                            "notifications of mail delivery errors from other systems.\r\n\r\n");
    } else {
        evbuffer_add_printf(out,
                            "I'm sorry to have to inform you that your message could not\r\n"
                            "be delivered to one or more recipients. It's attached below.\r\n\r\n"
                            "For further assistance, please send mail to postmaster.\r\n\r\n"
                            "If you do so, please include this problem report. You can\r\n"
                            "delete your own text from the attached returned message.\r\n\r\n");
    }
    evbuffer_add_printf(out, "                   The mail system\r\n\r\n");
    for (i = 0; i < n; i++) {
        relay_dsn_clean(r[i].diag, v, sizeof(v));
        evbuffer_add_printf(out, "<%s>: %s\r\n", r[i].addr,
                            info->success ? "delivery via relay: " : "");
        evbuffer_add_printf(out, "    %s\r\n\r\n", v);
    }

    /* part 2: for programs */
    evbuffer_add_printf(out, "--%s\r\n", info->boundary);
    evbuffer_add_printf(out, "Content-Description: Delivery report\r\n");
    evbuffer_add_printf(out, "Content-Type: message/delivery-status\r\n\r\n");
    evbuffer_add_printf(out, "Reporting-MTA: dns; %s\r\n", info->hostname);
    evbuffer_add_printf(out, "X-Postfix-Queue-ID: %s\r\n", info->queue_id);
    evbuffer_add_printf(out, "X-Postfix-Sender: rfc822; %s\r\n", info->sender);
    if (info->envid && info->envid[0]) {
        relay_dsn_clean(info->envid, v, sizeof(v));
        evbuffer_add_printf(out, "Original-Envelope-Id: %s\r\n", v);
    }
    evbuffer_add_printf(out, "Arrival-Date: %s\r\n", arrival);
    for (i = 0; i < n; i++) {
        evbuffer_add_printf(out, "\r\nFinal-Recipient: rfc822; %s\r\n", r[i].addr);
        if (r[i].orcpt && r[i].orcpt[0]) {
            const char *semi = strchr(r[i].orcpt, ';');
            relay_dsn_clean(semi ? semi + 1 : r[i].orcpt, v, sizeof(v));
            evbuffer_add_printf(out, "Original-Recipient: rfc822;%s\r\n", v);
        }
        evbuffer_add_printf(out, "Action: %s\r\n", r[i].action);
        evbuffer_add_printf(out, "Status: %s\r\n", r[i].status);
        if (r[i].remote && r[i].remote[0])
            evbuffer_add_printf(out, "Remote-MTA: dns; %s\r\n", r[i].remote);
        if (r[i].diag && r[i].diag[0]) {
            relay_dsn_clean(r[i].diag, v, sizeof(v));
            evbuffer_add_printf(out, "Diagnostic-Code: %s; %s\r\n",
                                r[i].remote && r[i].remote[0] ? "smtp" : "X-Postfix", v);
        }
    }
    evbuffer_add_printf(out, "\r\n");

    /* part 3: the original */
    evbuffer_add_printf(out, "--%s\r\n", info->boundary);
    evbuffer_add_printf(out, "Content-Description: %s\r\n",
                        info->hdrs_only ? "Undelivered Message Headers" : "Undelivered Message");
    evbuffer_add_printf(out, "Content-Type: %s\r\n",
                        info->hdrs_only ? "text/rfc822-headers" : "message/rfc822");
    evbuffer_add_printf(out, "Content-Transfer-Encoding: 8bit\r\n\r\n");
    evbuffer_add(out, orig, origlen);
    if (origlen && (origlen < 2 || memcmp(orig + origlen - 2, "\r\n", 2) != 0))
        evbuffer_add(out, "\r\n", 2);
    evbuffer_add_printf(out, "\r\n--%s--\r\n", info->boundary);
}

/* --- the notification flow --- */

struct relay_notify {
    struct relay_token *tok;
    struct relay_job *rj;
    int success; /* the notification being made: 1 success, 0 bounce */
    int *which;  /* job recipient indices it covers */
    int n;
    int nfail_pending, nsucc_pending;
    struct evbuffer *text;
    char *orig;
    size_t origlen;
    int err;
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;
    char msgid[160];
    char newid[SPOOL_ID_SIZE];
    char qid[SPOOL_ID_SIZE]; /* the bounced message's ID, for the log after the job is gone */
    long long newsize;
};

static void relay_notify_next(struct relay *r, struct relay_job *rj, int success_done);
/* relay_wants_dsn - the scheduler says a notice (SUCCESS or failure) is due for job
 * recipient I, and it has not gone yet (a success notice the next hop makes). */
static int relay_wants_dsn(const struct relay_job *rj, int i, int success)
{
    enum sched_notice n = sched_job_notice(rj->job, i);

    if (success)
        return n == SCHED_NOTICE_SUCCESS && !rj->ri[i].notified;
    return n == SCHED_NOTICE_FAILURE;
}

static void relay_notify_build(void *arg)
{
    struct relay_notify *nt = arg;
    struct relay_job *rj = nt->rj;
    const struct spool_envelope *env = rj->job->env;
    struct relay_dsn_rcpt dr[64];
    struct relay_dsn_info info;
    char boundary[128], msgid[160];
    long long size = 0;
    int fd, i, hdrs_only;

    /* the original message, for the third part */
    fd = spool_open_message(nt->tok->r->spool, rj->job->queue_id, NULL, &size);
    if (fd >= 0) {
        size_t want = size > RELAY_BOUNCE_FULL_MAX ? RELAY_BOUNCE_FULL_MAX : (size_t)size;
        nt->orig = malloc(want + 1);
        if (nt->orig) {
            ssize_t n;
            while (nt->origlen < want &&
                   (n = read(fd, nt->orig + nt->origlen, want - nt->origlen)) > 0)
                nt->origlen += (size_t)n;
        }
        close(fd);
    }
    hdrs_only = env->ret == SPOOL_RET_HDRS || size > RELAY_BOUNCE_FULL_MAX || nt->success;
    if (hdrs_only && nt->orig) {
        char *end = memmem(nt->orig, nt->origlen, "\r\n\r\n", 4);
        if (end)
            nt->origlen = (size_t)(end - nt->orig) + 2;
    }
    snprintf(boundary, sizeof(boundary), "%s.%lld/%s", rj->job->queue_id, (long long)time(NULL),
             nt->tok->r->myhostname);
    snprintf(msgid, sizeof(msgid), "%s.%lld@%s", rj->job->queue_id, clock_now_us(),
             nt->tok->r->myhostname);
    snprintf(nt->msgid, sizeof(nt->msgid), "%s", msgid);
    memset(&info, 0, sizeof(info));
    info.hostname = nt->tok->r->myhostname;
    info.queue_id = rj->job->queue_id;
    info.sender = env->sender;
    info.envid = env->envid;
    info.arrival_us = env->arrival_us;
    info.now = time(NULL);
    info.boundary = boundary;
    info.msgid = msgid;
    info.success = nt->success;
    info.hdrs_only = hdrs_only;
    for (i = 0; i < nt->n && i < 64; i++) {
        int k = nt->which[i], slot = rj->job->rcpt[k];
        dr[i].addr = env->rcpt[slot].addr;
        dr[i].orcpt = env->rcpt[slot].orcpt;
        dr[i].action = nt->success ? "relayed" : "failed";
        dr[i].status = rj->ri[k].dsn;
        dr[i].remote = rj->ri[k].remote ? rj->ri[k].remote : "";
        dr[i].diag = rj->ri[k].diag ? rj->ri[k].diag : "";
    }
    relay_dsn_build(&info, dr, i, nt->orig ? nt->orig : "", nt->orig ? nt->origlen : 0, nt->text);
}

/*
 * relay_notify_log - the queued notification's records as Postfix writes them: cleanup's
 * message-id=, then the bounce daemon's "QID: sender non-delivery notification: NEWID"
 * (prometheus-postfix-exporter and pflogsumm read it), then qmgr's from=<>. The
 * notification bypasses smtpd, so its intake records are logged here.
 */
static void relay_notify_log(const struct relay_notify *nt)
{
    log_mail("cleanup", "%s: message-id=<%s>", nt->newid, nt->msgid);
    log_mail("bounce", "%s: sender %s notification: %s", nt->qid,
             nt->success ? "delivery status" : "non-delivery", nt->newid);
    log_mail("qmgr", "%s: from=<>, size=%lld, nrcpt=1 (queue active)", nt->newid, nt->newsize);
}

static void relay_notify_committed(void *arg, int err)
{
    struct relay_notify *nt = arg;
    struct relay *r = nt->tok->r;
    struct relay_job *rj = nt->rj;
    int i;

    if (!r) {
        /* the relay stopped meanwhile and handed the job back already */
        if (err)
            log_warning("bounce", "notification not queued at shutdown: %s", strerror(err));
        else
            relay_notify_log(nt);
        if (--nt->tok->refs == 0)
            free(nt->tok);
        free(nt->which);
        free(nt);
        return;
    }
    if (err) {
        log_warning("bounce", "%s: cannot queue %s notification: %s", rj->job->queue_id,
                    nt->success ? "delivery status" : "non-delivery", strerror(err));
        /* the bounce must not be lost: keep those recipients for another attempt */
        if (!nt->success)
            for (i = 0; i < nt->n; i++)
                sched_job_unbounce(r->sched, rj->job, nt->which[i], SCHED_RESULT_DEFER);
    } else {
        relay_notify_log(nt);
    }
    if (--nt->tok->refs == 0 && !nt->tok->r)
        free(nt->tok);
    free(nt->which);
    free(nt);
    relay_notify_next(r, rj, 0);
}

static void relay_notify_built(void *arg)
{
    struct relay_notify *nt = arg;
    struct relay *r = nt->tok->r;
    struct relay_job *rj = nt->rj;
    const struct spool_envelope *env = rj->job->env;

    free(nt->orig);
    nt->orig = NULL;
    if (!(nt->msg = spool_msg_new(r->spool))) {
        int i;
        evbuffer_free(nt->text);
        if (!nt->success)
            for (i = 0; i < nt->n; i++)
                sched_job_unbounce(r->sched, rj->job, nt->which[i], SCHED_RESULT_NONE);
        nt->tok->refs--;
        free(nt->which);
        free(nt);
        relay_notify_next(r, rj, 1);
        return;
    }
    snprintf(nt->newid, sizeof(nt->newid), "%s", spool_msg_id(nt->msg));
    nt->newsize = (long long)evbuffer_get_length(nt->text);
    spool_msg_append(nt->msg, nt->text);
    evbuffer_free(nt->text);
    nt->text = NULL;
    memset(&nt->env, 0, sizeof(nt->env));
    nt->env.sender = (char *)"";
    nt->rcpt.addr = env->sender;
    nt->rcpt.orcpt = (char *)"";
    nt->rcpt.notify = SPOOL_NOTIFY_NEVER;
    nt->env.rcpt = &nt->rcpt;
    nt->env.nrcpt = 1;
    nt->env.envid = (char *)"";
    nt->env.client_name = (char *)"localhost";
    nt->env.client_addr = (char *)"127.0.0.1";
    nt->env.helo = (char *)"localhost";
    nt->env.arrival_us = clock_now_us();
    spool_msg_commit(nt->msg, &nt->env, relay_notify_committed, nt);
}

/* relay_notify_start - build and queue a notification for the recipients selected by SUCCESS. */
static int relay_notify_start(struct relay *r, struct relay_job *rj, int success)
{
    struct relay_notify *nt;
    int i;

    for (i = 0; i < rj->job->nrcpt; i++)
        if (relay_wants_dsn(rj, i, success))
            break;
    if (i == rj->job->nrcpt)
        return 0;
    nt = calloc(1, sizeof(*nt));
    if (!nt || !(nt->which = calloc((size_t)rj->job->nrcpt, sizeof(int))) ||
        !(nt->text = evbuffer_new())) {
        if (nt)
            free(nt->which);
        free(nt);
        return 0; /* out of memory: no notification (logged by the caller's warning) */
    }
    nt->tok = r->tok;
    nt->tok->refs++;
    nt->rj = rj;
    snprintf(nt->qid, sizeof(nt->qid), "%s", rj->job->queue_id);
    nt->success = success;
    for (i = 0; i < rj->job->nrcpt; i++)
        if (relay_wants_dsn(rj, i, success))
            nt->which[nt->n++] = i;
    workers_submit(r->io, relay_notify_build, relay_notify_built, nt);
    return 1;
}

/* relay_notify_next - success notification first, then the bounce, then release. */
static void relay_notify_next(struct relay *r, struct relay_job *rj, int success_done)
{
    (void)success_done;
    /* also while stopping: a recipient marked bounced must have its bounce queued
     * (relay_stop and relay_free wait for the notifications) */
    if (rj->notify_stage == 0) {
        rj->notify_stage = 1;
        if (relay_notify_start(r, rj, 1))
            return;
    }
    if (rj->notify_stage == 1) {
        rj->notify_stage = 2;
        if (relay_notify_start(r, rj, 0))
            return;
    }
    rj->notify_done(r, rj);
}

void relay_notify_begin(struct relay *r, struct relay_job *rj,
                        void (*done)(struct relay *r, struct relay_job *rj))
{
    rj->notify_stage = 0;
    rj->notify_done = done;
    relay_notify_next(r, rj, 0);
}
