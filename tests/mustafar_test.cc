// mustafar_test.cc: sqkv_reader_decode_mustafar exports Mustafar's in-memory layout (bitmaps,
// accum_counts, packed values with tail slack). Checked against a layout computed here from the
// decoded tensor and the reference model's kept set (reference_model.h: MustafarFromDecoded).
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "reference_model.h"
#include "sqkv_file.h"
#include "test_util.h"

extern "C" {
#include "reader_internal.h"
}

namespace {

using namespace sqkv_test;

struct MustafarCase {
    std::string name;
    sqkv_geometry geometry;
    sqkv_writer_options options;
};

// GoogleTest would otherwise print the case byte by byte, padding included, and valgrind reports those
// uninitialised padding bytes as a use of uninitialised memory.
void PrintTo(const MustafarCase &c, std::ostream *os) { *os << c.name; }

sqkv_writer_options Opts(uint32_t bits, sqkv_quantizer q, sqkv_scale_granularity g, uint32_t tps = 0,
                         uint32_t hps = 1) {
    sqkv_writer_options o{};
    o.prune = SQKV_PRUNE_MAGNITUDE;
    o.sparsity = 0.7;
    o.payload_bits = bits;
    o.quantizer = q;
    o.scales = g;
    o.offset_interval_log2 = 4;
    o.heads_per_section = hps;
    o.tokens_per_section = tps;
    return o;
}

class Mustafar : public ::testing::TestWithParam<MustafarCase> {};

TEST_P(Mustafar, LayoutMatchesDecodedTensor) {
    const MustafarCase &c = GetParam();
    const Cache cache = MakeRandomCache(c.geometry, SQKV_DTYPE_FP32, 31);
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, c.options, &file), SQKV_OK);
    const ReferenceCache ref = ReferenceFor(cache, c.options);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    const sqkv_geometry &g = c.geometry;
    const uint32_t S = g.n_tokens - g.dense_window;
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            Bytes decoded;
            ASSERT_EQ(DecodeTensor(r.get(), l, t, g.value_dtype, &decoded), SQKV_OK);
            const uint16_t *dec = reinterpret_cast<const uint16_t *>(decoded.data());
            const refm::Tensor &rt = t == SQKV_TENSOR_K ? ref.k[l] : ref.v[l];
            for (uint32_t h = 0; h < g.n_kv_heads; h++) {
                const size_t head_at = static_cast<size_t>(h) * g.n_tokens * g.head_dim;
                // Kept set from the reference model (a kept ASYMMETRIC element may decode to 0); values
                // from the decoder's own output.
                const refm::MustafarLayout expected =
                    refm::MustafarFromDecoded(t, S, g.head_dim, dec + head_at, rt.kept.data() + head_at);
                sqkv_mustafar_sizes sizes{};
                ASSERT_EQ(sqkv_reader_mustafar_sizes(r.get(), l, t, h, &sizes), SQKV_OK);
                ASSERT_EQ(sizes.n_tiles, expected.bitmaps.size());
                ASSERT_EQ(sizes.value_count, expected.values.size());
                std::vector<int64_t> bitmaps(sizes.n_tiles, 0x5555);
                std::vector<int32_t> accum(sizes.n_tiles + 1, -7);
                std::vector<uint16_t> values(sizes.value_count, 0xAAAA);
                ASSERT_EQ(sqkv_reader_decode_mustafar(r.get(), l, t, h, bitmaps.data(), accum.data(), values.data(),
                                                      &sizes),
                          SQKV_OK);
                EXPECT_EQ(bitmaps, expected.bitmaps) << "layer " << l << " tensor " << t << " head " << h;
                EXPECT_EQ(accum, expected.accum_counts) << "layer " << l << " tensor " << t << " head " << h;
                EXPECT_EQ(values, expected.values) << "layer " << l << " tensor " << t << " head " << h;
            }
        }
}

