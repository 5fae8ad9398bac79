/* utf8: incremental, fail-fast UTF-8 validation as a small hand-written state machine. */
#include "utf8.h"

#include <string.h>

/*
 * DESIGN: a state names what the next byte must be. Besides ACCEPT and
 * REJECT there are the generic "n continuation bytes still to come" states
 * and four states for the second byte of the lead bytes whose second byte
 * has a narrower range (E0, ED, F0, F4): those ranges are what exclude
 * overlong forms, surrogates and code points above U+10FFFF, so checking
 * them at the second byte is what makes the validator fail at the first
 * byte that cannot lead to a valid sequence.
 */
enum {
    S_ACCEPT = UTF8_ACCEPT,
    S_REJECT = UTF8_REJECT,
    S_TAIL1, /* one continuation byte 80..BF to go */
    S_TAIL2, /* two to go, the next one 80..BF */
    S_TAIL3, /* three to go, the next one 80..BF */
    S_E0,    /* after E0: A0..BF, else the form is overlong */
    S_ED,    /* after ED: 80..9F, else a surrogate U+D800..U+DFFF */
    S_F0,    /* after F0: 90..BF, else the form is overlong */
    S_F4,    /* after F4: 80..8F, else above U+10FFFF */
    S_COUNT
};

struct cont_rule {
    uint8_t lo, hi, next;
};

/* What a continuation byte must be in each multi-byte state, and where it leads. */
static const struct cont_rule cont_rules[S_COUNT] = {
    [S_TAIL1] = {0x80, 0xBF, S_ACCEPT}, [S_TAIL2] = {0x80, 0xBF, S_TAIL1},
    [S_TAIL3] = {0x80, 0xBF, S_TAIL2},  [S_E0] = {0xA0, 0xBF, S_TAIL1},
    [S_ED] = {0x80, 0x9F, S_TAIL1},     [S_F0] = {0x90, 0xBF, S_TAIL2},
    [S_F4] = {0x80, 0x8F, S_TAIL2},
};

/* The state after a byte seen at a code point boundary. */
static uint32_t lead_state(uint8_t b)
{
    if (b < 0x80)
        return S_ACCEPT;
    if (b < 0xC2) /* stray continuation byte, or C0/C1 which only start overlongs */
        return S_REJECT;
    if (b < 0xE0)
        return S_TAIL1;
    if (b == 0xE0)
        return S_E0;
    if (b == 0xED)
        return S_ED;
    if (b < 0xF0)
        return S_TAIL2;
    if (b == 0xF0)
        return S_F0;
    if (b < 0xF4)
        return S_TAIL3;
    if (b == 0xF4)
        return S_F4;
    return S_REJECT; /* F5..FF would encode above U+10FFFF */
}

uint32_t utf8_validate(uint32_t state, const uint8_t *p, size_t n)
{
    if (state >= S_COUNT) /* not a state this validator produced */
        return S_REJECT;
    size_t i = 0;
    while (state != S_REJECT && i < n) {
        if (state == S_ACCEPT) {
            /* Chat text is mostly ASCII: skip it eight bytes at a time. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, sizeof w);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            state = lead_state(p[i++]);
        } else {
            const struct cont_rule *r = &cont_rules[state];
            uint8_t b = p[i++];
            state = (b >= r->lo && b <= r->hi) ? r->next : S_REJECT;
        }
    }
    return state;
}

int utf8_is_valid(const uint8_t *p, size_t n)
{
    return utf8_validate(UTF8_ACCEPT, p, n) == UTF8_ACCEPT;
}

int utf8_state_valid(uint32_t state)
{
    return state < S_COUNT;
}
