/*
 * ws_session: a WebSocket connection after the upgrade: frames in and out,
 * the close handshake, server pings and the idle deadline. /echo sends each
 * message back whole; /ws greets and hands each text message to the chat layer.
 */
#ifndef PARLEY_WS_SESSION_H
#define PARLEY_WS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "handover_rec.h"

enum ws_endpoint { WS_ENDPOINT_CHAT, WS_ENDPOINT_ECHO };

/*
 * Where the chat endpoint's messages go: the chat layer above fills this table (chat_json.c) and
 * the process registers it at start (ws_session_set_chat), so this layer never includes the one
 * above it. c->session is the chat session, NULL until the first message.
 */
struct ws_chat {
    /* A whole text message from the client of c; the first one makes its chat session. */
    void (*message)(struct conn *c, const uint8_t *text, size_t len);
    /* c (with a session) has logged in: the login deadline no longer applies. */
    bool (*logged_in)(const struct conn *c);
    /* How far c's login deadline moves, or UINT64_MAX while a password check is pending
     * (chat_session_login_pause). */
    uint64_t (*login_pause)(const struct conn *c);
    /* c is closing (with a session or not). */
    void (*closed)(struct conn *c);
    /* c's output queue has drained (c has a session). */
    void (*drained)(struct conn *c);
    /* Live upgrades: the session of c has a request out that this process must answer first;
     * writing c's session into the record w is writing; making rec's session c's (0, or -1 with
     * *why). */
    bool (*busy)(const struct conn *c, unsigned version);
    void (*save)(struct conn *c, struct hr_writer *w);
    int (*restore)(struct conn *c, const struct handover_rec *rec, const char **why);
};

/* Sets the chat endpoint's table, once at start, before any connection. */
void ws_session_set_chat(const struct ws_chat *chat);

/*
 * Switches c (just sent its 101 response) to WebSocket framing on endpoint
 * ep. deflate_bits: 0, or the server window (8..15) of the permessage-deflate
 * agreed in that response.
 */
void ws_session_start(struct conn *c, enum ws_endpoint ep, unsigned deflate_bits);

/*
 * Queues the unfragmented text or binary frame in bytes [off, end) of chunk,
 * whose payload starts at payload_off, taking over the caller's reference.
 * When c negotiated permessage-deflate and the payload is at least
 * --deflate-threshold bytes, the compressed frame goes instead, if it is
 * smaller. A `shared` chunk is one that many connections send (a room
 * message): its compressed twin is made once, by the first connection that
 * needs it, and kept on the chunk for all others (chunk_alt). Otherwise the
 * compression is for c alone.
 */
void ws_session_send_data(struct conn *c, struct chunk *chunk, size_t off, size_t payload_off,
                          size_t end, bool shared);

/* Sends a close frame with code and reason (at most 123 bytes), then closes gracefully. */
void ws_session_close(struct conn *c, uint16_t code, const char *reason);
/* A password check of c (not logged in) was answered: closes c (1008) if its login deadline,
 * moved by the time the check spent hashing, has passed; else re-arms its timer. */
void ws_session_login_deadline(struct conn *c);

/*
 * Live upgrades (handover.c). ws_session_owns: c is a WebSocket session. ws_session_hold_input:
 * holds c's input (CONN_HOLD_READ) now, or, while a compressed message is arriving (its zlib
 * state cannot move), as soon as that message ends. ws_session_busy: such a message is still
 * arriving, or the chat session has something on its way (struct ws_chat's busy). ws_session_save
 * writes c's WebSocket state (and its chat session) into the record w is writing;
 * ws_session_restore makes adopted c the session of rec, or returns -1 with *why.
 */
bool ws_session_owns(const struct conn *c);
void ws_session_hold_input(struct conn *c);
bool ws_session_busy(const struct conn *c, unsigned version);
/* Whether c is in the middle of a frame or a fragmented message (for a live upgrade's log). */
bool ws_session_partial(const struct conn *c);
void ws_session_save(struct conn *c, struct hr_writer *w);
int ws_session_restore(struct conn *c, const struct handover_rec *rec, const char **why);

#endif
