/* web_assets: the files of web/, compiled into the binary by tools/embed
 * (build/.../gen/web_assets.c). */
#ifndef PARLEY_WEB_ASSETS_H
#define PARLEY_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;         /* URL path, e.g. "/index.html" */
    const char *content_type; /* e.g. "text/html; charset=utf-8" */
    const unsigned char *data;
    size_t len;
    const unsigned char *gzip; /* the same bytes gzip-compressed, or NULL when not smaller */
    size_t gzip_len;
};

extern const struct web_asset web_assets[];
extern const size_t web_assets_count;

#endif
