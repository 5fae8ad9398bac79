/* telnet_session: prompts, commands and line output for telnet users. */
#include "telnet_session.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "chat_session.h"
#include "events.h"
#include "log.h"
#include "search_text.h"
#include "telnet_parser.h"
#include "text.h"
#include "utf8.h"
#include "worker.h"

/* /who lists this many names at most, then says how many more: a line stays readable. */
#define WHO_NAMES_MAX 50
/* /search shows this many results (rule 77) */
#define TELNET_SEARCH_RESULTS 20
/* /rooms lists this many rooms at most (a `rooms` reply's page), then says there are more. */
#define ROOMS_MAX 200
/* How soon waiting lines are looked at again while a live upgrade holds the connection's reading
 * (a moment; if the connection stays, its lines go on then). */
#define WAIT_HELD_RETRY_MS 100

enum prompt {
    PROMPT_NAME,     /* waiting for a name (or /login) */
    PROMPT_PASSWORD, /* a registered name was given: its password, echo off */
    PROMPT_WAIT,     /* a login is on its way */
    PROMPT_NONE,     /* logged in: lines are chat */
    PROMPT_REGISTER, /* /register without an argument: the new password, echo off */
};

struct telnet_state {
    struct telnet_parser parser;
    uint8_t prompt;
    uint8_t password_tries;
    bool echo_off;
    bool auto_joined;
    bool password_prompted;      /* the pending login came from the Password: prompt */
    char name[CHAT_NAME_MAX];    /* the name given at the prompt */
    char current[CHAT_ROOM_MAX]; /* the current room, or "" */
    uint64_t opened_ms;          /* the login deadline counts from here */
    uint8_t *line; /* the line being typed: allocated only while one is, so idle costs nothing */
    /* Lines waiting for a token (rule 79), oldest first: a ring of at most --telnet-queue lines,
     * each allocated to its length (at most TELNET_LINE_MAX); the ring only while one waits. */
    struct waiting_line *waiting;
    uint32_t wait_head, wait_n, wait_cap;
    /* The connection's one timer serves both: the idle deadline (logged in, --telnet-idle) and
     * the time the first waiting line's token is there. UINT64_MAX: not armed. */
    uint64_t idle_due_ms;
    uint64_t wait_due_ms;
    /* Rule 78: the saved rooms a registered login joins after general, in order, while it does
     * (autojoining). Not carried by a live upgrade: a session moved mid-way skips the rest. */
    char (*autojoin)[CHAT_ROOM_MAX];
    uint32_t autojoin_n, autojoin_at;
    bool autojoining;
    /* Rule 78: the read marker of each room something was shown in during the last 5 s (one
     * write per room per 5 s), only while there are any; read_due_ms: the next one due. Not
     * carried by a live upgrade (what it holds is at most 5 s of marker). */
    struct read_mark *marks;
    uint32_t n_marks, cap_marks;
    uint64_t read_due_ms;
};

struct read_mark {
    char room[CHAT_ROOM_MAX];
    uint64_t shown;   /* the last seq shown */
    uint64_t sent;    /* the last seq written as the marker */
    uint64_t sent_ms; /* when */
};

/* Rule 78: a room's read marker is written at most this often. */
#define READ_MARK_EVERY_MS 5000

struct waiting_line {
    uint8_t *bytes;
    uint32_t len;
};

static const char help_text[] =
    "* Commands:\r\n"
    "*   /join ROOM          join a room (and make it current)\r\n"
    "*   /leave [ROOM]       leave a room (default: the current one)\r\n"
    "*   /room ROOM          switch the current room\r\n"
    "*   /msg USER TEXT      send a direct message\r\n"
    "*   /me TEXT            an action: others see * NAME TEXT\r\n"
    "*   /who [ROOM]         who is in a room\r\n"
    "*   /rooms              list the rooms\r\n"
    "*   /history [N]        the last N messages of the current room (default 20)\r\n"
    "*   /search WORDS       messages of all your rooms with these words, newest first\r\n"
    "*   /edit TEXT          replace the text of your newest message in the current room\r\n"
    "*   /delete             delete your newest message in the current room\r\n"
    "*   /away [TEXT]        set your status to away, with a text if given\r\n"
    "*   /back               set your status to online, without text\r\n"
    "*   /topic [TEXT | -]   show, set or clear the current room's topic\r\n"
    "*   /kick USER [REASON], /ban USER [MINUTES] [REASON], /unban USER\r\n"
    "*   /mute USER [MINUTES], /unmute USER, /op USER, /deop USER\r\n"
    "*   /register PASSWORD  register your guest name\r\n"
    "*   /login NAME PASSWORD, /help, /quit\r\n"
    "* A line without / goes to the current room; //text sends /text.\r\n"
    "* Over the rate limit, lines wait and go in order; Ctrl-C drops them.\r\n";

static struct telnet_state *state_of(struct conn *c)
{
    return chat_session_cold(c->session)->transport_state;
}

static const struct config *cfg_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->cfg;
}

