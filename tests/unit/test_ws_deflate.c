/* test_ws_deflate: unit tests of per-message compression and the bounded inflater. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "random_cuts.h"
#include "ws_deflate.h"
#include "ws_frame.h"

#define HEAD WS_MAX_HEADER /* headroom the session keeps in front of a message */

/* ---- helpers ---- */

/* Compresses p[0..n) the way a client does (raw DEFLATE, sync flush, 00 00 ff ff removed) with
 * zlib directly, independent of the code under test; *out is malloc'd. final: end with a
 * BFINAL block instead (RFC 7692 section 7.2.3.4). */
static size_t client_deflate(const uint8_t *p, size_t n, bool final, uint8_t **out)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&s, n) + 16;
    *out = malloc(cap);
    s.next_in = (Bytef *)p;
    s.avail_in = (uInt)n;
    s.next_out = *out;
    s.avail_out = (uInt)cap;
    int rc = deflate(&s, final ? Z_FINISH : Z_SYNC_FLUSH);
    assert_int_equal(rc, final ? Z_STREAM_END : Z_OK);
    size_t len = cap - s.avail_out;
    deflateEnd(&s);
    if (!final) {
        assert_true(len >= 4);
        assert_memory_equal(*out + len - 4, "\x00\x00\xff\xff", 4);
        len -= 4;
    }
    return len;
}

/* Inflates in[0..n) with a raw zlib inflater of window 2^bits, as a client would; returns the
 * output length (malloc'd in *out, at most cap bytes), or (size_t)-1 when zlib refuses the data.
 * Output comes one byte per call: zlib then has only its window to look back into, so a
 * distance beyond 2^bits fails, as it would for a client that keeps just that window. */
static size_t client_inflate(const uint8_t *in, size_t n, int bits, uint8_t **out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    assert_int_equal(inflateInit2(&s, -bits), Z_OK);
    uint8_t *buf = malloc(n + 4);
    memcpy(buf, in, n);
    memcpy(buf + n, "\x00\x00\xff\xff", 4);
    *out = malloc(cap ? cap : 1);
    s.next_in = buf;
    s.avail_in = (uInt)(n + 4);
    size_t len = 0;
    int rc = Z_OK;
    for (;;) {
        uint8_t byte;
        s.next_out = &byte;
        s.avail_out = 1;
        rc = inflate(&s, Z_SYNC_FLUSH);
        if (s.avail_out == 0 && len < cap)
            (*out)[len++] = byte;
        if (rc != Z_OK || (s.avail_in == 0 && s.avail_out == 1))
            break;
    }
    inflateEnd(&s);
    free(buf);
    bool ok = (rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR) && s.avail_in == 0;
    return ok ? len : (size_t)-1;
}

/* Parses the frame the server would send: checks FIN, RSV1, opcode; returns the payload. */
static const uint8_t *frame_payload(const struct chunk *c, uint8_t opcode, size_t *len)
{
    assert_true(c->len >= 2);
    assert_int_equal(c->data[0], 0x80 | WS_RSV1 | opcode);
    uint8_t len7 = c->data[1] & 0x7F;
    assert_int_equal(c->data[1] & 0x80, 0); /* server frames are not masked */
    size_t h = 2;
    uint64_t n = len7;
    if (len7 == 126) {
        n = (uint64_t)c->data[2] << 8 | c->data[3];
        h = 4;
        assert_true(n >= 126); /* minimal length encoding */
    } else if (len7 == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | c->data[2 + i];
        h = 10;
        assert_true(n > 0xFFFF);
    }
    assert_int_equal(h + n, c->len);
    *len = (size_t)n;
    return c->data + h;
}

/* Inflates a whole message given as pieces cut at cuts[0..ncuts); returns the result and leaves
 * the output in *msg. */
static enum ws_inflate_result inflate_cuts(struct ws_zpool *pool, const uint8_t *in, size_t n,
                                           const size_t *cuts, size_t ncuts, bool text,
                                           uint64_t limit, struct chunk **msg)
{
    struct ws_inflater *z = ws_inflater_take(pool);
    enum ws_inflate_result r = WS_INFLATE_OK;
    size_t start = 0;
    *msg = NULL;
    for (size_t c = 0; c <= ncuts && r == WS_INFLATE_OK; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        r = ws_inflate(z, in + start, end - start, c == ncuts, text, msg, HEAD, limit);
        if (*msg)
            assert_true((*msg)->len <= limit); /* never more output than the limit */
        start = end;
    }
    ws_inflater_give(pool, z);
    return r;
}

