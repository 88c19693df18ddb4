/*
 * conf_postfix.c - Postfix's main.cf names of our settings (conf_aliases): which
 * name stands for which setting, and how its Postfix value syntax (lists, service
 * names, `all`/`loopback-only`, yes/no inversions) becomes ours.
 * Not here: reading the file or `$name` expansion (conf.c).
 */
#include "mta/conf.h"

#include "conf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* conf_map_fn - Postfix's value IN as ours in *OUT (malloc'd); -1 with WHY. */
typedef int (*conf_map_fn)(const char *in, char **out, char *why, size_t n);

/* conf_list_count - entries of a Postfix list (comma and/or white space separated). */
static int conf_list_count(const char *v)
{
    static const char sep[] = ", \t";
    int count = 0;

    for (const char *p = v + strspn(v, sep); *p; p += strspn(p, sep)) {
        count++;
        p += strcspn(p, sep);
    }
    return count;
}

/* conf_is_table - "type:table" ("hash:/etc/x", "cidr:..."): letters, at least one that
 * is no hex digit (so "fe80::1" and "dead:beef::" stay addresses), then ':'. */
static int conf_is_table(const char *tok, size_t len)
{
    size_t i = 0;
    int nonhex = 0;

    for (; i < len && ((tok[i] >= 'a' && tok[i] <= 'z') || tok[i] == '_'); i++)
        if (tok[i] > 'f')
            nonhex = 1;
    return i > 0 && i < len && tok[i] == ':' && nonhex;
}

/* conf_map_networks - mynetworks: addresses and CIDR blocks only. */
static int conf_map_networks(const char *in, char **out, char *why, size_t n)
{
    static const char sep[] = ", \t";

    for (const char *p = in + strspn(in, sep); *p; p += strspn(p, sep)) {
        size_t len = strcspn(p, sep);
        if (*p == '!' || *p == '/' || conf_is_table(p, len)) {
            snprintf(why, n,
                     "'%.*s': mta takes IP addresses and CIDR blocks only (no /file, "
                     "type:table or !negation)",
                     (int)(len < 80 ? len : 80), p);
            return -1;
        }
        p += len;
    }
    return (*out = strdup(in)) ? 0 : -1;
}

/* conf_map_relayhost - one next hop; Postfix's service names as ports. */
static int conf_map_relayhost(const char *in, char **out, char *why, size_t n)
{
    static const struct {
        const char *name, *port;
    } svc[] = {{"smtp", "25"}, {"submission", "587"}, {"smtps", "465"}, {"submissions", "465"}};
    const char *colon = in[0] == '[' ? strstr(in, "]:") : strrchr(in, ':');

    if (conf_list_count(in) > 1) {
        snprintf(why, n, "mta relays to one next hop, not a list");
        return -1;
    }
    if (colon && in[0] == '[')
        colon++;
    for (size_t i = 0; colon && i < sizeof(svc) / sizeof(svc[0]); i++)
        if (!strcmp(colon + 1, svc[i].name))
            return asprintf(out, "%.*s:%s", (int)(colon - in), in, svc[i].port) < 0 ? -1 : 0;
    return (*out = strdup(in)) ? 0 : -1;
}

/* conf_map_interfaces - inet_interfaces: all, loopback-only/localhost or one address. */
static int conf_map_interfaces(const char *in, char **out, char *why, size_t n)
{
    unsigned char a[16];
    size_t len = strlen(in);

    if (!strcmp(in, "all"))
        return (*out = strdup("")) ? 0 : -1;
    if (!strcmp(in, "loopback-only") || !strcmp(in, "localhost"))
        return (*out = strdup("127.0.0.1")) ? 0 : -1;
    if (conf_list_count(in) > 1) {
        snprintf(why, n, "mta listens on one address or all, not a list");
        return -1;
    }
    if (len > 2 && in[0] == '[' && in[len - 1] == ']') /* Postfix allows [addr] here */
        in++, len -= 2;
    if (!(*out = strndup(in, len)))
        return -1;
    if (inet_pton(AF_INET, *out, a) == 1 || inet_pton(AF_INET6, *out, a) == 1)
        return 0;
    free(*out);
    *out = NULL;
    snprintf(why, n, "expected all, loopback-only, localhost or one IP address");
    return -1;
}

