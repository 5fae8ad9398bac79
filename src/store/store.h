/*
 * store: parley's durable state behind a small interface: rooms, messages,
 * accounts and login tokens. One backend per file (store_sqlite.c, the embedded
 * default; store_pg.c, PostgreSQL shared by several nodes), each behind
 * `struct store_ops`.
 *
 * DESIGN: every function here runs on the store thread only, so a backend
 * needs no locks and may block (on fsync, on a lock, on the network): no
 * worker waits for it. The store thread is also each room's sequencer: it
 * assigns seq inside the transaction that stores the message, so a batch
 * that fails to commit leaves no gap (the caller rolls its counters back)
 * and nothing is acknowledged that is not on disk.
 *
 * Errors: 0 on success; a negative errno-style code otherwise:
 *   -ENOENT   not found              -EEXIST  unique name already taken
 *   -EBUSY    locked by another      -ENOSPC  disk or database size limit full
 *   -EIO      anything else (corrupt file, I/O error); the backend logs the detail.
 */
#ifndef PARLEY_STORE_H
#define PARLEY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_NAME_MAX 32    /* user and public room names */
#define STORE_ROOM_MAX 70    /* "dm:" + 32 + ":" + 32 + NUL fits */
#define STORE_TOKEN_HASH 32  /* tokens are kept only as SHA-256 hashes */
#define STORE_PWHASH_MAX 128 /* crypto_pwhash_STRBYTES */
/* An identity (rule 51): a registered account's lower-case name, or "guest:<session>" in
 * decimal; no name holds ':'. With its NUL. */
#define STORE_IDENTITY_MAX 48
#define STORE_EMOJI_MAX 32 /* bytes (rule 54) */

struct store;

/* The types of timeline events (protocol 1.1 rule 47). Later types (topic, role, kick, ban,
 * unban, mute, unmute) are appended here and in store_event_type_name. */
enum store_event_type {
    STORE_EV_MESSAGE,
    STORE_EV_EDIT,
    STORE_EV_DELETE,
    STORE_EV_REACTION,
    STORE_EV_TOPIC,
    STORE_EV_ROLE,
    STORE_EV_KICK,
    STORE_EV_BAN,
    STORE_EV_UNBAN,
    STORE_EV_MUTE,
    STORE_EV_UNMUTE,
    STORE_EV_TYPES
};

/* The wire and database spelling of an event type ("message", "edit", ...). */
const char *store_event_type_name(enum store_event_type t);

/*
 * One stored event (a message, an edit, ...). Strings are NUL-terminated; text may hold '\n' and
 * '\t'. A backend hands out only valid text: a damaged row comes with its text repaired
 * (text_repair) and a sender that is not a valid name replaced by "?".
 *
 * Read back, a message carries its current state (text and mentions of the last edit, edited,
 * deleted with text empty), an edit or reaction whether its target is deleted now (deleted),
 * and erased texts are empty: what rule 48's replay forms need.
 */
struct store_msg {
    const char *room;
    uint64_t seq;
    int64_t ts;       /* ms since the epoch */
    const char *from; /* the sender's name as registered (or the guest's) */
    const char *text; /* message, edit ("" otherwise) */
    size_t text_len;
    const char *cid;      /* client message id, or NULL */
    uint8_t type;         /* enum store_event_type */
    const char *identity; /* writes: the author's identity (NULL: from's lower-case name) */
    uint64_t target;      /* edit, delete, reaction: the message's seq */
    uint64_t reply_to;    /* message: 0 = none */
    const char *mentions; /* message, edit: mentioned names joined by ' ', or NULL */
    int64_t edited;       /* message read back: ts of its last edit, 0 = never */
    bool deleted;         /* read back: message deleted, or an edit's/reaction's target deleted */
    const char *emoji;    /* reaction (NULL once erased) */
    bool on;              /* reaction */
    const char *target_from; /* read back: the author of an edit's, delete's or reaction's
                              * message as shown, or NULL (trimmed) */
    /* Topic and moderation (rules 58-65); a topic's text is in text. */
    const char *user;   /* role, kick, ban, unban, mute, unmute: the user named, as shown */
    const char *detail; /* role: "op", "member" or "owner"; kick, ban: the reason, or NULL */
    uint64_t duration;  /* ban, mute: seconds, 0 = until lifted */
};