static enum ws_inflate_result inflate_whole(struct ws_zpool *pool, const uint8_t *in, size_t n,
                                            bool text, uint64_t limit, struct chunk **msg)
{
    return inflate_cuts(pool, in, n, NULL, 0, text, limit, msg);
}

static void assert_output(const struct chunk *msg, const void *want, size_t n)
{
    assert_non_null(msg);
    assert_int_equal(msg->len, n);
    if (n)
        assert_memory_equal(msg->data + HEAD, want, n);
}

/* Text with repeats at every distance up to `span`, so a compressor is tempted to reach far back.
 */
static void fill_text(uint8_t *p, size_t n, size_t span)
{
    static const char words[] = "parley chat room message alice bob hello world deflate window ";
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        if (i >= span && (seed >> 16) % 4 == 0)
            p[i] = p[i - span + (seed >> 20) % span];
        else
            p[i] = (uint8_t)words[(i + (seed >> 24)) % (sizeof words - 1)];
    }
}

/* ---- tests ---- */

/* Round trip: what ws_deflate_frame makes, a client inflates, and so does ws_inflate. */
static void test_round_trip_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {16, 64, 125, 126, 200, 1000, 4096, 65535, 65536, 100000, 131072};
    struct ws_zpool *pool = ws_zpool_new();
    uint8_t *text = malloc(131072);
    fill_text(text, 131072, 3000);
    memset(text, 'a', 16); /* so that even the 16-byte message compresses */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        struct chunk *f = ws_deflate_frame(pool, 15, WS_OP_TEXT, text, n);
        assert_non_null(f);
        size_t plen;
        const uint8_t *payload = frame_payload(f, WS_OP_TEXT, &plen);
        assert_true(plen < n);
        uint8_t *out;
        assert_int_equal(client_inflate(payload, plen, 15, &out, n + 1), n);
        assert_memory_equal(out, text, n);
        free(out);
        struct chunk *msg;
        assert_int_equal(inflate_whole(pool, payload, plen, true, n, &msg), WS_INFLATE_OK);
        assert_output(msg, text, n);
        chunk_unref(msg);
        chunk_unref(f);
    }
    free(text);
    ws_zpool_free(pool);
}

/* Each window size is honoured: the frame decodes with a client window of exactly 2^bits, 2^8
 * included (compressed with 2^9, as zlib cannot do 2^8: see ws_deflate_frame). */
static void test_window_sizes(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    const size_t n = 70000;
    uint8_t *text = malloc(n);
    fill_text(text, n, 20000); /* repeats 256 B .. 20 KB back */
    for (unsigned bits = 8; bits <= 15; bits++) {
        struct chunk *f = ws_deflate_frame(pool, bits, WS_OP_BINARY, text, n);
        assert_non_null(f);
        size_t plen;
        const uint8_t *payload = frame_payload(f, WS_OP_BINARY, &plen);
        uint8_t *out;
        if (client_inflate(payload, plen, (int)bits, &out, n + 1) != n)
            fail_msg("window 2^%u: a client with that window cannot inflate the frame", bits);
        assert_memory_equal(out, text, n);
        free(out);
        chunk_unref(f);
    }
    /* The check has teeth: data compressed with 2^15 does not decode with a 2^8 window. */
    uint8_t *z;
    size_t zn = client_deflate(text, n, false, &z);
    uint8_t *out;
    assert_int_equal(client_inflate(z, zn, 8, &out, n + 1), (size_t)-1);
    free(out);
    free(z);
    free(text);
    ws_zpool_free(pool);
}

/* Nothing to gain: empty and incompressible payloads are not compressed. */
static void test_not_worth_it(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    assert_null(ws_deflate_frame(pool, 15, WS_OP_TEXT, (const uint8_t *)"", 0));
    assert_null(ws_deflate_frame(pool, 15, WS_OP_TEXT, (const uint8_t *)"hi", 2));
    uint8_t noise[4096];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)rnd(256);
    assert_null(ws_deflate_frame(pool, 15, WS_OP_BINARY, noise, sizeof noise));
    /* ... and the pool still works afterwards. */
    uint8_t zeros[1000] = {0};
    struct chunk *f = ws_deflate_frame(pool, 15, WS_OP_BINARY, zeros, sizeof zeros);
    assert_non_null(f);
    assert_true(f->len < 40);
    chunk_unref(f);
    ws_zpool_free(pool);
}

