/* server: binds or adopts listeners, runs the workers, and shuts them down. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include "chat_json.h"
#include "chat_session.h"
#include "handover.h"
#include "http_session.h"
#include "hub.h"
#include "hub_broker.h"
#include "log.h"
#include "metrics.h"
#include "peers.h"
#include "proto.h"
#include "store.h"
#include "store_thread.h"
#include "telnet_session.h"
#include "tls.h"
#include "tls_session.h"
#include "worker.h"
#include "ws_handshake.h"

/* How long a clean stop waits for its goodbye to the other nodes (hub_goodbye). */
#define GOODBYE_WAIT_MS 2000

struct shutdown_mail {
    struct mail mail; /* MAIL_STOP */
    uint64_t deadline_ms;
    uint64_t spread_ms;
    enum conn_goodbye why;
};

struct ctl_mail {
    struct mail mail; /* MAIL_WORKER_CTL */
    bool accepting;
};

/* A port served from sockets this process was handed, with fewer of them than workers: the
 * other workers get sockets of their own when serving starts (server_serve). */
struct port_extra {
    enum listen_kind kind;
    enum conn_transport transport;
    bool tls;
    int model;      /* an inherited socket of the port */
    size_t have;    /* workers 0..have-1 have sockets */
    bool reuseport; /* the model has SO_REUSEPORT: the others bind their own; else they share */
};

struct server {
    const struct config *cfg;
    int n_workers;
    struct worker *workers;
    struct mailbox **worker_mailboxes;
    struct store *db;
    struct service hub, store, auth;
    struct port_extra extras[LISTEN_KINDS];
    int n_extras;
    bool serving;
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
        worker_begin_shutdown(w, sm->deadline_ms, sm->spread_ms, sm->why);
        free(sm);
        return;
    }
    if (m->kind == MAIL_WORKER_CTL) {
        worker_set_accepting(w, ((struct ctl_mail *)m)->accepting);
        free(m);
        return;
    }
    if (m->kind == MAIL_HANDOVER) {
        handover_worker_mail(w, (struct handover_mail *)m);
        return;
    }
    chat_worker_mail(w, m);
}

/* A worker's mail that will never be handled (shutdown). */
static void drop_mail(struct mail *m)
{
    if (m->kind == MAIL_HANDOVER)
        handover_mail_free((struct handover_mail *)m);
    else
        chat_mail_drop(m);
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

/* A port's name in the log (msg=listening transport=...), as it has always been. */
static const char *log_name(enum listen_kind kind)
{
    return kind == LISTEN_TELNET_TLS ? "telnet_tls" : listen_kind_name(kind);
}

/*
 * Opens one SO_REUSEPORT socket per worker on addr. SO_REUSEPORT would let
 * us share a port with another process of the same user, silently splitting
 * its traffic, so a plain bind first proves the port is free.
 */
static int bind_port(struct server *s, const struct listen_addr *addr, enum listen_kind kind,
                     enum conn_transport t, bool tls)
{
    const char *name = log_name(kind);
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
        worker_add_listener(&s->workers[i], fd, kind, t, tls);
    }
    format_addr(&sa, text, sizeof text);
    log_info("msg=listening transport=%s addr=%s tls=%s", name, text, tls ? "true" : "false");
    return 0;
}

/*
 * Serves a port from the sockets this process was handed (fds[0..n)), binding
 * nothing and probing nothing: they are ours already. With more sockets than
 * workers, a worker takes several; with fewer, the other workers get theirs
 * when serving starts (add_extras). An inherited socket is never closed before
 * exit: connections waiting in its backlog would be reset.
 */
