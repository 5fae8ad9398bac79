/*
 * proto: parses and validates one client request of protocol v1 (a JSON
 * object on /ws), in the order PROTOCOL.md's rule 5 fixes for errors:
 *   1. proto_parse_envelope: bad_json, then bad_request on `id` or `type`,
 *      then unknown_type;
 *   2. (the caller checks login state: not_logged_in / already_logged_in);
 *   3. proto_validate: field validation (bad_request, bad_name, too_long).
 * Membership and rate limits are the caller's. Pure apart from jansson's
 * allocation; the request owns the parsed document until proto_request_free.
 */
#ifndef PARLEY_PROTO_H
#define PARLEY_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "search_cursor.h"
#include "text.h"

enum proto_type {
    PROTO_REGISTER,
    PROTO_LOGIN,
    PROTO_JOIN,
    PROTO_LEAVE,
    PROTO_ROOMS,
    PROTO_WHO,
    PROTO_SEND,
    PROTO_HISTORY,
    PROTO_TYPING,
    PROTO_PING,
    PROTO_EDIT,
    PROTO_DELETE,
    PROTO_REACT,
    PROTO_STATUS, /* protocol 1.1 rule 69 */
    PROTO_SEARCH,
    PROTO_READ, /* protocol 1.1 rule 66 */
    /* Topic, roles, moderation (protocol 1.1 rules 58-65). */
    PROTO_TOPIC,
    PROTO_ROLE,
    PROTO_KICK,
    PROTO_BAN,
    PROTO_UNBAN,
    PROTO_MUTE,
    PROTO_UNMUTE,
};

/* Error codes of PROTOCOL.md, in wire spelling by proto_error_code(). */
enum proto_error {
    PROTO_OK = 0,
    PROTO_BAD_JSON,
    PROTO_BAD_REQUEST,
    PROTO_UNKNOWN_TYPE,
    PROTO_NOT_LOGGED_IN,
    PROTO_ALREADY_LOGGED_IN,
    PROTO_BAD_NAME,
    PROTO_NAME_TAKEN,
    PROTO_BAD_CREDENTIALS,
    PROTO_BAD_TOKEN,
    PROTO_NOT_MEMBER,
    PROTO_FORBIDDEN,
    PROTO_NO_SUCH_USER,
    PROTO_TOO_MANY_ROOMS,
    PROTO_TOO_LONG,
    PROTO_RATE_LIMITED,
    PROTO_SERVER_BUSY,
    PROTO_NOT_FOUND, /* protocol 1.1 (rules 50, 52-54) */
    PROTO_EDIT_WINDOW,
    PROTO_TOO_MANY_REACTIONS,
    PROTO_NO_SUCH_ROOM, /* protocol 1.1 (rules 60, 64, 65) */
    PROTO_BANNED,
    PROTO_MUTED,
    PROTO_ERROR_COUNT,
};

/* Limits the validator applies (from the server's options). */
struct proto_limits {
    size_t max_text_points;   /* 4000 */
    size_t max_status_points; /* 100 (rule 69); 0 = the default */
    size_t max_topic_points;  /* topic text (rule 58); 0 = 300 */
    size_t max_reason_points; /* kick, ban reason (rule 63); 0 = 300 */
    uint64_t max_duration;    /* ban, mute duration in seconds (rule 63); 0 = 31536000 */
};

/* role's values (rule 62). */
enum proto_role { PROTO_ROLE_MEMBER, PROTO_ROLE_OP, PROTO_ROLE_OWNER };

struct proto_request {
    enum proto_type type;
    json_t *doc;      /* the parsed object, owned */
    const json_t *id; /* borrowed from doc, or NULL when absent */