/* The examples of RFC 7692 section 7.2.3, as a client may send them. */
static void test_rfc_examples(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
        const char *out;
    } cases[] = {
        {"7.2.3.1 one compressed block", {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, 7, "Hello"},
        {"7.2.3.3 no compression",
         {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00},
         11,
         "Hello"},
        {"7.2.3.4 BFINAL set", {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}, 8, "Hello"},
        {"7.2.3.5 two blocks",
         {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00},
         13,
         "Hello"},
        {"7.2.3.6 empty", {0x00}, 1, ""},
        /* Not DEFLATE strictly (the sync flush's block header is missing), but what some
         * clients send for an empty message, and what Node's ws accepts. */
        {"no payload at all", {0}, 0, ""},
    };
    struct ws_zpool *pool = ws_zpool_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct chunk *msg;
        enum ws_inflate_result r = inflate_whole(pool, cases[i].bytes, cases[i].n, true, 100, &msg);
        if (r != WS_INFLATE_OK)
            fail_msg("%s: result %d", cases[i].what, r);
        assert_output(msg, cases[i].out, strlen(cases[i].out));
        chunk_unref(msg);
    }
    ws_zpool_free(pool);
}

/* Split anywhere, the message inflates the same: at every single cut and every pair of cuts. */
static void test_every_split(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    uint8_t text[600];
    fill_text(text, sizeof text, 100);
    for (int final = 0; final <= 1; final++) {
        uint8_t *z;
        size_t zn = client_deflate(text, sizeof text, final, &z);
        for (size_t i = 0; i <= zn; i++) {
            for (size_t j = i; j <= zn; j += (j < i + 8 ? 1 : 7)) {
                size_t cuts[2] = {i, j};
                struct chunk *msg;
                assert_int_equal(inflate_cuts(pool, z, zn, cuts, 2, true, sizeof text, &msg),
                                 WS_INFLATE_OK);
                assert_output(msg, text, sizeof text);
                chunk_unref(msg);
            }
        }
        /* One byte per piece. */
        size_t *cuts = malloc(zn * sizeof *cuts);
        for (size_t i = 0; i < zn; i++)
            cuts[i] = i + 1;
        struct chunk *msg;
        assert_int_equal(inflate_cuts(pool, z, zn, cuts, zn, true, sizeof text, &msg),
                         WS_INFLATE_OK);
        assert_output(msg, text, sizeof text);
        chunk_unref(msg);
        free(cuts);
        free(z);
    }
    ws_zpool_free(pool);
}

/* A bomb: 10 MB of zeros in about 10 KB. Inflation stops at the limit: the output, and the chunk
 * holding it, never pass it, whether the bomb comes whole or in small pieces. */
static void test_bomb_stops_at_the_limit(void **state)
{
    (void)state;
    const size_t big = 10u << 20;
    uint8_t *zeros = calloc(1, big);
    uint8_t *z;
    size_t zn = client_deflate(zeros, big, false, &z);
    free(zeros);
    assert_true(zn < 20000);
    struct ws_zpool *pool = ws_zpool_new();
    static const uint64_t limits[] = {0, 1, 125, 65536, 1u << 20};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct chunk *msg;
        enum ws_inflate_result r = inflate_whole(pool, z, zn, false, limits[i], &msg);
        assert_int_equal(r, WS_INFLATE_TOO_BIG);
        if (msg) {
            assert_true(msg->len == limits[i]);
            assert_true(msg->cap <= HEAD + limits[i]);
        }
        chunk_unref(msg);
        /* In 100-byte pieces it is refused as soon as the limit is passed: well before the
         * bomb's end. */
        size_t ncuts = zn / 100;
        size_t *cuts = malloc((ncuts + 1) * sizeof *cuts);
        for (size_t c = 0; c < ncuts; c++)
            cuts[c] = (c + 1) * 100;
        struct ws_inflater *inf = ws_inflater_take(pool);
        msg = NULL;
        size_t start = 0, c = 0;
        for (; c <= ncuts; c++) {
            size_t end = c < ncuts ? cuts[c] : zn;
            r = ws_inflate(inf, z + start, end - start, c == ncuts, false, &msg, HEAD, limits[i]);
            start = end;
            if (r != WS_INFLATE_OK)
                break;
        }
        assert_int_equal(r, WS_INFLATE_TOO_BIG);
        /* Stopped within a few pieces of where the output passed the limit. */
        assert_true(start <= limits[i] * zn / big + 300);
        assert_true(start < zn);
        if (msg)
            assert_true(msg->cap <= HEAD + limits[i]);
        chunk_unref(msg);
        ws_inflater_give(pool, inf);
        free(cuts);
    }
    free(z);
    ws_zpool_free(pool);
}