/* conf_map_tls_level - smtpd_tls_security_level as ssl_disabled. */
static int conf_map_tls_level(const char *in, char **out, char *why, size_t n)
{
    if (!strcmp(in, "none") || !*in)
        return (*out = strdup("yes")) ? 0 : -1;
    if (!strcmp(in, "may"))
        return (*out = strdup("no")) ? 0 : -1;
    snprintf(why, n, "expected none or may (mta cannot require TLS on smtp_port)");
    return -1;
}

/* conf_map_use_tls - smtpd_use_tls (yes/no) as ssl_disabled (no/yes). */
static int conf_map_use_tls(const char *in, char **out, char *why, size_t n)
{
    if (!strcmp(in, "yes") || !strcmp(in, "no"))
        return (*out = strdup(in[0] == 'y' ? "no" : "yes")) ? 0 : -1;
    snprintf(why, n, "expected yes or no");
    return -1;
}

/* conf_map_bind - smtp_bind_address(6): the one address family Postfix reads it for. */
static int conf_map_bind(const char *in, char **out, char *why, size_t n, int af)
{
    unsigned char a[16];

    if (*in && inet_pton(af, in, a) != 1) {
        snprintf(why, n, "expected an %s address or nothing", af == AF_INET ? "IPv4" : "IPv6");
        return -1;
    }
    return (*out = strdup(in)) ? 0 : -1;
}

static int conf_map_bind4(const char *in, char **out, char *why, size_t n)
{
    return conf_map_bind(in, out, why, n, AF_INET);
}

static int conf_map_bind6(const char *in, char **out, char *why, size_t n)
{
    return conf_map_bind(in, out, why, n, AF_INET6);
}

#define CONF_ALIASES(X)                                                                            \
    X("myhostname", "hostname", NULL, "same value")                                                \
    X("mynetworks", "smtpd_trusted_networks", conf_map_networks,                                   \
      "addresses and CIDR blocks (`[ipv6]/len` too); /file, type:table and !negation are errors")  \
    X("relayhost", "smart_relay", conf_map_relayhost,                                              \
      "one next hop; a port may be a service name (smtp, submission, smtps); a list is an error")  \
    X("inet_interfaces", "in_address", conf_map_interfaces,                                        \
      "`all`: empty (all addresses); `loopback-only`, `localhost`: 127.0.0.1; one address, "       \
      "`[addr]` too; a list is an error")                                                          \
    X("smtpd_tls_cert_file", "ssl_cert_file", NULL,                                                \
      "an absolute path with neither key_volume nor fs_terminal set reads from /")                 \
    X("smtpd_tls_key_file", "ssl_key_file", NULL,                                                  \
      "as smtpd_tls_cert_file; unset, it is the certificate file (Postfix's default)")             \
    X("smtpd_tls_security_level", "ssl_disabled", conf_map_tls_level,                              \
      "`none` or empty: yes; `may`: no (also SMTPS on smtps_port); `encrypt` is an error")         \
    X("smtpd_use_tls", "ssl_disabled", conf_map_use_tls, "`yes`: no; `no`: yes")                   \
    X("queue_directory", "data_volume", NULL, "same value")                                        \
    X("smtp_bind_address", "net_source_address", conf_map_bind4, "an IPv4 address or empty")       \
    X("smtp_bind_address6", "net_source_address", conf_map_bind6, "an IPv6 address or empty")

#define CONF_X_ALIAS(name, target, fn, mapping) {name, target, mapping},
const struct conf_alias_def conf_aliases[] = {CONF_ALIASES(CONF_X_ALIAS)};
#undef CONF_X_ALIAS
const size_t conf_naliases = sizeof(conf_aliases) / sizeof(conf_aliases[0]);

#define CONF_X_ALIAS_FN(name, target, fn, mapping) fn,
static const conf_map_fn conf_alias_maps[] = {CONF_ALIASES(CONF_X_ALIAS_FN)};
#undef CONF_X_ALIAS_FN

/* conf_find_alias - index of Postfix name NAME in conf_aliases, or -1. */
int conf_find_alias(const char *name)
{
    for (size_t i = 0; i < conf_naliases; i++)
        if (!strcmp(conf_aliases[i].name, name))
            return (int)i;
    return -1;
}
int conf_alias_map(int a, const char *in, char **out, char *why, size_t n)
{
    *out = NULL;
    if (a < 0 || (size_t)a >= conf_naliases || !conf_alias_maps[a])
        return 0; /* the same value */
    return conf_alias_maps[a](in, out, why, n);
}
