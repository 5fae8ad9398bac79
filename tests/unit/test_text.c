/* test_text: unit tests of the name, room, dm room and message-text rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"

/* Encodes cp as UTF-8 into out; returns the byte count. */
static size_t put_cp(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Repeats cp `count` times into a fresh buffer; *len gets the byte count. */
static char *repeat_cp(uint32_t cp, size_t count, size_t *len)
{
    char *buf = malloc(count * 4 + 1);
    assert_non_null(buf);
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += put_cp(cp, buf + n);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The White_Space list of PropList.txt, written out independently of text.c. */
static const uint32_t white_space[] = {
    0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,   0x1680,
    0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
    0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
};

static bool ref_white(uint32_t cp)
{
    for (size_t i = 0; i < sizeof white_space / sizeof white_space[0]; i++)
        if (white_space[i] == cp)
            return true;
    return false;
}

static bool ref_control(uint32_t cp)
{
    return (cp <= 0x1F && cp != '\n' && cp != '\t') || (cp >= 0x7F && cp <= 0x9F);
}

static enum text_verdict check(const char *s, size_t n, size_t *trimmed)
{
    *trimmed = (size_t)-1;
    return text_check_message(s, n, 4000, trimmed);
}

#define CHECK_OK(lit, want_len)                                                                    \
    do {                                                                                           \
        size_t t_;                                                                                 \
        assert_int_equal(check(lit, sizeof(lit) - 1, &t_), TEXT_OK);                               \
        assert_int_equal(t_, (want_len));                                                          \
    } while (0)

#define CHECK_IS(lit, verdict)                                                                     \
    do {                                                                                           \
        size_t t_;                                                                                 \
        assert_int_equal(check(lit, sizeof(lit) - 1, &t_), (verdict));                             \
    } while (0)

/* ---- user names ---- */

static void test_user_valid(void **state)
{
    (void)state;
    assert_true(text_valid_user("a", 1));
    assert_true(text_valid_user("alice", 5));
    assert_true(text_valid_user("Alice.B-c_9", 11));
    assert_true(text_valid_user("...", 3));
    assert_true(text_valid_user("-", 1));
    assert_true(text_valid_user("_", 1));
    assert_true(text_valid_user("0123456789", 10));
    assert_true(text_valid_user("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", 32));
}

static void test_user_length(void **state)
{
    (void)state;
    char buf[40];
    memset(buf, 'x', sizeof buf);
    assert_false(text_valid_user(buf, 0));
    assert_false(text_valid_user("", 0));
    assert_true(text_valid_user(buf, 31));
    assert_true(text_valid_user(buf, 32));
    assert_false(text_valid_user(buf, 33));
    assert_false(text_valid_user(buf, 40));
}

static void test_user_bad_chars(void **state)
{
    (void)state;
    assert_false(text_valid_user("al ice", 6));
    assert_false(text_valid_user("alice:", 6));
    assert_false(text_valid_user("a@b", 3));
    assert_false(text_valid_user("a/b", 3));
    assert_false(text_valid_user("caf\xc3\xa9", 5));
    assert_false(text_valid_user("ab\0c", 4)); /* NUL inside: the length decides, not strlen */
    assert_false(text_valid_user("alice\n", 6));
    assert_false(text_valid_user("#x", 2));
}

static void test_user_every_byte(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        bool want = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
                    b == '_' || b == '-' || b == '.';
        assert_int_equal(text_valid_user(&c, 1), want);
        char s[3] = {'a', c, 'b'};
        assert_int_equal(text_valid_user(s, 3), want);
    }
}

static void test_lower(void **state)
{
    (void)state;
    char out[64];
    text_lower("AbC.z-_09XYZ", 12, out);
    assert_string_equal(out, "abc.z-_09xyz");
    text_lower("", 0, out);
    assert_string_equal(out, "");
    text_lower("\xc3\x89T\xc3\xa9", 5, out); /* non-ASCII bytes pass unchanged */
    assert_memory_equal(out, "\xc3\x89t\xc3\xa9", 6);
    text_lower("ABCDEFGHIJKLMNOPQRSTUVWXYZ@[`{", 30, out);
    assert_string_equal(out, "abcdefghijklmnopqrstuvwxyz@[`{");
}

/* A name's capitals and its lower-case form give the name back, up to 32 characters. */
static void test_name_caps(void **state)
{
    (void)state;
    const char *names[] = {"Alice",
                           "bob",
                           "X",
                           "a.B-c_9Z",
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
                           "abcdefghijklmnopqrstuvwxyz01234Z"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        char lc[64], back[64];
        text_lower(names[i], n, lc);
        text_name_raise(lc, n, text_name_caps(names[i]), back);
        assert_string_equal(back, names[i]);
    }
    assert_int_equal(text_name_caps("bob"), 0);
    assert_int_equal(text_name_caps("aB"), 2);
    assert_int_equal(text_name_caps("abcdefghijklmnopqrstuvwxyz01234Z"), 1u << 31);
}

/* ---- public rooms ---- */

static void test_room_fold(void **state)
{
    (void)state;
    char out[TEXT_NAME_MAX + 1];
    assert_true(text_fold_room("general", 7, out));
    assert_string_equal(out, "general");
    assert_true(text_fold_room("General", 7, out));
    assert_string_equal(out, "general");
    assert_true(text_fold_room("A-B_C-9", 7, out));
    assert_string_equal(out, "a-b_c-9");
    assert_true(text_fold_room("x", 1, out));
    assert_string_equal(out, "x");
    assert_true(text_fold_room("-", 1, out));
    assert_true(text_fold_room("_", 1, out));
}

static void test_room_length(void **state)
{
    (void)state;
    char out[TEXT_NAME_MAX + 1];
    char buf[40];
    memset(buf, 'R', sizeof buf);
    assert_false(text_fold_room(buf, 0, out));
    assert_true(text_fold_room(buf, 32, out));
    assert_int_equal(strlen(out), 32);
    assert_int_equal(out[31], 'r');
    assert_false(text_fold_room(buf, 33, out));
    assert_string_equal(out, ""); /* nothing half-written is left behind */
}

static void test_room_bad_chars(void **state)
{
    (void)state;
    char out[TEXT_NAME_MAX + 1];
    assert_false(text_fold_room("a.b", 3, out)); /* user names may hold '.', rooms not */
    assert_false(text_fold_room("dm:alice:bob", 12, out));
    assert_false(text_fold_room("DM:alice:bob", 12, out));
    assert_false(text_fold_room("a b", 3, out));
    assert_false(text_fold_room("#general", 8, out));
    assert_false(text_fold_room("gen\0", 4, out));
    assert_false(text_fold_room("caf\xc3\xa9", 5, out));
    assert_false(text_fold_room("\xc3\x89", 2, out));
}

static void test_room_every_byte(void **state)
{
    (void)state;
    char out[TEXT_NAME_MAX + 1];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        bool want = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
                    b == '_' || b == '-';
        assert_int_equal(text_fold_room(&c, 1, out), want);
        if (want) {
            char lc = (b >= 'A' && b <= 'Z') ? (char)(b + 32) : c;
            assert_int_equal(out[0], lc);
            assert_int_equal(out[1], '\0');
        }
    }
}

