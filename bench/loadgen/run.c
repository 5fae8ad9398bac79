/* run: a worker process: its clients, the scenario's sends and every receiver's checks. */
#include "run.h"

#include "client.h"
#include "jscan.h"
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* A client's protocol stage. */
enum stage {
    ST_NONE,         /* not connected */
    ST_CONNECTING,   /* TCP and the upgrade */
    ST_WAIT_HELLO,   /* parley: the greeting */
    ST_WAIT_WELCOME, /* parley: the login's answer */
    ST_WAIT_JOINED,  /* parley: the join's answer */
    ST_REPLAY,       /* storm: joined with since, the replay not all in yet */
    ST_READY,        /* set up: receives and may send */
    ST_DEAD,         /* failed or closed by the other side: out of the run */
};

#define MAX_TEXT 4096
/* Per-sender slots take at most this much per worker; beyond, only the seq check runs (parley). */
#define SLOTS_BUDGET (1024ull * 1024 * 1024)

struct worker {
    const struct options *o;
    struct board *b;
    struct board_worker *me;
    uint32_t w;
    struct net net;
    struct client *cl;
    uint32_t first, count;
    int phase;
    /* connecting, at set-up and in the storm */
    uint32_t next_connect;
    uint32_t connecting;
    uint64_t connect_start;
    uint64_t connects_started;
    uint32_t batch;
    double connect_rate;
    /* traffic */
    uint64_t traffic_start;
    uint64_t paced_sent;
    uint32_t rr;
    uint64_t round_sent;
    uint64_t unacked;
    uint32_t slots; /* per-sender slots per client, 0 = none */
    uint64_t last_check;
    bool all_checked;
    /* results */
    uint64_t sent, resent, acked, deliveries, replayed;
    struct faults f;
    /* --storm-restart: clients to connect again, in the order they failed (each 20 ms later) */
    uint32_t *retry;
    uint32_t retry_head, retry_len;
    uint64_t retries;
};

#define RETRY_NS 20000000ull

static struct worker W;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    if (W.me->problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(W.me->problem, sizeof W.me->problem, fmt, ap);
    va_end(ap);
}

static bool is_parley(void)
{
    return W.o->protocol == PR_PARLEY;
}

/* The room of global client id. */
static uint32_t room_of(uint32_t id)
{
    return id % W.o->rooms;
}

/*
 * Notes that number v arrived after (*last, *seen): bit i of *seen says that
 * last-1-i arrived; window is how many bits *seen holds. Counts the faults it
 * shows (a gap counts as lost until it is filled late, then as reordered).
 * Returns false when v was a duplicate.
 */
static bool seq_note(uint64_t *last, uint64_t *seen, uint64_t v, unsigned window, bool gaps,
                     const char *what, uint32_t id)
{
    uint64_t mask = window == 64 ? ~0ull : (1ull << window) - 1;
    if (v == *last + 1) {
        *seen = ((*seen << 1) | 1) & mask;
        *last = v;
        return true;
    }
    if (v > *last + 1) {
        uint64_t d = v - *last;
        if (gaps) {
            W.f.lost += d - 1;
            problem("client %u: %s %llu came after %llu (%llu missing so far)", id, what,
                    (unsigned long long)v, (unsigned long long)*last, (unsigned long long)(d - 1));
        }
        *seen = d >= window ? 0 : ((*seen << d) | (1ull << (d - 1))) & mask;
        *last = v;
        return true;
    }
    if (v == *last) {
        W.f.duplicated++;
        problem("client %u: %s %llu twice", id, what, (unsigned long long)v);
        return false;
    }
    uint64_t i = *last - 1 - v;
    if (i < window && (*seen >> i) & 1) {
        W.f.duplicated++;
        problem("client %u: %s %llu twice (after %llu)", id, what, (unsigned long long)v,
                (unsigned long long)*last);
        return false;
    }
    if (i < window) {
        *seen |= 1ull << i;
        if (gaps && W.f.lost > 0)
            W.f.lost--; /* it was counted missing: it is late instead */
    }
    if (gaps) {
        W.f.reordered++;
        problem("client %u: %s %llu came after %llu", id, what, (unsigned long long)v,
                (unsigned long long)*last);
    }
    return true;
}

