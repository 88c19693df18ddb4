/*
 * test_stats_format.c - the stats layer's pure formatting: HTML and JSON escaping
 * of hostile mail text, Basic-auth parsing and constant-time comparison, the
 * dashboard free-space thresholds, Prometheus text and StatsD lines, the
 * mon_terminal target syntax and the queue search filter.
 */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "mta/sched.h"
#include "mta/text.h"
#include "stats/stats_int.h"

/* text - the evbuffer's content as a NUL-terminated string (static, per call). */
static const char *text(struct evbuffer *b)
{
    static char out[16384];
    size_t n = evbuffer_get_length(b);
    assert_true(n < sizeof out);
    evbuffer_copyout(b, out, n);
    out[n] = '\0';
    evbuffer_drain(b, n);
    return out;
}

static void test_html_escape(void **state)
{
    struct evbuffer *b = evbuffer_new();
    stats_html_escape(b, "<script>alert('x')</script>&\"@evil.example");
    assert_string_equal(text(b),
                        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;@evil.example");
    /* UTF-8 passes, control bytes and broken UTF-8 become U+FFFD */
    stats_html_escape(b, "j\xc3\xbcrgen\x01\xff@b\xc3");
    assert_string_equal(text(b), "j\xc3\xbcrgen\xef\xbf\xbd\xef\xbf\xbd@b\xef\xbf\xbd");
    stats_html_escape(b, NULL);
    assert_string_equal(text(b), "");
    evbuffer_free(b);
}

static void test_json_string(void **state)
{
    struct evbuffer *b = evbuffer_new();
    text_json_string(b, "a\"b\\c\n\r\t\b\f\x01\x1f\x7f");
    assert_string_equal(text(b), "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
    /* valid UTF-8 (2, 3, 4 bytes) passes through unchanged */
    text_json_string(b, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7");
    assert_string_equal(text(b), "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7\"");
    /* invalid: lone continuation, overlong, surrogate, truncated */
    text_json_string(b, "\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82");
    assert_string_equal(text(b), "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
    text_json_string(b, "");
    assert_string_equal(text(b), "\"\"");
    evbuffer_free(b);
}

static void test_ct_equal(void **state)
{
    assert_true(stats_ct_equal("secret", 6, "secret", 6));
    assert_false(stats_ct_equal("secret", 6, "secreT", 6));
    assert_false(stats_ct_equal("secret", 6, "secret1", 7));
    assert_false(stats_ct_equal("secret", 6, "secre", 5));
    assert_false(stats_ct_equal("", 0, "x", 1));
    assert_true(stats_ct_equal("", 0, "", 0));
}

static void test_base64(void **state)
{
    unsigned char out[16];
    assert_int_equal(stats_base64_decode("YWRtaW46cHc=", 12, out, sizeof out), 8);
    assert_memory_equal(out, "admin:pw", 8);
    assert_int_equal(stats_base64_decode("YQ==", 4, out, sizeof out), 1);
    assert_int_equal(stats_base64_decode("YQ=", 3, out, sizeof out), -1);  /* length */
    assert_int_equal(stats_base64_decode("Y===", 4, out, sizeof out), -1); /* pad too early */
    assert_int_equal(stats_base64_decode("YQ==YQ==", 8, out, sizeof out), -1);
    assert_int_equal(stats_base64_decode("Y!==", 4, out, sizeof out), -1);
    assert_int_equal(stats_base64_decode("YWJjZGVm", 8, out, 5), -1); /* too long for OUT */
}

static void test_auth_check(void **state)
{
    /* admin:s3cr:et (a colon in the password is fine) */
    assert_true(stats_auth_check("Basic YWRtaW46czNjcjpldA==", "admin", "s3cr:et"));
    assert_true(stats_auth_check("basic   YWRtaW46czNjcjpldA==  ", "admin", "s3cr:et"));
    assert_false(stats_auth_check("Basic YWRtaW46czNjcjpldA==", "admin", "s3cr"));
    assert_false(stats_auth_check("Basic YWRtaW46czNjcjpldA==", "Admin", "s3cr:et"));
    assert_false(stats_auth_check("Bearer YWRtaW46czNjcjpldA==", "admin", "s3cr:et"));
    assert_false(stats_auth_check("BasicYWRtaW46czNjcjpldA==", "admin", "s3cr:et"));
    assert_false(stats_auth_check("Basic YWRtaW4=", "admin", "")); /* no colon */
    assert_true(stats_auth_check("Basic YWRtaW46", "admin", ""));  /* "admin:" */
    assert_false(stats_auth_check("Basic", "admin", ""));
    assert_false(stats_auth_check("", "admin", "x"));
    assert_false(stats_auth_check(NULL, "admin", "x"));
    /* an overlong header is refused, not overflowed */
    char big[4096];
    memset(big, 'A', sizeof big);
    memcpy(big, "Basic ", 6);
    big[sizeof big - 1] = '\0';
    assert_false(stats_auth_check(big, "admin", "x"));
}

static void test_dashboard_thresholds(void **state)
{
    const char *m[STATS_DASHBOARD_MAX];
    struct stats_dashboard_input in = {.free_percent = 50};
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 0);
    in.free_percent = 5.0; /* exactly 5% is not below 5% */
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 0);
    in.free_percent = 4.99;
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 1);
    assert_string_equal(m[0], "Data volume free space is below 5%.");
    in.free_percent = 1.0;
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 1);
    assert_string_equal(m[0], "Data volume free space is below 5%.");
    in.free_percent = 0.5; /* only the most severe one */
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 1);
    assert_string_equal(m[0], "Data volume free space is below 1%.");
    in.free_percent = 0;
    in.log_share_configured = 1;
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 2);
    assert_string_equal(m[0], "Data volume free space is below 1%.");
    assert_string_equal(m[1], STATS_MSG_LOG_DOWN);
    assert_int_equal(stats_dashboard_messages(m, 1), 1); /* MAX is respected */
    in.free_percent = -1;                                /* unknown: no free-space message */
    in.log_share_up = 1;
    stats_dashboard_update(&in);
    assert_int_equal(stats_dashboard_messages(m, STATS_DASHBOARD_MAX), 0);
}

