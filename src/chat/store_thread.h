/*
 * store_thread: the thread that owns the store. It is every room's
 * sequencer: sends are numbered inside the transaction that stores them.
 *
 * DESIGN: writes that arrive while a commit is running wait in the mailbox;
 * the next turn takes all of them as one batch (one transaction, one
 * write of the WAL, and one fsync with --sync full): group commit. A batch that fails to commit is rolled back whole,
 * its rooms' counters are put back, and every write in it is answered
 * server_busy; nothing in it is acknowledged or delivered. Reads (history,
 * replay, logins) are served as they arrive, from committed data.
 */
#ifndef PARLEY_STORE_THREAD_H
#define PARLEY_STORE_THREAD_H

#include "config.h"
#include "service.h"
#include "store.h"

/*
 * The gate of the store for writes, for an upgrade (upgrade.c), where only one
 * process may write at a time:
 *   OPEN    writes are batched and committed (the normal state);
 *   HELD    the batch gathered so far is committed, then writes wait in the
 *           store, unanswered, until the gate opens or closes (reads go on);
 *   CLOSED  every write waiting or to come is answered server_busy with
 *           handed_over set: this process will never write again.
 * Set by a MAIL_STORE_GATE mail, sent to the hub, which passes it on to the
 * store behind the ops it has already sent there; the store posts the same
 * mail back to `reply` once the gate is set (and, for HELD, the batch before
 * it is committed).
 */
enum store_gate { STORE_GATE_OPEN, STORE_GATE_HELD, STORE_GATE_CLOSED };

struct store_gate_mail {
    struct mail mail; /* kind MAIL_STORE_GATE */
    enum store_gate gate;
    struct mailbox *reply; /* gets this mail back when done; NULL: the store frees it */
};

/* Callback for each room found at start-up (so the hub can know them too). */
typedef void (*store_thread_room_cb)(void *arg, const char *room, uint64_t last_seq);

/*
 * Prepares the store thread over an open store: loads every room's latest
 * seq. Returns 0, or an error after logging it.
 */
int store_thread_init(struct service *s, struct store *db, const struct config *cfg);
void store_thread_destroy(struct service *s);

#endif
