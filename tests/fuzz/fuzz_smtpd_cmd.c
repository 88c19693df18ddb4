/*
 * fuzz_smtpd_cmd.c - SMTP command lines as a client sends them: each input is
 * split into lines (LF, an optional CR before it dropped, as the session does)
 * and every line goes through the command lexer, then through the argument
 * parsers its verb uses in smtpd_proto.c (MAIL FROM:/RCPT TO: path and ESMTP
 * parameters, VRFY, the HELO name in the Received: header).
 * Not here: the session's reading and pipelining (integration tests).
 */
#include <event2/buffer.h>
#include <strings.h>

#include "fuzz_util.h"
#include "smtpd/smtpd_addr.h"
#include "smtpd/smtpd_cmd.h"
#include "smtpd/smtpd_data.h"

/* fuzz_path - a path and its parameters, as smtpd_proto_mail/rcpt parse them. */
static void fuzz_path(const char *arg, const char *prefix, int mail)
{
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256];
    const char *end = NULL, *reply = NULL;
    size_t n = strlen(prefix);
    int r;

    if (strncasecmp(arg, prefix, n) != 0)
        return;
    arg += n;
    r = smtpd_addr_parse(arg, mail, 1, addr, &end);
    if (r != SMTPD_ADDR_OK)
        return;
    FUZZ_CHECK(strlen(addr) <= SMTPD_ADDR_MAX);
    FUZZ_CHECK(end >= arg && end <= arg + strlen(arg));
    if (mail) {
        struct smtpd_mail_params mp;
        if (smtpd_mail_params_parse(end, &mp, rbuf, sizeof(rbuf), &reply) < 0)
            FUZZ_CHECK(reply && reply[0] >= '4' && reply[0] <= '5');
        else
            FUZZ_CHECK(strlen(mp.envid) <= SMTPD_ENVID_MAX);
    } else {
        struct smtpd_rcpt_params rp;
        if (smtpd_rcpt_params_parse(end, &rp, rbuf, sizeof(rbuf), &reply) < 0)
            FUZZ_CHECK(reply && reply[0] >= '4' && reply[0] <= '5');
        else
            FUZZ_CHECK(strlen(rp.orcpt) <= SMTPD_ORCPT_MAX);
    }
}

/* fuzz_line - one command line (NUL-terminated, no line end). */
static void fuzz_line(const char *line)
{
    const char *arg = NULL;
    enum smtpd_cmd_id id = smtpd_cmd_parse(line, &arg);
    char addr[SMTPD_ADDR_MAX + 1];
    const char *end;

    FUZZ_CHECK(id >= 0 && id < SMTPD_CMD_COUNT);
    FUZZ_CHECK(arg >= line && arg <= line + strlen(line));
    switch (id) {
    case SMTPD_CMD_MAIL:
        fuzz_path(arg, "FROM:", 1);
        break;
    case SMTPD_CMD_RCPT:
        fuzz_path(arg, "TO:", 0);
        break;
    case SMTPD_CMD_VRFY:
        (void)smtpd_addr_parse(arg, 0, 1, addr, &end);
        break;
    case SMTPD_CMD_HELO:
    case SMTPD_CMD_EHLO: {
        struct evbuffer *out = evbuffer_new();
        if (!out)
            abort();
        smtpd_data_received(out, arg, "unknown", "192.0.2.1", "mx.example", "ESMTP",
                            "0123456789ABCDEF", NULL, 1700000000, NULL);
        evbuffer_free(out);
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_strndup(data, size), *p = buf, *nl;

    for (;;) {
        nl = memchr(p, '\n', (size_t)(buf + size - p));
        if (nl) {
            *nl = '\0';
            if (nl > p && nl[-1] == '\r')
                nl[-1] = '\0';
        }
        fuzz_line(p);
        if (!nl)
            break;
        p = nl + 1;
    }
    free(buf);
    return 0;
}
