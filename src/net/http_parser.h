/*
 * http_parser: parses an HTTP/1.x request head in the caller's buffer.
 * Pure: no I/O, no allocation, no globals; results are pointer/length pairs
 * into the caller's buffer, valid as long as that buffer is.
 */
#ifndef PARLEY_HTTP_PARSER_H
#define PARLEY_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64

#define HTTP_BAD (-1)       /* malformed: answer 400 */
#define HTTP_NEED_MORE (-2) /* head incomplete: read more and call again */
#define HTTP_TOO_LARGE (-3) /* head over the size limit or too many headers: answer 431 */

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* optional white space around the value is trimmed */
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent, e.g. "/ws?x=1" */
    size_t target_len;
    int version_minor; /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    size_t num_headers;
    struct http_header headers[HTTP_MAX_HEADERS];
};

/*
 * Parses one request head (request line, header lines, empty line) from
 * buf[0..len). Line ends may be CRLF or a bare LF; empty lines before the
 * request line are skipped and count toward the head. max_head bounds the
 * head in bytes, every byte up to and including the empty line: a head of
 * exactly max_head bytes is accepted.
 *
 * Returns the head's length in bytes (> 0) on success; HTTP_NEED_MORE when
 * buf holds no complete head yet and could still hold one within max_head;
 * HTTP_TOO_LARGE when the head is (or must become) longer than max_head or
 * has more than HTTP_MAX_HEADERS headers; HTTP_BAD when it is malformed
 * (not HTTP/1.0 or HTTP/1.1, bad tokens, control characters, obs-fold...).
 */
int http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req);

/* Returns the first header called `name` (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_request *req, const char *name);

/* Returns how many headers are called `name` (case-insensitive). */
size_t http_count_header(const struct http_request *req, const char *name);

/* Returns true when the comma-separated list value[0..len) holds `token`,
 * compared case-insensitively ("keep-alive, Upgrade" holds "upgrade"). */
bool http_has_token(const char *value, size_t len, const char *token);

/* Steps through a comma-separated header list (RFC 9110 5.6.1): the next element of
 * value[*pos..len), trimmed of spaces and tabs, as value[*start..*end) (maybe empty); *pos moves
 * past it. False when the list is over. */
bool http_list_next(const char *value, size_t len, size_t *pos, size_t *start, size_t *end);

/*
 * What Accept-Encoding says of the codings the server can send, as q-values in thousandths
 * (0..1000), or -1 where the field did not name that coding ("*" is `any`).
 */
struct http_codings {
    int gzip; /* "gzip", or its old alias "x-gzip" */
    int identity;
    int any;
};

/* Sets every weight of *c to -1 (nothing named yet). */
void http_codings_init(struct http_codings *c);

/*
 * Adds one Accept-Encoding field value[0..len) to *c (call once per header line: the lines
 * form one list). Codings and the "q" parameter are case-insensitive; an element whose
 * q-value is malformed is ignored; a coding named twice keeps its higher weight.
 */
void http_codings_add(struct http_codings *c, const char *value, size_t len);

/*
 * Returns true when gzip should be sent: it is acceptable (q > 0, named or through "*") and
 * not less wanted than identity. Identity left unnamed (directly or through "*") is acceptable
 * but has no preference, so "gzip;q=0.5" still picks gzip.
 */
bool http_codings_prefer_gzip(const struct http_codings *c);

/* Returns true when the method is exactly `m` (methods are case-sensitive). */
bool http_method_is(const struct http_request *req, const char *m);

#endif
