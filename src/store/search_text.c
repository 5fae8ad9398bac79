/* search_text: splits texts and queries into folded words, and queries into FTS5 MATCH terms. */
#include "search_text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "alloc.h"
#include "text.h"

/* A growing string, always NUL-terminated once anything is in it. */
struct strbuf {
    char *p;
    size_t len, cap;
};

static void put(struct strbuf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static char *finish(struct strbuf *b, size_t *out_len)
{
    if (!b->p)
        put(b, "", 0);
    if (out_len)
        *out_len = b->len;
    return b->p;
}

/* Rule 71's word characters: Unicode letters, marks and digits (categories L*, M*, N*). */
static bool is_word_char(int32_t cp)
{
    utf8proc_category_t k = utf8proc_category(cp);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_NO;
}

/*
 * The simple case folding of cp (CaseFolding.txt, statuses C and S). utf8proc folds fully (C and
 * F): where that gives one code point it is the simple folding too. Where it gives several (ß ->
 * ss, ﬁ -> fi) the simple folding, if the character has one, is its lower case (ẞ -> ß, ᾈ -> ᾀ),
 * and the character itself otherwise, which is its lower case as well, but for İ, whose only
 * foldings are full and Turkic.
 */
static int32_t simple_fold(int32_t cp)
{
    if (cp == 0x130)
        return cp;
    utf8proc_int32_t seq[8];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(cp, seq, 8, UTF8PROC_CASEFOLD, &boundclass);
    if (n == 1)
        return seq[0];
    return utf8proc_tolower(cp);
}

/* s[0..n) (valid UTF-8) in NFC, appended to out. */
static void put_nfc(struct strbuf *out, const uint8_t *s, size_t n)
{
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t len =
        utf8proc_map(s, (utf8proc_ssize_t)n, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (len == UTF8PROC_ERROR_NOMEM)
        abort(); /* as xmalloc does: no caller handles a lack of memory */
    if (len > 0)
        put(out, nfc, (size_t)len);
    free(nfc);
}

/* Appends the folded form of the word w[0..n) (valid UTF-8, word characters only) to out:
 * NFC, simple case folding, NFC again (folding can undo a composition's preconditions). */
static void put_folded(struct strbuf *out, const uint8_t *w, size_t n)
{
    /* Most words are ASCII: already NFC, and their simple case folding is ASCII lower case. */
    size_t ascii = 0;
    while (ascii < n && w[ascii] < 0x80)
        ascii++;
    if (ascii == n) {
        size_t at = out->len;
        put(out, w, n);
        for (size_t i = at; i < out->len; i++)
            if (out->p[i] >= 'A' && out->p[i] <= 'Z')
                out->p[i] = (char)(out->p[i] - 'A' + 'a');
        return;
    }
    struct strbuf nfc = {0}, folded = {0};
    put_nfc(&nfc, w, n);
    for (size_t i = 0; i < nfc.len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const uint8_t *)nfc.p + i, (utf8proc_ssize_t)(nfc.len - i), &cp);
        if (k <= 0)
            break; /* cannot happen: utf8proc wrote it */
        uint8_t enc[4];
        put(&folded, enc, (size_t)utf8proc_encode_char(simple_fold(cp), enc));
        i += (size_t)k;
    }
    put_nfc(out, (const uint8_t *)folded.p, folded.len);
    free(nfc.p);
    free(folded.p);
}

/*
 * Finds the next word of s[*pos..n): sets [*start, *end) to its bytes and *pos past it, and
 * returns true; false when no word is left. Every character that is not a word character,
 * and every byte that begins no UTF-8 sequence, separates; a byte of `stops` (if not NULL)
 * met before any word ends the search there, left at *pos for the caller (a query's quote).
 */
static bool next_word(const uint8_t *s, size_t n, size_t *pos, size_t *start, size_t *end,
                      const char *stops)
{
    size_t i = *pos;
    bool in_word = false;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k;
        bool word;
        if (s[i] < 0x80) { /* ASCII: letters and digits are its only word characters */
            k = 1;
            word = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                   (s[i] >= '0' && s[i] <= '9');
        } else {
            k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
            word = k > 0 && is_word_char(cp);
        }
        if (!word && in_word)
            break;
        if (!word && stops && s[i] < 0x80 && s[i] && strchr(stops, s[i])) {
            *pos = i;
            return false;
        }
        if (word && !in_word) {
            in_word = true;
            *start = i;
        }
        i += k > 0 ? (size_t)k : 1;
    }
    *pos = i;
    if (in_word)
        *end = i;
    return in_word;
}

