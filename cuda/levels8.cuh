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

/* v rounded to odd from its roundings down and up: where they differ (v is not a binary32 value), the one
 * whose last bit is odd; else v. An exact zero is +0 here, as in quant_level (rounded down it is -0, whose
 * last bit is even). Adjacent binary32 values' bit patterns are adjacent integers, so exactly one is odd. */
static __device__ __forceinline__ float round_to_odd(float rd, float ru) {
    return (__float_as_uint(rd) & 1u) ? rd : ru;
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
 *     double rounding by rounding to odd). Two FMAs give it, rounded down and up (round_to_odd).
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
    const float rd = __fmaf_rd(cf, sf, zf), ru = __fmaf_ru(cf, sf, zf);
    const float odd = round_to_odd(rd, ru);
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
 * x: levels are non-decreasing, so any start reaches it), then nearest_code's decision, keeping the two
 * levels around lo from the walks, and the run of equal levels lo - 1 ends. Out of line: rare, and long. */
template <bool kAsym, bool kBf16>
__device__ __noinline__ uint32_t code8_walk(float xf, float sf, float zf) {
    constexpr uint32_t L = 256, q = kAsym ? 2u : 1u;
    auto level = [&](uint32_t c) { return e_to_float(level8(q, kBf16, sf, zf, c), kBf16); };
    /* the guess: any start gives the same code, a near one sooner (s = 0: an infinite or NaN estimate,
     * clamped) */
    const float inv_s = __fdividef(1.0f, sf);
    const float est = fminf(fmaxf(kAsym ? (xf - zf) * inv_s : 0.5f * __fmaf_rn(xf, inv_s, 255.0f), 0.0f), 256.0f);
    uint32_t lo = __float_as_uint(est + 8388608.0f) & 0x1FFu;
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

/* What code8 needs of a tile, computed once per tile (code8_tile): s and z as floats, and the guess's
 * terms: est = x * mul + add, mul = 1/s (SYMMETRIC 1/(2s)) and add = -z/s (SYMMETRIC 255/2; ASYMMETRIC
 * tiles whose levels may repeat: -(z + u/2)/s), approximate (only the guess depends on them); add is NaN
 * where the usual path does not apply (below). */
struct Code8Tile {
    float s, z, mul, add;
};

/* Where the usual path applies. SYMMETRIC: s > 0 (its levels, odd multiples of s up to 255 s, never repeat
 * for fp16, and bf16's are never equal, so only their bracket can fail). ASYMMETRIC: every tile, s = 0
 * included (all of its values are z, the first level: lo = 0). The guess is c1 = (x - z) / s rounded where
 * every level is below s * 2^mant (with 1% to spare for the rounding of the top level and of this test),
 * for then no two levels are equal and lo is c1 or c1 + 1 (code8_usual). Elsewhere levels may repeat (a key
 * channel far from zero next to its spread, a tile of a few close values: the real caches have many), and
 * lo is the first code whose level rounds to x or above, where c s + z reaches m, the midpoint of x and the
 * E value below it: c1 = (m - z) / s rounded. An fp16 tile's values share a sign there and lie within 25%
 * of its top magnitude, so x - m is half the E spacing at the top for most of them (u, in add); a value in
 * the binade below, where the spacing is half, may miss the bracket and go to code8_rare (bf16 tiles, whose
 * levels repeat from s = top / 128, span more binades, and more of their values miss). */
template <bool kAsym, bool kBf16>
__device__ __forceinline__ Code8Tile code8_tile(float sf, float zf) {
    float inv_s; /* approximate; +inf for s = 0, whose guess is then NaN, clamped to code 0 */
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(inv_s) : "f"(sf));
    if constexpr (kAsym) {
        constexpr float kUnits = kBf16 ? 128.0f : 1024.0f; /* 2^mant */
        const float top = fmaxf(fabsf(zf), fabsf(__fmaf_rn(255.0f, sf, zf)));
        float half_u = 0.0f; /* half the E spacing at the top magnitude, where levels may repeat */
        if (!(top * 1.01f < sf * kUnits)) {
            /* 2^(E - mant - 1) for top in [2^E, 2^(E + 1)), as binary32 exponent fields (e = E + 127); below
             * the smallest normal fp16 (e 113) half its grain 2^-25, and for the few bf16 values whose half
             * spacing is no normal binary32 (e < 9) 2^-134, close enough for a guess */
            const uint32_t e = (__float_as_uint(top) >> 23) & 0xFFu, mant = kBf16 ? 7u : 10u;
            const uint32_t e_first = kBf16 ? 9u : 113u;
            half_u = e >= e_first ? __uint_as_float((e - mant - 1u) << 23)
                                  : (kBf16 ? __uint_as_float(0x8000u) : __uint_as_float((127u - 25u) << 23));
        }
        return Code8Tile{sf, zf, inv_s, -(zf + half_u) * inv_s};
    } else {
        return Code8Tile{sf, zf, 0.5f * inv_s, sf > 0.0f ? 127.5f : __int_as_float(0x7FC00000)};
    }
}

