/*
 * smtpd_cmd.c - the command vocabulary and the command-line lexer.
 * Order of the table is Postfix's order of the disconnect-line counters.
 * Not here: the command actions (smtpd_proto.c).
 */
#include "smtpd_cmd.h"

#include <string.h>
#include <strings.h>

const struct smtpd_cmd_def smtpd_cmd_defs[SMTPD_CMD_COUNT] = {
    /* JUNK: Postfix's smtpd_junk_command_limit set (HELO EHLO RSET NOOP VRFY ETRN) and HELP.
     * ETRN has no entry by design: the appliance keeps no fast-flush service (Postfix's
     * fast_flush_domains), so ETRN is an unknown command (502) and counts as an error. */
    [SMTPD_CMD_HELO] = {"HELO", "helo", SMTPD_CMDF_LAST | SMTPD_CMDF_JUNK},
    [SMTPD_CMD_EHLO] = {"EHLO", "ehlo", SMTPD_CMDF_LAST | SMTPD_CMDF_JUNK},
    /* STARTTLS is not LAST: pipelined input after it is dropped (smtpd_tls.c) */
    [SMTPD_CMD_STARTTLS] = {"STARTTLS", "starttls", 0},
    [SMTPD_CMD_AUTH] = {"AUTH", "auth", 0},
    [SMTPD_CMD_MAIL] = {"MAIL", "mail", 0},
    [SMTPD_CMD_RCPT] = {"RCPT", "rcpt", 0},
    [SMTPD_CMD_DATA] = {"DATA", "data", SMTPD_CMDF_LAST},
    [SMTPD_CMD_BDAT] = {"BDAT", "bdat", 0},
    [SMTPD_CMD_RSET] = {"RSET", "rset", SMTPD_CMDF_JUNK},
    [SMTPD_CMD_NOOP] = {"NOOP", "noop", SMTPD_CMDF_LAST | SMTPD_CMDF_JUNK},
    [SMTPD_CMD_VRFY] = {"VRFY", "vrfy", SMTPD_CMDF_LAST | SMTPD_CMDF_JUNK},
    [SMTPD_CMD_HELP] = {"HELP", "help", SMTPD_CMDF_LAST | SMTPD_CMDF_JUNK},
    [SMTPD_CMD_QUIT] = {"QUIT", "quit", 0},
    [SMTPD_CMD_UNKNOWN] = {"UNKNOWN", "unknown", 0},
};

enum smtpd_cmd_id smtpd_cmd_parse(const char *line, const char **arg)
{
    size_t n;

    while (*line == ' ' || *line == '\t')
        line++;
    n = strcspn(line, " \t");
    *arg = line + n;
    while (**arg == ' ' || **arg == '\t')
        (*arg)++;
    for (int i = 0; i < SMTPD_CMD_UNKNOWN; i++) {
        if (strlen(smtpd_cmd_defs[i].name) == n &&
            strncasecmp(line, smtpd_cmd_defs[i].name, n) == 0)
            return (enum smtpd_cmd_id)i;
    }
    *arg = line;
    return SMTPD_CMD_UNKNOWN;
}
