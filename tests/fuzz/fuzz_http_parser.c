/* fuzz_http_parser: libFuzzer target for the HTTP head parser, the handshake checks, the
 * permessage-deflate negotiation and the Accept-Encoding reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"
#include "ws_extension.h"
#include "ws_handshake.h"

/* Aborts, so libFuzzer reports the input, when an invariant does not hold. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int in_buf(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

/* Checks what the parser promises about a successful parse of buf[0..rc). */
static void check_request(const struct http_request *req, const char *buf, size_t rc)
{
    CHECK(req->method_len > 0 && in_buf(req->method, req->method_len, buf, rc));
    for (size_t i = 0; i < req->method_len; i++)
        CHECK(is_tchar((unsigned char)req->method[i]));
    CHECK(req->target_len > 0 && in_buf(req->target, req->target_len, buf, rc));
    for (size_t i = 0; i < req->target_len; i++) {
        unsigned char c = (unsigned char)req->target[i];
        CHECK(c > 0x20 && c != 0x7F);
    }
    CHECK(req->version_minor == 0 || req->version_minor == 1);
    CHECK(req->num_headers <= HTTP_MAX_HEADERS);
    for (size_t h = 0; h < req->num_headers; h++) {
        const struct http_header *hd = &req->headers[h];
        CHECK(hd->name_len > 0 && in_buf(hd->name, hd->name_len, buf, rc));
        for (size_t i = 0; i < hd->name_len; i++)
            CHECK(is_tchar((unsigned char)hd->name[i]));
        CHECK(in_buf(hd->value, hd->value_len, buf, rc));
        for (size_t i = 0; i < hd->value_len; i++) {
            unsigned char c = (unsigned char)hd->value[i];
            CHECK((c >= 0x20 && c != 0x7F) || c == '\t');
        }
        if (hd->value_len > 0) {
            CHECK(hd->value[0] != ' ' && hd->value[0] != '\t');
            CHECK(hd->value[hd->value_len - 1] != ' ' && hd->value[hd->value_len - 1] != '\t');
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The first byte picks the limit: mostly the server's 8 KiB, sometimes a tiny one so the
     * size checks are reached by short inputs too. */
    size_t max_head = data[0] % 4 == 0 ? 8192 : data[0];
    size_t len = size - 1;
    /* An exactly sized copy, so any read past len is caught by ASan. */
    char *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, len);

    struct http_request req;
    int rc = http_parse_request(buf, len, max_head, &req);
    CHECK(rc == HTTP_BAD || rc == HTTP_NEED_MORE || rc == HTTP_TOO_LARGE || rc > 0);
    if (rc == HTTP_NEED_MORE) {
        CHECK(len <= max_head);
        if (len > 0) /* a prefix of an incomplete head is incomplete too */
            CHECK(http_parse_request(buf, len - 1, max_head, &req) == HTTP_NEED_MORE);
    }
    if (rc > 0) {
        size_t head = (size_t)rc;
        CHECK(head <= len && head <= max_head);
        check_request(&req, buf, head);
        /* The head alone parses the same; one byte less is incomplete. */
        struct http_request again;
        CHECK(http_parse_request(buf, head, max_head, &again) == rc);
        CHECK(again.num_headers == req.num_headers);
        CHECK(http_parse_request(buf, head - 1, max_head, &again) == HTTP_NEED_MORE);

        /* The lookups and the handshake checks must cope with whatever was parsed. */
        for (size_t h = 0; h < req.num_headers; h++) {
            const struct http_header *hd = &req.headers[h];
            (void)http_has_token(hd->value, hd->value_len, "upgrade");
            (void)http_has_token(hd->value, hd->value_len, "websocket");
        }
        /* Accept-Encoding, read from every header: weights are -1 or thousandths in range. */
        struct http_codings codings;
        http_codings_init(&codings);
        for (size_t h = 0; h < req.num_headers; h++)
            http_codings_add(&codings, req.headers[h].value, req.headers[h].value_len);
        CHECK(codings.gzip >= -1 && codings.gzip <= 1000);
        CHECK(codings.identity >= -1 && codings.identity <= 1000);
        CHECK(codings.any >= -1 && codings.any <= 1000);
        if (http_codings_prefer_gzip(&codings))
            CHECK(codings.gzip > 0 || (codings.gzip < 0 && codings.any > 0));
        const struct http_header *host = http_find_header(&req, "Host");
        CHECK((host != NULL) == (http_count_header(&req, "host") > 0));
        (void)http_method_is(&req, "GET");
        char accept[WS_ACCEPT_LEN + 1];
        if (ws_handshake_check(&req, accept))
            CHECK(strlen(accept) == WS_ACCEPT_LEN);
        static const char *const allowed[] = {"https://chat.example.org", "http://[::1]:8080",
                                              "bogus"};
        (void)ws_origin_allowed(&req, NULL, 0);
        (void)ws_origin_allowed(&req, allowed, 3);
        /* Everything but "null" and unparsable Origins passes "*". */
        static const char *const star[] = {"*"};
        const struct http_header *origin = http_find_header(&req, "Origin");
        if (origin == NULL)
            CHECK(ws_origin_allowed(&req, star, 1));
        if (origin != NULL && origin->value_len == 4 && memcmp(origin->value, "null", 4) == 0)
            CHECK(!ws_origin_allowed(&req, star, 1));

        /* Whatever the offers, an agreement is within the RFC's ranges and answers in bounds. */
        struct ws_deflate_agreement a;
        if (ws_extension_negotiate(&req, &a)) {
            CHECK(a.on);
            CHECK(a.server_bits >= 8 && a.server_bits <= 15);
            CHECK(a.client_bits >= 8 && a.client_bits <= 15);
            CHECK(http_count_header(&req, "Sec-WebSocket-Extensions") > 0);
            char out[WS_EXTENSION_RESPONSE_MAX];
            size_t n = ws_extension_response(&a, out);
            CHECK(n == strlen(out) && n < sizeof out);
            static const char base[] =
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
            CHECK(strncmp(out, base, sizeof base - 1) == 0);
        } else {
            CHECK(!a.on);
        }
    }
    free(buf);
    return 0;
}