/* Levels c1 - 1, c1 and c1 + 1 of an ASYMMETRIC tile as floats (lm, l0, lp; codes outside 0 .. 255 stand
 * for -inf and +inf) and the E bits of the first two (bm, b0), each from two FMAs (level8). false where
 * bf16 meets level8's double-rounding case (r a bf16 midpoint), which these levels leave to code8_walk. */
template <bool kBf16>
__device__ __forceinline__ bool asym_levels3(uint32_t c1, float s, float z, float &lm, float &l0, float &lp, uint32_t &bm,
                                             uint32_t &b0) {
    constexpr uint32_t L = 256;
    constexpr float kInf = __builtin_huge_valf();
    const float cf = __uint_as_float(0x4B000000u | c1) - 8388608.0f;
    const float om = round_to_odd(__fmaf_rd(cf - 1.0f, s, z), __fmaf_ru(cf - 1.0f, s, z));
    const float o0 = round_to_odd(__fmaf_rd(cf, s, z), __fmaf_ru(cf, s, z));
    const float op = round_to_odd(__fmaf_rd(cf + 1.0f, s, z), __fmaf_ru(cf + 1.0f, s, z));
    const uint32_t e_m0 = floats_to_e2(om, o0, kBf16), e_p = floats_to_e2(op, op, kBf16);
    bm = e_m0 & 0xFFFFu;
    b0 = e_m0 >> 16;
    lm = c1 == 0 ? -kInf : e_to_float(bm, kBf16);
    l0 = c1 >= L ? kInf : e_to_float(b0, kBf16);
    lp = c1 >= L - 1 ? kInf : e_to_float(e_p & 0xFFFFu, kBf16);
    if constexpr (kBf16) {
        const float rm = __fmaf_rn(cf - 1.0f, s, z), r0 = __fmaf_rn(cf, s, z), rp = __fmaf_rn(cf + 1.0f, s, z);
        return (__float_as_uint(rm) & 0xFFFFu) != 0x8000u && (__float_as_uint(r0) & 0xFFFFu) != 0x8000u &&
               (__float_as_uint(rp) & 0xFFFFu) != 0x8000u;
    }
    return true;
}

/* nearest_code's decision between lo and lo - 1 for x (xf) between their levels below < x <= at: whether
 * fl64(at - x) < fl64(x - below). fp16: exact in binary32, as level(lo) + level(lo - 1) < 2x (a sum that
 * TwoSum gives exactly; fp16 differences are exact in binary64); bf16: take_upper_bf16. at = +inf (lo =
 * 256) gives false, below = -inf (lo = 0) true. */
template <bool kBf16>
__device__ __forceinline__ bool take_upper(float at, float xf, float below) {
    if constexpr (kBf16) {
        return take_upper_bf16(at, xf, below);
    } else {
        const float s2 = __fadd_rn(at, below), bb = __fsub_rn(s2, at);
        const float e2 = __fadd_rn(__fsub_rn(at, __fsub_rn(s2, bb)), __fsub_rn(below, bb));
        const float x2 = 2.0f * xf;
        return s2 < x2 || (s2 == x2 && e2 < 0.0f);
    }
}

