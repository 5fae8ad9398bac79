/*
 * ws_session: a WebSocket connection after the upgrade: frames in and out,
 * the close handshake, server pings and the idle deadline. /echo sends each
 * message back whole; /ws greets and hands each text message to the chat layer.
 */
#ifndef PARLEY_WS_SESSION_H
#define PARLEY_WS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

enum ws_endpoint { WS_ENDPOINT_CHAT, WS_ENDPOINT_ECHO };

/* Switches c (just sent its 101 response) to WebSocket framing on endpoint ep. */
void ws_session_start(struct conn *c, enum ws_endpoint ep);

/* Sends a close frame with code and reason (at most 123 bytes), then closes gracefully. */
void ws_session_close(struct conn *c, uint16_t code, const char *reason);
/* A password check of c (not logged in) was answered: closes c (1008) if its login deadline,
 * moved by the time the check spent hashing, has passed; else re-arms its timer. */
void ws_session_login_deadline(struct conn *c);

#endif
