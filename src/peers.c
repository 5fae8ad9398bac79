/* peers: keys of remote addresses, and a mutex-guarded count of connections per address. */
#include "peers.h"

#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include "map.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct map counts; /* key -> count, stored in the value pointer */

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t peers_key(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
        return 0;
    const uint8_t *p;
    size_t n;
    if (sa.ss_family == AF_INET6) {
        p = ((const struct sockaddr_in6 *)&sa)->sin6_addr.s6_addr;
        n = 16;
    } else {
        p = (const uint8_t *)&((const struct sockaddr_in *)&sa)->sin_addr;
        n = 4;
    }
    uint64_t h = fnv1a(14695981039346656037ull, p, n); /* the address bytes, not the port */
    return h ? h : 1;
}

bool peers_acquire(uint64_t key, uint32_t limit)
{
    pthread_mutex_lock(&lock);
    uintptr_t n = (uintptr_t)map_get_u64(&counts, key);
    bool ok = n < limit;
    if (ok)
        map_put_u64(&counts, key, (void *)(n + 1));
    pthread_mutex_unlock(&lock);
    return ok;
}

void peers_release(uint64_t key)
{
    pthread_mutex_lock(&lock);
    uintptr_t n = (uintptr_t)map_get_u64(&counts, key);
    if (n <= 1)
        map_del_u64(&counts, key);
    else
        map_put_u64(&counts, key, (void *)(n - 1));
    pthread_mutex_unlock(&lock);
}

uint64_t peers_net_key_of(const struct sockaddr_storage *sa)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t family;
    const uint8_t *p;
    size_t n;
    if (sa->ss_family == AF_INET6) {
        p = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(p, v4_mapped, sizeof v4_mapped) == 0) {
            family = 4; /* an IPv4 client of a dual-stack listener is that IPv4 address */
            p += 12;
            n = 4;
        } else {
            family = 6;
            n = 8; /* the /64: one subscriber's network, whose host half is its own to pick */
        }
    } else if (sa->ss_family == AF_INET) {
        family = 4;
        p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        n = 4;
    } else {
        return 0;
    }
    uint64_t h = fnv1a(14695981039346656037ull, &family, 1);
    h = fnv1a(h, p, n);
    return h ? h : 1;
}

uint64_t peers_net_key(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
        return 0;
    return peers_net_key_of(&sa);
}
