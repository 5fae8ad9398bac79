/*
 * handover_rec: the state record of one connection moved to another process
 * by a live upgrade (handover.c): its format, a writer and a reader. Pure:
 * no I/O; the reader allocates nothing and points into the caller's buffer.
 *
 * DESIGN: a record is versioned and length-prefixed: a 12-byte header (magic
 * "PRHR", the format version, 2 bytes of flags that must be 0, the body's
 * length) and a body of fields. Each field is a tag, a length and a value,
 * tag and length as LEB128 varints; an integer value is a varint too (signed
 * ones zigzagged), a nested field (a room, a backlog entry, the WebSocket
 * reader) is itself a list of fields. So a field can be added without
 * touching the others, and a reader of version N reads every version it
 * claims (HANDOVER_REC_MIN_VERSION..HANDOVER_REC_VERSION) by giving the fields
 * an older version lacks their defaults. What a reader does not know it
 * refuses: a version outside its range, a tag that is not one of the
 * record's version, a value out of range. A record refused is never half
 * read: the connection stays with the process that wrote it.
 *
 * Times are relative (how long ago, how long until), never clock readings,
 * so the reader's clock need not be the writer's. The record's tags and the
 * version each appeared in are listed in handover_rec.c; changing what a
 * field means, or the meaning of a ws_reader or telnet_parser state kept in
 * it, needs a new version.
 *
 * Versions: 1, the first; 2 adds the password check in flight (HR_PW_OP): a login
 * or a registration being hashed moves with its connection, to be submitted
 * again, where version 1 kept such a connection in the old process (drained); 3 adds to each
 * room what the client was last told of its size (large rooms: HR_RM_TOLD_COUNT and
 * HR_RM_TOLD_LARGE), so a moved connection gets no count it had already (versions 1 and 2 give
 * 0 and false: the room was never large in a binary that wrote them); 4 adds a telnet
 * connection's lines waiting for a rate-limit token (HR_TN_WAITING, rule 79), where a writer of
 * an older version keeps such a connection in the old process until they have run; 5 adds the
 * user's status as the connection knew it (HR_STATUS, protocol 1.1 rule 69), which the new
 * process's hub takes over: a status lives in memory only, and the hub is not handed over (a
 * writer of an older version moves the connection without it, and the status falls back to
 * online), and the search bucket (HR_SEARCH, rule 73), which an older record starts full; 6
 * adds the dm rooms the connection was given messages of without joining them, each with the
 * last seq written to it (HR_DM), so the new process catches each one up from there (a moved
 * connection's place in such a room, as HR_ROOM's last seq is in a joined one: without it, with
 * several nodes, what another node stored while the connection moved was never delivered to
 * it); an older record carries none, and such rooms go on from the first event the new process
 * hears of them, as before.
 */
#ifndef PARLEY_HANDOVER_REC_H
#define PARLEY_HANDOVER_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "telnet_parser.h"
#include "ws_frame.h"

#define HANDOVER_REC_VERSION 6     /* the version written */
#define HANDOVER_REC_MIN_VERSION 1 /* the oldest version read */
#define HANDOVER_REC_HEADER 12
#define HANDOVER_REC_MAGIC 0x52485250u /* "PRHR" little-endian */
/* The largest record read: a connection's output and input are bounded well below this. */
#define HANDOVER_REC_MAX (64u << 20)

/* Bounds of the names a record carries (the chat's, with their NUL). */
#define HR_NAME_MAX 33 /* a user name */
#define HR_ROOM_MAX 70 /* a room name, "dm:a:b" included */
#define HR_N_CIDS 16   /* rule 17's remembered (room, cid) keys */
#define HR_ATTEMPT_SECONDS 10
#define HR_TN_LINE_MAX 4096             /* a telnet line (telnet_session.h) */
#define HR_TN_WAITING_MAX 1000          /* waiting telnet lines (config.h: TELNET_QUEUE_MAX) */
#define HR_STATUS_TEXT_MAX (4 * 100000) /* a status text's bytes (config.c: --max-status) */
#define HR_DMS_MAX 64 /* dm rooms not joined a connection keeps its place in (chat_session.h) */

