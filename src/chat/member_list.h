/*
 * member_list: a room's users as the JSON list its `joined` carries ("Alice","bob", in byte
 * order of the lower-cased names), kept in step with each join and leave.
 *
 * DESIGN: before a room's tick finds it large, every join is answered with every user's name
 * (rules 12, 81). Walking the room's index for each join of a storm costs a pointer chase and a
 * copy per name per join; this list instead is one block of JSON that a join extends by one entry
 * (a binary search and one copy of the block) and every answer shares by reference. The block is
 * immutable once shared: a change makes a new one unless nobody else holds the old. The hub owns
 * it; workers only read the chunks they were handed.
 */
#ifndef PARLEY_MEMBER_LIST_H
#define PARLEY_MEMBER_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

struct member_list {
    struct chunk *json; /* entries "name", back to back, each with its comma */
    uint32_t *off;      /* n + 1 entries: where each entry starts; off[n] == json->len */
    uint32_t n, cap;
};

/* An empty list. */
void member_list_init(struct member_list *l);
void member_list_free(struct member_list *l);

/* Adds name (display form; name_lc its lower-cased form, which orders it). Names are
 * A-Z a-z 0-9 _ - . only, so they need no escaping. Adding a name present is a no-op. */
void member_list_add(struct member_list *l, const char *name, const char *name_lc);
void member_list_remove(struct member_list *l, const char *name_lc);

/* A reference to the list's JSON: *len bytes (the entries without the last comma) from the
 * chunk's start. The caller drops the reference. */
struct chunk *member_list_share(const struct member_list *l, size_t *len);

#endif
