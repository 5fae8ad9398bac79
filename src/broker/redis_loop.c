/* redis_loop: hiredis's async client on parley's epoll loop. */
#include "redis_loop.h"

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>

static void update(struct redis_loop *rl, uint32_t events)
{
    if (!rl->ac || events == rl->events)
        return;
    rl->events = events;
    int fd = rl->ac->c.fd;
    if (!rl->watching) {
        if (loop_watch_add(rl->loop, fd, events, &rl->watch) == 0)
            rl->watching = true;
    } else {
        loop_watch_mod(rl->loop, fd, events, &rl->watch);
    }
}

static void add_read(void *p)
{
    struct redis_loop *rl = p;
    update(rl, rl->events | EPOLLIN);
}

static void del_read(void *p)
{
    struct redis_loop *rl = p;
    update(rl, rl->events & ~(uint32_t)EPOLLIN);
}

static void add_write(void *p)
{
    struct redis_loop *rl = p;
    update(rl, rl->events | EPOLLOUT);
}

static void del_write(void *p)
{
    struct redis_loop *rl = p;
    update(rl, rl->events & ~(uint32_t)EPOLLOUT);
}

/* hiredis is freeing the context: stop watching its socket (still open here). */
static void cleanup(void *p)
{
    struct redis_loop *rl = p;
    if (rl->watching && rl->ac)
        loop_watch_del(rl->loop, rl->ac->c.fd);
    rl->watching = false;
    rl->events = 0;
    rl->ac = NULL;
}

static void on_events(struct loop_watch *w, uint32_t events)
{
    struct redis_loop *rl = (struct redis_loop *)((char *)w - offsetof(struct redis_loop, watch));
    /* A read may end in a disconnect that frees the context (cleanup sets ac NULL). */
    if (rl->ac && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleRead(rl->ac);
    if (rl->ac && (events & EPOLLOUT))
        redisAsyncHandleWrite(rl->ac);
}

int redis_loop_attach(struct redis_loop *rl, struct loop *l, redisAsyncContext *ac)
{
    if (ac->ev.data)
        return -EEXIST;
    rl->watch.cb = on_events;
    rl->loop = l;
    rl->ac = ac;
    rl->events = 0;
    rl->watching = false;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = rl;
    return 0;
}
