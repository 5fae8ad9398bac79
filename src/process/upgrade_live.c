/* upgrade_live: a live upgrade on the main thread: connections collected, sent, adopted. */
#include "upgrade_live.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "handover.h"
#include "handover_rec.h"
#include "log.h"

/* A batch closes at this many bytes of records (a record larger than this goes alone). */
#define BATCH_BYTES (1u << 20)
/* What the new process accepts as one batch's bytes: a batch of one largest record. */
#define BATCH_MAX ((size_t)HANDOVER_REC_MAX + BATCH_BYTES)
#define MEMFD_MAGIC "PRLYADPT"

/* One connection collected in the old process. */
struct out_rec {
    int worker;
    uint64_t conn_id;
    int fd; /* borrowed: the worker's parked connection owns it */
    const uint8_t *p;
    size_t len;
    size_t mail; /* which collected mail holds the record */
    bool refused;
};

/* A batch: sent (old), or being adopted (new). */
struct batch {
    size_t first, count; /* old: records[first, first+count) */
    bool acked;
    /* new */
    uint64_t id;
    size_t pending, adopted;
    char *refused; /* "i,j,..." */
    size_t refused_len;
    const char *why;
};

static struct {
    struct loop *loop;
    struct mailbox *mbox;
    struct live_hooks hooks;
    struct server *server;
    int chan;
    uint16_t version; /* of the records written */
    size_t batch_limit;
    bool failed;

    /* old: holding input */
    bool freezing;
    int quiet;
    struct timer quiesce;
    /* old: collecting and sending */
    bool collecting;
    int finals;
    uint64_t busy_left, stayed, out_bytes, replays, logins, partial;
    struct handover_mail **mails;
    size_t n_mails;
    struct out_rec *recs;
    size_t n_recs, cap_recs, next;
    struct batch *batches;
    size_t n_batches, acked;
    bool sending;     /* a batch is under way */
    size_t b_sent;    /* its bytes sent so far */
    bool b_data_done; /* its bytes are sent: its CONN_BATCH is next */
    bool done_sent;
    bool blocked; /* the last send found the channel full: go on when it is writable */
    uint64_t refused;
    uint64_t crash_after; /* test hook: the new process dies once it acknowledged this batch */
    uint8_t hold_moving;  /* test hook: the old process stops sending after its first batch */

    /* new: adopting */
    bool adopting, closed, memfd;
    bool pred_gone; /* the previous process died mid-handover: over once what came is adopted */
    struct timer deadline;
    uint8_t *in;
    size_t in_len, in_cap;
    size_t rr;
    uint64_t adopted, refused_here, pending_total;
    uint64_t versions; /* bit v: a record of version v was adopted */
} L;

static void on_quiesce_timeout(struct timer *t);
static void on_adopt_deadline(struct timer *t);

void live_init(struct loop *loop, struct mailbox *mbox, const struct live_hooks *hooks)
{
    memset(&L, 0, sizeof L);
    L.loop = loop;
    L.mbox = mbox;
    L.hooks = *hooks;
    L.chan = -1;
    L.version = HANDOVER_REC_VERSION;
    L.batch_limit = UPGRADE_CHAN_MAX_FDS;
    timer_init(&L.quiesce, on_quiesce_timeout);
    timer_init(&L.deadline, on_adopt_deadline);
    /* "previous" and "next" are this binary's version less or plus one: records an older or a
     * newer binary would write, so a test can show them read or refused. */
    const char *v = getenv("PARLEY_TEST_RECORD_VERSION");
    if (v && *v) {
        L.version = strcmp(v, "previous") == 0 ? HANDOVER_REC_VERSION - 1
                    : strcmp(v, "next") == 0   ? HANDOVER_REC_VERSION + 1
                                               : (uint16_t)atoi(v);
        log_warn("msg=test_hook PARLEY_TEST_RECORD_VERSION=%u reason=\"for tests only: live "
                 "upgrades write records of that version\"",
                 L.version);
    }
    const char *h = getenv("PARLEY_TEST_HOLD");
    if (h && strncmp(h, "crash:", 6) == 0)
        L.crash_after = (uint64_t)atoll(h + 6);
    L.hold_moving = h && strcmp(h, "moving") == 0;
    const char *b = getenv("PARLEY_TEST_BATCH");
    if (b && atoi(b) > 0 && atoi(b) <= UPGRADE_CHAN_MAX_FDS) {
        L.batch_limit = (size_t)atoi(b);
        log_warn("msg=test_hook PARLEY_TEST_BATCH=%zu reason=\"for tests only: live upgrades "
                 "send that many connections per batch\"",
                 L.batch_limit);
    }
}

