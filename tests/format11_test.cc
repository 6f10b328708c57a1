// format11_test.cc: format 1.1 (spec/FORMAT.md §4.1 required features, §5 payload_bits 1..8 and flags,
// §7.4 PER_HALF_TILE, §7.5 the payload bit string, §7.6 ALL_KEPT sections, §14 keep-all mode).
//
// - The library's writer must write exactly the bytes of the test suite's own reference encoder
//   (tests/support/reference_file.h, written from the spec), and its decoders (reader and streaming
//   decoder) must return exactly the reference model's values, for every new option combination.
// - required_features / version_minor follow §4.1: a file that uses no 1.1 feature is a 1.0 file.
// - Appends (§9.1) and Mustafar's layout with 1.1 sections; the golden vectors against the reference
//   encoder. The rules broken one at a time are in format11_malformed_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "reference_file.h"
#include "roundtrip_check.h"
#include "sqkv_file.h"
#include "stream_sink.h"
#include "test_util.h"
#include "vector_specs.h"

namespace {

using namespace sqkv_test;

// ---- helpers ------------------------------------------------------------------------------------


// §4.1, spelled out here rather than taken from the model: which bits a file written with `o` declares.
uint32_t ExpectedFeatures(const sqkv_writer_options &o, const sqkv_geometry &g) {
    if (g.n_tokens == g.dense_window || o.quantizer == SQKV_QUANT_EXACT) return 0;  // no quantized SPARSE section
    uint32_t f = 0;
    if (o.payload_bits != 2 && o.payload_bits != 4 && o.payload_bits != 8) f |= 0x1;
    if (o.scales == SQKV_SCALE_PER_HALF_TILE) f |= 0x2;
    if (o.prune == SQKV_PRUNE_KEEP_ALL) f |= 0x4;
    return f;
}

// Exact zeros where they matter for 1.1 (the input is fp32 [head][token][channel]): a whole token row
// (empty / all-zero value tiles), one key channel over the first 64 tokens (an all-zero key tile), the
// first 32 channels of a token (an all-zero value half tile beside a nonzero one), and in layer 1 the
// whole sparse region of the last head (an all-zero PER_HEAD group: empty without keep-all, s = z = +0
// with it, §14).
void AddZeros(Cache *c) {
    const sqkv_geometry &g = c->geometry;
    const uint32_t T = g.n_tokens, D = g.head_dim, S = T - g.dense_window;
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (Bytes *t : {&c->k[l], &c->v[l]}) {
            float *x = reinterpret_cast<float *>(t->data());
            auto at = [&](uint32_t h, uint32_t tok, uint32_t d) { return (static_cast<size_t>(h) * T + tok) * D + d; };
            if (T > 1) std::memset(&x[at(0, 1, 0)], 0, D * sizeof(float));
            for (uint32_t tok = 0; tok < std::min(T, 64u); tok++) x[at(0, tok, 2 % D)] = 0;
            if (T > 3) std::memset(&x[at(0, 3, 0)], 0, std::min(D, 32u) * sizeof(float));
            if (l == 1 && S > 0) std::memset(&x[at(g.n_kv_heads - 1, 0, 0)], 0, static_cast<size_t>(S) * D * sizeof(float));
        }
}

// Names the first differing byte of two files by section, for failure messages.
std::string WhereDiffers(const Bytes &expected, const Bytes &actual) {
    const long long at = FirstDifference(expected, actual, 1);
    if (expected.size() != actual.size())
        return "sizes " + std::to_string(actual.size()) + " vs expected " + std::to_string(expected.size());
    if (at < 0) return "same";
    std::string where = "file header";
    for (size_t off : SectionOffsets(expected))
        if (static_cast<size_t>(at) >= off) {
            where = "section at " + std::to_string(off) + " (kind " + std::to_string(Get16(expected, off)) + ", layer " +
                    std::to_string(Get32(expected, off + sec::kLayer)) + ", tensor " +
                    std::to_string(expected[off + sec::kTensor]) + "), byte " + std::to_string(at - off);
        }
    return "first difference at offset " + std::to_string(at) + ": " + where;
}

// ---- round trips against the reference model ---------------------------------------------------

struct Geo {
    uint32_t layers, heads, head_dim, tokens, window;
};
// head_dim 64/80/96/128/256, sparse regions that are not multiples of 64 (and one that is shorter than a
// half tile), 1..4 heads, dense windows 0 and > 0.
const Geo kGeos[] = {
    {2, 1, 64, 70, 0}, {2, 2, 80, 100, 5}, {2, 3, 96, 70, 0}, {2, 4, 128, 45, 3}, {2, 1, 256, 70, 1},
    {2, 2, 80, 29, 4},
};

struct WidthCase {
    uint32_t bits;
    sqkv_quantizer q;
    sqkv_scale_granularity g;
};

std::vector<WidthCase> AllWidthCases() {
    std::vector<WidthCase> cases;
    for (uint32_t bits = 1; bits <= 8; bits++)
        for (sqkv_quantizer q : {SQKV_QUANT_SYMMETRIC, SQKV_QUANT_ASYMMETRIC})
            for (sqkv_scale_granularity g : {SQKV_SCALE_PER_HEAD, SQKV_SCALE_PER_TILE, SQKV_SCALE_PER_HALF_TILE})
                cases.push_back({bits, q, g});
    return cases;
}

class Format11RoundTrip : public ::testing::TestWithParam<WidthCase> {};

// For each prune mode (zstd level and element type vary with the case, so that every prune mode x zstd x
// element type combination occurs for every width): library bytes == reference bytes; header features;
// the reader's values == the model's (every output dtype, head sub-ranges); the reference decoder reads
// the library's file to the same values; the library reads the reference encoder's file to the same
// values; the streaming decoder agrees.
TEST_P(Format11RoundTrip, LibraryMatchesReferenceModel) {
    const WidthCase wc = GetParam();
    for (int n = 0; n < 6; n++) {
        const sqkv_prune_mode prune = static_cast<sqkv_prune_mode>(n % 3);
        const uint32_t zstd = (n / 3 + wc.g) % 2 ? 3 : 0;
        const sqkv_dtype e = (n / 3 + wc.q + wc.bits / 2) % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        const Geo &geo = kGeos[(wc.bits * 7 + wc.q * 3 + wc.g + n) % (sizeof kGeos / sizeof kGeos[0])];
        sqkv_writer_options o = TestOptions(wc.bits, wc.q, wc.g, prune, zstd);
        o.offset_interval_log2 = static_cast<uint32_t>(n % 5);
        o.heads_per_section = 1 + static_cast<uint32_t>(n % 2);
        o.tokens_per_section = (n + wc.bits + wc.g) % 3 == 0 ? 64 : 0;
        const sqkv_geometry g = MakeGeometry(geo.layers, geo.heads, geo.head_dim, geo.tokens, geo.window, e);
        Cache cache = MakeRandomCache(g, SQKV_DTYPE_FP32, 1000 + 97 * wc.bits + 13 * n + wc.g);
        AddZeros(&cache);
        SCOPED_TRACE(::testing::Message()
                     << "prune " << prune << " zstd " << zstd << " dtype " << e << " heads " << geo.heads
                     << " head_dim " << geo.head_dim << " tokens " << geo.tokens << " window " << geo.window
                     << " k " << o.offset_interval_log2 << " hps " << o.heads_per_section << " tps "
                     << o.tokens_per_section);

        Bytes lib, ref;
        std::string why;
        ASSERT_EQ(ErrName(EncodeCache(cache, o, &lib, &why)), ErrName(SQKV_OK)) << why;
        ASSERT_TRUE(ReferenceEncodeFile(cache, o, &ref, &why)) << why;
        EXPECT_TRUE(lib == ref) << "writer bytes differ from the reference encoder: " << WhereDiffers(ref, lib);

        const uint32_t features = ExpectedFeatures(o, g);
        EXPECT_EQ(Get32(lib, hdr::kRequired), features);
        EXPECT_EQ(Get16(lib, hdr::kVersionMinor), features ? 1u : 0u);

        // Every output dtype and a head sub-range, on half of the variants (time; the E output of the
        // library's decoders is compared on every variant below).
        if (n % 2 == 1) {
            EXPECT_TRUE(RoundTripMatchesReference(cache, o));
        }

        const ReferenceCache model = ReferenceFor(cache, o);
        std::vector<std::vector<uint16_t>> from_ref_decoder;
        ASSERT_TRUE(ReferenceDecodeFile(lib, &from_ref_decoder, &why)) << why;
        for (uint32_t l = 0; l < g.n_layers; l++) {
            EXPECT_TRUE(from_ref_decoder[2 * l] == model.k[l].decoded) << "reference decoder, layer " << l << " K";
            EXPECT_TRUE(from_ref_decoder[2 * l + 1] == model.v[l].decoded) << "reference decoder, layer " << l << " V";
        }

        // The library's decoder on its own bytes and on the reference encoder's (which isolates the decoder
        // from the encoder when they differ).
        for (const Bytes *file : {&lib, &ref}) {
            if (file == &ref && lib == ref) continue;
            ReaderPtr rr;
            ASSERT_EQ(OpenMemory(*file, &rr), SQKV_OK);
            EXPECT_EQ(ErrName(sqkv_reader_verify(rr.get())), ErrName(SQKV_OK)) << sqkv_reader_error_detail(rr.get());
            for (uint32_t l = 0; l < g.n_layers; l++) {
                Bytes out;
                ASSERT_EQ(ErrName(DecodeTensor(rr.get(), l, SQKV_TENSOR_K, e, &out)), ErrName(SQKV_OK));
                EXPECT_TRUE(AsU16(out) == model.k[l].decoded)
                    << "library decoding the " << (file == &lib ? "library's" : "reference") << " file, layer " << l << " K";
                ASSERT_EQ(ErrName(DecodeTensor(rr.get(), l, SQKV_TENSOR_V, e, &out)), ErrName(SQKV_OK));
                EXPECT_TRUE(AsU16(out) == model.v[l].decoded)
                    << "library decoding the " << (file == &lib ? "library's" : "reference") << " file, layer " << l << " V";
            }
        }

        ReaderPtr r;
        ASSERT_EQ(OpenMemory(lib, &r), SQKV_OK);
        sqkv_geometry got{};
        ASSERT_EQ(sqkv_reader_geometry(r.get(), &got), SQKV_OK);
        EXPECT_EQ(got.required_features, features);
        uint32_t major = 0, minor = 9;
        ASSERT_EQ(sqkv_reader_version(r.get(), &major, &minor), SQKV_OK);
        EXPECT_EQ(minor, features ? 1u : 0u);

        if (n % 2 == 0) {  // the streaming decoder, in E, on half of the variants (time)
            StreamSink sink;
            sink.dtype = e;
            std::string detail;
            ASSERT_EQ(ErrName(StreamDecode(lib, 777, &sink, &detail)), ErrName(SQKV_OK)) << detail;
            for (uint32_t l = 0; l < g.n_layers; l++) {
                EXPECT_TRUE(AsU16(sink.tensors[2 * l]) == model.k[l].decoded) << "stream, layer " << l << " K";
                EXPECT_TRUE(AsU16(sink.tensors[2 * l + 1]) == model.v[l].decoded) << "stream, layer " << l << " V";
            }
        }
        if (HasFatalFailure()) return;
    }
}

std::string WidthCaseName(const ::testing::TestParamInfo<WidthCase> &info) {
    static const char *const quantizers[] = {"exact", "sym", "asym"};
    static const char *const granularities[] = {"none", "head", "tile", "halftile"};
    return std::string(quantizers[info.param.q]) + std::to_string(info.param.bits) + "_" + granularities[info.param.g];
}

INSTANTIATE_TEST_SUITE_P(Widths, Format11RoundTrip, ::testing::ValuesIn(AllWidthCases()), WidthCaseName);

// 1.0 settings write 1.0 files, byte for byte (§4.1, §13), also with zstd and EXACT.
TEST(Format11Header, OneZeroSettingsWriteOneZeroFiles) {
    struct Case {
        sqkv_writer_options o;
        const char *what;
    };
    const Case cases[] = {
        {TestOptions(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE), "2-bit PER_TILE MAGNITUDE"},
        {TestOptions(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, SQKV_PRUNE_NONE, 3), "4-bit PER_HEAD NONE zstd"},
        {TestOptions(8, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE), "8-bit"},
        {TestOptions(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, SQKV_PRUNE_MAGNITUDE), "EXACT"},
    };
    const Cache cache = MakeRandomCache(MakeGeometry(1, 2, 80, 70, 3), SQKV_DTYPE_FP32, 5);
    for (const Case &c : cases) {
        Bytes lib, ref;
        std::string why;
        ASSERT_EQ(EncodeCache(cache, c.o, &lib, &why), SQKV_OK) << c.what << " " << why;
        EXPECT_EQ(Get32(lib, hdr::kRequired), 0u) << c.what;
        EXPECT_EQ(Get16(lib, hdr::kVersionMinor), 0u) << c.what;
        ASSERT_TRUE(ReferenceEncodeFile(cache, c.o, &ref, &why));
        EXPECT_TRUE(lib == ref) << c.what << ": " << WhereDiffers(ref, lib);
        ReaderPtr r;
        ASSERT_EQ(OpenMemory(lib, &r), SQKV_OK);
        sqkv_geometry g{};
        g.required_features = 0xDEAD;
        ASSERT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_OK);
        EXPECT_EQ(g.required_features, 0u) << c.what;
    }
}

