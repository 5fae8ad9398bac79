/* chat_json: the WebSocket transport: protocol v1 JSON requests in, replies and errors out. */
#include "chat_json.h"

#include <string.h>

#include "alloc.h"
#include "chat_session.h"
#include "events.h"
#include "jsonw.h"
#include "member_list.h"
#include "metrics.h"
#include "text.h"
#include "ws_session.h"

static const struct config *cfg_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->cfg;
}

/* Sends a reply made for c alone (compressed for c alone, when it negotiated that) and drops it. */
static void ws_send_rec(struct conn *c, struct msg_rec rec)
{
    if (conn_is_open(c))
        ws_session_send_data(c, chunk_ref(rec.ws), rec.ws_off, MSG_JSON_OFF, rec.ws->len, false);
    msg_rec_release(&rec);
}

/* A member list this long goes into a joined by reference to the room's shared block (below)
 * rather than copied into each reply: a big room's joins before its first tick each list every
 * member (rule 81), thousands of names. */
#define NAMES_BY_REF_MIN 2048

/* "key":[names]. With split non-NULL, a shared list is left out of w and *split set to where it
 * belongs (json_send_split sends it there); otherwise the list is copied in. */
static void json_names(struct jsonw *w, const char *key, const struct chat_op *op, size_t *split)
{
    jsonw_key(w, key);
    jsonw_array_begin(w);
    if (op->names_json) {
        if (split && op->members_pieces && op->members_json_len >= NAMES_BY_REF_MIN) {
            *split = w->c->len;
            jsonw_array_end(w);
            return;
        }
        jsonw_reserve(w, op->members_json_len + 256); /* the list and the rest of the reply */
        if (op->members_pieces)
            for (uint32_t j = 0; j < op->n_members_pieces; j++) /* one value, in pieces */
                (j ? jsonw_raw_more : jsonw_raw)(w, (const char *)op->members_pieces[j].c->data,
                                                 op->members_pieces[j].len);
        else if (op->members_json_len)
            jsonw_raw(w, op->members_json, op->members_json_len);
        jsonw_array_end(w);
        return;
    }
    for (size_t i = 0; i < op->n_names; i++)
        jsonw_cstring(w, op->names[i]);
    jsonw_array_end(w);
}

/* Sends the reply in w with op's shared member list at split: one frame in pieces of the output
 * queue, its head, the list's segments (the room's blocks themselves), its tail. Only for a
 * connection that compresses nothing (permessage-deflate needs the message whole). */
static void json_send_split(struct conn *c, struct jsonw *w, size_t split, const struct chat_op *op)
{
    struct msg_rec rec = events_frame_more(w, op->members_json_len);
    if (conn_is_open(c)) {
        conn_send(c, chunk_ref(rec.ws), rec.ws_off, split);
        for (uint32_t j = 0; j < op->n_members_pieces; j++)
            conn_send(c, chunk_ref(op->members_pieces[j].c), 0, op->members_pieces[j].len);
        conn_send(c, chunk_ref(rec.ws), split, rec.ws->len);
    }
    msg_rec_release(&rec);
}

/* Read markers and saved rooms in welcome (rule 68): a dm entry's counts... */
static void json_room_counts(struct jsonw *w, const struct chat_room_info *r)
{
    jsonw_kv_u64(w, "read", r->read);
    jsonw_kv_u64(w, "unread", r->unread);
    jsonw_kv_u64(w, "mentions", r->mentions);
}

