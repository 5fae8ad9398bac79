/* conn: connection I/O, output queue and the close state machine. */
#include "conn.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"
#include "peers.h"
#include "tls.h"

#define MAX_IOV 64
/* The largest plaintext of one TLS record: the most one gathered TLS write sends. */
#define TLS_RECORD 16384
/* The first byte of a TLS handshake record (a ClientHello). */
#define TLS_HANDSHAKE_RECORD 0x16
/* How much longer than the linger time a closing connection's output may stand still. */
#define FLUSH_STALL_MS 3000

/* A connection accepted on a TLS port: the plain struct, then its OpenSSL state. */
struct conn_tls {
    struct conn c;
    struct ssl_st *ssl; /* NULL once freed, or dropped because the peer did not speak TLS */
};

static struct ssl_st *ssl_of(const struct conn *c)
{
    return (c->tls & CONN_TLS_TAIL) ? ((const struct conn_tls *)c)->ssl : NULL;
}

bool conn_is_tls(const struct conn *c)
{
    return ssl_of(c) != NULL;
}

static atomic_size_t open_count[CONN_TRANSPORTS];
static atomic_uint_fast64_t next_id = 1;
static atomic_uint_fast64_t writes_total;

uint64_t conn_writes(void)
{
    return atomic_load_explicit(&writes_total, memory_order_relaxed);
}

size_t conn_count(enum conn_transport t)
{
    return atomic_load_explicit(&open_count[t], memory_order_relaxed);
}

void conn_metrics_open(struct metrics_out *o)
{
    static const char *const transports[] = {"http", "websocket", "telnet"};
    metrics_put(o, "# HELP parley_connections Open connections by transport.\n"
                   "# TYPE parley_connections gauge\n");
    for (int t = 0; t < CONN_TRANSPORTS; t++)
        metrics_put(o, "parley_connections{transport=\"%s\"} %zu\n", transports[t],
                    conn_count((enum conn_transport)t));
}

void conn_metrics_writes(struct metrics_out *o)
{
    metrics_put(o,
                "# HELP parley_socket_writes_total Socket writes (writev calls, TLS records): with "
                "parley_deliveries_total, how well output is coalesced.\n"
                "# TYPE parley_socket_writes_total counter\nparley_socket_writes_total %llu\n",
                (unsigned long long)conn_writes());
}

void conn_set_init(struct conn_set *set, struct loop *loop, void *owner)
{
    memset(set, 0, sizeof *set);
    set->loop = loop;
    set->owner = owner;
    set->scratch_size = 64u << 10;
    set->scratch = xmalloc(set->scratch_size);
    set->linger_ms = 2000;
    set->goodbye = -1;
    POOL_INIT(&set->plain_conns, struct conn);
    POOL_INIT(&set->tls_conns, struct conn_tls);
    pool_init(&set->rings, CONN_RING_FIRST * sizeof(struct conn_out));
}

static void free_dead(struct conn_set *set);

void conn_set_destroy(struct conn_set *set)
{
    while (set->all)
        conn_close(set->all);
    chunk_unrefs_drop(&set->written);
    free_dead(set);
    free(set->scratch);
    set->scratch = NULL;
    free(set->tls_gather);
    set->tls_gather = NULL;
    pool_destroy(&set->plain_conns);
    pool_destroy(&set->tls_conns);
    pool_destroy(&set->rings);
}