/* What a room's moderation state holds, as load_moderation hands it out (rules 58, 59, 63). */
enum store_mod_kind { STORE_MOD_OWNER, STORE_MOD_TOPIC, STORE_MOD_OP, STORE_MOD_BAN, STORE_MOD_MUTE };

/* One item of a room's moderation state: the owner's or an op's lower-case name, the topic
 * text, or a ban or mute (lower-case name, until = ms since the epoch, 0 = until lifted). */
typedef void (*store_mod_cb)(void *arg, const char *room, enum store_mod_kind kind,
                             const char *value, int64_t until);

/* A message as the checks of rules 50-54 need it. */
struct store_target {
    int64_t ts;
    bool deleted;
    char identity[STORE_IDENTITY_MAX];
    char from[STORE_NAME_MAX + 1];
};

/* A reaction standing on a message: emoji, who holds it (identity, and name as shown). */
typedef void (*store_reaction_cb)(void *arg, const char *emoji, const char *identity,
                                  const char *user);

struct store_user {
    char name[STORE_NAME_MAX + 1]; /* as first registered */
    char pwhash[STORE_PWHASH_MAX]; /* argon2id string from crypto_pwhash_str */
    int64_t created_ms;
};

struct store_token {
    char user[STORE_NAME_MAX + 1]; /* the name as registered, or the guest's name */
    bool guest;
    uint64_t guest_session; /* guests: which guest session the token belongs to */
    int64_t expires_ms;
};

typedef void (*store_room_cb)(void *arg, const char *room, uint64_t last_seq, int64_t created_ms);
typedef void (*store_msg_cb)(void *arg, const struct store_msg *m);
typedef void (*store_user_cb)(void *arg, const char *name, int64_t created_ms);
/* A row of the search index: the message it stands for and its key in the scan's order. The
 * room string lives only during the call. Returns false to end the scan. */
typedef bool (*store_search_cb)(void *arg, uint64_t rowid, const char *room, uint64_t seq,
                                int64_t ts);
/* A saved room with the account's read marker in it (0: never set), and on a database other
 * nodes write too, the room's latest seq as read with it (else 0: the store thread's table of
 * rooms, which sees every write, has it). */
typedef void (*store_saved_cb)(void *arg, const char *room, uint64_t marker, uint64_t latest);

/* A check a batch will make (store_ops.room_seqs' keys): the cid of identity in room (cid NULL:
 * none asked), and whether muted_lc is muted in room (NULL: not asked). */
struct store_lookup {
    const char *room;
    const char *identity;
    const char *cid;
    const char *muted_lc;
};

struct store_ops {
    void (*close)(struct store *s);
    /*
     * Makes a store opened in standby (store_sqlite_options.standby) ready for writes, now that
     * this process is the only one writing: migrates the schema if it must. A no-op on a store
     * opened normally. Returns 0 or an error (logged).
     */
    int (*take_over)(struct store *s);
    /* Every room with its latest seq (0 if it has no messages), dm rooms included. */
    int (*load_rooms)(struct store *s, store_room_cb each, void *arg);
    /* The dm rooms of which account (a registered user's lower-case name) is a party, each with
     * its latest seq and created_ms: what welcome lists (rule 68) on a database other nodes
     * write too. One query, whatever the number of rooms. NULL: this process is the database's
     * only writer (SQLite), so the store thread's table of rooms (load_rooms and its own
     * writes) already holds them. */
    int (*dm_rooms)(struct store *s, const char *account, store_room_cb each, void *arg);
    /* dm_rooms for each of accounts[0..n) in one query, each room once (a node's users after a
     * reconnect to the broker). NULL with dm_rooms. */
    int (*dm_rooms_of)(struct store *s, const char *const *accounts, size_t n, store_room_cb each,
                       void *arg);
    /* Every registered user (for the hub's name checks at start-up). */
    int (*load_users)(struct store *s, store_user_cb each, void *arg);

