/*
 * auth: password checks that no client can starve. The auth thread is a
 * dispatcher that never hashes: it keeps the login throttles and a fair queue,
 * and hands one password op at a time to each of a bounded pool of hasher
 * threads (argon2id through libsodium's crypto_pwhash: tens of milliseconds and
 * 64 MiB each, so memory stays under auth_threads x 64 MiB).
 *
 * DESIGN:
 * - Throttles come before any hashing, so a refused attempt costs no hash and is
 *   answered at once (rate_limited, with retry_after). A login is checked when it
 *   arrives (before the store looks up the account), when it joins the queue, and
 *   again when its turn comes; a failure also sweeps its network's queue.
 *   Per network (addr_net_key): failures past --login-fails-address wait 1 s,
 *   doubling to --login-delay-address. Per account: the same with its own limits,
 *   except for a network that logged in to (or registered) that account within
 *   --login-trust, so nobody can lock a user out of their own account by guessing.
 *   A login to a name that is not registered fails without hashing and counts
 *   against the network only. A success forgives the failures its network made on
 *   that same account just before it (typing mistakes); failures on other accounts
 *   stay, so no one launders guesses through an account of their own.
 * - Checks still in progress count: a network (or account) at its allowance waits
 *   for the result of its check under way before its next one starts, so the
 *   parallel hashers never let through more guesses than the allowance.
 * - The fair queue is one FIFO per network; networks are served round-robin, in
 *   three tiers: logins from a network trusted for that account first, then
 *   networks without recent failures, then the others. One network's queued
 *   attempts never wait ahead of another's, and a user who logs in from where they
 *   did before waits only for the hashes already running. Each tier also leaves a
 *   hasher to each tier above it (with two hashers: the trusted tier has one to
 *   itself, the others share one; with four: 4, 3 and 2 of them), so under attack a
 *   returning user's login starts at once.
 * - Every op that reaches the dispatcher is counted as its network's (an entry pin)
 *   until it is answered, at most --auth-queue-address of them per network; tables
 *   are bounded (--throttle-entries each, least recently used forgotten, never an
 *   entry with ops in progress).
 */
#ifndef PARLEY_AUTH_H
#define PARLEY_AUTH_H

#include "config.h"
#include "service.h"

/* Prepares the auth thread and starts its hasher threads. Returns 0 or a negative errno. */
int auth_init(struct service *s, const struct config *cfg);
/* After service_stop: stops the hashers, then frees everything, ops still held included. */
void auth_destroy(struct service *s);

#endif