char *search_text_index(const char *text, size_t len, size_t *out_len)
{
    const uint8_t *s = (const uint8_t *)text;
    struct strbuf out = {0};
    size_t pos = 0, start, end;
    while (next_word(s, len, &pos, &start, &end, NULL)) {
        if (out.len > 0)
            put(&out, " ", 1);
        put_folded(&out, s + start, end - start);
    }
    return finish(&out, out_len);
}

/* --- queries --- */

/* Opens the next term of a MATCH expression: a space between terms, then its quote. */
static void open_term(struct strbuf *out, size_t *terms)
{
    if ((*terms)++ > 0)
        put(out, " ", 1);
    put(out, "\"", 1);
}

#define QUERY_FAIL(verdict, text)                                                                  \
    do {                                                                                           \
        if (why)                                                                                   \
            *why = (text);                                                                         \
        free(out.p);                                                                               \
        free(phrase.p);                                                                            \
        return (verdict);                                                                          \
    } while (0)

enum search_query_verdict search_query_parse(const char *q, size_t len, char **match,
                                             const char **why)
{
    const uint8_t *s = (const uint8_t *)q;
    struct strbuf out = {0}, phrase = {0};
    *match = NULL;

    /* Trimmed, then refused characters before the length: rule 5 ranks bad_request first. */
    size_t n;
    switch (text_check_message(q, len, SIZE_MAX, &n)) {
    case TEXT_OK:
        break;
    case TEXT_EMPTY:
        QUERY_FAIL(SEARCH_QUERY_BAD, "the query is empty");
    default:
        QUERY_FAIL(SEARCH_QUERY_BAD, "the query holds a control character or is not UTF-8");
    }
    if (text_has_control(q, n))
        QUERY_FAIL(SEARCH_QUERY_BAD, "the query holds a control character");
    size_t points = 0;
    for (size_t i = 0; i < n; i++)
        points += (s[i] & 0xC0) != 0x80;
    /* Over the length is too_long, but only once nothing else is wrong (rule 75: bad_request
     * ranks first), so the query is read to its end either way. */
    bool too_long = points > SEARCH_QUERY_MAX_POINTS;

    bool quoted = false;
    size_t terms = 0, phrase_words = 0;
    size_t pos = 0;
    while (pos < n) {
        size_t start, end;
        if (next_word(s, n, &pos, &start, &end, "\"")) {
            if (quoted) {
                /* A phrase's words, in a row: one term when the quote closes. */
                if (phrase_words++ > 0)
                    put(&phrase, " ", 1);
                put_folded(&phrase, s + start, end - start);
                continue;
            }
            open_term(&out, &terms);
            put_folded(&out, s + start, end - start);
            put(&out, "\"", 1);
            /* A word directly followed by a star, outside quotes, is a prefix. */
            if (pos < n && s[pos] == '*') {
                put(&out, "*", 1);
                pos++;
            }
            continue;
        }
        if (pos >= n)
            break;
        /* next_word stopped at a quote. */
        pos++;
        if (quoted && phrase_words > 0) {
            open_term(&out, &terms);
            put(&out, phrase.p, phrase.len);
            put(&out, "\"", 1);
        }
        quoted = !quoted;
        phrase.len = 0;
        phrase_words = 0;
    }
    if (quoted)
        QUERY_FAIL(SEARCH_QUERY_BAD, "the query has an odd number of quotes");
    if (terms == 0)
        QUERY_FAIL(SEARCH_QUERY_BAD, "the query has no word to search for");
    if (too_long)
        QUERY_FAIL(SEARCH_QUERY_TOO_LONG, "the query is over 200 characters");
    free(phrase.p);
    *match = finish(&out, NULL);
    return SEARCH_QUERY_OK;
}