static void test_prometheus(void **state)
{
    struct stats_snapshot s;
    memset(&s, 0, sizeof s);
    s.cnt[CNT_RECEIVED] = 42;
    s.cnt[CNT_MQUEUE_MESSAGES] = 3;
    s.cnt[CNT_MQUEUE_BYTES] = 5000;
    s.cpu_seconds = 1.5;
    s.rss_bytes = 1048576;
    s.free_percent = 12.5;
    s.uptime_seconds = 77;
    s.cnt[CNT_SPOOL_COMMIT_FLUSH_US] = 12345678;
    s.cnt[CNT_SPOOL_COMMIT_WAIT_US] = 999;
    struct evbuffer *b = evbuffer_new();
    stats_metrics_format(b, &s);
    const char *t = text(b);
    assert_non_null(strstr(t, "# HELP mta_received_total Messages accepted and queued.\n"
                              "# TYPE mta_received_total counter\nmta_received_total 42\n"));
    assert_non_null(strstr(t, "# TYPE mta_mqueue_messages gauge\nmta_mqueue_messages 3\n"));
    assert_non_null(strstr(t, "\nmta_mqueue_bytes 5000\n"));
    assert_non_null(strstr(t, "\nmta_process_cpu_seconds_total 1.500\n"));
    assert_non_null(strstr(t, "\nmta_process_resident_memory_bytes 1048576\n"));
    assert_non_null(strstr(t, "\nmta_data_volume_free_ratio 0.1250\n"));
    assert_non_null(strstr(t, "\nmta_uptime_seconds 77\n"));
    assert_null(strstr(t, "mta_mqueue_messages_total"));
    /* counters kept in microseconds go out in seconds, without the _us */
    assert_non_null(strstr(t, "# TYPE mta_spool_commit_flush_seconds_total counter\n"
                              "mta_spool_commit_flush_seconds_total 12.345678\n"));
    assert_non_null(strstr(t, "\nmta_spool_commit_wait_seconds_total 0.000999\n"));
    assert_null(strstr(t, "_us_total"));
    /* every sample line is preceded by its TYPE line and every metric is mta_-prefixed */
    for (const char *line = t; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (line[0] != '#')
            assert_memory_equal(line, "mta_", 4);
        line = nl + 1;
    }
    s.free_percent = -1; /* unknown: no ratio at all rather than a made-up one */
    stats_metrics_format(b, &s);
    assert_null(strstr(text(b), "free_ratio"));
    evbuffer_free(b);
}

