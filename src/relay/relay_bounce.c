/*
 * relay_bounce.c - the text of delivery status notifications (RFC 3464): a
 * multipart/report from MAILER-DAEMON with Postfix's human-readable part, the
 * machine-readable message/delivery-status part (per-recipient Final-Recipient,
 * Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code) and the
 * original message or its headers. Pure: the caller reads the original and
 * queues the result (relay.c).
 * Not here: deciding who gets a notification (relay.c).
 */
#include "relay_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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
        evbuffer_add_printf(out, "Your message was successfully delivered to the destination(s)\r\n"
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
        evbuffer_add_printf(out, "<%s>: %s\r\n", r[i].addr, info->success ? "delivery via relay: " : "");
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
    evbuffer_add_printf(out, "Content-Type: %s\r\n", info->hdrs_only ? "text/rfc822-headers" : "message/rfc822");
    evbuffer_add_printf(out, "Content-Transfer-Encoding: 8bit\r\n\r\n");
    evbuffer_add(out, orig, origlen);
    if (origlen && (origlen < 2 || memcmp(orig + origlen - 2, "\r\n", 2) != 0))
        evbuffer_add(out, "\r\n", 2);
    evbuffer_add_printf(out, "\r\n--%s--\r\n", info->boundary);
}
