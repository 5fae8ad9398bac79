/*
 * conn: one client connection on a worker's loop: non-blocking reads, an
 * output queue of chunk references flushed with writev, a timer, and an
 * orderly close. What the bytes mean is the business of a handler (an HTTP,
 * WebSocket or telnet session) that can be swapped, as on an upgrade.
 *
 * DESIGN: a connection is a small state machine:
 *   OPEN -> FLUSHING (closing: queued output is still being written)
 *        -> LINGER   (write side shut; unread input drained so the peer gets
 *                     our last bytes instead of a reset)
 *        -> CLOSED   (fd closed; memory freed before the loop next sleeps).
 * A live upgrade may also park an open connection (CONN_PARKED): no I/O and
 * no timer while another process decides whether it takes it over; then it
 * is dropped (that process has it) or opened again.
 * It is never freed inside its own callback: closing only marks it and puts
 * it on its set's dead list. Input buffers and the output ring exist only
 * while they hold bytes, so an idle connection is just this struct.
 * Output is written once per loop turn (before sleeping), so several
 * messages queued in one turn leave in one writev. The output ring of a
 * connection that receives often is kept between flushes, so a busy room
 * costs no allocation per recipient; an idle one gives it back.
 *
 * TLS: a connection accepted on a TLS port is allocated with a tail holding
 * its OpenSSL state (plain connections do not carry the pointer). It starts
 * in a handshake, driven by EPOLLIN/EPOLLOUT with non-blocking calls, during
 * which no handler input or output happens; then on_handshake starts the
 * session. Reads decrypt into the same buffers as plain reads, and bytes
 * OpenSSL already decrypted are read on when input is released or resumed
 * (no epoll event would announce them). Output is encrypted once per loop
 * turn: what is queued is gathered into records (a single large piece goes
 * from its chunk as is). A graceful close sends close_notify before the
 * write side is shut; the linger drain then discards raw bytes.
 */
#ifndef PARLEY_CONN_H
#define PARLEY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "loop.h"
#include "pool.h"
#include "ws_frame.h"

struct ssl_st; /* OpenSSL's SSL, behind tls.h */

enum conn_state {
    CONN_OPEN,
    CONN_FLUSHING,
    CONN_LINGER,
    CONN_CLOSED,
    /* A live upgrade wrote its record and sent its socket to the new process: no I/O, no timer,
     * until it is known to be the new process's (conn_drop_moved) or handed back (conn_unpark). */
    CONN_PARKED,
};

enum conn_transport { CONN_HTTP, CONN_WEBSOCKET, CONN_TELNET, CONN_TRANSPORTS };

struct conn;
struct ws_inflater;

/* Why the server says goodbye to every connection. */
enum conn_goodbye {
    CONN_GOODBYE_SHUTDOWN, /* the server stops: WebSocket close 1001 */
    CONN_GOODBYE_RESTART,  /* another process took over: close 1012, come back at once */
};

struct conn_handler {
    /*
     * Consumes input data[0..len) and returns how many bytes it used; bytes
     * left over are offered again, with more, when they arrive. The handler
     * may send, close, or switch c->handler (the rest then goes to the new one).
     */
    size_t (*on_input)(struct conn *c, uint8_t *data, size_t len);
    /* The timer set with conn_set_timer fired while the connection is OPEN. */
    void (*on_timer)(struct conn *c);
    /* The connection is closing: release session state. Optional. */
    void (*on_close)(struct conn *c);
    /* The server is shutting down or handing over: say goodbye (close 1001 or 1012) and close. */
    void (*on_shutdown)(struct conn *c, enum conn_goodbye why);
    /* The output queue fell below CONN_OUT_LOW: room for held-back output. Optional. */
    void (*on_drained)(struct conn *c);
    /* TLS connections: the handshake is done; start the session (set c->handler). */
    void (*on_handshake)(struct conn *c);
};

