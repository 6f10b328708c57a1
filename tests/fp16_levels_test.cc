// fp16_levels_test.cc: the hardware rounding of level tables (codec/src/fp16_levels.h) gives exactly
// the software RNE_E of spec/FORMAT.md §7.4 on every table it accepts, including subnormal, tiny and
// huge levels, ties, and levels that binary32 cannot hold; and on an x86-64 machine with F16C it
// accepts every table of finite levels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

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
    uint64_t accepted = 0, affine_accepted = 0, tables = 0;
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
        uint16_t affine[256];
        if (sqkv_fp16_affine_levels()(sd, zd, symmetric, n, affine)) {
            affine_accepted++;
            for (uint32_t c = 0; c < n; c++)
                ASSERT_EQ(affine[c], sqkv_double_to_fp16(x[c])) << "affine: s=" << s << " z=" << z << " bits=" << bits
                                                                << " c=" << c;
        }
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
            // Levels binary32 cannot hold (ASYMMETRIC, large z, small s) go through round-to-odd: every
            // table of finite levels takes the hardware path.
            EXPECT_EQ(accepted, tables) << "the F16C path must take every table of finite levels";
            EXPECT_EQ(affine_accepted, tables) << "the F16C affine path must take every table of finite levels";
        }
    }
#endif
}

// Round to odd is exact only if the fix-up is right near every fp16 midpoint: values a few binary64
// ulps either side of a midpoint (and of a representable value) of every binade, both signs, and random
// binary64 values up to 2^26, each against the software RNE_E.
TEST(Fp16Levels, RoundToOddAgreesNearMidpointsAndEverywhere) {
    const sqkv_fp16_levels_fn levels = sqkv_fp16_levels();
    std::mt19937_64 rng(11);
    std::vector<double> x;
    for (uint32_t h = 0; h < 0x7C00u; h++) {  // every finite non-negative fp16 value
        const double v = sqkv_fp16_to_double(static_cast<uint16_t>(h));
        const double next = sqkv_fp16_to_double(static_cast<uint16_t>(h + 1));  // inf after the largest
        const double mid = h + 1 < 0x7C00u ? (v + next) / 2 : 65520.0;         // exact in binary64
        for (double c : {v, mid}) {
            for (int k : {0, 1, 2, 30, 40, 52}) {
                const double d = std::ldexp(c == 0 ? 1.0 : c, -k - 1) * 0x1p-10;
                for (double y : {c, c + d, c - d, std::nextafter(c, 0.0), std::nextafter(c, 1e9)}) {
                    if (std::fabs(y) < 65520.0) {
                        x.push_back(y);
                        x.push_back(-y);
                    }
                }
            }
        }
    }
    for (int i = 0; i < 200000; i++) {  // random magnitudes 2^-40 .. 2^26, random signs and mantissas
        const double m = 1.0 + static_cast<double>(rng() >> 12) * 0x1p-52;
        const double y = std::ldexp(m, static_cast<int>(rng() % 66) - 40) * ((rng() & 1) ? -1.0 : 1.0);
        x.push_back(y);
    }
    std::vector<uint16_t> got(x.size());
    if (!levels(x.data(), static_cast<uint32_t>(x.size()), got.data())) GTEST_SKIP() << "no F16C: software only";
    for (size_t i = 0; i < x.size(); i++)
        ASSERT_EQ(got[i], sqkv_double_to_fp16(x[i])) << "x=" << x[i] << " (" << std::hexfloat << x[i] << ")";
}

}  // namespace
