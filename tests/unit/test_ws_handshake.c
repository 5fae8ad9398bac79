/* test_ws_handshake: unit tests of the upgrade checks, the accept key and the Origin policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "request_builder.h"
#include "ws_handshake.h"

static void upgrade_request(struct http_request *req)
{
    req_init(req, "GET", "/ws", 1);
    req_add(req, "Host", "server.example.com");
    req_add(req, "Upgrade", "websocket");
    req_add(req, "Connection", "Upgrade");
    req_add(req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    req_add(req, "Sec-WebSocket-Version", "13");
}

/* Replaces the value of the first header called name (which must exist). */
static void req_set(struct http_request *req, const char *name, const char *value)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        if (strcmp(req->headers[i].name, name) == 0) {
            req->headers[i].value = value;
            req->headers[i].value_len = strlen(value);
            return;
        }
    }
    fail_msg("no header %s", name);
}

static void test_accept_key_rfc_example(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    memset(out, 'X', sizeof out);
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    ws_accept_key(key, strlen(key), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(out), WS_ACCEPT_LEN);
}

/* The start-up self check agrees with the RFC example the test above checks by hand. */
static void test_self_check(void **state)
{
    (void)state;
    assert_true(ws_handshake_self_check());
}

static void test_accept_key_other_lengths(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    char key[1000];
    memset(key, 'x', sizeof key);
    /* Expected values computed independently with Python's hashlib and base64. */
    ws_accept_key(key, 0, out);
    assert_string_equal(out, "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
    ws_accept_key(key, 128, out);
    assert_string_equal(out, "d5DxsU9is+/O9m7nTbwV0cK0jLc=");
    ws_accept_key(key, 129, out);
    assert_string_equal(out, "AWxa10On0RzTakadOhaOiftnrOM=");
    ws_accept_key(key, 1000, out);
    assert_string_equal(out, "4HJC4L551QMnEp8N9epJkCtSKYs=");
}

static void test_valid_upgrade(void **state)
{
    (void)state;
    struct http_request req;
    char accept[WS_ACCEPT_LEN + 1];
    upgrade_request(&req);
    assert_true(ws_handshake_check(&req, accept));
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    /* Browsers' variations: token lists, any case, headers repeated. */
    req_set(&req, "Connection", "keep-alive, Upgrade");
    req_set(&req, "Upgrade", "WebSocket");
    assert_true(ws_handshake_check(&req, accept));
    req_set(&req, "Connection", "keep-alive");
    req_add(&req, "connection", "upgrade");
    assert_true(ws_handshake_check(&req, accept));
    req_set(&req, "Upgrade", "h2c, websocket");
    assert_true(ws_handshake_check(&req, accept));
}

static void test_bad_upgrades(void **state)
{
    (void)state;
    struct http_request req;
    char accept[WS_ACCEPT_LEN + 1];

    upgrade_request(&req);
    req.method = "POST";
    req.method_len = 4;
    assert_false(ws_handshake_check(&req, accept));
    upgrade_request(&req);
    req.method = "get";
    assert_false(ws_handshake_check(&req, accept));
    upgrade_request(&req);
    req.version_minor = 0;
    assert_false(ws_handshake_check(&req, accept));

    static const struct {
        const char *name, *value;
    } bad[] = {
        {"Upgrade", "h2c"},
        {"Upgrade", "websockets"},
        {"Upgrade", ""},
        {"Connection", "keep-alive"},
        {"Connection", "close"},
        {"Sec-WebSocket-Version", "8"},
        {"Sec-WebSocket-Version", "13, 8"},
        {"Sec-WebSocket-Version", "130"},
        {"Sec-WebSocket-Version", ""},
        {"Sec-WebSocket-Key", ""},
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"},       /* no padding */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ="},      /* 23 characters */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==="},    /* 25 characters */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ=A="},     /* '=' inside */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ!=="},     /* not base64 */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBs ZSBub25jZ=="},     /* space inside */
        {"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA="},     /* 17 bytes */
        {"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"},         /* 15 bytes */
        {"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, /* 20 bytes */
        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        upgrade_request(&req);
        req_set(&req, bad[i].name, bad[i].value);
        if (ws_handshake_check(&req, accept))
            fail_msg("accepted %s: %s", bad[i].name, bad[i].value);
    }

    /* Missing headers. */
    static const char *names[] = {"Upgrade", "Connection", "Sec-WebSocket-Key",
                                  "Sec-WebSocket-Version"};
    for (size_t i = 0; i < 4; i++) {
        upgrade_request(&req);
        req_set(&req, names[i], "");
        req.headers[1 + i].name = "X-Removed";
        req.headers[1 + i].name_len = 9;
        assert_false(ws_handshake_check(&req, accept));
    }
    /* Two keys, even equal ones, and two versions. */
    upgrade_request(&req);
    req_add(&req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    assert_false(ws_handshake_check(&req, accept));
    upgrade_request(&req);
    req_add(&req, "sec-websocket-version", "13");
    assert_false(ws_handshake_check(&req, accept));
}

