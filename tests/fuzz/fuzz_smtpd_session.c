/*
 * fuzz_smtpd_session.c - whole SMTP sessions against the real intake: one
 * server (smtpd_new on 127.0.0.1, the spool on a temporary data volume) for
 * the process, and per input one connection over a socketpair handed to
 * smtpd_session_accept, as the listener does. The harness is the client: the
 * first byte chooses the client address (trusted or not) and whether the rest
 * is sent in one write (pipelining, RFC 2920 violations) or line by line,
 * waiting after each line until the server is idle, as a client that reads
 * every reply. After the input the client half-closes; the session must then
 * end by itself. Committed messages are removed again so the spool stays small.
 * This reaches what the parser targets do not: line reading and overlong
 * lines, the pipelining rules, DATA/BDAT streaming into the spool, the commit,
 * error counting, RSET/EHLO resets.
 */
#include <errno.h>
#include <ftw.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "fuzz_util.h"
#include "mta/conf.h"
#include "mta/log.h"
#include "mta/smtpd.h"
#include "mta/spool.h"
#include "smtpd/smtpd_int.h"

static struct event_base *fuzz_base;
static struct conf *fuzz_conf;
static struct spool *fuzz_spool;
static struct smtpd *fuzz_srv;
static char fuzz_dir[200];
static int fuzz_removing; /* removals of committed messages in flight */

/* fuzz_removed - a committed message is gone again. */
static void fuzz_removed(void *arg, int err)
{
    (void)arg;
    (void)err;
    fuzz_removing--;
}

/* fuzz_notify - a message was committed: forget it again (nothing delivers here). */
static void fuzz_notify(void *arg, const char *id, struct spool_envelope *env,
                        struct evbuffer *content)
{
    (void)arg;
    spool_envelope_free(env);
    if (content) {
        size_t n = evbuffer_get_length(content);
        const unsigned char *p = n ? evbuffer_pullup(content, -1) : NULL;
        size_t i = 0;
        /* our Received: line carries the client's HELO: printable ASCII only (issue 12, 5) */
        FUZZ_CHECK(n > 10 && memcmp(p, "Received: ", 10) == 0);
        for (; i < n && p[i] != '\r'; i++)
            FUZZ_CHECK(p[i] >= 0x20 && p[i] < 0x7f);
        /* stored form: every line ends in CRLF (smtpd_data.h), whatever the client sent */
        for (i = 0; i < n; i++)
            if (p[i] == '\n')
                FUZZ_CHECK(i > 0 && p[i - 1] == '\r');
        FUZZ_CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
        evbuffer_free(content);
    }
    fuzz_removing++;
    spool_remove(fuzz_spool, id, 0, fuzz_removed, NULL);
}

