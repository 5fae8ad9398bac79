/*
 * jscan: reads the few top-level fields the load generator needs from a JSON
 * object (type, id, seq, room, token, text, code, message) without building
 * anything. Pure: no allocation; values point into the caller's buffer.
 *
 * DESIGN: one pass over the object; values of fields not asked for are
 * skipped by their syntax (strings with escapes, nested objects and arrays),
 * so a `joined` with 15,000 member names costs one scan. Strings are handed
 * out as their raw bytes between the quotes, escapes left as they are: every
 * string the generator compares or parses (event types, room names, tokens,
 * its own texts) is plain ASCII without escapes. This is not a validator: it
 * trusts the server to send JSON, and reports only what it cannot walk.
 * jansson would build a tree of every field for each of the millions of
 * events a run reads; this keeps the client off the server's cores.
 */
#ifndef LOADGEN_JSCAN_H
#define LOADGEN_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A field's value: for a string its bytes without the quotes, else the value's text. */
struct jscan_value {
    const char *p;
    size_t len;
    bool is_string;
    bool found;
};

/* Fields the generator reads, by index into jscan_fields' output. */
enum jscan_key {
    JK_TYPE,
    JK_ID,
    JK_SEQ,
    JK_ROOM,
    JK_TOKEN,
    JK_TEXT,
    JK_CODE,
    JK_MESSAGE,
    JK_COUNT_,
};

/*
 * Scans the object in buf[0..len) and fills out[JK_*] for the fields it has
 * (a repeated key: the last one wins, as parley reads requests). Returns 0, or
 * -1 when the text is not an object it can walk.
 */
int jscan_fields(const char *buf, size_t len, struct jscan_value out[JK_COUNT_]);

/* True when v is the string s. */
bool jscan_is(const struct jscan_value *v, const char *s);

/* Parses v as a non-negative integer into *out; returns false when it is not one. */
bool jscan_u64(const struct jscan_value *v, uint64_t *out);

#endif
