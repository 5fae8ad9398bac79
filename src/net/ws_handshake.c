/* ws_handshake: WebSocket opening handshake checks, the accept key, the Origin and Host policies.
 */
#include "ws_handshake.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24 /* base64 of 16 bytes: 22 characters and "==" */

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool eq_nocase(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_b64(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '+' || c == '/';
}

/* True when some header called `name` lists `token` (headers may be repeated). */
static bool any_header_has_token(const struct http_request *req, const char *name,
                                 const char *token)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (eq_nocase(h->name, h->name_len, name, n) &&
            http_has_token(h->value, h->value_len, token))
            return true;
    }
    return false;
}

static bool key_valid(const char *key, size_t len)
{
    if (len != WS_KEY_LEN || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64((unsigned char)key[i]))
            return false;
    /* EVP_DecodeBlock counts the bytes that the "==" padding stands for as
     * output: a 16-byte value comes back as 18, the last two being zero. */
    unsigned char out[WS_KEY_LEN];
    return EVP_DecodeBlock(out, (const unsigned char *)key, WS_KEY_LEN) == 18;
}

bool ws_handshake_check(const struct http_request *req, char accept[WS_ACCEPT_LEN + 1])
{
    if (!http_method_is(req, "GET") || req->version_minor != 1)
        return false;
    if (!any_header_has_token(req, "Upgrade", "websocket") ||
        !any_header_has_token(req, "Connection", "upgrade"))
        return false;
    if (http_count_header(req, "Sec-WebSocket-Version") != 1)
        return false;
    const struct http_header *version = http_find_header(req, "Sec-WebSocket-Version");
    if (version->value_len != 2 || memcmp(version->value, "13", 2) != 0)
        return false;
    if (http_count_header(req, "Sec-WebSocket-Key") != 1)
        return false;
    const struct http_header *key = http_find_header(req, "Sec-WebSocket-Key");
    if (!key_valid(key->value, key->value_len))
        return false;
    ws_accept_key(key->value, key->value_len, accept);
    return true;
}

void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char joined[128 + sizeof WS_GUID];
    size_t guid_len = sizeof WS_GUID - 1;

    if (key_len <= 128) {
        /* The usual case: a 24-byte key, hashed with the one-shot SHA1(). */
        memcpy(joined, key, key_len);
        memcpy(joined + key_len, WS_GUID, guid_len);
        SHA1((const unsigned char *)joined, key_len + guid_len, digest);
    } else {
        /* Longer input never passes ws_handshake_check; hash it in two pieces rather than
         * copy it. Failing to allocate a digest context is out of memory: abort, as the
         * allocation wrappers do. */
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
            !EVP_DigestUpdate(ctx, key, key_len) || !EVP_DigestUpdate(ctx, WS_GUID, guid_len) ||
            !EVP_DigestFinal_ex(ctx, digest, NULL))
            abort();
        EVP_MD_CTX_free(ctx);
    }
    /* EVP_EncodeBlock writes the 28 characters and a NUL. */
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

bool ws_handshake_self_check(void)
{
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    char accept[WS_ACCEPT_LEN + 1];
    ws_accept_key(key, sizeof key - 1, accept);
    return strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0;
}

struct origin {
    const char *scheme;
    size_t scheme_len;
    struct addr_endpoint ep; /* port filled in from the scheme when the Origin has none */
};

/* Parses a serialized origin "scheme://host[:port]" (RFC 6454), tolerating one trailing '/'. */
static bool parse_origin(const char *s, size_t n, struct origin *o)
{
    size_t i = 0;
    if (n == 0 || !is_alpha((unsigned char)s[0]))
        return false;
    while (i < n && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                     s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
        return false;
    o->scheme = s;
    o->scheme_len = i;
    i += 3;
    if (n > i && s[n - 1] == '/')
        n--;
    if (!addr_endpoint_parse(s + i, n - i, &o->ep))
        return false;
    if (o->ep.port == -1) {
        if (eq_nocase(o->scheme, o->scheme_len, "http", 4) ||
            eq_nocase(o->scheme, o->scheme_len, "ws", 2))
            o->ep.port = 80;
        else if (eq_nocase(o->scheme, o->scheme_len, "https", 5) ||
                 eq_nocase(o->scheme, o->scheme_len, "wss", 3))
            o->ep.port = 443;
    }
    return true;
}

bool ws_origin_allowed(const struct http_request *req, const char *const *allowed, size_t n_allowed)
{
    return ws_origin_allowed_on(req, allowed, n_allowed, 80);
}

bool ws_origin_allowed_on(const struct http_request *req, const char *const *allowed,
                          size_t n_allowed, int host_port)
{
    size_t count = http_count_header(req, "Origin");
    if (count == 0)
        return true; /* not a browser, so nothing for the policy to protect */
    if (count > 1)
        return false;
    const struct http_header *oh = http_find_header(req, "Origin");
    struct origin o;
    if (eq_nocase(oh->value, oh->value_len, "null", 4) ||
        !parse_origin(oh->value, oh->value_len, &o))
        return false;

    const struct http_header *hh = http_find_header(req, "Host");
    struct addr_endpoint host;
    if (hh != NULL && http_count_header(req, "Host") == 1 &&
        addr_endpoint_parse(hh->value, hh->value_len, &host)) {
        if (host.port == -1)
            host.port = host_port;
        if (addr_endpoint_equal(&o.ep, &host))
            return true;
    }

    for (size_t i = 0; i < n_allowed; i++) {
        const char *a = allowed[i];
        if (strcmp(a, "*") == 0)
            return true;
        struct origin ao;
        if (parse_origin(a, strlen(a), &ao) &&
            eq_nocase(ao.scheme, ao.scheme_len, o.scheme, o.scheme_len) &&
            addr_endpoint_equal(&ao.ep, &o.ep))
            return true;
    }
    return false;
}

bool ws_host_allowed(const struct http_request *req, const char *const *hosts, size_t n,
                     long default_port)
{
    if (n == 0)
        return true;
    const struct http_header *hh = http_find_header(req, "Host");
    struct addr_endpoint host;
    if (hh == NULL || http_count_header(req, "Host") != 1 ||
        !addr_endpoint_parse(hh->value, hh->value_len, &host))
        return false;
    if (host.port == -1)
        host.port = default_port;
    for (size_t i = 0; i < n; i++) {
        struct addr_endpoint want;
        if (!addr_endpoint_parse(hosts[i], strlen(hosts[i]), &want))
            continue; /* refused at start-up already */
        if (want.port == -1)
            want.port = host.port; /* a name without a port: any port */
        if (addr_endpoint_equal(&want, &host))
            return true;
    }
    return false;
}
