/* proto: parses the envelope of a protocol v1 request and validates the fields its type needs. */
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "search_text.h"
#include "timeline.h"

/*
 * DESIGN: proto_validate reports the first failing check in this fixed order:
 *   1. bad_request: for every field the type defines, present with null (rule 37),
 *      then, field by field in the order listed in field_sets below, a missing
 *      required field, a wrong JSON type or a value out of range (passwords,
 *      since/before/limit, cid, an empty or control-character text), and the
 *      structural rules (send: exactly one of room / to; login: token or name);
 *   2. bad_name: name, room, to;
 *   3. too_long: text.
 * Rule 5 groups the three codes as "field validation" and lists them in that
 * order, so ordering by code first answers the same whichever way a client
 * reads the rule. Unknown fields, and fields that belong to other types, are
 * ignored entirely ("Unknown fields are ignored").
 */

#define PASSWORD_MIN 8
#define PASSWORD_MAX 256
#define CID_MAX 64
#define LIMIT_MAX 200
#define LIMIT_DEFAULT 50
#define PAGE_DEFAULT 200 /* who and rooms: entries per reply unless limit says fewer */
#define TEXT_POINTS_DEFAULT 4000

static const struct {
    const char *name;
    enum proto_type type;
} type_names[] = {
    {"register", PROTO_REGISTER}, {"login", PROTO_LOGIN},     {"join", PROTO_JOIN},
    {"leave", PROTO_LEAVE},       {"rooms", PROTO_ROOMS},     {"who", PROTO_WHO},
    {"send", PROTO_SEND},         {"history", PROTO_HISTORY}, {"typing", PROTO_TYPING},
    {"ping", PROTO_PING},         {"edit", PROTO_EDIT},       {"delete", PROTO_DELETE},
    {"react", PROTO_REACT},       {"status", PROTO_STATUS},   {"search", PROTO_SEARCH},
    {"read", PROTO_READ},         {"topic", PROTO_TOPIC},     {"role", PROTO_ROLE},
    {"kick", PROTO_KICK},         {"ban", PROTO_BAN},         {"unban", PROTO_UNBAN},
    {"mute", PROTO_MUTE},         {"unmute", PROTO_UNMUTE},
};

/* The fields each type defines, for rule 37's null check. */
static const char *const field_sets[][5] = {
    [PROTO_REGISTER] = {"name", "password"},
    [PROTO_LOGIN] = {"token", "name", "password"},
    [PROTO_JOIN] = {"room", "since"},
    [PROTO_LEAVE] = {"room"},
    [PROTO_ROOMS] = {"after", "limit"},
    [PROTO_WHO] = {"room", "after", "limit"},
    [PROTO_SEND] = {"room", "to", "text", "cid", "reply_to"},
    [PROTO_HISTORY] = {"room", "before", "limit"},
    [PROTO_TYPING] = {"room"},
    [PROTO_PING] = {NULL},
    [PROTO_EDIT] = {"room", "seq", "text", "cid"},
    [PROTO_DELETE] = {"room", "seq", "cid"},
    [PROTO_REACT] = {"room", "seq", "emoji", "on", "cid"},
    [PROTO_STATUS] = {"state", "text"},
    [PROTO_SEARCH] = {"q", "room", "limit", "after"},
    [PROTO_READ] = {"room", "seq"},
    [PROTO_TOPIC] = {"room", "text", "cid"},
    [PROTO_ROLE] = {"room", "user", "role", "cid"},
    [PROTO_KICK] = {"room", "user", "reason", "cid"},
    [PROTO_BAN] = {"room", "user", "reason", "duration", "cid"},
    [PROTO_UNBAN] = {"room", "user", "cid"},
    [PROTO_MUTE] = {"room", "user", "duration", "cid"},
    [PROTO_UNMUTE] = {"room", "user", "cid"},
};

/* What a client is told for a null field: the same as for a wrong type, since null is one. */
static const struct {
    const char *field;
    const char *why;
} field_whys[] = {
    {"name", "name must be a string"},
    {"password", "password must be a string"},
    {"token", "token must be a string"},
    {"room", "room must be a string"},
    {"since", "since must be an integer >= 0"},
    {"before", "before must be an integer >= 0"},
    {"limit", "limit must be an integer from 1 to 200"},
    {"after", "after must be a string"},
    {"to", "to must be a string"},
    {"text", "text must be a string"},
    {"cid", "cid must be a string of 1-64 bytes"},
    {"seq", "seq must be an integer naming a message"},
    {"reply_to", "reply_to must be an integer naming a message"},
    {"emoji", "emoji must be a string of 1-32 bytes"},
    {"on", "on must be true or false"},
    {"state", "state must be \"online\" or \"away\""},
    {"q", "q must be a string"},
    {"user", "user must be a string"},
    {"role", "role must be op, member or owner"},
    {"reason", "reason must be a string"},
    {"duration", "duration must be a whole number of seconds"},
};

