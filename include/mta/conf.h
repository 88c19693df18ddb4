/*
 * conf.h - the daemon's settings: one table (CONF_SETTINGS) is the single source
 * of truth for names, types, defaults, limits and documentation. The struct, the
 * parser, `mtactl check` and docs/configuration.md are all derived from it.
 * Not here: what a setting does (each module reads its fields).
 */
#ifndef MTA_CONF_H
#define MTA_CONF_H

#include <stddef.h>
#include <stdio.h>

enum conf_type {
    CONF_STR,  /* free text */
    CONF_BOOL, /* yes | no */
    CONF_INT,  /* decimal integer within [min, max] */
    CONF_SIZE, /* bytes: decimal, optional k/m/g suffix (1024-based) */
    CONF_TIME, /* seconds: decimal with Postfix unit s/m/h/d/w (default unit s) */
};

/*
 * X(name, type, default, min, max, group, doc)
 * group: "appliance" (appliance-spec.md), "terminal" (terminals and volumes),
 * "postfix" (Postfix tuning knobs with Postfix's names and defaults), "mta" (ours).
 * min/max apply to INT, SIZE and TIME values.
 */
#define CONF_SETTINGS(X)                                                                           \
    X(hostname, CONF_STR, "", 0, 0, "appliance",                                                   \
      "Host name of the mail relay (Postfix myhostname). Empty: the system host name.")            \
    X(logs_enabled, CONF_BOOL, "no", 0, 0, "appliance",                                            \
      "yes: write the mail log to maillog_filename on the log terminal (which must be set).")      \
    X(maillog_filename, CONF_STR, "", 0, 0, "appliance",                                           \
      "Mail log file on the log terminal's share; missing directories are created. Empty: none.")  \
    X(maillog_rotate_size, CONF_SIZE, "0", 0, 9223372036854775807L, "mta",                         \
      "Rotate maillog_filename on the share beyond this size (bytes; k/m/g). 0: never.")           \
    X(maillog_rotate_count, CONF_INT, "5", 1, 1000, "mta",                                         \
      "Rotated mail logs kept on the share: maillog.1 (newest) .. maillog.N.")                     \
    X(smtpd_trusted_networks, CONF_STR, "127.0.0.1", 0, 0, "appliance",                            \
      "IPv4/IPv6 addresses and CIDR blocks (comma/space separated) whose clients may relay.")      \
    X(smart_relay, CONF_STR, "", 0, 0, "appliance",                                                \
      "Next hop for all outgoing mail, Postfix syntax: host, host:port, [host], [ip]:port.")       \
    X(cc_mta, CONF_STR, "", 0, 0, "appliance",                                                     \
      "Host that receives an independent copy of every accepted message. Ignored with "            \
      "smart_relay.")                                                                              \
    X(username, CONF_STR, "", 0, 0, "appliance",                                                   \
      "User name for the web UI and HTTP API. Empty: no authentication.")                          \
    X(password, CONF_STR, "", 0, 0, "appliance", "Password for the web UI and HTTP API.")          \
    X(ui_port, CONF_INT, "80", 1, 65535, "appliance", "Port of the HTTP service on in_address.")   \
    X(http_connection_limit, CONF_INT, "128", 1, 100000, "mta",                                    \
      "Most HTTP connections open at once; a connection beyond it gets 503 and is closed.")        \
    X(http_timeout, CONF_TIME, "30s", 1, 3600, "mta",                                              \
      "Idle time after which an HTTP connection is closed (also while a request dawdles).")        \
    X(http_auth_failure_limit, CONF_INT, "5", 1, 100000, "mta",                                    \
      "Wrong web UI credentials from one client address before it gets 429 (see lockout).")        \
    X(http_auth_lockout_time, CONF_TIME, "60s", 1, 86400, "mta",                                   \
      "How long a client over http_auth_failure_limit gets 429, and the window failures count "    \
      "in.")                                                                                       \
    X(ssl_disabled, CONF_BOOL, "yes", 0, 0, "appliance",                                           \
      "no: serve SMTPS on smtps_port and offer STARTTLS (needs the key and certificate).")         \
    X(ssl_key_file, CONF_STR, "server.key", 0, 0, "appliance",                                     \
      "Private key (PEM, no password), relative to the key volume or the fs terminal.")            \
    X(ssl_cert_file, CONF_STR, "server.pem", 0, 0, "appliance",                                    \
      "Certificate (PEM), relative to the key volume or the fs terminal.")                         \
    X(timezone, CONF_STR, "", 0, 0, "appliance",                                                   \
      "tz database name for log timestamps (e.g. Europe/Berlin). Empty: unchanged.")               \
    X(data_volume, CONF_STR, "", 0, 0, "terminal",                                                 \
      "Directory of the mail queue (required; created if missing).")                               \
    X(key_volume, CONF_STR, "", 0, 0, "terminal",                                                  \
      "Directory holding ssl_key_file and ssl_cert_file. Not together with fs_terminal.")          \
    X(fs_terminal, CONF_STR, "", 0, 0, "terminal",                                                 \
      "nfs://server/export[?opts]: read the SSL files from this NFS export (libnfs).")             \
    X(log_terminal, CONF_STR, "", 0, 0, "terminal",                                                \
      "smb://server[:port]/share: CIFS share for the mail log (anonymous login).")                 \
    X(mon_terminal, CONF_STR, "", 0, 0, "terminal",                                                \
      "ip:port: counters are pushed here as StatsD gauges over UDP.")                              \
    X(net_source_address, CONF_STR, "", 0, 0, "terminal",                                          \
      "Source IP address of outgoing SMTP connections.")                                           \
    X(in_address, CONF_STR, "", 0, 0, "terminal",                                                  \
      "Listen address for SMTP, SMTPS and HTTP. Empty: all IPv4 and IPv6 addresses.")              \
    X(smtp_port, CONF_INT, "25", 1, 65535, "terminal", "Port of the SMTP listener.")               \
    X(smtps_port, CONF_INT, "465", 1, 65535, "terminal",                                           \
      "Port of the SMTPS (implicit TLS) listener; only with ssl_disabled = no.")                   \
    X(submission_port, CONF_INT, "0", 0, 65535, "terminal",                                        \
      "Port of the submission listener (587 in production; 0: off): STARTTLS, then AUTH, "         \
      "before MAIL, as Postfix's master.cf submission entry. Needs ssl_disabled = no and "         \
      "smtpd_sasl_auth_enable = yes.")                                                             \
    X(dns_servers, CONF_STR, "", 0, 0, "terminal",                                                 \
      "ip[:port],... DNS servers for MX/A/AAAA lookups. Empty: the system's resolv.conf.")         \
    X(maillog_file, CONF_STR, "", 0, 0, "postfix",                                                 \
      "Local file that also receives every mail log record. Empty: none.")                         \
    X(syslog_name, CONF_STR, "postfix", 0, 0, "postfix",                                           \
      "Program name in mail log records (syslog_name/service[pid]).")                              \
    X(mail_owner, CONF_STR, "mta", 0, 0, "postfix",                                                \
      "Account mtad runs as after start-up when started as root (owns the data volume, mode "      \
      "0710). Started as another user, mtad stays that user.")                                     \
    X(setgid_group, CONF_STR, "mtadrop", 0, 0, "postfix",                                          \
      "Group of the setgid postdrop and postqueue programs: it may enter the data volume, "        \
      "write the maildrop and use the control socket's public commands.")                          \
    X(command_directory, CONF_STR, "", 0, 0, "postfix",                                            \
      "Where sendmail finds postdrop and postqueue. Empty: the directory of the sendmail "         \
      "program itself (the install puts them together, in /usr/sbin).")                            \
    X(message_size_limit, CONF_SIZE, "10240000", 1024, 2147483647L, "postfix",                     \
      "Largest message accepted, in bytes (SIZE= and the DATA stream).")                           \
    X(smtpd_recipient_limit, CONF_INT, "1000", 1, 100000, "postfix",                               \
      "Most recipients accepted in one transaction.")                                              \
    X(smtpd_timeout, CONF_TIME, "300s", 1, 86400, "postfix",                                       \
      "Idle time after which an SMTP session is closed (421 4.4.2).")                              \
    X(smtpd_client_connection_count_limit, CONF_INT, "50", 0, 1000000, "postfix",                  \
      "Most simultaneous sessions from one client address (0: no limit). Trusted clients too. "    \
      "A session whose client has closed its side no longer counts.")                              \
    X(smtpd_upstream_proxy_protocol, CONF_STR, "", 0, 0, "postfix",                                \
      "haproxy: every SMTP listener (smtp, submission, smtps) expects a PROXY v1 or v2 header "    \
      "before the banner and uses the client address it names (docs/scale-out.md). Empty: off.")   \
    X(smtpd_upstream_proxy_timeout, CONF_TIME, "5s", 1, 3600, "postfix",                           \
      "How long to wait for the PROXY header (then: 421 4.3.0, close).")                           \
    X(smtpd_session_limit, CONF_INT, "10000", 1, 1000000, "mta",                                   \
      "Most SMTP sessions served at once; beyond it 421 4.3.2.")                                   \
    X(smtpd_session_buffer_limit, CONF_SIZE, "262144", 4096, 67108864, "mta",                      \
      "Most bytes buffered for one session before it stops reading (backpressure).")               \
    X(line_length_limit, CONF_INT, "2048", 512, 1048576, "postfix",                                \
      "Longest SMTP command line accepted (500 5.5.2 beyond).")                                    \
    X(header_size_limit, CONF_SIZE, "102400", 1024, 67108864, "postfix",                           \
      "Largest message header; more is kept as body, as Postfix does.")                            \
    X(hopcount_limit, CONF_INT, "50", 1, 1000, "postfix",                                          \
      "Most Received: headers before the message is rejected (554 5.4.6).")                        \
    X(smtpd_hard_error_limit, CONF_INT, "20", 1, 1000, "postfix",                                  \
      "Errors after which the session is closed (421 4.7.0).")                                     \
    X(smtpd_soft_error_limit, CONF_INT, "10", 1, 1000, "postfix",                                  \
      "Errors after which each error reply is delayed by smtpd_error_sleep_time.")                 \
    X(smtpd_error_sleep_time, CONF_TIME, "1s", 0, 60, "postfix",                                   \
      "Delay of error replies after smtpd_soft_error_limit errors (never blocks the loop).")       \
    X(smtpd_junk_command_limit, CONF_INT, "100", 1, 1000000, "postfix",                            \
      "Junk commands (NOOP RSET VRFY HELP HELO EHLO) before each one counts as an error.")         \
    X(smtpd_forbid_bare_newline, CONF_STR, "normalize", 0, 0, "postfix",                           \
      "normalize (bare LF ends a line, never the DATA), reject (521 5.5.2), or no.")               \
    X(smtpd_sasl_auth_enable, CONF_BOOL, "no", 0, 0, "postfix",                                    \
      "yes: offer SMTP AUTH (Cyrus SASL); authenticated clients may relay.")                       \
    X(smtpd_sasl_path, CONF_STR, "smtpd", 0, 0, "postfix",                                         \
      "Cyrus SASL application name: its configuration file is NAME.conf.")                         \
    X(smtpd_sasl_config_dir, CONF_STR, "", 0, 0, "mta",                                            \
      "Directory holding the Cyrus SASL NAME.conf. Empty: the Cyrus default (/etc/sasl2 ...).")    \
    X(smtpd_tls_auth_only, CONF_BOOL, "yes", 0, 0, "postfix",                                      \
      "yes: AUTH is offered and accepted only after STARTTLS or on SMTPS.")                        \
    X(dkim_sign, CONF_BOOL, "no", 0, 0, "mta",                                                     \
      "yes: sign mail from trusted networks, authenticated clients and sendmail with DKIM "        \
      "(docs/dkim.md) when its From: domain is in dkim_domains.")                                  \
    X(dkim_domains, CONF_STR, "", 0, 0, "mta",                                                     \
      "From: domains whose mail is signed (comma/space separated). Empty: the domain of "          \
      "myhostname.")                                                                               \
    X(dkim_selector, CONF_STR, "", 0, 0, "mta",                                                    \
      "DKIM selector (s=); the public key is published at SELECTOR._domainkey.DOMAIN.")            \
    X(dkim_key_file, CONF_STR, "dkim.key", 0, 0, "mta",                                            \
      "DKIM private key (PEM, RSA >= 1024 bits or Ed25519, no password), on the key volume or "    \
      "the fs terminal like ssl_key_file; with neither, an absolute path.")                        \
    X(dkim_headers, CONF_STR,                                                                      \
      "from reply-to subject date to cc resent-date resent-from resent-to resent-cc in-reply-to "  \
      "references list-id list-help list-unsubscribe list-subscribe list-post list-owner "         \
      "list-archive",                                                                              \
      0, 0, "mta", "Header fields signed when present (OpenDKIM's SignHeaders default).")          \
    X(smtpd_milters, CONF_STR, "", 0, 0, "postfix",                                                \
      "Mail filters for SMTP mail (milter protocol, docs/milter.md): inet:host:port and "          \
      "unix:/path, comma/space separated, asked in this order.")                                   \
    X(non_smtpd_milters, CONF_STR, "", 0, 0, "postfix",                                            \
      "Mail filters for local mail from sendmail/postdrop (pickup), same syntax.")                 \
    X(milter_default_action, CONF_STR, "tempfail", 0, 0, "postfix",                                \
      "What an unreachable, slow or broken milter means: tempfail, accept or reject.")             \
    X(milter_connect_timeout, CONF_TIME, "30s", 1, 3600, "postfix", "Connecting to a milter.")     \
    X(milter_command_timeout, CONF_TIME, "30s", 1, 3600, "postfix",                                \
      "A milter's reply to a command other than the message content.")                             \
    X(milter_content_timeout, CONF_TIME, "300s", 1, 3600, "postfix",                               \
      "A milter's reply while it gets the message content and end of message.")                    \
    X(milter_protocol, CONF_INT, "6", 2, 6, "postfix",                                             \
      "Milter protocol version offered (2, 3, 4 or 6).")                                           \
    X(milter_connect_macros, CONF_STR, "j {daemon_name} {daemon_addr} v _", 0, 0, "postfix",       \
      "Macros sent to milters with the connect event.")                                            \
    X(milter_helo_macros, CONF_STR,                                                                \
      "{tls_version} {cipher} {cipher_bits} {cert_subject} "                                       \
      "{cert_issuer}",                                                                             \
      0, 0, "postfix", "Macros sent with HELO/EHLO.")                                              \
    X(milter_mail_macros, CONF_STR,                                                                \
      "i {auth_type} {auth_authen} {auth_author} {mail_addr} "                                     \
      "{mail_host} {mail_mailer}",                                                                 \
      0, 0, "postfix", "Macros sent with MAIL FROM.")                                              \
    X(milter_rcpt_macros, CONF_STR, "i {rcpt_addr} {rcpt_host} {rcpt_mailer}", 0, 0, "postfix",    \
      "Macros sent with RCPT TO.")                                                                 \
    X(milter_data_macros, CONF_STR, "i", 0, 0, "postfix", "Macros sent with DATA.")                \
    X(milter_end_of_header_macros, CONF_STR, "i", 0, 0, "postfix",                                 \
      "Macros sent with the headers and end of headers.")                                          \
    X(milter_end_of_data_macros, CONF_STR, "i", 0, 0, "postfix",                                   \
      "Macros sent with the body and end of message.")                                             \
    X(milter_unknown_command_macros, CONF_STR, "", 0, 0, "postfix",                                \
      "Macros for unknown commands (accepted; unknown commands are not sent to milters).")         \
    X(milter_macro_daemon_name, CONF_STR, "", 0, 0, "postfix",                                     \
      "The {daemon_name} macro. Empty: myhostname.")                                               \
    X(maximal_queue_lifetime, CONF_TIME, "5d", 0, 31536000, "postfix",                             \
      "How long undeliverable mail stays queued before it bounces.")                               \
    X(bounce_queue_lifetime, CONF_TIME, "5d", 0, 31536000, "postfix",                              \
      "How long an undeliverable bounce (null sender) stays queued.")                              \
    X(minimal_backoff_time, CONF_TIME, "300s", 1, 31536000, "postfix",                             \
      "Shortest retry interval for deferred mail.")                                                \
    X(maximal_backoff_time, CONF_TIME, "4000s", 1, 31536000, "postfix",                            \
      "Longest retry interval for deferred mail.")                                                 \
    X(queue_run_delay, CONF_TIME, "300s", 1, 31536000, "postfix",                                  \
      "How often the deferred queue is scanned for mail due for a retry.")                         \
    X(qmgr_message_active_limit, CONF_INT, "20000", 1, 10000000, "postfix",                        \
      "Most messages the scheduler keeps in full in memory (the active queue).")                   \
    X(queue_minfree, CONF_SIZE, "0", 0, 9223372036854775807L, "postfix",                           \
      "Free bytes the data volume must keep; below it new mail gets 452 4.3.1.")                   \
    X(default_destination_concurrency_limit, CONF_INT, "20", 1, 1000, "postfix",                   \
      "Most parallel deliveries to one destination.")                                              \
    X(default_process_limit, CONF_INT, "100", 1, 100000, "postfix",                                \
      "Most parallel outbound SMTP deliveries in all.")                                            \
    X(smtp_destination_concurrency_limit, CONF_INT, "0", 0, 1000, "postfix",                       \
      "Most parallel deliveries (connections) to one destination. 0: "                             \
      "$default_destination_concurrency_limit.")                                                   \
    X(initial_destination_concurrency, CONF_INT, "5", 1, 1000, "postfix",                          \
      "Slow start: the concurrency a destination starts with.")                                    \
    X(default_destination_concurrency_positive_feedback, CONF_STR, "1/concurrency", 0, 0,          \
      "postfix", "Window growth per delivery that reached the destination (N or N/concurrency).")  \
    X(default_destination_concurrency_negative_feedback, CONF_STR, "1/concurrency", 0, 0,          \
      "postfix", "Window shrink per failed delivery (N or N/concurrency).")                        \
    X(default_destination_concurrency_failed_cohort_limit, CONF_INT, "1", 0, 1000, "postfix",      \
      "Failed cohorts after which a destination is throttled for minimal_backoff_time. 0: never.") \
    X(default_destination_recipient_limit, CONF_INT, "50", 1, 100000, "postfix",                   \
      "Most recipients per delivery (one SMTP transaction).")                                      \
    X(smtp_destination_recipient_limit, CONF_INT, "0", 0, 100000, "postfix",                       \
      "Most recipients per SMTP transaction. 0: $default_destination_recipient_limit.")            \
    X(smtp_destination_rate_delay, CONF_TIME, "0s", 0, 86400, "postfix",                           \
      "Pause between deliveries to one destination; non-zero means concurrency 1.")                \
    X(smtp_connection_cache_on_demand, CONF_BOOL, "yes", 0, 0, "postfix",                          \
      "Reuse a connection for the next delivery to the same destination.")                         \
    X(smtp_connection_cache_time_limit, CONF_TIME, "2s", 1, 300, "postfix",                        \
      "How long an unused connection is kept open for reuse.")                                     \
    X(smtp_connection_reuse_time_limit, CONF_TIME, "300s", 1, 86400, "postfix",                    \
      "A connection is not reused once it is this old.")                                           \
    X(smtp_connection_reuse_count_limit, CONF_INT, "0", 0, 1000000, "postfix",                     \
      "How often a connection may be reused. 0: no limit.")                                        \
    X(smtp_connect_timeout, CONF_TIME, "30s", 1, 3600, "postfix", "Outbound: TCP connect.")        \
    X(smtp_helo_timeout, CONF_TIME, "300s", 1, 3600, "postfix", "Outbound: greeting and EHLO.")    \
    X(smtp_mail_timeout, CONF_TIME, "300s", 1, 3600, "postfix", "Outbound: MAIL FROM reply.")      \
    X(smtp_rcpt_timeout, CONF_TIME, "300s", 1, 3600, "postfix", "Outbound: RCPT TO reply.")        \
    X(smtp_data_init_timeout, CONF_TIME, "120s", 1, 3600, "postfix", "Outbound: DATA reply.")      \
    X(smtp_data_xfer_timeout, CONF_TIME, "180s", 1, 3600, "postfix",                               \
      "Outbound: sending the message content.")                                                    \
    X(smtp_data_done_timeout, CONF_TIME, "600s", 1, 3600, "postfix",                               \
      "Outbound: reply to the end-of-data dot.")                                                   \
    X(smtp_quit_timeout, CONF_TIME, "300s", 1, 3600, "postfix", "Outbound: QUIT reply.")           \
    X(smtp_line_length_limit, CONF_INT, "998", 0, 1048576, "postfix",                              \
      "Outbound: longest message line sent (without CRLF); longer ones are broken with CRLF "      \
      "SPACE. 0: no limit.")                                                                       \
    X(smtp_tls_security_level, CONF_STR, "may", 0, 0, "postfix",                                   \
      "Outbound TLS: none, may (STARTTLS when offered), encrypt, dane, verify or secure "          \
      "(docs/tls-policy.md).")                                                                     \
    X(smtp_tls_CAfile, CONF_STR, "", 0, 0, "postfix",                                              \
      "PEM file of CA certificates trusted by verify/secure (and MTA-STS). Empty: the system's.")  \
    X(smtp_tls_CApath, CONF_STR, "", 0, 0, "postfix",                                              \
      "Directory of hashed CA certificates, as smtp_tls_CAfile. Empty: the system's.")             \
    X(smtp_dns_support_level, CONF_STR, "", 0, 0, "postfix",                                       \
      "dnssec: trust the AD bit of the dns_servers resolver (needed for DANE); empty or enabled: " \
      "plain DNS.")                                                                                \
    X(smtp_mta_sts, CONF_BOOL, "no", 0, 0, "mta",                                                  \
      "yes: apply the next-hop domain's MTA-STS policy (RFC 8461) to MX delivery "                 \
      "(docs/tls-policy.md).")                                                                     \
    X(smtp_mta_sts_port, CONF_INT, "443", 1, 65535, "mta",                                         \
      "Port of https://mta-sts.DOMAIN/ for MTA-STS policy fetches (a test knob; RFC 8461: 443).")  \
    X(smtp_mta_sts_timeout, CONF_TIME, "10s", 1, 300, "mta",                                       \
      "Time limit of one MTA-STS policy fetch.")

