/* test_store_sqlite: the SQLite store backend on real files in fresh temporary directories (the
 * cases every backend passes, store_cases.h, then SQLite's own). */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "log.h"
#include "metrics.h"
#include "store.h"
#include "store_cases.h"
#include "wal_checkpointer.h"

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void backend_open(struct fixture *f, uint64_t max_db_bytes)
{
    assert_int_equal(store_sqlite_open(f->dir,
                                       &(struct store_sqlite_options){.max_db_bytes = max_db_bytes,
                                                                      .check_ms = 10000},
                                       &f->s),
                     0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/parley-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (store_sqlite_open(f->dir, &(struct store_sqlite_options){.check_ms = 10000}, &f->s) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->s)
        f->s->ops->close(f->s);
    nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void db_path(const struct fixture *f, char *out, size_t size)
{
    snprintf(out, size, "%s/parley.db", f->dir);
}

/* Counts rows of a query on the fixture's database (opened a second time, read only). */
static int64_t count_rows(const struct fixture *f, const char *sql)
{
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int64_t backend_schema_version(const struct fixture *f)
{
    return count_rows(f, "PRAGMA user_version");
}

static void creates_missing_data_dir(void **state)
{
    struct fixture *f = *state;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/data", f->dir);
    struct store *s2 = NULL;
    assert_int_equal(store_sqlite_open(sub, &(struct store_sqlite_options){.check_ms = 10000}, &s2),
                     0);
    assert_int_equal(s2->ops->room_create(s2, "general", 1, NULL), 0);
    s2->ops->close(s2);
    char path[160];
    snprintf(path, sizeof path, "%s/parley.db", sub);
    assert_int_equal(access(path, F_OK), 0);
}

static void wal_mode_is_on(void **state)
{
    struct fixture *f = *state;
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void size_cap_gives_enospc_and_recovers(void **state)
{
    struct fixture *f = *state;
    /* Room for the schema (every table and index of protocol 1.1, the FTS5 index's included)
     * and a few batches more. */
    reopen(f, 256 * 1024);
    struct store *s = f->s;
    char big[3001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    uint64_t committed = 0;
    int err = 0;
    for (int batch = 0; batch < 100 && err == 0; batch++) {
        assert_int_equal(s->ops->begin(s), 0);
        for (uint64_t i = 1; i <= 4 && err == 0; i++)
            err = put(s, "general", committed + i, 1, "alice", big, NULL);
        if (err == 0) {
            err = s->ops->commit(s);
            if (err == 0)
                committed += 4;
        } else {
            /* Once the batch has failed, nothing more of it is stored. */
            assert_int_equal(put(s, "general", committed + 5, 1, "alice", "x", NULL), -ENOSPC);
            s->ops->rollback(s);
        }
    }
    assert_int_equal(err, -ENOSPC);
    assert_true(committed > 0);

    /* The failed batch left nothing behind; what was committed reads back whole. */
    assert_int_equal(room_seq(s, "general"), committed);
    struct seen v;
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 200, false, &v), (int)committed);
    assert_seqs(&v, 1, committed);

    /* Retention frees pages that small writes then reuse. */
    assert_int_equal(s->ops->trim(s, "general", committed - 2), 0);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", committed + 1, 2, "alice", "small", "c"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), committed + 1);
    read_seqs(s, "general", 0, 0, 0, 200, false, &v);
    assert_seqs(&v, committed - 1, committed + 1);
    assert_string_equal(v.text[2], "small");

    reopen(f, 128 * 1024);
    assert_int_equal(room_seq(f->s, "general"), committed + 1);
}

static void garbage_file_is_refused(void **state)
{
    struct fixture *f = *state;
    f->s->ops->close(f->s);
    f->s = NULL;
    char path[128];
    db_path(f, path, sizeof path);
    /* Also remove the WAL files, so only the garbage is there to be opened. */
    char side[160];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);

    char garbage[8192];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (char)(i * 7 + 3);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(garbage, 1, sizeof garbage, fp), sizeof garbage);
    fclose(fp);

    struct store *s = (struct store *)1;
    assert_int_equal(
        store_sqlite_open(f->dir, &(struct store_sqlite_options){.check_ms = 10000}, &s), -EIO);
    assert_null(s);

    /* The file was left as it was: refusing must not repair it by overwriting. */
    char back[sizeof garbage];
    fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(back, 1, sizeof back, fp), sizeof back);
    fclose(fp);
    assert_memory_equal(back, garbage, sizeof garbage);
}

