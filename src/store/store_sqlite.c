/* store_sqlite: the SQLite backend of the store interface (one file, data_dir/parley.db). */
/*
 * DESIGN: one connection, used only by the store thread (opened with
 * SQLITE_OPEN_NOMUTEX: the thread is the lock). Every statement is prepared
 * once at open and reset after each use, so no call parses SQL and no
 * statement is left holding a read snapshot between calls.
 *
 * Durability: in WAL mode a COMMIT writes the batch to the WAL file, so once
 * it returns the operating system holds it: it survives kill -9 and any crash
 * of the process (synchronous=NORMAL, the default). With --sync full
 * (synchronous=FULL) the WAL is also fsynced at every COMMIT, so it survives a
 * power loss too. Checkpoints (the WAL copied back into the database) run on a thread and
 * connection of their own (wal_checkpointer.c), not inside a commit, except at the WAL's bound.
 * The caller acks only after commit returns 0. A failed COMMIT leaves no transaction open (we roll back),
 * so the connection is ready for the next batch. An insert is atomic on its
 * own (a savepoint around the message row and its room's last_seq), so the
 * rooms table never disagrees with the messages table, in or out of a batch.
 *
 * Another process may hold the file at the same time (a hot upgrade runs the
 * old and new binary side by side): WAL lets it read while we write, and the
 * busy timeout turns a held write lock into a short wait, then -EBUSY.
 *
 * Damage: a marker file beside the database says a store lives here, so a
 * database that went missing is refused rather than silently started afresh;
 * PRAGMA quick_check runs at open within a time bound; rows read back are
 * repaired to valid text before anyone sees them; and every batch checks that
 * the files it writes are still the ones at their paths (not deleted, not
 * replaced), before it begins and again after it commits, so nothing is
 * acknowledged into a file that the next start would not find.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "search_text.h"
#include "store_rows.h"
#include "text.h"
#include "wal_checkpointer.h"

#define BUSY_TIMEOUT_MS 2000
#define GONE_LOG_EVERY_MS 60000
#define MARKER_NAME "store.marker"
static const char marker_text[] =
    "This directory holds a parley store (parley.db). While this file is here, parley refuses to\n"
    "start if parley.db is missing or empty: restore it from a backup. To start afresh on\n"
    "purpose, delete this file.\n";

/*
 * Schema migrations: step i takes user_version i to i + 1. Append steps,
 * never edit a released one: a database is upgraded by running the steps it
 * has not seen, in order, inside one transaction.
 *
 * Names are compared through their lower-case form (name_lc, sender_lc,
 * user_lc), computed with SQL lower() at every write and lookup. Names are
 * ASCII by protocol, and for ASCII lower() is exactly ASCII case folding.
 * No foreign keys: insert maintains the room row itself and rooms are never
 * deleted, so enforcement would only cost a lookup per message.
 */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE rooms("
    " name TEXT PRIMARY KEY NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE messages("
    " room TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " ts INTEGER NOT NULL,"
    " sender TEXT NOT NULL,"
    " sender_lc TEXT NOT NULL,"
    " text TEXT NOT NULL,"
    " cid TEXT,"
    " PRIMARY KEY(room, seq)"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX messages_cid ON messages(room, sender_lc, cid) WHERE cid IS NOT NULL;"
    "CREATE TABLE users("
    " name_lc TEXT PRIMARY KEY NOT NULL,"
    " name TEXT NOT NULL,"
    " pwhash TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE tokens("
    " hash BLOB PRIMARY KEY NOT NULL,"
    " user_lc TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " guest INTEGER NOT NULL,"
    " guest_session INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX tokens_user ON tokens(user_lc);"
    "CREATE INDEX tokens_expiry ON tokens(expires_ms);",

    /* 2: protocol 1.1's timeline. Every stored event is a row of `events` (the messages table
     * renamed), keyed by (room, seq), with its type; columns a type does not use stay NULL. A
     * `message` row also holds the message's current state (text, mentions, edited_ms,
     * deleted), so history reads one row per message. `identity` is the author: a registered
     * account's lower-case name, or "guest:<session>" (no name holds ':'). Rows from 1.0 get
     * the sender's account when it existed at the time, else "guest:old:<name>", a session no
     * login can have: authorless (rule 51), and still unique per name for the cid index.
     * Later event types (topic, role, kick, ban, mute, ...) use subject (the user named),
     * detail (role, reason; a reaction's emoji) and num (duration; a reaction's on). */
    "ALTER TABLE messages RENAME TO events;"
    "ALTER TABLE events ADD COLUMN type TEXT NOT NULL DEFAULT 'message';"
    "ALTER TABLE events ADD COLUMN identity TEXT;"
    "ALTER TABLE events ADD COLUMN target INTEGER;"
    "ALTER TABLE events ADD COLUMN reply_to INTEGER;"
    "ALTER TABLE events ADD COLUMN mentions TEXT;"
    "ALTER TABLE events ADD COLUMN edited_ms INTEGER;"
    "ALTER TABLE events ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN subject TEXT;"
    "ALTER TABLE events ADD COLUMN detail TEXT;"
    "ALTER TABLE events ADD COLUMN num INTEGER;"
    "UPDATE events SET identity = CASE WHEN EXISTS(SELECT 1 FROM users u"
    " WHERE u.name_lc = events.sender_lc AND u.created_ms <= events.ts)"
    " THEN sender_lc ELSE 'guest:old:' || sender_lc END;"
    "DROP INDEX messages_cid;"
    "CREATE UNIQUE INDEX events_cid ON events(room, identity, cid) WHERE cid IS NOT NULL;"
    "CREATE INDEX events_target ON events(room, target) WHERE target IS NOT NULL;"
    /* Rule 51's takeover finds a guest session's rows: only guests' rows are indexed, so an
     * account's message costs no entry here. */
    "CREATE INDEX events_guest ON events(identity)"
    " WHERE identity >= 'guest:' AND identity < 'guest;';"
    /* Reactions standing now: one row per (message, emoji, identity), with the seq that added
     * it (emoji order and the users' order, rule 56). */
    "CREATE TABLE reactions("
    " room TEXT NOT NULL,"
    " target INTEGER NOT NULL,"
    " emoji TEXT NOT NULL,"
    " identity TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " PRIMARY KEY(room, target, emoji, identity)"
    ") WITHOUT ROWID;"
    "CREATE INDEX reactions_order ON reactions(room, target, seq);"
    /* Who the current texts mention, so a user's mentions after a read marker are an index
     * range count. Kept by insert with the messages' state. */
    "CREATE TABLE mentions("
    " room TEXT NOT NULL,"
    " user_lc TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " PRIMARY KEY(room, user_lc, seq)"
    ") WITHOUT ROWID;"
    "CREATE INDEX mentions_seq ON mentions(room, seq);",

    /* search: protocol 1.1's full-text index (rules 71, 72). search_rows has one row per message
     * that is not deleted: its rid, room, seq and ts. search_index (FTS5, contentless: the words
     * are not stored twice) indexes at rowid rid `words`, the current text as search_text_index
     * folds it, and `rkey`, the room name (its words: a search in one room is an index lookup
     * too). Rids follow the store's order: ascending rid is ascending ts (the store's clock never
     * goes back), so a scan by descending rowid meets the newest first. Existing messages are
     * indexed here, ties of one ts numbered in the order a descending scan wants them (room
     * descending, seq ascending). A contentless row is taken out with FTS5's 'delete' and the
     * words it was indexed with: the events row's text, still unchanged at that point.
     * parley_search_words is registered on the connection before migrating. */
    "CREATE VIRTUAL TABLE search_index USING fts5(words, rkey, content = '',"
    " tokenize = \"unicode61 remove_diacritics 0 categories 'L* M* N*'\");"
    "CREATE TABLE search_rows("
    " rid INTEGER PRIMARY KEY,"
    " room TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " ts INTEGER NOT NULL"
    ");"
    "CREATE UNIQUE INDEX search_rows_msg ON search_rows(room, seq);"
    "INSERT INTO search_rows(rid, room, seq, ts)"
    " SELECT row_number() OVER (ORDER BY ts, room DESC, seq), room, seq, ts FROM events"
    " WHERE type = 'message' AND deleted = 0;"
    "INSERT INTO search_index(rowid, words, rkey)"
    " SELECT r.rid, parley_search_words(e.text), r.room FROM search_rows r"
    " JOIN events e ON e.room = r.room AND e.seq = r.seq;",
    /* read: protocol 1.1's read markers and saved rooms (rules 66-68). A marker is (account,
     * room) -> seq, the account its lower-case name; it outlives leave, kick and ban, so it sits
     * apart from the saved rooms, (account, room), which those forget. */
    "CREATE TABLE read_markers("
    " account TEXT NOT NULL,"
    " room TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " PRIMARY KEY(account, room)"
    ") WITHOUT ROWID;"
    "CREATE TABLE saved_rooms("
    " account TEXT NOT NULL,"
    " room TEXT NOT NULL,"
    " PRIMARY KEY(account, room)"
    ") WITHOUT ROWID;",
    /* mod: topic, roles, moderation (rules 58-65). A public room's owner (lower-case name,
     * NULL for none: general and rooms made before this step) and topic ('' = none) live on its
     * row; ops, bans and mutes in tables of their own, keyed by (room, lower-case name). A ban's
     * or mute's until_ms is when it ends (the event's ts + 1000 x duration), 0 until lifted;
     * expired rows are simply not read, and a new ban or mute replaces the row. Retention never
     * touches these tables. */
    "ALTER TABLE rooms ADD COLUMN owner TEXT;"
    "ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE room_ops("
    " room TEXT NOT NULL,"
    " name_lc TEXT NOT NULL,"
    " PRIMARY KEY(room, name_lc)"
    ") WITHOUT ROWID;"
    "CREATE TABLE room_bans("
    " room TEXT NOT NULL,"
    " name_lc TEXT NOT NULL,"
    " until_ms INTEGER NOT NULL,"
    " PRIMARY KEY(room, name_lc)"
    ") WITHOUT ROWID;"
    "CREATE TABLE room_mutes("
    " room TEXT NOT NULL,"
    " name_lc TEXT NOT NULL,"
    " until_ms INTEGER NOT NULL,"
    " PRIMARY KEY(room, name_lc)"
    ") WITHOUT ROWID;",

    /* guest_spans: rule 51's takeover finds a guest session's rows through the seqs it wrote
     * in each room, first and last, one row per (session, room), in place of an index entry per
     * guest event. That index put every message of a room where guests talk on a page of its
     * own sender's (30 messages from 30 guests: some 25 pages a commit, most of what it wrote);
     * the spans of the guests talking now share a page or two, and a message that is not a
     * session's first in its room only rewrites its span's last seq. The takeover then reads
     * the room's events between them, by primary key. */
    "CREATE TABLE guest_spans("
    " identity TEXT NOT NULL,"
    " room TEXT NOT NULL,"
    " first_seq INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL,"
    " PRIMARY KEY(identity, room)"
    ") WITHOUT ROWID;"
    "INSERT INTO guest_spans(identity, room, first_seq, last_seq)"
    " SELECT identity, room, min(seq), max(seq) FROM events"
    " WHERE identity >= 'guest:' AND identity < 'guest;' GROUP BY identity, room;"
    "DROP INDEX events_guest;",
    /* search_later: a message's words reach the search index after its commit, many messages'
     * at a time (search_catch_up), which costs FTS5 one segment per catch-up instead of one
     * per commit: indexing was half of what a commit wrote and took. search_backlog holds the
     * messages stored and not yet indexed, as one seq range per room and batch (the range's
     * other events are not messages, and are passed over), written in the messages' own
     * transaction, so a crash loses none of them from the index: the next catch-up takes them. */
    "CREATE TABLE search_backlog("
    " room TEXT NOT NULL,"
    " first_seq INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL,"
    " PRIMARY KEY(room, first_seq)"
    ") WITHOUT ROWID;",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

enum stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_LOAD_ROOMS,
    ST_LOAD_USERS,
    ST_FIND_CID,
    ST_INSERT_MSG,
    ST_ROOM_SEQ,
    ST_ROOM_CREATE,
    ST_TRIM,
    ST_READ_OLDEST,
    ST_READ_NEWEST,
    ST_FIRST_SEQ,
    ST_USER_CREATE,
    ST_USER_GET,
    ST_TOKEN_PUT,
    ST_TOKEN_GET,
    ST_TOKEN_DROP_GUEST,
    ST_TOKEN_EXPIRE,
    ST_MSG_GET,
    ST_REACT_HELD,
    ST_REACT_EMOJI,
    ST_REACT_DISTINCT,
    ST_REACT_ADD,
    ST_REACT_DROP,
    ST_REACTIONS_OF,
    ST_EDIT_BLANK,
    ST_EDIT_APPLY,
    ST_DELETE_MSG,
    ST_DELETE_DEPS,
    ST_DELETE_REACTIONS,
    ST_HISTORY,
    ST_READ_TARGET,
    ST_RETENTION_CUT,
    ST_TRIM_REACTIONS,
    ST_CLAIM_EVENTS,
    ST_CLAIM_REACTIONS,
    ST_CLAIM_SPANS,
    ST_GUEST_SPAN,
    ST_NEWEST_OWN,
    ST_MENTION_ADD,
    ST_MENTION_CLEAR,
    ST_TRIM_MENTIONS,
    ST_NEXT_MESSAGE,
    ST_SEARCH_LAST,
    ST_SEARCH_UNINDEX,
    ST_SEARCH_EDIT,
    ST_SEARCH_DROP_ROW,
    ST_SEARCH_TRIM,
    ST_SEARCH_TRIM_ROWS,
    ST_SEARCH_SCAN,
    ST_SEARCH_MSG,
    ST_SEARCH_MERGE,
    ST_BACKLOG_ADD,
    ST_BACKLOG_COUNT,
    ST_CATCH_UP_ROWS,
    ST_CATCH_UP_WORDS,
    ST_CATCH_UP_DONE,
    /* read markers and saved rooms */
    ST_MARKER_GET,
    ST_MARKER_RAISE,
    ST_MARKER_INIT,
    ST_SAVED_HAS,
    ST_SAVED_COUNT,
    ST_SAVED_ADD,
    ST_SAVED_DROP,
    ST_SAVED_LIST,
    ST_UNREAD,
    ST_UNREAD_MENTIONS,
    ST_TOPIC_SET,
    ST_OP_ADD,
    ST_OP_DROP,
    ST_OWNER_OLD_TO_OP,
    ST_OWNER_SET,
    ST_BAN_SET,
    ST_BAN_DROP,
    ST_MUTE_SET,
    ST_MUTE_DROP,
    ST_ROOM_OWNER,
    ST_IS_OP,
    ST_BAN_GET,
    ST_MUTE_GET,
    ST_LOAD_META,
    ST_LOAD_OPS,
    ST_LOAD_BANS,
    ST_LOAD_MUTES,
    ST_ROOM_COUNT,
    ST_COUNT
};

