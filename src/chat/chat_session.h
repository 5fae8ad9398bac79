/*
 * chat_session: a chat client on a worker (over WebSocket or telnet): its
 * identity, the rooms it joined with the last seq it saw in each, its rate
 * limits; the worker's indexes of local rooms and users; and the handling of
 * requests, of results coming back from other threads, and of deliveries.
 *
 * DESIGN: everything a connection's chat state is lives in one struct
 * chat_session, so it can later be written out and read back (hot upgrade).
 * Each room a session joined is one `struct chat_sroom`, shared with the
 * worker's local room index; a delivered message is written only when its
 * seq is above the sroom's last_seq, which makes delivery exactly-once even
 * where a join's replay and live traffic meet.
 */
#ifndef PARLEY_CHAT_SESSION_H
#define PARLEY_CHAT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chat.h"
#include "conn.h"
#include "handover_rec.h"
#include "worker.h"

struct chat_sroom {
    /* The room's name: the worker's one copy (CHAT_ROOM_MAX bytes), in its index of local rooms,
     * where every sroom is from its making to its end. */
    const char *name;
    uint64_t last_seq;
    uint64_t joined_order; /* for telnet: the most recently joined room becomes current */
    uint32_t local_at;     /* its place in the worker's list of the room's local members */
    /* Large rooms (rule 83): the user count this connection was last told (by joined or count),
     * and whether the room was large then; a live upgrade carries both. */
    uint32_t told_count;
    bool told_large;
    bool hub; /* the hub counts this connection in the room (not yet, after a move) */
    bool run_pending; /* joined in a hub turn whose presence run has not arrived yet */
};

struct chat_session;

/* A password check on its way (a login or a registration), as the request asked for it: kept
 * until it is answered, so a live upgrade can submit it again in the next process. */
struct chat_pw {
    bool registering; /* CHAT_REGISTER, else CHAT_LOGIN_PASSWORD */
    bool resubmit;    /* moved here: to be submitted again once the handover is over */
    char *id_json;    /* the request's id as JSON text, or NULL */
    char name[CHAT_NAME_MAX];
    char *password; /* wiped when freed */
    size_t password_len;
    bool registered_guest; /* a logged-in guest registering its own name */
    uint64_t guest_session;
};

/* How a transport shows results (events are written by chat_session_write in its form). */
struct chat_transport {
    /* A finished op (success or error) for this connection. */
    void (*op_done)(struct conn *c, struct chat_op *op);
    /* The guest this connection is logged in as became a registered user. */
    void (*became_registered)(struct conn *c);
    /* Input held for an answer (a login, a join) is read again. Optional: telnet runs the lines
     * that wait behind such a request (rule 79). */
    void (*input_released)(struct conn *c);
    /* The user left room on another connection, and this one left it too (rule 67). Optional. */
    void (*left_elsewhere)(struct conn *c, const char *room);
    /* An event of room at seq was shown to a registered user (telnet's read markers). Optional. */
    void (*shown)(struct conn *c, const char *room, uint64_t seq);
    /* The connection was taken out of room by a kick or ban (rule 64), after its `kicked` was
     * written. Optional: telnet picks another current room (rule 36). */
    void (*room_lost)(struct conn *c, const char *room);
};

/* A session's cold fields, each NULL most of the time. */
struct chat_session_cold {
    /* The room of a join with since on its way (input is held, so there is at most one): its
     * messages that reach this connection meanwhile are left to that join's replay (rule 22). */
    char *replay_pending;
    void *transport_state; /* telnet: its line editor and prompts */
    struct chat_pw *pw;    /* the password check on its way */
    /* The react bucket (protocol 1.1 rule 73), made at the first react: most clients never
     * react, and pay nothing for it. A live upgrade carries it (record version 4). */
    struct chat_bucket *react;
    /* The search bucket (protocol 1.1 rule 73), made at the first search, as react's. */
    struct chat_bucket *search;
    /* The send bucket (rules 23 and 42) and rule 21's typing time, made at the first send or
     * typing and given back once full again and quiet (an idle client's is full: a missing one
     * reads as full, here and in a live upgrade's record). */
    struct chat_sends *send;
    char *status_text; /* with away: the status text */
    /* The dm rooms this connection was given messages of without joining them, and where (made
     * at the first such message: most connections never get one). A live upgrade carries them
     * (record version 6), so the next process catches the connection up from there. */
    struct chat_dms *dms;
};