/* ---- dm rooms ---- */

static bool parse_dm(const char *s, char *a, char *b)
{
    return text_parse_dm_room(s, strlen(s), a, b);
}

static void test_dm_parse_canonical(void **state)
{
    (void)state;
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    assert_true(parse_dm("dm:alice:bob", a, b));
    assert_string_equal(a, "alice");
    assert_string_equal(b, "bob");
    assert_true(parse_dm("dm:a:b", a, b));
    assert_true(parse_dm("dm:1:a", a, b));    /* digits sort before letters */
    assert_true(parse_dm("dm:al:al.", a, b)); /* a proper prefix sorts first */
    assert_string_equal(a, "al");
    assert_string_equal(b, "al.");
    assert_true(parse_dm("dm:a-b:a_b", a, b)); /* '-' (0x2d) < '_' (0x5f) */
    assert_true(parse_dm("dm:a.b:ab", a, b));  /* '.' (0x2e) < 'b' */
    assert_true(parse_dm("dm:-:.", a, b));
}

static void test_dm_parse_refused(void **state)
{
    (void)state;
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    static const char *bad[] = {
        "dm:bob:alice",   /* not sorted */
        "dm:alice:alice", /* not distinct */
        "DM:alice:bob",
        "Dm:alice:bob",
        "dm:Alice:bob",
        "dm:alice:Bob", /* not lower case */
        "dm:al.:al",
        "dm:a_b:a-b",
        "dm:a:b:c",
        "dm::bob",
        "dm:alice:",
        "dm::",
        "dm:",
        "dm",
        "d",
        "",
        "dm:alice",
        "dm:alice bob",
        "dm:al ice:bob",
        "dm:alice:b@b",
        "xm:alice:bob",
        "dm;alice:bob",
        "dm:alice;bob",
        " dm:alice:bob",
        "dm:alice:bob ",
        "general",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(parse_dm(bad[i], a, b));
        assert_string_equal(a, "");
        assert_string_equal(b, "");
    }
    assert_false(text_parse_dm_room("dm:a\0:b", 7, a, b));
    assert_false(text_parse_dm_room("dm:a:b\0", 7, a, b));
}

