/* client: WebSocket client connections on an epoll loop. */
#include "client.h"

#include "wsc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_SIZE (256 * 1024)
#define WBUF_SIZE (256 * 1024)
/* The largest frame or response head a client keeps: a `joined` of a room of 100,000 names fits. */
#define MAX_PENDING (64u * 1024 * 1024)
#define MAX_HEAD 16384

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t net_rand(struct net *n)
{
    return splitmix(&n->rng);
}

int net_init(struct net *n, const struct options *o, const struct net_callbacks *cb, void *user)
{
    memset(n, 0, sizeof *n);
    n->o = o;
    n->cb = *cb;
    n->user = user;
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (n->epfd < 0)
        return -errno;
    n->rbuf_cap = RBUF_SIZE;
    n->rbuf = xrealloc(NULL, RBUF_SIZE);
    n->wbuf_cap = WBUF_SIZE;
    n->wbuf = xrealloc(NULL, WBUF_SIZE);
    n->rng = o->seed ^ ((uint64_t)getpid() << 32);
    return 0;
}

/* The handshake key of c's current connection: fixed by the seed, the client and the count. */
static void client_key(const struct net *n, const struct client *c, char key[25])
{
    uint64_t s = n->o->seed ^ ((uint64_t)c->id << 8) ^ c->gen;
    uint64_t a = splitmix(&s), b = splitmix(&s);
    uint8_t raw[16];
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    wsc_key_encode(raw, key);
}

static void free_buffers(struct client *c)
{
    free(c->in);
    free(c->msg);
    free(c->out);
    c->in = c->msg = c->out = NULL;
    c->in_len = c->in_cap = c->msg_len = c->msg_cap = 0;
    c->out_off = c->out_len = c->out_cap = 0;
    c->in_msg = false;
}

void client_close(struct net *n, struct client *c)
{
    (void)n;
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->state = CS_IDLE;
    c->want_out = false;
    free_buffers(c);
}

/* Ends c for a reason we did not choose, and tells the caller. */
static void client_fail(struct net *n, struct client *c, const char *why)
{
    client_close(n, c);
    n->cb.on_closed(n, c, why);
}

static void set_out_interest(struct net *n, struct client *c, bool want)
{
    if (c->want_out == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(n->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

int client_connect(struct net *n, struct client *c)
{
    const struct options *o = n->o;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->src_first) {
        /* The port is picked at connect(), per destination, not at bind(): more than 28,000
         * connections then fit on one source address. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        uint32_t span = o->src_last - o->src_first + 1;
        src.sin_addr.s_addr = htonl(o->src_first + c->id % span);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    int r = connect(fd, (const struct sockaddr *)&o->server, sizeof o->server);
    if (r < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->want_out = true;
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        close(fd);
        c->fd = -1;
        c->state = CS_IDLE;
        return -e;
    }
    return 0;
}
/* Returns buf grown (doubling from 1 KiB) to hold at least need bytes; *cap is updated. */
static uint8_t *grow(uint8_t *buf, uint32_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    *cap = (uint32_t)n;
    return xrealloc(buf, n);
}

/* Appends bytes to c's output buffer. */
static void out_append(struct client *c, const uint8_t *p, size_t len)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap)
            c->out = grow(c->out, &c->out_cap, c->out_len + len);
    }
    memcpy(c->out + c->out_len, p, len);
    c->out_len += (uint32_t)len;
}

/* Writes what is queued. Returns false when the connection failed (left to the reader). */
static bool flush_out(struct net *n, struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return false;
        }
        c->out_off += (uint32_t)w;
    }
    bool pending = c->out_off < c->out_len;
    if (!pending) {
        free(c->out); /* an idle client keeps no output memory */
        c->out = NULL;
        c->out_off = c->out_len = c->out_cap = 0;
    }
    set_out_interest(n, c, pending);
    return true;
}

/* Sends bytes now (in one write) or queues them behind what is waiting. */
static void send_bytes(struct net *n, struct client *c, const uint8_t *p, size_t len)
{
    if (c->out_len == c->out_off) {
        while (len > 0) {
            ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN)
                    return; /* the reader will find the connection gone */
                break;
            }
            p += w;
            len -= (size_t)w;
        }
        if (len == 0)
            return;
    }
    out_append(c, p, len);
    set_out_interest(n, c, true);
}