static const char *const error_codes[PROTO_ERROR_COUNT] = {
    [PROTO_OK] = "ok",
    [PROTO_BAD_JSON] = "bad_json",
    [PROTO_BAD_REQUEST] = "bad_request",
    [PROTO_UNKNOWN_TYPE] = "unknown_type",
    [PROTO_NOT_LOGGED_IN] = "not_logged_in",
    [PROTO_ALREADY_LOGGED_IN] = "already_logged_in",
    [PROTO_BAD_NAME] = "bad_name",
    [PROTO_NAME_TAKEN] = "name_taken",
    [PROTO_BAD_CREDENTIALS] = "bad_credentials",
    [PROTO_BAD_TOKEN] = "bad_token",
    [PROTO_NOT_MEMBER] = "not_member",
    [PROTO_FORBIDDEN] = "forbidden",
    [PROTO_NO_SUCH_USER] = "no_such_user",
    [PROTO_TOO_MANY_ROOMS] = "too_many_rooms",
    [PROTO_TOO_LONG] = "too_long",
    [PROTO_RATE_LIMITED] = "rate_limited",
    [PROTO_SERVER_BUSY] = "server_busy",
    [PROTO_NOT_FOUND] = "not_found",
    [PROTO_EDIT_WINDOW] = "edit_window",
    [PROTO_TOO_MANY_REACTIONS] = "too_many_reactions",
    [PROTO_NO_SUCH_ROOM] = "no_such_room",
    [PROTO_BANNED] = "banned",
    [PROTO_MUTED] = "muted",
};

const char *proto_error_code(enum proto_error e)
{
    if ((unsigned)e >= PROTO_ERROR_COUNT)
        return "internal_error";
    return error_codes[e];
}

_Static_assert(PROTO_ERROR_COUNT <= METRIC_ERROR_CODES, "metrics counts every error code");

void proto_metrics_errors(struct metrics_out *o)
{
    metrics_put(o, "# HELP parley_errors_total Error replies by code.\n"
                   "# TYPE parley_errors_total counter\n");
    for (int e = 1; e < PROTO_ERROR_COUNT; e++)
        metrics_put(o, "parley_errors_total{code=\"%s\"} %llu\n",
                    proto_error_code((enum proto_error)e), (unsigned long long)metrics_errors(e));
}

enum proto_error proto_parse_envelope(const char *buf, size_t len, struct proto_request *req)
{
    memset(req, 0, sizeof *req);
    req->limit = LIMIT_DEFAULT;

    /* JSON_ALLOW_NUL: "\u0000" is valid JSON, so a text holding it must reach the
     * control-character check (bad_request) instead of failing here as bad_json. */
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t err;
    json_t *doc = json_loadb(buf, len, flags, &err);
    if (!doc && json_error_code(&err) == json_error_numeric_overflow)
        /* An integer beyond 64 bits is still JSON (a JavaScript client reads it as a
         * double), so read it as one rather than calling the text bad_json. */
        doc = json_loadb(buf, len, flags | JSON_DECODE_INT_AS_REAL, &err);
    if (!doc)
        return PROTO_BAD_JSON;
    req->doc = doc;
    if (!json_is_object(doc))
        return PROTO_BAD_JSON;

    json_t *id = json_object_get(doc, "id");
    if (id && !json_is_number(id) && !json_is_string(id))
        return PROTO_BAD_REQUEST;
    req->id = id;

    json_t *type = json_object_get(doc, "type");
    if (!json_is_string(type))
        return PROTO_BAD_REQUEST;
    const char *t = json_string_value(type);
    size_t tn = json_string_length(type);
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        /* Lengths compared too, so "ping\u0000x" is not ping. */
        if (strlen(type_names[i].name) == tn && memcmp(type_names[i].name, t, tn) == 0) {
            req->type = type_names[i].type;
            return PROTO_OK;
        }
    }
    return PROTO_UNKNOWN_TYPE;
}

