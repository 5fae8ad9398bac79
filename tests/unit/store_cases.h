/*
 * store_cases: the store unit tests every backend must pass (test_store_sqlite.c and
 * test_store_pg.c include this file, each after defining its fixture's hooks), so both backends
 * are held to one behaviour. Only what a backend does differently (files, locks, a server) is
 * tested in its own file.
 */
#ifndef PARLEY_STORE_CASES_H
#define PARLEY_STORE_CASES_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"

/* One test's store: a temporary directory (SQLite) or database (PostgreSQL). */
struct fixture {
    char dir[64];
    char url[512];
    struct store *s;
};

/* Hooks each backend's test file defines: open f->s afresh on f's data (max_db_bytes: SQLite's
 * size cap, 0 = none; ignored elsewhere), count the rows of a query on a second connection, and
 * read the schema version stored. */
static void backend_open(struct fixture *f, uint64_t max_db_bytes);
static int64_t count_rows(const struct fixture *f, const char *sql);
static int64_t backend_schema_version(const struct fixture *f);

static void reopen(struct fixture *f, uint64_t max_db_bytes)
{
    f->s->ops->close(f->s);
    f->s = NULL;
    backend_open(f, max_db_bytes);
}

static int put(struct store *s, const char *room, uint64_t seq, int64_t ts, const char *from,
               const char *text, const char *cid)
{
    struct store_msg m = {
        .room = room,
        .seq = seq,
        .ts = ts,
        .from = from,
        .text = text,
        .text_len = strlen(text),
        .cid = cid,
    };
    return s->ops->insert(s, &m);
}

/* Stores msgs 1..n of room in one batch, with ts = 1000 + 10 * seq. */
static void fill(struct store *s, const char *room, uint64_t n)
{
    assert_int_equal(s->ops->begin(s), 0);
    for (uint64_t i = 1; i <= n; i++) {
        char text[32];
        snprintf(text, sizeof text, "message %llu", (unsigned long long)i);
        assert_int_equal(put(s, room, i, 1000 + 10 * (int64_t)i, "alice", text, NULL), 0);
    }
    assert_int_equal(s->ops->commit(s), 0);
}

#define MAX_SEEN 256

/* What read passed to its callback, copied, since its strings live only during the call. */
struct seen {
    int n;
    uint64_t seq[MAX_SEEN];
    int64_t ts[MAX_SEEN];
    char from[MAX_SEEN][STORE_NAME_MAX + 1];
    char text[MAX_SEEN][64];
    size_t text_len[MAX_SEEN];
    char cid[MAX_SEEN][70];
    bool has_cid[MAX_SEEN];
};

static void see(void *arg, const struct store_msg *m)
{
    struct seen *v = arg;
    assert_true(v->n < MAX_SEEN);
    int i = v->n++;
    v->seq[i] = m->seq;
    v->ts[i] = m->ts;
    snprintf(v->from[i], sizeof v->from[i], "%s", m->from);
    snprintf(v->text[i], sizeof v->text[i], "%s", m->text);
    v->text_len[i] = m->text_len;
    v->has_cid[i] = m->cid != NULL;
    snprintf(v->cid[i], sizeof v->cid[i], "%s", m->cid ? m->cid : "");
}

/* Reads into v and checks the returned count against what the callback saw. */
static int read_seqs(struct store *s, const char *room, uint64_t after, uint64_t before,
                     int64_t min_ts, unsigned limit, bool newest, struct seen *v)
{
    memset(v, 0, sizeof *v);
    int n = s->ops->read(s, room, after, before, min_ts, limit, newest, see, v);
    assert_int_equal(n, v->n);
    return n;
}

static void assert_seqs(const struct seen *v, uint64_t first, uint64_t last)
{
    assert_int_equal(v->n, (int)(last - first + 1));
    for (int i = 0; i < v->n; i++)
        assert_int_equal(v->seq[i], first + (uint64_t)i);
}

#define MAX_ROOMS 8

struct rooms_seen {
    int n;
    char name[MAX_ROOMS][STORE_ROOM_MAX];
    uint64_t last_seq[MAX_ROOMS];
    int64_t created_ms[MAX_ROOMS];
};

