/* test_handover_rec: a live upgrade's connection records, and the reader and parser states they
 * carry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handover_rec.h"
#include "telnet_parser.h"
#include "utf8.h"
#include "ws_frame.h"

/* The spill every reader of these tests borrows (a connection lends one only mid-frame). */
static struct ws_reader_spill spill;

static const char *why;

/* A record with something in every kind of field: the writer's output, read back. */
static void write_full(struct hr_writer *w, uint16_t version)
{
    hr_begin(w, version);
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    hr_u64(w, HR_PEER_KEY, UINT64_MAX);
    hr_u64(w, HR_NET_KEY, 12345);
    hr_u64(w, HR_PEER_COUNTED, 1);
    hr_u64(w, HR_RX_AGE_MS, 250);
    hr_u64(w, HR_TIMER_MS, 0);
    hr_put(w, HR_IN, "/jo", 3);
    hr_put(w, HR_OUT, "pending\r\n", 9);
    hr_u64(w, HR_TN_PROMPT, 3);
    hr_str(w, HR_TN_NAME, "Alice");
    hr_str(w, HR_TN_CURRENT, "general");
    hr_open(w, HR_TN_PARSER);
    hr_u64(w, HR_TP_STATE, 0);
    hr_u64(w, HR_TP_SB_LEN, 7);
    hr_close(w);
    hr_put(w, HR_TN_LINE, "half a li", 9);
    hr_u64(w, HR_CHAT, 1);
    hr_u64(w, HR_LOGGED_IN, 1);
    hr_u64(w, HR_GUEST, 1);
    hr_u64(w, HR_GUEST_SESSION, 99);
    hr_i64(w, HR_CREATED_MS, -5);
    hr_str(w, HR_USER, "Alice");
    hr_str(w, HR_USER_LC, "alice");
    hr_u64(w, HR_TOKENS_MICRO, 19500000);
    uint8_t attempts[2 * HR_ATTEMPT_SECONDS] = {3, 0, 0, 1};
    hr_put(w, HR_ATTEMPTS, attempts, sizeof attempts);
    for (int i = 0; i < 3; i++) {
        hr_open(w, HR_ROOM);
        hr_str(w, HR_RM_NAME, i == 0 ? "general" : i == 1 ? "dm:alice:bob" : "lobby");
        hr_u64(w, HR_RM_LAST_SEQ, 100u + (unsigned)i);
        hr_u64(w, HR_RM_JOINED_ORDER, (unsigned)i + 1);
        if (version >= 3) {
            hr_u64(w, HR_RM_TOLD_COUNT, 15000u + (unsigned)i);
            hr_u64(w, HR_RM_TOLD_LARGE, i == 0);
        }
        hr_close(w);
    }
    for (int i = 0; version >= 6 && i < 2; i++) {
        hr_open(w, HR_DM);
        hr_str(w, HR_DM_NAME, i == 0 ? "dm:alice:carol" : "dm:alice:dave");
        hr_u64(w, HR_DM_LAST_SEQ, 40u + (unsigned)i);
        hr_close(w);
    }
    hr_open(w, HR_BACKLOG);
    hr_u64(w, HR_BL_LIVE, 1);
    hr_put(w, HR_BL_MSG, "line\r\n", 6);
    hr_close(w);
    hr_open(w, HR_BACKLOG);
    hr_str(w, HR_BL_ROOM, "lobby");
    hr_u64(w, HR_BL_AFTER, 10);
    hr_u64(w, HR_BL_UNTIL, 500);
    hr_i64(w, HR_BL_TS, 1700000000000);
    hr_close(w);
    hr_end(w);
}

