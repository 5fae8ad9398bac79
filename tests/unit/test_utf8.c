/* test_utf8: unit tests of the fail-fast UTF-8 validator, against an independent reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

/* Feeds p one byte at a time; returns the index of the byte that made the
 * state REJECT, or -1 if it never did. */
static long reject_index(const uint8_t *p, size_t n)
{
    uint32_t st = UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++) {
        st = utf8_validate(st, p + i, 1);
        if (st == UTF8_REJECT)
            return (long)i;
    }
    return -1;
}

#define REJECT_AT(idx, ...)                                                                        \
    do {                                                                                           \
        static const uint8_t s_[] = {__VA_ARGS__};                                                 \
        assert_int_equal(reject_index(s_, sizeof s_), (idx));                                      \
        assert_false(utf8_is_valid(s_, sizeof s_));                                                \
    } while (0)

/* Encodes cp the way RFC 3629 does, in `len` bytes (len > the minimum gives an overlong form). */
static size_t encode(uint32_t cp, size_t len, uint8_t *out)
{
    static const uint8_t lead[5] = {0, 0x00, 0xC0, 0xE0, 0xF0};
    for (size_t i = len - 1; i > 0; i--) {
        out[i] = (uint8_t)(0x80 | (cp & 0x3F));
        cp >>= 6;
    }
    out[0] = (uint8_t)(lead[len] | cp);
    return len;
}

static size_t min_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static void test_valid_examples(void **state)
{
    (void)state;
    static const char *ok[] = {
        "",
        "hello, world",
        "caf\xc3\xa9",                      /* é */
        "\xe2\x82\xac 5",                   /* € */
        "\xf0\x9f\x98\x80",                 /* U+1F600 */
        "\xc2\x80\xdf\xbf",                 /* U+0080, U+07FF */
        "\xe0\xa0\x80\xef\xbf\xbf",         /* U+0800, U+FFFF */
        "\xed\x9f\xbf\xee\x80\x80",         /* U+D7FF, U+E000: around the surrogates */
        "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", /* U+10000, U+10FFFF */
        "\xef\xbb\xbf BOM is fine",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const uint8_t *p = (const uint8_t *)ok[i];
        assert_true(utf8_is_valid(p, strlen(ok[i])));
        assert_int_equal(utf8_validate(UTF8_ACCEPT, p, strlen(ok[i])), UTF8_ACCEPT);
    }
    static const uint8_t nul[] = {'a', 0, 'b'};
    assert_true(utf8_is_valid(nul, sizeof nul)); /* U+0000 is a valid code point */
    assert_true(utf8_is_valid(NULL, 0));
}

static void test_reject_first_bad_byte(void **state)
{
    (void)state;
    /* Stray continuation bytes. */
    REJECT_AT(0, 0x80);
    REJECT_AT(0, 0xBF);
    REJECT_AT(3, 'a', 'b', 'c', 0x80);
    REJECT_AT(2, 0xC3, 0xA9, 0xA9);
    /* Overlong forms. */
    REJECT_AT(0, 0xC0, 0x80);
    REJECT_AT(0, 0xC1, 0xBF);
    REJECT_AT(1, 0xE0, 0x80, 0x80);
    REJECT_AT(1, 0xE0, 0x9F, 0xBF);
    REJECT_AT(1, 0xF0, 0x80, 0x80, 0x80);
    REJECT_AT(1, 0xF0, 0x8F, 0xBF, 0xBF);
    /* Surrogates. */
    REJECT_AT(1, 0xED, 0xA0, 0x80);
    REJECT_AT(1, 0xED, 0xBF, 0xBF);
    /* Above U+10FFFF. */
    REJECT_AT(1, 0xF4, 0x90, 0x80, 0x80);
    REJECT_AT(1, 0xF4, 0xBF, 0xBF, 0xBF);
    REJECT_AT(0, 0xF5, 0x80, 0x80, 0x80);
    REJECT_AT(0, 0xF8);
    REJECT_AT(0, 0xFE);
    REJECT_AT(0, 0xFF);
    /* A sequence cut short by a non-continuation byte. */
    REJECT_AT(1, 0xC2, 0x41);
    REJECT_AT(2, 0xE1, 0x80, 0x41);
    REJECT_AT(3, 0xF1, 0x80, 0x80, 0x41);
    REJECT_AT(1, 0xC2, 0xC2);
    REJECT_AT(2, 0xF1, 0x80, 0xF1);
}

