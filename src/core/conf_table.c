/*
 * conf_table.c - the table of settings: conf_defs and the field offsets built
 * from CONF_SETTINGS in conf.h, how each type of value is read (sizes, times,
 * whole numbers), the syntax checks of string values (addresses, next hops,
 * URLs, ...: conf_checks[]), the words that describe a valid value in messages,
 * and the Markdown table of docs/configuration.md (`mtactl settings`).
 * Not here: reading files, collecting errors, defaults and Postfix names (conf.c,
 * conf_postfix.c), or what a setting does.
 */
#include "mta/conf.h"

#include "mta/cidr.h"
#include "mta/milter.h"
#include "mta/nexthop.h"

#include "conf_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_X_DEF(name, type, def, min, max, group, doc) {#name, type, def, min, max, group, doc},
const struct conf_def conf_defs[] = {CONF_SETTINGS(CONF_X_DEF)};
#undef CONF_X_DEF
const size_t conf_ndefs = sizeof(conf_defs) / sizeof(conf_defs[0]);

#define CONF_X_OFF(name, type, def, min, max, group, doc) offsetof(struct conf, name),
const size_t conf_offsets[] = {CONF_SETTINGS(CONF_X_OFF)};
#undef CONF_X_OFF

/* conf_show - VALUE made safe to quote: bounded, control bytes as '?'. */
const char *conf_show(const char *v, char *buf, size_t n)
{
    size_t i = 0, len = strlen(v);
    size_t lim = len > CONF_SHOW_MAX ? CONF_SHOW_MAX : len;

    if (lim > n - 4)
        lim = n - 4;
    for (; i < lim; i++)
        buf[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
    if (lim < len)
        memcpy(buf + i, "...", 3), i += 3;
    buf[i] = '\0';
    return buf;
}

/* ---- value parsers ---- */

/* conf_parse_number - unsigned decimal prefix of S; *end after it. -1 on none or overflow. */
static int conf_parse_number(const char *s, long long *out, const char **end)
{
    unsigned long long v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > ((unsigned long long)LLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = (long long)v;
    *end = p;
    return 0;
}

int conf_parse_size(const char *s, long long *out)
{
    long long v, mul = 1;
    const char *end;

    if (!s || conf_parse_number(s, &v, &end) < 0)
        return -1;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mul = 1024LL;
        break;
    case 'm':
    case 'M':
        mul = 1024LL * 1024;
        break;
    case 'g':
    case 'G':
        mul = 1024LL * 1024 * 1024;
        break;
    default:
        return -1;
    }
    if (*end && end[1] != '\0')
        return -1;
    if (v > LLONG_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int conf_parse_time(const char *s, long *out)
{
    long long v, mul;
    const char *end;

    if (!s || conf_parse_number(s, &v, &end) < 0)
        return -1;
    switch (*end) { /* Postfix's units are lower case only */
    case '\0':
    case 's':
        mul = 1;
        break;
    case 'm':
        mul = 60;
        break;
    case 'h':
        mul = 3600;
        break;
    case 'd':
        mul = 86400;
        break;
    case 'w':
        mul = 604800;
        break;
    default:
        return -1;
    }
    if (*end && end[1] != '\0')
        return -1;
    if (v > LONG_MAX / mul)
        return -1;
    *out = (long)(v * mul);
    return 0;
}

/* conf_parse_int - optional '-', decimal digits, nothing else. */
int conf_parse_int(const char *s, long long *out)
{
    const char *end;
    int neg = (*s == '-');

    if (conf_parse_number(s + neg, out, &end) < 0 || *end)
        return -1;
    if (neg)
        *out = -*out;
    return 0;
}

/* ---- human-readable ranges (messages and the docs table) ---- */

/* conf_fmt_size - 1024 as "1k", 67108864 as "64m": exact multiples only. */
static void conf_fmt_size(long long v, char *buf, size_t n)
{
    static const char units[] = "gmk";
    static const long long mul[] = {1024LL * 1024 * 1024, 1024LL * 1024, 1024LL};

    if (v == LLONG_MAX) {
        snprintf(buf, n, "no limit");
        return;
    }
    for (int i = 0; i < 3; i++)
        if (v >= mul[i] && v % mul[i] == 0) {
            snprintf(buf, n, "%lld%c", v / mul[i], units[i]);
            return;
        }
    snprintf(buf, n, "%lld", v);
}

/* conf_fmt_time - 86400 as "1d", 90 as "90s": the largest exact unit. */
static void conf_fmt_time(long long v, char *buf, size_t n)
{
    static const char units[] = "wdhm";
    static const long long mul[] = {604800, 86400, 3600, 60};

    for (int i = 0; i < 4; i++)
        if (v >= mul[i] && v % mul[i] == 0) {
            snprintf(buf, n, "%lld%c", v / mul[i], units[i]);
            return;
        }
    snprintf(buf, n, "%llds", v);
}

/* conf_range - "MIN to MAX" for numeric settings, "" otherwise. */
static void conf_range(const struct conf_def *d, char *buf, size_t n)
{
    char lo[32], hi[32];

    switch (d->type) {
    case CONF_INT:
        snprintf(buf, n, "%lld to %lld", d->min, d->max);
        return;
    case CONF_SIZE:
        conf_fmt_size(d->min, lo, sizeof(lo));
        conf_fmt_size(d->max, hi, sizeof(hi));
        if (d->max == LLONG_MAX)
            snprintf(buf, n, "%s or more", lo);
        else
            snprintf(buf, n, "%s to %s", lo, hi);
        return;
    case CONF_TIME:
        conf_fmt_time(d->min, lo, sizeof(lo));
        conf_fmt_time(d->max, hi, sizeof(hi));
        snprintf(buf, n, "%s to %s", lo, hi);
        return;
    case CONF_BOOL:
        snprintf(buf, n, "yes, no");
        return;
    case CONF_STR:
        break;
    }
    buf[0] = '\0';
}

/* conf_expected - what a valid value of a numeric/bool setting looks like. */
void conf_expected(const struct conf_def *d, char *buf, size_t n)
{
    char r[80];

    conf_range(d, r, sizeof(r));
    switch (d->type) {
    case CONF_BOOL:
        snprintf(buf, n, "expected yes or no");
        break;
    case CONF_INT:
        snprintf(buf, n, "expected a whole number from %s", r);
        break;
    case CONF_SIZE:
        if (d->max == LLONG_MAX) /* r is "MIN or more" */
            snprintf(buf, n,
                     "expected a size of %s bytes (a number, optionally followed by k, m "
                     "or g)",
                     r);
        else
            snprintf(buf, n,
                     "expected a size from %s bytes (a number, optionally followed by k, "
                     "m or g)",
                     r);
        break;
    case CONF_TIME:
        snprintf(buf, n,
                 "expected a time from %s (a number, optionally followed by s, m, h, d or w)", r);
        break;
    case CONF_STR:
        buf[0] = '\0';
        break;
    }
}

/* ---- syntax checks of string settings: 0 ok, -1 with WHY ---- */

/* conf_check_port - decimal 1..65535 and nothing else. */
static int conf_check_port(const char *p)
{
    long long v;

    return conf_parse_int(p, &v) == 0 && *p != '-' && v >= 1 && v <= 65535 ? 0 : -1;
}

static int conf_check_hostname(const char *v, char *why, size_t n)
{
    if (!*v || nexthop_valid_hostname(v))
        return 0;
    snprintf(why, n, "expected a host name (letters, digits, '-', '.') or nothing");
    return -1;
}

static int conf_check_networks(const char *v, char *why, size_t n)
{
    char *err = NULL;
    struct cidr_list *l = cidr_list_parse(v, &err);

    if (l) {
        cidr_list_free(l);
        return 0;
    }
    snprintf(why, n, "%s", err ? err : "out of memory");
    free(err);
    return -1;
}

static int conf_check_nexthop(const char *v, char *why, size_t n)
{
    struct nexthop nh;
    char *err = NULL;

    if (!*v || nexthop_parse(v, &nh, &err) == 0)
        return 0;
    snprintf(why, n, "%s", err ? err : "out of memory");
    free(err);
    return -1;
}

static int conf_check_ip(const char *v, char *why, size_t n)
{
    unsigned char a[16];

    if (!*v || inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1)
        return 0;
    snprintf(why, n, "expected an IPv4 or IPv6 address or nothing");
    return -1;
}

static int conf_check_ip_port(const char *v, char *why, size_t n)
{
    struct nexthop nh;
    char *err = NULL;
    unsigned char a[16];
    const char *port = v[0] == '[' ? strstr(v, "]:") : strrchr(v, ':');

    if (!*v)
        return 0;
    /* an IP literal: the push never resolves names (no blocking DNS on the loop) */
    if (port && nexthop_parse(v, &nh, &err) == 0 &&
        (inet_pton(AF_INET, nh.host, a) == 1 || inet_pton(AF_INET6, nh.host, a) == 1))
        return 0;
    snprintf(why, n, "expected ip:port or [ipv6]:port");
    free(err);
    return -1;
}

/* conf_check_dns_one - "ip", "ip:port", "ipv6", "[ipv6]" or "[ipv6]:port". */
static int conf_check_dns_one(const char *s)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char a[16];
    const char *port = NULL;
    size_t hlen;

    if (inet_pton(AF_INET6, s, a) == 1)
        return 0;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -1;
        hlen = (size_t)(close - s - 1);
        if (hlen >= sizeof(host))
            return -1;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, a) != 1)
            return -1;
        port = close[1] ? close + 2 : NULL;
    } else {
        const char *colon = strchr(s, ':');
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (hlen >= sizeof(host))
            return -1;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET, host, a) != 1)
            return -1;
        port = colon ? colon + 1 : NULL;
    }
    return port ? conf_check_port(port) : 0;
}

