/* float16.c: exact fp16/bf16 conversions (see float16.h). */
#include "float16.h"

#include <math.h>
#include <string.h>

double sqkv_fp16_to_double(uint16_t h) {
    const int sign = h >> 15, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    double v;
    if (exp == 0)
        v = ldexp((double)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp((double)(mant | 0x400), exp - 25);
    return sign ? -v : v;
}

float sqkv_fp16_to_float(uint16_t h) { return (float)sqkv_fp16_to_double(h); }

float sqkv_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

double sqkv_bf16_to_double(uint16_t h) { return (double)sqkv_bf16_to_float(h); }

/* Rounds |x| (finite, > 0) to a binary format with `mant_bits` stored mantissa bits, exponent bias
 * `bias` and maximum biased exponent `max_exp` (all-ones reserved for inf/NaN). Returns the magnitude
 * bits. Works on the exact binary64 value: one rounding, ties to even. */
static uint16_t round_magnitude(double ax, int mant_bits, int bias, int max_exp) {
    int e2;
    (void)frexp(ax, &e2);                   /* ax = f * 2^e2 with f in [0.5, 1) */
    int exp = e2 - 1 + bias;                 /* biased exponent of the normal representation */
    int shift;                               /* ax / 2^shift is the integer significand to round */
    if (exp >= 1)
        shift = e2 - 1 - mant_bits;
    else
        shift = 1 - bias - mant_bits;        /* subnormal: fixed quantum 2^(1-bias-mant_bits) */
    double scaled = ldexp(ax, -shift);       /* exact: only the exponent changes */
    double floor_part = floor(scaled);
    double rem = scaled - floor_part;        /* exact */
    uint64_t q = (uint64_t)floor_part;
    if (rem > 0.5 || (rem == 0.5 && (q & 1u))) q++;
    /* q is the significand in units of 2^shift; rebuild the bits, handling carry into the exponent. */
    uint32_t bits;
    if (exp >= 1) {
        if (q >> (mant_bits + 1)) { /* carry: 2^(mant_bits+1) */
            q >>= 1;
            exp++;
        }
        if (exp >= max_exp) return (uint16_t)(max_exp << mant_bits); /* infinity */
        bits = ((uint32_t)exp << mant_bits) | (uint32_t)(q & ((1u << mant_bits) - 1));
    } else {
        /* q < 2^mant_bits is subnormal; q == 2^mant_bits is the smallest normal: the same bits. */
        bits = (uint32_t)q;
    }
    return (uint16_t)bits;
}

static uint16_t double_to_format(double x, int mant_bits, int bias, int max_exp, uint16_t qnan) {
    if (isnan(x)) return qnan;
    const uint16_t sign = signbit(x) ? 0x8000u : 0;
    double ax = fabs(x);
    if (isinf(ax)) return (uint16_t)(sign | (max_exp << mant_bits));
    if (ax == 0.0) return sign;
    return (uint16_t)(sign | round_magnitude(ax, mant_bits, bias, max_exp));
}

uint16_t sqkv_double_to_fp16(double x) { return double_to_format(x, 10, 15, 31, 0x7E00u); }
uint16_t sqkv_double_to_bf16(double x) { return double_to_format(x, 7, 127, 255, 0x7FC0u); }
