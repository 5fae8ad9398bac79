/*
 * store_rows: what every store backend does to the rows it reads back before anyone sees them:
 * room names checked, event types parsed, damaged texts and names repaired (store.h, store_msg:
 * a backend hands out only valid text).
 */
#ifndef PARLEY_STORE_ROWS_H
#define PARLEY_STORE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* True when name[0..n) is a public room name in folded form or a canonical dm room name. */
bool store_valid_room(const char *name, size_t n);

/* Parses an event type as stored; STORE_EV_TYPES when unknown (a newer binary's type). */
uint8_t store_type_from(const char *name);

/*
 * A row damaged on disk must not reach a client as it is: text that is not UTF-8 would break
 * the WebSocket (a text frame must be UTF-8), and control characters could drive a terminal.
 * Repairs m in place (text via text_repair; a sender, user or target's author that is not a
 * name shown as "?"; a cid that is not a plain string, a bad reason, mention list or emoji
 * dropped; an empty mention list dropped) and returns the buffer the repaired text lives in,
 * for the caller to free after use, or NULL when the text was sound. from_len and cid_len are
 * the lengths of m->from and m->cid.
 */
char *store_repair_row(struct store_msg *m, size_t from_len, size_t cid_len);

#endif
