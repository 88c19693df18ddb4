/*
 * smtpd_cmd.h - the SMTP command vocabulary: verbs, their flags and the split
 * of a command line into verb and argument. Pure (no session, no I/O), so the
 * lexer is unit-tested on its own.
 * Not here: what a command does (smtpd_proto.c pairs each id with a check and
 * an action).
 */
#ifndef SMTPD_CMD_H
#define SMTPD_CMD_H

#include <limits.h>
#include <stddef.h>

enum smtpd_cmd_id {
    SMTPD_CMD_HELO,
    SMTPD_CMD_EHLO,
    SMTPD_CMD_STARTTLS,
    SMTPD_CMD_AUTH,
    SMTPD_CMD_MAIL,
    SMTPD_CMD_RCPT,
    SMTPD_CMD_DATA,
    SMTPD_CMD_BDAT,
    SMTPD_CMD_RSET,
    SMTPD_CMD_NOOP,
    SMTPD_CMD_VRFY,
    SMTPD_CMD_HELP,
    SMTPD_CMD_QUIT,
    SMTPD_CMD_UNKNOWN, /* keep last: counted as "unknown" in the disconnect line */
    SMTPD_CMD_COUNT
};

/* Flags of a command. */
enum {
    SMTPD_CMDF_LAST = 1, /* must be the last of a pipelined group (RFC 2920 3.1) */
    SMTPD_CMDF_JUNK = 2, /* repeatable at no cost to the client: counts against
                          * smtpd_junk_command_limit (Postfix's SMTPD_CMD_FLAG_LIMIT) */
};

struct smtpd_cmd_def {
    const char *name;  /* upper case verb; also the disconnect-line counter name (lower) */
    const char *lname; /* lower case, for the disconnect line */
    int flags;
};

extern const struct smtpd_cmd_def smtpd_cmd_defs[SMTPD_CMD_COUNT];

/*
 * smtpd_cmd_parse - split LINE (NUL-terminated, no line end) into a command id
 * and *ARG (the text after the verb and one or more spaces; "" when none).
 * MAIL and RCPT are recognised by their verb; "FROM:"/"TO:" is checked by the
 * handler so that a wrong form gets the 501 Syntax reply, as Postfix does.
 */
enum smtpd_cmd_id smtpd_cmd_parse(const char *line, const char **arg);

/*
 * smtpd_count_inc - add one to a per-session counter (errors, junk commands,
 * command counts) that saturates at INT_MAX: a session may last as long as
 * its client keeps talking, and a wrapped counter would undo a limit.
 */
static inline void smtpd_count_inc(int *n)
{
    if (*n < INT_MAX)
        (*n)++;
}

#endif
