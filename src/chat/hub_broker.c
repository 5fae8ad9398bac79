/* hub_broker: the hub's side of the broker: publishes what the hub stores, decodes what other nodes
 * publish, and answers the broker's fills from the store. */
#include "hub_broker.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "events.h"
#include "hub_nodes.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "text.h"

/* The user events that are the hub's, not a user's: an account registered, a room made. */
#define HUB_USER "*"

struct hub_broker {
    const struct config *cfg;
    struct broker *broker;
    struct hub_broker_hooks hooks;
    /* The dm rooms followed because one of their users has a connection here (as well as any
     * follow of a join): room -> (void *)1; and each such user's peers in them: user_lc ->
     * struct dm_peers. A room is unfollowed when neither of its users is here any more. */
    struct map dm_rooms, dm_peers;
    /* Where each dm room of a user here starts for this node: user_lc -> struct map
     * (room -> (void *)(uintptr_t)(seq + 1)), the newest seqs its first login here read from the
     * store (welcome's dms, or a guest's read for this). A dm room is followed from there, not from
     * the first event heard, so what was lost before it is filled. */
    struct map dm_starts;
    /* Users whose channel became ready (user_ready) since the last CHAT_DM_SEQS was sent: one
     * read for all of them, sent at the next turn (ready_timer), not one per user. */
    char (*ready)[CHAT_ROOM_MAX];
    size_t n_ready, cap_ready;
    struct timer ready_timer;
    struct loop *loop;
    struct hub_nodes *nodes; /* the broker's other callbacks go there */
    bool alone;              /* the local broker: nothing crosses processes, no wire form */
};

/* The peers of one user in the dm rooms followed for it. */
struct dm_peers {
    size_t n, cap;
    char **names;
};

/* The process's one hub's, for /healthz and /metrics on the workers' threads (broker_status is
 * readable from any thread). */
static _Atomic(struct hub_broker *) the_broker;

/* --- the wire form of an event: a stored event's fields --- */

struct wire {
    char *p;
    size_t n, cap;
};

static void put(struct wire *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->p = xrealloc(w->p, w->cap);
    }
    memcpy(w->p + w->n, p, n);
    w->n += n;
}

static void put_u64(struct wire *w, uint64_t v)
{
    put(w, &v, sizeof v);
}

/* A string as its length and bytes; NULL as UINT32_MAX. */
static void put_str(struct wire *w, const char *s, size_t n)
{
    uint32_t len = s ? (uint32_t)n : UINT32_MAX;
    put(w, &len, sizeof len);
    if (s)
        put(w, s, n);
}

static void put_cstr(struct wire *w, const char *s)
{
    put_str(w, s, s ? strlen(s) : 0);
}

static void wire_event(struct wire *w, const struct store_msg *m, const char *peer);

struct msg_rec hub_broker_wire(const struct store_msg *m)
{
    struct wire w = {0};
    wire_event(&w, m, NULL);
    struct msg_rec r = {.seq = m->seq, .ts = m->ts, .ws = chunk_from(w.p, w.n)};
    r.ws->len = (uint32_t)w.n;
    free(w.p);
    return r;
}

static void wire_event(struct wire *w, const struct store_msg *m, const char *peer)
{
    put_u64(w, m->seq);
    put_u64(w, (uint64_t)m->ts);
    put_u64(w, m->target);
    put_u64(w, m->reply_to);
    put_u64(w, (uint64_t)m->edited);
    put_u64(w, m->duration);
    uint8_t flags[3] = {m->type, m->deleted, m->on};
    put(w, flags, sizeof flags);
    put_cstr(w, m->room);
    put_cstr(w, m->from);
    put_str(w, m->text, m->text_len);
    put_cstr(w, m->cid);
    put_cstr(w, m->mentions);
    put_cstr(w, m->emoji);
    put_cstr(w, m->target_from);
    put_cstr(w, m->user);
    put_cstr(w, m->detail);
    put_cstr(w, peer);
}

/* Reading it back: every string is copied out NUL-terminated into one arena. */
struct reader {
    const char *p;
    size_t n;
    bool bad;
    char *arena;
    size_t used;
};

static bool get(struct reader *r, void *out, size_t n)
{
    if (r->bad || r->n < n) {
        r->bad = true;
        return false;
    }
    memcpy(out, r->p, n);
    r->p += n;
    r->n -= n;
    return true;
}

