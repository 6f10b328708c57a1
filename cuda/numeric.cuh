/*
 * numeric.cuh: the element-type arithmetic of spec/FORMAT.md §7.4 and §14 for host and device code.
 *
 * These functions must give, bit for bit, what codec/src/float16.c and quantize.c give, because the
 * GPU encoder promises the CPU encoder's bytes. They avoid everything whose result could differ
 * between the two: no fused multiply-add where a product is not exact (__dmul_rn/__dadd_rn on the
 * device), no hardware conversion whose rounding or subnormal handling we did not check (double ->
 * fp16/bf16: integer operations on the host, the sm_90 conversion instructions on the device, which
 * cuda/rounding_test checks bit for bit), and the same search order for nearest levels.
 * cuda/code_bounds_test checks them against the CPU functions on the host.
 */
#ifndef SQKV_CUDA_NUMERIC_CUH
#define SQKV_CUDA_NUMERIC_CUH

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#endif

#ifdef __CUDACC__
#define SQKV_HD __host__ __device__ __forceinline__
#else
#define SQKV_HD inline
#endif

namespace sqkv_cuda {

/* Element type parameters: fp16 (bias 15, 10 mantissa bits) or bf16 (bias 127, 7 mantissa bits). */
SQKV_HD int e_mant_bits(bool bf16) { return bf16 ? 7 : 10; }

SQKV_HD uint64_t dbl_bits(double x) {
#ifdef __CUDA_ARCH__
    return (uint64_t)__double_as_longlong(x);
#else
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}
SQKV_HD double bits_dbl(uint64_t u) {
#ifdef __CUDA_ARCH__
    return __longlong_as_double((long long)u);
#else
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

/* Products and sums that must be single IEEE operations (never contracted into an FMA). */
SQKV_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    volatile double p = a * b;
    return p;
#endif
}
SQKV_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
SQKV_HD double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}
SQKV_HD double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
}

SQKV_HD bool e_is_finite(uint16_t h, bool bf16) {
    return bf16 ? (h & 0x7F80u) != 0x7F80u : (h & 0x7C00u) != 0x7C00u;
}
SQKV_HD uint16_t e_max_finite(bool bf16) { return bf16 ? 0x7F7Fu : 0x7BFFu; }

/* Exact E -> binary64, built from the bits (finite inputs; infinities and NaN also handled). */
SQKV_HD double e_to_double(uint16_t h, bool bf16) {
#ifdef __CUDA_ARCH__
    /* finite fp16 (subnormals included) is exactly a float: the hardware conversions are exact */
    if (!bf16 && (h & 0x7C00u) != 0x7C00u) return (double)__half2float(__ushort_as_half(h));
#endif
    const int mb = bf16 ? 7 : 10, bias = bf16 ? 127 : 15, emax = bf16 ? 255 : 31;
    const uint64_t sign = (uint64_t)(h >> 15) << 63;
    const int ex = (h >> mb) & emax;
    const uint64_t m = h & ((1u << mb) - 1u);
    if (ex == emax) return bits_dbl(sign | 0x7FF0000000000000ull | (m ? 0x0008000000000000ull : 0));
    if (ex == 0) {
        /* subnormal or zero: m * 2^(1 - bias - mb), exact (a power-of-two scaling of a small integer) */
        const double v = dmul((double)m, bits_dbl((uint64_t)(1023 + 1 - bias - mb) << 52));
        return sign ? -v : v;
    }
    return bits_dbl(sign | ((uint64_t)(ex - bias + 1023) << 52) | (m << (52 - mb)));
}

/* binary64 -> E, round to nearest, ties to even, with subnormals and overflow to infinity; NaN gives
 * the quiet NaN float16.c returns. The same result as sqkv_double_to_fp16 / _bf16. */
SQKV_HD uint16_t double_to_e(double x, bool bf16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* sm_90 converts binary64 to fp16 and bf16 in one instruction each (F2F), rounding once, to nearest
     * even, with subnormals and overflow to infinity: the integer rounding below took ~60 instructions,
     * run per PER_TILE tile (range / 3 is rarely a float). Only NaN differs (the hardware gives 0x7FFF).
     * cuda/rounding_test compares this path bit for bit with the host path and float16.h on every fp16
     * and bf16 midpoint and its neighbours, quotients range / 3, random doubles of every exponent and
     * the specials (via cuda/selfcheck.cu). */
    unsigned short h;
    if (bf16) asm("cvt.rn.bf16.f64 %0, %1;" : "=h"(h) : "d"(x));
    else asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(x));
    /* a select, not a branch: the PER_TILE level tables convert many levels in a row */
    return x != x ? (uint16_t)(bf16 ? 0x7FC0u : 0x7E00u) : (uint16_t)h;
