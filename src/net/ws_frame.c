/* ws_frame: streaming RFC 6455 reader of client frames, and the server frame header writer. */
#include "ws_frame.h"

#include <string.h>

#include "utf8.h"

/*
 * DESIGN: the reader is a two-stage machine. In STAGE_HEADER it collects
 * the 2..14 header bytes one at a time into r->spill->hdr, checking each rule as
 * soon as the byte that decides it is there, so a bad frame is refused
 * before its payload is read. In STAGE_PAYLOAD data payload is unmasked in
 * the caller's buffer and handed out at once, and control payload (at most
 * 125 bytes) is gathered in r->spill->ctl until the frame is whole. The spill
 * is the caller's (a connection borrows one only while a frame is under way).
 */

enum { STAGE_HEADER, STAGE_PAYLOAD };

/* Errors, in the order they are checked; 0 is "no error". */
enum ws_error {
    ERR_NONE,
    ERR_RSV,
    ERR_OPCODE,
    ERR_CONTROL_FRAGMENTED,
    ERR_NO_MESSAGE,
    ERR_MESSAGE_IN_PROGRESS,
    ERR_UNMASKED,
    ERR_CONTROL_TOO_LONG,
    ERR_CLOSE_ONE_BYTE,
    ERR_LENGTH,
    ERR_TOO_BIG,
    ERR_UTF8,
    ERR_CLOSE_CODE,
    ERR_CLOSE_UTF8,
};

static const struct {
    uint16_t code;
    const char *reason;
} errors[] = {
    [ERR_NONE] = {WS_CLOSE_INTERNAL, "internal error"},
    [ERR_RSV] = {WS_CLOSE_PROTOCOL, "reserved bits set"},
    [ERR_OPCODE] = {WS_CLOSE_PROTOCOL, "reserved opcode"},
    [ERR_CONTROL_FRAGMENTED] = {WS_CLOSE_PROTOCOL, "fragmented control frame"},
    [ERR_NO_MESSAGE] = {WS_CLOSE_PROTOCOL, "continuation without message"},
    [ERR_MESSAGE_IN_PROGRESS] = {WS_CLOSE_PROTOCOL, "expected continuation frame"},
    [ERR_UNMASKED] = {WS_CLOSE_PROTOCOL, "frame not masked"},
    [ERR_CONTROL_TOO_LONG] = {WS_CLOSE_PROTOCOL, "control frame too long"},
    [ERR_CLOSE_ONE_BYTE] = {WS_CLOSE_PROTOCOL, "invalid close payload"},
    [ERR_LENGTH] = {WS_CLOSE_PROTOCOL, "invalid payload length"},
    [ERR_TOO_BIG] = {WS_CLOSE_TOO_BIG, "message too big"},
    [ERR_UTF8] = {WS_CLOSE_BAD_DATA, "invalid UTF-8"},
    [ERR_CLOSE_CODE] = {WS_CLOSE_PROTOCOL, "invalid close code"},
    [ERR_CLOSE_UTF8] = {WS_CLOSE_BAD_DATA, "invalid UTF-8 in close reason"},
};

static bool is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

void ws_reader_init(struct ws_reader *r, uint64_t max_message)
{
    memset(r, 0, sizeof *r);
    r->max_message = max_message < UINT32_MAX ? (uint32_t)max_message : UINT32_MAX;
    r->stage = STAGE_HEADER;
    r->utf8_state = UTF8_ACCEPT;
}

void ws_reader_use_deflate(struct ws_reader *r)
{
    r->deflate = true;
}

/* Bytes of extended payload length announced by the second header byte. */
static uint8_t ext_len_size(uint8_t b1)
{
    uint8_t len7 = b1 & 0x7F;
    return len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
}

static bool is_data_start(uint8_t op)
{
    return op == WS_OP_TEXT || op == WS_OP_BINARY;
}

