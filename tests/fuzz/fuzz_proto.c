/* fuzz_proto: libFuzzer target for request parsing and validation, the text rules and jsonw. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "proto.h"
#include "search_text.h"
#include "text.h"
#include "utf8.h"

/* Aborts, so libFuzzer reports the input, when an invariant does not hold. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* A small text limit, so short inputs reach too_long too. */
static const struct proto_limits fuzz_limits = {.max_text_points = 16};

static size_t code_points(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += ((unsigned char)s[i] & 0xC0) != 0x80;
    return count;
}

static void check_room(const struct proto_request *req)
{
    size_t n = strlen(req->room);
    CHECK(n > 0);
    if (req->room_is_dm) {
        char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1], again[TEXT_DM_ROOM_MAX + 1];
        CHECK(text_parse_dm_room(req->room, n, a, b));
        CHECK(strcmp(a, b) < 0);
        text_dm_room(b, a, again);
        CHECK(strcmp(again, req->room) == 0);
    } else {
        char folded[TEXT_NAME_MAX + 1];
        CHECK(text_fold_room(req->room, n, folded));
        CHECK(strcmp(folded, req->room) == 0);
    }
}

/* What a successful validation promises about the fields of each type. */
static void check_valid(const struct proto_request *req)
{
    switch (req->type) {
    case PROTO_REGISTER:
        CHECK(req->name && text_valid_user(req->name, strlen(req->name)));
        CHECK(req->password && req->password_len >= 8 && req->password_len <= 256);
        break;
    case PROTO_LOGIN:
        CHECK((req->token != NULL) != (req->name != NULL));
        if (req->token)
            CHECK(req->token[0] != '\0' && !req->password);
        if (req->name)
            CHECK(text_valid_user(req->name, strlen(req->name)));
        break;
    case PROTO_JOIN:
    case PROTO_LEAVE:
    case PROTO_WHO:
    case PROTO_TYPING:
        check_room(req);
        break;
    case PROTO_HISTORY:
        check_room(req);
        CHECK(req->limit >= 1 && req->limit <= 200);
        if (req->has_before) /* any seq (protocol 1.1 rules 50, 56): 0 too, which finds nothing */
            CHECK(req->before <= ((uint64_t)1 << 53) - 1);
        break;
    case PROTO_SEND: {
        CHECK((req->to != NULL) != (req->room[0] != '\0'));
        if (req->to)
            CHECK(text_valid_user(req->to, strlen(req->to)));
        if (req->room[0])
            check_room(req);
        CHECK(req->text && req->text_len > 0);
        size_t t;
        CHECK(text_check_message(req->text, req->text_len, fuzz_limits.max_text_points, &t) ==
              TEXT_OK);
        CHECK(t == req->text_len); /* trimming is idempotent */
        CHECK(code_points(req->text, req->text_len) <= fuzz_limits.max_text_points);
        if (req->cid)
            CHECK(strlen(req->cid) >= 1 && strlen(req->cid) <= 64);
        break;
    }
    case PROTO_EDIT:
    case PROTO_DELETE:
    case PROTO_REACT: /* the timeline (rules 49, 50): a room, a seq that is an integer */
        check_room(req);
        CHECK(req->seq <= ((uint64_t)1 << 53) - 1);
        break;
    case PROTO_SEARCH: {
        /* protocol 1.1 rules 71, 72: a room only when given, q a query search_text accepts,
         * limit 1..100, an expression to match with */
        if (req->room[0])
            check_room(req);
        CHECK(req->q && req->match && req->limit >= 1 && req->limit <= 100);
        char *again = NULL;
        CHECK(search_query_parse(req->q, req->q_len, &again, NULL) == SEARCH_QUERY_OK);
        CHECK(strcmp(again, req->match) == 0);
        free(again);
        break;
    }
    case PROTO_ROOMS:
    case PROTO_PING:
        break;
    case PROTO_TOPIC: /* rule 58: one line, trimmed, up to 300 code points by default; "" clears */
        check_room(req);
        CHECK(req->text != NULL);
        CHECK(code_points(req->text, req->text_len) <= 300);
        CHECK(!text_has_control(req->text, req->text_len));
        break;
    case PROTO_ROLE:
    case PROTO_KICK:
    case PROTO_BAN:
    case PROTO_UNBAN:
    case PROTO_MUTE:
    case PROTO_UNMUTE: /* rules 62, 63 */
        check_room(req);
        CHECK(req->user && text_valid_user(req->user, req->user_len));
        CHECK(req->duration <= 31536000);
        if (req->text)
            CHECK(req->text_len > 0 && code_points(req->text, req->text_len) <= 300 &&
                  !text_has_control(req->text, req->text_len));
        break;
    default:
        CHECK(0);
    }
}