/* Writes one message of client c with count k: the stamp, in a `send` for parley. */
static void send_one(struct client *c, uint32_t k, bool resend)
{
    char text[MAX_TEXT + 64], req[MAX_TEXT + 256];
    size_t tl = proto_stamp_write(text, sizeof text, board_now(), c->id, k, W.o->text_size);
    if (is_parley()) {
        size_t rl = proto_send(req, sizeof req, W.o->room_prefix, c->room, k, text, tl,
                               W.o->scenario == SC_STORM, c->id);
        client_send_text(&W.net, c, req, rl);
    } else {
        client_send_text(&W.net, c, text, tl);
    }
    if (resend) {
        W.resent++;
        return;
    }
    c->sent = k;
    W.sent++;
    atomic_store_explicit(&W.b->sender_sent[c->id], k, memory_order_relaxed);
    if (is_parley())
        W.unacked++;
}

static void client_ready(struct client *c)
{
    c->stage = ST_READY;
    W.connecting--;
    atomic_fetch_add(&W.me->ready, 1);
    hist_add(&W.me->setup, board_now() - c->t_connect);
}

/* Storm: c is back and has its replay; what it sent without an ack goes again, same cid. */
static void client_back(struct client *c)
{
    c->stage = ST_READY;
    atomic_fetch_add(&W.me->back, 1);
    for (uint32_t k = c->acked + 1; k <= c->sent && c->fd >= 0; k++)
        send_one(c, k, true);
}

/*
 * --storm-restart: c, not back yet, lost its connection or could not connect (the server is
 * restarting): it goes back in line. Returns false outside that case.
 */
static bool client_retry(struct client *c)
{
    if (!W.o->storm_restart || W.phase != PH_STORM || c->stage < ST_CONNECTING ||
        c->stage > ST_REPLAY)
        return false;
    if (c->stage <= ST_WAIT_JOINED)
        W.connecting--;
    client_close(&W.net, c);
    c->stage = ST_NONE;
    c->t_connect = board_now() + RETRY_NS; /* when it may try again */
    W.retry[(W.retry_head + W.retry_len++) % W.count] = (uint32_t)(c - W.cl);
    W.retries++;
    return true;
}

/* c will not become ready (or was closed under us): it leaves the run. */
static void client_dead(struct client *c)
{
    if (c->stage >= ST_CONNECTING && c->stage <= ST_WAIT_JOINED) {
        W.connecting--;
        W.f.connect_failed++;
        atomic_fetch_add(&W.me->failed, 1);
    } else if (c->stage == ST_REPLAY) {
        W.f.unexpected_close++;
        atomic_fetch_add(&W.me->failed, 1); /* it will never be back */
    } else {
        W.f.unexpected_close++;
    }
    c->stage = ST_DEAD;
}

/* Broadcast: sends while fewer than --inflight messages are still fanning out. */
static void broadcast_pump(void)
{
    if (W.first != 0 || W.phase != PH_TRAFFIC)
        return;
    struct client *c = &W.cl[0];
    if (c->stage != ST_READY)
        return;
    uint64_t done = atomic_load(&W.b->completed);
    while (c->sent < W.o->messages && c->sent < done + W.o->inflight && c->fd >= 0)
        send_one(c, c->sent + 1, false);
}

