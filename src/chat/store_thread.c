/* store_thread: group commit, sequencing and reads on the store's own thread. */
#include "store_thread.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "alloc.h"
#include "chat.h"
#include "events.h"
#include "hub_broker.h"
#include "log.h"
#include "loop.h"
#include "map.h"
#include "metrics.h"
#include "search_cursor.h"
#include "search_text.h"
#include "timeline.h"

#define MAX_BATCH 1024
/*
 * The search index trails the commits where the store allows it (store.h, search_backlog):
 * caught up once no batch came for SEARCH_QUIET_MS, at once when SEARCH_BACKLOG_MAX messages
 * wait, and before a search reads it. So a busy store writes the index once per many batches
 * instead of once per batch (indexing was half of a commit's time), and every search sees every
 * message acknowledged before it. PARLEY_TEST_SEARCH_QUIET_MS (tests only) moves the quiet time,
 * so a test can hold messages in the backlog.
 */
#define SEARCH_QUIET_MS 100
#define SEARCH_BACKLOG_MAX 500
/* Erasures (rules 52, 53) leave the WAL by a checkpoint this long after the first of a run. */
#define ERASE_CHECKPOINT_MS 30000
/* The search index's merge after erasures: steps for at most this long at a time, then a pause
 * in which mail (and so group commit) goes on. */
#define ERASE_MERGE_SLICE_MS 5
#define ERASE_MERGE_PAUSE_MS 2
/* At shutdown the merge runs to its end; this bounds it should a step keep reporting work. */
#define ERASE_MERGE_STEPS_MAX 1000000
#define REPLAY_PAGE CHAT_REPLAY_PAGE
/* The room that always exists (hub.c) and has no owner: counted whether it has a row or not. */
#define ROOM_ALWAYS "general"

struct seq_room {
    uint64_t last_seq;
    /* Retention: the seq of the oldest message kept once the room holds --retention messages
     * (0: not known). Each message stored moves it to the next message, an index seek, instead
     * of counting N messages back at every send. */
    uint64_t cut;
    /* The batch whose transaction last read last_seq from a shared database (store.h,
     * room_seqs): read once per room and batch, since the room's lock holds until its end. */
    uint64_t synced_batch;
};

struct store_thread {
    struct store *db;
    const struct config *cfg;
    struct map rooms; /* room -> struct seq_room */
    struct chat_op **batch;
    size_t n_batch;
    enum store_gate gate;
    struct chat_op **held; /* writes waiting while the gate is HELD */
    size_t n_held, cap_held;
    int64_t last_ts; /* the store's timeline: message times never go back (see stamp) */
    int64_t batch_clock; /* during a batch: the database's clock (store.h, clock_ms), else 0 */
    uint64_t batch_no;   /* counts batches, from 1 (seq_room.synced_batch) */
    enum metric_engine engine; /* the store's, for /metrics */
    /* A store that keeps failing (full disk, deleted file) is logged once a minute, with how
     * many batches failed since, not once per batch. */
    uint64_t failed_logged_ms;
    uint64_t failed_unlogged;
    struct service *service;
    struct timer erase_timer; /* armed while an erased text may still be in the WAL */
    bool erase_at_start;      /* arm it at the first batch: a crash may have left erasures */
    bool erased;              /* an edit or delete committed since the last finished merge */
    struct timer search_timer; /* armed while the search backlog holds messages */
    uint64_t last_batch_ms;    /* loop time of the last batch's end */
    uint64_t search_quiet_ms;  /* SEARCH_QUIET_MS, or the test hook's */
};

#define FAILED_LOG_EVERY_MS 60000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Times on the store's own timeline: a message is stamped no earlier than
 * the one before it, and an account is created strictly after every message
 * stored before it, so rule 40's "from the moment its account was created"
 * is exact even within one millisecond.
 */
static int64_t stamp(struct store_thread *st, bool strictly_later)
{
    int64_t now = st->batch_clock ? st->batch_clock : now_ms();
    int64_t floor = st->last_ts + (strictly_later ? 1 : 0);
    st->last_ts = now > floor ? now : floor;
    return st->last_ts;
}

static struct seq_room *room_of(struct store_thread *st, const char *name)
{
    struct seq_room *r = map_get(&st->rooms, name);
    if (!r) {
        r = xcalloc(1, sizeof *r);
        map_put(&st->rooms, name, r);
    }
    return r;
}

static void load_room(void *arg, const char *room, uint64_t last_seq, int64_t created_ms)
{
    (void)created_ms;
    room_of(arg, room)->last_seq = last_seq;
}

/* --- tokens: 256 random bits handed to the client; only their SHA-256 is kept --- */

static void hash_token(const char *token, uint8_t out[STORE_TOKEN_HASH])
{
    crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}

