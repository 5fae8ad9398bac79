/* hub: rooms, members, presence and fan-out on one thread. */
#include "hub.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "alloc.h"
#include "chat.h"
#include "events.h"
#include "hub_broker.h"
#include "hub_nodes.h"
#include "log.h"
#include "map.h"
#include "member_list.h"
#include "metrics.h"
#include "ordset.h"
#include "timeline.h"
#include "user_status.h"

/* A large room's joined lists at most this many users (rule 82); an unsolicited members reply
 * (rule 83) at most as many as a who without limit. */
#define JOINED_NAMES_MAX 100
#define MEMBERS_PAGE 200
#define TICK_MS 5000
/* Rule 69: a status outlives the user's last connection by this long. */
#define STATUS_GRACE_MS 75000
/* A wave of deliveries waits at most this long for the commit under way (gathered waves). */
#define WAVE_WAIT_MAX_MS 2

/* A room's member, kept in the value word of its node in the room's index rather than in a block
 * of its own: its connections here, two flags, and which letters of its name are capitals, so
 * that the name as shown is the node's key (the name lower-cased) with those letters raised.
 * Names are ASCII and at most 32 characters, so 32 bits cover every letter. */
struct hub_member {
    uint32_t conns : 30; /* connections here */
    uint32_t remote : 1; /* in the room on another node too (hub_nodes.h) */
    uint32_t kicked : 1; /* kicked or banned: telnet sees its line, not the offline after it */
    uint32_t caps;       /* bit i: the name's character i is a capital */
};
_Static_assert(TEXT_NAME_MAX <= 32 && sizeof(uintptr_t) >= 8, "a member fits the value word");

static struct hub_member member_of(const struct ordset_node *n)
{
    uint64_t w = (uintptr_t)ordset_value(n);
    return (struct hub_member){.conns = w & 0x3fffffff,
                               .remote = (w >> 30) & 1,
                               .kicked = (w >> 31) & 1,
                               .caps = (uint32_t)(w >> 32)};
}

static void *member_word(struct hub_member m)
{
    uint64_t w = (uint64_t)m.conns | (uint64_t)m.remote << 30 | (uint64_t)m.kicked << 31 |
                 (uint64_t)m.caps << 32;
    return (void *)(uintptr_t)w;
}

static void member_set(struct ordset_node *n, struct hub_member m)
{
    ordset_set_value(n, member_word(m));
}

/* The name as shown of the member at n, in out. */
static const char *member_name(const struct ordset_node *n, char out[CHAT_NAME_MAX])
{
    text_name_raise(ordset_key(n), ordset_key_len(n), member_of(n).caps, out);
    return out;
}

struct hub_room {
    char name[CHAT_ROOM_MAX];
    bool dm;
    uint64_t latest;      /* the newest stored seq */
    struct msg_rec *ring; /* the newest messages, oldest first from ring_head */
    uint32_t ring_len, ring_head;
    uint32_t ring_alloc; /* entries allocated: grows with the room's traffic up to ring_cap */
    /* user_lc -> struct hub_member (in the value word), in byte order: a member found in
     * O(log n), and pages of members. (No hash map beside it: that cost 80 bytes a member for a
     * faster find.) */
    struct ordset index;
    uint32_t *worker_conns; /* member connections per worker */
    /* Large rooms (rules 81-85): decided at the room's tick. dirty: a user came or went since
     * the last tick. A room ticks (its own timer, every 5 s) from when it grows past the presence
     * limit until a tick finds it small or empty; ticked_ms: its last tick, 0 for none yet.
     * Rooms with members are on the hub's occupied list, which the housekeeping sweep visits. */
    bool large, dirty;
    struct timer tick;
    uint64_t ticked_ms;
    struct hub *hub; /* for the tick's callback */
    struct hub_room *occ_prev, *occ_next;
    struct hub_run *run; /* presence events of this turn not yet handed to the workers */
    /* A small room's joined list, kept while joins ask for it: dropped at a tick that finds the
     * room large or at a sweep that finds no join used it since the last one. */
    struct member_list *list;
    bool list_used;
    /* Topic, roles, moderation (rules 58-65), as stored: a mirror the hub keeps from the events
     * it delivers (the store checks them itself, rule 74), for joins, typing and rooms. owner_lc:
     * "" for none. ops: name_lc -> (void *)1; bans, mutes: name_lc -> struct hub_restrict. Made
     * when first needed: most rooms have none. */
    char owner_lc[CHAT_NAME_MAX];
    char *topic; /* NULL: none */
    struct map *ops, *bans, *mutes;
};

/* A ban or a mute: until when (ms since the epoch, the store's clock), 0 until lifted. */
struct hub_restrict {
    int64_t until;
};

/* A room's presence events of the hub's current turn, gathered into one event_run (chat.h). */
struct hub_run {
    struct msg_rec *ev;
    uint32_t n, cap;
};

struct hub_user {
    char name[CHAT_NAME_MAX];
    int64_t created_ms;
};

struct hub {
    const struct config *cfg;
    int n_workers;
    struct map rooms;       /* name -> struct hub_room */
    struct map registered;  /* name_lc -> struct hub_user */
    struct map registering; /* name_lc -> (void *)1 while a registration is on its way */
    struct map lookalikes;  /* text_skeleton -> look-alike entry (keys borrowed), see below */
    uint64_t next_guest_session;
    struct deliver_batch **out; /* per worker, posted before the hub sleeps */
    struct ordset public_rooms; /* name -> struct hub_room, every public room, in byte order */
    struct hub_room *occupied;  /* rooms with members, linked through occ_prev/occ_next */
    struct hub_room **open_runs; /* rooms that had a run this turn (closed ones are skipped) */
    size_t n_open_runs, cap_open_runs;
    struct service *service;
    struct timer sweep; /* every tick_ms: small rooms' joined lists nobody asked for, dropped */
    uint64_t tick_ms;
    /* Statuses (rules 69, 70): every logged-in identity's connections, rooms and status; and
     * the online guests (user_status_guest), whose logins their records count. */
    struct user_status_set statuses;
    struct timer status_timer; /* the next record whose grace ends */
    bool status_timer_on;
    uint64_t status_grace_ms;
    /* The other nodes (hub_broker.h): every stored event goes out through it and comes back,
     * in seq order with theirs, to be fanned out. */
    struct hub_broker *hb;
    bool closing; /* hub_destroy: held events are freed, not delivered */
    /* Several nodes (hub_nodes.h): the other nodes' members and statuses, on hb's broker. */
    struct hub_nodes *nodes;
    struct map claiming; /* guests' names (lower-cased) being claimed from the broker */
    struct map looking;  /* dms waiting for the broker to find their peer: struct peer_lookup */
    /* The status records and the rooms' member-index nodes: slabs of the hub's, so that the
     * join storm's transient buffers made on this thread (joined lists, events) never pin a
     * page of theirs in the heap. */
    struct pool_sizes pools;
    struct map seeds; /* room name -> struct ring_seed while its read is in flight */
    /* Gathered waves (before_sleep): out waits for the commit under way. */
    bool wave_waiting;
    bool turn_open;        /* this turn's first mail was taken */
    uint64_t turn_commits; /* the store's commits (chat_store_progress) as this turn's mail began */
    uint64_t wait_commits; /* turn_commits of the turn whose wave waits */
    struct timer wave_timer;
};

/* A read of a room's newest events for its empty or short ring (see "ring seeds" below), and
 * the joins that wait for it. */
struct ring_seed {
    uint64_t after; /* it reads (after, upto]: the page just below the ring as it was sent */
    bool spoiled;   /* an event that may change a replay form was delivered since it was sent */
    struct chat_op **wait;
    size_t n_wait, cap_wait;
};

/* --- rooms --- */

/* The ring never holds more than retention keeps, so a replay from it can never return trimmed
 * messages. */
static uint32_t ring_cap(const struct hub *h)
{
    uint64_t r = h->cfg->retention;
    return r && r < h->cfg->ring_size ? (uint32_t)r : h->cfg->ring_size;
}

static void on_room_tick(struct timer *t);

static struct hub_room *room_get(struct hub *h, const char *name, bool create)
{
    struct hub_room *r = map_get(&h->rooms, name);
    if (r || !create)
        return r;
    r = xcalloc(1, sizeof *r);
    size_t n = strlen(name);
    memcpy(r->name, name, n < sizeof r->name ? n : sizeof r->name - 1);
    r->dm = strncmp(name, "dm:", 3) == 0;
    r->hub = h;
    timer_init(&r->tick, on_room_tick);
    ordset_init(&r->index, (uintptr_t)r);
    ordset_use_pools(&r->index, &h->pools);
    r->worker_conns = xcalloc((size_t)h->n_workers, sizeof *r->worker_conns);
    map_put(&h->rooms, r->name, r);
    if (!r->dm)
        ordset_insert(&h->public_rooms, r->name, strlen(r->name), r);
    return r;
}

static void list_drop(struct hub_room *r)
{
    if (!r->list)
        return;
    member_list_free(r->list);
    free(r->list);
    r->list = NULL;
}

static void map_drop(struct map *m, bool values)
{
    if (!m)
        return;
    if (values)
        map_free_all(m);
    else
        map_free(m);
    free(m);
}

static void room_free(struct hub_room *r)
{
    list_drop(r);
    free(r->topic);
    map_drop(r->ops, false);
    map_drop(r->bans, true);
    map_drop(r->mutes, true);
    if (r->run) {
        for (uint32_t i = 0; i < r->run->n; i++)
            msg_rec_release(&r->run->ev[i]);
        free(r->run->ev);
        free(r->run);
    }
    for (uint32_t i = 0; i < r->ring_len; i++)
        msg_rec_release(&r->ring[(r->ring_head + i) % r->ring_alloc]);
    free(r->ring);
    ordset_free(&r->index);
    free(r->worker_conns);
    free(r);
}

/* The seq of the oldest message still in the ring (latest + 1 when empty). */
static uint64_t ring_first(const struct hub_room *r)
{
    return r->latest + 1 - r->ring_len;
}

/* Doubles r's ring (up to the cap): rooms are many and most are quiet, so none starts full size. */
static void ring_grow(struct hub *h, struct hub_room *r)
{
    uint32_t cap = ring_cap(h);
    uint32_t n = r->ring_alloc ? r->ring_alloc * 2 : 8;
    if (n > cap)
        n = cap;
    struct msg_rec *ring = xmalloc((size_t)n * sizeof *ring);
    for (uint32_t i = 0; i < r->ring_len; i++)
        ring[i] = r->ring[(r->ring_head + i) % r->ring_alloc];
    free(r->ring);
    r->ring = ring;
    r->ring_alloc = n;
    r->ring_head = 0;
}

static void ring_push(struct hub *h, struct hub_room *r, const struct msg_rec *m)
{
    if (r->ring_len == r->ring_alloc && r->ring_alloc < ring_cap(h))
        ring_grow(h, r);
    if (r->ring_len == r->ring_alloc) {
        msg_rec_release(&r->ring[r->ring_head]);
        r->ring_head = (r->ring_head + 1) % r->ring_alloc;
        r->ring_len--;
    }
    r->ring[(r->ring_head + r->ring_len) % r->ring_alloc] = msg_rec_ref(m);
    r->ring_len++;
}

/* Adds to op's replay every ring message with seq > after. */
static void ring_replay(const struct hub_room *r, uint64_t after, struct chat_op *op)
{
    for (uint32_t i = 0; i < r->ring_len; i++) {
        const struct msg_rec *m = &r->ring[(r->ring_head + i) % r->ring_alloc];
        if (m->seq > after && m->ts >= op->ts) {
            struct msg_rec ref = msg_rec_ref(m);
            chat_op_add_msg(op, &ref);
        }
    }
}

/* --- output to workers --- */

static struct deliver *out(struct hub *h, int worker)
{
    return deliver_batch_add(&h->out[worker]);
}

static void run_close(struct hub *h, struct hub_room *r);