/* The cross-process tallies of one live delivery of message k sent at t. */
static void count_delivery(uint32_t k, uint64_t t, uint64_t now)
{
    struct board *b = W.b;
    if (W.o->scenario == SC_BROADCAST && k >= 1 && k <= W.o->messages) {
        uint32_t got = (uint32_t)atomic_fetch_add(&b->msg_count[k - 1], 1) + 1;
        if (got == W.o->clients) {
            hist_add(&W.me->fanout, now - t);
            atomic_fetch_add(&b->completed, 1);
            if (W.first == 0)
                broadcast_pump();
            else
                board_wake(b, 0);
        }
    } else if (W.o->scenario == SC_ALL) {
        uint64_t want = (uint64_t)W.o->clients * W.o->clients;
        if (atomic_fetch_add(&b->round_deliveries, 1) + 1 == want) {
            hist_add(&b->rounds, now - b->round_start);
            uint64_t done = atomic_fetch_add(&b->rounds_done, 1) + 1;
            if (done < W.o->rounds && atomic_load(&b->phase) == PH_TRAFFIC) {
                atomic_store(&b->round_deliveries, 0);
                b->round_start = now;
                atomic_fetch_add(&b->round, 1);
                for (uint32_t i = 0; i < b->workers; i++)
                    board_wake(b, i);
            }
        }
    }
}

/* The per-sender check of a stamp (s, k) at receiver c. Returns false for a duplicate. */
static bool sender_note(struct client *c, uint32_t s, uint32_t k)
{
    if (!c->slots)
        return true;
    uint32_t K = W.o->rooms;
    if (s >= W.o->clients || s % K != c->room) {
        W.f.wrong_room++;
        problem("client %u: a message from client %u, who is not in its room", c->id, s);
        return true;
    }
    uint32_t j = W.o->scenario == SC_BROADCAST ? 0 : s / K;
    if (j >= W.slots)
        return true;
    struct seqslot *sl = &c->slots[j];
    uint64_t last = sl->last, seen = sl->seen;
    /* parley: seq finds gaps and order; the sender's count adds duplicates stored twice. */
    bool fresh = seq_note(&last, &seen, k, 32, !is_parley(), "message of its sender", c->id);
    sl->last = (uint32_t)last;
    sl->seen = (uint32_t)seen;
    return fresh;
}

static void on_message(struct client *c, const struct jscan_value *v)
{
    uint64_t seq;
    uint64_t t;
    uint32_t s, k;
    if (!jscan_u64(&v[JK_SEQ], &seq) || !v[JK_TEXT].found ||
        !proto_stamp_read(v[JK_TEXT].p, v[JK_TEXT].len, &t, &s, &k)) {
        W.f.bad_frames++;
        problem("client %u: a message without seq or stamp", c->id);
        return;
    }
    /* The room is the prefix and the room's number: it must be this client's. */
    size_t plen = strlen(W.o->room_prefix);
    const struct jscan_value *r = &v[JK_ROOM];
    uint64_t room = UINT64_MAX;
    if (r->found && r->len > plen && memcmp(r->p, W.o->room_prefix, plen) == 0) {
        struct jscan_value num = {.p = r->p + plen, .len = r->len - plen, .found = true};
        if (!jscan_u64(&num, &room))
            room = UINT64_MAX;
    }
    if (room != c->room) {
        W.f.wrong_room++;
        problem("client %u: a message of room %.*s", c->id, (int)r->len, r->found ? r->p : "");
        return;
    }
    uint64_t now = board_now();
    bool replay = c->stage == ST_REPLAY && seq <= c->join_seq;
    seq_note(&c->last_seq, &c->seen_bits, seq, 64, true, "seq", c->id);
    bool fresh = sender_note(c, s, k);
    W.deliveries++;
    if (replay) {
        W.replayed++;
        c->replayed++;
    } else {
        hist_add(&W.me->latency, now - t);
        if (fresh)
            count_delivery(k, t, now);
    }
    if (c->stage == ST_REPLAY && c->last_seq >= c->join_seq)
        client_back(c);
}

