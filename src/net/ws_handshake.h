/*
 * ws_handshake: the checks of a WebSocket opening handshake (RFC 6455 4.2),
 * the Origin policy of PROTOCOL.md and the Host policy of --public-host. Pure
 * apart from OpenSSL's SHA-1.
 */
#ifndef PARLEY_WS_HANDSHAKE_H
#define PARLEY_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http_parser.h"

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/*
 * Checks that req is a valid WebSocket upgrade: GET, HTTP/1.1, Upgrade
 * holding "websocket", Connection holding "upgrade", exactly one
 * Sec-WebSocket-Key that is base64 of 16 bytes, Sec-WebSocket-Version 13.
 * On success writes the Sec-WebSocket-Accept value plus a NUL into accept
 * and returns true; otherwise returns false (the caller answers 426).
 */
bool ws_handshake_check(const struct http_request *req, char accept[WS_ACCEPT_LEN + 1]);

/* Writes base64(SHA-1(key + RFC 6455 GUID)) plus a NUL into out. */
void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/*
 * Computes the accept key of RFC 6455's example (section 1.3) and returns true when it is the
 * RFC's. Called once at start-up: OpenSSL's first digest loads its provider and pages in about
 * 2 MB of its code, a fixed cost the process then pays before its first client, not with it.
 */
bool ws_handshake_self_check(void);

/*
 * The Origin policy (PROTOCOL.md rules 30 and 44). Returns true when req has
 * no Origin header, or its Origin's host and port equal the Host header's
 * (case-insensitive, any scheme; a missing port is the scheme's default: 80
 * for http/ws, 443 for https/wss; a Host without a port means 80), or the
 * Origin equals one of allowed[0..n) (scheme, host and port compared the
 * same way; "*" in allowed admits every Origin except "null").
 * "Origin: null" and unparsable Origins are refused.
 */
bool ws_origin_allowed(const struct http_request *req, const char *const *allowed,
                       size_t n_allowed);

/*
 * The Host policy of --public-host (closes DNS rebinding, where a hostile page's Origin and Host
 * agree). Returns true when req has exactly one Host header naming one of hosts[0..n): "name" or
 * "[v6]" matches that host on any port; "name:port" matches only that port, a Host without a
 * port counting as default_port (80, or 443 under TLS). Names compare case-insensitively, IPv6
 * literals as addresses. With n == 0 every request passes.
 */
bool ws_host_allowed(const struct http_request *req, const char *const *hosts, size_t n,
                     long default_port);
/* The same policy on a connection where a Host without a port means host_port (443 on TLS). */
bool ws_origin_allowed_on(const struct http_request *req, const char *const *allowed,
                          size_t n_allowed, int host_port);

#endif
