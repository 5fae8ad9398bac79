/* store_pg: the PostgreSQL backend of the store interface (--store postgres://...), on libpq. */
/*
 * DESIGN: one connection, used only by the store thread (the thread is the lock), with every
 * statement prepared on it once (again after a reconnection). The schema, the statements and the
 * behaviour follow store_sqlite.c, so the same unit tests and chat suite pass on both; what
 * differs is how several nodes can share one database:
 *
 * Seq and the checks. A batch (begin .. commit) is one transaction. The first time a batch
 * touches a room (a cid lookup, a check of a target, a role, a ban, a mute, a reaction, or the
 * insert itself), it takes that room's row lock: SELECT ... FROM rooms WHERE name = $1 FOR
 * UPDATE. Every node writes a room's events, its moderation state and its last_seq only while
 * holding that lock, so from then until commit nobody else can change what the checks read, and
 * they read committed state (READ COMMITTED: each statement sees what was committed before it
 * began). The insert then moves last_seq by compare-and-set, UPDATE rooms SET last_seq = seq
 * WHERE name = room AND last_seq = seq - 1: an event whose seq is not exactly the stored last + 1
 * (another node wrote the room meanwhile) is refused with -EBUSY and its batch fails whole, so
 * no seq is ever stored twice or skipped. A new room's row is created (ON CONFLICT DO NOTHING)
 * before the lock: a second node creating it at once waits on the unique key, then locks the row
 * the first one committed. Locks taken in different orders by two nodes end in a deadlock that
 * PostgreSQL breaks by failing one transaction (-EBUSY: that batch is answered server_busy and
 * retried by cid). The lock is taken outside the insert's savepoint, since rolling back to a
 * savepoint gives up the row locks taken after it.
 *
 * Room creation. A registered user's join of a room with no row creates it (store_thread.c's
 * join_save) under one lock on the server-wide room count: a transaction-level advisory lock
 * (pg_advisory_xact_lock, ROOM_COUNT_LOCK_KEY), taken by room_count and held until the batch
 * ends. Every node's creation counts the public rooms and looks for the room's row again under
 * it, so two nodes making the last rooms at once are counted one after the other (the second
 * sees the first's row, committed before the lock passed on), and two making one room at once
 * both take the first one's owner. Joins of a room that has a row never take it.
 *
 * Errors. In PostgreSQL a failed statement aborts its whole transaction. So an insert runs inside
 * a savepoint (a refused insert, such as a duplicate cid, leaves the batch usable, as SQLite's
 * does), and any other failure inside a batch fails every later write and the commit with that
 * first error, until rollback (store_sqlite.c's batch rule). A lost connection is reset at the
 * next begin or read (and the statements prepared again); meanwhile everything fails with -EBUSY,
 * which the caller answers server_busy.
 *
 * Round trips. On one host a statement's cost is mostly its round trip, so a batch's work goes in
 * as few as it can, sent together in libpq's pipeline mode and read back at one sync point: the
 * batch's BEGIN and clock with its first statements, the rooms' rows made and locked with the
 * cid and mute checks of every event read under those locks (room_seqs; kept in memory for the
 * batch and brought up to date by its own writes), then each insert's statements, then COMMIT:
 * three round trips for a batch of one event. The order of statements, the locks and the
 * transaction are those of one statement after another.
 *
 * Search. The words are folded by search_text.c, as for SQLite, and stored as a tsvector of those
 * very words with their positions (no PostgreSQL parser or dictionary touches them, so both
 * backends match the same tokens); a query's FTS5 expression (search_text.h) becomes a tsquery of
 * the same terms: words ANDed, a phrase as words <-> words, a prefix as 'pre':*. Rows are
 * numbered by a sequence, which never hands out a number twice, even after a rollback.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "search_text.h"
#include "store_rows.h"
#include "text.h"

/* The migrations' advisory lock: any constant, the same in every parley binary. */
#define MIGRATE_LOCK_KEY 7260130411LL
/* The room count's advisory lock (see DESIGN): another constant, as SQL text. */
#define ROOM_COUNT_LOCK_KEY "7260130412"
#define CONNECT_TIMEOUT_S "5"
#define SEARCH_PAGE 256
#define RECONNECT_EVERY_MS 1000

/* Column types: byte-wise collation for every name and key (ranges, ordering, LIKE), and
 * lower() under it, which is ASCII case folding whatever the database's locale. */
#define CTEXT "text COLLATE \"C\""
#define LC(x) "lower(" x " COLLATE \"C\")"

/*
 * Schema migrations: step i takes schema version i to i + 1 (table parley_schema). Append
 * steps, never edit a released one. Step 1 is the whole schema of store_sqlite.c's five steps,
 * in PostgreSQL's types; its comments there say what each table holds.
 */
