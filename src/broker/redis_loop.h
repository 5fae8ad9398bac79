/*
 * redis_loop: drives one hiredis async connection from parley's event loop (loop.h), as
 * hiredis's own adapters do for other loops: hiredis says when it wants to read or write, the
 * loop watches the socket and calls hiredis back.
 *
 * DESIGN: the struct outlives the connection it drives: hiredis calls cleanup when it frees the
 * context (on a disconnect, from inside a read), which only stops the watch and forgets the
 * context, so the watch callback can tell that the context is gone and stop touching it.
 */
#ifndef PARLEY_REDIS_LOOP_H
#define PARLEY_REDIS_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/async.h>

#include "loop.h"

struct redis_loop {
    struct loop_watch watch;
    struct loop *loop;
    redisAsyncContext *ac; /* NULL once hiredis freed it */
    uint32_t events;       /* EPOLLIN and EPOLLOUT wanted */
    bool watching;
};

/* Attaches ac (just connected, or connecting) to l through rl. Returns 0 or a negative errno. */
int redis_loop_attach(struct redis_loop *rl, struct loop *l, redisAsyncContext *ac);

#endif
