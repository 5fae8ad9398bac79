/* test_telnet_parser: unit tests of the telnet line parser, each input fed split at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "random_cuts.h"
#include "telnet_parser.h"

/* A string literal as input bytes, NULs included. */
#define IN(s) (const uint8_t *)(s), sizeof(s) - 1

/* Option bytes below are written in octal: a letter after a hex escape would extend it. */
#define IAC "\xff"
#define WILL "\xfb"
#define WONT "\xfc"
#define DO "\xfd"
#define DONT "\xfe"
#define SB "\xfa"
#define SE "\xf0"
#define IP "\xf4"
#define EC "\xf7"
#define EL "\xf8"

/* ---- transcripts ---- */

/*
 * A transcript is the events of one run as text: "L[...]" for a line (bytes
 * outside printable ASCII, ']' and '\' as \xHH), "TOO_LONG", "IP", and
 * "DO(1)"-style negotiations, separated by spaces. Feeding the same input
 * split in any way must give the same transcript.
 */
struct transcript {
    char *text;
    size_t len, cap;
};

static void put(struct transcript *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        size_t c = t->cap ? t->cap : 256;
        while (c < t->len + n + 1)
            c *= 2;
        t->text = realloc(t->text, c);
        assert_non_null(t->text);
        t->cap = c;
    }
    memcpy(t->text + t->len, s, n + 1);
    t->len += n;
}

static const char *verb_name(uint8_t verb)
{
    switch (verb) {
    case TELNET_WILL:
        return "WILL";
    case TELNET_WONT:
        return "WONT";
    case TELNET_DO:
        return "DO";
    case TELNET_DONT:
        return "DONT";
    default:
        fail_msg("negotiation with verb %u", verb);
        return "?";
    }
}

static void record(struct transcript *t, const struct telnet_event *ev)
{
    char tmp[32];
    if (ev->type == TELNET_EV_NONE)
        return;
    if (t->len > 0)
        put(t, " ");
    switch (ev->type) {
    case TELNET_EV_NONE:
        break;
    case TELNET_EV_LINE:
        put(t, "L[");
        for (size_t i = 0; i < ev->len; i++) {
            uint8_t c = ev->line[i];
            if (c >= 0x20 && c < 0x7F && c != ']' && c != '\\')
                snprintf(tmp, sizeof tmp, "%c", c);
            else
                snprintf(tmp, sizeof tmp, "\\x%02x", c);
            put(t, tmp);
        }
        put(t, "]");
        break;
    case TELNET_EV_TOO_LONG:
        put(t, "TOO_LONG");
        break;
    case TELNET_EV_NEGOTIATE:
        snprintf(tmp, sizeof tmp, "%s(%u)", verb_name(ev->verb), ev->option);
        put(t, tmp);
        break;
    case TELNET_EV_INTERRUPT:
        put(t, "IP");
        break;
    }
}

/* Feeds data[0..n) to p in one call site's worth of calls, checking what every call returns. */
static void feed(struct telnet_parser *p, const uint8_t *data, size_t n, struct transcript *t)
{
    size_t pos = 0;
    while (pos < n) {
        struct telnet_event ev;
        size_t left = n - pos;
        size_t used = telnet_parse(p, data + pos, left, &ev);
        assert_true(used <= left);
        assert_true(used > 0); /* progress: bytes remained, so something was consumed */
        if (ev.type == TELNET_EV_NONE)
            assert_int_equal(used, left);
        if (ev.type == TELNET_EV_LINE) {
            assert_true(ev.len <= p->cap);
            assert_ptr_equal(ev.line, p->buf);
        }
        record(t, &ev);
        pos += used;
    }
}

/* Runs in[0..n) through a fresh parser of cap bytes, cut at cuts[0..nc) (ascending). */
static char *run(size_t cap, const uint8_t *in, size_t n, const size_t *cuts, size_t nc)
{
    uint8_t *buf = malloc(cap + 1);
    assert_non_null(buf);
    struct telnet_parser p;
    telnet_parser_init(&p, buf, cap);
    struct transcript t = {0};
    put(&t, "");
    size_t pos = 0;
    for (size_t c = 0; c <= nc; c++) {
        size_t end = c < nc ? cuts[c] : n;
        feed(&p, in + pos, end - pos, &t);
        pos = end;
    }
    /* Nothing was left over: a last call on no input reports nothing. */
    struct telnet_event ev;
    assert_int_equal(telnet_parse(&p, NULL, 0, &ev), 0);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    free(buf);
    return t.text;
}

