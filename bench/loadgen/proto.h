/*
 * proto: what the load generator says. Pure: requests written into the
 * caller's buffer, and the stamp every text carries, "t=<ns> s=<sender>
 * k=<n>" (the send time on CLOCK_MONOTONIC, the sending client's index and
 * its message count, 1-based) padded to a chosen size, read back at every
 * receiver. In parley's protocol the stamp is the `text` of a `send`; in the
 * relay protocol it is the whole message.
 */
#ifndef LOADGEN_PROTO_H
#define LOADGEN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The stamp, padded with 'x' to `size` bytes (never cut). Returns its length (< cap). */
size_t proto_stamp_write(char *out, size_t cap, uint64_t t, uint32_t sender, uint32_t k,
                         size_t size);

/* Reads a stamp at the start of text; returns false when there is none. */
bool proto_stamp_read(const char *text, size_t len, uint64_t *t, uint32_t *sender, uint32_t *k);

/* Each writes one request into out and returns its length (0 when it does not fit). */
size_t proto_login_guest(char *out, size_t cap, const char *prefix, uint32_t id);
size_t proto_login_token(char *out, size_t cap, const char *token);
/* since < 0: a join without `since`. */
size_t proto_join(char *out, size_t cap, const char *room_prefix, uint32_t room, int64_t since);
/* cid: with a client message id "<sender>-<k>" (so a resend is recognised). */
size_t proto_send(char *out, size_t cap, const char *room_prefix, uint32_t room, uint32_t k,
                  const char *text, size_t text_len, bool cid, uint32_t sender);

#endif
