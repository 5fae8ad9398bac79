/* chat_session: chat requests, results and deliveries for the connections of one worker. */
#include "chat_session.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "events.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "pool.h"
#include "timeline.h"
#include "ws_session.h"

/* A room's members on this worker: each a connection and its sroom. */
struct local_member {
    struct conn *c;
    struct chat_sroom *r;
};

struct local_room {
    struct local_member *m;
    size_t n, cap;
    char name[CHAT_ROOM_MAX]; /* the index's key (borrowed) and each member's sroom name */
};

/* A connection whose join this batch answered, to be counted in the room's local members at
 * the room's presence run later in the same batch, and given that run from event `from` on. */
struct run_joiner {
    uint64_t conn_id;
    uint32_t from;
    char room[CHAT_ROOM_MAX];
};

struct chat_worker {
    struct map conns; /* id -> struct conn, every chat connection */
    struct map rooms; /* room -> struct local_room (keys borrowed from it) */
    /* user_lc -> the newest logged-in connection of that user, whose session's user_lc is the
     * key (borrowed); the others follow through chat_session.user_next. */
    struct map users;
    struct run_joiner *joiners; /* of the batch being handled */
    size_t n_joiners, cap_joiners;
    /* The sessions and their room entries: slabs of this worker's (pool.h), so a long-lived
     * client's state is densely packed and shares no page with a join storm's buffers. */
    struct pool sessions, srooms;
    /* The connections holding a send bucket, looked at every second while there are any: each
     * bucket full again and quiet is given back (sweep_sends). */
    uint64_t *senders;
    size_t n_senders, cap_senders;
    struct timer sweep;
    struct worker *w;
    /* The batch's wave being written (struct wave): kept for the next. */
    const struct deliver **wave_msg;
    uint32_t *wave_off;
    size_t cap_wave;
};

/* Every idle logged-in client has one session: a field that adds padding shows here (on LP64). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct chat_session) == 160,
               "struct chat_session grew: see docs/architecture.md, Memory of an idle connection");

static struct chat_worker *chat_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->chat;
}

static const struct config *cfg_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->cfg;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- local indexes --- */

static void local_room_add(struct chat_worker *cw, struct conn *c, struct chat_sroom *r,
                           const char *name)
{
    struct local_room *lr = map_get(&cw->rooms, name);
    if (!lr) {
        lr = xcalloc(1, sizeof *lr);
        size_t n = strnlen(name, sizeof lr->name - 1);
        memcpy(lr->name, name, n);
        map_put(&cw->rooms, lr->name, lr);
    }
    r->name = lr->name;
    if (lr->n == lr->cap) {
        lr->cap = lr->cap ? lr->cap * 2 : 8;
        lr->m = xrealloc(lr->m, lr->cap * sizeof *lr->m);
    }
    r->local_at = lr->n;
    lr->m[lr->n++] = (struct local_member){c, r};
}

static void local_room_remove(struct chat_worker *cw, struct chat_sroom *r)
{
    struct local_room *lr = map_get(&cw->rooms, r->name);
    if (!lr || r->local_at >= lr->n || lr->m[r->local_at].r != r)
        return;
    /* The last member takes its place: O(1), so a room's mass disconnect is not quadratic. */
    lr->m[r->local_at] = lr->m[--lr->n];
    if (r->local_at < lr->n)
        lr->m[r->local_at].r->local_at = r->local_at;
    if (lr->n == 0) {
        map_del(&cw->rooms, lr->name);
        free(lr->m);
        free(lr);
    }
    r->name = NULL; /* the sroom is freed next: its name went with the local room */
}

static void local_user_add(struct chat_worker *cw, struct conn *c)
{
    struct chat_session *s = c->session;
    s->user_next = map_get(&cw->users, s->user_lc);
    map_put(&cw->users, s->user_lc, c);
}

static void local_user_remove(struct chat_worker *cw, struct conn *c)
{
    struct chat_session *s = c->session;
    struct conn *head = map_get(&cw->users, s->user_lc);
    if (head == c) {
        /* The next connection's session holds the key from now on. */
        if (s->user_next)
            map_put(&cw->users, chat_session_of(s->user_next)->user_lc, s->user_next);
        else
            map_del(&cw->users, s->user_lc);
    }
    for (struct conn *p = head; p && p != c; p = chat_session_of(p)->user_next) {
        if (chat_session_of(p)->user_next == c) {
            chat_session_of(p)->user_next = s->user_next;
            break;
        }
    }
    s->user_next = NULL;
}

struct chat_sroom *chat_session_room(struct chat_session *s, const char *name)
{
    for (size_t i = 0; i < s->n_rooms; i++)
        if (strcmp(chat_session_rooms(s)[i]->name, name) == 0)
            return chat_session_rooms(s)[i];
    return NULL;
}

/* c's session joins room name: a new sroom, on the session's list and in the worker's room (whose
 * name it shares). Most clients are in one room: the list starts in the session (rooms_.one). */
static struct chat_sroom *session_add_room(struct conn *c, const char *name)
{
    struct chat_session *s = c->session;
    if (s->cap_rooms == 0) {
        s->cap_rooms = 1;
    } else if (s->n_rooms == s->cap_rooms) {
        struct chat_sroom **rooms = xmalloc(s->cap_rooms * 2 * sizeof *rooms);
        memcpy(rooms, chat_session_rooms(s), s->n_rooms * sizeof *rooms);
        if (s->cap_rooms > 1)
            free(s->rooms_.many);
        s->rooms_.many = rooms;
        s->cap_rooms *= 2;
    }
    struct chat_sroom *r = pool_get(&chat_of(c)->srooms);
    r->joined_order = ++s->join_counter;
    chat_session_rooms(s)[s->n_rooms++] = r;
    local_room_add(chat_of(c), c, r, name);
    return r;
}

static void session_remove_room(struct chat_session *s, struct chat_sroom *r)
{
    for (size_t i = 0; i < s->n_rooms; i++) {
        if (chat_session_rooms(s)[i] == r) {
            chat_session_rooms(s)[i] = chat_session_rooms(s)[--s->n_rooms];
            break;
        }
    }
    pool_put(&chat_of(s->conn)->srooms, r);
}

/* --- writing --- */

/* The bytes of rec this connection's transport writes, or 0 when it shows nothing of it. */
static size_t rec_len(const struct conn *c, const struct msg_rec *rec)
{
    if (c->transport == CONN_TELNET)
        return rec->tn ? rec->tn->len : 0;
    return rec->ws ? rec->ws->len - rec->ws_off : 0;
}

/* Queues rec's form for c. The WebSocket frame is shared by every recipient of the event, and
 * so is its compressed twin when c negotiated permessage-deflate: made once, not per recipient. */
static void send_rec(struct conn *c, const struct msg_rec *rec)
{
    if (c->transport == CONN_TELNET)
        conn_send(c, chunk_ref(rec->tn), 0, rec->tn->len);
    else
        ws_session_send_data(c, chunk_ref(rec->ws), rec->ws_off, MSG_JSON_OFF, rec->ws->len, true);
}

static void slow_consumer(struct conn *c)
{
    /* A reader this far behind resumes later from its last seq; we do not buffer for it. */
    metrics_add(METRIC_SLOW_CONSUMERS, 1);
    log_info("msg=slow_consumer conn=%llu queued=%zu", (unsigned long long)c->id, c->out_bytes);
    if (c->transport == CONN_TELNET) {
        /* As on WebSocket: what is queued still goes out, then a word of why, then the close. */
        static const char notice[] =
            "* You fell too far behind; reconnect and use /history to catch up. Bye.\r\n";
        conn_send_copy(c, notice, sizeof notice - 1);
        conn_close_after_flush(c);
    } else {
        ws_session_close(c, WS_CLOSE_POLICY, "slow consumer");
    }
}

/* Makes room for one more backlog entry at either end. */
static struct chat_backlog *backlog_reserve(struct chat_session *s)
{
    struct chat_backlog *old = s->backlog;
    if (old && old->n < old->cap)
        return old;
    size_t cap = old ? old->cap * 2 : 64;
    struct chat_backlog *b = xmalloc(sizeof *b + cap * sizeof b->e[0]);
    *b = (struct chat_backlog){.cap = cap};
    if (old) {
        for (size_t i = 0; i < old->n; i++)
            b->e[i] = old->e[(old->head + i) % old->cap];
        b->n = old->n;
        b->live_bytes = old->live_bytes;
        free(old);
    }
    return s->backlog = b;
}

/* Entries held back, and the bytes of live events among them: 0 without a backlog. */
static size_t backlog_n(const struct chat_session *s)
{
    return s->backlog ? s->backlog->n : 0;
}

static size_t backlog_live_bytes(const struct chat_session *s)
{
    return s->backlog ? s->backlog->live_bytes : 0;
}

/* The entry i places after the head (i < backlog_n). */
static struct chat_backlog_entry *backlog_at(const struct chat_session *s, size_t i)
{
    struct chat_backlog *b = s->backlog;
    return &b->e[(b->head + i) % b->cap];
}

static void backlog_push(struct chat_session *s, struct chat_backlog_entry e, size_t live_len)
{
    struct chat_backlog *b = backlog_reserve(s);
    b->e[(b->head + b->n++) % b->cap] = e;
    if (e.live)
        b->live_bytes += live_len;
}

/* Puts e ahead of everything queued: a replay's page goes before the rest of its replay. */
static void backlog_push_front(struct chat_session *s, struct chat_backlog_entry e)
{
    struct chat_backlog *b = backlog_reserve(s);
    b->head = (b->head + b->cap - 1) % b->cap;
    b->e[b->head] = e;
    b->n++;
}

/* Takes the head entry off (backlog_n > 0). */
static void backlog_pop(struct chat_session *s)
{
    struct chat_backlog *b = s->backlog;
    b->head = (b->head + 1) % b->cap;
    b->n--;
}

static void backlog_free(struct chat_session *s)
{
    for (size_t i = 0; i < backlog_n(s); i++) {
        struct chat_backlog_entry *e = backlog_at(s, i);
        msg_rec_release(&e->rec);
        free(e->replay); /* a page on its way finds the connection gone and is dropped */
    }
    free(s->backlog);
    s->backlog = NULL;
}

/* How much queued output the backlog tops up to: a steady stream without a large buffer. */
static size_t backlog_fill(const struct conn *c)
{
    size_t half = cfg_of((struct conn *)c)->output_limit / 2;
    return half < (512u << 10) ? half : (512u << 10);
}

/* Asks the store for the next page of the replay at the head of c's backlog. */
static void replay_read(struct conn *c, struct chat_replay *rp)
{
    struct chat_op *op =
        chat_op_new(CHAT_REPLAY, (uint16_t)((struct worker *)c->set->owner)->id, c->id);
    memcpy(op->room, rp->room, sizeof op->room);
    op->join_after = rp->after;
    op->seq = rp->until;
    op->ts = rp->ts;
    rp->reading = true;
    chat_to_store(op);
}

void chat_session_drained(struct conn *c)
{
    struct chat_session *s = c->session;
    if (!s)
        return;
    while (backlog_n(s) > 0 && conn_is_open(c) && c->out_bytes < backlog_fill(c)) {
        struct chat_backlog_entry e = *backlog_at(s, 0);
        if (e.replay) {
            if (!e.replay->reading)
                replay_read(c, e.replay);
            return; /* the rest waits behind the page */
        }
        backlog_pop(s);
        size_t len = rec_len(c, &e.rec);
        if (e.live)
            s->backlog->live_bytes -= len;
        if (len)
            send_rec(c, &e.rec);
        msg_rec_release(&e.rec);
    }
    if (backlog_n(s) == 0 && s->backlog)
        backlog_free(s);
}

/* Whether len more bytes of live output for c stay within the output limit. */
static bool output_fits(struct conn *c, const struct chat_session *s, size_t len)
{
    size_t limit = cfg_of(c)->output_limit;
    /* What this turn queued has not met the socket yet (a burst of deliveries can outgrow the
     * limit in one turn): the peer is behind only if the socket does not take it now. */
    return c->out_bytes + backlog_live_bytes(s) + len <= limit ||
           conn_write_now(c) + backlog_live_bytes(s) + len <= limit;
}

/* Writes rec's form for c's transport, closing c as a slow consumer past the output limit. */
static void chat_session_write(struct conn *c, const struct msg_rec *rec)
{
    struct chat_session *s = c->session;
    if (!conn_is_open(c) || !s)
        return;
    size_t len = rec_len(c, rec);
    if (!len)
        return; /* no form for this transport (typing on telnet) */
    if (!output_fits(c, s, len)) {
        slow_consumer(c);
        return;
    }
    if (backlog_n(s) > 0) /* behind a replay that is still being written */
        backlog_push(s, (struct chat_backlog_entry){.rec = msg_rec_ref(rec), .live = true}, len);
    else
        send_rec(c, rec);
}

