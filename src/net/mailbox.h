/*
 * mailbox: a worker's inbox. Any thread posts; only the owning worker takes.
 *
 * DESIGN: an intrusive multi-producer single-consumer queue (a linked list
 * whose head producers swap atomically; no locks) plus an eventfd that
 * wakes the owner's epoll loop. A post writes the eventfd only when the
 * owner has not been signalled since it last drained, so a burst of posts
 * costs one wake-up.
 */
#ifndef PARLEY_MAILBOX_H
#define PARLEY_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct mail {
    struct mail *_Atomic next;
    int kind; /* the receiver's dispatch tag: one of enum mail_kind */
};

/* Every kind of mail in the program, so any receiver can tell them apart. */
enum mail_kind {
    MAIL_STOP = 1,   /* stop the receiving thread (workers: shut down gracefully) */
    MAIL_OP,         /* a struct chat_op on its journey */
    MAIL_DELIVER,    /* a batch of events from the hub to a worker */
    MAIL_STORE_GATE, /* main -> hub -> store -> main: hold, open or close the store to writes */
    MAIL_WORKER_CTL, /* main -> a worker: accept or not, drain (server.c) */
    MAIL_HANDOVER,   /* main <-> a worker: a live upgrade's steps (handover.h) */
    MAIL_RELAY,      /* main -> hub -> each worker: mails behind every delivery (chat.h) */
    MAIL_GOODBYE,    /* main -> hub -> store -> hub: a clean stop's goodbye to nodes (hub.h) */
};

struct mailbox {
    struct mail *_Atomic head; /* producers push here */
    struct mail *tail;         /* the consumer takes from here */
    struct mail stub;
    atomic_bool signalled;
    int efd;
};

/* Returns 0, or a negative errno if the eventfd cannot be made. */
int mailbox_init(struct mailbox *mb);
void mailbox_destroy(struct mailbox *mb);

/* The fd to watch for EPOLLIN in the owner's loop. */
static inline int mailbox_fd(const struct mailbox *mb)
{
    return mb->efd;
}

/* Posts m (owned by the receiver from now on). Safe from any thread. */
void mailbox_post(struct mailbox *mb, struct mail *m);

/*
 * Deferred posts: a thread that runs a loop may ask that its posts wait until its loop is about
 * to sleep (loop.c sends them then), so what one turn posts to a mailbox arrives as one chain
 * with one wake-up, and the receiver takes it in one turn instead of waking for the first post
 * and again for the rest. Each mailbox gets the thread's posts in the order they were made.
 * A thread that defers must never wait for an answer inside a turn.
 */
void mailbox_defer_posts(void);
/* Sends what this thread deferred (nothing if it does not defer). */
void mailbox_send_deferred(void);

/* Owner only: clears the wake-up, then returns the next mail or NULL when empty. */
void mailbox_ack(struct mailbox *mb);
struct mail *mailbox_take(struct mailbox *mb);

#endif
