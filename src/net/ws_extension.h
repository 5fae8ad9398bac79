/*
 * ws_extension: the Sec-WebSocket-Extensions offers of an upgrade request
 * (RFC 6455 section 9.1) and the negotiation of permessage-deflate (RFC 7692
 * section 7). Pure: no I/O, no allocation.
 *
 * DESIGN: parley accepts the first permessage-deflate offer it can honour
 * and always answers with both no_context_takeover parameters: every message
 * is compressed on its own in both directions. So a room message compressed
 * once can go to every recipient as the same bytes, and no connection keeps a
 * compression window between messages.
 */
#ifndef PARLEY_WS_EXTENSION_H
#define PARLEY_WS_EXTENSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_parser.h"

/* What was agreed for one connection. */
struct ws_deflate_agreement {
    bool on;                  /* permessage-deflate was negotiated */
    uint8_t server_bits;      /* our compressor stays within a window of 2^server_bits (8..15) */
    bool server_bits_asked;   /* the client offered server_max_window_bits: the response names it */
    uint8_t client_bits;      /* the window the client may use (8..15) */
    bool client_bits_offered; /* the client offered client_max_window_bits: the response names it */
};

/* Room for the value written by ws_extension_response, NUL included. */
#define WS_EXTENSION_RESPONSE_MAX 160 /* the longest is 128 characters */

/*
 * Reads every Sec-WebSocket-Extensions header of req, in order, as one list
 * of offers and takes the first permessage-deflate offer that is acceptable:
 * one whose parameters are all known (server_no_context_takeover,
 * client_no_context_takeover, server_max_window_bits, client_max_window_bits),
 * none repeated, with valid values (the no_context_takeover parameters have
 * none; server_max_window_bits has one and client_max_window_bits may have
 * one, a decimal 8..15 without leading zeros, as a token or a quoted string).
 * Other offers, and elements that are not well-formed, are skipped (RFC 7692
 * section 5: a server declines what it cannot accept, it does not fail).
 * Returns true and fills *out when one was accepted; false (out->on false)
 * otherwise.
 */
bool ws_extension_negotiate(const struct http_request *req, struct ws_deflate_agreement *out);

/*
 * Writes the Sec-WebSocket-Extensions value answering agreement a (which must
 * be on), plus a NUL, into out (WS_EXTENSION_RESPONSE_MAX bytes); returns its
 * length.
 */
size_t ws_extension_response(const struct ws_deflate_agreement *a,
                             char out[WS_EXTENSION_RESPONSE_MAX]);

#endif