static const char *const migrations[] = {
    "CREATE TABLE rooms("
    " name " CTEXT " PRIMARY KEY,"
    " created_ms bigint NOT NULL,"
    " last_seq bigint NOT NULL DEFAULT 0,"
    " owner " CTEXT ","
    " topic text NOT NULL DEFAULT '');"
    "CREATE TABLE events("
    " room " CTEXT " NOT NULL,"
    " seq bigint NOT NULL,"
    " ts bigint NOT NULL,"
    " sender " CTEXT " NOT NULL,"
    " sender_lc " CTEXT " NOT NULL,"
    " text text NOT NULL,"
    " cid " CTEXT ","
    " type " CTEXT " NOT NULL DEFAULT 'message',"
    " identity " CTEXT " NOT NULL,"
    " target bigint,"
    " reply_to bigint,"
    " mentions text,"
    " edited_ms bigint,"
    " deleted integer NOT NULL DEFAULT 0,"
    " subject " CTEXT ","
    " detail text,"
    " num bigint,"
    " PRIMARY KEY(room, seq));"
    /* cid idempotency across nodes: a retry at any node finds the first row, or fails here. */
    "CREATE UNIQUE INDEX events_cid ON events(room, identity, cid) WHERE cid IS NOT NULL;"
    "CREATE INDEX events_target ON events(room, target) WHERE target IS NOT NULL;"
    "CREATE INDEX events_guest ON events(identity) WHERE identity >= 'guest:' AND identity < 'guest;';"
    "CREATE TABLE users("
    " name_lc " CTEXT " PRIMARY KEY,"
    " name " CTEXT " NOT NULL,"
    " pwhash text NOT NULL,"
    " created_ms bigint NOT NULL);"
    "CREATE TABLE tokens("
    " hash bytea PRIMARY KEY,"
    " user_lc " CTEXT " NOT NULL,"
    " \"user\" " CTEXT " NOT NULL,"
    " guest integer NOT NULL,"
    " guest_session bigint NOT NULL,"
    " expires_ms bigint NOT NULL);"
    "CREATE INDEX tokens_user ON tokens(user_lc);"
    "CREATE INDEX tokens_expiry ON tokens(expires_ms);"
    "CREATE TABLE reactions("
    " room " CTEXT " NOT NULL,"
    " target bigint NOT NULL,"
    " emoji " CTEXT " NOT NULL,"
    " identity " CTEXT " NOT NULL,"
    " \"user\" " CTEXT " NOT NULL,"
    " seq bigint NOT NULL,"
    " PRIMARY KEY(room, target, emoji, identity));"
    "CREATE INDEX reactions_order ON reactions(room, target, seq);"
    "CREATE TABLE mentions("
    " room " CTEXT " NOT NULL,"
    " user_lc " CTEXT " NOT NULL,"
    " seq bigint NOT NULL,"
    " PRIMARY KEY(room, user_lc, seq));"
    "CREATE INDEX mentions_seq ON mentions(room, seq);"
    /* Search: one row per message not deleted; words and rkey (the room name's words) as
     * tsvectors of search_text.c's folded words. */
    "CREATE SEQUENCE search_rid;"
    "CREATE TABLE search_rows("
    " rid bigint PRIMARY KEY,"
    " room " CTEXT " NOT NULL,"
    " seq bigint NOT NULL,"
    " ts bigint NOT NULL,"
    " words tsvector NOT NULL,"
    " rkey tsvector NOT NULL,"
    " UNIQUE(room, seq));"
    "CREATE INDEX search_words ON search_rows USING gin(words);"
    "CREATE TABLE read_markers("
    " account " CTEXT " NOT NULL,"
    " room " CTEXT " NOT NULL,"
    " seq bigint NOT NULL,"
    " PRIMARY KEY(account, room));"
    "CREATE TABLE saved_rooms("
    " account " CTEXT " NOT NULL,"
    " room " CTEXT " NOT NULL,"
    " PRIMARY KEY(account, room));"
    "CREATE TABLE room_ops("
    " room " CTEXT " NOT NULL,"
    " name_lc " CTEXT " NOT NULL,"
    " PRIMARY KEY(room, name_lc));"
    "CREATE TABLE room_bans("
    " room " CTEXT " NOT NULL,"
    " name_lc " CTEXT " NOT NULL,"
    " until_ms bigint NOT NULL,"
    " PRIMARY KEY(room, name_lc));"
    "CREATE TABLE room_mutes("
    " room " CTEXT " NOT NULL,"
    " name_lc " CTEXT " NOT NULL,"
    " until_ms bigint NOT NULL,"
    " PRIMARY KEY(room, name_lc));",
    /* dm_rooms: a user's dm rooms where it is the second party ("dm:<a>:<user>"); those where
     * it is the first are a range of the primary key. */
    "CREATE INDEX rooms_dm_second ON rooms(split_part(name, ':', 3)) WHERE name LIKE 'dm:%';",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* An event row as read back (store_sqlite.c's EVENT_COLS, in the same order). */
#define EVENT_COLS                                                                                 \
    "e.seq, e.ts, e.sender, e.text, e.cid, e.type, e.target, e.reply_to, e.mentions, e.edited_ms," \
    " e.deleted, e.detail, e.num, t.deleted, t.sender, e.subject"
#define EVENT_FROM "events e LEFT JOIN events t ON t.room = e.room AND t.seq = e.target"
#define READ_WHERE "e.room = $1 AND e.seq > $2 AND e.seq < $3 AND e.ts >= $4"

enum stmt {
    ST_CLOCK,
    ST_LOCK_ROOM,
    ST_ROOM_ENSURE,
    ST_ROOM_ADVANCE,
    ST_LOAD_ROOMS,
    ST_LOAD_USERS,
    ST_DM_ROOMS,
    ST_DM_ROOMS_OF,
    ST_FIND_CID,
    ST_INSERT_MSG,
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
    ST_NEWEST_OWN,
    ST_MENTION_ADD,
    ST_MENTION_CLEAR,
    ST_TRIM_MENTIONS,
    ST_NEXT_MESSAGE,
    ST_SEARCH_ADD,
    ST_SEARCH_EDIT,
    ST_SEARCH_DROP_ROW,
    ST_SEARCH_TRIM,
    ST_SEARCH_SCAN,
    ST_SEARCH_SCAN_ROOM,
    ST_SEARCH_MSG,
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
    ST_ROOM_COUNT_LOCK,
    ST_ROOM_COUNT,
    ST_ROOMS_ENSURE,
    ST_ROOMS_LOCK,
    ST_PREFETCH_CIDS,
    ST_PREFETCH_MUTES,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_CLOCK] = "SELECT (extract(epoch FROM now()) * 1000)::bigint",
    /* The room's row lock (see DESIGN): held until the batch ends. */
    [ST_LOCK_ROOM] = "SELECT last_seq FROM rooms WHERE name = $1 FOR UPDATE",
    [ST_ROOM_ENSURE] = "INSERT INTO rooms(name, created_ms) VALUES($1, $2::bigint)"
                       " ON CONFLICT(name) DO NOTHING",
    /* Compare-and-set: no row changed means seq is not the stored last + 1. */
    [ST_ROOM_ADVANCE] = "UPDATE rooms SET last_seq = $2::bigint WHERE name = $1"
                        " AND last_seq = $2::bigint - 1",
    [ST_LOAD_ROOMS] = "SELECT name, last_seq, created_ms FROM rooms",
    [ST_LOAD_USERS] = "SELECT name, created_ms FROM users",
    /* Both halves by an index: the primary key's range ("dm:<user>:<b>"), then rooms_dm_second
     * ("dm:<a>:<user>": no name holds ':', so the third part is the second user). */
    [ST_DM_ROOMS] = "SELECT name, last_seq, created_ms FROM rooms"
                    " WHERE name >= 'dm:' || $1 || ':' AND name < 'dm:' || $1 || ';'"
                    " UNION ALL SELECT name, last_seq, created_ms FROM rooms"
                    " WHERE name LIKE 'dm:%' AND split_part(name, ':', 3) = $1",
    /* ST_DM_ROOMS for each of the names in $1 (one a line), each room once. */
    [ST_DM_ROOMS_OF] = "WITH u(a) AS (SELECT unnest(string_to_array($1, chr(10))))"
                       " SELECT r.name, r.last_seq, r.created_ms FROM u JOIN rooms r"
                       " ON r.name >= 'dm:' || u.a || ':' AND r.name < 'dm:' || u.a || ';'"
                       " UNION SELECT name, last_seq, created_ms FROM rooms"
                       " WHERE name LIKE 'dm:%' AND split_part(name, ':', 3) IN (SELECT a FROM u)",
    [ST_FIND_CID] = "SELECT seq FROM events WHERE room = $1 AND identity = " LC("$2::text")
                    " AND cid = $3",
    [ST_INSERT_MSG] =
        "INSERT INTO events(room, seq, ts, sender, sender_lc, text, cid, type, identity, target,"
        " reply_to, mentions, detail, num, subject)"
        " VALUES($1, $2, $3, $4, " LC("$4::text") ", $5, $6, $7, COALESCE($8, " LC("$4::text") "),"
        " $9, $10, $11, $12, $13, $14)",
    /* A row a batch made before locking it (room_seqs: no owner, nothing stored yet) is the
     * room being created: it takes the owner. */
    [ST_ROOM_CREATE] = "INSERT INTO rooms(name, created_ms, last_seq, owner)"
                       " VALUES($1, $2, 0, $3) ON CONFLICT(name) DO UPDATE SET owner = $3"
                       " WHERE rooms.owner IS NULL AND rooms.last_seq = 0 AND $3 IS NOT NULL",
    [ST_TRIM] = "DELETE FROM events WHERE room = $1 AND seq <= $2",
    [ST_READ_OLDEST] =
        "SELECT " EVENT_COLS " FROM " EVENT_FROM " WHERE " READ_WHERE " ORDER BY e.seq LIMIT $5",
    [ST_READ_NEWEST] = "SELECT * FROM (SELECT " EVENT_COLS " FROM " EVENT_FROM " WHERE " READ_WHERE
                       " ORDER BY e.seq DESC LIMIT $5) r ORDER BY 1",
    [ST_FIRST_SEQ] = "SELECT COALESCE(MIN(seq), 0) FROM events WHERE room = $1",
    [ST_USER_CREATE] = "INSERT INTO users(name_lc, name, pwhash, created_ms)"
                       " VALUES(" LC("$1::text") ", $1, $2, $3)",
    [ST_USER_GET] = "SELECT name, pwhash, created_ms FROM users WHERE name_lc = " LC("$1::text"),
    [ST_TOKEN_PUT] = "INSERT INTO tokens(hash, user_lc, \"user\", guest, guest_session, expires_ms)"
                     " VALUES($1, " LC("$2::text") ", $2, $3, $4, $5) ON CONFLICT(hash) DO UPDATE"
                     " SET user_lc = excluded.user_lc, \"user\" = excluded.\"user\","
                     " guest = excluded.guest, guest_session = excluded.guest_session,"
                     " expires_ms = excluded.expires_ms",
    [ST_TOKEN_GET] = "SELECT \"user\", guest, guest_session, expires_ms FROM tokens"
                     " WHERE hash = $1 AND expires_ms > $2",
    [ST_TOKEN_DROP_GUEST] = "DELETE FROM tokens WHERE user_lc = " LC("$1::text") " AND guest <> 0",
    [ST_TOKEN_EXPIRE] = "DELETE FROM tokens WHERE expires_ms <= $1",
    [ST_MSG_GET] = "SELECT ts, deleted, identity, sender FROM events"
                   " WHERE room = $1 AND seq = $2 AND type = 'message'",
    [ST_REACT_HELD] = "SELECT 1 FROM reactions"
                      " WHERE room = $1 AND target = $2 AND emoji = $3 AND identity = $4",
    [ST_REACT_EMOJI] = "SELECT 1 FROM reactions WHERE room = $1 AND target = $2 AND emoji = $3"
                       " LIMIT 1",
    [ST_REACT_DISTINCT] = "SELECT COUNT(DISTINCT emoji) FROM reactions"
                          " WHERE room = $1 AND target = $2",
    [ST_REACT_ADD] = "INSERT INTO reactions(room, target, emoji, identity, \"user\", seq)"
                     " VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    [ST_REACT_DROP] = "DELETE FROM reactions"
                      " WHERE room = $1 AND target = $2 AND emoji = $3 AND identity = $4",
    [ST_REACTIONS_OF] = "SELECT emoji, identity, \"user\" FROM reactions"
                        " WHERE room = $1 AND target = $2 ORDER BY seq",
    /* Rules 52, 53: superseded and deleted texts are overwritten in the row (VACUUM, run by
     * checkpoint, then frees the old row versions). */
    [ST_EDIT_BLANK] = "UPDATE events SET text = '', mentions = NULL"
                      " WHERE room = $1 AND target = $2 AND type = 'edit' AND seq < $3",
    [ST_EDIT_APPLY] = "UPDATE events SET text = $3, mentions = $4, edited_ms = $5"
                      " WHERE room = $1 AND seq = $2 AND type = 'message'",
    [ST_DELETE_MSG] = "UPDATE events SET text = '', mentions = NULL, reply_to = NULL, deleted = 1"
                      " WHERE room = $1 AND seq = $2 AND type = 'message'",
    [ST_DELETE_DEPS] = "UPDATE events SET text = '', mentions = NULL, detail = NULL"
                       " WHERE room = $1 AND target = $2 AND type IN ('edit', 'reaction')",
    [ST_DELETE_REACTIONS] = "DELETE FROM reactions WHERE room = $1 AND target = $2",
    [ST_HISTORY] = "SELECT * FROM (SELECT " EVENT_COLS " FROM " EVENT_FROM
                   " WHERE e.room = $1 AND e.type = 'message' AND e.seq < $2 AND e.ts >= $3"
                   " AND e.deleted <= $5 ORDER BY e.seq DESC LIMIT $4) r ORDER BY 1",
    [ST_READ_TARGET] = "SELECT " EVENT_COLS " FROM " EVENT_FROM
                       " WHERE e.room = $1 AND (e.seq = $2 OR e.target = $2) ORDER BY e.seq",
    [ST_RETENTION_CUT] = "SELECT seq FROM events WHERE room = $1 AND type = 'message'"
                         " ORDER BY seq DESC LIMIT 1 OFFSET $2",
    [ST_TRIM_REACTIONS] = "DELETE FROM reactions WHERE room = $1 AND target <= $2",
    [ST_CLAIM_EVENTS] = "UPDATE events SET identity = $2, sender = $3, sender_lc = " LC("$3::text")
                        " WHERE identity = $1 AND identity >= 'guest:' AND identity < 'guest;'"
                        " AND room NOT LIKE 'dm:%'",
    [ST_CLAIM_REACTIONS] = "UPDATE reactions SET identity = $2, \"user\" = $3"
                           " WHERE identity = $1 AND room NOT LIKE 'dm:%'",
    [ST_NEWEST_OWN] = "SELECT seq FROM events WHERE room = $1 AND identity = $2"
                      " AND type = 'message' AND deleted = 0 ORDER BY seq DESC LIMIT 1",
    [ST_MENTION_ADD] = "INSERT INTO mentions(room, user_lc, seq) VALUES($1, " LC("$3::text") ", $2)"
                       " ON CONFLICT DO NOTHING",
    [ST_MENTION_CLEAR] = "DELETE FROM mentions WHERE room = $1 AND seq = $2",
    [ST_TRIM_MENTIONS] = "DELETE FROM mentions WHERE room = $1 AND seq <= $2",
    [ST_NEXT_MESSAGE] = "SELECT COALESCE(MIN(seq), 0) FROM events WHERE room = $1"
                        " AND type = 'message' AND seq > $2",
    /* $3 the words as a tsvector literal (tsv_literal), $4 ts, $5 the room's. */
    [ST_SEARCH_ADD] = "INSERT INTO search_rows(rid, room, seq, ts, words, rkey)"
                      " VALUES(nextval('search_rid'), $1, $2, $4, $3::tsvector, $5::tsvector)",
    [ST_SEARCH_EDIT] = "UPDATE search_rows SET words = $3::tsvector WHERE room = $1 AND seq = $2",
    [ST_SEARCH_DROP_ROW] = "DELETE FROM search_rows WHERE room = $1 AND seq = $2",
    [ST_SEARCH_TRIM] = "DELETE FROM search_rows WHERE room = $1 AND seq <= $2",
    /* One page of the scan, newest first; the next page starts below its last rid. */
    [ST_SEARCH_SCAN] = "SELECT rid, room, seq, ts FROM search_rows"
                       " WHERE words @@ $1::tsquery AND rid <= $2 ORDER BY rid DESC LIMIT $3",
    [ST_SEARCH_SCAN_ROOM] = "SELECT rid, room, seq, ts FROM search_rows"
                            " WHERE words @@ $1::tsquery AND rkey @@ $4::tsquery AND rid <= $2"
                            " ORDER BY rid DESC LIMIT $3",
    [ST_SEARCH_MSG] = "SELECT " EVENT_COLS " FROM " EVENT_FROM
                      " WHERE e.room = $1 AND e.seq = $2 AND e.type = 'message' AND e.deleted = 0",
    [ST_MARKER_GET] = "SELECT seq FROM read_markers WHERE account = $1 AND room = $2",
    [ST_MARKER_RAISE] = "INSERT INTO read_markers(account, room, seq) VALUES($1, $2, $3)"
                        " ON CONFLICT(account, room) DO UPDATE"
                        " SET seq = GREATEST(read_markers.seq, excluded.seq)",
    [ST_MARKER_INIT] = "INSERT INTO read_markers(account, room, seq) VALUES($1, $2, $3)"
                       " ON CONFLICT DO NOTHING",
    [ST_SAVED_HAS] = "SELECT 1 FROM saved_rooms WHERE account = $1 AND room = $2",
    [ST_SAVED_COUNT] = "SELECT COUNT(*) FROM saved_rooms WHERE account = $1",
    [ST_SAVED_ADD] = "INSERT INTO saved_rooms(account, room) VALUES($1, $2) ON CONFLICT DO NOTHING",
    [ST_SAVED_DROP] = "DELETE FROM saved_rooms WHERE account = $1 AND room = $2",
    [ST_SAVED_LIST] = "SELECT s.room, COALESCE(m.seq, 0), COALESCE(r.last_seq, 0)"
                      " FROM saved_rooms s"
                      " LEFT JOIN read_markers m ON m.account = s.account AND m.room = s.room"
                      " LEFT JOIN rooms r ON r.name = s.room"
                      " WHERE s.account = $1 ORDER BY s.room",
    [ST_UNREAD] = "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room = $1 AND seq > $2"
                  " AND type = 'message' AND deleted = 0 AND identity <> $3 AND ts >= $4"
                  " LIMIT $5) c",
    [ST_UNREAD_MENTIONS] =
        "SELECT COUNT(*) FROM (SELECT 1 FROM mentions m JOIN events e"
        " ON e.room = m.room AND e.seq = m.seq WHERE m.room = $1 AND m.user_lc = $3"
        " AND m.seq > $2 AND e.identity <> $3 AND e.ts >= $4 AND e.deleted = 0 LIMIT $5) c",
    [ST_TOPIC_SET] = "INSERT INTO rooms(name, created_ms, last_seq, topic) VALUES($1, $3, 0, $2)"
                     " ON CONFLICT(name) DO UPDATE SET topic = excluded.topic",
    [ST_OP_ADD] = "INSERT INTO room_ops(room, name_lc) VALUES($1, " LC("$2::text") ")"
                  " ON CONFLICT DO NOTHING",
    [ST_OP_DROP] = "DELETE FROM room_ops WHERE room = $1 AND name_lc = " LC("$2::text"),
    [ST_OWNER_OLD_TO_OP] = "INSERT INTO room_ops(room, name_lc) SELECT name, owner"
                           " FROM rooms WHERE name = $1 AND owner IS NOT NULL"
                           " AND owner <> " LC("$2::text") " ON CONFLICT DO NOTHING",
    [ST_OWNER_SET] = "INSERT INTO rooms(name, created_ms, last_seq, owner)"
                     " VALUES($1, $3, 0, " LC("$2::text") ")"
                     " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner",
    [ST_BAN_SET] = "INSERT INTO room_bans(room, name_lc, until_ms) VALUES($1, " LC("$2::text") ", $3)"
                   " ON CONFLICT(room, name_lc) DO UPDATE SET until_ms = excluded.until_ms",
    [ST_BAN_DROP] = "DELETE FROM room_bans WHERE room = $1 AND name_lc = " LC("$2::text"),
    [ST_MUTE_SET] = "INSERT INTO room_mutes(room, name_lc, until_ms)"
                    " VALUES($1, " LC("$2::text") ", $3)"
                    " ON CONFLICT(room, name_lc) DO UPDATE SET until_ms = excluded.until_ms",
    [ST_MUTE_DROP] = "DELETE FROM room_mutes WHERE room = $1 AND name_lc = " LC("$2::text"),
    [ST_ROOM_OWNER] = "SELECT COALESCE(owner, '') FROM rooms WHERE name = $1",
    /* The server-wide room count's lock (see DESIGN), held until the transaction ends. */
    [ST_ROOM_COUNT_LOCK] = "SELECT pg_advisory_xact_lock(" ROOM_COUNT_LOCK_KEY ")",
    /* The public rooms, $1 counted whether it has a row or not. */
    [ST_ROOM_COUNT] = "SELECT COUNT(*) + CASE WHEN EXISTS(SELECT 1 FROM rooms WHERE name = $1)"
                      " THEN 0 ELSE 1 END FROM rooms WHERE name NOT LIKE 'dm:%'",
    /* A batch's rooms (room_seqs): rows made, then locked, both in byte order of the names. */
    [ST_ROOMS_ENSURE] = "INSERT INTO rooms(name, created_ms)"
                        " SELECT n,"
                        " GREATEST($2::bigint, (extract(epoch FROM now()) * 1000)::bigint)"
                        " FROM unnest($1::text[]) AS n ORDER BY n COLLATE \"C\""
                        " ON CONFLICT(name) DO NOTHING",
    [ST_ROOMS_LOCK] = "SELECT name, last_seq FROM rooms WHERE name = ANY($1::text[])"
                      " ORDER BY name FOR UPDATE",
    /* A batch's checks read at once (prefetch): cids of (room, identity, cid), mutes of
     * (room, name). */
    [ST_PREFETCH_CIDS] = "SELECT e.room, e.identity, e.cid, e.seq FROM events e"
                         " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(room, id, cid)"
                         " ON e.room = k.room AND e.identity = " LC("k.id") " AND e.cid = k.cid",
    [ST_PREFETCH_MUTES] = "SELECT m.room, m.name_lc, m.until_ms FROM room_mutes m"
                          " JOIN unnest($1::text[], $2::text[]) AS k(room, name)"
                          " ON m.room = k.room AND m.name_lc = k.name",
    [ST_IS_OP] = "SELECT 1 FROM room_ops WHERE room = $1 AND name_lc = $2",
    [ST_BAN_GET] = "SELECT until_ms FROM room_bans WHERE room = $1 AND name_lc = $2"
                   " AND (until_ms = 0 OR until_ms > $3)",
    [ST_MUTE_GET] = "SELECT until_ms FROM room_mutes WHERE room = $1 AND name_lc = $2"
                    " AND (until_ms = 0 OR until_ms > $3)",
    [ST_LOAD_META] = "SELECT name, owner, topic FROM rooms WHERE owner IS NOT NULL OR topic <> ''",
    [ST_LOAD_OPS] = "SELECT room, name_lc, 0 FROM room_ops",
    [ST_LOAD_BANS] = "SELECT room, name_lc, until_ms FROM room_bans"
                     " WHERE until_ms = 0 OR until_ms > $1",
    [ST_LOAD_MUTES] = "SELECT room, name_lc, until_ms FROM room_mutes"
                      " WHERE until_ms = 0 OR until_ms > $1",
};

struct pg_store {
    struct store base; /* first, so a struct store * is a struct pg_store * */
    PGconn *conn;
    bool ready;    /* connected with every statement prepared */
    bool batch;    /* between a successful begin and its commit or rollback */
    bool begin_due; /* the batch's BEGIN is not sent yet: it goes with the first statement */
    int batch_err; /* the error that ended the batch early, or 0 */
    bool standby;  /* take_over still has to migrate */
    int64_t retry_at; /* after a failed reconnection: no new attempt before (monotonic ms) */
    /* The rooms whose row lock this batch holds (see DESIGN): room -> the room itself. */
    struct map locked;
    /* What the batch's checks asked for at its start (prefetch), as the database holds it under
     * the rooms' locks and the batch's own writes changed it: "room\037identity\037cid" -> struct
     * known, and "room\037name" -> struct known (a mute). */
    struct map cids, mutes;
    /* Inside pg_insert: statements are sent in pipeline mode and their results read together at
     * the end (one round trip), in this order. */
    bool piping;
    struct piped *piped;
    size_t n_piped, cap_piped;
};

/* An answer kept by prefetch: whether a row exists, and its seq (a cid) or until (a mute). */
struct known {
    bool found;
    int64_t value;
};

/* A statement sent in pipeline mode whose result is still to be read. */
struct piped {
    const char *op;
    bool one_row;     /* it must change exactly one row (the seq's compare-and-set) */
    PGresult **keep;  /* where its result goes (the caller clears it), or NULL */
};

/* The parameters of one statement, as text (NULL for SQL NULL), or binary for a hash. */
#define PARAMS_MAX 16
struct params {
    int n;
    const char *v[PARAMS_MAX];
    int len[PARAMS_MAX];
    int fmt[PARAMS_MAX];
    char num[PARAMS_MAX][24];
    char *owned[PARAMS_MAX]; /* copies freed by params_free */
};

static struct pg_store *from_base(struct store *s)
{
    return (struct pg_store *)s;
}

static void p_text(struct params *p, const char *v)
{
    p->v[p->n++] = v;
}

/* A text of n bytes, not necessarily NUL-terminated there: copied. */
static void p_textn(struct params *p, const char *v, size_t n)
{
    char *c = xmalloc(n + 1);
    if (n)
        memcpy(c, v, n);
    c[n] = '\0';
    p->owned[p->n] = c;
    p->v[p->n++] = c;
}

static void p_i64(struct params *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%" PRId64, v);
    p->v[p->n] = p->num[p->n];
    p->n++;
}

/* seq values are uint64_t in C and signed 64-bit in SQL: bounds beyond are clamped. */
static void p_seq(struct params *p, uint64_t v)
{
    p_i64(p, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void p_blob(struct params *p, const uint8_t *v, int n)
{
    p->v[p->n] = (const char *)v;
    p->len[p->n] = n;
    p->fmt[p->n] = 1;
    p->n++;
}

static void params_free(struct params *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->owned[i]);
    p->n = 0;
}

/* Maps a failed result to the store's errno-style codes (store.h) by its SQLSTATE. */
static int map_state(const char *state, bool conn_bad)
{
    if (conn_bad || !state)
        return -EBUSY; /* the server went away: a retry may well work */
    if (strcmp(state, "23505") == 0)
        return -EEXIST;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
        strncmp(state, "55P03", 5) == 0 || strncmp(state, "57", 2) == 0 ||
        strncmp(state, "08", 2) == 0 || strncmp(state, "53300", 5) == 0)
        return -EBUSY;
    if (strcmp(state, "53100") == 0 || strcmp(state, "54000") == 0)
        return -ENOSPC;
    return -EIO;
}

/* Logs a failure of op with PostgreSQL's own message; returns the mapped code. */
static int fail(struct pg_store *ps, const char *op, const PGresult *r)
{
    bool bad = PQstatus(ps->conn) != CONNECTION_OK;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(ps->conn);
    if (!msg || !*msg)
        msg = PQerrorMessage(ps->conn);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    char quoted[512];
    log_error("msg=store_error backend=postgres op=%s state=%s error=%s", op,
              state ? state : "none", log_quote(quoted, sizeof quoted, msg, n));
    metrics_engine_error(ENGINE_POSTGRES);
    if (bad) {
        ps->ready = false;
        metrics_set_store_problem("the PostgreSQL connection is lost");
    }
    return map_state(state, bad);
}

/* The batch rule (store_sqlite.c's): once a statement of the batch failed, PostgreSQL has
 * aborted the transaction, so every later write and the commit fail with that first error. */
static int batch_lost(struct pg_store *ps)
{
    if (ps->batch && ps->batch_err)
        return ps->batch_err;
    if (!ps->ready)
        return -EBUSY;
    return 0;
}

/* Passes ret through, remembering it if it ends the batch (anything but a plain answer). */
static int note(struct pg_store *ps, int ret)
{
    if (ret < 0 && ret != -ENOENT && ps->batch && !ps->batch_err)
        ps->batch_err = ret;
    return ret;
}

static int reconnect(struct pg_store *ps);
static int begin_now(struct pg_store *ps);
static int pipe_begin(struct pg_store *ps);
static int pipe_stmt(struct pg_store *ps, enum stmt id, const char *op, struct params *p,
                     PGresult **keep, bool one_row);
static int pipe_end(struct pg_store *ps, bool *conflict);

/* Runs statement id with p; a result the caller PQclears, or NULL after logging the failure as
 * op with *err set. Rows are returned as text; a failure inside a batch is noted. */
static PGresult *exec_stmt(struct pg_store *ps, enum stmt id, const char *op, struct params *p,
                           int *err)
{
    char name[16];
    snprintf(name, sizeof name, "s%d", (int)id);
    /* Outside a batch, a lost connection is tried again here (inside one, the batch is lost). */
    *err = ps->batch ? batch_lost(ps) : reconnect(ps);
    PGresult *r = NULL;
    if (*err == 0 && ps->begin_due && id == ST_USER_CREATE)
        *err = begin_now(ps); /* its refusal is told apart below, not by pipe_end */
    if (*err == 0 && ps->begin_due) {
        /* The batch's first statement: its BEGIN goes in the same round trip. */
        bool conflict;
        *err = pipe_begin(ps);
        if (*err == 0) {
            pipe_stmt(ps, id, op, p, &r, false);
            *err = pipe_end(ps, &conflict);
        }
        if (*err != 0) {
            PQclear(r);
            r = NULL;
        }
    } else if (*err == 0) {
        r = PQexecPrepared(ps->conn, name, p->n, p->v, p->len, p->fmt, 0);
        ExecStatusType t = PQresultStatus(r);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (id == ST_USER_CREATE && state && strcmp(state, "23505") == 0) {
            *err = -EEXIST; /* the name is taken: an answer, not a fault to log */
            PQclear(r);
            r = NULL;
        } else if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
            *err = fail(ps, op, r);
            PQclear(r);
            r = NULL;
        }
    }
    params_free(p);
    return r;
}

