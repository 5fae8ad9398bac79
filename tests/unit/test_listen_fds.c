/* test_listen_fds: which port each inherited socket serves, from LISTEN_FDNAMES or by position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen_fds.h"

static void names_decide(void **state)
{
    (void)state;
    enum listen_kind k[6];
    char err[256];
    assert_int_equal(
        listen_fds_assign("http:http:telnet:telnet:telnet-tls:telnet-tls", 6, k, err, sizeof err),
        0);
    enum listen_kind want[] = {LISTEN_HTTP,   LISTEN_HTTP,       LISTEN_TELNET,
                               LISTEN_TELNET, LISTEN_TELNET_TLS, LISTEN_TELNET_TLS};
    assert_memory_equal(k, want, sizeof want);
    /* Any order: a name is a name. */
    assert_int_equal(listen_fds_assign("telnet:http", 2, k, err, sizeof err), 0);
    assert_int_equal(k[0], LISTEN_TELNET);
    assert_int_equal(k[1], LISTEN_HTTP);
}

static void unnamed_go_in_order(void **state)
{
    (void)state;
    enum listen_kind k[3];
    char err[256];
    /* systemd names fds after their socket unit unless FileDescriptorName= says otherwise. */
    assert_int_equal(listen_fds_assign("parley.socket:parley.socket", 2, k, err, sizeof err), 0);
    assert_int_equal(k[0], LISTEN_HTTP);
    assert_int_equal(k[1], LISTEN_TELNET);
    assert_int_equal(listen_fds_assign(NULL, 3, k, err, sizeof err), 0);
    assert_int_equal(k[2], LISTEN_TELNET_TLS);
    assert_int_equal(listen_fds_assign("unknown", 1, k, err, sizeof err), 0);
    assert_int_equal(k[0], LISTEN_HTTP);
    /* Fewer names than fds: the rest are unnamed. */
    assert_int_equal(listen_fds_assign("x", 2, k, err, sizeof err), 0);
    assert_int_equal(k[1], LISTEN_TELNET);
}

static void ambiguous_is_refused(void **state)
{
    (void)state;
    enum listen_kind k[4];
    char err[256] = "";
    assert_int_equal(listen_fds_assign("http:parley.socket", 2, k, err, sizeof err), -1);
    assert_non_null(strstr(err, "name all of them"));
    err[0] = '\0';
    assert_int_equal(listen_fds_assign(NULL, 4, k, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    /* A prefix of a name is not the name. */
    assert_int_equal(listen_fds_assign("telnet-tlsx:http", 2, k, err, sizeof err), -1);
}

/* Sockets taken from the environment: LISTEN_PID must be ours, each fd a listening socket. */
static void take_checks_pid_and_sockets(void **state)
{
    (void)state;
    struct listen_fds lf;
    char err[256];
    setenv("LISTEN_PID", "1", 1); /* not us */
    setenv("LISTEN_FDS", "1", 1);
    assert_int_equal(listen_fds_take(&lf, err, sizeof err), 0);
    assert_null(getenv("LISTEN_FDS")); /* removed either way */
    /* fd 3 a listening socket, fd 4 a socket that is not listening. */
    int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(listen(a, 1), 0);
    int saved3 = dup(3), saved4 = dup(4);
    assert_int_equal(dup2(a, 3), 3);
    assert_int_equal(dup2(b, 4), 4);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "telnet", 1);
    assert_int_equal(listen_fds_take(&lf, err, sizeof err), 1);
    assert_int_equal(lf.n[LISTEN_TELNET], 1);
    assert_int_equal(lf.fds[LISTEN_TELNET][0], 3);
    listen_fds_free(&lf);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    assert_int_equal(listen_fds_take(&lf, err, sizeof err), -1);
    assert_non_null(strstr(err, "fd 4"));
    dup2(saved3, 3);
    dup2(saved4, 4);
    close(saved3);
    close(saved4);
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_decide),
        cmocka_unit_test(unnamed_go_in_order),
        cmocka_unit_test(ambiguous_is_refused),
        cmocka_unit_test(take_checks_pid_and_sockets),
    };
    return cmocka_run_group_tests_name("listen_fds", tests, NULL, NULL);
}