static void say(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        conn_send_copy(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void error_line(struct conn *c, enum proto_error err, const char *why)
{
    say(c, "! %s: %s\r\n", proto_error_code(err), why ? why : proto_error_code(err));
}

/* An op's error as a line; a throttled one says when to try again. */
static void op_error_line(struct conn *c, const struct chat_op *op)
{
    const char *why = op->why ? op->why : proto_error_code(op->err);
    if (op->retry_after)
        say(c, "! %s: %s; try again in %u s\r\n", proto_error_code(op->err), why, op->retry_after);
    else
        error_line(c, op->err, why);
}

static void login_timed_out(struct conn *c)
{
    say(c, "\r\n* Login timed out. Bye.\r\n");
    conn_close_after_flush(c);
}

/* Arms the login deadline (rule 26), moved by the time password checks spent hashing; while one
 * is pending, its answer decides. Returns false when the deadline has passed (c is closing). */
static bool arm_login_deadline(struct conn *c)
{
    struct telnet_state *t = state_of(c);
    uint64_t paused = chat_session_login_pause(c);
    uint64_t due = paused == UINT64_MAX
                       ? UINT64_MAX
                       : t->opened_ms + cfg_of(c)->telnet_login_timeout_ms + paused;
    if (conn_now(c) >= due) {
        login_timed_out(c);
        return false;
    }
    conn_set_timer(c, due);
    return true;
}

static void echo(struct conn *c, bool off)
{
    struct telnet_state *t = state_of(c);
    if (t->echo_off == off)
        return;
    t->echo_off = off;
    /* IAC WILL ECHO: "I echo", so the client stops echoing what is typed. */
    const uint8_t seq[3] = {TELNET_IAC, off ? TELNET_WILL : TELNET_WONT, TELNET_OPT_ECHO};
    conn_send_copy(c, seq, sizeof seq);
}

static void prompt_name(struct conn *c)
{
    struct telnet_state *t = state_of(c);
    t->prompt = PROMPT_NAME;
    t->password_tries = 0;
    say(c, "Your name? ");
}

static void prompt_password(struct conn *c, uint8_t prompt)
{
    struct telnet_state *t = state_of(c);
    t->prompt = prompt;
    echo(c, true);
    say(c, "Password: ");
}

/* --- starting ops --- */

static struct chat_op *new_op(struct conn *c, enum chat_op_kind kind)
{
    struct worker *w = c->set->owner;
    return chat_op_new(kind, (uint16_t)w->id, c->id);
}

static void submit(struct conn *c, struct chat_op *op)
{
    const char *why = NULL;
    enum proto_error err = chat_session_submit(c, op, &why);
    if (err && why)
        error_line(c, err, why);
}

static void set_name(struct chat_op *op, const char *name)
{
    size_t n = strlen(name);
    memcpy(op->name, name, n);
    memcpy(op->user, name, n);
    text_lower(name, n, op->user_lc);
}

static void login(struct conn *c, const char *name, const char *password)
{
    struct chat_op *op = new_op(c, password ? CHAT_LOGIN_PASSWORD : CHAT_LOGIN_GUEST);
    set_name(op, name);
    if (password) {
        op->password = xstrdup(password);
        op->password_len = strlen(password);
    }
    state_of(c)->prompt = PROMPT_WAIT;
    submit(c, op);
    if (conn_is_open(c) && !((struct chat_session *)c->session)->logged_in)
        arm_login_deadline(c);
}

/* A message text typed on telnet (rules 16, 41): 1 when it can be sent (trimmed to *trimmed
 * bytes), 0 when nothing is left of it, -1 when it is refused (the error line is written). */
static int check_text(struct conn *c, const char *text, size_t len, size_t *trimmed)
{
    switch (text_check_message(text, len, cfg_of(c)->max_text, trimmed)) {
    case TEXT_OK:
        return 1;
    case TEXT_EMPTY:
        return 0;
    case TEXT_TOO_LONG:
        error_line(c, PROTO_TOO_LONG, "that message is too long");
        return -1;
    case TEXT_BAD:
        error_line(c, PROTO_BAD_REQUEST, "control characters cannot be sent");
        return -1;
    }
    return -1;
}

static void join(struct conn *c, const char *room)
{
    struct chat_op *op = new_op(c, CHAT_JOIN);
    op->names_limit = 0; /* telnet shows how many are there, not who: /who lists them */
    char a[CHAT_NAME_MAX], b[CHAT_NAME_MAX];
    if (text_parse_dm_room(room, strlen(room), a, b)) {
        memcpy(op->room, room, strlen(room) + 1);
        op->room_is_dm = true;
    } else if (!text_fold_room(room, strlen(room), op->room)) {
        chat_op_free(op);
        error_line(c, PROTO_BAD_NAME, "room names are 1-32 characters of a-z 0-9 _ -");
        return;
    }
    submit(c, op);
}

static void send_text(struct conn *c, const char *room, const char *to, const char *text,
                      size_t len)
{
    /* No flood close here (rule 79): over the rate limit a telnet line waits for its token. */
    size_t trimmed;
    if (check_text(c, text, len, &trimmed) <= 0)
        return; /* an error line, or nothing to say */
    struct chat_op *op = new_op(c, CHAT_SEND);
    if (to) {
        text_lower(to, strlen(to), op->to_lc);
    } else {
        memcpy(op->room, room, strlen(room) + 1);
        op->room_is_dm = strncmp(room, "dm:", 3) == 0;
    }
    op->text = xstrndup(text, trimmed);
    op->text_len = trimmed;
    submit(c, op);
}

/*
 * /edit TEXT and /delete (protocol 1.1 rule 77): the user's newest message in the current room
 * that is not deleted (target 0: the store finds it). Success shows the event's line, which
 * comes as any member's does.
 */
/* /search WORDS (rule 77): q = WORDS, the first 20 results over all the user's rooms. */
static void search(struct conn *c, const char *words)
{
    char *match = NULL;
    const char *why = NULL;
    size_t len = strlen(words);
    enum search_query_verdict v = search_query_parse(words, len, &match, &why);
    if (v != SEARCH_QUERY_OK) {
        error_line(c, v == SEARCH_QUERY_TOO_LONG ? PROTO_TOO_LONG : PROTO_BAD_REQUEST,
                   *words ? why : "usage: /search WORDS");
        return;
    }
    struct chat_op *op = new_op(c, CHAT_SEARCH);
    size_t trimmed = 0;
    text_check_message(words, len, SIZE_MAX, &trimmed);
    op->text = xstrndup(words, trimmed);
    op->text_len = trimmed;
    op->search_match = match;
    op->limit = TELNET_SEARCH_RESULTS;
    submit(c, op);
}

static void change_newest(struct conn *c, enum chat_op_kind kind, const char *text)
{
    struct telnet_state *t = state_of(c);
    if (!chat_session_count_send(c))
        return;
    size_t trimmed = 0;
    if (kind == CHAT_EDIT) {
        int ok = check_text(c, text, strlen(text), &trimmed);
        if (ok == 0)
            error_line(c, PROTO_BAD_REQUEST, "usage: /edit TEXT");
        if (ok <= 0)
            return;
    }
    if (!t->current[0]) {
        error_line(c, PROTO_NOT_MEMBER, "you are in no room; /join one");
        return;
    }
    struct chat_op *op = new_op(c, kind);
    memcpy(op->room, t->current, sizeof op->room);
    op->room_is_dm = strncmp(t->current, "dm:", 3) == 0;
    op->newest_own = true;
    if (kind == CHAT_EDIT) {
        op->text = xstrndup(text, trimmed);
        op->text_len = trimmed;
    }
    submit(c, op);
}

/* /away [TEXT] and /back (protocol 1.1 rule 77): a status request; its answer is a notice. */
static void set_status(struct conn *c, bool away, const char *text)
{
    size_t trimmed = 0;
    const char *why = NULL;
    enum proto_error e =
        proto_status_text(text, strlen(text), cfg_of(c)->max_status, &trimmed, &why);
    if (e != PROTO_OK) {
        error_line(c, e, why);
        return;
    }
    struct chat_op *op = new_op(c, CHAT_STATUS);
    op->away = away;
    op->text = xstrndup(text, trimmed);
    op->text_len = trimmed;
    submit(c, op);
}

static char *word(char **rest);

/* A topic or reason typed on telnet (rules 58, 63): trimmed; no control character (a tab
 * included); at most max code points. 1 when it can be sent (*trimmed bytes, maybe 0), -1 when it
 * is refused (the error line is written). */
static int check_line_text(struct conn *c, const char *text, size_t max, size_t *trimmed)
{
    size_t len = strlen(text);
    *trimmed = 0;
    enum text_verdict v = text_check_message(text, len, SIZE_MAX, trimmed);
    if (v == TEXT_EMPTY)
        return 1;
    if (v != TEXT_OK || memchr(text, '\t', *trimmed)) {
        error_line(c, PROTO_BAD_REQUEST, "control characters cannot be sent");
        return -1;
    }
    size_t ignored;
    if (text_check_message(text, len, max, &ignored) == TEXT_TOO_LONG) {
        error_line(c, PROTO_TOO_LONG, "that is longer than this server allows");
        return -1;
    }
    return 1;
}

/* An op of kind for the current room, or NULL after an error line (no current room). */
static struct chat_op *current_room_op(struct conn *c, enum chat_op_kind kind)
{
    struct telnet_state *t = state_of(c);
    if (!t->current[0]) {
        error_line(c, PROTO_NOT_MEMBER, "you are in no room; /join one");
        return NULL;
    }
    struct chat_op *op = new_op(c, kind);
    memcpy(op->room, t->current, sizeof op->room);
    op->room_is_dm = strncmp(t->current, "dm:", 3) == 0;
    return op;
}

/* /topic (shows it), /topic TEXT, /topic - (clears) (rule 77). */
static void topic_command(struct conn *c, const char *rest)
{
    size_t trimmed = 0;
    bool clear = strcmp(rest, "-") == 0;
    if (*rest && !clear && check_line_text(c, rest, cfg_of(c)->max_topic, &trimmed) < 0)
        return;
    struct chat_op *op = current_room_op(c, CHAT_TOPIC);
    if (!op)
        return;
    if (!*rest || (!clear && trimmed == 0)) {
        op->topic_query = true;
    } else {
        op->text = xstrndup(clear ? "" : rest, clear ? 0 : trimmed);
        op->text_len = clear ? 0 : trimmed;
    }
    submit(c, op);
}

/* A MINUTES word (rule 77): 1..525600 ASCII digits, and no more than --max-duration allows.
 * Returns the seconds, or 0 after an error line. */
static uint64_t minutes_arg(struct conn *c, const char *w)
{
    uint64_t minutes = 0;
    size_t n = strlen(w);
    for (size_t i = 0; i < n && n <= 6; i++)
        minutes = minutes * 10 + (uint64_t)(w[i] - '0');
    if (n > 6 || minutes < 1 || minutes > 525600 || minutes * 60 > cfg_of(c)->max_duration_s) {
        error_line(c, PROTO_BAD_REQUEST, "MINUTES must be a number of minutes this server allows");
        return 0;
    }
    return minutes * 60;
}

static bool all_digits(const char *w)
{
    if (!*w)
        return false;
    for (; *w; w++)
        if (*w < '0' || *w > '9')
            return false;
    return true;
}

/* /kick USER [REASON], /ban USER [MINUTES] [REASON], /unban USER, /mute USER [MINUTES],
 * /unmute USER, /op USER, /deop USER (rule 77), on the current room. */
static void moderation_command(struct conn *c, const char *cmd, char *rest)
{
    enum chat_op_kind kind = strcmp(cmd, "kick") == 0    ? CHAT_KICK
                             : strcmp(cmd, "ban") == 0   ? CHAT_BAN
                             : strcmp(cmd, "unban") == 0 ? CHAT_UNBAN
                             : strcmp(cmd, "mute") == 0  ? CHAT_MUTE
                             : strcmp(cmd, "unmute") == 0 ? CHAT_UNMUTE
                                                          : CHAT_ROLE;
    char *who = word(&rest);
    while (*rest == ' ')
        rest++;
    if (!who) {
        error_line(c, PROTO_BAD_REQUEST, "usage: /help lists the moderation commands");
        return;
    }
    uint64_t duration = 0;
    if (kind == CHAT_BAN || kind == CHAT_MUTE) {
        char *save = rest;
        char *w = word(&rest);
        if (w && all_digits(w)) {
            if (!(duration = minutes_arg(c, w)))
                return;
            while (*rest == ' ')
                rest++;
        } else if (w && kind == CHAT_MUTE) {
            error_line(c, PROTO_BAD_REQUEST, "usage: /mute USER [MINUTES]");
            return;
        } else if (w) {
            size_t wn = strlen(w);
            if (rest != w + wn)
                w[wn] = ' '; /* not MINUTES: the reason's first word, put back */
            rest = save;
            while (*rest == ' ')
                rest++;
        }
    }
    bool takes_reason = kind == CHAT_KICK || kind == CHAT_BAN;
    if (!takes_reason && *rest) {
        error_line(c, PROTO_BAD_REQUEST, "that command takes no more words");
        return;
    }
    size_t trimmed = 0;
    if (takes_reason && *rest && check_line_text(c, rest, cfg_of(c)->max_reason, &trimmed) < 0)
        return;
    if (!text_valid_user(who, strlen(who))) {
        error_line(c, PROTO_BAD_NAME, "names are 1-32 characters of A-Z a-z 0-9 _ - .");
        return;
    }
    struct chat_op *op = current_room_op(c, kind);
    if (!op)
        return;
    size_t n = strlen(who);
    memcpy(op->subject, who, n);
    text_lower(who, n, op->subject_lc);
    op->duration = duration;
    op->role = strcmp(cmd, "op") == 0 ? CHAT_ROLE_OP : CHAT_ROLE_MEMBER;
    if (trimmed)
        op->text = xstrndup(rest, trimmed);
    submit(c, op);
}

/* The room a command names, or the current one; writes it into out. Returns false if none. */
static bool room_arg(struct conn *c, const char *arg, char out[CHAT_ROOM_MAX])
{
    struct telnet_state *t = state_of(c);
    if (!arg || !*arg) {
        if (!t->current[0]) {
            error_line(c, PROTO_NOT_MEMBER, "you are in no room; /join one");
            return false;
        }
        memcpy(out, t->current, CHAT_ROOM_MAX);
        return true;
    }
    char a[CHAT_NAME_MAX], b[CHAT_NAME_MAX];
    if (text_parse_dm_room(arg, strlen(arg), a, b)) {
        memcpy(out, arg, strlen(arg) + 1);
        return true;
    }
    if (arg[0] == '#')
        arg++;
    if (!text_fold_room(arg, strlen(arg), out)) {
        error_line(c, PROTO_BAD_NAME, "room names are 1-32 characters of a-z 0-9 _ -");
        return false;
    }
    return true;
}

/* Splits the next space-separated word off *rest (NUL-terminating it); NULL when none. */
static char *word(char **rest)
{
    char *p = *rest;
    while (*p == ' ')
        p++;
    if (!*p)
        return NULL;
    char *start = p;
    while (*p && *p != ' ')
        p++;
    if (*p)
        *p++ = '\0';
    *rest = p;
    return start;
}

static void command(struct conn *c, char *line)
{
    struct chat_session *s = c->session;
    struct telnet_state *t = state_of(c);
    char *rest = line + 1;
    char *cmd = word(&rest);
    while (*rest == ' ')
        rest++;
    char room[CHAT_ROOM_MAX];
    if (!cmd) {
        error_line(c, PROTO_UNKNOWN_TYPE, "no such command; /help lists them");
    } else if (strcmp(cmd, "help") == 0) {
        conn_send_copy(c, help_text, sizeof help_text - 1); /* longer than say() holds */
    } else if (strcmp(cmd, "quit") == 0) {
        say(c, "* Bye.\r\n");
        conn_close_after_flush(c);
    } else if (strcmp(cmd, "login") == 0) {
        error_line(c, PROTO_ALREADY_LOGGED_IN, "you are logged in already");
    } else if (strcmp(cmd, "register") == 0) {
        if (!s->guest) {
            error_line(c, PROTO_ALREADY_LOGGED_IN, "you are registered already");
        } else if (!*rest) {
            prompt_password(c, PROMPT_REGISTER);
        } else {
            struct chat_op *op = new_op(c, CHAT_REGISTER);
            char user[CHAT_NAME_MAX];
            set_name(op, chat_session_user(s, user));
            op->password = xstrdup(rest);
            op->password_len = strlen(rest);
            if (op->password_len < 8 || op->password_len > 256) {
                chat_op_free(op);
                error_line(c, PROTO_BAD_REQUEST, "passwords are 8 to 256 bytes");
            } else {
                submit(c, op);
            }
        }
    } else if (strcmp(cmd, "join") == 0) {
        char *r = word(&rest);
        if (!r)
            error_line(c, PROTO_BAD_REQUEST, "usage: /join ROOM");
        else
            join(c, r[0] == '#' ? r + 1 : r);
    } else if (strcmp(cmd, "leave") == 0) {
        if (room_arg(c, word(&rest), room)) {
            struct chat_op *op = new_op(c, CHAT_LEAVE);
            memcpy(op->room, room, sizeof op->room);
            submit(c, op);
        }
    } else if (strcmp(cmd, "room") == 0) {
        char *r = word(&rest);
        if (!r) {
            error_line(c, PROTO_BAD_REQUEST, "usage: /room ROOM");
        } else if (room_arg(c, r, room)) {
            if (chat_session_room(s, room)) {
                memcpy(t->current, room, sizeof t->current);
                say(c, "* Now talking in #%s.\r\n", room);
            } else {
                error_line(c, PROTO_NOT_MEMBER, "you have not joined that room");
            }
        }
    } else if (strcmp(cmd, "msg") == 0) {
        char *to = word(&rest);
        if (!to || !*rest)
            error_line(c, PROTO_BAD_REQUEST, "usage: /msg USER TEXT");
        else if (!text_valid_user(to, strlen(to)))
            error_line(c, PROTO_BAD_NAME, "names are 1-32 characters of A-Z a-z 0-9 _ - .");
        else
            send_text(c, NULL, to, rest, strlen(rest));
    } else if (strcmp(cmd, "me") == 0) {
        if (!*rest) {
            error_line(c, PROTO_BAD_REQUEST, "usage: /me TEXT");
        } else if (!t->current[0]) {
            error_line(c, PROTO_NOT_MEMBER, "you are in no room; /join one");
        } else {
            /* An action is a message whose text starts with "/me " (docs/protocol.md). */
            char text[TELNET_LINE_MAX + 8];
            int n = snprintf(text, sizeof text, "/me %s", rest);
            send_text(c, t->current, NULL, text, (size_t)n);
        }
    } else if (strcmp(cmd, "who") == 0) {
        if (room_arg(c, word(&rest), room)) {
            struct chat_op *op = new_op(c, CHAT_WHO);
            op->names_limit = WHO_NAMES_MAX;
            memcpy(op->room, room, sizeof op->room);
            op->room_is_dm = strncmp(room, "dm:", 3) == 0;
            submit(c, op);
        }
    } else if (strcmp(cmd, "rooms") == 0) {
        struct chat_op *op = new_op(c, CHAT_ROOMS);
        op->limit = ROOMS_MAX;
        submit(c, op);
    } else if (strcmp(cmd, "history") == 0) {
        char *n = word(&rest);
        char *end = NULL;
        long limit = n ? strtol(n, &end, 10) : 20;
        if (n && (*end || limit < 1 || limit > 200)) {
            error_line(c, PROTO_BAD_REQUEST, "usage: /history [N], N from 1 to 200");
        } else if (room_arg(c, NULL, room)) {
            struct chat_op *op = new_op(c, CHAT_HISTORY);
            memcpy(op->room, room, sizeof op->room);
            op->room_is_dm = strncmp(room, "dm:", 3) == 0;
            op->limit = (unsigned)limit;
            op->telnet_history = true; /* rule 76: deleted messages neither shown nor counted */
            submit(c, op);
        }
    } else if (strcmp(cmd, "search") == 0) {
        search(c, rest);
    } else if (strcmp(cmd, "edit") == 0) {
        change_newest(c, CHAT_EDIT, rest);
    } else if (strcmp(cmd, "delete") == 0) {
        if (*rest)
            error_line(c, PROTO_BAD_REQUEST, "usage: /delete (your newest message here)");
        else
            change_newest(c, CHAT_DELETE, NULL);
    } else if (strcmp(cmd, "away") == 0) {
        set_status(c, true, rest);
    } else if (strcmp(cmd, "back") == 0) {
        if (*rest)
            error_line(c, PROTO_BAD_REQUEST, "usage: /back (then /away TEXT for a text)");
        else
            set_status(c, false, "");
    } else if (strcmp(cmd, "topic") == 0) {
        topic_command(c, rest);
    } else if (strcmp(cmd, "kick") == 0 || strcmp(cmd, "ban") == 0 || strcmp(cmd, "unban") == 0 ||
               strcmp(cmd, "mute") == 0 || strcmp(cmd, "unmute") == 0 || strcmp(cmd, "op") == 0 ||
               strcmp(cmd, "deop") == 0) {
        moderation_command(c, cmd, rest);
    } else {
        error_line(c, PROTO_UNKNOWN_TYPE, "no such command; /help lists them");
    }
}

/* --- lines --- */

static void name_line(struct conn *c, char *line)
{
    struct telnet_state *t = state_of(c);
    say(c, "\r\n"); /* end the prompt's line */
    if (strncmp(line, "/login ", 7) == 0) {
        char *rest = line + 7;
        char *name = word(&rest);
        while (*rest == ' ')
            rest++;
        if (!name || !*rest) {
            error_line(c, PROTO_BAD_REQUEST, "usage: /login NAME PASSWORD");
            prompt_name(c);
        } else if (!text_valid_user(name, strlen(name))) {
            error_line(c, PROTO_BAD_NAME, "names are 1-32 characters of A-Z a-z 0-9 _ - .");
            prompt_name(c);
        } else {
            memcpy(t->name, name, strlen(name) + 1);
            t->password_prompted = false;
            login(c, name, rest);
        }
        return;
    }
    if (strcmp(line, "/quit") == 0) {
        say(c, "* Bye.\r\n");
        conn_close_after_flush(c);
        return;
    }
    while (*line == ' ')
        line++;
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == ' ')
        line[--n] = '\0';
    if (!text_valid_user(line, n)) {
        error_line(c, PROTO_BAD_NAME, "names are 1-32 characters of A-Z a-z 0-9 _ - .");
        prompt_name(c);
        return;
    }
    memcpy(t->name, line, n + 1);
    login(c, line, NULL); /* as a guest; a registered name is asked for its password */
}

static void chat_line(struct conn *c, char *line, size_t len)
{
    struct telnet_state *t = state_of(c);
    if (line[0] == '/' && line[1] != '/') {
        command(c, line);
        return;
    }
    if (line[0] == '/') {
        line++; /* "//text" sends "/text" */
        len--;
    }
    if (!t->current[0]) {
        error_line(c, PROTO_NOT_MEMBER, "you are in no room; /join one");
        return;
    }
    send_text(c, t->current, NULL, line, len);
}

static void on_line(struct conn *c, const uint8_t *bytes, size_t len)
{
    struct telnet_state *t = state_of(c);
    if (!utf8_is_valid(bytes, len)) {
        error_line(c, PROTO_BAD_REQUEST, "that line is not UTF-8");
        return;
    }
    char line[TELNET_LINE_MAX + 1];
    memcpy(line, bytes, len);
    line[len] = '\0';
    if (memchr(line, '\0', len)) {
        error_line(c, PROTO_BAD_REQUEST, "control characters cannot be sent");
        return;
    }
    switch (t->prompt) {
    case PROMPT_NAME:
        if (len == 0)
            return;
        name_line(c, line);
        return;
    case PROMPT_PASSWORD:
    case PROMPT_REGISTER:
        echo(c, false);
        say(c, "\r\n");
        if (t->prompt == PROMPT_PASSWORD) {
            login(c, t->name, line);
            t->password_prompted = true;
            return;
        }
        t->prompt = PROMPT_NONE;
        if (len < 8 || len > 256) {
            error_line(c, PROTO_BAD_REQUEST, "passwords are 8 to 256 bytes");
            return;
        }
        struct chat_session *s = c->session;
        struct chat_op *op = new_op(c, CHAT_REGISTER);
        char user[CHAT_NAME_MAX];
        set_name(op, chat_session_user(s, user));
        op->password = xstrdup(line);
        op->password_len = len;
        submit(c, op);
        return;
    case PROMPT_WAIT:
        return; /* typed ahead while logging in: dropped */
    default:
        if (len == 0)
            return;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)line[i];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                error_line(c, PROTO_BAD_REQUEST, "control characters cannot be sent");
                return;
            }
        }
        chat_line(c, line, len);
    }
}

