/* auth: login throttles and a fair queue on one thread, password hashing on a pool of others. */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chat.h"
#include "log.h"
#include "metrics.h"
#include "text.h"
#include "throttle.h"

/* The queue's tiers, served in this order. */
enum tier {
    TIER_TRUSTED, /* its next op is a login to an account this network logged in to before */
    TIER_CLEAN,   /* a network without failures not yet forgotten */
    TIER_FAILING,
    TIERS,
};

/* Where a network with queued ops waits for its turn. */
enum where {
    NOWHERE,      /* nothing queued */
    IN_TIER,      /* in the ring of its tier */
    WAIT_SELF,    /* its next login waits for the result of one of its own under way */
    WAIT_ACCOUNT, /* its next login waits for the result of one to the same account */
};

/* One client network: its failures and its queue. pins: its ops the dispatcher is holding. */
struct net {
    struct throttle_entry e;
    struct throttle_state fails;
    struct chat_op *head, *tail; /* queued ops, linked by auth_next */
    uint32_t queued;
    uint32_t hashing;     /* its logins being verified now */
    uint64_t run_account; /* the account of its latest failures, and how many in a row */
    uint32_t run_fails;
    struct net *prev, *next; /* in a tier's ring, or in the ring of those waiting on accounts */
    uint8_t where, tier;
};

/* One account (by a keyed hash of its name). pins: its logins being verified now. */
struct account {
    struct throttle_entry e;
    struct throttle_state fails;
};

/* A network that logged in to an account (key: a keyed hash of both). */
struct trust {
    struct throttle_entry e;
    uint64_t ok_ms; /* the latest success */
};

struct auth;

struct hasher {
    struct auth *auth;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct chat_op *op; /* handed over and not yet taken */
    bool stop, started;
    /* The dispatcher's own notes about the op this hasher has. */
    struct net *net;
    struct account *account;
};

struct auth {
    const struct config *cfg;
    unsigned long long opslimit; /* for new hashes (registrations) */
    size_t memlimit;
    struct throttle_rule by_net, by_account;
    struct throttle_table nets, accounts, trusted;
    struct net *tiers[TIERS]; /* rings; each points at the network served next */
    struct net *waiting;      /* ring of networks in WAIT_ACCOUNT */
    struct hasher *hashers;
    uint32_t n_hashers;
    uint8_t *idle; /* indexes of the hashers without work */
    uint32_t n_idle;
    uint64_t queued, hashing, hashing_max;
    uint8_t key[crypto_shorthash_KEYBYTES]; /* so nobody can aim at another's table entry */
};

/* --- keys --- */

static uint64_t keyed(const struct auth *a, const void *p, size_t n)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, p, n, a->key);
    uint64_t k;
    memcpy(&k, h, sizeof k);
    return k;
}

static uint64_t account_of(const struct auth *a, const struct chat_op *op)
{
    char lc[CHAT_NAME_MAX];
    size_t n = strnlen(op->name, sizeof op->name - 1);
    text_lower(op->name, n, lc);
    return keyed(a, lc, n);
}

static uint64_t pair_of(const struct auth *a, uint64_t net, uint64_t account)
{
    uint64_t both[2] = {net, account};
    return keyed(a, both, sizeof both);
}

static bool trusted(struct auth *a, uint64_t net, uint64_t account, uint64_t now)
{
    struct trust *t = (struct trust *)throttle_table_find(&a->trusted, pair_of(a, net, account));
    return t && now - t->ok_ms < a->cfg->login_trust_ms;
}

static void trust(struct auth *a, uint64_t net, uint64_t account, uint64_t now)
{
    struct trust *t = (struct trust *)throttle_table_get(&a->trusted, pair_of(a, net, account));
    if (t) /* never NULL: trust entries are never pinned */
        t->ok_ms = now;
}

/* --- rings of networks --- */

static void ring_add(struct net **ring, struct net *n)
{
    if (!*ring) {
        n->prev = n->next = n;
        *ring = n;
        return;
    }
    struct net *first = *ring; /* the new one goes last: just before the next to serve */
    n->next = first;
    n->prev = first->prev;
    first->prev->next = n;
    first->prev = n;
}

static void ring_remove(struct net **ring, struct net *n)
{
    if (n->next == n) {
        *ring = NULL;
    } else {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        if (*ring == n)
            *ring = n->next;
    }
    n->prev = n->next = NULL;
}

/* Takes n out of whatever ring it waits in. */
static void unschedule(struct auth *a, struct net *n)
{
    if (n->where == IN_TIER)
        ring_remove(&a->tiers[n->tier], n);
    else if (n->where == WAIT_ACCOUNT)
        ring_remove(&a->waiting, n);
    n->where = NOWHERE;
}

