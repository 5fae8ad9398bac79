/*
 * client: the load generator's WebSocket client connections on one epoll
 * loop: non-blocking connect (from a chosen source address), the upgrade,
 * masked frames out (optionally cut at random frame and byte boundaries),
 * frames in with any fragmentation, pings answered. What a text message
 * means is the caller's: it gets callbacks through struct net.
 *
 * DESIGN: input is read into one buffer per loop; a frame that is not
 * complete when the bytes run out moves to a buffer of its client, which
 * exists only while such a frame is pending, so 19,000 idle clients hold no
 * input memory. Output is written at once; what the socket does not take
 * waits in the client's buffer for EPOLLOUT. A client closed inside a
 * callback has fd -1 when the callback returns, and the reader stops there.
 */
#ifndef LOADGEN_CLIENT_H
#define LOADGEN_CLIENT_H

#include "options.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum client_state {
    CS_IDLE,       /* no connection */
    CS_CONNECTING, /* connect() in progress */
    CS_UPGRADING,  /* request sent, waiting for 101 */
    CS_OPEN,       /* frames flow */
};

/* Per-sender sequence state at a receiver: the last number seen and the 32 below it. */
struct seqslot {
    uint32_t last;
    uint32_t seen;
};

struct client {
    int fd;
    uint32_t id;   /* global index, 0..clients-1 */
    uint32_t room; /* room index */
    uint8_t state;
    uint8_t stage; /* the protocol's: see run.c */
    uint8_t gen;   /* connection count, for the handshake key */
    bool want_out;
    bool joined_once;
    bool closing; /* we are dropping it: its close is not a fault */
    /* input: a pending incomplete frame (or the response head), and a fragmented message */
    uint8_t *in;
    uint32_t in_len, in_cap;
    uint8_t *msg;
    uint32_t msg_len, msg_cap;
    bool in_msg;
    /* output not yet taken by the socket */
    uint8_t *out;
    uint32_t out_off, out_len, out_cap;
    /* exactly-once state, kept across reconnects */
    uint64_t last_seq;     /* parley: the room's last seq received */
    uint64_t seen_bits;    /* bit i: seq last_seq-1-i was received */
    uint64_t join_seq;     /* the room's seq in the latest joined */
    uint32_t sent;         /* messages sent (k of the latest) */
    uint32_t acked;        /* highest k acknowledged */
    uint32_t replayed;     /* storm: messages it had replayed after the drop */
    struct seqslot *slots; /* per sender of the room, or NULL */
    uint64_t t_connect;    /* when this connection's setup began */
    char token[48];
};

struct net;

/* What the loop calls back into; each returns nothing, and may close the client. */
struct net_callbacks {
    void (*on_open)(struct net *n, struct client *c);
    void (*on_text)(struct net *n, struct client *c, const uint8_t *data, size_t len);
    /* The connection ended (why: static or net-owned text). Called once, after it is closed. */
    void (*on_closed)(struct net *n, struct client *c, const char *why);
};

struct net {
    int epfd;
    const struct options *o;
    struct net_callbacks cb;
    void *user;
    uint8_t *rbuf;
    size_t rbuf_cap;
    uint8_t *wbuf;
    size_t wbuf_cap;
    uint64_t rng;
    char why[160]; /* text of the latest close reason */
};

/* Sets up n with its epoll instance and buffers. Returns 0 or -errno. */
int net_init(struct net *n, const struct options *o, const struct net_callbacks *cb, void *user);

/* A random 64-bit number (xorshift; not for secrets). */
uint64_t net_rand(struct net *n);

/*
 * Starts connecting c (which must be CS_IDLE). Returns 0, or -errno when the
 * socket could not even be started (c stays CS_IDLE; no callback).
 */
int client_connect(struct net *n, struct client *c);

/* Handles the epoll events of c. */
void client_on_event(struct net *n, struct client *c, uint32_t events);

/*
 * Sends one text message (masked; cut as --split says). Output the socket
 * does not take is kept and sent later; a write error is left for the reader
 * to find. Returns 0, or -1 when c is not open.
 */
int client_send_text(struct net *n, struct client *c, const char *text, size_t len);

/* Closes c's connection without a callback (on_closed is for ends we did not ask for). */
void client_close(struct net *n, struct client *c);

#endif
