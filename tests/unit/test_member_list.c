/* test_member_list: the kept joined list against a model built from scratch after every change,
 * and a shared block never changing under its holder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "member_list.h"
#include "text.h"

/* Up to this many names, of 1 to max_len characters: the short ones of a small alphabet collide
 * case-insensitively and prefix each other; the long ones fill many segments. */
#define NAMES 3000
/* member_list.c's SEG_MAX: no segment holds much more. */
#define SEG_MAX 8192

static char names[NAMES][TEXT_NAME_MAX + 1];
static char lcs[NAMES][TEXT_NAME_MAX + 1];
static bool present[NAMES];

static int by_lc(const void *a, const void *b)
{
    return strcmp(lcs[*(const int *)a], lcs[*(const int *)b]);
}

/* The JSON a fresh walk of the present names in order would give. */
static size_t model(char *out, int n_names)
{
    static int order[NAMES];
    int n = 0;
    for (int i = 0; i < n_names; i++)
        if (present[i])
            order[n++] = i;
    qsort(order, (size_t)n, sizeof *order, by_lc);
    size_t len = 0;
    for (int k = 0; k < n; k++)
        len += (size_t)sprintf(out + len, "%s\"%s\"", k ? "," : "", names[order[k]]);
    return len;
}

/* The shared pieces, end to end, into out (a copy); returns the length they claim in all. */
static size_t joined(struct member_piece *p, uint32_t n, size_t len, char *out)
{
    size_t at = 0;
    for (uint32_t j = 0; j < n; j++) {
        assert_true(p[j].len > 0);
        memcpy(out + at, p[j].c->data, p[j].len);
        at += p[j].len;
    }
    assert_int_equal(at, len);
    return at;
}

static char want[NAMES * (TEXT_NAME_MAX + 3) + 1], got[NAMES * (TEXT_NAME_MAX + 3) + 1];

static uint32_t most_segs; /* the most segments check saw */

static void check(const struct member_list *l, int n_names)
{
    if (l->n_segs > most_segs)
        most_segs = l->n_segs;
    size_t want_len = model(want, n_names), len;
    uint32_t n;
    struct member_piece *p = member_list_share(l, &n, &len);
    assert_int_equal(joined(p, n, len, got), want_len);
    assert_memory_equal(got, want, want_len);
    member_pieces_free(p, n);
    /* Segments stay few and none large; each block about the size of what it holds, however
     * often it was copied. */
    assert_true(l->n_segs <= 1 + len / 1024);
    for (uint32_t j = 0; j < l->n_segs; j++) {
        assert_true(l->segs[j].n > 0);
        assert_true(l->segs[j].json->len <= SEG_MAX + TEXT_NAME_MAX + 3);
        assert_true(l->segs[j].json->cap <= 2 * l->segs[j].json->len + SEG_MAX);
    }
}

/* Random adds and removals of n_names mixed-case names, checked each time, with answers holding
 * pieces meanwhile (a shared block never changes). */
static void follow_model(int n_names, int max_len, int steps, unsigned seed)
{
    srand(seed);
    static const char alphabet[] = "AaBbZz09_-.";
    for (int i = 0; i < n_names; i++) {
        int n = 1 + rand() % max_len;
        for (int k = 0; k < n; k++)
            names[i][k] = alphabet[rand() % (int)(sizeof alphabet - 1)];
        names[i][n] = '\0';
        text_lower(names[i], (size_t)n, lcs[i]);
        for (int j = 0; j < i; j++) /* names are unique case-insensitively */
            if (strcmp(lcs[j], lcs[i]) == 0)
                lcs[i][0] = names[i][0] = '\0';
        present[i] = false;
    }
    struct member_list l;
    member_list_init(&l);
    check(&l, n_names);
    static char copy[NAMES * (TEXT_NAME_MAX + 3) + 1];
    for (int step = 0; step < steps; step++) {
        int i = rand() % n_names;
        if (!names[i][0])
            continue;
        uint32_t held_n = 0;
        size_t held_len = 0;
        struct member_piece *held = step % 3 ? NULL : member_list_share(&l, &held_n, &held_len);
        if (held)
            joined(held, held_n, held_len, copy);
        if (present[i])
            member_list_remove(&l, lcs[i]);
        else
            member_list_add(&l, names[i], lcs[i]);
        present[i] = !present[i];
        check(&l, n_names);
        if (held) { /* what was shared is as it was */
            joined(held, held_n, held_len, got);
            assert_memory_equal(got, copy, held_len);
            member_pieces_free(held, held_n);
        }
    }
    /* A name present is not added twice; one absent is not removed. */
    for (int i = 0; i < n_names; i++) {
        if (!names[i][0])
            continue;
        if (present[i])
            member_list_add(&l, names[i], lcs[i]);
        else
            member_list_remove(&l, lcs[i]);
    }
    check(&l, n_names);
    member_list_free(&l);
}

static void follows_model(void **state)
{
    (void)state;
    follow_model(600, 6, 4000, 7);
}

/* Thousands of long names: many segments, cut and joined as the list grows, churns and empties. */
static void follows_model_in_segments(void **state)
{
    (void)state;
    most_segs = 0;
    follow_model(NAMES, TEXT_NAME_MAX, 12000, 11);
    assert_true(most_segs > 3);
}

/* A storm of joins in byte order and then every leave: the list grows at one end and shrinks from
 * the other, and ends with no segment. */
static void storm_in_order(void **state)
{
    (void)state;
    struct member_list l;
    member_list_init(&l);
    int n = 2000;
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "Guest-%05d", i);
        text_lower(names[i], strlen(names[i]), lcs[i]);
        member_list_add(&l, names[i], lcs[i]);
        present[i] = true;
    }
    check(&l, n);
    assert_true(l.n_segs > 2);
    assert_int_equal(l.n, n);
    for (int i = 0; i < n; i++) {
        member_list_remove(&l, lcs[i]);
        present[i] = false;
    }
    check(&l, n);
    assert_int_equal(l.n_segs, 0);
    assert_int_equal(l.n, 0);
    member_list_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follows_model),
        cmocka_unit_test(follows_model_in_segments),
        cmocka_unit_test(storm_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
