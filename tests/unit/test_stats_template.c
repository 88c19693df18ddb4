/*
 * test_stats_template.c - the page templates and their renderer (src/stats/template.c,
 * the *.html files of src/stats/assets): hostile text values come out escaped, rendered fragments
 * are copied as HTML, a placeholder without a value, of the wrong kind or malformed is
 * reported (never rendered as empty), every embedded template renders completely, and
 * the three pages built by http_pages.c carry the figures, ids and classes that app.js
 * and the integration tests read, with nothing of a template left over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "mta/sched.h"
#include "stats/stats_int.h"

#define HOSTILE "<script>alert('x')</script>&\"q\""
#define HOSTILE_ESC "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;"

/* take - the evbuffer's content as a malloc'd string (drains B); freed by the caller. */
static char *take(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* render - TMPL rendered with VARS: the return code, the output in *OUT and the error in ERR. */
static int render(const char *tmpl, const struct stats_tvar *vars, size_t n, char **out, char *err,
                  size_t errlen)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    err[0] = '\0';
    int rc = stats_template_render_text(b, "t.html", tmpl, strlen(tmpl), vars, n, err, errlen);
    *out = take(b);
    evbuffer_free(b);
    return rc;
}

static void test_text_values_are_escaped(void **state)
{
    char err[256], *out;
    const struct stats_tvar v[] = {STATS_TEXT("t", HOSTILE), STATS_TEXT("n", NULL)};
    assert_int_equal(render("<p title=\"{{t}}\">{{t}}</p>[{{n}}]", v, 2, &out, err, sizeof err), 0);
    assert_string_equal(out, "<p title=\"" HOSTILE_ESC "\">" HOSTILE_ESC "</p>[]");
    free(out);
    /* a value is never scanned again: placeholders in it stay text */
    const struct stats_tvar w[] = {STATS_TEXT("t", "{{t}} {{{x}}}")};
    assert_int_equal(render("a{{t}}b", w, 1, &out, err, sizeof err), 0);
    assert_string_equal(out, "a{{t}} {{{x}}}b");
    free(out);
}

static void test_html_values_are_copied(void **state)
{
    char err[256], *out;
    struct evbuffer *rows = evbuffer_new();
    evbuffer_add_printf(rows, "<tr><td>1 &amp; 2</td></tr>");
    const struct stats_tvar v[] = {STATS_HTML("rows", rows), STATS_HTML("none", NULL)};
    assert_int_equal(
        render("<tbody>{{{rows}}}{{{none}}}</tbody>{{{rows}}}", v, 2, &out, err, sizeof err), 0);
    /* copied, not moved: the same fragment twice, and the source keeps it */
    assert_string_equal(out,
                        "<tbody><tr><td>1 &amp; 2</td></tr></tbody><tr><td>1 &amp; 2</td></tr>");
    assert_int_equal(evbuffer_get_length(rows), strlen("<tr><td>1 &amp; 2</td></tr>"));
    free(out);
    evbuffer_free(rows);
}

static void test_comments_and_final_newline(void **state)
{
    char err[256], *out;
    assert_int_equal(
        render("{{! a header, with a } and a {{ }}\n<p>x</p>\n", NULL, 0, &out, err, sizeof err),
        0);
    assert_string_equal(out, "<p>x</p>");
    free(out);
    assert_int_equal(render("a{{! note }}b\n\n", NULL, 0, &out, err, sizeof err), 0);
    assert_string_equal(out, "ab\n");
    free(out);
}

static void test_missing_value_is_reported(void **state)
{
    char err[256], *out;
    const struct stats_tvar v[] = {STATS_TEXT("here", "x")};
    assert_int_equal(render("line one\n<b>{{here}}{{gone}}</b>", v, 1, &out, err, sizeof err), -1);
    assert_string_equal(out, ""); /* nothing half-rendered reaches the output */
    assert_non_null(strstr(err, "t.html:2"));
    assert_non_null(strstr(err, "no value for {{gone}}"));
    free(out);
    assert_int_equal(render("{{{rows}}}", NULL, 0, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "no value for {{{rows}}}"));
    free(out);

    /* an unknown template is an error too */
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(stats_template_render(b, "nope.html", NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "nope.html"));
    evbuffer_free(b);
}