/* Queues a replayed message behind whatever is held back; it does not count as falling behind. */
static void replay_write(struct conn *c, const struct msg_rec *rec)
{
    if (rec_len(c, rec))
        backlog_push(c->session, (struct chat_backlog_entry){.rec = msg_rec_ref(rec)}, 0);
}

/* A replay c needs could not be read: rather than leave a gap, close; the client resumes from
 * its last seq. */
static void replay_lost(struct conn *c, const char *room)
{
    log_warn("msg=replay_failed conn=%llu room=%s", (unsigned long long)c->id, room);
    if (c->transport == CONN_TELNET) {
        static const char notice[] = "! server_busy: the room's history is not available "
                                     "right now; reconnect to catch up. Bye.\r\n";
        conn_send_copy(c, notice, sizeof notice - 1);
        conn_close_after_flush(c);
    } else {
        ws_session_close(c, WS_CLOSE_INTERNAL, "history not available");
    }
}

/* A page of the replay at the head of c's backlog came back from the store: it goes first,
 * then the rest of that replay if any is left. */
static void replay_page(struct conn *c, struct chat_op *op)
{
    struct chat_session *s = c->session;
    struct chat_replay *rp = backlog_n(s) > 0 ? backlog_at(s, 0)->replay : NULL;
    if (!rp || !rp->reading)
        return; /* cannot happen: only the head's replay is ever read */
    if (op->err) {
        replay_lost(c, op->room);
        return;
    }
    if (op->truncated) {
        /* Retention overtook this reader: it is behind what the server keeps. Resuming, it
         * learns so from `truncated` in its join. */
        slow_consumer(c);
        return;
    }
    backlog_pop(s);
    if (op->join_after < rp->until) {
        rp->after = op->join_after;
        rp->reading = false;
        backlog_push_front(s, (struct chat_backlog_entry){.replay = rp});
    } else {
        free(rp);
    }
    for (size_t i = op->n_msgs; i-- > 0;)
        backlog_push_front(s, (struct chat_backlog_entry){.rec = msg_rec_ref(&op->msgs[i])});
    metrics_add(METRIC_DELIVERIES, op->n_msgs);
    chat_session_drained(c);
}

/* room (NULL: none) is the room of a join with since on its way. A copy is held only meanwhile:
 * the session has no room for it the rest of the time. */
static void replay_pending_set(struct chat_session *s, const char *room)
{
    if (!room && !chat_session_cold(s)->replay_pending)
        return;
    struct chat_session_cold *k = chat_session_cold_make(s);
    free(k->replay_pending);
    k->replay_pending = room ? xstrdup(room) : NULL;
    chat_session_cold_settle(s);
}

/* Leaves a message of room to the replay of s's join with since of that room, if one is on its
 * way: written now, it would come twice, and ahead of the `joined` it belongs after. Returns
 * true when it was left (and notes that it was). A moved session's room the hub does not count
 * it in yet (its join again still to come) leaves every message to that join's replay too:
 * the other members' messages reach it here meanwhile, and one written would move its last
 * seq past those stored before it, which its replay would then skip. */
static bool defer_to_replay(struct chat_session *s, const char *room, const struct chat_sroom *r)
{
    const char *pending = chat_session_cold(s)->replay_pending;
    if (!pending || strcmp(pending, room) != 0)
        return r && !r->hub; /* r: s's entry of room, NULL if none (passed: a hot path) */
    s->replay_skipped = true;
    return true;
}

/* s's place in a dm room it has not joined, or NULL. */
static struct chat_dm_place *dm_place(const struct chat_session *s, const char *room)
{
    struct chat_dms *d = chat_session_cold(s)->dms;
    for (uint32_t i = 0; d && i < d->n; i++)
        if (strcmp(d->at[i].room, room) == 0)
            return &d->at[i];
    return NULL;
}

/* A new place of s in a dm room (not there yet), the oldest forgotten past CHAT_DMS_MAX; NULL
 * when every place is still being caught up (none is forgotten before its catch-up). */
static struct chat_dm_place *dm_place_add(struct chat_session *s, const char *room)
{
    struct chat_dms *d = chat_session_cold(s)->dms;
    if (d && d->n == CHAT_DMS_MAX) {
        uint32_t old = 0;
        while (old < d->n && d->at[old].catching_up)
            old++;
        if (old == d->n)
            return NULL;
        memmove(&d->at[old], &d->at[old + 1], (--d->n - old) * sizeof d->at[0]);
    }
    if (!d || d->n == d->cap) {
        uint32_t cap = d ? d->cap * 2 : 2;
        if (cap > CHAT_DMS_MAX)
            cap = CHAT_DMS_MAX;
        bool made = !d;
        d = xrealloc(d, sizeof *d + cap * sizeof d->at[0]);
        if (made)
            d->n = 0;
        d->cap = cap;
        chat_session_cold_make(s)->dms = d;
    }
    struct chat_dm_place *p = &d->at[d->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->room, sizeof p->room, "%s", room);
    return p;
}

/* Writes a room message to a member once: only when it is newer than what the member saw.
 * Returns 1 when written, 0 when the member had it (callers sum these for the metric). */
static unsigned write_seq(struct conn *c, struct chat_sroom *r, const char *room,
                          const struct msg_rec *rec)
{
    if (r && rec->seq <= r->last_seq)
        return 0;
    if (r)
        r->last_seq = rec->seq;
    chat_session_write(c, rec);
    /* Telnet moves a registered user's read marker to what it showed (rule 78). */
    struct chat_session *s = c->session;
    if (rec_len(c, rec) && conn_is_open(c) && s && !s->guest && s->transport->shown)
        s->transport->shown(c, room, rec->seq);
    return 1;
}

/* --- sessions --- */

struct chat_session *chat_session_open(struct conn *c, const struct chat_transport *t)
{
    struct chat_session *s = pool_get(&chat_of(c)->sessions);
    s->conn = c;
    s->transport = t;
    c->session = s;
    map_put_u64(&chat_of(c)->conns, c->id, c);
    return s;
}

/* Tells the hub a connection left rooms (and, for a guest, went offline; with status_conn, one
 * of the user's connections went: rule 69's count). */
static void post_gone_conn(struct chat_session *s, uint16_t worker, char (*rooms)[CHAT_ROOM_MAX],
                           size_t n_rooms, bool guest_offline, bool status_conn)
{
    if (n_rooms == 0 && !guest_offline && !status_conn)
        return;
    struct chat_op *op = chat_op_new(CHAT_GONE, worker, 0);
    op->status_conn = status_conn;
    op->status_session = s->guest ? s->guest_session : 0;
    chat_session_user(s, op->user);
    memcpy(op->user_lc, s->user_lc, sizeof op->user_lc);
    op->guest = guest_offline;
    op->guest_session = s->guest_session;
    op->gone_rooms = rooms;
    op->gone_rooms_n = n_rooms;
    chat_to_hub(op);
}

static void post_gone(struct chat_session *s, uint16_t worker, char (*rooms)[CHAT_ROOM_MAX],
                      size_t n_rooms, bool guest_offline)
{
    post_gone_conn(s, worker, rooms, n_rooms, guest_offline, false);
}

/* Tells the hub this connection is no longer in one room it counted it in. */
static void post_gone_room(struct chat_session *s, uint16_t worker, const char *room)
{
    char(*one)[CHAT_ROOM_MAX] = xmalloc(sizeof *one);
    memcpy(one[0], room, CHAT_ROOM_MAX);
    post_gone(s, worker, one, 1, false);
}

/* Forgets the password check kept for a live upgrade, wiping the password. */
static void pw_free(struct chat_session *s)
{
    struct chat_pw *pw = chat_session_cold(s)->pw;
    if (!pw)
        return;
    if (pw->password) {
        sodium_memzero(pw->password, pw->password_len);
        free(pw->password);
    }
    free(pw->id_json);
    free(pw);
    s->cold->pw = NULL;
    chat_session_cold_settle(s);
}

struct chat_session_cold *chat_session_cold_make(struct chat_session *s)
{
    if (!s->cold)
        s->cold = xcalloc(1, sizeof *s->cold);
    return s->cold;
}

void chat_session_cold_settle(struct chat_session *s)
{
    static const struct chat_session_cold none;
    if (s->cold && memcmp(s->cold, &none, sizeof none) == 0) {
        free(s->cold);
        s->cold = NULL;
    }
}

void chat_session_close(struct conn *c)
{
    struct chat_session *s = c->session;
    if (!s)
        return;
    struct chat_worker *cw = chat_of(c);
    struct worker *w = c->set->owner;
    char(*names)[CHAT_ROOM_MAX] = s->n_rooms ? xmalloc(s->n_rooms * sizeof *names) : NULL;
    size_t n_names = 0;
    for (size_t i = 0; i < s->n_rooms; i++) {
        /* Only the rooms the hub counts this connection in (after a move, some may not be yet). */
        if (chat_session_rooms(s)[i]->hub)
            memcpy(names[n_names++], chat_session_rooms(s)[i]->name, CHAT_ROOM_MAX);
        local_room_remove(cw, chat_session_rooms(s)[i]);
        pool_put(&cw->srooms, chat_session_rooms(s)[i]);
    }
    if (s->logged_in)
        local_user_remove(cw, c);
    /* A connection moved to another process by a live upgrade has not left anything: its
     * session goes on there. */
    if (s->logged_in && !c->moved)
        post_gone_conn(s, (uint16_t)w->id, names, n_names, s->guest, true);
    else
        free(names);
    map_del_u64(&cw->conns, c->id);
    pw_free(s);
    backlog_free(s);
    if (s->cap_rooms > 1)
        free(s->rooms_.many);
    free(s->charged_cids);
    if (s->cold) { /* transport_state is the transport's, freed by its on_close */
        free(s->cold->status_text);
        free(s->cold->react);
        free(s->cold->search);
        if (s->cold->send)
            metrics_gauge_add(GAUGE_SEND_BUCKETS, -1);
        free(s->cold->send);
        free(s->cold->replay_pending);
        free(s->cold->dms);
        free(s->cold);
    }
    pool_put(&cw->sessions, s);
    c->session = NULL;
}

/* --- rate limits (PROTOCOL.md rules 23 and 42) --- */

/* Counts an attempt in a per-second window of 10 s; false once over ten times the rate. */
static bool window_count(uint16_t attempts[10], uint64_t *attempts_sec, uint32_t rate, uint64_t now)
{
    uint64_t sec = now / 1000;
    if (sec != *attempts_sec) {
        uint64_t gap = sec - *attempts_sec;
        for (uint64_t i = 1; i <= gap && i <= 10; i++)
            attempts[(*attempts_sec + i) % 10] = 0;
        *attempts_sec = sec;
    }
    if (attempts[sec % 10] < UINT16_MAX)
        attempts[sec % 10]++;
    uint32_t total = 0;
    for (int i = 0; i < 10; i++)
        total += attempts[i];
    return total <= 10u * rate;
}

/* Takes a token from a bucket of N tokens refilled at N per 10 s. */
static bool bucket_take(double *tokens, uint64_t *refill_ms, uint32_t rate, uint64_t now)
{
    *tokens += (double)(now - *refill_ms) * rate / 10000.0;
    if (*tokens > rate)
        *tokens = rate;
    *refill_ms = now;
    if (*tokens < 1.0)
        return false;
    *tokens -= 1.0;
    return true;
}

/* True when b is as a new bucket would be: full, and no attempts in its 10 s window. */
static bool bucket_full(const struct chat_bucket *b, uint32_t rate, uint64_t now)
{
    if (b->tokens + (double)(now - b->refill_ms) * rate / 10000.0 < rate)
        return false;
    if (now / 1000 >= b->attempts_sec + 10)
        return true; /* every count is older than the window */
    for (int i = 0; i < 10; i++)
        if (b->attempts[i])
            return false;
    return true;
}

/* The send bucket may go: as a missing one reads (full, no typing within rule 21's second). */
static bool sends_quiet(const struct chat_sends *t, uint32_t rate, uint64_t now)
{
    return bucket_full(&t->b, rate, now) && (!t->last_typing_ms || now - t->last_typing_ms >= 1000);
}

/* Every second while any connection holds a send bucket: gives back those quiet again. */
static void sweep_sends(struct timer *t)
{
    struct chat_worker *cw =
        (struct chat_worker *)((char *)t - offsetof(struct chat_worker, sweep));
    uint64_t now = loop_now(cw->w->loop);
    size_t kept = 0;
    for (size_t i = 0; i < cw->n_senders; i++) {
        struct conn *c = map_get_u64(&cw->conns, cw->senders[i]);
        struct chat_session *s = c ? c->session : NULL;
        struct chat_sends *b = s ? chat_session_cold(s)->send : NULL;
        if (!b)
            continue; /* closed */
        if (sends_quiet(b, cw->w->cfg->rate_limit, now)) {
            free(b);
            metrics_gauge_add(GAUGE_SEND_BUCKETS, -1);
            s->cold->send = NULL;
            chat_session_cold_settle(s);
            continue;
        }
        cw->senders[kept++] = cw->senders[i];
    }
    cw->n_senders = kept;
    if (kept) {
        timer_start(cw->w->loop, t, now + 1000);
    } else {
        free(cw->senders); /* nothing left behind by a burst of senders */
        cw->senders = NULL;
        cw->cap_senders = 0;
    }
}