/* An event row as read back: the event, and for an edit or reaction whether its target message
 * is deleted now (replay forms, rule 48). */
#define EVENT_COLS                                                                                 \
    "e.seq, e.ts, e.sender, e.text, e.cid, e.type, e.target, e.reply_to, e.mentions, e.edited_ms," \
    " e.deleted, e.detail, e.num, t.deleted, t.sender, e.subject"
#define EVENT_FROM "events e LEFT JOIN events t ON t.room = e.room AND t.seq = e.target"
#define READ_WHERE "e.room = ?1 AND e.seq > ?2 AND e.seq < ?3 AND e.ts >= ?4"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT store_insert",
    [ST_RELEASE] = "RELEASE store_insert",
    [ST_LOAD_ROOMS] = "SELECT name, last_seq, created_ms FROM rooms",
    [ST_LOAD_USERS] = "SELECT name, created_ms FROM users",
    [ST_FIND_CID] = "SELECT seq FROM events WHERE room = ?1 AND identity = lower(?2) AND cid = ?3",
    [ST_INSERT_MSG] =
        "INSERT INTO events(room, seq, ts, sender, sender_lc, text, cid, type, identity, target,"
        " reply_to, mentions, detail, num, subject)"
        " VALUES(?1, ?2, ?3, ?4, lower(?4), ?5, ?6, ?7, COALESCE(?8, lower(?4)), ?9, ?10, ?11,"
        " ?12, ?13, ?14)",
    /* MAX: last_seq never moves back, whatever order a batch inserts in. */
    [ST_ROOM_SEQ] = "INSERT INTO rooms(name, created_ms, last_seq) VALUES(?1, ?2, ?3)"
                    " ON CONFLICT(name) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
    [ST_ROOM_CREATE] = "INSERT OR IGNORE INTO rooms(name, created_ms, last_seq, owner)"
                       " VALUES(?1, ?2, 0, ?3)",
    [ST_TRIM] = "DELETE FROM events WHERE room = ?1 AND seq <= ?2",
    [ST_READ_OLDEST] =
        "SELECT " EVENT_COLS " FROM " EVENT_FROM " WHERE " READ_WHERE " ORDER BY e.seq LIMIT ?5",
    /* The newest `limit`, still handed out oldest first. */
    [ST_READ_NEWEST] = "SELECT * FROM (SELECT " EVENT_COLS " FROM " EVENT_FROM " WHERE " READ_WHERE
                       " ORDER BY e.seq DESC LIMIT ?5) ORDER BY 1",
    [ST_FIRST_SEQ] = "SELECT MIN(seq) FROM events WHERE room = ?1",
    [ST_USER_CREATE] = "INSERT INTO users(name_lc, name, pwhash, created_ms)"
                       " VALUES(lower(?1), ?1, ?2, ?3)",
    [ST_USER_GET] = "SELECT name, pwhash, created_ms FROM users WHERE name_lc = lower(?1)",
    [ST_TOKEN_PUT] = "INSERT OR REPLACE INTO tokens(hash, user_lc, user, guest, guest_session,"
                     " expires_ms) VALUES(?1, lower(?2), ?2, ?3, ?4, ?5)",
    [ST_TOKEN_GET] = "SELECT user, guest, guest_session, expires_ms FROM tokens"
                     " WHERE hash = ?1 AND expires_ms > ?2",
    [ST_TOKEN_DROP_GUEST] = "DELETE FROM tokens WHERE user_lc = lower(?1) AND guest <> 0",
    [ST_TOKEN_EXPIRE] = "DELETE FROM tokens WHERE expires_ms <= ?1",
    [ST_MSG_GET] = "SELECT ts, deleted, identity, sender FROM events"
                   " WHERE room = ?1 AND seq = ?2 AND type = 'message'",
    [ST_REACT_HELD] = "SELECT 1 FROM reactions"
                      " WHERE room = ?1 AND target = ?2 AND emoji = ?3 AND identity = ?4",
    [ST_REACT_EMOJI] = "SELECT 1 FROM reactions WHERE room = ?1 AND target = ?2 AND emoji = ?3"
                       " LIMIT 1",
    [ST_REACT_DISTINCT] = "SELECT COUNT(DISTINCT emoji) FROM reactions"
                          " WHERE room = ?1 AND target = ?2",
    [ST_REACT_ADD] = "INSERT OR IGNORE INTO reactions(room, target, emoji, identity, user, seq)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_REACT_DROP] = "DELETE FROM reactions"
                      " WHERE room = ?1 AND target = ?2 AND emoji = ?3 AND identity = ?4",
    [ST_REACTIONS_OF] = "SELECT emoji, identity, user FROM reactions"
                        " WHERE room = ?1 AND target = ?2 ORDER BY seq",
    /* An edit supersedes the text before it (rule 52): the older edits' texts are blanked. */
    [ST_EDIT_BLANK] = "UPDATE events SET text = '', mentions = NULL"
                      " WHERE room = ?1 AND target = ?2 AND type = 'edit' AND seq < ?3",
    [ST_EDIT_APPLY] = "UPDATE events SET text = ?3, mentions = ?4, edited_ms = ?5"
                      " WHERE room = ?1 AND seq = ?2 AND type = 'message'",
    /* Erasure (rule 53): the message's text, mentions and reply_to, its edits' texts and its
     * reactions' emoji are overwritten in place (secure_delete zeroes the freed bytes). */
    [ST_DELETE_MSG] = "UPDATE events SET text = '', mentions = NULL, reply_to = NULL, deleted = 1"
                      " WHERE room = ?1 AND seq = ?2 AND type = 'message'",
    [ST_DELETE_DEPS] = "UPDATE events SET text = '', mentions = NULL, detail = NULL"
                       " WHERE room = ?1 AND target = ?2 AND type IN ('edit', 'reaction')",
    [ST_DELETE_REACTIONS] = "DELETE FROM reactions WHERE room = ?1 AND target = ?2",
    [ST_HISTORY] = "SELECT * FROM (SELECT " EVENT_COLS " FROM " EVENT_FROM
                   " WHERE e.room = ?1 AND e.type = 'message' AND e.seq < ?2 AND e.ts >= ?3"
                   " AND e.deleted <= ?5 ORDER BY e.seq DESC LIMIT ?4) ORDER BY 1",
    [ST_READ_TARGET] = "SELECT " EVENT_COLS " FROM " EVENT_FROM
                       " WHERE e.room = ?1 AND (e.seq = ?2 OR e.target = ?2) ORDER BY e.seq",
    /* The seq of the room's keep-th newest message: retention keeps it and all after it. */
    [ST_RETENTION_CUT] = "SELECT seq FROM events WHERE room = ?1 AND type = 'message'"
                         " ORDER BY seq DESC LIMIT 1 OFFSET ?2",
    [ST_TRIM_REACTIONS] = "DELETE FROM reactions WHERE room = ?1 AND target <= ?2",
    /* Rule 51: a guest session that registers its name hands its events and reactions to the
     * account, except in dm rooms (rule 40). */
    /* The guest's rows, found between the first and last seq of each of its spans. */
    [ST_CLAIM_EVENTS] = "UPDATE events SET identity = ?2, sender = ?3, sender_lc = lower(?3)"
                        " WHERE (room, seq) IN (SELECT e.room, e.seq FROM guest_spans g"
                        " JOIN events e ON e.room = g.room"
                        " AND e.seq BETWEEN g.first_seq AND g.last_seq"
                        " WHERE g.identity = ?1 AND e.identity = ?1)"
                        " AND identity = ?1 AND identity >= 'guest:' AND identity < 'guest;'"
                        " AND room NOT LIKE 'dm:%'",
    [ST_MENTION_ADD] =
        "INSERT OR IGNORE INTO mentions(room, user_lc, seq) VALUES(?1, lower(?3), ?2)",
    [ST_MENTION_CLEAR] = "DELETE FROM mentions WHERE room = ?1 AND seq = ?2",
    [ST_TRIM_MENTIONS] = "DELETE FROM mentions WHERE room = ?1 AND seq <= ?2",
    [ST_NEXT_MESSAGE] = "SELECT MIN(seq) FROM events WHERE room = ?1 AND type = 'message'"
                        " AND seq > ?2",
    /* Backwards from the newest: the user's latest message is usually among the last ones. */
    [ST_NEWEST_OWN] = "SELECT seq FROM events WHERE room = ?1 AND identity = ?2"
                      " AND type = 'message' AND deleted = 0 ORDER BY seq DESC LIMIT 1",
    [ST_CLAIM_REACTIONS] = "UPDATE reactions SET identity = ?2, user = ?3"
                           " WHERE identity = ?1 AND room NOT LIKE 'dm:%'",
    /* Its dm rooms' rows stay the guest's: their spans stay too. */
    [ST_CLAIM_SPANS] = "DELETE FROM guest_spans WHERE identity = ?1 AND room NOT LIKE 'dm:%'",
    /* ?1 room, ?2 first seq, ?3 last seq, ?4 identity (write_span). */
    [ST_GUEST_SPAN] = "INSERT INTO guest_spans(identity, room, first_seq, last_seq)"
                      " VALUES(?4, ?1, ?2, ?3) ON CONFLICT(identity, room)"
                      " DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
    /* The search index (the search step of migrations[]): a new message's row, the words a row
     * was indexed with taken out (before its text changes: an edit, a delete, retention), an
     * edit's new words, the scan. */
    [ST_SEARCH_LAST] = "SELECT COALESCE(MAX(rid), 0) FROM search_rows",
    [ST_SEARCH_UNINDEX] =
        "INSERT INTO search_index(search_index, rowid, words, rkey)"
        " SELECT 'delete', r.rid, parley_search_words(e.text), r.room FROM search_rows r"
        " JOIN events e ON e.room = r.room AND e.seq = r.seq AND e.type = 'message'"
        " WHERE r.room = ?1 AND r.seq = ?2",
    [ST_SEARCH_EDIT] = "INSERT INTO search_index(rowid, words, rkey)"
                       " SELECT rid, parley_search_words(?3), room FROM search_rows"
                       " WHERE room = ?1 AND seq = ?2",
    [ST_SEARCH_DROP_ROW] = "DELETE FROM search_rows WHERE room = ?1 AND seq = ?2",
    [ST_SEARCH_TRIM] =
        "INSERT INTO search_index(search_index, rowid, words, rkey)"
        " SELECT 'delete', r.rid, parley_search_words(e.text), r.room FROM search_rows r"
        " JOIN events e ON e.room = r.room AND e.seq = r.seq AND e.type = 'message'"
        " WHERE r.room = ?1 AND r.seq <= ?2",
    [ST_SEARCH_TRIM_ROWS] = "DELETE FROM search_rows WHERE room = ?1 AND seq <= ?2",
    [ST_SEARCH_SCAN] = "SELECT s.rowid, r.room, r.seq, r.ts FROM search_index s"
                       " JOIN search_rows r ON r.rid = s.rowid"
                       " WHERE search_index MATCH ?1 AND s.rowid <= ?2 ORDER BY s.rowid DESC",
    [ST_SEARCH_MSG] = "SELECT " EVENT_COLS " FROM " EVENT_FROM
                      " WHERE e.room = ?1 AND e.seq = ?2 AND e.type = 'message' AND e.deleted = 0",
    /* Merges the index's segments a bounded number of pages at a time (a negative count merges
     * toward one segment, as 'optimize' does at once), so deleted rows leave it (erasure). */
    [ST_SEARCH_MERGE] = "INSERT INTO search_index(search_index, rank) VALUES('merge', -64)",
    /* The backlog (the search_later step of migrations[]): a message stored and not yet
     * indexed; a catch-up gives its messages rows numbered in the store's order (ties of one ts
     * as the migration numbers them), their words in rowid order, and empties it. CROSS JOIN:
     * the few backlog rows lead, each a primary key range in events (the planner, knowing no
     * sizes, would scan events and look each up in the backlog). */
    [ST_BACKLOG_ADD] = "INSERT INTO search_backlog(room, first_seq, last_seq) VALUES(?1, ?2, ?3)",
    [ST_BACKLOG_COUNT] = "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM search_backlog",
    [ST_CATCH_UP_ROWS] =
        "INSERT INTO search_rows(rid, room, seq, ts)"
        " SELECT ?1 + row_number() OVER (ORDER BY e.ts, e.room DESC, e.seq), e.room, e.seq, e.ts"
        " FROM search_backlog b CROSS JOIN events e"
        " ON e.room = b.room AND e.seq BETWEEN b.first_seq AND b.last_seq"
        " WHERE e.type = 'message' AND e.deleted = 0",
    [ST_CATCH_UP_WORDS] = "INSERT INTO search_index(rowid, words, rkey)"
                          " SELECT r.rid, parley_search_words(e.text), r.room FROM search_rows r"
                          " JOIN events e ON e.room = r.room AND e.seq = r.seq"
                          " WHERE r.rid > ?1 ORDER BY r.rid",
    [ST_CATCH_UP_DONE] = "DELETE FROM search_backlog",
    [ST_MARKER_GET] = "SELECT seq FROM read_markers WHERE account = ?1 AND room = ?2",
    /* MAX: a marker never moves back (rule 66). */
    [ST_MARKER_RAISE] = "INSERT INTO read_markers(account, room, seq) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT(account, room) DO UPDATE SET seq = MAX(seq, excluded.seq)",
    [ST_MARKER_INIT] = "INSERT OR IGNORE INTO read_markers(account, room, seq) VALUES(?1, ?2, ?3)",
    [ST_SAVED_HAS] = "SELECT 1 FROM saved_rooms WHERE account = ?1 AND room = ?2",
    [ST_SAVED_COUNT] = "SELECT COUNT(*) FROM saved_rooms WHERE account = ?1",
    [ST_SAVED_ADD] = "INSERT OR IGNORE INTO saved_rooms(account, room) VALUES(?1, ?2)",
    [ST_SAVED_DROP] = "DELETE FROM saved_rooms WHERE account = ?1 AND room = ?2",
    [ST_SAVED_LIST] = "SELECT s.room, COALESCE(m.seq, 0) FROM saved_rooms s"
                      " LEFT JOIN read_markers m ON m.account = s.account AND m.room = s.room"
                      " WHERE s.account = ?1 ORDER BY s.room",
    /* Rule 68's counts: a range of the primary key (room, seq) after the marker, and of the
     * mentions index (room, user_lc, seq), each stopped at ?5 rows. */
    [ST_UNREAD] = "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room = ?1 AND seq > ?2"
                  " AND type = 'message' AND deleted = 0 AND identity <> ?3 AND ts >= ?4"
                  " LIMIT ?5)",
    [ST_UNREAD_MENTIONS] =
        "SELECT COUNT(*) FROM (SELECT 1 FROM mentions m JOIN events e"
        " ON e.room = m.room AND e.seq = m.seq WHERE m.room = ?1 AND m.user_lc = ?3"
        " AND m.seq > ?2 AND e.identity <> ?3 AND e.ts >= ?4 AND e.deleted = 0 LIMIT ?5)",
    /* Topic and moderation state (rules 58-65), written with their events: ?1 room, ?2 a name
     * (or the topic), ?3 a time. */
    [ST_TOPIC_SET] = "INSERT INTO rooms(name, created_ms, last_seq, topic) VALUES(?1, ?3, 0, ?2)"
                     " ON CONFLICT(name) DO UPDATE SET topic = excluded.topic",
    [ST_OP_ADD] = "INSERT OR IGNORE INTO room_ops(room, name_lc) VALUES(?1, lower(?2))",
    [ST_OP_DROP] = "DELETE FROM room_ops WHERE room = ?1 AND name_lc = lower(?2)",
    /* role owner: the previous owner, if any and another, becomes an op (rule 62). */
    [ST_OWNER_OLD_TO_OP] = "INSERT OR IGNORE INTO room_ops(room, name_lc) SELECT name, owner"
                           " FROM rooms WHERE name = ?1 AND owner IS NOT NULL"
                           " AND owner <> lower(?2)",
    [ST_OWNER_SET] = "INSERT INTO rooms(name, created_ms, last_seq, owner)"
                     " VALUES(?1, ?3, 0, lower(?2))"
                     " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner",
    [ST_BAN_SET] = "INSERT OR REPLACE INTO room_bans(room, name_lc, until_ms)"
                   " VALUES(?1, lower(?2), ?3)",
    [ST_BAN_DROP] = "DELETE FROM room_bans WHERE room = ?1 AND name_lc = lower(?2)",
    [ST_MUTE_SET] = "INSERT OR REPLACE INTO room_mutes(room, name_lc, until_ms)"
                    " VALUES(?1, lower(?2), ?3)",
    [ST_MUTE_DROP] = "DELETE FROM room_mutes WHERE room = ?1 AND name_lc = lower(?2)",
    [ST_ROOM_OWNER] = "SELECT COALESCE(owner, '') FROM rooms WHERE name = ?1",
    /* The public rooms, ?1 counted whether it has a row or not. */
    [ST_ROOM_COUNT] = "SELECT COUNT(*) + NOT EXISTS(SELECT 1 FROM rooms WHERE name = ?1)"
                      " FROM rooms WHERE name NOT LIKE 'dm:%'",
    [ST_IS_OP] = "SELECT 1 FROM room_ops WHERE room = ?1 AND name_lc = ?2",
    [ST_BAN_GET] = "SELECT until_ms FROM room_bans WHERE room = ?1 AND name_lc = ?2"
                   " AND (until_ms = 0 OR until_ms > ?3)",
    [ST_MUTE_GET] = "SELECT until_ms FROM room_mutes WHERE room = ?1 AND name_lc = ?2"
                    " AND (until_ms = 0 OR until_ms > ?3)",
    [ST_LOAD_META] = "SELECT name, owner, topic FROM rooms WHERE owner IS NOT NULL OR topic <> ''",
    [ST_LOAD_OPS] = "SELECT room, name_lc, 0 FROM room_ops",
    [ST_LOAD_BANS] = "SELECT room, name_lc, until_ms FROM room_bans"
                     " WHERE until_ms = 0 OR until_ms > ?1",
    [ST_LOAD_MUTES] = "SELECT room, name_lc, until_ms FROM room_mutes"
                      " WHERE until_ms = 0 OR until_ms > ?1",
};