static uint64_t get_u64(struct reader *r)
{
    uint64_t v = 0;
    get(r, &v, sizeof v);
    return v;
}

static const char *get_str(struct reader *r, size_t *len)
{
    uint32_t n = 0;
    if (!get(r, &n, sizeof n) || n == UINT32_MAX)
        return NULL;
    if (n > r->n) {
        r->bad = true;
        return NULL;
    }
    char *s = r->arena + r->used;
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->used += (size_t)n + 1;
    r->p += n;
    r->n -= n;
    if (len)
        *len = n;
    return s;
}

/* What the hub's mirror of a room's moderation (and a kick) needs of another node's topic, role,
 * kick, ban, unban, mute or unmute: the op the storing node had, as far as the event tells. */
static struct chat_op *moderation_op(const struct store_msg *m)
{
    static const enum chat_op_kind kinds[] = {
        [STORE_EV_TOPIC] = CHAT_TOPIC,  [STORE_EV_ROLE] = CHAT_ROLE,   [STORE_EV_KICK] = CHAT_KICK,
        [STORE_EV_BAN] = CHAT_BAN,      [STORE_EV_UNBAN] = CHAT_UNBAN, [STORE_EV_MUTE] = CHAT_MUTE,
        [STORE_EV_UNMUTE] = CHAT_UNMUTE};
    struct chat_op *op = chat_op_new(kinds[m->type], 0, 0);
    snprintf(op->room, sizeof op->room, "%s", m->room);
    snprintf(op->user, sizeof op->user, "%s", m->from);
    op->ts = m->ts;
    op->duration = m->duration;
    if (m->user) {
        snprintf(op->subject, sizeof op->subject, "%s", m->user);
        text_lower(op->subject, strlen(op->subject), op->subject_lc);
    }
    const char *text = m->type == STORE_EV_TOPIC ? m->text : m->detail;
    if (text && *text) {
        op->text = xstrdup(text);
        op->text_len = strlen(text);
    }
    if (m->type == STORE_EV_ROLE && m->detail)
        op->role = strcmp(m->detail, "op") == 0      ? CHAT_ROLE_OP
                   : strcmp(m->detail, "owner") == 0 ? CHAT_ROLE_OWNER
                                                     : CHAT_ROLE_MEMBER;
    return op;
}

/* Fills ev from the wire form; false (ev untouched) when data is not one. */
bool hub_broker_unwire(const void *data, size_t len, struct hub_event *ev)
{
    struct reader r = {.p = data, .n = len, .arena = xmalloc(len + 16)};
    struct store_msg m = {0};
    m.seq = get_u64(&r);
    m.ts = (int64_t)get_u64(&r);
    m.target = get_u64(&r);
    m.reply_to = get_u64(&r);
    m.edited = (int64_t)get_u64(&r);
    m.duration = get_u64(&r);
    uint8_t flags[3] = {0};
    get(&r, flags, sizeof flags);
    m.type = flags[0];
    m.deleted = flags[1];
    m.on = flags[2];
    m.room = get_str(&r, NULL);
    m.from = get_str(&r, NULL);
    m.text = get_str(&r, &m.text_len);
    m.cid = get_str(&r, NULL);
    m.mentions = get_str(&r, NULL);
    m.emoji = get_str(&r, NULL);
    m.target_from = get_str(&r, NULL);
    m.user = get_str(&r, NULL);
    m.detail = get_str(&r, NULL);
    const char *peer = get_str(&r, NULL);
    bool ok = !r.bad && r.n == 0 && m.room && m.from && m.seq && strlen(m.room) < CHAT_ROOM_MAX &&
              m.type <= STORE_EV_UNMUTE;
    if (ok) {
        memset(ev, 0, sizeof *ev);
        memcpy(ev->room, m.room, strlen(m.room));
        if (!m.text)
            m.text = "";
        ev->live = events_event(&m, peer, EVENTS_LIVE);
        ev->ring = m.type == STORE_EV_EDIT ? events_event(&m, peer, EVENTS_REPLAY)
                                           : msg_rec_ref(&ev->live);
        if (m.type >= STORE_EV_TOPIC)
            ev->mod = moderation_op(&m);
        else if (m.type != STORE_EV_MESSAGE)
            ev->target = m.target;
    }
    free(r.arena);
    return ok;
}

