/* test_ordset: the skip list against a sorted-array model: inserts, removals, lookups, seeks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ordset.h"
#include "pool.h"

#define KEYS 3000

static char keys[KEYS][ORDSET_KEY_MAX + 1];
static int values[KEYS];
static bool present[KEYS];

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The model's keys present, sorted. */
static size_t model_sorted(const char **out)
{
    size_t n = 0;
    for (int i = 0; i < KEYS; i++)
        if (present[i])
            out[n++] = keys[i];
    qsort(out, n, sizeof *out, by_bytes);
    return n;
}

/* Walks s from the first key after `after` and checks it against the model. */
static void check_walk(const struct ordset *s, const char *after)
{
    static const char *sorted[KEYS];
    size_t n = model_sorted(sorted);
    size_t i = 0;
    if (after)
        while (i < n && strcmp(sorted[i], after) <= 0)
            i++;
    const struct ordset_node *node = ordset_after(s, after, after ? strlen(after) : 0);
    for (; node; node = ordset_next(node), i++) {
        assert_true(i < n);
        assert_string_equal(ordset_key(node), sorted[i]);
        assert_int_equal(ordset_key_len(node), strlen(sorted[i]));
        assert_ptr_equal(ordset_value(node),
                         &values[(const char(*)[ORDSET_KEY_MAX + 1]) sorted[i] - keys]);
    }
    assert_int_equal(i, n);
}

/* state: NULL, or pools the nodes come from (as the hub's rooms' indexes do). */
static void matches_a_sorted_model(void **state)
{
    struct pool_sizes *pools = *state;
    memset(present, 0, sizeof present);
    srand(11);
    for (int i = 0; i < KEYS; i++) {
        /* Short keys over a small alphabet: many shared prefixes, prefixes of each other. */
        int len = 1 + rand() % 8;
        for (int j = 0; j < len; j++)
            keys[i][j] = "ab_-.z9"[rand() % 7];
        keys[i][len] = '\0';
        for (int k = 0; k < i; k++)
            if (strcmp(keys[k], keys[i]) == 0) {
                snprintf(keys[i], sizeof keys[i], "u%d", i); /* unique */
                break;
            }
    }
    struct ordset s;
    ordset_init(&s, 42);
    if (pools)
        ordset_use_pools(&s, pools);
    size_t count = 0;
    for (int round = 0; round < 60000; round++) {
        int k = rand() % KEYS;
        size_t len = strlen(keys[k]);
        switch (rand() % 4) {
        case 0:
            assert_int_equal(ordset_insert(&s, keys[k], len, &values[k]), !present[k]);
            count += !present[k];
            present[k] = true;
            break;
        case 1:
            assert_ptr_equal(ordset_remove(&s, keys[k], len), present[k] ? &values[k] : NULL);
            count -= present[k];
            present[k] = false;
            break;
        default:
            assert_ptr_equal(ordset_get(&s, keys[k], len), present[k] ? &values[k] : NULL);
        }
        assert_int_equal(s.count, count);
        if (round % 5000 == 0) {
            check_walk(&s, NULL);
            check_walk(&s, keys[rand() % KEYS]);
            check_walk(&s, "");
            check_walk(&s, "zzzzzzzzzz");
        }
    }
    check_walk(&s, NULL);
    ordset_free(&s);
    assert_int_equal(s.count, 0);
    assert_null(ordset_after(&s, NULL, 0));
    if (pools)
        for (size_t i = 0; i < POOL_SIZES_MAX / 8; i++)
            assert_int_equal(pools->by8[i].live, 0); /* every node went back */
}

static void seeks_are_exclusive_and_prefix_first(void **state)
{
    (void)state;
    struct ordset s;
    ordset_init(&s, 1);
    int v[4];
    assert_true(ordset_insert(&s, "ab", 2, &v[0]));
    assert_true(ordset_insert(&s, "a", 1, &v[1]));
    assert_true(ordset_insert(&s, "b", 1, &v[2]));
    assert_false(ordset_insert(&s, "a", 1, &v[3])); /* there already: unchanged */
    assert_ptr_equal(ordset_get(&s, "a", 1), &v[1]);
    assert_string_equal(ordset_key(ordset_after(&s, NULL, 0)), "a");
    assert_string_equal(ordset_key(ordset_after(&s, "a", 1)), "ab"); /* exclusive */
    assert_string_equal(ordset_key(ordset_after(&s, "aa", 2)), "ab");
    assert_string_equal(ordset_key(ordset_after(&s, "ab", 2)), "b");
    assert_null(ordset_after(&s, "b", 1));
    assert_string_equal(ordset_key(ordset_after(&s, "", 0)), "a");
    ordset_free(&s);
}

/* A value replaced through its node is what get and a walk give; a key absent has no node. */
static void a_value_is_replaced_in_place(void **state)
{
    (void)state;
    struct ordset s;
    ordset_init(&s, 3);
    assert_true(ordset_insert(&s, "k", 1, (void *)(uintptr_t)7));
    assert_true(ordset_insert(&s, "m", 1, NULL));
    assert_null(ordset_find(&s, "l", 1));
    struct ordset_node *n = ordset_find(&s, "k", 1);
    assert_non_null(n);
    assert_string_equal(ordset_key(n), "k");
    ordset_set_value(n, (void *)(uintptr_t)0x8000000100000002u);
    assert_ptr_equal(ordset_get(&s, "k", 1), (void *)(uintptr_t)0x8000000100000002u);
    assert_ptr_equal(ordset_value(ordset_after(&s, NULL, 0)), (void *)(uintptr_t)0x8000000100000002u);
    /* A NULL value is a present key all the same: its node is found. */
    assert_non_null(ordset_find(&s, "m", 1));
    assert_int_equal(s.count, 2);
    ordset_free(&s);
}

static void long_keys_are_refused_and_long_seeks_cut(void **state)
{
    (void)state;
    struct ordset s;
    ordset_init(&s, 0);
    char k32[ORDSET_KEY_MAX + 1], k40[41];
    memset(k32, 'q', ORDSET_KEY_MAX);
    k32[ORDSET_KEY_MAX] = '\0';
    memset(k40, 'q', 40);
    k40[40] = '\0';
    int v;
    assert_false(ordset_insert(&s, k40, 40, &v));
    assert_true(ordset_insert(&s, k32, ORDSET_KEY_MAX, &v));
    assert_true(ordset_insert(&s, "r", 1, &v));
    /* "q"x32 < "q"x40, so the first key after the longer one is "r", as a full compare says. */
    assert_string_equal(ordset_key(ordset_after(&s, k40, 40)), "r");
    assert_string_equal(ordset_key(ordset_after(&s, k32, 31)), k32);
    ordset_free(&s);
}

int main(void)
{
    static struct pool_sizes pools;
    pool_sizes_init(&pools);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_a_sorted_model),
        cmocka_unit_test_prestate(matches_a_sorted_model, &pools),
        cmocka_unit_test(seeks_are_exclusive_and_prefix_first),
        cmocka_unit_test(a_value_is_replaced_in_place),
        cmocka_unit_test(long_keys_are_refused_and_long_seeks_cut),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    pool_sizes_destroy(&pools);
    return failed;
}