/* One queued piece of output: bytes [off, end) of a chunk we hold a reference to. */
struct conn_out {
    struct chunk *chunk;
    uint32_t off, end;
};

/* WebSocket session state, kept here so a connection's whole state is in one place. */
struct conn_ws {
    struct ws_reader reader;
    struct chunk *msg;            /* the data message being reassembled, or NULL */
    struct ws_inflater *inflater; /* while a compressed message is being received, or NULL */
    uint64_t last_ping_ms;
    uint64_t opened_ms;
    /* Its one-byte fields (endpoint, deflate window, hold) live in struct conn's flags, where
     * they fill a hole instead of making one here. */
};

/* The connections of one worker thread. */
struct conn_set {
    struct loop *loop;
    uint8_t *scratch; /* read buffer shared by every connection of the set */
    size_t scratch_size;
    uint8_t *tls_gather; /* one TLS record's worth of gathered output, made when first needed */
    struct conn *all;    /* doubly linked through prev/next */
    struct conn *dirty;  /* output queued since the last flush */
    struct conn *dead;   /* closed, freed before the loop sleeps */
    size_t count;
    uint64_t linger_ms; /* how long a closing connection drains input */
    void *owner;        /* the worker, for handlers */
    /* -1, or the goodbye (enum conn_goodbye) the server is saying: a TLS connection that
     * finishes its handshake meanwhile gets it as soon as its session starts. */
    int8_t goodbye;
    /* Socket writes (writev calls, TLS records) not yet added to the process's count: added
     * once per turn, so counting costs no shared cache line per write. */
    uint64_t writes;
    /* References to drop for written output, gathered per chunk: a wave of deliveries writes the
     * same few chunks to one connection after another, and dropping them one atomic operation at
     * a time would bounce each chunk's counter between the workers that all write it. Dropped
     * before the loop sleeps (conn_set_before_sleep), or when the table is full. */
    struct chunk_unrefs written;
    /* The connections' own memory, plain and with the TLS tail: slabs of the worker's, apart
     * from the heap that output and a join storm's buffers come from. */
    struct pool plain_conns, tls_conns;
    /* Output rings of the first size (CONN_RING_FIRST entries), which a join storm or a count
     * event gives nearly every connection for a second or two: in slabs that go back to the
     * system whole as soon as the rings are dropped, with no trim to wait for. */
    struct pool rings;
};

struct conn {
    struct loop_watch watch; /* first: the loop hands us this pointer */
    struct conn_set *set;
    const struct conn_handler *handler;
    int fd;
    uint32_t events; /* what epoll watches for now */
    /* Flags and small fields together, so the struct has no holes (it is most of the memory of
     * an idle connection: see docs/architecture.md, "Memory of an idle connection"). */
    uint8_t state;
    uint8_t transport;
    uint8_t io_hold; /* CONN_HOLD_* bits: a live upgrade holds this connection's I/O */
    uint8_t tls;     /* CONN_TLS_* bits; 0 on a plain connection */
    uint8_t http;    /* CONN_HTTP_* bits, while the connection speaks HTTP */
    bool reading_paused;
    bool input_held;   /* the session awaits a result before it may read on */
    bool moved;        /* its session lives on in another process: leave without a word */
    bool parked_timer; /* parked with its timer armed (at timer.due_ms) */
    bool want_write;
    bool is_dirty;
    bool peer_counted; /* counted under peer_key in peers.c while open */
    bool via_proxy;    /* accepted from a --trusted-proxy: the client is in X-Forwarded-For */
    /* WebSocket state (with u.ws): which endpoint (see ws_session.h); permessage-deflate's window
     * limit for us (8..15), or 0 when not negotiated; a live upgrade holds input once the
     * compressed message under way ends. */
    uint8_t ws_endpoint;
    uint8_t ws_deflate_bits;
    bool ws_hold_at_end;
    uint32_t in_len, in_cap;
    uint32_t out_head, out_count, out_cap;
    uint32_t flush_unacked; /* FLUSHING: what the socket held unacknowledged at the last check */
    uint64_t id;
    uint64_t peer_key;   /* the client's address (addr_key), or 0 when it has none */
    uint64_t net_key;    /* the client's network (addr_net_key): what logins are throttled by */
    uint64_t last_rx_ms; /* when bytes last arrived */
    struct timer timer;
    uint8_t *in;          /* unparsed input, or NULL */
    struct conn_out *out; /* ring of queued output, or NULL */
    size_t out_bytes;
    uint64_t last_drain_ms; /* when the output queue last became empty */
    struct conn *prev, *next, *dirty_next, *dead_next;
    union {
        struct conn_ws ws;
    } u;
    void *session; /* the chat session of a logged-in client, owned by the chat layer */
};