static void damaged_schema_is_refused(void **state)
{
    struct fixture *f = *state;
    fill(f->s, "general", 3);
    f->s->ops->close(f->s); /* the last connection's close folds the WAL into the file */
    f->s = NULL;
    char path[128];
    db_path(f, path, sizeof path);
    /* A valid header, then garbage where the schema's b-tree page begins. */
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 100, SEEK_SET), 0);
    char garbage[512];
    memset(garbage, 0xa5, sizeof garbage);
    assert_int_equal(fwrite(garbage, 1, sizeof garbage, fp), sizeof garbage);
    fclose(fp);
    struct store *s = NULL;
    assert_int_equal(
        store_sqlite_open(f->dir, &(struct store_sqlite_options){.check_ms = 10000}, &s), -EIO);
    assert_null(s);
}

static void newer_schema_is_refused(void **state)
{
    struct fixture *f = *state;
    f->s->ops->close(f->s);
    f->s = NULL;
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *s = NULL;
    assert_int_equal(
        store_sqlite_open(f->dir, &(struct store_sqlite_options){.check_ms = 10000}, &s), -EIO);
    assert_null(s);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void held_write_lock_gives_ebusy(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    fill(s, "general", 1);
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    int64_t t0 = now_ms();
    assert_int_equal(s->ops->begin(s), -EBUSY);
    int64_t waited = now_ms() - t0;
    assert_true(waited >= 1500); /* it waited out the busy timeout... */
    assert_true(waited < 10000); /* ...and no longer */
    s->ops->rollback(s);         /* what a caller does after a failed begin: harmless */

    /* WAL: the other writer does not stop reads. */
    struct seen v;
    assert_int_equal(read_seqs(s, "general", 0, 0, 0, 10, true, &v), 1);

    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 2, 2, "alice", "after the lock", NULL), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), 2);
}

/* An integer from a query on a second connection to the database of f. */
static int64_t query(const struct fixture *f, const char *sql)
{
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* An upgrade's new process opens the store in standby while the old one writes: it reads and
 * can serve reads, writes nothing (no migration, no marker) until take_over. */
static void standby_writes_nothing_until_take_over(void **state)
{
    struct fixture *f = *state;
    f->s->ops->close(f->s);
    f->s = NULL;
    char marker[128], path[128];
    snprintf(marker, sizeof marker, "%s/store.marker", f->dir);
    db_path(f, path, sizeof path);
    assert_int_equal(unlink(marker), 0);
    assert_int_equal(unlink(path), 0);
    /* An empty database (schema 0), as if an older binary had made it: standby must not
     * migrate it while another process may still write. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *s = NULL;
    assert_int_equal(
        store_sqlite_open(f->dir,
                          &(struct store_sqlite_options){.check_ms = 10000, .standby = true}, &s),
        0);
    assert_int_equal(query(f, "PRAGMA user_version"), 0);
    assert_int_equal(query(f, "SELECT count(*) FROM sqlite_master"), 0);
    assert_int_equal(access(marker, F_OK), -1);
    assert_int_equal(s->ops->take_over(s), 0);
    assert_true(query(f, "PRAGMA user_version") >= 1);
    assert_int_equal(access(marker, F_OK), 0);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 1, 1, "alice", "after take_over", NULL), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), 1);
    assert_int_equal(s->ops->take_over(s), 0); /* a second one is a no-op */
    f->s = s;
}

/* A schema as ours is served in standby (reads work at once); a newer one is refused there. */
static void standby_reads_and_refuses_newer_schema(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->s->ops->begin(f->s), 0);
    assert_int_equal(put(f->s, "general", 1, 1, "alice", "before", NULL), 0);
    assert_int_equal(f->s->ops->commit(f->s), 0);
    struct store *s = NULL;
    assert_int_equal(
        store_sqlite_open(f->dir,
                          &(struct store_sqlite_options){.check_ms = 10000, .standby = true}, &s),
        0);
    assert_int_equal(room_seq(s, "general"), 1);
    s->ops->close(s);
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = NULL;
    assert_int_equal(
        store_sqlite_open(f->dir,
                          &(struct store_sqlite_options){.check_ms = 10000, .standby = true}, &s),
        -EIO);
    assert_null(s);
}