static void see_room(void *arg, const char *room, uint64_t last_seq, int64_t created_ms)
{
    struct rooms_seen *r = arg;
    assert_true(r->n < MAX_ROOMS);
    snprintf(r->name[r->n], sizeof r->name[r->n], "%s", room);
    r->last_seq[r->n] = last_seq;
    r->created_ms[r->n] = created_ms;
    r->n++;
}

/* The last_seq load_rooms reports for room; fails the test if the room is not listed. */
static uint64_t room_seq(struct store *s, const char *room)
{
    struct rooms_seen r = {0};
    assert_int_equal(s->ops->load_rooms(s, see_room, &r), 0);
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.name[i], room) == 0)
            return r.last_seq[i];
    fail_msg("room %s not listed", room);
    return 0;
}

static void see_user(void *arg, const char *name, int64_t created_ms)
{
    (void)created_ms;
    char *names = arg;
    size_t len = strlen(names);
    snprintf(names + len, 128 - len, "%s%s", len ? "," : "", name);
}

static const uint8_t hash_a[STORE_TOKEN_HASH] = {1, 2, 3};
static const uint8_t hash_b[STORE_TOKEN_HASH] = {4, 5, 6};
static const uint8_t hash_c[STORE_TOKEN_HASH] = {7, 8, 9};

static void reopen_keeps_everything(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->room_create(s, "lobby", 500, NULL), 0);
    fill(s, "general", 3);
    assert_int_equal(s->ops->user_create(s, "Alice", "$argon2id$x", 77), 0);
    struct store_token t = {.user = "Alice", .expires_ms = 10000};
    assert_int_equal(s->ops->token_put(s, hash_a, &t), 0);

    reopen(f, 0);
    s = f->s;
    struct rooms_seen r = {0};
    assert_int_equal(s->ops->load_rooms(s, see_room, &r), 0);
    assert_int_equal(r.n, 2);
    for (int i = 0; i < r.n; i++) {
        if (strcmp(r.name[i], "lobby") == 0) {
            assert_int_equal(r.last_seq[i], 0);
            assert_int_equal(r.created_ms[i], 500);
        } else {
            assert_string_equal(r.name[i], "general");
            assert_int_equal(r.last_seq[i], 3);
            assert_int_equal(r.created_ms[i], 1010); /* the first message's time */
        }
    }
    struct seen v;
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 10, false, &v), 3);
    assert_string_equal(v.text[2], "message 3");

    char names[128] = "";
    assert_int_equal(s->ops->load_users(s, see_user, names), 0);
    assert_string_equal(names, "Alice");
    struct store_token got;
    assert_int_equal(s->ops->token_get(s, hash_a, 5000, &got), 0);
    assert_string_equal(got.user, "Alice");

    /* The schema is migrated (at least to 1.1's timeline; later steps are appended by several
     * branches, so no exact number here) and opening again did not run the migrations twice (an
     * ALTER TABLE or CREATE TABLE run again would have failed the open). */
    assert_true(backend_schema_version(f) >= 1);
}