/* Runs a statement whose rows do not matter; 0 or the error, noted under the batch rule. While
 * piping, it is only sent: its failure comes from pipe_end. */
static int run(struct pg_store *ps, enum stmt id, const char *op, struct params *p)
{
    if (ps->piping)
        return pipe_stmt(ps, id, op, p, NULL, false);
    int err;
    PGresult *r = exec_stmt(ps, id, op, p, &err);
    PQclear(r);
    return note(ps, err);
}

/* Runs a statement answering one integer in its first row: 0 and *out, -ENOENT for no row. */
static int query_i64(struct pg_store *ps, enum stmt id, const char *op, struct params *p,
                     int64_t *out)
{
    int err;
    PGresult *r = exec_stmt(ps, id, op, p, &err);
    if (!r)
        return note(ps, err);
    int ret = -ENOENT;
    if (PQntuples(r) > 0) {
        *out = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        ret = 0;
    }
    PQclear(r);
    return ret;
}

/* Runs a plain SQL text (several statements allowed) outside the prepared ones. */
static int exec_sql(struct pg_store *ps, const char *op, const char *sql)
{
    if (ps->begin_due) {
        int ret = begin_now(ps);
        if (ret != 0)
            return ret;
    }
    PGresult *r = PQexec(ps->conn, sql);
    ExecStatusType t = PQresultStatus(r);
    int ret = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK ? 0 : fail(ps, op, r);
    PQclear(r);
    return ret;
}

/* --- pipeline mode: several statements in one round trip --- */

static int pipe_sql(struct pg_store *ps, const char *op, const char *sql);

/* Starts sending statements without waiting for their results (libpq's pipeline mode); a batch's
 * BEGIN not sent yet goes first. */
static int pipe_begin(struct pg_store *ps)
{
    if (!PQenterPipelineMode(ps->conn))
        return note(ps, fail(ps, "pipeline", NULL));
    ps->piping = true;
    ps->n_piped = 0;
    if (ps->begin_due) {
        ps->begin_due = false;
        pipe_sql(ps, "begin", "BEGIN");
    }
    return 0;
}

static void pipe_push(struct pg_store *ps, const char *op, PGresult **keep, bool one_row)
{
    if (ps->n_piped == ps->cap_piped) {
        ps->cap_piped = ps->cap_piped ? ps->cap_piped * 2 : 16;
        ps->piped = xrealloc(ps->piped, ps->cap_piped * sizeof *ps->piped);
    }
    ps->piped[ps->n_piped++] = (struct piped){.op = op, .one_row = one_row, .keep = keep};
}

/* Sends prepared statement id; its result is read by pipe_end (kept in *keep if given). */
static int pipe_stmt(struct pg_store *ps, enum stmt id, const char *op, struct params *p,
                     PGresult **keep, bool one_row)
{
    char name[16];
    snprintf(name, sizeof name, "s%d", (int)id);
    int ok = PQsendQueryPrepared(ps->conn, name, p->n, p->v, p->len, p->fmt, 0);
    params_free(p);
    if (!ok)
        return note(ps, fail(ps, op, NULL));
    pipe_push(ps, op, keep, one_row);
    return 0;
}

/* Sends a plain statement without parameters (a savepoint's). */
static int pipe_sql(struct pg_store *ps, const char *op, const char *sql)
{
    if (!PQsendQueryParams(ps->conn, sql, 0, NULL, NULL, NULL, NULL, 0))
        return note(ps, fail(ps, op, NULL));
    pipe_push(ps, op, NULL, false);
    return 0;
}

/*
 * Ends the pipeline: a sync point, then every result in the order sent. Returns 0 or the first
 * failure (PostgreSQL skipped every statement after it); *conflict when that was a statement
 * that changed no row where it had to change one. Not noted under the batch rule: the caller
 * decides. Leaves the connection out of pipeline mode, or marked lost.
 */