/* c's session gives s its send bucket t (full, or as a record had it). */
static struct chat_sends *sends_attach(struct conn *c, struct chat_session *s, struct chat_sends *t)
{
    struct chat_worker *cw = chat_of(c);
    chat_session_cold_make(s)->send = t;
    metrics_gauge_add(GAUGE_SEND_BUCKETS, 1);
    if (cw->n_senders == cw->cap_senders) {
        cw->cap_senders = cw->cap_senders ? 2 * cw->cap_senders : 16;
        cw->senders = xrealloc(cw->senders, cw->cap_senders * sizeof *cw->senders);
    }
    cw->senders[cw->n_senders++] = c->id;
    if (!timer_active(&cw->sweep))
        timer_start(cw->w->loop, &cw->sweep, conn_now(c) + 1000);
    return t;
}

/* The send bucket, made full at the first send or typing: an idle client has none. */
static struct chat_sends *send_bucket(struct conn *c)
{
    struct chat_session *s = c->session;
    struct chat_sends *t = chat_session_cold(s)->send;
    if (t)
        return t;
    t = xcalloc(1, sizeof *t);
    t->b.tokens = cfg_of(c)->rate_limit;
    t->b.refill_ms = conn_now(c);
    return sends_attach(c, s, t);
}

static struct chat_bucket *send_bucket_of(struct conn *c)
{
    return &send_bucket(c)->b;
}

/* Takes a token from the send bucket (N tokens, refilled at N per 10 s). */
static bool take_token(struct conn *c, uint32_t rate, uint64_t now)
{
    struct chat_bucket *b = send_bucket_of(c);
    return bucket_take(&b->tokens, &b->refill_ms, rate, now);
}

/* A bucket of its own (react, search), made full at first use: most clients never use it, and
 * pay nothing for it. */
static struct chat_bucket *own_bucket(struct conn *c, struct chat_bucket **slot, uint32_t rate)
{
    if (!*slot) {
        *slot = xcalloc(1, sizeof **slot);
        (*slot)->tokens = rate;
        (*slot)->refill_ms = conn_now(c);
    }
    return *slot;
}

static struct chat_bucket *react_bucket(struct conn *c)
{
    struct chat_session *s = c->session;
    return own_bucket(c, &chat_session_cold_make(s)->react, cfg_of(c)->react_rate);
}

static struct chat_bucket *search_bucket(struct conn *c)
{
    struct chat_session *s = c->session;
    return own_bucket(c, &chat_session_cold_make(s)->search, cfg_of(c)->search_rate);
}

uint64_t chat_session_token_at(struct conn *c, enum chat_bucket_kind bucket)
{
    struct chat_session *s = c->session;
    bool search = bucket == CHAT_BUCKET_SEARCH; /* telnet has no react */
    uint32_t rate = search ? cfg_of(c)->search_rate : cfg_of(c)->rate_limit;
    uint64_t now = conn_now(c);
    if (!rate || !s || !s->logged_in)
        return now;
    const struct chat_sends *sends = chat_session_cold(s)->send;
    if (!search && !sends)
        return now; /* no send bucket: a full one */
    const struct chat_bucket *b = search ? search_bucket(c) : &sends->b;
    double have = b->tokens;
    uint64_t refill_ms = b->refill_ms;
    /* The same sum bucket_take makes, so "there now" here means bucket_take succeeds now. */
    double tokens = have + (double)(now - refill_ms) * rate / 10000.0;
    if (tokens >= 1.0)
        return now;
    /* The ms the missing part takes to refill, rounded up by one: a caller that asks again then
     * finds the token, or (rounding) asks once more a millisecond later. */
    return now + (uint64_t)((1.0 - tokens) * 10000.0 / rate) + 1;
}

/* How many recent charged (room, cid) pairs a connection remembers: enough for a client that
 * resends everything it had pending after a reconnect, pipelined. */
#define CHARGED_CIDS 16

/* A key for a send's room (or recipient) and cid: FNV-1a over both. */
static uint64_t cid_key(const struct chat_op *op)
{
    uint64_t h = 14695981039346656037ull;
    const char *parts[3] = {op->to_lc[0] ? "@" : "#", op->to_lc[0] ? op->to_lc : op->room, op->cid};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* a separator no name or cid byte can fake */
    }
    return h ? h : 1;
}

/* True when this connection already paid for a send with op's room and cid: op is a retry. */
static bool is_charged_retry(const struct chat_session *s, const struct chat_op *op)
{
    if (!op->has_cid || !s->charged_cids)
        return false;
    uint64_t key = cid_key(op);
    for (int i = 0; i < CHARGED_CIDS; i++)
        if (s->charged_cids[i] == key)
            return true;
    return false;
}

static void remember_charged(struct chat_session *s, const struct chat_op *op)
{
    if (!op->has_cid)
        return;
    if (!s->charged_cids)
        s->charged_cids = xcalloc(CHARGED_CIDS, sizeof *s->charged_cids);
    s->charged_cids[s->charged_cids_next] = cid_key(op);
    s->charged_cids_next = (uint8_t)((s->charged_cids_next + 1) % CHARGED_CIDS);
}

/* Closes c for flooding (rule 23): 1008 on WebSocket. */
static void flood_close(struct conn *c)
{
    struct chat_session *s = c->session;
    char user[CHAT_NAME_MAX];
    log_info("msg=flood_closed conn=%llu user=%s", (unsigned long long)c->id,
             chat_session_user(s, user));
    if (c->transport == CONN_WEBSOCKET)
        ws_session_close(c, WS_CLOSE_POLICY, "too many messages");
    else
        conn_close_after_flush(c);
}

/* Rule 73's close for a bucket of its own: every request of its type counts, whatever its
 * answer. */
static bool count_own(struct conn *c, struct chat_bucket *(*bucket)(struct conn *), uint32_t rate)
{
    struct chat_session *s = c->session;
    if (!rate || !s->logged_in)
        return true;
    struct chat_bucket *b = bucket(c);
    if (window_count(b->attempts, &b->attempts_sec, rate, conn_now(c)))
        return true;
    flood_close(c);
    return false;
}

bool chat_session_count_react(struct conn *c)
{
    return count_own(c, react_bucket, cfg_of(c)->react_rate);
}

bool chat_session_count_search(struct conn *c)
{
    return count_own(c, search_bucket, cfg_of(c)->search_rate);
}

bool chat_session_count_send(struct conn *c)
{
    return count_own(c, send_bucket_of, cfg_of(c)->rate_limit);
}

/* --- starting ops --- */

static bool is_party(const struct chat_session *s, const char *dm_room)
{
    char a[CHAT_NAME_MAX], b[CHAT_NAME_MAX];
    return text_parse_dm_room(dm_room, strlen(dm_room), a, b) &&
           (strcmp(a, s->user_lc) == 0 || strcmp(b, s->user_lc) == 0);
}

/* op goes on its way and will come back answered: a live upgrade waits for it (ops_out). */
static void sent(struct conn *c)
{
    ((struct chat_session *)c->session)->ops_out++;
}

#define FAIL(err, text)                                                                            \
    do {                                                                                           \
        *why = (text);                                                                             \
        chat_op_free(op);                                                                          \
        return (err);                                                                              \
    } while (0)

/* op, a login with a password or a registration, goes to be hashed: its network is what the
 * throttles and the fair queue count, and the login deadline waits for its answer. What it asks
 * is kept meanwhile: a live upgrade can submit it again elsewhere (struct chat_pw). */
static void start_hashing(struct conn *c, struct chat_op *op)
{
    struct chat_session *s = c->session;
    op->net_key = c->net_key;
    s->auth_pending = true;
    pw_free(s);
    struct chat_pw *pw = xcalloc(1, sizeof *pw);
    pw->registering = op->kind == CHAT_REGISTER;
    if (op->id)
        pw->id_json = json_dumps(op->id, JSON_ENCODE_ANY | JSON_COMPACT);
    memcpy(pw->name, op->name, sizeof pw->name);
    pw->password = xstrndup(op->password, op->password_len);
    pw->password_len = op->password_len;
    pw->registered_guest = op->registered_guest;
    pw->guest_session = op->guest_session;
    chat_session_cold_make(s)->pw = pw;
}

uint64_t chat_session_login_pause(const struct conn *c)
{
    const struct chat_session *s = c->session;
    if (!s)
        return 0;
    return s->auth_pending && !s->logged_in ? UINT64_MAX : s->login_paused_ms;
}

/* Rules 40 and 50: the moment from which the requester reads its dm rooms. */
static int64_t dm_reads_from(const struct chat_session *s)
{
    return s->guest ? timeline_guest_since_ms(s->guest_session) : s->created_ms;
}

/*
 * A token from op's bucket (rules 23, 73). A request that finds none still goes on (over_rate):
 * the store answers rate_limited only if nothing ranked before it applies (rule 75), and a cid
 * duplicate or a reaction that changes nothing is acked without a token.
 */
static void charge(struct conn *c, struct chat_op *op, enum chat_bucket_kind kind)
{
    const struct config *cfg = cfg_of(c);
    uint32_t rate = kind == CHAT_BUCKET_REACT    ? cfg->react_rate
                    : kind == CHAT_BUCKET_SEARCH ? cfg->search_rate
                                                 : cfg->rate_limit;
    op->bucket = kind;
    if (!rate)
        return;
    struct chat_bucket *b = kind == CHAT_BUCKET_REACT    ? react_bucket(c)
                            : kind == CHAT_BUCKET_SEARCH ? search_bucket(c)
                                                         : send_bucket_of(c);
    bool got = bucket_take(&b->tokens, &b->refill_ms, rate, conn_now(c));
    op->charged = got;
    op->over_rate = !got;
    if (!got)
        metrics_add(METRIC_RATE_LIMITED, 1);
}

/*
 * edit, delete, react, topic and moderation (protocol 1.1 rules 49, 73, 75): the room as for a
 * send (a public room joined by this connection, or the user's own dm room), then a token from
 * the react bucket (react) or the send bucket (the others).
 */
static enum proto_error submit_timeline(struct conn *c, struct chat_op *op,
                                        struct chat_sroom *joined, const char **why)
{
    struct chat_session *s = c->session;
    if (op->room_is_dm && !is_party(s, op->room))
        FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
    if (!op->room_is_dm && !joined)
        FAIL(PROTO_NOT_MEMBER, "join the room first");
    if (op->room_is_dm)
        op->reads_from = dm_reads_from(s);
    charge(c, op, op->kind == CHAT_REACT ? CHAT_BUCKET_REACT : CHAT_BUCKET_SEND);
    sent(c);
    chat_to_hub(op);
    return PROTO_OK;
}

/*
 * search (protocol 1.1 rules 72, 73, 75): a dm room named must be the user's own, and the user
 * registered (forbidden); then a token from the search bucket. Without one it still goes on
 * (over_rate): the store answers rate_limited only if nothing ranked before it applies (banned).
 */
static enum proto_error submit_search(struct conn *c, struct chat_op *op, const char **why)
{
    struct chat_session *s = c->session;
    if (op->room_is_dm && !is_party(s, op->room))
        FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
    if (op->room_is_dm && s->guest)
        FAIL(PROTO_FORBIDDEN, "guests cannot search direct messages");
    op->reads_from = s->created_ms; /* rule 40: a registered user's dm rooms from then on */
    charge(c, op, CHAT_BUCKET_SEARCH);
    sent(c);
    chat_to_store(op);
    return PROTO_OK;
}

