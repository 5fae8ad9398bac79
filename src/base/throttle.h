/*
 * throttle: failed-attempt counts that turn into growing delays and are forgotten
 * over time, and bounded tables of keyed entries that forget the least recently
 * used one when full. Pure bookkeeping: no threads, no clock of its own (callers
 * pass `now` in milliseconds), so auth's login throttles are unit-tested here.
 *
 * DESIGN: a rule allows `free_fails` failures; the next attempt must wait 1 s after
 * the latest failure, and each further failure doubles the wait, up to
 * `max_delay_ms`. One failure is forgotten for every `max_delay_ms` that passes
 * without a new one, so a client that keeps failing at the longest delay stays
 * there, and one that stops is clean again after free_fails + a few periods.
 *
 * A table owns its entries (each `entry_size` bytes, beginning with a struct
 * throttle_entry, so a caller embeds its own fields after it). An entry with pins
 * (work in progress that refers to it) is never evicted; when every entry is
 * pinned the table is full and refuses new keys.
 */
#ifndef PARLEY_THROTTLE_H
#define PARLEY_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"

/* Failures allowed, and the longest delay (also the period after which one is forgotten). */
struct throttle_rule {
    uint32_t free_fails; /* 0: the rule never delays anyone */
    uint64_t max_delay_ms;
};

/* The failures of one key. All zero: never failed. */
struct throttle_state {
    uint32_t fails;        /* failures not forgotten as of since_ms */
    uint64_t since_ms;     /* forgetting counts from here */
    uint64_t last_fail_ms; /* the latest failure: the delay counts from here */
};

/* Returns the failures not yet forgotten at now. */
uint32_t throttle_failures(const struct throttle_rule *r, const struct throttle_state *s,
                           uint64_t now);
/* Returns how many ms an attempt at now must still wait (0: it may go ahead). */
uint64_t throttle_wait(const struct throttle_rule *r, const struct throttle_state *s, uint64_t now);
/* Records one failure at now. */
void throttle_fail(const struct throttle_rule *r, struct throttle_state *s, uint64_t now);
/* Forgets n failures (a success showed they were typing mistakes). */
void throttle_forgive(const struct throttle_rule *r, struct throttle_state *s, uint32_t n,
                      uint64_t now);

struct throttle_entry {
    uint64_t key;
    struct throttle_entry *newer, *older; /* the table's recency list */
    uint32_t pins;
};

struct throttle_table {
    struct map index; /* key -> entry */
    struct throttle_entry *newest, *oldest;
    size_t count, max, entry_size;
};

/* Prepares an empty table of at most max entries of entry_size bytes (>= sizeof entry). */
void throttle_table_init(struct throttle_table *t, size_t max, size_t entry_size);
/* Frees every entry and the table's memory. */
void throttle_table_free(struct throttle_table *t);
/* Returns key's entry (now the most recently used), or NULL. */
struct throttle_entry *throttle_table_find(struct throttle_table *t, uint64_t key);
/*
 * Returns key's entry, made zeroed (but for its key) when there is none, evicting the least
 * recently used entry without pins if the table is full. Returns NULL when the table is full
 * and every entry is pinned. The entry is now the most recently used.
 */
struct throttle_entry *throttle_table_get(struct throttle_table *t, uint64_t key);

#endif