/* --- waiting lines (rule 79) and Ctrl-C (rule 80) --- */

/* Arms the connection's timer for the earlier of the idle deadline and the waiting lines. A user
 * whose lines wait is not idle: the deadline counts again from the last line run. */
static void arm_timer(struct conn *c)
{
    struct telnet_state *t = state_of(c);
    uint64_t idle = t->wait_n > 0 ? UINT64_MAX : t->idle_due_ms;
    uint64_t due = idle < t->wait_due_ms ? idle : t->wait_due_ms;
    conn_set_timer(c, due < t->read_due_ms ? due : t->read_due_ms);
}

/* The first word of a command line ("/msg bob hi" -> "msg"), into out; false if none fits. */
static bool command_word(const uint8_t *line, size_t len, char *out, size_t cap)
{
    size_t i = 1, n = 0;
    while (i < len && line[i] == ' ')
        i++;
    while (i < len && line[i] != ' ') {
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)line[i++];
    }
    out[n] = '\0';
    return n > 0;
}

/*
 * Whether a chat line takes a token, and from which bucket (rule 79). The send bucket: plain
 * lines (and //text), /msg, /me, /edit, /delete. Commands that come with protocol 1.1's later
 * requests join this table: /topic TEXT, /topic -, the moderation commands, /away and /back take
 * the send bucket. /search takes the search bucket.
 */