/* The TLS bits of struct conn. */
#define CONN_TLS_TAIL 0x01             /* allocated with the TLS tail (accepted on a TLS port) */
#define CONN_TLS_UP 0x02               /* handshake done */
#define CONN_TLS_WRITE_WANTS_READ 0x04 /* the last write waits for the socket to be readable */
#define CONN_TLS_READ_WANTS_WRITE 0x08 /* the last read waits for the socket to be writable */
#define CONN_TLS_SHUT_SENT 0x10        /* close_notify sent (or given up on) */

/* The HTTP bits of struct conn. */
#define CONN_HTTP_ANSWERED 0x01 /* a response was sent: an idle connection may just be closed */
#define CONN_HTTP_LAST 0x02     /* handing over: the response under way (or next) is the last */

/* The I/O holds of a live upgrade (handover.c). */
#define CONN_HOLD_READ 0x01 /* input stays in the socket (and in c->in) until the hold ends */
#define CONN_HOLD_WRITE                                                                            \
    0x02 /* output is queued, not written: the socket is not ours to write yet */

/* Output queued beyond this pauses reading until it drains below CONN_OUT_LOW. */
/* Entries of a connection's first output ring (it doubles from there: a power of two). */
#define CONN_RING_FIRST 8u
/* The largest ring a busy connection keeps between writes (4 KiB): a room where everyone talks
 * queues a hundred messages a wave, and a ring rebuilt every wave costs an allocation per
 * doubling. The sweep gives it back once the connection is quiet. */
#define CONN_RING_KEEP 256u
#define CONN_OUT_HIGH (1u << 20)
#define CONN_OUT_LOW (256u << 10)
/* Unparsed input a handler may leave pending before the connection is dropped. */
#define CONN_MAX_PENDING_INPUT (64u << 10)

void conn_set_init(struct conn_set *set, struct loop *loop, void *owner);
void conn_set_destroy(struct conn_set *set);
/*
 * Writes the queued output of up to max connections (SIZE_MAX: all). Returns true if some are
 * left. Output queued meanwhile for a connection not yet written joins its write, so a caller
 * that handles new deliveries between calls sends more messages per write. The references to
 * what was written are dropped by conn_set_before_sleep, once for the whole pass.
 */
bool conn_set_flush(struct conn_set *set, size_t max);
/*
 * Gives back the output rings kept by connections whose queue has been empty for a second or more
 * (a busy connection keeps its ring between writes: see flush in conn.c), so a burst of traffic
 * leaves nothing behind. Call every few seconds; it walks every connection of the set.
 */
void conn_set_sweep(struct conn_set *set);
/* Flushes queued output, drops the references to what the turn wrote and frees dead
 * connections: call before the loop sleeps. */
void conn_set_before_sleep(struct conn_set *set);

/*
 * Adopts the connected socket fd (non-blocking) with a first handler and
 * starts watching it. Returns the connection, or NULL (fd closed) if epoll
 * refuses it.
 */
struct conn *conn_new(struct conn_set *set, int fd, const struct conn_handler *h,
                      enum conn_transport transport);