static void round_trip(void **state)
{
    (void)state;
    struct hr_writer w = {0};
    write_full(&w, HANDOVER_REC_VERSION);
    uint16_t version = 0;
    assert_int_equal(handover_rec_size(w.buf, w.len, &version), (long)w.len);
    assert_int_equal(version, HANDOVER_REC_VERSION);
    struct handover_rec r;
    assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), 0);
    assert_int_equal(r.transport, HR_TELNET);
    assert_true(r.peer_key == UINT64_MAX);
    assert_int_equal(r.net_key, 12345);
    assert_true(r.peer_counted);
    assert_false(r.via_proxy);
    assert_int_equal(r.rx_age_ms, 250);
    assert_true(r.has_timer);
    assert_int_equal(r.timer_ms, 0);
    assert_memory_equal(r.in.p, "/jo", 3);
    assert_int_equal(r.out.n, 9);
    assert_int_equal(r.tn_prompt, 3);
    assert_memory_equal(r.tn_name.p, "Alice", 5);
    assert_int_equal(r.tn_parser.sb_len, 7);
    assert_int_equal(r.tn_line.n, 9);
    assert_true(r.has_chat && r.logged_in && r.guest);
    assert_int_equal(r.guest_session, 99);
    assert_int_equal(r.created_ms, -5);
    assert_int_equal(r.tokens_micro, 19500000);
    assert_int_equal(r.attempts[0], 3);
    assert_int_equal(r.attempts[1], 256);
    assert_false(r.has_cids);
    assert_false(r.has_typing);
    assert_int_equal(r.n_rooms, 3);
    assert_int_equal(r.n_backlog, 2);
    size_t cursor = 0;
    struct hr_room room;
    for (int i = 0; i < 3; i++) {
        assert_true(handover_rec_room(&r, &cursor, &room));
        assert_int_equal(room.last_seq, 100 + i);
        assert_int_equal(room.joined_order, i + 1);
        assert_int_equal(room.told_count, 15000 + i);
        assert_int_equal(room.told_large, i == 0);
    }
    assert_memory_equal(room.name.p, "lobby", 5);
    assert_false(handover_rec_room(&r, &cursor, &room));
    struct hr_backlog e;
    cursor = 0;
    assert_true(handover_rec_backlog(&r, &cursor, &e));
    assert_false(e.is_replay);
    assert_true(e.live);
    assert_memory_equal(e.msg.p, "line\r\n", 6);
    assert_true(handover_rec_backlog(&r, &cursor, &e));
    assert_true(e.is_replay);
    assert_int_equal(e.after, 10);
    assert_int_equal(e.until, 500);
    assert_int_equal(e.ts, 1700000000000);
    assert_false(handover_rec_backlog(&r, &cursor, &e));
    assert_int_equal(r.n_dms, 2);
    struct hr_dm dm;
    cursor = 0;
    for (int i = 0; i < 2; i++) {
        assert_true(handover_rec_dm(&r, &cursor, &dm));
        assert_int_equal(dm.last_seq, 40 + i);
    }
    assert_int_equal(dm.name.n, strlen("dm:alice:dave"));
    assert_memory_equal(dm.name.p, "dm:alice:dave", dm.name.n);
    assert_false(handover_rec_dm(&r, &cursor, &dm));
    /* Two records back to back: each is found by its length. */
    size_t one = w.len;
    write_full(&w, HANDOVER_REC_VERSION);
    assert_int_equal(handover_rec_size(w.buf, w.len, NULL), (long)one);
    assert_int_equal(handover_rec_size(w.buf + one, w.len - one, NULL), (long)(w.len - one));
    hr_writer_free(&w);
}

static void versions(void **state)
{
    (void)state;
    struct hr_writer w = {0};
    struct handover_rec r;
    for (uint16_t v = HANDOVER_REC_MIN_VERSION; v <= HANDOVER_REC_VERSION; v++) {
        write_full(&w, v);
        assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), 0);
        assert_int_equal(r.version, v);
        /* Versions before 3 carry no told count: 0 and small, the defaults. */
        size_t cursor = 0;
        struct hr_room room;
        assert_true(handover_rec_room(&r, &cursor, &room));
        assert_int_equal(room.told_count, v >= 3 ? 15000 : 0);
        assert_int_equal(room.told_large, v >= 3);
        /* Versions before 6 carry no dm room places: none, and the rooms go on as before. */
        struct hr_dm dm;
        cursor = 0;
        assert_int_equal(r.n_dms, v >= 6 ? 2 : 0);
        assert_int_equal(handover_rec_dm(&r, &cursor, &dm), v >= 6);
        hr_writer_free(&w);
    }
    /* A version this binary does not claim: refused, not half read. */
    uint16_t refused[] = {0, HANDOVER_REC_VERSION + 1, 0xFFFF};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        write_full(&w, refused[i]);
        assert_int_equal(handover_rec_size(w.buf, w.len, NULL), (long)w.len);
        assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), -1);
        assert_string_equal(why, "a record version this binary does not read");
        hr_writer_free(&w);
    }
}

