/* upgrade: the process's main thread: start, signals, pid file, and upgrades with their faults. */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "handover_rec.h"
#include "listen_fds.h"
#include "log.h"
#include "loop.h"
#include "mailbox.h"
#include "metrics.h"
#include "notify.h"
#include "server.h"
#include "tls.h"
#include "upgrade_chan.h"
#include "upgrade_live.h"

extern char **environ;

/* Our variables in the new process's environment (beside systemd's LISTEN_*). */
#define ENV_CHAN "PARLEY_UPGRADE_FD"       /* its end of the control channel */
#define ENV_GENERATION "PARLEY_GENERATION" /* its generation */
#define ENV_COUNTS "PARLEY_UPGRADES"       /* "done,failed,handed,drained": the line's counts */
#define ENV_ADOPT "PARLEY_ADOPT_FD" /* a restart after a failed upgrade: connections to adopt */
/* Test-only (docs/operations.md): "ready" keeps a new process from ever reporting ready, "go"
 * keeps an old one from ever sending GO, "moving" keeps an old one from sending more than its
 * first batch of connections (upgrade_live.c), "serving" keeps a new one from telling the old one
 * it serves, "crash:K" kills a new one once it has acknowledged K batches (upgrade_live.c), so
 * tests can kill either process at that step. Harmless: an upgrade so held fails by its timeout,
 * and the old process serves on or restarts itself. */
#define ENV_TEST_HOLD "PARLEY_TEST_HOLD"

#define PID_FILE "parley.pid"
/* Once the new process serves, the old one's connections close over --drain-time; whatever is
 * left this long after is cut. */
#define DRAIN_GRACE_MS 3000
#define DRAIN_POLL_MS 100
/* After GO the old process's goodbyes to what is left when the new one died before it exited. */
#define RECOVER_GOODBYE_MS 1000
/* How long a new process whose channel ended may take to be reapable before it is killed. */
#define CHILD_EXIT_WAIT_MS 200
/* Live mode: how long the old process waits for the requests of the connections that can move
 * to be answered before it hands the store over, and then for those still busy before they are
 * left to the drain; and for its workers to write every connection when it restarts itself. */
#define QUIESCE_MS 1000
#define COLLECT_MS 1000
#define SAVE_ALL_MS 2000
/* The old end of the channel's send buffer in live mode: batches of records go faster. */
#define CHAN_SNDBUF (4 << 20)

enum old_state {
    UP_IDLE,      /* no upgrade under way */
    UP_SPAWNED,   /* the new process runs; waiting for READY */
    UP_QUIESCING, /* (live) READY came; not accepting, input held, requests being answered */
    UP_FENCING,   /* READY came; not accepting, waiting for the store to hold writes */
    UP_HOLDING,   /* (test hook "go") held before GO until the new process dies or times out */
    UP_GO_SENT,   /* the store is the new process's; waiting for SERVING */
    UP_DRAINING,  /* handed over: saying goodbye, then exit */
};

struct proc {
    const struct config *cfg;
    char **argv;
    char binary[PATH_MAX]; /* what an upgrade starts: --upgrade-binary, or our path at start */
    int self_fd;           /* our own executable, for a recovery exec whatever became of its path */
    char pid_path[PATH_MAX];
    struct loop *loop;
    int sigfd;
    struct loop_watch sig_watch;
    struct mailbox mbox; /* the store's answers to gate mails */
    struct loop_watch mbox_watch;
    struct server *server;
    struct metrics_upgrades counts;
    const char *test_hold;
    bool stopping;
    int exit_status;

    /* The process we took over from, while it lives (its end of the channel is open). */
    int pred_fd;
    struct loop_watch pred_watch;
    bool pred_go; /* it sent GO: the store is ours */

    /* The process we upgrade to. */
    enum old_state state;
    bool live;  /* this upgrade moves connections (live mode, and the new binary speaks it) */
    bool moved; /* live: CONN_DONE sent; the connections sent are the new process's */
    pid_t child;
    int child_fd, child_pidfd;
    struct loop_watch child_watch, pidfd_watch;
    struct timer deadline;
    uint64_t drain_until;
    struct timer drain_poll;
};

static struct proc P;

static void update_metrics(void)
{
    metrics_set_upgrades(&P.counts);
}

/* --- the pid file: DIR/parley.pid names the process that serves DIR --- */

static void pidfile_write(void)
{
    char tmp[PATH_MAX + 8], text[32];
    snprintf(tmp, sizeof tmp, "%s.tmp", P.pid_path);
    int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write(fd, text, (size_t)n) == n;
    if (fd >= 0)
        close(fd);
    /* rename: a reader (`parley upgrade`) sees the old pid or the new one, never half a file. */
    if (!ok || rename(tmp, P.pid_path) != 0) {
        log_warn("msg=pidfile_failed path=\"%s\" error=\"%s\"", P.pid_path, strerror(errno));
        unlink(tmp);
    }
}

/* Reads the pid in path; 0 when there is none. */
static pid_t pidfile_read(const char *path)
{
    char text[32] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    long pid = n > 0 ? strtol(text, NULL, 10) : 0;
    return pid > 0 && pid <= INT_MAX ? (pid_t)pid : 0;
}

/* Removes the pid file if it still names us: after a handover it names the new process. */
static void pidfile_remove(void)
{
    if (pidfile_read(P.pid_path) == getpid())
        unlink(P.pid_path);
}

