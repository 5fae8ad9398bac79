/* handover: the worker's side of a live upgrade: freeze, write and park, settle; adopt and thaw. */
#include "handover.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "chat_session.h"
#include "http_session.h"
#include "log.h"
#include "map.h"
#include "peers.h"
#include "telnet_session.h"
#include "ws_session.h"

struct ho_worker {
    struct worker *w;
    bool freezing; /* the input of movable connections is held */
    bool quiet_sent;
    uint16_t version;
    struct mailbox *reply;
    bool collecting; /* busy connections are still waited for */
    uint64_t deadline_ms;
    struct timer deadline; /* then the busy ones are left here */
    struct map parked;     /* conn id -> a parked connection */
};

static void collect(struct worker *w);

static void on_deadline(struct timer *t)
{
    struct ho_worker *h = (struct ho_worker *)((char *)t - offsetof(struct ho_worker, deadline));
    if (h->collecting)
        collect(h->w);
}

static struct ho_worker *ho_of(struct worker *w)
{
    if (!w->handover) {
        struct ho_worker *h = xcalloc(1, sizeof *h);
        map_init(&h->parked, false);
        timer_init(&h->deadline, on_deadline);
        h->w = w;
        w->handover = h;
    }
    return w->handover;
}

struct handover_mail *handover_mail_new(enum handover_op op)
{
    struct handover_mail *m = xcalloc(1, sizeof *m);
    m->mail.kind = MAIL_HANDOVER;
    m->op = op;
    m->fd = -1;
    return m;
}

void handover_mail_free(struct handover_mail *m)
{
    if (!m)
        return;
    if (m->op == HO_ADOPT && m->fd >= 0)
        close(m->fd);
    hr_writer_free(&m->recs);
    free(m->items);
    free(m->ids);
    free(m);
}

static void reply(struct worker *w, struct mailbox *to, struct handover_mail *m)
{
    m->worker = w->id;
    if (to)
        mailbox_post(to, &m->mail);
    else
        handover_mail_free(m);
}

/* --- the old process --- */

/* Whether c can move at all: open, plain, and one of the sessions that know how to. */
static bool movable(const struct conn *c)
{
    if (c->state != CONN_OPEN || (c->tls & CONN_TLS_TAIL))
        return false;
    return http_session_owns(c) || ws_session_owns(c) || telnet_session_owns(c);
}

/* Whether c has something on its way that this process must finish before c can move. */
static bool busy(const struct conn *c, unsigned version)
{
    if (ws_session_owns(c))
        return ws_session_busy(c, version);
    if (telnet_session_owns(c))
        return telnet_session_busy(c, version);
    return false;
}

static void hold_input(struct conn *c)
{
    if (ws_session_owns(c))
        ws_session_hold_input(c);
    else
        conn_hold_io(c, c->io_hold | CONN_HOLD_READ);
}

static void release_input(struct conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    if (ws_session_owns(c))
        c->ws_hold_at_end = false;
    conn_hold_io(c, c->io_hold & (uint8_t)~CONN_HOLD_READ);
}

/* Writes c's record: what every connection has, then its session's. */
static void save(struct conn *c, struct hr_writer *w, uint16_t version)
{
    uint64_t now = conn_now(c);
    hr_begin(w, version);
    hr_u64(w, HR_TRANSPORT,
           ws_session_owns(c)       ? HR_WEBSOCKET
           : telnet_session_owns(c) ? HR_TELNET
                                    : HR_HTTP);
    hr_u64(w, HR_PEER_KEY, c->peer_key);
    hr_u64(w, HR_NET_KEY, c->net_key);
    hr_u64(w, HR_PEER_COUNTED, c->peer_counted);
    hr_u64(w, HR_VIA_PROXY, c->via_proxy);
    hr_u64(w, HR_RX_AGE_MS, now > c->last_rx_ms ? now - c->last_rx_ms : 0);
    if (timer_active(&c->timer)) {
        uint64_t due = c->timer.due_ms;
        hr_u64(w, HR_TIMER_MS, due >= UINT64_MAX / 2 ? UINT64_MAX : due > now ? due - now : 0);
    }
    hr_u64(w, HR_HTTP_BITS, c->http);
    if (c->in_len > 0)
        hr_put(w, HR_IN, c->in, c->in_len);
    if (c->out_bytes > 0)
        conn_output_copy(c, hr_space(w, HR_OUT, c->out_bytes));
    if (ws_session_owns(c))
        ws_session_save(c, w);
    else if (telnet_session_owns(c))
        telnet_session_save(c, w);
    hr_end(w);
}

static void add_item(struct handover_mail *m, struct conn *c, size_t off, int fd)
{
    m->items = xrealloc(m->items, (m->n_items + 1) * sizeof *m->items);
    m->items[m->n_items++] =
        (struct handover_item){.conn_id = c->id, .fd = fd, .off = off, .len = m->recs.len - off};
}