#else
#ifdef __CUDA_ARCH__
    /* Shortcut for fp16: when x is exactly a float, the hardware float -> half conversion (IEEE round to
     * nearest even, subnormals, overflow to infinity) rounds once, as below. Levels and midpoints of
     * fp16 values almost always are. */
    if (!bf16) {
        const float f = __double2float_rn(x);
        if ((double)f == x) return __half_as_ushort(__float2half_rn(f));
    }
#endif
    const int mb = bf16 ? 7 : 10, bias = bf16 ? 127 : 15, emax = bf16 ? 255 : 31;
    const uint64_t u = dbl_bits(x);
    const uint16_t sign = (uint16_t)((u >> 63) << 15);
    const uint64_t a = u & 0x7FFFFFFFFFFFFFFFull;
    if (a > 0x7FF0000000000000ull) return bf16 ? 0x7FC0u : 0x7E00u;
    const uint16_t inf = (uint16_t)(sign | (emax << mb));
    if (a == 0x7FF0000000000000ull) return inf;
    const int dexp = (int)(a >> 52);
    if (dexp == 0) return sign; /* binary64 subnormals are far below half the smallest E subnormal */
    const uint64_t sig = (1ull << 52) | (a & 0x000FFFFFFFFFFFFFull);
    int eb = dexp - 1023 + bias; /* biased E exponent of the normal representation */
    int shift = 52 - mb;
    if (eb < 1) shift += 1 - eb; /* subnormal quantum */
    if (shift >= 54) return sign; /* below half the smallest subnormal */
    uint64_t q = sig >> shift;
    const uint64_t rem = sig & ((1ull << shift) - 1u), half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    if (eb >= 1) {
        if (q >> (mb + 1)) {
            q >>= 1;
            eb++;
        }
        if (eb >= emax) return inf;
        return (uint16_t)(sign | (eb << mb) | (uint16_t)(q & ((1u << mb) - 1u)));
    }
    return (uint16_t)(sign | q); /* q == 2^mb is the smallest normal: the same bits */
#endif
}

/* Level of code c (§7.4) as E bits: SYMMETRIC RNE((2c+1-L)s), ASYMMETRIC RNE(fl64(c*s + z)). */
SQKV_HD uint16_t quant_level(int quantizer, uint32_t bits, bool bf16, double s, double z, uint32_t c) {
    const uint32_t n = 1u << bits;
    if (quantizer == 1) return double_to_e(dmul((double)(int32_t)(2 * c + 1 - n), s), bf16);
    return double_to_e(dadd(dmul((double)c, s), z), bf16);
}

/* §7.4 rules for one group's parameters: finite s and z, s without sign bit, every level finite.
 * Levels are non-decreasing in c (s >= 0, rounding is monotone), so the extreme levels decide. */
SQKV_HD bool quant_params_ok(int quantizer, uint32_t bits, bool bf16, uint16_t s, uint16_t z) {
    if (!e_is_finite(s, bf16) || (s & 0x8000u)) return false;
    const double sd = e_to_double(s, bf16);
    const uint32_t n = 1u << bits;
    if (quantizer == 1) return e_is_finite(quant_level(1, bits, bf16, sd, 0.0, n - 1), bf16);
    if (!e_is_finite(z, bf16)) return false;
    const double zd = e_to_double(z, bf16);
    return e_is_finite(quant_level(2, bits, bf16, sd, zd, 0), bf16) &&
           e_is_finite(quant_level(2, bits, bf16, sd, zd, n - 1), bf16);
}

/* The reference encoder's step choice (quantize.c choose_step). */
SQKV_HD uint16_t choose_step(int quantizer, uint32_t bits, bool bf16, double range, uint16_t z) {
    const uint32_t n = 1u << bits;
    uint16_t s = double_to_e(ddiv(range, (double)(n - 1)), bf16);
    if (range > 0 && (s & 0x7FFFu) == 0) s = 1;
    if (!e_is_finite(s, bf16)) s = e_max_finite(bf16);
    while (s != 0 && !quant_params_ok(quantizer, bits, bf16, s, z)) s = (uint16_t)(s - 1u);
    return s;
}