/* --- small helpers --- */

static const char *hold(void)
{
    return P.test_hold ? P.test_hold : "";
}

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *v = getenv(name);
    char *end;
    if (!v || !*v)
        return fallback;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    return errno || *end ? fallback : x;
}

/* Describes how a child ended, from waitpid's status. */
static void describe_exit(int status, char *out, size_t outsz)
{
    if (WIFEXITED(status))
        snprintf(out, outsz, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, outsz, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, outsz, "ended");
}

/* Kills the new process (if it still runs) and reaps it; out: how it ended. */
static void end_child(char *out, size_t outsz)
{
    if (P.child <= 0) {
        snprintf(out, outsz, "ended");
        return;
    }
    int status = 0;
    pid_t r = waitpid(P.child, &status, WNOHANG);
    if (r == 0 && P.child_pidfd >= 0) {
        /* Its channel ended as it died: the kernel closes a dying process's descriptors a moment
         * before its exit status is there. Give that moment, so the log says how it ended. */
        struct pollfd pfd = {.fd = P.child_pidfd, .events = POLLIN};
        if (poll(&pfd, 1, CHILD_EXIT_WAIT_MS) == 1)
            r = waitpid(P.child, &status, WNOHANG);
    }
    if (r == 0) {
        kill(P.child, SIGKILL);
        while ((r = waitpid(P.child, &status, 0)) < 0 && errno == EINTR)
            ;
        snprintf(out, outsz, "was killed by this process");
    } else {
        describe_exit(status, out, outsz);
    }
    P.child = 0;
}

static void close_child_channel(void)
{
    if (P.child_fd >= 0) {
        loop_watch_del(P.loop, P.child_fd);
        close(P.child_fd);
        P.child_fd = -1;
    }
    if (P.child_pidfd >= 0) {
        loop_watch_del(P.loop, P.child_pidfd);
        close(P.child_pidfd);
        P.child_pidfd = -1;
    }
    timer_stop(P.loop, &P.deadline);
}

/*
 * Builds the environment of a process that takes the listening sockets fds
 * 3..3+n_fds (their names in names), with chan_fd >= 0 the control channel,
 * with adopt_fd >= 0 connections to adopt, and counts as its line's: ours less
 * the variables we set, then ours. pid_env receives the LISTEN_PID entry,
 * whose digits are written once the pid is known.
 */
static char **make_env(const enum listen_kind *kinds, size_t n_fds, int chan_fd, int adopt_fd,
                       const struct metrics_upgrades *counts, char *pid_env, size_t pid_env_size)
{
    static const char *const ours[] = {
        "LISTEN_PID=", "LISTEN_FDS=",      "LISTEN_FDNAMES=", ENV_CHAN "=",
        ENV_ADOPT "=", ENV_GENERATION "=", ENV_COUNTS "="};
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = xcalloc(n + 9, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool skip = false;
        for (size_t j = 0; j < sizeof ours / sizeof ours[0] && !skip; j++)
            skip = strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
        if (!skip)
            env[k++] = xstrdup(environ[i]);
    }
    size_t names_len = 32;
    for (size_t i = 0; i < n_fds; i++)
        names_len += strlen(listen_kind_name(kinds[i])) + 1;
    char *names = xmalloc(names_len);
    size_t off = (size_t)snprintf(names, names_len, "LISTEN_FDNAMES=");
    for (size_t i = 0; i < n_fds; i++)
        off += (size_t)snprintf(names + off, names_len - off, "%s%s", i ? ":" : "",
                                listen_kind_name(kinds[i]));
    env[k++] = names;
    char buf[96];
    snprintf(buf, sizeof buf, "LISTEN_FDS=%zu", n_fds);
    env[k++] = xstrdup(buf);
    if (chan_fd >= 0) {
        snprintf(buf, sizeof buf, ENV_CHAN "=%d", chan_fd);
        env[k++] = xstrdup(buf);
    }
    if (adopt_fd >= 0) {
        snprintf(buf, sizeof buf, ENV_ADOPT "=%d", adopt_fd);
        env[k++] = xstrdup(buf);
    }
    snprintf(buf, sizeof buf, ENV_GENERATION "=%llu", (unsigned long long)counts->generation);
    env[k++] = xstrdup(buf);
    snprintf(buf, sizeof buf, ENV_COUNTS "=%llu,%llu,%llu,%llu", (unsigned long long)counts->done,
             (unsigned long long)counts->failed, (unsigned long long)counts->handed_over,
             (unsigned long long)counts->drained);
    env[k++] = xstrdup(buf);
    snprintf(pid_env, pid_env_size, "LISTEN_PID=");
    env[k++] = pid_env; /* not ours to free */
    env[k] = NULL;
    return env;
}

static void free_env(char **env, const char *pid_env)
{
    for (size_t i = 0; env[i]; i++)
        if (env[i] != pid_env)
            free(env[i]);
    free(env);
}

/* Writes pid's digits after "LISTEN_PID=" in buf: only async-signal-safe steps (after fork). */
static void write_pid(char *buf, pid_t pid)
{
    char digits[16];
    int n = 0;
    unsigned v = (unsigned)pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof digits);
    char *p = buf + strlen("LISTEN_PID=");
    while (n > 0)
        *p++ = digits[--n];
    *p = '\0';
}

/*
 * Duplicates fds[0..n) (and extra, if >= 0) to descriptors above 3 + n + 1, close-on-exec,
 * so that placing them at 3.. cannot overwrite one still to be placed. Returns the copies.
 */
