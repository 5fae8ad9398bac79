/* worker: a thread running one event loop over its listeners, connections and mailbox. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "ws_deflate.h"

#define ACCEPT_BATCH 64
/* Connections written between two looks at the mailbox during a flush: a look costs two atomic
 * loads when nothing came; a fan-out to thousands takes milliseconds to write. */
#define FLUSH_SLICE 64
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
/* How often worker 0 asks whether the heap's peak is worth giving back (alloc_trim: two reads
 * when it is not), so that a storm's buffers go back within a second of it; and, every
 * SWEEP_TICKS of those, buffers kept for busy connections that went quiet are given back (each
 * tick: after a big room's join storm nearly every connection keeps an output ring, 144 bytes,
 * and a walk of the worker's connections costs well under a millisecond a second at 15,000). */
#define HEAP_TICK_MS 1000
#define SWEEP_TICKS 1

/* Dead peers are found by the kernel (rule 33: telnet has no idle timeout by default): a silent
 * connection is probed after a minute, and one whose sent data stays unacknowledged for two
 * minutes (a peer that vanished, or stopped reading for good) is ended. */
#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 15
#define KEEPALIVE_PROBES 4
#define UNACKED_TIMEOUT_MS 120000

/* Set once on a listener rather than on each accepted socket: Linux copies all six into every
 * socket accept returns (six system calls fewer per connection, 3% of a join storm's CPU). */
void worker_tune_listener(int fd)
{
    int one = 1;
    int idle = KEEPALIVE_IDLE_S, interval = KEEPALIVE_INTERVAL_S, probes = KEEPALIVE_PROBES;
    unsigned unacked = UNACKED_TIMEOUT_MS;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &unacked, sizeof unacked);
}

static void on_goodbye_tick(struct timer *t);

static void on_heap_tick(struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, heap_tick));
    if (++w->heap_ticks % SWEEP_TICKS == 0)
        conn_set_sweep(&w->conns);
    /* One thread asks for the whole process: the heap's arenas are shared by all threads. */
    if (w->id == 0) {
        size_t freed = alloc_trim();
        if (freed)
            log_info("msg=heap_trimmed worker=%d released_kib=%zu", w->id, freed >> 10);
    }
    timer_start(w->loop, t, loop_now(w->loop) + HEAP_TICK_MS);
}

/*
 * Handles the deliveries and results that came while this turn's output was being written, so
 * that connections not yet written carry them in the same write: a message reaching a worker
 * midway through a large fan-out goes out with it to the rest instead of a turn later, and the
 * next message follows sooner. Other mail (a stop, a handover step) waits for the next turn, and
 * the mail behind it too. Returns true if any mail was handled.
 */
static bool mail_between_flushes(struct worker *w)
{
    bool handled = false;
    struct mail *m;
    while (!w->held_mail && (m = mailbox_take(&w->mailbox))) {
        if (m->kind != MAIL_DELIVER && m->kind != MAIL_OP) {
            w->held_mail = m;
            break;
        }
        w->on_mail(w, m);
        handled = true;
    }
    mailbox_send_deferred(); /* what that mail asked of others does not wait for every slice */
    return handled;
}

static void before_sleep(void *arg)
{
    struct worker *w = arg;
    if (w->on_tick)
        w->on_tick(w);
    /* The turn's requests leave before the sockets are written: the hub and the store work on
     * them meanwhile. */
    mailbox_send_deferred();
    bool mailed = false;
    while (conn_set_flush(&w->conns, FLUSH_SLICE))
        mailed |= mail_between_flushes(w);
    if (mailed || w->held_mail)
        loop_wake_soon(w->loop); /* the tick and the mailbox's watch see it all next turn */
    conn_set_before_sleep(&w->conns);
    if (w->stopping && w->conns.count == 0)
        loop_stop(w->loop);
}

static void on_mailbox(struct loop_watch *watch, uint32_t events)
{
    (void)events;
    struct worker *w = (struct worker *)((char *)watch - offsetof(struct worker, mailbox_watch));
    mailbox_ack(&w->mailbox);
    struct mail *m = w->held_mail;
    w->held_mail = NULL;
    if (m)
        w->on_mail(w, m);
    while ((m = mailbox_take(&w->mailbox)))
        w->on_mail(w, m);
}

