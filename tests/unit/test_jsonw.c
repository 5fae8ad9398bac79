/* test_jsonw: unit tests of the JSON writer: exact output, commas, escaping, growth, headroom. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonw.h"

/* Finishes w and checks that the document after the headroom is exactly `want`. */
static void expect_doc(struct jsonw *w, const char *want)
{
    size_t headroom = w->headroom;
    struct chunk *c = jsonw_finish(w);
    assert_non_null(c);
    assert_true(c->len >= headroom);
    assert_true(c->len <= c->cap);
    size_t n = c->len - headroom;
    if (n != strlen(want) || memcmp(c->data + headroom, want, n) != 0)
        fail_msg("got %.*s\nwant %s", (int)n, (const char *)c->data + headroom, want);
    chunk_unref(c);
}

/* Finishes w and parses the document back with jansson (NUL allowed in strings). */
static json_t *finish_parse(struct jsonw *w)
{
    size_t headroom = w->headroom;
    struct chunk *c = jsonw_finish(w);
    json_error_t err;
    json_t *v = json_loadb((const char *)c->data + headroom, c->len - headroom,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!v)
        fail_msg("jansson: %s", err.text);
    chunk_unref(c);
    return v;
}

static void test_empty_object(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    expect_doc(&w, "{}");
    jsonw_init(&w, 0);
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    expect_doc(&w, "[]");
}

static void test_headroom(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 14);
    assert_int_equal(w.c->len, 14);
    assert_true(w.c->cap >= 14);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "pong");
    jsonw_object_end(&w);
    struct chunk *c = jsonw_finish(&w);
    assert_int_equal(c->len, 14 + strlen("{\"type\":\"pong\"}"));
    assert_memory_equal(c->data + 14, "{\"type\":\"pong\"}", c->len - 14);
    chunk_unref(c);
}

/* The headroom is left alone while the chunk grows (and moves). */
static void test_growth_keeps_headroom(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 10);
    memcpy(w.c->data, "HEADROOM!!", 10);
    size_t n = 300000;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n / 2] = '\n'; /* one escape in the middle */
    jsonw_array_begin(&w);
    for (int k = 0; k < 3; k++)
        jsonw_string(&w, big, n);
    jsonw_array_end(&w);
    struct chunk *c = jsonw_finish(&w);
    assert_memory_equal(c->data, "HEADROOM!!", 10);
    assert_int_equal(c->len, 10 + 2 + 3 * (n + 3) + 2); /* brackets, strings, commas */
    assert_true(c->cap >= c->len);
    json_error_t err;
    json_t *v = json_loadb((const char *)c->data + 10, c->len - 10, 0, &err);
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 3);
    for (size_t k = 0; k < 3; k++) {
        json_t *s = json_array_get(v, k);
        assert_int_equal(json_string_length(s), n);
        assert_memory_equal(json_string_value(s), big, n);
    }
    json_decref(v);
    chunk_unref(c);
    free(big);
}

/* Many small writes: the chunk grows geometrically, not by each write. */
static void test_many_small_values(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 4);
    jsonw_array_begin(&w);
    uint32_t grows = 0, cap = w.c->cap;
    for (uint64_t i = 0; i < 100000; i++) {
        jsonw_u64(&w, i);
        if (w.c->cap != cap) {
            grows++;
            assert_true(w.c->cap >= 2 * cap);
            cap = w.c->cap;
        }
    }
    jsonw_array_end(&w);
    assert_true(grows < 20);
    json_t *v = finish_parse(&w);
    assert_int_equal(json_array_size(v), 100000);
    for (size_t i = 0; i < 100000; i += 997)
        assert_int_equal(json_integer_value(json_array_get(v, i)), i);
    json_decref(v);
}

static void test_event_shapes(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "message");
    jsonw_kv_str(&w, "room", "general");
    jsonw_kv_u64(&w, "seq", 43);
    jsonw_kv_i64(&w, "ts", 1732300000000);
    jsonw_kv_str(&w, "from", "alice");
    jsonw_kv_strn(&w, "text", "hello there", 5);
    jsonw_object_end(&w);
    expect_doc(&w, "{\"type\":\"message\",\"room\":\"general\",\"seq\":43,\"ts\":1732300000000,"
                   "\"from\":\"alice\",\"text\":\"hello\"}");

    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "joined");
    jsonw_key(&w, "members");
    jsonw_array_begin(&w);
    jsonw_cstring(&w, "alice");
    jsonw_cstring(&w, "bob");
    jsonw_array_end(&w);
    jsonw_kv_bool(&w, "truncated", false);
    jsonw_kv_bool(&w, "guest", true);
    jsonw_object_end(&w);
    expect_doc(
        &w,
        "{\"type\":\"joined\",\"members\":[\"alice\",\"bob\"],\"truncated\":false,\"guest\":true}");
}