static void test_wrong_kind_is_reported(void **state)
{
    char err[256], *out;
    /* a text value cannot be pasted as HTML, and HTML is not escaped twice */
    const struct stats_tvar t[] = {STATS_TEXT("x", "<b>")};
    assert_int_equal(render("{{{x}}}", t, 1, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "x is given as text"));
    free(out);
    struct evbuffer *h = evbuffer_new();
    const struct stats_tvar v[] = {STATS_HTML("x", h)};
    assert_int_equal(render("{{x}}", v, 1, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "x is given as HTML"));
    free(out);
    evbuffer_free(h);
}

static void test_malformed_placeholders(void **state)
{
    static const char *bad[] = {
        "{{ x}}",
        "{{x }}",
        "{{x",
        "a {{x}",
        "{{X}}",
        "{{x-y}}",
        "{{}}",
        "{{{}}}",
        "{{x}}}",
        "{{{x}}",
        "{{! no end",
        "{{{x}}}}",
        "{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}",
    };
    const struct stats_tvar v[] = {STATS_TEXT("x", "1")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256], *out;
        int rc = render(bad[i], v, 1, &out, err, sizeof err);
        if (rc != -1)
            fail_msg("%s rendered as \"%s\"", bad[i], out);
        assert_true(err[0] != '\0');
        free(out);
    }
}

struct names {
    char name[32][STATS_TEMPLATE_NAME_MAX + 1];
    int is_html[32];
    int n;
};

/* names_cb - collect the placeholders of a template once each (stats_template_scan). */
static void names_cb(void *arg, const char *name, int is_html)
{
    struct names *ns = arg;
    for (int i = 0; i < ns->n; i++) {
        if (strcmp(ns->name[i], name) == 0) {
            if (ns->is_html[i] != is_html)
                fail_msg("%s used both as text and as HTML", name);
            return;
        }
    }
    assert_true(ns->n < 32);
    snprintf(ns->name[ns->n], sizeof ns->name[ns->n], "%s", name);
    ns->is_html[ns->n++] = is_html;
}

static void test_every_template_renders(void **state)
{
    int ntemplates = 0;
    struct evbuffer *frag = evbuffer_new();
    evbuffer_add_printf(frag, "<i>fragment</i>");
    for (size_t i = 0; i < stats_nassets; i++) {
        const char *name = stats_assets[i].name;
        size_t nl = strlen(name);
        if (nl < 5 || strcmp(name + nl - 5, ".html") != 0)
            continue;
        ntemplates++;
        char err[256] = "", *out;
        struct names ns = {.n = 0};
        if (stats_template_scan(name, (const char *)stats_assets[i].data, stats_assets[i].len,
                                names_cb, &ns, err, sizeof err) < 0)
            fail_msg("%s", err);
        struct stats_tvar v[32];
        int ntext = 0;
        for (int k = 0; k < ns.n; k++) {
            struct stats_tvar t = STATS_TEXT(ns.name[k], HOSTILE);
            struct stats_tvar h = STATS_HTML(ns.name[k], frag);
            v[k] = ns.is_html[k] ? h : t;
            ntext += !ns.is_html[k];
        }
        struct evbuffer *b = evbuffer_new();
        if (stats_template_render(b, name, v, (size_t)ns.n, err, sizeof err) < 0)
            fail_msg("%s", err);
        out = take(b);
        if (strstr(out, "{{") || strstr(out, "}}"))
            fail_msg("%s leaves a placeholder: %s", name, out);
        assert_null(strstr(out, "<script>alert"));
        if (ntext)
            assert_non_null(strstr(out, HOSTILE_ESC));
        /* the final newline of the file is not part of the template */
        assert_true(out[0] == '\0' || out[strlen(out) - 1] != '\n' ||
                    strcmp(name, "layout.html") == 0);
        free(out);
        evbuffer_free(b);
    }
    evbuffer_free(frag);
    assert_true(ntemplates >= 4);
    size_t len;
    assert_non_null(stats_template_get("layout.html", &len));
    assert_non_null(stats_template_get("dashboard.html", &len));
    assert_non_null(stats_template_get("queue.html", &len));
    assert_non_null(stats_template_get("message.html", &len));
}

