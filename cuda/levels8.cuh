/* levels8.cuh: 8-bit PER_TILE levels (spec/FORMAT.md §7.4) and nearest codes in binary32, for the
 * decoder (decode_fast.cu, decode_kernels.cu) and the encoder's fast path (encode_fast.cu).
 *
 * An 8-bit tile has 256 levels for the dozen or so elements it holds, too many to tabulate per tile, so
 * each element computes the levels it needs. numeric.cuh's reference (quant_level, nearest_code) works in
 * binary64, whose conversions run at a fraction of the binary32 rate: they made the 8-bit decode and
 * encode bound by the conversion pipe (results/gpu_bench.md, sessions 20 and 21). These functions give
 * the reference's results bit for bit from binary32 arithmetic, with binary64 only where binary32 cannot
 * decide (rare: ties between two levels in code8; the comments say why). */
#ifndef SQKV_CUDA_LEVELS8_CUH
#define SQKV_CUDA_LEVELS8_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include "numeric.cuh"

namespace sqkv_cuda {

/* An E value as a float (exact). */
static __device__ __forceinline__ float e_to_float(uint32_t h, bool e_bf16) {
    return e_bf16 ? __uint_as_float(h << 16) : __half2float(__ushort_as_half((uint16_t)h));
}

/* Two floats rounded to E, nearest even, a in the low half and b in the high half (one conversion). */
static __device__ __forceinline__ uint32_t floats_to_e2(float a, float b, bool e_bf16) {
    uint32_t pair;
    if (e_bf16) {
        const __nv_bfloat162 b2 = __floats2bfloat162_rn(a, b);
        memcpy(&pair, &b2, 4);
    } else {
        const __half2 h2 = __floats2half2_rn(a, b);
        memcpy(&pair, &h2, 4);
    }
    return pair;
}

/* Level of code c of an 8-bit group as E bits: quant_level(quantizer, 8, e_bf16, s, z, c) bit for bit, for
 * finite parameters whose values sf and zf are exactly floats (every fp16 and bf16 value is).
 *   - SYMMETRIC, (2c + 1 - 256) s: at most 8 + 11 significant bits and within binary32's exponent range
 *     (bf16 subnormals included) or beyond it, where both give infinity, so exact in binary32: one
 *     rounding to E, as quant_level's.
 *   - ASYMMETRIC, v = c s + z: quant_level rounds v to binary64, then to E. Rounding v to binary32 first
 *     and then to E can go wrong where the first rounding lands on an E midpoint (about one level in a
 *     hundred: c s + z has a few bits more than E keeps), and a binary64 fallback there cost more than
 *     the binary32 arithmetic saved, since one lane of 32 taking it holds up the warp. Rounding to odd
 *     instead (the neighbour with an odd last bit where v is not a binary32 value) keeps enough of v:
 *     with at least two bits more than the target, RN_E(RO_32(v)) = RN_E(v) (Boldo and Melquiond's
 *     double rounding by rounding to odd). Three FMAs give it: rounded down, up and toward zero.
 *     fp16: v needs at most 40 bits (multiples of 2^-24 below 2^16), so fl64(v) = v and that is the
 *     level. bf16: fl64(v) may differ from v, and RN_E(fl64(v)) from RN_E(v) where fl64(v) is a bf16
 *     midpoint; then so is r = fl32(v) (midpoints are binary32 values, and v is within a binary64 unit of
 *     one), so only such r need the exact error of the FMA (TwoSum on the exact product c s): fl64(v)
 *     = r when it is at most half a binary64 unit of r (r, of 24 bits, is the even one), and the level is
 *     then r's, ties to even.
 * cuda/rounding_test compares this function with quant_level on constructed double-rounding cases and
 * random parameters (via cuda/selfcheck.cu).
 * An element that is not kept reads whatever bits follow in the payload as its code and discards the
 * level: used false skips bf16's midpoint branch. */
static __device__ __forceinline__ uint32_t level8(uint32_t quantizer, bool e_bf16, float sf, float zf, uint32_t c,
                                                  bool used = true) {
    if (quantizer == 1) {
        const float r = (__uint_as_float(0x4B000000u | (2 * c + 1)) - 8388864.0f) * sf; /* 2c + 1 - 256, exactly */
        return e_bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(r)) : __half_as_ushort(__float2half_rn(r));
    }
    /* c as a float by the exponent trick (2^23 + c exactly, less 2^23): I2F runs at a quarter of the rate */
    const float cf = __uint_as_float(0x4B000000u | c) - 8388608.0f;
    const float rd = __fmaf_rd(cf, sf, zf), ru = __fmaf_ru(cf, sf, zf), rz = __fmaf_rz(cf, sf, zf);
    /* exact (rd == ru): rz, whose exact zero is +0 as quant_level's (rd's would be -0); else rz's neighbour
     * away from zero when rz's last bit is even */
    const float odd = __uint_as_float(__float_as_uint(rz) | (rd != ru ? 1u : 0u));
    if (!e_bf16) return __half_as_ushort(__float2half_rn(odd));
    uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(odd));
    const float r = __fmaf_rn(cf, sf, zf);
    if (used && rd != ru && (__float_as_uint(r) & 0xFFFFu) == 0x8000u) {
        const float p = __fmul_rn(cf, sf); /* exact: 8 + 8 significant bits, unless it overflows */
        if (!(fabsf(p) <= 3.4028234663852886e38f)) return quant_level(2, 8, true, (double)sf, (double)zf, c);
        const float bz = __fsub_rn(r, p);
        const float err = __fadd_rn(__fsub_rn(p, __fsub_rn(r, bz)), __fsub_rn(zf, bz));
        /* half a binary64 unit of r (normal: a subnormal r would be v exactly); below 2^-149 none, and a
         * nonzero err is at least 2^-133, the bf16 grain */
        const int k = (int)((__float_as_uint(r) >> 23) & 0xFFu) - 127 - 53;
        const float half_unit = k >= -126 ? __uint_as_float((uint32_t)(k + 127) << 23)
                                          : k >= -149 ? __uint_as_float(1u << (k + 149)) : 0.0f;
        if (fabsf(err) <= half_unit) h = __bfloat16_as_ushort(__float2bfloat16_rn(r));
    }
    return h;
}

