/* test_search_text: words, folding and query terms of rule 71, and what they match in FTS5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search_text.h"

static void expect_index(const char *text, const char *want)
{
    size_t len = 0;
    char *got = search_text_index(text, strlen(text), &len);
    if (strcmp(got, want) != 0)
        fail_msg("index of \"%s\": got \"%s\", want \"%s\"", text, got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void expect_query(const char *q, const char *want)
{
    char *match = NULL;
    const char *why = NULL;
    enum search_query_verdict v = search_query_parse(q, strlen(q), &match, &why);
    if (v != SEARCH_QUERY_OK)
        fail_msg("query \"%s\": refused (%s), want %s", q, why ? why : "?", want);
    if (strcmp(match, want) != 0)
        fail_msg("query \"%s\": got %s, want %s", q, match, want);
    free(match);
}

static void expect_refused(const char *q, size_t len, enum search_query_verdict want)
{
    char *match = (char *)"untouched";
    const char *why = NULL;
    assert_int_equal(search_query_parse(q, len, &match, &why), want);
    assert_null(match);
    assert_non_null(why);
}

/* ---- words of a text ---- */

static void words_are_runs_of_letters_marks_digits(void **state)
{
    (void)state;
    expect_index("Deploy the release on Friday?", "deploy the release on friday");
    expect_index("don't e-mail v1.2, ok?!", "don t e mail v1 2 ok");
    expect_index("hi\xF0\x9F\x91\x8Dthere", "hi there"); /* an emoji separates */
    expect_index("a\xC2\xA0"
                 "b\xE3\x80\x80"
                 "c",
                 "a b c"); /* so does any white space */
    /* Digits of any script (Nd) and letter numbers (Nl, which have case: Ⅷ folds to ⅷ). */
    expect_index("\xD9\xA3\xD9\xA4 x\xE2\x85\xA7", "\xD9\xA3\xD9\xA4 x\xE2\x85\xB7");
    expect_index("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E");
    expect_index("", "");
    expect_index("!!! ... ???", "");
    expect_index("  spaced   out  ", "spaced out");
    /* A byte that is not UTF-8 separates, rather than failing the whole text. */
    expect_index("ab\xFF"
                 "cd",
                 "ab cd");
}

static void folding_keeps_accents_and_folds_case(void **state)
{
    (void)state;
    expect_index("\xC3\x89"
                 "COLE caf\xC3\xA9",
                 "\xC3\xA9"
                 "cole caf\xC3\xA9"); /* ÉCOLE café */
    /* NFC: e + combining acute is é, one code point. */
    expect_index("cafe\xCC\x81", "caf\xC3\xA9");
    expect_index("CAFE\xCC\x81", "caf\xC3\xA9");
    /* Simple folding: ß stays ß (full folding would make it ss), capital ẞ becomes ß. */
    expect_index("Stra\xC3\x9F"
                 "e STRASSE \xE1\xBA\x9E",
                 "stra\xC3\x9F"
                 "e strasse \xC3\x9F");
    /* Final sigma folds to sigma: ΣΟΦΟΣ and σοφος are one word. */
    expect_index(
        "\xCE\xA3\xCE\x9F\xCE\xA6\xCE\x9F\xCE\xA3 \xCF\x83\xCE\xBF\xCF\x86\xCE\xBF\xCF\x82",
        "\xCF\x83\xCE\xBF\xCF\x86\xCE\xBF\xCF\x83 \xCF\x83\xCE\xBF\xCF\x86\xCE\xBF\xCF\x83");
    /* The ligature ﬁ has only a full folding (fi): it stays itself. */
    expect_index("\xEF\xAC\x81"
                 "x",
                 "\xEF\xAC\x81"
                 "x");
    /* ᾈ (with prosgegrammeni) folds simply to ᾀ. */
    expect_index("\xE1\xBE\x88", "\xE1\xBE\x80");
    /* İ has no simple folding. */
    expect_index("\xC4\xB0", "\xC4\xB0");
}

/* ---- queries ---- */

