/*
 * fp16_levels.h: rounds a table of binary64 values to fp16 bits (spec/FORMAT.md §7.4, RNE_E), with the
 * processor's conversion instruction where it has one. Chosen once at run time behind a plain function
 * pointer, as libdeflate does.
 */
#ifndef SQKV_FP16_LEVELS_H
#define SQKV_FP16_LEVELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rounds x[0..n) to fp16 bits in out, to nearest, ties to even (RNE_E of the binary64 values, exactly
 * sqkv_double_to_fp16), when the processor converts binary32 to fp16 (x86 F16C) and every x[i] is a
 * number of magnitude at most 2^26 (every level of fp16 parameters is); returns 1 then. Returns 0, and
 * leaves out undefined, otherwise: the caller rounds with sqkv_double_to_fp16. */
typedef int (*sqkv_fp16_levels_fn)(const double *x, uint32_t n, uint16_t *out);

/* The implementation for this processor (never NULL). */
sqkv_fp16_levels_fn sqkv_fp16_levels(void);

/* The whole level table of §7.4 rounded to fp16, in one pass (a decoder builds one per group of 32 or
 * 64 elements in per-tile files): out[c] = RNE_E((2c + 1 - n) s) when symmetric, else RNE_E(c s + z)
 * (c s exact, one binary64 addition), for c in [0, n), n = 2..256. s and z are the binary64 values of
 * fp16 parameters. Returns 1 when it rounded in hardware (then out equals sqkv_double_to_fp16 of each
 * value), 0 when the caller must compute the table in software (no F16C, or a value out of range). */
typedef int (*sqkv_fp16_affine_levels_fn)(double s, double z, int symmetric, uint32_t n, uint16_t *out);

/* The implementation for this processor (never NULL). */
sqkv_fp16_affine_levels_fn sqkv_fp16_affine_levels(void);

#ifdef __cplusplus
}
#endif

#endif /* SQKV_FP16_LEVELS_H */
