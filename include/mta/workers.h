/*
 * workers.h - a small pool of threads for blocking calls (fsync, rename,
 * statvfs, libsmbclient, libnfs). work() runs on a worker thread; done() runs
 * afterwards on the event loop thread. The loop never waits for a worker.
 * Not here: what the jobs do.
 */
#ifndef MTA_WORKERS_H
#define MTA_WORKERS_H

struct event_base;
struct workers;

struct workers *workers_new(struct event_base *base, int nthreads, const char *name);
/*
 * workers_submit - queue a job; work may be NULL (done is then just deferred to
 * the loop), done may be NULL (nothing runs on the loop). Safe from any thread
 * (a worker or another helper thread may hand a completion back to the loop).
 */
void workers_submit(struct workers *w, void (*work)(void *arg), void (*done)(void *arg), void *arg);
/* workers_pending - jobs submitted whose done() has not run yet. */
int workers_pending(const struct workers *w);
/*
 * workers_run_done - on the loop thread, when the loop is not running (shutdown
 * paths): run the done() callbacks that are ready; if none is and WAIT_MS > 0,
 * first wait up to WAIT_MS milliseconds for one. Returns how many ran.
 */
int workers_run_done(struct workers *w, int wait_ms);
/* workers_free - finish every queued job (running their done() callbacks), join, free. */
void workers_free(struct workers *w);

#endif
