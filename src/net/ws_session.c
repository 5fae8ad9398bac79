/* ws_session: RFC 6455 framing, close handshake, pings and idle deadline for one connection. */
#include "ws_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"
#include "ws_deflate.h"
#include "ws_frame.h"

/* The chat endpoint's table, registered at start. */
static const struct ws_chat *chat;

void ws_session_set_chat(const struct ws_chat *table)
{
    chat = table;
}

static const struct config *cfg_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->cfg;
}

/* The worker's zlib streams, made when first needed. */
static struct ws_zpool *zpool_of(struct conn *c)
{
    struct worker *w = c->set->owner;
    if (!w->zpool)
        w->zpool = ws_zpool_new();
    return w->zpool;
}

/* Counts one compression of an n-byte payload that went out as out bytes. */
static void count_deflate(enum metric_counter kind, size_t n, size_t out)
{
    metrics_add(kind, 1);
    metrics_add(METRIC_DEFLATE_BYTES_IN, n);
    metrics_add(METRIC_DEFLATE_BYTES_OUT, out);
}

/* Length of the header of the server frame starting at f. */
static size_t header_len(const uint8_t *f)
{
    uint8_t len7 = f[1] & 0x7F;
    return len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
}

/*
 * The compressed twin of a shared frame, made by the first connection that needs it. Workers
 * may race to make it: each compresses, one publishes, the others drop theirs (counted as
 * discarded). A frame that compression does not shrink gets an empty twin, so no one tries again.
 */
static struct chunk *shared_twin(struct conn *c, struct chunk *ch, uint8_t opcode,
                                 size_t payload_off, size_t n)
{
    struct chunk *twin = chunk_alt(ch);
    if (twin)
        return twin;
    /* Always the largest window: a client that asked for a smaller one still takes this twin when
     * the message is no longer than its window (see ws_session_send_data). */
    struct chunk *z = ws_deflate_frame(zpool_of(c), 15, opcode, ch->data + payload_off, n);
    size_t out = z ? z->len - header_len(z->data) : n;
    if (!z)
        z = chunk_new(0);
    bool won;
    twin = chunk_set_alt(ch, z, &won);
    if (won)
        count_deflate(METRIC_DEFLATE_SHARED, n, out);
    else
        metrics_add(METRIC_DEFLATE_DISCARDED, 1);
    return twin;
}

