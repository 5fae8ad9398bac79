/* mailbox: lock-free MPSC queue with an eventfd wake-up. */
#include "mailbox.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int mailbox_init(struct mailbox *mb)
{
    mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mb->efd < 0)
        return -errno;
    atomic_init(&mb->stub.next, NULL);
    atomic_init(&mb->head, &mb->stub);
    mb->tail = &mb->stub;
    atomic_init(&mb->signalled, false);
    return 0;
}

void mailbox_destroy(struct mailbox *mb)
{
    if (mb->efd >= 0)
        close(mb->efd);
    mb->efd = -1;
}

/* Pushes the chain first..last, already linked in order, with one exchange. */
static void push_chain(struct mailbox *mb, struct mail *first, struct mail *last)
{
    atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
    struct mail *prev = atomic_exchange_explicit(&mb->head, last, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, first, memory_order_release);
}

static void signal_owner(struct mailbox *mb)
{
    if (!atomic_exchange_explicit(&mb->signalled, true, memory_order_acq_rel)) {
        uint64_t one = 1;
        ssize_t w;
        do
            w = write(mb->efd, &one, sizeof one);
        while (w < 0 && errno == EINTR);
        /* EAGAIN means the counter is already non-zero: the owner will wake. */
    }
}

/* A thread's deferred posts: one chain per mailbox, in the order of each mailbox's first post.
 * A mailbox beyond the slots is posted to at once (it has no chain, so its order holds). */
#define DEFER_SLOTS 16

struct deferred {
    struct mailbox *mb;
    struct mail *first, *last;
};

static _Thread_local bool defer_on;
static _Thread_local int n_deferred;
static _Thread_local struct deferred deferred[DEFER_SLOTS];

void mailbox_defer_posts(void)
{
    defer_on = true;
}

static bool defer(struct mailbox *mb, struct mail *m)
{
    int i = 0;
    while (i < n_deferred && deferred[i].mb != mb)
        i++;
    if (i == n_deferred) {
        if (n_deferred == DEFER_SLOTS)
            return false;
        deferred[n_deferred++] = (struct deferred){.mb = mb, .first = m};
    } else {
        atomic_store_explicit(&deferred[i].last->next, m, memory_order_relaxed);
    }
    deferred[i].last = m;
    return true;
}

void mailbox_send_deferred(void)
{
    for (int i = 0; i < n_deferred; i++) {
        push_chain(deferred[i].mb, deferred[i].first, deferred[i].last);
        signal_owner(deferred[i].mb);
    }
    n_deferred = 0;
}

void mailbox_post(struct mailbox *mb, struct mail *m)
{
    if (defer_on && defer(mb, m))
        return;
    push_chain(mb, m, m);
    signal_owner(mb);
}

void mailbox_ack(struct mailbox *mb)
{
    uint64_t count;
    ssize_t r;
    do
        r = read(mb->efd, &count, sizeof count);
    while (r < 0 && errno == EINTR);
    atomic_store_explicit(&mb->signalled, false, memory_order_release);
}

/*
 * Between a producer's exchange of `head` and its store of `prev->next` the
 * list is briefly cut; the consumer yields until the link appears, since the
 * producer may have already decided not to signal again.
 */
static struct mail *wait_next(struct mail *m)
{
    struct mail *next;
    while (!(next = atomic_load_explicit(&m->next, memory_order_acquire)))
        sched_yield();
    return next;
}

struct mail *mailbox_take(struct mailbox *mb)
{
    struct mail *tail = mb->tail;
    struct mail *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &mb->stub) {
        if (!next) {
            if (atomic_load_explicit(&mb->head, memory_order_acquire) == &mb->stub)
                return NULL; /* really empty */
            next = wait_next(tail);
        }
        mb->tail = next;
        tail = next;
        next = atomic_load_explicit(&tail->next, memory_order_acquire);
    }
    if (next) {
        mb->tail = next;
        return tail;
    }
    if (atomic_load_explicit(&mb->head, memory_order_acquire) != tail) {
        /* A producer is mid-push behind tail. */
        mb->tail = wait_next(tail);
        return tail;
    }
    /* tail is the last mail: put the stub behind it so tail can be handed out. */
    push_chain(mb, &mb->stub, &mb->stub);
    mb->tail = wait_next(tail);
    return tail;
}
