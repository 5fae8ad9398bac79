/*
 * tls_session: the first moments of a connection on a TLS port. It waits for
 * the handshake (closing the connection at --tls-handshake-timeout), answers a
 * peer that speaks plain text instead with one short plain message, and once
 * the handshake is done starts the port's session: HTTP (and WebSocket) or
 * telnet lines, exactly as on a plain port.
 */
#ifndef PARLEY_TLS_SESSION_H
#define PARLEY_TLS_SESSION_H

#include "conn.h"

/*
 * Sets what starts a line session once a TLS line port's handshake is done (the chat layer's
 * telnet_session_start, registered by the process at start, so this layer never includes it).
 */
void tls_session_set_line_start(void (*start)(struct conn *c));

/*
 * Adopts fd, just accepted on the TLS port of `transport` (CONN_HTTP or
 * CONN_TELNET), into set as a TLS connection. Returns it, or NULL with fd
 * closed (no TLS state could be made, or epoll refused the socket).
 */
struct conn *tls_session_accept(struct conn_set *set, int fd, enum conn_transport transport);

#endif
