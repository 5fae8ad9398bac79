/* test_ws_frame: unit tests of the WebSocket frame reader and writer, split at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "random_cuts.h"
#include "ws_frame.h"

#define MAX_MSG (1u << 20)

/* ---- building client frames ---- */

enum len_form { LEN_MINIMAL, LEN_16, LEN_64 };

/* The spill every reader of these tests borrows (a connection lends one only mid-frame). */
static struct ws_reader_spill spill;

static const uint8_t mask_a[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Writes a client frame with header byte b0 to out and returns its size. */
static size_t frame_ex(uint8_t *out, uint8_t b0, const void *payload, size_t n, enum len_form form,
                       bool masked, const uint8_t mask[4])
{
    size_t h = 0;
    out[h++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (form == LEN_MINIMAL && n <= 125) {
        out[h++] = (uint8_t)(m | n);
    } else if (form != LEN_64 && n <= 0xFFFF) {
        out[h++] = m | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (masked) {
        memcpy(out + h, mask, 4);
        h += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < n; i++)
        out[h + i] = masked ? (uint8_t)(p[i] ^ mask[i & 3]) : p[i];
    return h + n;
}

static size_t frame(uint8_t *out, bool fin, uint8_t op, const void *payload, size_t n)
{
    return frame_ex(out, (uint8_t)((fin ? 0x80 : 0) | op), payload, n, LEN_MINIMAL, true, mask_a);
}

static size_t frame_str(uint8_t *out, bool fin, uint8_t op, const char *s)
{
    return frame(out, fin, op, s, strlen(s));
}

static size_t close_frame(uint8_t *out, uint16_t code, const char *reason)
{
    uint8_t p[125];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, strlen(reason));
    return frame(out, true, WS_OP_CLOSE, p, 2 + strlen(reason));
}

/* ---- collecting events into a transcript ---- */

/*
 * A transcript is the sequence of events as bytes: each whole data message
 * as "T[...]" or "B[...]" ("t[...]" or "b[...]" when compressed), pings "P[...]", pongs "O[...]",
 * closes "C<code>[reason]", errors "E<code>". Feeding the same input split in any way must give the
 * same transcript.
 */
struct transcript {
    uint8_t *bytes;
    size_t len, cap;
    uint8_t *msg; /* the data message being reassembled */
    size_t msg_len, msg_cap;
    uint8_t msg_op;
    bool msg_compressed;
    size_t data_events;
    bool failed;
    uint16_t error_code;
    const char *error_reason;
};

static void grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    *p = realloc(*p, c);
    assert_non_null(*p);
    *cap = c;
}

static void put(struct transcript *t, const void *p, size_t n)
{
    grow(&t->bytes, &t->cap, t->len + n);
    if (n > 0)
        memcpy(t->bytes + t->len, p, n);
    t->len += n;
}

static void put_str(struct transcript *t, const char *s)
{
    put(t, s, strlen(s));
}

static void transcript_free(struct transcript *t)
{
    free(t->bytes);
    free(t->msg);
    memset(t, 0, sizeof *t);
}

static void record(struct transcript *t, const struct ws_event *ev)
{
    char num[16];
    switch (ev->type) {
    case WS_EV_NONE:
        break;
    case WS_EV_DATA:
        t->data_events++;
        assert_true(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        if (t->msg_op == 0) {
            t->msg_op = ev->opcode;
            t->msg_compressed = ev->compressed;
        }
        assert_int_equal(ev->opcode, t->msg_op);
        assert_int_equal(ev->compressed, t->msg_compressed); /* the first frame decides */
        grow(&t->msg, &t->msg_cap, t->msg_len + ev->len);
        if (ev->len > 0)
            memcpy(t->msg + t->msg_len, ev->data, ev->len);
        t->msg_len += ev->len;
        if (ev->last) {
            if (ev->compressed)
                put_str(t, ev->opcode == WS_OP_TEXT ? "t[" : "b[");
            else
                put_str(t, ev->opcode == WS_OP_TEXT ? "T[" : "B[");
            put(t, t->msg, t->msg_len);
            put_str(t, "]");
            t->msg_len = 0;
            t->msg_op = 0;
        }
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        put_str(t, ev->type == WS_EV_PING ? "P[" : "O[");
        put(t, ev->data, ev->len);
        put_str(t, "]");
        break;
    case WS_EV_CLOSE:
        snprintf(num, sizeof num, "C%u[", (unsigned)ev->close_code);
        put_str(t, num);
        put(t, ev->data, ev->len);
        put_str(t, "]");
        break;
    case WS_EV_ERROR:
        snprintf(num, sizeof num, "E%u", (unsigned)ev->close_code);
        put_str(t, num);
        assert_non_null(ev->reason);
        assert_true(strlen(ev->reason) > 0 && strlen(ev->reason) <= 123);
        t->failed = true;
        t->error_code = ev->close_code;
        t->error_reason = ev->reason;
        break;
    }
}

/*
 * Feeds p[0..n) (modified in place) to r in chunks ending at cuts[0..ncuts)
 * and then at n, checking the reader's contract on every call. Returns the
 * offset at which an error was reported, or n.
 */
static size_t feed_cuts(struct ws_reader *r, uint8_t *p, size_t n, const size_t *cuts, size_t ncuts,
                        struct transcript *t)
{
    size_t start = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        while (start < end) {
            struct ws_event ev;
            size_t left = end - start;
            size_t used = ws_reader_feed(r, p + start, left, &ev);
            assert_true(used <= left);
            if (ev.type == WS_EV_NONE)
                assert_int_equal(used, left); /* no event means all input was taken */
            else if (ev.type != WS_EV_ERROR)
                assert_true(used > 0);
            if (ev.type == WS_EV_DATA && ev.len > 0) {
                assert_true(ev.data >= p + start);
                assert_true(ev.data + ev.len <= p + start + used);
            }
            record(t, &ev);
            start += used;
            if (ev.type == WS_EV_ERROR) {
                /* Failed for good: nothing more is consumed, the same error comes back. */
                struct ws_event again;
                assert_int_equal(ws_reader_feed(r, p + start, n - start, &again), 0);
                assert_int_equal(again.type, WS_EV_ERROR);
                assert_int_equal(again.close_code, ev.close_code);
                assert_string_equal(again.reason, ev.reason);
                return start;
            }
        }
        start = end;
    }
    /* No input is no event. */
    struct ws_event ev;
    assert_int_equal(ws_reader_feed(r, p + n, 0, &ev), 0);
    assert_int_equal(ev.type, WS_EV_NONE);
    return n;
}

/* Readers made by run() have permessage-deflate negotiated while this is set. */
static bool deflate_on;

/* Feeds a fresh copy of in[0..n) to a new reader, split at cuts; fills t. */
static size_t run(const uint8_t *in, size_t n, uint64_t max, const size_t *cuts, size_t ncuts,
                  struct transcript *t)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    assert_non_null(copy);
    memcpy(copy, in, n);
    struct ws_reader r;
    ws_reader_init(&r, max);
    r.spill = &spill; /* the caller lends the reader its spill */
    if (deflate_on)
        ws_reader_use_deflate(&r);
    size_t at = feed_cuts(&r, copy, n, cuts, ncuts, t);
    free(copy);
    return at;
}

