/*
 * pickup.h - the daemon's side of local submission (Postfix's pickup and the
 * part of its cleanup that completes local mail): watches DATA/maildrop (where
 * postdrop puts what sendmail submits), checks each file as untrusted input,
 * completes its header (Received: "from userid N", Message-Id:, Date:, From:,
 * Bcc: removed) and commits it as a normal queue file through the spool; only
 * then is the maildrop file removed. Files that fail the checks go to
 * DATA/corrupt/. All file I/O runs on its own worker thread.
 * Not here: the maildrop format (maildrop.h), delivery (the scheduler sees the
 * committed message like any other).
 */
#ifndef MTA_PICKUP_H
#define MTA_PICKUP_H

struct event_base;
struct conf;
struct spool;
struct pickup;
struct dkim_signer;

#define PICKUP_SCAN_INTERVAL                                                                       \
    60 /* seconds between full scans of the maildrop (as Postfix polls)                            \
        */

/* pickup_new - watch DATA/maildrop (inotify, and a scan now and every PICKUP_SCAN_INTERVAL
 * seconds). Call after spool_open, in the data volume (mtad's working directory). NULL and
 * *err (malloc'd) on failure. */
struct pickup *pickup_new(struct event_base *base, const struct conf *conf, struct spool *sp,
                          char **err);
/* pickup_free - stop taking files; finish the one in flight (its commit, then the removal of
 * its maildrop file) while the loop no longer runs; free. Before spool_close. */
void pickup_free(struct pickup *p);
/* pickup_set_dkim - sign local mail with D (NULL: do not; not owned). */
void pickup_set_dkim(struct pickup *p, struct dkim_signer *d);

#endif
