/*
 * store_thread: the thread that owns the store. It is every room's
 * sequencer: sends are numbered inside the transaction that stores them.
 *
 * DESIGN: writes that arrive while a commit is running wait in the mailbox;
 * the next turn takes all of them as one batch (one transaction, one
 * fsync): group commit. A batch that fails to commit is rolled back whole,
 * its rooms' counters are put back, and every write in it is answered
 * server_busy; nothing in it is acknowledged or delivered. Reads (history,
 * replay, logins) are served as they arrive, from committed data.
 */
#ifndef PARLEY_STORE_THREAD_H
#define PARLEY_STORE_THREAD_H

#include "config.h"
#include "service.h"
#include "store.h"

/* Callback for each room found at start-up (so the hub can know them too). */
typedef void (*store_thread_room_cb)(void *arg, const char *room, uint64_t last_seq);

/*
 * Prepares the store thread over an open store: loads every room's latest
 * seq. Returns 0, or an error after logging it.
 */
int store_thread_init(struct service *s, struct store *db, const struct config *cfg);
void store_thread_destroy(struct service *s);

#endif