static enum ws_error check_first_byte(const struct ws_reader *r, uint8_t b0)
{
    uint8_t op = b0 & 0x0F;
    /* RSV2 and RSV3 belong to no extension parley negotiates. RSV1 is permessage-deflate's, and
     * only on a message's first frame (RFC 7692 section 6): never on a continuation or a
     * control frame. */
    if (b0 & 0x30)
        return ERR_RSV;
    if ((b0 & WS_RSV1) && !(r->deflate && is_data_start(op)))
        return ERR_RSV;
    if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY && op != WS_OP_CLOSE &&
        op != WS_OP_PING && op != WS_OP_PONG)
        return ERR_OPCODE;
    if (is_control(op) && !(b0 & 0x80))
        return ERR_CONTROL_FRAGMENTED;
    if (op == WS_OP_CONT && r->msg_opcode == 0)
        return ERR_NO_MESSAGE;
    if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && r->msg_opcode != 0)
        return ERR_MESSAGE_IN_PROGRESS;
    return ERR_NONE;
}

static enum ws_error check_second_byte(const struct ws_reader *r, uint8_t b1)
{
    uint8_t len7 = b1 & 0x7F;
    if (!(b1 & 0x80)) /* RFC 6455 5.1: a server must close on an unmasked client frame */
        return ERR_UNMASKED;
    if (is_control(r->opcode) && len7 > 125)
        return ERR_CONTROL_TOO_LONG;
    if (r->opcode == WS_OP_CLOSE && len7 == 1) /* a close code is two bytes */
        return ERR_CLOSE_ONE_BYTE;
    return ERR_NONE;
}

/* Called once the payload length is known, before the masking key. */
static enum ws_error check_length(struct ws_reader *r)
{
    uint8_t ext = ext_len_size(r->spill->hdr[1]);
    uint64_t n = r->spill->hdr[1] & 0x7F;
    if (ext > 0) {
        n = 0;
        for (uint8_t i = 0; i < ext; i++)
            n = (n << 8) | r->spill->hdr[2 + i];
    }
    if (n >> 63)
        return ERR_LENGTH;
    r->frame_len = n;
    /* msg_len never exceeds the limit, so this subtraction cannot wrap. */
    uint64_t limit =
        r->msg_compressed ? WS_DEFLATE_WIRE_MAX((uint64_t)r->max_message) : r->max_message;
    if (!is_control(r->opcode) && n > limit - r->msg_len)
        return ERR_TOO_BIG;
    return ERR_NONE;
}

/* Takes one header byte; moves to STAGE_PAYLOAD when the header is whole. */
static enum ws_error header_byte(struct ws_reader *r, uint8_t b)
{
    enum ws_error err = ERR_NONE;
    r->spill->hdr[r->hdr_len++] = b;
    if (r->hdr_len == 1) {
        r->opcode = b & 0x0F;
        r->fin = (b & 0x80) != 0;
        err = check_first_byte(r, b);
        if (err == ERR_NONE && is_data_start(r->opcode))
            r->msg_compressed = (b & WS_RSV1) != 0;
        return err;
    }
    uint8_t ext = ext_len_size(r->spill->hdr[1]);
    if (r->hdr_len == 2) {
        err = check_second_byte(r, b);
        if (err != ERR_NONE)
            return err;
    }
    if (r->hdr_len == 2 + ext) {
        err = check_length(r);
        if (err != ERR_NONE)
            return err;
    }
    if (r->hdr_len == 2 + ext + 4) {
        memcpy(r->mask, r->spill->hdr + 2 + ext, 4);
        r->frame_done = 0;
        r->stage = STAGE_PAYLOAD;
        if (r->opcode == WS_OP_TEXT || r->opcode == WS_OP_BINARY)
            r->msg_opcode = r->opcode;
    }
    return ERR_NONE;
}

