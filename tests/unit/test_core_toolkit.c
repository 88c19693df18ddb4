/*
 * test_core_toolkit.c - the core toolkit the modules share instead of their own
 * copies: the hash table finds what was put in across growth, tells composite
 * keys apart, removes exactly the node asked for and visits every node once;
 * the clocks agree with the system's and deadlines carry into seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "mta/clock.h"
#include "mta/htab.h"

struct item {
    char key[32];
    int kind;
    int seen;
    struct htab_node node;
};

struct item_key {
    const char *key;
    int kind;
};

static int item_match(const struct htab_node *n, const void *k)
{
    const struct item *it = HTAB_ENTRY(n, const struct item, node);
    const struct item_key *key = k;
    return it->kind == key->kind && strcmp(it->key, key->key) == 0;
}

static size_t item_hash(const char *key, int kind)
{
    return htab_hash_str(key) * 3u + (size_t)kind;
}

static struct item *item_find(struct htab *t, const char *key, int kind)
{
    struct item_key k = {key, kind};
    struct htab_node *n = htab_find(t, item_hash(key, kind), item_match, &k);
    return n ? HTAB_ENTRY(n, struct item, node) : NULL;
}

#define NITEMS 5000 /* several doublings from the first bucket array */

static void test_htab_insert_find_grow(void **state)
{
    (void)state;
    struct htab t = HTAB_INIT;
    struct item *v = calloc(NITEMS, sizeof(*v));
    assert_non_null(v);
    assert_null(item_find(&t, "nothing", 0)); /* empty table, no bucket array yet */
    for (int i = 0; i < NITEMS; i++) {
        snprintf(v[i].key, sizeof(v[i].key), "K%05d", i / 2);
        v[i].kind = i % 2; /* same name, two kinds: two entries */
        assert_int_equal(htab_insert(&t, &v[i].node, item_hash(v[i].key, v[i].kind)), 0);
    }
    assert_int_equal(t.count, NITEMS);
    assert_true(t.nslot >= NITEMS);
    for (int i = 0; i < NITEMS; i++)
        assert_ptr_equal(item_find(&t, v[i].key, v[i].kind), &v[i]);
    assert_null(item_find(&t, "K99999", 0));
    assert_null(item_find(&t, "K00001", 2));
    htab_free(&t);
    assert_int_equal(t.count, 0);
    free(v);
}

static void test_htab_reserve_sizes_once(void **state)
{
    (void)state;
    struct htab t = HTAB_INIT;
    struct item *v = calloc(NITEMS, sizeof(*v));
    assert_non_null(v);
    for (int i = 0; i < 10; i++) { /* a few nodes before: they move with the reserve */
        snprintf(v[i].key, sizeof(v[i].key), "R%05d", i);
        assert_int_equal(htab_insert(&t, &v[i].node, item_hash(v[i].key, 0)), 0);
    }
    assert_int_equal(htab_reserve(&t, NITEMS), 0);
    assert_true(t.nslot >= NITEMS);
    struct htab_node **slot = t.slot;
    size_t nslot = t.nslot;
    for (int i = 10; i < NITEMS; i++) {
        snprintf(v[i].key, sizeof(v[i].key), "R%05d", i);
        assert_int_equal(htab_insert(&t, &v[i].node, item_hash(v[i].key, 0)), 0);
    }
    /* no doubling while the reserved count went in */
    assert_ptr_equal(t.slot, slot);
    assert_int_equal(t.nslot, nslot);
    for (int i = 0; i < NITEMS; i++)
        assert_ptr_equal(item_find(&t, v[i].key, 0), &v[i]);
    /* reserving less than there is room for changes nothing */
    assert_int_equal(htab_reserve(&t, 10), 0);
    assert_ptr_equal(t.slot, slot);
    htab_free(&t);
    free(v);
}

static void test_htab_remove_and_iterate(void **state)
{
    (void)state;
    struct htab t = HTAB_INIT;
    struct item v[300];
    memset(v, 0, sizeof(v));
    for (int i = 0; i < 300; i++) {
        snprintf(v[i].key, sizeof(v[i].key), "id%d", i);
        assert_int_equal(htab_insert(&t, &v[i].node, item_hash(v[i].key, 0)), 0);
    }
    for (int i = 0; i < 300; i += 3)
        htab_remove(&t, &v[i].node);
    assert_int_equal(t.count, 200);
    for (int i = 0; i < 300; i++) {
        if (i % 3 == 0)
            assert_null(item_find(&t, v[i].key, 0));
        else
            assert_ptr_equal(item_find(&t, v[i].key, 0), &v[i]);
    }
    /* every remaining node once, also when each is removed as the walk goes */
    int n = 0;
    for (struct htab_node *p = htab_next(&t, NULL), *next; p; p = next) {
        next = htab_next(&t, p);
        HTAB_ENTRY(p, struct item, node)->seen++;
        htab_remove(&t, p);
        n++;
    }
    assert_int_equal(n, 200);
    assert_int_equal(t.count, 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(v[i].seen, i % 3 == 0 ? 0 : 1);
    assert_null(htab_next(&t, NULL));
    htab_free(&t);
}

static void test_htab_hash_str(void **state)
{
    (void)state;
    /* FNV-1a: the empty string is the offset basis; one byte changes the hash */
    assert_true(htab_hash_str("") == (size_t)2166136261u);
    assert_true(htab_hash_str("0A1B2C3D4E") != htab_hash_str("0A1B2C3D4F"));
}

static void test_clock(void **state)
{
    (void)state;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long wall = (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
    long long now = clock_now_us();
    assert_true(now >= wall && now - wall < 5000000LL);

    long long m1 = clock_mono_us(), m2 = clock_mono_us();
    assert_true(m2 >= m1);

    struct timespec a = clock_mono_after(0), b = clock_mono_after(1999);
    assert_true(clock_ts_before(&a, &b));
    assert_false(clock_ts_before(&b, &a));
    assert_false(clock_ts_before(&a, &a));
    assert_true(b.tv_nsec >= 0 && b.tv_nsec < 1000000000L);
    long long diff = ((long long)b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    assert_true(diff >= 1999000000LL && diff < 2999000000LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_htab_insert_find_grow),
        cmocka_unit_test(test_htab_reserve_sizes_once),
        cmocka_unit_test(test_htab_remove_and_iterate),
        cmocka_unit_test(test_htab_hash_str),
        cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