static void test_dm_parse_lengths(void **state)
{
    (void)state;
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    char s[3 + 33 + 1 + 33 + 1];
    /* Two 32-character names: the longest dm room, TEXT_DM_ROOM_MAX bytes. */
    memcpy(s, "dm:", 3);
    memset(s + 3, 'a', 32);
    s[35] = ':';
    memset(s + 36, 'b', 32);
    assert_true(text_parse_dm_room(s, 68, a, b));
    assert_int_equal(68, TEXT_DM_ROOM_MAX);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strlen(b), 32);
    /* 33 characters on either side is too many. */
    memset(s + 3, 'a', 33);
    s[36] = ':';
    memset(s + 37, 'b', 32);
    assert_false(text_parse_dm_room(s, 69, a, b));
    memset(s + 3, 'a', 32);
    s[35] = ':';
    memset(s + 36, 'b', 33);
    assert_false(text_parse_dm_room(s, 69, a, b));
}

static void test_dm_room_build(void **state)
{
    (void)state;
    char out[TEXT_DM_ROOM_MAX + 1];
    text_dm_room("Bob", "alice", out);
    assert_string_equal(out, "dm:alice:bob");
    text_dm_room("alice", "BOB", out);
    assert_string_equal(out, "dm:alice:bob");
    text_dm_room("AL.", "al", out);
    assert_string_equal(out, "dm:al:al.");
    text_dm_room("a_b", "A-B", out);
    assert_string_equal(out, "dm:a-b:a_b");

    char x[33], y[33];
    memset(x, 'Z', 32);
    x[32] = '\0';
    memset(y, 'y', 32);
    y[32] = '\0';
    text_dm_room(x, y, out);
    assert_int_equal(strlen(out), TEXT_DM_ROOM_MAX);
    assert_memory_equal(out, "dm:yyyy", 7);
    assert_int_equal(out[35], ':');
    assert_int_equal(out[36], 'z');
}

/* Whatever two distinct names, text_dm_room's output is exactly what text_parse_dm_room accepts. */
static void test_dm_room_round_trip(void **state)
{
    (void)state;
    static const char *names[] = {"alice", "Alice2", "bob", "BOB.", "a", "A-", "a_",  "z",
                                  "0",     "9z",     ".",   "-",    "_", "ab", "aB.c"};
    size_t count = sizeof names / sizeof names[0];
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < count; j++) {
            char li[TEXT_NAME_MAX + 1], lj[TEXT_NAME_MAX + 1];
            text_lower(names[i], strlen(names[i]), li);
            text_lower(names[j], strlen(names[j]), lj);
            if (strcmp(li, lj) == 0)
                continue;
            char room[TEXT_DM_ROOM_MAX + 1], a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
            text_dm_room(names[i], names[j], room);
            assert_true(parse_dm(room, a, b));
            assert_true(strcmp(a, b) < 0);
            assert_true((strcmp(a, li) == 0 && strcmp(b, lj) == 0) ||
                        (strcmp(a, lj) == 0 && strcmp(b, li) == 0));
            char again[TEXT_DM_ROOM_MAX + 1];
            text_dm_room(names[j], names[i], again);
            assert_string_equal(room, again);
        }
    }
}