static void read_selects_ranges_in_ascending_order(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    fill(s, "general", 10);
    fill(s, "other", 2); /* must never show up in general's reads */
    struct seen v;

    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 3, false, &v), 3);
    assert_seqs(&v, 1, 3);
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 3, true, &v), 3);
    assert_seqs(&v, 8, 10);
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 200, true, &v), 10);
    assert_seqs(&v, 1, 10);
    /* before is exclusive: the history page ending just before seq 6. */
    read_seqs(s, "general", 0, 6, 0, 3, true, &v);
    assert_seqs(&v, 3, 5);
    read_seqs(s, "general", 0, 6, 0, 50, false, &v);
    assert_seqs(&v, 1, 5);
    /* after is exclusive: replay of a join with since = 4. */
    read_seqs(s, "general", 4, 0, 0, 100, false, &v);
    assert_seqs(&v, 5, 10);
    read_seqs(s, "general", 4, 0, 0, 2, false, &v);
    assert_seqs(&v, 5, 6);
    /* min_ts is inclusive: message 7 has ts 1070. */
    read_seqs(s, "general", 0, 0, 1070, 100, false, &v);
    assert_seqs(&v, 7, 10);
    read_seqs(s, "general", 0, 0, 1070, 100, true, &v);
    assert_seqs(&v, 7, 10);
    /* All bounds at once: 2 < seq < 9, ts >= 1040, i.e. 4..8. */
    read_seqs(s, "general", 2, 9, 1040, 2, false, &v);
    assert_seqs(&v, 4, 5);
    read_seqs(s, "general", 2, 9, 1040, 2, true, &v);
    assert_seqs(&v, 7, 8);
    read_seqs(s, "general", 2, 9, 1040, 100, true, &v);
    assert_seqs(&v, 4, 8);
    /* Nothing to give. */
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 0, true, &v), 0);
    assert_int_equal(read_seqs(s, "general", 10, 0, 0, 10, false, &v), 0);
    assert_int_equal(read_seqs(s, "general", 5, 6, 0, 10, false, &v), 0);
    assert_int_equal(read_seqs(s, "general", 0, 0, 999999, 10, true, &v), 0);
    assert_int_equal(read_seqs(s, "nowhere", 0, 0, 0, 10, true, &v), 0);
    /* Bounds beyond SQLite's signed range behave as "no bound". */
    assert_int_equal(read_seqs(s, "general", 0, UINT64_MAX, 0, 100, false, &v), 10);
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, UINT32_MAX, false, &v), 10);

    /* Fields come back as stored: newlines, tabs, any UTF-8, cid or none, sender spelling. */
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(
        put(s, "general", 11, 2000, "Bob", "line one\n\tline two \xc3\xa9\xe2\x82\xac", "c-1"), 0);
    /* The length is what counts, not a NUL: only "trunc" of "truncated" is stored. */
    struct store_msg m = {.room = "general",
                          .seq = 12,
                          .ts = 2001,
                          .from = "bob",
                          .text = "truncated",
                          .text_len = 5};
    assert_int_equal(s->ops->insert(s, &m), 0);
    assert_int_equal(s->ops->commit(s), 0);
    read_seqs(s, "general", 10, 0, 0, 10, false, &v);
    assert_seqs(&v, 11, 12);
    assert_int_equal(v.ts[0], 2000);
    assert_string_equal(v.from[0], "Bob");
    assert_string_equal(v.text[0], "line one\n\tline two \xc3\xa9\xe2\x82\xac");
    assert_int_equal(v.text_len[0], strlen("line one\n\tline two \xc3\xa9\xe2\x82\xac"));
    assert_true(v.has_cid[0]);
    assert_string_equal(v.cid[0], "c-1");
    assert_string_equal(v.text[1], "trunc");
    assert_int_equal(v.text_len[1], 5);
    assert_false(v.has_cid[1]);
}

static int put_event(struct store *s, const struct store_msg *m)
{
    struct store_msg e = *m;
    e.room = "dev";
    if (!e.text)
        e.text = "";
    e.text_len = strlen(e.text);
    return s->ops->insert(s, &e);
}

struct history_seen {
    int n;
    uint64_t seq[8];
    char text[8][32];
    bool deleted[8];
    int64_t edited[8];
};

static void see_history(void *arg, const struct store_msg *m)
{
    struct history_seen *h = arg;
    assert_true(h->n < 8);
    h->seq[h->n] = m->seq;
    snprintf(h->text[h->n], sizeof h->text[0], "%s", m->text);
    h->deleted[h->n] = m->deleted;
    h->edited[h->n] = m->edited;
    h->n++;
}


/* The state an event changes: an edit the message's text and mentions, a delete erases, a
 * reaction stands or not, and a guest's rows become an account's (store.h, insert). */