static void reply(struct hub *h, struct chat_op *op)
{
    /* Anything said about a room goes after the presence events the hub made before it. */
    if (h->n_open_runs && op->room[0] && !op->run_from) {
        struct hub_room *r = map_get(&h->rooms, op->room);
        if (r)
            run_close(h, r);
    }
    struct deliver *d = out(h, op->worker);
    d->kind = DELIVER_OP;
    d->op = op;
}

static void reply_error(struct hub *h, struct chat_op *op, enum proto_error err, const char *why)
{
    chat_op_fail(op, err, why);
    reply(h, op);
}

/* Sends rec (taking its references) to every worker with members in room. */
static void to_room(struct hub *h, struct hub_room *r, struct msg_rec rec, uint64_t skip_conn,
                    const char *skip_user)
{
    run_close(h, r);
    for (int w = 0; w < h->n_workers; w++) {
        if (r->worker_conns[w] == 0)
            continue;
        struct deliver *d = out(h, w);
        d->kind = DELIVER_ROOM;
        memcpy(d->room, r->name, sizeof d->room);
        d->rec = msg_rec_ref(&rec);
        d->skip_conn = skip_conn;
        if (skip_user)
            memcpy(d->skip_user, skip_user, sizeof d->skip_user);
    }
    msg_rec_release(&rec);
}

/* --- presence runs --- */

/* Adds a presence event (taking rec's references) to r's run of this turn. */
static void run_add(struct hub *h, struct hub_room *r, struct msg_rec rec)
{
    struct hub_run *b = r->run;
    if (!b) {
        b = r->run = xcalloc(1, sizeof *b);
        if (h->n_open_runs == h->cap_open_runs) {
            h->cap_open_runs = h->cap_open_runs ? h->cap_open_runs * 2 : 16;
            h->open_runs = xrealloc(h->open_runs, h->cap_open_runs * sizeof *h->open_runs);
        }
        h->open_runs[h->n_open_runs++] = r;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->ev = xrealloc(b->ev, b->cap * sizeof *b->ev);
    }
    b->ev[b->n++] = rec;
}

/* Hands r's run, if it has one, to every worker with members in r: one entry in each batch, the
 * events encoded together once. Called before anything else about r is sent, and before the hub
 * sleeps, so the run keeps its place among r's events. */
static void run_close(struct hub *h, struct hub_room *r)
{
    struct hub_run *b = r->run;
    if (!b)
        return;
    r->run = NULL;
    unsigned targets = 0;
    for (int w = 0; w < h->n_workers; w++)
        targets += r->worker_conns[w] > 0;
    if (targets == 0) {
        for (uint32_t i = 0; i < b->n; i++)
            msg_rec_release(&b->ev[i]);
        free(b->ev);
        free(b);
        return;
    }
    struct event_run *run = event_run_new(b->ev, b->n, targets);
    free(b);
    for (int w = 0; w < h->n_workers; w++) {
        if (r->worker_conns[w] == 0)
            continue;
        struct deliver *d = out(h, w);
        d->kind = DELIVER_RUN;
        memcpy(d->room, r->name, sizeof d->room);
        d->run = run;
    }
}

static void runs_close_all(struct hub *h)
{
    for (size_t i = 0; i < h->n_open_runs; i++)
        run_close(h, h->open_runs[i]);
    h->n_open_runs = 0;
}

/*
 * Gathered waves. Each commit's answers make a wave: every connection of the room gets a write.
 * When a wave is ready while the store has writes coming (on their way, or in its open batch),
 * it waits for that commit's answers and leaves with them, so a worker writes each connection
 * once for both commits (in an all-to-all round the store commits about 5 times and the first
 * commits are small). It waits for one commit at most: a wave that waited leaves with the next
 * commit's answers whatever comes after, and after WAVE_WAIT_MAX_MS whatever happens. Nothing
 * waits when no write is coming: a lone message on a quiet server leaves at once.
 */
static bool wave_waits(struct hub *h)
{
    if (h->wave_waiting) {
        if (!timer_active(&h->wave_timer))
            metrics_add(METRIC_WAVES_WAITED_OUT, 1);
        else if (h->turn_commits == h->wait_commits && chat_store_commit_coming() &&
                 loop_running(h->service->loop))
            return true;
        h->wave_waiting = false;
        timer_stop(h->service->loop, &h->wave_timer);
        return false;
    }
    bool any = false;
    for (int w = 0; w < h->n_workers && !any; w++)
        any = h->out[w] != NULL;
    if (!any || !chat_store_commit_coming() || !loop_running(h->service->loop))
        return false;
    h->wave_waiting = true;
    metrics_add(METRIC_WAVES_WAITED, 1);
    h->wait_commits = h->turn_commits;
    timer_start(h->service->loop, &h->wave_timer, loop_now(h->service->loop) + WAVE_WAIT_MAX_MS);
    return true;
}

/* The turn that runs it ends, and its before_sleep sends the wave that waited. */
static void on_wave_timer(struct timer *t)
{
    (void)t;
}

/* The deliveries made so far leave, one batch per worker. */
static void send_out(struct hub *h)
{
    for (int w = 0; w < h->n_workers; w++) {
        if (!h->out[w])
            continue;
        mailbox_post(chat_route()->workers[w], &h->out[w]->mail);
        h->out[w] = NULL;
    }
}

static void before_sleep(struct service *s)
{
    struct hub *h = s->ctx;
    runs_close_all(h);
    h->turn_open = false;
    if (!wave_waits(h))
        send_out(h);
}

/* --- membership and presence --- */

/* Rooms with members are listed for the sweep. A small room left empty leaves the list; a large
 * one stays large until its tick (rule 81: decided at the tick, not at a leave), so a room that
 * everyone leaves and rejoins at once (a reconnect storm) does not start over with presence and
 * full member lists; a tick that finds it empty makes it small (nobody to tell) and drops it. */
static bool occupied_has(const struct hub *h, const struct hub_room *r)
{
    return h->occupied == r || r->occ_prev;
}

static void occupied_link(struct hub *h, struct hub_room *r)
{
    r->occ_prev = NULL;
    r->occ_next = h->occupied;
    if (h->occupied)
        h->occupied->occ_prev = r;
    h->occupied = r;
}

static void occupied_unlink(struct hub *h, struct hub_room *r)
{
    if (r->occ_prev)
        r->occ_prev->occ_next = r->occ_next;
    else
        h->occupied = r->occ_next;
    if (r->occ_next)
        r->occ_next->occ_prev = r->occ_prev;
    r->occ_prev = r->occ_next = NULL;
    r->large = false;
    r->dirty = false;
    timer_stop(h->service->loop, &r->tick);
    list_drop(r);
}

/* Rule 81 decides a room's size at its tick, every 5 s. A room's ticks are its own: they start
 * when it grows past the presence limit, at once if it has not ticked in the last 5 s (else 5 s
 * after its last tick), and go on while it is large. So a room filling up is found large after
 * the join that takes it past the limit, not up to 5 s later: a join storm into one room costs
 * O(limit^2) presence, not O(n^2), and a room still ticks at most every 5 s. */
static void tick_if_grown(struct hub *h, struct hub_room *r)
{
    uint64_t limit = h->cfg->presence_limit;
    if (r->large || !limit || r->index.count <= limit || timer_active(&r->tick))
        return;
    uint64_t now = loop_now(h->service->loop);
    uint64_t due = r->ticked_ms && r->ticked_ms + h->tick_ms > now ? r->ticked_ms + h->tick_ms : now;
    timer_start(h->service->loop, &r->tick, due);
}

/* The room's connections on this node, over every worker. */
static uint32_t local_conns(const struct hub *h, const struct hub_room *r)
{
    uint32_t n = 0;
    for (int w = 0; w < h->n_workers; w++)
        n += r->worker_conns[w];
    return n;
}

/* O(log n) in the room's users (the ordered index), whatever the room's size; in a large room
 * nobody else hears of it until the tick's count. */
static void member_add(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    size_t lc_len = strlen(op->user_lc);
    struct ordset_node *node = ordset_find(&r->index, op->user_lc, lc_len);
    r->worker_conns[op->worker]++;
    if (local_conns(h, r) == 1)
        hub_broker_follow(h->hb, r->name, r->latest);
    /* A connection a live upgrade moved here keeps the room as the old process had it: a room
     * it was told is large stays large, without a burst of counts at the next tick. */
    if (op->adopt && op->adopt_large && h->cfg->presence_limit && !r->large) {
        r->large = true;
        timer_start(h->service->loop, &r->tick, loop_now(h->service->loop) + h->tick_ms);
    }
    if (node) {
        struct hub_member m = member_of(node);
        m.kicked = false; /* back before its kick's departure was counted: a later leave shows */
        bool first_here = m.conns++ == 0; /* a member on another node: its first connection here */
        member_set(node, m);
        if (first_here) {
            struct user_status *u = user_status_of(&h->statuses, op->user_lc);
            if (u)
                user_status_room_add(u, r);
            char name[CHAT_NAME_MAX];
            hub_nodes_room_here(h->nodes, r->name, r->latest, member_name(node, name), true);
        }
        return;
    }
    hub_nodes_room_here(h->nodes, r->name, r->latest, op->user, true);
    if (r->index.count == 0 && !occupied_has(h, r))
        occupied_link(h, r);
    ordset_insert(&r->index, op->user_lc, lc_len,
                  member_word((struct hub_member){.conns = 1, .caps = text_name_caps(op->user)}));
    if (r->list)
        member_list_add(r->list, op->user, op->user_lc);
    r->dirty = true;
    tick_if_grown(h, r);
    struct user_status *u = user_status_of(&h->statuses, op->user_lc);
    if (u)
        user_status_room_add(u, r);
    /* A connection a live upgrade moved here was in the room all along: nobody is told. The
     * joiner does not hear of itself: its reply places it in the run after its own event. A first
     * join of an away user announces away (rule 69). */
    if (!op->adopt && !r->large)
        run_add(h, r,
                u && (u->away || u->text)
                    ? events_presence_state(r->name, op->user, true, u->away, u->text)
                    : events_presence(r->name, op->user, true));
}

/* The user at node (name_lc) is in r on no node any more: gone, the others told. */
static void member_drop(struct hub *h, struct hub_room *r, struct ordset_node *node,
                        const char *name_lc, uint64_t skip_conn)
{
    struct hub_member m = member_of(node);
    char name[CHAT_NAME_MAX];
    member_name(node, name);
    ordset_remove(&r->index, name_lc, strlen(name_lc)); /* node is freed */
    if (r->list)
        member_list_remove(r->list, name_lc);
    r->dirty = true;
    if (!r->large) {
        struct msg_rec rec = events_presence(r->name, name, false);
        if (m.kicked) { /* rule 76: telnet shows the kick or ban line, not this offline */
            chunk_unref(rec.tn);
            rec.tn = NULL;
        }
        to_room(h, r, rec, skip_conn, NULL);
    }
    if (r->index.count == 0 && !r->large)
        occupied_unlink(h, r);
}

static void member_remove(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    run_close(h, r); /* while the leaver's worker still counts it */
    size_t lc_len = strlen(op->user_lc);
    struct ordset_node *node = ordset_find(&r->index, op->user_lc, lc_len);
    if (!node || member_of(node).conns == 0)
        return;
    if (r->worker_conns[op->worker] > 0) {
        r->worker_conns[op->worker]--;
        if (local_conns(h, r) == 0)
            hub_broker_unfollow(h->hb, r->name);
    }
    struct hub_member m = member_of(node);
    m.conns--;
    member_set(node, m);
    if (m.conns > 0)
        return;
    struct user_status *u = user_status_of(&h->statuses, op->user_lc);
    if (u)
        user_status_room_remove(u, r);
    char name[CHAT_NAME_MAX];
    member_name(node, name);
    if (!m.remote) /* else still in the room on another node */
        member_drop(h, r, node, op->user_lc, op->conn_id);
    hub_nodes_room_here(h->nodes, r->name, r->latest, name, false);
}

/* --- members on other nodes (hub_nodes.h) --- */

