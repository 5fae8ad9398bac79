/*
 * hub: the in-process broker: rooms and their members, presence, guests
 * online, the ring of recent messages per room, and fan-out to workers.
 *
 * DESIGN: one thread owns all of it, so joins, leaves and deliveries are
 * ordered without locks. A stored message comes back from the store thread
 * in seq order; the hub encodes it once (events.c) and adds one entry to
 * the batch of each worker that has members in the room; each batch is
 * posted once per hub turn. Because a join's reply and later events travel
 * in the same worker batch, a joining connection sees its replay and then
 * live messages, with nothing between lost or doubled.
 *
 * Large rooms: each room keeps its users in a hash map and in an ordered index (ordset.h), so a
 * join or a leave costs O(log n) and a page of names (who, a large room's joined) the page. A
 * timer on the hub's loop (the tick, every 5 s) decides which rooms are large; a large room sends
 * no presence or typing, only a count at the tick, encoded once, to the connections whose count
 * changed (the workers know what each was told).
 */
#ifndef PARLEY_HUB_H
#define PARLEY_HUB_H

#include "config.h"
#include "service.h"
#include "store.h"

/*
 * Prepares the hub thread for n_workers workers, loading every room and
 * registered user from db (called before the store thread starts).
 * Returns 0 or an error.
 */
int hub_init(struct service *s, const struct config *cfg, struct store *db, int n_workers);
void hub_destroy(struct service *s);
/*
 * A clean stop with other nodes (--broker), once the workers have stopped and before the hub
 * does: the hub says goodbye to the other nodes (broker_goodbye: its users offline there at
 * once, not after --node-lease) behind every event the store has committed for it, so each of
 * them is published first. Main waits for that at most wait_ms. Nothing when alone.
 */
void hub_goodbye(struct service *s, unsigned wait_ms);

#endif