TEST(Format11Header, EachFeatureSetsItsOwnBit) {
    const Cache cache = MakeRandomCache(MakeGeometry(1, 1, 64, 70, 0), SQKV_DTYPE_FP32, 6);
    struct Case {
        sqkv_writer_options o;
        uint32_t features;
    };
    const Case cases[] = {
        {TestOptions(3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE), 0x1},
        {TestOptions(1, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, SQKV_PRUNE_NONE), 0x1},
        {TestOptions(2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_MAGNITUDE), 0x2},
        {TestOptions(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_KEEP_ALL), 0x4},
        {TestOptions(7, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL), 0x7},
        {TestOptions(5, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_MAGNITUDE), 0x3},
    };
    for (const Case &c : cases) {
        Bytes lib;
        ASSERT_EQ(EncodeCache(cache, c.o, &lib), SQKV_OK);
        EXPECT_EQ(Get32(lib, hdr::kRequired), c.features);
        EXPECT_EQ(Get16(lib, hdr::kVersionMinor), 1u);
        EXPECT_EQ(Get16(lib, hdr::kVersionMajor), 1u);
    }
}

// §4.1 "An encoder SHOULD set only the bits its sections use": a file that is all dense window has no
// SPARSE section, so 3-bit keep-all options use no feature.
TEST(Format11Header, AllDenseFileDeclaresItsOptionsFeatures) {
    // §4.1: the file has no SPARSE section yet, but an append with the same options will write some
    // (§9.1 never rewrites the header), so the reference encoder declares what its options use.
    const Cache cache = MakeRandomCache(MakeGeometry(1, 2, 48, 10, 10), SQKV_DTYPE_FP32, 7);
    const sqkv_writer_options o = TestOptions(3, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL);
    Bytes lib, ref;
    std::string why;
    ASSERT_EQ(EncodeCache(cache, o, &lib, &why), SQKV_OK) << why;
    EXPECT_EQ(Get32(lib, hdr::kRequired), SQKV_FEATURE_CODE_WIDTHS | SQKV_FEATURE_HALF_TILE_SCALES | SQKV_FEATURE_ALL_KEPT);
    EXPECT_EQ(Get16(lib, hdr::kVersionMinor), 1u);
    ASSERT_TRUE(ReferenceEncodeFile(cache, o, &ref, &why));
    EXPECT_TRUE(lib == ref) << WhereDiffers(ref, lib);
}

