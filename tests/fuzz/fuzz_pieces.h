/* fuzz_pieces: splits a fuzz input into read-sized pieces, chosen by one seed byte, for streaming
 * parsers. */
#ifndef PARLEY_FUZZ_PIECES_H
#define PARLEY_FUZZ_PIECES_H

#include <stddef.h>
#include <stdint.h>

/* Starts the piece generator for `seed`. */
static inline uint32_t fuzz_pieces_init(uint8_t seed)
{
    return (uint32_t)seed * 2654435761u + 1;
}

/*
 * Returns the size of the next piece of the `left` bytes still to feed: pseudo-randomly 1 to 3
 * bytes (seeds with the top bit set) or 1 to 64 bytes. Callers give seed 0 its own meaning.
 */
static inline size_t fuzz_next_piece(uint32_t *rng, uint8_t seed, size_t left)
{
    *rng = *rng * 1103515245u + 12345u;
    size_t want = 1 + (*rng >> 16) % (seed & 0x80 ? 3 : 64);
    return want < left ? want : left;
}

#endif
