/* jscan: a one-pass scanner for the top-level fields of a JSON object. */
#include "jscan.h"

#include <string.h>

static const char *const key_names[JK_COUNT_] = {
    [JK_TYPE] = "type",   [JK_ID] = "id",     [JK_SEQ] = "seq",   [JK_ROOM] = "room",
    [JK_TOKEN] = "token", [JK_TEXT] = "text", [JK_CODE] = "code", [JK_MESSAGE] = "message",
};

static const unsigned char key_lens[JK_COUNT_] = {
    [JK_TYPE] = 4,  [JK_ID] = 2,   [JK_SEQ] = 3,  [JK_ROOM] = 4,
    [JK_TOKEN] = 5, [JK_TEXT] = 4, [JK_CODE] = 4, [JK_MESSAGE] = 7,
};

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at an opening quote: returns the position after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* p at the start of a value: returns the position after it, or NULL. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            char ch = *p;
            if (ch == '"') {
                p = skip_string(p, end);
                if (!p)
                    return NULL;
                continue;
            }
            if (ch == '{' || ch == '[')
                depth++;
            else if (ch == '}' || ch == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    /* A number, true, false or null: up to the next delimiter. */
    const char *start = p;
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p > start ? p : NULL;
}

int jscan_fields(const char *buf, size_t len, struct jscan_value out[JK_COUNT_])
{
    memset(out, 0, sizeof(struct jscan_value) * JK_COUNT_);
    const char *p = buf, *end = buf + len;
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return -1;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return 0;
    for (;;) {
        if (p >= end || *p != '"')
            return -1;
        const char *k = p + 1;
        p = skip_string(p, end);
        if (!p)
            return -1;
        size_t klen = (size_t)(p - 1 - k);
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return -1;
        p = skip_ws(p + 1, end);
        const char *v = p;
        p = skip_value(p, end);
        if (!p)
            return -1;
        for (int i = 0; i < JK_COUNT_; i++) {
            if (key_lens[i] == klen && memcmp(key_names[i], k, klen) == 0) {
                bool str = *v == '"';
                out[i].p = str ? v + 1 : v;
                out[i].len = (size_t)(p - v) - (str ? 2 : 0);
                out[i].is_string = str;
                out[i].found = true;
                break;
            }
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        return p < end && *p == '}' ? 0 : -1;
    }
}

bool jscan_is(const struct jscan_value *v, const char *s)
{
    size_t n = strlen(s);
    return v->found && v->is_string && v->len == n && memcmp(v->p, s, n) == 0;
}

bool jscan_u64(const struct jscan_value *v, uint64_t *out)
{
    if (!v->found || v->is_string || v->len == 0 || v->len > 19)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < v->len; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v->p[i] - '0');
    }
    *out = n;
    return true;
}