static int *high_copies(const int *fds, size_t n, int extra)
{
    int *copies = xcalloc(n + 1, sizeof *copies);
    int base = LISTEN_FDS_START + (int)n + 1;
    for (size_t i = 0; i < n; i++)
        copies[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, base);
    copies[n] = extra >= 0 ? fcntl(extra, F_DUPFD_CLOEXEC, base) : -1;
    return copies;
}

/* Places copies[0..n) at 3.. (and copies[n] right after) for an exec. Async-signal-safe. */
static int place_fds(const int *copies, size_t n, bool with_extra)
{
    for (size_t i = 0; i < n + (with_extra ? 1 : 0); i++) {
        if (copies[i] < 0 || dup2(copies[i], LISTEN_FDS_START + (int)i) < 0)
            return -1;
    }
    return 0;
}

/* --- the old side of an upgrade --- */

static void set_state(enum old_state s)
{
    P.state = s;
}

/* An upgrade that failed before GO: this process never stopped being the one that writes. */
static void upgrade_abort(const char *reason)
{
    enum old_state was = P.state;
    char how[96];
    pid_t pid = P.child;
    end_child(how, sizeof how);
    close_child_channel();
    if (was >= UP_FENCING && P.server)
        server_gate_store(P.server, STORE_GATE_OPEN, NULL);
    if (was >= UP_QUIESCING && P.server) {
        if (P.live)
            live_unfreeze(P.server);
        server_set_accepting(P.server, true);
    }
    P.counts.failed++;
    update_metrics();
    set_state(UP_IDLE);
    log_error("msg=upgrade_failed new_pid=%d reason=\"%s\" new_process=\"%s\" generation=%llu "
              "action=\"this process serves on\"",
              (int)pid, reason, how, (unsigned long long)P.counts.generation);
    char status[200];
    snprintf(status, sizeof status, "upgrade failed: %s; serving on", reason);
    notify_ready(getpid(), status);
}

/*
 * The new process died, or must be given up, after GO: it may have written, so nothing in
 * this process's memory can be trusted (seqs, users, rings). Say goodbye to whatever
 * connections are left and become a fresh copy of this binary, which keeps the listening
 * sockets (nothing is refused) and loads the store as it is.
 */
static void recover_by_exec(const char *reason)
{
    char how[96];
    pid_t pid = P.child;
    end_child(how, sizeof how);
    close_child_channel();
    P.counts.failed++;
    log_error("msg=upgrade_failed new_pid=%d reason=\"%s\" new_process=\"%s\" generation=%llu "
              "action=\"this process restarts itself on the store as it is\"",
              (int)pid, reason, how, (unsigned long long)P.counts.generation);
    int *fds;
    enum listen_kind *kinds;
    size_t n = server_listeners(P.server, &fds, &kinds);
    /* Live mode: the connections that can move go on in the fresh image, by the records a new
     * process would have had (none of them was written by the new one: it writes nothing before
     * CONN_DONE, and what it had after that went with it). The others get the goodbye. */
    int *conns = NULL;
    uint8_t *recs = NULL;
    size_t recs_len = 0, n_conns = 0;
    if (P.cfg->upgrade_mode == CONFIG_UPGRADE_LIVE)
        n_conns = live_save_all(P.server, SAVE_ALL_MS, &conns, &recs, &recs_len);
    /* No goodbye: the fresh image goes on with the connections that moved (a new node). */
    server_stop(P.server, RECOVER_GOODBYE_MS, CONN_GOODBYE_RESTART, true, false);
    P.server = NULL;
    /* Their descriptors go above where the listening sockets will be placed, inherited. */
    int base = LISTEN_FDS_START + (int)n + 2;
    for (size_t i = 0; i < n_conns; i++) {
        int high = fcntl(conns[i], F_DUPFD, base);
        close(conns[i]);
        conns[i] = high;
    }
    int adopt_fd = -1;
    if (n_conns > 0) {
        int memfd = live_write_memfd(conns, n_conns, recs, recs_len);
        if (memfd >= 0) {
            adopt_fd = fcntl(memfd, F_DUPFD, base);
            close(memfd);
        }
    }
    free(recs);
    char pid_env[32];
    /* A new generation: the one we handed to served, however briefly. */
    struct metrics_upgrades counts = P.counts;
    counts.generation += 2;
    char **env = make_env(kinds, n, -1, adopt_fd, &counts, pid_env, sizeof pid_env);
    write_pid(pid_env, getpid());
    int *copies = high_copies(fds, n, P.self_fd);
    log_info("msg=restarting binary=/proc/self/exe listeners=%zu connections=%zu", n,
             adopt_fd >= 0 ? n_conns : 0);
    if (place_fds(copies, n, false) == 0)
        fexecve(copies[n], P.argv, env);
    log_error("msg=restart_failed error=\"%s\" action=\"exiting: restart parley by hand or let "
              "the service manager do it\"",
              strerror(errno));
    _exit(1);
}

static void on_deadline(struct timer *t)
{
    (void)t;
    char reason[128];
    if (P.state == UP_GO_SENT) {
        snprintf(reason, sizeof reason, "the new process was not serving %.1f s after GO",
                 (double)P.cfg->upgrade_timeout_ms / 1000.0);
        recover_by_exec(reason);
        return;
    }
    snprintf(reason, sizeof reason, "the new process was not ready within %.1f s",
             (double)P.cfg->upgrade_timeout_ms / 1000.0);
    upgrade_abort(reason);
}

