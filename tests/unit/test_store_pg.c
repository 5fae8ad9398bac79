/* test_store_pg: the PostgreSQL store backend on a real server (the cases every backend passes,
 * store_cases.h, then PostgreSQL's own: two nodes on one database, migrations, search, a lost
 * connection). */
/*
 * The server: PARLEY_TEST_PG_URL names one already running (a URL of the form
 * postgresql:///postgres?host=DIR&port=N&user=U, as tests/tools/pg.sh prints), or this binary
 * starts its own with tests/tools/pg.sh (run from the repository's root, as scripts/test.sh
 * does) and stops it at the end. The tests run in a child process, so the server is stopped
 * even when one crashes. Every test gets a fresh database, dropped after it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "log.h"
#include "search_text.h"
#include "store.h"
#include "store_cases.h"

static char admin_url[512]; /* the server's `postgres` database */
static unsigned db_counter;

/* admin_url with its database name replaced by name. */
static void url_for(const char *name, char *out, size_t size)
{
    const char *slash = strstr(admin_url, ":///");
    const char *q = strchr(admin_url, '?');
    assert_non_null(slash);
    int head = (int)(slash - admin_url) + 4;
    snprintf(out, size, "%.*s%s%s", head, admin_url, name, q ? q : "");
}

/* Runs sql on the database at url; returns the first column of its first row as an integer (0
 * when it returns none). */
static int64_t sql_on(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    ExecStatusType t = PQresultStatus(r);
    if (t != PGRES_TUPLES_OK && t != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    int64_t v = t == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                    ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                    : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

static void backend_open(struct fixture *f, uint64_t max_db_bytes)
{
    (void)max_db_bytes;
    assert_int_equal(store_pg_open(f->url, false, &f->s), 0);
}

static int64_t count_rows(const struct fixture *f, const char *sql)
{
    return sql_on(f->url, sql);
}

static int64_t backend_schema_version(const struct fixture *f)
{
    return count_rows(f, "SELECT version FROM parley_schema");
}

/* A fresh, empty database for f (its name in f->dir). */
static void fresh_database(struct fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "parley_test_%u", ++db_counter);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s ENCODING 'UTF8' TEMPLATE template0", f->dir);
    sql_on(admin_url, sql);
    url_for(f->dir, f->url, sizeof f->url);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    fresh_database(f);
    if (store_pg_open(f->url, false, &f->s) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->s)
        f->s->ops->close(f->s);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", f->dir);
    sql_on(admin_url, sql);
    free(f);
    return 0;
}

/* Two nodes on one database: each room's seq moves only from the stored last to last + 1, so a
 * node whose counter is behind is refused (-EBUSY, its batch fails whole) rather than storing a
 * duplicate, and a gap is refused the same way. */
static void two_nodes_never_store_one_seq_twice(void **state)
{
    struct fixture *f = *state;
    struct store *a = f->s, *b = NULL;
    assert_int_equal(store_pg_open(f->url, false, &b), 0);
    fill(a, "general", 1);
    assert_int_equal(b->ops->begin(b), 0);
    assert_int_equal(put(b, "general", 1, 5, "bob", "a duplicate seq", NULL), -EBUSY);
    assert_int_equal(b->ops->commit(b), -EBUSY); /* the batch is lost with it */
    assert_int_equal(b->ops->begin(b), 0);
    assert_int_equal(put(b, "general", 3, 5, "bob", "a gap", NULL), -EBUSY);
    b->ops->rollback(b);
    assert_int_equal(b->ops->begin(b), 0);
    assert_int_equal(put(b, "general", 2, 5, "bob", "next", NULL), 0);
    assert_int_equal(b->ops->commit(b), 0);
    assert_int_equal(room_seq(a, "general"), 2);
    struct seen v;
    assert_int_equal(read_seqs(a, "general", 0, 0, 0, 10, false, &v), 2);
    assert_string_equal(v.text[0], "message 1");
    assert_string_equal(v.text[1], "next");
    b->ops->close(b);
}

struct cid_lookup {
    struct store *s;
    uint64_t seq;
    int rc;
};

/* Node B's batch: looks the cid up (waiting for the room's lock), then ends. */
static void *look_up_cid(void *arg)
{
    struct cid_lookup *c = arg;
    c->rc = c->s->ops->begin(c->s);
    if (c->rc == 0)
        c->rc = c->s->ops->find_cid(c->s, "general", "alice", "retry-1", &c->seq);
    c->s->ops->rollback(c->s);
    return NULL;
}

/* The checks of a batch read under the room's row lock: node B's cid lookup waits while node A's
 * batch holds the room, and then finds A's event, so a retry arriving at another node is acked
 * with the first seq. */
static void a_retry_at_another_node_finds_the_first_seq(void **state)
{
    struct fixture *f = *state;
    struct store *a = f->s;
    fill(a, "general", 1);
    struct cid_lookup c = {.rc = 1};
    assert_int_equal(store_pg_open(f->url, false, &c.s), 0);
    assert_int_equal(a->ops->begin(a), 0);
    uint64_t seq;
    assert_int_equal(a->ops->find_cid(a, "general", "alice", "retry-1", &seq), -ENOENT);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, look_up_cid, &c), 0);
    /* Wait until B is blocked on the lock A holds (an event we can observe, not a delay). */
    while (sql_on(f->url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                          " AND application_name = 'parley'") == 0)
        usleep(1000);
    assert_int_equal(put(a, "general", 2, 9, "alice", "once", "retry-1"), 0);
    assert_int_equal(a->ops->commit(a), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.seq, 2);
    c.s->ops->close(c.s);
}

