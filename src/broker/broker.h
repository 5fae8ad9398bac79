/*
 * broker: what one node tells the other nodes of one chat, and hears from them: room events,
 * user events, presence, online guests' names and room member counts. Two backends: local
 * (broker_local.c: the process is alone, nothing crosses processes) and Redis (broker_redis.c).
 *
 * DESIGN: the hub is the broker's one user, on the hub's own thread and loop; every callback
 * runs there, from inside a broker call or from the loop. Room events carry a seq assigned by
 * the store (one sequence per room over all nodes), so the broker can deliver each followed
 * room's events in seq order, each once, whatever Redis drops or reorders (room_order.h): it
 * holds an event that arrives ahead of a gap for a short time and then asks the hub to fill the
 * gap from the store. A node's own events go through the same order, so its members see its
 * own events and the other nodes' in one order. User events, presence and counts are outside
 * the timeline and best effort; welcome, joined and who are answered from the current state.
 *
 * Presence and guests' names live in Redis under per-node leases: a node refreshes its own
 * lease every --node-lease / 4, to expire half a lease later; a node that stops (killed, cut
 * off) is reaped by the next node whose refresh finds its lease expired, so within three
 * quarters of --node-lease its users go offline everywhere, its guests' names become free and
 * its member counts stop counting.
 *
 * The broker's calls may be made from its callbacks, except broker_free.
 *
 * Strings (rooms, users, guest names) are at most BROKER_NAME_MAX bytes; data is any bytes.
 */
#ifndef PARLEY_BROKER_H
#define PARLEY_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"

#define BROKER_NAME_MAX 70 /* a room name ("dm:a:b" included), a user or a guest's name */
/* A fill's `to` when it must read up to the room's newest event in the store. */
#define BROKER_NEWEST UINT64_MAX

struct broker;

/* What the broker calls back, on the hub's thread. ctx is the hub's. */
struct broker_user {
    void *ctx;
    /*
     * A followed room's event, in seq order, each seq once. obj is the hub's own object when the
     * event is one this node published or filled (data NULL), else NULL with the bytes another
     * node published (data, len: valid during the call). Takes obj.
     */
    void (*room_event)(void *ctx, const char *room, uint64_t seq, void *obj, const void *data,
                       size_t len);
    /* obj will not be delivered (a duplicate, or its room was unfollowed): frees it. */
    void (*release)(void *ctx, void *obj);
    /*
     * Read the room's events [from, to] from the store (to may be BROKER_NEWEST), give each to
     * broker_fill_event, then call broker_fill_done (or broker_fill_failed). May answer within
     * the call or later; one fill per room at a time.
     */
    void (*fill)(void *ctx, const char *room, uint64_t from, uint64_t to);
    /* A user event another node published (best effort). data valid during the call. */
    void (*user_event)(void *ctx, const char *user, const void *data, size_t len);
    /* A user came online on some node (the first) or went offline on every node (the last).
     * Also called with online for each user of the other nodes after each (re)connect. */
    void (*presence)(void *ctx, const char *user, bool online);
    /*
     * The broker went down (up false: Redis unreachable; the node serves its own clients alone)
     * or came back (up true). Coming back, it has asked a fill of every followed room (so the
     * other nodes' events are caught up from the store); the hub forgets the other nodes'
     * presence, which the presence calls that follow give again.
     */
    void (*state)(void *ctx, bool up);
    /*
     * Another node's members of a followed room (best effort, outside the timeline): user is in
     * room on node (in) or no longer (a leave, or the node died and was reaped). A snapshot of a
     * room's members on the other nodes, taken when its subscription is confirmed, comes as
     * room_member(room, NULL, NULL, false) (forget what you had of the room), the pairs, then
     * room_member(room, NULL, NULL, true) (the snapshot is complete). Calls may repeat a pair.
     */
    void (*room_member)(void *ctx, const char *room, const char *node, const char *user, bool in);
    /*
     * An event (or a hint) with this seq of a dm room this node does not follow reached the
     * channel of a user here (broker_user_here): follow it now (broker_follow, with the newest
     * seq from which this node delivers it), or not. Once followed, the event is offered to its
     * order like any other. NULL: dm rooms are followed only as the hub asks.
     */
    void (*dm_follow)(void *ctx, const char *room, uint64_t seq);
    /*
     * The channel of a user here (broker_user_here) is subscribed, at the user's arrival or again
     * after a reconnect: every dm of the user published from now on reaches this node. One
     * published before (between the hub's last read of the store and now) did not: the hub may
     * look for it in the store. NULL: not told.
     */
    void (*user_ready)(void *ctx, const char *user);
};

/* Tuning, from the config, and the hold of room_order. */
struct broker_settings {
    uint64_t lease_ms;      /* --node-lease */
    uint64_t hold_ms;       /* how long an event ahead of a gap waits before a fill: 200 ms */
    uint32_t max_held;      /* events waiting per room: 4096 */
    uint64_t reconnect_max; /* the longest pause between reconnects: 5000 ms */
};

/*
 * A broker as cfg says: local without --broker, else Redis (connecting in the background: the
 * state callback says when it is up). l is the hub's loop. u is copied. Returns NULL only when
 * the Redis client cannot be made (then logs why).
 */
