/*
 * board: the memory the coordinator and its worker processes share (mapped
 * before fork): the run's phase, counters the coordinator watches, the
 * cross-process tallies the scenarios need (deliveries per broadcast message,
 * per round, the latest acknowledged seq of every room, every sender's count),
 * and each worker's results for the coordinator to merge.
 *
 * DESIGN: only the coordinator moves the phase forward (and wakes every
 * worker through its eventfd); a worker only adds to counters and writes its
 * own slot. The one exception is the end of a broadcast message's fan-out or
 * of an all-to-all round, which whichever worker sees the last delivery
 * records, waking the worker that sends next, so no polling sits in the
 * measured path.
 */
#ifndef LOADGEN_BOARD_H
#define LOADGEN_BOARD_H

#include "hist.h"

#include <stdatomic.h>
#include <stdint.h>

enum phase {
    PH_SETUP,   /* connecting, logging in, joining */
    PH_HOLD,    /* idle: everyone connected, nothing sent */
    PH_TRAFFIC, /* the scenario's sends */
    PH_LAG,     /* storm: the sends go on, the clients read nothing (--storm-lag) */
    PH_STORM,   /* storm: every client dropped its connection and comes back */
    PH_DRAIN,   /* no new sends; waiting for the acks of those sent */
    PH_CHECK,   /* waiting until every receiver has everything that was sent */
    PH_END,     /* workers write their results and exit */
};

/* What can go wrong, counted per worker and summed. */
struct faults {
    uint64_t lost;             /* messages a receiver never got */
    uint64_t duplicated;       /* messages a receiver got twice */
    uint64_t reordered;        /* messages that came after a later one */
    uint64_t unexpected_close; /* connections closed by the server or the network */
    uint64_t connect_failed;   /* connections that never became ready */
    uint64_t server_errors;    /* error replies */
    uint64_t bad_frames;       /* frames or JSON the client could not read */
    uint64_t wrong_room;       /* a message of a room the client is not in */
};

struct board_worker {
    atomic_uint_fast64_t ready;   /* clients connected (and joined) */
    atomic_uint_fast64_t failed;  /* clients that could not connect */
    atomic_uint_fast64_t back;    /* storm: clients back and replayed */
    atomic_uint_fast64_t last_rx; /* when a client of this worker last received a message */
    atomic_int drained;           /* every send of this worker is acked */
    atomic_int checked;           /* every client of this worker has every message */
    atomic_int finished;          /* results below are written */
    int efd;                      /* this worker's eventfd: the coordinator's and others' wake-up */
    /* Results, written once at PH_END. */
    uint64_t sent, resent, acked, deliveries, replayed;
    uint64_t replay_min; /* storm: the fewest messages a client of this worker had replayed */
    uint64_t retries;    /* --storm-restart: reconnects tried again */
    struct faults faults;
    struct hist latency; /* send -> receipt, every live delivery */
    struct hist fanout;  /* broadcast: send -> the last receiver */
    struct hist setup;   /* per client: connect -> ready */
    char problem[240];   /* the first fault, in words */
};

struct board {
    atomic_int phase;
    uint32_t workers;
    uint32_t clients;
    atomic_uint_fast64_t completed;        /* broadcast: messages every receiver has */
    atomic_uint_fast64_t round;            /* all: the round being sent (1-based) */
    atomic_uint_fast64_t round_deliveries; /* all: deliveries of that round so far */
    atomic_uint_fast64_t rounds_done;
    uint64_t round_start;              /* all: when the current round was started */
    struct hist rounds;                /* all: round times, added by the worker ending one */
    atomic_uint_fast32_t *msg_count;   /* broadcast: deliveries per message [messages] */
    atomic_uint_fast64_t *room_final;  /* the highest acknowledged seq per room [rooms] */
    atomic_uint_fast32_t *sender_sent; /* messages sent per client [clients] */
    struct board_worker *w;            /* [workers] */
};

/*
 * Maps a board shared by the processes forked after it, with eventfds for
 * `workers` workers. Returns NULL after printing why, on failure.
 */
struct board *board_create(uint32_t workers, uint32_t clients, uint32_t messages, uint32_t rooms);

/* Wakes worker i (adds 1 to its eventfd). */
void board_wake(struct board *b, uint32_t i);

/* Moves every worker to phase p and wakes them all. */
void board_set_phase(struct board *b, enum phase p);

/* Raises *slot to v if v is higher. */
void board_max(atomic_uint_fast64_t *slot, uint64_t v);

/* CLOCK_MONOTONIC in nanoseconds: the same clock in every process. */
uint64_t board_now(void);

#endif