struct opener {
    const char *url;
    int rc;
};

static void *open_store(void *arg)
{
    struct opener *o = arg;
    struct store *s = NULL;
    o->rc = store_pg_open(o->url, false, &s);
    if (s)
        s->ops->close(s);
    return NULL;
}

/* Nodes starting together on an empty database: one migrates (under the advisory lock), the
 * others wait and find the schema ready; all open. */
static void nodes_starting_at_once_migrate_once(void **state)
{
    struct fixture *f = *state;
    struct fixture empty = {0};
    fresh_database(&empty);
    enum { NODES = 4 };
    struct opener o[NODES];
    pthread_t t[NODES];
    for (int i = 0; i < NODES; i++) {
        o[i] = (struct opener){.url = empty.url, .rc = 1};
        assert_int_equal(pthread_create(&t[i], NULL, open_store, &o[i]), 0);
    }
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(o[i].rc, 0);
    }
    assert_int_equal(backend_schema_version(&empty), backend_schema_version(f));
    assert_int_equal(count_rows(&empty, "SELECT count(*) FROM parley_schema"), 1);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", empty.dir);
    sql_on(admin_url, sql);
}

/* A saved room's latest seq as the database has it (welcome on a node that did not write it). */
static void see_saved_latest(void *arg, const char *room, uint64_t marker, uint64_t latest)
{
    (void)marker;
    if (strcmp(room, "dev") == 0)
        *(uint64_t *)arg = latest;
}

/* dm_rooms: every dm room of the user, where it is the first party or the second, with its
 * latest seq; no room of a name that only starts or ends like it, and no public room. Another
 * node's rooms are listed as soon as they are committed, and so are the saved rooms' latest
 * seqs (what welcome gives). */
/* Dm rooms of bob and of names like it (and a public room "bob"), written by a and b. */
static void fill_bobs_dms(struct store *a, struct store *b)
{
    fill(a, "dm:alice:bob", 2);
    fill(b, "dm:bob:carol", 3);
    fill(b, "dm:bobby:carol", 1);
    fill(a, "dm:al:bobby", 1);
    fill(b, "dm:bo:carol", 1);
    fill(a, "bob", 1);
}