static void assert_run(size_t cap, const uint8_t *in, size_t n, const size_t *cuts, size_t nc,
                       const char *want)
{
    char *got = run(cap, in, n, cuts, nc);
    if (strcmp(got, want) != 0) {
        print_error("cuts:");
        for (size_t c = 0; c < nc; c++)
            print_error(" %zu", cuts[c]);
        print_error("\n");
    }
    assert_string_equal(got, want);
    free(got);
}

/*
 * Asserts that in[0..n) gives the transcript want when fed whole, byte by
 * byte, cut at any one point, and (for short inputs) cut at any two points.
 */
static void expect(size_t cap, const uint8_t *in, size_t n, const char *want)
{
    assert_run(cap, in, n, NULL, 0, want);

    size_t *every = malloc((n + 1) * sizeof *every);
    assert_non_null(every);
    for (size_t i = 0; i < n; i++)
        every[i] = i + 1;
    assert_run(cap, in, n, every, n, want);
    free(every);

    for (size_t a = 0; a <= n; a++) {
        assert_run(cap, in, n, &a, 1, want);
        if (n > 48)
            continue;
        for (size_t b = a; b <= n; b++) {
            size_t cuts[2] = {a, b};
            assert_run(cap, in, n, cuts, 2, want);
        }
    }
}

#define EXPECT(cap, s, want) expect(cap, IN(s), want)

/* ---- line endings ---- */

static void test_line_endings(void **state)
{
    (void)state;
    EXPECT(64, "hello\r\n", "L[hello]");
    EXPECT(64, "hello\r\0", "L[hello]");
    EXPECT(64, "hello\n", "L[hello]");
    EXPECT(64, "hello\r", "L[hello]");
    EXPECT(64, "hello", "");
    /* A CR followed by anything else ends the line, and that byte starts the next. */
    EXPECT(64, "a\rb\n", "L[a] L[b]");
    EXPECT(64, "a\r\r\n", "L[a] L[]");
    EXPECT(64, "a\r\n\n", "L[a] L[]");
    EXPECT(64, "a\r\0\0\n", "L[a] L[\\x00]");
    EXPECT(64, "a\n\rb\r\n", "L[a] L[] L[b]");
    EXPECT(64, "one\r\ntwo\nthree\r\0four\rfive\n", "L[one] L[two] L[three] L[four] L[five]");
    /* A CR then IAC: the command belongs to the next line. */
    EXPECT(64, "a\r" IAC DO "\001b\n", "L[a] DO(1) L[b]");
    EXPECT(64, "a\r" IAC IAC "\n", "L[a] L[\\xff]");
}

static void test_empty_lines(void **state)
{
    (void)state;
    EXPECT(64, "\n", "L[]");
    EXPECT(64, "\r\n", "L[]");
    EXPECT(64, "\r\0", "L[]");
    EXPECT(64, "\r\n\r\n\n\r\0", "L[] L[] L[] L[]");
    EXPECT(0, "\r\n\n", "L[] L[]");
}

static void test_crlf_across_calls(void **state)
{
    (void)state;
    uint8_t buf[16];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);

    /* The line is reported at the CR, without waiting for the byte after it. */
    assert_int_equal(telnet_parse(&p, IN("ab\r"), &ev), 3);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.line, "ab", 2);
    /* Its LF, arriving later, does not make an empty line. */
    assert_int_equal(telnet_parse(&p, IN("\n"), &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_int_equal(telnet_parse(&p, IN("cd\n"), &ev), 3);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.line, "cd", 2);
}

