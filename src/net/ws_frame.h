/*
 * ws_frame: incremental RFC 6455 frame reader for the server side, and the
 * header writer for the frames the server sends. Pure: no I/O, no allocation.
 *
 * DESIGN: the reader consumes every byte it is given. Partial frame headers
 * and control-frame payloads (at most 125 bytes) are kept inside the reader;
 * data payload is unmasked in place and handed out piece by piece as it
 * arrives, so a connection never has to hold unparsed input, and text that
 * is not UTF-8 is refused at the first bad byte, across fragments too.
 * Message size is checked against max_message when a frame header arrives,
 * before any of its payload is read.
 *
 * With permessage-deflate negotiated (ws_reader_use_deflate), RSV1 on the
 * first frame of a data message marks it compressed: its pieces are handed
 * out as they are (ev.compressed), unchecked as UTF-8 (the inflated text is
 * checked instead), and its limit is on the compressed bytes (see there).
 */
#ifndef PARLEY_WS_FRAME_H
#define PARLEY_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes the server uses. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: "close frame had no code" */
    WS_CLOSE_BAD_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_RESTART = 1012,
};

enum ws_event_type {
    WS_EV_NONE,  /* all input consumed, no event: feed more bytes */
    WS_EV_DATA,  /* a piece of a text or binary message, possibly empty */
    WS_EV_PING,  /* a whole ping; data/len is its payload */
    WS_EV_PONG,  /* a whole pong; data/len is its payload */
    WS_EV_CLOSE, /* a valid close frame: close_code (or WS_CLOSE_NO_STATUS), reason in data/len */
    WS_EV_ERROR, /* protocol violation: close with close_code; reason is static text */
};

struct ws_event {
    enum ws_event_type type;
    uint8_t opcode;      /* DATA: WS_OP_TEXT or WS_OP_BINARY, the message's type */
    bool last;           /* DATA: this piece completes the message */
    bool compressed;     /* DATA: the message is compressed (permessage-deflate, RSV1) */
    const uint8_t *data; /* DATA: in the caller's buffer; PING/PONG/CLOSE: in the reader */
    size_t len;
    uint16_t close_code;
    const char *reason; /* ERROR: static text fit for a close frame */
};

/* What a reader keeps of a frame that arrives in pieces: see ws_reader.spill. */
struct ws_reader_spill {
    uint8_t hdr[14];
    uint8_t ctl[125];
};

/* Reader state. Fields are private; the struct is public so it can live inside a connection, and
 * so a live upgrade's record (handover_rec.c) can carry it: a change to what a field or a stage
 * means needs a new record version there. */
struct ws_reader {
    uint64_t frame_len;   /* payload length of the current frame */
    uint64_t frame_done;  /* payload bytes of the current frame consumed */
    uint64_t msg_len;     /* payload bytes of the current data message so far */
    uint32_t max_message; /* beside utf8_state, where it takes no room of its own */
    uint32_t utf8_state;
    uint8_t mask[4];
    uint8_t stage;
    uint8_t hdr_len;
    uint8_t opcode;     /* current frame's opcode */
    uint8_t msg_opcode; /* data message in progress (TEXT/BINARY), 0 if none */
    bool fin;
    bool failed;
    bool deflate;        /* permessage-deflate negotiated: RSV1 may mark a data message */
    bool msg_compressed; /* the data message in progress is compressed */
    uint8_t error;       /* once failed: which error, so later calls report the same one */
    uint8_t ctl_len;     /* control payload carried in a live upgrade's record */
    /* The header so far (and a control frame's payload so far) of a frame under way. Lent by the
     * caller: it must point to a spill before each ws_reader_feed, and the reader needs it kept
     * between calls only while ws_reader_mid_frame(r); an idle connection has none. */
    struct ws_reader_spill *spill;
};

/* Prepares r for a new connection (with no spill lent). max_message bounds a reassembled data
 * message; above UINT32_MAX it is UINT32_MAX (--max-message allows 1 GiB). */
void ws_reader_init(struct ws_reader *r, uint64_t max_message);

/* True while r is in the middle of a frame: its spill holds bytes it needs on the next call. */
static inline bool ws_reader_mid_frame(const struct ws_reader *r)
{
    return r->hdr_len > 0;
}

/*
 * permessage-deflate was negotiated: from now on RSV1 on the first frame of
 * a text or binary message marks it compressed (RSV1 anywhere else, and RSV2
 * or RSV3 always, are still protocol errors). The inflated size is the
 * caller's to bound; the reader bounds a compressed message's payload as
 * sent at WS_DEFLATE_WIRE_MAX(max_message), so a message can neither go on
 * for ever nor be refused for the few bytes DEFLATE can add to data it cannot
 * compress.
 */
void ws_reader_use_deflate(struct ws_reader *r);
#define WS_DEFLATE_WIRE_MAX(max) ((max) > UINT64_MAX / 4 ? UINT64_MAX / 2 : 2 * (max) + 1024)

/*
 * True when r, read back from a live upgrade's record with r->max_message set, is a state the
 * reader can be in between two calls of ws_reader_feed: not failed, its partial header one that
 * the reader accepted byte by byte, its lengths within their frame and limit, control payload
 * gathered in r->spill->ctl (ctl_len bytes), with a spill whenever ws_reader_mid_frame. A reader in
 * any other state could misbehave on the next byte, so a record with one is refused.
 */
bool ws_reader_valid(const struct ws_reader *r);

/*
 * Consumes bytes from buf[0..len), unmasking data payload in place, until
 * one event is ready or the input is used up; fills *ev and returns the
 * number of bytes consumed. Call again on the rest while bytes remain. An
 * event's data stays valid until the next call. After WS_EV_ERROR the reader
 * is failed: every later call consumes nothing and reports the same error.
 */
size_t ws_reader_feed(struct ws_reader *r, uint8_t *buf, size_t len, struct ws_event *ev);

/*
 * Writes the header of an unmasked server frame with the given opcode and
 * payload length into out (at least WS_MAX_HEADER bytes); returns its length
 * (2, 4 or 10).
 */
#define WS_MAX_HEADER 10
/* The first header byte's RSV1 bit: permessage-deflate's "compressed" mark (RFC 7692 section 6). */
#define WS_RSV1 0x40
size_t ws_frame_header_write(uint8_t *out, bool fin, uint8_t opcode, uint64_t payload_len);

/* Returns true when `code` may appear in a close frame on the wire (RFC 6455 7.4). */
bool ws_close_code_valid(uint16_t code);

#endif