/* A room's told count and size (version 3) in a version 2 record: refused as unknown there. */
static void told_fields_need_version_3(void **state)
{
    (void)state;
    for (int field = 0; field < 2; field++) {
        struct hr_writer w = {0};
        hr_begin(&w, 2);
        hr_u64(&w, HR_TRANSPORT, HR_TELNET);
        hr_open(&w, HR_ROOM);
        hr_str(&w, HR_RM_NAME, "general");
        hr_u64(&w, field ? HR_RM_TOLD_LARGE : HR_RM_TOLD_COUNT, 1);
        hr_close(&w);
        hr_end(&w);
        struct handover_rec r;
        assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), -1);
        hr_writer_free(&w);
    }
    /* Out of range in version 3: a count beyond 32 bits, a large that is not a bool. */
    for (int field = 0; field < 2; field++) {
        struct hr_writer w = {0};
        hr_begin(&w, 3);
        hr_u64(&w, HR_TRANSPORT, HR_TELNET);
        hr_open(&w, HR_ROOM);
        hr_str(&w, HR_RM_NAME, "general");
        if (field)
            hr_u64(&w, HR_RM_TOLD_LARGE, 2);
        else
            hr_u64(&w, HR_RM_TOLD_COUNT, (uint64_t)UINT32_MAX + 1);
        hr_close(&w);
        hr_end(&w);
        struct handover_rec r;
        assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), -1);
        hr_writer_free(&w);
    }
}

/* A record of `version` with n waiting telnet lines (the i-th "line i", or len bytes when len). */
static void write_waiting(struct hr_writer *w, uint16_t version, size_t n, size_t len)
{
    static uint8_t big[HR_TN_LINE_MAX + 1];
    hr_begin(w, version);
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    for (size_t i = 0; i < n; i++) {
        char line[32];
        int k = snprintf(line, sizeof line, "line %zu", i);
        if (len)
            hr_put(w, HR_TN_WAITING, big, len);
        else
            hr_put(w, HR_TN_WAITING, line, (size_t)k);
    }
    hr_end(w);
}

/* Waiting telnet lines (version 4): read back in order; refused in version 3, and beyond bounds. */
static void waiting_lines(void **state)
{
    (void)state;
    struct hr_writer w = {0};
    struct handover_rec r;
    write_waiting(&w, 4, 3, 0);
    assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), 0);
    assert_int_equal(r.tn_n_waiting, 3);
    struct hr_bytes b;
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "line %d", i);
        assert_true(handover_rec_waiting(&r, &at, &b));
        assert_int_equal(b.n, strlen(want));
        assert_memory_equal(b.p, want, b.n);
    }
    assert_false(handover_rec_waiting(&r, &at, &b));
    hr_writer_free(&w);

    /* An empty line is a line (a register prompt's answer may be one). */
    struct hr_writer e = {0};
    hr_begin(&e, 4);
    hr_u64(&e, HR_TRANSPORT, HR_TELNET);
    hr_put(&e, HR_TN_WAITING, "", 0);
    hr_end(&e);
    assert_int_equal(handover_rec_read(e.buf, e.len, &r, &why), 0);
    assert_int_equal(r.tn_n_waiting, 1);
    hr_writer_free(&e);

    struct {
        uint16_t version;
        size_t n, len;
    } refused[] = {
        {3, 1, 0},                     /* version 3 has no waiting lines */
        {4, 1, HR_TN_LINE_MAX + 1},    /* longer than a line */
        {4, HR_TN_WAITING_MAX + 1, 0}, /* more than a connection may have */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        struct hr_writer x = {0};
        write_waiting(&x, refused[i].version, refused[i].n, refused[i].len);
        assert_int_equal(handover_rec_read(x.buf, x.len, &r, &why), -1);
        hr_writer_free(&x);
    }
    struct hr_writer m = {0};
    write_waiting(&m, 4, HR_TN_WAITING_MAX, HR_TN_LINE_MAX);
    assert_int_equal(handover_rec_read(m.buf, m.len, &r, &why), 0);
    assert_int_equal(r.tn_n_waiting, HR_TN_WAITING_MAX);
    hr_writer_free(&m);
}

