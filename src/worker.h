/*
 * worker: one thread with its own epoll loop, its own SO_REUSEPORT
 * listeners, its connections and its mailbox. A connection never leaves the
 * worker that accepted it; other threads reach a worker only by mail.
 */
#ifndef PARLEY_WORKER_H
#define PARLEY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "loop.h"
#include "mailbox.h"

/* The HTTP port, the telnet port and the TLS telnet port. */
#define WORKER_MAX_LISTENERS 3

struct worker;
struct ws_zpool;

struct listener {
    struct loop_watch watch; /* first: the loop hands us this pointer */
    struct worker *worker;
    int fd;
    enum conn_transport transport;
    bool tls;            /* connections start with a TLS handshake */
    bool paused;         /* out of file descriptors: accepting again after backoff */
    uint32_t backoff_ms; /* the next pause's length */
    struct timer resume;
};

struct worker {
    int id;
    const struct config *cfg;
    uint64_t started_ms;
    struct loop *loop;
    struct conn_set conns;
    struct mailbox mailbox;
    struct loop_watch mailbox_watch;
    struct listener listeners[WORKER_MAX_LISTENERS];
    int n_listeners;
    bool stopping;
    struct timer stop_deadline;
    pthread_t thread;
    void *chat; /* the chat layer's per-worker indexes (chat_session.c) */
    /* permessage-deflate's zlib streams, made when a connection first needs one (ws_deflate.h) */
    struct ws_zpool *zpool;
    /* Set by the process layer: make a session for a new socket, handle a mail. */
    void (*on_accept)(struct worker *w, int fd, enum conn_transport transport, bool tls);
    void (*on_mail)(struct worker *w, struct mail *m);
};

/* Prepares w (loop, mailbox). Returns 0 or a negative errno. */
int worker_init(struct worker *w, int id, const struct config *cfg);
/* Frees w; drop() receives each mail still queued for it. */
void worker_destroy(struct worker *w, void (*drop)(struct mail *m));

/* Gives w a listening socket (it takes the fd) to accept on once running; tls: a TLS port. */
void worker_add_listener(struct worker *w, int fd, enum conn_transport transport, bool tls);

/* Starts the worker's thread. Returns 0 or a negative errno. */
int worker_start(struct worker *w);

/*
 * On the worker's own thread: stop accepting, ask every connection to say
 * goodbye, and end the loop once all are gone or after deadline_ms.
 */
void worker_begin_shutdown(struct worker *w, uint64_t deadline_ms);

/* Waits for the worker's thread to end. */
void worker_join(struct worker *w);

#endif
