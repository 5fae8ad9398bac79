/* test_user_status: users' statuses, their connection counts and rooms, and the fallback to online
 * once the last connection has been gone for the grace period (protocol 1.1 rule 69). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "user_status.h"

#define GRACE 75000

/* Where the sets' records come from: the heap, then (the second run) pools, as the hub's. */
static struct pool_sizes *records_pools;

static void set_init(struct user_status_set *set)
{
    user_status_init(set);
    if (records_pools)
        user_status_use_pools(set, records_pools);
}

/* A record lives while connected; at the default status it goes with the last connection. */
static void default_status_goes_with_last_connection(void **state)
{
    (void)state;
    struct user_status_set set;
    set_init(&set);
    struct user_status *u = user_status_connect(&set, "Alice", "alice", 0);
    assert_ptr_equal(user_status_connect(&set, "Alice", "alice", 0), u);
    assert_int_equal(u->conns, 2);
    user_status_disconnect(&set, "alice", 0, 1000);
    assert_ptr_equal(user_status_of(&set, "alice"), u);
    user_status_disconnect(&set, "alice", 0, 1000);
    assert_null(user_status_of(&set, "alice"));
    assert_null(set.gone_head);
    user_status_free(&set);
}

/* Away or with a text, a record outlives its last connection by the grace, then is forgotten;
 * a login meanwhile keeps it. Records expire in the order they went. */
static void grace_then_fallback(void **state)
{
    (void)state;
    struct user_status_set set;
    set_init(&set);
    struct user_status *a = user_status_connect(&set, "a", "a", 0);
    struct user_status *b = user_status_connect(&set, "b", "b", 7);
    struct user_status *c = user_status_connect(&set, "c", "c", 0);
    assert_true(user_status_set_state(&set, a, true, "lunch", 5));
    assert_false(user_status_set_state(&set, a, true, "lunch", 5)); /* no change */
    assert_true(user_status_set_state(&set, b, false, "busy", 4));
    assert_true(user_status_set_state(&set, c, true, NULL, 0));
    assert_int_equal(set.n_set, 3);
    user_status_disconnect(&set, "a", 0, 1000);
    user_status_disconnect(&set, "b", 7, 2000);
    user_status_disconnect(&set, "c", 0, 3000);
    /* c comes back before its grace ends: it leaves the queue */
    assert_ptr_equal(user_status_connect(&set, "c", "c", 0), c);
    assert_int_equal(user_status_expire(&set, 1000 + GRACE - 1, GRACE), 1000 + GRACE);
    assert_non_null(user_status_of(&set, "a"));
    assert_int_equal(user_status_expire(&set, 1000 + GRACE, GRACE), 2000 + GRACE);
    assert_null(user_status_of(&set, "a"));
    assert_int_equal(user_status_expire(&set, 5000 + GRACE, GRACE), 0);
    assert_null(user_status_of(&set, "b"));
    assert_ptr_equal(user_status_of(&set, "c"), c);
    assert_true(c->away);
    assert_int_equal(set.n_set, 1);
    /* back to the default: off the set list */
    assert_true(user_status_set_state(&set, c, false, NULL, 0));
    assert_int_equal(set.n_set, 0);
    assert_null(set.set_head);
    user_status_free(&set);
}

/* Another identity logging in under a name replaces the old one's record; a guest session that
 * registers its name keeps its record as the account's. */
static void identities(void **state)
{
    (void)state;
    struct user_status_set set;
    set_init(&set);
    struct user_status *g = user_status_connect(&set, "carol", "carol", 42);
    user_status_set_state(&set, g, true, "g", 1);
    user_status_disconnect(&set, "carol", 42, 10);
    assert_non_null(user_status_get(&set, "carol", 42));
    assert_null(user_status_get(&set, "carol", 0));
    struct user_status *acct = user_status_connect(&set, "Carol", "carol", 0);
    assert_false(acct->away);
    assert_null(acct->text);
    assert_int_equal(acct->conns, 1);
    assert_int_equal(set.n_set, 0);
    assert_null(set.gone_head);

    struct user_status *d = user_status_connect(&set, "dave", "dave", 9);
    user_status_set_state(&set, d, true, "x", 1);
    user_status_became_registered(&set, "dave", 9, "Dave");
    assert_ptr_equal(user_status_get(&set, "dave", 0), d);
    assert_string_equal(user_status_name(d), "Dave");
    assert_true(d->away);
    user_status_free(&set);
}

/* An online guest is its record: its logins counted from the login on, the record kept while a
 * login waits for its connection to be counted, and gone with the last of both; its skeleton is
 * its name's when they differ, name_lc itself when not. */