static void test_statsd(void **state)
{
    struct stats_snapshot s;
    memset(&s, 0, sizeof s);
    s.cnt[CNT_MQUEUE_MESSAGES] = 7;
    s.cnt[CNT_MQUEUE_BYTES] = 2049;
    s.mqueue_kilobytes = stats_kilobytes(2049);
    s.cnt[CNT_SMTP_ACTIVE] = 2;
    s.cnt[CNT_DELIVERED] = 9;
    s.cnt[CNT_LOG_BACKLOG] = -4; /* never sent negative: StatsD reads "-4" as a decrement */
    s.rss_bytes = 4096;
    s.free_percent = -1;
    struct evbuffer *b = evbuffer_new();
    stats_statsd_format(b, &s, 12.345);
    const char *t = text(b);
    const char *first = "mta.mqueue_messages:7|g\nmta.mqueue_kilobytes:3|g\n"
                        "mta.smtp_active_sessions:2|g\n";
    assert_memory_equal(t, first, strlen(first));
    assert_non_null(strstr(t, "\nmta.delivered:9|g\n"));
    assert_non_null(strstr(t, "\nmta.log_backlog_records:0|g\n"));
    assert_non_null(strstr(t, "\nmta.cpu_percent:12.35|g\n"));
    assert_non_null(strstr(t, "\nmta.rss_bytes:4096|g\n"));
    assert_null(strstr(t, "free_percent"));
    assert_null(strstr(t + 30, "mta.mqueue_messages:")); /* not twice */
    evbuffer_free(b);
}

static void test_mon_target(void **state)
{
    struct sockaddr_storage ss;
    int len;
    assert_int_equal(stats_mon_parse_target("127.0.0.1:8125", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8125);
    assert_int_equal(stats_mon_parse_target("[::1]:9125", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9125);
    assert_int_equal(stats_mon_parse_target("::1:8125", &ss, &len), -1);
    assert_int_equal(stats_mon_parse_target("statsd.example:8125", &ss, &len), -1); /* no DNS */
    assert_int_equal(stats_mon_parse_target("127.0.0.1", &ss, &len), -1);
    assert_int_equal(stats_mon_parse_target("127.0.0.1:", &ss, &len), -1);
    assert_int_equal(stats_mon_parse_target("127.0.0.1:0", &ss, &len), -1);
    assert_int_equal(stats_mon_parse_target("127.0.0.1:65536", &ss, &len), -1);
    assert_int_equal(stats_mon_parse_target("127.0.0.1:81x", &ss, &len), -1);
    assert_int_equal(stats_mon_parse_target("[::1]8125", &ss, &len), -1);
}

static void test_queue_match(void **state)
{
    struct sched_view_rcpt r[2] = {
        {.address = "bob@example.org", .orig_address = "", .delay_reason = "", .status = "active"},
        {.address = "carol@Example.NET",
         .orig_address = "",
         .delay_reason = "",
         .status = "deferred"},
    };
    struct sched_view_msg m = {.queue_id = "4F2A9C01",
                               .queue_name = "active",
                               .sender = "alice@a.test",
                               .recipients = r,
                               .nrecipients = 2};
    assert_true(stats_queue_match(&m, NULL));
    assert_true(stats_queue_match(&m, ""));
    assert_true(stats_queue_match(&m, "4f2a"));
    assert_true(stats_queue_match(&m, "ALICE"));
    assert_true(stats_queue_match(&m, "example.net"));
    assert_false(stats_queue_match(&m, "dave"));
    assert_int_equal(stats_kilobytes(0), 0);
    assert_int_equal(stats_kilobytes(1), 1);
    assert_int_equal(stats_kilobytes(1024), 1);
    assert_int_equal(stats_kilobytes(1025), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_escape), cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_ct_equal),    cmocka_unit_test(test_base64),
        cmocka_unit_test(test_auth_check),  cmocka_unit_test(test_dashboard_thresholds),
        cmocka_unit_test(test_prometheus),  cmocka_unit_test(test_statsd),
        cmocka_unit_test(test_mon_target),  cmocka_unit_test(test_queue_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
