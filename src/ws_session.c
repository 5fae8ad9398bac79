/* ws_session: RFC 6455 framing, close handshake, pings and idle deadline for one connection. */
#include "ws_session.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "chat_session.h"
#include "log.h"
#include "worker.h"
#include "ws_frame.h"

static const struct config *cfg_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->cfg;
}

/* Frames payload[0..len) as one unfragmented message of `opcode` and queues it. */
static void send_frame(struct conn *c, uint8_t opcode, const void *payload, size_t len)
{
    struct chunk *ch = chunk_new(WS_MAX_HEADER + len);
    size_t h = ws_frame_header_write(ch->data, true, opcode, len);
    if (len)
        memcpy(ch->data + h, payload, len);
    conn_send(c, ch, 0, h + len);
}

/* Queues one text message holding a copy of text[0..len). */
static void ws_session_send_text(struct conn *c, const char *text, size_t len)
{
    send_frame(c, WS_OP_TEXT, text, len);
}

void ws_session_close(struct conn *c, uint16_t code, const char *reason)
{
    if (!conn_is_open(c))
        return;
    uint8_t payload[125] = {0};
    size_t n = 0;
    if (code != WS_CLOSE_NO_STATUS) {
        size_t rlen = reason ? strlen(reason) : 0;
        if (rlen > sizeof payload - 2)
            rlen = sizeof payload - 2;
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        memcpy(payload + 2, reason, rlen);
        n = 2 + rlen;
    }
    send_frame(c, WS_OP_CLOSE, payload, n);
    log_debug("msg=ws_close conn=%llu code=%u", (unsigned long long)c->id, code);
    conn_close_after_flush(c);
}

static void greet(struct conn *c)
{
    const struct config *cfg = cfg_of(c);
    char node[140];
    /* The node name comes from the command line or the host name: keep it JSON-safe. */
    size_t n = 0;
    for (const char *p = cfg->node; *p && n < sizeof node - 1; p++)
        if ((unsigned char)*p >= ' ' && *p != '"' && *p != '\\')
            node[n++] = *p;
    node[n] = '\0';
    char hello[256];
    int len = snprintf(hello, sizeof hello,
                       "{\"type\":\"hello\",\"server\":\"parley\",\"version\":\"%s\","
                       "\"protocol\":1,\"node\":\"%s\"}",
                       PARLEY_VERSION, node);
    ws_session_send_text(c, hello, (size_t)len);
}

/* Appends a piece of a data message to the reassembly chunk, which keeps
 * WS_MAX_HEADER bytes of headroom so /echo can send it without a copy. */
static void append_piece(struct conn *c, const uint8_t *p, size_t n)
{
    struct conn_ws *ws = &c->u.ws;
    if (!ws->msg)
        ws->msg = chunk_new(WS_MAX_HEADER + (n < 4096 ? 4096 : n));
    size_t need = WS_MAX_HEADER + ws->msg->len + n;
    if (need > ws->msg->cap) {
        size_t cap = ws->msg->cap * 2;
        size_t limit = WS_MAX_HEADER + cfg_of(c)->max_message;
        if (cap < need)
            cap = need;
        if (cap > limit)
            cap = limit; /* the reader already refused anything larger */
        ws->msg = chunk_grow(ws->msg, cap);
    }
    memcpy(ws->msg->data + WS_MAX_HEADER + ws->msg->len, p, n);
    ws->msg->len += (uint32_t)n;
}

static void message_done(struct conn *c, uint8_t opcode)
{
    struct conn_ws *ws = &c->u.ws;
    struct chunk *msg = ws->msg;
    ws->msg = NULL;
    if (!msg)
        msg = chunk_new(WS_MAX_HEADER);
    size_t len = msg->len;
    if (ws->endpoint == WS_ENDPOINT_ECHO) {
        uint8_t hdr[WS_MAX_HEADER];
        size_t h = ws_frame_header_write(hdr, true, opcode, len);
        memcpy(msg->data + WS_MAX_HEADER - h, hdr, h);
        conn_send(c, msg, WS_MAX_HEADER - h, WS_MAX_HEADER + len);
        return;
    }
    if (!c->session)
        chat_session_open(c, chat_json_transport());
    chat_session_json(c, msg->data + WS_MAX_HEADER, len);
    chunk_unref(msg);
}

static void on_data(struct conn *c, const struct ws_event *ev)
{
    if (c->u.ws.endpoint == WS_ENDPOINT_CHAT && ev->opcode == WS_OP_BINARY) {
        ws_session_close(c, WS_CLOSE_UNSUPPORTED, "binary messages are not accepted");
        return;
    }
    if (ev->len)
        append_piece(c, ev->data, ev->len);
    if (ev->last)
        message_done(c, ev->opcode);
}

