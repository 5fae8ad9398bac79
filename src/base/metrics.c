/* metrics: atomic counters and fixed-bucket histograms, rendered as Prometheus text. */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

static atomic_uint_fast64_t counters[METRIC_COUNTERS];
static atomic_uint_fast64_t errors[METRIC_ERROR_CODES];
static atomic_uint_fast64_t gauges[METRIC_GAUGES];

/* Commit latency buckets in seconds, and batch size buckets in writes. */
static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define N_LATENCY (sizeof latency_bounds / sizeof latency_bounds[0])
static const unsigned batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define N_BATCH (sizeof batch_bounds / sizeof batch_bounds[0])

static atomic_uint_fast64_t latency_buckets[N_LATENCY];
static atomic_uint_fast64_t latency_count, latency_sum_us;
static atomic_uint_fast64_t batch_buckets[N_BATCH];
static atomic_uint_fast64_t batch_count, batch_sum;
static _Atomic(const char *) store_problem;
static atomic_uint_fast64_t up_generation = 1, up_done, up_failed, up_handed_over, up_drained;

void metrics_set_upgrades(const struct metrics_upgrades *u)
{
    atomic_store_explicit(&up_generation, u->generation, memory_order_relaxed);
    atomic_store_explicit(&up_done, u->done, memory_order_relaxed);
    atomic_store_explicit(&up_failed, u->failed, memory_order_relaxed);
    atomic_store_explicit(&up_handed_over, u->handed_over, memory_order_relaxed);
    atomic_store_explicit(&up_drained, u->drained, memory_order_relaxed);
}

void metrics_get_upgrades(struct metrics_upgrades *out)
{
    out->generation = atomic_load_explicit(&up_generation, memory_order_relaxed);
    out->done = atomic_load_explicit(&up_done, memory_order_relaxed);
    out->failed = atomic_load_explicit(&up_failed, memory_order_relaxed);
    out->handed_over = atomic_load_explicit(&up_handed_over, memory_order_relaxed);
    out->drained = atomic_load_explicit(&up_drained, memory_order_relaxed);
}

void metrics_set_store_problem(const char *problem)
{
    atomic_store_explicit(&store_problem, problem, memory_order_release);
}

const char *metrics_store_problem(void)
{
    return atomic_load_explicit(&store_problem, memory_order_acquire);
}

/* Waits for a hasher, in seconds: from nothing (a free hasher) to a long queue under attack. */
static const double wait_bounds[] = {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0};
#define N_WAIT (sizeof wait_bounds / sizeof wait_bounds[0])
static atomic_uint_fast64_t wait_buckets[N_WAIT];
static atomic_uint_fast64_t wait_count, wait_sum_us;

void metrics_add(enum metric_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

uint64_t metrics_count(enum metric_counter c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

void metrics_error(int code)
{
    if (code > 0 && code < METRIC_ERROR_CODES)
        atomic_fetch_add_explicit(&errors[code], 1, memory_order_relaxed);
}

uint64_t metrics_errors(int code)
{
    return code > 0 && code < METRIC_ERROR_CODES
               ? atomic_load_explicit(&errors[code], memory_order_relaxed)
               : 0;
}

void metrics_commit(uint64_t micros, size_t batch)
{
    for (size_t i = 0; i < N_LATENCY; i++)
        if ((double)micros / 1e6 <= latency_bounds[i])
            atomic_fetch_add_explicit(&latency_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us, micros, memory_order_relaxed);
    for (size_t i = 0; i < N_BATCH; i++)
        if (batch <= batch_bounds[i])
            atomic_fetch_add_explicit(&batch_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&batch_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&batch_sum, batch, memory_order_relaxed);
}

/* Engine latencies in seconds: a Redis command on the same host takes tens of microseconds, a
 * batch of a thousand writes may take a second. */
static const double engine_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5};
#define N_ENGINE_BOUNDS (sizeof engine_bounds / sizeof engine_bounds[0])
#define ENGINE_OPS 4

struct engine_hist {
    atomic_uint_fast64_t buckets[N_ENGINE_BOUNDS];
    atomic_uint_fast64_t count, sum_us;
};

static atomic_bool engine_used[METRIC_ENGINES];
static struct engine_hist engine_hist[METRIC_ENGINES][ENGINE_OPS];
static atomic_uint_fast64_t engine_errors[METRIC_ENGINES];

void metrics_engine_use(enum metric_engine e)
{
    atomic_store_explicit(&engine_used[e], true, memory_order_relaxed);
}

void metrics_engine_time(enum metric_engine e, enum metric_engine_op op, uint64_t micros)
{
    struct engine_hist *h = &engine_hist[e][op];
    for (size_t i = 0; i < N_ENGINE_BOUNDS; i++)
        if ((double)micros / 1e6 <= engine_bounds[i])
            atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, micros, memory_order_relaxed);
}

