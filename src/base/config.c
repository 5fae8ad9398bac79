/* config: command-line options with their defaults and validation. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "text.h"

static const char usage[] =
    "Usage: parley [options]\n"
    "A chat server: browsers over WebSocket and people on telnet, in rooms and direct messages.\n"
    "\n"
    "  --http ADDR:PORT          HTTP and WebSocket listener (default 0.0.0.0:9999; port 0 picks "
    "one)\n"
    "  --telnet ADDR:PORT        telnet line listener (default 0.0.0.0:2323)\n"
    "  --data DIR                data directory (default ./parley-data)\n"
    "  --store URL               where rooms, messages and accounts are kept: postgres://... or\n"
    "                            postgresql://... (a libpq URL) for PostgreSQL, shared by several\n"
    "                            nodes; default: the embedded SQLite database in --data\n"
    "  --workers N               event-loop threads (default: number of cores)\n"
    "  --max-message BYTES       largest WebSocket message accepted (default 65536)\n"
    "  --echo-endpoint           serve GET /echo, an RFC 6455 echo endpoint\n"
    "  --allowed-origin ORIGIN   also accept WebSocket upgrades from ORIGIN (repeatable; * = any)\n"
    "  --ping-interval SECONDS   WebSocket ping interval (default 30)\n"
    "  --idle-timeout SECONDS    close WebSockets silent this long (default 75)\n"
    "  --node NAME               this node's name in greetings and /healthz (default: host "
    "name:HTTP port)\n"
    "  --log-level LEVEL         debug, info, warn or error (default info)\n"
    "\n"
    "Chat limits:\n"
    "  --rate-limit N            sends per connection: bucket of N refilled at N per 10 s (default "
    "20; 0 = off)\n"
    "  --max-rooms N             rooms one connection may join (default 100)\n"
    "  --max-text N              characters per message (default 4000)\n"
    "  --output-limit BYTES      output queued for one connection before it is dropped (default "
    "4194304)\n"
    "  --login-timeout SECONDS   WebSocket login deadline (default 30)\n"
    "  --telnet-login-timeout SECONDS  telnet login deadline (default 60)\n"
    "  --telnet-idle SECONDS     close telnet sessions idle this long (default: never)\n"
    "  --max-conns-per-ip N      connections per client address (default 200; 0 = unlimited)\n"
    "  --token-ttl SECONDS       login token lifetime (default 604800)\n"
    "  --guest-token-ttl SECONDS guest token lifetime (default 86400)\n"
    "  --retention N             newest messages kept per room (default 0 = all)\n"
    "  --edit-window SECONDS     how long an author may edit a message (default 86400; 0 = "
    "always)\n"
    "  --max-reactions N         distinct emoji per message (default 20)\n"
    "  --react-rate N            react bucket of N tokens per 10 s (default: as --rate-limit)\n"
    "  --search-rate N           search bucket of N tokens per 10 s (default 10; 0 = off)\n"
    "  --search-scan N           search index rows one search examines at most (default 10000)\n"
    "  --admin NAME              a server admin: a registered account (repeatable)\n"
    "  --max-total-rooms N       public rooms on the server (default 10000; 0 = no limit)\n"
    "  --max-topic N             characters in a room topic (default 300)\n"
    "  --max-reason N            characters in a kick or ban reason (default 300)\n"
    "  --max-duration SECONDS    longest ban or mute (default 31536000)\n"
    "  --ring-size N             recent messages per room kept in memory for replay (default "
    "1024)\n"
    "  --password-cost LEVEL     argon2id cost: interactive (default) or min (tests only)\n"
    "  --max-db-size BYTES       cap on the database file (default 0 = none)\n"
    "  --db-check SECONDS        time bound for the database's quick_check at start (default 10;\n"
    "                            0 = skip it)\n"
    "  --sync normal|full        normal (default): a commit is written to the operating system\n"
    "                            before its ack, so it survives kill -9 or any crash of parley;\n"
    "                            full: also fsynced, so it survives a power loss (about 1 ms\n"
    "                            more per commit)\n"
    "\n"
    "Facing the internet:\n"
    "  --public-host NAME        answer only requests whose Host is NAME or NAME:PORT "
    "(repeatable;\n"
    "                            others get 421); default: any Host\n"
    "  --trusted-proxy ADDR[/BITS]  a reverse proxy whose X-Forwarded-For names the client\n"
    "                            (repeatable); its own connections are not limited per address\n"
    "\n"
    "TLS:\n"
    "  --tls-cert FILE           PEM certificate (then its chain): the --http port speaks only\n"
    "                            HTTPS and wss:// (needs --tls-key; SIGHUP reloads both files)\n"
    "  --tls-key FILE            PEM private key of the certificate, not encrypted\n"
    "  --telnet-tls ADDR:PORT    also a TLS line listener, e.g. for openssl s_client (needs "
    "--tls-cert)\n"
    "  --tls-handshake-timeout SECONDS  close connections that have not finished the TLS "
    "handshake\n"
    "                            by then (default 10)\n"
    "\n"
    "Compression (permessage-deflate, RFC 7692):\n"
    "  --deflate on|off          negotiate it with WebSocket clients that offer it (default on)\n"
    "  --deflate-threshold BYTES send messages shorter than this uncompressed (default 128)\n"
    "\n"
    "Password checks and login throttling:\n"
    "  --auth-threads N          password hashes in parallel; each holds argon2id's 64 MiB "
    "(default: cores, at most 4)\n"
    "  --login-fails-address N   failed logins a network may make before it must wait (default "
    "5; 0 = off)\n"
    "  --login-delay-address SECONDS  the longest such wait; one failure is forgotten per this "
    "long (default 60)\n"
    "  --login-fails-account N   failed logins an account may see before attempts wait (default "
    "10; 0 = off)\n"
    "  --login-delay-account SECONDS  the longest wait for an account (default 300)\n"
    "  --login-trust SECONDS     an address that logged in to an account is spared that "
    "account's wait (default 2592000)\n"
    "  --auth-queue-address N    logins and registrations one network may have waiting "
    "(default 32)\n"
    "  --throttle-entries N      networks, accounts and trusted pairs remembered, each "
    "(default 65536)\n"
    "\n"
    "Upgrades (SIGUSR2, or `parley upgrade --data DIR`, starts a new binary that takes over):\n"
    "  --upgrade-binary PATH     the binary to start (default: this one's path, as resolved at "
    "start)\n"
    "  --upgrade-timeout SECONDS the new process must be ready and serving by then, or the "
    "upgrade\n"
    "                            fails and this one serves on (default 10)\n"
    "  --upgrade-mode MODE       live (default): open connections move to the new process with "
    "their\n"
    "                            state, unnoticed (TLS ones are drained); drain: they are closed "
    "(WebSocket\n"
    "                            1012) over --drain-time and resume on the new process\n"
    "  --drain-time SECONDS      how long the old process takes to close its connections "
    "(default 10)\n"
    "\n"
    "Large rooms:\n"
    "  --presence-limit N        a room is large above N users (no presence or typing, a count\n"
    "                            every 5 s instead), small again below 0.9 N (default 100; 0 = "
    "never)\n"
    "\n"
    "Telnet input:\n"
    "  --telnet-queue N          telnet lines that wait for a rate-limit token, in order; one "
    "more is\n"
    "                            refused with rate_limited (default 50; 0 = none wait)\n"
    "\n"
    "Status:\n"
    "  --max-status N            code points in a status text (default 100)\n"
    "\n"
    "Several nodes (one chat over a shared store and Redis):\n"
    "  --broker redis://HOST[:PORT][/DB]  the Redis that carries events, presence and guests\n"
    "                            between nodes (default: none, this process alone; PORT 6379)\n"
    "  --node-lease SECONDS      a node refreshes its lease in Redis; when it stops, its users\n"
    "                            go offline and its guests' names are free after this (default "
    "10)\n"
    "  --peer-urls URL,URL...    the nodes' WebSocket URLs (ws://HOST[:PORT]/ws or wss://...): the\n"
    "                            web page tries them in turn when its connection fails, and pages\n"
    "                            served by those nodes may connect here (repeatable)\n"
    "\n"
    "  --help                    show this help\n"
    "  --version                 show the version\n";

enum {
    OPT_HTTP = 256,
    OPT_TELNET,
    OPT_DATA,
    OPT_WORKERS,
    OPT_MAX_MESSAGE,
    OPT_ECHO,
    OPT_ORIGIN,
    OPT_PING,
    OPT_IDLE,
    OPT_NODE,
    OPT_LOG_LEVEL,
    OPT_HELP,
    OPT_VERSION,
    OPT_RATE_LIMIT,
    OPT_MAX_ROOMS,
    OPT_MAX_TEXT,
    OPT_OUTPUT_LIMIT,
    OPT_LOGIN_TIMEOUT,
    OPT_TELNET_LOGIN_TIMEOUT,
    OPT_TELNET_IDLE,
    OPT_MAX_CONNS_PER_IP,
    OPT_TOKEN_TTL,
    OPT_GUEST_TOKEN_TTL,
    OPT_RETENTION,
    OPT_EDIT_WINDOW,
    OPT_MAX_REACTIONS,
    OPT_REACT_RATE,
    OPT_SEARCH_RATE,
    OPT_SEARCH_SCAN,
    OPT_RING_SIZE,
    OPT_PASSWORD_COST,
    OPT_MAX_DB_SIZE,
    OPT_PUBLIC_HOST,
    OPT_DB_CHECK,
    OPT_SYNC,
    OPT_STORE,
    OPT_TRUSTED_PROXY,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TELNET_TLS,
    OPT_TLS_HANDSHAKE_TIMEOUT,
    /* permessage-deflate */
    OPT_DEFLATE,
    OPT_DEFLATE_THRESHOLD,
    /* password checks and login throttling */
    OPT_AUTH_THREADS,
    OPT_LOGIN_FAILS_ADDRESS,
    OPT_LOGIN_DELAY_ADDRESS,
    OPT_LOGIN_FAILS_ACCOUNT,
    OPT_LOGIN_DELAY_ACCOUNT,
    OPT_LOGIN_TRUST,
    OPT_AUTH_QUEUE_ADDRESS,
    OPT_THROTTLE_ENTRIES,
    /* upgrades */
    OPT_UPGRADE_BINARY,
    OPT_UPGRADE_TIMEOUT,
    OPT_UPGRADE_MODE,
    OPT_DRAIN_TIME,
    /* large rooms */
    OPT_PRESENCE_LIMIT,
    /* telnet input */
    OPT_TELNET_QUEUE,
    OPT_MAX_STATUS,
    OPT_ADMIN,
    OPT_MAX_TOTAL_ROOMS,
    OPT_MAX_TOPIC,
    OPT_MAX_REASON,
    OPT_MAX_DURATION,
    /* several nodes */
    OPT_BROKER,
    OPT_NODE_LEASE,
    OPT_PEER_URLS,
};