struct chat_session {
    struct conn *conn;
    const struct chat_transport *transport;
    /* Flags and small counters first and together, so the struct has no holes (see
     * docs/architecture.md, "Memory of an idle connection"). */
    bool logged_in;
    bool login_pending;
    /* A password op (login or register) is out: input is held, and the login deadline waits
     * for its answer, which says how long it waited for and was in a hasher. */
    bool auth_pending;
    bool guest;
    bool replay_skipped; /* a message was left to the replay of replay_pending */
    /* After a live upgrade moved the connection here: the rooms still to be joined again with
     * the hub (silently, with since), one at a time, before input is read. */
    bool adopting;
    bool away; /* the user's status as last told to this connection (rule 69): a live upgrade
                  carries it to the hub of the next process */
    uint8_t charged_cids_next;
    uint32_t
        joins_pending;   /* joins of new rooms awaiting their answer (the room limit counts them) */
    uint32_t joins_held; /* joins of any kind awaiting their answer (input is held meanwhile) */
    uint32_t ops_out;    /* requests on their way that will be answered (a live upgrade waits) */
    /* Such time before login: the login deadline moves by it (32 bits: at most 49 days, where a
     * login deadline is seconds). */
    uint32_t login_paused_ms;
    uint64_t guest_session;
    int64_t created_ms;
    /* The rooms joined: chat_session_rooms. While cap_rooms is at most 1 the one room is held
     * here in place of the list (most clients are in one room, and a 1-pointer list would be a
     * 32-byte block). */
    union {
        struct chat_sroom **many;
        struct chat_sroom *one;
    } rooms_;
    uint64_t join_counter;
    /* Rule 17: the (room, cid) keys of the last sends that paid a token, so a retry is known as
     * one at once, also while the first copy is still on its way to the store. Allocated at the
     * first such send: clients without cids pay nothing for it. */
    uint64_t *charged_cids;
    /* Output held back until the socket drains (NULL while none, as when idle). */
    struct chat_backlog *backlog;
    struct conn *user_next; /* logged in: the next connection of this user on this worker */
    /* The fields an idle client leaves NULL, in one block made while any is set (and by telnet,
     * whose state is one): read them through chat_session_cold. */
    struct chat_session_cold *cold;
    /* The 4-byte fields and the name last, where they leave the least padding (160 bytes). */
    uint32_t n_rooms, cap_rooms;
    uint32_t adopt_at; /* adopting: rooms[adopt_at] is the next to join again */
    /* The user name: its lower-case form and which of its letters are capitals in the name as
     * shown (chat_session_user), so the name is not kept twice. */
    uint32_t user_caps;
    char user_lc[CHAT_NAME_MAX];
};

/* A dm room not joined: the newest seq written to the connection. While a moved connection is
 * caught up (catching_up), the room's messages that reach it are left to that replay. */
struct chat_dm_place {
    uint64_t last_seq;
    bool catching_up;
    char room[CHAT_ROOM_MAX];
};
/* At most CHAT_DMS_MAX places, oldest first: past that the oldest not being caught up is
 * forgotten (its room goes on from the first event the next process hears, as a record of an
 * older version says). */
#define CHAT_DMS_MAX HR_DMS_MAX
struct chat_dms {
    uint32_t n, cap;
    struct chat_dm_place at[];
};

/* A token bucket of rule 42 with rule 23's flood count, for a request type with its own. */
struct chat_bucket {
    double tokens;
    uint64_t refill_ms;
    uint64_t attempts_sec;
    uint16_t attempts[10];
};

/* The send bucket, with the time of the last typing passed on (rule 21: at most one a second). */
struct chat_sends {
    struct chat_bucket b;
    uint64_t last_typing_ms;
};

/* A join's replay still to be read from the store, a page at a time as the connection drains. */
struct chat_replay {
    char room[CHAT_ROOM_MAX];
    uint64_t after, until; /* (after, until] is still to come */
    int64_t ts;            /* rule 40: a dm replay skips what predates the account */
    bool reading;          /* a page is on its way from the store */
};

struct chat_backlog_entry {
    struct msg_rec rec;
    struct chat_replay *replay; /* set: read this replay here, in place of rec */
    bool live;
};

/* Output held back until the socket drains: a join's replay (messages, and ranges still to
 * read), and live events behind it. A ring, in one block with its counts, made when the first
 * entry is held back and freed when the last goes. */
