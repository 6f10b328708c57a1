// zstd_layer_test.cc: the writer's zstd layer (codec 1, spec/FORMAT.md §5.1; sqkv.h zstd_level): never
// larger, decodes to the same values, deterministic, the per-stream and per-section keep rules.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include <zstd.h>

extern "C" {
#include "codec_streams.h"
#include "encode_streams.h"
}
#include "format.h"
#include "sqkv.h"
#include "test_util.h"

namespace {

using sqkv_test::Bytes;
using sqkv_test::Cache;

sqkv_writer_options Options(uint32_t bits, sqkv_scale_granularity scales, uint32_t zstd_level,
                            sqkv_quantizer q = SQKV_QUANT_SYMMETRIC) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = bits;
    o.quantizer = bits == 16 ? SQKV_QUANT_EXACT : q;
    o.scales = bits == 16 ? SQKV_SCALE_NONE : scales;
    o.zstd_level = zstd_level;
    return o;
}

Cache TestCache(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens, uint32_t window, uint64_t seed) {
    Cache c = sqkv_test::MakeRandomCache(sqkv_test::MakeGeometry(layers, heads, dim, tokens, window),
                                         SQKV_DTYPE_FP32, seed);
    c.has_tokens = true;
    c.tokens.resize(tokens);
    for (uint32_t i = 0; i < tokens; i++) c.tokens[i] = static_cast<int32_t>(i % 7);  // compressible ids
    c.fingerprint.assign(32, 0xAB);
    c.metadata = {{"model", "test"}, {"note", std::string(300, 'x')}};
    return c;
}

struct SectionView {
    uint16_t kind;
    uint8_t codec;
    uint64_t stored, decoded;
    size_t body_at;
};

std::vector<SectionView> Sections(const Bytes &file) {
    sqkv_test::ReaderPtr r;
    EXPECT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    std::vector<SectionView> out;
    if (!r) return out;
    size_t n = 0;
    sqkv_reader_section_count(r.get(), &n);
    for (size_t i = 0; i < n; i++) {
        sqkv_section_info info;
        sqkv_reader_section_info(r.get(), i, &info);
        const uint8_t *h = file.data() + info.offset;
        SectionView v{info.kind, h[2], sqkv_load_u64(h + 32), sqkv_load_u64(h + 40), static_cast<size_t>(info.offset + 64)};
        out.push_back(v);
    }
    return out;
}

// Every (layer, tensor) decoded to fp32.
std::vector<Bytes> DecodeAll(const Bytes &file, const sqkv_geometry &g) {
    sqkv_test::ReaderPtr r;
    EXPECT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    std::vector<Bytes> out;
    if (!r) return out;
    EXPECT_EQ(sqkv_reader_verify(r.get()), SQKV_OK) << sqkv_reader_error_detail(r.get());
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (int t = 0; t < 2; t++) {
            Bytes b;
            EXPECT_EQ(sqkv_test::DecodeTensor(r.get(), l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP32, &b), SQKV_OK);
            out.push_back(b);
        }
    return out;
}

struct Config {
    uint32_t bits;
    sqkv_scale_granularity scales;
    sqkv_quantizer quantizer;
    uint32_t window;
};

class ZstdLayer : public ::testing::TestWithParam<Config> {};