static void on_close_frame(struct conn *c, const struct ws_event *ev)
{
    /* Answer with the same code (none if the peer gave none), then hang up. */
    uint8_t payload[2] = {0};
    size_t n = 0;
    if (ev->close_code != WS_CLOSE_NO_STATUS) {
        payload[0] = (uint8_t)(ev->close_code >> 8);
        payload[1] = (uint8_t)ev->close_code;
        n = 2;
    }
    send_frame(c, WS_OP_CLOSE, payload, n);
    conn_close_after_flush(c);
}

static size_t on_input(struct conn *c, uint8_t *data, size_t len)
{
    size_t used = 0;
    while (conn_is_open(c)) {
        if (c->input_held)
            return used; /* the rest waits for the answer a request is waiting for */
        struct ws_event ev;
        used += ws_reader_feed(&c->u.ws.reader, data + used, len - used, &ev);
        switch (ev.type) {
        case WS_EV_NONE:
            return len;
        case WS_EV_DATA:
            on_data(c, &ev);
            break;
        case WS_EV_PING:
            send_frame(c, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_PONG:
            break; /* its arrival already refreshed last_rx_ms */
        case WS_EV_CLOSE:
            on_close_frame(c, &ev);
            break;
        case WS_EV_ERROR:
            log_debug("msg=ws_protocol_error conn=%llu code=%u reason=\"%s\"",
                      (unsigned long long)c->id, ev.close_code, ev.reason);
            ws_session_close(c, ev.close_code, ev.reason);
            break;
        }
    }
    return len; /* closing: the rest is dropped */
}

/* A chat client that has not logged in by then is closed. Rule 26: failed attempts do not reset
 * it; the time its password checks waited for (or were in) the hasher does not count. */
static uint64_t login_deadline(struct conn *c)
{
    struct chat_session *s = c->session;
    if (c->u.ws.endpoint != WS_ENDPOINT_CHAT || (s && s->logged_in))
        return UINT64_MAX;
    uint64_t paused = chat_session_login_pause(c);
    if (paused == UINT64_MAX)
        return UINT64_MAX; /* a check is pending: its answer decides */
    return c->u.ws.opened_ms + cfg_of(c)->login_timeout_ms + paused;
}

static void schedule(struct conn *c)
{
    const struct config *cfg = cfg_of(c);
    uint64_t next = c->last_rx_ms + cfg->idle_timeout_ms;
    uint64_t ping_at = c->u.ws.last_ping_ms + cfg->ping_interval_ms;
    uint64_t login_at = login_deadline(c);
    if (ping_at < next)
        next = ping_at;
    if (login_at < next)
        next = login_at;
    conn_set_timer(c, next);
}

static void on_timer(struct conn *c)
{
    const struct config *cfg = cfg_of(c);
    uint64_t now = conn_now(c);
    if (now >= login_deadline(c)) {
        ws_session_close(c, WS_CLOSE_POLICY, "login timeout");
        return;
    }
    if (now >= c->last_rx_ms + cfg->idle_timeout_ms) {
        ws_session_close(c, WS_CLOSE_GOING_AWAY, "idle timeout");
        return;
    }
    if (now >= c->u.ws.last_ping_ms + cfg->ping_interval_ms) {
        send_frame(c, WS_OP_PING, NULL, 0);
        c->u.ws.last_ping_ms = now;
    }
    schedule(c);
}

void ws_session_login_deadline(struct conn *c)
{
    if (!conn_is_open(c))
        return;
    if (conn_now(c) >= login_deadline(c))
        ws_session_close(c, WS_CLOSE_POLICY, "login timeout"); /* before it sends anything more */
    else
        schedule(c);
}

static void on_close(struct conn *c)
{
    chunk_unref(c->u.ws.msg);
    c->u.ws.msg = NULL;
    chat_session_close(c);
}

static void on_shutdown(struct conn *c)
{
    ws_session_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
}

static void on_drained(struct conn *c)
{
    if (c->session)
        chat_session_drained(c);
}

static const struct conn_handler ws_handler = {
    .on_input = on_input,
    .on_timer = on_timer,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
    .on_drained = on_drained,
};

void ws_session_start(struct conn *c, enum ws_endpoint ep)
{
    memset(&c->u.ws, 0, sizeof c->u.ws);
    ws_reader_init(&c->u.ws.reader, cfg_of(c)->max_message);
    c->u.ws.endpoint = (uint8_t)ep;
    c->u.ws.last_ping_ms = conn_now(c);
    c->u.ws.opened_ms = conn_now(c);
    c->handler = &ws_handler;
    conn_set_transport(c, CONN_WEBSOCKET);
    if (ep == WS_ENDPOINT_CHAT)
        greet(c); /* the chat session is made at the first request: an idle socket costs only its
                     conn */
    schedule(c);
}