static void run_whole(const uint8_t *in, size_t n, struct transcript *t)
{
    run(in, n, MAX_MSG, NULL, 0, t);
}

/* Feeds one byte per call. */
static size_t run_bytewise(const uint8_t *in, size_t n, uint64_t max, struct transcript *t)
{
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    size_t at = run(in, n, max, cuts, n, t);
    free(cuts);
    return at;
}

static void assert_transcript(const struct transcript *t, const void *want, size_t want_len)
{
    if (t->len != want_len || memcmp(t->bytes, want, want_len) != 0)
        fail_msg("transcript \"%.*s\" want \"%.*s\"", (int)t->len, (const char *)t->bytes,
                 (int)want_len, (const char *)want);
}

#define ASSERT_TRANSCRIPT(t, lit) assert_transcript((t), (lit), sizeof(lit) - 1)

/* ---- tests ---- */

static void test_rfc_example_frames(void **state)
{
    (void)state;
    /* RFC 6455 5.7: a single-frame masked text message containing "Hello". */
    uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct transcript t = {0};
    run_whole(hello, sizeof hello, &t);
    ASSERT_TRANSCRIPT(&t, "T[Hello]");
    assert_int_equal(t.data_events, 1);
    transcript_free(&t);

    /* The same as a masked ping, and the fragmented "Hel" + "lo". */
    uint8_t buf[64];
    size_t n = frame_str(buf, true, WS_OP_PING, "Hello");
    n += frame_str(buf + n, false, WS_OP_TEXT, "Hel");
    n += frame_str(buf + n, true, WS_OP_CONT, "lo");
    run_whole(buf, n, &t);
    ASSERT_TRANSCRIPT(&t, "P[Hello]T[Hello]");
    transcript_free(&t);
}

/* One stream with every kind of frame, split into three reads at every pair of points. */
static void test_every_split_point(void **state)
{
    (void)state;
    uint8_t in[512];
    size_t n = 0;
    static const uint8_t bin[] = {0x00, 0x01, 0xff, 0xc0};
    n += frame_str(in + n, false, WS_OP_TEXT, "Hel");
    n += frame_str(in + n, true, WS_OP_PING, "p1");
    n += frame_str(in + n, false, WS_OP_CONT, "lo \xe2\x82"); /* € split across fragments */
    n += frame_str(in + n, true, WS_OP_PONG, "");
    n += frame_str(in + n, false, WS_OP_CONT, "");
    n += frame_str(in + n, true, WS_OP_CONT, "\xac!");
    n += frame(in + n, true, WS_OP_BINARY, bin, sizeof bin);
    n += frame_str(in + n, true, WS_OP_TEXT, "");
    n += frame_str(in + n, false, WS_OP_TEXT, "");
    n += frame_str(in + n, true, WS_OP_CONT, "");
    n += frame_ex(in + n, 0x81, "sixteen", 7, LEN_16, true, (const uint8_t[]){1, 2, 3, 4});
    n += frame_ex(in + n, 0x82, "sixty-four", 10, LEN_64, true, (const uint8_t[]){9, 0, 0, 7});
    n += close_frame(in + n, 1000, "bye");
    static const char want[] = "P[p1]O[]T[Hello \xe2\x82\xac!]B[\x00\x01\xff\xc0]T[]T[]"
                               "T[sixteen]B[sixty-four]C1000[bye]";

    struct transcript t = {0};
    run_whole(in, n, &t);
    ASSERT_TRANSCRIPT(&t, want);
    transcript_free(&t);

    run_bytewise(in, n, MAX_MSG, &t);
    ASSERT_TRANSCRIPT(&t, want);
    transcript_free(&t);

    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            size_t cuts[2] = {i, j};
            run(in, n, MAX_MSG, cuts, 2, &t);
            ASSERT_TRANSCRIPT(&t, want);
            transcript_free(&t);
        }
    }
}

