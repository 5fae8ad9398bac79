/* loop: epoll event loop with a binary-heap timer queue. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "mailbox.h"

#define MAX_EVENTS 256

struct loop {
    int epfd;
    bool running;
    bool wake_soon;
    uint64_t now;
    struct timer **heap;
    uint32_t heap_len, heap_cap;
    void (*before_sleep)(void *arg);
    void *before_sleep_arg;
};

uint64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct loop *loop_new(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct loop *l = xcalloc(1, sizeof *l);
    l->epfd = fd;
    l->now = clock_ms();
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l->heap);
    free(l);
}

static int ctl(struct loop *l, int op, int fd, uint32_t events, struct loop_watch *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int loop_watch_add(struct loop *l, int fd, uint32_t events, struct loop_watch *w)
{
    return ctl(l, EPOLL_CTL_ADD, fd, events, w);
}

int loop_watch_mod(struct loop *l, int fd, uint32_t events, struct loop_watch *w)
{
    return ctl(l, EPOLL_CTL_MOD, fd, events, w);
}

int loop_watch_del(struct loop *l, int fd)
{
    return ctl(l, EPOLL_CTL_DEL, fd, 0, NULL);
}

/* --- timer heap: a min-heap on due_ms; each timer knows its index. --- */

static void heap_set(struct loop *l, uint32_t i, struct timer *t)
{
    l->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct loop *l, uint32_t i)
{
    struct timer *t = l->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (l->heap[parent]->due_ms <= t->due_ms)
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, uint32_t i)
{
    struct timer *t = l->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= l->heap_len)
            break;
        if (child + 1 < l->heap_len && l->heap[child + 1]->due_ms < l->heap[child]->due_ms)
            child++;
        if (t->due_ms <= l->heap[child]->due_ms)
            break;
        heap_set(l, i, l->heap[child]);
        i = child;
    }
    heap_set(l, i, t);
}

void timer_init(struct timer *t, void (*cb)(struct timer *t))
{
    t->due_ms = 0;
    t->heap_index = TIMER_IDLE;
    t->cb = cb;
}

void timer_start(struct loop *l, struct timer *t, uint64_t due_ms)
{
    if (timer_active(t)) {
        uint64_t old = t->due_ms;
        t->due_ms = due_ms;
        if (due_ms < old)
            heap_up(l, t->heap_index);
        else
            heap_down(l, t->heap_index);
        return;
    }
    if (l->heap_len == l->heap_cap) {
        l->heap_cap = l->heap_cap ? l->heap_cap * 2 : 64;
        l->heap = xrealloc(l->heap, l->heap_cap * sizeof *l->heap);
    }
    t->due_ms = due_ms;
    heap_set(l, l->heap_len++, t);
    heap_up(l, t->heap_index);
}

void timer_stop(struct loop *l, struct timer *t)
{
    if (!timer_active(t))
        return;
    uint32_t i = t->heap_index;
    t->heap_index = TIMER_IDLE;
    struct timer *last = l->heap[--l->heap_len];
    if (i == l->heap_len)
        return;
    heap_set(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_index);
}

static void run_due_timers(struct loop *l)
{
    while (l->heap_len > 0 && l->heap[0]->due_ms <= l->now) {
        struct timer *t = l->heap[0];
        timer_stop(l, t);
        t->cb(t);
    }
}

uint64_t loop_now(const struct loop *l)
{
    return l->now;
}

void loop_set_before_sleep(struct loop *l, void (*hook)(void *arg), void *arg)
{
    l->before_sleep = hook;
    l->before_sleep_arg = arg;
}

void loop_wake_soon(struct loop *l)
{
    l->wake_soon = true;
}

static int next_timeout(struct loop *l)
{
    if (l->wake_soon || !l->running)
        return 0;
    if (l->heap_len == 0)
        return -1;
    uint64_t due = l->heap[0]->due_ms;
    if (due <= l->now)
        return 0;
    uint64_t wait = due - l->now;
    return wait > 60000 ? 60000 : (int)wait;
}

void loop_run(struct loop *l)
{
    struct epoll_event events[MAX_EVENTS];
    l->running = true;
    while (l->running) {
        l->wake_soon = false;
        if (l->before_sleep)
            l->before_sleep(l->before_sleep_arg);
        mailbox_send_deferred(); /* the turn's posts, one chain per mailbox (mailbox.h) */
        int n = epoll_wait(l->epfd, events, MAX_EVENTS, next_timeout(l));
        l->now = clock_ms();
        if (n < 0 && errno != EINTR)
            break; /* only EBADF/EINVAL: a broken invariant, nothing to recover */
        for (int i = 0; i < n; i++) {
            struct loop_watch *w = events[i].data.ptr;
            w->cb(w, events[i].events);
        }
        run_due_timers(l);
    }
    if (l->before_sleep)
        l->before_sleep(l->before_sleep_arg);
    mailbox_send_deferred();
}

void loop_stop(struct loop *l)
{
    l->running = false;
}

bool loop_running(const struct loop *l)
{
    return l->running;
}