void metrics_engine_error(enum metric_engine e)
{
    atomic_fetch_add_explicit(&engine_errors[e], 1, memory_order_relaxed);
}

void metrics_set(enum metric_gauge g, uint64_t value)
{
    atomic_store_explicit(&gauges[g], value, memory_order_relaxed);
}

void metrics_gauge_add(enum metric_gauge g, int64_t delta)
{
    atomic_fetch_add_explicit(&gauges[g], (uint_fast64_t)delta, memory_order_relaxed);
}

void metrics_auth_wait(uint64_t micros)
{
    for (size_t i = 0; i < N_WAIT; i++)
        if ((double)micros / 1e6 <= wait_bounds[i])
            atomic_fetch_add_explicit(&wait_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&wait_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&wait_sum_us, micros, memory_order_relaxed);
}

struct metrics_out {
    struct chunk *c;
};

/* The parts other layers render, set once at start (before any thread reads them). */
static void (*parts[METRICS_PARTS])(struct metrics_out *o);

static void (*health)(char *out, size_t cap);

void metrics_set_health(void (*render)(char *out, size_t cap))
{
    health = render;
}

void metrics_health(char *out, size_t cap)
{
    if (cap)
        out[0] = '\0';
    if (health && cap)
        health(out, cap);
}

void metrics_set_part(enum metrics_part part, void (*render)(struct metrics_out *o))
{
    parts[part] = render;
}

static void part(struct metrics_out *o, enum metrics_part which)
{
    if (parts[which])
        parts[which](o);
}

void metrics_put(struct metrics_out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->c->cap - o->c->len;
        int n = vsnprintf((char *)o->c->data + o->c->len, room, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            o->c->len += (uint32_t)n;
            return;
        }
        o->c = chunk_grow(o->c, o->c->cap * 2);
    }
}

static uint64_t get(atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void counter(struct metrics_out *o, const char *name, const char *help,
                    enum metric_counter c)
{
    metrics_put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                (unsigned long long)get(&counters[c]));
}

static void histogram(struct metrics_out *o, const char *name, const char *help,
                      const double *bounds, atomic_uint_fast64_t *buckets, size_t n,
                      atomic_uint_fast64_t *count, double sum)
{
    metrics_put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < n; i++)
        metrics_put(o, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                    (unsigned long long)get(&buckets[i]));
    unsigned long long total = get(count);
    metrics_put(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, total, name,
                sum, name, total);
}

/* parley_engine_seconds and parley_engine_errors_total, for the engines in use: a store's
 * batches, Redis's publishes, lease refreshes and other commands. */
static void engines(struct metrics_out *o)
{
    static const char *const engine_names[METRIC_ENGINES] = {"sqlite", "postgres", "redis"};
    static const char *const op_names[ENGINE_OPS] = {"batch", "publish", "lease", "command"};
    metrics_put(o, "# HELP parley_engine_seconds Time the engines took: a store batch (begin to "
                   "commit or rollback), a Redis command (send to reply).\n"
                   "# TYPE parley_engine_seconds histogram\n");
    for (int e = 0; e < METRIC_ENGINES; e++) {
        if (!atomic_load_explicit(&engine_used[e], memory_order_relaxed))
            continue;
        for (int op = 0; op < ENGINE_OPS; op++) {
            if ((e == ENGINE_REDIS) != (op != ENGINE_OP_BATCH))
                continue; /* stores have batches, Redis has commands */
            struct engine_hist *h = &engine_hist[e][op];
            char labels[64];
            snprintf(labels, sizeof labels, "engine=\"%s\",op=\"%s\"", engine_names[e],
                     op_names[op]);
            for (size_t i = 0; i < N_ENGINE_BOUNDS; i++)
                metrics_put(o, "parley_engine_seconds_bucket{%s,le=\"%g\"} %llu\n", labels,
                            engine_bounds[i], (unsigned long long)get(&h->buckets[i]));
            unsigned long long total = get(&h->count);
            metrics_put(o,
                        "parley_engine_seconds_bucket{%s,le=\"+Inf\"} %llu\n"
                        "parley_engine_seconds_sum{%s} %.6f\nparley_engine_seconds_count{%s} %llu\n",
                        labels, total, labels, (double)get(&h->sum_us) / 1e6, labels, total);
        }
    }
    metrics_put(o, "# HELP parley_engine_errors_total Failures an engine answered (a statement, "
                   "a command) and connections to it lost.\n"
                   "# TYPE parley_engine_errors_total counter\n");
    for (int e = 0; e < METRIC_ENGINES; e++)
        if (atomic_load_explicit(&engine_used[e], memory_order_relaxed))
            metrics_put(o, "parley_engine_errors_total{engine=\"%s\"} %llu\n", engine_names[e],
                        (unsigned long long)get(&engine_errors[e]));
}

