// pruning_test.cc: the reference encoder's pruning rule (spec/FORMAT.md §14): per head and token keep
// the D - floor(sparsity * D) largest |x| (at least 1), compared as E values after conversion, ties to
// the lower channel, zeros never kept, sparsity 0 / no pruning keeps every nonzero. Observed through
// EXACT payloads, where a kept element decodes to its own value and a pruned one to +0.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "reference_model.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

sqkv_writer_options ExactOptions(double sparsity, sqkv_prune_mode prune = SQKV_PRUNE_MAGNITUDE) {
    sqkv_writer_options o{};
    o.prune = prune;
    o.sparsity = sparsity;
    o.payload_bits = 16;
    o.quantizer = SQKV_QUANT_EXACT;
    o.scales = SQKV_SCALE_NONE;
    o.offset_interval_log2 = 4;
    o.heads_per_section = 1;
    o.tokens_per_section = 0;
    return o;
}

// Encodes rows (one head, rows.size() tokens, D channels, fp32) as both K and V; returns, per tensor
// and row, the channels whose decoded value is nonzero, and checks they decode to the input in E.
std::vector<std::vector<uint32_t>> KeptByCodec(const std::vector<std::vector<float>> &rows, double sparsity,
                                               sqkv_prune_mode prune = SQKV_PRUNE_MAGNITUDE,
                                               sqkv_tensor tensor = SQKV_TENSOR_K) {
    const uint32_t T = static_cast<uint32_t>(rows.size()), D = static_cast<uint32_t>(rows[0].size());
    Cache c;
    c.geometry = MakeGeometry(1, 1, D, T, 0, SQKV_DTYPE_FP16);
    c.input_dtype = SQKV_DTYPE_FP32;
    Bytes b(static_cast<size_t>(T) * D * 4);
    for (uint32_t t = 0; t < T; t++) std::memcpy(&b[static_cast<size_t>(t) * D * 4], rows[t].data(), D * 4);
    c.k.push_back(b);
    c.v.push_back(b);
    Bytes file, out;
    std::string detail;
    EXPECT_EQ(EncodeCache(c, ExactOptions(sparsity, prune), &file, &detail), SQKV_OK) << detail;
    ReaderPtr r;
    EXPECT_EQ(OpenMemory(file, &r), SQKV_OK);
    std::vector<std::vector<uint32_t>> kept(T);
    if (!r) return kept;
    EXPECT_EQ(DecodeTensor(r.get(), 0, tensor, SQKV_DTYPE_FP32, &out), SQKV_OK);
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t d = 0; d < D; d++) {
            float f;
            std::memcpy(&f, &out[(static_cast<size_t>(t) * D + d) * 4], 4);
            if (f != 0.0f) {
                kept[t].push_back(d);
                EXPECT_EQ(f, static_cast<float>(refm::Fp16ToDouble(refm::DoubleToFp16(rows[t][d]))));
            } else {
                uint32_t bits;
                std::memcpy(&bits, &f, 4);
                EXPECT_EQ(bits, 0u) << "pruned element must decode to +0.0 (t " << t << ", d " << d << ")";
            }
        }
    return kept;
}

std::vector<float> Row(std::initializer_list<float> v) { return std::vector<float>(v); }

TEST(Pruning, KeepCountPerRowMatchesSpecFormula) {
    SplitMix64 rng(5);
    for (uint32_t D : {64u, 80u, 128u})
        for (double sparsity : {0.3, 0.5, 0.7, 0.9}) {
            std::vector<std::vector<float>> rows(5, std::vector<float>(D));
            for (auto &row : rows)
                for (float &x : row) x = static_cast<float>(static_cast<int>(rng.Next() % 2001) - 1000) / 64.0f;
            const auto kept = KeptByCodec(rows, sparsity);
            for (size_t t = 0; t < rows.size(); t++) {
                std::vector<uint16_t> e(D);
                uint32_t nonzero = 0;
                for (uint32_t d = 0; d < D; d++) {
                    e[d] = refm::DoubleToFp16(rows[t][d]);
                    nonzero += !refm::EIsZero(e[d]);
                }
                const uint32_t keep = static_cast<uint32_t>(D - std::floor(sparsity * D));
                EXPECT_EQ(kept[t].size(), std::min(keep, nonzero)) << "D " << D << " sparsity " << sparsity;
                EXPECT_EQ(kept[t], refm::KeptChannels(e.data(), D, SQKV_DTYPE_FP16, true, sparsity))
                    << "D " << D << " sparsity " << sparsity << " row " << t;
            }
        }
}