/* ---- message text ---- */

static void test_text_plain(void **state)
{
    (void)state;
    CHECK_OK("hello", 5);
    CHECK_OK("x", 1);
    CHECK_OK("  leading spaces stay", 21);
    CHECK_OK("line one\nline two", 17);
    CHECK_OK("a\tb", 3);
    CHECK_OK("\n\nx", 3);
    CHECK_OK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14);
    CHECK_OK("a\xc2\xa0"
             "b",
             4); /* NBSP inside is kept */
    CHECK_OK("a\xe3\x80\x80"
             "b",
             5); /* U+3000 inside is kept */
    CHECK_OK("a\x0a\x09 b", 5);
}

static void test_text_trim(void **state)
{
    (void)state;
    CHECK_OK("hi ", 2);
    CHECK_OK("hi\n", 2);
    CHECK_OK("hi\r\n", 2);
    CHECK_OK("hi\t \n \r\n\v\f", 2);
    CHECK_OK("hi\xe3\x80\x80", 2);             /* U+3000 IDEOGRAPHIC SPACE */
    CHECK_OK("hi\xc2\xa0", 2);                 /* U+00A0 NO-BREAK SPACE */
    CHECK_OK("hi\xc2\x85", 2);                 /* U+0085 NEL: White_Space, trimmed */
    CHECK_OK("hi\xe1\x9a\x80", 2);             /* U+1680 */
    CHECK_OK("hi\xe2\x80\x80\xe2\x80\x8a", 2); /* U+2000, U+200A */
    CHECK_OK("hi\xe2\x80\xa8\xe2\x80\xa9", 2); /* U+2028, U+2029 */
    CHECK_OK("hi\xe2\x80\xaf\xe2\x81\x9f", 2); /* U+202F, U+205F */
    CHECK_OK("hi \xe3\x80\x80 \xc2\xa0\n", 2);
    CHECK_OK("a b ", 3);
    /* Not White_Space, so kept: ZERO WIDTH SPACE, BOM, MONGOLIAN VOWEL SEPARATOR. */
    CHECK_OK("hi\xe2\x80\x8b", 5);
    CHECK_OK("hi\xef\xbb\xbf", 5);
    CHECK_OK("hi\xe1\xa0\x8e", 5);
}

static void test_text_empty(void **state)
{
    (void)state;
    CHECK_IS("", TEXT_EMPTY);
    CHECK_IS(" ", TEXT_EMPTY);
    CHECK_IS("   \n\n\t", TEXT_EMPTY);
    CHECK_IS("\r\n\v\f", TEXT_EMPTY); /* controls, but trimmed before the control check */
    CHECK_IS("\xe3\x80\x80", TEXT_EMPTY);
    CHECK_IS("\xc2\x85", TEXT_EMPTY);
    CHECK_IS("\xc2\xa0 \xe2\x80\xa8", TEXT_EMPTY);

    char buf[25 * 4];
    size_t n = 0;
    for (size_t i = 0; i < sizeof white_space / sizeof white_space[0]; i++)
        n += put_cp(white_space[i], buf + n);
    size_t t;
    assert_int_equal(check(buf, n, &t), TEXT_EMPTY);
}