static void timeline_state(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 1,
                                                      .ts = 10,
                                                      .from = "bob",
                                                      .text = "hi @alice",
                                                      .identity = "bob",
                                                      .mentions = "alice",
                                                      .cid = "c1"}),
                     0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 2,
                                                      .ts = 11,
                                                      .from = "carol",
                                                      .text = "guest",
                                                      .identity = "guest:9",
                                                      .reply_to = 1,
                                                      .cid = "c1"}),
                     0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 3,
                                                      .ts = 12,
                                                      .from = "bob",
                                                      .text = "hi @carol",
                                                      .identity = "bob",
                                                      .type = STORE_EV_EDIT,
                                                      .target = 1,
                                                      .mentions = "carol"}),
                     0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 4,
                                                      .ts = 13,
                                                      .from = "carol",
                                                      .identity = "guest:9",
                                                      .type = STORE_EV_REACTION,
                                                      .target = 1,
                                                      .emoji = "+1",
                                                      .on = true}),
                     0);
    assert_int_equal(s->ops->commit(s), 0);

    struct store_target t;
    assert_int_equal(s->ops->message_get(s, "dev", 1, &t), 0);
    assert_string_equal(t.identity, "bob");
    assert_false(t.deleted);
    assert_int_equal(s->ops->message_get(s, "dev", 3, &t), -ENOENT); /* an edit, no message */
    uint64_t seq = 0;
    assert_int_equal(s->ops->find_cid(s, "dev", "guest:9", "c1", &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM mentions WHERE user_lc = 'carol'"), 1);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM mentions WHERE user_lc = 'alice'"), 0);
    bool held, present;
    unsigned distinct;
    assert_int_equal(
        s->ops->reaction_state(s, "dev", 1, "+1", "guest:9", &held, &present, &distinct), 0);
    assert_true(held && present);
    assert_int_equal(distinct, 1);

    /* The guest registers: its rows outside dm rooms are the account's. */
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(s->ops->claim_guest(s, "guest:9", "carol", "Carol"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(s->ops->find_cid(s, "dev", "carol", "c1", &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(s->ops->reaction_state(s, "dev", 1, "+1", "carol", &held, &present, &distinct),
                     0);
    assert_true(held);

    /* A delete erases the message, its edits' texts, its reactions and mentions. */
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 5,
                                                      .ts = 14,
                                                      .from = "bob",
                                                      .identity = "bob",
                                                      .type = STORE_EV_DELETE,
                                                      .target = 1}),
                     0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(s->ops->message_get(s, "dev", 1, &t), 0);
    assert_true(t.deleted);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE text LIKE '%hi%'"), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM reactions"), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM mentions"), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE detail IS NOT NULL"), 0);
    struct history_seen h = {0};
    assert_int_equal(s->ops->history(s, "dev", UINT64_MAX, 0, 10, true, see_history, &h), 2);
    assert_int_equal(h.seq[0], 1);
    assert_true(h.deleted[0]);
    assert_string_equal(h.text[1], "guest");
    memset(&h, 0, sizeof h);
    assert_int_equal(s->ops->history(s, "dev", UINT64_MAX, 0, 10, false, see_history, &h), 1);
    assert_int_equal(h.seq[0], 2);
    assert_int_equal(s->ops->newest_own(s, "dev", "bob", &seq), -ENOENT);
    assert_int_equal(s->ops->newest_own(s, "dev", "carol", &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(s->ops->retention_cut(s, "dev", 1, &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(s->ops->retention_cut(s, "dev", 3, &seq), -ENOENT);
}


/* What load_moderation handed out, one "kind:room:value:until" line each. */
static void see_mod(void *arg, const char *room, enum store_mod_kind kind, const char *value,
                    int64_t until)
{
    char *out = arg;
    size_t len = strlen(out);
    snprintf(out + len, 512 - len, "%d:%s:%s:%lld\n", (int)kind, room, value, (long long)until);
}

/* Topic, roles, bans and mutes (rules 58-63): written with their events, read by the checks,
 * expired by time, kept across a reopen. */
static void moderation_state(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->room_create(s, "dev", 1, "alice"), 0);
    char owner[STORE_NAME_MAX + 1];
    bool op = true;
    assert_int_equal(s->ops->room_roles(s, "dev", "bob", owner, &op), 0);
    assert_string_equal(owner, "alice");
    assert_false(op);
    assert_int_equal(s->ops->room_roles(s, "nowhere", "bob", owner, &op), 0);
    assert_string_equal(owner, "");

    struct store_msg e = {.seq = 1, .ts = 1000, .from = "alice", .type = STORE_EV_TOPIC,
                          .text = "Release on Friday"};
    assert_int_equal(put_event(s, &e), 0);
    e = (struct store_msg){.seq = 2, .ts = 2000, .from = "alice", .type = STORE_EV_ROLE,
                           .user = "Bob", .detail = "op"};
    assert_int_equal(put_event(s, &e), 0);
    assert_int_equal(s->ops->room_roles(s, "dev", "bob", owner, &op), 0);
    assert_true(op);
    e = (struct store_msg){.seq = 3, .ts = 3000, .from = "alice", .type = STORE_EV_BAN,
                           .user = "Mallory", .detail = "spam", .duration = 60};
    assert_int_equal(put_event(s, &e), 0);
    e = (struct store_msg){.seq = 4, .ts = 4000, .from = "alice", .type = STORE_EV_MUTE,
                           .user = "carol"};
    assert_int_equal(put_event(s, &e), 0);
    int64_t until = -1;
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_BAN, "mallory", 62999, &until), 0);
    assert_int_equal(until, 63000);
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_BAN, "mallory", 63000, &until),
                     -ENOENT); /* expired: holds while now < ts + 1000 x duration */
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_MUTE, "carol", 1 << 30, &until), 0);
    assert_int_equal(until, 0);
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_MUTE, "bob", 0, &until), -ENOENT);

    /* An admin makes bob the owner: alice becomes an op, bob is no op any more. */
    e = (struct store_msg){.seq = 5, .ts = 5000, .from = "root", .type = STORE_EV_ROLE,
                           .user = "bob", .detail = "owner"};
    assert_int_equal(put_event(s, &e), 0);
    assert_int_equal(s->ops->room_roles(s, "dev", "alice", owner, &op), 0);
    assert_string_equal(owner, "bob");
    assert_true(op);
    assert_int_equal(s->ops->room_roles(s, "dev", "bob", owner, &op), 0);
    assert_false(op);
    e = (struct store_msg){.seq = 6, .ts = 6000, .from = "bob", .type = STORE_EV_UNMUTE,
                           .user = "Carol"};
    assert_int_equal(put_event(s, &e), 0);
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_MUTE, "carol", 0, &until), -ENOENT);

    reopen(f, 0);
    s = f->s;
    char got[512] = "";
    assert_int_equal(s->ops->load_moderation(s, 10000, see_mod, got), 0);
    assert_non_null(strstr(got, "0:dev:bob:0\n"));
    assert_non_null(strstr(got, "1:dev:Release on Friday:0\n"));
    assert_non_null(strstr(got, "2:dev:alice:0\n"));
    assert_non_null(strstr(got, "3:dev:mallory:63000\n"));
    assert_null(strstr(got, "4:dev:")); /* unmuted */
    got[0] = '\0';
    assert_int_equal(s->ops->load_moderation(s, 70000, see_mod, got), 0);
    assert_null(strstr(got, "3:dev:")); /* the ban has expired by then */
}