struct broker *broker_new(struct loop *l, const struct config *cfg, const struct broker_user *u);
struct broker *broker_local_new(const struct broker_user *u);
struct broker *broker_redis_new(struct loop *l, const struct config *cfg,
                                const struct broker_settings *s, const struct broker_user *u);
/* Stops at once (no goodbye: the lease runs out as for a dead node); releases held events. */
void broker_free(struct broker *b);
/*
 * A clean stop: this node undoes what it holds on the other nodes at once (its users offline
 * where it was their last node, its guests' names free, its members gone from their rooms, its
 * lease deleted), as a reaper would after its lease, after everything it sent before. done(arg)
 * once that is said, or at once when it cannot be (down, or alone); from then on nothing changes
 * what the other nodes see of this node but events published. Then broker_free.
 */
void broker_goodbye(struct broker *b, void (*done)(void *arg), void *arg);

/* Rooms. */

/*
 * This node has members in room from now on: its events are delivered (room_event) after newest,
 * the newest seq the hub has of it; what the other nodes stored meanwhile is asked as a fill at
 * once. Follows are counted: each follow needs an unfollow.
 */
void broker_follow(struct broker *b, const char *room, uint64_t newest);
void broker_unfollow(struct broker *b, const char *room);
/*
 * Publishes a room event after its commit, encoded once (data, len: any bytes, copied), and
 * delivers it here too, in order with the other nodes' (obj comes back in room_event, or in
 * release). A room not followed gets obj back in room_event at once. A dm room's ("dm:a:b")
 * goes to the nodes where a or b has a connection (broker_user_here), not to the room's followers.
 */
void broker_publish_room(struct broker *b, const char *room, uint64_t seq, void *obj,
                         const void *data, size_t len);
/*
 * Seq of room is stored, its event not published by this node: a cid retry answered from the
 * store, whose first copy a node may have committed and died (or lost Redis) before publishing.
 * Every node following room delivers it (filled from the store if it does not come).
 */
void broker_room_stored(struct broker *b, const char *room, uint64_t seq);
/* The answer to a fill: one event read from the store (takes obj), then done or failed. upto:
 * every event of the room up to it was given (a seq missing below it is gone: skipped). */
void broker_fill_event(struct broker *b, const char *room, uint64_t seq, void *obj);
void broker_fill_done(struct broker *b, const char *room, uint64_t upto);
void broker_fill_failed(struct broker *b, const char *room);
/*
 * This node's members in room are now local (0 when none). Returns the room's members on all
 * live nodes as last learnt (this node's counted as local): large rooms' count. The total is
 * refreshed in the background, so a change elsewhere shows in a later call.
 */
uint64_t broker_room_members(struct broker *b, const char *room, uint32_t local);

/*
 * The user's first connection in room on this node came (in) or its last one there went: the
 * other nodes following room get room_member. O(1) in Redis. Rooms are those followed.
 */
void broker_room_here(struct broker *b, const char *room, const char *user, bool in);
/* After state(true): this node's members of room are exactly users[0..n) (Redis may have lost
 * them, or missed leaves while cut off); the other nodes hear what changed. */
void broker_room_sync(struct broker *b, const char *room, const char *const *users, size_t n);

/* Users. */

/* Publishes a user event (a read marker, saved rooms, status, a guest's name registered...)
 * to every other node, best effort: user_event there. data copied. */
void broker_publish_user(struct broker *b, const char *user, const void *data, size_t len);
/* The user's first connection on this node opened (online) or its last closed. While online,
 * the events of the user's dm rooms reach this node (dm_follow for one not followed yet). */
void broker_user_here(struct broker *b, const char *user, bool online);
/*
 * Claims a guest's name (lower-cased) for this node and the guest's session (0: none, a
 * registration): done(arg, true) unless a live node holds it for another session. shown: the
 * name as the guest shows it (NULL for a registration), for broker_guest_lookup. A session may
 * hold its name on several nodes at once (a guest's connections on two nodes). While the broker
 * is down, or alone, the claim succeeds at once (the hub's own check of its guests still
 * applies). done may run within the call.
 */
void broker_guest_claim(struct broker *b, const char *name, const char *shown, uint64_t session,
                        void (*done)(void *arg, bool ok), void *arg);
void broker_guest_release(struct broker *b, const char *name);
/*
 * Whether a guest of some live node holds name (lower-cased): done(arg, shown), shown the name as
 * that guest shows it (valid during the call), or NULL when none does, when the broker is alone
 * or down, or when Redis fails. One round trip; done may run within the call, and is not called
 * once broker_free has begun (the caller frees what arg holds itself).
 */
void broker_guest_lookup(struct broker *b, const char *name,
                         void (*done)(void *arg, const char *shown), void *arg);

/* State, for /healthz and /metrics: readable from any thread. */
struct broker_status {
    const char *kind;    /* "local" or "redis" */
    const char *id;      /* this process's node id in Redis ("" when local), as long as b */
    bool up;             /* local: always */
    uint64_t since_ms;   /* wall clock (ms since the epoch) of the last change of up */
    uint64_t reconnects; /* times it came back after being down */
    uint64_t published;  /* room and user events sent */
    uint64_t received;   /* room and user events from other nodes */
    uint64_t fills;      /* gaps filled from the store */
    uint64_t reaped;     /* dead nodes whose leases this node cleared */
};
void broker_status(const struct broker *b, struct broker_status *out);

#endif