/* Reads a record of the fields written by fill, and returns handover_rec_read's result. */
static int read_one(void (*fill)(struct hr_writer *w))
{
    struct hr_writer w = {0};
    hr_begin(&w, HANDOVER_REC_VERSION);
    fill(&w);
    hr_end(&w);
    struct handover_rec r;
    int rc = handover_rec_read(w.buf, w.len, &r, &why);
    hr_writer_free(&w);
    return rc;
}

static void fill_unknown(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_HTTP);
    hr_u64(w, 999, 1);
}
static void fill_no_transport(struct hr_writer *w)
{
    hr_u64(w, HR_PEER_KEY, 1);
}
static void fill_bad_bool(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_HTTP);
    hr_u64(w, HR_PEER_COUNTED, 2);
}
static void fill_bad_transport(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, 4);
}
static void fill_long_name(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    hr_str(w, HR_USER, "a_name_that_is_longer_than_32_characters");
}
static void fill_name_nul(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    hr_put(w, HR_TN_CURRENT, "gen\0ral", 7);
}
static void fill_empty_range(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    hr_open(w, HR_BACKLOG);
    hr_str(w, HR_BL_ROOM, "lobby");
    hr_u64(w, HR_BL_AFTER, 10);
    hr_u64(w, HR_BL_UNTIL, 10);
    hr_close(w);
}
static void fill_msg_and_range(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    hr_open(w, HR_BACKLOG);
    hr_put(w, HR_BL_MSG, "x", 1);
    hr_str(w, HR_BL_ROOM, "lobby");
    hr_u64(w, HR_BL_UNTIL, 10);
    hr_close(w);
}
static void fill_room_unnamed(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_TELNET);
    hr_open(w, HR_ROOM);
    hr_u64(w, HR_RM_LAST_SEQ, 1);
    hr_close(w);
}
static void fill_logged_in_nameless(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_WEBSOCKET);
    hr_u64(w, HR_CHAT, 1);
    hr_u64(w, HR_LOGGED_IN, 1);
}
static void fill_attempts_short(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_WEBSOCKET);
    hr_put(w, HR_ATTEMPTS, "\1\0", 2);
}
static void fill_bad_window(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_WEBSOCKET);
    hr_u64(w, HR_WS_DEFLATE_BITS, 7);
}
static void fill_ok(struct hr_writer *w)
{
    hr_u64(w, HR_TRANSPORT, HR_HTTP);
}

static void refusals(void **state)
{
    (void)state;
    assert_int_equal(read_one(fill_ok), 0);
    void (*bad[])(struct hr_writer *) = {
        fill_unknown,      fill_no_transport,       fill_bad_bool,       fill_bad_transport,
        fill_long_name,    fill_name_nul,           fill_empty_range,    fill_msg_and_range,
        fill_room_unnamed, fill_logged_in_nameless, fill_attempts_short, fill_bad_window,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(read_one(bad[i]), -1);
        assert_non_null(why);
    }
}

/* A password check in flight: version 2 on; a version 1 record with one is refused. */
/* The react bucket (version 4) and the search bucket (version 5): read back as written; refused
 * in a record of the version before and at any other length. */
