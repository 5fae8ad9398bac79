/*
 * chat: the operations a chat session asks of the other threads, and the
 * message records they pass around.
 *
 * DESIGN: a request becomes one `struct chat_op`, posted as mail from thread
 * to thread (worker -> hub -> store -> auth ...) until its result is known,
 * then posted back to the worker that owns the connection. Exactly one
 * thread holds an op at any time, so its fields need no locks. The worker
 * finds the connection again by id: it may have closed meanwhile, and then
 * the result is dropped.
 */
#ifndef PARLEY_CHAT_H
#define PARLEY_CHAT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "mailbox.h"
#include "proto.h"
#include "search_cursor.h"
#include "store.h"
#include "text.h"

#define CHAT_ROOM_MAX (TEXT_DM_ROOM_MAX + 1)
#define CHAT_NAME_MAX (TEXT_NAME_MAX + 1)
#define CHAT_TOKEN_LEN 43 /* 32 random bytes in unpadded base64url */
/* Events per store read of a replay: what one connection's replay holds in memory at a time. */
#define CHAT_REPLAY_PAGE 256

enum chat_op_kind {
    CHAT_REGISTER,
    CHAT_LOGIN_PASSWORD,
    CHAT_LOGIN_GUEST,
    CHAT_LOGIN_TOKEN,
    CHAT_JOIN,
    CHAT_LEAVE,
    CHAT_ROOMS,
    CHAT_WHO,
    CHAT_SEND,
    CHAT_HISTORY,
    CHAT_TYPING,
    CHAT_GONE,        /* a logged-in connection closed: leave its rooms; no reply */
    CHAT_ROOM_CREATE, /* hub -> store: record a new room; no reply */
    CHAT_REPLAY,      /* worker -> store -> worker: the next page of a join's replay */
    CHAT_ADOPT, /* worker -> hub: a connection moved here by a live upgrade is online; no reply */
    /* Timeline requests of protocol 1.1, each answered as a send is (worker -> hub -> store ->
     * hub -> worker): stored as an event, delivered, acked. */
    CHAT_EDIT,
    CHAT_DELETE,
    CHAT_REACT,
    /* Protocol 1.1 rule 69: worker -> hub -> worker; the hub keeps it (user_status.h). */
    CHAT_STATUS,
    /* search (protocol 1.1 rules 71, 72): worker -> store -> worker, read on the store thread
     * as history is. */
    CHAT_SEARCH,
    /* Read markers and saved rooms (protocol 1.1 rules 66-68). `read` goes worker -> store ->
     * (hub, when the marker moved: the user's other connections are told) -> worker. A registered
     * user's join goes worker -> store (saves the room, reads the marker) -> hub -> worker, and
     * its leave of a public room worker -> store (forgets it) -> hub -> worker. */
    CHAT_READ,
    /* Topic, roles, moderation (rules 58-65): timeline requests too, answered as a send is. */
    CHAT_TOPIC,
    CHAT_ROLE,
    CHAT_KICK,
    CHAT_BAN,
    CHAT_UNBAN,
    CHAT_MUTE,
    CHAT_UNMUTE,
    /* hub -> store -> hub: a page of a room's events [join_after + 1, seq] read for the broker's
     * fill of a gap (hub_broker.h); msgs in the wire form between nodes. */
    CHAT_FILL,
    /* hub -> store -> hub: the dm rooms of the users named in gone_rooms with their latest seqs
     * (rooms, each once), read again once the users' channels between nodes are subscribed here
     * (hub_broker.h). */
    CHAT_DM_SEQS,
    /* hub -> store -> hub: a room's newest events (join_after, seq] in their replay forms, read
     * to fill the hub's ring of recent messages where it is empty or short (after a restart), so
     * that the joins waiting on it replay from memory (hub.c, "ring seeds"). */
    CHAT_RING_SEED,
};

/* A listed user's status (rule 70): away, and its text (owned) or NULL. Only users not at the
 * default (online, no text) are listed. */
struct chat_status_entry {
    char name[CHAT_NAME_MAX];
    bool away;
    char *text;
};

/*
 * The journey of a CHAT_LOGIN_PASSWORD op, in op->stage: the worker sends it to auth, which
 * checks the login throttles before anything else is spent on it; the store finds the account;
 * auth queues it fairly and a hasher thread verifies the password; the store writes the token;
 * the worker answers. (A CHAT_REGISTER goes worker -> hub -> auth -> store -> hub -> worker.)
 */
