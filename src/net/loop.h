/*
 * loop: one epoll event loop per worker thread, with a timer heap and a
 * before-sleep hook. Every epoll call of the program lives in loop.c.
 *
 * DESIGN: level-triggered epoll; callers embed a `struct loop_watch` and a
 * `struct timer` in their own objects, so the loop allocates nothing per
 * connection. Time is a monotonic millisecond clock read once per turn.
 * Objects that are closed while a batch of events is being handled must not
 * be freed until the before-sleep hook runs: later events of the same batch
 * may still point at them.
 */
#ifndef PARLEY_LOOP_H
#define PARLEY_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* Events are EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP/EPOLLRDHUP bits. */
struct loop_watch {
    void (*cb)(struct loop_watch *w, uint32_t events);
};

struct timer {
    uint64_t due_ms;
    uint32_t heap_index; /* TIMER_IDLE when not scheduled */
    void (*cb)(struct timer *t);
};
#define TIMER_IDLE UINT32_MAX

/* Returns a new loop, or NULL with errno set. */
struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Each returns 0 or a negative errno. */
int loop_watch_add(struct loop *l, int fd, uint32_t events, struct loop_watch *w);
int loop_watch_mod(struct loop *l, int fd, uint32_t events, struct loop_watch *w);
int loop_watch_del(struct loop *l, int fd);

void timer_init(struct timer *t, void (*cb)(struct timer *t));
/* (Re)schedules t to fire at due_ms on the loop's clock. */
void timer_start(struct loop *l, struct timer *t, uint64_t due_ms);
void timer_stop(struct loop *l, struct timer *t);
static inline bool timer_active(const struct timer *t)
{
    return t->heap_index != TIMER_IDLE;
}

/* The loop's clock in milliseconds (CLOCK_MONOTONIC), as of this turn. */
uint64_t loop_now(const struct loop *l);

/* Runs hook(arg) each turn after events and timers, before sleeping. */
void loop_set_before_sleep(struct loop *l, void (*hook)(void *arg), void *arg);

/* Requests that the loop sleep no longer than until now (a hook has more work). */
void loop_wake_soon(struct loop *l);

/* Runs until loop_stop is called from the loop's own thread. */
void loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* False once loop_stop was called: the hook's run is the loop's last. */
bool loop_running(const struct loop *l);

/* Returns CLOCK_MONOTONIC in milliseconds. */
uint64_t clock_ms(void);

#endif