static void query_terms(void **state)
{
    (void)state;
    expect_query("deploy \"on friday\" rel*", "\"deploy\" \"on friday\" \"rel\"*");
    expect_query("Deploy   ", "\"deploy\"");
    expect_query("\xC3\x89"
                 "cole*",
                 "\"\xC3\xA9"
                 "cole\"*");
    expect_query("\"\" foo", "\"foo\""); /* a pair with no word is ignored */
    expect_query("\"one\"", "\"one\"");
    expect_query("\"a, b;c\"", "\"a b c\""); /* a phrase's words, whatever separates them */
    expect_query("*foo", "\"foo\"");         /* a star not after a word separates */
    expect_query("foo**bar", "\"foo\"* \"bar\"");
    expect_query("foo *", "\"foo\"");
    expect_query("\"foo*\"", "\"foo\""); /* no prefix inside quotes */
    expect_query("a\"b c\"d", "\"a\" \"b c\" \"d\"");
    expect_query("e-mail*", "\"e\" \"mail\"*");
    expect_query("cafe\xCC\x81", "\"caf\xC3\xA9\"");
    /* FTS5 syntax is just words or separators. */
    expect_query("a OR b", "\"a\" \"or\" \"b\"");
    expect_query("NEAR(a b, 2)", "\"near\" \"a\" \"b\" \"2\"");
    expect_query("content:deploy", "\"content\" \"deploy\"");
    expect_query("{content title}: x", "\"content\" \"title\" \"x\"");
    expect_query("^a +b -c (d)", "\"a\" \"b\" \"c\" \"d\"");
    expect_query("a\" OR \"b", "\"a\" \"or\" \"b\"");
    expect_query("x \n\t ", "\"x\""); /* trailing white space, newline and tab too, is trimmed */
}

static void query_refusals(void **state)
{
    (void)state;
    expect_refused("", 0, SEARCH_QUERY_BAD);
    expect_refused(" \t\n", 3, SEARCH_QUERY_BAD);
    expect_refused("\"foo", 4, SEARCH_QUERY_BAD); /* an odd number of quotes */
    expect_refused("\"a\" \"b", 6, SEARCH_QUERY_BAD);
    expect_refused("***", 3, SEARCH_QUERY_BAD); /* no word */
    expect_refused("\"\"", 2, SEARCH_QUERY_BAD);
    expect_refused("!? \xF0\x9F\x91\x8D", 7, SEARCH_QUERY_BAD);
    expect_refused("a\tb", 3, SEARCH_QUERY_BAD); /* control characters */
    expect_refused("a\nb", 3, SEARCH_QUERY_BAD);
    expect_refused("a\x1b[31m", 7, SEARCH_QUERY_BAD);
    expect_refused("a\xC2\x85"
                   "b",
                   4, SEARCH_QUERY_BAD); /* C1 */
    expect_refused("a\0b", 3, SEARCH_QUERY_BAD);
    expect_refused("ab\xFF", 3, SEARCH_QUERY_BAD); /* not UTF-8 */

    /* 200 code points (trailing white space aside) are allowed; 201 are too_long. */
    char q[1024];
    for (int i = 0; i < 200; i++)
        memcpy(q + 2 * i, "\xC3\xA9", 2);
    memcpy(q + 400, "   ", 3);
    char *match = NULL;
    assert_int_equal(search_query_parse(q, 403, &match, NULL), SEARCH_QUERY_OK);
    free(match);
    memcpy(q + 400, "x", 1);
    expect_refused(q, 401, SEARCH_QUERY_TOO_LONG);
    /* Too long and a control character: bad_request, which rule 5 ranks first. */
    memcpy(q + 400, "\t", 1);
    memcpy(q + 401, "y", 1);
    expect_refused(q, 402, SEARCH_QUERY_BAD);
    /* Too long and an odd number of quotes, or no word: bad_request too (rule 75). */
    memcpy(q + 400, "x\"", 2);
    expect_refused(q, 402, SEARCH_QUERY_BAD);
    char stars[260];
    memset(stars, '*', sizeof stars);
    expect_refused(stars, sizeof stars, SEARCH_QUERY_BAD);
}

/* ---- against SQLite FTS5 ---- */

static const char *const texts[] = {
    "Deploy the release on Friday?", /* 1 */
    "\xC3\xA9"
    "cole ferm\xC3\xA9"
    "e",                          /* 2: école fermée */
    "ecole fermee",               /* 3 */
    "friday on deploy",           /* 4 */
    "NEAR and OR are words here", /* 5 */
    "Stra\xC3\x9F"
    "e",                    /* 6: Straße */
    "STRASSE",              /* 7 */
    "re-release notes",     /* 8 */
    "CAFE\xCC\x81 au lait", /* 9: decomposed É */
};