static enum tier tier_of(struct auth *a, struct net *n, uint64_t now)
{
    const struct chat_op *op = n->head;
    if (op->kind == CHAT_LOGIN_PASSWORD && trusted(a, n->e.key, account_of(a, op), now))
        return TIER_TRUSTED;
    return throttle_failures(&a->by_net, &n->fails, now) ? TIER_FAILING : TIER_CLEAN;
}

/* Puts n (not in any ring) last in the ring of its tier, if it has anything queued. */
static void schedule(struct auth *a, struct net *n, uint64_t now)
{
    if (!n->head) {
        n->where = NOWHERE;
        return;
    }
    n->tier = (uint8_t)tier_of(a, n, now);
    n->where = IN_TIER;
    ring_add(&a->tiers[n->tier], n);
}

/* --- the queue of one network --- */

static void set_queued(struct auth *a, int64_t delta)
{
    a->queued = (uint64_t)((int64_t)a->queued + delta);
    metrics_set(GAUGE_AUTH_QUEUED, a->queued);
}

static void enqueue_op(struct auth *a, struct net *n, struct chat_op *op, uint64_t now)
{
    op->auth_next = NULL;
    op->auth_queued_ms = now;
    if (n->tail)
        n->tail->auth_next = op;
    else
        n->head = op;
    n->tail = op;
    n->queued++;
    set_queued(a, 1);
}

/* Unlinks op, which follows prev (NULL: op is the head), from n's queue. */
static void unlink_op(struct auth *a, struct net *n, struct chat_op *prev, struct chat_op *op)
{
    if (prev)
        prev->auth_next = op->auth_next;
    else
        n->head = op->auth_next;
    if (n->tail == op)
        n->tail = prev;
    op->auth_next = NULL;
    n->queued--;
    set_queued(a, -1);
}

/* --- answers --- */

/* Sends op on from the dispatcher with an error: a registration goes back through the hub,
 * which releases the name it reserved. */
static void answer_error(struct chat_op *op)
{
    if (op->kind == CHAT_REGISTER) {
        op->stage = 1;
        chat_to_hub(op);
    } else {
        chat_to_worker(op);
    }
}

enum refusal { PASS, BY_NET, BY_ACCOUNT, BY_QUEUE };

