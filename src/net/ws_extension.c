/* ws_extension: Sec-WebSocket-Extensions offers and the permessage-deflate negotiation. */
#include "ws_extension.h"

#include <stdio.h>
#include <string.h>

/*
 * DESIGN: RFC 6455 section 9.1's grammar, read with a cursor:
 *   extension-list = 1#extension
 *   extension      = extension-token *( ";" extension-param )
 *   extension-param = token [ "=" (token | quoted-string) ]
 * with optional white space around the separators and empty list elements
 * allowed, as for any HTTP list (RFC 7230 section 7). An element that breaks
 * the grammar is skipped up to the next comma outside a quoted string; so is
 * every offer that is not an acceptable permessage-deflate, and the first
 * acceptable one wins. Names are compared case-insensitively, as HTTP tokens.
 */

/* One parameter value, unescaped. Acceptable values are window bits (at most 2 characters);
 * anything longer is kept as "too long", which no check accepts. */
#define VALUE_MAX 8

struct cursor {
    const char *s;
    size_t n, pos;
};

static bool is_tchar(unsigned char c)
{
    /* RFC 7230 section 3.2.6: ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void skip_ows(struct cursor *k)
{
    while (k->pos < k->n && (k->s[k->pos] == ' ' || k->s[k->pos] == '\t'))
        k->pos++;
}

static bool peek(const struct cursor *k, char c)
{
    return k->pos < k->n && k->s[k->pos] == c;
}

/* Reads a token; returns its length (0: none here). */
static size_t read_token(struct cursor *k, const char **tok)
{
    *tok = k->s + k->pos;
    size_t start = k->pos;
    while (k->pos < k->n && is_tchar((unsigned char)k->s[k->pos]))
        k->pos++;
    return k->pos - start;
}

static bool name_is(const char *tok, size_t len, const char *want)
{
    if (len != strlen(want))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)want[i])
            return false;
    }
    return true;
}

/* A parameter value: a token or a quoted-string, unescaped into v; *len is its length, or
 * VALUE_MAX + 1 for one too long or not a token, which no check accepts. Returns false when the
 * value is not well-formed (none there, or a quoted string without its closing quote). */
static bool read_value(struct cursor *k, char v[VALUE_MAX], size_t *len)
{
    *len = 0;
    if (!peek(k, '"')) {
        const char *tok;
        size_t n = read_token(k, &tok);
        if (n == 0)
            return false;
        *len = n <= VALUE_MAX ? n : VALUE_MAX + 1;
        memcpy(v, tok, n <= VALUE_MAX ? n : 0);
        return true;
    }
    k->pos++;
    bool token = true;
    for (;;) {
        if (k->pos == k->n)
            return false;
        unsigned char c = (unsigned char)k->s[k->pos++];
        if (c == '"')
            break;
        if (c == '\\') {
            if (k->pos == k->n)
                return false;
            c = (unsigned char)k->s[k->pos++];
        }
        token = token && is_tchar(c); /* RFC 6455 9.1: unescaped, it must be a token too */
        if (*len < VALUE_MAX)
            v[*len] = (char)c;
        if (*len <= VALUE_MAX)
            (*len)++;
    }
    if (!token || *len == 0)
        *len = VALUE_MAX + 1;
    return true;
}