static void dm_rooms_lists_a_users_rooms_from_every_node(void **state)
{
    struct fixture *f = *state;
    struct store *a = f->s, *b = NULL;
    assert_int_equal(store_pg_open(f->url, false, &b), 0);
    fill_bobs_dms(a, b);
    struct rooms_seen r = {0};
    assert_int_equal(a->ops->dm_rooms(a, "bob", see_room, &r), 0);
    assert_int_equal(r.n, 2);
    const char *want[] = {"dm:alice:bob", "dm:bob:carol"};
    const uint64_t seqs[] = {2, 3};
    for (int i = 0; i < 2; i++) {
        int found = 0;
        for (int j = 0; j < r.n; j++)
            if (strcmp(r.name[j], want[i]) == 0) {
                found++;
                assert_int_equal(r.last_seq[j], seqs[i]);
            }
        assert_int_equal(found, 1);
    }
    memset(&r, 0, sizeof r);
    assert_int_equal(b->ops->dm_rooms(b, "dave", see_room, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(a->ops->begin(a), 0);
    assert_int_equal(a->ops->saved_set(a, "bob", "dev", true), 0);
    assert_int_equal(a->ops->commit(a), 0);
    fill(b, "dev", 4);
    uint64_t latest = 0;
    assert_int_equal(a->ops->saved_list(a, "bob", see_saved_latest, &latest), 0);
    assert_int_equal(latest, 4);
    /* The second half has an index of its own (the first is a range of the primary key). */
    assert_int_equal(
        count_rows(f, "SELECT count(*) FROM pg_indexes WHERE indexname = 'rooms_dm_second'"), 1);
    b->ops->close(b);
}

/* How many times room is in r, and its last seq there. */
static int seen_times(const struct rooms_seen *r, const char *room, uint64_t *last_seq)
{
    int times = 0;
    for (int j = 0; j < r->n; j++)
        if (strcmp(r->name[j], room) == 0) {
            times++;
            *last_seq = r->last_seq[j];
        }
    return times;
}

/* dm_rooms_of: in one query, what dm_rooms gives for each of the users, each room once (one of
 * two listed users' is in both halves of the query), and nothing else. */
static void dm_rooms_of_lists_what_dm_rooms_lists_for_each(void **state)
{
    struct fixture *f = *state;
    struct store *a = f->s;
    fill_bobs_dms(a, a);
    fill(a, "dm:carol:dave", 4);
    const char *users[] = {"bob", "carol", "erin"};
    struct rooms_seen all = {0};
    assert_int_equal(a->ops->dm_rooms_of(a, users, 3, see_room, &all), 0);
    int want = 0;
    for (int u = 0; u < 3; u++) {
        struct rooms_seen one = {0};
        assert_int_equal(a->ops->dm_rooms(a, users[u], see_room, &one), 0);
        for (int i = 0; i < one.n; i++) {
            uint64_t seq = 0;
            assert_int_equal(seen_times(&all, one.name[i], &seq), 1);
            assert_int_equal(seq, one.last_seq[i]);
            want += strcmp(one.name[i], "dm:bob:carol") != 0 || u == 0; /* bob's and carol's */
        }
    }
    assert_int_equal(all.n, want);
    assert_int_equal(all.n, 5); /* alice:bob, bob:carol, bobby:carol, bo:carol, carol:dave */
    memset(&all, 0, sizeof all);
    assert_int_equal(a->ops->dm_rooms_of(a, users + 2, 1, see_room, &all), 0);
    assert_int_equal(all.n, 0);
}

/* A schema newer than this binary's is refused, opened normally or in standby; standby on an
 * empty database writes nothing until take_over migrates it. */
static void standby_and_newer_schema(void **state)
{
    struct fixture *f = *state;
    struct fixture empty = {0};
    fresh_database(&empty);
    struct store *s = NULL;
    assert_int_equal(store_pg_open(empty.url, true, &s), 0);
    assert_int_equal(count_rows(&empty, "SELECT count(*) FROM pg_tables WHERE schemaname ="
                                        " 'public'"),
                     0);
    assert_int_equal(s->ops->take_over(s), 0);
    assert_int_equal(backend_schema_version(&empty), backend_schema_version(f));
    assert_int_equal(put(s, "general", 1, 1, "alice", "after take_over", NULL), 0);
    assert_int_equal(room_seq(s, "general"), 1);
    s->ops->close(s);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", empty.dir);
    sql_on(admin_url, sql);

    count_rows(f, "UPDATE parley_schema SET version = 99");
    s = (struct store *)1;
    assert_int_equal(store_pg_open(f->url, false, &s), -EIO);
    assert_null(s);
    assert_int_equal(store_pg_open(f->url, true, &s), -EIO);
    assert_null(s);
}

struct hits {
    int n;
    uint64_t rowid[16];
    uint64_t seq[16];
    char room[16][16];
};

static bool see_hit(void *arg, uint64_t rowid, const char *room, uint64_t seq, int64_t ts)
{
    (void)ts;
    struct hits *h = arg;
    assert_true(h->n < 16);
    h->rowid[h->n] = rowid;
    h->seq[h->n] = seq;
    snprintf(h->room[h->n], sizeof h->room[0], "%s", room);
    h->n++;
    return true;
}

/* Searches q (rule 71's syntax, parsed by search_text.c) in room (NULL: everywhere) from rowid
 * `from`, as store_thread.c builds the expression; returns the hits, newest first. */
static struct hits search(struct store *s, const char *q, const char *room, uint64_t from)
{
    char *match = NULL;
    assert_int_equal(search_query_parse(q, strlen(q), &match, NULL), SEARCH_QUERY_OK);
    char expr[512];
    if (room)
        snprintf(expr, sizeof expr, "words : (%s) AND rkey : \"%s\"", match, room);
    else
        snprintf(expr, sizeof expr, "words : (%s)", match);
    free(match);
    struct hits h = {0};
    assert_int_equal(s->ops->search(s, expr, from, see_hit, &h), 0);
    return h;
}

/* Search on PostgreSQL's text search: words folded as search_text.c folds them, all required,
 * prefixes and phrases, one room, newest first from a cursor, and edits and deletes reflected. */
static void search_follows_rule_71(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "dev", 1, 10, "alice", "Deploy the ÉCOLE build tonight", NULL), 0);
    assert_int_equal(put(s, "dev", 2, 11, "bob", "the build is green", NULL), 0);
    assert_int_equal(put(s, "ops", 1, 12, "carol", "green build, deploying", NULL), 0);
    assert_int_equal(s->ops->commit(s), 0);

    struct hits h = search(s, "build", NULL, UINT64_MAX);
    assert_int_equal(h.n, 3);
    assert_true(h.rowid[0] > h.rowid[1] && h.rowid[1] > h.rowid[2]); /* newest first */
    assert_string_equal(h.room[0], "ops");
    h = search(s, "école", NULL, UINT64_MAX); /* folded: matches ÉCOLE */
    assert_int_equal(h.n, 1);
    assert_int_equal(h.seq[0], 1);
    h = search(s, "green build", NULL, UINT64_MAX); /* both words, any order */
    assert_int_equal(h.n, 2);
    h = search(s, "\"green build\"", NULL, UINT64_MAX); /* the phrase only */
    assert_int_equal(h.n, 1);
    assert_string_equal(h.room[0], "ops");
    h = search(s, "deploy*", NULL, UINT64_MAX); /* prefix */
    assert_int_equal(h.n, 2);
    h = search(s, "deploy", NULL, UINT64_MAX); /* a word, not a prefix */
    assert_int_equal(h.n, 1);
    h = search(s, "build", "dev", UINT64_MAX);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.room[0], "dev");
    uint64_t cursor = h.rowid[0] - 1;
    h = search(s, "build", "dev", cursor); /* from a cursor: only older rows */
    assert_int_equal(h.n, 1);
    assert_int_equal(h.seq[0], 1);

    /* An edit replaces the words; a delete takes the row out. */
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 3, .ts = 20, .from = "bob",
                                                      .identity = "bob", .type = STORE_EV_EDIT,
                                                      .target = 2, .text = "the tests are red"}),
                     0);
    assert_int_equal(put_event(s, &(struct store_msg){.seq = 4, .ts = 21, .from = "alice",
                                                      .identity = "alice",
                                                      .type = STORE_EV_DELETE, .target = 1}),
                     0);
    assert_int_equal(s->ops->commit(s), 0);
    h = search(s, "build", NULL, UINT64_MAX);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.room[0], "ops");
    h = search(s, "red", NULL, UINT64_MAX);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.seq[0], 2);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM events WHERE text LIKE '%ÉCOLE%'"), 0);
    bool more = true;
    assert_int_equal(s->ops->search_merge(s, &more), 0);
    assert_false(more);
    assert_int_equal(s->ops->checkpoint(s), 0); /* VACUUM: the old row versions go */
}

