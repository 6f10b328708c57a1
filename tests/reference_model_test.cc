// reference_model_test.cc: the test suite's own reference model (tests/support/reference_model.*) is
// only worth something if it is right: check its roundings against independent oracles (the compiler's
// _Float16 where available, the classic bf16 bit trick, the codec's float16.c as a second opinion)
// and its quantizer against hand-worked examples of spec/FORMAT.md §7.4 and §14.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "float16.h"
#include "reference_model.h"
#include "test_util.h"

namespace {

using sqkv_test::SplitMix64;

double RandomDouble(SplitMix64 *rng) {
    // Random bits in the exponent range that matters for fp16/bf16 (and a little beyond).
    const uint64_t r = rng->Next();
    const int exponent = static_cast<int>((r >> 52) % 300) - 150;
    const double mantissa = 1.0 + static_cast<double>(r & ((uint64_t{1} << 52) - 1)) / 4503599627370496.0;
    const double x = std::ldexp(mantissa, exponent);
    return (r >> 63) ? -x : x;
}

TEST(ReferenceModel, Fp16DecodeKnownValues) {
    EXPECT_EQ(refm::Fp16ToDouble(0x3C00), 1.0);
    EXPECT_EQ(refm::Fp16ToDouble(0xC000), -2.0);
    EXPECT_EQ(refm::Fp16ToDouble(0x7BFF), 65504.0);
    EXPECT_EQ(refm::Fp16ToDouble(0x0001), std::ldexp(1.0, -24));
    EXPECT_EQ(refm::Fp16ToDouble(0x0400), std::ldexp(1.0, -14));
    EXPECT_TRUE(std::isinf(refm::Fp16ToDouble(0x7C00)));
    EXPECT_TRUE(std::isnan(refm::Fp16ToDouble(0x7E00)));
    EXPECT_TRUE(std::signbit(refm::Fp16ToDouble(0x8000)));
}

TEST(ReferenceModel, Bf16DecodeKnownValues) {
    EXPECT_EQ(refm::Bf16ToDouble(0x3F80), 1.0);
    EXPECT_EQ(refm::Bf16ToDouble(0xC040), -3.0);
    EXPECT_EQ(refm::Bf16ToDouble(0x7F7F), std::ldexp(255.0, 120));
    EXPECT_EQ(refm::Bf16ToDouble(0x0001), std::ldexp(1.0, -133));
    EXPECT_TRUE(std::isinf(refm::Bf16ToDouble(0xFF80)));
}

TEST(ReferenceModel, EveryFp16RoundTripsExactly) {
    for (uint32_t h = 0; h < 0x10000; h++) {
        const double d = refm::Fp16ToDouble(static_cast<uint16_t>(h));
        if (std::isnan(d)) continue;
        ASSERT_EQ(refm::DoubleToFp16(d), h) << std::hex << h;
    }
}

TEST(ReferenceModel, EveryBf16RoundTripsExactly) {
    for (uint32_t h = 0; h < 0x10000; h++) {
        const double d = refm::Bf16ToDouble(static_cast<uint16_t>(h));
        if (std::isnan(d)) continue;
        ASSERT_EQ(refm::DoubleToBf16(d), h) << std::hex << h;
    }
}

TEST(ReferenceModel, Fp16RoundingTiesAndLimits) {
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
    EXPECT_EQ(refm::DoubleToFp16(1.0 + std::ldexp(1.0, -11)), 0x3C00);
    // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
    EXPECT_EQ(refm::DoubleToFp16(1.0 + 3 * std::ldexp(1.0, -11)), 0x3C02);
    EXPECT_EQ(refm::DoubleToFp16(65519.99), 0x7BFF);
    EXPECT_EQ(refm::DoubleToFp16(65520.0), 0x7C00);  // halfway to 2^16: even is infinity
    EXPECT_EQ(refm::DoubleToFp16(-1e9), 0xFC00);
    EXPECT_EQ(refm::DoubleToFp16(std::ldexp(1.0, -25)), 0x0000);  // half the smallest subnormal: even 0
    EXPECT_EQ(refm::DoubleToFp16(std::ldexp(1.5, -25)), 0x0001);
    EXPECT_EQ(refm::DoubleToFp16(std::ldexp(3.0, -25)), 0x0002);  // 1.5 quanta: tie to even 2
    EXPECT_EQ(refm::DoubleToFp16(-0.0), 0x8000);
    EXPECT_EQ(refm::DoubleToFp16(std::ldexp(1023.5, -24)), 0x0400);  // subnormal rounds up to normal
}

TEST(ReferenceModel, Bf16MatchesBitTrickForEveryFloatPattern) {
    // For finite floats, RNE to bf16 is the classic (u + 0x7FFF + lsb) >> 16 on the bits.
    SplitMix64 rng(7);
    for (int i = 0; i < 2000000; i++) {
        const uint32_t u = static_cast<uint32_t>(rng.Next());
        if ((u & 0x7F800000u) == 0x7F800000u) continue;
        const uint16_t expected = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
        ASSERT_EQ(refm::DoubleToBf16(refm::Fp32ToDouble(u)), expected) << std::hex << u;
    }
}

#if defined(__FLT16_MAX__) && !defined(__clang__)
TEST(ReferenceModel, Fp16MatchesCompilerFloat16) {
    SplitMix64 rng(11);
    for (int i = 0; i < 2000000; i++) {
        const double x = RandomDouble(&rng);
        const _Float16 h = static_cast<_Float16>(x);
        uint16_t bits;
        std::memcpy(&bits, &h, sizeof bits);
        ASSERT_EQ(refm::DoubleToFp16(x), bits) << x;
    }
}
#endif

// A second opinion only: codec/src/float16.c and the reference model were written separately.
TEST(ReferenceModel, AgreesWithCodecConversions) {
    SplitMix64 rng(13);
    for (int i = 0; i < 1000000; i++) {
        const double x = RandomDouble(&rng);
        ASSERT_EQ(refm::DoubleToFp16(x), sqkv_double_to_fp16(x)) << x;
        ASSERT_EQ(refm::DoubleToBf16(x), sqkv_double_to_bf16(x)) << x;
    }
}

TEST(ReferenceModel, KeepCountFollowsSpec) {
    EXPECT_EQ(refm::KeepCount(true, 0.7, 128), 39u);  // the spec's own example
    EXPECT_EQ(refm::KeepCount(true, 0.0, 80), 80u);
    EXPECT_EQ(refm::KeepCount(true, 0.5, 80), 40u);
    EXPECT_EQ(refm::KeepCount(true, 0.999, 64), 1u);  // at least 1
    EXPECT_EQ(refm::KeepCount(true, 0.99, 1), 1u);
    EXPECT_EQ(refm::KeepCount(false, 0.7, 96), 96u);
}

TEST(ReferenceModel, KeptChannelsTiesGoToLowerChannel) {
    // |x| = 2, 3, 3, -3, 0, 1: keep 3 -> channels 1, 2, 3 (ties at 3 by channel order).
    const uint16_t row[6] = {refm::DoubleToFp16(2), refm::DoubleToFp16(3), refm::DoubleToFp16(-3),
                             refm::DoubleToFp16(3), 0x8000, refm::DoubleToFp16(1)};
    EXPECT_EQ(refm::KeptChannels(row, 6, SQKV_DTYPE_FP16, true, 0.5), (std::vector<uint32_t>{1, 2, 3}));
    // keep 2: the two lowest channels among the equal magnitudes.
    EXPECT_EQ(refm::KeptChannels(row, 6, SQKV_DTYPE_FP16, true, 0.7), (std::vector<uint32_t>{1, 2}));
    // No pruning: every nonzero (the -0 at channel 4 is a zero).
    EXPECT_EQ(refm::KeptChannels(row, 6, SQKV_DTYPE_FP16, false, 0.0), (std::vector<uint32_t>{0, 1, 2, 3, 5}));
}

TEST(ReferenceModel, SymmetricTwoBitHandWorked) {
    const sqkv_dtype e = SQKV_DTYPE_FP16;
    std::vector<uint16_t> values = {refm::DoubleToFp16(1), refm::DoubleToFp16(-3), refm::DoubleToFp16(0.5)};
    uint16_t s, z;
    refm::ChooseParams(SQKV_QUANT_SYMMETRIC, 2, e, values, &s, &z);
    EXPECT_EQ(refm::Fp16ToDouble(s), 1.0);  // m = 3, s = 3 / 3
    std::vector<uint16_t> levels;
    ASSERT_TRUE(refm::Levels(SQKV_QUANT_SYMMETRIC, 2, e, s, z, &levels));
    ASSERT_EQ(levels.size(), 4u);
    EXPECT_EQ(refm::Fp16ToDouble(levels[0]), -3.0);
    EXPECT_EQ(refm::Fp16ToDouble(levels[1]), -1.0);
    EXPECT_EQ(refm::Fp16ToDouble(levels[2]), 1.0);
    EXPECT_EQ(refm::Fp16ToDouble(levels[3]), 3.0);
    EXPECT_EQ(refm::NearestCode(levels, e, refm::DoubleToFp16(0.5)), 2u);
    EXPECT_EQ(refm::NearestCode(levels, e, refm::DoubleToFp16(2.0)), 2u);   // tie 1 vs 3: lower code
    EXPECT_EQ(refm::NearestCode(levels, e, refm::DoubleToFp16(0.0)), 1u);   // tie -1 vs 1: lower code
    EXPECT_EQ(refm::NearestCode(levels, e, refm::DoubleToFp16(100)), 3u);
}

TEST(ReferenceModel, SymmetricStepIsLoweredUntilTopLevelIsFinite) {
    // m = 65504, L = 4: s = RNE(21834.67) = 21840, but 3 * 21840 = 65520 rounds to infinity: step down.
    std::vector<uint16_t> values = {refm::DoubleToFp16(65504)};
    uint16_t s, z;
    refm::ChooseParams(SQKV_QUANT_SYMMETRIC, 2, SQKV_DTYPE_FP16, values, &s, &z);
    EXPECT_EQ(refm::Fp16ToDouble(s), 21824.0);
    EXPECT_EQ(z, 0);
}

TEST(ReferenceModel, SymmetricTinyGroupGetsSmallestPositiveStep) {
    // m = 2^-24 (smallest subnormal): m / 255 rounds to 0, so s becomes the smallest positive value.
    std::vector<uint16_t> values = {0x0001};
    uint16_t s, z;
    refm::ChooseParams(SQKV_QUANT_SYMMETRIC, 8, SQKV_DTYPE_FP16, values, &s, &z);
    EXPECT_EQ(s, 0x0001);
}

TEST(ReferenceModel, AsymmetricTwoBitHandWorked) {
    const sqkv_dtype e = SQKV_DTYPE_FP16;
    std::vector<uint16_t> values = {refm::DoubleToFp16(4), refm::DoubleToFp16(1), refm::DoubleToFp16(2.5)};
    uint16_t s, z;
    refm::ChooseParams(SQKV_QUANT_ASYMMETRIC, 2, e, values, &s, &z);
    EXPECT_EQ(refm::Fp16ToDouble(z), 1.0);
    EXPECT_EQ(refm::Fp16ToDouble(s), 1.0);
    std::vector<uint16_t> levels;
    ASSERT_TRUE(refm::Levels(SQKV_QUANT_ASYMMETRIC, 2, e, s, z, &levels));
    EXPECT_EQ(refm::Fp16ToDouble(levels[0]), 1.0);
    EXPECT_EQ(refm::Fp16ToDouble(levels[3]), 4.0);
    EXPECT_EQ(refm::NearestCode(levels, e, values[2]), 1u);  // 2.5: tie between 2 and 3 -> lower
    // A single value: s = 0, every level is z.
    std::vector<uint16_t> one = {refm::DoubleToFp16(-7)};
    refm::ChooseParams(SQKV_QUANT_ASYMMETRIC, 4, e, one, &s, &z);
    EXPECT_EQ(s, 0);
    EXPECT_EQ(refm::Fp16ToDouble(z), -7.0);
}

TEST(ReferenceModel, LevelsRejectBadParameters) {
    std::vector<uint16_t> levels;
    EXPECT_FALSE(refm::Levels(SQKV_QUANT_SYMMETRIC, 2, SQKV_DTYPE_FP16, 0x7E00, 0, &levels));  // NaN
    EXPECT_FALSE(refm::Levels(SQKV_QUANT_SYMMETRIC, 2, SQKV_DTYPE_FP16, 0xBC00, 0, &levels));  // -1
    EXPECT_FALSE(refm::Levels(SQKV_QUANT_SYMMETRIC, 2, SQKV_DTYPE_FP16, 0x8000, 0, &levels));  // -0
    EXPECT_FALSE(refm::Levels(SQKV_QUANT_SYMMETRIC, 2, SQKV_DTYPE_FP16, 0x7BFF, 0, &levels));  // 3s = inf
    EXPECT_FALSE(refm::Levels(SQKV_QUANT_ASYMMETRIC, 2, SQKV_DTYPE_FP16, 0x3C00, 0x7C00, &levels));
    EXPECT_TRUE(refm::Levels(SQKV_QUANT_SYMMETRIC, 2, SQKV_DTYPE_FP16, 0x0000, 0, &levels));  // +0 is allowed
}

TEST(ReferenceModel, MustafarLayoutOfValueTilesFollowsSpecOrder) {
    // D = 80 (2 channel blocks), 3 tokens: tile n = 64*HB*q + h*R + r with R = 3.
    const uint32_t S = 3, D = 80;
    std::vector<uint16_t> decoded(S * D, 0);
    std::vector<uint8_t> kept(S * D, 0);
    decoded[1 * D + 70] = 0x3C00;  // token 1, block 1, element 6
    kept[1 * D + 70] = 1;
    const refm::MustafarLayout m = refm::MustafarFromDecoded(SQKV_TENSOR_V, S, D, decoded.data(), kept.data());
    ASSERT_EQ(m.bitmaps.size(), 6u);
    EXPECT_EQ(static_cast<uint64_t>(m.bitmaps[1 * 3 + 1]), uint64_t{1} << 57);
    EXPECT_EQ(m.accum_counts, (std::vector<int32_t>{0, 0, 0, 0, 0, 4, 4}));
    ASSERT_EQ(m.values.size(), 16u);
    EXPECT_EQ(m.values[0], 0x3C00);
}

TEST(ReferenceModel, HalfTileGroupsFollowSpecOrder) {
    // §7.4 PER_HALF_TILE: group 2n = elements 0..31 of tile n, 2n + 1 = elements 32..63.
    // Values, head_dim 80, 2 tokens: tiles (block 0, token 0), (block 0, token 1), (block 1, token 0),
    // (block 1, token 1); block 1 holds channels 64..79, so its second halves are empty.
    const auto v = refm::GroupsOfSection(SQKV_TENSOR_V, SQKV_SCALE_PER_HALF_TILE, 2, 80, 0, 1, 0, 2);
    ASSERT_EQ(v.size(), 8u);
    EXPECT_EQ(v[0].size(), 32u);
    EXPECT_EQ(v[0][0], 0u);          // token 0, channel 0
    EXPECT_EQ(v[1][0], 32u);         // token 0, channel 32
    EXPECT_EQ(v[2][0], 80u);         // tile 1 = token 1, channel 0
    EXPECT_EQ(v[4].size(), 16u);     // tile 2 = token 0, channels 64..79
    EXPECT_EQ(v[4][0], 64u);
    EXPECT_TRUE(v[5].empty());
    EXPECT_TRUE(v[7].empty());
    // Keys, head_dim 2, 40 tokens: one chunk, tiles = channels; the second halves hold tokens 32..39.
    const auto k = refm::GroupsOfSection(SQKV_TENSOR_K, SQKV_SCALE_PER_HALF_TILE, 40, 2, 0, 1, 0, 40);
    ASSERT_EQ(k.size(), 4u);
    EXPECT_EQ(k[0].size(), 32u);
    EXPECT_EQ(k[1].size(), 8u);
    EXPECT_EQ(k[1][0], 32u * 2);     // token 32, channel 0
    EXPECT_EQ(k[2][0], 1u);          // token 0, channel 1
    // PER_HEAD over 2 heads of a section that starts at token 10 of a 50-token tensor.
    const auto h = refm::GroupsOfSection(SQKV_TENSOR_K, SQKV_SCALE_PER_HEAD, 50, 3, 1, 2, 10, 20);
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(h[0].size(), 60u);
    EXPECT_EQ(h[0][0], (50u + 10u) * 3u);  // head 1, token 10, channel 0
}

TEST(ReferenceModel, ValueTilesOfAPartialTokenBlock) {
    // §7.1: 70 tokens, head_dim 80 (HB = 2): block q = 1 has R = 6 rows; tile 64*2*1 + h*6 + r.
    const auto tiles = refm::TilesOfSection(SQKV_TENSOR_V, 70, 80, 0, 1, 0, 70);
    ASSERT_EQ(tiles.size(), 140u);
    EXPECT_EQ(tiles[128 + 1 * 6 + 2][0], (64u + 2u) * 80u + 64u);  // token 66, channel 64
    EXPECT_EQ(tiles[128 + 1 * 6 + 2][16], SIZE_MAX);              // channel 80: padding
}

TEST(ReferenceModel, KeepAllKeepsZerosAndAllZeroGroupsGetZeroParameters) {
    // §14 keep-all: zeros are kept; an all-zero SYMMETRIC group has s = +0, and every level is a zero
    // (level 0 = RNE(-(L-1) * 0) = -0), so a zero decodes to -0.
    refm::Shape shape;
    shape.heads = 1;
    shape.tokens = 2;
    shape.head_dim = 4;
    refm::Options o;
    o.prune = false;
    o.keep_all = true;
    o.bits = 3;
    o.quantizer = SQKV_QUANT_SYMMETRIC;
    o.granularity = SQKV_SCALE_PER_TILE;
    const std::vector<uint16_t> input = {0, 0, 0, 0, refm::DoubleToFp16(7), 0, refm::DoubleToFp16(-7), 0};
    const refm::Tensor t = refm::EncodeDecode(shape, o, SQKV_TENSOR_V, input);
    EXPECT_EQ(t.kept, std::vector<uint8_t>(8, 1));
    for (int i = 0; i < 4; i++) EXPECT_EQ(t.decoded[i], 0x8000) << i;
    // Token 1: s = 1, levels -7..7 odd; the zeros tie between -1 and 1: the lower code, -1.
    EXPECT_EQ(t.decoded[4], refm::DoubleToFp16(7));
    EXPECT_EQ(t.decoded[5], refm::DoubleToFp16(-1));
    EXPECT_EQ(t.decoded[6], refm::DoubleToFp16(-7));
    // Without keep-all the zeros are pruned (+0) and token 0 is an empty group.
    o.keep_all = false;
    const refm::Tensor p = refm::EncodeDecode(shape, o, SQKV_TENSOR_V, input);
    EXPECT_EQ(p.decoded[5], 0);
    EXPECT_EQ(p.kept[0], 0);
}

TEST(ReferenceModel, SectionFeaturesFollowSpec) {
    refm::Options o;
    o.bits = 2;
    o.quantizer = SQKV_QUANT_ASYMMETRIC;
    o.granularity = SQKV_SCALE_PER_TILE;
    EXPECT_EQ(refm::SectionFeatures(o), 0u);
    for (uint32_t bits : {1u, 3u, 5u, 6u, 7u}) {
        o.bits = bits;
        EXPECT_EQ(refm::SectionFeatures(o), SQKV_FEATURE_CODE_WIDTHS) << bits;
    }
    o.bits = 8;
    o.granularity = SQKV_SCALE_PER_HALF_TILE;
    o.keep_all = true;
    EXPECT_EQ(refm::SectionFeatures(o), SQKV_FEATURE_HALF_TILE_SCALES | SQKV_FEATURE_ALL_KEPT);
}

}  // namespace