void hub_remote_member(struct hub *h, const char *room, const char *user, bool in)
{
    struct hub_room *r = room_get(h, room, false);
    size_t len = strlen(user);
    if (!r || len >= CHAT_NAME_MAX)
        return;
    char lc[CHAT_NAME_MAX];
    text_lower(user, len, lc);
    struct ordset_node *node = ordset_find(&r->index, lc, strlen(lc));
    if (!in) {
        if (!node)
            return;
        struct hub_member m = member_of(node);
        m.remote = false;
        member_set(node, m);
        if (m.conns == 0) {
            run_close(h, r);
            member_drop(h, r, node, lc, 0);
        }
        return;
    }
    if (node) {
        struct hub_member m = member_of(node);
        m.remote = true;
        member_set(node, m);
        return;
    }
    if (r->index.count == 0 && !occupied_has(h, r))
        occupied_link(h, r);
    ordset_insert(&r->index, lc, strlen(lc),
                  member_word((struct hub_member){.remote = true, .caps = text_name_caps(user)}));
    if (r->list)
        member_list_add(r->list, user, lc);
    r->dirty = true;
    tick_if_grown(h, r);
    bool away = false;
    const char *text = NULL;
    if (!r->large)
        run_add(h, r,
                hub_nodes_remote_status(h->nodes, lc, &away, &text)
                    ? events_presence_state(r->name, user, true, away, text)
                    : events_presence(r->name, user, true));
}

void hub_local_members(struct hub *h, const char *room, void (*each)(void *arg, const char *user),
                       void *arg)
{
    struct hub_room *r = room_get(h, room, false);
    if (!r)
        return;
    char name[CHAT_NAME_MAX];
    for (const struct ordset_node *n = ordset_after(&r->index, NULL, 0); n; n = ordset_next(n))
        if (member_of(n).conns > 0)
            each(arg, member_name(n, name));
}

uint64_t hub_room_newest(struct hub *h, const char *room)
{
    struct hub_room *r = room_get(h, room, false);
    return r ? r->latest : 0;
}

/* --- statuses (rules 69, 70) --- */

/* Lists the user of name_lc in op's statuses if its status is not the default. */
static void status_listed(struct hub *h, struct chat_op *op, const char *name_lc, const char *name)
{
    struct user_status *u = user_status_of(&h->statuses, name_lc);
    bool away;
    const char *text;
    if (u && (u->away || u->text))
        chat_op_add_status(op, name, u->away, u->text);
    else if (!u && hub_nodes_remote_status(h->nodes, name_lc, &away, &text))
        chat_op_add_status(op, name, away, text);
}

/* Every user of r listed: those not at the default status, found from whichever is shorter,
 * the room's users or the users not at the default. */
static void status_listed_all(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    if (h->statuses.n_set < r->index.count && hub_nodes_remote_statuses(h->nodes) == 0) {
        for (struct user_status *u = h->statuses.set_head; u; u = u->set_next)
            if (u->conns && ordset_find(&r->index, u->name_lc, strlen(u->name_lc)))
                chat_op_add_status(op, user_status_name(u), u->away, u->text);
        return;
    }
    char name[CHAT_NAME_MAX];
    for (const struct ordset_node *n = ordset_after(&r->index, NULL, 0); n; n = ordset_next(n))
        status_listed(h, op, ordset_key(n), member_name(n, name));
}

/* who (rule 84): the users after op->after (or from the first), at most names_limit, in byte
 * order of their lower-cased names. O(log n + page). */
static void add_members(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    op->n_members = r->index.count;
    op->large = r->large;
    chat_op_reserve_names(op, op->names_limit < op->n_members ? op->names_limit : op->n_members);
    const struct ordset_node *n =
        ordset_after(&r->index, op->has_after ? op->after : NULL, op->after_len);
    char name[CHAT_NAME_MAX];
    for (size_t k = 0; n && k < op->names_limit; n = ordset_next(n), k++) {
        member_name(n, name);
        chat_op_add_name(op, name);
        status_listed(h, op, ordset_key(n), name);
    }
    op->more = n != NULL;
}

/* joined's members (rules 81, 82): every user of a small room; of a large one at most
 * JOINED_NAMES_MAX, the requester first, then the others in byte order. */
static void add_joined_members(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    if (!r->large && op->names_json && op->names_limit >= r->index.count) {
        /* Every user, as JSON: the room's kept list, shared, not walked and copied. */
        if (!r->list) {
            r->list = xmalloc(sizeof *r->list);
            member_list_init(r->list);
            char name[CHAT_NAME_MAX];
            for (const struct ordset_node *n = ordset_after(&r->index, NULL, 0); n;
                 n = ordset_next(n))
                member_list_add(r->list, member_name(n, name), ordset_key(n));
        }
        r->list_used = true;
        op->members_pieces =
            member_list_share(r->list, &op->n_members_pieces, &op->members_json_len);
        op->n_names = r->list->n;
        op->n_members = r->index.count;
        op->large = false;
        status_listed_all(h, r, op);
        return;
    }
    if (!r->large) {
        add_members(h, r, op);
        return;
    }
    op->n_members = r->index.count;
    op->large = true;
    size_t cap = op->names_limit < JOINED_NAMES_MAX ? op->names_limit : JOINED_NAMES_MAX;
    const struct ordset_node *me = ordset_find(&r->index, op->user_lc, strlen(op->user_lc));
    size_t listed = 0;
    char name[CHAT_NAME_MAX];
    if (me && listed < cap) {
        chat_op_add_name(op, member_name(me, name));
        status_listed(h, op, op->user_lc, name);
        listed++;
    }
    for (const struct ordset_node *n = ordset_after(&r->index, NULL, 0); n && listed < cap;
         n = ordset_next(n)) {
        if (n == me)
            continue;
        chat_op_add_name(op, member_name(n, name));
        status_listed(h, op, ordset_key(n), name);
        listed++;
    }
}

/* --- the tick: large rooms' counts (rule 83) --- */

/* Sends every worker with members in r its count (to each member connection last told another
 * count, or with force to all), encoded once and shared. */
static void send_count(struct hub *h, struct hub_room *r, bool force)
{
    run_close(h, r);
    uint32_t n = (uint32_t)r->index.count;
    struct msg_rec rec = events_count(r->name, n, r->large);
    metrics_add(METRIC_COUNT_ENCODED, 1);
    for (int w = 0; w < h->n_workers; w++) {
        if (r->worker_conns[w] == 0)
            continue;
        struct deliver *d = out(h, w);
        d->kind = DELIVER_COUNT;
        memcpy(d->room, r->name, sizeof d->room);
        d->rec = msg_rec_ref(&rec);
        d->count = n;
        d->count_flags =
            (uint8_t)((force ? DELIVER_COUNT_FORCE : 0) | (r->large ? DELIVER_COUNT_LARGE : 0));
    }
    msg_rec_release(&rec);
}

/* A room no longer large tells its members who is there, as a who without after and limit. */
static void send_members(struct hub *h, struct hub_room *r)
{
    char names[MEMBERS_PAGE][CHAT_NAME_MAX]; /* 6.6 KiB, on the hub thread's stack */
    size_t k = 0;
    struct chat_op *st = chat_op_new(CHAT_WHO, 0, 0); /* only to gather the statuses listed */
    const struct ordset_node *n = ordset_after(&r->index, NULL, 0);
    for (; n && k < MEMBERS_PAGE; n = ordset_next(n), k++) {
        member_name(n, names[k]);
        status_listed(h, st, ordset_key(n), names[k]);
    }
    to_room(
        h, r,
        events_members(r->name, names, k, r->index.count, n != NULL, st->statuses, st->n_statuses),
        0, NULL);
    chat_op_free(st);
}

/* A ticking room (see tick_if_grown): large above the presence limit, small again below 0.9
 * times it; a change is told to every member connection, and a large room's count to those whose
 * last count differs (only when someone came or went: otherwise every count told is current).
 * It ticks again in 5 s while large; a room found small stops until it grows past the limit. */
static void on_room_tick(struct timer *t)
{
    struct hub_room *r = (struct hub_room *)((char *)t - offsetof(struct hub_room, tick));
    struct hub *h = r->hub;
    uint64_t limit = h->cfg->presence_limit;
    uint64_t n = r->index.count;
    r->ticked_ms = loop_now(h->service->loop);
    if (n == 0) {
        occupied_unlink(h, r);
        return;
    }
    bool large = r->large ? limit && n * 10 >= limit * 9 : limit && n > limit;
    if (large != r->large) {
        r->large = large;
        send_count(h, r, true);
        if (!large)
            send_members(h, r);
    } else if (large && r->dirty) {
        send_count(h, r, false);
    }
    r->dirty = false;
    if (r->large) {
        list_drop(r);
        timer_start(h->service->loop, &r->tick, r->ticked_ms + h->tick_ms);
    }
}

/* Every tick_ms: a small room's joined list that no join asked for since the last sweep is
 * dropped (a large room has none). */
static void on_sweep(struct timer *t)
{
    struct hub *h = (struct hub *)((char *)t - offsetof(struct hub, sweep));
    for (struct hub_room *r = h->occupied; r; r = r->occ_next) {
        if (!r->list_used)
            list_drop(r);
        r->list_used = false;
    }
    timer_start(h->service->loop, &h->sweep, loop_now(h->service->loop) + h->tick_ms);
}

/* --- topic, roles, moderation (rules 58-65) --- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct map *map_lazy(struct map **m)
{
    if (!*m) {
        *m = xmalloc(sizeof **m);
        map_init(*m, true);
    }
    return *m;
}

/* Whether name_lc is under the ban or mute in *m now, with *until (0 = until lifted). Expired
 * entries are dropped as they are found (expiry stores no event, rule 63). */
static bool restricted(struct map *m, const char *name_lc, int64_t *until)
{
    struct hub_restrict *x = m ? map_get(m, name_lc) : NULL;
    if (!x)
        return false;
    if (x->until && x->until <= wall_ms()) {
        free(map_del(m, name_lc));
        return false;
    }
    if (until)
        *until = x->until;
    return true;
}

static void restrict_set(struct map **m, const char *name_lc, int64_t until)
{
    struct hub_restrict *x = xmalloc(sizeof *x);
    x->until = until;
    free(map_put(map_lazy(m), name_lc, x));
}

static void restrict_lift(struct map *m, const char *name_lc)
{
    if (m)
        free(map_del(m, name_lc));
}

static bool is_admin(const struct hub *h, const char *name_lc)
{
    for (size_t i = 0; i < h->cfg->n_admins; i++)
        if (strcasecmp(h->cfg->admins[i], name_lc) == 0)
            return true;
    return false;
}

static const char *known_user(struct hub *h, const char *name_lc);

/* joined (rules 58, 59, 65): the room's topic and owner, the requester's role, its mute. */
static void add_room_state(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    free(op->topic);
    op->topic = r->topic && !r->dm ? xstrdup(r->topic) : NULL;
    op->owner[0] = '\0';
    op->my_role = CHAT_ROLE_MEMBER;
    op->muted = false;
    if (r->dm)
        return;
    if (r->owner_lc[0]) {
        const char *shown = known_user(h, r->owner_lc);
        snprintf(op->owner, sizeof op->owner, "%s", shown ? shown : r->owner_lc);
    }
    if (!op->guest) {
        if (is_admin(h, op->user_lc))
            op->my_role = CHAT_ROLE_ADMIN;
        else if (strcmp(r->owner_lc, op->user_lc) == 0)
            op->my_role = CHAT_ROLE_OWNER;
        else if (r->ops && map_get(r->ops, op->user_lc))
            op->my_role = CHAT_ROLE_OP;
    }
    op->muted = restricted(r->mutes, op->user_lc, &op->muted_until);
}

