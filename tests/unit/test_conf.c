/*
 * test_conf.c - the configuration as an administrator meets it: file syntax
 * (comments, continuation lines, overrides, -o), units and limits, the exact
 * start-up messages, every error collected, and the golden files in
 * tests/golden/conf/ (NAME.in is loaded; NAME.ref holds the errors, or "OK" and
 * the settings that differ from the defaults).
 * Set MTA_GOLDEN_UPDATE=1 to rewrite the .ref files (then review the diff).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mta/conf.h"

static char tmpdir[] = "/tmp/test_conf.XXXXXX";
static char origdir[PATH_MAX];

/* write_file - NAME (relative to the temp dir, the cwd of every test) gets LEN bytes. */
static void write_file_n(const char *name, const char *text, size_t len)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_file(const char *name, const char *text)
{
    write_file_n(name, text, strlen(text));
}

/* conf_find_index - index of setting NAME in conf_defs, or -1. */
static int conf_find_index(const char *name)
{
    for (size_t i = 0; i < conf_ndefs; i++)
        if (!strcmp(conf_defs[i].name, name))
            return (int)i;
    return -1;
}

/* load_ok - FILE (may be NULL) and overrides must load without error. */
static struct conf *load_ok(const char *file, int n, char **ov)
{
    char *errors = NULL;
    struct conf *c = conf_load(file, ov, n, &errors);
    if (!c)
        fail_msg("unexpected errors:\n%s", errors ? errors : "(none)");
    assert_null(errors);
    return c;
}

/* load_err - FILE and overrides must fail; returns the error text (caller frees). */
static char *load_err(const char *file, int n, char **ov)
{
    char *errors = NULL;
    struct conf *c = conf_load(file, ov, n, &errors);
    if (c) {
        conf_free(c);
        fail_msg("configuration was accepted");
    }
    assert_non_null(errors);
    return errors;
}

/* expect_err - the overrides (plus data_volume) give exactly WANT ("" = accepted). */
static void expect_ov(const char *ov, const char *want)
{
    char *o[2] = {"data_volume=/q", (char *)ov};
    if (!*want) {
        conf_free(load_ok(NULL, 2, o));
        return;
    }
    char *e = load_err(NULL, 2, o);
    assert_string_equal(e, want);
    free(e);
}