static int new_token(struct store_thread *st, struct chat_op *op)
{
    uint8_t raw[32], hash[STORE_TOKEN_HASH];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(op->token, sizeof op->token, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    hash_token(op->token, hash);
    struct store_token t = {.guest = op->guest, .guest_session = op->guest_session};
    memcpy(t.user, op->user, sizeof t.user);
    t.expires_ms =
        now_ms() + (int64_t)(op->guest ? st->cfg->guest_token_ttl_ms : st->cfg->token_ttl_ms);
    return st->db->ops->token_put(st->db, hash, &t);
}

static void add_dm(void *arg, const char *room, uint64_t last_seq, int64_t created_ms)
{
    (void)created_ms;
    chat_op_add_room(arg, room, 0, last_seq);
}

/* The table's dm rooms of user (or, when NULL, of any of users), each once: this process is the
 * database's only writer, so the table holds every room. */
static void table_dms(struct store_thread *st, struct chat_op *op, const char *user,
                      const struct map *users)
{
    size_t pos = 0;
    const char *name;
    void *v;
    while (map_next(&st->rooms, &pos, &name, &v)) {
        char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
        if (!text_parse_dm_room(name, strlen(name), a, b))
            continue;
        bool of = user ? strcmp(a, user) == 0 || strcmp(b, user) == 0
                       : map_get(users, a) || map_get(users, b);
        if (of)
            chat_op_add_room(op, name, 0, ((struct seq_room *)v)->last_seq);
    }
}

/*
 * welcome.dms: every dm room the user is a party of, with its latest seq. On a database other
 * nodes write too, read from it (they make dm rooms and store dms this table never sees);
 * else from the table, which holds every room. Returns 0 or a store error.
 */
static int list_dms(struct store_thread *st, struct chat_op *op)
{
    if (st->db->ops->dm_rooms)
        return st->db->ops->dm_rooms(st->db, op->user_lc, add_dm, op);
    table_dms(st, op, op->user_lc, NULL);
    return 0;
}

/* CHAT_DM_SEQS: list_dms for every user named in op->gone_rooms at once, each room once: one
 * read for all the users whose channels a reconnect to the broker made ready. */
static int list_dms_of(struct store_thread *st, struct chat_op *op)
{
    size_t n = op->gone_rooms_n;
    if (st->db->ops->dm_rooms_of) {
        const char **names = xmalloc((n ? n : 1) * sizeof *names);
        for (size_t i = 0; i < n; i++)
            names[i] = op->gone_rooms[i];
        int rc = st->db->ops->dm_rooms_of(st->db, names, n, add_dm, op);
        free(names);
        return rc;
    }
    struct map users;
    map_init_borrowed(&users); /* the names stay in op */
    for (size_t i = 0; i < n; i++)
        map_put(&users, op->gone_rooms[i], (void *)1);
    table_dms(st, op, NULL, &users);
    map_free(&users);
    return 0;
}

/*
 * A guest's dm rooms with their latest seqs, read at its login for the hub alone: its welcome
 * lists none (rule 19), but with other nodes they are where its dm rooms start here
 * (hub_broker_user_dms), as a registered user's welcome's are. Alone, nothing is read.
 */
static int guest_dm_starts(struct store_thread *st, struct chat_op *op)
{
    return st->cfg->broker ? list_dms(st, op) : 0;
}

/* --- read markers and saved rooms (protocol 1.1 rules 66-68) --- */

/* welcome's unread and mentions stop here (rule 68: 1000 means 1000 or more). */
#define UNREAD_CAP 1000

/* A room's latest seq, without making an entry for a room the store has not seen. */
static uint64_t latest_of(struct store_thread *st, const char *room)
{
    struct seq_room *r = map_get(&st->rooms, room);
    return r ? r->last_seq : 0;
}

/* r's counts after its marker (r->read), for the registered user of op (rule 68). */
static int count_unread(struct store_thread *st, const struct chat_op *op,
                        struct chat_room_info *r, int64_t min_ts)
{
    if (r->read >= r->seq)
        return 0; /* nothing after the marker: no need to look */
    return st->db->ops->unread(st->db, r->name, op->user_lc, r->read, min_ts, UNREAD_CAP,
                               &r->unread, &r->mentions);
}

static void collect_saved(void *arg, const char *room, uint64_t marker, uint64_t latest)
{
    struct chat_op *op = arg;
    chat_op_add_saved(op, room, latest)->read = marker;
}

/*
 * A registered login's welcome: the read marker and counts of each dm room listed (rule 40: only
 * what was stored since the account was made), and the saved rooms with theirs. Returns 0 or a
 * store error.
 */
static int list_reads(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    for (size_t i = 0; i < op->n_rooms; i++) {
        struct chat_room_info *r = &op->rooms[i];
        int rc = db->ops->marker_get(db, op->user_lc, r->name, &r->read);
        if (rc == -ENOENT)
            r->read = 0;
        else if (rc < 0)
            return rc;
        rc = count_unread(st, op, r, op->user_created_ms);
        if (rc < 0)
            return rc;
    }
    int rc = db->ops->saved_list(db, op->user_lc, collect_saved, op);
    for (size_t i = 0; rc == 0 && i < op->n_saved; i++) {
        struct chat_room_info *r = &op->saved[i];
        uint64_t mine = latest_of(st, r->name); /* the database's may be newer (other nodes) */
        r->seq = mine > r->seq ? mine : r->seq;
        rc = count_unread(st, op, r, 0);
    }
    return rc;
}

/* Whether the requester is banned (kind STORE_MOD_BAN) or muted (STORE_MOD_MUTE) in op's room
 * at now: 1 after failing op with banned or muted, 0 if not, or a store error. */
static int refused_by(struct store_thread *st, struct chat_op *op, enum store_mod_kind kind,
                      int64_t now)
{
    int64_t until;
    int rc = st->db->ops->restriction(st->db, op->room, kind, op->user_lc, now, &until);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    bool ban = kind == STORE_MOD_BAN;
    snprintf(op->why_buf, sizeof op->why_buf, ban ? "banned from #%s" : "muted in #%s", op->room);
    chat_op_fail(op, ban ? PROTO_BANNED : PROTO_MUTED, op->why_buf);
    return 1;
}

/*
 * A registered user's join of a public room: a room with no row is created here, the store
 * deciding for every node (rule 74). Under the room count's lock (store.h, room_count) the row is
 * looked for again, since another node may have made it meanwhile, and past --max-total-rooms
 * the join fails with too_many_rooms. op->room_owner_lc gets the owner the store keeps.
 * Returns 1 after failing op, 0, or a store error.
 */
static int room_claim(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    char owner[STORE_NAME_MAX + 1] = "";
    op->room_owner_lc[0] = '\0';
    if (strcmp(op->room, ROOM_ALWAYS) == 0)
        return 0;
    int rc = db->ops->room_owner(db, op->room, owner);
    if (rc == -ENOENT) {
        uint64_t n = 0;
        rc = db->ops->room_count(db, ROOM_ALWAYS, &n);
        if (rc == 0)
            rc = db->ops->room_owner(db, op->room, owner);
        if (rc == -ENOENT) {
            uint64_t max = st->cfg->max_total_rooms;
            if (max && n >= max) {
                chat_op_fail(op, PROTO_TOO_MANY_ROOMS, "this server has as many rooms as it may");
                return 1;
            }
            room_of(st, op->room);
            rc = db->ops->room_create(db, op->room, now_ms(), op->user_lc);
            snprintf(owner, sizeof owner, "%s", op->user_lc);
            op->room_made = true;
        }
    }
    if (rc < 0)
        return rc;
    snprintf(op->room_owner_lc, sizeof op->room_owner_lc, "%s", owner);
    return 0;
}

/* A registered user's join (rule 67): a public room is saved unless it is already, within the
 * per-connection room limit counted over the saved rooms, with a marker at its latest seq if it
 * has none; the marker goes back in op->marker for joined.read. */
static int join_save(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    int rc;
    if (!op->room_is_dm) {
        /* The hub checked its mirror of the room's bans; another node may have stored a ban it
         * has not delivered yet, and the store decides (rule 74: nodes never disagree). */
        rc = refused_by(st, op, STORE_MOD_BAN, stamp(st, false));
        if (rc != 0)
            return rc < 0 ? rc : 0;
        bool saved = false;
        rc = db->ops->saved_has(db, op->user_lc, op->room, &saved);
        if (rc < 0)
            return rc;
        if (!saved) {
            uint64_t n = 0;
            rc = db->ops->saved_count(db, op->user_lc, &n);
            if (rc < 0)
                return rc;
            if (n >= st->cfg->max_rooms) {
                /* The hub has checked banned, no_such_room and the other limits (rule 75). */
                chat_op_fail(op, PROTO_TOO_MANY_ROOMS,
                             "you keep as many rooms as a connection may join: leave one first");
                return 0;
            }
        }
        /* The server-wide limit ranks after the saved-room one (rule 75). */
        rc = room_claim(st, op);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        if (!saved) {
            rc = db->ops->saved_set(db, op->user_lc, op->room, true);
            if (rc == 0)
                rc = db->ops->marker_raise(db, op->user_lc, op->room, latest_of(st, op->room),
                                           true);
            if (rc < 0)
                return rc;
        }
    }
    rc = db->ops->marker_get(db, op->user_lc, op->room, &op->marker);
    if (rc == -ENOENT) {
        op->marker = 0;
        rc = 0;
    }
    return rc;
}

/* A registered user's leave of a public room forgets it (rule 67); when this connection had not
 * joined it, only a saved room may be left. */
static int leave_forget(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    if (op->not_joined) {
        bool saved = false;
        int rc = db->ops->saved_has(db, op->user_lc, op->room, &saved);
        if (rc < 0)
            return rc;
        if (!saved) {
            chat_op_fail(op, PROTO_NOT_MEMBER, "you are not in that room");
            return 0;
        }
    }
    return db->ops->saved_set(db, op->user_lc, op->room, false);
}

/* `read` (rule 66): the marker becomes the larger of itself and the request's seq (op->target),
 * read as at most the room's latest; op->seq is the marker after, marker_moved whether it moved.
 * Inside the batch's transaction, so two reads of one batch see each other. */
static int read_marker(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    uint64_t latest = latest_of(st, op->room);
    uint64_t want = op->target < latest ? op->target : latest;
    uint64_t marker = 0;
    int rc = db->ops->marker_get(db, op->user_lc, op->room, &marker);
    if (rc == -ENOENT)
        marker = 0;
    else if (rc < 0)
        return rc;
    op->seq = marker;
    if (want <= marker)
        return 0;
    rc = db->ops->marker_raise(db, op->user_lc, op->room, want, false);
    if (rc < 0)
        return rc;
    op->seq = want;
    op->marker_moved = true;
    return 0;
}

/* Rule 51: a guest session registered its name, and the rooms its connections joined (the hub
 * listed them in op->gone_rooms) become the account's saved rooms, with markers at their latest
 * seq. Not held to the saved-room limit: they are joined already. */
static int save_rooms(struct store_thread *st, const struct chat_op *op, const char *account)
{
    struct store *db = st->db;
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < op->gone_rooms_n; i++) {
        const char *room = op->gone_rooms[i];
        rc = db->ops->saved_set(db, account, room, true);
        if (rc == 0)
            rc = db->ops->marker_raise(db, account, room, latest_of(st, room), false);
    }
    return rc;
}

/* --- the timeline (protocol 1.1): events that name a message --- */

/*
 * A message op may name (rule 50): a message of its room, within retention, not deleted, and
 * readable by the requester (in a dm room, stored since op->reads_from). 0 and *t, -ENOENT, or
 * a store error.
 */
static int find_target(struct store *db, const struct chat_op *op, uint64_t seq,
                       struct store_target *t)
{
    int rc = db->ops->message_get(db, op->room, seq, t);
    if (rc == 0 && (t->deleted || (op->room_is_dm && t->ts < op->reads_from)))
        rc = -ENOENT;
    return rc;
}

static void fail_not_found(struct chat_op *op, uint64_t seq)
{
    snprintf(op->why_buf, sizeof op->why_buf, "no message %llu in %s%s", (unsigned long long)seq,
             op->room_is_dm ? "" : "#", op->room);
    chat_op_fail(op, PROTO_NOT_FOUND, op->why_buf);
}

