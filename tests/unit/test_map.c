/* test_map: the hash maps against a plain array model, through growth, collisions and deletion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "map.h"

#define KEYS 5000

static void string_keys_match_a_model(void **state)
{
    (void)state;
    struct map m;
    map_init(&m, true);
    static int values[KEYS];
    static bool present[KEYS];
    char key[32];
    srand(7);
    for (int round = 0; round < 40000; round++) {
        int k = rand() % KEYS;
        snprintf(key, sizeof key, "room-%d", k);
        switch (rand() % 3) {
        case 0:
            map_put(&m, key, &values[k]);
            present[k] = true;
            break;
        case 1:
            assert_ptr_equal(map_del(&m, key), present[k] ? &values[k] : NULL);
            present[k] = false;
            break;
        default:
            assert_ptr_equal(map_get(&m, key), present[k] ? &values[k] : NULL);
        }
    }
    size_t live = 0;
    for (int k = 0; k < KEYS; k++)
        live += present[k];
    assert_int_equal(m.count, live);
    size_t seen = 0, pos = 0;
    const char *k;
    void *v;
    while (map_next(&m, &pos, &k, &v))
        seen++;
    assert_int_equal(seen, live);
    map_free(&m);
}

static void u64_keys(void **state)
{
    (void)state;
    struct map m;
    map_init(&m, false);
    for (uint64_t i = 1; i <= KEYS; i++)
        assert_null(map_put_u64(&m, i, (void *)(uintptr_t)(i * 3)));
    for (uint64_t i = 1; i <= KEYS; i += 2)
        assert_ptr_equal(map_del_u64(&m, i), (void *)(uintptr_t)(i * 3));
    for (uint64_t i = 1; i <= KEYS; i++)
        assert_ptr_equal(map_get_u64(&m, i), i % 2 ? NULL : (void *)(uintptr_t)(i * 3));
    assert_ptr_equal(map_put_u64(&m, 2, NULL), (void *)(uintptr_t)6);
    assert_int_equal(m.count, KEYS / 2);
    map_free(&m);
}

/* Borrowed keys are the caller's: a put on a present key moves the entry to the new pointer, so
 * the old one may be freed; the map never frees a key. */
static void borrowed_keys(void **state)
{
    (void)state;
    struct map m;
    map_init_borrowed(&m);
    static char names[KEYS][16];
    static int values[KEYS];
    for (int k = 0; k < KEYS; k++) {
        snprintf(names[k], sizeof names[k], "user%d", k);
        assert_null(map_put(&m, names[k], &values[k]));
    }
    char *moved = malloc(16);
    snprintf(moved, 16, "user%d", 7);
    assert_ptr_equal(map_put(&m, moved, &values[8]), &values[7]);
    names[7][0] = 'X'; /* the old key no longer matters */
    assert_ptr_equal(map_get(&m, "user7"), &values[8]);
    size_t seen = 0;
    const char *key;
    void *value;
    for (size_t pos = 0; map_next(&m, &pos, &key, &value); seen++)
        if (value == &values[8] && key != names[8])
            assert_ptr_equal(key, moved);
    assert_int_equal(seen, KEYS);
    for (int k = 0; k < KEYS; k += 2)
        assert_ptr_equal(map_del(&m, k == 7 ? moved : names[k]), k == 7 ? &values[8] : &values[k]);
    assert_ptr_equal(map_get(&m, "user7"), &values[8]);
    assert_null(map_get(&m, "user6"));
    assert_ptr_equal(map_get(&m, "user9"), &values[9]);
    assert_int_equal(m.count, KEYS / 2);
    map_free(&m);
    free(moved);
}

/* Every size from empty to several doublings, each table filled and then emptied in a shuffled
 * order: a small table at 15/16 full is all collisions and wrap-around, which deletion's backward
 * shift must keep findable. Iteration visits each live entry exactly once at every step. */
