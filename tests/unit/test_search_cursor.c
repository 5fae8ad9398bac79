/* test_search_cursor: a cursor reads back as written only for the same q and room,
 * and anything altered, cut or made up is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "search_cursor.h"

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    search_cursor_init();
    return 0;
}

static void round_trip(void **state)
{
    (void)state;
    struct search_cursor c = {
        .bound = 0x123456789ull, .skip = true, .skip_ts = 1732300200000, .skip_seq = 58};
    snprintf(c.skip_room, sizeof c.skip_room, "dm:alice:bob");
    char s[SEARCH_CURSOR_MAX];
    search_cursor_encode(&c, "deploy rel*", 11, "dev", s);
    struct search_cursor out;
    assert_true(search_cursor_decode(s, strlen(s), "deploy rel*", 11, "dev", &out));
    assert_int_equal(out.bound, c.bound);
    assert_true(out.skip);
    assert_int_equal(out.skip_ts, c.skip_ts);
    assert_int_equal(out.skip_seq, 58);
    assert_string_equal(out.skip_room, "dm:alice:bob");
    /* Without a skip, and without a room. */
    struct search_cursor plain = {.bound = 7};
    search_cursor_encode(&plain, "x", 1, "", s);
    assert_true(search_cursor_decode(s, strlen(s), "x", 1, "", &out));
    assert_int_equal(out.bound, 7);
    assert_false(out.skip);
    assert_string_equal(out.skip_room, "");
}

static void refused(void **state)
{
    (void)state;
    struct search_cursor c = {.bound = 99, .skip = true, .skip_ts = 5, .skip_seq = 3};
    snprintf(c.skip_room, sizeof c.skip_room, "general");
    char s[SEARCH_CURSOR_MAX];
    search_cursor_encode(&c, "abc", 3, "", s);
    struct search_cursor out;
    size_t n = strlen(s);
    assert_false(search_cursor_decode(s, n, "abd", 3, "", &out));     /* another q */
    assert_false(search_cursor_decode(s, n, "abc", 2, "", &out));     /* a prefix of it */
    assert_false(search_cursor_decode(s, n, "abc", 3, "dev", &out));  /* another room */
    assert_false(search_cursor_decode(s, n - 1, "abc", 3, "", &out)); /* cut */
    assert_false(search_cursor_decode("", 0, "abc", 3, "", &out));
    assert_false(search_cursor_decode("not base64!", 11, "abc", 3, "", &out));
    for (size_t i = 0; i < n; i++) { /* any one character changed */
        char t[SEARCH_CURSOR_MAX];
        memcpy(t, s, n + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_false(search_cursor_decode(t, n, "abc", 3, "", &out));
    }
    /* Another process's key: refused. */
    search_cursor_init();
    assert_false(search_cursor_decode(s, n, "abc", 3, "", &out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
