/*
 * hist: a latency histogram of fixed size (log-linear buckets: 32 per power
 * of two, so a reported percentile is within 3% of the true one), cheap to
 * record into, and mergeable, so worker processes can each keep their own in
 * shared memory and the coordinator adds them up.
 */
#ifndef LOADGEN_HIST_H
#define LOADGEN_HIST_H

#include <stdint.h>

#define HIST_SUB 32
#define HIST_BUCKETS (60 * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
};

/* Empties h. */
void hist_init(struct hist *h);

/* Records one value (nanoseconds, or any non-negative quantity). */
void hist_add(struct hist *h, uint64_t v);

/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile p (0..100): exact for 0 and 100 (min, max), else the middle of its
 * bucket; 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);

#endif
