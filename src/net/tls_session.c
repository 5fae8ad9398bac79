/* tls_session: handshake deadline and plain-text refusals on the TLS ports, then the session. */
#include "tls_session.h"

#include <stdio.h>
#include <unistd.h>

#include "http_session.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

/* What starts a session on a TLS line port, registered at start. */
static void (*line_start)(struct conn *c);

void tls_session_set_line_start(void (*start)(struct conn *c))
{
    line_start = start;
}

static void start_line_session(struct conn *c)
{
    line_start(c);
}

static void on_timer(struct conn *c)
{
    tls_count(TLS_RESULT_TIMEOUT);
    log_debug("msg=tls_handshake_failed conn=%llu reason=timeout", (unsigned long long)c->id);
    conn_close(c);
}

static void on_shutdown(struct conn *c, enum conn_goodbye why)
{
    /* Handing over: the client is owed its handshake; its session gets the goodbye as soon as
     * it starts (conn_set.goodbye). A shutdown has no one to say goodbye to yet. */
    if (why == CONN_GOODBYE_RESTART)
        return;
    conn_close(c);
}

/* A plain HTTP request on the HTTPS port gets a plain 400 that says so, as nginx does;
 * any other bytes that are not TLS are closed on. */
static size_t plain_on_http(struct conn *c, uint8_t *data, size_t len)
{
    static const char body[] = "This port speaks HTTPS only: use an https:// or wss:// URL.\n";
    if (len > 0 && data[0] >= 'A' && data[0] <= 'Z') {
        char head[256];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 400 Bad Request\r\nServer: parley/%s\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n",
                         PARLEY_VERSION, sizeof body - 1);
        conn_send_copy(c, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
        conn_send_copy(c, body, sizeof body - 1);
    }
    conn_close_after_flush(c);
    return len;
}

/* Someone typing (or a plain telnet client negotiating) on the TLS line port gets one line. */
static size_t plain_on_line(struct conn *c, uint8_t *data, size_t len)
{
    static const char line[] =
        "! this port speaks TLS: connect with a TLS client, e.g. openssl s_client -quiet\r\n";
    bool text = len > 0 && ((data[0] >= 0x20 && data[0] < 0x7f) || data[0] == '\r' ||
                            data[0] == '\n' || data[0] == 0xff /* telnet IAC */);
    if (text)
        conn_send_copy(c, line, sizeof line - 1);
    conn_close_after_flush(c);
    return len;
}

static const struct conn_handler http_handshake = {
    .on_input = plain_on_http,
    .on_timer = on_timer,
    .on_shutdown = on_shutdown,
    .on_handshake = http_session_start,
};

static const struct conn_handler line_handshake = {
    .on_input = plain_on_line,
    .on_timer = on_timer,
    .on_shutdown = on_shutdown,
    .on_handshake = start_line_session,
};

struct conn *tls_session_accept(struct conn_set *set, int fd, enum conn_transport transport)
{
    const struct config *cfg = ((struct worker *)set->owner)->cfg;
    struct ssl_st *ssl = tls_new(fd, transport == CONN_TELNET ? TLS_PORT_LINE : TLS_PORT_HTTP);
    if (!ssl) {
        log_warn("msg=tls_new_failed fd=%d", fd);
        close(fd);
        return NULL;
    }
    const struct conn_handler *h = transport == CONN_TELNET ? &line_handshake : &http_handshake;
    struct conn *c = conn_new_tls(set, fd, h, transport, ssl);
    if (c)
        conn_set_timer(c, conn_now(c) + cfg->tls_handshake_timeout_ms);
    return c;
}