/* The new process is gone (its channel ended or its pidfd fired) or misbehaved. */
static void child_lost(const char *reason)
{
    if (P.state == UP_IDLE)
        return;
    if (P.state >= UP_GO_SENT)
        recover_by_exec(reason);
    else
        upgrade_abort(reason);
}

static void drain_poll(struct timer *t);

static void begin_drain(void)
{
    set_state(UP_DRAINING);
    P.counts.done++;
    update_metrics();
    log_info("msg=upgrade_handed_over new_pid=%d generation=%llu mode=%s", (int)P.child,
             (unsigned long long)P.counts.generation + 1, P.live ? "live" : "drain");
    char status[96];
    snprintf(status, sizeof status, "handed over to pid %d", (int)P.child);
    notify_ready(P.child, status);
    timer_stop(P.loop, &P.deadline);
    uint64_t drain = P.cfg->drain_time_ms;
    P.drain_until = clock_ms() + drain + DRAIN_GRACE_MS;
    log_info("msg=draining connections=%zu drain_ms=%llu", server_connections(),
             (unsigned long long)drain);
    server_begin_goodbyes(P.server, CONN_GOODBYE_RESTART, drain, P.drain_until);
    timer_init(&P.drain_poll, drain_poll);
    timer_start(P.loop, &P.drain_poll, loop_now(P.loop) + DRAIN_POLL_MS);
}

static void finish_drain(void)
{
    uint64_t now = clock_ms();
    unsigned left = P.drain_until > now ? (unsigned)(P.drain_until - now) : 0;
    /* A drain's connections left one by one: this node says goodbye. A live upgrade's moved on
     * to the new process, a new node that may not hold them in Redis yet: a goodbye now would
     * show them offline elsewhere in between; the lease runs out instead. */
    server_stop(P.server, left, CONN_GOODBYE_RESTART, false, !P.live);
    P.server = NULL;
    /* The new process is on its own now; our end of the channel closes with us. */
    P.child = 0;
    close_child_channel();
    log_info("msg=stopped reason=handed_over");
    loop_stop(P.loop);
}

static void drain_poll(struct timer *t)
{
    (void)t;
    if (server_connections() == 0 || clock_ms() >= P.drain_until) {
        finish_drain();
        return;
    }
    timer_start(P.loop, &P.drain_poll, loop_now(P.loop) + DRAIN_POLL_MS);
}

/* The channel to the new process: watched for writing too while live batches wait for room. */
static void update_child_watch(void)
{
    if (P.child_fd >= 0)
        loop_watch_mod(P.loop, P.child_fd, EPOLLIN | (live_wants_write() ? EPOLLOUT : 0),
                       &P.child_watch);
}

static void send_go(void)
{
    int rc =
        upgrade_chan_send(P.child_fd, UPGRADE_MSG_GO, P.live ? "mode=live" : "mode=drain", NULL, 0);
    if (rc < 0) {
        /* Not sent: the new process never had the store. */
        upgrade_abort("the control channel failed before GO");
        return;
    }
    set_state(UP_GO_SENT);
    /* From here on this process never writes again: what waits in the store is refused. In live
     * mode the connections are collected once the store has said its last (on_mbox). */
    server_gate_store(P.server, STORE_GATE_CLOSED, P.live ? &P.mbox : NULL);
    log_info("msg=upgrade_go new_pid=%d mode=%s", (int)P.child, P.live ? "live" : "drain");
    timer_start(P.loop, &P.deadline, loop_now(P.loop) + P.cfg->upgrade_timeout_ms);
}

/* Live mode: nothing is on its way any more for the connections that can move (or the bound
 * passed): the store holds writes next, as in drain mode. */
static void live_quiet(void)
{
    if (P.state != UP_QUIESCING)
        return;
    server_gate_store(P.server, STORE_GATE_HELD, &P.mbox);
    set_state(UP_FENCING);
}

/* Live mode: CONN_DONE is sent; what was sent is the new process's, let go of here. */
static void live_moved(uint64_t handed, uint64_t drained)
{
    P.moved = true;
    live_settle_moved(P.server);
    log_info("msg=upgrade_connections_moved new_pid=%d handed=%llu drained=%llu", (int)P.child,
             (unsigned long long)handed, (unsigned long long)drained);
}

static void live_channel_failed(const char *why)
{
    child_lost(why);
}

