/*
 * sched_persist.c - the scheduler's state on disk: the status file of each
 * message (which delivery slots are final, the attempt count, the next retry
 * time, the hold) written on a worker thread after a round changes it, or on
 * the loop thread at shutdown; and the removal of a message whose slots are all
 * final. A completion hands the message back through sched.settle (sched.c's
 * sched_msg_settle), which decides what comes next.
 * Not here: the status file's format (spool_status.c), when to write (sched.c).
 */
#include "mta/log.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "sched_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sched_status_done(void *arg);

/* sched_status_work - worker: write the status file snapshot. */
static void sched_status_work(void *arg)
{
    struct sched_msg *m = arg;

    m->write_err = spool_status_write(m->sched->spool, m->id, &m->wst);
}

/* sched_status_write - start writing M's status file (one write in flight per message). */
void sched_status_write(struct sched *s, struct sched_msg *m)
{
    m->status_dirty = 0;
    m->writing = 1;
    m->wst.attempts = m->attempts;
    m->wst.next_retry = m->next_retry;
    m->wst.hold = m->held;
    m->wst.sync = m->hold_unsynced;
    m->hold_writing = m->hold_unsynced;
    m->wst.nslots = m->nslots;
    free(m->wst.slots);
    m->wst.slots = malloc((size_t)m->nslots);
    if (!m->wst.slots) {
        m->writing = 0;
        m->status_dirty = 1;
        return;
    }
    memcpy(m->wst.slots, m->slots, (size_t)m->nslots);
    workers_submit(s->io, sched_status_work, sched_status_done, m);
}

static void sched_status_done(void *arg)
{
    struct sched_msg *m = arg;
    struct sched *s = m->sched;

    m->writing = 0;
    free(m->wst.slots);
    m->wst.slots = NULL;
    /* the hold change is durable once a flushed write carried the state it still has */
    if (m->hold_writing && (!m->write_err || m->write_err == ENOENT) && m->wst.hold == m->held)
        m->hold_unsynced = 0;
    m->hold_writing = 0;
    if (m->write_err && m->write_err != ENOENT) {
        log_warning("qmgr",
                    "%s: cannot write status file: %s (recipients already delivered may "
                    "be delivered again after a restart)",
                    m->id, strerror(m->write_err));
        /* not written: try again at the next queue run (not now: the disk may be full) */
        m->status_dirty = 1;
        m->write_retry = 1;
    }
    s->settle(s, m);
}

struct sched_rm {
    struct sched_token *tok;
    char id[SPOOL_ID_SIZE];
    const char *service;
};

/* sched_remove_done - the spool removed the message (or it was gone already). */
static void sched_remove_done(void *arg, int err)
{
    struct sched_rm *rm = arg;
    struct sched *s = rm->tok->s;
    struct sched_msg *m;

    if (!err || err == ENOENT)
        log_mail(rm->service, "%s: removed", rm->id);
    else
        log_warning(rm->service, "%s: cannot remove: %s; retrying at the next queue run", rm->id,
                    strerror(err));
    if (s && (m = sched_msg_find(s, rm->id)) && m->removing) {
        m->removing = 0;
        if (err && err != ENOENT && (m->env || m->park) && !m->gone &&
            strcmp(rm->service, "qmgr") == 0) {
            /* still queued: record that every slot is done (a restart must not deliver
             * again), and remove it at the next queue run */
            m->remove_retry = 1;
            m->status_dirty = 1;
            s->settle(s, m);
        } else {
            m->gone = 1;
            if (sched_msg_idle(m))
                sched_msg_free(s, m);
        }
    }
    if (--rm->tok->refs == 0 && !rm->tok->s)
        free(rm->tok);
    free(rm);
}

/* sched_msg_remove - remove M from the spool; M is freed when nothing refers to it. */
void sched_msg_remove(struct sched *s, struct sched_msg *m, const char *service)
{
    struct sched_rm *rm = calloc(1, sizeof(*rm));

    if (!rm)
        return; /* stays queued: deliveries are done, so a restart just removes it */
    m->removing = 1;
    sched_msg_drop_content(s, m);
    rm->tok = s->tok;
    rm->tok->refs++;
    rm->service = service;
    snprintf(rm->id, sizeof(rm->id), "%s", m->id);
    /* its file may be reused only when no delivery or load can still be reading it */
    spool_remove(s->spool, m->id, !m->loading && !m->njobs, sched_remove_done, rm);
}

/* sched_status_write_now - write M's status file on this thread (shutdown only: blocks). */
void sched_status_write_now(struct sched *s, struct sched_msg *m)
{
    struct spool_status st;
    int err;

    st.attempts = m->attempts;
    st.next_retry = m->next_retry;
    st.nslots = m->nslots;
    st.slots = m->slots;
    st.hold = m->held;
    st.sync = m->hold_unsynced;
    err = spool_status_write(s->spool, m->id, &st);
    if (err && err != ENOENT)
        log_warning("qmgr",
                    "%s: cannot write status file: %s (recipients already delivered may "
                    "be delivered again after a restart)",
                    m->id, strerror(err));
    else
        m->status_dirty = 0;
}