void proto_request_free(struct proto_request *req)
{
    free(req->match);
    req->match = NULL;
    json_decref(req->doc);
    req->doc = NULL;
    req->id = NULL;
}

/* ---- validation ---- */

struct check {
    struct proto_request *req;
    const char *why;
};

static enum proto_error fail(struct check *ck, enum proto_error e, const char *why)
{
    ck->why = why;
    return e;
}

static json_t *field(const struct check *ck, const char *key)
{
    return json_object_get(ck->req->doc, key);
}

static const char *null_why(const char *key)
{
    for (size_t i = 0; i < sizeof field_whys / sizeof field_whys[0]; i++)
        if (strcmp(field_whys[i].field, key) == 0)
            return field_whys[i].why;
    return "fields must not be null";
}

static enum proto_error check_nulls(struct check *ck)
{
    const char *const *keys = field_sets[ck->req->type];
    for (size_t i = 0; i < sizeof field_sets[0] / sizeof field_sets[0][0] && keys[i]; i++)
        if (json_is_null(field(ck, keys[i])))
            return fail(ck, PROTO_BAD_REQUEST, null_why(keys[i]));
    return PROTO_OK;
}

/*
 * Reads an integer as rule 50 (protocol 1.1) has it: a JSON number written without fraction or
 * exponent, 0..2^53-1 (what every client language holds exactly). jansson reads such a number
 * as an integer and anything with '.' or 'e' as a real, so 2.0 and 1e2 are refused.
 */
#define INTEGER_MAX ((1ull << 53) - 1)
static bool get_whole(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v))
        return false;
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > INTEGER_MAX)
        return false;
    *out = (uint64_t)i;
    return true;
}

/* A string field's value and length, or NULL when it is missing or not a string. */
static const char *get_string(const struct check *ck, const char *key, size_t *len)
{
    json_t *v = field(ck, key);
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

/* The "room" string as sent, between the bad_request pass and the bad_name pass. */
struct room_field {
    const char *s;
    size_t n;
};

/* The bad_request pass over "room": present and a string. */
static enum proto_error room_present(struct check *ck, struct room_field *rf)
{
    rf->s = get_string(ck, "room", &rf->n);
    if (!rf->s)
        return fail(ck, PROTO_BAD_REQUEST, "room must be a string");
    return PROTO_OK;
}

/* Folds a public room or checks a canonical dm room (bad_name pass, rule 9). */
static enum proto_error room_name(struct check *ck, const struct room_field *rf)
{
    struct proto_request *req = ck->req;
    if (rf->n >= 3 && memcmp(rf->s, "dm:", 3) == 0) {
        char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
        if (!text_parse_dm_room(rf->s, rf->n, a, b))
            return fail(ck, PROTO_BAD_NAME,
                        "dm rooms are named dm:<name>:<name>, two different lower-case user "
                        "names in sorted order");
        /* Canonical means the text as sent is the room's one spelling. */
        memcpy(req->room, rf->s, rf->n);
        req->room[rf->n] = '\0';
        req->room_is_dm = true;
        return PROTO_OK;
    }
    if (!text_fold_room(rf->s, rf->n, req->room))
        return fail(ck, PROTO_BAD_NAME, "room names are 1-32 characters of a-z 0-9 _ -");
    req->room_is_dm = false;
    return PROTO_OK;
}

static const char user_why[] = "user names are 1-32 characters of A-Z a-z 0-9 _ - .";

static enum proto_error validate_register(struct check *ck)
{
    struct proto_request *req = ck->req;
    size_t name_len;
    const char *name = get_string(ck, "name", &name_len);
    if (!name)
        return fail(ck, PROTO_BAD_REQUEST, "name must be a string");
    const char *pw = get_string(ck, "password", &req->password_len);
    if (!pw)
        return fail(ck, PROTO_BAD_REQUEST, "password must be a string");
    if (req->password_len < PASSWORD_MIN || req->password_len > PASSWORD_MAX)
        return fail(ck, PROTO_BAD_REQUEST, "passwords are 8-256 bytes");
    if (!text_valid_user(name, name_len))
        return fail(ck, PROTO_BAD_NAME, user_why);
    req->name = name;
    req->password = pw;
    return PROTO_OK;
}

static enum proto_error validate_login(struct check *ck)
{
    struct proto_request *req = ck->req;
    json_t *token = field(ck, "token");
    if (token) {
        /* A token login ignores name and password (but not their nulls, rule 37). */
        if (!json_is_string(token))
            return fail(ck, PROTO_BAD_REQUEST, "token must be a string");
        size_t n = json_string_length(token);
        const char *t = json_string_value(token);
        /* No token we issue is empty or holds NUL; answering here keeps callers, which
         * see only a C string, from matching "abc\u0000..." as the token "abc". */
        if (n == 0 || memchr(t, '\0', n))
            return fail(ck, PROTO_BAD_TOKEN, "unknown or expired token");
        req->token = t;
        return PROTO_OK;
    }
    size_t name_len;
    if (!field(ck, "name"))
        return fail(ck, PROTO_BAD_REQUEST, "login needs a token, or a name (and password)");
    const char *name = get_string(ck, "name", &name_len);
    if (!name)
        return fail(ck, PROTO_BAD_REQUEST, "name must be a string");
    const char *pw = NULL;
    if (field(ck, "password")) {
        /* Rule 38: no length check here; a password of the wrong length is simply wrong. */
        pw = get_string(ck, "password", &req->password_len);
        if (!pw)
            return fail(ck, PROTO_BAD_REQUEST, "password must be a string");
    }
    if (!text_valid_user(name, name_len))
        return fail(ck, PROTO_BAD_NAME, user_why);
    req->name = name;
    req->password = pw;
    return PROTO_OK;
}

static enum proto_error validate_room_only(struct check *ck)
{
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e != PROTO_OK)
        return e;
    return room_name(ck, &rf);
}

