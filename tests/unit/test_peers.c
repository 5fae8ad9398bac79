/* test_peers: network keys: an IPv4 address, the same address seen by a dual-stack listener, and
 * an IPv6 /64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "peers.h"

static uint64_t key_of(const char *text)
{
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(1234);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &v6->sin6_addr), 1);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(4321);
    }
    return peers_net_key_of(&sa);
}

static void ipv4_addresses_are_their_own_networks(void **state)
{
    (void)state;
    assert_int_not_equal(key_of("192.0.2.1"), 0);
    assert_int_not_equal(key_of("192.0.2.1"), key_of("192.0.2.2"));
    assert_int_not_equal(key_of("127.0.0.1"), key_of("127.0.0.2"));
    /* A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d: the same network. */
    assert_int_equal(key_of("::ffff:192.0.2.1"), key_of("192.0.2.1"));
    assert_int_not_equal(key_of("::ffff:192.0.2.1"), key_of("::ffff:192.0.2.2"));
}

static void ipv6_addresses_share_their_64(void **state)
{
    (void)state;
    assert_int_equal(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:2:ffff:eeee:dddd:cccc"));
    assert_int_not_equal(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:3::1"));
    /* An IPv6 /64 whose first bytes spell an IPv4 address is not that IPv4 network. */
    assert_int_not_equal(key_of("c000:0201::"), key_of("192.0.2.1"));
    assert_int_not_equal(key_of("::1"), key_of("127.0.0.1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv4_addresses_are_their_own_networks),
        cmocka_unit_test(ipv6_addresses_share_their_64),
    };
    return cmocka_run_group_tests_name("peers", tests, NULL, NULL);
}