int worker_init(struct worker *w, int id, const struct config *cfg)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->cfg = cfg;
    w->loop = loop_new();
    if (!w->loop)
        return -errno;
    int rc = mailbox_init(&w->mailbox);
    if (rc < 0)
        return rc;
    conn_set_init(&w->conns, w->loop, w);
    w->mailbox_watch.cb = on_mailbox;
    rc = loop_watch_add(w->loop, mailbox_fd(&w->mailbox), EPOLLIN, &w->mailbox_watch);
    if (rc < 0)
        return rc;
    loop_set_before_sleep(w->loop, before_sleep, w);
    timer_init(&w->stop_deadline, NULL);
    timer_init(&w->goodbye_tick, on_goodbye_tick);
    timer_init(&w->heap_tick, on_heap_tick);
    return 0;
}

void worker_destroy(struct worker *w, void (*drop)(struct mail *m))
{
    conn_set_destroy(&w->conns);
    if (w->held_mail)
        drop(w->held_mail);
    w->held_mail = NULL;
    if (w->mailbox.efd >= 0) {
        struct mail *m;
        while ((m = mailbox_take(&w->mailbox)))
            drop(m);
    }
    for (int i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i]->fd >= 0)
            close(w->listeners[i]->fd);
        free(w->listeners[i]);
    }
    free(w->listeners);
    w->listeners = NULL;
    w->n_listeners = 0;
    mailbox_destroy(&w->mailbox);
    loop_free(w->loop);
    w->loop = NULL;
    ws_zpool_free(w->zpool); /* after the connections, which give their inflaters back to it */
    w->zpool = NULL;
}

static void pause_accepting(struct listener *l, int err)
{
    struct worker *w = l->worker;
    /* Level-triggered epoll would report the pending connection again at once,
     * so stop watching the listener until descriptors may have been freed. */
    loop_watch_del(w->loop, l->fd);
    l->paused = true;
    log_warn("msg=accept_paused worker=%d err=%s backoff_ms=%u open=%zu reason=\"%s\"", w->id,
             err == EMFILE   ? "EMFILE"
             : err == ENFILE ? "ENFILE"
                             : "ENOMEM",
             l->backoff_ms, w->conns.count,
             "file descriptor limit reached; open connections are still served");
    timer_start(w->loop, &l->resume, loop_now(w->loop) + l->backoff_ms);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static void on_listener(struct loop_watch *watch, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)watch;
    struct worker *w = l->worker;
    for (int i = 0; i < ACCEPT_BATCH && w->accepting && !w->stopping; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("msg=accept_failed worker=%d err=%d", w->id, errno);
            return;
        }
        l->backoff_ms = BACKOFF_MIN_MS;
        w->on_accept(w, fd, l->transport, l->tls);
    }
}

static void on_resume(struct timer *t)
{
    struct listener *l = (struct listener *)((char *)t - offsetof(struct listener, resume));
    if (!l->paused || l->worker->stopping)
        return;
    l->paused = false;
    if (!l->worker->accepting)
        return; /* worker_set_accepting watches it again when accepting resumes */
    loop_watch_add(l->worker->loop, l->fd, EPOLLIN, &l->watch);
    log_info("msg=accept_resumed worker=%d", l->worker->id);
}

void worker_add_listener(struct worker *w, int fd, enum listen_kind kind,
                         enum conn_transport transport, bool tls)
{
    struct listener *l = xcalloc(1, sizeof *l);
    w->listeners = xrealloc(w->listeners, (size_t)(w->n_listeners + 1) * sizeof *w->listeners);
    w->listeners[w->n_listeners++] = l;
    l->kind = kind;
    l->tls = tls;
    l->watch.cb = on_listener;
    l->worker = w;
    l->fd = fd;
    worker_tune_listener(fd); /* made here or inherited: its accepted sockets get the options */
    l->transport = transport;
    l->backoff_ms = BACKOFF_MIN_MS;
    timer_init(&l->resume, on_resume);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    mailbox_defer_posts(); /* a worker never waits inside a turn */
    w->accepting = !w->accept_later;
    timer_start(w->loop, &w->heap_tick, loop_now(w->loop) + HEAP_TICK_MS);
    for (int i = 0; i < w->n_listeners && w->accepting; i++)
        loop_watch_add(w->loop, w->listeners[i]->fd, EPOLLIN, &w->listeners[i]->watch);
    loop_run(w->loop);
    return NULL;
}

void worker_set_accepting(struct worker *w, bool on)
{
    if (w->stopping || w->accepting == on)
        return;
    w->accepting = on;
    for (int i = 0; i < w->n_listeners; i++) {
        struct listener *l = w->listeners[i];
        if (l->paused || l->fd < 0)
            continue; /* out of descriptors: on_resume watches it again */
        if (on)
            loop_watch_add(w->loop, l->fd, EPOLLIN, &l->watch);
        else
            loop_watch_del(w->loop, l->fd);
    }
}

int worker_start(struct worker *w)
{
    w->started_ms = loop_now(w->loop);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    return rc ? -rc : 0;
}