static enum proto_error validate_join(struct check *ck)
{
    struct proto_request *req = ck->req;
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e != PROTO_OK)
        return e;
    json_t *since = field(ck, "since");
    if (since) {
        if (!get_whole(since, &req->since))
            return fail(ck, PROTO_BAD_REQUEST, "since must be an integer >= 0");
        req->has_since = true;
    }
    return room_name(ck, &rf);
}

/* A `limit` field (history, who, rooms), if present: 1..LIMIT_MAX into req->limit. */
static enum proto_error read_limit(struct check *ck)
{
    json_t *limit = field(ck, "limit");
    if (limit) {
        uint64_t l;
        if (!get_whole(limit, &l) || l < 1 || l > LIMIT_MAX)
            return fail(ck, PROTO_BAD_REQUEST, "limit must be an integer from 1 to 200");
        ck->req->limit = (unsigned)l;
    }
    return PROTO_OK;
}

/* who and rooms (rules 84, 85): a page of entries after `after` (any string), at most `limit`. */
static enum proto_error validate_page(struct check *ck)
{
    struct proto_request *req = ck->req;
    req->limit = PAGE_DEFAULT;
    if (field(ck, "after")) {
        req->after = get_string(ck, "after", &req->after_len);
        if (!req->after)
            return fail(ck, PROTO_BAD_REQUEST, "after must be a string");
    }
    return read_limit(ck);
}

static enum proto_error validate_who(struct check *ck)
{
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e == PROTO_OK)
        e = validate_page(ck);
    if (e != PROTO_OK)
        return e;
    return room_name(ck, &rf);
}

static enum proto_error validate_history(struct check *ck)
{
    struct proto_request *req = ck->req;
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e != PROTO_OK)
        return e;
    json_t *before = field(ck, "before");
    if (before) {
        if (!get_whole(before, &req->before))
            return fail(ck, PROTO_BAD_REQUEST, "before must be an integer >= 0");
        req->has_before = true;
    }
    e = read_limit(ck);
    if (e != PROTO_OK)
        return e;
    return room_name(ck, &rf);
}

static enum proto_error validate_send(struct check *ck, const struct proto_limits *limits)
{
    struct proto_request *req = ck->req;
    bool has_room = field(ck, "room") != NULL, has_to = field(ck, "to") != NULL;
    if (has_room == has_to)
        return fail(ck, PROTO_BAD_REQUEST, "send needs exactly one of room and to");
    struct room_field rf = {0};
    const char *to = NULL;
    size_t to_len = 0;
    if (has_room) {
        enum proto_error e = room_present(ck, &rf);
        if (e != PROTO_OK)
            return e;
    } else {
        to = get_string(ck, "to", &to_len);
        if (!to)
            return fail(ck, PROTO_BAD_REQUEST, "to must be a string");
    }