enum hr_transport { HR_HTTP = 1, HR_WEBSOCKET = 2, HR_TELNET = 3 };

struct hr_bytes {
    const uint8_t *p;
    size_t n;
};

/* A room the connection joined. */
struct hr_room {
    struct hr_bytes name;
    uint64_t last_seq;     /* the newest seq queued for the client */
    uint64_t joined_order; /* telnet: the most recently joined room is current */
    uint32_t told_count;   /* (3) the user count the client was last told (rule 83) */
    bool told_large;       /* (3) the room was large as it was last told */
};

/* A dm room the connection was given messages of without joining it (version 6). */
struct hr_dm {
    struct hr_bytes name;
    uint64_t last_seq; /* the newest seq written to the client */
};

/* Output held back behind a replay: a message's bytes, or a replay range still to read. */
struct hr_backlog {
    bool is_replay;
    bool live;           /* bytes: a live event (counted against the slow-consumer limit) */
    struct hr_bytes msg; /* bytes: the JSON text (WebSocket) or the telnet line(s) */
    struct hr_bytes room;
    uint64_t after, until; /* replay: (after, until] is still to be read */
    int64_t ts;            /* replay: nothing older (rule 40) */
};

/* A password check in flight (version 2): what it takes to submit it again. */
struct hr_pw_op {
    bool present;
    uint8_t kind;            /* HR_PW_LOGIN or HR_PW_REGISTER */
    struct hr_bytes id_json; /* the request's id as JSON text; empty: none (telnet) */
    struct hr_bytes name;
    struct hr_bytes password;
    bool registered_guest; /* a logged-in guest registering its own name */
    uint64_t guest_session;
};
enum { HR_PW_LOGIN = 1, HR_PW_REGISTER = 2 };

struct handover_rec {
    uint16_t version;
    uint8_t transport;

    /* The connection. */
    uint64_t peer_key, net_key;
    bool peer_counted, via_proxy;
    uint64_t rx_age_ms; /* since bytes last arrived */
    bool has_timer;
    uint64_t timer_ms; /* until the connection's timer fires (0: due now) */
    uint8_t http_bits;
    struct hr_bytes in;  /* input read and not yet handled */
    struct hr_bytes out; /* output queued and not yet written, as bytes */

    /* WebSocket. */
    uint8_t ws_endpoint, ws_deflate_bits;
    uint64_t ws_ping_age_ms, ws_open_age_ms;
    struct ws_reader ws_reader; /* max_message is the reader's own; its spill is ws_spill */
    struct ws_reader_spill ws_spill;
    bool has_ws_msg;
    struct hr_bytes ws_msg; /* the data message reassembled so far */

    /* Telnet. */
    uint8_t tn_prompt, tn_password_tries;
    bool tn_echo_off, tn_auto_joined, tn_password_prompted;
    struct hr_bytes tn_name, tn_current;
    uint64_t tn_open_age_ms;
    struct telnet_parser tn_parser; /* buf and cap are the reader's own */
    struct hr_bytes tn_line;        /* the line being typed */
    size_t tn_n_waiting;            /* (4) lines waiting for a token: handover_rec_waiting */

    /* The chat session, if the connection has one. */
    bool has_chat;
    bool logged_in, login_pending, auth_pending, guest;
    uint64_t login_paused_ms, guest_session;
    int64_t created_ms;
    struct hr_bytes user, user_lc;
    uint64_t join_counter;
    uint64_t tokens_micro; /* the send bucket, in millionths of a token */
    uint64_t refill_age_ms;
    uint16_t attempts[HR_ATTEMPT_SECONDS]; /* [0]: this second, [i]: i seconds ago */
    bool has_react; /* (4) the react bucket, as the send bucket above; absent: never used */
    uint64_t react_tokens_micro, react_refill_age_ms;
    uint16_t react_attempts[HR_ATTEMPT_SECONDS];
    bool has_search; /* (5) the search bucket, as the react bucket; absent: never used */
    uint64_t search_tokens_micro, search_refill_age_ms;
    uint16_t search_attempts[HR_ATTEMPT_SECONDS];
    bool has_cids;
    uint64_t cids[HR_N_CIDS];
    uint8_t cids_next;
    bool has_typing;
    uint64_t typing_age_ms;
    size_t n_rooms, n_backlog;
    size_t n_dms;       /* (6) handover_rec_dm */
    struct hr_pw_op pw; /* version 2 */
    /* (5) the user's status as last told to the connection (rule 69); absent: online, no text */
    bool has_status, status_away;
    struct hr_bytes status_text;