static void buckets(void **state)
{
    (void)state;
    uint8_t bytes[16 + 2 * HR_ATTEMPT_SECONDS] = {0};
    bytes[0] = 0x40; /* 0x4240 millionths of a token ... */
    bytes[1] = 0x42;
    bytes[8] = 250; /* ... refilled 250 ms ago */
    bytes[16] = 7;  /* 7 attempts this second, 256 two seconds ago */
    bytes[16 + 5] = 1;
    static const struct {
        unsigned tag;
        uint16_t since;
    } kinds[] = {{HR_REACT, 4}, {HR_SEARCH, 5}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (uint16_t version = kinds[k].since - 1; version <= HANDOVER_REC_VERSION; version++) {
            for (size_t len = sizeof bytes - 1; len <= sizeof bytes + 1; len++) {
                struct hr_writer w = {0};
                struct handover_rec r;
                hr_begin(&w, version);
                hr_u64(&w, HR_TRANSPORT, HR_WEBSOCKET);
                hr_u64(&w, HR_CHAT, 1);
                uint8_t longer[sizeof bytes + 1] = {0};
                memcpy(longer, bytes, sizeof bytes);
                hr_put(&w, kinds[k].tag, longer, len);
                hr_end(&w);
                int rc = handover_rec_read(w.buf, w.len, &r, &why);
                if (version < kinds[k].since || len != sizeof bytes) {
                    assert_int_equal(rc, -1);
                } else {
                    assert_int_equal(rc, 0);
                    bool react = kinds[k].tag == HR_REACT;
                    assert_true(react ? r.has_react : r.has_search);
                    assert_false(react ? r.has_search : r.has_react);
                    assert_int_equal(react ? r.react_tokens_micro : r.search_tokens_micro, 0x4240);
                    assert_int_equal(react ? r.react_refill_age_ms : r.search_refill_age_ms, 250);
                    const uint16_t *a = react ? r.react_attempts : r.search_attempts;
                    assert_int_equal(a[0], 7);
                    assert_int_equal(a[1], 0);
                    assert_int_equal(a[2], 256);
                }
                hr_writer_free(&w);
            }
        }
    }
}

/* The user's status (version 5): away and text read back; refused in a version 4 record, empty,
 * or with a first byte other than 0 and 1. */
static void status_field(void **state)
{
    (void)state;
    static const struct {
        uint16_t version;
        const char *bytes;
        size_t len;
        int rc;
    } cases[] = {
        {5, "\1lunch", 6, 0}, {5, "\0", 1, 0},   {4, "\1lunch", 6, -1},
        {5, "", 0, -1},       {5, "\2x", 2, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hr_writer w = {0};
        struct handover_rec r;
        hr_begin(&w, cases[i].version);
        hr_u64(&w, HR_TRANSPORT, HR_WEBSOCKET);
        hr_u64(&w, HR_CHAT, 1);
        hr_put(&w, HR_STATUS, cases[i].bytes, cases[i].len);
        hr_end(&w);
        assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_true(r.has_status);
            assert_int_equal(r.status_away, cases[i].bytes[0] == 1);
            assert_int_equal(r.status_text.n, cases[i].len - 1);
            assert_memory_equal(r.status_text.p, cases[i].bytes + 1, cases[i].len - 1);
        }
        hr_writer_free(&w);
    }
}

/* A record of `version` with n dm room places, each named name (NULL: none) at seq (NULL: none). */
static int read_dms(uint16_t version, size_t n, const char *name, const uint64_t *seq)
{
    struct hr_writer w = {0};
    struct handover_rec r;
    hr_begin(&w, version);
    hr_u64(&w, HR_TRANSPORT, HR_WEBSOCKET);
    hr_u64(&w, HR_CHAT, 1);
    for (size_t i = 0; i < n; i++) {
        hr_open(&w, HR_DM);
        if (name)
            hr_str(&w, HR_DM_NAME, name);
        if (seq)
            hr_u64(&w, HR_DM_LAST_SEQ, *seq);
        hr_close(&w);
    }
    hr_end(&w);
    int rc = handover_rec_read(w.buf, w.len, &r, &why);
    if (rc == 0)
        assert_int_equal(r.n_dms, n);
    hr_writer_free(&w);
    return rc;
}

/* Dm room places (version 6): up to HR_DMS_MAX read; refused in a version 5 record, past the
 * bound, without a name or a seq, at seq 0, with a name longer than a room's, or with a field
 * a place does not have. */