/* A guest's message in room, seq seq, from session guest named name. */
static void put_guest(struct store *s, const char *room, uint64_t seq, const char *guest,
                      const char *name)
{
    struct store_msg m = {.room = room,
                          .seq = seq,
                          .ts = (int64_t)seq,
                          .from = name,
                          .identity = guest,
                          .text = "hello",
                          .text_len = 5};
    assert_int_equal(s->ops->insert(s, &m), 0);
}

/* Rule 51's takeover through guest_spans: the session's rows in each public room, between
 * other senders' rows, become the account's; its dm rows and everyone else's stay as they were.
 * One span row per session and room, however many messages. */
static void guest_takeover_by_spans(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->begin(s), 0);
    for (uint64_t seq = 1; seq <= 40; seq++) {
        put_guest(s, "dev", seq, seq % 3 == 0 ? "guest:7" : "guest:8", "Other");
        if (seq % 4 == 0)
            put_guest(s, "ops", seq / 4, seq % 8 == 0 ? "guest:7" : "guest:8", "Other");
    }
    put_guest(s, "dm:a:b", 1, "guest:7", "Other");
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM guest_spans"), 5);

    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(s->ops->claim_guest(s, "guest:7", "carol", "Carol"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'carol'"
                                   " AND sender = 'Carol' AND room = 'dev' AND seq % 3 = 0"),
                     13);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'carol'"
                                   " AND room = 'ops' AND seq % 2 = 0"),
                     5);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'carol'"), 18);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'guest:7'"
                                   " AND room = 'dm:a:b'"),
                     1);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'guest:8'"), 32);
    /* The claimed session's public spans are gone; its dm span and the other's stay. */
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM guest_spans"), 3);
}

/* A database from before guest_spans (rows indexed by events_guest) gets a span for each guest
 * session and room at open, and the takeover finds its rows. */
static void guest_spans_made_from_older_rows(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->begin(s), 0);
    for (uint64_t seq = 1; seq <= 9; seq++)
        put_guest(s, "dev", seq, seq % 2 ? "guest:5" : "guest:6", "Old");
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);
    f->s = NULL;
    char path[128];
    db_path(f, path, sizeof path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql,
             "DROP TABLE search_backlog; DROP TABLE guest_spans;"
             " CREATE INDEX events_guest ON events(identity)"
             " WHERE identity >= 'guest:' AND identity < 'guest;'; PRAGMA user_version = %lld",
             (long long)query(f, "PRAGMA user_version") - 2); /* as schema 5 was */
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    backend_open(f, 0);
    s = f->s;
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM guest_spans WHERE identity = 'guest:5'"
                                   " AND first_seq = 1 AND last_seq = 9"),
                     1);
    assert_int_equal(
        count_rows(f, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'events_guest'"), 0);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(s->ops->claim_guest(s, "guest:5", "dave", "Dave"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'dave'"), 5);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'guest:6'"), 4);
}

/*
 * A batch's tail (rooms' last seq, the search backlog's ranges, guest spans) is written once
 * before COMMIT: one backlog row per room however many messages; a claim inside the same batch
 * sees the spans of the batch's own events; a rollback takes the tail with it.
 */
