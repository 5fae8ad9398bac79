/* alloc: allocation wrappers that abort on out-of-memory, so callers never handle NULL. */
#ifndef PARLEY_ALLOC_H
#define PARLEY_ALLOC_H

#include <stddef.h>

/* Each returns memory the caller frees with free(); none returns NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/*
 * Gives free heap back to the system when it is worth it: when resident memory grew by at least
 * ALLOC_TRIM_GROWTH since the last trim (or the start) and at least that much of the heap is
 * free, or when the heap in use fell ALLOC_TRIM_SHRINK below its peak since the last trim, as
 * after a storm of joins or a burst of fan-out whose buffers are gone (1 MiB left a storm's last
 * buffers, about 550 KiB over the arenas at 15,000 clients in one room, 37 bytes a client, until
 * the next storm: the long-lived objects are in pools, so the heap's swings are small). Returns
 * the bytes of resident memory given back, 0 when it did nothing. From one thread, every second
 * or so: it takes each allocator arena's lock for a moment (mallinfo2, malloc_trim).
 */
#define ALLOC_TRIM_GROWTH (1u << 20)
#define ALLOC_TRIM_SHRINK (256u << 10)
size_t alloc_trim(void);

#endif
