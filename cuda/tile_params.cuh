/*
 * tile_params.cuh: the fast PER_TILE encoder's parameter choice for one tile of fp16 values (2, 3 and 4
 * bits, SYMMETRIC or ASYMMETRIC), and the reference it must equal.
 *
 * tile_params must give exactly what numeric.cuh choose_params, quant_level and group_code_bounds give
 * (they are the CPU encoder's arithmetic), for every finite input. It is the same binary64 rule, with
 * four shortcuts where the reference spends instructions that these inputs do not need:
 *   - range / (L - 1) as one multiplication by the binary64 value nearest 1 / (L - 1), not a division
 *     (a subroutine of about 20 instructions on the GPU);
 *   - fp16 <-> binary64 conversions without the branches for infinities and NaN (inputs are finite;
 *     levels that overflow become infinities, which the conversion instruction gives, and never NaN);
 *   - levels as one fused multiply-add each: c * s is exact (c < 16, s has 11 significant bits), so
 *     fma(c, s, z) rounds once, as dadd(dmul(c, s), z) does;
 *   - fp16 code boundaries as the successor of the exact midpoint rounded down (one conversion), which is
 *     the reference's smallest value above the midpoint without its round trip and compare.
 * Why the product may stand for the quotient: only its rounding to fp16 matters. range = hi - lo is a
 * multiple of 2^-24 below 2^17 (k 2^-24, k < 2^41) and D = L - 1 is 3, 7 or 15. When D does not divide
 * k, the quotient is at least 2^-41 of itself away from every fp16 midpoint (a 12-bit dyadic), many
 * binary64 ulps, and the product is within an ulp of it, so both round to the same fp16 value. When D
 * divides k, the quotient is a binary64 value and the product may miss it by an ulp, which matters only
 * if the quotient is an fp16 midpoint: no input reaches that case. That last claim, and the whole
 * function, rest on an exhaustive check, not on the argument: cuda/tile_params_test compares tile_params
 * with the reference on every input pair (about 2.0e9 for ASYMMETRIC, via cuda/selfcheck.cu) for 2, 3 and
 * 4 bits. (A product corrected by two fused multiply-adds, exact in both cases by construction, gave the
 * same results on every input.)
 * bf16 tiles (the kBf16 variant) have their own reference, with group_code_bounds_e, and their own
 * exhaustive check (about 2.1e9 pairs); tile_params's comment says where the two types differ.
 */
#ifndef SQKV_CUDA_TILE_PARAMS_CUH
#define SQKV_CUDA_TILE_PARAMS_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#include "numeric.cuh"

namespace sqkv_cuda {

/* Exact binary64 value of a finite fp16 value (no branch: the caller knows it is finite). */
__device__ __forceinline__ double finite_fp16_to_double(uint32_t h) {
    return (double)__half2float(__ushort_as_half((unsigned short)h));
}

/* binary64 -> fp16, round to nearest even (sm_90: one instruction); x is never NaN here. */
__device__ __forceinline__ uint32_t double_to_fp16_rn(double x) {
    unsigned short h;
    asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(x));
    return h;
}

/* binary64 -> fp16, rounded toward minus infinity (the largest fp16 value not above x; finite for finite
 * x within the fp16 range, which tile_params's midpoints are). */
__device__ __forceinline__ uint32_t double_to_fp16_rd(double x) {
    unsigned short h;
    asm("cvt.rm.f16.f64 %0, %1;" : "=h"(h) : "d"(x));
    return h;
}

__device__ __forceinline__ bool fp16_finite(uint32_t h) { return (h & 0x7C00u) != 0x7C00u; }

/* The same two conversions for finite bf16 values (a bf16 value is the top half of a binary32 one). */
__device__ __forceinline__ double finite_bf16_to_double(uint32_t h) { return (double)__uint_as_float(h << 16); }
__device__ __forceinline__ uint32_t double_to_bf16_rn(double x) {
    unsigned short h;
    asm("cvt.rn.bf16.f64 %0, %1;" : "=h"(h) : "d"(x));
    return h;
}

/* range / D, as close as the rounding to fp16 needs (see the file comment). */
template <uint32_t D>
__device__ __forceinline__ double quotient_for_step(double range) {
    constexpr double kInv = 1.0 / (double)D;
    return __dmul_rn(range, kInv);
}