static void update_events(struct conn *c)
{
    if (c->state == CONN_PARKED)
        return; /* not watched at all */
    bool reading =
        ((!c->reading_paused && !c->input_held) || (c->tls & CONN_TLS_WRITE_WANTS_READ)) &&
        !(c->io_hold & CONN_HOLD_READ);
    bool writing =
        (c->want_write || (c->tls & CONN_TLS_READ_WANTS_WRITE)) && !(c->io_hold & CONN_HOLD_WRITE);
    uint32_t want = (reading ? EPOLLIN | EPOLLRDHUP : 0) | (writing ? EPOLLOUT : 0);
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

/* The ring slot of c's i-th queued piece. A ring's size is a power of two (CONN_RING_FIRST,
 * doubled), so this is a mask, not a division: it is done a few times per delivery. */
_Static_assert((CONN_RING_FIRST & (CONN_RING_FIRST - 1)) == 0, "rings are powers of two");

static inline uint32_t ring_slot(const struct conn *c, uint32_t i)
{
    return (c->out_head + i) & (c->out_cap - 1);
}

/* A ring of cap entries: the first size from the set's pool, larger ones from the heap. */
static struct conn_out *ring_get(struct conn_set *set, uint32_t cap)
{
    if (cap == CONN_RING_FIRST)
        return pool_get(&set->rings);
    return xmalloc(cap * sizeof(struct conn_out));
}

static void ring_put(struct conn_set *set, struct conn_out *ring, uint32_t cap)
{
    if (cap == CONN_RING_FIRST)
        pool_put(&set->rings, ring);
    else
        free(ring);
}

void conn_send(struct conn *c, struct chunk *chunk, size_t off, size_t end)
{
    if (c->state != CONN_OPEN || off >= end) {
        chunk_unref(chunk);
        return;
    }
    if (c->out_count == c->out_cap) {
        uint32_t cap = c->out_cap ? c->out_cap * 2 : CONN_RING_FIRST;
        struct conn_out *ring = ring_get(c->set, cap);
        for (uint32_t i = 0; i < c->out_count; i++)
            ring[i] = c->out[ring_slot(c, i)];
        if (c->out)
            ring_put(c->set, c->out, c->out_cap);
        c->out = ring;
        c->out_cap = cap;
        c->out_head = 0;
    }
    c->out[ring_slot(c, c->out_count)] = (struct conn_out){chunk, (uint32_t)off, (uint32_t)end};
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
        chunk_unref(c->out[ring_slot(c, i)].chunk);
    if (c->out)
        ring_put(c->set, c->out, c->out_cap);
    c->out = NULL;
    c->out_head = c->out_count = c->out_cap = 0;
    c->out_bytes = 0;
}

static void start_linger(struct conn *c);
static void process_pending(struct conn *c);
static void read_buffered(struct conn *c);

/* Drops the first n bytes of the output queue: they were written. */
static void consumed(struct conn *c, size_t n)
{
    c->out_bytes -= n;
    while (n > 0) {
        struct conn_out *o = &c->out[c->out_head];
        size_t left = o->end - o->off;
        if (n < left) {
            o->off += (uint32_t)n;
            break;
        }
        n -= left;
        chunk_unrefs_add(&c->set->written, o->chunk); /* see conn_set.written */
        c->out_head = ring_slot(c, 1);
        c->out_count--;
    }
}

/* Writes queued output with writev until the socket is full. Returns 0, or -1 on an error. */
static int write_plain(struct conn *c)
{
    while (c->out_count > 0) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        for (uint32_t i = 0; i < c->out_count && n < MAX_IOV; i++, n++) {
            struct conn_out *o = &c->out[ring_slot(c, i)];
            iov[n].iov_base = o->chunk->data + o->off;
            iov[n].iov_len = o->end - o->off;
        }
        ssize_t w = writev(c->fd, iov, n);
        c->set->writes++;
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            log_debug("msg=write_failed conn=%llu err=%d", (unsigned long long)c->id, errno);
            return -1;
        }
        consumed(c, (size_t)w);
    }
    return 0;
}

/* Copies the front of the output queue, up to one record, into the worker's gather buffer. */
static size_t gather(struct conn *c)
{
    struct conn_set *set = c->set;
    if (!set->tls_gather)
        set->tls_gather = xmalloc(TLS_RECORD);
    size_t n = 0;
    for (uint32_t i = 0; i < c->out_count && n < TLS_RECORD; i++) {
        const struct conn_out *o = &c->out[ring_slot(c, i)];
        size_t take = o->end - o->off;
        if (take > TLS_RECORD - n)
            take = TLS_RECORD - n;
        memcpy(set->tls_gather + n, o->chunk->data + o->off, take);
        n += take;
    }
    return n;
}

