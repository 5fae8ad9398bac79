/* test_http_parser: unit tests of the HTTP/1.x request head parser, hostile inputs included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parser.h"

#define MAX_HEAD 8192

/* Parses s[0..len) from an exactly sized heap copy, so ASan catches any read past len. */
static int parse_n(const char *s, size_t len, size_t max_head, struct http_request *req)
{
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    int rc = http_parse_request(copy, len, max_head, req);
    /* Results point into the buffer; keep them valid by parsing the original too. */
    free(copy);
    if (rc > 0)
        assert_int_equal(http_parse_request(s, len, max_head, req), rc);
    return rc;
}

static int parse(const char *s, struct http_request *req)
{
    return parse_n(s, strlen(s), MAX_HEAD, req);
}

static int parse_rc(const char *s)
{
    struct http_request req;
    return parse(s, &req);
}

static void assert_span(const char *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void test_simple_get(void **state)
{
    (void)state;
    const char *s = "GET /ws?x=1 HTTP/1.1\r\n"
                    "Host: localhost:9999\r\n"
                    "Upgrade:websocket\r\n"
                    "X-Spaces: \t padded value \t \r\n"
                    "X-Empty:\r\n"
                    "X-Blank:   \r\n"
                    "\r\n";
    struct http_request req;
    assert_int_equal(parse(s, &req), (int)strlen(s));
    assert_span(req.method, req.method_len, "GET");
    assert_span(req.target, req.target_len, "/ws?x=1");
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.num_headers, 5);
    assert_span(req.headers[0].name, req.headers[0].name_len, "Host");
    assert_span(req.headers[0].value, req.headers[0].value_len, "localhost:9999");
    assert_span(req.headers[1].value, req.headers[1].value_len, "websocket");
    assert_span(req.headers[2].value, req.headers[2].value_len, "padded value");
    assert_int_equal(req.headers[3].value_len, 0);
    assert_int_equal(req.headers[4].value_len, 0);
}

static void test_http10_and_bare_lf(void **state)
{
    (void)state;
    struct http_request req;
    const char *s = "HEAD / HTTP/1.0\nHost: a\n\n";
    assert_int_equal(parse(s, &req), (int)strlen(s));
    assert_int_equal(req.version_minor, 0);
    assert_span(req.method, req.method_len, "HEAD");
    assert_int_equal(req.num_headers, 1);
    assert_span(req.headers[0].value, req.headers[0].value_len, "a");

    const char *mixed = "GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\n";
    assert_int_equal(parse(mixed, &req), (int)strlen(mixed));
    assert_int_equal(req.num_headers, 2);

    const char *none = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(parse(none, &req), (int)strlen(none));
    assert_int_equal(req.num_headers, 0);
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    struct http_request req;
    const char *s = "\r\n\n\r\nGET / HTTP/1.1\r\n\r\n";
    assert_int_equal(parse(s, &req), (int)strlen(s));
    assert_span(req.target, req.target_len, "/");
    assert_int_equal(parse_rc("\r\n\r\n"), HTTP_NEED_MORE);
    assert_int_equal(parse_rc(""), HTTP_NEED_MORE);
    assert_int_equal(parse_rc("\r"), HTTP_NEED_MORE);
}

static void test_body_after_head(void **state)
{
    (void)state;
    const char *head = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    char buf[128];
    snprintf(buf, sizeof buf, "%shello", head);
    struct http_request req;
    assert_int_equal(parse(buf, &req), (int)strlen(head));
}

/* Every proper prefix of a valid head needs more; the whole head parses. */
static void test_every_prefix_needs_more(void **state)
{
    (void)state;
    const char *s = "\r\nGET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\nX: \t\r\n\r\n";
    size_t n = strlen(s);
    struct http_request req;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(parse_n(s, i, MAX_HEAD, &req), HTTP_NEED_MORE);
    assert_int_equal(parse_n(s, n, MAX_HEAD, &req), (int)n);
}

