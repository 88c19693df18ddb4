/*
 * cidr.h - lists of IPv4/IPv6 addresses and CIDR blocks (smtpd_trusted_networks),
 * matched against client addresses. IPv4-mapped IPv6 clients (::ffff:a.b.c.d)
 * match IPv4 entries.
 */
#ifndef MTA_CIDR_H
#define MTA_CIDR_H

struct sockaddr;
struct cidr_list;

/* cidr_list_parse - "127.0.0.1, 10.0.0.0/8 ::1" (commas and/or spaces). NULL and *err (malloc'd) on
 * a bad entry. */
struct cidr_list *cidr_list_parse(const char *text, char **err);
/* cidr_list_match - 1 when SA (AF_INET or AF_INET6) is inside an entry. */
int cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);
void cidr_list_free(struct cidr_list *l);

#endif
