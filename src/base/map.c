/* map: open-addressing hash maps with Robin Hood linear probing and backward-shift deletion. */
#include "map.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/*
 * 16 bytes a slot: the key and the value, nothing else. A slot is empty when its value is NULL
 * (a NULL value is stored as &null_value). A 64-bit key's hash is recomputed from the key; a
 * string key's pointer carries the top 16 bits of its hash in its own unused top 16 bits, which
 * rule out most unequal keys without reading them and give the slot's home in a table of up to
 * 2^16 slots (a larger table hashes the string again). A slot's home is the top bits of its hash.
 *
 * Robin Hood: an entry further from its home takes the slot of one nearer to its own, so probe
 * lengths stay short and even at 15/16 full, and a look-up stops at the first entry nearer to
 * its home than the key would be. Deletion shifts the entries after it back, so there are no
 * tombstones.
 */
struct map_slot {
    uint64_t key; /* the u64 key, or the string's pointer with the hash tag in its top bits */
    void *value;
};

#define TAG_SHIFT 48
#define PTR_MASK ((1ull << TAG_SHIFT) - 1)
#define TAG_BITS 16
#define MIN_BITS 4

static char null_value; /* stands for a NULL value, so that NULL marks an empty slot */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33; /* a 64-bit finalizer spreads sequential ids and FNV's low bits alike */
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return mix(h);
}

static unsigned bits_of(const struct map *m)
{
    return (unsigned)__builtin_ctzll(m->cap);
}

static size_t home_of_hash(const struct map *m, uint64_t hash)
{
    return (size_t)(hash >> (64 - bits_of(m)));
}

static const char *slot_str(const struct map *m, const struct map_slot *s)
{
    return (const char *)(uintptr_t)(m->untagged ? s->key : s->key & PTR_MASK);
}

static size_t slot_home(const struct map *m, const struct map_slot *s)
{
    if (!m->string_keys)
        return home_of_hash(m, mix(s->key));
    if (!m->untagged && bits_of(m) <= TAG_BITS)
        return (size_t)((s->key >> TAG_SHIFT) >> (TAG_BITS - bits_of(m)));
    return home_of_hash(m, hash_str(slot_str(m, s)));
}

/* How far the slot at i is from its home. */
static size_t slot_dist(const struct map *m, const struct map_slot *s, size_t i)
{
    return (i - slot_home(m, s)) & (m->cap - 1);
}

/* The word a key is stored as: the u64 itself, or the string's pointer tagged with its hash. */
static uint64_t stored_key(const struct map *m, uint64_t hash, const char *str, uint64_t u64)
{
    if (!m->string_keys)
        return u64;
    if (m->untagged)
        return (uint64_t)(uintptr_t)str;
    return ((uint64_t)(uintptr_t)str & PTR_MASK) | (hash >> TAG_SHIFT << TAG_SHIFT);
}

/* A key pointer with bits above 48 (a tagged-pointer platform) cannot carry a tag: the map then
 * keeps plain pointers and hashes a slot's string when it needs the slot's home. */
static void untag(struct map *m)
{
    m->untagged = true;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].value)
            m->slots[i].key &= PTR_MASK;
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
            if (m->slots[i].value)
                free((char *)slot_str(m, &m->slots[i]));
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static void *value_out(void *v)
{
    return v == &null_value ? NULL : v;
}

void map_free_all(struct map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].value)
            free(value_out(m->slots[i].value));
    map_free(m);
}

/* Returns the index of the slot holding the key, or -1. */
static ptrdiff_t find(const struct map *m, uint64_t hash, const char *str, uint64_t u64)
{
    if (m->count == 0)
        return -1;
    size_t mask = m->cap - 1, i = home_of_hash(m, hash);
    uint64_t want = stored_key(m, hash, str, u64);
    uint64_t tag_mask = m->untagged ? ~0ull : ~PTR_MASK;
    for (size_t d = 0;; d++, i = (i + 1) & mask) {
        const struct map_slot *s = &m->slots[i];
        if (!s->value || slot_dist(m, s, i) < d)
            return -1;
        if (!m->string_keys ? s->key == want
                            : (m->untagged || (s->key & tag_mask) == (want & tag_mask)) &&
                                  strcmp(slot_str(m, s), str) == 0)
            return (ptrdiff_t)i;
    }
}