static void test_bad_versions(void **state)
{
    (void)state;
    static const char *bad[] = {
        "GET / HTTP/1.2\r\n\r\n",  "GET / HTTP/2.0\r\n\r\n",  "GET / HTTP/1.10\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n", "GET / http/1.1\r\n\r\n",  "GET / HTTP/1.\r\n\r\n",
        "GET / HTTP/1\r\n\r\n",    "GET / HTTP/0.9\r\n\r\n",  "GET /\r\n\r\n",
        "GET / HTTP/1.x\r\n\r\n",  "GET / HTTP/11.1\r\n\r\n", "GET / XTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse_rc(bad[i]), HTTP_BAD);
}

static void test_bad_request_lines(void **state)
{
    (void)state;
    static const char *bad[] = {
        " GET / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /  HTTP/1.1\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
        "GE(T / HTTP/1.1\r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "GET /\tx HTTP/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\rX: y\r\n\r\n",
        "GET /\r HTTP/1.1\r\n\r\n",
        "GET\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse_rc(bad[i]) != HTTP_BAD)
            fail_msg("case %zu accepted", i);
    }
    /* A NUL is a control character like any other, even inside the buffer. */
    static const char nul[] = "GET /\0 HTTP/1.1\r\n\r\n";
    struct http_request req;
    assert_int_equal(parse_n(nul, sizeof nul - 1, MAX_HEAD, &req), HTTP_BAD);
    /* Methods are tokens: odd but legal ones pass, case is kept. */
    assert_true(parse_rc("M-SEARCH * HTTP/1.1\r\n\r\n") > 0);
    assert_true(parse_rc("get / HTTP/1.1\r\n\r\n") > 0);
    /* obs-text in the target is not a control character. */
    assert_true(parse_rc("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n") > 0);
}

static void test_bad_headers(void **state)
{
    (void)state;
    static const char *bad[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",     /* white space before the colon */
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",    /* likewise */
        "GET / HTTP/1.1\r\n: a\r\n\r\n",          /* empty name */
        "GET / HTTP/1.1\r\nHost a\r\n\r\n",       /* no colon */
        "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",     /* space in the name */
        "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",     /* separator in the name */
        "GET / HTTP/1.1\r\nA: 1\r\n b\r\n\r\n",   /* obs-fold */
        "GET / HTTP/1.1\r\nA: 1\r\n\tb\r\n\r\n",  /* obs-fold with HTAB */
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",     /* white space before the first header */
        "GET / HTTP/1.1\r\nA: x\x01y\r\n\r\n",    /* control character in a value */
        "GET / HTTP/1.1\r\nA: x\x7fy\r\n\r\n",    /* DEL */
        "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n",      /* bare CR inside a value */
        "GET / HTTP/1.1\r\nA: x\x1b[31m\r\n\r\n", /* escape sequence */
        "GET / HTTP/1.1\r\n\x01: x\r\n\r\n",      /* control character in a name */
        "GET / HTTP/1.1\r\nA: 1\r\n\r\r\n\r\n",   /* CR CR LF is not an empty line */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse_rc(bad[i]) != HTTP_BAD)
            fail_msg("case %zu accepted", i);
    }
    static const char nul[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
    struct http_request req;
    assert_int_equal(parse_n(nul, sizeof nul - 1, MAX_HEAD, &req), HTTP_BAD);

    /* HTAB inside a value and obs-text are allowed. */
    assert_true(parse("GET / HTTP/1.1\r\nA: x\ty \xff\r\n\r\n", &req) > 0);
    assert_span(req.headers[0].value, req.headers[0].value_len, "x\ty \xff");
}

/* Garbage is refused at once, without waiting for a newline or max_head bytes. */
static void test_fail_fast_on_partial_garbage(void **state)
{
    (void)state;
    static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    struct http_request req;
    assert_int_equal(parse_n(tls, sizeof tls - 1, MAX_HEAD, &req), HTTP_BAD);
    assert_int_equal(parse_rc("GET /\x01"), HTTP_BAD);
    assert_int_equal(parse_rc("G{"), HTTP_BAD);
    assert_int_equal(parse_rc(" "), HTTP_BAD);
    assert_int_equal(parse_rc("GET / HTTP/1.1\r\nA: \x02"), HTTP_BAD);
    assert_int_equal(parse_rc("GET / HTTP/1.1\r\nA: b\rc"), HTTP_BAD);
    /* A CR at the very end may still be followed by its LF. */
    assert_int_equal(parse_rc("GET / HTTP/1.1\r"), HTTP_NEED_MORE);
    assert_int_equal(parse_rc("GET / HTTP/1.1\r\nA: b\r"), HTTP_NEED_MORE);
    assert_int_equal(parse_rc("GET"), HTTP_NEED_MORE);
    assert_int_equal(parse_rc("GET / HTTP/1.1\r\nA:\t"), HTTP_NEED_MORE);
}

/* Builds a request whose head is exactly `size` bytes by padding one header value. */
static char *head_of_size(size_t size, const char *eol)
{
    const char *start = "GET / HTTP/1.1";
    size_t fixed = strlen(start) + strlen(eol) + strlen("X-Pad: ") + strlen(eol) + strlen(eol);
    assert_true(size > fixed);
    size_t pad = size - fixed;
    char *s = malloc(size + 1);
    assert_non_null(s);
    int n = snprintf(s, size + 1, "%s%sX-Pad: ", start, eol);
    memset(s + n, 'a', pad);
    snprintf(s + n + pad, size + 1 - n - pad, "%s%s", eol, eol);
    assert_int_equal(strlen(s), size);
    return s;
}

static void test_max_head_boundary(void **state)
{
    (void)state;
    struct http_request req;
    const char *eols[] = {"\r\n", "\n"};
    for (size_t e = 0; e < 2; e++) {
        char *ok = head_of_size(MAX_HEAD, eols[e]);
        assert_int_equal(parse_n(ok, MAX_HEAD, MAX_HEAD, &req), MAX_HEAD);
        /* Whatever follows the head does not matter. */
        char *more = malloc(MAX_HEAD + 10);
        memcpy(more, ok, MAX_HEAD);
        memcpy(more + MAX_HEAD, "GET / HTT", 10);
        assert_int_equal(parse_n(more, MAX_HEAD + 10, MAX_HEAD, &req), MAX_HEAD);
        free(more);
        /* Cut short: MAX_HEAD bytes or fewer could still end in time. */
        assert_int_equal(parse_n(ok, MAX_HEAD - 1, MAX_HEAD, &req), HTTP_NEED_MORE);
        free(ok);

        char *big = head_of_size(MAX_HEAD + 1, eols[e]);
        assert_int_equal(parse_n(big, MAX_HEAD + 1, MAX_HEAD, &req), HTTP_TOO_LARGE);
        assert_int_equal(parse_n(big, MAX_HEAD, MAX_HEAD, &req), HTTP_NEED_MORE);
        free(big);

        char *huge = head_of_size(3 * MAX_HEAD, eols[e]);
        assert_int_equal(parse_n(huge, 3 * MAX_HEAD, MAX_HEAD, &req), HTTP_TOO_LARGE);
        assert_int_equal(parse_n(huge, MAX_HEAD + 1, MAX_HEAD, &req), HTTP_TOO_LARGE);
        free(huge);
    }
    /* A head of CRLF-only lines counts too. */
    char *blank = malloc(MAX_HEAD + 2);
    for (size_t i = 0; i < MAX_HEAD + 2; i += 2)
        memcpy(blank + i, "\r\n", 2);
    assert_int_equal(parse_n(blank, MAX_HEAD, MAX_HEAD, &req), HTTP_NEED_MORE);
    assert_int_equal(parse_n(blank, MAX_HEAD + 2, MAX_HEAD, &req), HTTP_TOO_LARGE);
    free(blank);
    /* Tiny limits work as well. */
    assert_int_equal(parse_n("GET / HTTP/1.1\n\n", 16, 16, &req), 16);
    assert_int_equal(parse_n("GET / HTTP/1.1\n\n", 16, 15, &req), HTTP_TOO_LARGE);
    assert_int_equal(parse_n("GET / HTTP/1.1\n\n", 15, 15, &req), HTTP_NEED_MORE);
    assert_int_equal(parse_n("", 0, 0, &req), HTTP_NEED_MORE);
    assert_int_equal(parse_n("G", 1, 0, &req), HTTP_TOO_LARGE);
}

static char *request_with_headers(size_t count)
{
    size_t cap = 32 + count * 16;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf(s + n, cap - n, "H%zu: %zu\r\n", i, i);
    snprintf(s + n, cap - n, "\r\n");
    return s;
}

static void test_too_many_headers(void **state)
{
    (void)state;
    struct http_request req;
    char *ok = request_with_headers(HTTP_MAX_HEADERS);
    assert_int_equal(parse(ok, &req), (int)strlen(ok));
    assert_int_equal(req.num_headers, HTTP_MAX_HEADERS);
    assert_span(req.headers[63].name, req.headers[63].name_len, "H63");
    free(ok);
    char *bad = request_with_headers(HTTP_MAX_HEADERS + 1);
    assert_int_equal(parse(bad, &req), HTTP_TOO_LARGE);
    /* Known as soon as the 65th header line is complete. */
    size_t at = strlen(bad) - 2;
    assert_int_equal(parse_n(bad, at, MAX_HEAD, &req), HTTP_TOO_LARGE);
    free(bad);
}

static void test_find_and_count(void **state)
{
    (void)state;
    struct http_request req;
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\nHOST-NAME: b\r\n\r\n";
    assert_true(parse(s, &req) > 0);
    const struct http_header *h = http_find_header(&req, "host");
    assert_non_null(h);
    assert_span(h->value, h->value_len, "a");
    h = http_find_header(&req, "X-DUP");
    assert_non_null(h);
    assert_span(h->value, h->value_len, "1");
    assert_int_equal(http_count_header(&req, "x-dup"), 2);
    assert_int_equal(http_count_header(&req, "Host"), 1);
    assert_int_equal(http_count_header(&req, "Hos"), 0);
    assert_null(http_find_header(&req, "Hos"));
    assert_null(http_find_header(&req, "Origin"));
    assert_true(http_method_is(&req, "GET"));
    assert_false(http_method_is(&req, "get"));
    assert_false(http_method_is(&req, "GE"));
    assert_false(http_method_is(&req, "GETX"));
}

static void test_has_token(void **state)
{
    (void)state;
#define HAS(v, t) http_has_token(v, strlen(v), t)
    assert_true(HAS("Upgrade", "upgrade"));
    assert_true(HAS("keep-alive, Upgrade", "upgrade"));
    assert_true(HAS("keep-alive,Upgrade", "upgrade"));
    assert_true(HAS(" upgrade \t, close", "UPGRADE"));
    assert_true(HAS(",,upgrade,,", "upgrade"));
    assert_false(HAS("upgraded", "upgrade"));
    assert_false(HAS("keep-alive", "upgrade"));
    assert_false(HAS("", "upgrade"));
    assert_false(HAS(",", "upgrade"));
    assert_false(HAS("up grade", "upgrade"));
    assert_false(HAS("xupgrade", "upgrade"));
#undef HAS
    /* Only value[0..len) is looked at. */
    assert_false(http_has_token("keep-alive, upgrade", 11, "upgrade"));
    assert_true(http_has_token("upgrade, zzz", 7, "upgrade"));
}

/* Hostile bytes in every position of a valid request never crash or read past len. */
static void test_byte_mutations(void **state)
{
    (void)state;
    const char *s = "GET /a HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n";
    size_t n = strlen(s);
    char *buf = malloc(n);
    static const unsigned char bytes[] = {0, '\t', '\n', '\r', ' ', ':', 0x7f, 0x80, 0xff, 'a'};
    struct http_request req;
    for (size_t i = 0; i < n; i++) {
        for (size_t b = 0; b < sizeof bytes; b++) {
            memcpy(buf, s, n);
            buf[i] = (char)bytes[b];
            for (size_t len = 0; len <= n; len++) {
                int rc = http_parse_request(buf, len, MAX_HEAD, &req);
                assert_true(rc == HTTP_BAD || rc == HTTP_NEED_MORE ||
                            (rc > 0 && (size_t)rc <= len));
                if (rc > 0) {
                    assert_true(req.num_headers <= HTTP_MAX_HEADERS);
                    assert_true(req.method + req.method_len <= buf + len);
                    assert_true(req.target + req.target_len <= buf + len);
                }
            }
        }
    }
    free(buf);
}

/* Reads one Accept-Encoding value from an exactly sized heap copy (ASan sees overreads). */
static struct http_codings codings_of(const char *value)
{
    size_t len = strlen(value);
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, value, len);
    struct http_codings c;
    http_codings_init(&c);
    http_codings_add(&c, copy, len);
    free(copy);
    return c;
}

