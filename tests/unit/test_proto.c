/* test_proto: unit tests of request parsing and field validation against PROTOCOL.md's rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonw.h"
#include "proto.h"

static const struct proto_limits limits = {.max_text_points = 4000};

/* Both steps as a session runs them (login state aside); returns the first error. */
static enum proto_error run_n(const char *json, size_t n, struct proto_request *req,
                              const char **why)
{
    *why = NULL;
    enum proto_error e = proto_parse_envelope(json, n, req);
    if (e != PROTO_OK)
        return e;
    e = proto_validate(req, &limits, why);
    if (e == PROTO_OK)
        assert_null(*why);
    else
        assert_true(*why != NULL && strlen(*why) > 0);
    return e;
}

static enum proto_error run(const char *json, struct proto_request *req, const char **why)
{
    return run_n(json, strlen(json), req, why);
}

static void expect_line(int line, const char *json, enum proto_error want)
{
    struct proto_request req;
    const char *why;
    enum proto_error got = run(json, &req, &why);
    proto_request_free(&req);
    if (got != want)
        fail_msg("line %d: %s\n  got %s (%s), want %s", line, json, proto_error_code(got),
                 why ? why : "-", proto_error_code(want));
}

#define EXPECT(want, json) expect_line(__LINE__, json, PROTO_##want)

/* A JSON string literal of `count` copies of `unit`, inside a request built from fmt. */
static char *build(const char *fmt, const char *unit, size_t count)
{
    size_t ul = strlen(unit);
    char *rep = malloc(ul * count + 1);
    assert_non_null(rep);
    for (size_t i = 0; i < count; i++)
        memcpy(rep + i * ul, unit, ul);
    rep[ul * count] = '\0';
    size_t n = strlen(fmt) + ul * count + 1;
    char *out = malloc(n);
    assert_non_null(out);
    int w = snprintf(out, n, fmt, rep);
    assert_true(w > 0 && (size_t)w < n);
    free(rep);
    return out;
}

static void expect_built(int line, enum proto_error want, const char *fmt, const char *unit,
                         size_t count)
{
    char *json = build(fmt, unit, count);
    expect_line(line, json, want);
    free(json);
}

#define EXPECT_REP(want, fmt, unit, count) expect_built(__LINE__, PROTO_##want, fmt, unit, count)

/* ---- status (protocol 1.1 rule 69) ---- */

static void test_status(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(
        run("{\"type\":\"status\",\"state\":\"away\",\"text\":\"lunch \\t \"}", &req, &why),
        PROTO_OK);
    assert_true(req.away);
    assert_int_equal(req.text_len, 5);
    assert_memory_equal(req.text, "lunch", 5);
    proto_request_free(&req);
    assert_int_equal(run("{\"type\":\"status\",\"state\":\"online\"}", &req, &why), PROTO_OK);
    assert_false(req.away);
    assert_int_equal(req.text_len, 0);
    proto_request_free(&req);
    EXPECT(OK, "{\"type\":\"status\",\"state\":\"online\",\"text\":\"   \"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"busy\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"away\",\"text\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"away\",\"text\":[]}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"away\",\"text\":\"a\\nb\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"away\",\"text\":\"a\\tb\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"away\",\"text\":\"a\\u0000\"}");
    /* 100 code points (the default), then 101; bad_request before too_long */
    EXPECT_REP(OK, "{\"type\":\"status\",\"state\":\"away\",\"text\":\"%s\"}", "\xc3\xa9", 100);
    EXPECT_REP(TOO_LONG, "{\"type\":\"status\",\"state\":\"away\",\"text\":\"%s\"}", "\xc3\xa9",
               101);
    EXPECT_REP(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"away\",\"text\":\"%s\\n.\"}", "x",
               200);
    EXPECT_REP(BAD_REQUEST, "{\"type\":\"status\",\"state\":\"gone\",\"text\":\"%s\"}", "x", 200);
}

/* ---- envelope ---- */

static void test_not_json(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        " ",
        "{",
        "nope",
        "{\"type\":\"ping\"} x",
        "{\"type\":\"ping\",}",
        "{'type':'ping'}",
        "{\"type\":\"ping\"}{}",
        "[{\"type\":\"ping\"}]",
        "[]",
        "\"ping\"",
        "1",
        "null",
        "true",
        "{\"type\":\"send\",\"text\":\"\\ud800\"}", /* lone surrogate escape */
        "{\"type\":\"ping\",\"id\":1e400}",         /* not representable */
        "{\"type\":\"ping\",\"id\":01}",
        "{\"type\":\"ping\",\"id\":NaN}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct proto_request req;
        assert_int_equal(proto_parse_envelope(bad[i], strlen(bad[i]), &req), PROTO_BAD_JSON);
        assert_null(req.id); /* answered without id */
        proto_request_free(&req);
    }
}

