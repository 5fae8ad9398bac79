/* peers: a mutex-guarded count of connections per client address. */
#include "peers.h"

#include <pthread.h>
#include <string.h>

#include "map.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct map counts; /* key -> count, stored in the value pointer */

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