static void test_codings_weights(void **state)
{
    (void)state;
    struct http_codings c = codings_of("GZIP;Q=0.25, identity ;q=1.000 , *;q=0.1, br");
    assert_int_equal(c.gzip, 250);
    assert_int_equal(c.identity, 1000);
    assert_int_equal(c.any, 100);

    c = codings_of("x-gzip;level=9;q=0.5");
    assert_int_equal(c.gzip, 500);
    assert_int_equal(c.identity, -1);
    assert_int_equal(c.any, -1);

    c = codings_of("gzip;q=0, gzip;q=0.7"); /* named twice: the higher weight holds */
    assert_int_equal(c.gzip, 700);

    c = codings_of(" , ,,gzip;q=0.");
    assert_int_equal(c.gzip, 0);

    /* Malformed elements are ignored, whatever follows them. */
    const char *bad[] = {"gzip;q=1.5", "gzip;q=1.001", "gzip;q=0.0001", "gzip;q=.5",
                         "gzip;q=",    "gzip;q=0.5x",  "gzip;q=-1",     "gzip junk",
                         "gzip;q=2",   "gzipx",        "xgzip"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = codings_of(bad[i]);
        assert_int_equal(c.gzip, -1);
    }
    c = codings_of("");
    assert_int_equal(c.gzip, -1);
    assert_int_equal(c.any, -1);
}

