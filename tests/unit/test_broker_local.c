/* test_broker_local: the broker of a process alone: its events come straight back, nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "broker.h"
#include "config.h"

static uint64_t seqs[8];
static void *objs[8];
static int n_events, n_other, n_claims_ok;

static void on_room_event(void *ctx, const char *room, uint64_t seq, void *obj, const void *data,
                          size_t len)
{
    (void)ctx, (void)data, (void)len;
    assert_string_equal(room, "general");
    assert_null(data); /* never another node's bytes */
    seqs[n_events] = seq;
    objs[n_events++] = obj;
}

static void on_other(void *ctx)
{
    (void)ctx;
    n_other++;
}

static void on_release(void *ctx, void *obj)
{
    (void)obj;
    on_other(ctx);
}

static void on_fill(void *ctx, const char *room, uint64_t from, uint64_t to)
{
    (void)room, (void)from, (void)to;
    on_other(ctx);
}

static void on_user_event(void *ctx, const char *user, const void *data, size_t len)
{
    (void)user, (void)data, (void)len;
    on_other(ctx);
}

static void on_presence(void *ctx, const char *user, bool online)
{
    (void)user, (void)online;
    on_other(ctx);
}

static void on_state(void *ctx, bool up)
{
    (void)up;
    on_other(ctx);
}

static void on_claimed(void *arg, bool ok)
{
    (void)arg;
    n_claims_ok += ok;
}

static void on_room_member(void *ctx, const char *room, const char *node, const char *user,
                           bool in)
{
    (void)ctx, (void)room, (void)node, (void)user, (void)in;
    fail_msg("alone, no other node has members");
}

static const struct broker_user user = {NULL,          on_room_event, on_release, on_fill,
                                        on_user_event, on_presence,   on_state,   on_room_member,
                                        NULL,          NULL};

static void alone_everything_comes_straight_back(void **state)
{
    (void)state;
    struct config cfg;
    char *argv[] = {"parley", NULL};
    assert_int_equal(config_parse(&cfg, 1, argv), CONFIG_OK);
    struct broker *b = broker_new(NULL, &cfg, &user); /* no --broker: no loop needed */
    assert_non_null(b);
    struct broker_status st;
    broker_status(b, &st);
    assert_string_equal(st.kind, "local");
    assert_true(st.up);

    int a, c;
    broker_follow(b, "general", 0);
    broker_publish_room(b, "general", 1, &a, "x", 1);
    broker_publish_room(b, "general", 2, &c, "y", 1);
    assert_int_equal(n_events, 2); /* within the call, in the order given */
    assert_int_equal(seqs[0], 1);
    assert_ptr_equal(objs[0], &a);
    assert_ptr_equal(objs[1], &c);
    broker_unfollow(b, "general");

    broker_publish_user(b, "alice", "r", 1);
    broker_user_here(b, "alice", true);
    broker_guest_claim(b, "guest1", "Guest1", 1, on_claimed, NULL);
    /* The hub's own check decides. */
    broker_guest_claim(b, "guest1", "Guest1", 2, on_claimed, NULL);
    assert_int_equal(n_claims_ok, 2);
    broker_guest_release(b, "guest1");
    assert_int_equal(broker_room_members(b, "general", 7), 7);
    assert_int_equal(n_other, 0); /* no fill, no user event, no presence, no state change */
    broker_free(b);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alone_everything_comes_straight_back),
    };
    return cmocka_run_group_tests_name("broker_local", tests, NULL, NULL);
}
