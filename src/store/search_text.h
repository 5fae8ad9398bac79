/*
 * search_text: the words of message texts and search queries, folded the same way for the
 * full-text index (protocol 1.1, rule 71). Pure: no I/O, no globals; results are allocated and
 * the caller frees them.
 *
 * DESIGN: the server decides what a word is and how it is folded, not the index, so every store
 * backend matches the same tokens: a word is a maximal run of Unicode letters, marks and digits
 * (categories L, M, N; anything else separates), normalised to NFC and simple-case-folded
 * (CaseFolding.txt, statuses C and S: one code point to one, "é" stays "é", "ß" stays "ß"),
 * then normalised to NFC again, since folding may leave a sequence unnormalised. The index
 * stores a text's folded words joined by single spaces; a query becomes an FTS5 MATCH
 * expression of folded words, each in double quotes, so nothing a user types can be read as
 * FTS5 syntax (AND, OR, NOT, NEAR, column filters, ^, +, parentheses). The SQLite table's
 * tokenizer is `unicode61 remove_diacritics 0 categories 'L* M* N*'`, which splits the stored
 * text and the quoted terms alike.
 */
#ifndef PARLEY_SEARCH_TEXT_H
#define PARLEY_SEARCH_TEXT_H

#include <stddef.h>

/* The longest query `q`, in code points after its trailing white space is trimmed (rule 71). */
#define SEARCH_QUERY_MAX_POINTS 200

/*
 * The index form of text[0..len): its folded words joined by single spaces ("" when it has
 * none). Bytes that are not UTF-8 separate words (texts are valid; this is not where that is
 * checked). Returns a NUL-terminated string the caller frees; *out_len (if not NULL) its length.
 */
char *search_text_index(const char *text, size_t len, size_t *out_len);

enum search_query_verdict {
    SEARCH_QUERY_OK,
    SEARCH_QUERY_BAD,      /* bad_request: empty, a control character, not UTF-8, an odd number of
                              quotes, or no word */
    SEARCH_QUERY_TOO_LONG, /* too_long: over SEARCH_QUERY_MAX_POINTS code points, and nothing
                              else wrong (bad_request ranks first, rule 75) */
};

/*
 * Parses a search query q[0..len) (rule 71) into an FTS5 MATCH expression of its terms, each
 * term folded and quoted, terms separated by a space (all must match):
 *   a word               "word"
 *   a word directly followed by * outside quotes (prefix)    "pre"*
 *   the words between a pair of " (phrase; a pair with none is ignored)    "a b"
 * Any other * separates words. On SEARCH_QUERY_OK, *match is a NUL-terminated string the
 * caller frees; otherwise *match is NULL and *why (if not NULL) says what was wrong.
 */
enum search_query_verdict search_query_parse(const char *q, size_t len, char **match,
                                             const char **why);

#endif