/* range / D for bf16 steps (see tile_params): the product by the rounded reciprocal and one correction by
 * the residual range - q D, which a fused multiply-add gives exactly (q is within an ulp of the quotient).
 * That is the correctly rounded quotient in all but rare cases, and only its rounding to bf16 matters;
 * cuda/tile_params_test checks the parameters on every range a pair of bf16 extremes gives, against the
 * reference's division. __ddiv_rn's inline path cost about 18 instructions a tile (ncu, session 18), this
 * one three. */
template <uint32_t D>
__device__ __forceinline__ double quotient_rn(double range) {
    constexpr double kInv = 1.0 / (double)D;
    const double q = __dmul_rn(range, kInv);
    return __fma_rn(__fma_rn(-q, (double)D, range), kInv, q);
}

/* bf16 levels lo < hi (their bits) and m, their binary64 midpoint rounded to bf16: when m is normal
 * (exponent field at least 2) and at most 38 binades from each level (a zero level counts as the lowest
 * binade), the bound's two candidates, m's predecessor to its successor, differ from lo and from hi by
 * exact binary64 values (significands of at most 48 bits), and so do lo + hi (whichever is larger in
 * magnitude is within two binades of m, so the levels are at most 40 apart): nearest_code's test there is
 * the exact x > (lo + hi) / 2, and the bound is the smallest bf16 value above that midpoint, with no
 * check. A pair whose midpoint is tiny next to them (-h and h, or a near cancellation) is left to the
 * checks. */
__device__ __forceinline__ bool bf16_bound_exact(uint32_t m, uint32_t lo, uint32_t hi) {
    /* exponent fields in place (times 128); |a - b| <= 38 as one unsigned compare of a - b + 38 */
    const uint32_t em = m & 0x7F80u, el = max(lo & 0x7F80u, 0x80u), eh = max(hi & 0x7F80u, 0x80u);
    return em >= 0x100u && em - el + 38u * 128u <= 76u * 128u && em - eh + 38u * 128u <= 76u * 128u;
}

/* The element type's conversions and constants for tile_params: fp16, or bf16 (kBf16). */
template <bool kBf16>
struct TileElement {
    static __device__ __forceinline__ double to_double(uint32_t h) {
        return kBf16 ? finite_bf16_to_double(h) : finite_fp16_to_double(h);
    }
    static __device__ __forceinline__ uint32_t round(double x) { return kBf16 ? double_to_bf16_rn(x) : double_to_fp16_rn(x); }
    static __device__ __forceinline__ bool finite(uint32_t h) {
        return kBf16 ? (h & 0x7F80u) != 0x7F80u : fp16_finite(h);
    }
    static constexpr uint32_t kMaxFinite = kBf16 ? 0x7F7Fu : 0x7BFFu;
    static constexpr uint32_t kMinKey = kBf16 ? 0x0080u : 0x0400u; /* order key of -kMaxFinite */
    /* a code no value gets, as the references mark it: group_code_bounds's kNoCode (fp16),
     * group_code_bounds_e's key of +infinity (bf16) */
    static constexpr uint32_t kNone = kBf16 ? 0xFF80u : kNoCode;
};

/* The parameters of one tile of count kept fp16 (kBf16: bf16) values from their statistics (SYMMETRIC:
 * max_mag, the largest magnitude; ASYMMETRIC: the order keys of the smallest and largest value), written
 * to sc (s, then z for ASYMMETRIC), and the tile's code boundaries to bnd[1 .. L-1]: for 2 bits as
 * values (the smallest value of each code and above), for 3 and 4 bits as order keys; TileElement::kNone
 * (for 2 bits its value, NaN or +infinity) marks a code no value gets. count == 0 writes zero parameters
 * and no bounds.
 * bf16 differs in two places. The step is a division (quotient_rn): a bf16 range is a rounded binary64
 * difference, so the argument for the product does not carry over. And the bound of a code c that starts
 * a run of equal levels (lo = level(c - 1) < hi = level(c)) is not always the value above the midpoint, since
 * neither the midpoint nor the differences nearest_code takes need be exact: there nearest_code gives c
 * or more exactly when x > hi, or x > lo and fl(hi - x) < fl(x - lo) (for lo < x <= hi the lower bound is c,
 * and above < below decides; above hi every code is c or more). That test is monotone in x, so the
 * midpoint's guess stands when the test holds at it and not at its predecessor, and a search between lo
 * and hi finds the bound where it does not; the levels -h and h (SYMMETRIC tiles), whose midpoint 0 is
 * never the bound, have it in closed form. Most pairs need neither: where the differences near the midpoint
 * are exact (bf16_bound_exact), the guess is the bound (H200, session 18: bf16 writer default 1539-1564 ->
 * 1616-1631 GB/s, bf16 3-bit SYMMETRIC 1250-1266 -> 1349-1369, with quotient_rn). cuda/tile_params_test
 * checks both types on every input. */
