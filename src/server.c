/* server: binds listeners, runs the workers, and shuts them down. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "alloc.h"
#include "auth.h"
#include "chat.h"
#include "chat_session.h"
#include "http_session.h"
#include "hub.h"
#include "log.h"
#include "peers.h"
#include "store.h"
#include "store_thread.h"
#include "telnet_session.h"
#include "tls.h"
#include "tls_session.h"
#include "worker.h"

struct shutdown_mail {
    struct mail mail;
    uint64_t deadline_ms;
};

struct server {
    const struct config *cfg;
    int n_workers;
    struct worker *workers;
    struct mailbox **worker_mailboxes;
    struct store *db;
    struct service hub, store, auth;
};

/* Rule 24: over the per-address limit, a short refusal in the port's own language. */
static void refuse_busy(int fd, enum conn_transport transport)
{
    static const char http[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 40\r\nConnection: close\r\n\r\n"
                               "too many connections from your address\n\n";
    static const char telnet[] = "! server_busy: too many connections from your address\r\n";
    const char *msg = transport == CONN_TELNET ? telnet : http;
    size_t len = transport == CONN_TELNET ? sizeof telnet - 1 : sizeof http - 1;
    ssize_t n = send(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n; /* best effort: the socket is new and its buffer empty */
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void on_accept(struct worker *w, int fd, enum conn_transport transport, bool tls)
{
    const struct config *cfg = w->cfg;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    struct addr peer;
    bool known = getpeername(fd, (struct sockaddr *)&sa, &len) == 0 &&
                 addr_from_sockaddr((struct sockaddr *)&sa, &peer);
    uint64_t key = known ? addr_key(&peer) : 0;
    /* A trusted proxy carries many clients: its WebSocket clients are counted by the address its
     * X-Forwarded-For names (http_session.c), never under its own. */
    bool via_proxy = known && addr_in_any(&peer, cfg->trusted_proxies, cfg->n_trusted_proxies);
    bool counted = false;
    if (cfg->max_conns_per_ip && key && !via_proxy) {
        if (!peers_acquire(key, cfg->max_conns_per_ip)) {
            if (tls)
                close(fd); /* a TLS client could not read a plain refusal */
            else
                refuse_busy(fd, transport);
            return;
        }
        counted = true;
    }
    struct conn *c = tls ? tls_session_accept(&w->conns, fd, transport)
                         : conn_new(&w->conns, fd, NULL, transport);
    if (!c) {
        if (counted)
            peers_release(key);
        return;
    }
    c->peer_key = key;
    c->peer_counted = counted;
    c->via_proxy = via_proxy;
    c->net_key = known ? addr_net_key(&peer) : 0;
    if (tls)
        return; /* the session starts when the handshake is done */
    if (transport == CONN_TELNET)
        telnet_session_start(c);
    else
        http_session_start(c);
}

static void on_mail(struct worker *w, struct mail *m)
{
    if (m->kind == MAIL_STOP) {
        struct shutdown_mail *sm = (struct shutdown_mail *)m;
        worker_begin_shutdown(w, sm->deadline_ms);
        free(sm);
        return;
    }
    chat_worker_mail(w, m);
}

static void format_addr(const struct sockaddr_storage *sa, char *out, size_t outsz)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        snprintf(out, outsz, "[%s]:%u", host, ntohs(v6->sin6_port));
    } else {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        snprintf(out, outsz, "%s:%u", host, ntohs(v4->sin_port));
    }
}

static uint16_t get_port(const struct sockaddr_storage *sa)
{
    return ntohs(sa->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                           : ((const struct sockaddr_in *)sa)->sin_port);
}

/* Returns a bound, listening socket, or -errno. */
static int open_listener(const struct sockaddr_storage *sa, socklen_t len, bool reuseport)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)sa, len) < 0)
        goto fail;
    if (reuseport && listen(fd, 4096) < 0)
        goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    return -err;
}

/*
 * Opens one SO_REUSEPORT socket per worker on addr. SO_REUSEPORT would let
 * us share a port with another process of the same user, silently splitting
 * its traffic, so a plain bind first proves the port is free.
 */
static int bind_port(struct server *s, const struct listen_addr *addr, enum conn_transport t,
                     const char *name, bool tls)
{
    struct sockaddr_storage sa = addr->sa;
    char text[96];
    if (get_port(&sa) != 0) {
        int probe = open_listener(&sa, addr->len, false);
        if (probe < 0) {
            log_error("msg=bind_failed transport=%s addr=%s error=\"%s\"", name, addr->text,
                      strerror(-probe));
            return -1;
        }
        close(probe);
    }
    for (int i = 0; i < s->n_workers; i++) {
        int fd = open_listener(&sa, addr->len, true);
        if (fd < 0) {
            log_error("msg=bind_failed transport=%s addr=%s error=\"%s\"", name, addr->text,
                      strerror(-fd));
            return -1;
        }
        if (i == 0) {
            /* Port 0 asks the kernel for a free port: the other workers share it. */
            socklen_t len = sizeof sa;
            getsockname(fd, (struct sockaddr *)&sa, &len);
        }
        worker_add_listener(&s->workers[i], fd, t, tls);
    }
    format_addr(&sa, text, sizeof text);
    log_info("msg=listening transport=%s addr=%s tls=%s", name, text, tls ? "true" : "false");
    return 0;
}