static int pipe_end(struct pg_store *ps, bool *conflict)
{
    int ret = 0;
    *conflict = false;
    ps->piping = false;
    if (!PQpipelineSync(ps->conn))
        ret = fail(ps, "pipeline", NULL);
    for (size_t i = 0; i < ps->n_piped; i++) {
        const struct piped *q = &ps->piped[i];
        PGresult *r = PQgetResult(ps->conn);
        if (!r) {
            int lost = fail(ps, q->op, NULL); /* the connection ended */
            ret = ret ? ret : lost;
            break;
        }
        ExecStatusType t = PQresultStatus(r);
        if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) {
            if (q->one_row && ret == 0 && strcmp(PQcmdTuples(r), "1") != 0) {
                *conflict = true;
                ret = -EBUSY;
            }
        } else if (t != PGRES_PIPELINE_ABORTED && ret == 0) {
            ret = fail(ps, q->op, r);
        }
        if (q->keep && ret == 0) {
            *q->keep = r;
        } else {
            PQclear(r);
        }
        PQclear(PQgetResult(ps->conn)); /* the NULL that ends each statement's results */
    }
    for (PGresult *r; PQstatus(ps->conn) == CONNECTION_OK && (r = PQgetResult(ps->conn));) {
        bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    if (!PQexitPipelineMode(ps->conn)) {
        ret = ret ? ret : fail(ps, "pipeline", NULL);
        ps->ready = false; /* reset at the next begin or read */
    }
    ps->n_piped = 0;
    return ret;
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* A text column, or NULL for SQL NULL; lives as long as r. */
static const char *col_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Copies a text column into out[size]; false if it is NULL or does not fit (a damaged row). */
static bool copy_col(const PGresult *r, int row, int col, char *out, size_t size)
{
    const char *v = col_text(r, row, col);
    size_t n = v ? (size_t)PQgetlength(r, row, col) : 0;
    if (!v || n >= size)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

/* --- connection --- */

static int prepare_all(struct pg_store *ps)
{
    for (int i = 0; i < ST_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        PGresult *r = PQprepare(ps->conn, name, stmt_sql[i], 0, NULL);
        int ret = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail(ps, "prepare", r);
        PQclear(r);
        if (ret != 0)
            return ret;
    }
    return 0;
}

/* The session settings every connection gets: UTF-8 both ways, and checks that the database
 * keeps text as UTF-8 (a SQL_ASCII or LATIN1 database would mangle messages). */
static int session_setup(struct pg_store *ps)
{
    if (PQsetClientEncoding(ps->conn, "UTF8") != 0)
        return fail(ps, "client_encoding", NULL);
    const char *enc = PQparameterStatus(ps->conn, "server_encoding");
    if (!enc || strcmp(enc, "UTF8") != 0) {
        log_error("msg=store_error backend=postgres op=open error=\"the database's encoding is "
                  "%s: parley needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')\"",
                  enc ? enc : "unknown");
        return -EIO;
    }
    /* A statement stuck behind another node's lock fails rather than holding the batch forever.
     * (No statement_timeout: a migration or a VACUUM may rightly take long.) */
    return exec_sql(ps, "session", "SET lock_timeout = '5s'");
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reconnects a lost connection and prepares the statements again; 0 or -EBUSY. A failed attempt
 * is not repeated for RECONNECT_EVERY_MS: each may block up to the connect timeout, and the
 * store thread has reads and batches waiting. */
static int reconnect(struct pg_store *ps)
{
    /* A batch's BEGIN waits for its first statement: a connection libpq knows to be closed is
     * made again here, where BEGIN's failure used to tell. */
    if (ps->ready && PQstatus(ps->conn) == CONNECTION_OK)
        return 0;
    ps->ready = false;
    int64_t now = mono_ms();
    if (ps->retry_at && now < ps->retry_at)
        return -EBUSY;
    if (PQstatus(ps->conn) != CONNECTION_OK || PQpipelineStatus(ps->conn) != PQ_PIPELINE_OFF)
        PQreset(ps->conn);
    if (PQstatus(ps->conn) != CONNECTION_OK) {
        fail(ps, "reconnect", NULL);
        ps->retry_at = mono_ms() + RECONNECT_EVERY_MS;
        return -EBUSY;
    }
    ps->retry_at = 0;
    /* A reset connection has none of the session's statements or settings. */
    PGresult *r = PQexec(ps->conn, "DEALLOCATE ALL");
    PQclear(r);
    if (session_setup(ps) != 0 || prepare_all(ps) != 0)
        return -EBUSY;
    ps->ready = true;
    metrics_set_store_problem(NULL);
    log_info("msg=store_reconnected backend=postgres");
    return 0;
}

/* Forgets the batch's locks and what its checks read ahead (at its end, or a new begin). */
static void forget_locks(struct pg_store *ps)
{
    map_free(&ps->locked);
    map_init(&ps->locked, true);
    map_free_all(&ps->cids);
    map_init(&ps->cids, true);
    map_free_all(&ps->mutes);
    map_init(&ps->mutes, true);
}

static bool is_locked(const struct pg_store *ps, const char *room)
{
    return map_get(&ps->locked, room) != NULL;
}

static void mark_locked(struct pg_store *ps, const char *room)
{
    map_put(&ps->locked, room, ps);
}

/*
 * Takes room's row lock for the rest of the batch, once per batch (see DESIGN). Outside a batch
 * nothing is locked: each statement stands alone. A room without a row has nothing to lock yet;
 * the insert that creates it takes the lock then.
 */
static int lock_room(struct pg_store *ps, const char *room)
{
    if (!ps->batch)
        return 0;
    if (is_locked(ps, room))
        return batch_lost(ps);
    struct params p = {0};
    p_text(&p, room);
    int64_t last;
    int ret = query_i64(ps, ST_LOCK_ROOM, "lock_room", &p, &last);
    if (ret == -ENOENT)
        return 0;
    if (ret == 0)
        mark_locked(ps, room);
    return ret;
}

/* The SQL text[] literal of names[0..n): {"a","b"}, quotes and backslashes escaped. */
static char *text_array(const char *const *names, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(names[i]) + 3;
    char *out = xmalloc(len), *o = out;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        *o++ = '"';
        for (const char *c = names[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* The key of a cid in the batch's prefetched answers: room, identity lower-cased (as find_cid
 * compares it), cid. */
static char *cid_key(const char *room, const char *identity, const char *cid)
{
    size_t nr = strlen(room), ni = strlen(identity), nc = strlen(cid);
    char *k = xmalloc(nr + ni + nc + 3);
    memcpy(k, room, nr);
    k[nr] = '\037';
    for (size_t i = 0; i < ni; i++)
        k[nr + 1 + i] = (char)(identity[i] >= 'A' && identity[i] <= 'Z' ? identity[i] + 32
                                                                       : identity[i]);
    k[nr + 1 + ni] = '\037';
    memcpy(k + nr + ni + 2, cid, nc + 1);
    return k;
}

static char *mute_key(const char *room, const char *name_lc)
{
    size_t nr = strlen(room), nn = strlen(name_lc);
    char *k = xmalloc(nr + nn + 2);
    memcpy(k, room, nr);
    k[nr] = '\037';
    memcpy(k + nr + 1, name_lc, nn + 1);
    return k;
}

/* Records an answer under key (taking the key). */
static void know(struct map *m, char *key, bool found, int64_t value)
{
    struct known *k = map_get(m, key);
    if (!k) {
        k = xmalloc(sizeof *k);
        map_put(m, key, k);
    }
    k->found = found;
    k->value = value;
    free(key);
}

/* The prefetched answer under key (taking the key), or NULL: ask the database. */
static const struct known *known(const struct map *m, char *key)
{
    const struct known *k = map_get(m, key);
    free(key);
    return k;
}

/* What a batch's checks will ask (store.h, room_seqs' keys), sent with the rooms' locks. */
struct prefetch {
    const char **col[5]; /* cids: room, identity, cid; mutes: room, name */
    size_t nc, nm;
    char *arr[5];
    PGresult *rc, *rm;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Sends the reads of the cids and mutes of keys[0..n) whose room is one of rooms[0..n_rooms)
 * (sorted, being locked in this same pipeline, just before) or was locked earlier in the batch:
 * those no other node can change before the batch ends.
 */
static void prefetch_send(struct pg_store *ps, struct prefetch *pf, const struct store_lookup *keys,
                          size_t n, const char *const *rooms, size_t n_rooms)
{
    *pf = (struct prefetch){0};
    for (int c = 0; c < 5; c++)
        pf->col[c] = xmalloc((n ? n : 1) * sizeof *pf->col[c]);
    for (size_t i = 0; i < n; i++) {
        const struct store_lookup *k = &keys[i];
        if (!is_locked(ps, k->room) &&
            !bsearch(&k->room, rooms, n_rooms, sizeof *rooms, by_name))
            continue;
        if (k->cid) {
            pf->col[0][pf->nc] = k->room;
            pf->col[1][pf->nc] = k->identity;
            pf->col[2][pf->nc++] = k->cid;
        }
        if (k->muted_lc) {
            pf->col[3][pf->nm] = k->room;
            pf->col[4][pf->nm++] = k->muted_lc;
        }
    }
    struct params p = {0};
    if (pf->nc) {
        for (int c = 0; c < 3; c++)
            p_text(&p, pf->arr[c] = text_array(pf->col[c], pf->nc));
        pipe_stmt(ps, ST_PREFETCH_CIDS, "prefetch", &p, &pf->rc, false);
    }
    if (pf->nm) {
        p = (struct params){0};
        for (int c = 3; c < 5; c++)
            p_text(&p, pf->arr[c] = text_array(pf->col[c], pf->nm));
        pipe_stmt(ps, ST_PREFETCH_MUTES, "prefetch", &p, &pf->rm, false);
    }
}

/* Keeps the answers of a prefetch whose pipeline succeeded: every key asked is recorded, found
 * or not (of the rooms actually locked); the batch's own writes keep them right (pg_insert,
 * pg_trim, pg_claim_guest). Then frees pf. */
static void prefetch_keep(struct pg_store *ps, struct prefetch *pf, bool ok)
{
    for (size_t i = 0; ok && i < pf->nc; i++)
        if (is_locked(ps, pf->col[0][i]))
            know(&ps->cids, cid_key(pf->col[0][i], pf->col[1][i], pf->col[2][i]), false, 0);
    for (size_t i = 0; ok && i < pf->nm; i++)
        if (is_locked(ps, pf->col[3][i]))
            know(&ps->mutes, mute_key(pf->col[3][i], pf->col[4][i]), false, 0);
    const PGresult *rc = pf->rc, *rm = pf->rm;
    for (int i = 0; ok && rc && i < PQntuples(rc); i++)
        if (is_locked(ps, PQgetvalue(rc, i, 0)))
            know(&ps->cids,
                 cid_key(PQgetvalue(rc, i, 0), PQgetvalue(rc, i, 1), PQgetvalue(rc, i, 2)), true,
                 col_i64(rc, i, 3));
    for (int i = 0; ok && rm && i < PQntuples(rm); i++)
        if (is_locked(ps, PQgetvalue(rm, i, 0)))
            know(&ps->mutes, mute_key(PQgetvalue(rm, i, 0), PQgetvalue(rm, i, 1)), true,
                 col_i64(rm, i, 2));
    PQclear(pf->rc);
    PQclear(pf->rm);
    for (int c = 0; c < 5; c++) {
        free(pf->arr[c]);
        free(pf->col[c]);
    }
}

/* The rooms' last seqs under their row locks (store.h): the counter of a node that another node
 * overtook is set right here, before it numbers an event, instead of failing at the insert. The
 * rows are made first, so their locks are taken here, in the caller's order, not at the insert;
 * both statements, the reads of what the batch's checks will ask under those locks (keys) and
 * the clock go in one round trip (with the batch's BEGIN when it is the first). */
static int pg_room_seqs(struct store *s, const char *const *rooms, size_t n, int64_t floor_ms,
                        uint64_t *seqs, const struct store_lookup *keys, size_t n_keys,
                        int64_t *clock)
{
    struct pg_store *ps = from_base(s);
    int ret = batch_lost(ps);
    if (ret != 0)
        return ret;
    char *names = text_array(rooms, n);
    PGresult *r = NULL, *rclock = NULL;
    struct prefetch pf = {0};
    bool conflict, sent = false;
    ret = pipe_begin(ps);
    if (ret == 0) {
        struct params p = {0};
        if (clock)
            pipe_stmt(ps, ST_CLOCK, "clock", &p, &rclock, false);
        p_text(&p, names);
        p_i64(&p, floor_ms);
        pipe_stmt(ps, ST_ROOMS_ENSURE, "room_seqs", &p, NULL, false);
        p = (struct params){0};
        p_text(&p, names);
        pipe_stmt(ps, ST_ROOMS_LOCK, "room_seqs", &p, &r, false);
        prefetch_send(ps, &pf, keys, n_keys, rooms, n);
        sent = true;
        ret = note(ps, pipe_end(ps, &conflict));
    }
    free(names);
    /* Both lists are in byte order of the names. */
    int row = 0, rows = r ? PQntuples(r) : 0;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        int c = 1;
        while (row < rows && (c = strcmp(PQgetvalue(r, row, 0), rooms[i])) < 0)
            row++;
        seqs[i] = 0;
        if (row < rows && c == 0) {
            int64_t last = col_i64(r, row, 1);
            seqs[i] = last > 0 ? (uint64_t)last : 0;
            mark_locked(ps, rooms[i]);
        }
    }
    PQclear(r);
    if (ret == 0 && clock) {
        if (rclock && PQntuples(rclock) > 0)
            *clock = col_i64(rclock, 0, 0);
        else
            ret = note(ps, -EIO);
    }
    PQclear(rclock);
    if (sent)
        prefetch_keep(ps, &pf, ret == 0);
    return ret;
}

/* --- the batch --- */

/* A batch's BEGIN waits for its first statement and goes in the same round trip (pipe_begin,
 * exec_stmt); a batch that sends nothing costs none. */
static int pg_begin(struct store *s)
{
    struct pg_store *ps = from_base(s);
    int ret = reconnect(ps);
    ps->batch = ret == 0;
    ps->begin_due = ps->batch;
    ps->batch_err = 0;
    forget_locks(ps);
    return ret;
}

/* Sends the batch's BEGIN alone, before a statement that cannot carry it. */
static int begin_now(struct pg_store *ps)
{
    ps->begin_due = false;
    return note(ps, exec_sql(ps, "begin", "BEGIN"));
}

static void end_tx(struct pg_store *ps)
{
    if (PQstatus(ps->conn) == CONNECTION_OK &&
        PQtransactionStatus(ps->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(ps->conn, "ROLLBACK");
        PQclear(r);
    }
    ps->batch = false;
    ps->begin_due = false;
    ps->batch_err = 0;
    forget_locks(ps);
}

static int pg_commit(struct store *s)
{
    struct pg_store *ps = from_base(s);
    int ret = batch_lost(ps);
    if (ret == 0 && !ps->begin_due) { /* else nothing was sent: nothing to commit */
        PGresult *r = PQexec(ps->conn, "COMMIT");
        /* COMMIT of an aborted transaction answers ROLLBACK, not an error. */
        const char *tag = PQcmdStatus(r);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            ret = fail(ps, "commit", r);
        else if (!tag || strcmp(tag, "COMMIT") != 0)
            ret = -EIO;
        PQclear(r);
    }
    end_tx(ps);
    return ret;
}

static void pg_rollback(struct store *s)
{
    end_tx(from_base(s));
}

/* Outside a batch an insert is a transaction of its own: begun here, ended by finish_alone. */
static int begin_alone(struct pg_store *ps, bool *alone)
{
    *alone = !ps->batch;
    if (!*alone)
        return batch_lost(ps);
    return pg_begin(&ps->base);
}

static int finish_alone(struct pg_store *ps, bool alone, int ret)
{
    if (!alone)
        return ret;
    if (ret == 0)
        return pg_commit(&ps->base);
    end_tx(ps);
    return ret;
}

/* The transaction's start on the database's clock (now()), in ms since the epoch. */
static int pg_clock_ms(struct store *s, int64_t *ms)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    return query_i64(ps, ST_CLOCK, "clock", &p, ms);
}

/* --- writes --- */

/* A lookup of (room, identity[, cid]) answering one seq, under the room's lock: 0 and *seq, or
 * -ENOENT. */
static int locked_seq_lookup(struct store *s, enum stmt id, const char *op, const char *room,
                             const char *identity, const char *cid, uint64_t *seq)
{
    struct pg_store *ps = from_base(s);
    int ret = lock_room(ps, room);
    if (ret != 0)
        return ret;
    struct params p = {0};
    p_text(&p, room);
    p_text(&p, identity);
    if (cid)
        p_text(&p, cid);
    int64_t v = 0;
    ret = query_i64(ps, id, op, &p, &v);
    if (ret == 0)
        *seq = (uint64_t)v;
    return ret;
}

static int pg_find_cid(struct store *s, const char *room, const char *identity, const char *cid,
                       uint64_t *seq)
{
    struct pg_store *ps = from_base(s);
    const struct known *k = ps->batch && cid ? known(&ps->cids, cid_key(room, identity, cid)) : NULL;
    if (k) {
        int ret = batch_lost(ps);
        if (ret == 0 && !k->found)
            ret = -ENOENT;
        if (ret == 0)
            *seq = (uint64_t)k->value;
        return ret;
    }
    return locked_seq_lookup(s, ST_FIND_CID, "find_cid", room, identity, cid ? cid : "", seq);
}

/* Runs a statement of (room, seq) and what else it takes, as a write of the batch. */
static int room_seq_write(struct pg_store *ps, enum stmt id, const char *op, const char *room,
                          uint64_t seq)
{
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, seq);
    return run(ps, id, op, &p);
}

/* Records who message seq of room mentions now (names joined by ' ', or NULL). */
static int set_mentions(struct pg_store *ps, const char *room, uint64_t seq, const char *names)
{
    int ret = room_seq_write(ps, ST_MENTION_CLEAR, "mention_clear", room, seq);
    for (const char *q = names; ret == 0 && q && *q;) {
        const char *sp = strchr(q, ' ');
        size_t n = sp ? (size_t)(sp - q) : strlen(q);
        if (n > 0 && n <= STORE_NAME_MAX) {
            struct params p = {0};
            p_text(&p, room);
            p_seq(&p, seq);
            p_textn(&p, q, n);
            ret = run(ps, ST_MENTION_ADD, "mention_add", &p);
        }
        q += n + (sp ? 1 : 0);
    }
    return ret;
}

/* PostgreSQL keeps a lexeme of at most this many bytes. */
#define LEXEME_MAX 2046

/* A word's length as indexed and searched: cut to LEXEME_MAX bytes at a UTF-8 boundary, so a
 * longer word is found by its first 2046 bytes (an absurd word; the same cut on both sides). */
static size_t lexeme_len(const char *w, size_t n)
{
    if (n <= LEXEME_MAX)
        return n;
    n = LEXEME_MAX;
    while (n > 0 && ((unsigned char)w[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/*
 * The tsvector literal of text[0..len)'s folded words, each at its position: 'w1':1 'w2':2 ...
 * Folded words hold only letters, marks and digits (search_text.h), never a quote or backslash.
 * Positions stop at 16383 (PostgreSQL's limit); a word repeated there keeps its first ones.
 */
static char *tsv_literal(const char *text, size_t len)
{
    size_t n;
    char *words = search_text_index(text ? text : "", text ? len : 0, &n);
    char *out = xmalloc(2 * n + 16 * (n / 2 + 1) + 1);
    size_t o = 0;
    unsigned pos = 0;
    for (char *w = words; *w;) {
        char *sp = strchr(w, ' ');
        size_t wn = sp ? (size_t)(sp - w) : strlen(w);
        if (wn > 0) {
            pos++;
            o += (size_t)sprintf(out + o, "%s'%.*s':%u", o ? " " : "", (int)lexeme_len(w, wn), w,
                                 pos < 16383 ? pos : 16383);
        }
        w += wn + (sp ? 1 : 0);
    }
    out[o] = '\0';
    free(words);
    return out;
}

static int search_add(struct pg_store *ps, const struct store_msg *m)
{
    struct params p = {0};
    p_text(&p, m->room);
    p_seq(&p, m->seq);
    char *words = tsv_literal(m->text, m->text ? m->text_len : 0);
    char *rkey = tsv_literal(m->room, strlen(m->room));
    p_text(&p, words);
    p_i64(&p, m->ts);
    p_text(&p, rkey);
    int ret = run(ps, ST_SEARCH_ADD, "search_add", &p);
    free(words);
    free(rkey);
    return ret;
}

/* A moderation write with (room, name or topic, a time). */
static int mod_write(struct pg_store *ps, enum stmt id, const char *op, const char *room,
                     const char *text, size_t n, int64_t t)
{
    struct params p = {0};
    p_text(&p, room);
    p_textn(&p, text, n);
    if (id == ST_TOPIC_SET || id == ST_OWNER_SET || id == ST_BAN_SET || id == ST_MUTE_SET)
        p_i64(&p, t);
    return run(ps, id, op, &p);
}

static int react_write(struct pg_store *ps, const struct store_msg *m)
{
    struct params p = {0};
    p_text(&p, m->room);
    p_seq(&p, m->target);
    p_text(&p, m->emoji);
    p_text(&p, m->identity);
    if (!m->on)
        return run(ps, ST_REACT_DROP, "react_drop", &p);
    p_text(&p, m->from);
    p_seq(&p, m->seq);
    return run(ps, ST_REACT_ADD, "react_add", &p);
}

static int apply_edit(struct pg_store *ps, const struct store_msg *m)
{
    struct params p = {0};
    p_text(&p, m->room);
    p_seq(&p, m->target);
    p_seq(&p, m->seq);
    int ret = run(ps, ST_EDIT_BLANK, "edit_blank", &p);
    if (ret != 0)
        return ret;
    p = (struct params){0};
    p_text(&p, m->room);
    p_seq(&p, m->target);
    p_textn(&p, m->text ? m->text : "", m->text ? m->text_len : 0);
    p_text(&p, m->mentions);
    p_i64(&p, m->ts);
    ret = run(ps, ST_EDIT_APPLY, "edit_apply", &p);
    if (ret != 0)
        return ret;
    p = (struct params){0};
    p_text(&p, m->room);
    p_seq(&p, m->target);
    char *words = tsv_literal(m->text, m->text ? m->text_len : 0);
    p_text(&p, words);
    ret = run(ps, ST_SEARCH_EDIT, "search_edit", &p);
    free(words);
    return ret ? ret : set_mentions(ps, m->room, m->target, m->mentions);
}

/* The state an event changes besides its own row (store.h, insert). */
static int apply_state(struct pg_store *ps, const struct store_msg *m)
{
    int ret = 0;
    size_t un = m->user ? strlen(m->user) : 0;
    switch (m->type) {
    case STORE_EV_MESSAGE:
        ret = search_add(ps, m);
        return ret == 0 && m->mentions ? set_mentions(ps, m->room, m->seq, m->mentions) : ret;
    case STORE_EV_EDIT:
        return apply_edit(ps, m);
    case STORE_EV_DELETE:
        ret = room_seq_write(ps, ST_SEARCH_DROP_ROW, "search_drop_row", m->room, m->target);
        if (ret == 0)
            ret = room_seq_write(ps, ST_DELETE_MSG, "delete_msg", m->room, m->target);
        if (ret == 0)
            ret = room_seq_write(ps, ST_DELETE_DEPS, "delete_deps", m->room, m->target);
        if (ret == 0)
            ret = room_seq_write(ps, ST_DELETE_REACTIONS, "delete_reactions", m->room, m->target);
        return ret ? ret : set_mentions(ps, m->room, m->target, NULL);
    case STORE_EV_REACTION:
        return react_write(ps, m);
    case STORE_EV_TOPIC:
        return mod_write(ps, ST_TOPIC_SET, "topic_set", m->room, m->text ? m->text : "",
                         m->text ? m->text_len : 0, m->ts);
    case STORE_EV_ROLE:
        if (!m->detail || !m->user)
            return 0;
        if (strcmp(m->detail, "op") == 0)
            return mod_write(ps, ST_OP_ADD, "op_add", m->room, m->user, un, 0);
        if (strcmp(m->detail, "member") == 0)
            return mod_write(ps, ST_OP_DROP, "op_drop", m->room, m->user, un, 0);
        ret = mod_write(ps, ST_OWNER_OLD_TO_OP, "owner_old", m->room, m->user, un, 0);
        if (ret == 0)
            ret = mod_write(ps, ST_OWNER_SET, "owner_set", m->room, m->user, un, m->ts);
        return ret ? ret : mod_write(ps, ST_OP_DROP, "op_drop", m->room, m->user, un, 0);
    case STORE_EV_BAN:
    case STORE_EV_MUTE: {
        int64_t until = m->duration ? m->ts + (int64_t)m->duration * 1000 : 0;
        return mod_write(ps, m->type == STORE_EV_BAN ? ST_BAN_SET : ST_MUTE_SET, "restrict",
                         m->room, m->user ? m->user : "", un, until);
    }
    case STORE_EV_UNBAN:
    case STORE_EV_UNMUTE:
        return mod_write(ps, m->type == STORE_EV_UNBAN ? ST_BAN_DROP : ST_MUTE_DROP, "lift",
                         m->room, m->user ? m->user : "", un, 0);
    default:
        return 0;
    }
}

static int insert_row(struct pg_store *ps, const struct store_msg *m)
{
    struct params p = {0};
    p_text(&p, m->room);
    p_seq(&p, m->seq);
    p_i64(&p, m->ts);
    p_text(&p, m->from);
    p_textn(&p, m->text ? m->text : "", m->text ? m->text_len : 0);
    p_text(&p, m->cid);
    p_text(&p, store_event_type_name(m->type));
    p_text(&p, m->identity);
    if (m->target)
        p_seq(&p, m->target);
    else
        p_text(&p, NULL);
    if (m->reply_to)
        p_seq(&p, m->reply_to);
    else
        p_text(&p, NULL);
    p_text(&p, m->mentions);
    p_text(&p, m->type == STORE_EV_REACTION ? m->emoji : m->detail);
    if (m->type == STORE_EV_REACTION)
        p_i64(&p, m->on);
    else if (m->duration)
        p_seq(&p, m->duration);
    else
        p_text(&p, NULL);
    p_text(&p, m->user);
    return run(ps, ST_INSERT_MSG, "insert", &p);
}

/* Sends the move of room's last_seq to seq, which must be the stored last + 1 (see DESIGN):
 * pipe_end reports a conflict when no row changed. */
static int advance_seq(struct pg_store *ps, const struct store_msg *m)
{
    struct params p = {0};
    p_text(&p, m->room);
    p_seq(&p, m->seq);
    return pipe_stmt(ps, ST_ROOM_ADVANCE, "insert_room", &p, NULL, true);
}

/* What the batch's checks read ahead, after the insert of m: its cid is found now, and a mute
 * or unmute of a user is asked of the database again. */
static void insert_known(struct pg_store *ps, const struct store_msg *m)
{
    if (m->cid) {
        char from_lc[STORE_IDENTITY_MAX];
        const char *identity = m->identity;
        if (!identity) {
            snprintf(from_lc, sizeof from_lc, "%s", m->from);
            identity = from_lc; /* cid_key lower-cases it, as the insert does */
        }
        know(&ps->cids, cid_key(m->room, identity, m->cid), true, (int64_t)m->seq);
    }
    if ((m->type == STORE_EV_MUTE || m->type == STORE_EV_UNMUTE) && m->user) {
        char *key = mute_key(m->room, m->user);
        for (char *c = key + strlen(m->room) + 1; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        free(map_del(&ps->mutes, key));
        free(key);
    }
}

/*
 * The event's statements (the seq, the row, the state it changes, in a savepoint) go in one
 * round trip, in pipeline mode; PostgreSQL runs them in order and skips the rest after a
 * failure, so they end as one would have run after another.
 */
static int pg_insert(struct store *s, const struct store_msg *m)
{
    struct pg_store *ps = from_base(s);
    bool alone;
    int ret = begin_alone(ps, &alone);
    if (ret != 0)
        return ret;
    /* The room's row, then its lock, outside the savepoint (see DESIGN); a batch's start
     * (room_seqs) did both already for the rooms it stores in. */
    if (!is_locked(ps, m->room)) {
        struct params p = {0};
        p_text(&p, m->room);
        p_i64(&p, m->ts);
        ret = run(ps, ST_ROOM_ENSURE, "insert_room", &p);
        if (ret == 0)
            ret = lock_room(ps, m->room);
        if (ret != 0)
            return finish_alone(ps, alone, note(ps, ret));
    }
    ret = pipe_begin(ps);
    if (ret != 0)
        return finish_alone(ps, alone, ret);
    bool conflict = false;
    /* The seq first: a node whose counter is behind learns it here, before anything else. */
    pipe_sql(ps, "insert_savepoint", "SAVEPOINT store_insert");
    advance_seq(ps, m);
    insert_row(ps, m);
    apply_state(ps, m);
    pipe_sql(ps, "insert_release", "RELEASE store_insert");
    ret = pipe_end(ps, &conflict);
    if (conflict) {
        char room[128];
        log_warn("msg=store_seq_conflict backend=postgres room=%s seq=%llu error=\"the room's "
                 "last seq in the database is not seq - 1: another node wrote it\"",
                 log_quote(room, sizeof room, m->room, strlen(m->room)),
                 (unsigned long long)m->seq);
    }
    if (ret == 0) {
        insert_known(ps, m);
    } else if (PQstatus(ps->conn) == CONNECTION_OK && ret != -EBUSY) {
        /* Undo just this event; the batch stays usable for the caller. */
        ps->batch_err = 0;
        int r2 = exec_sql(ps, "insert_rollback", "ROLLBACK TO store_insert");
        if (r2 == 0)
            r2 = exec_sql(ps, "insert_release", "RELEASE store_insert");
        if (r2 != 0)
            note(ps, r2);
        ret = ret == -EEXIST ? -EIO : ret; /* a duplicate cid or seq: refused, not "taken" */
    } else {
        note(ps, ret);
    }
    return finish_alone(ps, alone, ret);
}

static int pg_room_create(struct store *s, const char *room, int64_t created_ms,
                          const char *owner_lc)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, room);
    p_i64(&p, created_ms);
    p_text(&p, owner_lc);
    return run(ps, ST_ROOM_CREATE, "room_create", &p);
}

static int pg_room_owner(struct store *s, const char *room, char *owner)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, room);
    int err;
    PGresult *r = exec_stmt(ps, ST_ROOM_OWNER, "room_owner", &p, &err);
    if (!r)
        return note(ps, err);
    int ret = PQntuples(r) > 0 ? 0 : -ENOENT;
    if (ret == 0 && !copy_col(r, 0, 0, owner, STORE_NAME_MAX + 1))
        owner[0] = '\0';
    PQclear(r);
    return ret;
}

static int pg_room_count(struct store *s, const char *always, uint64_t *n)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    int ret = run(ps, ST_ROOM_COUNT_LOCK, "room_count_lock", &p);
    if (ret != 0)
        return ret;
    p = (struct params){0};
    p_text(&p, always);
    int64_t v = 0;
    ret = query_i64(ps, ST_ROOM_COUNT, "room_count", &p, &v);
    *n = ret == 0 ? (uint64_t)v : 0;
    return ret == -ENOENT ? -EIO : ret;
}

static int pg_trim(struct store *s, const char *room, uint64_t upto)
{
    struct pg_store *ps = from_base(s);
    /* The cids of the events trimmed are found no more (the batch's prefetched answers). */
    size_t nr = strlen(room), pos = 0;
    const char *key;
    void *v;
    while (map_next(&ps->cids, &pos, &key, &v)) {
        struct known *k = v;
        if (strncmp(key, room, nr) == 0 && key[nr] == '\037' && k->found &&
            (uint64_t)k->value <= upto)
            k->found = false;
    }
    int ret = room_seq_write(ps, ST_SEARCH_TRIM, "search_trim", room, upto);
    if (ret == 0)
        ret = room_seq_write(ps, ST_TRIM, "trim", room, upto);
    if (ret == 0)
        ret = room_seq_write(ps, ST_TRIM_REACTIONS, "trim_reactions", room, upto);
    return ret ? ret : room_seq_write(ps, ST_TRIM_MENTIONS, "trim_mentions", room, upto);
}

static int pg_claim_guest(struct store *s, const char *guest, const char *account, const char *name)
{
    struct pg_store *ps = from_base(s);
    /* Events change identity: the batch's prefetched cids are asked of the database again. */
    map_free_all(&ps->cids);
    map_init(&ps->cids, true);
    int ret = 0;
    for (enum stmt id = ST_CLAIM_EVENTS; ret == 0 && id <= ST_CLAIM_REACTIONS; id++) {
        struct params p = {0};
        p_text(&p, guest);
        p_text(&p, account);
        p_text(&p, name);
        ret = run(ps, id, "claim_guest", &p);
    }
    return ret;
}

/* --- checks (inside the batch, under the room's lock) --- */

static int pg_message_get(struct store *s, const char *room, uint64_t seq, struct store_target *out)
{
    struct pg_store *ps = from_base(s);
    int ret = lock_room(ps, room);
    if (ret != 0)
        return ret;
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, seq);
    int err;
    PGresult *r = exec_stmt(ps, ST_MSG_GET, "message_get", &p, &err);
    if (!r)
        return note(ps, err);
    ret = -ENOENT;
    if (PQntuples(r) > 0) {
        out->ts = col_i64(r, 0, 0);
        out->deleted = col_i64(r, 0, 1) != 0;
        if (!copy_col(r, 0, 2, out->identity, sizeof out->identity))
            out->identity[0] = '\0'; /* damaged: nobody's */
        if (!copy_col(r, 0, 3, out->from, sizeof out->from) ||
            !text_valid_user(out->from, strlen(out->from)))
            memcpy(out->from, "?", 2);
        ret = 0;
    }
    PQclear(r);
    return ret;
}

/* Runs a query of (room, target[, emoji[, identity]]): whether it has a row, and its integer. */
static int query_react(struct pg_store *ps, enum stmt id, const char *room, uint64_t target,
                       const char *emoji, const char *identity, int64_t *out, bool *row)
{
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, target);
    if (emoji)
        p_text(&p, emoji);
    if (identity)
        p_text(&p, identity);
    int ret = query_i64(ps, id, "reaction_state", &p, out);
    *row = ret == 0;
    return ret == -ENOENT ? 0 : ret;
}

static int pg_reaction_state(struct store *s, const char *room, uint64_t target, const char *emoji,
                             const char *identity, bool *held, bool *present, unsigned *distinct)
{
    struct pg_store *ps = from_base(s);
    int ret = lock_room(ps, room);
    int64_t v = 0;
    bool row = false;
    *held = *present = false;
    if (ret == 0)
        ret = query_react(ps, ST_REACT_HELD, room, target, emoji, identity, &v, held);
    if (ret == 0)
        ret = query_react(ps, ST_REACT_EMOJI, room, target, emoji, NULL, &v, present);
    if (ret == 0)
        ret = query_react(ps, ST_REACT_DISTINCT, room, target, NULL, NULL, &v, &row);
    *distinct = ret == 0 && row && v > 0 ? (unsigned)v : 0;
    return ret;
}

static int pg_room_roles(struct store *s, const char *room, const char *name_lc, char *owner,
                         bool *op)
{
    struct pg_store *ps = from_base(s);
    owner[0] = '\0';
    *op = false;
    int ret = lock_room(ps, room);
    if (ret == 0)
        ret = pg_room_owner(s, room, owner);
    if (ret == -ENOENT)
        ret = 0; /* no row: no owner */
    if (ret != 0)
        return ret;
    struct params p = {0};
    p_text(&p, room);
    p_text(&p, name_lc);
    int64_t v;
    ret = query_i64(ps, ST_IS_OP, "is_op", &p, &v);
    *op = ret == 0;
    return ret == -ENOENT ? 0 : ret;
}

static int pg_restriction(struct store *s, const char *room, enum store_mod_kind kind,
                          const char *name_lc, int64_t now_ms, int64_t *until)
{
    struct pg_store *ps = from_base(s);
    const struct known *k = ps->batch && kind == STORE_MOD_MUTE
                                ? known(&ps->mutes, mute_key(room, name_lc))
                                : NULL;
    if (k) {
        int ret = batch_lost(ps);
        if (ret == 0 && !(k->found && (k->value == 0 || k->value > now_ms)))
            ret = -ENOENT;
        if (ret == 0)
            *until = k->value;
        return ret;
    }
    int ret = lock_room(ps, room);
    if (ret != 0)
        return ret;
    struct params p = {0};
    p_text(&p, room);
    p_text(&p, name_lc);
    p_i64(&p, now_ms);
    return query_i64(ps, kind == STORE_MOD_BAN ? ST_BAN_GET : ST_MUTE_GET, "restriction", &p,
                     until);
}

static int pg_newest_own(struct store *s, const char *room, const char *identity, uint64_t *seq)
{
    return locked_seq_lookup(s, ST_NEWEST_OWN, "newest_own", room, identity, NULL, seq);
}

/* A query of (room, seq) answering one seq, 0 meaning none: 0 and *seq, or -ENOENT. */
static int seq_query(struct pg_store *ps, enum stmt id, const char *op, const char *room,
                     uint64_t n, uint64_t *seq, bool zero_is_none)
{
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, n);
    int64_t v = 0;
    int ret = query_i64(ps, id, op, &p, &v);
    if (ret == 0 && zero_is_none && v == 0)
        ret = -ENOENT;
    if (ret == 0)
        *seq = (uint64_t)v;
    return ret;
}

static int pg_next_message(struct store *s, const char *room, uint64_t after, uint64_t *seq)
{
    return seq_query(from_base(s), ST_NEXT_MESSAGE, "next_message", room, after, seq, true);
}

static int pg_retention_cut(struct store *s, const char *room, uint64_t keep, uint64_t *seq)
{
    if (keep == 0) {
        int ret = batch_lost(from_base(s));
        return ret ? ret : -ENOENT;
    }
    return seq_query(from_base(s), ST_RETENTION_CUT, "retention_cut", room, keep - 1, seq, false);
}

static int pg_first_seq(struct store *s, const char *room, uint64_t *seq)
{
    struct params p = {0};
    p_text(&p, room);
    int64_t v = 0;
    int ret = query_i64(from_base(s), ST_FIRST_SEQ, "first_seq", &p, &v);
    if (ret == 0)
        *seq = (uint64_t)v;
    return ret;
}

/* --- reads --- */

/* Hands each row of r (columns EVENT_COLS) to each, repaired. Returns how many. */
static int each_event(const PGresult *r, const char *room, store_msg_cb each, void *arg)
{
    int count = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *from = col_text(r, i, 2);
        const char *text = col_text(r, i, 3);
        uint8_t type = store_type_from(col_text(r, i, 5));
        if (!from || !text || type == STORE_EV_TYPES)
            continue; /* NOT NULL columns, known types: only a damaged row gets here */
        struct store_msg m = {
            .room = room,
            .seq = (uint64_t)col_i64(r, i, 0),
            .ts = col_i64(r, i, 1),
            .from = from,
            .text = text,
            .text_len = (size_t)PQgetlength(r, i, 3),
            .cid = col_text(r, i, 4),
            .type = type,
            .target = (uint64_t)col_i64(r, i, 6),
            .reply_to = (uint64_t)col_i64(r, i, 7),
            .mentions = col_text(r, i, 8),
            .edited = col_i64(r, i, 9),
            .target_from = col_text(r, i, 14),
            .user = col_text(r, i, 15),
        };
        int64_t num = col_i64(r, i, 12);
        if (type == STORE_EV_REACTION) {
            m.emoji = col_text(r, i, 11);
            m.on = num != 0;
        } else {
            m.detail = col_text(r, i, 11);
            m.duration = num > 0 ? (uint64_t)num : 0;
        }
        m.deleted = type == STORE_EV_MESSAGE ? col_i64(r, i, 10) != 0 : col_i64(r, i, 13) != 0;
        char *repaired =
            store_repair_row(&m, (size_t)PQgetlength(r, i, 2), m.cid ? (size_t)PQgetlength(r, i, 4) : 0);
        each(arg, &m);
        free(repaired);
        count++;
    }
    return count;
}

