/*
 * broker_redis: the broker between nodes on Redis (hiredis's async client on the hub's loop).
 *
 * DESIGN: two connections, one for commands (scripts, PUBLISH) and one in subscribe mode (a
 * channel per followed room, and one for user events and presence). Either one failing takes
 * both down (from a timer, never inside a hiredis callback); they come back together after a
 * pause that doubles from 100 ms up to reconnect_max. The broker is up once both are connected,
 * this node's lease is registered and the users channel is subscribed; coming up it syncs this
 * node's users and guests into Redis (what changed while it was down), asks a fill of every
 * followed room (room_order_lost: what other nodes sent meanwhile is read from the store) and
 * reads the other nodes' presence. Multi-key work is done in Lua scripts, atomic on the Redis
 * side and timed by Redis's own clock, so nodes' clocks never need to agree.
 *
 * Keys (prefix parley:, in the --broker DB): nodes (sorted set: node id -> lease expiry, ms),
 * node:<id> (hash: name), node:<id>:users, node:<id>:guests, node:<id>:rooms (sets: what that
 * node holds, so a reaper can undo it), user:<name> (set of the node ids where the user is
 * online), guest:<name> (the guest session holding that name), guest:<name>:nodes (the nodes
 * where it does) and guest:<name>:shown ("<session> <name as shown>"), count:<room> (hash: node
 * id -> members there), rm:<room>:<id> (the users in the room on that node; node:<id>:mrooms
 * lists those rooms). Channels (not per DB in Redis, so
 * the DB is in the name): parley:<db>:r:<room> carries "<seq> <node id>\n<event bytes>" and
 * "m <node id> +|- <user>\n" (a member came or went there); parley:<db>:users carries
 * "u <node id> <user>\n<bytes>" (a user event), "p <node id> <user>\n" (online),
 * "o <node id> <user>\n" (offline) and "x <node id> *\n" (that node died: every node reads its
 * followed rooms' newest from the store, for what it committed and never published; "g": it
 * stopped cleanly and undid itself, broker_goodbye, read the same way). A dm
 * room's events (and hints) go to its two users' channels instead, parley:<db>:u:<user>, as
 * "<seq> <node id>[!] <room>\n<event bytes>": a node subscribes the channel of each user with a
 * connection on it, so it hears the dms of its own users only, and follows (orders, fills) a dm
 * room from the first of its events it hears (the hub says from which seq); once a user's channel
 * is subscribed it tells the hub (user_ready), which looks in the store for what was published
 * before.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "alloc.h"
#include "broker_impl.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "redis_loop.h"
#include "redis_scripts.h"
#include "room_order.h"
#include "text.h"

#define KEYS "parley:"
#define BACKOFF_FIRST_MS 100

struct broker_redis;

/* A followed room. */
struct rroom {
    struct broker_redis *r;
    char *name;
    unsigned follows;
    unsigned busy;   /* callbacks under way: freed only when none is */
    bool subscribed; /* the channel's subscription is confirmed */
    bool waiting;    /* in the list of rooms with a fill due */
    struct rroom *wait_next, *wait_prev;
    struct room_order order;
    uint32_t local;    /* members here, as last told */
    uint64_t others;   /* members on the other live nodes, as last read */
    uint64_t snapshot; /* the id of its newest member snapshot not answered yet, or 0 */
    struct map *moved; /* while one is: "<node> <user>" -> MOVED_IN or MOVED_OUT, the last member
                          message of each pair heard since it was asked */
};

/* What a pair's last member message said, in rroom.moved. */
#define MOVED_IN ((void *)1)
#define MOVED_OUT ((void *)2)

/* An event waiting in a room_order: the hub's object, or another node's bytes. */
struct held {
    void *obj;
    size_t len;
    char data[];
};

struct broker_redis {
    struct broker base;
    struct loop *loop;
    char host[256];
    int port;
    uint32_t db;
    char id[17]; /* this process's node id: random, so a restarted node is a new one */
    char node[64];
    char chan_users[48];
    char chan_room[48]; /* the prefix of rooms' channels */
    size_t chan_room_len;
    char chan_user[48]; /* the prefix of users' channels (a dm room's events) */
    size_t chan_user_len;
    struct broker_settings s;

    redisAsyncContext *cmd, *sub;
    struct redis_loop cmd_loop, sub_loop;
    bool cmd_connected, sub_connected, registered, users_subscribed;
    bool up;
    bool tearing; /* freeing the contexts: their callbacks are ignored */
    bool closing; /* broker_free */
    bool leaving; /* broker_goodbye: no script but its own, no lease, no reconnect */
    bool lease_pending;
    uint64_t backoff_ms;
    uint64_t snapshots_asked; /* room member snapshots asked, for their ids */
    struct timer reconnect_timer, lease_timer, order_timer, down_timer;
    char down_reason[128];

    struct map rooms;  /* name -> struct rroom (keys borrowed from it) */
    struct map users;  /* users with a connection here -> (void *)1 */
    struct map guests; /* guests' names this node holds -> struct held_guest */
    struct rroom *waiting;
};

/* A guest's name this node holds: what a sync tells Redis again. */
struct held_guest {
    uint64_t session;
    char shown[BROKER_NAME_MAX + 1]; /* "" for a registration's claim */
};

#define CONTAINER(p, type, field) ((type *)(void *)((char *)(p)-offsetof(type, field)))

static void go_down(struct broker_redis *r, const char *reason);
static void room_watch(struct rroom *rm);

/* Commands. */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A command on its way, timed for /metrics: the caller's callback and its argument. */
struct timed {
    struct broker_redis *r;
    redisCallbackFn *cb;
    void *priv;
    uint64_t sent_us;
    enum metric_engine_op op;
};

/* Every command's reply comes here first: its time and, if it failed, an error, go to /metrics
 * (a reply the teardown of the connections answers is neither). */
static void on_timed(redisAsyncContext *ac, void *reply_p, void *priv)
{
    struct timed *t = priv;
    const redisReply *reply = reply_p;
    if (reply)
        metrics_engine_time(ENGINE_REDIS, t->op, mono_us() - t->sent_us);
    if ((reply && reply->type == REDIS_REPLY_ERROR) ||
        (!reply && !t->r->tearing && !t->r->closing))
        metrics_engine_error(ENGINE_REDIS);
    if (t->cb)
        t->cb(ac, reply_p, t->priv);
    free(t);
}

/* Sends argv on the command connection; while it is down, cb gets no reply at once. */
static void command_as(struct broker_redis *r, enum metric_engine_op op, redisCallbackFn *cb,
                       void *priv, int argc, const char **argv, const size_t *lens)
{
    struct timed *t = xmalloc(sizeof *t);
    *t = (struct timed){.r = r, .cb = cb, .priv = priv, .sent_us = mono_us(), .op = op};
    /* hiredis queues commands sent while it connects. */
    if (!r->cmd || redisAsyncCommandArgv(r->cmd, on_timed, t, argc, argv, lens) != REDIS_OK) {
        free(t);
        if (cb)
            cb(NULL, NULL, priv); /* answered as by a lost connection */
    }
}