/* The code of x (a finite E value) among the 256 levels of a tile with parameters s and z (code8_tile;
 * SYMMETRIC ignores z) where the usual path applies (then true), as numeric.cuh nearest_code gives it over
 * quant_level's levels, bit for bit.
 * nearest_code finds lo, the first code whose level is >= x (levels are non-decreasing in the code), and
 * takes lo when fl64(level(lo) - x) < fl64(x - level(lo - 1)), else lo - 1 or the first code of the run of
 * equal levels it ends.
 * The usual path evaluates three levels around a guess, without a branch that depends on the lane (32
 * lanes wait for their slowest). Where every level is below s * 2^mant (code8_tile), a level's unit in the
 * last place is below s, so no two levels are equal and each is within s / 2 of its unrounded value
 * c s + z: lo is then c1 or c1 + 1 for c1 = (x - z) / s rounded (SYMMETRIC: (x / s + 255) / 2), which the
 * three levels c1 - 1 .. c1 + 1 confirm. Where levels may repeat, code8_tile's guess aims at the first level
 * that rounds to x or above, and the same three levels confirm it. Either way the guess only decides how
 * often the bracket holds: a failed one returns false, as do the tiles code8_tile marks. The decision is
 * take_upper's; a code below lo that might not start its run of equal levels returns false too. No branch:
 * the caller codes a few values at once, and their dependent chains of about 40 instructions overlap (one at
 * a time, the loop was bound by their latency). Before session 22 the tiles whose levels may repeat went to
 * code8_rare whole, a branch that held up the warp: 9% of the real caches' 8-bit encode. */
template <bool kAsym, bool kBf16>
__device__ __forceinline__ bool code8_usual(uint32_t x, const Code8Tile &t, uint32_t &code) {
    constexpr uint32_t L = 256;
    constexpr float kInf = __builtin_huge_valf();
    const float xf = e_to_float(x, kBf16);
    /* c1 in 0 .. 256; a NaN guess (code8_tile's mark) becomes 0 */
    const float est = fminf(fmaxf(__fmaf_rn(xf, t.mul, t.add), 0.0f), 256.0f);
    const uint32_t c1 = __float_as_uint(est + 8388608.0f) & 0x1FFu; /* nearest integer, by the exponent trick */
    float lm, l0, lp;
    bool usual = t.add == t.add;
    if constexpr (kAsym) {
        uint32_t bm, b0;
        usual = asym_levels3<kBf16>(c1, t.s, t.z, lm, l0, lp, bm, b0) && usual;
    } else {
        const float m = __uint_as_float(0x4B000000u | (2 * c1)) - 8388864.0f; /* 2 c1 - 256, exactly */
        const uint32_t e_m0 = floats_to_e2((m - 1.0f) * t.s, (m + 1.0f) * t.s, kBf16);
        const uint32_t e_p = floats_to_e2((m + 3.0f) * t.s, (m + 3.0f) * t.s, kBf16);
        lm = c1 == 0 ? -kInf : e_to_float(e_m0 & 0xFFFFu, kBf16);
        l0 = c1 >= L ? kInf : e_to_float(e_m0 >> 16, kBf16);
        lp = c1 >= L - 1 ? kInf : e_to_float(e_p & 0xFFFFu, kBf16);
    }
    usual = usual && lm < xf && lp >= xf;
    /* lo, and the levels around it: at = +inf for lo = 256 and below = -inf for lo = 0, which the decision
     * turns into codes 255 and 0 */
    const bool in0 = l0 >= xf;
    const uint32_t lo = in0 ? c1 : c1 + 1;
    const float below = in0 ? lm : l0, at = in0 ? l0 : lp;
    const bool take = usual && take_upper<kBf16>(at, xf, below);
    code = take ? lo : lo - 1;
    if constexpr (kAsym) {
        /* below lo, the code is the first of the run of levels equal to level(lo - 1): lo - 1 unless
         * level(lo - 2) rounds to the same E value b, which needs s <= b's spacing <= |b| / 2^mant (b
         * normal; subnormal levels are multiples of the E grain, exact) */
        constexpr float kUnits = kBf16 ? 128.0f : 1024.0f;
        usual = usual && (take || fabsf(below) < t.s * kUnits);
    }
    return usual;
}

/* The guess of the first code whose level is >= v (E bits vb, value vf) in an ASYMMETRIC tile, whose levels
 * may repeat: where a level starts to round to v or above, c s + z at m, the midpoint of v and the E value
 * below it, c1 = (m - z) / s rounded (inv_s ~ 1/s). The first such code is ceil((m - z) / s), or one more
 * when c s + z = m exactly rounds down, so c1 or c1 + 1 (an error of the guess far below 1/2 keeps it
 * there), which three levels around c1 confirm exactly. v = -inf (unused) gives 0. */
