/* http_parser: a strict, stateless parser of HTTP/1.x request heads over the caller's buffer. */
#include "http_parser.h"

#include <limits.h>
#include <string.h>

/*
 * DESIGN: each call parses from the start of the buffer, like
 * picohttpparser: a head is at most a few KiB, so re-parsing on every read
 * costs less than carrying state between calls, and a stateless parser is
 * easy to fuzz. The parser only ever looks at buf[0..min(len, max_head)):
 * a head that has not ended within max_head bytes is too large whatever
 * follows, so nothing beyond that can change the answer.
 */

/* tchar of RFC 9110 5.6.2: the characters of a method or a header name. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Control characters: C0 and DEL. Bytes >= 0x80 are obs-text and allowed. */
static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7F;
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool eq_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/*
 * Finds the line starting at buf[pos] within buf[0..limit). On success
 * stores the end of its content (before CR LF or LF) in *end and the start
 * of the next line in *next, and returns true. A CR that is not right
 * before the LF stays in the content, where it is refused as a control
 * character.
 */
static bool next_line(const char *buf, size_t pos, size_t limit, size_t *end, size_t *next)
{
    const char *lf = memchr(buf + pos, '\n', limit - pos);
    if (lf == NULL)
        return false;
    size_t e = (size_t)(lf - buf);
    *next = e + 1;
    if (e > pos && buf[e - 1] == '\r')
        e--;
    *end = e;
    return true;
}

/* Parses "METHOD SP target SP HTTP/1.x" in line[0..n). */
static int parse_request_line(const char *line, size_t n, struct http_request *req)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == n || line[i] != ' ')
        return HTTP_BAD;
    req->method = line;
    req->method_len = i;
    i++;

    size_t t = i;
    while (i < n && line[i] != ' ' && !is_ctl((unsigned char)line[i]))
        i++;
    if (i == t || i == n || line[i] != ' ')
        return HTTP_BAD;
    req->target = line + t;
    req->target_len = i - t;
    i++;

    /* The rest must be "HTTP/1." and one digit, nothing after it. */
    static const char proto[] = "HTTP/1.";
    size_t plen = sizeof proto - 1;
    if (n - i != plen + 1 || memcmp(line + i, proto, plen) != 0)
        return HTTP_BAD;
    char minor = line[n - 1];
    if (minor != '0' && minor != '1')
        return HTTP_BAD;
    req->version_minor = minor - '0';
    return 0;
}

/* Parses "name: value" in line[0..n) into h; white space around the value is dropped. */
static int parse_header_line(const char *line, size_t n, struct http_header *h)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)line[i]))
        i++;
    /* White space before the colon is refused (RFC 9112 5.1): it is a smuggling vector. */
    if (i == 0 || i == n || line[i] != ':')
        return HTTP_BAD;
    h->name = line;
    h->name_len = i;
    i++;

    size_t start = i, end = i;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == ' ' || c == '\t')
            continue;
        if (is_ctl(c))
            return HTTP_BAD;
        if (end == start)
            start = i; /* first non-blank byte */
        end = i + 1;
    }
    h->value = line + start;
    h->value_len = end - start;
    return 0;
}

/*
 * Returns true when the incomplete line line[0..n) can already not become
 * valid: a control character other than HTAB (or a CR that may yet be
 * followed by its LF), or a request line whose method holds a non-token
 * byte. This answers 400 to a TLS handshake or binary noise at once
 * instead of waiting for max_head bytes or a newline.
 */
static bool partial_line_bad(const char *line, size_t n, bool request_line)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (is_ctl(c) && c != '\t' && !(c == '\r' && i == n - 1))
            return true;
    }
    if (request_line) {
        size_t i = 0;
        while (i < n && is_tchar((unsigned char)line[i]))
            i++;
        if (i < n && line[i] != ' ' && !(line[i] == '\r' && i == n - 1))
            return true;
        if (i == 0 && n > 0 && line[0] == ' ')
            return true;
    }
    return false;
}

int http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req)
{
    size_t limit = len < max_head ? len : max_head;
    size_t pos = 0, end, next;
    bool have_request_line = false;

    req->num_headers = 0;
    while (pos < limit && next_line(buf, pos, limit, &end, &next)) {
        const char *line = buf + pos;
        size_t n = end - pos;
        pos = next;
        if (!have_request_line) {
            if (n == 0)
                continue; /* RFC 9112 2.2: empty lines before the request line are skipped */
            if (parse_request_line(line, n, req) != 0)
                return HTTP_BAD;
            have_request_line = true;
            continue;
        }
        if (n == 0)
            return pos <= INT_MAX ? (int)pos : HTTP_TOO_LARGE;
        if (line[0] == ' ' || line[0] == '\t')
            return HTTP_BAD; /* obs-fold, or white space before the first header */
        if (req->num_headers == HTTP_MAX_HEADERS)
            return HTTP_TOO_LARGE;
        if (parse_header_line(line, n, &req->headers[req->num_headers]) != 0)
            return HTTP_BAD;
        req->num_headers++;
    }
    if (partial_line_bad(buf + pos, limit - pos, !have_request_line))
        return HTTP_BAD;
    /* No complete head within the first max_head bytes: it can only end later. */
    return len > max_head ? HTTP_TOO_LARGE : HTTP_NEED_MORE;
}

const struct http_header *http_find_header(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && eq_nocase(h->name, name, n))
            return h;
    }
    return NULL;
}

size_t http_count_header(const struct http_request *req, const char *name)
{
    size_t n = strlen(name), count = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && eq_nocase(h->name, name, n))
            count++;
    }
    return count;
}

bool http_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        i++; /* past the comma */
        while (start < end && (value[start] == ' ' || value[start] == '\t'))
            start++;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end - start == tlen && eq_nocase(value + start, token, tlen))
            return true;
    }
    return false;
}

bool http_method_is(const struct http_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->method_len == n && memcmp(req->method, m, n) == 0;
}