int client_send_text(struct net *n, struct client *c, const char *text, size_t len)
{
    if (c->state != CS_OPEN)
        return -1;
    size_t need = len + 3 * WSC_MAX_HEADER;
    if (need > n->wbuf_cap) {
        n->wbuf = xrealloc(n->wbuf, need);
        n->wbuf_cap = need;
    }
    const uint8_t *payload = (const uint8_t *)text;
    size_t at = 0;
    if (n->o->split == SPLIT_NONE) {
        at = wsc_frame_write(n->wbuf, WSC_OP_TEXT, true, payload, len, (uint32_t)net_rand(n));
        send_bytes(n, c, n->wbuf, at);
        return 0;
    }
    /* Random: the message in 1 to 3 frames cut at random points (empty frames included), the
     * bytes in 1 to 4 writes cut at random points, so the server sees any boundary. */
    uint64_t r = net_rand(n);
    unsigned frames = 1 + (unsigned)(r % 3);
    size_t cut1 = len ? (size_t)((r >> 8) % (len + 1)) : 0;
    size_t cut2 = len ? (size_t)((r >> 24) % (len + 1)) : 0;
    if (cut1 > cut2) {
        size_t t = cut1;
        cut1 = cut2;
        cut2 = t;
    }
    size_t bounds[4] = {0, len, len, len};
    if (frames == 2)
        bounds[1] = cut1;
    else if (frames == 3) {
        bounds[1] = cut1;
        bounds[2] = cut2;
    }
    for (unsigned f = 0; f < frames; f++) {
        size_t from = bounds[f], to = f + 1 == frames ? len : bounds[f + 1];
        at += wsc_frame_write(n->wbuf + at, f == 0 ? WSC_OP_TEXT : WSC_OP_CONT, f + 1 == frames,
                              payload + from, to - from, (uint32_t)net_rand(n));
    }
    unsigned writes = 1 + (unsigned)((r >> 40) % 4);
    size_t done = 0;
    for (unsigned w = 1; w <= writes; w++) {
        size_t end = w == writes ? at : done + (size_t)(net_rand(n) % (at - done + 1));
        if (end > done)
            send_bytes(n, c, n->wbuf + done, end - done);
        done = end;
        if (c->fd < 0)
            break;
    }
    return 0;
}

/* Sends a control frame (pong, close) with a short payload. */
static void send_control(struct net *n, struct client *c, uint8_t op, const uint8_t *p, size_t len)
{
    uint8_t f[WSC_MAX_HEADER + 125];
    size_t flen = wsc_frame_write(f, op, true, p, len, (uint32_t)net_rand(n));
    send_bytes(n, c, f, flen);
}

/* Keeps a copy of bytes in c->msg (a fragmented message being put together). */
static bool msg_append(struct client *c, const uint8_t *p, uint64_t len)
{
    if ((uint64_t)c->msg_len + len > MAX_PENDING)
        return false;
    if (c->msg_len + len > c->msg_cap)
        c->msg = grow(c->msg, &c->msg_cap, c->msg_len + len);
    memcpy(c->msg + c->msg_len, p, len);
    c->msg_len += (uint32_t)len;
    return true;
}

/*
 * Handles the frames at the start of buf[0..len). Returns the bytes used (an
 * incomplete frame is left), or -1 when c was closed; *need gets the size the
 * incomplete frame needs, when known.
 */
static int64_t take_frames(struct net *n, struct client *c, const uint8_t *buf, size_t len,
                           uint64_t *need)
{
    size_t used = 0;
    *need = 0;
    while (used < len) {
        struct wsc_frame f;
        int64_t r = wsc_frame_parse(buf + used, len - used, &f);
        if (r == 0) {
            *need = f.need;
            if (f.need > MAX_PENDING) {
                client_fail(n, c, "a frame over 64 MiB");
                return -1;
            }
            break;
        }
        if (r < 0) {
            client_fail(n, c, "a frame that breaks RFC 6455");
            return -1;
        }
        used += (size_t)r;
        switch (f.opcode) {
        case WSC_OP_TEXT:
        case WSC_OP_BINARY:
            if (c->in_msg) {
                client_fail(n, c, "a new message inside a fragmented one");
                return -1;
            }
            if (f.fin) {
                n->cb.on_text(n, c, f.payload, f.len);
            } else {
                c->in_msg = true;
                c->msg_len = 0;
                if (!msg_append(c, f.payload, f.len)) {
                    client_fail(n, c, "a message over 64 MiB");
                    return -1;
                }
            }
            break;
        case WSC_OP_CONT:
            if (!c->in_msg) {
                client_fail(n, c, "a continuation frame without a message");
                return -1;
            }
            if (!msg_append(c, f.payload, f.len)) {
                client_fail(n, c, "a message over 64 MiB");
                return -1;
            }
            if (f.fin) {
                c->in_msg = false;
                n->cb.on_text(n, c, c->msg, c->msg_len);
                if (c->fd >= 0) {
                    free(c->msg);
                    c->msg = NULL;
                    c->msg_len = c->msg_cap = 0;
                }
            }
            break;
        case WSC_OP_PING:
            send_control(n, c, WSC_OP_PONG, f.payload, f.len);
            break;
        case WSC_OP_PONG:
            break;
        case WSC_OP_CLOSE: {
            unsigned code = f.len >= 2 ? (unsigned)(f.payload[0] << 8 | f.payload[1]) : 1005;
            int rlen = f.len > 2 ? (int)(f.len - 2) : 0;
            snprintf(n->why, sizeof n->why, "closed by the server: %u %.*s", code, rlen,
                     f.len > 2 ? (const char *)f.payload + 2 : "");
            client_fail(n, c, n->why);
            return -1;
        }
        }
        if (c->fd < 0)
            return -1;
    }
    return (int64_t)used;
}