    /* A write batch: begin, any number of find_cid / insert / room_create, commit or rollback. */
    int (*begin)(struct store *s);
    /* Finds an event of `room` stored by identity (any case) with cid; 0 and *seq, or -ENOENT. */
    int (*find_cid)(struct store *s, const char *room, const char *identity, const char *cid,
                    uint64_t *seq);
    /*
     * Stores the event m (its seq already assigned by the caller: the room's last + 1) and the
     * state it changes, atomically: an edit replaces its message's text, mentions and edited
     * time and blanks the older edits' texts; a delete erases the message's text, mentions and
     * reply_to, its edits' texts and its reactions; a reaction adds or takes back one.
     */
    int (*insert)(struct store *s, const struct store_msg *m);
    /* The message (type message) of room at seq: 0 and *out, or -ENOENT (none, or trimmed). */
    int (*message_get)(struct store *s, const char *room, uint64_t seq, struct store_target *out);
    /* Reactions on room's message target: whether identity holds emoji, whether anybody does,
     * and how many distinct emoji stand on it. */
    int (*reaction_state)(struct store *s, const char *room, uint64_t target, const char *emoji,
                          const char *identity, bool *held, bool *present, unsigned *distinct);
    /* Every reaction standing on room's message target, oldest first. */
    int (*reactions)(struct store *s, const char *room, uint64_t target, store_reaction_cb each,
                     void *arg);
    /* Message seq of room and every event that targets it, in seq order (read forms). */
    int (*read_target)(struct store *s, const char *room, uint64_t seq, store_msg_cb each,
                       void *arg);
    /* The newest `limit` messages (type message) of room with seq < before and ts >= min_ts, in
     * their current state, ascending; deleted ones only with with_deleted. Returns how many, or
     * an error. Each must not read. */
    int (*history)(struct store *s, const char *room, uint64_t before, int64_t min_ts,
                   unsigned limit, bool with_deleted, store_msg_cb each, void *arg);
    /* The newest message of room stored by identity and not deleted: 0 and *seq, or -ENOENT. */
    int (*newest_own)(struct store *s, const char *room, const char *identity, uint64_t *seq);
    /* The first message of room after seq `after`: 0 and *seq, or -ENOENT. */
    int (*next_message)(struct store *s, const char *room, uint64_t after, uint64_t *seq);
    /* The seq of room's keep-th newest message: 0 and *seq, or -ENOENT when it has fewer. */
    int (*retention_cut)(struct store *s, const char *room, uint64_t keep, uint64_t *seq);
    /* Rule 51: the events and reactions of identity `guest` outside dm rooms become the
     * account's (identity `account`, shown as name). */
    int (*claim_guest)(struct store *s, const char *guest, const char *account, const char *name);
    /*
     * Search (protocol 1.1 rules 71, 72): the index rows matching match (an FTS5 MATCH
     * expression of folded terms, search_text.h; the index's columns are `words` and `rkey`, the
     * room name's words) with rowid <= from, by descending rowid (newest first: rowids follow
     * the store's clock), until each returns false or none is left.
     */
    int (*search)(struct store *s, const char *match, uint64_t from, store_search_cb each,
                  void *arg);
    /* The message of room at seq, if it is not deleted, in its current state (as history's):
     * passed to each. Returns how many (0 or 1), or an error. */
    int (*search_message)(struct store *s, const char *room, uint64_t seq, store_msg_cb each,
                          void *arg);
    /*
     * Optional (NULL: the backend indexes each message in its batch). The search index trails
     * the commits: search_backlog says how many stored messages it still lacks (or returns an
     * error); search_catch_up indexes them in a transaction of its own, between batches (-EBUSY
     * inside one). search sees only what was caught up, so catch up first. A
     * catch-up takes each message as it stands then: edited, or left out if deleted or trimmed.
     */
    int64_t (*search_backlog)(struct store *s);
    int (*search_catch_up)(struct store *s);
    /* One bounded step of merging the search index's segments, so deleted rows leave its
     * pages (erasure, rules 52, 53); *more whether a step is still needed. */
    int (*search_merge)(struct store *s, bool *more);
    /* Truncates the WAL after erasures (rule 53: old texts leave the log too). */
    int (*checkpoint)(struct store *s);
    /* Records a room (idempotent), so it is listed and kept even without messages; owner_lc:
     * the registered user whose join created it (rule 59), or NULL. */
    int (*room_create)(struct store *s, const char *room, int64_t created_ms, const char *owner_lc);
    /* Room's owner (lower-case, "" when none) into owner[STORE_NAME_MAX + 1]; -ENOENT when the
     * room has no row. */
    int (*room_owner)(struct store *s, const char *room, char *owner);
    /* Inside a batch: takes the server-wide room count's lock until the batch ends (a room's
     * creation decides under it: rule 74) and counts the public rooms (not "dm:"), `always`
     * included whether it has a row or not. */
    int (*room_count)(struct store *s, const char *always, uint64_t *n);
    /* Every room's owner and topic, ops, bans and mutes (bans and mutes expired by now_ms left
     * out), for the hub at start-up. */
    int (*load_moderation)(struct store *s, int64_t now_ms, store_mod_cb each, void *arg);
    /* Room's owner (lower-case, "" when none) into owner[STORE_NAME_MAX + 1], and whether
     * name_lc is an op there. */
    int (*room_roles)(struct store *s, const char *room, const char *name_lc, char *owner,
                      bool *op);
    /* Whether name_lc is banned (kind STORE_MOD_BAN) or muted (STORE_MOD_MUTE) in room at
     * now_ms: 0 and *until (0 = until lifted), or -ENOENT. */
    int (*restriction)(struct store *s, const char *room, enum store_mod_kind kind,
                       const char *name_lc, int64_t now_ms, int64_t *until);
    /* Deletes the events of room with seq <= upto, and the reactions on them (retention). */
    int (*trim)(struct store *s, const char *room, uint64_t upto);
    int (*commit)(struct store *s);
    void (*rollback)(struct store *s);