static int conf_check_dns(const char *v, char *why, size_t n)
{
    static const char sep[] = ", \t";

    for (const char *p = v; *p;) {
        p += strspn(p, sep);
        if (!*p)
            break;
        size_t len = strcspn(p, sep);
        char tok[128];
        char shown[CONF_SHOW_MAX + 4];
        if (len >= sizeof(tok) || (memcpy(tok, p, len), tok[len] = '\0', conf_check_dns_one(tok))) {
            snprintf(tok, sizeof(tok), "%.*s", (int)(len < 100 ? len : 100), p);
            snprintf(why, n, "'%s' is not ip, ip:port, ipv6 or [ipv6]:port",
                     conf_show(tok, shown, sizeof(shown)));
            return -1;
        }
        p += len;
    }
    return 0;
}

/* conf_check_url - SCHEME followed by a non-empty server name. */
static int conf_check_url(const char *v, const char *scheme, const char *form, char *why, size_t n)
{
    size_t sl = strlen(scheme);

    if (!*v)
        return 0;
    if (strncmp(v, scheme, sl) == 0 && v[sl] && v[sl] != '/' && v[sl] != ':' && v[sl] != '?')
        return 0;
    snprintf(why, n, "expected %s", form);
    return -1;
}

static int conf_check_smb(const char *v, char *why, size_t n)
{
    return conf_check_url(v, "smb://", "smb://server[:port]/share", why, n);
}

