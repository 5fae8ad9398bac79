/* test_hub_broker: the wire form of an event between nodes: what one node encodes, another
 * decodes into exactly the forms the first would send, and bytes that are not one are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "hub_broker.h"

static void assert_same_rec(const struct msg_rec *a, const struct msg_rec *b)
{
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->ts, b->ts);
    assert_int_equal(a->ws->len - a->ws_off, b->ws->len - b->ws_off);
    assert_memory_equal(a->ws->data + a->ws_off, b->ws->data + b->ws_off, a->ws->len - a->ws_off);
    assert_int_equal(a->tn != NULL, b->tn != NULL);
    if (a->tn) {
        assert_int_equal(a->tn->len, b->tn->len);
        assert_memory_equal(a->tn->data, b->tn->data, a->tn->len);
    }
}

static const char text[] = "hi @bob, \"quoted\"\nsecond line";
static const struct store_msg message = {.room = "general",
                                         .seq = 42,
                                         .ts = 1796400000000,
                                         .from = "Alice",
                                         .text = text,
                                         .text_len = sizeof text - 1,
                                         .cid = "c-9",
                                         .type = STORE_EV_MESSAGE,
                                         .reply_to = 40,
                                         .mentions = "bob"};

static void a_message_decodes_to_what_the_storing_node_sends(void **state)
{
    (void)state;
    struct msg_rec w = hub_broker_wire(&message);
    struct hub_event ev;
    assert_true(hub_broker_unwire(w.ws->data, w.ws->len, &ev));
    assert_string_equal(ev.room, "general");
    assert_null(ev.mod);
    assert_int_equal(ev.target, 0);
    struct msg_rec want = events_event(&message, NULL, EVENTS_LIVE);
    assert_same_rec(&ev.live, &want);
    assert_same_rec(&ev.ring, &want);
    msg_rec_release(&want);
    msg_rec_release(&ev.live);
    msg_rec_release(&ev.ring);
    msg_rec_release(&w);
}

static void an_edit_keeps_its_replay_form_for_the_ring_and_names_its_target(void **state)
{
    (void)state;
    struct store_msg edit = {.room = "dm:alice:bob",
                             .seq = 7,
                             .ts = 1796400000001,
                             .from = "alice",
                             .text = "fixed",
                             .text_len = 5,
                             .type = STORE_EV_EDIT,
                             .target = 5};
    struct msg_rec w = hub_broker_wire(&edit);
    struct hub_event *ev = calloc(1, sizeof *ev);
    assert_true(hub_broker_unwire(w.ws->data, w.ws->len, ev));
    hub_broker_dm_users(ev);
    assert_string_equal(ev->user_a, "alice");
    assert_string_equal(ev->user_b, "bob");
    assert_int_equal(ev->target, 5);
    struct msg_rec live = events_event(&edit, NULL, EVENTS_LIVE);
    struct msg_rec replay = events_event(&edit, NULL, EVENTS_REPLAY);
    assert_same_rec(&ev->live, &live);
    assert_same_rec(&ev->ring, &replay);
    msg_rec_release(&live);
    msg_rec_release(&replay);
    msg_rec_release(&w);
    hub_event_free(ev);
}

static void a_ban_comes_with_the_op_the_moderation_mirror_takes(void **state)
{
    (void)state;
    struct store_msg ban = {.room = "lobby",
                            .seq = 3,
                            .ts = 1796400000000,
                            .from = "Owner",
                            .text = "",
                            .type = STORE_EV_BAN,
                            .user = "Mallory",
                            .detail = "spam",
                            .duration = 60};
    struct msg_rec w = hub_broker_wire(&ban);
    struct hub_event *ev = calloc(1, sizeof *ev);
    assert_true(hub_broker_unwire(w.ws->data, w.ws->len, ev));
    assert_non_null(ev->mod);
    assert_int_equal(ev->mod->kind, CHAT_BAN);
    assert_string_equal(ev->mod->subject_lc, "mallory");
    assert_string_equal(ev->mod->user, "Owner");
    assert_int_equal(ev->mod->duration, 60);
    assert_int_equal(ev->mod->ts, 1796400000000);
    assert_int_equal(ev->mod->text_len, 4);
    assert_memory_equal(ev->mod->text, "spam", 4);
    msg_rec_release(&w);
    hub_event_free(ev);
}

/* Every truncation, and bytes changed at random, are refused or decoded; never read past. */
static void bytes_that_are_not_an_event_are_refused(void **state)
{
    (void)state;
    struct msg_rec w = hub_broker_wire(&message);
    struct hub_event ev;
    for (uint32_t n = 0; n < w.ws->len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees a read past them */
        memcpy(copy, w.ws->data, n);
        assert_false(hub_broker_unwire(copy, n, &ev));
        free(copy);
    }
    uint8_t *longer = malloc(w.ws->len + 1);
    memcpy(longer, w.ws->data, w.ws->len);
    longer[w.ws->len] = 'x';
    assert_false(hub_broker_unwire(longer, w.ws->len + 1, &ev)); /* trailing bytes */
    free(longer);
    srand(7);
    for (int round = 0; round < 2000; round++) {
        uint8_t *copy = malloc(w.ws->len);
        memcpy(copy, w.ws->data, w.ws->len);
        for (int k = 0; k < 3; k++)
            copy[(size_t)rand() % w.ws->len] = (uint8_t)rand();
        if (hub_broker_unwire(copy, w.ws->len, &ev)) {
            msg_rec_release(&ev.live);
            msg_rec_release(&ev.ring);
            if (ev.mod)
                chat_op_free(ev.mod);
        }
        free(copy);
    }
    msg_rec_release(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_message_decodes_to_what_the_storing_node_sends),
        cmocka_unit_test(an_edit_keeps_its_replay_form_for_the_ring_and_names_its_target),
        cmocka_unit_test(a_ban_comes_with_the_op_the_moderation_mirror_takes),
        cmocka_unit_test(bytes_that_are_not_an_event_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
