/* events: one encoding per event and transport, shared by reference. */
#include "events.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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
    return events_frame_more(w, 0);
}

struct msg_rec events_frame_more(struct jsonw *w, size_t more)
{
    struct chunk *c = jsonw_finish(w);
    size_t len = c->len - MSG_JSON_OFF + more;
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

/* "[#room] from" or "[dm] from -> peer" (peer: the other party, from the room when NULL). */
static void line_head(char *out, size_t size, const struct store_msg *m, const char *peer)
{
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (text_parse_dm_room(m->room, strlen(m->room), a, b)) {
        if (!peer) {
            char from_lc[TEXT_NAME_MAX + 1];
            text_lower(m->from, strnlen(m->from, TEXT_NAME_MAX), from_lc);
            peer = strcmp(from_lc, a) == 0 ? b : a;
        }
        snprintf(out, size, "[dm] %s -> %s", m->from, peer);
    } else {
        snprintf(out, size, "[#%s] %s", m->room, m->from);
    }
}

/* Appends the message line(s) of text: "[#room] from: text", or "... (edited): text". */
static void message_line(struct chunk **c, const struct store_msg *m, const char *peer, bool edited)
{
    char prefix[160];
    /* An action (the clients' convention, docs/protocol.md): "/me waves" is "* alice waves". */
    if (m->text_len > 4 && memcmp(m->text, "/me ", 4) == 0) {
        char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
        bool dm = text_parse_dm_room(m->room, strlen(m->room), a, b);
        snprintf(prefix, sizeof prefix, "[%s%s] * %s%s ", dm ? "" : "#", dm ? "dm" : m->room,
                 m->from, edited ? " (edited)" : "");
        events_telnet_text(c, prefix, m->text + 4, m->text_len - 4);
        return;
    }
    line_head(prefix, sizeof prefix, m, peer);
    size_t n = strlen(prefix);
    snprintf(prefix + n, sizeof prefix - n, "%s: ", edited ? " (edited)" : "");
    events_telnet_text(c, prefix, m->text, m->text_len);
}

/* The telnet notice of a delete (rule 76). */
static void delete_line(struct chunk **c, const struct store_msg *m, const char *peer)
{
    char line[200];
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    int n;
    if (text_parse_dm_room(m->room, strlen(m->room), a, b)) {
        char from_lc[TEXT_NAME_MAX + 1];
        text_lower(m->from, strnlen(m->from, TEXT_NAME_MAX), from_lc);
        n = snprintf(line, sizeof line, "* %s deleted a message to %s\r\n", m->from,
                     peer                      ? peer
                     : strcmp(from_lc, a) == 0 ? b
                                               : a);
    } else if (!m->target_from || strcasecmp(m->target_from, m->from) == 0) {
        n = snprintf(line, sizeof line, "* %s deleted a message in #%s\r\n", m->from, m->room);
    } else {
        n = snprintf(line, sizeof line, "* %s deleted %s's message in #%s\r\n", m->from,
                     m->target_from, m->room);
    }
    events_append(c, line, (size_t)n);
}

/* The space-joined names as a JSON array under key. */
static void names_array(struct jsonw *w, const char *key, const char *names)
{
    jsonw_key(w, key);
    jsonw_array_begin(w);
    for (const char *p = names; *p;) {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        jsonw_string(w, p, n);
        p += n + (sp ? 1 : 0);
    }
    jsonw_array_end(w);
}

/* type, room, seq, ts, from and cid: what every event carries. */
static void event_head(struct jsonw *w, const struct store_msg *m)
{
    jsonw_init(w, MSG_JSON_OFF);
    jsonw_object_begin(w);
    jsonw_kv_str(w, "type", store_event_type_name((enum store_event_type)m->type));
    jsonw_kv_str(w, "room", m->room);
    jsonw_kv_u64(w, "seq", m->seq);
    jsonw_kv_i64(w, "ts", m->ts);
    jsonw_kv_str(w, "from", m->from);
    if (m->cid)
        jsonw_kv_str(w, "cid", m->cid);
}

/* A message's current text, reply_to and mentions. */
static void message_body(struct jsonw *w, const struct store_msg *m)
{
    jsonw_kv_strn(w, "text", m->text, m->text_len);
    if (m->reply_to)
        jsonw_kv_u64(w, "reply_to", m->reply_to);
    if (m->mentions && *m->mentions)
        names_array(w, "mentions", m->mentions);
}

/* The fields of a topic or moderation event (rules 58-65): text; user, role, reason, duration. */
static void moderation_body(struct jsonw *w, const struct store_msg *m)
{
    if (m->type == STORE_EV_TOPIC) {
        jsonw_kv_strn(w, "text", m->text ? m->text : "", m->text ? m->text_len : 0);
        return;
    }
    jsonw_kv_str(w, "user", m->user ? m->user : "?");
    if (m->type == STORE_EV_ROLE)
        jsonw_kv_str(w, "role", m->detail ? m->detail : "member");
    if ((m->type == STORE_EV_KICK || m->type == STORE_EV_BAN) && m->detail && *m->detail)
        jsonw_kv_str(w, "reason", m->detail);
    if ((m->type == STORE_EV_BAN || m->type == STORE_EV_MUTE) && m->duration)
        jsonw_kv_u64(w, "duration", m->duration);
}

/* " for N min" (N = duration / 60 rounded up) when there is a duration, then " (REASON)" when
 * there is a reason, and the line's end (rule 76). */
static void line_tail(struct chunk **c, uint64_t duration, const char *reason)
{
    char buf[48];
    if (duration) {
        int n = snprintf(buf, sizeof buf, " for %llu min",
                         (unsigned long long)((duration + 59) / 60));
        events_append(c, buf, (size_t)n);
    }
    if (reason && *reason) {
        events_append(c, " (", 2);
        events_append_neutral(c, reason, strlen(reason));
        events_append(c, ")", 1);
    }
    events_append(c, "\r\n", 2);
}

/* The telnet notice of a topic or moderation event (rule 76). */
static void moderation_line(struct chunk **c, const struct store_msg *m)
{
    char line[200];
    int n = 0;
    const char *user = m->user ? m->user : "?";
    switch (m->type) {
    case STORE_EV_TOPIC:
        if (!m->text || !m->text_len) {
            n = snprintf(line, sizeof line, "* %s cleared the topic of #%s\r\n", m->from, m->room);
            break;
        }
        n = snprintf(line, sizeof line, "* %s set the topic of #%s: ", m->from, m->room);
        events_append(c, line, (size_t)n);
        events_append_neutral(c, m->text, m->text_len);
        events_append(c, "\r\n", 2);
        return;
    case STORE_EV_ROLE: {
        const char *role = m->detail ? m->detail : "member";
        if (strcmp(role, "owner") == 0)
            n = snprintf(line, sizeof line, "* %s made %s the owner of #%s\r\n", m->from, user,
                         m->room);
        else
            n = snprintf(line, sizeof line, "* %s made %s %s in #%s\r\n", m->from, user,
                         strcmp(role, "op") == 0 ? "an op" : "a member", m->room);
        break;
    }
    case STORE_EV_KICK:
    case STORE_EV_BAN:
        n = snprintf(line, sizeof line, "* %s was %s from #%s by %s", user,
                     m->type == STORE_EV_KICK ? "kicked" : "banned", m->room, m->from);
        events_append(c, line, (size_t)n);
        line_tail(c, m->type == STORE_EV_BAN ? m->duration : 0, m->detail);
        return;
    case STORE_EV_UNBAN:
        n = snprintf(line, sizeof line, "* %s was unbanned from #%s by %s\r\n", user, m->room,
                     m->from);
        break;
    case STORE_EV_MUTE:
        n = snprintf(line, sizeof line, "* %s was muted in #%s by %s", user, m->room, m->from);
        events_append(c, line, (size_t)n);
        line_tail(c, m->duration, NULL);
        return;
    case STORE_EV_UNMUTE:
        n = snprintf(line, sizeof line, "* %s was unmuted in #%s by %s\r\n", user, m->room,
                     m->from);
        break;
    default:
        return;
    }
    events_append(c, line, (size_t)n);
}

struct msg_rec events_kicked(const char *room, const char *by, const char *reason, bool banned,
                             uint64_t duration)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "kicked");
    jsonw_kv_str(&w, "room", room);
    jsonw_kv_str(&w, "by", by);
    if (reason && *reason)
        jsonw_kv_str(&w, "reason", reason);
    if (banned) {
        jsonw_kv_bool(&w, "banned", true);
        if (duration)
            jsonw_kv_u64(&w, "duration", duration);
    }
    jsonw_object_end(&w);
    struct msg_rec r = events_frame(&w);
    char line[160];
    int n = snprintf(line, sizeof line, "* You were %s from #%s by %s",
                     banned ? "banned" : "kicked", room, by);
    events_append(&r.tn, line, (size_t)n);
    line_tail(&r.tn, banned ? duration : 0, reason);
    return r;
}