static int conf_check_nfs(const char *v, char *why, size_t n)
{
    return conf_check_url(v, "nfs://", "nfs://server/export[?options]", why, n);
}

static int conf_check_bare_newline(const char *v, char *why, size_t n)
{
    if (!strcmp(v, "normalize") || !strcmp(v, "reject") || !strcmp(v, "yes") || !strcmp(v, "no"))
        return 0;
    snprintf(why, n, "expected normalize, reject, yes or no");
    return -1;
}

static int conf_check_uproxy(const char *v, char *why, size_t n)
{
    if (!*v || !strcmp(v, "haproxy"))
        return 0;
    snprintf(why, n, "expected haproxy or empty");
    return -1;
}

static int conf_check_tls_level(const char *v, char *why, size_t n)
{
    static const char *const levels[] = {"none", "may", "encrypt", "dane", "verify", "secure"};

    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (!strcmp(v, levels[i]))
            return 0;
    snprintf(why, n, "expected none, may, encrypt, dane, verify or secure");
    return -1;
}

/* conf_check_dns_level - Postfix's smtp_dns_support_level, without "disabled" (MX needs DNS). */
static int conf_check_dns_level(const char *v, char *why, size_t n)
{
    if (!*v || !strcmp(v, "enabled") || !strcmp(v, "dnssec"))
        return 0;
    snprintf(why, n, "expected enabled or dnssec");
    return -1;
}

