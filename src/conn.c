/* conn: connection I/O, output queue and the close state machine. */
#include "conn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "peers.h"

#define MAX_IOV 64

static atomic_size_t open_count[CONN_TRANSPORTS];
static atomic_uint_fast64_t next_id = 1;

size_t conn_count(enum conn_transport t)
{
    return atomic_load_explicit(&open_count[t], memory_order_relaxed);
}

void conn_set_init(struct conn_set *set, struct loop *loop, void *owner)
{
    memset(set, 0, sizeof *set);
    set->loop = loop;
    set->owner = owner;
    set->scratch_size = 64u << 10;
    set->scratch = xmalloc(set->scratch_size);
    set->linger_ms = 2000;
}

static void free_dead(struct conn_set *set);

void conn_set_destroy(struct conn_set *set)
{
    while (set->all)
        conn_close(set->all);
    free_dead(set);
    free(set->scratch);
    set->scratch = NULL;
}

static void update_events(struct conn *c)
{
    bool reading = !c->reading_paused && !c->input_held;
    uint32_t want = (reading ? EPOLLIN | EPOLLRDHUP : 0) | (c->want_write ? EPOLLOUT : 0);
    if (want == c->events)
        return;
    c->events = want;
    loop_watch_mod(c->set->loop, c->fd, want, &c->watch);
}

static void mark_dirty(struct conn *c)
{
    if (c->is_dirty)
        return;
    c->is_dirty = true;
    c->dirty_next = c->set->dirty;
    c->set->dirty = c;
}

/* --- output --- */

void conn_send(struct conn *c, struct chunk *chunk, size_t off, size_t end)
{
    if (c->state != CONN_OPEN || off >= end) {
        chunk_unref(chunk);
        return;
    }
    if (c->out_count == c->out_cap) {
        uint32_t cap = c->out_cap ? c->out_cap * 2 : 8;
        struct conn_out *ring = xmalloc(cap * sizeof *ring);
        for (uint32_t i = 0; i < c->out_count; i++)
            ring[i] = c->out[(c->out_head + i) % c->out_cap];
        free(c->out);
        c->out = ring;
        c->out_cap = cap;
        c->out_head = 0;
    }
    c->out[(c->out_head + c->out_count) % c->out_cap] =
        (struct conn_out){chunk, (uint32_t)off, (uint32_t)end};
    c->out_count++;
    c->out_bytes += end - off;
    mark_dirty(c);
    if (c->out_bytes > CONN_OUT_HIGH && !c->reading_paused) {
        /* The peer is not reading what it asks for: stop reading what it sends. */
        c->reading_paused = true;
        update_events(c);
    }
}

void conn_send_copy(struct conn *c, const void *p, size_t n)
{
    if (n == 0)
        return;
    conn_send(c, chunk_from(p, n), 0, n);
}

static void drop_output(struct conn *c)
{
    for (uint32_t i = 0; i < c->out_count; i++)
        chunk_unref(c->out[(c->out_head + i) % c->out_cap].chunk);
    free(c->out);
    c->out = NULL;
    c->out_head = c->out_count = c->out_cap = 0;
    c->out_bytes = 0;
}

static void start_linger(struct conn *c);
static void process_pending(struct conn *c);

