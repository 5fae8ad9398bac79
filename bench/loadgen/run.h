/*
 * run: one worker process of the load generator. It holds its share of the
 * clients on one epoll loop, follows the coordinator's phases (board.h),
 * speaks parley's protocol or the relay's, sends what the scenario says, and
 * checks at every receiver that each message arrives exactly once and in
 * order: per room by `seq` (parley), per sender by the stamp's count (both).
 */
#ifndef LOADGEN_RUN_H
#define LOADGEN_RUN_H

#include "board.h"
#include "options.h"

#include <stdint.h>

/* Runs worker w (clients [first, first + count)) until PH_END; returns the exit status. */
int run_worker(const struct options *o, struct board *b, uint32_t w, uint32_t first,
               uint32_t count);

#endif