TEST(Format11Writer, KeepAllWithExactIsRefused) {
    const sqkv_geometry g = MakeGeometry(1, 1, 64, 70, 0);
    sqkv_writer *w = nullptr;
    const sqkv_writer_options o = TestOptions(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, SQKV_PRUNE_KEEP_ALL);
    EXPECT_EQ(ErrName(sqkv_writer_create(&g, &o, &w)), ErrName(SQKV_ERR_INVALID_ARGUMENT));
    EXPECT_EQ(w, nullptr);
    sqkv_writer_destroy(w);
    for (uint32_t bits : {0u, 9u, 15u, 17u}) {
        const sqkv_writer_options bad = TestOptions(bits, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE);
        EXPECT_EQ(ErrName(sqkv_writer_create(&g, &bad, &w)), ErrName(SQKV_ERR_INVALID_ARGUMENT)) << bits;
        sqkv_writer_destroy(w);
        w = nullptr;
    }
}

// Keep-all codes the zeros (§14): a zero is a kept element, so it decodes to a level, not to +0 from a
// bitmap. A SYMMETRIC group has no zero level: a lone zero in a nonzero group decodes to -s (the tie
// between -s and +s goes to the lower code), and an all-zero group (s = +0) to level 0 = RNE(-(L-1)*0) = -0.
TEST(Format11KeepAll, ZerosAreCodedLikeAnyValue) {
    const sqkv_geometry g = MakeGeometry(1, 1, 64, 64, 0);
    Cache cache = MakeRandomCache(g, SQKV_DTYPE_FP32, 8);
    for (Bytes *t : {&cache.k[0], &cache.v[0]}) {
        float *x = reinterpret_cast<float *>(t->data());
        for (uint32_t tok = 0; tok < 64; tok++)
            for (uint32_t d = 0; d < 64; d++) x[tok * 64 + d] = tok == 0 ? 0.0f : (d == 5 ? 0.0f : 1.0f + d);
    }
    const sqkv_writer_options o = TestOptions(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL);
    Bytes lib;
    ASSERT_EQ(EncodeCache(cache, o, &lib), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(lib, &r), SQKV_OK);
    Bytes v;
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_V, SQKV_DTYPE_FP16, &v), SQKV_OK);
    // Token 0 is all zero: both its half tiles are all-zero groups, s = +0, every element -0.
    for (uint32_t d = 0; d < 64; d++) EXPECT_EQ(Get16(v, 2 * d), 0x8000) << "token 0 channel " << d;
    // Token 1, channel 5 is a zero in the half tile of channels 0..31, whose m is 32: s = RNE(32/3).
    const uint16_t s = refm::DoubleToFp16(32.0 / 3.0);
    EXPECT_EQ(Get16(v, 2 * (64 + 5)), refm::DoubleToFp16(-refm::Fp16ToDouble(s)));
    EXPECT_TRUE(RoundTripMatchesReference(cache, o));
    // The file has no bitmaps: the V SPARSE section's scales start at body offset 0, and its size is
    // exactly scales + payload.
    RawFile raw;
    ASSERT_TRUE(ParseRaw(lib, &raw));
    bool seen = false;
    for (const RawSection &sct : raw.sections) {
        if (sct.kind() != kKindSparse || sct.tensor() != 1) continue;
        seen = true;
        EXPECT_EQ(Get32(sct.header, sec::kFlags), 1u);
        EXPECT_EQ(sct.header[sec::kOffsetLog2], 0u);
        EXPECT_EQ(sct.body.size(), 2u * 128 + 64 * 64 * 2 / 8);  // 128 half tiles x 1 param, 2 bits each
        EXPECT_EQ(Get16(sct.body, 0), 0u) << "group 0 (token 0, channels 0..31) is all zero: s = +0";
    }
    EXPECT_TRUE(seen);
}

