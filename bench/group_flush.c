/*
 * group_flush.c - what the disk alone charges for making a group of commits durable, with the
 * commit's own write (4,691 bytes: envelope, a 4 KB message, the commit record) over pre-written
 * 8 KiB files as over mtad's slots. Per group size, the median and p90 time of a group and the
 * machine's CPU per message (/proc/stat), for these ways of flushing it:
 *
 *   last-apart  sync_file_range starts all but the last file, waits for them, fdatasync of the
 *               last (mtad before 8503ad3: the last file's write starts after the others end)
 *   together    sync_file_range starts every file, waits for all but the last, fdatasync of
 *               the last (mtad now, spool_intake.c)
 *   segment     the group appended to one pre-written file, one fdatasync (an append-only
 *               segment log's flush)
 *
 * and, with -t, T threads each writing and fdatasync-ing single commits at once (what several
 * committers in flight would get from the device).
 *
 * With -H, one commit at a time made two ways: by the thread that times it (direct), and as
 * mtad makes it (handoff): that thread, like mtad's loop, hands the commit to a committer
 * thread (mutex and condition variable), waits in epoll_wait, and is woken by the committer's
 * eventfd after the fdatasync. The difference is what keeping the flush off the event loop
 * costs on this machine, with no mtad in the way: on a virtual machine, mostly waking vCPUs
 * that went idle during the flush. On tmpfs it is the hand-off alone. Each commit goes into a
 * different pre-written file, as into mtad's slots. Both ways are then timed again with a slot
 * maker beside them (new files of 8 KiB of zeros, 256 a batch, one syncfs, as spool_pool.c
 * makes them when every message stays queued): what making a fresh file per queued message
 * costs the commits that share the disk with it. Its files (gf.s*) stay in DIR too.
 *
 * Usage: cc -O2 -pthread -o group_flush bench/group_flush.c
 *        ./group_flush [-g 1,2,3,5,10,20] [-r 300] [-t 1,2,4,10] [-H] DIR
 * DIR must be on the disk to measure; the files stay there (gf.*), so that a second run makes
 * no new inodes: remove DIR yourself, and wait six minutes after that before a disk benchmark
 * (bench/README.md, "recently deleted" inodes). Not for: CI (figures, not tests).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#define COMMIT_LEN 4691
#define SLOT_LEN 8192
#define MAX_LIST 16
#define MAX_GROUP 64
#define MAX_ROUNDS 100000
#define MAX_THREADS 64
#define PER_THREAD 300

static char commit_buf[COMMIT_LEN];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* busy_ticks - the machine's non-idle CPU ticks so far (user nice system irq softirq steal). */
static unsigned long long busy_ticks(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) != 8)
        v[0] = v[1] = v[2] = v[5] = v[6] = v[7] = 0;
    fclose(f);
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "group_flush: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* open_slot - DIR/NAME, made and filled with SIZE bytes of zeros the first time. */
static int open_slot(int dfd, const char *name, long long size)
{
    static char zeros[SLOT_LEN];
    int fd = openat(dfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        die(name);
    for (long long off = 0; off < size; off += SLOT_LEN)
        if (pwrite(fd, zeros, SLOT_LEN, off) != SLOT_LEN)
            die("pwrite");
    return fd;
}

/* parse_list - "1,2,10" into OUT (at most MAX_LIST values, each in 1..MAX); the count. */
static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    char *end;
    while (*s && n < MAX_LIST) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > max) {
            fprintf(stderr, "group_flush: bad list value in \"%s\" (1 to %d)\n", s, max);
            exit(2);
        }
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* one_mode - ROUNDS groups of G commits flushed as MODE; prints a line. */
static void one_mode(int dfd, const char *mode, int g, int rounds)
{
    int *fds = malloc(sizeof *fds * (size_t)g * (size_t)rounds);
    double *t = malloc(sizeof *t * (size_t)rounds);
    if (!fds || !t)
        die("malloc");
    int segment = strcmp(mode, "segment") == 0;
    int seg = -1;
    if (segment) {
        seg = open_slot(dfd, "gf.segment", (long long)g * rounds * COMMIT_LEN + SLOT_LEN);
    } else {
        for (int i = 0; i < g * rounds; i++) {
            char name[32];
            snprintf(name, sizeof name, "gf.%d", i);
            fds[i] = open_slot(dfd, name, SLOT_LEN);
        }
    }
    if (syncfs(dfd) < 0)
        die("syncfs");
    sleep(1);
    unsigned long long b0 = busy_ticks();
    off_t off = 0;
    for (int r = 0; r < rounds; r++) {
        int *f = fds + (size_t)r * (size_t)g;
        double a = now();
        if (segment) {
            for (int k = 0; k < g; k++, off += COMMIT_LEN)
                if (pwrite(seg, commit_buf, COMMIT_LEN, off) != COMMIT_LEN)
                    die("pwrite");
            if (fdatasync(seg) < 0)
                die("fdatasync");
        } else {
            int together = strcmp(mode, "together") == 0;
            for (int k = 0; k < g; k++)
                if (pwrite(f[k], commit_buf, COMMIT_LEN, 0) != COMMIT_LEN)
                    die("pwrite");
            for (int k = 0; g > 1 && k < (together ? g : g - 1); k++)
                if (sync_file_range(f[k], 0, 0, SYNC_FILE_RANGE_WRITE) < 0)
                    die("sync_file_range");
            for (int k = 0; k < g - 1; k++)
                if (sync_file_range(f[k], 0, 0,
                                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                        SYNC_FILE_RANGE_WAIT_AFTER) < 0)
                    die("sync_file_range");
            if (fdatasync(f[g - 1]) < 0)
                die("fdatasync");
        }
        t[r] = now() - a;
    }
    unsigned long long b1 = busy_ticks();
    long hz = sysconf(_SC_CLK_TCK);
    qsort(t, (size_t)rounds, sizeof *t, cmp_double);
    printf("| %s | %d | %.0f | %.0f | %.1f | %.1f |\n", mode, g, t[rounds / 2] * 1e6,
           t[rounds * 9 / 10] * 1e6, t[rounds / 2] * 1e6 / g,
           (double)(b1 - b0) * 1e6 / (double)(hz > 0 ? hz : 100) / ((double)rounds * g));
    if (segment)
        close(seg);
    else
        for (int i = 0; i < g * rounds; i++)
            close(fds[i]);
    free(fds);
    free(t);
}

