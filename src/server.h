/*
 * server: the process's workers and listening sockets. Binds every listener
 * up front (so a port in use is reported before anything starts), gives each
 * worker its own SO_REUSEPORT socket per port, and stops them on request.
 */
#ifndef PARLEY_SERVER_H
#define PARLEY_SERVER_H

#include "config.h"

struct server;

/*
 * Binds the listeners of cfg and starts cfg->workers threads. Returns the
 * server, or NULL after logging why (the caller exits with status 2).
 */
struct server *server_start(const struct config *cfg);

/*
 * Stops accepting, lets every connection say goodbye (WebSockets close with
 * 1001), waits up to timeout_ms for them to finish, then frees the server.
 */
void server_stop(struct server *s, unsigned timeout_ms);

#endif