static void test_length_forms(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70001};
    uint8_t *payload = malloc(70001);
    uint8_t *in = malloc(70001 + 14);
    for (size_t i = 0; i < 70001; i++)
        payload[i] = (uint8_t)(i * 31 + 7);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int form = LEN_MINIMAL; form <= LEN_64; form++) {
            size_t len = sizes[s];
            size_t n = frame_ex(in, 0x82, payload, len, (enum len_form)form, true, mask_a);
            size_t want_hdr = form == LEN_64 || len > 0xFFFF ? 14
                              : form == LEN_16 || len > 125  ? 8
                                                             : 6;
            assert_int_equal(n, want_hdr + len);
            struct transcript t = {0};
            size_t cuts[2] = {3, n / 2};
            run(in, n, MAX_MSG, cuts, 2, &t);
            assert_int_equal(t.len, len + 3);
            assert_memory_equal(t.bytes, "B[", 2);
            if (len > 0)
                assert_memory_equal(t.bytes + 2, payload, len);
            transcript_free(&t);
        }
    }
    free(payload);
    free(in);
}

static void test_empty_messages(void **state)
{
    (void)state;
    uint8_t in[64];
    struct transcript t = {0};
    size_t n = frame_str(in, true, WS_OP_TEXT, "");
    run_whole(in, n, &t);
    ASSERT_TRANSCRIPT(&t, "T[]");
    assert_int_equal(t.data_events, 1);
    transcript_free(&t);

    n = frame_str(in, true, WS_OP_BINARY, "");
    run_bytewise(in, n, MAX_MSG, &t);
    ASSERT_TRANSCRIPT(&t, "B[]");
    assert_int_equal(t.data_events, 1);
    transcript_free(&t);

    /* Empty fragments: one event, the final one. */
    n = frame_str(in, false, WS_OP_TEXT, "");
    n += frame_str(in + n, false, WS_OP_CONT, "");
    n += frame_str(in + n, true, WS_OP_CONT, "");
    run_whole(in, n, &t);
    ASSERT_TRANSCRIPT(&t, "T[]");
    assert_int_equal(t.data_events, 1);
    transcript_free(&t);

    /* A final empty fragment after data still ends the message with an event. */
    n = frame_str(in, false, WS_OP_TEXT, "ab");
    n += frame_str(in + n, true, WS_OP_CONT, "");
    run_whole(in, n, &t);
    ASSERT_TRANSCRIPT(&t, "T[ab]");
    assert_int_equal(t.data_events, 2);
    transcript_free(&t);
}

/* Payload is handed out as soon as it arrives, unmasked in the caller's buffer. */
static void test_data_as_it_arrives(void **state)
{
    (void)state;
    char text[100];
    memset(text, 'q', sizeof text);
    uint8_t in[128];
    size_t n = frame(in, true, WS_OP_TEXT, text, sizeof text);
    assert_int_equal(n, 6 + 100);
    struct ws_reader r;
    ws_reader_init(&r, MAX_MSG);
    r.spill = &spill; /* the caller lends the reader its spill */
    struct ws_event ev;
    assert_int_equal(ws_reader_feed(&r, in, 4, &ev), 4);
    assert_int_equal(ev.type, WS_EV_NONE);
    assert_int_equal(ws_reader_feed(&r, in + 4, 2 + 10, &ev), 12);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_false(ev.last);
    assert_ptr_equal(ev.data, in + 6);
    assert_int_equal(ev.len, 10);
    assert_memory_equal(ev.data, text, 10);
    assert_int_equal(ws_reader_feed(&r, in + 16, 90, &ev), 90);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_true(ev.last);
    assert_ptr_equal(ev.data, in + 16);
    assert_int_equal(ev.len, 90);
    assert_memory_equal(ev.data, text + 10, 90);

    /* Two frames in one read give two events, each consuming its own bytes. */
    n = frame_str(in, true, WS_OP_TEXT, "one");
    size_t n2 = frame_str(in + n, true, WS_OP_BINARY, "two");
    ws_reader_init(&r, MAX_MSG);
    r.spill = &spill; /* the caller lends the reader its spill */
    assert_int_equal(ws_reader_feed(&r, in, n + n2, &ev), n);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_memory_equal(ev.data, "one", 3);
    assert_int_equal(ws_reader_feed(&r, in + n, n2, &ev), n2);
    assert_int_equal(ev.opcode, WS_OP_BINARY);
    assert_memory_equal(ev.data, "two", 3);
}

/* The masking key must rotate correctly whatever the read sizes. */
static void test_unmask_any_offset(void **state)
{
    (void)state;
    uint8_t payload[203];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i ^ 0x5a);
    uint8_t in[256];
    size_t n = frame_ex(in, 0x82, payload, sizeof payload, LEN_MINIMAL, true,
                        (const uint8_t[]){0xde, 0xad, 0xbe, 0xef});
    for (size_t step = 1; step <= 19; step++) {
        size_t cuts[256], nc = 0;
        for (size_t c = step; c < n; c += step)
            cuts[nc++] = c;
        struct transcript t = {0};
        run(in, n, MAX_MSG, cuts, nc, &t);
        assert_int_equal(t.len, sizeof payload + 3);
        assert_memory_equal(t.bytes + 2, payload, sizeof payload);
        transcript_free(&t);
    }
}

