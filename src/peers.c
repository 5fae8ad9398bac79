/* peers: a mutex-guarded count of connections per remote address. */
#include "peers.h"

#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include "map.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct map counts; /* key -> count, stored in the value pointer */

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
    uint64_t h = 14695981039346656037ull; /* FNV-1a over the address bytes (not the port) */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
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
