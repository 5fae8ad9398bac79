/*
 * upgrade_live: the main thread's side of a live upgrade (upgrade.c runs the
 * upgrade's steps; handover.c does the work on each worker). In the old
 * process: holding the input of the connections that can move and waiting
 * for what they have on its way, then collecting their records, sending
 * them with their sockets in batches over the control channel, and settling
 * what the new process adopted or refused. In the new one: taking the
 * batches apart, having the workers adopt each connection (spread evenly),
 * acknowledging each batch, and letting every adopted connection go on once
 * the old process says it is over. And, for the old process that restarts
 * itself after the new one died, the same records carried across its exec
 * in a memfd.
 *
 * DESIGN: records travel as a byte stream in CONN_DATA messages (at most
 * UPGRADE_CHAN_MAX_PAYLOAD each), cut into batches of at most
 * UPGRADE_CHAN_MAX_FDS connections (and about a MiB) by a CONN_BATCH message
 * carrying the batch's sockets. The old process sends without blocking,
 * reading acknowledgements meanwhile, so neither process waits on the other
 * with both channel buffers full. It keeps every parked connection until it
 * has sent CONN_DONE, so if the new process dies before, every connection is
 * still its own (the new one never touched them: it holds their I/O until
 * CONN_DONE), and none is lost.
 */
#ifndef PARLEY_UPGRADE_LIVE_H
#define PARLEY_UPGRADE_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "mailbox.h"
#include "server.h"
#include "upgrade_chan.h"

/* What the upgrade's steps hear back (upgrade.c). */
struct live_hooks {
    /* old: every connection that can move has nothing on its way (or the bound passed) */
    void (*quiet)(void);
    /* old: CONN_DONE is sent: `handed` connections are the new process's, `drained` stay here */
    void (*moved)(uint64_t handed, uint64_t drained);
    /* old: the channel failed while sending */
    void (*channel_failed)(const char *why);
    /* new: every connection handed over is adopted (or refused) and goes on; drained: how many
     * the old process kept (from CONN_DONE, those refused here included), or when it did not say,
     * how many were refused here */
    void (*adopted)(uint64_t adopted, uint64_t refused, uint64_t drained);
};

/*
 * Prepares the module for this process: its loop and mailbox (where the workers answer), and
 * the hooks. Reads the test-only variables PARLEY_TEST_RECORD_VERSION (records written with that
 * version number) and PARLEY_TEST_BATCH (connections per batch).
 */
void live_init(struct loop *loop, struct mailbox *mbox, const struct live_hooks *hooks);

/* A MAIL_HANDOVER reply from a worker reached the main thread's mailbox (m is freed). */
void live_mail(struct mail *m);

/* --- the old process --- */

/* Holds the input of every connection that can move; hooks.quiet once nothing is on its way
 * or after bound_ms. */
void live_freeze(struct server *s, uint64_t bound_ms);
/* The upgrade failed before GO: every held connection reads again. */
void live_unfreeze(struct server *s);
/* After GO (and the store closed): collects the connections (busy ones are waited for until
 * bound_ms from now) and sends them on chan, non-blocking. */
void live_collect(struct server *s, int chan, uint64_t bound_ms);
/* Whether there is something to send that waits for chan to be writable; send it. */
bool live_wants_write(void);
void live_writable(void);
/* A CONN_ACK from the new process. Returns 0, or -1 when it does not fit what was sent. */
int live_ack(const struct upgrade_msg *m);
/* After CONN_DONE: every connection the new process adopted is dropped here. */
void live_settle_moved(struct server *s);
/*
 * Recovery (the new process died after GO): asks every worker to write and let go of every
 * connection that can move (parked or not), waiting at most wait_ms. Fills *fds (the sockets,
 * now the caller's, close-on-exec cleared by nothing yet) and returns how many, with their
 * records in *recs (records[i] of fds[i], back to back); the caller frees both.
 */
size_t live_save_all(struct server *s, uint64_t wait_ms, int **fds, uint8_t **recs,
                     size_t *recs_len);

/* --- the new process --- */

/* GO in live mode: adopts what comes on chan until CONN_DONE, or until bound_ms pass. */
void live_adopt_begin(struct server *s, int chan, uint64_t bound_ms);
/* The channel's messages in live mode (CONN_DATA, CONN_BATCH, CONN_DONE); m's fds are taken.
 * Returns 0, or -1 for a message that does not belong. */
int live_adopt_msg(struct upgrade_msg *m);
/* The old process is gone before CONN_DONE: what was adopted goes on. */
void live_adopt_eof(void);
/* Whether adoption is under way (between live_adopt_begin and hooks.adopted). */
bool live_adopting(void);
/*
 * A process that restarts itself after a failed upgrade: adopts the connections of the memfd
 * (the container live_write_memfd wrote), then hooks.adopted. Returns 0, or -1 (logged) when
 * the memfd cannot be read (its sockets are closed).
 */
int live_adopt_memfd(struct server *s, int memfd);

/*
 * Writes a memfd that carries n connections across an exec: for each, the descriptor number it
 * has in the new image (fds[i]) and its record (records back to back in recs). Returns the
 * memfd (not close-on-exec), or -1.
 */
int live_write_memfd(const int *fds, size_t n, const uint8_t *recs, size_t recs_len);

#endif
