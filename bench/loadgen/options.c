/* options: the load generator's command line. */
#include "options.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: loadgen --scenario idle|broadcast|all|rooms|storm [options]\n"
    "  A WebSocket load generator for parley (and, for peers, a plain relay). Loopback only.\n"
    "  --url ws://127.0.0.1:PORT/PATH  server (default ws://127.0.0.1:9999/ws; 127.0.0.0/8 only)\n"
    "  --protocol parley|relay   parley's chat protocol (default), or a relay that sends every\n"
    "                            text to every connection (idle, broadcast and all only)\n"
    "  --relay-lines             relay: a text may carry several messages joined by '\\n', as\n"
    "                            Go's gorilla/websocket chat example writes what is queued;\n"
    "                            each line is checked as one message (without it, a text\n"
    "                            holding a newline is a fault)\n"
    "  --scenario S              idle: connect, log in, join, hold; broadcast: one sender, M\n"
    "                            messages, K in flight; all: everyone sends each round; rooms:\n"
    "                            N clients over K rooms all talking; storm: rooms, then everyone\n"
    "                            reconnects at once with login by token and join with since\n"
    "  -n, --clients N           connections (default 100)\n"
    "  --rooms K                 rooms, client i in room i %% K (default 1; rooms and storm:\n"
    "                            N/20)\n"
    "  --messages M              broadcast: messages to send (default 1000)\n"
    "  --inflight K              broadcast: messages fanning out at once (default 1)\n"
    "  --rounds R                all: rounds (default 100)\n"
    "  --send-rate R             rooms, storm: messages per second, all clients together\n"
    "                            (default N/10)\n"
    "  --duration S              idle: seconds to hold; storm: seconds of traffic before the\n"
    "                            storm; others: the traffic's time bound (defaults 1, 5, 60,\n"
    "                            rooms 10)\n"
    "  --storm-lag S             storm: for S seconds before the drop the clients read nothing\n"
    "                            while the sends go on, so each has what was sent meanwhile to\n"
    "                            replay, and acks to miss (default 0)\n"
    "  --storm-restart           storm: whoever runs the generator restarts the server (same\n"
    "                            address) when it prints STORM-LAG; a refused connect or a\n"
    "                            connection lost before its client is back is tried again after\n"
    "                            20 ms, and counted as a retry, not a fault (needs --storm-lag)\n"
    "  --connect-rate R          new connections per second (default 0: as fast as the batch\n"
    "                            allows)\n"
    "  --batch B                 connections being set up at once (default 1000)\n"
    "  --procs P                 worker processes sharing the clients (default 1; each process\n"
    "                            can hold about its file limit, 20,000 here, less 100)\n"
    "  --source A[-B]            spread connections over local addresses A..B (e.g.\n"
    "                            127.0.0.2-127.0.0.50)\n"
    "  --server-pid PID          read the server's CPU time and memory from /proc/PID\n"
    "  --split none|random       random: each message in 1-3 frames and 1-4 writes cut at\n"
    "                            random points (default none)\n"
    "  --text-size BYTES         pad each text to this size (default 0: the stamp alone)\n"
    "  --timeout S               the whole run's bound (default 600)\n"
    "  --drain-timeout S         bound on the wait for acks, the storm and the last deliveries\n"
    "                            (default 30)\n"
    "  --seed N                  random seed (default 1)\n"
    "  --name-prefix P, --room-prefix P  user and room names (default lg<pid>_ and lg<pid>r)\n"
    "  --quiet                   only the RESULT line\n"
    "Exit status: 0 when every message arrived exactly once and in order and no connection\n"
    "failed or closed; 1 otherwise (the summary says which); 2 for a bad command line.\n";

const char *options_scenario_name(enum scenario s)
{
    static const char *const names[] = {"idle", "broadcast", "all", "rooms", "storm"};
    return names[s];
}

const char *options_protocol_name(enum protocol p)
{
    return p == PR_PARLEY ? "parley" : "relay";
}

static int bad(const char *fmt, const char *what)
{
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(loadgen --help lists the options)\n");
    return -1;
}

static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || v < min || v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_secs(const char *s, double min, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= min) || v > 1e7)
        return false;
    *out = v;
    return true;
}

