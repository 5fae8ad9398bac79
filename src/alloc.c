/* alloc: allocation wrappers that abort on out-of-memory. */
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Memory a peer can make us use is bounded by explicit limits elsewhere, so
 * running out here is a broken invariant or a starved machine: stop loudly. */
static void oom(size_t n)
{
    fprintf(stderr, "level=error msg=out_of_memory bytes=%zu\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
