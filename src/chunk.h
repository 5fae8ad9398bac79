/*
 * chunk: an immutable, reference-counted byte block. Fan-out data is encoded
 * once into a chunk and every recipient's output queue holds a reference, so
 * nothing is copied per recipient. References may be taken and dropped from
 * any thread; the bytes must not change once a second reference exists.
 */
#ifndef PARLEY_CHUNK_H
#define PARLEY_CHUNK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct chunk {
    atomic_uint refs;
    uint32_t cap; /* bytes allocated in data */
    uint32_t len; /* bytes in use, for the owner's convenience */
    uint8_t data[];
};

/* Returns a new chunk of `cap` bytes with one reference held by the caller; len is 0. */
struct chunk *chunk_new(size_t cap);

/* Returns a chunk holding a copy of p[0..n), len n, one reference. */
struct chunk *chunk_from(const void *p, size_t n);

/* Grows a chunk the caller holds the only reference to; returns it (maybe moved). */
struct chunk *chunk_grow(struct chunk *c, size_t cap);

/* Takes one more reference; returns c. */
struct chunk *chunk_ref(struct chunk *c);

/* Drops one reference; the last one frees the chunk. NULL is ignored. */
void chunk_unref(struct chunk *c);

#endif