static void on_text_parley(struct net *n, struct client *c, const uint8_t *data, size_t len)
{
    (void)n;
    atomic_store_explicit(&W.me->last_rx, board_now(), memory_order_relaxed);
    /* Presence is most of what a big room's joins bring, and none of the benchmark's business. */
    static const char presence[] = "{\"type\":\"presence\"";
    if (len > sizeof presence && memcmp(data, presence, sizeof presence - 1) == 0)
        return;
    struct jscan_value v[JK_COUNT_];
    if (jscan_fields((const char *)data, len, v) < 0 || !v[JK_TYPE].found) {
        W.f.bad_frames++;
        problem("client %u: a text that is not a JSON object with a type: %.60s", c->id,
                (const char *)data);
        return;
    }
    const struct jscan_value *type = &v[JK_TYPE];
    char req[512];
    size_t rl;
    if (jscan_is(type, "message")) {
        on_message(c, v);
    } else if (jscan_is(type, "ack")) {
        uint64_t k, seq;
        if (!jscan_u64(&v[JK_ID], &k) || !jscan_u64(&v[JK_SEQ], &seq)) {
            W.f.bad_frames++;
            problem("client %u: an ack without id or seq", c->id);
            return;
        }
        W.acked++;
        if (k > c->acked && k <= c->sent) {
            W.unacked -= k - c->acked;
            c->acked = (uint32_t)k;
        }
        board_max(&W.b->room_final[c->room], seq);
    } else if (jscan_is(type, "hello")) {
        if (c->stage != ST_WAIT_HELLO)
            return;
        if (c->token[0])
            rl = proto_login_token(req, sizeof req, c->token);
        else
            rl = proto_login_guest(req, sizeof req, W.o->name_prefix, c->id);
        c->stage = ST_WAIT_WELCOME;
        client_send_text(&W.net, c, req, rl);
    } else if (jscan_is(type, "welcome")) {
        if (c->stage != ST_WAIT_WELCOME)
            return;
        const struct jscan_value *tok = &v[JK_TOKEN];
        if (tok->found && tok->is_string && tok->len < sizeof c->token) {
            memcpy(c->token, tok->p, tok->len);
            c->token[tok->len] = '\0';
        }
        rl = proto_join(req, sizeof req, W.o->room_prefix, c->room,
                        c->joined_once ? (int64_t)c->last_seq : -1);
        c->stage = ST_WAIT_JOINED;
        client_send_text(&W.net, c, req, rl);
    } else if (jscan_is(type, "joined")) {
        uint64_t seq;
        if (c->stage != ST_WAIT_JOINED || !jscan_u64(&v[JK_SEQ], &seq)) {
            W.f.bad_frames++;
            problem("client %u: an unexpected joined", c->id);
            return;
        }
        c->join_seq = seq;
        if (!c->joined_once) {
            c->joined_once = true;
            c->last_seq = seq;
            c->seen_bits = ~0ull;
            client_ready(c);
        } else {
            W.connecting--;
            if (c->last_seq < seq) {
                c->stage = ST_REPLAY;
            } else {
                client_back(c);
            }
        }
    } else if (jscan_is(type, "error")) {
        W.f.server_errors++;
        problem("client %u: error %.*s: %.*s", c->id, (int)v[JK_CODE].len, v[JK_CODE].p,
                (int)v[JK_MESSAGE].len, v[JK_MESSAGE].p);
        if (c->stage != ST_READY && c->stage != ST_REPLAY) {
            client_close(&W.net, c);
            client_dead(c);
        }
    }
    /* presence, typing and anything newer: not this benchmark's business */
}

/* One relayed message: its stamp's checks and figures. */
static void relay_delivery(struct client *c, uint64_t t, uint32_t s, uint32_t k)
{
    uint64_t now = board_now();
    bool fresh = sender_note(c, s, k);
    W.deliveries++;
    hist_add(&W.me->latency, now - t);
    if (fresh)
        count_delivery(k, t, now);
}

/*
 * A text from the relay. Without --relay-lines it is one message, and a
 * stamped text holding a newline is a fault (several messages in one frame
 * would otherwise pass as one, the rest counted lost with no hint why). With
 * it, every line must be a stamp: Go's chat example joins what is queued for
 * a connection with '\n' into one frame, and says nothing else.
 */
