/*
 * search_cursor: the opaque `next` / `after` strings of search replies (protocol 1.1 rule 72).
 *
 * DESIGN: a cursor says where a search stopped in the index's order, and is signed (HMAC-SHA256,
 * cut to 16 bytes) together with the request's q and room, so an `after` that this process did
 * not give for the same q and room is told apart from a real one (bad_request) without keeping
 * any state per search. The key is random per process: a cursor does not outlive a restart or
 * a live upgrade (the client gets bad_request and searches again from the start).
 */
#ifndef PARLEY_SEARCH_CURSOR_H
#define PARLEY_SEARCH_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The longest cursor string, with its NUL. */
#define SEARCH_CURSOR_MAX 192

/*
 * Where a search goes on: index rows with rowid <= bound, newest first, leaving out the rows
 * with ts == skip_ts that come no later than (skip_room, skip_seq) in the results' order
 * (room ascending, seq descending), when skip is set: those were given already.
 */
struct search_cursor {
    uint64_t bound;
    bool skip;
    int64_t skip_ts;
    uint64_t skip_seq;
    char skip_room[STORE_ROOM_MAX];
};

/* Makes this process's key. Call once at start, before any cursor is made or read. */
void search_cursor_init(void);

/* Writes c as a cursor for (q[0..q_len), room) into out[SEARCH_CURSOR_MAX]. room "" = none. */
void search_cursor_encode(const struct search_cursor *c, const char *q, size_t q_len,
                          const char *room, char out[SEARCH_CURSOR_MAX]);

/* Reads s[0..len) as a cursor this process gave for (q[0..q_len), room) into *out; false when it
 * is not one. */
bool search_cursor_decode(const char *s, size_t len, const char *q, size_t q_len, const char *room,
                          struct search_cursor *out);

#endif
