/* test_ws_extension: unit tests of the Sec-WebSocket-Extensions parser and the permessage-deflate
 * negotiation (RFC 6455 9.1, RFC 7692 7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "request_builder.h"
#include "ws_extension.h"

/* Negotiates over one Sec-WebSocket-Extensions header (NULL: none) and returns the agreement. */
static struct ws_deflate_agreement negotiate1(const char *value)
{
    struct http_request req;
    req_init(&req, "GET", "/echo", 1);
    req_add(&req, "Host", "example.com");
    if (value)
        req_add(&req, "Sec-WebSocket-Extensions", value);
    struct ws_deflate_agreement a;
    bool ok = ws_extension_negotiate(&req, &a);
    assert_int_equal(ok, a.on);
    return a;
}

/* The response value for an accepted offer, or "" when declined. */
static const char *response_to(const char *value)
{
    static char out[WS_EXTENSION_RESPONSE_MAX];
    struct ws_deflate_agreement a = negotiate1(value);
    if (!a.on)
        return "";
    size_t n = ws_extension_response(&a, out);
    assert_int_equal(n, strlen(out));
    assert_true(n < WS_EXTENSION_RESPONSE_MAX);
    return out;
}

#define BASE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

static void expect_declined(const char *value)
{
    struct ws_deflate_agreement a = negotiate1(value);
    if (a.on)
        fail_msg("accepted: %s", value ? value : "(no header)");
}

static void test_no_offer(void **state)
{
    (void)state;
    expect_declined(NULL);
    expect_declined("");
    expect_declined("x-webkit-deflate-frame");
    expect_declined("foo, bar; baz=1");
}

/* The plain offer, and what browsers and Node's ws send. */
static void test_simple_offers(void **state)
{
    (void)state;
    struct ws_deflate_agreement a = negotiate1("permessage-deflate");
    assert_true(a.on);
    assert_int_equal(a.server_bits, 15);
    assert_false(a.server_bits_asked);
    assert_false(a.client_bits_offered);
    assert_string_equal(response_to("permessage-deflate"), BASE);
    assert_string_equal(response_to("permessage-deflate; client_max_window_bits"),
                        BASE "; client_max_window_bits=15");
}

/* The offers of the Autobahn testsuite's case 13: client_no_context_takeover and
 * client_max_window_bits always, and each server parameter combination. */
static void test_autobahn_offers(void **state)
{
    (void)state;
    static const struct {
        const char *offer, *response;
        unsigned bits;
    } cases[] = {
        {"permessage-deflate; client_no_context_takeover; client_max_window_bits",
         BASE "; client_max_window_bits=15", 15},
        {"permessage-deflate; client_no_context_takeover; client_max_window_bits; "
         "server_no_context_takeover",
         BASE "; client_max_window_bits=15", 15},
        {"permessage-deflate; client_no_context_takeover; client_max_window_bits; "
         "server_max_window_bits=8",
         BASE "; server_max_window_bits=8; client_max_window_bits=15", 8},
        {"permessage-deflate; client_no_context_takeover; client_max_window_bits; "
         "server_max_window_bits=15",
         BASE "; server_max_window_bits=15; client_max_window_bits=15", 15},
        {"permessage-deflate; client_no_context_takeover; client_max_window_bits; "
         "server_no_context_takeover; server_max_window_bits=8",
         BASE "; server_max_window_bits=8; client_max_window_bits=15", 8},
        /* several offers: the first acceptable one wins */
        {"permessage-deflate; client_no_context_takeover; client_max_window_bits; "
         "server_no_context_takeover; server_max_window_bits=8, "
         "permessage-deflate; client_no_context_takeover; client_max_window_bits; "
         "server_no_context_takeover, "
         "permessage-deflate; client_no_context_takeover; client_max_window_bits",
         BASE "; server_max_window_bits=8; client_max_window_bits=15", 8},
        /* ... and a declined first offer gives way to the next */
        {"permessage-deflate; server_max_window_bits=7, "
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=9",
         BASE "; server_max_window_bits=9", 9},
        {"permessage-deflate; x-unknown, permessage-deflate; client_max_window_bits=10",
         BASE "; client_max_window_bits=10", 15},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = response_to(cases[i].offer);
        if (strcmp(got, cases[i].response) != 0)
            fail_msg("offer \"%s\": response \"%s\", want \"%s\"", cases[i].offer, got,
                     cases[i].response);
        assert_int_equal(negotiate1(cases[i].offer).server_bits, cases[i].bits);
    }
}

/* RFC 7692 section 7: unknown or repeated parameters and bad values decline the offer. */
static void test_declined_offers(void **state)
{
    (void)state;
    static const char *const offers[] = {
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=0",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits=9.0",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=123456789012345",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; server_no_context_takeover=true",
        "permessage-deflate; server_max_window_bits=\"1 0\"",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate x",
        "permessage-deflate;",
        "permessage-deflate; ; server_no_context_takeover",
        "permessage-deflate; =10",
        "permessage-deflate; server_max_window_bits=10 10",
        "permessage-deflate server_no_context_takeover",
        "\"permessage-deflate\"",
        "permessage-deflatex",
        "x-permessage-deflate",
        "permessage",
    };
    for (size_t i = 0; i < sizeof offers / sizeof offers[0]; i++)
        expect_declined(offers[i]);
}