static void on_text_relay(struct net *n, struct client *c, const uint8_t *data, size_t len)
{
    (void)n;
    atomic_store_explicit(&W.me->last_rx, board_now(), memory_order_relaxed);
    const char *p = (const char *)data, *end = p + len;
    uint64_t t;
    uint32_t s, k;
    if (!W.o->relay_lines) {
        if (!proto_stamp_read(p, len, &t, &s, &k))
            return; /* a greeting or anything else the relay says of its own */
        if (memchr(p, '\n', len)) {
            W.f.bad_frames++;
            problem("client %u: a text held several messages joined by newlines (use "
                    "--relay-lines)",
                    c->id);
            return;
        }
        relay_delivery(c, t, s, k);
        return;
    }
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if (!proto_stamp_read(p, (size_t)(line_end - p), &t, &s, &k)) {
            W.f.bad_frames++;
            problem("client %u: a line without a stamp: '%.*s'", c->id,
                    (int)(line_end - p > 60 ? 60 : line_end - p), p);
        } else {
            relay_delivery(c, t, s, k);
        }
        if (!nl)
            return;
        p = nl + 1;
    }
}

static void on_open(struct net *n, struct client *c)
{
    (void)n;
    if (is_parley()) {
        c->stage = ST_WAIT_HELLO;
        return;
    }
    client_ready(c);
}

static void on_closed(struct net *n, struct client *c, const char *why)
{
    (void)n;
    if (client_retry(c))
        return;
    problem("client %u: %s", c->id, why);
    client_dead(c);
}

/* The next client to connect: one whose retry is due, else the next in order; NULL if none. */
static struct client *next_to_connect(uint64_t now)
{
    if (W.retry_len && W.cl[W.retry[W.retry_head]].t_connect <= now) {
        struct client *c = &W.cl[W.retry[W.retry_head]];
        W.retry_head = (W.retry_head + 1) % W.count;
        W.retry_len--;
        return c;
    }
    return W.next_connect < W.count ? &W.cl[W.next_connect++] : NULL;
}

/* Starts connections while the batch and the rate allow. */
static void connect_some(void)
{
    uint64_t now = board_now();
    while (W.connecting < W.batch) {
        if (W.connect_rate > 0 &&
            (double)W.connects_started >= W.connect_rate * (double)(now - W.connect_start) / 1e9)
            break;
        struct client *c = next_to_connect(now);
        if (!c)
            break;
        if (c->stage == ST_DEAD)
            continue;
        c->t_connect = now;
        c->stage = ST_CONNECTING;
        W.connecting++;
        W.connects_started++;
        int r = client_connect(&W.net, c);
        if (r < 0 && !client_retry(c)) {
            problem("client %u: connect: %s", c->id, strerror(-r));
            client_dead(c);
        }
    }
}

/* Rooms and storm: the share of --send-rate due by now, from clients in turn. */
static void paced_sends(void)
{
    double rate = W.o->send_rate * (double)W.count / (double)W.o->clients;
    uint64_t due = (uint64_t)(rate * (double)(board_now() - W.traffic_start) / 1e9);
    while (W.paced_sent < due) {
        struct client *c = NULL;
        for (uint32_t tries = 0; tries < W.count; tries++) {
            struct client *x = &W.cl[W.rr];
            W.rr = (W.rr + 1) % W.count;
            if (x->stage == ST_READY) {
                c = x;
                break;
            }
        }
        if (!c) {
            W.paced_sent = due; /* nobody can send now: these sends are skipped, not saved up */
            return;
        }
        send_one(c, c->sent + 1, false);
        W.paced_sent++;
    }
}

static void traffic(void)
{
    if (W.phase != PH_TRAFFIC && W.phase != PH_LAG && W.phase != PH_STORM)
        return;
    switch (W.o->scenario) {
    case SC_BROADCAST:
        broadcast_pump();
        break;
    case SC_ALL: {
        uint64_t round = atomic_load(&W.b->round);
        if (W.phase == PH_TRAFFIC && round > W.round_sent) {
            W.round_sent = round;
            for (uint32_t i = 0; i < W.count; i++)
                if (W.cl[i].stage == ST_READY)
                    send_one(&W.cl[i], (uint32_t)round, false);
        }
        break;
    }
    case SC_ROOMS:
    case SC_STORM:
        paced_sends();
        break;
    case SC_IDLE:
        break;
    }
}

