/* fuzz_ws_deflate: libFuzzer target for permessage-deflate: frames with deflate negotiated, each
 * compressed message inflated under a small limit, read whole and in pieces. TLS-free. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_deflate.h"
#include "ws_frame.h"

#include "fuzz_pieces.h"

/*
 * Input layout: byte 0 picks the message limit, byte 1 seeds the read sizes,
 * the rest is the byte stream from the client. As in the session, each
 * piece of a compressed message goes to the inflater as it arrives. Checked:
 * the inflated output never passes the limit (nor does the memory holding
 * it), inflated text is valid UTF-8, a message ends in exactly one outcome,
 * and the whole and the split readings agree. Besides, the first bytes of
 * the stream are compressed and inflated back as a round trip.
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define HEAD WS_MAX_HEADER

struct outcome {
    uint32_t hash; /* of every event: messages (type, compressed, length, bytes) and errors */
    uint32_t messages;
    uint16_t close_code; /* how the reading ended: 0 if it did not */
};

/* The spill every reader of these tests borrows (a connection lends one only mid-frame). */
static struct ws_reader_spill spill;

static uint32_t hash(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

/* The bytes of one whole message, plain or inflated. */
static void message(struct outcome *o, uint8_t opcode, bool compressed, const uint8_t *p, size_t n,
                    uint64_t limit)
{
    CHECK(n <= limit);
    if (opcode == WS_OP_TEXT)
        CHECK(utf8_is_valid(p, n));
    uint8_t tag[2] = {opcode, compressed};
    o->hash = hash(o->hash, tag, 2);
    o->hash = hash(o->hash, &n, sizeof n);
    o->hash = hash(o->hash, p, n);
    o->messages++;
}

/* Feeds buf[0..n) (modified in place) in pieces from `seed` (0: whole), as ws_session does. */
static void reading(struct ws_zpool *pool, uint8_t *buf, size_t n, uint64_t limit, uint8_t seed,
                    struct outcome *o)
{
    struct ws_reader r;
    ws_reader_init(&r, limit);
    r.spill = &spill; /* the caller lends the reader its spill */
    ws_reader_use_deflate(&r);
    struct ws_inflater *z = NULL;
    struct chunk *msg = NULL; /* the compressed message being inflated */
    uint8_t *plain = malloc(limit + 1);
    size_t plain_len = 0;
    CHECK(plain != NULL);
    uint32_t rng = fuzz_pieces_init(seed);
    size_t pos = 0;
    o->hash = 2166136261u;
    while (pos < n && o->close_code == 0) {
        size_t end = pos + (seed ? fuzz_next_piece(&rng, seed, n - pos) : n - pos);
        while (pos < end && o->close_code == 0) {
            struct ws_event ev;
            pos += ws_reader_feed(&r, buf + pos, end - pos, &ev);
            if (ev.type == WS_EV_ERROR) {
                o->close_code = ev.close_code;
            } else if (ev.type == WS_EV_DATA && ev.compressed) {
                if (!z)
                    z = ws_inflater_take(pool);
                enum ws_inflate_result res = ws_inflate(z, ev.data, ev.len, ev.last,
                                                        ev.opcode == WS_OP_TEXT, &msg, HEAD, limit);
                if (msg) {
                    CHECK(msg->len <= limit);
                    CHECK(msg->cap <= HEAD + limit); /* the bomb bound: memory, not only length */
                }
                if (res == WS_INFLATE_TOO_BIG)
                    o->close_code = WS_CLOSE_TOO_BIG;
                else if (res != WS_INFLATE_OK)
                    o->close_code = WS_CLOSE_BAD_DATA;
                else if (ev.last) {
                    CHECK(msg != NULL);
                    message(o, ev.opcode, true, msg->data + HEAD, msg->len, limit);
                    chunk_unref(msg);
                    msg = NULL;
                    ws_inflater_give(pool, z);
                    z = NULL;
                }
            } else if (ev.type == WS_EV_DATA) {
                CHECK(plain_len + ev.len <= limit);
                memcpy(plain + plain_len, ev.data, ev.len);
                plain_len += ev.len;
                if (ev.last) {
                    message(o, ev.opcode, false, plain, plain_len, limit);
                    plain_len = 0;
                }
            } else if (ev.type != WS_EV_NONE) {
                uint8_t tag = (uint8_t)ev.type;
                o->hash = hash(o->hash, &tag, 1);
                o->hash = hash(o->hash, ev.data, ev.len);
                if (ev.type == WS_EV_CLOSE)
                    o->close_code = ev.close_code ? ev.close_code : 1;
            }
        }
    }
    o->hash = hash(o->hash, &o->close_code, sizeof o->close_code);
    chunk_unref(msg);
    ws_inflater_give(pool, z);
    free(plain);
}

/* Compresses p[0..n) and inflates it back: the same bytes, or NULL for no gain. */
static void round_trip(struct ws_zpool *pool, const uint8_t *p, size_t n, unsigned bits)
{
    struct chunk *f = ws_deflate_frame(pool, bits, WS_OP_BINARY, p, n);
    if (!f)
        return;
    CHECK(f->data[0] == (0x80 | WS_RSV1 | WS_OP_BINARY));
    size_t h = (f->data[1] & 0x7F) == 126 ? 4 : (f->data[1] & 0x7F) == 127 ? 10 : 2;
    CHECK(f->len > h && f->len - h < n);
    struct ws_inflater *z = ws_inflater_take(pool);
    struct chunk *msg = NULL;
    CHECK(ws_inflate(z, f->data + h, f->len - h, true, false, &msg, HEAD, n) == WS_INFLATE_OK);
    CHECK(msg->len == n && memcmp(msg->data + HEAD, p, n) == 0);
    chunk_unref(msg);
    ws_inflater_give(pool, z);
    chunk_unref(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[4] = {0, 125, 1000, 65536};
    static struct ws_zpool *pool; /* kept across inputs, as a worker keeps its own */
    if (!pool)
        pool = ws_zpool_new();
    if (size < 2)
        return 0;
    uint64_t limit = limits[data[0] & 3];
    uint8_t seed = data[1];
    size_t n = size - 2;
    uint8_t *whole = malloc(n + 1);
    uint8_t *split = malloc(n + 1);
    CHECK(whole != NULL && split != NULL);
    memcpy(whole, data + 2, n);
    memcpy(split, data + 2, n);

    struct outcome a = {0}, b = {0};
    reading(pool, whole, n, limit, 0, &a);
    reading(pool, split, n, limit, seed == 0 ? 1 : seed, &b);
    CHECK(a.hash == b.hash && a.messages == b.messages && a.close_code == b.close_code);

    round_trip(pool, data + 2, n < 4096 ? n : 4096, 8 + (data[0] >> 5));
    free(whole);
    free(split);
    return 0;
}