std::vector<MustafarCase> Cases() {
    return {
        {"d128_t256_sym2", MakeGeometry(1, 2, 128, 256, 0), Opts(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD)},
        {"d128_t300_w44_exact", MakeGeometry(1, 1, 128, 300, 44), Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE)},
        {"d80_t70_asym4_tile", MakeGeometry(2, 1, 80, 70, 0), Opts(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE)},
        {"d64_t200_split64_hps2", MakeGeometry(1, 3, 64, 200, 3),
         Opts(8, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 64, 2)},
        {"d96_t5_bf16", MakeGeometry(1, 1, 96, 5, 1, SQKV_DTYPE_BF16), Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE)},
        {"d40_t130_asym2_bf16", MakeGeometry(1, 2, 40, 130, 2, SQKV_DTYPE_BF16),
         Opts(2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, 128)},
    };
}

INSTANTIATE_TEST_SUITE_P(All, Mustafar, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<MustafarCase> &info) { return info.param.name; });

TEST(MustafarErrors, EmptySparseRegionIsUnsupported) {
    const Cache cache = MakeRandomCache(MakeGeometry(1, 1, 64, 8, 8), SQKV_DTYPE_FP32, 1);
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, Opts(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD), &file), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    sqkv_mustafar_sizes sizes{};
    EXPECT_EQ(sqkv_reader_mustafar_sizes(r.get(), 0, SQKV_TENSOR_K, 0, &sizes), SQKV_ERR_UNSUPPORTED);
}

TEST(MustafarErrors, BadCoordinatesAndSmallBuffers) {
    const Cache cache = MakeRandomCache(MakeGeometry(1, 2, 64, 64, 0), SQKV_DTYPE_FP32, 1);
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, Opts(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD), &file), SQKV_OK);
    ReaderPtr r;
    sqkv_mustafar_sizes sizes{};
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_mustafar_sizes(r.get(), 1, SQKV_TENSOR_K, 0, &sizes), SQKV_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_mustafar_sizes(r.get(), 0, SQKV_TENSOR_K, 2, &sizes), SQKV_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    ASSERT_EQ(sqkv_reader_mustafar_sizes(r.get(), 0, SQKV_TENSOR_V, 1, &sizes), SQKV_OK);
    std::vector<int64_t> bitmaps(sizes.n_tiles);
    std::vector<int32_t> accum(sizes.n_tiles + 1);
    std::vector<uint16_t> values(sizes.value_count);
    sqkv_mustafar_sizes smaller = sizes;
    smaller.value_count -= 1;
    EXPECT_EQ(sqkv_reader_decode_mustafar(r.get(), 0, SQKV_TENSOR_V, 1, bitmaps.data(), accum.data(), values.data(),
                                          &smaller),
              SQKV_ERR_BUFFER_TOO_SMALL);
}

