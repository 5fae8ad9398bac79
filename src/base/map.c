/* map: open-addressing hash maps with linear probing and tombstones. */
#include "map.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

enum { SLOT_EMPTY, SLOT_LIVE, SLOT_DEAD };

/* 24 bytes: the slot's state is in its hash (0 empty, 1 dead; a live hash has its top bit set),
 * as a separate byte would pad the slot to 32. Every entry of a map costs one to two slots. */
struct map_slot {
    uint64_t hash;
    union {
        char *str;
        uint64_t u64;
    } key;
    void *value;
};

#define HASH_LIVE (1ull << 63)
#define HASH_DEAD 1u

static int state_of(const struct map_slot *s)
{
    return s->hash == 0 ? SLOT_EMPTY : s->hash == HASH_DEAD ? SLOT_DEAD : SLOT_LIVE;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h | HASH_LIVE;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33; /* a 64-bit finalizer spreads sequential ids over the table */
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x | HASH_LIVE;
}

void map_init(struct map *m, bool string_keys)
{
    memset(m, 0, sizeof *m);
    m->string_keys = string_keys;
}

void map_init_borrowed(struct map *m)
{
    map_init(m, true);
    m->borrowed_keys = true;
}

void map_free(struct map *m)
{
    if (m->string_keys && !m->borrowed_keys)
        for (size_t i = 0; i < m->cap; i++)
            if (state_of(&m->slots[i]) == SLOT_LIVE)
                free(m->slots[i].key.str);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = m->used = 0;
}

void map_free_all(struct map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (state_of(&m->slots[i]) == SLOT_LIVE)
            free(m->slots[i].value);
    map_free(m);
}

static bool key_equal(const struct map_slot *s, uint64_t hash, const char *str, uint64_t u64)
{
    if (s->hash != hash)
        return false;
    return str ? strcmp(s->key.str, str) == 0 : s->key.u64 == u64; /* str: a string-keyed map */
}

/* Returns the live slot holding the key, or NULL. */
static struct map_slot *find(const struct map *m, uint64_t hash, const char *str, uint64_t u64)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = hash & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct map_slot *s = &m->slots[i];
        if (state_of(s) == SLOT_EMPTY)
            return NULL;
        if (key_equal(s, hash, str, u64)) /* a live hash never equals a dead one's */
            return s;
    }
}

static void grow(struct map *m)
{
    struct map_slot *old = m->slots;
    size_t old_cap = m->cap;
    /* Double when mostly live; same size when mostly tombstones. */
    m->cap = old_cap == 0 ? 16 : (m->count * 2 >= old_cap ? old_cap * 2 : old_cap);
    m->slots = xcalloc(m->cap, sizeof *m->slots);
    m->used = m->count;
    for (size_t i = 0; i < old_cap; i++) {
        if (state_of(&old[i]) != SLOT_LIVE)
            continue;
        size_t j = old[i].hash & (m->cap - 1);
        while (state_of(&m->slots[j]) != SLOT_EMPTY)
            j = (j + 1) & (m->cap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

static void *put(struct map *m, uint64_t hash, const char *str, uint64_t u64, void *value)
{
    struct map_slot *s = find(m, hash, str, u64);
    if (s) {
        void *prev = s->value;
        s->value = value;
        if (m->borrowed_keys)
            s->key.str = (char *)str;
        return prev;
    }
    if ((m->used + 1) * 4 > m->cap * 3)
        grow(m);
    size_t i = hash & (m->cap - 1);
    while (state_of(&m->slots[i]) == SLOT_LIVE)
        i = (i + 1) & (m->cap - 1);
    s = &m->slots[i];
    if (state_of(s) == SLOT_EMPTY)
        m->used++;
    s->hash = hash;
    if (m->string_keys)
        s->key.str = m->borrowed_keys ? (char *)str : xstrdup(str);
    else
        s->key.u64 = u64;
    s->value = value;
    m->count++;
    return NULL;
}

static void *del(struct map *m, uint64_t hash, const char *str, uint64_t u64)
{
    struct map_slot *s = find(m, hash, str, u64);
    if (!s)
        return NULL;
    void *value = s->value;
    if (m->string_keys && !m->borrowed_keys)
        free(s->key.str);
    s->hash = HASH_DEAD;
    s->value = NULL;
    m->count--;
    return value;
}

void *map_get(const struct map *m, const char *key)
{
    struct map_slot *s = find(m, hash_str(key), key, 0);
    return s ? s->value : NULL;
}

void *map_put(struct map *m, const char *key, void *value)
{
    return put(m, hash_str(key), key, 0, value);
}

void *map_del(struct map *m, const char *key)
{
    return del(m, hash_str(key), key, 0);
}

void *map_get_u64(const struct map *m, uint64_t key)
{
    struct map_slot *s = find(m, hash_u64(key), NULL, key);
    return s ? s->value : NULL;
}

void *map_put_u64(struct map *m, uint64_t key, void *value)
{
    return put(m, hash_u64(key), NULL, key, value);
}

void *map_del_u64(struct map *m, uint64_t key)
{
    return del(m, hash_u64(key), NULL, key);
}

static struct map_slot *next_live(const struct map *m, size_t *pos)
{
    while (*pos < m->cap) {
        struct map_slot *s = &m->slots[(*pos)++];
        if (state_of(s) == SLOT_LIVE)
            return s;
    }
    return NULL;
}

bool map_next(const struct map *m, size_t *pos, const char **key, void **value)
{
    struct map_slot *s = next_live(m, pos);
    if (!s)
        return false;
    *key = s->key.str;
    *value = s->value;
    return true;
}

bool map_next_u64(const struct map *m, size_t *pos, uint64_t *key, void **value)
{
    struct map_slot *s = next_live(m, pos);
    if (!s)
        return false;
    *key = s->key.u64;
    *value = s->value;
    return true;
}