enum {
    LOGIN_PW_GATE,   /* worker -> auth */
    LOGIN_PW_LOOKUP, /* auth -> store */
    LOGIN_PW_VERIFY, /* store -> auth (with the account's hash, or an error) */
    LOGIN_PW_TOKEN,  /* auth -> store */
};

/* One message event, encoded once per transport and shared by reference. */
struct msg_rec {
    uint64_t seq;
    int64_t ts; /* when stored (replays of dm rooms skip what predates an account: rule 40) */
    /* JSON with a WebSocket text frame header in front: the frame is ws->data[ws_off..len). */
    struct chunk *ws;
    uint32_t ws_off;
    struct chunk *tn; /* the telnet line(s), or NULL when telnet shows nothing */
};

/* Where a message's JSON text starts inside its ws chunk (after the frame header room). */
#define MSG_JSON_OFF 10

struct chat_room_info {
    char name[CHAT_ROOM_MAX];
    uint32_t members;
    uint64_t seq;
    /* welcome (rule 68): the read marker, and the counts after it (each at most 1000) */
    uint64_t read;
    uint32_t unread, mentions;
    char *topic; /* rooms: the room's topic (owned), or NULL for none */
};

/* A user's role in a room as joined says it (rule 59). */
enum chat_role { CHAT_ROLE_MEMBER, CHAT_ROLE_OP, CHAT_ROLE_OWNER, CHAT_ROLE_ADMIN };

struct chat_op {
    struct mail mail;
    enum chat_op_kind kind;
    uint8_t stage;    /* which step of the op's journey is next */
    uint16_t worker;  /* reply to this worker... */
    uint64_t conn_id; /* ...and this connection */
    json_t *id;       /* the request's id (owned reference), or NULL */

    /* Result: PROTO_OK or the error to send, with a human message. */
    enum proto_error err;
    const char *why;
    /* A write refused because this process handed the store over to a new one (an upgrade):
     * the worker closes the connection with the restart goodbye instead of showing err, and
     * the client retries (with the same cid) on the new process. */
    bool handed_over;
    uint32_t retry_after; /* rate_limited login or register: whole seconds to wait, or 0 */

    /* Password ops (login, register) while auth holds them (auth.c). */
    uint64_t net_key;          /* the client's network (addr_net_key): throttles and fair queue */
    struct chat_op *auth_next; /* the queue of its network, waiting for a hasher */
    uint64_t auth_queued_ms;   /* when it joined that queue */
    uint32_t auth_wait_ms;     /* how long it waited for and was in a hasher (0: never queued) */
    bool hashed;               /* back from a hasher thread */
    uint8_t hasher;            /* which hasher thread had it */

    /* The requester. */
    char user[CHAT_NAME_MAX]; /* as registered (or the guest's name) */
    char user_lc[CHAT_NAME_MAX];
    bool guest;
    uint64_t guest_session;
    int64_t user_created_ms; /* registered users: when the account was made */

    /* Request fields, as the kind needs. */
    char name[CHAT_NAME_MAX]; /* register, login */
    char *password;           /* register, login: owned, wiped and freed after use */
    size_t password_len;
    char pwhash[STORE_PWHASH_MAX];
    char token[CHAT_TOKEN_LEN + 1]; /* login by token, and the token in welcome */
    char room[CHAT_ROOM_MAX];
    bool room_is_dm;
    char to_lc[CHAT_NAME_MAX]; /* send to a user */
    char peer[CHAT_NAME_MAX];  /* a dm's other party as registered (for telnet lines) */
    char *text;                /* send: owned copy */
    size_t text_len;
    char cid[65];
    bool has_cid;
    bool has_since;
    uint64_t since;
    bool charged; /* send: took a token from the rate limit's bucket */
    bool rejoin;  /* join of a room the connection has joined already: no presence, counted once */
    bool adopt; /* join of a connection a live upgrade moved here: counted in silently, no reply */
    /* adopt join (with rejoin) of a dm room the moved connection never joined: only its replay
     * from since, nobody counted in; the room is followed for its users here from then on. */
    bool catch_up;
    uint64_t before; /* history: 0 = newest */
    unsigned limit;  /* history: messages; rooms: rooms per reply */
    /* who, rooms (rules 84, 85): list what follows this lower-cased key (its first 32 bytes give
     * the same order against any name or room, which are at most 32 bytes), if has_after. */
    bool has_after;
    uint8_t after_len;
    char after[CHAT_NAME_MAX];
    bool adopt_large; /* adopt join: the room was large as this connection was last told */
    int64_t ts;

