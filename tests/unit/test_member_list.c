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

#define NAMES 600

static char names[NAMES][TEXT_NAME_MAX + 1];
static char lcs[NAMES][TEXT_NAME_MAX + 1];
static bool present[NAMES];

static int by_lc(const void *a, const void *b)
{
    return strcmp(lcs[*(const int *)a], lcs[*(const int *)b]);
}

/* The JSON a fresh walk of the present names in order would give. */
static size_t model(char *out)
{
    int order[NAMES];
    int n = 0;
    for (int i = 0; i < NAMES; i++)
        if (present[i])
            order[n++] = i;
    qsort(order, (size_t)n, sizeof *order, by_lc);
    size_t len = 0;
    for (int k = 0; k < n; k++)
        len += (size_t)sprintf(out + len, "%s\"%s\"", k ? "," : "", names[order[k]]);
    return len;
}

static void check(const struct member_list *l)
{
    static char want[NAMES * (TEXT_NAME_MAX + 3) + 1];
    size_t want_len = model(want);
    size_t len;
    struct chunk *c = member_list_share(l, &len);
    assert_int_equal(len, want_len);
    assert_memory_equal(c->data, want, len);
    chunk_unref(c);
}

/* Random adds and removals of mixed-case names (some prefixes of others), checked each time. */
static void follows_model(void **state)
{
    (void)state;
    srand(7);
    static const char alphabet[] = "AaBbZz09_-.";
    for (int i = 0; i < NAMES; i++) {
        int n = 1 + rand() % 6;
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
    check(&l);
    for (int step = 0; step < 4000; step++) {
        int i = rand() % NAMES;
        if (!names[i][0])
            continue;
        struct chunk *held = step % 3 ? NULL : member_list_share(&l, &(size_t){0});
        size_t held_len = held ? held->len : 0;
        char *copy = held ? malloc(held_len + 1) : NULL;
        if (held)
            memcpy(copy, held->data, held_len);
        if (present[i])
            member_list_remove(&l, lcs[i]);
        else
            member_list_add(&l, names[i], lcs[i]);
        present[i] = !present[i];
        check(&l);
        /* The block stays about the size of what it holds, however often it was copied. */
        assert_true(member_list_share(&l, &(size_t){0})->cap <= 2 * l.json->len + 256);
        chunk_unref(l.json);
        if (held) { /* what was shared is as it was */
            assert_int_equal(held->len, held_len);
            assert_memory_equal(held->data, copy, held_len);
            chunk_unref(held);
            free(copy);
        }
    }
    /* A name present is not added twice; one absent is not removed. */
    for (int i = 0; i < NAMES; i++) {
        if (!names[i][0])
            continue;
        if (present[i])
            member_list_add(&l, names[i], lcs[i]);
        else
            member_list_remove(&l, lcs[i]);
    }
    check(&l);
    member_list_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(follows_model)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
