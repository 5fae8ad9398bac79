/*
 * listen_fds: listening sockets this process was handed at start instead of
 * binding them, in the manner of systemd's socket activation: fds 3.. with
 * LISTEN_FDS=n, LISTEN_PID=<our pid> and LISTEN_FDNAMES=name:name:...
 * systemd passes them that way (names from FileDescriptorName=), and so does
 * a parley process upgrading itself to a new binary (upgrade.c).
 *
 * DESIGN: a socket is named by its port's role: "http", "telnet" or
 * "telnet-tls". Several fds may carry one name (one SO_REUSEPORT socket per
 * worker of the process that passed them). When no fd carries one of these
 * names (systemd names fds after their socket unit unless told otherwise),
 * they are taken in order: http, then telnet, then telnet-tls.
 */
#ifndef PARLEY_LISTEN_FDS_H
#define PARLEY_LISTEN_FDS_H

#include <stddef.h>

#define LISTEN_FDS_START 3

enum listen_kind { LISTEN_HTTP, LISTEN_TELNET, LISTEN_TELNET_TLS, LISTEN_KINDS };

/* The sockets received, by kind: fds[k][0..n[k]). */
struct listen_fds {
    int *fds[LISTEN_KINDS];
    size_t n[LISTEN_KINDS];
    size_t total;
};

/* The name a kind's sockets are passed under ("http", "telnet", "telnet-tls"). */
const char *listen_kind_name(enum listen_kind k);

/*
 * Pure: gives each of the n fds its kind from names (LISTEN_FDNAMES: n names
 * separated by ':', or NULL when unset) into kinds[0..n). Returns 0, or -1
 * with a sentence in err[0..errsz): some fds named and others not, a name
 * repeated out of order in positional mode, or more than three unnamed fds.
 */
int listen_fds_assign(const char *names, size_t n, enum listen_kind *kinds, char *err,
                      size_t errsz);

/*
 * Takes the sockets handed to this process, if LISTEN_PID names it, and
 * removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment.
 * Each fd must be a listening stream socket; it is made non-blocking and
 * close-on-exec. Returns the number taken (0: none were passed), or -1 with
 * a sentence in err (the caller exits with status 2).
 */
int listen_fds_take(struct listen_fds *out, char *err, size_t errsz);

/* Frees the arrays of lf (not the sockets, which the caller has handed on). */
void listen_fds_free(struct listen_fds *lf);

#endif