struct msg_rec events_event(const struct store_msg *m, const char *peer, enum events_form form)
{
    struct jsonw w;
    event_head(&w, m);
    bool replay = form == EVENTS_REPLAY;
    bool erased =
        m->deleted && (m->type == STORE_EV_MESSAGE || (replay && m->type != STORE_EV_DELETE));
    bool mod = m->type >= STORE_EV_TOPIC;
    if (mod) {
        moderation_body(&w, m);
        jsonw_object_end(&w);
        struct msg_rec r = events_frame(&w);
        r.seq = m->seq;
        r.ts = m->ts;
        moderation_line(&r.tn, m);
        return r;
    }
    if (m->type != STORE_EV_MESSAGE)
        jsonw_kv_u64(&w, "target", m->target);
    if (erased) {
        jsonw_kv_bool(&w, "deleted", true);
    } else if (m->type == STORE_EV_MESSAGE) {
        message_body(&w, m);
    } else if (m->type == STORE_EV_EDIT && !replay) {
        jsonw_kv_strn(&w, "text", m->text, m->text_len);
        if (m->mentions && *m->mentions)
            names_array(&w, "mentions", m->mentions);
    } else if (m->type == STORE_EV_REACTION) {
        jsonw_kv_str(&w, "emoji", m->emoji ? m->emoji : "");
        jsonw_kv_bool(&w, "on", m->on);
    }
    jsonw_object_end(&w);
    struct msg_rec r = events_frame(&w);
    r.seq = m->seq;
    r.ts = m->ts;
    /* Telnet (rule 76): messages and edits as lines, deletes as notices; reactions, and what a
     * delete erased, not at all. A replayed edit has no text to show. */
    if (erased)
        return r;
    if (m->type == STORE_EV_MESSAGE)
        message_line(&r.tn, m, peer, false);
    else if (m->type == STORE_EV_EDIT && !replay)
        message_line(&r.tn, m, peer, true);
    else if (m->type == STORE_EV_DELETE)
        delete_line(&r.tn, m, peer);
    return r;
}

