/* timeline: identities, mentions, emoji and message rights of protocol 1.1's timeline. */
#include "timeline.h"

#include <stdio.h>
#include <string.h>

#include "text.h"

const char *store_event_type_name(enum store_event_type t)
{
    static const char *const names[STORE_EV_TYPES] = {
        [STORE_EV_MESSAGE] = "message",
        [STORE_EV_EDIT] = "edit",
        [STORE_EV_DELETE] = "delete",
        [STORE_EV_REACTION] = "reaction",
        [STORE_EV_TOPIC] = "topic",
        [STORE_EV_ROLE] = "role",
        [STORE_EV_KICK] = "kick",
        [STORE_EV_BAN] = "ban",
        [STORE_EV_UNBAN] = "unban",
        [STORE_EV_MUTE] = "mute",
        [STORE_EV_UNMUTE] = "unmute",
    };
    return (unsigned)t < STORE_EV_TYPES ? names[t] : "unknown";
}

void timeline_identity(bool guest, uint64_t guest_session, const char *user_lc,
                       char out[STORE_IDENTITY_MAX])
{
    if (guest)
        snprintf(out, STORE_IDENTITY_MAX, "guest:%llu", (unsigned long long)guest_session);
    else
        snprintf(out, STORE_IDENTITY_MAX, "%s", user_lc);
}

int64_t timeline_guest_since_ms(uint64_t guest_session)
{
    return (int64_t)(guest_session >> 20) * 1000;
}

static bool is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* The user run[0..n) names (any case), or NULL. */
static const char *lookup_run(const char *run, size_t n, timeline_lookup_fn lookup, void *arg)
{
    if (n == 0 || n > TEXT_NAME_MAX)
        return NULL;
    char lc[TEXT_NAME_MAX + 1];
    text_lower(run, n, lc);
    return lookup(arg, lc);
}

/* True when the space-joined list[0..len) holds name (exactly, as spelled by lookup). */
static bool listed(const char *list, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < len;) {
        const char *sp = memchr(list + i, ' ', len - i);
        size_t end = sp ? (size_t)(sp - list) : len;
        if (end - i == n && memcmp(list + i, name, n) == 0)
            return true;
        i = end + 1;
    }
    return false;
}

size_t timeline_mentions(const char *text, size_t len, timeline_lookup_fn lookup, void *arg,
                         char out[TIMELINE_MENTIONS_MAX])
{
    size_t used = 0, count = 0;
    out[0] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '@' || (i > 0 && is_name_char((unsigned char)text[i - 1])))
            continue;
        size_t start = i + 1, end = start;
        while (end < len && is_name_char((unsigned char)text[end]))
            end++;
        const char *who = lookup_run(text + start, end - start, lookup, arg);
        if (!who) {
            size_t trimmed = end;
            while (trimmed > start && text[trimmed - 1] == '.')
                trimmed--;
            if (trimmed < end)
                who = lookup_run(text + start, trimmed - start, lookup, arg);
        }
        i = end - 1; /* the run is consumed; a name character never starts another mention */
        if (!who || listed(out, used, who))
            continue;
        size_t n = strlen(who);
        if (used + (used ? 1 : 0) + n + 1 > TIMELINE_MENTIONS_MAX)
            continue;
        if (used)
            out[used++] = ' ';
        memcpy(out + used, who, n);
        used += n;
        out[used] = '\0';
        count++;
    }
    return count;
}

enum timeline_emoji timeline_check_emoji(const char *s, size_t n)
{
    if (n == 0)
        return TIMELINE_EMOJI_EMPTY;
    if (n > STORE_EMOJI_MAX)
        return TIMELINE_EMOJI_TOO_LONG;
    if (text_has_control(s, n) || text_has_white_space(s, n))
        return TIMELINE_EMOJI_BAD;
    return TIMELINE_EMOJI_OK;
}

bool timeline_authorless(const char *identity)
{
    return !identity[0] || strncmp(identity, "guest:old:", 10) == 0;
}

bool timeline_may_edit(const struct timeline_actor *a, const struct store_target *m)
{
    return !timeline_authorless(m->identity) && strcmp(a->identity, m->identity) == 0;
}

bool timeline_may_delete(const struct timeline_actor *a, const struct store_target *m, bool dm,
                         bool author_is_admin, bool author_is_staff)
{
    if (!timeline_authorless(m->identity) && strcmp(a->identity, m->identity) == 0)
        return true;
    if (dm)
        return false;
    if (a->admin)
        return true;
    if (a->owner)
        return !author_is_admin;
    /* An op deletes members' messages and authorless ones, not the owner's, an admin's or
     * another op's. */
    return a->op && !author_is_staff;
}

enum timeline_rank timeline_rank_of(bool admin, bool owner, bool op)
{
    return admin ? TIMELINE_ADMIN : owner ? TIMELINE_OWNER : op ? TIMELINE_OP : TIMELINE_MEMBER;
}

bool timeline_may_moderate(enum timeline_act act, enum timeline_rank actor,
                           enum timeline_rank subject, bool dm)
{
    if (dm)
        return false;
    switch (act) {
    case TIMELINE_ACT_TOPIC:
        return actor >= TIMELINE_OP;
    case TIMELINE_ACT_MAKE_OWNER:
        return actor == TIMELINE_ADMIN && subject != TIMELINE_ADMIN;
    case TIMELINE_ACT_ROLE:
        if (actor < TIMELINE_OWNER || subject == TIMELINE_OWNER)
            break; /* op or member never applies to the owner, whoever asks */
        return subject != TIMELINE_ADMIN;
    case TIMELINE_ACT_MODERATE:
        if (actor < TIMELINE_OP || subject == TIMELINE_ADMIN)
            break;
        if (subject == TIMELINE_OWNER)
            return actor == TIMELINE_ADMIN;
        if (subject == TIMELINE_OP)
            return actor >= TIMELINE_OWNER;
        return true;
    }
    return false;
}
