/*
 * test_spool.c - the spool on real files in a temporary directory with a real
 * event loop: commit and recovery, tmp purge, quarantine of unreadable files,
 * group commit under 200 concurrent commits, streaming of a large message,
 * abort, removal, recycled message files, the free-space rule with its test hook, and the lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/log.h"
#include "mta/spool.h"
#include "queue/spool_int.h"

#include "spool_fixture.h"

/* --- helpers --- */

/* setup - the fixture with its data volume two levels below a missing directory: also tests
 * mkdir -p. */
static int setup(void **state)
{
    spool_fixture_setup(state);
    struct spool_fixture *f = *state;
    size_t len = strlen(f->dir);
    snprintf(f->dir + len, sizeof f->dir - len, "/sub/data");
    return 0;
}

/* is_slot - DIR/SUB/NAME holds no message of its name: a slot made ahead (empty, or zeros) or a
 * delivered message's file renamed to a new ID (its envelope names the old one). */
static int is_slot(const char *dir, const char *sub, const char *name)
{
    char path[800], head[64] = {0};
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, head, sizeof head - 1);
    close(fd);
    if (n <= 0 || head[0] == '\0')
        return 1;
    const char *id = strstr(head, "\nid ");
    return strncmp(head, "MTA-QUEUE 2\n", 12) == 0 && id && strncmp(id + 4, name, 16) != 0;
}

/* count_entries - files in DIR/SUB (not . and .., not slots). */
static int count_entries(const char *dir, const char *sub)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            (strncmp(sub, "queue/", 6) || !is_slot(dir, sub, de->d_name)))
            n++;
    closedir(d);
    return n;
}

/* tmp_messages - files in DIR/tmp/: message leftovers. */
static int tmp_messages(const char *dir)
{
    return count_entries(dir, "tmp");
}

/* slot_inodes - the inode numbers of the slots in DIR/queue/X/ (at most MAX); their count. */
static int slot_inodes(const char *dir, unsigned long *ino, int max)
{
    int n = 0;
    for (int h = 0; h < 16; h++) {
        char sub[16], path[512];
        snprintf(sub, sizeof sub, "queue/%X", h);
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.' || !is_slot(dir, sub, de->d_name))
                continue;
            if (n < max)
                ino[n] = (unsigned long)de->d_ino;
            n++;
        }
        if (d)
            closedir(d);
    }
    return n;
}

static int has_inode(const unsigned long *v, int n, unsigned long ino)
{
    for (int i = 0; i < n; i++)
        if (v[i] == ino)
            return 1;
    return 0;
}

static int queued_files(const char *dir)
{
    int n = 0;
    for (int h = 0; h < 16; h++) {
        char sub[16];
        snprintf(sub, sizeof sub, "queue/%X", h);
        n += count_entries(dir, sub);
    }
    return n;
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, fp);
    buf[*len] = '\0';
    fclose(fp);
    return buf;
}

static struct spool_rcpt test_rcpts[] = {
    {"alice@example.com", "rfc822;alice@example.com", SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE},
    {"bob@example.org", "", 0},
};

static struct spool_envelope test_env(void)
{
    struct spool_envelope e = {0};
    e.sender = "sender@example.net";
    e.rcpt = test_rcpts;
    e.nrcpt = 2;
    e.envid = "ENV-1";
    e.ret = SPOOL_RET_HDRS;
    e.smtputf8 = 1;
    e.body_8bit = 1;
    e.client_name = "client.example.net";
    e.client_addr = "192.0.2.7";
    e.helo = "client.example.net";
    e.arrival_us = 1700000000123456LL;
    e.size = 999; /* the spool fills in the real size */
    return e;
}

struct commit_result {
    int done, err;
    char id[SPOOL_ID_SIZE];
};

static void commit_done(void *arg, int err)
{
    struct commit_result *r = arg;
    r->done++;
    r->err = err;
}

