/*
 * main: the load generator's coordinator. It parses the options, raises the
 * file limit, forks the worker processes (run.c) that hold the clients,
 * moves the run through its phases (board.h) while it watches the server's
 * CPU time and memory in /proc, and ends with a summary for people and one
 * machine-readable line: "RESULT {json}".
 *
 * DESIGN: the coordinator holds no connection; it sleeps a millisecond at a
 * time between looks at the board, so its polling never delays a message.
 * Every wait has a bound (--timeout, --drain-timeout), so a run always ends
 * by itself; on the way out every worker is waited for, and killed if it does
 * not finish.
 */
#include "board.h"
#include "options.h"
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct server_sample {
    bool ok;
    double cpu_s;     /* utime + stime */
    uint64_t rss_kib; /* VmRSS */
};

static struct options opt;
static struct board *B;
static pid_t *kids;
static bool timed_out;
static bool worker_died;
static const char *timed_out_in = "";
static uint64_t run_deadline;

static struct server_sample sample_server(void)
{
    struct server_sample s = {0};
    if (!opt.server_pid)
        return s;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)opt.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return s;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* After ") ": state, then fields 4..13, then utime (14) and stime (15). */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return s;
    s.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/status", (int)opt.server_pid);
    f = fopen(path, "r");
    if (!f)
        return s;
    while (fgets(buf, sizeof buf, f)) {
        if (sscanf(buf, "VmRSS: %llu kB", &ut) == 1)
            s.rss_kib = ut;
    }
    fclose(f);
    s.ok = true;
    return s;
}

static uint64_t sum_field(size_t off)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < B->workers; i++)
        t += atomic_load((atomic_uint_fast64_t *)((char *)&B->w[i] + off));
    return t;
}
#define SUM(field) sum_field(offsetof(struct board_worker, field))

static bool all_flag(size_t off)
{
    for (uint32_t i = 0; i < B->workers; i++)
        if (!atomic_load((atomic_int *)((char *)&B->w[i] + off)))
            return false;
    return true;
}
#define ALL(field) all_flag(offsetof(struct board_worker, field))

/* A worker that exited before PH_END has failed the run. */
static bool workers_alive(void)
{
    for (uint32_t i = 0; i < opt.procs; i++) {
        if (kids[i] <= 0)
            continue;
        int st;
        pid_t r = waitpid(kids[i], &st, WNOHANG);
        if (r == kids[i]) {
            kids[i] = -1;
            if (atomic_load(&B->w[i].finished) && WIFEXITED(st) && WEXITSTATUS(st) == 0)
                continue; /* done with its results, as it should be at the end */
            fprintf(stderr, "loadgen: worker %u ended early (status %d)\n", i, st);
            worker_died = true;
            return false;
        }
    }
    return true;
}

