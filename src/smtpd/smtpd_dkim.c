/*
 * smtpd_dkim.c - DKIM signing of a received message at end-of-data, after the
 * milters and before the commit, so the queue file holds the signed message and
 * every delivery attempt sends the same bytes. Only mail from trusted networks
 * and authenticated clients is signed (dkim.h decides the From: domain).
 *
 * The session waits in SMTPD_STATE_COMMIT (not reading) while the message is
 * read back through the spool (spool_msg_read, 64 KiB at a time) and each piece
 * is fed to libopendkim on a signing thread; the last piece is followed by the
 * signature itself there. The job owns the spool message meanwhile and finds
 * its session by id: a session gone by then leaves a message that is dropped.
 * Not here: libopendkim (src/core/dkim.c), the commit (smtpd_txn.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "mta/dkim.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "mta/workers.h"
#include "smtpd_int.h"

struct smtpd_dkim {
    struct smtpd *srv;
    uint64_t session;
    struct spool_msg *m; /* owned here until the message goes back to the transaction */
    struct dkim_job *job;
    char qid[SPOOL_ID_SIZE];
    long long off, size;
    struct evbuffer *chunk; /* the piece the signing thread feeds next */
    int last;               /* after this piece: sign */
    struct dkim_result res;
    void (*next)(struct smtpd_session *s);
};

static void smtpd_dkim_read(struct smtpd_dkim *j);

void smtpd_set_dkim(struct smtpd *s, struct dkim_signer *d)
{
    s->dkim = d;
}

/* smtpd_dkim_session - the waiting session, or NULL when it is gone or has moved on. */
static struct smtpd_session *smtpd_dkim_session(struct smtpd_dkim *j)
{
    struct smtpd_session *s = smtpd_state_find(j->srv, j->session);
    return s && s->state == SMTPD_STATE_COMMIT && s->tx ? s : NULL;
}

/* smtpd_dkim_free - the job, with the message unless it went back to the transaction. */
static void smtpd_dkim_free(struct smtpd_dkim *j)
{
    struct smtpd *srv = j->srv;
    if (j->m)
        spool_msg_abort(j->m);
    dkim_job_free(j->job);
    dkim_result_clear(&j->res);
    if (j->chunk)
        evbuffer_free(j->chunk);
    free(j);
    srv->commits--;
    if (srv->stopping)
        event_active(srv->reaper, EV_TIMEOUT, 1); /* it reports "no session left" */
}

/* smtpd_dkim_fail - 451 for the client (the message is dropped), a warning in the log. */
static void smtpd_dkim_fail(struct smtpd_dkim *j, const char *why)
{
    struct smtpd_session *s = smtpd_dkim_session(j);

    if (j->res.verdict != DKIM_FAILED) {
        j->res.verdict = DKIM_FAILED;
        snprintf(j->res.why, sizeof(j->res.why), "%s", why);
    }
    dkim_report(j->srv->dkim, j->qid, &j->res);
    if (s) {
        smtpd_enter_state(s, smtpd_state_idle(s));
        smtpd_txn_reset(s);
        smtpd_reply(s, "451 4.7.5 Error: DKIM signing failed");
        j->srv->resume(s, 1);
    }
    smtpd_dkim_free(j);
}

/* smtpd_dkim_work - signing thread: feed the piece, sign after the last. */
static void smtpd_dkim_work(void *arg)
{
    struct smtpd_dkim *j = arg;
    struct evbuffer_iovec v[16];
    int n;

    while ((n = evbuffer_peek(j->chunk, -1, NULL, v, 16)) > 0) {
        size_t used = 0;
        for (int i = 0; i < n && i < 16; i++) {
            dkim_job_feed(j->job, v[i].iov_base, v[i].iov_len);
            used += v[i].iov_len;
        }
        evbuffer_drain(j->chunk, used);
    }
    if (j->last)
        dkim_job_finish(j->job, &j->res);
}

