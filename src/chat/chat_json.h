/*
 * chat_json: the WebSocket transport of the chat layer, the equal of
 * telnet_session: each protocol v1 request (a JSON text) is parsed,
 * validated and turned into a chat op for chat_session, and each result
 * comes back as a JSON reply or error. Events themselves are encoded once
 * for all recipients (events.c); this file writes what one connection asked.
 */
#ifndef PARLEY_CHAT_JSON_H
#define PARLEY_CHAT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "chat_session.h"
#include "ws_session.h"

/* The WebSocket transport: results and events as protocol v1 JSON. */
const struct chat_transport *chat_json_transport(void);

/* Handles one protocol v1 request (a JSON text) from a WebSocket client. */
void chat_session_json(struct conn *c, const uint8_t *json, size_t len);

/* What the WebSocket chat endpoint calls (ws_session_set_chat): requests here, the rest to
 * chat_session. */
const struct ws_chat *chat_json_ws(void);

#endif
