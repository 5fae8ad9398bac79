/* room_order: one room's events in seq order, with holds for gaps and fills from the store. */
#include "room_order.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void room_order_init(struct room_order *o, const struct room_order_ops *ops, void *ctx,
                     uint64_t next, uint64_t hold_ms, uint32_t max_held)
{
    memset(o, 0, sizeof *o);
    o->ops = ops;
    o->ctx = ctx;
    o->next = next ? next : 1;
    o->known_max = o->next - 1;
    o->hold_ms = hold_ms;
    o->max_held = max_held ? max_held : 1;
}

void room_order_free(struct room_order *o)
{
    for (uint32_t i = 0; i < o->n_held; i++)
        o->ops->discard(o->ctx, o->held[i].ev);
    free(o->held);
    o->held = NULL;
    o->n_held = o->cap_held = 0;
}

/* Index of the first held event with seq >= seq. */
static uint32_t held_find(const struct room_order *o, uint64_t seq)
{
    uint32_t lo = 0, hi = o->n_held;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (o->held[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void held_remove_first(struct room_order *o)
{
    o->n_held--;
    memmove(o->held, o->held + 1, o->n_held * sizeof *o->held);
}

/* Passes on every held event that is next (or discards one now below next). */
static void pass_held(struct room_order *o)
{
    while (o->n_held > 0 && o->held[0].seq <= o->next) {
        struct room_order_held h = o->held[0];
        held_remove_first(o);
        if (h.seq == o->next) {
            o->next++;
            o->ops->deliver(o->ctx, h.seq, h.ev);
        } else {
            o->ops->discard(o->ctx, h.ev);
        }
    }
}

static void hold(struct room_order *o, uint64_t seq, void *ev, uint64_t now_ms)
{
    uint32_t i = held_find(o, seq);
    if (i < o->n_held && o->held[i].seq == seq) {
        o->ops->discard(o->ctx, ev); /* a duplicate of one already waiting */
        return;
    }
    if (o->n_held == o->max_held) {
        /* Full: the newest waits no longer; known_max remembers it exists, a fill reads it at
         * once when nothing waits before it any more. */
        o->dropped = true;
        if (i == o->n_held) {
            o->ops->discard(o->ctx, ev);
            return;
        }
        o->n_held--;
        o->ops->discard(o->ctx, o->held[o->n_held].ev);
    }

    if (o->n_held == o->cap_held) {
        o->cap_held = o->cap_held ? o->cap_held * 2 : 8;
        if (o->cap_held > o->max_held)
            o->cap_held = o->max_held;
        o->held = xrealloc(o->held, o->cap_held * sizeof *o->held);
    }
    memmove(o->held + i + 1, o->held + i, (o->n_held - i) * sizeof *o->held);
    o->held[i] = (struct room_order_held){.seq = seq, .arrived_ms = now_ms, .ev = ev};
    o->n_held++;
}

void room_order_offer(struct room_order *o, uint64_t seq, void *ev, uint64_t now_ms)
{
    if (seq > o->known_max)
        o->known_max = seq;
    if (seq < o->next) {
        o->ops->discard(o->ctx, ev);
    } else if (seq == o->next) {
        o->next++;
        o->ops->deliver(o->ctx, seq, ev);
        pass_held(o);
    } else {
        hold(o, seq, ev, now_ms);
    }
    room_order_run(o, now_ms);
}

void room_order_seen(struct room_order *o, uint64_t seq, uint64_t now_ms)
{
    if (seq <= o->known_max)
        return;
    if (o->next > o->known_max)
        o->gap_at = now_ms; /* a new gap */
    o->known_max = seq;
    room_order_run(o, now_ms);
}

void room_order_lost(struct room_order *o, uint64_t now_ms)
{
    o->lost = true;
    room_order_run(o, now_ms);
}

void room_order_filled(struct room_order *o, uint64_t upto, uint64_t now_ms)
{
    o->filling = false;
    o->unbounded = false;
    if (upto != ROOM_ORDER_UNBOUNDED && upto >= o->next) {
        if (upto > o->known_max)
            o->known_max = upto;
        /* What waits at or below upto is passed on in order; the seqs missing below it are
         * gone from the store and skipped. */
        while (o->n_held > 0 && o->held[0].seq <= upto) {
            struct room_order_held h = o->held[0];
            held_remove_first(o);
            o->next = h.seq + 1;
            o->ops->deliver(o->ctx, h.seq, h.ev);
        }
        if (o->next <= upto)
            o->next = upto + 1; /* (a deliver that offered more may have moved it further) */
        pass_held(o);
    }
    if (o->next == o->fill_from)
        o->retry_at = now_ms + (o->hold_ms ? o->hold_ms : 1); /* the store had nothing yet */
    room_order_run(o, now_ms);
}

void room_order_fill_failed(struct room_order *o, uint64_t now_ms)
{
    if (o->unbounded)
        o->lost = true; /* the catch-up is still owed */
    o->filling = false;
    o->unbounded = false;
    o->retry_at = now_ms + (o->hold_ms ? o->hold_ms : 1);
    room_order_run(o, now_ms);
}

/* When the first event still waiting arrived: the gap before them is known since then. */
static uint64_t held_since(const struct room_order *o)
{
    uint64_t first = o->held[0].arrived_ms;
    for (uint32_t i = 1; i < o->n_held; i++)
        if (o->held[i].arrived_ms < first)
            first = o->held[i].arrived_ms;
    return first;
}

uint64_t room_order_due(const struct room_order *o)
{
    if (o->filling)
        return ROOM_ORDER_NEVER;
    uint64_t at;
    if (o->lost)
        at = 0;
    else if (o->next > o->known_max)
        return ROOM_ORDER_NEVER; /* no gap */
    else if (o->n_held > 0)
        at = held_since(o) + o->hold_ms;
    else
        at = o->dropped ? 0 : o->gap_at + o->hold_ms; /* discarded when too many waited, or seen */
    return at > o->retry_at ? at : o->retry_at;
}

void room_order_run(struct room_order *o, uint64_t now_ms)
{
    if (o->in_fill)
        return; /* the fill's own offers and filled land here: the loop below goes on */
    o->in_fill = true;
    while (room_order_due(o) <= now_ms) {
        uint64_t to;
        if (o->lost)
            to = ROOM_ORDER_UNBOUNDED;
        else if (o->n_held > 0)
            to = o->held[0].seq - 1;
        else
            to = o->known_max;
        o->filling = true;
        if (to >= o->known_max)
            o->dropped = false; /* this fill reads them */
        o->unbounded = o->lost;
        o->lost = false;
        o->fill_from = o->next;
        o->ops->fill(o->ctx, o->next, to);
    }
    o->in_fill = false;
}
