// code_table_test.cc: the encoder's code tables (codec/src/encode_sparse.h) choose, for every finite
// value of the element type, exactly the code of the reference rule (spec/FORMAT.md §7.4 as
// sqkv_quant_nearest_double states it: nearest level, the lower code on a tie, the first of a run of
// equal levels). fp16 thresholds come from the levels' midpoints directly, bf16 ones from probing the
// reference; both are checked on every value, on tables of every width and both quantizers, including
// tables whose levels rounding merged (tiny steps on a large offset) and subnormal steps.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "encode_sparse.h"
#include "float16.h"
#include "quantize.h"

namespace {

bool Finite(uint16_t h, sqkv_dtype e) {
    return e == SQKV_DTYPE_FP16 ? (h & 0x7C00u) != 0x7C00u : (h & 0x7F80u) != 0x7F80u;
}

double ToDouble(uint16_t h, sqkv_dtype e) { return sqkv_e_to_double(h, e); }

// One table: every finite value of e against the reference. Returns the number of distinct codes seen
// (a table whose thresholds were all "never" would pass trivially, so the caller checks the spread).
uint32_t CheckTable(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, uint16_t s, uint16_t z) {
    const uint32_t n = 1u << bits;
    uint16_t levels[256];
    if (sqkv_quant_levels(q, bits, e, s, z, levels) != SQKV_OK) return 0;
    double d[256];
    for (uint32_t c = 0; c < n; c++) d[c] = ToDouble(levels[c], e);
    sqkv_code_table t;
    sqkv_code_table_build(levels, bits, e, &t);
    bool seen[256] = {};
    uint32_t distinct = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if (!Finite(static_cast<uint16_t>(h), e)) continue;
        const uint32_t want = sqkv_quant_nearest_double(d, n, ToDouble(static_cast<uint16_t>(h), e));
        const uint32_t got = sqkv_code_lookup(&t, static_cast<uint16_t>(h));
        EXPECT_EQ(got, want) << "value 0x" << std::hex << h << std::dec << " bits=" << bits << " q=" << q
                             << " s=0x" << std::hex << s << " z=0x" << z;
        if (got != want) return 0;
        if (!seen[got]) seen[got] = true, distinct++;
    }
    return distinct;
}

void RunTables(sqkv_dtype e, int tables, uint64_t seed) {
    std::mt19937_64 rng(seed);
    uint32_t spread = 0;
    int checked = 0;
    for (int i = 0; i < tables; i++) {
        const uint32_t bits = 1 + static_cast<uint32_t>(i % 8);
        const sqkv_quantizer q = (i / 8) % 2 ? SQKV_QUANT_ASYMMETRIC : SQKV_QUANT_SYMMETRIC;
        uint16_t s, z;
        do {
            switch (i % 3) {
            case 0: s = static_cast<uint16_t>(rng() % (e == SQKV_DTYPE_FP16 ? 0x400u : 0x80u)); break;  // subnormal steps
            case 1: s = static_cast<uint16_t>(rng() & 0x7FFFu); break;                                   // any step
            default:  // a step near the offset's ulp: levels that rounding merges
                z = static_cast<uint16_t>(rng());
                s = static_cast<uint16_t>((z & 0x7FFFu) > 0x1800u ? (z & 0x7FFFu) - 0x1800u : 1u);
                break;
            }
            if (i % 3 != 2) z = static_cast<uint16_t>(rng());
        } while (!Finite(s, e) || !Finite(z, e));
        const uint32_t distinct = CheckTable(q, bits, e, s, z);
        if (::testing::Test::HasFailure()) return;
        if (distinct) checked++, spread += distinct > 1;
    }
    EXPECT_GT(checked, tables / 3) << "too few valid tables";
    EXPECT_GT(spread, static_cast<uint32_t>(checked) / 2) << "tables should use more than one code";
}

TEST(CodeTable, Fp16ThresholdsFromMidpointsEqualTheReference) { RunTables(SQKV_DTYPE_FP16, 480, 5); }

TEST(CodeTable, Bf16ThresholdsEqualTheReference) { RunTables(SQKV_DTYPE_BF16, 96, 6); }

// Hand cases around the signed zeros: levels -s, +s have their midpoint at 0, where -0 and +0 tie
// and take the lower code; the threshold must sit at the first value above 0, not at +0.
TEST(CodeTable, ZeroMidpointTiesGoDown) {
    const uint16_t s = 0x3C00;  // 1.0
    uint16_t levels[2];
    ASSERT_EQ(sqkv_quant_levels(SQKV_QUANT_SYMMETRIC, 1, SQKV_DTYPE_FP16, s, 0, levels), SQKV_OK);
    sqkv_code_table t;
    sqkv_code_table_build(levels, 1, SQKV_DTYPE_FP16, &t);
    EXPECT_EQ(sqkv_code_lookup(&t, 0x8000), 0u);  // -0
    EXPECT_EQ(sqkv_code_lookup(&t, 0x0000), 0u);  // +0: a tie, the lower code
    EXPECT_EQ(sqkv_code_lookup(&t, 0x0001), 1u);  // the smallest positive subnormal
    EXPECT_EQ(sqkv_code_lookup(&t, 0x8001), 0u);
}

}  // namespace
