/*
 * smtpd_proxy.h - the PROXY protocol header (HAProxy's v1 text line and v2
 * binary header) that a load balancer sends before the client's first byte
 * when smtpd_upstream_proxy_protocol = haproxy. The parser is pure: bytes in,
 * the original client and server addresses or Postfix's error text out.
 * Not here: reading the socket (smtpd_proxy.c), what the session does with
 * the address (smtpd_session.c).
 */
#ifndef SMTPD_PROXY_H
#define SMTPD_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

#define SMTPD_PROXY_V1_MAX 107 /* the longest v1 line with its CRLF (the protocol's limit) */
#define SMTPD_PROXY_MAX 536    /* the longest header at all (Postfix: the IPv4 default MSS) */

enum smtpd_proxy_res {
    SMTPD_PROXY_ERR = -1, /* not a valid header: *ERR says why (Postfix's texts) */
    SMTPD_PROXY_MORE = 0, /* a valid beginning: every byte given belongs to the header */
    SMTPD_PROXY_OK = 1,   /* complete: the first *HDRLEN bytes are the header */
};

struct smtpd_proxy_info {
    int local; /* v2 LOCAL (a health check): the connection's own addresses stand */
    struct sockaddr_storage client, server;
    socklen_t client_len, server_len;
};

/*
 * smtpd_proxy_parse - parse the LEN bytes at BUF (what the connection has sent so far).
 * EOF: no more bytes will come, so an incomplete header is an error. Accepted as Postfix's
 * haproxy_srvr.c does: v1 "PROXY TCP4|TCP6 src dst sport dport" (UNKNOWN refused: it would
 * sidestep address-based access control); v2 PROXY over TCP/IPv4 or TCP/IPv6, v2 LOCAL;
 * TLVs skipped. IPv4-mapped IPv6 addresses come out as IPv4.
 */
enum smtpd_proxy_res smtpd_proxy_parse(const unsigned char *buf, size_t len, int eof,
                                       size_t *hdrlen, struct smtpd_proxy_info *pi,
                                       const char **err);

/* smtpd_proxy_escape - LEN bytes of BUF as C escapes in OUT (size N), as Postfix logs a bad
 * header; always terminated. */
void smtpd_proxy_escape(const unsigned char *buf, size_t len, char *out, size_t n);

#endif