/* Encodes an error reply the way a session would and checks the id reads back unchanged. */
static void check_reply(const struct proto_request *req, enum proto_error e, const char *why)
{
    struct jsonw w;
    jsonw_init(&w, 10);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "error");
    if (req->id) {
        jsonw_key(&w, "id");
        jsonw_json(&w, req->id);
    }
    jsonw_kv_str(&w, "code", proto_error_code(e));
    jsonw_kv_str(&w, "message", why ? why : "");
    if (req->room[0])
        jsonw_kv_str(&w, "room", req->room);
    if (req->text)
        jsonw_kv_strn(&w, "text", req->text, req->text_len);
    jsonw_object_end(&w);
    struct chunk *c = jsonw_finish(&w);
    json_error_t err;
    json_t *back = json_loadb((const char *)c->data + 10, c->len - 10, JSON_ALLOW_NUL, &err);
    CHECK(back != NULL);
    if (req->id)
        CHECK(json_equal(json_object_get(back, "id"), req->id));
    if (req->text) {
        json_t *t = json_object_get(back, "text");
        CHECK(json_string_length(t) == req->text_len);
        CHECK(memcmp(json_string_value(t), req->text, req->text_len) == 0);
    }
    json_decref(back);
    chunk_unref(c);
}

static void fuzz_request(const char *buf, size_t len)
{
    struct proto_request req;
    enum proto_error e = proto_parse_envelope(buf, len, &req);
    CHECK(e == PROTO_OK || e == PROTO_BAD_JSON || e == PROTO_BAD_REQUEST ||
          e == PROTO_UNKNOWN_TYPE);
    if (e == PROTO_BAD_JSON)
        CHECK(req.id == NULL);
    if (req.id)
        CHECK(json_is_number(req.id) || json_is_string(req.id));
    const char *why = NULL;
    if (e == PROTO_OK) {
        e = proto_validate(&req, &fuzz_limits, &why);
        CHECK(e == PROTO_OK || e == PROTO_BAD_REQUEST || e == PROTO_BAD_NAME ||
              e == PROTO_TOO_LONG || e == PROTO_BAD_TOKEN);
        CHECK((e == PROTO_OK) == (why == NULL));
        CHECK(e != PROTO_TOO_LONG || req.type == PROTO_SEND || req.type == PROTO_EDIT ||
              req.type == PROTO_REACT || req.type == PROTO_SEARCH);
        CHECK(e != PROTO_BAD_TOKEN || req.type == PROTO_LOGIN);
        if (e == PROTO_OK)
            check_valid(&req);
        /* Deterministic: a second run gives the same answer. */
        const char *why2;
        CHECK(proto_validate(&req, &fuzz_limits, &why2) == e);
        CHECK(why2 == why);
    }
    check_reply(&req, e, why);
    proto_request_free(&req);
}

/* The raw bytes as a message text, and through jsonw_string when they are UTF-8. */
static void fuzz_text(const char *buf, size_t len)
{
    size_t t = 0;
    enum text_verdict v = text_check_message(buf, len, 16, &t);
    CHECK(v == TEXT_OK || v == TEXT_EMPTY || v == TEXT_TOO_LONG || v == TEXT_BAD);
    bool valid = utf8_is_valid((const uint8_t *)buf, len);
    if (!valid)
        CHECK(v == TEXT_BAD);
    if (v == TEXT_OK) {
        CHECK(t > 0 && t <= len);
        CHECK(utf8_is_valid((const uint8_t *)buf, t));
        CHECK(code_points(buf, t) <= 16);
        for (size_t i = 0; i < t; i++) {
            unsigned char ch = (unsigned char)buf[i];
            CHECK(ch >= 0x20 || ch == '\n' || ch == '\t');
            CHECK(ch != 0x7F);
        }
        /* Whatever was cut is white space only: the text with it cut is itself "trimmed". */
        size_t t2;
        CHECK(text_check_message(buf, t, 16, &t2) == TEXT_OK && t2 == t);
    }
    if (valid) {
        struct jsonw w;
        jsonw_init(&w, 0);
        jsonw_string(&w, buf, len);
        struct chunk *c = jsonw_finish(&w);
        json_error_t err;
        json_t *s =
            json_loadb((const char *)c->data, c->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        CHECK(s != NULL && json_is_string(s));
        CHECK(json_string_length(s) == len && memcmp(json_string_value(s), buf, len) == 0);
        json_decref(s);
        chunk_unref(c);
    }
    char room[TEXT_NAME_MAX + 1], a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (text_fold_room(buf, len, room))
        CHECK(strlen(room) == len);
    if (text_parse_dm_room(buf, len, a, b))
        CHECK(len == 3 + strlen(a) + 1 + strlen(b));
    if (text_valid_user(buf, len))
        CHECK(len >= 1 && len <= TEXT_NAME_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exactly sized copy, so any read past the end is caught by ASan. */
    char *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    fuzz_request(buf, size);
    fuzz_text(buf, size);
    free(buf);
    return 0;
}
