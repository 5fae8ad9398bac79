/*
 * room_order: delivers one room's events in seq order, each once, whatever order (and however
 * often, or whether at all) they arrive in from the broker.
 *
 * DESIGN: a pure module (no I/O, no clock of its own: the caller passes now_ms). Redis pub/sub
 * may drop or reorder what crosses nodes, while the store has every seq of a room without a gap
 * (a seq is assigned in the transaction that stores it). So the module passes on the next
 * expected seq at once, holds an event that arrives ahead of a gap for hold_ms (counted from the
 * arrival of the earliest event waiting beyond the gap), then asks its user to fill the gap from
 * the store; after a reconnect that may have lost messages (room_order_lost) it asks at once, from
 * the next expected seq to the store's newest. Fill results are offered like any event;
 * duplicates and events already passed are discarded. At most max_held events wait; past that
 * the newest are discarded and read again by a later fill (the module remembers the highest
 * seq it has seen, so it knows they exist).
 *
 * Callbacks may call back into the same room_order (the module reads its state afresh after
 * each one): deliver may offer an event the user makes in answer, and fill may be a synchronous
 * read that offers events and calls room_order_filled before it returns.
 */
#ifndef PARLEY_ROOM_ORDER_H
#define PARLEY_ROOM_ORDER_H

#include <stdbool.h>
#include <stdint.h>

/* A fill's `to` when it must read up to the store's newest event. */
#define ROOM_ORDER_UNBOUNDED UINT64_MAX
/* room_order_due when nothing is due. */
#define ROOM_ORDER_NEVER UINT64_MAX

struct room_order_ops {
    /* Passes ev, the event with this seq, on: in seq order, each seq at most once. Takes ev. */
    void (*deliver)(void *ctx, uint64_t seq, void *ev);
    /* ev was a duplicate (or could not be held): frees it. */
    void (*discard)(void *ctx, void *ev);
    /* Asks for the events [from, to] from the store (to may be ROOM_ORDER_UNBOUNDED): offer each
     * one found, then call room_order_filled, or room_order_fill_failed. One fill at a time. */
    void (*fill)(void *ctx, uint64_t from, uint64_t to);
};

struct room_order_held {
    uint64_t seq;
    uint64_t arrived_ms;
    void *ev;
};

/* The fields are the module's; callers embed the struct and use the functions. */
struct room_order {
    const struct room_order_ops *ops;
    void *ctx;
    uint64_t next;      /* the next seq to pass on: every seq below it was passed or skipped */
    uint64_t known_max; /* the highest seq seen: the store has every seq up to it */
    uint64_t hold_ms;
    uint64_t retry_at;            /* no fill before this (after a failed one) */
    uint64_t fill_from;           /* where the fill under way (or the last one) began */
    uint64_t gap_at;              /* when a gap with nothing held beyond it was learnt of */
    struct room_order_held *held; /* sorted by seq, each > next */
    uint32_t n_held, cap_held, max_held;
    bool filling;   /* a fill is under way */
    bool unbounded; /* ... up to the store's newest */
    bool lost;      /* a reconnect said events may be lost: read up to the newest */
    bool in_fill;   /* inside ops->fill: no nested fill */
    bool dropped;   /* events beyond the gap were discarded (too many held): fill at once */
};

/* Starts o with next as the next seq expected (the newest the caller has, plus one). */
void room_order_init(struct room_order *o, const struct room_order_ops *ops, void *ctx,
                     uint64_t next, uint64_t hold_ms, uint32_t max_held);
/* Discards every held event. */
void room_order_free(struct room_order *o);

/* An event arrived (from the broker, the node itself, or a fill). Takes ev. */
void room_order_offer(struct room_order *o, uint64_t seq, void *ev, uint64_t now_ms);
/* Seq exists (a hint, e.g. a room's newest seq read from the broker), its event not given:
 * a gap up to it is filled hold_ms later unless the events arrive meanwhile. */
void room_order_seen(struct room_order *o, uint64_t seq, uint64_t now_ms);
/* Events may have been lost (a reconnect): fill from next to the store's newest at once. */
void room_order_lost(struct room_order *o, uint64_t now_ms);
/* The fill under way found every event the store has up to upto (offered before this call);
 * a seq at or below it that was not offered no longer exists (retention) and is skipped. */
void room_order_filled(struct room_order *o, uint64_t upto, uint64_t now_ms);
/* The fill under way failed: it is asked again hold_ms later. */
void room_order_fill_failed(struct room_order *o, uint64_t now_ms);

/* When the caller must call room_order_run next (a hold expires), or ROOM_ORDER_NEVER. */
uint64_t room_order_due(const struct room_order *o);
/* Asks for a fill if one is due at now_ms. */
void room_order_run(struct room_order *o, uint64_t now_ms);

/* The next seq to pass on, and the events waiting. */
static inline uint64_t room_order_next(const struct room_order *o)
{
    return o->next;
}
/* The highest seq seen (offered, hinted or filled). */
static inline uint64_t room_order_known(const struct room_order *o)
{
    return o->known_max;
}
static inline uint32_t room_order_held(const struct room_order *o)
{
    return o->n_held;
}

#endif
