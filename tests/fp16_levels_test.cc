// fp16_levels_test.cc: the hardware rounding of level tables (codec/src/fp16_levels.h) gives exactly
// the software RNE_E of spec/FORMAT.md §7.4 on every table it accepts, including subnormal, tiny and
// huge levels and ties; and on an x86-64 machine with F16C it does accept typical tables.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "float16.h"
#include "fp16_levels.h"

namespace {

bool Finite(uint16_t h) { return (h & 0x7C00u) != 0x7C00u; }

TEST(Fp16Levels, HardwareRoundingEqualsTheSpecsRounding) {
    const sqkv_fp16_levels_fn levels = sqkv_fp16_levels();
    ASSERT_NE(levels, nullptr);
    std::mt19937_64 rng(7);
    uint64_t accepted = 0, tables = 0;
    for (int iter = 0; iter < 200000; iter++) {
        // Any finite s >= 0 and z; every width; both quantizers' formulas.
        uint16_t s, z;
        do s = static_cast<uint16_t>(rng() & 0x7FFFu); while (!Finite(s));
        do z = static_cast<uint16_t>(rng()); while (!Finite(z));
        if (iter % 4 == 0) s = static_cast<uint16_t>(rng() % 0x400u);  // subnormal steps
        const uint32_t bits = 1 + static_cast<uint32_t>(rng() % 8), n = 1u << bits;
        const bool symmetric = iter % 2 == 0;
        const double sd = sqkv_fp16_to_double(s), zd = sqkv_fp16_to_double(z);
        double x[256];
        for (uint32_t c = 0; c < n; c++)
            x[c] = symmetric ? static_cast<double>(static_cast<int32_t>(2 * c + 1) - static_cast<int32_t>(n)) * sd
                             : static_cast<double>(c) * sd + zd;
        bool all_finite = true;
        for (uint32_t c = 0; c < n; c++) all_finite = all_finite && Finite(sqkv_double_to_fp16(x[c]));
        if (!all_finite) continue;  // a table with an infinite level is never built (§7.4 SCALE)
        tables++;
        uint16_t got[256];
        if (!levels(x, n, got)) continue;
        accepted++;
        for (uint32_t c = 0; c < n; c++)
            ASSERT_EQ(got[c], sqkv_double_to_fp16(x[c])) << "s=" << s << " z=" << z << " bits=" << bits << " c=" << c;
    }
    ASSERT_GT(tables, 100000u);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    // F16C (CPUID.1:ECX bit 29) with the AVX state saved by the OS (OSXSAVE, bit 27): the library must
    // then take the hardware path for most tables. (clang's __builtin_cpu_supports lacks "f16c".)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) && (ecx & (1u << 27))) {
        unsigned xcr0_lo = 0, xcr0_hi = 0;
        __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
        if ((xcr0_lo & 6u) == 6u) {
            EXPECT_GT(accepted, tables / 4) << "the F16C path should take most tables";
        }
    }
#endif
}

}  // namespace
