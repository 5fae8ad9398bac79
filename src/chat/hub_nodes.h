/*
 * hub_nodes: the hub's side of the broker for what is not the timeline: which users are in a
 * room on the other nodes, online users, guests' names held anywhere, statuses across nodes.
 *
 * DESIGN: the hub tells hub_nodes when a user's first connection in a room on this node comes
 * and its last goes, when a user's first connection on this node comes and its last goes, and
 * when a guest takes or lets go a name. hub_nodes passes these to the broker and keeps, per room
 * with members here, which (node, user) pairs the other nodes have in it, so each pair counts
 * once however often the broker repeats it; the hub is told only when a user's first node in
 * the room comes (hub_remote_member in) or its last other node goes (out). It runs on the hub's
 * thread; its state is its own (no hub structure is touched here).
 */
#ifndef PARLEY_HUB_NODES_H
#define PARLEY_HUB_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

struct hub;
struct hub_nodes;

/* broker: hub_broker's (it owns the broker and passes on the callbacks below). */
struct hub_nodes *hub_nodes_new(struct hub *h, struct broker *broker);
void hub_nodes_free(struct hub_nodes *n);
/* True when other nodes may exist (a broker between processes). */
bool hub_nodes_multi(const struct hub_nodes *n);

/* The user's first connection in room on this node came (in) or its last went. newest: the
 * room's newest seq as the hub has it (for the broker's follow). */
void hub_nodes_room_here(struct hub_nodes *n, const char *room, uint64_t newest, const char *user,
                         bool in);
/* The user's first connection on this node came (online) or its last went. */
void hub_nodes_user_here(struct hub_nodes *n, const char *user, bool online);
/* A guest's name (lower-cased; shown: as the guest shows it, NULL for a registration): claimed
 * for its session (0: a registration) before the online guests table takes it (done(arg, false):
 * a live node holds it for another session); released with its last connection here. */
void hub_nodes_guest_claim(struct hub_nodes *n, const char *name, const char *shown,
                           uint64_t session, void (*done)(void *arg, bool ok), void *arg);
void hub_nodes_guest_release(struct hub_nodes *n, const char *name);
/* Whether a guest of another node holds name (lower-cased): done(arg, name as shown, or NULL),
 * as broker_guest_lookup (not called once hub_nodes_free has begun). */
void hub_nodes_guest_lookup(struct hub_nodes *n, const char *name,
                            void (*done)(void *arg, const char *shown), void *arg);
/* A local user's status changed: told to the other nodes (best effort). */
void hub_nodes_status(struct hub_nodes *n, const char *user, bool away, const char *text);
/* The status of a user of another node, as last heard: false when none is known (online, no
 * text). *text stays valid until the next call into hub_nodes. */
/* How many users of other nodes have a status that is not the default. */
size_t hub_nodes_remote_statuses(const struct hub_nodes *n);
bool hub_nodes_remote_status(const struct hub_nodes *n, const char *user_lc, bool *away,
                             const char **text);

/* The broker's callbacks for this side (broker.h), as hub_broker.c passes them on: a user event
 * starting "status ", presence, a room's member on another node, Redis lost or back. */
void hub_nodes_on_user_event(struct hub_nodes *n, const char *user, const void *data, size_t len);
void hub_nodes_on_presence(struct hub_nodes *n, const char *user, bool online);
void hub_nodes_on_room_member(struct hub_nodes *n, const char *room, const char *node,
                              const char *user, bool in);
void hub_nodes_on_state(struct hub_nodes *n, bool up);

/* What hub_nodes calls in the hub (hub.c). */

/* A user is in room on some other node from now on (in), or on none any more. */
void hub_remote_member(struct hub *h, const char *room, const char *user, bool in);
/* A remote user's status changed: presence to the rooms here where it is a member. */
void hub_remote_status(struct hub *h, const char *user, bool away, const char *text);
/* The users of room with a connection here, for a sync after Redis came back: calls each(arg,
 * user) for each, user valid only during that call (the name as shown is built in a buffer). */
void hub_local_members(struct hub *h, const char *room, void (*each)(void *arg, const char *user),
                       void *arg);
/* The newest seq the hub has of room (0 when unknown). */
uint64_t hub_room_newest(struct hub *h, const char *room);

#endif
