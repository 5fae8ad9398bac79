/* config: the server's settings, from defaults and command-line options. */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"
#include "log.h"
#include "peer_urls.h"

struct listen_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char text[80]; /* as given, e.g. "0.0.0.0:9999" or "[::1]:0" */
};

struct config {
    struct listen_addr http;
    struct listen_addr telnet;
    const char *data_dir;
    int workers;
    uint64_t max_message;
    bool echo_endpoint;
    const char **allowed_origins; /* argv strings; the array is owned by the config */
    size_t n_allowed_origins;
    enum log_level log_level;
    uint64_t ping_interval_ms;
    uint64_t idle_timeout_ms;
    uint64_t http_idle_ms; /* keep-alive and request-head deadline */
    char node[64];

    /* The chat layer's limits (PROTOCOL.md "Limits", all configurable). */
    uint32_t rate_limit;       /* send bucket size, refilled per 10 s; 0 = off */
    uint32_t max_rooms;        /* rooms joined per connection */
    uint64_t output_limit;     /* bytes queued for one connection before it is dropped */
    uint64_t login_timeout_ms; /* WebSocket */
    uint64_t telnet_login_timeout_ms;
    uint64_t telnet_idle_ms;   /* 0 = no idle timeout on telnet */
    uint32_t max_conns_per_ip; /* 0 = unlimited */
    const char **public_hosts; /* --public-host (argv strings); none = any Host */
    size_t n_public_hosts;
    struct addr_prefix *trusted_proxies; /* --trusted-proxy: their X-Forwarded-For is believed */
    size_t n_trusted_proxies;
    uint64_t token_ttl_ms;
    uint64_t guest_token_ttl_ms;
    uint64_t retention;     /* newest messages kept per room; 0 = all */
    uint32_t ring_size;     /* recent messages per room kept in memory for replay */
    bool password_cost_min; /* cheapest argon2id parameters (tests); else "interactive" */
    uint32_t max_text;      /* code points per message */
    uint64_t max_db_bytes;  /* 0 = unlimited */
    uint64_t db_check_ms;   /* time bound for the store's quick_check at start; 0 = skip */
    /* Protocol 1.1's timeline (rules 52, 54, 73). */
    uint64_t edit_window_s; /* how long an author may edit; 0 = always */
    uint32_t max_reactions; /* distinct emoji per message */
    uint32_t react_rate;    /* react bucket, read as rate_limit */
    uint32_t search_rate;   /* search bucket, read as rate_limit (protocol 1.1 rule 73) */
    uint32_t search_scan;   /* search index rows one search request examines at most (rule 72) */
    const char *store_url;  /* --store: a PostgreSQL URL; NULL = SQLite in data_dir */
    bool sync_full;         /* fsync every commit (power loss), not only write it (kill -9) */
    const char *sqlite_only_option; /* the last SQLite-only option given, to warn with --store */

    /* TLS (tls.c): with a certificate and key the HTTP port speaks only HTTPS and wss. */
    const char *tls_cert;          /* PEM certificate, then its chain; NULL = no TLS */
    const char *tls_key;           /* PEM private key (may be the same file) */
    struct listen_addr telnet_tls; /* the TLS line port, if has_telnet_tls */
    bool has_telnet_tls;
    uint64_t tls_handshake_timeout_ms;

    /* permessage-deflate (RFC 7692) on WebSocket connections. */
    bool deflate;               /* negotiate it when a client offers it */
    uint32_t deflate_threshold; /* messages shorter than this go uncompressed */

    /* Password checks: hasher threads, login throttles, the fair queue (auth.c). */
    uint32_t auth_threads;           /* hashes in parallel (each holds argon2id's memory) */
    uint32_t login_fails_address;    /* failures a network may make before delays; 0 = off */
    uint64_t login_delay_address_ms; /* its longest delay; one failure forgotten per this long */
    uint32_t login_fails_account;    /* failures an account may see before delays; 0 = off */
    uint64_t login_delay_account_ms;
    uint64_t login_trust_ms;     /* an address that logged in to an account is spared its
                                    throttle this long */
    uint32_t auth_queue_address; /* password ops one network may have waiting */
    uint32_t throttle_entries;   /* entries in each throttle table */

    /* Upgrades (upgrade.c): SIGUSR2 or `parley upgrade` starts a new binary that takes over. */
    const char *upgrade_binary;  /* --upgrade-binary; NULL = this binary's own path at start */
    uint64_t upgrade_timeout_ms; /* how long the new process may take to be ready and serving */
    enum config_upgrade_mode { CONFIG_UPGRADE_LIVE, CONFIG_UPGRADE_DRAIN } upgrade_mode;
    uint64_t drain_time_ms; /* drain: the old process's connections are closed over this long */

    /* Large rooms (hub.c): above this many users a room is large, below 0.9 times it small
     * again, decided at each room's tick; 0 = never large. */
    uint32_t presence_limit;

    /* Telnet input (rule 79): lines that wait for a rate-limit token, each at most a line's
     * 4 KiB, so a connection holds at most this many times that. */
    uint32_t telnet_queue;

    /* Status (rule 69): code points in a status text. */
    uint32_t max_status;
    /* Topic, roles, moderation (protocol 1.1 rules 58-65). */
    const char **admins; /* --admin (argv strings): registered accounts, checked at start */
    size_t n_admins;
    uint64_t max_total_rooms; /* public rooms on the server, general included; 0 = no limit */
    uint32_t max_topic;       /* code points in a topic */
    uint32_t max_reason;      /* code points in a kick or ban reason */
    uint64_t max_duration_s;  /* longest ban or mute */

    /* Several nodes (src/broker): --broker redis://HOST:PORT[/DB]; NULL = this process alone. */
    const char *broker;     /* the URL as given (an argv string) */
    char broker_host[256];  /* a name, an IPv4 address or an IPv6 one (without brackets) */
    uint16_t broker_port;   /* default 6379 */
    uint32_t broker_db;     /* SELECTed after each connect; default 0 */
    uint64_t node_lease_ms; /* a node's lease: a dead node's users are offline after it */
    /* --peer-urls: the nodes' WebSocket URLs, given to the web page (GET /peers.json), which
     * moves to the next when its connection fails; pages from those nodes may connect here. */
    struct peer_urls peers;
};

/* The largest --telnet-queue: 1000 lines of 4 KiB, as much as the default output limit. */
#define TELNET_QUEUE_MAX 1000

enum config_result { CONFIG_OK, CONFIG_EXIT_OK, CONFIG_ERROR };

/*
 * Fills cfg from defaults and argv. Returns CONFIG_OK to run, CONFIG_EXIT_OK
 * after printing --help or --version, or CONFIG_ERROR after printing why on
 * stderr (the caller exits with status 2).
 */
enum config_result config_parse(struct config *cfg, int argc, char **argv);
void config_free(struct config *cfg);

/* Parses a broker URL, redis://HOST[:PORT][/DB], into cfg's broker fields. Returns 0 or -1. */
int config_parse_broker_url(const char *url, struct config *cfg);

/* Parses "host:port" or "[v6]:port" into out. Returns 0 or -1. */
int config_parse_addr(const char *text, struct listen_addr *out);

#endif