/*
 * Stops the threads in the order data flows out of them (workers, then the
 * hub, then the store, which commits what it still holds), and only then
 * frees anything: a thread may post to another until it has stopped.
 */
static void free_server(struct server *s, int started)
{
    for (int i = 0; i < started; i++)
        worker_join(&s->workers[i]);
    service_stop(&s->hub);
    service_stop(&s->store);
    service_stop(&s->auth);
    for (int i = 0; i < s->n_workers; i++) {
        if (!s->workers[i].loop)
            continue; /* never initialised */
        worker_destroy(&s->workers[i], chat_mail_drop);
        chat_worker_destroy(&s->workers[i]);
    }
    if (s->hub.loop)
        hub_destroy(&s->hub);
    if (s->auth.loop || s->auth.ctx)
        auth_destroy(&s->auth);
    if (s->store.loop)
        store_thread_destroy(&s->store);
    else if (s->db)
        s->db->ops->close(s->db);
    free(s->worker_mailboxes);
    free(s->workers);
    free(s);
    tls_teardown(); /* after the workers: their connections held references to the contexts */
}

/* Opens the store and prepares the hub, store and auth threads. Returns 0 or an error. */
static int start_chat(struct server *s)
{
    const struct config *cfg = s->cfg;
    struct store_sqlite_options opts = {.max_db_bytes = cfg->max_db_bytes,
                                        .check_ms = cfg->db_check_ms};
    int rc = store_sqlite_open(cfg->data_dir, &opts, &s->db);
    if (rc < 0)
        return rc;
    if ((rc = hub_init(&s->hub, cfg, s->db, s->n_workers)) < 0 ||
        (rc = store_thread_init(&s->store, s->db, cfg)) < 0 || (rc = auth_init(&s->auth, cfg)) < 0)
        return rc < 0 ? rc : -1;
    s->worker_mailboxes = xcalloc((size_t)s->n_workers, sizeof *s->worker_mailboxes);
    for (int i = 0; i < s->n_workers; i++)
        s->worker_mailboxes[i] = &s->workers[i].mailbox;
    struct chat_route route = {.hub = &s->hub.mailbox,
                               .store = &s->store.mailbox,
                               .auth = &s->auth.mailbox,
                               .workers = s->worker_mailboxes,
                               .n_workers = s->n_workers};
    chat_route_set(&route);
    if ((rc = service_start(&s->store)) < 0 || (rc = service_start(&s->hub)) < 0 ||
        (rc = service_start(&s->auth)) < 0)
        return rc;
    return 0;
}

struct server *server_start(const struct config *cfg)
{
    struct server *s = xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->n_workers = cfg->workers;
    s->workers = xcalloc((size_t)s->n_workers, sizeof *s->workers);
    if (cfg->tls_cert) {
        char err[512], q[600];
        if (tls_setup(cfg->tls_cert, cfg->tls_key, err, sizeof err) < 0) {
            log_error("msg=tls_setup_failed error=%s", log_quote(q, sizeof q, err, strlen(err)));
            free_server(s, 0);
            return NULL;
        }
    }
    for (int i = 0; i < s->n_workers; i++) {
        int rc = worker_init(&s->workers[i], i, cfg);
        if (rc < 0) {
            log_error("msg=worker_init_failed worker=%d error=\"%s\"", i, strerror(-rc));
            free_server(s, 0);
            return NULL;
        }
        s->workers[i].on_accept = on_accept;
        s->workers[i].on_mail = on_mail;
        chat_worker_init(&s->workers[i]);
    }
    bool tls = cfg->tls_cert != NULL;
    if (bind_port(s, &cfg->http, CONN_HTTP, "http", tls) < 0 ||
        bind_port(s, &cfg->telnet, CONN_TELNET, "telnet", false) < 0 ||
        (cfg->has_telnet_tls &&
         bind_port(s, &cfg->telnet_tls, CONN_TELNET, "telnet_tls", true) < 0)) {
        free_server(s, 0);
        return NULL;
    }
    int rc = start_chat(s);
    if (rc < 0) {
        log_error("msg=store_open_failed dir=\"%s\" error=%d", cfg->data_dir, rc);
        free_server(s, 0);
        return NULL;
    }
    for (int i = 0; i < s->n_workers; i++) {
        rc = worker_start(&s->workers[i]);
        if (rc < 0) {
            log_error("msg=worker_start_failed worker=%d error=\"%s\"", i, strerror(-rc));
            server_stop(s, 0);
            return NULL;
        }
    }
    return s;
}

void server_stop(struct server *s, unsigned timeout_ms)
{
    uint64_t deadline = clock_ms() + timeout_ms;
    for (int i = 0; i < s->n_workers; i++) {
        if (!s->workers[i].thread)
            continue;
        struct shutdown_mail *m = xcalloc(1, sizeof *m);
        m->mail.kind = MAIL_STOP;
        m->deadline_ms = deadline;
        mailbox_post(&s->workers[i].mailbox, &m->mail);
    }
    int started = 0;
    while (started < s->n_workers && s->workers[started].thread)
        started++;
    free_server(s, started);
}
