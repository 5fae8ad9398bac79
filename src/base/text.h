/*
 * text: the protocol's rules for names, room names and message text
 * (PROTOCOL.md "Identity", "Rooms", "Messages", rules 9, 16, 41). Pure.
 */
#ifndef PARLEY_TEXT_H
#define PARLEY_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEXT_NAME_MAX 32
#define TEXT_DM_ROOM_MAX (3 + TEXT_NAME_MAX + 1 + TEXT_NAME_MAX) /* "dm:a:b" without NUL */

/* Returns true when s[0..n) is a valid user name: 1..32 of A-Z a-z 0-9 _ - . */
bool text_valid_user(const char *s, size_t n);

/* Writes s[0..n) in lower case (ASCII) plus a NUL into out (n + 1 bytes). */
void text_lower(const char *s, size_t n, char *out);
/* The capitals of a user name (text_valid_user: ASCII, at most TEXT_NAME_MAX), one bit a
 * character: with the lower-case name, they give the name as shown. */
uint32_t text_name_caps(const char *name);
/* The name as shown, from its lower-case form lc (len bytes) and its capitals: in out, with NUL. */
void text_name_raise(const char *lc, size_t len, uint32_t caps, char *out);

/*
 * Public room names: 1..32 of a-z 0-9 _ - once A-Z is folded to lower case.
 * Returns true and writes the folded name plus a NUL into out; false if invalid.
 * "dm:..." is not a public room name.
 */
bool text_fold_room(const char *s, size_t n, char out[TEXT_NAME_MAX + 1]);

/*
 * Direct-message rooms are named only in canonical form: "dm:" + the two
 * lower-case user names, sorted (byte order), joined by ':', the two distinct.
 * Returns true when s[0..n) is such a name, writing the two names (a < b).
 */
bool text_parse_dm_room(const char *s, size_t n, char a[TEXT_NAME_MAX + 1],
                        char b[TEXT_NAME_MAX + 1]);

/* Writes the canonical dm room of two (valid) user names, any case, plus a NUL into out. */
void text_dm_room(const char *user1, const char *user2, char out[TEXT_DM_ROOM_MAX + 1]);

/*
 * Writes the look-alike skeleton of a valid user name plus a NUL into out: names with the same
 * skeleton differ only by characters people confuse, so only one of them may be registered.
 * Letters are folded to lower case (names are case-insensitive, so capital I joins l), i l 1 all
 * become l, o and 0 become o, and trailing . _ - are dropped ("bob_" looks like "bob").
 */
void text_skeleton(const char *name, size_t n, char out[TEXT_NAME_MAX + 1]);

/* Returns true when s[0..n) holds a C0 control (newline and tab included), DEL or a C1 control
 * (U+0080-009F). s must be valid UTF-8. For identifiers such as a send's cid. */
bool text_has_control(const char *s, size_t n);

/* Returns true when s[0..n) (valid UTF-8) holds a character with the Unicode White_Space
 * property (the set rule 16 trims). */
bool text_has_white_space(const char *s, size_t n);

/*
 * Returns the byte length of the character at p (p[0..left) valid UTF-8) when it can reorder or
 * split other text on a terminal, else 0: the bidirectional embeddings and overrides
 * U+202A-202E, the isolates U+2066-2069, and the separators U+2028 and U+2029. Telnet output
 * shows such a character as '?'.
 */
size_t text_reordering_char(const char *p, size_t left);

/*
 * Copies s[0..n) into out (room for 3 * n bytes) as text fit to send: every byte that does not
 * begin a valid UTF-8 sequence, and every control character rule 41 refuses (C0 but newline and
 * tab, DEL, C1), becomes U+FFFD. Returns the length written. For text read back from a store
 * that may have been damaged on disk.
 */
size_t text_repair(const char *s, size_t n, char *out);

/* Returns true when s[0..n) needs text_repair: not valid UTF-8, or holding a refused control. */
bool text_needs_repair(const char *s, size_t n);

enum text_verdict {
    TEXT_OK,
    TEXT_EMPTY,    /* nothing left after trimming: bad_request */
    TEXT_TOO_LONG, /* more code points than allowed: too_long */
    TEXT_BAD,      /* not UTF-8, or a control character other than \n and \t: bad_request */
};

/*
 * Checks a message text: trailing Unicode white space (White_Space property:
 * U+0009-000D, U+0020, U+0085, U+00A0, U+1680, U+2000-200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000) is trimmed first; what is left must be valid UTF-8
 * with no control characters but '\n' and '\t' (no other C0, no DEL, no C1
 * U+0080-009F), and at most max_points code points. On TEXT_OK, *trimmed_len
 * is the byte length of the text to store and deliver.
 */
enum text_verdict text_check_message(const char *s, size_t n, size_t max_points,
                                     size_t *trimmed_len);

#endif
