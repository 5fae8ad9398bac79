/*
 * ordset: an ordered set of short byte-string keys (at most ORDSET_KEY_MAX
 * bytes, compared as bytes, a shorter prefix first), each with a caller
 * pointer: a skip list. Insert, remove and seek cost O(log n) expected;
 * walking on from a node costs O(1) per step, so a page of k keys after any
 * key costs O(log n + k). Not thread-safe: each set belongs to one thread.
 *
 * DESIGN: the hub keeps one per room (its users by lower-cased name) and one
 * of the public rooms, so `who`, `rooms` and a large room's `joined` list a
 * page without touching the rest. A skip list rather than a balanced tree:
 * the level-0 list is the in-order walk, with no parent pointers or
 * rebalancing, and a node is one allocation holding its key. Levels come
 * from a per-set xorshift generator, so runs are reproducible.
 */
#ifndef PARLEY_ORDSET_H
#define PARLEY_ORDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool_sizes;

#define ORDSET_KEY_MAX 32
#define ORDSET_LEVELS 16 /* p = 1/4: enough for 4^16 keys */

struct ordset_node;

struct ordset {
    struct ordset_node *head[ORDSET_LEVELS];
    size_t count;
    int levels; /* levels in use */
    uint64_t rng;
    struct pool_sizes *pools; /* where nodes come from, or NULL: the heap */
};

/* Prepares an empty set; seed picks the level sequence (any value). */
void ordset_init(struct ordset *s, uint64_t seed);
/* Makes the (empty) set's nodes come from pools, which must outlive it, instead of the heap. */
void ordset_use_pools(struct ordset *s, struct pool_sizes *pools);
/* Frees the nodes (not the values). */
void ordset_free(struct ordset *s);

/* Adds key[0..len) (len <= ORDSET_KEY_MAX) with value. Returns false, changing nothing, when the
 * key is there already or too long. */
bool ordset_insert(struct ordset *s, const char *key, size_t len, void *value);
/* Removes key; returns its value, or NULL when it was not there. */
void *ordset_remove(struct ordset *s, const char *key, size_t len);
/* The value of key, or NULL. */
void *ordset_get(const struct ordset *s, const char *key, size_t len);
/* The node of key, or NULL: its value can then be read and replaced without another search (a
 * caller may keep a small record in the value word itself, rather than a block it points to). */
struct ordset_node *ordset_find(const struct ordset *s, const char *key, size_t len);
void ordset_set_value(struct ordset_node *n, void *value);

/* The first node whose key is greater than key[0..len) (key NULL: the first node), or NULL. A key
 * longer than ORDSET_KEY_MAX is compared by its first ORDSET_KEY_MAX bytes, which gives the same
 * answer for every key the set can hold. */
const struct ordset_node *ordset_after(const struct ordset *s, const char *key, size_t len);
/* The node after n, or NULL. */
const struct ordset_node *ordset_next(const struct ordset_node *n);
/* A node's key (NUL-terminated), its length, and its value. */
const char *ordset_key(const struct ordset_node *n);
size_t ordset_key_len(const struct ordset_node *n);
void *ordset_value(const struct ordset_node *n);

#endif
