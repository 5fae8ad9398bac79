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
#include "listen_fds.h"
#include "loop.h"
#include "mailbox.h"

struct worker;
struct ws_zpool;

struct listener {
    struct loop_watch watch; /* first: the loop hands us this pointer */
    struct worker *worker;
    int fd;
    enum conn_transport transport;
    enum listen_kind kind; /* the port it serves: the name it is passed on under */
    bool tls;              /* connections start with a TLS handshake */
    bool paused;           /* out of file descriptors: accepting again after backoff */
    uint32_t backoff_ms;   /* the next pause's length */
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
    /* Taken from the mailbox during a flush but not handled there (not a delivery or a result):
     * handled first next turn, before the rest of the mailbox, so mail keeps its order. */
    struct mail *held_mail;
    struct listener **listeners; /* usually one per port; more when given several sockets */
    int n_listeners;
    bool accepting;    /* watching the listeners (not during an upgrade's handover) */
    bool accept_later; /* set before worker_start: accept once worker_set_accepting says so */
    bool stopping;
    bool keep_listeners; /* stopping for a new process: the sockets stay open for it */
    struct timer stop_deadline;
    struct timer heap_tick; /* every second: the heap's peak; every 5 s: idle connections' buffers */
    uint32_t heap_ticks;
    /* Goodbyes spread over time (a drain): said so far, of how many, from when, over how long. */
    struct timer goodbye_tick;
    size_t goodbyes_said, goodbyes_total;
    uint64_t goodbye_from_ms, goodbye_spread_ms;
    enum conn_goodbye goodbye;
    pthread_t thread;
    void *chat;     /* the chat layer's per-worker indexes (chat_session.c) */
    void *handover; /* a live upgrade's state on this worker (handover.c), or NULL */
    /* permessage-deflate's zlib streams, made when a connection first needs one (ws_deflate.h) */
    struct ws_zpool *zpool;
    /* Set by the process layer: make a session for a new socket, handle a mail. */
    void (*on_accept)(struct worker *w, int fd, enum conn_transport transport, bool tls);
    void (*on_mail)(struct worker *w, struct mail *m);
    /* Set by the process layer (optional): run each turn before the loop sleeps. */
    void (*on_tick)(struct worker *w);
};

/* Prepares w (loop, mailbox). Returns 0 or a negative errno. */
int worker_init(struct worker *w, int id, const struct config *cfg);
/* Frees w; drop() receives each mail still queued for it. */
void worker_destroy(struct worker *w, void (*drop)(struct mail *m));

/*
 * Gives w a listening socket (it takes the fd) to accept on once running; tls: a TLS port; kind:
 * the port it serves. Before worker_start only.
 */
void worker_add_listener(struct worker *w, int fd, enum listen_kind kind,
                         enum conn_transport transport, bool tls);

/* Sets on a listening socket fd the TCP options every connection it accepts inherits: no Nagle,
 * keepalive probes, and an end to data left unacknowledged (worker_add_listener does, for every
 * listener, made or inherited). Failures are ignored (a socket that is not TCP). */
void worker_tune_listener(int fd);

/* On the worker's own thread: stop or start watching the listeners (their sockets stay open). */
void worker_set_accepting(struct worker *w, bool on);

/* Starts the worker's thread. Returns 0 or a negative errno. */
int worker_start(struct worker *w);

/*
 * On the worker's own thread: stop accepting, ask every connection to say
 * goodbye (why), spread evenly over spread_ms (0: all at once), and end the
 * loop once all are gone or at deadline_ms. A shutdown closes the listening
 * sockets at once (new connections are refused, not left waiting); a restart
 * leaves them open for the process that took over (closed at worker_destroy).
 */
void worker_begin_shutdown(struct worker *w, uint64_t deadline_ms, uint64_t spread_ms,
                           enum conn_goodbye why);

/*
 * Takes the listening sockets out of w (an exec hands them on): worker_destroy
 * then leaves them open. Before worker_destroy, with the thread joined.
 */
void worker_detach_listeners(struct worker *w);

/* Waits for the worker's thread to end. */
void worker_join(struct worker *w);

#endif