struct chat_backlog {
    size_t head, n, cap;
    size_t live_bytes; /* live events in the ring: what the slow-consumer limit counts */
    struct chat_backlog_entry e[];
};

/* Per-worker setup and teardown of the chat indexes. */
void chat_worker_init(struct worker *w);
void chat_worker_destroy(struct worker *w);
/* A mail for the chat layer arrived at worker w (MAIL_OP or MAIL_DELIVER). */
void chat_worker_mail(struct worker *w, struct mail *m);
/* Frees a chat mail that will never be handled (shutdown). */
void chat_mail_drop(struct mail *m);

/* Gives c a chat session over transport t. */
struct chat_session *chat_session_open(struct conn *c, const struct chat_transport *t);
/* c is closing: leave every room, let the hub know, free the session. */
void chat_session_close(struct conn *c);

static inline struct chat_session *chat_session_of(struct conn *c)
{
    return c->session;
}

/* The cold fields of s to read: all NULL while s has no block. */
static inline const struct chat_session_cold *chat_session_cold(const struct chat_session *s)
{
    static const struct chat_session_cold none;
    return s->cold ? s->cold : &none;
}
/* The cold fields of s to write: the block, made if s had none. */
struct chat_session_cold *chat_session_cold_make(struct chat_session *s);
/* Frees s's block once every field in it is NULL again. */
void chat_session_cold_settle(struct chat_session *s);

/* The user name of s as shown, in out. */
static inline const char *chat_session_user(const struct chat_session *s, char out[CHAT_NAME_MAX])
{
    text_name_raise(s->user_lc, strlen(s->user_lc), s->user_caps, out);
    return out;
}

/* The rooms s has joined, n_rooms of them. */
static inline struct chat_sroom **chat_session_rooms(struct chat_session *s)
{
    return s->cap_rooms > 1 ? s->rooms_.many : &s->rooms_.one;
}

/*
 * Starts an op from a validated request: checks login, membership and
 * limits, then sends it on its way. Returns PROTO_OK, or the error to show
 * (op freed). Telnet commands come through here too.
 */
enum proto_error chat_session_submit(struct conn *c, struct chat_op *op, const char **why);

/*
 * Counts one send attempt (valid or not) against rule 23's flood limit.
 * Returns false when the connection went over it and is being closed 1008.
 */
bool chat_session_count_send(struct conn *c);
/* The same for `react` and its own bucket (protocol 1.1 rule 73). */
bool chat_session_count_react(struct conn *c);
/* The same for `search` and its own bucket (protocol 1.1 rule 73). */
bool chat_session_count_search(struct conn *c);

/*
 * When bucket of c will next hold a whole token: a time on the loop clock, now when it holds one
 * now (none is taken). Telnet lines wait until then instead of being refused (rule 79).
 */
uint64_t chat_session_token_at(struct conn *c, enum chat_bucket_kind bucket);

/*
 * How far c's login deadline moves: the time its password checks waited for and were in a
 * hasher before it logged in (failed attempts do not reset the deadline, and waiting for the
 * hasher does not consume it). UINT64_MAX while a check is pending: the deadline is decided
 * when its answer comes.
 */
uint64_t chat_session_login_pause(const struct conn *c);

/* The connection's output queue has drained: write more of its backlog. */
void chat_session_drained(struct conn *c);

/*
 * Live upgrades (handover.c). chat_session_busy: c has a request on its way that this process
 * must answer before c can move (records of `version` carry none). chat_session_save writes c's
 * session into the record w is writing. chat_session_restore gives c (adopted, input held) the
 * session of rec over transport t, in the worker's indexes, and tells the hub it is online
 * (guests), silently; returns 0, or -1 with *why when rec's session is not one this server can
 * have. chat_session_thaw, once the handover is over: joins its rooms again with the hub, without
 * presence or reply, each with since = the last seq the client was given, so whatever was
 * stored meanwhile follows what it has; then input is read again.
 */
bool chat_session_busy(const struct conn *c, unsigned version);
/* How many replays c's backlog still has to read (for the log of a live upgrade). */
size_t chat_session_replays(const struct conn *c);
void chat_session_save(struct conn *c, struct hr_writer *w);
int chat_session_restore(struct conn *c, const struct chat_transport *t,
                         const struct handover_rec *rec, const char **why);
void chat_session_thaw(struct conn *c);

/* The room of session s with that name, or NULL. */
struct chat_sroom *chat_session_room(struct chat_session *s, const char *name);

#endif
