// roundtrip_test.cc: encode then decode across geometries, payload widths, quantizers, scale
// granularities, section splits, input / element / output dtypes; every decoded element must equal,
// bit for bit, what the independent reference model (spec §7.4, §11, §14) computes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <string>
#include <vector>

#include "reference_model.h"
#include "roundtrip_check.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

struct Case {
    std::string name;
    sqkv_geometry geometry;
    sqkv_dtype input_dtype;
    sqkv_writer_options options;
    uint64_t seed;
};

sqkv_writer_options Opts(uint32_t bits, sqkv_quantizer q, sqkv_scale_granularity g, double sparsity = 0.7,
                         uint32_t heads_per_section = 1, uint32_t tokens_per_section = 0, uint32_t k = 4,
                         sqkv_prune_mode prune = SQKV_PRUNE_MAGNITUDE) {
    sqkv_writer_options o{};
    o.prune = prune;
    o.sparsity = sparsity;
    o.payload_bits = bits;
    o.quantizer = q;
    o.scales = g;
    o.offset_interval_log2 = k;
    o.heads_per_section = heads_per_section;
    o.tokens_per_section = tokens_per_section;
    return o;
}

const sqkv_writer_options kSym2 = Opts(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD);

std::string QuantName(const sqkv_writer_options &o) {
    const char *q = o.quantizer == SQKV_QUANT_EXACT ? "exact" : o.quantizer == SQKV_QUANT_SYMMETRIC ? "sym" : "asym";
    const char *g = o.scales == SQKV_SCALE_PER_TILE ? "tile" : o.scales == SQKV_SCALE_PER_HEAD ? "head" : "";
    return std::string(q) + std::to_string(o.payload_bits) + g;
}

std::string DtypeName(sqkv_dtype d) { return d == SQKV_DTYPE_FP16 ? "fp16" : d == SQKV_DTYPE_BF16 ? "bf16" : "fp32"; }

std::vector<Case> GeometryCases() {
    return {
        {"d64_t1_h1", MakeGeometry(1, 1, 64, 1, 0), SQKV_DTYPE_FP32, kSym2, 1},
        {"d80_t63_h2", MakeGeometry(1, 2, 80, 63, 0), SQKV_DTYPE_FP32, kSym2, 2},
        {"d96_t65_h3_l2_w5", MakeGeometry(2, 3, 96, 65, 5), SQKV_DTYPE_FP32, kSym2, 3},
        {"d128_t130_h4_l2_w16", MakeGeometry(2, 4, 128, 130, 16), SQKV_DTYPE_FP32, kSym2, 4},
        {"d256_t130_h2", MakeGeometry(1, 2, 256, 130, 0), SQKV_DTYPE_FP32, kSym2, 5},
        {"d128_t5000_h1_w100", MakeGeometry(1, 1, 128, 5000, 100), SQKV_DTYPE_FP16, kSym2, 6},
        {"d64_t40_h32_w8", MakeGeometry(1, 32, 64, 40, 8), SQKV_DTYPE_FP32, kSym2, 7},
        {"d80_t100_h5_l3_all_dense", MakeGeometry(3, 5, 80, 100, 100), SQKV_DTYPE_FP32, kSym2, 8},
        {"d96_t70_sparsity0", MakeGeometry(1, 1, 96, 70, 0), SQKV_DTYPE_FP32,
         Opts(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 0.0), 9},
        {"d64_t129_noprune", MakeGeometry(1, 2, 64, 129, 1), SQKV_DTYPE_FP32,
         Opts(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 0.0, 1, 0, 4, SQKV_PRUNE_NONE), 10},
        {"d7_t3_tiny", MakeGeometry(1, 3, 7, 3, 1), SQKV_DTYPE_FP32, Opts(4, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE), 11},
        {"d1_t2_headdim1", MakeGeometry(2, 1, 1, 2, 0), SQKV_DTYPE_FP32, kSym2, 12},
    };
}