static bool prefers_gzip(const char *value)
{
    struct http_codings c = codings_of(value);
    return http_codings_prefer_gzip(&c);
}

static void test_codings_choice(void **state)
{
    (void)state;
    assert_true(prefers_gzip("gzip"));
    assert_true(prefers_gzip("gzip, deflate, br"));
    assert_true(prefers_gzip("*"));
    assert_true(prefers_gzip("gzip;q=0.1")); /* identity unnamed: acceptable, not preferred */
    assert_true(prefers_gzip("identity;q=0.5, gzip;q=0.5")); /* a tie goes to the smaller */
    assert_true(prefers_gzip("identity;q=0.5, *"));
    assert_false(prefers_gzip(""));
    assert_false(prefers_gzip("gzip;q=0"));
    assert_false(prefers_gzip("identity, *;q=0"));
    assert_false(prefers_gzip("*;q=0"));
    assert_false(prefers_gzip("gzip;q=0.5, identity"));
    assert_false(prefers_gzip("gzip;q=0.5, *"));
    assert_false(prefers_gzip("br, deflate"));

    /* Two header lines are one list. */
    struct http_codings c;
    http_codings_init(&c);
    http_codings_add(&c, "identity", 8);
    http_codings_add(&c, "*;q=0.3", 7);
    assert_false(http_codings_prefer_gzip(&c));
    http_codings_add(&c, "gzip", 4);
    assert_true(http_codings_prefer_gzip(&c));
}

int main(void)
{
    const struct CMUnitTest http_parser[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_http10_and_bare_lf),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_body_after_head),
        cmocka_unit_test(test_every_prefix_needs_more),
        cmocka_unit_test(test_bad_versions),
        cmocka_unit_test(test_bad_request_lines),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_fail_fast_on_partial_garbage),
        cmocka_unit_test(test_max_head_boundary),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_find_and_count),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_codings_weights),
        cmocka_unit_test(test_codings_choice),
        cmocka_unit_test(test_byte_mutations),
    };
    return cmocka_run_group_tests(http_parser, NULL, NULL);
}