static void command(struct broker_redis *r, redisCallbackFn *cb, void *priv, int argc,
                    const char **argv, const size_t *lens)
{
    bool publish = argc > 0 && strcmp(argv[0], "PUBLISH") == 0;
    command_as(r, publish ? ENGINE_OP_PUBLISH : ENGINE_OP_COMMAND, cb, priv, argc, argv, lens);
}

/* EVAL of script with ARGV = prefix, id, then extra (n of them). */
static void eval(struct broker_redis *r, const char *script, redisCallbackFn *cb, void *priv,
                 const char **extra, const size_t *extra_lens, int n)
{
    if (r->leaving && script != redis_lua_goodbye) {
        if (cb)
            cb(NULL, NULL, priv); /* said goodbye: Redis holds nothing of this node any more */
        return;
    }
    const char *stack_argv[12];
    size_t stack_lens[12];
    const char **argv = stack_argv;
    size_t *lens = stack_lens;
    int argc = 5 + n;
    if (argc > 12) {
        argv = xmalloc((size_t)argc * sizeof *argv);
        lens = xmalloc((size_t)argc * sizeof *lens);
    }
    argv[0] = "EVAL", argv[1] = script, argv[2] = "0", argv[3] = KEYS, argv[4] = r->id;
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < n; i++) {
        argv[5 + i] = extra[i];
        lens[5 + i] = extra_lens ? extra_lens[i] : strlen(extra[i]);
    }
    command_as(r, script == redis_lua_lease ? ENGINE_OP_LEASE : ENGINE_OP_COMMAND, cb, priv, argc,
               argv, lens);
    if (argv != stack_argv) {
        free(argv);
        free(lens);
    }
}

/* Logs an error reply (a script that failed: a bug, or a Redis that refuses scripts). */
static bool reply_ok(const redisReply *reply, const char *what)
{
    if (!reply)
        return false;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("msg=broker_error op=%s error=\"%.*s\"", what, (int)reply->len, reply->str);
        return false;
    }
    return true;
}

/* Rooms and their order. */

static void held_deliver(void *ctx, uint64_t seq, void *ev)
{
    struct rroom *rm = ctx;
    struct broker *b = &rm->r->base;
    struct held *h = ev;
    if (h->obj)
        b->user.room_event(b->user.ctx, rm->name, seq, h->obj, NULL, 0);
    else
        b->user.room_event(b->user.ctx, rm->name, seq, NULL, h->data, h->len);
    free(h);
}

static void held_discard(void *ctx, void *ev)
{
    struct rroom *rm = ctx;
    struct broker *b = &rm->r->base;
    struct held *h = ev;
    if (h->obj)
        b->user.release(b->user.ctx, h->obj);
    free(h);
}

static void held_fill(void *ctx, uint64_t from, uint64_t to)
{
    struct rroom *rm = ctx;
    struct broker *b = &rm->r->base;
    atomic_fetch_add(&b->fills, 1);
    log_debug("msg=broker_fill room=%s from=%" PRIu64 " to=%" PRIu64, rm->name, from, to);
    b->user.fill(b->user.ctx, rm->name, from, to);
}

static const struct room_order_ops held_ops = {held_deliver, held_discard, held_fill};

static struct held *held_new(void *obj, const void *data, size_t len)
{
    struct held *h = xmalloc(sizeof *h + len);
    h->obj = obj;
    h->len = len;
    if (len)
        memcpy(h->data, data, len);
    return h;
}

static void room_moved_free(struct rroom *rm)
{
    if (rm->moved) {
        map_free(rm->moved);
        free(rm->moved);
        rm->moved = NULL;
    }
}

static void room_free(struct rroom *rm)
{
    room_moved_free(rm);
    room_order_free(&rm->order);
    free(rm->name);
    free(rm);
}

/* Pins rm while callbacks run: the hub may unfollow it from inside one. */
static void room_pin(struct rroom *rm)
{
    rm->busy++;
}

static void room_unpin(struct rroom *rm)
{
    if (--rm->busy == 0 && rm->follows == 0)
        room_free(rm);
    else if (rm->follows > 0)
        room_watch(rm);
}

static void wait_remove(struct broker_redis *r, struct rroom *rm)
{
    if (!rm->waiting)
        return;
    if (rm->wait_prev)
        rm->wait_prev->wait_next = rm->wait_next;
    else
        r->waiting = rm->wait_next;
    if (rm->wait_next)
        rm->wait_next->wait_prev = rm->wait_prev;
    rm->waiting = false;
    rm->wait_next = rm->wait_prev = NULL;
}

/* Keeps rm in the waiting list while a fill is due, and the timer at the earliest due. */
static void room_watch(struct rroom *rm)
{
    struct broker_redis *r = rm->r;
    uint64_t due = room_order_due(&rm->order);
    if (due == ROOM_ORDER_NEVER) {
        wait_remove(r, rm);
        return;
    }
    if (!rm->waiting) {
        rm->waiting = true;
        rm->wait_prev = NULL;
        rm->wait_next = r->waiting;
        if (r->waiting)
            r->waiting->wait_prev = rm;
        r->waiting = rm;
    }
    if (!timer_active(&r->order_timer) || due < r->order_timer.due_ms)
        timer_start(r->loop, &r->order_timer, due);
}

static void on_order_timer(struct timer *t)
{
    struct broker_redis *r = CONTAINER(t, struct broker_redis, order_timer);
    uint64_t now = loop_now(r->loop);
    size_t n = 0, cap = 16;
    struct rroom **due = xmalloc(cap * sizeof *due);
    for (struct rroom *rm = r->waiting; rm; rm = rm->wait_next) {
        if (room_order_due(&rm->order) > now)
            continue;
        if (n == cap)
            due = xrealloc(due, (cap *= 2) * sizeof *due);
        room_pin(rm);
        due[n++] = rm;
    }
    for (size_t i = 0; i < n; i++) {
        if (due[i]->follows > 0)
            room_order_run(&due[i]->order, now);
        room_unpin(due[i]);
    }
    free(due);
    uint64_t next = ROOM_ORDER_NEVER;
    for (struct rroom *rm = r->waiting; rm; rm = rm->wait_next) {
        uint64_t d = room_order_due(&rm->order);
        if (d < next)
            next = d;
    }
    if (next != ROOM_ORDER_NEVER)
        timer_start(r->loop, &r->order_timer, next);
}

static void room_offer(struct rroom *rm, uint64_t seq, struct held *h)
{
    room_pin(rm);
    room_order_offer(&rm->order, seq, h, loop_now(rm->r->loop));
    room_unpin(rm);
}

static void room_lost(struct rroom *rm)
{
    room_pin(rm);
    room_order_lost(&rm->order, loop_now(rm->r->loop));
    room_unpin(rm);
}

static void subscribe_room(struct broker_redis *r, struct rroom *rm);
static void each_followed(struct broker_redis *r,
                          void (*fn)(struct broker_redis *, struct rroom *));
static void catch_up(struct broker_redis *r, struct rroom *rm);

/* Subscriptions: confirmations and messages. */