/* A file the store writes, as it was at open: the path must still lead to it. */
struct watched_file {
    char *path;
    dev_t dev;
    ino_t ino;
    bool known;
};

/* How far past its size cap a trim may grow the database for the search index's delete markers. */
#define TRIM_CAP_MARGIN_PAGES 16

struct sqlite_store {
    struct store base; /* first, so a struct store * is a struct sqlite_store * */
    sqlite3 *db;
    struct watched_file main, wal;
    int main_fd;         /* the database opened once more, to see its link count drop to 0 */
    const char *gone;    /* why writes are refused until restart, or NULL */
    int64_t gone_logged; /* when that was last logged (monotonic ms) */
    sqlite3_stmt *st[ST_COUNT];
    bool batch;    /* between a successful begin and its commit or rollback */
    int batch_err; /* the error that ended the batch early (see batch_lost), or 0 */
    /* Opened in standby: take_over still has to migrate (if needed), prepare, watch the files
     * and write the marker. NULL once done. */
    char *standby_dir;
    bool prepared;
    /* The last search index rowid given (0: not read yet). Never given twice in a process, even
     * when the newest row is deleted: a search cursor is a rowid, and must not come to name a
     * newer message. */
    int64_t search_rowid;
    int64_t backlog; /* seqs in search_backlog (-1: count them again) */
    /* The open batch's tail (write_tail): per room a struct tail_room, per guest span (key
     * "identity\nroom") a struct tail_span. */
    struct map tail_rooms, tail_spans;
    int64_t cap_pages; /* --max-db-size in pages, as in force (0: no cap) */
    bool sync_full;    /* --sync full: the checkpointer's connection syncs as ours does */
    /* Checkpoints the WAL off this thread once writes may begin (NULL before, or if it could
     * not start: SQLite's automatic checkpoint then runs in our commits, as it would anyway). */
    struct wal_checkpointer *ckpt;
};

static struct sqlite_store *from_base(struct store *s)
{
    return (struct sqlite_store *)s;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void watch_file(struct watched_file *f, const char *path)
{
    struct stat st;
    f->path = xstrdup(path);
    f->known = stat(path, &st) == 0;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
}

/* Why f's path no longer leads to the file we write, or NULL while it does. */
static const char *file_gone(const struct watched_file *f, const char *deleted,
                             const char *replaced)
{
    struct stat st;
    if (!f->known)
        return NULL;
    if (stat(f->path, &st) != 0)
        return errno == ENOENT ? deleted : "the database file cannot be reached";
    return st.st_dev != f->dev || st.st_ino != f->ino ? replaced : NULL;
}

/*
 * Returns 0 while the database and its WAL are the files at their paths, else -EIO for good:
 * SQLite would go on writing into the open (deleted or replaced) files, acknowledging messages
 * the next start would never find. Logged once a minute, and /healthz turns unhealthy.
 */
static int check_files(struct sqlite_store *ss)
{
    if (!ss->gone) {
        struct stat st;
        if (ss->main_fd >= 0 && fstat(ss->main_fd, &st) == 0 && st.st_nlink == 0)
            ss->gone = "the database file was deleted";
        else if (!(ss->gone = file_gone(&ss->main, "the database file was deleted",
                                        "the database file was replaced")))
            ss->gone = file_gone(&ss->wal, "the database's WAL file was deleted",
                                 "the database's WAL file was replaced");
        if (!ss->gone)
            return 0;
        metrics_set_store_problem(ss->gone);
    }
    int64_t now = mono_ms();
    if (!ss->gone_logged || now - ss->gone_logged >= GONE_LOG_EVERY_MS) {
        char path[512];
        log_error("msg=store_file_gone path=%s error=\"%s: writes are refused until parley is "
                  "restarted on a database it can keep\"",
                  log_quote(path, sizeof path, ss->main.path, strlen(ss->main.path)), ss->gone);
        ss->gone_logged = now ? now : 1;
    }
    return -EIO;
}

/* Maps a SQLite result code to the store's errno-style codes (store.h). */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

/* Logs a failure of op with SQLite's own message; returns the mapped code. */
static int fail(sqlite3 *db, const char *op, int rc)
{
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    char quoted[512];
    log_error("msg=store_error op=%s code=%d error=%s", op, rc,
              log_quote(quoted, sizeof quoted, msg, strlen(msg)));
    metrics_engine_error(ENGINE_SQLITE);
    return map_rc(rc);
}

/* Readies a prepared statement for the next use and drops its references to bound memory. */
static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/*
 * Bind helpers: each passes an earlier failure through, so a run of binds
 * needs one check at the end. Texts are bound SQLITE_STATIC: the caller's
 * memory outlives the statement's use, which ends at done().
 */
static int bind_text(sqlite3_stmt *st, int i, const char *v, int rc)
{
    return rc != SQLITE_OK ? rc : sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static int bind_i64(sqlite3_stmt *st, int i, int64_t v, int rc)
{
    return rc != SQLITE_OK ? rc : sqlite3_bind_int64(st, i, v);
}

/* seq values are uint64_t in C and signed 64-bit in SQLite: bounds beyond are clamped. */
static int bind_seq(sqlite3_stmt *st, int i, uint64_t v, int rc)
{
    return bind_i64(st, i, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v, rc);
}

static int bind_hash(sqlite3_stmt *st, int i, const uint8_t *hash, int rc)
{
    return rc != SQLITE_OK ? rc : sqlite3_bind_blob(st, i, hash, STORE_TOKEN_HASH, SQLITE_STATIC);
}

/* Runs a statement that returns no rows; 0 or the mapped error (logged as op). */
static int run(struct sqlite_store *ss, enum stmt id, const char *op)
{
    sqlite3_stmt *st = ss->st[id];
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(ss->db, op, rc);
    done(st);
    return ret;
}

/* Copies a text column into out[size]; false if it does not fit (a damaged row). */
static bool copy_column(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!v || n >= size)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

/*
 * Some errors (SQLITE_FULL, I/O, busy) make SQLite roll the whole transaction
 * back by itself, others only the failed statement. Later statements of the
 * batch would then each commit on their own, storing messages whose batch is
 * about to fail. So the rule is simple and the same either way: after a full
 * database, a lock, or a transaction SQLite ended, every write of the batch
 * and its commit fail with that first error, until rollback. (A refused
 * single insert, such as a duplicate key, leaves the batch usable.)
 */
static int batch_lost(struct sqlite_store *ss)
{
    if (!ss->batch)
        return 0;
    if (ss->batch_err)
        return ss->batch_err;
    return sqlite3_get_autocommit(ss->db) ? -EIO : 0;
}

/* Passes ret through, remembering it if it ends the batch. */
static int note(struct sqlite_store *ss, int ret)
{
    if (ret < 0 && ss->batch && !ss->batch_err &&
        (ret == -ENOSPC || ret == -EBUSY || sqlite3_get_autocommit(ss->db)))
        ss->batch_err = ret;
    return ret;
}

static void drop_tail(struct sqlite_store *ss);
static int write_tail(struct sqlite_store *ss);

static void in_tx_rollback(struct sqlite_store *ss)
{
    /* Some errors (SQLITE_FULL, I/O, busy) may already have rolled the transaction back. */
    if (!sqlite3_get_autocommit(ss->db))
        run(ss, ST_ROLLBACK, "rollback");
    ss->backlog = -1; /* rows it counted may be gone */
    drop_tail(ss);
}

/* Runs the write statement id, its parameters bound with result bind_rc, under the batch rule. */
static int write_stmt(struct sqlite_store *ss, enum stmt id, const char *op, int bind_rc)
{
    int ret = batch_lost(ss);
    if (ret == 0 && bind_rc != SQLITE_OK)
        ret = fail(ss->db, op, bind_rc);
    if (ret != 0) {
        done(ss->st[id]);
        return ret;
    }
    return note(ss, run(ss, id, op));
}

static void sq_close(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    if (!ss)
        return;
    /* First, so that ours is the last connection of this process and checkpoints at close. */
    wal_checkpointer_stop(ss->ckpt);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(ss->st[i]);
    /* Closing rolls back an open transaction and checkpoints the WAL if we are the last user. */
    int rc = sqlite3_close(ss->db);
    if (rc != SQLITE_OK)
        fail(ss->db, "close", rc);
    if (ss->main_fd >= 0)
        close(ss->main_fd);
    free(ss->main.path);
    free(ss->wal.path);
    free(ss->standby_dir);
    drop_tail(ss);
    free(ss);
}

static int sq_load_rooms(struct store *s, store_room_cb each, void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_LOAD_ROOMS];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (store_valid_room(name, (size_t)sqlite3_column_bytes(st, 0)))
            each(arg, name, (uint64_t)sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
        else
            log_warn("msg=store_damaged_row table=rooms error=\"not a room name: skipped\"");
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "load_rooms", rc);
    done(st);
    return ret;
}

static int sq_load_users(struct store *s, store_user_cb each, void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_LOAD_USERS];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (name && text_valid_user(name, (size_t)sqlite3_column_bytes(st, 0)))
            each(arg, name, sqlite3_column_int64(st, 1));
        else
            log_warn("msg=store_damaged_row table=users error=\"not a user name: skipped\"");
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "load_users", rc);
    done(st);
    return ret;
}

