/* test_room_order: seq order per room through reorder, duplicates, loss, holds and fills. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room_order.h"

#define HOLD 100
#define MAX_SEQ 600

/* One event object: the module must hand each one back exactly once (deliver or discard). */
struct ev {
    uint64_t seq;
};

struct fill_req {
    uint64_t from, to;
};

struct harness {
    struct room_order o;
    uint64_t delivered[4 * MAX_SEQ];
    size_t n_delivered;
    size_t live; /* event objects not yet handed back */
    size_t n_fills;
    size_t n_discarded;
    struct fill_req last_fill;
    bool pending; /* a fill asked and not answered */
    /* A synchronous store: fill answers at once from it, up to store_max. */
    bool sync_store;
    uint64_t store_max;
};

static struct ev *ev_new(struct harness *h, uint64_t seq)
{
    struct ev *e = malloc(sizeof *e);
    assert_non_null(e);
    e->seq = seq;
    h->live++;
    return e;
}

static void on_deliver(void *ctx, uint64_t seq, void *p)
{
    struct harness *h = ctx;
    struct ev *e = p;
    assert_int_equal(e->seq, seq);
    assert_true(h->n_delivered < sizeof h->delivered / sizeof h->delivered[0]);
    h->delivered[h->n_delivered++] = seq;
    h->live--;
    free(e);
}

static void on_discard(void *ctx, void *p)
{
    struct harness *h = ctx;
    h->n_discarded++;
    h->live--;
    free(p);
}

static void on_fill(void *ctx, uint64_t from, uint64_t to)
{
    struct harness *h = ctx;
    assert_false(h->pending); /* one fill at a time */
    assert_true(from <= to);
    h->n_fills++;
    h->last_fill = (struct fill_req){from, to};
    h->pending = true;
    if (h->sync_store) {
        uint64_t end = to < h->store_max ? to : h->store_max;
        h->pending = false;
        for (uint64_t s = from; s <= end; s++)
            room_order_offer(&h->o, s, ev_new(h, s), 0);
        room_order_filled(&h->o, end, 0);
    }
}

static const struct room_order_ops ops = {on_deliver, on_discard, on_fill};

static void start(struct harness *h, uint64_t next, uint32_t max_held)
{
    memset(h, 0, sizeof *h);
    room_order_init(&h->o, &ops, h, next, HOLD, max_held);
}

static void offer(struct harness *h, uint64_t seq, uint64_t now)
{
    room_order_offer(&h->o, seq, ev_new(h, seq), now);
}

/* Answers the pending fill from a store holding every seq up to store_max except `missing`. */
static void answer(struct harness *h, uint64_t store_max, uint64_t missing, uint64_t now)
{
    assert_true(h->pending);
    h->pending = false;
    uint64_t to = h->last_fill.to < store_max ? h->last_fill.to : store_max;
    for (uint64_t s = h->last_fill.from; s <= to; s++)
        if (s != missing)
            offer(h, s, now);
    room_order_filled(&h->o, to, now);
}

static void finish(struct harness *h)
{
    room_order_free(&h->o);
    assert_int_equal(h->live, 0);
}

static void assert_delivered_run(const struct harness *h, uint64_t first, uint64_t last)
{
    assert_int_equal(h->n_delivered, last - first + 1);
    for (size_t i = 0; i < h->n_delivered; i++)
        assert_int_equal(h->delivered[i], first + i);
}

static void in_order_passes_at_once(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    for (uint64_t s = 1; s <= 5; s++)
        offer(&h, s, 1000);
    assert_delivered_run(&h, 1, 5);
    assert_int_equal(room_order_next(&h.o), 6);
    assert_int_equal(room_order_due(&h.o), ROOM_ORDER_NEVER);
    assert_int_equal(h.n_fills, 0);
    finish(&h);
}

static void starts_after_what_the_caller_has(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 41, 64);
    offer(&h, 40, 1000); /* already had */
    offer(&h, 41, 1000);
    assert_delivered_run(&h, 41, 41);
    finish(&h);
}

static void duplicates_are_dropped(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 1, 1000);
    offer(&h, 1, 1000); /* below next */
    offer(&h, 3, 1000);
    offer(&h, 3, 1000); /* a duplicate of one held */
    assert_int_equal(room_order_held(&h.o), 1);
    offer(&h, 2, 1000);
    assert_delivered_run(&h, 1, 3);
    assert_int_equal(h.live, 0);
    assert_int_equal(h.n_fills, 0);
    finish(&h);
}

