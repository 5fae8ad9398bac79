/* test_chunk: references owed in a chunk_unrefs table are held until dropped, once per chunk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>

#include "chunk.h"

static unsigned refs(struct chunk *c)
{
    return atomic_load(&c->refs);
}

/* What the table owes, summed over its slots. */
static uint64_t owed_total(const struct chunk_unrefs *u)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < CHUNK_UNREFS_SLOTS; i++)
        n += u->slot[i].chunk ? u->slot[i].n : 0;
    return n;
}

/* Interleaved drops of a few chunks (one connection's wave after another) stay held until the
 * drop, which leaves one entry per chunk. */
static void owed_references_are_held_until_dropped(void **state)
{
    (void)state;
    static struct chunk_unrefs u;
    struct chunk *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = chunk_from("abc", 3);
    for (int conn = 0; conn < 50; conn++)
        for (int i = 0; i < 3; i++)
            chunk_unrefs_add(&u, chunk_ref(c[i]));
    chunk_unrefs_add(&u, NULL);
    assert_int_equal(u.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(refs(c[i]), 51);
    chunk_unrefs_drop(&u);
    assert_int_equal(u.n, 0);
    assert_int_equal(owed_total(&u), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(refs(c[i]), 1);
        chunk_unref(c[i]);
    }
    chunk_unrefs_drop(&u); /* empty: nothing happens */
}

/* A chunk whose last reference is owed lives until the drop frees it (ASan would see a use
 * after free, or a leak). */
static void a_last_reference_owed_frees_at_the_drop(void **state)
{
    (void)state;
    static struct chunk_unrefs u;
    struct chunk *c = chunk_from("last", 4);
    chunk_unrefs_add(&u, chunk_ref(c));
    chunk_unrefs_add(&u, c); /* ours too: the table owes both */
    assert_int_equal(refs(c), 2);
    assert_memory_equal(c->data, "last", 4);
    chunk_unrefs_drop(&u);
}

/* One chunk more than the table holds drops everything owed first, then is owed itself. */
static void a_full_table_drops_what_it_owes(void **state)
{
    (void)state;
    static struct chunk_unrefs u;
    enum { N = CHUNK_UNREFS_MAX + 1 };
    static struct chunk *c[N];
    for (int i = 0; i < N; i++)
        c[i] = chunk_new(8);
    for (int i = 0; i < N - 1; i++) {
        chunk_unrefs_add(&u, chunk_ref(c[i]));
        chunk_unrefs_add(&u, chunk_ref(c[i]));
    }
    assert_int_equal(u.n, CHUNK_UNREFS_MAX);
    for (int i = 0; i < N - 1; i++)
        assert_int_equal(refs(c[i]), 3);
    chunk_unrefs_add(&u, chunk_ref(c[0])); /* already owed: no overflow */
    assert_int_equal(refs(c[0]), 4);
    chunk_unrefs_add(&u, chunk_ref(c[N - 1]));
    assert_int_equal(u.n, 1);
    for (int i = 0; i < N - 1; i++)
        assert_int_equal(refs(c[i]), 1);
    assert_int_equal(refs(c[N - 1]), 2);
    chunk_unrefs_drop(&u);
    for (int i = 0; i < N; i++) {
        assert_int_equal(refs(c[i]), 1);
        chunk_unref(c[i]);
    }
}

/* Against a model, with many more chunks than slots (collisions, overflows): every reference
 * taken is either still owed by the table or dropped, never dropped twice, and the table never
 * holds more than its limit. */
static void owed_references_match_a_model(void **state)
{
    (void)state;
    static struct chunk_unrefs u;
    enum { N = 700 };
    static struct chunk *c[N];
    for (int i = 0; i < N; i++)
        c[i] = chunk_new(16);
    srand(9);
    for (int step = 0; step < 200000; step++) {
        /* Mostly a few hot chunks, as in a wave, with a cold one now and then. */
        int k = rand() % 8 ? rand() % 40 : rand() % N;
        chunk_unrefs_add(&u, chunk_ref(c[k]));
        assert_true(u.n <= CHUNK_UNREFS_MAX);
        if (step % 1000 == 0) {
            uint64_t above = 0;
            for (int i = 0; i < N; i++)
                above += refs(c[i]) - 1;
            assert_int_equal(above, owed_total(&u));
        }
        if (step % 9973 == 0)
            chunk_unrefs_drop(&u);
    }
    chunk_unrefs_drop(&u);
    for (int i = 0; i < N; i++) {
        assert_int_equal(refs(c[i]), 1);
        chunk_unref(c[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(owed_references_are_held_until_dropped),
        cmocka_unit_test(a_last_reference_owed_frees_at_the_drop),
        cmocka_unit_test(a_full_table_drops_what_it_owes),
        cmocka_unit_test(owed_references_match_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