void hub_broker_dm_users(struct hub_event *ev)
{
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (strncmp(ev->room, "dm:", 3) != 0 || !text_parse_dm_room(ev->room, strlen(ev->room), a, b))
        return;
    snprintf(ev->user_a, sizeof ev->user_a, "%s", a);
    snprintf(ev->user_b, sizeof ev->user_b, "%s", b);
}

void hub_event_free(struct hub_event *ev)
{
    if (!ev)
        return;
    msg_rec_release(&ev->live);
    msg_rec_release(&ev->ring);
    if (ev->mod)
        chat_op_free(ev->mod);
    free(ev);
}

/* --- the broker's callbacks --- */

static void on_room_event(void *ctx, const char *room, uint64_t seq, void *obj, const void *data,
                          size_t len)
{
    struct hub_broker *hb = ctx;
    struct hub_event *ev = obj;
    if (!ev) {
        ev = xmalloc(sizeof *ev);
        if (!hub_broker_unwire(data, len, ev) || ev->live.seq != seq ||
            strcmp(ev->room, room) != 0) {
            char q[96];
            log_error("msg=broker_bad_event room=%s seq=%" PRIu64 " bytes=%zu",
                      log_quote(q, sizeof q, room, strlen(room)), seq, len);
            free(ev);
            return;
        }
        hub_broker_dm_users(ev);
    }
    hb->hooks.deliver(hb->hooks.hub, ev);
}

static void on_release(void *ctx, void *obj)
{
    struct hub_broker *hb = ctx;
    struct hub_event *ev = obj;
    if (ev->op)
        hb->hooks.deliver(hb->hooks.hub, ev); /* the ack still goes (the hub skips the rest) */
    else
        hub_event_free(ev);
}

static void on_fill(void *ctx, const char *room, uint64_t from, uint64_t to)
{
    (void)ctx;
    struct chat_op *op = chat_op_new(CHAT_FILL, 0, 0);
    snprintf(op->room, sizeof op->room, "%s", room);
    op->join_after = from - 1;
    op->seq = to;
    op->since = from; /* where the fill began: its answer when nothing was there */
    chat_to_store(op);
}

/* Splits "<word> <rest>" data; false when there is no space. */
static bool split(const void *data, size_t len, char *word, size_t wcap, const char **rest,
                  size_t *rest_len)
{
    const char *s = data, *sp = memchr(s, ' ', len);
    if (!sp || (size_t)(sp - s) >= wcap)
        return false;
    memcpy(word, s, (size_t)(sp - s));
    word[sp - s] = '\0';
    *rest = sp + 1;
    *rest_len = len - (size_t)(sp - s) - 1;
    return true;
}

static void on_user_event(void *ctx, const char *user, const void *data, size_t len)
{
    struct hub_broker *hb = ctx;
    if (len < 2)
        return;
    const char *s = data;
    char word[CHAT_ROOM_MAX], name[CHAT_ROOM_MAX];
    const char *rest;
    size_t rest_len;
    switch (s[0]) {
    case 'r': /* "r <seq> <room>": a read marker */
        if (split(s + 2, len - 2, word, sizeof word, &rest, &rest_len) && rest_len < sizeof name) {
            memcpy(name, rest, rest_len);
            name[rest_len] = '\0';
            hb->hooks.user_read(hb->hooks.hub, user, name, strtoull(word, NULL, 10));
        }
        return;
    case 'l': /* "l <room>": a registered user left a room (rule 67) */
        if (len - 2 < sizeof name) {
            memcpy(name, s + 2, len - 2);
            name[len - 2] = '\0';
            hb->hooks.user_left(hb->hooks.hub, user, name);
        }
        return;
    case 'R': /* "R <created_ms> <name>": an account registered */
        if (strcmp(user, HUB_USER) == 0 &&
            split(s + 2, len - 2, word, sizeof word, &rest, &rest_len) && rest_len < sizeof name) {
            memcpy(name, rest, rest_len);
            name[rest_len] = '\0';
            hb->hooks.registered(hb->hooks.hub, name, strtoll(word, NULL, 10));
        }
        return;
    case 'C': /* "C <room>[ <owner>]": a room made, and its owner when it has one */
        if (strcmp(user, HUB_USER) == 0 && len - 2 < sizeof name) {
            memcpy(name, s + 2, len - 2);
            name[len - 2] = '\0';
            char *sp = strchr(name, ' ');
            if (sp)
                *sp++ = '\0';
            hb->hooks.room_made(hb->hooks.hub, name, sp && *sp ? sp : NULL);
        }
        return;
    case 's': /* "status <0|1> <text>": hub_nodes' */
        if (hb->nodes)
            hub_nodes_on_user_event(hb->nodes, user, data, len);
        return;
    default:
        return;
    }
}

