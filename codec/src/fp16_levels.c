/* fp16_levels.c: see fp16_levels.h. */
#include "fp16_levels.h"

#include <stdatomic.h>
#include <stddef.h>

static int levels_portable(const double *x, uint32_t n, uint16_t *out) {
    (void)x, (void)n, (void)out;
    return 0; /* the caller's exact software rounding */
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* A binary64 value that is exactly a binary32 value rounds to fp16 the same way from either, so one
 * F16C conversion (round to nearest even, subnormals included) is RNE_E. Levels of fp16 parameters
 * almost always fit binary32 (their bits span the exponents of s and z plus a few), so the check
 * rarely sends a table back to software. */
__attribute__((target("f16c"))) static int levels_f16c(const double *x, uint32_t n, uint16_t *out) {
    for (uint32_t i = 0; i < n; i++) {
        const float f = (float)x[i];
        if ((double)f != x[i]) return 0;
        out[i] = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    return 1;
}

/* F16C (CPUID.1:ECX bit 29) is VEX-encoded, so the operating system must also save the AVX register
 * state (OSXSAVE, ECX bit 27, and XCR0 bits 1 and 2). */
static sqkv_fp16_levels_fn choose(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return levels_portable;
    if (!(ecx & (1u << 27)) || !(ecx & (1u << 29))) return levels_portable;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    return (xcr0_lo & 6u) == 6u ? levels_f16c : levels_portable;
}
#else
static sqkv_fp16_levels_fn choose(void) { return levels_portable; }
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