/* fuzz_rm - nftw callback: remove one entry of the temporary data volume. */
static int fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* fuzz_cleanup - at exit: remove the temporary data volume. */
static void fuzz_cleanup(void)
{
    if (fuzz_dir[0])
        nftw(fuzz_dir, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * fuzz_sasl_setup - a Cyrus SASL configuration in the data volume's parent: PLAIN and LOGIN
 * against a sasldb holding user@mx.example / s3cret (made with saslpasswd2 when installed;
 * without it every check fails, which still drives the exchange). SETTING gets the
 * smtpd_sasl_config_dir override.
 */
static void fuzz_sasl_setup(char *setting, size_t len)
{
    char path[256], cmd[640];
    FILE *f;

    snprintf(path, sizeof(path), "%s/smtpd.conf", fuzz_dir);
    if (!(f = fopen(path, "w")))
        abort();
    fprintf(f,
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: %s/sasldb2\n"
            "mech_list: PLAIN LOGIN\n",
            fuzz_dir);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "echo s3cret | saslpasswd2 -c -p -f %s/sasldb2 -u mx.example user 2>/dev/null",
             fuzz_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_smtpd_session: no sasldb (saslpasswd2 missing?)\n");
    snprintf(setting, len, "smtpd_sasl_config_dir=%s", fuzz_dir);
}

/* fuzz_setup - the log (records dropped), the configuration, the spool and the server. */
static void fuzz_setup(void)
{
    struct log_options lo = {.hostname = "mx.example", .syslog_name = "mta"};
    char dv[256], port[32], sasl[256], *err = NULL;

    /* $TMPDIR (run-fuzz.sh and fuzz-long.sh point it at a scratch directory on tmpfs that they
     * remove: libFuzzer does not always run atexit handlers), else tmpfs when there is one:
     * every commit flushes, and nothing here needs to survive */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 150)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/fuzz_smtpd_session.XXXXXX", tmp);
    if (!mkdtemp(fuzz_dir) || log_init(&lo, &err) < 0 || !(fuzz_base = event_base_new()))
        abort();
    atexit(fuzz_cleanup);
    snprintf(dv, sizeof(dv), "data_volume=%s", fuzz_dir);
    fuzz_sasl_setup(sasl, sizeof(sasl));
    for (int i = 0; i < 50 && !fuzz_srv; i++) {
        char *ov[] = {dv,
                      "in_address=127.0.0.1",
                      port,
                      "hostname=mx.example",
                      "smtpd_error_sleep_time=0",
                      "smtpd_timeout=10s",
                      "message_size_limit=4096",
                      "line_length_limit=512",
                      "header_size_limit=1024",
                      "hopcount_limit=5",
                      "smtpd_recipient_limit=5",
                      "smtpd_client_connection_count_limit=0",
                      "smtpd_tls_auth_only=no",
                      "smtpd_sasl_auth_enable=yes",
                      sasl};
        snprintf(port, sizeof(port), "smtp_port=%d", 20000 + (int)((getpid() + i * 7919) % 40000));
        conf_free(fuzz_conf);
        if (!(fuzz_conf = conf_load(NULL, ov, (int)(sizeof(ov) / sizeof(ov[0])), &err))) {
            fprintf(stderr, "fuzz_smtpd_session: %s", err ? err : "conf_load failed\n");
            abort();
        }
        if (!fuzz_spool && !(fuzz_spool = spool_open(fuzz_base, fuzz_conf, &err))) {
            fprintf(stderr, "fuzz_smtpd_session: spool_open: %s\n", err ? err : "?");
            abort();
        }
        free(err);
        err = NULL;
        fuzz_srv = smtpd_new(fuzz_base, fuzz_conf, fuzz_spool, &err);
        free(err);
        err = NULL;
    }
    if (!fuzz_srv)
        abort();
    spool_set_notify(fuzz_spool, fuzz_notify, NULL);
}

/* fuzz_drain - read and drop what the server sent to the client side FD. */
static void fuzz_drain(int fd)
{
    static int verbose = -1;
    char buf[16384];
    ssize_t n;

    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL; /* show the replies (reproducing a finding) */
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        if (verbose)
            fwrite(buf, 1, (size_t)n, stderr);
}

/* fuzz_busy - 1 while the session S has work the loop must still do for the bytes sent. */
static int fuzz_busy(int fd0)
{
    struct smtpd_session *s = TAILQ_FIRST(&fuzz_srv->sessions);
    int unread = 0;

    if (!s)
        return !TAILQ_EMPTY(&fuzz_srv->grave) || fuzz_srv->commits > 0;
    if (s->state == SMTPD_STATE_COMMIT || s->state == SMTPD_STATE_AUTH_WAIT || s->paused ||
        s->wait_write)
        return 1;
    return ioctl(fd0, FIONREAD, &unread) == 0 && unread > 0;
}

/* fuzz_settle - run the loop until the server has done all it can with what was sent. */
static void fuzz_settle(int fd0, int fd1)
{
    time_t until = time(NULL) + 5;

    for (int idle = 0; idle < 3;) {
        event_base_loop(fuzz_base, EVLOOP_NONBLOCK);
        fuzz_drain(fd1);
        if (fuzz_busy(fd0)) {
            idle = 0;
            if (time(NULL) > until)
                break; /* a hang: the caller's end check reports it */
            event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            continue;
        }
        idle++;
    }
}

/* fuzz_send - write all of P[0..N) to FD, letting the server read as the socket fills. */
static void fuzz_send(int fd0, int fd1, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd1, p, n);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return; /* the server closed: the rest is not read */
        if (w > 0)
            p += w, n -= (size_t)w;
        else
            fuzz_settle(fd0, fd1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned f = fuzz_byte(&in);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int sv[2];
    time_t until;

    if (!fuzz_srv)
        fuzz_setup();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    sa.sin_addr.s_addr = htonl((f & 1) ? 0x7f000001 : 0xc0000201); /* trusted 127.0.0.1 */
    smtpd_session_accept(fuzz_srv, sv[0], (struct sockaddr *)&sa, sizeof(sa), 0);
    fuzz_settle(sv[0], sv[1]);
    if (f & 2) {
        fuzz_send(sv[0], sv[1], in.p, in.n);
    } else {
        const uint8_t *p = in.p, *end = in.p + in.n;
        while (p < end && !TAILQ_EMPTY(&fuzz_srv->sessions)) {
            const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
            fuzz_send(sv[0], sv[1], p, n);
            fuzz_settle(sv[0], sv[1]);
            p += n;
        }
    }
    fuzz_settle(sv[0], sv[1]);
    shutdown(sv[1], SHUT_WR);
    /* the client is gone: the session must end by itself, and soon */
    until = time(NULL) + 5;
    while ((!TAILQ_EMPTY(&fuzz_srv->sessions) || !TAILQ_EMPTY(&fuzz_srv->grave) ||
            fuzz_srv->commits > 0) &&
           time(NULL) <= until) {
        event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        fuzz_drain(sv[1]);
    }
    FUZZ_CHECK(TAILQ_EMPTY(&fuzz_srv->sessions) && TAILQ_EMPTY(&fuzz_srv->grave));
    close(sv[1]);
    /* every allocation of the input freed before it ends (the queue entry, the log records
     * freed by the writer thread): else libFuzzer runs its costly leak scan after each input */
    while (fuzz_removing > 0 && time(NULL) <= until + 5)
        event_base_loop(fuzz_base, EVLOOP_ONCE);
    log_flush();
    return 0;
}