/* Order key of a finite E value: unsigned, increasing with the value; -0 sorts just below +0 (both occur
 * among kept values only in keep-all mode). */
SQKV_HD uint32_t e_order_key(uint16_t h) {
    const uint32_t flip = (h & 0x8000u) ? 0x7FFFu : 0u;
    return ((uint32_t)h ^ flip) ^ 0x8000u;
}
SQKV_HD uint16_t e_from_order_key(uint32_t key) {
    uint32_t h = key ^ 0x8000u;
    if (h & 0x8000u) h ^= 0x7FFFu;
    return (uint16_t)h;
}

/* Parameters of a group from its statistics: SYMMETRIC from the largest magnitude (15-bit), ASYMMETRIC
 * from the smallest and largest order keys. count == 0 gives +0 parameters. */
SQKV_HD void choose_params(int quantizer, uint32_t bits, bool bf16, uint32_t count, uint32_t max_mag,
                           uint32_t min_key, uint32_t max_key, uint16_t *s, uint16_t *z) {
    *s = 0;
    *z = 0;
    if (count == 0) return;
    if (quantizer == 1) {
        *s = choose_step(1, bits, bf16, e_to_double((uint16_t)max_mag, bf16), 0);
        return;
    }
    const uint16_t lo_bits = e_from_order_key(min_key), hi_bits = e_from_order_key(max_key);
    *z = lo_bits;
    *s = choose_step(2, bits, bf16, dsub(e_to_double(hi_bits, bf16), e_to_double(lo_bits, bf16)), lo_bits);
}

/* nearest_code once lo is known: lo is the first code whose level is >= x (n_levels if none). */
template <typename LevelFn>
SQKV_HD uint32_t nearest_code_from_lower_bound(const LevelFn &level, uint32_t n_levels, double x, uint32_t lo) {
    if (lo == n_levels) {
        /* above every level: the top level, or the first of a run of equal top levels (a tie; as
         * quantize.h sqkv_quant_nearest_from_boundary) */
        uint32_t c = n_levels - 1;
        while (c > 0 && level(c - 1) == level(c)) c--;
        return c;
    }
    if (lo == 0) return 0;
    const double below = dsub(x, level(lo - 1)), above = dsub(level(lo), x);
    if (above < below) return lo;
    uint32_t c = lo - 1;
    while (c > 0 && level(c - 1) == level(c)) c--;
    return c;
}

