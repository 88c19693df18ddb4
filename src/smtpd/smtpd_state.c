/*
 * smtpd_state.c - the session's phase: its names, the one function that changes it
 * (smtpd_enter_state: the debug trace and the phase's timeout in one place), and the
 * lookup of a session by id that async completions use. A leaf: it calls nothing else
 * in src/smtpd/ but the map.
 * Not here: which command may run in which phase (the table in smtpd_proto.c).
 */
#include <event2/bufferevent.h>

#include "mta/conf.h"
#include "mta/log.h"
#include "smtpd_int.h"

static const char *const smtpd_state_names[SMTPD_STATE_COUNT] = {
    [SMTPD_STATE_CONNECT] = "CONNECT",     [SMTPD_STATE_TLS] = "TLS",
    [SMTPD_STATE_HELO] = "HELO",           [SMTPD_STATE_AUTH] = "AUTH",
    [SMTPD_STATE_AUTH_WAIT] = "AUTH_WAIT", [SMTPD_STATE_MAIL] = "MAIL",
    [SMTPD_STATE_RCPT] = "RCPT",           [SMTPD_STATE_DATA] = "DATA",
    [SMTPD_STATE_BDAT] = "BDAT",           [SMTPD_STATE_COMMIT] = "COMMIT",
    [SMTPD_STATE_CLOSING] = "CLOSING",     [SMTPD_STATE_DEAD] = "DEAD",
};

const char *smtpd_state_name(enum smtpd_state state)
{
    return (unsigned)state < SMTPD_STATE_COUNT ? smtpd_state_names[state] : "?";
}

/*
 * smtpd_state_timeout - the read/write timeout of a phase, in seconds. Every phase uses
 * smtpd_timeout today, as Postfix does; a phase that gets its own limit (Postfix's
 * smtpd_starttls_timeout for TLS, a milter's wait) gets it here.
 */
static int smtpd_state_timeout(const struct smtpd_session *s, enum smtpd_state state)
{
    (void)state;
    return (int)s->srv->conf->smtpd_timeout;
}

void smtpd_enter_state(struct smtpd_session *s, enum smtpd_state state)
{
    int timeout;

    if (s->state == state)
        return;
    /* the last reply is chosen: no later step of the dialogue may reopen the session */
    if (smtpd_state_final(s) && state < s->state)
        return;
#ifdef SMTPD_DEBUG_STATES
    log_mail_pid("smtpd", s->log_pid, "debug: %s[%s]: state %s -> %s", s->name, s->addr,
                 smtpd_state_name(s->state), smtpd_state_name(state));
#endif
    s->state = state;
    timeout = smtpd_state_timeout(s, state);
    /* re-arming the bufferevent's timers only when the value changes keeps this cheap */
    if (timeout != s->timeout && s->bev && state != SMTPD_STATE_DEAD) {
        struct timeval tv = {timeout, 0};
        s->timeout = timeout;
        bufferevent_set_timeouts(s->bev, &tv, &tv);
    }
}

enum smtpd_state smtpd_state_idle(const struct smtpd_session *s)
{
    return s->helo ? SMTPD_STATE_HELO : SMTPD_STATE_CONNECT;
}

int smtpd_state_final(const struct smtpd_session *s)
{
    return s->state == SMTPD_STATE_CLOSING || s->state == SMTPD_STATE_DEAD;
}

size_t smtpd_state_id_hash(uint64_t id)
{
    /* ids are consecutive: a multiplicative mix spreads them over the buckets */
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h ^ (h >> 32));
}

/* smtpd_state_id_match - the node of the session with id *KEY. */
static int smtpd_state_id_match(const struct htab_node *n, const void *key)
{
    return HTAB_ENTRY(n, struct smtpd_session, id_node)->id == *(const uint64_t *)key;
}

struct smtpd_session *smtpd_state_find(struct smtpd *srv, uint64_t id)
{
    struct htab_node *n =
        htab_find(&srv->by_id, smtpd_state_id_hash(id), smtpd_state_id_match, &id);
    return n ? HTAB_ENTRY(n, struct smtpd_session, id_node) : NULL;
}
