/* test_config: command-line options, their defaults and their refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

#define ARGV(...) ((char *[]){"parley", __VA_ARGS__, NULL})
#define ARGC(argv) ((int)(sizeof(argv) / sizeof(argv[0])) - 1)

static enum config_result parse(struct config *cfg, int argc, char **argv)
{
    /* Errors are printed on stderr: keep the test output readable. */
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    enum config_result r = config_parse(cfg, argc, argv);
    fclose(stderr);
    stderr = saved;
    return r;
}

/* Every argument vector of bad[0..n) (NULL-terminated, from ARGV) is refused. */
static void assert_all_refused(char **bad[], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct config cfg;
        int argc = 0;
        while (bad[i][argc])
            argc++;
        assert_int_equal(parse(&cfg, argc, bad[i]), CONFIG_ERROR);
        config_free(&cfg);
    }
}

static void defaults(void **state)
{
    (void)state;
    struct config cfg;
    char *argv[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, argv), CONFIG_OK);
    assert_string_equal(cfg.http.text, "0.0.0.0:9999");
    assert_string_equal(cfg.telnet.text, "0.0.0.0:2323");
    assert_string_equal(cfg.data_dir, "./parley-data");
    assert_int_equal(cfg.max_message, 65536);
    assert_int_equal(cfg.ping_interval_ms, 30000);
    assert_int_equal(cfg.idle_timeout_ms, 75000);
    assert_false(cfg.echo_endpoint);
    assert_true(cfg.workers >= 1);
    /* The host name and the HTTP port, so that two nodes on one host differ. */
    size_t n = strlen(cfg.node);
    assert_true(n > 5 && strcmp(cfg.node + n - 5, ":9999") == 0);
    assert_null(cfg.broker);
    assert_int_equal(cfg.node_lease_ms, 10000);
    config_free(&cfg);
}