static void dm_places(void **state)
{
    (void)state;
    const uint64_t seq = 7, zero = 0;
    char long_name[HR_ROOM_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(read_dms(6, 1, "dm:a:b", &seq), 0);
    assert_int_equal(read_dms(6, HR_DMS_MAX, "dm:a:b", &seq), 0);
    assert_int_equal(read_dms(5, 1, "dm:a:b", &seq), -1);
    assert_string_equal(why, "a field this version does not know");
    assert_int_equal(read_dms(6, HR_DMS_MAX + 1, "dm:a:b", &seq), -1);
    assert_int_equal(read_dms(6, 1, NULL, &seq), -1);
    assert_int_equal(read_dms(6, 1, "dm:a:b", NULL), -1);
    assert_int_equal(read_dms(6, 1, "dm:a:b", &zero), -1);
    assert_int_equal(read_dms(6, 1, "", &seq), -1);
    assert_int_equal(read_dms(6, 1, long_name, &seq), -1);
    struct hr_writer w = {0};
    struct handover_rec r;
    hr_begin(&w, 6);
    hr_u64(&w, HR_TRANSPORT, HR_WEBSOCKET);
    hr_open(&w, HR_DM);
    hr_str(&w, HR_DM_NAME, "dm:a:b");
    hr_u64(&w, HR_DM_LAST_SEQ, 3);
    hr_u64(&w, HR_DM_LAST_SEQ + 1, 1);
    hr_close(&w);
    hr_end(&w);
    assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), -1);
    hr_writer_free(&w);
}

static void write_pw(struct hr_writer *w, uint16_t version, const char *password)
{
    hr_begin(w, version);
    hr_u64(w, HR_TRANSPORT, HR_WEBSOCKET);
    hr_u64(w, HR_CHAT, 1);
    hr_u64(w, HR_LOGIN_PENDING, 1);
    hr_u64(w, HR_AUTH_PENDING, 1);
    hr_open(w, HR_PW_OP);
    hr_u64(w, HR_PO_KIND, HR_PW_LOGIN);
    hr_str(w, HR_PO_ID, "\"req-1\"");
    hr_str(w, HR_PO_NAME, "Alice");
    hr_str(w, HR_PO_PASSWORD, password);
    hr_close(w);
    hr_end(w);
}

static void password_check(void **state)
{
    (void)state;
    struct hr_writer w = {0};
    struct handover_rec r;
    write_pw(&w, 2, "correct-horse");
    assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), 0);
    assert_true(r.pw.present);
    assert_int_equal(r.pw.kind, HR_PW_LOGIN);
    assert_memory_equal(r.pw.id_json.p, "\"req-1\"", 7);
    assert_memory_equal(r.pw.password.p, "correct-horse", 13);
    assert_true(r.login_pending && r.auth_pending);
    hr_writer_free(&w);
    write_pw(&w, 1, "correct-horse");
    assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), -1);
    assert_string_equal(why, "a field this version does not know");
    hr_writer_free(&w);
    char longer[HR_PASSWORD_MAX + 2];
    memset(longer, 'p', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    write_pw(&w, 2, longer);
    assert_int_equal(handover_rec_read(w.buf, w.len, &r, &why), -1);
    hr_writer_free(&w);
}