    /*
     * Reads committed messages of room with after < seq < before (before = 0:
     * no upper bound) and ts >= min_ts, at most limit of them. newest=false
     * gives the oldest such messages, newest=true the newest; either way they
     * are passed to each in ascending seq order. Returns how many, or an error.
     */
    int (*read)(struct store *s, const char *room, uint64_t after, uint64_t before, int64_t min_ts,
                unsigned limit, bool newest, store_msg_cb each, void *arg);
    /* The lowest seq still stored in room (retention may have removed older ones), 0 if none. */
    int (*first_seq)(struct store *s, const char *room, uint64_t *seq);

    /* Creates a user; -EEXIST if the name is taken in any letter case. */
    int (*user_create)(struct store *s, const char *name, const char *pwhash, int64_t created_ms);
    /* Finds a user by name in any letter case; -ENOENT if none. */
    int (*user_get)(struct store *s, const char *name, struct store_user *out);

    /* Stores a token under its SHA-256 hash. */
    int (*token_put)(struct store *s, const uint8_t hash[STORE_TOKEN_HASH],
                     const struct store_token *t);
    /* Finds an unexpired token (expires_ms > now_ms); -ENOENT if unknown or expired. */
    int (*token_get)(struct store *s, const uint8_t hash[STORE_TOKEN_HASH], int64_t now_ms,
                     struct store_token *out);
    /* Deletes every guest token of a name (any case): the name was registered or reclaimed. */
    int (*token_drop_guest)(struct store *s, const char *name);
    /* Deletes tokens with expires_ms <= now_ms. */
    int (*token_expire)(struct store *s, int64_t now_ms);