static const struct option options[] = {
    {"http", required_argument, NULL, OPT_HTTP},
    {"telnet", required_argument, NULL, OPT_TELNET},
    {"data", required_argument, NULL, OPT_DATA},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"echo-endpoint", no_argument, NULL, OPT_ECHO},
    {"allowed-origin", required_argument, NULL, OPT_ORIGIN},
    {"ping-interval", required_argument, NULL, OPT_PING},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"node", required_argument, NULL, OPT_NODE},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"node-lease", required_argument, NULL, OPT_NODE_LEASE},
    {"peer-urls", required_argument, NULL, OPT_PEER_URLS},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
    {"max-rooms", required_argument, NULL, OPT_MAX_ROOMS},
    {"max-text", required_argument, NULL, OPT_MAX_TEXT},
    {"output-limit", required_argument, NULL, OPT_OUTPUT_LIMIT},
    {"login-timeout", required_argument, NULL, OPT_LOGIN_TIMEOUT},
    {"telnet-login-timeout", required_argument, NULL, OPT_TELNET_LOGIN_TIMEOUT},
    {"telnet-idle", required_argument, NULL, OPT_TELNET_IDLE},
    {"max-conns-per-ip", required_argument, NULL, OPT_MAX_CONNS_PER_IP},
    {"token-ttl", required_argument, NULL, OPT_TOKEN_TTL},
    {"guest-token-ttl", required_argument, NULL, OPT_GUEST_TOKEN_TTL},
    {"retention", required_argument, NULL, OPT_RETENTION},
    {"edit-window", required_argument, NULL, OPT_EDIT_WINDOW},
    {"max-reactions", required_argument, NULL, OPT_MAX_REACTIONS},
    {"react-rate", required_argument, NULL, OPT_REACT_RATE},
    {"search-rate", required_argument, NULL, OPT_SEARCH_RATE},
    {"search-scan", required_argument, NULL, OPT_SEARCH_SCAN},
    {"ring-size", required_argument, NULL, OPT_RING_SIZE},
    {"password-cost", required_argument, NULL, OPT_PASSWORD_COST},
    {"max-db-size", required_argument, NULL, OPT_MAX_DB_SIZE},
    {"public-host", required_argument, NULL, OPT_PUBLIC_HOST},
    {"db-check", required_argument, NULL, OPT_DB_CHECK},
    {"sync", required_argument, NULL, OPT_SYNC},
    {"store", required_argument, NULL, OPT_STORE},
    {"trusted-proxy", required_argument, NULL, OPT_TRUSTED_PROXY},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"telnet-tls", required_argument, NULL, OPT_TELNET_TLS},
    {"tls-handshake-timeout", required_argument, NULL, OPT_TLS_HANDSHAKE_TIMEOUT},
    {"deflate", required_argument, NULL, OPT_DEFLATE},
    {"deflate-threshold", required_argument, NULL, OPT_DEFLATE_THRESHOLD},
    {"auth-threads", required_argument, NULL, OPT_AUTH_THREADS},
    {"login-fails-address", required_argument, NULL, OPT_LOGIN_FAILS_ADDRESS},
    {"login-delay-address", required_argument, NULL, OPT_LOGIN_DELAY_ADDRESS},
    {"login-fails-account", required_argument, NULL, OPT_LOGIN_FAILS_ACCOUNT},
    {"login-delay-account", required_argument, NULL, OPT_LOGIN_DELAY_ACCOUNT},
    {"login-trust", required_argument, NULL, OPT_LOGIN_TRUST},
    {"auth-queue-address", required_argument, NULL, OPT_AUTH_QUEUE_ADDRESS},
    {"throttle-entries", required_argument, NULL, OPT_THROTTLE_ENTRIES},
    {"upgrade-binary", required_argument, NULL, OPT_UPGRADE_BINARY},
    {"upgrade-timeout", required_argument, NULL, OPT_UPGRADE_TIMEOUT},
    {"upgrade-mode", required_argument, NULL, OPT_UPGRADE_MODE},
    {"drain-time", required_argument, NULL, OPT_DRAIN_TIME},
    {"presence-limit", required_argument, NULL, OPT_PRESENCE_LIMIT},
    {"telnet-queue", required_argument, NULL, OPT_TELNET_QUEUE},
    {"max-status", required_argument, NULL, OPT_MAX_STATUS},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"max-total-rooms", required_argument, NULL, OPT_MAX_TOTAL_ROOMS},
    {"max-topic", required_argument, NULL, OPT_MAX_TOPIC},
    {"max-reason", required_argument, NULL, OPT_MAX_REASON},
    {"max-duration", required_argument, NULL, OPT_MAX_DURATION},
    {0, 0, 0, 0},
};