static void framing(void **state)
{
    (void)state;
    struct hr_writer w = {0};
    write_full(&w, HANDOVER_REC_VERSION);
    struct handover_rec r;
    /* Every prefix is incomplete, and not a record. */
    for (size_t n = 0; n < w.len; n++) {
        assert_true(handover_rec_size(w.buf, n, NULL) <= 0);
        assert_int_equal(handover_rec_read(w.buf, n, &r, &why), -1);
    }
    /* One byte too many, a flag, the magic. */
    uint8_t *more = malloc(w.len + 1);
    memcpy(more, w.buf, w.len);
    more[w.len] = 0;
    assert_int_equal(handover_rec_read(more, w.len + 1, &r, &why), -1);
    free(more);
    w.buf[6] = 1;
    assert_int_equal(handover_rec_size(w.buf, w.len, NULL), -1);
    w.buf[6] = 0;
    w.buf[0] ^= 0xFF;
    assert_int_equal(handover_rec_size(w.buf, w.len, NULL), -1);
    hr_writer_free(&w);
    /* A body length beyond the maximum is refused before anything waits for it. */
    uint8_t huge[HANDOVER_REC_HEADER] = {'P', 'R', 'H', 'R', 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F};
    assert_int_equal(handover_rec_size(huge, sizeof huge, NULL), -1);
    /* A field whose length runs past the body, and a varint of more than 64 bits. */
    uint8_t past[] = {'P', 'R', 'H', 'R', 1, 0, 0, 0, 3, 0, 0, 0, HR_TRANSPORT, 5, 1};
    assert_int_equal(handover_rec_read(past, sizeof past, &r, &why), -1);
    uint8_t wide[] = {'P',  'R',  'H',  'R',         1,    0,    0,    0,    13,
                      0,    0,    0,    HR_PEER_KEY, 11,   0xFF, 0xFF, 0xFF, 0xFF,
                      0xFF, 0xFF, 0xFF, 0xFF,        0xFF, 0xFF, 0x01};
    assert_int_equal(handover_rec_read(wide, sizeof wide, &r, &why), -1);
}

/* A client's masked text frame of payload p[0..n) into out; returns its length. */
static size_t client_frame(uint8_t *out, uint8_t b0, const char *p, size_t n)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    size_t h = 0;
    out[h++] = b0;
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = (uint8_t)p[i] ^ mask[i % 4];
    return h + n;
}

/* Every state the reader rests in between two reads, whatever the cut, is one ws_reader_valid
 * accepts; one that differs from it in a field that matters is not. */
static void reader_states(void **state)
{
    (void)state;
    uint8_t stream[1024];
    size_t n = 0;
    char text[300];
    memset(text, 'a', sizeof text);
    memcpy(text, "h\xC3\xA9llo", 6); /* a two-byte character, to be cut in the middle */
    n += client_frame(stream + n, 0x01, text, 200);              /* text, not final */
    n += client_frame(stream + n, 0x89, "ping", 4);              /* a ping between fragments */
    n += client_frame(stream + n, 0x80, text + 200, 100);        /* the last fragment */
    n += client_frame(stream + n, 0x81, "\xC3\xA9t\xC3\xA9", 6); /* a whole message */
    size_t checked = 0;
    for (size_t cut = 0; cut <= n; cut++) {
        struct ws_reader r;
        ws_reader_init(&r, 1 << 16);
        r.spill = &spill; /* the caller lends the reader its spill */
        uint8_t copy[sizeof stream];
        memcpy(copy, stream, n);
        size_t pos = 0;
        while (pos < cut) {
            struct ws_event ev;
            pos += ws_reader_feed(&r, copy + pos, cut - pos, &ev);
            assert_int_not_equal(ev.type, WS_EV_ERROR);
            if (ev.type == WS_EV_NONE)
                break;
        }
        /* What a record carries of a control frame under way: its payload so far. */
        if (r.stage == 1 && (r.opcode & 8))
            r.ctl_len = (uint8_t)r.frame_done;
        assert_true(ws_reader_valid(&r));
        checked++;
        struct ws_reader bad = r;
        bad.failed = true;
        assert_false(ws_reader_valid(&bad));
        bad = r;
        bad.stage = 2;
        assert_false(ws_reader_valid(&bad));
        if (r.hdr_len > 0) {
            bad = r;
            struct ws_reader_spill bad_spill = *r.spill;
            bad.spill = &bad_spill;
            bad_spill.hdr[0] ^= 0x40; /* RSV1 without permessage-deflate */
            assert_false(ws_reader_valid(&bad));
        }
        if (r.stage == 1) {
            bad = r;
            bad.frame_done = bad.frame_len;
            assert_false(ws_reader_valid(&bad));
            bad = r;
            bad.mask[0] ^= 1;
            assert_false(ws_reader_valid(&bad));
        }
        if (r.msg_opcode) {
            bad = r;
            bad.msg_len = (1 << 16) + 1;
            assert_false(ws_reader_valid(&bad));
        }
    }
    assert_int_equal(checked, n + 1);
    /* A UTF-8 state that is not one. */
    struct ws_reader r;
    ws_reader_init(&r, 100);
    r.spill = &spill; /* the caller lends the reader its spill */
    assert_true(ws_reader_valid(&r));
    r.utf8_state = 77;
    assert_false(ws_reader_valid(&r));
    assert_true(utf8_state_valid(UTF8_ACCEPT));
    assert_false(utf8_state_valid(77));
}