static void broker_options(void **state)
{
    (void)state;
    struct config cfg;
    char **argv = ARGV("--broker", "redis://127.0.0.1:6380/2", "--node-lease", "3", "--http",
                       "127.0.0.1:8001");
    assert_int_equal(parse(&cfg, 7, argv), CONFIG_OK);
    assert_string_equal(cfg.broker, "redis://127.0.0.1:6380/2");
    assert_string_equal(cfg.broker_host, "127.0.0.1");
    assert_int_equal(cfg.broker_port, 6380);
    assert_int_equal(cfg.broker_db, 2);
    assert_int_equal(cfg.node_lease_ms, 3000);
    size_t n = strlen(cfg.node);
    assert_true(n > 5 && strcmp(cfg.node + n - 5, ":8001") == 0);
    config_free(&cfg);

    struct {
        const char *url, *host;
        unsigned port, db;
    } good[] = {
        {"redis://localhost", "localhost", 6379, 0},
        {"redis://redis.example-1.net:7000", "redis.example-1.net", 7000, 0},
        {"redis://[::1]:6379/15", "::1", 6379, 15},
        {"redis://10.0.0.1/3", "10.0.0.1", 6379, 3},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char **a = ARGV("--broker", (char *)good[i].url);
        assert_int_equal(parse(&cfg, 3, a), CONFIG_OK);
        assert_string_equal(cfg.broker_host, good[i].host);
        assert_int_equal(cfg.broker_port, good[i].port);
        assert_int_equal(cfg.broker_db, good[i].db);
        config_free(&cfg);
    }

    char **bad[] = {
        ARGV("--broker", ""),
        ARGV("--broker", "localhost:6379"),
        ARGV("--broker", "http://localhost:6379"),
        ARGV("--broker", "redis://"),
        ARGV("--broker", "redis://:6379"),
        ARGV("--broker", "redis://host:"),
        ARGV("--broker", "redis://host:0"),
        ARGV("--broker", "redis://host:65536"),
        ARGV("--broker", "redis://host:63x9"),
        ARGV("--broker", "redis://host:6379/"),
        ARGV("--broker", "redis://host:6379/x"),
        ARGV("--broker", "redis://host:6379/1/2"),
        ARGV("--broker", "redis://user:secret@host:6379"),
        ARGV("--broker", "redis://[::1"),
        ARGV("--broker", "redis://[localhost]:6379"),
        ARGV("--broker", "redis://[:]:6379"),
        ARGV("--broker", "redis://host name"),
        ARGV("--node-lease", "0"),
        ARGV("--node-lease", "0.5"),
        ARGV("--node-lease", "x"),
        ARGV("--broker"),
    };
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

/* --peer-urls: each URL kept as given, with the origin of a page served by that node. */
static void peer_urls_option(void **state)
{
    (void)state;
    struct config cfg;
    char **argv = ARGV("--peer-urls", "ws://a.example/ws,wss://[::1]:8443/chat/ws", "--peer-urls",
                       "ws://127.0.0.1:9999/ws");
    assert_int_equal(parse(&cfg, 5, argv), CONFIG_OK);
    assert_int_equal(cfg.peers.n, 3);
    assert_string_equal(cfg.peers.urls[0], "ws://a.example/ws");
    assert_string_equal(cfg.peers.origins[0], "http://a.example");
    assert_string_equal(cfg.peers.urls[1], "wss://[::1]:8443/chat/ws");
    assert_string_equal(cfg.peers.origins[1], "https://[::1]:8443");
    assert_string_equal(cfg.peers.origins[2], "http://127.0.0.1:9999");
    config_free(&cfg);

    char *none[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, none), CONFIG_OK);
    assert_int_equal(cfg.peers.n, 0);
    config_free(&cfg);

    char **bad[] = {
        ARGV("--peer-urls", ""),
        ARGV("--peer-urls", "ws://a/ws,"),
        ARGV("--peer-urls", "http://a/ws"),
        ARGV("--peer-urls", "ws://a"),
        ARGV("--peer-urls", "ws:///ws"),
        ARGV("--peer-urls", "ws://a/ws x"),
        ARGV("--peer-urls", "ws://a/\"ws"),
        ARGV("--peer-urls", "ws://a/ws;script-src"),
        ARGV("--peer-urls", "ws://a/w\\s"),
        ARGV("--peer-urls", "ws://a/1,ws://a/2,ws://a/3,ws://a/4,ws://a/5,ws://a/6,ws://a/7,"
                            "ws://a/8,ws://a/9,ws://a/10,ws://a/11,ws://a/12,ws://a/13,ws://a/14,"
                            "ws://a/15,ws://a/16,ws://a/17"),
        ARGV("--peer-urls", "ws://a/ws", "--peer-urls", "ws://b"),
        ARGV("--peer-urls"),
    };
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

static void every_option(void **state)
{
    (void)state;
    struct config cfg;
    char **argv =
        ARGV("--http", "[::1]:0", "--telnet", "127.0.0.1:2424", "--data", "/tmp/x", "--workers",
             "3", "--max-message", "16777216", "--echo-endpoint", "--allowed-origin",
             "https://a.example", "--allowed-origin", "*", "--ping-interval", "0.25",
             "--idle-timeout", "2", "--node", "n1", "--log-level", "debug");
    assert_int_equal(parse(&cfg, 24, argv), CONFIG_OK);
    assert_int_equal(cfg.http.sa.ss_family, AF_INET6);
    assert_int_equal(cfg.telnet.sa.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.telnet.sa)->sin_port), 2424);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.max_message, 16777216);
    assert_true(cfg.echo_endpoint);
    assert_int_equal(cfg.n_allowed_origins, 2);
    assert_string_equal(cfg.allowed_origins[1], "*");
    assert_int_equal(cfg.ping_interval_ms, 250);
    assert_int_equal(cfg.idle_timeout_ms, 2000);
    assert_string_equal(cfg.node, "n1");
    assert_int_equal(cfg.log_level, LOG_DEBUG);
    config_free(&cfg);
}

