/* test_tune_listener: a socket accepted from a tuned listener has every option worker.c wants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker.h"

static int opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

/* A listener on 127.0.0.1 (any port), tuned or not; *addr gets its address. */
static int listener(bool tune, struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    socklen_t len = sizeof *addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    assert_int_equal(listen(fd, 4), 0);
    if (tune)
        worker_tune_listener(fd);
    return fd;
}

/* Connects to the listener and returns the socket accept gives for it (*client: the other end). */
static int accepted(int lfd, const struct sockaddr_in *addr, int *client)
{
    *client = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*client, (const struct sockaddr *)addr, sizeof *addr), 0);
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* Accepts a connection from a listener tuned or not, and checks the accepted socket's options:
 * the untuned case shows the check can fail (the kernel's defaults differ). */
static void check_accepted(bool tune)
{
    struct sockaddr_in addr;
    int lfd = listener(tune, &addr), client;
    int fd = accepted(lfd, &addr, &client);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_NODELAY) != 0, tune);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_KEEPALIVE) != 0, tune);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), tune ? 120000 : 0);
    if (tune) {
        assert_int_equal(opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
        assert_int_equal(opt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 15);
        assert_int_equal(opt(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    }
    close(fd);
    close(client);
    close(lfd);
}

static void accepted_socket_inherits_the_options(void **state)
{
    (void)state;
    check_accepted(true);
}

static void untuned_listener_gives_defaults(void **state)
{
    (void)state;
    check_accepted(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted_socket_inherits_the_options),
        cmocka_unit_test(untuned_listener_gives_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
