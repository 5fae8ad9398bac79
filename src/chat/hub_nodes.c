/* hub_nodes: the hub's presence, room members, guests' names and statuses across nodes. */
#include "hub_nodes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "map.h"
#include "text.h"

/* A room with members here: what the other nodes have in it. */
struct nroom {
    uint32_t local;    /* users with a connection in it here */
    struct map pairs;  /* "<node> <user>" -> (void *)1: each pair the broker told, once */
    struct map users;  /* user -> (uintptr_t) the other nodes where it is in the room */
    struct map *stale; /* during a snapshot: the pairs from before it not seen again yet */
};

/* A user of another node whose status is not the default. */
struct rstatus {
    bool away;
    char *text;
};

struct hub_nodes {
    struct hub *hub;
    struct broker *broker;
    struct map rooms;    /* name -> struct nroom */
    struct map statuses; /* user_lc -> struct rstatus, users of other nodes */
};

#define STATUS_PREFIX "status "

static void nroom_free(struct nroom *nr)
{
    map_free(&nr->pairs);
    map_free(&nr->users);
    if (nr->stale) {
        map_free(nr->stale);
        free(nr->stale);
    }
    free(nr);
}

/* One more (in) or one fewer other node has user in room: the hub hears of the first and the
 * last. */
static void user_count(struct hub_nodes *n, const char *room, struct nroom *nr, const char *user,
                       bool in)
{
    uintptr_t c = (uintptr_t)map_get(&nr->users, user);
    if (in) {
        map_put(&nr->users, user, (void *)(c + 1));
        if (c == 0)
            hub_remote_member(n->hub, room, user, true);
        return;
    }
    if (c == 0)
        return;
    if (c > 1) {
        map_put(&nr->users, user, (void *)(c - 1));
        return;
    }
    map_del(&nr->users, user);
    hub_remote_member(n->hub, room, user, false);
}

/* The user part of a "<node> <user>" key. */
static const char *pair_user(const char *key)
{
    const char *sp = strchr(key, ' ');
    return sp ? sp + 1 : key;
}

/* --- the broker's callbacks, passed on by hub_broker.c --- */

void hub_nodes_on_user_event(struct hub_nodes *n, const char *user, const void *data, size_t len)
{
    const char *p = data;
    size_t pre = sizeof STATUS_PREFIX - 1;
    /* "status <0|1> <text>" (text may be empty) */
    if (len < pre + 2 || memcmp(p, STATUS_PREFIX, pre) != 0 || (p[pre] != '0' && p[pre] != '1'))
        return;
    bool away = p[pre] == '1';
    size_t tlen = len > pre + 2 ? len - pre - 2 : 0;
    if (strlen(user) > TEXT_NAME_MAX)
        return;
    char lc[TEXT_NAME_MAX + 1];
    text_lower(user, strlen(user), lc);
    struct rstatus *s = map_get(&n->statuses, lc);
    if (!away && tlen == 0) { /* the default: nothing to keep */
        if (s) {
            free(s->text);
            free(map_del(&n->statuses, lc));
        }
        hub_remote_status(n->hub, user, false, NULL);
        return;
    }
    if (!s) {
        s = xcalloc(1, sizeof *s);
        map_put(&n->statuses, lc, s);
    }
    free(s->text);
    s->away = away;
    s->text = NULL;
    if (tlen) {
        s->text = xmalloc(tlen + 1);
        memcpy(s->text, p + pre + 2, tlen);
        s->text[tlen] = '\0';
    }
    hub_remote_status(n->hub, user, away, s->text);
}

void hub_nodes_on_presence(struct hub_nodes *n, const char *user, bool online)
{
    /* Room members come and go by room (on_room_member); a user offline everywhere has no
     * status left to show. */
    if (online || strlen(user) > TEXT_NAME_MAX)
        return;
    char lc[TEXT_NAME_MAX + 1];
    text_lower(user, strlen(user), lc);
    struct rstatus *s = map_del(&n->statuses, lc);
    if (s) {
        free(s->text);
        free(s);
    }
}

void hub_nodes_on_room_member(struct hub_nodes *n, const char *room, const char *node,
                              const char *user, bool in)
{
    struct nroom *nr = map_get(&n->rooms, room);
    if (!nr)
        return; /* no longer followed here */
    if (!node) {
        if (!in) { /* a snapshot starts: what was known waits to be seen again */
            if (nr->stale) {
                map_free(nr->stale);
                free(nr->stale);
            }
            nr->stale = xmalloc(sizeof *nr->stale);
            *nr->stale = nr->pairs;
            map_init(&nr->pairs, true);
            return;
        }
        /* The snapshot is complete: what it did not hold has gone. */
        struct map *stale = nr->stale;
        nr->stale = NULL;
        if (!stale)
            return;
        const char *key;
        void *v;
        for (size_t i = 0; map_next(stale, &i, &key, &v);)
            user_count(n, room, nr, pair_user(key), false);
        map_free(stale);
        free(stale);
        return;
    }
    char key[32 + BROKER_NAME_MAX + 2];
    snprintf(key, sizeof key, "%s %s", node, user);
    if (in) {
        if (nr->stale && map_del(nr->stale, key)) {
            map_put(&nr->pairs, key, (void *)1); /* known before the snapshot: no change */
            return;
        }
        if (map_get(&nr->pairs, key))
            return;
        map_put(&nr->pairs, key, (void *)1);
        user_count(n, room, nr, user, true);
        return;
    }
    if (nr->stale && map_del(nr->stale, key)) {
        user_count(n, room, nr, user, false);
        return;
    }
    if (!map_del(&nr->pairs, key))
        return;
    user_count(n, room, nr, user, false);
}

