/* Unit tests for addr: parsing, prefixes, keys and X-Forwarded-For. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <string.h>

#include "addr.h"

static struct addr addr_of(const char *s)
{
    struct addr a;
    assert_true(addr_parse(s, strlen(s), &a));
    return a;
}

static struct addr_prefix prefix_of(const char *s)
{
    struct addr_prefix p;
    assert_true(addr_prefix_parse(s, &p));
    return p;
}

static void test_parse_forms(void **state)
{
    (void)state;
    struct addr a;
    char text[64];
    static const char *const good[] = {"192.0.2.1", "::1", "2001:db8::7", "0.0.0.0"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        assert_true(addr_parse(good[i], strlen(good[i]), &a));
        addr_format(&a, text, sizeof text);
        assert_string_equal(text, good[i]);
    }
    /* An IPv4-mapped IPv6 address is the IPv4 address. */
    assert_true(addr_parse("::ffff:10.0.0.1", 15, &a));
    addr_format(&a, text, sizeof text);
    assert_string_equal(text, "10.0.0.1");
    struct addr b = addr_of("10.0.0.1");
    assert_memory_equal(a.b, b.b, 16);
    static const char *const bad[] = {"",     "1.2.3",        "1.2.3.4.5",  "256.0.0.1", "[::1]",
                                      "::1:", "host.example", "1.2.3.4:80", " 1.2.3.4"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(addr_parse(bad[i], strlen(bad[i]), &a));
}

static void test_sockaddr(void **state)
{
    (void)state;
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    v4.sin_addr.s_addr = htonl(0x7f000002);
    struct addr a;
    assert_true(addr_from_sockaddr((struct sockaddr *)&v4, &a));
    struct addr want = addr_of("127.0.0.2");
    assert_memory_equal(a.b, want.b, 16);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    v6.sin6_addr.s6_addr[15] = 1;
    assert_true(addr_from_sockaddr((struct sockaddr *)&v6, &a));
    want = addr_of("::1");
    assert_memory_equal(a.b, want.b, 16);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_false(addr_from_sockaddr(&un, &a));
}