static bool line_bucket(const uint8_t *line, size_t len, enum chat_bucket_kind *bucket)
{
    static const struct {
        const char *command;
        enum chat_bucket_kind bucket;
    } commands[] = {
        /* one per line, so that each command's entry merges on its own */
        {"msg", CHAT_BUCKET_SEND},
        {"me", CHAT_BUCKET_SEND},
        {"edit", CHAT_BUCKET_SEND},
        {"delete", CHAT_BUCKET_SEND},
        {"away", CHAT_BUCKET_SEND},
        {"back", CHAT_BUCKET_SEND},
        {"search", CHAT_BUCKET_SEARCH},
        {"topic", CHAT_BUCKET_SEND}, /* with TEXT or -: a bare /topic only shows it */
        {"kick", CHAT_BUCKET_SEND},   {"ban", CHAT_BUCKET_SEND}, {"unban", CHAT_BUCKET_SEND},
        {"mute", CHAT_BUCKET_SEND},   {"unmute", CHAT_BUCKET_SEND}, {"op", CHAT_BUCKET_SEND},
        {"deop", CHAT_BUCKET_SEND},
    };
    if (len == 0)
        return false;
    if (line[0] != '/' || (len > 1 && line[1] == '/')) {
        *bucket = CHAT_BUCKET_SEND;
        return true;
    }
    char word[16];
    if (!command_word(line, len, word, sizeof word))
        return false;
    if (strcmp(word, "topic") == 0) {
        /* a bare /topic asks; with anything after it, it sets */
        size_t i = 1;
        while (i < len && line[i] == ' ')
            i++;
        i += 5;
        while (i < len && line[i] == ' ')
            i++;
        if (i >= len)
            return false;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(word, commands[i].command) == 0) {
            *bucket = commands[i].bucket;
            return true;
        }
    }
    return false;
}