static void test_not_json_bytes(void **state)
{
    (void)state;
    static const char invalid_utf8[] = "{\"type\":\"send\",\"room\":\"a\",\"text\":\"\xff\"}";
    static const char nul_outside[] = "{\"type\":\"ping\"}\0";
    static const char nul_inside[] = "{\"type\":\"pi\0ng\"}";
    const struct {
        const char *p;
        size_t n;
    } cases[] = {
        {invalid_utf8, sizeof invalid_utf8 - 1},
        {nul_outside, sizeof nul_outside - 1},
        {nul_inside, sizeof nul_inside - 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct proto_request req;
        const char *why;
        assert_int_equal(run_n(cases[i].p, cases[i].n, &req, &why), PROTO_BAD_JSON);
        assert_null(req.id);
        proto_request_free(&req);
    }
}

static void test_id_kinds(void **state)
{
    (void)state;
    EXPECT(OK, "{\"type\":\"ping\",\"id\":1}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":\"x\"}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":\"\"}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":1.5}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":-3}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":0}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":1e3}");
    EXPECT(OK, "{\"type\":\"ping\"}");
    static const char *bad_ids[] = {"null", "true", "false", "[]", "{}", "[1]", "{\"a\":1}"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"type\":\"ping\",\"id\":%s}", bad_ids[i]);
        struct proto_request req;
        assert_int_equal(proto_parse_envelope(json, strlen(json), &req), PROTO_BAD_REQUEST);
        assert_null(req.id); /* rule 1: answered without id */
        proto_request_free(&req);
    }
}

/* A bad id outranks everything about type; the answer carries no id. */
static void test_id_before_type(void **state)
{
    (void)state;
    static const char *cases[] = {
        "{\"id\":null}",
        "{\"id\":null,\"type\":5}",
        "{\"id\":[],\"type\":\"nope\"}",
        "{\"type\":\"nope\",\"id\":{}}",
        "{\"type\":\"ping\",\"id\":true}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct proto_request req;
        assert_int_equal(proto_parse_envelope(cases[i], strlen(cases[i]), &req), PROTO_BAD_REQUEST);
        assert_null(req.id);
        proto_request_free(&req);
    }
}

static void test_type_errors_keep_id(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        enum proto_error want;
    } cases[] = {
        {"{\"id\":7}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"type\":null}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"type\":5}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"type\":[\"ping\"]}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"type\":{}}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"type\":true}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"Type\":\"ping\"}", PROTO_BAD_REQUEST},
        {"{\"id\":7,\"type\":\"PING\"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"hello\"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"pong\"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"\"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"ping \"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"ping\\u0000\"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"pin\"}", PROTO_UNKNOWN_TYPE},
        {"{\"id\":7,\"type\":\"registered\"}", PROTO_UNKNOWN_TYPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct proto_request req;
        assert_int_equal(proto_parse_envelope(cases[i].json, strlen(cases[i].json), &req),
                         cases[i].want);
        assert_non_null(req.id);
        assert_int_equal(json_integer_value(req.id), 7);
        proto_request_free(&req);
    }
}

static void test_type_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum proto_type type;
    } cases[] = {
        {"register", PROTO_REGISTER}, {"login", PROTO_LOGIN},     {"join", PROTO_JOIN},
        {"leave", PROTO_LEAVE},       {"rooms", PROTO_ROOMS},     {"who", PROTO_WHO},
        {"send", PROTO_SEND},         {"history", PROTO_HISTORY}, {"typing", PROTO_TYPING},
        {"ping", PROTO_PING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"type\":\"%s\"}", cases[i].name);
        struct proto_request req;
        assert_int_equal(proto_parse_envelope(json, strlen(json), &req), PROTO_OK);
        assert_int_equal(req.type, cases[i].type);
        assert_null(req.id);
        proto_request_free(&req);
    }
}

/* The id is echoed as the same JSON value (rule 1), through the JSON writer. */
static void test_id_echo(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *echo;
    } cases[] = {
        {"{\"type\":\"ping\",\"id\":1}", "1"},
        {"{\"type\":\"ping\",\"id\":-42}", "-42"},
        {"{\"type\":\"ping\",\"id\":\"x\"}", "\"x\""},
        {"{\"type\":\"ping\",\"id\":1.5}", "1.5"},
        {"{\"type\":\"ping\",\"id\":\"a\\u0000\\\"b\"}", "\"a\\u0000\\\"b\""},
        {"{\"type\":\"ping\",\"id\":\"caf\\u00e9\"}", "\"caf\xc3\xa9\""},
        {"{\"id\":9007199254740993,\"type\":\"ping\"}", "9007199254740993"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct proto_request req;
        assert_int_equal(proto_parse_envelope(cases[i].json, strlen(cases[i].json), &req),
                         PROTO_OK);
        struct jsonw w;
        jsonw_init(&w, 0);
        jsonw_json(&w, req.id);
        struct chunk *c = jsonw_finish(&w);
        if (c->len != strlen(cases[i].echo) || memcmp(c->data, cases[i].echo, c->len) != 0)
            fail_msg("echo of %s: %.*s", cases[i].json, (int)c->len, (const char *)c->data);
        chunk_unref(c);
        proto_request_free(&req);
    }
}

/* An integer beyond 64 bits is still JSON: read as a double, as a JavaScript client would. */
static void test_huge_integers(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(run("{\"type\":\"ping\",\"id\":123456789012345678901}", &req, &why), PROTO_OK);
    assert_true(json_is_real(req.id));
    assert_true(json_real_value(req.id) > 1.2e20);
    proto_request_free(&req);

    /* Rule 50 (protocol 1.1): an integer field holds 0..2^53-1; beyond is bad_request. */
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":123456789012345678901}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":9007199254740992}");
    EXPECT(OK, "{\"type\":\"join\",\"room\":\"a\",\"since\":9007199254740991}");

    /* The document's other numbers are read as doubles too: no longer integers (rule 50). */
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"id\":1,\"room\":\"a\",\"limit\":7,"
                        "\"before\":99999999999999999999999}");

    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":-123456789012345678901}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":123456789012345678901}");
}

