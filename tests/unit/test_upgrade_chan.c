/* test_upgrade_chan: the control channel's messages: framing, descriptors, end-of-file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upgrade_chan.h"

static struct upgrade_msg msg; /* 64 KiB */

static void header_round_trip(void **state)
{
    (void)state;
    uint8_t buf[UPGRADE_CHAN_HEADER + 5];
    upgrade_chan_header(buf, UPGRADE_MSG_READY, 5);
    memcpy(buf + UPGRADE_CHAN_HEADER, "pid=1", 5);
    assert_int_equal(upgrade_chan_parse(buf, sizeof buf, &msg), 0);
    assert_int_equal(msg.type, UPGRADE_MSG_READY);
    assert_int_equal(msg.version, UPGRADE_CHAN_VERSION);
    assert_int_equal(msg.len, 5);
    /* A length that is not the rest of the datagram, a short one, a foreign magic. */
    assert_int_equal(upgrade_chan_parse(buf, sizeof buf - 1, &msg), -1);
    assert_int_equal(upgrade_chan_parse(buf, 11, &msg), -1);
    buf[0] ^= 1;
    assert_int_equal(upgrade_chan_parse(buf, sizeof buf, &msg), -1);
}

static void fields(void **state)
{
    (void)state;
    char v[16];
    const char *p = "pid=42 version=0.1.0 chan=1";
    assert_true(upgrade_chan_field(p, "pid", v, sizeof v));
    assert_string_equal(v, "42");
    assert_true(upgrade_chan_field(p, "chan", v, sizeof v));
    assert_string_equal(v, "1");
    assert_false(upgrade_chan_field(p, "pi", v, sizeof v));
    assert_false(upgrade_chan_field(p, "version", v, 3)); /* does not fit */
    assert_false(upgrade_chan_field("", "pid", v, sizeof v));
}

/* Messages keep their boundaries, carry descriptors, and the peer's close reads as EOF. */
static void messages_and_descriptors(void **state)
{
    (void)state;
    int sv[2], pipefd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(upgrade_chan_recv(sv[1], &msg), -EAGAIN);
    assert_int_equal(upgrade_chan_send(sv[0], UPGRADE_MSG_READY, "pid=7 chan=1", NULL, 0), 0);
    assert_int_equal(upgrade_chan_send(sv[0], UPGRADE_MSG_GO, "", pipefd, 2), 0);
    assert_int_equal(upgrade_chan_recv(sv[1], &msg), 1);
    assert_int_equal(msg.type, UPGRADE_MSG_READY);
    assert_string_equal((char *)msg.payload, "pid=7 chan=1");
    assert_int_equal(msg.n_fds, 0);
    assert_int_equal(upgrade_chan_recv(sv[1], &msg), 1);
    assert_int_equal(msg.type, UPGRADE_MSG_GO);
    assert_int_equal(msg.len, 0);
    assert_int_equal(msg.n_fds, 2);
    /* The received write end reaches the original read end, and arrived close-on-exec. */
    assert_true(fcntl(msg.fds[1], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(msg.fds[1], "x", 1), 1);
    char c = 0;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    close(msg.fds[0]);
    close(msg.fds[1]);
    /* Not a message of ours: refused. */
    assert_int_equal(write(sv[0], "hello, world", 12), 12);
    assert_int_equal(upgrade_chan_recv(sv[1], &msg), -EPROTO);
    close(sv[0]);
    assert_int_equal(upgrade_chan_recv(sv[1], &msg), 0);
    assert_int_equal(upgrade_chan_send(sv[1], UPGRADE_MSG_SERVING, "pid=7", NULL, 0), -EPIPE);
    close(sv[1]);
    close(pipefd[0]);
    close(pipefd[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_round_trip),
        cmocka_unit_test(fields),
        cmocka_unit_test(messages_and_descriptors),
    };
    return cmocka_run_group_tests_name("upgrade_chan", tests, NULL, NULL);
}