/* commit_one - queue BODY and wait for the commit's done(); returns its ID in R. */
static void commit_one(struct spool_fixture *f, struct spool *sp, const char *body,
                       struct commit_result *r)
{
    struct spool_msg *m = spool_msg_new(sp);
    assert_non_null(m);
    snprintf(r->id, sizeof r->id, "%s", spool_msg_id(m));
    spool_fixture_append(m, body, strlen(body));
    struct spool_envelope e = test_env();
    spool_msg_commit(m, &e, commit_done, r);
    spool_fixture_run_until(f, &r->done, 1);
    assert_int_equal(r->done, 1);
    assert_int_equal(r->err, 0);
}

struct notified {
    int n;
    char ids[8][SPOOL_ID_SIZE];
    char senders[8][64];   /* the envelope handed over with a new message ("" if none) */
    char contents[8][128]; /* the message kept in memory ("(none)" if not handed over) */
};

static void notify_cb(void *arg, const char *id, struct spool_envelope *env,
                      struct evbuffer *content)
{
    struct notified *nt = arg;
    if (nt->n < 8) {
        snprintf(nt->ids[nt->n], SPOOL_ID_SIZE, "%s", id);
        snprintf(nt->senders[nt->n], sizeof nt->senders[0], "%s", env ? env->sender : "");
        if (env)
            assert_string_equal(env->id, id);
        size_t len = content ? evbuffer_get_length(content) : 0;
        if (!content)
            snprintf(nt->contents[nt->n], sizeof nt->contents[0], "(none)");
        else if (len < sizeof nt->contents[0])
            nt->contents[nt->n][evbuffer_copyout(content, nt->contents[nt->n], len)] = '\0';
        else
            snprintf(nt->contents[nt->n], sizeof nt->contents[0], "(%zu bytes)", len);
    }
    spool_envelope_free(env);
    if (content)
        evbuffer_free(content);
    nt->n++;
}

/* --- tests --- */