static void refusals(void **state)
{
    (void)state;
    char **bad[] = {
        ARGV("--nope"),
        ARGV("--workers", "abc"),
        ARGV("--workers", "0"),
        ARGV("--workers", "-1"),
        ARGV("--http", "9999"),
        ARGV("--http", "1.2.3.4:70000"),
        ARGV("--http", "[::1"),
        ARGV("--http", "host:80"),
        ARGV("--max-message", "12"),
        ARGV("--log-level", "x"),
        ARGV("--idle-timeout", "0"),
        ARGV("--ping-interval", "nan"),
        ARGV("stray"),
        ARGV("--data", ""),
        ARGV("--http"),
    };
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

static void tls_options(void **state)
{
    (void)state;
    struct config cfg;
    char *none[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, none), CONFIG_OK);
    assert_null(cfg.tls_cert);
    assert_false(cfg.has_telnet_tls);
    assert_int_equal(cfg.tls_handshake_timeout_ms, 10000);
    config_free(&cfg);

    char **all = ARGV("--tls-cert", "c.pem", "--tls-key", "k.pem", "--telnet-tls", "127.0.0.1:2324",
                      "--tls-handshake-timeout", "1.5");
    assert_int_equal(parse(&cfg, 9, all), CONFIG_OK);
    assert_string_equal(cfg.tls_cert, "c.pem");
    assert_string_equal(cfg.tls_key, "k.pem");
    assert_true(cfg.has_telnet_tls);
    assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.telnet_tls.sa)->sin_port), 2324);
    assert_int_equal(cfg.tls_handshake_timeout_ms, 1500);
    config_free(&cfg);

    /* Options that only make sense together, and bad values. */
    char **bad[] = {
        ARGV("--tls-cert", "c.pem"),
        ARGV("--tls-key", "k.pem"),
        ARGV("--telnet-tls", "127.0.0.1:2324"),
        ARGV("--telnet-tls", "127.0.0.1:2324", "--tls-cert", "c.pem"),
        ARGV("--tls-cert", "c.pem", "--tls-key", "k.pem", "--telnet-tls", "nowhere"),
        ARGV("--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-handshake-timeout", "0"),
        ARGV("--tls-cert", "", "--tls-key", "k.pem"),
    };
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

/* permessage-deflate's options: on by default with a 128-byte threshold. */
static void deflate_options(void **state)
{
    (void)state;
    struct config cfg;
    char *none[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, none), CONFIG_OK);
    assert_true(cfg.deflate);
    assert_int_equal(cfg.deflate_threshold, 128);
    config_free(&cfg);
    char **argv = ARGV("--deflate", "off", "--deflate-threshold", "0");
    assert_int_equal(parse(&cfg, 5, argv), CONFIG_OK);
    assert_false(cfg.deflate);
    assert_int_equal(cfg.deflate_threshold, 0);
    config_free(&cfg);
    argv = ARGV("--deflate", "off", "--deflate", "on", "--deflate-threshold", "1073741824");
    assert_int_equal(parse(&cfg, 7, argv), CONFIG_OK);
    assert_true(cfg.deflate);
    assert_int_equal(cfg.deflate_threshold, 1u << 30);
    config_free(&cfg);
    char **bad[] = {
        ARGV("--deflate", "yes"),
        ARGV("--deflate", "ON"),
        ARGV("--deflate"),
        ARGV("--deflate-threshold", "-1"),
        ARGV("--deflate-threshold", "1k"),
        ARGV("--deflate-threshold", "1073741825"),
    };
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

/* The store's sync: normal (a commit survives kill -9) unless full (also a power loss). */
static void sync_options(void **state)
{
    (void)state;
    struct config cfg;
    char *none[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, none), CONFIG_OK);
    assert_false(cfg.sync_full);
    config_free(&cfg);
    char **argv = ARGV("--sync", "full");
    assert_int_equal(parse(&cfg, 3, argv), CONFIG_OK);
    assert_true(cfg.sync_full);
    config_free(&cfg);
    argv = ARGV("--sync", "full", "--sync", "normal");
    assert_int_equal(parse(&cfg, 5, argv), CONFIG_OK);
    assert_false(cfg.sync_full);
    config_free(&cfg);
    char **bad[] = {ARGV("--sync", "FULL"), ARGV("--sync", "off"), ARGV("--sync")};
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

