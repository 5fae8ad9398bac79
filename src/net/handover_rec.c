/* handover_rec: a connection's state record (live upgrades): its fields, writer and reader. */
#include "handover_rec.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/*
 * The fields of a record and the version each appeared in (1, but for HR_PW_OP: 2,
 * HR_RM_TOLD_COUNT, HR_RM_TOLD_LARGE inside HR_ROOM: 3, HR_TN_WAITING, HR_REACT: 4,
 * HR_SEARCH, HR_STATUS: 5, and HR_DM: 6). A field is
 * read only in a record whose version has it; a record without it gets the default (0, false,
 * empty, absent).
 *
 *   tag                 type     meaning
 *   HR_TRANSPORT        uint     enum hr_transport (required)
 *   HR_PEER_KEY ...     uint     the address keys; counted under peer_key; via a trusted proxy
 *   HR_RX_AGE_MS        uint     ms since input last arrived
 *   HR_TIMER_MS         uint     ms until the connection's timer fires; absent: not armed
 *   HR_HTTP_BITS        uint     CONN_HTTP_* bits
 *   HR_IN, HR_OUT       bytes    input not yet handled; output not yet written
 *   HR_WS_*             ...      endpoint, deflate window bits (0: none), ping and open ages,
 *                                the frame reader (nested HR_RD_*: its fields), the message
 *                                reassembled so far (present: a message is in progress)
 *   HR_TN_*             ...      prompt, password tries, echo off, auto-joined, password prompted,
 *                                name given, current room, open age, the line parser (nested
 *                                HR_TP_*), the line typed so far
 *   HR_TN_WAITING       bytes    (4) repeated, oldest first: a line waiting for a token
 *   HR_CHAT             uint     1: a chat session follows (HR_LOGGED_IN ... HR_BACKLOG)
 *   HR_ROOM, HR_BACKLOG nested   repeated, in order; a room (HR_RM_*): its name, the last seq
 *                                queued, the order it was joined in, and (3) the user count the
 *                                client was last told and whether the room was large then
 *   HR_REACT            bytes    (4) the react bucket (protocol 1.1 rule 73), if used: tokens
 *                                in millionths and the ms since its refill (u64 LE each), then
 *                                its attempts per second, this second first (10 x u16 LE)
 *   HR_SEARCH           bytes    (5) the search bucket (rule 73), if used: as HR_REACT
 *   HR_PW_OP            nested   (2) a password check in flight: its kind, the request's id as
 *                                JSON, the name and password, a guest registering its own name
 *   HR_STATUS           bytes    (5) the user's status (rule 69), if not online without text:
 *                                one byte, 1 for away, then the text (at most
 *                                HR_STATUS_TEXT_MAX bytes; the session checks it as text)
 *   HR_DM               nested   (6) repeated, at most HR_DMS_MAX: a dm room the connection was
 *                                given messages of without joining it (HR_DM_*): its name and
 *                                the last seq written to the client
 */

/* --- writing --- */

static void reserve(struct hr_writer *w, size_t n)
{
    if (w->len + n <= w->cap)
        return;
    size_t cap = w->cap ? w->cap * 2 : 1024;
    while (cap < w->len + n)
        cap *= 2;
    w->buf = xrealloc(w->buf, cap);
    w->cap = cap;
}

static void put_varint(struct hr_writer *w, uint64_t v)
{
    reserve(w, 10);
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        w->buf[w->len++] = b | (v ? 0x80 : 0);
    } while (v);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void hr_begin(struct hr_writer *w, uint16_t version)
{
    reserve(w, HANDOVER_REC_HEADER);
    w->start = w->len;
    w->version = version;
    w->depth = 0;
    uint8_t *h = w->buf + w->len;
    put32(h, HANDOVER_REC_MAGIC);
    h[4] = (uint8_t)version;
    h[5] = (uint8_t)(version >> 8);
    h[6] = h[7] = 0;
    put32(h + 8, 0);
    w->len += HANDOVER_REC_HEADER;
}

void hr_u64(struct hr_writer *w, unsigned tag, uint64_t v)
{
    put_varint(w, tag);
    put_varint(w, 0); /* the length, known once the value is written */
    size_t value = w->len;
    put_varint(w, v);
    w->buf[value - 1] = (uint8_t)(w->len - value); /* a varint is at most 10 bytes: one byte */
}