static void post_all(struct server *s, enum handover_op op, uint64_t deadline_ms)
{
    for (int i = 0; i < server_workers(s); i++) {
        struct handover_mail *m = handover_mail_new(op);
        m->reply = L.mbox;
        m->version = L.version;
        m->deadline_ms = deadline_ms;
        server_post(s, i, &m->mail);
    }
}

/* --- the old process: holding input --- */

void live_freeze(struct server *s, uint64_t bound_ms)
{
    L.server = s;
    L.freezing = true;
    L.quiet = 0;
    post_all(s, HO_FREEZE, 0);
    timer_start(L.loop, &L.quiesce, loop_now(L.loop) + bound_ms);
}

static void quiet_now(const char *why)
{
    if (!L.freezing)
        return;
    L.freezing = false;
    timer_stop(L.loop, &L.quiesce);
    log_info("msg=handover_quiet workers=%d/%d reason=\"%s\"", L.quiet, server_workers(L.server),
             why);
    L.hooks.quiet();
}

static void on_quiesce_timeout(struct timer *t)
{
    (void)t;
    quiet_now("the bound passed; what is still on its way is waited for a little longer, then "
              "those connections are drained");
}

void live_unfreeze(struct server *s)
{
    L.freezing = false;
    timer_stop(L.loop, &L.quiesce);
    post_all(s, HO_UNFREEZE, 0);
}

/* --- the old process: collecting and sending --- */

void live_collect(struct server *s, int chan, uint64_t bound_ms)
{
    L.server = s;
    L.chan = chan;
    L.collecting = true;
    L.finals = 0;
    int n = server_workers(s);
    struct mail **each = xcalloc((size_t)n, sizeof *each);
    for (int i = 0; i < n; i++) {
        struct handover_mail *m = handover_mail_new(HO_COLLECT);
        m->reply = L.mbox;
        m->version = L.version;
        m->deadline_ms = clock_ms() + bound_ms;
        each[i] = &m->mail;
    }
    /* Through the hub: behind the last results and deliveries of what the store committed. */
    server_relay(s, each);
}

static void collected(struct handover_mail *m)
{
    if (!L.collecting) {
        handover_mail_free(m);
        return;
    }
    L.mails = xrealloc(L.mails, (L.n_mails + 1) * sizeof *L.mails);
    size_t mail = L.n_mails++;
    L.mails[mail] = m;
    for (size_t i = 0; i < m->n_items; i++) {
        if (L.n_recs == L.cap_recs) {
            L.cap_recs = L.cap_recs ? L.cap_recs * 2 : 256;
            L.recs = xrealloc(L.recs, L.cap_recs * sizeof *L.recs);
        }
        const struct handover_item *it = &m->items[i];
        L.recs[L.n_recs++] = (struct out_rec){.worker = m->worker,
                                              .conn_id = it->conn_id,
                                              .fd = it->fd,
                                              .p = m->recs.buf + it->off,
                                              .len = it->len,
                                              .mail = mail};
    }
    L.out_bytes += m->out_bytes;
    L.replays += m->replays;
    L.logins += m->logins;
    L.partial += m->partial;
    if (m->final) {
        L.finals++;
        L.busy_left += m->busy_left;
        L.stayed += m->stayed;
    }
    live_writable();
}

/* Starts the next batch: consecutive records of one collected mail (contiguous bytes). */
static void start_batch(void)
{
    L.batches = xrealloc(L.batches, (L.n_batches + 1) * sizeof *L.batches);
    struct batch *b = &L.batches[L.n_batches++];
    memset(b, 0, sizeof *b);
    b->first = L.next;
    size_t bytes = 0;
    while (L.next < L.n_recs && b->count < L.batch_limit &&
           (b->count == 0 || (L.recs[L.next].mail == L.recs[b->first].mail &&
                              bytes + L.recs[L.next].len <= BATCH_BYTES))) {
        bytes += L.recs[L.next].len;
        b->count++;
        L.next++;
    }
    L.sending = true;
    L.b_sent = 0;
    L.b_data_done = false;
}