static int sq_begin(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    int ret = check_files(ss);
    if (ret != 0)
        return ret;
    ret = run(ss, ST_BEGIN, "begin");
    ss->batch = ret == 0;
    ss->batch_err = 0;
    return ret;
}

static int sq_commit(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret == 0)
        ret = write_tail(ss);
    if (ret == 0)
        ret = run(ss, ST_COMMIT, "commit");
    /* Committed into a file that was deleted or replaced meanwhile: as good as lost. */
    if (ret == 0)
        ret = check_files(ss);
    /* A COMMIT that failed (busy, full disk, I/O) may leave the transaction open: end it, so
     * the batch is wholly gone and the next begin works. */
    if (ret != 0)
        in_tx_rollback(ss);
    ss->batch = false;
    return ret;
}

static void sq_rollback(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    in_tx_rollback(ss);
    ss->batch = false;
}

static int sq_find_cid(struct store *s, const char *room, const char *user, const char *cid,
                       uint64_t *seq)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_FIND_CID];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_text(st, 2, user, rc);
    rc = bind_text(st, 3, cid, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "find_cid", rc);
    }
    done(st);
    return note(ss, ret);
}

/* Runs statement id with (room, seq-like a, b, text c, d, e) bound as its ?1..?6 as far as it has
 * parameters; 0 or the mapped error (logged as op). Not under the batch rule: the caller's
 * savepoint is. */
static int run_bound(struct sqlite_store *ss, enum stmt id, const char *op, const char *room,
                     uint64_t a, uint64_t b, const char *c, const char *d, const char *e)
{
    sqlite3_stmt *st = ss->st[id];
    int n = sqlite3_bind_parameter_count(st);
    int rc = bind_text(st, 1, room, SQLITE_OK);
    if (n >= 2)
        rc = bind_seq(st, 2, a, rc);
    if (n >= 3)
        rc =
            id == ST_EDIT_APPLY || id == ST_REACT_DROP || id == ST_REACT_ADD || id == ST_MENTION_ADD
                ? bind_text(st, 3, c, rc)
                : bind_seq(st, 3, b, rc);
    if (n >= 4)
        rc = bind_text(st, 4, d, rc);
    if (n >= 5)
        rc = id == ST_EDIT_APPLY ? bind_seq(st, 5, b, rc) : bind_text(st, 5, e, rc);
    if (n >= 6)
        rc = bind_seq(st, 6, b, rc);
    if (rc != SQLITE_OK) {
        done(st);
        return fail(ss->db, op, rc);
    }
    return run(ss, id, op);
}

/* Records who message seq of room mentions now: names joined by ' ' (or NULL), after clearing
 * what it mentioned before. */
static int set_mentions(struct sqlite_store *ss, const char *room, uint64_t seq, const char *names)
{
    int ret = run_bound(ss, ST_MENTION_CLEAR, "mention_clear", room, seq, 0, NULL, NULL, NULL);
    for (const char *p = names; ret == 0 && p && *p;) {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        char name[STORE_NAME_MAX + 1];
        if (n > 0 && n <= STORE_NAME_MAX) {
            memcpy(name, p, n);
            name[n] = '\0';
            ret = run_bound(ss, ST_MENTION_ADD, "mention_add", room, seq, 0, name, NULL, NULL);
        }
        p += n + (sp ? 1 : 0);
    }
    return ret;
}

/* Runs a search index statement with (room, seq[, text[, ts]]) as its ?1..?4, as far as it has
 * parameters; 0 or the mapped error. The text is bound with its length. */
static int search_words(struct sqlite_store *ss, enum stmt id, const char *op, const char *room,
                        uint64_t seq, const char *text, size_t text_len, int64_t ts)
{
    sqlite3_stmt *st = ss->st[id];
    int n = sqlite3_bind_parameter_count(st);
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, seq, rc);
    if (n >= 3 && rc == SQLITE_OK)
        rc = sqlite3_bind_text64(st, 3, text ? text : "", text ? text_len : 0, SQLITE_STATIC,
                                 SQLITE_UTF8);
    if (n >= 4)
        rc = bind_i64(st, 4, ts, rc);
    if (rc != SQLITE_OK) {
        done(st);
        return fail(ss->db, op, rc);
    }
    return run(ss, id, op);
}

/* Runs a moderation write id with (room, text[0..n), time) bound as far as it has parameters. */
static int mod_write(struct sqlite_store *ss, enum stmt id, const char *op, const char *room,
                     const char *text, size_t n, int64_t t)
{
    sqlite3_stmt *st = ss->st[id];
    int params = sqlite3_bind_parameter_count(st);
    int rc = bind_text(st, 1, room, SQLITE_OK);
    if (rc == SQLITE_OK && params >= 2)
        rc = sqlite3_bind_text64(st, 2, text, n, SQLITE_STATIC, SQLITE_UTF8);
    if (params >= 3)
        rc = bind_i64(st, 3, t, rc);
    if (rc != SQLITE_OK) {
        done(st);
        return fail(ss->db, op, rc);
    }
    return run(ss, id, op);
}

/* Reads the last search index rowid given, once a process (ss->search_rowid). */
static int search_rowid_known(struct sqlite_store *ss)
{
    if (ss->search_rowid != 0)
        return 0;
    sqlite3_stmt *st = ss->st[ST_SEARCH_LAST];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ss->search_rowid = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : fail(ss->db, "search_last", rc);
}

/* How many messages wait in the search backlog: 0 and *n, or an error. Counted again after a
 * rollback took back some of the rows counted. */
static int backlog_count(struct sqlite_store *ss, int64_t *n)
{
    if (ss->backlog < 0) {
        sqlite3_stmt *st = ss->st[ST_BACKLOG_COUNT];
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            ss->backlog = sqlite3_column_int64(st, 0);
        done(st);
        if (rc != SQLITE_ROW)
            return fail(ss->db, "backlog_count", rc);
    }
    *n = ss->backlog;
    return 0;
}

/*
 * A batch's tail: what its events change besides their own rows, gathered per room and per guest
 * span and written once, just before the commit: the room's row (its last seq), the seq range
 * of its messages waiting for the search index, and a guest session's span in the room (rule
 * 51's takeover). That is a statement per room (and span) a batch instead of three per event,
 * which took as long as the events' rows. Whatever in a batch reads those tables (claim_guest)
 * writes the tail first. An event outside a batch writes its part at once.
 */
struct tail_room {
    int64_t created_ms;           /* the first event's ts: the row's created_ms if it is new */
    uint64_t last_seq;            /* the newest event's */
    uint64_t msg_first, msg_last; /* the messages' seqs, for the backlog (0: none) */
    char room[];                  /* the map's key */
};

struct tail_span {
    uint64_t first, last;
    size_t identity_len;
    char key[]; /* the map's key: identity '\n' room (neither holds a line break) */
};

static int write_room_seq(struct sqlite_store *ss, const char *room, int64_t created_ms,
                          uint64_t last_seq)
{
    sqlite3_stmt *st = ss->st[ST_ROOM_SEQ];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_i64(st, 2, created_ms, rc);
    rc = bind_seq(st, 3, last_seq, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "insert_room", rc);
    done(st);
    return ret;
}

static int write_backlog(struct sqlite_store *ss, const char *room, uint64_t first, uint64_t last)
{
    int ret = run_bound(ss, ST_BACKLOG_ADD, "backlog_add", room, first, last, NULL, NULL, NULL);
    if (ret == 0 && ss->backlog >= 0)
        ss->backlog += (int64_t)(last - first + 1);
    return ret;
}

static int write_span(struct sqlite_store *ss, const char *identity, size_t identity_len,
                      const char *room, uint64_t first, uint64_t last)
{
    sqlite3_stmt *st = ss->st[ST_GUEST_SPAN];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, first, rc);
    rc = bind_seq(st, 3, last, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text64(st, 4, identity, identity_len, SQLITE_STATIC, SQLITE_UTF8);
    if (rc != SQLITE_OK) {
        done(st);
        return fail(ss->db, "insert_span", rc);
    }
    return run(ss, ST_GUEST_SPAN, "insert_span");
}

/* Forgets the tail (written, or rolled back with its batch). */
static void drop_tail(struct sqlite_store *ss)
{
    map_free_all(&ss->tail_rooms);
    map_free_all(&ss->tail_spans);
}

/* Writes the batch's tail (see struct tail_room); 0 or the error that ends the batch. */
static int write_tail(struct sqlite_store *ss)
{
    int ret = 0;
    const char *key;
    void *v;
    for (size_t i = 0; ret == 0 && map_next(&ss->tail_rooms, &i, &key, &v);) {
        struct tail_room *r = v;
        ret = write_room_seq(ss, r->room, r->created_ms, r->last_seq);
        if (ret == 0 && r->msg_first)
            ret = write_backlog(ss, r->room, r->msg_first, r->msg_last);
    }
    for (size_t i = 0; ret == 0 && map_next(&ss->tail_spans, &i, &key, &v);) {
        struct tail_span *sp = v;
        ret = write_span(ss, sp->key, sp->identity_len, sp->key + sp->identity_len + 1, sp->first,
                         sp->last);
    }
    drop_tail(ss);
    if (ret != 0 && !ss->batch_err)
        ss->batch_err = ret;
    return ret;
}