static void on_child_msg(struct upgrade_msg *m)
{
    char pid[24] = "?", version[40] = "?", chan[16] = "0", records[32] = "?";
    upgrade_chan_field((char *)m->payload, "pid", pid, sizeof pid);
    if (m->type == UPGRADE_MSG_READY && P.state == UP_SPAWNED) {
        upgrade_chan_field((char *)m->payload, "version", version, sizeof version);
        upgrade_chan_field((char *)m->payload, "chan", chan, sizeof chan);
        upgrade_chan_field((char *)m->payload, "records", records, sizeof records);
        if (atoi(chan) < 1) {
            char reason[128];
            snprintf(reason, sizeof reason, "the new binary speaks channel version %s, not 1 or 2",
                     chan);
            upgrade_abort(reason);
            return;
        }
        /* A binary from before live upgrades (channel version 1) gets a drain. */
        P.live = P.cfg->upgrade_mode == CONFIG_UPGRADE_LIVE && atoi(chan) >= 2;
        log_info("msg=upgrade_ready new_pid=%s version=%s chan=%s records=%s mode=%s", pid, version,
                 chan, records, P.live ? "live" : "drain");
        if (P.cfg->upgrade_mode == CONFIG_UPGRADE_LIVE && !P.live)
            log_warn("msg=upgrade_mode_drain reason=\"the new binary cannot take connections "
                     "live (channel version %s)\" action=\"connections are drained with 1012\"",
                     chan);
        /* Connections arriving from now on wait in the kernel's backlog for the new process. */
        server_set_accepting(P.server, false);
        if (P.live) {
            /* Input held, and what is on its way answered here, before the store is held. */
            live_freeze(P.server, QUIESCE_MS);
            set_state(UP_QUIESCING);
            return;
        }
        server_gate_store(P.server, STORE_GATE_HELD, &P.mbox);
        set_state(UP_FENCING);
        return;
    }
    if (m->type == UPGRADE_MSG_CONN_ACK && P.state == UP_GO_SENT && P.live && !P.moved) {
        if (live_ack(m) < 0)
            child_lost("the new process acknowledged a batch that was not sent");
        return;
    }
    if (m->type == UPGRADE_MSG_SERVING && P.state == UP_GO_SENT && (!P.live || P.moved)) {
        begin_drain();
        return;
    }
    char reason[96];
    snprintf(reason, sizeof reason, "unexpected message %u from the new process", m->type);
    child_lost(reason);
}

static void on_child_channel(struct loop_watch *w, uint32_t events)
{
    (void)w;
    static struct upgrade_msg m; /* 64 KiB: not on the stack of every turn */
    if (events & EPOLLOUT)
        live_writable();
    for (;;) {
        if (P.child_fd < 0)
            return;
        int rc = upgrade_chan_recv(P.child_fd, &m);
        if (rc == -EAGAIN)
            break;
        for (size_t i = 0; i < m.n_fds; i++)
            close(m.fds[i]); /* no message from the new process carries any */
        if (rc <= 0) {
            if (P.state == UP_DRAINING) {
                /* It died while we drain: the store may hold what it wrote. */
                recover_by_exec("the new process died while this one was draining");
                return;
            }
            child_lost(rc == 0 ? "the new process closed the control channel (it exited or "
                                 "crashed)"
                               : "the control channel failed");
            return;
        }
        on_child_msg(&m);
        if (P.state == UP_IDLE || P.child_fd < 0)
            return;
    }
    update_child_watch();
}

static void on_child_pidfd(struct loop_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    if (P.state == UP_DRAINING)
        recover_by_exec("the new process died while this one was draining");
    else
        child_lost("the new process exited");
}

static void on_mbox(struct loop_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    mailbox_ack(&P.mbox);
    struct mail *m;
    while ((m = mailbox_take(&P.mbox))) {
        if (m->kind == MAIL_HANDOVER) {
            live_mail(m);
            continue;
        }
        struct store_gate_mail *gm = (struct store_gate_mail *)m;
        enum store_gate gate = m->kind == MAIL_STORE_GATE ? gm->gate : STORE_GATE_OPEN;
        free(m);
        if (gate == STORE_GATE_CLOSED && P.state == UP_GO_SENT && P.live) {
            /* The store has said its last: every result and message it committed is on its
             * way to the workers, ahead of the collection. */
            int buf = CHAN_SNDBUF;
            setsockopt(P.child_fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
            live_collect(P.server, P.child_fd, COLLECT_MS);
            continue;
        }
        if (gate != STORE_GATE_HELD || P.state != UP_FENCING)
            continue;
        /* The store holds: everything acknowledged is committed, and nothing more will be. */
        if (strcmp(hold(), "go") == 0) {
            log_warn("msg=upgrade_holding test_hook=" ENV_TEST_HOLD "=go");
            set_state(UP_HOLDING);
            continue;
        }
        send_go();
    }
    if (P.state == UP_IDLE)
        return; /* (an upgrade that failed meanwhile) */
    update_child_watch();
}

static void upgrade_start(void)
{
    const char *busy = P.stopping               ? "this process is stopping"
                       : P.state == UP_DRAINING ? "this process has handed over and is draining"
                       : P.state != UP_IDLE     ? "an upgrade is already under way"
                       : P.pred_fd >= 0         ? "the process this one took over from is still "
                                                  "draining"
                       : !P.server              ? "this process is not serving yet"
                                                : NULL;
    if (busy) {
        log_warn("msg=upgrade_ignored reason=\"%s\"", busy);
        return;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        log_error("msg=upgrade_failed reason=\"socketpair: %s\"", strerror(errno));
        P.counts.failed++;
        update_metrics();
        return;
    }
    int *fds;
    enum listen_kind *kinds;
    size_t n = server_listeners(P.server, &fds, &kinds);
    char pid_env[32];
    int chan_at = LISTEN_FDS_START + (int)n;
    struct metrics_upgrades counts = P.counts;
    counts.generation++;
    counts.done++;
    char **env = make_env(kinds, n, chan_at, -1, &counts, pid_env, sizeof pid_env);
    int *copies = high_copies(fds, n, sv[1]);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: only async-signal-safe steps until exec. */
        write_pid(pid_env, getpid());
        if (place_fds(copies, n, true) < 0)
            _exit(126);
        close_range((unsigned)chan_at + 1, ~0u, 0);
        /* The signal mask stays as it is (SIGUSR2, SIGTERM... blocked) across exec: the new
         * parley blocks them again first thing, and a SIGUSR2 in between must not kill it. */
        sigaction(SIGPIPE, &dfl, NULL);
        execve(P.binary, P.argv, env);
        _exit(127);
    }
    int err = errno;
    for (size_t i = 0; i <= n; i++)
        if (copies[i] >= 0)
            close(copies[i]);
    free(copies);
    free(fds);
    free(kinds);
    free_env(env, pid_env);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        log_error("msg=upgrade_failed reason=\"fork: %s\"", strerror(err));
        P.counts.failed++;
        update_metrics();
        return;
    }
    P.child = pid;
    P.child_fd = sv[0];
    P.child_pidfd = pidfd_open(pid, 0);
    P.child_watch.cb = on_child_channel;
    loop_watch_add(P.loop, P.child_fd, EPOLLIN, &P.child_watch);
    if (P.child_pidfd >= 0) {
        P.pidfd_watch.cb = on_child_pidfd;
        loop_watch_add(P.loop, P.child_pidfd, EPOLLIN, &P.pidfd_watch);
    }
    timer_start(P.loop, &P.deadline, loop_now(P.loop) + P.cfg->upgrade_timeout_ms);
    set_state(UP_SPAWNED);
    log_info("msg=upgrade_started new_pid=%d binary=\"%s\" listeners=%zu generation=%llu", (int)pid,
             P.binary, n, (unsigned long long)P.counts.generation + 1);
    notify_reloading("upgrading");
}