// ---- appending (§9.1): new sections may use only the features the header declares ----------------

// The first `tokens` tokens of every tensor of `full`, as a cache of its own ([head][token][channel]).
Cache FirstTokens(const Cache &full, uint32_t tokens, uint32_t dense_window) {
    Cache c = full;
    const sqkv_geometry &g = full.geometry;
    c.geometry.n_tokens = tokens;
    c.geometry.dense_window = dense_window;
    const size_t row = static_cast<size_t>(g.head_dim) * sizeof(float);
    auto cut = [&](const Bytes &from, Bytes *to) {
        to->assign(static_cast<size_t>(g.n_kv_heads) * tokens * row, 0);
        for (uint32_t h = 0; h < g.n_kv_heads; h++)
            std::memcpy(to->data() + static_cast<size_t>(h) * tokens * row,
                        from.data() + static_cast<size_t>(h) * g.n_tokens * row, tokens * row);
    };
    for (uint32_t l = 0; l < g.n_layers; l++) {
        cut(full.k[l], &c.k[l]);
        cut(full.v[l], &c.v[l]);
    }
    return c;
}

// Tokens [t0, t1) of one tensor as [head][token][channel] fp32.
Bytes TokenRange(const Bytes &tensor, const sqkv_geometry &g, uint32_t t0, uint32_t t1) {
    const size_t row = static_cast<size_t>(g.head_dim) * sizeof(float);
    Bytes out;
    for (uint32_t h = 0; h < g.n_kv_heads; h++) {
        const uint8_t *from = tensor.data() + (static_cast<size_t>(h) * g.n_tokens + t0) * row;
        out.insert(out.end(), from, from + (t1 - t0) * row);
    }
    return out;
}

