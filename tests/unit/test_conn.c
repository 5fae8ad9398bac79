/* test_conn: a flush pass's written output is let go once per chunk, before the loop sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "loop.h"

enum { CONNS = 5 };

static size_t take_all(struct conn *c, uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    return len;
}

static const struct conn_handler sink = {.on_input = take_all};

struct rig {
    struct loop *loop;
    struct conn_set set;
    struct conn *c[CONNS];
    int peer[CONNS];
};

static void rig_open(struct rig *r)
{
    r->loop = loop_new();
    assert_non_null(r->loop);
    conn_set_init(&r->set, r->loop, NULL);
    for (int i = 0; i < CONNS; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        r->c[i] = conn_new(&r->set, sv[0], &sink, CONN_TELNET);
        assert_non_null(r->c[i]);
        r->peer[i] = sv[1];
    }
}

static void rig_close(struct rig *r)
{
    conn_set_destroy(&r->set);
    loop_free(r->loop);
    for (int i = 0; i < CONNS; i++)
        close(r->peer[i]);
}

/* The peer of connection i received exactly want. */
static void peer_got(struct rig *r, int i, const char *want)
{
    char buf[64];
    ssize_t n = read(r->peer[i], buf, sizeof buf);
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(buf, want, (size_t)n);
}

static unsigned refs(struct chunk *c)
{
    return atomic_load(&c->refs);
}

/* Two messages written to every connection in turn (A, B, A, B ...): the bytes go out with the
 * pass, the references stay owed (not freed early) until the turn ends, then both are let go. */
static void written_references_drop_before_sleep(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r);
    struct chunk *a = chunk_from("aa", 2), *b = chunk_from("bbb", 3);
    for (int i = 0; i < CONNS; i++) {
        conn_send(r.c[i], chunk_ref(a), 0, a->len);
        conn_send(r.c[i], chunk_ref(b), 1, b->len);
    }
    assert_true(conn_set_flush(&r.set, 2)); /* a slice, then the rest: one pass */
    assert_false(conn_set_flush(&r.set, SIZE_MAX));
    for (int i = 0; i < CONNS; i++)
        peer_got(&r, i, "aabb");
    assert_int_equal(refs(a), 1 + CONNS);
    assert_int_equal(refs(b), 1 + CONNS);
    assert_int_equal(r.set.written.n, 2);
    conn_set_before_sleep(&r.set);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    assert_int_equal(r.set.written.n, 0);
    chunk_unref(a);
    chunk_unref(b);
    rig_close(&r);
}

/* A chunk whose only references were written lives until the turn ends, even if the
 * connections that wrote it closed meanwhile; then it is let go (ASan: freed, once). */
static void owed_references_outlive_a_close(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r);
    struct chunk *a = chunk_from("x", 1);
    chunk_ref(a);
    conn_send(r.c[0], a, 0, 1);
    conn_send(r.c[1], a, 0, 1); /* the last reference queued: nobody else holds a */
    conn_set_flush(&r.set, SIZE_MAX);
    peer_got(&r, 0, "x");
    conn_close(r.c[0]);
    conn_close(r.c[1]);
    assert_int_equal(refs(a), 2); /* owed, not freed: ASan would see a use after free */
    conn_set_before_sleep(&r.set);
    rig_close(&r);
}

/* Output written and owed when the set is destroyed is let go with it (ASan: no leak). */
static void destroying_the_set_drops_what_is_owed(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r);
    for (int i = 0; i < CONNS; i++)
        conn_send_copy(r.c[i], "hi", 2);
    conn_set_flush(&r.set, SIZE_MAX);
    assert_int_equal(r.set.written.n, CONNS);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(written_references_drop_before_sleep),
        cmocka_unit_test(owed_references_outlive_a_close),
        cmocka_unit_test(destroying_the_set_drops_what_is_owed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