static void test_truncated_is_pending(void **state)
{
    (void)state;
    static const uint8_t *cases[] = {
        (const uint8_t *)"\xc2",         (const uint8_t *)"\xe0\xa0",
        (const uint8_t *)"\xe1",         (const uint8_t *)"\xf0\x90\x80",
        (const uint8_t *)"\xf4\x8f\xbf", (const uint8_t *)"ab\xed\x9f",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen((const char *)cases[i]);
        uint32_t st = utf8_validate(UTF8_ACCEPT, cases[i], n);
        assert_int_not_equal(st, UTF8_ACCEPT);
        assert_int_not_equal(st, UTF8_REJECT);
        assert_false(utf8_is_valid(cases[i], n));
    }
}

static void test_reject_is_sticky(void **state)
{
    (void)state;
    static const uint8_t a[] = {'a'};
    assert_int_equal(utf8_validate(UTF8_REJECT, a, 1), UTF8_REJECT);
    assert_int_equal(utf8_validate(UTF8_REJECT, NULL, 0), UTF8_REJECT);
    /* A state the validator never produces is treated as invalid, not trusted. */
    assert_int_equal(utf8_validate(12345u, a, 1), UTF8_REJECT);
    /* No input leaves any state unchanged. */
    uint32_t st = utf8_validate(UTF8_ACCEPT, (const uint8_t *)"\xe2", 1);
    assert_int_equal(utf8_validate(st, NULL, 0), st);
}

/* Every code point, in its shortest form, is valid, also fed in two pieces. */
static void test_every_code_point(void **state)
{
    (void)state;
    uint8_t buf[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = encode(cp, min_len(cp), buf);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (surrogate) {
            assert_int_equal(reject_index(buf, n), 1);
            continue;
        }
        if (!utf8_is_valid(buf, n))
            fail_msg("U+%04X refused", (unsigned)cp);
        uint32_t st = utf8_validate(UTF8_ACCEPT, buf, n / 2);
        assert_int_equal(utf8_validate(st, buf + n / 2, n - n / 2), UTF8_ACCEPT);
    }
}

/* Overlong forms of every code point are refused, at byte 0 (C0, C1) or byte 1. */
static void test_every_overlong(void **state)
{
    (void)state;
    uint8_t buf[4];
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        for (size_t len = min_len(cp) + 1; len <= 4; len++) {
            size_t n = encode(cp, len, buf);
            long at = reject_index(buf, n);
            long want = (buf[0] == 0xC0 || buf[0] == 0xC1) ? 0 : 1;
            if (at != want)
                fail_msg("overlong U+%04X in %zu bytes: rejected at %ld", (unsigned)cp, len, at);
        }
    }
}

/* Four-byte forms above U+10FFFF are refused at byte 0 (F5..F7) or byte 1 (F4 90..BF). */
static void test_above_max(void **state)
{
    (void)state;
    uint8_t buf[4];
    for (uint32_t cp = 0x110000; cp <= 0x1FFFFF; cp += 7) {
        encode(cp, 4, buf);
        long want = buf[0] == 0xF4 ? 1 : 0;
        assert_int_equal(reject_index(buf, 4), want);
    }
}

