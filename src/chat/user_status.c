/* user_status: users' statuses, their connections and rooms, and the 75 s fallback (rule 69). */
#include "user_status.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

void user_status_init(struct user_status_set *set)
{
    memset(set, 0, sizeof *set);
    map_init_borrowed(&set->by_name);
}

static void set_link(struct user_status_set *set, struct user_status *u)
{
    u->set_prev = NULL;
    u->set_next = set->set_head;
    if (set->set_head)
        set->set_head->set_prev = u;
    set->set_head = u;
    set->n_set++;
}

static void set_unlink(struct user_status_set *set, struct user_status *u)
{
    if (u->set_prev)
        u->set_prev->set_next = u->set_next;
    else
        set->set_head = u->set_next;
    if (u->set_next)
        u->set_next->set_prev = u->set_prev;
    u->set_prev = u->set_next = NULL;
    set->n_set--;
}

static bool is_default(const struct user_status *u)
{
    return !u->away && !u->text;
}

static bool gone_has(const struct user_status_set *set, const struct user_status *u)
{
    return set->gone_head == u || u->gone_prev;
}

static void gone_unlink(struct user_status_set *set, struct user_status *u)
{
    if (!gone_has(set, u))
        return;
    if (u->gone_prev)
        u->gone_prev->gone_next = u->gone_next;
    else
        set->gone_head = u->gone_next;
    if (u->gone_next)
        u->gone_next->gone_prev = u->gone_prev;
    else
        set->gone_tail = u->gone_prev;
    u->gone_prev = u->gone_next = NULL;
}

static void gone_append(struct user_status_set *set, struct user_status *u)
{
    u->gone_next = NULL;
    u->gone_prev = set->gone_tail;
    if (set->gone_tail)
        set->gone_tail->gone_next = u;
    else
        set->gone_head = u;
    set->gone_tail = u;
}

static void record_free(struct user_status_set *set, struct user_status *u)
{
    map_del(&set->by_name, u->name_lc);
    gone_unlink(set, u);
    if (!is_default(u))
        set_unlink(set, u);
    free(u->text);
    if (u->cap_rooms > 1)
        free(u->rooms_.rooms);
    free(u);
}

void user_status_free(struct user_status_set *set)
{
    size_t pos = 0;
    const char *k;
    void *v;
    while (map_next(&set->by_name, &pos, &k, &v)) {
        struct user_status *u = v;
        free(u->text);
        if (u->cap_rooms > 1)
            free(u->rooms_.rooms);
        free(u);
    }
    map_free(&set->by_name);
    memset(set, 0, sizeof *set);
}

struct user_status *user_status_of(const struct user_status_set *set, const char *name_lc)
{
    return map_get(&set->by_name, name_lc);
}

struct user_status *user_status_get(const struct user_status_set *set, const char *name_lc,
                                    uint64_t guest_session)
{
    struct user_status *u = map_get(&set->by_name, name_lc);
    return u && u->guest_session == guest_session ? u : NULL;
}

struct user_status *user_status_connect(struct user_status_set *set, const char *name,
                                        const char *name_lc, uint64_t guest_session)
{
    struct user_status *u = map_get(&set->by_name, name_lc);
    if (u && u->guest_session != guest_session) {
        /* Another identity held the name before: its status is not this one's. */
        if (u->conns)
            log_warn("msg=status_identity_replaced user=%s", name_lc);
        record_free(set, u);
        u = NULL;
    }
    if (!u) {
        size_t n = strnlen(name_lc, TEXT_NAME_MAX);
        u = xcalloc(1, sizeof *u + 2 * (n + 1));
        memcpy(u->name_lc, name_lc, n);
        u->name = u->name_lc + n + 1;
        memcpy(u->name, name, strnlen(name, n));
        u->guest_session = guest_session;
        map_put(&set->by_name, u->name_lc, u);
    }
    u->conns++;
    gone_unlink(set, u);
    return u;
}

void user_status_disconnect(struct user_status_set *set, const char *name_lc,
                            uint64_t guest_session, uint64_t now_ms)
{
    /* By name alone: a connection that left while its guest session was becoming the account
     * (rule 39) still says the session. No other identity can hold the name meanwhile: it is
     * free only once the last connection has gone. */
    (void)guest_session;
    struct user_status *u = map_get(&set->by_name, name_lc);
    if (!u || u->conns == 0)
        return;
    if (--u->conns > 0)
        return;
    if (is_default(u) && u->n_rooms == 0) {
        record_free(set, u);
        return;
    }
    u->gone_ms = now_ms;
    gone_append(set, u);
}

bool user_status_set_state(struct user_status_set *set, struct user_status *u, bool away,
                           const char *text, size_t n)
{
    bool same_text =
        n == 0 ? !u->text : u->text && strlen(u->text) == n && !memcmp(u->text, text, n);
    if (u->away == away && same_text)
        return false;
    bool was_default = is_default(u);
    u->away = away;
    if (!same_text) {
        free(u->text);
        u->text = n ? xstrndup(text, n) : NULL;
    }
    if (was_default && !is_default(u))
        set_link(set, u);
    else if (!was_default && is_default(u))
        set_unlink(set, u);
    return true;
}

void user_status_became_registered(struct user_status_set *set, const char *name_lc,
                                   uint64_t guest_session, const char *name)
{
    struct user_status *u = user_status_get(set, name_lc, guest_session);
    if (!u)
        return;
    u->guest_session = 0;
    size_t n = strlen(u->name_lc);
    memset(u->name, 0, n);
    memcpy(u->name, name, strnlen(name, n));
}

void user_status_room_add(struct user_status *u, void *room)
{
    if (u->cap_rooms == 0) {
        u->cap_rooms = 1;
    } else if (u->n_rooms == u->cap_rooms) {
        uint32_t cap = u->cap_rooms == 1 ? 4 : u->cap_rooms * 2;
        void **rooms = u->cap_rooms == 1 ? NULL : u->rooms_.rooms;
        void *one = u->cap_rooms == 1 ? u->rooms_.room_one : NULL;
        rooms = xrealloc(rooms, cap * sizeof *rooms);
        if (u->cap_rooms == 1)
            rooms[0] = one;
        u->rooms_.rooms = rooms;
        u->cap_rooms = cap;
    }
    user_status_rooms(u)[u->n_rooms++] = room;
}

void user_status_room_remove(struct user_status *u, void *room)
{
    void **rooms = user_status_rooms(u);
    for (uint32_t i = 0; i < u->n_rooms; i++) {
        if (rooms[i] == room) {
            rooms[i] = rooms[--u->n_rooms];
            return;
        }
    }
}

uint64_t user_status_expire(struct user_status_set *set, uint64_t now_ms, uint64_t grace_ms)
{
    while (set->gone_head) {
        struct user_status *u = set->gone_head;
        if (u->gone_ms + grace_ms > now_ms)
            return u->gone_ms + grace_ms;
        log_info("msg=status_expired user=%s", u->name);
        record_free(set, u);
    }
    return 0;
}