struct msg_rec events_message(const struct store_msg *m, const char *peer)
{
    return events_event(m, peer, EVENTS_LIVE);
}

struct msg_rec events_history_entry(const struct store_msg *m, const struct events_reaction *r,
                                    size_t n_reactions)
{
    struct jsonw w;
    event_head(&w, m);
    if (m->deleted) {
        jsonw_kv_bool(&w, "deleted", true);
    } else {
        message_body(&w, m);
        if (m->edited)
            jsonw_kv_i64(&w, "edited", m->edited);
        if (n_reactions) {
            jsonw_key(&w, "reactions");
            jsonw_array_begin(&w);
            for (size_t i = 0; i < n_reactions; i++) {
                jsonw_object_begin(&w);
                jsonw_kv_str(&w, "emoji", r[i].emoji);
                jsonw_kv_u64(&w, "count", r[i].count);
                jsonw_kv_bool(&w, "me", r[i].me);
                jsonw_key(&w, "users");
                jsonw_array_begin(&w);
                for (uint32_t u = 0; u < r[i].n_users; u++)
                    jsonw_cstring(&w, r[i].users[u]);
                jsonw_array_end(&w);
                jsonw_object_end(&w);
            }
            jsonw_array_end(&w);
        }
    }
    jsonw_object_end(&w);
    struct msg_rec rec = events_frame(&w);
    rec.seq = m->seq;
    rec.ts = m->ts;
    if (!m->deleted)
        message_line(&rec.tn, m, NULL, m->edited != 0);
    return rec;
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

struct msg_rec events_presence_state(const char *room, const char *user, bool joined, bool away,
                                     const char *text)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "presence");
    jsonw_kv_str(&w, "room", room);
    jsonw_kv_str(&w, "user", user);
    jsonw_kv_str(&w, "state", away ? "away" : "online");
    if (text)
        jsonw_kv_str(&w, "status_text", text);
    jsonw_object_end(&w);
    struct msg_rec r = events_frame(&w);
    if (joined) {
        char line[160];
        int n = snprintf(line, sizeof line, "* %s joined #%s\r\n", user, room);
        events_append(&r.tn, line, (size_t)n);
    }
    return r;
}

struct msg_rec events_status(bool away, const char *text)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "status");
    jsonw_kv_str(&w, "state", away ? "away" : "online");
    jsonw_kv_str(&w, "text", text ? text : "");
    jsonw_object_end(&w);
    return events_frame(&w);
}

void events_statuses(struct jsonw *w, const struct chat_status_entry *e, size_t n)
{
    jsonw_key(w, "away");
    jsonw_array_begin(w);
    for (size_t i = 0; i < n; i++)
        if (e[i].away)
            jsonw_cstring(w, e[i].name);
    jsonw_array_end(w);
    jsonw_key(w, "status_text");
    jsonw_object_begin(w);
    for (size_t i = 0; i < n; i++)
        if (e[i].text)
            jsonw_kv_str(w, e[i].name, e[i].text);
    jsonw_object_end(w);
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

struct msg_rec events_read(const char *room, uint64_t seq)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "read");
    jsonw_kv_str(&w, "room", room);
    jsonw_kv_u64(&w, "seq", seq);
    jsonw_object_end(&w);
    return events_frame(&w);
}

struct msg_rec events_left(const char *room)
{
    struct jsonw w;
    jsonw_init(&w, MSG_JSON_OFF);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "left");
    jsonw_kv_str(&w, "room", room);
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
                              size_t member_count, bool more,
                              const struct chat_status_entry *statuses, size_t n_statuses)
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
    events_statuses(&w, statuses, n_statuses);
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