/* Places an entry known to be absent, displacing nearer ones (the Robin Hood rule). */
static void place(struct map *m, struct map_slot e)
{
    size_t mask = m->cap - 1, i = slot_home(m, &e);
    for (size_t d = 0;; d++, i = (i + 1) & mask) {
        struct map_slot *s = &m->slots[i];
        if (!s->value) {
            *s = e;
            return;
        }
        size_t sd = slot_dist(m, s, i);
        if (sd < d) {
            struct map_slot t = *s;
            *s = e;
            e = t;
            d = sd;
        }
    }
}

static void grow(struct map *m)
{
    struct map_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap = old_cap == 0 ? (size_t)1 << MIN_BITS : old_cap * 2;
    m->slots = xcalloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].value)
            place(m, old[i]);
    free(old);
}

static void *put(struct map *m, uint64_t hash, const char *str, uint64_t u64, void *value)
{
    if (!value)
        value = &null_value;
    if (m->borrowed_keys && !m->untagged && ((uint64_t)(uintptr_t)str & ~PTR_MASK))
        untag(m);
    ptrdiff_t at = find(m, hash, str, u64);
    if (at >= 0) {
        struct map_slot *s = &m->slots[at];
        void *prev = s->value;
        s->value = value;
        if (m->borrowed_keys)
            s->key = stored_key(m, hash, str, u64);
        return value_out(prev);
    }
    /* At most 15/16 full: Robin Hood keeps probes short there, and a table sits between 15/32
     * and 15/16 full, 17 to 34 bytes an entry. */
    if ((m->count + 1) * 16 > m->cap * 15)
        grow(m);
    const char *owned = m->string_keys && !m->borrowed_keys ? xstrdup(str) : str;
    if (owned != str && !m->untagged && ((uint64_t)(uintptr_t)owned & ~PTR_MASK))
        untag(m);
    place(m, (struct map_slot){stored_key(m, hash, owned, u64), value});
    m->count++;
    return NULL;
}

static void *del(struct map *m, uint64_t hash, const char *str, uint64_t u64)
{
    ptrdiff_t at = find(m, hash, str, u64);
    if (at < 0)
        return NULL;
    size_t mask = m->cap - 1, i = (size_t)at;
    void *value = m->slots[i].value;
    if (m->string_keys && !m->borrowed_keys)
        free((char *)slot_str(m, &m->slots[i]));
    /* Backward shift: each following entry not at its home moves one slot nearer to it. */
    for (size_t j = (i + 1) & mask; m->slots[j].value && slot_dist(m, &m->slots[j], j) > 0;
         j = (j + 1) & mask) {
        m->slots[i] = m->slots[j];
        i = j;
    }
    m->slots[i] = (struct map_slot){0};
    m->count--;
    return value_out(value);
}

void *map_get(const struct map *m, const char *key)
{
    ptrdiff_t at = find(m, hash_str(key), key, 0);
    return at >= 0 ? value_out(m->slots[at].value) : NULL;
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
    ptrdiff_t at = find(m, mix(key), NULL, key);
    return at >= 0 ? value_out(m->slots[at].value) : NULL;
}

void *map_put_u64(struct map *m, uint64_t key, void *value)
{
    return put(m, mix(key), NULL, key, value);
}

void *map_del_u64(struct map *m, uint64_t key)
{
    return del(m, mix(key), NULL, key);
}

static struct map_slot *next_live(const struct map *m, size_t *pos)
{
    while (*pos < m->cap) {
        struct map_slot *s = &m->slots[(*pos)++];
        if (s->value)
            return s;
    }
    return NULL;
}

bool map_next(const struct map *m, size_t *pos, const char **key, void **value)
{
    struct map_slot *s = next_live(m, pos);
    if (!s)
        return false;
    *key = slot_str(m, s);
    *value = value_out(s->value);
    return true;
}

bool map_next_u64(const struct map *m, size_t *pos, uint64_t *key, void **value)
{
    struct map_slot *s = next_live(m, pos);
    if (!s)
        return false;
    *key = s->key;
    *value = value_out(s->value);
    return true;
}
