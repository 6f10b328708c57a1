/*
 * element_convert.h: per-element helpers for the decoder's inner loops: unaligned little-endian loads,
 * the exact fp16 -> fp32 widening, and the conversion of an E value to the caller's output type
 * (spec/FORMAT.md §11). Roundings (RNE) are float16.h's.
 */
#ifndef SQKV_ELEMENT_CONVERT_H
#define SQKV_ELEMENT_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "float16.h"
#include "format.h"
#include "sqkv.h"

#if defined(__GNUC__) || defined(__clang__)
#define SQKV_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SQKV_ALWAYS_INLINE inline
#endif

/* Unaligned little-endian loads; a plain memcpy on little-endian machines (the only ones sqkv.h
 * supports), the portable byte loads elsewhere. */
static inline uint64_t sqkv_rd64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    return sqkv_load_u64(p);
#endif
}
static inline uint32_t sqkv_rd32(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    return sqkv_load_u32(p);
#endif
}
static inline uint16_t sqkv_rd16(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    return sqkv_load_u16(p);
#endif
}

/* fp16 -> binary32 bits, exact for every input (NaN payloads kept): an inline widening for the
 * per-element output loops; every rounding goes through float16.h. */
static inline uint32_t sqkv_cvt_fp16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7FFFu;
    if (em >= 0x7C00u) return sign | 0x7F800000u | ((em & 0x3FFu) << 13);
    if (em >= 0x0400u) return sign | ((em + ((127u - 15u) << 10)) << 13);
    /* Subnormal or zero: em * 2^-24 is exact in binary32 (em < 2^10). */
    float f = (float)em * 5.9604644775390625e-8f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return sign | u;
}

/* True when the finite bf16 value h becomes infinite in fp16 (|h| >= 65536 > 65520; the bf16 value
 * below 65536 is 65280, which fp16 holds). */
static inline int sqkv_bf16_overflows_fp16(uint16_t h) { return (h & 0x7FFFu) >= 0x4780u; }

/* How an E value becomes an output element. */
typedef enum sqkv_conversion {
    SQKV_CONV_COPY16 = 0,     /* E to the same type */
    SQKV_CONV_FP16_TO_F32 = 1,
    SQKV_CONV_BF16_TO_F32 = 2,
    SQKV_CONV_FP16_TO_BF16 = 3,
    SQKV_CONV_BF16_TO_FP16 = 4
} sqkv_conversion;

static inline sqkv_conversion sqkv_conversion_for(sqkv_dtype e, sqkv_dtype out) {
    if (out == SQKV_DTYPE_FP32) return e == SQKV_DTYPE_BF16 ? SQKV_CONV_BF16_TO_F32 : SQKV_CONV_FP16_TO_F32;
    if (out == e) return SQKV_CONV_COPY16;
    return e == SQKV_DTYPE_BF16 ? SQKV_CONV_BF16_TO_FP16 : SQKV_CONV_FP16_TO_BF16;
}

/* The output bits (16 or 32 of them) of E value h. */
static SQKV_ALWAYS_INLINE uint32_t sqkv_convert_element(uint16_t h, sqkv_conversion c) {
    switch (c) {
    case SQKV_CONV_FP16_TO_F32: return sqkv_cvt_fp16_to_f32(h);
    case SQKV_CONV_BF16_TO_F32: return (uint32_t)h << 16;
    case SQKV_CONV_FP16_TO_BF16: return sqkv_double_to_bf16(sqkv_fp16_to_double(h));
    case SQKV_CONV_BF16_TO_FP16: return sqkv_double_to_fp16(sqkv_bf16_to_double(h));
    case SQKV_CONV_COPY16: break;
    }
    return h;
}

static inline size_t sqkv_dtype_size(sqkv_dtype d) {
    return d == SQKV_DTYPE_FP32 ? 4u : (d == SQKV_DTYPE_FP16 || d == SQKV_DTYPE_BF16) ? 2u : 0u;
}

#endif /* SQKV_ELEMENT_CONVERT_H */