/* Event m's part of the tail: gathered in a batch, written at once outside one. */
static int add_to_tail(struct sqlite_store *ss, const struct store_msg *m)
{
    bool message = m->type == STORE_EV_MESSAGE;
    bool guest = m->identity && strncmp(m->identity, "guest:", 6) == 0;
    size_t il = guest ? strlen(m->identity) : 0, rl = strlen(m->room);
    /* (Names longer than the store's bounds never come; they would be written at once.) */
    if (!ss->batch || il > STORE_IDENTITY_MAX || rl >= STORE_ROOM_MAX) {
        int ret = write_room_seq(ss, m->room, m->ts, m->seq);
        if (ret == 0 && message)
            ret = write_backlog(ss, m->room, m->seq, m->seq);
        if (ret == 0 && guest)
            ret = write_span(ss, m->identity, il, m->room, m->seq, m->seq);
        return ret;
    }
    struct tail_room *r = map_get(&ss->tail_rooms, m->room);
    if (!r) {
        r = xcalloc(1, sizeof *r + rl + 1);
        memcpy(r->room, m->room, rl + 1);
        r->created_ms = m->ts;
        map_put(&ss->tail_rooms, r->room, r);
    }
    if (m->seq > r->last_seq)
        r->last_seq = m->seq;
    if (message) {
        if (!r->msg_first)
            r->msg_first = m->seq;
        r->msg_last = m->seq; /* a room's seqs are given in order within a batch */
    }
    if (!guest)
        return 0;
    char key[STORE_IDENTITY_MAX + 1 + STORE_ROOM_MAX];
    memcpy(key, m->identity, il);
    key[il] = '\n';
    memcpy(key + il + 1, m->room, rl + 1);
    struct tail_span *sp = map_get(&ss->tail_spans, key);
    if (!sp) {
        sp = xcalloc(1, sizeof *sp + il + rl + 2);
        memcpy(sp->key, key, il + rl + 2);
        sp->identity_len = il;
        sp->first = m->seq;
        map_put(&ss->tail_spans, sp->key, sp);
    }
    if (m->seq > sp->last)
        sp->last = m->seq;
    return 0;
}

/* Runs a catch-up statement whose ?1 is the last rowid given before it. */
static int run_from_rowid(struct sqlite_store *ss, enum stmt id, const char *op, int64_t rowid)
{
    int rc = bind_i64(ss->st[id], 1, rowid, SQLITE_OK);
    if (rc != SQLITE_OK) {
        done(ss->st[id]);
        return fail(ss->db, op, rc);
    }
    return run(ss, id, op);
}

/*
 * Indexes the backlog's messages and empties it: their rows at the next rowids, in the store's
 * order, then their words in rowid order (FTS5 appends), in a transaction of its own (never
 * inside a batch: the store thread catches up between batches). Each
 * message is indexed as it stands now, so what changed it meanwhile needs no care: an edit's
 * text is the one indexed, a deleted or trimmed message is left out (edits, deletes and trims
 * change only the rows of messages already indexed).
 */
static int search_catch_up(struct sqlite_store *ss)
{
    if (ss->batch)
        return -EBUSY;
    int64_t waiting = 0;
    int ret = backlog_count(ss, &waiting);
    if (ret != 0 || waiting == 0)
        return ret;
    ret = check_files(ss);
    if (ret == 0)
        ret = run(ss, ST_BEGIN, "catch_up_begin");
    if (ret != 0)
        return ret;
    ret = search_rowid_known(ss);
    int64_t first = ss->search_rowid;
    int64_t rows = 0;
    if (ret == 0)
        ret = run_from_rowid(ss, ST_CATCH_UP_ROWS, "catch_up_rows", first);
    if (ret == 0)
        rows = sqlite3_changes64(ss->db);
    if (ret == 0)
        ret = run_from_rowid(ss, ST_CATCH_UP_WORDS, "catch_up_words", first);
    if (ret == 0)
        ret = run(ss, ST_CATCH_UP_DONE, "catch_up_done");
    if (ret == 0)
        ret = run(ss, ST_COMMIT, "catch_up_commit");
    if (ret != 0)
        in_tx_rollback(ss);
    if (ret == 0) {
        ss->search_rowid = first + rows; /* a rolled-back catch-up leaves a gap, never a reuse */
        ss->backlog = 0;
        metrics_add(METRIC_SEARCH_CATCH_UPS, 1);
    }
    return ret;
}

/* The state an event changes besides its own row (store.h, insert). */
static int apply_state(struct sqlite_store *ss, const struct store_msg *m)
{
    int ret = 0;
    switch (m->type) {
    case STORE_EV_MESSAGE:
        if (m->mentions)
            ret = set_mentions(ss, m->room, m->seq, m->mentions);
        return ret;
    case STORE_EV_EDIT: {
        ret = run_bound(ss, ST_EDIT_BLANK, "edit_blank", m->room, m->target, m->seq, NULL, NULL,
                        NULL);
        /* The words of the text this edit replaces leave the index while that text is there. */
        if (ret == 0)
            ret = search_words(ss, ST_SEARCH_UNINDEX, "search_unindex", m->room, m->target, NULL, 0,
                               0);
        if (ret != 0)
            return ret;
        /* The text is bound with its length: it need not be NUL-terminated at text_len. */
        sqlite3_stmt *st = ss->st[ST_EDIT_APPLY];
        int rc = bind_text(st, 1, m->room, SQLITE_OK);
        rc = bind_seq(st, 2, m->target, rc);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text64(st, 3, m->text, m->text_len, SQLITE_STATIC, SQLITE_UTF8);
        rc = bind_text(st, 4, m->mentions, rc);
        rc = bind_i64(st, 5, m->ts, rc);
        if (rc != SQLITE_OK) {
            done(st);
            return fail(ss->db, "edit_apply", rc);
        }
        ret = run(ss, ST_EDIT_APPLY, "edit_apply");
        if (ret == 0)
            ret = search_words(ss, ST_SEARCH_EDIT, "search_edit", m->room, m->target, m->text,
                               m->text_len, 0);
        return ret ? ret : set_mentions(ss, m->room, m->target, m->mentions);
    }
    case STORE_EV_DELETE:
        /* Out of the search index first: it takes the words out by the text it still has. */
        ret = search_words(ss, ST_SEARCH_UNINDEX, "search_unindex", m->room, m->target, NULL, 0, 0);
        if (ret == 0)
            ret = search_words(ss, ST_SEARCH_DROP_ROW, "search_drop_row", m->room, m->target, NULL,
                               0, 0);
        if (ret == 0)
            ret =
                run_bound(ss, ST_DELETE_MSG, "delete_msg", m->room, m->target, 0, NULL, NULL, NULL);
        if (ret == 0)
            ret = run_bound(ss, ST_DELETE_DEPS, "delete_deps", m->room, m->target, 0, NULL, NULL,
                            NULL);
        if (ret == 0)
            ret = run_bound(ss, ST_DELETE_REACTIONS, "delete_reactions", m->room, m->target, 0,
                            NULL, NULL, NULL);
        if (ret == 0)
            ret = set_mentions(ss, m->room, m->target, NULL);
        return ret;
    case STORE_EV_REACTION:
        if (m->on)
            return run_bound(ss, ST_REACT_ADD, "react_add", m->room, m->target, m->seq, m->emoji,
                             m->identity, m->from);
        return run_bound(ss, ST_REACT_DROP, "react_drop", m->room, m->target, 0, m->emoji,
                         m->identity, NULL);
    case STORE_EV_TOPIC:
        return mod_write(ss, ST_TOPIC_SET, "topic_set", m->room, m->text ? m->text : "",
                         m->text ? m->text_len : 0, m->ts);
    case STORE_EV_ROLE:
        if (!m->detail || !m->user)
            return 0;
        if (strcmp(m->detail, "op") == 0)
            return mod_write(ss, ST_OP_ADD, "op_add", m->room, m->user, strlen(m->user), 0);
        if (strcmp(m->detail, "member") == 0)
            return mod_write(ss, ST_OP_DROP, "op_drop", m->room, m->user, strlen(m->user), 0);
        ret = mod_write(ss, ST_OWNER_OLD_TO_OP, "owner_old", m->room, m->user, strlen(m->user), 0);
        if (ret == 0)
            ret = mod_write(ss, ST_OWNER_SET, "owner_set", m->room, m->user, strlen(m->user),
                            m->ts);
        if (ret == 0)
            ret = mod_write(ss, ST_OP_DROP, "op_drop", m->room, m->user, strlen(m->user), 0);
        return ret;
    case STORE_EV_BAN:
    case STORE_EV_MUTE: {
        int64_t until = m->duration ? m->ts + (int64_t)m->duration * 1000 : 0;
        return mod_write(ss, m->type == STORE_EV_BAN ? ST_BAN_SET : ST_MUTE_SET, "restrict",
                         m->room, m->user, strlen(m->user), until);
    }
    case STORE_EV_UNBAN:
    case STORE_EV_UNMUTE:
        return mod_write(ss, m->type == STORE_EV_UNBAN ? ST_BAN_DROP : ST_MUTE_DROP, "lift",
                         m->room, m->user, strlen(m->user), 0);
    default:
        return 0;
    }
}

static int sq_insert(struct store *s, const struct store_msg *m)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    /*
     * Outside a batch a savepoint is the transaction: RELEASE commits it. Inside one there is
     * none: a savepoint makes the search index (FTS5) write its pending words out as a segment of
     * their own, which per message was a large part of a batch's cost. The event's row goes first,
     * and a refused row (a duplicate cid) is undone by SQLite alone, leaving the batch usable; a
     * failure after it leaves half an event, so the batch can then only be rolled back (batch_err).
     */
    bool in_batch = !sqlite3_get_autocommit(ss->db);
    if (!in_batch) {
        ret = run(ss, ST_SAVEPOINT, "insert_savepoint");
        if (ret != 0)
            return note(ss, ret);
    }

    sqlite3_stmt *st = ss->st[ST_INSERT_MSG];
    int rc = bind_text(st, 1, m->room, SQLITE_OK);
    rc = bind_seq(st, 2, m->seq, rc);
    rc = bind_i64(st, 3, m->ts, rc);
    rc = bind_text(st, 4, m->from, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text64(st, 5, m->text ? m->text : "", m->text ? m->text_len : 0,
                                 SQLITE_STATIC, SQLITE_UTF8);
    rc = bind_text(st, 6, m->cid, rc);
    rc = bind_text(st, 7, store_event_type_name(m->type), rc);
    rc = bind_text(st, 8, m->identity, rc);
    if (m->target)
        rc = bind_seq(st, 9, m->target, rc);
    if (m->reply_to)
        rc = bind_seq(st, 10, m->reply_to, rc);
    rc = bind_text(st, 11, m->mentions, rc);
    rc = bind_text(st, 12, m->type == STORE_EV_REACTION ? m->emoji : m->detail, rc);
    if (m->type == STORE_EV_REACTION)
        rc = bind_i64(st, 13, m->on, rc);
    else if (m->duration)
        rc = bind_seq(st, 13, m->duration, rc);
    rc = bind_text(st, 14, m->user, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "insert", rc);
    done(st);
    bool row_stored = ret == 0;

    if (ret == 0)
        ret = apply_state(ss, m);
    /* The room's last seq, the search backlog, a guest session's span in the room. */
    if (ret == 0)
        ret = add_to_tail(ss, m);

    if (!in_batch) {
        if (ret == 0)
            ret = run(ss, ST_RELEASE, "insert_release");
        if (ret != 0)
            in_tx_rollback(ss);
    } else if (ret != 0 && row_stored && !ss->batch_err) {
        ss->batch_err = ret; /* half an event is in the transaction: only a rollback is left */
    }
    return note(ss, ret);
}

static int sq_room_create(struct store *s, const char *room, int64_t created_ms,
                          const char *owner_lc)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_ROOM_CREATE];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_i64(st, 2, created_ms, rc);
    rc = bind_text(st, 3, owner_lc, rc);
    return write_stmt(ss, ST_ROOM_CREATE, "room_create", rc);
}

static int sq_room_owner(struct store *s, const char *room, char *owner)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_ROOM_OWNER];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? -ENOENT : rc == SQLITE_ROW ? 0 : fail(ss->db, "room_owner", rc);
    if (rc == SQLITE_ROW && !copy_column(st, 0, owner, STORE_NAME_MAX + 1))
        owner[0] = '\0';
    done(st);
    return ret == -ENOENT ? ret : note(ss, ret);
}

/* The single writer is the count's lock: nothing else writes until the batch ends. */
static int sq_room_count(struct store *s, const char *always, uint64_t *n)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_ROOM_COUNT];
    int rc = bind_text(st, 1, always, SQLITE_OK);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        ret = fail(ss->db, "room_count", rc);
    done(st);
    return note(ss, ret);
}

/* Hands each row (room, value, until) of statement id to each as kind. */
static int load_mod_rows(struct sqlite_store *ss, enum stmt id, enum store_mod_kind kind,
                         int64_t now_ms, store_mod_cb each, void *arg)
{
    sqlite3_stmt *st = ss->st[id];
    int rc = sqlite3_bind_parameter_count(st) >= 1 ? bind_i64(st, 1, now_ms, SQLITE_OK) : SQLITE_OK;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        const char *room = (const char *)sqlite3_column_text(st, 0);
        const char *v = (const char *)sqlite3_column_text(st, 1);
        if (!room || !store_valid_room(room, strlen(room)) || !v ||
            !text_valid_user(v, strlen(v))) {
            log_warn("msg=store_damaged_row table=moderation error=\"not a room or name: skipped\"");
            continue;
        }
        each(arg, room, kind, v, sqlite3_column_int64(st, 2));
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "load_moderation", rc);
    done(st);
    return ret;
}

