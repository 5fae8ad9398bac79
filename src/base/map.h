/*
 * map: open-addressing hash maps, one with string keys (copied and owned
 * by the map, or borrowed from the caller) and one with 64-bit keys. Values
 * are caller pointers (NULL included, though map_get cannot tell it from none). Not
 * thread-safe: each map belongs to one thread. An entry costs 17 to 34 bytes of table.
 */
#ifndef PARLEY_MAP_H
#define PARLEY_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_slot;

struct map {
    struct map_slot *slots;
    size_t cap;   /* a power of two, or 0 */
    size_t count; /* live entries */
    bool string_keys;
    bool borrowed_keys; /* map_init_borrowed */
    bool untagged;      /* a key pointer used its top 16 bits: no hash tags in this map */
};

/* Prepares an empty map: string_keys selects map_get/map_put, else map_get_u64/map_put_u64. */
void map_init(struct map *m, bool string_keys);
/*
 * Prepares an empty string-keyed map whose keys are not copied: each key must stay valid and
 * unchanged while its entry is in the map (a name inside the value, say), and map_put on a key
 * already present stores its new key pointer along with the value. Saves a key copy per entry.
 */
void map_init_borrowed(struct map *m);
/* Frees the map's own memory (and its key copies), not the values. */
void map_free(struct map *m);
/* Frees every value with free(), then the map (for maps that own plain heap values). */
void map_free_all(struct map *m);

/* Returns the value stored under key, or NULL. */
void *map_get(const struct map *m, const char *key);
/* Stores value under key (replacing any); returns the previous value or NULL. */
void *map_put(struct map *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *map_del(struct map *m, const char *key);

void *map_get_u64(const struct map *m, uint64_t key);
void *map_put_u64(struct map *m, uint64_t key, void *value);
void *map_del_u64(struct map *m, uint64_t key);

/* Iteration: for (size_t i = 0; map_next(m, &i, &key, &value);) ... ; do not modify the map
 * meanwhile. */
bool map_next(const struct map *m, size_t *pos, const char **key, void **value);
bool map_next_u64(const struct map *m, size_t *pos, uint64_t *key, void **value);

#endif
