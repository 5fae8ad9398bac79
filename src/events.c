/* events: one encoding per event and transport, shared by reference. */
#include "events.h"

#include <stdio.h>
#include <string.h>

#include "text.h"
#include "ws_frame.h"

/* Appends bytes to a growing chunk (made if *c is NULL). */
static void events_append(struct chunk **c, const void *p, size_t n)
{
    if (!*c)
        *c = chunk_new(n < 128 ? 128 : n);
    if ((*c)->len + n > (*c)->cap)
        *c = chunk_grow(*c, ((*c)->len + n) * 2);
    memcpy((*c)->data + (*c)->len, p, n);
    (*c)->len += (uint32_t)n;
}

/* Appends text[0..len) with every character that could reorder or split other text on a terminal
 * (bidi overrides, isolates, line and paragraph separators) shown as '?'. */
static void events_append_neutral(struct chunk **c, const char *text, size_t len)
{
    size_t done = 0;
    for (size_t i = 0; i < len;) {
        size_t n = text_reordering_char(text + i, len - i);
        if (!n) {
            i++;
            continue;
        }
        events_append(c, text + done, i - done);
        events_append(c, "?", 1);
        i += n;
        done = i;
    }
    events_append(c, text + done, len - done);
}

/* Appends the telnet form of text: continuation lines indented by two spaces, CR LF ends. */
static void events_telnet_text(struct chunk **c, const char *prefix, const char *text, size_t len)
{
    events_append(c, prefix, strlen(prefix));
    /* Lines after the first are indented, so a reader sees where one message ends. */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n')
            continue;
        if (start > 0)
            events_append(c, "  ", 2);
        events_append_neutral(c, text + start, i - start);
        events_append(c, "\r\n", 2);
        start = i + 1;
    }
}

struct msg_rec events_frame(struct jsonw *w)
{
    struct chunk *c = jsonw_finish(w);
    size_t len = c->len - MSG_JSON_OFF;
    uint8_t hdr[WS_MAX_HEADER];
    size_t h = ws_frame_header_write(hdr, true, WS_OP_TEXT, len);
    memcpy(c->data + MSG_JSON_OFF - h, hdr, h);
    return (struct msg_rec){.ws = c, .ws_off = (uint32_t)(MSG_JSON_OFF - h)};
}

struct msg_rec events_ws_text(const void *json, size_t n)
{
    struct chunk *c = chunk_new(MSG_JSON_OFF + n);
    memcpy(c->data + MSG_JSON_OFF, json, n);
    c->len = (uint32_t)(MSG_JSON_OFF + n);
    uint8_t hdr[WS_MAX_HEADER];
    size_t h = ws_frame_header_write(hdr, true, WS_OP_TEXT, n);
    memcpy(c->data + MSG_JSON_OFF - h, hdr, h);
    return (struct msg_rec){.ws = c, .ws_off = (uint32_t)(MSG_JSON_OFF - h)};
}

void events_reply_begin(struct jsonw *w, const char *type, const json_t *id)
{
    jsonw_init(w, MSG_JSON_OFF);
    jsonw_object_begin(w);
    jsonw_kv_str(w, "type", type);
    if (id) {
        jsonw_key(w, "id");
        jsonw_json(w, id);
    }
}

struct msg_rec events_message(const struct store_msg *m, const char *peer)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "message");
    jsonw_kv_str(&w, "room", m->room);
    jsonw_kv_u64(&w, "seq", m->seq);
    jsonw_kv_i64(&w, "ts", m->ts);
    jsonw_kv_str(&w, "from", m->from);
    jsonw_kv_strn(&w, "text", m->text, m->text_len);
    if (m->cid)
        jsonw_kv_str(&w, "cid", m->cid);
    jsonw_object_end(&w);
    struct msg_rec r = events_frame(&w);
    r.seq = m->seq;
    r.ts = m->ts;

    char prefix[128];
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    /* An action (the clients' convention, docs/protocol.md): "/me waves" is "* alice waves". */
    bool action = m->text_len > 4 && memcmp(m->text, "/me ", 4) == 0;
    if (action) {
        bool dm = text_parse_dm_room(m->room, strlen(m->room), a, b);
        if (dm)
            snprintf(prefix, sizeof prefix, "[dm] * %s ", m->from);
        else
            snprintf(prefix, sizeof prefix, "[#%s] * %s ", m->room, m->from);
        events_telnet_text(&r.tn, prefix, m->text + 4, m->text_len - 4);
        return r;
    }
    if (text_parse_dm_room(m->room, strlen(m->room), a, b)) {
        if (!peer) {
            char from_lc[TEXT_NAME_MAX + 1];
            text_lower(m->from, strnlen(m->from, TEXT_NAME_MAX), from_lc);
            peer = strcmp(from_lc, a) == 0 ? b : a;
        }
        snprintf(prefix, sizeof prefix, "[dm] %s -> %s: ", m->from, peer);
    } else {
        snprintf(prefix, sizeof prefix, "[#%s] %s: ", m->room, m->from);
    }
    events_telnet_text(&r.tn, prefix, m->text, m->text_len);
    return r;
}

struct msg_rec events_presence(const char *room, const char *user, bool online)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "presence");
    jsonw_kv_str(&w, "room", room);
    jsonw_kv_str(&w, "user", user);
    jsonw_kv_str(&w, "state", online ? "online" : "offline");
    jsonw_object_end(&w);
    struct msg_rec r = events_frame(&w);
    char line[160];
    int n = snprintf(line, sizeof line, "* %s %s #%s\r\n", user, online ? "joined" : "left", room);
    events_append(&r.tn, line, (size_t)n);
    return r;
}

struct msg_rec events_typing(const char *room, const char *user)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "typing");
    jsonw_kv_str(&w, "room", room);
    jsonw_kv_str(&w, "user", user);
    jsonw_object_end(&w);
    return events_frame(&w);
}

struct msg_rec events_count(const char *room, uint32_t member_count, bool large)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "count");
    jsonw_kv_str(&w, "room", room);
    jsonw_kv_u64(&w, "member_count", member_count);
    jsonw_kv_bool(&w, "large", large);
    jsonw_object_end(&w);
    return events_frame(&w);
}

struct msg_rec events_members(const char *room, const char (*names)[CHAT_NAME_MAX], size_t n,
                              size_t member_count, bool more)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "members");
    jsonw_kv_str(&w, "room", room);
    jsonw_key(&w, "members");
    jsonw_array_begin(&w);
    for (size_t i = 0; i < n; i++)
        jsonw_cstring(&w, names[i]);
    jsonw_array_end(&w);
    jsonw_kv_u64(&w, "member_count", member_count);
    jsonw_kv_bool(&w, "more", more);
    jsonw_object_end(&w);
    return events_frame(&w);
}

struct msg_rec events_error(const json_t *id, enum proto_error err, const char *why)
{
    return events_error_retry(id, err, why, 0);
}

struct msg_rec events_error_retry(const json_t *id, enum proto_error err, const char *why,
                                  uint32_t retry_after)
{
    struct jsonw w;
    events_reply_begin(&w, "error", id);
    jsonw_kv_str(&w, "code", proto_error_code(err));
    if (retry_after) {
        char text[256];
        snprintf(text, sizeof text, "%s; try again in %u s", why ? why : proto_error_code(err),
                 retry_after);
        jsonw_kv_str(&w, "message", text);
        jsonw_kv_u64(&w, "retry_after", retry_after);
    } else {
        jsonw_kv_str(&w, "message", why ? why : proto_error_code(err));
    }
    jsonw_object_end(&w);
    return events_frame(&w);
}
