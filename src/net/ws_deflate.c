/* ws_deflate: per-message DEFLATE for WebSocket frames, bounded inflation, a worker's zlib streams.
 */
#include "ws_deflate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "alloc.h"
#include "utf8.h"
#include "ws_frame.h"

/* The empty stored block that ends a sync flush; RFC 7692 section 7.2.1 strips it from a
 * compressed message and section 7.2.2 puts it back before inflating. */
static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Output per inflate() call. UTF-8 is checked between calls, so a text message that goes bad is
 * refused within this many bytes of output. */
#define INFLATE_STEP (16u << 10)

/* Messages up to this size are compressed at zlib's default level (6), larger ones at level 1.
 * Chat messages are small: there the level changes nothing in time (the per-message setup
 * dominates) and saves a little. A large /echo message at level 6 would hold the worker about
 * 25 ms per MiB; level 1 is five times faster and still shrinks text five- or sixfold. */
#define DEFAULT_LEVEL_MAX (64u << 10)

/* Idle inflaters a pool keeps; more are freed when given back. */
#define POOL_INFLATERS 4

struct ws_inflater {
    z_stream s;
    uint32_t utf8; /* validator state of a text message's output so far */
    bool ended;    /* a final block (BFINAL) was read: the rest of the message is ignored */
    bool fed;      /* some payload arrived */
};

struct ws_zpool {
    z_stream *deflaters[16]; /* by window bits (9..15), made on first use */
    int levels[16];          /* each one's compression level now */
    struct ws_inflater *idle[POOL_INFLATERS];
    size_t n_idle;
};

