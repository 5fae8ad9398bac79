/*
 * telnet_parser: splits a telnet byte stream into lines and option
 * negotiations (RFC 854/855). Pure: no I/O, no allocation; the caller owns
 * the line buffer.
 *
 * Lines end with CR LF, CR NUL or a bare LF (a CR followed by anything else
 * also ends the line; that byte starts the next one). Backspace (0x08) and
 * DEL (0x7F) remove the last character (a whole UTF-8 sequence) of the line
 * so far; IAC EC does the same and IAC EL clears the line. IAC IAC is a data
 * byte 0xFF. IAC IP and a raw 0x03 (Ctrl-C) are reported as an interrupt
 * and clear the line. IAC WILL/WONT/DO/DONT are reported; subnegotiations
 * (IAC SB ... IAC SE) and other commands are consumed silently. A line longer
 * than the buffer is reported once, at its end, as TELNET_EV_TOO_LONG and
 * dropped.
 */
#ifndef PARLEY_TELNET_PARSER_H
#define PARLEY_TELNET_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TELNET_IAC 255
#define TELNET_DONT 254
#define TELNET_DO 253
#define TELNET_WONT 252
#define TELNET_WILL 251
#define TELNET_SB 250
#define TELNET_SE 240
#define TELNET_OPT_ECHO 1
#define TELNET_OPT_SGA 3

enum telnet_event_type {
    TELNET_EV_NONE,      /* all input consumed */
    TELNET_EV_LINE,      /* a complete line: line/len, without its end */
    TELNET_EV_TOO_LONG,  /* a line over the limit ended and was dropped */
    TELNET_EV_NEGOTIATE, /* IAC verb option: verb is TELNET_WILL/WONT/DO/DONT */
    TELNET_EV_INTERRUPT, /* IAC IP or 0x03 (Ctrl-C): the line typed so far is gone */
};

struct telnet_event {
    enum telnet_event_type type;
    const uint8_t *line; /* LINE: points into the parser's buffer, valid until the next call */
    size_t len;
    uint8_t verb, option; /* NEGOTIATE */
};

struct telnet_parser {
    uint8_t *buf; /* line buffer of cap bytes, the caller's */
    size_t cap;
    size_t len;
    uint8_t state;
    uint8_t verb;
    bool overflow;
    uint16_t sb_len; /* subnegotiation bytes skipped so far */
};

/* Prepares p to collect lines of at most cap bytes into buf (which may be NULL until lent). */
void telnet_parser_init(struct telnet_parser *p, uint8_t *buf, size_t cap);

/*
 * True while part of a line is held in the buffer (or a too long line is being
 * skipped). While false the buffer may be taken back and another, or the same,
 * lent with telnet_parser_lend before the next telnet_parse.
 */
bool telnet_parser_holds_line(const struct telnet_parser *p);
void telnet_parser_lend(struct telnet_parser *p, uint8_t *buf);

/*
 * True when p's state (read back from a live upgrade's record, handover_rec.c, with buf, cap and
 * len set) is one the parser can be in between two calls. A change to what a state means needs a
 * new record version there.
 */
bool telnet_parser_valid(const struct telnet_parser *p);

/*
 * Consumes bytes of data[0..len) until one event is ready or the input is
 * used up; fills *ev and returns the number of bytes consumed. Call again on
 * the rest while bytes remain.
 */
size_t telnet_parse(struct telnet_parser *p, const uint8_t *data, size_t len,
                    struct telnet_event *ev);

#endif
