/*
 * metrics: process-wide counters and histograms for GET /metrics, in the
 * Prometheus text format. Updated from any thread with relaxed atomics:
 * each figure is exact, the set of them is not a snapshot.
 */
#ifndef PARLEY_METRICS_H
#define PARLEY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

enum metric_counter {
    METRIC_LOGINS,
    METRIC_MESSAGES_ACCEPTED,
    METRIC_DELIVERIES,
    METRIC_RATE_LIMITED,
    METRIC_SLOW_CONSUMERS,
    METRIC_STORE_ERRORS,
    METRIC_STORE_CHECKPOINTS,       /* WAL checkpoints run by the checkpointer thread */
    METRIC_STORE_BOUND_CHECKPOINTS, /* WAL checkpoints the writer ran itself, at the bound */
    /* permessage-deflate */
    METRIC_DEFLATE_SHARED,    /* compressions of a shared frame (once per message) */
    METRIC_DEFLATE_OWN,       /* compressions for one connection (replies, echoes) */
    METRIC_DEFLATE_DISCARDED, /* shared compressions another worker had published first */
    METRIC_DEFLATE_BYTES_IN,  /* payload bytes given to the compressor */
    METRIC_DEFLATE_BYTES_OUT, /* payload bytes sent for them (compressed, or as is if no smaller) */
    METRIC_INFLATED,          /* compressed messages received whole */
    METRIC_LOGIN_THROTTLED_ADDRESS, /* refused: the network's failures */
    METRIC_LOGIN_THROTTLED_ACCOUNT, /* refused: the account's failures */
    METRIC_LOGIN_THROTTLED_QUEUE,   /* refused: the network has too many waiting */
    METRIC_AUTH_HASHES,             /* password hashes and verifications finished */
    METRIC_COUNT_ENCODED,           /* large rooms' count events encoded (once per room a tick) */
    METRIC_COUNT_SENT,              /* count events queued to WebSocket connections */
    METRIC_SEARCHES,                /* search requests read from the index */
    METRIC_SEARCH_ROWS,             /* search index rows they examined (rule 72's scan) */
    METRIC_REPLAY_READS,            /* pages of joins' replays read from the store */
    METRIC_RING_SEEDS,              /* reads of a room's newest page to fill the hub's ring */
    METRIC_SEARCH_CATCH_UPS,        /* search backlogs indexed (SQLite: after the commit) */
    METRIC_WAVES_WAITED,            /* hub batches that waited for the commit under way */
    METRIC_WAVES_WAITED_OUT,        /* of those, the ones that left at the time limit */
    METRIC_COUNTERS,
};

/* Levels that go up and down, set by their one owner thread. */
enum metric_gauge {
    GAUGE_AUTH_QUEUED,      /* password ops waiting for a hasher */
    GAUGE_AUTH_HASHING,     /* hashes in progress */
    GAUGE_AUTH_HASHING_MAX, /* the most hashes ever in progress at once */
    GAUGE_SEND_BUCKETS,     /* connections holding a send bucket (made at a send, given back) */
    GAUGE_SEARCH_BACKLOG,   /* messages stored and not yet in the search index (SQLite) */
    METRIC_GAUGES,
};

/* Error replies are counted by their protocol error code, 1 to METRIC_ERROR_CODES - 1 (proto.c
 * checks that its codes fit). */
#define METRIC_ERROR_CODES 64

void metrics_add(enum metric_counter c, uint64_t n);
/* The counter's value now. */
uint64_t metrics_count(enum metric_counter c);
/* Counts one error reply by its protocol error code (index into proto's enum). */
void metrics_error(int code);
/* How many error replies of that code were counted. */
uint64_t metrics_errors(int code);
/* Observes one store commit: how long it took and how many writes it held. */
void metrics_commit(uint64_t micros, size_t batch);

/* The engines parley talks to, each with its latencies and errors in /metrics. */
enum metric_engine { ENGINE_SQLITE, ENGINE_POSTGRES, ENGINE_REDIS, METRIC_ENGINES };
/* What is timed: a store batch (begin to commit, or to rollback when it fails), and a Redis
 * command from send to reply: a publish, a lease refresh, any other. */
enum metric_engine_op { ENGINE_OP_BATCH, ENGINE_OP_PUBLISH, ENGINE_OP_LEASE, ENGINE_OP_COMMAND };
/* Lists engine e's series in /metrics from now on (at zero until something is observed). */
void metrics_engine_use(enum metric_engine e);
void metrics_engine_time(enum metric_engine e, enum metric_engine_op op, uint64_t micros);
/* Counts one failure the engine answered (a statement, a command) or a lost connection. */
void metrics_engine_error(enum metric_engine e);

/*
 * The store's health for /healthz: NULL while it is fine, else a short static text saying what is
 * wrong (e.g. that the database file was deleted). Set by the store thread, read anywhere.
 */
void metrics_set_store_problem(const char *problem);
const char *metrics_store_problem(void);
void metrics_set(enum metric_gauge g, uint64_t value);
/* Moves a gauge that several threads keep together by delta. */
void metrics_gauge_add(enum metric_gauge g, int64_t delta);
/* Observes how long a password op waited for a hasher. */
void metrics_auth_wait(uint64_t micros);

/*
 * The process's place in its line of upgrades (upgrade.c): its generation (1 at a fresh start,
 * one more for each process that took over), upgrades done and failed, connections handed over
 * live and connections a live upgrade could not move (drained with 1012 instead: TLS, refused
 * records, busy past the bound), all carried from process to process. Set by the main thread,
 * read anywhere.
 */
struct metrics_upgrades {
    uint64_t generation, done, failed, handed_over, drained;
};
void metrics_set_upgrades(const struct metrics_upgrades *u);
void metrics_get_upgrades(struct metrics_upgrades *out);

/*
 * The lines of /metrics whose figures belong to a layer above this one (open connections and
 * socket writes in net, TLS in net, error replies by code in chat): that layer writes them with
 * metrics_put, in a function the process registers at start (metrics_set_part), so this file
 * includes none of them. Each part has its fixed place in the output; one not registered is
 * left out.
 */
struct metrics_out;
enum metrics_part {
    METRICS_PART_CONNECTIONS,   /* first */
    METRICS_PART_SOCKET_WRITES, /* after the deliveries */
    METRICS_PART_ERRORS,        /* after the searches */
    METRICS_PART_TLS,           /* before the store's histograms */
    METRICS_PART_BROKER,        /* last: the other nodes (src/broker) */
    METRICS_PARTS,
};
void metrics_set_part(enum metrics_part part, void (*render)(struct metrics_out *o));
/* /healthz's members about the engines (the node, its store and broker), as JSON members with a
 * leading comma, written by the layer that knows them (registered at start); "" when none is. */
void metrics_set_health(void (*render)(char *out, size_t cap));
void metrics_health(char *out, size_t cap);
/* Appends printf-formatted Prometheus text to the output being rendered. */
void metrics_put(struct metrics_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Renders every metric (and the registered parts) as Prometheus text into a new chunk. */
struct chunk *metrics_render(uint64_t uptime_s);

#endif
