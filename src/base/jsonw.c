/* jsonw: a compact JSON writer that encodes straight into a chunk behind some headroom. */
#include "jsonw.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Most events (acks, messages, presence) fit; longer ones grow the chunk geometrically. */
#define JSONW_INITIAL 256

/* The writer is only driven by our own encoders, so misuse is a bug to stop at, not input. */
static void broken(const char *what)
{
    log_error("msg=jsonw_invariant what=%s", what);
    abort();
}

/* Makes room for `extra` more bytes after c->len. */
static void reserve(struct jsonw *w, size_t extra)
{
    struct chunk *c = w->c;
    if (extra <= (size_t)c->cap - c->len)
        return;
    size_t need = (size_t)c->len + extra;
    if (need < extra || need > UINT32_MAX)
        broken("document_too_large");
    size_t cap = (size_t)c->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    w->c = chunk_grow(c, cap);
}

static void put(struct jsonw *w, const void *p, size_t n)
{
    reserve(w, n);
    memcpy(w->c->data + w->c->len, p, n);
    w->c->len += (uint32_t)n;
}

static void put_char(struct jsonw *w, char ch)
{
    reserve(w, 1);
    w->c->data[w->c->len++] = (uint8_t)ch;
}

/* Writes the comma a value needs in its container (none right after a key). */
static void value_prefix(struct jsonw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->need_comma[w->depth])
        put_char(w, ',');
    w->need_comma[w->depth] = true;
}

void jsonw_init(struct jsonw *w, size_t headroom)
{
    memset(w, 0, sizeof *w);
    w->c = chunk_new(headroom + JSONW_INITIAL);
    w->c->len = (uint32_t)headroom;
    w->headroom = headroom;
}

struct chunk *jsonw_finish(struct jsonw *w)
{
    if (w->depth != 0 || w->after_key)
        broken("unfinished_document");
    struct chunk *c = w->c;
    w->c = NULL;
    return c;
}

void jsonw_discard(struct jsonw *w)
{
    chunk_unref(w->c);
    w->c = NULL;
}

static void open_container(struct jsonw *w, char ch)
{
    value_prefix(w);
    if (w->depth + 1 >= JSONW_MAX_DEPTH)
        broken("too_deep");
    put_char(w, ch);
    w->depth++;
    w->need_comma[w->depth] = false;
}

static void close_container(struct jsonw *w, char ch)
{
    if (w->depth == 0 || w->after_key)
        broken("unbalanced_close");
    put_char(w, ch);
    w->depth--;
}

void jsonw_object_begin(struct jsonw *w)
{
    open_container(w, '{');
}

void jsonw_object_end(struct jsonw *w)
{
    close_container(w, '}');
}

void jsonw_array_begin(struct jsonw *w)
{
    open_container(w, '[');
}

void jsonw_array_end(struct jsonw *w)
{
    close_container(w, ']');
}

/* Writes s[0..n) as a quoted JSON string. Only what RFC 8259 requires is escaped: bytes
 * >= 0x80 pass through, so valid UTF-8 in gives valid UTF-8 out. */
static void put_quoted(struct jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Every byte escapes to at most 6; reserving the common case once keeps the loop cheap. */
    reserve(w, n + 2);
    put_char(w, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        put(w, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t len = 2;
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 0xF];
            len = 6;
        }
        put(w, esc, len);
    }
    put(w, s + run, n - run);
    put_char(w, '"');
}

void jsonw_key(struct jsonw *w, const char *key)
{
    if (w->after_key)
        broken("key_after_key");
    if (w->need_comma[w->depth])
        put_char(w, ',');
    w->need_comma[w->depth] = true;
    put_quoted(w, key, strlen(key));
    put_char(w, ':');
    w->after_key = true;
}

void jsonw_string(struct jsonw *w, const char *s, size_t n)
{
    value_prefix(w);
    put_quoted(w, s, n);
}

/* A NULL string is written as null, which suits optional fields such as a message's cid. */
void jsonw_cstring(struct jsonw *w, const char *s)
{
    if (!s) {
        jsonw_null(w);
        return;
    }
    jsonw_string(w, s, strlen(s));
}

static void put_u64(struct jsonw *w, uint64_t v)
{
    char buf[20]; /* UINT64_MAX has 20 digits */
    size_t i = sizeof buf;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, buf + i, sizeof buf - i);
}

void jsonw_u64(struct jsonw *w, uint64_t v)
{
    value_prefix(w);
    put_u64(w, v);
}

void jsonw_i64(struct jsonw *w, int64_t v)
{
    value_prefix(w);
    if (v < 0) {
        put_char(w, '-');
        /* Negating in unsigned arithmetic is defined for INT64_MIN too. */
        put_u64(w, -(uint64_t)v);
    } else {
        put_u64(w, (uint64_t)v);
    }
}

void jsonw_bool(struct jsonw *w, bool v)
{
    value_prefix(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void jsonw_null(struct jsonw *w)
{
    value_prefix(w);
    put(w, "null", 4);
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    put(data, buffer, size);
    return 0;
}

void jsonw_json(struct jsonw *w, const json_t *v)
{
    if (!v) {
        jsonw_null(w);
        return;
    }
    value_prefix(w);
    /* jansson prints compactly straight into the chunk; integers stay integers and reals
     * keep 17 significant digits, so the value reads back as the one we were sent. */
    uint32_t mark = w->c->len;
    if (json_dump_callback(v, dump_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        /* Only a value built by hand can fail to encode; a parsed one cannot. */
        w->c->len = mark;
        put(w, "null", 4);
    }
}

void jsonw_kv_str(struct jsonw *w, const char *key, const char *s)
{
    jsonw_key(w, key);
    jsonw_cstring(w, s);
}

void jsonw_kv_strn(struct jsonw *w, const char *key, const char *s, size_t n)
{
    jsonw_key(w, key);
    jsonw_string(w, s, n);
}

void jsonw_kv_u64(struct jsonw *w, const char *key, uint64_t v)
{
    jsonw_key(w, key);
    jsonw_u64(w, v);
}

void jsonw_kv_i64(struct jsonw *w, const char *key, int64_t v)
{
    jsonw_key(w, key);
    jsonw_i64(w, v);
}

void jsonw_kv_bool(struct jsonw *w, const char *key, bool v)
{
    jsonw_key(w, key);
    jsonw_bool(w, v);
}

void jsonw_reserve(struct jsonw *w, size_t extra)
{
    reserve(w, extra);
}

void jsonw_raw(struct jsonw *w, const char *p, size_t n)
{
    value_prefix(w);
    put(w, p, n);
}

void jsonw_raw_more(struct jsonw *w, const char *p, size_t n)
{
    put(w, p, n);
}