static void on_presence(void *ctx, const char *user, bool online)
{
    struct hub_broker *hb = ctx;
    if (hb->nodes)
        hub_nodes_on_presence(hb->nodes, user, online);
}

static void on_room_member(void *ctx, const char *room, const char *node, const char *user,
                           bool in)
{
    struct hub_broker *hb = ctx;
    if (hb->nodes)
        hub_nodes_on_room_member(hb->nodes, room, node, user, in);
}

/* Logged by the broker; a fill of every followed room follows a return, and hub_nodes syncs
 * this node's members. */
static void on_state(void *ctx, bool up)
{
    struct hub_broker *hb = ctx;
    if (hb->nodes)
        hub_nodes_on_state(hb->nodes, up);
}

/* --- dm rooms followed for their users here --- */

static void peer_add(struct hub_broker *hb, const char *user, const char *peer)
{
    struct dm_peers *p = map_get(&hb->dm_peers, user);
    if (!p) {
        p = xcalloc(1, sizeof *p);
        map_put(&hb->dm_peers, user, p);
    }
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->names[i], peer) == 0)
            return;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->names = xrealloc(p->names, p->cap * sizeof *p->names);
    }
    p->names[p->n++] = xstrdup(peer);
}

static void peers_free(struct dm_peers *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->names[i]);
    free(p->names);
    free(p);
}

/* The seq from which this node delivers the dm room of a and b when it follows it now: the
 * later of the users' starts (what a user's welcome gave, its connections have), else heard - 1
 * (nothing known: from the event heard on). Never below what the hub delivered. */
static uint64_t dm_from(struct hub_broker *hb, const char *room, const char *a, const char *b,
                        uint64_t heard)
{
    uint64_t from = heard - 1, start = 0;
    bool known = false;
    const char *users[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct map *starts = map_get(&hb->dm_starts, users[i]);
        if (!starts)
            continue;
        uintptr_t v = (uintptr_t)map_get(starts, room);
        uint64_t s = v ? v - 1 : 0; /* a room not in its welcome is newer than it: from 0 */
        if (!known || s > start)
            start = s;
        known = true;
    }
    if (known && start < from)
        from = start;
    uint64_t latest = hb->hooks.latest(hb->hooks.hub, room);
    return latest > from ? latest : from;
}

/* Follows the dm room of a and b for them (once), from newest on. */
static void dm_follow(struct hub_broker *hb, const char *room, const char *a, const char *b,
                      uint64_t newest)
{
    if (map_get(&hb->dm_rooms, room))
        return;
    map_put(&hb->dm_rooms, room, (void *)1);
    peer_add(hb, a, b);
    peer_add(hb, b, a);
    broker_follow(hb->broker, room, newest);
}

/*
 * The broker heard a dm room's event (or hint) at seq that this node does not follow: followed
 * when one of its users is here, from seq on (what came before is the user's history, read by
 * its client; one the hub delivered already stays delivered). From then on its order fills any
 * gap from the store, as a room's.
 */
static void on_dm_follow(void *ctx, const char *room, uint64_t seq)
{
    struct hub_broker *hb = ctx;
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (!text_parse_dm_room(room, strlen(room), a, b) ||
        (!hb->hooks.user_here(hb->hooks.hub, a) && !hb->hooks.user_here(hb->hooks.hub, b)))
        return;
    dm_follow(hb, room, a, b, dm_from(hb, room, a, b, seq));
}

static void starts_free(struct map *starts)
{
    map_free(starts);
    free(starts);
}

void hub_broker_user_dms(struct hub_broker *hb, const char *user_lc, const struct chat_op *op)
{
    if (hb->alone)
        return;
    struct map *starts = xcalloc(1, sizeof *starts);
    map_init(starts, true);
    for (size_t i = 0; i < op->n_rooms; i++)
        map_put(starts, op->rooms[i].name, (void *)(uintptr_t)(op->rooms[i].seq + 1));
    struct map *old = map_put(&hb->dm_starts, user_lc, starts);
    if (old)
        starts_free(old);
}

