/*
 * test_log.c - unit tests of the mail log writer (src/core/log.c): record
 * format, timezone, maillog_file content and order from several threads,
 * log-line forging (CR/LF), truncation, sink retry, queue overflow, reopen.
 * Not here: what each module writes (their own tests).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mta/counters.h"
#include "mta/log.h"

static char tmpdir[256];

/* slurp - whole file as a NUL-terminated string ("" when missing). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    size_t n;
    while ((n = fread(b + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            b = realloc(b, cap);
        }
    }
    b[len] = 0;
    fclose(f);
    return b;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += (*s == '\n');
    return n;
}

static size_t count_substr(const char *s, const char *needle)
{
    size_t n = 0;
    for (; (s = strstr(s, needle)) != NULL; s += strlen(needle))
        n++;
    return n;
}

/* path_in - tmpdir/name in a static buffer per call site. */
static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmpdir, name);
}

/* start - log_init with a maillog_file in tmpdir, stderr off. */
static void start(const char *file, const char *tz, size_t max_records, unsigned retry_ms)
{
    struct log_options o = {
        .hostname = "relay1",
        .syslog_name = "mta",
        .maillog_file = file,
        .timezone = tz,
        .to_stderr = 0,
        .max_records = max_records,
        .sink_retry_ms = retry_ms,
    };
    char *err = NULL;
    int rc = log_init(&o, &err);
    if (rc != 0)
        fail_msg("log_init: %s", err ? err : "?");
    assert_null(err);
}

/* stop_log - per-test teardown: a failed test must not leave the writer running. */
static int stop_log(void **state)
{
    log_shutdown();
    return 0;
}