enum proto_error chat_session_submit(struct conn *c, struct chat_op *op, const char **why)
{
    struct chat_session *s = c->session;
    const struct config *cfg = cfg_of(c);
    uint64_t now = conn_now(c);
    bool login = op->kind == CHAT_LOGIN_GUEST || op->kind == CHAT_LOGIN_PASSWORD ||
                 op->kind == CHAT_LOGIN_TOKEN;
    if (login) {
        if (s->logged_in || s->login_pending)
            FAIL(PROTO_ALREADY_LOGGED_IN, "this connection is logged in already");
        s->login_pending = true;
        conn_hold_input(c); /* what follows a login needs its answer */
        sent(c);
        if (op->kind == CHAT_LOGIN_GUEST) {
            chat_to_hub(op);
        } else if (op->kind == CHAT_LOGIN_PASSWORD) {
            start_hashing(c, op);
            chat_to_auth(op); /* the throttles first: a refused attempt costs nothing more */
        } else {
            chat_to_store(op);
        }
        return PROTO_OK;
    }
    if (op->kind == CHAT_REGISTER) {
        char name_lc[CHAT_NAME_MAX];
        text_lower(op->name, strlen(op->name), name_lc);
        if (s->logged_in && !(s->guest && strcmp(name_lc, s->user_lc) == 0))
            FAIL(PROTO_ALREADY_LOGGED_IN, "only a guest can register, and only its own name");
        if (s->logged_in) {
            op->registered_guest = true;
            op->guest_session = s->guest_session;
        }
        op->user_created_ms = wall_ms();
        start_hashing(c, op);
        conn_hold_input(c); /* a login right after a registration needs the account made */
        sent(c);
        chat_to_hub(op);
        return PROTO_OK;
    }
    if (!s->logged_in)
        FAIL(PROTO_NOT_LOGGED_IN, "log in first");
    chat_session_user(s, op->user);
    memcpy(op->user_lc, s->user_lc, sizeof op->user_lc);
    op->guest = s->guest;
    op->guest_session = s->guest_session;
    struct chat_sroom *joined = op->room[0] ? chat_session_room(s, op->room) : NULL;
    switch (op->kind) {
    case CHAT_JOIN:
        if (op->room_is_dm && !is_party(s, op->room))
            FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
        if (op->room_is_dm && s->guest && op->has_since)
            FAIL(PROTO_FORBIDDEN, "guests cannot replay direct messages");
        op->rejoin = joined != NULL;
        /* Rule 75 ranks banned and no_such_room before this: the hub answers it. */
        op->over_room_limit = !joined && s->n_rooms + s->joins_pending >= cfg->max_rooms;
        if (op->room_is_dm && !s->guest)
            op->ts = s->created_ms; /* rule 40: nothing from before the account existed */
        if (!joined)
            s->joins_pending++;
        if (op->has_since)
            replay_pending_set(s, op->room);
        s->joins_held++;
        conn_hold_input(c); /* a send right after a join is for the joined room */
        sent(c);
        /* Rules 66, 67: a registered user's join saves a public room and carries the read
         * marker: the hub checks it (rule 75's banned ... server-wide), then the store saves it
         * (the saved-room limit), then the hub answers it. */
        op->via_store = !s->guest;
        chat_to_hub(op);
        return PROTO_OK;
    case CHAT_LEAVE:
        /* Rule 67: a registered user's leave of a public room forgets the saved room, which
         * this connection need not have joined, and takes it from the user's other
         * connections. */
        op->via_store = !s->guest && !op->room_is_dm;
        if (!joined && !op->via_store)
            FAIL(PROTO_NOT_MEMBER, "you are not in that room");
        op->not_joined = !joined;
        if (joined) {
            local_room_remove(chat_of(c), joined);
            session_remove_room(s, joined);
        }
        sent(c);
        if (op->via_store)
            chat_to_store(op);
        else
            chat_to_hub(op);
        return PROTO_OK;
    case CHAT_READ:
        /* Rule 66: guests are refused before membership is looked at; the room as rule 49. */
        if (s->guest)
            FAIL(PROTO_FORBIDDEN, "only registered users keep read markers");
        if (op->room_is_dm && !is_party(s, op->room))
            FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
        if (!op->room_is_dm && !joined)
            FAIL(PROTO_NOT_MEMBER, "join the room first");
        sent(c);
        chat_to_store(op);
        return PROTO_OK;
    case CHAT_WHO:
        if (op->room_is_dm && !is_party(s, op->room))
            FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
        sent(c);
        chat_to_hub(op);
        return PROTO_OK;
    case CHAT_ROOMS:
        sent(c);
        chat_to_hub(op);
        return PROTO_OK;
    case CHAT_HISTORY:
        if (op->room_is_dm && !is_party(s, op->room))
            FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
        if (op->room_is_dm && s->guest)
            FAIL(PROTO_FORBIDDEN, "guests cannot read direct message history");
        op->ts = op->room_is_dm ? s->created_ms : 0;
        sent(c);
        chat_to_store(op);
        return PROTO_OK;
    case CHAT_TYPING: {
        if (!joined)
            FAIL(PROTO_NOT_MEMBER, "you are not in that room");
        struct chat_sends *t = send_bucket(c);
        if (now - t->last_typing_ms < 1000 && t->last_typing_ms) {
            chat_op_free(op); /* rule 21: at most one a second is passed on */
            return PROTO_OK;
        }
        t->last_typing_ms = now;
        chat_to_hub(op);
        return PROTO_OK;
    }
    case CHAT_SEND: {
        if (op->to_lc[0] && strcmp(op->to_lc, s->user_lc) == 0)
            FAIL(PROTO_BAD_REQUEST, "you cannot send a direct message to yourself");
        if (!op->to_lc[0] && op->room_is_dm && !is_party(s, op->room))
            FAIL(PROTO_FORBIDDEN, "that conversation is between two other people");
        if (!op->to_lc[0] && !op->room_is_dm && !joined)
            FAIL(PROTO_NOT_MEMBER, "join the room before sending to it");
        /* Rule 17: a retry of a send this connection paid for is not counted, even before the
         * store has seen the first copy and could tell. A retry of a copy sent elsewhere pays,
         * and is paid back when the store finds it stored (finish_op). */
        if (is_charged_retry(s, op)) {
            sent(c);
            chat_to_hub(op);
            return PROTO_OK;
        }
        if (op->room_is_dm || op->to_lc[0])
            op->reads_from = dm_reads_from(s);
        if (cfg->rate_limit && !take_token(c, cfg->rate_limit, now)) {
            metrics_add(METRIC_RATE_LIMITED, 1);
            if (!op->to_lc[0] && !op->has_cid && !op->has_reply_to)
                FAIL(PROTO_RATE_LIMITED, "slow down: too many messages");
            /* Rule 75 ranks an unknown recipient and a reply_to not found above the rate
             * limit, and rule 17 exempts a cid retry from it: the hub and the store decide,
             * storing nothing new. */
            op->over_rate = true;
        } else {
            op->charged = cfg->rate_limit != 0;
            if (op->charged)
                remember_charged(s, op);
        }
        sent(c);
        chat_to_hub(op);
        return PROTO_OK;
    }
    case CHAT_EDIT:
    case CHAT_DELETE:
    case CHAT_REACT:
        return submit_timeline(c, op, joined, why);
    case CHAT_STATUS:
        /* Rule 73: a send-bucket token, even for a status that changes nothing (rule 86). */
        if (cfg->rate_limit && !take_token(c, cfg->rate_limit, now)) {
            metrics_add(METRIC_RATE_LIMITED, 1);
            FAIL(PROTO_RATE_LIMITED, "slow down: too many requests");
        }
        sent(c);
        chat_to_hub(op);
        return PROTO_OK;
    case CHAT_SEARCH:
        return submit_search(c, op, why);
    case CHAT_TOPIC:
    case CHAT_ROLE:
    case CHAT_KICK:
    case CHAT_BAN:
    case CHAT_UNBAN:
    case CHAT_MUTE:
    case CHAT_UNMUTE:
        /* Rule 61: naming oneself is a bad_request (field validation, before membership). */
        if (op->kind != CHAT_TOPIC && strcmp(op->subject_lc, s->user_lc) == 0)
            FAIL(PROTO_BAD_REQUEST, "you cannot name yourself");
        if (op->topic_query) {
            if (!op->room_is_dm && !joined)
                FAIL(PROTO_NOT_MEMBER, "join the room first");
            sent(c);
            chat_to_hub(op);
            return PROTO_OK;
        }
        return submit_timeline(c, op, joined, why);
    default:
        FAIL(PROTO_BAD_REQUEST, "unsupported request");
    }
}

/* --- results --- */

static void became_logged_in(struct conn *c, struct chat_op *op)
{
    struct chat_session *s = c->session;
    /* The user index borrows user_lc as its key: out of it before the name is written. (A second
     * login is refused before it gets here; this keeps the index whole if one ever is not.) */
    if (s->logged_in)
        local_user_remove(chat_of(c), c);
    s->logged_in = true;
    s->guest = op->guest;
    s->guest_session = op->guest_session;
    s->created_ms = op->user_created_ms;
    memcpy(s->user_lc, op->user_lc, sizeof s->user_lc);
    s->user_caps = text_name_caps(op->user);
    local_user_add(chat_of(c), c);
    metrics_add(METRIC_LOGINS, 1);
}

/* A member from the room's presence run of this batch on (deliver_run). */
static void run_joiner_add(struct chat_worker *cw, uint64_t conn_id, const char *room,
                           uint32_t from)
{
    if (cw->n_joiners == cw->cap_joiners) {
        cw->cap_joiners = cw->cap_joiners ? cw->cap_joiners * 2 : 16;
        cw->joiners = xrealloc(cw->joiners, cw->cap_joiners * sizeof *cw->joiners);
    }
    struct run_joiner *j = &cw->joiners[cw->n_joiners++];
    j->conn_id = conn_id;
    j->from = from;
    memcpy(j->room, room, sizeof j->room);
}

/* A join's replay, written as the socket drains (chat_session_drained), ahead of live events:
 * op's messages above *last (all of them when asked for again), then the rest of a long one as
 * a range read page by page from where they end, and *last moves to op's seq. */
static void replay_take(struct conn *c, const struct chat_op *op, uint64_t *last, bool again)
{
    uint64_t replayed = 0;
    for (size_t i = 0; i < op->n_msgs; i++) {
        const struct msg_rec *m = &op->msgs[i];
        if (!again && m->seq <= *last)
            continue; /* already seen */
        if (m->seq > *last)
            *last = m->seq;
        replay_write(c, m); /* on a rejoin, asked for again explicitly */
        replayed++;
    }
    metrics_add(METRIC_DELIVERIES, replayed);
    /* For two crossed joins of one room, from where the first one's replay ended. */
    uint64_t from = again || op->join_after > *last ? op->join_after : *last;
    if (op->replay_until > from) {
        struct chat_replay *rp = xcalloc(1, sizeof *rp);
        memcpy(rp->room, op->room, sizeof rp->room);
        rp->after = from;
        rp->until = op->replay_until;
        rp->ts = op->ts;
        backlog_push(c->session, (struct chat_backlog_entry){.replay = rp}, 0);
    }
    if (op->seq > *last)
        *last = op->seq;
    chat_session_drained(c);
}

static void joined(struct conn *c, struct chat_op *op)
{
    struct chat_session *s = c->session;
    struct chat_sroom *r = chat_session_room(s, op->room);
    if (!op->rejoin && !op->adopt)
        s->joins_pending--;
    if (!r) {
        if (op->adopt) { /* cannot happen: input is held while a moved session joins again */
            post_gone_room(s, op->worker, op->room);
            return;
        }
        r = session_add_room(c, op->room);
        r->last_seq = op->has_since && op->since < op->seq ? op->since : op->seq;
        r->hub = true;
        if (op->run_from) {
            /* In the worker's room already (it names the sroom), but the run of this hub turn
             * reaches it only from its own join on (run_joiners_settle). */
            r->run_pending = true;
            run_joiner_add(chat_of(c), c->id, op->room, op->run_from - 1);
        }
    } else if (op->adopt) {
        r->hub = true; /* counted in, silently: the client sees only what it had not had */
    } else if (!op->rejoin) {
        post_gone_room(s, op->worker, op->room); /* two joins crossed: the hub counted us twice */
    }
    if (!op->adopt) {
        r->told_count = (uint32_t)op->n_members;
        r->told_large = op->large;
        s->transport->op_done(c, op);
    }
    replay_take(c, op, &r->last_seq, op->rejoin);
}

/* An op came back for a connection that has gone: undo what the hub did for it. */
static void undo_for_gone(struct worker *w, struct chat_op *op)
{
    if (op->err)
        return;
    struct chat_session ghost = {.guest_session = op->guest_session, .guest = op->guest};
    memcpy(ghost.user_lc, op->user_lc, sizeof ghost.user_lc);
    ghost.user_caps = text_name_caps(op->user);
    bool login = op->kind == CHAT_LOGIN_GUEST || op->kind == CHAT_LOGIN_TOKEN ||
                 op->kind == CHAT_LOGIN_PASSWORD;
    if (op->kind == CHAT_JOIN && !op->rejoin) {
        post_gone_room(&ghost, (uint16_t)w->id, op->room);
    } else if (login && (op->guest || op->status_fetch)) {
        /* A guest went online; a login back from the hub was counted as a connection. */
        bool guest_offline = op->guest && op->kind != CHAT_LOGIN_PASSWORD;
        post_gone_conn(&ghost, (uint16_t)w->id, NULL, 0, guest_offline, op->status_fetch);
    }
}

static void finish_op(struct worker *w, struct conn *c, struct chat_session *s, struct chat_op *op);
static void adopt_joined(struct conn *c, struct chat_op *op);

/* True while c waits for a join it sent: its input stays held until the answer. */
static bool holding_join(struct conn *c)
{
    struct chat_session *s = c->session;
    return s && s->joins_held > 0;
}