static void fail(const char *why)
{
    if (L.failed)
        return;
    L.failed = true;
    L.hooks.channel_failed(why);
}

/* Sends CONN_DONE once everything is collected, sent and acknowledged. Returns true if sent. */
static bool try_done(void)
{
    if (L.done_sent || L.sending || L.finals < server_workers(L.server) || L.next < L.n_recs ||
        L.acked < L.n_batches)
        return false;
    uint64_t handed = L.n_recs - L.refused;
    /* Counted from what the workers kept and what was refused, not from the connections open
     * now: a refused one may already have been closed (it sent a write this process may no
     * longer make), and connections moved are freed a turn later. */
    uint64_t drained = L.refused + L.stayed;
    char payload[96];
    snprintf(payload, sizeof payload, "handed=%llu drained=%llu", (unsigned long long)handed,
             (unsigned long long)drained);
    int rc = upgrade_chan_send_bytes(L.chan, UPGRADE_MSG_CONN_DONE, payload, strlen(payload), NULL,
                                     0, true);
    if (rc == -EAGAIN) {
        L.blocked = true;
        return false;
    }
    if (rc < 0) {
        fail("the control channel failed at the end of the handover");
        return false;
    }
    L.done_sent = true;
    L.collecting = false;
    log_info("msg=handover_done handed=%llu drained=%llu batches=%zu busy=%llu output_bytes=%llu "
             "replays=%llu logins=%llu partial=%llu",
             (unsigned long long)handed, (unsigned long long)drained, L.n_batches,
             (unsigned long long)L.busy_left, (unsigned long long)L.out_bytes,
             (unsigned long long)L.replays, (unsigned long long)L.logins,
             (unsigned long long)L.partial);
    L.hooks.moved(handed, drained);
    return true;
}

bool live_wants_write(void)
{
    return L.collecting && !L.failed && L.blocked;
}

void live_writable(void)
{
    L.blocked = false;
    while (L.collecting && !L.failed) {
        if (!L.sending && L.hold_moving && L.n_batches >= 1) {
            /* Test-only (PARLEY_TEST_HOLD=moving): held in the middle of the handover, so a test
             * can kill either process there. */
            if (L.hold_moving++ == 1)
                log_warn("msg=upgrade_holding test_hook=PARLEY_TEST_HOLD=moving batches=%zu",
                         L.n_batches);
            return;
        }
        if (!L.sending) {
            if (L.next < L.n_recs) {
                start_batch();
            } else {
                try_done();
                return;
            }
        }
        struct batch *b = &L.batches[L.n_batches - 1];
        const struct out_rec *first = &L.recs[b->first];
        const struct out_rec *last = &L.recs[b->first + b->count - 1];
        size_t total = (size_t)(last->p + last->len - first->p);
        while (!L.b_data_done) {
            size_t n = total - L.b_sent;
            if (n > UPGRADE_CHAN_MAX_PAYLOAD)
                n = UPGRADE_CHAN_MAX_PAYLOAD;
            int rc = upgrade_chan_send_bytes(L.chan, UPGRADE_MSG_CONN_DATA, first->p + L.b_sent, n,
                                             NULL, 0, true);
            if (rc == -EAGAIN) {
                L.blocked = true;
                return;
            }
            if (rc < 0) {
                fail("the control channel failed while sending connections");
                return;
            }
            L.b_sent += n;
            L.b_data_done = L.b_sent == total;
        }
        int fds[UPGRADE_CHAN_MAX_FDS];
        for (size_t i = 0; i < b->count; i++)
            fds[i] = L.recs[b->first + i].fd;
        char payload[96];
        snprintf(payload, sizeof payload, "batch=%zu conns=%zu bytes=%zu", L.n_batches, b->count,
                 total);
        int rc = upgrade_chan_send_bytes(L.chan, UPGRADE_MSG_CONN_BATCH, payload, strlen(payload),
                                         fds, b->count, true);
        if (rc == -EAGAIN) {
            L.blocked = true;
            return;
        }
        if (rc < 0) {
            fail("the control channel failed while sending connections");
            return;
        }
        log_info("msg=handover_batch_sent batch=%zu conns=%zu bytes=%zu", L.n_batches, b->count,
                 total);
        L.sending = false;
    }
}

