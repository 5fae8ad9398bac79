/* chat: the op that carries one request between threads. */
#include "chat.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "member_list.h"

static struct chat_route route;
static struct store_progress store_progress;

void chat_route_set(const struct chat_route *r)
{
    route = *r;
}

const struct chat_route *chat_route(void)
{
    return &route;
}

static void post(struct mailbox *mb, struct chat_op *op)
{
    op->mail.kind = MAIL_OP;
    mailbox_post(mb, &op->mail);
}

void chat_to_hub(struct chat_op *op)
{
    if (chat_op_event_to_store(op))
        atomic_fetch_add_explicit(&store_progress.to_hub, 1, memory_order_relaxed);
    post(route.hub, op);
}

bool chat_op_read_at_store(const struct chat_op *op)
{
    switch (op->kind) {
    case CHAT_HISTORY:
    case CHAT_SEARCH:
    case CHAT_REPLAY:
    case CHAT_FILL:
    case CHAT_RING_SEED:
    case CHAT_DM_SEQS:
    case CHAT_LOGIN_TOKEN:
        return true;
    case CHAT_JOIN:
        return !op->via_store; /* a registered user's join is saved: a write */
    case CHAT_LOGIN_PASSWORD:
        return op->stage == LOGIN_PW_LOOKUP; /* verified: a token to write */
    default:
        return false;
    }
}

struct store_progress *chat_store_progress(void)
{
    return &store_progress;
}

bool chat_op_event_to_store(const struct chat_op *op)
{
    return chat_op_stores_event(op->kind) && op->stage == 0;
}

bool chat_store_commit_coming(void)
{
    struct store_progress *p = &store_progress;
    return atomic_load_explicit(&p->to_hub, memory_order_relaxed) !=
               atomic_load_explicit(&p->hub_took, memory_order_relaxed) ||
           atomic_load_explicit(&p->posted, memory_order_relaxed) !=
               atomic_load_explicit(&p->taken, memory_order_relaxed) ||
           atomic_load_explicit(&p->batched, memory_order_relaxed);
}

void chat_to_store(struct chat_op *op)
{
    if (!chat_op_read_at_store(op))
        atomic_fetch_add_explicit(&store_progress.posted, 1, memory_order_relaxed);
    post(route.store, op);
}

void chat_to_auth(struct chat_op *op)
{
    post(route.auth, op);
}

void chat_to_worker(struct chat_op *op)
{
    post(route.workers[op->worker], op);
}

struct chat_op *chat_op_new(enum chat_op_kind kind, uint16_t worker, uint64_t conn_id)
{
    struct chat_op *op = xcalloc(1, sizeof *op);
    op->kind = kind;
    op->worker = worker;
    op->conn_id = conn_id;
    op->limit = 50;
    op->names_limit = SIZE_MAX;
    return op;
}

void msg_rec_release(struct msg_rec *m)
{
    chunk_unref(m->ws);
    chunk_unref(m->tn);
    m->ws = m->tn = NULL;
}

struct msg_rec msg_rec_ref(const struct msg_rec *m)
{
    struct msg_rec r = *m;
    if (r.ws)
        chunk_ref(r.ws);
    if (r.tn)
        chunk_ref(r.tn);
    return r;
}

void chat_op_free(struct chat_op *op)
{
    if (!op)
        return;
    if (op->password) {
        sodium_memzero(op->password, op->password_len); /* passwords do not linger in the heap */
        free(op->password);
    }
    if (op->id)
        json_decref(op->id);
    free(op->text);
    free(op->mentions);
    free(op->search_match);
    free(op->names);
    free(op->members_json);
    member_pieces_free(op->members_pieces, op->n_members_pieces);
    for (size_t i = 0; i < op->n_msgs; i++)
        msg_rec_release(&op->msgs[i]);
    free(op->msgs);
    for (size_t i = 0; i < op->n_rooms; i++)
        free(op->rooms[i].topic);
    free(op->rooms);
    free(op->saved);
    free(op->gone_rooms);
    for (size_t i = 0; i < op->n_statuses; i++)
        free(op->statuses[i].text);
    free(op->statuses);
    free(op->topic);
    free(op);
}