static void find_cid_matches_sender_in_any_case(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 1, 1, "Alice", "hi", "x1"), 0);
    assert_int_equal(put(s, "general", 2, 2, "bob", "hi", "x1"), 0); /* same cid, other user */
    uint64_t seq = 0;
    /* Inside the batch, an earlier insert of the same batch is already found. */
    assert_int_equal(s->ops->find_cid(s, "general", "ALICE", "x1", &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(s->ops->commit(s), 0);

    seq = 0;
    assert_int_equal(s->ops->find_cid(s, "general", "alice", "x1", &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(s->ops->find_cid(s, "general", "BOB", "x1", &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(s->ops->find_cid(s, "general", "alice", "x2", &seq), -ENOENT);
    assert_int_equal(s->ops->find_cid(s, "general", "carol", "x1", &seq), -ENOENT);
    assert_int_equal(s->ops->find_cid(s, "other", "alice", "x1", &seq), -ENOENT);
    assert_int_equal(s->ops->find_cid(s, "general", "alice", "X1", &seq),
                     -ENOENT); /* cid is exact */

    /* A second copy of the same cid by the same user is refused, and the refused insert leaves
     * the batch usable. */
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 3, 3, "alice", "again", "x1"), -EIO);
    assert_int_equal(put(s, "general", 3, 3, "alice", "fresh", "x3"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), 3);
    struct seen v;
    read_seqs(s, "general", 2, 0, 0, 10, false, &v);
    assert_seqs(&v, 3, 3);
    assert_string_equal(v.text[0], "fresh");
}

static void rollback_discards_messages_and_last_seq(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    fill(s, "general", 2);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 3, 3, "alice", "lost", "c3"), 0);
    assert_int_equal(put(s, "newroom", 1, 3, "alice", "lost too", NULL), 0);
    assert_int_equal(s->ops->room_create(s, "empty", 3, NULL), 0);
    s->ops->rollback(s);

    assert_int_equal(room_seq(s, "general"), 2);
    struct rooms_seen r = {0};
    assert_int_equal(s->ops->load_rooms(s, see_room, &r), 0);
    assert_int_equal(r.n, 1);
    struct seen v;
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 10, true, &v), 2);
    uint64_t seq;
    assert_int_equal(s->ops->find_cid(s, "general", "alice", "c3", &seq), -ENOENT);
    s->ops->rollback(s); /* a second rollback, outside any batch, is harmless */

    /* The same seq can be used again after the rollback. */
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 3, 3, "alice", "kept", "c3"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), 3);

    /* An insert outside any batch commits on its own, with its room's last_seq. */
    assert_int_equal(put(s, "solo", 1, 9, "bob", "alone", NULL), 0);
    assert_int_equal(room_seq(s, "solo"), 1);
}

