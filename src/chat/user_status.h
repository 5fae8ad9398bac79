/*
 * user_status: each online user's status (protocol 1.1 rules 69, 70) and what the hub needs to
 * tell others of it: the user's connections, and the rooms where it has one.
 *
 * DESIGN: a status belongs to an identity, the account or, for a guest, its session; it is kept
 * in memory only (never stored). A record exists while the identity has a connection, and after
 * its last one goes for as long as its status is not the default (online, no text), until the
 * grace (75 s) has passed: then it is forgotten, which is the fallback to online. Records are
 * keyed by lower-cased name: one identity holds a name at a time (an online guest's name is
 * its own; a guest session whose name was registered since is replaced at the account's first
 * login). Records gone offline wait in one queue in the order they went, since all wait the same
 * grace: expiry is O(1) per record. Owned by the hub thread.
 *
 * An online guest is its record too (user_status_guest_in): the guest session's logins are
 * counted here from the login on, before its connections are, so there is no separate table of
 * online guests; and a guest's record holds the skeleton of its name (text_skeleton), which the
 * hub's look-alike table borrows as its key.
 */
#ifndef PARLEY_USER_STATUS_H
#define PARLEY_USER_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "map.h"
#include "pool.h"
#include "text.h"

struct user_status {
    uint64_t guest_session; /* 0: an account */
    uint32_t conns;         /* logged-in connections */
    uint32_t guests;        /* logins of the guest session (online while > 0), connections or not */
    char *text;             /* NUL-terminated, owned; NULL when none */
    /* The rooms (the hub's, opaque here) where the user has a connection: user_status_rooms.
     * While cap_rooms is at most 1 the one room is held here in place of the array (most users
     * are in one room, and a 1-pointer array would be a 32-byte block). */
    union {
        void **rooms;
        void *room_one;
    } rooms_;
    struct user_status *gone_prev, *gone_next;
    struct user_status *set_prev, *set_next; /* on the set list: away or with a text */
    uint32_t n_rooms, cap_rooms;
    /* When conns fell to 0: the low 32 bits of the clock's ms (a grace is far shorter than the
     * 49 days they span; user_status_due), 4 bytes that keep a guest's record in a 128-byte
     * block. */
    uint32_t gone_ms;
    bool away;
    bool own_skel; /* a guest's skeleton follows the names (else it is name_lc itself) */
    /* One block sized to the name: name_lc (the set's key, borrowed), then the name as shown
     * (user_status_name), then for a guest whose name's skeleton differs from name_lc, the
     * skeleton (user_status_skeleton). Names are ASCII, so all have the same length or less. */
    char name_lc[];
};

struct user_status_set {
    struct map by_name; /* name_lc -> struct user_status (keys borrowed from the records) */
    struct user_status *gone_head, *gone_tail;
    struct user_status *set_head; /* records not at the default status */
    size_t n_set;
    struct pool_sizes *pools; /* where records come from, or NULL: the heap */
};

/* The name as shown. */
static inline const char *user_status_name(const struct user_status *u)
{
    return u->name_lc + strlen(u->name_lc) + 1;
}

/* The skeleton of a guest's name (text_skeleton), as its look-alike entry's key. */
static inline const char *user_status_skeleton(const struct user_status *u)
{
    return u->own_skel ? u->name_lc + 2 * (strlen(u->name_lc) + 1) : u->name_lc;
}

/* When the grace (ms, below 2^32) of u, gone offline, ends: now_ms or later. */
static inline uint64_t user_status_due(const struct user_status *u, uint64_t now_ms,
                                       uint64_t grace_ms)
{
    uint32_t waited = (uint32_t)now_ms - u->gone_ms;
    return waited >= grace_ms ? now_ms : now_ms + (grace_ms - waited);
}

/* The rooms of u, n_rooms of them. */
static inline void **user_status_rooms(struct user_status *u)
{
    return u->cap_rooms > 1 ? u->rooms_.rooms : &u->rooms_.room_one;
}

void user_status_init(struct user_status_set *set);
/* Makes the (empty) set's records come from pools, which must outlive it, instead of the heap. */
void user_status_use_pools(struct user_status_set *set, struct pool_sizes *pools);
void user_status_free(struct user_status_set *set);

/* The record of name_lc if it is that identity's (guest_session, 0 for an account), else NULL. */
struct user_status *user_status_get(const struct user_status_set *set, const char *name_lc,
                                    uint64_t guest_session);
/* The record of whoever holds name_lc now, or NULL. */
struct user_status *user_status_of(const struct user_status_set *set, const char *name_lc);
/* The record of the online guest holding name_lc (guests > 0), or NULL. */
struct user_status *user_status_guest(const struct user_status_set *set, const char *name_lc);

/* A login of guest session `session` under name: its record (made, or another identity's
 * replaced) with one more login (guests). The connection is counted by user_status_connect once
 * it is welcomed. */
struct user_status *user_status_guest_in(struct user_status_set *set, const char *name,
                                         const char *name_lc, uint64_t session);
/* A login of u's guest session went (guests > 0): one fewer, and u is forgotten when nothing
 * else keeps it (no connection, not waiting out its grace). */
void user_status_guest_out(struct user_status_set *set, struct user_status *u);

/* A connection of the identity logged in: its record (made, or another identity's replaced),
 * with one more connection. Returns the record. */
struct user_status *user_status_connect(struct user_status_set *set, const char *name,
                                        const char *name_lc, uint64_t guest_session);
/* A connection of the identity went (after leaving its rooms). The record waits out the grace
 * when it was the last and the status is not the default, else is forgotten at once. */
void user_status_disconnect(struct user_status_set *set, const char *name_lc,
                            uint64_t guest_session, uint64_t now_ms);

/* Sets the status (text[0..n), n = 0 for none). Returns true when state or text changed. */
bool user_status_set_state(struct user_status_set *set, struct user_status *u, bool away,
                           const char *text, size_t n);

/* The guest session's record becomes the account's (rule 39: it registered its own name); it is
 * no online guest any more (guests 0). */
void user_status_became_registered(struct user_status_set *set, const char *name_lc,
                                   uint64_t guest_session, const char *name);

/* The rooms where the user has a connection: room added when its first connection joined, and
 * removed when its last left. */
void user_status_room_add(struct user_status *u, void *room);
void user_status_room_remove(struct user_status *u, void *room);

/* Forgets every record whose last connection went at least grace_ms before now_ms. Returns when
 * the next one is due (ms), or 0 when none waits. */
uint64_t user_status_expire(struct user_status_set *set, uint64_t now_ms, uint64_t grace_ms);

#endif