/* Collects the replay forms of what an edit or delete changed, for the hub's ring. */
static void collect_replay(void *arg, const struct store_msg *m)
{
    struct msg_rec r = events_event(m, NULL, EVENTS_REPLAY);
    chat_op_add_msg(arg, &r);
}

/* True when name_lc (lower-case) is one of the --admin accounts (rule 59). */
static bool is_admin(const struct config *cfg, const char *name_lc)
{
    for (size_t i = 0; i < cfg->n_admins; i++)
        if (strcasecmp(cfg->admins[i], name_lc) == 0)
            return true;
    return false;
}

/* What registered user name_lc (NULL: a guest, always a member) is in public room `room`, as
 * stored now (rules 59, 74). 0 or a store error. */
static int rank_in(struct store_thread *st, const char *room, const char *name_lc,
                   enum timeline_rank *out)
{
    *out = TIMELINE_MEMBER;
    if (!name_lc)
        return 0;
    if (is_admin(st->cfg, name_lc)) {
        *out = TIMELINE_ADMIN;
        return 0;
    }
    char owner[STORE_NAME_MAX + 1];
    bool op = false;
    int rc = st->db->ops->room_roles(st->db, room, name_lc, owner, &op);
    if (rc < 0)
        return rc;
    *out = timeline_rank_of(false, strcmp(owner, name_lc) == 0, op);
    return 0;
}

/* Sets room's counter from the seq a shared database holds for it under its lock, read once per
 * batch (the lock holds until the batch ends): another node may have written the room since. */
static void seq_synced(struct store_thread *st, const char *name, uint64_t stored)
{
    struct seq_room *room = room_of(st, name);
    room->synced_batch = st->batch_no;
    if (stored != room->last_seq) {
        room->last_seq = stored;
        room->cut = 0; /* found again by counting, next time */
    }
}

/* A shared database (store.h, room_seqs): a room the batch's start did not lock is locked and
 * read here. */
static int sync_seq(struct store_thread *st, const char *name)
{
    struct store *db = st->db;
    if (!db->ops->room_seqs || room_of(st, name)->synced_batch == st->batch_no)
        return 0;
    uint64_t stored = 0;
    int rc = db->ops->room_seqs(db, &name, 1, stamp(st, false), &stored, NULL, 0, NULL);
    if (rc == 0)
        seq_synced(st, name, stored);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What the batch's checks of op will ask the store first (store.h, room_seqs' keys): its cid,
 * and for a send, edit, react or topic in a public room whether the sender is muted. False:
 * nothing. */
static bool lookup_of(const struct chat_op *op, char *identity, struct store_lookup *k)
{
    bool mute = !op->room_is_dm && (op->kind == CHAT_SEND || op->kind == CHAT_EDIT ||
                                    op->kind == CHAT_REACT || op->kind == CHAT_TOPIC);
    if (!op->has_cid && !mute)
        return false;
    timeline_identity(op->guest, op->guest_session, op->user_lc, identity);
    *k = (struct store_lookup){.room = op->room,
                               .identity = identity,
                               .cid = op->has_cid ? op->cid : NULL,
                               .muted_lc = mute ? op->user_lc : NULL};
    return true;
}

/* Takes the locks of every room the batch stores an event in, in name order, before anything
 * else: every node locks in the same order, so two batches never deadlock on each other. What
 * the checks will ask of those rooms is read with them, and the database's clock into
 * batch_clock (one round trip); *clocked tells whether it was (a batch that stores no event reads
 * the clock alone). */
static int lock_rooms(struct store_thread *st, bool *clocked)
{
    *clocked = false;
    if (!st->db->ops->room_seqs)
        return 0;
    const char **names = xmalloc(st->n_batch * sizeof *names);
    struct store_lookup *keys = xmalloc(st->n_batch * sizeof *keys);
    char(*ids)[STORE_IDENTITY_MAX] = xmalloc(st->n_batch * sizeof *ids);
    size_t n = 0, n_keys = 0;
    for (size_t i = 0; i < st->n_batch; i++) {
        const struct chat_op *op = st->batch[i];
        if (!chat_op_stores_event(op->kind) || !op->room[0])
            continue;
        names[n++] = op->room;
        if (lookup_of(op, ids[n_keys], &keys[n_keys]))
            n_keys++;
    }
    qsort(names, n, sizeof *names, by_name);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (distinct == 0 || strcmp(names[i], names[distinct - 1]) != 0)
            names[distinct++] = names[i];
    uint64_t *seqs = xmalloc((distinct ? distinct : 1) * sizeof *seqs);
    /* Rows are made at stamp(st, false) as the clock read here makes it: the later of the
     * database's clock and the last stamp. */
    int64_t *clock = st->db->ops->clock_ms ? &st->batch_clock : NULL;
    int rc = distinct ? st->db->ops->room_seqs(st->db, names, distinct, st->last_ts, seqs, keys,
                                               n_keys, clock)
                      : 0;
    if (rc == 0 && distinct) {
        *clocked = clock != NULL;
        stamp(st, false);
    }
    for (size_t i = 0; rc == 0 && i < distinct; i++)
        seq_synced(st, names[i], seqs[i]);
    free(seqs);
    free(ids);
    free(keys);
    free(names);
    return rc;
}

/* Retention (rule 47): a room's newest N messages are kept, and every event after the oldest
 * of them. */
static int retain(struct store_thread *st, const struct chat_op *op)
{
    uint64_t keep = st->cfg->retention, cut;
    if (!keep || op->seq <= keep)
        return 0;
    struct seq_room *room = room_of(st, op->room);
    int rc = room->cut ? st->db->ops->next_message(st->db, op->room, room->cut, &cut)
                       : st->db->ops->retention_cut(st->db, op->room, keep, &cut);
    if (rc == -ENOENT)
        return 0; /* fewer than keep messages: nothing to trim */
    if (rc < 0)
        return rc;
    room->cut = cut;
    return cut > 1 ? st->db->ops->trim(st->db, op->room, cut - 1) : 0;
}

/*
 * Applies a request that stores a timeline event (send, edit, delete, react), making every
 * check it depends on inside the batch's transaction (rule 74), in rule 75's order: a cid
 * already stored is acked with its seq (whatever its type); then not_found, rights, edit_window
 * or too_many_reactions; a reaction that changes nothing is acked with the target's seq; then
 * rate_limited (the worker found no token); else the event is stored. Returns 0, or a store
 * error that fails the batch.
 */