/* The mirror follows a stored topic or moderation event. */
static void mod_stored(struct hub_room *r, const struct chat_op *op)
{
    switch (op->kind) {
    case CHAT_TOPIC:
        free(r->topic);
        r->topic = op->text_len ? xstrndup(op->text, op->text_len) : NULL;
        break;
    case CHAT_ROLE:
        if (op->role == CHAT_ROLE_OP) {
            map_put(map_lazy(&r->ops), op->subject_lc, (void *)1);
        } else if (op->role == CHAT_ROLE_MEMBER) {
            if (r->ops)
                map_del(r->ops, op->subject_lc);
        } else {
            if (r->owner_lc[0] && strcmp(r->owner_lc, op->subject_lc) != 0)
                map_put(map_lazy(&r->ops), r->owner_lc, (void *)1);
            if (r->ops)
                map_del(r->ops, op->subject_lc);
            memcpy(r->owner_lc, op->subject_lc, sizeof r->owner_lc);
        }
        break;
    case CHAT_BAN:
        restrict_set(&r->bans, op->subject_lc,
                     op->duration ? op->ts + (int64_t)op->duration * 1000 : 0);
        break;
    case CHAT_MUTE:
        restrict_set(&r->mutes, op->subject_lc,
                     op->duration ? op->ts + (int64_t)op->duration * 1000 : 0);
        break;
    case CHAT_UNBAN:
        restrict_lift(r->bans, op->subject_lc);
        break;
    case CHAT_UNMUTE:
        restrict_lift(r->mutes, op->subject_lc);
        break;
    default:
        break;
    }
}

/* A stored kick or ban (rule 64): every worker with members in the room takes the user's
 * connections there out of it, each with its `kicked`, before the event reaches the room. */
static void kick_out(struct hub *h, struct hub_room *r, const struct chat_op *op)
{
    run_close(h, r);
    struct ordset_node *node = ordset_find(&r->index, op->subject_lc, strlen(op->subject_lc));
    if (node) {
        struct hub_member m = member_of(node);
        m.kicked = true;
        member_set(node, m);
    }
    bool ban = op->kind == CHAT_BAN;
    struct msg_rec rec =
        events_kicked(r->name, op->user, op->text, ban, ban ? op->duration : 0);
    for (int w = 0; w < h->n_workers; w++) {
        if (r->worker_conns[w] == 0)
            continue;
        struct deliver *d = out(h, w);
        d->kind = DELIVER_KICK;
        memcpy(d->room, r->name, sizeof d->room);
        memcpy(d->user_a, op->subject_lc, sizeof d->user_a);
        d->rec = msg_rec_ref(&rec);
    }
    msg_rec_release(&rec);
}

/* Loads what the store holds of a room's topic, roles, bans and mutes (start-up). */
static void load_mod(void *arg, const char *room, enum store_mod_kind kind, const char *value,
                     int64_t until)
{
    struct hub_room *r = room_get(arg, room, true);
    char lc[CHAT_NAME_MAX];
    if (kind != STORE_MOD_TOPIC)
        text_lower(value, strnlen(value, TEXT_NAME_MAX), lc);
    switch (kind) {
    case STORE_MOD_OWNER:
        memcpy(r->owner_lc, lc, sizeof r->owner_lc);
        break;
    case STORE_MOD_TOPIC:
        free(r->topic);
        r->topic = xstrdup(value);
        break;
    case STORE_MOD_OP:
        map_put(map_lazy(&r->ops), lc, (void *)1);
        break;
    case STORE_MOD_BAN:
        restrict_set(&r->bans, lc, until);
        break;
    case STORE_MOD_MUTE:
        restrict_set(&r->mutes, lc, until);
        break;
    }
}

/* --- joins --- */

static void join_reply(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    op->seq = r->latest;
    /* A new member takes this turn's presence events of the room from here on (the run is
     * closed, at the latest, before this batch goes). A rejoin or a moved connection is a member
     * already: what the run holds before this reply is said before it. */
    if (r->run && !op->rejoin && !op->adopt && !op->err)
        op->run_from = r->run->n + 1;
    add_joined_members(h, r, op);
    add_room_state(h, r, op);
    reply(h, op);
}

/* Answers the join with its replay (op->join_after, latest] from the ring, if the ring reaches
 * that far. */
static bool join_from_ring(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    if (op->join_after < r->latest && ring_first(r) > op->join_after + 1)
        return false;
    ring_replay(r, op->join_after, op);
    join_reply(h, r, op);
    return true;
}

/* Sends the join to the store for the first page of its replay (stage 0). */
static void join_read(struct hub_room *r, struct chat_op *op)
{
    op->seq = r->latest; /* read up to here; what comes later is in the ring by then */
    chat_to_store(op);
}

/*
 * Ring seeds. After a restart every room's ring is empty, and the reconnecting clients' joins
 * with `since` would each read the same few newest events from the store and encode them again.
 * Instead the first join whose replay lies within a page below the ring starts one read of that
 * page (CHAT_RING_SEED), and it and every join after it that the page would cover wait for it.
 * When it lands it is put below the ring, if that keeps the ring's rules: consecutive seqs up to
 * the room's newest, each in its replay form as the store would give it now. So it must join
 * the ring (the events delivered meanwhile are the ring's), and no event delivered meanwhile may
 * have changed a form the page holds: any edit, delete, reaction or moderation event spoils it
 * (another node's too; a plain message cannot). The waiting joins are then answered from the
 * ring, or, where it still does not reach, read for themselves as before.
 */

/* Whether op now waits for a seed read of r (started here if none is in flight). */
static bool seed_wait(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    if (r->dm || op->ts)
        return false; /* only public rooms, read whole (a dm replay may skip, rule 40) */
    struct ring_seed *seed = map_get(&h->seeds, r->name);
    if (!seed) {
        uint32_t cap = ring_cap(h);
        if (r->ring_len >= cap)
            return false; /* the replay reaches below what the ring can hold */
        uint64_t upto = ring_first(r) - 1;
        uint64_t room_left = cap - r->ring_len;
        uint64_t depth = room_left < CHAT_REPLAY_PAGE ? room_left : CHAT_REPLAY_PAGE;
        uint64_t after = upto > depth ? upto - depth : 0;
        if (op->join_after < after)
            return false;
        seed = xcalloc(1, sizeof *seed);
        seed->after = after;
        map_put(&h->seeds, r->name, seed);
        struct chat_op *rd = chat_op_new(CHAT_RING_SEED, 0, 0);
        memcpy(rd->room, r->name, sizeof rd->room);
        rd->join_after = after;
        rd->seq = upto;
        chat_to_store(rd);
    } else if (op->join_after < seed->after) {
        return false;
    }
    if (seed->n_wait == seed->cap_wait) {
        seed->cap_wait = seed->cap_wait ? seed->cap_wait * 2 : 16;
        seed->wait = xrealloc(seed->wait, seed->cap_wait * sizeof *seed->wait);
    }
    seed->wait[seed->n_wait++] = op;
    return true;
}

/* An event with seq past r's newest is being delivered: one that may change a replay form
 * spoils r's seed read in flight. */
static void seed_event(struct hub *h, const struct hub_room *r, const struct hub_event *ev)
{
    if (h->seeds.count == 0)
        return;
    const struct chat_op *op = ev->op;
    if (op ? op->kind == CHAT_SEND : !ev->target && !ev->mod)
        return;
    struct ring_seed *seed = map_get(&h->seeds, r->name);
    if (seed)
        seed->spoiled = true;
}

/* Puts a seed read's events (rd->msgs, replay forms) below r's ring, if they are consecutive
 * and reach up to the ring's oldest entry (or the room's newest seq when the ring is empty). */
static void ring_seed(struct hub *h, struct hub_room *r, const struct chat_op *rd)
{
    size_t n = rd->n_msgs;
    uint64_t first = ring_first(r);
    if (n == 0 || rd->msgs[0].seq >= first || rd->msgs[n - 1].seq + 1 < first)
        return;
    for (size_t i = 1; i < n; i++)
        if (rd->msgs[i].seq != rd->msgs[0].seq + i)
            return;
    uint32_t had = r->ring_len;
    struct msg_rec *keep = xmalloc(((size_t)had + 1) * sizeof *keep);
    for (uint32_t i = 0; i < had; i++)
        keep[i] = r->ring[(r->ring_head + i) % r->ring_alloc]; /* the references move */
    r->ring_len = 0;
    r->ring_head = 0;
    for (size_t i = 0; i < n && rd->msgs[i].seq < first; i++)
        ring_push(h, r, &rd->msgs[i]);
    for (uint32_t i = 0; i < had; i++) {
        ring_push(h, r, &keep[i]);
        msg_rec_release(&keep[i]);
    }
    free(keep);
}

/* A seed read is back: the ring seeded if it may be, and every join that waited answered from
 * the ring or sent to read for itself. */
static void seed_landed(struct hub *h, struct chat_op *rd)
{
    struct ring_seed *seed = map_del(&h->seeds, rd->room);
    struct hub_room *r = room_get(h, rd->room, false);
    if (seed && r && !rd->err && !seed->spoiled)
        ring_seed(h, r, rd);
    chat_op_free(rd);
    if (!seed)
        return;
    for (size_t i = 0; i < seed->n_wait; i++) {
        struct chat_op *op = seed->wait[i];
        if (!r)
            r = room_get(h, op->room, true);
        if (!join_from_ring(h, r, op))
            join_read(r, op);
    }
    free(seed->wait);
    free(seed);
}

/* Replays (op->join_after, latest] from the ring if it reaches that far. Otherwise the store
 * reads a first page (stage 0; or a seed read fills the ring, above), and once that is back the
 * join is answered with the rest to be read by the worker, a page at a time as its connection
 * drains: a long replay is never gathered in memory whole. */
static void join_continue(struct hub *h, struct hub_room *r, struct chat_op *op)
{
    if (join_from_ring(h, r, op))
        return;
    if (op->stage == 1) {
        op->replay_until = r->latest; /* all stored already: the store has it */
        join_reply(h, r, op);
        return;
    }
    if (!seed_wait(h, r, op))
        join_read(r, op);
}

/*
 * A join's checks in rule 75's order (the worker has answered another pair's dm room): banned,
 * no_such_room (only a registered user's join creates a room, rule 60), too_many_rooms (per
 * connection, then saved rooms, then server-wide). Returns false after answering the error.
 */
static bool join_allowed(struct hub *h, struct chat_op *op)
{
    struct hub_room *r = map_get(&h->rooms, op->room);
    if (r && !r->dm && restricted(r->bans, op->user_lc, NULL)) {
        snprintf(op->why_buf, sizeof op->why_buf, "banned from #%s", op->room);
        reply_error(h, op, PROTO_BANNED, op->why_buf);
        return false;
    }
    if (!r && !op->room_is_dm && op->guest) {
        snprintf(op->why_buf, sizeof op->why_buf, "no room #%s", op->room);
        reply_error(h, op, PROTO_NO_SUCH_ROOM, op->why_buf);
        return false;
    }
    if (op->over_room_limit) {
        reply_error(h, op, PROTO_TOO_MANY_ROOMS, "you have joined as many rooms as a connection may");
        return false;
    }
    /* The saved-room limit (rule 67) ranks here: the store checks it after this (join_save), and
     * answers too_many_rooms as this does. */
    uint64_t max = h->cfg->max_total_rooms;
    if (!r && !op->room_is_dm && max && h->public_rooms.count >= max) {
        reply_error(h, op, PROTO_TOO_MANY_ROOMS, "this server has as many rooms as it may");
        return false;
    }
    return true;
}