    /*
     * Read markers and saved rooms (protocol 1.1 rules 66-68). `account` is a registered user's
     * lower-case name. Markers outlive leave, kick and ban; saved rooms do not. Writes belong in
     * a batch like every other.
     */
    /* The marker of account in room: 0 and *seq, or -ENOENT when none was ever set. */
    int (*marker_get)(struct store *s, const char *account, const char *room, uint64_t *seq);
    /* Sets the marker to the larger of itself and seq; with only_new, only if none exists. */
    int (*marker_raise)(struct store *s, const char *account, const char *room, uint64_t seq,
                        bool only_new);
    int (*saved_has)(struct store *s, const char *account, const char *room, bool *saved);
    int (*saved_count)(struct store *s, const char *account, uint64_t *n);
    /* Saves room for account (saved), or forgets it: a leave, and a kick or ban of the user (in
     * the transaction that stores their event, rules 64, 67); markers stay. */
    int (*saved_set)(struct store *s, const char *account, const char *room, bool saved);
    /* The saved rooms of account in byte order of their names, each with its marker. */
    int (*saved_list)(struct store *s, const char *account, store_saved_cb each, void *arg);
    /* Rule 68: messages of room after seq `after`, stored at or after min_ts, not deleted, not
     * by account (*unread), and those of them whose current mentions hold account (*mentions),
     * each counted up to cap. */
    int (*unread)(struct store *s, const char *room, const char *account, uint64_t after,
                  int64_t min_ts, uint32_t cap, uint32_t *unread, uint32_t *mentions);
    /* The database's clock in ms since the epoch, read inside the batch (its transaction's
     * start), so nodes sharing a database stamp events and check ban and mute expiry by one
     * clock. NULL: the backend has no clock of its own (SQLite; the process's clock is used). */
    int (*clock_ms)(struct store *s, int64_t *ms);
    /* Inside a batch: takes the row lock of each of rooms[0..n) (distinct, in byte order of
     * their names, so every node locks in one order), making a row for any that has none
     * (created at the later of floor_ms and the database's clock), and reads each one's last
     * stored seq into seqs[i], which another node sharing the database may have moved. With
     * them, under those locks, it reads what the batch's checks will ask of its locked rooms
     * (keys[0..n_keys), of those rooms or of rooms locked earlier in the batch), so find_cid and
     * restriction(STORE_MOD_MUTE) answer those from memory, as the database holds them under the
     * locks, kept up to date by the batch's own writes; and with clock non-NULL, what clock_ms
     * would answer, into *clock. All of it in one round trip. NULL: this process is the
     * database's only writer (SQLite), so its own counters are right and every check asks the
     * database. */
    int (*room_seqs)(struct store *s, const char *const *rooms, size_t n, int64_t floor_ms,
                     uint64_t *seqs, const struct store_lookup *keys, size_t n_keys,
                     int64_t *clock);
};

struct store {
    const struct store_ops *ops;
};

struct store_sqlite_options {
    uint64_t max_db_bytes; /* > 0: writes that would grow the file beyond it fail with -ENOSPC */
    uint64_t check_ms;     /* time bound for PRAGMA quick_check at open; 0 skips it */
    /* Open without writing anything (another process still writes: an upgrade); take_over
     * does the writes an open would (a schema migration, the marker) once this one may. */
    bool standby;
    /* fsync the WAL at every commit (synchronous=FULL: a commit survives a power loss). Without,
     * a commit is written to the WAL file, so the operating system holds it: it survives kill -9
     * and any crash of the process (synchronous=NORMAL), for about 1 ms less per commit. */
    bool sync_full;
};

/*
 * Opens (creating if needed) the SQLite store in data_dir/parley.db: WAL
 * mode, schema created or migrated by version, a marker file beside it once
 * it holds a store. Refuses to start fresh where the marker says a database
 * was (the file missing or empty), and a database quick_check finds damaged.
 * While open, writes fail with -EIO once the file is deleted or replaced
 * under it, and what is read back is repaired to valid text (store_msg).
 * In standby, nothing is written until take_over, and a database whose schema
 * is newer than this binary's is refused here already.
 * Returns 0 and *out, or an error after logging why.
 */
int store_sqlite_open(const char *data_dir, const struct store_sqlite_options *opts,
                      struct store **out);

/*
 * Connects to the PostgreSQL database at url (a libpq connection URI), creates or migrates its
 * schema by version (under an advisory lock, so nodes starting together migrate once) and
 * prepares every statement. In standby nothing is written until take_over (which migrates if it
 * must), and a database whose schema is newer than this binary's is refused. Returns 0 and
 * *out, or an error after logging why (the URL itself is never logged: it may hold a password).
 */
int store_pg_open(const char *url, bool standby, struct store **out);

#endif
