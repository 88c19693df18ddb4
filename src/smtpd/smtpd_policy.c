/*
 * smtpd_policy.c - the relay policy: clients in smtpd_trusted_networks and
 * authenticated clients may relay anywhere; everyone else gets Postfix's
 * reject_unauth_destination answer, because this relay has no local domains.
 * On submission_port: AUTH before MAIL (STARTTLS first is the command
 * table's rule, smtpd_proto.c).
 * Not here: the reply and its log line (smtpd_reply_reject).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <strings.h>

#include "mta/cidr.h"
#include "smtpd_int.h"

int smtpd_policy_trusted(const struct smtpd *srv, const struct sockaddr *sa)
{
    return srv->trusted && cidr_list_match(srv->trusted, sa);
}

/*
 * smtpd_policy_submission_mail - submission_port's rule for MAIL, as Postfix's master.cf
 * submission entry (smtpd_client_restrictions=permit_sasl_authenticated,reject): MAIL only
 * after AUTH (Postfix's client reject, given at MAIL rather than at RCPT so that no
 * unauthenticated transaction starts; trusted networks do not count here). Which commands
 * need STARTTLS first is a column of the command table (smtpd_proto.c).
 */
void smtpd_policy_submission_mail(struct smtpd_session *s, const char *arg)
{
    char who[INET6_ADDRSTRLEN + 64], sender[SMTPD_ADDR_MAX + 1];
    const char *end;

    snprintf(who, sizeof(who), "%s[%s]", s->name, s->addr);
    /* the log names the sender, as Postfix's restrictions at MAIL do (none if unparsable) */
    int ok = arg && strncasecmp(arg, "FROM:", 5) == 0 &&
             smtpd_addr_parse(arg + 5, 1, 1, sender, &end) == SMTPD_ADDR_OK;
    smtpd_reply_reject_from(s, "MAIL", ok ? sender : NULL,
                            "554 5.7.1 <%s>: Client host rejected: Access denied", who);
}

int smtpd_policy_relay_ok(const struct smtpd_session *s, const char *rcpt)
{
    (void)rcpt; /* no local domains: the destination never makes it acceptable */
    return s->trusted || s->authenticated;
}
