/*
 * test_log_smb.c - the log terminal sink against a real, private smbd on
 * loopback (started through tests/integration/smbserver.py): records reach the
 * file on the share in order, directories are created, an unreachable share
 * is the exact start-up error, an outage loses and doubles nothing, a stop
 * while the share is away keeps the records for the next start, rotation
 * keeps every record. Also the URL building, without a server.
 * The tests that need smbd are skipped when smbd or smbclient is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log_smb_int.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/log_smb.h"

static char tmpdir[256];
static char srvdir[300];
static char spilldir[300];
static int srvport;
static char url[64];

/* now_s - monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* have - is PROG on PATH (or in /usr/sbin)? */
static int have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1 || test -x /usr/sbin/%s", prog, prog);
    return system(cmd) == 0;
}

/* smbserver - run smbserver.py start|stop for our run directory. */
static int smbserver(const char *what)
{
    char cmd[1024];
    const char *src = getenv("MTA_SRCDIR");
    FILE *p;
    int port = 0, pid = 0;

    if (src == NULL)
        src = ".";
    if (strcmp(what, "stop") == 0) {
        snprintf(cmd, sizeof(cmd), "python3 %s/tests/integration/smbserver.py stop %s", src,
                 srvdir);
        return system(cmd);
    }
    snprintf(cmd, sizeof(cmd), "python3 %s/tests/integration/smbserver.py start %s %d%s", src,
             srvdir, srvport, strcmp(what, "start-ro") == 0 ? " ro" : "");
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (fscanf(p, "%d %d", &port, &pid) != 2)
        port = 0;
    pclose(p);
    if (port <= 0)
        return -1;
    srvport = port;
    snprintf(url, sizeof(url), "smb://127.0.0.1:%d/share", port);
    return 0;
}

/* slurp - a file's contents (NUL-terminated, malloc'd) or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    buf[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/*
 * check_records - the "rec=N" records in TEXT are exactly FIRST..LAST-1, in
 * order, each once. Returns the number seen (or -1 on a gap/double).
 */
static int check_records(const char *text, int first, int last)
{
    int expect = first;
    const char *p = text;

    while ((p = strstr(p, "rec=")) != NULL) {
        int v = atoi(p + 4);
        if (v != expect) {
            fprintf(stderr, "record %d where %d was expected\n", v, expect);
            return -1;
        }
        expect++;
        p += 4;
    }
    if (expect != last) {
        fprintf(stderr, "records end at %d, expected %d\n", expect, last);
        return -1;
    }
    return expect - first;
}

/* wait_written - until every record reached the share (log writer and sink), at most SECS. */
static int wait_written(double secs)
{
    double end = now_s() + secs;

    log_flush();
    while (now_s() < end) {
        if (log_smb_waiting() == 0 && counter_get(CNT_LOG_BACKLOG) == 0)
            return 0;
        usleep(50000);
    }
    return -1;
}

static enum mta_err_code start_code; /* what the last start_log reported */

/* start_log - the log writer (no stderr) plus our sink; a failure's exact start-up line
 * (or its detail) in *ERR. */
static int start_log(const char *file, char **err)
{
    struct log_options lo = {
        .hostname = "mx.test", .syslog_name = "mta", .to_stderr = 0, .sink_retry_ms = 100};
    struct mta_err me = {MTA_ERR_NONE, NULL};
    char *e = NULL;

    assert_int_equal(log_init(&lo, &e), 0);
    int r = log_smb_start(url, file, spilldir, &me);
    start_code = me.code;
    if (r != 0)
        *err = strdup(me.text ? me.text : mta_err_summary(me.code));
    mta_err_clear(&me);
    return r;
}

static int setup(void **state)
{
    (void)state;
    if (!have("smbd") || !have("smbclient"))
        return 0;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_log_smb.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(srvdir, sizeof(srvdir), "%s/srv", tmpdir);
    snprintf(spilldir, sizeof(spilldir), "%s/log-spill", tmpdir);
    mkdir(srvdir, 0755);
    return smbserver("start");
}