static void batch_tail_written_once_seen_by_claim_and_rolled_back(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->begin(s), 0);
    for (uint64_t seq = 1; seq <= 30; seq++)
        put_guest(s, seq % 2 ? "dev" : "ops", (seq + 1) / 2, seq % 3 ? "guest:1" : "guest:2",
                  "Old");
    assert_int_equal(s->ops->claim_guest(s, "guest:2", "erin", "Erin"), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM events WHERE identity = 'erin'"), 10);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM search_backlog"), 2);
    assert_int_equal(count_rows(f, "SELECT last_seq FROM rooms WHERE name = 'dev'"), 15);
    assert_int_equal(s->ops->search_backlog(s), 30);

    assert_int_equal(s->ops->begin(s), 0);
    put_guest(s, "dev", 16, "guest:1", "Old");
    put_guest(s, "new", 1, "guest:1", "Old");
    s->ops->rollback(s);
    assert_int_equal(count_rows(f, "SELECT last_seq FROM rooms WHERE name = 'dev'"), 15);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM rooms WHERE name = 'new'"), 0);
    assert_int_equal(s->ops->search_backlog(s), 30);
    assert_int_equal(s->ops->search_catch_up(s), 0);
    assert_int_equal(s->ops->search_backlog(s), 0);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM search_rows"), 30);
}

/*
 * Commits that follow each other with no gap: the checkpointer copies the WAL back on its own
 * thread, and the writer starts it again from its beginning at WAL_BOUND_FRAMES, so the file
 * never grows past the bound (and a batch); every message is still there.
 */
static void wal_stays_bounded_under_continuous_commits(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    char wal[160];
    snprintf(wal, sizeof wal, "%s/parley.db-wal", f->dir);
    uint64_t checkpoints = metrics_count(METRIC_STORE_CHECKPOINTS);
    uint64_t bounded = metrics_count(METRIC_STORE_BOUND_CHECKPOINTS);
    const off_t frame = 4096 + 24, slack = 200; /* a batch below writes far fewer pages */
    off_t longest = 0;
    uint64_t seq = 0;
    /* Until the writer has restarted the WAL twice: it grew to the bound twice. */
    for (int batch = 0; metrics_count(METRIC_STORE_BOUND_CHECKPOINTS) < bounded + 2; batch++) {
        assert_true(batch < 100000);
        assert_int_equal(s->ops->begin(s), 0);
        for (int i = 0; i < 30; i++) {
            char text[200];
            seq++;
            snprintf(text, sizeof text,
                     "message %llu of batch %d: words w%llu x%llu y%llu to index and find again",
                     (unsigned long long)seq, batch, (unsigned long long)seq % 977,
                     (unsigned long long)seq % 389, (unsigned long long)seq * 7919);
            assert_int_equal(put(s, "general", seq, (int64_t)seq, "alice", text, NULL), 0);
        }
        assert_int_equal(s->ops->commit(s), 0);
        struct stat st;
        assert_int_equal(stat(wal, &st), 0);
        if (st.st_size > longest)
            longest = st.st_size;
    }
    assert_true(longest <= 32 + (WAL_BOUND_FRAMES + slack) * frame);
    assert_true(longest > 32 + WAL_CHECKPOINT_FRAMES * frame); /* it did grow: a real test */
    /* The thread was nudged at every 1,000 frames; its first checkpoint is done by now or soon. */
    for (int waited = 0; metrics_count(METRIC_STORE_CHECKPOINTS) == checkpoints; waited++) {
        assert_true(waited < 30000);
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    assert_int_equal(room_seq(s, "general"), seq);
    assert_int_equal(query(f, "SELECT count(*) FROM events"), (int64_t)seq);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_CASES(TEST),
        TEST(creates_missing_data_dir),
        TEST(wal_mode_is_on),
        TEST(size_cap_gives_enospc_and_recovers),
        TEST(garbage_file_is_refused),
        TEST(damaged_schema_is_refused),
        TEST(newer_schema_is_refused),
        TEST(held_write_lock_gives_ebusy),
        TEST(standby_writes_nothing_until_take_over),
        TEST(standby_reads_and_refuses_newer_schema),
        TEST(wal_stays_bounded_under_continuous_commits),
        TEST(guest_takeover_by_spans),
        TEST(guest_spans_made_from_older_rows),
        TEST(batch_tail_written_once_seen_by_claim_and_rolled_back),
    };
    log_set_level(LOG_WARN); /* keep the expected store_error lines, drop the migration notes */
    return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