static int sq_load_moderation(struct store *s, int64_t now_ms, store_mod_cb each, void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_LOAD_META];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *room = (const char *)sqlite3_column_text(st, 0);
        const char *owner = (const char *)sqlite3_column_text(st, 1);
        const char *topic = (const char *)sqlite3_column_text(st, 2);
        if (!room || !store_valid_room(room, strlen(room)))
            continue;
        if (owner && text_valid_user(owner, strlen(owner)))
            each(arg, room, STORE_MOD_OWNER, owner, 0);
        size_t n = topic ? (size_t)sqlite3_column_bytes(st, 2) : 0;
        if (n && !text_needs_repair(topic, n) && !text_has_control(topic, n))
            each(arg, room, STORE_MOD_TOPIC, topic, 0);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "load_moderation", rc);
    done(st);
    if (ret == 0)
        ret = load_mod_rows(ss, ST_LOAD_OPS, STORE_MOD_OP, now_ms, each, arg);
    if (ret == 0)
        ret = load_mod_rows(ss, ST_LOAD_BANS, STORE_MOD_BAN, now_ms, each, arg);
    if (ret == 0)
        ret = load_mod_rows(ss, ST_LOAD_MUTES, STORE_MOD_MUTE, now_ms, each, arg);
    return ret;
}

static int sq_room_roles(struct store *s, const char *room, const char *name_lc, char *owner,
                         bool *op)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    owner[0] = '\0';
    *op = false;
    ret = sq_room_owner(s, room, owner);
    if (ret == -ENOENT)
        ret = 0; /* no row: no owner */
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_IS_OP];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_text(st, 2, name_lc, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    *op = rc == SQLITE_ROW;
    ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(ss->db, "is_op", rc);
    done(st);
    return note(ss, ret);
}

static int sq_restriction(struct store *s, const char *room, enum store_mod_kind kind,
                          const char *name_lc, int64_t now_ms, int64_t *until)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[kind == STORE_MOD_BAN ? ST_BAN_GET : ST_MUTE_GET];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_text(st, 2, name_lc, rc);
    rc = bind_i64(st, 3, now_ms, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *until = sqlite3_column_int64(st, 0);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "restriction", rc);
    }
    done(st);
    return note(ss, ret);
}

/* Moves the size cap to pages (a no-op without a cap). */
static void cap_move(struct sqlite_store *ss, int64_t pages)
{
    if (!ss->cap_pages)
        return;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
    sqlite3_exec(ss->db, sql, NULL, NULL, NULL);
}

static int sq_trim(struct store *s, const char *room, uint64_t upto)
{
    struct sqlite_store *ss = from_base(s);
    /* The search index's rows below the cut go with the messages (storage notes), taken out by
     * the texts, so before the events go. Taking them out writes a few pages of delete markers
     * first: a database full to its cap may grow by those to free many more. */
    int ret = batch_lost(ss);
    if (ret == 0) {
        cap_move(ss, ss->cap_pages + TRIM_CAP_MARGIN_PAGES);
        ret = note(ss, search_words(ss, ST_SEARCH_TRIM, "search_trim", room, upto, NULL, 0, 0));
        cap_move(ss, ss->cap_pages);
    }
    if (ret == 0)
        ret = note(
            ss, search_words(ss, ST_SEARCH_TRIM_ROWS, "search_trim_rows", room, upto, NULL, 0, 0));
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_TRIM];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, upto, rc);
    ret = write_stmt(ss, ST_TRIM, "trim", rc);
    if (ret != 0)
        return ret;
    st = ss->st[ST_TRIM_REACTIONS];
    rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, upto, rc);
    ret = write_stmt(ss, ST_TRIM_REACTIONS, "trim_reactions", rc);
    if (ret != 0)
        return ret;
    st = ss->st[ST_TRIM_MENTIONS];
    rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, upto, rc);
    return write_stmt(ss, ST_TRIM_MENTIONS, "trim_mentions", rc);
}

/*
 * Steps st (columns EVENT_COLS) and hands each row to each, repaired. The strings each gets live
 * in SQLite's row buffers: valid only during that call, so each copies what it keeps, and must
 * not call a read itself (the statement is busy). Returns how many, or an error.
 */
static int each_event(struct sqlite_store *ss, sqlite3_stmt *st, const char *room, int rc,
                      const char *op, store_msg_cb each, void *arg)
{
    int count = 0;
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *from = (const char *)sqlite3_column_text(st, 2);
            const char *text = (const char *)sqlite3_column_text(st, 3);
            uint8_t type = store_type_from((const char *)sqlite3_column_text(st, 5));
            if (!from || !text || type == STORE_EV_TYPES)
                continue; /* NOT NULL columns, known types: only a damaged row gets here */
            struct store_msg m = {
                .room = room,
                .seq = (uint64_t)sqlite3_column_int64(st, 0),
                .ts = sqlite3_column_int64(st, 1),
                .from = from,
                .text = text,
                .text_len = (size_t)sqlite3_column_bytes(st, 3),
                .cid = (const char *)sqlite3_column_text(st, 4),
                .type = type,
                .target = (uint64_t)sqlite3_column_int64(st, 6),
                .reply_to = (uint64_t)sqlite3_column_int64(st, 7),
                .mentions = (const char *)sqlite3_column_text(st, 8),
                .edited = sqlite3_column_int64(st, 9),
                .target_from = (const char *)sqlite3_column_text(st, 14),
                .user = (const char *)sqlite3_column_text(st, 15),
            };
            if (type == STORE_EV_REACTION) {
                m.emoji = (const char *)sqlite3_column_text(st, 11);
                m.on = sqlite3_column_int64(st, 12) != 0;
            } else {
                m.detail = (const char *)sqlite3_column_text(st, 11);
                int64_t num = sqlite3_column_int64(st, 12);
                m.duration = num > 0 ? (uint64_t)num : 0;
            }
            m.deleted = type == STORE_EV_MESSAGE ? sqlite3_column_int64(st, 10) != 0
                                                 : sqlite3_column_int64(st, 13) != 0;
            char *repaired = store_repair_row(&m, (size_t)sqlite3_column_bytes(st, 2),
                                              (size_t)sqlite3_column_bytes(st, 4));
            each(arg, &m);
            free(repaired);
            count++;
        }
    }
    int ret = rc == SQLITE_DONE ? count : fail(ss->db, op, rc);
    done(st);
    return ret;
}

static int sq_read(struct store *s, const char *room, uint64_t after, uint64_t before,
                   int64_t min_ts, unsigned limit, bool newest, store_msg_cb each, void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[newest ? ST_READ_NEWEST : ST_READ_OLDEST];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, after, rc);
    rc = bind_seq(st, 3, before ? before : UINT64_MAX, rc);
    rc = bind_i64(st, 4, min_ts, rc);
    rc = bind_i64(st, 5, limit > INT_MAX ? INT_MAX : (int64_t)limit, rc);
    return each_event(ss, st, room, rc, "read", each, arg);
}

static int sq_history(struct store *s, const char *room, uint64_t before, int64_t min_ts,
                      unsigned limit, bool with_deleted, store_msg_cb each, void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_HISTORY];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, before, rc);
    rc = bind_i64(st, 3, min_ts, rc);
    rc = bind_i64(st, 4, limit > INT_MAX ? INT_MAX : (int64_t)limit, rc);
    rc = bind_i64(st, 5, with_deleted ? 1 : 0, rc);
    return each_event(ss, st, room, rc, "history", each, arg);
}

static int sq_read_target(struct store *s, const char *room, uint64_t seq, store_msg_cb each,
                          void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_READ_TARGET];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, seq, rc);
    int ret = each_event(ss, st, room, rc, "read_target", each, arg);
    return ret < 0 ? note(ss, ret) : 0;
}

static int sq_message_get(struct store *s, const char *room, uint64_t seq, struct store_target *out)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_MSG_GET];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, seq, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->ts = sqlite3_column_int64(st, 0);
        out->deleted = sqlite3_column_int64(st, 1) != 0;
        if (!copy_column(st, 2, out->identity, sizeof out->identity))
            out->identity[0] = '\0'; /* damaged: nobody's */
        if (!copy_column(st, 3, out->from, sizeof out->from) ||
            !text_valid_user(out->from, strlen(out->from)))
            memcpy(out->from, "?", 2);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "message_get", rc);
    }
    done(st);
    return note(ss, ret);
}

/* Runs a query with (room, target[, emoji[, identity]]) that answers one integer row or none. */
static int query_bound(struct sqlite_store *ss, enum stmt id, const char *room, uint64_t target,
                       const char *emoji, const char *identity, int64_t *out, bool *row)
{
    sqlite3_stmt *st = ss->st[id];
    int n = sqlite3_bind_parameter_count(st);
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, target, rc);
    if (n >= 3)
        rc = bind_text(st, 3, emoji, rc);
    if (n >= 4)
        rc = bind_text(st, 4, identity, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = 0;
    *row = rc == SQLITE_ROW;
    if (*row)
        *out = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        ret = fail(ss->db, "reaction_state", rc);
    done(st);
    return ret;
}

static int sq_reaction_state(struct store *s, const char *room, uint64_t target, const char *emoji,
                             const char *identity, bool *held, bool *present, unsigned *distinct)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    int64_t v = 0;
    bool row;
    if (ret == 0)
        ret = query_bound(ss, ST_REACT_HELD, room, target, emoji, identity, &v, held);
    if (ret == 0)
        ret = query_bound(ss, ST_REACT_EMOJI, room, target, emoji, NULL, &v, present);
    if (ret == 0)
        ret = query_bound(ss, ST_REACT_DISTINCT, room, target, NULL, NULL, &v, &row);
    *distinct = ret == 0 && row && v > 0 ? (unsigned)v : 0;
    return note(ss, ret);
}

static int sq_reactions(struct store *s, const char *room, uint64_t target, store_reaction_cb each,
                        void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_REACTIONS_OF];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, target, rc);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *emoji = (const char *)sqlite3_column_text(st, 0);
            const char *identity = (const char *)sqlite3_column_text(st, 1);
            const char *user = (const char *)sqlite3_column_text(st, 2);
            if (!emoji || !identity || !user || text_needs_repair(emoji, strlen(emoji)) ||
                text_has_control(emoji, strlen(emoji)) || !text_valid_user(user, strlen(user)))
                continue; /* damaged: left out */
            each(arg, emoji, identity, user);
        }
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "reactions", rc);
    done(st);
    return ret;
}

static int sq_retention_cut(struct store *s, const char *room, uint64_t keep, uint64_t *seq)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    bool row = false;
    int64_t v = 0;
    if (ret == 0 && keep > 0) {
        sqlite3_stmt *st = ss->st[ST_RETENTION_CUT];
        int rc = bind_text(st, 1, room, SQLITE_OK);
        rc = bind_seq(st, 2, keep - 1, rc);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        row = rc == SQLITE_ROW;
        if (row)
            v = sqlite3_column_int64(st, 0);
        else if (rc != SQLITE_DONE)
            ret = fail(ss->db, "retention_cut", rc);
        done(st);
    }
    if (ret == 0 && !row)
        ret = -ENOENT;
    if (ret == 0)
        *seq = (uint64_t)v;
    return ret == -ENOENT ? ret : note(ss, ret);
}

static int sq_newest_own(struct store *s, const char *room, const char *identity, uint64_t *seq)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_NEWEST_OWN];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_text(st, 2, identity, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "newest_own", rc);
    }
    done(st);
    return ret == -ENOENT ? ret : note(ss, ret);
}

static int sq_next_message(struct store *s, const char *room, uint64_t after, uint64_t *seq)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_NEXT_MESSAGE];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, after, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0); /* MIN() of no rows is NULL, read as 0 */
        ret = *seq ? 0 : -ENOENT;
    } else {
        ret = fail(ss->db, "next_message", rc);
    }
    done(st);
    return ret == -ENOENT ? ret : note(ss, ret);
}

static int sq_claim_guest(struct store *s, const char *guest, const char *account, const char *name)
{
    struct sqlite_store *ss = from_base(s);
    int ret = write_tail(ss); /* the spans of this batch's events first */
    for (enum stmt id = ST_CLAIM_EVENTS; ret == 0 && id <= ST_CLAIM_REACTIONS; id++) {
        sqlite3_stmt *st = ss->st[id];
        int rc = bind_text(st, 1, guest, SQLITE_OK);
        rc = bind_text(st, 2, account, rc);
        rc = bind_text(st, 3, name, rc);
        ret = write_stmt(ss, id, "claim_guest", rc);
    }
    if (ret == 0)
        ret = write_stmt(ss, ST_CLAIM_SPANS, "claim_guest",
                         bind_text(ss->st[ST_CLAIM_SPANS], 1, guest, SQLITE_OK));
    return ret;
}

