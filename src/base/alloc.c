/* alloc: allocation wrappers that abort on out-of-memory. */
#include "alloc.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Resident bytes of this process (/proc/self/statm), or 0 when it cannot be read. */
static size_t resident_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long size, resident;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

size_t alloc_trim(void)
{
    /* The resident size after the last trim, and the most heap in use seen since: a resident
     * size well above the first, or use well below the second, means memory was freed that the
     * allocator keeps. The first catches a burst between two calls, the second a storm that was
     * still under way at the last trim. */
    static size_t base, peak_used;
    size_t rss = resident_bytes();
    struct mallinfo2 mi = mallinfo2();
    if (mi.uordblks > peak_used)
        peak_used = mi.uordblks;
    bool grew = rss >= base + ALLOC_TRIM_GROWTH && mi.fordblks >= ALLOC_TRIM_GROWTH;
    bool shrank = peak_used >= mi.uordblks + ALLOC_TRIM_SHRINK;
    if (!grew && !shrank)
        return 0;
    malloc_trim(0);
    size_t after = resident_bytes();
    base = after;
    peak_used = mi.uordblks;
    return rss > after ? rss - after : 0;
}
