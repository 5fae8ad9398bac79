/* wal_checkpointer: copies a SQLite WAL back into its database on a thread and connection of
 * its own, so that the writer's commits never wait for a checkpoint. */
/*
 * DESIGN: SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000
 * frames, on the writer's thread: every ~40th batch of a busy store waited for a thousand pages
 * to be copied and the database file synced before it could be answered. Here the writer turns
 * that off (its WAL hook nudges this thread instead) and a thread with its own connection runs
 * PASSIVE checkpoints, which never take the writer's lock: the writer goes on committing into the
 * WAL meanwhile, and once everything in it is copied back, SQLite starts the WAL from its
 * beginning at the next write, so it is reused, not grown.
 *
 * Durability is SQLite's, unchanged: a commit is in the WAL before it is acknowledged, and a
 * checkpoint only copies committed frames into the database (syncing the WAL first and the
 * database after, as the writer's setting says), so a kill -9 in the middle of one loses
 * nothing; the next open replays the WAL. Another process on the same file (an upgrade's) may
 * checkpoint too: SQLite lets one at a time, and the other's PASSIVE attempt just finds it busy.
 */
#include "wal_checkpointer.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"

struct wal_checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu; /* guards wanted, waiting, stopping */
    pthread_cond_t cv;
    bool wanted;   /* a nudge came since the last checkpoint began */
    bool waiting;  /* the thread sleeps on cv */
    bool stopping; /* stop asked */
    /* Held while a checkpoint runs, by this thread or by the writer's own. */
    pthread_mutex_t run;
    /* The writer's alone: the WAL's length at its last commit, and the length at which it
     * nudges next. */
    int seen;
    int next_at;
};

/* Runs one PASSIVE checkpoint; counts it, and logs a failure that is not just another
 * checkpoint under way. */
static void checkpoint_once(struct wal_checkpointer *c)
{
    int log_frames = 0, copied = 0;
    pthread_mutex_lock(&c->run);
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                       &copied);
    pthread_mutex_unlock(&c->run);
    if (rc == SQLITE_OK) {
        metrics_add(METRIC_STORE_CHECKPOINTS, 1);
    } else if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
        metrics_add(METRIC_STORE_ERRORS, 1);
        log_warn("msg=store_error op=wal_checkpoint code=%d error=\"%s\"", rc,
                 sqlite3_errmsg(c->db));
    }
}

static void *checkpointer_main(void *arg)
{
    struct wal_checkpointer *c = arg;
    /* Below the threads that answer clients: a checkpoint can wait for the CPU, the WAL has
     * room meanwhile (and the writer bounds it, WAL_BOUND_FRAMES). */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 5);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->wanted && !c->stopping) {
            c->waiting = true;
            pthread_cond_wait(&c->cv, &c->mu);
            c->waiting = false;
        }
        if (c->stopping)
            break;
        c->wanted = false;
        pthread_mutex_unlock(&c->mu);
        checkpoint_once(c);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Frees c once no thread runs on it: its locks, its connection, itself. */
static void checkpointer_free(struct wal_checkpointer *c)
{
    pthread_mutex_destroy(&c->run);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    sqlite3_close(c->db);
    free(c);
}

struct wal_checkpointer *wal_checkpointer_start(const char *path, bool sync_full)
{
    struct wal_checkpointer *c = xcalloc(1, sizeof *c);
    int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        /* The checkpoint's syncs follow this connection's setting: the writer's. */
        rc = sqlite3_exec(c->db,
                          sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                          NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        log_warn("msg=store_checkpointer_failed error=\"%s\" fallback=\"checkpoints on the "
                 "store thread\"",
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_mutex_init(&c->run, NULL);
    /* Signals are the main thread's (a signalfd): the thread starts with all of them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&c->thread, NULL, checkpointer_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        log_warn("msg=store_checkpointer_failed error=\"no thread (%d)\" fallback=\"checkpoints "
                 "on the store thread\"",
                 err);
        checkpointer_free(c);
        return NULL;
    }
    return c;
}

void wal_checkpointer_nudge(struct wal_checkpointer *c, int frames)
{
    /* Shorter than at the last commit: the WAL started again from its beginning. */
    if (frames < c->seen || c->next_at == 0)
        c->next_at = WAL_CHECKPOINT_FRAMES;
    c->seen = frames;
    if (frames < c->next_at)
        return;
    /* Not at every commit from here on: a checkpoint that began at the last nudge is most
     * likely still copying, and one per commit would only sync the files over and over. */
    c->next_at = frames + WAL_CHECKPOINT_FRAMES;
    pthread_mutex_lock(&c->mu);
    c->wanted = true;
    bool wake = c->waiting;
    pthread_mutex_unlock(&c->mu);
    if (wake)
        pthread_cond_signal(&c->cv);
}

void wal_checkpointer_lock(struct wal_checkpointer *c)
{
    pthread_mutex_lock(&c->run);
}

void wal_checkpointer_unlock(struct wal_checkpointer *c)
{
    pthread_mutex_unlock(&c->run);
}

void wal_checkpointer_stop(struct wal_checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_mutex_unlock(&c->mu);
    pthread_cond_signal(&c->cv);
    pthread_join(c->thread, NULL);
    checkpointer_free(c);
}