void chat_op_drop(struct mail *m)
{
    if (m->kind == MAIL_OP) {
        chat_op_free((struct chat_op *)m);
    } else if (m->kind == MAIL_RELAY) {
        struct relay_mail *rm = (struct relay_mail *)m;
        for (int i = 0; i < rm->n; i++)
            free(rm->each[i]); /* relayed mails own nothing (handover.h) */
        free(rm->each);
        free(rm);
    } else {
        free(m); /* a control mail (a store gate) */
    }
}

void chat_op_fail(struct chat_op *op, enum proto_error err, const char *why)
{
    op->err = err;
    op->why = why;
}

void chat_op_add_msg(struct chat_op *op, const struct msg_rec *m)
{
    if (op->n_msgs == op->cap_msgs) {
        op->cap_msgs = op->cap_msgs ? op->cap_msgs * 2 : 16;
        op->msgs = xrealloc(op->msgs, op->cap_msgs * sizeof *op->msgs);
    }
    op->msgs[op->n_msgs++] = *m;
}

void chat_op_reserve_names(struct chat_op *op, size_t n)
{
    if (!op->names_json)
        return;
    size_t need = op->members_json_len + n * (CHAT_NAME_MAX + 2);
    if (need > op->members_json_cap) {
        op->members_json_cap = need;
        op->members_json = xrealloc(op->members_json, need);
    }
}

/* Appends name to op's members as JSON: ,"name" after the first. */
static void add_name_json(struct chat_op *op, const char *name)
{
    size_t n = strnlen(name, CHAT_NAME_MAX - 1);
    size_t need = op->members_json_len + n + 3;
    if (need > op->members_json_cap) {
        size_t cap = op->members_json_cap ? op->members_json_cap * 2 : 1024;
        op->members_json_cap = cap < need ? need : cap;
        op->members_json = xrealloc(op->members_json, op->members_json_cap);
    }
    char *p = op->members_json + op->members_json_len;
    if (op->members_json_len)
        *p++ = ',';
    *p++ = '"';
    memcpy(p, name, n);
    p += n;
    *p++ = '"';
    op->members_json_len = (size_t)(p - op->members_json);
    op->n_names++;
}

void chat_op_add_name(struct chat_op *op, const char *name)
{
    if (op->names_json) {
        add_name_json(op, name);
        return;
    }
    if (op->n_names == op->cap_names) {
        /* Doubling: a join to a room of n members costs O(n), not O(n^2) in copies. */
        op->cap_names = op->cap_names ? op->cap_names * 2 : 16;
        op->names = xrealloc(op->names, op->cap_names * sizeof *op->names);
    }
    size_t n = strlen(name);
    if (n >= CHAT_NAME_MAX)
        n = CHAT_NAME_MAX - 1;
    memcpy(op->names[op->n_names], name, n);
    op->names[op->n_names][n] = '\0';
    op->n_names++;
}

void chat_op_add_status(struct chat_op *op, const char *name, bool away, const char *text)
{
    if (op->n_statuses == op->cap_statuses) {
        op->cap_statuses = op->cap_statuses ? op->cap_statuses * 2 : 8;
        op->statuses = xrealloc(op->statuses, op->cap_statuses * sizeof *op->statuses);
    }
    struct chat_status_entry *e = &op->statuses[op->n_statuses++];
    memset(e->name, 0, sizeof e->name);
    memcpy(e->name, name, strnlen(name, CHAT_NAME_MAX - 1));
    e->away = away;
    e->text = text ? xstrdup(text) : NULL;
}

void chat_op_add_room(struct chat_op *op, const char *name, uint32_t members, uint64_t seq)
{
    if (op->n_rooms == op->cap_rooms) {
        op->cap_rooms = op->cap_rooms ? op->cap_rooms * 2 : 16;
        op->rooms = xrealloc(op->rooms, op->cap_rooms * sizeof *op->rooms);
    }
    struct chat_room_info *r = &op->rooms[op->n_rooms++];
    size_t n = strlen(name);
    if (n >= sizeof r->name)
        n = sizeof r->name - 1;
    memcpy(r->name, name, n);
    r->name[n] = '\0';
    r->members = members;
    r->seq = seq;
    r->read = 0;
    r->unread = r->mentions = 0;
    r->topic = NULL;
}

struct chat_room_info *chat_op_add_saved(struct chat_op *op, const char *name, uint64_t seq)
{
    if (op->n_saved == op->cap_saved) {
        op->cap_saved = op->cap_saved ? op->cap_saved * 2 : 16;
        op->saved = xrealloc(op->saved, op->cap_saved * sizeof *op->saved);
    }
    struct chat_room_info *r = &op->saved[op->n_saved++];
    memset(r, 0, sizeof *r);
    size_t n = strlen(name);
    memcpy(r->name, name, n < sizeof r->name ? n : sizeof r->name - 1);
    r->seq = seq;
    return r;
}

