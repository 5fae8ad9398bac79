/*
 * redis_scripts: the Lua scripts of the Redis broker. Each runs atomically in Redis and reads
 * Redis's clock (TIME), so nodes' clocks never need to agree. ARGV[1] is the key prefix and
 * ARGV[2] the calling node's id in every one; the rest is said at each script (redis_scripts.c).
 */
#ifndef PARLEY_REDIS_SCRIPTS_H
#define PARLEY_REDIS_SCRIPTS_H

/* Renews the caller's lease, reaps expired nodes; returns {fresh, reaped}. */
extern const char redis_lua_lease[];
/* The caller stops cleanly: what it holds is undone at once, as at a reap. */
extern const char redis_lua_goodbye[];
/* Makes Redis hold exactly the caller's users and guests. */
extern const char redis_lua_sync[];
/* A user's first connection on the caller's node, or its last one gone. */
extern const char redis_lua_here[];
/* Claims a guest's name: 1, or 0 when another live node holds it. */
extern const char redis_lua_claim[];
/* Whether a live node holds a guest's name: the name as shown, or nil. */
extern const char redis_lua_lookup[];
/* Lets a guest's name go, if the caller holds it. */
extern const char redis_lua_release[];
/* Sets the caller's members in a room; returns the other live nodes' total. */
extern const char redis_lua_count[];
/* The users online on the other live nodes. */
extern const char redis_lua_snapshot[];
/* A user's first connection in a room on the caller's node, or its last one there gone. */
extern const char redis_lua_room_here[];
/* Makes Redis hold exactly the given users as the caller's members of a room. */
extern const char redis_lua_room_sync[];
/* Clears the caller's members of the rooms it no longer follows. */
extern const char redis_lua_rooms_prune[];
/* A room's members on the other live nodes, as node, user pairs. */
extern const char redis_lua_room_snapshot[];

#endif