static void test_one_event_per_call(void **state)
{
    (void)state;
    uint8_t buf[16];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);
    const uint8_t in[] = "a\nb\r\n" IAC WILL "\003c";
    size_t n = sizeof in - 1, pos = 0;

    pos += telnet_parse(&p, in + pos, n - pos, &ev);
    assert_int_equal(pos, 2);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_memory_equal(ev.line, "a", 1);
    pos += telnet_parse(&p, in + pos, n - pos, &ev);
    assert_int_equal(pos, 4);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_memory_equal(ev.line, "b", 1);
    /* The LF of the CR LF goes in with the negotiation that follows it. */
    pos += telnet_parse(&p, in + pos, n - pos, &ev);
    assert_int_equal(pos, 8);
    assert_int_equal(ev.type, TELNET_EV_NEGOTIATE);
    assert_int_equal(ev.verb, TELNET_WILL);
    assert_int_equal(ev.option, TELNET_OPT_SGA);
    pos += telnet_parse(&p, in + pos, n - pos, &ev);
    assert_int_equal(pos, n);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_int_equal(p.len, 1);
}

static void test_empty_input(void **state)
{
    (void)state;
    uint8_t buf[4];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);
    assert_int_equal(telnet_parse(&p, NULL, 0, &ev), 0);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_null(ev.line);
    assert_int_equal(ev.len, 0);
}

/* ---- editing ---- */

static void test_backspace_ascii(void **state)
{
    (void)state;
    EXPECT(64, "abc\b\n", "L[ab]");
    EXPECT(64, "abc\x7f\n", "L[ab]");
    EXPECT(64, "ab\b\bcd\n", "L[cd]");
    EXPECT(64, "ab\b\b\b\bc\n", "L[c]");
    /* Backspace on an empty line does nothing, and never reaches the previous line. */
    EXPECT(64, "\b\n", "L[]");
    EXPECT(64, "\x7f\x7f\r\n", "L[]");
    EXPECT(64, "ab\n\bc\n", "L[ab] L[c]");
    EXPECT(64, "ab\r\n\x7f\n", "L[ab] L[]");
}