/* --- the new side: taking over from the process that started us --- */

/* This process serves: its pid file, the log, and the process it took over from (which tells the
 * service manager) or the service manager itself. */
static void announce_serving(void)
{
    update_metrics();
    if (P.pred_fd >= 0 && P.pred_go && strcmp(hold(), "serving") == 0) {
        /* Test-only: serving, but the old process is never told, so a test can kill either. */
        log_warn("msg=upgrade_holding test_hook=" ENV_TEST_HOLD "=serving");
        return;
    }
    pidfile_write();
    const struct config *cfg = P.cfg;
    log_info("msg=ready version=%s workers=%d node=\"%s\" data=\"%s\" tls=%s "
             "generation=%llu",
             PARLEY_VERSION, cfg->workers, cfg->node, cfg->data_dir,
             !cfg->tls_cert        ? "off"
             : cfg->has_telnet_tls ? "http,telnet_tls"
                                   : "http",
             (unsigned long long)P.counts.generation);
    if (P.pred_fd >= 0 && P.pred_go) {
        char payload[48];
        snprintf(payload, sizeof payload, "pid=%d", (int)getpid());
        if (upgrade_chan_send(P.pred_fd, UPGRADE_MSG_SERVING, payload, NULL, 0) < 0)
            log_warn("msg=upgrade_serving_unsent reason=\"the previous process is gone\"");
        /* The old process tells the service manager that we are its main process now. */
        return;
    }
    notify_ready(getpid(), "serving");
}

/* Starts the server, accepting now or (connections to adopt first) later. Returns 0, or -1 when
 * it could not start (the process exits with status 2). */
static int serve(bool accepting)
{
    if (server_serve(P.server, accepting) < 0) {
        P.exit_status = 2;
        loop_stop(P.loop);
        return -1;
    }
    return 0;
}

static void start_serving(void)
{
    if (serve(true) == 0)
        announce_serving();
}

/* Every connection handed over live (or across a restart) is adopted, or refused: they go on,
 * and new ones are accepted. */
static void live_adopted(uint64_t adopted, uint64_t refused, uint64_t drained)
{
    P.counts.handed_over += adopted;
    P.counts.drained += drained; /* (those refused here are among them) */
    server_set_accepting(P.server, true);
    log_info("msg=handover_adopted connections=%llu refused=%llu drained=%llu",
             (unsigned long long)adopted, (unsigned long long)refused, (unsigned long long)drained);
    announce_serving();
}

static void pred_gone(void)
{
    loop_watch_del(P.loop, P.pred_fd);
    close(P.pred_fd);
    P.pred_fd = -1;
}

static void on_pred_channel(struct loop_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    static struct upgrade_msg m;
    for (;;) {
        int rc = upgrade_chan_recv(P.pred_fd, &m);
        if (rc == -EAGAIN)
            return;
        if (rc <= 0) {
            for (size_t i = 0; i < m.n_fds; i++)
                close(m.fds[i]);
            pred_gone();
            if (live_adopting()) {
                /* It died during the handover: what came is adopted and goes on here. */
                log_info("msg=predecessor_gone reason=\"it has exited during the handover\"");
                live_adopt_eof();
                return;
            }
            if (P.pred_go) {
                log_info("msg=predecessor_gone reason=\"it has exited\"");
                return;
            }
            /* It died before GO: it can no longer write, so the store is safely ours. */
            log_warn("msg=upgrade_took_over reason=\"the previous process is gone before "
                     "handing over; nobody else writes\"");
            start_serving();
            return;
        }
        bool ok = true;
        if (m.type == UPGRADE_MSG_GO && !P.pred_go) {
            P.pred_go = true;
            char mode[16] = "drain";
            upgrade_chan_field((char *)m.payload, "mode", mode, sizeof mode);
            bool live = strcmp(mode, "live") == 0;
            log_info("msg=upgrade_go_received mode=%s", live ? "live" : "drain");
            if (!live)
                start_serving();
            else if (serve(false) == 0)
                live_adopt_begin(P.server, P.pred_fd, P.cfg->upgrade_timeout_ms);
        } else if (P.pred_go &&
                   (m.type == UPGRADE_MSG_CONN_DATA || m.type == UPGRADE_MSG_CONN_BATCH ||
                    m.type == UPGRADE_MSG_CONN_DONE)) {
            ok = live_adopt_msg(&m) == 0;
        } else {
            ok = false;
        }
        for (size_t i = 0; i < m.n_fds; i++)
            close(m.fds[i]); /* what no step took */
        if (!ok) {
            log_error("msg=upgrade_protocol_error type=%u action=exiting", m.type);
            P.exit_status = 2;
            loop_stop(P.loop);
            return;
        }
        if (P.pred_fd < 0 || P.exit_status != 0)
            return;
    }
}