/* When the line may run: now, or when its bucket has a token again. */
static uint64_t line_due(struct conn *c, const uint8_t *line, size_t len)
{
    enum chat_bucket_kind bucket;
    if (state_of(c)->prompt != PROMPT_NONE || !line_bucket(line, len, &bucket))
        return conn_now(c);
    return chat_session_token_at(c, bucket);
}

static bool is_quit(const uint8_t *line, size_t len)
{
    char word[8];
    return len > 0 && line[0] == '/' && command_word(line, len, word, sizeof word) &&
           strcmp(word, "quit") == 0;
}

/* A waiting line may be a password (/register PASSWORD, or the answer to its prompt): wiped. */
static void free_line(struct waiting_line *l)
{
    explicit_bzero(l->bytes, l->len);
    free(l->bytes);
}

/* Drops every waiting line; returns how many there were. */
static uint32_t drop_waiting(struct telnet_state *t)
{
    uint32_t n = t->wait_n;
    for (uint32_t i = 0; i < n; i++)
        free_line(&t->waiting[(t->wait_head + i) % t->wait_cap]);
    free(t->waiting);
    t->waiting = NULL;
    t->wait_head = t->wait_n = t->wait_cap = 0;
    t->wait_due_ms = UINT64_MAX;
    return n;
}

static void push_waiting(struct telnet_state *t, const uint8_t *line, size_t len)
{
    if (t->wait_n == t->wait_cap) {
        uint32_t cap = t->wait_cap ? t->wait_cap * 2 : 4;
        struct waiting_line *ring = xmalloc(cap * sizeof *ring);
        for (uint32_t i = 0; i < t->wait_n; i++)
            ring[i] = t->waiting[(t->wait_head + i) % t->wait_cap];
        free(t->waiting);
        t->waiting = ring;
        t->wait_head = 0;
        t->wait_cap = cap;
    }
    uint8_t *copy = xmalloc(len ? len : 1);
    memcpy(copy, line, len);
    t->waiting[(t->wait_head + t->wait_n) % t->wait_cap] =
        (struct waiting_line){.bytes = copy, .len = (uint32_t)len};
    t->wait_n++;
}

/*
 * Runs waiting lines, oldest first, while they may: each one's token is there, and no answer a
 * line depends on (a join's) holds the input. Then arms the timer for the next one's token; a
 * held input goes on through input_released.
 */
static void run_waiting(struct conn *c)
{
    struct telnet_state *t = state_of(c);
    t->wait_due_ms = UINT64_MAX;
    while (t->wait_n > 0) {
        uint64_t now = conn_now(c);
        if (c->input_held)
            break;
        if (c->io_hold & CONN_HOLD_READ) {
            t->wait_due_ms = now + WAIT_HELD_RETRY_MS;
            break;
        }
        struct waiting_line w = t->waiting[t->wait_head];
        uint64_t due = line_due(c, w.bytes, w.len);
        if (due > now) {
            t->wait_due_ms = due;
            break;
        }
        t->wait_head = (t->wait_head + 1) % t->wait_cap;
        t->wait_n--;
        if (cfg_of(c)->telnet_idle_ms)
            t->idle_due_ms = now + cfg_of(c)->telnet_idle_ms;
        on_line(c, w.bytes, w.len);
        free_line(&w);
        if (!conn_is_open(c))
            return; /* the session, and t with it, is gone */
    }
    if (t->wait_n == 0) {
        free(t->waiting);
        t->waiting = NULL;
        t->wait_head = t->wait_cap = 0;
    }
    arm_timer(c);
}

/* A whole line arrived: it runs now, or waits behind the others or for its token (rule 79). */
static void take_line(struct conn *c, const uint8_t *line, size_t len)
{
    struct telnet_state *t = state_of(c);
    if (t->wait_n == 0) {
        uint64_t due = line_due(c, line, len);
        if (due <= conn_now(c)) {
            on_line(c, line, len);
            return;
        }
        t->wait_due_ms = due;
    } else if (is_quit(line, len)) {
        drop_waiting(t); /* /quit never waits, and what waited goes with the session */
        on_line(c, line, len);
        return;
    }
    if (len == 0 && t->prompt == PROMPT_NONE)
        return; /* ignored when it runs, so it takes no place (rule 34) */
    if (t->wait_n >= cfg_of(c)->telnet_queue) {
        say(c, "! %s: %u lines are waiting already; this one was dropped\r\n",
            proto_error_code(PROTO_RATE_LIMITED), t->wait_n);
        return;
    }
    push_waiting(t, line, len);
    arm_timer(c);
}

/* Ctrl-C (rule 80): the line typed so far is gone (the parser saw to it), and every waiting one. */
static void interrupt(struct conn *c)
{
    struct telnet_state *t = state_of(c);
    uint32_t dropped = drop_waiting(t);
    bool prompting =
        t->prompt == PROMPT_NAME || t->prompt == PROMPT_PASSWORD || t->prompt == PROMPT_REGISTER;
    if (prompting)
        say(c, "\r\n"); /* the prompt's line ends; it is asked again below */
    if (dropped)
        say(c, "* %u waiting line%s dropped\r\n", dropped, dropped == 1 ? "" : "s");
    if (t->prompt == PROMPT_NAME)
        say(c, "Your name? ");
    else if (t->prompt == PROMPT_PASSWORD || t->prompt == PROMPT_REGISTER)
        say(c, "Password: ");
    if (((struct chat_session *)c->session)->logged_in)
        arm_timer(c);
}

