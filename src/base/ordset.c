/* ordset: a skip list of short byte-string keys. */
#include "ordset.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pool.h"

/* One allocation: the node, its level links, then its key (len bytes and a NUL), so a node costs
 * its key's length rather than the longest key's (the hub has one per member of every room). */
struct ordset_node {
    void *value;
    uint8_t len;
    uint8_t level;
    struct ordset_node *next[]; /* level entries, then the key */
};

static char *key_of(const struct ordset_node *n)
{
    return (char *)&n->next[n->level];
}

void ordset_init(struct ordset *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->levels = 1;
    s->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
}

void ordset_use_pools(struct ordset *s, struct pool_sizes *pools)
{
    s->pools = pools;
}

static size_t node_size(int level, size_t len)
{
    return sizeof(struct ordset_node) + (size_t)level * sizeof(struct ordset_node *) + len + 1;
}

static struct ordset_node *node_new(struct ordset *s, int level, size_t len)
{
    size_t size = node_size(level, len);
    return s->pools ? pool_sizes_get(s->pools, size) : xmalloc(size);
}

static void node_free(struct ordset *s, struct ordset_node *n)
{
    if (s->pools)
        pool_sizes_put(s->pools, n, node_size(n->level, n->len));
    else
        free(n);
}

void ordset_free(struct ordset *s)
{
    struct ordset_node *n = s->head[0];
    while (n) {
        struct ordset_node *next = n->next[0];
        node_free(s, n);
        n = next;
    }
    memset(s->head, 0, sizeof s->head);
    s->count = 0;
    s->levels = 1;
}

/* Byte order, a proper prefix first. */
static int cmp(const struct ordset_node *n, const char *key, size_t len)
{
    size_t m = n->len < len ? n->len : len;
    int c = memcmp(key_of(n), key, m);
    if (c)
        return c;
    return n->len < len ? -1 : n->len > len;
}

/* Fills prev[i] with the last node at level i whose key is below key (NULL: the head). */
static void find_prev(const struct ordset *s, const char *key, size_t len,
                      struct ordset_node *prev[ORDSET_LEVELS])
{
    struct ordset_node *p = NULL;
    for (int i = s->levels - 1; i >= 0; i--) {
        struct ordset_node *n = p ? p->next[i] : s->head[i];
        while (n && cmp(n, key, len) < 0) {
            p = n;
            n = n->next[i];
        }
        prev[i] = p;
    }
}

static struct ordset_node *next_at(const struct ordset *s, struct ordset_node *p, int i)
{
    return p ? p->next[i] : s->head[i];
}

static int random_level(struct ordset *s)
{
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    int level = 1;
    while (level < ORDSET_LEVELS && (x & 3) == 0) {
        level++;
        x >>= 2;
    }
    return level;
}

bool ordset_insert(struct ordset *s, const char *key, size_t len, void *value)
{
    if (len > ORDSET_KEY_MAX)
        return false;
    struct ordset_node *prev[ORDSET_LEVELS];
    find_prev(s, key, len, prev);
    struct ordset_node *at = next_at(s, prev[0], 0);
    if (at && cmp(at, key, len) == 0)
        return false;
    int level = random_level(s);
    for (int i = s->levels; i < level; i++)
        prev[i] = NULL;
    if (level > s->levels)
        s->levels = level;
    struct ordset_node *n = node_new(s, level, len);
    n->value = value;
    n->len = (uint8_t)len;
    n->level = (uint8_t)level;
    memcpy(key_of(n), key, len);
    key_of(n)[len] = '\0';
    for (int i = 0; i < level; i++) {
        n->next[i] = next_at(s, prev[i], i);
        if (prev[i])
            prev[i]->next[i] = n;
        else
            s->head[i] = n;
    }
    s->count++;
    return true;
}

void *ordset_remove(struct ordset *s, const char *key, size_t len)
{
    if (len > ORDSET_KEY_MAX)
        return NULL;
    struct ordset_node *prev[ORDSET_LEVELS];
    find_prev(s, key, len, prev);
    struct ordset_node *n = next_at(s, prev[0], 0);
    if (!n || cmp(n, key, len) != 0)
        return NULL;
    for (int i = 0; i < n->level; i++) {
        if (prev[i])
            prev[i]->next[i] = n->next[i];
        else
            s->head[i] = n->next[i];
    }
    while (s->levels > 1 && !s->head[s->levels - 1])
        s->levels--;
    void *v = n->value;
    node_free(s, n);
    s->count--;
    return v;
}

struct ordset_node *ordset_find(const struct ordset *s, const char *key, size_t len)
{
    if (len > ORDSET_KEY_MAX)
        return NULL;
    struct ordset_node *prev[ORDSET_LEVELS];
    find_prev(s, key, len, prev);
    struct ordset_node *n = next_at(s, prev[0], 0);
    return n && cmp(n, key, len) == 0 ? n : NULL;
}

void *ordset_get(const struct ordset *s, const char *key, size_t len)
{
    struct ordset_node *n = ordset_find(s, key, len);
    return n ? n->value : NULL;
}

void ordset_set_value(struct ordset_node *n, void *value)
{
    n->value = value;
}

const struct ordset_node *ordset_after(const struct ordset *s, const char *key, size_t len)
{
    if (!key)
        return s->head[0];
    if (len > ORDSET_KEY_MAX)
        len = ORDSET_KEY_MAX;
    /* The last node with key <= the given one, then one step. */
    struct ordset_node *p = NULL;
    for (int i = s->levels - 1; i >= 0; i--) {
        struct ordset_node *n = next_at(s, p, i);
        while (n && cmp(n, key, len) <= 0) {
            p = n;
            n = n->next[i];
        }
    }
    return next_at(s, p, 0);
}

const struct ordset_node *ordset_next(const struct ordset_node *n)
{
    return n->next[0];
}

const char *ordset_key(const struct ordset_node *n)
{
    return key_of(n);
}

size_t ordset_key_len(const struct ordset_node *n)
{
    return n->len;
}

void *ordset_value(const struct ordset_node *n)
{
    return n->value;
}
