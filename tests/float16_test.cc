// Exact fp16/bf16 conversions (codec/src/float16.c) against a slow reference written with frexp/ldexp,
// on every 16-bit pattern, every midpoint between neighbours, and the overflow/underflow boundaries.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "float16.h"

namespace {

struct Format {
    int mant_bits, bias, max_exp;
    uint16_t (*round)(double);
    double (*to_double)(uint16_t);
};

const Format kFp16{10, 15, 31, sqkv_double_to_fp16, sqkv_fp16_to_double};
const Format kBf16{7, 127, 255, sqkv_double_to_bf16, sqkv_bf16_to_double};

double RefToDouble(const Format &f, uint16_t h) {
    const int exp = (h >> f.mant_bits) & f.max_exp;
    const int mant = h & ((1 << f.mant_bits) - 1);
    double v;
    if (exp == 0)
        v = std::ldexp(mant, 1 - f.bias - f.mant_bits);
    else if (exp == f.max_exp)
        v = mant ? NAN : INFINITY;
    else
        v = std::ldexp(mant + (1 << f.mant_bits), exp - f.bias - f.mant_bits);
    return (h & 0x8000) ? -v : v;
}

uint16_t MaxFinite(const Format &f) { return static_cast<uint16_t>((f.max_exp << f.mant_bits) - 1); }

void CheckFormat(const Format &f) {
    for (uint32_t h = 0; h < 65536; h++) {
        const double ref = RefToDouble(f, static_cast<uint16_t>(h));
        const double got = f.to_double(static_cast<uint16_t>(h));
        if (std::isnan(ref)) {
            ASSERT_TRUE(std::isnan(got)) << std::hex << h;
            continue;
        }
        ASSERT_EQ(std::memcmp(&ref, &got, sizeof ref), 0) << std::hex << h;
        ASSERT_EQ(f.round(got), h) << std::hex << h;  // every value rounds to itself
    }
    // Midpoints between neighbours round to the even one; a hair above or below rounds to the nearer.
    for (uint32_t h = 0; h < MaxFinite(f); h++) {
        const double a = RefToDouble(f, static_cast<uint16_t>(h));
        const double b = RefToDouble(f, static_cast<uint16_t>(h + 1));
        const double mid = (a + b) / 2;  // exact in binary64
        const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
        ASSERT_EQ(f.round(mid), even) << std::hex << h;
        ASSERT_EQ(f.round(-mid), even | 0x8000) << std::hex << h;
        ASSERT_EQ(f.round(std::nextafter(mid, 0.0)), h) << std::hex << h;
        ASSERT_EQ(f.round(std::nextafter(mid, INFINITY)), h + 1) << std::hex << h;
    }
    // Overflow: the midpoint between the largest finite value and the next power of two rounds to
    // infinity (ties to even: the largest finite value has an odd mantissa).
    const double max = RefToDouble(f, MaxFinite(f));
    const double ulp = max - RefToDouble(f, static_cast<uint16_t>(MaxFinite(f) - 1));
    const uint16_t inf = static_cast<uint16_t>(f.max_exp << f.mant_bits);
    EXPECT_EQ(f.round(max + ulp / 2), inf);
    EXPECT_EQ(f.round(std::nextafter(max + ulp / 2, 0.0)), MaxFinite(f));
    EXPECT_EQ(f.round(INFINITY), inf);
    EXPECT_EQ(f.round(-INFINITY), inf | 0x8000);
    // Underflow: half the smallest subnormal ties to zero; just above rounds up to it.
    const double tiny = RefToDouble(f, 1);
    EXPECT_EQ(f.round(tiny / 2), 0);
    EXPECT_EQ(f.round(std::nextafter(tiny / 2, 1.0)), 1);
    EXPECT_EQ(f.round(-tiny / 4), 0x8000);
    EXPECT_EQ(f.round(1e-300), 0);
    EXPECT_TRUE(std::isnan(f.to_double(f.round(NAN))));
}

TEST(Float16, Fp16ConversionsAreExactAndRoundToNearestEven) { CheckFormat(kFp16); }
TEST(Float16, Bf16ConversionsAreExactAndRoundToNearestEven) { CheckFormat(kBf16); }

}  // namespace