int config_parse_addr(const char *text, struct listen_addr *out)
{
    memset(out, 0, sizeof *out);
    if (strlen(text) >= sizeof out->text)
        return -1;
    memcpy(out->text, text, strlen(text) + 1);
    char host[64];
    const char *port;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host)
            return -1;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host)
            return -1;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno || end == port || *end || p < 0 || p > 65535)
        return -1;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        memcpy(host, "0.0.0.0", 8);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        out->len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        out->len = sizeof *v6;
        return 0;
    }
    if (strcmp(host, "localhost") == 0) {
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        v4->sin_port = htons((uint16_t)p);
        out->len = sizeof *v4;
        return 0;
    }
    return -1;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

int config_parse_broker_url(const char *url, struct config *cfg)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return -1;
    const char *host = url + sizeof scheme - 1, *host_end, *rest;
    if (*host == '[') { /* [v6] */
        host_end = strchr(host, ']');
        if (!host_end)
            return -1;
        host++;
        rest = host_end + 1;
    } else {
        host_end = host + strcspn(host, ":/");
        rest = host_end;
        for (const char *p = host; p < host_end; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
                return -1; /* also refuses user:password@ and other URL parts */
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len >= sizeof cfg->broker_host)
        return -1;
    char num[16];
    uint64_t port = 6379, db = 0;
    if (*rest == ':') {
        size_t n = strcspn(rest + 1, "/");
        if (n == 0 || n >= sizeof num)
            return -1;
        memcpy(num, rest + 1, n);
        num[n] = '\0';
        if (parse_u64(num, 1, 65535, &port) < 0)
            return -1;
        rest += 1 + n;
    }
    if (*rest == '/' && rest[1] != '\0') {
        if (strlen(rest + 1) >= sizeof num || parse_u64(rest + 1, 0, 1000000, &db) < 0)
            return -1;
    } else if (*rest == '/' || *rest != '\0') {
        return -1;
    }
    memcpy(cfg->broker_host, host, host_len);
    cfg->broker_host[host_len] = '\0';
    struct in6_addr v6;
    if (host[-1] == '[' && inet_pton(AF_INET6, cfg->broker_host, &v6) != 1)
        return -1; /* brackets are for an IPv6 address */
    cfg->broker_port = (uint16_t)port;
    cfg->broker_db = (uint32_t)db;
    cfg->broker = url;
    return 0;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Seconds with an optional fraction, to milliseconds (at least 1 ms). */
static int parse_seconds(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 86400.0 * 365)
        return -1;
    *ms = (uint64_t)(v * 1000.0 + 0.5);
    if (*ms == 0)
        *ms = 1;
    return 0;
}