static void test_text_controls(void **state)
{
    (void)state;
    CHECK_IS("a\rb", TEXT_BAD);
    CHECK_IS("a\vb", TEXT_BAD);
    CHECK_IS("a\fb", TEXT_BAD);
    CHECK_IS("a\x1b[31mred", TEXT_BAD); /* ESC: terminal escape sequences */
    CHECK_IS("a\x7f", TEXT_BAD);        /* DEL */
    CHECK_IS("a\x07", TEXT_BAD);
    CHECK_IS("\x01", TEXT_BAD);
    CHECK_IS("a\0b", TEXT_BAD); /* NUL inside */
    CHECK_IS("a\0", TEXT_BAD);  /* NUL is not white space: not trimmed */
    CHECK_IS("\0", TEXT_BAD);
    CHECK_IS("a\x1c", TEXT_BAD); /* U+001C..1F: separators, but not White_Space */
    CHECK_IS("a\x1f ", TEXT_BAD);
    CHECK_IS("a\xc2\x80", TEXT_BAD); /* U+0080, C1 */
    CHECK_IS("a\xc2\x9f", TEXT_BAD); /* U+009F, C1 */
    CHECK_IS("a\xc2\x9b"
             "b",
             TEXT_BAD); /* CSI */
    CHECK_IS("a\xc2\x85"
             "b",
             TEXT_BAD); /* U+0085 inside: C1, refused */
    CHECK_IS("\xc2\x85"
             "b",
             TEXT_BAD);
    CHECK_IS("a\rb\r", TEXT_BAD); /* the trailing CR is trimmed, the inner one is not */
    CHECK_IS("a\x01   ", TEXT_BAD);
    CHECK_IS("\r\n\r\nx", TEXT_BAD); /* leading controls are not trimmed */
}

static void test_text_invalid_utf8(void **state)
{
    (void)state;
    CHECK_IS("\xff", TEXT_BAD);
    CHECK_IS("a\xc3", TEXT_BAD);        /* truncated */
    CHECK_IS("a\xc3 ", TEXT_BAD);       /* truncated, then space */
    CHECK_IS("\xc0\xaf", TEXT_BAD);     /* overlong '/' */
    CHECK_IS("\xc1\xa0", TEXT_BAD);     /* overlong NBSP */
    CHECK_IS("\xe0\x80\xa0", TEXT_BAD); /* overlong space */
    CHECK_IS("\xed\xa0\x80", TEXT_BAD); /* surrogate */
    CHECK_IS("\xf4\x90\x80\x80", TEXT_BAD);
    CHECK_IS("hi \xff", TEXT_BAD);
    CHECK_IS("hi\xe3\x80", TEXT_BAD);       /* U+3000 cut short */
    CHECK_IS("\x80 ", TEXT_BAD);            /* stray continuation byte */
    CHECK_IS("\xe3\xe3\x80\x80", TEXT_BAD); /* a stray lead before a real U+3000 */
    CHECK_IS("   \xff   ", TEXT_BAD);
}

static void test_text_length_ascii(void **state)
{
    (void)state;
    size_t n, t;
    char *s = repeat_cp('a', 4001, &n);
    assert_int_equal(text_check_message(s, 4000, 4000, &t), TEXT_OK);
    assert_int_equal(t, 4000);
    assert_int_equal(text_check_message(s, 4001, 4000, &t), TEXT_TOO_LONG);
    free(s);
}

static void test_text_length_multibyte(void **state)
{
    (void)state;
    static const uint32_t cps[] = {0xE9, 0x20AC, 0x1F600, 0x10FFFF};
    for (size_t k = 0; k < sizeof cps / sizeof cps[0]; k++) {
        size_t n, t;
        char *s = repeat_cp(cps[k], 4000, &n);
        assert_int_equal(text_check_message(s, n, 4000, &t), TEXT_OK);
        assert_int_equal(t, n);
        free(s);
        s = repeat_cp(cps[k], 4001, &n);
        assert_int_equal(text_check_message(s, n, 4000, &t), TEXT_TOO_LONG);
        free(s);
    }
}

