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

/* Rounds x[0..n) to fp16 bits in out, to nearest, ties to even, when every x[i] is exactly a binary32
 * value (then one hardware rounding equals RNE_E of the binary64 value) and the processor converts
 * binary32 to fp16 (x86 F16C); returns 1 then. Returns 0, and leaves out undefined, otherwise: the
 * caller rounds with sqkv_double_to_fp16. */
typedef int (*sqkv_fp16_levels_fn)(const double *x, uint32_t n, uint16_t *out);

/* The implementation for this processor (never NULL). */
sqkv_fp16_levels_fn sqkv_fp16_levels(void);

#ifdef __cplusplus
}
#endif

#endif /* SQKV_FP16_LEVELS_H */