static int sq_checkpoint(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    if (ss->ckpt)
        wal_checkpointer_lock(ss->ckpt);
    int rc = sqlite3_wal_checkpoint_v2(ss->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (ss->ckpt)
        wal_checkpointer_unlock(ss->ckpt);
    /* Busy: a reader holds an old snapshot (an upgrade's other process); the next one will do. */
    return rc == SQLITE_OK || (rc & 0xff) == SQLITE_BUSY ? 0 : fail(ss->db, "checkpoint", rc);
}

/* parley_search_words(text): the text's words as the search index holds them (rule 71). */
static void sql_search_words(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *text = (const char *)sqlite3_value_text(argv[0]);
    size_t n = (size_t)sqlite3_value_bytes(argv[0]);
    size_t len;
    char *words = search_text_index(text ? text : "", text ? n : 0, &len);
    sqlite3_result_text64(ctx, words, len, free, SQLITE_UTF8);
}

static int sq_search(struct store *s, const char *match, uint64_t from, store_search_cb each,
                     void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_SEARCH_SCAN];
    int rc = bind_text(st, 1, match, SQLITE_OK);
    rc = bind_seq(st, 2, from, rc);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        const char *room = (const char *)sqlite3_column_text(st, 1);
        if (!room || !store_valid_room(room, (size_t)sqlite3_column_bytes(st, 1)))
            continue; /* damaged: nothing to show for it */
        if (!each(arg, (uint64_t)sqlite3_column_int64(st, 0), room,
                  (uint64_t)sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "search", rc);
    done(st);
    return ret;
}

static int sq_search_message(struct store *s, const char *room, uint64_t seq, store_msg_cb each,
                             void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_SEARCH_MSG];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, seq, rc);
    return each_event(ss, st, room, rc, "search_message", each, arg);
}

static int64_t sq_search_backlog(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    int64_t n = 0;
    int ret = backlog_count(ss, &n);
    return ret != 0 ? ret : n;
}

static int sq_search_catch_up(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    return note(ss, search_catch_up(ss));
}

static int sq_search_merge(struct store *s, bool *more)
{
    struct sqlite_store *ss = from_base(s);
    int64_t before = sqlite3_total_changes64(ss->db);
    int ret = run(ss, ST_SEARCH_MERGE, "search_merge");
    /* FTS5: a merge that did any work changes more than the one row of the command itself. */
    *more = ret == 0 && sqlite3_total_changes64(ss->db) - before >= 2;
    return ret;
}

static int sq_first_seq(struct store *s, const char *room, uint64_t *seq)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_FIRST_SEQ];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(st, 0); /* MIN() of no rows is NULL, read as 0 */
    else
        ret = fail(ss->db, "first_seq", rc);
    done(st);
    return ret;
}

static int sq_user_create(struct store *s, const char *name, const char *pwhash, int64_t created_ms)
{
    struct sqlite_store *ss = from_base(s);
    int ret = batch_lost(ss);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = ss->st[ST_USER_CREATE];
    int rc = bind_text(st, 1, name, SQLITE_OK);
    rc = bind_text(st, 2, pwhash, rc);
    rc = bind_i64(st, 3, created_ms, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        ret = 0;
    else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
        ret = -EEXIST; /* the name is taken in some letter case: an answer, not a fault */
    else
        ret = fail(ss->db, "user_create", rc);
    done(st);
    return note(ss, ret);
}

static int sq_user_get(struct store *s, const char *name, struct store_user *out)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_USER_GET];
    int rc = bind_text(st, 1, name, SQLITE_OK);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW) {
        ret = 0;
        if (!copy_column(st, 0, out->name, sizeof out->name) ||
            !copy_column(st, 1, out->pwhash, sizeof out->pwhash) ||
            !text_valid_user(out->name, strlen(out->name))) {
            log_error("msg=store_error op=user_get error=\"stored user does not fit\"");
            ret = -EIO;
        }
        out->created_ms = sqlite3_column_int64(st, 2);
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "user_get", rc);
    }
    done(st);
    return ret;
}

static int sq_token_put(struct store *s, const uint8_t hash[STORE_TOKEN_HASH],
                        const struct store_token *t)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_TOKEN_PUT];
    int rc = bind_hash(st, 1, hash, SQLITE_OK);
    rc = bind_text(st, 2, t->user, rc);
    rc = bind_i64(st, 3, t->guest ? 1 : 0, rc);
    /* Kept bit for bit: the session id is an opaque 64-bit value. */
    rc = bind_i64(st, 4, (int64_t)t->guest_session, rc);
    rc = bind_i64(st, 5, t->expires_ms, rc);
    return write_stmt(ss, ST_TOKEN_PUT, "token_put", rc);
}

static int sq_token_get(struct store *s, const uint8_t hash[STORE_TOKEN_HASH], int64_t now_ms,
                        struct store_token *out)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_TOKEN_GET];
    int rc = bind_hash(st, 1, hash, SQLITE_OK);
    rc = bind_i64(st, 2, now_ms, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW) {
        ret = 0;
        if (!copy_column(st, 0, out->user, sizeof out->user) ||
            !text_valid_user(out->user, strlen(out->user))) {
            log_error("msg=store_error op=token_get error=\"stored user does not fit\"");
            ret = -EIO;
        }
        out->guest = sqlite3_column_int64(st, 1) != 0;
        out->guest_session = (uint64_t)sqlite3_column_int64(st, 2);
        out->expires_ms = sqlite3_column_int64(st, 3);
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "token_get", rc);
    }
    done(st);
    return ret;
}

static int sq_token_drop_guest(struct store *s, const char *name)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_TOKEN_DROP_GUEST];
    int rc = bind_text(st, 1, name, SQLITE_OK);
    return write_stmt(ss, ST_TOKEN_DROP_GUEST, "token_drop_guest", rc);
}

static int sq_token_expire(struct store *s, int64_t now_ms)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_TOKEN_EXPIRE];
    int rc = bind_i64(st, 1, now_ms, SQLITE_OK);
    return write_stmt(ss, ST_TOKEN_EXPIRE, "token_expire", rc);
}


/* --- read markers and saved rooms (protocol 1.1 rules 66-68) --- */

/* Binds (account, room) and, if seq_param, seq as ?3; steps once. SQLITE_ROW, SQLITE_DONE or an
 * error code; the caller reads the row and calls done(). */
static int step_pair(sqlite3_stmt *st, const char *account, const char *room, bool with_seq,
                     uint64_t seq)
{
    int rc = bind_text(st, 1, account, SQLITE_OK);
    if (room)
        rc = bind_text(st, 2, room, rc);
    if (with_seq)
        rc = bind_seq(st, 3, seq, rc);
    return rc == SQLITE_OK ? sqlite3_step(st) : rc;
}

static int sq_marker_get(struct store *s, const char *account, const char *room, uint64_t *seq)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_MARKER_GET];
    int rc = step_pair(st, account, room, false, 0);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
    else
        ret = rc == SQLITE_DONE ? -ENOENT : fail(ss->db, "marker_get", rc);
    done(st);
    return ret == -ENOENT ? ret : note(ss, ret);
}

static int sq_marker_raise(struct store *s, const char *account, const char *room, uint64_t seq,
                           bool only_new)
{
    struct sqlite_store *ss = from_base(s);
    enum stmt id = only_new ? ST_MARKER_INIT : ST_MARKER_RAISE;
    sqlite3_stmt *st = ss->st[id];
    int rc = bind_text(st, 1, account, SQLITE_OK);
    rc = bind_text(st, 2, room, rc);
    rc = bind_seq(st, 3, seq, rc);
    return write_stmt(ss, id, "marker_raise", rc);
}

static int sq_saved_has(struct store *s, const char *account, const char *room, bool *saved)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_SAVED_HAS];
    int rc = step_pair(st, account, room, false, 0);
    int ret = 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        *saved = rc == SQLITE_ROW;
    else
        ret = fail(ss->db, "saved_has", rc);
    done(st);
    return note(ss, ret);
}

static int sq_saved_count(struct store *s, const char *account, uint64_t *n)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_SAVED_COUNT];
    int rc = step_pair(st, account, NULL, false, 0);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        ret = fail(ss->db, "saved_count", rc);
    done(st);
    return note(ss, ret);
}

static int sq_saved_set(struct store *s, const char *account, const char *room, bool saved)
{
    struct sqlite_store *ss = from_base(s);
    enum stmt id = saved ? ST_SAVED_ADD : ST_SAVED_DROP;
    sqlite3_stmt *st = ss->st[id];
    int rc = bind_text(st, 1, account, SQLITE_OK);
    rc = bind_text(st, 2, room, rc);
    return write_stmt(ss, id, "saved_set", rc);
}

static int sq_saved_list(struct store *s, const char *account, store_saved_cb each, void *arg)
{
    struct sqlite_store *ss = from_base(s);
    sqlite3_stmt *st = ss->st[ST_SAVED_LIST];
    int rc = bind_text(st, 1, account, SQLITE_OK);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        const char *room = (const char *)sqlite3_column_text(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        if (room && store_valid_room(room, n)) /* a damaged row is left out, not passed on */
            each(arg, room, (uint64_t)sqlite3_column_int64(st, 1), 0);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(ss->db, "saved_list", rc);
    done(st);
    return note(ss, ret);
}

static int count_after(struct sqlite_store *ss, enum stmt id, const char *room,
                       const char *account, uint64_t after, int64_t min_ts, uint32_t cap,
                       uint32_t *out)
{
    sqlite3_stmt *st = ss->st[id];
    int rc = bind_text(st, 1, room, SQLITE_OK);
    rc = bind_seq(st, 2, after, rc);
    rc = bind_text(st, 3, account, rc);
    rc = bind_i64(st, 4, min_ts, rc);
    rc = bind_i64(st, 5, cap, rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = (uint32_t)sqlite3_column_int64(st, 0);
    else
        ret = fail(ss->db, "unread", rc);
    done(st);
    return note(ss, ret);
}

static int sq_unread(struct store *s, const char *room, const char *account, uint64_t after,
                     int64_t min_ts, uint32_t cap, uint32_t *unread, uint32_t *mentions)
{
    struct sqlite_store *ss = from_base(s);
    int ret = count_after(ss, ST_UNREAD, room, account, after, min_ts, cap, unread);
    return ret ? ret : count_after(ss, ST_UNREAD_MENTIONS, room, account, after, min_ts, cap,
                                   mentions);
}

static int sq_take_over(struct store *s);

static const struct store_ops sqlite_ops = {
    .close = sq_close,
    .take_over = sq_take_over,
    .load_rooms = sq_load_rooms,
    .load_users = sq_load_users,
    .begin = sq_begin,
    .find_cid = sq_find_cid,
    .insert = sq_insert,
    .room_create = sq_room_create,
    .room_owner = sq_room_owner,
    .room_count = sq_room_count,
    .load_moderation = sq_load_moderation,
    .room_roles = sq_room_roles,
    .restriction = sq_restriction,
    .trim = sq_trim,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .read = sq_read,
    .first_seq = sq_first_seq,
    .message_get = sq_message_get,
    .reaction_state = sq_reaction_state,
    .reactions = sq_reactions,
    .read_target = sq_read_target,
    .history = sq_history,
    .retention_cut = sq_retention_cut,
    .claim_guest = sq_claim_guest,
    .newest_own = sq_newest_own,
    .next_message = sq_next_message,
    .checkpoint = sq_checkpoint,
    .search = sq_search,
    .search_message = sq_search_message,
    .search_backlog = sq_search_backlog,
    .search_catch_up = sq_search_catch_up,
    .search_merge = sq_search_merge,
    .user_create = sq_user_create,
    .user_get = sq_user_get,
    .token_put = sq_token_put,
    .token_get = sq_token_get,
    .token_drop_guest = sq_token_drop_guest,
    .token_expire = sq_token_expire,
    .marker_get = sq_marker_get,
    .marker_raise = sq_marker_raise,
    .saved_has = sq_saved_has,
    .saved_count = sq_saved_count,
    .saved_set = sq_saved_set,
    .saved_list = sq_saved_list,
    .unread = sq_unread,
};

/* Runs one SQL text (several statements allowed) that returns no rows we need. */
static int exec(sqlite3 *db, const char *op, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(db, op, rc);
}

/* Runs a PRAGMA or query returning one integer or text row; *out gets the integer. */
static int query_int(sqlite3 *db, const char *op, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(db, op, rc);
    rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        ret = fail(db, op, rc);
    sqlite3_finalize(st);
    return ret;
}

/* Sets WAL mode; the PRAGMA answers with the mode in effect, which we check. */
static int set_wal(sqlite3 *db)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(db, "journal_mode", rc);
    rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        /* Still durable without WAL (synchronous=FULL), but a hot upgrade's second process
         * would then block our writes with its reads: worth a loud warning, not a refusal. */
        if (!mode || strcmp(mode, "wal") != 0)
            log_warn("msg=store_no_wal journal_mode=%s", mode ? mode : "none");
    } else {
        ret = fail(db, "journal_mode", rc);
    }
    sqlite3_finalize(st);
    return ret;
}