/* Whether code8's decision between the two levels around x must go to binary64: bf16 differences are
 * rounded there, and only a clear margin between their binary32 values (a, b >= 0, each within 2^-24 of
 * its value) says how they compare after rounding: more than 2^-19 of their size, far beyond what binary64
 * rounds. An infinite difference (overflow) is above the threshold the other is below, or leaves both
 * undecided. */
__device__ __forceinline__ bool take_upper_bf16(float at, float xf, float below) {
    const float a = at - xf, b = xf - below;
    if (a < b * 0.999998f) return true;
    if (b < a * 0.999998f) return false;
    return dsub((double)at, (double)xf) < dsub((double)xf, (double)below);
}

/* code8 where its usual path does not apply: from a guess, walks to lo (the first code whose level is >=
 * x), then nearest_code's decision and runs of equal levels, as nearest_code_near does. */
template <bool kAsym, bool kBf16>
__device__ __noinline__ uint32_t code8_walk(float xf, float sf, float zf, uint32_t guess) {
    constexpr uint32_t L = 256, q = kAsym ? 2u : 1u;
    auto level = [&](uint32_t c) { return e_to_float(level8(q, kBf16, sf, zf, c), kBf16); };
    uint32_t lo = guess;
    float below = 0.0f, at = 0.0f; /* level(lo - 1) and level(lo) once known */
    bool at_known = false;
    while (lo > 0) {
        const float v = level(lo - 1);
        if (v < xf) {
            below = v;
            break;
        }
        at = v;
        at_known = true;
        lo--;
    }
    if (!at_known) {
        while (lo < L) {
            const float v = level(lo);
            if (v >= xf) {
                at = v;
                break;
            }
            below = v;
            lo++;
        }
    }
    if (lo == 0) return 0;
    if (lo < L) {
        const bool take = kBf16 ? take_upper_bf16(at, xf, below)
                                : dsub((double)at, (double)xf) < dsub((double)xf, (double)below);
        if (take) return lo;
    }
    /* lo - 1, or the first code of the run of levels equal to it (lo == L: the top run) */
    uint32_t c = lo - 1;
    while (c > 0 && level(c - 1) == below) c--;
    return c;
}

