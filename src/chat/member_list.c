/* member_list: a room's users as the JSON list its joined carries, kept in step. */
#include "member_list.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void member_list_init(struct member_list *l)
{
    memset(l, 0, sizeof *l);
    l->json = chunk_new(256);
    l->cap = 16;
    l->off = xmalloc(l->cap * sizeof *l->off);
    l->off[0] = 0;
}

void member_list_free(struct member_list *l)
{
    chunk_unref(l->json);
    free(l->off);
    memset(l, 0, sizeof *l);
}

static char lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
}

/* Entry i's name lower-cased against key: byte order, a proper prefix first (as ordset's). */
static int cmp_entry(const struct member_list *l, uint32_t i, const char *key, size_t len)
{
    const uint8_t *p = l->json->data + l->off[i] + 1; /* after the opening quote */
    size_t n = l->off[i + 1] - l->off[i] - 3;          /* without the quotes and the comma */
    size_t m = n < len ? n : len;
    for (size_t k = 0; k < m; k++) {
        char c = lower(p[k]);
        if (c != key[k])
            return (uint8_t)c < (uint8_t)key[k] ? -1 : 1;
    }
    return n < len ? -1 : n > len;
}

/* The first entry not below key (n when every entry is below). */
static uint32_t lower_bound(const struct member_list *l, const char *key, size_t len)
{
    uint32_t lo = 0, hi = l->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cmp_entry(l, mid, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Replaces bytes [at, at + cut) of the JSON by ins[0..add): in place when nobody else holds the
 * block, else in a new one (a shared block never changes). */
static void splice(struct member_list *l, uint32_t at, uint32_t cut, const char *ins, uint32_t add)
{
    struct chunk *c = l->json;
    size_t len = c->len - cut + add;
    bool alone = atomic_load_explicit(&c->refs, memory_order_acquire) == 1;
    if (alone && len <= c->cap) {
        memmove(c->data + at + add, c->data + at + cut, c->len - at - cut);
    } else {
        size_t cap = len + len / 2 + 64; /* room to grow in place once nobody holds it */
        struct chunk *d = chunk_new(cap);
        memcpy(d->data, c->data, at);
        memcpy(d->data + at + add, c->data + at + cut, c->len - at - cut);
        chunk_unref(c);
        l->json = c = d;
    }
    if (add)
        memcpy(c->data + at, ins, add);
    c->len = (uint32_t)len;
}

void member_list_add(struct member_list *l, const char *name, const char *name_lc)
{
    size_t klen = strlen(name_lc);
    uint32_t i = lower_bound(l, name_lc, klen);
    if (i < l->n && cmp_entry(l, i, name_lc, klen) == 0)
        return;
    char entry[64];
    size_t n = strnlen(name, sizeof entry - 3);
    entry[0] = '"';
    memcpy(entry + 1, name, n);
    entry[n + 1] = '"';
    entry[n + 2] = ',';
    uint32_t add = (uint32_t)n + 3;
    splice(l, l->off[i], 0, entry, add);
    if (l->n + 1 == l->cap) {
        l->cap *= 2;
        l->off = xrealloc(l->off, l->cap * sizeof *l->off);
    }
    memmove(&l->off[i + 1], &l->off[i], (l->n + 1 - i) * sizeof *l->off);
    l->n++;
    for (uint32_t k = i + 1; k <= l->n; k++)
        l->off[k] += add;
}

void member_list_remove(struct member_list *l, const char *name_lc)
{
    size_t klen = strlen(name_lc);
    uint32_t i = lower_bound(l, name_lc, klen);
    if (i == l->n || cmp_entry(l, i, name_lc, klen) != 0)
        return;
    uint32_t cut = l->off[i + 1] - l->off[i];
    splice(l, l->off[i], cut, NULL, 0);
    memmove(&l->off[i], &l->off[i + 1], (l->n - i) * sizeof *l->off);
    l->n--;
    for (uint32_t k = i; k <= l->n; k++)
        l->off[k] -= cut;
}

struct chunk *member_list_share(const struct member_list *l, size_t *len)
{
    *len = l->json->len ? l->json->len - 1 : 0;
    return chunk_ref(l->json);
}