static void test_nesting_commas(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a");
    jsonw_array_begin(&w);
    jsonw_u64(&w, 1);
    jsonw_u64(&w, 2);
    jsonw_object_begin(&w);
    jsonw_key(&w, "b");
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    jsonw_array_end(&w);
    jsonw_key(&w, "c");
    jsonw_object_begin(&w);
    jsonw_kv_bool(&w, "d", true);
    jsonw_kv_bool(&w, "e", false);
    jsonw_key(&w, "f");
    jsonw_null(&w);
    jsonw_object_end(&w);
    jsonw_key(&w, "g");
    jsonw_array_begin(&w);
    jsonw_array_begin(&w);
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    jsonw_array_end(&w);
    jsonw_array_begin(&w);
    jsonw_null(&w);
    jsonw_array_end(&w);
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    expect_doc(&w, "{\"a\":[1,2,{\"b\":[]},[],{}],\"c\":{\"d\":true,\"e\":false,\"f\":null},"
                   "\"g\":[[[]],[null]]}");
}

static void test_array_of_objects(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "type", "rooms");
    jsonw_key(&w, "rooms");
    jsonw_array_begin(&w);
    for (int i = 0; i < 3; i++) {
        jsonw_object_begin(&w);
        jsonw_kv_str(&w, "name", i == 0 ? "general" : i == 1 ? "a" : "b");
        jsonw_kv_u64(&w, "members", (uint64_t)i);
        jsonw_kv_u64(&w, "seq", (uint64_t)i * 10);
        jsonw_object_end(&w);
    }
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    expect_doc(&w, "{\"type\":\"rooms\",\"rooms\":[{\"name\":\"general\",\"members\":0,\"seq\":0},"
                   "{\"name\":\"a\",\"members\":1,\"seq\":10},{\"name\":\"b\",\"members\":2,"
                   "\"seq\":20}]}");
}

/* The deepest nesting the writer supports. */
static void test_max_depth(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    for (int i = 0; i < JSONW_MAX_DEPTH - 1; i++)
        jsonw_array_begin(&w);
    jsonw_u64(&w, 7);
    jsonw_u64(&w, 8);
    for (int i = 0; i < JSONW_MAX_DEPTH - 1; i++)
        jsonw_array_end(&w);
    json_t *v = finish_parse(&w);
    const json_t *p = v;
    for (int i = 0; i < JSONW_MAX_DEPTH - 2; i++) {
        assert_int_equal(json_array_size(p), 1);
        p = json_array_get(p, 0);
    }
    assert_int_equal(json_array_size(p), 2);
    assert_int_equal(json_integer_value(json_array_get(p, 1)), 8);
    json_decref(v);
}

static void test_numbers(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_array_begin(&w);
    jsonw_u64(&w, 0);
    jsonw_u64(&w, 9);
    jsonw_u64(&w, 10);
    jsonw_u64(&w, UINT64_MAX);
    jsonw_i64(&w, 0);
    jsonw_i64(&w, -1);
    jsonw_i64(&w, -10);
    jsonw_i64(&w, INT64_MAX);
    jsonw_i64(&w, INT64_MIN);
    jsonw_array_end(&w);
    expect_doc(&w, "[0,9,10,18446744073709551615,0,-1,-10,9223372036854775807,"
                   "-9223372036854775808]");
}

