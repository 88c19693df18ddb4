/*
 * fuzz_dns_resolver.c - DNS answers end to end through the resolver (dns.c):
 * c-ares on the libevent loop queries a fake name server on 127.0.0.1 that
 * this harness runs, and the answers come from the input. The first byte
 * chooses an MX or an address (A + AAAA, ares_getaddrinfo) lookup; the rest is
 * a sequence of answers, each a 2-byte length and that many bytes, answered
 * to the queries in the order they come. An answer keeps the query's ID and
 * question (else c-ares drops it unread) and takes the flags, the record
 * counts and the sections after the question from the input. The lookup must
 * complete (or be cancelled) with a status and records within bounds.
 * fuzz_dns_mx feeds the MX parser without the loop; this one reaches the
 * address callback, the socket glue and c-ares's own answer matching.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fuzz_util.h"
#include "mta/conf.h"
#include "mta/dns.h"

static struct event_base *fuzz_base;
static struct dns *fuzz_dns;
static int fuzz_udp = -1;
static struct event *fuzz_srv_ev;
static const uint8_t *fuzz_ans; /* the answers not used yet */
static size_t fuzz_nans;
static int fuzz_done, fuzz_answered;

/* fuzz_serve_cb - the fake name server: answer each query with the next answer of the input. */
static void fuzz_serve_cb(evutil_socket_t fd, short what, void *arg)
{
    unsigned char q[512], r[1024];
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t n;
    size_t qend = 12, len, rl;

    (void)what;
    (void)arg;
    while ((n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen)) > 0) {
        if (n < 12 || fuzz_nans < 2)
            continue; /* no answer left: c-ares times out or is cancelled */
        while (qend < (size_t)n && q[qend] != 0) /* the question's name, uncompressed */
            qend += q[qend] + 1u;
        qend += 5; /* root label, type, class */
        if (qend > (size_t)n)
            continue;
        len = (size_t)fuzz_ans[0] << 8 | fuzz_ans[1];
        if (len > fuzz_nans - 2)
            len = fuzz_nans - 2;
        /* ID | flags (QR set) | QDCOUNT 1 | AN/NS/AR counts | question | the rest */
        memcpy(r, q, 2);
        memset(r + 2, 0, 10);
        if (len >= 2)
            r[2] = fuzz_ans[2] | 0x80, r[3] = fuzz_ans[3];
        r[5] = 1;
        if (len >= 8)
            memcpy(r + 6, fuzz_ans + 4, 6);
        memcpy(r + 12, q + 12, qend - 12);
        rl = qend;
        if (len > 8) {
            size_t more = len - 8 < sizeof(r) - rl ? len - 8 : sizeof(r) - rl;
            memcpy(r + rl, fuzz_ans + 10, more);
            rl += more;
        }
        fuzz_ans += 2 + len;
        fuzz_nans -= 2 + len;
        (void)sendto(fd, r, rl, 0, (struct sockaddr *)&from, flen);
        fuzz_answered++;
    }
}

/* fuzz_mx_done - the MX lookup ended. */
static void fuzz_mx_done(void *arg, enum dns_status st, const struct dns_mx *mx, int n,
                         const char *errtext)
{
    (void)arg;
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "MX %s: %d records (%s)\n", dns_status_name(st), n, errtext);
    FUZZ_CHECK(!fuzz_done); /* once per lookup */
    FUZZ_CHECK(errtext != NULL && n >= 0 && n <= DNS_MAX_RECORDS);
    FUZZ_CHECK(st == DNS_OK ? n > 0 : n == 0);
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(memchr(mx[i].host, '\0', sizeof(mx[i].host)) && mx[i].pref >= 0 &&
                   mx[i].pref <= 65535);
    fuzz_done = 1;
}

/* fuzz_addr_done - the address lookup ended. */
static void fuzz_addr_done(void *arg, enum dns_status st, const struct dns_addr *a, int n,
                           const char *errtext)
{
    (void)arg;
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "A/AAAA %s: %d addresses (%s)\n", dns_status_name(st), n, errtext);
    FUZZ_CHECK(!fuzz_done); /* once per lookup */
    FUZZ_CHECK(errtext != NULL && n >= 0 && n <= DNS_MAX_RECORDS);
    FUZZ_CHECK(st == DNS_OK ? n > 0 : n == 0);
    for (int i = 0; i < n; i++)
        FUZZ_CHECK((a[i].ss.ss_family == AF_INET && a[i].len == sizeof(struct sockaddr_in)) ||
                   (a[i].ss.ss_family == AF_INET6 && a[i].len == sizeof(struct sockaddr_in6)));
    fuzz_done = 1;
}

/* fuzz_setup - the fake server's socket and a resolver that asks only it. */
static void fuzz_setup(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t sl = sizeof(sa);
    char ov[64], *ovs[] = {"data_volume=/nonexistent/fuzz", ov}, *err = NULL;
    struct conf *c;

    if (!(fuzz_base = event_base_new()))
        abort();
    fuzz_udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fuzz_udp < 0 || bind(fuzz_udp, (struct sockaddr *)&sa, sl) < 0 ||
        getsockname(fuzz_udp, (struct sockaddr *)&sa, &sl) < 0)
        abort();
    snprintf(ov, sizeof(ov), "dns_servers=127.0.0.1:%d", ntohs(sa.sin_port));
    if (!(c = conf_load(NULL, ovs, 2, &err)) || !(fuzz_dns = dns_new(fuzz_base, c, &err))) {
        fprintf(stderr, "fuzz_dns_resolver: %s\n", err ? err : "?");
        abort();
    }
    conf_free(c);
    fuzz_srv_ev = event_new(fuzz_base, fuzz_udp, EV_READ | EV_PERSIST, fuzz_serve_cb, NULL);
    if (!fuzz_srv_ev || event_add(fuzz_srv_ev, NULL) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned f = fuzz_byte(&in);
    int turns = 0;

    if (!fuzz_dns)
        fuzz_setup();
    fuzz_ans = in.p;
    fuzz_nans = in.n;
    fuzz_done = fuzz_answered = 0;
    if (f & 1)
        dns_query_addr(fuzz_dns, "mx.example.com", fuzz_addr_done, NULL);
    else
        dns_query_mx(fuzz_dns, "example.com", fuzz_mx_done, NULL);
    /* run until the lookup ends; once the answers are used up and the loop has gone quiet, a
     * lookup still waiting would only time out (2 s per try): cancel it instead */
    while (!fuzz_done && turns < 200) {
        event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        turns++;
        if (turns > 20 && fuzz_nans < 2)
            break;
    }
    if (!fuzz_done)
        dns_cancel_all(fuzz_dns);
    while (!fuzz_done) /* the cancelled lookup's callback */
        event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    fuzz_nans = 0;
    fuzz_serve_cb(fuzz_udp, EV_READ, NULL); /* drop queries left unanswered */
    return 0;
}