static bool origin_ok(const char *host, const char *origin, const char *const *allowed,
                      size_t n_allowed)
{
    struct http_request req;
    req_init(&req, "GET", "/ws", 1);
    if (host != NULL)
        req_add(&req, "Host", host);
    if (origin != NULL)
        req_add(&req, "Origin", origin);
    return ws_origin_allowed(&req, allowed, n_allowed);
}

#define SAME(host, origin) origin_ok(host, origin, NULL, 0)

static void test_origin_same_host(void **state)
{
    (void)state;
    assert_true(SAME("localhost:9999", NULL)); /* no Origin: not a browser */
    assert_true(SAME(NULL, NULL));
    assert_true(SAME("localhost:9999", "http://localhost:9999"));
    assert_true(SAME("localhost:9999", "https://localhost:9999")); /* any scheme */
    assert_true(SAME("localhost:9999", "ws://localhost:9999"));
    assert_true(SAME("localhost:9999", "HTTP://LocalHost:9999")); /* case-insensitive */
    assert_true(SAME("LOCALHOST:9999", "http://localhost:9999"));
    assert_true(SAME("127.0.0.1:9999", "http://127.0.0.1:9999"));
    assert_true(SAME("localhost:9999", "http://localhost:9999/")); /* one trailing slash */
    assert_false(SAME("localhost:9999", "http://localhost:9998"));
    assert_false(SAME("localhost:9999", "http://localhost"));
    assert_false(SAME("localhost:9999", "http://evil.example:9999"));
    assert_false(SAME("localhost:9999", "http://localhost.evil.example:9999"));
    assert_false(SAME("localhost:9999", "http://127.0.0.1:9999")); /* names are not resolved */
    assert_false(SAME(NULL, "http://localhost:9999"));             /* nothing to compare with */
    assert_false(SAME("", "http://localhost:9999"));
}

static void test_origin_default_ports(void **state)
{
    (void)state;
    assert_true(SAME("example.com", "http://example.com"));
    assert_true(SAME("example.com", "ws://example.com"));
    assert_true(SAME("example.com", "http://example.com:80"));
    assert_true(SAME("example.com:80", "http://example.com"));
    assert_true(SAME("example.com:443", "https://example.com"));
    assert_true(SAME("example.com:443", "wss://example.com"));
    assert_true(SAME("example.com:443", "http://example.com:443"));
    /* A Host without a port means 80, so https's default 443 differs. */
    assert_false(SAME("example.com", "https://example.com"));
    assert_false(SAME("example.com:443", "http://example.com"));
    assert_false(SAME("example.com:8080", "http://example.com"));
    /* A scheme without a known default port needs an explicit one. */
    assert_false(SAME("example.com", "chrome-extension://example.com"));
    assert_true(SAME("example.com:8080", "foo+bar.v1://example.com:8080"));
}

/* On a TLS connection a Host without a port is port 443. */
static void test_origin_tls_host_port(void **state)
{
    (void)state;
    struct http_request req;
    req_init(&req, "GET", "/ws", 1);
    req_add(&req, "Host", "example.com");
    req_add(&req, "Origin", "https://example.com");
    assert_true(ws_origin_allowed_on(&req, NULL, 0, 443));
    assert_false(ws_origin_allowed_on(&req, NULL, 0, 80));
    req_init(&req, "GET", "/ws", 1);
    req_add(&req, "Host", "example.com");
    req_add(&req, "Origin", "http://example.com");
    assert_false(ws_origin_allowed_on(&req, NULL, 0, 443));
    req_init(&req, "GET", "/ws", 1);
    req_add(&req, "Host", "example.com:8443");
    req_add(&req, "Origin", "https://example.com:8443");
    assert_true(ws_origin_allowed_on(&req, NULL, 0, 443));
}

