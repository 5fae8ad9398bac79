/*
 * http_session: serves HTTP/1.1 on a connection: the embedded web page,
 * /healthz, /metrics, and WebSocket upgrades on /ws and /echo, which hand the
 * connection to ws_session. Keep-alive, pipelining and HEAD are supported;
 * request bodies are not (a request with one is answered, then closed).
 */
#ifndef PARLEY_HTTP_SESSION_H
#define PARLEY_HTTP_SESSION_H

#include "conn.h"
#include "handover_rec.h"

/* The bytes of a request head, request line to the empty line, accepted at most. */
#define HTTP_MAX_HEAD 8192

/* Makes c (a new socket on the HTTP port) an HTTP session. */
void http_session_start(struct conn *c);

/* Live upgrades (handover.c): whether c is an HTTP session; making adopted c the HTTP session of
 * rec (its bits and input are the connection's, restored by the caller). Returns 0. */
bool http_session_owns(const struct conn *c);
int http_session_restore(struct conn *c, const struct handover_rec *rec, const char **why);

#endif