static void users_are_unique_in_any_case(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->user_create(s, "Alice", "$argon2id$v=19$hash", 1234), 0);
    assert_int_equal(s->ops->user_create(s, "alice", "$other", 1), -EEXIST);
    assert_int_equal(s->ops->user_create(s, "ALICE", "$other", 1), -EEXIST);
    assert_int_equal(s->ops->user_create(s, "bob.B-2_", "$h", 5), 0);

    struct store_user u;
    assert_int_equal(s->ops->user_get(s, "aLiCe", &u), 0);
    assert_string_equal(u.name, "Alice");
    assert_string_equal(u.pwhash, "$argon2id$v=19$hash");
    assert_int_equal(u.created_ms, 1234);
    assert_int_equal(s->ops->user_get(s, "BOB.b-2_", &u), 0);
    assert_string_equal(u.name, "bob.B-2_");
    assert_int_equal(s->ops->user_get(s, "carol", &u), -ENOENT);

    char names[128] = "";
    assert_int_equal(s->ops->load_users(s, see_user, names), 0);
    assert_true(strcmp(names, "Alice,bob.B-2_") == 0 || strcmp(names, "bob.B-2_,Alice") == 0);
}

static void tokens_expire_and_guest_tokens_drop(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    struct store_token alice = {.user = "Alice", .expires_ms = 1000};
    struct store_token guest = {
        .user = "Carol", .guest = true, .guest_session = UINT64_MAX - 1, .expires_ms = 2000};
    struct store_token guest2 = {
        .user = "carol", .guest = true, .guest_session = 7, .expires_ms = 3000};
    assert_int_equal(s->ops->token_put(s, hash_a, &alice), 0);
    assert_int_equal(s->ops->token_put(s, hash_b, &guest), 0);
    assert_int_equal(s->ops->token_put(s, hash_c, &guest2), 0);

    struct store_token got;
    assert_int_equal(s->ops->token_get(s, hash_a, 999, &got), 0);
    assert_string_equal(got.user, "Alice");
    assert_false(got.guest);
    assert_int_equal(got.expires_ms, 1000);
    assert_int_equal(s->ops->token_get(s, hash_a, 1000, &got), -ENOENT); /* expired at 1000 */
    assert_int_equal(s->ops->token_get(s, hash_b, 0, &got), 0);
    assert_true(got.guest);
    assert_true(got.guest_session == UINT64_MAX - 1); /* the full 64 bits survive */
    uint8_t unknown[STORE_TOKEN_HASH] = {0};
    assert_int_equal(s->ops->token_get(s, unknown, 0, &got), -ENOENT);

    /* Putting the same hash again replaces the token. */
    alice.expires_ms = 5000;
    assert_int_equal(s->ops->token_put(s, hash_a, &alice), 0);
    assert_int_equal(s->ops->token_get(s, hash_a, 4000, &got), 0);

    /* Registering "CAROL" drops both guest tokens of that name, whatever their case. */
    assert_int_equal(s->ops->token_drop_guest(s, "CAROL"), 0);
    assert_int_equal(s->ops->token_get(s, hash_b, 0, &got), -ENOENT);
    assert_int_equal(s->ops->token_get(s, hash_c, 0, &got), -ENOENT);
    /* ...but never a registered user's token. */
    assert_int_equal(s->ops->token_drop_guest(s, "alice"), 0);
    assert_int_equal(s->ops->token_get(s, hash_a, 0, &got), 0);

    assert_int_equal(s->ops->token_put(s, hash_b, &guest), 0);
    assert_int_equal(s->ops->token_expire(s, 2000), 0); /* guest expires at 2000: gone */
    assert_int_equal(s->ops->token_get(s, hash_b, 0, &got), -ENOENT);
    assert_int_equal(s->ops->token_get(s, hash_a, 0, &got), 0);
    assert_int_equal(s->ops->token_expire(s, 5000), 0);
    assert_int_equal(s->ops->token_get(s, hash_a, 0, &got), -ENOENT);
}