static void on_stop_deadline(struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, stop_deadline));
    if (w->conns.count > 0)
        log_warn("msg=shutdown_forced worker=%d open=%zu", w->id, w->conns.count);
    while (w->conns.all)
        conn_close(w->conns.all);
    loop_stop(w->loop);
}

static void say_goodbye(struct worker *w, struct conn *c)
{
    if (c->state == CONN_OPEN && c->handler && c->handler->on_shutdown)
        c->handler->on_shutdown(c, w->goodbye);
    else if (c->state == CONN_OPEN)
        conn_close_after_flush(c);
}

/* True for a connection that is only HTTP requests (or a TLS handshake): no one to keep long. */
static bool is_brief(const struct conn *c)
{
    return c->transport == CONN_HTTP;
}

/*
 * A drain's next goodbyes: as many as are due by now for goodbyes_total spread evenly over
 * goodbye_spread_ms, so the clients' reconnects reach the new process at an even pace.
 * Newest connections first (the head of the list). Connections that closed by themselves
 * meanwhile leave the list, so the walk ends early once nobody is left.
 */
static void on_goodbye_tick(struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, goodbye_tick));
    uint64_t elapsed = loop_now(w->loop) - w->goodbye_from_ms;
    size_t due = elapsed >= w->goodbye_spread_ms
                     ? w->goodbyes_total
                     : (size_t)((w->goodbyes_total * elapsed) / w->goodbye_spread_ms) + 1;
    struct conn *c = w->conns.all;
    while (c && w->goodbyes_said < due) {
        struct conn *next = c->next;
        if (c->state == CONN_OPEN) {
            say_goodbye(w, c);
            w->goodbyes_said++;
        }
        c = next;
    }
    bool anyone_left = false;
    for (c = w->conns.all; c && !anyone_left; c = c->next)
        anyone_left = c->state == CONN_OPEN;
    if (!anyone_left || w->goodbyes_said >= w->goodbyes_total)
        return;
    uint64_t next_at =
        w->goodbye_from_ms + (w->goodbye_spread_ms * w->goodbyes_said) / w->goodbyes_total;
    if (next_at <= loop_now(w->loop))
        next_at = loop_now(w->loop) + 1;
    timer_start(w->loop, &w->goodbye_tick, next_at);
}

void worker_begin_shutdown(struct worker *w, uint64_t deadline_ms, uint64_t spread_ms,
                           enum conn_goodbye why)
{
    if (w->stopping) {
        /* Already saying goodbye (a drain): a second request can only make it sooner. */
        if (spread_ms == 0) {
            timer_stop(w->loop, &w->goodbye_tick);
            struct conn *c = w->conns.all;
            while (c) {
                struct conn *next = c->next;
                say_goodbye(w, c);
                c = next;
            }
        }
        if (deadline_ms < w->stop_deadline.due_ms || !timer_active(&w->stop_deadline))
            timer_start(w->loop, &w->stop_deadline, deadline_ms);
        loop_wake_soon(w->loop);
        return;
    }
    worker_set_accepting(w, false);
    w->stopping = true;
    w->goodbye = why;
    w->conns.goodbye = (int8_t)why;
    w->keep_listeners = why == CONN_GOODBYE_RESTART;
    for (int i = 0; i < w->n_listeners; i++) {
        struct listener *l = w->listeners[i];
        timer_stop(w->loop, &l->resume);
        if (!w->keep_listeners && l->fd >= 0) {
            close(l->fd);
            l->fd = -1;
        }
    }
    /* Each goodbye may close the connection and unlink it: walk a snapshot. Connections that
     * are only HTTP requests end at once; sessions get their goodbye now or spread out. */
    size_t sessions = 0;
    struct conn *c = w->conns.all;
    while (c) {
        struct conn *next = c->next;
        if (spread_ms == 0 || is_brief(c))
            say_goodbye(w, c);
        else if (c->state == CONN_OPEN)
            sessions++;
        c = next;
    }
    w->stop_deadline.cb = on_stop_deadline;
    timer_start(w->loop, &w->stop_deadline, deadline_ms);
    if (sessions > 0) {
        w->goodbyes_said = 0;
        w->goodbyes_total = sessions;
        w->goodbye_from_ms = loop_now(w->loop);
        w->goodbye_spread_ms = spread_ms;
        on_goodbye_tick(&w->goodbye_tick);
    }
    loop_wake_soon(w->loop);
}

void worker_detach_listeners(struct worker *w)
{
    for (int i = 0; i < w->n_listeners; i++)
        w->listeners[i]->fd = -1;
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}