/* SETTLE mails for the records [from, to) that match `refused`, one per worker. */
static void settle(size_t from, size_t to, bool refused)
{
    int n = server_workers(L.server);
    for (int w = 0; w < n; w++) {
        struct handover_mail *m = handover_mail_new(HO_SETTLE);
        m->moved = !refused;
        for (size_t i = from; i < to; i++) {
            const struct out_rec *r = &L.recs[i];
            if (r->worker != w || r->refused != refused)
                continue;
            m->ids = xrealloc(m->ids, (m->n_ids + 1) * sizeof *m->ids);
            m->ids[m->n_ids++] = r->conn_id;
        }
        if (m->n_ids)
            server_post(L.server, w, &m->mail);
        else
            handover_mail_free(m);
    }
}

int live_ack(const struct upgrade_msg *msg)
{
    const char *p = (const char *)msg->payload;
    char v[32], list[UPGRADE_CHAN_MAX_PAYLOAD / 4];
    if (!upgrade_chan_field(p, "batch", v, sizeof v))
        return -1;
    size_t k = (size_t)strtoull(v, NULL, 10);
    if (k == 0 || k > L.n_batches || L.batches[k - 1].acked)
        return -1;
    struct batch *b = &L.batches[k - 1];
    b->acked = true;
    L.acked++;
    size_t refused = 0;
    if (upgrade_chan_field(p, "refused", list, sizeof list) && list[0]) {
        for (char *s = list; *s;) {
            char *end;
            size_t i = (size_t)strtoull(s, &end, 10);
            if (end == s || i >= b->count)
                return -1;
            if (!L.recs[b->first + i].refused) {
                L.recs[b->first + i].refused = true;
                refused++;
            }
            s = *end == ',' ? end + 1 : end;
            if (*end && *end != ',')
                return -1;
        }
    }
    if (refused) {
        const char *why = strstr(p, " why=");
        char q[300];
        why = why ? why + 5 : "";
        L.refused += refused;
        log_warn("msg=handover_refused batch=%zu conns=%zu why=%s action=\"this process keeps "
                 "them and drains them\"",
                 k, refused, log_quote(q, sizeof q, why, strlen(why)));
        settle(b->first, b->first + b->count, true);
    }
    live_writable();
    return 0;
}

void live_settle_moved(struct server *s)
{
    L.server = s;
    settle(0, L.n_recs, false);
    for (size_t i = 0; i < L.n_mails; i++)
        handover_mail_free(L.mails[i]);
    free(L.mails);
    free(L.recs);
    free(L.batches);
    L.mails = NULL;
    L.recs = NULL;
    L.batches = NULL;
    L.n_mails = L.n_recs = L.cap_recs = L.n_batches = L.next = L.acked = 0;
}

/* Waits for one mail of op on mbox, at most until deadline (clock_ms). */
static struct handover_mail *wait_for(struct mailbox *mbox, uint64_t deadline)
{
    for (;;) {
        mailbox_ack(mbox);
        struct mail *m = mailbox_take(mbox);
        if (m)
            return (struct handover_mail *)m;
        uint64_t now = clock_ms();
        if (now >= deadline)
            return NULL;
        struct pollfd pfd = {.fd = mailbox_fd(mbox), .events = POLLIN};
        poll(&pfd, 1, (int)(deadline - now));
    }
}

size_t live_save_all(struct server *s, uint64_t wait_ms, int **fds, uint8_t **recs,
                     size_t *recs_len)
{
    struct mailbox sync;
    *fds = NULL;
    *recs = NULL;
    *recs_len = 0;
    if (mailbox_init(&sync) < 0)
        return 0;
    int n = server_workers(s);
    for (int i = 0; i < n; i++) {
        struct handover_mail *m = handover_mail_new(HO_SAVE_ALL);
        m->reply = &sync;
        m->version = HANDOVER_REC_VERSION; /* for ourselves: the version we read best */
        server_post(s, i, &m->mail);
    }
    size_t count = 0, len = 0;
    uint64_t deadline = clock_ms() + wait_ms;
    for (int got = 0; got < n;) {
        struct handover_mail *m = wait_for(&sync, deadline);
        if (!m)
            break; /* a worker that does not answer: its connections get the goodbye */
        if (m->mail.kind == MAIL_HANDOVER && m->op == HO_COLLECTED) {
            got++;
            *fds = xrealloc(*fds, (count + m->n_items + 1) * sizeof **fds);
            *recs = xrealloc(*recs, len + m->recs.len + 1);
            if (m->recs.len)
                memcpy(*recs + len, m->recs.buf, m->recs.len);
            len += m->recs.len;
            for (size_t i = 0; i < m->n_items; i++)
                (*fds)[count++] = m->items[i].fd;
        }
        handover_mail_free(m);
    }
    mailbox_destroy(&sync);
    *recs_len = len;
    return count;
}