static void set_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    config_parse_addr("0.0.0.0:9999", &cfg->http);
    config_parse_addr("0.0.0.0:2323", &cfg->telnet);
    cfg->data_dir = "./parley-data";
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n > 0 ? (int)n : 1;
    cfg->max_message = 65536;
    cfg->log_level = LOG_INFO;
    cfg->ping_interval_ms = 30000;
    cfg->idle_timeout_ms = 75000;
    cfg->http_idle_ms = 30000;
    cfg->rate_limit = 20;
    cfg->max_rooms = 100;
    cfg->output_limit = 4u << 20;
    cfg->login_timeout_ms = 30000;
    cfg->telnet_login_timeout_ms = 60000;
    cfg->token_ttl_ms = 7ull * 24 * 3600 * 1000;
    cfg->guest_token_ttl_ms = 24ull * 3600 * 1000;
    cfg->ring_size = 1024;
    cfg->edit_window_s = 86400;
    cfg->max_reactions = 20;
    cfg->search_rate = 10;
    cfg->search_scan = 10000;
    cfg->max_total_rooms = 10000;
    cfg->max_topic = 300;
    cfg->max_reason = 300;
    cfg->max_duration_s = 31536000;
    cfg->max_text = 4000;
    /* Finite by default: one address cannot take every descriptor (a process may hold ~20,000),
     * and 200 still covers an office behind one NAT with several tabs each. */
    cfg->max_conns_per_ip = 200;
    cfg->db_check_ms = 10000;
    cfg->tls_handshake_timeout_ms = 10000;
    /* permessage-deflate: below about 128 bytes a chat event shrinks by 12% or less, a few
     * bytes against the 40 or more of TCP/IP around it (docs/benchmarks.md). */
    cfg->deflate = true;
    cfg->deflate_threshold = 128;
    /* Password checks: each hash holds 64 MiB, so a few at once, whatever the core count. */
    cfg->auth_threads = cfg->workers < 4 ? (uint32_t)cfg->workers : 4;
    cfg->login_fails_address = 5;
    cfg->login_delay_address_ms = 60000;
    cfg->login_fails_account = 10;
    cfg->login_delay_account_ms = 300000;
    cfg->login_trust_ms = 30ull * 24 * 3600 * 1000;
    cfg->auth_queue_address = 32;
    cfg->throttle_entries = 65536;
    cfg->upgrade_timeout_ms = 10000;
    cfg->upgrade_mode = CONFIG_UPGRADE_LIVE;
    cfg->drain_time_ms = 10000;
    cfg->presence_limit = 100;
    cfg->telnet_queue = 50;
    cfg->max_status = 100;
    cfg->node_lease_ms = 10000;
    if (gethostname(cfg->node, sizeof cfg->node) != 0 || cfg->node[0] == '\0')
        memcpy(cfg->node, "parley", 7);
    cfg->node[sizeof cfg->node - 1] = '\0';
}

