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

bool http_list_next(const char *value, size_t len, size_t *pos, size_t *start, size_t *end)
{
    size_t i = *pos;
    if (i >= len)
        return false;
    size_t s = i;
    while (i < len && value[i] != ',')
        i++;
    size_t e = i;
    *pos = i + 1; /* past the comma */
    while (s < e && (value[s] == ' ' || value[s] == '\t'))
        s++;
    while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
        e--;
    *start = s;
    *end = e;
    return true;
}

bool http_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t pos = 0, start, end;
    while (http_list_next(value, len, &pos, &start, &end))
        if (end - start == tlen && eq_nocase(value + start, token, tlen))
            return true;
    return false;
}

void http_codings_init(struct http_codings *c)
{
    c->gzip = c->identity = c->any = -1;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Parses a qvalue (RFC 9110 12.4.2: "0" ["." 0*3DIGIT] / "1" ["." 0*3"0"]) into thousandths;
 * returns -1 when s[0..len) is not one. */
static int parse_qvalue(const char *s, size_t len)
{
    if (len == 0 || (s[0] != '0' && s[0] != '1') || (len > 1 && s[1] != '.') || len > 5)
        return -1;
    int q = (s[0] - '0') * 1000;
    int scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* Returns the weight of one element "coding *( OWS ; OWS param )" e[0..len): its q parameter,
 * 1000 without one, -1 when a q is malformed. Other parameters are ignored. */
static int element_weight(const char *e, size_t len)
{
    int q = 1000;
    size_t i = 0;
    while (i < len && is_ows(e[i]))
        i++;
    if (i < len && e[i] != ';')
        return -1; /* junk after the coding's name */
    while (i < len) {
        i++; /* past the ';' */
        size_t start = i;
        while (i < len && e[i] != ';')
            i++;
        size_t end = i;
        while (start < end && is_ows(e[start]))
            start++;
        while (end > start && is_ows(e[end - 1]))
            end--;
        if (end - start >= 2 && (e[start] == 'q' || e[start] == 'Q') && e[start + 1] == '=')
            q = parse_qvalue(e + start + 2, end - start - 2);
        if (q < 0)
            return -1;
    }
    return q;
}

static void raise_weight(int *slot, int q)
{
    if (q > *slot)
        *slot = q;
}

void http_codings_add(struct http_codings *c, const char *value, size_t len)
{
    size_t pos = 0, start, end;
    while (http_list_next(value, len, &pos, &start, &end)) {
        size_t name_end = start;
        while (name_end < end && value[name_end] != ';' && !is_ows(value[name_end]))
            name_end++;
        size_t name_len = name_end - start;
        if (name_len == 0)
            continue; /* empty list elements are allowed and mean nothing */
        int q = element_weight(value + name_end, end - name_end);
        if (q < 0)
            continue;
        const char *name = value + start;
        if ((name_len == 4 && eq_nocase(name, "gzip", 4)) ||
            (name_len == 6 && eq_nocase(name, "x-gzip", 6)))
            raise_weight(&c->gzip, q);
        else if (name_len == 8 && eq_nocase(name, "identity", 8))
            raise_weight(&c->identity, q);
        else if (name_len == 1 && name[0] == '*')
            raise_weight(&c->any, q);
    }
}

bool http_codings_prefer_gzip(const struct http_codings *c)
{
    int gzip = c->gzip >= 0 ? c->gzip : c->any >= 0 ? c->any : 0;
    int identity = c->identity >= 0 ? c->identity : c->any;
    return gzip > 0 && gzip >= identity;
}

bool http_method_is(const struct http_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->method_len == n && memcmp(req->method, m, n) == 0;
}