/* The server ends the store's connection: the write under way fails with -EBUSY (the caller
 * answers server_busy), and the next batch reconnects and stores. */
static void a_lost_connection_is_busy_then_recovers(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    fill(s, "general", 1);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND application_name = 'parley'",
             f->dir);
    assert_int_equal(sql_on(admin_url, sql), 1);
    int rc = s->ops->begin(s);
    if (rc == 0) /* libpq may learn of the end only at the next statement */
        rc = put(s, "general", 2, 2, "alice", "lost", NULL);
    assert_int_equal(rc, -EBUSY);
    s->ops->rollback(s);
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 2, 2, "alice", "after", NULL), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), 2);
}

/* A batch's start as the store thread makes it: its rooms locked in one statement with their
 * last seqs (another node's write included, a missing row made), and its cid and mute checks read
 * ahead; the answers read ahead are the database's, and the batch's own writes keep them so (an
 * insert's cid is found, an unmute lifts, a trim forgets). */
static void a_batch_reads_its_checks_ahead(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s, *b = NULL;
    assert_int_equal(s->ops->begin(s), 0);
    assert_int_equal(put(s, "general", 1, 1000, "alice", "first", NULL), 0);
    assert_int_equal(put(s, "general", 2, 1010, "alice", "with a cid", "c1"), 0);
    struct store_msg e = {.seq = 1, .ts = 2000, .from = "alice", .type = STORE_EV_MUTE,
                          .user = "Carol"};
    assert_int_equal(put_event(s, &e), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(store_pg_open(f->url, false, &b), 0);
    assert_int_equal(b->ops->begin(b), 0);
    assert_int_equal(put(b, "general", 3, 1020, "bob", "from another node", NULL), 0);
    assert_int_equal(b->ops->commit(b), 0);
    b->ops->close(b);

    assert_int_equal(s->ops->begin(s), 0);
    const char *rooms[] = {"dev", "general", "newroom"};
    uint64_t seqs[3] = {9, 9, 9};
    const struct store_lookup keys[] = {
        {.room = "general", .identity = "ALICE", .cid = "c1", .muted_lc = "alice"},
        {.room = "general", .identity = "bob", .cid = "c9"},
        {.room = "dev", .identity = "carol", .muted_lc = "carol"},
        {.room = "dev", .identity = "dave", .muted_lc = "dave"},
        {.room = "elsewhere", .identity = "erin", .cid = "c1"}, /* a room not locked: not read */
    };
    int64_t clock = 0, alone = 0;
    assert_int_equal(s->ops->room_seqs(s, rooms, 3, 5000, seqs, keys, 5, &clock), 0);
    assert_int_equal(s->ops->clock_ms(s, &alone), 0);
    assert_true(clock > 5000);
    assert_int_equal(clock, alone); /* now(): the transaction's start, whichever asks */
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 3);
    assert_int_equal(seqs[2], 0);
    uint64_t seq = 0;
    int64_t until = -1;
    assert_int_equal(s->ops->find_cid(s, "general", "alice", "c1", &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(s->ops->find_cid(s, "general", "bob", "c9", &seq), -ENOENT);
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_MUTE, "carol", 6000, &until), 0);
    assert_int_equal(until, 0);
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_MUTE, "dave", 6000, &until), -ENOENT);
    assert_int_equal(s->ops->restriction(s, "general", STORE_MOD_MUTE, "alice", 6000, &until),
                     -ENOENT);

    assert_int_equal(put(s, "general", 4, 5000, "bob", "stored now", "c9"), 0);
    assert_int_equal(s->ops->find_cid(s, "general", "BOB", "c9", &seq), 0);
    assert_int_equal(seq, 4);
    e = (struct store_msg){.seq = 2, .ts = 5000, .from = "alice", .type = STORE_EV_UNMUTE,
                           .user = "Carol"};
    assert_int_equal(put_event(s, &e), 0);
    assert_int_equal(s->ops->restriction(s, "dev", STORE_MOD_MUTE, "carol", 6000, &until), -ENOENT);
    assert_int_equal(s->ops->trim(s, "general", 2), 0);
    assert_int_equal(s->ops->find_cid(s, "general", "alice", "c1", &seq), -ENOENT);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(room_seq(s, "general"), 4);
    assert_int_equal(room_seq(s, "newroom"), 0);
}