static void reorder_within_the_hold_needs_no_fill(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 3, 1000);
    offer(&h, 2, 1010);
    assert_int_equal(h.n_delivered, 0);
    assert_int_equal(room_order_due(&h.o), 1000 + HOLD);
    offer(&h, 1, 1099);
    assert_delivered_run(&h, 1, 3);
    room_order_run(&h.o, 5000);
    assert_int_equal(h.n_fills, 0);
    finish(&h);
}

static void hold_expiry_fills_the_gap(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 1, 1000);
    offer(&h, 4, 1000);
    offer(&h, 5, 1050);
    room_order_run(&h.o, 1000 + HOLD - 1);
    assert_int_equal(h.n_fills, 0);
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.n_fills, 1);
    assert_int_equal(h.last_fill.from, 2);
    assert_int_equal(h.last_fill.to, 3);                      /* only the gap, not what is held */
    assert_int_equal(room_order_due(&h.o), ROOM_ORDER_NEVER); /* one fill at a time */
    offer(&h, 3, 1150); /* the late one from the broker, while the fill is under way */
    answer(&h, 5, 0, 1200);
    assert_delivered_run(&h, 1, 5);
    assert_int_equal(room_order_held(&h.o), 0);
    finish(&h);
}

static void lost_fills_to_the_newest_at_once(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 1, 1000);
    room_order_lost(&h.o, 2000);
    assert_int_equal(h.n_fills, 1);
    assert_int_equal(h.last_fill.from, 2);
    assert_true(h.last_fill.to == ROOM_ORDER_UNBOUNDED);
    answer(&h, 7, 0, 2010);
    assert_delivered_run(&h, 1, 7);
    assert_int_equal(room_order_due(&h.o), ROOM_ORDER_NEVER);
    finish(&h);
}

static void lost_during_a_fill_fills_again(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 3, 1000);
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.last_fill.to, 2);
    room_order_lost(&h.o, 1150);
    assert_int_equal(h.n_fills, 1);
    answer(&h, 9, 0, 1200); /* answers [1,2]; then the catch-up is asked */
    assert_int_equal(h.n_fills, 2);
    assert_true(h.last_fill.to == ROOM_ORDER_UNBOUNDED);
    assert_int_equal(h.last_fill.from, 4);
    answer(&h, 9, 0, 1210);
    assert_delivered_run(&h, 1, 9);
    finish(&h);
}

static void a_seq_gone_from_the_store_is_skipped(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 5, 1000);
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.last_fill.from, 1);
    assert_int_equal(h.last_fill.to, 4);
    answer(&h, 4, 2, 1200); /* retention trimmed seq 2 */
    assert_int_equal(h.n_delivered, 4);
    uint64_t want[] = {1, 3, 4, 5};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(h.delivered[i], want[i]);
    finish(&h);
}

static void a_failed_fill_is_asked_again_later(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 2, 1000);
    room_order_run(&h.o, 1100);
    assert_int_equal(h.n_fills, 1);
    h.pending = false;
    room_order_fill_failed(&h.o, 1100);
    assert_int_equal(room_order_due(&h.o), 1100 + HOLD);
    room_order_run(&h.o, 1199);
    assert_int_equal(h.n_fills, 1);
    room_order_run(&h.o, 1200);
    assert_int_equal(h.n_fills, 2);
    answer(&h, 2, 0, 1200);
    assert_delivered_run(&h, 1, 2);
    finish(&h);
}

static void a_failed_catch_up_is_still_owed(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    room_order_lost(&h.o, 1000);
    h.pending = false;
    room_order_fill_failed(&h.o, 1000);
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.n_fills, 2);
    assert_true(h.last_fill.to == ROOM_ORDER_UNBOUNDED);
    answer(&h, 3, 0, 1100);
    assert_delivered_run(&h, 1, 3);
    finish(&h);
}

static void too_many_held_are_read_again(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 3);
    for (uint64_t s = 10; s >= 2; s--)
        offer(&h, s, 1000); /* arrive newest first: the oldest are kept */
    assert_int_equal(room_order_held(&h.o), 3);
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.last_fill.from, 1);
    assert_int_equal(h.last_fill.to, 1);
    answer(&h, 10, 0, 1100);
    /* 1..4 passed; 5..10 were discarded, so they are asked for at once, without a hold. */
    assert_int_equal(h.n_fills, 2);
    assert_int_equal(h.last_fill.from, 5);
    assert_int_equal(h.last_fill.to, 10);
    answer(&h, 10, 0, 1100);
    assert_delivered_run(&h, 1, 10);
    finish(&h);
}