    size_t text_len;
    const char *text = get_string(ck, "text", &text_len);
    if (!text)
        return fail(ck, PROTO_BAD_REQUEST, "text must be a string");
    size_t max_points = limits ? limits->max_text_points : TEXT_POINTS_DEFAULT;
    size_t trimmed = 0;
    enum text_verdict verdict = text_check_message(text, text_len, max_points, &trimmed);
    if (verdict == TEXT_EMPTY)
        return fail(ck, PROTO_BAD_REQUEST, "text is empty after trimming trailing white space");
    if (verdict == TEXT_BAD)
        return fail(ck, PROTO_BAD_REQUEST,
                    "text may not hold control characters other than newline and tab");

    json_t *cid = field(ck, "cid");
    if (cid) {
        size_t n = json_is_string(cid) ? json_string_length(cid) : 0;
        /* Rule 41 holds for a cid too (it comes back in message events and telnet never shows
         * it, but a log or another client might); NUL would also cut the C string short. */
        if (n < 1 || n > CID_MAX || text_has_control(json_string_value(cid), n))
            return fail(ck, PROTO_BAD_REQUEST,
                        "cid must be a string of 1-64 bytes without control characters");
        req->cid = json_string_value(cid);
    }
    json_t *reply_to = field(ck, "reply_to");
    if (reply_to && !get_whole(reply_to, &req->reply_to))
        return fail(ck, PROTO_BAD_REQUEST, "reply_to must be an integer naming a message");
    req->has_reply_to = reply_to != NULL;

    if (has_room) {
        enum proto_error e = room_name(ck, &rf);
        if (e != PROTO_OK)
            return e;
    } else {
        if (!text_valid_user(to, to_len))
            return fail(ck, PROTO_BAD_NAME, user_why);
        req->to = to;
    }

    if (verdict == TEXT_TOO_LONG)
        return fail(ck, PROTO_TOO_LONG,
                    max_points == TEXT_POINTS_DEFAULT ? "text is longer than 4000 characters"
                                                      : "text is longer than this server allows");
    req->text = text;
    req->text_len = trimmed;
    return PROTO_OK;
}

/* A cid field, if present (rule 17): 1..64 bytes, no control character. */
static enum proto_error read_cid(struct check *ck)
{
    json_t *cid = field(ck, "cid");
    if (!cid)
        return PROTO_OK;
    size_t n = json_is_string(cid) ? json_string_length(cid) : 0;
    if (n < 1 || n > CID_MAX || text_has_control(json_string_value(cid), n))
        return fail(ck, PROTO_BAD_REQUEST,
                    "cid must be a string of 1-64 bytes without control characters");
    ck->req->cid = json_string_value(cid);
    return PROTO_OK;
}

/*
 * edit, delete, react (protocol 1.1 rules 49, 50, 52, 54): room, seq (an integer), edit's text
 * as send's, react's emoji and on, cid. The bad_request pass first, then bad_name, then
 * too_long, as for send; an emoji over 32 bytes is too_long whatever else is wrong with it
 * (rule 86), so it is only checked for emptiness and characters when it fits.
 */
static enum proto_error validate_timeline(struct check *ck, const struct proto_limits *limits)
{
    struct proto_request *req = ck->req;
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e != PROTO_OK)
        return e;
    json_t *seq = field(ck, "seq");
    if (!seq || !get_whole(seq, &req->seq))
        return fail(ck, PROTO_BAD_REQUEST, "seq must be an integer naming a message");
    enum text_verdict verdict = TEXT_OK;
    size_t max_points = limits ? limits->max_text_points : TEXT_POINTS_DEFAULT;
    bool emoji_too_long = false;
    if (req->type == PROTO_EDIT) {
        size_t text_len, trimmed = 0;
        const char *text = get_string(ck, "text", &text_len);
        if (!text)
            return fail(ck, PROTO_BAD_REQUEST, "text must be a string");
        verdict = text_check_message(text, text_len, max_points, &trimmed);
        if (verdict == TEXT_EMPTY)
            return fail(ck, PROTO_BAD_REQUEST, "text is empty after trimming trailing white space");
        if (verdict == TEXT_BAD)
            return fail(ck, PROTO_BAD_REQUEST,
                        "text may not hold control characters other than newline and tab");
        req->text = text;
        req->text_len = trimmed;
    } else if (req->type == PROTO_REACT) {
        req->emoji = get_string(ck, "emoji", &req->emoji_len);
        if (!req->emoji)
            return fail(ck, PROTO_BAD_REQUEST, "emoji must be a string of 1-32 bytes");
        /* Over 32 bytes is too_long whatever else is wrong with it: reported after the other
         * fields' bad_request and bad_name (rule 86). */
        switch (timeline_check_emoji(req->emoji, req->emoji_len)) {
        case TIMELINE_EMOJI_OK:
            break;
        case TIMELINE_EMOJI_TOO_LONG:
            emoji_too_long = true;
            break;
        case TIMELINE_EMOJI_EMPTY:
            return fail(ck, PROTO_BAD_REQUEST, "emoji must not be empty");
        case TIMELINE_EMOJI_BAD:
            return fail(ck, PROTO_BAD_REQUEST,
                        "emoji may hold no white space and no control character");
        }
        json_t *on = field(ck, "on");
        if (on && !json_is_boolean(on))
            return fail(ck, PROTO_BAD_REQUEST, "on must be true or false");
        req->on = !on || json_is_true(on);
    }
    e = read_cid(ck);
    if (e == PROTO_OK)
        e = room_name(ck, &rf);
    if (e != PROTO_OK)
        return e;
    if (emoji_too_long)
        return fail(ck, PROTO_TOO_LONG, "emoji is longer than 32 bytes");
    if (verdict == TEXT_TOO_LONG)
        return fail(ck, PROTO_TOO_LONG,
                    max_points == TEXT_POINTS_DEFAULT ? "text is longer than 4000 characters"
                                                      : "text is longer than this server allows");
    return PROTO_OK;
}