/* --- the new process: adopting --- */

static struct batch *in_batches;
static size_t n_in_batches;

bool live_adopting(void)
{
    return L.adopting;
}

void live_adopt_begin(struct server *s, int chan, uint64_t bound_ms)
{
    L.server = s;
    L.chan = chan;
    L.adopting = true;
    timer_start(L.loop, &L.deadline, loop_now(L.loop) + bound_ms);
}

/* Every adopted connection goes on. drained: what the old process kept (CONN_DONE counts the
 * ones refused here among them), or UINT64_MAX when it did not say: then those refused here. */
static void adoption_over(uint64_t drained)
{
    if (drained == UINT64_MAX)
        drained = L.refused_here;
    if (!L.adopting)
        return;
    L.adopting = false;
    L.closed = true;
    timer_stop(L.loop, &L.deadline);
    post_all(L.server, HO_THAW, 0);
    free(L.in);
    L.in = NULL;
    L.in_len = L.in_cap = 0;
    char versions[64] = "";
    size_t n = 0;
    for (unsigned v = 0; v < 64 && n < sizeof versions - 8; v++)
        if (L.versions & (1ull << v))
            n += (size_t)snprintf(versions + n, sizeof versions - n, "%s%u", n ? "," : "", v);
    log_info("msg=handover_records versions=%s", n ? versions : "none");
    L.hooks.adopted(L.adopted, L.refused_here, drained);
}

static void on_adopt_deadline(struct timer *t)
{
    (void)t;
    log_warn("msg=handover_timeout reason=\"the previous process did not finish handing over "
             "connections in time\" action=\"serving what was adopted; later ones are refused\"");
    adoption_over(UINT64_MAX);
}

void live_adopt_eof(void)
{
    if (L.adopting)
        log_warn("msg=handover_cut_short reason=\"the previous process is gone\" adopted=%llu "
                 "pending=%llu",
                 (unsigned long long)L.adopted, (unsigned long long)L.pending_total);
    /* What it sent before it died is ours: the workers' adoptions on their way finish first
     * (adopted_reply ends the adoption then), so every one of them is counted and thawed. */
    L.pred_gone = true;
    if (L.adopting && L.pending_total > 0)
        return;
    adoption_over(UINT64_MAX);
}

static void send_ack(struct batch *b)
{
    char payload[UPGRADE_CHAN_MAX_PAYLOAD];
    snprintf(payload, sizeof payload, "batch=%llu adopted=%zu refused=%s why=%s",
             (unsigned long long)b->id, b->adopted, b->refused ? b->refused : "",
             b->why ? b->why : "");
    /* (Once it is gone its channel is closed, and the number may name another file by now.) */
    if (L.pred_gone || upgrade_chan_send(L.chan, UPGRADE_MSG_CONN_ACK, payload, NULL, 0) < 0)
        log_warn("msg=handover_ack_unsent batch=%llu reason=\"the previous process is gone\"",
                 (unsigned long long)b->id);
    if (L.crash_after && L.crash_after == b->id && !L.memfd) {
        /* Test-only (PARLEY_TEST_HOLD=crash:K): a new binary that dies in the middle of the
         * handover, once it has adopted and acknowledged K batches. */
        log_warn("msg=test_hook PARLEY_TEST_HOLD=crash:%llu action=\"this process kills itself\"",
                 (unsigned long long)b->id);
        raise(SIGKILL);
    }
    free(b->refused);
    b->refused = NULL;
}

static void note_refused(struct batch *b, size_t i, const char *why)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%s%zu", b->refused_len ? "," : "", i);
    b->refused = xrealloc(b->refused, b->refused_len + (size_t)n + 1);
    memcpy(b->refused + b->refused_len, num, (size_t)n + 1);
    b->refused_len += (size_t)n;
    if (!b->why)
        b->why = why ? why : "refused";
}