static void on_users_message(struct broker_redis *r, const char *p, size_t len)
{
    /* "<kind> <node id> <user>\n<data>" */
    const char *nl = memchr(p, '\n', len);
    if (!nl || len < 4 || p[1] != ' ')
        return;
    const char *id = p + 2, *sp = memchr(id, ' ', (size_t)(nl - id));
    if (!sp)
        return;
    size_t id_len = (size_t)(sp - id), user_len = (size_t)(nl - sp - 1);
    if (id_len == strlen(r->id) && memcmp(id, r->id, id_len) == 0)
        return; /* about this node's own users: the hub knows already */
    if (user_len == 0 || user_len > BROKER_NAME_MAX)
        return;
    char user[BROKER_NAME_MAX + 1];
    memcpy(user, sp + 1, user_len);
    user[user_len] = '\0';
    struct broker *b = &r->base;
    if (p[0] == 'u') {
        atomic_fetch_add(&b->received, 1);
        b->user.user_event(b->user.ctx, user, nl + 1, len - (size_t)(nl + 1 - p));
    } else if (p[0] == 'p' || p[0] == 'o') {
        b->user.presence(b->user.ctx, user, p[0] == 'p');
    } else if (p[0] == 'x' || p[0] == 'g') {
        /* "x <node id> *": that node died and was reaped; "g": it stopped and said goodbye. An
         * event it committed and never published (killed between its commit and its PUBLISH,
         * or cut off from Redis first) would wait for the room's next event: read every
         * followed room's newest now. */
        log_info("msg=%s id=%.*s", p[0] == 'x' ? "broker_node_dead" : "broker_node_left",
                 (int)id_len, id);
        each_followed(r, catch_up);
    }
}

/* "m <node id> +|- <user>" (without its newline): another node's member came or went. */
static void on_member_message(struct broker_redis *r, struct rroom *rm, const char *p, size_t len)
{
    const char *id = p + 2, *sp = len > 2 ? memchr(id, ' ', len - 2) : NULL;
    if (p[1] != ' ' || !sp || (size_t)(p + len - sp) < 4 || (sp[1] != '+' && sp[1] != '-') ||
        sp[2] != ' ')
        return;
    size_t id_len = (size_t)(sp - id), user_len = (size_t)(p + len - sp - 3);
    if (id_len == strlen(r->id) && memcmp(id, r->id, id_len) == 0)
        return; /* this node's own: the hub knows */
    if (id_len == 0 || id_len >= sizeof r->id || user_len == 0 || user_len > BROKER_NAME_MAX)
        return;
    char node[sizeof r->id], user[BROKER_NAME_MAX + 1];
    memcpy(node, id, id_len);
    node[id_len] = '\0';
    memcpy(user, sp + 3, user_len);
    user[user_len] = '\0';
    if (rm->moved) { /* a snapshot is on its way: it may have been read before this */
        char key[sizeof node + BROKER_NAME_MAX + 1];
        snprintf(key, sizeof key, "%s %s", node, user);
        map_put(rm->moved, key, sp[1] == '+' ? MOVED_IN : MOVED_OUT);
    }
    if (r->base.user.room_member)
        r->base.user.room_member(r->base.user.ctx, rm->name, node, user, sp[1] == '+');
}

static void on_room_message(struct broker_redis *r, struct rroom *rm, const char *p, size_t len)
{
    /* "<seq> <node id>\n<data>", or a member "m <node id> +|- <user>\n" */
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return;
    if (p[0] == 'm') {
        on_member_message(r, rm, p, (size_t)(nl - p));
        return;
    }
    char *end;
    uint64_t seq = strtoull(p, &end, 10);
    if (end == p || *end != ' ' || seq == 0)
        return;
    size_t id_len = (size_t)(nl - end - 1);
    bool hint = id_len > 0 && end[id_len] == '!';
    if (hint)
        id_len--;
    if (id_len == strlen(r->id) && memcmp(end + 1, r->id, id_len) == 0)
        return; /* ours: offered when it was published */
    if (hint) {
        /* A node came back: seq exists, though its event may never have been published. */
        room_pin(rm);
        room_order_seen(&rm->order, seq, loop_now(r->loop));
        room_unpin(rm);
        return;
    }
    atomic_fetch_add(&r->base.received, 1);
    room_offer(rm, seq, held_new(NULL, nl + 1, len - (size_t)(nl + 1 - p)));
}

/* Whether room is a dm room, with its two users. */
static bool dm_users(const char *room, char a[TEXT_NAME_MAX + 1], char b[TEXT_NAME_MAX + 1])
{
    return strncmp(room, "dm:", 3) == 0 && text_parse_dm_room(room, strlen(room), a, b);
}

/* "<seq> <node id>[!] <room>\n<data>" on a user's channel: a dm room's event (or hint). A dm
 * room this node does not follow yet is offered to the hub, which follows it (dm_follow) when a
 * user of it is here; from then on its order fills any gap. */
static void on_dm_message(struct broker_redis *r, const char *p, size_t len)
{
    const char *nl = memchr(p, '\n', len);
    char *end;
    uint64_t seq = nl ? strtoull(p, &end, 10) : 0;
    if (!nl || seq == 0 || end == p || *end != ' ')
        return;
    const char *id = end + 1, *sp = memchr(id, ' ', (size_t)(nl - id));
    if (!sp)
        return;
    size_t id_len = (size_t)(sp - id), room_len = (size_t)(nl - sp - 1);
    bool hint = id_len > 0 && id[id_len - 1] == '!';
    if (hint)
        id_len--;
    if (id_len == strlen(r->id) && memcmp(id, r->id, id_len) == 0)
        return; /* ours: offered when it was published */
    char room[BROKER_NAME_MAX + 1], a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (room_len == 0 || room_len > BROKER_NAME_MAX)
        return;
    memcpy(room, sp + 1, room_len);
    room[room_len] = '\0';
    if (!dm_users(room, a, b))
        return;
    struct broker *base = &r->base;
    struct rroom *rm = map_get(&r->rooms, room);
    if (!rm && base->user.dm_follow) {
        base->user.dm_follow(base->user.ctx, room, seq);
        rm = map_get(&r->rooms, room);
    }
    if (!rm)
        return;
    if (hint) {
        room_pin(rm);
        room_order_seen(&rm->order, seq, loop_now(r->loop));
        room_unpin(rm);
        return;
    }
    atomic_fetch_add(&base->received, 1);
    room_offer(rm, seq, held_new(NULL, nl + 1, len - (size_t)(nl + 1 - p)));
}

static void maybe_up(struct broker_redis *r);
/* A member snapshot asked: its id, and the room's name. */
struct snapshot_ask {
    uint64_t id;
    char room[];
};

/* Tells the hub again, within a snapshot, the last member message of each pair heard since the
 * snapshot was asked (those that came in first, then those that went, so no user's count drops
 * to zero on the way). */