/* Upgrades: drain over 10 s, a 10 s timeout, this binary unless told otherwise. */
static void upgrade_options(void **state)
{
    (void)state;
    struct config cfg;
    char *none[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, none), CONFIG_OK);
    assert_null(cfg.upgrade_binary);
    assert_int_equal(cfg.upgrade_timeout_ms, 10000);
    assert_int_equal(cfg.upgrade_mode, CONFIG_UPGRADE_LIVE);
    assert_int_equal(cfg.drain_time_ms, 10000);
    config_free(&cfg);
    char **argv = ARGV("--upgrade-binary", "/opt/parley/bin/parley", "--upgrade-timeout", "1.5",
                       "--upgrade-mode", "drain", "--drain-time", "0.25");
    assert_int_equal(parse(&cfg, 9, argv), CONFIG_OK);
    assert_string_equal(cfg.upgrade_binary, "/opt/parley/bin/parley");
    assert_int_equal(cfg.upgrade_timeout_ms, 1500);
    assert_int_equal(cfg.upgrade_mode, CONFIG_UPGRADE_DRAIN);
    assert_int_equal(cfg.drain_time_ms, 250);
    config_free(&cfg);
    char **live = ARGV("--upgrade-mode", "drain", "--upgrade-mode", "live");
    assert_int_equal(parse(&cfg, 5, live), CONFIG_OK);
    assert_int_equal(cfg.upgrade_mode, CONFIG_UPGRADE_LIVE);
    config_free(&cfg);
    char **bad[] = {
        ARGV("--upgrade-binary", ""),
        ARGV("--upgrade-timeout", "0"),
        ARGV("--upgrade-timeout", "soon"),
        ARGV("--upgrade-mode", "hot"),
        ARGV("--upgrade-mode"),
        ARGV("--drain-time", "-1"),
    };
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

/* --max-status (protocol 1.1 rule 69): 1..100000 (the default: protocol_1_1_defaults). */
static void status_options(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(parse(&cfg, 3, ARGV("--max-status", "100000")), CONFIG_OK);
    assert_int_equal(cfg.max_status, 100000);
    config_free(&cfg);
    char **bad[] = {ARGV("--max-status", "0"), ARGV("--max-status", "100001"),
                    ARGV("--max-status", "x")};
    assert_all_refused(bad, sizeof bad / sizeof bad[0]);
}

/* The defaults of protocol 1.1's options table; --react-rate follows --rate-limit unless given. */
static void protocol_1_1_defaults(void **state)
{
    (void)state;
    struct config cfg;
    char *none[] = {"parley", NULL};
    assert_int_equal(parse(&cfg, 1, none), CONFIG_OK);
    const uint64_t got[] = {
        cfg.edit_window_s,   cfg.max_reactions, cfg.max_topic,     cfg.max_status,  cfg.max_reason,
        cfg.max_duration_s,  cfg.react_rate,    cfg.search_rate,   cfg.search_scan, cfg.retention,
        cfg.max_total_rooms, cfg.telnet_queue,  cfg.presence_limit};
    const uint64_t want[] = {86400, 20, 300, 100, 300, 31536000, 20, 10, 10000, 0, 10000, 50, 100};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(got[i], want[i]);
    config_free(&cfg);
    assert_int_equal(parse(&cfg, 3, ARGV("--rate-limit", "7")), CONFIG_OK);
    assert_int_equal(cfg.react_rate, 7);
    config_free(&cfg);
    assert_int_equal(parse(&cfg, 5, ARGV("--rate-limit", "7", "--react-rate", "3")), CONFIG_OK);
    assert_int_equal(cfg.react_rate, 3);
    config_free(&cfg);
}

/* --admin NAME is repeatable (protocol 1.1 rule 59): every name is kept, as given. */
static void admin_option_repeats(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(parse(&cfg, 5, ARGV("--admin", "Alice", "--admin", "bob")), CONFIG_OK);
    assert_int_equal(cfg.n_admins, 2);
    assert_string_equal(cfg.admins[0], "Alice");
    assert_string_equal(cfg.admins[1], "bob");
    config_free(&cfg);
    char **bad[] = {ARGV("--admin", "no spaces")};
    assert_all_refused(bad, 1);
}

static void help_and_version_exit_cleanly(void **state)
{
    (void)state;
    struct config cfg;
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    char **help = ARGV("--help");
    char **version = ARGV("--version");
    enum config_result a = config_parse(&cfg, 2, help);
    enum config_result b = config_parse(&cfg, 2, version);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(a, CONFIG_EXIT_OK);
    assert_int_equal(b, CONFIG_EXIT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(broker_options),
        cmocka_unit_test(every_option),
        cmocka_unit_test(peer_urls_option),
        cmocka_unit_test(refusals),
        cmocka_unit_test(help_and_version_exit_cleanly),
        cmocka_unit_test(deflate_options),
        cmocka_unit_test(sync_options),
        cmocka_unit_test(tls_options),
        cmocka_unit_test(upgrade_options),
        cmocka_unit_test(status_options),
        cmocka_unit_test(protocol_1_1_defaults),
        cmocka_unit_test(admin_option_repeats),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