static int setup_dir(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_log.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_dir(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A record has every Postfix field: time, host, syslog_name/service[pid], text. */
static void test_record_format(void **state)
{
    char file[300], re_src[512], t0[32], t1[32];
    path_in(file, sizeof(file), "fmt/maillog");
    start(file, "UTC", 0, 0);
    long before = (long)time(NULL);
    log_mail("smtpd", "3F2A81C0B1D2E4F6: client=unknown[127.0.0.1]");
    log_warning("smtpd", "hostname %s does not resolve", "x.example");
    log_error("qmgr", "cannot %s", "read");
    long after = (long)time(NULL);
    log_shutdown();
    log_format_time(before, t0, sizeof(t0));
    log_format_time(after, t1, sizeof(t1));

    char *s = slurp(file);
    assert_int_equal(count_lines(s), 3);
    snprintf(re_src, sizeof(re_src),
             "^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3][0-9] "
             "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] relay1 mta/smtpd\\[%ld\\]: "
             "3F2A81C0B1D2E4F6: client=unknown\\[127\\.0\\.0\\.1\\]\n"
             "[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} relay1 mta/smtpd\\[%ld\\]: "
             "warning: hostname x\\.example does not resolve\n"
             "[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} relay1 mta/qmgr\\[%ld\\]: error: cannot read\n$",
             (long)getpid(), (long)getpid(), (long)getpid());
    regex_t re;
    assert_int_equal(regcomp(&re, re_src, REG_EXTENDED), 0);
    if (regexec(&re, s, 0, NULL, 0) != 0)
        fail_msg("record format mismatch:\n%s", s);
    regfree(&re);
    /* the time field is the time of logging */
    assert_true(strncmp(s, t0, 15) == 0 || strncmp(s, t1, 15) == 0);
    free(s);

    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

/* The configured zone shifts the time; the day is space-padded like syslog. */
static void test_timezone(void **state)
{
    char b[32];
    start("", "UTC", 0, 0);
    log_format_time(1700000000L, b, sizeof(b));
    assert_string_equal(b, "Nov 14 22:13:20");
    log_format_time(1699000000L, b, sizeof(b));
    assert_string_equal(b, "Nov  3 08:26:40");
    log_shutdown();

    start("", "Europe/Berlin", 0, 0);
    log_format_time(1700000000L, b, sizeof(b));
    assert_string_equal(b, "Nov 14 23:13:20"); /* CET */
    log_format_time(1690000000L, b, sizeof(b));
    assert_string_equal(b, "Jul 22 06:26:40"); /* CEST */
    log_shutdown();

    /* empty: unchanged (still Berlin) */
    start("", "", 0, 0);
    log_format_time(1700000000L, b, sizeof(b));
    assert_string_equal(b, "Nov 14 23:13:20");
    log_shutdown();

    /* a short buffer is cut, never overrun */
    char small[6];
    log_format_time(1700000000L, small, sizeof(small));
    assert_string_equal(small, "Nov 1");
}

/* An unknown zone (or a path trick) is an error at init, and nothing starts. */
static void test_timezone_unknown(void **state)
{
    const char *bad[] = {"Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime",
                         "Europe/Berlin;rm",  "Europe",           "zone.tab"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct log_options o = {.timezone = bad[i]};
        char *err = NULL;
        assert_int_equal(log_init(&o, &err), -1);
        assert_non_null(err);
        assert_non_null(strstr(err, "timezone"));
        free(err);
    }
    char b[32];
    log_format_time(1700000000L, b, sizeof(b));
    assert_string_equal(b, "Nov 14 23:13:20"); /* TZ untouched by the failures */
    log_shutdown();                            /* not running: harmless */
}

/* An unopenable maillog_file is an error at init; a second init is refused. */
static void test_init_errors(void **state)
{
    struct log_options o = {.maillog_file = "/proc/no/such/dir/maillog"};
    char *err = NULL;
    assert_int_equal(log_init(&o, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "maillog_file"));
    free(err);

    start("", "", 0, 0);
    struct log_options o2 = {0};
    err = NULL;
    assert_int_equal(log_init(&o2, &err), -1);
    assert_non_null(err);
    free(err);
    log_shutdown();
    log_shutdown(); /* twice is safe */
}

#define NTHREADS 4
#define PER_THREAD 3000

static void *thread_logger(void *arg)
{
    long t = (long)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++)
        log_mail("smtpd", "t%ld n%d", t, i);
    return NULL;
}

struct capture {
    pthread_mutex_t mu;
    char *buf;
    size_t len, cap;
    int calls;
    int partial;
    atomic_int fail; /* > 0: refuse that many more calls; < 0: refuse until set to 0 */
    sem_t entered, release;
    int block_first;
};

static int capture_write(void *ctx, const char *buf, size_t len)
{
    struct capture *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->calls++;
    int first = c->calls == 1;
    pthread_mutex_unlock(&c->mu);
    if (first && c->block_first) {
        sem_post(&c->entered);
        sem_wait(&c->release);
    }
    int f = atomic_load(&c->fail);
    if (f < 0)
        return -1;
    if (f > 0) {
        atomic_fetch_sub(&c->fail, 1);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    if (len == 0 || buf[len - 1] != '\n')
        c->partial++; /* checked by the test thread: whole records only */
    if (c->len + len + 1 > c->cap) {
        c->cap = (c->len + len + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    c->buf[c->len] = 0;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void capture_init(struct capture *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    sem_init(&c->entered, 0, 0);
    sem_init(&c->release, 0, 0);
}

static void capture_free(struct capture *c)
{
    assert_int_equal(c->partial, 0);
    free(c->buf);
    pthread_mutex_destroy(&c->mu);
    sem_destroy(&c->entered);
    sem_destroy(&c->release);
}

/* Records from several threads all land in the file, each thread's in its order. */
static void test_threads_order(void **state)
{
    char file[300];
    static struct capture cap; /* outlives a failed test: the writer may still call it */
    capture_init(&cap);
    path_in(file, sizeof(file), "threads/maillog");
    start(file, "", 0, 0);
    struct log_sink sink = {"capture", capture_write, &cap};
    log_add_sink(&sink);
    unsigned long dropped0 = log_dropped();

    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, thread_logger, (void *)(intptr_t)t), 0);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    log_shutdown();
    assert_int_equal(log_dropped(), dropped0);
    assert_int_equal(counter_get(CNT_LOG_BACKLOG), 0);

    char *s = slurp(file);
    assert_int_equal(count_lines(s), NTHREADS * PER_THREAD);
    int next[NTHREADS] = {0};
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *p = strstr(line, "]: t");
        assert_non_null(p);
        long t;
        int n;
        assert_int_equal(sscanf(p, "]: t%ld n%d", &t, &n), 2);
        assert_true(t >= 0 && t < NTHREADS);
        assert_int_equal(n, next[t]);
        next[t]++;
    }
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(next[t], PER_THREAD);
    free(s);

    /* the sink saw exactly what the file holds */
    s = slurp(file);
    assert_non_null(cap.buf);
    assert_string_equal(cap.buf, s);
    free(s);
    capture_free(&cap);
}

/* CR/LF from the network cannot start a forged log line. */
static void test_crlf_stripped(void **state)
{
    char file[300];
    path_in(file, sizeof(file), "crlf");
    start(file, "", 0, 0);
    log_mail("smtpd", "NOQUEUE: reject: RCPT from x: 550 <a@b\r\nNov 28 01:56:33 relay1 "
                      "mta/smtpd[1]: forged>\x1b[2J end");
    log_shutdown();
    char *s = slurp(file);
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "<a@b  Nov 28 01:56:33 relay1 mta/smtpd[1]: forged>?[2J end\n"));
    free(s);
}

/* A long record is cut at LOG_RECORD_MAX bytes, still one whole line. */
static void test_truncation(void **state)
{
    char file[300];
    path_in(file, sizeof(file), "long");
    start(file, "", 0, 0);
    char *big = malloc(10001);
    memset(big, 'x', 10000);
    big[10000] = 0;
    log_mail("smtpd", "%s", big);
    /* multi-byte UTF-8 is never cut inside a character */
    char *u = malloc(3 * 3000 + 1);
    for (int i = 0; i < 3000; i++)
        memcpy(u + 3 * i, "\xe2\x82\xac", 3); /* EURO SIGN */
    u[9000] = 0;
    log_mail("smtpd", "%s", u);
    log_mail("smtpd", "short");
    log_shutdown();

    char *s = slurp(file);
    assert_int_equal(count_lines(s), 3);
    char *nl = strchr(s, '\n');
    assert_int_equal(nl - s + 1, LOG_RECORD_MAX);
    assert_memory_equal(nl - 5, "xxxxx", 5);
    char *l2 = nl + 1;
    char *nl2 = strchr(l2, '\n');
    assert_true(nl2 - l2 + 1 <= LOG_RECORD_MAX);
    assert_true(nl2 - l2 + 1 > LOG_RECORD_MAX - 3);
    assert_memory_equal(nl2 - 3, "\xe2\x82\xac", 3);
    assert_non_null(strstr(nl2 + 1, "]: short\n"));
    free(s);
    free(big);
    free(u);
}

/* A sink that refuses N times gets every record once, in order, later. */
static void test_sink_retry(void **state)
{
    char file[300];
    static struct capture cap; /* outlives a failed test: the writer may still call it */
    capture_init(&cap);
    atomic_store(&cap.fail, -1); /* down until we say so */
    path_in(file, sizeof(file), "sink");
    start(file, "", 0, 20);
    struct log_sink sink = {"flaky", capture_write, &cap};
    log_add_sink(&sink);

    for (int i = 0; i < 50; i++)
        log_mail("smtpd", "rec %d", i);
    log_flush();
    /* the file does not wait for the refusing sink */
    char *s = slurp(file);
    assert_int_equal(count_substr(s, "]: rec "), 50);
    free(s);
    assert_null(cap.buf);

    usleep(100 * 1000);         /* a few refused retries */
    atomic_store(&cap.fail, 3); /* three more refusals, then it works */
    for (int i = 50; i < 100; i++) {
        log_mail("smtpd", "rec %d", i);
        if (i % 10 == 0)
            usleep(5 * 1000);
    }
    /* the retry timer delivers without new records or shutdown */
    for (int w = 0; w < 200; w++) {
        pthread_mutex_lock(&cap.mu);
        size_t got = cap.buf ? count_substr(cap.buf, "]: rec ") : 0;
        pthread_mutex_unlock(&cap.mu);
        if (got == 100)
            break;
        usleep(10 * 1000);
    }
    pthread_mutex_lock(&cap.mu);
    size_t got = cap.buf ? count_substr(cap.buf, "]: rec ") : 0;
    int calls = cap.calls;
    pthread_mutex_unlock(&cap.mu); /* never assert with it held: the writer needs it */
    assert_int_equal(got, 100);
    assert_true(calls > 4);
    log_shutdown();

    /* every record once, in order, the outage itself in the log */
    s = slurp(file);
    assert_string_equal(cap.buf, s);
    const char *p = s;
    for (int i = 0; i < 100; i++) {
        char want[32];
        snprintf(want, sizeof(want), "]: rec %d\n", i);
        p = strstr(p, want);
        if (!p)
            fail_msg("rec %d missing or out of order", i);
    }
    assert_int_equal(count_substr(s, "]: rec "), 100);
    assert_int_equal(count_substr(s, "mta/master["), 2);
    assert_non_null(
        strstr(s, "]: warning: log sink flaky refuses records; keeping them for a retry\n"));
    assert_non_null(strstr(s, "]: log sink flaky accepts records again\n"));
    free(s);
    capture_free(&cap);
}

/* A full queue drops (and counts) new records; the log says how many. */
static void test_overflow(void **state)
{
    char file[300];
    static struct capture cap; /* outlives a failed test: the writer may still call it */
    capture_init(&cap);
    cap.block_first = 1;
    path_in(file, sizeof(file), "overflow");
    start(file, "", 4, 0);
    struct log_sink sink = {"slow", capture_write, &cap};
    log_add_sink(&sink);
    unsigned long dropped0 = log_dropped();
    long long cdropped0 = counter_get(CNT_LOG_DROPPED);

    log_mail("smtpd", "first");
    sem_wait(&cap.entered); /* the writer is now stuck in the sink */
    for (int i = 0; i < 10; i++)
        log_mail("smtpd", "burst %d", i);
    unsigned long dropped = log_dropped() - dropped0;
    long long cdropped = counter_get(CNT_LOG_DROPPED) - cdropped0;
    long long backlog = counter_get(CNT_LOG_BACKLOG);
    sem_post(&cap.release); /* before any assert: a failure must not leave the writer stuck */
    assert_int_equal(dropped, 6);
    assert_int_equal(cdropped, 6);
    assert_int_equal(backlog, 4);
    log_shutdown();
    assert_int_equal(counter_get(CNT_LOG_BACKLOG), 0);

    char *s = slurp(file);
    assert_int_equal(count_lines(s), 6);
    const char *want[] = {"]: first\n",   "]: burst 0\n",
                          "]: burst 1\n", "]: burst 2\n",
                          "]: burst 3\n", "]: warning: mail log queue full: 6 record(s) dropped\n"};
    const char *p = s;
    for (size_t i = 0; i < 6; i++) {
        const char *q = strstr(p, want[i]);
        if (!q)
            fail_msg("missing or out of order: %s in\n%s", want[i], s);
        p = q + strlen(want[i]);
    }
    assert_null(strstr(s, "burst 4"));
    free(s);
    capture_free(&cap);
}

/* log_reopen (logrotate) moves writing to a fresh file at the same path. */
static void test_reopen(void **state)
{
    char file[300], rotated[320];
    path_in(file, sizeof(file), "rot/maillog");
    snprintf(rotated, sizeof(rotated), "%s.1", file);
    /* an existing file is appended to, never overwritten */
    char dir[300];
    path_in(dir, sizeof(dir), "rot");
    assert_int_equal(mkdir(dir, 0700), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("previous line\n", f);
    fclose(f);
    start(file, "", 0, 0);
    log_mail("smtpd", "before");
    log_flush();
    assert_int_equal(rename(file, rotated), 0);
    log_reopen();
    log_mail("smtpd", "after");
    log_shutdown();
    char *a = slurp(rotated), *b = slurp(file);
    assert_int_equal(count_lines(a), 2);
    assert_true(strncmp(a, "previous line\n", 14) == 0);
    assert_non_null(strstr(a, "]: before\n"));
    assert_int_equal(count_lines(b), 1);
    assert_non_null(strstr(b, "]: after\n"));
    free(a);
    free(b);
}

/* Without a writer (before log_init, after log_shutdown) records go to stderr. */
static void test_stderr_without_writer(void **state)
{
    char file[300];
    path_in(file, sizeof(file), "stderr");
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    log_mail("smtpd", "early %d", 1);
    start("", "", 0, 0);
    log_shutdown();
    log_warning("master", "late");
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *s = slurp(file);
    char want[64];
    snprintf(want, sizeof(want), "/smtpd[%ld]: early 1\n", (long)getpid());
    assert_non_null(strstr(s, want));
    assert_non_null(strstr(s, " relay1 mta/master["));
    assert_non_null(strstr(s, "]: warning: late\n"));
    free(s);
}

/* The writer wakes by itself: a record reaches the file without flush or shutdown. */
static void test_written_promptly(void **state)
{
    char file[300];
    path_in(file, sizeof(file), "prompt");
    start(file, "", 0, 0);
    usleep(50 * 1000); /* let the writer go idle, so only the record can wake it */
    log_mail("smtpd", "soon");
    char *s = NULL;
    for (int w = 0; w < 200; w++) {
        free(s);
        s = slurp(file);
        if (strstr(s, "]: soon\n"))
            break;
        usleep(10 * 1000);
    }
    assert_non_null(strstr(s, "]: soon\n"));
    free(s);
    log_shutdown();
}

/* log_fatal writes its record (flushed) and aborts. */
static void test_fatal(void **state)
{
    char file[300];
    path_in(file, sizeof(file), "fatal");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* no cmocka asserts in the child: a failure must not run the other tests here */
        struct log_options o = {.hostname = "relay1", .maillog_file = file};
        char *err = NULL;
        if (log_init(&o, &err) != 0)
            _exit(3);
        log_mail("smtpd", "before fatal");
        log_fatal("qmgr", "broken invariant %d", 7);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    char *s = slurp(file);
    assert_non_null(strstr(s, "]: before fatal\n"));
    assert_non_null(strstr(s, "/qmgr["));
    assert_non_null(strstr(s, "]: fatal: broken invariant 7\n"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stderr_without_writer, stop_log),
        cmocka_unit_test_teardown(test_record_format, stop_log),
        cmocka_unit_test_teardown(test_timezone, stop_log),
        cmocka_unit_test_teardown(test_timezone_unknown, stop_log),
        cmocka_unit_test_teardown(test_init_errors, stop_log),
        cmocka_unit_test_teardown(test_threads_order, stop_log),
        cmocka_unit_test_teardown(test_crlf_stripped, stop_log),
        cmocka_unit_test_teardown(test_truncation, stop_log),
        cmocka_unit_test_teardown(test_sink_retry, stop_log),
        cmocka_unit_test_teardown(test_overflow, stop_log),
        cmocka_unit_test_teardown(test_reopen, stop_log),
        cmocka_unit_test_teardown(test_written_promptly, stop_log),
        cmocka_unit_test_teardown(test_fatal, stop_log),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