/* --- signals --- */

static void reload_tls(void)
{
    if (!tls_enabled()) {
        log_info("msg=sighup_ignored reason=\"no TLS certificate to reload\"");
        return;
    }
    char err[512], q[600];
    if (tls_reload(err, sizeof err) < 0) {
        log_error(
            "msg=tls_reload_failed error=%s reason=\"still serving the previous certificate\"",
            log_quote(q, sizeof q, err, strlen(err)));
        return;
    }
    log_info("msg=tls_reloaded");
}

static void stop_now(int sig)
{
    P.stopping = true;
    log_info("msg=shutting_down signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (P.state == UP_SPAWNED || P.state == UP_QUIESCING || P.state == UP_FENCING ||
        P.state == UP_HOLDING)
        upgrade_abort("this process was asked to stop");
    if (P.state == UP_GO_SENT || P.state == UP_DRAINING) {
        /* The new process has the store and serves on: not a stop of the service. Whatever is
         * left here is told to come back (1012), at once. */
        P.drain_until = clock_ms() + 4000;
        finish_drain();
        return;
    }
    /* A new process stopped before it was handed the store was never the service's main one. */
    if (P.pred_fd < 0 || P.pred_go)
        notify_stopping();
    loop_stop(P.loop);
}

static void on_signal(struct loop_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    struct signalfd_siginfo si;
    while (read(P.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGHUP:
            reload_tls();
            break;
        case SIGUSR2:
            upgrade_start();
            break;
        case SIGINT:
        case SIGTERM:
            if (!P.stopping)
                stop_now((int)si.ssi_signo);
            return;
        }
    }
}

/* --- start --- */

/* Where an upgrade's new binary is: as told, or where ours was at start (a file installed at
 * that path since is what runs). */
static void find_binary(void)
{
    if (P.cfg->upgrade_binary) {
        snprintf(P.binary, sizeof P.binary, "%s", P.cfg->upgrade_binary);
        return;
    }
    if (!realpath("/proc/self/exe", P.binary))
        snprintf(P.binary, sizeof P.binary, "%s", P.argv[0]);
    /* A binary replaced while we run shows as "... (deleted)": its path is still the path. */
    size_t n = strlen(P.binary);
    static const char deleted[] = " (deleted)";
    if (n > sizeof deleted - 1 && strcmp(P.binary + n - (sizeof deleted - 1), deleted) == 0)
        P.binary[n - (sizeof deleted - 1)] = '\0';
}

/* Our end of the channel to the process that started us, if it did. */
static int take_pred_channel(void)
{
    long fd = (long)env_u64(ENV_CHAN, (uint64_t)-1);
    unsetenv(ENV_CHAN);
    if (fd < 0 || fd > INT_MAX)
        return -1;
    struct stat st;
    if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        log_warn("msg=upgrade_channel_invalid fd=%ld reason=\"not a socket: starting afresh\"", fd);
        return -1;
    }
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) | O_NONBLOCK);
    return (int)fd;
}

static int setup_loop(void)
{
    P.loop = loop_new();
    if (!P.loop || mailbox_init(&P.mbox) < 0)
        return -1;
    static const struct live_hooks hooks = {
        .quiet = live_quiet,
        .moved = live_moved,
        .channel_failed = live_channel_failed,
        .adopted = live_adopted,
    };
    live_init(P.loop, &P.mbox, &hooks);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    P.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (P.sigfd < 0)
        return -1;
    P.sig_watch.cb = on_signal;
    P.mbox_watch.cb = on_mbox;
    timer_init(&P.deadline, on_deadline);
    timer_init(&P.drain_poll, drain_poll);
    if (loop_watch_add(P.loop, P.sigfd, EPOLLIN, &P.sig_watch) < 0 ||
        loop_watch_add(P.loop, mailbox_fd(&P.mbox), EPOLLIN, &P.mbox_watch) < 0)
        return -1;
    return 0;
}

static void teardown_loop(void)
{
    if (P.loop) {
        if (P.pred_fd >= 0)
            pred_gone();
        close_child_channel();
        loop_free(P.loop);
    }
    if (P.sigfd >= 0)
        close(P.sigfd);
    struct mail *m;
    if (P.mbox.efd >= 0) {
        while ((m = mailbox_take(&P.mbox)))
            free(m);
        mailbox_destroy(&P.mbox);
    }
    if (P.self_fd >= 0)
        close(P.self_fd);
}