std::vector<Case> QuantizerCases() {
    std::vector<Case> cases;
    uint64_t seed = 100;
    for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16}) {
        for (uint32_t bits : {2u, 4u, 8u})
            for (sqkv_quantizer q : {SQKV_QUANT_SYMMETRIC, SQKV_QUANT_ASYMMETRIC})
                for (sqkv_scale_granularity g : {SQKV_SCALE_PER_HEAD, SQKV_SCALE_PER_TILE}) {
                    const sqkv_writer_options o = Opts(bits, q, g, 0.6);
                    cases.push_back({QuantName(o) + "_" + DtypeName(e), MakeGeometry(1, 2, 80, 130, 10, e),
                                     SQKV_DTYPE_FP32, o, seed++});
                }
        const sqkv_writer_options exact = Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.6);
        cases.push_back({"exact16_" + DtypeName(e), MakeGeometry(1, 2, 80, 130, 10, e), SQKV_DTYPE_FP32, exact, seed++});
    }
    return cases;
}

std::vector<Case> DtypeCases() {
    std::vector<Case> cases;
    uint64_t seed = 200;
    for (sqkv_dtype in : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16, SQKV_DTYPE_FP32})
        for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16})
            for (uint32_t bits : {4u, 16u}) {
                const sqkv_writer_options o = bits == 16 ? Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE)
                                                         : Opts(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD);
                cases.push_back({"in_" + DtypeName(in) + "_e_" + DtypeName(e) + "_" + QuantName(o),
                                 MakeGeometry(1, 2, 96, 70, 3, e), in, o, seed++});
            }
    return cases;
}

std::vector<Case> SectionCases() {
    std::vector<Case> cases;
    uint64_t seed = 300;
    for (sqkv_scale_granularity g : {SQKV_SCALE_PER_HEAD, SQKV_SCALE_PER_TILE})
        for (uint32_t hps : {1u, 3u, 8u})
            for (uint32_t tps : {0u, 64u, 128u}) {
                // S = 280: sections of 64 (4 x 64 + 24) or 128 (2 x 128 + 24); 7 heads in runs of 3 or 8.
                const sqkv_writer_options o = Opts(2, SQKV_QUANT_ASYMMETRIC, g, 0.7, hps, tps);
                cases.push_back({QuantName(o) + "_hps" + std::to_string(hps) + "_tps" + std::to_string(tps),
                                 MakeGeometry(1, 7, 24, 300, 20), SQKV_DTYPE_FP32, o, seed++});
            }
    for (uint32_t k : {0u, 1u, 7u, 20u})
        cases.push_back({"offset_interval_k" + std::to_string(k), MakeGeometry(1, 2, 80, 150, 0), SQKV_DTYPE_FP32,
                         Opts(8, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 0.7, 1, 0, k), seed++});
    cases.push_back({"split_k_tensor_at_64_exact", MakeGeometry(2, 3, 40, 200, 7), SQKV_DTYPE_FP32,
                     Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.5, 2, 64), seed++});
    return cases;
}

std::vector<Case> ZstdCases() {
    // The zstd layer (codec 1) changes how bodies are stored, never what they decode to.
    std::vector<Case> cases;
    uint64_t seed = 400;
    for (uint32_t level : {1u, 19u})
        for (const sqkv_writer_options &base : {kSym2, Opts(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 0.5, 2, 64),
                                                Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.7)}) {
            sqkv_writer_options o = base;
            o.zstd_level = level;
            cases.push_back({QuantName(o) + "_zstd" + std::to_string(level), MakeGeometry(1, 3, 64, 100, 10),
                             SQKV_DTYPE_FP32, o, seed++});
        }
    return cases;
}

class RoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(RoundTrip, MatchesReferenceModelBitForBit) {
    const Case &c = GetParam();
    const Cache cache = MakeRandomCache(c.geometry, c.input_dtype, c.seed);
    EXPECT_TRUE(RoundTripMatchesReference(cache, c.options));
}

std::string CaseName(const ::testing::TestParamInfo<Case> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Geometry, RoundTrip, ::testing::ValuesIn(GeometryCases()), CaseName);
INSTANTIATE_TEST_SUITE_P(Quantizer, RoundTrip, ::testing::ValuesIn(QuantizerCases()), CaseName);
INSTANTIATE_TEST_SUITE_P(Dtypes, RoundTrip, ::testing::ValuesIn(DtypeCases()), CaseName);
INSTANTIATE_TEST_SUITE_P(Sections, RoundTrip, ::testing::ValuesIn(SectionCases()), CaseName);
INSTANTIATE_TEST_SUITE_P(Zstd, RoundTrip, ::testing::ValuesIn(ZstdCases()), CaseName);