void hr_i64(struct hr_writer *w, unsigned tag, int64_t v)
{
    /* zigzag: small negative numbers stay small */
    hr_u64(w, tag, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void hr_put(struct hr_writer *w, unsigned tag, const void *p, size_t n)
{
    put_varint(w, tag);
    put_varint(w, n);
    reserve(w, n);
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

uint8_t *hr_space(struct hr_writer *w, unsigned tag, size_t n)
{
    put_varint(w, tag);
    put_varint(w, n);
    reserve(w, n);
    uint8_t *at = w->buf + w->len;
    w->len += n;
    return at;
}

void hr_str(struct hr_writer *w, unsigned tag, const char *s)
{
    hr_put(w, tag, s, strlen(s));
}

/* A nested field's length is written as a 5-byte varint (padded), filled in by hr_close. */
void hr_open(struct hr_writer *w, unsigned tag)
{
    put_varint(w, tag);
    reserve(w, 5);
    w->nest[w->depth++] = w->len;
    w->len += 5;
}

void hr_close(struct hr_writer *w)
{
    size_t at = w->nest[--w->depth];
    uint64_t n = w->len - at - 5;
    for (int i = 0; i < 5; i++) {
        w->buf[at + i] = (uint8_t)((n & 0x7F) | (i < 4 ? 0x80 : 0));
        n >>= 7;
    }
}

void hr_end(struct hr_writer *w)
{
    put32(w->buf + w->start + 8, (uint32_t)(w->len - w->start - HANDOVER_REC_HEADER));
}

void hr_writer_free(struct hr_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* --- reading --- */

long handover_rec_size(const uint8_t *buf, size_t n, uint16_t *version)
{
    if (n < HANDOVER_REC_HEADER)
        return 0;
    if (get32(buf) != HANDOVER_REC_MAGIC || buf[6] || buf[7])
        return -1;
    uint32_t body = get32(buf + 8);
    if (body > HANDOVER_REC_MAX - HANDOVER_REC_HEADER)
        return -1;
    if (version)
        *version = (uint16_t)(buf[4] | buf[5] << 8);
    size_t total = HANDOVER_REC_HEADER + (size_t)body;
    return n < total ? 0 : (long)total;
}

/* A cursor over a list of fields. */
struct fields {
    const uint8_t *p;
    size_t n, pos;
};

struct field {
    uint64_t tag;
    const uint8_t *v;
    size_t len;
};

static bool get_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*pos >= n)
            return false;
        uint8_t b = p[(*pos)++];
        if (shift == 63 && (b & 0x7E))
            return false; /* beyond 64 bits */
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* The next field; 1, 0 at the end, -1 when the list is malformed. */
static int next_field(struct fields *f, struct field *out)
{
    if (f->pos == f->n)
        return 0;
    uint64_t len;
    if (!get_varint(f->p, f->n, &f->pos, &out->tag) || !get_varint(f->p, f->n, &f->pos, &len) ||
        len > f->n - f->pos)
        return -1;
    out->v = f->p + f->pos;
    out->len = (size_t)len;
    f->pos += (size_t)len;
    return 1;
}

/* The value of an integer field, if it is one (exactly one varint). */
static bool uint_of(const struct field *f, uint64_t *out)
{
    size_t pos = 0;
    return get_varint(f->v, f->len, &pos, out) && pos == f->len;
}

static bool max_of(const struct field *f, uint64_t max, uint64_t *out)
{
    return uint_of(f, out) && *out <= max;
}

static bool bool_of(const struct field *f, bool *out)
{
    uint64_t v;
    if (!max_of(f, 1, &v))
        return false;
    *out = v != 0;
    return true;
}

static bool i64_of(const struct field *f, int64_t *out)
{
    uint64_t v;
    if (!uint_of(f, &v))
        return false;
    *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return true;
}

static struct hr_bytes bytes_of(const struct field *f)
{
    return (struct hr_bytes){f->v, f->len};
}

/* A name field: at most max - 1 bytes, no NUL. */
static bool name_of(const struct field *f, size_t max, struct hr_bytes *out)
{
    if (f->len >= max || memchr(f->v, 0, f->len))
        return false;
    *out = bytes_of(f);
    return true;
}

/* The reader's stages (ws_frame.c): a header byte by byte, then payload. Whether the state as a
 * whole is one the reader can be in is ws_reader_valid's to say, once its limit is known. */
#define RD_STAGES 2

static int read_ws_reader(const struct field *outer, struct ws_reader *r)
{
    struct fields f = {outer->v, outer->len, 0};
    struct field x;
    int rc;
    uint64_t v;
    while ((rc = next_field(&f, &x)) > 0) {
        switch (x.tag) {
        case HR_RD_FRAME_LEN:
            if (!max_of(&x, INT64_MAX, &r->frame_len))
                return -1;
            break;
        case HR_RD_FRAME_DONE:
            if (!uint_of(&x, &r->frame_done))
                return -1;
            break;
        case HR_RD_MSG_LEN:
            if (!uint_of(&x, &r->msg_len))
                return -1;
            break;
        case HR_RD_UTF8:
            if (!max_of(&x, UINT32_MAX, &v))
                return -1;
            r->utf8_state = (uint32_t)v;
            break;
        case HR_RD_MASK:
            if (x.len != 4)
                return -1;
            memcpy(r->mask, x.v, 4);
            break;
        case HR_RD_STAGE:
            if (!max_of(&x, RD_STAGES - 1, &v))
                return -1;
            r->stage = (uint8_t)v;
            break;
        case HR_RD_HDR:
            if (x.len > sizeof r->spill->hdr)
                return -1;
            memcpy(r->spill->hdr, x.v, x.len);
            r->hdr_len = (uint8_t)x.len;
            break;
        case HR_RD_OPCODE:
            if (!max_of(&x, 0x0F, &v))
                return -1;
            r->opcode = (uint8_t)v;
            break;
        case HR_RD_MSG_OPCODE:
            if (!max_of(&x, WS_OP_BINARY, &v))
                return -1;
            r->msg_opcode = (uint8_t)v;
            break;
        case HR_RD_FIN:
            if (!bool_of(&x, &r->fin))
                return -1;
            break;
        case HR_RD_FAILED:
            if (!bool_of(&x, &r->failed))
                return -1;
            break;
        case HR_RD_DEFLATE:
            if (!bool_of(&x, &r->deflate))
                return -1;
            break;
        case HR_RD_MSG_COMPRESSED:
            if (!bool_of(&x, &r->msg_compressed))
                return -1;
            break;
        case HR_RD_ERROR:
            if (!max_of(&x, 0xFF, &v))
                return -1;
            r->error = (uint8_t)v;
            break;
        case HR_RD_CTL:
            if (x.len > sizeof r->spill->ctl)
                return -1;
            memcpy(r->spill->ctl, x.v, x.len);
            r->ctl_len = (uint8_t)x.len;
            break;
        default:
            return -1;
        }
    }
    return rc < 0 ? -1 : 0; /* whether the state is one the reader can be in: ws_reader_valid */
}

static int read_tn_parser(const struct field *outer, struct telnet_parser *p)
{
    struct fields f = {outer->v, outer->len, 0};
    struct field x;
    int rc;
    uint64_t v;
    while ((rc = next_field(&f, &x)) > 0) {
        switch (x.tag) {
        case HR_TP_STATE:
            if (!max_of(&x, 0xFF, &v))
                return -1;
            p->state = (uint8_t)v;
            break;
        case HR_TP_VERB:
            if (!max_of(&x, 0xFF, &v))
                return -1;
            p->verb = (uint8_t)v;
            break;
        case HR_TP_OVERFLOW:
            if (!bool_of(&x, &p->overflow))
                return -1;
            break;
        case HR_TP_SB_LEN:
            if (!max_of(&x, UINT16_MAX, &v))
                return -1;
            p->sb_len = (uint16_t)v;
            break;
        default:
            return -1;
        }
    }
    return rc;
}

/* Checks a room or backlog entry (nested) without keeping it; they are read again by the
 * iterators. */
/* A rate-limit bucket's bytes (HR_REACT, HR_SEARCH): tokens in millionths and refill age (u64 LE
 * each), then attempts per second, this second first (u16 LE each). */
static int bucket_of(const struct field *x, uint64_t *tokens_micro, uint64_t *refill_age_ms,
                     uint16_t attempts[HR_ATTEMPT_SECONDS])
{
    if (x->len != 16 + 2 * HR_ATTEMPT_SECONDS)
        return -1;
    *tokens_micro = *refill_age_ms = 0;
    for (int b = 7; b >= 0; b--) {
        *tokens_micro = *tokens_micro << 8 | x->v[b];
        *refill_age_ms = *refill_age_ms << 8 | x->v[8 + b];
    }
    for (int i = 0; i < HR_ATTEMPT_SECONDS; i++)
        attempts[i] = (uint16_t)(x->v[16 + 2 * i] | x->v[16 + 2 * i + 1] << 8);
    return 0;
}

static int read_room(const struct field *outer, uint16_t version, struct hr_room *room)
{
    struct fields f = {outer->v, outer->len, 0};
    struct field x;
    int rc;
    memset(room, 0, sizeof *room);
    bool named = false;
    while ((rc = next_field(&f, &x)) > 0) {
        switch (x.tag) {
        case HR_RM_NAME:
            if (!name_of(&x, HR_ROOM_MAX, &room->name) || x.len == 0)
                return -1;
            named = true;
            break;
        case HR_RM_LAST_SEQ:
            if (!uint_of(&x, &room->last_seq))
                return -1;
            break;
        case HR_RM_JOINED_ORDER:
            if (!uint_of(&x, &room->joined_order))
                return -1;
            break;
        case HR_RM_TOLD_COUNT: {
            uint64_t v;
            if (version < 3 || !max_of(&x, UINT32_MAX, &v))
                return -1;
            room->told_count = (uint32_t)v;
            break;
        }
        case HR_RM_TOLD_LARGE:
            if (version < 3 || !bool_of(&x, &room->told_large))
                return -1;
            break;
        default:
            return -1;
        }
    }
    return rc < 0 || !named ? -1 : 0;
}

static int read_dm(const struct field *outer, struct hr_dm *dm)
{
    struct fields f = {outer->v, outer->len, 0};
    struct field x;
    int rc;
    memset(dm, 0, sizeof *dm);
    bool named = false, has_seq = false;
    while ((rc = next_field(&f, &x)) > 0) {
        switch (x.tag) {
        case HR_DM_NAME:
            if (!name_of(&x, HR_ROOM_MAX, &dm->name) || x.len == 0)
                return -1;
            named = true;
            break;
        case HR_DM_LAST_SEQ:
            if (!uint_of(&x, &dm->last_seq))
                return -1;
            has_seq = true;
            break;
        default:
            return -1;
        }
    }
    /* A place is a seq written: never 0 (nothing written keeps no place). */
    return rc < 0 || !named || !has_seq || dm->last_seq == 0 ? -1 : 0;
}

static int read_backlog(const struct field *outer, struct hr_backlog *e)
{
    struct fields f = {outer->v, outer->len, 0};
    struct field x;
    int rc;
    memset(e, 0, sizeof *e);
    bool has_msg = false;
    while ((rc = next_field(&f, &x)) > 0) {
        switch (x.tag) {
        case HR_BL_LIVE:
            if (!bool_of(&x, &e->live))
                return -1;
            break;
        case HR_BL_MSG:
            e->msg = bytes_of(&x);
            has_msg = true;
            break;
        case HR_BL_ROOM:
            if (!name_of(&x, HR_ROOM_MAX, &e->room) || x.len == 0)
                return -1;
            e->is_replay = true;
            break;
        case HR_BL_AFTER:
            if (!uint_of(&x, &e->after))
                return -1;
            break;
        case HR_BL_UNTIL:
            if (!uint_of(&x, &e->until))
                return -1;
            break;
        case HR_BL_TS:
            if (!i64_of(&x, &e->ts))
                return -1;
            break;
        default:
            return -1;
        }
    }
    /* Exactly one of a message and a replay range, and a range that is one. */
    if (rc < 0 || has_msg == e->is_replay || (e->is_replay && e->after >= e->until) ||
        (has_msg && e->msg.n == 0))
        return -1;
    return 0;
}

static int read_pw_op(const struct field *outer, struct hr_pw_op *pw)
{
    struct fields f = {outer->v, outer->len, 0};
    struct field x;
    int rc;
    uint64_t v;
    memset(pw, 0, sizeof *pw);
    pw->present = true;
    while ((rc = next_field(&f, &x)) > 0) {
        switch (x.tag) {
        case HR_PO_KIND:
            if (!max_of(&x, HR_PW_REGISTER, &v) || v == 0)
                return -1;
            pw->kind = (uint8_t)v;
            break;
        case HR_PO_ID:
            pw->id_json = bytes_of(&x);
            break;
        case HR_PO_NAME:
            if (!name_of(&x, HR_NAME_MAX, &pw->name) || x.len == 0)
                return -1;
            break;
        case HR_PO_PASSWORD:
            if (x.len == 0 || x.len > HR_PASSWORD_MAX)
                return -1;
            pw->password = bytes_of(&x);
            break;
        case HR_PO_REGISTERED_GUEST:
            if (!bool_of(&x, &pw->registered_guest))
                return -1;
            break;
        case HR_PO_GUEST_SESSION:
            if (!uint_of(&x, &pw->guest_session))
                return -1;
            break;
        default:
            return -1;
        }
    }
    return rc < 0 || !pw->kind || !pw->name.n || !pw->password.n ? -1 : 0;
}

#define FAIL(text)                                                                                 \
    do {                                                                                           \
        *why = (text);                                                                             \
        return -1;                                                                                 \
    } while (0)

/* One top-level field into rec. Returns 0, or -1 (with *why). */
static int read_field(struct handover_rec *rec, const struct field *x, const char **why)
{
    uint64_t v;
    switch (x->tag) {
    case HR_TRANSPORT:
        if (!max_of(x, HR_TELNET, &v) || v == 0)
            FAIL("unknown transport");
        rec->transport = (uint8_t)v;
        return 0;
    case HR_PEER_KEY:
        return uint_of(x, &rec->peer_key) ? 0 : -1;
    case HR_NET_KEY:
        return uint_of(x, &rec->net_key) ? 0 : -1;
    case HR_PEER_COUNTED:
        return bool_of(x, &rec->peer_counted) ? 0 : -1;
    case HR_VIA_PROXY:
        return bool_of(x, &rec->via_proxy) ? 0 : -1;
    case HR_RX_AGE_MS:
        return uint_of(x, &rec->rx_age_ms) ? 0 : -1;
    case HR_TIMER_MS:
        rec->has_timer = true;
        return uint_of(x, &rec->timer_ms) ? 0 : -1;
    case HR_HTTP_BITS:
        if (!max_of(x, 0xFF, &v))
            return -1;
        rec->http_bits = (uint8_t)v;
        return 0;
    case HR_IN:
        rec->in = bytes_of(x);
        return 0;
    case HR_OUT:
        rec->out = bytes_of(x);
        return 0;
    case HR_WS_ENDPOINT:
        if (!max_of(x, 1, &v))
            return -1;
        rec->ws_endpoint = (uint8_t)v;
        return 0;
    case HR_WS_DEFLATE_BITS:
        if (!max_of(x, 15, &v) || (v && v < 8))
            return -1;
        rec->ws_deflate_bits = (uint8_t)v;
        return 0;
    case HR_WS_PING_AGE_MS:
        return uint_of(x, &rec->ws_ping_age_ms) ? 0 : -1;
    case HR_WS_OPEN_AGE_MS:
        return uint_of(x, &rec->ws_open_age_ms) ? 0 : -1;
    case HR_WS_READER:
        rec->ws_reader.spill = &rec->ws_spill;
        if (read_ws_reader(x, &rec->ws_reader) < 0)
            FAIL("the WebSocket reader's state is not one it can be in");
        return 0;
    case HR_WS_MSG:
        rec->has_ws_msg = true;
        rec->ws_msg = bytes_of(x);
        return 0;
    case HR_TN_PROMPT:
        if (!max_of(x, 0xFF, &v))
            return -1;
        rec->tn_prompt = (uint8_t)v;
        return 0;
    case HR_TN_TRIES:
        if (!max_of(x, 0xFF, &v))
            return -1;
        rec->tn_password_tries = (uint8_t)v;
        return 0;
    case HR_TN_ECHO_OFF:
        return bool_of(x, &rec->tn_echo_off) ? 0 : -1;
    case HR_TN_AUTO_JOINED:
        return bool_of(x, &rec->tn_auto_joined) ? 0 : -1;
    case HR_TN_PW_PROMPTED:
        return bool_of(x, &rec->tn_password_prompted) ? 0 : -1;
    case HR_TN_NAME:
        return name_of(x, HR_NAME_MAX, &rec->tn_name) ? 0 : -1;
    case HR_TN_CURRENT:
        return name_of(x, HR_ROOM_MAX, &rec->tn_current) ? 0 : -1;
    case HR_TN_OPEN_AGE_MS:
        return uint_of(x, &rec->tn_open_age_ms) ? 0 : -1;
    case HR_TN_PARSER:
        return read_tn_parser(x, &rec->tn_parser) < 0 ? -1 : 0;
    case HR_TN_LINE:
        rec->tn_line = bytes_of(x);
        return 0;
    case HR_TN_WAITING:
        if (rec->version < 4)
            FAIL("a field this version does not know");
        if (x->len > HR_TN_LINE_MAX || rec->tn_n_waiting >= HR_TN_WAITING_MAX)
            FAIL("more waiting telnet lines, or a longer one, than a connection may have");
        rec->tn_n_waiting++;
        return 0;
    case HR_CHAT:
        return bool_of(x, &rec->has_chat) ? 0 : -1;
    case HR_LOGGED_IN:
        return bool_of(x, &rec->logged_in) ? 0 : -1;
    case HR_LOGIN_PENDING:
        return bool_of(x, &rec->login_pending) ? 0 : -1;
    case HR_AUTH_PENDING:
        return bool_of(x, &rec->auth_pending) ? 0 : -1;
    case HR_LOGIN_PAUSED_MS:
        return uint_of(x, &rec->login_paused_ms) ? 0 : -1;
    case HR_GUEST:
        return bool_of(x, &rec->guest) ? 0 : -1;
    case HR_GUEST_SESSION:
        return uint_of(x, &rec->guest_session) ? 0 : -1;
    case HR_CREATED_MS:
        return i64_of(x, &rec->created_ms) ? 0 : -1;
    case HR_USER:
        return name_of(x, HR_NAME_MAX, &rec->user) ? 0 : -1;
    case HR_USER_LC:
        return name_of(x, HR_NAME_MAX, &rec->user_lc) ? 0 : -1;
    case HR_JOIN_COUNTER:
        return uint_of(x, &rec->join_counter) ? 0 : -1;
    case HR_TOKENS_MICRO:
        return uint_of(x, &rec->tokens_micro) ? 0 : -1;
    case HR_REFILL_AGE_MS:
        return uint_of(x, &rec->refill_age_ms) ? 0 : -1;
    case HR_ATTEMPTS:
        if (x->len != 2 * HR_ATTEMPT_SECONDS)
            return -1;
        for (int i = 0; i < HR_ATTEMPT_SECONDS; i++)
            rec->attempts[i] = (uint16_t)(x->v[2 * i] | x->v[2 * i + 1] << 8);
        return 0;
    case HR_REACT:
        if (rec->version < 4)
            FAIL("a field this version does not know");
        rec->has_react = true;
        return bucket_of(x, &rec->react_tokens_micro, &rec->react_refill_age_ms,
                         rec->react_attempts);
    case HR_SEARCH:
        if (rec->version < 5)
            FAIL("a field this version does not know");
        rec->has_search = true;
        return bucket_of(x, &rec->search_tokens_micro, &rec->search_refill_age_ms,
                         rec->search_attempts);
    case HR_CIDS:
        if (x->len != 8 * HR_N_CIDS)
            return -1;
        for (int i = 0; i < HR_N_CIDS; i++) {
            uint64_t k = 0;
            for (int b = 7; b >= 0; b--)
                k = k << 8 | x->v[8 * i + b];
            rec->cids[i] = k;
        }
        rec->has_cids = true;
        return 0;
    case HR_CIDS_NEXT:
        if (!max_of(x, HR_N_CIDS - 1, &v))
            return -1;
        rec->cids_next = (uint8_t)v;
        return 0;
    case HR_TYPING_AGE_MS:
        rec->has_typing = true;
        return uint_of(x, &rec->typing_age_ms) ? 0 : -1;
    case HR_ROOM: {
        struct hr_room room;
        if (read_room(x, rec->version, &room) < 0)
            FAIL("a room that cannot be read");
        rec->n_rooms++;
        return 0;
    }
    case HR_DM: {
        struct hr_dm dm;
        if (rec->version < 6)
            FAIL("a field this version does not know");
        if (rec->n_dms >= HR_DMS_MAX || read_dm(x, &dm) < 0)
            FAIL("a dm room that cannot be read, or more than a connection keeps");
        rec->n_dms++;
        return 0;
    }
    case HR_BACKLOG: {
        struct hr_backlog e;
        if (read_backlog(x, &e) < 0)
            FAIL("a backlog entry that cannot be read");
        rec->n_backlog++;
        return 0;
    }
    case HR_PW_OP:
        if (rec->version < 2)
            FAIL("a field this version does not know");
        if (read_pw_op(x, &rec->pw) < 0)
            FAIL("a password check that cannot be read");
        return 0;
    case HR_STATUS:
        if (rec->version < 5)
            FAIL("a field this version does not know");
        if (x->len < 1 || x->len > 1 + HR_STATUS_TEXT_MAX || x->v[0] > 1)
            FAIL("a status that cannot be read");
        rec->has_status = true;
        rec->status_away = x->v[0] == 1;
        rec->status_text = (struct hr_bytes){.p = x->v + 1, .n = x->len - 1};
        return 0;
    default:
        FAIL("a field this version does not know");
    }
}

int handover_rec_read(const uint8_t *buf, size_t n, struct handover_rec *rec, const char **why)
{
    static const char bad_field[] = "a field out of range";
    memset(rec, 0, sizeof *rec);
    uint16_t version;
    long size = handover_rec_size(buf, n, &version);
    if (size <= 0 || (size_t)size != n)
        FAIL("not a record");
    if (version < HANDOVER_REC_MIN_VERSION || version > HANDOVER_REC_VERSION)
        FAIL("a record version this binary does not read");
    rec->version = version;
    rec->body = buf + HANDOVER_REC_HEADER;
    rec->body_len = n - HANDOVER_REC_HEADER;
    /* Defaults a record may leave out. */
    ws_reader_init(&rec->ws_reader, 0);
    rec->ws_reader.spill = &rec->ws_spill;
    telnet_parser_init(&rec->tn_parser, NULL, 0);
    struct fields f = {rec->body, rec->body_len, 0};
    struct field x;
    int rc;
    while ((rc = next_field(&f, &x)) > 0) {
        *why = bad_field;
        if (read_field(rec, &x, why) < 0)
            return -1;
    }
    if (rc < 0)
        FAIL("a field runs past the record's end");
    if (!rec->transport)
        FAIL("no transport");
    if (rec->has_chat && rec->logged_in && (rec->user.n == 0 || rec->user_lc.n == 0))
        FAIL("a logged-in session without a name");
    if (rec->tn_line.n > HR_TN_LINE_MAX)
        FAIL("a telnet line longer than a line can be");
    return 0;
}

/* The next top-level field with tag, from *cursor on. */
static bool find(const struct handover_rec *rec, size_t *cursor, uint64_t tag, struct field *out)
{
    struct fields f = {rec->body, rec->body_len, *cursor};
    while (next_field(&f, out) > 0) {
        if (out->tag == tag) {
            *cursor = f.pos;
            return true;
        }
    }
    *cursor = rec->body_len;
    return false;
}

bool handover_rec_room(const struct handover_rec *rec, size_t *cursor, struct hr_room *out)
{
    struct field x;
    return find(rec, cursor, HR_ROOM, &x) && read_room(&x, rec->version, out) == 0;
}

bool handover_rec_backlog(const struct handover_rec *rec, size_t *cursor, struct hr_backlog *out)
{
    struct field x;
    return find(rec, cursor, HR_BACKLOG, &x) && read_backlog(&x, out) == 0;
}

bool handover_rec_dm(const struct handover_rec *rec, size_t *cursor, struct hr_dm *out)
{
    struct field x;
    return find(rec, cursor, HR_DM, &x) && read_dm(&x, out) == 0;
}

bool handover_rec_waiting(const struct handover_rec *rec, size_t *cursor, struct hr_bytes *out)
{
    struct field x;
    if (!find(rec, cursor, HR_TN_WAITING, &x))
        return false;
    *out = bytes_of(&x);
    return true;
}