sqkv_error AppendTokens(const std::string &path, const Cache &full, uint32_t t0, uint32_t t1,
                        const sqkv_writer_options &o, std::string *detail) {
    std::vector<Bytes> k, v;
    std::vector<const void *> kp, vp;
    for (uint32_t l = 0; l < full.geometry.n_layers; l++) {
        k.push_back(TokenRange(full.k[l], full.geometry, t0, t1));
        v.push_back(TokenRange(full.v[l], full.geometry, t0, t1));
    }
    for (uint32_t l = 0; l < full.geometry.n_layers; l++) {
        kp.push_back(k[l].data());
        vp.push_back(v[l].data());
    }
    char text[600] = "";
    const sqkv_error err =
        sqkv_append(path.c_str(), &full.geometry, &o, nullptr, t1 - t0, nullptr, SQKV_DTYPE_FP32, kp.data(), vp.data(), text, sizeof text);
    *detail = text;
    return err;
}

TEST(Format11Append, KeepAllThreeBitHalfTileFileGrows) {
    // S = 64 and 10 new tokens: the appended file must decode like a one-shot encoding of the grown
    // cache whose sparse sections split at 64 tokens (§9.1 informative, "what is exact").
    const uint32_t W = 6, N = 70, A = 10;
    Cache full = MakeRandomCache(MakeGeometry(1, 2, 40, N + A, W), SQKV_DTYPE_FP32, 31);
    AddZeros(&full);
    const sqkv_writer_options o = TestOptions(3, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL);
    const Cache first = FirstTokens(full, N, W);
    Bytes file;
    ASSERT_EQ(EncodeCache(first, o, &file), SQKV_OK);
    ASSERT_EQ(Get32(file, hdr::kRequired), 0x7u);
    const std::string dir = MakeTempDir("f11_append");
    const std::string path = dir + "/cache.sqkv";
    ASSERT_TRUE(WriteFile(path, file));
    std::string detail;
    ASSERT_EQ(ErrName(AppendTokens(path, full, N, N + A, o, &detail)), ErrName(SQKV_OK)) << detail;
    Bytes grown;
    ASSERT_TRUE(ReadFile(path, &grown));
    ASSERT_EQ(ErrName(DecodeEverything(grown)), ErrName(SQKV_OK));
    EXPECT_TRUE(std::equal(file.begin(), file.end(), grown.begin())) << "the old bytes are never modified";

    sqkv_writer_options one_shot = o;
    one_shot.tokens_per_section = 64;
    const ReferenceCache model = ReferenceFor(full, one_shot);
    std::vector<std::vector<uint16_t>> ref;
    std::string why;
    ASSERT_TRUE(ReferenceDecodeFile(grown, &ref, &why)) << why;
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(grown, &r), SQKV_OK);
    for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
        const std::vector<uint16_t> &expected = t == SQKV_TENSOR_K ? model.k[0].decoded : model.v[0].decoded;
        Bytes out;
        ASSERT_EQ(DecodeTensor(r.get(), 0, t, SQKV_DTYPE_FP16, &out), SQKV_OK);
        EXPECT_TRUE(AsU16(out) == expected) << "library, tensor " << t;
        EXPECT_TRUE(ref[t] == expected) << "reference decoder, tensor " << t;
    }
    // The new SPARSE sections are ALL_KEPT, 3-bit, PER_HALF_TILE, without an offset table.
    RawFile raw;
    ASSERT_TRUE(ParseRaw(grown, &raw));
    int new_sparse = 0;
    for (const RawSection &s : raw.sections)
        if (s.kind() == kKindSparse && s.token_start() == N - W) {
            new_sparse++;
            EXPECT_EQ(Get32(s.header, sec::kFlags), 1u);
            EXPECT_EQ(s.header[sec::kBits], 3u);
            EXPECT_EQ(s.header[sec::kGranularity], 3u);
            EXPECT_EQ(s.header[sec::kOffsetLog2], 0u);
        }
    EXPECT_EQ(new_sparse, 4);  // K and V of two heads
    RemoveTree(dir);
}