/* Reads c's held input again, and tells the transport (telnet's waiting lines go on). */
static void release_input(struct conn *c)
{
    conn_release_input(c);
    struct chat_session *s = c->session;
    if (conn_is_open(c) && s && !c->input_held && s->transport->input_released)
        s->transport->input_released(c);
}

static void op_done(struct worker *w, struct chat_op *op)
{
    struct chat_worker *cw = w->chat;
    struct conn *c = map_get_u64(&cw->conns, op->conn_id);
    if (!c || !conn_is_open(c) || !c->session) {
        undo_for_gone(w, op);
        chat_op_free(op);
        return;
    }
    if (op->kind == CHAT_REPLAY) { /* not a request: a page for the backlog */
        replay_page(c, op);
        chat_op_free(op);
        return;
    }
    struct chat_session *s = c->session;
    if (op->handed_over && chat_session_cold(s)->pw && (c->io_hold & CONN_HOLD_READ) &&
        (op->kind == CHAT_LOGIN_PASSWORD || op->kind == CHAT_REGISTER)) {
        /* A live upgrade is under way: this password check moves with the connection and is
         * submitted again in the next process (struct chat_pw), rather than refused here. */
        chat_op_free(op);
        return;
    }
    bool login = op->kind == CHAT_LOGIN_GUEST || op->kind == CHAT_LOGIN_PASSWORD ||
                 op->kind == CHAT_LOGIN_TOKEN;
    if (login && !op->err && !op->handed_over && !op->status_fetch) {
        /* Logged in: on through the hub, which counts the connection and gives the user's
         * status for welcome (rules 68, 69); still out, input still held. */
        op->status_fetch = true;
        chat_to_hub(op);
        return;
    }
    s->ops_out--;
    if (op->adopt) {
        adopt_joined(c, op);
        return;
    }
    bool hashed = op->kind == CHAT_LOGIN_PASSWORD || op->kind == CHAT_REGISTER;
    bool releases = login || hashed || op->kind == CHAT_JOIN;
    if (login)
        s->login_pending = false;
    if (hashed && s->auth_pending) {
        s->auth_pending = false;
        if (!s->logged_in)
            s->login_paused_ms = op->auth_wait_ms < UINT32_MAX - s->login_paused_ms
                                     ? s->login_paused_ms + op->auth_wait_ms
                                     : UINT32_MAX;
    }
    if (hashed)
        pw_free(s);
    /* A join answered: its replay, if any, is in op, with every message left to it. Unless it
     * failed: then what was left to it is lost to this connection, which must resume. */
    bool lost = op->kind == CHAT_JOIN && op->err && s->replay_skipped;
    if (op->kind == CHAT_JOIN) {
        s->joins_held--;
        replay_pending_set(s, NULL);
        s->replay_skipped = false;
    }
    char room[CHAT_ROOM_MAX];
    memcpy(room, op->room, sizeof room);
    finish_op(w, c, s, op);
    if (lost && conn_is_open(c))
        replay_lost(c, room);
    /* The transport may have started another held request (telnet's join after login). */
    if (releases && conn_is_open(c) && !s->login_pending && !s->auth_pending && !holding_join(c))
        release_input(c);
}

/* The user's status as this connection was last told it (rule 69), for a live upgrade. */
static void status_keep(struct chat_session *s, bool away, const char *text)
{
    s->away = away;
    if (!(text && text[0]) && !chat_session_cold(s)->status_text)
        return;
    struct chat_session_cold *k = chat_session_cold_make(s);
    free(k->status_text);
    k->status_text = text && text[0] ? xstrdup(text) : NULL;
    chat_session_cold_settle(s);
}

static void finish_op(struct worker *w, struct conn *c, struct chat_session *s, struct chat_op *op)
{
    if (op->handed_over) {
        /* Another process owns the store now: this connection goes there (it is closed with
         * the restart goodbye, and its client retries with the same cid), rather than being
         * told of an error it can do nothing about. The session is freed by the close. */
        chat_op_free(op);
        c->handler->on_shutdown(c, CONN_GOODBYE_RESTART);
        return;
    }
    if (op->charged && (op->err || op->stage == 2)) {
        /* Rule 73: an error, a cid duplicate or a reaction that changed nothing takes no token. */
        const struct chat_session_cold *k = chat_session_cold(s);
        if (op->bucket == CHAT_BUCKET_REACT && k->react)
            k->react->tokens += 1.0;
        else if (op->bucket == CHAT_BUCKET_SEARCH && k->search)
            k->search->tokens += 1.0;
        else if (op->bucket == CHAT_BUCKET_SEND && k->send)
            k->send->b.tokens += 1.0; /* (a bucket given back meanwhile was full) */
        op->charged = false;
    }
    if (op->err) {
        if (op->kind == CHAT_JOIN && !op->rejoin) {
            s->joins_pending--;
            /* counted in before its replay failed (not when the store refused it first) */
            if (op->err == PROTO_SERVER_BUSY && !op->via_store)
                post_gone_room(s, (uint16_t)w->id, op->room);
        }
        /* A leave the store could not record: the connection left the room all the same, and
         * the hub, which never saw it, is told so. */
        if (op->kind == CHAT_LEAVE && op->via_store && !op->not_joined)
            post_gone_room(s, (uint16_t)w->id, op->room);
        metrics_error(op->err);
        s->transport->op_done(c, op);
        chat_op_free(op);
        return;
    }
    switch (op->kind) {
    case CHAT_LOGIN_GUEST:
    case CHAT_LOGIN_PASSWORD:
    case CHAT_LOGIN_TOKEN:
        became_logged_in(c, op);
        status_keep(s, op->away, op->text);
        s->transport->op_done(c, op);
        break;
    case CHAT_STATUS:
        status_keep(s, op->away, op->text);
        s->transport->op_done(c, op);
        break;
    case CHAT_JOIN:
        joined(c, op);
        break;
    case CHAT_SEND:
        s->transport->op_done(c, op);
        break;
    default:
        s->transport->op_done(c, op);
    }
    chat_op_free(op);
}

/* --- deliveries --- */

/* Writes d (a room's event) to member m of its room unless m is to skip it. Returns the messages
 * delivered (0 or 1). */
static unsigned deliver_to_member(struct local_member m, const struct deliver *d)
{
    struct chat_session *s = m.c->session;
    if (m.c->id == d->skip_conn || !s || (d->skip_user[0] && strcmp(s->user_lc, d->skip_user) == 0))
        return 0;
    if (d->rec.seq && defer_to_replay(s, d->room, m.r))
        return 0;
    if (d->rec.seq)
        return write_seq(m.c, m.r, d->room, &d->rec);
    chat_session_write(m.c, &d->rec);
    return 0;
}

static void deliver_room(struct chat_worker *cw, struct deliver *d)
{
    struct local_room *lr = map_get(&cw->rooms, d->room);
    if (!lr)
        return;
    /* One shared counter update per entry, not per recipient: workers do not contend on it. So
     * for the frame's reference count: the references for the members here are taken at once. */
    uint64_t delivered = 0;
    if (d->rec.ws)
        chunk_prepay(d->rec.ws, (uint32_t)lr->n);
    /* Writing may close a slow consumer, which edits this list: walk it from the end. */
    for (size_t i = lr->n; i-- > 0;) {
        if (i >= lr->n)
            continue;
        struct local_member m = lr->m[i];
        delivered += deliver_to_member(m, d);
        if (!conn_is_open(m.c) && !(lr = map_get(&cw->rooms, d->room)))
            break; /* that slow consumer was the last member here */
    }
    chunk_prepay_end();
    metrics_add(METRIC_DELIVERIES, delivered);
}

/* Writes run's events [from, n) to c: as one piece of the shared frames, or one at a time where
 * the transport needs each whole (telnet lines, permessage-deflate's per-message compression). */
static void run_write(struct conn *c, struct event_run *run, uint32_t from)
{
    if (from >= run->n)
        return;
    if (c->transport == CONN_TELNET || c->ws_deflate_bits) {
        for (uint32_t i = from; i < run->n && conn_is_open(c); i++)
            chat_session_write(c, &run->ev[i]);
        return;
    }
    struct msg_rec part = {.ws = run->all, .ws_off = run->off[from]};
    chat_session_write(c, &part);
}

/* c's entry of room, or NULL when c (maybe NULL) is gone, closing, or not in room. */
static struct chat_sroom *open_sroom(struct conn *c, const char *room)
{
    return c && conn_is_open(c) && c->session ? chat_session_room(c->session, room) : NULL;
}

/* Counts the connections a run's joins answered in the room (from their place in the run on);
 * with run NULL, those of every room (a run that never came: cannot happen, but none is lost). */
static void run_joiners_settle(struct chat_worker *cw, const char *room, struct event_run *run)
{
    size_t kept = 0;
    for (size_t i = 0; i < cw->n_joiners; i++) {
        struct run_joiner j = cw->joiners[i];
        if (room && strcmp(j.room, room) != 0) {
            cw->joiners[kept++] = j;
            continue;
        }
        struct conn *c = map_get_u64(&cw->conns, j.conn_id);
        struct chat_sroom *r = open_sroom(c, j.room);
        if (!r)
            continue; /* closed meanwhile: its rooms were left */
        r->run_pending = false;
        if (run)
            run_write(c, run, j.from);
    }
    cw->n_joiners = kept;
}

/* A room's presence events of one hub turn: all of them to each member here, in one queue entry
 * per member, then the joiners of this batch from their own place on. */
static void deliver_run(struct chat_worker *cw, struct deliver *d)
{
    struct event_run *run = d->run;
    struct local_room *lr = map_get(&cw->rooms, d->room);
    if (lr) {
        chunk_prepay(run->all, (uint32_t)lr->n);
        /* As in deliver_room: a slow consumer closed here leaves the list; walk from the end. */
        for (size_t i = lr->n; i-- > 0;) {
            if (i >= lr->n)
                continue;
            struct local_member m = lr->m[i];
            if (!m.c->session || m.r->run_pending)
                continue; /* a joiner of this run: from its own place, below */
            run_write(m.c, run, 0);
            if (!conn_is_open(m.c) && !(lr = map_get(&cw->rooms, d->room)))
                break;
        }
        chunk_prepay_end();
    }
    run_joiners_settle(cw, d->room, run);
}

/* A room's tick (rule 83): its count to each local member connection last told another one (to
 * every one on a change of size class), the one encoding shared by all. */
static void deliver_count(struct chat_worker *cw, struct deliver *d)
{
    struct local_room *lr = map_get(&cw->rooms, d->room);
    if (!lr)
        return;
    bool force = d->count_flags & DELIVER_COUNT_FORCE;
    bool large = d->count_flags & DELIVER_COUNT_LARGE;
    uint64_t sent = 0;
    /* As in deliver_room: a slow consumer closed here leaves the list; walk from the end. */
    for (size_t i = lr->n; i-- > 0;) {
        if (i >= lr->n)
            continue;
        struct local_member m = lr->m[i];
        if (!m.c->session || (!force && m.r->told_count == d->count))
            continue;
        m.r->told_count = d->count;
        m.r->told_large = large;
        sent += m.c->transport != CONN_TELNET; /* telnet shows none (rule 83) */
        chat_session_write(m.c, &d->rec);
        if (!conn_is_open(m.c) && !(lr = map_get(&cw->rooms, d->room)))
            break;
    }
    metrics_add(METRIC_COUNT_SENT, sent);
}

/* A kick or ban (rule 64): each local connection of the user in the room leaves it (the hub
 * hears of it as of a leave, and says offline once the user's last one is out) and gets its
 * `kicked`, instead of the event that follows. */
static void deliver_kick(struct worker *w, struct chat_worker *cw, struct deliver *d)
{
    struct local_room *lr = map_get(&cw->rooms, d->room);
    /* Leaving edits the list: walk it from the end, and look it up again after each. */
    for (size_t i = lr ? lr->n : 0; i-- > 0;) {
        if (!(lr = map_get(&cw->rooms, d->room)))
            break;
        if (i >= lr->n)
            continue;
        struct local_member m = lr->m[i];
        struct chat_session *s = m.c->session;
        if (!s || strcmp(s->user_lc, d->user_a) != 0)
            continue;
        if (m.r->hub)
            post_gone_room(s, (uint16_t)w->id, d->room);
        local_room_remove(cw, m.r);
        session_remove_room(s, m.r);
        chat_session_write(m.c, &d->rec);
        if (conn_is_open(m.c) && s->transport->room_lost)
            s->transport->room_lost(m.c, d->room);
    }
}