template <bool kBf16>
__device__ __forceinline__ uint32_t guess_first_at_least(uint32_t vb, float vf, float z, float inv_s) {
    /* the E value below v, by order keys (numeric.cuh e_order_key) */
    const uint32_t key = vb ^ (0x8000u | ((0u - (vb >> 15)) & 0x7FFFu)), pk = (key - 1u) ^ 0x8000u;
    const uint32_t pred = pk ^ ((0u - (pk >> 15)) & 0x7FFFu);
    const float m = __fmaf_rn(0.5f, e_to_float(pred & 0xFFFFu, kBf16), 0.5f * vf);
    const float est = fminf(fmaxf((m - z) * inv_s, 0.0f), 256.0f);
    return __float_as_uint(est + 8388608.0f) & 0x1FFu;
}

/* The first code whose level is >= v (an E value, bits vb; 256 when none) in an ASYMMETRIC tile, from
 * three levels around guess_first_at_least's guess, with the levels at it (at) and below it (below, and its
 * E bits); false where they do not bracket v. */
template <bool kBf16>
__device__ __forceinline__ bool first_level_at_least(uint32_t vb, float vf, const Code8Tile &t, float inv_s, uint32_t &lo,
                                                     float &below, uint32_t &below_bits, float &at) {
    const uint32_t c1 = guess_first_at_least<kBf16>(vb, vf, t.z, inv_s);
    float lm, l0, lp;
    uint32_t bm, b0;
    const bool ok = asym_levels3<kBf16>(c1, t.s, t.z, lm, l0, lp, bm, b0) && lm < vf && lp >= vf;
    const bool in0 = l0 >= vf;
    lo = in0 ? c1 : c1 + 1;
    below = in0 ? lm : l0;
    below_bits = in0 ? bm : b0;
    at = in0 ? l0 : lp;
    return ok;
}

/* code8 in an ASYMMETRIC tile with s > 0 whose levels may repeat (or not), by two searches of three levels
 * each; true when their brackets hold, and then the code is nearest_code's. lo by first_level_at_least,
 * the decision as the usual path's; when it goes below, the code is the first of the run of levels equal to
 * level(lo - 1), which is the first code whose level is >= that level: a second first_level_at_least.
 * For the values code8_usual leaves in such tiles (a guess that missed, a code below lo that may not start
 * its run), cheaper than code8_walk's level-by-level steps. */
template <bool kBf16>
__device__ __forceinline__ bool code8_runs(uint32_t x, const Code8Tile &t, uint32_t &code) {
    const float xf = e_to_float(x, kBf16), inv_s = t.mul;
    uint32_t lo, below_bits, start, unused_bits;
    float below, at, unused_below, unused_at;
    const bool ok = first_level_at_least<kBf16>(x, xf, t, inv_s, lo, below, below_bits, at);
    const bool take = take_upper<kBf16>(at, xf, below);
    /* below = -inf (lo = 0) is always taken; its bits are then the ones of -inf */
    const uint32_t bb = lo == 0 ? (kBf16 ? 0xFF80u : 0xFC00u) : below_bits;
    const bool ok2 = first_level_at_least<kBf16>(bb, below, t, inv_s, start, unused_below, unused_bits, unused_at);
    code = take ? lo : start;
    return ok && (take || ok2);
}

/* code8 where code8_usual or code8_runs does not apply: code8_runs where it does (ASYMMETRIC, s > 0),
 * else code8_walk. Out of line: rare, and inlined copies made the 8-bit kernel larger than the instruction
 * cache serves well (session 21). */
template <bool kAsym, bool kBf16>
__device__ __noinline__ uint32_t code8_rare(uint32_t x, Code8Tile t) {
    uint32_t code;
    if constexpr (kAsym) {
        if (t.s > 0.0f && code8_runs<kBf16>(x, t, code)) return code;
    }
    return code8_walk<kAsym, kBf16>(e_to_float(x, kBf16), t.s, t.z);
}

/* code8_usual, or code8_rare where it does not apply. */
template <bool kAsym, bool kBf16>
__device__ __forceinline__ uint32_t code8(uint32_t x, const Code8Tile &t) {
    uint32_t code;
    if (!code8_usual<kAsym, kBf16>(x, t, code)) code = code8_rare<kAsym, kBf16>(x, t);
    return code;
}

}  // namespace sqkv_cuda

#endif /* SQKV_CUDA_LEVELS8_CUH */
