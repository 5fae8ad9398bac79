/*
 * timeline: the rules of protocol 1.1's room timeline that need no thread: identities
 * (rule 51), mentions (rule 57), emoji (rule 54), and who may edit or delete a message
 * (rules 52, 53). Pure functions over the caller's buffers.
 */
#ifndef PARLEY_TIMELINE_H
#define PARLEY_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A message's mentions as stored and sent: names joined by single spaces. At most this many
 * bytes with the NUL: 4000 code points cannot mention more distinct names than fit. */
#define TIMELINE_MENTIONS_MAX 4096

/* Writes the identity of a requester into out: a registered account's lower-case name, or
 * "guest:<session>" for a guest session (rule 51). */
void timeline_identity(bool guest, uint64_t guest_session, const char *user_lc,
                       char out[STORE_IDENTITY_MAX]);

/* When a guest session began, in ms since the epoch (to the second: session ids start with
 * the second they were made in; see hub.c). Rule 50: a guest reads its dm rooms from then. */
int64_t timeline_guest_since_ms(uint64_t guest_session);

/* Looks a lower-case name up: the user's spelling (registered, or an online guest's as logged
 * in), or NULL when it names nobody. */
typedef const char *(*timeline_lookup_fn)(void *arg, const char *name_lc);

/*
 * Rule 57: the users text[0..len) mentions, in order of first mention, each once, in the
 * spelling lookup gives, joined by spaces into out (TIMELINE_MENTIONS_MAX bytes, NUL-terminated;
 * names that would not fit are left out). Returns how many.
 */
size_t timeline_mentions(const char *text, size_t len, timeline_lookup_fn lookup, void *arg,
                         char out[TIMELINE_MENTIONS_MAX]);

enum timeline_emoji {
    TIMELINE_EMOJI_OK,
    TIMELINE_EMOJI_EMPTY,    /* bad_request */
    TIMELINE_EMOJI_TOO_LONG, /* over STORE_EMOJI_MAX bytes: too_long, whatever else is wrong */
    TIMELINE_EMOJI_BAD,      /* white space or a control character: bad_request */
};

/* Rule 54 (and 86): checks an emoji, s[0..n) valid UTF-8. */
enum timeline_emoji timeline_check_emoji(const char *s, size_t n);

/* Who asks to change a message, as rights go (rules 52, 53, 59). Roles come with moderation:
 * until then every requester is a plain member. */
struct timeline_actor {
    const char *identity;
    bool admin, owner, op;
};

/* Rule 52: only the author edits; a message without author (rule 51) nobody does. */
bool timeline_may_edit(const struct timeline_actor *a, const struct store_target *m);

/* Rule 53: the author; in a public room its ops (messages of members and authorless ones), its
 * owner (any but an admin's) and the admins (any). author_is_admin, author_is_staff (op, owner or
 * admin): what the message's author is in the room now. */
bool timeline_may_delete(const struct timeline_actor *a, const struct store_target *m, bool dm,
                         bool author_is_admin, bool author_is_staff);

/* What a user is in a room, as rights go (rule 59): the first that applies, highest last. */
enum timeline_rank { TIMELINE_MEMBER, TIMELINE_OP, TIMELINE_OWNER, TIMELINE_ADMIN };

/* The requests rule 61 gives rights for. */
enum timeline_act {
    TIMELINE_ACT_TOPIC,     /* topic */
    TIMELINE_ACT_ROLE,      /* role "op" or "member" */
    TIMELINE_ACT_MAKE_OWNER, /* role "owner" */
    TIMELINE_ACT_MODERATE,  /* kick, ban, unban, mute, unmute */
};

/* The rank of a user from what the room says of it (admin first, rule 59). */
enum timeline_rank timeline_rank_of(bool admin, bool owner, bool op);

/*
 * Rules 58, 61, 62: may actor do act on subject (unused for a topic) in a room (never in a dm
 * room)? topic: ops, owner, admins. role: owner and admins; "owner" admins only. moderation:
 * ops too. Nobody acts on an admin; only admins on the owner; only the owner and admins on an
 * op; "op" or "member" never applies to the owner.
 */
bool timeline_may_moderate(enum timeline_act act, enum timeline_rank actor,
                           enum timeline_rank subject, bool dm);

/* True when an identity belongs to no session that can still log in: a 1.0 guest's message
 * ("guest:old:..."), or a damaged row's (""). A "guest:<digits>" session whose token expired or
 * whose name another session registered is authorless too (rule 51), but only the store knows
 * (no unexpired token of that session): ops' rights over such messages, with moderation, must
 * ask it as well. */
bool timeline_authorless(const char *identity);

#endif