/* ...and "rooms": the saved rooms by name ([] for a guest). */
static void json_welcome_rooms(struct jsonw *w, const struct chat_op *op)
{
    jsonw_key(w, "rooms");
    jsonw_array_begin(w);
    for (size_t i = 0; i < op->n_saved; i++) {
        jsonw_object_begin(w);
        jsonw_kv_str(w, "name", op->saved[i].name);
        jsonw_kv_u64(w, "seq", op->saved[i].seq);
        json_room_counts(w, &op->saved[i]);
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
}

/* Rule 67: the user left room on another connection. */
static void json_left_elsewhere(struct conn *c, const char *room)
{
    ws_send_rec(c, events_left(room));
}

/* joined's topic, role, owner and muted_until (rules 58, 59, 65). */
static void json_room_state(struct jsonw *w, const struct chat_op *op)
{
    static const char *const roles[] = {[CHAT_ROLE_MEMBER] = "member",
                                        [CHAT_ROLE_OP] = "op",
                                        [CHAT_ROLE_OWNER] = "owner",
                                        [CHAT_ROLE_ADMIN] = "admin"};
    jsonw_kv_str(w, "topic", op->topic ? op->topic : "");
    jsonw_kv_str(w, "role", roles[op->my_role & 3]);
    if (op->owner[0])
        jsonw_kv_str(w, "owner", op->owner);
    if (op->muted)
        jsonw_kv_i64(w, "muted_until", op->muted_until);
}

static void json_reply(struct conn *c, struct chat_op *op)
{
    if (op->err) {
        ws_send_rec(c, events_error_retry(op->id, op->err, op->why, op->retry_after));
        return;
    }
    struct jsonw w;
    size_t split = 0; /* joined: where its shared member list goes, when not copied in */
    switch (op->kind) {
    case CHAT_REGISTER:
        events_reply_begin(&w, "registered", op->id);
        jsonw_kv_str(&w, "name", op->name);
        break;
    case CHAT_LOGIN_GUEST:
    case CHAT_LOGIN_PASSWORD:
    case CHAT_LOGIN_TOKEN:
        events_reply_begin(&w, "welcome", op->id);
        jsonw_kv_str(&w, "name", op->user);
        jsonw_kv_bool(&w, "guest", op->guest);
        jsonw_kv_str(&w, "token", op->token);
        jsonw_key(&w, "dms");
        jsonw_array_begin(&w);
        for (size_t i = 0; i < op->n_rooms; i++) {
            jsonw_object_begin(&w);
            jsonw_kv_str(&w, "room", op->rooms[i].name);
            jsonw_kv_u64(&w, "seq", op->rooms[i].seq);
            json_room_counts(&w, &op->rooms[i]);
            jsonw_object_end(&w);
        }
        jsonw_array_end(&w);
        json_welcome_rooms(&w, op);
        /* Rule 68: the user's status. */
        jsonw_kv_str(&w, "state", op->away ? "away" : "online");
        jsonw_kv_str(&w, "status_text", op->text ? op->text : "");
        break;
    case CHAT_STATUS:
        events_reply_begin(&w, "status", op->id);
        jsonw_kv_str(&w, "state", op->away ? "away" : "online");
        jsonw_kv_str(&w, "text", op->text ? op->text : "");
        break;
    case CHAT_JOIN:
        events_reply_begin(&w, "joined", op->id);
        jsonw_kv_str(&w, "room", op->room);
        jsonw_kv_u64(&w, "seq", op->seq);
        json_names(&w, "members", op, c->ws_deflate_bits ? NULL : &split);
        jsonw_kv_bool(&w, "truncated", op->truncated);
        events_statuses(&w, op->statuses, op->n_statuses);
        json_room_state(&w, op);
        jsonw_kv_u64(&w, "member_count", op->n_members);
        jsonw_kv_bool(&w, "members_truncated", op->n_names < op->n_members);
        if (!op->guest)
            jsonw_kv_u64(&w, "read", op->marker); /* rule 66 */
        break;
    case CHAT_READ:
        events_reply_begin(&w, "read", op->id);
        jsonw_kv_str(&w, "room", op->room);
        jsonw_kv_u64(&w, "seq", op->seq);
        break;
    case CHAT_LEAVE:
        events_reply_begin(&w, "left", op->id);
        jsonw_kv_str(&w, "room", op->room);
        break;
    case CHAT_ROOMS:
        events_reply_begin(&w, "rooms", op->id);
        jsonw_key(&w, "rooms");
        jsonw_array_begin(&w);
        for (size_t i = 0; i < op->n_rooms; i++) {
            jsonw_object_begin(&w);
            jsonw_kv_str(&w, "name", op->rooms[i].name);
            jsonw_kv_u64(&w, "members", op->rooms[i].members);
            jsonw_kv_u64(&w, "seq", op->rooms[i].seq);
            jsonw_kv_str(&w, "topic", op->rooms[i].topic ? op->rooms[i].topic : "");
            jsonw_object_end(&w);
        }
        jsonw_array_end(&w);
        jsonw_kv_bool(&w, "more", op->more);
        break;
    case CHAT_WHO:
        events_reply_begin(&w, "members", op->id);
        jsonw_kv_str(&w, "room", op->room);
        json_names(&w, "members", op, NULL);
        events_statuses(&w, op->statuses, op->n_statuses);
        jsonw_kv_u64(&w, "member_count", op->n_members);
        jsonw_kv_bool(&w, "more", op->more);
        break;
    case CHAT_SEND:
    case CHAT_EDIT:
    case CHAT_DELETE:
    case CHAT_REACT:
    case CHAT_TOPIC:
    case CHAT_ROLE:
    case CHAT_KICK:
    case CHAT_BAN:
    case CHAT_UNBAN:
    case CHAT_MUTE:
    case CHAT_UNMUTE:
        events_reply_begin(&w, "ack", op->id);
        jsonw_kv_str(&w, "room", op->room);
        jsonw_kv_u64(&w, "seq", op->seq);
        break;
    case CHAT_HISTORY:
        events_reply_begin(&w, "history", op->id);
        jsonw_kv_str(&w, "room", op->room);
        jsonw_key(&w, "messages");
        jsonw_array_begin(&w);
        /* Entries are exactly the message events: reuse their encoded JSON. */
        for (size_t i = 0; i < op->n_msgs; i++) {
            const struct chunk *m = op->msgs[i].ws;
            jsonw_raw(&w, (const char *)m->data + MSG_JSON_OFF, m->len - MSG_JSON_OFF);
        }
        jsonw_array_end(&w);
        break;
    case CHAT_SEARCH:
        events_reply_begin(&w, "search", op->id);
        jsonw_key(&w, "results");
        jsonw_array_begin(&w);
        for (size_t i = 0; i < op->n_msgs; i++) {
            const struct chunk *m = op->msgs[i].ws;
            jsonw_raw(&w, (const char *)m->data + MSG_JSON_OFF, m->len - MSG_JSON_OFF);
        }
        jsonw_array_end(&w);
        if (op->next[0])
            jsonw_kv_str(&w, "next", op->next);
        break;
    default:
        return;
    }
    jsonw_object_end(&w);
    if (split)
        json_send_split(c, &w, split, op);
    else
        ws_send_rec(c, events_frame(&w));
}

static void json_op_done(struct conn *c, struct chat_op *op)
{
    json_reply(c, op);
    /* The login deadline waited for a password check's answer: it moved by the time the check
     * spent hashing, and may have passed meanwhile. */
    if ((op->kind == CHAT_LOGIN_PASSWORD || op->kind == CHAT_REGISTER) &&
        !((struct chat_session *)c->session)->logged_in)
        ws_session_login_deadline(c);
}

static const struct chat_transport json_transport = {
    .op_done = json_op_done,
    .left_elsewhere = json_left_elsewhere,
};

const struct chat_transport *chat_json_transport(void)
{
    return &json_transport;
}

static void reply_error(struct conn *c, const json_t *id, enum proto_error err, const char *why)
{
    metrics_error(err);
    ws_send_rec(c, events_error(id, err, why));
}

static enum chat_op_kind kind_of(const struct proto_request *req)
{
    switch (req->type) {
    case PROTO_REGISTER:
        return CHAT_REGISTER;
    case PROTO_LOGIN:
        return req->token      ? CHAT_LOGIN_TOKEN
               : req->password ? CHAT_LOGIN_PASSWORD
                               : CHAT_LOGIN_GUEST;
    case PROTO_JOIN:
        return CHAT_JOIN;
    case PROTO_LEAVE:
        return CHAT_LEAVE;
    case PROTO_ROOMS:
        return CHAT_ROOMS;
    case PROTO_WHO:
        return CHAT_WHO;
    case PROTO_SEND:
        return CHAT_SEND;
    case PROTO_HISTORY:
        return CHAT_HISTORY;
    case PROTO_TYPING:
        return CHAT_TYPING;
    case PROTO_EDIT:
        return CHAT_EDIT;
    case PROTO_DELETE:
        return CHAT_DELETE;
    case PROTO_REACT:
        return CHAT_REACT;
    case PROTO_STATUS:
        return CHAT_STATUS;
    case PROTO_SEARCH:
        return CHAT_SEARCH;
    case PROTO_READ:
        return CHAT_READ;
    case PROTO_TOPIC:
        return CHAT_TOPIC;
    case PROTO_ROLE:
        return CHAT_ROLE;
    case PROTO_KICK:
        return CHAT_KICK;
    case PROTO_BAN:
        return CHAT_BAN;
    case PROTO_UNBAN:
        return CHAT_UNBAN;
    case PROTO_MUTE:
        return CHAT_MUTE;
    case PROTO_UNMUTE:
        return CHAT_UNMUTE;
    default:
        return CHAT_GONE;
    }
}

/* Copies a validated request into an op. */
static struct chat_op *op_from(struct conn *c, const struct proto_request *req)
{
    struct worker *w = c->set->owner;
    struct chat_op *op = chat_op_new(kind_of(req), (uint16_t)w->id, c->id);
    if (req->id)
        op->id = json_incref((json_t *)req->id);
    if (req->name) {
        size_t n = strlen(req->name);
        memcpy(op->name, req->name, n < sizeof op->name ? n : sizeof op->name - 1);
        memcpy(op->user, op->name, sizeof op->user);
        text_lower(op->name, strlen(op->name), op->user_lc);
    }
    if (req->password) {
        op->password = xstrndup(req->password, req->password_len);
        op->password_len = req->password_len;
    }
    if (req->token) {
        size_t n = strlen(req->token);
        memcpy(op->token, req->token, n < sizeof op->token ? n : sizeof op->token - 1);
    }
    memcpy(op->room, req->room, sizeof op->room);
    op->room_is_dm = req->room_is_dm;
    if (req->to)
        text_lower(req->to, strlen(req->to), op->to_lc);
    if (req->text) {
        op->text = xstrndup(req->text, req->text_len);
        op->text_len = req->text_len;
    }
    if (req->type == PROTO_SEARCH) {
        op->text = xstrndup(req->q, req->q_len); /* what its cursors are signed for */
        op->text_len = req->q_len;
        op->search_match = xstrdup(req->match);
        op->has_cursor = req->has_cursor;
        op->cursor = req->cursor;
    }
    if (req->cid) {
        size_t n = strlen(req->cid);
        memcpy(op->cid, req->cid, n < sizeof op->cid ? n : sizeof op->cid - 1);
        op->has_cid = true;
    }
    op->has_since = req->has_since;
    op->since = req->since;
    op->before = req->has_before ? req->before : 0;
    op->target = req->seq;
    op->reply_to = req->reply_to;
    op->has_reply_to = req->has_reply_to;
    if (req->emoji) {
        memcpy(op->emoji, req->emoji, req->emoji_len < sizeof op->emoji ? req->emoji_len : 0);
        op->on = req->on;
    }
    op->away = req->away;
    if (req->user) {
        size_t n = req->user_len < sizeof op->subject ? req->user_len : sizeof op->subject - 1;
        memcpy(op->subject, req->user, n);
        op->subject[n] = '\0';
        text_lower(op->subject, n, op->subject_lc);
    }
    op->role = req->role == PROTO_ROLE_OP      ? CHAT_ROLE_OP
               : req->role == PROTO_ROLE_OWNER ? CHAT_ROLE_OWNER
                                               : CHAT_ROLE_MEMBER;
    op->duration = req->duration;
    op->limit = req->limit;
    if (req->has_before && req->before == 0) {
        op->before = 1; /* nothing comes before seq 0 (rule 50 makes it a valid request) */
        op->limit = 0;
    }
    if (op->kind == CHAT_WHO)
        op->names_limit = req->limit;
    op->names_json = op->kind == CHAT_WHO || op->kind == CHAT_JOIN;
    if (req->after) {
        /* Lower-cased, and cut to what can order names and rooms (chat.h). */
        size_t n = req->after_len < CHAT_NAME_MAX - 1 ? req->after_len : CHAT_NAME_MAX - 1;
        text_lower(req->after, n, op->after);
        op->after_len = (uint8_t)n;
        op->has_after = true;
    }
    return op;
}

/* Rule 6: the one register a logged-in connection may send is a guest's of its own name. Rule 38
 * ranks already_logged_in before field validation, so this looks at the raw field: any other
 * name, valid or not (or none), is already_logged_in. */
static bool registers_own_name(const struct chat_session *s, const struct proto_request *req)
{
    const json_t *name = json_object_get(req->doc, "name");
    if (!s->guest || !json_is_string(name))
        return false;
    const char *v = json_string_value(name);
    size_t n = json_string_length(name);
    if (n != strlen(s->user_lc))
        return false;
    char lc[CHAT_NAME_MAX];
    text_lower(v, n, lc);
    return memcmp(lc, s->user_lc, n) == 0;
}

void chat_session_json(struct conn *c, const uint8_t *json, size_t len)
{
    struct chat_session *s = c->session;
    struct proto_request req;
    const char *why = NULL;
    enum proto_error err = proto_parse_envelope((const char *)json, len, &req);
    if (err) {
        reply_error(c, req.id, err,
                    err == PROTO_BAD_JSON ? "a request is one JSON object"
                    : err == PROTO_UNKNOWN_TYPE
                        ? "unknown request type"
                        : "a request needs a string type, and an id that is a number or a string");
        proto_request_free(&req);
        return;
    }
    if (req.type == PROTO_PING) {
        struct jsonw w;
        events_reply_begin(&w, "pong", req.id);
        jsonw_object_end(&w);
        ws_send_rec(c, events_frame(&w));
        proto_request_free(&req);
        return;
    }
    /* Rule 5: login state ranks before field validation. */
    if (!s->logged_in && req.type != PROTO_REGISTER && req.type != PROTO_LOGIN)
        err = PROTO_NOT_LOGGED_IN, why = "log in first";
    else if ((s->logged_in || s->login_pending) && req.type == PROTO_LOGIN)
        err = PROTO_ALREADY_LOGGED_IN, why = "this connection is logged in already";
    else if (s->logged_in && req.type == PROTO_REGISTER && !registers_own_name(s, &req))
        err = PROTO_ALREADY_LOGGED_IN, why = "only a guest can register, and only its own name";
    if (!err) {
        struct proto_limits limits = {.max_text_points = cfg_of(c)->max_text,
                                      .max_status_points = cfg_of(c)->max_status,
                                      .max_topic_points = cfg_of(c)->max_topic,
                                      .max_reason_points = cfg_of(c)->max_reason,
                                      .max_duration = cfg_of(c)->max_duration_s};
        err = proto_validate(&req, &limits, &why);
    }
    /* Rule 73: every request of a bucket's types counts toward its close, whatever its answer. */
    bool send_bucket = req.type == PROTO_SEND || req.type == PROTO_EDIT ||
                       req.type == PROTO_DELETE || req.type == PROTO_STATUS ||
                       (req.type >= PROTO_TOPIC && req.type <= PROTO_UNMUTE);
    if ((send_bucket && !chat_session_count_send(c)) ||
        (req.type == PROTO_REACT && !chat_session_count_react(c)) ||
        (req.type == PROTO_SEARCH && !chat_session_count_search(c))) {
        proto_request_free(&req); /* closed for flooding */
        return;
    }
    if (!err) {
        if (req.token && strlen(req.token) != CHAT_TOKEN_LEN)
            err = PROTO_BAD_TOKEN, why = "unknown or expired token";
        else
            err = chat_session_submit(c, op_from(c, &req), &why);
    }
    if (err)
        reply_error(c, req.id, err, why);
    proto_request_free(&req);
}

/* --- what the WebSocket layer below calls (struct ws_chat) --- */

static void ws_message(struct conn *c, const uint8_t *json, size_t len)
{
    if (!c->session)
        chat_session_open(c, chat_json_transport());
    chat_session_json(c, json, len);
}

static bool ws_logged_in(const struct conn *c)
{
    return ((const struct chat_session *)c->session)->logged_in;
}

static int ws_restore(struct conn *c, const struct handover_rec *rec, const char **why)
{
    return chat_session_restore(c, chat_json_transport(), rec, why);
}

static const struct ws_chat ws_chat = {
    .message = ws_message,
    .logged_in = ws_logged_in,
    .login_pause = chat_session_login_pause,
    .closed = chat_session_close,
    .drained = chat_session_drained,
    .busy = chat_session_busy,
    .save = chat_session_save,
    .restore = ws_restore,
};

const struct ws_chat *chat_json_ws(void)
{
    return &ws_chat;
}
