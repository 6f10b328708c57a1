/* fp16_levels.c: see fp16_levels.h. */
#include "fp16_levels.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

static int levels_portable(const double *x, uint32_t n, uint16_t *out) {
    (void)x, (void)n, (void)out;
    return 0; /* the caller's exact software rounding */
}

static int affine_levels_portable(double s, double z, int symmetric, uint32_t n, uint16_t *out) {
    (void)s, (void)z, (void)symmetric, (void)n, (void)out;
    return 0;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define SQKV_F16C_INLINE __attribute__((target("avx,f16c"), always_inline)) static inline

/* One F16C conversion (binary32 -> fp16, round to nearest even, subnormals included) is RNE_E of a
 * binary64 value x when the binary32 operand is x rounded to odd: rounding to odd at 24 bits and then
 * to nearest even at 11 or fewer is one correct rounding, since 24 >= 11 + 2 (the round-to-odd
 * argument: an odd 24-bit result is never one of the 11-bit midpoints, and it lies on the same side of
 * every midpoint as x). Round to odd from the hardware's nearest-even conversion: if (float)x is not x,
 * step its magnitude back to the truncation when it rounded away from zero, then set the last bit. So
 * every table takes this path, ASYMMETRIC ones with levels that binary32 cannot hold included. Values
 * beyond LEVEL_LIMIT (never a level of fp16 parameters: |z| + 511 s < 2^26) and NaN go to software. */
#define LEVEL_LIMIT 67108864.0 /* 2^26 */

SQKV_F16C_INLINE uint16_t level_f16c(double x) {
    float f = (float)x;
    const double back = (double)f;
    if (back != x) {
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        if (back > x ? x >= 0 : x < 0) bits--; /* rounded away from zero: the truncation is one below */
        bits |= 1u;
        memcpy(&f, &bits, sizeof bits);
    }
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* Four at a time with AVX: the same steps on vectors. Returns 0 when a value is NaN or too large. */
SQKV_F16C_INLINE int round4_f16c(__m256d xd, uint16_t *out) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d ax = _mm256_andnot_pd(sign, xd);
    if (_mm256_movemask_pd(_mm256_cmp_pd(ax, _mm256_set1_pd(LEVEL_LIMIT), _CMP_LE_OQ)) != 0xF) return 0;
    const __m128 f = _mm256_cvtpd_ps(xd);
    const __m256d back = _mm256_cvtps_pd(f);
    const __m256d inexact = _mm256_cmp_pd(back, xd, _CMP_NEQ_OQ);
    const __m256d away = _mm256_cmp_pd(_mm256_andnot_pd(sign, back), ax, _CMP_GT_OQ);
    /* 64-bit lane masks to 32-bit lane masks (the low halves, in order) */
    const __m128 inexact32 = _mm_shuffle_ps(_mm256_castps256_ps128(_mm256_castpd_ps(inexact)),
                                            _mm256_extractf128_ps(_mm256_castpd_ps(inexact), 1), 0x88);
    const __m128 away32 = _mm_shuffle_ps(_mm256_castps256_ps128(_mm256_castpd_ps(away)),
                                         _mm256_extractf128_ps(_mm256_castpd_ps(away), 1), 0x88);
    __m128i bits = _mm_add_epi32(_mm_castps_si128(f), _mm_castps_si128(away32)); /* -1 where away */
    bits = _mm_or_si128(bits, _mm_and_si128(_mm_castps_si128(inexact32), _mm_set1_epi32(1)));
    const __m128i h = _mm_cvtps_ph(_mm_castsi128_ps(bits), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storel_epi64((__m128i *)(void *)out, h);
    return 1;
}

__attribute__((target("avx,f16c"))) static int levels_f16c(const double *x, uint32_t n, uint16_t *out) {
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4)
        if (!round4_f16c(_mm256_loadu_pd(x + i), out + i)) return 0;
    for (; i < n; i++) {
        if (!(x[i] >= -LEVEL_LIMIT && x[i] <= LEVEL_LIMIT)) return 0;
        out[i] = level_f16c(x[i]);
    }
    return 1;
}

/* n is a power of two >= 2: scalar for n = 2, vectors otherwise. The products are exact (at most 9 bits
 * times 11), so multiply then add rounds once, as the scalar formula does. s is the value of an fp16
 * parameter, so (float)s is exact. */
__attribute__((target("avx,f16c"))) static int affine_levels_f16c(double s, double z, int symmetric, uint32_t n,
                                                                  uint16_t *out) {
    if (n < 4) {
        double x[2];
        for (uint32_t c = 0; c < n; c++) x[c] = symmetric ? (double)((int32_t)(2 * c + 1) - (int32_t)n) * s : (double)c * s + z;
        return levels_f16c(x, n, out);
    }
    /* Levels are monotonic in c: when both ends are in range, all are. */
    const double lo = symmetric ? (1.0 - n) * s : z, hi = symmetric ? (n - 1.0) * s : (n - 1.0) * s + z;
    if (!(lo >= -LEVEL_LIMIT && lo <= LEVEL_LIMIT && hi >= -LEVEL_LIMIT && hi <= LEVEL_LIMIT)) return 0;
    if (symmetric) {
        /* (2c + 1 - n) s has at most 9 + 11 significant bits: exact in binary32, so one F16C conversion
         * of the binary32 product is the one rounding; eight at a time. */
        const __m256 sf = _mm256_set1_ps((float)s), step8 = _mm256_set1_ps(16.0f);
        __m256 cf = _mm256_setr_ps(1.0f - n, 3.0f - n, 5.0f - n, 7.0f - n, 9.0f - n, 11.0f - n, 13.0f - n, 15.0f - n);
        uint32_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(cf, sf), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm_storeu_si128((__m128i *)(void *)(out + i), h);
            cf = _mm256_add_ps(cf, step8);
        }
        if (i < n) { /* n = 4 */
            const __m128i h = _mm_cvtps_ph(_mm_mul_ps(_mm256_castps256_ps128(cf), _mm256_castps256_ps128(sf)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm_storel_epi64((__m128i *)(void *)(out + i), h);
        }
        return 1;
    }
    const __m256d step4 = _mm256_set1_pd(4.0);
    __m256d c = _mm256_setr_pd(0.0, 1.0, 2.0, 3.0);
    const __m256d sv = _mm256_set1_pd(s), zv = _mm256_set1_pd(z);
    for (uint32_t i = 0; i < n; i += 4) {
        round4_f16c(_mm256_add_pd(_mm256_mul_pd(c, sv), zv), out + i); /* in range: checked above */
        c = _mm256_add_pd(c, step4);
    }
    return 1;
}

/* F16C (CPUID.1:ECX bit 29) and AVX (bit 28) are VEX-encoded, so the operating system must also save
 * the AVX register state (OSXSAVE, ECX bit 27, and XCR0 bits 1 and 2). */
static sqkv_fp16_levels_fn choose(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return levels_portable;
    if (!(ecx & (1u << 27)) || !(ecx & (1u << 28)) || !(ecx & (1u << 29))) return levels_portable;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    return (xcr0_lo & 6u) == 6u ? levels_f16c : levels_portable;
}

static sqkv_fp16_affine_levels_fn choose_affine(void) {
    return choose() == levels_f16c ? affine_levels_f16c : affine_levels_portable;
}
#else
static sqkv_fp16_levels_fn choose(void) { return levels_portable; }
static sqkv_fp16_affine_levels_fn choose_affine(void) { return affine_levels_portable; }
#endif

/* Chosen on first use; concurrent first uses store the same pointer. */
static _Atomic(sqkv_fp16_levels_fn) chosen;

sqkv_fp16_levels_fn sqkv_fp16_levels(void) {
    sqkv_fp16_levels_fn f = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (!f) {
        f = choose();
        atomic_store_explicit(&chosen, f, memory_order_relaxed);
    }
    return f;
}

static _Atomic(sqkv_fp16_affine_levels_fn) chosen_affine;

sqkv_fp16_affine_levels_fn sqkv_fp16_affine_levels(void) {
    sqkv_fp16_affine_levels_fn f = atomic_load_explicit(&chosen_affine, memory_order_relaxed);
    if (!f) {
        f = choose_affine();
        atomic_store_explicit(&chosen_affine, f, memory_order_relaxed);
    }
    return f;
}