static sqlite3 *open_index(void)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db,
                          "CREATE VIRTUAL TABLE idx USING fts5(content, title, tokenize = "
                          "\"unicode61 remove_diacritics 0 categories 'L* M* N*'\")",
                          NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("create: %s", err);
    sqlite3_stmt *ins = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO idx(rowid, content, title) VALUES (?, ?, 'deploy')", -1,
                           &ins, NULL),
        SQLITE_OK);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t len = 0;
        char *words = search_text_index(texts[i], strlen(texts[i]), &len);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_text(ins, 2, words, (int)len, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
        free(words);
    }
    sqlite3_finalize(ins);
    return db;
}

/* The rowids q matches, as "1,4" ("" for none), searching the content column only (as the
 * server will, with the column named in SQL, never in the user's text). */
static void expect_matches(sqlite3 *db, const char *q, const char *want)
{
    char *match = NULL;
    const char *why = NULL;
    if (search_query_parse(q, strlen(q), &match, &why) != SEARCH_QUERY_OK)
        fail_msg("query \"%s\" refused: %s", q, why);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT rowid FROM idx WHERE idx MATCH "
                                        "'{content} : (' || ? || ')' ORDER BY rowid",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, match, -1, SQLITE_TRANSIENT);
    char got[256] = "";
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", n ? "," : "",
                              (long long)sqlite3_column_int64(st, 0));
    if (rc != SQLITE_DONE)
        fail_msg("query \"%s\" as %s: %s", q, match, sqlite3_errmsg(db));
    if (strcmp(got, want) != 0)
        fail_msg("query \"%s\" as %s: rows %s, want %s", q, match, got, want);
    sqlite3_finalize(st);
    free(match);
}

static void fts5_matches(void **state)
{
    (void)state;
    sqlite3 *db = open_index();
    expect_matches(db, "deploy \"on friday\" rel*", "1");
    expect_matches(db, "on friday", "1,4");
    expect_matches(db, "\"on friday\"", "1"); /* a phrase keeps its order */
    expect_matches(db, "\"friday on\"", "4");
    expect_matches(db, "\"release friday\"", ""); /* and its words in a row */
    expect_matches(db, "DEPLOY", "1,4");          /* case folded */
    expect_matches(db,
                   "\xC3\x89"
                   "cole",
                   "2"); /* accents kept: école is not ecole */
    expect_matches(db, "ecole", "3");
    expect_matches(db, "ferm*", "2,3"); /* prefix */
    expect_matches(db, "ferme*", "3");
    expect_matches(db, "ferm\xC3\xA9*", "2");
    expect_matches(db, "caf\xC3\xA9", "9"); /* NFC on both sides */
    expect_matches(db, "cafe\xCC\x81", "9");
    expect_matches(db,
                   "stra\xC3\x9F"
                   "e",
                   "6"); /* simple folding: ß is not ss */
    expect_matches(db, "strasse", "7");
    expect_matches(db, "re*", "1,8");
    expect_matches(db, "\"re release\"", "8");
    /* No FTS5 syntax gets through: operators are words, the rest separates. */
    expect_matches(db,
                   "deploy OR \xC3\xA9"
                   "cole",
                   "");
    expect_matches(db, "OR", "5");
    expect_matches(db, "NEAR(deploy friday)", "");
    expect_matches(db, "near", "5");
    expect_matches(db, "title:deploy", ""); /* no column filter: "title" is a word */
    expect_matches(db, "{title}: deploy", "");
    expect_matches(db, "- title : deploy", "");
    expect_matches(db, "^deploy", "1,4"); /* ^ is no initial-token anchor */
    expect_matches(db, "deploy NOT friday", "");
    expect_matches(db, "deploy AND friday", ""); /* "and" is a word: only 5 has it */
    expect_matches(db, "a\" OR \"deploy", "");
    expect_matches(db, "deploy*friday", "1,4");
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(words_are_runs_of_letters_marks_digits),
        cmocka_unit_test(folding_keeps_accents_and_folds_case),
        cmocka_unit_test(query_terms),
        cmocka_unit_test(query_refusals),
        cmocka_unit_test(fts5_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