/* Values may be quoted strings (RFC 6455 9.1), unescaped before they are checked. */
static void test_quoted_values(void **state)
{
    (void)state;
    struct ws_deflate_agreement a = negotiate1("permessage-deflate; server_max_window_bits=\"10\"");
    assert_true(a.on);
    assert_int_equal(a.server_bits, 10);
    a = negotiate1("permessage-deflate; server_max_window_bits=\"1\\2\"");
    assert_true(a.on);
    assert_int_equal(a.server_bits, 12);
    a = negotiate1("permessage-deflate; client_max_window_bits=\"9\"");
    assert_true(a.on);
    assert_int_equal(a.client_bits, 9);
    /* A comma or an offer inside a quoted string is part of the value, not a new element. */
    a = negotiate1(
        "foo; a=\"x, permessage-deflate\", permessage-deflate; server_max_window_bits=11");
    assert_true(a.on);
    assert_int_equal(a.server_bits, 11);
    a = negotiate1("foo; a=\"x\\\", permessage-deflate; server_max_window_bits=9\", "
                   "permessage-deflate; server_max_window_bits=13");
    assert_true(a.on);
    assert_int_equal(a.server_bits, 13);
    /* An unterminated quote swallows the rest of the header. */
    expect_declined("foo; a=\"x, permessage-deflate");
}

/* Every Sec-WebSocket-Extensions header counts, in order; names are case-insensitive. */
static void test_several_headers_and_case(void **state)
{
    (void)state;
    struct http_request req;
    struct ws_deflate_agreement a;
    req_init(&req, "GET", "/echo", 1);
    req_add(&req, "Sec-WebSocket-Extensions", "x-webkit-deflate-frame");
    req_add(&req, "Host", "example.com");
    req_add(&req, "sec-websocket-extensions", "permessage-deflate; server_max_window_bits=7");
    req_add(&req, "SEC-WEBSOCKET-EXTENSIONS", "permessage-deflate; server_max_window_bits=12");
    req_add(&req, "Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=14");
    assert_true(ws_extension_negotiate(&req, &a));
    assert_int_equal(a.server_bits, 12);

    req_init(&req, "GET", "/echo", 1);
    req_add(&req, "Sec-WebSocket-Extension", "permessage-deflate"); /* not the header */
    req_add(&req, "X-Sec-WebSocket-Extensions", "permessage-deflate");
    assert_false(ws_extension_negotiate(&req, &a));
    assert_false(a.on);

    a = negotiate1("PerMessage-Deflate; Server_Max_Window_Bits=9; CLIENT_NO_CONTEXT_TAKEOVER");
    assert_true(a.on);
    assert_int_equal(a.server_bits, 9);
    assert_true(a.server_bits_asked);
}

/* Optional white space around separators, and empty list elements, are allowed. */
static void test_white_space_and_empty_elements(void **state)
{
    (void)state;
    static const char *const offers[] = {
        "permessage-deflate ; server_max_window_bits = 10",
        "permessage-deflate;server_max_window_bits=10",
        "\tpermessage-deflate\t;\tserver_max_window_bits=10\t",
        ", ,permessage-deflate; server_max_window_bits=10,,",
        "foo, permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10 , foo;bar",
    };
    for (size_t i = 0; i < sizeof offers / sizeof offers[0]; i++) {
        struct ws_deflate_agreement a = negotiate1(offers[i]);
        if (!a.on || a.server_bits != 10)
            fail_msg("offer \"%s\": on=%d bits=%u", offers[i], a.on, (unsigned)a.server_bits);
    }
    /* A malformed element is skipped up to its comma; the next one still counts. */
    struct ws_deflate_agreement a =
        negotiate1("permessage-deflate; server_max_window_bits=10 10, permessage-deflate");
    assert_true(a.on);
    assert_false(a.server_bits_asked);
    assert_int_equal(a.server_bits, 15);
}

/* Every window size the RFC allows is accepted and echoed. */
static void test_every_window_size(void **state)
{
    (void)state;
    for (unsigned bits = 8; bits <= 15; bits++) {
        char offer[128], want[WS_EXTENSION_RESPONSE_MAX];
        snprintf(offer, sizeof offer,
                 "permessage-deflate; server_max_window_bits=%u; client_max_window_bits=%u", bits,
                 bits);
        snprintf(want, sizeof want, BASE "; server_max_window_bits=%u; client_max_window_bits=%u",
                 bits, bits);
        assert_string_equal(response_to(offer), want);
        struct ws_deflate_agreement a = negotiate1(offer);
        assert_int_equal(a.server_bits, bits);
        assert_int_equal(a.client_bits, bits);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_offer),
        cmocka_unit_test(test_simple_offers),
        cmocka_unit_test(test_autobahn_offers),
        cmocka_unit_test(test_declined_offers),
        cmocka_unit_test(test_quoted_values),
        cmocka_unit_test(test_several_headers_and_case),
        cmocka_unit_test(test_white_space_and_empty_elements),
        cmocka_unit_test(test_every_window_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