static void input_released(struct conn *c)
{
    if (state_of(c)->wait_n > 0)
        run_waiting(c);
}

static size_t on_input(struct conn *c, uint8_t *data, size_t len)
{
    struct telnet_state *t = state_of(c);
    if (!t->line) {
        t->line = xmalloc(TELNET_LINE_MAX);
        telnet_parser_lend(&t->parser, t->line);
    }
    size_t used = 0;
    while (used < len && conn_is_open(c) && !c->input_held) {
        struct telnet_event ev;
        used += telnet_parse(&t->parser, data + used, len - used, &ev);
        switch (ev.type) {
        case TELNET_EV_NONE:
        case TELNET_EV_NEGOTIATE: /* we ask for nothing but ECHO, and need no answer */
            break;
        case TELNET_EV_LINE:
            take_line(c, ev.line, ev.len);
            break;
        case TELNET_EV_TOO_LONG:
            error_line(c, PROTO_TOO_LONG, "lines are at most 4096 bytes");
            break;
        case TELNET_EV_INTERRUPT:
            interrupt(c);
            break;
        }
    }
    if (conn_is_open(c) && !telnet_parser_holds_line(&t->parser)) {
        /* Most clients send whole lines: the buffer lives for one read, not for the session. */
        free(t->line);
        t->line = NULL;
        telnet_parser_lend(&t->parser, NULL);
    }
    if (conn_is_open(c) && cfg_of(c)->telnet_idle_ms &&
        ((struct chat_session *)c->session)->logged_in) {
        t->idle_due_ms = conn_now(c) + cfg_of(c)->telnet_idle_ms;
        arm_timer(c);
    }
    return used;
}

/* --- results and events --- */

/* Whether op's statuses list name as away. */
static bool listed_away(const struct chat_op *op, const char *name)
{
    for (size_t i = 0; i < op->n_statuses; i++)
        if (op->statuses[i].away && strcmp(op->statuses[i].name, name) == 0)
            return true;
    return false;
}

/* One line: the first WHO_NAMES_MAX members, then how many more there are. An away user is
 * marked " (away)" (rule 76 leaves the mark free). */
static void list_names(struct conn *c, const char *intro, const struct chat_op *op)
{
    /* intro, names with their marks, " and N more" */
    char line[160 + WHO_NAMES_MAX * (CHAT_NAME_MAX + 2 + sizeof " (away)") + 32];
    size_t n = (size_t)snprintf(line, sizeof line, "%s", intro);
    for (size_t i = 0; i < op->n_names; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%s%s", i ? ", " : "", op->names[i],
                              listed_away(op, op->names[i]) ? " (away)" : "");
    if (op->n_names == 0)
        n += (size_t)snprintf(line + n, sizeof line - n, "nobody");
    else if (op->n_members > op->n_names)
        n += (size_t)snprintf(line + n, sizeof line - n, " and %zu more",
                              op->n_members - op->n_names);
    n += (size_t)snprintf(line + n, sizeof line - n, "\r\n");
    conn_send_copy(c, line, n < sizeof line ? n : sizeof line - 1); /* longer than say() holds */
}

/* After /leave: the most recently joined remaining room becomes current (rule 36). */
static void pick_current(struct conn *c)
{
    struct chat_session *s = c->session;
    struct telnet_state *t = state_of(c);
    struct chat_sroom *best = NULL;
    for (size_t i = 0; i < s->n_rooms; i++)
        if (!best || chat_session_rooms(s)[i]->joined_order > best->joined_order)
            best = chat_session_rooms(s)[i];
    t->current[0] = '\0';
    if (best)
        memcpy(t->current, best->name, sizeof t->current);
}

static void login_failed(struct conn *c, struct chat_op *op)
{
    struct telnet_state *t = state_of(c);
    if (!arm_login_deadline(c))
        return;
    if (op->err == PROTO_RATE_LIMITED) {
        /* Not checked, so not one of the three tries: the same prompt again. */
        op_error_line(c, op);
        if (op->kind == CHAT_LOGIN_PASSWORD && t->password_prompted)
            prompt_password(c, PROMPT_PASSWORD);
        else
            prompt_name(c);
        return;
    }
    if (op->kind == CHAT_LOGIN_GUEST && op->err == PROTO_BAD_CREDENTIALS) {
        prompt_password(c, PROMPT_PASSWORD); /* a registered name */
        return;
    }
    if (op->kind == CHAT_LOGIN_PASSWORD && op->err == PROTO_BAD_CREDENTIALS &&
        t->password_prompted && t->password_tries < 2) {
        t->password_tries++;
        say(c, "* Wrong password.\r\n");
        prompt_password(c, PROMPT_PASSWORD);
        return;
    }
    error_line(c, op->err, op->why);
    prompt_name(c);
}

static void autojoin_start(struct conn *c, const struct chat_op *welcome);
static void autojoin_next(struct conn *c);
static void flush_marks(struct conn *c, uint64_t now);
/* "* Topic of #room: TEXT" (rule 76), the text as sent: longer than say() holds. */
static void topic_line(struct conn *c, const struct chat_op *op)
{
    char head[64];
    int n = snprintf(head, sizeof head, "* Topic of #%s: ", op->room);
    conn_send_copy(c, head, (size_t)n);
    conn_send_copy(c, op->topic, strlen(op->topic));
    conn_send_copy(c, "\r\n", 2);
}

/* A kick or ban took this connection out of room (its line is written): rule 36. */
static void room_lost(struct conn *c, const char *room)
{
    if (strcmp(state_of(c)->current, room) == 0)
        pick_current(c);
}

