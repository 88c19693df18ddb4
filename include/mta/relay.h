/*
 * relay.h - the delivery engine (Postfix's smtp + bounce): takes ready jobs from
 * the scheduler, finds the next hop (smart_relay, cc_mta, or the recipient
 * domain's MX / implicit MX via c-ares), speaks SMTP to it (EHLO, PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8, DSN, opportunistic STARTTLS, connection reuse),
 * logs every result in Postfix's maillog format, and writes bounces and success
 * notifications (RFC 3464) back through the spool. All on the event loop;
 * message files are read on worker threads.
 * Not here: retry timing and queue state (sched), resolver plumbing (dns).
 */
#ifndef MTA_RELAY_H
#define MTA_RELAY_H

struct event_base;
struct conf;
struct spool;
struct sched;
struct dns;
struct relay;

/*
 * relay_new - start delivering: registers with sched_set_ready. Logs the
 * warning when cc_mta is ignored because smart_relay is set. NULL and *err
 * (malloc'd) when smart_relay/cc_mta are not valid next hops or TLS cannot start.
 * CONF, SPOOL, SCHED and DNS must outlive it.
 */
struct relay *relay_new(struct event_base *base, const struct conf *conf, struct spool *spool,
                        struct sched *sched, struct dns *dns, char **err);
/*
 * relay_stop - begin a graceful stop: take no more jobs, close connections that
 * are not inside a transaction (their recipients stay queued), let those that
 * sent the final dot read the server's reply, and let notifications in flight
 * be committed. DRAINED(ARG) runs once when all that is over, or after at most
 * 10 seconds. Then call relay_free. A second call does nothing.
 */
void relay_stop(struct relay *r, void (*drained)(void *arg), void *arg);
/*
 * relay_free - graceful stop: close every outbound connection, hand every job
 * back to the scheduler (results already logged are kept; the rest stay queued).
 * Call before sched_free and dns_free. NULL is fine.
 */
void relay_free(struct relay *r);

#endif