static void join(struct hub *h, struct chat_op *op)
{
    if (op->stage == 0 && !op->adopt && !op->join_checked && !join_allowed(h, op))
        return;
    if (op->via_store) {
        /* A registered user's join: checked here first, then saved by the store (the saved-room
         * limit, rule 67), which also creates a public room it has no row of, or refuses it past
         * the server-wide limit, for every node at once (rule 74), then back. */
        op->join_checked = true;
        chat_to_store(op);
        return;
    }
    bool created = !map_get(&h->rooms, op->room);
    struct hub_room *r = room_get(h, op->room, true);
    if (op->join_checked && op->stage == 0 && !r->dm) {
        /* Rule 59: the owner is the store's, the first creator's on whichever node. A room
         * another node announced (`C`) has none here until then; once known it only moves by
         * its events. */
        if (!r->owner_lc[0])
            memcpy(r->owner_lc, op->room_owner_lc, sizeof r->owner_lc);
        if (op->room_made)
            hub_broker_room_made(h->hb, r->name, r->owner_lc);
    } else if (created && !r->dm) {
        /* A room only a guest's or a moved connection's join finds missing: recorded without
         * an owner. */
        struct chat_op *note = chat_op_new(CHAT_ROOM_CREATE, op->worker, 0);
        memcpy(note->room, op->room, sizeof note->room);
        chat_to_store(note);
        hub_broker_room_made(h->hb, r->name, NULL);
    }
    if (op->stage == 0) {
        if (op->catch_up) /* followed from here: the replay below gives what came before */
            hub_broker_dm_caught_up(h->hb, r->name);
        if (!op->rejoin)
            member_add(h, r, op);
        if (!op->has_since || op->since >= r->latest) {
            join_reply(h, r, op);
            return;
        }
        op->join_after = op->since;
        join_continue(h, r, op);
        return;
    }
    /* Back from the store with (since, join_after] read. */
    if (op->err) {
        op->seq = 0;
        reply(h, op); /* the worker undoes the membership with a gone */
        return;
    }
    join_continue(h, r, op);
}

/* --- identity --- */

/*
 * Names that differ only by characters people confuse (text_skeleton: I/l/1, O/0, trailing
 * . _ -) share a skeleton. Only one registered name may hold a skeleton, and a guest may not take
 * a name that looks like a registered one or like another online guest's: nobody can pass for
 * someone else by a look-alike name. Each skeleton in use records its registered (or
 * registering) name and how many online guests hold a name with it.
 *
 * The common entry, one online guest and no registered name, is that guest's status record
 * itself (the table's value tagged with its low bit; the key borrowed from the record's
 * skeleton): no block of its own. Any other is a struct lookalike.
 */
struct lookalike {
    char *registered_lc; /* owned; NULL while no registered name holds it */
    /* Online guests holding it. When there is one, whether it is a given name is a look-up in
     * the statuses (user_status_guest): no copy of its name here. */
    uint32_t guests;
    char skel[]; /* the table's key (borrowed): one block sized to it */
};

/* The online guest whose record is the look-alike entry v, or NULL when v is a struct lookalike. */
static struct user_status *lookalike_lone_guest(void *v)
{
    return (uintptr_t)v & 1 ? (struct user_status *)((uintptr_t)v & ~(uintptr_t)1) : NULL;
}

/* The struct lookalike of skel, a lone guest's entry made into one (create: made if missing). */
static struct lookalike *lookalike_block(struct hub *h, const char *skel, bool create)
{
    void *v = map_get(&h->lookalikes, skel);
    if (v && !lookalike_lone_guest(v))
        return v;
    if (!v && !create)
        return NULL;
    size_t len = strlen(skel);
    struct lookalike *l = xcalloc(1, offsetof(struct lookalike, skel) + len + 1);
    memcpy(l->skel, skel, len + 1);
    l->guests = v ? 1 : 0;
    map_put(&h->lookalikes, l->skel, l); /* the key is now the block's copy */
    return l;
}

static struct lookalike *lookalike_get(struct hub *h, const char *name_lc, bool create)
{
    char skel[CHAT_NAME_MAX];
    text_skeleton(name_lc, strlen(name_lc), skel);
    return lookalike_block(h, skel, create);
}

static void lookalike_drop_if_unused(struct hub *h, struct lookalike *l)
{
    if (l->registered_lc || l->guests)
        return;
    map_del(&h->lookalikes, l->skel);
    free(l);
}

/* True when name_lc looks like a registered name or an online guest's name that is not its own. */
static bool lookalike_taken(struct hub *h, const char *name_lc)
{
    char skel[CHAT_NAME_MAX];
    text_skeleton(name_lc, strlen(name_lc), skel);
    void *v = map_get(&h->lookalikes, skel);
    if (!v)
        return false;
    struct user_status *lone = lookalike_lone_guest(v);
    if (lone)
        return strcmp(lone->name_lc, name_lc) != 0;
    struct lookalike *l = v;
    if (l->registered_lc && strcmp(l->registered_lc, name_lc) != 0)
        return true;
    return l->guests > 1 || (l->guests == 1 && !user_status_guest(&h->statuses, name_lc));
}

/* A registered (or registering) name takes its skeleton; the first one keeps it (a database from
 * before this rule may hold two). */
static void lookalike_register(struct hub *h, const char *name_lc)
{
    struct lookalike *l = lookalike_get(h, name_lc, true);
    if (!l->registered_lc)
        l->registered_lc = xstrdup(name_lc);
}

static void lookalike_unregister(struct hub *h, const char *name_lc)
{
    struct lookalike *l = lookalike_get(h, name_lc, false);
    if (!l || !l->registered_lc || strcmp(l->registered_lc, name_lc) != 0)
        return;
    free(l->registered_lc);
    l->registered_lc = NULL;
    lookalike_drop_if_unused(h, l);
}

/* The guest of record u came online: it holds its skeleton. */
static void lookalike_guest_in(struct hub *h, struct user_status *u)
{
    const char *skel = user_status_skeleton(u);
    void *v = map_get(&h->lookalikes, skel);
    if (!v)
        map_put(&h->lookalikes, skel, (void *)((uintptr_t)u | 1));
    else
        lookalike_block(h, skel, true)->guests++;
}

/* The guest of record u went offline (before the record may go). */
static void lookalike_guest_out(struct hub *h, struct user_status *u)
{
    const char *skel = user_status_skeleton(u);
    void *v = map_get(&h->lookalikes, skel);
    if (!v)
        return;
    if (lookalike_lone_guest(v)) {
        if (lookalike_lone_guest(v) == u)
            map_del(&h->lookalikes, skel);
        return;
    }
    struct lookalike *l = v;
    if (l->guests > 0)
        l->guests--;
    lookalike_drop_if_unused(h, l);
}

static void guest_online(struct hub *h, const struct chat_op *op)
{
    struct user_status *u =
        user_status_guest_in(&h->statuses, op->user, op->user_lc, op->guest_session);
    if (u->guests == 1)
        lookalike_guest_in(h, u);
}

static void guest_offline(struct hub *h, const char *name_lc, uint64_t session)
{
    struct user_status *u = user_status_guest(&h->statuses, name_lc);
    if (!u || u->guest_session != session)
        return;
    if (u->guests == 1) {
        lookalike_guest_out(h, u);
        hub_nodes_guest_release(h->nodes, name_lc);
    }
    user_status_guest_out(&h->statuses, u); /* may free u, and name_lc with it */
}

/* A guest's name asked of the broker (no other live node may hold it) before the online guests
 * table takes it; meanwhile the name counts as taken here. */
struct guest_claim {
    struct hub *h;
    struct chat_op *op;
    void (*go)(struct hub *h, struct chat_op *op); /* the login, once the name is this node's */
    char name_lc[CHAT_NAME_MAX];
};

static void guest_claimed(void *arg, bool ok)
{
    struct guest_claim *c = arg;
    struct hub *h = c->h;
    struct chat_op *op = c->op;
    map_del(&h->claiming, c->name_lc);
    void (*go)(struct hub *, struct chat_op *) = c->go;
    free(c);
    if (!ok) {
        reply_error(h, op, PROTO_NAME_TAKEN, "a guest with that name is online");
        return;
    }
    go(h, op);
}

/* Claims name_lc (shown: as the guest or the account shows it) for op's guest session (0: a
 * registration), then go, unless this node holds it already; false (answered) while another
 * login or registration claims it. */
static bool guest_claim(struct hub *h, struct chat_op *op, const char *name_lc, const char *shown,
                        uint64_t session, void (*go)(struct hub *h, struct chat_op *op))
{
    if (map_get(&h->claiming, name_lc)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "a guest with that name is online");
        return false;
    }
    if (user_status_guest(&h->statuses, name_lc)) { /* held here already: by this session */
        go(h, op);
        return true;
    }
    struct guest_claim *c = xcalloc(1, sizeof *c);
    c->h = h, c->op = op, c->go = go;
    memcpy(c->name_lc, name_lc, strnlen(name_lc, CHAT_NAME_MAX - 1));
    map_put(&h->claiming, c->name_lc, (void *)1);
    hub_nodes_guest_claim(h->nodes, c->name_lc, shown, session, guest_claimed, c);
    return true;
}

/* A claim made for a login or registration that did not take the name: let go, unless an
 * online guest here holds it. */
static void claim_drop(struct hub *h, const char *name_lc)
{
    if (!user_status_guest(&h->statuses, name_lc))
        hub_nodes_guest_release(h->nodes, name_lc);
}

static void claim_ignored(void *arg, bool ok)
{
    (void)arg, (void)ok;
}

/* True when name_lc is held by an online guest of a session other than `session`. */
static bool held_by_other_guest(struct hub *h, const char *name_lc, uint64_t session)
{
    struct user_status *u = user_status_guest(&h->statuses, name_lc);
    return u && u->guest_session != session;
}

static void login_guest_claimed(struct hub *h, struct chat_op *op);

static void login_guest(struct hub *h, struct chat_op *op)
{
    if (op->stage == 2) { /* the store could not keep the token */
        guest_offline(h, op->user_lc, op->guest_session);
        reply(h, op);
        return;
    }
    if (map_get(&h->claiming, op->user_lc)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "a guest with that name is online");
        return;
    }
    if (map_get(&h->registered, op->user_lc)) {
        reply_error(h, op, PROTO_BAD_CREDENTIALS,
                    "that name is registered: log in with its password");
        return;
    }
    if (map_get(&h->registering, op->user_lc) || held_by_other_guest(h, op->user_lc, 0)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "a guest with that name is online");
        return;
    }
    if (lookalike_taken(h, op->user_lc)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "that name looks too much like someone else's");
        return;
    }
    /* Guest sessions outlive restarts in their tokens: make ids unique across runs. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    op->guest_session = ((uint64_t)ts.tv_sec << 20) + (++h->next_guest_session & 0xfffff);
    guest_claim(h, op, op->user_lc, op->user, op->guest_session, login_guest_claimed);
}

/* The name is this node's in the broker: checked again here (a registration may have come
 * meanwhile), then the guest is online. */
static void login_guest_claimed(struct hub *h, struct chat_op *op)
{
    if (map_get(&h->registered, op->user_lc) || map_get(&h->registering, op->user_lc) ||
        held_by_other_guest(h, op->user_lc, 0) || lookalike_taken(h, op->user_lc)) {
        claim_drop(h, op->user_lc);
        reply_error(h, op, PROTO_NAME_TAKEN, "a guest with that name is online");
        return;
    }
    op->guest = true;
    guest_online(h, op);
    chat_to_store(op);
}

/* The name is this node's in the broker (or was already): the guest is online. */
static void login_token_guest_claimed(struct hub *h, struct chat_op *op)
{
    if (map_get(&h->registered, op->user_lc) || map_get(&h->registering, op->user_lc) ||
        held_by_other_guest(h, op->user_lc, op->guest_session)) {
        claim_drop(h, op->user_lc);
        reply_error(h, op, PROTO_NAME_TAKEN, "another guest with that name is online");
        return;
    }
    guest_online(h, op);
    reply(h, op);
}

static void login_token_guest(struct hub *h, struct chat_op *op)
{
    if (map_get(&h->claiming, op->user_lc)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "another guest with that name is online");
        return;
    }
    if (map_get(&h->registered, op->user_lc) || map_get(&h->registering, op->user_lc)) {
        reply_error(h, op, PROTO_BAD_TOKEN, "that guest name has been registered since");
        return;
    }
    if (held_by_other_guest(h, op->user_lc, op->guest_session)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "another guest with that name is online");
        return;
    }
    guest_claim(h, op, op->user_lc, op->user, op->guest_session, login_token_guest_claimed);
}

/* Rule 51: the public rooms the guest's connections are in (an online guest's name is its
 * session's alone), for the store to save for the account in the registration's transaction. */