/* XORs p[0..n) with the masking key, starting at key byte `offset`; eight bytes per step. */
static void unmask(uint8_t *p, size_t n, const uint8_t mask[4], size_t offset)
{
    uint8_t m[8];
    for (size_t i = 0; i < 8; i++)
        m[i] = mask[(offset + i) & 3];
    uint64_t m64;
    memcpy(&m64, m, sizeof m64);
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w);
        w ^= m64;
        memcpy(p + i, &w, sizeof w);
    }
    for (; i < n; i++)
        p[i] ^= m[i & 7];
}

static size_t fail(struct ws_reader *r, enum ws_error err, struct ws_event *ev, size_t consumed)
{
    r->failed = true;
    r->error = (uint8_t)err;
    ev->type = WS_EV_ERROR;
    ev->close_code = errors[err].code;
    ev->reason = errors[err].reason;
    return consumed;
}

/* Fills ev for the control frame now whole in r->spill->ctl. */
static enum ws_error control_event(struct ws_reader *r, struct ws_event *ev)
{
    size_t n = (size_t)r->frame_len;
    ev->opcode = r->opcode;
    ev->data = r->spill->ctl;
    ev->len = n;
    if (r->opcode == WS_OP_PING) {
        ev->type = WS_EV_PING;
    } else if (r->opcode == WS_OP_PONG) {
        ev->type = WS_EV_PONG;
    } else {
        ev->type = WS_EV_CLOSE;
        if (n == 0) {
            ev->close_code = WS_CLOSE_NO_STATUS;
            return ERR_NONE;
        }
        /* n >= 2 here: a 1-byte close payload was refused with the header. */
        uint16_t code = (uint16_t)(r->spill->ctl[0] << 8 | r->spill->ctl[1]);
        if (!ws_close_code_valid(code))
            return ERR_CLOSE_CODE;
        if (!utf8_is_valid(r->spill->ctl + 2, n - 2))
            return ERR_CLOSE_UTF8;
        ev->close_code = code;
        ev->data = r->spill->ctl + 2;
        ev->len = n - 2;
    }
    return ERR_NONE;
}

size_t ws_reader_feed(struct ws_reader *r, uint8_t *buf, size_t len, struct ws_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = WS_EV_NONE;
    if (r->failed)
        return fail(r, (enum ws_error)r->error, ev, 0);

    size_t pos = 0;
    for (;;) {
        if (r->stage == STAGE_HEADER) {
            if (pos == len)
                return pos;
            enum ws_error err = header_byte(r, buf[pos++]);
            if (err != ERR_NONE)
                return fail(r, err, ev, pos);
            continue;
        }

        uint64_t left = r->frame_len - r->frame_done;
        size_t n = left < len - pos ? (size_t)left : len - pos;
        if (n == 0 && left > 0)
            return pos; /* all input used, the frame goes on */

        if (is_control(r->opcode)) {
            if (n > 0) {
                memcpy(r->spill->ctl + r->frame_done, buf + pos, n);
                unmask(r->spill->ctl + r->frame_done, n, r->mask, (size_t)(r->frame_done & 3));
            }
            r->frame_done += n;
            pos += n;
            if (r->frame_done < r->frame_len)
                return pos;
            r->stage = STAGE_HEADER;
            r->hdr_len = 0;
            enum ws_error err = control_event(r, ev);
            if (err != ERR_NONE) {
                memset(ev, 0, sizeof *ev);
                return fail(r, err, ev, pos);
            }
            return pos;
        }

        uint8_t *piece = buf != NULL ? buf + pos : r->spill->ctl;
        unmask(piece, n, r->mask, (size_t)(r->frame_done & 3));
        r->frame_done += n;
        r->msg_len += n;
        pos += n;
        bool frame_whole = r->frame_done == r->frame_len;
        bool last = frame_whole && r->fin;
        if (r->msg_opcode == WS_OP_TEXT && !r->msg_compressed) {
            /* Checked per piece, so invalid text is refused at the first bad byte. (Compressed
             * text is checked once inflated, by the caller.) */
            r->utf8_state = utf8_validate(r->utf8_state, piece, n);
            if (r->utf8_state == UTF8_REJECT || (last && r->utf8_state != UTF8_ACCEPT))
                return fail(r, ERR_UTF8, ev, pos);
        }
        if (frame_whole) {
            r->stage = STAGE_HEADER;
            r->hdr_len = 0;
        }
        if (n == 0 && !last)
            continue; /* an empty non-final fragment: nothing to hand out */
        ev->type = WS_EV_DATA;
        ev->opcode = r->msg_opcode;
        ev->last = last;
        ev->compressed = r->msg_compressed;
        ev->data = piece;
        ev->len = n;
        if (last) {
            r->msg_opcode = 0;
            r->msg_compressed = false;
            r->msg_len = 0;
            r->utf8_state = UTF8_ACCEPT;
        }
        return pos;
    }
}