/* Unknown fields are ignored, whatever their value (null included). */
static void test_unknown_fields(void **state)
{
    (void)state;
    EXPECT(OK, "{\"type\":\"ping\",\"foo\":null,\"bar\":[1,{}],\"baz\":{\"x\":null}}");
    EXPECT(OK, "{\"type\":\"rooms\",\"room\":null,\"text\":null}"); /* not fields of rooms */
    EXPECT(OK, "{\"type\":\"register\",\"name\":\"alice\",\"password\":\"12345678\","
               "\"token\":null,\"since\":null}");
    EXPECT(OK, "{\"type\":\"join\",\"room\":\"a\",\"limit\":null,\"text\":5}");
    EXPECT(OK, "{\"type\":\"ping\",\"ID\":null,\"TYPE\":5}");
}

/* Duplicate keys: the last one wins, as in JavaScript's JSON.parse. */
static void test_duplicate_keys(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(
        run("{\"type\":\"nope\",\"type\":\"join\",\"room\":\"a\",\"room\":\"B\"}", &req, &why),
        PROTO_OK);
    assert_int_equal(req.type, PROTO_JOIN);
    assert_string_equal(req.room, "b");
    proto_request_free(&req);
}

static void test_error_codes(void **state)
{
    (void)state;
    static const char *want[PROTO_ERROR_COUNT] = {
        "ok",           "bad_json",           "bad_request",
        "unknown_type", "not_logged_in",      "already_logged_in",
        "bad_name",     "name_taken",         "bad_credentials",
        "bad_token",    "not_member",         "forbidden",
        "no_such_user", "too_many_rooms",     "too_long",
        "rate_limited", "server_busy",        "not_found",
        "edit_window",  "too_many_reactions", "no_such_room",
        "banned",       "muted",
    };
    for (int e = 0; e < PROTO_ERROR_COUNT; e++)
        assert_string_equal(proto_error_code((enum proto_error)e), want[e]);
    assert_non_null(proto_error_code(PROTO_ERROR_COUNT));
    assert_non_null(proto_error_code((enum proto_error) - 1));
}

/* ---- register ---- */

static void test_register(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(
        run("{\"type\":\"register\",\"id\":1,\"name\":\"Alice\",\"password\":\"s3cret-pass\"}",
            &req, &why),
        PROTO_OK);
    assert_string_equal(req.name, "Alice"); /* as sent */
    assert_string_equal(req.password, "s3cret-pass");
    assert_int_equal(req.password_len, 11);
    assert_null(req.token);
    proto_request_free(&req);

    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"password\":\"12345678\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":\"alice\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":5,\"password\":\"12345678\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":[\"a\"],\"password\":\"12345678\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":\"alice\",\"password\":12345678}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":null,\"password\":\"12345678\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":\"alice\",\"password\":null}");
    EXPECT(BAD_NAME, "{\"type\":\"register\",\"name\":\"\",\"password\":\"12345678\"}");
    EXPECT(BAD_NAME, "{\"type\":\"register\",\"name\":\"al ice\",\"password\":\"12345678\"}");
    EXPECT(BAD_NAME, "{\"type\":\"register\",\"name\":\"al:ice\",\"password\":\"12345678\"}");
    EXPECT(BAD_NAME, "{\"type\":\"register\",\"name\":\"caf\\u00e9\",\"password\":\"12345678\"}");
    EXPECT(BAD_NAME, "{\"type\":\"register\",\"name\":\"a\\u0000\",\"password\":\"12345678\"}");
    EXPECT(OK, "{\"type\":\"register\",\"name\":\"a.b-c_D9\",\"password\":\"12345678\"}");
    EXPECT_REP(OK, "{\"type\":\"register\",\"name\":\"%s\",\"password\":\"12345678\"}", "n", 32);
    EXPECT_REP(BAD_NAME, "{\"type\":\"register\",\"name\":\"%s\",\"password\":\"12345678\"}", "n",
               33);
}

/* Rule 7: 8..256 bytes, counted in bytes, not characters. */
static void test_register_password_length(void **state)
{
    (void)state;
    const char *fmt = "{\"type\":\"register\",\"name\":\"alice\",\"password\":\"%s\"}";
    EXPECT_REP(BAD_REQUEST, fmt, "p", 0);
    EXPECT_REP(BAD_REQUEST, fmt, "p", 7);
    EXPECT_REP(OK, fmt, "p", 8);
    EXPECT_REP(OK, fmt, "p", 256);
    EXPECT_REP(BAD_REQUEST, fmt, "p", 257);
    EXPECT_REP(BAD_REQUEST, fmt, "\\u00e9", 3); /* 3 characters, 6 bytes */
    EXPECT_REP(OK, fmt, "\\u00e9", 4);          /* 4 characters, 8 bytes */
    EXPECT_REP(OK, fmt, "\\u00e9", 128);        /* 256 bytes */
    EXPECT_REP(BAD_REQUEST, fmt, "\\u00e9", 129);
    EXPECT_REP(OK, fmt, "\xe2\x82\xac", 85); /* 255 bytes */
    EXPECT_REP(BAD_REQUEST, fmt, "\xe2\x82\xac", 86);

    struct proto_request req;
    const char *why;
    assert_int_equal(
        run("{\"type\":\"register\",\"name\":\"alice\",\"password\":\"abcdefg\\u0000\"}", &req,
            &why),
        PROTO_OK);
    assert_int_equal(req.password_len, 8);
    assert_memory_equal(req.password, "abcdefg\0", 8);
    proto_request_free(&req);
}

