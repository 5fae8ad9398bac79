/*
 * peers: open connections per client address (addr_key), for --max-conns-per-ip.
 * Consulted once per accept and once per close, from any worker, so a
 * mutex is simpler than mail here and never sits on a message's path.
 */
#ifndef PARLEY_PEERS_H
#define PARLEY_PEERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Counts one more connection from key; false (and nothing counted) when limit are open already. */
bool peers_acquire(uint64_t key, uint32_t limit);
/* Counts one connection from key as closed. */
void peers_release(uint64_t key);

#endif