    /* Timeline (protocol 1.1): edit, delete, react name a message (target); a send may reply
     * to one. stage after the store: 1 stored, 2 nothing stored (a cid duplicate, a reaction
     * that changes nothing), acked with seq. */
    uint64_t target;
    uint64_t reply_to;
    bool has_reply_to;
    int64_t reads_from; /* dm rooms: the requester reads messages from then (rules 40, 50) */
    char emoji[STORE_EMOJI_MAX + 1];
    bool on;             /* react */
    bool over_rate;      /* no token was left: rate_limited, if nothing else applies (rule 75) */
    uint8_t bucket;      /* which bucket charged took a token from (CHAT_BUCKET_*) */
    bool telnet_history; /* history for telnet: deleted messages left out (rule 76) */
    bool newest_own;     /* telnet's /edit, /delete: target the requester's newest message */
    char *mentions;      /* send, edit: the mentioned names joined by ' ' (rule 57), owned */
    char target_from[CHAT_NAME_MAX]; /* edit, delete: the message's author as shown */
    char why_buf[112];               /* an error message made for this op (why points here) */

    /* Topic and moderation (rules 58-65). The topic's text, a kick's or ban's reason: text (a
     * reason NULL when none). subject: the user named, as given, then (hub) as shown;
     * subject_lc lower-cased. role: CHAT_ROLE_MEMBER, _OP or _OWNER. duration: seconds, 0 =
     * until lifted. topic_query: telnet's /topic without text, answered by the hub (topic). */
    char subject[CHAT_NAME_MAX];
    char subject_lc[CHAT_NAME_MAX];
    uint8_t role;
    uint64_t duration;
    bool topic_query;
    bool subject_registered; /* the hub found subject_lc a registered account */
    bool over_room_limit; /* join: over the per-connection room limit (rule 75 ranks it late) */
    bool join_checked;    /* join: the hub has made rule 75's checks (the store saves it next) */
    /* join: the room's topic (owned, NULL: none), owner as shown ("" none), the requester's
     * role, and when its mute ends (muted; 0 = until unmute). */
    char *topic;
    char owner[CHAT_NAME_MAX];
    uint8_t my_role;
    bool muted;
    int64_t muted_until;

    /* Results. */
    uint64_t seq;                 /* send: the ack's seq; join: the room's latest */
    bool truncated;               /* join */
    bool registered_guest;        /* register by a logged-in guest of its own name */
    size_t names_limit;           /* join, who: list at most this many members (asked for) */
    size_t n_members;             /* join, who: how many users are in the room */
    bool large;                   /* join, who: the room is large (rules 81-83) */
    bool more;                    /* who, rooms: entries follow the last one listed */
    char (*names)[CHAT_NAME_MAX]; /* join, who: members, at most names_limit of them */
    size_t n_names, cap_names;
    /* join, who for the JSON transport: the members instead as the body of a JSON array
     * ("alice","bob"), written in one pass by the hub: a small room's joined lists every user,
     * and a join storm before the tick asks for the list once per join. Names need no escaping
     * (rule: A-Z a-z 0-9 _ - . only, checked wherever a name comes in). */
    bool names_json;
    char *members_json;
    size_t members_json_len, members_json_cap;
    /* join of a small room: the room's whole list, shared (member_list.h): n_members_pieces
     * pieces of members_json_len bytes in all, instead of members_json */
    struct member_piece *members_pieces;
    uint32_t n_members_pieces;
    struct msg_rec *msgs; /* join: replay; history: entries (ascending seq) */
    size_t n_msgs, cap_msgs;
    struct chat_room_info *rooms; /* rooms; login: dms (members unused) */
    size_t n_rooms, cap_rooms;
    uint64_t gone_rooms_n; /* gone, and a guest's register of its name: how many in gone_rooms */
    char (*gone_rooms)[CHAT_ROOM_MAX];
    /* join: 1 + the first event of the room's presence run (struct event_run) that reaches this
     * connection, when the run follows this reply in the same batch; 0: no run follows */
    uint32_t run_from;
    /* search: q in text / text_len (what the cursors are signed for), its FTS5 MATCH expression
     * (owned), where an `after` goes on, and the reply's `next` ("" for none) */
    char *search_match;
    bool has_cursor;
    struct search_cursor cursor;
    char next[SEARCH_CURSOR_MAX];
    /* Read markers and saved rooms (rules 66-68). */
    bool via_store;   /* join, leave of a registered user: the store's step is still to come */
    bool not_joined;  /* leave: this connection had not joined the room (a saved room's leave) */
    bool marker_moved; /* read: the marker moved (the user's other connections are told) */
    uint64_t marker;  /* join of a registered user: the read marker (joined.read) */
    /* join of a registered user to a public room: its owner by the store ("" none), the first
     * creator's (rule 59), and whether this join created it there */
    char room_owner_lc[CHAT_NAME_MAX];
    bool room_made;
    struct chat_room_info *saved; /* registered login: the saved rooms, by name (welcome.rooms) */
    size_t n_saved, cap_saved;
    uint64_t join_after;   /* join via the store, replay: replay read so far up to this seq */
    uint64_t replay_until; /* join: (join_after, replay_until] is still to be read, page by page */