static void replay_moved(const struct broker_user *u, const char *room, const struct map *moved,
                         void *which)
{
    const char *key;
    void *v;
    for (size_t i = 0; map_next(moved, &i, &key, &v);) {
        char pair[sizeof((struct broker_redis *)0)->id + BROKER_NAME_MAX + 1];
        const char *sp = strchr(key, ' ');
        if (v != which || !sp || strlen(key) >= sizeof pair)
            continue;
        memcpy(pair, key, strlen(key) + 1);
        pair[sp - key] = '\0';
        u->room_member(u->ctx, room, pair, pair + (sp - key) + 1, which == MOVED_IN);
    }
}

static void on_room_snapshot(redisAsyncContext *ac, void *reply_p, void *priv)
{
    struct broker_redis *r = ac ? ac->data : NULL;
    struct snapshot_ask *ask = priv;
    redisReply *reply = reply_p;
    struct rroom *rm = r && !r->tearing && !r->closing ? map_get(&r->rooms, ask->room) : NULL;
    if (rm && reply_ok(reply, "room_snapshot") && reply->type == REDIS_REPLY_ARRAY &&
        r->base.user.room_member) {
        const struct broker_user *u = &r->base.user;
        room_pin(rm);
        u->room_member(u->ctx, ask->room, NULL, NULL, false);
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *n = reply->element[i], *m = reply->element[i + 1];
            if (n->type == REDIS_REPLY_STRING && m->type == REDIS_REPLY_STRING && m->len > 0 &&
                m->len <= BROKER_NAME_MAX && n->len < sizeof r->id)
                u->room_member(u->ctx, ask->room, n->str, m->str, true);
        }
        /* The channel's messages between the ask and this answer came in before it, though
         * Redis may have published some after it read the sets: each pair is as the later of
         * the two says. */
        if (rm->moved) {
            replay_moved(u, ask->room, rm->moved, MOVED_IN);
            replay_moved(u, ask->room, rm->moved, MOVED_OUT);
        }
        u->room_member(u->ctx, ask->room, NULL, NULL, true);
        room_unpin(rm);
        rm = map_get(&r->rooms, ask->room); /* unfollowed meanwhile: gone */
    }
    if (rm && rm->snapshot == ask->id) { /* no newer one asked: nothing more to replay */
        rm->snapshot = 0;
        room_moved_free(rm);
    }
    free(ask);
}

/* The room's members on the other nodes, read once its channel is subscribed: what was there
 * before; what came since arrives on the channel, and is kept (rm->moved) until the answer. */
static void send_room_snapshot(struct broker_redis *r, struct rroom *rm)
{
    size_t len = strlen(rm->name);
    struct snapshot_ask *ask = xmalloc(sizeof *ask + len + 1);
    ask->id = ++r->snapshots_asked;
    memcpy(ask->room, rm->name, len + 1);
    rm->snapshot = ask->id;
    if (!rm->moved) {
        rm->moved = xmalloc(sizeof *rm->moved);
        map_init(rm->moved, true);
    }
    const char *extra[1] = {rm->name};
    eval(r, redis_lua_room_snapshot, on_room_snapshot, ask, extra, NULL, 1);
}

/* A user's channel is subscribed: the hub may catch up what was published on it before. */
static void user_subscribed(struct broker_redis *r, const char *user, size_t len)
{
    char name[BROKER_NAME_MAX + 1];
    if (len > BROKER_NAME_MAX || !r->base.user.user_ready)
        return;
    memcpy(name, user, len);
    name[len] = '\0';
    if (map_get(&r->users, name)) /* not gone meanwhile */
        r->base.user.user_ready(r->base.user.ctx, name);
}

static void on_sub(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac, (void)priv;
    struct broker_redis *r = ac ? ac->data : NULL;
    redisReply *reply = reply_p;
    if (!r || r->tearing || r->closing || !reply || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    const redisReply *chan = reply->element[1];
    bool users =
        chan->len == strlen(r->chan_users) && memcmp(chan->str, r->chan_users, chan->len) == 0;
    bool user_chan = !users && chan->len > r->chan_user_len &&
                     memcmp(chan->str, r->chan_user, r->chan_user_len) == 0;
    struct rroom *rm = NULL;
    if (!users && !user_chan && chan->len > r->chan_room_len &&
        chan->len - r->chan_room_len <= BROKER_NAME_MAX &&
        memcmp(chan->str, r->chan_room, r->chan_room_len) == 0) {
        char name[BROKER_NAME_MAX + 1];
        memcpy(name, chan->str + r->chan_room_len, chan->len - r->chan_room_len);
        name[chan->len - r->chan_room_len] = '\0';
        rm = map_get(&r->rooms, name);
    }
    if (strcmp(kind, "subscribe") == 0) {
        if (users) {
            r->users_subscribed = true;
            maybe_up(r);
        } else if (user_chan) {
            user_subscribed(r, chan->str + r->chan_user_len, chan->len - r->chan_user_len);
        } else if (rm && !rm->subscribed) {
            rm->subscribed = true;
            if (r->up)
                room_lost(rm); /* catch up from the store from here on */
            send_room_snapshot(r, rm);
        }
    } else if (strcmp(kind, "unsubscribe") == 0) {
        if (rm) /* followed again meanwhile: its new subscription's confirmation catches up */
            rm->subscribed = false;
    } else if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        if (users)
            on_users_message(r, reply->element[2]->str, reply->element[2]->len);
        else if (user_chan)
            on_dm_message(r, reply->element[2]->str, reply->element[2]->len);
        else if (rm)
            on_room_message(r, rm, reply->element[2]->str, reply->element[2]->len);
    }
}

static void subscribe_channel(struct broker_redis *r, const char *verb, const char *chan,
                              size_t len)
{
    if (!r->sub)
        return;
    const char *argv[2] = {verb, chan};
    size_t lens[2] = {strlen(verb), len};
    redisAsyncCommandArgv(r->sub, on_sub, NULL, 2, argv, lens);
}