/* Runs a read of events and hands its rows to each; how many, or an error. */
static int read_events(struct pg_store *ps, enum stmt id, const char *op, struct params *p,
                       const char *room, store_msg_cb each, void *arg)
{
    int err;
    PGresult *r = exec_stmt(ps, id, op, p, &err);
    if (!r)
        return note(ps, err);
    int n = each_event(r, room, each, arg);
    PQclear(r);
    return n;
}

static int pg_read(struct store *s, const char *room, uint64_t after, uint64_t before,
                   int64_t min_ts, unsigned limit, bool newest, store_msg_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, after);
    p_seq(&p, before ? before : UINT64_MAX);
    p_i64(&p, min_ts);
    p_i64(&p, limit > INT_MAX ? INT_MAX : (int64_t)limit);
    return read_events(ps, newest ? ST_READ_NEWEST : ST_READ_OLDEST, "read", &p, room, each, arg);
}

static int pg_history(struct store *s, const char *room, uint64_t before, int64_t min_ts,
                      unsigned limit, bool with_deleted, store_msg_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, before);
    p_i64(&p, min_ts);
    p_i64(&p, limit > INT_MAX ? INT_MAX : (int64_t)limit);
    p_i64(&p, with_deleted ? 1 : 0);
    return read_events(ps, ST_HISTORY, "history", &p, room, each, arg);
}