static void guest_rooms(struct hub *h, struct chat_op *op, const char *name_lc)
{
    size_t n = 0, cap = 0;
    size_t lc_len = strlen(name_lc);
    for (struct hub_room *r = h->occupied; r; r = r->occ_next) {
        if (r->dm || !ordset_find(&r->index, name_lc, lc_len))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            op->gone_rooms = xrealloc(op->gone_rooms, cap * sizeof *op->gone_rooms);
        }
        memcpy(op->gone_rooms[n++], r->name, CHAT_ROOM_MAX);
    }
    op->gone_rooms_n = n;
}

/* A registration's checks (rule 75 order); false after answering. */
static bool register_allowed(struct hub *h, struct chat_op *op, const char *name_lc)
{
    if (map_get(&h->registered, name_lc) || map_get(&h->registering, name_lc) ||
        held_by_other_guest(h, name_lc, op->registered_guest ? op->guest_session : 0)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "that name is taken");
        return false;
    }
    if (lookalike_taken(h, name_lc)) {
        reply_error(h, op, PROTO_NAME_TAKEN, "that name looks too much like someone else's");
        return false;
    }
    return true;
}

static void register_claimed(struct hub *h, struct chat_op *op);
static void register_done(struct hub *h, struct chat_op *op, const char *name_lc);

static void register_user(struct hub *h, struct chat_op *op)
{
    char name_lc[CHAT_NAME_MAX];
    text_lower(op->name, strlen(op->name), name_lc);
    if (op->stage == 0) {
        /* No guest on another node may hold the name either: claimed until registered. */
        if (register_allowed(h, op, name_lc))
            guest_claim(h, op, name_lc, op->name, op->registered_guest ? op->guest_session : 0,
                        register_claimed);
        return;
    }
    register_done(h, op, name_lc);
}

/* The name is this node's in the broker: checked again (things changed meanwhile), then on to
 * auth, which hashes the password and stores the account. */
static void register_claimed(struct hub *h, struct chat_op *op)
{
    char name_lc[CHAT_NAME_MAX];
    text_lower(op->name, strlen(op->name), name_lc);
    if (!register_allowed(h, op, name_lc)) {
        claim_drop(h, name_lc);
        return;
    }
    map_put(&h->registering, name_lc, (void *)1);
    lookalike_register(h, name_lc);
    if (op->registered_guest)
        guest_rooms(h, op, name_lc);
    chat_to_auth(op);
}

/* Back from auth: registered (the name is the account's: the claim goes), or not. */
static void register_done(struct hub *h, struct chat_op *op, const char *name_lc)
{
    map_del(&h->registering, name_lc);
    if (op->err) {
        lookalike_unregister(h, name_lc);
        claim_drop(h, name_lc);
        reply(h, op);
        return;
    }
    struct hub_user *u = xcalloc(1, sizeof *u);
    memcpy(u->name, op->name, sizeof u->name);
    u->created_ms = op->user_created_ms;
    free(map_put(&h->registered, name_lc, u));
    hub_broker_registered(h->hb, op->name, op->user_created_ms);
    if (op->registered_guest) {
        struct user_status *g = user_status_guest(&h->statuses, name_lc);
        if (g)
            lookalike_guest_out(h, g);
        user_status_became_registered(&h->statuses, name_lc, op->guest_session, op->name);
        for (int w = 0; w < h->n_workers; w++) {
            struct deliver *d = out(h, w);
            d->kind = DELIVER_BECAME_REGISTERED;
            memcpy(d->user_a, op->name, sizeof d->user_a);
            d->guest_session = op->guest_session;
            d->created_ms = op->user_created_ms;
        }
    }
    claim_drop(h, name_lc);
    reply(h, op);
}

/* --- messages --- */

/* The display name of a user known to the hub, or NULL. */
static const char *known_user(struct hub *h, const char *name_lc)
{
    struct hub_user *u = map_get(&h->registered, name_lc);
    if (u)
        return u->name;
    struct user_status *g = user_status_guest(&h->statuses, name_lc);
    return g ? user_status_name(g) : NULL;
}

static const char *lookup_user(void *arg, const char *name_lc)
{
    return known_user(arg, name_lc);
}

static void event_route_rest(struct hub *h, struct chat_op *op);

/* A dm's `to` known (peer: the name as shown): its room and other party. */
static void dm_route(struct chat_op *op, const char *peer)
{
    snprintf(op->peer, sizeof op->peer, "%s", peer);
    text_dm_room(op->user_lc, op->to_lc, op->room);
    op->room_is_dm = true;
}

/* A dm to a name the hub does not know, asked of the other nodes (a guest online only there):
 * the op waits here, one lookup at most, freed with the hub if it stops first. */
struct peer_lookup {
    struct hub *h;
    struct chat_op *op;
};

static void peer_looked_up(void *arg, const char *shown)
{
    struct peer_lookup *q = arg;
    struct hub *h = q->h;
    struct chat_op *op = q->op;
    map_del_u64(&h->looking, (uintptr_t)q);
    free(q);
    /* Known here meanwhile (registered, or the guest came here): as known here. */
    const char *peer = known_user(h, op->to_lc);
    if (!peer)
        peer = shown;
    if (!peer) {
        reply_error(h, op, PROTO_NO_SUCH_USER, "no user by that name");
        return;
    }
    dm_route(op, peer);
    event_route_rest(h, op);
}

/* A request that stores a timeline event, on its way to the store: a direct message's room and
 * other party, and the mentions of a send's or edit's text (rule 57), made now, with the users
 * registered and online as the store will see them (a guest online on another node only is
 * asked of the broker for a dm's peer; mentions know this node's guests alone). */
static void event_route(struct hub *h, struct chat_op *op)
{
    if (op->to_lc[0]) {
        const char *peer = known_user(h, op->to_lc);
        if (!peer && hub_nodes_multi(h->nodes)) {
            struct peer_lookup *q = xmalloc(sizeof *q);
            *q = (struct peer_lookup){h, op};
            map_put_u64(&h->looking, (uintptr_t)q, q);
            hub_nodes_guest_lookup(h->nodes, op->to_lc, peer_looked_up, q);
            return;
        }
        if (!peer) {
            reply_error(h, op, PROTO_NO_SUCH_USER, "no user by that name");
            return;
        }
        dm_route(op, peer);
    } else if (op->room_is_dm) {
        char a[CHAT_NAME_MAX], b[CHAT_NAME_MAX];
        text_parse_dm_room(op->room, strlen(op->room), a, b);
        const char *other = strcmp(a, op->user_lc) == 0 ? b : a;
        const char *peer = known_user(h, other);
        snprintf(op->peer, sizeof op->peer, "%s", peer ? peer : other);
        memcpy(op->to_lc, other, sizeof op->to_lc);
    }
    event_route_rest(h, op);
}

/* The rest of event_route, the dm's peer known: a moderation's subject, mentions, the store. */
static void event_route_rest(struct hub *h, struct chat_op *op)
{
    if (chat_op_moderates(op->kind) && op->kind != CHAT_TOPIC) {
        /* Rule 62: the user in events as registered, else as the online guest, else as given;
         * role needs a registered name. */
        struct hub_user *u = map_get(&h->registered, op->subject_lc);
        op->subject_registered = u != NULL;
        if (op->kind == CHAT_ROLE && !u) {
            reply_error(h, op, PROTO_NO_SUCH_USER, "no registered user by that name");
            return;
        }
        const char *shown = known_user(h, op->subject_lc);
        if (shown)
            snprintf(op->subject, sizeof op->subject, "%s", shown);
    }
    /* Most texts mention nobody: one memchr, and no scan. */
    if ((op->kind == CHAT_SEND || op->kind == CHAT_EDIT) && op->text &&
        memchr(op->text, '@', op->text_len)) {
        char names[TIMELINE_MENTIONS_MAX];
        if (timeline_mentions(op->text, op->text_len, lookup_user, h, names))
            op->mentions = xstrdup(names);
    }
    chat_to_store(op);
}

/* Puts m (taking its reference) in place of the ring's entry of the same seq, if the ring has
 * it: the ring keeps replay forms, which an edit or a delete changes (rule 48). */
static void ring_replace(struct hub_room *r, struct msg_rec *m)
{
    uint64_t first = ring_first(r);
    if (m->seq < first || m->seq > r->latest || r->ring_len == 0) {
        msg_rec_release(m);
        return;
    }
    struct msg_rec *slot = &r->ring[(r->ring_head + (m->seq - first)) % r->ring_alloc];
    msg_rec_release(slot);
    *slot = *m;
}

/* A timeline event stored (stage 1): handed to the broker, which publishes it and gives it back
 * in seq order with the other nodes' (event_deliver). Nothing stored (stage 2): the ack alone. */
static void event_stored(struct hub *h, struct chat_op *op)
{
    if (op->stage == 1) {
        hub_broker_stored(h->hb, op, op->room_is_dm ? op->peer : NULL);
        return;
    }
    hub_broker_acked_again(h->hb, op);
    struct hub_room *r = room_get(h, op->room, true);
    run_close(h, r);
    reply(h, op); /* the ack */
}

/* Forgets r's ring: an event came after a gap the hub never saw (its room was not followed), and
 * the ring must hold consecutive seqs. */
static void ring_clear(struct hub_room *r)
{
    for (uint32_t i = 0; i < r->ring_len; i++)
        msg_rec_release(&r->ring[(r->ring_head + i) % r->ring_alloc]);
    r->ring_len = 0;
    r->ring_head = 0;
}

/* Sends a dm event (taking its references) to every connection of both its users here. */
static void to_dm_users(struct hub *h, const char *room, struct msg_rec rec, const char *a,
                        const char *b)
{
    for (int w = 0; w < h->n_workers; w++) {
        struct deliver *d = out(h, w);
        d->kind = DELIVER_DM;
        snprintf(d->room, sizeof d->room, "%s", room);
        d->rec = msg_rec_ref(&rec);
        memcpy(d->user_a, a, sizeof d->user_a);
        memcpy(d->user_b, b, sizeof d->user_b);
    }
    msg_rec_release(&rec);
}

/* A stored event, this node's or another's, in the room's seq order (hub_broker.h): kept in the
 * ring, what it changed in the ring replaced, and delivered; then the ack of this node's own. An
 * event at or below what the hub has already (the broker gave back one it would not deliver) is
 * only acked. */
static void event_deliver(void *arg, struct hub_event *ev)
{
    struct hub *h = arg;
    struct chat_op *op = ev->op;
    if (h->closing) { /* the broker gives back what it held as the hub ends */
        if (op)
            chat_op_free(op);
        hub_event_free(ev);
        return;
    }
    struct hub_room *r = room_get(h, ev->room, true);
    run_close(h, r);
    uint64_t seq = ev->live.seq;
    if (seq > r->latest) {
        /* An edit, delete or reaction from elsewhere changed a message the ring may hold, and
         * only the storing node has its new replay form: replays read the store instead. */
        if (seq > r->latest + 1 || (ev->target && r->ring_len && ev->target >= ring_first(r)))
            ring_clear(r);
        seed_event(h, r, ev);
        r->latest = seq;
        ring_push(h, r, &ev->ring);
        if (op) {
            for (size_t i = 0; i < op->n_msgs; i++)
                ring_replace(r, &op->msgs[i]);
            op->n_msgs = 0;
        }
        const struct chat_op *mod = op ? op : ev->mod;
        if (mod && chat_op_moderates(mod->kind) && !r->dm) {
            mod_stored(r, mod);
            if (mod->kind == CHAT_KICK || mod->kind == CHAT_BAN)
                kick_out(h, r, mod);
        }
        /* Direct messages reach every connection of both users, wherever they are. */
        if (r->dm && ev->user_a[0])
            to_dm_users(h, r->name, msg_rec_ref(&ev->live), ev->user_a, ev->user_b);
        else if (!r->dm)
            to_room(h, r, msg_rec_ref(&ev->live), 0, NULL);
    }
    if (op) {
        metrics_add(METRIC_MESSAGES_ACCEPTED, 1);
        reply(h, op); /* the ack */
    }
    hub_event_free(ev);
}

