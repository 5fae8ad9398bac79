/* search_cursor: signs and reads the opaque cursors of search replies. */
#include "search_cursor.h"

#include <sodium.h>
#include <string.h>

#define CURSOR_VERSION 1
#define MAC_BYTES 16
/* version, bound, skip, skip_ts, skip_seq, room length, room, mac */
#define PAYLOAD_MAX (1 + 8 + 1 + 8 + 8 + 1 + STORE_ROOM_MAX + MAC_BYTES)

static uint8_t cursor_key[crypto_auth_hmacsha256_KEYBYTES];

void search_cursor_init(void)
{
    crypto_auth_hmacsha256_keygen(cursor_key);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The MAC of payload[0..n) bound to q and room: lengths first, so no two pairs read alike. */
static void mac_of(const uint8_t *payload, size_t n, const char *q, size_t q_len, const char *room,
                   uint8_t out[MAC_BYTES])
{
    crypto_auth_hmacsha256_state st;
    uint8_t len[8], full[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, cursor_key, sizeof cursor_key);
    put_u64(len, q_len);
    crypto_auth_hmacsha256_update(&st, len, sizeof len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)q, q_len);
    size_t room_len = strlen(room);
    put_u64(len, room_len);
    crypto_auth_hmacsha256_update(&st, len, sizeof len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)room, room_len);
    crypto_auth_hmacsha256_update(&st, payload, n);
    crypto_auth_hmacsha256_final(&st, full);
    memcpy(out, full, MAC_BYTES);
}

void search_cursor_encode(const struct search_cursor *c, const char *q, size_t q_len,
                          const char *room, char out[SEARCH_CURSOR_MAX])
{
    uint8_t p[PAYLOAD_MAX];
    size_t n = 0;
    size_t skip_room_len = c->skip ? strnlen(c->skip_room, STORE_ROOM_MAX - 1) : 0;
    p[n++] = CURSOR_VERSION;
    put_u64(p + n, c->bound);
    n += 8;
    p[n++] = c->skip;
    put_u64(p + n, (uint64_t)c->skip_ts);
    n += 8;
    put_u64(p + n, c->skip_seq);
    n += 8;
    p[n++] = (uint8_t)skip_room_len;
    memcpy(p + n, c->skip_room, skip_room_len);
    n += skip_room_len;
    mac_of(p, n, q, q_len, room, p + n);
    n += MAC_BYTES;
    sodium_bin2base64(out, SEARCH_CURSOR_MAX, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool search_cursor_decode(const char *s, size_t len, const char *q, size_t q_len, const char *room,
                          struct search_cursor *out)
{
    uint8_t p[PAYLOAD_MAX];
    size_t n = 0;
    if (len >= SEARCH_CURSOR_MAX ||
        sodium_base642bin(p, sizeof p, s, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    const size_t fixed = 1 + 8 + 1 + 8 + 8 + 1;
    if (n < fixed + MAC_BYTES || p[0] != CURSOR_VERSION || p[9] > 1)
        return false;
    size_t room_len = p[fixed - 1];
    if (room_len >= STORE_ROOM_MAX || n != fixed + room_len + MAC_BYTES)
        return false;
    uint8_t mac[MAC_BYTES];
    mac_of(p, fixed + room_len, q, q_len, room, mac);
    if (sodium_memcmp(mac, p + fixed + room_len, MAC_BYTES) != 0)
        return false;
    memset(out, 0, sizeof *out);
    out->bound = get_u64(p + 1);
    out->skip = p[9];
    out->skip_ts = (int64_t)get_u64(p + 10);
    out->skip_seq = get_u64(p + 18);
    memcpy(out->skip_room, p + fixed, room_len);
    out->skip_room[room_len] = '\0';
    return true;
}
