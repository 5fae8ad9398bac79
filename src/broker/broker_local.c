/*
 * broker_local: the broker of a process that is alone (no --broker): nothing crosses
 * processes. Its own room events come back at once (the store thread already hands them to the
 * hub in seq order), there is no other node to tell, no gap to fill, and every guest's name is
 * this process's to check.
 */
#include "broker_impl.h"

#include <stdlib.h>

#include "alloc.h"

static void local_free(struct broker *b)
{
    free(b);
}

static void local_follow(struct broker *b, const char *room, uint64_t newest)
{
    (void)b, (void)room, (void)newest;
}

static void local_unfollow(struct broker *b, const char *room)
{
    (void)b, (void)room;
}

static void local_publish_room(struct broker *b, const char *room, uint64_t seq, void *obj,
                               const void *data, size_t len)
{
    (void)data, (void)len;
    b->user.room_event(b->user.ctx, room, seq, obj, NULL, 0);
}

/* No fill is ever asked: an answer anyway only hands its object back. */
static void local_fill_event(struct broker *b, const char *room, uint64_t seq, void *obj)
{
    (void)room, (void)seq;
    b->user.release(b->user.ctx, obj);
}

static void local_fill_done(struct broker *b, const char *room, uint64_t upto, bool ok)
{
    (void)b, (void)room, (void)upto, (void)ok;
}

static uint64_t local_room_members(struct broker *b, const char *room, uint32_t local)
{
    (void)b, (void)room;
    return local;
}

static void local_room_here(struct broker *b, const char *room, const char *user, bool in)
{
    (void)b, (void)room, (void)user, (void)in;
}

static void local_room_sync(struct broker *b, const char *room, const char *const *users,
                            size_t n)
{
    (void)b, (void)room, (void)users, (void)n;
}

static void local_publish_user(struct broker *b, const char *user, const void *data, size_t len)
{
    (void)b, (void)user, (void)data, (void)len;
}

static void local_user_here(struct broker *b, const char *user, bool online)
{
    (void)b, (void)user, (void)online;
}

static void local_guest_claim(struct broker *b, const char *name, const char *shown,
                              uint64_t session, void (*done)(void *, bool), void *arg)
{
    (void)b, (void)name, (void)shown, (void)session;
    done(arg, true);
}

static void local_guest_release(struct broker *b, const char *name)
{
    (void)b, (void)name;
}

/* Alone: the hub knows every guest there is. */
static void local_guest_lookup(struct broker *b, const char *name,
                               void (*done)(void *, const char *), void *arg)
{
    (void)b, (void)name;
    done(arg, NULL);
}

static const struct broker_backend local_backend = {
    .kind = "local",
    .free = local_free,
    .follow = local_follow,
    .unfollow = local_unfollow,
    .publish_room = local_publish_room,
    .fill_event = local_fill_event,
    .fill_done = local_fill_done,
    .room_members = local_room_members,
    .room_here = local_room_here,
    .room_sync = local_room_sync,
    .publish_user = local_publish_user,
    .user_here = local_user_here,
    .guest_claim = local_guest_claim,
    .guest_release = local_guest_release,
    .guest_lookup = local_guest_lookup,
};

struct broker *broker_local_new(const struct broker_user *u)
{
    struct broker *b = xcalloc(1, sizeof *b);
    broker_base_init(b, &local_backend, u, true);
    return b;
}