static void op_done(struct conn *c, struct chat_op *op)
{
    struct chat_session *s = c->session;
    struct telnet_state *t = state_of(c);
    bool login = op->kind == CHAT_LOGIN_GUEST || op->kind == CHAT_LOGIN_PASSWORD ||
                 op->kind == CHAT_LOGIN_TOKEN;
    if (op->err) {
        if (op->kind == CHAT_READ)
            return; /* a marker telnet set by itself (rule 78): nothing to tell */
        if (login)
            login_failed(c, op);
        else
            op_error_line(c, op);
        if (op->kind == CHAT_JOIN && t->autojoining)
            autojoin_next(c); /* a refused saved room: the rest go on (rule 78) */
        return;
    }
    switch (op->kind) {
    case CHAT_LOGIN_GUEST:
    case CHAT_LOGIN_PASSWORD:
    case CHAT_LOGIN_TOKEN: {
        t->prompt = PROMPT_NONE;
        t->idle_due_ms =
            cfg_of(c)->telnet_idle_ms ? conn_now(c) + cfg_of(c)->telnet_idle_ms : UINT64_MAX;
        arm_timer(c);
        autojoin_start(c, op);
        break;
    }
    case CHAT_JOIN:
        /* Rule 78: after login general stays current; with general refused, the first saved room
         * joined becomes it. */
        if (!t->autojoining || !t->current[0] || strcmp(op->room, "general") == 0)
            memcpy(t->current, op->room, sizeof t->current);
        if (!t->auto_joined) {
            t->auto_joined = true;
            char user[CHAT_NAME_MAX];
            say(c, "* %s joined #%s (%zu online). /help lists commands.\r\n",
                chat_session_user(s, user), op->room, op->n_members);
        } else {
            say(c, "* You joined #%s (%zu online).\r\n", op->room, op->n_members);
        }
        if (op->topic && *op->topic)
            topic_line(c, op);
        if (t->autojoining)
            autojoin_next(c);
        break;
    case CHAT_TOPIC: /* /topic without text: the answer is the topic (a set one shows its event) */
        if (!op->topic_query)
            break;
        if (op->topic && *op->topic)
            topic_line(c, op);
        else
            say(c, "* #%s has no topic.\r\n", op->room);
        break;
    case CHAT_LEAVE:
        say(c, "* You left #%s.\r\n", op->room);
        if (strcmp(t->current, op->room) == 0)
            pick_current(c);
        break;
    case CHAT_WHO: {
        char intro[160];
        if (op->large) /* rule 84: the count and the first names, in byte order */
            snprintf(intro, sizeof intro, "* In #%s: %zu online; the first %zu: ", op->room,
                     op->n_members, op->n_names);
        else
            snprintf(intro, sizeof intro, "* In #%s: ", op->room);
        list_names(c, intro, op);
        break;
    }
    case CHAT_ROOMS:
        say(c, "* Rooms:\r\n");
        for (size_t i = 0; i < op->n_rooms; i++)
            say(c, "*   #%s (%u online, %llu messages)\r\n", op->rooms[i].name,
                op->rooms[i].members, (unsigned long long)op->rooms[i].seq);
        if (op->more)
            say(c, "*   ... and more rooms after #%s\r\n", op->rooms[op->n_rooms - 1].name);
        break;
    case CHAT_REGISTER:
        say(c, "* %s is registered. Next time: /login %s PASSWORD\r\n", op->name, op->name);
        break;
    case CHAT_STATUS:
        break; /* rule 76: telnet shows no status change, its own neither (/who shows it) */
    case CHAT_HISTORY:
        for (size_t i = 0; i < op->n_msgs; i++)
            if (op->msgs[i].tn)
                conn_send(c, chunk_ref(op->msgs[i].tn), 0, op->msgs[i].tn->len);
        break;
    case CHAT_SEARCH: /* rules 76, 77: message lines, newest first, then their count */
        for (size_t i = 0; i < op->n_msgs; i++)
            if (op->msgs[i].tn)
                conn_send(c, chunk_ref(op->msgs[i].tn), 0, op->msgs[i].tn->len);
        say(c, "* %zu result%s\r\n", op->n_msgs, op->n_msgs == 1 ? "" : "s");
        break;
    default:
        break; /* a send: its message line is the answer */
    }
}

/* --- saved rooms and read markers (protocol 1.1 rule 78) --- */

/* Joins the next saved room still to be joined after login; a join refused at once (its `! `
 * line is written) goes on to the one after. Done when none is left. */
static void autojoin_next(struct conn *c)
{
    struct telnet_state *t = state_of(c);
    struct chat_session *s = c->session;
    while (conn_is_open(c) && t->autojoin_at < t->autojoin_n) {
        join(c, t->autojoin[t->autojoin_at++]);
        if (s->joins_held > 0)
            return; /* on its way: its answer goes on */
    }
    t->autojoining = false;
    free(t->autojoin);
    t->autojoin = NULL;
    t->autojoin_n = t->autojoin_at = 0;
}

/* After login: general, then (a registered user) each saved room other than general, by name. */
static void autojoin_start(struct conn *c, const struct chat_op *welcome)
{
    struct telnet_state *t = state_of(c);
    free(t->autojoin);
    t->autojoin = NULL;
    t->autojoin_n = t->autojoin_at = 0;
    if (welcome->n_saved)
        t->autojoin = xcalloc(welcome->n_saved, sizeof *t->autojoin);
    for (size_t i = 0; i < welcome->n_saved; i++)
        if (strcmp(welcome->saved[i].name, "general") != 0)
            memcpy(t->autojoin[t->autojoin_n++], welcome->saved[i].name, CHAT_ROOM_MAX);
    t->autojoining = true;
    join(c, "general");
    if (!((struct chat_session *)c->session)->joins_held)
        autojoin_next(c); /* general refused at once */
}

/* The user left room on another connection (rule 67): a notice, and rule 36's current room. */
static void left_elsewhere(struct conn *c, const char *room)
{
    struct telnet_state *t = state_of(c);
    say(c, "* You left #%s on another connection.\r\n", room);
    if (strcmp(t->current, room) == 0)
        pick_current(c);
}

/* Writes room's read marker (a `read` without id; its answer shows nothing). */
static void send_read(struct conn *c, const char *room, uint64_t seq)
{
    struct chat_op *op = new_op(c, CHAT_READ);
    size_t n = strnlen(room, sizeof op->room - 1);
    memcpy(op->room, room, n);
    op->room_is_dm = strncmp(room, "dm:", 3) == 0;
    op->target = seq;
    const char *why = NULL;
    (void)chat_session_submit(c, op, &why); /* refused (left meanwhile): nothing to set */
}

/* Rule 78: the marker follows what was shown, written at once when the room's last write is 5 s
 * old, else when it will be. */
static void shown(struct conn *c, const char *room, uint64_t seq)
{
    struct telnet_state *t = state_of(c);
    uint64_t now = conn_now(c);
    for (uint32_t i = 0; i < t->n_marks; i++) {
        if (strcmp(t->marks[i].room, room) == 0) {
            if (seq > t->marks[i].shown)
                t->marks[i].shown = seq;
            return; /* written within 5 s: the timer writes it when its time comes */
        }
    }
    if (t->n_marks == t->cap_marks) {
        t->cap_marks = t->cap_marks ? t->cap_marks * 2 : 4;
        t->marks = xrealloc(t->marks, t->cap_marks * sizeof *t->marks);
    }
    struct read_mark *m = &t->marks[t->n_marks++];
    memset(m, 0, sizeof *m);
    memcpy(m->room, room, strnlen(room, sizeof m->room - 1));
    m->shown = m->sent = seq;
    m->sent_ms = now;
    send_read(c, room, seq);
    if (now + READ_MARK_EVERY_MS < t->read_due_ms) {
        t->read_due_ms = now + READ_MARK_EVERY_MS;
        arm_timer(c);
    }
}

/* The timer: rooms whose 5 s are over write what was shown since, or are forgotten. */
static void flush_marks(struct conn *c, uint64_t now)
{
    struct telnet_state *t = state_of(c);
    t->read_due_ms = UINT64_MAX;
    for (uint32_t i = t->n_marks; i-- > 0;) {
        struct read_mark *m = &t->marks[i];
        uint64_t due = m->sent_ms + READ_MARK_EVERY_MS;
        if (due <= now) {
            if (m->shown <= m->sent) {
                t->marks[i] = t->marks[--t->n_marks];
                continue;
            }
            m->sent = m->shown;
            m->sent_ms = now;
            due = now + READ_MARK_EVERY_MS;
            send_read(c, m->room, m->sent);
        }
        if (due < t->read_due_ms)
            t->read_due_ms = due;
    }
    if (t->n_marks == 0) {
        free(t->marks);
        t->marks = NULL;
        t->cap_marks = 0;
    }
}

static void became_registered(struct conn *c)
{
    char user[CHAT_NAME_MAX];
    say(c, "* You are now registered as %s.\r\n", chat_session_user(c->session, user));
}

static const struct chat_transport telnet_transport = {
    .op_done = op_done,
    .became_registered = became_registered,
    .input_released = input_released,
    .left_elsewhere = left_elsewhere,
    .shown = shown,
    .room_lost = room_lost,
};

/* --- the connection --- */