/* A message of exactly the limit passes; one byte more does not. */
static void test_limit_exact(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    uint8_t text[5000];
    fill_text(text, sizeof text, 500);
    uint8_t *z;
    size_t zn = client_deflate(text, sizeof text, false, &z);
    struct chunk *msg;
    assert_int_equal(inflate_whole(pool, z, zn, true, sizeof text, &msg), WS_INFLATE_OK);
    assert_output(msg, text, sizeof text);
    chunk_unref(msg);
    assert_int_equal(inflate_whole(pool, z, zn, true, sizeof text - 1, &msg), WS_INFLATE_TOO_BIG);
    chunk_unref(msg);
    free(z);
    /* The same with a BFINAL ending. */
    zn = client_deflate(text, sizeof text, true, &z);
    assert_int_equal(inflate_whole(pool, z, zn, true, sizeof text, &msg), WS_INFLATE_OK);
    chunk_unref(msg);
    assert_int_equal(inflate_whole(pool, z, zn, true, sizeof text - 1, &msg), WS_INFLATE_TOO_BIG);
    chunk_unref(msg);
    free(z);
    ws_zpool_free(pool);
}

/* Bytes that are not DEFLATE, and DEFLATE cut short, are bad data. */
static void test_bad_data(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    struct chunk *msg;
    static const uint8_t reserved_type[] = {0xff, 0xff, 0xff, 0xff}; /* BTYPE 11 is reserved */
    assert_int_equal(inflate_whole(pool, reserved_type, sizeof reserved_type, false, 1000, &msg),
                     WS_INFLATE_BAD_DATA);
    chunk_unref(msg);
    static const uint8_t bad_stored[] = {0x00, 0x05, 0x00, 0x00, 0x00}; /* LEN != ~NLEN */
    assert_int_equal(inflate_whole(pool, bad_stored, sizeof bad_stored, false, 1000, &msg),
                     WS_INFLATE_BAD_DATA);
    chunk_unref(msg);
    /* Distances further back than the message has bytes: data compressed against a preset
     * dictionary, which permessage-deflate has no way to agree on. */
    static const char dict[] = "a dictionary the receiver never saw, with words to match";
    static const char with_dict[] = "words to match: a dictionary the receiver never saw";
    z_stream s;
    memset(&s, 0, sizeof s);
    assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    assert_int_equal(deflateSetDictionary(&s, (const Bytef *)dict, sizeof dict - 1), Z_OK);
    uint8_t zd[256];
    s.next_in = (Bytef *)with_dict;
    s.avail_in = sizeof with_dict - 1;
    s.next_out = zd;
    s.avail_out = sizeof zd;
    assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
    size_t zdn = sizeof zd - s.avail_out - 4;
    deflateEnd(&s);
    assert_int_equal(inflate_whole(pool, zd, zdn, true, 1000, &msg), WS_INFLATE_BAD_DATA);
    chunk_unref(msg);
    /* A valid message cut in the middle of its block. */
    uint8_t text[2000];
    fill_text(text, sizeof text, 300);
    uint8_t *z;
    size_t zn = client_deflate(text, sizeof text, false, &z);
    assert_int_equal(inflate_whole(pool, z, zn / 2, false, 10000, &msg), WS_INFLATE_BAD_DATA);
    chunk_unref(msg);
    free(z);
    /* After a failed message the pool's inflaters still work. */
    assert_int_equal(
        inflate_whole(pool, (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, true, 100, &msg),
        WS_INFLATE_OK);
    assert_output(msg, "Hello", 5);
    chunk_unref(msg);
    ws_zpool_free(pool);
}

/* Text is checked as UTF-8 once inflated, at the first bad byte; binary is not checked. */
static void test_utf8(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    struct chunk *msg;
    uint8_t *z;
    static const char bad[] = "caf\xc3\xa9 and then \xff garbage";
    size_t zn = client_deflate((const uint8_t *)bad, sizeof bad - 1, false, &z);
    assert_int_equal(inflate_whole(pool, z, zn, true, 1000, &msg), WS_INFLATE_BAD_UTF8);
    chunk_unref(msg);
    assert_int_equal(inflate_whole(pool, z, zn, false, 1000, &msg), WS_INFLATE_OK);
    assert_output(msg, bad, sizeof bad - 1);
    chunk_unref(msg);
    free(z);
    static const char cut[] = "ends inside a character \xe2\x82";
    zn = client_deflate((const uint8_t *)cut, sizeof cut - 1, false, &z);
    assert_int_equal(inflate_whole(pool, z, zn, true, 1000, &msg), WS_INFLATE_BAD_UTF8);
    chunk_unref(msg);
    free(z);
    /* Fail-fast: a bad byte at the start of a long text is refused long before its end. */
    const size_t n = 1u << 20;
    uint8_t *big = malloc(n);
    memset(big, 'a', n);
    big[10] = 0xff;
    zn = client_deflate(big, n, false, &z);
    assert_int_equal(inflate_whole(pool, z, zn, true, n, &msg), WS_INFLATE_BAD_UTF8);
    assert_true(msg->len < 64u << 10);
    chunk_unref(msg);
    free(z);
    /* Multi-byte characters across the inflater's output steps are fine. */
    for (size_t i = 0; i + 4 <= n; i += 4)
        memcpy(big + i, "\xf0\x9f\x8e\x89", 4);
    zn = client_deflate(big, n, false, &z);
    assert_int_equal(inflate_whole(pool, z, zn, true, n, &msg), WS_INFLATE_OK);
    assert_output(msg, big, n);
    chunk_unref(msg);
    free(z);
    free(big);
    ws_zpool_free(pool);
}

/* Random texts and random cuts: the inflater gives back exactly what was compressed. */
static void test_random(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    uint8_t *text = malloc(70000);
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + rnd(round < 150 ? 2000 : 70000);
        fill_text(text, n, 1 + rnd(5000));
        struct chunk *f = ws_deflate_frame(pool, 9 + rnd(7), WS_OP_TEXT, text, n);
        if (!f)
            continue; /* too short to gain */
        size_t plen;
        const uint8_t *payload = frame_payload(f, WS_OP_TEXT, &plen);
        size_t cuts[6];
        random_cuts(cuts, 6, plen);
        struct chunk *msg;
        assert_int_equal(inflate_cuts(pool, payload, plen, cuts, 6, true, n, &msg), WS_INFLATE_OK);
        assert_output(msg, text, n);
        chunk_unref(msg);
        chunk_unref(f);
    }
    free(text);
    ws_zpool_free(pool);
}