/* How long op has been in a network's queue: for the login deadline, which it does not count. */
static void note_wait(struct chat_op *op, uint64_t now)
{
    uint64_t ms = now - op->auth_queued_ms;
    op->auth_wait_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void refuse(struct chat_op *op, enum refusal r, uint64_t wait_ms)
{
    static const char *const why[] = {
        [BY_NET] = "too many failed logins from your address",
        [BY_ACCOUNT] = "too many failed logins to this account",
        [BY_QUEUE] = "too many logins from your address are waiting",
    };
    static const enum metric_counter counted[] = {
        [BY_NET] = METRIC_LOGIN_THROTTLED_ADDRESS,
        [BY_ACCOUNT] = METRIC_LOGIN_THROTTLED_ACCOUNT,
        [BY_QUEUE] = METRIC_LOGIN_THROTTLED_QUEUE,
    };
    metrics_add(counted[r], 1);
    uint64_t s = (wait_ms + 999) / 1000;
    op->retry_after = s < 1 ? 1 : s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
    chat_op_fail(op, PROTO_RATE_LIMITED, why[r]);
    answer_error(op);
}

/* Whether op may be hashed now as far as the throttles go; if not, how long it must wait. */
static enum refusal gate(struct auth *a, struct net *n, const struct chat_op *op, uint64_t now,
                         uint64_t *wait_ms)
{
    if (op->kind != CHAT_LOGIN_PASSWORD)
        return PASS; /* registrations are queued fairly, but guess nothing */
    if ((*wait_ms = throttle_wait(&a->by_net, &n->fails, now)))
        return BY_NET;
    uint64_t acct = account_of(a, op);
    struct account *ac = (struct account *)throttle_table_find(&a->accounts, acct);
    if (ac && (*wait_ms = throttle_wait(&a->by_account, &ac->fails, now)) &&
        !trusted(a, n->e.key, acct, now))
        return BY_ACCOUNT;
    return PASS;
}

/* Takes op on for its network: returns the network (op now counted in its pins), or NULL when
 * op was answered (refused, or no room to remember another network). */
static struct net *admit(struct auth *a, struct chat_op *op, uint64_t now)
{
    struct net *n = (struct net *)throttle_table_get(&a->nets, op->net_key);
    if (!n) {
        chat_op_fail(op, PROTO_SERVER_BUSY, "the server is checking too many passwords");
        answer_error(op);
        return NULL;
    }
    uint64_t wait = 0;
    enum refusal r = gate(a, n, op, now, &wait);
    if (!r && n->e.pins >= a->cfg->auth_queue_address)
        r = BY_QUEUE, wait = 1000;
    if (r) {
        refuse(op, r, wait);
        return NULL;
    }
    n->e.pins++;
    return n;
}

/* After a failure of n: its queued logins that must now wait are answered at once. */
static void sweep(struct auth *a, struct net *n, uint64_t now)
{
    struct chat_op *prev = NULL, *op = n->head;
    bool changed = false;
    while (op) {
        struct chat_op *next = op->auth_next;
        uint64_t wait;
        enum refusal r = gate(a, n, op, now, &wait);
        if (r) {
            unlink_op(a, n, prev, op);
            n->e.pins--;
            note_wait(op, now);
            refuse(op, r, wait);
            changed = true;
        } else {
            prev = op;
        }
        op = next;
    }
    if (changed && (n->where == IN_TIER || n->where == WAIT_ACCOUNT)) {
        unschedule(a, n); /* its head (and so its tier) may have changed */
        schedule(a, n, now);
    } else if (!n->head && n->where == WAIT_SELF) {
        n->where = NOWHERE;
    }
}

static void failed(struct auth *a, struct net *n, uint64_t acct, bool account_exists, uint64_t now)
{
    throttle_fail(&a->by_net, &n->fails, now);
    if (n->run_account != acct) {
        n->run_account = acct;
        n->run_fails = 0;
    }
    n->run_fails++;
    if (account_exists) {
        struct account *ac = (struct account *)throttle_table_get(&a->accounts, acct);
        if (ac)
            throttle_fail(&a->by_account, &ac->fails, now);
    }
    sweep(a, n, now);
}

static void succeeded(struct auth *a, struct net *n, uint64_t acct, uint64_t now)
{
    if (n->run_account == acct && n->run_fails) {
        /* The failures just before, on this same account, were its owner's typing. */
        throttle_forgive(&a->by_net, &n->fails, n->run_fails, now);
        struct account *ac = (struct account *)throttle_table_find(&a->accounts, acct);
        if (ac)
            throttle_forgive(&a->by_account, &ac->fails, n->run_fails, now);
    }
    n->run_account = 0;
    n->run_fails = 0;
    trust(a, n->e.key, acct, now);
}

/* --- hashing --- */

/* Whether n's next login must wait for the result of one of its own under way: counting those
 * as failures would reach the allowance. */
static bool must_wait_net(struct auth *a, struct net *n, uint64_t now)
{
    return a->by_net.free_fails && n->hashing &&
           throttle_failures(&a->by_net, &n->fails, now) + n->hashing >= a->by_net.free_fails;
}

static bool must_wait_account(struct auth *a, struct net *n, const struct chat_op *op, uint64_t now)
{
    if (!a->by_account.free_fails)
        return false;
    uint64_t acct = account_of(a, op);
    struct account *ac = (struct account *)throttle_table_find(&a->accounts, acct);
    return ac && ac->e.pins &&
           throttle_failures(&a->by_account, &ac->fails, now) + ac->e.pins >=
               a->by_account.free_fails &&
           !trusted(a, n->e.key, acct, now);
}

static void start(struct auth *a, struct net *n, struct chat_op *op, uint64_t now)
{
    uint8_t i = a->idle[--a->n_idle];
    struct hasher *h = &a->hashers[i];
    h->net = n;
    h->account = NULL;
    if (op->kind == CHAT_LOGIN_PASSWORD) {
        n->hashing++;
        h->account = (struct account *)throttle_table_get(&a->accounts, account_of(a, op));
        if (h->account)
            h->account->e.pins++;
    }
    metrics_auth_wait((now - op->auth_queued_ms) * 1000);
    a->hashing++;
    if (a->hashing > a->hashing_max) {
        a->hashing_max = a->hashing;
        metrics_set(GAUGE_AUTH_HASHING_MAX, a->hashing_max);
    }
    metrics_set(GAUGE_AUTH_HASHING, a->hashing);
    op->hasher = i;
    pthread_mutex_lock(&h->mu);
    h->op = op;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Whether an op of tier t may take one of the idle hashers: each tier leaves one hasher to each
 * tier above it (as far as there are hashers to spare), so a login from a trusted network starts
 * at once even while fresh networks keep every other hasher busy, and one from a clean network
 * while failing networks do. */
static bool may_start(const struct auth *a, int t)
{
    uint32_t reserved = (uint32_t)t < a->n_hashers - 1 ? (uint32_t)t : a->n_hashers - 1;
    return a->n_idle > reserved;
}

/* Hands queued ops to idle hashers: tiers in order, networks round-robin within a tier. */
static void dispatch(struct auth *a, uint64_t now)
{
    while (a->n_idle > 0) {
        struct net *n = NULL;
        for (int t = 0; t < TIERS && !n; t++)
            if (may_start(a, t))
                n = a->tiers[t];
        if (!n)
            return;
        ring_remove(&a->tiers[n->tier], n);
        n->where = NOWHERE;
        struct chat_op *op = n->head;
        if (op->kind == CHAT_LOGIN_PASSWORD) {
            uint64_t wait;
            enum refusal r = gate(a, n, op, now, &wait); /* things changed while it waited */
            if (r) {
                unlink_op(a, n, NULL, op);
                n->e.pins--;
                note_wait(op, now);
                refuse(op, r, wait);
                schedule(a, n, now);
                continue;
            }
            if (must_wait_net(a, n, now)) {
                n->where = WAIT_SELF;
                continue;
            }
            if (must_wait_account(a, n, op, now)) {
                n->where = WAIT_ACCOUNT;
                ring_add(&a->waiting, n);
                continue;
            }
        }
        unlink_op(a, n, NULL, op);
        start(a, n, op, now);
        schedule(a, n, now); /* last in its ring: round-robin */
    }
}

/* A hasher finished op. */
static void hashed(struct auth *a, struct chat_op *op, uint64_t now)
{
    struct hasher *h = &a->hashers[op->hasher];
    struct net *n = h->net;
    struct account *ac = h->account;
    h->net = NULL;
    h->account = NULL;
    a->idle[a->n_idle++] = op->hasher;
    a->hashing--;
    metrics_set(GAUGE_AUTH_HASHING, a->hashing);
    metrics_add(METRIC_AUTH_HASHES, 1);
    op->hashed = false;
    note_wait(op, now);
    uint64_t acct = account_of(a, op);
    if (op->kind == CHAT_REGISTER) {
        if (op->err) {
            answer_error(op);
        } else {
            trust(a, n->e.key, acct, now); /* the hub reserved the name: it will be theirs */
            chat_to_store(op);
        }
    } else {
        n->hashing--;
        if (ac)
            ac->e.pins--;
        if (op->err == PROTO_BAD_CREDENTIALS) {
            failed(a, n, acct, true, now);
            chat_to_worker(op);
        } else if (op->err) {
            chat_to_worker(op);
        } else {
            succeeded(a, n, acct, now);
            op->stage = LOGIN_PW_TOKEN;
            chat_to_store(op);
        }
        if (n->where == WAIT_SELF) {
            n->where = NOWHERE;
            schedule(a, n, now);
        }
        while (ac && a->waiting) { /* the account's result is in: those waiting on one go on */
            struct net *w = a->waiting;
            ring_remove(&a->waiting, w);
            w->where = NOWHERE;
            schedule(a, w, now);
        }
    }
    n->e.pins--;
    dispatch(a, now);
}

static void hash_one(const struct auth *a, struct chat_op *op)
{
    if (op->kind == CHAT_REGISTER) {
        if (crypto_pwhash_str(op->pwhash, op->password, op->password_len, a->opslimit,
                              a->memlimit) != 0) {
            log_error("msg=password_hash_failed error=\"out of memory\"");
            chat_op_fail(op, PROTO_SERVER_BUSY, "the server cannot register accounts right now");
        }
    } else if (crypto_pwhash_str_verify(op->pwhash, op->password, op->password_len) != 0) {
        chat_op_fail(op, PROTO_BAD_CREDENTIALS, "wrong name or password");
    }
}

static void *hasher_run(void *arg)
{
    struct hasher *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (!h->op && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        struct chat_op *op = h->op;
        h->op = NULL;
        pthread_mutex_unlock(&h->mu);
        hash_one(h->auth, op);
        op->hashed = true;
        chat_to_auth(op); /* from here on the op is the dispatcher's again */
    }
}

/* --- the dispatcher's mail --- */

/* A login back from the store: with its account's hash (to verify), or with an error. */
static void verify_ready(struct auth *a, struct chat_op *op, uint64_t now)
{
    struct net *n = (struct net *)throttle_table_find(&a->nets, op->net_key);
    if (!n) { /* cannot happen: admitted ops pin their network */
        log_error("msg=auth_lost_network");
        chat_op_fail(op, PROTO_SERVER_BUSY, "logins are not available right now");
        chat_to_worker(op);
        return;
    }
    if (op->err) {
        /* No such account: nothing to hash or protect, but a failure of the network. */
        if (op->err == PROTO_BAD_CREDENTIALS)
            failed(a, n, account_of(a, op), false, now);
        n->e.pins--;
        chat_to_worker(op);
        return;
    }
    uint64_t wait;
    enum refusal r = gate(a, n, op, now, &wait);
    if (r) {
        n->e.pins--;
        refuse(op, r, wait);
        return;
    }
    enqueue_op(a, n, op, now);
    if (n->where == NOWHERE)
        schedule(a, n, now);
    dispatch(a, now);
}

static void on_mail(struct service *s, struct mail *m)
{
    struct auth *a = s->ctx;
    struct chat_op *op = (struct chat_op *)m;
    uint64_t now = loop_now(s->loop);
    if (op->hashed) {
        hashed(a, op, now);
        return;
    }
    if (op->kind == CHAT_REGISTER) { /* from the hub, its name reserved */
        struct net *n = admit(a, op, now);
        if (n) {
            enqueue_op(a, n, op, now);
            if (n->where == NOWHERE)
                schedule(a, n, now);
            dispatch(a, now);
        }
        return;
    }
    switch (op->stage) {
    case LOGIN_PW_GATE:
        if (admit(a, op, now)) {
            op->stage = LOGIN_PW_LOOKUP;
            chat_to_store(op);
        }
        return;
    case LOGIN_PW_VERIFY:
        verify_ready(a, op, now);
        return;
    default:
        log_error("msg=auth_unexpected_op kind=%d stage=%d", op->kind, op->stage);
        chat_op_fail(op, PROTO_SERVER_BUSY, "logins are not available right now");
        chat_to_worker(op);
    }
}

/* --- start and stop --- */

int auth_init(struct service *s, const struct config *cfg)
{
    if (sodium_init() < 0)
        return -1;
    struct auth *a = xcalloc(1, sizeof *a);
    a->cfg = cfg;
    a->opslimit =
        cfg->password_cost_min ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    a->memlimit =
        cfg->password_cost_min ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    a->by_net = (struct throttle_rule){cfg->login_fails_address, cfg->login_delay_address_ms};
    a->by_account = (struct throttle_rule){cfg->login_fails_account, cfg->login_delay_account_ms};
    throttle_table_init(&a->nets, cfg->throttle_entries, sizeof(struct net));
    throttle_table_init(&a->accounts, cfg->throttle_entries, sizeof(struct account));
    throttle_table_init(&a->trusted, cfg->throttle_entries, sizeof(struct trust));
    randombytes_buf(a->key, sizeof a->key);
    a->n_hashers = cfg->auth_threads;
    a->hashers = xcalloc(a->n_hashers, sizeof *a->hashers);
    a->idle = xcalloc(a->n_hashers, sizeof *a->idle);
    int rc = service_init(s, "auth", on_mail, NULL, a);
    s->ctx = a; /* even when service_init failed: auth_destroy frees it */
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < a->n_hashers; i++) {
        struct hasher *h = &a->hashers[i];
        h->auth = a;
        pthread_mutex_init(&h->mu, NULL);
        pthread_cond_init(&h->cv, NULL);
        int err = pthread_create(&h->thread, NULL, hasher_run, h);
        if (err)
            return -err;
        h->started = true;
        a->idle[a->n_idle++] = (uint8_t)i;
    }
    log_info("msg=auth_ready threads=%u memory_per_thread=%zu", a->n_hashers, a->memlimit);
    return 0;
}

void auth_destroy(struct service *s)
{
    struct auth *a = s->ctx;
    for (uint32_t i = 0; a && i < a->n_hashers; i++) {
        struct hasher *h = &a->hashers[i];
        if (!h->started)
            continue;
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    if (s->loop)
        service_destroy(s, chat_op_drop); /* what the hashers posted last is dropped here */
    if (!a)
        return;
    for (uint32_t i = 0; i < a->n_hashers; i++) {
        struct hasher *h = &a->hashers[i];
        chat_op_free(h->op);
        if (h->started) {
            pthread_mutex_destroy(&h->mu);
            pthread_cond_destroy(&h->cv);
        }
    }
    for (struct throttle_entry *e = a->nets.newest; e; e = e->older) {
        struct chat_op *op = ((struct net *)e)->head;
        while (op) {
            struct chat_op *next = op->auth_next;
            chat_op_free(op);
            op = next;
        }
    }
    throttle_table_free(&a->nets);
    throttle_table_free(&a->accounts);
    throttle_table_free(&a->trusted);
    free(a->hashers);
    free(a->idle);
    free(a);
    s->ctx = NULL;
}
