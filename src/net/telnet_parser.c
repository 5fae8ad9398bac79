/* telnet_parser: byte-at-a-time state machine that turns a telnet stream into lines and events. */
#include "telnet_parser.h"

/*
 * DESIGN: the state names what the previous bytes left unfinished (a CR, an
 * IAC, a verb waiting for its option, a subnegotiation). Each byte is looked
 * at once, in the state it arrives in, so where the caller's reads end never
 * changes the events. The only state that hands a byte on without consuming
 * it is the one after a CR: a byte other than LF or NUL there is the first
 * byte of the next line.
 *
 * A line is reported as soon as its CR or LF arrives, not when the byte
 * after a CR does, so a client that sends a lone CR is answered at once.
 * After an event the line length is reset before returning; the bytes stay
 * in the buffer, which is what keeps ev->line valid until the next call.
 *
 * Subnegotiations are discarded, never buffered, so their length costs
 * nothing but a saturating counter. One that never sees IAC SE keeps the
 * parser discarding data, but an IAC followed by any command other than SE
 * or IAC ends it (RFC 854 lets commands appear anywhere, and a well-formed
 * SB never contains one): a confused or hostile client cannot hide a
 * negotiation or an IAC IP behind an open SB, so the user can always get out.
 */

/* How many subnegotiation bytes are counted before the count stops growing. */
#define TELNET_SB_MAX 1024

/* Commands without an argument (RFC 854) that this parser acts on. */
#define TELNET_IP 244
#define TELNET_EC 247
#define TELNET_EL 248

enum {
    S_DATA,   /* inside a line, or between lines */
    S_CR,     /* a CR ended a line; a following LF or NUL belongs to it */
    S_IAC,    /* an IAC arrived; the command byte comes next */
    S_OPT,    /* IAC WILL/WONT/DO/DONT arrived; the option byte comes next */
    S_SB,     /* inside IAC SB ..., discarding */
    S_SB_IAC, /* an IAC inside a subnegotiation */
};

void telnet_parser_init(struct telnet_parser *p, uint8_t *buf, size_t cap)
{
    p->buf = buf;
    p->cap = cap;
    p->len = 0;
    p->state = S_DATA;
    p->verb = 0;
    p->overflow = false;
    p->sb_len = 0;
}

bool telnet_parser_valid(const struct telnet_parser *p)
{
    if (p->state > S_SB_IAC || p->len > p->cap || (p->len > 0 && !p->buf) ||
        p->sb_len > TELNET_SB_MAX || (p->overflow && p->len != p->cap))
        return false;
    return p->state != S_OPT || (p->verb >= TELNET_WILL && p->verb <= TELNET_DONT);
}

bool telnet_parser_holds_line(const struct telnet_parser *p)
{
    return p->len > 0 || p->overflow;
}

void telnet_parser_lend(struct telnet_parser *p, uint8_t *buf)
{
    p->buf = buf;
}

static bool is_continuation(uint8_t c)
{
    return (c & 0xC0) == 0x80;
}

/* How many bytes a sequence led by c has in all, or 0 if c cannot lead one. */
static size_t sequence_length(uint8_t c)
{
    if (c >= 0xC0 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF7)
        return 4;
    return 0;
}

/*
 * Removes the last character of the line: a UTF-8 sequence with its lead
 * byte, or a single byte. A continuation byte with no lead that could own it
 * is a character of its own, as it is to a decoder showing U+FFFD for it.
 */
static void erase_char(struct telnet_parser *p)
{
    /* What overflowed is already gone, so there is nothing exact to take back. */
    if (p->overflow || p->len == 0)
        return;
    size_t tail = 0;
    while (tail < 3 && tail < p->len && is_continuation(p->buf[p->len - 1 - tail]))
        tail++;
    if (tail > 0 && tail < p->len) {
        size_t want = sequence_length(p->buf[p->len - 1 - tail]);
        /* A lead with fewer continuations than it wants still goes as one unit. */
        if (want > tail) {
            p->len -= tail + 1;
            return;
        }
    }
    p->len--;
}

