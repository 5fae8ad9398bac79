/* test_conn: a connection set's output: written references let go once per chunk before the loop
 * sleeps, and bytes kept in order while the output ring wraps and grows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
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

/* Pieces queued while the socket takes only part of the queue: the ring wraps and grows with
 * its head anywhere, and the peer still reads every byte in order. */
static void output_stays_in_order_through_wraps(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r);
    enum { PIECES = 3000, PIECE = 97 };
    static uint8_t got[PIECES * PIECE];
    size_t have = 0;
    int next = 0;
    int small = 4096; /* so that writes are partial and the queue backs up */
    assert_int_equal(setsockopt(r.c[0]->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    uint32_t widest = 0;
    bool wrapped = false;
    srand(3);
    while (have < sizeof got) {
        for (int k = rand() % 40; k > 0 && next < PIECES; k--, next++) {
            uint8_t piece[PIECE];
            for (int j = 0; j < PIECE; j++)
                piece[j] = (uint8_t)(next * 7 + j);
            conn_send_copy(r.c[0], piece, PIECE);
        }
        struct conn *c = r.c[0];
        if (c->out_cap > widest)
            widest = c->out_cap;
        wrapped |= c->out_head + c->out_count > c->out_cap;
        conn_set_before_sleep(&r.set);
        ssize_t n = read(r.peer[0], got + have, (size_t)(rand() % 5000 + 1));
        if (n > 0)
            have += (size_t)n;
    }
    for (int i = 0; i < PIECES; i++)
        for (int j = 0; j < PIECE; j++)
            assert_int_equal(got[i * PIECE + j], (uint8_t)(i * 7 + j));
    assert_int_equal(r.c[0]->out_bytes, 0);
    assert_true(widest > CONN_RING_FIRST); /* it did back up and grow */
    assert_true(wrapped);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(written_references_drop_before_sleep),
        cmocka_unit_test(owed_references_outlive_a_close),
        cmocka_unit_test(destroying_the_set_drops_what_is_owed),
        cmocka_unit_test(output_stays_in_order_through_wraps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