/* Rule 5 ordering inside field validation: bad_request before bad_name. */
static void test_register_order(void **state)
{
    (void)state;
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":\"bad name\",\"password\":\"short\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":\"bad name\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"register\",\"name\":\"bad name\",\"password\":null}");
}

/* ---- login ---- */

static void test_login(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(run("{\"type\":\"login\",\"name\":\"alice\",\"password\":\"x\"}", &req, &why),
                     PROTO_OK); /* rule 38: no length check at login */
    assert_string_equal(req.name, "alice");
    assert_string_equal(req.password, "x");
    assert_int_equal(req.password_len, 1);
    assert_null(req.token);
    proto_request_free(&req);

    assert_int_equal(run("{\"type\":\"login\",\"name\":\"Carol\"}", &req, &why), PROTO_OK);
    assert_string_equal(req.name, "Carol");
    assert_null(req.password);
    assert_null(req.token);
    proto_request_free(&req);

    assert_int_equal(run("{\"type\":\"login\",\"token\":\"abc\"}", &req, &why), PROTO_OK);
    assert_string_equal(req.token, "abc");
    assert_null(req.name);
    assert_null(req.password);
    proto_request_free(&req);

    /* With a token, name and password are ignored, even when they are invalid. */
    assert_int_equal(
        run("{\"type\":\"login\",\"token\":\"abc\",\"name\":\"bad name!\",\"password\":5}", &req,
            &why),
        PROTO_OK);
    assert_string_equal(req.token, "abc");
    assert_null(req.name);
    proto_request_free(&req);

    EXPECT_REP(OK, "{\"type\":\"login\",\"name\":\"alice\",\"password\":\"%s\"}", "p", 300);
    EXPECT_REP(OK, "{\"type\":\"login\",\"name\":\"alice\",\"password\":\"%s\"}", "p", 0);
}

static void test_login_errors(void **state)
{
    (void)state;
    EXPECT(BAD_REQUEST, "{\"type\":\"login\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"password\":\"12345678\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"name\":5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"name\":\"alice\",\"password\":5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"name\":\"alice\",\"password\":[]}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"token\":5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"token\":{}}");
    /* Rule 37: null is refused even in the fields a token login ignores. */
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"token\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"token\":null,\"name\":\"alice\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"token\":\"abc\",\"name\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"token\":\"abc\",\"password\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"name\":\"alice\",\"password\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"name\":null}");
    EXPECT(BAD_NAME, "{\"type\":\"login\",\"name\":\"\"}");
    EXPECT(BAD_NAME, "{\"type\":\"login\",\"name\":\"a b\",\"password\":\"12345678\"}");
    EXPECT_REP(BAD_NAME, "{\"type\":\"login\",\"name\":\"%s\"}", "x", 33);
    EXPECT_REP(OK, "{\"type\":\"login\",\"name\":\"%s\"}", "x", 32);
    EXPECT(BAD_REQUEST, "{\"type\":\"login\",\"name\":\"a b\",\"password\":5}");
    /* No token is empty or holds NUL: such a token is simply unknown (rule 8). */
    EXPECT(BAD_TOKEN, "{\"type\":\"login\",\"token\":\"\"}");
    EXPECT(BAD_TOKEN, "{\"type\":\"login\",\"token\":\"abc\\u0000def\"}");
}

/* ---- rooms: join, leave, who, typing ---- */

