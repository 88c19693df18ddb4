/*
 * pickup_milter.h - private to src/queue/: non_smtpd_milters for the mail pickup takes
 * from the maildrop (pickup_milter.c).
 */
#ifndef MTA_PICKUP_MILTER_H
#define MTA_PICKUP_MILTER_H

struct event_base;
struct milter_set;
struct conf;
struct spool_msg;
struct spool_envelope;
struct pickup_milter;

/* pickup_milter_start - run message M (all of it appended) with envelope ENV through the
 * milters of SET; their changes go into ENV and M. DONE(arg, verdict, reply) runs once, later,
 * with an enum milter_verdict (then free the job). NULL when out of memory. */
struct pickup_milter *pickup_milter_start(struct event_base *base, struct milter_set *set,
                                          const struct conf *conf, struct spool_msg *m,
                                          struct spool_envelope *env,
                                          void (*done)(void *arg, int verdict, const char *reply),
                                          void *arg);
/* pickup_milter_free - the job; no callback of it runs afterwards. */
void pickup_milter_free(struct pickup_milter *j);

#endif