static void freeze(struct worker *w, struct handover_mail *m)
{
    struct ho_worker *h = ho_of(w);
    h->freezing = true;
    h->quiet_sent = false;
    h->version = m->version;
    h->reply = m->reply;
    for (struct conn *c = w->conns.all; c; c = c->next)
        if (movable(c))
            hold_input(c);
    handover_worker_tick(w);
}

static void unfreeze(struct worker *w)
{
    struct ho_worker *h = ho_of(w);
    h->freezing = h->collecting = false;
    struct conn *c = w->conns.all;
    while (c) {
        struct conn *next = c->next; /* held input handled now may close c */
        release_input(c);
        c = next;
    }
}

/* Writes and parks every movable connection that is not busy; the busy ones wait (until the
 * deadline: then they stay here, their input read again, for the drain). */
static void collect(struct worker *w)
{
    struct ho_worker *h = ho_of(w);
    struct handover_mail *m = handover_mail_new(HO_COLLECTED);
    size_t waiting = 0;
    for (struct conn *c = w->conns.all; c; c = c->next) {
        if (!movable(c))
            continue;
        if (busy(c, h->version)) {
            waiting++;
            continue;
        }
        size_t off = m->recs.len;
        save(c, &m->recs, h->version);
        add_item(m, c, off, c->fd);
        size_t replays = c->session ? chat_session_replays(c) : 0;
        m->out_bytes += c->out_bytes;
        m->replays += replays;
        m->logins += c->session && chat_session_cold(c->session)->pw;
        m->partial += c->in_len > 0 || (ws_session_owns(c) && ws_session_partial(c)) ||
                      (telnet_session_owns(c) && telnet_session_partial(c));
        log_debug("msg=handover_collected conn=%llu worker=%d record_bytes=%zu output_bytes=%zu "
                  "replays=%zu",
                  (unsigned long long)c->id, w->id, m->recs.len - off, c->out_bytes, replays);
        conn_park(c);
        map_put_u64(&h->parked, c->id, c);
    }
    bool late = clock_ms() >= h->deadline_ms;
    if (waiting == 0 || late) {
        m->final = true;
        m->busy_left = waiting;
        for (struct conn *c = w->conns.all; c; c = c->next)
            m->stayed += c->state == CONN_OPEN;
        h->collecting = false;
        h->freezing = false;
        timer_stop(w->loop, &h->deadline);
        if (waiting > 0) {
            log_warn("msg=handover_busy worker=%d connections=%zu action=\"they stay in this "
                     "process and are drained\"",
                     w->id, waiting);
            struct conn *c = w->conns.all;
            while (c) {
                struct conn *next = c->next;
                if (movable(c))
                    release_input(c);
                c = next;
            }
        }
    }
    if (m->n_items > 0 || m->final)
        reply(w, h->reply, m);
    else
        handover_mail_free(m);
}

static void settle(struct worker *w, struct handover_mail *m)
{
    struct ho_worker *h = ho_of(w);
    for (size_t i = 0; i < m->n_ids; i++) {
        struct conn *c = map_del_u64(&h->parked, m->ids[i]);
        if (!c)
            continue;
        if (m->moved) {
            conn_drop_moved(c);
        } else {
            conn_unpark(c);
            release_input(c);
        }
    }
}

/* Recovery: every movable connection (parked or not) written and let go of, its socket kept
 * open for the exec; the busy ones and the others stay, for the goodbyes. */
static void save_all(struct worker *w, struct handover_mail *req)
{
    struct ho_worker *h = ho_of(w);
    struct handover_mail *m = handover_mail_new(HO_COLLECTED);
    m->final = true;
    struct conn *c = w->conns.all;
    while (c) {
        struct conn *next = c->next;
        bool parked = c->state == CONN_PARKED;
        if (parked || (movable(c) && !busy(c, req->version))) {
            size_t off = m->recs.len;
            save(c, &m->recs, req->version);
            map_del_u64(&h->parked, c->id);
            add_item(m, c, off, conn_detach(c)); /* c is freed before the loop sleeps */
        }
        c = next;
    }
    h->freezing = h->collecting = false;
    reply(w, req->reply, m);
}

/* --- the new process --- */