/* A new batch slot of count connections. */
static size_t new_slot(uint64_t id, size_t count)
{
    in_batches = xrealloc(in_batches, (n_in_batches + 1) * sizeof *in_batches);
    struct batch *b = &in_batches[n_in_batches];
    memset(b, 0, sizeof *b);
    b->id = id;
    b->pending = count;
    return n_in_batches++;
}

static void adopt_one(size_t slot, size_t index, const uint8_t *p, size_t len, int fd)
{
    struct handover_mail *m = handover_mail_new(HO_ADOPT);
    m->reply = L.mbox;
    m->fd = fd;
    m->tag = (uint64_t)slot << 20 | index;
    m->recs.buf = xmalloc(len ? len : 1);
    memcpy(m->recs.buf, p, len);
    m->recs.len = m->recs.cap = len;
    L.pending_total++;
    server_post(L.server, (int)(L.rr++ % (size_t)server_workers(L.server)), &m->mail);
}

/* Refuses a whole batch at once: its sockets are closed here, unwritten. */
static void refuse_batch(uint64_t id, struct upgrade_msg *m, const char *why)
{
    for (size_t i = 0; i < m->n_fds; i++)
        close(m->fds[i]);
    size_t slot = new_slot(id, 0);
    struct batch *b = &in_batches[slot];
    for (size_t i = 0; i < m->n_fds; i++)
        note_refused(b, i, why);
    L.refused_here += m->n_fds;
    log_warn("msg=handover_refused batch=%llu conns=%zu why=\"%s\"", (unsigned long long)id,
             m->n_fds, why);
    send_ack(b);
    m->n_fds = 0;
}

static void on_batch(struct upgrade_msg *m)
{
    char v[32];
    uint64_t id =
        upgrade_chan_field((char *)m->payload, "batch", v, sizeof v) ? strtoull(v, NULL, 10) : 0;
    size_t conns = upgrade_chan_field((char *)m->payload, "conns", v, sizeof v)
                       ? (size_t)strtoull(v, NULL, 10)
                       : SIZE_MAX;
    size_t bytes = upgrade_chan_field((char *)m->payload, "bytes", v, sizeof v)
                       ? (size_t)strtoull(v, NULL, 10)
                       : SIZE_MAX;
    const uint8_t *buf = L.in;
    size_t len = L.in_len;
    L.in_len = 0;
    if (L.closed) {
        refuse_batch(id, m, "this process is serving already: it adopts no more");
        return;
    }
    if (conns != m->n_fds || bytes != len || conns == 0) {
        refuse_batch(id, m, "a batch whose bytes or sockets do not add up");
        return;
    }
    /* Each record is checked whole by the worker that adopts it; here only where it ends. */
    size_t pos = 0;
    for (size_t i = 0; i < conns; i++) {
        long size = handover_rec_size(buf + pos, len - pos, NULL);
        if (size <= 0 || (i == conns - 1 && pos + (size_t)size != len)) {
            refuse_batch(id, m, "a batch that is not a list of records");
            return;
        }
        pos += (size_t)size;
    }
    size_t slot = new_slot(id, conns);
    pos = 0;
    for (size_t i = 0; i < conns; i++) {
        size_t size = (size_t)handover_rec_size(buf + pos, len - pos, NULL);
        adopt_one(slot, i, buf + pos, size, m->fds[i]);
        pos += size;
    }
    m->n_fds = 0; /* the workers own them */
}

int live_adopt_msg(struct upgrade_msg *m)
{
    switch (m->type) {
    case UPGRADE_MSG_CONN_DATA:
        if (L.in_len + m->len > BATCH_MAX)
            return -1;
        if (L.in_len + m->len > L.in_cap) {
            L.in_cap = (L.in_len + m->len) * 2;
            L.in = xrealloc(L.in, L.in_cap);
        }
        memcpy(L.in + L.in_len, m->payload, m->len);
        L.in_len += m->len;
        return 0;
    case UPGRADE_MSG_CONN_BATCH:
        on_batch(m);
        return 0;
    case UPGRADE_MSG_CONN_DONE: {
        char v[32];
        uint64_t drained = upgrade_chan_field((char *)m->payload, "drained", v, sizeof v)
                               ? strtoull(v, NULL, 10)
                               : 0;
        if (L.pending_total > 0)
            log_warn("msg=handover_done_early pending=%llu", (unsigned long long)L.pending_total);
        adoption_over(drained);
        return 0;
    }
    default:
        return -1;
    }
}