/* True when receiver c has every message sent to it (its tail is in). */
static bool caught_up(const struct client *c)
{
    if (c->stage == ST_DEAD)
        return true;
    if (is_parley())
        return c->last_seq >= atomic_load(&W.b->room_final[c->room]);
    for (uint32_t j = 0; j < W.slots; j++) {
        uint32_t s = W.o->scenario == SC_BROADCAST ? 0 : j * W.o->rooms + c->room;
        if (s < W.o->clients && c->slots[j].last < atomic_load(&W.b->sender_sent[s]))
            return false;
    }
    return true;
}

static void checks(void)
{
    if (W.phase == PH_DRAIN && !atomic_load(&W.me->drained) && W.unacked == 0)
        atomic_store(&W.me->drained, 1);
    if (W.phase != PH_CHECK || W.all_checked)
        return;
    uint64_t now = board_now();
    if (now - W.last_check < 5000000)
        return;
    W.last_check = now;
    for (uint32_t i = 0; i < W.count; i++)
        if (!caught_up(&W.cl[i]))
            return;
    W.all_checked = true;
    atomic_store(&W.me->checked, 1);
}

/* At the end: what each receiver still lacks is lost. */
static void tally_tails(void)
{
    for (uint32_t i = 0; i < W.count; i++) {
        const struct client *c = &W.cl[i];
        if (c->stage == ST_DEAD || !c->joined_once)
            continue;
        if (is_parley()) {
            uint64_t final = atomic_load(&W.b->room_final[c->room]);
            if (c->last_seq < final) {
                W.f.lost += final - c->last_seq;
                problem("client %u: its room's last acked seq is %llu, it got up to %llu", c->id,
                        (unsigned long long) final, (unsigned long long)c->last_seq);
            }
            continue;
        }
        for (uint32_t j = 0; j < W.slots; j++) {
            uint32_t s = W.o->scenario == SC_BROADCAST ? 0 : j * W.o->rooms + c->room;
            uint32_t sent = s < W.o->clients ? atomic_load(&W.b->sender_sent[s]) : 0;
            if (c->slots[j].last < sent) {
                W.f.lost += sent - c->slots[j].last;
                problem("client %u: client %u sent %u, it got up to %u", c->id, s, sent,
                        c->slots[j].last);
            }
        }
    }
}

/* The storm: every connection dropped at once, then all of them set up again. */
static void storm_begin(void)
{
    for (uint32_t i = 0; i < W.count; i++) {
        struct client *c = &W.cl[i];
        if (c->stage == ST_DEAD)
            continue;
        client_close(&W.net, c);
        c->stage = ST_NONE;
    }
    W.next_connect = 0;
    W.connecting = 0;
    W.connects_started = 0;
    W.connect_start = board_now();
}

/* Allocates the per-sender slots when the run needs them and they fit. */
static void alloc_slots(void)
{
    if (W.o->scenario == SC_IDLE)
        return;
    uint64_t per = W.o->scenario == SC_BROADCAST ? 1 : (W.o->clients + W.o->rooms - 1) / W.o->rooms;
    if (per * W.count * sizeof(struct seqslot) > SLOTS_BUDGET)
        return; /* options.c refused this for the relay, whose only check it is */
    W.slots = (uint32_t)per;
    /* Zeroed slots need no setting: a stamp's count starts at 1, so the bits of a zero `seen`
     * stand only for counts a message never has. calloc leaves the pages untouched until a sender
     * writes to them: a room of 15,000 costs what its senders use, not 1.8 GB at the start. */
    for (uint32_t i = 0; i < W.count; i++) {
        W.cl[i].slots = calloc(per, sizeof *W.cl[i].slots);
        if (!W.cl[i].slots) {
            fprintf(stderr, "loadgen: out of memory for per-sender checks\n");
            exit(1);
        }
    }
}