/* Reference for two bytes: 0 invalid, 1 valid and complete, 2 valid prefix. */
static int ref_two(uint8_t a, uint8_t b)
{
    bool a_ascii = a < 0x80, b_cont = b >= 0x80 && b <= 0xBF;
    if (a_ascii) {
        if (b < 0x80)
            return 1;
        return (b >= 0xC2 && b <= 0xF4) ? 2 : 0;
    }
    if (a >= 0xC2 && a <= 0xDF)
        return b_cont ? 1 : 0;
    if (a == 0xE0)
        return (b >= 0xA0 && b <= 0xBF) ? 2 : 0;
    if (a == 0xED)
        return (b >= 0x80 && b <= 0x9F) ? 2 : 0;
    if (a >= 0xE1 && a <= 0xEF)
        return b_cont ? 2 : 0;
    if (a == 0xF0)
        return (b >= 0x90 && b <= 0xBF) ? 2 : 0;
    if (a >= 0xF1 && a <= 0xF3)
        return b_cont ? 2 : 0;
    if (a == 0xF4)
        return (b >= 0x80 && b <= 0x8F) ? 2 : 0;
    return 0;
}

static void test_all_byte_pairs(void **state)
{
    (void)state;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t p[2] = {(uint8_t)a, (uint8_t)b};
            uint32_t st = utf8_validate(UTF8_ACCEPT, p, 2);
            int got = st == UTF8_REJECT ? 0 : st == UTF8_ACCEPT ? 1 : 2;
            if (got != ref_two(p[0], p[1]))
                fail_msg("%02X %02X: got %d want %d", a, b, got, ref_two(p[0], p[1]));
        }
    }
}

/* The eight-bytes-at-a-time ASCII path must still stop at a bad byte at any offset. */
static void test_ascii_fast_path_offsets(void **state)
{
    (void)state;
    uint8_t buf[80];
    for (size_t bad = 0; bad < 64; bad++) {
        memset(buf, 'x', sizeof buf);
        buf[bad] = 0x80;
        assert_int_equal(utf8_validate(UTF8_ACCEPT, buf, sizeof buf), UTF8_REJECT);
        assert_int_equal(utf8_validate(UTF8_ACCEPT, buf, bad), UTF8_ACCEPT);
        /* A valid multi-byte character at the same offset passes. */
        memset(buf, 'x', sizeof buf);
        buf[bad] = 0xC3;
        buf[bad + 1] = 0xA9;
        assert_true(utf8_is_valid(buf, sizeof buf));
        /* A character split right at the end of the input is pending, not rejected. */
        uint32_t st = utf8_validate(UTF8_ACCEPT, buf, bad + 1);
        assert_int_not_equal(st, UTF8_REJECT);
        assert_int_not_equal(st, UTF8_ACCEPT);
        assert_int_equal(utf8_validate(st, buf + bad + 1, sizeof buf - bad - 1), UTF8_ACCEPT);
    }
}

/* Splitting a text anywhere gives the same answer as feeding it whole. */
static void test_every_split_point(void **state)
{
    (void)state;
    static const char *texts[] = {
        "abc \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 long enough for the fast path \xf4\x8f\xbf\xbf",
        "abc \xc3\xa9\xe2\x82\xac\xf0\x9f\x98 cut \xed\xa0\x80 surrogate",
        "0123456789abcdef\xe0\x80\xaf",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        const uint8_t *p = (const uint8_t *)texts[t];
        size_t n = strlen(texts[t]);
        uint32_t whole = utf8_validate(UTF8_ACCEPT, p, n);
        for (size_t i = 0; i <= n; i++) {
            for (size_t j = i; j <= n; j++) {
                uint32_t st = utf8_validate(UTF8_ACCEPT, p, i);
                st = utf8_validate(st, p + i, j - i);
                st = utf8_validate(st, p + j, n - j);
                assert_int_equal(st, whole);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest utf8[] = {
        cmocka_unit_test(test_valid_examples),
        cmocka_unit_test(test_reject_first_bad_byte),
        cmocka_unit_test(test_truncated_is_pending),
        cmocka_unit_test(test_reject_is_sticky),
        cmocka_unit_test(test_every_code_point),
        cmocka_unit_test(test_every_overlong),
        cmocka_unit_test(test_above_max),
        cmocka_unit_test(test_all_byte_pairs),
        cmocka_unit_test(test_ascii_fast_path_offsets),
        cmocka_unit_test(test_every_split_point),
    };
    return cmocka_run_group_tests(utf8, NULL, NULL);
}