static void guests_online(void **state)
{
    (void)state;
    struct user_status_set set;
    set_init(&set);
    struct user_status *g = user_status_guest_in(&set, "Ilse01", "ilse01", 5);
    assert_ptr_equal(user_status_guest(&set, "ilse01"), g);
    assert_string_equal(user_status_name(g), "Ilse01");
    assert_string_equal(user_status_skeleton(g), "llseol");
    assert_int_equal(g->guests, 1);
    assert_int_equal(g->conns, 0);
    assert_ptr_equal(user_status_connect(&set, "Ilse01", "ilse01", 5), g);
    /* a second login of the session, its connection not counted yet */
    assert_ptr_equal(user_status_guest_in(&set, "Ilse01", "ilse01", 5), g);
    user_status_guest_out(&set, g);
    user_status_disconnect(&set, "ilse01", 5, 10);
    assert_ptr_equal(user_status_guest(&set, "ilse01"), g); /* the second login keeps it */
    assert_null(set.gone_head);
    user_status_guest_out(&set, g);
    assert_null(user_status_of(&set, "ilse01"));

    /* a guest away when its connection goes: the grace; a login of the same session meanwhile
     * keeps the record when the grace ends, back at the default */
    struct user_status *b = user_status_guest_in(&set, "bob", "bob", 6);
    assert_string_equal(user_status_skeleton(b), "bob");
    assert_ptr_equal(user_status_skeleton(b), b->name_lc);
    user_status_connect(&set, "bob", "bob", 6);
    user_status_set_state(&set, b, true, "out", 3);
    user_status_guest_out(&set, b);
    user_status_disconnect(&set, "bob", 6, 100);
    assert_null(user_status_guest(&set, "bob"));
    assert_ptr_equal(user_status_of(&set, "bob"), b);
    assert_ptr_equal(user_status_guest_in(&set, "bob", "bob", 6), b);
    assert_int_equal(user_status_expire(&set, 100 + GRACE, GRACE), 0);
    assert_ptr_equal(user_status_guest(&set, "bob"), b);
    assert_false(b->away);
    assert_null(b->text);
    assert_int_equal(set.n_set, 0);

    /* another guest session takes a name whose holder is gone: a new record */
    user_status_guest_out(&set, b);
    assert_null(user_status_of(&set, "bob"));
    struct user_status *c = user_status_guest_in(&set, "carl", "carl", 7);
    user_status_connect(&set, "carl", "carl", 7);
    user_status_set_state(&set, c, false, "t", 1);
    user_status_guest_out(&set, c);
    user_status_disconnect(&set, "carl", 7, 200);
    struct user_status *c2 = user_status_guest_in(&set, "Carl", "carl", 8);
    assert_int_equal(c2->guest_session, 8);
    assert_null(c2->text);
    assert_null(set.gone_head);

    /* a guest that registers its name is no online guest any more */
    user_status_connect(&set, "Carl", "carl", 8);
    user_status_became_registered(&set, "carl", 8, "Carl");
    assert_null(user_status_guest(&set, "carl"));
    assert_ptr_equal(user_status_get(&set, "carl", 0), c2);
    user_status_free(&set);
}

/* The rooms where the user has a connection. */
static void rooms(void **state)
{
    (void)state;
    struct user_status_set set;
    set_init(&set);
    struct user_status *u = user_status_connect(&set, "u", "u", 0);
    int r[6];
    for (int i = 0; i < 6; i++)
        user_status_room_add(u, &r[i]);
    assert_int_equal(u->n_rooms, 6);
    user_status_room_remove(u, &r[2]);
    user_status_room_remove(u, &r[2]); /* not there: nothing */
    assert_int_equal(u->n_rooms, 5);
    for (uint32_t i = 0; i < u->n_rooms; i++)
        assert_ptr_not_equal(user_status_rooms(u)[i], &r[2]);
    user_status_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_status_goes_with_last_connection),
        cmocka_unit_test(grace_then_fallback),
        cmocka_unit_test(identities),
        cmocka_unit_test(guests_online),
        cmocka_unit_test(rooms),
    };
    int failed = cmocka_run_group_tests_name("heap", tests, NULL, NULL);
    static struct pool_sizes pools;
    pool_sizes_init(&pools);
    records_pools = &pools;
    failed += cmocka_run_group_tests_name("pools", tests, NULL, NULL);
    for (size_t i = 0; i < POOL_SIZES_MAX / 8; i++)
        if (pools.by8[i].live)
            failed++; /* a record not given back */
    pool_sizes_destroy(&pools);
    return failed;
}