static void test_backspace_utf8(void **state)
{
    (void)state;
    /* é is C3 A9, 😀 is F0 9F 98 80, € is E2 82 AC: each goes as a whole. */
    EXPECT(64, "x\xc3\xa9\b\n", "L[x]");
    EXPECT(64, "\xc3\xa9\x7f\n", "L[]");
    EXPECT(64, "x\xf0\x9f\x98\x80\b\n", "L[x]");
    EXPECT(64, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\b\n", "L[\\xf0\\x9f\\x98\\x80]");
    EXPECT(64, "a\xe2\x82\xac\b\n", "L[a]");
    EXPECT(64, "\xc3\xa9\xc3\xa9\b\b\b\n", "L[]");
    EXPECT(64, "\xc3\xa9" IAC EC "e\n", "L[e]");
    EXPECT(64, "x\xf0\x9f\x98\x80" IAC EC "\n", "L[x]");
}

static void test_backspace_broken_utf8(void **state)
{
    (void)state;
    /* A continuation byte no lead can own is one character, as a decoder sees it. */
    EXPECT(64, "a\x80\b\n", "L[a]");
    EXPECT(64, "a\x80\x80\b\n", "L[a\\x80]");
    EXPECT(64, "\x80\x80\x80\x80\b\n", "L[\\x80\\x80\\x80]");
    EXPECT(64, "\xc3\xa9\x80\b\n", "L[\\xc3\\xa9]");
    /* A lead byte still waiting for continuations goes with what it has. */
    EXPECT(64, "a\xf0\x9f\b\n", "L[a]");
    EXPECT(64, "a\xe2\b\n", "L[a]");
    EXPECT(64, "a\xff\xff\b\n", "L[a]");
}

static void test_erase_line(void **state)
{
    (void)state;
    EXPECT(64, "abc" IAC EL "de\n", "L[de]");
    EXPECT(64, IAC EL "\n", "L[]");
    EXPECT(64, "ab" IAC EC IAC EC IAC EC "c\n", "L[c]");
}

/* ---- IAC commands ---- */

static void test_iac_iac(void **state)
{
    (void)state;
    EXPECT(64, "a" IAC IAC "b\n", "L[a\\xffb]");
    EXPECT(64, IAC IAC IAC IAC "\n", "L[\\xff\\xff]");
    EXPECT(64, IAC IAC IAC IAC IAC DO "\x01\n", "DO(1) L[\\xff\\xff]");
}

static void test_negotiation(void **state)
{
    (void)state;
    EXPECT(64, IAC WILL "\x01", "WILL(1)");
    EXPECT(64, IAC WONT "\x01", "WONT(1)");
    EXPECT(64, IAC DO "\x03", "DO(3)");
    EXPECT(64, IAC DONT "\x03", "DONT(3)");
    /* The option byte can be anything, IAC, CR and LF included. */
    EXPECT(64, IAC DO IAC IAC DO "\r" IAC DO "\n" IAC DO "\0", "DO(255) DO(13) DO(10) DO(0)");
    EXPECT(64, "ab" IAC DO "\030cd\n", "DO(24) L[abcd]");
    EXPECT(64, IAC DO "\001" IAC WILL "\003" IAC DO "\003hi" IAC DONT "\042\r\n",
           "DO(1) WILL(3) DO(3) DONT(34) L[hi]");
}

static void test_split_iac_sequences(void **state)
{
    (void)state;
    uint8_t buf[16];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);

    assert_int_equal(telnet_parse(&p, IN(IAC), &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_int_equal(telnet_parse(&p, IN(DO), &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_int_equal(telnet_parse(&p, IN("\001x"), &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_NEGOTIATE);
    assert_int_equal(ev.verb, TELNET_DO);
    assert_int_equal(ev.option, TELNET_OPT_ECHO);

    assert_int_equal(telnet_parse(&p, IN(IAC), &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_int_equal(telnet_parse(&p, IN(IAC "y\n"), &ev), 3);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.line, "\xffy", 2);

    /* The same through expect(), at every split point. */
    EXPECT(64, "a" IAC WILL "\001b" IAC IAC "c" IAC SB "\x18\x00vt100" IAC SE "d" IAC IP,
           "WILL(1) IP");
}

static void test_interrupt(void **state)
{
    (void)state;
    EXPECT(64, IAC IP, "IP");
    /* The half-typed line is thrown away, as a terminal does on ^C. */
    EXPECT(64, "abc" IAC IP "d\n", "IP L[d]");
    EXPECT(64, "x\n" IAC IP IAC IP, "L[x] IP IP");

    uint8_t buf[8];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);
    assert_int_equal(telnet_parse(&p, IN("ab" IAC IP "cd\n"), &ev), 4);
    assert_int_equal(ev.type, TELNET_EV_INTERRUPT);
}

/* A raw 0x03 (Ctrl-C from a client in raw mode) is IAC IP: the line is gone, 0x03 never in one. */
static void test_raw_ctrl_c(void **state)
{
    (void)state;
    EXPECT(64, "\x03", "IP");
    EXPECT(64, "abc\x03" "d\n", "IP L[d]");
    EXPECT(64, "x\r\n\x03\x03y\r\n", "L[x] IP IP L[y]");
    /* After a CR it is no line end's second byte, but the next line's Ctrl-C. */
    EXPECT(64, "x\r\x03" "z\n", "L[x] IP L[z]");
    /* It also ends a too long line's overflow: the next line is a fresh one. */
    EXPECT(4, "abcdefgh\x03ok\n", "IP L[ok]");
    /* Inside a subnegotiation it is the negotiation's data, and after IAC no command. */
    EXPECT(64, "a" IAC SB "\x03" IAC SE "b\n", "L[ab]");
    EXPECT(64, "a" IAC "\x03" "b\n", "L[ab]");

    uint8_t buf[8];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);
    assert_int_equal(telnet_parse(&p, IN("ab\x03" "cd\n"), &ev), 3);
    assert_int_equal(ev.type, TELNET_EV_INTERRUPT);
    assert_false(telnet_parser_holds_line(&p));
}

static void test_silent_commands(void **state)
{
    (void)state;
    /* NOP, DM, BRK, AO, AYT, GA, a stray SE. */
    EXPECT(64, "a" IAC "\361b" IAC "\362c" IAC "\363d\n", "L[abcd]");
    EXPECT(64, "a" IAC "\365b" IAC "\366c" IAC "\371d" IAC SE "e\n", "L[abcde]");
}

/* No command byte, whatever it is, leaves IAC or itself in the line. */
static void test_iac_never_in_line(void **state)
{
    (void)state;
    for (unsigned cmd = 0; cmd < 255; cmd++) {
        uint8_t in[8] = {'a', 'b', TELNET_IAC, (uint8_t)cmd, 'c', 'd', '\n'};
        const char *want = "L[abcd]";
        switch (cmd) {
        case TELNET_WILL:
        case TELNET_WONT:
        case TELNET_DO:
        case TELNET_DONT:
        case TELNET_SB:
            continue; /* these take the following bytes; tested on their own */
        case 244:
            want = "IP L[cd]";
            break;
        case 247:
            want = "L[acd]";
            break;
        case 248:
            want = "L[cd]";
            break;
        default:
            break;
        }
        expect(64, in, 7, want);
    }
}

/* ---- subnegotiation ---- */

static void test_subnegotiation(void **state)
{
    (void)state;
    EXPECT(64, IAC SB "\x18\x00xterm-256color" IAC SE "hi\n", "L[hi]");
    EXPECT(64, "h" IAC SB "\x1f\x00\x50\x00\x18" IAC SE "i\n", "L[hi]");
    /* CR, LF and BS inside a subnegotiation are its data, not line editing. */
    EXPECT(64, "ab" IAC SB "\r\n\b\x7f\n" IAC SE "c\n", "L[abc]");
    EXPECT(64, IAC SB IAC SE "\n", "L[]");
    /* IAC IAC inside is an escaped 0xFF, so the SE after it does not end anything. */
    EXPECT(64, IAC SB "\x18" IAC IAC SE "x\n" IAC SE "ok\n", "L[ok]");
    EXPECT(64, IAC SB IAC IAC IAC IAC IAC SE "ok\n", "L[ok]");
    /* A stray SE inside is data too. */
    EXPECT(64, IAC SB SE "zz" IAC SE "ok\n", "L[ok]");
}

/* Any command other than SE or IAC ends a subnegotiation, so IP always gets through. */
static void test_subnegotiation_cut_short(void **state)
{
    (void)state;
    EXPECT(64, IAC SB "\x18junk" IAC IP "ok\n", "IP L[ok]");
    EXPECT(64, "a" IAC SB "\x18junk" IAC DO "\001b\n", "DO(1) L[ab]");
    EXPECT(64, "a" IAC SB "x" IAC SB "y" IAC SE "b\n", "L[ab]");
    EXPECT(64, "a" IAC SB "x" IAC "\361b\n", "L[ab]");
}

static void test_unterminated_subnegotiation(void **state)
{
    (void)state;
    uint8_t buf[16];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);
    assert_int_equal(telnet_parse(&p, IN("ab" IAC SB), &ev), 4);

    /* Megabytes of anything but IAC: all consumed, no event, nothing kept. */
    uint8_t chunk[4096];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i % 3 == 0 ? '\n' : i % 255);
    for (int round = 0; round < 512; round++) {
        assert_int_equal(telnet_parse(&p, chunk, sizeof chunk, &ev), sizeof chunk);
        assert_int_equal(ev.type, TELNET_EV_NONE);
    }
    assert_int_equal(p.sb_len, 1024); /* the count stops at its bound */
    assert_int_equal(p.len, 2);

    /* IAC SE still ends it, and the line around it carries on. */
    assert_int_equal(telnet_parse(&p, IN(IAC SE "c\n"), &ev), 4);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.line, "abc", 3);

    EXPECT(64, "a\n" IAC SB "\x18 never ends\r\n\n\n", "L[a]");
}

/* ---- length limit ---- */

static void test_cap_boundary(void **state)
{
    (void)state;
    EXPECT(8, "12345678\n", "L[12345678]");
    EXPECT(8, "123456789\n", "TOO_LONG");
    EXPECT(8, "123456789\r\nok\n", "TOO_LONG L[ok]");
    EXPECT(8, "12345678\r\n123456789\r\n12345678\r\n", "L[12345678] TOO_LONG L[12345678]");
    /* An IAC IAC is one byte of the line; commands and SB take none. */
    EXPECT(8, "1234567" IAC IAC "\n", "L[1234567\\xff]");
    EXPECT(8, "1234567" IAC IAC IAC IAC "\n", "TOO_LONG");
    EXPECT(8, "abcd" IAC DO "\001efgh" IAC SB "ijklmn" IAC SE "\n", "DO(1) L[abcdefgh]");
    /* Erasing before the limit is reached keeps the line. */
    EXPECT(8, "12345678\b9\n", "L[12345679]");
    EXPECT(4, "ab\xc3\xa9\n", "L[ab\\xc3\\xa9]");
    EXPECT(4, "ab\xc3\xa9\b\xc3\xa9\n", "L[ab\\xc3\\xa9]");
    EXPECT(4, "abc\xc3\xa9\n", "TOO_LONG");
    EXPECT(0, "\n", "L[]");
    EXPECT(0, "a\n\n", "TOO_LONG L[]");
    EXPECT(1, "a\nab\rb\n", "L[a] TOO_LONG L[b]");
}

static void test_too_long_once(void **state)
{
    (void)state;
    /* Once over, erasing cannot bring the line back: its start is gone. */
    EXPECT(8, "123456789\b\b\b\n", "TOO_LONG");
    /* Events inside a too-long line still arrive, and TOO_LONG comes once, at its end. */
    EXPECT(4, "abcdefgh" IAC DO "\001ijkl\r\0mn\n", "DO(1) TOO_LONG L[mn]");
    /* Erasing the whole line leaves nothing too long in it. */
    EXPECT(4, "abcdefgh" IAC EL "ok\n", "L[ok]");
    EXPECT(4, "abcdefgh" IAC IP "ok\n", "IP L[ok]");

    /* A line of 100000 bytes on a 4 KiB buffer, byte by byte: one TOO_LONG, then normal lines. */
    uint8_t buf[4096];
    struct telnet_parser p;
    struct telnet_event ev;
    telnet_parser_init(&p, buf, sizeof buf);
    for (int i = 0; i < 100000; i++) {
        uint8_t c = (uint8_t)('a' + i % 26);
        assert_int_equal(telnet_parse(&p, &c, 1, &ev), 1);
        assert_int_equal(ev.type, TELNET_EV_NONE);
    }
    assert_int_equal(telnet_parse(&p, IN("\r\n"), &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_TOO_LONG);
    /* The LF of that CR LF, then an empty line and a short one. */
    assert_int_equal(telnet_parse(&p, IN("\n\nok\n"), &ev), 2);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_int_equal(ev.len, 0);
    assert_int_equal(telnet_parse(&p, IN("ok\n"), &ev), 3);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.line, "ok", 2);
}

/* ---- bytes the session refuses ---- */

static void test_control_bytes_kept(void **state)
{
    (void)state;
    EXPECT(64, "a\x1b[31mb\tc\x01\n", "L[a\\x1b[31mb\\x09c\\x01]");
    /* NUL outside CR NUL stays, for the session to refuse. */
    EXPECT(64, "a\0b\n", "L[a\\x00b]");
    EXPECT(64, "\0\n", "L[\\x00]");
    EXPECT(64, "\0\r\0", "L[\\x00]");
    /* C1 controls and bytes that are not UTF-8 are the session's to judge too. */
    EXPECT(64, "\xc2\x85\xfe\xf5\n", "L[\\xc2\\x85\\xfe\\xf5]");
}

/* ---- everything mixed, at every split point ---- */

static void test_mixed_every_split(void **state)
{
    (void)state;
    EXPECT(12,
           "hi\r\n\xc3\xa9t\xc3\xa9\b\b" IAC DO "\001\rx" IAC SB "\030" IAC IAC "q" IAC SE
           "\x7f" IAC IAC "\r\0toolongtoolong\nz" IAC IP "\n",
           "L[hi] DO(1) L[\\xc3\\xa9] L[\\xff] TOO_LONG IP L[]");
}

/* Random streams from the bytes that matter, each cut at random places, match the whole reading. */
static void test_random_streams(void **state)
{
    (void)state;
    static const uint8_t alphabet[] =
        "ab\r\n\0\b\x7f\xc3\xa9\xf0\x9f\x80" IAC IAC IAC DO WILL SB SE IP EC EL "\361\001";
    uint8_t in[300];
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + rnd(sizeof in);
        for (size_t i = 0; i < n; i++)
            in[i] = alphabet[rnd(sizeof alphabet - 1)];
        size_t cap = rnd(3) == 0 ? rnd(4) : 1 + rnd(64);
        char *want = run(cap, in, n, NULL, 0);
        size_t cuts[8], nc = 1 + rnd(8);
        random_cuts(cuts, nc, n);
        assert_run(cap, in, n, cuts, nc, want);
        free(want);
    }
}

