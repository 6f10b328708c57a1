/*
 * float16.c: exact fp16/bf16 conversions (see float16.h).
 * Integer bit manipulation rather than frexp/ldexp: these sit in the encoder's and decoder's inner
 * loops. tests/float16_test.cc checks every 16-bit input and the rounding boundaries against a
 * straightforward reference.
 */
#include "float16.h"

#include <string.h>

static double double_from_bits(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

double sqkv_fp16_to_double(uint16_t h) {
    const uint64_t sign = (uint64_t)(h >> 15) << 63;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint64_t mant = h & 0x3FFu;
    if (exp == 0x1F) return double_from_bits(sign | 0x7FF0000000000000ull | (mant << 42));
    if (exp == 0) {
        if (mant == 0) return double_from_bits(sign);
        /* subnormal: normalize so the leading 1 becomes the implicit bit */
        int shift = 0;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            shift++;
        }
        mant &= 0x3FFu;
        return double_from_bits(sign | ((uint64_t)(1023 - 15 + 1 - shift) << 52) | (mant << 42));
    }
    return double_from_bits(sign | ((uint64_t)(exp - 15 + 1023) << 52) | (mant << 42));
}

float sqkv_fp16_to_float(uint16_t h) { return (float)sqkv_fp16_to_double(h); }

float sqkv_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

double sqkv_bf16_to_double(uint16_t h) { return (double)sqkv_bf16_to_float(h); }