static void test_room_names(void **state)
{
    (void)state;
    static const char *types[] = {"join", "leave", "who", "typing", "history"};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        static const struct {
            const char *room;
            enum proto_error want;
            const char *folded;
            bool dm;
        } cases[] = {
            {"general", PROTO_OK, "general", false},
            {"General", PROTO_OK, "general", false},
            {"A-b_9", PROTO_OK, "a-b_9", false},
            {"dm:alice:bob", PROTO_OK, "dm:alice:bob", true},
            {"dm:a.b:ab", PROTO_OK, "dm:a.b:ab", true},
            {"dm:bob:alice", PROTO_BAD_NAME, NULL, false},
            {"dm:alice:alice", PROTO_BAD_NAME, NULL, false},
            {"DM:alice:bob", PROTO_BAD_NAME, NULL, false},
            {"dm:Alice:bob", PROTO_BAD_NAME, NULL, false},
            {"dm:alice", PROTO_BAD_NAME, NULL, false},
            {"dm:", PROTO_BAD_NAME, NULL, false},
            {"dm", PROTO_OK, "dm", false},
            {"a.b", PROTO_BAD_NAME, NULL, false},
            {"", PROTO_BAD_NAME, NULL, false},
            {"gen eral", PROTO_BAD_NAME, NULL, false},
            {"#general", PROTO_BAD_NAME, NULL, false},
            {"caf\\u00e9", PROTO_BAD_NAME, NULL, false},
            {"a\\u0000", PROTO_BAD_NAME, NULL, false},
            {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", PROTO_OK, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             false},
            {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", PROTO_BAD_NAME, NULL, false},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char json[160];
            snprintf(json, sizeof json, "{\"type\":\"%s\",\"id\":3,\"room\":\"%s\"}", types[t],
                     cases[i].room);
            struct proto_request req;
            const char *why;
            enum proto_error got = run(json, &req, &why);
            if (got != cases[i].want)
                fail_msg("%s: got %s want %s", json, proto_error_code(got),
                         proto_error_code(cases[i].want));
            if (got == PROTO_OK) {
                assert_string_equal(req.room, cases[i].folded);
                assert_int_equal(req.room_is_dm, cases[i].dm);
            } else {
                assert_non_null(strstr(why, cases[i].room[0] == 'd' && cases[i].room[1] == 'm' &&
                                                    cases[i].room[2] == ':'
                                                ? "dm"
                                                : "1-32"));
            }
            proto_request_free(&req);
        }
        char json[80];
        snprintf(json, sizeof json, "{\"type\":\"%s\"}", types[t]);
        expect_line(__LINE__, json, PROTO_BAD_REQUEST);
        snprintf(json, sizeof json, "{\"type\":\"%s\",\"room\":null}", types[t]);
        expect_line(__LINE__, json, PROTO_BAD_REQUEST);
        snprintf(json, sizeof json, "{\"type\":\"%s\",\"room\":5}", types[t]);
        expect_line(__LINE__, json, PROTO_BAD_REQUEST);
        snprintf(json, sizeof json, "{\"type\":\"%s\",\"room\":[\"a\"]}", types[t]);
        expect_line(__LINE__, json, PROTO_BAD_REQUEST);
    }
}

static void test_join_since(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(run("{\"type\":\"join\",\"room\":\"general\"}", &req, &why), PROTO_OK);
    assert_false(req.has_since);
    proto_request_free(&req);
    assert_int_equal(run("{\"type\":\"join\",\"room\":\"general\",\"since\":40}", &req, &why),
                     PROTO_OK);
    assert_true(req.has_since);
    assert_int_equal(req.since, 40);
    proto_request_free(&req);
    assert_int_equal(run("{\"type\":\"join\",\"room\":\"general\",\"since\":0}", &req, &why),
                     PROTO_OK);
    assert_true(req.has_since);
    assert_int_equal(req.since, 0);
    proto_request_free(&req);
    /* Rule 50: written without fraction or exponent, 0..2^53-1. */
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":9223372036854775807}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":2.0}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":1e1}");
    assert_int_equal(run("{\"type\":\"join\",\"room\":\"a\",\"since\":-0}", &req, &why), PROTO_OK);
    assert_int_equal(req.since, 0);
    proto_request_free(&req);

    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":-1}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":-9223372036854775808}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":1.5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":0.5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":-0.5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":1e-300}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":\"3\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":true}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":[3]}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"a\",\"since\":null}");
    /* bad_request outranks bad_name. */
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"BAD ROOM\",\"since\":-1}");
    EXPECT(BAD_REQUEST, "{\"type\":\"join\",\"room\":\"dm:b:a\",\"since\":null}");
    EXPECT(BAD_NAME, "{\"type\":\"join\",\"room\":\"BAD ROOM\",\"since\":1}");
}

/* ---- history ---- */

static void test_history(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(run("{\"type\":\"history\",\"id\":9,\"room\":\"General\"}", &req, &why),
                     PROTO_OK);
    assert_string_equal(req.room, "general");
    assert_false(req.has_before);
    assert_int_equal(req.limit, 50);
    proto_request_free(&req);

    assert_int_equal(
        run("{\"type\":\"history\",\"room\":\"dm:alice:bob\",\"before\":43,\"limit\":200}", &req,
            &why),
        PROTO_OK);
    assert_true(req.room_is_dm);
    assert_true(req.has_before);
    assert_int_equal(req.before, 43);
    assert_int_equal(req.limit, 200);
    proto_request_free(&req);

    assert_int_equal(
        run("{\"type\":\"history\",\"room\":\"a\",\"before\":1,\"limit\":1}", &req, &why),
        PROTO_OK);
    assert_int_equal(req.before, 1);
    assert_int_equal(req.limit, 1);
    proto_request_free(&req);

    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":1e2}");

    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":0}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":201}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":-1}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":1.5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":200.5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":\"50\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"limit\":4294967297}");
    EXPECT(OK, "{\"type\":\"history\",\"room\":\"a\",\"before\":0}"); /* rule 50: 0 is one */
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"before\":-5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"before\":1.5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"before\":\"43\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"before\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a\",\"before\":false}");
    EXPECT(BAD_REQUEST, "{\"type\":\"history\",\"room\":\"a b\",\"limit\":0}");
    EXPECT(BAD_NAME, "{\"type\":\"history\",\"room\":\"a b\",\"limit\":10}");
}

/* ---- who and rooms: pages (rules 84, 85) ---- */

