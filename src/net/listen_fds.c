/* listen_fds: taking listening sockets passed by systemd or by the process we upgrade from. */
#include "listen_fds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

/* More would be a mistake in the environment, not sockets: a process has 256 workers at most. */
#define MAX_FDS 4096

static const char *const kind_names[LISTEN_KINDS] = {"http", "telnet", "telnet-tls"};

const char *listen_kind_name(enum listen_kind k)
{
    return kind_names[k];
}

/* The kind named by name[0..len), or -1 for a name that is not one of ours. */
static int kind_of(const char *name, size_t len)
{
    for (int k = 0; k < LISTEN_KINDS; k++)
        if (strlen(kind_names[k]) == len && memcmp(kind_names[k], name, len) == 0)
            return k;
    return -1;
}

int listen_fds_assign(const char *names, size_t n, enum listen_kind *kinds, char *err, size_t errsz)
{
    size_t named = 0;
    const char *p = names;
    for (size_t i = 0; i < n; i++) {
        int k = -1;
        if (p) {
            const char *end = strchr(p, ':');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            k = kind_of(p, len);
            p = end ? end + 1 : NULL;
        }
        if (k >= 0) {
            kinds[i] = (enum listen_kind)k;
            named++;
        }
    }
    if (named == n)
        return 0;
    if (named > 0) {
        snprintf(err, errsz,
                 "%zu of the %zu sockets passed (LISTEN_FDNAMES) are named http, telnet or "
                 "telnet-tls and the others are not: name all of them, or none",
                 named, n);
        return -1;
    }
    if (n > LISTEN_KINDS) {
        snprintf(err, errsz,
                 "%zu unnamed sockets passed: without names (FileDescriptorName=http, telnet or "
                 "telnet-tls) parley takes at most three, in the order http, telnet, telnet-tls",
                 n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        kinds[i] = (enum listen_kind)i;
    return 0;
}

/* Parses a decimal number that is all of s; -1 if it is not one. */
static long parse_long(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || *end || v < 0 ? -1 : v;
}

/* True when fd is a listening stream socket. */
static bool is_listener(int fd)
{
    struct stat st;
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return false;
    len = sizeof listening;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening;
}

int listen_fds_take(struct listen_fds *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    long pid = parse_long(getenv("LISTEN_PID"));
    long n = parse_long(getenv("LISTEN_FDS"));
    char *names = getenv("LISTEN_FDNAMES");
    names = names ? xstrdup(names) : NULL;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid != (long)getpid() || n <= 0) {
        free(names);
        return 0; /* meant for another process (or none passed) */
    }
    if (n > MAX_FDS) {
        snprintf(err, errsz, "LISTEN_FDS=%ld is more sockets than parley takes", n);
        free(names);
        return -1;
    }
    enum listen_kind *kinds = xcalloc((size_t)n, sizeof *kinds);
    int rc = listen_fds_assign(names, (size_t)n, kinds, err, errsz);
    free(names);
    for (long i = 0; rc == 0 && i < n; i++) {
        int fd = LISTEN_FDS_START + (int)i;
        if (!is_listener(fd)) {
            snprintf(err, errsz, "fd %d (passed by LISTEN_FDS) is not a listening TCP socket", fd);
            rc = -1;
        }
    }
    if (rc < 0) {
        free(kinds);
        return -1;
    }
    for (long i = 0; i < n; i++) {
        int fd = LISTEN_FDS_START + (int)i;
        /* systemd passes blocking sockets: a worker that lost the race for a connection would
         * block in accept. And none of them may leak into a process we start. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        enum listen_kind k = kinds[i];
        out->fds[k] = xrealloc(out->fds[k], (out->n[k] + 1) * sizeof *out->fds[k]);
        out->fds[k][out->n[k]++] = fd;
        out->total++;
    }
    free(kinds);
    return (int)out->total;
}

void listen_fds_free(struct listen_fds *lf)
{
    for (int k = 0; k < LISTEN_KINDS; k++) {
        free(lf->fds[k]);
        lf->fds[k] = NULL;
        lf->n[k] = 0;
    }
    lf->total = 0;
}
