/*
 * upgrade: the life of the process on its main thread: start (fresh, from
 * sockets systemd passed, or taking over from an older process), signals,
 * the pid file, and upgrades to a new binary (SIGUSR2) with their faults.
 *
 * DESIGN: the main thread runs an event loop (loop.h) over a signalfd, the
 * control channel to the process on the other side of an upgrade
 * (upgrade_chan.h), that process's pidfd, timers, and a mailbox where the
 * store answers. An upgrade, seen from the running (old) process:
 *
 *   SIGUSR2 -> start the new binary with the listening sockets (LISTEN_FDS)
 *     and its end of the channel                         msg=upgrade_started
 *   READY   <- the new one opened the store (standby)    msg=upgrade_ready
 *     stop accepting (connections wait in the kernel's backlog); hold the
 *     store: commit the batch under way, keep later writes waiting
 *   GO      -> the store is the new one's; close the gate: every write
 *     waiting or to come is refused (the connection is closed with 1012)
 *   SERVING <- the new one loaded the store and accepts  msg=upgrade_handed_over
 *     say goodbye (1012) to every connection, spread over --drain-time,
 *     then exit 0                                        msg=draining, msg=stopped
 *
 * Before GO, any failure (the new process exits, crashes, is too slow, says
 * something unexpected) kills it, opens the gate and accepts again: nobody
 * noticed. After GO the new process may have written: if it dies before the
 * old one has exited, the old one cannot trust its own state and replaces
 * itself by a fresh copy of its binary (exec, keeping the listening sockets),
 * which loads the store as it is. docs/architecture.md ("Upgrades") has the
 * whole argument, docs/operations.md the procedure.
 */
#ifndef PARLEY_UPGRADE_H
#define PARLEY_UPGRADE_H

#include "config.h"

/*
 * Runs the server of cfg until it stops or hands over, then returns the
 * process's exit status (0, or 2 when it could not start). argv: the command
 * line, passed to the new binary of an upgrade as it is.
 */
int upgrade_run(const struct config *cfg, int argc, char **argv);

/*
 * `parley upgrade --data DIR`: asks the parley serving DIR (found by its pid
 * file) to upgrade. Returns the exit status: 0 once the signal is sent, 1
 * when no running parley serves DIR, 2 for bad arguments.
 */
int upgrade_command(int argc, char **argv);

#endif
