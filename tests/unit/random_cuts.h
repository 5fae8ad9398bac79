/* random_cuts: a small deterministic random generator, and random cut points for feeding a
 * streaming parser its input in pieces. Deterministic, so a failing case can be replayed. */
#ifndef PARLEY_RANDOM_CUTS_H
#define PARLEY_RANDOM_CUTS_H

#include <stddef.h>
#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* A number in 0..n-1 (xorshift64). */
static inline uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Fills cuts[0..nc) with random offsets into an input of n bytes, ascending. */
static inline void random_cuts(size_t *cuts, size_t nc, size_t n)
{
    for (size_t c = 0; c < nc; c++)
        cuts[c] = rnd((uint32_t)n + 1);
    for (size_t a = 0; a < nc; a++)
        for (size_t b = a + 1; b < nc; b++)
            if (cuts[b] < cuts[a]) {
                size_t tmp = cuts[a];
                cuts[a] = cuts[b];
                cuts[b] = tmp;
            }
}

#endif