/* The user's channel is subscribed: what was published on it before, since its welcome was
 * read, is looked for in the store (CHAT_DM_SEQS, answered in hub_broker_dm_seqs), at the next
 * turn with every other user made ready meanwhile (a reconnect makes all of them ready). */
static void on_user_ready(void *ctx, const char *user)
{
    struct hub_broker *hb = ctx;
    if (!map_get(&hb->dm_starts, user))
        return; /* gone: nothing to start from */
    if (hb->n_ready == hb->cap_ready) {
        hb->cap_ready = hb->cap_ready ? hb->cap_ready * 2 : 8;
        hb->ready = xrealloc(hb->ready, hb->cap_ready * sizeof *hb->ready);
    }
    snprintf(hb->ready[hb->n_ready++], CHAT_ROOM_MAX, "%s", user);
    if (!timer_active(&hb->ready_timer))
        timer_start(hb->loop, &hb->ready_timer, loop_now(hb->loop));
}

/* One CHAT_DM_SEQS for the users made ready since the last: their names in gone_rooms. */
static void on_ready_timer(struct timer *t)
{
    struct hub_broker *hb =
        (struct hub_broker *)((char *)t - offsetof(struct hub_broker, ready_timer));
    struct chat_op *op = chat_op_new(CHAT_DM_SEQS, 0, 0);
    op->gone_rooms = hb->ready;
    op->gone_rooms_n = hb->n_ready;
    hb->ready = NULL;
    hb->n_ready = hb->cap_ready = 0;
    chat_to_store(op);
}

void hub_broker_dm_seqs(struct hub_broker *hb, struct chat_op *op)
{
    for (size_t i = 0; !op->err && i < op->n_rooms; i++) {
        const struct chat_room_info *r = &op->rooms[i];
        char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
        if (map_get(&hb->dm_rooms, r->name) || !text_parse_dm_room(r->name, strlen(r->name), a, b))
            continue;
        if (!map_get(&hb->dm_starts, a) && !map_get(&hb->dm_starts, b))
            continue; /* neither of its users is here any more */
        /* r->seq + 1 as if heard: from the users' starts when they are older. */
        uint64_t from = dm_from(hb, r->name, a, b, r->seq + 1);
        if (r->seq > from) /* stored since the welcome, not heard: followed, so filled */
            dm_follow(hb, r->name, a, b, from);
    }
    chat_op_free(op);
}

void hub_broker_dm_caught_up(struct hub_broker *hb, const char *room)
{
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (hb->alone || !text_parse_dm_room(room, strlen(room), a, b))
        return;
    dm_follow(hb, room, a, b, hb->hooks.latest(hb->hooks.hub, room));
}

void hub_broker_user_gone(struct hub_broker *hb, const char *user_lc)
{
    struct map *starts = map_del(&hb->dm_starts, user_lc);
    if (starts)
        starts_free(starts);
    struct dm_peers *p = map_del(&hb->dm_peers, user_lc);
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        const char *peer = p->names[i];
        if (strcmp(peer, user_lc) != 0 && hb->hooks.user_here(hb->hooks.hub, peer)) {
            peer_add(hb, peer, user_lc); /* still followed for peer: its list keeps the room */
            continue;
        }
        char room[TEXT_DM_ROOM_MAX + 1];
        text_dm_room(user_lc, peer, room);
        if (map_del(&hb->dm_rooms, room))
            broker_unfollow(hb->broker, room);
        struct dm_peers *q = map_get(&hb->dm_peers, peer);
        for (size_t j = 0; q && j < q->n; j++)
            if (strcmp(q->names[j], user_lc) == 0) {
                free(q->names[j]);
                q->names[j] = q->names[--q->n];
                break;
            }
    }
    peers_free(p);
}

struct hub_broker *hub_broker_new(struct loop *l, const struct config *cfg,
                                  const struct hub_broker_hooks *hooks)
{
    struct hub_broker *hb = xcalloc(1, sizeof *hb);
    hb->hooks = *hooks;
    hb->cfg = cfg;
    hb->loop = l;
    timer_init(&hb->ready_timer, on_ready_timer);
    map_init(&hb->dm_rooms, true);
    map_init(&hb->dm_peers, true);
    map_init(&hb->dm_starts, true);
    struct broker_user u = {
        .ctx = hb,
        .room_event = on_room_event,
        .release = on_release,
        .fill = on_fill,
        .user_event = on_user_event,
        .presence = on_presence,
        .state = on_state,
        .room_member = on_room_member,
        .dm_follow = on_dm_follow,
        .user_ready = on_user_ready,
    };
    hb->broker = broker_new(l, cfg, &u);
    if (!hb->broker) {
        map_free(&hb->dm_rooms);
        map_free(&hb->dm_peers);
        map_free(&hb->dm_starts);
        free(hb);
        return NULL;
    }
    struct broker_status st;
    broker_status(hb->broker, &st);
    hb->alone = strcmp(st.kind, "local") == 0;
    atomic_store_explicit(&the_broker, hb, memory_order_release);
    return hb;
}