/* The installed configuration file, read when no -c is given (CMake: MTA_SYSCONFDIR). */
#ifndef MTA_DEFAULT_CONF
#define MTA_DEFAULT_CONF "/etc/mta/mtad.conf"
#endif

#define CONF_X_ONE(name, type, def, min, max, group, doc) +1
#define CONF_NSETTINGS (0 CONF_SETTINGS(CONF_X_ONE))

/* The parsed configuration. Strings are owned by the struct (never NULL). */
#define CONF_CTYPE_CONF_STR char *
#define CONF_CTYPE_CONF_BOOL int
#define CONF_CTYPE_CONF_INT long
#define CONF_CTYPE_CONF_SIZE long long
#define CONF_CTYPE_CONF_TIME long /* seconds */
#define CONF_X_FIELD(name, type, def, min, max, group, doc) CONF_CTYPE_##type name;
struct conf {
    CONF_SETTINGS(CONF_X_FIELD)
#undef CONF_X_FIELD
    /* derived: where the config came from, for messages */
    char *path;
    /* derived: hostname, or when it is empty the system's (gethostname; "localhost" if that
     * fails): the name in greetings, EHLO, Received:, bounces, pages and log lines */
    char *myhostname;
    /* derived: the Postfix name (conf_aliases) that gave a setting its value, else NULL */
    const char *set_as[CONF_NSETTINGS];
};