static void test_origin_refused_forms(void **state)
{
    (void)state;
    static const char *const star[] = {"*"};
    static const char *bad[] = {
        "null",
        "NULL",
        "",
        "localhost:9999",
        "//localhost:9999",
        "http://",
        "http:///",
        "http://:9999",
        "http//localhost:9999",
        "http:/localhost:9999",
        "1http://localhost:9999",
        "http://localhost:",
        "http://localhost:0",
        "http://localhost:65536",
        "http://localhost:999999",
        "http://localhost:99x9",
        "http://localhost:-1",
        "http://localhost:9999/path",
        "http://localhost:9999//",
        "http://localhost:9999?x",
        "http://localhost:9999#x",
        "http://user@localhost:9999",
        "http://local host:9999",
        "http://localhost :9999",
        "http://[::1",
        "http://[]:9999",
        "http://[::1]x",
        "http://[not-ipv6]:9999",
        "http://[::1%eth0]:9999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (SAME("localhost:9999", bad[i]))
            fail_msg("Origin \"%s\" allowed", bad[i]);
        if (origin_ok("localhost:9999", bad[i], star, 1))
            fail_msg("Origin \"%s\" allowed by *", bad[i]);
    }
    /* Two Origin headers are ambiguous: refused even when each would pass. */
    struct http_request req;
    req_init(&req, "GET", "/ws", 1);
    req_add(&req, "Host", "localhost:9999");
    req_add(&req, "Origin", "http://localhost:9999");
    req_add(&req, "origin", "http://localhost:9999");
    assert_false(ws_origin_allowed(&req, star, 1));
    /* Two Host headers give nothing to compare with. */
    req_init(&req, "GET", "/ws", 1);
    req_add(&req, "Host", "localhost:9999");
    req_add(&req, "Host", "localhost:9999");
    req_add(&req, "Origin", "http://localhost:9999");
    assert_false(ws_origin_allowed(&req, NULL, 0));
}

static void test_origin_allowed_list(void **state)
{
    (void)state;
    static const char *const list[] = {"https://chat.example.org", "http://LOCALHOST:3000",
                                       "not an origin", "http://[::1]:8080"};
    const size_t n = sizeof list / sizeof list[0];
    const char *host = "parley.internal:9999";
    assert_true(origin_ok(host, "https://chat.example.org", list, n));
    assert_true(origin_ok(host, "https://chat.example.org:443", list, n));
    assert_true(origin_ok(host, "HTTPS://Chat.Example.Org", list, n));
    assert_true(origin_ok(host, "http://localhost:3000", list, n));
    assert_true(origin_ok(host, "http://[0:0::1]:8080", list, n));
    assert_false(origin_ok(host, "http://chat.example.org", list, n)); /* scheme differs */
    assert_false(origin_ok(host, "https://chat.example.org:8443", list, n));
    assert_false(origin_ok(host, "http://localhost:3001", list, n));
    assert_false(origin_ok(host, "ws://localhost:3000", list, n));
    assert_false(origin_ok(host, "not an origin", list, n));
    assert_false(origin_ok(host, "null", list, n));
    /* The Host rule still applies next to a list. */
    assert_true(origin_ok(host, "http://parley.internal:9999", list, n));

    static const char *const star[] = {"https://x.example", "*"};
    assert_true(origin_ok(host, "https://anything.example", star, 2));
    assert_true(origin_ok(NULL, "http://10.0.0.1:1234", star, 2));
    assert_false(origin_ok(host, "null", star, 2));
    /* An empty list admits only same-host Origins. */
    assert_false(origin_ok(host, "https://chat.example.org", list, 0));
}