static int pg_read_target(struct store *s, const char *room, uint64_t seq, store_msg_cb each,
                          void *arg)
{
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, seq);
    int ret = read_events(from_base(s), ST_READ_TARGET, "read_target", &p, room, each, arg);
    return ret < 0 ? ret : 0;
}

static int pg_search_message(struct store *s, const char *room, uint64_t seq, store_msg_cb each,
                             void *arg)
{
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, seq);
    return read_events(from_base(s), ST_SEARCH_MSG, "search_message", &p, room, each, arg);
}

static int pg_reactions(struct store *s, const char *room, uint64_t target, store_reaction_cb each,
                        void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, target);
    int err;
    PGresult *r = exec_stmt(ps, ST_REACTIONS_OF, "reactions", &p, &err);
    if (!r)
        return note(ps, err);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *emoji = col_text(r, i, 0);
        const char *identity = col_text(r, i, 1);
        const char *user = col_text(r, i, 2);
        if (!emoji || !identity || !user || text_needs_repair(emoji, strlen(emoji)) ||
            text_has_control(emoji, strlen(emoji)) || !text_valid_user(user, strlen(user)))
            continue; /* damaged: left out */
        each(arg, emoji, identity, user);
    }
    PQclear(r);
    return 0;
}

/* Rooms as (name, last_seq, created_ms) rows of statement id, each passed to each. */
static int rooms_of(struct pg_store *ps, enum stmt id, const char *op, struct params *p,
                    store_room_cb each, void *arg)
{
    int err;
    PGresult *r = exec_stmt(ps, id, op, p, &err);
    if (!r)
        return err;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = col_text(r, i, 0);
        if (store_valid_room(name, name ? (size_t)PQgetlength(r, i, 0) : 0))
            each(arg, name, (uint64_t)col_i64(r, i, 1), col_i64(r, i, 2));
        else
            log_warn("msg=store_damaged_row table=rooms error=\"not a room name: skipped\"");
    }
    PQclear(r);
    return 0;
}