static void test_pages(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(run("{\"type\":\"who\",\"room\":\"General\"}", &req, &why), PROTO_OK);
    assert_int_equal(req.limit, 200);
    assert_null(req.after);
    proto_request_free(&req);
    assert_int_equal(run("{\"type\":\"rooms\"}", &req, &why), PROTO_OK);
    assert_int_equal(req.limit, 200);
    proto_request_free(&req);

    assert_int_equal(
        run("{\"type\":\"who\",\"room\":\"a\",\"after\":\"Bo\\u0000b\",\"limit\":1}", &req, &why),
        PROTO_OK);
    assert_int_equal(req.limit, 1);
    assert_int_equal(req.after_len, 4);
    assert_memory_equal(req.after, "Bo\0b", 4);
    proto_request_free(&req);
    assert_int_equal(run("{\"type\":\"rooms\",\"after\":\"\",\"limit\":200}", &req, &why),
                     PROTO_OK);
    assert_int_equal(req.after_len, 0);
    assert_non_null(req.after);
    assert_int_equal(req.limit, 200);
    proto_request_free(&req);

    for (int rooms = 0; rooms < 2; rooms++) {
        const char *head = rooms ? "{\"type\":\"rooms\"," : "{\"type\":\"who\",\"room\":\"a\",";
        const char *bad[] = {"\"limit\":0}",    "\"limit\":201}",   "\"limit\":-1}",
                             "\"limit\":1.5}",  "\"limit\":\"5\"}", "\"limit\":null}",
                             "\"after\":null}", "\"after\":5}",     "\"after\":[\"a\"]}",
                             "\"after\":false}"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char json[128];
            snprintf(json, sizeof json, "%s%s", head, bad[i]);
            EXPECT(BAD_REQUEST, json);
        }
    }
    /* bad_request before bad_name */
    EXPECT(BAD_REQUEST, "{\"type\":\"who\",\"room\":\"a b\",\"limit\":0}");
    EXPECT(BAD_REQUEST, "{\"type\":\"who\",\"room\":\"a b\",\"after\":1}");
    EXPECT(BAD_NAME, "{\"type\":\"who\",\"room\":\"a b\",\"limit\":10}");
}

/* ---- send ---- */

static void test_send_room(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(
        run("{\"type\":\"send\",\"id\":7,\"room\":\"General\",\"text\":\"hello\"}", &req, &why),
        PROTO_OK);
    assert_string_equal(req.room, "general");
    assert_false(req.room_is_dm);
    assert_null(req.to);
    assert_null(req.cid);
    assert_int_equal(req.text_len, 5);
    assert_memory_equal(req.text, "hello", 5);
    proto_request_free(&req);

    assert_int_equal(run("{\"type\":\"send\",\"room\":\"dm:alice:bob\",\"text\":\"hi\","
                         "\"cid\":\"c-1\"}",
                         &req, &why),
                     PROTO_OK);
    assert_true(req.room_is_dm);
    assert_string_equal(req.room, "dm:alice:bob");
    assert_string_equal(req.cid, "c-1");
    proto_request_free(&req);

    /* The trimmed text is what is stored (rule 16). */
    assert_int_equal(run("{\"type\":\"send\",\"room\":\"a\",\"text\":\"  two\\nlines\\t \\u3000"
                         "\\u00a0\\u0085\\r\\n\"}",
                         &req, &why),
                     PROTO_OK);
    assert_int_equal(req.text_len, 11); /* the tab before the space is trailing too */
    assert_memory_equal(req.text, "  two\nlines", 11);
    proto_request_free(&req);
}

static void test_send_to(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    assert_int_equal(run("{\"type\":\"send\",\"id\":8,\"to\":\"Bob\",\"text\":\"hi\"}", &req, &why),
                     PROTO_OK);
    assert_string_equal(req.to, "Bob"); /* as sent; the caller folds it */
    assert_string_equal(req.room, "");
    assert_int_equal(req.text_len, 2);
    proto_request_free(&req);

    EXPECT(BAD_NAME, "{\"type\":\"send\",\"to\":\"bad name\",\"text\":\"hi\"}");
    EXPECT(BAD_NAME, "{\"type\":\"send\",\"to\":\"\",\"text\":\"hi\"}");
    EXPECT(BAD_NAME, "{\"type\":\"send\",\"to\":\"dm:alice:bob\",\"text\":\"hi\"}");
    EXPECT_REP(BAD_NAME, "{\"type\":\"send\",\"to\":\"%s\",\"text\":\"hi\"}", "b", 33);
    EXPECT_REP(OK, "{\"type\":\"send\",\"to\":\"%s\",\"text\":\"hi\"}", "b", 32);
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"to\":5,\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"to\":[\"bob\"],\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"to\":null,\"text\":\"hi\"}");
}

static void test_send_structure(void **state)
{
    (void)state;
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"to\":\"bob\",\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":null,\"to\":\"bob\",\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"to\":null,\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":5,\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"to\":\"bob\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":[\"hi\"]}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":{}}");
    EXPECT(BAD_NAME, "{\"type\":\"send\",\"room\":\"dm:bob:alice\",\"text\":\"hi\"}");
    EXPECT(BAD_NAME, "{\"type\":\"send\",\"room\":\"a.b\",\"text\":\"hi\"}");
}