static int restore(struct worker *w, int fd, const uint8_t *p, size_t n, uint16_t *version,
                   const char **why)
{
    struct handover_rec rec;
    handover_rec_size(p, n, version);
    if (handover_rec_read(p, n, &rec, why) < 0) {
        close(fd);
        return -1;
    }
    if (rec.in.n > CONN_MAX_PENDING_INPUT) {
        close(fd);
        *why = "more unread input than a connection may keep";
        return -1;
    }
    enum conn_transport t = rec.transport == HR_TELNET ? CONN_TELNET : CONN_HTTP;
    struct conn *c = conn_new(&w->conns, fd, NULL, t);
    if (!c) {
        *why = "the socket could not be watched";
        return -1;
    }
    /* Not ours to read or write until the handover is over (HO_THAW). */
    conn_hold_io(c, CONN_HOLD_READ | CONN_HOLD_WRITE);
    uint64_t now = conn_now(c);
    const struct config *cfg = w->cfg;
    c->peer_key = rec.peer_key;
    c->net_key = rec.net_key;
    c->via_proxy = rec.via_proxy;
    /* Counted per address as if accepted here (rule 24), but never refused: it is open. */
    if (cfg->max_conns_per_ip && rec.peer_key && !rec.via_proxy) {
        peers_acquire(rec.peer_key, UINT32_MAX);
        c->peer_counted = true;
    }
    c->last_rx_ms = now > rec.rx_age_ms ? now - rec.rx_age_ms : 0;
    c->http = rec.http_bits;
    if (rec.in.n > 0) {
        c->in_cap = (uint32_t)(rec.in.n < 4096 ? 4096 : rec.in.n);
        c->in = xmalloc(c->in_cap);
        memcpy(c->in, rec.in.p, rec.in.n);
        c->in_len = (uint32_t)rec.in.n;
    }
    conn_send_copy(c, rec.out.p, rec.out.n);
    int rc;
    if (rec.transport == HR_WEBSOCKET)
        rc = ws_session_restore(c, &rec, why);
    else if (rec.transport == HR_TELNET)
        rc = telnet_session_restore(c, &rec, why);
    else
        rc = http_session_restore(c, &rec, why);
    if (rc < 0) {
        /* Closed here, unwritten: the old process still holds the socket and keeps it. */
        conn_close(c);
        return -1;
    }
    if (rec.transport != HR_WEBSOCKET && rec.has_timer)
        conn_set_timer(c, rec.timer_ms == UINT64_MAX ? UINT64_MAX : now + rec.timer_ms);
    return 0;
}

static void adopt(struct worker *w, struct handover_mail *m)
{
    const char *why = NULL;
    int fd = m->fd;
    m->fd = -1; /* restore owns it now */
    uint16_t version = 0;
    int rc = restore(w, fd, m->recs.buf, m->recs.len, &version, &why);
    struct handover_mail *r = handover_mail_new(HO_ADOPTED);
    r->version = version;
    r->tag = m->tag;
    r->ok = rc == 0;
    r->why = why;
    reply(w, m->reply, r);
}

static void thaw(struct worker *w)
{
    struct conn *c = w->conns.all;
    while (c) {
        struct conn *next = c->next;
        if (c->state == CONN_OPEN && (c->io_hold & CONN_HOLD_WRITE)) {
            if (c->session && (ws_session_owns(c) || telnet_session_owns(c)))
                chat_session_thaw(c);
            if (c->state == CONN_OPEN)
                conn_hold_io(c, 0);
        }
        c = next;
    }
}

/* --- dispatch --- */

void handover_worker_mail(struct worker *w, struct handover_mail *m)
{
    switch (m->op) {
    case HO_FREEZE:
        freeze(w, m);
        break;
    case HO_UNFREEZE:
        unfreeze(w);
        break;
    case HO_COLLECT: {
        struct ho_worker *h = ho_of(w);
        h->collecting = true;
        h->deadline_ms = m->deadline_ms;
        h->version = m->version;
        h->reply = m->reply;
        timer_start(w->loop, &h->deadline, m->deadline_ms);
        collect(w);
        break;
    }
    case HO_SETTLE:
        settle(w, m);
        break;
    case HO_SAVE_ALL:
        save_all(w, m);
        break;
    case HO_ADOPT:
        adopt(w, m);
        break;
    case HO_THAW:
        thaw(w);
        break;
    default:
        break;
    }
    handover_mail_free(m);
}

void handover_worker_tick(struct worker *w)
{
    struct ho_worker *h = w->handover;
    if (!h)
        return;
    if (h->collecting) {
        collect(w);
        return;
    }
    if (!h->freezing || h->quiet_sent)
        return;
    for (struct conn *c = w->conns.all; c; c = c->next)
        if (movable(c) && busy(c, h->version))
            return;
    h->quiet_sent = true;
    reply(w, h->reply, handover_mail_new(HO_QUIET));
}

void handover_worker_destroy(struct worker *w)
{
    struct ho_worker *h = w->handover;
    if (!h)
        return;
    timer_stop(w->loop, &h->deadline);
    map_free(&h->parked);
    free(h);
    w->handover = NULL;
}
