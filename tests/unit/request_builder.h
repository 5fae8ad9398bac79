/* request_builder: HTTP request heads built by hand for the handshake and extension tests, so
 * they do not depend on the HTTP parser. Include after cmocka.h. */
#ifndef PARLEY_REQUEST_BUILDER_H
#define PARLEY_REQUEST_BUILDER_H

#include <string.h>

#include "http_parser.h"

/* An empty request head: method, target and HTTP/1.<minor>, no headers. */
static inline void req_init(struct http_request *req, const char *method, const char *target,
                            int minor)
{
    memset(req, 0, sizeof *req);
    req->method = method;
    req->method_len = strlen(method);
    req->target = target;
    req->target_len = strlen(target);
    req->version_minor = minor;
}

/* Appends the header name: value (both must outlive req). */
static inline void req_add(struct http_request *req, const char *name, const char *value)
{
    assert_true(req->num_headers < HTTP_MAX_HEADERS);
    struct http_header *h = &req->headers[req->num_headers++];
    h->name = name;
    h->name_len = strlen(name);
    h->value = value;
    h->value_len = strlen(value);
}

#endif
