/* quantize.c: level tables and the reference encoder's quantizer (spec/FORMAT.md §7.4, §14). */
#include "quantize.h"

#include <math.h>

#include "float16.h"
#include "fp16_levels.h"

sqkv_error sqkv_quant_levels(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, uint16_t s, uint16_t z,
                             uint16_t *levels) {
    const uint32_t n = 1u << bits;
    if (!sqkv_e_is_finite(s, e) || (s & 0x8000u)) return SQKV_ERR_SCALE;
    if (q != SQKV_QUANT_SYMMETRIC && !sqkv_e_is_finite(z, e)) return SQKV_ERR_SCALE;
    const double sd = sqkv_e_to_double(s, e);
    const double zd = q == SQKV_QUANT_SYMMETRIC ? 0.0 : sqkv_e_to_double(z, e);
    /* The exact binary64 values, then one rounding each (in hardware for fp16 where possible). */
    double x[SQKV_MAX_LEVELS];
    for (uint32_t c = 0; c < n; c++) {
        if (q == SQKV_QUANT_SYMMETRIC) {
            /* (2c + 1 - n) * s is exact in binary64: at most 9 bits times at most 11 bits. */
            x[c] = (double)(int32_t)(2 * c + 1 - n) * sd;
        } else {
            /* c * s is exact; the addition is one binary64 rounding, as the spec states. */
            volatile double product = (double)c * sd; /* volatile: no fused multiply-add */
            x[c] = product + zd;
        }
    }
    if (!(e == SQKV_DTYPE_FP16 && sqkv_fp16_levels()(x, n, levels)))
        for (uint32_t c = 0; c < n; c++) levels[c] = sqkv_double_to_e(x[c], e);
    /* Non-decreasing levels: all are finite iff the lowest and the highest are. */
    if (!sqkv_e_is_finite(levels[0], e) || !sqkv_e_is_finite(levels[n - 1], e)) return SQKV_ERR_SCALE;
    return SQKV_OK;
}

/* The E value just below positive finite h (h > 0). */
static uint16_t e_prev(uint16_t h) { return (uint16_t)(h - 1u); }

/* Whether the top level (code 2^bits - 1) of a group with step s is finite: the formula of
 * sqkv_quant_levels for that one code. */
static int top_level_finite(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, uint16_t s, double zd) {
    const uint32_t top = (1u << bits) - 1;
    const double sd = sqkv_e_to_double(s, e);
    if (q == SQKV_QUANT_SYMMETRIC) return sqkv_e_is_finite(sqkv_double_to_e((double)(int32_t)top * sd, e), e);
    volatile double product = (double)top * sd; /* volatile: no fused multiply-add, as in the table */
    return sqkv_e_is_finite(sqkv_double_to_e(product + zd, e), e);
}

/* Rounds step = range / (n - 1) to E, keeps it positive when range > 0, and lowers it until the group's
 * top level is finite. */
static uint16_t choose_step(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, double range, uint16_t z) {
    const uint32_t n = 1u << bits;
    uint16_t s = sqkv_double_to_e(range / (double)(n - 1), e);
    if (range > 0 && sqkv_e_magnitude(s) == 0) s = 1; /* smallest positive subnormal */
    if (!sqkv_e_is_finite(s, e)) s = sqkv_e_max_finite(e);
    /* Levels are non-decreasing and the lowest is z or -top, so all are finite iff the top one is. */
    const double zd = q == SQKV_QUANT_ASYMMETRIC ? sqkv_e_to_double(z, e) : 0.0;
    while (s != 0 && !top_level_finite(q, bits, e, s, zd)) s = e_prev(s);
    return s;
}

void sqkv_quant_choose_params(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const uint16_t *values,
                              uint64_t count, uint16_t *s, uint16_t *z) {
    *s = 0;
    *z = 0;
    if (count == 0) return;
    if (q == SQKV_QUANT_SYMMETRIC) {
        uint16_t max_mag = 0;
        for (uint64_t i = 0; i < count; i++) {
            uint16_t m = sqkv_e_magnitude(values[i]);
            if (m > max_mag) max_mag = m;
        }
        *s = choose_step(q, bits, e, sqkv_e_to_double(max_mag, e), 0);
        return;
    }
    double lo = sqkv_e_to_double(values[0], e), hi = lo;
    uint16_t lo_bits = values[0];
    for (uint64_t i = 1; i < count; i++) {
        double v = sqkv_e_to_double(values[i], e);
        if (v < lo) {
            lo = v;
            lo_bits = values[i];
        }
        if (v > hi) hi = v;
    }
    *z = lo_bits;
    /* hi - lo is exact in binary64 for fp16; for bf16 it is one rounding, the same everywhere. */
    *s = choose_step(q, bits, e, hi - lo, lo_bits);
}

void sqkv_quant_candidate_params(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const uint16_t *extremes,
                                 uint32_t candidate, uint16_t *s, uint16_t *z) {
    if (candidate == 0) { /* the plain rule, bit for bit (a -0 minimum stays -0) */
        sqkv_quant_choose_params(q, bits, e, extremes, q == SQKV_QUANT_SYMMETRIC ? 1 : 2, s, z);
        return;
    }
    /* alpha = 1 - candidate/16 and every product below are exact in binary64 (E values have at most 11
     * significant bits and a 40-bit exponent range), so every encoder computes the same candidates. */
    const double alpha = 1.0 - (double)candidate / 16.0;
    if (q == SQKV_QUANT_SYMMETRIC) {
        *z = 0;
        *s = choose_step(q, bits, e, alpha * sqkv_e_to_double(extremes[0], e), 0);
        return;
    }
    const double lo = sqkv_e_to_double(extremes[0], e), hi = sqkv_e_to_double(extremes[1], e);
    const double center = 0.5 * (lo + hi), half = 0.5 * alpha * (hi - lo);
    *z = sqkv_double_to_e(center - half, e);
    const double range = center + half - sqkv_e_to_double(*z, e);
    *s = choose_step(q, bits, e, range > 0 ? range : 0.0, *z);
}

void sqkv_quant_levels_to_double(const uint16_t *levels, uint32_t n_levels, sqkv_dtype e, double *out) {
    for (uint32_t c = 0; c < n_levels; c++) out[c] = sqkv_e_to_double(levels[c], e);
}

uint32_t sqkv_quant_nearest_double(const double *levels, uint32_t n_levels, double x) {
    /* First code whose level is >= x, by binary search over the non-decreasing table. */
    uint32_t lo = 0, hi = n_levels;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (levels[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return sqkv_quant_nearest_from_boundary(levels, n_levels, x, lo);
}


uint32_t sqkv_quant_nearest(const uint16_t *levels, uint32_t n_levels, sqkv_dtype e, uint16_t x) {
    double d[SQKV_MAX_LEVELS];
    sqkv_quant_levels_to_double(levels, n_levels, e, d);
    return sqkv_quant_nearest_double(d, n_levels, sqkv_e_to_double(x, e));
}