static bool loopback(uint32_t host_order)
{
    return (host_order >> 24) == 127;
}

/* "ws://HOST:PORT/PATH" with HOST an IPv4 loopback address or localhost. */
static bool parse_url(struct options *o, const char *url)
{
    if (strncmp(url, "ws://", 5) != 0)
        return false;
    const char *h = url + 5;
    const char *colon = strchr(h, ':');
    const char *slash = strchr(h, '/');
    if (!colon || (slash && slash < colon))
        return false;
    char host[24]; /* an IPv4 address or localhost */
    size_t hl = (size_t)(colon - h);
    if (hl == 0 || hl >= sizeof host)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1 || !loopback(ntohl(a.s_addr)))
        return false;
    char portbuf[8];
    size_t pl = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
    if (pl == 0 || pl >= sizeof portbuf)
        return false;
    memcpy(portbuf, colon + 1, pl);
    portbuf[pl] = '\0';
    uint32_t port;
    if (!parse_u32(portbuf, 1, 65535, &port))
        return false;
    const char *path = slash ? slash : "/";
    if (strlen(path) >= sizeof o->path || strpbrk(path, " \r\n"))
        return false;
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->host_header, sizeof o->host_header, "%s:%u", host, port);
    memset(&o->server, 0, sizeof o->server);
    o->server.sin_family = AF_INET;
    o->server.sin_addr = a;
    o->server.sin_port = htons((uint16_t)port);
    return true;
}

static bool parse_source(struct options *o, const char *s)
{
    char first[32], last[32];
    const char *dash = strchr(s, '-');
    size_t fl = dash ? (size_t)(dash - s) : strlen(s);
    if (fl == 0 || fl >= sizeof first)
        return false;
    memcpy(first, s, fl);
    first[fl] = '\0';
    snprintf(last, sizeof last, "%s", dash ? dash + 1 : first);
    struct in_addr a, b;
    if (inet_pton(AF_INET, first, &a) != 1 || inet_pton(AF_INET, last, &b) != 1)
        return false;
    o->src_first = ntohl(a.s_addr);
    o->src_last = ntohl(b.s_addr);
    return loopback(o->src_first) && loopback(o->src_last) && o->src_first <= o->src_last;
}

enum {
    OPT_URL = 256,
    OPT_PROTOCOL,
    OPT_SCENARIO,
    OPT_ROOMS,
    OPT_MESSAGES,
    OPT_INFLIGHT,
    OPT_ROUNDS,
    OPT_SEND_RATE,
    OPT_DURATION,
    OPT_STORM_LAG,
    OPT_STORM_RESTART,
    OPT_CONNECT_RATE,
    OPT_BATCH,
    OPT_PROCS,
    OPT_SOURCE,
    OPT_SERVER_PID,
    OPT_SPLIT,
    OPT_TEXT_SIZE,
    OPT_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_SEED,
    OPT_NAME_PREFIX,
    OPT_ROOM_PREFIX,
    OPT_QUIET,
    OPT_RELAY_LINES,
    OPT_HELP,
};

static const struct option longopts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"protocol", required_argument, NULL, OPT_PROTOCOL},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"clients", required_argument, NULL, 'n'},
    {"rooms", required_argument, NULL, OPT_ROOMS},
    {"messages", required_argument, NULL, OPT_MESSAGES},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"rounds", required_argument, NULL, OPT_ROUNDS},
    {"send-rate", required_argument, NULL, OPT_SEND_RATE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"storm-lag", required_argument, NULL, OPT_STORM_LAG},
    {"storm-restart", no_argument, NULL, OPT_STORM_RESTART},
    {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"procs", required_argument, NULL, OPT_PROCS},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"text-size", required_argument, NULL, OPT_TEXT_SIZE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"name-prefix", required_argument, NULL, OPT_NAME_PREFIX},
    {"room-prefix", required_argument, NULL, OPT_ROOM_PREFIX},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"relay-lines", no_argument, NULL, OPT_RELAY_LINES},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* A name or room prefix: letters, digits, '_' and '-', at most 16 characters. */
static bool prefix_ok(const char *s, bool lower)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
                  (!lower && ch >= 'A' && ch <= 'Z');
        if (!ok)
            return false;
    }
    return true;
}