TEST_P(ZstdLayer, NeverLargerSameValuesDeterministic) {
    const Config c = GetParam();
    const Cache cache = TestCache(2, 3, 96, 200, c.window, 7);
    Bytes plain, packed, again;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Options(c.bits, c.scales, 0, c.quantizer), &plain), SQKV_OK);
    for (uint32_t level : {1u, 3u, 19u}) {
        SCOPED_TRACE(level);
        ASSERT_EQ(sqkv_test::EncodeCache(cache, Options(c.bits, c.scales, level, c.quantizer), &packed), SQKV_OK);
        ASSERT_EQ(sqkv_test::EncodeCache(cache, Options(c.bits, c.scales, level, c.quantizer), &again), SQKV_OK);
        EXPECT_EQ(packed, again) << "same inputs and level must give the same bytes";
        EXPECT_LE(packed.size(), plain.size());
        EXPECT_EQ(DecodeAll(packed, cache.geometry), DecodeAll(plain, cache.geometry));
        // Section by section: never larger, and the same sections in the same order.
        const auto a = Sections(plain), b = Sections(packed);
        ASSERT_EQ(a.size(), b.size());
        for (size_t i = 0; i < a.size(); i++) {
            EXPECT_EQ(a[i].kind, b[i].kind);
            EXPECT_EQ(a[i].decoded, b[i].decoded);
            EXPECT_LE(sqkv_align8(b[i].stored), sqkv_align8(a[i].stored)) << "section " << i;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Payloads, ZstdLayer,
                         ::testing::Values(Config{2, SQKV_SCALE_PER_HEAD, SQKV_QUANT_SYMMETRIC, 0},
                                           Config{2, SQKV_SCALE_PER_HEAD, SQKV_QUANT_SYMMETRIC, 40},
                                           Config{4, SQKV_SCALE_PER_TILE, SQKV_QUANT_ASYMMETRIC, 64},
                                           Config{8, SQKV_SCALE_PER_TILE, SQKV_QUANT_SYMMETRIC, 0},
                                           Config{16, SQKV_SCALE_NONE, SQKV_QUANT_EXACT, 17}));

// The keep rules of §5.1 (informative text, reference encoder): every zstd stream is shorter (padded)
// than the stream; every codec-1 section's stored body is shorter than align8(decoded_size); the INDEX
// is codec 0.
TEST(ZstdLayerRules, KeptStreamsAndSectionsAreSmaller) {
    const Cache cache = TestCache(2, 2, 128, 300, 44, 11);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Options(2, SQKV_SCALE_PER_HEAD, 3), &file), SQKV_OK);
    const auto sections = Sections(file);
    size_t codec1 = 0;
    for (const auto &s : sections) {
        if (s.kind == 0x0003) {
            EXPECT_EQ(s.codec, 0);
            continue;
        }
        if (s.codec == 0) {
            EXPECT_EQ(s.stored, s.decoded);
            continue;
        }
        codec1++;
        EXPECT_LT(s.stored, sqkv_align8(s.decoded));
        sqkv_section_header h;
        sqkv_section_header_unpack(file.data() + s.body_at - 64, &h);
        sqkv_stream_plan plan;
        sqkv_stream_plan_for(&h, cache.geometry.head_dim, &plan);
        EXPECT_EQ(plan.count, s.kind == 0x0001 ? 4u : 1u);
        int zstd_streams = 0;
        for (uint32_t i = 0; i < plan.count; i++) {
            const uint8_t *rec = file.data() + s.body_at + 16 * i;
            const uint64_t len = sqkv_load_u64(rec + 8);
            if (rec[0] == 1) {
                zstd_streams++;
                EXPECT_LT(sqkv_align8(len), sqkv_align8(plan.length[i])) << "a kept zstd stream must be smaller";
            } else {
                EXPECT_EQ(rec[0], 0);
                EXPECT_EQ(len, plan.length[i]);
            }
        }
        EXPECT_GE(zstd_streams, 1);
    }
    // The TOKENS ids (i % 7), the metadata's 300 'x' and the DENSE sections are compressible.
    EXPECT_GE(codec1, 3u);
}

// Random EXACT payloads and random bitmaps barely compress: whatever zstd finds, the file is at most
// the codec-0 file, byte for byte where nothing was kept.
TEST(ZstdLayerRules, IncompressibleSectionsStayCodec0) {
    sqkv_section_blob b;
    memset(&b, 0, sizeof b);
    ASSERT_EQ(sqkv_blob_alloc(&b, 4096), SQKV_OK);
    sqkv_test::SplitMix64 rng(5);
    uint8_t *body = sqkv_blob_body(&b);
    for (size_t i = 0; i < 4096; i += 8) {
        const uint64_t r = rng.Next();
        memcpy(body + i, &r, 8);
    }
    b.header.kind = 0x8002;  // a FINGERPRINT-like single-stream body
    sqkv_blob_seal(&b);
    const Bytes before(b.bytes, b.bytes + 64 + 4096);
    void *cctx = nullptr;
    sqkv_stream_sizes sizes;
    ASSERT_EQ(sqkv_blob_compress_streams(&b, 64, 19, &cctx, &sizes), SQKV_OK);
    EXPECT_EQ(sizes.codec1, 0);
    EXPECT_EQ(Bytes(b.bytes, b.bytes + 64 + 4096), before);
    EXPECT_EQ(b.header.codec, 0);
    // A compressible body becomes codec 1 with one zstd stream.
    memset(body, 0, 4096);
    sqkv_blob_seal(&b);
    ASSERT_EQ(sqkv_blob_compress_streams(&b, 64, 1, &cctx, &sizes), SQKV_OK);
    EXPECT_EQ(sizes.codec1, 1);
    EXPECT_EQ(b.header.codec, 1);
    EXPECT_EQ(b.header.decoded_size, 4096u);
    EXPECT_LT(b.header.stored_size, 100u);
    sqkv_blob_free(&b);
    ZSTD_freeCCtx(static_cast<ZSTD_CCtx *>(cctx));
}

TEST(ZstdLayerRules, LevelIsValidated) {
    const sqkv_geometry g = sqkv_test::MakeGeometry(1, 1, 64, 64, 0);
    sqkv_writer_options o = Options(2, SQKV_SCALE_PER_HEAD, 23);
    sqkv_writer *w = nullptr;
    EXPECT_EQ(sqkv_writer_create(&g, &o, &w), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(w, nullptr);
    o.zstd_level = 22;
    ASSERT_EQ(sqkv_writer_create(&g, &o, &w), SQKV_OK);
    sqkv_writer_destroy(w);
    sqkv_writer_options d;
    sqkv_writer_options_default(&d);
    EXPECT_EQ(d.zstd_level, 0u) << "zstd is off by default";
}

}  // namespace
