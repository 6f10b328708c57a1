/* elements.c: input dtype -> element type E with one RNE rounding (see elements.h). */
#include "elements.h"

#include <string.h>

#include "float16.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "SQKV reads caller tensors in machine byte order and supports little-endian machines only"
#endif

#define F32_EXP_MASK 0x7F800000u
#define F32_ABS_MASK 0x7FFFFFFFu
/* 65520 = fp16 max (65504) plus half an ulp: the tie rounds to the even neighbour, infinity. */
#define F32_FP16_OVERFLOW 0x477FF000u
#define F32_FP16_MIN_NORMAL 0x38800000u /* 2^-14 */

uint16_t sqkv_f32_bits_to_fp16(uint32_t f, sqkv_error *err) {
    const uint16_t sign = (uint16_t)((f >> 16) & 0x8000u);
    const uint32_t ax = f & F32_ABS_MASK;
    *err = SQKV_OK;
    if (ax >= F32_EXP_MASK) {
        *err = SQKV_ERR_NONFINITE_INPUT;
        return (uint16_t)(sign | 0x7C00u);
    }
    if (ax >= F32_FP16_OVERFLOW) {
        *err = SQKV_ERR_RANGE_INPUT;
        return (uint16_t)(sign | 0x7C00u);
    }
    if (ax >= F32_FP16_MIN_NORMAL) {
        /* Rebias the exponent and round the 23-bit mantissa to 10 bits; a carry out of the mantissa
         * correctly bumps the exponent. */
        const uint32_t rebased = ax - ((uint32_t)(127 - 15) << 23);
        return (uint16_t)(sign | ((rebased + 0xFFFu + ((ax >> 13) & 1u)) >> 13));
    }
    /* fp16 subnormal (or zero): the value in units of 2^-24 is mant * 2^(exp - 126). */
    const uint32_t exp = ax >> 23;
    if (exp < 102) return sign; /* below 2^-25: rounds to zero */
    const uint32_t mant = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - exp; /* 14 .. 24 */
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return (uint16_t)(sign | (q + (rem > half || (rem == half && (q & 1u)))));
}

uint16_t sqkv_f32_bits_to_bf16(uint32_t f, sqkv_error *err) {
    *err = SQKV_OK;
    if ((f & F32_EXP_MASK) == F32_EXP_MASK) {
        *err = SQKV_ERR_NONFINITE_INPUT;
        return (uint16_t)(f >> 16);
    }
    const uint32_t r = (f + 0x7FFFu + ((f >> 16) & 1u)) >> 16;
    if ((r & 0x7F80u) == 0x7F80u) *err = SQKV_ERR_RANGE_INPUT;
    return (uint16_t)r;
}

uint32_t sqkv_fp16_to_f32_bits(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 31) return sign | F32_EXP_MASK | (mant << 13);
    if (exp != 0) return sign | ((exp + 112u) << 23) | (mant << 13);
    /* subnormal: mant * 2^-24 is exact in binary32 */
    float v = (float)mant * 0x1p-24f;
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return sign | bits;
}

static uint16_t load16(const uint8_t *p, uint64_t i) {
    uint16_t v;
    memcpy(&v, p + 2 * i, sizeof v);
    return v;
}

static uint32_t load32(const uint8_t *p, uint64_t i) {
    uint32_t v;
    memcpy(&v, p + 4 * i, sizeof v);
    return v;
}

/* Exponent-all-ones test written so that the loop has no branch and vectorizes: adding one exponent
 * unit to an all-ones exponent carries into the sign position. */
static uint32_t nonfinite_bit(uint16_t h, sqkv_dtype e) {
    if (e == SQKV_DTYPE_BF16) return ((uint32_t)(h & 0x7F80u) + 0x80u) & 0x8000u;
    return ((uint32_t)(h & 0x7C00u) + 0x400u) & 0x8000u;
}

static sqkv_error find_nonfinite(sqkv_dtype e, const uint16_t *values, uint64_t count, uint64_t *bad) {
    for (uint64_t i = 0; i < count; i++) {
        if (!sqkv_e_is_finite(values[i], e)) {
            *bad = i;
            return SQKV_ERR_NONFINITE_INPUT;
        }
    }
    return SQKV_OK;
}

/* OR of nonfinite_bit over one block of 64, a fixed trip count so that it vectorizes. */
static uint32_t block_nonfinite(const uint16_t *v, sqkv_dtype e) {
    uint16_t any = 0;
    if (e == SQKV_DTYPE_BF16) {
        for (uint32_t i = 0; i < 64; i++) any = (uint16_t)(any | nonfinite_bit(v[i], SQKV_DTYPE_BF16));
    } else {
        for (uint32_t i = 0; i < 64; i++) any = (uint16_t)(any | nonfinite_bit(v[i], SQKV_DTYPE_FP16));
    }
    return any;
}

sqkv_error sqkv_elements_check_finite(sqkv_dtype e, const uint16_t *values, uint64_t count,
                                      uint64_t *bad_index) {
    /* Branch-free blocks; a precise scan only once a block fails. */
    const uint64_t whole = count / 64 * 64;
    uint64_t start = 0;
    for (; start < whole; start += 64)
        if (block_nonfinite(values + start, e)) break;
    sqkv_error err = find_nonfinite(e, values + start, count - start, bad_index);
    if (err != SQKV_OK) *bad_index += start;
    return err;
}

sqkv_error sqkv_elements_convert(sqkv_dtype src_dtype, sqkv_dtype e, const void *in, uint64_t count,
                                 uint16_t *out, uint64_t *bad_index) {
    const uint8_t *p = (const uint8_t *)in;
    sqkv_error err = SQKV_OK;
    if (src_dtype == e) {
        memcpy(out, in, (size_t)(count * 2));
        return sqkv_elements_check_finite(e, out, count, bad_index);
    }
    for (uint64_t i = 0; i < count; i++) {
        uint32_t f;
        if (src_dtype == SQKV_DTYPE_FP32)
            f = load32(p, i);
        else if (src_dtype == SQKV_DTYPE_BF16)
            f = (uint32_t)load16(p, i) << 16;
        else
            f = sqkv_fp16_to_f32_bits(load16(p, i));
        /* Every fp16 and bf16 value is exact in binary32, so this is the only rounding. */
        out[i] = e == SQKV_DTYPE_BF16 ? sqkv_f32_bits_to_bf16(f, &err) : sqkv_f32_bits_to_fp16(f, &err);
        if (err != SQKV_OK) {
            *bad_index = i;
            return err;
        }
    }
    return SQKV_OK;
}