TEST(Pruning, SpecExampleKeeps39Of128) {
    std::vector<std::vector<float>> rows(1, std::vector<float>(128));
    for (uint32_t d = 0; d < 128; d++) rows[0][d] = static_cast<float>(d + 1);
    const auto kept = KeptByCodec(rows, 0.7);
    ASSERT_EQ(kept[0].size(), 39u);
    EXPECT_EQ(kept[0].front(), 89u);  // the 39 largest: channels 89..127
    EXPECT_EQ(kept[0].back(), 127u);
}

TEST(Pruning, EqualMagnitudesGoToLowerChannel) {
    // Six elements of |x| = 2 with mixed signs; D = 8 at sparsity 0.5 keeps 4: the four lowest channels
    // among the equal magnitudes win, whatever their sign.
    const auto kept = KeptByCodec({Row({-2, 2, 1, -2, 2, -2, 0.5f, 2})}, 0.5);
    EXPECT_EQ(kept[0], (std::vector<uint32_t>{0, 1, 3, 4}));
    // For values: the same rule (the tensor does not matter).
    const auto kept_v = KeptByCodec({Row({-2, 2, 1, -2, 2, -2, 0.5f, 2})}, 0.5, SQKV_PRUNE_MAGNITUDE, SQKV_TENSOR_V);
    EXPECT_EQ(kept_v[0], (std::vector<uint32_t>{0, 1, 3, 4}));
}

TEST(Pruning, MagnitudesAreComparedAfterConversionToElementType) {
    // 1.0001 and 1.0002 both round to fp16 1.0: equal magnitudes, so the lower channel wins even though
    // channel 1 is larger in fp32.
    const auto kept = KeptByCodec({Row({0.25f, 1.0001f, 1.0002f, 0.5f})}, 0.75);
    EXPECT_EQ(kept[0], (std::vector<uint32_t>{1}));
    const auto kept2 = KeptByCodec({Row({0.25f, 1.0002f, 1.0001f, 0.5f})}, 0.75);
    EXPECT_EQ(kept2[0], (std::vector<uint32_t>{1}));
}

TEST(Pruning, ZerosAreNeverKept) {
    // keep = 8 - floor(0.25 * 8) = 6 but only 3 nonzeros (the -0, and 1e-9 that rounds to fp16 0).
    const auto kept = KeptByCodec({Row({0, -0.0f, 3, 1e-9f, 0, -1, 0, 0.5f})}, 0.25);
    EXPECT_EQ(kept[0], (std::vector<uint32_t>{2, 5, 7}));
    // An all-zero row keeps nothing even though keep >= 1.
    const auto none = KeptByCodec({Row({0, 0, -0.0f, 0})}, 0.9);
    EXPECT_TRUE(none[0].empty());
}

TEST(Pruning, KeepsAtLeastOne) {
    const auto kept = KeptByCodec({Row({1, -4, 3, 2, 4})}, 0.99);  // 5 - floor(4.95) = 1
    EXPECT_EQ(kept[0], (std::vector<uint32_t>{1}));
}

TEST(Pruning, SparsityZeroKeepsEveryNonzero) {
    const auto kept = KeptByCodec({Row({1, 0, -3, 2e-8f, 0.001f, -0.0f, 7, 8})}, 0.0);
    // 2e-8 is below half the smallest fp16 subnormal: it becomes 0 in E and is not kept.
    std::vector<uint32_t> expected;
    const float row[8] = {1, 0, -3, 2e-8f, 0.001f, -0.0f, 7, 8};
    for (uint32_t d = 0; d < 8; d++)
        if (!refm::EIsZero(refm::DoubleToFp16(row[d]))) expected.push_back(d);
    EXPECT_EQ(kept[0], expected);
}

TEST(Pruning, PruneNoneKeepsEveryNonzeroWhateverTheSparsity) {
    std::vector<std::vector<float>> rows(3, std::vector<float>(96));
    SplitMix64 rng(8);
    for (auto &row : rows)
        for (float &x : row) x = (rng.Next() % 5 == 0) ? 0.0f : static_cast<float>(rng.Next() % 1000) / 7.0f + 0.25f;
    const auto kept = KeptByCodec(rows, 0.0, SQKV_PRUNE_NONE);
    for (size_t t = 0; t < rows.size(); t++) {
        size_t nonzero = 0;
        for (float x : rows[t]) nonzero += x != 0.0f;
        EXPECT_EQ(kept[t].size(), nonzero);
    }
}

}  // namespace
