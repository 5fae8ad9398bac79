/* wsc: client-side WebSocket framing, the upgrade request and the check of its answer. */
#include "wsc.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int64_t wsc_frame_parse(const uint8_t *buf, size_t len, struct wsc_frame *f)
{
    f->need = 0;
    if (len < 2)
        return 0;
    uint8_t b0 = buf[0], b1 = buf[1];
    if (b0 & 0x70)
        return -1; /* no extension is negotiated, so every reserved bit must be clear */
    if (b1 & 0x80)
        return -1; /* a server must not mask */
    uint8_t op = b0 & 0x0f;
    bool control = op & 0x8;
    if (op > WSC_OP_BINARY && op != WSC_OP_CLOSE && op != WSC_OP_PING && op != WSC_OP_PONG)
        return -1;
    uint64_t plen = b1 & 0x7f;
    size_t hlen = 2;
    if (plen == 126) {
        hlen = 4;
        if (len < hlen)
            return 0;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
    } else if (plen == 127) {
        hlen = 10;
        if (len < hlen)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | buf[2 + i];
        if (plen >> 63)
            return -1;
    }
    if (control && (plen > 125 || !(b0 & 0x80)))
        return -1;
    if (plen > (uint64_t)INT64_MAX - hlen)
        return -1;
    uint64_t total = hlen + plen;
    if (len < total) {
        f->need = total;
        return 0;
    }
    f->opcode = op;
    f->fin = b0 & 0x80;
    f->payload = buf + hlen;
    f->len = plen;
    return (int64_t)total;
}

size_t wsc_frame_write(uint8_t *out, uint8_t opcode, bool fin, const uint8_t *payload, size_t len,
                       uint32_t mask)
{
    size_t h = 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t m[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                    (uint8_t)mask};
    memcpy(out + h, m, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        out[h + i] = payload[i] ^ m[i & 3];
    return h + len;
}

void wsc_key_encode(const uint8_t key[16], char out[25])
{
    EVP_EncodeBlock((unsigned char *)out, key, 16);
    out[24] = '\0';
}

size_t wsc_request_write(char *out, size_t cap, const char *host, const char *path,
                         const char key[25])
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, host, key);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The value of header `name` in the head, trimmed, or NULL; *vlen gets its length. */
static const char *header_value(const char *buf, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *end = buf + len;
    const char *line = memchr(buf, '\n', len);
    while (line && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

const char *wsc_response_check(const char *buf, size_t len, const char key[25])
{
    if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0)
        return "the upgrade was refused (no 101)";
    char src[24 + sizeof ws_guid];
    memcpy(src, key, 24);
    memcpy(src + 24, ws_guid, sizeof ws_guid - 1);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)src, 24 + sizeof ws_guid - 1, digest);
    char want[29];
    EVP_EncodeBlock((unsigned char *)want, digest, SHA_DIGEST_LENGTH);
    size_t vlen;
    const char *v = header_value(buf, len, "Sec-WebSocket-Accept", &vlen);
    if (!v || vlen != 28 || memcmp(v, want, 28) != 0)
        return "wrong or missing Sec-WebSocket-Accept";
    if (header_value(buf, len, "Sec-WebSocket-Extensions", &vlen))
        return "an extension the client did not offer";
    return NULL;
}