/* Window bits: "8" to "15", decimal without leading zeros (RFC 7692 sections 7.1.2.1-2). */
static int window_bits(const char *v, size_t len)
{
    if (len == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

/* Skips to just past the next comma that is not inside a quoted string, or to the end. */
static void skip_element(struct cursor *k)
{
    bool quoted = false;
    while (k->pos < k->n) {
        char c = k->s[k->pos++];
        if (quoted && c == '\\' && k->pos < k->n)
            k->pos++;
        else if (c == '"')
            quoted = !quoted;
        else if (c == ',' && !quoted)
            return;
    }
}

enum { P_SERVER_NCT = 1, P_CLIENT_NCT = 2, P_SERVER_BITS = 4, P_CLIENT_BITS = 8 };

/*
 * Reads the parameters of the permessage-deflate offer at k (just after its name). Returns true
 * when the element is well-formed and acceptable, with *a filled; in every case k ends after the
 * element's comma (or at the end).
 */
static bool read_offer(struct cursor *k, struct ws_deflate_agreement *a)
{
    unsigned seen = 0;
    bool ok = true;
    memset(a, 0, sizeof *a);
    a->server_bits = 15;
    a->client_bits = 15;
    for (;;) {
        skip_ows(k);
        if (k->pos == k->n)
            break;
        if (peek(k, ',')) {
            k->pos++;
            break;
        }
        if (!peek(k, ';'))
            goto malformed;
        k->pos++;
        skip_ows(k);
        const char *name;
        size_t name_len = read_token(k, &name);
        if (name_len == 0)
            goto malformed;
        skip_ows(k);
        char v[VALUE_MAX];
        size_t vlen = 0;
        bool has_value = false;
        if (peek(k, '=')) {
            k->pos++;
            skip_ows(k);
            if (!read_value(k, v, &vlen))
                goto malformed;
            has_value = true;
        }
        unsigned bit;
        if (name_is(name, name_len, "server_no_context_takeover"))
            bit = P_SERVER_NCT;
        else if (name_is(name, name_len, "client_no_context_takeover"))
            bit = P_CLIENT_NCT;
        else if (name_is(name, name_len, "server_max_window_bits"))
            bit = P_SERVER_BITS;
        else if (name_is(name, name_len, "client_max_window_bits"))
            bit = P_CLIENT_BITS;
        else
            bit = 0; /* RFC 7692 section 7: an unknown parameter declines the offer */
        if (bit == 0 || (seen & bit))
            ok = false; /* so does a repeated one (section 7) */
        seen |= bit;
        int bits = has_value ? window_bits(v, vlen) : -1;
        switch (bit) {
        case P_SERVER_NCT:
        case P_CLIENT_NCT:
            if (has_value)
                ok = false; /* sections 7.1.1.1 and 7.1.1.2: these have no value */
            break;
        case P_SERVER_BITS:
            if (bits < 0)
                ok = false; /* section 7.1.2.1: a value 8..15 is required */
            else
                a->server_bits = (uint8_t)bits, a->server_bits_asked = true;
            break;
        case P_CLIENT_BITS:
            if (has_value && bits < 0)
                ok = false; /* section 7.1.2.2: no value, or 8..15 */
            else
                a->client_bits = (uint8_t)(has_value ? bits : 15);
            a->client_bits_offered = true;
            break;
        default:
            break;
        }
    }
    a->on = ok;
    return ok;
malformed:
    skip_element(k);
    memset(a, 0, sizeof *a);
    return false;
}

/* Looks for an acceptable offer in one header value. */
static bool negotiate_value(const char *s, size_t n, struct ws_deflate_agreement *out)
{
    struct cursor k = {s, n, 0};
    while (k.pos < k.n) {
        skip_ows(&k);
        if (peek(&k, ',')) { /* an empty list element */
            k.pos++;
            continue;
        }
        if (k.pos == k.n)
            break;
        const char *name;
        size_t len = read_token(&k, &name);
        if (len > 0 && name_is(name, len, "permessage-deflate")) {
            if (read_offer(&k, out))
                return true;
        } else {
            skip_element(&k); /* another extension, or not a token at all */
        }
    }
    return false;
}

bool ws_extension_negotiate(const struct http_request *req, struct ws_deflate_agreement *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (name_is(h->name, h->name_len, "sec-websocket-extensions") &&
            negotiate_value(h->value, h->value_len, out))
            return true;
    }
    memset(out, 0, sizeof *out);
    return false;
}

size_t ws_extension_response(const struct ws_deflate_agreement *a,
                             char out[WS_EXTENSION_RESPONSE_MAX])
{
    /*
     * Both no_context_takeover parameters always. RFC 7692 section 7.1.1.1: a server MAY include
     * server_no_context_takeover even when the offer did not; section 7.1.1.2: a server MAY
     * include client_no_context_takeover in a response, offered or not.
     * server_max_window_bits only when the client asked (section 7.1.2.1: the same or a smaller
     * value; we answer the same, the best compression it allows). client_max_window_bits only
     * when offered (section 7.1.2.2: a response MUST NOT carry it otherwise), with the value
     * offered or, without one, 15: our inflater takes any window, so we do not limit the client.
     */
    int n = snprintf(out, WS_EXTENSION_RESPONSE_MAX,
                     "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if (a->server_bits_asked)
        n += snprintf(out + n, WS_EXTENSION_RESPONSE_MAX - (size_t)n, "; server_max_window_bits=%u",
                      (unsigned)a->server_bits);
    if (a->client_bits_offered)
        n += snprintf(out + n, WS_EXTENSION_RESPONSE_MAX - (size_t)n, "; client_max_window_bits=%u",
                      (unsigned)a->client_bits);
    return (size_t)n;
}
