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

struct chunk *chunk_ref(struct chunk *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void chunk_unref(struct chunk *c)
{
    /* acq_rel: the freeing thread must see every write made before other threads let go. */
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        free(c);
}