static size_t room_channel(const struct broker_redis *r, const char *room, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", r->chan_room, room);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static void subscribe_room(struct broker_redis *r, struct rroom *rm)
{
    char chan[sizeof r->chan_room + BROKER_NAME_MAX + 1];
    size_t n = room_channel(r, rm->name, chan, sizeof chan);
    if (n)
        subscribe_channel(r, "SUBSCRIBE", chan, n);
}

static size_t user_channel(const struct broker_redis *r, const char *user, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", r->chan_user, user);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static void subscribe_user(struct broker_redis *r, const char *verb, const char *user)
{
    char chan[sizeof r->chan_user + BROKER_NAME_MAX + 1];
    size_t n = user_channel(r, user, chan, sizeof chan);
    if (n)
        subscribe_channel(r, verb, chan, n);
}

static void publish(struct broker_redis *r, const char *chan, size_t chan_len, const char *head,
                    size_t head_len, const void *data, size_t len)
{
    char *payload = xmalloc(head_len + len);
    memcpy(payload, head, head_len);
    if (len)
        memcpy(payload + head_len, data, len);
    const char *argv[3] = {"PUBLISH", chan, payload};
    size_t lens[3] = {7, chan_len, head_len + len};
    command(r, NULL, NULL, 3, argv, lens);
    free(payload);
}

/* A room's event (data) or hint (hint, no data): on the room's channel, or a dm room's on its
 * two users' channels. */
static void publish_event(struct broker_redis *r, const char *room, uint64_t seq, bool hint,
                          const void *data, size_t len)
{
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    char chan[sizeof r->chan_room + BROKER_NAME_MAX + 1], head[48 + BROKER_NAME_MAX];
    if (!dm_users(room, a, b)) {
        size_t chan_len = room_channel(r, room, chan, sizeof chan);
        int hn = snprintf(head, sizeof head, "%" PRIu64 " %s%s\n", seq, r->id, hint ? "!" : "");
        if (chan_len)
            publish(r, chan, chan_len, head, (size_t)hn, data, len);
        return;
    }
    int hn =
        snprintf(head, sizeof head, "%" PRIu64 " %s%s %s\n", seq, r->id, hint ? "!" : "", room);
    const char *users[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        size_t chan_len = user_channel(r, users[i], chan, sizeof chan);
        if (chan_len && (i == 0 || strcmp(a, b) != 0))
            publish(r, chan, chan_len, head, (size_t)hn, data, len);
    }
}

/* Registration, sync, presence snapshot. */

static void send_counts(struct broker_redis *r);
static void send_sync(struct broker_redis *r);

static void on_snapshot(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac, (void)priv;
    struct broker_redis *r = priv;
    redisReply *reply = reply_p;
    if (r->tearing || r->closing || !reply_ok(reply, "snapshot") ||
        reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *u = reply->element[i];
        if (u->type == REDIS_REPLY_STRING && u->len > 0 && u->len <= BROKER_NAME_MAX)
            r->base.user.presence(r->base.user.ctx, u->str, true);
    }
}

/*
 * Tells the other nodes the newest seq this node knows of a room: what it committed while cut
 * off was never published, and a node that lost nothing itself would otherwise not look for it
 * until the room's next event. "<seq> <node id>!\n".
 */
static void publish_hint(struct broker_redis *r, const struct rroom *rm)
{
    uint64_t newest = room_order_known(&rm->order);
    if (newest > 0)
        publish_event(r, rm->name, newest, true, NULL, 0);
}

/* Calls fn for every followed room (each pinned: fn may call back into the hub). */
static void each_followed(struct broker_redis *r,
                          void (*fn)(struct broker_redis *, struct rroom *))
{
    size_t n = 0;
    struct rroom **followed = xmalloc((r->rooms.count + 1) * sizeof *followed);
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&r->rooms, &i, &key, &v);) {
        room_pin(v);
        followed[n++] = v;
    }
    for (size_t i = 0; i < n; i++) {
        if (followed[i]->follows > 0)
            fn(r, followed[i]);
        room_unpin(followed[i]);
    }
    free(followed);
}

/* Reads from the store what the other nodes stored after rm's newest delivered here; a room
 * whose subscription is not confirmed yet is read at its confirmation. */
static void catch_up(struct broker_redis *r, struct rroom *rm)
{
    (void)r;
    if (rm->subscribed)
        room_lost(rm);
}

/* Back from Redis lost: catch up, and hint the other nodes (whose own subscriptions never
 * dropped) at what this node committed while cut off. */
static void catch_up_and_hint(struct broker_redis *r, struct rroom *rm)
{
    catch_up(r, rm);
    publish_hint(r, rm);
}

static void maybe_up(struct broker_redis *r)
{
    if (r->up || !r->cmd_connected || !r->sub_connected || !r->registered || !r->users_subscribed)
        return;
    r->up = true;
    r->backoff_ms = BACKOFF_FIRST_MS;
    broker_base_set_up(&r->base, true);
    log_info("msg=broker_up broker=redis://%s:%d/%u node=%s id=%s", r->host, r->port, r->db,
             r->node, r->id);
    r->base.user.state(r->base.user.ctx, true);
    each_followed(r, catch_up_and_hint);
    eval(r, redis_lua_snapshot, on_snapshot, r, NULL, NULL, 0);
}

static void on_lease(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac;
    struct broker_redis *r = priv;
    redisReply *reply = reply_p;
    if (r->tearing || r->closing)
        return;
    r->lease_pending = false;
    if (!reply_ok(reply, "lease") || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        if (reply)
            go_down(r, "lease_refused");
        return;
    }
    long long fresh = reply->element[0]->integer, reaped = reply->element[1]->integer;
    if (reaped > 0) {
        atomic_fetch_add(&r->base.reaped, (uint64_t)reaped);
        log_info("msg=broker_reaped nodes=%lld", reaped);
    }
    if (fresh || !r->registered) {
        /* Redis lost this node (first start, a restart, or reaped while cut off), or it may
         * have missed changes made while down: make it hold exactly what this node holds. */
        send_sync(r);
        send_counts(r);
    }
    r->registered = true;
    maybe_up(r);
}

static void send_lease(struct broker_redis *r)
{
    char lease[24];
    snprintf(lease, sizeof lease, "%" PRIu64, r->s.lease_ms / 2);
    const char *extra[4] = {lease, r->node, r->chan_users, r->chan_room};
    r->lease_pending = true;
    eval(r, redis_lua_lease, on_lease, r, extra, NULL, 4);
}

static void on_reply_checked(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac;
    reply_ok(reply_p, priv);
}

static void send_sync(struct broker_redis *r)
{
    size_t nu = r->users.count, ng = r->guests.count, n = 0;
    const char **extra = xmalloc((nu + 3 * ng + 4) * sizeof *extra);
    char(*sessions)[24] = xmalloc((ng + 1) * sizeof *sessions);
    size_t ns = 0;
    char nus[24], ngs[24];
    snprintf(nus, sizeof nus, "%zu", nu);
    snprintf(ngs, sizeof ngs, "%zu", ng);
    extra[n++] = r->chan_users;
    extra[n++] = nus;
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&r->users, &i, &key, &v);)
        extra[n++] = key;
    extra[n++] = ngs;
    for (size_t i = 0; map_next(&r->guests, &i, &key, &v);) {
        const struct held_guest *g = v;
        extra[n++] = key;
        snprintf(sessions[ns], sizeof sessions[ns], "%" PRIu64, g->session);
        extra[n++] = sessions[ns++];
        extra[n++] = g->shown;
    }
    eval(r, redis_lua_sync, on_reply_checked, (void *)"sync", extra, NULL, (int)n);
    free(extra);
    free(sessions);
    /* Rooms this node left entirely while cut off: their members leave (the followed ones are
     * synced by the hub at state(true)). */
    extra = xmalloc((r->rooms.count + 1) * sizeof *extra);
    n = 0;
    extra[n++] = r->chan_room;
    for (size_t i = 0; map_next(&r->rooms, &i, &key, &v);)
        extra[n++] = key;
    eval(r, redis_lua_rooms_prune, on_reply_checked, (void *)"rooms_prune", extra, NULL, (int)n);
    free(extra);
}