/* zlib allocates through these, so running out of memory aborts like everywhere else. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return xcalloc(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    free(p);
}

struct ws_zpool *ws_zpool_new(void)
{
    return xcalloc(1, sizeof(struct ws_zpool));
}

static void inflater_free(struct ws_inflater *z)
{
    inflateEnd(&z->s);
    free(z);
}

void ws_zpool_free(struct ws_zpool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < sizeof p->deflaters / sizeof p->deflaters[0]; i++) {
        if (p->deflaters[i]) {
            deflateEnd(p->deflaters[i]);
            free(p->deflaters[i]);
        }
    }
    for (size_t i = 0; i < p->n_idle; i++)
        inflater_free(p->idle[i]);
    free(p);
}

/* The pool's compressor for a window of 2^bits, made on first use. */
static z_stream *deflater(struct ws_zpool *p, unsigned bits)
{
    if (p->deflaters[bits])
        return p->deflaters[bits];
    z_stream *s = xcalloc(1, sizeof *s);
    s->zalloc = z_alloc;
    s->zfree = z_free;
    /* Negative window bits: raw DEFLATE, no zlib header or checksum (RFC 7692 section 7.2.1).
     * memLevel 8 is zlib's default. */
    if (deflateInit2(s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -(int)bits, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        abort(); /* only bad parameters or no memory, which the allocator already aborts on */
    p->deflaters[bits] = s;
    p->levels[bits] = Z_DEFAULT_COMPRESSION;
    return s;
}

struct chunk *ws_deflate_frame(struct ws_zpool *p, unsigned bits, uint8_t opcode,
                               const uint8_t *payload, size_t n)
{
    /* Room for the compressed payload and the 4-byte tail: anything longer would not be
     * smaller than the message, so it is not worth finishing. */
    if (n == 0 || n > UINT_MAX - 4 || n > UINT32_MAX - WS_MAX_HEADER - 4)
        return NULL;
    /* zlib refuses a raw window of 2^8 (since 1.2.9). A window of 2^9 is safe for a client that
     * asked for 2^8: zlib never emits a distance beyond the window size minus 262
     * (MIN_LOOKAHEAD), so with 512 bytes no match reaches further back than 250 bytes, which a
     * 256-byte window decodes. */
    if (bits < 9)
        bits = 9;
    if (bits > 15)
        bits = 15;
    z_stream *s = deflater(p, bits);
    deflateReset(s); /* no context takeover: each message stands alone */
    int level = n <= DEFAULT_LEVEL_MAX ? Z_DEFAULT_COMPRESSION : 1;
    if (p->levels[bits] != level) {
        deflateParams(s, level, Z_DEFAULT_STRATEGY); /* cheap: nothing is pending after a reset */
        p->levels[bits] = level;
    }
    struct chunk *c = chunk_new(WS_MAX_HEADER + n + 4);
    s->next_in = (Bytef *)payload; /* zlib never writes through next_in */
    s->avail_in = (uInt)n;
    s->next_out = c->data + WS_MAX_HEADER;
    s->avail_out = (uInt)(n + 4);
    int rc = deflate(s, Z_SYNC_FLUSH);
    size_t out = n + 4 - s->avail_out;
    /* avail_out == 0: the output filled the room, so it is at least as long as the message. */
    if (rc != Z_OK || s->avail_in != 0 || s->avail_out == 0 || out < 4 ||
        memcmp(c->data + WS_MAX_HEADER + out - 4, tail, 4) != 0 || out - 4 >= n) {
        chunk_unref(c);
        return NULL;
    }
    size_t len = out - 4;
    uint8_t hdr[WS_MAX_HEADER];
    size_t h = ws_frame_header_write(hdr, true, opcode, len);
    hdr[0] |= WS_RSV1; /* RFC 7692 section 6: RSV1 on the first frame marks it compressed */
    /* The frame starts at data[0], so a chunk of it is all frame: the payload moves up. */
    memmove(c->data + h, c->data + WS_MAX_HEADER, len);
    memcpy(c->data, hdr, h);
    c->len = (uint32_t)(h + len);
    if (c->cap - c->len > 64 + c->len / 8)
        c = chunk_grow(c, c->len); /* kept in rings and queues: give back what was not used */
    return c;
}

struct ws_inflater *ws_inflater_take(struct ws_zpool *p)
{
    struct ws_inflater *z;
    if (p && p->n_idle > 0) {
        z = p->idle[--p->n_idle];
        inflateReset(&z->s);
    } else {
        z = xcalloc(1, sizeof *z);
        z->s.zalloc = z_alloc;
        z->s.zfree = z_free;
        /* A window of 2^15 decodes a message compressed with any smaller one, so one kind of
         * inflater serves every client whatever client_max_window_bits it chose. */
        if (inflateInit2(&z->s, -15) != Z_OK)
            abort();
    }
    z->utf8 = UTF8_ACCEPT;
    z->ended = false;
    z->fed = false;
    return z;
}

void ws_inflater_give(struct ws_zpool *p, struct ws_inflater *z)
{
    if (!z)
        return;
    if (p && p->n_idle < POOL_INFLATERS)
        p->idle[p->n_idle++] = z;
    else
        inflater_free(z);
}

/* Makes room for up to `want` more bytes of output in *msg; returns how many there are. */
static size_t room_for(struct chunk **msg, size_t head, uint64_t limit, size_t want)
{
    struct chunk *c = *msg;
    if (!c) {
        size_t cap = limit < 4096 ? (size_t)limit : 4096;
        c = *msg = chunk_new(head + cap);
    }
    size_t free_bytes = c->cap - head - c->len;
    if (free_bytes < want) {
        size_t cap = (size_t)c->cap * 2;
        size_t need = head + c->len + want;
        if (cap < need)
            cap = need;
        if (cap > head + limit)
            cap = (size_t)(head + limit); /* the limit bounds the chunk, whatever the input */
        if (cap > c->cap)
            c = *msg = chunk_grow(c, cap);
        free_bytes = c->cap - head - c->len;
    }
    return free_bytes < want ? free_bytes : want;
}

/* Inflates in[0..n) into *msg; see ws_inflate. */
static enum ws_inflate_result run(struct ws_inflater *z, const uint8_t *in, size_t n, bool text,
                                  struct chunk **msg, size_t head, uint64_t limit)
{
    while (n > 0 && !z->ended) {
        size_t piece = n < UINT_MAX ? n : UINT_MAX;
        z->s.next_in = (Bytef *)in; /* zlib never writes through next_in */
        z->s.avail_in = (uInt)piece;
        for (;;) {
            uint64_t have = *msg ? (*msg)->len : 0;
            uint8_t probe;
            uint8_t *out;
            size_t avail;
            if (have >= limit) {
                /* At the limit: one more byte of output would be one too many. Inflating into a
                 * single spare byte tells whether the message goes on, at the cost of that byte. */
                out = &probe;
                avail = 1;
            } else {
                uint64_t left = limit - have;
                avail =
                    room_for(msg, head, limit, left < INFLATE_STEP ? (size_t)left : INFLATE_STEP);
                out = (*msg)->data + head + (*msg)->len;
            }
            z->s.next_out = out;
            z->s.avail_out = (uInt)avail;
            int rc = inflate(&z->s, Z_SYNC_FLUSH);
            size_t produced = avail - z->s.avail_out;
            if (out == &probe && produced > 0)
                return WS_INFLATE_TOO_BIG;
            if (produced > 0) {
                if (text) {
                    z->utf8 = utf8_validate(z->utf8, out, produced);
                    if (z->utf8 == UTF8_REJECT)
                        return WS_INFLATE_BAD_UTF8;
                }
                (*msg)->len += (uint32_t)produced;
            }
            if (rc == Z_STREAM_END) {
                z->ended = true; /* a final block: what follows in the message is not DEFLATE */
                return WS_INFLATE_OK;
            }
            if (rc == Z_BUF_ERROR)
                break; /* no progress possible: every input byte is used */
            if (rc != Z_OK)
                return WS_INFLATE_BAD_DATA;
            if (z->s.avail_in == 0 && z->s.avail_out > 0)
                break; /* input used up, and nothing held back for lack of room */
        }
        in += piece;
        n -= piece;
    }
    return WS_INFLATE_OK;
}

enum ws_inflate_result ws_inflate(struct ws_inflater *z, const uint8_t *in, size_t n, bool last,
                                  bool text, struct chunk **msg, size_t head, uint64_t limit)
{
    if (limit > UINT32_MAX - head)
        limit = UINT32_MAX - head; /* a chunk counts its length in 32 bits */
    z->fed = z->fed || n > 0;
    enum ws_inflate_result r = run(z, in, n, text, msg, head, limit);
    if (r != WS_INFLATE_OK || !last)
        return r;
    /* A compressed message without a byte of payload is not DEFLATE (even an empty message
     * compresses to one byte, RFC 7692 section 7.2.3.6), but some clients send it for an empty
     * message; it can only mean that. */
    if (!z->ended && z->fed) {
        r = run(z, tail, sizeof tail, text, msg, head, limit);
        if (r != WS_INFLATE_OK)
            return r;
        /* data_type has 128 set when inflate stopped at a block boundary. Otherwise the message
         * ended inside a block: its data was cut short. */
        if (!z->ended && !(z->s.data_type & 128))
            return WS_INFLATE_BAD_DATA;
    }
    if (!*msg)
        *msg = chunk_new(head); /* an empty message */
    if (text && z->utf8 != UTF8_ACCEPT)
        return WS_INFLATE_BAD_UTF8;
    return WS_INFLATE_OK;
}