/* The default node name: the host name and the HTTP port, so that nodes on one host differ. */
static void default_node(struct config *cfg)
{
    uint16_t port = cfg->http.sa.ss_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)&cfg->http.sa)->sin6_port)
                        : ntohs(((const struct sockaddr_in *)&cfg->http.sa)->sin_port);
    char suffix[8];
    int n = snprintf(suffix, sizeof suffix, ":%u", port);
    size_t host_len = strlen(cfg->node);
    if (host_len + (size_t)n >= sizeof cfg->node)
        host_len = sizeof cfg->node - 1 - (size_t)n;
    memcpy(cfg->node + host_len, suffix, (size_t)n + 1);
}

static enum config_result bad(const char *opt, const char *value, const char *want)
{
    fprintf(stderr, "parley: invalid value '%s' for --%s: %s\nTry 'parley --help'.\n", value, opt,
            want);
    return CONFIG_ERROR;
}

/* TLS options that only make sense together. */
static enum config_result check_tls(const struct config *cfg)
{
    const char *why = NULL;
    if (cfg->tls_cert && !cfg->tls_key)
        why = "--tls-cert needs --tls-key";
    else if (cfg->tls_key && !cfg->tls_cert)
        why = "--tls-key needs --tls-cert";
    else if (cfg->has_telnet_tls && !cfg->tls_cert)
        why = "--telnet-tls needs --tls-cert and --tls-key";
    if (!why)
        return CONFIG_OK;
    fprintf(stderr, "parley: %s\nTry 'parley --help'.\n", why);
    return CONFIG_ERROR;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv)
{
    set_defaults(cfg);
    uint64_t v;
    int opt;
    bool react_rate_set = false, node_set = false;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_HTTP:
            if (config_parse_addr(optarg, &cfg->http) < 0)
                return bad("http", optarg, "expected ADDR:PORT, e.g. 0.0.0.0:9999 or [::1]:9999");
            break;
        case OPT_TELNET:
            if (config_parse_addr(optarg, &cfg->telnet) < 0)
                return bad("telnet", optarg, "expected ADDR:PORT, e.g. 0.0.0.0:2323");
            break;
        case OPT_DATA:
            if (optarg[0] == '\0')
                return bad("data", optarg, "expected a directory");
            cfg->data_dir = optarg;
            break;
        case OPT_WORKERS:
            if (parse_u64(optarg, 1, 256, &v) < 0)
                return bad("workers", optarg, "expected a number from 1 to 256");
            cfg->workers = (int)v;
            break;
        case OPT_MAX_MESSAGE:
            if (parse_u64(optarg, 125, 1u << 30, &v) < 0)
                return bad("max-message", optarg, "expected bytes from 125 to 1073741824");
            cfg->max_message = v;
            break;
        case OPT_ECHO:
            cfg->echo_endpoint = true;
            break;
        case OPT_ORIGIN:
            cfg->allowed_origins = xrealloc(cfg->allowed_origins, (cfg->n_allowed_origins + 1) *
                                                                      sizeof *cfg->allowed_origins);
            cfg->allowed_origins[cfg->n_allowed_origins++] = optarg;
            break;
        case OPT_PING:
            if (parse_seconds(optarg, &cfg->ping_interval_ms) < 0)
                return bad("ping-interval", optarg, "expected seconds greater than 0");
            break;
        case OPT_IDLE:
            if (parse_seconds(optarg, &cfg->idle_timeout_ms) < 0)
                return bad("idle-timeout", optarg, "expected seconds greater than 0");
            break;
        case OPT_NODE:
            if (optarg[0] == '\0' || strlen(optarg) >= sizeof cfg->node)
                return bad("node", optarg, "expected a name of 1 to 63 bytes");
            memcpy(cfg->node, optarg, strlen(optarg) + 1);
            node_set = true;
            break;
        case OPT_BROKER:
            if (config_parse_broker_url(optarg, cfg) < 0)
                return bad("broker", optarg, "expected redis://HOST[:PORT][/DB]");
            break;
        case OPT_NODE_LEASE:
            if (parse_seconds(optarg, &cfg->node_lease_ms) < 0 || cfg->node_lease_ms < 1000)
                return bad("node-lease", optarg, "expected seconds, at least 1");
            break;
        case OPT_PEER_URLS:
            if (peer_urls_parse(&cfg->peers, optarg) < 0)
                return bad("peer-urls", optarg,
                           "expected ws://HOST[:PORT]/PATH or wss://... separated by commas, at "
                           "most 16");
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &cfg->log_level) < 0)
                return bad("log-level", optarg, "expected debug, info, warn or error");
            break;
        case OPT_RATE_LIMIT:
            if (parse_u64(optarg, 0, 1000000, &v) < 0)
                return bad("rate-limit", optarg, "expected a number from 0 to 1000000");
            cfg->rate_limit = (uint32_t)v;
            break;
        case OPT_MAX_ROOMS:
            if (parse_u64(optarg, 1, 100000, &v) < 0)
                return bad("max-rooms", optarg, "expected a number from 1 to 100000");
            cfg->max_rooms = (uint32_t)v;
            break;
        case OPT_MAX_TEXT:
            if (parse_u64(optarg, 1, 1000000, &v) < 0)
                return bad("max-text", optarg, "expected a number from 1 to 1000000");
            cfg->max_text = (uint32_t)v;
            break;
        case OPT_OUTPUT_LIMIT:
            if (parse_u64(optarg, 4096, 1u << 30, &v) < 0)
                return bad("output-limit", optarg, "expected bytes from 4096 to 1073741824");
            cfg->output_limit = v;
            break;
        case OPT_LOGIN_TIMEOUT:
            if (parse_seconds(optarg, &cfg->login_timeout_ms) < 0)
                return bad("login-timeout", optarg, "expected seconds greater than 0");
            break;
        case OPT_TELNET_LOGIN_TIMEOUT:
            if (parse_seconds(optarg, &cfg->telnet_login_timeout_ms) < 0)
                return bad("telnet-login-timeout", optarg, "expected seconds greater than 0");
            break;
        case OPT_TELNET_IDLE:
            if (parse_seconds(optarg, &cfg->telnet_idle_ms) < 0)
                return bad("telnet-idle", optarg, "expected seconds greater than 0");
            break;
        case OPT_MAX_CONNS_PER_IP:
            if (parse_u64(optarg, 0, 1000000, &v) < 0)
                return bad("max-conns-per-ip", optarg, "expected a number from 0 to 1000000");
            cfg->max_conns_per_ip = (uint32_t)v;
            break;
        case OPT_TOKEN_TTL:
            if (parse_seconds(optarg, &cfg->token_ttl_ms) < 0)
                return bad("token-ttl", optarg, "expected seconds greater than 0");
            break;
        case OPT_GUEST_TOKEN_TTL:
            if (parse_seconds(optarg, &cfg->guest_token_ttl_ms) < 0)
                return bad("guest-token-ttl", optarg, "expected seconds greater than 0");
            break;
        case OPT_RETENTION:
            if (parse_u64(optarg, 0, UINT64_MAX / 2, &v) < 0)
                return bad("retention", optarg, "expected a number of messages (0 = all)");
            cfg->retention = v;
            break;
        case OPT_EDIT_WINDOW:
            if (parse_u64(optarg, 0, 100ull * 365 * 86400, &v) < 0)
                return bad("edit-window", optarg, "expected seconds (0 = always)");
            cfg->edit_window_s = v;
            break;
        case OPT_ADMIN:
            if (!text_valid_user(optarg, strlen(optarg)))
                return bad("admin", optarg, "expected a user name");
            cfg->admins = xrealloc(cfg->admins, (cfg->n_admins + 1) * sizeof *cfg->admins);
            cfg->admins[cfg->n_admins++] = optarg;
            break;
        case OPT_MAX_TOTAL_ROOMS:
            if (parse_u64(optarg, 0, UINT32_MAX, &v) < 0)
                return bad("max-total-rooms", optarg, "expected a number of rooms (0 = no limit)");
            cfg->max_total_rooms = v;
            break;
        case OPT_MAX_TOPIC:
            if (parse_u64(optarg, 1, 4000, &v) < 0)
                return bad("max-topic", optarg, "expected a number from 1 to 4000");
            cfg->max_topic = (uint32_t)v;
            break;
        case OPT_MAX_REASON:
            if (parse_u64(optarg, 1, 4000, &v) < 0)
                return bad("max-reason", optarg, "expected a number from 1 to 4000");
            cfg->max_reason = (uint32_t)v;
            break;
        case OPT_MAX_DURATION:
            if (parse_u64(optarg, 1, 100ull * 365 * 86400, &v) < 0)
                return bad("max-duration", optarg, "expected seconds from 1 to 3153600000");
            cfg->max_duration_s = v;
            break;
        case OPT_MAX_REACTIONS:
            if (parse_u64(optarg, 1, 1000, &v) < 0)
                return bad("max-reactions", optarg, "expected a number from 1 to 1000");
            cfg->max_reactions = (uint32_t)v;
            break;
        case OPT_REACT_RATE:
            if (parse_u64(optarg, 0, 1000000, &v) < 0)
                return bad("react-rate", optarg, "expected a number from 0 to 1000000");
            cfg->react_rate = (uint32_t)v;
            react_rate_set = true;
            break;
        case OPT_SEARCH_RATE:
            if (parse_u64(optarg, 0, 1000000, &v) < 0)
                return bad("search-rate", optarg, "expected a number from 0 to 1000000");
            cfg->search_rate = (uint32_t)v;
            break;
        case OPT_SEARCH_SCAN:
            if (parse_u64(optarg, 1, 100000000, &v) < 0)
                return bad("search-scan", optarg, "expected a number from 1 to 100000000");
            cfg->search_scan = (uint32_t)v;
            break;
        case OPT_RING_SIZE:
            if (parse_u64(optarg, 1, 1u << 20, &v) < 0)
                return bad("ring-size", optarg, "expected a number from 1 to 1048576");
            cfg->ring_size = (uint32_t)v;
            break;
        case OPT_PASSWORD_COST:
            if (strcmp(optarg, "min") == 0)
                cfg->password_cost_min = true;
            else if (strcmp(optarg, "interactive") == 0)
                cfg->password_cost_min = false;
            else
                return bad("password-cost", optarg, "expected interactive or min");
            break;
        case OPT_MAX_DB_SIZE:
            if (parse_u64(optarg, 0, UINT64_MAX / 2, &v) < 0)
                return bad("max-db-size", optarg, "expected bytes (0 = no cap)");
            cfg->max_db_bytes = v;
            cfg->sqlite_only_option = "--max-db-size";
            break;
        case OPT_DB_CHECK:
            if (strcmp(optarg, "0") == 0)
                cfg->db_check_ms = 0;
            else if (parse_seconds(optarg, &cfg->db_check_ms) < 0)
                return bad("db-check", optarg, "expected seconds (0 = skip the check)");
            cfg->sqlite_only_option = "--db-check";
            break;
        case OPT_STORE:
            /* Only PostgreSQL is named by URL; the embedded SQLite is the default, not a URL. */
            if (strncmp(optarg, "postgres://", 11) != 0 && strncmp(optarg, "postgresql://", 13) != 0)
                return bad("store", optarg, "expected a postgres:// or postgresql:// URL");
            cfg->store_url = optarg;
            break;
        case OPT_SYNC:
            if (strcmp(optarg, "normal") == 0)
                cfg->sync_full = false;
            else if (strcmp(optarg, "full") == 0)
                cfg->sync_full = true;
            else
                return bad("sync", optarg, "expected normal or full");
            cfg->sqlite_only_option = "--sync";
            break;
        case OPT_PUBLIC_HOST:
            if (!addr_endpoint_parse(optarg, strlen(optarg), &(struct addr_endpoint){0}))
                return bad("public-host", optarg,
                           "expected a host name or address, optionally with :PORT");
            cfg->public_hosts =
                xrealloc(cfg->public_hosts, (cfg->n_public_hosts + 1) * sizeof *cfg->public_hosts);
            cfg->public_hosts[cfg->n_public_hosts++] = optarg;
            break;
        case OPT_TRUSTED_PROXY: {
            struct addr_prefix p;
            if (!addr_prefix_parse(optarg, &p))
                return bad("trusted-proxy", optarg,
                           "expected an IP address or prefix, e.g. 10.0.0.1 or 10.0.0.0/8");
            cfg->trusted_proxies = xrealloc(cfg->trusted_proxies, (cfg->n_trusted_proxies + 1) *
                                                                      sizeof *cfg->trusted_proxies);
            cfg->trusted_proxies[cfg->n_trusted_proxies++] = p;
            break;
        }
        case OPT_TLS_CERT:
            if (optarg[0] == '\0')
                return bad("tls-cert", optarg, "expected a PEM certificate file");
            cfg->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            if (optarg[0] == '\0')
                return bad("tls-key", optarg, "expected a PEM private key file");
            cfg->tls_key = optarg;
            break;
        case OPT_TELNET_TLS:
            if (config_parse_addr(optarg, &cfg->telnet_tls) < 0)
                return bad("telnet-tls", optarg, "expected ADDR:PORT, e.g. 0.0.0.0:2324");
            cfg->has_telnet_tls = true;
            break;
        case OPT_TLS_HANDSHAKE_TIMEOUT:
            if (parse_seconds(optarg, &cfg->tls_handshake_timeout_ms) < 0)
                return bad("tls-handshake-timeout", optarg, "expected seconds greater than 0");
            break;
        case OPT_DEFLATE:
            if (strcmp(optarg, "on") == 0)
                cfg->deflate = true;
            else if (strcmp(optarg, "off") == 0)
                cfg->deflate = false;
            else
                return bad("deflate", optarg, "expected on or off");
            break;
        case OPT_DEFLATE_THRESHOLD:
            if (parse_u64(optarg, 0, 1u << 30, &v) < 0)
                return bad("deflate-threshold", optarg, "expected bytes from 0 to 1073741824");
            cfg->deflate_threshold = (uint32_t)v;
            break;
        case OPT_AUTH_THREADS:
            if (parse_u64(optarg, 1, 64, &v) < 0)
                return bad("auth-threads", optarg, "expected a number from 1 to 64");
            cfg->auth_threads = (uint32_t)v;
            break;
        case OPT_LOGIN_FAILS_ADDRESS:
            if (parse_u64(optarg, 0, 100000, &v) < 0)
                return bad("login-fails-address", optarg, "expected a number from 0 to 100000");
            cfg->login_fails_address = (uint32_t)v;
            break;
        case OPT_LOGIN_DELAY_ADDRESS:
            if (parse_seconds(optarg, &cfg->login_delay_address_ms) < 0)
                return bad("login-delay-address", optarg, "expected seconds greater than 0");
            break;
        case OPT_LOGIN_FAILS_ACCOUNT:
            if (parse_u64(optarg, 0, 100000, &v) < 0)
                return bad("login-fails-account", optarg, "expected a number from 0 to 100000");
            cfg->login_fails_account = (uint32_t)v;
            break;
        case OPT_LOGIN_DELAY_ACCOUNT:
            if (parse_seconds(optarg, &cfg->login_delay_account_ms) < 0)
                return bad("login-delay-account", optarg, "expected seconds greater than 0");
            break;
        case OPT_LOGIN_TRUST:
            if (parse_seconds(optarg, &cfg->login_trust_ms) < 0)
                return bad("login-trust", optarg, "expected seconds greater than 0");
            break;
        case OPT_AUTH_QUEUE_ADDRESS:
            if (parse_u64(optarg, 1, 100000, &v) < 0)
                return bad("auth-queue-address", optarg, "expected a number from 1 to 100000");
            cfg->auth_queue_address = (uint32_t)v;
            break;
        case OPT_THROTTLE_ENTRIES:
            if (parse_u64(optarg, 16, 1u << 24, &v) < 0)
                return bad("throttle-entries", optarg, "expected a number from 16 to 16777216");
            cfg->throttle_entries = (uint32_t)v;
            break;
        case OPT_UPGRADE_BINARY:
            if (optarg[0] == '\0')
                return bad("upgrade-binary", optarg, "expected the path of a parley binary");
            cfg->upgrade_binary = optarg;
            break;
        case OPT_UPGRADE_TIMEOUT:
            if (parse_seconds(optarg, &cfg->upgrade_timeout_ms) < 0)
                return bad("upgrade-timeout", optarg, "expected seconds greater than 0");
            break;
        case OPT_UPGRADE_MODE:
            if (strcmp(optarg, "live") == 0)
                cfg->upgrade_mode = CONFIG_UPGRADE_LIVE;
            else if (strcmp(optarg, "drain") == 0)
                cfg->upgrade_mode = CONFIG_UPGRADE_DRAIN;
            else
                return bad("upgrade-mode", optarg, "expected live or drain");
            break;
        case OPT_DRAIN_TIME:
            if (parse_seconds(optarg, &cfg->drain_time_ms) < 0)
                return bad("drain-time", optarg, "expected seconds greater than 0");
            break;
        case OPT_PRESENCE_LIMIT:
            if (parse_u64(optarg, 0, 10000000, &v) < 0)
                return bad("presence-limit", optarg, "expected a number from 0 to 10000000");
            cfg->presence_limit = (uint32_t)v;
            break;
        case OPT_TELNET_QUEUE:
            if (parse_u64(optarg, 0, TELNET_QUEUE_MAX, &v) < 0)
                return bad("telnet-queue", optarg, "expected a number from 0 to 1000");
            cfg->telnet_queue = (uint32_t)v;
            break;
        case OPT_MAX_STATUS:
            if (parse_u64(optarg, 1, 100000, &v) < 0)
                return bad("max-status", optarg, "expected a number from 1 to 100000");
            cfg->max_status = (uint32_t)v;
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            return CONFIG_EXIT_OK;
        case OPT_VERSION:
            printf("parley %s\n", PARLEY_VERSION);
            return CONFIG_EXIT_OK;
        case ':':
            fprintf(stderr, "parley: option '%s' needs a value\nTry 'parley --help'.\n",
                    argv[optind - 1]);
            return CONFIG_ERROR;
        default:
            fprintf(stderr, "parley: unknown option '%s'\nTry 'parley --help'.\n",
                    argv[optind - 1]);
            return CONFIG_ERROR;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "parley: unexpected argument '%s'\nTry 'parley --help'.\n", argv[optind]);
        return CONFIG_ERROR;
    }
    if (!react_rate_set)
        cfg->react_rate = cfg->rate_limit; /* rule 73: as --rate-limit unless said otherwise */
    if (!node_set)
        default_node(cfg);
    return check_tls(cfg);
}

void config_free(struct config *cfg)
{
    free(cfg->allowed_origins);
    cfg->allowed_origins = NULL;
    cfg->n_allowed_origins = 0;
    free(cfg->admins);
    cfg->admins = NULL;
    cfg->n_admins = 0;
    free(cfg->public_hosts);
    cfg->public_hosts = NULL;
    cfg->n_public_hosts = 0;
    free(cfg->trusted_proxies);
    cfg->trusted_proxies = NULL;
    cfg->n_trusted_proxies = 0;
    peer_urls_free(&cfg->peers);
}