/* With permessage-deflate, RSV1 on a message's first header byte marks it compressed before the
 * header is whole: every cut of a compressed message (inside a header, right after it) is still a
 * state ws_reader_valid accepts, so a live upgrade moves the connection instead of refusing it. */
static void compressed_reader_states(void **state)
{
    (void)state;
    uint8_t stream[1024];
    size_t n = 0;
    char data[300];
    memset(data, 0x5A, sizeof data); /* the reader does not inflate: any bytes will do */
    n += client_frame(stream + n, 0xC1, data, 200);     /* compressed text, one long frame */
    n += client_frame(stream + n, 0x41, data, 10);      /* compressed, not final */
    n += client_frame(stream + n, 0x89, "ping", 4);     /* a ping between fragments */
    n += client_frame(stream + n, 0x80, data + 10, 20); /* its last fragment */
    n += client_frame(stream + n, 0x81, "plain", 5);    /* then one not compressed */
    for (size_t cut = 0; cut <= n; cut++) {
        struct ws_reader r;
        ws_reader_init(&r, 1 << 16);
        ws_reader_use_deflate(&r);
        r.spill = &spill; /* the caller lends the reader its spill */
        uint8_t copy[sizeof stream];
        memcpy(copy, stream, n);
        size_t pos = 0;
        while (pos < cut) {
            struct ws_event ev;
            pos += ws_reader_feed(&r, copy + pos, cut - pos, &ev);
            assert_int_not_equal(ev.type, WS_EV_ERROR);
            if (ev.type == WS_EV_NONE)
                break;
        }
        if (r.stage == 1 && (r.opcode & 8))
            r.ctl_len = (uint8_t)r.frame_done;
        assert_true(ws_reader_valid(&r));
        uint8_t op = r.spill->hdr[0] & 0x0F;
        if (r.stage == 0 && r.hdr_len > 0 && (op == 0x1 || op == 0x2)) {
            struct ws_reader bad = r;
            bad.msg_compressed = !bad.msg_compressed; /* a mark the header does not carry */
            assert_false(ws_reader_valid(&bad));
        }
    }
}

static void telnet_states(void **state)
{
    (void)state;
    static const uint8_t stream[] = "ab\r\n\xFF\xFB\x01line\xFF\xFA\x18xyz\xFF\xF0tail";
    uint8_t buf[64];
    for (size_t cut = 0; cut <= sizeof stream - 1; cut++) {
        struct telnet_parser p;
        telnet_parser_init(&p, buf, sizeof buf);
        size_t pos = 0;
        while (pos < cut) {
            struct telnet_event ev;
            pos += telnet_parse(&p, stream + pos, cut - pos, &ev);
        }
        assert_true(telnet_parser_valid(&p));
        struct telnet_parser bad = p;
        bad.state = 9;
        assert_false(telnet_parser_valid(&bad));
        bad = p;
        bad.len = sizeof buf + 1;
        assert_false(telnet_parser_valid(&bad));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(versions),
        cmocka_unit_test(refusals),
        cmocka_unit_test(password_check),
        cmocka_unit_test(framing),
        cmocka_unit_test(reader_states),
        cmocka_unit_test(compressed_reader_states),
        cmocka_unit_test(telnet_states),
        cmocka_unit_test(told_fields_need_version_3),
        cmocka_unit_test(waiting_lines),
        cmocka_unit_test(status_field),
        cmocka_unit_test(dm_places),
        cmocka_unit_test(buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