/* The code of x (a finite E value) among the 256 levels of a tile with parameters sf and zf (their values
 * as floats; SYMMETRIC ignores zf): numeric.cuh nearest_code over quant_level's levels, bit for bit.
 * nearest_code finds lo, the first code whose level is >= x (levels are non-decreasing in the code), and
 * takes lo when fl64(level(lo) - x) < fl64(x - level(lo - 1)), else lo - 1 or the first code of the run of
 * equal levels it ends.
 * The usual path evaluates three levels around a guess, without a branch that depends on the lane (32
 * lanes wait for their slowest). Where every level is below s * 2^mant (ASYMMETRIC; fp16 SYMMETRIC levels,
 * odd multiples of s > 0 up to 255 s, always are), a level's unit in the last place is below s, so no two
 * levels are equal and each is within s / 2 of its unrounded value c s + z: lo is then c1 or c1 + 1 for
 * c1 = ceil((x - z) / s - 1/2) (SYMMETRIC: of (x / s + 255) / 2), which the three levels c1 - 1 .. c1 + 1
 * confirm (the guess only decides how often). fp16's decision is exact in binary32: level(lo) - x <
 * x - level(lo - 1) exactly when level(lo) + level(lo - 1) < 2x, a sum TwoSum gives exactly (fp16
 * differences are exact in binary64). Anything else (no bracket, possible runs, s = 0) goes to
 * code8_walk. */
template <bool kAsym, bool kBf16>
__device__ __forceinline__ uint32_t code8(uint32_t x, float sf, float zf) {
    constexpr uint32_t L = 256, q = kAsym ? 2u : 1u;
    constexpr float kInf = __builtin_huge_valf();
    const float xf = e_to_float(x, kBf16);
    float inv_s; /* approximate: only the guess depends on it */
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(inv_s) : "f"(sf));
    float est = kAsym ? (xf - zf) * inv_s : 0.5f * __fmaf_rn(xf, inv_s, 255.0f);
    est = fminf(fmaxf(est - 0.5f, 0.0f), 256.0f); /* s = 0: an infinite or NaN estimate, clamped */
    const float rounded = (est + 8388608.0f) - 8388608.0f; /* nearest integer, exactly */
    const uint32_t c1 = ((uint32_t)__float_as_uint(rounded + 8388608.0f) & 0x1FFu) + (rounded < est ? 1u : 0u);
    /* levels c1 - 1, c1, c1 + 1; codes outside 0..255 stand for -inf and +inf */
    const float lm = c1 >= 1 ? e_to_float(level8(q, kBf16, sf, zf, c1 - 1), kBf16) : -kInf;
    const float l0 = c1 <= 255 ? e_to_float(level8(q, kBf16, sf, zf, min(c1, 255u)), kBf16) : kInf;
    const float lp = c1 <= 254 ? e_to_float(level8(q, kBf16, sf, zf, min(c1 + 1, 255u)), kBf16) : kInf;
    bool usual = lm < xf && lp >= xf && sf > 0.0f;
    if constexpr (kAsym) {
        constexpr float kUnits = kBf16 ? 128.0f : 1024.0f; /* 2^mant */
        const float top = fmaxf(fabsf(zf), fabsf(__fmaf_rn(255.0f, sf, zf)));
        usual = usual && top * 1.01f < sf * kUnits; /* 1.01: a level may round above top by half a unit */
    }
    if (!usual) return code8_walk<kAsym, kBf16>(xf, sf, zf, c1);
    const bool in0 = l0 >= xf;
    const uint32_t lo = in0 ? c1 : c1 + 1;
    if (lo == 0) return 0;
    if (lo == L) return L - 1;
    const float below = in0 ? lm : l0, at = in0 ? l0 : lp;
    bool take;
    if constexpr (kBf16) {
        take = take_upper_bf16(at, xf, below);
    } else {
        const float s2 = __fadd_rn(at, below), bb = __fsub_rn(s2, at);
        const float e2 = __fadd_rn(__fsub_rn(at, __fsub_rn(s2, bb)), __fsub_rn(below, bb));
        const float x2 = 2.0f * xf;
        take = s2 < x2 || (s2 == x2 && e2 < 0.0f);
    }
    return take ? lo : lo - 1;
}

}  // namespace sqkv_cuda

#endif /* SQKV_CUDA_LEVELS8_CUH */
