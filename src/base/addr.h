/*
 * addr: client IP addresses and address prefixes, for the per-address limits and for trusting a
 * reverse proxy's X-Forwarded-For; host[:port] endpoints as in Host and Origin headers. Pure: no
 * I/O, no allocation.
 *
 * DESIGN: every address is kept in its 16-byte IPv6 form, an IPv4 one as ::ffff:a.b.c.d, so a
 * client counts once whether it reached a dual-stack listener or was named by a proxy in dotted
 * form, and one prefix test serves both families.
 */
#ifndef PARLEY_ADDR_H
#define PARLEY_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct addr {
    uint8_t b[16];
};

struct addr_prefix {
    struct addr a;
    uint8_t bits; /* leading bits of the 128-bit form that must match (an IPv4 /n is 96 + n) */
};

/* Fills out from an AF_INET or AF_INET6 socket address. Returns false for other families. */
bool addr_from_sockaddr(const struct sockaddr *sa, struct addr *out);

/* Parses a bare IPv4 or IPv6 address in s[0..n) (no brackets, no port). Returns false if bad. */
bool addr_parse(const char *s, size_t n, struct addr *out);

/* Parses "ADDR" or "ADDR/BITS" (BITS 0..32 for IPv4, 0..128 for IPv6). Returns false if bad. */
bool addr_prefix_parse(const char *s, struct addr_prefix *out);

/* Returns true when a lies inside prefix p. */
bool addr_in_prefix(const struct addr *a, const struct addr_prefix *p);

/* Returns true when a lies inside one of prefixes[0..n). */
bool addr_in_any(const struct addr *a, const struct addr_prefix *prefixes, size_t n);

/* A hash of the address for tables keyed by client address; never 0. */
uint64_t addr_key(const struct addr *a);

/*
 * The key of the client's network, for login throttling; never 0: the address for IPv4, the /64
 * for IPv6, since one subscriber holds a whole /64 and may pick any address in it.
 */
uint64_t addr_net_key(const struct addr *a);

/* Writes a in the usual text form ("192.0.2.1", "2001:db8::1") plus a NUL into out. */
void addr_format(const struct addr *a, char *out, size_t outsz);

/* A host and port, as in a Host header or in an Origin after "scheme://". */
struct addr_endpoint {
    const char *host; /* a name or IPv4 literal, in the parsed text; NULL for an IPv6 literal */
    size_t host_len;
    uint8_t ip6[16]; /* the IPv6 literal, compared as an address, not as text */
    long port;       /* -1 when none was given */
};

/* Parses "host[:port]" in s[0..n), host being a name (reg-name characters), an IPv4 literal or
 * "[IPv6]", port 1..65535. Returns false if bad. */
bool addr_endpoint_parse(const char *s, size_t n, struct addr_endpoint *ep);

/* Returns true when a and b name the same host (names case-insensitively) and port. */
bool addr_endpoint_equal(const struct addr_endpoint *a, const struct addr_endpoint *b);

/*
 * Finds the client in an X-Forwarded-For list value[0..n) ("client, proxy1, proxy2", each entry
 * an address, optionally "[v6]" or with a ":port"): walking from the right, the first address
 * that is not one of the trusted prefixes (the proxies'), or the leftmost one if all are. Returns
 * false (out untouched) when the list is empty or an entry it had to read is not an address:
 * nothing in such a header can be trusted.
 */
bool addr_forwarded_client(const char *value, size_t n, const struct addr_prefix *trusted,
                           size_t n_trusted, struct addr *out);

#endif