enum proto_error proto_status_text(const char *text, size_t n, size_t max_points, size_t *trimmed,
                                   const char **why)
{
    *trimmed = 0;
    enum text_verdict verdict = text_check_message(text, n, SIZE_MAX, trimmed);
    if (verdict == TEXT_EMPTY) {
        *trimmed = 0; /* nothing but white space: no text */
        return PROTO_OK;
    }
    /* Newline and tab pass a message's check; a status is one line. Trailing ones were trimmed
     * as white space, so any left are inside the text. */
    if (verdict == TEXT_BAD || memchr(text, '\n', *trimmed) || memchr(text, '\t', *trimmed)) {
        *why = "a status text may not hold control characters";
        return PROTO_BAD_REQUEST;
    }
    size_t points = 0;
    for (size_t i = 0; i < *trimmed; i++)
        points += ((unsigned char)text[i] & 0xC0) != 0x80; /* valid UTF-8: count lead bytes */
    if (points > max_points) {
        *why = "status text is longer than this server allows";
        return PROTO_TOO_LONG;
    }
    return PROTO_OK;
}

/*
 * status (protocol 1.1 rule 69): state "online" or "away"; text as a topic's (rule 58): a string,
 * trailing white space trimmed, no control character (newline and tab included), at most
 * max_status_points code points; absent is "". bad_request on either field before too_long.
 */
#define STATUS_POINTS_DEFAULT 100
static enum proto_error validate_status(struct check *ck, const struct proto_limits *limits)
{
    struct proto_request *req = ck->req;
    json_t *state = field(ck, "state");
    const char *st = json_is_string(state) ? json_string_value(state) : NULL;
    size_t st_len = st ? json_string_length(state) : 0;
    if (st && st_len == 6 && memcmp(st, "online", 6) == 0)
        req->away = false;
    else if (st && st_len == 4 && memcmp(st, "away", 4) == 0)
        req->away = true;
    else
        return fail(ck, PROTO_BAD_REQUEST, "state must be \"online\" or \"away\"");
    req->text = "";
    req->text_len = 0;
    if (!field(ck, "text"))
        return PROTO_OK;
    size_t text_len;
    const char *text = get_string(ck, "text", &text_len);
    if (!text)
        return fail(ck, PROTO_BAD_REQUEST, "text must be a string");
    size_t max_points =
        limits && limits->max_status_points ? limits->max_status_points : STATUS_POINTS_DEFAULT;
    size_t trimmed = 0;
    const char *why = NULL;
    enum proto_error e = proto_status_text(text, text_len, max_points, &trimmed, &why);
    if (e != PROTO_OK)
        return fail(ck, e, why);
    req->text = text;
    req->text_len = trimmed;
    return PROTO_OK;
}

#define SEARCH_LIMIT_MAX 100
#define SEARCH_LIMIT_DEFAULT 20

/*
 * search (protocol 1.1 rules 71, 72, 75): room (optional) and q strings, q's words and quotes,
 * limit 1..100, an `after` this server gave for the same q and room (all bad_request); then
 * room's name (bad_name); then q's length (too_long).
 */