    /* Status (protocol 1.1 rules 68-70). status: the state asked for (its text in text);
     * login: the user's state and text (in text) for welcome; adopt: the status the moved
     * connection knew. */
    bool away;
    bool status_fetch;       /* login: on its way back through the hub for the status */
    bool status_conn;        /* gone: one of the user's connections went (user_status.h) */
    uint64_t status_session; /* gone, adopt: the identity's guest session, 0 for an account */
    /* join, who: the statuses of the users listed that are not the default */
    struct chat_status_entry *statuses;
    size_t n_statuses, cap_statuses;
};

/* The rate-limit buckets a request takes its token from (rules 23, 73). */
enum chat_bucket_kind { CHAT_BUCKET_SEND, CHAT_BUCKET_REACT, CHAT_BUCKET_SEARCH };

/* True for the kinds that store a timeline event (send, edit, delete, react). */
static inline bool chat_op_stores_event(enum chat_op_kind k)
{
    return k == CHAT_SEND || k == CHAT_EDIT || k == CHAT_DELETE || k == CHAT_REACT ||
           (k >= CHAT_TOPIC && k <= CHAT_UNMUTE);
}

/* True for topic, role, kick, ban, unban, mute, unmute. */
static inline bool chat_op_moderates(enum chat_op_kind k)
{
    return k >= CHAT_TOPIC && k <= CHAT_UNMUTE;
}

/* True for the ops the store answers at once from committed data, without a commit (its reads:
 * history, search, replays, logins' lookups); every other op sent to it is a write. */
bool chat_op_read_at_store(const struct chat_op *op);

/* True for an event a worker read and sends to the hub on its way to the store (a send, an edit,
 * a reaction, a moderation), not yet stored. */
bool chat_op_event_to_store(const struct chat_op *op);

/*
 * How far the writes are on their way to the store, for the hub's gathered waves (hub.c): events
 * posted to the hub by workers and taken by it (each counted by chat_op_event_to_store), writes
 * posted to the store and taken by it (each counted by chat_op_read_at_store: the two ends of a
 * pair always agree), writes in the store's open batch, and commits whose answers it has
 * posted. Any thread reads them.
 */
struct store_progress {
    _Atomic uint64_t to_hub, hub_took, posted, taken, batched, commits;
};
struct store_progress *chat_store_progress(void);
/* True while a write is on its way to the store (through the hub or straight) or in its open
 * batch: a commit will answer it. */
bool chat_store_commit_coming(void);

/*
 * The event an op of such a kind stores, as the store writes it and the hub encodes it. Its
 * pointers borrow op's fields; identity and target_from are the caller's to fill in.
 */
struct store_msg chat_op_event(const struct chat_op *op);

/* Where each thread's mailbox is: set once at start-up, read-only afterwards. */
struct chat_route {
    struct mailbox *hub;
    struct mailbox *store;
    struct mailbox *auth;
    struct mailbox **workers;
    int n_workers;
};
void chat_route_set(const struct chat_route *route);
const struct chat_route *chat_route(void);

/* Sends op on to the next thread of its journey. */
void chat_to_hub(struct chat_op *op);
void chat_to_store(struct chat_op *op);
void chat_to_auth(struct chat_op *op);
/* Returns op to the worker that owns its connection, with its result. */
void chat_to_worker(struct chat_op *op);

/* Returns a zeroed op of `kind` for connection conn_id on worker. */
struct chat_op *chat_op_new(enum chat_op_kind kind, uint16_t worker, uint64_t conn_id);
/* Frees an op and everything it owns (message references included). */
void chat_op_free(struct chat_op *op);
/* Frees a queued op that will never be handled (a mailbox drained at shutdown). */
void chat_op_drop(struct mail *m);
void chat_op_fail(struct chat_op *op, enum proto_error err, const char *why);
void chat_op_add_msg(struct chat_op *op, const struct msg_rec *m); /* takes the references */
void chat_op_add_name(struct chat_op *op, const char *name);
/* Makes room for n more names at once. */
void chat_op_reserve_names(struct chat_op *op, size_t n);
/* Lists a user's status in a join's or who's reply (text[0..n), n = 0 for none). */
void chat_op_add_status(struct chat_op *op, const char *name, bool away, const char *text);
void chat_op_add_room(struct chat_op *op, const char *name, uint32_t members, uint64_t seq);
/* Appends a saved room (welcome.rooms) with its latest seq; the caller fills in the rest. */
struct chat_room_info *chat_op_add_saved(struct chat_op *op, const char *name, uint64_t seq);