/* Starts a server with tests/tools/pg.sh into admin_url and *dir; false if it could not. */
static bool start_server(char *dir, size_t size)
{
    FILE *p = popen("tests/tools/pg.sh start", "r");
    if (!p)
        return false;
    bool ok = fgets(dir, (int)size, p) && fgets(admin_url, sizeof admin_url, p);
    int rc = pclose(p);
    dir[strcspn(dir, "\n")] = '\0';
    admin_url[strcspn(admin_url, "\n")] = '\0';
    return ok && rc == 0;
}

static void stop_server(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tests/tools/pg.sh stop '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_store_pg: stopping the server in %s failed\n", dir);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static int run_store_tests(void)
{
    const struct CMUnitTest tests[] = {
        STORE_CASES(TEST),
        TEST(two_nodes_never_store_one_seq_twice),
        TEST(a_retry_at_another_node_finds_the_first_seq),
        TEST(nodes_starting_at_once_migrate_once),
        TEST(standby_and_newer_schema),
        TEST(dm_rooms_lists_a_users_rooms_from_every_node),
        TEST(dm_rooms_of_lists_what_dm_rooms_lists_for_each),
        TEST(search_follows_rule_71),
        TEST(a_lost_connection_is_busy_then_recovers),
        TEST(a_batch_reads_its_checks_ahead),
    };
    log_set_level(LOG_WARN); /* keep the expected store_error lines, drop the migration notes */
    return cmocka_run_group_tests_name("store_pg", tests, NULL, NULL);
}

static volatile sig_atomic_t child_pid;

static void pass_on(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

int main(void)
{
    const char *given = getenv("PARLEY_TEST_PG_URL");
    if (given && *given) {
        snprintf(admin_url, sizeof admin_url, "%s", given);
        return run_store_tests();
    }
    char dir[256] = "";
    if (!start_server(dir, sizeof dir)) {
        fprintf(stderr, "test_store_pg: could not start PostgreSQL (tests/tools/pg.sh start, run "
                        "from the repository's root)\n");
        printf("not ok - test_store_pg could not start PostgreSQL\n");
        return 1;
    }
    /* The tests in a child, so the server is stopped whatever becomes of them. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        exit(run_store_tests() == 0 ? 0 : 1); /* exit, not _exit: LeakSanitizer runs at exit */
    child_pid = pid;
    signal(SIGTERM, pass_on);
    signal(SIGINT, pass_on);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        continue;
    stop_server(dir);
    return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
