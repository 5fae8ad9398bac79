/*
 * test_broker_redis: the Redis broker against a real redis-server (started here on a free port
 * in a temporary directory, persistence off, stopped at the end even on failure): room events
 * between two nodes in seq order, user events, presence, guests' names and counts across
 * nodes, a node's lease running out when it stops refreshing, a member message heard before a
 * room's snapshot kept by it, and a Redis restart with the reconnect and the catch-up from the
 * store.
 *
 * The test is the brokers' user (the hub's part): it keeps the "store", the events committed per
 * room, and answers fills from it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "broker.h"
#include "config.h"
#include "loop.h"

#define MAX_EVENTS 512
#define ROOMS 2  /* followed by both nodes from the start */
#define DM ROOMS /* and a dm room, which reaches the nodes of its users */
#define ALL_ROOMS (ROOMS + 1)

/* The redis-server under test. */
static pid_t redis_pid = -1;
static int redis_port;
static char redis_dir[64];

/* Reads redis-server's output until it is ready; then a thread drains the rest. */
static void *drain(void *p)
{
    FILE *f = p;
    char line[512];
    while (fgets(line, sizeof line, f))
        ;
    fclose(f);
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server on redis_port and returns once it accepts connections. */
static void redis_start(void)
{
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t parent = getpid();
    redis_pid = fork();
    assert_true(redis_pid >= 0);
    if (redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(out[0]);
        close(out[1]);
        char port[16];
        snprintf(port, sizeof port, "%d", redis_port);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", redis_dir, "--daemonize", "no", "--logfile", "",
               (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[512];
    bool ready = false;
    while (!ready && fgets(line, sizeof line, f))
        ready = strstr(line, "Ready to accept connections") != NULL;
    if (!ready)
        fail_msg("redis-server did not start (is it installed? scripts/setup.sh --test)");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain, f), 0);
    pthread_detach(t);
}

static void redis_stop(void)
{
    if (redis_pid <= 0)
        return;
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(redis_dir, sizeof redis_dir, "/tmp/parley-redis-XXXXXX");
    if (!mkdtemp(redis_dir))
        return -1;
    redis_port = free_port();
    redis_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_stop();
    rmdir(redis_dir);
    return 0;
}

/* The "store": every room's committed events. */
static const char *room_names[ALL_ROOMS] = {"general", "lobby", "dm:alice:bob"};
static char store[ALL_ROOMS][MAX_EVENTS][32];
static uint64_t store_newest[ALL_ROOMS];

static int room_index(const char *room)
{
    for (int i = 0; i < ALL_ROOMS; i++)
        if (strcmp(room, room_names[i]) == 0)
            return i;
    fail_msg("unknown room %s", room);
    return -1;
}

/* An event object of the hub's: the text it would be encoded from. */
struct obj {
    uint64_t seq;
    char text[32];
};

struct node {
    const char *name;
    struct broker *b;
    bool up;
    int ups, downs;
    uint64_t delivered[ALL_ROOMS][MAX_EVENTS]; /* seqs, in delivery order */
    size_t n_delivered[ALL_ROOMS];
    size_t remote[ALL_ROOMS]; /* how many came as another node's bytes */
    size_t fills[ALL_ROOMS];
    int dm_follows; /* dm_follow calls */
    int readies;    /* user_ready calls for bob */
    size_t live_objs;
    char last_user_event[64];
    int user_events;
    bool online[8];                      /* presence of users[] as this node heard it */
    int claim_result;                    /* -1 pending, 0 refused, 1 ok */
    int lookups;                         /* lookup answers */
    char looked_up[BROKER_NAME_MAX + 1]; /* the last one's name as shown, "" for none */
    bool member[8]; /* users[] in room_names[0] on another node, as this node heard it */
    int snapshots;  /* room member snapshots completed */
};

static const char *users[] = {"alice", "bob"};

static struct loop *loop;
static bool (*wait_for)(void);
static bool timed_out;

static void (*before_sleep)(void); /* a test's step between two turns of the loop */

static void hook(void *arg)
{
    (void)arg;
    if (before_sleep)
        before_sleep();
    if (wait_for && wait_for())
        loop_stop(loop);
}

static void on_deadline(struct timer *t)
{
    (void)t;
    timed_out = true;
    loop_stop(loop);
}

/* Runs the loop until cond() holds; fails after 20 s (a guard, never a synchronisation). */
static void run_until(bool (*cond)(void), const char *what)
{
    if (cond())
        return;
    struct timer deadline;
    timer_init(&deadline, on_deadline);
    timer_start(loop, &deadline, loop_now(loop) + 20000);
    timed_out = false;
    wait_for = cond;
    loop_run(loop);
    wait_for = NULL;
    timer_stop(loop, &deadline);
    if (timed_out)
        fail_msg("timed out waiting for %s", what);
}

static struct obj *obj_new(struct node *n, uint64_t seq, const char *text)
{
    struct obj *o = malloc(sizeof *o);
    o->seq = seq;
    size_t len = strnlen(text, sizeof o->text - 1);
    memcpy(o->text, text, len);
    o->text[len] = '\0';
    n->live_objs++;
    return o;
}

static void record(struct node *n, const char *room, uint64_t seq, const char *text)
{
    int r = room_index(room);
    assert_true(seq >= 1 && seq <= store_newest[r]);
    assert_string_equal(text, store[r][seq]); /* the event's own bytes, whichever way */
    assert_true(n->n_delivered[r] < MAX_EVENTS);
    n->delivered[r][n->n_delivered[r]++] = seq;
}

static void cb_room_event(void *ctx, const char *room, uint64_t seq, void *obj, const void *data,
                          size_t len)
{
    struct node *n = ctx;
    if (obj) {
        struct obj *o = obj;
        assert_int_equal(o->seq, seq);
        record(n, room, seq, o->text);
        n->live_objs--;
        free(o);
    } else {
        char text[32];
        assert_true(len < sizeof text);
        memcpy(text, data, len);
        text[len] = '\0';
        record(n, room, seq, text);
        n->remote[room_index(room)]++;
    }
}

static void cb_release(void *ctx, void *obj)
{
    struct node *n = ctx;
    n->live_objs--;
    free(obj);
}

/* Answers at once from the store, as a store thread would a little later. */
static void cb_fill(void *ctx, const char *room, uint64_t from, uint64_t to)
{
    struct node *n = ctx;
    int r = room_index(room);
    n->fills[r]++;
    uint64_t end = to < store_newest[r] ? to : store_newest[r];
    for (uint64_t s = from; s <= end; s++)
        broker_fill_event(n->b, room, s, obj_new(n, s, store[r][s]));
    broker_fill_done(n->b, room, end >= from ? end : from - 1);
}

static void cb_user_event(void *ctx, const char *user, const void *data, size_t len)
{
    struct node *n = ctx;
    snprintf(n->last_user_event, sizeof n->last_user_event, "%s:%.*s", user, (int)len,
             (const char *)data);
    n->user_events++;
}

static void cb_presence(void *ctx, const char *user, bool online)
{
    struct node *n = ctx;
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        if (strcmp(user, users[i]) == 0)
            n->online[i] = online;
}

static void cb_state(void *ctx, bool up)
{
    struct node *n = ctx;
    n->up = up;
    if (up) {
        n->ups++;
        memset(n->online, 0, sizeof n->online); /* given again by the presence calls */
    } else {
        n->downs++;
    }
}

static void cb_room_member(void *ctx, const char *room, const char *node, const char *user,
                           bool in)
{
    struct node *n = ctx;
    if (room_index(room) != 0)
        return;
    if (!node) { /* a snapshot: starts (forget), then completes */
        if (in)
            n->snapshots++;
        else
            memset(n->member, 0, sizeof n->member);
        return;
    }
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        if (strcmp(user, users[i]) == 0)
            n->member[i] = in;
}

/* As the hub does: a dm room heard of for a user here is followed from that event on. */
static void cb_dm_follow(void *ctx, const char *room, uint64_t seq)
{
    struct node *n = ctx;
    n->dm_follows++;
    broker_follow(n->b, room, seq - 1);
}

static void cb_user_ready(void *ctx, const char *user)
{
    struct node *n = ctx;
    if (strcmp(user, "bob") == 0)
        n->readies++;
}

static void cb_claimed(void *arg, bool ok)
{
    struct node *n = arg;
    n->claim_result = ok;
}

static struct node nodes[2];
static struct node *A = &nodes[0], *B = &nodes[1];

static void node_start(struct node *n, const char *name, uint64_t lease_ms)
{
    memset(n, 0, sizeof *n);
    n->name = name;
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(config_parse_broker_url("redis://127.0.0.1:1/0", &cfg), 0);
    cfg.broker_port = (uint16_t)redis_port;
    snprintf(cfg.node, sizeof cfg.node, "%s", name);
    struct broker_settings s = {
        .lease_ms = lease_ms, .hold_ms = 50, .max_held = 64, .reconnect_max = 200};
    struct broker_user u = {
        n,           cb_room_event, cb_release,     cb_fill,      cb_user_event,
        cb_presence, cb_state,      cb_room_member, cb_dm_follow, cb_user_ready};
    n->b = broker_redis_new(loop, &cfg, &s, &u);
    assert_non_null(n->b);
}

static void node_stop(struct node *n)
{
    broker_free(n->b);
    n->b = NULL;
    assert_int_equal(n->live_objs, 0); /* every object came back */
}

/* Commits the next event of room r (the store's part), and publishes it from n. */
static void commit_and_publish(struct node *n, int r)
{
    uint64_t seq = ++store_newest[r];
    assert_true(seq < MAX_EVENTS);
    snprintf(store[r][seq], sizeof store[r][seq], "%s#%s#%llu", room_names[r], n->name,
             (unsigned long long)seq);
    broker_publish_room(n->b, room_names[r], seq, obj_new(n, seq, store[r][seq]), store[r][seq],
                        strlen(store[r][seq]));
}

static void assert_in_order(const struct node *n, int r)
{
    assert_int_equal(n->n_delivered[r], store_newest[r]);
    for (size_t i = 0; i < n->n_delivered[r]; i++)
        assert_int_equal(n->delivered[r][i], i + 1);
}

/* Conditions awaited. */
static bool both_up(void)
{
    return A->up && B->up;
}
static bool both_caught_up(void)
{
    for (int r = 0; r < ROOMS; r++)
        if (A->n_delivered[r] != store_newest[r] || B->n_delivered[r] != store_newest[r])
            return false;
    return true;
}
static bool both_followed(void)
{
    /* A follow's subscription ends in a catch-up fill: then the room is live on that node. */
    for (int r = 0; r < ROOMS; r++)
        if (A->fills[r] == 0 || B->fills[r] == 0)
            return false;
    return true;
}
static bool b_got_user_event(void)
{
    return B->user_events > 0;
}
static bool b_sees_alice(void)
{
    return B->online[0];
}
static bool b_sees_alice_gone(void)
{
    return !B->online[0];
}
static bool a_claim_answered(void)
{
    return A->claim_result >= 0;
}
static bool b_claim_answered(void)
{
    return B->claim_result >= 0;
}
static bool b_counts_five(void)
{
    return broker_room_members(B->b, "general", 2) == 5;
}
static bool b_counts_two(void)
{
    return broker_room_members(B->b, "general", 2) == 2;
}
static bool both_down(void)
{
    return !A->up && !B->up;
}
static bool a_down(void)
{
    return !A->up;
}

/* Closes n's connections from the Redis side (CLIENT KILL), as a network cut would: the other
 * node's stay. Returns how many it closed. */
static int kill_connections(const struct node *n)
{
    struct broker_status st;
    broker_status(n->b, &st);
    char want[64];
    snprintf(want, sizeof want, "name=parley-%s-", st.id);
    redisContext *c = redisConnect("127.0.0.1", redis_port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *list = redisCommand(c, "CLIENT LIST");
    assert_non_null(list);
    assert_int_equal(list->type, REDIS_REPLY_STRING);
    int killed = 0;
    for (char *line = list->str; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        const char *id = strstr(line, "id=");
        if (strstr(line, want) && id == line) {
            redisReply *k = redisCommand(c, "CLIENT KILL ID %lld", strtoll(id + 3, NULL, 10));
            assert_non_null(k);
            killed += k->type == REDIS_REPLY_INTEGER && k->integer == 1;
            freeReplyObject(k);
        }
        line = next;
    }
    freeReplyObject(list);
    redisFree(c);
    return killed;
}

static void reset_store(void)
{
    memset(store_newest, 0, sizeof store_newest);
}

/* A user with a connection on B from the start (NULL: none): its channel is subscribed before
 * the rooms, so it is confirmed once the rooms' follows are. */
static const char *user_on_b;

static void start_pair(uint64_t lease_ms)
{
    reset_store();
    node_start(A, "A", lease_ms);
    node_start(B, "B", lease_ms);
    run_until(both_up, "both brokers up");
    if (user_on_b)
        broker_user_here(B->b, user_on_b, true);
    for (int r = 0; r < ROOMS; r++) {
        broker_follow(A->b, room_names[r], 0);
        broker_follow(B->b, room_names[r], 0);
    }
    run_until(both_followed, "both nodes following the rooms");
}

static void room_events_cross_nodes_in_seq_order(void **state)
{
    (void)state;
    start_pair(10000);
    /* Both nodes write to both rooms, interleaved: each node sees one order, each seq once. */
    for (int i = 0; i < 200; i++)
        commit_and_publish(i % 3 ? A : B, i % 2);
    run_until(both_caught_up, "every event on both nodes");
    for (int r = 0; r < ROOMS; r++) {
        assert_in_order(A, r);
        assert_in_order(B, r);
    }

    /* They do cross: a node with no gap learns of the other's next event only from Redis (in
     * the burst above, a slow loop may fill every gap from the store before reading any), so
     * one node publishes at a time. */
    size_t a_remote[ROOMS], b_remote[ROOMS];
    memcpy(a_remote, A->remote, sizeof a_remote);
    memcpy(b_remote, B->remote, sizeof b_remote);
    for (int r = 0; r < ROOMS; r++)
        commit_and_publish(A, r);
    run_until(both_caught_up, "one more event from A on both");
    for (int r = 0; r < ROOMS; r++)
        commit_and_publish(B, r);
    run_until(both_caught_up, "one more event from B on both");
    for (int r = 0; r < ROOMS; r++) {
        assert_in_order(A, r);
        assert_in_order(B, r);
        assert_int_equal(A->remote[r], a_remote[r] + 1);
        assert_int_equal(B->remote[r], b_remote[r] + 1);
    }

    /* A user event reaches the other node only (the publisher delivers its own). */
    broker_publish_user(A->b, "bob", "read:general:7", 14);
    run_until(b_got_user_event, "the user event on B");
    assert_string_equal(B->last_user_event, "bob:read:general:7");
    assert_int_equal(A->user_events, 0);

    struct broker_status st;
    broker_status(A->b, &st);
    assert_string_equal(st.kind, "redis");
    assert_true(st.up);
    assert_true(st.published >= 100);
    assert_true(st.received > 0);
    node_stop(A);
    node_stop(B);
}

/* B claims a guest's name for session: 1 granted, 0 refused. */
static int b_claim(const char *name, uint64_t session, const char *what)
{
    B->claim_result = -1;
    broker_guest_claim(B->b, name, NULL, session, cb_claimed, B);
    run_until(b_claim_answered, what);
    return B->claim_result;
}

static void cb_looked_up(void *arg, const char *shown)
{
    struct node *n = arg;
    n->lookups++;
    snprintf(n->looked_up, sizeof n->looked_up, "%s", shown ? shown : "");
}

static int b_lookups_then;
static bool b_lookup_answered(void)
{
    return B->lookups > b_lookups_then;
}

/* B asks which live node's guest holds name: the name as shown, "" for none. */
static const char *b_lookup(const char *name, const char *what)
{
    b_lookups_then = B->lookups;
    broker_guest_lookup(B->b, name, cb_looked_up, B);
    run_until(b_lookup_answered, what);
    return B->looked_up;
}

/* Two nodes (lease_ms) where A holds alice online, the guest name for session, and 3 members of
 * general, all seen by B. */
static void start_pair_with_a_holding(uint64_t lease_ms, const char *guest, uint64_t session)
{
    start_pair(lease_ms);
    broker_user_here(A->b, "alice", true);
    run_until(b_sees_alice, "alice online on B");
    A->claim_result = -1;
    broker_guest_claim(A->b, guest, NULL, session, cb_claimed, A);
    run_until(a_claim_answered, "A's claim");
    assert_int_equal(A->claim_result, 1);
    broker_room_members(A->b, "general", 3);
    run_until(b_counts_five, "B counting A's members");
}

static void a_stopped_node_loses_its_users_and_guests(void **state)
{
    (void)state;
    start_pair_with_a_holding(2000, "guest7", 7);
    assert_int_equal(b_claim("guest7", 8, "B's claim"), 0); /* A holds it for another session */
    /* The session's connections may be on both. */
    assert_int_equal(b_claim("guest7", 7, "B's claim for the same session"), 1);
    broker_guest_release(B->b, "guest7");

    /* A stops refreshing its lease (as a killed node would): B reaps it. */
    broker_free(A->b);
    A->b = NULL;
    run_until(b_sees_alice_gone, "alice offline on B after A's lease");
    run_until(b_counts_two, "A's members no longer counted");
    assert_int_equal(b_claim("guest7", 8, "B's second claim"), 1);
    struct broker_status st;
    broker_status(B->b, &st);
    assert_true(st.reaped >= 1);
    node_stop(B);
}

static void a_guest_is_found_from_another_node_as_shown(void **state)
{
    (void)state;
    start_pair_with_a_holding(2000, "guest5", 5); /* claimed with no name as shown */
    assert_string_equal(b_lookup("guest5", "an older node's guest"), "guest5");
    A->claim_result = -1;
    broker_guest_claim(A->b, "guest8", "GuEst8", 8, cb_claimed, A);
    run_until(a_claim_answered, "A's claim of guest8");
    assert_string_equal(b_lookup("guest8", "guest8 on A"), "GuEst8");
    assert_string_equal(b_lookup("nobody", "a name nobody holds"), "");
    /* A registration's claim (session 0) is no guest. */
    A->claim_result = -1;
    broker_guest_claim(A->b, "newbie", "NewBie", 0, cb_claimed, A);
    run_until(a_claim_answered, "A's registration claim");
    assert_string_equal(b_lookup("newbie", "a registration's claim"), "");
    broker_guest_release(A->b, "guest8");
    /* A's commands run in order: once a later claim of A's is answered, the release is done. */
    A->claim_result = -1;
    broker_guest_claim(A->b, "guest4", "GuEst4", 4, cb_claimed, A);
    run_until(a_claim_answered, "A's claim after the release");
    assert_string_equal(b_lookup("guest8", "guest8 released"), "");
    /* A dies: its guests are no one's once its lease ran out. */
    broker_free(A->b);
    A->b = NULL;
    run_until(b_sees_alice_gone, "alice offline on B after A's lease");
    assert_string_equal(b_lookup("guest5", "a dead node's guest"), "");
    node_stop(B);
}

static bool goodbye_said;
static void cb_goodbye(void *arg)
{
    (void)arg;
    goodbye_said = true;
}
static bool a_said_goodbye(void)
{
    return goodbye_said;
}

static void a_node_saying_goodbye_is_undone_at_once(void **state)
{
    (void)state;
    /* A lease no test outlasts: only A's goodbye can undo what it held. */
    start_pair_with_a_holding(600000, "guest9", 9);
    goodbye_said = false;
    broker_goodbye(A->b, cb_goodbye, NULL);
    run_until(a_said_goodbye, "A's goodbye answered");
    /* Said: nothing A sends now changes what B sees of it. */
    broker_user_here(A->b, "bob", true);
    run_until(b_sees_alice_gone, "alice offline on B after A's goodbye");
    run_until(b_counts_two, "A's members no longer counted");
    assert_int_equal(b_claim("guest9", 10, "B's claim of A's guest's name"), 1);
    assert_false(B->online[1]); /* bob came to A after its goodbye: never told */
    struct broker_status st;
    broker_status(B->b, &st);
    assert_int_equal(st.reaped, 0); /* not reaped: A left */
    node_stop(A);
    node_stop(B);
}

static bool b_sees_bob_not_member(void)
{
    return !B->member[1];
}
static bool b_sees_alice_member(void)
{
    return B->member[0];
}
static bool b_sees_alice_not_member(void)
{
    return !B->member[0];
}
static int snapshots_before;
static bool b_snapshot_done(void)
{
    return B->snapshots > snapshots_before;
}

static void room_members_cross_and_go_with_a_dead_node(void **state)
{
    (void)state;
    start_pair(2000);
    const char *room = room_names[0];
    broker_room_here(A->b, room, "alice", true);
    run_until(b_sees_alice_member, "alice in the room on B");
    broker_room_here(A->b, room, "alice", false);
    run_until(b_sees_alice_not_member, "alice out of the room on B");
    broker_room_here(A->b, room, "alice", true);
    run_until(b_sees_alice_member, "alice back in the room on B");

    /* A node that follows the room afresh learns its members from the snapshot. */
    broker_unfollow(B->b, room);
    snapshots_before = B->snapshots;
    broker_follow(B->b, room, store_newest[0]);
    run_until(b_snapshot_done, "B's snapshot of the room");
    assert_true(B->member[0]);
    assert_false(B->member[1]);

    /* After a sync, Redis holds what the node says: bob in, alice out. */
    const char *only_bob[] = {"bob"};
    broker_room_sync(A->b, room, only_bob, 1);
    run_until(b_sees_alice_not_member, "alice out after A's sync");
    assert_true(B->member[1]);

    /* A stops refreshing its lease: the reaper says its members left. */
    broker_free(A->b);
    A->b = NULL;
    run_until(b_sees_bob_not_member, "bob out of the room after A's lease");
    node_stop(B);
}

/* A raw connection to the redis-server, for what no node would do. */
static redisContext *raw;

static long long subscribers(const char *chan)
{
    redisReply *rep = redisCommand(raw, "PUBSUB NUMSUB %s", chan);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    long long n = rep->element[1]->integer;
    freeReplyObject(rep);
    return n;
}

#define GENERAL_CHANNEL "parley:0:r:general"
static bool published;
static bool b_unsubscribed(void)
{
    return subscribers(GENERAL_CHANNEL) == 1;
}

/* Once B's subscription is in Redis, and before B has asked its snapshot (B sends it only after
 * the confirmation, and only at its next turn): a member message on the channel. */
static void publish_when_b_subscribed(void)
{
    if (published || subscribers(GENERAL_CHANNEL) != 2)
        return;
    redisReply *rep = redisCommand(raw, "PUBLISH %s %s", GENERAL_CHANNEL, "m ghost + bob\n");
    assert_non_null(rep);
    freeReplyObject(rep);
    published = true;
}

static void a_snapshot_keeps_what_the_channel_said_before_its_answer(void **state)
{
    (void)state;
    start_pair(10000);
    raw = redisConnect("127.0.0.1", redis_port);
    assert_non_null(raw);
    assert_int_equal(raw->err, 0);
    const char *room = room_names[0];
    broker_unfollow(B->b, room);
    run_until(b_unsubscribed, "B's unsubscription");

    /* bob comes in on a node while B's snapshot is on its way, in a message whose pair the
     * snapshot will not hold (as when Redis publishes it after the script read the sets): B hears
     * it first, and the snapshot must not undo it. */
    published = false;
    before_sleep = publish_when_b_subscribed;
    snapshots_before = B->snapshots;
    broker_follow(B->b, room, store_newest[0]);
    run_until(b_snapshot_done, "B's snapshot of the room");
    before_sleep = NULL;
    assert_true(published);
    assert_true(B->member[1]);
    assert_false(B->member[0]);
    redisFree(raw);
    raw = NULL;
    node_stop(A);
    node_stop(B);
}

static void a_redis_restart_is_caught_up_from_the_store(void **state)
{
    (void)state;
    start_pair(10000);
    broker_user_here(A->b, "alice", true);
    run_until(b_sees_alice, "alice online on B");
    for (int i = 0; i < 20; i++)
        commit_and_publish(i % 2 ? A : B, 0);
    run_until(both_caught_up, "the first events");
    A->claim_result = -1;
    broker_guest_claim(A->b, "guest6", "GuEst6", 6, cb_claimed, A);
    run_until(a_claim_answered, "A's claim of guest6");
    assert_string_equal(b_lookup("guest6", "guest6 on A"), "GuEst6");

    redis_stop();
    run_until(both_down, "both brokers down");
    struct broker_status st;
    broker_status(A->b, &st);
    assert_false(st.up);
    assert_string_equal(b_lookup("guest6", "a lookup while down"), ""); /* at once */

    /* While Redis is away each node goes on: its own events are delivered here, in order. */
    commit_and_publish(A, 0);
    commit_and_publish(A, 0);
    commit_and_publish(B, 1);
    assert_int_equal(A->n_delivered[0], store_newest[0]);
    assert_int_equal(B->n_delivered[1], store_newest[1]);

    redis_start(); /* empty: persistence is off */
    int a_ups = A->ups, b_ups = B->ups;
    run_until(both_up, "both brokers back");
    assert_true(A->ups > a_ups && B->ups > b_ups);
    /* The catch-up: what the other node stored meanwhile comes from the store. */
    run_until(both_caught_up, "the events sent while Redis was away");
    for (int r = 0; r < ROOMS; r++) {
        assert_in_order(A, r);
        assert_in_order(B, r);
    }
    /* Redis forgot everything; A put alice back, and its guest's name as shown. */
    run_until(b_sees_alice, "alice online on B again");
    assert_string_equal(b_lookup("guest6", "guest6 after the restart"), "GuEst6");

    /* Live delivery works again. */
    commit_and_publish(B, 0);
    run_until(both_caught_up, "an event after the restart");
    assert_in_order(A, 0);
    broker_status(A->b, &st);
    assert_true(st.up);
    assert_true(st.reconnects >= 2); /* the first connect and the return */
    node_stop(A);
    node_stop(B);
}

static void a_node_cut_off_tells_what_it_stored_meanwhile(void **state)
{
    (void)state;
    start_pair(10000);
    for (int i = 0; i < 10; i++)
        commit_and_publish(i % 2 ? A : B, 0);
    run_until(both_caught_up, "the first events");

    /* A alone loses Redis; B stays connected and loses nothing, so B has no reason to look. */
    int b_ups = B->ups;
    assert_int_equal(kill_connections(A), 2);
    run_until(a_down, "A down");
    assert_true(B->up);
    commit_and_publish(A, 0); /* stored, delivered on A, never published */
    assert_int_equal(A->n_delivered[0], store_newest[0]);
    assert_int_equal(B->n_delivered[0], store_newest[0] - 1);

    /* Back, A tells the newest seq it knows; B fills it from the store. */
    run_until(both_up, "A back");
    run_until(both_caught_up, "B given the event A stored while cut off");
    assert_in_order(B, 0);
    assert_int_equal(B->ups, b_ups); /* B never went down */
    node_stop(A);
    node_stop(B);
}

static bool b_has_dms(void)
{
    return B->n_delivered[DM] == store_newest[DM];
}
static bool a_has_general(void)
{
    return A->n_delivered[0] == store_newest[0];
}

static bool b_ready_once(void)
{
    return B->readies == 1;
}
static bool b_ready_again(void)
{
    return B->readies == 2 && B->up;
}

static void a_dm_reaches_the_nodes_of_its_users_in_order(void **state)
{
    (void)state;
    user_on_b = "bob";
    start_pair(10000);
    user_on_b = NULL;
    /* bob's channel is confirmed once (the hub then looks in the store for what came before). */
    run_until(b_ready_once, "bob's channel ready on B");
    /* A stores alice's dms (the hub follows the room it stores in); B, where only bob is, does
     * not follow the room: its first event heard on bob's channel asks B to follow it. */
    broker_follow(A->b, room_names[DM], 0);
    for (int i = 0; i < 3; i++)
        commit_and_publish(A, DM);
    run_until(b_has_dms, "alice's dms on B");
    assert_int_equal(B->dm_follows, 1);
    assert_int_equal(B->remote[DM], 3);
    assert_in_order(B, DM);

    /* One lost on its way (stored, never published): B holds the next and fills the gap from
     * the store, as in any followed room. */
    size_t fills = B->fills[DM];
    uint64_t seq = ++store_newest[DM];
    snprintf(store[DM][seq], sizeof store[DM][seq], "dm#lost#%llu", (unsigned long long)seq);
    commit_and_publish(A, DM);
    run_until(b_has_dms, "the dm after the lost one, and the lost one, on B");
    assert_in_order(B, DM);
    assert_true(B->fills[DM] > fills);
    assert_int_equal(B->dm_follows, 1);

    /* A node where neither user is hears nothing of the dm room through Redis: B's dm, then an
     * event of general, which reaches A after it (one publisher, one order). */
    size_t a_remote = A->remote[DM];
    commit_and_publish(B, DM);
    commit_and_publish(B, 0);
    run_until(a_has_general, "B's event of general on A");
    assert_int_equal(A->remote[DM], a_remote);
    assert_int_equal(A->dm_follows, 0);
    assert_int_equal(A->readies, 0); /* bob is not on A */

    /* B cut off and back: bob's channel is subscribed again, and the hub told again. */
    assert_int_equal(kill_connections(B), 2);
    run_until(b_ready_again, "bob's channel ready on B again");
    node_stop(A);
    node_stop(B);
}

/* Stores the next event of room r without publishing it: a node killed between its commit and
 * its PUBLISH. */
static void commit_only(int r, const char *by)
{
    uint64_t seq = ++store_newest[r];
    assert_true(seq < MAX_EVENTS);
    snprintf(store[r][seq], sizeof store[r][seq], "%s#%s#%llu", room_names[r], by,
             (unsigned long long)seq);
}

static bool b_caught_up(void)
{
    for (int r = 0; r < ALL_ROOMS; r++)
        if (B->n_delivered[r] != store_newest[r])
            return false;
    return true;
}

static void a_node_dead_before_publishing_is_caught_up_at_its_reap(void **state)
{
    (void)state;
    start_pair(2000);
    broker_follow(A->b, room_names[DM], 0);
    broker_follow(B->b, room_names[DM], 0);
    for (int r = 0; r < ALL_ROOMS; r++)
        commit_and_publish(r % 2 ? A : B, r);
    run_until(b_caught_up, "the first events on B");

    /* Each room's last event is one B never hears of: killed between commit and PUBLISH (room 1
     * and the dm room), or stored while cut off from Redis (room 0), and then A dies. */
    commit_only(1, "A");
    commit_only(DM, "A");
    assert_int_equal(kill_connections(A), 2);
    run_until(a_down, "A down");
    commit_and_publish(A, 0); /* delivered on A, never published */
    broker_free(A->b);
    A->b = NULL;
    size_t fills[ALL_ROOMS];
    memcpy(fills, B->fills, sizeof fills);
    assert_int_equal(B->n_delivered[0], store_newest[0] - 1);

    /* B reaps A (or hears that it was reaped) and reads each followed room's newest. */
    run_until(b_caught_up, "B given the events A stored and never published");
    for (int r = 0; r < ALL_ROOMS; r++) {
        assert_in_order(B, r);
        assert_true(B->fills[r] > fills[r]);
    }
    struct broker_status st;
    broker_status(B->b, &st);
    assert_true(st.reaped >= 1);
    node_stop(B);
}

static bool a_caught_up(void)
{
    return A->n_delivered[0] == store_newest[0];
}

static void a_cid_retry_answered_from_the_store_reaches_every_node(void **state)
{
    (void)state;
    start_pair(10000);
    for (int i = 0; i < 4; i++)
        commit_and_publish(i % 2 ? A : B, 0);
    run_until(both_caught_up, "the first events");

    /* A third node stored one and died before publishing it; its sender retries the cid on B,
     * which finds it in the store: B delivers it, and A is hinted at it. */
    commit_only(0, "C");
    broker_room_stored(B->b, room_names[0], store_newest[0]);
    run_until(a_caught_up, "the retried event on A");
    run_until(both_caught_up, "and on B");
    assert_in_order(A, 0);
    assert_in_order(B, 0);

    /* Delivered here: a second retry changes nothing, and the next event goes on in order. */
    broker_room_stored(B->b, room_names[0], store_newest[0]);
    commit_and_publish(B, 0);
    run_until(both_caught_up, "the next event");
    assert_in_order(A, 0);
    assert_in_order(B, 0);
    node_stop(A);
    node_stop(B);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    loop = loop_new();
    loop_set_before_sleep(loop, hook, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(room_events_cross_nodes_in_seq_order),
        cmocka_unit_test(a_stopped_node_loses_its_users_and_guests),
        cmocka_unit_test(a_guest_is_found_from_another_node_as_shown),
        cmocka_unit_test(a_node_saying_goodbye_is_undone_at_once),
        cmocka_unit_test(room_members_cross_and_go_with_a_dead_node),
        cmocka_unit_test(a_snapshot_keeps_what_the_channel_said_before_its_answer),
        cmocka_unit_test(a_redis_restart_is_caught_up_from_the_store),
        cmocka_unit_test(a_node_cut_off_tells_what_it_stored_meanwhile),
        cmocka_unit_test(a_dm_reaches_the_nodes_of_its_users_in_order),
        cmocka_unit_test(a_node_dead_before_publishing_is_caught_up_at_its_reap),
        cmocka_unit_test(a_cid_retry_answered_from_the_store_reaches_every_node),
    };
    int failed = cmocka_run_group_tests_name("broker_redis", tests, group_setup, group_teardown);
    redis_stop();
    loop_free(loop);
    return failed;
}