static void test_send_text_rules(void **state)
{
    (void)state;
    const char *fmt = "{\"type\":\"send\",\"room\":\"a\",\"text\":\"%s\"}";
    EXPECT_REP(BAD_REQUEST, fmt, "", 1);
    EXPECT_REP(BAD_REQUEST, fmt, " ", 3);
    EXPECT_REP(BAD_REQUEST, fmt, "\\n\\t\\r", 2);
    EXPECT_REP(BAD_REQUEST, fmt, "\\u3000", 2);
    EXPECT_REP(BAD_REQUEST, fmt, "\\u00a0", 1);
    EXPECT_REP(BAD_REQUEST, fmt, "\\u0085", 1); /* only white space: empty */
    EXPECT_REP(BAD_REQUEST, fmt, "\\u0000", 1); /* NUL */
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u0000b", 1);
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u001b[31mb", 1); /* ESC */
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u007f", 1);      /* DEL */
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u0085b", 1);     /* NEL inside: C1, refused */
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u0080", 1);
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u009f", 1);
    EXPECT_REP(BAD_REQUEST, fmt, "a\\rb", 1);
    EXPECT_REP(BAD_REQUEST, fmt, "a\\bb", 1);
    EXPECT_REP(BAD_REQUEST, fmt, "a\\fb", 1);
    EXPECT_REP(OK, fmt, "a\\u0085", 1); /* NEL trailing: trimmed */
    EXPECT_REP(OK, fmt, "a\\nb\\tc", 1);
    EXPECT_REP(OK, fmt, "\\u00a0a", 1);
    EXPECT_REP(OK, fmt, "\\ud83d\\ude00", 1);
    EXPECT_REP(OK, fmt, "\xf0\x9f\x98\x80", 1);
}

static void test_send_text_length(void **state)
{
    (void)state;
    const char *fmt = "{\"type\":\"send\",\"room\":\"a\",\"text\":\"%s\"}";
    EXPECT_REP(OK, fmt, "a", 4000);
    EXPECT_REP(TOO_LONG, fmt, "a", 4001);
    EXPECT_REP(OK, fmt, "\\u00e9", 4000);
    EXPECT_REP(TOO_LONG, fmt, "\\u00e9", 4001);
    EXPECT_REP(OK, fmt, "\xe2\x82\xac", 4000);
    EXPECT_REP(TOO_LONG, fmt, "\xe2\x82\xac", 4001);
    EXPECT_REP(OK, fmt, "\\ud83d\\ude00", 4000); /* astral: one code point, two UTF-16 units */
    EXPECT_REP(TOO_LONG, fmt, "\\ud83d\\ude00", 4001);

    /* 4000 code points followed by trailing white space is within the limit. */
    char *json =
        build("{\"type\":\"send\",\"room\":\"a\",\"text\":\"%s   \\u3000\\n\"}", "x", 4000);
    struct proto_request req;
    const char *why;
    assert_int_equal(run(json, &req, &why), PROTO_OK);
    assert_int_equal(req.text_len, 4000);
    proto_request_free(&req);
    free(json);

    json = build("{\"type\":\"send\",\"room\":\"a\",\"text\":\"%s\"}", "y", 4001);
    assert_int_equal(run(json, &req, &why), PROTO_TOO_LONG);
    assert_non_null(strstr(why, "4000"));
    proto_request_free(&req);

    /* The configured limit applies; NULL limits mean the default. */
    const struct proto_limits small = {.max_text_points = 10};
    assert_int_equal(proto_parse_envelope(json, strlen(json), &req), PROTO_OK);
    assert_int_equal(proto_validate(&req, NULL, &why), PROTO_TOO_LONG);
    proto_request_free(&req);
    free(json);
    json = build("{\"type\":\"send\",\"room\":\"a\",\"text\":\"%s\"}", "z", 11);
    assert_int_equal(proto_parse_envelope(json, strlen(json), &req), PROTO_OK);
    assert_int_equal(proto_validate(&req, &small, &why), PROTO_TOO_LONG);
    assert_int_equal(proto_validate(&req, &limits, &why), PROTO_OK);
    proto_request_free(&req);
    free(json);
}

static void test_send_cid(void **state)
{
    (void)state;
    const char *fmt = "{\"type\":\"send\",\"room\":\"a\",\"text\":\"hi\",\"cid\":\"%s\"}";
    EXPECT_REP(BAD_REQUEST, fmt, "c", 0);
    EXPECT_REP(OK, fmt, "c", 1);
    EXPECT_REP(OK, fmt, "c", 64);
    EXPECT_REP(BAD_REQUEST, fmt, "c", 65);
    EXPECT_REP(OK, fmt, "\\u00e9", 32);          /* 64 bytes */
    EXPECT_REP(BAD_REQUEST, fmt, "\\u00e9", 33); /* 33 characters but 66 bytes */
    EXPECT_REP(BAD_REQUEST, fmt, "a\\u0000b", 1);
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":\"hi\",\"cid\":5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":\"hi\",\"cid\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":\"hi\",\"cid\":[\"x\"]}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":\"hi\",\"cid\":true}");
}