template <uint32_t BITS, bool kAsym, bool kBf16 = false>
__device__ __forceinline__ void tile_params(uint32_t count, uint32_t max_mag, uint32_t min_key, uint32_t max_key,
                                            uint16_t *sc, uint16_t *bnd) {
    static_assert(BITS >= 2 && BITS <= 4, "2, 3 and 4 bits");
    using E = TileElement<kBf16>;
    constexpr uint32_t L = 1u << BITS;
    if (count == 0) {
        sc[0] = 0;
        if (kAsym) sc[1] = 0;
        return;
    }
    uint32_t zv = 0;
    double zd = 0.0, range;
    if (kAsym) {
        zv = e_from_order_key(min_key);
        zd = E::to_double(zv);
        range = __dsub_rn(E::to_double(e_from_order_key(max_key)), zd);
    } else {
        range = E::to_double(max_mag);
    }
    uint32_t sv = E::round(kBf16 ? quotient_rn<L - 1>(range) : quotient_for_step<L - 1>(range));
    if (range > 0 && (sv & 0x7FFFu) == 0) sv = 1;
    if (!E::finite(sv)) sv = E::kMaxFinite;
    /* numeric.cuh choose_step: while the top level (ASYMMETRIC: also the bottom one, which is z) is not
     * finite, s goes down by one; s is finite and not negative from here on */
    double sd;
    uint32_t lev[L];
    auto level = [&](uint32_t c) -> uint32_t {
        if (kAsym) return E::round(__fma_rn((double)c, sd, zd));
        return E::round(__dmul_rn((double)(int32_t)(2 * c + 1 - L), sd));
    };
    for (;;) {
        sd = E::to_double(sv);
        lev[L - 1] = level(L - 1);
        if (sv == 0 || E::finite(lev[L - 1])) break;
        sv--;
    }
    sc[0] = (uint16_t)sv;
    if (kAsym) sc[1] = (uint16_t)zv;
#pragma unroll
    for (uint32_t c = 0; c + 1 < L; c++) lev[c] = level(c);
    /* ASYMMETRIC: level 0 is fma(0, s, z) = z rounded, which is z itself (s is finite, and z is a kept
     * value, never a zero, so no sign of zero is lost): its binary64 value is zd */
    auto level_double = [&](uint32_t c) { return kAsym && c == 0 ? zd : E::to_double(lev[c]); };
    /* numeric.cuh group_code_bounds (fp16) or group_code_bounds_e (bf16) on levels known to be finite */
    double hi = E::to_double(lev[L - 1]);
    const double top = hi;
    uint32_t above = E::kNone; /* B[c + 1] */
#pragma unroll
    for (uint32_t c = L - 1; c >= 1; c--) {
        const double lo = level_double(c - 1);
        uint32_t B, bound; /* the bound as a key, and as bnd stores it (2 bits: its value) */
        if (hi > lo) {
            const double mid = __dmul_rn(__dadd_rn(lo, hi), 0.5);
            if constexpr (!kBf16) {
                /* the smallest fp16 value above mid (group_code_bounds rounds mid to nearest, then steps up
                 * one key unless the rounded value is above mid) is the successor of mid rounded down: one
                 * conversion, without converting back and comparing. The successor of a negative value is
                 * one below it in bits (of -2^-24, -0), of a positive one (or +0) one above. */
                const uint32_t d = double_to_fp16_rd(mid);
                B = e_order_key((uint16_t)d) + 1u;
                bound = BITS == 2 ? ((d & 0x8000u) ? d - 1u : d + 1u) : B;
            } else {
                const uint32_t m = E::round(mid);
                const uint32_t k = e_order_key((uint16_t)m);
                B = E::to_double(m) > mid ? k : k + 1u;
                /* x gets c or more */
                auto reaches = [&](uint32_t key) {
                    const double x = E::to_double(e_from_order_key(key));
                    return x > hi || (x > lo && __dsub_rn(hi, x) < __dsub_rn(x, lo));
                };
                B = B < E::kMinKey + 1u ? E::kMinKey + 1u : B > E::kNone - 1u ? E::kNone - 1u : B;
                if (bf16_bound_exact(m, lev[c - 1], lev[c])) {
                    /* the midpoint's guess stands (bf16_bound_exact) */
                } else if (lo == -hi) {
                    /* levels -h and h (a SYMMETRIC tile's middle pair): the midpoint 0 is no guess. For
                     * 0 < x << h, fl(h - x) < fl(x + h) exactly when one of them leaves h, which takes x
                     * above half the binary64 spacing below h: t = 2^(E - 53) for h in [2^E, 2^(E + 1)),
                     * 2^(E - 54) when h = 2^E (a tie keeps h: its 53-bit significand is even). The bound is
                     * the bf16 value after t (the smallest subnormal when t is below it). */
                    const uint32_t hb = lev[c] & 0x7FFFu, eb = hb >> 7, m7 = hb & 0x7Fu;
                    const int E = eb ? (int)eb - 127 : 31 - __clz((int)m7) - 133;
                    const bool pow2 = eb ? m7 == 0 : (m7 & (m7 - 1u)) == 0;
                    const int te = E - 53 - (pow2 ? 1 : 0);
                    const uint32_t tb = te >= -126 ? (uint32_t)(te + 127) << 7 : te >= -133 ? 1u << (te + 133) : 0u;
                    B = e_order_key((uint16_t)(tb + 1u));
                } else if (!reaches(B) || reaches(B - 1u)) {
                    uint32_t a = e_order_key((uint16_t)lev[c - 1]) + 1u, b = e_order_key((uint16_t)lev[c]);
                    while (a < b) {
                        const uint32_t md = a + (b - a) / 2;
                        if (reaches(md)) b = md;
                        else a = md + 1u;
                    }
                    B = a;
                }
                bound = BITS == 2 ? e_from_order_key(B) : B;
            }
        } else {
            B = hi == top ? E::kNone : above;
            bound = BITS == 2 ? e_from_order_key(B) : B;
        }
        bnd[c] = (uint16_t)bound;
        above = B;
        hi = lo;
    }
}