/* quantize.c sqkv_quant_nearest_double over levels given by a functor (a table or on-the-fly). */
template <typename LevelFn>
SQKV_HD uint32_t nearest_code(const LevelFn &level, uint32_t n_levels, double x) {
    uint32_t lo = 0, hi = n_levels;
    while (lo < hi) {
        const uint32_t mid = (lo + hi) / 2;
        if (level(mid) < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return nearest_code_from_lower_bound(level, n_levels, x, lo);
}

/* A code boundary no finite fp16 value reaches (their order keys are at most 0xFBFF): a code never
 * chosen. 16 bits, as the fast kernels store boundaries. */
constexpr uint32_t kNoCode = 0xFFFFu;

/* Code boundaries of one fp16 group with L <= 16 levels (E values as bits, non-decreasing as values): B[c] (1 <= c < L) is the smallest order key whose value x gets a code >= c from nearest_code,
 * so that code(x) = the number of c with e_order_key(x) >= B[c]. Derived from nearest_code:
 *   - c starts a run of equal levels (level(c) > level(c-1)): x gets c or more exactly when
 *     level(c) - x < x - level(c-1) (exact binary64 differences), i.e. 2x > level(c-1) + level(c):
 *     B[c] = the smallest E value above that midpoint;
 *   - c is inside a run that reaches the top level: no x gets c, not even one above the top level
 *     (a tie among the run, which goes to its first code): B[c] = kNoCode;
 *   - c is inside another run: no x gets c, so B[c] = B[c + 1].
 * The midpoint of two fp16 values is exact in binary64. A sentinel above every finite key means "none". */
template <uint32_t L>
SQKV_HD void group_code_bounds(const uint16_t (&lev)[L], uint32_t (&B)[L]) {
    const bool bf16 = false; /* fp16 only: the midpoint of two bf16 values need not be exact in binary64 */
    const double top = e_to_double(lev[L - 1], bf16);
    double hi = top;
    B[0] = 0;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (uint32_t c = L - 1; c >= 1; c--) {
        const double lo = e_to_double(lev[c - 1], bf16);
        if (hi > lo) {
            const double mid = dmul(dadd(lo, hi), 0.5);
            const uint16_t m = double_to_e(mid, bf16);
            const uint32_t k = e_order_key(m);
            B[c] = e_to_double(m, bf16) > mid ? k : k + 1u;
        } else if (hi == top) {
            B[c] = kNoCode;
        } else {
            B[c] = B[c + 1];
        }
        hi = lo;
    }
}

/* Levels of one group as binary64, computed when asked (PER_TILE groups: few codes per group). */
struct OnTheFlyLevels {
    int quantizer;
    uint32_t bits;
    bool bf16;
    double s, z;
    SQKV_HD double operator()(uint32_t c) const {
        return e_to_double(quant_level(quantizer, bits, bf16, s, z, c), bf16);
    }
};

/* Levels read from a table of binary64 values. */
struct TableLevels {
    const double *table;
    SQKV_HD double operator()(uint32_t c) const { return table[c]; }
};

/* Code boundaries of one group of either element type, as group_code_bounds defines them (a code no
 * finite value gets: the order key just above the largest finite value, not kNoCode).
 * fp16: group_code_bounds. bf16: a midpoint of two bf16 values need not be exact in binary64, and the
 * differences nearest_code takes need not be either (x = 2^-100 between levels -1 and 1: x + 1 rounds to
 * 1, so the tie rule gives the lower code to a positive x), so the midpoint only gives a guess. The guess
 * stands when nearest_code gives code >= c at it and < c just below it: nearest_code is non-decreasing in
 * x (both rounded differences are monotone in x, and equal levels go to the first of their run), so that
 * guess is the smallest such key. Otherwise a bisection over the finite keys with nearest_code finds it.
 * Either way the bounds are nearest_code's by construction, whatever the rounding did. */
template <uint32_t L>
SQKV_HD void group_code_bounds_e(const uint16_t (&lev)[L], bool bf16, uint32_t (&B)[L]) {
    if (!bf16) {
        group_code_bounds<L>(lev, B);
        for (uint32_t c = 1; c < L; c++)
            if (B[c] == kNoCode) B[c] = e_order_key(0x7BFFu) + 1u;
        return;
    }
    double table[L];
    for (uint32_t c = 0; c < L; c++) table[c] = e_to_double(lev[c], true);
    const TableLevels level{table};
    const uint32_t kmin = e_order_key(0xFF7Fu), kmax = e_order_key(0x7F7Fu), none = kmax + 1u;
    /* code(key) >= c, for finite keys */
    auto at_least = [&](uint32_t key, uint32_t c) {
        return nearest_code(level, L, e_to_double(e_from_order_key(key), true)) >= c;
    };
    const double top = table[L - 1];
    B[0] = 0;
    for (uint32_t c = L - 1; c >= 1; c--) {
        const double lo = table[c - 1], hi = table[c];
        uint32_t g;
        if (hi > lo) {
            const double mid = dmul(dadd(lo, hi), 0.5);
            const uint16_t m = double_to_e(mid, true);
            const uint32_t k = e_order_key(m);
            g = e_to_double(m, true) > mid ? k : k + 1u;
            g = g < kmin ? kmin : g > none ? none : g;
        } else {
            g = hi == top ? none : B[c + 1];
        }
        const bool holds = (g == none || at_least(g, c)) && (g == kmin || !at_least(g - 1u, c));
        if (!holds) {
            uint32_t a = kmin, b = none; /* the answer is in [a, b]; none: no finite value */
            while (a < b) {
                const uint32_t mid = a + (b - a) / 2;
                if (at_least(mid, c)) b = mid;
                else a = mid + 1u;
            }
            g = a;
        }
        B[c] = g;
    }
}

/* ---- range search (spec/FORMAT.md §14, quantize.c sqkv_quant_candidate_params, encode_sparse.c
 * search_range) ---------------------------------------------------------------------------------- */

constexpr uint32_t kRangeCandidates = 8;

/* The parameters of candidate i (0 <= i < kRangeCandidates) of a group with kept elements, from its
 * statistics (as choose_params). Every product and sum is written as the CPU evaluates it, left to right,
 * one rounding each, so both encoders derive the same candidates even where bf16 sums are inexact. */
SQKV_HD void candidate_params(int quantizer, uint32_t bits, bool bf16, uint32_t max_mag, uint32_t min_key,
                              uint32_t max_key, uint32_t candidate, uint16_t *s, uint16_t *z) {
    if (candidate == 0) {
        choose_params(quantizer, bits, bf16, 1, max_mag, min_key, max_key, s, z);
        return;
    }
    const double alpha = dsub(1.0, ddiv((double)candidate, 16.0));
    if (quantizer == 1) {
        *z = 0;
        *s = choose_step(1, bits, bf16, dmul(alpha, e_to_double((uint16_t)max_mag, bf16)), 0);
        return;
    }
    const double lo = e_to_double(e_from_order_key(min_key), bf16), hi = e_to_double(e_from_order_key(max_key), bf16);
    const double center = dmul(0.5, dadd(lo, hi)), half = dmul(dmul(0.5, alpha), dsub(hi, lo));
    *z = double_to_e(dsub(center, half), bf16);
    const double range = dsub(dadd(center, half), e_to_double(*z, bf16));
    *s = choose_step(2, bits, bf16, range > 0 ? range : 0.0, *z);
}

/* (x - level(code(x)))^2 in binary64, the code chosen as the payload's (nearest_code). */
template <typename LevelFn>
SQKV_HD double squared_error(const LevelFn &level, uint32_t n_levels, double x) {
    const double d = dsub(x, level(nearest_code(level, n_levels, x)));
    return dmul(d, d);
}

/* Range search over one group of count > 0 kept values value(0 .. count) in payload order: the candidate
 * with the least sum of squared errors (summed in that order, one rounding per addition), the lower
 * candidate on equal sums; candidates whose levels break §7.4 are skipped (candidate 0 never is). A
 * thread per group: for PER_TILE and PER_HALF_TILE groups of at most 64 values. */
template <typename ValueFn>
SQKV_HD void range_search_group(int quantizer, uint32_t bits, bool bf16, uint32_t max_mag, uint32_t min_key,
                                uint32_t max_key, const ValueFn &value, uint32_t count, uint16_t *best_s,
                                uint16_t *best_z) {
    const uint32_t L = 1u << bits;
    double best = -1.0;
    for (uint32_t i = 0; i < kRangeCandidates; i++) {
        uint16_t s, z;
        candidate_params(quantizer, bits, bf16, max_mag, min_key, max_key, i, &s, &z);
        if (i == 0) {
            *best_s = s;
            *best_z = z;
        }
        if (!quant_params_ok(quantizer, bits, bf16, s, z)) continue;
        const OnTheFlyLevels level{quantizer, bits, bf16, e_to_double(s, bf16), e_to_double(z, bf16)};
        double error = 0.0;
        for (uint32_t k = 0; k < count; k++) error = dadd(error, squared_error(level, L, e_to_double(value(k), bf16)));
        if (best < 0 || error < best) {
            best = error;
            *best_s = s;
            *best_z = z;
        }
    }
}

/* fp16 / bf16 / fp32 source values to E (round to nearest even); flags: 1 = NaN/inf in the source,
 * 2 = finite source that does not fit E (overflows to infinity). */
SQKV_HD uint16_t float_to_e(float f, bool bf16, uint32_t *flags) {
    const uint32_t u = [&] {
#ifdef __CUDA_ARCH__
        return (uint32_t)__float_as_uint(f);
#else
        uint32_t v;
        memcpy(&v, &f, sizeof v);
        return v;
#endif
    }();
    if ((u & 0x7F800000u) == 0x7F800000u) {
        *flags |= 1u;
        return 0;
    }
    const uint16_t h = double_to_e((double)f, bf16);
    if (!e_is_finite(h, bf16)) *flags |= 2u;
    return h;
}

}  // namespace sqkv_cuda

#endif /* SQKV_CUDA_NUMERIC_CUH */
