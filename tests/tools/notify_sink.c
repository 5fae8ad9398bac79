/*
 * notify_sink: a stand-in for systemd's notification socket, for tests. Binds an AF_UNIX datagram
 * socket at argv[1] (what NOTIFY_SOCKET names), prints "listening" once it is bound, then one line
 * per datagram: "pid=<sender> <the message with newlines as spaces>". Runs until killed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: notify_sink PATH\n");
        return 2;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (fd < 0 || strlen(argv[1]) >= sizeof sa.sun_path) {
        perror("notify_sink: socket");
        return 1;
    }
    memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
    int one = 1;
    unlink(argv[1]);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
        perror("notify_sink: bind");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        char buf[4096];
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = {buf, sizeof buf - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control};
        ssize_t n = recvmsg(fd, &mh, 0);
        if (n < 0)
            continue;
        buf[n] = '\0';
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n')
                buf[i] = ' ';
        int pid = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(cm), sizeof cred);
                pid = cred.pid;
            }
        }
        printf("pid=%d %s\n", pid, buf);
        fflush(stdout);
    }
}