static enum proto_error validate_search(struct check *ck)
{
    struct proto_request *req = ck->req;
    struct room_field rf = {0};
    bool has_room = field(ck, "room") != NULL;
    if (has_room) {
        enum proto_error e = room_present(ck, &rf);
        if (e != PROTO_OK)
            return e;
    }
    size_t q_len;
    const char *q = get_string(ck, "q", &q_len);
    if (!q)
        return fail(ck, PROTO_BAD_REQUEST, "q must be a string");
    const char *q_why = NULL;
    free(req->match); /* validated again (the fuzzer does): the last expression is kept */
    enum search_query_verdict verdict = search_query_parse(q, q_len, &req->match, &q_why);
    if (verdict == SEARCH_QUERY_BAD)
        return fail(ck, PROTO_BAD_REQUEST, q_why);
    size_t trimmed = 0;
    text_check_message(q, q_len, SIZE_MAX, &trimmed);
    req->q = q;
    req->q_len = trimmed;
    req->limit = SEARCH_LIMIT_DEFAULT;
    json_t *limit = field(ck, "limit");
    if (limit) {
        uint64_t l;
        if (!get_whole(limit, &l) || l < 1 || l > SEARCH_LIMIT_MAX)
            return fail(ck, PROTO_BAD_REQUEST, "limit must be an integer from 1 to 100");
        req->limit = (unsigned)l;
    }
    /* The room as the cursor was signed for: a room with a bad name never had one. */
    struct check scratch = {.req = req};
    bool room_ok = !has_room || room_name(&scratch, &rf) == PROTO_OK;
    if (!has_room)
        req->room[0] = '\0';
    if (field(ck, "after")) {
        size_t after_len;
        const char *after = get_string(ck, "after", &after_len);
        if (!after || !room_ok ||
            !search_cursor_decode(after, after_len, q, trimmed, req->room, &req->cursor))
            return fail(ck, PROTO_BAD_REQUEST,
                        "after must be a next string from a search with the same q and room");
        req->has_cursor = true;
    }
    if (has_room) {
        enum proto_error e = room_name(ck, &rf);
        if (e != PROTO_OK)
            return e;
    }
    if (verdict == SEARCH_QUERY_TOO_LONG)
        return fail(ck, PROTO_TOO_LONG, q_why);
    return PROTO_OK;
}

/* read (protocol 1.1 rule 66): room, and seq an integer (any: above the latest reads as it). */
static enum proto_error validate_read(struct check *ck)
{
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e != PROTO_OK)
        return e;
    json_t *seq = field(ck, "seq");
    if (!seq || !get_whole(seq, &ck->req->seq))
        return fail(ck, PROTO_BAD_REQUEST, "seq must be an integer >= 0");
    return room_name(ck, &rf);
}

/*
 * A one-line text (a topic, rule 58; a reason, rule 63): trailing white space trimmed, then no
 * control character at all, newline and tab included (bad_request), at most max code points
 * (*too_long, reported by the caller after the bad_name pass). Empty after trimming is allowed:
 * *trimmed 0. False for bad_request.
 */
static bool line_text(const char *s, size_t n, size_t max, size_t *trimmed, bool *too_long)
{
    *trimmed = 0;
    *too_long = false;
    enum text_verdict v = text_check_message(s, n, SIZE_MAX, trimmed);
    if (v == TEXT_EMPTY)
        return true;
    if (v != TEXT_OK || memchr(s, '\n', *trimmed) || memchr(s, '\t', *trimmed))
        return false;
    size_t ignored;
    *too_long = text_check_message(s, n, max, &ignored) == TEXT_TOO_LONG;
    return true;
}

/*
 * topic, role, kick, ban, unban, mute, unmute (protocol 1.1 rules 58, 62, 63): room; topic's
 * text; the others' user, role's role, kick's and ban's reason, ban's and mute's duration; cid.
 * The bad_request pass first, then bad_name (room, user), then too_long (text, reason).
 */