static void test_prefixes(void **state)
{
    (void)state;
    struct addr_prefix p = prefix_of("10.0.0.0/8");
    struct addr in = addr_of("10.200.3.4"), out = addr_of("11.0.0.1");
    assert_true(addr_in_prefix(&in, &p));
    assert_false(addr_in_prefix(&out, &p));
    p = prefix_of("192.0.2.1"); /* a bare address is /32 */
    struct addr same = addr_of("192.0.2.1"), next = addr_of("192.0.2.2");
    assert_true(addr_in_prefix(&same, &p));
    assert_false(addr_in_prefix(&next, &p));
    p = prefix_of("172.16.0.0/12");
    struct addr edge_in = addr_of("172.31.255.255"), edge_out = addr_of("172.32.0.0");
    assert_true(addr_in_prefix(&edge_in, &p));
    assert_false(addr_in_prefix(&edge_out, &p));
    p = prefix_of("fd00::/8");
    struct addr v6_in = addr_of("fd12::1"), v6_out = addr_of("fe80::1");
    assert_true(addr_in_prefix(&v6_in, &p));
    assert_false(addr_in_prefix(&v6_out, &p));
    /* 0.0.0.0/0 is every IPv4 address, and no IPv6 one; ::/0 is everything. */
    p = prefix_of("0.0.0.0/0");
    assert_true(addr_in_prefix(&in, &p));
    assert_false(addr_in_prefix(&v6_in, &p));
    p = prefix_of("::/0");
    assert_true(addr_in_prefix(&in, &p));
    assert_true(addr_in_prefix(&v6_in, &p));
    struct addr_prefix q;
    static const char *const bad[] = {"10.0.0.0/33", "::/129", "10.0.0.0/",    "10.0.0.0/a",
                                      "10.0.0/8",    "x/8",    "10.0.0.0/8/8", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(addr_prefix_parse(bad[i], &q));
}

static void test_keys(void **state)
{
    (void)state;
    struct addr a = addr_of("192.0.2.1"), b = addr_of("192.0.2.2"), c = addr_of("::ffff:192.0.2.1");
    assert_int_not_equal(addr_key(&a), 0);
    assert_int_not_equal(addr_key(&a), addr_key(&b));
    assert_int_equal(addr_key(&a), addr_key(&c));
}

/* The client addr_forwarded_client finds in value, as text, or "-" when it finds none. */
static const char *client(const char *value, const char *const *trusted, size_t n_trusted)
{
    static char text[64];
    struct addr_prefix t[8];
    for (size_t i = 0; i < n_trusted; i++)
        t[i] = prefix_of(trusted[i]);
    struct addr a;
    if (!addr_forwarded_client(value, strlen(value), t, n_trusted, &a))
        return "-";
    addr_format(&a, text, sizeof text);
    return text;
}

static void test_forwarded_for(void **state)
{
    (void)state;
    static const char *const proxies[] = {"10.0.0.0/8", "fd00::/8"};
    assert_string_equal(client("203.0.113.9", proxies, 2), "203.0.113.9");
    /* From the right, the first address that is not a trusted proxy. */
    assert_string_equal(client("198.51.100.1, 203.0.113.9, 10.0.0.2", proxies, 2), "203.0.113.9");
    /* A client cannot push itself out by prepending a forged address. */
    assert_string_equal(client("1.1.1.1, 203.0.113.9", proxies, 2), "203.0.113.9");
    /* Every hop trusted: the leftmost. */
    assert_string_equal(client("10.1.1.1,10.0.0.2", proxies, 2), "10.1.1.1");
    /* Ports and brackets as some proxies write them; spaces and empty entries. */
    assert_string_equal(client("203.0.113.9:5123", proxies, 2), "203.0.113.9");
    assert_string_equal(client("[2001:db8::9]:443, fd00::1", proxies, 2), "2001:db8::9");
    assert_string_equal(client("2001:db8::9", proxies, 2), "2001:db8::9");
    assert_string_equal(client(" , 203.0.113.9 ,, ", proxies, 2), "203.0.113.9");
    /* Nothing usable: an empty list, or a junk entry where the walk had to read. */
    assert_string_equal(client("", proxies, 2), "-");
    assert_string_equal(client(" , ", proxies, 2), "-");
    assert_string_equal(client("unknown, 10.0.0.2", proxies, 2), "-");
    assert_string_equal(client("[2001:db8::9", proxies, 2), "-");
    /* Junk to the left of the client is never read. */
    assert_string_equal(client("junk, 203.0.113.9", proxies, 2), "203.0.113.9");
}

static bool endpoint_ok(const char *s)
{
    struct addr_endpoint ep;
    return addr_endpoint_parse(s, strlen(s), &ep);
}

static void test_endpoints(void **state)
{
    (void)state;
    assert_true(endpoint_ok("chat.example.org"));
    assert_true(endpoint_ok("chat.example.org:8443"));
    assert_true(endpoint_ok("[::1]:9999"));
    assert_true(endpoint_ok("127.0.0.1"));
    assert_false(endpoint_ok(""));
    assert_false(endpoint_ok("chat.example.org:"));
    assert_false(endpoint_ok("chat.example.org:70000"));
    assert_false(endpoint_ok("chat.example.org:0"));
    assert_false(endpoint_ok("http://chat.example.org"));
    assert_false(endpoint_ok("a b"));
    assert_false(endpoint_ok("[::1"));
    struct addr_endpoint a, b;
    assert_true(addr_endpoint_parse("Chat.Example.org:80", 19, &a));
    assert_true(addr_endpoint_parse("chat.example.ORG:80", 19, &b));
    assert_true(addr_endpoint_equal(&a, &b));
    assert_true(addr_endpoint_parse("[0::1]:80", 9, &a));
    assert_true(addr_endpoint_parse("[::1]:80", 8, &b));
    assert_true(addr_endpoint_equal(&a, &b));
    assert_true(addr_endpoint_parse("[::1]:81", 8, &b));
    assert_false(addr_endpoint_equal(&a, &b));
}

/* Network keys: an IPv4 address, the same address as a dual-stack listener sees it, an IPv6 /64. */
static void test_net_keys(void **state)
{
    (void)state;
    struct addr a = addr_of("192.0.2.1"), b = addr_of("192.0.2.2"),
                mapped = addr_of("::ffff:192.0.2.1");
    assert_int_not_equal(addr_net_key(&a), 0);
    assert_int_not_equal(addr_net_key(&a), addr_net_key(&b));
    assert_int_equal(addr_net_key(&a), addr_net_key(&mapped));
    struct addr l1 = addr_of("127.0.0.1"), l2 = addr_of("127.0.0.2");
    assert_int_not_equal(addr_net_key(&l1), addr_net_key(&l2));
    struct addr s1 = addr_of("2001:db8:1:2::1"), s2 = addr_of("2001:db8:1:2:ffff:eeee:dddd:cccc"),
                other = addr_of("2001:db8:1:3::1");
    assert_int_equal(addr_net_key(&s1), addr_net_key(&s2));
    assert_int_not_equal(addr_net_key(&s1), addr_net_key(&other));
    /* An IPv6 /64 whose first bytes spell an IPv4 address is not that IPv4 network. */
    struct addr spelled = addr_of("c000:0201::"), one6 = addr_of("::1");
    assert_int_not_equal(addr_net_key(&spelled), addr_net_key(&a));
    assert_int_not_equal(addr_net_key(&one6), addr_net_key(&l1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_forms),   cmocka_unit_test(test_sockaddr),
        cmocka_unit_test(test_prefixes),      cmocka_unit_test(test_keys),
        cmocka_unit_test(test_forwarded_for), cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_net_keys),
    };
    return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
