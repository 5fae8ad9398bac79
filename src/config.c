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

static const char usage[] =
    "Usage: parley [options]\n"
    "A chat server: browsers over WebSocket and people on telnet, in rooms and direct messages.\n"
    "\n"
    "  --http ADDR:PORT          HTTP and WebSocket listener (default 0.0.0.0:9999; port 0 picks one)\n"
    "  --telnet ADDR:PORT        telnet line listener (default 0.0.0.0:2323)\n"
    "  --data DIR                data directory (default ./parley-data)\n"
    "  --workers N               event-loop threads (default: number of cores)\n"
    "  --max-message BYTES       largest WebSocket message accepted (default 65536)\n"
    "  --echo-endpoint           serve GET /echo, an RFC 6455 echo endpoint\n"
    "  --allowed-origin ORIGIN   also accept WebSocket upgrades from ORIGIN (repeatable; * = any)\n"
    "  --ping-interval SECONDS   WebSocket ping interval (default 30)\n"
    "  --idle-timeout SECONDS    close WebSockets silent this long (default 75)\n"
    "  --node NAME               this node's name in greetings (default: host name)\n"
    "  --log-level LEVEL         debug, info, warn or error (default info)\n"
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
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
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
    if (gethostname(cfg->node, sizeof cfg->node) != 0 || cfg->node[0] == '\0')
        memcpy(cfg->node, "parley", 7);
    cfg->node[sizeof cfg->node - 1] = '\0';
}

static enum config_result bad(const char *opt, const char *value, const char *want)
{
    fprintf(stderr, "parley: invalid value '%s' for --%s: %s\nTry 'parley --help'.\n", value, opt,
            want);
    return CONFIG_ERROR;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv)
{
    set_defaults(cfg);
    uint64_t v;
    int opt;
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
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &cfg->log_level) < 0)
                return bad("log-level", optarg, "expected debug, info, warn or error");
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
    return CONFIG_OK;
}

void config_free(struct config *cfg)
{
    free(cfg->allowed_origins);
    cfg->allowed_origins = NULL;
    cfg->n_allowed_origins = 0;
}