int upgrade_run(const struct config *cfg, int argc, char **argv)
{
    (void)argc;
    memset(&P, 0, sizeof P);
    P.cfg = cfg;
    P.argv = argv;
    P.sigfd = P.child_fd = P.child_pidfd = P.pred_fd = P.self_fd = -1;
    P.mbox.efd = -1;
    P.counts.generation = env_u64(ENV_GENERATION, 1);
    const char *counts = getenv(ENV_COUNTS);
    unsigned long long done = 0, failed = 0, handed = 0, drained = 0;
    /* Two numbers from a binary before live upgrades, four after. */
    if (counts && sscanf(counts, "%llu,%llu,%llu,%llu", &done, &failed, &handed, &drained) >= 2) {
        P.counts.done = done;
        P.counts.failed = failed;
        P.counts.handed_over = handed;
        P.counts.drained = drained;
    }
    long adopt_fd = (long)env_u64(ENV_ADOPT, (uint64_t)-1);
    unsetenv(ENV_GENERATION);
    unsetenv(ENV_COUNTS);
    unsetenv(ENV_ADOPT);
    P.test_hold = getenv(ENV_TEST_HOLD);
    if (P.test_hold)
        log_warn("msg=test_hook " ENV_TEST_HOLD "=%s reason=\"for tests only: upgrades are held "
                 "at that step\"",
                 P.test_hold);
    snprintf(P.pid_path, sizeof P.pid_path, "%s/%s", cfg->data_dir, PID_FILE);
    find_binary();
    P.self_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    P.pred_fd = take_pred_channel();
    update_metrics();

    int status = 2;
    char err[512];
    struct listen_fds inherited;
    if (setup_loop() < 0) {
        log_error("msg=start_failed error=\"main loop: %s\"", strerror(errno));
        goto out;
    }
    int n = listen_fds_take(&inherited, err, sizeof err);
    if (n < 0) {
        char q[600];
        log_error("msg=listen_fds_failed error=%s", log_quote(q, sizeof q, err, strlen(err)));
        goto out;
    }
    P.server = server_prepare(cfg, n > 0 ? &inherited : NULL, P.pred_fd >= 0);
    listen_fds_free(&inherited);
    if (!P.server)
        goto out;
    P.exit_status = 0;
    if (P.pred_fd >= 0) {
        P.pred_watch.cb = on_pred_channel;
        loop_watch_add(P.loop, P.pred_fd, EPOLLIN, &P.pred_watch);
        if (strcmp(hold(), "ready") == 0) {
            log_warn("msg=upgrade_holding test_hook=" ENV_TEST_HOLD "=ready");
        } else {
            char payload[96];
            snprintf(payload, sizeof payload, "pid=%d version=%s chan=%d records=%d-%d",
                     (int)getpid(), PARLEY_VERSION, UPGRADE_CHAN_VERSION, HANDOVER_REC_MIN_VERSION,
                     HANDOVER_REC_VERSION);
            if (upgrade_chan_send(P.pred_fd, UPGRADE_MSG_READY, payload, NULL, 0) < 0)
                log_warn("msg=upgrade_ready_unsent reason=\"the previous process is gone\"");
            else
                log_info("msg=upgrade_ready_sent generation=%llu",
                         (unsigned long long)P.counts.generation);
        }
    } else if (adopt_fd >= 0 && adopt_fd <= INT_MAX) {
        /* A restart after a failed upgrade, with the connections that went on across it. */
        if (serve(false) == 0 && live_adopt_memfd(P.server, (int)adopt_fd) < 0)
            live_adopted(0, 0, 0);
    } else {
        start_serving();
    }
    if (P.exit_status == 0)
        loop_run(P.loop);
    status = P.exit_status;
    /* A second SIGINT or SIGTERM during the goodbyes ends the process at once. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    if (P.server) {
        /* A shutdown (or a start that failed after the store was ours). */
        server_stop(P.server, 4000, CONN_GOODBYE_SHUTDOWN, false, true);
        P.server = NULL;
        log_info("msg=stopped");
    }
    if (status == 0 || P.pred_go)
        pidfile_remove();
out:
    teardown_loop();
    return status;
}

/* --- `parley upgrade --data DIR` --- */

int upgrade_command(int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("Usage: parley upgrade --data DIR\n"
                   "Asks the parley serving DIR (its pid is in DIR/" PID_FILE
                   ") to start a new binary that\n"
                   "takes over: the same as sending it SIGUSR2. Its log says how it went.\n");
            return 0;
        } else {
            fprintf(stderr,
                    "parley upgrade: unexpected argument '%s'\nUsage: parley upgrade "
                    "--data DIR\n",
                    argv[i]);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "parley upgrade: --data DIR is required\nUsage: parley upgrade --data "
                        "DIR\n");
        return 2;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, PID_FILE);
    pid_t pid = pidfile_read(path);
    if (pid <= 0) {
        fprintf(stderr, "parley upgrade: no running parley serves %s (%s is missing or empty)\n",
                dir, path);
        return 1;
    }
    if (kill(pid, SIGUSR2) != 0) {
        fprintf(stderr, "parley upgrade: cannot signal pid %d named by %s: %s\n", (int)pid, path,
                strerror(errno));
        return 1;
    }
    printf("parley upgrade: asked pid %d to upgrade (SIGUSR2); its log says how it went "
           "(msg=upgrade_handed_over or msg=upgrade_failed)\n",
           (int)pid);
    return 0;
}
