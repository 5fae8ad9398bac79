/*
 * auth: hashes and verifies passwords with argon2id (libsodium's
 * crypto_pwhash) on a thread of its own. One hash takes tens of
 * milliseconds and tens of MiB by design; no worker or store waits for it.
 */
#ifndef PARLEY_AUTH_H
#define PARLEY_AUTH_H

#include <stdbool.h>

#include "service.h"

/* Prepares the auth thread; cost_min picks libsodium's minimum cost (tests only). */
int auth_init(struct service *s, bool cost_min);

#endif