static void adopt_port(struct server *s, const int *fds, size_t n, enum listen_kind kind,
                       enum conn_transport t, bool tls)
{
    for (size_t j = 0; j < n; j++)
        worker_add_listener(&s->workers[j % (size_t)s->n_workers], fds[j], kind, t, tls);
    if (n < (size_t)s->n_workers) {
        struct port_extra *e = &s->extras[s->n_extras++];
        int on = 0;
        socklen_t len = sizeof on;
        *e = (struct port_extra){
            .kind = kind, .transport = t, .tls = tls, .model = fds[0], .have = n};
        e->reuseport = getsockopt(fds[0], SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on;
    }
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char text[96] = "?";
    if (getsockname(fds[0], (struct sockaddr *)&sa, &len) == 0)
        format_addr(&sa, text, sizeof text);
    log_info("msg=listening transport=%s addr=%s tls=%s inherited=%zu", log_name(kind), text,
             tls ? "true" : "false", n);
}

/*
 * The workers that an adopted port had no socket for get one: a SO_REUSEPORT socket of their
 * own on the same address when the port's sockets have the option (ours do; systemd's with
 * ReusePort=yes), else a descriptor of an inherited socket, shared with the worker that has it.
 */
static int add_extras(struct server *s)
{
    for (int x = 0; x < s->n_extras; x++) {
        struct port_extra *e = &s->extras[x];
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        if (getsockname(e->model, (struct sockaddr *)&sa, &len) < 0)
            return -1;
        for (size_t i = e->have; i < (size_t)s->n_workers; i++) {
            int fd =
                e->reuseport ? open_listener(&sa, len, true) : fcntl(e->model, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) {
                log_error("msg=bind_failed transport=%s error=\"%s\"", log_name(e->kind),
                          strerror(e->reuseport ? -fd : errno));
                return -1;
            }
            worker_add_listener(&s->workers[i], fd, e->kind, e->transport, e->tls);
        }
        log_info("msg=listeners_added transport=%s sockets=%zu shared=%s", log_name(e->kind),
                 (size_t)s->n_workers - e->have, e->reuseport ? "false" : "true");
    }
    s->n_extras = 0;
    return 0;
}

/* Binds the port of kind, or adopts its inherited sockets. Returns 0 or -1 (logged). */
static int open_port(struct server *s, const struct listen_addr *addr, enum listen_kind kind,
                     enum conn_transport t, bool tls, struct listen_fds *inherited)
{
    if (inherited && inherited->n[kind] > 0) {
        adopt_port(s, inherited->fds[kind], inherited->n[kind], kind, t, tls);
        inherited->n[kind] = 0; /* the workers own them now */
        return 0;
    }
    return bind_port(s, addr, kind, t, tls);
}

/*
 * Stops the threads in the order data flows out of them (workers, then the
 * hub, then the store, which commits what it still holds), and only then
 * frees anything: a thread may post to another until it has stopped.
 */
static void free_server(struct server *s, int started, bool keep_listeners, bool goodbye)
{
    for (int i = 0; i < started; i++)
        worker_join(&s->workers[i]);
    if (goodbye && s->hub.started && s->store.started)
        hub_goodbye(&s->hub, GOODBYE_WAIT_MS); /* every connection's leave is in the hub's mail */
    if (keep_listeners)
        for (int i = 0; i < s->n_workers; i++)
            worker_detach_listeners(&s->workers[i]);
    service_stop(&s->hub);
    service_stop(&s->store);
    service_stop(&s->auth);
    for (int i = 0; i < s->n_workers; i++) {
        if (!s->workers[i].loop)
            continue; /* never initialised */
        handover_worker_destroy(&s->workers[i]);
        worker_destroy(&s->workers[i], drop_mail);
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

/* Takes the store over, loads the chat state from it and starts the hub, store and auth threads.
 * Returns 0 or an error. */
static int start_chat(struct server *s)
{
    const struct config *cfg = s->cfg;
    int rc = s->db->ops->take_over(s->db);
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

/* The layers below call up only through what is registered here, before any connection
 * (docs/architecture.md, "Layout"). */
static void connect_layers(void)
{
    ws_session_set_chat(chat_json_ws());
    tls_session_set_line_start(telnet_session_start);
    metrics_set_part(METRICS_PART_CONNECTIONS, conn_metrics_open);
    metrics_set_part(METRICS_PART_SOCKET_WRITES, conn_metrics_writes);
    metrics_set_part(METRICS_PART_ERRORS, proto_metrics_errors);
    metrics_set_part(METRICS_PART_TLS, tls_metrics);
    metrics_set_part(METRICS_PART_BROKER, hub_broker_metrics);
    metrics_set_health(hub_broker_health);
}

struct server *server_prepare(const struct config *cfg, struct listen_fds *inherited, bool standby)
{
    connect_layers();
    struct server *s = xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->n_workers = cfg->workers;
    s->workers = xcalloc((size_t)s->n_workers, sizeof *s->workers);
    if (inherited && inherited->n[LISTEN_TELNET_TLS] > 0 && !cfg->has_telnet_tls) {
        log_error("msg=listen_fds_failed error=\"a telnet-tls socket was passed, but "
                  "--telnet-tls is not set\"");
        goto fail;
    }
    if (!ws_handshake_self_check()) {
        log_error("msg=self_check_failed error=\"SHA-1 gives a wrong WebSocket accept key\"");
        goto fail;
    }
    if (cfg->tls_cert) {
        char err[512], q[600];
        if (tls_setup(cfg->tls_cert, cfg->tls_key, err, sizeof err) < 0) {
            log_error("msg=tls_setup_failed error=%s", log_quote(q, sizeof q, err, strlen(err)));
            goto fail;
        }
    }
    for (int i = 0; i < s->n_workers; i++) {
        int rc = worker_init(&s->workers[i], i, cfg);
        if (rc < 0) {
            log_error("msg=worker_init_failed worker=%d error=\"%s\"", i, strerror(-rc));
            goto fail;
        }
        s->workers[i].on_accept = on_accept;
        s->workers[i].on_mail = on_mail;
        s->workers[i].on_tick = handover_worker_tick;
        chat_worker_init(&s->workers[i]);
    }
    bool tls = cfg->tls_cert != NULL;
    if (open_port(s, &cfg->http, LISTEN_HTTP, CONN_HTTP, tls, inherited) < 0 ||
        open_port(s, &cfg->telnet, LISTEN_TELNET, CONN_TELNET, false, inherited) < 0 ||
        (cfg->has_telnet_tls &&
         open_port(s, &cfg->telnet_tls, LISTEN_TELNET_TLS, CONN_TELNET, true, inherited) < 0))
        goto fail;
    struct store_sqlite_options opts = {
        .max_db_bytes = cfg->max_db_bytes,
        .check_ms = cfg->db_check_ms,
        .standby = standby,
        .sync_full = cfg->sync_full};
    if (cfg->store_url && cfg->sqlite_only_option)
        log_warn("msg=option_ignored option=%s reason=\"it applies to the embedded SQLite store, "
                 "not to --store\"",
                 cfg->sqlite_only_option);
    int rc = cfg->store_url ? store_pg_open(cfg->store_url, standby, &s->db)
                            : store_sqlite_open(cfg->data_dir, &opts, &s->db);
    if (rc < 0) {
        if (cfg->store_url)
            log_error("msg=store_open_failed backend=postgres error=%d", rc);
        else
            log_error("msg=store_open_failed dir=\"%s\" error=%d", cfg->data_dir, rc);
        goto fail;
    }
    if (inherited)
        listen_fds_free(inherited);
    return s;
fail:
    /* Sockets handed to us and not yet given to a worker stay open until we exit: closing them
     * would reset the connections waiting in them. */
    if (inherited)
        listen_fds_free(inherited);
    free_server(s, 0, false, false);
    return NULL;
}

int server_serve(struct server *s, bool accepting)
{
    int rc = add_extras(s);
    if (rc == 0 && (rc = start_chat(s)) < 0)
        log_error("msg=store_open_failed dir=\"%s\" error=%d", s->cfg->data_dir, rc);
    if (rc < 0)
        return -1;
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i].accept_later = !accepting;
        rc = worker_start(&s->workers[i]);
        if (rc < 0) {
            log_error("msg=worker_start_failed worker=%d error=\"%s\"", i, strerror(-rc));
            return -1;
        }
    }
    s->serving = true;
    return 0;
}

void server_set_accepting(struct server *s, bool on)
{
    for (int i = 0; i < s->n_workers; i++) {
        if (!s->workers[i].thread)
            continue;
        struct ctl_mail *m = xcalloc(1, sizeof *m);
        m->mail.kind = MAIL_WORKER_CTL;
        m->accepting = on;
        mailbox_post(&s->workers[i].mailbox, &m->mail);
    }
}

void server_gate_store(struct server *s, enum store_gate gate, struct mailbox *reply)
{
    struct store_gate_mail *m = xcalloc(1, sizeof *m);
    m->mail.kind = MAIL_STORE_GATE;
    m->gate = gate;
    m->reply = reply;
    mailbox_post(&s->hub.mailbox, &m->mail);
}

void server_begin_goodbyes(struct server *s, enum conn_goodbye why, uint64_t spread_ms,
                           uint64_t deadline_ms)
{
    for (int i = 0; i < s->n_workers; i++) {
        if (!s->workers[i].thread)
            continue;
        struct shutdown_mail *m = xcalloc(1, sizeof *m);
        m->mail.kind = MAIL_STOP;
        m->deadline_ms = deadline_ms;
        m->spread_ms = spread_ms;
        m->why = why;
        mailbox_post(&s->workers[i].mailbox, &m->mail);
    }
}

size_t server_listeners(struct server *s, int **fds, enum listen_kind **kinds)
{
    size_t n = 0;
    for (int i = 0; i < s->n_workers; i++)
        n += (size_t)s->workers[i].n_listeners;
    *fds = xcalloc(n ? n : 1, sizeof **fds);
    *kinds = xcalloc(n ? n : 1, sizeof **kinds);
    size_t k = 0;
    for (int i = 0; i < s->n_workers; i++) {
        for (int j = 0; j < s->workers[i].n_listeners; j++) {
            const struct listener *l = s->workers[i].listeners[j];
            if (l->fd < 0)
                continue;
            (*fds)[k] = l->fd;
            (*kinds)[k] = l->kind;
            k++;
        }
    }
    return k;
}

int server_workers(const struct server *s)
{
    return s->n_workers;
}

void server_post(struct server *s, int worker, struct mail *m)
{
    mailbox_post(&s->workers[worker].mailbox, m);
}

void server_relay(struct server *s, struct mail **each)
{
    struct relay_mail *m = xcalloc(1, sizeof *m);
    m->mail.kind = MAIL_RELAY;
    m->each = each;
    m->n = s->n_workers;
    mailbox_post(&s->hub.mailbox, &m->mail);
}

size_t server_connections(void)
{
    return conn_count(CONN_HTTP) + conn_count(CONN_WEBSOCKET) + conn_count(CONN_TELNET);
}

void server_stop(struct server *s, unsigned timeout_ms, enum conn_goodbye why, bool keep_listeners,
                 bool goodbye)
{
    server_begin_goodbyes(s, why, 0, clock_ms() + timeout_ms);
    int started = 0;
    while (started < s->n_workers && s->workers[started].thread)
        started++;
    free_server(s, started, keep_listeners, goodbye);
}