struct sync_list {
    const char **users;
    size_t n, cap;
};

static void sync_add(void *arg, const char *user)
{
    struct sync_list *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->users = xrealloc(l->users, l->cap * sizeof *l->users);
    }
    l->users[l->n++] = xstrdup(user); /* user lives only during the call */
}

void hub_nodes_on_state(struct hub_nodes *n, bool up)
{
    if (!up)
        return; /* the other nodes' members stay until each room's next snapshot says */
    /* Redis may have lost this node's members, or missed its leaves while it was cut off. */
    const char *room;
    void *v;
    for (size_t i = 0; map_next(&n->rooms, &i, &room, &v);) {
        struct sync_list l = {0};
        hub_local_members(n->hub, room, sync_add, &l);
        broker_room_sync(n->broker, room, l.users, l.n);
        for (size_t k = 0; k < l.n; k++)
            free((char *)l.users[k]);
        free(l.users);
    }
}

/* --- the hub's calls --- */

struct hub_nodes *hub_nodes_new(struct hub *h, struct broker *broker)
{
    struct hub_nodes *n = xcalloc(1, sizeof *n);
    n->hub = h;
    n->broker = broker;
    map_init(&n->rooms, true);
    map_init(&n->statuses, true);
    return n;
}

void hub_nodes_free(struct hub_nodes *n)
{
    if (!n)
        return;
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&n->rooms, &i, &key, &v);)
        nroom_free(v);
    map_free(&n->rooms);
    for (size_t i = 0; map_next(&n->statuses, &i, &key, &v);)
        free(((struct rstatus *)v)->text);
    map_free_all(&n->statuses);
    free(n);
}

bool hub_nodes_multi(const struct hub_nodes *n)
{
    struct broker_status st;
    broker_status(n->broker, &st);
    return strcmp(st.kind, "local") != 0;
}

void hub_nodes_room_here(struct hub_nodes *n, const char *room, uint64_t newest, const char *user,
                         bool in)
{
    struct nroom *nr = map_get(&n->rooms, room);
    if (in) {
        if (!nr) {
            nr = xcalloc(1, sizeof *nr);
            map_init(&nr->pairs, true);
            map_init(&nr->users, true);
            map_put(&n->rooms, room, nr);
            /* Its subscription, once confirmed, brings the other nodes' members. */
            broker_follow(n->broker, room, newest);
        }
        nr->local++;
        broker_room_here(n->broker, room, user, true);
        return;
    }
    if (!nr)
        return;
    broker_room_here(n->broker, room, user, false);
    if (--nr->local > 0)
        return;
    /* Nobody here any more: the other nodes' members are no longer followed. */
    map_del(&n->rooms, room);
    broker_unfollow(n->broker, room);
    const char *key;
    void *v;
    for (size_t i = 0; map_next(&nr->users, &i, &key, &v);)
        hub_remote_member(n->hub, room, key, false);
    nroom_free(nr);
}

void hub_nodes_user_here(struct hub_nodes *n, const char *user, bool online)
{
    broker_user_here(n->broker, user, online);
}

void hub_nodes_guest_claim(struct hub_nodes *n, const char *name, const char *shown,
                           uint64_t session, void (*done)(void *arg, bool ok), void *arg)
{
    broker_guest_claim(n->broker, name, shown, session, done, arg);
}

void hub_nodes_guest_lookup(struct hub_nodes *n, const char *name,
                            void (*done)(void *arg, const char *shown), void *arg)
{
    broker_guest_lookup(n->broker, name, done, arg);
}

void hub_nodes_guest_release(struct hub_nodes *n, const char *name)
{
    broker_guest_release(n->broker, name);
}

void hub_nodes_status(struct hub_nodes *n, const char *user, bool away, const char *text)
{
    size_t tlen = text ? strlen(text) : 0, pre = sizeof STATUS_PREFIX - 1;
    char *msg = xmalloc(pre + 2 + tlen);
    memcpy(msg, STATUS_PREFIX, pre);
    msg[pre] = away ? '1' : '0';
    msg[pre + 1] = ' ';
    if (tlen)
        memcpy(msg + pre + 2, text, tlen);
    broker_publish_user(n->broker, user, msg, pre + 2 + tlen);
    free(msg);
}

size_t hub_nodes_remote_statuses(const struct hub_nodes *n)
{
    return n->statuses.count;
}

bool hub_nodes_remote_status(const struct hub_nodes *n, const char *user_lc, bool *away,
                             const char **text)
{
    const struct rstatus *s = map_get(&n->statuses, user_lc);
    if (!s)
        return false;
    *away = s->away;
    *text = s->text;
    return true;
}
