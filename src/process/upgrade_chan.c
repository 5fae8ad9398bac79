/* upgrade_chan: typed messages, with descriptors, between an old and a new parley process. */
#include "upgrade_chan.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void upgrade_chan_header(uint8_t *out, uint16_t type, uint32_t len)
{
    put32(out, UPGRADE_CHAN_MAGIC);
    out[4] = (uint8_t)UPGRADE_CHAN_VERSION;
    out[5] = (uint8_t)(UPGRADE_CHAN_VERSION >> 8);
    out[6] = (uint8_t)type;
    out[7] = (uint8_t)(type >> 8);
    put32(out + 8, len);
}

int upgrade_chan_parse(const uint8_t *buf, size_t n, struct upgrade_msg *msg)
{
    if (n < UPGRADE_CHAN_HEADER || get32(buf) != UPGRADE_CHAN_MAGIC)
        return -1;
    uint32_t len = get32(buf + 8);
    if (len > UPGRADE_CHAN_MAX_PAYLOAD || (size_t)len != n - UPGRADE_CHAN_HEADER)
        return -1;
    msg->version = (uint16_t)(buf[4] | buf[5] << 8);
    msg->type = (uint16_t)(buf[6] | buf[7] << 8);
    msg->len = len;
    return 0;
}

int upgrade_chan_send(int fd, enum upgrade_msg_type type, const char *payload, const int *fds,
                      size_t n_fds)
{
    return upgrade_chan_send_bytes(fd, type, payload, payload ? strlen(payload) : 0, fds, n_fds,
                                   false);
}

int upgrade_chan_send_bytes(int fd, enum upgrade_msg_type type, const void *payload, size_t len,
                            const int *fds, size_t n_fds, bool nonblock)
{
    if (len > UPGRADE_CHAN_MAX_PAYLOAD || n_fds > UPGRADE_CHAN_MAX_FDS)
        return -EMSGSIZE;
    uint8_t header[UPGRADE_CHAN_HEADER];
    upgrade_chan_header(header, (uint16_t)type, (uint32_t)len);
    struct iovec iov[2] = {{header, sizeof header}, {(void *)payload, len}};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * UPGRADE_CHAN_MAX_FDS)];
    } control;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (n_fds > 0) {
        memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
    }
    ssize_t n;
    do
        n = sendmsg(fd, &mh, MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (size_t)n == sizeof header + len ? 0 : -EIO;
}

int upgrade_chan_recv(int fd, struct upgrade_msg *msg)
{
    uint8_t buf[UPGRADE_CHAN_HEADER + UPGRADE_CHAN_MAX_PAYLOAD];
    struct iovec iov = {buf, sizeof buf};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * UPGRADE_CHAN_MAX_FDS)];
    } control;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof control};
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    msg->n_fds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && msg->n_fds < UPGRADE_CHAN_MAX_FDS; i++)
            memcpy(&msg->fds[msg->n_fds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    }
    if (n == 0 && msg->n_fds == 0)
        return 0; /* end-of-file: every copy of the other end is closed */
    if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || upgrade_chan_parse(buf, (size_t)n, msg) < 0) {
        for (size_t i = 0; i < msg->n_fds; i++)
            close(msg->fds[i]);
        msg->n_fds = 0;
        return -EPROTO;
    }
    memcpy(msg->payload, buf + UPGRADE_CHAN_HEADER, msg->len);
    msg->payload[msg->len] = '\0';
    return 1;
}

bool upgrade_chan_field(const char *payload, const char *key, char *out, size_t outsz)
{
    size_t klen = strlen(key);
    const char *p = payload;
    while (p && *p) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > klen && p[klen] == '=' && memcmp(p, key, klen) == 0) {
            size_t vlen = len - klen - 1;
            if (vlen >= outsz)
                return false;
            memcpy(out, p + klen + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}
