/* peer_urls: parses and checks --peer-urls, and derives each node's page origin from its URL. */
#include "peer_urls.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* The characters a URL here may hold: the list is written as it is into a JSON string and into
 * the Content-Security-Policy header, so nothing that would need escaping in either. */
static bool url_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~:/[]%", c) != NULL);
}

/* Checks one URL of len bytes; sets *origin (owned) to the origin of a page on that node. */
static bool parse_one(const char *s, size_t len, char **origin)
{
    if (len == 0 || len > PEER_URL_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!url_char(s[i]))
            return false;
    const char *http_scheme;
    size_t skip;
    if (len > 5 && memcmp(s, "ws://", 5) == 0) {
        http_scheme = "http";
        skip = 5;
    } else if (len > 6 && memcmp(s, "wss://", 6) == 0) {
        http_scheme = "https";
        skip = 6;
    } else {
        return false;
    }
    const char *host = s + skip;
    const char *slash = memchr(host, '/', len - skip);
    if (slash == NULL || slash == host)
        return false;
    int host_len = (int)(slash - host);
    size_t n = strlen(http_scheme) + 3 + (size_t)host_len + 1;
    *origin = xmalloc(n);
    snprintf(*origin, n, "%s://%.*s", http_scheme, host_len, host);
    return true;
}

int peer_urls_parse(struct peer_urls *p, const char *list)
{
    struct peer_urls add = {0};
    const char *s = list;
    for (;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char *origin = NULL;
        if (p->n + add.n >= PEER_URLS_MAX || !parse_one(s, len, &origin)) {
            peer_urls_free(&add);
            return -1;
        }
        add.urls[add.n] = xmalloc(len + 1);
        memcpy(add.urls[add.n], s, len);
        add.urls[add.n][len] = '\0';
        add.origins[add.n++] = origin;
        if (!end)
            break;
        s = end + 1;
    }
    for (size_t i = 0; i < add.n; i++) {
        p->urls[p->n] = add.urls[i];
        p->origins[p->n++] = add.origins[i];
    }
    return 0;
}

void peer_urls_free(struct peer_urls *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->urls[i]);
        free(p->origins[i]);
    }
    p->n = 0;
}