/* For hub_broker: whether a user has a connection here, and the newest seq delivered of a room. */
static bool user_is_here(void *arg, const char *user_lc)
{
    struct hub *h = arg;
    const struct user_status *u = user_status_of(&h->statuses, user_lc);
    return u && u->conns > 0;
}

static uint64_t room_latest(void *arg, const char *room)
{
    struct hub_room *r = room_get(arg, room, false);
    return r ? r->latest : 0;
}

static void typing(struct hub *h, struct chat_op *op)
{
    struct hub_room *r = room_get(h, op->room, false);
    /* Rule 65: a muted user's typing is dropped. */
    if (r && !r->large && !restricted(r->mutes, op->user_lc, NULL)) /* rule 83: none in a large
                                                                       room */
        to_room(h, r, events_typing(r->name, op->user), 0, op->user_lc);
    chat_op_free(op);
}

/* --- status (rules 68, 69) --- */

static void status_timer_arm(struct hub *h)
{
    if (h->status_timer_on || !h->statuses.gone_head)
        return;
    h->status_timer_on = true;
    struct loop *loop = h->service->loop;
    timer_start(loop, &h->status_timer,
                user_status_due(h->statuses.gone_head, loop_now(loop), h->status_grace_ms));
}

/* The grace of the first records gone offline has ended: they fall back to online (forgotten). */
static void on_status_timer(struct timer *t)
{
    struct hub *h = (struct hub *)((char *)t - offsetof(struct hub, status_timer));
    h->status_timer_on = false;
    user_status_expire(&h->statuses, loop_now(h->service->loop), h->status_grace_ms);
    status_timer_arm(h);
}

/* The user's first connection here: online for the other nodes, with its status if it has one
 * (kept through a grace here while they may have forgotten it). */
static void status_first_here(struct hub *h, const struct user_status *u)
{
    if (u->conns != 1)
        return;
    hub_nodes_user_here(h->nodes, u->name_lc, true);
    if (u->away || u->text)
        hub_nodes_status(h->nodes, user_status_name(u), u->away, u->text);
}

/* A login on its way to welcome: one more connection of the identity, and its status. */
static void status_login(struct hub *h, struct chat_op *op)
{
    struct user_status *u =
        user_status_connect(&h->statuses, op->user, op->user_lc, op->guest ? op->guest_session : 0);
    if (u->conns == 1) /* before its channel is subscribed (status_first_here) */
        hub_broker_user_dms(h->hb, op->user_lc, op);
    if (op->guest)
        op->n_rooms = 0; /* rule 19: a guest's welcome lists no dm room (read for its starts) */
    status_first_here(h, u);
    op->away = u->away;
    free(op->text);
    op->text = u->text ? xstrdup(u->text) : NULL;
    op->text_len = u->text ? strlen(u->text) : 0;
    reply(h, op);
}

/* A connection moved here by a live upgrade: counted in, with the status it knew (every
 * connection of a user knew the same one). */
static void status_adopt(struct hub *h, struct chat_op *op)
{
    struct user_status *u =
        user_status_connect(&h->statuses, op->user, op->user_lc, op->status_session);
    user_status_set_state(&h->statuses, u, op->away, op->text, op->text ? op->text_len : 0);
    status_first_here(h, u);
}

/* status (rule 69): the reply, the user's other connections told, and if it changed, presence
 * to the other users in each (small) room where the user has a connection. */
static void status_tell(struct hub *h, struct user_status *u, uint64_t skip_conn, bool changed);

static void status_request(struct hub *h, struct chat_op *op)
{
    /* By name: the requester holds it (a guest becoming the account may still say its session). */
    struct user_status *u = user_status_of(&h->statuses, op->user_lc);
    if (!u) /* cannot happen: a logged-in connection is counted at its login */
        u = user_status_connect(&h->statuses, op->user, op->user_lc,
                                op->guest ? op->guest_session : 0);
    bool changed = user_status_set_state(&h->statuses, u, op->away, op->text, op->text_len);
    status_tell(h, u, op->conn_id, changed);
    if (changed)
        hub_nodes_status(h->nodes, user_status_name(u), u->away, u->text);
    reply(h, op);
}

/* Presence with the user's new status to every (small) room here where it is a member: those
 * where it has a connection, and with other nodes, those where it is only on another node. */
static void status_presence(struct hub *h, struct user_status *u, const char *name,
                            const char *name_lc, bool away, const char *text)
{
    char lc[CHAT_NAME_MAX]; /* to_room copies a whole name buffer: never a record's own block */
    snprintf(lc, sizeof lc, "%s", name_lc);
    for (uint32_t i = 0; u && i < u->n_rooms; i++) {
        struct hub_room *r = user_status_rooms(u)[i];
        if (!r->large) /* rule 83: no presence in a large room */
            to_room(h, r, events_presence_state(r->name, name, false, away, text), 0, lc);
    }
    if (!hub_nodes_multi(h->nodes))
        return;
    size_t len = strlen(lc);
    for (struct hub_room *r = h->occupied; r; r = r->occ_next) {
        const struct ordset_node *node = ordset_find(&r->index, lc, len);
        if (node && member_of(node).conns == 0 && !r->large)
            to_room(h, r, events_presence_state(r->name, name, false, away, text), 0, lc);
    }
}

/* u's status is told to its connections (but skip_conn), and if it changed, to the others. */
static void status_tell(struct hub *h, struct user_status *u, uint64_t skip_conn, bool changed)
{
    struct msg_rec rec = events_status(u->away, u->text);
    for (int w = 0; w < h->n_workers; w++) {
        struct deliver *d = out(h, w);
        d->kind = DELIVER_STATUS;
        d->rec = msg_rec_ref(&rec);
        snprintf(d->user_a, sizeof d->user_a, "%s", u->name_lc);
        d->skip_conn = skip_conn;
        d->away = u->away;
        d->text = u->text ? xstrdup(u->text) : NULL;
    }
    msg_rec_release(&rec);
    if (changed)
        status_presence(h, u, user_status_name(u), u->name_lc, u->away, u->text);
}

void hub_remote_status(struct hub *h, const char *user, bool away, const char *text)
{
    size_t len = strlen(user);
    if (len >= CHAT_NAME_MAX)
        return;
    char lc[CHAT_NAME_MAX];
    text_lower(user, len, lc);
    struct user_status *u = user_status_of(&h->statuses, lc);
    if (u) { /* its connections here follow the status it set elsewhere */
        if (user_status_set_state(&h->statuses, u, away, text, text ? strlen(text) : 0))
            status_tell(h, u, 0, true);
        return;
    }
    status_presence(h, NULL, user, lc, away, text);
}

static void leave_rooms(struct hub *h, struct chat_op *op, char (*rooms)[CHAT_ROOM_MAX], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct hub_room *r = room_get(h, rooms[i], false);
        if (r)
            member_remove(h, r, op);
    }
}

/* --- read markers and saved rooms (protocol 1.1 rules 66, 67) --- */

/* A registered user's leave: every worker takes the room from the user's other connections that
 * joined it; each of those then leaves it here as a disconnect would (presence as for a leave). */
static void leave_elsewhere(struct hub *h, struct chat_op *op)
{
    for (int w = 0; w < h->n_workers; w++) {
        struct deliver *d = out(h, w);
        d->kind = DELIVER_LEFT;
        memcpy(d->room, op->room, sizeof d->room);
        memcpy(d->user_a, op->user_lc, sizeof d->user_a);
        d->skip_conn = op->conn_id;
    }
    hub_broker_left(h->hb, op->user_lc, op->room);
}

/* A read marker moved: the user's other connections get the `read` without id. */
static void read_moved(struct hub *h, struct chat_op *op)
{
    struct msg_rec rec = events_read(op->room, op->seq);
    for (int w = 0; w < h->n_workers; w++) {
        struct deliver *d = out(h, w);
        d->kind = DELIVER_USER;
        d->rec = msg_rec_ref(&rec);
        memcpy(d->user_a, op->user_lc, sizeof d->user_a);
        d->skip_conn = op->conn_id;
    }
    msg_rec_release(&rec);
    hub_broker_read(h->hb, op->user_lc, op->room, op->seq);
}

/* --- what other nodes tell (hub_broker.h) --- */

static void remote_read(void *arg, const char *user_lc, const char *room, uint64_t seq)
{
    struct hub *h = arg;
    struct msg_rec rec = events_read(room, seq);
    for (int w = 0; w < h->n_workers; w++) {
        struct deliver *d = out(h, w);
        d->kind = DELIVER_USER;
        d->rec = msg_rec_ref(&rec);
        snprintf(d->user_a, sizeof d->user_a, "%s", user_lc);
    }
    msg_rec_release(&rec);
}

static void remote_left(void *arg, const char *user_lc, const char *room)
{
    struct hub *h = arg;
    for (int w = 0; w < h->n_workers; w++) {
        struct deliver *d = out(h, w);
        d->kind = DELIVER_LEFT;
        snprintf(d->room, sizeof d->room, "%s", room);
        snprintf(d->user_a, sizeof d->user_a, "%s", user_lc);
    }
}

static void load_user(void *arg, const char *name, int64_t created_ms);

static void remote_registered(void *arg, const char *name, int64_t created_ms)
{
    if (text_valid_user(name, strlen(name)))
        load_user(arg, name, created_ms);
}

/* A room made on another node, with the owner the store gave it: a guest's join here shows it
 * (rule 59) without waiting for a registered join to ask the store. */
static void remote_room_made(void *arg, const char *room, const char *owner_lc)
{
    struct hub_room *r = room_get(arg, room, true);
    if (owner_lc && !r->dm && !r->owner_lc[0] && strlen(owner_lc) < sizeof r->owner_lc)
        memcpy(r->owner_lc, owner_lc, strlen(owner_lc) + 1);
}

/* A clean stop's goodbye (hub_goodbye): main waits on it while it goes to the store and back
 * and the broker says it. Freed by the last of main and the mail's journey to let go (a mail
 * dropped in a mailbox is freed as a control mail: main has let go by then). */
struct goodbye_mail {
    struct mail mail; /* MAIL_GOODBYE */
    bool from_store;  /* back from the store: every event it committed before is published */
    atomic_int refs;  /* main's and the journey's */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool said;
};

static void goodbye_unref(struct goodbye_mail *g)
{
    if (atomic_fetch_sub(&g->refs, 1) == 1) {
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        free(g);
    }
}

static void goodbye_said(void *arg)
{
    struct goodbye_mail *g = arg;
    pthread_mutex_lock(&g->lock);
    g->said = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    goodbye_unref(g);
}

static void goodbye_mail(struct hub *h, struct goodbye_mail *g)
{
    if (!g->from_store) {
        g->from_store = true; /* behind every op this hub has sent the store */
        mailbox_post(chat_route()->store, &g->mail);
        return;
    }
    hub_broker_goodbye(h->hb, goodbye_said, g);
}

void hub_goodbye(struct service *s, unsigned wait_ms)
{
    struct hub *h = s->ctx;
    if (!h || !h->cfg->broker)
        return;
    struct goodbye_mail *g = xcalloc(1, sizeof *g);
    g->mail.kind = MAIL_GOODBYE;
    atomic_init(&g->refs, 2);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    mailbox_post(&s->mailbox, &g->mail);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&g->lock);
    while (!g->said && pthread_cond_timedwait(&g->cond, &g->lock, &until) == 0)
        ;
    bool said = g->said;
    pthread_mutex_unlock(&g->lock);
    if (!said)
        log_warn("msg=goodbye_late wait_ms=%u reason=\"the other nodes drop this node's users "
                 "when its lease runs out\"",
                 wait_ms);
    goodbye_unref(g);
}