static void deliver_dm(struct chat_worker *cw, struct deliver *d)
{
    const char *users[2] = {d->user_a, d->user_b};
    uint64_t delivered = 0;
    for (int u = 0; u < 2; u++) {
        /* A slow consumer closed by its write leaves the chain: its successor is taken first. */
        struct conn *next;
        for (struct conn *c = map_get(&cw->users, users[u]); c; c = next) {
            next = chat_session_of(c)->user_next;
            struct chat_session *s = c->session;
            struct chat_sroom *r = chat_session_room(s, d->room);
            if (defer_to_replay(s, d->room, r))
                continue;
            if (r) {
                delivered += write_seq(c, r, d->room, &d->rec);
                continue;
            }
            /* Not joined: once, and where it was written kept (a live upgrade carries it). A
             * moved connection being caught up leaves the room's messages to that replay. */
            struct chat_dm_place *p = dm_place(s, d->room);
            if (p && (p->catching_up || d->rec.seq <= p->last_seq))
                continue;
            if (!p)
                p = dm_place_add(s, d->room);
            if (p)
                p->last_seq = d->rec.seq;
            delivered += write_seq(c, NULL, d->room, &d->rec);
        }
    }
    metrics_add(METRIC_DELIVERIES, delivered);
}

/* The user's status, to its connections here but the one that set it (rule 69). */
static void deliver_status(struct chat_worker *cw, struct deliver *d)
{
    struct conn *next;
    for (struct conn *c = map_get(&cw->users, d->user_a); c; c = next) {
        next = chat_session_of(c)->user_next;
        if (c->id == d->skip_conn)
            continue;
        status_keep(c->session, d->away, d->text);
        chat_session_write(c, &d->rec);
    }
}

/* A `read` without id (rule 66) to the user's other connections here; telnet shows none. */
static void deliver_user(struct chat_worker *cw, struct deliver *d)
{
    struct conn *next;
    for (struct conn *c = map_get(&cw->users, d->user_a); c; c = next) {
        next = chat_session_of(c)->user_next;
        if (c->id != d->skip_conn && conn_is_open(c) && rec_len(c, &d->rec) > 0)
            send_rec(c, &d->rec);
    }
}

/* Rule 67: the user left room on another connection; each of its connections here that joined
 * it leaves it too (the hub hears of it as of a disconnect's rooms) and is told. */
static void deliver_left(struct worker *w, struct chat_worker *cw, struct deliver *d)
{
    struct conn *next;
    for (struct conn *c = map_get(&cw->users, d->user_a); c; c = next) {
        struct chat_session *s = chat_session_of(c);
        next = s->user_next;
        struct chat_sroom *r = c->id == d->skip_conn ? NULL : chat_session_room(s, d->room);
        if (!r)
            continue;
        bool counted = r->hub;
        local_room_remove(cw, r);
        session_remove_room(s, r);
        if (counted)
            post_gone_room(s, (uint16_t)w->id, d->room);
        if (s->transport->left_elsewhere)
            s->transport->left_elsewhere(c, d->room);
    }
}

static void became_registered(struct chat_worker *cw, struct deliver *d)
{
    size_t pos = 0;
    uint64_t id;
    void *v;
    while (map_next_u64(&cw->conns, &pos, &id, &v)) {
        struct conn *c = v;
        struct chat_session *s = c->session;
        if (!s || !s->logged_in || !s->guest || s->guest_session != d->guest_session)
            continue;
        s->guest = false;
        s->created_ms = d->created_ms;
        s->user_caps = text_name_caps(d->user_a); /* the registered spelling of the same name */
        if (s->transport->became_registered)
            s->transport->became_registered(c);
    }
}

/* Handles one entry of a batch from the hub. */
static void deliver_one(struct worker *w, struct chat_worker *cw, struct deliver *d)
{
    switch (d->kind) {
    case DELIVER_ROOM:
        deliver_room(cw, d);
        break;
    case DELIVER_DM:
        deliver_dm(cw, d);
        break;
    case DELIVER_KICK:
        deliver_kick(w, cw, d);
        break;
    case DELIVER_OP:
        op_done(w, d->op);
        d->op = NULL;
        break;
    case DELIVER_BECAME_REGISTERED:
        became_registered(cw, d);
        break;
    case DELIVER_COUNT:
        deliver_count(cw, d);
        break;
    case DELIVER_RUN:
        deliver_run(cw, d);
        break;
    case DELIVER_STATUS:
        deliver_status(cw, d);
        break;
    case DELIVER_USER:
        deliver_user(cw, d);
        break;
    case DELIVER_LEFT:
        deliver_left(w, cw, d);
        break;
    }
}

/* --- waves: a room's messages of one batch, written to each member as one piece --- */

/* The fewest messages of a room, one after another in a batch, that make a wave. */
#define WAVE_MIN 2

/*
 * When everyone in a room talks, each batch brings a run of the room's messages (with the answers
 * to their senders' sends in between), and writing each to each member would cost a queue entry,
 * an iovec and a reference per message and member. Instead their frames are copied side by side
 * into one chunk, once for this worker, and each member is given the part it has not had as one
 * piece: per member and wave, not per member and message. A member given its messages otherwise
 * (telnet, permessage-deflate, a replay under way: see wave_whole) gets them one by one, as
 * deliver_room would. Either way r->last_seq says what a member has had, so nothing is written
 * twice; and a sender is brought up to date before the answer to its send, so each connection
 * sees the batch's order.
 */
struct wave {
    const char *room;
    uint32_t n;                 /* messages */
    const struct deliver **msg; /* n, seqs rising */
    uint32_t *off;              /* n + 1: message k's frame is all->data[off[k], off[k + 1]) */
    struct chunk *all;          /* made by wave_frames, or NULL */
    size_t bytes;               /* the frames' size */
    uint64_t delivered;
};

/* Whether d may be in a wave: a stored message for all of the room, with a WebSocket form. */
static bool wave_message(const struct deliver *d)
{
    return d->kind == DELIVER_ROOM && d->rec.seq && d->rec.ws && !d->skip_conn && !d->skip_user[0];
}

/* The end (after its last message) of the wave that starts at b's entry i, or i when fewer than
 * WAVE_MIN messages of one room follow each other there. Only answers to sends, which concern
 * their own connection only and change no room, may come between the messages. */
static size_t wave_end(const struct deliver_batch *b, size_t i)
{
    const struct deliver *first = &b->items[i];
    if (!wave_message(first))
        return i;
    size_t end = i + 1, n = 1;
    uint64_t seq = first->rec.seq;
    for (size_t j = i + 1; j < b->n; j++) {
        const struct deliver *d = &b->items[j];
        if (wave_message(d) && d->rec.seq > seq && strcmp(d->room, first->room) == 0) {
            seq = d->rec.seq;
            n++;
            end = j + 1;
        } else if (d->kind != DELIVER_OP || d->op->kind != CHAT_SEND) {
            break;
        }
    }
    return n >= WAVE_MIN ? end : i;
}

/* Whether c takes a wave as pieces: exactly what write_seq would queue message by message (one
 * plain WebSocket frame each, with nothing held back and nothing left to a replay). */
static bool wave_whole(struct conn *c, const struct chat_sroom *r, const char *room)
{
    const struct chat_session *s = c->session;
    if (!conn_is_open(c) || !s || c->transport != CONN_WEBSOCKET || c->ws_deflate_bits ||
        s->transport->shown || backlog_n(s) > 0 || !r->hub)
        return false;
    const char *pending = chat_session_cold(s)->replay_pending;
    return !pending || strcmp(pending, room) != 0;
}

/* Makes wave wv of b's entries [from, to): its messages and their frames' size. */
static void wave_make(struct chat_worker *cw, struct wave *wv, struct deliver_batch *b, size_t from,
                      size_t to)
{
    if (cw->cap_wave < to - from + 1) {
        cw->cap_wave = to - from + 1;
        cw->wave_msg = xrealloc(cw->wave_msg, cw->cap_wave * sizeof *cw->wave_msg);
        cw->wave_off = xrealloc(cw->wave_off, cw->cap_wave * sizeof *cw->wave_off);
    }
    *wv = (struct wave){.room = b->items[from].room, .msg = cw->wave_msg, .off = cw->wave_off};
    size_t bytes = 0;
    for (size_t i = from; i < to; i++) {
        const struct deliver *d = &b->items[i];
        if (d->kind == DELIVER_ROOM) {
            wv->msg[wv->n++] = d;
            bytes += d->rec.ws->len - d->rec.ws_off;
        }
    }
    wv->bytes = bytes;
}

/* The wave's frames side by side in one chunk, copied when the first member takes it whole (a
 * room of telnet or permessage-deflate members never does). */
static struct chunk *wave_frames(struct wave *wv)
{
    if (wv->all)
        return wv->all;
    wv->all = chunk_new(wv->bytes);
    for (uint32_t k = 0; k < wv->n; k++) {
        const struct msg_rec *rec = &wv->msg[k]->rec;
        wv->off[k] = wv->all->len;
        memcpy(wv->all->data + wv->all->len, rec->ws->data + rec->ws_off,
               rec->ws->len - rec->ws_off);
        wv->all->len += rec->ws->len - rec->ws_off;
    }
    wv->off[wv->n] = wv->all->len;
    return wv->all;
}

/* Gives member c (its entry r of the wave's room) the wave's first k messages it has not had. */
static void wave_catch_up(struct wave *wv, struct conn *c, struct chat_sroom *r, uint32_t k)
{
    if (!wave_whole(c, r, wv->room)) {
        for (uint32_t j = 0; j < k && conn_is_open(c); j++)
            wv->delivered += deliver_to_member((struct local_member){c, r}, wv->msg[j]);
        return;
    }
    uint32_t first = 0;
    while (first < k && wv->msg[first]->rec.seq <= r->last_seq)
        first++;
    if (first == k)
        return;
    r->last_seq = wv->msg[k - 1]->rec.seq;
    wv->delivered += k - first;
    struct chunk *all = wave_frames(wv);
    if (!output_fits(c, c->session, wv->off[k] - wv->off[first])) {
        slow_consumer(c);
        return;
    }
    conn_send(c, chunk_ref(all), wv->off[first], wv->off[k]);
}

/* Handles b's entries [from, to): a wave (wave_end) and the answers between its messages. */
static void deliver_wave(struct worker *w, struct chat_worker *cw, struct deliver_batch *b,
                         size_t from, size_t to)
{
    struct local_room *lr = map_get(&cw->rooms, b->items[from].room);
    if (!lr) { /* nobody here: only the answers are for us */
        for (size_t i = from; i < to; i++)
            deliver_one(w, cw, &b->items[i]);
        return;
    }
    struct wave wv;
    wave_make(cw, &wv, b, from, to);
    uint32_t k = 0;
    for (size_t i = from; i < to; i++) {
        struct deliver *d = &b->items[i];
        if (d->kind == DELIVER_ROOM) {
            k++;
            continue;
        }
        /* A sender has its messages up to here before the answer to its send. */
        struct conn *c = map_get_u64(&cw->conns, d->op->conn_id);
        struct chat_sroom *r = open_sroom(c, wv.room);
        if (r)
            wave_catch_up(&wv, c, r, k);
        op_done(w, d->op);
        d->op = NULL;
    }
    /* As in deliver_room: a slow consumer closed here leaves the list; walk from the end. */
    lr = map_get(&cw->rooms, wv.room);
    for (size_t i = lr ? lr->n : 0; i-- > 0;) {
        if (i >= lr->n)
            continue;
        struct local_member m = lr->m[i];
        wave_catch_up(&wv, m.c, m.r, wv.n);
        if (!conn_is_open(m.c) && !(lr = map_get(&cw->rooms, wv.room)))
            break;
    }
    chunk_unref(wv.all);
    metrics_add(METRIC_DELIVERIES, wv.delivered);
}

void chat_worker_mail(struct worker *w, struct mail *m)
{
    struct chat_worker *cw = w->chat;
    if (m->kind == MAIL_OP) {
        op_done(w, (struct chat_op *)m);
        return;
    }
    struct deliver_batch *b = (struct deliver_batch *)m;
    for (size_t i = 0; i < b->n;) {
        size_t end = wave_end(b, i);
        if (end > i) {
            deliver_wave(w, cw, b, i, end);
            i = end;
        } else {
            deliver_one(w, cw, &b->items[i++]);
        }
    }
    if (cw->n_joiners)
        run_joiners_settle(cw, NULL, NULL);
    deliver_batch_free(b);
}

void chat_mail_drop(struct mail *m)
{
    if (m->kind == MAIL_OP)
        chat_op_free((struct chat_op *)m);
    else if (m->kind == MAIL_DELIVER)
        deliver_batch_free((struct deliver_batch *)m);
    else
        free(m);
}

void chat_worker_init(struct worker *w)
{
    struct chat_worker *cw = xcalloc(1, sizeof *cw);
    map_init(&cw->conns, false);
    map_init_borrowed(&cw->rooms);
    map_init_borrowed(&cw->users);
    POOL_INIT(&cw->sessions, struct chat_session);
    POOL_INIT(&cw->srooms, struct chat_sroom);
    timer_init(&cw->sweep, sweep_sends);
    cw->w = w;
    w->chat = cw;
}