/* Trailing white space does not count toward the limit: it is trimmed first. */
static void test_text_length_after_trim(void **state)
{
    (void)state;
    size_t n, t;
    char *s = malloc(4000 * 3 + 300 * 3);
    assert_non_null(s);
    char *body = repeat_cp(0x20AC, 4000, &n);
    memcpy(s, body, n);
    free(body);
    size_t total = n;
    for (int i = 0; i < 100; i++)
        total += put_cp(0x3000, s + total);
    for (int i = 0; i < 100; i++)
        total += put_cp(' ', s + total);
    assert_int_equal(text_check_message(s, total, 4000, &t), TEXT_OK);
    assert_int_equal(t, 12000);
    /* White space inside does count. */
    s[0] = ' ';
    s[1] = ' ';
    s[2] = ' '; /* one euro sign became three spaces: 4002 code points */
    assert_int_equal(text_check_message(s, total, 4000, &t), TEXT_TOO_LONG);
    free(s);
}

static void test_text_max_points(void **state)
{
    (void)state;
    size_t t;
    assert_int_equal(text_check_message("a", 1, 1, &t), TEXT_OK);
    assert_int_equal(text_check_message("ab", 2, 1, &t), TEXT_TOO_LONG);
    assert_int_equal(text_check_message("\xf0\x9f\x98\x80", 4, 1, &t), TEXT_OK);
    assert_int_equal(text_check_message("a ", 2, 1, &t), TEXT_OK);
    assert_int_equal(text_check_message("a", 1, 0, &t), TEXT_TOO_LONG);
    assert_int_equal(text_check_message(" ", 1, 0, &t), TEXT_EMPTY);
}

/* A text both too long and holding a control character is a bad_request (rule 5's order). */
static void test_text_bad_before_too_long(void **state)
{
    (void)state;
    size_t n, t;
    char *s = repeat_cp('a', 5000, &n);
    s[4999] = '\x1b';
    assert_int_equal(text_check_message(s, n, 4000, &t), TEXT_BAD);
    s[4999] = 'a';
    s[0] = '\xff';
    assert_int_equal(text_check_message(s, n, 4000, &t), TEXT_BAD);
    free(s);
}

/* Every code point, after a letter (trailing) and between two letters (inside). */
static void test_text_every_code_point(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        char buf[8];
        size_t t, n = 0;
        buf[n++] = 'x';
        size_t cl = put_cp(cp, buf + n);
        n += cl;
        enum text_verdict v = text_check_message(buf, n, 4000, &t);
        if (ref_white(cp)) {
            assert_int_equal(v, TEXT_OK);
            assert_int_equal(t, 1);
        } else if (ref_control(cp)) {
            assert_int_equal(v, TEXT_BAD);
        } else {
            assert_int_equal(v, TEXT_OK);
            assert_int_equal(t, 1 + cl);
        }
        buf[n++] = 'y';
        v = text_check_message(buf, n, 4000, &t);
        if (ref_control(cp)) { /* including \v \f \r and U+0085, White_Space but C0/C1 */
            assert_int_equal(v, TEXT_BAD);
        } else {
            assert_int_equal(v, TEXT_OK);
            assert_int_equal(t, n);
        }
    }
}

static void assert_skeleton(const char *name, const char *want)
{
    char out[TEXT_NAME_MAX + 1];
    text_skeleton(name, strlen(name), out);
    assert_string_equal(out, want);
}

static void test_skeleton_confusables(void **state)
{
    (void)state;
    assert_skeleton("alice", "allce");
    assert_skeleton("ALlCE", "allce");
    assert_skeleton("bill", "blll");
    assert_skeleton("bIll", "blll");
    assert_skeleton("b1ll", "blll");
    assert_skeleton("BOB", "bob");
    assert_skeleton("B0B", "bob");
    assert_skeleton("bob_", "bob");
    assert_skeleton("bob.-_.", "bob");
    assert_skeleton("bob_x", "bob_x"); /* only trailing marks go */
    assert_skeleton("_", "");
    assert_skeleton("Zed-9", "zed-9");
}

