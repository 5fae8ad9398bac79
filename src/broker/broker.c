/* broker: the public calls, passed to the backend the config chose; the shared state. */
#include "broker_impl.h"

#include <time.h>

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void broker_base_init(struct broker *b, const struct broker_backend *backend,
                      const struct broker_user *u, bool up)
{
    b->backend = backend;
    b->user = *u;
    atomic_init(&b->up, up);
    atomic_init(&b->since_ms, wall_ms());
    atomic_init(&b->reconnects, 0);
    atomic_init(&b->published, 0);
    atomic_init(&b->received, 0);
    atomic_init(&b->fills, 0);
    atomic_init(&b->reaped, 0);
}

void broker_base_set_up(struct broker *b, bool up)
{
    if (atomic_load(&b->up) == up)
        return;
    atomic_store(&b->since_ms, wall_ms());
    atomic_store(&b->up, up);
    if (up)
        atomic_fetch_add(&b->reconnects, 1);
}

struct broker *broker_new(struct loop *l, const struct config *cfg, const struct broker_user *u)
{
    if (!cfg->broker)
        return broker_local_new(u);
    struct broker_settings s = {
        .lease_ms = cfg->node_lease_ms,
        .hold_ms = 200,
        .max_held = 4096,
        .reconnect_max = 5000,
    };
    return broker_redis_new(l, cfg, &s, u);
}

void broker_free(struct broker *b)
{
    if (b)
        b->backend->free(b);
}

void broker_goodbye(struct broker *b, void (*done)(void *arg), void *arg)
{
    if (b && b->backend->goodbye)
        b->backend->goodbye(b, done, arg);
    else
        done(arg);
}

void broker_follow(struct broker *b, const char *room, uint64_t newest)
{
    b->backend->follow(b, room, newest);
}

void broker_unfollow(struct broker *b, const char *room)
{
    b->backend->unfollow(b, room);
}

void broker_publish_room(struct broker *b, const char *room, uint64_t seq, void *obj,
                         const void *data, size_t len)
{
    b->backend->publish_room(b, room, seq, obj, data, len);
}

void broker_room_stored(struct broker *b, const char *room, uint64_t seq)
{
    if (b->backend->room_stored)
        b->backend->room_stored(b, room, seq);
}

void broker_fill_event(struct broker *b, const char *room, uint64_t seq, void *obj)
{
    b->backend->fill_event(b, room, seq, obj);
}

void broker_fill_done(struct broker *b, const char *room, uint64_t upto)
{
    b->backend->fill_done(b, room, upto, true);
}

void broker_fill_failed(struct broker *b, const char *room)
{
    b->backend->fill_done(b, room, 0, false);
}

uint64_t broker_room_members(struct broker *b, const char *room, uint32_t local)
{
    return b->backend->room_members(b, room, local);
}

void broker_room_here(struct broker *b, const char *room, const char *user, bool in)
{
    b->backend->room_here(b, room, user, in);
}

void broker_room_sync(struct broker *b, const char *room, const char *const *users, size_t n)
{
    b->backend->room_sync(b, room, users, n);
}

void broker_publish_user(struct broker *b, const char *user, const void *data, size_t len)
{
    b->backend->publish_user(b, user, data, len);
}

void broker_user_here(struct broker *b, const char *user, bool online)
{
    b->backend->user_here(b, user, online);
}

void broker_guest_claim(struct broker *b, const char *name, const char *shown, uint64_t session,
                        void (*done)(void *arg, bool ok), void *arg)
{
    b->backend->guest_claim(b, name, shown, session, done, arg);
}

void broker_guest_release(struct broker *b, const char *name)
{
    b->backend->guest_release(b, name);
}

void broker_guest_lookup(struct broker *b, const char *name,
                         void (*done)(void *arg, const char *shown), void *arg)
{
    b->backend->guest_lookup(b, name, done, arg);
}

void broker_status(const struct broker *b, struct broker_status *out)
{
    struct broker *m = (struct broker *)b; /* atomic loads of a const object */
    out->kind = b->backend->kind;
    out->id = b->backend->id ? b->backend->id(b) : "";
    out->up = atomic_load(&m->up);
    out->since_ms = atomic_load(&m->since_ms);
    out->reconnects = atomic_load(&m->reconnects);
    out->published = atomic_load(&m->published);
    out->received = atomic_load(&m->received);
    out->fills = atomic_load(&m->fills);
    out->reaped = atomic_load(&m->reaped);
}