static void on_phase(int phase)
{
    W.phase = phase;
    if (phase == PH_TRAFFIC) {
        W.traffic_start = board_now();
        W.paced_sent = 0;
    } else if (phase == PH_STORM) {
        storm_begin();
    }
}

static void write_results(void)
{
    struct board_worker *me = W.me;
    me->retries = W.retries;
    me->replay_min = UINT64_MAX;
    for (uint32_t i = 0; i < W.count; i++)
        if (W.cl[i].stage != ST_DEAD && W.cl[i].replayed < me->replay_min)
            me->replay_min = W.cl[i].replayed;
    me->sent = W.sent;
    me->resent = W.resent;
    me->acked = W.acked;
    me->deliveries = W.deliveries;
    me->replayed = W.replayed;
    me->faults = W.f;
    atomic_store(&me->finished, 1);
}

int run_worker(const struct options *o, struct board *b, uint32_t w, uint32_t first, uint32_t count)
{
    memset(&W, 0, sizeof W);
    W.o = o;
    W.b = b;
    W.me = &b->w[w];
    W.w = w;
    W.first = first;
    W.count = count;
    W.phase = PH_SETUP;
    W.batch = o->batch / o->procs ? o->batch / o->procs : 1;
    W.connect_rate = o->connect_rate / o->procs;
    static const struct net_callbacks cb_parley = {on_open, on_text_parley, on_closed};
    static const struct net_callbacks cb_relay = {on_open, on_text_relay, on_closed};
    int r = net_init(&W.net, o, o->protocol == PR_PARLEY ? &cb_parley : &cb_relay, NULL);
    if (r < 0) {
        fprintf(stderr, "loadgen: epoll: %s\n", strerror(-r));
        return 1;
    }
    W.net.rng ^= (uint64_t)w * 0x9e3779b97f4a7c15u;
    W.cl = calloc(count ? count : 1, sizeof *W.cl);
    if (!W.cl) {
        fprintf(stderr, "loadgen: out of memory for %u clients\n", count);
        return 1;
    }
    for (uint32_t i = 0; i < count; i++) {
        W.cl[i].fd = -1;
        W.cl[i].id = first + i;
        W.cl[i].room = room_of(first + i);
    }
    alloc_slots();
    if (o->storm_restart) {
        W.retry = calloc(count ? count : 1, sizeof *W.retry);
        if (!W.retry) {
            fprintf(stderr, "loadgen: out of memory for %u clients\n", count);
            return 1;
        }
    }
    struct epoll_event wake = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(W.net.epfd, EPOLL_CTL_ADD, W.me->efd, &wake);
    W.connect_start = board_now();

    struct epoll_event evs[1024];
    for (;;) {
        int phase = atomic_load(&b->phase);
        if (phase != W.phase)
            on_phase(phase);
        if (phase == PH_END)
            break;
        if (phase == PH_LAG) {
            /* Deaf: what the server writes stays unread in the sockets, and goes with the drop. */
            traffic();
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (phase == PH_SETUP || phase == PH_STORM)
            connect_some();
        traffic();
        checks();
        bool busy = (W.connect_rate > 0 && W.next_connect < W.count) ||
                    ((phase == PH_TRAFFIC || phase == PH_STORM) &&
                     (o->scenario == SC_ROOMS || o->scenario == SC_STORM)) ||
                    (phase == PH_CHECK && !W.all_checked);
        int n = epoll_wait(W.net.epfd, evs, 1024, busy ? 1 : 50);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                uint64_t v;
                ssize_t rd = read(W.me->efd, &v, sizeof v);
                (void)rd;
                continue;
            }
            struct client *c = evs[i].data.ptr;
            if (c->fd >= 0)
                client_on_event(&W.net, c, evs[i].events);
        }
    }
    tally_tails();
    write_results();
    return 0;
}
