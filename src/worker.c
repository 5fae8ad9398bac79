/* worker: a thread running one event loop over its listeners, connections and mailbox. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "ws_deflate.h"

#define ACCEPT_BATCH 64
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000

/* Dead peers are found by the kernel (rule 33: telnet has no idle timeout by default): a silent
 * connection is probed after a minute, and one whose sent data stays unacknowledged for two
 * minutes (a peer that vanished, or stopped reading for good) is ended. */
#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 15
#define KEEPALIVE_PROBES 4
#define UNACKED_TIMEOUT_MS 120000

static void tune_accepted(int fd)
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

static void before_sleep(void *arg)
{
    struct worker *w = arg;
    conn_set_before_sleep(&w->conns);
    if (w->stopping && w->conns.count == 0)
        loop_stop(w->loop);
}

static void on_mailbox(struct loop_watch *watch, uint32_t events)
{
    (void)events;
    struct worker *w = (struct worker *)((char *)watch - offsetof(struct worker, mailbox_watch));
    mailbox_ack(&w->mailbox);
    struct mail *m;
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
    return 0;
}

void worker_destroy(struct worker *w, void (*drop)(struct mail *m))
{
    conn_set_destroy(&w->conns);
    if (w->mailbox.efd >= 0) {
        struct mail *m;
        while ((m = mailbox_take(&w->mailbox)))
            drop(m);
    }
    for (int i = 0; i < w->n_listeners; i++)
        if (w->listeners[i].fd >= 0)
            close(w->listeners[i].fd);
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
    for (int i = 0; i < ACCEPT_BATCH && !w->stopping; i++) {
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
        tune_accepted(fd);
        w->on_accept(w, fd, l->transport, l->tls);
    }
}

static void on_resume(struct timer *t)
{
    struct listener *l = (struct listener *)((char *)t - offsetof(struct listener, resume));
    if (!l->paused || l->worker->stopping)
        return;
    l->paused = false;
    loop_watch_add(l->worker->loop, l->fd, EPOLLIN, &l->watch);
    log_info("msg=accept_resumed worker=%d", l->worker->id);
}

void worker_add_listener(struct worker *w, int fd, enum conn_transport transport, bool tls)
{
    struct listener *l = &w->listeners[w->n_listeners++];
    l->tls = tls;
    l->watch.cb = on_listener;
    l->worker = w;
    l->fd = fd;
    l->transport = transport;
    l->backoff_ms = BACKOFF_MIN_MS;
    timer_init(&l->resume, on_resume);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n_listeners; i++)
        loop_watch_add(w->loop, w->listeners[i].fd, EPOLLIN, &w->listeners[i].watch);
    loop_run(w->loop);
    return NULL;
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

void worker_begin_shutdown(struct worker *w, uint64_t deadline_ms)
{
    if (w->stopping)
        return;
    w->stopping = true;
    for (int i = 0; i < w->n_listeners; i++) {
        struct listener *l = &w->listeners[i];
        timer_stop(w->loop, &l->resume);
        if (!l->paused)
            loop_watch_del(w->loop, l->fd);
        close(l->fd);
        l->fd = -1;
    }
    /* Each goodbye may close the connection and unlink it: walk a snapshot. */
    struct conn *c = w->conns.all;
    while (c) {
        struct conn *next = c->next;
        if (c->state == CONN_OPEN && c->handler && c->handler->on_shutdown)
            c->handler->on_shutdown(c);
        else if (c->state == CONN_OPEN)
            conn_close_after_flush(c);
        c = next;
    }
    w->stop_deadline.cb = on_stop_deadline;
    timer_start(w->loop, &w->stop_deadline, deadline_ms);
    loop_wake_soon(w->loop);
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}
