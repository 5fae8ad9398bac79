/*
 * store: parley's durable state behind a small interface: rooms, messages,
 * accounts and login tokens. One backend per file (store_sqlite.c today;
 * PostgreSQL later), each behind `struct store_ops`.
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

struct store;

/* One stored message. Strings are NUL-terminated; text may hold '\n' and '\t'. A backend hands
 * out only valid text: a damaged row comes with its text repaired (text_repair) and a sender that
 * is not a valid name replaced by "?". */
struct store_msg {
    const char *room;
    uint64_t seq;
    int64_t ts;       /* ms since the epoch */
    const char *from; /* the sender's name as registered (or the guest's) */
    const char *text;
    size_t text_len;
    const char *cid; /* client message id, or NULL */
};

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
    /* Every registered user (for the hub's name checks at start-up). */
    int (*load_users)(struct store *s, store_user_cb each, void *arg);

    /* A write batch: begin, any number of find_cid / insert / room_create, commit or rollback. */
    int (*begin)(struct store *s);
    /* Finds a message of `room` sent by user (any case) with cid; 0 and *seq, or -ENOENT. */
    int (*find_cid)(struct store *s, const char *room, const char *user, const char *cid,
                    uint64_t *seq);
    /* Stores m (its seq already assigned by the caller: the room's last + 1). */
    int (*insert)(struct store *s, const struct store_msg *m);
    /* Records a room (idempotent), so it is listed and kept even without messages. */
    int (*room_create)(struct store *s, const char *room, int64_t created_ms);
    /* Deletes the messages of room with seq <= upto (retention). */
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

#endif
