/*
 * dns.h - asynchronous DNS on the event loop (c-ares driven by libevent): MX
 * records and host addresses (A and AAAA) for the delivery engine. Servers come
 * from the dns_servers setting, else from /etc/resolv.conf; /etc/hosts and the
 * search list are never used (a mail domain is always fully qualified).
 * Not here: what the answers mean for delivery (MX order, null MX, implicit MX:
 * that is relay's next-hop logic; dns_mx_sort is the one shared helper).
 */
#ifndef MTA_DNS_H
#define MTA_DNS_H

#include <sys/socket.h>

struct event_base;
struct conf;
struct dns;

enum dns_status {
    DNS_OK = 0,    /* answer with records */
    DNS_NODATA,    /* the name exists but has no record of this type */
    DNS_NXDOMAIN,  /* the name does not exist */
    DNS_TEMPFAIL,  /* SERVFAIL, timeout, no server reachable: try later */
    DNS_CANCELLED, /* dns_cancel_all or dns_free: the caller only frees its ARG */
};

#define DNS_NAME_MAX 256
#define DNS_MAX_RECORDS 32 /* more than this of one query are ignored */

struct dns_mx {
    char host[DNS_NAME_MAX]; /* "" for a null MX (RFC 7505 "0 .") */
    int pref;
    int secure; /* the answer had the AD bit and smtp_dns_support_level = dnssec trusts it */
};
struct dns_addr {
    struct sockaddr_storage ss; /* port 0 */
    socklen_t len;
};

/* dns_new - a resolver on BASE. NULL and *err (malloc'd) when c-ares cannot start. */
struct dns *dns_new(struct event_base *base, const struct conf *conf, char **err);
/* dns_cancel_all - every pending query completes now with DNS_CANCELLED. */
void dns_cancel_all(struct dns *d);
/* dns_free - cancel all (callbacks run), then free. NULL is fine. */
void dns_free(struct dns *d);

/*
 * dns_query_mx - MX records of NAME, unsorted as the server sent them. DONE runs
 * later on the loop (never inside this call); ERRTEXT is a Postfix-style reason
 * ("Host not found", "Host not found, try again") when status is not DNS_OK.
 */
void dns_query_mx(struct dns *d, const char *name,
                  void (*done)(void *arg, enum dns_status st, const struct dns_mx *mx, int n,
                               const char *errtext),
                  void *arg);
/* dns_query_addr - A and AAAA addresses of NAME (IPv6 first when both exist, as c-ares sorts). */
void dns_query_addr(struct dns *d, const char *name,
                    void (*done)(void *arg, enum dns_status st, const struct dns_addr *a, int n,
                                 const char *errtext),
                    void *arg);

/*
 * TLSA (RFC 6698) and TXT records, asked for with the AD bit (RFC 6840 5.7) and EDNS DO
 * set; SECURE is 1 when the answer's AD bit is set and smtp_dns_support_level = dnssec
 * says that the configured resolver validates (the path to it is trusted, as in Postfix).
 * TLSA data longer than DNS_TLSA_DATA_MAX (a full certificate) is skipped; a TXT record
 * is its strings joined, cut at DNS_TXT_MAX - 1 bytes. DONE runs later on the loop.
 */
#define DNS_TLSA_DATA_MAX 512
struct dns_tlsa {
    unsigned char usage, selector, mtype;
    unsigned short len;
    unsigned char data[DNS_TLSA_DATA_MAX];
};
void dns_query_tlsa(struct dns *d, const char *name,
                    void (*done)(void *arg, enum dns_status st, int secure,
                                 const struct dns_tlsa *t, int n, const char *errtext),
                    void *arg);
#define DNS_TXT_MAX 1024
struct dns_txt {
    char text[DNS_TXT_MAX];
};
void dns_query_txt(struct dns *d, const char *name,
                   void (*done)(void *arg, enum dns_status st, int secure, const struct dns_txt *t,
                                int n, const char *errtext),
                   void *arg);

/*
 * dns_mx_sort - order MX records by preference, shuffling records of equal
 * preference (RFC 5321 5.1) with RND (returns a random unsigned; NULL: random()).
 */
void dns_mx_sort(struct dns_mx *mx, int n, unsigned (*rnd)(void));

/* dns_status_name - "OK", "NODATA", ... for logs and tests. */
const char *dns_status_name(enum dns_status st);

#endif