void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

// Inputs at the edges of the element type: the largest finite values (scale steps must be lowered so
// the top level stays finite), subnormals, groups whose values are all equal, one-sided groups.
Cache ExtremeCache(sqkv_dtype e, uint64_t seed) {
    const double fp16_pool[] = {65504, -65504, 60000, -61000, 32768, 1e-7, -6e-8, 3e-5, 1, -1, 0.5, 0, -0.0, 2048};
    const double bf16_pool[] = {3.38e38, -3.38e38, 1e38, -2e37, 1e-38, -9e-41, 1e-45, 1, -1, 0.5, 0, -0.0, 7e30};
    const double *pool = e == SQKV_DTYPE_FP16 ? fp16_pool : bf16_pool;
    const size_t pool_size = e == SQKV_DTYPE_FP16 ? sizeof fp16_pool / sizeof *fp16_pool : sizeof bf16_pool / sizeof *bf16_pool;
    Cache c;
    c.geometry = MakeGeometry(1, 3, 72, 130, 2, e);
    c.input_dtype = SQKV_DTYPE_FP32;
    SplitMix64 rng(seed);
    for (int tensor = 0; tensor < 2; tensor++) {
        Bytes b(3 * 130 * 72 * 4);
        for (uint32_t h = 0; h < 3; h++)
            for (uint32_t t = 0; t < 130; t++)
                for (uint32_t d = 0; d < 72; d++) {
                    double x;
                    if (h == 1)
                        x = d < 40 ? 3.0 : 0.0;  // head 1: equal values (ASYMMETRIC s = 0)
                    else if (h == 2)
                        x = d % 2 ? -std::fabs(pool[rng.Next() % pool_size]) : 0.0;  // all negative
                    else
                        x = pool[rng.Next() % pool_size];
                    const float f = static_cast<float>(x);
                    std::memcpy(&b[((static_cast<size_t>(h) * 130 + t) * 72 + d) * 4], &f, 4);
                }
        (tensor ? c.v : c.k).push_back(b);
    }
    return c;
}

class ExtremeValues : public ::testing::TestWithParam<std::tuple<sqkv_dtype, uint32_t, sqkv_quantizer, sqkv_scale_granularity>> {};

TEST_P(ExtremeValues, MatchReferenceModel) {
    const auto [e, bits, q, g] = GetParam();
    const sqkv_writer_options o = bits == 16 ? Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.5) : Opts(bits, q, g, 0.5);
    EXPECT_TRUE(RoundTripMatchesReference(ExtremeCache(e, 17 + bits), o));
}

INSTANTIATE_TEST_SUITE_P(
    All, ExtremeValues,
    ::testing::Combine(::testing::Values(SQKV_DTYPE_FP16, SQKV_DTYPE_BF16), ::testing::Values(2u, 4u, 8u),
                       ::testing::Values(SQKV_QUANT_SYMMETRIC, SQKV_QUANT_ASYMMETRIC),
                       ::testing::Values(SQKV_SCALE_PER_HEAD, SQKV_SCALE_PER_TILE)),
    [](const auto &info) {
        const sqkv_dtype e = std::get<0>(info.param);
        const sqkv_writer_options o = Opts(std::get<1>(info.param), std::get<2>(info.param), std::get<3>(info.param));
        return QuantName(o) + "_" + DtypeName(e);
    });

TEST(ExtremeValuesExact, Fp16AndBf16MatchReferenceModel) {
    for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16})
        EXPECT_TRUE(RoundTripMatchesReference(ExtremeCache(e, 5), Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.5)))
            << DtypeName(e);
}