void ws_session_send_data(struct conn *c, struct chunk *ch, size_t off, size_t payload_off,
                          size_t end, bool shared)
{
    unsigned bits = c->ws_deflate_bits;
    size_t n = end - payload_off;
    if (bits == 0 || n == 0 || n < cfg_of(c)->deflate_threshold) {
        conn_send(c, ch, off, end);
        return;
    }
    uint8_t opcode = ch->data[off] & 0x0F;
    if (shared) {
        /* A shared twin is compressed with a window of 2^15, but no match reaches back further
         * than the message is long: a message no longer than the client's window decodes with
         * it. A longer one goes uncompressed (RFC 7692 compresses per message, so that is
         * allowed) rather than be compressed once more for this one connection: clients that
         * limit the server's window are rare (browsers and Node's ws do not), and chat messages
         * are short. */
        if (bits < 15 && n > (1u << bits)) {
            conn_send(c, ch, off, end);
            return;
        }
        struct chunk *twin = shared_twin(c, ch, opcode, payload_off, n);
        if (twin->len == 0) {
            conn_send(c, ch, off, end);
            return;
        }
        conn_send(c, chunk_ref(twin), 0, twin->len);
        chunk_unref(ch);
        return;
    }
    struct chunk *z = ws_deflate_frame(zpool_of(c), bits, opcode, ch->data + payload_off, n);
    count_deflate(METRIC_DEFLATE_OWN, n, z ? z->len - header_len(z->data) : n);
    if (!z) {
        conn_send(c, ch, off, end);
        return;
    }
    conn_send(c, z, 0, z->len);
    chunk_unref(ch);
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

/* Queues one text message holding a copy of text[0..len) (compressed when negotiated). */
static void ws_session_send_text(struct conn *c, const char *text, size_t len)
{
    struct chunk *ch = chunk_new(WS_MAX_HEADER + len);
    size_t h = ws_frame_header_write(ch->data, true, WS_OP_TEXT, len);
    memcpy(ch->data + h, text, len);
    ws_session_send_data(c, ch, 0, h, h + len, false);
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
    char hello[320];
    /* features: the additions of protocol 1.1 implemented completely, in the protocol's order
     * (rule 46): all eleven. */
    int len = snprintf(hello, sizeof hello,
                       "{\"type\":\"hello\",\"server\":\"parley\",\"version\":\"%s\","
                       "\"protocol\":1,\"node\":\"%s\",\"features\":[\"edit\",\"delete\",\"react\","
                       "\"reply\",\"topic\",\"moderation\",\"read\",\"search\",\"status\","
                       "\"saved_rooms\",\"large_rooms\"]}",
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
    if (c->ws_endpoint == WS_ENDPOINT_ECHO) {
        uint8_t hdr[WS_MAX_HEADER];
        size_t h = ws_frame_header_write(hdr, true, opcode, len);
        memcpy(msg->data + WS_MAX_HEADER - h, hdr, h);
        ws_session_send_data(c, msg, WS_MAX_HEADER - h, WS_MAX_HEADER, WS_MAX_HEADER + len, false);
        return;
    }
    chat->message(c, msg->data + WS_MAX_HEADER, len);
    chunk_unref(msg);
}

/* Inflates a piece of a compressed message into the reassembly chunk, closing on bad data. */
static void on_compressed(struct conn *c, const struct ws_event *ev)
{
    struct conn_ws *ws = &c->u.ws;
    if (!ws->inflater)
        ws->inflater = ws_inflater_take(zpool_of(c)); /* zlib state only while a message lasts */
    enum ws_inflate_result r =
        ws_inflate(ws->inflater, ev->data, ev->len, ev->last, ev->opcode == WS_OP_TEXT, &ws->msg,
                   WS_MAX_HEADER, cfg_of(c)->max_message);
    switch (r) {
    case WS_INFLATE_OK:
        break;
    case WS_INFLATE_TOO_BIG:
        ws_session_close(c, WS_CLOSE_TOO_BIG, "message too big");
        return;
    case WS_INFLATE_BAD_DATA:
        /* Data that does not inflate cannot be the message: fail the connection (RFC 6455
         * section 7.1.7) with 1007, the code for a payload inconsistent with its message type
         * (section 7.4.1), as for invalid UTF-8. Node's ws does the same. */
        ws_session_close(c, WS_CLOSE_BAD_DATA, "invalid compressed data");
        return;
    case WS_INFLATE_BAD_UTF8:
        ws_session_close(c, WS_CLOSE_BAD_DATA, "invalid UTF-8");
        return;
    }
    if (!ev->last)
        return;
    ws_inflater_give(zpool_of(c), ws->inflater);
    ws->inflater = NULL;
    metrics_add(METRIC_INFLATED, 1);
    if (c->ws_hold_at_end) {
        /* A live upgrade waited for this message's end: the rest stays in the socket. */
        c->ws_hold_at_end = false;
        conn_hold_io(c, c->io_hold | CONN_HOLD_READ);
    }
    message_done(c, ev->opcode);
}

static void on_data(struct conn *c, const struct ws_event *ev)
{
    if (c->ws_endpoint == WS_ENDPOINT_CHAT && ev->opcode == WS_OP_BINARY) {
        ws_session_close(c, WS_CLOSE_UNSUPPORTED, "binary messages are not accepted");
        return;
    }
    if (ev->compressed) {
        on_compressed(c, ev);
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

/* The spill a reader borrows while a call takes a frame whole (most frames arrive in one read):
 * one per thread, lent for the call, and copied to the connection's own only when the call ends
 * in the middle of a frame. So an idle connection keeps no 139 bytes for it. */
static _Thread_local struct ws_reader_spill spill_scratch;
static _Thread_local bool spill_scratch_lent;

static void spill_lend(struct ws_reader *r)
{
    if (r->spill)
        return; /* its own, from a frame still under way */
    if (spill_scratch_lent) {
        r->spill = xmalloc(sizeof *r->spill); /* another connection's call is under way */
        return;
    }
    spill_scratch_lent = true;
    r->spill = &spill_scratch;
}

/* After a call: a reader mid-frame keeps its bytes (in a spill of its own), one between frames
 * gives its spill back, and so does one whose connection closed (it reads no more frames, and
 * its on_close may have run already). */
static void spill_settle(struct conn *c)
{
    struct ws_reader *r = &c->u.ws.reader;
    bool scratch = r->spill == &spill_scratch;
    if (scratch)
        spill_scratch_lent = false;
    if (r->spill && ws_reader_mid_frame(r) && conn_is_open(c)) {
        if (scratch) {
            r->spill = xmalloc(sizeof *r->spill);
            memcpy(r->spill, &spill_scratch, sizeof *r->spill);
        }
        return;
    }
    if (!scratch)
        free(r->spill);
    r->spill = NULL;
}

static size_t read_frames(struct conn *c, uint8_t *data, size_t len);

/* The reader whose outermost on_input call is under way on this thread: a call nested in it for
 * the same connection (held input released while handling its input) leaves the spill to it. */
static _Thread_local struct ws_reader *spill_reader;

static size_t on_input(struct conn *c, uint8_t *data, size_t len)
{
    struct ws_reader *r = &c->u.ws.reader;
    if (spill_reader == r)
        return read_frames(c, data, len);
    struct ws_reader *outer = spill_reader;
    spill_reader = r;
    spill_lend(r);
    size_t used = read_frames(c, data, len);
    spill_settle(c);
    spill_reader = outer;
    return used;
}

static size_t read_frames(struct conn *c, uint8_t *data, size_t len)
{
    size_t used = 0;
    while (conn_is_open(c)) {
        if (c->input_held || (c->io_hold & CONN_HOLD_READ))
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
    if (c->ws_endpoint != WS_ENDPOINT_CHAT || (c->session && chat->logged_in(c)))
        return UINT64_MAX;
    uint64_t paused = chat->login_pause(c);
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
    /* Closed in the middle of a frame: its own spill goes (the thread's is given back by
     * spill_settle when the call that closed it ends). */
    if (c->u.ws.reader.spill != &spill_scratch) {
        free(c->u.ws.reader.spill);
        c->u.ws.reader.spill = NULL;
    }
    chunk_unref(c->u.ws.msg);
    c->u.ws.msg = NULL;
    if (c->u.ws.inflater) {
        ws_inflater_give(zpool_of(c), c->u.ws.inflater);
        c->u.ws.inflater = NULL;
    }
    chat->closed(c);
}

static void on_shutdown(struct conn *c, enum conn_goodbye why)
{
    if (why == CONN_GOODBYE_RESTART)
        ws_session_close(c, WS_CLOSE_RESTART, "service restart");
    else
        ws_session_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
}

static void on_drained(struct conn *c)
{
    if (c->session)
        chat->drained(c);
}

static const struct conn_handler ws_handler = {
    .on_input = on_input,
    .on_timer = on_timer,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
    .on_drained = on_drained,
};

void ws_session_start(struct conn *c, enum ws_endpoint ep, unsigned deflate_bits)
{
    memset(&c->u.ws, 0, sizeof c->u.ws);
    ws_reader_init(&c->u.ws.reader, cfg_of(c)->max_message);
    if (deflate_bits) {
        ws_reader_use_deflate(&c->u.ws.reader);
        c->ws_deflate_bits = (uint8_t)deflate_bits;
    }
    c->ws_endpoint = (uint8_t)ep;
    c->u.ws.last_ping_ms = conn_now(c);
    c->u.ws.opened_ms = conn_now(c);
    c->handler = &ws_handler;
    conn_set_transport(c, CONN_WEBSOCKET);
    if (ep == WS_ENDPOINT_CHAT)
        greet(c); /* the chat session is made at the first request: an idle socket costs only its
                     conn */
    schedule(c);
}

/* --- live upgrades --- */

bool ws_session_owns(const struct conn *c)
{
    return c->handler == &ws_handler;
}

void ws_session_hold_input(struct conn *c)
{
    if (c->u.ws.inflater)
        c->ws_hold_at_end = true;
    else
        conn_hold_io(c, c->io_hold | CONN_HOLD_READ);
}

bool ws_session_busy(const struct conn *c, unsigned version)
{
    return c->u.ws.inflater != NULL || chat->busy(c, version);
}

bool ws_session_partial(const struct conn *c)
{
    return c->u.ws.reader.hdr_len > 0 || c->u.ws.reader.msg_opcode != 0;
}

void ws_session_save(struct conn *c, struct hr_writer *w)
{
    const struct conn_ws *ws = &c->u.ws;
    const struct ws_reader *r = &ws->reader;
    uint64_t now = conn_now(c);
    hr_u64(w, HR_WS_ENDPOINT, c->ws_endpoint);
    hr_u64(w, HR_WS_DEFLATE_BITS, c->ws_deflate_bits);
    hr_u64(w, HR_WS_PING_AGE_MS, now - ws->last_ping_ms);
    hr_u64(w, HR_WS_OPEN_AGE_MS, now - ws->opened_ms);
    hr_open(w, HR_WS_READER);
    hr_u64(w, HR_RD_FRAME_LEN, r->frame_len);
    hr_u64(w, HR_RD_FRAME_DONE, r->frame_done);
    hr_u64(w, HR_RD_MSG_LEN, r->msg_len);
    hr_u64(w, HR_RD_UTF8, r->utf8_state);
    hr_put(w, HR_RD_MASK, r->mask, 4);
    hr_u64(w, HR_RD_STAGE, r->stage);
    hr_put(w, HR_RD_HDR, r->spill ? r->spill->hdr : NULL, r->spill ? r->hdr_len : 0);
    hr_u64(w, HR_RD_OPCODE, r->opcode);
    hr_u64(w, HR_RD_MSG_OPCODE, r->msg_opcode);
    hr_u64(w, HR_RD_FIN, r->fin);
    hr_u64(w, HR_RD_FAILED, r->failed);
    hr_u64(w, HR_RD_DEFLATE, r->deflate);
    hr_u64(w, HR_RD_MSG_COMPRESSED, r->msg_compressed);
    hr_u64(w, HR_RD_ERROR, r->error);
    /* A control frame under way has its payload so far in ctl (frame_done bytes). */
    bool control = r->stage == 1 && (r->opcode & 0x8);
    hr_put(w, HR_RD_CTL, r->spill ? r->spill->ctl : NULL,
           control && r->spill ? (size_t)r->frame_done : 0);
    hr_close(w);
    if (ws->msg)
        hr_put(w, HR_WS_MSG, ws->msg->data + WS_MAX_HEADER, ws->msg->len);
    if (c->session)
        chat->save(c, w);
}

int ws_session_restore(struct conn *c, const struct handover_rec *rec, const char **why)
{
    const struct config *cfg = cfg_of(c);
    uint64_t now = conn_now(c);
    struct conn_ws *ws = &c->u.ws;
    memset(ws, 0, sizeof *ws);
    c->handler = &ws_handler;
    conn_set_transport(c, CONN_WEBSOCKET);
    ws->reader = rec->ws_reader;
    ws->reader.max_message = (uint32_t)cfg->max_message; /* at most 1 GiB */
    /* The record's spill is the record's: a reader mid-frame gets a copy of its own. */
    ws->reader.spill = NULL;
    if (ws_reader_mid_frame(&rec->ws_reader)) {
        ws->reader.spill = xmalloc(sizeof *ws->reader.spill);
        *ws->reader.spill = rec->ws_spill;
    }
    c->ws_endpoint = rec->ws_endpoint;
    c->ws_deflate_bits = rec->ws_deflate_bits;
    ws->last_ping_ms = now > rec->ws_ping_age_ms ? now - rec->ws_ping_age_ms : 0;
    ws->opened_ms = now > rec->ws_open_age_ms ? now - rec->ws_open_age_ms : 0;
    const struct ws_reader *r = &ws->reader;
    if (!ws_reader_valid(r)) {
        *why = "the WebSocket reader's state is not one it can be in";
        return -1;
    }
    if (r->deflate != (c->ws_deflate_bits != 0) || (c->ws_deflate_bits && !cfg->deflate)) {
        *why = "compression agreed that this server does not do";
        return -1;
    }
    /* Until its first payload byte is read, a compressed message has no zlib state: this
     * process's inflater starts where the old one's would have. */
    if (r->msg_opcode && r->msg_compressed && r->msg_len > 0) {
        *why = "a compressed message under way (its zlib state cannot move)";
        return -1;
    }
    bool has_msg = rec->has_ws_msg && rec->ws_msg.n > 0;
    if (has_msg != (r->msg_len > 0) || (has_msg && rec->ws_msg.n != r->msg_len) ||
        (rec->has_ws_msg && !r->msg_opcode)) {
        *why = "a message under way that is not the reader's";
        return -1;
    }
    if (has_msg)
        append_piece(c, rec->ws_msg.p, rec->ws_msg.n);
    if (rec->has_chat) {
        if (c->ws_endpoint != WS_ENDPOINT_CHAT) {
            *why = "a chat session on the echo endpoint";
            return -1;
        }
        /* (Without one: a chat session is made at the first request, as it would have been.) */
        if (chat->restore(c, rec, why) < 0)
            return -1;
    }
    schedule(c);
    return 0;
}
