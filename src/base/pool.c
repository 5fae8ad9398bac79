/* pool: fixed-size objects in 64 KiB slabs of their own, each found from an object's address. */
#include "pool.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLAB_SIZE ((size_t)64 << 10)

/* At the start of every slab, which is aligned to its size: an object's slab is its address
 * with the low bits cleared. */
struct pool_slab {
    struct pool_slab *prev, *next; /* on the pool's partial list */
    void *free;                    /* given-back objects, each holding the next's address */
    uint32_t used;                 /* objects handed out */
    uint32_t made;                 /* objects ever carved from the slab: the rest are untouched */
    bool listed;                   /* on the partial list */
};

static _Atomic size_t mapped_bytes; /* every pool's slabs, for pool_mapped_bytes */

#define HEADER_SIZE ((sizeof(struct pool_slab) + 15) & ~(size_t)15)

static void out_of_memory(void)
{
    fprintf(stderr, "level=error msg=out_of_memory bytes=%zu\n", SLAB_SIZE);
    abort();
}

/* A slab-sized mapping aligned to its size: twice that mapped, the ends unmapped. */
static struct pool_slab *slab_map(void)
{
    char *raw =
        mmap(NULL, 2 * SLAB_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        out_of_memory();
    char *start = (char *)(((uintptr_t)raw + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1));
    if (start > raw)
        munmap(raw, (size_t)(start - raw));
    munmap(start + SLAB_SIZE, (size_t)(raw + SLAB_SIZE - start));
    POISON(start + HEADER_SIZE, SLAB_SIZE - HEADER_SIZE);
    mapped_bytes += SLAB_SIZE;
    return (struct pool_slab *)start;
}

static void slab_unmap(struct pool_slab *s)
{
    UNPOISON((char *)s + HEADER_SIZE, SLAB_SIZE - HEADER_SIZE);
    munmap(s, SLAB_SIZE);
    mapped_bytes -= SLAB_SIZE;
}

size_t pool_mapped_bytes(void)
{
    return mapped_bytes;
}

static struct pool_slab *slab_of(const void *obj)
{
    return (struct pool_slab *)((uintptr_t)obj & ~(uintptr_t)(SLAB_SIZE - 1));
}

static void list_add(struct pool *p, struct pool_slab *s)
{
    s->prev = NULL;
    s->next = p->partial;
    if (p->partial)
        p->partial->prev = s;
    p->partial = s;
    s->listed = true;
}

static void list_remove(struct pool *p, struct pool_slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->partial = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->listed = false;
}

void pool_init(struct pool *p, size_t size)
{
    memset(p, 0, sizeof *p);
    p->size = ((size < sizeof(void *) ? sizeof(void *) : size) + 7) & ~(size_t)7;
    p->per_slab = (uint32_t)((SLAB_SIZE - HEADER_SIZE) / p->size);
}

void *pool_get(struct pool *p)
{
    struct pool_slab *s = p->partial;
    if (!s) {
        if (p->spare) {
            s = p->spare;
            p->spare = NULL;
        } else {
            s = slab_map();
            p->slabs++;
        }
        memset(s, 0, sizeof *s);
        list_add(p, s);
    }
    char *obj;
    if (s->free) {
        obj = s->free;
        UNPOISON(obj, p->size);
        memcpy(&s->free, obj, sizeof s->free);
    } else {
        obj = (char *)s + HEADER_SIZE + (size_t)s->made++ * p->size;
        UNPOISON(obj, p->size);
    }
    if (++s->used == p->per_slab)
        list_remove(p, s);
    p->live++;
    memset(obj, 0, p->size);
    return obj;
}

void pool_put(struct pool *p, void *obj)
{
    if (!obj)
        return;
    struct pool_slab *s = slab_of(obj);
    memcpy(obj, &s->free, sizeof s->free);
    POISON(obj, p->size);
    s->free = obj;
    p->live--;
    if (--s->used > 0) {
        if (!s->listed)
            list_add(p, s);
        return;
    }
    /* Empty: keep it as the spare, or give it back. */
    if (s->listed)
        list_remove(p, s);
    if (!p->spare) {
        p->spare = s;
        s->free = NULL;
        s->made = 0;
        POISON((char *)s + HEADER_SIZE, SLAB_SIZE - HEADER_SIZE);
    } else {
        slab_unmap(s);
        p->slabs--;
    }
}

void pool_destroy(struct pool *p)
{
    if (p->spare)
        slab_unmap(p->spare);
    while (p->partial) {
        struct pool_slab *s = p->partial;
        list_remove(p, s);
        slab_unmap(s);
    }
    memset(p, 0, sizeof *p);
}

void pool_sizes_init(struct pool_sizes *ps)
{
    for (size_t i = 0; i < POOL_SIZES_MAX / 8; i++)
        pool_init(&ps->by8[i], 8 * (i + 1));
}

void *pool_sizes_get(struct pool_sizes *ps, size_t size)
{
    if (size > POOL_SIZES_MAX)
        return xcalloc(1, size);
    return pool_get(&ps->by8[size ? (size - 1) / 8 : 0]);
}

void pool_sizes_put(struct pool_sizes *ps, void *obj, size_t size)
{
    if (size > POOL_SIZES_MAX)
        free(obj);
    else
        pool_put(&ps->by8[size ? (size - 1) / 8 : 0], obj);
}

void pool_sizes_destroy(struct pool_sizes *ps)
{
    for (size_t i = 0; i < POOL_SIZES_MAX / 8; i++)
        pool_destroy(&ps->by8[i]);
}
