/*
 * broker_impl: what each broker backend fills in (broker_local.c, broker_redis.c) and the
 * state every backend shares; broker.c dispatches the public calls. Not for the hub.
 */
#ifndef PARLEY_BROKER_IMPL_H
#define PARLEY_BROKER_IMPL_H

#include <stdatomic.h>

#include "broker.h"

struct broker_backend {
    const char *kind;
    const char *(*id)(const struct broker *b);
    void (*free)(struct broker *b);
    void (*follow)(struct broker *b, const char *room, uint64_t newest);
    void (*unfollow)(struct broker *b, const char *room);
    void (*publish_room)(struct broker *b, const char *room, uint64_t seq, void *obj,
                         const void *data, size_t len);
    void (*room_stored)(struct broker *b, const char *room, uint64_t seq); /* NULL: nothing */
    void (*fill_event)(struct broker *b, const char *room, uint64_t seq, void *obj);
    void (*fill_done)(struct broker *b, const char *room, uint64_t upto, bool ok);
    uint64_t (*room_members)(struct broker *b, const char *room, uint32_t local);
    void (*room_here)(struct broker *b, const char *room, const char *user, bool in);
    void (*room_sync)(struct broker *b, const char *room, const char *const *users, size_t n);
    void (*publish_user)(struct broker *b, const char *user, const void *data, size_t len);
    void (*user_here)(struct broker *b, const char *user, bool online);
    void (*guest_claim)(struct broker *b, const char *name, const char *shown, uint64_t session,
                        void (*done)(void *arg, bool ok), void *arg);
    void (*guest_release)(struct broker *b, const char *name);
    void (*guest_lookup)(struct broker *b, const char *name,
                         void (*done)(void *arg, const char *shown), void *arg);
    void (*goodbye)(struct broker *b, void (*done)(void *arg), void *arg); /* NULL: done at once */
};

/* The start of every backend's struct. The counters are read by other threads (/metrics). */
struct broker {
    const struct broker_backend *backend;
    struct broker_user user;
    atomic_bool up;
    atomic_uint_fast64_t since_ms, reconnects, published, received, fills, reaped;
};

/* Prepares the shared part: up or not, since now. */
void broker_base_init(struct broker *b, const struct broker_backend *backend,
                      const struct broker_user *u, bool up);
/* Records a change of up (since now; a return counts as a reconnect). */
void broker_base_set_up(struct broker *b, bool up);

#endif