/* Connections. */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct broker_redis *r = ac->data;
    if (r->tearing || r->closing)
        return;
    bool is_cmd = ac == r->cmd;
    if (status != REDIS_OK) {
        /* Said once per outage; the retries that follow only at debug level. */
        if (r->backoff_ms == BACKOFF_FIRST_MS)
            log_warn("msg=broker_connect_failed conn=%s error=\"%s\"", is_cmd ? "cmd" : "sub",
                     ac->errstr);
        else
            log_debug("msg=broker_connect_failed conn=%s error=\"%s\"", is_cmd ? "cmd" : "sub",
                      ac->errstr);
        /* hiredis frees the context after this callback. */
        if (is_cmd)
            r->cmd = NULL;
        else
            r->sub = NULL;
        go_down(r, "connect_failed");
        return;
    }
    if (is_cmd)
        r->cmd_connected = true;
    else
        r->sub_connected = true;
    maybe_up(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct broker_redis *r = ac->data;
    (void)status;
    if (r->tearing || r->closing)
        return;
    /* hiredis frees the context after this callback. */
    if (ac == r->cmd)
        r->cmd = NULL;
    else if (ac == r->sub)
        r->sub = NULL;
    go_down(r, ac->err ? ac->errstr : "disconnected");
}

static redisAsyncContext *open_one(struct broker_redis *r, struct redis_loop *rl)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        log_warn("msg=broker_connect_failed error=\"%s\"", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = r;
    redis_loop_attach(rl, r->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Named, so that an operator (or a test) can tell the nodes' connections apart. */
    char name[48];
    snprintf(name, sizeof name, "parley-%s-%s", r->id, rl == &r->cmd_loop ? "cmd" : "sub");
    const char *set_name[3] = {"CLIENT", "SETNAME", name};
    redisAsyncCommandArgv(ac, on_reply_checked, (void *)"setname", 3, set_name, NULL);
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", r->db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(ac, on_reply_checked, (void *)"select", 2, argv, NULL);
    }
    return ac;
}

static void connect_now(struct broker_redis *r)
{
    r->cmd_connected = r->sub_connected = r->registered = r->users_subscribed = false;
    r->lease_pending = false;
    r->cmd = open_one(r, &r->cmd_loop);
    r->sub = r->cmd ? open_one(r, &r->sub_loop) : NULL;
    if (!r->cmd || !r->sub) {
        go_down(r, "connect_failed");
        return;
    }
    /* hiredis queues these until the connection is made; a connection that is never made
     * leaves the lease unanswered, which the lease timer takes for a failure. */
    send_lease(r);
    const char *key;
    void *v;
    /* Before the users channel, whose confirmation makes the broker up: by then the users'
     * channels carry their dms again. */
    for (size_t i = 0; map_next(&r->users, &i, &key, &v);)
        subscribe_user(r, "SUBSCRIBE", key);
    subscribe_channel(r, "SUBSCRIBE", r->chan_users, strlen(r->chan_users));
    for (size_t i = 0; map_next(&r->rooms, &i, &key, &v);)
        subscribe_room(r, v);
    timer_start(r->loop, &r->lease_timer, loop_now(r->loop) + r->s.lease_ms / 4);
}

/* Frees both contexts: their pending callbacks get NULL replies, which are ignored. */
static void close_contexts(struct broker_redis *r)
{
    r->tearing = true;
    if (r->cmd) {
        redisAsyncContext *ac = r->cmd;
        r->cmd = NULL;
        redisAsyncFree(ac);
    }
    if (r->sub) {
        redisAsyncContext *ac = r->sub;
        r->sub = NULL;
        redisAsyncFree(ac);
    }
    r->tearing = false;
    r->cmd_connected = r->sub_connected = r->registered = r->users_subscribed = false;
    r->lease_pending = false;
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&r->rooms, &i, &key, &v);) {
        struct rroom *rm = v;
        rm->subscribed = false;
        rm->snapshot = 0; /* a new subscription asks a new one */
        room_moved_free(rm);
    }
}

/* Runs outside hiredis's callbacks: tears the connections down, tells the hub, retries later. */
static void on_down_timer(struct timer *t)
{
    struct broker_redis *r = CONTAINER(t, struct broker_redis, down_timer);
    close_contexts(r);
    timer_stop(r->loop, &r->lease_timer);
    if (r->up) {
        r->up = false;
        broker_base_set_up(&r->base, false);
        log_warn("msg=broker_down broker=redis://%s:%d/%u reason=\"%s\"", r->host, r->port, r->db,
                 r->down_reason);
        r->base.user.state(r->base.user.ctx, false);
    }
    if (r->leaving)
        return; /* stopping: a goodbye not answered is left to the lease */
    timer_start(r->loop, &r->reconnect_timer, loop_now(r->loop) + r->backoff_ms);
    r->backoff_ms = r->backoff_ms * 2 > r->s.reconnect_max ? r->s.reconnect_max : r->backoff_ms * 2;
}

static void go_down(struct broker_redis *r, const char *reason)
{
    if (r->closing || timer_active(&r->down_timer) || timer_active(&r->reconnect_timer))
        return;
    snprintf(r->down_reason, sizeof r->down_reason, "%s", reason); /* hiredis frees its text */
    timer_start(r->loop, &r->down_timer, loop_now(r->loop));
}

static void on_reconnect_timer(struct timer *t)
{
    struct broker_redis *r = CONTAINER(t, struct broker_redis, reconnect_timer);
    connect_now(r);
}

static void on_lease_timer(struct timer *t)
{
    struct broker_redis *r = CONTAINER(t, struct broker_redis, lease_timer);
    if (r->lease_pending) {
        /* No answer for a whole period: Redis hangs, or the network dropped without a word. */
        go_down(r, "lease_timeout");
        return;
    }
    if (r->cmd)
        send_lease(r);
    timer_start(r->loop, &r->lease_timer, loop_now(r->loop) + r->s.lease_ms / 4);
}

/* The backend. */

static struct broker_redis *R(struct broker *b)
{
    return (struct broker_redis *)b;
}

static void redis_follow(struct broker *b, const char *room, uint64_t newest)
{
    struct broker_redis *r = R(b);
    struct rroom *rm = map_get(&r->rooms, room);
    if (rm) {
        rm->follows++;
        return;
    }
    if (strlen(room) > BROKER_NAME_MAX)
        return;
    rm = xcalloc(1, sizeof *rm);
    rm->r = r;
    rm->name = xstrdup(room);
    rm->follows = 1;
    room_order_init(&rm->order, &held_ops, rm, newest + 1, r->s.hold_ms, r->s.max_held);
    map_put(&r->rooms, rm->name, rm);
    subscribe_room(r, rm); /* its confirmation asks the catch-up */
}

static void redis_unfollow(struct broker *b, const char *room)
{
    struct broker_redis *r = R(b);
    struct rroom *rm = map_get(&r->rooms, room);
    if (!rm || --rm->follows > 0)
        return;
    map_del(&r->rooms, room);
    wait_remove(r, rm);
    char chan[sizeof r->chan_room + BROKER_NAME_MAX + 1];
    size_t n = room_channel(r, rm->name, chan, sizeof chan);
    if (n) /* also when not confirmed yet: the connection keeps the order */
        subscribe_channel(r, "UNSUBSCRIBE", chan, n);
    if (rm->busy == 0)
        room_free(rm);
}