int options_parse(struct options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    parse_url(o, "ws://127.0.0.1:9999/ws");
    o->protocol = PR_PARLEY;
    o->scenario = SC_IDLE;
    o->clients = 100;
    o->messages = 1000;
    o->inflight = 1;
    o->rounds = 100;
    o->send_rate = -1;
    o->duration = -1;
    o->batch = 1000;
    o->procs = 1;
    o->timeout = 600;
    o->drain_timeout = 30;
    o->seed = 1;
    snprintf(o->name_prefix, sizeof o->name_prefix, "lg%d_", (int)getpid() % 10000000);
    snprintf(o->room_prefix, sizeof o->room_prefix, "lg%dr", (int)getpid() % 10000000);
    bool rooms_set = false;
    uint32_t pid;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "n:", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_URL:
            if (!parse_url(o, optarg))
                return bad("--url must be ws://ADDR:PORT/PATH with ADDR in 127.0.0.0/8 or "
                           "localhost, not '%s'",
                           optarg);
            break;
        case OPT_PROTOCOL:
            if (strcmp(optarg, "parley") == 0)
                o->protocol = PR_PARLEY;
            else if (strcmp(optarg, "relay") == 0)
                o->protocol = PR_RELAY;
            else
                return bad("--protocol is parley or relay, not '%s'", optarg);
            break;
        case OPT_SCENARIO: {
            bool found = false;
            for (int s = SC_IDLE; s <= SC_STORM; s++) {
                if (strcmp(optarg, options_scenario_name((enum scenario)s)) == 0) {
                    o->scenario = (enum scenario)s;
                    found = true;
                }
            }
            if (!found)
                return bad("--scenario is idle, broadcast, all, rooms or storm, not '%s'", optarg);
            break;
        }
        case 'n':
            if (!parse_u32(optarg, 1, 10000000, &o->clients))
                return bad("--clients takes 1..10000000, not '%s'", optarg);
            break;
        case OPT_ROOMS:
            if (!parse_u32(optarg, 1, 10000000, &o->rooms))
                return bad("--rooms takes 1..10000000, not '%s'", optarg);
            rooms_set = true;
            break;
        case OPT_MESSAGES:
            if (!parse_u32(optarg, 1, 100000000, &o->messages))
                return bad("--messages takes 1..100000000, not '%s'", optarg);
            break;
        case OPT_INFLIGHT:
            if (!parse_u32(optarg, 1, 1000000, &o->inflight))
                return bad("--inflight takes 1..1000000, not '%s'", optarg);
            break;
        case OPT_ROUNDS:
            if (!parse_u32(optarg, 1, 100000000, &o->rounds))
                return bad("--rounds takes 1..100000000, not '%s'", optarg);
            break;
        case OPT_SEND_RATE:
            if (!parse_secs(optarg, 0, &o->send_rate))
                return bad("--send-rate takes a number of messages per second, not '%s'", optarg);
            break;
        case OPT_DURATION:
            if (!parse_secs(optarg, 0, &o->duration))
                return bad("--duration takes seconds, not '%s'", optarg);
            break;
        case OPT_STORM_LAG:
            if (!parse_secs(optarg, 0, &o->storm_lag))
                return bad("--storm-lag takes seconds, not '%s'", optarg);
            break;
        case OPT_STORM_RESTART:
            o->storm_restart = true;
            break;
        case OPT_CONNECT_RATE:
            if (!parse_secs(optarg, 0, &o->connect_rate))
                return bad("--connect-rate takes connections per second, not '%s'", optarg);
            break;
        case OPT_BATCH:
            if (!parse_u32(optarg, 1, 10000000, &o->batch))
                return bad("--batch takes 1..10000000, not '%s'", optarg);
            break;
        case OPT_PROCS:
            if (!parse_u32(optarg, 1, 256, &o->procs))
                return bad("--procs takes 1..256, not '%s'", optarg);
            break;
        case OPT_SOURCE:
            if (!parse_source(o, optarg))
                return bad("--source takes A or A-B, loopback IPv4 addresses with A <= B, not "
                           "'%s'",
                           optarg);
            break;
        case OPT_SERVER_PID:
            if (!parse_u32(optarg, 1, 0x7fffffff, &pid))
                return bad("--server-pid takes a process id, not '%s'", optarg);
            o->server_pid = (pid_t)pid;
            break;
        case OPT_SPLIT:
            if (strcmp(optarg, "none") == 0)
                o->split = SPLIT_NONE;
            else if (strcmp(optarg, "random") == 0)
                o->split = SPLIT_RANDOM;
            else
                return bad("--split is none or random, not '%s'", optarg);
            break;
        case OPT_TEXT_SIZE:
            if (!parse_u32(optarg, 0, 4000, &o->text_size))
                return bad("--text-size takes 0..4000 bytes, not '%s'", optarg);
            break;
        case OPT_TIMEOUT:
            if (!parse_secs(optarg, 1, &o->timeout))
                return bad("--timeout takes seconds (at least 1), not '%s'", optarg);
            break;
        case OPT_DRAIN_TIMEOUT:
            if (!parse_secs(optarg, 0.1, &o->drain_timeout))
                return bad("--drain-timeout takes seconds, not '%s'", optarg);
            break;
        case OPT_SEED: {
            char *end;
            o->seed = strtoull(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end)
                return bad("--seed takes a number, not '%s'", optarg);
            break;
        }
        case OPT_NAME_PREFIX:
            if (!prefix_ok(optarg, false))
                return bad("--name-prefix takes 1..16 of A-Z a-z 0-9 _ -, not '%s'", optarg);
            snprintf(o->name_prefix, sizeof o->name_prefix, "%s", optarg);
            break;
        case OPT_ROOM_PREFIX:
            if (!prefix_ok(optarg, true))
                return bad("--room-prefix takes 1..16 of a-z 0-9 _ -, not '%s'", optarg);
            snprintf(o->room_prefix, sizeof o->room_prefix, "%s", optarg);
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_RELAY_LINES:
            o->relay_lines = true;
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            return 1;
        default:
            return bad("%s", "unknown option");
        }
    }
    if (optind < argc)
        return bad("unexpected argument '%s'", argv[optind]);
    if (o->protocol == PR_RELAY && (o->scenario == SC_ROOMS || o->scenario == SC_STORM))
        return bad("the relay has no rooms, no acks and no replay: scenario %s is parley's only",
                   options_scenario_name(o->scenario));
    if (o->relay_lines && o->protocol != PR_RELAY)
        return bad("%s", "--relay-lines is for --protocol relay");
    if (o->protocol == PR_RELAY && rooms_set && o->rooms != 1)
        return bad("%s", "the relay sends every text to every connection: --rooms must be 1");
    if (!rooms_set)
        o->rooms = (o->scenario == SC_ROOMS || o->scenario == SC_STORM)
                       ? (o->clients / 20 ? o->clients / 20 : 1)
                       : 1;
    if (o->scenario == SC_BROADCAST && o->rooms != 1)
        return bad("%s", "broadcast goes to one room: --rooms must be 1");
    if (o->scenario == SC_ALL && o->rooms != 1)
        return bad("%s", "all-to-all is one room: --rooms must be 1");
    if (o->rooms > o->clients)
        return bad("%s", "--rooms cannot exceed --clients");
    if (o->procs > o->clients)
        return bad("%s", "--procs cannot exceed --clients");
    if (o->storm_lag > 0 && o->scenario != SC_STORM)
        return bad("%s", "--storm-lag is for the storm scenario");
    if (o->storm_restart && !(o->storm_lag > 0))
        return bad("%s", "--storm-restart needs --storm-lag (the restart happens in the lag)");
    if (o->send_rate < 0)
        o->send_rate = o->clients / 10.0;
    if (o->duration < 0) {
        static const double defaults[] = {
            [SC_IDLE] = 1, [SC_BROADCAST] = 60, [SC_ALL] = 60, [SC_ROOMS] = 10, [SC_STORM] = 5};
        o->duration = defaults[o->scenario];
    }
    /* The relay's only check is per sender: every receiver keeps a slot for every sender. */
    if (o->protocol == PR_RELAY && o->scenario == SC_ALL &&
        (uint64_t)o->clients * o->clients / o->procs * 8 > 1024ull * 1024 * 1024)
        return bad("%s", "all-to-all on the relay keeps 8 bytes per receiver and sender: too many "
                         "clients for one process (use fewer, or more --procs)");
    return 0;
}
