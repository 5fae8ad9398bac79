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

#endif