static void test_interleaved_control_frames(void **state)
{
    (void)state;
    uint8_t in[1024];
    size_t n = 0;
    uint8_t ping125[125];
    memset(ping125, 'x', sizeof ping125);
    n += frame_str(in + n, false, WS_OP_BINARY, "a");
    n += frame(in + n, true, WS_OP_PING, ping125, sizeof ping125);
    n += frame_str(in + n, false, WS_OP_CONT, "b");
    n += frame_str(in + n, true, WS_OP_PONG, "pong");
    n += frame_str(in + n, true, WS_OP_PING, "");
    n += frame_str(in + n, false, WS_OP_CONT, "c");
    n += close_frame(in + n, 1001, "");
    n += frame_str(in + n, true, WS_OP_CONT, "d");
    struct transcript t = {0};
    run_bytewise(in, n, MAX_MSG, &t);
    char want[512];
    int w = snprintf(want, sizeof want, "P[%.125s]O[pong]P[]C1001[]B[abcd]", (const char *)ping125);
    assert_transcript(&t, want, (size_t)w);
    transcript_free(&t);
}

struct error_case {
    const char *what;
    uint8_t bytes[40];
    size_t len;
    uint16_t code;
    size_t at; /* the error is reported when byte `at` is fed */
};

/* Checks that in[0..n) fails with `code` exactly when byte `at` arrives, whole and bytewise. */
static void expect_error(const char *what, const uint8_t *in, size_t n, uint64_t max, uint16_t code,
                         size_t at)
{
    struct transcript t = {0};
    size_t stop = run_bytewise(in, n, max, &t);
    if (!t.failed || t.error_code != code || stop != at + 1)
        fail_msg("%s: failed=%d code=%u stop=%zu (want %u at %zu)", what, t.failed,
                 (unsigned)t.error_code, stop, (unsigned)code, at + 1);
    transcript_free(&t);
    /* Fed only up to the deciding byte, the error is already there. */
    run(in, at + 1, max, NULL, 0, &t);
    if (!t.failed || t.error_code != code)
        fail_msg("%s: not refused at byte %zu", what, at);
    transcript_free(&t);
    /* One byte short, it is not. */
    run(in, at, max, NULL, 0, &t);
    if (t.failed)
        fail_msg("%s: refused before byte %zu", what, at);
    transcript_free(&t);
}

