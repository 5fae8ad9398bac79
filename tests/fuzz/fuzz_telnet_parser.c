/* fuzz_telnet_parser: libFuzzer target for the telnet line parser, fed whole and in pieces. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telnet_parser.h"

#include "fuzz_pieces.h"

/*
 * Input layout: byte 0 picks the line buffer size, byte 1 seeds the read
 * sizes, the rest is the byte stream from the client. The stream is read
 * twice, once whole and once in pieces, and both readings must produce the
 * same transcript: the parser may not depend on where reads end. Every call
 * is checked on its own too: it stays inside the input, makes progress while
 * bytes remain, and hands out lines that fit the buffer and hold no line end.
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The events of one reading, as bytes: a tag, then what the event carries. */
struct transcript {
    uint8_t *bytes;
    size_t len, cap;
    size_t ff_in_lines; /* 0xFF bytes handed out in lines; each needs an IAC IAC */
};

static void put(struct transcript *t, const void *p, size_t n)
{
    /* cap was sized for the worst case: an event per input byte, every byte in a line. */
    CHECK(t->len + n <= t->cap);
    if (n > 0)
        memcpy(t->bytes + t->len, p, n);
    t->len += n;
}

static void record(struct transcript *t, const struct telnet_parser *p,
                   const struct telnet_event *ev)
{
    uint8_t tag = (uint8_t)ev->type;
    switch (ev->type) {
    case TELNET_EV_NONE:
        CHECK(ev->line == NULL && ev->len == 0);
        return;
    case TELNET_EV_LINE:
        CHECK(ev->len <= p->cap);
        CHECK(ev->line == p->buf);
        /* Line ends and editing bytes are acted on, never handed out. */
        for (size_t i = 0; i < ev->len; i++) {
            CHECK(ev->line[i] != '\r' && ev->line[i] != '\n');
            CHECK(ev->line[i] != 0x08 && ev->line[i] != 0x7F);
            CHECK(ev->line[i] != 0x03); /* Ctrl-C is an interrupt, never text */
            if (ev->line[i] == TELNET_IAC)
                t->ff_in_lines++;
        }
        put(t, &tag, 1);
        put(t, &ev->len, sizeof ev->len);
        put(t, ev->line, ev->len);
        return;
    case TELNET_EV_TOO_LONG:
    case TELNET_EV_INTERRUPT:
        put(t, &tag, 1);
        return;
    case TELNET_EV_NEGOTIATE:
        CHECK(ev->verb >= TELNET_WILL && ev->verb <= TELNET_DONT);
        put(t, &tag, 1);
        put(t, &ev->verb, 1);
        put(t, &ev->option, 1);
        return;
    }
    CHECK(!"unknown event type");
}

/* Feeds data[0..n) in pieces whose sizes come from `seed` (-1: whole, 0: byte by byte). */
static void reading(const uint8_t *data, size_t n, size_t cap, int seed, struct transcript *t)
{
    /* Exactly cap bytes, so that ASan sees any write past the limit. */
    uint8_t *buf = malloc(cap);
    CHECK(buf != NULL || cap == 0);
    struct telnet_parser p;
    telnet_parser_init(&p, buf, cap);
    uint32_t rng = fuzz_pieces_init((uint8_t)seed);
    size_t pos = 0;
    while (pos < n) {
        size_t piece = n - pos;
        if (seed == 0)
            piece = 1;
        else if (seed > 0)
            piece = fuzz_next_piece(&rng, (uint8_t)seed, piece);
        /* The parser may stop early at an event; the rest of the piece goes in next. */
        size_t end = pos + piece;
        while (pos < end) {
            struct telnet_event ev;
            size_t left = end - pos;
            size_t used = telnet_parse(&p, data + pos, left, &ev);
            CHECK(used <= left);
            CHECK(used > 0);
            if (ev.type == TELNET_EV_NONE)
                CHECK(used == left);
            CHECK(p.len <= p.cap);
            CHECK(p.sb_len <= 1024);
            record(t, &p, &ev);
            pos += used;
        }
    }
    struct telnet_event ev;
    CHECK(telnet_parse(&p, NULL, 0, &ev) == 0);
    CHECK(ev.type == TELNET_EV_NONE);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small sizes reach the limit often; 4096 is the protocol's. */
    static const size_t caps[8] = {0, 1, 2, 3, 5, 16, 64, 4096};
    if (size < 2)
        return 0;
    size_t cap = caps[data[0] & 7];
    int seed = data[1];
    const uint8_t *stream = data + 2;
    size_t n = size - 2;

    struct transcript a = {0}, b = {0};
    a.cap = b.cap = 16 * (n + 1) + n;
    a.bytes = malloc(a.cap);
    b.bytes = malloc(b.cap);
    CHECK(a.bytes != NULL && b.bytes != NULL);

    reading(stream, n, cap, -1, &a);
    reading(stream, n, cap, seed, &b);
    CHECK(a.len == b.len && memcmp(a.bytes, b.bytes, a.len) == 0);

    /* Every 0xFF handed out came from an IAC IAC, so the input held two IACs for each. */
    size_t iacs = 0;
    for (size_t i = 0; i < n; i++)
        iacs += stream[i] == TELNET_IAC;
    CHECK(2 * a.ff_in_lines <= iacs);

    free(a.bytes);
    free(b.bytes);
    return 0;
}
