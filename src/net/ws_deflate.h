/*
 * ws_deflate: permessage-deflate (RFC 7692) over zlib. Compresses one
 * message into a ready frame; inflates a compressed message piece by piece
 * into its reassembly chunk, never past the message limit; and keeps a
 * worker's zlib streams for reuse. No I/O.
 *
 * DESIGN: parley negotiates no context takeover in both directions (see
 * ws_extension.h), so every message is a DEFLATE stream of its own. A
 * compressor is then only scratch space for one call: each worker keeps one
 * per window size and resets it per message. An inflater is state that lives
 * while one compressed message is being received: it is taken from the
 * worker's pool at the message's first frame and given back at its end (or
 * when the connection closes), so an idle connection holds no zlib state.
 * Inflated output is bounded as it is produced: the moment a message would
 * pass the limit, inflation stops, so a small bomb costs no more memory than
 * a legitimate message of the limit's size.
 */
#ifndef PARLEY_WS_DEFLATE_H
#define PARLEY_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

/* A worker's zlib streams: compressors by window size, and idle inflaters. */
struct ws_zpool;

/* Returns a new, empty pool (streams are made on first use). */
struct ws_zpool *ws_zpool_new(void);
/* Frees p and every stream in it. NULL is ignored. */
void ws_zpool_free(struct ws_zpool *p);

/*
 * Compresses payload[0..n) as one message of `opcode` (no context takeover)
 * with an LZ77 window of at most 2^bits bytes (8..15), and returns a new
 * chunk (one reference, the caller's) holding the whole frame at
 * data[0..len): header with FIN and RSV1, then the compressed payload.
 * Returns NULL when n is 0 or compression would not make the payload
 * smaller: the message is then best sent as it is.
 */
struct chunk *ws_deflate_frame(struct ws_zpool *p, unsigned bits, uint8_t opcode,
                               const uint8_t *payload, size_t n);

/* The receiving side of one compressed message. */
struct ws_inflater;

/* Returns an inflater ready for a new message: from p's idle ones, or new. Never NULL. */
struct ws_inflater *ws_inflater_take(struct ws_zpool *p);
/* Gives z back to p for a later message (or frees it when p is NULL or has enough). */
void ws_inflater_give(struct ws_zpool *p, struct ws_inflater *z);

enum ws_inflate_result {
    WS_INFLATE_OK,       /* all of the piece was used; after the last piece, the message is whole */
    WS_INFLATE_TOO_BIG,  /* the message inflates past the limit: close 1009 */
    WS_INFLATE_BAD_DATA, /* not valid DEFLATE data: close 1007 */
    WS_INFLATE_BAD_UTF8, /* a text message inflates to invalid UTF-8: close 1007 */
};

/*
 * Inflates in[0..n), the next piece of a compressed message's payload, and,
 * when `last`, the 4 bytes 00 00 ff ff that RFC 7692 section 7.2.2 appends
 * to it. Output is appended to *msg (made when NULL) at
 * data[head + (*msg)->len], growing the chunk as needed but never beyond head
 * + limit bytes; (*msg)->len counts the output. For `text`, the output is
 * checked as UTF-8 as it is produced, across pieces, failing at the first bad
 * sequence. Returns WS_INFLATE_OK, or the error; after an error the message is
 * dead (give the inflater back, drop *msg).
 */
enum ws_inflate_result ws_inflate(struct ws_inflater *z, const uint8_t *in, size_t n, bool last,
                                  bool text, struct chunk **msg, size_t head, uint64_t limit);

#endif
