/* member_list: a room's users as the JSON list its joined carries, kept in step, in segments. */
#include "member_list.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* A segment is cut in two once it holds more than this many bytes, and two neighbours that fit
 * in half of it together are joined: a join copies at most about this much, and an answer holds
 * one piece per 4 to 8 KiB of names (a few dozen for 15,000 names). */
#define SEG_MAX 8192

/* An empty segment with room for bytes of JSON and entries names. */
static void seg_init(struct member_seg *s, size_t bytes, uint32_t entries)
{
    s->json = chunk_new(bytes);
    s->cap = entries < 15 ? 16 : entries + 1;
    s->off = xmalloc(s->cap * sizeof *s->off);
    s->off[0] = 0;
    s->n = 0;
}

static void seg_free(struct member_seg *s)
{
    chunk_unref(s->json);
    free(s->off);
}

/* Appends src's entries [from, to) to dst, which has room for them. */
static void seg_append(struct member_seg *dst, const struct member_seg *src, uint32_t from,
                       uint32_t to)
{
    uint32_t base = dst->json->len, start = src->off[from];
    memcpy(dst->json->data + base, src->json->data + start, src->off[to] - start);
    for (uint32_t k = from; k < to; k++)
        dst->off[++dst->n] = base + src->off[k + 1] - start;
    dst->json->len = dst->off[dst->n];
}

void member_list_init(struct member_list *l)
{
    memset(l, 0, sizeof *l);
}

void member_list_free(struct member_list *l)
{
    for (uint32_t j = 0; j < l->n_segs; j++)
        seg_free(&l->segs[j]);
    free(l->segs);
    memset(l, 0, sizeof *l);
}

static char lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
}

/* Entry i's name lower-cased against key: byte order, a proper prefix first (as ordset's). */
static int cmp_entry(const struct member_seg *s, uint32_t i, const char *key, size_t len)
{
    const uint8_t *p = s->json->data + s->off[i] + 1; /* after the opening quote */
    size_t n = s->off[i + 1] - s->off[i] - 3;         /* without the quotes and the comma */
    size_t m = n < len ? n : len;
    for (size_t k = 0; k < m; k++) {
        char c = lower(p[k]);
        if (c != key[k])
            return (uint8_t)c < (uint8_t)key[k] ? -1 : 1;
    }
    return n < len ? -1 : n > len;
}

