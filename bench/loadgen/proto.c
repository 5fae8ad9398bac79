/* proto: parley requests and the stamp of every text. */
#include "proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

size_t proto_stamp_write(char *out, size_t cap, uint64_t t, uint32_t sender, uint32_t k,
                         size_t size)
{
    int n = snprintf(out, cap, "t=%" PRIu64 " s=%" PRIu32 " k=%" PRIu32, t, sender, k);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n;
    if (size > len) {
        if (size >= cap)
            size = cap - 1;
        out[len++] = ' ';
        while (len < size)
            out[len++] = 'x';
        out[len] = '\0';
    }
    return len;
}

/* Reads "<c>=<digits>" at *p; advances past it and one following space. */
static bool field(const char **p, const char *end, char c, uint64_t *v)
{
    const char *q = *p;
    if (end - q < 3 || q[0] != c || q[1] != '=')
        return false;
    q += 2;
    uint64_t n = 0;
    const char *digits = q;
    while (q < end && *q >= '0' && *q <= '9' && q - digits < 20)
        n = n * 10 + (uint64_t)(*q++ - '0');
    if (q == digits)
        return false;
    if (q < end && *q == ' ')
        q++;
    *p = q;
    *v = n;
    return true;
}

bool proto_stamp_read(const char *text, size_t len, uint64_t *t, uint32_t *sender, uint32_t *k)
{
    const char *p = text, *end = text + len;
    uint64_t a, b, c;
    if (!field(&p, end, 't', &a) || !field(&p, end, 's', &b) || !field(&p, end, 'k', &c))
        return false;
    if (b > UINT32_MAX || c > UINT32_MAX)
        return false;
    *t = a;
    *sender = (uint32_t)b;
    *k = (uint32_t)c;
    return true;
}

static size_t fit(int n, size_t cap)
{
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t proto_login_guest(char *out, size_t cap, const char *prefix, uint32_t id)
{
    return fit(
        snprintf(out, cap, "{\"type\":\"login\",\"id\":1,\"name\":\"%s%" PRIu32 "\"}", prefix, id),
        cap);
}

size_t proto_login_token(char *out, size_t cap, const char *token)
{
    return fit(snprintf(out, cap, "{\"type\":\"login\",\"id\":1,\"token\":\"%s\"}", token), cap);
}

size_t proto_join(char *out, size_t cap, const char *room_prefix, uint32_t room, int64_t since)
{
    if (since < 0)
        return fit(snprintf(out, cap, "{\"type\":\"join\",\"id\":2,\"room\":\"%s%" PRIu32 "\"}",
                            room_prefix, room),
                   cap);
    return fit(snprintf(out, cap,
                        "{\"type\":\"join\",\"id\":2,\"room\":\"%s%" PRIu32 "\",\"since\":%" PRId64
                        "}",
                        room_prefix, room, since),
               cap);
}

size_t proto_send(char *out, size_t cap, const char *room_prefix, uint32_t room, uint32_t k,
                  const char *text, size_t text_len, bool cid, uint32_t sender)
{
    int n;
    if (cid)
        n = snprintf(out, cap,
                     "{\"type\":\"send\",\"id\":%" PRIu32 ",\"room\":\"%s%" PRIu32
                     "\",\"text\":\"%.*s\",\"cid\":\"%" PRIu32 "-%" PRIu32 "\"}",
                     k, room_prefix, room, (int)text_len, text, sender, k);
    else
        n = snprintf(out, cap,
                     "{\"type\":\"send\",\"id\":%" PRIu32 ",\"room\":\"%s%" PRIu32
                     "\",\"text\":\"%.*s\"}",
                     k, room_prefix, room, (int)text_len, text);
    return fit(n, cap);
}