    /* Set by proto_validate, as the type requires; strings point into doc or into the buffers
     * below. */
    const char *name;     /* register, login: the user name as sent */
    const char *password; /* register, login (NULL for a guest login) */
    size_t password_len;
    const char *token; /* login by token, else NULL */
    /* join, leave, who, history, typing, send-to-room: the room, folded (public) or canonical (dm)
     */
    char room[TEXT_DM_ROOM_MAX + 1];
    bool room_is_dm;
    const char *to;   /* send: the recipient as sent (valid user name), or NULL */
    const char *text; /* send: the trimmed text (not NUL-terminated at text_len) */
    size_t text_len;
    const char *cid; /* send: client message id or NULL */
    bool has_since;  /* join */
    uint64_t since;
    bool has_before; /* history */
    uint64_t before;
    unsigned limit; /* history: 1..200, default 50; who, rooms: 1..200, default 200 */
    const char
        *after; /* who, rooms: the page starts after this (as sent, maybe with NUL), or NULL */
    size_t after_len;
    /* Protocol 1.1's timeline: edit, delete, react name a message (seq); send may reply to one
     * (reply_to, 0 = none); react: emoji (emoji_len bytes) and on (default true). edit's text is
     * in text / text_len. */
    uint64_t seq;
    uint64_t reply_to;
    bool has_reply_to;
    const char *emoji;
    size_t emoji_len;
    bool on;
    /* status (rule 69): away or online; its text (trimmed, possibly empty) is in text/text_len */
    bool away;
    /* search (protocol 1.1 rules 71, 72): q trimmed (not NUL-terminated at q_len), its FTS5
     * MATCH expression (owned, freed by proto_request_free), limit 1..100 (default 20), and
     * where an `after` cursor goes on. room is "" when the search covers every room. */
    const char *q;
    size_t q_len;
    char *match;
    bool has_cursor;
    struct search_cursor cursor;
    /* Topic and moderation (rules 58-65): topic's text and kick's or ban's reason are in text /
     * text_len (a reason trimmed to nothing is none: text NULL); the user named (valid name, as
     * sent); role's value; ban's or mute's duration in seconds (0 = none). */
    const char *user;
    size_t user_len;
    enum proto_role role;
    uint64_t duration;
};

/*
 * Step 1. Parses buf[0..len) into req. Returns PROTO_OK, or PROTO_BAD_JSON
 * (not JSON / not an object), PROTO_BAD_REQUEST (id not a number or string;
 * type missing, null or not a string), PROTO_UNKNOWN_TYPE. When the error is
 * about `id` itself or the JSON, req->id is NULL (answered without id).
 * Free req with proto_request_free whatever the result.
 */
enum proto_error proto_parse_envelope(const char *buf, size_t len, struct proto_request *req);

/*
 * Step 3. Validates the fields req->type needs (rules 7, 9, 11, 16, 17, 20,
 * 37, 38, 41): any field present with null, wrong JSON types, passwords of
 * 8..256 bytes (register only), names, rooms, since >= 0, before > 0,
 * limit 1..200, text, cid 1..64 bytes, send with exactly one of room / to; who and rooms:
 * after a string, limit 1..200 (default 200).
 * Returns PROTO_OK or the error; *why is a short human message for it.
 */
enum proto_error proto_validate(struct proto_request *req, const struct proto_limits *limits,
                                const char **why);

void proto_request_free(struct proto_request *req);

/*
 * A status text (protocol 1.1 rules 58, 69), for the JSON request and telnet's /away alike:
 * trailing white space trimmed (*trimmed: the bytes left; 0 when nothing is), then no control
 * character, newline and tab included (bad_request), at most max_points code points (too_long).
 * Returns PROTO_OK or the error, with *why.
 */
enum proto_error proto_status_text(const char *text, size_t n, size_t max_points, size_t *trimmed,
                                   const char **why);

/* The wire spelling of an error code, e.g. "bad_json". */
const char *proto_error_code(enum proto_error e);
/* The error replies counted by code (metrics_error), as lines of /metrics (METRICS_PART_ERRORS). */
struct metrics_out;
void proto_metrics_errors(struct metrics_out *o);

#endif