/* Rule 5 inside field validation: bad_request, then bad_name, then too_long. */
static void test_send_order(void **state)
{
    (void)state;
    EXPECT_REP(BAD_NAME, "{\"type\":\"send\",\"room\":\"b a d\",\"text\":\"%s\"}", "a", 4001);
    EXPECT_REP(BAD_NAME, "{\"type\":\"send\",\"to\":\"b a d\",\"text\":\"%s\"}", "a", 4001);
    EXPECT_REP(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"cid\":\"\",\"text\":\"%s\"}", "a",
               4001);
    EXPECT_REP(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a b\",\"text\":\"%s\"}", " ", 3);
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a b\",\"text\":\"hi\",\"cid\":5}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a b\",\"to\":\"b o b\",\"text\":\"hi\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a b\",\"text\":\"a\\u001b\"}");
    EXPECT_REP(BAD_REQUEST, "{\"type\":\"send\",\"room\":\"a\",\"text\":\"\\u0007%s\"}", "a", 4001);
}

static void test_no_field_types(void **state)
{
    (void)state;
    EXPECT(OK, "{\"type\":\"rooms\",\"id\":5}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":10}");
    EXPECT(OK, "{\"type\":\"typing\",\"room\":\"general\"}");
    EXPECT(OK, "{\"type\":\"leave\",\"id\":4,\"room\":\"general\"}");
    EXPECT(OK, "{\"type\":\"who\",\"id\":6,\"room\":\"general\"}");
}

/* read (protocol 1.1 rule 66): room and an integer seq; the room is checked for presence first,
 * its name after seq, as for edit. */
static void test_read(void **state)
{
    (void)state;
    EXPECT(OK, "{\"type\":\"read\",\"id\":22,\"room\":\"dev\",\"seq\":68}");
    EXPECT(OK, "{\"type\":\"read\",\"room\":\"dm:alice:bob\",\"seq\":0}");
    EXPECT(OK, "{\"type\":\"read\",\"room\":\"dev\",\"seq\":9007199254740991}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"dev\",\"seq\":9007199254740992}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"dev\",\"seq\":1.0}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"dev\",\"seq\":-1}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"dev\",\"seq\":\"1\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"dev\",\"seq\":null}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"dev\"}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"seq\":1}");
    EXPECT(BAD_REQUEST, "{\"type\":\"read\",\"room\":\"b a d\"}");
    EXPECT(BAD_NAME, "{\"type\":\"read\",\"room\":\"b a d\",\"seq\":1}");
    EXPECT(BAD_NAME, "{\"type\":\"read\",\"room\":\"dm:bob:alice\",\"seq\":1}");
}

/* The examples of PROTOCOL.md itself all validate. */
static void test_protocol_examples(void **state)
{
    (void)state;
    EXPECT(OK, "{\"type\":\"register\",\"id\":1,\"name\":\"alice\",\"password\":\"s3cret-pass\"}");
    EXPECT(OK, "{\"type\":\"login\",\"id\":2,\"name\":\"alice\",\"password\":\"s3cret-pass\"}");
    EXPECT(OK, "{\"type\":\"login\",\"name\":\"carol\"}");
    EXPECT(OK, "{\"type\":\"login\",\"token\":\"<opaque>\"}");
    EXPECT(OK, "{\"type\":\"join\",\"id\":3,\"room\":\"general\",\"since\":40}");
    EXPECT(OK, "{\"type\":\"leave\",\"id\":4,\"room\":\"general\"}");
    EXPECT(OK, "{\"type\":\"rooms\",\"id\":5}");
    EXPECT(OK, "{\"type\":\"who\",\"id\":6,\"room\":\"general\"}");
    EXPECT(OK, "{\"type\":\"send\",\"id\":7,\"room\":\"general\",\"text\":\"hello\"}");
    EXPECT(OK, "{\"type\":\"send\",\"id\":8,\"to\":\"bob\",\"text\":\"hi\"}");
    EXPECT(OK, "{\"type\":\"history\",\"id\":9,\"room\":\"general\",\"before\":43,\"limit\":50}");
    EXPECT(OK, "{\"type\":\"typing\",\"room\":\"general\"}");
    EXPECT(OK, "{\"type\":\"ping\",\"id\":10}");
}

/* Validating again gives the same answer (a caller may re-run it with other limits). */
static void test_validate_twice(void **state)
{
    (void)state;
    struct proto_request req;
    const char *why;
    const char *json = "{\"type\":\"join\",\"room\":\"Lobby\",\"since\":3}";
    assert_int_equal(run(json, &req, &why), PROTO_OK);
    assert_int_equal(proto_validate(&req, &limits, &why), PROTO_OK);
    assert_string_equal(req.room, "lobby");
    assert_int_equal(proto_validate(&req, &limits, NULL), PROTO_OK);
    proto_request_free(&req);
    proto_request_free(&req); /* idempotent */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_not_json_bytes),
        cmocka_unit_test(test_id_kinds),
        cmocka_unit_test(test_id_before_type),
        cmocka_unit_test(test_type_errors_keep_id),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_id_echo),
        cmocka_unit_test(test_huge_integers),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_register_password_length),
        cmocka_unit_test(test_register_order),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_errors),
        cmocka_unit_test(test_room_names),
        cmocka_unit_test(test_join_since),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_send_room),
        cmocka_unit_test(test_send_to),
        cmocka_unit_test(test_send_structure),
        cmocka_unit_test(test_send_text_rules),
        cmocka_unit_test(test_send_text_length),
        cmocka_unit_test(test_send_cid),
        cmocka_unit_test(test_send_order),
        cmocka_unit_test(test_no_field_types),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_protocol_examples),
        cmocka_unit_test(test_validate_twice),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
