/*
 * test_maildrop.c - the maildrop format as postdrop and pickup check it: a
 * well-formed file and stream parse to their fields; every deviation a local
 * user could write (order, bounds, numbers, control bytes, lengths, trailing
 * bytes) is refused with a reason, and nothing is read past the buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/maildrop.h"

#define BODY "Subject: x\n\nhello\n"

/* parse_text - maildrop_parse of TEXT (a heap copy of exactly its bytes, so ASan sees any
 * read past the end). */
static int parse_text(const char *text, enum maildrop_kind kind, long long max, struct maildrop *md,
                      const char **why)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, text, len);
    rc = maildrop_parse(copy, len, kind, max, md, why);
    if (rc == 0) {
        /* the content points into the buffer: compare before it goes */
        assert_int_equal(md->content_len, strlen(BODY));
        assert_memory_equal(md->content, BODY, md->content_len);
    }
    free(copy);
    return rc;
}

static const char *good_file(void)
{
    return "MAILDROP 1\nuid 1000\ntime 1796285748\nsender alice\nfullname Alice Example\n8bit\n"
           "rcpt bob@example.org\nrcpt \"a b\"@example.org\ncontent 18\n" BODY "end\n";
}

static void test_good_file_and_stream(void **state)
{
    struct maildrop md;
    const char *why = NULL;

    (void)state;
    assert_int_equal(parse_text(good_file(), MAILDROP_FILE, 1000, &md, &why), 0);
    assert_int_equal(md.uid, 1000);
    assert_int_equal(md.time, 1796285748LL);
    assert_string_equal(md.sender, "alice");
    assert_string_equal(md.fullname, "Alice Example");
    assert_int_equal(md.body_8bit, 1);
    assert_int_equal(md.nrcpt, 2);
    assert_string_equal(md.rcpt[1], "\"a b\"@example.org");
    maildrop_free(&md);

    /* a stream (sendmail -> postdrop) has no uid and time lines; the null sender */
    assert_int_equal(parse_text("MAILDROP 1\nsender \nrcpt r@x\ncontent 18\n" BODY "end\n",
                                MAILDROP_STREAM, 1000, &md, &why),
                     0);
    assert_int_equal(md.uid, -1);
    assert_string_equal(md.sender, "");
    assert_string_equal(md.fullname, "");
    maildrop_free(&md);
    /* ... and a stream must not carry a uid of its own choosing */
    assert_int_equal(parse_text("MAILDROP 1\nuid 0\ntime 1\nsender a\nrcpt r@x\ncontent 18\n" BODY
                                "end\n",
                                MAILDROP_STREAM, 1000, &md, &why),
                     -1);
}

static void test_bad_files(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "not a maildrop file (first line)"},
        {"MAILDROP 2\n", "not a maildrop file (first line)"},
        {"MAILDROP 1", "not a maildrop file (first line)"},
        {"MAILDROP 1\nuid -1\n", "bad or missing uid line"},
        {"MAILDROP 1\nuid 01\n", "bad or missing uid line"},
        {"MAILDROP 1\nuid 99999999999\n", "bad or missing uid line"},
        {"MAILDROP 1\nuid 1 \n", "bad or missing uid line"},
        {"MAILDROP 1\ntime 1\nuid 1\n", "bad or missing uid line"},
        {"MAILDROP 1\nuid 1\ntime 999999999999999\n", "bad or missing time line"},
        {"MAILDROP 1\nuid 1\ntime 1\nrcpt a@b\n", "missing sender line"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\tb\nrcpt a@b\n", "bad sender address"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender <a>\nrcpt a@b\n", "bad sender address"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nfullname x\001y\nrcpt a@b\n", "bad fullname"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\ncontent 0\nend\n", "no recipients"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt \ncontent 0\nend\n", "bad recipient address"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a b@c\ncontent 0\nend\n",
         "bad recipient address"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt \"a@c\ncontent 0\nend\n",
         "bad recipient address"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a@c\ncontent x\nend\n",
         "bad or missing content line"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a@c\ncontent 2000\n", "message file too big"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a@c\ncontent 19\n" BODY "end\n",
         "content length does not match, or no end line"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a@c\ncontent 18\n" BODY "end\nmore",
         "content length does not match, or no end line"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a@c\ncontent 18\n" BODY "en",
         "content length does not match, or no end line"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\nrcpt a@c\ncontent 3\nabcend\n",
         "content does not end in a newline"},
        {"MAILDROP 1\nuid 1\ntime 1\nsender a\n8bit\nfullname x\nrcpt a@c\ncontent 0\nend\n",
         "no recipients"},
    };
    struct maildrop md;
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (parse_text(bad[i].text, MAILDROP_FILE, 1000, &md, &why) != -1)
            fail_msg("accepted: case %zu", i);
        if (!why || strcmp(why, bad[i].why) != 0)
            fail_msg("case %zu: \"%s\", wanted \"%s\"", i, why ? why : "(null)", bad[i].why);
    }
}

static void test_bounds(void **state)
{
    char line[MAILDROP_LINE_MAX + 64], addr[MAILDROP_ADDR_MAX + 2];
    struct maildrop md;
    const char *why;

    (void)state;
    /* an address of the longest length passes, one byte more does not */
    memset(addr, 'a', MAILDROP_ADDR_MAX);
    addr[MAILDROP_ADDR_MAX] = 0;
    assert_int_equal(maildrop_addr_ok(addr, 0), 1);
    addr[MAILDROP_ADDR_MAX] = 'a';
    addr[MAILDROP_ADDR_MAX + 1] = 0;
    assert_int_equal(maildrop_addr_ok(addr, 0), 0);
    assert_int_equal(maildrop_addr_ok("", 0), 0);
    assert_int_equal(maildrop_addr_ok("", 1), 1);
    assert_int_equal(maildrop_addr_ok("a\x7f@b", 0), 0);
    assert_int_equal(maildrop_addr_ok("\"x\\\"y z\"@b", 0), 1);
    /* an envelope line longer than MAILDROP_LINE_MAX is refused, not read on */
    snprintf(line, sizeof(line), "MAILDROP 1\nuid 1\ntime 1\nsender ");
    memset(line + strlen(line), 'b', MAILDROP_LINE_MAX);
    line[sizeof(line) - 1] = 0;
    assert_int_equal(parse_text(line, MAILDROP_FILE, 1000, &md, &why), -1);
    assert_string_equal(why, "missing sender line");
    /* the content bound is message_size_limit */
    assert_int_equal(parse_text(good_file(), MAILDROP_FILE, 17, &md, &why), -1);
    assert_string_equal(why, "message file too big");
    assert_int_equal(parse_text(good_file(), MAILDROP_FILE, 18, &md, &why), 0);
    maildrop_free(&md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file_and_stream),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