static int teardown(void **state)
{
    char cmd[600];
    (void)state;
    if (!tmpdir[0])
        return 0;
    smbserver("stop");
    if (getenv("MTA_KEEP") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

#define NEED_SMBD()                                                                                \
    do {                                                                                           \
        if (!srvport)                                                                              \
            skip();                                                                                \
    } while (0)

/* ------------------------------------------------------------------ */

static void test_parse(void **state)
{
    struct log_smb_target t;
    char *err = NULL;
    (void)state;

    assert_int_equal(log_smb_target_parse(&t, "smb://h:1445/share/", "/srv1_logs/maillog", &err),
                     0);
    assert_string_equal(t.file_url, "smb://h:1445/share/srv1_logs/maillog");
    assert_int_equal(t.ndirs, 1);
    assert_string_equal(t.dir_urls[0], "smb://h:1445/share/srv1_logs");
    log_smb_target_free(&t);

    assert_int_equal(log_smb_target_parse(&t, "smb://h/share", "hub1_maillog", &err), 0);
    assert_string_equal(t.file_url, "smb://h/share/hub1_maillog");
    assert_int_equal(t.ndirs, 0);
    log_smb_target_free(&t);

    assert_int_equal(log_smb_target_parse(&t, "smb://h/share", "a//b c/m%l", &err), 0);
    assert_string_equal(t.file_url, "smb://h/share/a/b%20c/m%25l");
    assert_int_equal(t.ndirs, 2);
    assert_string_equal(t.dir_urls[1], "smb://h/share/a/b%20c");
    log_smb_target_free(&t);

    const char *bad[][2] = {{"http://h/share", "m"}, {"smb://h", "m"},       {"smb:///share", "m"},
                            {"smb://h/", "m"},       {"smb://h/s", ""},      {"smb://h/s", "/"},
                            {"smb://h/s", "../m"},   {"smb://h/s", "a/./m"}, {"smb://h/s", "a\nb"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        assert_int_equal(log_smb_target_parse(&t, bad[i][0], bad[i][1], &err), -1);
        assert_non_null(err);
        free(err);
    }
}

static void test_unreachable(void **state)
{
    char *err = NULL;
    char save[64];
    (void)state;
    NEED_SMBD();

    strcpy(save, url);
    /* a port where nothing listens (smbd's own run dir is not involved) */
    snprintf(url, sizeof(url), "smb://127.0.0.1:1/share");
    double t0 = now_s();
    assert_int_equal(start_log("/x/maillog", &err), -1);
    assert_int_equal(start_code, MTA_ERR_LOG_SHARE);
    assert_string_equal(err, "Error: Failed to mount log share.");
    assert_true(now_s() - t0 < 10);
    free(err);
    log_shutdown();
    strcpy(url, save);
    assert_int_equal(log_smb_behind(), 0);
}

static void test_records_reach_share(void **state)
{
    char *err = NULL, path[512], *text, msg[160];
    (void)state;
    NEED_SMBD();

    assert_int_equal(start_log("/srv1_logs/maillog", &err), 0);
    assert_int_equal(counter_get(CNT_LOG_SHARE_UP), 1);
    for (int i = 0; i < 2000; i++)
        log_mail("smtpd", "4AB%05d: client=localhost[127.0.0.1] rec=%d", i, i);
    assert_int_equal(wait_written(20), 0);
    assert_int_equal(log_smb_behind(), 0);
    assert_int_equal(log_smb_message(msg, sizeof(msg)), 0);
    assert_string_equal(msg, "");
    log_shutdown();
    log_smb_stop();

    snprintf(path, sizeof(path), "%s/share/srv1_logs/maillog", srvdir);
    text = slurp(path, NULL);
    assert_non_null(text);
    assert_int_equal(check_records(text, 0, 2000), 2000);
    /* Postfix format: "Mon DD HH:MM:SS host mta/service[pid]: text" */
    assert_non_null(strstr(text, " mx.test mta/smtpd["));
    assert_int_equal(text[3], ' ');
    assert_int_equal(text[15], ' ');
    free(text);
}

static void test_outage(void **state)
{
    char *err = NULL, path[512], *text, msg[160];
    (void)state;
    NEED_SMBD();

    snprintf(path, sizeof(path), "%s/share/outage/maillog", srvdir);
    log_smb_set_tuning(32 * 1024, 1000, 2000); /* small queue: the spill file is used */
    assert_int_equal(start_log("outage/maillog", &err), 0);
    for (int i = 0; i < 100; i++)
        log_mail("smtpd", "rec=%d", i);
    assert_int_equal(wait_written(20), 0);

    assert_int_equal(smbserver("stop"), 0);
    /* while the share is away, logging goes on at full speed */
    double t0 = now_s();
    for (int i = 100; i < 5000; i++) {
        log_mail("smtpd", "4AB%05d: client=localhost[127.0.0.1] rec=%d", i, i);
        if (i % 500 == 0)
            usleep(20000);
    }
    assert_true(now_s() - t0 < 3.0);
    double end = now_s() + 20;
    while (now_s() < end && (counter_get(CNT_LOG_SHARE_UP) != 0 || log_smb_waiting() < 4000))
        usleep(50000);
    assert_int_equal(counter_get(CNT_LOG_SHARE_UP), 0);
    assert_int_equal(log_smb_behind(), 1);
    assert_int_equal(log_smb_message(msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "The mail log share is unreachable; "));
    assert_non_null(strstr(msg, " records are waiting."));
    assert_true(counter_get(CNT_LOG_SPILLED) > 0);
    assert_int_equal(log_dropped(), 0);

    assert_int_equal(smbserver("start"), 0);
    assert_int_equal(wait_written(40), 0);
    assert_int_equal(counter_get(CNT_LOG_SHARE_UP), 1);
    assert_int_equal(counter_get(CNT_LOG_SPILLED), 0);
    assert_int_equal(log_smb_behind(), 0);
    log_shutdown();
    log_smb_stop();
    log_smb_set_tuning(0, 0, 0);

    text = slurp(path, NULL);
    assert_non_null(text);
    assert_int_equal(check_records(text, 0, 5000), 5000);
    assert_non_null(strstr(text, "warning: mail log share unreachable"));
    assert_non_null(strstr(text, "mail log share is back"));
    free(text);
}

static void test_stop_while_away(void **state)
{
    char *err = NULL, path[512], *text;
    (void)state;
    NEED_SMBD();

    snprintf(path, sizeof(path), "%s/share/away/maillog", srvdir);
    log_smb_set_tuning(0, 1000, 2000);
    assert_int_equal(start_log("away/maillog", &err), 0);
    for (int i = 0; i < 10; i++)
        log_mail("smtpd", "rec=%d", i);
    assert_int_equal(wait_written(20), 0);
    assert_int_equal(smbserver("stop"), 0);
    for (int i = 10; i < 300; i++)
        log_mail("smtpd", "rec=%d", i);
    log_flush();
    log_shutdown();
    log_smb_stop(); /* share away: the records go to the spill file */

    text = slurp(path, NULL);
    assert_int_equal(check_records(text, 0, 10), 10);
    free(text);

    assert_int_equal(smbserver("start"), 0);
    assert_int_equal(start_log("away/maillog", &err), 0); /* replays the spill file first */
    for (int i = 300; i < 400; i++)
        log_mail("smtpd", "rec=%d", i);
    assert_int_equal(wait_written(20), 0);
    log_shutdown();
    log_smb_stop();
    log_smb_set_tuning(0, 0, 0);
    text = slurp(path, NULL);
    assert_int_equal(check_records(text, 0, 400), 400);
    free(text);
}

static void test_read_only_share(void **state)
{
    char *err = NULL, path[512], *text, msg[160];
    (void)state;
    NEED_SMBD();

    snprintf(path, sizeof(path), "%s/share/ro/maillog", srvdir);
    log_smb_set_tuning(0, 1000, 2000);
    assert_int_equal(start_log("ro/maillog", &err), 0);
    for (int i = 0; i < 50; i++)
        log_mail("smtpd", "rec=%d", i);
    assert_int_equal(wait_written(20), 0);
    /* the same share comes back read-only: connections work, writes do not */
    assert_int_equal(smbserver("stop"), 0);
    assert_int_equal(smbserver("start-ro"), 0);
    for (int i = 50; i < 500; i++)
        log_mail("smtpd", "rec=%d", i);
    double end = now_s() + 20;
    while (now_s() < end && counter_get(CNT_LOG_SHARE_UP) != 0)
        usleep(50000);
    sleep(3); /* several reconnect rounds: it stays down, nothing is written */
    assert_int_equal(counter_get(CNT_LOG_SHARE_UP), 0);
    assert_int_equal(log_smb_message(msg, sizeof(msg)), 1);
    assert_true(log_smb_waiting() >= 450);
    text = slurp(path, NULL);
    assert_int_equal(check_records(text, 0, 50), 50);
    free(text);
    assert_int_equal(smbserver("stop"), 0);
    assert_int_equal(smbserver("start"), 0);
    assert_int_equal(wait_written(40), 0);
    log_shutdown();
    log_smb_stop();
    log_smb_set_tuning(0, 0, 0);
    text = slurp(path, NULL);
    assert_int_equal(check_records(text, 0, 500), 500);
    /* one warning for the whole outage, one "back" */
    int warnings = 0;
    for (const char *p = text; (p = strstr(p, "warning: mail log share unreachable")); p++)
        warnings++;
    assert_int_equal(warnings, 1);
    free(text);
}

static void test_rotation(void **state)
{
    char *err = NULL, path[512], *all, *text;
    size_t total = 0, len;
    int files = 0;
    (void)state;
    NEED_SMBD();

    log_smb_set_rotation(20000, 50);
    assert_int_equal(start_log("rot/maillog", &err), 0);
    for (int i = 0; i < 3000; i++) {
        log_mail("smtpd", "rec=%d padding to make the record a little longer", i);
        if (i % 100 == 0)
            usleep(10000); /* several batches */
    }
    assert_int_equal(wait_written(20), 0);
    log_shutdown();
    log_smb_stop();
    log_smb_set_rotation(0, 5);

    all = calloc(1, 1);
    for (int n = 50; n >= 0; n--) {
        if (n)
            snprintf(path, sizeof(path), "%s/share/rot/maillog.%d", srvdir, n);
        else
            snprintf(path, sizeof(path), "%s/share/rot/maillog", srvdir);
        text = slurp(path, &len);
        if (text == NULL)
            continue;
        files++;
        assert_true(len <= 20000);
        all = realloc(all, total + len + 1);
        memcpy(all + total, text, len + 1);
        total += len;
        free(text);
    }
    assert_true(files >= 8);
    assert_int_equal(check_records(all, 0, 3000), 3000);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_records_reach_share),
        cmocka_unit_test(test_outage),
        cmocka_unit_test(test_stop_while_away),
        cmocka_unit_test(test_read_only_share),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