static void a_seen_hint_fills_after_the_hold(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 1, 1000);
    room_order_seen(&h.o, 1, 1000); /* nothing new */
    assert_int_equal(room_order_due(&h.o), ROOM_ORDER_NEVER);
    room_order_seen(&h.o, 3, 1000);
    assert_int_equal(room_order_due(&h.o), 1000 + HOLD);
    offer(&h, 2, 1050); /* one arrives: the gap is smaller, still due */
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.last_fill.from, 3);
    assert_int_equal(h.last_fill.to, 3);
    answer(&h, 3, 0, 1100);
    assert_delivered_run(&h, 1, 3);
    finish(&h);
}

static void a_synchronous_fill_completes_within_the_call(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    h.sync_store = true;
    h.store_max = 6;
    offer(&h, 6, 1000);
    room_order_run(&h.o, 1000 + HOLD);
    assert_delivered_run(&h, 1, 6);
    room_order_lost(&h.o, 2000); /* the store has nothing newer: no loop, nothing delivered */
    assert_delivered_run(&h, 1, 6);
    assert_int_equal(room_order_due(&h.o), ROOM_ORDER_NEVER);
    finish(&h);
}

/* A deliver that offers the next event itself (as a hub publishing in answer would). */
static bool answer_on_deliver;

static void on_deliver_answering(void *ctx, uint64_t seq, void *p)
{
    struct harness *h = ctx;
    on_deliver(ctx, seq, p);
    if (answer_on_deliver && seq == 3) {
        answer_on_deliver = false;
        offer(h, 4, 1200);
        offer(h, 5, 1200);
    }
}

static void a_deliver_may_offer_more(void **state)
{
    (void)state;
    static const struct room_order_ops answering = {on_deliver_answering, on_discard, on_fill};
    struct harness h;
    memset(&h, 0, sizeof h);
    room_order_init(&h.o, &answering, &h, 1, HOLD, 64);
    offer(&h, 3, 1000);
    room_order_run(&h.o, 1000 + HOLD);
    assert_int_equal(h.last_fill.to, 2);
    answer_on_deliver = true;
    h.pending = false;
    offer(&h, 1, 1200);
    offer(&h, 2, 1200); /* passes 3, whose deliver offers 4 and 5 */
    room_order_filled(&h.o, 2, 1200);
    assert_delivered_run(&h, 1, 5);
    assert_int_equal(room_order_next(&h.o), 6);
    offer(&h, 4, 1300); /* a late copy is a duplicate */
    assert_int_equal(h.n_delivered, 5);
    finish(&h);
}

static void the_free_hands_back_what_is_held(void **state)
{
    (void)state;
    struct harness h;
    start(&h, 1, 64);
    offer(&h, 3, 1000);
    offer(&h, 4, 1000);
    finish(&h); /* asserts every object came back */
}

/*
 * The property: any interleaving of reorder, duplication and loss on the broker, reconnects,
 * failed and paged fills answered late yields exactly 1..N, once each, in order, and every event
 * object is handed back once. Each event is "committed" at a time; its copies reach the node
 * after random delays (or never); fills read the store as committed at the time they answer.
 */
struct arrival {
    uint64_t at, seq;
};

static int by_time(const void *a, const void *b)
{
    const struct arrival *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s % n;
}

/* Totals over all seeds, to show the property met every case it claims to. */
static size_t total_fills, total_discarded, total_held_max;

