/*
 * chunk: an immutable, reference-counted byte block. Fan-out data is encoded
 * once into a chunk and every recipient's output queue holds a reference, so
 * nothing is copied per recipient. References may be taken and dropped from
 * any thread; the bytes must not change once a second reference exists.
 *
 * A shared chunk may carry one alternative form of its content (for a
 * WebSocket frame: its compressed twin), made once by whichever thread first
 * needs it, published atomically, and freed with the chunk. So a form derived
 * from shared data is made once, not once per recipient.
 */
#ifndef PARLEY_CHUNK_H
#define PARLEY_CHUNK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunk {
    atomic_uint refs;
    uint32_t cap;                /* bytes allocated in data */
    uint32_t len;                /* bytes in use, for the owner's convenience */
    _Atomic(struct chunk *) alt; /* the alternative form, or NULL: see chunk_alt */
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

/* Drops one reference; the last one frees the chunk (and its alternative form). NULL is ignored. */
void chunk_unref(struct chunk *c);
/* Drops n references at once (one atomic operation); as chunk_unref otherwise. */
void chunk_unref_n(struct chunk *c, uint32_t n);

/*
 * References owed, dropped later in one atomic operation per distinct chunk. A thread that drops
 * many references to a few shared chunks in an interleaved order (a worker writing the same
 * messages to one connection after another: A, B, C, A, B, C ...) would otherwise pay an atomic
 * operation per reference, on counters the other workers are updating too. An open-addressing
 * table keyed by the chunk's address counts what is owed to each; the references stay held
 * until chunk_unrefs_drop, so nothing is freed early. It holds CHUNK_UNREFS_MAX chunks at most:
 * one more drops everything owed first. One thread's (no locking); zero-initialised is empty.
 */
#define CHUNK_UNREFS_SLOTS 256u
#define CHUNK_UNREFS_MAX 192u /* 3/4 of the slots: probes stay short */

struct chunk_unrefs {
    uint32_t n;                     /* distinct chunks owed */
    uint8_t used[CHUNK_UNREFS_MAX]; /* their slots, so a drop visits only those */
    struct chunk_owed {
        struct chunk *chunk; /* NULL: free slot */
        uint32_t n;          /* references owed to it */
    } slot[CHUNK_UNREFS_SLOTS];
};

/* Owes one reference to c (the caller's, handed over): dropped by the next chunk_unrefs_drop.
 * NULL is ignored. */
void chunk_unrefs_add(struct chunk_unrefs *u, struct chunk *c);
/* Drops every reference owed (one atomic operation per chunk); u is empty again. */
void chunk_unrefs_drop(struct chunk_unrefs *u);

/*
 * Fan-out without a shared cache line per recipient: chunk_prepay(c, n) takes n references to c
 * in one atomic operation, on behalf of the calling thread; its next n chunk_ref(c) calls take
 * one of those instead of touching c's counter, which the other workers touch too.
 * chunk_prepay_end() gives back what was not used (one operation). The caller holds a reference
 * of its own throughout, so giving back never frees. One prepaid chunk per thread at a time.
 */
void chunk_prepay(struct chunk *c, uint32_t n);
void chunk_prepay_end(void);

/*
 * Returns c's alternative form, or NULL when none was published yet. The
 * result is borrowed: it lives as long as the caller's reference to c (take
 * one with chunk_ref to keep it longer). Any thread.
 */
struct chunk *chunk_alt(struct chunk *c);

/*
 * Publishes alt (the caller's reference, handed over) as c's alternative form
 * unless another thread published one first; then alt is dropped. Returns the
 * form now published (borrowed, as chunk_alt's), and sets *won to whether it
 * is alt. Any thread.
 */
struct chunk *chunk_set_alt(struct chunk *c, struct chunk *alt, bool *won);

#endif
