/* test_pool: the slab pool against a model, through slabs filling, emptying and being reused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

struct thing {
    uint64_t id;
    char name[20];
    double x;
};

/* Objects are zeroed, 8-aligned, never overlap, and keep their bytes until given back; a
 * pool whose objects all went back keeps at most its one spare slab mapped. */
static void objects_match_a_model(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct pool p;
    POOL_INIT(&p, struct thing);
    assert_int_equal(p.size, 40); /* 8-aligned: malloc would take a 48-byte block */
    static struct thing *held[N];
    srand(5);
    for (int round = 0; round < 60000; round++) {
        int k = rand() % N;
        if (held[k]) {
            assert_int_equal(held[k]->id, (uint64_t)k + 1);
            assert_int_equal(held[k]->name[0], 'a' + k % 26);
            pool_put(&p, held[k]);
            held[k] = NULL;
        } else {
            struct thing *t = pool_get(&p);
            assert_int_equal((uintptr_t)t % 8, 0);
            for (size_t i = 0; i < sizeof *t; i++)
                assert_int_equal(((unsigned char *)t)[i], 0);
            t->id = (uint64_t)k + 1;
            memset(t->name, 'a' + k % 26, sizeof t->name);
            held[k] = t;
        }
    }
    size_t live = 0;
    for (int k = 0; k < N; k++) {
        live += held[k] != NULL;
        if (held[k])
            assert_int_equal(held[k]->id, (uint64_t)k + 1); /* nobody wrote over it */
    }
    assert_int_equal(p.live, live);
    for (int k = 0; k < N; k++) {
        pool_put(&p, held[k]);
        held[k] = NULL;
    }
    assert_int_equal(p.live, 0);
    assert_int_equal(p.slabs, 1); /* the spare */
    pool_destroy(&p);
}

/* Filling slab after slab and emptying them in the other order gives every slab but the spare
 * back; a new object after that comes from the spare, not a new mapping. */
static void empty_slabs_go_back(void **state)
{
    (void)state;
    struct pool p;
    pool_init(&p, 280);
    size_t n = (size_t)p.per_slab * 5 + 7;
    void **objs = malloc(n * sizeof *objs);
    for (size_t i = 0; i < n; i++)
        objs[i] = pool_get(&p);
    assert_int_equal(p.slabs, 6);
    assert_int_equal(pool_mapped_bytes(), 6 * (64u << 10));
    for (size_t i = n; i-- > 0;)
        pool_put(&p, objs[i]);
    assert_int_equal(p.slabs, 1);
    void *again = pool_get(&p);
    assert_int_equal(p.slabs, 1);
    pool_put(&p, again);
    pool_put(&p, NULL);
    pool_destroy(&p);
    assert_int_equal(pool_mapped_bytes(), 0);
    free(objs);
}

/* Sizes share the pool of their multiple of 8; a size above POOL_SIZES_MAX comes from the heap;
 * every object is zeroed, 8-aligned and apart from the others. */
static void sizes_go_to_their_multiple_of_8(void **state)
{
    (void)state;
    struct pool_sizes ps;
    pool_sizes_init(&ps);
    enum { N = POOL_SIZES_MAX + 16 };
    unsigned char *objs[N + 1];
    for (size_t size = 1; size <= N; size++) {
        objs[size] = pool_sizes_get(&ps, size);
        assert_int_equal((uintptr_t)objs[size] % 8, 0);
        for (size_t i = 0; i < size; i++)
            assert_int_equal(objs[size][i], 0);
        memset(objs[size], (int)size, size);
    }
    for (size_t i = 0; i < POOL_SIZES_MAX / 8; i++) {
        assert_int_equal(ps.by8[i].size, 8 * (i + 1));
        assert_int_equal(ps.by8[i].live, 8); /* sizes 8i+1 .. 8i+8 */
    }
    for (size_t size = 1; size <= N; size++) {
        for (size_t i = 0; i < size; i++)
            assert_int_equal(objs[size][i], (unsigned char)size);
        pool_sizes_put(&ps, objs[size], size);
    }
    for (size_t i = 0; i < POOL_SIZES_MAX / 8; i++)
        assert_int_equal(ps.by8[i].live, 0);
    pool_sizes_put(&ps, NULL, 40);
    pool_sizes_destroy(&ps);
    assert_int_equal(pool_mapped_bytes(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(objects_match_a_model),
        cmocka_unit_test(empty_slabs_go_back),
        cmocka_unit_test(sizes_go_to_their_multiple_of_8),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
