/*
 * telnet_session: a person on `telnet host 2323`. For now it greets and
 * explains that chat over telnet is coming; the line protocol of
 * PROTOCOL.md replaces this with the chat layer.
 */
#ifndef PARLEY_TELNET_SESSION_H
#define PARLEY_TELNET_SESSION_H

#include "conn.h"

/* Makes c (a new socket on the telnet port) a telnet session and greets. */
void telnet_session_start(struct conn *c);

#endif