/* has - assert that NEEDLE occurs in PAGE (with the page in the failure message). */
#define has(page, needle)                                                                          \
    do {                                                                                           \
        if (!strstr((page), (needle)))                                                             \
            fail_msg("missing %s in:\n%s", (needle), (page));                                      \
    } while (0)
#define hasnt(page, needle)                                                                        \
    do {                                                                                           \
        if (strstr((page), (needle)))                                                              \
            fail_msg("unexpected %s in:\n%s", (needle), (page));                                   \
    } while (0)

/* complete - the common checks of a whole page: one document, nothing of a template left. */
static void complete(const char *page, const char *data_page)
{
    char want[64];
    assert_true(strncmp(page, "<!DOCTYPE html>\n", 16) == 0);
    has(page, "</main>");
    has(page, "</html>\n");
    hasnt(page, "{{");
    hasnt(page, "}}");
    snprintf(want, sizeof want, "data-page=\"%s\"", data_page);
    has(page, want);
    has(page, "<link rel=\"stylesheet\" href=\"/assets/style.css\">");
    has(page, "<script src=\"/assets/app.js\"></script>");
    has(page, "<div class=\"live\" id=\"live\" title=\"Live refresh\"></div>");
}

static void test_dashboard_page(void **state)
{
    struct stats_snapshot s;
    memset(&s, 0, sizeof s);
    s.cnt[CNT_MQUEUE_MESSAGES] = 3;
    s.mqueue_kilobytes = 12;
    s.cnt[CNT_SMTP_ACTIVE] = 2;
    s.cnt[CNT_RECEIVED] = 41;
    s.cnt[CNT_DELIVERED] = 37;
    s.cnt[CNT_DEFERRED] = 5;
    s.cnt[CNT_BOUNCED] = 1;
    s.cnt[CNT_REJECTED] = 9;
    s.cpu_seconds = 1.234;
    s.rss_bytes = 5 * 1024 * 1024 + 300 * 1024;
    s.free_percent = 0.5;
    s.uptime_seconds = 3 * 3600 + 4 * 60 + 5;
    s.msgs[0] = STATS_MSG_FREE_5;
    s.msgs[1] = STATS_MSG_FREE_1;
    s.nmsgs = 2;
    char err[256] = "";
    struct evbuffer *b = evbuffer_new();
    if (http_render_dashboard(b, "mx<1>.example", 0, &s, err, sizeof err) < 0)
        fail_msg("%s", err);
    char *page = take(b);
    complete(page, "dashboard");
    has(page, "<title>Dashboard · mx&lt;1&gt;.example</title>");
    has(page, "<span class=\"host\">mx&lt;1&gt;.example</span>");
    has(page, "data-admin=\"0\"");
    has(page, "<a href=\"/\" class=\"active\">Dashboard</a><a href=\"/queue\">Queue</a>");
    has(page, "<section id=\"messages\" class=\"alerts\" aria-live=\"polite\">"
              "<div class=\"alert warn\">Data volume free space is below 5%.</div>"
              "<div class=\"alert crit\">Data volume free space is below 1%.</div></section>");
    has(page, "data-k=\"mqueue_messages\" data-f=\"int\">3<");
    has(page, "data-k=\"mqueue_kilobytes\" data-f=\"int\">12<");
    has(page, "data-k=\"smtp_active_sessions\" data-f=\"int\">2<");
    has(page, "data-k=\"received\" data-f=\"int\">41<");
    has(page, "data-k=\"delivered\" data-f=\"int\">37<");
    has(page, "data-k=\"deferred\" data-f=\"int\">5<");
    has(page, "data-k=\"bounced\" data-f=\"int\">1<");
    has(page, "data-k=\"rejected\" data-f=\"int\">9<");
    has(page, "data-k=\"cpu_seconds\" data-f=\"sec\">1.23 s<");
    has(page, "data-k=\"rss_bytes\" data-f=\"bytes\">5.3 MiB<");
    has(page, "data-k=\"data_volume_free_percent\" data-f=\"pct\">0.5%<");
    has(page, "<progress id=\"freebar\" max=\"100\" value=\"0.5\"></progress>");
    has(page, "class=\"value text\" data-k=\"log_share\" data-f=\"text\">not connected<");
    has(page, "data-k=\"uptime_seconds\" data-f=\"dur\">3h 4m<");
    has(page, "Mqueue messages");
    has(page, "Mqueue kilobytes");
    has(page, "SMTP active sessions");
    free(page);

    /* no message: the box says so; unknown free space */
    s.nmsgs = 0;
    s.free_percent = -1;
    s.log_share_configured = 1;
    s.cnt[CNT_LOG_SHARE_UP] = 1;
    if (http_render_dashboard(b, "h", 1, &s, err, sizeof err) < 0)
        fail_msg("%s", err);
    page = take(b);
    complete(page, "dashboard");
    has(page, "data-admin=\"1\"");
    has(page, "aria-live=\"polite\"><div class=\"alert ok\">All systems normal.</div></section>");
    has(page, "data-f=\"pct\">unknown<");
    has(page, "value=\"0.0\"></progress>");
    has(page, "data-f=\"text\">up<");
    free(page);
    evbuffer_free(b);
}