/* Writes as much queued output as the socket takes. Returns false if the connection closed. */
static bool flush(struct conn *c)
{
    while (c->out_count > 0) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        for (uint32_t i = 0; i < c->out_count && n < MAX_IOV; i++, n++) {
            struct conn_out *o = &c->out[(c->out_head + i) % c->out_cap];
            iov[n].iov_base = o->chunk->data + o->off;
            iov[n].iov_len = o->end - o->off;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            log_debug("msg=write_failed conn=%llu err=%d", (unsigned long long)c->id, errno);
            conn_close(c);
            return false;
        }
        c->out_bytes -= (size_t)w;
        while (w > 0) {
            struct conn_out *o = &c->out[c->out_head];
            size_t left = o->end - o->off;
            if ((size_t)w < left) {
                o->off += (uint32_t)w;
                break;
            }
            w -= (ssize_t)left;
            chunk_unref(o->chunk);
            c->out_head = (c->out_head + 1) % c->out_cap;
            c->out_count--;
        }
    }
    if (c->out_count == 0) {
        /* A connection whose queue empties again within a second is busy: it keeps its ring
         * (no allocation per message); a quiet one gives it back. */
        uint64_t now = conn_now(c);
        bool busy = now - c->last_drain_ms < 1000 && c->out_cap <= 64;
        c->last_drain_ms = now;
        if (busy)
            c->out_head = 0;
        else
            drop_output(c);
    }
    c->want_write = c->out_count > 0;
    bool resumed = false;
    if (c->reading_paused && c->out_bytes < CONN_OUT_LOW && c->state == CONN_OPEN) {
        c->reading_paused = false;
        resumed = true;
    }
    update_events(c);
    if (c->out_count == 0 && c->state == CONN_FLUSHING)
        start_linger(c);
    if (resumed && c->in_len > 0)
        process_pending(c); /* input held back while paused */
    if (c->state == CONN_OPEN && c->out_bytes < CONN_OUT_LOW && c->handler &&
        c->handler->on_drained)
        c->handler->on_drained(c);
    return true;
}

/* --- closing --- */

static void on_timer(struct timer *t)
{
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    if (c->state == CONN_OPEN) {
        if (c->handler->on_timer)
            c->handler->on_timer(c);
    } else {
        conn_close(c); /* flushing or lingering took too long */
    }
}

void conn_set_timer(struct conn *c, uint64_t due_ms)
{
    if (c->state == CONN_OPEN)
        timer_start(c->set->loop, &c->timer, due_ms);
}

static void release_session(struct conn *c)
{
    const struct conn_handler *h = c->handler;
    c->handler = NULL;
    if (h && h->on_close)
        h->on_close(c);
}

void conn_close_after_flush(struct conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    release_session(c);
    c->state = CONN_FLUSHING;
    c->in_len = 0; /* the buffer itself may be under the caller: freed with the connection */
    /* Keep reading (and discarding) so a peer that writes on cannot wedge us. */
    c->reading_paused = false;
    update_events(c);
    timer_start(c->set->loop, &c->timer, conn_now(c) + c->set->linger_ms + 3000);
    if (c->out_count == 0)
        start_linger(c);
    else
        mark_dirty(c);
}

static void start_linger(struct conn *c)
{
    c->state = CONN_LINGER;
    shutdown(c->fd, SHUT_WR);
    timer_start(c->set->loop, &c->timer, conn_now(c) + c->set->linger_ms);
}

void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_OPEN)
        release_session(c);
    c->state = CONN_CLOSED;
    timer_stop(c->set->loop, &c->timer);
    loop_watch_del(c->set->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    drop_output(c);
    c->in_len = 0; /* c->in may be under the caller's feet: freed with the connection */
    atomic_fetch_sub_explicit(&open_count[c->transport], 1, memory_order_relaxed);
    if (c->peer_counted)
        peers_release(c->peer_key);
    struct conn_set *set = c->set;
    if (c->prev)
        c->prev->next = c->next;
    else
        set->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    set->count--;
    c->dead_next = set->dead;
    set->dead = c;
}

static void free_dead(struct conn_set *set)
{
    while (set->dead) {
        struct conn *c = set->dead;
        set->dead = c->dead_next;
        free(c->in);
        free(c);
    }
}

void conn_set_before_sleep(struct conn_set *set)
{
    while (set->dirty) {
        struct conn *c = set->dirty;
        set->dirty = c->dirty_next;
        c->is_dirty = false;
        if (c->state == CONN_OPEN || c->state == CONN_FLUSHING)
            flush(c);
    }
    free_dead(set);
}

void conn_set_transport(struct conn *c, enum conn_transport t)
{
    atomic_fetch_sub_explicit(&open_count[c->transport], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&open_count[t], 1, memory_order_relaxed);
    c->transport = (uint8_t)t;
}

