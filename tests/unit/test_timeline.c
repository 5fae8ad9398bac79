/* test_timeline: mentions (rule 57), emoji (rule 54), identities and rights (rules 51-53), and
 * the encodings of timeline events (rules 48, 56, 76). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "events.h"
#include "timeline.h"

/* A directory of users: their lower-case names and spellings. */
static const char *const users[][2] = {
    {"bob", "Bob"}, {"alice", "alice"}, {"a.b", "A.b"}, {"carol_", "carol_"}, {"room", NULL},
};

static const char *lookup(void *arg, const char *name_lc)
{
    (*(int *)arg)++;
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        if (strcmp(users[i][0], name_lc) == 0)
            return users[i][1];
    return NULL;
}

static void expect_mentions(const char *text, const char *want, size_t count)
{
    char out[TIMELINE_MENTIONS_MAX];
    int calls = 0;
    assert_int_equal(timeline_mentions(text, strlen(text), lookup, &calls, out), count);
    assert_string_equal(out, want);
}

static void mentions_follow_rule_57(void **state)
{
    (void)state;
    expect_mentions("yes @bob, after the freeze", "Bob", 1);
    expect_mentions("@BOB", "Bob", 1);                        /* case-insensitive, registered spelling */
    expect_mentions("@alice @bob @alice @Bob", "alice Bob", 2); /* once each, in order */
    expect_mentions("mail@bob.example", "", 0);              /* not after a name character */
    expect_mentions("(@bob) [@alice]", "Bob alice", 2);
    expect_mentions("@bob... really", "Bob", 1);  /* trailing dots dropped when R names nobody */
    expect_mentions("@a.b. end", "A.b", 1);       /* R = "a.b." names nobody, "a.b" does */
    expect_mentions("@a.b", "A.b", 1);            /* the longest run first */
    expect_mentions("@carol_-x", "", 0);          /* the run is "carol_-x": nobody */
    expect_mentions("@room @here @", "", 0);      /* no group mentions: plain names */
    expect_mentions("@@bob", "Bob", 1);           /* '@' is not a name character */
    expect_mentions("", "", 0);
    /* A run longer than a name is nobody, even if its start is someone. */
    expect_mentions("@bobbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "", 0);
}

static void emoji_rules(void **state)
{
    (void)state;
    assert_int_equal(timeline_check_emoji("", 0), TIMELINE_EMOJI_EMPTY);
    assert_int_equal(timeline_check_emoji("👍", strlen("👍")), TIMELINE_EMOJI_OK);
    assert_int_equal(timeline_check_emoji(":+1:", 4), TIMELINE_EMOJI_OK);
    assert_int_equal(timeline_check_emoji("a b", 3), TIMELINE_EMOJI_BAD);
    assert_int_equal(timeline_check_emoji("a\xc2\xa0", 3), TIMELINE_EMOJI_BAD);  /* NBSP */
    assert_int_equal(timeline_check_emoji("\xe3\x80\x80", 3), TIMELINE_EMOJI_BAD); /* U+3000 */
    assert_int_equal(timeline_check_emoji("a\x7f", 2), TIMELINE_EMOJI_BAD);
    assert_int_equal(timeline_check_emoji("a\xc2\x85", 3), TIMELINE_EMOJI_BAD); /* NEL: C1 */
    char big[40];
    memset(big, 'x', sizeof big);
    assert_int_equal(timeline_check_emoji(big, 32), TIMELINE_EMOJI_OK);
    assert_int_equal(timeline_check_emoji(big, 33), TIMELINE_EMOJI_TOO_LONG);
    big[0] = ' ';
    assert_int_equal(timeline_check_emoji(big, 33), TIMELINE_EMOJI_TOO_LONG); /* whatever else */
}

static void identities_and_rights(void **state)
{
    (void)state;
    char id[STORE_IDENTITY_MAX];
    timeline_identity(false, 0, "bob", id);
    assert_string_equal(id, "bob");
    timeline_identity(true, 18446744073709551615ull, "carol", id);
    assert_string_equal(id, "guest:18446744073709551615");
    assert_int_equal(timeline_guest_since_ms(((uint64_t)1700000000 << 20) + 5), 1700000000000);

    struct store_target bobs = {.identity = "bob"}, old_guest = {.identity = "guest:old:carol"},
                        guests = {.identity = "guest:7"};
    struct timeline_actor bob = {.identity = "bob"}, carol = {.identity = "guest:7"},
                          op = {.identity = "dave", .op = true},
                          owner = {.identity = "erin", .owner = true},
                          admin = {.identity = "root", .admin = true};
    assert_true(timeline_may_edit(&bob, &bobs));
    assert_false(timeline_may_edit(&carol, &bobs));
    assert_true(timeline_may_edit(&carol, &guests));
    assert_false(timeline_may_edit(&bob, &old_guest)); /* authorless: nobody edits */
    assert_true(timeline_authorless(""));
    assert_true(timeline_authorless("guest:old:x"));
    assert_false(timeline_authorless("guest:7"));
    /* Deletes: author always; ops members' and authorless ones; owner all but admins'; admins
     * all; nobody but the author in a dm room. */
    assert_true(timeline_may_delete(&bob, &bobs, true, false, false));
    assert_false(timeline_may_delete(&carol, &bobs, false, false, false));
    assert_true(timeline_may_delete(&op, &bobs, false, false, false));
    assert_true(timeline_may_delete(&op, &old_guest, false, false, false));
    assert_false(timeline_may_delete(&op, &bobs, false, false, true));
    assert_false(timeline_may_delete(&op, &bobs, true, false, false));
    assert_true(timeline_may_delete(&owner, &bobs, false, false, true));
    assert_false(timeline_may_delete(&owner, &bobs, false, true, true));
    assert_true(timeline_may_delete(&admin, &bobs, false, true, true));
    assert_false(timeline_may_delete(&admin, &bobs, true, false, false));
    assert_string_equal(store_event_type_name(STORE_EV_REACTION), "reaction");
}

static json_t *frame_json(const struct msg_rec *r)
{
    json_error_t err;
    json_t *doc = json_loadb((const char *)r->ws->data + MSG_JSON_OFF, r->ws->len - MSG_JSON_OFF,
                             0, &err);
    assert_non_null(doc);
    return doc;
}

static void assert_json(const struct msg_rec *r, const char *want)
{
    json_t *got = frame_json(r);
    json_error_t err;
    json_t *w = json_loads(want, 0, &err);
    assert_non_null(w);
    if (!json_equal(got, w)) {
        char *s = json_dumps(got, JSON_COMPACT);
        print_error("got %s\nwant %s\n", s, want);
        free(s);
        fail();
    }
    json_decref(got);
    json_decref(w);
}

static void assert_line(const struct msg_rec *r, const char *want)
{
    if (!want) {
        assert_null(r->tn);
        return;
    }
    assert_non_null(r->tn);
    assert_int_equal(r->tn->len, strlen(want));
    assert_memory_equal(r->tn->data, want, strlen(want));
}

static void event_forms(void **state)
{
    (void)state;
    struct store_msg edit = {.room = "dev", .seq = 60, .ts = 5, .from = "bob", .text = "x @a",
                             .text_len = 4, .type = STORE_EV_EDIT, .target = 58,
                             .mentions = "alice Bob"};
    struct msg_rec r = events_event(&edit, NULL, EVENTS_LIVE);
    assert_json(&r, "{\"type\":\"edit\",\"room\":\"dev\",\"seq\":60,\"ts\":5,\"from\":\"bob\","
                    "\"target\":58,\"text\":\"x @a\",\"mentions\":[\"alice\",\"Bob\"]}");
    assert_line(&r, "[#dev] bob (edited): x @a\r\n");
    msg_rec_release(&r);
    r = events_event(&edit, NULL, EVENTS_REPLAY);
    assert_json(&r, "{\"type\":\"edit\",\"room\":\"dev\",\"seq\":60,\"ts\":5,\"from\":\"bob\","
                    "\"target\":58}");
    assert_line(&r, NULL);
    msg_rec_release(&r);
    edit.deleted = true;
    r = events_event(&edit, NULL, EVENTS_REPLAY);
    assert_json(&r, "{\"type\":\"edit\",\"room\":\"dev\",\"seq\":60,\"ts\":5,\"from\":\"bob\","
                    "\"target\":58,\"deleted\":true}");
    msg_rec_release(&r);

    struct store_msg del = {.room = "dev", .seq = 63, .ts = 6, .from = "alice", .text = "",
                            .type = STORE_EV_DELETE, .target = 62, .target_from = "carol",
                            .cid = "d"};
    r = events_event(&del, NULL, EVENTS_LIVE);
    assert_json(&r, "{\"type\":\"delete\",\"room\":\"dev\",\"seq\":63,\"ts\":6,\"from\":\"alice\","
                    "\"cid\":\"d\",\"target\":62}");
    assert_line(&r, "* alice deleted carol's message in #dev\r\n");
    msg_rec_release(&r);
    del.target_from = "ALICE";
    r = events_event(&del, NULL, EVENTS_REPLAY);
    assert_line(&r, "* alice deleted a message in #dev\r\n");
    msg_rec_release(&r);
    del.room = "dm:alice:bob";
    r = events_event(&del, NULL, EVENTS_LIVE);
    assert_line(&r, "* alice deleted a message to bob\r\n");
    msg_rec_release(&r);

    struct store_msg react = {.room = "dev", .seq = 61, .ts = 7, .from = "alice", .text = "",
                              .type = STORE_EV_REACTION, .target = 58, .emoji = "👍", .on = true};
    r = events_event(&react, NULL, EVENTS_LIVE);
    assert_json(&r, "{\"type\":\"reaction\",\"room\":\"dev\",\"seq\":61,\"ts\":7,\"from\":\"alice\","
                    "\"target\":58,\"emoji\":\"👍\",\"on\":true}");
    assert_line(&r, NULL); /* reactions are not shown on telnet */
    msg_rec_release(&r);

    struct store_msg msg = {.room = "dm:alice:bob", .seq = 62, .ts = 8, .from = "alice",
                            .text = "", .deleted = true};
    r = events_event(&msg, NULL, EVENTS_REPLAY);
    assert_json(&r, "{\"type\":\"message\",\"room\":\"dm:alice:bob\",\"seq\":62,\"ts\":8,"
                    "\"from\":\"alice\",\"deleted\":true}");
    assert_line(&r, NULL);
    msg_rec_release(&r);
}

static void history_entry_forms(void **state)
{
    (void)state;
    struct events_reaction rx = {.emoji = "👍", .count = 3, .me = true, .n_users = 2};
    strcpy(rx.users[0], "alice");
    strcpy(rx.users[1], "bob");
    struct store_msg m = {.room = "dev", .seq = 58, .ts = 1, .from = "bob", .text = "hi",
                          .text_len = 2, .edited = 9, .reply_to = 3, .mentions = "alice"};
    struct msg_rec r = events_history_entry(&m, &rx, 1);
    assert_json(&r, "{\"type\":\"message\",\"room\":\"dev\",\"seq\":58,\"ts\":1,\"from\":\"bob\","
                    "\"text\":\"hi\",\"reply_to\":3,\"mentions\":[\"alice\"],\"edited\":9,"
                    "\"reactions\":[{\"emoji\":\"👍\",\"count\":3,\"me\":true,"
                    "\"users\":[\"alice\",\"bob\"]}]}");
    assert_line(&r, "[#dev] bob (edited): hi\r\n");
    msg_rec_release(&r);
    m.deleted = true;
    r = events_history_entry(&m, NULL, 0);
    assert_json(&r, "{\"type\":\"message\",\"room\":\"dev\",\"seq\":58,\"ts\":1,\"from\":\"bob\","
                    "\"deleted\":true}");
    assert_line(&r, NULL);
    msg_rec_release(&r);
}

/* Rules 58, 61, 62: who may set a topic, give roles, and moderate whom. */
static void moderation_rights(void **state)
{
    (void)state;
    const enum timeline_rank M = TIMELINE_MEMBER, O = TIMELINE_OP, W = TIMELINE_OWNER,
                             A = TIMELINE_ADMIN;
    /* topic: ops, owner, admins; never in a dm room */
    assert_false(timeline_may_moderate(TIMELINE_ACT_TOPIC, M, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_TOPIC, O, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_TOPIC, W, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_TOPIC, A, M, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_TOPIC, A, M, true));
    /* role op/member: owner and admins; never on the owner or an admin */
    assert_false(timeline_may_moderate(TIMELINE_ACT_ROLE, O, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_ROLE, W, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_ROLE, W, O, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_ROLE, A, O, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_ROLE, A, W, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_ROLE, W, A, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_ROLE, A, A, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_ROLE, W, M, true));
    /* role owner: admins only, on anyone but an admin */
    assert_false(timeline_may_moderate(TIMELINE_ACT_MAKE_OWNER, W, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_MAKE_OWNER, A, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_MAKE_OWNER, A, O, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_MAKE_OWNER, A, W, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_MAKE_OWNER, A, A, false));
    /* kick, ban, mute...: ops too; nobody on an admin; admins alone on the owner; owner and
     * admins on an op */
    assert_false(timeline_may_moderate(TIMELINE_ACT_MODERATE, M, M, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_MODERATE, O, M, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_MODERATE, O, O, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_MODERATE, O, W, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_MODERATE, W, O, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_MODERATE, W, A, false));
    assert_true(timeline_may_moderate(TIMELINE_ACT_MODERATE, A, W, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_MODERATE, A, A, false));
    assert_false(timeline_may_moderate(TIMELINE_ACT_MODERATE, A, M, true));
    assert_int_equal(timeline_rank_of(true, true, true), A);
    assert_int_equal(timeline_rank_of(false, true, true), W);
    assert_int_equal(timeline_rank_of(false, false, true), O);
    assert_int_equal(timeline_rank_of(false, false, false), M);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mentions_follow_rule_57), cmocka_unit_test(emoji_rules),
        cmocka_unit_test(identities_and_rights),   cmocka_unit_test(event_forms),
        cmocka_unit_test(history_entry_forms), cmocka_unit_test(moderation_rights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
