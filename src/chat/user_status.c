/* user_status: users' statuses, their connections and rooms, and the 75 s fallback (rule 69). */
#include "user_status.h"

#include <stddef.h>
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

void user_status_use_pools(struct user_status_set *set, struct pool_sizes *pools)
{
    set->pools = pools;
}

/* A record's block: its fields, name_lc and the name as shown, and its own skeleton if any. */
static size_t record_size(size_t n, size_t skel_size)
{
    return offsetof(struct user_status, name_lc) + 2 * (n + 1) + skel_size;
}

static void record_put(struct user_status_set *set, struct user_status *u)
{
    free(u->text);
    if (u->cap_rooms > 1)
        free(u->rooms_.rooms);
    if (!set->pools) {
        free(u);
        return;
    }
    size_t n = strlen(u->name_lc);
    size_t skel_size = u->own_skel ? strlen(u->name_lc + 2 * (n + 1)) + 1 : 0;
    pool_sizes_put(set->pools, u, record_size(n, skel_size));
}

static void record_free(struct user_status_set *set, struct user_status *u)
{
    map_del(&set->by_name, u->name_lc);
    gone_unlink(set, u);
    if (!is_default(u))
        set_unlink(set, u);
    record_put(set, u);
}

void user_status_free(struct user_status_set *set)
{
    size_t pos = 0;
    const char *k;
    void *v;
    while (map_next(&set->by_name, &pos, &k, &v))
        record_put(set, v);
    map_free(&set->by_name);
    memset(set, 0, sizeof *set);
}

struct user_status *user_status_of(const struct user_status_set *set, const char *name_lc)
{
    return map_get(&set->by_name, name_lc);
}

struct user_status *user_status_guest(const struct user_status_set *set, const char *name_lc)
{
    struct user_status *u = map_get(&set->by_name, name_lc);
    return u && u->guests > 0 ? u : NULL;
}

/* A record for the identity (guest_session, 0 for an account), one block: name_lc, the name as
 * shown, and for a guest whose skeleton is not name_lc, the skeleton. */
static struct user_status *record_new(struct user_status_set *set, const char *name,
                                      const char *name_lc, uint64_t guest_session)
{
    size_t n = strnlen(name_lc, TEXT_NAME_MAX);
    char skel[TEXT_NAME_MAX + 1];
    size_t skel_size = 0;
    if (guest_session) {
        text_skeleton(name_lc, n, skel);
        if (strncmp(skel, name_lc, n + 1) != 0)
            skel_size = strlen(skel) + 1;
    }
    size_t size = record_size(n, skel_size);
    struct user_status *u = set->pools ? pool_sizes_get(set->pools, size) : xcalloc(1, size);
    memcpy(u->name_lc, name_lc, n);
    memcpy(u->name_lc + n + 1, name, strnlen(name, n));
    if (skel_size) {
        memcpy(u->name_lc + 2 * (n + 1), skel, skel_size);
        u->own_skel = true;
    }
    u->guest_session = guest_session;
    map_put(&set->by_name, u->name_lc, u);
    return u;
}

/* Back to the default status (online, no text). */
static void status_reset(struct user_status_set *set, struct user_status *u)
{
    if (!is_default(u))
        set_unlink(set, u);
    u->away = false;
    free(u->text);
    u->text = NULL;
}

/* Whether anything keeps u: a connection, a guest login, or its grace. */
static bool in_use(const struct user_status_set *set, const struct user_status *u)
{
    return u->conns > 0 || u->guests > 0 || gone_has(set, u);
}

struct user_status *user_status_guest_in(struct user_status_set *set, const char *name,
                                         const char *name_lc, uint64_t session)
{
    struct user_status *u = map_get(&set->by_name, name_lc);
    if (u && u->guest_session != session && u->guests == 0) {
        /* Another identity held the name before (gone, or waiting out its grace). */
        if (u->conns)
            log_warn("msg=status_identity_replaced user=%s", name_lc);
        record_free(set, u);
        u = NULL;
    }
    if (!u)
        u = record_new(set, name, name_lc, session);
    u->guests++;
    return u;
}

void user_status_guest_out(struct user_status_set *set, struct user_status *u)
{
    if (u->guests > 0 && --u->guests == 0 && !in_use(set, u))
        record_free(set, u);
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
        if (u->conns || u->guests)
            log_warn("msg=status_identity_replaced user=%s", name_lc);
        if (u->guests) {
            /* An online guest's record is the hub's look-alike key: taken over, not freed. */
            gone_unlink(set, u);
            status_reset(set, u);
            u->guest_session = guest_session;
        } else {
            record_free(set, u);
            u = NULL;
        }
    }
    if (!u)
        u = record_new(set, name, name_lc, guest_session);
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
        if (u->guests == 0) /* else a login of the guest is on its way */
            record_free(set, u);
        return;
    }
    u->gone_ms = (uint32_t)now_ms;
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
    u->guests = 0;
    size_t n = strlen(u->name_lc);
    char *shown = u->name_lc + n + 1;
    memset(shown, 0, n);
    memcpy(shown, name, strnlen(name, n));
    if (!in_use(set, u))
        record_free(set, u);
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
        uint64_t due = user_status_due(u, now_ms, grace_ms);
        if (due > now_ms)
            return due;
        log_info("msg=status_expired user=%s", user_status_name(u));
        if (u->guests > 0) { /* a login of the guest is on its way: its record stays, online */
            gone_unlink(set, u);
            status_reset(set, u);
        } else {
            record_free(set, u);
        }
    }
    return 0;
}