static int setup(void **state)
{
    if (!getcwd(origdir, sizeof(origdir)) || !mkdtemp(tmpdir) || chdir(tmpdir) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    if (chdir(origdir) < 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_sizes(void **state)
{
    long long v;

    assert_int_equal(conf_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(conf_parse_size("10240000", &v), 0);
    assert_int_equal(v, 10240000);
    assert_int_equal(conf_parse_size("1k", &v), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(conf_parse_size("2K", &v), 0);
    assert_int_equal(v, 2048);
    assert_int_equal(conf_parse_size("10m", &v), 0);
    assert_int_equal(v, 10485760);
    assert_int_equal(conf_parse_size("3g", &v), 0);
    assert_int_equal(v, 3221225472LL);
    assert_int_equal(conf_parse_size("9223372036854775807", &v), 0);
    assert_int_equal(v, LLONG_MAX);
    assert_int_equal(conf_parse_size("8589934591g", &v), 0); /* (2^63 - 2^30) exactly */
    assert_int_equal(v, 8589934591LL * 1073741824LL);
    /* overflow */
    assert_int_equal(conf_parse_size("9223372036854775808", &v), -1);
    assert_int_equal(conf_parse_size("8589934592g", &v), -1);
    assert_int_equal(conf_parse_size("99999999999999999999999", &v), -1);
    /* not sizes */
    const char *bad[] = {"", "k", "-1", "+1", " 1", "1 ", "1x", "1kk", "1kb", "1.5m", "0x10", "1b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (conf_parse_size(bad[i], &v) != -1)
            fail_msg("size '%s' accepted", bad[i]);
    assert_int_equal(conf_parse_size(NULL, &v), -1);
}

static void test_times(void **state)
{
    long v;

    assert_int_equal(conf_parse_time("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(conf_parse_time("300", &v), 0); /* no unit: seconds */
    assert_int_equal(v, 300);
    assert_int_equal(conf_parse_time("300s", &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(conf_parse_time("5m", &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(conf_parse_time("2h", &v), 0);
    assert_int_equal(v, 7200);
    assert_int_equal(conf_parse_time("5d", &v), 0);
    assert_int_equal(v, 432000);
    assert_int_equal(conf_parse_time("1w", &v), 0);
    assert_int_equal(v, 604800);
    assert_int_equal(conf_parse_time("9223372036854775807", &v), 0);
    assert_int_equal(conf_parse_time("9223372036854775807m", &v), -1); /* overflow */
    assert_int_equal(conf_parse_time("15250284452471w", &v), 0);
    assert_int_equal(conf_parse_time("15250284452472w", &v), -1);
    const char *bad[] = {"", "s", "-1", "1y", "1S", "1M", "1ms", "1h30m", "1 s", "1.5h", "+5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (conf_parse_time(bad[i], &v) != -1)
            fail_msg("time '%s' accepted", bad[i]);
}

static void test_defaults(void **state)
{
    char *o[] = {"data_volume=/var/spool/mta"};
    struct conf *c = load_ok(NULL, 1, o);

    assert_string_equal(c->hostname, "");
    char sys[256] = "";
    assert_int_equal(gethostname(sys, sizeof(sys) - 1), 0);
    assert_string_equal(c->myhostname, sys[0] ? sys : "localhost"); /* empty: the system's */
    assert_int_equal(c->logs_enabled, 0);
    assert_string_equal(c->smtpd_trusted_networks, "127.0.0.1");
    assert_int_equal(c->ui_port, 80);
    assert_int_equal(c->ssl_disabled, 1);
    assert_string_equal(c->ssl_key_file, "server.key");
    assert_string_equal(c->ssl_cert_file, "server.pem");
    assert_int_equal(c->smtp_port, 25);
    assert_int_equal(c->smtps_port, 465);
    assert_int_equal(c->message_size_limit, 10240000);
    assert_int_equal(c->smtpd_recipient_limit, 1000);
    assert_int_equal(c->smtpd_timeout, 300);
    assert_int_equal(c->smtpd_client_connection_count_limit, 50);
    assert_int_equal(c->smtpd_session_limit, 10000);
    assert_int_equal(c->maximal_queue_lifetime, 5 * 86400);
    assert_int_equal(c->bounce_queue_lifetime, 5 * 86400);
    assert_int_equal(c->minimal_backoff_time, 300);
    assert_int_equal(c->maximal_backoff_time, 4000);
    assert_int_equal(c->queue_run_delay, 300);
    assert_int_equal(c->queue_minfree, 0);
    assert_int_equal(c->default_destination_concurrency_limit, 20);
    assert_string_equal(c->syslog_name, "postfix");
    assert_string_equal(c->smtpd_forbid_bare_newline, "normalize");
    assert_string_equal(c->smtp_tls_security_level, "may");
    assert_string_equal(c->path, "");

    /* postconf -n style: only what differs from the defaults */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    conf_print_values(c, f, 1);
    fclose(f);
    assert_string_equal(buf, "data_volume = /var/spool/mta\n");
    free(buf);
    /* all of them: one line per setting */
    f = open_memstream(&buf, &len);
    conf_print_values(c, f, 0);
    fclose(f);
    size_t lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, conf_ndefs);
    assert_non_null(strstr(buf, "\nsmtpd_timeout = 300s\n"));
    assert_non_null(strstr(buf, "\nssl_disabled = yes\n"));
    free(buf);
    conf_free(c);
    conf_free(NULL);
}

static void test_file_syntax(void **state)
{
    write_file("a.cf", "# a comment\n"
                       "data_volume = /srv/q\n"
                       "\n"
                       "   \t\n"
                       "smtpd_trusted_networks = 127.0.0.1,\n"
                       "    10.0.0.0/8\n"
                       "  # an indented comment does not end the logical line\n"
                       "\t::1\n"
                       "ui_port = 8080\n"
                       "ui_port=8081\r\n"
                       "password = a=b # not a comment: main.cf has whole-line comments only\n"
                       "message_size_limit = 20m\n"
                       "smtpd_timeout = 5m\n"
                       "maximal_queue_lifetime = 2w\n"
                       "logs_enabled = yes\n"
                       "log_terminal = smb://fileserver/share\n"
                       "smtpd_forbid_bare_newline = yes\n"
                       "syslog_name = $myhostname\n"
                       "hostname = relay.example.com"); /* no final newline */
    struct conf *c = load_ok("a.cf", 0, NULL);
    assert_string_equal(c->path, "a.cf");
    assert_string_equal(c->data_volume, "/srv/q");
    assert_string_equal(c->smtpd_trusted_networks, "127.0.0.1, 10.0.0.0/8 ::1");
    assert_int_equal(c->ui_port, 8081); /* the later line wins */
    assert_string_equal(c->password, "a=b # not a comment: main.cf has whole-line comments only");
    assert_int_equal(c->message_size_limit, 20 * 1024 * 1024);
    assert_int_equal(c->smtpd_timeout, 300);
    assert_int_equal(c->maximal_queue_lifetime, 14 * 86400);
    assert_int_equal(c->logs_enabled, 1);
    assert_string_equal(c->smtpd_forbid_bare_newline, "reject"); /* yes is stored as reject */
    assert_string_equal(c->syslog_name, "$myhostname");          /* no $name expansion */
    assert_string_equal(c->hostname, "relay.example.com");
    assert_string_equal(c->myhostname, "relay.example.com");
    conf_free(c);

    /* empty file: only data_volume is missing */
    write_file("empty.cf", "");
    char *e = load_err("empty.cf", 0, NULL);
    assert_string_equal(e, "Error: data_volume is required (the directory of the mail queue).\n");
    free(e);
}

static void test_overrides(void **state)
{
    write_file("o.cf", "data_volume = /q\nui_port = 8080\nsmtp_port = 2500\n");
    char *o[] = {"ui_port=9090", " smtp_port = 2525 ", "hostname=", "hostname=h1.example"};
    struct conf *c = load_ok("o.cf", 4, o);
    assert_int_equal(c->ui_port, 9090);
    assert_int_equal(c->smtp_port, 2525);
    assert_string_equal(c->hostname, "h1.example"); /* later -o wins too */
    conf_free(c);

    /* -o supplies what the file lacks, and the file is optional */
    char *o2[] = {"data_volume=/q2"};
    c = load_ok(NULL, 1, o2);
    assert_string_equal(c->data_volume, "/q2");
    conf_free(c);

    /* only the last value counts (Postfix): a bad value overridden later is no error */
    write_file("o2.cf", "data_volume = /q\nui_port = 70000\nsmtp_port = x\nui_port = 81\n");
    char *o3[] = {"smtp_port=26"};
    c = load_ok("o2.cf", 1, o3);
    assert_int_equal(c->ui_port, 81);
    assert_int_equal(c->smtp_port, 26);
    conf_free(c);
    /* ... and a good value overridden by a bad one is */
    char *o4[] = {"smtp_port=0"};
    char *e = load_err("o.cf", 1, o4);
    assert_string_equal(e, "Error: -o smtp_port=0: bad value '0' for smtp_port: expected a whole "
                           "number from 1 to 65535\n");
    free(e);

    /* errors without an errors pointer just fail */
    assert_null(conf_load(NULL, NULL, 0, NULL));
}

static void test_all_errors_collected(void **state)
{
    write_file("bad.cf", "data_volume = /q\n"
                         "bogus = 1\n"
                         "ui_port = 0\n"
                         "smtp_port = 70000\n"
                         "message_size_limit = 1x\n"
                         "smtpd_timeout = 1y\n"
                         "logs_enabled = true\n"
                         "just some text\n"
                         "= 5\n"
                         "queue_minfree = -1\n"
                         "smtpd_error_sleep_time = 61\n"
                         "header_size_limit = 1023\n"
                         "smtp_tls_security_level = fortknox\n"
                         "minimal_backoff_time = 1h\n"
                         "maximal_backoff_time = 30m\n"
                         "ssl_disabled = no\n"
                         "ssl_cert_file =\n");
    char *o[] = {"nosuch=1", "smtp_port", "hopcount_limit=0", "ui_port=x"};
    char *e = load_err("bad.cf", 4, o);
    assert_string_equal(
        e, "Error: bad.cf:2: unknown setting 'bogus'\n"
           "Error: bad.cf:4: bad value '70000' for smtp_port: expected a whole number from 1 to "
           "65535\n"
           "Error: bad.cf:5: bad value '1x' for message_size_limit: expected a size from 1k to "
           "2147483647 bytes (a number, optionally followed by k, m or g)\n"
           "Error: bad.cf:6: bad value '1y' for smtpd_timeout: expected a time from 1s to 1d (a "
           "number, optionally followed by s, m, h, d or w)\n"
           "Error: bad.cf:7: bad value 'true' for logs_enabled: expected yes or no\n"
           "Error: bad.cf:8: expected 'name = value' but found 'just some text'\n"
           "Error: bad.cf:9: missing setting name before '='\n"
           "Error: bad.cf:10: bad value '-1' for queue_minfree: expected a size of 0 or more "
           "bytes (a number, optionally followed by k, m or g)\n"
           "Error: bad.cf:11: bad value '61' for smtpd_error_sleep_time: expected a time from 0s "
           "to 1m (a number, optionally followed by s, m, h, d or w)\n"
           "Error: bad.cf:12: bad value '1023' for header_size_limit: expected a size from 1k to "
           "64m bytes (a number, optionally followed by k, m or g)\n"
           "Error: bad.cf:13: bad value 'fortknox' for smtp_tls_security_level: expected none, "
           "may, encrypt, dane, verify or secure\n"
           "Error: -o nosuch=1: unknown setting 'nosuch'\n"
           "Error: -o smtp_port: expected name=value\n"
           "Error: -o hopcount_limit=0: bad value '0' for hopcount_limit: expected a whole number "
           "from 1 to 1000\n"
           "Error: ui_port value must be between 1 and 65535.\n"
           "Error: ssl_disabled=no but ssl key files are not defined.\n"
           "Error: minimal_backoff_time (3600s) must not be greater than maximal_backoff_time "
           "(1800s)\n");
    free(e);
}

static void test_exact_messages(void **state)
{
    const char *port = "Error: ui_port value must be between 1 and 65535.\n";
    expect_ov("ui_port=0", port);
    expect_ov("ui_port=65536", port);
    expect_ov("ui_port=-80", port);
    expect_ov("ui_port=http", port);
    expect_ov("ui_port=", port);
    expect_ov("ui_port=99999999999999999999999", port);
    expect_ov("ui_port=1", "");
    expect_ov("ui_port=65535", "");

    expect_ov("logs_enabled=yes", "Error: Logs are enabled but 'log' terminal is not connected.\n");
    expect_ov("logs_enabled=no", "");

    const char *ssl = "Error: ssl_disabled=no but ssl key files are not defined.\n";
    char *o1[] = {"data_volume=/q", "ssl_disabled=no", "ssl_key_file="};
    char *e = load_err(NULL, 3, o1);
    assert_string_equal(e, ssl);
    free(e);
    char *o2[] = {"data_volume=/q", "ssl_disabled=no", "ssl_cert_file="};
    e = load_err(NULL, 3, o2);
    assert_string_equal(e, ssl);
    free(e);
    expect_ov("ssl_disabled=no", ""); /* the default file names are defined */
    char *o3[] = {"data_volume=/q", "ssl_disabled=yes", "ssl_cert_file=", "ssl_key_file="};
    conf_free(load_ok(NULL, 4, o3));

    char *o4[] = {"data_volume=/q", "key_volume=/keys", "fs_terminal=nfs://nas/export"};
    e = load_err(NULL, 3, o4);
    assert_string_equal(e, "Error: Both the key volume and the 'fs' terminal are configured; "
                           "use only one of them.\n");
    free(e);

    e = load_err(NULL, 0, NULL);
    assert_string_equal(e, "Error: data_volume is required (the directory of the mail queue).\n");
    free(e);

    e = load_err("does-not-exist.cf", 0, NULL);
    assert_string_equal(e, "Error: cannot read does-not-exist.cf: No such file or directory\n");
    free(e);
    e = load_err(".", 0, NULL);
    assert_string_equal(e, "Error: cannot read .: Is a directory\n");
    free(e);
    if (geteuid() != 0) { /* root reads anything */
        write_file("secret.cf", "data_volume = /q\n");
        assert_int_equal(chmod("secret.cf", 0), 0);
        e = load_err("secret.cf", 0, NULL);
        assert_string_equal(e, "Error: cannot read secret.cf: Permission denied\n");
        free(e);
    }

    expect_ov("minimal_backoff_time=4001",
              "Error: minimal_backoff_time (4001s) must not be greater than maximal_backoff_time "
              "(4000s)\n");
    expect_ov("minimal_backoff_time=4000", "");
}

static void test_string_checks(void **state)
{
    static const struct {
        const char *ov, *want;
    } cases[] = {
        {"smtpd_trusted_networks=0.0.0.0/0 ::/0", ""},
        {"smtpd_trusted_networks=", ""},
        {"smtpd_trusted_networks=10.0.0.0/33",
         "Error: -o smtpd_trusted_networks=10.0.0.0/33: bad value '10.0.0.0/33' for "
         "smtpd_trusted_networks: prefix length /33 in '10.0.0.0/33' is larger than /32\n"},
        {"smart_relay=[mail.example.com]:25", ""},
        {"smart_relay=relay.example.com:587", ""},
        {"smart_relay=[2001:db8::1]:25", ""},
        {"smart_relay=2001:db8::1",
         "Error: -o smart_relay=2001:db8::1: bad value '2001:db8::1' for smart_relay: an IPv6 "
         "address must be written in brackets: '[2001:db8::1]'\n"},
        {"cc_mta=archive.example.com", ""},
        {"cc_mta=[archive", "Error: -o cc_mta=[archive: bad value '[archive' for cc_mta: missing "
                            "']' in '[archive'\n"},
        {"in_address=127.0.0.1", ""},
        {"in_address=::", ""},
        {"in_address=localhost", "Error: -o in_address=localhost: bad value 'localhost' for "
                                 "in_address: expected an IPv4 or IPv6 address or nothing\n"},
        {"net_source_address=192.0.2.300",
         "Error: -o net_source_address=192.0.2.300: bad value '192.0.2.300' for "
         "net_source_address: expected an IPv4 or IPv6 address or nothing\n"},
        {"mon_terminal=127.0.0.1:8125", ""},
        {"mon_terminal=statsd.example:8125",
         "Error: -o mon_terminal=statsd.example:8125: bad value 'statsd.example:8125' for "
         "mon_terminal: expected ip:port or [ipv6]:port\n"},
        {"mon_terminal=[::1]:8125", ""},
        {"mon_terminal=statsd.example",
         "Error: -o mon_terminal=statsd.example: bad value 'statsd.example' for mon_terminal: "
         "expected ip:port or [ipv6]:port\n"},
        {"mon_terminal=[::1]", "Error: -o mon_terminal=[::1]: bad value '[::1]' for mon_terminal: "
                               "expected ip:port or [ipv6]:port\n"},
        {"mon_terminal=h:0", "Error: -o mon_terminal=h:0: bad value 'h:0' for mon_terminal: "
                             "expected ip:port or [ipv6]:port\n"},
        {"dns_servers=1.1.1.1, 8.8.8.8:53 [2001:db8::1]:5353 ::1 [::2]", ""},
        {"dns_servers=1.1.1.1,dns.example",
         "Error: -o dns_servers=1.1.1.1,dns.example: bad value '1.1.1.1,dns.example' for "
         "dns_servers: 'dns.example' is not ip, ip:port, ipv6 or [ipv6]:port\n"},
        {"dns_servers=1.1.1.1:0", "Error: -o dns_servers=1.1.1.1:0: bad value '1.1.1.1:0' for "
                                  "dns_servers: '1.1.1.1:0' is not ip, ip:port, ipv6 or "
                                  "[ipv6]:port\n"},
        {"dns_servers=[::1]x", "Error: -o dns_servers=[::1]x: bad value '[::1]x' for "
                               "dns_servers: '[::1]x' is not ip, ip:port, ipv6 or [ipv6]:port\n"},
        {"log_terminal=smb://fileserver/share", ""},
        {"log_terminal=smb://fs:4455/share", ""},
        {"log_terminal=nfs://fileserver/share",
         "Error: -o log_terminal=nfs://fileserver/share: bad value 'nfs://fileserver/share' for "
         "log_terminal: expected smb://server[:port]/share\n"},
        {"log_terminal=smb:///share", "Error: -o log_terminal=smb:///share: bad value "
                                      "'smb:///share' for log_terminal: expected "
                                      "smb://server[:port]/share\n"},
        {"fs_terminal=nfs://nas/export?version=4", ""},
        {"fs_terminal=/mnt/keys", "Error: -o fs_terminal=/mnt/keys: bad value '/mnt/keys' for "
                                  "fs_terminal: expected nfs://server/export[?options]\n"},
        {"smtpd_forbid_bare_newline=no", ""},
        {"smtpd_forbid_bare_newline=reject", ""},
        {"smtpd_forbid_bare_newline=normalize", ""},
        {"smtpd_forbid_bare_newline=maybe",
         "Error: -o smtpd_forbid_bare_newline=maybe: bad value 'maybe' for "
         "smtpd_forbid_bare_newline: expected normalize, reject, yes or no\n"},
        {"smtp_tls_security_level=none", ""},
        {"hostname=bad host", "Error: -o hostname=bad host: bad value 'bad host' for hostname: "
                              "expected a host name (letters, digits, '-', '.') or nothing\n"},
        {"ssl_disabled=No", "Error: -o ssl_disabled=No: bad value 'No' for ssl_disabled: "
                            "expected yes or no\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_ov(cases[i].ov, cases[i].want);
}

static void test_value_display(void **state)
{
    /* long and binary values are quoted bounded and printable */
    char ov[300] = "smtp_port=";
    memset(ov + 10, '7', 200);
    ov[210] = '\0';
    char *o[] = {"data_volume=/q", ov};
    char *e = load_err(NULL, 2, o);
    char want[400];
    snprintf(want, sizeof(want),
             "Error: -o smtp_port=%.70s...: bad value '%.80s...' for smtp_port: expected a whole "
             "number from 1 to 65535\n",
             ov + 10, ov + 10);
    assert_string_equal(e, want);
    free(e);
    char *o3[] = {"data_volume=/q", "password=\x01\x7f"};
    conf_free(load_ok(NULL, 2, o3)); /* control bytes in a free-text value are its business */
    char *o2[] = {"data_volume=/q", "timezone=\x1b[31m"};
    e = load_err(NULL, 2, o2);
    assert_string_equal(e, "Error: unknown timezone '?[31m' (setting timezone)\n");
    free(e);
}

static void test_timezone(void **state)
{
    const char *old = getenv("TZDIR");
    char *saved = old ? strdup(old) : NULL;
    char dir[PATH_MAX + 8];

    assert_int_equal(mkdir("zi", 0755), 0);
    assert_int_equal(mkdir("zi/Test", 0755), 0);
    write_file("zi/Test/Zone", "TZif2 and the rest of a zone file");
    write_file("zi/zone.tab", "# not a zone\n");
    write_file("outside", "TZif2");
    snprintf(dir, sizeof(dir), "%s/zi", tmpdir);
    setenv("TZDIR", dir, 1);

    expect_ov("timezone=Test/Zone", "");
    expect_ov("timezone=", "");
    const char *bad[] = {"Test",       "zone.tab",           "Test/Nope",
                         "../outside", "Test/../../outside", "/etc/hosts",
                         "Test/Zone/", "Test Zone",          "Mars/Olympus"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char ov[64], want[128];
        snprintf(ov, sizeof(ov), "timezone=%s", bad[i]);
        snprintf(want, sizeof(want), "Error: unknown timezone '%s' (setting timezone)\n", bad[i]);
        expect_ov(ov, want);
    }
    if (saved) {
        setenv("TZDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TZDIR");
    }
    /* the system's database, when it is installed */
    struct stat st;
    if (!getenv("TZDIR") && stat("/usr/share/zoneinfo/Europe/Berlin", &st) == 0)
        expect_ov("timezone=Europe/Berlin", "");
}

static void test_long_lines(void **state)
{
    size_t n = 70000;
    char *buf = malloc(100000); /* room for both files below */
    assert_non_null(buf);
    strcpy(buf, "password = ");
    memset(buf + 11, 'x', n);
    static const char tail[] = "\n  continued\nui_port = 8\nuser\0name = x\ndata_volume = /q\n";
    memcpy(buf + 11 + n, tail, sizeof(tail) - 1);
    size_t len = 11 + n + sizeof(tail) - 1;
    write_file_n("long.cf", buf, len);
    char *e = load_err("long.cf", 0, NULL);
    assert_string_equal(e, "Error: long.cf:1: line too long\n"
                           "Error: long.cf:4: line contains a NUL byte\n");
    free(e);

    /* each physical line fits but the logical line does not */
    size_t pos = 0;
    pos += (size_t)sprintf(buf, "password = x\n");
    for (int i = 0; i < 2; i++) {
        buf[pos++] = ' ';
        memset(buf + pos, 'y', 40000);
        pos += 40000;
        buf[pos++] = '\n';
    }
    pos += (size_t)sprintf(buf + pos, "data_volume = /q\n");
    write_file_n("long2.cf", buf, pos);
    e = load_err("long2.cf", 0, NULL);
    assert_string_equal(e, "Error: long2.cf:1: line longer than 65536 bytes (with its "
                           "continuation lines)\n");
    free(e);
    free(buf);

    write_file("cont.cf", "  ui_port = 8\ndata_volume = /q\n");
    e = load_err("cont.cf", 0, NULL);
    assert_string_equal(e, "Error: cont.cf:1: line starts with white space but continues no "
                           "setting (a setting starts at the beginning of a line)\n");
    free(e);
}

static void test_too_many_errors(void **state)
{
    FILE *f = fopen("many.cf", "w");
    assert_non_null(f);
    for (int i = 0; i < 3000; i++)
        fprintf(f, "nosuch%d = 1\n", i);
    fclose(f);
    char *e = load_err("many.cf", 0, NULL);
    size_t lines = 0;
    for (char *p = e; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1001);
    assert_non_null(strstr(e, "Error: many.cf:1000: unknown setting 'nosuch999'\n"
                              "Error: more than 1000 errors; the rest are not shown\n"));
    free(e);
}

static void test_table(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    conf_print_table(f);
    fclose(f);

    const char *head = "### Appliance properties\n\n| name | type | default | range | meaning |\n"
                       "|---|---|---|---|---|\n| `hostname` | string |";
    assert_int_equal(strncmp(buf, head, strlen(head)), 0);
    for (size_t i = 0; i < conf_ndefs; i++) {
        char row[128];
        snprintf(row, sizeof(row), "\n| `%s` |", conf_defs[i].name);
        char *p = strstr(buf, row);
        if (!p)
            fail_msg("setting %s missing from the table", conf_defs[i].name);
        assert_null(strstr(p + 1, row)); /* exactly once */
    }
    assert_non_null(strstr(buf, "\n| `ui_port` | integer | `80` | 1 to 65535 | "));
    assert_non_null(strstr(buf, "\n| `smtpd_timeout` | time | `300s` | 1s to 1d | "));
    assert_non_null(strstr(buf, "\n| `message_size_limit` | size | `10240000` | 1k to "
                                "2147483647 | "));
    assert_non_null(strstr(buf, "\n| `queue_minfree` | size | `0` | 0 or more | "));
    assert_non_null(strstr(buf, "\n| `logs_enabled` | yes/no | `no` | yes, no | "));
    assert_non_null(strstr(buf, "\n| `timezone` | string | *(empty)* | tz name or empty | "));
    assert_non_null(strstr(buf, "\n### Terminals and volumes\n"));
    assert_non_null(strstr(buf, "\n### Postfix tuning knobs (Postfix's names and defaults)\n"));
    assert_non_null(strstr(buf, "\n### Settings of our own\n"));
    free(buf);
}

/* load_text - TEXT as a file, loaded with the overrides; must load. */
static struct conf *load_text(const char *text, int n, char **ov)
{
    write_file("pf.cf", text);
    return load_ok("pf.cf", n, ov);
}

/* expect_text_err - TEXT as a file must fail with exactly WANT. */
static void expect_text_err(const char *text, const char *want)
{
    write_file("pf.cf", text);
    char *e = load_err("pf.cf", 0, NULL);
    assert_string_equal(e, want);
    free(e);
}

/* Postfix's main.cf names: same setting, later line wins across spellings, Postfix's
 * value syntax ($name, service ports, [addr], keywords), errors that name both. */
static void test_postfix_names(void **state)
{
    struct conf *c;

    c = load_text("data_volume = /q\nhostname = a.example\nmyhostname = b.example\n", 0, NULL);
    assert_string_equal(c->hostname, "b.example");
    assert_string_equal(c->myhostname, "b.example");
    assert_string_equal(c->set_as[conf_find_index("hostname")], "myhostname");
    conf_free(c);
    c = load_text("data_volume = /q\nmyhostname = b.example\nhostname = a.example\n", 0, NULL);
    assert_string_equal(c->hostname, "a.example");
    assert_null(c->set_as[conf_find_index("hostname")]);
    conf_free(c);
    char *ov[] = {"myhostname=c.example"};
    c = load_text("queue_directory = /q\nhostname = a.example\n", 1, ov);
    assert_string_equal(c->hostname, "c.example");
    assert_string_equal(c->data_volume, "/q");
    conf_free(c);

    /* $name expansion in Postfix-named values only; ours keep '$' */
    c = load_text("data_volume = /q\nmyhostname = mx.example.com\n"
                  "relayhost = [${myhostname}]:submission\npassword = pa$$word$myhostname\n"
                  "inet_interfaces = [::1]\nmynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 "
                  "[::1]/128\nsmtp_bind_address = 10.0.0.2\n",
                  0, NULL);
    assert_string_equal(c->smart_relay, "[mx.example.com]:587");
    assert_string_equal(c->password, "pa$$word$myhostname");
    assert_string_equal(c->in_address, "::1");
    assert_string_equal(c->smtpd_trusted_networks, "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128");
    assert_string_equal(c->net_source_address, "10.0.0.2");
    conf_free(c);
    c = load_text("data_volume = /q\nrelayhost = $(smart_relay)\nsmart_relay = relay.example\n"
                  "inet_interfaces = all\nsmtpd_use_tls = yes\nkey_volume = /k\n",
                  0, NULL);
    assert_string_equal(c->smart_relay, "relay.example");
    assert_string_equal(c->in_address, "");
    assert_int_equal(c->ssl_disabled, 0);
    conf_free(c);
    c = load_text("data_volume = /q\ninet_interfaces = loopback-only\n", 0, NULL);
    assert_string_equal(c->in_address, "127.0.0.1");
    conf_free(c);

    /* TLS: Postfix's key default is the certificate file; absolute paths read from / */
    c = load_text("data_volume = /q\nsmtpd_tls_cert_file = /etc/ssl/both.pem\n"
                  "smtpd_tls_security_level = may\n",
                  0, NULL);
    assert_int_equal(c->ssl_disabled, 0);
    assert_string_equal(c->ssl_cert_file, "/etc/ssl/both.pem");
    assert_string_equal(c->ssl_key_file, "/etc/ssl/both.pem");
    assert_string_equal(c->key_volume, "/");
    conf_free(c);
    c = load_text("data_volume = /q\nkey_volume = /keys\nsmtpd_tls_cert_file = c.pem\n"
                  "smtpd_tls_key_file = k.pem\nsmtpd_tls_security_level = none\n",
                  0, NULL);
    assert_int_equal(c->ssl_disabled, 1);
    assert_string_equal(c->ssl_key_file, "k.pem");
    assert_string_equal(c->key_volume, "/keys");
    conf_free(c);

    expect_text_err("data_volume = /q\nmyhostname = mail.$mydomain\n",
                    "Error: pf.cf:2: bad value 'mail.$mydomain' for myhostname (mta's hostname): "
                    "$mydomain: mta has no setting mydomain\n");
    expect_text_err("data_volume = /q\nrelayhost = [a.example], [b.example]\n",
                    "Error: pf.cf:2: bad value '[a.example], [b.example]' for relayhost (mta's "
                    "smart_relay): mta relays to one next hop, not a list\n");
    expect_text_err("data_volume = /q\ninet_interfaces = 127.0.0.1, [::1]\n",
                    "Error: pf.cf:2: bad value '127.0.0.1, [::1]' for inet_interfaces (mta's "
                    "in_address): mta listens on one address or all, not a list\n");
    expect_text_err("data_volume = /q\ninet_interfaces = mail.example.com\n",
                    "Error: pf.cf:2: bad value 'mail.example.com' for inet_interfaces (mta's "
                    "in_address): expected all, loopback-only, localhost or one IP address\n");
    expect_text_err("data_volume = /q\nmynetworks = 10.0.0.0/8 hash:/etc/postfix/network_table\n",
                    "Error: pf.cf:2: bad value '10.0.0.0/8 hash:/etc/postfix/network_table' for "
                    "mynetworks (mta's smtpd_trusted_networks): 'hash:/etc/postfix/network_table': "
                    "mta takes IP addresses and CIDR blocks only (no /file, type:table or "
                    "!negation)\n");
    expect_text_err("data_volume = /q\nmynetworks = 10.1.0.0/8\n",
                    "Error: pf.cf:2: bad value '10.1.0.0/8' for mynetworks (mta's "
                    "smtpd_trusted_networks): '10.1.0.0/8' has host bits set beyond the prefix; "
                    "did you mean '10.0.0.0/8'?\n");
    expect_text_err("data_volume = /q\nsmtpd_tls_security_level = encrypt\n",
                    "Error: pf.cf:2: bad value 'encrypt' for smtpd_tls_security_level (mta's "
                    "ssl_disabled): expected none or may (mta cannot require TLS on "
                    "smtp_port)\n");
    expect_text_err("data_volume = /q\nrelayhost = ${myhostname?x}\n",
                    "Error: pf.cf:2: bad value '${myhostname?x}' for relayhost (mta's "
                    "smart_relay): '${myhostname?x}': mta expands only $name, ${name} and "
                    "$(name)\n");
    expect_text_err("data_volume = /q\nmyhostname = $relayhost\nrelayhost = $myhostname\n",
                    "Error: pf.cf:2: bad value '$relayhost' for myhostname (mta's hostname): "
                    "$relayhost: references nested too deeply (a loop?)\n"
                    "Error: pf.cf:3: bad value '$myhostname' for relayhost (mta's smart_relay): "
                    "$myhostname: references nested too deeply (a loop?)\n");
    /* names mta does not implement keep the plain error */
    expect_text_err("data_volume = /q\nmydestination = $myhostname\n",
                    "Error: pf.cf:2: unknown setting 'mydestination'\n");

    /* the docs table lists every alias once, with its target */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    conf_print_table(f);
    fclose(f);
    assert_non_null(strstr(buf, "\n### Postfix names (main.cf) read as settings of ours\n"));
    for (size_t i = 0; i < conf_naliases; i++) {
        char row[160];
        snprintf(row, sizeof(row), "\n| `%s` | `%s` | ", conf_aliases[i].name,
                 conf_aliases[i].target);
        assert_non_null(strstr(buf, row));
        assert_true(conf_find_index(conf_aliases[i].target) >= 0);
    }
    free(buf);
}

/* golden_dir - MTA_GOLDEN (set by CTest), else the source tree next to this file. */
static void golden_dir(char *out, size_t n)
{
    const char *g = getenv("MTA_GOLDEN");
    if (g && *g) {
        snprintf(out, n, "%s/conf", g);
    } else {
        snprintf(out, n, "%s", __FILE__);
        char *slash = strrchr(out, '/');
        snprintf(slash ? slash : out, n - (size_t)(slash ? slash - out : 0), "/../golden/conf");
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int ch;
    while ((ch = getc(f)) != EOF)
        putc(ch, m);
    fclose(m);
    fclose(f);
    return buf;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_golden(void **state)
{
    char dir[PATH_MAX];
    golden_dir(dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open golden directory %s: %s", dir, strerror(errno));
    assert_int_equal(chdir(dir), 0); /* messages name the file relative to it */

    char *names[256];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nn < 256) {
        size_t l = strlen(de->d_name);
        if (l > 3 && !strcmp(de->d_name + l - 3, ".in"))
            names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof(names[0]), name_cmp);
    assert_true(nn >= 5);

    int failures = 0, update = getenv("MTA_GOLDEN_UPDATE") != NULL;
    for (size_t i = 0; i < nn; i++) {
        char *errors = NULL, *got = NULL, ref[PATH_MAX];
        size_t len = 0;
        struct conf *c = conf_load(names[i], NULL, 0, &errors);
        FILE *m = open_memstream(&got, &len);
        if (c) {
            fputs("OK\n", m);
            conf_print_values(c, m, 1);
            for (size_t k = 0; k < conf_ndefs; k++) /* Postfix names in use */
                if (c->set_as[k])
                    fprintf(m, "# %s is read as %s\n", c->set_as[k], conf_defs[k].name);
            conf_free(c);
        } else {
            fputs(errors, m);
            free(errors);
        }
        fclose(m);
        snprintf(ref, sizeof(ref), "%.*s.ref", (int)strlen(names[i]) - 3, names[i]);
        if (update) {
            FILE *f = fopen(ref, "w");
            assert_non_null(f);
            fputs(got, f);
            fclose(f);
        }
        char *want = slurp(ref);
        if (!want || strcmp(want, got)) {
            print_error("golden %s/%s differs:\n--- expected\n%s--- got\n%s", dir, names[i],
                        want ? want : "(missing .ref)\n", got);
            failures++;
        }
        free(want);
        free(got);
        free(names[i]);
    }
    assert_int_equal(chdir(tmpdir), 0);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),          cmocka_unit_test(test_times),
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_file_syntax),
        cmocka_unit_test(test_overrides),      cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_exact_messages), cmocka_unit_test(test_string_checks),
        cmocka_unit_test(test_value_display),  cmocka_unit_test(test_timezone),
        cmocka_unit_test(test_long_lines),     cmocka_unit_test(test_too_many_errors),
        cmocka_unit_test(test_table),          cmocka_unit_test(test_golden),
        cmocka_unit_test(test_postfix_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
