/*
 * clock.h - the two clocks the daemon reads, in one place: the wall clock in
 * microseconds (arrival times, queue IDs, delays in the mail log) and the
 * monotonic clock (intervals, deadlines, uptime) that does not jump when the
 * administrator or NTP sets the time.
 * Not here: time formatting (log.c) or time values in the configuration (conf).
 */
#ifndef MTA_CLOCK_H
#define MTA_CLOCK_H

#include <time.h>

/* clock_now_us - the wall clock (CLOCK_REALTIME) in microseconds since the epoch. */
long long clock_now_us(void);
/* clock_mono_us - the monotonic clock in microseconds (an arbitrary origin). */
long long clock_mono_us(void);
/* clock_mono_after - the monotonic clock MS milliseconds from now, for
 * pthread_cond_timedwait on a condition set to CLOCK_MONOTONIC. */
struct timespec clock_mono_after(unsigned ms);
/* clock_ts_before - whether time A comes before time B. */
int clock_ts_before(const struct timespec *a, const struct timespec *b);

#endif
