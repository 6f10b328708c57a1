/*
 * half.h: fast conversions between fp32 and the 16-bit float types, for the hot loops of the tools
 * (synthetic data, metrics). The codec's float16.h goes through binary64 and frexp, which is exact but
 * too slow for generating half a gigabyte; these give the same results (round to nearest, ties to
 * even, subnormals, overflow to infinity) with integer operations.
 */
#ifndef SQKV_TOOLS_HALF_H
#define SQKV_TOOLS_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tools/common/dtype.h"

static inline float sqt_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t sqt_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float sqt_half_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1Fu) return sqt_bits_to_f32(sign | 0x7F800000u | (mant << 13));
    if (exp != 0) return sqt_bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
    /* zero or subnormal: mant * 2^-24 is exact in fp32 */
    float v = (float)mant * (1.0f / 16777216.0f);
    return sign ? -v : v;
}

static inline float sqt_bf16_to_f32(uint16_t h) { return sqt_bits_to_f32((uint32_t)h << 16); }

uint16_t sqt_f32_to_half(float f);

static inline uint16_t sqt_f32_to_bf16(float f) {
    uint32_t u = sqt_f32_to_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* n elements of src (dtype fp16, bf16 or fp32, any alignment) to fp32. */
void sqt_convert_to_f32(sqt_dtype src_type, const void *src, size_t n, float *dst);
/* n fp32 values to dst of dtype fp16, bf16 or fp32 (any alignment). */
void sqt_convert_from_f32(const float *src, size_t n, sqt_dtype dst_type, void *dst);

#endif
