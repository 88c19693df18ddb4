/*
 * smtpd_policy.c - the relay policy: clients in smtpd_trusted_networks (and,
 * later, authenticated clients) may relay anywhere; everyone else gets
 * Postfix's reject_unauth_destination answer, because this relay has no local
 * domains. Not here: the reply and its log line (smtpd_reply_reject).
 */
#include "mta/cidr.h"
#include "smtpd_int.h"

int smtpd_policy_trusted(const struct smtpd *srv, const struct sockaddr *sa)
{
    return srv->trusted && cidr_list_match(srv->trusted, sa);
}

int smtpd_policy_relay_ok(const struct smtpd_session *s, const char *rcpt)
{
    (void)rcpt; /* no local domains: the destination never makes it acceptable */
    return s->trusted || s->authenticated;
}
