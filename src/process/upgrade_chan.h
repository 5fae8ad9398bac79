/*
 * upgrade_chan: the control channel between a running parley and the process
 * that takes over from it (upgrade.c). One AF_UNIX SOCK_SEQPACKET socket pair:
 * the new process gets its end as an inherited fd (PARLEY_UPGRADE_FD).
 *
 * DESIGN: each message is one datagram: a 12-byte header (magic "PRLY", the
 * channel version, the type, the payload length) and the payload, with open
 * file descriptors attached when the type carries them (SCM_RIGHTS). A
 * SOCK_SEQPACKET socket keeps message boundaries, passes descriptors, and
 * reads end-of-file when every copy of the other end is closed: when the
 * other process has died, whatever killed it. So the one channel carries the
 * readiness report, the handover's steps, the death of either side and,
 * with live handover, the connections themselves (batches of sockets with
 * their state records), in order.
 *
 * Messages (payloads are text "key=value key=value", for people reading a
 * trace as much as for the code, except CONN_DATA's; unknown keys are ignored):
 *   READY      new -> old  "pid=N version=V chan=C records=MIN-MAX": ready to serve
 *                          (the store open); the channel and record versions it speaks
 *   GO         old -> new  "mode=live|drain" ("" from a version 1 binary: drain): the store is
 *                          yours; load it; in drain mode accept at once, in live mode once the
 *                          connections have come (CONN_DONE)
 * Version 2, live mode, after GO:
 *   CONN_DATA  old -> new  binary: the next bytes of the current batch's records
 *   CONN_BATCH old -> new  "batch=K conns=N bytes=B", N sockets attached: the batch is whole
 *                          (its B bytes hold N records, one per socket, in order)
 *   CONN_ACK   new -> old  "batch=K adopted=A refused=I,J,... why=TEXT": adopted (held: not
 *                          read or written until CONN_DONE), or refused (closed unwritten)
 *   CONN_DONE  old -> new  "handed=N drained=M": no more; the old process lets go of the N
 *                          connections it sent, and drains M; the new one lets them go on
 *   SERVING    new -> old  "pid=N": accepting; the old one drains and exits
 * A message type the receiver does not know is a protocol error: the
 * upgrade fails, and the process that still serves goes on.
 */
#ifndef PARLEY_UPGRADE_CHAN_H
#define PARLEY_UPGRADE_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Version 1: READY, GO, SERVING. Version 2: live handover (CONN_*). */
#define UPGRADE_CHAN_VERSION 2
#define UPGRADE_CHAN_MAGIC 0x594c5250u /* "PRLY" little-endian */
#define UPGRADE_CHAN_HEADER 12
#define UPGRADE_CHAN_MAX_PAYLOAD (64u << 10)
#define UPGRADE_CHAN_MAX_FDS 253 /* the kernel's limit per message (SCM_MAX_FD) */

enum upgrade_msg_type {
    UPGRADE_MSG_READY = 1,
    UPGRADE_MSG_GO = 2,
    UPGRADE_MSG_SERVING = 3,
    UPGRADE_MSG_CONN_DATA = 4,
    UPGRADE_MSG_CONN_BATCH = 5,
    UPGRADE_MSG_CONN_ACK = 6,
    UPGRADE_MSG_CONN_DONE = 7,
};

struct upgrade_msg {
    uint16_t version;
    uint16_t type;
    uint32_t len;
    uint8_t payload[UPGRADE_CHAN_MAX_PAYLOAD + 1]; /* NUL-terminated for text payloads */
    int fds[UPGRADE_CHAN_MAX_FDS];                 /* descriptors received (close-on-exec) */
    size_t n_fds;
};

/* Pure: writes the header of a message into out[0..UPGRADE_CHAN_HEADER). */
void upgrade_chan_header(uint8_t *out, uint16_t type, uint32_t len);

/*
 * Pure: reads the header of the datagram buf[0..n) into msg (version, type,
 * len). Returns 0, or -1 if it is not a message of ours (short, bad magic, a
 * length that is not the rest of the datagram, or too long).
 */
int upgrade_chan_parse(const uint8_t *buf, size_t n, struct upgrade_msg *msg);

/*
 * Sends one message on the channel fd (blocking is fine: messages are small
 * and the peer reads them promptly), with fds[0..n_fds) attached. Returns 0
 * or a negative errno (-EPIPE: the peer is gone).
 */
int upgrade_chan_send(int fd, enum upgrade_msg_type type, const char *payload, const int *fds,
                      size_t n_fds);

/*
 * Sends one message with the payload p[0..len) (any bytes) and fds[0..n_fds) attached; with
 * nonblock, returns -EAGAIN instead of waiting when the channel is full. Returns 0 or a
 * negative errno.
 */
int upgrade_chan_send_bytes(int fd, enum upgrade_msg_type type, const void *p, size_t len,
                            const int *fds, size_t n_fds, bool nonblock);

/*
 * Receives one message into msg (descriptors arrive close-on-exec). Returns 1,
 * 0 at end-of-file (the peer is gone), -EAGAIN when none is waiting, or
 * another negative errno (-EPROTO: not a message of ours; any descriptors it
 * carried are closed).
 */
int upgrade_chan_recv(int fd, struct upgrade_msg *msg);

/*
 * Pure: the value of key in a "key=value key=value" payload, copied into
 * out[0..outsz). Returns true if found.
 */
bool upgrade_chan_field(const char *payload, const char *key, char *out, size_t outsz);

#endif
