/*
 * events: encodes server events once, for both transports: the JSON of
 * protocol v1 framed for WebSocket, and the line format of the telnet
 * protocol. A room message is encoded here once and shared by every
 * recipient (see chat.h's struct msg_rec).
 */
#ifndef PARLEY_EVENTS_H
#define PARLEY_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "jsonw.h"
#include "store.h"

/* Encodes a stored message; peer is a dm's recipient name for the telnet line (NULL: from the room
 * name). */
struct msg_rec events_message(const struct store_msg *m, const char *peer);

/* The forms of a timeline event (protocol 1.1 rules 47, 48, 56). */
enum events_form {
    EVENTS_LIVE,   /* as delivered when stored */
    EVENTS_REPLAY, /* as a join's replay sends it: current text, erased parts left out */
};

/* Encodes a stored event of any type in form; peer as for events_message. A deleted message
 * (and, replayed, an edit or reaction of one) comes as {"deleted":true} without its text. */
struct msg_rec events_event(const struct store_msg *m, const char *peer, enum events_form form);

/* One reaction entry of a history entry (rule 56): emoji, how many hold it, whether the
 * requester does, and the first of them (at most EVENTS_REACTION_USERS). */
#define EVENTS_REACTION_USERS 20
struct events_reaction {
    char emoji[STORE_EMOJI_MAX + 1];
    uint32_t count;
    bool me;
    uint32_t n_users;
    char users[EVENTS_REACTION_USERS][STORE_NAME_MAX + 1];
};

/* A history entry (rule 56): message m in its current state with its reactions; its telnet form
 * is the message line ("(edited)" when edited), none when deleted (rule 76). */
struct msg_rec events_history_entry(const struct store_msg *m, const struct events_reaction *r,
                                    size_t n_reactions);

/* What the connections of a kicked or banned user that joined the room get instead of the event
 * (rule 64): {"type":"kicked","room","by","reason"?,"banned"?,"duration"?}, and its telnet line
 * "* You were kicked from #room by NAME (REASON)" (rule 76). */
struct msg_rec events_kicked(const char *room, const char *by, const char *reason, bool banned,
                             uint64_t duration);

/* Presence and typing events for a room (typing has no telnet form: tn is NULL). */
struct msg_rec events_presence(const char *room, const char *user, bool online);
struct msg_rec events_typing(const char *room, const char *user);
/* Protocol 1.1 rule 69: presence with the user's state, online or away, and status_text when
 * text is not NULL. A join's (joined) has the join notice as its telnet line; a status change's
 * has none (rule 76). */
struct msg_rec events_presence_state(const char *room, const char *user, bool joined, bool away,
                                     const char *text);
/* The status a user's other connections get (rule 69): {"type":"status","state":..,"text":..}
 * without id; telnet shows none. */
struct msg_rec events_status(bool away, const char *text);
/* Writes "away":[...],"status_text":{...} of a joined or members reply (rule 70). */
void events_statuses(struct jsonw *w, const struct chat_status_entry *e, size_t n);
/* Rules 66, 67, without id: a read marker moved, or a leave on another connection (JSON only). */
struct msg_rec events_read(const char *room, uint64_t seq);
struct msg_rec events_left(const char *room);

/* A large room's count (rule 83): {"type":"count","room":...,"member_count":n,"large":...}.
 * WebSocket only: telnet shows none (tn is NULL). */
struct msg_rec events_count(const char *room, uint32_t member_count, bool large);
/* The members reply a room sends unasked when it stops being large (rule 83): names[0..n) of
 * member_count users, more when others follow. WebSocket only. */
struct msg_rec events_members(const char *room, const char (*names)[CHAT_NAME_MAX], size_t n,
                              size_t member_count, bool more,
                              const struct chat_status_entry *statuses, size_t n_statuses);

/* Frames the JSON document written by w (started with jsonw_init(w, MSG_JSON_OFF)) as a WebSocket
 * text frame. */
struct msg_rec events_frame(struct jsonw *w);
/* The same, for a frame whose payload goes on for `more` bytes sent after w's (a joined whose
 * shared member list is queued by reference between two parts of w). */
struct msg_rec events_frame_more(struct jsonw *w, size_t more);

/* A text frame of the JSON json[0..n) (a message event carried by a live upgrade's record), in
 * the layout of every other msg_rec: the JSON at MSG_JSON_OFF, the frame header before it. */
struct msg_rec events_ws_text(const void *json, size_t n);

/* Starts a reply object {"type":type,"id":id,... (id omitted when NULL). */
void events_reply_begin(struct jsonw *w, const char *type, const json_t *id);

/* An error reply, framed: {"type":"error","id":...,"code":...,"message":...}. */
struct msg_rec events_error(const json_t *id, enum proto_error err, const char *why);
/* The same with retry_after (whole seconds, > 0): the message says when, and the object
 * carries "retry_after" for programs (a throttled login or registration). */
struct msg_rec events_error_retry(const json_t *id, enum proto_error err, const char *why,
                                  uint32_t retry_after);

#endif