static void redis_publish_room(struct broker *b, const char *room, uint64_t seq, void *obj,
                               const void *data, size_t len)
{
    struct broker_redis *r = R(b);
    if (r->up && strlen(room) <= BROKER_NAME_MAX) {
        publish_event(r, room, seq, false, data, len);
        atomic_fetch_add(&b->published, 1);
    }
    struct rroom *rm = map_get(&r->rooms, room);
    if (rm)
        room_offer(rm, seq, held_new(obj, NULL, 0));
    else
        b->user.room_event(b->user.ctx, room, seq, obj, NULL, 0);
}

/* A cid retry was answered with seq, stored earlier, perhaps by a node that died before
 * publishing it: unless this node delivered it already, it is filled here after the hold unless
 * it arrives, and the other nodes are hinted at it. Rare (a retry after a lost ack), and once
 * delivered here, a retry publishes nothing. */
static void redis_room_stored(struct broker *b, const char *room, uint64_t seq)
{
    struct broker_redis *r = R(b);
    struct rroom *rm = map_get(&r->rooms, room);
    if (rm && seq < room_order_next(&rm->order))
        return;
    if (r->up && strlen(room) <= BROKER_NAME_MAX)
        publish_event(r, room, seq, true, NULL, 0);
    if (rm) {
        room_pin(rm);
        room_order_seen(&rm->order, seq, loop_now(r->loop));
        room_unpin(rm);
    }
}

static void redis_fill_event(struct broker *b, const char *room, uint64_t seq, void *obj)
{
    struct rroom *rm = map_get(&R(b)->rooms, room);
    if (rm)
        room_offer(rm, seq, held_new(obj, NULL, 0));
    else
        b->user.release(b->user.ctx, obj);
}

static void redis_fill_done(struct broker *b, const char *room, uint64_t upto, bool ok)
{
    struct rroom *rm = map_get(&R(b)->rooms, room);
    if (!rm)
        return;
    room_pin(rm);
    uint64_t now = loop_now(R(b)->loop);
    if (ok)
        room_order_filled(&rm->order, upto, now);
    else
        room_order_fill_failed(&rm->order, now);
    room_unpin(rm);
}

static void on_count(redisAsyncContext *ac, void *reply_p, void *priv)
{
    struct broker_redis *r = ac ? ac->data : NULL;
    char *room = priv;
    redisReply *reply = reply_p;
    if (r && !r->tearing && !r->closing && reply_ok(reply, "count") &&
        reply->type == REDIS_REPLY_INTEGER) {
        struct rroom *rm = map_get(&r->rooms, room);
        if (rm)
            rm->others = reply->integer > 0 ? (uint64_t)reply->integer : 0;
    }
    free(room);
}

static void send_count(struct broker_redis *r, const char *room, uint32_t local)
{
    char n[16];
    snprintf(n, sizeof n, "%u", local);
    const char *extra[2] = {room, n};
    eval(r, redis_lua_count, on_count, xstrdup(room), extra, NULL, 2);
}

static void send_counts(struct broker_redis *r)
{
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&r->rooms, &i, &key, &v);)
        if (((struct rroom *)v)->local > 0)
            send_count(r, key, ((struct rroom *)v)->local);
}

static uint64_t redis_room_members(struct broker *b, const char *room, uint32_t local)
{
    struct broker_redis *r = R(b);
    struct rroom *rm = map_get(&r->rooms, room);
    uint64_t others = rm ? rm->others : 0;
    if (rm)
        rm->local = local;
    if (strlen(room) <= BROKER_NAME_MAX)
        send_count(r, room, local);
    return others + local;
}

static void redis_room_here(struct broker *b, const char *room, const char *user, bool in)
{
    struct broker_redis *r = R(b);
    char chan[sizeof r->chan_room + BROKER_NAME_MAX + 1];
    size_t chan_len = room_channel(r, room, chan, sizeof chan);
    if (!r->registered || !chan_len || strlen(user) > BROKER_NAME_MAX)
        return; /* while down: the hub syncs its rooms when the broker is back */
    const char *extra[4] = {room, user, in ? "1" : "0", chan};
    eval(r, redis_lua_room_here, on_reply_checked, (void *)"room_here", extra, NULL, 4);
}

static void redis_room_sync(struct broker *b, const char *room, const char *const *users,
                            size_t n)
{
    struct broker_redis *r = R(b);
    char chan[sizeof r->chan_room + BROKER_NAME_MAX + 1];
    if (!r->registered || !room_channel(r, room, chan, sizeof chan))
        return;
    const char **extra = xmalloc((n + 2) * sizeof *extra);
    extra[0] = room;
    extra[1] = chan;
    size_t k = 2;
    for (size_t i = 0; i < n; i++)
        if (strlen(users[i]) <= BROKER_NAME_MAX)
            extra[k++] = users[i];
    eval(r, redis_lua_room_sync, on_reply_checked, (void *)"room_sync", extra, NULL, (int)k);
    free(extra);
}

static void redis_publish_user(struct broker *b, const char *user, const void *data, size_t len)
{
    struct broker_redis *r = R(b);
    if (!r->up || strlen(user) > BROKER_NAME_MAX)
        return;
    char head[24 + BROKER_NAME_MAX];
    int hn = snprintf(head, sizeof head, "u %s %s\n", r->id, user);
    publish(r, r->chan_users, strlen(r->chan_users), head, (size_t)hn, data, len);
    atomic_fetch_add(&b->published, 1);
}

static void redis_user_here(struct broker *b, const char *user, bool online)
{
    struct broker_redis *r = R(b);
    if (strlen(user) > BROKER_NAME_MAX)
        return;
    if (online)
        map_put(&r->users, user, (void *)1);
    else
        map_del(&r->users, user);
    /* Its dms; while down, connect_now subscribes every user here. */
    subscribe_user(r, online ? "SUBSCRIBE" : "UNSUBSCRIBE", user);
    if (r->registered) {
        const char *extra[3] = {user, online ? "1" : "0", r->chan_users};
        eval(r, redis_lua_here, on_reply_checked, (void *)"here", extra, NULL, 3);
    }
}

/* Records that this node holds a guest's name (replacing what it had of it). */
static void guest_hold(struct broker_redis *r, const char *name, const char *shown,
                       uint64_t session)
{
    struct held_guest *g = xcalloc(1, sizeof *g);
    g->session = session;
    if (shown)
        snprintf(g->shown, sizeof g->shown, "%s", shown);
    free(map_put(&r->guests, name, g));
}

struct claim {
    struct broker_redis *r;
    char *name, *shown;
    uint64_t session;
    void (*done)(void *arg, bool ok);
    void *arg;
};

static void on_claim(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac;
    struct claim *c = priv;
    redisReply *reply = reply_p;
    struct broker_redis *r = c->r;
    if (!r->closing) {
        /* Lost with the connection, or refused: the name is ours here, as while down. */
        bool ok = !reply || reply->type != REDIS_REPLY_INTEGER || reply->integer == 1;
        if (reply && reply->type == REDIS_REPLY_ERROR)
            reply_ok(reply, "claim");
        if (ok)
            guest_hold(r, c->name, c->shown, c->session);
        c->done(c->arg, ok);
    }
    free(c->name);
    free(c->shown);
    free(c);
}

