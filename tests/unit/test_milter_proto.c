/*
 * test_milter_proto.c - the milter client's pure parts (src/core/milter_proto.c): the
 * smtpd_milters list and milter_default_action, SMFIR_REPLYCODE checks and Sendmail's '%'
 * doubling, the header block rebuilt with add/insert/change/delete (folded headers, the
 * n-th of a name, a missing one), and bare LF made CRLF across buffer pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/milter_int.h"
#include "mta/conf.h"

static struct conf conf_with(const char *defact)
{
    struct conf c;
    memset(&c, 0, sizeof c);
    c.milter_default_action = (char *)defact;
    c.milter_protocol = 6;
    c.milter_connect_timeout = c.milter_command_timeout = 30;
    c.milter_content_timeout = 300;
    c.milter_connect_macros = c.milter_helo_macros = c.milter_mail_macros = "";
    c.milter_rcpt_macros = c.milter_data_macros = c.milter_end_of_header_macros = "i";
    c.milter_end_of_data_macros = "i";
    return c;
}

static void test_set_parse(void **state)
{
    (void)state;
    struct conf c = conf_with("tempfail");
    char *err = NULL;
    struct milter_set *ms = milter_set_new(
        &c, "inet:127.0.0.1:8891, unix:/run/x.sock inet:[::1]:9 inet:localhost:7", &err);
    assert_null(err);
    assert_non_null(ms);
    assert_int_equal(ms->n, 4);
    assert_string_equal(ms->v[0].host, "127.0.0.1");
    assert_int_equal(ms->v[0].port, 8891);
    assert_true(ms->v[1].unix_path);
    assert_string_equal(ms->v[1].path, "/run/x.sock");
    assert_string_equal(ms->v[2].host, "::1");
    assert_string_equal(ms->v[3].host, "127.0.0.1");
    assert_int_equal(ms->defact, MILTER_DEF_TEMPFAIL);
    milter_set_free(ms);
    assert_null(milter_set_new(&c, "", &err)); /* none configured: no error */
    assert_null(err);
    const char *bad[] = {"127.0.0.1:8891",         "inet:127.0.0.1", "inet:127.0.0.1:0",
                         "inet:milter.example:25", "unix:relative",  "inet:1.2.3.4:99999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(milter_set_new(&c, bad[i], &err));
        assert_non_null(err);
        free(err);
        err = NULL;
    }
    struct conf c2 = conf_with("bounce");
    assert_null(milter_set_new(&c2, "inet:127.0.0.1:1", &err));
    assert_non_null(strstr(err, "milter_default_action"));
    free(err);
}

static void test_replies(void **state)
{
    (void)state;
    assert_true(milter_valid_reply("550 5.7.1 no"));
    assert_true(milter_valid_reply("451 4.7.1 later"));
    assert_true(milter_valid_reply("550-5.7.1 first\r\n550 5.7.1 second"));
    assert_false(milter_valid_reply("250 ok"));         /* not a refusal */
    assert_false(milter_valid_reply("55 short"));       /* not three digits */
    assert_false(milter_valid_reply("550x text"));      /* no separator */
    assert_false(milter_valid_reply("550-a\r\n451 b")); /* codes differ */
    char t[] = "550 5.7.1 100%% sure, 50% off";
    milter_unpercent(t);
    assert_string_equal(t, "550 5.7.1 100% sure, 50 off");
}

static char *edit(const char *hdrs, const struct milter_mod *mods, int n)
{
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    evbuffer_add(in, hdrs, strlen(hdrs));
    assert_int_equal(milter_edit_headers(in, mods, n, out), 0);
    size_t len = evbuffer_get_length(out);
    char *s = malloc(len + 1);
    evbuffer_remove(out, s, len);
    s[len] = 0;
    evbuffer_free(in);
    evbuffer_free(out);
    return s;
}

static void test_header_edits(void **state)
{
    (void)state;
    const char *h = "Received: from a\r\n\tby b\r\nSubject: one\r\nX-T: 1\r\nX-T: 2\r\n\r\n";
    struct milter_mod mods[] = {
        {MILTER_MOD_CHGHDR, 2, "x-t", " second"},                 /* the 2nd X-T, any case */
        {MILTER_MOD_INSHDR, 0, "DKIM-Signature", " v=1;\n\tb=x"}, /* folded, at the top */
        {MILTER_MOD_ADDHDR, 0, "X-Added", " yes"},
        {MILTER_MOD_CHGHDR, 1, "Subject", ""},       /* delete */
        {MILTER_MOD_CHGHDR, 1, "X-Missing", " new"}, /* absent: added */
        {MILTER_MOD_CHGHDR, 1, "X-Gone", ""},        /* absent, delete: nothing */
        {MILTER_MOD_ADDRCPT, 0, "<r@x>", ""},        /* not a header change */
    };
    char *s = edit(h, mods, 7);
    assert_string_equal(s, "DKIM-Signature: v=1;\r\n\tb=x\r\nReceived: from a\r\n\tby b\r\n"
                           "X-T: 1\r\nx-t: second\r\nX-Added: yes\r\nX-Missing: new\r\n\r\n");
    free(s);
    /* an insert index beyond the end appends; a block without its empty line keeps none */
    struct milter_mod ins[] = {{MILTER_MOD_INSHDR, 99, "X-End", " e"}};
    s = edit("A: 1\r\n", ins, 1);
    assert_string_equal(s, "A: 1\r\nX-End: e\r\n");
    free(s);
}

static void test_lf_to_crlf(void **state)
{
    (void)state;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    /* pieces added separately so that a CR and its LF sit in different chains */
    evbuffer_add(in, "a\nb\r", 4);
    evbuffer_add_reference(in, "\nc\n\n", 4, NULL, NULL);
    milter_lf_to_crlf(in, out);
    assert_int_equal(evbuffer_get_length(in), 0);
    size_t len = evbuffer_get_length(out);
    char buf[64];
    evbuffer_remove(out, buf, len);
    buf[len] = 0;
    assert_string_equal(buf, "a\r\nb\r\nc\r\n\r\n");
    evbuffer_free(in);
    evbuffer_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_parse),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_header_edits),
        cmocka_unit_test(test_lf_to_crlf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
