/*
 * wsc: the client side of RFC 6455 framing for the load generator. Pure: no
 * I/O, no allocation. It writes masked client frames and the upgrade request,
 * checks the server's 101 answer, and parses the unmasked frames a server
 * sends.
 *
 * DESIGN: the parser works on whole frames, picohttpparser style: given the
 * bytes received so far it returns a complete frame (header and payload,
 * pointing into the caller's buffer), or says how many bytes the frame needs,
 * or rejects it. The caller keeps an incomplete frame's bytes and feeds them
 * again with what follows, so any cut in the byte stream is handled; message
 * fragmentation (continuation frames, control frames between fragments) is
 * the caller's to reassemble with the opcodes this reports.
 */
#ifndef LOADGEN_WSC_H
#define LOADGEN_WSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WSC_OP_CONT = 0x0,
    WSC_OP_TEXT = 0x1,
    WSC_OP_BINARY = 0x2,
    WSC_OP_CLOSE = 0x8,
    WSC_OP_PING = 0x9,
    WSC_OP_PONG = 0xA,
};

/* The largest header of a client frame: 2 + 8 length bytes + 4 mask bytes. */
#define WSC_MAX_HEADER 14

struct wsc_frame {
    uint8_t opcode;
    bool fin;
    const uint8_t *payload; /* into the caller's buffer */
    uint64_t len;
    uint64_t
        need; /* when wsc_frame_parse returns 0: bytes the frame needs (0: header unknown yet) */
};

/*
 * Parses one server frame at the start of buf[0..len). Returns the frame's
 * size in bytes (> 0) and fills *f; 0 when more bytes are needed (f->need says
 * how many in all once the header is known); -1 when the frame breaks RFC 6455
 * for a server (a masked frame, reserved bits, an unknown opcode, a
 * fragmented or over-long control frame, a length with its top bit set).
 */
int64_t wsc_frame_parse(const uint8_t *buf, size_t len, struct wsc_frame *f);

/*
 * Writes one masked client frame (header, then the payload XORed with mask)
 * into out, which must hold WSC_MAX_HEADER + len bytes. Returns the bytes
 * written.
 */
size_t wsc_frame_write(uint8_t *out, uint8_t opcode, bool fin, const uint8_t *payload, size_t len,
                       uint32_t mask);

/* The 24-character Sec-WebSocket-Key for 16 key bytes, NUL-terminated in out[25]. */
void wsc_key_encode(const uint8_t key[16], char out[25]);

/*
 * Writes the upgrade request for host (as the Host header, "127.0.0.1:9999")
 * and path with the given key into out (cap bytes). Returns its length, or 0
 * when it does not fit.
 */
size_t wsc_request_write(char *out, size_t cap, const char *host, const char *path,
                         const char key[25]);

/*
 * Checks a complete response head (buf[0..len) up to and including the empty
 * line) against the key sent: status 101 and the matching
 * Sec-WebSocket-Accept. Returns NULL when it is good, else static text saying
 * what is wrong.
 */
const char *wsc_response_check(const char *buf, size_t len, const char key[25]);

#endif