static void test_commit_and_reopen(void **state)
{
    struct spool_fixture *f = *state;
    long long m0 = counter_get(CNT_MQUEUE_MESSAGES), b0 = counter_get(CNT_MQUEUE_BYTES);
    long long c0 = counter_get(CNT_SPOOL_COMMITS);
    struct spool *sp = spool_fixture_open(f);
    struct notified nt = {0};
    spool_set_notify(sp, notify_cb, &nt);
    const char *body = "Subject: hi\r\n\r\nline one\r\n.dot\r\n\x01\xff 8bit\r\n";
    struct commit_result r = {0};
    commit_one(f, sp, body, &r);
    assert_true(spool_id_valid(r.id));
    assert_int_equal(nt.n, 1);
    assert_string_equal(nt.ids[0], r.id);
    assert_string_equal(nt.senders[0], "sender@example.net"); /* handed over, not re-read */
    assert_string_equal(nt.contents[0], body); /* the message too, exactly as stored */
    assert_int_equal(counter_get(CNT_MQUEUE_MESSAGES), m0 + 1);
    assert_int_equal(counter_get(CNT_MQUEUE_BYTES), b0 + (long long)strlen(body));
    assert_int_equal(counter_get(CNT_SPOOL_COMMITS), c0 + 1);
    assert_int_equal(tmp_messages(f->dir), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/queue/%c/%s", f->dir, r.id[15], r.id);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    spool_close(sp);
    assert_int_equal(counter_get(CNT_MQUEUE_MESSAGES), m0);

    /* a new process: the message is found again by the scan in the background, indexed and
     * announced once the loop runs */
    char *err = NULL;
    sp = spool_open(f->base, &f->conf, &err);
    assert_non_null(sp);
    struct notified nt2 = {0};
    spool_set_notify(sp, notify_cb, &nt2);
    assert_true(spool_scanning(sp));
    spool_fixture_run_until(f, &nt2.n, 1);
    assert_int_equal(spool_count(sp), 1);
    assert_true(spool_contains(sp, r.id));
    assert_int_equal(counter_get(CNT_MQUEUE_MESSAGES), m0 + 1);
    assert_int_equal(counter_get(CNT_MQUEUE_BYTES), b0 + (long long)strlen(body));
    assert_int_equal(nt2.n, 1);
    assert_string_equal(nt2.ids[0], r.id);
    assert_string_equal(nt2.senders[0], ""); /* recovered: the reader loads it */
    assert_string_equal(nt2.contents[0], "(none)");

    struct spool_envelope *e = NULL;
    assert_int_equal(spool_load_envelope(sp, r.id, &e), 0);
    assert_string_equal(e->id, r.id);
    assert_string_equal(e->sender, "sender@example.net");
    assert_int_equal(e->nrcpt, 2);
    assert_string_equal(e->rcpt[0].addr, "alice@example.com");
    assert_string_equal(e->rcpt[0].orcpt, "rfc822;alice@example.com");
    assert_int_equal(e->rcpt[0].notify, SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE);
    assert_string_equal(e->rcpt[1].addr, "bob@example.org");
    assert_string_equal(e->rcpt[1].orcpt, "");
    assert_int_equal(e->rcpt[1].notify, 0);
    assert_string_equal(e->envid, "ENV-1");
    assert_int_equal(e->ret, SPOOL_RET_HDRS);
    assert_int_equal(e->smtputf8, 1);
    assert_int_equal(e->body_8bit, 1);
    assert_string_equal(e->client_name, "client.example.net");
    assert_string_equal(e->client_addr, "192.0.2.7");
    assert_string_equal(e->helo, "client.example.net");
    assert_int_equal(e->arrival_us, 1700000000123456LL);
    assert_int_equal(e->size, (long long)strlen(body));
    spool_envelope_free(e);

    long long size;
    char *got = spool_fixture_read_message(sp, r.id, &size, NULL);
    assert_int_equal(size, (long long)strlen(body));
    assert_memory_equal(got, body, strlen(body));
    free(got);

    /* a new ID after recovery still sorts after the recovered one */
    struct spool_msg *m = spool_msg_new(sp);
    assert_true(strcmp(spool_msg_id(m), r.id) > 0);
    spool_msg_abort(m);
    spool_close(sp);
}

static void test_tmp_purged(void **state)
{
    struct spool_fixture *f = *state;
    spool_close(spool_fixture_open(f)); /* creates the layout */
    char path[512];
    snprintf(path, sizeof path, "%s/tmp/0000000000001000", f->dir);
    write_file(path, "half a message", 14);
    snprintf(path, sizeof path, "%s/tmp/0000000000001000.body", f->dir);
    write_file(path, "x", 1);
    assert_int_equal(tmp_messages(f->dir), 2);
    struct spool *sp = spool_fixture_open(f);
    assert_int_equal(tmp_messages(f->dir), 0);
    assert_int_equal(spool_count(sp), 0);
    assert_int_equal(count_entries(f->dir, "corrupt"), 0);
    spool_close(sp);
}

/* log_contains - the mail log file gets TEXT within a few seconds. */
static int log_contains(const char *text)
{
    for (int i = 0; i < 50; i++) {
        size_t len;
        char *s = read_file(spool_fixture_log_path(), &len);
        int found = s && strstr(s, text);
        free(s);
        if (found)
            return 1;
        usleep(100000);
    }
    return 0;
}

static void test_garbage_quarantined(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    struct commit_result good = {0};
    commit_one(f, sp, "Subject: good\r\n\r\nok\r\n", &good);
    spool_close(sp);

    /* a valid file copied under another ID, then damaged in several ways */
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/queue/%c/%s", f->dir, good.id[15], good.id);
    size_t len;
    char *text = read_file(path, &len);
    assert_non_null(text);
    struct {
        const char *name;
        char data[2048];
        size_t len;
    } cases[5];
    /* 1: garbage */
    cases[0].name = "00000000000000A1";
    cases[0].len = 11;
    memcpy(cases[0].data, "garbage\n\0\r\n", 11);
    /* 2: bad version line */
    cases[1].name = "00000000000000A2";
    cases[1].len = (size_t)snprintf(cases[1].data, sizeof cases[1].data, "MTA-QUEUE 9\n%s",
                                    strchr(text, '\n') + 1);
    /* 3: truncated inside the commit record (a write a crash cut short) */
    cases[2].name = good.id; /* replaced below with the real ID, written in place */
    const char *rec = memmem(text, len, "MTA-COMMIT ", 11);
    assert_non_null(rec);
    cases[2].len = (size_t)(rec - text) + 10;
    memcpy(cases[2].data, text, cases[2].len);
    /* 4: no end marker */
    cases[3].name = "00000000000000A4";
    const char *endl = strstr(text, "\nend\n");
    cases[3].len = (size_t)(endl - text) + 1;
    memcpy(cases[3].data, text, cases[3].len);
    /* 5: not a queue file name */
    cases[4].name = "junk.txt";
    cases[4].len = 4;
    memcpy(cases[4].data, "junk", 4);
    free(text);
    for (int i = 0; i < 5; i++) {
        snprintf(bad, sizeof bad, "%s/queue/%c/%s", f->dir,
                 i == 2   ? good.id[15]
                 : i == 4 ? '7'
                          : '1',
                 cases[i].name);
        write_file(bad, cases[i].data, cases[i].len);
    }
    /* and an orphan status file */
    snprintf(bad, sizeof bad, "%s/queue/5/00000000000000B5.st", f->dir);
    write_file(bad, "x", 1);

    sp = spool_fixture_open(f);
    assert_int_equal(spool_count(sp), 0);
    assert_int_equal(queued_files(f->dir), 0);
    assert_int_equal(count_entries(f->dir, "corrupt"), 6); /* moved, never deleted */
    /* the quarantined copy keeps its bytes */
    snprintf(bad, sizeof bad, "%s/corrupt/%s", f->dir, good.id);
    char *kept = read_file(bad, &len);
    assert_non_null(kept);
    assert_int_equal(len, cases[2].len);
    free(kept);
    assert_true(log_contains("warning: queue/1/00000000000000A1"));
    assert_true(log_contains("moved to"));
    spool_close(sp);
}

struct many {
    int done, errors;
};

static void many_done(void *arg, int err)
{
    struct many *mm = arg;
    mm->done++;
    if (err)
        mm->errors++;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_group_commit(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    enum { N = 200 };
    static char ids[N][SPOOL_ID_SIZE];
    long long c0 = counter_get(CNT_SPOOL_COMMITS), fl0 = counter_get(CNT_SPOOL_FLUSHES);
    struct many mm = {0};
    struct spool_msg *msgs[N];
    char body[4096];
    memset(body, 'x', sizeof body);
    memcpy(body + sizeof body - 2, "\r\n", 2);
    for (int i = 0; i < N; i++) {
        msgs[i] = spool_msg_new(sp);
        snprintf(ids[i], SPOOL_ID_SIZE, "%s", spool_msg_id(msgs[i]));
        spool_fixture_append(msgs[i], body, sizeof body);
    }
    struct spool_envelope e = test_env();
    for (int i = 0; i < N; i++)
        spool_msg_commit(msgs[i], &e, many_done, &mm);
    spool_fixture_run_until(f, &mm.done, N);
    assert_int_equal(mm.done, N);
    assert_int_equal(mm.errors, 0);
    qsort(ids, N, SPOOL_ID_SIZE, cmp_id);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) != 0);
    long long commits = counter_get(CNT_SPOOL_COMMITS) - c0;
    long long flushes = counter_get(CNT_SPOOL_FLUSHES) - fl0;
    assert_int_equal(commits, N);
    assert_true(flushes < commits); /* commits shared flushes */
    print_message("200 commits used %lld flushes\n", flushes);
    assert_int_equal(spool_count(sp), N);
    assert_int_equal(queued_files(f->dir), N);
    spool_close(sp);
}