static const struct sched_view_rcpt rcpts1[] = {
    {"bob@example.com", "", "", "active", 0},
    {"\"<img src=x onerror=alert(1)>\"@victim.example", "orig@example.com",
     "connect to mx.victim.example[192.0.2.1]:25: Connection refused <&>", "deferred", 1700000000},
};
static const struct sched_view_rcpt rcpts2[] = {
    {"carol@example.net", "", "", "active", 0},
};
static const struct sched_view_msg msgs[] = {
    {"4Fq1AbC", "active", 1700000000, 700, "alice@example.org", 0, rcpts2, 1},
    {"4Fq2XyZ", "deferred", 1700000100, 1500, HOSTILE "@evil.example", 3, rcpts1, 2},
    {"4Fq3Nul", "active", 1700000200, 10, "", 0, rcpts2, 1},
};

/* fake_each - a queue of NMSGS messages of msgs[] for http_render_queue. */
static void fake_each(void *src, int (*cb)(void *arg, const struct sched_view_msg *m), void *arg)
{
    int n = *(const int *)src;
    for (int i = 0; i < n; i++)
        if (cb(arg, &msgs[i]))
            break;
}

/* queue_page - /queue for the first N fake messages, search Q, as ADMIN or not. */
static char *queue_page(int n, const char *q, int admin)
{
    char err[256] = "";
    struct evbuffer *b = evbuffer_new();
    if (http_render_queue(b, "h", admin, q, fake_each, &n, NULL, err, sizeof err) < 0)
        fail_msg("%s", err);
    char *page = take(b);
    evbuffer_free(b);
    complete(page, "queue");
    has(page, "<a href=\"/\">Dashboard</a><a href=\"/queue\" class=\"active\">Queue</a>");
    return page;
}

static void test_queue_page(void **state)
{
    char *page = queue_page(3, NULL, 0);
    has(page, "<p class=\"summary\" id=\"summary\">-- 3 Kbytes in 3 Requests.</p>");
    has(page, "<input type=\"search\" name=\"q\" value=\"\"");
    has(page, "<table class=\"queue\">");
    has(page, "<tr><td class=\"id\"><a href=\"/queue/4Fq1AbC\">4Fq1AbC</a></td>"
              "<td><span class=\"tag q-active\">active</span></td><td class=\"num\">700</td>");
    has(page, "<a href=\"/queue/4Fq2XyZ\">4Fq2XyZ</a>");
    has(page, "<td class=\"addr\">" HOSTILE_ESC "@evil.example</td>");
    has(page, "<div class=\"addr\">&quot;&lt;img src=x onerror=alert(1)&gt;&quot;@victim.example"
              "</div><div class=\"reason\">(connect to mx.victim.example[192.0.2.1]:25: "
              "Connection refused &lt;&amp;&gt;)</div>");
    has(page, "<div class=\"addr\">bob@example.com</div><div class=\"addr\">");
    has(page, "<td class=\"addr\">&lt;&gt;</td>"); /* the null sender */
    hasnt(page, "<script>alert");
    hasnt(page, "<img src=x");
    hasnt(page, "data-action=\"flush\"");
    hasnt(page, "class=\"clear\"");
    free(page);

    /* a search, as admin: clear link, flush button, the query echoed escaped */
    page = queue_page(3, "\"><script>victim", 1);
    has(page, "value=\"&quot;&gt;&lt;script&gt;victim\"");
    has(page, "<a class=\"clear\" href=\"/queue\">Clear</a></form>"
              "<button class=\"action\" data-action=\"flush\">Flush queue</button></div>");
    has(page, "No message matches.");
    hasnt(page, "<table");
    free(page);
    page = queue_page(3, "VICTIM", 1);
    has(page, "-- 2 Kbytes in 1 Request.</p>");
    has(page, "4Fq2XyZ");
    hasnt(page, "4Fq1AbC");
    free(page);

    page = queue_page(0, NULL, 0);
    has(page, "<p class=\"summary\" id=\"summary\">Mail queue is empty</p>");
    hasnt(page, "<table");
    free(page);
}