static void redis_guest_claim(struct broker *b, const char *name, const char *shown,
                              uint64_t session, void (*done)(void *, bool), void *arg)
{
    struct broker_redis *r = R(b);
    if (shown && strlen(shown) > BROKER_NAME_MAX)
        shown = NULL; /* never: a guest's name is shorter */
    if (!r->registered || strlen(name) > BROKER_NAME_MAX) {
        if (strlen(name) <= BROKER_NAME_MAX) /* synced to Redis when it is back */
            guest_hold(r, name, shown, session);
        done(arg, true);
        return;
    }
    struct claim *c = xmalloc(sizeof *c);
    *c = (struct claim){r, xstrdup(name), shown ? xstrdup(shown) : NULL, session, done, arg};
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, session);
    const char *extra[3] = {name, s, shown ? shown : ""};
    eval(r, redis_lua_claim, on_claim, c, extra, NULL, 3);
}

struct lookup {
    struct broker_redis *r;
    void (*done)(void *arg, const char *shown);
    void *arg;
};

static void on_lookup(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac;
    struct lookup *q = priv;
    redisReply *reply = reply_p;
    if (!q->r->closing) {
        /* Lost with the connection, or an error: not found, as while down. */
        char shown[BROKER_NAME_MAX + 1] = "";
        if (reply && reply->type == REDIS_REPLY_STRING && reply->len > 0 &&
            reply->len <= BROKER_NAME_MAX)
            memcpy(shown, reply->str, reply->len);
        else if (reply && reply->type == REDIS_REPLY_ERROR)
            reply_ok(reply, "lookup");
        q->done(q->arg, shown[0] ? shown : NULL);
    }
    free(q);
}

static void redis_guest_lookup(struct broker *b, const char *name,
                               void (*done)(void *, const char *), void *arg)
{
    struct broker_redis *r = R(b);
    if (!r->registered || strlen(name) > BROKER_NAME_MAX) {
        done(arg, NULL);
        return;
    }
    struct lookup *q = xmalloc(sizeof *q);
    *q = (struct lookup){r, done, arg};
    const char *extra[1] = {name};
    eval(r, redis_lua_lookup, on_lookup, q, extra, NULL, 1);
}

static void redis_guest_release(struct broker *b, const char *name)
{
    struct broker_redis *r = R(b);
    free(map_del(&r->guests, name));
    if (r->registered && strlen(name) <= BROKER_NAME_MAX) {
        const char *extra[1] = {name};
        eval(r, redis_lua_release, on_reply_checked, (void *)"release", extra, NULL, 1);
    }
}

/* A goodbye on its way: done once its reply comes, or the connection's teardown answers it. */
struct farewell {
    struct broker_redis *r;
    void (*done)(void *arg);
    void *arg;
};

static void on_goodbye(redisAsyncContext *ac, void *reply_p, void *priv)
{
    (void)ac;
    struct farewell *f = priv;
    if (reply_p && reply_ok(reply_p, "goodbye"))
        log_info("msg=broker_goodbye id=%s", f->r->id);
    f->done(f->arg);
    free(f);
}

/* Sent after everything this node sent before, on the same connection, so nothing it sent
 * earlier (a member's leave, a guest's release) lands after it and holds a key nobody reaps. */
static void redis_goodbye(struct broker *b, void (*done)(void *arg), void *arg)
{
    struct broker_redis *r = R(b);
    bool can = r->registered && r->cmd && !r->leaving;
    r->leaving = true;
    timer_stop(r->loop, &r->lease_timer);
    timer_stop(r->loop, &r->reconnect_timer);
    if (!can) {
        done(arg); /* down: the lease runs out as a dead node's */
        return;
    }
    struct farewell *f = xmalloc(sizeof *f);
    *f = (struct farewell){r, done, arg};
    const char *extra[2] = {r->chan_users, r->chan_room};
    eval(r, redis_lua_goodbye, on_goodbye, f, extra, NULL, 2);
}

static void redis_free(struct broker *b)
{
    struct broker_redis *r = R(b);
    r->closing = true;
    timer_stop(r->loop, &r->reconnect_timer);
    timer_stop(r->loop, &r->lease_timer);
    timer_stop(r->loop, &r->order_timer);
    timer_stop(r->loop, &r->down_timer);
    close_contexts(r);
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&r->rooms, &i, &key, &v);)
        room_free(v);
    map_free(&r->rooms);
    map_free(&r->users);
    map_free_all(&r->guests);
    free(r);
}

static const char *redis_id(const struct broker *b)
{
    return ((const struct broker_redis *)b)->id;
}

static const struct broker_backend redis_backend = {
    .kind = "redis",
    .id = redis_id,
    .free = redis_free,
    .follow = redis_follow,
    .unfollow = redis_unfollow,
    .publish_room = redis_publish_room,
    .room_stored = redis_room_stored,
    .fill_event = redis_fill_event,
    .fill_done = redis_fill_done,
    .room_members = redis_room_members,
    .room_here = redis_room_here,
    .room_sync = redis_room_sync,
    .publish_user = redis_publish_user,
    .user_here = redis_user_here,
    .guest_claim = redis_guest_claim,
    .guest_release = redis_guest_release,
    .guest_lookup = redis_guest_lookup,
    .goodbye = redis_goodbye,
};

struct broker *broker_redis_new(struct loop *l, const struct config *cfg,
                                const struct broker_settings *s, const struct broker_user *u)
{
    struct broker_redis *r = xcalloc(1, sizeof *r);
    broker_base_init(&r->base, &redis_backend, u, false);
    r->loop = l;
    snprintf(r->host, sizeof r->host, "%s", cfg->broker_host);
    r->port = cfg->broker_port;
    r->db = cfg->broker_db;
    snprintf(r->node, sizeof r->node, "%s", cfg->node);
    r->s = *s;
    if (r->s.lease_ms < 4)
        r->s.lease_ms = 4;
    uint64_t rnd;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = clock_ms() ^ (uint64_t)(uintptr_t)r;
    snprintf(r->id, sizeof r->id, "%016" PRIx64, rnd);
    snprintf(r->chan_users, sizeof r->chan_users, KEYS "%u:users", r->db);
    r->chan_room_len = (size_t)snprintf(r->chan_room, sizeof r->chan_room, KEYS "%u:r:", r->db);
    r->chan_user_len = (size_t)snprintf(r->chan_user, sizeof r->chan_user, KEYS "%u:u:", r->db);
    r->backoff_ms = BACKOFF_FIRST_MS;
    metrics_engine_use(ENGINE_REDIS);
    map_init_borrowed(&r->rooms);
    map_init(&r->users, true);
    map_init(&r->guests, true);
    timer_init(&r->reconnect_timer, on_reconnect_timer);
    timer_init(&r->lease_timer, on_lease_timer);
    timer_init(&r->order_timer, on_order_timer);
    timer_init(&r->down_timer, on_down_timer);
    connect_now(r);
    return &r->base;
}
