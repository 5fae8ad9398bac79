/* chunk: immutable reference-counted byte blocks for zero-copy fan-out. */
#include "chunk.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

struct chunk *chunk_new(size_t cap)
{
    struct chunk *c = xmalloc(sizeof *c + cap);
    atomic_init(&c->refs, 1);
    c->cap = (uint32_t)cap;
    c->len = 0;
    atomic_init(&c->alt, NULL);
    return c;
}

struct chunk *chunk_from(const void *p, size_t n)
{
    struct chunk *c = chunk_new(n);
    memcpy(c->data, p, n);
    c->len = (uint32_t)n;
    return c;
}

struct chunk *chunk_grow(struct chunk *c, size_t cap)
{
    c = xrealloc(c, sizeof *c + cap);
    c->cap = (uint32_t)cap;
    return c;
}

/* This thread's prepaid references (chunk_prepay). */
static _Thread_local struct chunk *prepaid;
static _Thread_local uint32_t prepaid_n;

struct chunk *chunk_ref(struct chunk *c)
{
    if (c == prepaid && prepaid_n > 0) {
        prepaid_n--;
        return c;
    }
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void chunk_unref_n(struct chunk *c, uint32_t n)
{
    /* acq_rel: the freeing thread must see every write made before other threads let go. */
    if (c && n && atomic_fetch_sub_explicit(&c->refs, n, memory_order_acq_rel) == n) {
        chunk_unref(atomic_load_explicit(&c->alt, memory_order_relaxed));
        free(c);
    }
}

void chunk_unref(struct chunk *c)
{
    chunk_unref_n(c, 1);
}

/* The slot c hashes to: Fibonacci hashing of the address, whose low bits are alignment. */
static uint32_t owed_home(const struct chunk *c)
{
    _Static_assert(CHUNK_UNREFS_SLOTS == 256u, "the hash takes the top 8 bits");
    _Static_assert(CHUNK_UNREFS_MAX <= 256u, "used[] holds slot numbers in a byte");
    return (uint32_t)((((uintptr_t)c >> 4) * UINT64_C(0x9E3779B97F4A7C15)) >> 56);
}

void chunk_unrefs_add(struct chunk_unrefs *u, struct chunk *c)
{
    if (!c)
        return;
    for (;;) {
        /* Linear probing finds c or the first free slot: there is one, as n < the slots. */
        uint32_t i = owed_home(c);
        while (u->slot[i].chunk && u->slot[i].chunk != c)
            i = (i + 1) % CHUNK_UNREFS_SLOTS;
        if (u->slot[i].chunk == c) {
            u->slot[i].n++;
            return;
        }
        if (u->n < CHUNK_UNREFS_MAX) {
            u->slot[i] = (struct chunk_owed){c, 1};
            u->used[u->n++] = (uint8_t)i;
            return;
        }
        chunk_unrefs_drop(u); /* full: pay what is owed, then c has the table to itself */
    }
}

void chunk_unrefs_drop(struct chunk_unrefs *u)
{
    for (uint32_t k = 0; k < u->n; k++) {
        struct chunk_owed *o = &u->slot[u->used[k]];
        chunk_unref_n(o->chunk, o->n);
        *o = (struct chunk_owed){NULL, 0};
    }
    u->n = 0;
}

void chunk_prepay(struct chunk *c, uint32_t n)
{
    chunk_prepay_end();
    if (!c || n == 0)
        return;
    atomic_fetch_add_explicit(&c->refs, n, memory_order_relaxed);
    prepaid = c;
    prepaid_n = n;
}

void chunk_prepay_end(void)
{
    if (prepaid && prepaid_n > 0)
        chunk_unref_n(prepaid, prepaid_n);
    prepaid = NULL;
    prepaid_n = 0;
}

struct chunk *chunk_alt(struct chunk *c)
{
    /* acquire: pairs with the publisher's release, so the form's bytes are seen complete. */
    return atomic_load_explicit(&c->alt, memory_order_acquire);
}

struct chunk *chunk_set_alt(struct chunk *c, struct chunk *alt, bool *won)
{
    struct chunk *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&c->alt, &expected, alt, memory_order_acq_rel,
                                                memory_order_acquire)) {
        *won = true;
        return alt;
    }
    /* Another thread was first: its form serves as well, and ours was never seen by anyone. */
    chunk_unref(alt);
    *won = false;
    return expected;
}