void hub_broker_free(struct hub_broker *hb)
{
    if (!hb)
        return;
    atomic_store_explicit(&the_broker, NULL, memory_order_release);
    broker_free(hb->broker);
    timer_stop(hb->loop, &hb->ready_timer);
    free(hb->ready);
    map_free(&hb->dm_rooms);
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&hb->dm_peers, &i, &key, &v);)
        peers_free(v);
    map_free(&hb->dm_peers);
    for (size_t i = 0; map_next(&hb->dm_starts, &i, &key, &v);)
        starts_free(v);
    map_free(&hb->dm_starts);
    free(hb);
}

void hub_broker_goodbye(struct hub_broker *hb, void (*done)(void *arg), void *arg)
{
    broker_goodbye(hb->broker, done, arg);
}

struct broker *hub_broker_broker(struct hub_broker *hb)
{
    return hb->broker;
}

void hub_broker_set_nodes(struct hub_broker *hb, struct hub_nodes *nodes)
{
    hb->nodes = nodes;
}

void hub_broker_follow(struct hub_broker *hb, const char *room, uint64_t newest)
{
    broker_follow(hb->broker, room, newest);
}

void hub_broker_unfollow(struct hub_broker *hb, const char *room)
{
    broker_unfollow(hb->broker, room);
}

void hub_broker_stored(struct hub_broker *hb, struct chat_op *op, const char *peer)
{
    struct store_msg m = chat_op_event(op);
    m.target_from = op->target_from[0] ? op->target_from : NULL;
    struct hub_event *ev = xcalloc(1, sizeof *ev);
    memcpy(ev->room, op->room, sizeof ev->room);
    ev->live = events_event(&m, peer, EVENTS_LIVE);
    ev->ring =
        op->kind == CHAT_EDIT ? events_event(&m, peer, EVENTS_REPLAY) : msg_rec_ref(&ev->live);
    if (op->room_is_dm) {
        memcpy(ev->user_a, op->user_lc, sizeof ev->user_a);
        memcpy(ev->user_b, op->to_lc, sizeof ev->user_b);
    }
    ev->op = op;
    if (hb->alone) { /* the bytes would go nowhere: no encode, no copy per event */
        broker_publish_room(hb->broker, op->room, op->seq, ev, NULL, 0);
        return;
    }
    if (op->room_is_dm && (hb->hooks.user_here(hb->hooks.hub, ev->user_a) ||
                           hb->hooks.user_here(hb->hooks.hub, ev->user_b))) {
        /* Followed from here on while a user of it is here (the one who sent it, at least): the
         * other user's dms reach this node in order too. */
        dm_follow(hb, op->room, ev->user_a, ev->user_b,
                  dm_from(hb, op->room, ev->user_a, ev->user_b, op->seq));
    }
    struct wire w = {0};
    wire_event(&w, &m, peer);
    broker_publish_room(hb->broker, op->room, op->seq, ev, w.p, w.n);
    free(w.p);
}

void hub_broker_acked_again(struct hub_broker *hb, const struct chat_op *op)
{
    if (op->has_cid && op->seq > 0 && !op->err)
        broker_room_stored(hb->broker, op->room, op->seq);
}

void hub_broker_filled(struct hub_broker *hb, struct chat_op *op)
{
    if (op->err) {
        broker_fill_failed(hb->broker, op->room);
        chat_op_free(op);
        return;
    }
    uint64_t last = 0;
    for (size_t i = 0; i < op->n_msgs; i++) {
        /* Each read event in the wire form (hub_broker_wire), decoded as another node's is. */
        struct msg_rec *w = &op->msgs[i];
        struct hub_event *ev = xmalloc(sizeof *ev);
        bool ok = hub_broker_unwire(w->ws->data, w->ws->len, ev);
        msg_rec_release(w);
        if (!ok) {
            free(ev);
            continue;
        }
        hub_broker_dm_users(ev);
        last = ev->live.seq;
        broker_fill_event(hb->broker, op->room, last, ev);
    }
    op->n_msgs = 0;
    if (op->more && (op->seq == BROKER_NEWEST || op->join_after < op->seq)) {
        chat_to_store(op); /* the next page, from op->join_after */
        return;
    }
    uint64_t upto = op->seq != BROKER_NEWEST ? op->seq : last ? last : op->since - 1;
    broker_fill_done(hb->broker, op->room, upto);
    chat_op_free(op);
}

