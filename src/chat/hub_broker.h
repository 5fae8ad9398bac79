/*
 * hub_broker: the hub's side of the broker (broker.h): what the hub stores is published to the
 * other nodes, and what they publish is decoded into the hub's event form and handed back to the
 * hub, in seq order, to fan out as its own.
 *
 * DESIGN: the hub owns its rooms and sessions; this module owns the broker and the wire form of
 * an event between nodes (a stored event's fields, not its JSON: the receiving hub encodes it
 * for its own transports exactly as the storing one did). The hub reaches in through the
 * callbacks of struct hub_broker_hooks, so hub.c keeps its state private.
 */
#ifndef PARLEY_HUB_BROKER_H
#define PARLEY_HUB_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "chat.h"
#include "config.h"
#include "loop.h"

/* An event on its way to delivery: its live form (and the ring's form, which differs for an
 * edit), the dm's two users, and for this node's own events the op whose ack rides on it. */
struct hub_event {
    char room[CHAT_ROOM_MAX];
    struct msg_rec live, ring;
    char user_a[CHAT_NAME_MAX], user_b[CHAT_NAME_MAX]; /* a dm's users (lower case), else "" */
    struct chat_op *op;                                /* NULL: another node stored it */
    /* Another node's (or a fill's) moderation event, as the op the hub's mirror of the room's
     * moderation is kept from (hub.c's mod_stored, kick_out); else NULL. Owned. */
    struct chat_op *mod;
    /* Another node's edit, delete or reaction: the message it changed (the ring's copy of which is
     * now out of date), else 0. */
    uint64_t target;
};

/* What the hub does for the broker, on the hub's thread. */
struct hub_broker_hooks {
    void *hub;
    /* Delivers ev (taking it) to the room's members here, in seq order, each once. */
    void (*deliver)(void *hub, struct hub_event *ev);
    /* Whether the user (lower case) has a connection here. */
    bool (*user_here)(void *hub, const char *user_lc);
    /* The newest seq the hub has delivered of room (0: none). */
    uint64_t (*latest)(void *hub, const char *room);
    /* A read marker moved, or a registered user left a room, on another node. */
    void (*user_read)(void *hub, const char *user_lc, const char *room, uint64_t seq);
    void (*user_left)(void *hub, const char *user_lc, const char *room);
    /* An account was registered on another node (name as registered). */
    void (*registered)(void *hub, const char *name, int64_t created_ms);
    /* A room was made on another node; owner_lc: its owner (lower case), or NULL for none. */
    void (*room_made)(void *hub, const char *room, const char *owner_lc);
};

struct hub_broker;

struct hub_broker *hub_broker_new(struct loop *l, const struct config *cfg,
                                  const struct hub_broker_hooks *hooks);
void hub_broker_free(struct hub_broker *hb);
/* The broker itself, for hub_nodes (members, users, guests' names, statuses across nodes). */
struct broker *hub_broker_broker(struct hub_broker *hb);
/* Where the callbacks that are not the timeline's go (NULL: nowhere, as while closing). */
struct hub_nodes;
void hub_broker_set_nodes(struct hub_broker *hb, struct hub_nodes *nodes);

/* The room's local connections went from 0 to 1 (newest: the newest seq the hub has) or to 0. A
 * dm room is also followed, apart from these, while one of its users has a connection here, once
 * this node stores or hears of one of its events (dm_follow in broker.h): from its users' starts
 * (hub_broker_user_dms) when they are known, else from that event. */
void hub_broker_follow(struct hub_broker *hb, const char *room, uint64_t newest);
void hub_broker_unfollow(struct hub_broker *hb, const char *room);

/* A stored event (op at stage 1, its ack riding on it): published, and delivered here in order
 * through hooks->deliver. peer: a dm's other party as shown, else NULL. */
void hub_broker_stored(struct hub_broker *hb, struct chat_op *op, const char *peer);
/* A timeline op the store answered without storing (stage 2): a cid retry's seq may be of an
 * event whose node died before publishing it, so every node is made to deliver it. */
void hub_broker_acked_again(struct hub_broker *hb, const struct chat_op *op);
/* The store's answer to a fill (a CHAT_FILL op): given to the broker; takes op. */
void hub_broker_filled(struct hub_broker *hb, struct chat_op *op);
/* A stored event read back, in the wire form between nodes (in the ws chunk, len bytes), for a
 * fill's answer: the store thread makes it, hub_broker_filled decodes it. */
struct msg_rec hub_broker_wire(const struct store_msg *m);
/* Decodes the wire form (bytes from another node, or a fill's) into ev: its live and ring forms,
 * and for moderation the op the hub's mirror takes. False, ev untouched, when data is not one. */
bool hub_broker_unwire(const void *data, size_t len, struct hub_event *ev);
/* Sets ev's user_a and user_b from its room's name when it is a dm room. */
void hub_broker_dm_users(struct hub_event *ev);
/* Frees ev (a delivered or dropped event). */
void hub_event_free(struct hub_event *ev);

/* A clean stop: broker_goodbye (done(arg) once said, or at once when it cannot be). */
void hub_broker_goodbye(struct hub_broker *hb, void (*done)(void *arg), void *arg);

/* User events to the other nodes (best effort). */
void hub_broker_read(struct hub_broker *hb, const char *user_lc, const char *room, uint64_t seq);
void hub_broker_left(struct hub_broker *hb, const char *user_lc, const char *room);
void hub_broker_registered(struct hub_broker *hb, const char *name, int64_t created_ms);
void hub_broker_room_made(struct hub_broker *hb, const char *room, const char *owner_lc);
/* A user's first connection here logged in, with its dm rooms and their newest seqs in op->rooms
 * (read from the store: its welcome's, or for a guest read for this alone): a dm room of the user
 * this node follows later is delivered from there on (what came after it and was lost on the way is
 * filled from the store), and once the user's channel is subscribed, the store is asked again
 * (CHAT_DM_SEQS) for what was stored meanwhile. Nothing when alone. */
void hub_broker_user_dms(struct hub_broker *hb, const char *user_lc, const struct chat_op *op);
/* The store's answer to CHAT_DM_SEQS: each dm room stored in since its users' start and not
 * followed yet is followed from that start, while one of them is here. Takes op. */
void hub_broker_dm_seqs(struct hub_broker *hb, struct chat_op *op);
/* A connection a live upgrade moved here is caught up in a dm room it never joined, from its
 * place there up to the hub's newest: the room is followed from that newest on (for its users
 * here, as a dm room followed for them), so what another node stores next reaches it too. Nothing
 * when alone or followed already. */
void hub_broker_dm_caught_up(struct hub_broker *hb, const char *room);
/* The user's last connection here went: the dm rooms followed for it alone are unfollowed. */
void hub_broker_user_gone(struct hub_broker *hb, const char *user_lc);

/* For /healthz (metrics_set_health): the node's name, its store's and its broker's state. */
void hub_broker_health(char *out, size_t cap);
/* For /metrics (METRICS_PART_BROKER): the broker's state and counters. */
struct metrics_out;
void hub_broker_metrics(struct metrics_out *o);

#endif
