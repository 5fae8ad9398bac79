/* fuzz_ws_frame: libFuzzer target for the WebSocket frame reader, fed in random-sized pieces. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"

#include "fuzz_pieces.h"

/*
 * Input layout: byte 0 picks the message limit, byte 1 seeds the read
 * sizes, the rest is the byte stream from the client. The stream is read
 * twice, once whole and once in pieces, and both readings must produce the
 * same transcript: the reader may not depend on where reads end.
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The events of one reading, as bytes; see record(). */
struct transcript {
    uint8_t *bytes;
    size_t len, cap;
    uint64_t msg_len; /* bytes of the data message in progress */
    uint8_t msg_op;
    uint32_t msg_utf8; /* independent check of the text handed out */
    uint32_t msg_hash; /* data messages are hashed, not copied */
};

/* The spill every reader of these tests borrows (a connection lends one only mid-frame). */
static struct ws_reader_spill spill;

static void put(struct transcript *t, const void *p, size_t n)
{
    /* cap was sized for the worst case: one event per input byte. */
    CHECK(t->len + n <= t->cap);
    if (n > 0)
        memcpy(t->bytes + t->len, p, n);
    t->len += n;
}

static uint32_t hash(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void record(struct transcript *t, const struct ws_event *ev, uint64_t max_message)
{
    uint8_t tag = (uint8_t)ev->type;
    switch (ev->type) {
    case WS_EV_NONE:
        break;
    case WS_EV_DATA:
        CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        if (t->msg_op == 0) {
            t->msg_op = ev->opcode;
            t->msg_utf8 = UTF8_ACCEPT;
            t->msg_hash = 2166136261u;
        }
        CHECK(ev->opcode == t->msg_op);
        t->msg_len += ev->len;
        CHECK(t->msg_len <= max_message);
        t->msg_hash = hash(t->msg_hash, ev->data, ev->len);
        if (ev->opcode == WS_OP_TEXT) {
            t->msg_utf8 = utf8_validate(t->msg_utf8, ev->data, ev->len);
            CHECK(t->msg_utf8 != UTF8_REJECT);
        }
        if (ev->last) {
            if (ev->opcode == WS_OP_TEXT)
                CHECK(t->msg_utf8 == UTF8_ACCEPT);
            put(t, &tag, 1);
            put(t, &t->msg_op, 1);
            put(t, &t->msg_len, sizeof t->msg_len);
            put(t, &t->msg_hash, sizeof t->msg_hash);
            t->msg_op = 0;
            t->msg_len = 0;
        }
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
    case WS_EV_CLOSE:
        CHECK(ev->len <= 125);
        if (ev->type == WS_EV_CLOSE) {
            CHECK(ev->close_code == WS_CLOSE_NO_STATUS ? ev->len == 0
                                                       : ws_close_code_valid(ev->close_code));
            CHECK(utf8_is_valid(ev->data, ev->len));
        }
        put(t, &tag, 1);
        put(t, &ev->close_code, sizeof ev->close_code);
        put(t, &ev->len, sizeof ev->len);
        put(t, ev->data, ev->len);
        break;
    case WS_EV_ERROR:
        CHECK(ev->close_code == WS_CLOSE_PROTOCOL || ev->close_code == WS_CLOSE_BAD_DATA ||
              ev->close_code == WS_CLOSE_TOO_BIG);
        CHECK(ev->reason != NULL && strlen(ev->reason) > 0 && strlen(ev->reason) <= 123);
        put(t, &tag, 1);
        put(t, &ev->close_code, sizeof ev->close_code);
        break;
    }
}

/* Feeds buf[0..n) (modified in place) in pieces whose sizes come from `seed` (0: whole). */
static void reading(uint8_t *buf, size_t n, uint64_t max_message, uint8_t seed,
                    struct transcript *t)
{
    struct ws_reader r;
    ws_reader_init(&r, max_message);
    r.spill = &spill; /* the caller lends the reader its spill */
    uint32_t rng = fuzz_pieces_init(seed);
    size_t pos = 0;
    while (pos < n) {
        size_t piece = n - pos;
        if (seed != 0)
            piece = fuzz_next_piece(&rng, seed, piece);
        /* The reader may stop early at an event; the rest of the piece goes in next. */
        size_t end = pos + piece;
        while (pos < end) {
            struct ws_event ev;
            size_t left = end - pos;
            size_t used = ws_reader_feed(&r, buf + pos, left, &ev);
            CHECK(used <= left);
            if (ev.type == WS_EV_NONE)
                CHECK(used == left);
            else if (ev.type != WS_EV_ERROR)
                CHECK(used > 0);
            if (ev.type == WS_EV_DATA && ev.len > 0)
                CHECK(ev.data >= buf + pos && ev.data + ev.len <= buf + pos + used);
            record(t, &ev, max_message);
            pos += used;
            if (ev.type == WS_EV_ERROR) {
                /* Failed: nothing more is consumed, and the same error is reported. */
                struct ws_event again;
                CHECK(ws_reader_feed(&r, buf + pos, n - pos, &again) == 0);
                CHECK(again.type == WS_EV_ERROR && again.close_code == ev.close_code);
                CHECK(again.reason == ev.reason);
                return;
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[4] = {65536, 0, 125, UINT64_MAX};
    if (size < 2)
        return 0;
    uint64_t max_message = limits[data[0] & 3];
    uint8_t seed = data[1];
    size_t n = size - 2;

    uint8_t *whole = malloc(n + 1);
    uint8_t *split = malloc(n + 1);
    struct transcript a = {0}, b = {0};
    a.cap = b.cap = 32 * (n + 1);
    a.bytes = malloc(a.cap);
    b.bytes = malloc(b.cap);
    if (whole == NULL || split == NULL || a.bytes == NULL || b.bytes == NULL)
        abort();
    memcpy(whole, data + 2, n);
    memcpy(split, data + 2, n);

    reading(whole, n, max_message, 0, &a);
    reading(split, n, max_message, seed == 0 ? 1 : seed, &b);
    CHECK(a.len == b.len && memcmp(a.bytes, b.bytes, a.len) == 0);

    free(whole);
    free(split);
    free(a.bytes);
    free(b.bytes);
    return 0;
}
