/* addr: IP addresses in one 16-byte form, prefixes, and X-Forwarded-For. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4(const struct addr *a)
{
    return memcmp(a->b, v4_mapped, sizeof v4_mapped) == 0;
}

static void set_v4(struct addr *out, const void *four)
{
    memcpy(out->b, v4_mapped, sizeof v4_mapped);
    memcpy(out->b + 12, four, 4);
}

bool addr_from_sockaddr(const struct sockaddr *sa, struct addr *out)
{
    if (sa->sa_family == AF_INET) {
        set_v4(out, &((const struct sockaddr_in *)sa)->sin_addr);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
        return true;
    }
    return false;
}

bool addr_parse(const char *s, size_t n, struct addr *out)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof text)
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    uint8_t four[4];
    if (inet_pton(AF_INET, text, four) == 1) {
        set_v4(out, four);
        return true;
    }
    return inet_pton(AF_INET6, text, out->b) == 1;
}

bool addr_prefix_parse(const char *s, struct addr_prefix *out)
{
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (!addr_parse(s, n, &out->a))
        return false;
    unsigned max = is_v4(&out->a) && memchr(s, ':', n) == NULL ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return false;
        bits = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return false;
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max)
            return false;
    }
    out->bits = (uint8_t)(max == 32 ? 96 + bits : bits);
    return true;
}

bool addr_in_prefix(const struct addr *a, const struct addr_prefix *p)
{
    unsigned whole = p->bits / 8, rest = p->bits % 8;
    if (memcmp(a->b, p->a.b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a->b[whole] & mask) == (p->a.b[whole] & mask);
}

bool addr_in_any(const struct addr *a, const struct addr_prefix *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (addr_in_prefix(a, &prefixes[i]))
            return true;
    return false;
}

uint64_t addr_key(const struct addr *a)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof a->b; i++)
        h = (h ^ a->b[i]) * 1099511628211ull;
    return h ? h : 1;
}

uint64_t addr_net_key(const struct addr *a)
{
    /* The family goes first, so an IPv6 /64 whose bytes spell an IPv4 address stays apart. */
    bool v4 = is_v4(a);
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    h = (h ^ (v4 ? 4u : 6u)) * 1099511628211ull;
    const uint8_t *p = v4 ? a->b + 12 : a->b;
    for (size_t i = 0; i < (v4 ? 4u : 8u); i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ? h : 1;
}

void addr_format(const struct addr *a, char *out, size_t outsz)
{
    if (outsz == 0)
        return;
    if (!inet_ntop(is_v4(a) ? AF_INET : AF_INET6, is_v4(a) ? a->b + 12 : a->b, out,
                   (socklen_t)outsz))
        out[0] = '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses one X-Forwarded-For entry: "addr", "[v6]", "[v6]:port" or "v4:port". */
static bool parse_entry(const char *s, size_t n, struct addr *out)
{
    while (n > 0 && is_space(*s))
        s++, n--;
    while (n > 0 && is_space(s[n - 1]))
        n--;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        size_t after = n - (size_t)(close - s) - 1;
        if (after > 0 && close[1] != ':')
            return false;
        return addr_parse(s + 1, (size_t)(close - s) - 1, out);
    }
    const char *colon = memchr(s, ':', n);
    if (colon && memchr(colon + 1, ':', n - (size_t)(colon - s) - 1) == NULL)
        n = (size_t)(colon - s); /* exactly one colon: an IPv4 address with a port */
    return addr_parse(s, n, out);
}

bool addr_forwarded_client(const char *value, size_t n, const struct addr_prefix *trusted,
                           size_t n_trusted, struct addr *out)
{
    size_t end = n;
    bool any = false;
    struct addr last;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && value[start - 1] != ',')
            start--;
        struct addr a;
        bool empty = true;
        for (size_t i = start; i < end; i++)
            if (!is_space(value[i]))
                empty = false;
        if (!empty) {
            if (!parse_entry(value + start, end - start, &a))
                return false;
            if (!addr_in_any(&a, trusted, n_trusted)) {
                *out = a;
                return true;
            }
            last = a;
            any = true;
        }
        end = start > 0 ? start - 1 : 0;
    }
    if (any)
        *out = last;
    return any;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_name_char(char c)
{
    /* reg-name's unreserved characters and percent-encoding; IPv4 literals fit too. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '%';
}

bool addr_endpoint_parse(const char *s, size_t n, struct addr_endpoint *ep)
{
    size_t i = 0;
    memset(ep, 0, sizeof *ep);
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return false;
        size_t alen = (size_t)(close - s) - 1;
        char text[INET6_ADDRSTRLEN];
        if (alen == 0 || alen >= sizeof text)
            return false;
        memcpy(text, s + 1, alen);
        text[alen] = '\0';
        if (inet_pton(AF_INET6, text, ep->ip6) != 1)
            return false;
        ep->host = NULL;
        i = alen + 2;
    } else {
        while (i < n && is_name_char(s[i]))
            i++;
        if (i == 0)
            return false;
        ep->host = s;
        ep->host_len = i;
    }
    ep->port = -1;
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    i++;
    size_t digits = n - i;
    if (digits == 0 || digits > 5)
        return false;
    long port = 0;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        port = port * 10 + (s[i] - '0');
    }
    if (port == 0 || port > 65535)
        return false;
    ep->port = port;
    return true;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool addr_endpoint_equal(const struct addr_endpoint *a, const struct addr_endpoint *b)
{
    if (a->port != b->port || (a->host == NULL) != (b->host == NULL))
        return false;
    if (a->host == NULL)
        return memcmp(a->ip6, b->ip6, sizeof a->ip6) == 0;
    if (a->host_len != b->host_len)
        return false;
    for (size_t i = 0; i < a->host_len; i++)
        if (lower(a->host[i]) != lower(b->host[i]))
            return false;
    return true;
}