TEST(Format11Append, OptionsThatNeedAnUndeclaredFeatureAreRefused) {
    const uint32_t W = 6, N = 70, A = 10;
    const Cache full = MakeRandomCache(MakeGeometry(1, 1, 40, N + A, W), SQKV_DTYPE_FP32, 32);
    const sqkv_writer_options o = TestOptions(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE);
    Bytes file;
    ASSERT_EQ(EncodeCache(FirstTokens(full, N, W), o, &file), SQKV_OK);
    ASSERT_EQ(Get32(file, hdr::kRequired), 0u);
    const std::string dir = MakeTempDir("f11_append_refused");
    const std::string path = dir + "/cache.sqkv";
    ASSERT_TRUE(WriteFile(path, file));
    const sqkv_writer_options needs[] = {
        TestOptions(3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE),
        TestOptions(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_MAGNITUDE),
        TestOptions(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_KEEP_ALL),
    };
    for (const sqkv_writer_options &n : needs) {
        std::string detail;
        EXPECT_EQ(ErrName(AppendTokens(path, full, N, N + A, n, &detail)), ErrName(SQKV_ERR_UNSUPPORTED)) << detail;
        Bytes after;
        ASSERT_TRUE(ReadFile(path, &after));
        EXPECT_TRUE(after == file) << "a refused append leaves the file as it was";
    }
    // The 1.0 options still append.
    std::string detail;
    EXPECT_EQ(ErrName(AppendTokens(path, full, N, N + A, o, &detail)), ErrName(SQKV_OK)) << detail;
    RemoveTree(dir);
}

