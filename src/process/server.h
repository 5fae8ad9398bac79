/*
 * server: the process's workers and listening sockets. Binds every listener
 * up front (so a port in use is reported before anything starts), or adopts
 * the sockets this process was handed (systemd, or the process it upgrades
 * from), gives each worker its own SO_REUSEPORT socket per port, and stops
 * them on request.
 *
 * DESIGN: starting is two steps, so a process that takes over from another
 * (an upgrade) can be ready without touching what the other still owns:
 * server_prepare makes everything that serving needs but writes nothing and
 * accepts nothing (the store opens in standby when asked); server_serve then
 * takes the store over, loads the chat state from it and starts accepting.
 */
#ifndef PARLEY_SERVER_H
#define PARLEY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "listen_fds.h"
#include "mailbox.h"
#include "store_thread.h"

struct server;

/*
 * Prepares the server of cfg: TLS contexts, workers, listeners and the store.
 * inherited (may be NULL): sockets passed to this process, used instead of
 * binding their ports; the server takes them (and frees inherited's arrays).
 * standby: another process still writes the store (store_sqlite_options).
 * Returns the server, or NULL after logging why (the caller exits with status 2).
 */
struct server *server_prepare(const struct config *cfg, struct listen_fds *inherited, bool standby);

/*
 * Starts serving: takes the store over, loads rooms, seqs and users from it,
 * starts the hub, store and auth threads and the workers, which accept from
 * then on if `accepting` (else once server_set_accepting says so: a live
 * upgrade adopts connections first). Returns 0, or -1 after logging why (then
 * only server_stop remains).
 */
int server_serve(struct server *s, bool accepting);

/* Asks every worker to watch its listeners or not (the sockets stay open either way). */
void server_set_accepting(struct server *s, bool on);

/*
 * Sets the store's gate for writes (store_thread.h) behind every op already
 * sent to the hub; the mail comes back to reply when it is set.
 */
void server_gate_store(struct server *s, enum store_gate gate, struct mailbox *reply);

/*
 * Starts saying goodbye (why) to every connection, spread evenly over
 * spread_ms; every worker ends by deadline_ms (CLOCK_MONOTONIC ms, clock_ms).
 * Listening sockets stay open for a restart, close for a shutdown.
 */
void server_begin_goodbyes(struct server *s, enum conn_goodbye why, uint64_t spread_ms,
                           uint64_t deadline_ms);

/*
 * The listening sockets of every worker, to hand on: fills fds and kinds
 * (arrays the caller frees) and returns how many. The sockets stay the server's.
 */
size_t server_listeners(struct server *s, int **fds, enum listen_kind **kinds);

/* How many workers s has; posts m to worker i; posts each[0..workers) to the workers through the
 * hub, behind every delivery it has made (struct relay_mail; each is the hub's to free). */
int server_workers(const struct server *s);
void server_post(struct server *s, int worker, struct mail *m);
void server_relay(struct server *s, struct mail **each);

/* Connections open now, of every transport. */
size_t server_connections(void);

/*
 * Says goodbye to every connection (why; at once unless server_begin_goodbyes
 * started earlier), waits up to timeout_ms for them to finish, then frees the
 * server. keep_listeners: the listening sockets are left open (for an exec). goodbye: with other
 * nodes, this node says goodbye to them as it stops (hub_goodbye), rather than leaving its lease
 * to run out: false when a successor goes on with its connections (a live upgrade).
 */
void server_stop(struct server *s, unsigned timeout_ms, enum conn_goodbye why, bool keep_listeners,
                 bool goodbye);

#endif
