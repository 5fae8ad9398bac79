/* fuzz_handover_rec: libFuzzer target for a live upgrade's connection record and the states it
 * restores. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handover_rec.h"
#include "telnet_parser.h"
#include "ws_frame.h"

/*
 * Input layout: two bytes (little-endian) give the record's length, the record follows, and the
 * rest is a byte stream from the client. The record is read; if it is, its rooms and backlog are
 * walked, and a WebSocket reader or telnet parser state it carries that is judged valid is fed the
 * stream: a state the checks let through must be one the reader and parser can go on from (the
 * sanitizers see any overrun).
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t len = (size_t)data[0] | (size_t)data[1] << 8;
    if (len > size - 2)
        len = size - 2;
    /* Exactly len bytes, so a read past the record is an overrun. */
    uint8_t *rec_bytes = malloc(len ? len : 1);
    memcpy(rec_bytes, data + 2, len);
    const uint8_t *stream = data + 2 + len;
    size_t stream_len = size - 2 - len;

    struct handover_rec rec;
    const char *why = NULL;
    if (handover_rec_read(rec_bytes, len, &rec, &why) < 0) {
        CHECK(why != NULL);
        free(rec_bytes);
        return 0;
    }
    size_t cursor = 0, rooms = 0, entries = 0;
    struct hr_room room;
    while (handover_rec_room(&rec, &cursor, &room)) {
        CHECK(room.name.n > 0 && room.name.n < HR_ROOM_MAX);
        rooms++;
    }
    CHECK(rooms == rec.n_rooms);
    struct hr_backlog e;
    cursor = 0;
    while (handover_rec_backlog(&rec, &cursor, &e)) {
        CHECK(e.is_replay ? e.after < e.until : e.msg.n > 0);
        entries++;
    }
    CHECK(entries == rec.n_backlog);
    /* Waiting telnet lines (version 4): each a line at most, no more than a connection has. */
    size_t waiting = 0;
    struct hr_bytes line_waiting;
    cursor = 0;
    while (handover_rec_waiting(&rec, &cursor, &line_waiting)) {
        CHECK(line_waiting.n <= HR_TN_LINE_MAX);
        waiting++;
    }
    CHECK(waiting == rec.tn_n_waiting && waiting <= HR_TN_WAITING_MAX);
    CHECK(rec.version >= 4 || waiting == 0);
    /* Dm room places (version 6): named, at a seq, no more than a connection keeps. */
    size_t dms = 0;
    struct hr_dm dm;
    cursor = 0;
    while (handover_rec_dm(&rec, &cursor, &dm)) {
        CHECK(dm.name.n > 0 && dm.name.n < HR_ROOM_MAX && dm.last_seq > 0);
        dms++;
    }
    CHECK(dms == rec.n_dms && dms <= HR_DMS_MAX);
    CHECK(rec.version >= 6 || dms == 0);

    uint8_t *copy = malloc(stream_len ? stream_len : 1);
    memcpy(copy, stream, stream_len);
    struct ws_reader r = rec.ws_reader;
    r.max_message = 1 << 16;
    if (ws_reader_valid(&r)) {
        size_t pos = 0;
        while (pos < stream_len) {
            struct ws_event ev;
            size_t used = ws_reader_feed(&r, copy + pos, stream_len - pos, &ev);
            if (ev.type == WS_EV_ERROR || (used == 0 && ev.type == WS_EV_NONE))
                break;
            pos += used;
        }
    }
    uint8_t line[HR_TN_LINE_MAX];
    struct telnet_parser p;
    telnet_parser_init(&p, line, sizeof line);
    p.state = rec.tn_parser.state;
    p.verb = rec.tn_parser.verb;
    p.overflow = rec.tn_parser.overflow;
    p.sb_len = rec.tn_parser.sb_len;
    memcpy(line, rec.tn_line.p, rec.tn_line.n < sizeof line ? rec.tn_line.n : sizeof line);
    p.len = rec.tn_line.n;
    if (telnet_parser_valid(&p)) {
        size_t pos = 0;
        while (pos < stream_len) {
            struct telnet_event ev;
            pos += telnet_parse(&p, stream + pos, stream_len - pos, &ev);
        }
    }
    free(copy);
    free(rec_bytes);
    return 0;
}