// ---- Mustafar's layout (sqkv_reader_decode_mustafar) of 1.1 sections ------------------------------

TEST(Format11Mustafar, LayoutOfNewWidthsHalfTilesAndAllKeptSections) {
    // An ALL_KEPT section has no stored bitmaps: Mustafar's bitmaps are the implied ones (§7.6), every
    // non-padding element set, and its values are the coded zeros too.
    const sqkv_writer_options cases[] = {
        TestOptions(3, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL),
        TestOptions(5, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE),
        TestOptions(1, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_NONE),
    };
    const sqkv_geometry g = MakeGeometry(1, 2, 80, 100, 4);
    Cache cache = MakeRandomCache(g, SQKV_DTYPE_FP32, 41);
    AddZeros(&cache);
    const uint32_t S = g.n_tokens - g.dense_window;
    for (const sqkv_writer_options &o : cases) {
        SCOPED_TRACE(::testing::Message() << "bits " << o.payload_bits << " prune " << o.prune);
        Bytes file;
        ASSERT_EQ(EncodeCache(cache, o, &file), SQKV_OK);
        const ReferenceCache model = ReferenceFor(cache, o);
        ReaderPtr r;
        ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            const refm::Tensor &rt = t == SQKV_TENSOR_K ? model.k[0] : model.v[0];
            for (uint32_t h = 0; h < g.n_kv_heads; h++) {
                const size_t head_at = static_cast<size_t>(h) * g.n_tokens * g.head_dim;
                const refm::MustafarLayout expected = refm::MustafarFromDecoded(
                    t, S, g.head_dim, rt.decoded.data() + head_at, rt.kept.data() + head_at);
                sqkv_mustafar_sizes sizes{};
                ASSERT_EQ(ErrName(sqkv_reader_mustafar_sizes(r.get(), 0, t, h, &sizes)), ErrName(SQKV_OK));
                ASSERT_EQ(sizes.n_tiles, expected.bitmaps.size());
                ASSERT_EQ(sizes.value_count, expected.values.size());
                std::vector<int64_t> bitmaps(sizes.n_tiles, 0x5555);
                std::vector<int32_t> accum(sizes.n_tiles + 1, -7);
                std::vector<uint16_t> values(sizes.value_count, 0xAAAA);
                ASSERT_EQ(ErrName(sqkv_reader_decode_mustafar(r.get(), 0, t, h, bitmaps.data(), accum.data(),
                                                              values.data(), &sizes)),
                          ErrName(SQKV_OK));
                EXPECT_TRUE(bitmaps == expected.bitmaps) << "tensor " << t << " head " << h;
                EXPECT_TRUE(accum == expected.accum_counts) << "tensor " << t << " head " << h;
                EXPECT_TRUE(values == expected.values) << "tensor " << t << " head " << h;
            }
        }
    }
}