TEST(MustafarErrors, SplitNotOnA64TokenBoundaryIsUnsupported) {
    // The reference encoder splits only at multiples of 64; other encoders may split anywhere (§6 allows
    // any grid). Build such a valid file from two encodings: tokens [0, 40) and [40, 100), relabelled.
    const sqkv_writer_options o = Opts(4, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD);
    const Cache whole = MakeRandomCache(MakeGeometry(1, 1, 64, 100, 0), SQKV_DTYPE_FP32, 1);
    Cache first = whole, second = whole;
    first.geometry.n_tokens = 40;
    second.geometry.n_tokens = 60;
    for (int t = 0; t < 2; t++) {
        const Bytes &src = t ? whole.v[0] : whole.k[0];
        (t ? first.v[0] : first.k[0]) = Bytes(src.begin(), src.begin() + 40 * 64 * 4);
        (t ? second.v[0] : second.k[0]) = Bytes(src.begin() + 40 * 64 * 4, src.end());
    }
    Bytes file_whole, file_first, file_second;
    ASSERT_EQ(EncodeCache(whole, o, &file_whole), SQKV_OK);
    ASSERT_EQ(EncodeCache(first, o, &file_first), SQKV_OK);
    ASSERT_EQ(EncodeCache(second, o, &file_second), SQKV_OK);
    RawFile raw_whole, raw_first, raw_second;
    ASSERT_TRUE(ParseRaw(file_whole, &raw_whole));
    ASSERT_TRUE(ParseRaw(file_first, &raw_first));
    ASSERT_TRUE(ParseRaw(file_second, &raw_second));
    ASSERT_EQ(raw_first.sections.size(), 2u);  // K, V
    RawFile crafted = raw_whole;
    crafted.sections.clear();
    for (size_t i = 0; i < 2; i++) {
        crafted.sections.push_back(raw_first.sections[i]);
        RawSection later = raw_second.sections[i];
        Put32(&later.header, sec::kTokenStart, 40);
        crafted.sections.push_back(later);
    }
    const Bytes file = Assemble(crafted);
    ASSERT_EQ(DecodeEverything(file), SQKV_OK) << "a split at token 40 is a valid file";
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    sqkv_mustafar_sizes sizes{};
    EXPECT_EQ(sqkv_reader_mustafar_sizes(r.get(), 0, SQKV_TENSOR_K, 0, &sizes), SQKV_ERR_UNSUPPORTED);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);  // errors are sticky
    EXPECT_EQ(sqkv_reader_mustafar_sizes(r.get(), 0, SQKV_TENSOR_V, 0, &sizes), SQKV_ERR_UNSUPPORTED);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    // The decoded tensor is the two halves' decodings side by side.
    ReaderPtr r1, r2;
    ASSERT_EQ(OpenMemory(file_first, &r1), SQKV_OK);
    ASSERT_EQ(OpenMemory(file_second, &r2), SQKV_OK);
    Bytes out, a, b;
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP32, &out), SQKV_OK);
    ASSERT_EQ(DecodeTensor(r1.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP32, &a), SQKV_OK);
    ASSERT_EQ(DecodeTensor(r2.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP32, &b), SQKV_OK);
    a.insert(a.end(), b.begin(), b.end());
    EXPECT_EQ(out, a);
}

}  // namespace

// sqkv_reader_mustafar_sizes_shared (reader_internal.h; the CUDA decoder asks it so that a zstd section
// is decompressed once for all its heads, not once per head): the sizes of the asked head and of every
// head of its head range equal sqkv_reader_mustafar_sizes head by head; other heads are {0, 0}. Several
// heads per section, token splits, a dense window, with and without the zstd layer.
TEST(MustafarShared, HeadRangeSizesMatchHeadByHead) {
    for (uint32_t hps : {1u, 2u, 5u})
        for (uint32_t zstd : {0u, 3u})
            for (uint32_t tps : {0u, 64u}) {
                const sqkv_geometry g = MakeGeometry(2, 5, 64, 200, 3);
                sqkv_writer_options o = Opts(2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, tps, hps);
                o.zstd_level = zstd;
                const Cache cache = MakeRandomCache(g, SQKV_DTYPE_FP32, 7 + hps + zstd + tps);
                Bytes file;
                ASSERT_EQ(EncodeCache(cache, o, &file), SQKV_OK);
                ReaderPtr shared, single;
                ASSERT_EQ(OpenMemory(file, &shared), SQKV_OK);
                ASSERT_EQ(OpenMemory(file, &single), SQKV_OK);
                for (uint32_t l = 0; l < g.n_layers; l++)
                    for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V})
                        for (uint32_t h = 0; h < g.n_kv_heads; h++) {
                            std::vector<sqkv_mustafar_sizes> all(g.n_kv_heads, sqkv_mustafar_sizes{99, 99});
                            ASSERT_EQ(sqkv_reader_mustafar_sizes_shared(shared.get(), l, t, h, all.data()), SQKV_OK);
                            const uint32_t h0 = h / hps * hps;
                            for (uint32_t h2 = 0; h2 < g.n_kv_heads; h2++) {
                                const std::string where = "hps " + std::to_string(hps) + " zstd " +
                                                          std::to_string(zstd) + " tps " + std::to_string(tps) +
                                                          " layer " + std::to_string(l) + " tensor " +
                                                          std::to_string(t) + " head " + std::to_string(h) +
                                                          " of " + std::to_string(h2);
                                if (h2 >= h0 && h2 < h0 + hps) {
                                    sqkv_mustafar_sizes want{};
                                    ASSERT_EQ(sqkv_reader_mustafar_sizes(single.get(), l, t, h2, &want), SQKV_OK);
                                    EXPECT_EQ(all[h2].n_tiles, want.n_tiles) << where;
                                    EXPECT_EQ(all[h2].value_count, want.value_count) << where;
                                    EXPECT_GT(all[h2].n_tiles, 0u) << where;
                                } else {
                                    EXPECT_EQ(all[h2].n_tiles, 0u) << where;
                                    EXPECT_EQ(all[h2].value_count, 0u) << where;
                                }
                            }
                        }
            }
}

