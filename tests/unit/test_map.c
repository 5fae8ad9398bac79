/* test_map: the hash maps against a plain array model, through growth and tombstones. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(string_keys_match_a_model),
        cmocka_unit_test(u64_keys),
        cmocka_unit_test(borrowed_keys),
    };
    return cmocka_run_group_tests_name("map", tests, NULL, NULL);
}
