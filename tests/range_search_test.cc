// range_search_test.cc: the writer's range search option (spec/FORMAT.md §14, sqkv_writer_options
// .range_search). Each group keeps the candidate with the least squared error and candidate 0 is the
// plain rule, so over any file the total squared error of the kept values can only go down; the
// pruning is the same, so the zeros are the same. The files must stay valid for any decoder.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "float16.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

struct Setting {
    uint32_t bits;
    sqkv_quantizer quantizer;
    sqkv_scale_granularity scales;
    sqkv_prune_mode prune;
    const char *name;
};

// Sum over every element of every layer and tensor of (decoded - input)^2, inputs given in fp16.
double SquaredError(const Cache &cache, const Bytes &file) {
    ReaderPtr r;
    EXPECT_EQ(OpenMemory(file, &r), SQKV_OK);
    if (!r) return -1;
    double total = 0;
    const sqkv_geometry &g = cache.geometry;
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (int t = 0; t < 2; t++) {
            Bytes out;
            EXPECT_EQ(DecodeTensor(r.get(), l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP32, &out), SQKV_OK);
            const Bytes &in = t ? cache.v[l] : cache.k[l];
            const size_t n = in.size() / 2;
            EXPECT_EQ(out.size(), n * 4);
            for (size_t i = 0; i < n && out.size() == n * 4; i++) {
                uint16_t h;
                float x;
                std::memcpy(&h, &in[2 * i], 2);
                std::memcpy(&x, &out[4 * i], 4);
                const double d = x - sqkv_e_to_double(h, SQKV_DTYPE_FP16);
                total += d * d;
            }
        }
    return total;
}

TEST(RangeSearch, NeverWorseAndBetterAtTwoBits) {
    const Setting settings[] = {
        {2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE, "2-bit asym tile"},
        {2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, SQKV_PRUNE_MAGNITUDE, "2-bit sym head"},
        {3, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL, "3-bit asym half-tile keep-all"},
        {4, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_NONE, "4-bit sym tile"},
        {8, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, SQKV_PRUNE_MAGNITUDE, "8-bit asym head"},
    };
    const Cache cache = MakeRandomCache(MakeGeometry(2, 2, 80, 150, 7), SQKV_DTYPE_FP16, 11);
    for (const Setting &s : settings) {
        sqkv_writer_options o;
        sqkv_writer_options_default(&o);
        o.payload_bits = s.bits;
        o.quantizer = s.quantizer;
        o.scales = s.scales;
        o.prune = s.prune;
        o.sparsity = 0.6;
        Bytes plain, searched;
        ASSERT_EQ(EncodeCache(cache, o, &plain), SQKV_OK) << s.name;
        o.range_search = SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS;
        ASSERT_EQ(EncodeCache(cache, o, &searched), SQKV_OK) << s.name;
        ASSERT_EQ(ErrName(DecodeEverything(searched)), ErrName(SQKV_OK)) << s.name;
        // Parameters change, sizes do not: the streams' lengths depend only on the bitmaps.
        EXPECT_EQ(plain.size(), searched.size()) << s.name;
        const double e_plain = SquaredError(cache, plain), e_searched = SquaredError(cache, searched);
        EXPECT_LE(e_searched, e_plain) << s.name;
        if (s.bits == 2) {
            EXPECT_LT(e_searched, 0.97 * e_plain) << s.name << ": clipping should pay at 2 bits";
        }
    }
}

TEST(RangeSearch, OffMeansTheDefaultBytesAndBadValuesAreRefused) {
    const Cache cache = MakeRandomCache(MakeGeometry(1, 2, 64, 100, 0), SQKV_DTYPE_FP16, 3);
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    EXPECT_EQ(o.range_search, 0u);
    Bytes a, b;
    ASSERT_EQ(EncodeCache(cache, o, &a), SQKV_OK);
    o.range_search = SQKV_RANGE_SEARCH_VALUES;
    ASSERT_EQ(EncodeCache(cache, o, &b), SQKV_OK);
    EXPECT_NE(a, b);
    // Values only: every K section is byte for byte the plain one.
    ReaderPtr ra, rb;
    ASSERT_EQ(OpenMemory(a, &ra), SQKV_OK);
    ASSERT_EQ(OpenMemory(b, &rb), SQKV_OK);
    Bytes ka, kb, va, vb;
    ASSERT_EQ(DecodeTensor(ra.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP16, &ka), SQKV_OK);
    ASSERT_EQ(DecodeTensor(rb.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP16, &kb), SQKV_OK);
    ASSERT_EQ(DecodeTensor(ra.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP16, &va), SQKV_OK);
    ASSERT_EQ(DecodeTensor(rb.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP16, &vb), SQKV_OK);
    EXPECT_EQ(ka, kb);
    EXPECT_NE(va, vb);
    o.range_search = 4;
    sqkv_writer *w = nullptr;
    EXPECT_EQ(sqkv_writer_create(&cache.geometry, &o, &w), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(w, nullptr);
}

}  // namespace
