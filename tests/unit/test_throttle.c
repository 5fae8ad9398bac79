/* test_throttle: growing delays, forgetting, forgiving, and the bounded least-recently-used table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "throttle.h"

static const struct throttle_rule rule = {.free_fails = 5, .max_delay_ms = 60000};

/* Starts well after 0, as the monotonic clock does. */
#define T0 1000000u

static void free_failures_cost_nothing_then_delays_double_to_the_cap(void **state)
{
    (void)state;
    struct throttle_state s = {0};
    uint64_t now = T0;
    for (int i = 1; i <= 4; i++) {
        throttle_fail(&rule, &s, now);
        assert_int_equal(throttle_wait(&rule, &s, now), 0);
    }
    const uint64_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        throttle_fail(&rule, &s, now);
        assert_int_equal(throttle_failures(&rule, &s, now), 5 + i);
        assert_int_equal(throttle_wait(&rule, &s, now), expected[i]);
        assert_int_equal(throttle_wait(&rule, &s, now + expected[i] - 1), 1);
        assert_int_equal(throttle_wait(&rule, &s, now + expected[i]), 0);
        now += expected[i]; /* the next attempt comes exactly when allowed, and fails */
    }
}

static void one_failure_is_forgotten_per_longest_delay(void **state)
{
    (void)state;
    struct throttle_state s = {0};
    for (int i = 0; i < 7; i++)
        throttle_fail(&rule, &s, T0);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 59999), 7);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 60000), 6);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 3 * 60000), 4);
    assert_int_equal(throttle_wait(&rule, &s, T0 + 3 * 60000), 0);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 10 * 60000), 0);
    /* A failure starts the forgetting over: 4 left, plus this one. */
    throttle_fail(&rule, &s, T0 + 3 * 60000 + 5);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 4 * 60000), 5);
    assert_int_equal(throttle_wait(&rule, &s, T0 + 3 * 60000 + 5), 1000);
}

static void a_client_that_keeps_failing_at_the_cap_stays_there(void **state)
{
    (void)state;
    struct throttle_state s = {0};
    uint64_t now = T0;
    for (int i = 0; i < 12; i++)
        throttle_fail(&rule, &s, now);
    for (int i = 0; i < 100; i++) {
        now += throttle_wait(&rule, &s, now);
        throttle_fail(&rule, &s, now);
        assert_int_equal(throttle_wait(&rule, &s, now), 60000);
    }
}

static void forgiving_lowers_the_count_and_keeps_the_forgetting_phase(void **state)
{
    (void)state;
    struct throttle_state s = {0};
    for (int i = 0; i < 8; i++)
        throttle_fail(&rule, &s, T0);
    assert_int_equal(throttle_wait(&rule, &s, T0), 8000);
    throttle_forgive(&rule, &s, 3, T0 + 10);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 10), 5);
    assert_int_equal(throttle_wait(&rule, &s, T0 + 10), 990);
    /* 90 s after the last failure: one period passed before forgiving counts once, not twice. */
    throttle_forgive(&rule, &s, 1, T0 + 90000);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 90000), 3);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 119999), 3);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 120000), 2);
    throttle_forgive(&rule, &s, 100, T0 + 120000);
    assert_int_equal(throttle_failures(&rule, &s, T0 + 120000), 0);
}

static void a_rule_without_free_failures_never_delays(void **state)
{
    (void)state;
    const struct throttle_rule off = {.free_fails = 0, .max_delay_ms = 60000};
    struct throttle_state s = {0};
    for (int i = 0; i < 1000; i++)
        throttle_fail(&off, &s, T0);
    assert_int_equal(throttle_wait(&off, &s, T0), 0);
    assert_int_equal(throttle_failures(&off, &s, T0), 1000);
}

struct item {
    struct throttle_entry e;
    int payload;
};

static void the_table_forgets_the_least_recently_used_unpinned_entry(void **state)
{
    (void)state;
    struct throttle_table t;
    throttle_table_init(&t, 3, sizeof(struct item));
    struct item *a = (struct item *)throttle_table_get(&t, 1);
    struct item *b = (struct item *)throttle_table_get(&t, 2);
    struct item *c = (struct item *)throttle_table_get(&t, 3);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(a->payload, 0);
    a->payload = 11;
    assert_ptr_equal(throttle_table_get(&t, 1), a); /* found again, and now the newest */
    assert_int_equal(a->payload, 11);
    b->e.pins = 1; /* work in progress refers to 2 */
    /* Full: 4 takes the place of 3 (2 is older but pinned). */
    struct item *d = (struct item *)throttle_table_get(&t, 4);
    assert_non_null(d);
    assert_int_equal(d->e.key, 4);
    assert_int_equal(d->payload, 0);
    assert_null(throttle_table_find(&t, 3));
    assert_ptr_equal(throttle_table_find(&t, 2), b);
    assert_int_equal(t.count, 3);
    /* Every entry pinned: a new key is refused, old ones are still found. */
    a->e.pins = b->e.pins = d->e.pins = 1;
    assert_null(throttle_table_get(&t, 5));
    assert_ptr_equal(throttle_table_find(&t, 1), a);
    d->e.pins = 0;
    assert_non_null(throttle_table_get(&t, 5));
    assert_null(throttle_table_find(&t, 4));
    throttle_table_free(&t);
}

static void a_large_table_stays_bounded(void **state)
{
    (void)state;
    struct throttle_table t;
    throttle_table_init(&t, 1000, sizeof(struct item));
    for (uint64_t k = 1; k <= 100000; k++) {
        struct item *it = (struct item *)throttle_table_get(&t, k);
        assert_non_null(it);
        it->payload = (int)k;
    }
    assert_int_equal(t.count, 1000);
    assert_int_equal(t.index.count, 1000);
    for (uint64_t k = 99001; k <= 100000; k++)
        assert_int_equal(((struct item *)throttle_table_find(&t, k))->payload, (int)k);
    assert_null(throttle_table_find(&t, 99000));
    throttle_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(free_failures_cost_nothing_then_delays_double_to_the_cap),
        cmocka_unit_test(one_failure_is_forgotten_per_longest_delay),
        cmocka_unit_test(a_client_that_keeps_failing_at_the_cap_stays_there),
        cmocka_unit_test(forgiving_lowers_the_count_and_keeps_the_forgetting_phase),
        cmocka_unit_test(a_rule_without_free_failures_never_delays),
        cmocka_unit_test(the_table_forgets_the_least_recently_used_unpinned_entry),
        cmocka_unit_test(a_large_table_stays_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
