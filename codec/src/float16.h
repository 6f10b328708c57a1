/*
 * float16.h: the element types of spec/FORMAT.md (fp16, bf16) and their exact conversions.
 * All roundings are to nearest, ties to even, with subnormals, overflow to infinity: the rounding the
 * spec calls RNE_E. Bits are passed as uint16_t so that no compiler-specific half type is needed.
 */
#ifndef SQKV_FLOAT16_H
#define SQKV_FLOAT16_H

#include <stdint.h>
#include <string.h>

#include "sqkv.h"

#ifdef __cplusplus
extern "C" {
#endif

double sqkv_fp16_to_double(uint16_t h);
double sqkv_bf16_to_double(uint16_t h);
float sqkv_fp16_to_float(uint16_t h);
float sqkv_bf16_to_float(uint16_t h);
static inline uint64_t sqkv_bits_from_double_(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Inline because level tables are built per tile in the encoder's and decoder's inner loops. */
/* One rounding of a binary64 value to a binary format with `mant_bits` stored mantissa bits and
 * exponent bias `bias` (all-ones exponent = inf/NaN): to nearest, ties to even, subnormals, overflow to
 * infinity. */
static inline uint16_t sqkv_round_from_double_(double x, int mant_bits, int bias, uint16_t qnan) {
    const uint64_t u = sqkv_bits_from_double_(x);
    const uint16_t sign = (uint16_t)((u >> 63) << 15);
    const int exp_field = (int)((u >> 52) & 0x7FF);
    const uint64_t frac = u & 0xFFFFFFFFFFFFFull;
    const uint16_t inf = (uint16_t)(((1u << (15 - mant_bits)) - 1u) << mant_bits);
    if (exp_field == 0x7FF) return frac ? qnan : (uint16_t)(sign | inf);
    if (exp_field == 0) return sign; /* binary64 zero or subnormal: far below any 16-bit subnormal */
    const int e = exp_field - 1023;
    const int min_normal_exp = 1 - bias;
    const uint64_t m = frac | (1ull << 52);
    /* Position of the last kept bit: normal numbers keep mant_bits fraction bits; below the normal
     * range the quantum is fixed at the smallest subnormal. */
    int shift = 52 - mant_bits;
    if (e < min_normal_exp) shift += min_normal_exp - e;
    if (shift > 53) return sign; /* below half the smallest subnormal */
    uint64_t q = m >> shift;
    const uint64_t rem = m & ((1ull << shift) - 1);
    const uint64_t half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    uint32_t bits;
    if (e < min_normal_exp) {
        bits = (uint32_t)q; /* q == 2^mant_bits is the smallest normal: the same bits */
    } else {
        /* q includes the implicit bit; adding it to (exponent - 1) carries into the exponent when the
         * rounding overflowed the mantissa. */
        bits = ((uint32_t)(e + bias - 1) << mant_bits) + (uint32_t)q;
        if (bits >= inf) bits = inf;
    }
    return (uint16_t)(sign | bits);
}

/* One rounding of x to the type; NaN stays NaN (quiet). */
static inline uint16_t sqkv_double_to_fp16(double x) { return sqkv_round_from_double_(x, 10, 15, 0x7E00u); }
static inline uint16_t sqkv_double_to_bf16(double x) { return sqkv_round_from_double_(x, 7, 127, 0x7FC0u); }

/* Element type E (SQKV_DTYPE_FP16 or SQKV_DTYPE_BF16) versions. */
static inline double sqkv_e_to_double(uint16_t h, sqkv_dtype e) {
    return e == SQKV_DTYPE_BF16 ? sqkv_bf16_to_double(h) : sqkv_fp16_to_double(h);
}
static inline uint16_t sqkv_double_to_e(double x, sqkv_dtype e) {
    return e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(x) : sqkv_double_to_fp16(x);
}
/* Finite (not NaN, not infinity). */
static inline int sqkv_e_is_finite(uint16_t h, sqkv_dtype e) {
    return e == SQKV_DTYPE_BF16 ? (h & 0x7F80u) != 0x7F80u : (h & 0x7C00u) != 0x7C00u;
}
/* For finite values of both types, |x| orders exactly as the low 15 bits as an integer. */
static inline uint16_t sqkv_e_magnitude(uint16_t h) { return (uint16_t)(h & 0x7FFFu); }
/* The largest finite E value with the sign bit clear, and the E value just below a positive one. */
static inline uint16_t sqkv_e_max_finite(sqkv_dtype e) { return e == SQKV_DTYPE_BF16 ? 0x7F7Fu : 0x7BFFu; }

#ifdef __cplusplus
}
#endif

#endif /* SQKV_FLOAT16_H */