static int apply_timeline(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    char me[STORE_IDENTITY_MAX];
    timeline_identity(op->guest, op->guest_session, op->user_lc, me);
    int rc;
    if (op->has_cid) {
        uint64_t first;
        rc = db->ops->find_cid(db, op->room, me, op->cid, &first);
        if (rc == 0) {
            op->seq = first; /* a retry: acknowledged again, stored once */
            op->stage = 2;
            return 0;
        }
        if (rc != -ENOENT)
            return rc;
    }
    if (op->newest_own) {
        /* Telnet's /edit and /delete: the requester's newest message here (rule 77). */
        rc = db->ops->newest_own(db, op->room, me, &op->target);
        if (rc == -ENOENT) {
            snprintf(op->why_buf, sizeof op->why_buf, "you have no message in %s%s",
                     op->room_is_dm ? "" : "#", op->room);
            chat_op_fail(op, PROTO_NOT_FOUND, op->why_buf);
            return 0;
        }
        if (rc < 0)
            return rc;
    }
    struct store_target t = {0};
    uint64_t named = op->kind == CHAT_SEND ? op->reply_to : op->target;
    bool mod = chat_op_moderates(op->kind);
    if (!mod && (op->kind != CHAT_SEND || op->has_reply_to)) {
        rc = find_target(db, op, named, &t);
        if (rc == -ENOENT) {
            fail_not_found(op, named);
            return 0;
        }
        if (rc < 0)
            return rc;
        memcpy(op->target_from, t.from, sizeof op->target_from);
    }
    /* Rights (rules 53, 58, 61), from the room's roles as stored in this transaction (rule 74). */
    int64_t now = stamp(st, false);
    enum timeline_rank my_rank = TIMELINE_MEMBER;
    if (!op->room_is_dm && (mod || op->kind == CHAT_DELETE)) {
        rc = rank_in(st, op->room, op->guest ? NULL : op->user_lc, &my_rank);
        if (rc < 0)
            return rc;
    }
    struct timeline_actor actor = {.identity = me,
                                   .admin = my_rank == TIMELINE_ADMIN,
                                   .owner = my_rank == TIMELINE_OWNER,
                                   .op = my_rank == TIMELINE_OP};
    if (op->kind == CHAT_EDIT && !timeline_may_edit(&actor, &t)) {
        chat_op_fail(op, PROTO_FORBIDDEN, "only its author can edit a message");
        return 0;
    }
    if (op->kind == CHAT_DELETE) {
        /* What the author is in the room now: a registered author's identity is its name. */
        enum timeline_rank author = TIMELINE_MEMBER;
        if (!op->room_is_dm && !timeline_authorless(t.identity) &&
            strncmp(t.identity, "guest:", 6) != 0) {
            rc = rank_in(st, op->room, t.identity, &author);
            if (rc < 0)
                return rc;
        }
        if (!timeline_may_delete(&actor, &t, op->room_is_dm, author == TIMELINE_ADMIN,
                                 author != TIMELINE_MEMBER)) {
            chat_op_fail(op, PROTO_FORBIDDEN, "you may not delete that message");
            return 0;
        }
    }
    if (mod) {
        enum timeline_rank subject = TIMELINE_MEMBER;
        if (op->kind != CHAT_TOPIC && !op->room_is_dm) {
            /* Only registered names hold roles (rule 59); a guest's name is a member. */
            rc = rank_in(st, op->room, op->subject_registered ? op->subject_lc : NULL, &subject);
            if (rc < 0)
                return rc;
        }
        enum timeline_act act = op->kind == CHAT_TOPIC ? TIMELINE_ACT_TOPIC
                                : op->kind != CHAT_ROLE ? TIMELINE_ACT_MODERATE
                                : op->role == CHAT_ROLE_OWNER ? TIMELINE_ACT_MAKE_OWNER
                                                              : TIMELINE_ACT_ROLE;
        if (!timeline_may_moderate(act, my_rank, subject, op->room_is_dm)) {
            chat_op_fail(op, PROTO_FORBIDDEN,
                         op->room_is_dm ? "there is no moderation in direct messages"
                                        : "you may not do that in this room");
            return 0;
        }
    }
    /* Rule 65: a muted user's send, edit, react and topic (after rights, before edit_window). */
    if (!op->room_is_dm && (op->kind == CHAT_SEND || op->kind == CHAT_EDIT ||
                            op->kind == CHAT_REACT || op->kind == CHAT_TOPIC)) {
        rc = refused_by(st, op, STORE_MOD_MUTE, now);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    uint64_t window = st->cfg->edit_window_s;
    if (op->kind == CHAT_EDIT && window && now - t.ts > (int64_t)(window * 1000)) {
        chat_op_fail(op, PROTO_EDIT_WINDOW, "that message is too old to edit");
        return 0;
    }
    if (op->kind == CHAT_REACT) {
        bool held = false, present = false;
        unsigned distinct = 0;
        rc = db->ops->reaction_state(db, op->room, op->target, op->emoji, me, &held, &present,
                                     &distinct);
        if (rc < 0)
            return rc;
        if (op->on && !present && distinct >= st->cfg->max_reactions) {
            chat_op_fail(op, PROTO_TOO_MANY_REACTIONS,
                         "that message has as many different reactions as it may");
            return 0;
        }
        if (op->on == held) {
            op->seq = op->target; /* no change: ack.seq = the request's seq (rule 54) */
            op->stage = 2;
            return 0;
        }
    }
    if (op->over_rate) {
        chat_op_fail(op, PROTO_RATE_LIMITED, "slow down: too many requests");
        return 0;
    }
    struct seq_room *room = room_of(st, op->room);
    rc = sync_seq(st, op->room);
    if (rc < 0)
        return rc;
    op->seq = room->last_seq + 1;
    op->ts = now;
    struct store_msg m = chat_op_event(op);
    m.identity = me;
    rc = db->ops->insert(db, &m);
    if (rc < 0)
        return rc;
    room->last_seq = op->seq;
    op->stage = 1;
    /* Rules 64, 67: a stored kick or ban also forgets the room from the user's saved rooms, in
     * the transaction that stores the event; its read marker stays (rule 66). */
    if (op->kind == CHAT_KICK || op->kind == CHAT_BAN) {
        rc = db->ops->saved_set(db, op->subject_lc, op->room, false);
        if (rc < 0)
            return rc;
    }
    if (op->kind == CHAT_SEND)
        return retain(st, op);
    if (op->kind == CHAT_EDIT || op->kind == CHAT_DELETE) {
        /* The hub's ring keeps replay forms: what this changed there, read as a replay would. */
        rc = db->ops->read_target(db, op->room, op->target, collect_replay, op);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * Erased texts leave the search index and the WAL within ERASE_CHECKPOINT_MS plus the merge:
 * first the index's segments are merged (a deleted or edited row's words stay in its pages until
 * then), a bounded step at a time with the loop free between steps, so batches still commit
 * meanwhile; then the WAL is checkpointed and truncated.
 */
static void on_erase_timer(struct timer *t)
{
    struct store_thread *st =
        (struct store_thread *)((char *)t - offsetof(struct store_thread, erase_timer));
    struct loop *loop = st->service->loop;
    uint64_t until = clock_ms() + ERASE_MERGE_SLICE_MS;
    /* Once the store is handed over, the new process merges (its own timer at start). */
    bool more = st->gate != STORE_GATE_CLOSED;
    while (more && clock_ms() < until)
        if (st->db->ops->search_merge(st->db, &more) < 0)
            more = false; /* logged; the checkpoint still runs, and the next erasure merges */
    if (more) {
        timer_start(loop, &st->erase_timer, loop_now(loop) + ERASE_MERGE_PAUSE_MS);
        return;
    }
    st->erased = false;
    st->db->ops->checkpoint(st->db);
}

/* Indexes the search backlog now (not in a process that handed the store over). Returns 0 or
 * the store's error. */
static int search_catch_up(struct store_thread *st)
{
    if (!st->db->ops->search_catch_up || st->gate == STORE_GATE_CLOSED)
        return 0;
    int rc = st->db->ops->search_catch_up(st->db);
    if (rc < 0)
        metrics_add(METRIC_STORE_ERRORS, 1);
    else
        metrics_set(GAUGE_SEARCH_BACKLOG, 0);
    return rc;
}

/* After a batch: the backlog is caught up now if it is at its bound, else once the store is
 * quiet (on_search_timer). */
static void search_after_batch(struct store_thread *st)
{
    if (!st->db->ops->search_backlog)
        return;
    struct loop *loop = st->service->loop;
    st->last_batch_ms = loop_now(loop);
    int64_t waiting = st->db->ops->search_backlog(st->db);
    if (waiting >= SEARCH_BACKLOG_MAX) {
        search_catch_up(st);
        return;
    }
    if (waiting > 0) {
        metrics_set(GAUGE_SEARCH_BACKLOG, (uint64_t)waiting);
        if (!timer_active(&st->search_timer))
            timer_start(loop, &st->search_timer, st->last_batch_ms + st->search_quiet_ms);
    }
}

static void on_search_timer(struct timer *t)
{
    struct store_thread *st =
        (struct store_thread *)((char *)t - offsetof(struct store_thread, search_timer));
    struct loop *loop = st->service->loop;
    uint64_t quiet_at = st->last_batch_ms + st->search_quiet_ms;
    if (loop_now(loop) < quiet_at) {
        timer_start(loop, &st->search_timer, quiet_at); /* batches came since it was armed */
        return;
    }
    search_catch_up(st);
}

/* --- writes, applied inside the batch's transaction --- */

/* Applies one write. Returns 0, or a store error that must fail the whole batch. */
static int apply_write(struct store_thread *st, struct chat_op *op)
{
    struct store *db = st->db;
    int rc;
    if (chat_op_stores_event(op->kind))
        return apply_timeline(st, op);
    switch (op->kind) {
    case CHAT_REGISTER:
        op->user_created_ms = stamp(st, true);
        rc = db->ops->user_create(db, op->name, op->pwhash, op->user_created_ms);
        if (rc == -EEXIST) {
            chat_op_fail(op, PROTO_NAME_TAKEN, "that name is registered already");
            return 0;
        }
        if (rc < 0)
            return rc;
        if (op->registered_guest) {
            /* Rule 51: the account takes over the session's messages, reactions and cids. */
            char guest[STORE_IDENTITY_MAX], account[STORE_IDENTITY_MAX], lc[CHAT_NAME_MAX];
            text_lower(op->name, strlen(op->name), lc);
            timeline_identity(true, op->guest_session, lc, guest);
            timeline_identity(false, 0, lc, account);
            rc = db->ops->claim_guest(db, guest, account, op->name);
            if (rc == 0)
                rc = save_rooms(st, op, lc);
            if (rc < 0)
                return rc;
        }
        /* A guest's tokens die with its guest identity (the registered user logs in with a
         * password). */
        return db->ops->token_drop_guest(db, op->name);
    case CHAT_LOGIN_PASSWORD:
        rc = list_dms(st, op);
        if (rc == 0)
            rc = list_reads(st, op);
        return rc < 0 ? rc : new_token(st, op);
    case CHAT_JOIN:
        return join_save(st, op);
    case CHAT_LEAVE:
        return leave_forget(st, op);
    case CHAT_READ:
        return read_marker(st, op);
    case CHAT_LOGIN_GUEST:
        rc = db->ops->token_drop_guest(db, op->user);
        if (rc == 0)
            rc = guest_dm_starts(st, op);
        return rc < 0 ? rc : new_token(st, op);
    case CHAT_ROOM_CREATE:
        room_of(st, op->room);
        return db->ops->room_create(db, op->room, now_ms(),
                                    op->subject_lc[0] ? op->subject_lc : NULL);
    default:
        return 0;
    }
}

/* Where a write goes once its batch is settled. */
static void route_after_batch(struct chat_op *op)
{
    if (chat_op_stores_event(op->kind)) {
        if (op->err)
            chat_to_worker(op);
        else
            chat_to_hub(op); /* stored (stage 1) or nothing to store (stage 2): fan-out and ack */
        return;
    }
    switch (op->kind) {
    case CHAT_REGISTER:
        op->stage = 1;
        chat_to_hub(op);
        break;
    case CHAT_LOGIN_GUEST:
        if (op->err) {
            op->stage = 2;
            chat_to_hub(op); /* release the claimed name */
        } else {
            chat_to_worker(op);
        }
        break;
    case CHAT_ROOM_CREATE:
        chat_op_free(op);
        break;
    case CHAT_JOIN:
    case CHAT_LEAVE:
        if (op->err) {
            chat_to_worker(op);
        } else {
            op->via_store = false;
            chat_to_hub(op); /* saved or forgotten: now the membership */
        }
        break;
    case CHAT_READ:
        if (op->err || !op->marker_moved)
            chat_to_worker(op);
        else
            chat_to_hub(op); /* the user's other connections are told */
        break;
    default:
        chat_to_worker(op);
    }
}

/* Tells the hub (chat_store_progress) how many writes the open batch holds and, after a commit,
 * that its answers are posted: they leave now, so the hub that sees the count finds them in its
 * mailbox. */
static void batch_told(struct store_thread *st, bool committed)
{
    struct store_progress *p = chat_store_progress();
    atomic_store_explicit(&p->batched, st->n_batch, memory_order_relaxed);
    if (committed) {
        mailbox_send_deferred();
        atomic_fetch_add_explicit(&p->commits, 1, memory_order_release);
    }
}

static void commit_batch(struct service *s)
{
    struct store_thread *st = s->ctx;
    if (st->erase_at_start) {
        st->erase_at_start = false;
        if (!timer_active(&st->erase_timer))
            timer_start(s->loop, &st->erase_timer, loop_now(s->loop) + ERASE_CHECKPOINT_MS);
        /* And messages a crash left unindexed: indexed at the first quiet moment. */
        if (st->db->ops->search_backlog)
            timer_start(s->loop, &st->search_timer, loop_now(s->loop));
    }
    if (st->n_batch == 0)
        return;
    struct store *db = st->db;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st->batch_no++;
    int rc = db->ops->begin(db);
    /* A shared database's clock stamps the batch (store.h, clock_ms), read with the rooms' locks
     * when the batch stores an event. */
    bool clocked = false;
    if (rc == 0)
        rc = lock_rooms(st, &clocked);
    if (rc == 0 && !clocked && db->ops->clock_ms)
        rc = db->ops->clock_ms(db, &st->batch_clock);
    size_t applied = 0;
    for (; rc == 0 && applied < st->n_batch; applied++)
        rc = apply_write(st, st->batch[applied]);
    if (rc == 0)
        rc = db->ops->commit(db);
    st->batch_clock = 0;
    if (rc < 0)
        db->ops->rollback(db);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Signed first: the nanoseconds alone go back when the second turns over. */
    uint64_t us = (uint64_t)(((int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 +
                              (int64_t)(t1.tv_nsec - t0.tv_nsec)) /
                             1000);
    metrics_engine_time(st->engine, ENGINE_OP_BATCH, us);
    if (rc < 0) {
        metrics_add(METRIC_STORE_ERRORS, 1);
        uint64_t now = clock_ms();
        if (!st->failed_logged_ms || now - st->failed_logged_ms >= FAILED_LOG_EVERY_MS) {
            log_error("msg=batch_failed writes=%zu error=%d failed_since_last_log=%llu",
                      st->n_batch, rc, (unsigned long long)st->failed_unlogged);
            st->failed_logged_ms = now;
            st->failed_unlogged = 0;
        } else {
            st->failed_unlogged++;
        }
        /* Put the counters back: the batch's seqs were never stored. */
        for (size_t i = st->n_batch; i-- > 0;) {
            struct chat_op *op = st->batch[i];
            if (chat_op_stores_event(op->kind) && op->stage == 1) {
                room_of(st, op->room)->last_seq = op->seq - 1;
                room_of(st, op->room)->cut = 0; /* found again by counting, next time */
            }
            for (size_t k = 0; k < op->n_msgs; k++)
                msg_rec_release(&op->msgs[k]);
            op->n_msgs = 0;
            op->seq = 0;
            op->token[0] = '\0';
            chat_op_fail(op, PROTO_SERVER_BUSY,
                         "the server could not store that; retry with the same cid");
        }
    } else {
        metrics_commit(us, st->n_batch);
        for (size_t i = 0; i < st->n_batch; i++) {
            struct chat_op *op = st->batch[i];
            if ((op->kind == CHAT_EDIT || op->kind == CHAT_DELETE) && op->stage == 1 && !op->err) {
                st->erased = true;
                if (!timer_active(&st->erase_timer))
                    timer_start(s->loop, &st->erase_timer, loop_now(s->loop) + ERASE_CHECKPOINT_MS);
            }
        }
    }
    for (size_t i = 0; i < st->n_batch; i++)
        route_after_batch(st->batch[i]);
    st->n_batch = 0;
    batch_told(st, true); /* the answers leave before any catch-up of the search index */
    if (rc == 0)
        search_after_batch(st);
}

/* --- reads, served at once --- */

struct read_ctx {
    struct chat_op *op;
    uint64_t first, last; /* seqs read: first is 0 when none was */
};

static void collect(void *arg, const struct store_msg *m)
{
    struct read_ctx *rc = arg;
    struct msg_rec r = events_event(m, NULL, EVENTS_REPLAY); /* rule 48 */
    chat_op_add_msg(rc->op, &r);
    if (!rc->first)
        rc->first = m->seq;
    rc->last = m->seq;
}

/* A history entry read back, kept until its reactions are read (a read cannot run inside
 * another's callback). */
struct history_row {
    struct store_msg m;
    char *strings; /* from, text, cid, mentions: one allocation */
};

struct history_ctx {
    struct history_row *rows;
    size_t n, cap;
};

static char *copy_into(char **at, const char *s, size_t n)
{
    char *p = *at;
    memcpy(p, s, n);
    p[n] = '\0';
    *at += n + 1;
    return p;
}

static void history_row(void *arg, const struct store_msg *m)
{
    struct history_ctx *hc = arg;
    if (hc->n == hc->cap) {
        hc->cap = hc->cap ? hc->cap * 2 : 64;
        hc->rows = xrealloc(hc->rows, hc->cap * sizeof *hc->rows);
    }
    struct history_row *r = &hc->rows[hc->n++];
    size_t nf = strlen(m->from), nc = m->cid ? strlen(m->cid) : 0;
    size_t nm = m->mentions ? strlen(m->mentions) : 0;
    r->m = *m;
    r->strings = xmalloc(nf + m->text_len + nc + nm + 4);
    char *at = r->strings;
    r->m.from = copy_into(&at, m->from, nf);
    r->m.text = copy_into(&at, m->text, m->text_len);
    r->m.cid = m->cid ? copy_into(&at, m->cid, nc) : NULL;
    r->m.mentions = m->mentions ? copy_into(&at, m->mentions, nm) : NULL;
    r->m.room = NULL; /* set by the caller: the op's room outlives the row */
}

/* Rule 56: reactions grouped by emoji, in the order of their oldest standing reaction. */
struct reactions_ctx {
    const char *me;
    struct events_reaction *r;
    size_t n, cap;
};

static void reaction_row(void *arg, const char *emoji, const char *identity, const char *user)
{
    struct reactions_ctx *rc = arg;
    size_t i = 0;
    while (i < rc->n && strcmp(rc->r[i].emoji, emoji) != 0)
        i++;
    if (i == rc->n) {
        if (rc->n == rc->cap) {
            rc->cap = rc->cap ? rc->cap * 2 : 4;
            rc->r = xrealloc(rc->r, rc->cap * sizeof *rc->r);
        }
        memset(&rc->r[i], 0, sizeof rc->r[i]);
        snprintf(rc->r[i].emoji, sizeof rc->r[i].emoji, "%s", emoji);
        rc->n++;
    }
    struct events_reaction *e = &rc->r[i];
    e->count++;
    if (strcmp(identity, rc->me) == 0)
        e->me = true;
    if (e->n_users < EVENTS_REACTION_USERS)
        snprintf(e->users[e->n_users++], sizeof e->users[0], "%s", user);
}

static void read_history(struct store_thread *st, struct chat_op *op)
{
    if (!op->room_is_dm) {
        /* Rule 64: a banned user reads nothing of the room (the store's clock, rule 74);
         * read_search makes the same check. */
        int64_t until;
        int rc = st->db->ops->restriction(st->db, op->room, STORE_MOD_BAN, op->user_lc,
                                          stamp(st, false), &until);
        if (rc == 0 || rc != -ENOENT) {
            snprintf(op->why_buf, sizeof op->why_buf, "banned from #%s", op->room);
            chat_op_fail(op, rc == 0 ? PROTO_BANNED : PROTO_SERVER_BUSY,
                         rc == 0 ? op->why_buf : "history is not available right now");
            chat_to_worker(op);
            return;
        }
    }
    struct history_ctx hc = {0};
    int rc = st->db->ops->history(st->db, op->room, op->before ? op->before : UINT64_MAX, op->ts,
                                  op->limit, !op->telnet_history, history_row, &hc);
    char me[STORE_IDENTITY_MAX];
    timeline_identity(op->guest, op->guest_session, op->user_lc, me);
    struct reactions_ctx rx = {.me = me};
    for (size_t i = 0; i < hc.n; i++) {
        struct history_row *row = &hc.rows[i];
        row->m.room = op->room;
        rx.n = 0;
        if (rc >= 0 && !row->m.deleted)
            rc = st->db->ops->reactions(st->db, op->room, row->m.seq, reaction_row, &rx);
        if (rc >= 0) {
            struct msg_rec r = events_history_entry(&row->m, rx.r, rx.n);
            chat_op_add_msg(op, &r);
        }
        free(row->strings);
    }
    free(rx.r);
    free(hc.rows);
    if (rc < 0)
        chat_op_fail(op, PROTO_SERVER_BUSY, "history is not available right now");
    chat_to_worker(op);
}

/* --- search (protocol 1.1 rules 71, 72) --- */

/* An index row a search will answer with. */
struct search_hit {
    uint64_t rowid;
    int64_t ts;
    uint64_t seq;
    char room[STORE_ROOM_MAX];
};

struct search_hits {
    struct search_hit *v;
    size_t n, cap;
};

/*
 * A search's walk down the index (newest first). Rows of one ts (a run: rowids follow the store's
 * clock, so they are neighbours) are answered in rule 72's order among themselves, room
 * ascending then seq descending, once the whole run has been read. So the walk stops at the
 * --search-scan cap only between rows where a run it has started may be read again whole next
 * time; the first run of a request is read whole even past the cap, or a run longer than the
 * cap would never be answered.
 */
struct search_scan {
    struct chat_op *op;
    struct store_thread *st;
    int64_t now; /* the store's clock at the request: bans end by it (rule 74) */
    /* The last public room whose ban was looked up for the requester, and whether it bans it:
     * rows come newest first across rooms, mostly in runs of one room. */
    char ban_room[CHAT_ROOM_MAX];
    bool banned;
    uint32_t cap, examined;
    bool first_run;
    bool in_run;
    int64_t run_ts;
    uint64_t run_top; /* the rowid the run began at: where a walk stopped in it starts again */
    struct search_hits run, out;
    bool stopped;
    struct search_cursor next;
};

static void hits_add(struct search_hits *h, const struct search_hit *x)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 32;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    h->v[h->n++] = *x;
}

/* Rule 72's order within one ts: room ascending, then seq descending. */
static int hit_order(const void *a, const void *b)
{
    const struct search_hit *x = a, *y = b;
    int c = strcmp(x->room, y->room);
    if (c)
        return c;
    return x->seq > y->seq ? -1 : x->seq < y->seq;
}

/* True when a row of the cursor's ts was answered already: it comes no later than the cursor's
 * last result in rule 72's order. */
static bool given_already(const struct search_cursor *cur, const char *room, uint64_t seq,
                          int64_t ts)
{
    if (!cur->skip || ts != cur->skip_ts)
        return false;
    int c = strcmp(room, cur->skip_room);
    return c < 0 || (c == 0 && seq >= cur->skip_seq);
}

/* Whether the requester may find a message of room stored at ts (rule 72's scope). */
static bool search_may_read(struct search_scan *sc, const char *room, int64_t ts)
{
    const struct chat_op *op = sc->op;
    if (op->room[0] && strcmp(room, op->room) != 0)
        return false;
    char a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (text_parse_dm_room(room, strlen(room), a, b))
        /* A registered user's own dm rooms, from the account's creation on (rule 40). */
        return !op->guest && (strcmp(a, op->user_lc) == 0 || strcmp(b, op->user_lc) == 0) &&
               ts >= op->reads_from;
    if (op->room[0])
        return true; /* the one room named: read_search answered banned before the scan */
    /* Rule 64: a search without `room` skips the rooms where the requester is banned now. */
    if (strcmp(room, sc->ban_room) != 0) {
        int64_t until;
        int rc = sc->st->db->ops->restriction(sc->st->db, room, STORE_MOD_BAN, op->user_lc,
                                              sc->now, &until);
        sc->banned = rc != -ENOENT; /* a store error hides the room rather than leak it */
        snprintf(sc->ban_room, sizeof sc->ban_room, "%s", room);
    }
    return !sc->banned;
}

/* Answers the finished run in order, up to the limit. True when the limit is reached: the walk
 * stops, and `next` goes on after the last result. */
static bool run_flush(struct search_scan *sc)
{
    struct search_hits *r = &sc->run;
    if (r->n > 1)
        qsort(r->v, r->n, sizeof *r->v, hit_order);
    for (size_t i = 0; i < r->n && sc->out.n < sc->op->limit; i++)
        hits_add(&sc->out, &r->v[i]);
    r->n = 0;
    if (sc->out.n < sc->op->limit)
        return false;
    const struct search_hit *last = &sc->out.v[sc->out.n - 1];
    sc->next = (struct search_cursor){
        .bound = sc->run_top, .skip = true, .skip_ts = last->ts, .skip_seq = last->seq};
    memcpy(sc->next.skip_room, last->room, sizeof sc->next.skip_room);
    sc->stopped = true;
    return true;
}

static bool search_row(void *arg, uint64_t rowid, const char *room, uint64_t seq, int64_t ts)
{
    struct search_scan *sc = arg;
    bool new_run = !sc->in_run || ts != sc->run_ts;
    if (new_run && sc->in_run) {
        if (run_flush(sc))
            return false;
        sc->first_run = false;
    }
    if (!sc->first_run && sc->examined >= sc->cap) {
        /* The cap: the next request starts with this row's run (none of it answered yet). */
        sc->next = (struct search_cursor){.bound = new_run ? rowid : sc->run_top};
        sc->run.n = 0;
        sc->stopped = true;
        return false;
    }
    sc->examined++;
    if (new_run) {
        sc->in_run = true;
        sc->run_ts = ts;
        sc->run_top = rowid;
    }
    if (given_already(&sc->op->cursor, room, seq, ts) || !search_may_read(sc, room, ts))
        return true;
    struct search_hit h = {.rowid = rowid, .ts = ts, .seq = seq};
    size_t n = strlen(room);
    if (n >= sizeof h.room)
        return true; /* no room name is this long */
    memcpy(h.room, room, n + 1);
    hits_add(&sc->run, &h);
    return true;
}

/* The FTS5 expression of a search: q's terms in the words column, and with `room`, the room's
 * words in rkey (an index lookup; the room itself is compared exactly as rows come). */
static char *search_expression(const struct chat_op *op)
{
    char *room_words = op->room[0] ? search_text_index(op->room, strlen(op->room), NULL) : NULL;
    size_t n = strlen(op->search_match) + (room_words ? strlen(room_words) : 0) + 32;
    char *e = xmalloc(n);
    if (room_words && *room_words)
        snprintf(e, n, "words : (%s) AND rkey : \"%s\"", op->search_match, room_words);
    else
        snprintf(e, n, "words : (%s)", op->search_match);
    free(room_words);
    return e;
}

static void read_search(struct store_thread *st, struct chat_op *op)
{
    int64_t now = stamp(st, false);
    if (op->room[0] && !op->room_is_dm) {
        /* Rules 64, 72: naming a room where the requester is banned; rule 75 ranks it before
         * rate_limited. */
        int64_t until;
        int rc = st->db->ops->restriction(st->db, op->room, STORE_MOD_BAN, op->user_lc, now,
                                          &until);
        if (rc != -ENOENT) {
            snprintf(op->why_buf, sizeof op->why_buf, "banned from #%s", op->room);
            chat_op_fail(op, rc == 0 ? PROTO_BANNED : PROTO_SERVER_BUSY,
                         rc == 0 ? op->why_buf : "search is not available right now");
            chat_to_worker(op);
            return;
        }
    }
    if (op->over_rate) {
        chat_op_fail(op, PROTO_RATE_LIMITED, "slow down: too many searches");
        chat_to_worker(op);
        return;
    }
    /* Every message acknowledged before this request is found: the index catches up first. */
    if (search_catch_up(st) < 0) {
        chat_op_fail(op, PROTO_SERVER_BUSY, "search is not available right now");
        chat_to_worker(op);
        return;
    }
    struct search_scan sc = {
        .op = op, .st = st, .now = now, .cap = st->cfg->search_scan, .first_run = true};
    char *expr = search_expression(op);
    uint64_t from = op->has_cursor ? op->cursor.bound : UINT64_MAX;
    int rc = st->db->ops->search(st->db, expr, from, search_row, &sc);
    free(expr);
    if (rc >= 0 && !sc.stopped && sc.in_run)
        run_flush(&sc);
    metrics_add(METRIC_SEARCHES, 1);
    metrics_add(METRIC_SEARCH_ROWS, sc.examined);

    /* The results in their current state, with reactions (rule 56). */
    char me[STORE_IDENTITY_MAX];
    timeline_identity(op->guest, op->guest_session, op->user_lc, me);
    struct reactions_ctx rx = {.me = me};
    for (size_t i = 0; rc >= 0 && i < sc.out.n; i++) {
        const struct search_hit *h = &sc.out.v[i];
        struct history_ctx hc = {0};
        rc = st->db->ops->search_message(st->db, h->room, h->seq, history_row, &hc);
        for (size_t k = 0; k < hc.n; k++) {
            struct history_row *row = &hc.rows[k];
            row->m.room = h->room;
            rx.n = 0;
            if (rc >= 0)
                rc = st->db->ops->reactions(st->db, h->room, row->m.seq, reaction_row, &rx);
            if (rc >= 0) {
                struct msg_rec r = events_history_entry(&row->m, rx.r, rx.n);
                chat_op_add_msg(op, &r);
            }
            free(row->strings);
        }
        free(hc.rows);
    }
    free(rx.r);
    free(sc.run.v);
    free(sc.out.v);
    if (rc < 0) {
        /* A match expression FTS5 refuses cannot come from search_query_parse; a failure here
         * is the store's. */
        chat_op_fail(op, PROTO_SERVER_BUSY, "search is not available right now");
    } else if (sc.stopped) {
        search_cursor_encode(&sc.next, op->text, op->text_len, op->room, op->next);
    }
    chat_to_worker(op);
}

/* Reads the next page of (join_after, seq] into op->msgs and moves join_after past it.
 * Returns the first seq read, or 0 if none was. */
static uint64_t read_page(struct store_thread *st, struct chat_op *op)
{
    struct read_ctx ctx = {op, 0, op->join_after};
    int rc = st->db->ops->read(st->db, op->room, op->join_after, op->seq + 1, op->ts, REPLAY_PAGE,
                               false, collect, &ctx);
    metrics_add(METRIC_REPLAY_READS, 1);
    if (rc < 0)
        chat_op_fail(op, PROTO_SERVER_BUSY, "the room's history is not available right now");
    else if (ctx.last < op->seq && rc < REPLAY_PAGE)
        ctx.last = op->seq; /* the rest was trimmed away */
    op->join_after = ctx.last;
    return ctx.first;
}

static void collect_wire(void *arg, const struct store_msg *m)
{
    struct read_ctx *rc = arg;
    struct msg_rec r = hub_broker_wire(m);
    chat_op_add_msg(rc->op, &r);
    if (!rc->first)
        rc->first = m->seq;
    rc->last = m->seq;
}

/* A page of the broker's fill of a gap (hub_broker.h): (join_after, seq], in the wire form
 * between nodes, back to the hub; more when the page was full. */
static void read_fill(struct store_thread *st, struct chat_op *op)
{
    struct read_ctx ctx = {op, 0, op->join_after};
    uint64_t before = op->seq == UINT64_MAX ? UINT64_MAX : op->seq + 1;
    int rc = st->db->ops->read(st->db, op->room, op->join_after, before, 0, REPLAY_PAGE, false,
                               collect_wire, &ctx);
    if (rc < 0)
        chat_op_fail(op, PROTO_SERVER_BUSY, "the room's history is not available right now");
    op->more = rc >= REPLAY_PAGE;
    op->join_after = ctx.last;
    chat_to_hub(op);
}

/* A join whose replay reaches below the hub's ring: its first page, and whether retention cut
 * into what was asked for. The hub answers the join; the worker reads the rest page by page. */
static void read_replay(struct store_thread *st, struct chat_op *op)
{
    uint64_t first = 0;
    if (st->db->ops->first_seq(st->db, op->room, &first) < 0) {
        chat_op_fail(op, PROTO_SERVER_BUSY, "the room's history is not available right now");
    } else {
        if (first > op->join_after + 1 && op->join_after == op->since)
            op->truncated = true; /* retention removed some of what was asked for */
        read_page(st, op);
    }
    op->stage = 1;
    chat_to_hub(op);
}

/* The hub's ring seed (chat.h CHAT_RING_SEED): (join_after, seq], which the hub keeps within one
 * page, in replay forms, back to the hub. */
static void read_ring_seed(struct store_thread *st, struct chat_op *op)
{
    struct read_ctx ctx = {op, 0, op->join_after};
    int rc = st->db->ops->read(st->db, op->room, op->join_after, op->seq + 1, 0, REPLAY_PAGE, false,
                               collect, &ctx);
    metrics_add(METRIC_RING_SEEDS, 1);
    if (rc < 0)
        chat_op_fail(op, PROTO_SERVER_BUSY, "the room's history is not available right now");
    chat_to_hub(op);
}

/* The next page of a replay that the worker writes as its connection drains. Retention may
 * have trimmed into it since the join was answered: that is reported (op->truncated), never
 * skipped over. (Messages a dm replay leaves out for rule 40 all come before its first page.) */
static void read_replay_page(struct store_thread *st, struct chat_op *op)
{
    uint64_t after = op->join_after;
    uint64_t first = read_page(st, op);
    if (!op->err && (first ? first > after + 1 : after < op->seq))
        op->truncated = true;
    chat_to_worker(op);
}

/* A password login's account: its hash goes back to auth to be verified. Without an account
 * (or with the store failing) it goes back to auth too, which counts what it must and
 * answers. */
static void login_password(struct store_thread *st, struct chat_op *op)
{
    struct store_user u;
    int rc = st->db->ops->user_get(st->db, op->name, &u);
    op->stage = LOGIN_PW_VERIFY;
    if (rc < 0) {
        if (rc == -ENOENT)
            chat_op_fail(op, PROTO_BAD_CREDENTIALS, "wrong name or password");
        else
            chat_op_fail(op, PROTO_SERVER_BUSY, "logins are not available right now");
        chat_to_auth(op);
        return;
    }
    memcpy(op->user, u.name, sizeof op->user);
    text_lower(u.name, strlen(u.name), op->user_lc);
    memcpy(op->pwhash, u.pwhash, sizeof op->pwhash);
    op->user_created_ms = u.created_ms;
    chat_to_auth(op);
}

static void login_token(struct store_thread *st, struct chat_op *op)
{
    uint8_t hash[STORE_TOKEN_HASH];
    struct store_token t;
    hash_token(op->token, hash);
    int rc = st->db->ops->token_get(st->db, hash, now_ms(), &t);
    if (rc < 0) {
        chat_op_fail(op, rc == -ENOENT ? PROTO_BAD_TOKEN : PROTO_SERVER_BUSY,
                     rc == -ENOENT ? "unknown or expired token"
                                   : "logins are not available right now");
        chat_to_worker(op);
        return;
    }
    memcpy(op->user, t.user, sizeof op->user);
    text_lower(t.user, strlen(t.user), op->user_lc);
    op->guest = t.guest;
    op->guest_session = t.guest_session;
    if (t.guest) {
        if (guest_dm_starts(st, op) < 0)
            chat_op_fail(op, PROTO_SERVER_BUSY, "logins are not available right now");
        if (op->err)
            chat_to_worker(op);
        else
            chat_to_hub(op); /* only the hub knows whether the guest's name is still free */
        return;
    }
    struct store_user u;
    rc = st->db->ops->user_get(st->db, t.user, &u);
    if (rc < 0) {
        chat_op_fail(op, PROTO_BAD_TOKEN, "unknown or expired token");
        chat_to_worker(op);
        return;
    }
    op->user_created_ms = u.created_ms;
    if (list_dms(st, op) < 0 || list_reads(st, op) < 0)
        chat_op_fail(op, PROTO_SERVER_BUSY, "logins are not available right now");
    chat_to_worker(op);
}

/* A write this process may no longer make: another process owns the store now. */
static void refuse_handed_over(struct chat_op *op)
{
    op->seq = 0;
    op->token[0] = '\0';
    chat_op_fail(op, PROTO_SERVER_BUSY,
                 "the server is restarting; retry with the same cid in a moment");
    op->handed_over = true;
    route_after_batch(op);
}

static void add_write(struct service *s, struct chat_op *op)
{
    struct store_thread *st = s->ctx;
    st->batch[st->n_batch++] = op;
    batch_told(st, false);
    if (st->n_batch == MAX_BATCH) {
        commit_batch(s);
        loop_wake_soon(s->loop);
    }
}

static void set_gate(struct service *s, struct store_gate_mail *gm)
{
    struct store_thread *st = s->ctx;
    if (gm->gate == STORE_GATE_HELD && st->gate == STORE_GATE_OPEN)
        commit_batch(s); /* what came before the hold is committed before anyone is told */
    st->gate =
        gm->gate == STORE_GATE_HELD && st->gate == STORE_GATE_CLOSED ? STORE_GATE_CLOSED : gm->gate;
    if (st->gate != STORE_GATE_HELD) {
        for (size_t i = 0; i < st->n_held; i++) {
            if (st->gate == STORE_GATE_CLOSED)
                refuse_handed_over(st->held[i]);
            else
                add_write(s, st->held[i]);
        }
        st->n_held = 0;
    }
    log_info("msg=store_gate gate=%s", st->gate == STORE_GATE_OPEN   ? "open"
                                       : st->gate == STORE_GATE_HELD ? "held"
                                                                     : "closed");
    if (gm->reply)
        mailbox_post(gm->reply, &gm->mail);
    else
        free(gm);
}

/* Answers a read (chat_op_read_at_store) at once, from committed data. */
static void serve_read(struct store_thread *st, struct chat_op *op)
{
    switch (op->kind) {
    case CHAT_HISTORY:
        read_history(st, op);
        break;
    case CHAT_SEARCH:
        read_search(st, op);
        break;
    case CHAT_JOIN:
        read_replay(st, op); /* a join with nothing to save (a saved one is a write) */
        break;
    case CHAT_REPLAY:
        read_replay_page(st, op);
        break;
    case CHAT_FILL:
        read_fill(st, op);
        break;
    case CHAT_RING_SEED:
        read_ring_seed(st, op);
        break;
    case CHAT_DM_SEQS:
        if (list_dms_of(st, op) < 0)
            chat_op_fail(op, PROTO_SERVER_BUSY, "the dm rooms are not available right now");
        chat_to_hub(op);
        break;
    case CHAT_LOGIN_TOKEN:
        login_token(st, op);
        break;
    case CHAT_LOGIN_PASSWORD:
        login_password(st, op); /* the lookup: a verified login comes back as a write */
        break;
    default:
        chat_op_fail(op, PROTO_SERVER_BUSY, "internal error: not a read");
        chat_to_worker(op);
    }
}

static void on_mail(struct service *s, struct mail *m)
{
    struct store_thread *st = s->ctx;
    if (m->kind == MAIL_STORE_GATE) {
        set_gate(s, (struct store_gate_mail *)m);
        return;
    }
    if (m->kind == MAIL_GOODBYE) {
        /* A clean stop's goodbye (hub.h): back to the hub behind what the batch commits. */
        commit_batch(s);
        mailbox_post(chat_route()->hub, m);
        return;
    }
    struct chat_op *op = (struct chat_op *)m;
    /* Reads and writes are told apart by the predicate chat_to_store counts with, so the hub's
     * count of writes coming (chat_store_progress) can never drift from what happens here. */
    if (chat_op_read_at_store(op)) {
        serve_read(st, op);
        return;
    }
    atomic_fetch_add_explicit(&chat_store_progress()->taken, 1, memory_order_relaxed);
    if (st->gate == STORE_GATE_CLOSED) {
        refuse_handed_over(op);
    } else if (st->gate == STORE_GATE_HELD) {
        if (st->n_held == st->cap_held) {
            st->cap_held = st->cap_held ? st->cap_held * 2 : 64;
            st->held = xrealloc(st->held, st->cap_held * sizeof *st->held);
        }
        st->held[st->n_held++] = op;
    } else {
        add_write(s, op);
    }
}

int store_thread_init(struct service *s, struct store *db, const struct config *cfg)
{
    struct store_thread *st = xcalloc(1, sizeof *st);
    st->db = db;
    st->cfg = cfg;
    st->engine = cfg->store_url ? ENGINE_POSTGRES : ENGINE_SQLITE;
    metrics_engine_use(st->engine);
    map_init(&st->rooms, true);
    st->batch = xcalloc(MAX_BATCH, sizeof *st->batch);
    st->last_ts = now_ms();
    int rc = db->ops->load_rooms(db, load_room, st);
    if (rc < 0) {
        log_error("msg=store_load_failed error=%d", rc);
        return rc;
    }
    st->service = s;
    timer_init(&st->erase_timer, on_erase_timer);
    timer_init(&st->search_timer, on_search_timer);
    st->search_quiet_ms = SEARCH_QUIET_MS;
    const char *quiet = getenv("PARLEY_TEST_SEARCH_QUIET_MS");
    if (quiet && *quiet) {
        st->search_quiet_ms = strtoull(quiet, NULL, 10);
        log_warn("msg=test_hook PARLEY_TEST_SEARCH_QUIET_MS=%llu reason=\"for tests only: the "
                 "search index catches up after this long without a batch\"",
                 (unsigned long long)st->search_quiet_ms);
    }
    if (sodium_init() < 0)
        return -1;
    search_cursor_init(); /* before any worker can read a search request */
    /* Erasures a crash interrupted before their merge: merged now (a no-op on a merged index). */
    st->erase_at_start = true;
    return service_init(s, "store", on_mail, commit_batch, st);
}

void store_thread_destroy(struct service *s)
{
    struct store_thread *st = s->ctx;
    service_destroy(s, chat_op_drop);
    if (!st)
        return;
    map_free_all(&st->rooms);
    for (size_t i = 0; i < st->n_batch; i++)
        chat_op_free(st->batch[i]);
    free(st->batch);
    for (size_t i = 0; i < st->n_held; i++)
        chat_op_free(st->held[i]);
    free(st->held);
    search_catch_up(st); /* the next start finds nothing left to index */
    if (st->erased && st->gate != STORE_GATE_CLOSED) {
        /* Erasures not yet merged out of the search index: done now, before the file closes
         * (closing checkpoints the WAL). */
        bool more = true;
        for (unsigned step = 0; more && step < ERASE_MERGE_STEPS_MAX; step++)
            if (st->db->ops->search_merge(st->db, &more) < 0)
                break;
    }
    st->db->ops->close(st->db);
    free(st);
}