/*
 * Like conn_new, for a socket accepted on a TLS port: ssl (from tls_new, for
 * this fd) is owned by the connection from now on, also on failure. The
 * handshake starts with the first bytes; h->on_handshake is called when it is
 * done. If the first byte is not a TLS handshake record, the TLS state is
 * dropped and h->on_input gets the plain bytes (to answer a plain HTTP request
 * on the HTTPS port, say). The handshake deadline is the handler's timer.
 * Returns the connection, or NULL (fd closed, ssl freed).
 */
struct conn *conn_new_tls(struct conn_set *set, int fd, const struct conn_handler *h,
                          enum conn_transport transport, struct ssl_st *ssl);

/* True if c speaks TLS (its handshake may still be going on). */
bool conn_is_tls(const struct conn *c);

/*
 * Holds input: what is buffered stays unhandled and the socket is not read
 * until conn_release_input, which handles the held bytes at once. A session
 * holds while a request that later ones depend on (a login, a join) is
 * answered by another thread, so requests take effect in the order sent.
 */
void conn_hold_input(struct conn *c);
void conn_release_input(struct conn *c);

/*
 * Live upgrades (handover.c). conn_hold_io sets c's I/O holds to `bits` (CONN_HOLD_*): what a
 * lifted hold kept back goes on at once (held input is handled, queued output written). While
 * reading is held, a peer that hangs up or resets closes the connection.
 */
void conn_hold_io(struct conn *c, uint8_t bits);
/* c (open) stops all I/O and its timer: see CONN_PARKED. */
void conn_park(struct conn *c);
/* A parked c is open again, its I/O holds and timer as they were. */
void conn_unpark(struct conn *c);
/*
 * c (parked) is the new process's: closes this process's descriptor of the socket (the other
 * process holds it open: nothing is sent), frees the session without telling anyone (c->moved),
 * and frees c before the loop sleeps.
 */
void conn_drop_moved(struct conn *c);
/*
 * Lets go of c (open or parked) without closing its socket, whose descriptor is returned (an
 * exec hands it on): as conn_drop_moved otherwise. Returns -1 if c is neither.
 */
int conn_detach(struct conn *c);
/* Copies the n bytes of output queued (c->out_bytes of them) into dst. */
void conn_output_copy(const struct conn *c, uint8_t *dst);

/* Queues bytes [off, end) of chunk; takes over one reference the caller held. */
void conn_send(struct conn *c, struct chunk *chunk, size_t off, size_t end);
/* Queues a copy of p[0..n). */
void conn_send_copy(struct conn *c, const void *p, size_t n);

/*
 * Writes what the socket takes of c's queue now instead of at the end of the loop turn, and calls
 * no handler. For a judgement on how far behind the peer is: output queued this turn has not
 * been offered to the socket yet. Returns what is still queued (c->out_bytes).
 */
size_t conn_write_now(struct conn *c);

/* Stops handling input, writes what is queued, shuts the write side, drains, closes. */
void conn_close_after_flush(struct conn *c);
/* Closes at once, dropping queued output. */
void conn_close(struct conn *c);

/* (Re)arms the connection's one timer for the handler, at due_ms on the loop clock. */
void conn_set_timer(struct conn *c, uint64_t due_ms);

void conn_set_transport(struct conn *c, enum conn_transport t);

static inline bool conn_is_open(const struct conn *c)
{
    return c->state == CONN_OPEN;
}

static inline uint64_t conn_now(const struct conn *c)
{
    return loop_now(c->set->loop);
}

/* Connections open now in the whole process, by transport. */
size_t conn_count(enum conn_transport t);
/* Socket writes (writev calls, TLS records) made so far by the whole process. */
uint64_t conn_writes(void);
/* Their lines of /metrics (METRICS_PART_CONNECTIONS and METRICS_PART_SOCKET_WRITES). */
struct metrics_out;
void conn_metrics_open(struct metrics_out *o);
void conn_metrics_writes(struct metrics_out *o);

#endif
