/*
 * quantize.h: the quantizers of spec/FORMAT.md §7.4: level tables (decoder and encoder), and the
 * reference encoder's parameter and code choice (§14). Levels are E bit patterns.
 */
#ifndef SQKV_QUANTIZE_H
#define SQKV_QUANTIZE_H

#include <stdint.h>

#include "sqkv.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SQKV_MAX_LEVELS 256u

/* Fills levels[0 .. 2^bits) for one parameter group. Returns SQKV_ERR_SCALE when the parameters
 * break §7.4 (non-finite s or z, s with its sign bit set, a non-finite level). z is ignored by
 * SYMMETRIC. bits is 1..8. */
sqkv_error sqkv_quant_levels(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, uint16_t s, uint16_t z,
                             uint16_t *levels);

/* Reference encoder (§14): the parameters for a group whose kept values are values[0..count) (E bits,
 * finite, nonzero). count == 0 gives s = z = +0. */
void sqkv_quant_choose_params(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const uint16_t *values,
                              uint64_t count, uint16_t *s, uint16_t *z);

/* Range search (spec/FORMAT.md §14, writer option range_search): the parameters of candidate i
 * (0 <= i < SQKV_RANGE_CANDIDATES) for a group whose extremes are given as group_extremes finds them
 * (SYMMETRIC: largest magnitude; ASYMMETRIC: smallest and largest value, E bits). Candidate 0 is
 * sqkv_quant_choose_params' choice; candidate i shrinks the range about its centre to 1 - i/16 of it. */
#define SQKV_RANGE_CANDIDATES 8u
void sqkv_quant_candidate_params(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const uint16_t *extremes,
                                 uint32_t candidate, uint16_t *s, uint16_t *z);

/* Reference encoder: the code of the level nearest to x (ties to the lower code). levels must be
 * non-decreasing, as every valid level table is. */
uint32_t sqkv_quant_nearest(const uint16_t *levels, uint32_t n_levels, sqkv_dtype e, uint16_t x);

/* Level tables as doubles, to choose codes without converting the same level twice. */
void sqkv_quant_levels_to_double(const uint16_t *levels, uint32_t n_levels, sqkv_dtype e, double *out);
uint32_t sqkv_quant_nearest_double(const double *levels, uint32_t n_levels, double x);
/* The code nearest to x given lo, the first code whose level is >= x (n_levels if none): the lower
 * code on a tie, and the first of a run of equal levels. Inline: the encoder calls it per value. */
static inline uint32_t sqkv_quant_nearest_from_boundary(const double *levels, uint32_t n_levels, double x,
                                                        uint32_t lo) {
    if (lo == n_levels) {
        /* Above every level: the top level, or the first of a run of equal top levels (a tie). */
        uint32_t c = n_levels - 1;
        while (c > 0 && levels[c - 1] == levels[c]) c--;
        return c;
    }
    if (lo == 0) return 0;
    /* Candidates lo - 1 (below x) and lo (at or above x); the tie goes to the lower code. Equal levels
     * earlier in the table are preferred too, because the search found the first one. */
    const double below = x - levels[lo - 1], above = levels[lo] - x;
    if (above < below) return lo;
    uint32_t c = lo - 1;
    while (c > 0 && levels[c - 1] == levels[c]) c--;
    return c;
}

/* The same code as sqkv_quant_nearest_double, found by stepping from a guess (any code; a close one
 * makes it fast): a table is non-decreasing, so the first code whose level is >= x is where the steps
 * stop, whatever the guess. */
static inline uint32_t sqkv_quant_nearest_double_near(const double *levels, uint32_t n_levels, double x,
                                                      uint32_t guess) {
    uint32_t lo = guess < n_levels ? guess : n_levels - 1;
    while (lo > 0 && levels[lo - 1] >= x) lo--;
    while (lo < n_levels && levels[lo] < x) lo++;
    return sqkv_quant_nearest_from_boundary(levels, n_levels, x, lo);
}

#ifdef __cplusplus
}
#endif

#endif /* SQKV_QUANTIZE_H */