static void test_header_errors(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"RSV1", {0xC1, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV2", {0xA1, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV3", {0x91, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV on ping", {0xC9, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"opcode 3", {0x83, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"opcode 4", {0x84, 0x80}, 2, 1002, 0},
        {"opcode 5", {0x85, 0x80}, 2, 1002, 0},
        {"opcode 6", {0x86, 0x80}, 2, 1002, 0},
        {"opcode 7", {0x87, 0x80}, 2, 1002, 0},
        {"opcode B", {0x8B, 0x80}, 2, 1002, 0},
        {"opcode C", {0x8C, 0x80}, 2, 1002, 0},
        {"opcode D", {0x8D, 0x80}, 2, 1002, 0},
        {"opcode E", {0x8E, 0x80}, 2, 1002, 0},
        {"opcode F", {0x0F, 0x80}, 2, 1002, 0},
        {"unmasked text", {0x81, 0x02, 'h', 'i'}, 4, 1002, 1},
        {"unmasked empty", {0x82, 0x00}, 2, 1002, 1},
        {"unmasked ping", {0x89, 0x00}, 2, 1002, 1},
        {"fragmented ping", {0x09, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"fragmented pong", {0x0A, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"fragmented close", {0x08, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"ping 126", {0x89, 0xFE, 0x00, 0x7E}, 4, 1002, 1},
        {"ping 16-bit 5", {0x89, 0xFE, 0x00, 0x05}, 4, 1002, 1},
        {"pong 127", {0x8A, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1}, 10, 1002, 1},
        {"close 1 byte", {0x88, 0x81, 0, 0, 0, 0, 0x03}, 7, 1002, 1},
        {"continuation first", {0x80, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"fragmented continuation first", {0x00, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"64-bit MSB", {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, 1002, 9},
        {"64-bit all ones",
         {0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
         10,
         1002,
         9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].what, cases[i].bytes, cases[i].len, MAX_MSG, cases[i].code,
                     cases[i].at);
}

static void test_fragmentation_errors(void **state)
{
    (void)state;
    uint8_t in[128];
    size_t n = frame_str(in, false, WS_OP_TEXT, "a");
    size_t n2 = n + frame_str(in + n, true, WS_OP_TEXT, "b");
    expect_error("text during text", in, n2, MAX_MSG, 1002, n);
    n2 = n + frame_str(in + n, true, WS_OP_BINARY, "b");
    expect_error("binary during text", in, n2, MAX_MSG, 1002, n);
    n = frame_str(in, false, WS_OP_BINARY, "a");
    n2 = n + frame_str(in + n, false, WS_OP_TEXT, "b");
    expect_error("text during binary", in, n2, MAX_MSG, 1002, n);
    /* After a finished message a continuation has nothing to continue. */
    n = frame_str(in, true, WS_OP_TEXT, "a");
    n2 = n + frame_str(in + n, true, WS_OP_CONT, "b");
    expect_error("continuation after end", in, n2, MAX_MSG, 1002, n);
    /* A control frame in between does not start or end a message. */
    n = frame_str(in, true, WS_OP_PING, "a");
    n2 = n + frame_str(in + n, true, WS_OP_CONT, "b");
    expect_error("continuation after ping", in, n2, MAX_MSG, 1002, n);
}

static void test_message_too_big(void **state)
{
    (void)state;
    uint8_t in[512];
    char big[300];
    memset(big, 'z', sizeof big);
    /* Refused at the length byte, before any payload is read. */
    size_t n = frame(in, true, WS_OP_BINARY, big, 101);
    expect_error("101 over 100", in, n, 100, 1009, 1);
    n = frame(in, true, WS_OP_TEXT, big, 100);
    struct transcript t = {0};
    run(in, n, 100, NULL, 0, &t);
    assert_false(t.failed);
    transcript_free(&t);
    n = frame(in, true, WS_OP_TEXT, big, 300);
    expect_error("16-bit over", in, n, 299, 1009, 3);
    n = frame_ex(in, 0x82, big, 300, LEN_64, true, mask_a);
    expect_error("64-bit over", in, n, 299, 1009, 9);
    /* Fragments add up; the frame that crosses the limit is refused at its header. */
    n = frame(in, false, WS_OP_TEXT, big, 60);
    size_t n2 = n + frame(in + n, true, WS_OP_PING, big, 5);
    size_t n3 = n2 + frame(in + n2, true, WS_OP_CONT, big, 41);
    expect_error("fragments over", in, n3, 100, 1009, n2 + 1);
    n3 = n2 + frame(in + n2, true, WS_OP_CONT, big, 40);
    run_bytewise(in, n3, 100, &t);
    assert_false(t.failed);
    transcript_free(&t);
    /* Control frames do not count toward the message limit. */
    n = frame(in, true, WS_OP_PING, big, 125);
    run(in, n, 10, NULL, 0, &t);
    assert_false(t.failed);
    transcript_free(&t);
    /* A limit of 0 allows only empty messages. */
    n = frame_str(in, true, WS_OP_TEXT, "");
    run(in, n, 0, NULL, 0, &t);
    ASSERT_TRANSCRIPT(&t, "T[]");
    transcript_free(&t);
}

/* PROTOCOL.md rule 25: 65536 bytes pass, 65537 give 1009, whole or reassembled. */
static void test_protocol_limit_64k(void **state)
{
    (void)state;
    const uint64_t limit = 65536;
    uint8_t *payload = calloc(1, 65537);
    memset(payload, 'a', 65537);
    uint8_t *in = malloc(65537 + 64);
    struct transcript t = {0};

    size_t n = frame(in, true, WS_OP_TEXT, payload, 65536);
    run(in, n, limit, NULL, 0, &t);
    assert_false(t.failed);
    assert_int_equal(t.len, 65536 + 3);
    transcript_free(&t);

    n = frame(in, true, WS_OP_TEXT, payload, 65537);
    expect_error("65537", in, n, limit, 1009, 9);

    n = frame(in, false, WS_OP_TEXT, payload, 65000);
    n += frame(in + n, true, WS_OP_CONT, payload, 536);
    run(in, n, limit, NULL, 0, &t);
    assert_false(t.failed);
    transcript_free(&t);

    size_t first = frame(in, false, WS_OP_TEXT, payload, 65000);
    n = first + frame(in + first, true, WS_OP_CONT, payload, 537);
    expect_error("reassembled 65537", in, n, limit, 1009, first + 3);
    free(payload);
    free(in);
}

static void test_utf8_errors(void **state)
{
    (void)state;
    uint8_t in[512];
    size_t n, n2;

    /* Refused at the bad byte, long before the frame ends. */
    char text[100];
    memset(text, 'a', sizeof text);
    text[2] = (char)0xff;
    n = frame(in, true, WS_OP_TEXT, text, sizeof text);
    expect_error("0xff in text", in, n, MAX_MSG, 1007, 6 + 2);
    text[2] = (char)0xc0; /* overlong lead */
    n = frame(in, false, WS_OP_TEXT, text, sizeof text);
    expect_error("C0 in first fragment", in, n, MAX_MSG, 1007, 6 + 2);
    memcpy(text + 2, "\xed\xa0\x80", 3); /* surrogate: refused at its second byte */
    n = frame(in, true, WS_OP_TEXT, text, sizeof text);
    expect_error("surrogate", in, n, MAX_MSG, 1007, 6 + 3);

    /* Across fragments: E2 then "(" cannot continue. */
    n = frame_str(in, false, WS_OP_TEXT, "ok\xe2");
    n2 = n + frame_str(in + n, true, WS_OP_CONT, "(");
    expect_error("across fragments", in, n2, MAX_MSG, 1007, n2 - 1);
    /* ...with a ping in between. */
    n += frame_str(in + n, true, WS_OP_PING, "x");
    n2 = n + frame_str(in + n, true, WS_OP_CONT, "\x82(");
    expect_error("across fragments and a ping", in, n2, MAX_MSG, 1007, n2 - 1);

    /* Ending a text message inside a character. */
    n = frame_str(in, true, WS_OP_TEXT, "ab\xe2\x82");
    expect_error("truncated at FIN", in, n, MAX_MSG, 1007, n - 1);
    n = frame_str(in, false, WS_OP_TEXT, "ab\xe2\x82");
    n2 = n + frame_str(in + n, true, WS_OP_CONT, "");
    expect_error("truncated, empty final fragment", in, n2, MAX_MSG, 1007, n2 - 1);
    n = frame_str(in, true, WS_OP_TEXT, "\xf0");
    expect_error("lone lead byte", in, n, MAX_MSG, 1007, n - 1);

    /* Binary is not checked. */
    n = frame_str(in, true, WS_OP_BINARY, "\xff\xfe\xc0\x80\xed\xa0\x80");
    struct transcript t = {0};
    run_whole(in, n, &t);
    assert_false(t.failed);
    transcript_free(&t);

    /* A character split across fragments and reads is fine. */
    n = frame_str(in, false, WS_OP_TEXT, "\xf0\x9f");
    n += frame_str(in + n, true, WS_OP_PONG, "");
    n += frame_str(in + n, false, WS_OP_CONT, "\x98");
    n += frame_str(in + n, true, WS_OP_CONT, "\x80");
    run_bytewise(in, n, MAX_MSG, &t);
    ASSERT_TRANSCRIPT(&t, "O[]T[\xf0\x9f\x98\x80]");
    transcript_free(&t);
}

static void test_close_frames(void **state)
{
    (void)state;
    uint8_t in[256];
    struct transcript t = {0};

    size_t n = frame_str(in, true, WS_OP_CLOSE, "");
    run_bytewise(in, n, MAX_MSG, &t);
    ASSERT_TRANSCRIPT(&t, "C1005[]");
    transcript_free(&t);

    n = close_frame(in, 1000, "");
    run_whole(in, n, &t);
    ASSERT_TRANSCRIPT(&t, "C1000[]");
    transcript_free(&t);

    n = close_frame(in, 4999, "caf\xc3\xa9");
    run_bytewise(in, n, MAX_MSG, &t);
    ASSERT_TRANSCRIPT(&t, "C4999[caf\xc3\xa9]");
    transcript_free(&t);

    char reason[124];
    memset(reason, 'r', 123);
    reason[123] = '\0';
    n = close_frame(in, 3000, reason);
    run_whole(in, n, &t);
    assert_false(t.failed);
    assert_int_equal(t.len, strlen("C3000[]") + 123);
    transcript_free(&t);

    static const uint16_t valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                     1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        n = close_frame(in, valid[i], "x");
        run_whole(in, n, &t);
        char want[32];
        int w = snprintf(want, sizeof want, "C%u[x]", (unsigned)valid[i]);
        assert_transcript(&t, want, (size_t)w);
        transcript_free(&t);
    }
    static const uint16_t invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                       1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        n = close_frame(in, invalid[i], "");
        expect_error("bad close code", in, n, MAX_MSG, 1002, n - 1);
    }
    n = close_frame(in, 1000, "bad \xff");
    expect_error("close reason not UTF-8", in, n, MAX_MSG, 1007, n - 1);
    n = close_frame(in, 1000, "cut \xe2\x82");
    expect_error("close reason truncated", in, n, MAX_MSG, 1007, n - 1);
}

static void test_close_code_valid_table(void **state)
{
    (void)state;
    for (uint32_t c = 0; c <= 0xFFFF; c++) {
        bool want =
            (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
        if (ws_close_code_valid((uint16_t)c) != want)
            fail_msg("close code %u", (unsigned)c);
    }
}

static void test_header_write(void **state)
{
    (void)state;
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_frame_header_write(h, true, WS_OP_TEXT, 0), 2);
    assert_memory_equal(h, "\x81\x00", 2);
    assert_int_equal(ws_frame_header_write(h, true, WS_OP_BINARY, 125), 2);
    assert_memory_equal(h, "\x82\x7d", 2);
    assert_int_equal(ws_frame_header_write(h, false, WS_OP_TEXT, 126), 4);
    assert_memory_equal(h, "\x01\x7e\x00\x7e", 4);
    assert_int_equal(ws_frame_header_write(h, true, WS_OP_CONT, 65535), 4);
    assert_memory_equal(h, "\x80\x7e\xff\xff", 4);
    assert_int_equal(ws_frame_header_write(h, true, WS_OP_BINARY, 65536), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(ws_frame_header_write(h, true, WS_OP_CLOSE, 2), 2);
    assert_memory_equal(h, "\x88\x02", 2);
    assert_int_equal(ws_frame_header_write(h, true, WS_OP_PING, 0x0102030405060708ull), 10);
    assert_memory_equal(h, "\x89\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
    /* Only the low four bits of the opcode are used. */
    assert_int_equal(ws_frame_header_write(h, true, 0xF1, 1), 2);
    assert_memory_equal(h, "\x81\x01", 2);
}

/* The writer's output, masked the way a client would, reads back as the same frame. */
static void test_header_roundtrip(void **state)
{
    (void)state;
    static const uint64_t lens[] = {0, 5, 125, 126, 1000, 65535, 65536, 100000};
    uint8_t *buf = malloc(100000 + 14);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t h = ws_frame_header_write(buf, true, WS_OP_BINARY, lens[i]);
        /* Insert a zero masking key after the header: XOR with 0 keeps the payload. */
        buf[1] |= 0x80;
        memset(buf + h, 0, 4);
        memset(buf + h + 4, 'm', lens[i]);
        struct transcript t = {0};
        run(buf, h + 4 + lens[i], MAX_MSG, NULL, 0, &t);
        assert_false(t.failed);
        assert_int_equal(t.len, lens[i] + 3);
        transcript_free(&t);
    }
    free(buf);
}

/* A 16 MiB text message with a matching limit, in 64 KiB reads; also over it by one byte. */
static void test_16mib_message(void **state)
{
    (void)state;
    const size_t size = 16u << 20;
    uint8_t *payload = malloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    memcpy(payload + size / 2 - 1, "\xe2\x82\xac", 3); /* a multi-byte character mid-way */
    uint8_t *in = malloc(size + 14);
    size_t n = frame_ex(in, 0x81, payload, size, LEN_MINIMAL, true, (const uint8_t[]){1, 2, 3, 4});
    assert_int_equal(n, size + 14);

    struct ws_reader r;
    ws_reader_init(&r, size);
    r.spill = &spill; /* the caller lends the reader its spill */
    size_t pos = 0, got = 0, events = 0;
    bool last = false;
    while (pos < n) {
        size_t chunk = n - pos < 65536 ? n - pos : 65536;
        struct ws_event ev;
        size_t used = ws_reader_feed(&r, in + pos, chunk, &ev);
        assert_int_not_equal(ev.type, WS_EV_ERROR);
        if (ev.type == WS_EV_DATA) {
            assert_memory_equal(ev.data, payload + got, ev.len);
            got += ev.len;
            last = ev.last;
            events++;
        }
        pos += used;
    }
    assert_int_equal(got, size);
    assert_true(last);
    assert_true(events <= size / 65536 + 2);

    n = frame_ex(in, 0x81, payload, 0, LEN_64, true, mask_a);
    in[6] = 1; /* length 0x01000001: 16 MiB + 1 */
    in[9] = 1;
    ws_reader_init(&r, size);
    r.spill = &spill; /* the caller lends the reader its spill */
    struct ws_event ev;
    assert_int_equal(ws_reader_feed(&r, in, 10, &ev), 10);
    assert_int_equal(ev.type, WS_EV_ERROR);
    assert_int_equal(ev.close_code, 1009);
    free(payload);
    free(in);
}

/* Random valid streams (fragments, controls, UTF-8 split anywhere) read back in random splits. */
/* permessage-deflate negotiated: RSV1 marks the first frame of a compressed message, and only
 * there (RFC 7692 section 6); RSV2 and RSV3 stay errors. */
static void test_deflate_rsv_rules(void **state)
{
    (void)state;
    deflate_on = true;
    static const struct error_case cases[] = {
        {"RSV1 on ping", {0xC9, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV1 on pong", {0xCA, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV1 on close", {0xC8, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV1 on a continuation first", {0xC0, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV2 on text", {0xA1, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV3 on binary", {0x92, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV1+RSV2 on text", {0xE1, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
        {"RSV1 on reserved opcode 3", {0xC3, 0x80, 0, 0, 0, 0}, 6, 1002, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].what, cases[i].bytes, cases[i].len, MAX_MSG, cases[i].code,
                     cases[i].at);

    /* RSV1 on a continuation of a compressed message, and of a plain one. */
    uint8_t in[256];
    size_t n = frame_ex(in, 0x41, "ab", 2, LEN_MINIMAL, true, mask_a);
    size_t n2 = n + frame_ex(in + n, 0xC0, "cd", 2, LEN_MINIMAL, true, mask_a);
    expect_error("RSV1 on the continuation of a compressed message", in, n2, MAX_MSG, 1002, n);
    n = frame_str(in, false, WS_OP_TEXT, "ab");
    n2 = n + frame_ex(in + n, 0xC0, "cd", 2, LEN_MINIMAL, true, mask_a);
    expect_error("RSV1 on the continuation of a plain message", in, n2, MAX_MSG, 1002, n);
    deflate_on = false;
}

/* A compressed message is handed out as it is, flagged, without UTF-8 checks (its bytes are
 * DEFLATE, not text); plain messages next to it are still checked. */
static void test_deflate_messages(void **state)
{
    (void)state;
    deflate_on = true;
    uint8_t in[256];
    size_t n = 0;
    n += frame_ex(in + n, 0x41, "\xf2\x48", 2, LEN_MINIMAL, true, mask_a); /* RSV1 text, more */
    n += frame_str(in + n, true, WS_OP_PING, "p");
    n += frame_ex(in + n, 0x00, "\xcd", 1, LEN_MINIMAL, true, mask_a);
    n += frame_ex(in + n, 0x80, "\xc9\xff", 2, LEN_MINIMAL, true, mask_a);
    n += frame_str(in + n, true, WS_OP_TEXT, "plain");
    n += frame_ex(in + n, 0xC2, "\x00", 1, LEN_MINIMAL, true, mask_a); /* RSV1 binary */
    n += frame_ex(in + n, 0xC1, "", 0, LEN_MINIMAL, true, mask_a);     /* RSV1, empty */
    static const char want[] = "P[p]t[\xf2\x48\xcd\xc9\xff]T[plain]b[\x00]t[]";
    struct transcript t = {0};
    run_bytewise(in, n, MAX_MSG, &t);
    ASSERT_TRANSCRIPT(&t, want);
    transcript_free(&t);
    for (size_t i = 0; i <= n; i++) {
        size_t cuts[1] = {i};
        run(in, n, MAX_MSG, cuts, 1, &t);
        ASSERT_TRANSCRIPT(&t, want);
        transcript_free(&t);
    }
    /* Invalid UTF-8 in a plain text message is still refused when deflate is on. */
    n = frame_str(in, true, WS_OP_TEXT, "a\xff");
    expect_error("bad UTF-8 next to deflate", in, n, MAX_MSG, 1007, n - 1);
    deflate_on = false;

    /* Without deflate the same RSV1 frame is a protocol error. */
    n = frame_ex(in, 0xC1, "x", 1, LEN_MINIMAL, true, mask_a);
    expect_error("RSV1 without deflate", in, n, MAX_MSG, 1002, 0);
}

/* A compressed message is bounded as sent by WS_DEFLATE_WIRE_MAX (its inflated size is the
 * caller's to bound): more than max_message bytes of DEFLATE pass, more than the bound do not. */
static void test_deflate_wire_limit(void **state)
{
    (void)state;
    deflate_on = true;
    const uint64_t max = 200;
    const uint64_t wire = WS_DEFLATE_WIRE_MAX(max);
    assert_true(wire > max);
    uint8_t *payload = calloc(1, (size_t)wire + 1);
    uint8_t *in = malloc((size_t)wire + 64);
    struct transcript t = {0};
    size_t n = frame_ex(in, 0xC2, payload, (size_t)wire, LEN_MINIMAL, true, mask_a);
    run(in, n, max, NULL, 0, &t);
    assert_false(t.failed);
    transcript_free(&t);
    n = frame_ex(in, 0xC2, payload, (size_t)wire + 1, LEN_MINIMAL, true, mask_a);
    expect_error("compressed over the wire bound", in, n, max, 1009, 3);
    /* Fragments add up; a plain message keeps the plain limit. */
    size_t first = frame_ex(in, 0x42, payload, (size_t)wire - 10, LEN_MINIMAL, true, mask_a);
    n = first + frame_ex(in + first, 0x80, payload, 11, LEN_MINIMAL, true, mask_a);
    expect_error("compressed fragments over the wire bound", in, n, max, 1009, first + 1);
    n = frame(in, true, WS_OP_BINARY, payload, (size_t)max + 1);
    expect_error("plain over max", in, n, max, 1009, 3);
    free(payload);
    free(in);
    deflate_on = false;
}

static void test_random_streams(void **state)
{
    (void)state;
    static const char *pieces[] = {"a", "hello", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                   ""};
    uint8_t *in = malloc(1 << 16);
    uint8_t *want = malloc(1 << 16);
    uint8_t msg[4096];
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 0, wn = 0;
        int messages = 1 + (int)rnd(6);
        for (int m = 0; m < messages; m++) {
            bool text = rnd(2);
            size_t ml = 0;
            int nchars = (int)rnd(20);
            for (int c = 0; c < nchars; c++) {
                const char *p = pieces[rnd(6)];
                memcpy(msg + ml, p, strlen(p));
                ml += strlen(p);
            }
            /* Cut the message into fragments at random byte offsets, even mid-character. */
            size_t off = 0;
            bool first = true;
            do {
                size_t take = rnd(3) == 0 ? ml - off : rnd((uint32_t)(ml - off + 1));
                bool fin = off + take == ml && rnd(4) != 0;
                uint8_t op = first ? (text ? WS_OP_TEXT : WS_OP_BINARY) : WS_OP_CONT;
                uint8_t key[4] = {(uint8_t)rnd(256), (uint8_t)rnd(256), (uint8_t)rnd(256),
                                  (uint8_t)rnd(256)};
                n += frame_ex(in + n, (uint8_t)((fin ? 0x80 : 0) | op), msg + off, take,
                              (enum len_form)rnd(3), true, key);
                off += take;
                first = false;
                if (!fin && rnd(3) == 0) {
                    n += frame_str(in + n, true, WS_OP_PING, "pi");
                    memcpy(want + wn, "P[pi]", 5);
                    wn += 5;
                }
                if (fin)
                    break;
            } while (true);
            want[wn++] = text ? 'T' : 'B';
            want[wn++] = '[';
            memcpy(want + wn, msg, ml);
            wn += ml;
            want[wn++] = ']';
        }
        size_t cuts[8], nc = 1 + rnd(7);
        random_cuts(cuts, nc, n);
        struct transcript t = {0};
        run(in, n, MAX_MSG, cuts, nc, &t);
        assert_transcript(&t, want, wn);
        transcript_free(&t);
    }
    free(in);
    free(want);
}

int main(void)
{
    const struct CMUnitTest ws_frame[] = {
        cmocka_unit_test(test_rfc_example_frames),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_length_forms),
        cmocka_unit_test(test_empty_messages),
        cmocka_unit_test(test_data_as_it_arrives),
        cmocka_unit_test(test_unmask_any_offset),
        cmocka_unit_test(test_interleaved_control_frames),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_fragmentation_errors),
        cmocka_unit_test(test_message_too_big),
        cmocka_unit_test(test_protocol_limit_64k),
        cmocka_unit_test(test_utf8_errors),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_close_code_valid_table),
        cmocka_unit_test(test_header_write),
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_16mib_message),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_deflate_rsv_rules),
        cmocka_unit_test(test_deflate_messages),
        cmocka_unit_test(test_deflate_wire_limit),
    };
    return cmocka_run_group_tests(ws_frame, NULL, NULL);
}