static void nap(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/*
 * Waits until done() holds, `bound_s` passes, or a worker dies. Reaching the
 * bound is a fault named `what` unless what is NULL (a duration that merely
 * ends the traffic); `capped`: the bound also ends at --timeout. Returns true
 * when done() held.
 */
static bool wait_until(bool (*done)(void), double bound_s, const char *what, bool capped)
{
    uint64_t deadline = board_now() + (uint64_t)(bound_s * 1e9);
    if (capped && deadline > run_deadline)
        deadline = run_deadline;
    for (;;) {
        if (done())
            return true;
        if (worker_died || !workers_alive())
            return false;
        if (board_now() >= deadline) {
            if (what && !timed_out) {
                timed_out = true;
                timed_out_in = what;
            }
            return false;
        }
        nap();
    }
}

static bool setup_done(void)
{
    return SUM(ready) + SUM(failed) >= opt.clients;
}

/* Set-up is over for the server too once no client has heard anything for this long. */
#define SETTLE_NS 300000000ull

static bool settled(void)
{
    uint64_t last = 0;
    for (uint32_t i = 0; i < B->workers; i++) {
        uint64_t t = atomic_load(&B->w[i].last_rx);
        if (t > last)
            last = t;
    }
    return board_now() - last >= SETTLE_NS;
}

static bool broadcast_done(void)
{
    return atomic_load(&B->completed) >= opt.messages;
}

static bool rounds_done(void)
{
    return atomic_load(&B->rounds_done) >= opt.rounds;
}

static bool storm_done(void)
{
    return SUM(back) + SUM(failed) >= opt.clients;
}

static bool drained(void)
{
    return ALL(drained);
}

static bool checked(void)
{
    return ALL(checked);
}

static bool finished(void)
{
    return ALL(finished);
}

/* Holds for `secs` unless a worker dies; returns false if one did. */
static bool hold(double secs)
{
    uint64_t until = board_now() + (uint64_t)(secs * 1e9);
    while (board_now() < until) {
        if (worker_died || !workers_alive())
            return false;
        nap();
    }
    return true;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void print_json_hist(const char *name, const struct hist *h)
{
    printf(",\"%s\":{\"count\":%llu,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}", name,
           (unsigned long long)h->count, ms(hist_percentile(h, 50)), ms(hist_percentile(h, 99)),
           ms(h->count ? h->max : 0));
}

/* Writes s as a JSON string body (the problem text is ours, but may quote the server). */
static void print_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    int pr = options_parse(&opt, argc, argv);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    uint64_t per_proc = (opt.clients + opt.procs - 1) / opt.procs;
    if (per_proc + 100 > rl.rlim_cur) {
        fprintf(stderr,
                "loadgen: %llu connections per process do not fit the file limit of %llu: use "
                "--procs %llu or more\n",
                (unsigned long long)per_proc, (unsigned long long)rl.rlim_cur,
                (unsigned long long)((opt.clients + rl.rlim_cur - 101) / (rl.rlim_cur - 100)));
        return 2;
    }
    if (opt.server_pid && !sample_server().ok) {
        fprintf(stderr, "loadgen: cannot read /proc/%d (--server-pid)\n", (int)opt.server_pid);
        return 2;
    }

    B = board_create(opt.procs, opt.clients, opt.scenario == SC_BROADCAST ? opt.messages : 0,
                     opt.rooms);
    if (!B)
        return 1;
    kids = calloc(opt.procs, sizeof *kids);
    if (!kids)
        return 1;
    signal(SIGPIPE, SIG_IGN);

    struct server_sample s_before = sample_server();
    uint64_t t0 = board_now();
    run_deadline = t0 + (uint64_t)(opt.timeout * 1e9);
    for (uint32_t i = 0; i < opt.procs; i++) {
        uint32_t first = (uint32_t)((uint64_t)opt.clients * i / opt.procs);
        uint32_t last = (uint32_t)((uint64_t)opt.clients * (i + 1) / opt.procs);
        pid_t pid = fork();
        if (pid < 0) {
            perror("loadgen: fork");
            return 1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the coordinator */
            _exit(run_worker(&opt, B, i, first, last - first));
        }
        kids[i] = pid;
    }

    /* Set-up. */
    wait_until(setup_done, opt.timeout, "set-up", true);
    uint64_t t_setup = board_now();
    bool setup_ok = !timed_out && SUM(failed) == 0;
    /* The joins' presence events may still be on their way: the memory and CPU figures and the
     * traffic start once the server has sent them all, not while its queues hold them. */
    uint64_t t_settled = t_setup;
    if (setup_ok && wait_until(settled, opt.drain_timeout, NULL, true))
        t_settled = board_now() - SETTLE_NS;
    struct server_sample s_setup = sample_server();

    struct server_sample s_t0 = {0}, s_t1 = {0}, s_storm0 = {0}, s_storm1 = {0};
    uint64_t t_traffic = 0, t_end = 0, t_storm = 0, t_back = 0;
    if (setup_ok && opt.scenario == SC_IDLE) {
        board_set_phase(B, PH_HOLD);
        hold(opt.duration);
    } else if (setup_ok) {
        s_t0 = sample_server();
        t_traffic = board_now();
        if (opt.scenario == SC_ALL) {
            B->round_start = t_traffic;
            atomic_store(&B->round, 1);
        }
        board_set_phase(B, PH_TRAFFIC);
        switch (opt.scenario) {
        case SC_BROADCAST:
            wait_until(broadcast_done, opt.duration, NULL, true);
            break;
        case SC_ALL:
            wait_until(rounds_done, opt.duration, NULL, true);
            break;
        case SC_ROOMS:
        case SC_STORM:
            hold(opt.duration);
            break;
        case SC_IDLE:
            break;
        }
        if (opt.scenario == SC_STORM) {
            if (opt.storm_lag > 0) {
                board_set_phase(B, PH_LAG);
                if (opt.storm_restart)
                    printf("STORM-LAG\n"); /* the cue to restart the server */
                hold(opt.storm_lag);
            }
            s_storm0 = sample_server();
            t_storm = board_now();
            board_set_phase(B, PH_STORM);
            wait_until(storm_done, opt.drain_timeout, "the storm (clients not back)", true);
            t_back = board_now();
            s_storm1 = sample_server();
        }
        board_set_phase(B, PH_DRAIN);
        if (wait_until(drained, opt.drain_timeout, "the drain (acks missing)", true)) {
            board_set_phase(B, PH_CHECK);
            wait_until(checked, opt.drain_timeout, "the last deliveries", true);
        }
        t_end = board_now();
        s_t1 = sample_server();
    }
    struct server_sample s_after = sample_server();
    board_set_phase(B, PH_END);
    bool results = wait_until(finished, 10, "the workers' results", false);
    for (uint32_t i = 0; i < opt.procs; i++) {
        if (kids[i] <= 0)
            continue;
        if (!results)
            kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }

    /* The generator's own CPU time, so a reader can see whether it, not the server, was the limit.
     */
    struct rusage ru_kids, ru_self;
    getrusage(RUSAGE_CHILDREN, &ru_kids);
    getrusage(RUSAGE_SELF, &ru_self);
    double gen_user = (double)(ru_kids.ru_utime.tv_sec + ru_self.ru_utime.tv_sec) +
                      (double)(ru_kids.ru_utime.tv_usec + ru_self.ru_utime.tv_usec) / 1e6;
    double gen_sys = (double)(ru_kids.ru_stime.tv_sec + ru_self.ru_stime.tv_sec) +
                     (double)(ru_kids.ru_stime.tv_usec + ru_self.ru_stime.tv_usec) / 1e6;
    double gen_cpu = gen_user + gen_sys;
    double gen_wall = (double)(board_now() - t0) / 1e9;

    /* Merge. */
    struct hist *lat = malloc(sizeof *lat), *fan = malloc(sizeof *fan), *set = malloc(sizeof *set);
    hist_init(lat);
    hist_init(fan);
    hist_init(set);
    struct faults f = {0};
    uint64_t sent = 0, resent = 0, acked = 0, deliveries = 0, replayed = 0, replay_min = UINT64_MAX,
             retries = 0;
    const char *problem = "";
    for (uint32_t i = 0; i < B->workers; i++) {
        struct board_worker *w = &B->w[i];
        hist_merge(lat, &w->latency);
        hist_merge(fan, &w->fanout);
        hist_merge(set, &w->setup);
        sent += w->sent;
        resent += w->resent;
        acked += w->acked;
        deliveries += w->deliveries;
        replayed += w->replayed;
        retries += w->retries;
        if (w->replay_min < replay_min)
            replay_min = w->replay_min;
        f.lost += w->faults.lost;
        f.duplicated += w->faults.duplicated;
        f.reordered += w->faults.reordered;
        f.unexpected_close += w->faults.unexpected_close;
        f.connect_failed += w->faults.connect_failed;
        f.server_errors += w->faults.server_errors;
        f.bad_frames += w->faults.bad_frames;
        f.wrong_room += w->faults.wrong_room;
        if (!problem[0] && w->problem[0])
            problem = w->problem;
    }
    uint64_t ready = SUM(ready);
    bool ok = results && !timed_out && !worker_died && f.lost == 0 && f.duplicated == 0 &&
              f.reordered == 0 && f.unexpected_close == 0 && f.connect_failed == 0 &&
              f.server_errors == 0 && f.bad_frames == 0 && f.wrong_room == 0 &&
              ready == opt.clients;
    if (!problem[0] && worker_died)
        problem = "a worker process died";
    if (!problem[0] && timed_out)
        problem = "timed out";

    double setup_s = (double)(t_setup - t0) / 1e9;
    double settle_s = t_settled > t_setup ? (double)(t_settled - t0) / 1e9 : setup_s;
    double traffic_s = t_end > t_traffic ? (double)(t_end - t_traffic) / 1e9 : 0;
    double dps = traffic_s > 0 ? (double)deliveries / traffic_s : 0;
    double cpu_traffic = s_t1.ok && s_t0.ok ? s_t1.cpu_s - s_t0.cpu_s : 0;
    double cpu_storm = s_storm1.ok && s_storm0.ok ? s_storm1.cpu_s - s_storm0.cpu_s : 0;
    if (replay_min == UINT64_MAX)
        replay_min = 0;
    double cpu_setup = s_setup.ok && s_before.ok ? s_setup.cpu_s - s_before.cpu_s : 0;
    uint64_t rss_end = opt.scenario == SC_IDLE ? s_after.rss_kib : s_setup.rss_kib;
    double rss_per = s_before.ok && opt.clients
                         ? ((double)rss_end - (double)s_before.rss_kib) * 1024.0 / opt.clients
                         : 0;

    if (!opt.quiet) {
        printf("loadgen: %s, %s, %u clients in %u process%s, %u room%s, split %s\n",
               options_protocol_name(opt.protocol), options_scenario_name(opt.scenario),
               opt.clients, opt.procs, opt.procs == 1 ? "" : "es", opt.rooms,
               opt.rooms == 1 ? "" : "s", opt.split == SPLIT_RANDOM ? "random" : "none");
        printf("  set-up: %llu of %u ready in %.2f s (%.0f per s); per client p50 %.1f ms, p99 "
               "%.1f ms\n",
               (unsigned long long)ready, opt.clients, setup_s,
               setup_s > 0 ? (double)ready / setup_s : 0, ms(hist_percentile(set, 50)),
               ms(hist_percentile(set, 99)));
        if (settle_s > setup_s)
            printf("  settled: the server's last set-up traffic (presence) came %.2f s after the "
                   "start\n",
                   settle_s);
        if (s_before.ok)
            printf("  server: RSS %llu KiB before, %llu KiB %s: %.0f bytes per client; CPU %.2f "
                   "s during set-up\n",
                   (unsigned long long)s_before.rss_kib, (unsigned long long)rss_end,
                   opt.scenario == SC_IDLE ? "after the hold" : "once settled", rss_per, cpu_setup);
        if (opt.scenario != SC_IDLE) {
            printf("  traffic: %llu sent (%llu resent), %llu deliveries (%llu replayed) in %.2f "
                   "s: %.0f deliveries/s\n",
                   (unsigned long long)sent, (unsigned long long)resent,
                   (unsigned long long)deliveries, (unsigned long long)replayed, traffic_s, dps);
            printf("  latency send -> receipt: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                   ms(hist_percentile(lat, 50)), ms(hist_percentile(lat, 99)),
                   ms(lat->count ? lat->max : 0));
        }
        if (opt.scenario == SC_BROADCAST)
            printf("  fan-out completion (send -> last receiver), %llu messages: p50 %.2f ms, "
                   "p99 %.2f ms, max %.2f ms\n",
                   (unsigned long long)fan->count, ms(hist_percentile(fan, 50)),
                   ms(hist_percentile(fan, 99)), ms(fan->count ? fan->max : 0));
        if (opt.scenario == SC_ALL)
            printf("  rounds: %llu, round time p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                   (unsigned long long)B->rounds.count, ms(hist_percentile(&B->rounds, 50)),
                   ms(hist_percentile(&B->rounds, 99)), ms(B->rounds.count ? B->rounds.max : 0));
        if (opt.scenario == SC_STORM && !opt.storm_restart)
            printf("  storm: %llu clients back and replayed %.2f s after all dropped (server CPU "
                   "%.2f s); each had at least %llu message%s replayed\n",
                   (unsigned long long)SUM(back), (double)(t_back - t_storm) / 1e9, cpu_storm,
                   (unsigned long long)replay_min, replay_min == 1 ? "" : "s");
        if (opt.scenario == SC_STORM && opt.storm_restart) /* --server-pid is the old process */
            printf("  storm: %llu clients back and replayed %.2f s after all dropped; each had at "
                   "least %llu message%s replayed\n",
                   (unsigned long long)SUM(back), (double)(t_back - t_storm) / 1e9,
                   (unsigned long long)replay_min, replay_min == 1 ? "" : "s");
        if (opt.storm_restart)
            printf("  storm: %llu reconnects tried again while the server restarted\n",
                   (unsigned long long)retries);
        if (s_t0.ok && opt.scenario != SC_IDLE)
            printf("  server CPU during traffic: %.2f s = %.3f ms per 1000 deliveries\n",
                   cpu_traffic, deliveries ? cpu_traffic * 1e6 / (double)deliveries : 0);
        printf("  loadgen CPU: %.2f s (user %.2f, system %.2f) in %.2f s, all its processes\n",
               gen_cpu, gen_user, gen_sys, gen_wall);
        printf("  checks: %s: %llu lost, %llu duplicated, %llu out of order, %llu unexpected "
               "closes, %llu failed connections, %llu error replies, %llu unreadable, %llu in the "
               "wrong room%s%s\n",
               ok ? "exactly once, in order: OK" : "FAILED", (unsigned long long)f.lost,
               (unsigned long long)f.duplicated, (unsigned long long)f.reordered,
               (unsigned long long)f.unexpected_close, (unsigned long long)f.connect_failed,
               (unsigned long long)f.server_errors, (unsigned long long)f.bad_frames,
               (unsigned long long)f.wrong_room, timed_out ? "; timed out in " : "",
               timed_out ? timed_out_in : "");
        if (!ok && problem[0])
            printf("  first problem: %s\n", problem);
    }

    printf("RESULT {\"protocol\":\"%s\",\"scenario\":\"%s\",\"clients\":%u,\"procs\":%u,"
           "\"rooms\":%u,\"split\":\"%s\",\"ok\":%s,\"ready\":%llu,\"setup_s\":%.3f,"
           "\"settle_s\":%.3f",
           options_protocol_name(opt.protocol), options_scenario_name(opt.scenario), opt.clients,
           opt.procs, opt.rooms, opt.split == SPLIT_RANDOM ? "random" : "none",
           ok ? "true" : "false", (unsigned long long)ready, setup_s, settle_s);
    print_json_hist("client_setup_ms", set);
    printf(",\"sent\":%llu,\"resent\":%llu,\"acked\":%llu,\"deliveries\":%llu,\"replayed\":%llu,"
           "\"traffic_s\":%.3f,\"deliveries_per_s\":%.0f",
           (unsigned long long)sent, (unsigned long long)resent, (unsigned long long)acked,
           (unsigned long long)deliveries, (unsigned long long)replayed, traffic_s, dps);
    print_json_hist("latency_ms", lat);
    if (opt.scenario == SC_BROADCAST)
        print_json_hist("fanout_ms", fan);
    if (opt.scenario == SC_ALL)
        print_json_hist("round_ms", &B->rounds);
    if (opt.scenario == SC_STORM)
        printf(",\"storm_s\":%.3f,\"server_cpu_storm_s\":%.2f,\"replay_min\":%llu,"
               "\"storm_retries\":%llu",
               (double)(t_back - t_storm) / 1e9, cpu_storm, (unsigned long long)replay_min,
               (unsigned long long)retries);
    if (s_before.ok)
        printf(",\"server_cpu_setup_s\":%.2f,\"server_cpu_traffic_s\":%.2f,"
               "\"server_cpu_ms_per_1000\":%.4f,\"server_rss_kib\":{\"before\":%llu,"
               "\"after_setup\":%llu,\"after\":%llu},\"rss_bytes_per_client\":%.0f",
               cpu_setup, cpu_traffic, deliveries ? cpu_traffic * 1e6 / (double)deliveries : 0,
               (unsigned long long)s_before.rss_kib, (unsigned long long)s_setup.rss_kib,
               (unsigned long long)s_after.rss_kib, rss_per);
    printf(",\"loadgen_cpu_s\":%.2f,\"loadgen_user_s\":%.2f,\"loadgen_sys_s\":%.2f,"
           "\"loadgen_wall_s\":%.2f",
           gen_cpu, gen_user, gen_sys, gen_wall);
    printf(",\"faults\":{\"lost\":%llu,\"duplicated\":%llu,\"reordered\":%llu,"
           "\"unexpected_close\":%llu,\"connect_failed\":%llu,\"server_errors\":%llu,"
           "\"bad_frames\":%llu,\"wrong_room\":%llu,\"timed_out\":%s}",
           (unsigned long long)f.lost, (unsigned long long)f.duplicated,
           (unsigned long long)f.reordered, (unsigned long long)f.unexpected_close,
           (unsigned long long)f.connect_failed, (unsigned long long)f.server_errors,
           (unsigned long long)f.bad_frames, (unsigned long long)f.wrong_room,
           timed_out ? "true" : "false");
    printf(",\"problem\":");
    print_json_str(problem);
    printf("}\n");
    free(lat);
    free(fan);
    free(set);
    return ok ? 0 : 1;
}