/* One row of the table, for iteration (docs, `mtactl check`, tests). */
struct conf_def {
    const char *name;
    enum conf_type type;
    const char *def;
    long long min, max;
    const char *group;
    const char *doc;
};
extern const struct conf_def conf_defs[];
extern const size_t conf_ndefs;

/*
 * Postfix main.cf names accepted for settings of ours with the same meaning
 * (docs/configuration.md). A value given under a Postfix name is read with Postfix's
 * syntax ($name expansion, lists, service names) and mapped to ours; later lines win
 * across both spellings.
 */
struct conf_alias_def {
    const char *name;    /* Postfix's name */
    const char *target;  /* our setting */
    const char *mapping; /* how the value is read (docs) */
};
extern const struct conf_alias_def conf_aliases[];
extern const size_t conf_naliases;

/*
 * conf_load - defaults, then FILE (if not NULL), then each "name=value" override.
 * Every problem is appended to *errors as one line ending in '\n' (the exact
 * start-up messages of appliance-spec.md where they apply, otherwise
 * "Error: FILE:LINE: ..." naming the setting). Returns NULL when there was any
 * error (*errors is then malloc'd text the caller frees), else the config.
 */
struct conf *conf_load(const char *file, char *const *overrides, int noverrides, char **errors);
void conf_free(struct conf *c);

/* conf_timezone_valid - 1 when NAME is a compiled zone of the tz database (TZDIR honoured). */
int conf_timezone_valid(const char *name);

/* conf_print_table - the settings table as Markdown (docs/configuration.md body). */
void conf_print_table(FILE *out);

/*
 * conf_print_values - "name = value" per setting (times in seconds with "s");
 * with ONLY_CHANGED just those that differ from the default (like postconf -n).
 */
void conf_print_values(const struct conf *c, FILE *out, int only_changed);

/* conf_parse_size/conf_parse_time - value parsers, exposed for tests. 0 ok, -1 bad. */
int conf_parse_size(const char *s, long long *out);
int conf_parse_time(const char *s, long *out);

#endif