    /* Where the repeated fields are (handover_rec_room, handover_rec_backlog). */
    const uint8_t *body;
    size_t body_len;
};

/* --- writing --- */

struct hr_writer {
    uint8_t *buf;
    size_t len, cap;
    size_t start;   /* where this record's header is */
    size_t nest[4]; /* where each open nested field's length is */
    int depth;
    uint16_t version; /* what is being written */
};

/* Starts a record of `version` at the end of w's buffer (w zeroed before its first record). */
void hr_begin(struct hr_writer *w, uint16_t version);
void hr_u64(struct hr_writer *w, unsigned tag, uint64_t v);
void hr_i64(struct hr_writer *w, unsigned tag, int64_t v);
void hr_put(struct hr_writer *w, unsigned tag, const void *p, size_t n);
void hr_str(struct hr_writer *w, unsigned tag, const char *s);
/* A bytes field of n bytes that the caller writes at the returned address (before the next call).
 */
uint8_t *hr_space(struct hr_writer *w, unsigned tag, size_t n);
/* A nested field: its fields follow, until hr_close. At most 4 deep. */
void hr_open(struct hr_writer *w, unsigned tag);
void hr_close(struct hr_writer *w);
/* Ends the record (writes its length into the header). */
void hr_end(struct hr_writer *w);
/* Frees w's buffer. */
void hr_writer_free(struct hr_writer *w);

/* The record's tags, for writers (handover_rec.c lists them with their versions). */
enum hr_tag {
    HR_TRANSPORT = 1,
    HR_PEER_KEY = 2,
    HR_NET_KEY = 3,
    HR_PEER_COUNTED = 4,
    HR_VIA_PROXY = 5,
    HR_RX_AGE_MS = 6,
    HR_TIMER_MS = 7,
    HR_HTTP_BITS = 8,
    HR_IN = 9,
    HR_OUT = 10,

    HR_WS_ENDPOINT = 20,
    HR_WS_DEFLATE_BITS = 21,
    HR_WS_PING_AGE_MS = 22,
    HR_WS_OPEN_AGE_MS = 23,
    HR_WS_READER = 24, /* nested: HR_RD_* */
    HR_WS_MSG = 25,

    HR_TN_PROMPT = 40,
    HR_TN_TRIES = 41,
    HR_TN_ECHO_OFF = 42,
    HR_TN_AUTO_JOINED = 43,
    HR_TN_PW_PROMPTED = 44,
    HR_TN_NAME = 45,
    HR_TN_CURRENT = 46,
    HR_TN_OPEN_AGE_MS = 47,
    HR_TN_PARSER = 48, /* nested: HR_TP_* */
    HR_TN_LINE = 49,
    HR_TN_WAITING = 50, /* version 4; bytes, repeated, oldest first */