/* What the hub hands a worker: events for its connections, and finished ops. */
enum deliver_kind {
    /* rec to every local member of room, except skip_conn and skip_user's connections */
    DELIVER_ROOM,
    /* rec to every local connection of user_a and user_b */
    DELIVER_DM,
    /* a kick or ban (rule 64): each local connection of user_a in room leaves it and gets rec
     * (its `kicked`) */
    DELIVER_KICK,
    /* op's result to its connection */
    DELIVER_OP,
    /* every connection of guest session guest_session is now user `user_a` */
    DELIVER_BECAME_REGISTERED,
    /* a large room's tick (rule 83): rec, a `count` of `count` users, to each local member
     * connection last told another count, or to all of them with DELIVER_COUNT_FORCE */
    DELIVER_COUNT,
    /* run: a room's presence events of one hub turn, to every local member, and from their own
     * place in it to the connections whose join this batch answered (chat_op.run_from) */
    DELIVER_RUN,
    /* rec to every local connection of user_a except skip_conn; away and text (owned): the
     * status it tells (rule 69), which the connection keeps for a live upgrade */
    DELIVER_STATUS,
    /* rec (a `read` without id) to every local connection of user_a but skip_conn */
    DELIVER_USER,
    /* every local connection of user_a but skip_conn that joined room leaves it, told by an
     * unsolicited `left` (rule 67) */
    DELIVER_LEFT,
};

/*
 * A room's presence events of one hub turn, back to back. Before the room's tick finds it large,
 * every join sends presence to every member (rules 13, 81): a join storm is N^2 events, and a
 * turn's worth goes to each member as one queue entry and one piece of one write instead of one
 * per event. The frames of events [i, n) are all->data[off[i] .. all->len); each event is also
 * kept whole (ev[i]) for connections that take them one at a time (telnet, permessage-deflate).
 * Shared by the workers it goes to; the last to drop it frees it.
 */
struct event_run {
    atomic_uint refs;
    uint32_t n;
    struct chunk *all;
    struct msg_rec *ev;
    uint32_t off[]; /* n + 1 entries: off[n] == all->len */
};

/* Returns a run of ev[0..n) (taking the array and its references), with `refs` references. */
struct event_run *event_run_new(struct msg_rec *ev, uint32_t n, unsigned refs);
void event_run_unref(struct event_run *run);

/* struct deliver's count_flags. */
enum { DELIVER_COUNT_FORCE = 1, DELIVER_COUNT_LARGE = 2 };

struct deliver {
    uint8_t kind;
    char room[CHAT_ROOM_MAX];
    struct msg_rec rec;
    uint64_t skip_conn;
    char skip_user[CHAT_NAME_MAX];
    char user_a[CHAT_NAME_MAX], user_b[CHAT_NAME_MAX];
    uint64_t guest_session;
    int64_t created_ms;
    uint32_t count;      /* DELIVER_COUNT: the room's users */
    uint8_t count_flags; /* DELIVER_COUNT: DELIVER_COUNT_* */
    struct chat_op *op;
    struct event_run *run; /* DELIVER_RUN: one reference */
    bool away;             /* DELIVER_STATUS */
    char *text;            /* DELIVER_STATUS: owned, or NULL */
};

/* One mail per worker per hub turn. */
struct deliver_batch {
    struct mail mail;
    size_t n, cap;
    struct deliver *items;
};

/*
 * main -> hub -> workers: the hub posts each[i] to worker i behind every delivery it has made so
 * far (it sends its batches first), then frees the relay. A live upgrade collects connections
 * this way once the store has said its last: their results and messages have all arrived.
 */
struct relay_mail {
    struct mail mail; /* MAIL_RELAY */
    struct mail **each;
    int n;
};

struct deliver *deliver_batch_add(struct deliver_batch **b);
/* Frees a batch and drops what it still references. */
void deliver_batch_free(struct deliver_batch *b);

void msg_rec_release(struct msg_rec *m);
struct msg_rec msg_rec_ref(const struct msg_rec *m);

#endif