static void publish_text(struct hub_broker *hb, const char *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void publish_text(struct hub_broker *hb, const char *user, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof buf)
        broker_publish_user(hb->broker, user, buf, (size_t)n);
}

void hub_broker_read(struct hub_broker *hb, const char *user_lc, const char *room, uint64_t seq)
{
    publish_text(hb, user_lc, "r %" PRIu64 " %s", seq, room);
}

void hub_broker_left(struct hub_broker *hb, const char *user_lc, const char *room)
{
    publish_text(hb, user_lc, "l %s", room);
}

void hub_broker_registered(struct hub_broker *hb, const char *name, int64_t created_ms)
{
    publish_text(hb, HUB_USER, "R %" PRId64 " %s", created_ms, name);
}

void hub_broker_room_made(struct hub_broker *hb, const char *room, const char *owner_lc)
{
    if (owner_lc && *owner_lc)
        publish_text(hb, HUB_USER, "C %s %s", room, owner_lc);
    else
        publish_text(hb, HUB_USER, "C %s", room);
}

/* --- /healthz and /metrics --- */

/* Copies s into out as the inside of a JSON string: what would need escaping becomes '_'. */
static void json_plain(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        out[n++] = (unsigned char)*s < 0x20 || *s == '"' || *s == '\\' ? '_' : *s;
    out[n] = '\0';
}

void hub_broker_health(char *out, size_t cap)
{
    struct hub_broker *hb = atomic_load_explicit(&the_broker, memory_order_acquire);
    if (!hb)
        return;
    struct broker_status st;
    broker_status(hb->broker, &st);
    char node[sizeof hb->cfg->node];
    json_plain(node, sizeof node, hb->cfg->node);
    snprintf(out, cap,
             ",\"node\":\"%s\",\"store\":{\"backend\":\"%s\",\"ok\":%s},"
             "\"broker\":{\"kind\":\"%s\",\"id\":\"%s\",\"up\":%s,\"since\":%" PRIu64
             ",\"reconnects\":%" PRIu64 "}",
             node, hb->cfg->store_url ? "postgres" : "sqlite",
             metrics_store_problem() ? "false" : "true", st.kind, st.id, st.up ? "true" : "false",
             st.since_ms, st.reconnects);
}

void hub_broker_metrics(struct metrics_out *o)
{
    struct hub_broker *hb = atomic_load_explicit(&the_broker, memory_order_acquire);
    if (!hb)
        return;
    struct broker_status st;
    broker_status(hb->broker, &st);
    metrics_put(
        o,
        "# HELP parley_broker_up 1 while the broker reaches the other nodes (always 1 "
        "when alone).\n# TYPE parley_broker_up gauge\nparley_broker_up{kind=\"%s\"} %d\n"
        "# HELP parley_broker_events_total Room and user events sent to and received from "
        "other nodes.\n# TYPE parley_broker_events_total counter\n"
        "parley_broker_events_total{direction=\"published\"} %" PRIu64 "\n"
        "parley_broker_events_total{direction=\"received\"} %" PRIu64 "\n"
        "# HELP parley_broker_fills_total Gaps in a room's events filled from the store.\n"
        "# TYPE parley_broker_fills_total counter\nparley_broker_fills_total %" PRIu64 "\n"
        "# HELP parley_broker_reconnects_total Times the broker came back after being "
        "down.\n# TYPE parley_broker_reconnects_total counter\n"
        "parley_broker_reconnects_total %" PRIu64 "\n"
        "# HELP parley_broker_reaped_total Dead nodes whose leases this node cleared.\n"
        "# TYPE parley_broker_reaped_total counter\nparley_broker_reaped_total %" PRIu64 "\n",
        st.kind, st.up ? 1 : 0, st.published, st.received, st.fills, st.reconnects, st.reaped);
}