/*
 * Encrypts queued output, one record per tls_write, until the socket is full.
 * Small pieces queued together are gathered into one record; a piece of a
 * record or more goes from its chunk without a copy. A write that must be
 * retried is retried with at least the same bytes, as OpenSSL requires: the
 * queue's front does not change meanwhile and a retry gathers as much or more.
 * Returns 0, or -1 on an error.
 */
static int write_tls(struct conn *c, struct ssl_st *ssl)
{
    c->tls &= (uint8_t)~CONN_TLS_WRITE_WANTS_READ;
    while (c->out_count > 0) {
        const struct conn_out *o = &c->out[c->out_head];
        const uint8_t *p = o->chunk->data + o->off;
        size_t n = o->end - o->off;
        if (c->out_count > 1 && n < TLS_RECORD) {
            n = gather(c);
            p = c->set->tls_gather;
        }
        ssize_t w = tls_write(ssl, p, n);
        c->set->writes++;
        if (w > 0) {
            consumed(c, (size_t)w);
            continue;
        }
        if (w == TLS_IO_WANT_WRITE)
            break;
        if (w == TLS_IO_WANT_READ) {
            c->tls |= CONN_TLS_WRITE_WANTS_READ;
            break;
        }
        log_debug("msg=tls_write_failed conn=%llu reason=\"%s\"", (unsigned long long)c->id,
                  tls_reason());
        return -1;
    }
    return 0;
}

static void arm_flush_deadline(struct conn *c);
static bool peer_took_more(const struct conn *c);

/* Writes as much queued output as the socket takes. Returns false if the connection closed. */
static bool flush(struct conn *c)
{
    struct ssl_st *ssl = ssl_of(c);
    if (ssl && !(c->tls & CONN_TLS_UP))
        return true; /* handshaking: the session has not started */
    if (c->io_hold & CONN_HOLD_WRITE)
        return true; /* conn_hold_io writes it when the hold ends */
    size_t queued = c->out_bytes;
    if ((ssl ? write_tls(c, ssl) : write_plain(c)) < 0) {
        conn_close(c);
        return false;
    }
    if (c->state == CONN_FLUSHING && c->out_bytes < queued)
        arm_flush_deadline(c); /* a peer that reads, however slowly, gets all of it */
    if (c->out_count == 0) {
        /* A connection whose queue empties again within a second is busy: it keeps its ring
         * (no allocation per message); a quiet one gives it back. */
        uint64_t now = conn_now(c);
        bool busy = now - c->last_drain_ms < 1000 && c->out_cap <= CONN_RING_KEEP;
        c->last_drain_ms = now;
        if (busy)
            c->out_head = 0;
        else
            drop_output(c);
    }
    c->want_write = c->out_count > 0 && !(c->tls & CONN_TLS_WRITE_WANTS_READ);
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
    if (resumed)
        read_buffered(c);
    if (c->state == CONN_OPEN && c->out_bytes < CONN_OUT_LOW && c->handler &&
        c->handler->on_drained)
        c->handler->on_drained(c);
    return c->state != CONN_CLOSED;
}

size_t conn_write_now(struct conn *c)
{
    struct ssl_st *ssl = ssl_of(c);
    if (c->state != CONN_OPEN || (ssl && !(c->tls & CONN_TLS_UP)) || (c->io_hold & CONN_HOLD_WRITE))
        return c->out_bytes;
    /* An error is left where it is: the turn's flush meets it again and closes c, out of the
     * caller's way. The queue stays marked for that flush, which also sets the epoll events. */
    (void)(ssl ? write_tls(c, ssl) : write_plain(c));
    return c->out_bytes;
}