static void test_origin_ipv6(void **state)
{
    (void)state;
    assert_true(SAME("[::1]:9999", "http://[::1]:9999"));
    assert_true(SAME("[::1]", "http://[::1]"));
    assert_true(SAME("[::1]", "http://[::1]:80"));
    assert_true(SAME("[::1]:443", "https://[::1]"));
    assert_true(SAME("[0:0:0:0:0:0:0:1]:9999", "http://[::1]:9999")); /* compared as addresses */
    assert_true(SAME("[2001:DB8::1]:9999", "http://[2001:db8::1]:9999"));
    assert_true(SAME("[::ffff:127.0.0.1]:9999", "http://[::ffff:7f00:1]:9999"));
    assert_false(SAME("[::1]:9999", "http://[::2]:9999"));
    assert_false(SAME("[::1]:9999", "http://[::1]:9998"));
    assert_false(SAME("[::1]:9999", "http://localhost:9999"));
    assert_false(SAME("[::1]:9999", "http://127.0.0.1:9999"));
    assert_false(SAME("::1:9999", "http://[::1]:9999")); /* unbracketed Host: unparsable */
    assert_false(SAME("[::1]:9999", "http://::1:9999"));
}

/* ws_host_allowed for a request with the given Host header values (NULL-terminated). */
static bool host_ok(const char *const *host_values, const char *const *hosts, size_t n,
                    long default_port)
{
    struct http_request req;
    req_init(&req, "GET", "/ws", 1);
    for (size_t i = 0; host_values[i]; i++)
        req_add(&req, "Host", host_values[i]);
    return ws_host_allowed(&req, hosts, n, default_port);
}

#define HOST_OK(value, list, defport)                                                              \
    host_ok((const char *const[]){(value), NULL}, (list), sizeof(list) / sizeof *(list), (defport))

static void test_public_hosts(void **state)
{
    (void)state;
    static const char *const names[] = {"chat.example.org", "10.0.0.5:8443", "[2001:db8::7]"};
    /* A name without a port matches on every port. */
    assert_true(HOST_OK("chat.example.org", names, 80));
    assert_true(HOST_OK("CHAT.Example.ORG:9999", names, 80));
    assert_false(HOST_OK("evil.example.com", names, 80));
    assert_false(HOST_OK("chat.example.org.evil.com", names, 80));
    assert_false(HOST_OK("example.org", names, 80));
    /* A port, when given, must match; a Host without one is the scheme's default. */
    assert_true(HOST_OK("10.0.0.5:8443", names, 80));
    assert_false(HOST_OK("10.0.0.5:9999", names, 80));
    assert_false(HOST_OK("10.0.0.5", names, 80));
    static const char *const tls[] = {"chat.example.org:443"};
    assert_true(HOST_OK("chat.example.org", tls, 443));
    assert_false(HOST_OK("chat.example.org", tls, 80));
    /* IPv6 literals as addresses. */
    assert_true(HOST_OK("[2001:DB8:0::7]:9999", names, 80));
    assert_false(HOST_OK("[2001:db8::8]", names, 80));
    /* No Host, two Hosts, or one that does not parse: refused. */
    assert_false(host_ok((const char *const[]){NULL}, names, 3, 80));
    assert_false(
        host_ok((const char *const[]){"chat.example.org", "chat.example.org", NULL}, names, 3, 80));
    assert_false(HOST_OK("chat.example.org:x", names, 80));
    assert_false(HOST_OK("", names, 80));
    /* Without --public-host, everything passes. */
    assert_true(host_ok((const char *const[]){"anything", NULL}, names, 0, 80));
}

int main(void)
{
    const struct CMUnitTest ws_handshake[] = {
        cmocka_unit_test(test_accept_key_rfc_example),
        cmocka_unit_test(test_self_check),
        cmocka_unit_test(test_accept_key_other_lengths),
        cmocka_unit_test(test_valid_upgrade),
        cmocka_unit_test(test_bad_upgrades),
        cmocka_unit_test(test_origin_same_host),
        cmocka_unit_test(test_origin_default_ports),
        cmocka_unit_test(test_origin_tls_host_port),
        cmocka_unit_test(test_origin_refused_forms),
        cmocka_unit_test(test_origin_allowed_list),
        cmocka_unit_test(test_origin_ipv6),
        cmocka_unit_test(test_public_hosts),
    };
    return cmocka_run_group_tests(ws_handshake, NULL, NULL);
}