void chat_worker_destroy(struct worker *w)
{
    struct chat_worker *cw = w->chat;
    if (!cw)
        return;
    size_t pos = 0;
    const char *k;
    void *v;
    while (map_next(&cw->rooms, &pos, &k, &v)) {
        free(((struct local_room *)v)->m);
        free(v);
    }
    map_free(&cw->rooms);
    map_free(&cw->users);
    map_free(&cw->conns);
    free(cw->joiners);
    free(cw->senders); /* (the loop, with the sweep's timer, is gone) */
    free(cw->wave_msg);
    free(cw->wave_off);
    pool_destroy(&cw->sessions);
    pool_destroy(&cw->srooms);
    free(cw);
    w->chat = NULL;
}

/* --- live upgrades: a session written into a record, and read back in the next process --- */

bool chat_session_busy(const struct conn *c, unsigned version)
{
    const struct chat_session *s = c->session;
    /* A password check on its way is carried by records of version 2 on (HR_PW_OP). */
    uint32_t carried = version >= 2 && s && chat_session_cold(s)->pw ? 1 : 0;
    return s && (s->ops_out > carried || s->adopting);
}

size_t chat_session_replays(const struct conn *c)
{
    const struct chat_session *s = c->session;
    size_t n = 0;
    for (size_t i = 0; s && i < backlog_n(s); i++)
        n += backlog_at(s, i)->replay != NULL;
    return n;
}

/* The send attempts of the last HR_ATTEMPT_SECONDS seconds, [0] this second's. */
static void attempts_by_age(const uint16_t attempts[10], uint64_t attempts_sec, uint64_t now,
                            uint16_t out[])
{
    uint64_t sec = now / 1000;
    for (uint64_t i = 0; i < HR_ATTEMPT_SECONDS; i++) {
        uint64_t at = sec - i;
        bool kept = i <= sec && at <= attempts_sec && attempts_sec - at < 10;
        out[i] = kept ? attempts[at % 10] : 0;
    }
}

/* A bucket as HR_REACT's or HR_SEARCH's bytes (handover_rec.c): tokens, refill age, attempts by
 * age. */
static void save_bucket(const struct chat_bucket *b, uint64_t now, uint16_t tag,
                        struct hr_writer *w)
{
    uint8_t bytes[16 + 2 * HR_ATTEMPT_SECONDS];
    uint64_t tokens = (uint64_t)((b->tokens > 0 ? b->tokens : 0) * 1e6 + 0.5);
    uint64_t age = now > b->refill_ms ? now - b->refill_ms : 0;
    for (int i = 0; i < 8; i++) {
        bytes[i] = (uint8_t)(tokens >> (8 * i));
        bytes[8 + i] = (uint8_t)(age >> (8 * i));
    }
    uint16_t attempts[HR_ATTEMPT_SECONDS];
    attempts_by_age(b->attempts, b->attempts_sec, now, attempts);
    for (int i = 0; i < HR_ATTEMPT_SECONDS; i++) {
        bytes[16 + 2 * i] = (uint8_t)attempts[i];
        bytes[16 + 2 * i + 1] = (uint8_t)(attempts[i] >> 8);
    }
    hr_put(w, tag, bytes, sizeof bytes);
}

/* A bucket from a record's tokens (millionths), refill age and attempts by age: at most full. */
static void restore_bucket(double *tokens, uint64_t *refill_ms, uint16_t attempts[10],
                           uint64_t *attempts_sec, uint32_t rate, uint64_t tokens_micro,
                           uint64_t refill_age_ms, const uint16_t by_age[], uint64_t now)
{
    *tokens = (double)tokens_micro / 1e6;
    if (*tokens > rate)
        *tokens = rate;
    *refill_ms = now > refill_age_ms ? now - refill_age_ms : 0;
    *attempts_sec = now / 1000;
    for (uint64_t i = 0; i < HR_ATTEMPT_SECONDS && i <= *attempts_sec; i++)
        attempts[(*attempts_sec - i) % 10] = by_age[i];
}

void chat_session_save(struct conn *c, struct hr_writer *w)
{
    struct chat_session *s = c->session;
    const struct chat_session_cold *k = chat_session_cold(s);
    uint64_t now = conn_now(c);
    hr_u64(w, HR_CHAT, 1);
    hr_u64(w, HR_LOGGED_IN, s->logged_in);
    hr_u64(w, HR_LOGIN_PENDING, s->login_pending);
    hr_u64(w, HR_AUTH_PENDING, s->auth_pending);
    hr_u64(w, HR_LOGIN_PAUSED_MS, s->login_paused_ms);
    hr_u64(w, HR_GUEST, s->guest);
    hr_u64(w, HR_GUEST_SESSION, s->guest_session);
    hr_i64(w, HR_CREATED_MS, s->created_ms);
    char user[CHAT_NAME_MAX];
    hr_str(w, HR_USER, chat_session_user(s, user));
    hr_str(w, HR_USER_LC, s->user_lc);
    hr_u64(w, HR_JOIN_COUNTER, s->join_counter);
    /* No send bucket: written as a full one (a new bucket, made now). */
    const struct chat_bucket full = {.tokens = cfg_of(c)->rate_limit, .refill_ms = now};
    const struct chat_bucket *send = k->send ? &k->send->b : &full;
    double tokens = send->tokens > 0 ? send->tokens : 0;
    hr_u64(w, HR_TOKENS_MICRO, (uint64_t)(tokens * 1e6 + 0.5));
    hr_u64(w, HR_REFILL_AGE_MS, now > send->refill_ms ? now - send->refill_ms : 0);
    uint16_t attempts[HR_ATTEMPT_SECONDS];
    attempts_by_age(send->attempts, send->attempts_sec, now, attempts);
    uint8_t bytes[2 * HR_ATTEMPT_SECONDS];
    for (int i = 0; i < HR_ATTEMPT_SECONDS; i++) {
        bytes[2 * i] = (uint8_t)attempts[i];
        bytes[2 * i + 1] = (uint8_t)(attempts[i] >> 8);
    }
    hr_put(w, HR_ATTEMPTS, bytes, sizeof bytes);
    if (k->react && w->version >= 4)
        save_bucket(k->react, now, HR_REACT, w); /* an older reader starts the bucket full */
    if (k->search && w->version >= 5)
        save_bucket(k->search, now, HR_SEARCH, w);
    if ((s->away || k->status_text) && w->version >= 5) {
        /* The user's status (rule 69): the next process's hub has it from its connections. */
        size_t n = k->status_text ? strlen(k->status_text) : 0;
        uint8_t *p = hr_space(w, HR_STATUS, 1 + n);
        p[0] = s->away;
        if (n)
            memcpy(p + 1, k->status_text, n);
    }
    if (s->charged_cids) {
        uint8_t keys[8 * HR_N_CIDS];
        for (int i = 0; i < HR_N_CIDS; i++)
            for (int b = 0; b < 8; b++)
                keys[8 * i + b] = (uint8_t)(s->charged_cids[i] >> (8 * b));
        hr_put(w, HR_CIDS, keys, sizeof keys);
        hr_u64(w, HR_CIDS_NEXT, s->charged_cids_next);
    }
    uint64_t typed = k->send ? k->send->last_typing_ms : 0;
    if (typed)
        hr_u64(w, HR_TYPING_AGE_MS, now > typed ? now - typed : 0);
    for (size_t i = 0; i < s->n_rooms; i++) {
        const struct chat_sroom *r = chat_session_rooms(s)[i];
        hr_open(w, HR_ROOM);
        hr_str(w, HR_RM_NAME, r->name);
        hr_u64(w, HR_RM_LAST_SEQ, r->last_seq);
        hr_u64(w, HR_RM_JOINED_ORDER, r->joined_order);
        if (w->version >= 3) {
            hr_u64(w, HR_RM_TOLD_COUNT, r->told_count);
            hr_u64(w, HR_RM_TOLD_LARGE, r->told_large);
        }
        hr_close(w);
    }
    for (uint32_t i = 0; k->dms && w->version >= 6 && i < k->dms->n; i++) {
        const struct chat_dm_place *p = &k->dms->at[i];
        if (chat_session_room(s, p->room))
            continue; /* joined since: its room's last seq says where */
        hr_open(w, HR_DM);
        hr_str(w, HR_DM_NAME, p->room);
        hr_u64(w, HR_DM_LAST_SEQ, p->last_seq);
        hr_close(w);
    }
    if (k->pw && w->version >= 2) {
        hr_open(w, HR_PW_OP);
        hr_u64(w, HR_PO_KIND, k->pw->registering ? HR_PW_REGISTER : HR_PW_LOGIN);
        if (k->pw->id_json)
            hr_str(w, HR_PO_ID, k->pw->id_json);
        hr_str(w, HR_PO_NAME, k->pw->name);
        hr_put(w, HR_PO_PASSWORD, k->pw->password, k->pw->password_len);
        hr_u64(w, HR_PO_REGISTERED_GUEST, k->pw->registered_guest);
        hr_u64(w, HR_PO_GUEST_SESSION, k->pw->guest_session);
        hr_close(w);
    }
    for (size_t i = 0; i < backlog_n(s); i++) {
        const struct chat_backlog_entry *e = backlog_at(s, i);
        hr_open(w, HR_BACKLOG);
        if (e->replay) {
            /* A page on its way is read again by the next process. */
            hr_str(w, HR_BL_ROOM, e->replay->room);
            hr_u64(w, HR_BL_AFTER, e->replay->after);
            hr_u64(w, HR_BL_UNTIL, e->replay->until);
            hr_i64(w, HR_BL_TS, e->replay->ts);
        } else if (c->transport == CONN_TELNET) {
            hr_u64(w, HR_BL_LIVE, e->live);
            hr_put(w, HR_BL_MSG, e->rec.tn->data, e->rec.tn->len);
        } else {
            hr_u64(w, HR_BL_LIVE, e->live);
            hr_put(w, HR_BL_MSG, e->rec.ws->data + MSG_JSON_OFF, e->rec.ws->len - MSG_JSON_OFF);
        }
        hr_close(w);
    }
}

/* Copies a name of the record into out (CHAT_NAME_MAX or CHAT_ROOM_MAX bytes, checked by the
 * record's reader). */
static void copy_name(char *out, size_t outsz, struct hr_bytes b)
{
    size_t n = b.n < outsz ? b.n : outsz - 1;
    if (n)
        memcpy(out, b.p, n);
    out[n] = '\0';
}

/* A room name as this server writes it: a canonical room, or a canonical dm room. */
static bool valid_room(const char *name)
{
    char a[CHAT_NAME_MAX], b[CHAT_NAME_MAX], folded[CHAT_NAME_MAX];
    size_t n = strlen(name);
    if (strncmp(name, "dm:", 3) == 0) {
        char canon[CHAT_ROOM_MAX];
        if (!text_parse_dm_room(name, n, a, b))
            return false;
        text_dm_room(a, b, canon);
        return strcmp(canon, name) == 0;
    }
    return text_fold_room(name, n, folded) && strcmp(folded, name) == 0;
}

#undef FAIL
#define FAIL(text)                                                                                 \
    do {                                                                                           \
        *why = (text);                                                                             \
        return -1;                                                                                 \
    } while (0)

/* Restores the rooms and the backlog of rec into s (fresh). */
static int restore_rooms(struct conn *c, struct chat_session *s, const struct handover_rec *rec,
                         const char **why)
{
    struct hr_room room;
    size_t cursor = 0;
    while (handover_rec_room(rec, &cursor, &room)) {
        char name[CHAT_ROOM_MAX];
        copy_name(name, sizeof name, room.name);
        if (!valid_room(name) || chat_session_room(s, name))
            FAIL("a room name this server would not give, or twice");
        if (s->n_rooms >= cfg_of(c)->max_rooms + 1u)
            FAIL("more rooms than a connection may join here");
        struct chat_sroom *r = session_add_room(c, name);
        r->last_seq = room.last_seq;
        r->joined_order = room.joined_order;
        r->told_count = room.told_count;
        r->told_large = room.told_large;
        if (room.joined_order > s->join_counter)
            s->join_counter = room.joined_order;
    }
    struct hr_dm dm;
    cursor = 0;
    while (handover_rec_dm(rec, &cursor, &dm)) {
        char name[CHAT_ROOM_MAX];
        copy_name(name, sizeof name, dm.name);
        if (!s->logged_in || !valid_room(name) || !is_party(s, name) ||
            chat_session_room(s, name) || dm_place(s, name))
            FAIL("a dm room place this server would not keep");
        /* Caught up from there once the handover is over (adopt_step). */
        struct chat_dm_place *p = dm_place_add(s, name);
        if (!p) /* cannot happen: the record's reader allows no more than a session keeps */
            FAIL("more dm room places than a connection keeps");
        p->last_seq = dm.last_seq;
        p->catching_up = true;
    }
    struct hr_backlog e;
    cursor = 0;
    while (handover_rec_backlog(rec, &cursor, &e)) {
        if (e.is_replay) {
            struct chat_replay *rp = xcalloc(1, sizeof *rp);
            copy_name(rp->room, sizeof rp->room, e.room);
            rp->after = e.after;
            rp->until = e.until;
            rp->ts = e.ts;
            if (!valid_room(rp->room)) {
                free(rp);
                FAIL("a replay of a room this server would not name");
            }
            backlog_push(s, (struct chat_backlog_entry){.replay = rp}, 0);
            continue;
        }
        struct msg_rec m = {0};
        if (c->transport == CONN_TELNET)
            m.tn = chunk_from(e.msg.p, e.msg.n);
        else
            m = events_ws_text(e.msg.p, e.msg.n);
        backlog_push(s, (struct chat_backlog_entry){.rec = m, .live = e.live},
                     e.live ? rec_len(c, &m) : 0);
    }
    return 0;
}

