/*
 * jsonw: writes compact JSON straight into a chunk, so an event is encoded
 * once and can be framed in place: the writer leaves `headroom` bytes free at
 * the front of the chunk (room for a WebSocket frame header).
 * Commas are placed automatically. Strings are escaped per RFC 8259
 * (", \, control characters; other UTF-8 passes through unchanged).
 */
#ifndef PARLEY_JSONW_H
#define PARLEY_JSONW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

#define JSONW_MAX_DEPTH 32

struct jsonw {
    struct chunk *c; /* c->len counts the headroom too */
    size_t headroom;
    uint32_t depth;
    bool need_comma[JSONW_MAX_DEPTH];
    bool after_key;
};

/* Starts a document in a new chunk with `headroom` free bytes in front. */
void jsonw_init(struct jsonw *w, size_t headroom);
/* Ends the document and returns its chunk (the caller owns the reference):
 * the JSON text is c->data[headroom .. c->len). */
struct chunk *jsonw_finish(struct jsonw *w);
/* Drops an unfinished document. */
void jsonw_discard(struct jsonw *w);

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);
/* Writes a key inside an object; the next value call writes its value. */
void jsonw_key(struct jsonw *w, const char *key);

void jsonw_string(struct jsonw *w, const char *s, size_t n);
void jsonw_cstring(struct jsonw *w, const char *s);
void jsonw_u64(struct jsonw *w, uint64_t v);
void jsonw_i64(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);
/* Writes any jansson value (used to echo a request's "id" as the same JSON value). */
void jsonw_json(struct jsonw *w, const json_t *v);

/* Makes room for `extra` more bytes at once (a large value known in advance grows the buffer
 * once, not by doubling). */
void jsonw_reserve(struct jsonw *w, size_t extra);

/* Writes n bytes of ready-made JSON (one complete value) as the next value. */
void jsonw_raw(struct jsonw *w, const char *p, size_t n);
/* Continues the value jsonw_raw just began with p[0..n): no separator before it. */
void jsonw_raw_more(struct jsonw *w, const char *p, size_t n);

/* Shorthands for "key": value inside an object. */
void jsonw_kv_str(struct jsonw *w, const char *key, const char *s);
void jsonw_kv_strn(struct jsonw *w, const char *key, const char *s, size_t n);
void jsonw_kv_u64(struct jsonw *w, const char *key, uint64_t v);
void jsonw_kv_i64(struct jsonw *w, const char *key, int64_t v);
void jsonw_kv_bool(struct jsonw *w, const char *key, bool v);

#endif
