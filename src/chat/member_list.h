/*
 * member_list: a room's users as the JSON list its `joined` carries ("Alice","bob", in byte
 * order of the lower-cased names), kept in step with each join and leave.
 *
 * DESIGN: before a room's tick finds it large, every join is answered with every user's name
 * (rules 12, 81). Walking the room's index for each join of a storm costs a pointer chase and a
 * copy per name per join; this list instead is kept as JSON that every answer shares by
 * reference. It is cut into segments of at most about SEG_MAX bytes (member_list.c), each its
 * own block: a join changes one segment, so it copies at most that one (when an answer in flight
 * still holds it: a shared block never changes) and takes a reference to each of the others,
 * instead of copying the whole list (a storm of n joins copies n segments, not n lists).
 * The hub owns it; workers only read the blocks they were handed.
 */
#ifndef PARLEY_MEMBER_LIST_H
#define PARLEY_MEMBER_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

/* A run of entries "name", back to back, each with its comma. */
struct member_seg {
    struct chunk *json;
    uint32_t *off; /* n + 1 entries: where each entry starts; off[n] == json->len */
    uint32_t n, cap;
};

struct member_list {
    struct member_seg *segs; /* in order, none empty */
    uint32_t n_segs, cap_segs;
    uint32_t n; /* names in all */
};

/* One piece of a shared list: len bytes from the start of c (a reference). */
struct member_piece {
    struct chunk *c;
    uint32_t len;
};

/* An empty list. */
void member_list_init(struct member_list *l);
void member_list_free(struct member_list *l);

/* Adds name (display form; name_lc its lower-cased form, which orders it). Names are
 * A-Z a-z 0-9 _ - . only, so they need no escaping. Adding a name present is a no-op. */
void member_list_add(struct member_list *l, const char *name, const char *name_lc);
void member_list_remove(struct member_list *l, const char *name_lc);

/* The list's JSON (the entries without the last comma) as *n pieces in a new array, each a
 * reference to a segment; *len: their bytes in all. member_pieces_free drops them. */
struct member_piece *member_list_share(const struct member_list *l, uint32_t *n, size_t *len);
void member_pieces_free(struct member_piece *p, uint32_t n);

#endif