static void adopted_reply(struct handover_mail *m)
{
    size_t slot = (size_t)(m->tag >> 20), index = (size_t)(m->tag & 0xFFFFF);
    L.pending_total--;
    if (m->ok) {
        L.adopted++;
        if (m->version < 64)
            L.versions |= 1ull << m->version;
    } else {
        L.refused_here++;
    }
    if (L.memfd) {
        if (!m->ok)
            log_warn("msg=adopt_refused why=\"%s\"", m->why ? m->why : "?");
        if (L.pending_total == 0)
            adoption_over(UINT64_MAX);
        return;
    }
    if (L.pred_gone && L.pending_total == 0)
        adoption_over(UINT64_MAX); /* the last of what it sent before it died (live_adopt_eof) */
    if (slot >= n_in_batches)
        return;
    struct batch *b = &in_batches[slot];
    if (m->ok)
        b->adopted++;
    else
        note_refused(b, index, m->why);
    if (!m->ok)
        log_warn("msg=handover_refused batch=%llu index=%zu why=\"%s\"", (unsigned long long)b->id,
                 index, m->why ? m->why : "?");
    if (--b->pending == 0)
        send_ack(b);
}

/* --- the memfd of a process that restarts itself --- */

int live_write_memfd(const int *fds, size_t n, const uint8_t *recs, size_t recs_len)
{
    int fd = memfd_create("parley-connections", 0);
    if (fd < 0)
        return -1;
    size_t len = 12 + n * 4 + recs_len;
    uint8_t *buf = xmalloc(len);
    memcpy(buf, MEMFD_MAGIC, 8);
    uint32_t count = (uint32_t)n;
    memcpy(buf + 8, &count, 4);
    size_t pos = 12, rp = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t f = (uint32_t)fds[i];
        memcpy(buf + pos, &f, 4);
        pos += 4;
        long size = handover_rec_size(recs + rp, recs_len - rp, NULL);
        if (size <= 0)
            break;
        memcpy(buf + pos, recs + rp, (size_t)size);
        pos += (size_t)size;
        rp += (size_t)size;
    }
    bool ok = write(fd, buf, pos) == (ssize_t)pos;
    free(buf);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

int live_adopt_memfd(struct server *s, int memfd)
{
    L.server = s;
    struct stat st;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fstat(memfd, &st) == 0 && st.st_size >= 12) {
        len = (size_t)st.st_size;
        buf = xmalloc(len);
        if (pread(memfd, buf, len, 0) != (ssize_t)len)
            len = 0;
    }
    close(memfd);
    uint32_t n = 0;
    if (len < 12 || memcmp(buf, MEMFD_MAGIC, 8) != 0) {
        free(buf);
        log_error("msg=adopt_failed reason=\"the connections passed across the restart cannot be "
                  "read\"");
        return -1;
    }
    memcpy(&n, buf + 8, 4);
    size_t pos = 12;
    L.memfd = true;
    L.adopting = true;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fd;
        if (pos + 4 > len)
            break;
        memcpy(&fd, buf + pos, 4);
        pos += 4;
        long size = handover_rec_size(buf + pos, len - pos, NULL);
        if (size <= 0) {
            close((int)fd);
            break;
        }
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        adopt_one(0, i, buf + pos, (size_t)size, (int)fd);
        pos += (size_t)size;
    }
    free(buf);
    if (L.pending_total == 0)
        adoption_over(UINT64_MAX);
    return 0;
}

/* --- replies --- */

void live_mail(struct mail *mail)
{
    struct handover_mail *m = (struct handover_mail *)mail;
    switch (m->op) {
    case HO_QUIET:
        L.quiet++;
        if (L.server && L.quiet >= server_workers(L.server))
            quiet_now("nothing is on its way");
        break;
    case HO_COLLECTED:
        collected(m);
        return; /* kept: it holds the records */
    case HO_ADOPTED:
        adopted_reply(m);
        break;
    default:
        break;
    }
    handover_mail_free(m);
}