static int pg_load_rooms(struct store *s, store_room_cb each, void *arg)
{
    struct params p = {0};
    return rooms_of(from_base(s), ST_LOAD_ROOMS, "load_rooms", &p, each, arg);
}

static int pg_dm_rooms(struct store *s, const char *account, store_room_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, account);
    return rooms_of(ps, ST_DM_ROOMS, "dm_rooms", &p, each, arg);
}

static int pg_dm_rooms_of(struct store *s, const char *const *accounts, size_t n,
                          store_room_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(accounts[i]) + 1;
    char *lines = xmalloc(len + 1), *at = lines;
    for (size_t i = 0; i < n; i++)
        at += sprintf(at, "%s%s", i ? "\n" : "", accounts[i]); /* a name holds no newline */
    *at = '\0';
    struct params p = {0};
    p_text(&p, lines);
    int rc = rooms_of(ps, ST_DM_ROOMS_OF, "dm_rooms_of", &p, each, arg);
    free(lines);
    return rc;
}

static int pg_load_users(struct store *s, store_user_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    int err;
    PGresult *r = exec_stmt(ps, ST_LOAD_USERS, "load_users", &p, &err);
    if (!r)
        return err;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = col_text(r, i, 0);
        if (name && text_valid_user(name, (size_t)PQgetlength(r, i, 0)))
            each(arg, name, col_i64(r, i, 1));
        else
            log_warn("msg=store_damaged_row table=users error=\"not a user name: skipped\"");
    }
    PQclear(r);
    return 0;
}

/* Hands each row (room, value, until) of statement id to each as kind. */
static int load_mod_rows(struct pg_store *ps, enum stmt id, enum store_mod_kind kind,
                         int64_t now_ms, store_mod_cb each, void *arg)
{
    struct params p = {0};
    if (id != ST_LOAD_OPS)
        p_i64(&p, now_ms);
    int err;
    PGresult *r = exec_stmt(ps, id, "load_moderation", &p, &err);
    if (!r)
        return err;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *room = col_text(r, i, 0);
        const char *v = col_text(r, i, 1);
        if (!room || !store_valid_room(room, strlen(room)) || !v || !text_valid_user(v, strlen(v))) {
            log_warn("msg=store_damaged_row table=moderation error=\"not a room or name: skipped\"");
            continue;
        }
        each(arg, room, kind, v, col_i64(r, i, 2));
    }
    PQclear(r);
    return 0;
}

static int pg_load_moderation(struct store *s, int64_t now_ms, store_mod_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    int err;
    PGresult *r = exec_stmt(ps, ST_LOAD_META, "load_moderation", &p, &err);
    if (!r)
        return err;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *room = col_text(r, i, 0);
        const char *owner = col_text(r, i, 1);
        const char *topic = col_text(r, i, 2);
        if (!room || !store_valid_room(room, strlen(room)))
            continue;
        if (owner && text_valid_user(owner, strlen(owner)))
            each(arg, room, STORE_MOD_OWNER, owner, 0);
        size_t n = topic ? (size_t)PQgetlength(r, i, 2) : 0;
        if (n && !text_needs_repair(topic, n) && !text_has_control(topic, n))
            each(arg, room, STORE_MOD_TOPIC, topic, 0);
    }
    PQclear(r);
    int ret = load_mod_rows(ps, ST_LOAD_OPS, STORE_MOD_OP, now_ms, each, arg);
    if (ret == 0)
        ret = load_mod_rows(ps, ST_LOAD_BANS, STORE_MOD_BAN, now_ms, each, arg);
    return ret ? ret : load_mod_rows(ps, ST_LOAD_MUTES, STORE_MOD_MUTE, now_ms, each, arg);
}

/* --- search --- */

/* Appends the tsquery of one FTS5 term body (folded words separated by spaces; a phrase when
 * several) to out, with :* on its last word when prefix. */
static void term_to_tsquery(const char *w, size_t n, bool prefix, char *out, size_t *o)
{
    bool first = true;
    out[(*o)++] = '(';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && w[j] != ' ')
            j++;
        if (j > i) {
            *o += (size_t)sprintf(out + *o, "%s'%.*s'", first ? "" : " <-> ",
                                  (int)lexeme_len(w + i, j - i), w + i);
            first = false;
        }
        i = j + 1;
    }
    if (prefix && !first)
        *o += (size_t)sprintf(out + *o, ":*");
    if (first)
        *o += (size_t)sprintf(out + *o, "''");
    out[(*o)++] = ')';
}

/* The tsquery of an FTS5 list of terms ("w", "w"*, "a b"), all required; NULL if malformed. */
static char *terms_to_tsquery(const char *t, size_t n)
{
    char *out = xmalloc(4 * n + 16);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (t[i] == ' ') {
            i++;
            continue;
        }
        if (t[i] != '"')
            goto bad;
        const char *end = memchr(t + i + 1, '"', n - i - 1);
        if (!end)
            goto bad;
        size_t body = (size_t)(end - (t + i + 1));
        size_t next = (size_t)(end - t) + 1;
        bool prefix = next < n && t[next] == '*';
        if (o)
            o += (size_t)sprintf(out + o, " & ");
        term_to_tsquery(t + i + 1, body, prefix, out, &o);
        i = next + (prefix ? 1 : 0);
    }
    if (o == 0)
        goto bad;
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/*
 * Splits the caller's FTS5 expression, `words : (TERMS)` optionally followed by
 * ` AND rkey : "ROOM WORDS"` (store_thread.c's search_expression), into the tsqueries of the
 * words and of the room key (NULL when none). False when it is not of that form.
 */
static bool parse_match(const char *match, char **words, char **rkey)
{
    static const char head[] = "words : (";
    static const char room[] = ") AND rkey : ";
    *words = *rkey = NULL;
    size_t n = strlen(match);
    if (strncmp(match, head, sizeof head - 1) != 0)
        return false;
    const char *t = match + sizeof head - 1;
    const char *close = strstr(t, room);
    const char *end = close ? close : match + n - 1;
    if (!close && (n < sizeof head || *end != ')'))
        return false;
    *words = terms_to_tsquery(t, (size_t)(end - t));
    if (close) {
        const char *k = close + sizeof room - 1;
        *rkey = terms_to_tsquery(k, strlen(k));
    }
    if (*words && (!close || *rkey))
        return true;
    free(*words);
    free(*rkey);
    *words = *rkey = NULL;
    return false;
}

static int pg_search(struct store *s, const char *match, uint64_t from, store_search_cb each,
                     void *arg)
{
    struct pg_store *ps = from_base(s);
    char *words, *rkey;
    if (!parse_match(match, &words, &rkey)) {
        log_error("msg=store_error backend=postgres op=search error=\"not a search expression\"");
        return -EIO;
    }
    int ret = 0;
    bool more = true;
    while (more) {
        struct params p = {0};
        p_text(&p, words);
        p_seq(&p, from);
        p_i64(&p, SEARCH_PAGE);
        if (rkey)
            p_text(&p, rkey);
        int err;
        PGresult *r = exec_stmt(ps, rkey ? ST_SEARCH_SCAN_ROOM : ST_SEARCH_SCAN, "search", &p, &err);
        if (!r) {
            ret = err;
            break;
        }
        int rows = PQntuples(r);
        more = rows == SEARCH_PAGE;
        for (int i = 0; i < rows; i++) {
            uint64_t rid = (uint64_t)col_i64(r, i, 0);
            const char *room = col_text(r, i, 1);
            from = rid - 1;
            if (!room || !store_valid_room(room, (size_t)PQgetlength(r, i, 1)))
                continue; /* damaged: nothing to show for it */
            if (!each(arg, rid, room, (uint64_t)col_i64(r, i, 2), col_i64(r, i, 3))) {
                more = false;
                break;
            }
        }
        PQclear(r);
        if (from == 0)
            more = false;
    }
    free(words);
    free(rkey);
    return ret;
}

/* The GIN index needs no merging: a deleted row's entries go with the row (VACUUM). */
static int pg_search_merge(struct store *s, bool *more)
{
    (void)s;
    *more = false;
    return 0;
}

/*
 * Rule 53 after erasures: the old versions of erased rows stay in the table's pages until VACUUM
 * frees them, so the store thread's post-erasure checkpoint vacuums the tables erasure writes.
 * (PostgreSQL's own WAL recycles its segments at its checkpoints; its archive, if the operator
 * keeps one, is theirs to expire.)
 */
static int pg_checkpoint(struct store *s)
{
    struct pg_store *ps = from_base(s);
    if (ps->batch || reconnect(ps) != 0)
        return 0;
    return exec_sql(ps, "checkpoint",
                    "VACUUM events, search_rows, reactions, mentions");
}

/* --- accounts and tokens --- */

static int pg_user_create(struct store *s, const char *name, const char *pwhash, int64_t created_ms)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, name);
    p_text(&p, pwhash);
    p_i64(&p, created_ms);
    bool alone;
    int ret = begin_alone(ps, &alone);
    if (ret != 0)
        return ret;
    if (!alone)
        ret = exec_sql(ps, "user_savepoint", "SAVEPOINT store_user");
    if (ret == 0) {
        int err;
        PGresult *r = exec_stmt(ps, ST_USER_CREATE, "user_create", &p, &err);
        PQclear(r);
        ret = r ? 0 : err;
    }
    /* The name is taken in some letter case: an answer, not a fault; the batch goes on. */
    if (!alone && ret == -EEXIST) {
        ps->batch_err = 0;
        ret = exec_sql(ps, "user_rollback", "ROLLBACK TO store_user");
        ret = ret ? note(ps, ret) : -EEXIST;
    } else if (!alone && ret == 0) {
        ret = note(ps, exec_sql(ps, "user_release", "RELEASE store_user"));
    } else {
        note(ps, ret);
    }
    return finish_alone(ps, alone, ret);
}

