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

static uint64_t bits_from_double(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
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

/* One rounding of a binary64 value to a binary format with `mant_bits` stored mantissa bits and
 * exponent bias `bias` (all-ones exponent = inf/NaN): to nearest, ties to even, subnormals, overflow to
 * infinity. */
static uint16_t round_from_double(double x, int mant_bits, int bias, uint16_t qnan) {
    const uint64_t u = bits_from_double(x);
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

uint16_t sqkv_double_to_fp16(double x) { return round_from_double(x, 10, 15, 0x7E00u); }
uint16_t sqkv_double_to_bf16(double x) { return round_from_double(x, 7, 127, 0x7FC0u); }
