/* text: the protocol's rules for user names, room names, dm room names and message text. */
#include "text.h"

#include <stdint.h>
#include <string.h>

#include "utf8.h"

static bool is_user_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool text_valid_user(const char *s, size_t n)
{
    if (n < 1 || n > TEXT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_user_char((unsigned char)s[i]))
            return false;
    return true;
}

void text_lower(const char *s, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = lower(s[i]);
    out[n] = '\0';
}

uint32_t text_name_caps(const char *name)
{
    uint32_t caps = 0;
    for (size_t i = 0; i < TEXT_NAME_MAX && name[i]; i++)
        if (name[i] >= 'A' && name[i] <= 'Z')
            caps |= 1u << i;
    return caps;
}

void text_name_raise(const char *lc, size_t len, uint32_t caps, char *out)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (char)(caps >> i & 1 ? lc[i] - 'a' + 'A' : lc[i]);
    out[len] = '\0';
}

void text_skeleton(const char *name, size_t n, char out[TEXT_NAME_MAX + 1])
{
    if (n > TEXT_NAME_MAX)
        n = TEXT_NAME_MAX;
    while (n > 0 && (name[n - 1] == '.' || name[n - 1] == '_' || name[n - 1] == '-'))
        n--;
    for (size_t i = 0; i < n; i++) {
        char c = lower(name[i]);
        out[i] = c == 'i' || c == '1' ? 'l' : c == '0' ? 'o' : c;
    }
    out[n] = '\0';
}

bool text_has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        /* C1 controls are U+0080-009F, in UTF-8 the two bytes C2 80 .. C2 9F. */
        if (c < 0x20 || c == 0x7F || (c == 0xC2 && i + 1 < n && (uint8_t)s[i + 1] <= 0x9F))
            return true;
    }
    return false;
}

size_t text_reordering_char(const char *p, size_t left)
{
    const uint8_t *u = (const uint8_t *)p;
    if (left < 3 || u[0] != 0xE2)
        return 0;
    /* U+2028-202E are E2 80 A8..AE; U+2066-2069 are E2 81 A6..A9. */
    if ((u[1] == 0x80 && u[2] >= 0xA8 && u[2] <= 0xAE) ||
        (u[1] == 0x81 && u[2] >= 0xA6 && u[2] <= 0xA9))
        return 3;
    return 0;
}