// A damaged SPARSE section: the shared call fails for a head of it with the error the per-head call
// gives, and still answers for a head range whose sections are intact.
TEST(MustafarShared, DamagedSectionGivesThePerHeadError) {
    const sqkv_geometry g = MakeGeometry(1, 4, 64, 130, 0);
    sqkv_writer_options o = Opts(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 0, 2);
    o.zstd_level = 1;
    const Cache cache = MakeRandomCache(g, SQKV_DTYPE_FP32, 5);
    Bytes file;
    ASSERT_EQ(EncodeCache(cache, o, &file), SQKV_OK);
    RawFile raw;
    ASSERT_TRUE(ParseRaw(file, &raw));
    // the first SPARSE section: one byte of its stored body flipped in place (its checksum then fails)
    size_t i = 0;
    while (i < raw.sections.size() && raw.sections[i].kind() != SQKV_KIND_SPARSE) i++;
    ASSERT_LT(i, raw.sections.size());
    ASSERT_GT(raw.sections[i].body.size(), 40u);
    const std::vector<size_t> at = SectionOffsets(file);
    ASSERT_LT(i, at.size());
    Bytes bad = file;
    bad[at[i] + 64 + raw.sections[i].body.size() / 2] ^= 0x10;
    const uint32_t tensor = raw.sections[i].tensor(), head0 = raw.sections[i].head_start();
    ReaderPtr shared, single, other, single2;
    ASSERT_EQ(OpenMemory(bad, &single2), SQKV_OK);
    ASSERT_EQ(OpenMemory(bad, &shared), SQKV_OK);
    ASSERT_EQ(OpenMemory(bad, &single), SQKV_OK);
    ASSERT_EQ(OpenMemory(bad, &other), SQKV_OK);
    std::vector<sqkv_mustafar_sizes> all(g.n_kv_heads);
    sqkv_mustafar_sizes one{};
    const sqkv_error want = sqkv_reader_mustafar_sizes(single.get(), 0, (sqkv_tensor)tensor, head0, &one);
    one = sqkv_mustafar_sizes{};
    EXPECT_NE(want, SQKV_OK);
    EXPECT_EQ(sqkv_reader_mustafar_sizes_shared(shared.get(), 0, (sqkv_tensor)tensor, head0, all.data()), want);
    // the other head range of the same tensor is intact
    const uint32_t intact = head0 == 0 ? 2 : 0;
    EXPECT_EQ(sqkv_reader_mustafar_sizes(single2.get(), 0, (sqkv_tensor)tensor, intact, &one), SQKV_OK)
        << sqkv_reader_error_detail(single2.get());
    EXPECT_EQ(sqkv_reader_mustafar_sizes_shared(other.get(), 0, (sqkv_tensor)tensor, intact, all.data()), SQKV_OK)
        << sqkv_reader_error_detail(other.get());
    EXPECT_GT(all[intact].n_tiles, 0u);
    EXPECT_EQ(all[intact].n_tiles, one.n_tiles);
    EXPECT_EQ(all[intact].value_count, one.value_count);
    EXPECT_EQ(all[head0].n_tiles, 0u);
}