// ---- the golden vectors, third opinion: the reference encoder writes each one byte for byte ----------

TEST(Format11Vectors, ReferenceEncoderWritesEveryGoldenVector) {
    for (const VectorSpec &spec : GoldenVectors()) {
        Bytes golden, ref;
        std::string why;
        ASSERT_TRUE(ReadFile(VectorPath(spec, VectorsDir()), &golden)) << spec.name;
        ASSERT_TRUE(ReferenceEncodeFile(VectorInput(spec), spec.options, &ref, &why)) << spec.name << ": " << why;
        EXPECT_TRUE(golden == ref) << spec.name << ": " << WhereDiffers(golden, ref);
        std::vector<std::vector<uint16_t>> decoded;
        ASSERT_TRUE(ReferenceDecodeFile(golden, &decoded, &why)) << spec.name << ": " << why;
        const ReferenceCache model = ReferenceFor(VectorInput(spec), spec.options);
        for (uint32_t l = 0; l < spec.geometry.n_layers; l++) {
            EXPECT_TRUE(decoded[2 * l] == model.k[l].decoded) << spec.name << " layer " << l << " K";
            EXPECT_TRUE(decoded[2 * l + 1] == model.v[l].decoded) << spec.name << " layer " << l << " V";
        }
    }
}

}  // namespace