static void run_property(uint64_t seed)
{
    static struct arrival arr[4 * MAX_SEQ];
    struct harness h;
    uint64_t r = seed * 2654435761u + 1;
    uint64_t n = 1 + rnd(&r, MAX_SEQ);
    uint32_t max_held = 1 + (uint32_t)rnd(&r, 40);
    unsigned loss = (unsigned)rnd(&r, 50), dup = (unsigned)rnd(&r, 50);
    uint64_t spread = 1 + rnd(&r, 400); /* how far a copy may be delayed */
    start(&h, 1, max_held);
    size_t na = 0;
    for (uint64_t s = 1; s <= n; s++) {
        uint64_t committed = 1000 + s * 3;
        unsigned copies = rnd(&r, 100) < loss ? 0 : 1;
        while (copies < 3 && rnd(&r, 100) < dup)
            copies++;
        for (unsigned c = 0; c < copies; c++)
            arr[na++] = (struct arrival){committed + rnd(&r, spread), s};
    }
    qsort(arr, na, sizeof *arr, by_time);
    size_t ai = 0;
    uint64_t now = 1000, fill_answer_at = 0;
    uint64_t last_commit = 1000 + n * 3;
    while (ai < na || h.pending || now <= last_commit + 10 * HOLD) {
        while (ai < na && arr[ai].at <= now) {
            offer(&h, arr[ai].seq, now);
            ai++;
        }
        if (room_order_held(&h.o) > total_held_max)
            total_held_max = room_order_held(&h.o);
        if (h.pending && now >= fill_answer_at) {
            uint64_t committed = now < 1003 ? 0 : (now - 1000) / 3;
            if (committed > n)
                committed = n;
            unsigned what = (unsigned)rnd(&r, 10);
            if (what == 0) {
                h.pending = false;
                room_order_fill_failed(&h.o, now);
            } else {
                /* Answer a page: from `from` up to a random end within what is committed. */
                uint64_t from = h.last_fill.from;
                uint64_t to = h.last_fill.to < committed ? h.last_fill.to : committed;
                if (what < 4 && to > from)
                    to = from + rnd(&r, to - from + 1);
                h.pending = false;
                for (uint64_t s = from; s <= to; s++)
                    offer(&h, s, now);
                /* filled(upto) promises every seq up to it was offered. */
                room_order_filled(&h.o, to >= from ? to : from - 1, now);
            }
        }
        if (rnd(&r, 500) == 0)
            room_order_lost(&h.o, now); /* a reconnect */
        room_order_run(&h.o, now);
        if (h.pending && fill_answer_at < now)
            fill_answer_at = now + rnd(&r, 3 * HOLD);
        now++;
        if (now > last_commit + 100000)
            fail_msg("seed %llu: no progress", (unsigned long long)seed);
    }
    /* The tail may have been lost with nothing after it to show a gap: a reconnect or a seen
     * hint (half the seeds each) reveals it; everything committed is then delivered. */
    if (seed % 2)
        room_order_lost(&h.o, now);
    else
        room_order_seen(&h.o, n, now);
    for (int rounds = 0; h.pending || room_order_due(&h.o) != ROOM_ORDER_NEVER; rounds++) {
        if (rounds > 10000)
            fail_msg("seed %llu: the catch-up does not end", (unsigned long long)seed);
        if (!h.pending) {
            uint64_t due = room_order_due(&h.o);
            now = due > now ? due : now;
            room_order_run(&h.o, now);
            continue;
        }
        uint64_t from = h.last_fill.from, to = h.last_fill.to < n ? h.last_fill.to : n;
        h.pending = false;
        for (uint64_t s = from; s <= to; s++)
            offer(&h, s, now);
        room_order_filled(&h.o, to >= from ? to : from - 1, now);
    }
    if (h.n_delivered != n)
        fail_msg("seed %llu: %zu delivered of %llu", (unsigned long long)seed, h.n_delivered,
                 (unsigned long long)n);
    for (size_t i = 0; i < h.n_delivered; i++)
        if (h.delivered[i] != i + 1)
            fail_msg("seed %llu: delivered[%zu] = %llu", (unsigned long long)seed, i,
                     (unsigned long long)h.delivered[i]);
    assert_int_equal(room_order_held(&h.o), 0);
    total_fills += h.n_fills;
    total_discarded += h.n_discarded;
    finish(&h);
}

static void any_interleaving_yields_each_seq_once_in_order(void **state)
{
    (void)state;
    const char *env = getenv("ROOM_ORDER_SEEDS");
    uint64_t seeds = env ? strtoull(env, NULL, 10) : 2000;
    for (uint64_t seed = 1; seed <= seeds; seed++)
        run_property(seed);
    /* The runs did reorder (events waited), lose (fills) and duplicate (discards). */
    assert_true(total_held_max > 1);
    assert_true(total_fills > seeds);
    assert_true(total_discarded > seeds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_order_passes_at_once),
        cmocka_unit_test(starts_after_what_the_caller_has),
        cmocka_unit_test(duplicates_are_dropped),
        cmocka_unit_test(reorder_within_the_hold_needs_no_fill),
        cmocka_unit_test(hold_expiry_fills_the_gap),
        cmocka_unit_test(lost_fills_to_the_newest_at_once),
        cmocka_unit_test(lost_during_a_fill_fills_again),
        cmocka_unit_test(a_seq_gone_from_the_store_is_skipped),
        cmocka_unit_test(a_failed_fill_is_asked_again_later),
        cmocka_unit_test(a_failed_catch_up_is_still_owed),
        cmocka_unit_test(too_many_held_are_read_again),
        cmocka_unit_test(a_seen_hint_fills_after_the_hold),
        cmocka_unit_test(a_synchronous_fill_completes_within_the_call),
        cmocka_unit_test(a_deliver_may_offer_more),
        cmocka_unit_test(the_free_hands_back_what_is_held),
        cmocka_unit_test(any_interleaving_yields_each_seq_once_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