static void on_mail(struct service *s, struct mail *m)
{
    struct hub *h = s->ctx;
    if (!h->turn_open) {
        /* The store posts a commit's answers before counting it: the answers of every commit
         * counted here are in the mailbox, and this turn takes them. */
        h->turn_open = true;
        h->turn_commits = atomic_load_explicit(&chat_store_progress()->commits,
                                               memory_order_acquire);
    }
    if (m->kind == MAIL_GOODBYE) {
        goodbye_mail(h, (struct goodbye_mail *)m);
        return;
    }
    if (m->kind == MAIL_STORE_GATE) {
        /* On to the store behind every op this hub has sent there (store_thread.h). */
        mailbox_post(chat_route()->store, m);
        return;
    }
    if (m->kind == MAIL_RELAY) {
        struct relay_mail *rm = (struct relay_mail *)m;
        /* What is due to the workers goes first, a wave that waits too. */
        runs_close_all(h);
        if (h->wave_waiting) {
            h->wave_waiting = false;
            timer_stop(s->loop, &h->wave_timer);
        }
        send_out(h);
        for (int w = 0; w < rm->n && w < h->n_workers; w++)
            mailbox_post(chat_route()->workers[w], rm->each[w]);
        free(rm->each);
        free(rm);
        return;
    }
    struct chat_op *op = (struct chat_op *)m;
    if (chat_op_event_to_store(op))
        atomic_fetch_add_explicit(&chat_store_progress()->hub_took, 1, memory_order_relaxed);
    struct hub_room *r;
    if (op->status_fetch) {
        status_login(h, op);
        return;
    }
    switch (op->kind) {
    case CHAT_JOIN:
        join(h, op);
        break;
    case CHAT_LEAVE:
        r = room_get(h, op->room, false);
        if (r && !op->not_joined)
            member_remove(h, r, op);
        if (!op->guest && !op->room_is_dm)
            leave_elsewhere(h, op); /* rule 67: the user's other connections leave it too */
        reply(h, op);
        break;
    case CHAT_READ:
        read_moved(h, op);
        reply(h, op);
        break;
    case CHAT_GONE:
        leave_rooms(h, op, op->gone_rooms, op->gone_rooms_n);
        if (op->guest)
            guest_offline(h, op->user_lc, op->guest_session);
        if (op->status_conn) {
            const struct user_status *u =
                user_status_get(&h->statuses, op->user_lc, op->status_session);
            if (u && u->conns == 1)
                hub_nodes_user_here(h->nodes, op->user_lc, false);
            user_status_disconnect(&h->statuses, op->user_lc, op->status_session,
                                   loop_now(h->service->loop));
            if (!user_is_here(h, op->user_lc))
                hub_broker_user_gone(h->hb, op->user_lc);
            status_timer_arm(h);
        }
        chat_op_free(op);
        break;
    case CHAT_WHO:
        r = room_get(h, op->room, false);
        if (r)
            add_members(h, r, op);
        reply(h, op);
        break;
    case CHAT_ROOMS: {
        /* Rule 85: a page of public rooms in byte order after op->after, O(log rooms + page). */
        const struct ordset_node *n =
            ordset_after(&h->public_rooms, op->has_after ? op->after : NULL, op->after_len);
        for (; n && op->n_rooms < op->limit; n = ordset_next(n)) {
            r = ordset_value(n);
            chat_op_add_room(op, r->name, (uint32_t)r->index.count, r->latest);
            if (r->topic)
                op->rooms[op->n_rooms - 1].topic = xstrdup(r->topic);
        }
        op->more = n != NULL;
        reply(h, op);
        break;
    }
    case CHAT_TOPIC:
        if (op->topic_query) { /* telnet's /topic: what the room's topic is now */
            r = room_get(h, op->room, false);
            free(op->topic);
            op->topic = r && r->topic && !r->dm ? xstrdup(r->topic) : NULL;
            reply(h, op);
            break;
        }
        /* fall through */
    case CHAT_SEND:
    case CHAT_EDIT:
    case CHAT_DELETE:
    case CHAT_REACT:
    case CHAT_ROLE:
    case CHAT_KICK:
    case CHAT_BAN:
    case CHAT_UNBAN:
    case CHAT_MUTE:
    case CHAT_UNMUTE:
        if (op->stage == 0)
            event_route(h, op);
        else
            event_stored(h, op);
        break;
    case CHAT_TYPING:
        typing(h, op);
        break;
    case CHAT_FILL:
        hub_broker_filled(h->hb, op);
        break;
    case CHAT_RING_SEED:
        seed_landed(h, op);
        break;
    case CHAT_DM_SEQS:
        hub_broker_dm_seqs(h->hb, op);
        break;
    case CHAT_STATUS:
        status_request(h, op);
        break;
    case CHAT_REGISTER:
        register_user(h, op);
        break;
    case CHAT_LOGIN_GUEST:
        login_guest(h, op);
        break;
    case CHAT_LOGIN_TOKEN:
        login_token_guest(h, op);
        break;
    case CHAT_ADOPT:
        /* A guest moved here by a live upgrade: online, its name its own, as it was. */
        if (op->guest) {
            /* This process is a new node to the broker: the name is claimed again. */
            if (!user_status_guest(&h->statuses, op->user_lc))
                hub_nodes_guest_claim(h->nodes, op->user_lc, op->user, op->guest_session,
                                      claim_ignored, NULL);
            guest_online(h, op);
        }
        status_adopt(h, op);
        chat_op_free(op);
        break;
    default:
        log_error("msg=hub_unexpected_op kind=%d", op->kind);
        chat_op_free(op);
    }
}

static void load_room(void *arg, const char *room, uint64_t last_seq, int64_t created_ms)
{
    (void)created_ms;
    room_get(arg, room, true)->latest = last_seq;
}

static void load_user(void *arg, const char *name, int64_t created_ms)
{
    struct hub *h = arg;
    char lc[CHAT_NAME_MAX];
    text_lower(name, strnlen(name, TEXT_NAME_MAX), lc);
    struct hub_user *u = xcalloc(1, sizeof *u);
    memcpy(u->name, name, strnlen(name, TEXT_NAME_MAX));
    u->created_ms = created_ms;
    free(map_put(&h->registered, lc, u));
    lookalike_register(h, lc);
}

int hub_init(struct service *s, const struct config *cfg, struct store *db, int n_workers)
{
    /* Rule 59: every --admin is a registered account, or the server does not start. */
    for (size_t i = 0; i < cfg->n_admins; i++) {
        struct store_user u;
        int rc = db->ops->user_get(db, cfg->admins[i], &u);
        if (rc == -ENOENT) {
            fprintf(stderr, "parley: --admin %s: no registered account has that name\n",
                    cfg->admins[i]);
            log_error("msg=admin_not_registered admin=%s", cfg->admins[i]);
            return -EINVAL;
        }
        if (rc < 0)
            return rc;
    }
    struct hub *h = xcalloc(1, sizeof *h);
    h->cfg = cfg;
    h->n_workers = n_workers;
    pool_sizes_init(&h->pools); /* before any room or record */
    map_init(&h->rooms, true);
    map_init(&h->registered, true);
    map_init(&h->registering, true);
    map_init(&h->seeds, true);
    map_init_borrowed(&h->lookalikes);
    h->out = xcalloc((size_t)n_workers, sizeof *h->out);
    ordset_init(&h->public_rooms, 1);
    h->service = s;
    h->tick_ms = TICK_MS;
    const char *tick = getenv("PARLEY_TEST_TICK_MS");
    if (tick && atoi(tick) > 0) {
        h->tick_ms = (uint64_t)atoi(tick);
        log_warn("msg=test_hook PARLEY_TEST_TICK_MS=%llu reason=\"for tests only: large rooms' "
                 "tick every %llu ms, not 5 s\"",
                 (unsigned long long)h->tick_ms, (unsigned long long)h->tick_ms);
    }
    user_status_init(&h->statuses);
    user_status_use_pools(&h->statuses, &h->pools);
    h->status_grace_ms = STATUS_GRACE_MS;
    const char *grace = getenv("PARLEY_TEST_STATUS_GRACE_MS");
    if (grace && atoi(grace) > 0) {
        h->status_grace_ms = (uint64_t)atoi(grace);
        log_warn("msg=test_hook PARLEY_TEST_STATUS_GRACE_MS=%llu reason=\"for tests only: a "
                 "status outlives its user's last connection by %llu ms, not 75 s\"",
                 (unsigned long long)h->status_grace_ms, (unsigned long long)h->status_grace_ms);
    }
    int rc = db->ops->load_rooms(db, load_room, h);
    if (rc == 0)
        rc = db->ops->load_users(db, load_user, h);
    if (rc == 0)
        rc = db->ops->load_moderation(db, wall_ms(), load_mod, h);
    if (rc < 0) {
        log_error("msg=hub_load_failed error=%d", rc);
        return rc;
    }

    room_get(h, "general", true); /* always exists */
    rc = service_init(s, "hub", on_mail, before_sleep, h);
    if (rc < 0)
        return rc;
    struct hub_broker_hooks hooks = {
        .hub = h,
        .deliver = event_deliver,
        .user_here = user_is_here,
        .latest = room_latest,
        .user_read = remote_read,
        .user_left = remote_left,
        .registered = remote_registered,
        .room_made = remote_room_made,
    };
    h->hb = hub_broker_new(s->loop, cfg, &hooks);
    if (!h->hb)
        return -EINVAL;
    map_init(&h->claiming, true);
    map_init(&h->looking, false);
    /* Guest sessions' low 20 bits count from a random start: two nodes making sessions in the
     * same second must not make the same ones (a session is an identity on every node). */
    uint32_t start;
    if (getrandom(&start, sizeof start, 0) == (ssize_t)sizeof start)
        h->next_guest_session = start & 0xfffff;
    /* The non-timeline side of the same broker: members, users, guests' names, statuses. */
    h->nodes = hub_nodes_new(h, hub_broker_broker(h->hb));
    hub_broker_set_nodes(h->hb, h->nodes);
    timer_init(&h->sweep, on_sweep);
    timer_init(&h->status_timer, on_status_timer);
    timer_init(&h->wave_timer, on_wave_timer);
    timer_start(s->loop, &h->sweep, loop_now(s->loop) + h->tick_ms);
    return 0;
}

void hub_destroy(struct service *s)
{
    struct hub *h = s->ctx;
    if (h) {
        /* Before the loop goes: the broker unwatches its sockets, and gives back what it held. */
        h->closing = true;
        hub_broker_set_nodes(h->hb, NULL);
        hub_nodes_free(h->nodes); /* uses the broker: first */
        h->nodes = NULL;
        hub_broker_free(h->hb);
        h->hb = NULL;
    }
    service_destroy(s, chat_op_drop);
    if (!h)
        return;
    map_free(&h->claiming);
    /* Lookups the broker will never answer now: their ops go unanswered, as queued ones do. */
    uint64_t key;
    void *q;
    for (size_t i = 0; map_next_u64(&h->looking, &i, &key, &q);) {
        chat_op_free(((struct peer_lookup *)q)->op);
        free(q);
    }
    map_free(&h->looking);
    size_t pos = 0;
    const char *k;
    void *v;
    while (map_next(&h->seeds, &pos, &k, &v)) {
        struct ring_seed *seed = v;
        for (size_t i = 0; i < seed->n_wait; i++)
            chat_op_free(seed->wait[i]);
        free(seed->wait);
        free(seed);
    }
    map_free(&h->seeds);
    pos = 0;
    while (map_next(&h->rooms, &pos, &k, &v))
        room_free(v);
    map_free(&h->rooms);
    ordset_free(&h->public_rooms);
    map_free_all(&h->registered);
    map_free(&h->registering);
    for (pos = 0; map_next(&h->lookalikes, &pos, &k, &v);) {
        if (lookalike_lone_guest(v)) /* a status record: freed with the statuses */
            continue;
        free(((struct lookalike *)v)->registered_lc);
        free(v);
    }
    map_free(&h->lookalikes);
    user_status_free(&h->statuses);
    pool_sizes_destroy(&h->pools);
    for (int w = 0; w < h->n_workers; w++)
        deliver_batch_free(h->out[w]);
    free(h->out);
    free(h->open_runs);
    free(h);
}