/* A message held in memory, however many pieces it arrived in, is written whole and the same
 * bytes are handed to the scheduler. */
static void test_pieces(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    struct notified nt = {0};
    spool_set_notify(sp, notify_cb, &nt);
    static const int npieces[] = {20, 100};
    for (int t = 0; t < 2; t++) {
        char body[4096] = "";
        struct spool_msg *m = spool_msg_new(sp);
        struct commit_result r = {0};
        snprintf(r.id, sizeof r.id, "%s", spool_msg_id(m));
        for (int i = 0; i < npieces[t]; i++) {
            char line[32];
            int n = snprintf(line, sizeof line, "%c%d\r\n", i ? 'l' : 'S', i);
            strcat(body, line);
            spool_fixture_append(m, line, (size_t)n);
        }
        struct spool_envelope e = test_env();
        spool_msg_commit(m, &e, commit_done, &r);
        spool_fixture_run_until(f, &r.done, 1);
        assert_int_equal(r.err, 0);
        long long size;
        char *got = spool_fixture_read_message(sp, r.id, &size, NULL);
        assert_int_equal(size, (long long)strlen(body));
        assert_string_equal(got, body);
        free(got);
        assert_int_equal(nt.n, t + 1);
        if (strlen(body) < sizeof nt.contents[0])
            assert_string_equal(nt.contents[t], body);
        else {
            char want[64];
            snprintf(want, sizeof want, "(%zu bytes)", strlen(body));
            assert_string_equal(nt.contents[t], want);
        }
    }
    spool_close(sp);
}