/* The same outputs from numeric.cuh's functions as the CPU encoder composes them (quantize.c): the
 * reference of cuda/tile_params_test, and the fast encoder's parameter choice for bf16 tiles (bf16), whose
 * bounds come from group_code_bounds_e (a code no value gets: the key above the largest finite bf16
 * value, for 2 bits +inf, which no compare passes). */
template <uint32_t BITS, bool kAsym>
__host__ __device__ inline void tile_params_reference(uint32_t count, uint32_t max_mag, uint32_t min_key,
                                                      uint32_t max_key, uint16_t *sc, uint16_t *bnd,
                                                      bool bf16 = false) {
    constexpr uint32_t L = 1u << BITS;
    const int q = kAsym ? 2 : 1;
    uint16_t sv, zv;
    choose_params(q, BITS, bf16, count, max_mag, min_key, max_key, &sv, &zv);
    sc[0] = sv;
    if (kAsym) sc[1] = zv;
    if (count == 0) return;
    const double sd = e_to_double(sv, bf16), zd = e_to_double(zv, bf16);
    uint16_t lev[L];
    for (uint32_t c = 0; c < L; c++) lev[c] = quant_level(q, BITS, bf16, sd, zd, c);
    uint32_t B[L];
    if (bf16) group_code_bounds_e<L>(lev, true, B);
    else group_code_bounds<L>(lev, B);
    for (uint32_t c = 1; c < L; c++) bnd[c] = BITS == 2 ? e_from_order_key(B[c]) : (uint16_t)B[c];
}

}  // namespace sqkv_cuda

#endif /* SQKV_CUDA_TILE_PARAMS_CUH */
