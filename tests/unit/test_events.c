/* test_events: events are encoded once per transport, in the exact wire forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "events.h"

/* The JSON text inside a framed event, checked against its frame header. */
static json_t *frame_json(const struct msg_rec *r)
{
    const uint8_t *f = r->ws->data + r->ws_off;
    size_t payload = r->ws->len - MSG_JSON_OFF;
    assert_int_equal(f[0], 0x81); /* FIN + text */
    if (payload < 126)
        assert_int_equal(f[1], payload);
    else
        assert_int_equal(f[1], 126);
    json_error_t err;
    json_t *doc = json_loadb((const char *)r->ws->data + MSG_JSON_OFF, payload, 0, &err);
    assert_non_null(doc);
    return doc;
}

static void room_message_both_forms(void **state)
{
    (void)state;
    const char text[] = "hello\nsecond \"line\"";
    struct store_msg m = {.room = "general",
                          .seq = 43,
                          .ts = 1732300000000,
                          .from = "alice",
                          .text = text,
                          .text_len = strlen(text),
                          .cid = "c-1"};
    struct msg_rec r = events_message(&m, NULL);
    assert_int_equal(r.seq, 43);
    json_t *doc = frame_json(&r);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(doc, "room")), "general");
    assert_int_equal(json_integer_value(json_object_get(doc, "seq")), 43);
    assert_int_equal(json_integer_value(json_object_get(doc, "ts")), 1732300000000);
    assert_string_equal(json_string_value(json_object_get(doc, "from")), "alice");
    assert_string_equal(json_string_value(json_object_get(doc, "text")), text);
    assert_string_equal(json_string_value(json_object_get(doc, "cid")), "c-1");
    json_decref(doc);
    const char want[] = "[#general] alice: hello\r\n  second \"line\"\r\n";
    assert_int_equal(r.tn->len, strlen(want));
    assert_memory_equal(r.tn->data, want, strlen(want));
    msg_rec_release(&r);
}

static void dm_line_names_both_parties(void **state)
{
    (void)state;
    struct store_msg m = {
        .room = "dm:alice:bob", .seq = 1, .ts = 1, .from = "Bob", .text = "hi", .text_len = 2};
    struct msg_rec r = events_message(&m, NULL);
    const char want[] = "[dm] Bob -> alice: hi\r\n";
    assert_memory_equal(r.tn->data, want, strlen(want));
    json_t *doc = frame_json(&r);
    assert_null(json_object_get(doc, "cid")); /* only when the sender gave one */
    json_decref(doc);
    msg_rec_release(&r);
    r = events_message(&m, "Alice");
    const char named[] = "[dm] Bob -> Alice: hi\r\n";
    assert_memory_equal(r.tn->data, named, strlen(named));
    msg_rec_release(&r);
}

/* An action ("/me TEXT", the clients' convention) shows as "* name TEXT"; its JSON is unchanged. */
static void action_lines(void **state)
{
    (void)state;
    static const struct {
        const char *room, *text, *want;
    } cases[] = {
        {"dev", "/me waves", "[#dev] * alice waves\r\n"},
        {"dev", "/me waves\nand bows", "[#dev] * alice waves\r\n  and bows\r\n"},
        {"dm:alice:bob", "/me winks", "[dm] * alice winks\r\n"},
        {"dev", "/me", "[#dev] alice: /me\r\n"},
        {"dev", "/meow", "[#dev] alice: /meow\r\n"},
        {"dev", "x /me y", "[#dev] alice: x /me y\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct store_msg m = {.room = cases[i].room,
                              .seq = 1,
                              .ts = 1,
                              .from = "alice",
                              .text = cases[i].text,
                              .text_len = strlen(cases[i].text)};
        struct msg_rec r = events_message(&m, NULL);
        assert_int_equal(r.tn->len, strlen(cases[i].want));
        assert_memory_equal(r.tn->data, cases[i].want, strlen(cases[i].want));
        json_t *doc = frame_json(&r);
        assert_string_equal(json_string_value(json_object_get(doc, "text")), cases[i].text);
        json_decref(doc);
        msg_rec_release(&r);
    }
}

static void long_message_uses_16_bit_length(void **state)
{
    (void)state;
    char text[300];
    memset(text, 'x', sizeof text);
    struct store_msg m = {
        .room = "r", .seq = 2, .ts = 3, .from = "a", .text = text, .text_len = sizeof text};
    struct msg_rec r = events_message(&m, NULL);
    const uint8_t *f = r.ws->data + r.ws_off;
    size_t payload = r.ws->len - MSG_JSON_OFF;
    assert_int_equal(r.ws_off, MSG_JSON_OFF - 4);
    assert_int_equal((f[2] << 8) | f[3], payload);
    json_decref(frame_json(&r));
    msg_rec_release(&r);
}

static void presence_typing_and_errors(void **state)
{
    (void)state;
    struct msg_rec p = events_presence("general", "bob", false);
    json_t *doc = frame_json(&p);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "offline");
    json_decref(doc);
    assert_memory_equal(p.tn->data, "* bob left #general\r\n", p.tn->len);
    msg_rec_release(&p);

    struct msg_rec t = events_typing("general", "alice");
    assert_null(t.tn); /* telnet does not show typing */
    msg_rec_release(&t);

    json_t *id = json_string("req-1");
    struct msg_rec e = events_error(id, PROTO_NOT_MEMBER, "join first");
    doc = frame_json(&e);
    assert_true(json_equal(json_object_get(doc, "id"), id));
    assert_string_equal(json_string_value(json_object_get(doc, "code")), "not_member");
    assert_string_equal(json_string_value(json_object_get(doc, "message")), "join first");
    assert_null(json_object_get(doc, "retry_after"));
    json_decref(doc);
    msg_rec_release(&e);
    e = events_error(NULL, PROTO_BAD_JSON, NULL);
    doc = frame_json(&e);
    assert_null(json_object_get(doc, "id"));
    json_decref(doc);
    msg_rec_release(&e);
    /* A throttled login: when to try again, in words and as a number. */
    e = events_error_retry(id, PROTO_RATE_LIMITED, "too many failed logins from your address", 4);
    doc = frame_json(&e);
    assert_string_equal(json_string_value(json_object_get(doc, "code")), "rate_limited");
    assert_string_equal(json_string_value(json_object_get(doc, "message")),
                        "too many failed logins from your address; try again in 4 s");
    assert_int_equal(json_integer_value(json_object_get(doc, "retry_after")), 4);
    json_decref(doc);
    msg_rec_release(&e);
    json_decref(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(room_message_both_forms),
        cmocka_unit_test(dm_line_names_both_parties),
        cmocka_unit_test(action_lines),
        cmocka_unit_test(long_message_uses_16_bit_length),
        cmocka_unit_test(presence_typing_and_errors),
    };
    return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