static void drained_cb(void *arg)
{
    (*(int *)arg)++;
}

/* A session that stops reading while the disk is behind is called back once the write in
 * flight is done (no polling); with nothing in flight there is nothing to wait for. */
static void test_drain_callback(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    struct spool_msg *m = spool_msg_new(sp);
    int called = 0;
    assert_int_equal(spool_msg_on_drain(m, drained_cb, &called), 0); /* nothing in flight */
    size_t big = 512 * 1024;
    char *data = malloc(big);
    memset(data, 'x', big);
    spool_fixture_append(m, data, big); /* over 64 KiB: a worker starts writing it out */
    size_t before = spool_msg_buffered(m);
    assert_true(before >= big);
    assert_int_equal(spool_msg_on_drain(m, drained_cb, &called), 1);
    assert_int_equal(called, 0);
    spool_fixture_run_until(f, &called, 1);
    assert_int_equal(called, 1);
    assert_true(spool_msg_buffered(m) < before);
    /* at most once per registration */
    for (int i = 0; i < 20; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(called, 1);
    /* an abort forgets a registration */
    spool_fixture_append(m, data, big);
    assert_int_equal(spool_msg_on_drain(m, drained_cb, &called), 1);
    spool_msg_abort(m);
    for (int i = 0; i < 50; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(called, 1);
    free(data);
    spool_close(sp);
}

static void test_stream_large(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    struct notified nt = {0};
    spool_set_notify(sp, notify_cb, &nt);
    size_t total = 1536 * 1024 + 77;
    char *data = malloc(total);
    unsigned x = 12345;
    for (size_t i = 0; i < total; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (char)(x >> 16);
        if (i % 100 == 98)
            data[i] = '\r';
        else if (i % 100 == 99)
            data[i] = '\n';
    }
    struct spool_msg *m = spool_msg_new(sp);
    struct commit_result r = {0};
    snprintf(r.id, sizeof r.id, "%s", spool_msg_id(m));
    size_t max_buffered = 0;
    for (size_t off = 0; off < total; off += 8192) {
        size_t n = total - off < 8192 ? total - off : 8192;
        spool_fixture_append(m, data + off, n);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (spool_msg_buffered(m) > max_buffered)
            max_buffered = spool_msg_buffered(m);
    }
    /* the bulk went to disk while streaming; the streaming file lives in tmp/ */
    for (int i = 0; i < 100 && spool_msg_buffered(m) > 64 * 1024 + 8192; i++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_true(spool_msg_buffered(m) <= 64 * 1024 + 8192);
    assert_int_equal(tmp_messages(f->dir), 1);
    struct spool_envelope e = test_env();
    spool_msg_commit(m, &e, commit_done, &r);
    spool_fixture_run_until(f, &r.done, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(tmp_messages(f->dir), 0);
    assert_int_equal(nt.n, 1);
    assert_string_equal(nt.contents[0], "(none)"); /* streamed: not kept in memory */
    long long size;
    struct spool_envelope *env;
    char *got = spool_fixture_read_message(sp, r.id, &size, &env);
    assert_int_equal(size, (long long)total);
    assert_int_equal(env->size, (long long)total);
    assert_memory_equal(got, data, total);
    spool_envelope_free(env);
    free(got);
    free(data);
    spool_close(sp);
}

static void test_abort(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    /* small: never touched the disk */
    struct spool_msg *m = spool_msg_new(sp);
    spool_fixture_append(m, "tiny\r\n", 6);
    spool_msg_abort(m);
    /* large: its streaming file is removed */
    m = spool_msg_new(sp);
    char *big = calloc(1, 300000);
    spool_fixture_append(m, big, 300000);
    spool_fixture_append(m, big, 300000);
    free(big);
    spool_msg_abort(m);
    for (int i = 0; i < 100 && tmp_messages(f->dir) > 0; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(10000);
    }
    spool_close(sp); /* also waits for the abort job */
    assert_int_equal(tmp_messages(f->dir), 0);
    assert_int_equal(queued_files(f->dir), 0);
    sp = spool_fixture_open(f);
    assert_int_equal(spool_count(sp), 0);
    spool_close(sp);
}

static void test_close_finishes_commits(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    struct many mm = {0};
    for (int i = 0; i < 10; i++) {
        struct spool_msg *m = spool_msg_new(sp);
        spool_fixture_append(m, "x\r\n", 3);
        struct spool_envelope e = test_env();
        spool_msg_commit(m, &e, many_done, &mm);
    }
    spool_close(sp); /* the loop never ran */
    assert_int_equal(mm.done, 10);
    assert_int_equal(mm.errors, 0);
    assert_int_equal(queued_files(f->dir), 10);
}

static void remove_done(void *arg, int err)
{
    struct commit_result *r = arg;
    r->done++;
    r->err = err;
}

static void list_cb(void *arg, const char *id, long long size)
{
    int *n = arg;
    (*n)++;
    assert_true(spool_id_valid(id));
    assert_int_equal(size, 3);
}

/* inode_of - the inode number of DIR/REL, or 0. */
static unsigned long inode_of(const char *dir, const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/* queued_path - "queue/X/ID" of ID. */
static void queued_path(const char *id, char *buf, size_t len)
{
    snprintf(buf, len, "queue/%c/%s", id[strlen(id) - 1], id);
}

/* slots_hold - 1 when some slot in DIR/queue/X/ contains TEXT. */
static int slots_hold(const char *dir, const char *text)
{
    int found = 0;
    for (int h = 0; h < 16 && !found; h++) {
        char sub[16], path[512];
        snprintf(sub, sizeof sub, "queue/%X", h);
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && !found && (de = readdir(d))) {
            if (de->d_name[0] == '.' || !is_slot(dir, sub, de->d_name))
                continue;
            char p[800];
            size_t len;
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            char *c = read_file(p, &len);
            found = c && memmem(c, len, text, strlen(text)) != NULL;
            free(c);
        }
        if (d)
            closedir(d);
    }
    return found;
}

static void test_remove_and_list(void **state)
{
    struct spool_fixture *f = *state;
    long long m0 = counter_get(CNT_MQUEUE_MESSAGES), b0 = counter_get(CNT_MQUEUE_BYTES);
    struct spool *sp = spool_fixture_open(f);
    struct commit_result a = {0}, b = {0};
    commit_one(f, sp, "a\r\n", &a);
    commit_one(f, sp, "b\r\n", &b);
    int n = 0;
    spool_foreach(sp, list_cb, &n);
    assert_int_equal(n, 2);
    char st[64], path[512];
    assert_int_equal(spool_status_path(a.id, st, sizeof st), 0);
    snprintf(path, sizeof path, "%s/%s", f->dir, st);
    write_file(path, "status", 6);
    struct commit_result rm = {0};
    spool_remove(sp, a.id, 0, remove_done, &rm); /* no reuse: unlinked */
    assert_int_equal(rm.done, 0);                /* asynchronous */
    spool_fixture_run_until(f, &rm.done, 1);
    assert_int_equal(rm.err, 0);
    assert_false(spool_contains(sp, a.id));
    assert_int_equal(spool_count(sp), 1);
    assert_int_equal(counter_get(CNT_MQUEUE_MESSAGES), m0 + 1);
    assert_int_equal(counter_get(CNT_MQUEUE_BYTES), b0 + 3);
    assert_int_equal(access(path, F_OK), -1); /* status file gone too */
    assert_int_equal(queued_files(f->dir), 1);
    struct spool_envelope *e;
    assert_int_equal(spool_load_envelope(sp, a.id, &e), ENOENT);
    struct commit_result rm2 = {0};
    spool_remove(sp, a.id, 1, remove_done, &rm2);
    spool_fixture_run_until(f, &rm2.done, 1);
    assert_int_equal(rm2.err, ENOENT);
    spool_close(sp);
    assert_false(slots_hold(f->dir, "a\r\n")); /* not kept in the pool */
}

static void test_recycled_files(void **state)
{
    struct spool_fixture *f = *state;
    static unsigned long pool[SPOOL_POOL_MAX + 8];
    struct spool *sp = spool_fixture_open(f);
    struct commit_result a = {0}, rm = {0};
    char rel[64];
    /* a message is written into a slot made ahead: its queue ID is the slot's name */
    spool_fixture_wait_slots(f, sp);
    int n = slot_inodes(f->dir, pool, SPOOL_POOL_MAX + 8);
    assert_true(n >= 1 && n <= SPOOL_POOL_FILL);
    commit_one(f, sp, "first message\r\n", &a);
    queued_path(a.id, rel, sizeof rel);
    unsigned long ino = inode_of(f->dir, rel);
    assert_true(has_inode(pool, n, ino));
    spool_remove(sp, a.id, 1, remove_done, &rm);
    spool_fixture_run_until(f, &rm.done, 1);
    assert_int_equal(rm.err, 0);
    spool_close(sp); /* also waits for the worker that makes slots */
    assert_int_equal(queued_files(f->dir), 0);
    assert_int_equal(tmp_messages(f->dir), 0);
    /* the delivered message's file is a slot again, under a new ID, kept as it was */
    int m = slot_inodes(f->dir, pool, SPOOL_POOL_MAX + 8);
    assert_true(has_inode(pool, m, ino));
    assert_true(slots_hold(f->dir, "first message"));
    assert_int_equal(inode_of(f->dir, rel), 0); /* the old name is gone */

    /* a restart removes the slots (no mail in them), then makes new ones */
    sp = spool_fixture_open(f);
    assert_int_equal(spool_count(sp), 0);
    assert_false(slots_hold(f->dir, "first message"));
    spool_fixture_wait_slots(f, sp);
    n = slot_inodes(f->dir, pool, SPOOL_POOL_MAX + 8);
    struct commit_result b = {0};
    commit_one(f, sp, "second\r\n", &b);
    queued_path(b.id, rel, sizeof rel);
    assert_true(has_inode(pool, n, inode_of(f->dir, rel)));
    long long size;
    struct spool_envelope *env = NULL;
    char *body = spool_fixture_read_message(sp, b.id, &size, &env);
    assert_string_equal(body, "second\r\n");
    assert_string_equal(env->sender, "sender@example.net");
    free(body);
    spool_envelope_free(env);

    /* a message above the pool's size bound is unlinked, not kept */
    size_t big = (size_t)SPOOL_POOL_FILE_MAX;
    char *text = malloc(big + 1);
    memset(text, 'x', big);
    text[big] = '\0';
    struct commit_result c = {0}, rm2 = {0};
    commit_one(f, sp, text, &c);
    free(text);
    queued_path(c.id, rel, sizeof rel);
    spool_remove(sp, c.id, 1, remove_done, &rm2);
    spool_fixture_run_until(f, &rm2.done, 1);
    assert_int_equal(rm2.err, 0);
    spool_close(sp);
    /* (not by inode: a slot made after the unlink may get the freed inode number) */
    assert_false(slots_hold(f->dir, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
    assert_int_equal(tmp_messages(f->dir), 0);
}

static void test_space_hook(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    double real = spool_free_percent(sp);
    assert_true(real > 0.0 && real <= 100.0);
    assert_true(spool_space_ok(sp, 1000));
    spool_close(sp);

    setenv("MTA_TEST_FREE_BYTES", "1000/100000", 1);
    sp = spool_fixture_open(f);
    unsetenv("MTA_TEST_FREE_BYTES");
    assert_true(spool_free_percent(sp) > 0.99 && spool_free_percent(sp) < 1.01);
    assert_true(spool_space_ok(sp, 0));
    assert_true(spool_space_ok(sp, 600));  /* 900 < 1000 */
    assert_false(spool_space_ok(sp, 700)); /* 1050 > 1000: 452 4.3.1 */
    spool_close(sp);

    f->conf.queue_minfree = 1000; /* free space at the floor: nothing more */
    setenv("MTA_TEST_FREE_BYTES", "1000", 1);
    sp = spool_fixture_open(f);
    unsetenv("MTA_TEST_FREE_BYTES");
    assert_false(spool_space_ok(sp, 0));
    assert_false(spool_space_ok(sp, 1));
    spool_close(sp);
    f->conf.queue_minfree = 0;
}

static void test_lock(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    char *err = NULL;
    struct spool *sp2 = spool_open(f->base, &f->conf, &err);
    assert_null(sp2);
    assert_non_null(err);
    char want[512];
    snprintf(want, sizeof want, "data volume %s is in use by another mtad", f->dir);
    assert_string_equal(err, want);
    free(err);
    spool_close(sp);
    sp = spool_fixture_open(f); /* released on close */
    spool_close(sp);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_ids(void **state)
{
    struct spool_fixture *f = *state;
    struct spool *sp = spool_fixture_open(f);
    enum { N = 20000 };
    static char *ids[N];
    int digits[16] = {0};
    char prev[SPOOL_ID_SIZE] = "";
    for (int i = 0; i < N; i++) {
        struct spool_msg *m = spool_msg_new(sp);
        const char *id = spool_msg_id(m);
        assert_int_equal(strlen(id), 16);
        assert_true(spool_id_valid(id));
        /* never the same twice, even after an abort; increasing within a batch of slots (an
         * ID is made with its slot, ahead of the message: docs/spool-format.md) */
        assert_true(strcmp(prev, id) != 0);
        assert_null(spool_index_find(&sp->index, id));
        ids[i] = strdup(id);
        snprintf(prev, sizeof prev, "%s", id);
        digits[spool_id_hash(id)]++;
        spool_msg_abort(m);
    }
    for (int h = 0; h < 16; h++)
        assert_true(digits[h] > N / 32); /* every hash directory gets its share */
    qsort(ids, N, sizeof ids[0], cmp_str);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) < 0); /* unique */
    for (int i = 0; i < N; i++)
        free(ids[i]);
    spool_close(sp);
    assert_int_equal(tmp_messages(f->dir), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, spool_fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_commit_and_reopen),
        T(test_tmp_purged),
        T(test_garbage_quarantined),
        T(test_group_commit),
        T(test_pieces),
        T(test_drain_callback),
        T(test_stream_large),
        T(test_abort),
        T(test_close_finishes_commits),
        T(test_remove_and_list),
        T(test_recycled_files),
        T(test_space_hook),
        T(test_lock),
        T(test_ids),
    };
    if (spool_fixture_begin("spool") != 0)
        return 1;
    return spool_fixture_end(cmocka_run_group_tests(tests, NULL, NULL));
}