// EXACT is lossless with respect to the pruned tensor: every kept element decodes to its input value
// converted to E, every other sparse-region element to +0, the dense window to the input.
TEST(ExactPayload, EqualsPrunedInput) {
    const sqkv_geometry g = MakeGeometry(1, 2, 80, 90, 10, SQKV_DTYPE_FP16);
    const Cache cache = MakeRandomCache(g, SQKV_DTYPE_FP16, 77);
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.7), &file), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    Bytes out;
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP16, &out), SQKV_OK);
    const uint16_t *in = reinterpret_cast<const uint16_t *>(cache.v[0].data());
    const uint16_t *dec = reinterpret_cast<const uint16_t *>(out.data());
    const uint32_t keep = refm::KeepCount(true, 0.7, 80);
    for (uint32_t h = 0; h < 2; h++)
        for (uint32_t t = 0; t < 90; t++) {
            uint32_t nonzero_in = 0, kept = 0;
            for (uint32_t d = 0; d < 80; d++) {
                const size_t i = (static_cast<size_t>(h) * 90 + t) * 80 + d;
                nonzero_in += (in[i] & 0x7FFF) != 0;
                if (t >= 80) {
                    ASSERT_EQ(dec[i], in[i]) << "dense window h" << h << " t" << t << " d" << d;
                } else if (dec[i] != 0) {
                    ASSERT_EQ(dec[i], in[i]) << "kept element h" << h << " t" << t << " d" << d;
                    kept++;
                }
            }
            if (t < 80) {
                ASSERT_EQ(kept, std::min(keep, nonzero_in)) << "h" << h << " t" << t;
            }
        }
}

// §11: bf16 values beyond fp16's range cannot be decoded to fp16 (VALUE), but decode to fp32 and bf16.
TEST(OutputDtype, Bf16BeyondFp16RangeIsValueError) {
    sqkv_geometry g = MakeGeometry(1, 1, 64, 4, 2, SQKV_DTYPE_BF16);
    Cache cache;
    cache.geometry = g;
    cache.input_dtype = SQKV_DTYPE_FP32;
    std::vector<float> k(4 * 64, 1.0f), v(4 * 64, 1.0f);
    k[3 * 64 + 5] = 1e6f;  // dense window
    v[0] = 1e30f;          // sparse, EXACT keeps it
    cache.k.emplace_back(reinterpret_cast<uint8_t *>(k.data()), reinterpret_cast<uint8_t *>(k.data() + k.size()));
    cache.v.emplace_back(reinterpret_cast<uint8_t *>(v.data()), reinterpret_cast<uint8_t *>(v.data() + v.size()));
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.5), &file), SQKV_OK);
    ReaderPtr r;
    Bytes out;
    for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
        ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
        EXPECT_EQ(DecodeTensor(r.get(), 0, t, SQKV_DTYPE_FP32, &out), SQKV_OK);
        EXPECT_EQ(DecodeTensor(r.get(), 0, t, SQKV_DTYPE_BF16, &out), SQKV_OK);
        EXPECT_EQ(DecodeTensor(r.get(), 0, t, SQKV_DTYPE_FP16, &out), SQKV_ERR_VALUE);
        EXPECT_EQ(DecodeTensor(r.get(), 0, t, SQKV_DTYPE_FP32, &out), SQKV_ERR_VALUE) << "errors are sticky";
    }
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP32, &out), SQKV_OK);
    float first;
    std::memcpy(&first, out.data(), 4);
    EXPECT_EQ(first, static_cast<float>(refm::Bf16ToDouble(refm::DoubleToBf16(1e30))));
}

// The dense window is stored exactly, including signed zeros and subnormals.
TEST(DenseWindow, ExactIncludingSignedZerosAndSubnormals) {
    const sqkv_geometry g = MakeGeometry(1, 2, 64, 10, 10, SQKV_DTYPE_FP16);
    Cache cache;
    cache.geometry = g;
    cache.input_dtype = SQKV_DTYPE_FP16;
    SplitMix64 rng(3);
    for (int i = 0; i < 2; i++) {
        Bytes b(2 * 10 * 64 * 2);
        for (size_t j = 0; j < b.size(); j += 2) {
            uint16_t h = static_cast<uint16_t>(rng.Next());
            if ((h & 0x7C00) == 0x7C00) h &= 0x83FF;  // no inf/NaN: make it a subnormal
            if (j % 64 == 0) h = 0x8000;              // -0
            b[j] = static_cast<uint8_t>(h);
            b[j + 1] = static_cast<uint8_t>(h >> 8);
        }
        (i ? cache.v : cache.k).push_back(b);
    }
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, kSym2, &file), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    Bytes out;
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP16, &out), SQKV_OK);
    EXPECT_EQ(out, cache.k[0]);
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP16, &out), SQKV_OK);
    EXPECT_EQ(out, cache.v[0]);
}

}  // namespace
