/*
 * smtp_load.c - a small stand-in for Postfix's smtp-source -d when Postfix is
 * not installed: S sessions (one thread each) send M messages of L bytes in
 * total to 127.0.0.1:PORT, several per connection, each MAIL/RCPT/DATA/body
 * waiting for its reply as smtp-source does without pipelining. Prints the
 * wall seconds, the mean, median and 90th percentile end-of-data latency (body
 * sent -> 250) in us, the messages sent and the failures.
 * Loopback only. Built by bench.py with `cc -O2 -pthread`.
 * Usage: smtp_load -s SESSIONS -m MESSAGES -l SIZE PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, size, total;
static int next_msg, failed;
static double lat_sum;
static long lat_n;
static double *lats; /* every latency, for the median and the 90th percentile */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *body;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* reply - read one (multi-line) reply; its code, or -1. */
static int reply(int fd, char *buf, size_t cap, size_t *have)
{
    for (;;) {
        char *nl;
        while ((nl = memchr(buf, '\n', *have))) {
            size_t n = (size_t)(nl - buf) + 1;
            int last = n >= 4 && buf[3] == ' ';
            int code = atoi(buf);
            memmove(buf, buf + n, *have - n);
            *have -= n;
            if (last)
                return code;
        }
        ssize_t r = read(fd, buf + *have, cap - *have);
        if (r <= 0)
            return -1;
        *have += (size_t)r;
    }
}

static int cmd(int fd, const char *s, size_t len, char *buf, size_t cap, size_t *have)
{
    if (write(fd, s, len) != (ssize_t)len)
        return -1;
    return reply(fd, buf, cap, have);
}

/* take - the next message number, or -1 when all are taken. */
static int take(void)
{
    pthread_mutex_lock(&mu);
    int n = next_msg < total ? next_msg++ : -1;
    pthread_mutex_unlock(&mu);
    return n;
}

static void *session(void *arg)
{
    (void)arg;
    char buf[8192];
    while (take() >= 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        size_t have = 0;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            reply(fd, buf, sizeof buf, &have) != 220 ||
            cmd(fd, "EHLO client.example\r\n", 21, buf, sizeof buf, &have) != 250) {
            close(fd);
            __sync_fetch_and_add(&failed, 1);
            continue;
        }
        int k = 0, more = 1;
        while (more) {
            static const char m[] = "MAIL FROM:<bench@example.com>\r\n";
            static const char r[] = "RCPT TO:<rcpt@example.net>\r\n";
            if (cmd(fd, m, sizeof m - 1, buf, sizeof buf, &have) != 250 ||
                cmd(fd, r, sizeof r - 1, buf, sizeof buf, &have) != 250 ||
                cmd(fd, "DATA\r\n", 6, buf, sizeof buf, &have) != 354) {
                __sync_fetch_and_add(&failed, 1);
                break;
            }
            double t0 = now();
            if (cmd(fd, body, strlen(body), buf, sizeof buf, &have) != 250) {
                __sync_fetch_and_add(&failed, 1);
                break;
            }
            double dt = now() - t0;
            pthread_mutex_lock(&mu);
            lat_sum += dt;
            lats[lat_n++] = dt;
            pthread_mutex_unlock(&mu);
            /* like smtp-source -d: up to 100 messages per connection */
            more = ++k < 100 && take() >= 0;
        }
        cmd(fd, "QUIT\r\n", 6, buf, sizeof buf, &have);
        close(fd);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int sessions = 1, opt;
    total = 1000;
    size = 4096;
    while ((opt = getopt(argc, argv, "s:m:l:")) != -1) {
        if (opt == 's')
            sessions = atoi(optarg);
        else if (opt == 'm')
            total = atoi(optarg);
        else if (opt == 'l')
            size = atoi(optarg);
    }
    if (optind >= argc || sessions < 1 || total < 1 || size < 0) {
        fprintf(stderr, "usage: smtp_load -s SESSIONS -m MESSAGES -l SIZE PORT\n");
        return 2;
    }
    port = atoi(argv[optind]);
    /* headers, then lines of 78 x's, to SIZE bytes, then the end of data */
    body = malloc((size_t)size + 256);
    int n = snprintf(body, 256,
                     "From: <bench@example.com>\r\nTo: <rcpt@example.net>\r\n"
                     "Subject: bench\r\n\r\n");
    while (n < size) {
        int k = size - n > 80 ? 78 : (size - n > 2 ? size - n - 2 : 0);
        memset(body + n, 'x', (size_t)k);
        n += k;
        memcpy(body + n, "\r\n", 2);
        n += 2;
    }
    strcpy(body + n, ".\r\n");
    pthread_t *th = calloc((size_t)sessions, sizeof *th);
    lats = calloc((size_t)total, sizeof *lats);
    double t0 = now();
    for (int i = 0; i < sessions; i++)
        pthread_create(&th[i], NULL, session, NULL);
    for (int i = 0; i < sessions; i++)
        pthread_join(th[i], NULL);
    double el = now() - t0;
    qsort(lats, (size_t)lat_n, sizeof *lats, cmp_double);
    printf("%.6f %.1f %ld %d %.1f %.1f\n", el, lat_n ? lat_sum / (double)lat_n * 1e6 : 0.0, lat_n,
           failed, lat_n ? lats[lat_n / 2] * 1e6 : 0.0, lat_n ? lats[lat_n * 9 / 10] * 1e6 : 0.0);
    return failed ? 1 : 0;
}