/* smtpd_dkim_done - loop: the next piece, or the verdict. */
static void smtpd_dkim_done(void *arg)
{
    struct smtpd_dkim *j = arg;
    struct smtpd_session *s = smtpd_dkim_session(j);

    if (!s) {
        smtpd_dkim_free(j);
        return;
    }
    if (!j->last) {
        smtpd_dkim_read(j);
        return;
    }
    if (j->res.verdict == DKIM_FAILED) {
        smtpd_dkim_fail(j, j->res.why);
        return;
    }
    if (j->res.verdict == DKIM_SIGNED) {
        size_t len = strlen(j->res.header);
        struct evbuffer *front = evbuffer_new();
        if (!front || evbuffer_add(front, j->res.header, len) < 0 ||
            spool_msg_set_front(j->m, front, 0) < 0) {
            if (front)
                evbuffer_free(front);
            smtpd_dkim_fail(j, "cannot put the signature in front: out of memory");
            return;
        }
        evbuffer_free(front);
        s->tx->stored += (long long)len;
        dkim_report(j->srv->dkim, j->qid, &j->res);
    }
    s->tx->msg = j->m; /* back to the transaction, which commits it */
    j->m = NULL;
    void (*next)(struct smtpd_session *) = j->next;
    smtpd_dkim_free(j);
    next(s);
}

/* smtpd_dkim_drained - a streaming write ended: read again. */
static void smtpd_dkim_drained(void *arg)
{
    smtpd_dkim_read(arg);
}

/* smtpd_dkim_read_done - loop: a piece of the message; hand it to a signing thread. */
static void smtpd_dkim_read_done(void *arg, struct evbuffer *out, int err)
{
    struct smtpd_dkim *j = arg;
    size_t n;

    if (!smtpd_dkim_session(j)) {
        smtpd_dkim_free(j);
        return;
    }
    if (err == EAGAIN) {
        if (!spool_msg_on_drain(j->m, smtpd_dkim_drained, j))
            smtpd_dkim_read(j);
        return;
    }
    if (err) {
        char why[128];
        snprintf(why, sizeof(why), "cannot read the message: %s", strerror(err));
        smtpd_dkim_fail(j, why);
        return;
    }
    n = out ? evbuffer_get_length(out) : 0;
    if (n > 0)
        evbuffer_add_buffer(j->chunk, out);
    j->off += (long long)n;
    j->last = n == 0 || j->off >= j->size;
    workers_submit(dkim_signer_workers(j->srv->dkim), smtpd_dkim_work, smtpd_dkim_done, j);
}

/* smtpd_dkim_read - ask the spool for the next piece (the signature needs every byte). */
static void smtpd_dkim_read(struct smtpd_dkim *j)
{
    if (j->off >= j->size) {
        j->last = 1;
        workers_submit(dkim_signer_workers(j->srv->dkim), smtpd_dkim_work, smtpd_dkim_done, j);
        return;
    }
    if (!spool_msg_read(j->m, j->off, SPOOL_READ_MAX, smtpd_dkim_read_done, j))
        smtpd_dkim_fail(j, "out of memory");
}

int smtpd_dkim_start(struct smtpd_session *s, void (*next)(struct smtpd_session *s))
{
    struct smtpd *srv = s->srv;
    struct smtpd_txn *tx = s->tx;
    struct smtpd_dkim *j;

    /* mail relayed for others keeps its own signatures: only our clients' mail is signed */
    if (!srv->dkim || !(s->trusted || s->authenticated) || !tx->msg)
        return 0;
    if (!(j = calloc(1, sizeof(*j))) || !(j->chunk = evbuffer_new()) ||
        !(j->job = dkim_job_new(srv->dkim, tx->id))) {
        if (j && j->chunk)
            evbuffer_free(j->chunk);
        free(j);
        smtpd_txn_reset(s);
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        return 1;
    }
    smtpd_enter_state(s, SMTPD_STATE_COMMIT);
    bufferevent_disable(s->bev, EV_READ);
    srv->commits++; /* smtpd_free waits for it like for a commit */
    j->srv = srv;
    j->session = s->id;
    j->m = tx->msg;
    tx->msg = NULL; /* the job owns it: a session that dies meanwhile frees no message */
    j->next = next;
    snprintf(j->qid, sizeof(j->qid), "%s", tx->id);
    j->size = spool_msg_size(j->m);
    smtpd_dkim_read(j);
    return 1;
}