/*
 * conf_timezone_valid - 1 when V is a tz database file under TZDIR (glibc's variable;
 * default /usr/share/zoneinfo). Relative names only and no "..": the value is used to
 * open a file, it must not reach outside the zone directory.
 */
int conf_timezone_valid(const char *v)
{
    const char *dir = getenv("TZDIR");
    char path[PATH_MAX], magic[4];
    struct stat st;
    int ok = 0;

    if (v[0] == '/' || strstr(v, "..") || strlen(v) > 200 ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") !=
            strlen(v))
        return 0;
    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    snprintf(path, sizeof(path), "%s/%s", dir, v);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    /* zone.tab and friends live there too: only real TZif files are zones */
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && fread(magic, 1, 4, f) == 4 &&
        memcmp(magic, "TZif", 4) == 0)
        ok = 1;
    fclose(f);
    return ok;
}

/* conf_check_timezone - empty, or a zone conf_timezone_valid accepts. */
static int conf_check_timezone(const char *v, char *why, size_t n)
{
    if (!*v || conf_timezone_valid(v))
        return 0;
    snprintf(why, n, "unknown timezone");
    return -1;
}

/* conf_check_feedback - Postfix's concurrency feedback: N or N/concurrency, 0 < N <= 1
 * (the scheduler reads it the same way: sched_dest.c). */
static int conf_check_feedback(const char *v, char *why, size_t n)
{
    char *end;
    double x = strtod(v, &end);

    if (end != v && x > 0 && x <= 1 && (!*end || !strcmp(end, "/concurrency")))
        return 0;
    snprintf(why, n, "expected a number N (0 < N <= 1) or N/concurrency");
    return -1;
}

struct conf_check {
    const char *name;
    int (*fn)(const char *v, char *why, size_t n); /* NULL: any text */
    const char *range;                             /* for the docs table */
};

static const struct conf_check conf_checks[] = {
    {"hostname", conf_check_hostname, "host name or empty"},
    {"data_volume", NULL, "directory (required)"},
    {"key_volume", NULL, "directory or empty"},
    {"smtpd_trusted_networks", conf_check_networks, "IPv4/IPv6 addresses and CIDR blocks"},
    {"smart_relay", conf_check_nexthop, "next hop or empty"},
    {"cc_mta", conf_check_nexthop, "next hop or empty"},
    {"timezone", conf_check_timezone, "tz name or empty"},
    {"fs_terminal", conf_check_nfs, "nfs:// URL or empty"},
    {"log_terminal", conf_check_smb, "smb:// URL or empty"},
    {"mon_terminal", conf_check_ip_port, "ip:port or empty"},
    {"net_source_address", conf_check_ip, "IP address or empty"},
    {"in_address", conf_check_ip, "IP address or empty"},
    {"dns_servers", conf_check_dns, "ip[:port] list or empty"},
    {"smtpd_forbid_bare_newline", conf_check_bare_newline,
     "normalize, reject, yes (stored as reject), no"},
    {"smtpd_upstream_proxy_protocol", conf_check_uproxy, "haproxy or empty"},
    {"smtp_tls_security_level", conf_check_tls_level, "none, may, encrypt, dane, verify, secure"},
    {"smtp_dns_support_level", conf_check_dns_level, "empty, enabled, dnssec"},
    {"default_destination_concurrency_positive_feedback", conf_check_feedback,
     "N or N/concurrency"},
    {"default_destination_concurrency_negative_feedback", conf_check_feedback,
     "N or N/concurrency"},
    {"smtpd_milters", milter_list_check, "inet:host:port and unix:/path list"},
    {"non_smtpd_milters", milter_list_check, "inet:host:port and unix:/path list"},
    {"milter_default_action", milter_action_check, "tempfail, accept, reject"},
};

/* conf_find_check - the syntax check of setting NAME, or NULL. */
static const struct conf_check *conf_find_check(const char *name)
{
    for (size_t i = 0; i < sizeof(conf_checks) / sizeof(conf_checks[0]); i++)
        if (!strcmp(conf_checks[i].name, name))
            return &conf_checks[i];
    return NULL;
}