static void test_message_page(void **state)
{
    char err[256] = "";
    struct evbuffer *b = evbuffer_new();
    if (http_render_message(b, "h", 1, msgs[1].queue_id, &msgs[1], err, sizeof err) < 0)
        fail_msg("%s", err);
    char *page = take(b);
    complete(page, "queue");
    has(page, "<title>Message · h</title>");
    has(page, "<a class=\"back\" href=\"/queue\">&larr; Queue</a><button class=\"action danger\" "
              "data-action=\"delete\" data-id=\"4Fq2XyZ\">Delete message</button></div>");
    has(page, "<h2>Message <span class=\"mono\">4Fq2XyZ</span></h2>");
    has(page, "<dd><span class=\"tag q-deferred\">deferred</span></dd>");
    has(page, "<dd>1500 bytes (1.5 KiB)</dd>");
    has(page, "<dd class=\"addr\">" HOSTILE_ESC "@evil.example</dd>");
    has(page, "<dt>Delivery attempts</dt><dd>3</dd>");
    has(page, "&quot;&lt;img src=x onerror=alert(1)&gt;&quot;@victim.example<div class=\"reason\">"
              "original: orig@example.com</div></td><td><span class=\"tag s-deferred\">deferred"
              "</span>");
    has(page, "<td class=\"reason\">connect to mx.victim.example[192.0.2.1]:25: Connection "
              "refused &lt;&amp;&gt;</td>");
    has(page, "<tr><td class=\"addr\">bob@example.com</td><td><span class=\"tag s-active\">active"
              "</span></td><td>-</td><td class=\"reason\">-</td></tr>");
    hasnt(page, "<script>alert");
    hasnt(page, "<img src=x");
    free(page);

    /* the null sender; not admin: no delete button */
    if (http_render_message(b, "h", 0, msgs[2].queue_id, &msgs[2], err, sizeof err) < 0)
        fail_msg("%s", err);
    page = take(b);
    has(page, "<dd class=\"addr\">&lt;&gt; (null sender)</dd>");
    hasnt(page, "data-action=\"delete\"");
    free(page);

    /* not queued: the explanation, the hostile ID escaped, no delete button even for admins */
    if (http_render_message(b, "h", 1, "<b>X", NULL, err, sizeof err) < 0)
        fail_msg("%s", err);
    page = take(b);
    complete(page, "queue");
    has(page, "<p class=\"summary\">Message &lt;b&gt;X is not in the queue (delivered, bounced or "
              "deleted).</p>");
    hasnt(page, "data-action=\"delete\"");
    hasnt(page, "<b>X");
    free(page);
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_values_are_escaped),
        cmocka_unit_test(test_html_values_are_copied),
        cmocka_unit_test(test_comments_and_final_newline),
        cmocka_unit_test(test_missing_value_is_reported),
        cmocka_unit_test(test_wrong_kind_is_reported),
        cmocka_unit_test(test_malformed_placeholders),
        cmocka_unit_test(test_every_template_renders),
        cmocka_unit_test(test_dashboard_page),
        cmocka_unit_test(test_queue_page),
        cmocka_unit_test(test_message_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
