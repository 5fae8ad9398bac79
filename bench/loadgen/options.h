/*
 * options: the load generator's command line, parsed and checked once in the
 * coordinator and read by every worker process (the struct is copied by fork).
 */
#ifndef LOADGEN_OPTIONS_H
#define LOADGEN_OPTIONS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum scenario { SC_IDLE, SC_BROADCAST, SC_ALL, SC_ROOMS, SC_STORM };
enum protocol { PR_PARLEY, PR_RELAY };
enum split { SPLIT_NONE, SPLIT_RANDOM };

struct options {
    struct sockaddr_in server;
    char host_header[64]; /* "127.0.0.1:9999" */
    char path[128];
    enum protocol protocol;
    enum scenario scenario;
    enum split split;
    uint32_t clients;
    uint32_t rooms;
    uint32_t messages; /* broadcast */
    uint32_t inflight; /* broadcast */
    uint32_t rounds;   /* all */
    double send_rate;  /* rooms, storm: messages per second, all clients together */
    double duration;   /* idle: hold; others: the traffic's time bound (storm: before the storm) */
    double storm_lag;  /* storm: seconds the clients read nothing before the drop */
    bool storm_restart; /* storm: the server restarts in the lag; failed reconnects are retried */
    double connect_rate; /* new connections per second, 0 = no pacing */
    uint32_t batch;      /* connections being set up at once */
    uint32_t procs;
    uint32_t src_first, src_last; /* source addresses, host order; 0 = the kernel's choice */
    pid_t server_pid;
    uint32_t text_size; /* bytes of each text, at least what the stamp needs */
    double timeout;     /* the whole run's bound */
    double drain_timeout;
    uint64_t seed;
    char name_prefix[20];
    char room_prefix[20];
    bool quiet;
    bool relay_lines; /* relay: a text may carry several messages joined by '\n' */
};

/*
 * Parses argv into *o with every default filled in. Returns 0, 1 when --help
 * was printed, or -1 after printing what is wrong to stderr.
 */
int options_parse(struct options *o, int argc, char **argv);

/* The scenario's and the protocol's name. */
const char *options_scenario_name(enum scenario s);
const char *options_protocol_name(enum protocol p);

#endif