static void on_timer(struct conn *c)
{
    struct chat_session *s = c->session;
    if (!s || !s->logged_in) {
        login_timed_out(c);
        return;
    }
    struct telnet_state *t = state_of(c);
    uint64_t now = conn_now(c);
    if (now >= t->read_due_ms)
        flush_marks(c, now);
    if (now >= t->idle_due_ms && t->wait_n == 0) {
        say(c, "\r\n* Idle too long. Bye.\r\n");
        conn_close_after_flush(c);
    } else if (now >= t->wait_due_ms) {
        run_waiting(c);
    } else {
        arm_timer(c);
    }
}

static void on_close(struct conn *c)
{
    struct chat_session *s = c->session;
    struct telnet_state *t = s ? chat_session_cold(s)->transport_state : NULL;
    chat_session_close(c);
    if (t) {
        free(t->line);
        drop_waiting(t);
        free(t->autojoin);
        free(t->marks);
    }
    free(t);
}

static void on_shutdown(struct conn *c, enum conn_goodbye why)
{
    struct chat_session *s = c->session;
    struct telnet_state *t = s ? chat_session_cold(s)->transport_state : NULL;
    uint32_t dropped = t ? drop_waiting(t) : 0;
    if (dropped) /* the user knows what to type again */
        say(c, "\r\n* %u waiting line%s dropped", dropped, dropped == 1 ? "" : "s");
    if (why == CONN_GOODBYE_RESTART)
        say(c, "\r\n* The server is restarting: connect again to go on.\r\n");
    else
        say(c, "\r\n* The server is shutting down.\r\n");
    conn_close_after_flush(c);
}

static const struct conn_handler telnet_handler = {
    .on_input = on_input,
    .on_timer = on_timer,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
    .on_drained = chat_session_drained,
};

void telnet_session_start(struct conn *c)
{
    const struct worker *w = c->set->owner;
    struct telnet_state *t = xcalloc(1, sizeof *t);
    telnet_parser_init(&t->parser, NULL, TELNET_LINE_MAX);
    t->idle_due_ms = t->wait_due_ms = t->read_due_ms = UINT64_MAX;
    c->handler = &telnet_handler;
    struct chat_session *s = chat_session_open(c, &telnet_transport);
    chat_session_cold_make(s)->transport_state = t;
    t->opened_ms = conn_now(c);
    say(c, "Welcome to parley on %s. Your name? ", w->cfg->node);
    arm_login_deadline(c);
}

/* --- live upgrades --- */

bool telnet_session_owns(const struct conn *c)
{
    return c->handler == &telnet_handler;
}

bool telnet_session_partial(const struct conn *c)
{
    const struct telnet_state *t = chat_session_cold(c->session)->transport_state;
    return telnet_parser_holds_line(&t->parser);
}

bool telnet_session_busy(const struct conn *c, unsigned version)
{
    const struct chat_session *s = c->session;
    const struct telnet_state *t = s ? chat_session_cold(s)->transport_state : NULL;
    /* Records before version 4 carry no waiting lines: such a connection stays until they ran. */
    return chat_session_busy(c, version) || (version < 4 && t && t->wait_n > 0);
}

void telnet_session_save(struct conn *c, struct hr_writer *w)
{
    struct telnet_state *t = state_of(c);
    const struct telnet_parser *p = &t->parser;
    hr_u64(w, HR_TN_PROMPT, t->prompt);
    hr_u64(w, HR_TN_TRIES, t->password_tries);
    hr_u64(w, HR_TN_ECHO_OFF, t->echo_off);
    hr_u64(w, HR_TN_AUTO_JOINED, t->auto_joined);
    hr_u64(w, HR_TN_PW_PROMPTED, t->password_prompted);
    hr_str(w, HR_TN_NAME, t->name);
    hr_str(w, HR_TN_CURRENT, t->current);
    hr_u64(w, HR_TN_OPEN_AGE_MS, conn_now(c) - t->opened_ms);
    hr_open(w, HR_TN_PARSER);
    hr_u64(w, HR_TP_STATE, p->state);
    hr_u64(w, HR_TP_VERB, p->verb);
    hr_u64(w, HR_TP_OVERFLOW, p->overflow);
    hr_u64(w, HR_TP_SB_LEN, p->sb_len);
    hr_close(w);
    if (p->len > 0)
        hr_put(w, HR_TN_LINE, p->buf, p->len);
    for (uint32_t i = 0; w->version >= 4 && i < t->wait_n; i++) {
        const struct waiting_line *l = &t->waiting[(t->wait_head + i) % t->wait_cap];
        hr_put(w, HR_TN_WAITING, l->bytes, l->len);
    }
    chat_session_save(c, w);
}

int telnet_session_restore(struct conn *c, const struct handover_rec *rec, const char **why)
{
    if (rec->tn_prompt > PROMPT_REGISTER) {
        *why = "a telnet prompt this server does not have";
        return -1;
    }
    struct telnet_state *t = xcalloc(1, sizeof *t);
    t->idle_due_ms = t->wait_due_ms = t->read_due_ms = UINT64_MAX;
    c->handler = &telnet_handler;
    conn_set_transport(c, CONN_TELNET);
    struct chat_session *s = NULL;
    /* The state goes in before anything can fail: on_close frees it with the session. */
    if (chat_session_restore(c, &telnet_transport, rec, why) < 0) {
        s = c->session;
        chat_session_cold_make(s)->transport_state = t;
        return -1;
    }
    s = c->session;
    chat_session_cold_make(s)->transport_state = t;
    t->prompt = rec->tn_prompt;
    t->password_tries = rec->tn_password_tries;
    t->echo_off = rec->tn_echo_off;
    t->auto_joined = rec->tn_auto_joined;
    t->password_prompted = rec->tn_password_prompted;
    if (rec->tn_name.n)
        memcpy(t->name, rec->tn_name.p, rec->tn_name.n);
    if (rec->tn_current.n)
        memcpy(t->current, rec->tn_current.p, rec->tn_current.n);
    uint64_t now = conn_now(c);
    t->opened_ms = now > rec->tn_open_age_ms ? now - rec->tn_open_age_ms : 0;
    telnet_parser_init(&t->parser, NULL, TELNET_LINE_MAX);
    t->parser.state = rec->tn_parser.state;
    t->parser.verb = rec->tn_parser.verb;
    t->parser.overflow = rec->tn_parser.overflow;
    t->parser.sb_len = rec->tn_parser.sb_len;
    if (rec->tn_line.n > 0 || t->parser.overflow) {
        t->line = xmalloc(TELNET_LINE_MAX);
        if (rec->tn_line.n)
            memcpy(t->line, rec->tn_line.p, rec->tn_line.n);
        telnet_parser_lend(&t->parser, t->line);
        t->parser.len = rec->tn_line.n;
    }
    if (!telnet_parser_valid(&t->parser)) {
        *why = "the telnet parser's state is not one it can be in";
        return -1;
    }
    if (t->current[0] && !chat_session_room(s, t->current)) {
        *why = "a current room the session has not joined";
        return -1;
    }
    if ((t->prompt == PROMPT_NONE || t->prompt == PROMPT_REGISTER) != s->logged_in) {
        *why = "a prompt that does not go with the login";
        return -1;
    }
    if (rec->tn_n_waiting > 0 && !s->logged_in) {
        *why = "telnet lines waiting before a login";
        return -1;
    }
    struct hr_bytes line;
    for (size_t at = 0; handover_rec_waiting(rec, &at, &line);)
        push_waiting(t, line.p, line.n);
    /* They go on once the handover is over and the input is read again (input_released). */
    if (t->wait_n > 0)
        t->wait_due_ms = now;
    if (s->logged_in && cfg_of(c)->telnet_idle_ms)
        t->idle_due_ms = c->last_rx_ms + cfg_of(c)->telnet_idle_ms;
    return 0;
}
