/* peer_urls: --peer-urls, the WebSocket URLs of the nodes a web page may move between. */
#ifndef PARLEY_PEER_URLS_H
#define PARLEY_PEER_URLS_H

#include <stddef.h>

/* At most this many URLs, each at most PEER_URL_MAX bytes: the list goes into every page's
 * Content-Security-Policy header. */
#define PEER_URLS_MAX 16
#define PEER_URL_MAX 200

struct peer_urls {
    char *urls[PEER_URLS_MAX];    /* "ws://host[:port]/path" or "wss://...", owned */
    char *origins[PEER_URLS_MAX]; /* the origin of a page served by each: "http://host[:port]" */
    size_t n;
};

/* Adds the URLs of a comma-separated list to *p. Returns 0, or -1 with *p unchanged when an
 * entry is not a plain ws:// or wss:// URL with a host and a path, or there would be too many. */
int peer_urls_parse(struct peer_urls *p, const char *list);

void peer_urls_free(struct peer_urls *p);

#endif