int conf_check_value(const char *name, const char *value, char *why, size_t n)
{
    const struct conf_check *chk = conf_find_check(name);

    return chk && chk->fn ? chk->fn(value, why, n) : 0;
}

int conf_find(const char *name)
{
    for (size_t i = 0; i < conf_ndefs; i++)
        if (!strcmp(conf_defs[i].name, name))
            return (int)i;
    return -1;
}

/* ---- the documentation table ---- */

/* conf_md - TEXT with Markdown table metacharacters escaped. */
static void conf_md(FILE *out, const char *text)
{
    for (; *text; text++) {
        if (*text == '|')
            fputc('\\', out);
        fputc(*text, out);
    }
}

/* conf_group_title - heading of a group of the table. */
static const char *conf_group_title(const char *group)
{
    if (!strcmp(group, "appliance"))
        return "Appliance properties";
    if (!strcmp(group, "terminal"))
        return "Terminals and volumes";
    if (!strcmp(group, "postfix"))
        return "Postfix tuning knobs (Postfix's names and defaults)";
    if (!strcmp(group, "mta"))
        return "Settings of our own";
    return group;
}

/* conf_print_group - the heading and table rows of one group. */
static void conf_print_group(FILE *out, const char *group, int first)
{
    static const char *const type_names[] = {
        [CONF_STR] = "string", [CONF_BOOL] = "yes/no", [CONF_INT] = "integer",
        [CONF_SIZE] = "size",  [CONF_TIME] = "time",
    };
    char range[128];

    fprintf(out, "%s### %s\n\n", first ? "" : "\n", conf_group_title(group));
    fprintf(out, "| name | type | default | range | meaning |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < conf_ndefs; i++) {
        const struct conf_def *d = &conf_defs[i];
        if (strcmp(d->group, group))
            continue;
        const struct conf_check *chk = conf_find_check(d->name);
        if (chk)
            snprintf(range, sizeof(range), "%s", chk->range);
        else
            conf_range(d, range, sizeof(range));
        fprintf(out, "| `%s` | %s | ", d->name, type_names[d->type]);
        if (*d->def) {
            fputc('`', out);
            conf_md(out, d->def);
            fputc('`', out);
        } else {
            fputs("*(empty)*", out);
        }
        fputs(" | ", out);
        conf_md(out, range);
        fputs(" | ", out);
        conf_md(out, d->doc);
        fputs(" |\n", out);
    }
}

/* conf_print_aliases - the Postfix names we accept, as a table after the settings. */
static void conf_print_aliases(FILE *out)
{
    fprintf(out, "\n### Postfix names (main.cf) read as settings of ours\n\n");
    fprintf(out, "| Postfix name | setting | how the value is read |\n");
    fprintf(out, "|---|---|---|\n");
    for (size_t i = 0; i < conf_naliases; i++) {
        fprintf(out, "| `%s` | `%s` | ", conf_aliases[i].name, conf_aliases[i].target);
        conf_md(out, conf_aliases[i].mapping);
        fputs(" |\n", out);
    }
}

void conf_print_table(FILE *out)
{
    /* the documented order; a group nobody listed here still appears, after them */
    static const char *const order[] = {"appliance", "terminal", "postfix", "mta"};
    const size_t norder = sizeof(order) / sizeof(order[0]);
    int first = 1;

    for (size_t o = 0; o < norder; o++)
        for (size_t i = 0; i < conf_ndefs; i++)
            if (!strcmp(conf_defs[i].group, order[o])) {
                conf_print_group(out, order[o], first);
                first = 0;
                break;
            }
    for (size_t g = 0; g < conf_ndefs; g++) {
        const char *group = conf_defs[g].group;
        size_t k, o;
        for (o = 0; o < norder && strcmp(order[o], group); o++)
            ;
        for (k = 0; k < g && strcmp(conf_defs[k].group, group); k++)
            ;
        if (o == norder && k == g) { /* unlisted, and its first row */
            conf_print_group(out, group, first);
            first = 0;
        }
    }
    conf_print_aliases(out);
}
