/*
 * test_smtpd_addr.c - envelope paths and ESMTP parameters against the golden
 * file tests/golden/smtpd/addr.in/.ref (quoted local parts, IP literals,
 * source routes, SMTPUTF8, length limits, garbage; SIZE/BODY/SMTPUTF8/RET/
 * ENVID/NOTIFY/ORCPT with their Postfix replies), plus xtext edge cases.
 * Input lines may use \xHH escapes for 8-bit bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtpd_addr.h"

/* unescape - \xHH to bytes, in place. */
static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        unsigned v;
        if (s[0] == '\\' && s[1] == 'x' && sscanf(s + 2, "%2x", &v) == 1) {
            *o++ = (char)v;
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

/* result - the observable outcome of one golden line. */
static void result(const char *kind, const char *text, char *out, size_t len)
{
    char addr[SMTPD_ADDR_MAX + 1], rbuf[256];
    const char *end = NULL, *reply;
    if (strcmp(kind, "mail") == 0) {
        struct smtpd_mail_params p;
        if (smtpd_mail_params_parse(text, &p, rbuf, sizeof(rbuf), &reply) < 0)
            snprintf(out, len, "reply %s", reply);
        else
            snprintf(out, len, "ok size=%lld body8=%d utf8=%d ret=%d envid=%s", p.size, p.body_8bit,
                     p.smtputf8, p.ret, p.envid);
    } else if (strcmp(kind, "rcpt") == 0) {
        struct smtpd_rcpt_params p;
        if (smtpd_rcpt_params_parse(text, &p, rbuf, sizeof(rbuf), &reply) < 0)
            snprintf(out, len, "reply %s", reply);
        else
            snprintf(out, len, "ok notify=%d orcpt=%s", p.notify, p.orcpt);
    } else {
        int from = strncmp(kind, "from", 4) == 0, utf8 = strchr(kind, '7') == NULL;
        int r = smtpd_addr_parse(text, from, utf8, addr, &end);
        if (r == SMTPD_ADDR_OK)
            snprintf(out, len, "ok <%s> rest=[%s]", addr, end);
        else
            snprintf(out, len, "%s", r == SMTPD_ADDR_EUTF8 ? "error utf8" : "error syntax");
    }
}

static void test_golden(void **st)
{
    const char *dir = getenv("MTA_GOLDEN");
    char path[1024], line[2048], ref[4096], got[4096];
    FILE *in, *rf;
    int n = 0, bad = 0;

    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/smtpd/addr.in", dir);
    assert_non_null(in = fopen(path, "r"));
    snprintf(path, sizeof(path), "%s/smtpd/addr.ref", dir);
    rf = fopen(path, "r");
    if (!rf)
        fail_msg("missing %s", path);
    while (fgets(line, sizeof(line), in)) {
        char *tab, res[1024];
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#' || !line[0])
            continue;
        assert_non_null(tab = strchr(line, '\t'));
        *tab = 0;
        snprintf(got, sizeof(got), "%s\t%s\t", line, tab + 1);
        unescape(tab + 1);
        result(line, tab + 1, res, sizeof(res));
        strncat(got, res, sizeof(got) - strlen(got) - 1);
        if (getenv("MTA_GOLDEN_PRINT"))
            printf("%s\n", got);
        n++;
        if (!fgets(ref, sizeof(ref), rf)) {
            print_error("ref too short at: %s\n", got);
            bad++;
            continue;
        }
        ref[strcspn(ref, "\n")] = 0;
        if (strcmp(ref, got) != 0) {
            print_error("want: %s\n got: %s\n", ref, got);
            bad++;
        }
    }
    fclose(in);
    fclose(rf);
    assert_true(n > 50);
    assert_int_equal(bad, 0);
}

static void test_xtext(void **st)
{
    char out[16];
    assert_int_equal(smtpd_xtext_decode("a+2Bb", 5, out, sizeof(out)), 0);
    assert_string_equal(out, "a+b");
    assert_int_equal(smtpd_xtext_decode("a+2", 3, out, sizeof(out)), -1);
    assert_int_equal(smtpd_xtext_decode("a+", 2, out, sizeof(out)), -1);
    assert_int_equal(smtpd_xtext_decode("a=b", 3, out, sizeof(out)), -1);
    /* the output is bounded */
    assert_int_equal(smtpd_xtext_decode("0123456789abcdefg", 17, out, sizeof(out)), -1);
}

/* mkpath - "<" + 64-char local part + "@" + labels 63.63.LAST + ">". */
static void mkpath(char *path, size_t last)
{
    char *p = path;
    *p++ = '<';
    memset(p, 'a', 64), p += 64;
    *p++ = '@';
    memset(p, 'b', 63), p += 63;
    *p++ = '.';
    memset(p, 'c', 63), p += 63;
    *p++ = '.';
    memset(p, 'd', last), p += last;
    *p++ = '>';
    *p = 0;
}

static void test_path_length(void **st)
{
    /* 256 octets incl. <> is the limit (RFC 5321 4.5.3.1.3) */
    char path[400], addr[SMTPD_ADDR_MAX + 1];
    const char *end;
    mkpath(path, 61);
    assert_int_equal(strlen(path), 256);
    assert_int_equal(smtpd_addr_parse(path, 0, 0, addr, &end), SMTPD_ADDR_OK);
    assert_int_equal(strlen(addr), 254);
    mkpath(path, 62);
    assert_int_equal(strlen(path), 257);
    assert_int_equal(smtpd_addr_parse(path, 0, 0, addr, &end), SMTPD_ADDR_ESYNTAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_path_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