/* Makes room for at least `more` bytes after c->in's content. */
static void in_reserve(struct client *c, size_t more)
{
    if (c->in_len + more <= c->in_cap)
        return;
    size_t cap = c->in_cap ? c->in_cap : 4096;
    while (cap < c->in_len + more)
        cap *= 2;
    c->in = xrealloc(c->in, cap);
    c->in_cap = (uint32_t)cap;
}

static void drop_in(struct client *c)
{
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

/* The 101 head is in c->in: checks it, opens c, and takes the frames after it. */
static void finish_upgrade(struct net *n, struct client *c)
{
    const uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len > MAX_HEAD)
            client_fail(n, c, "an upgrade answer over 16 KiB");
        return;
    }
    size_t head = (size_t)(end - c->in) + 4;
    char key[25];
    client_key(n, c, key);
    const char *bad = wsc_response_check((const char *)c->in, head, key);
    if (bad) {
        const uint8_t *eol = memchr(c->in, '\r', head);
        int shown = (int)(eol - c->in) < 80 ? (int)(eol - c->in) : 80;
        snprintf(n->why, sizeof n->why, "%s: %.*s", bad, shown, (const char *)c->in);
        client_fail(n, c, n->why);
        return;
    }
    c->state = CS_OPEN;
    n->cb.on_open(n, c);
    if (c->fd < 0)
        return;
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= (uint32_t)head;
    uint64_t need;
    int64_t used = take_frames(n, c, c->in, c->in_len, &need);
    if (used < 0)
        return;
    memmove(c->in, c->in + used, c->in_len - (size_t)used);
    c->in_len -= (uint32_t)used;
    if (c->in_len == 0)
        drop_in(c);
}

static void read_input(struct net *n, struct client *c)
{
    for (;;) {
        bool own = c->in_len > 0 || c->state == CS_UPGRADING;
        uint8_t *dst;
        size_t room;
        if (own) {
            in_reserve(c, 16384);
            dst = c->in + c->in_len;
            room = c->in_cap - c->in_len;
        } else {
            dst = n->rbuf;
            room = n->rbuf_cap;
        }
        ssize_t r = read(c->fd, dst, room);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            snprintf(n->why, sizeof n->why, "connection error: %s", strerror(errno));
            client_fail(n, c, n->why);
            return;
        }
        if (r == 0) {
            client_fail(n, c,
                        c->state == CS_UPGRADING ? "closed during the upgrade"
                                                 : "closed by the server without a close frame");
            return;
        }
        if (c->state == CS_UPGRADING) {
            c->in_len += (uint32_t)r;
            finish_upgrade(n, c);
            if (c->fd < 0)
                return;
        } else if (own) {
            c->in_len += (uint32_t)r;
            uint64_t need;
            int64_t used = take_frames(n, c, c->in, c->in_len, &need);
            if (used < 0)
                return;
            memmove(c->in, c->in + used, c->in_len - (size_t)used);
            c->in_len -= (uint32_t)used;
            if (c->in_len == 0)
                drop_in(c);
            else if (need > c->in_cap)
                in_reserve(c, need - c->in_len);
        } else {
            uint64_t need;
            int64_t used = take_frames(n, c, dst, (size_t)r, &need);
            if (used < 0)
                return;
            size_t rest = (size_t)r - (size_t)used;
            if (rest > 0) {
                in_reserve(c, need > rest ? need : rest);
                memcpy(c->in, dst + used, rest);
                c->in_len = (uint32_t)rest;
            }
        }
        if ((size_t)r < room)
            return; /* the socket is drained; level-triggered epoll says when there is more */
    }
}

void client_on_event(struct net *n, struct client *c, uint32_t events)
{
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            snprintf(n->why, sizeof n->why, "connect failed: %s", strerror(err));
            client_fail(n, c, n->why);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLIN)))
            return;
        char req[512], key[25];
        client_key(n, c, key);
        size_t rlen = wsc_request_write(req, sizeof req, n->o->host_header, n->o->path, key);
        c->state = CS_UPGRADING;
        set_out_interest(n, c, false);
        send_bytes(n, c, (const uint8_t *)req, rlen);
        return;
    }
    if (events & EPOLLOUT) {
        if (!flush_out(n, c)) {
            snprintf(n->why, sizeof n->why, "write failed: %s", strerror(errno));
            client_fail(n, c, n->why);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        read_input(n, c);
}
