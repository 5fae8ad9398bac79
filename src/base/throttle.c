/* throttle: failures that become growing delays, and bounded least-recently-used tables. */
#include "throttle.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define FIRST_DELAY_MS 1000u

/* How many whole forgetting periods have passed since s->since_ms. */
static uint64_t periods(const struct throttle_rule *r, const struct throttle_state *s, uint64_t now)
{
    if (now <= s->since_ms || r->max_delay_ms == 0)
        return 0;
    return (now - s->since_ms) / r->max_delay_ms;
}

uint32_t throttle_failures(const struct throttle_rule *r, const struct throttle_state *s,
                           uint64_t now)
{
    uint64_t gone = periods(r, s, now);
    return gone >= s->fails ? 0 : s->fails - (uint32_t)gone;
}

/* The delay after the latest of n failures. */
static uint64_t delay_for(const struct throttle_rule *r, uint32_t n)
{
    if (r->free_fails == 0 || n < r->free_fails)
        return 0;
    uint32_t doublings = n - r->free_fails;
    if (doublings >= 32)
        return r->max_delay_ms;
    uint64_t d = (uint64_t)FIRST_DELAY_MS << doublings;
    return d < r->max_delay_ms ? d : r->max_delay_ms;
}

uint64_t throttle_wait(const struct throttle_rule *r, const struct throttle_state *s, uint64_t now)
{
    uint64_t until = s->last_fail_ms + delay_for(r, throttle_failures(r, s, now));
    return until > now ? until - now : 0;
}

void throttle_fail(const struct throttle_rule *r, struct throttle_state *s, uint64_t now)
{
    uint32_t n = throttle_failures(r, s, now);
    s->fails = n < UINT32_MAX ? n + 1 : n;
    s->since_ms = now; /* forgetting starts over after each failure */
    s->last_fail_ms = now;
}

void throttle_forgive(const struct throttle_rule *r, struct throttle_state *s, uint32_t n,
                      uint64_t now)
{
    uint64_t gone = periods(r, s, now);
    uint32_t left = throttle_failures(r, s, now);
    s->since_ms += gone * r->max_delay_ms; /* keep the phase of the forgetting under way */
    s->fails = left > n ? left - n : 0;
}

/* --- tables --- */

static void unlink_entry(struct throttle_table *t, struct throttle_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(struct throttle_table *t, struct throttle_entry *e)
{
    e->newer = NULL;
    e->older = t->newest;
    if (t->newest)
        t->newest->newer = e;
    else
        t->oldest = e;
    t->newest = e;
}

void throttle_table_init(struct throttle_table *t, size_t max, size_t entry_size)
{
    memset(t, 0, sizeof *t);
    map_init(&t->index, false);
    t->max = max;
    t->entry_size =
        entry_size < sizeof(struct throttle_entry) ? sizeof(struct throttle_entry) : entry_size;
}

void throttle_table_free(struct throttle_table *t)
{
    struct throttle_entry *e = t->newest;
    while (e) {
        struct throttle_entry *next = e->older;
        free(e);
        e = next;
    }
    map_free(&t->index);
    t->newest = t->oldest = NULL;
    t->count = 0;
}

struct throttle_entry *throttle_table_find(struct throttle_table *t, uint64_t key)
{
    struct throttle_entry *e = map_get_u64(&t->index, key);
    if (e && e != t->newest) {
        unlink_entry(t, e);
        push_newest(t, e);
    }
    return e;
}

struct throttle_entry *throttle_table_get(struct throttle_table *t, uint64_t key)
{
    struct throttle_entry *e = throttle_table_find(t, key);
    if (e)
        return e;
    if (t->count >= t->max) {
        /* Pinned entries were used when pinned, so the oldest unpinned one is found near the
         * end. */
        struct throttle_entry *victim = t->oldest;
        while (victim && victim->pins)
            victim = victim->newer;
        if (!victim)
            return NULL;
        unlink_entry(t, victim);
        map_del_u64(&t->index, victim->key);
        t->count--;
        memset(victim, 0, t->entry_size);
        e = victim;
    } else {
        e = xcalloc(1, t->entry_size);
    }
    e->key = key;
    map_put_u64(&t->index, key, e);
    push_newest(t, e);
    t->count++;
    return e;
}