/* Brings the schema to SCHEMA_VERSION, in one transaction so a crash never leaves half a step. */
static int migrate(sqlite3 *db)
{
    /* IMMEDIATE: a second process opening the same file at once waits here, then sees our
     * version instead of applying the same steps again. */
    int ret = exec(db, "migrate_begin", "BEGIN IMMEDIATE");
    if (ret != 0)
        return ret;
    int64_t version = 0;
    ret = query_int(db, "user_version", "PRAGMA user_version", &version);
    if (ret == 0 && version > SCHEMA_VERSION) {
        log_error("msg=store_error op=migrate error=\"database schema %lld is newer than this "
                  "binary's %d\"",
                  (long long)version, SCHEMA_VERSION);
        ret = -EIO;
    }
    for (int64_t v = version; ret == 0 && v < SCHEMA_VERSION; v++) {
        ret = exec(db, "migrate", migrations[v]);
        if (ret == 0) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)(v + 1));
            ret = exec(db, "migrate_version", sql);
        }
        if (ret == 0)
            log_info("msg=store_migrated version=%lld", (long long)(v + 1));
    }
    if (ret == 0)
        ret = exec(db, "migrate_commit", "COMMIT");
    if (ret != 0 && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

/* Caps the database at max_db_bytes; SQLite then answers SQLITE_FULL to growth beyond it. */
static int set_size_cap(struct sqlite_store *ss, uint64_t max_db_bytes)
{
    sqlite3 *db = ss->db;
    int64_t page_size = 0;
    int ret = query_int(db, "page_size", "PRAGMA page_size", &page_size);
    if (ret != 0)
        return ret;
    if (page_size <= 0)
        page_size = 4096;
    uint64_t pages = max_db_bytes / (uint64_t)page_size;
    if (pages < 1)
        pages = 1;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %llu", (unsigned long long)pages);
    /* SQLite never sets the cap below the current size: report the cap actually in force. */
    int64_t in_force = 0;
    ret = query_int(db, "max_page_count", sql, &in_force);
    if (ret == 0 && (uint64_t)in_force > pages)
        log_warn("msg=store_over_size_cap max_db_bytes=%llu db_bytes=%lld",
                 (unsigned long long)max_db_bytes, (long long)(in_force * page_size));
    if (ret == 0)
        ss->cap_pages = in_force;
    return ret;
}

static int prepare_all(struct sqlite_store *ss)
{
    for (int i = 0; i < ST_COUNT; i++) {
        int rc = sqlite3_prepare_v3(ss->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ss->st[i],
                                    NULL);
        if (rc != SQLITE_OK)
            return fail(ss->db, "prepare", rc);
    }
    return 0;
}

/* The progress handler of quick_check: non-zero (interrupt) once its time is up. */
static int past_deadline(void *arg)
{
    return mono_ms() >= *(const int64_t *)arg;
}

/*
 * Runs PRAGMA quick_check for at most check_ms. Returns 0 when it finds nothing (or runs out of
 * time, which is logged), -EIO after logging what it found.
 */
static int quick_check(sqlite3 *db, uint64_t check_ms)
{
    int64_t deadline = mono_ms() + (int64_t)check_ms;
    sqlite3_progress_handler(db, 1000, past_deadline, &deadline);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(10)", -1, &st, NULL);
    int problems = 0;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        const char *row = (const char *)sqlite3_column_text(st, 0);
        if (row && strcmp(row, "ok") == 0)
            continue;
        char quoted[512];
        log_error("msg=store_damaged check=quick_check problem=%s",
                  log_quote(quoted, sizeof quoted, row ? row : "", row ? strlen(row) : 0));
        problems++;
    }
    int ret = 0;
    if ((rc & 0xff) == SQLITE_INTERRUPT) {
        log_warn("msg=store_check_incomplete seconds=%.1f error=\"quick_check ran out of time; "
                 "the rest of the database was not checked (see --db-check)\"",
                 (double)check_ms / 1000.0);
    } else if (problems > 0 || (rc != SQLITE_DONE && rc != SQLITE_OK)) {
        if (problems == 0)
            fail(db, "quick_check", rc);
        log_error("msg=store_damaged error=\"the database is damaged: restore it from a backup "
                  "(or try sqlite3's .recover); --db-check 0 starts without this check\"");
        ret = -EIO;
    }
    sqlite3_finalize(st);
    sqlite3_progress_handler(db, 0, NULL, NULL);
    return ret;
}

/* Writes the marker that says a store lives in data_dir, durably (file and directory synced). */
static void write_marker(const char *marker, const char *data_dir)
{
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0 &&
              write(fd, marker_text, sizeof marker_text - 1) == (ssize_t)(sizeof marker_text - 1) &&
              fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (!ok) {
        char quoted[512];
        log_warn("msg=store_marker_failed path=%s error=\"%s\"",
                 log_quote(quoted, sizeof quoted, marker, strlen(marker)), strerror(errno));
    }
}

/* Returns a new string "dir/name". */
static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    return path;
}

/*
 * The WAL hook of our connection, after each commit with the WAL's length in frames: in place of
 * SQLite's automatic checkpoint, the checkpointer is nudged; only a WAL that it has not kept
 * below WAL_BOUND_FRAMES (commits with no gap between them for it to finish in) is checkpointed
 * here, in the commit, as SQLite's own would. RESTART: the next commit starts the WAL from its
 * beginning, so the file stays bounded whatever the load.
 */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct sqlite_store *ss = arg;
    if (frames < WAL_BOUND_FRAMES) {
        wal_checkpointer_nudge(ss->ckpt, frames);
        return SQLITE_OK;
    }
    wal_checkpointer_lock(ss->ckpt);
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    wal_checkpointer_unlock(ss->ckpt);
    if (rc == SQLITE_OK)
        metrics_add(METRIC_STORE_BOUND_CHECKPOINTS, 1);
    /* Busy (a reader of another process on an old snapshot): the next commit tries again.
     * The commit itself is done either way: what the hook answers is not its result. */
    return SQLITE_OK;
}

/* Starts the checkpointer on the file at path and hands it our checkpoints. */
static void start_checkpointer(struct sqlite_store *ss, const char *path)
{
    ss->ckpt = wal_checkpointer_start(path, ss->sync_full);
    if (ss->ckpt)
        sqlite3_wal_hook(ss->db, on_wal_commit, ss); /* replaces the automatic checkpoint */
}

/* The writing part of an open: the schema brought up to date, statements prepared, the files
 * recorded for check_files, the marker written. Returns 0 or an error (logged). */
static int finish_open(struct sqlite_store *ss, const char *data_dir)
{
    int ret = migrate(ss->db);
    /* Preparing reads the whole schema, so a damaged schema is refused here too. */
    if (ret == 0 && !ss->prepared && (ret = prepare_all(ss)) == 0)
        ss->prepared = true;
    if (ret != 0)
        return ret;
    /* The files as they are now, after migrate wrote (so the WAL exists): what every batch
     * checks it still writes to. */
    char *path = join_path(data_dir, "parley.db");
    char *marker = join_path(data_dir, MARKER_NAME);
    ss->main_fd = open(path, O_RDONLY | O_CLOEXEC);
    watch_file(&ss->main, path);
    char *wal = join_path(data_dir, "parley.db-wal");
    watch_file(&ss->wal, wal);
    free(wal);
    if (access(marker, F_OK) != 0)
        write_marker(marker, data_dir);
    if (!ss->ckpt)
        start_checkpointer(ss, path);
    metrics_set_store_problem(NULL);
    free(path);
    free(marker);
    return 0;
}

static int sq_take_over(struct store *s)
{
    struct sqlite_store *ss = from_base(s);
    if (!ss->standby_dir)
        return 0;
    int ret = finish_open(ss, ss->standby_dir);
    if (ret == 0) {
        free(ss->standby_dir);
        ss->standby_dir = NULL;
    }
    return ret;
}

int store_sqlite_open(const char *data_dir, const struct store_sqlite_options *opts,
                      struct store **out)
{
    *out = NULL;
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        int err = errno;
        char dir[512];
        log_error("msg=store_error op=mkdir dir=%s error=\"%s\"",
                  log_quote(dir, sizeof dir, data_dir, strlen(data_dir)), strerror(err));
        return -err;
    }
    char *path = join_path(data_dir, "parley.db");
    char *marker = join_path(data_dir, MARKER_NAME);
    char quoted[512];

    /* A store was here (the marker says so) and its database is gone or empty: starting afresh
     * would look like a working server that lost every account and message. */
    struct stat st;
    bool marked = access(marker, F_OK) == 0;
    bool have_db = stat(path, &st) == 0;
    if (marked && (!have_db || st.st_size == 0)) {
        log_error("msg=store_missing path=%s error=\"%s, but %s says a database was here: "
                  "restore parley.db from a backup, or delete the marker to start with an empty "
                  "store\"",
                  log_quote(quoted, sizeof quoted, path, strlen(path)),
                  have_db ? "the database file is empty" : "the database file is missing",
                  MARKER_NAME);
        free(path);
        free(marker);
        return -ENOENT;
    }

    /* No allocation statistics: they take a global mutex at every allocation SQLite makes (a
     * few percent of a commit). Only takes effect before SQLite's first use, which this is. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    struct sqlite_store *ss = xcalloc(1, sizeof *ss);
    ss->base.ops = &sqlite_ops;
    ss->main_fd = -1;
    ss->backlog = -1;
    map_init_borrowed(&ss->tail_rooms);
    map_init_borrowed(&ss->tail_spans);
    ss->sync_full = opts->sync_full;
    int ret = 0;
    int rc = sqlite3_open_v2(
        path, &ss->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        ret = fail(ss->db, "open", rc);
        goto fail;
    }
    sqlite3_extended_result_codes(ss->db, 1);
    sqlite3_busy_timeout(ss->db, BUSY_TIMEOUT_MS);
    rc = sqlite3_create_function(ss->db, "parley_search_words", 1,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                 sql_search_words, NULL, NULL);
    if (rc != SQLITE_OK) {
        ret = fail(ss->db, "create_function", rc);
        goto fail;
    }

    /* The first statement to read the file: a file that is not a database fails here. */
    ret = set_wal(ss->db);
    if (ret == 0)
        ret = exec(ss->db, "pragma",
                   opts->sync_full ? "PRAGMA synchronous = FULL;" : "PRAGMA synchronous = NORMAL;");
    if (ret == 0)
        ret = exec(ss->db, "pragma",
                   "PRAGMA foreign_keys = OFF;"
                   /* Erasure (rules 52, 53): pages freed by a delete or an edit are zeroed, so
                    * an old text does not linger in the file. */
                   "PRAGMA secure_delete = ON;"
                   /* After a checkpoint, a WAL file that a big batch grew shrinks to 64 MiB. */
                   "PRAGMA journal_size_limit = 67108864;"
                   /* A 256 KiB page cache, not SQLite's 2000 KiB: the tokens written at guest
                    * logins filled the default one (130 bytes a client at 15,000 kept in the
                    * heap). A page not cached is read back with one pread from the kernel's page
                    * cache, which holds the file anyway; history reads touch a few pages each
                    * (the room's index and its newest rows), and the inner pages of every index
                    * stay cached among them. */
                   "PRAGMA cache_size = -256;");
    if (ret == 0 && opts->check_ms > 0)
        ret = quick_check(ss->db, opts->check_ms);
    if (ret == 0 && opts->max_db_bytes > 0)
        ret = set_size_cap(ss, opts->max_db_bytes);
    if (ret != 0)
        goto fail;
    if (opts->standby) {
        /* Another process writes: read only what tells whether we can serve this database. */
        int64_t version = 0;
        ret = query_int(ss->db, "user_version", "PRAGMA user_version", &version);
        if (ret == 0 && version > SCHEMA_VERSION) {
            log_error("msg=store_error op=open error=\"database schema %lld is newer than this "
                      "binary's %d\"",
                      (long long)version, SCHEMA_VERSION);
            ret = -EIO;
        }
        /* A schema as ours can be prepared now; an older one only after take_over migrates. */
        if (ret == 0 && version == SCHEMA_VERSION && (ret = prepare_all(ss)) == 0)
            ss->prepared = true;
        if (ret != 0)
            goto fail;
        ss->standby_dir = xstrdup(data_dir);
        free(path);
        free(marker);
        *out = &ss->base;
        return 0;
    }
    ret = finish_open(ss, data_dir);
    if (ret != 0)
        goto fail;
    free(path);
    free(marker);
    *out = &ss->base;
    return 0;

fail:
    log_error("msg=store_open_failed path=%s code=%d",
              log_quote(quoted, sizeof quoted, path, strlen(path)), ret);
    free(path);
    free(marker);
    sq_close(&ss->base);
    return ret;
}