static void erase_line(struct telnet_parser *p)
{
    /* Everything that overflowed has been erased too, so the line is no longer too long. */
    p->len = 0;
    p->overflow = false;
}

static void append(struct telnet_parser *p, uint8_t c)
{
    if (p->overflow)
        return;
    if (p->len == p->cap) {
        p->overflow = true;
        return;
    }
    p->buf[p->len++] = c;
}

/* Reports the line that just ended (or that it was too long) and starts the next one. */
static void end_line(struct telnet_parser *p, struct telnet_event *ev)
{
    if (p->overflow) {
        ev->type = TELNET_EV_TOO_LONG;
    } else {
        ev->type = TELNET_EV_LINE;
        ev->line = p->buf;
        ev->len = p->len;
    }
    p->len = 0;
    p->overflow = false;
}

/* Acts on the command byte after an IAC; returns whether that made an event. */
static bool command(struct telnet_parser *p, uint8_t c, struct telnet_event *ev)
{
    p->state = S_DATA;
    switch (c) {
    case TELNET_IAC:
        append(p, c);
        return false;
    case TELNET_WILL:
    case TELNET_WONT:
    case TELNET_DO:
    case TELNET_DONT:
        p->verb = c;
        p->state = S_OPT;
        return false;
    case TELNET_SB:
        p->sb_len = 0;
        p->state = S_SB;
        return false;
    case TELNET_IP:
        /* Like a terminal's interrupt, it also throws away the half-typed line. */
        erase_line(p);
        ev->type = TELNET_EV_INTERRUPT;
        return true;
    case TELNET_EC:
        erase_char(p);
        return false;
    case TELNET_EL:
        erase_line(p);
        return false;
    default:
        /* NOP, DM, BRK, AO, AYT, GA, a stray SE, and bytes that are no command at all. */
        return false;
    }
}

size_t telnet_parse(struct telnet_parser *p, const uint8_t *data, size_t len,
                    struct telnet_event *ev)
{
    ev->type = TELNET_EV_NONE;
    ev->line = NULL;
    ev->len = 0;
    ev->verb = 0;
    ev->option = 0;

    size_t i = 0;
    while (i < len) {
        uint8_t c = data[i];
        bool event = false;
        switch (p->state) {
        case S_CR:
            p->state = S_DATA;
            if (c == '\n' || c == '\0')
                break;
            /* Not consumed: the byte begins the next line and is read again in S_DATA. */
            continue;
        case S_DATA:
            if (c == TELNET_IAC) {
                p->state = S_IAC;
            } else if (c == '\r') {
                p->state = S_CR;
                end_line(p, ev);
                event = true;
            } else if (c == '\n') {
                end_line(p, ev);
                event = true;
            } else if (c == 0x08 || c == 0x7F) {
                erase_char(p);
            } else if (c == 0x03) {
                /* Ctrl-C from a client in raw mode: the same as IAC IP, never part of a line. */
                erase_line(p);
                ev->type = TELNET_EV_INTERRUPT;
                event = true;
            } else {
                /* Other control bytes, NUL included, are the session's to refuse. */
                append(p, c);
            }
            break;
        case S_IAC:
            event = command(p, c, ev);
            break;
        case S_OPT:
            p->state = S_DATA;
            ev->type = TELNET_EV_NEGOTIATE;
            ev->verb = p->verb;
            ev->option = c;
            event = true;
            break;
        case S_SB:
            if (c == TELNET_IAC)
                p->state = S_SB_IAC;
            else if (p->sb_len < TELNET_SB_MAX)
                p->sb_len++;
            break;
        case S_SB_IAC:
            if (c == TELNET_SE) {
                p->state = S_DATA;
            } else if (c == TELNET_IAC) {
                /* An escaped 0xFF is part of the subnegotiation's data. */
                p->state = S_SB;
                if (p->sb_len < TELNET_SB_MAX)
                    p->sb_len++;
            } else {
                /* Any other command ends the subnegotiation and is then read as usual. */
                event = command(p, c, ev);
            }
            break;
        default:
            /* Unreachable unless the struct was corrupted; start over rather than stall. */
            p->state = S_DATA;
            continue;
        }
        i++;
        if (event)
            break;
    }
    return i;
}