/* Inflaters go back to the pool and come out reset; without a pool they are freed. */
static void test_pool(void **state)
{
    (void)state;
    struct ws_zpool *pool = ws_zpool_new();
    struct ws_inflater *zs[8];
    for (int i = 0; i < 8; i++)
        zs[i] = ws_inflater_take(pool);
    /* A message abandoned half-way (a connection that closed) leaves nothing behind. */
    struct chunk *msg = NULL;
    assert_int_equal(
        ws_inflate(zs[0], (const uint8_t *)"\xf2\x48\xcd", 3, false, true, &msg, HEAD, 100),
        WS_INFLATE_OK);
    chunk_unref(msg);
    for (int i = 0; i < 8; i++)
        ws_inflater_give(pool, zs[i]); /* four are kept, four freed */
    for (int i = 0; i < 8; i++) {
        struct ws_inflater *z = ws_inflater_take(pool);
        msg = NULL;
        assert_int_equal(ws_inflate(z, (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, true,
                                    true, &msg, HEAD, 100),
                         WS_INFLATE_OK);
        assert_output(msg, "Hello", 5);
        chunk_unref(msg);
        ws_inflater_give(i % 2 ? pool : NULL, z);
    }
    ws_zpool_free(pool);
    ws_zpool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_sizes),
        cmocka_unit_test(test_window_sizes),
        cmocka_unit_test(test_not_worth_it),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_bomb_stops_at_the_limit),
        cmocka_unit_test(test_limit_exact),
        cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
