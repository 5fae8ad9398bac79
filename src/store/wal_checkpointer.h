/* wal_checkpointer: copies a SQLite WAL back into its database on a thread and connection of
 * its own, so that the writer's commits never wait for a checkpoint. */
#ifndef PARLEY_WAL_CHECKPOINTER_H
#define PARLEY_WAL_CHECKPOINTER_H

#include <stdbool.h>

/* The writer nudges the checkpointer each time the WAL has grown by this many frames (SQLite's
 * own automatic checkpoint runs at this length). */
#define WAL_CHECKPOINT_FRAMES 1000
/* The length at which the writer checkpoints itself, waiting for it (RESTART), so that the WAL
 * stays bounded (about 40 MiB at 4 KiB pages) when commits follow each other with no gap: the
 * WAL starts again from its beginning only at a write that finds all of it copied back. */
#define WAL_BOUND_FRAMES 10000

struct wal_checkpointer;

/*
 * Opens a second connection to the database at path (in WAL mode already; synchronous FULL when
 * sync_full, else NORMAL, as the writer's) and starts the thread. Returns NULL after logging why
 * if it cannot; the writer then keeps SQLite's automatic checkpoint.
 */
struct wal_checkpointer *wal_checkpointer_start(const char *path, bool sync_full);

/* Called by the writer after each commit, with the WAL's length in frames: each time it has
 * grown by WAL_CHECKPOINT_FRAMES, asks the thread for a PASSIVE checkpoint (never waits for it). */
void wal_checkpointer_nudge(struct wal_checkpointer *c, int frames);

/* Held around the writer's own checkpoints (the bound, the erase timer's truncation), so that
 * they wait for one of the thread's instead of finding SQLite's checkpoint lock taken. */
void wal_checkpointer_lock(struct wal_checkpointer *c);
void wal_checkpointer_unlock(struct wal_checkpointer *c);

/* Stops the thread (after the checkpoint under way, if any) and closes its connection. */
void wal_checkpointer_stop(struct wal_checkpointer *c);

#endif