static int pg_user_get(struct store *s, const char *name, struct store_user *out)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, name);
    int err;
    PGresult *r = exec_stmt(ps, ST_USER_GET, "user_get", &p, &err);
    if (!r)
        return note(ps, err);
    int ret = -ENOENT;
    if (PQntuples(r) > 0) {
        ret = 0;
        if (!copy_col(r, 0, 0, out->name, sizeof out->name) ||
            !copy_col(r, 0, 1, out->pwhash, sizeof out->pwhash) ||
            !text_valid_user(out->name, strlen(out->name))) {
            log_error("msg=store_error backend=postgres op=user_get error=\"stored user does not "
                      "fit\"");
            ret = -EIO;
        }
        out->created_ms = col_i64(r, 0, 2);
    }
    PQclear(r);
    return ret;
}

static int pg_token_put(struct store *s, const uint8_t hash[STORE_TOKEN_HASH],
                        const struct store_token *t)
{
    struct params p = {0};
    p_blob(&p, hash, STORE_TOKEN_HASH);
    p_text(&p, t->user);
    p_i64(&p, t->guest ? 1 : 0);
    p_i64(&p, (int64_t)t->guest_session); /* kept bit for bit: an opaque 64-bit value */
    p_i64(&p, t->expires_ms);
    return run(from_base(s), ST_TOKEN_PUT, "token_put", &p);
}

static int pg_token_get(struct store *s, const uint8_t hash[STORE_TOKEN_HASH], int64_t now_ms,
                        struct store_token *out)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_blob(&p, hash, STORE_TOKEN_HASH);
    p_i64(&p, now_ms);
    int err;
    PGresult *r = exec_stmt(ps, ST_TOKEN_GET, "token_get", &p, &err);
    if (!r)
        return note(ps, err);
    int ret = -ENOENT;
    if (PQntuples(r) > 0) {
        ret = 0;
        if (!copy_col(r, 0, 0, out->user, sizeof out->user) ||
            !text_valid_user(out->user, strlen(out->user))) {
            log_error("msg=store_error backend=postgres op=token_get error=\"stored user does not "
                      "fit\"");
            ret = -EIO;
        }
        out->guest = col_i64(r, 0, 1) != 0;
        out->guest_session = (uint64_t)col_i64(r, 0, 2);
        out->expires_ms = col_i64(r, 0, 3);
    }
    PQclear(r);
    return ret;
}

static int pg_token_drop_guest(struct store *s, const char *name)
{
    struct params p = {0};
    p_text(&p, name);
    return run(from_base(s), ST_TOKEN_DROP_GUEST, "token_drop_guest", &p);
}

static int pg_token_expire(struct store *s, int64_t now_ms)
{
    struct params p = {0};
    p_i64(&p, now_ms);
    return run(from_base(s), ST_TOKEN_EXPIRE, "token_expire", &p);
}

/* --- read markers and saved rooms (protocol 1.1 rules 66-68) --- */

static int pg_marker_get(struct store *s, const char *account, const char *room, uint64_t *seq)
{
    struct params p = {0};
    p_text(&p, account);
    p_text(&p, room);
    int64_t v = 0;
    int ret = query_i64(from_base(s), ST_MARKER_GET, "marker_get", &p, &v);
    if (ret == 0)
        *seq = (uint64_t)v;
    return ret;
}

static int pg_marker_raise(struct store *s, const char *account, const char *room, uint64_t seq,
                           bool only_new)
{
    struct params p = {0};
    p_text(&p, account);
    p_text(&p, room);
    p_seq(&p, seq);
    return run(from_base(s), only_new ? ST_MARKER_INIT : ST_MARKER_RAISE, "marker_raise", &p);
}

static int pg_saved_has(struct store *s, const char *account, const char *room, bool *saved)
{
    struct params p = {0};
    p_text(&p, account);
    p_text(&p, room);
    int64_t v;
    int ret = query_i64(from_base(s), ST_SAVED_HAS, "saved_has", &p, &v);
    *saved = ret == 0;
    return ret == -ENOENT ? 0 : ret;
}

static int pg_saved_count(struct store *s, const char *account, uint64_t *n)
{
    struct params p = {0};
    p_text(&p, account);
    int64_t v = 0;
    int ret = query_i64(from_base(s), ST_SAVED_COUNT, "saved_count", &p, &v);
    *n = ret == 0 ? (uint64_t)v : 0;
    return ret == -ENOENT ? 0 : ret;
}

static int pg_saved_set(struct store *s, const char *account, const char *room, bool saved)
{
    struct params p = {0};
    p_text(&p, account);
    p_text(&p, room);
    return run(from_base(s), saved ? ST_SAVED_ADD : ST_SAVED_DROP, "saved_set", &p);
}

static int pg_saved_list(struct store *s, const char *account, store_saved_cb each, void *arg)
{
    struct pg_store *ps = from_base(s);
    struct params p = {0};
    p_text(&p, account);
    int err;
    PGresult *r = exec_stmt(ps, ST_SAVED_LIST, "saved_list", &p, &err);
    if (!r)
        return note(ps, err);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *room = col_text(r, i, 0);
        if (room && store_valid_room(room, (size_t)PQgetlength(r, i, 0)))
            each(arg, room, (uint64_t)col_i64(r, i, 1), (uint64_t)col_i64(r, i, 2));
    }
    PQclear(r);
    return 0;
}

static int count_after(struct pg_store *ps, enum stmt id, const char *room, const char *account,
                       uint64_t after, int64_t min_ts, uint32_t cap, uint32_t *out)
{
    struct params p = {0};
    p_text(&p, room);
    p_seq(&p, after);
    p_text(&p, account);
    p_i64(&p, min_ts);
    p_i64(&p, cap);
    int64_t v = 0;
    int ret = query_i64(ps, id, "unread", &p, &v);
    *out = ret == 0 ? (uint32_t)v : 0;
    return ret == -ENOENT ? 0 : ret;
}

static int pg_unread(struct store *s, const char *room, const char *account, uint64_t after,
                     int64_t min_ts, uint32_t cap, uint32_t *unread, uint32_t *mentions)
{
    struct pg_store *ps = from_base(s);
    int ret = count_after(ps, ST_UNREAD, room, account, after, min_ts, cap, unread);
    return ret ? ret : count_after(ps, ST_UNREAD_MENTIONS, room, account, after, min_ts, cap,
                                   mentions);
}

/* --- open, migrate, close --- */

static void pg_close(struct store *s)
{
    struct pg_store *ps = from_base(s);
    if (!ps)
        return;
    forget_locks(ps);
    map_free(&ps->locked);
    map_free_all(&ps->cids);
    map_free_all(&ps->mutes);
    free(ps->piped);
    PQfinish(ps->conn); /* an open transaction is rolled back by the server */
    free(ps);
}

/* The schema version stored, 0 for an empty database; or an error. */
static int schema_version(struct pg_store *ps, int64_t *version)
{
    PGresult *r = PQexec(ps->conn, "SELECT to_regclass('parley_schema') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int ret = fail(ps, "schema_version", r);
        PQclear(r);
        return ret;
    }
    bool exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    *version = 0;
    if (!exists)
        return 0;
    r = PQexec(ps->conn, "SELECT version FROM parley_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int ret = fail(ps, "schema_version", r);
        PQclear(r);
        return ret;
    }
    if (PQntuples(r) > 0)
        *version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int refuse_newer(int64_t version)
{
    if (version <= SCHEMA_VERSION)
        return 0;
    log_error("msg=store_error backend=postgres op=migrate error=\"database schema %lld is newer "
              "than this binary's %d\"",
              (long long)version, SCHEMA_VERSION);
    return -EIO;
}

/*
 * Brings the schema to SCHEMA_VERSION. Several nodes may start at once: each takes the same
 * advisory lock first (pg_advisory_lock, held by the session until unlocked), so one migrates
 * while the others wait, then find the version up to date. The steps and the new version commit
 * in one transaction, so a crash never leaves half a step.
 */
static int migrate(struct pg_store *ps)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", MIGRATE_LOCK_KEY);
    int ret = exec_sql(ps, "migrate_lock", sql);
    if (ret != 0)
        return ret;
    int64_t version = 0;
    ret = exec_sql(ps, "migrate_begin", "BEGIN");
    if (ret == 0)
        ret = schema_version(ps, &version);
    if (ret == 0)
        ret = refuse_newer(version);
    if (ret == 0 && version == 0)
        ret = exec_sql(ps, "migrate",
                       "CREATE TABLE IF NOT EXISTS parley_schema(version bigint NOT NULL);"
                       "INSERT INTO parley_schema(version) VALUES(0)");
    for (int64_t v = version; ret == 0 && v < SCHEMA_VERSION; v++) {
        ret = exec_sql(ps, "migrate", migrations[v]);
        if (ret == 0) {
            snprintf(sql, sizeof sql, "UPDATE parley_schema SET version = %lld",
                     (long long)(v + 1));
            ret = exec_sql(ps, "migrate_version", sql);
        }
        if (ret == 0)
            log_info("msg=store_migrated backend=postgres version=%lld", (long long)(v + 1));
    }
    ret = ret ? ret : exec_sql(ps, "migrate_commit", "COMMIT");
    if (ret != 0 && PQtransactionStatus(ps->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(ps->conn, "ROLLBACK");
        PQclear(r);
    }
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", MIGRATE_LOCK_KEY);
    exec_sql(ps, "migrate_unlock", sql);
    return ret;
}

static int pg_take_over(struct store *s)
{
    struct pg_store *ps = from_base(s);
    if (!ps->standby)
        return 0;
    int ret = migrate(ps);
    if (ret == 0 && !ps->ready && (ret = prepare_all(ps)) == 0)
        ps->ready = true;
    if (ret == 0)
        ps->standby = false;
    return ret;
}

static const struct store_ops pg_ops = {
    .close = pg_close,
    .take_over = pg_take_over,
    .load_rooms = pg_load_rooms,
    .dm_rooms = pg_dm_rooms,
    .dm_rooms_of = pg_dm_rooms_of,
    .load_users = pg_load_users,
    .begin = pg_begin,
    .find_cid = pg_find_cid,
    .insert = pg_insert,
    .room_create = pg_room_create,
    .room_owner = pg_room_owner,
    .room_count = pg_room_count,
    .load_moderation = pg_load_moderation,
    .room_roles = pg_room_roles,
    .restriction = pg_restriction,
    .trim = pg_trim,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .read = pg_read,
    .first_seq = pg_first_seq,
    .message_get = pg_message_get,
    .reaction_state = pg_reaction_state,
    .reactions = pg_reactions,
    .read_target = pg_read_target,
    .history = pg_history,
    .retention_cut = pg_retention_cut,
    .claim_guest = pg_claim_guest,
    .newest_own = pg_newest_own,
    .next_message = pg_next_message,
    .checkpoint = pg_checkpoint,
    .search = pg_search,
    .search_message = pg_search_message,
    .search_merge = pg_search_merge,
    .user_create = pg_user_create,
    .user_get = pg_user_get,
    .token_put = pg_token_put,
    .token_get = pg_token_get,
    .token_drop_guest = pg_token_drop_guest,
    .token_expire = pg_token_expire,
    .marker_get = pg_marker_get,
    .marker_raise = pg_marker_raise,
    .saved_has = pg_saved_has,
    .saved_count = pg_saved_count,
    .saved_set = pg_saved_set,
    .saved_list = pg_saved_list,
    .unread = pg_unread,
    .clock_ms = pg_clock_ms,
    .room_seqs = pg_room_seqs,
};

int store_pg_open(const char *url, bool standby, struct store **out)
{
    *out = NULL;
    struct pg_store *ps = xcalloc(1, sizeof *ps);
    ps->base.ops = &pg_ops;
    map_init(&ps->locked, true);
    map_init(&ps->cids, true);
    map_init(&ps->mutes, true);
    /* The URL's own settings win over these defaults (expand_dbname: later ones override). */
    /* Keepalives: a database host that vanished is noticed in about 25 s, not hours. */
    const char *keys[] = {"connect_timeout", "application_name", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "dbname", NULL};
    const char *values[] = {CONNECT_TIMEOUT_S, "parley", "10", "5", "3", url, NULL};
    ps->conn = PQconnectdbParams(keys, values, 1);
    int ret = 0;
    if (!ps->conn || PQstatus(ps->conn) != CONNECTION_OK) {
        const char *msg = ps->conn ? PQerrorMessage(ps->conn) : "out of memory";
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            n--;
        char quoted[512];
        /* The URL is not logged: it may hold a password. */
        log_error("msg=store_open_failed backend=postgres error=%s",
                  log_quote(quoted, sizeof quoted, msg, n));
        pg_close(&ps->base);
        return -EIO;
    }
    ret = session_setup(ps);
    if (ret == 0 && standby) {
        /* Another process writes: check only that we can serve this database. */
        int64_t version = 0;
        ret = schema_version(ps, &version);
        if (ret == 0)
            ret = refuse_newer(version);
        if (ret == 0 && version == SCHEMA_VERSION && (ret = prepare_all(ps)) == 0)
            ps->ready = true;
        ps->standby = true;
    } else if (ret == 0) {
        ret = migrate(ps);
        if (ret == 0 && (ret = prepare_all(ps)) == 0)
            ps->ready = true;
    }
    if (ret != 0) {
        log_error("msg=store_open_failed backend=postgres code=%d", ret);
        pg_close(&ps->base);
        return ret;
    }
    metrics_set_store_problem(NULL);
    *out = &ps->base;
    return 0;
}
