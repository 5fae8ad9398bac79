/* fuzz_search_query: libFuzzer target for search queries and the index form of texts (rule 71). */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "search_text.h"

/*
 * The input is a query q, and also a message text. For the query, whatever it is: the parser
 * never fails but with a verdict, and an accepted query becomes terms of the one shape rule 71
 * allows (a quoted run of folded words separated by single spaces, a star only right after a
 * one-word term's closing quote, single spaces between terms), which FTS5 accepts as a MATCH
 * expression on a real table without error: nothing the user typed reaches FTS5 as syntax. For
 * the text: its index form is folded words separated by single spaces, and folding is stable
 * (the index form of the index form is itself), so a text and a query folded apart match alike.
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool is_word_char(int32_t cp)
{
    utf8proc_category_t k = utf8proc_category(cp);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_NO;
}

/* s[0..n) is folded words joined by single spaces (n > 0 when nonempty is asked for). */
static void check_words(const char *s, size_t n, bool nonempty)
{
    CHECK(!nonempty || n > 0);
    bool in_word = false;
    for (size_t i = 0; i < n;) {
        if (s[i] == ' ') {
            CHECK(in_word); /* no leading or doubled space */
            in_word = false;
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        CHECK(k > 0);
        CHECK(is_word_char(cp));
        in_word = true;
        i += (size_t)k;
    }
    CHECK(n == 0 || in_word); /* no trailing space */
    /* Stable: folding the folded gives the same. */
    size_t again_len = 0;
    char *again = search_text_index(s, n, &again_len);
    CHECK(again_len == n && memcmp(again, s, n) == 0);
    free(again);
}

/* expr is "t1" "t2"* "t3 t4" ...: each term checked, and the whole as FTS5 reads it. */
static void check_match(const char *expr)
{
    size_t n = strlen(expr);
    size_t i = 0;
    while (i < n) {
        CHECK(expr[i] == '"');
        const char *close = memchr(expr + i + 1, '"', n - i - 1);
        CHECK(close);
        size_t start = i + 1, end = (size_t)(close - expr);
        check_words(expr + start, end - start, true);
        i = end + 1;
        if (i < n && expr[i] == '*') {
            CHECK(!memchr(expr + start, ' ', end - start)); /* prefixes are single words */
            i++;
        }
        if (i < n) {
            CHECK(expr[i] == ' ' && i + 1 < n);
            i++;
        }
    }
}

static sqlite3 *db;
static sqlite3_stmt *query;

static void open_index(void)
{
    if (db)
        return;
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE VIRTUAL TABLE idx USING fts5(content, tokenize = \"unicode61 "
                       "remove_diacritics 0 categories 'L* M* N*'\");"
                       "INSERT INTO idx(content) VALUES ('deploy the release on friday'), "
                       "('\xC3\xA9"
                       "cole ferm\xC3\xA9"
                       "e'), ('near or and not');",
                       NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM idx WHERE idx MATCH ?", -1, &query, NULL) ==
          SQLITE_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_index();
    const char *q = (const char *)data;

    char *match = (char *)"untouched";
    const char *why = NULL;
    enum search_query_verdict v = search_query_parse(q, size, &match, &why);
    if (v == SEARCH_QUERY_OK) {
        CHECK(match && match[0]);
        check_match(match);
        sqlite3_bind_text(query, 1, match, -1, SQLITE_STATIC);
        CHECK(sqlite3_step(query) == SQLITE_ROW);
        sqlite3_reset(query);
        sqlite3_clear_bindings(query);
        free(match);
    } else {
        CHECK(v == SEARCH_QUERY_BAD || v == SEARCH_QUERY_TOO_LONG);
        CHECK(match == NULL && why && why[0]);
    }

    size_t len = 0;
    char *words = search_text_index(q, size, &len);
    CHECK(strlen(words) == len);
    check_words(words, len, false);
    free(words);
    return 0;
}
