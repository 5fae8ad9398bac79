/*
 * telnet_session: a person on `telnet host 2323` (or nc): the line
 * protocol of PROTOCOL.md. Asks for a name (and, for a registered one, a
 * password with echo off), joins #general, sends plain lines to the current
 * room and turns slash commands into the same chat ops WebSocket clients
 * use, so both kinds of user share rooms, history and seq.
 */
#ifndef PARLEY_TELNET_SESSION_H
#define PARLEY_TELNET_SESSION_H

#include "conn.h"
#include "handover_rec.h"

/* The longest line accepted, in bytes (PROTOCOL.md: 4 KiB). */
#define TELNET_LINE_MAX 4096

/* Makes c (a new socket on the telnet port) a telnet session and greets. */
void telnet_session_start(struct conn *c);

/*
 * Live upgrades (handover.c): whether c is a telnet session; writing its state (the line being
 * typed and the parser's, the prompt, echo, the name given, the current room, and its chat
 * session) into the record w is writing; making adopted c the session of rec (0, or -1 with
 * *why).
 */
bool telnet_session_owns(const struct conn *c);
/* Whether c's user is in the middle of typing a line (for a live upgrade's log). */
bool telnet_session_partial(const struct conn *c);
/* c has something on its way that this process must finish before c can move in a record of
 * `version` (a request out; before version 4, lines waiting for a token). */
bool telnet_session_busy(const struct conn *c, unsigned version);
void telnet_session_save(struct conn *c, struct hr_writer *w);
int telnet_session_restore(struct conn *c, const struct handover_rec *rec, const char **why);

#endif
