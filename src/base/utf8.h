/* utf8: incremental, fail-fast UTF-8 validation (RFC 3629). Pure: no I/O, no allocation. */
#ifndef PARLEY_UTF8_H
#define PARLEY_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Validator states. Any other value means "inside a multi-byte sequence". */
#define UTF8_ACCEPT 0u /* at a code point boundary: everything so far is valid */
#define UTF8_REJECT 1u /* invalid; sticky */

/*
 * Advances the validator from `state` over p[0..n) and returns the new state.
 * UTF8_REJECT is returned as soon as a byte cannot continue any valid
 * sequence (overlong forms, surrogates, code points above U+10FFFF, stray
 * continuation bytes), so a stream can be refused at the first bad byte even
 * when the text arrives in pieces.
 */
uint32_t utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* True when state is one utf8_validate can return (for state carried across processes). */
int utf8_state_valid(uint32_t state);

/* Returns 1 when p[0..n) is complete, valid UTF-8, else 0. */
int utf8_is_valid(const uint8_t *p, size_t n);

#endif