static void test_has_control(void **state)
{
    (void)state;
    assert_false(text_has_control("cid-1", 5));
    assert_false(
        text_has_control("caf\xc3\xa9 \xe2\x80\xae", 9)); /* é and U+202E are not controls */
    assert_true(text_has_control("a\nb", 3));
    assert_true(text_has_control("a\tb", 3));
    assert_true(text_has_control("\x1b[2J", 4));
    assert_true(text_has_control("a\x7f", 2));
    assert_true(text_has_control("a\xc2\x85", 3)); /* U+0085 */
    assert_true(text_has_control("\xc2\x9f", 2));  /* U+009F */
    assert_false(text_has_control("\xc2\xa0", 2)); /* U+00A0 is not C1 */
}

static void test_reordering_chars(void **state)
{
    (void)state;
    /* Every code point U+2000..U+206F: exactly 2028-202E and 2066-2069 are caught. */
    for (uint32_t cp = 0x2000; cp <= 0x206F; cp++) {
        char b[3] = {(char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)),
                     (char)(0x80 | (cp & 0x3F))};
        bool want = (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
        assert_int_equal(text_reordering_char(b, 3), want ? 3 : 0);
        assert_int_equal(text_reordering_char(b, 2), 0); /* never reads past the end */
    }
    assert_int_equal(text_reordering_char("abc", 3), 0);
}

static void assert_repaired(const char *in, size_t n, const char *want)
{
    char out[64];
    size_t len = text_repair(in, n, out);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    assert_int_equal(text_needs_repair(in, n), strcmp(in, want) != 0 || n != strlen(want));
}

static void test_repair(void **state)
{
    (void)state;
    assert_repaired("plain text\n\ttab", 15, "plain text\n\ttab");
    assert_repaired("caf\xc3\xa9", 5, "caf\xc3\xa9");
    assert_repaired("a\xff"
                    "b",
                    3,
                    "a\xef\xbf\xbd"
                    "b");                                                       /* not UTF-8 */
    assert_repaired("a\xc3", 2, "a\xef\xbf\xbd");                               /* cut short */
    assert_repaired("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
    assert_repaired("\x1b[2J", 4, "\xef\xbf\xbd[2J");                           /* ESC: rule 41 */
    assert_repaired("a\x7f\xc2\x85", 4, "a\xef\xbf\xbd\xef\xbf\xbd");           /* DEL and C1 */
    assert_repaired("\0x", 2, "\xef\xbf\xbdx");
    assert_false(text_needs_repair("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_valid),
        cmocka_unit_test(test_user_length),
        cmocka_unit_test(test_user_bad_chars),
        cmocka_unit_test(test_user_every_byte),
        cmocka_unit_test(test_lower),
        cmocka_unit_test(test_name_caps),
        cmocka_unit_test(test_room_fold),
        cmocka_unit_test(test_room_length),
        cmocka_unit_test(test_room_bad_chars),
        cmocka_unit_test(test_room_every_byte),
        cmocka_unit_test(test_dm_parse_canonical),
        cmocka_unit_test(test_dm_parse_refused),
        cmocka_unit_test(test_dm_parse_lengths),
        cmocka_unit_test(test_dm_room_build),
        cmocka_unit_test(test_dm_room_round_trip),
        cmocka_unit_test(test_text_plain),
        cmocka_unit_test(test_text_trim),
        cmocka_unit_test(test_text_empty),
        cmocka_unit_test(test_text_controls),
        cmocka_unit_test(test_text_invalid_utf8),
        cmocka_unit_test(test_text_length_ascii),
        cmocka_unit_test(test_text_length_multibyte),
        cmocka_unit_test(test_text_length_after_trim),
        cmocka_unit_test(test_text_max_points),
        cmocka_unit_test(test_text_bad_before_too_long),
        cmocka_unit_test(test_text_every_code_point),
        cmocka_unit_test(test_skeleton_confusables),
        cmocka_unit_test(test_has_control),
        cmocka_unit_test(test_reordering_chars),
        cmocka_unit_test(test_repair),
    };
    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