static void trim_keeps_last_seq(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    uint64_t first = 99;
    assert_int_equal(s->ops->first_seq(s, "general", &first), 0);
    assert_int_equal(first, 0);
    fill(s, "general", 10);
    assert_int_equal(s->ops->first_seq(s, "general", &first), 0);
    assert_int_equal(first, 1);

    assert_int_equal(s->ops->trim(s, "general", 4), 0);
    assert_int_equal(s->ops->first_seq(s, "general", &first), 0);
    assert_int_equal(first, 5);
    assert_int_equal(room_seq(s, "general"), 10);
    struct seen v;
    read_seqs(s, "general", 0, 0, 0, 100, false, &v);
    assert_seqs(&v, 5, 10);

    assert_int_equal(s->ops->trim(s, "general", 10), 0);
    assert_int_equal(s->ops->first_seq(s, "general", &first), 0);
    assert_int_equal(first, 0);
    assert_int_equal(room_seq(s, "general"), 10); /* seq goes on from 11 */
}

struct saved_seen {
    int n;
    char room[4][16];
    uint64_t marker[4];
};

static void see_saved(void *arg, const char *room, uint64_t marker, uint64_t latest)
{
    (void)latest; /* test_store_pg's dm_rooms case checks it */
    struct saved_seen *v = arg;
    assert_true(v->n < 4);
    snprintf(v->room[v->n], sizeof v->room[0], "%s", room);
    v->marker[v->n++] = marker;
}

/* Read markers and saved rooms (protocol 1.1 rules 66-68): markers only rise, only_new never
 * moves one, saved rooms come back by name with their markers, and the counts after a marker
 * leave out the user's own, deleted and (for dm rooms) older messages, mention by mention, up
 * to the cap; everything survives a reopen. */