/* The first entry of s not below key (s->n when every entry is below). */
static uint32_t lower_bound(const struct member_seg *s, const char *key, size_t len)
{
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cmp_entry(s, mid, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The segment key belongs in: the last whose first entry is not above key, else the first.
 * Only with segments. */
static uint32_t seg_for(const struct member_list *l, const char *key, size_t len)
{
    uint32_t lo = 1, hi = l->n_segs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cmp_entry(&l->segs[mid], 0, key, len) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* Replaces bytes [at, at + cut) of s's JSON by ins[0..add): in place when nobody else holds the
 * block, else in a new one (a shared block never changes). */
static void splice(struct member_seg *s, uint32_t at, uint32_t cut, const char *ins, uint32_t add)
{
    struct chunk *c = s->json;
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
        s->json = c = d;
    }
    if (add)
        memcpy(c->data + at, ins, add);
    c->len = (uint32_t)len;
}

/* Makes room for a segment at j (uninitialised). */
static struct member_seg *segs_open(struct member_list *l, uint32_t j)
{
    if (l->n_segs == l->cap_segs) {
        l->cap_segs = l->cap_segs ? l->cap_segs * 2 : 4;
        l->segs = xrealloc(l->segs, l->cap_segs * sizeof *l->segs);
    }
    memmove(&l->segs[j + 1], &l->segs[j], (l->n_segs - j) * sizeof *l->segs);
    l->n_segs++;
    return &l->segs[j];
}

/* Frees segment j and closes its place. */
static void segs_close(struct member_list *l, uint32_t j)
{
    seg_free(&l->segs[j]);
    l->n_segs--;
    memmove(&l->segs[j], &l->segs[j + 1], (l->n_segs - j) * sizeof *l->segs);
}

/* Segment j, grown past SEG_MAX, becomes two of half its entries each (new blocks: its own may
 * be shared). */
static void seg_split(struct member_list *l, uint32_t j)
{
    struct member_seg old = l->segs[j];
    uint32_t half = old.n / 2;
    struct member_seg *a = &l->segs[j];
    seg_init(a, old.off[half] + SEG_MAX / 2, half);
    seg_append(a, &old, 0, half);
    struct member_seg *b = segs_open(l, j + 1);
    seg_init(b, old.off[old.n] - old.off[half] + SEG_MAX / 2, old.n - half);
    seg_append(b, &old, half, old.n);
    seg_free(&old);
}

/* Segments j and j + 1 become one. */
static void seg_join(struct member_list *l, uint32_t j)
{
    struct member_seg a = l->segs[j], *b = &l->segs[j + 1];
    struct member_seg *m = &l->segs[j];
    seg_init(m, a.json->len + b->json->len + SEG_MAX / 4, a.n + b->n + 8);
    seg_append(m, &a, 0, a.n);
    seg_append(m, b, 0, b->n);
    seg_free(&a);
    segs_close(l, j + 1);
}

void member_list_add(struct member_list *l, const char *name, const char *name_lc)
{
    size_t klen = strlen(name_lc);
    if (l->n_segs == 0)
        seg_init(segs_open(l, 0), 256, 16);
    uint32_t j = seg_for(l, name_lc, klen);
    struct member_seg *s = &l->segs[j];
    uint32_t i = lower_bound(s, name_lc, klen);
    if (i < s->n && cmp_entry(s, i, name_lc, klen) == 0)
        return;
    char entry[64];
    size_t n = strnlen(name, sizeof entry - 3);
    entry[0] = '"';
    memcpy(entry + 1, name, n);
    entry[n + 1] = '"';
    entry[n + 2] = ',';
    uint32_t add = (uint32_t)n + 3;
    splice(s, s->off[i], 0, entry, add);
    if (s->n + 1 == s->cap) {
        s->cap *= 2;
        s->off = xrealloc(s->off, s->cap * sizeof *s->off);
    }
    memmove(&s->off[i + 1], &s->off[i], (s->n + 1 - i) * sizeof *s->off);
    s->n++;
    for (uint32_t k = i + 1; k <= s->n; k++)
        s->off[k] += add;
    l->n++;
    if (s->json->len > SEG_MAX && s->n > 1)
        seg_split(l, j);
}

void member_list_remove(struct member_list *l, const char *name_lc)
{
    size_t klen = strlen(name_lc);
    if (l->n_segs == 0)
        return;
    uint32_t j = seg_for(l, name_lc, klen);
    struct member_seg *s = &l->segs[j];
    uint32_t i = lower_bound(s, name_lc, klen);
    if (i == s->n || cmp_entry(s, i, name_lc, klen) != 0)
        return;
    uint32_t cut = s->off[i + 1] - s->off[i];
    splice(s, s->off[i], cut, NULL, 0);
    memmove(&s->off[i], &s->off[i + 1], (s->n - i) * sizeof *s->off);
    s->n--;
    for (uint32_t k = i; k <= s->n; k++)
        s->off[k] -= cut;
    l->n--;
    /* Segments stay few: an empty one goes, small neighbours become one. */
    if (s->n == 0)
        segs_close(l, j);
    else if (j + 1 < l->n_segs && s->json->len + l->segs[j + 1].json->len <= SEG_MAX / 2)
        seg_join(l, j);
    else if (j > 0 && l->segs[j - 1].json->len + s->json->len <= SEG_MAX / 2)
        seg_join(l, j - 1);
}

struct member_piece *member_list_share(const struct member_list *l, uint32_t *n, size_t *len)
{
    struct member_piece *p = xmalloc((l->n_segs ? l->n_segs : 1) * sizeof *p);
    size_t total = 0;
    for (uint32_t j = 0; j < l->n_segs; j++) {
        p[j].c = chunk_ref(l->segs[j].json);
        p[j].len = l->segs[j].json->len - (j + 1 == l->n_segs); /* no comma after the last */
        total += p[j].len;
    }
    *n = l->n_segs;
    *len = total;
    return p;
}

void member_pieces_free(struct member_piece *p, uint32_t n)
{
    for (uint32_t j = 0; j < n; j++)
        chunk_unref(p[j].c);
    free(p);
}
