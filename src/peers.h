/*
 * peers: keys for remote addresses (the connection limit counts by address; login
 * throttling by network), and open connections per remote address, for --max-conns-per-ip.
 * Consulted once per accept and once per close, from any worker, so a
 * mutex is simpler than mail here and never sits on a message's path.
 */
#ifndef PARLEY_PEERS_H
#define PARLEY_PEERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Returns a key for the socket's remote address (never 0), or 0 if it has none. */
uint64_t peers_key(int fd);

/*
 * Returns the key of the client's network, for login throttling (never 0), or 0 if it has
 * none: the address for IPv4 (also when a dual-stack listener sees it as ::ffff:a.b.c.d), the
 * /64 for IPv6, since one subscriber holds a whole /64 and may pick any address in it.
 */
uint64_t peers_net_key_of(const struct sockaddr_storage *sa);
/* The same for a connected socket's remote address. */
uint64_t peers_net_key(int fd);

/* Counts one more connection from key; false (and nothing counted) when limit are open already. */
bool peers_acquire(uint64_t key, uint32_t limit);
/* Counts one connection from key as closed. */
void peers_release(uint64_t key);

#endif