static void test_escape_exact(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_string(&w, "\"\\/\b\f\n\r\t\x01\x1f\x7f", 11);
    expect_doc(&w, "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"");

    jsonw_init(&w, 0);
    jsonw_string(&w, "a\0b", 3);
    expect_doc(&w, "\"a\\u0000b\"");

    jsonw_init(&w, 0);
    jsonw_string(&w, "", 0);
    expect_doc(&w, "\"\"");

    /* UTF-8 (and U+2028/2029, which JSON allows raw) passes through unchanged. */
    jsonw_init(&w, 0);
    jsonw_cstring(&w, "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80");
    expect_doc(&w, "\"caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80\"");
}

static void test_escape_every_control(void **state)
{
    (void)state;
    static const char *const want[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",     "\\u000e", "\\u000f",
        "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    };
    for (int b = 0; b < 32; b++) {
        char s = (char)b;
        char expect[16] = "\"";
        size_t n = strlen(want[b]);
        memcpy(expect + 1, want[b], n);
        expect[n + 1] = '"';
        expect[n + 2] = '\0';
        struct jsonw w;
        jsonw_init(&w, 0);
        jsonw_string(&w, &s, 1);
        expect_doc(&w, expect);
    }
}

/* Every ASCII byte plus multi-byte UTF-8 reads back as the same bytes. */
static void test_escape_round_trip(void **state)
{
    (void)state;
    char s[128 + 32];
    size_t n = 0;
    for (int b = 0; b < 128; b++)
        s[n++] = (char)b;
    const char *tail = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc2\x85\xef\xbf\xbf";
    memcpy(s + n, tail, strlen(tail));
    n += strlen(tail);

    struct jsonw w;
    jsonw_init(&w, 2);
    jsonw_object_begin(&w);
    jsonw_kv_strn(&w, "k", s, n);
    jsonw_key(&w, "we\"ird\\key\n");
    jsonw_string(&w, s + 1, n - 1);
    jsonw_object_end(&w);
    json_t *v = finish_parse(&w);
    json_t *k = json_object_get(v, "k");
    assert_int_equal(json_string_length(k), n);
    assert_memory_equal(json_string_value(k), s, n);
    json_t *weird = json_object_get(v, "we\"ird\\key\n");
    assert_non_null(weird);
    assert_int_equal(json_string_length(weird), n - 1);
    assert_memory_equal(json_string_value(weird), s + 1, n - 1);
    json_decref(v);
}

static void test_json_values(void **state)
{
    (void)state;
    struct jsonw w;
    json_t *i = json_integer(1), *str = json_string("x"), *r = json_real(1.5);
    json_t *big = json_integer(-9007199254740993LL);
    json_t *nul = json_stringn("a\0b", 3);
    json_t *obj = json_pack("{s:[i,s,b,n]}", "k", 2, "y", 1);
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_key(&w, "id");
    jsonw_json(&w, i);
    jsonw_key(&w, "s");
    jsonw_json(&w, str);
    jsonw_key(&w, "r");
    jsonw_json(&w, r);
    jsonw_key(&w, "big");
    jsonw_json(&w, big);
    jsonw_key(&w, "nul");
    jsonw_json(&w, nul);
    jsonw_key(&w, "obj");
    jsonw_json(&w, obj);
    jsonw_key(&w, "none");
    jsonw_json(&w, NULL);
    jsonw_kv_u64(&w, "after", 3);
    jsonw_object_end(&w);
    expect_doc(&w, "{\"id\":1,\"s\":\"x\",\"r\":1.5,\"big\":-9007199254740993,"
                   "\"nul\":\"a\\u0000b\",\"obj\":{\"k\":[2,\"y\",true,null]},\"none\":null,"
                   "\"after\":3}");
    json_decref(i);
    json_decref(str);
    json_decref(r);
    json_decref(big);
    json_decref(nul);
    json_decref(obj);
}

/* Echoing an id: whatever JSON number or string came in reads back as an equal value. */
static void test_json_id_round_trip(void **state)
{
    (void)state;
    static const char *ids[] = {
        "1",
        "0",
        "-1",
        "1.5",
        "-0.25",
        "1e300",
        "2.5e-300",
        "9223372036854775807",
        "-9223372036854775808",
        "0.1",
        "\"x\"",
        "\"\"",
        "\"\\u0000\\n\\\"\\u00e9\\ud83d\\ude00\"",
        "123456.789",
    };
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        json_error_t err;
        json_t *in = json_loads(ids[k], JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        assert_non_null(in);
        struct jsonw w;
        jsonw_init(&w, 0);
        jsonw_array_begin(&w);
        jsonw_json(&w, in);
        jsonw_json(&w, in);
        jsonw_array_end(&w);
        json_t *out = finish_parse(&w);
        assert_true(json_equal(json_array_get(out, 0), in));
        assert_true(json_equal(json_array_get(out, 1), in));
        json_decref(out);
        json_decref(in);
    }
}

static void test_kv_helpers(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_kv_str(&w, "cid", NULL);
    jsonw_kv_strn(&w, "t", "x\0y", 3);
    jsonw_kv_i64(&w, "n", -5);
    jsonw_kv_u64(&w, "u", 5);
    jsonw_kv_bool(&w, "b", true);
    jsonw_object_end(&w);
    expect_doc(&w, "{\"cid\":null,\"t\":\"x\\u0000y\",\"n\":-5,\"u\":5,\"b\":true}");
}

/* Top-level scalars are documents too. */
static void test_top_level_scalars(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_u64(&w, 42);
    expect_doc(&w, "42");
    jsonw_init(&w, 0);
    jsonw_null(&w);
    expect_doc(&w, "null");
    jsonw_init(&w, 0);
    jsonw_bool(&w, false);
    expect_doc(&w, "false");
}

/* An abandoned document frees its chunk (ASan reports a leak otherwise). */
static void test_discard(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 8);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_array_begin(&w);
    for (int i = 0; i < 1000; i++)
        jsonw_cstring(&w, "grow the chunk a little");
    jsonw_discard(&w);
    assert_null(w.c);
}

/* A finished chunk is an ordinary chunk: extra references keep it alive. */
static void test_finish_refcount(void **state)
{
    (void)state;
    struct jsonw w;
    jsonw_init(&w, 0);
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    struct chunk *c = jsonw_finish(&w);
    assert_null(w.c);
    chunk_ref(c);
    chunk_unref(c);
    assert_memory_equal(c->data, "{}", 2);
    chunk_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_object),
        cmocka_unit_test(test_headroom),
        cmocka_unit_test(test_growth_keeps_headroom),
        cmocka_unit_test(test_many_small_values),
        cmocka_unit_test(test_event_shapes),
        cmocka_unit_test(test_nesting_commas),
        cmocka_unit_test(test_array_of_objects),
        cmocka_unit_test(test_max_depth),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_escape_exact),
        cmocka_unit_test(test_escape_every_control),
        cmocka_unit_test(test_escape_round_trip),
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_json_id_round_trip),
        cmocka_unit_test(test_kv_helpers),
        cmocka_unit_test(test_top_level_scalars),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_finish_refcount),
    };
    return cmocka_run_group_tests_name("jsonw", tests, NULL, NULL);
}