struct par_arg {
    int dfd, id;
};

static void *par_main(void *p)
{
    struct par_arg *a = p;
    char name[32];
    snprintf(name, sizeof name, "gf.t%d", a->id);
    int fd = open_slot(a->dfd, name, SLOT_LEN);
    for (int i = 0; i < PER_THREAD; i++)
        if (pwrite(fd, commit_buf, COMMIT_LEN, 0) != COMMIT_LEN || fdatasync(fd) < 0)
            die("commit");
    close(fd);
    return NULL;
}

/* one_parallel - T threads committing single messages at once; prints a line. */
static void one_parallel(int dfd, int threads)
{
    pthread_t th[MAX_THREADS];
    struct par_arg args[MAX_THREADS];
    double a = now();
    for (int i = 0; i < threads; i++) {
        args[i] = (struct par_arg){dfd, i};
        if (pthread_create(&th[i], NULL, par_main, &args[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double d = now() - a;
    printf("| %d | %.0f | %.0f |\n", threads, threads * PER_THREAD / d, d / PER_THREAD * 1e6);
}

/* the hand-off of -H: one request at a time, as mtad's loop gives its committer */
struct handoff {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd, efd, pending, stop;
};

static void *handoff_committer(void *p)
{
    struct handoff *h = p;
    uint64_t one = 1;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (!h->pending && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        int stop = h->stop;
        h->pending = 0;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            return NULL;
        if (pwrite(h->fd, commit_buf, COMMIT_LEN, 0) != COMMIT_LEN || fdatasync(h->fd) < 0)
            die("commit");
        if (write(h->efd, &one, sizeof one) != sizeof one)
            die("eventfd write");
    }
}

/* the slot maker of -S: new files of SLOT_LEN zeros, SLOT_BATCH at a time, then one syncfs, as
 * spool_pool.c makes them, at about the rate the commits use them */
#define SLOT_BATCH 256
static volatile int slots_stop;
static int slots_dfd;

static void *slot_maker(void *p)
{
    (void)p;
    static char zeros[SLOT_LEN];
    for (int b = 0; !slots_stop; b++) {
        for (int i = 0; i < SLOT_BATCH && !slots_stop; i++) {
            char name[48];
            snprintf(name, sizeof name, "gf.s%d.%d.%d", (int)getpid(), b, i);
            int fd = openat(slots_dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0 || write(fd, zeros, SLOT_LEN) != SLOT_LEN)
                die("slot");
            close(fd);
        }
        if (syncfs(slots_dfd) < 0)
            die("syncfs");
        usleep(100000); /* a batch per ~256 commits of ~400 us */
    }
    return NULL;
}

/* one_handoff - ROUNDS single commits made directly, then ROUNDS handed off; prints two lines. */
static void one_handoff(int dfd, int rounds, int slots)
{
    pthread_t sm;
    if (slots) {
        slots_dfd = dfd;
        slots_stop = 0;
        if (pthread_create(&sm, NULL, slot_maker, NULL) != 0)
            die("pthread_create");
    }
    double *t = malloc(sizeof *t * (size_t)rounds);
    int *fds = malloc(sizeof *fds * (size_t)rounds);
    struct handoff h = {.fd = -1};
    pthread_t th;
    if (!t || !fds)
        die("malloc");
    for (int r = 0; r < rounds; r++) { /* a different pre-written file each time, as mtad's slots */
        char name[32];
        snprintf(name, sizeof name, "gf.h%d", r);
        fds[r] = open_slot(dfd, name, SLOT_LEN);
    }
    if (syncfs(dfd) < 0)
        die("syncfs");
    for (int mode = 0; mode < 2; mode++) {
        int ep = -1;
        if (mode == 1) {
            pthread_mutex_init(&h.mu, NULL);
            pthread_cond_init(&h.cv, NULL);
            h.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            ep = epoll_create1(EPOLL_CLOEXEC);
            struct epoll_event ev = {.events = EPOLLIN};
            if (h.efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, h.efd, &ev) < 0 ||
                pthread_create(&th, NULL, handoff_committer, &h) != 0)
                die("handoff setup");
        }
        usleep(100000);
        for (int r = 0; r < rounds; r++) {
            double a = now();
            h.fd = fds[r];
            if (mode == 0) {
                if (pwrite(h.fd, commit_buf, COMMIT_LEN, 0) != COMMIT_LEN || fdatasync(h.fd) < 0)
                    die("commit");
            } else {
                struct epoll_event ev;
                uint64_t v;
                pthread_mutex_lock(&h.mu);
                h.pending = 1;
                pthread_cond_signal(&h.cv);
                pthread_mutex_unlock(&h.mu);
                while (epoll_wait(ep, &ev, 1, -1) != 1)
                    if (errno != EINTR)
                        die("epoll_wait");
                if (read(h.efd, &v, sizeof v) != sizeof v)
                    die("eventfd read");
            }
            t[r] = now() - a;
            usleep(200); /* the rest of a message's cycle: the next one is not already waiting */
        }
        qsort(t, (size_t)rounds, sizeof *t, cmp_double);
        double sum = 0;
        for (int r = 0; r < rounds; r++)
            sum += t[r];
        printf("| %s%s | %.0f | %.0f | %.0f |\n", mode ? "handoff" : "direct",
               slots ? ", slot maker beside" : "", t[rounds / 2] * 1e6, t[rounds * 9 / 10] * 1e6,
               sum / rounds * 1e6);
        if (mode == 1) {
            pthread_mutex_lock(&h.mu);
            h.stop = 1;
            pthread_cond_signal(&h.cv);
            pthread_mutex_unlock(&h.mu);
            pthread_join(th, NULL);
            close(ep);
            close(h.efd);
        }
    }
    if (slots) {
        slots_stop = 1;
        pthread_join(sm, NULL);
    }
    for (int r = 0; r < rounds; r++)
        close(fds[r]);
    free(fds);
    free(t);
}

int main(int argc, char **argv)
{
    int groups[MAX_LIST] = {1, 2, 3, 5, 10, 20}, ng = 6, threads[MAX_LIST] = {0}, nt = 0;
    int rounds = 300, c, handoff = 0, gset = 0;
    while ((c = getopt(argc, argv, "g:r:t:H")) != -1) {
        if (c == 'g') {
            ng = parse_list(optarg, groups, MAX_GROUP);
            gset = 1;
        } else if (c == 'r')
            rounds = atoi(optarg);
        else if (c == 't')
            nt = parse_list(optarg, threads, MAX_THREADS);
        else if (c == 'H')
            handoff = 1;
        else
            return 2;
    }
    if (optind != argc - 1 || rounds < 10 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: group_flush [-g 1,2,10] [-r 10..%d] [-t 1,2,4] [-H] DIR\n",
                MAX_ROUNDS);
        return 2;
    }
    int dfd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        die(argv[optind]);
    memset(commit_buf, 'm', sizeof commit_buf);
    if (handoff && !gset)
        ng = 0; /* -H alone: only the hand-off table */
    if (ng > 0)
        printf("| flush | group | median us | p90 us | median us/msg | machine CPU us/msg |\n"
               "|---|---:|---:|---:|---:|---:|\n");
    static const char *const modes[] = {"last-apart", "together", "segment"};
    for (int i = 0; i < ng; i++)
        for (int m = 0; m < 3; m++)
            one_mode(dfd, modes[m], groups[i], rounds);
    if (nt > 0)
        printf("\n| threads | commits/s | mean latency us |\n|---:|---:|---:|\n");
    for (int i = 0; i < nt; i++)
        one_parallel(dfd, threads[i]);
    if (handoff) {
        printf("\n| one commit | median us | p90 us | mean us |\n|---|---:|---:|---:|\n");
        one_handoff(dfd, rounds, 0);
        one_handoff(dfd, rounds, 1);
    }
    close(dfd);
    return 0;
}