bool ws_reader_valid(const struct ws_reader *r)
{
    if (r->failed || r->stage > STAGE_PAYLOAD || r->hdr_len > sizeof r->spill->hdr ||
        !utf8_state_valid(r->utf8_state) || r->utf8_state == UTF8_REJECT ||
        r->ctl_len > sizeof r->spill->ctl || (r->hdr_len > 0 && r->spill == NULL))
        return false;
    if (r->msg_opcode != 0 && r->msg_opcode != WS_OP_TEXT && r->msg_opcode != WS_OP_BINARY)
        return false;
    /* A data frame's first header byte marks its message compressed (RSV1) before the header is
     * whole and the message begins (msg_opcode): the replay below checks that mark. */
    bool starting = r->stage == STAGE_HEADER && r->hdr_len > 0 && is_data_start(r->spill->hdr[0] & 0x0F);
    if (r->msg_opcode == 0 &&
        (r->msg_len || (r->msg_compressed && !starting) || r->utf8_state != UTF8_ACCEPT))
        return false;
    uint64_t limit =
        r->msg_compressed ? WS_DEFLATE_WIRE_MAX((uint64_t)r->max_message) : r->max_message;
    if (r->msg_len > limit)
        return false;
    /* The header bytes kept must be ones the reader took, one at a time, from where the frame
     * started, and must leave it where it is: replay them on a copy, as it was before the frame
     * (a data frame's payload read so far, and the message it starts, taken back). */
    struct ws_reader t = *r;
    struct ws_reader_spill t_spill;
    t.spill = &t_spill;
    t.stage = STAGE_HEADER;
    t.hdr_len = 0;
    bool payload = r->stage == STAGE_PAYLOAD;
    if (payload && !is_control(r->opcode)) {
        if (r->frame_done > r->msg_len)
            return false;
        t.msg_len = r->msg_len - r->frame_done;
        if (r->hdr_len > 0 && is_data_start(r->spill->hdr[0] & 0x0F)) {
            if (t.msg_len)
                return false;
            t.msg_opcode = 0;
        }
    }
    for (uint8_t i = 0; i < r->hdr_len; i++) {
        if (t.stage != STAGE_HEADER || header_byte(&t, r->spill->hdr[i]) != ERR_NONE)
            return false;
    }
    if (t.stage != r->stage || t.msg_compressed != r->msg_compressed)
        return false;
    if (r->hdr_len > 0 && (t.opcode != r->opcode || t.fin != r->fin))
        return false;
    if (!payload)
        return r->ctl_len == 0;
    /* Payload: the frame the header announced, part of it read. */
    if (t.frame_len != r->frame_len || memcmp(t.mask, r->mask, 4) != 0 ||
        t.msg_opcode != r->msg_opcode || r->frame_done >= r->frame_len)
        return false;
    return is_control(r->opcode) ? r->ctl_len == r->frame_done : r->ctl_len == 0;
}

size_t ws_frame_header_write(uint8_t *out, bool fin, uint8_t opcode, uint64_t payload_len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (payload_len <= 125) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

bool ws_close_code_valid(uint16_t code)
{
    /* RFC 6455 7.4 and the IANA registry: 1004-1006 and 1015 are never sent, 1016-2999 are
     * reserved for future use, 3000-4999 belong to libraries and applications. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}