static enum proto_error validate_moderation(struct check *ck, const struct proto_limits *limits)
{
    struct proto_request *req = ck->req;
    struct room_field rf;
    enum proto_error e = room_present(ck, &rf);
    if (e != PROTO_OK)
        return e;
    bool too_long = false;
    const char *long_why = NULL;
    if (req->type == PROTO_TOPIC) {
        size_t n, trimmed;
        const char *text = get_string(ck, "text", &n);
        if (!text)
            return fail(ck, PROTO_BAD_REQUEST, "text must be a string");
        size_t max = limits && limits->max_topic_points ? limits->max_topic_points : 300;
        if (!line_text(text, n, max, &trimmed, &too_long))
            return fail(ck, PROTO_BAD_REQUEST, "a topic may hold no control character");
        req->text = text;
        req->text_len = trimmed;
        long_why = "the topic is longer than this server allows";
    } else {
        req->user = get_string(ck, "user", &req->user_len);
        if (!req->user)
            return fail(ck, PROTO_BAD_REQUEST, "user must be a string");
    }
    if (req->type == PROTO_ROLE) {
        size_t n;
        const char *role = get_string(ck, "role", &n);
        if (role && n == 2 && memcmp(role, "op", 2) == 0)
            req->role = PROTO_ROLE_OP;
        else if (role && n == 6 && memcmp(role, "member", 6) == 0)
            req->role = PROTO_ROLE_MEMBER;
        else if (role && n == 5 && memcmp(role, "owner", 5) == 0)
            req->role = PROTO_ROLE_OWNER;
        else
            return fail(ck, PROTO_BAD_REQUEST, "role must be op, member or owner");
    }
    if (req->type == PROTO_KICK || req->type == PROTO_BAN) {
        json_t *reason = field(ck, "reason");
        if (reason) {
            size_t n, trimmed;
            const char *text = get_string(ck, "reason", &n);
            if (!text)
                return fail(ck, PROTO_BAD_REQUEST, "reason must be a string");
            size_t max = limits && limits->max_reason_points ? limits->max_reason_points : 300;
            if (!line_text(text, n, max, &trimmed, &too_long))
                return fail(ck, PROTO_BAD_REQUEST, "a reason may hold no control character");
            if (trimmed) { /* empty is none (rule 63) */
                req->text = text;
                req->text_len = trimmed;
            }
            long_why = "the reason is longer than this server allows";
        }
    }
    if (req->type == PROTO_BAN || req->type == PROTO_MUTE) {
        json_t *duration = field(ck, "duration");
        uint64_t max = limits && limits->max_duration ? limits->max_duration : 31536000;
        if (duration && (!get_whole(duration, &req->duration) || req->duration < 1 ||
                         req->duration > max))
            return fail(ck, PROTO_BAD_REQUEST,
                        "duration must be a whole number of seconds, at least 1 and at most "
                        "this server's longest");
    }
    e = read_cid(ck);
    if (e == PROTO_OK)
        e = room_name(ck, &rf);
    if (e != PROTO_OK)
        return e;
    if (req->user && !text_valid_user(req->user, req->user_len))
        return fail(ck, PROTO_BAD_NAME, user_why);
    if (too_long)
        return fail(ck, PROTO_TOO_LONG, long_why);
    return PROTO_OK;
}

enum proto_error proto_validate(struct proto_request *req, const struct proto_limits *limits,
                                const char **why)
{
    struct check ck = {.req = req, .why = NULL};
    enum proto_error e = check_nulls(&ck);
    if (e == PROTO_OK) {
        switch (req->type) {
        case PROTO_REGISTER:
            e = validate_register(&ck);
            break;
        case PROTO_LOGIN:
            e = validate_login(&ck);
            break;
        case PROTO_JOIN:
            e = validate_join(&ck);
            break;
        case PROTO_WHO:
            e = validate_who(&ck);
            break;
        case PROTO_ROOMS:
            e = validate_page(&ck);
            break;
        case PROTO_LEAVE:
        case PROTO_TYPING:
            e = validate_room_only(&ck);
            break;
        case PROTO_HISTORY:
            e = validate_history(&ck);
            break;
        case PROTO_SEND:
            e = validate_send(&ck, limits);
            break;
        case PROTO_EDIT:
        case PROTO_DELETE:
        case PROTO_REACT:
            e = validate_timeline(&ck, limits);
            break;
        case PROTO_STATUS:
            e = validate_status(&ck, limits);
            break;
        case PROTO_SEARCH:
            e = validate_search(&ck);
            break;
        case PROTO_READ:
            e = validate_read(&ck);
            break;
        case PROTO_TOPIC:
        case PROTO_ROLE:
        case PROTO_KICK:
        case PROTO_BAN:
        case PROTO_UNBAN:
        case PROTO_MUTE:
        case PROTO_UNMUTE:
            e = validate_moderation(&ck, limits);
            break;
        case PROTO_PING:
            break;
        default:
            e = fail(&ck, PROTO_BAD_REQUEST, "unknown request type");
        }
    }
    if (why)
        *why = ck.why;
    return e;
}