/* --- input --- */

/* Hands data to the handler until it stops consuming; returns the bytes left over. */
static size_t dispatch(struct conn *c, uint8_t *data, size_t len)
{
    size_t used = 0;
    while (used < len && c->state == CONN_OPEN && !c->reading_paused && !c->input_held) {
        size_t n = c->handler->on_input(c, data + used, len - used);
        if (n == 0)
            break;
        used += n;
    }
    return len - used;
}

static void keep_pending(struct conn *c, const uint8_t *rest, size_t n)
{
    if (n > CONN_MAX_PENDING_INPUT) {
        log_info("msg=input_overflow conn=%llu bytes=%zu", (unsigned long long)c->id, n);
        conn_close(c);
        return;
    }
    if (c->in_cap < n) {
        c->in_cap = (uint32_t)(n < 4096 ? 4096 : n);
        c->in = xrealloc(c->in, c->in_cap);
    }
    memmove(c->in, rest, n);
    c->in_len = (uint32_t)n;
}

void conn_hold_input(struct conn *c)
{
    if (c->input_held)
        return;
    c->input_held = true;
    update_events(c);
}

void conn_release_input(struct conn *c)
{
    if (!c->input_held || c->state != CONN_OPEN)
        return;
    c->input_held = false;
    update_events(c);
    if (c->in_len > 0)
        process_pending(c);
}

/* Offers buf[0..total) to the handler and keeps what it leaves in c->in (buf may be c->in). */
static void handle_input(struct conn *c, uint8_t *buf, size_t total)
{
    size_t rest = dispatch(c, buf, total);
    if (c->state != CONN_OPEN)
        return;
    if (rest == 0) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
    } else {
        keep_pending(c, buf + total - rest, rest);
    }
}

/* Offers the handler the input left in c->in, after a pause or a hold. */
static void process_pending(struct conn *c)
{
    handle_input(c, c->in, c->in_len);
}

static void read_input(struct conn *c)
{
    struct conn_set *set = c->set;
    uint8_t *buf = set->scratch;
    size_t have = 0;
    size_t room = set->scratch_size;
    if (c->state == CONN_OPEN && c->in_len > 0) {
        /* Continue a pending request in the connection's own buffer. */
        if (c->in_cap - c->in_len < 4096) {
            c->in_cap = c->in_cap * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        buf = c->in;
        have = c->in_len;
        room = c->in_cap - c->in_len;
    }
    ssize_t r;
    do
        r = read(c->fd, buf + have, room);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_close(c);
        return;
    }
    if (r == 0) {
        /* The peer is done sending; answers to what it sent still go out. */
        if (c->state == CONN_OPEN)
            conn_close_after_flush(c);
        else
            conn_close(c);
        return;
    }
    if (c->state != CONN_OPEN)
        return; /* closing: input is drained and dropped */
    c->last_rx_ms = conn_now(c);
    handle_input(c, buf, have + (size_t)r);
}

static void on_events(struct loop_watch *w, uint32_t events)
{
    struct conn *c = (struct conn *)w;
    if (c->state == CONN_CLOSED)
        return;
    if (events & EPOLLOUT) {
        if (!flush(c))
            return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        read_input(c);
}

struct conn *conn_new(struct conn_set *set, int fd, const struct conn_handler *h,
                      enum conn_transport transport)
{
    struct conn *c = xcalloc(1, sizeof *c);
    c->watch.cb = on_events;
    c->set = set;
    c->handler = h;
    c->fd = fd;
    c->state = CONN_OPEN;
    c->transport = (uint8_t)transport;
    c->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    c->last_rx_ms = loop_now(set->loop);
    timer_init(&c->timer, on_timer);
    c->events = EPOLLIN | EPOLLRDHUP;
    if (loop_watch_add(set->loop, fd, c->events, &c->watch) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    atomic_fetch_add_explicit(&open_count[transport], 1, memory_order_relaxed);
    c->next = set->all;
    if (set->all)
        set->all->prev = c;
    set->all = c;
    set->count++;
    return c;
}
