/*
 * pool: a slab allocator for many long-lived objects of one size (connections, sessions, room
 * entries). Objects are packed in 64 KiB slabs mapped apart from malloc's heap: no block header
 * or rounding per object, and a storm's transient buffers never share a page with them, so the
 * heap's free pages can go back to the system after it. A slab that empties is unmapped (one is
 * kept spare). Not thread-safe: a pool belongs to one thread (a worker's objects are made and
 * freed on that worker's thread, or on the main thread once the workers have stopped).
 */
#ifndef PARLEY_POOL_H
#define PARLEY_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pool_slab;

struct pool {
    size_t size;               /* an object's size, rounded up to 8 */
    uint32_t per_slab;         /* objects in a slab */
    struct pool_slab *partial; /* slabs with a free object, doubly linked */
    struct pool_slab *spare;   /* an empty slab kept for the next object */
    size_t live;               /* objects handed out */
    size_t slabs;              /* slabs mapped, the spare included */
};

/* Prepares an empty pool of objects of size bytes (at most a few KiB), aligned to 8 bytes: no
 * per-object rounding to 16 as malloc's. Maps nothing yet. POOL_INIT checks the type's alignment.
 */
void pool_init(struct pool *p, size_t size);
#define POOL_INIT(p, type)                                                                         \
    do {                                                                                           \
        _Static_assert(_Alignof(type) <= 8, "pool objects are aligned to 8 bytes");                \
        pool_init(p, sizeof(type));                                                                \
    } while (0)
/* A zeroed object; never NULL (stops the process when memory is out, as xmalloc does). */
void *pool_get(struct pool *p);
/* Gives back an object of p (NULL does nothing). */
void pool_put(struct pool *p, void *obj);
/* Unmaps every slab: every object must have been given back. */
void pool_destroy(struct pool *p);
/* Objects of many sizes, each rounded up to 8 bytes, from a pool per multiple of 8 up to
 * POOL_SIZES_MAX (larger ones from the heap): for long-lived blocks sized to their content (the
 * hub's user records and member-index nodes), which then pay no block header and no rounding to
 * 16, and never share a page with a storm's transient buffers. The caller gives the size back
 * with the object. Owned by one thread, as a pool is. */
#define POOL_SIZES_MAX 192
struct pool_sizes {
    struct pool by8[POOL_SIZES_MAX / 8]; /* by8[i]: objects of 8 * (i + 1) bytes */
};
void pool_sizes_init(struct pool_sizes *ps);
/* A zeroed object of size bytes; never NULL. */
void *pool_sizes_get(struct pool_sizes *ps, size_t size);
/* Gives back obj, got with the same size (NULL does nothing). */
void pool_sizes_put(struct pool_sizes *ps, void *obj, size_t size);
/* Unmaps every slab: every object must have been given back. */
void pool_sizes_destroy(struct pool_sizes *ps);

/* Bytes of slabs mapped by every pool of the process (outside malloc's figures: gdb's
 * `call pool_mapped_bytes()` beside `malloc_stats()` gives the whole heap in use). */
size_t pool_mapped_bytes(void);

#endif
