/*
 * float16.h: the element types of spec/FORMAT.md (fp16, bf16) and their exact conversions.
 * All roundings are to nearest, ties to even, with subnormals, overflow to infinity: the rounding the
 * spec calls RNE_E. Bits are passed as uint16_t so that no compiler-specific half type is needed.
 */
#ifndef SQKV_FLOAT16_H
#define SQKV_FLOAT16_H

#include <stdint.h>

#include "sqkv.h"

#ifdef __cplusplus
extern "C" {
#endif

double sqkv_fp16_to_double(uint16_t h);
double sqkv_bf16_to_double(uint16_t h);
float sqkv_fp16_to_float(uint16_t h);
float sqkv_bf16_to_float(uint16_t h);
/* One rounding of x to the type; NaN stays NaN (quiet). */
uint16_t sqkv_double_to_fp16(double x);
uint16_t sqkv_double_to_bf16(double x);

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