bool text_fold_room(const char *s, size_t n, char out[TEXT_NAME_MAX + 1])
{
    if (n < 1 || n > TEXT_NAME_MAX)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        char c = lower(s[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            goto fail;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
fail:
    out[0] = '\0';
    return false;
}

/* A user name as it appears in a dm room: valid and already lower case. */
static bool valid_lower_user(const char *s, size_t n)
{
    if (!text_valid_user(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return false;
    return true;
}

/* Byte order of two names of given lengths (a proper prefix sorts first), like strcmp. */
static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int r = memcmp(a, b, an < bn ? an : bn);
    if (r != 0)
        return r;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

bool text_parse_dm_room(const char *s, size_t n, char a[TEXT_NAME_MAX + 1],
                        char b[TEXT_NAME_MAX + 1])
{
    a[0] = b[0] = '\0';
    if (n < 3 || memcmp(s, "dm:", 3) != 0)
        return false;
    /* Names cannot hold ':', so the first ':' after the prefix is the separator and
     * any further ':' makes the second name invalid. */
    const char *first = s + 3;
    const char *colon = memchr(first, ':', n - 3);
    if (!colon)
        return false;
    size_t an = (size_t)(colon - first);
    const char *second = colon + 1;
    size_t bn = n - 3 - an - 1;
    if (!valid_lower_user(first, an) || !valid_lower_user(second, bn))
        return false;
    /* Strictly ascending: sorted and distinct, so each pair has exactly one name. */
    if (name_cmp(first, an, second, bn) >= 0)
        return false;
    memcpy(a, first, an);
    a[an] = '\0';
    memcpy(b, second, bn);
    b[bn] = '\0';
    return true;
}

void text_dm_room(const char *user1, const char *user2, char out[TEXT_DM_ROOM_MAX + 1])
{
    char x[TEXT_NAME_MAX + 1], y[TEXT_NAME_MAX + 1];
    /* strnlen keeps out within its bounds even if a caller breaks the "valid names" contract. */
    size_t xn = strnlen(user1, TEXT_NAME_MAX), yn = strnlen(user2, TEXT_NAME_MAX);
    text_lower(user1, xn, x);
    text_lower(user2, yn, y);
    const char *lo = x, *hi = y;
    size_t lon = xn, hin = yn;
    if (name_cmp(x, xn, y, yn) > 0) {
        lo = y, lon = yn;
        hi = x, hin = xn;
    }
    size_t k = 0;
    memcpy(out + k, "dm:", 3);
    k += 3;
    memcpy(out + k, lo, lon);
    k += lon;
    out[k++] = ':';
    memcpy(out + k, hi, hin);
    k += hin;
    out[k] = '\0';
}

/* Decodes the code point at p, which must start a sequence of valid UTF-8; *len gets its size. */
static uint32_t decode(const uint8_t *p, size_t *len)
{
    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if (p[0] < 0xE0) {
        *len = 2;
        return ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    }
    if (p[0] < 0xF0) {
        *len = 3;
        return ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
           ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

/* The Unicode White_Space property (PropList.txt), the set rule 16 trims. */
static bool is_white_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

bool text_has_white_space(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t len;
        if (is_white_space(decode(p + i, &len)))
            return true;
        i += len;
    }
    return false;
}

/* Rule 41: C0 but newline and tab, DEL, and C1. */
static bool is_refused_control(uint32_t cp)
{
    return (cp < 0x20 && cp != '\n' && cp != '\t') || (cp >= 0x7F && cp <= 0x9F);
}

enum text_verdict text_check_message(const char *s, size_t n, size_t max_points,
                                     size_t *trimmed_len)
{
    const uint8_t *p = (const uint8_t *)s;
    /* Whitespace is valid UTF-8, so the whole text is valid exactly when what is left after
     * trimming is; checking the whole first lets the trimming below decode backwards safely. */
    if (!utf8_is_valid(p, n))
        return TEXT_BAD;

    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && (p[start] & 0xC0) == 0x80)
            start--;
        size_t len;
        if (!is_white_space(decode(p + start, &len)))
            break;
        end = start;
    }
    if (end == 0)
        return TEXT_EMPTY;

    /* Refused characters are checked over the whole rest before the length, so a text that is
     * both too long and malformed is a bad_request, which rule 5 ranks first. */
    size_t points = 0;
    for (size_t i = 0; i < end;) {
        size_t len;
        if (is_refused_control(decode(p + i, &len)))
            return TEXT_BAD;
        i += len;
        points++;
    }
    if (points > max_points)
        return TEXT_TOO_LONG;
    *trimmed_len = end;
    return TEXT_OK;
}

/* The length of the valid UTF-8 sequence at p[0..left), or 0 when none starts there. */
static size_t valid_sequence(const uint8_t *p, size_t left)
{
    size_t len = p[0] < 0x80 ? 1 : p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : 2;
    if (len > left || !utf8_is_valid(p, len))
        return 0;
    return len;
}

bool text_needs_repair(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t len = valid_sequence(p + i, n - i), unused;
        if (!len || is_refused_control(decode(p + i, &unused)))
            return true;
        i += len;
    }
    return false;
}

size_t text_repair(const char *s, size_t n, char *out)
{
    static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = valid_sequence(p + i, n - i), unused;
        if (len && !is_refused_control(decode(p + i, &unused))) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, replacement, sizeof replacement);
            o += sizeof replacement;
            i += len ? len : 1;
        }
    }
    return o;
}