static void every_size_filled_and_emptied(void **state)
{
    (void)state;
    enum { MAXN = 70 };
    static int values[MAXN];
    char key[16];
    srand(11);
    for (int n = 1; n <= MAXN; n++) {
        struct map s, u;
        map_init(&s, true);
        map_init(&u, false);
        int order[MAXN];
        for (int k = 0; k < n; k++) {
            snprintf(key, sizeof key, "k%d", k);
            assert_null(map_put(&s, key, &values[k]));
            assert_null(map_put_u64(&u, (uint64_t)k << 40, &values[k])); /* ids far apart */
            order[k] = k;
        }
        for (int k = n - 1; k > 0; k--) {
            int j = rand() % (k + 1), t = order[k];
            order[k] = order[j];
            order[j] = t;
        }
        bool present[MAXN];
        for (int k = 0; k < n; k++)
            present[k] = true;
        for (int step = 0; step < n; step++) {
            int gone = order[step];
            snprintf(key, sizeof key, "k%d", gone);
            assert_ptr_equal(map_del(&s, key), &values[gone]);
            assert_ptr_equal(map_del_u64(&u, (uint64_t)gone << 40), &values[gone]);
            assert_null(map_del(&s, key));
            present[gone] = false;
            int seen[MAXN] = {0};
            const char *sk;
            uint64_t uk;
            void *v;
            for (size_t pos = 0; map_next(&s, &pos, &sk, &v);) {
                int k = atoi(sk + 1);
                assert_true(present[k]);
                assert_ptr_equal(v, &values[k]);
                seen[k]++;
            }
            for (size_t pos = 0; map_next_u64(&u, &pos, &uk, &v);) {
                int k = (int)(uk >> 40);
                assert_true(present[k]);
                assert_ptr_equal(v, &values[k]);
                seen[k]++;
            }
            for (int k = 0; k < n; k++) {
                assert_int_equal(seen[k], present[k] ? 2 : 0);
                snprintf(key, sizeof key, "k%d", k);
                assert_ptr_equal(map_get(&s, key), present[k] ? &values[k] : NULL);
                assert_ptr_equal(map_get_u64(&u, (uint64_t)k << 40),
                                 present[k] ? &values[k] : NULL);
            }
            assert_int_equal(s.count, (size_t)(n - step - 1));
            assert_int_equal(u.count, (size_t)(n - step - 1));
        }
        map_free(&s);
        map_free(&u);
    }
}

/* The table grows by doubling at 15/16 full: never fuller, never more than twice what that
 * needs. Keys that differ only in the last character share most of FNV's state, and
 * sequential ids are the worker's connection ids. */
static void growth_keeps_the_load_between_bounds(void **state)
{
    (void)state;
    struct map s, u;
    map_init(&s, true);
    map_init(&u, false);
    char key[32];
    for (int k = 1; k <= 40000; k++) {
        snprintf(key, sizeof key, "guest-%d", k);
        map_put(&s, key, key + 1);
        map_put_u64(&u, (uint64_t)k, key + 1);
        assert_true(s.count * 16 <= s.cap * 15);
        assert_true(s.cap <= 16 || s.count * 32 > s.cap * 15 - 32);
        assert_int_equal(u.cap, s.cap);
    }
    for (int k = 1; k <= 40000; k += 3) {
        snprintf(key, sizeof key, "guest-%d", k);
        assert_ptr_equal(map_get(&s, key), key + 1);
        assert_ptr_equal(map_get_u64(&u, (uint64_t)k), key + 1);
        snprintf(key, sizeof key, "guest-%d", k + 40000);
        assert_null(map_get(&s, key));
        assert_null(map_get_u64(&u, (uint64_t)k + 40000));
    }
    map_free(&s);
    map_free(&u);
}

/* A NULL value is an entry like any other (the slot's emptiness is not the caller's NULL). */
static void null_values_are_entries(void **state)
{
    (void)state;
    struct map m;
    map_init(&m, true);
    assert_null(map_put(&m, "a", NULL));
    assert_null(map_put(&m, "b", &m));
    assert_int_equal(m.count, 2);
    const char *k;
    void *v;
    size_t n = 0;
    for (size_t pos = 0; map_next(&m, &pos, &k, &v); n++)
        assert_ptr_equal(v, k[0] == 'a' ? NULL : (void *)&m);
    assert_int_equal(n, 2);
    assert_null(map_put(&m, "a", &m));
    assert_ptr_equal(map_get(&m, "a"), &m);
    assert_ptr_equal(map_del(&m, "b"), &m);
    assert_int_equal(m.count, 1);
    map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(string_keys_match_a_model),
        cmocka_unit_test(u64_keys),
        cmocka_unit_test(borrowed_keys),
        cmocka_unit_test(every_size_filled_and_emptied),
        cmocka_unit_test(growth_keeps_the_load_between_bounds),
        cmocka_unit_test(null_values_are_entries),
    };
    return cmocka_run_group_tests_name("map", tests, NULL, NULL);
}