/* --- closing --- */

static void on_timer(struct timer *t)
{
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    if (c->state == CONN_OPEN) {
        if (c->handler->on_timer)
            c->handler->on_timer(c);
    } else if (c->state == CONN_FLUSHING && peer_took_more(c)) {
        arm_flush_deadline(c);
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

/* Bytes written to c's socket that its peer has not acknowledged yet (0 if unknown). */
static uint32_t kernel_unacked(const struct conn *c)
{
    int n = 0;
    if (ioctl(c->fd, SIOCOUTQ, &n) < 0 || n < 0)
        return 0;
    return (uint32_t)n;
}

/*
 * A closing connection whose output stops moving for this long (the peer does not read) is cut.
 * One whose peer keeps taking it is not, however slowly: what it was sent last says why it is
 * closed. Its queue moves into the socket only once the peer has emptied much of the socket's
 * buffer (megabytes), so the peer's progress is read from the socket too.
 */
static void arm_flush_deadline(struct conn *c)
{
    c->flush_unacked = kernel_unacked(c);
    timer_start(c->set->loop, &c->timer, conn_now(c) + c->set->linger_ms + FLUSH_STALL_MS);
}

/* Whether c's peer took some of what the socket held since the flush deadline was armed. */
static bool peer_took_more(const struct conn *c)
{
    return kernel_unacked(c) < c->flush_unacked;
}

void conn_close_after_flush(struct conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    if (ssl_of(c) && !(c->tls & CONN_TLS_UP)) {
        conn_close(c); /* mid-handshake there is nothing to flush */
        return;
    }
    release_session(c);
    c->state = CONN_FLUSHING;
    c->in_len = 0; /* the buffer itself may be under the caller: freed with the connection */
    /* Keep reading (and discarding) so a peer that writes on cannot wedge us. */
    c->reading_paused = false;
    update_events(c);
    arm_flush_deadline(c);
    if (c->out_count == 0)
        start_linger(c);
    else
        mark_dirty(c);
}

static void start_linger(struct conn *c)
{
    struct ssl_st *ssl = ssl_of(c);
    if (ssl && (c->tls & CONN_TLS_UP) && !(c->tls & CONN_TLS_SHUT_SENT)) {
        /* close_notify first, so the peer knows the stream ended here, not cut short. */
        if (tls_shutdown(ssl) == TLS_IO_WANT_WRITE) {
            c->want_write = true; /* still FLUSHING: EPOLLOUT brings us back here */
            update_events(c);
            return;
        }
        c->tls |= CONN_TLS_SHUT_SENT; /* sent, or given up on: best effort */
    }
    c->state = CONN_LINGER;
    shutdown(c->fd, SHUT_WR);
    timer_start(c->set->loop, &c->timer, conn_now(c) + c->set->linger_ms);
}

void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    bool parked = c->state == CONN_PARKED;
    if (c->state == CONN_OPEN || parked)
        release_session(c);
    c->state = CONN_CLOSED;
    timer_stop(c->set->loop, &c->timer);
    if (!parked)
        loop_watch_del(c->set->loop, c->fd);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->tls & CONN_TLS_TAIL) {
        struct conn_tls *t = (struct conn_tls *)c;
        tls_free(t->ssl);
        t->ssl = NULL;
    }
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

/* --- live upgrades --- */

void conn_hold_io(struct conn *c, uint8_t bits)
{
    uint8_t lifted = c->io_hold & (uint8_t)~bits;
    c->io_hold = bits;
    if (c->state != CONN_OPEN)
        return;
    update_events(c);
    if ((lifted & CONN_HOLD_WRITE) && c->out_count > 0) {
        c->want_write = true;
        mark_dirty(c);
    }
    if ((lifted & CONN_HOLD_READ) && !c->input_held && !c->reading_paused) {
        if (c->in_len > 0)
            process_pending(c);
        if (c->state == CONN_OPEN)
            read_buffered(c);
    }
}

void conn_park(struct conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->parked_timer = timer_active(&c->timer);
    timer_stop(c->set->loop, &c->timer);
    loop_watch_del(c->set->loop, c->fd);
    c->state = CONN_PARKED;
}

void conn_unpark(struct conn *c)
{
    if (c->state != CONN_PARKED)
        return;
    c->state = CONN_OPEN;
    c->events = 0; /* watched again for nothing, then for what it wants */
    loop_watch_add(c->set->loop, c->fd, 0, &c->watch);
    update_events(c);
    if (c->parked_timer)
        timer_start(c->set->loop, &c->timer, c->timer.due_ms);
    if (c->out_count > 0)
        mark_dirty(c);
}

void conn_drop_moved(struct conn *c)
{
    if (c->state != CONN_PARKED)
        return;
    c->moved = true;
    conn_close(c);
}

int conn_detach(struct conn *c)
{
    conn_park(c);
    if (c->state != CONN_PARKED)
        return -1;
    int fd = c->fd;
    c->fd = -1;
    c->moved = true;
    conn_close(c);
    return fd;
}

void conn_output_copy(const struct conn *c, uint8_t *dst)
{
    for (uint32_t i = 0; i < c->out_count; i++) {
        const struct conn_out *o = &c->out[ring_slot(c, i)];
        memcpy(dst, o->chunk->data + o->off, o->end - o->off);
        dst += o->end - o->off;
    }
}

/* Gives c's memory back to its set's pool (the one adopt took it from). */
static void conn_free(struct conn_set *set, struct conn *c)
{
    pool_put((c->tls & CONN_TLS_TAIL) ? &set->tls_conns : &set->plain_conns, c);
}

static void free_dead(struct conn_set *set)
{
    while (set->dead) {
        struct conn *c = set->dead;
        set->dead = c->dead_next;
        free(c->in);
        conn_free(set, c);
    }
}

void conn_set_sweep(struct conn_set *set)
{
    uint64_t now = loop_now(set->loop);
    for (struct conn *c = set->all; c; c = c->next)
        if (c->out && c->out_count == 0 && now - c->last_drain_ms >= 1000)
            drop_output(c);
}

bool conn_set_flush(struct conn_set *set, size_t max)
{
    for (size_t i = 0; i < max && set->dirty; i++) {
        struct conn *c = set->dirty;
        set->dirty = c->dirty_next;
        c->is_dirty = false;
        if (c->state == CONN_OPEN || c->state == CONN_FLUSHING)
            flush(c);
    }
    return set->dirty != NULL;
}

void conn_set_before_sleep(struct conn_set *set)
{
    conn_set_flush(set, SIZE_MAX);
    chunk_unrefs_drop(&set->written);
    if (set->writes) {
        atomic_fetch_add_explicit(&writes_total, set->writes, memory_order_relaxed);
        set->writes = 0;
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
    while (used < len && c->state == CONN_OPEN && !c->reading_paused && !c->input_held &&
           !(c->io_hold & CONN_HOLD_READ)) {
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

/* Lazily: epoll goes on watching for input until some comes while held (on_events stops it
 * then), so a hold that nothing arrives in, as a client waiting for its login's or join's answer
 * sends nothing, costs no epoll_ctl either way. */
void conn_hold_input(struct conn *c)
{
    c->input_held = true;
}

void conn_release_input(struct conn *c)
{
    if (!c->input_held || c->state != CONN_OPEN)
        return;
    c->input_held = false;
    update_events(c);
    if (c->in_len > 0)
        process_pending(c);
    read_buffered(c);
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

/* Where the next read goes: the worker's scratch buffer, or after the input c keeps. */
static uint8_t *input_space(struct conn *c, size_t *have, size_t *room)
{
    if (c->state == CONN_OPEN && c->in_len > 0) {
        /* Continue a pending request in the connection's own buffer. */
        if (c->in_cap - c->in_len < 4096) {
            c->in_cap = c->in_cap * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        *have = c->in_len;
        *room = c->in_cap - c->in_len;
        return c->in;
    }
    *have = 0;
    *room = c->set->scratch_size;
    return c->set->scratch;
}

static void read_plain(struct conn *c)
{
    size_t have, room;
    uint8_t *buf = input_space(c, &have, &room);
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

/*
 * Decrypts what has arrived, a buffer at a time, and hands it to the handler.
 * Reads on while OpenSSL still holds decrypted bytes (no epoll event would
 * announce them), unless input is held or paused: then conn_release_input or
 * the end of the pause comes back for them (read_buffered).
 */
static void read_tls(struct conn *c, struct ssl_st *ssl)
{
    c->tls &= (uint8_t)~CONN_TLS_READ_WANTS_WRITE;
    for (;;) {
        size_t have, room, got = 0;
        uint8_t *buf = input_space(c, &have, &room);
        ssize_t r = 0;
        while (got < room && (r = tls_read(ssl, buf + have + got, room - got)) > 0)
            got += (size_t)r;
        if (got > 0) {
            c->last_rx_ms = conn_now(c);
            handle_input(c, buf, have + got);
            if (c->state != CONN_OPEN)
                return;
        }
        if (r == TLS_IO_WANT_WRITE) {
            c->tls |= CONN_TLS_READ_WANTS_WRITE;
            update_events(c);
            return;
        }
        if (r == TLS_IO_CLOSED) {
            /* The peer is done sending; answers to what it sent still go out. Input it sent
             * before that and that waits (held or paused) is handled first: read_buffered
             * comes back here when the wait ends. */
            if (!c->input_held && !c->reading_paused)
                conn_close_after_flush(c);
            return;
        }
        if (r == TLS_IO_ERROR) {
            log_debug("msg=tls_read_failed conn=%llu reason=\"%s\"", (unsigned long long)c->id,
                      tls_reason());
            conn_close(c);
            return;
        }
        if (c->input_held || c->reading_paused || !tls_has_pending(ssl))
            return;
    }
}

/* After a hold or a pause: what OpenSSL decrypted meanwhile, or the peer's close_notify. */
static void read_buffered(struct conn *c)
{
    struct ssl_st *ssl = ssl_of(c);
    if (ssl && (c->tls & CONN_TLS_UP) && c->state == CONN_OPEN && !c->input_held &&
        !c->reading_paused && (tls_has_pending(ssl) || tls_peer_closed(ssl)))
        read_tls(c, ssl);
}

/*
 * Advances the handshake of a new TLS connection. Before the first call the
 * first byte is peeked at: a peer that does not start with a handshake record
 * does not speak TLS, and its bytes go to the handler as plain input.
 */
static void handshake(struct conn *c, struct ssl_st *ssl)
{
    if (tls_before_handshake(ssl)) {
        uint8_t first;
        ssize_t r;
        do
            r = recv(c->fd, &first, 1, MSG_PEEK);
        while (r < 0 && errno == EINTR);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            tls_count(TLS_RESULT_FAILED);
            log_debug("msg=tls_handshake_failed conn=%llu reason=\"closed before a byte\"",
                      (unsigned long long)c->id);
            conn_close(c);
            return;
        }
        if (first != TLS_HANDSHAKE_RECORD) {
            tls_count(TLS_RESULT_NOT_TLS);
            log_debug("msg=tls_not_tls conn=%llu first_byte=%u", (unsigned long long)c->id, first);
            tls_free(ssl);
            ((struct conn_tls *)c)->ssl = NULL;
            read_plain(c);
            return;
        }
    }
    int r = tls_handshake(ssl);
    if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
        c->want_write = r == TLS_IO_WANT_WRITE;
        update_events(c);
        return;
    }
    if (r != 1) {
        log_debug("msg=tls_handshake_failed conn=%llu reason=\"%s\"", (unsigned long long)c->id,
                  tls_reason());
        conn_close(c);
        return;
    }
    c->tls |= CONN_TLS_UP;
    c->want_write = false;
    update_events(c);
    if (log_enabled(LOG_DEBUG)) {
        char about[160];
        tls_describe(ssl, about, sizeof about);
        log_debug("msg=tls_handshake_done conn=%llu %s", (unsigned long long)c->id, about);
    }
    c->last_rx_ms = conn_now(c);
    c->handler->on_handshake(c);
    if (c->set->goodbye >= 0 && c->state == CONN_OPEN && c->handler && c->handler->on_shutdown)
        c->handler->on_shutdown(c, (enum conn_goodbye)c->set->goodbye);
    if (c->out_count > 0)
        mark_dirty(c);
    read_buffered(c);
}

static void read_input(struct conn *c)
{
    struct ssl_st *ssl = ssl_of(c);
    if (!ssl || c->state != CONN_OPEN)
        read_plain(c); /* plain, or closing: a closing TLS connection's bytes are dropped */
    else if (c->tls & CONN_TLS_UP)
        read_tls(c, ssl);
    else
        handshake(c, ssl);
}

static void on_events(struct loop_watch *w, uint32_t events)
{
    struct conn *c = (struct conn *)w;
    if (c->state == CONN_CLOSED)
        return;
    struct ssl_st *ssl = ssl_of(c);
    if (ssl && !(c->tls & CONN_TLS_UP) && c->state == CONN_OPEN) {
        handshake(c, ssl);
        return;
    }
    if (ssl && (events & (EPOLLHUP | EPOLLERR)) && tls_peer_closed(ssl)) {
        /* Gone both ways after its close_notify: nothing more can be read or delivered, and
         * the hang-up would be reported again and again while input waits on a hold. */
        conn_close(c);
        return;
    }
    if (events & EPOLLOUT) {
        if (c->tls & CONN_TLS_READ_WANTS_WRITE) {
            c->tls &= (uint8_t)~CONN_TLS_READ_WANTS_WRITE;
            read_input(c);
            if (c->state == CONN_CLOSED)
                return;
        }
        if (!flush(c))
            return;
    }
    if ((c->io_hold & CONN_HOLD_READ) && c->state == CONN_OPEN) {
        /* Held by a live upgrade: its input is not ours to read now. A peer gone both ways
         * (reset) is reported again and again, and will never read an answer: close. */
        if (events & (EPOLLHUP | EPOLLERR))
            conn_close(c);
        return;
    }
    if (c->input_held && !(c->tls & CONN_TLS_WRITE_WANTS_READ) &&
        (events & (EPOLLIN | EPOLLRDHUP)) && !(events & (EPOLLHUP | EPOLLERR))) {
        update_events(c); /* input while held (conn_hold_input): stop watching for it */
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if ((c->tls & CONN_TLS_WRITE_WANTS_READ) && !flush(c))
            return;
        read_input(c);
    }
}

/* Takes a struct conn, or one with the TLS tail, from set's pools and adopts fd. */
static struct conn *adopt(struct conn_set *set, int fd, const struct conn_handler *h,
                          enum conn_transport transport, bool tls)
{
    struct conn *c = pool_get(tls ? &set->tls_conns : &set->plain_conns);
    if (tls)
        c->tls = CONN_TLS_TAIL;
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
        conn_free(set, c);
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

struct conn *conn_new(struct conn_set *set, int fd, const struct conn_handler *h,
                      enum conn_transport transport)
{
    return adopt(set, fd, h, transport, false);
}

struct conn *conn_new_tls(struct conn_set *set, int fd, const struct conn_handler *h,
                          enum conn_transport transport, struct ssl_st *ssl)
{
    struct conn *c = adopt(set, fd, h, transport, true);
    if (!c) {
        tls_free(ssl);
        return NULL;
    }
    ((struct conn_tls *)c)->ssl = ssl;
    return c;
}