/* The password check rec carries, to be submitted again (chat_session_thaw). */
static int restore_pw(struct chat_session *s, const struct handover_rec *rec, const char **why)
{
    const struct hr_pw_op *p = &rec->pw;
    bool registering = p->kind == HR_PW_REGISTER;
    /* A login comes from a connection not logged in; a registration from one not logged in, or
     * from a guest registering its own name. Input was held for either: no login can follow. */
    if (!rec->auth_pending || (!registering && (rec->logged_in || !rec->login_pending)) ||
        (registering &&
         (rec->login_pending || p->registered_guest != (rec->logged_in && rec->guest))))
        FAIL("a password check that does not go with the session");
    struct chat_pw *pw = xcalloc(1, sizeof *pw);
    pw->registering = registering;
    pw->resubmit = true;
    copy_name(pw->name, sizeof pw->name, p->name);
    pw->password = xstrndup((const char *)p->password.p, p->password.n);
    pw->password_len = p->password.n;
    pw->registered_guest = p->registered_guest;
    pw->guest_session = p->guest_session;
    chat_session_cold_make(s)->pw = pw;
    if (p->id_json.n) {
        pw->id_json = xstrndup((const char *)p->id_json.p, p->id_json.n);
        json_t *id = json_loads(pw->id_json, JSON_DECODE_ANY, NULL);
        bool ok = id && (json_is_string(id) || json_is_integer(id));
        json_decref(id);
        if (!ok)
            FAIL("a request id that is not one");
    }
    if (!text_valid_user(pw->name, strlen(pw->name)) || memchr(pw->password, 0, pw->password_len))
        FAIL("a password check this server would not have taken");
    s->login_pending = rec->login_pending;
    s->auth_pending = true;
    return 0;
}

/* A password check moved here with its connection goes on its way again, from the start: the
 * old process never finished it (its store refused the write, or its answer was dropped). */
static void resubmit_pw(struct conn *c)
{
    struct chat_session *s = c->session;
    struct chat_pw *pw = chat_session_cold(s)->pw;
    pw->resubmit = false;
    struct chat_op *op = chat_op_new(pw->registering ? CHAT_REGISTER : CHAT_LOGIN_PASSWORD,
                                     (uint16_t)((struct worker *)c->set->owner)->id, c->id);
    if (pw->id_json)
        op->id = json_loads(pw->id_json, JSON_DECODE_ANY, NULL);
    memcpy(op->name, pw->name, sizeof op->name);
    memcpy(op->user, pw->name, sizeof op->user);
    text_lower(op->name, strlen(op->name), op->user_lc);
    op->password = xstrndup(pw->password, pw->password_len);
    op->password_len = pw->password_len;
    op->net_key = c->net_key;
    log_debug("msg=handover_resubmitted conn=%llu kind=%s", (unsigned long long)c->id,
              pw->registering ? "register" : "login");
    sent(c);
    if (pw->registering) {
        op->registered_guest = pw->registered_guest;
        op->guest_session = pw->guest_session;
        op->user_created_ms = wall_ms();
        chat_to_hub(op);
    } else {
        chat_to_auth(op); /* the throttles first, as for any login */
    }
}

int chat_session_restore(struct conn *c, const struct chat_transport *t,
                         const struct handover_rec *rec, const char **why)
{
    struct chat_session *s = chat_session_open(c, t);
    uint64_t now = conn_now(c);
    if (!rec->has_chat)
        return 0;
    if ((rec->login_pending || rec->auth_pending) && !rec->pw.present)
        FAIL("a login on its way without the request to submit again");
    if (rec->pw.present && restore_pw(s, rec, why) < 0)
        return -1;
    s->login_paused_ms =
        rec->login_paused_ms < UINT32_MAX ? (uint32_t)rec->login_paused_ms : UINT32_MAX;
    if (rec->has_status) {
        const char *text = (const char *)rec->status_text.p;
        size_t n = rec->status_text.n, trimmed = 0;
        const char *bad = NULL;
        if (proto_status_text(text, n, SIZE_MAX, &trimmed, &bad) != PROTO_OK || trimmed != n)
            FAIL("a status text this server would not keep");
        s->away = rec->status_away;
        if (n)
            chat_session_cold_make(s)->status_text = xstrndup(text, n);
    }
    if (rec->logged_in) {
        char user[CHAT_NAME_MAX], lc[CHAT_NAME_MAX];
        copy_name(user, sizeof user, rec->user);
        copy_name(s->user_lc, sizeof s->user_lc, rec->user_lc);
        text_lower(user, strlen(user), lc);
        if (!text_valid_user(user, strlen(user)) || strcmp(lc, s->user_lc) != 0)
            FAIL("a user name this server would not give");
        s->user_caps = text_name_caps(user);
        s->logged_in = true;
        s->guest = rec->guest;
        s->guest_session = rec->guest_session;
        s->created_ms = rec->created_ms;
        local_user_add(chat_of(c), c);
    } else if (rec->n_rooms > 0) {
        FAIL("rooms joined without a login");
    }
    /* The send bucket as the record has it, kept only when not as a missing one reads. */
    struct chat_sends sends = {0};
    restore_bucket(&sends.b.tokens, &sends.b.refill_ms, sends.b.attempts, &sends.b.attempts_sec,
                   cfg_of(c)->rate_limit, rec->tokens_micro, rec->refill_age_ms, rec->attempts,
                   now);
    if (rec->has_typing)
        sends.last_typing_ms = now > rec->typing_age_ms ? now - rec->typing_age_ms : 1;
    if (!sends_quiet(&sends, cfg_of(c)->rate_limit, now)) {
        struct chat_sends *kept = xmalloc(sizeof *kept);
        *kept = sends;
        sends_attach(c, s, kept);
    }
    if (rec->has_react) {
        struct chat_bucket *b = chat_session_cold_make(s)->react = xcalloc(1, sizeof *b);
        restore_bucket(&b->tokens, &b->refill_ms, b->attempts, &b->attempts_sec,
                       cfg_of(c)->react_rate, rec->react_tokens_micro, rec->react_refill_age_ms,
                       rec->react_attempts, now);
    }
    if (rec->has_search) {
        struct chat_bucket *b = chat_session_cold_make(s)->search = xcalloc(1, sizeof *b);
        restore_bucket(&b->tokens, &b->refill_ms, b->attempts, &b->attempts_sec,
                       cfg_of(c)->search_rate, rec->search_tokens_micro, rec->search_refill_age_ms,
                       rec->search_attempts, now);
    }
    if (rec->has_cids) {
        s->charged_cids = xcalloc(CHARGED_CIDS, sizeof *s->charged_cids);
        memcpy(s->charged_cids, rec->cids, sizeof rec->cids);
        s->charged_cids_next = rec->cids_next;
    }
    s->join_counter = rec->join_counter;
    if (s->logged_in) {
        /* Online again, before anyone new can log in: no one may take the guest's name. And
         * counted as one of the user's connections, with the status it knew (rule 69). Before
         * the rooms, which may still refuse the record: the close that follows then counts out
         * exactly what this counted in. */
        struct chat_op *op =
            chat_op_new(CHAT_ADOPT, (uint16_t)((struct worker *)c->set->owner)->id, c->id);
        chat_session_user(s, op->user);
        memcpy(op->user_lc, s->user_lc, sizeof op->user_lc);
        op->guest = s->guest;
        op->guest_session = s->guest_session;
        op->status_session = s->guest ? s->guest_session : 0;
        op->away = s->away;
        const char *text = chat_session_cold(s)->status_text;
        if (text) {
            op->text = xstrdup(text);
            op->text_len = strlen(text);
        }
        chat_to_hub(op);
    }
    if (restore_rooms(c, s, rec, why) < 0)
        return -1;
    return 0;
}

#undef FAIL

/* A moved session's dm room not joined: what was stored after its place is asked for, as a
 * join with since that counts nobody in; meanwhile the room's messages are left to it. */
static void dm_catch_up(struct conn *c, const struct chat_dm_place *p)
{
    struct chat_session *s = c->session;
    struct chat_op *op =
        chat_op_new(CHAT_JOIN, (uint16_t)((struct worker *)c->set->owner)->id, c->id);
    memcpy(op->room, p->room, sizeof op->room);
    op->room_is_dm = true;
    chat_session_user(s, op->user);
    memcpy(op->user_lc, s->user_lc, sizeof op->user_lc);
    op->guest = s->guest;
    op->guest_session = s->guest_session;
    op->adopt = op->rejoin = op->catch_up = true;
    op->has_since = true;
    op->since = p->last_seq;
    op->names_limit = 0;
    if (!s->guest)
        op->ts = s->created_ms; /* rule 40 */
    replay_pending_set(s, p->room);
    sent(c);
    chat_to_hub(op);
}

/* The next room a moved session joins again with the hub, or the end of its adoption. */
static void adopt_step(struct conn *c)
{
    struct chat_session *s = c->session;
    while (s->adopt_at < s->n_rooms) {
        struct chat_sroom *r = chat_session_rooms(s)[s->adopt_at++];
        if (r->hub)
            continue;
        struct chat_op *op =
            chat_op_new(CHAT_JOIN, (uint16_t)((struct worker *)c->set->owner)->id, c->id);
        memcpy(op->room, r->name, sizeof op->room);
        op->room_is_dm = strncmp(r->name, "dm:", 3) == 0;
        chat_session_user(s, op->user);
        memcpy(op->user_lc, s->user_lc, sizeof op->user_lc);
        op->guest = s->guest;
        op->guest_session = s->guest_session;
        op->adopt = true;
        op->has_since = true;
        op->since = r->last_seq;
        op->names_limit = 0;
        op->adopt_large = r->told_large;
        if (op->room_is_dm && !s->guest)
            op->ts = s->created_ms; /* rule 40 */
        /* Its messages that reach this connection meanwhile are left to this join's replay. */
        replay_pending_set(s, r->name);
        sent(c);
        chat_to_hub(op);
        return;
    }
    struct chat_dms *d = chat_session_cold(s)->dms;
    for (uint32_t i = 0; d && i < d->n; i++) {
        struct chat_dm_place *p = &d->at[i];
        if (p->catching_up) {
            dm_catch_up(c, p);
            return;
        }
    }
    s->adopting = false;
    if (chat_session_cold(s)->pw && chat_session_cold(s)->pw->resubmit)
        resubmit_pw(c);
    if (!s->login_pending && !s->auth_pending && !holding_join(c))
        release_input(c);
}

void chat_session_thaw(struct conn *c)
{
    struct chat_session *s = c->session;
    if (!s)
        return;
    s->adopting = true;
    s->adopt_at = 0;
    conn_hold_input(c);
    adopt_step(c);
}

/* A moved session's dm room place, caught up: what was stored after it follows, in order, and
 * the room's messages from here on are written as they come. */
static void dm_caught_up(struct conn *c, struct chat_op *op)
{
    struct chat_dm_place *p = dm_place(c->session, op->room);
    if (!p || op->err) {
        if (p)
            p->catching_up = false;
        replay_lost(c, op->room); /* what was left to it cannot be given: the client resumes */
        chat_op_free(op);
        return;
    }
    p->catching_up = false;
    replay_take(c, op, &p->last_seq, false);
    chat_op_free(op);
    if (conn_is_open(c))
        adopt_step(c);
}

/* A moved session's room, joined again: what was stored since the client's last seq follows. */
static void adopt_joined(struct conn *c, struct chat_op *op)
{
    struct chat_session *s = c->session;
    replay_pending_set(s, NULL);
    s->replay_skipped = false;
    if (op->catch_up) {
        dm_caught_up(c, op);
        return;
    }
    if (op->err) {
        /* The hub counted it in before the store failed to read the replay: a gap cannot be
         * left, so the client resumes, as after a failed join. */
        struct chat_sroom *r = chat_session_room(s, op->room);
        if (r)
            r->hub = true;
        replay_lost(c, op->room);
        chat_op_free(op);
        return;
    }
    joined(c, op);
    chat_op_free(op);
    if (conn_is_open(c))
        adopt_step(c);
}