    HR_CHAT = 60,
    HR_LOGGED_IN = 61,
    HR_LOGIN_PENDING = 62,
    HR_AUTH_PENDING = 63,
    HR_LOGIN_PAUSED_MS = 64,
    HR_GUEST = 65,
    HR_GUEST_SESSION = 66,
    HR_CREATED_MS = 67,
    HR_USER = 68,
    HR_USER_LC = 69,
    HR_JOIN_COUNTER = 70,
    HR_TOKENS_MICRO = 71,
    HR_REFILL_AGE_MS = 72,
    HR_ATTEMPTS = 73, /* 10 x u16 LE, this second first */
    HR_CIDS = 74,     /* 16 x u64 LE */
    HR_CIDS_NEXT = 75,
    HR_TYPING_AGE_MS = 76,
    HR_ROOM = 77,    /* nested, repeated: HR_RM_* */
    HR_BACKLOG = 78, /* nested, repeated: HR_BL_* */
    HR_REACT = 79,   /* version 4; the react bucket: tokens (u64), refill age (u64), attempts */
    HR_SEARCH = 80,  /* version 5; the search bucket, as HR_REACT */
    HR_DM = 81,      /* version 6; nested, repeated: HR_DM_* */

    HR_PW_OP = 90, /* version 2; nested: HR_PO_* */

    HR_STATUS = 100, /* version 5; the status: 1 byte away (0 or 1), then the text's bytes */
};

/* Inside HR_WS_READER. */
enum {
    HR_RD_FRAME_LEN = 1,
    HR_RD_FRAME_DONE,
    HR_RD_MSG_LEN,
    HR_RD_UTF8,
    HR_RD_MASK,
    HR_RD_STAGE,
    HR_RD_HDR,
    HR_RD_OPCODE,
    HR_RD_MSG_OPCODE,
    HR_RD_FIN,
    HR_RD_FAILED,
    HR_RD_DEFLATE,
    HR_RD_MSG_COMPRESSED,
    HR_RD_ERROR,
    HR_RD_CTL,
};
/* Inside HR_TN_PARSER. */
enum { HR_TP_STATE = 1, HR_TP_VERB, HR_TP_OVERFLOW, HR_TP_SB_LEN };
/* Inside HR_ROOM. */
enum { HR_RM_NAME = 1, HR_RM_LAST_SEQ, HR_RM_JOINED_ORDER, HR_RM_TOLD_COUNT, HR_RM_TOLD_LARGE };
/* Inside HR_DM. */
enum { HR_DM_NAME = 1, HR_DM_LAST_SEQ };
/* Inside HR_BACKLOG. */
enum { HR_BL_LIVE = 1, HR_BL_MSG, HR_BL_ROOM, HR_BL_AFTER, HR_BL_UNTIL, HR_BL_TS };
/* Inside HR_PW_OP. */
enum {
    HR_PO_KIND = 1,
    HR_PO_ID,
    HR_PO_NAME,
    HR_PO_PASSWORD,
    HR_PO_REGISTERED_GUEST,
    HR_PO_GUEST_SESSION,
};
/* The longest password a request may carry (proto.c: 256 bytes). */
#define HR_PASSWORD_MAX 256

/* --- reading --- */

/*
 * Pure: the length of the record starting at buf[0..n) (header included), 0
 * if n does not hold all of it yet, or -1 if it is not a record (bad magic or
 * flags, or longer than HANDOVER_REC_MAX). Its version is not checked.
 */
long handover_rec_size(const uint8_t *buf, size_t n, uint16_t *version);

/*
 * Pure: reads the record buf[0..n) (exactly one) into rec, whose byte fields
 * point into buf. Returns 0, or -1 with *why set to a static reason (a version
 * this reader does not claim, a field it does not know or that is out of
 * range, a transport's required field missing).
 */
int handover_rec_read(const uint8_t *buf, size_t n, struct handover_rec *rec, const char **why);

/* The rooms and backlog entries of rec, in order: start with *cursor = 0; false after the last. */
bool handover_rec_room(const struct handover_rec *rec, size_t *cursor, struct hr_room *out);
bool handover_rec_backlog(const struct handover_rec *rec, size_t *cursor, struct hr_backlog *out);
/* rec's waiting telnet lines (version 4), oldest first, as handover_rec_room. */
bool handover_rec_waiting(const struct handover_rec *rec, size_t *cursor, struct hr_bytes *out);
/* rec's dm rooms not joined (version 6), as handover_rec_room. */
bool handover_rec_dm(const struct handover_rec *rec, size_t *cursor, struct hr_dm *out);

#endif
