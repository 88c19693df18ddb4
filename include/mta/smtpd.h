/*
 * smtpd.h - the SMTP intake: listeners on the in terminal and the sessions.
 * Not here: delivery, statistics pages (they read counters).
 */
#ifndef MTA_SMTPD_H
#define MTA_SMTPD_H

struct event_base;
struct conf;
struct spool;
struct smtpd;
struct tls_ctx;
struct dkim_signer;

/* smtpd_new - bind and listen on in_address:smtp_port. NULL and *err (malloc'd, names the address).
 */
struct smtpd *smtpd_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        char **err);
/*
 * smtpd_stop - graceful shutdown: stop accepting; sessions waiting for a commit
 * get their reply first; every session is then closed with 421 4.3.2. DRAINED(arg)
 * runs on the loop when no session is left.
 */
void smtpd_stop(struct smtpd *s, void (*drained)(void *arg), void *arg);
void smtpd_free(struct smtpd *s);
/*
 * smtpd_set_tls - hand the server a TLS context (it takes ownership). The first
 * call also opens the SMTPS listener on in_address:smtps_port and turns on
 * STARTTLS; later calls (SIGHUP reload) swap the context: new handshakes use
 * the new one, live sessions keep theirs. 0 ok; -1 and *err (the context is
 * freed).
 */
int smtpd_set_tls(struct smtpd *s, struct tls_ctx *ctx, char **err);
/* smtpd_set_dkim - sign the mail of trusted and authenticated clients with D (not owned). */
void smtpd_set_dkim(struct smtpd *s, struct dkim_signer *d);

#endif