static void read_markers_and_saved_rooms(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    uint64_t seq = 99;
    assert_int_equal(s->ops->marker_get(s, "alice", "dev", &seq), -ENOENT);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(s->ops->marker_raise(s, "alice", "dev", 5, true), 0);
    assert_int_equal(s->ops->marker_raise(s, "alice", "dev", 9, true), 0); /* exists: kept */
    assert_int_equal(s->ops->marker_raise(s, "alice", "dev", 3, false), 0); /* never back */
    assert_int_equal(s->ops->saved_set(s, "alice", "zoo", true), 0);
    assert_int_equal(s->ops->saved_set(s, "alice", "dev", true), 0);
    assert_int_equal(s->ops->saved_set(s, "alice", "dev", true), 0); /* idempotent */
    assert_int_equal(s->ops->saved_set(s, "alice", "gone", true), 0);
    assert_int_equal(s->ops->saved_set(s, "alice", "gone", false), 0);
    assert_int_equal(s->ops->saved_set(s, "bob", "dev", true), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(s->ops->marker_get(s, "alice", "dev", &seq), 0);
    assert_int_equal(seq, 5);
    reopen(f, 0);
    s = f->s;
    uint64_t n = 0;
    assert_int_equal(s->ops->saved_count(s, "alice", &n), 0);
    assert_int_equal(n, 2);
    bool saved = true;
    assert_int_equal(s->ops->saved_has(s, "alice", "gone", &saved), 0);
    assert_false(saved);
    struct saved_seen v = {0};
    assert_int_equal(s->ops->saved_list(s, "alice", see_saved, &v), 0);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.room[0], "dev");
    assert_int_equal(v.marker[0], 5);
    assert_string_equal(v.room[1], "zoo");
    assert_int_equal(v.marker[1], 0); /* never set */

    /* dev: 1 bob mentions alice, 2 alice's own mentioning herself, 3 bob deleted, 4 bob plain,
     * 5 bob at ts 100 mentioning alice. */
    assert_int_equal(s->ops->begin(s), 0);
    const struct store_msg msgs[] = {
        {.seq = 1, .ts = 10, .from = "bob", .text = "@alice", .mentions = "alice"},
        {.seq = 2, .ts = 11, .from = "alice", .text = "@alice", .mentions = "alice"},
        {.seq = 3, .ts = 12, .from = "bob", .text = "@alice", .mentions = "alice"},
        {.seq = 4, .ts = 13, .from = "bob", .text = "plain"},
        {.seq = 5, .ts = 100, .from = "bob", .text = "@alice", .mentions = "alice"},
        {.seq = 6, .ts = 101, .from = "bob", .type = STORE_EV_DELETE, .target = 3},
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
        assert_int_equal(put_event(s, &msgs[i]), 0);
    assert_int_equal(s->ops->commit(s), 0);
    uint32_t unread = 0, mentions = 0;
    assert_int_equal(s->ops->unread(s, "dev", "alice", 0, 0, 1000, &unread, &mentions), 0);
    assert_int_equal(unread, 3);
    assert_int_equal(mentions, 2);
    assert_int_equal(s->ops->unread(s, "dev", "alice", 1, 0, 1000, &unread, &mentions), 0);
    assert_int_equal(unread, 2);
    assert_int_equal(mentions, 1);
    assert_int_equal(s->ops->unread(s, "dev", "alice", 0, 50, 1000, &unread, &mentions), 0);
    assert_int_equal(unread, 1); /* rule 40: only what was stored from ts 50 on */
    assert_int_equal(mentions, 1);
    assert_int_equal(s->ops->unread(s, "dev", "alice", 0, 0, 2, &unread, &mentions), 0);
    assert_int_equal(unread, 2); /* stopped at the cap */
    assert_int_equal(mentions, 2);
    assert_int_equal(s->ops->unread(s, "dev", "bob", 0, 0, 1000, &unread, &mentions), 0);
    assert_int_equal(unread, 1);
    assert_int_equal(mentions, 0);
}

/* A room's creation (rule 74): its owner, or -ENOENT without a row; the public rooms counted
 * inside a batch, dm rooms not, the always-existing room once whether it has a row or not. */
static void room_owner_and_count(void **state)
{
    struct store *s = ((struct fixture *)*state)->s;
    char owner[STORE_NAME_MAX + 1] = "x";
    assert_int_equal(s->ops->room_owner(s, "dev", owner), -ENOENT);
    uint64_t n = 0;
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(s->ops->room_count(s, "general", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(s->ops->room_create(s, "dev", 1, "alice"), 0);
    assert_int_equal(s->ops->room_create(s, "dm:alice:bob", 1, NULL), 0);
    assert_int_equal(s->ops->room_count(s, "general", &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(s->ops->room_owner(s, "dev", owner), 0);
    assert_string_equal(owner, "alice");
    assert_int_equal(s->ops->room_create(s, "general", 1, NULL), 0);
    assert_int_equal(s->ops->room_owner(s, "general", owner), 0);
    assert_string_equal(owner, "");
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(s->ops->room_count(s, "general", &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(s->ops->commit(s), 0);
}

/* The shared cases, for each backend's list: STORE_CASES(TEST) with its own TEST macro. */
#define STORE_CASES(T)                                                                             \
    T(reopen_keeps_everything), T(read_selects_ranges_in_ascending_order),                         \
        T(find_cid_matches_sender_in_any_case), T(timeline_state),                                 \
        T(read_markers_and_saved_rooms), T(moderation_state),                                      \
        T(rollback_discards_messages_and_last_seq), T(users_are_unique_in_any_case),               \
        T(tokens_expire_and_guest_tokens_drop), T(trim_keeps_last_seq), T(room_owner_and_count)

#endif