struct deliver *deliver_batch_add(struct deliver_batch **b)
{
    if (!*b) {
        *b = xcalloc(1, sizeof **b);
        (*b)->mail.kind = MAIL_DELIVER;
    }
    struct deliver_batch *batch = *b;
    if (batch->n == batch->cap) {
        batch->cap = batch->cap ? batch->cap * 2 : 16;
        batch->items = xrealloc(batch->items, batch->cap * sizeof *batch->items);
    }
    struct deliver *d = &batch->items[batch->n++];
    memset(d, 0, sizeof *d);
    return d;
}

void deliver_batch_free(struct deliver_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        msg_rec_release(&b->items[i].rec);
        chat_op_free(b->items[i].op);
        event_run_unref(b->items[i].run);
        free(b->items[i].text);
    }
    free(b->items);
    free(b);
}

struct event_run *event_run_new(struct msg_rec *ev, uint32_t n, unsigned refs)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += ev[i].ws->len - ev[i].ws_off;
    struct event_run *run = xmalloc(sizeof *run + ((size_t)n + 1) * sizeof run->off[0]);
    atomic_init(&run->refs, refs);
    run->n = n;
    run->ev = ev;
    run->all = chunk_new(total);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = ev[i].ws->len - ev[i].ws_off;
        run->off[i] = run->all->len;
        memcpy(run->all->data + run->all->len, ev[i].ws->data + ev[i].ws_off, len);
        run->all->len += len;
    }
    run->off[n] = run->all->len;
    return run;
}

void event_run_unref(struct event_run *run)
{
    if (!run || atomic_fetch_sub_explicit(&run->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < run->n; i++)
        msg_rec_release(&run->ev[i]);
    free(run->ev);
    chunk_unref(run->all);
    free(run);
}

struct store_msg chat_op_event(const struct chat_op *op)
{
    static const uint8_t types[] = {[CHAT_SEND] = STORE_EV_MESSAGE,
                                    [CHAT_EDIT] = STORE_EV_EDIT,
                                    [CHAT_DELETE] = STORE_EV_DELETE,
                                    [CHAT_REACT] = STORE_EV_REACTION,
                                    [CHAT_TOPIC] = STORE_EV_TOPIC,
                                    [CHAT_ROLE] = STORE_EV_ROLE,
                                    [CHAT_KICK] = STORE_EV_KICK,
                                    [CHAT_BAN] = STORE_EV_BAN,
                                    [CHAT_UNBAN] = STORE_EV_UNBAN,
                                    [CHAT_MUTE] = STORE_EV_MUTE,
                                    [CHAT_UNMUTE] = STORE_EV_UNMUTE};
    static const char *const roles[] = {[CHAT_ROLE_MEMBER] = "member",
                                        [CHAT_ROLE_OP] = "op",
                                        [CHAT_ROLE_OWNER] = "owner"};
    bool mod = chat_op_moderates(op->kind);
    return (struct store_msg){.room = op->room,
                              .seq = op->seq,
                              .ts = op->ts,
                              .from = op->user,
                              .text = mod && op->kind != CHAT_TOPIC ? NULL : op->text,
                              .text_len = mod && op->kind != CHAT_TOPIC ? 0 : op->text_len,
                              .cid = op->has_cid ? op->cid : NULL,
                              .type = types[op->kind],
                              .target = op->kind == CHAT_SEND ? 0 : op->target,
                              .reply_to = op->kind == CHAT_SEND ? op->reply_to : 0,
                              .mentions = op->mentions,
                              .emoji = op->kind == CHAT_REACT ? op->emoji : NULL,
                              .on = op->on,
                              .user = mod && op->kind != CHAT_TOPIC ? op->subject : NULL,
                              .detail = op->kind == CHAT_ROLE ? roles[op->role % 3]
                                        : (op->kind == CHAT_KICK || op->kind == CHAT_BAN) &&
                                                op->text
                                            ? op->text
                                            : NULL,
                              .duration = op->kind == CHAT_BAN || op->kind == CHAT_MUTE
                                              ? op->duration
                                              : 0};
}