/* The session lends its line buffer only while a line is partly typed: check what says so. */
static void test_buffer_lent_per_line(void **state)
{
    (void)state;
    uint8_t first[16], second[16];
    struct telnet_parser p;
    telnet_parser_init(&p, NULL, sizeof first);
    assert_false(telnet_parser_holds_line(&p));

    struct telnet_event ev;
    telnet_parser_lend(&p, first);
    assert_int_equal(telnet_parse(&p, (const uint8_t *)"ab", 2, &ev), 2);
    assert_int_equal(ev.type, TELNET_EV_NONE);
    assert_true(telnet_parser_holds_line(&p)); /* "ab" waits in first */
    assert_int_equal(telnet_parse(&p, (const uint8_t *)"c\r", 2, &ev), 2);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_ptr_equal(ev.line, first);
    assert_memory_equal(ev.line, "abc", 3);
    assert_false(telnet_parser_holds_line(&p));

    /* Between lines the buffer can change hands, even between the CR and its LF. */
    telnet_parser_lend(&p, second);
    assert_int_equal(telnet_parse(&p, (const uint8_t *)"\nxy\n", 4, &ev), 4);
    assert_int_equal(ev.type, TELNET_EV_LINE);
    assert_ptr_equal(ev.line, second);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.line, "xy", 2);

    /* A line over the limit is still being skipped: the parser still needs its buffer. */
    uint8_t long_line[20];
    memset(long_line, 'z', sizeof long_line);
    assert_int_equal(telnet_parse(&p, long_line, sizeof long_line, &ev), sizeof long_line);
    assert_true(telnet_parser_holds_line(&p));
    assert_int_equal(telnet_parse(&p, (const uint8_t *)"\n", 1, &ev), 1);
    assert_int_equal(ev.type, TELNET_EV_TOO_LONG);
    assert_false(telnet_parser_holds_line(&p));
}

int main(void)
{
    const struct CMUnitTest telnet_parser[] = {
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_empty_lines),
        cmocka_unit_test(test_crlf_across_calls),
        cmocka_unit_test(test_one_event_per_call),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_backspace_ascii),
        cmocka_unit_test(test_backspace_utf8),
        cmocka_unit_test(test_backspace_broken_utf8),
        cmocka_unit_test(test_erase_line),
        cmocka_unit_test(test_iac_iac),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_split_iac_sequences),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_raw_ctrl_c),
        cmocka_unit_test(test_silent_commands),
        cmocka_unit_test(test_iac_never_in_line),
        cmocka_unit_test(test_subnegotiation),
        cmocka_unit_test(test_subnegotiation_cut_short),
        cmocka_unit_test(test_unterminated_subnegotiation),
        cmocka_unit_test(test_cap_boundary),
        cmocka_unit_test(test_too_long_once),
        cmocka_unit_test(test_control_bytes_kept),
        cmocka_unit_test(test_mixed_every_split),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_buffer_lent_per_line),
    };
    return cmocka_run_group_tests_name("telnet_parser", telnet_parser, NULL, NULL);
}