struct chunk *metrics_render(uint64_t uptime_s)
{
    struct metrics_out o = {chunk_new(4096)};
    part(&o, METRICS_PART_CONNECTIONS);
    counter(&o, "parley_logins_total", "Successful logins.", METRIC_LOGINS);
    counter(&o, "parley_messages_accepted_total", "Messages stored and acknowledged.",
            METRIC_MESSAGES_ACCEPTED);
    counter(&o, "parley_deliveries_total", "Message events queued to connections.",
            METRIC_DELIVERIES);
    part(&o, METRICS_PART_SOCKET_WRITES);
    counter(&o, "parley_rate_limited_total", "Requests refused by the rate limit.",
            METRIC_RATE_LIMITED);
    counter(&o, "parley_slow_consumers_total", "Connections closed for not reading their output.",
            METRIC_SLOW_CONSUMERS);
    counter(&o, "parley_store_errors_total", "Store operations that failed.", METRIC_STORE_ERRORS);
    counter(&o, "parley_store_checkpoints_total",
            "WAL checkpoints run off the store thread (SQLite).", METRIC_STORE_CHECKPOINTS);
    counter(&o, "parley_store_bound_checkpoints_total",
            "WAL checkpoints a commit waited for, the WAL being at its bound (SQLite).",
            METRIC_STORE_BOUND_CHECKPOINTS);
    counter(&o, "parley_searches_total", "Search requests read from the index.", METRIC_SEARCHES);
    counter(&o, "parley_search_rows_total",
            "Search index rows examined (each search at most --search-scan).", METRIC_SEARCH_ROWS);
    counter(&o, "parley_replay_reads_total", "Pages of joins' replays read from the store.",
            METRIC_REPLAY_READS);
    counter(&o, "parley_ring_seed_reads_total",
            "Reads of a room's newest page to fill the hub's ring of recent messages.",
            METRIC_RING_SEEDS);
    counter(&o, "parley_search_catch_ups_total",
            "Catch-ups that indexed the messages stored since the last (SQLite).",
            METRIC_SEARCH_CATCH_UPS);
    counter(&o, "parley_waves_waited_total",
            "Deliveries the hub held for the commit under way, to leave with its answers in one "
            "write per connection.",
            METRIC_WAVES_WAITED);
    counter(&o, "parley_waves_waited_out_total",
            "Of those, the ones that left at the time limit (2 ms), that commit not yet answered.",
            METRIC_WAVES_WAITED_OUT);
    part(&o, METRICS_PART_ERRORS);
    part(&o, METRICS_PART_TLS);
    histogram(&o, "parley_store_commit_seconds", "Time to commit one batch.", latency_bounds,
              latency_buckets, N_LATENCY, &latency_count, (double)get(&latency_sum_us) / 1e6);
    double bounds[N_BATCH];
    for (size_t i = 0; i < N_BATCH; i++)
        bounds[i] = batch_bounds[i];
    histogram(&o, "parley_store_batch_size", "Writes per committed batch.", bounds, batch_buckets,
              N_BATCH, &batch_count, (double)get(&batch_sum));
    engines(&o);
    metrics_put(&o,
                "# HELP parley_store_healthy 1 while the store takes writes, 0 once it cannot (see "
                "/healthz).\n# TYPE parley_store_healthy gauge\nparley_store_healthy %d\n",
                metrics_store_problem() ? 0 : 1);
    metrics_put(
        &o,
        "# HELP parley_deflate_messages_total Messages compressed (permessage-deflate): shared "
        "frames once per message for all their recipients, own for one connection.\n"
        "# TYPE parley_deflate_messages_total counter\n"
        "parley_deflate_messages_total{kind=\"shared\"} %llu\n"
        "parley_deflate_messages_total{kind=\"own\"} %llu\n",
        (unsigned long long)get(&counters[METRIC_DEFLATE_SHARED]),
        (unsigned long long)get(&counters[METRIC_DEFLATE_OWN]));
    metrics_put(
        &o,
        "# HELP parley_deflate_bytes_total Payload bytes of those messages before (in) and after "
        "(out) compression.\n"
        "# TYPE parley_deflate_bytes_total counter\n"
        "parley_deflate_bytes_total{stage=\"in\"} %llu\n"
        "parley_deflate_bytes_total{stage=\"out\"} %llu\n",
        (unsigned long long)get(&counters[METRIC_DEFLATE_BYTES_IN]),
        (unsigned long long)get(&counters[METRIC_DEFLATE_BYTES_OUT]));
    counter(&o, "parley_deflate_discarded_total",
            "Shared compressions dropped because another worker published the same one first.",
            METRIC_DEFLATE_DISCARDED);
    counter(&o, "parley_inflated_messages_total", "Compressed messages received and inflated.",
            METRIC_INFLATED);
    metrics_put(
        &o,
        "# HELP parley_logins_throttled_total Password logins and registrations refused before "
        "any hashing, by reason.\n# TYPE parley_logins_throttled_total counter\n"
        "parley_logins_throttled_total{reason=\"address\"} %llu\n"
        "parley_logins_throttled_total{reason=\"account\"} %llu\n"
        "parley_logins_throttled_total{reason=\"queue\"} %llu\n",
        (unsigned long long)get(&counters[METRIC_LOGIN_THROTTLED_ADDRESS]),
        (unsigned long long)get(&counters[METRIC_LOGIN_THROTTLED_ACCOUNT]),
        (unsigned long long)get(&counters[METRIC_LOGIN_THROTTLED_QUEUE]));
    counter(&o, "parley_auth_hashes_total", "Password hashes and verifications finished.",
            METRIC_AUTH_HASHES);
    metrics_put(
        &o,
        "# HELP parley_auth_queue_length Password checks waiting for a hasher thread.\n"
        "# TYPE parley_auth_queue_length gauge\nparley_auth_queue_length %llu\n"
        "# HELP parley_auth_hashes_in_progress Password hashes running now.\n"
        "# TYPE parley_auth_hashes_in_progress gauge\nparley_auth_hashes_in_progress %llu\n"
        "# HELP parley_auth_hashes_in_progress_max The most password hashes ever run at once.\n"
        "# TYPE parley_auth_hashes_in_progress_max gauge\n"
        "parley_auth_hashes_in_progress_max %llu\n"
        "# HELP parley_send_buckets Connections holding a send bucket (idle clients hold none).\n"
        "# TYPE parley_send_buckets gauge\nparley_send_buckets %llu\n"
        "# HELP parley_search_backlog Messages stored and not yet in the search index (SQLite).\n"
        "# TYPE parley_search_backlog gauge\nparley_search_backlog %llu\n",
        (unsigned long long)get(&gauges[GAUGE_AUTH_QUEUED]),
        (unsigned long long)get(&gauges[GAUGE_AUTH_HASHING]),
        (unsigned long long)get(&gauges[GAUGE_AUTH_HASHING_MAX]),
        (unsigned long long)get(&gauges[GAUGE_SEND_BUCKETS]),
        (unsigned long long)get(&gauges[GAUGE_SEARCH_BACKLOG]));
    histogram(&o, "parley_auth_wait_seconds", "Time a password check waited for a hasher thread.",
              wait_bounds, wait_buckets, N_WAIT, &wait_count, (double)get(&wait_sum_us) / 1e6);
    struct metrics_upgrades up;
    metrics_get_upgrades(&up);
    metrics_put(
        &o,
        "# HELP parley_generation This process's generation: 1 at a fresh start, one more for "
        "each process that took over from another (an upgrade).\n"
        "# TYPE parley_generation gauge\nparley_generation %llu\n"
        "# HELP parley_upgrades_total Upgrades to a new process, by result, counted since the "
        "first process of this line started (each process passes them on).\n"
        "# TYPE parley_upgrades_total counter\n"
        "parley_upgrades_total{result=\"done\"} %llu\n"
        "parley_upgrades_total{result=\"failed\"} %llu\n"
        "# HELP parley_upgrade_connections_handed_over_total Open connections moved to a new "
        "process with their state (live upgrades; 0 in drain mode).\n"
        "# TYPE parley_upgrade_connections_handed_over_total counter\n"
        "parley_upgrade_connections_handed_over_total %llu\n"
        "# HELP parley_upgrade_connections_drained_total Open connections a live upgrade could "
        "not move, closed with 1012 (TLS, records the new binary refused, requests that did not "
        "finish in time).\n"
        "# TYPE parley_upgrade_connections_drained_total counter\n"
        "parley_upgrade_connections_drained_total %llu\n",
        (unsigned long long)up.generation, (unsigned long long)up.done,
        (unsigned long long)up.failed, (unsigned long long)up.handed_over,
        (unsigned long long)up.drained);
    metrics_put(
        &o,
        "# HELP parley_count_events_total Large rooms' count events: encoded (once per room and "
        "tick) and sent (to each connection given one, sharing that encoding).\n"
        "# TYPE parley_count_events_total counter\n"
        "parley_count_events_total{stage=\"encoded\"} %llu\n"
        "parley_count_events_total{stage=\"sent\"} %llu\n",
        (unsigned long long)get(&counters[METRIC_COUNT_ENCODED]),
        (unsigned long long)get(&counters[METRIC_COUNT_SENT]));
    metrics_put(&o,
                "# HELP parley_uptime_seconds Seconds since the server started.\n"
                "# TYPE parley_uptime_seconds counter\nparley_uptime_seconds %llu\n",
                (unsigned long long)uptime_s);
    part(&o, METRICS_PART_BROKER);
    return o.c;
}
