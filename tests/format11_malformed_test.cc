// format11_malformed_test.cc: format 1.1 rules broken one at a time (spec/FORMAT.md §4.1, §5, §5.2 step
// 4, §7.2, §7.4, §7.5, §7.6), each asserting the exact error the spec names, through the random-access
// reader and (for most) the streaming decoder; and §7.5's bit string for b = 3 on a file built by hand.
// Valid files are taken apart and reassembled with every checksum, size and index entry recomputed
// (tests/support/sqkv_file.h), so the decoder reaches the rule under test.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "reference_file.h"
#include "sqkv_file.h"
#include "stream_sink.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

#define EXPECT_ERR(bytes, code) EXPECT_EQ(ErrName(DecodeEverything(bytes)), ErrName(code))


// ---- §7.5: b = 3, built by hand -------------------------------------------------------------------

// 1 layer, 1 head, head_dim 1, 4 tokens. K: one tile, elements 0..3 = tokens 0..3. V: four tiles (one
// per token), element 0 each. Both 3-bit SYMMETRIC PER_HEAD with s = 1 (levels -7, -5, ..., 7) and codes
// 1, 6, 5, 3 for tokens 0..3. The codes as one little-endian bit string:
//   bits 0-2 = 1 (001), bits 3-5 = 6 (110), bits 6-8 = 5 (101), bits 9-11 = 3 (011)
//   byte 0 = bits 7..0 = 0 1 1 1 0 0 0 1 = 0x71  (element 2's low two bits "01" in bits 6, 7)
//   byte 1 = bits 15..8 = 0 0 0 0 0 1 1 1 = 0x07 (element 2's high bit "1" in bit 0)
Bytes HandBuiltThreeBitFile(uint8_t byte0, uint8_t byte1) {
    RawFile f;
    f.header.assign(64, 0);
    const uint8_t magic[8] = {0x89, 0x53, 0x51, 0x4B, 0x56, 0x0D, 0x0A, 0x1A};
    std::copy(magic, magic + 8, f.header.begin());
    Put16(&f.header, hdr::kVersionMajor, 1);
    Put16(&f.header, hdr::kVersionMinor, 1);
    Put32(&f.header, hdr::kHeaderSize, 64);
    Put32(&f.header, hdr::kRequired, 0x1);  // CODE_WIDTHS
    Put32(&f.header, hdr::kLayers, 1);
    Put32(&f.header, hdr::kHeads, 1);
    Put32(&f.header, hdr::kHeadDim, 1);
    Put32(&f.header, hdr::kTokens, 4);
    f.header[hdr::kValueDtype] = 1;
    f.header[hdr::kSourceDtype] = 3;
    f.header[hdr::kTileLog2] = 6;
    f.header[hdr::kChecksumKind] = 1;
    f.index_n_tokens = 4;
    for (uint8_t tensor : {0, 1}) {
        RawSection s;
        Put16(&s.header, sec::kKind, kKindSparse);
        s.header[sec::kTensor] = tensor;
        Put32(&s.header, sec::kHeadCount, 1);
        Put32(&s.header, sec::kTokenCount, 4);
        s.header[sec::kBits] = 3;
        s.header[sec::kQuantizer] = SQKV_QUANT_SYMMETRIC;
        s.header[sec::kGranularity] = SQKV_SCALE_PER_HEAD;
        s.header[sec::kOffsetLog2] = 0;
        const size_t tiles = tensor == 0 ? 1 : 4;
        Bytes bitmaps(8 * tiles, 0), offsets((4 * (tiles + 1) + 7) / 8 * 8, 0);
        if (tensor == 0) {
            Put64(&bitmaps, 0, 0xF000000000000000ull);  // elements 0..3
            Put32(&offsets, 4, 4);
        } else {
            for (size_t n = 0; n < 4; n++) {
                Put64(&bitmaps, 8 * n, 0x8000000000000000ull);  // element 0
                Put32(&offsets, 4 * (n + 1), static_cast<uint32_t>(n + 1));
            }
        }
        Bytes scales(8, 0);
        Put16(&scales, 0, 0x3C00);  // s = 1.0
        Bytes payload(8, 0);
        payload[0] = byte0;
        payload[1] = byte1;
        for (const Bytes *part : {&bitmaps, &offsets, &scales, &payload}) s.body.insert(s.body.end(), part->begin(), part->end());
        f.sections.push_back(s);
    }
    Put16(&f.index.header, sec::kKind, kKindIndex);
    return Assemble(f);
}

TEST(Format11Payload, ThreeBitCodesCrossByteBoundaries) {
    const Bytes file = HandBuiltThreeBitFile(0x71, 0x07);
    ASSERT_EQ(ErrName(DecodeEverything(file)), ErrName(SQKV_OK));
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    const float expected[4] = {-5, 5, 3, -1};  // levels of codes 1, 6, 5, 3
    for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
        Bytes out;
        ASSERT_EQ(DecodeTensor(r.get(), 0, t, SQKV_DTYPE_FP32, &out), SQKV_OK);
        ASSERT_EQ(out.size(), 16u);
        float got[4];
        std::memcpy(got, out.data(), 16);
        for (int i = 0; i < 4; i++) EXPECT_EQ(got[i], expected[i]) << "tensor " << t << " token " << i;
    }
    // The reference decoder reads the same values (a check of the test's own model).
    std::vector<std::vector<uint16_t>> ref;
    std::string why;
    ASSERT_TRUE(ReferenceDecodeFile(file, &ref, &why)) << why;
    for (int i = 0; i < 4; i++) EXPECT_EQ(refm::Fp16ToDouble(ref[0][i]), expected[i]);
    // And the streaming decoder, byte by byte.
    StreamSink sink;
    ASSERT_EQ(ErrName(StreamDecode(file, 1, &sink)), ErrName(SQKV_OK));
    EXPECT_EQ(std::memcmp(sink.tensors[0].data(), expected, 16), 0);
    EXPECT_EQ(std::memcmp(sink.tensors[1].data(), expected, 16), 0);
}

TEST(Format11Payload, ThreeBitBitsAfterTheLastCodeArePadding) {
    // 12 bits of codes: bits 12..15 of byte 1, and bytes 2..7, must be zero (§7.5).
    for (int bit = 12; bit < 64; bit += 5) {
        Bytes file = HandBuiltThreeBitFile(0x71, static_cast<uint8_t>(bit < 16 ? 0x07 | (1u << (bit - 8)) : 0x07));
        if (bit >= 16) {
            // Set a bit in bytes 2..7 of the K payload: rebuild with the raw model.
            RawFile raw;
            ASSERT_TRUE(ParseRaw(file, &raw));
            raw.sections[0].body[24 + bit / 8] = static_cast<uint8_t>(1u << (bit % 8));
            file = Assemble(raw);
        }
        EXPECT_ERR(file, SQKV_ERR_PADDING) << "bit " << bit;
    }
    // Flipping each code bit changes exactly that element (a decoder that reads bits in another order
    // fails this).
    const float base[4] = {-5, 5, 3, -1};
    for (int bit = 0; bit < 12; bit++) {
        uint8_t b0 = 0x71, b1 = 0x07;
        if (bit < 8) b0 ^= static_cast<uint8_t>(1u << bit);
        else b1 ^= static_cast<uint8_t>(1u << (bit - 8));
        const Bytes file = HandBuiltThreeBitFile(b0, b1);
        ReaderPtr r;
        ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
        Bytes out;
        ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_OK);
        float got[4];
        std::memcpy(got, out.data(), 16);
        const int element = bit / 3, j = bit % 3;
        for (int i = 0; i < 4; i++) {
            if (i != element) {
                EXPECT_EQ(got[i], base[i]) << "bit " << bit << " element " << i;
                continue;
            }
            // level(c) = 2c - 7; flipping bit j of c moves the level by +-2^(j+1).
            const float delta = static_cast<float>(2 << j);
            EXPECT_TRUE(got[i] == base[i] + delta || got[i] == base[i] - delta) << "bit " << bit << " got " << got[i];
        }
    }
}

// ---- mutations: each 1.1 rule broken alone -------------------------------------------------------

constexpr uint32_t kD = 40, kT = 70, kW = 5;  // S = 65: the last key chunk holds one token, so its half
                                              // tile of elements 32..63 is all padding (an empty group)

struct Base {
    Cache cache;
    sqkv_writer_options opts;
    Bytes file;
    RawFile raw;
};

Base MakeBase(const sqkv_writer_options &o) {
    Base b;
    b.opts = o;
    b.cache = MakeRandomCache(MakeGeometry(1, 2, kD, kT, kW), SQKV_DTYPE_FP32, 77);
    b.cache.has_tokens = true;
    for (uint32_t t = 0; t < kT; t++) b.cache.tokens.push_back(static_cast<int32_t>(t));
    std::string detail;
    EXPECT_EQ(EncodeCache(b.cache, o, &b.file, &detail), SQKV_OK) << detail;
    EXPECT_TRUE(ParseRaw(b.file, &b.raw));
    return b;
}

int FirstSparse(const RawFile &f, int tensor = -1) {
    for (size_t i = 0; i < f.sections.size(); i++)
        if (f.sections[i].kind() == kKindSparse && (tensor < 0 || f.sections[i].tensor() == tensor)) return static_cast<int>(i);
    return -1;
}

Bytes Edit(const Base &b, const std::function<void(RawFile *)> &fn, const AssembleOptions &o = AssembleOptions()) {
    RawFile f = b.raw;
    fn(&f);
    return Assemble(f, o);
}

Bytes WithRequired(const Base &b, uint32_t features) {
    Bytes f = b.file;
    Put32(&f, hdr::kRequired, features);
    FixHeaderChecksum(&f);
    return f;
}

class Format11Malformed : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        sqkv_writer_options three = TestOptions(3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_MAGNITUDE);
        three.sparsity = 0.55;  // 18 of 40 kept per row: 65 * 18 * 3 bits end inside a byte
        three_ = new Base(MakeBase(three));
        half_ = new Base(MakeBase(TestOptions(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_MAGNITUDE)));
        kept_ = new Base(MakeBase(TestOptions(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, SQKV_PRUNE_KEEP_ALL)));
    }
    static void TearDownTestSuite() {
        delete three_;
        delete half_;
        delete kept_;
    }
    void SetUp() override {
        for (const Base *b : {three_, half_, kept_}) {
            ASSERT_FALSE(b->raw.sections.empty()) << "base file did not encode/parse";
            ASSERT_EQ(ErrName(DecodeEverything(b->file)), ErrName(SQKV_OK)) << "base file must be valid";
            ASSERT_EQ(Assemble(b->raw), b->file) << "test-side assembler must reproduce the encoder's bytes";
        }
        ASSERT_EQ(Get32(three_->file, hdr::kRequired), 0x1u);
        ASSERT_EQ(Get32(half_->file, hdr::kRequired), 0x2u);
        ASSERT_EQ(Get32(kept_->file, hdr::kRequired), 0x4u);
    }
    static Base *three_, *half_, *kept_;
};
Base *Format11Malformed::three_ = nullptr;
Base *Format11Malformed::half_ = nullptr;
Base *Format11Malformed::kept_ = nullptr;

// Both decoders must name the same rule.
void ExpectBoth(const Bytes &file, sqkv_error want, const std::string &what) {
    EXPECT_EQ(ErrName(DecodeEverything(file)), ErrName(want)) << what << " (reader)";
    for (size_t chunk : {size_t{1}, size_t{4096}}) {
        std::string detail;
        EXPECT_EQ(ErrName(StreamDecode(file, chunk, nullptr, &detail)), ErrName(want))
            << what << " (streaming decoder, chunk " << chunk << "): " << detail;
    }
}

TEST_F(Format11Malformed, UnknownRequiredFeatureBits) {
    for (uint32_t bit : {3u, 4u, 16u, 31u}) {
        ExpectBoth(WithRequired(*three_, 0x1u | (1u << bit)), SQKV_ERR_UNSUPPORTED_FEATURE, "bit " + std::to_string(bit));
        EXPECT_ERR(WithRequired(*kept_, 1u << bit), SQKV_ERR_UNSUPPORTED_FEATURE) << bit;
    }
}

TEST_F(Format11Malformed, DeclaredButUnusedFeaturesAreValid) {
    // §4.1: a bit MAY be set while no section uses its feature; version_minor is not checked (§12).
    for (const Base *b : {three_, half_, kept_})
        for (uint32_t features : {0x7u, 0x5u}) {
            Bytes f = WithRequired(*b, Get32(b->file, hdr::kRequired) | features);
            EXPECT_ERR(f, SQKV_OK) << features;
            Put16(&f, hdr::kVersionMinor, 0);
            FixHeaderChecksum(&f);
            EXPECT_ERR(f, SQKV_OK) << features << " with version_minor 0";
        }
}

TEST_F(Format11Malformed, FeatureUsedButNotDeclared) {
    ExpectBoth(WithRequired(*three_, 0), SQKV_ERR_SECTION_FIELD, "payload_bits 3 without CODE_WIDTHS");
    ExpectBoth(WithRequired(*three_, 0x6), SQKV_ERR_SECTION_FIELD, "payload_bits 3 with the other two features");
    ExpectBoth(WithRequired(*half_, 0), SQKV_ERR_SECTION_FIELD, "granularity 3 without HALF_TILE_SCALES");
    ExpectBoth(WithRequired(*half_, 0x5), SQKV_ERR_SECTION_FIELD, "granularity 3 with the other two features");
    ExpectBoth(WithRequired(*kept_, 0), SQKV_ERR_SECTION_FIELD, "ALL_KEPT without its feature");
    ExpectBoth(WithRequired(*kept_, 0x3), SQKV_ERR_SECTION_FIELD, "ALL_KEPT with the other two features");
    // Every width 1..8 other than 2, 4, 8 needs CODE_WIDTHS, on a section that is otherwise valid in size:
    // the edit below only changes the width, so only the feature rule (checked before sizes) is broken.
    for (uint8_t bits : {1, 5, 6, 7}) {
        const Bytes f = Edit(*half_, [&](RawFile *raw) { raw->sections[FirstSparse(*raw)].header[sec::kBits] = bits; });
        EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << int(bits);
    }
}

TEST_F(Format11Malformed, PayloadBitsOutsideOneToEightOrSixteen) {
    for (uint8_t bits : {0, 9, 10, 15, 17, 32, 255}) {
        Bytes f = Edit(*three_, [&](RawFile *raw) { raw->sections[FirstSparse(*raw)].header[sec::kBits] = bits; });
        f = Bytes(f);
        Put32(&f, hdr::kRequired, 0x7);  // every feature declared: the width itself is the error
        FixHeaderChecksum(&f);
        if (bits == 9) ExpectBoth(f, SQKV_ERR_SECTION_FIELD, "payload_bits 9");
        else EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << int(bits);
    }
}

TEST_F(Format11Malformed, UnknownFlagBits) {
    for (uint32_t flags : {0x2u, 0x3u, 0x80000000u, 0x80000001u}) {
        const Bytes f = Edit(*kept_, [&](RawFile *raw) { Put32(&raw->sections[FirstSparse(*raw)].header, sec::kFlags, flags); });
        if (flags == 0x2) ExpectBoth(f, SQKV_ERR_SECTION_FIELD, "flags bit 1 on an ALL_KEPT file");
        else EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << flags;
    }
    // On a file that declares every feature, a SPARSE section without ALL_KEPT with bit 1: still unknown.
    Bytes f = Edit(*three_, [&](RawFile *raw) { Put32(&raw->sections[FirstSparse(*raw)].header, sec::kFlags, 0x2); });
    Put32(&f, hdr::kRequired, 0x7);
    FixHeaderChecksum(&f);
    EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD);
    // ALL_KEPT is a SPARSE flag only: on a DENSE or TOKENS section it is an unknown bit.
    for (uint16_t kind : {kKindDense, kKindTokens}) {
        const Bytes g = Edit(*kept_, [&](RawFile *raw) {
            for (RawSection &s : raw->sections)
                if (s.kind() == kind) {
                    Put32(&s.header, sec::kFlags, 1);
                    break;
                }
        });
        EXPECT_ERR(g, SQKV_ERR_SECTION_FIELD) << "kind " << kind;
    }
}

TEST_F(Format11Malformed, AllKeptWithAnOffsetInterval) {
    for (uint8_t k : {1, 4, 20}) {
        const Bytes f = Edit(*kept_, [&](RawFile *raw) { raw->sections[FirstSparse(*raw)].header[sec::kOffsetLog2] = k; });
        if (k == 1) ExpectBoth(f, SQKV_ERR_SECTION_FIELD, "ALL_KEPT with offset_interval_log2 1");
        else EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << int(k);
    }
}

TEST_F(Format11Malformed, AllKeptWithExact) {
    // 16 bits, EXACT, NONE is a valid combination without ALL_KEPT; with it, PAYLOAD_PARAMS (§7.6), found
    // in step 4 before the sizes (which no longer fit either).
    const Bytes f = Edit(*kept_, [&](RawFile *raw) {
        RawSection &s = raw->sections[FirstSparse(*raw)];
        s.header[sec::kBits] = 16;
        s.header[sec::kQuantizer] = SQKV_QUANT_EXACT;
        s.header[sec::kGranularity] = SQKV_SCALE_NONE;
    });
    ExpectBoth(f, SQKV_ERR_PAYLOAD_PARAMS, "ALL_KEPT with EXACT");
}

TEST_F(Format11Malformed, CheckOrderOfStepFour) {
    // §5.2 step 4: SECTION_FIELD checks (in their order) come before PAYLOAD_PARAMS and SECTION_RANGE.
    struct Case {
        const Base *base;
        uint32_t required;
        std::function<void(RawSection *)> edit;
        sqkv_error want;
        const char *what;
    };
    const Case cases[] = {
        {kept_, 0x3, [](RawSection *s) { s->header[sec::kQuantizer] = 0; }, SQKV_ERR_SECTION_FIELD,
         "ALL_KEPT undeclared before EXACT-with-4-bits"},
        {half_, 0x5, [](RawSection *s) { s->header[sec::kQuantizer] = 0; }, SQKV_ERR_SECTION_FIELD,
         "PER_HALF_TILE undeclared before EXACT-with-granularity"},
        {kept_, 0x4, [](RawSection *s) { s->header[sec::kOffsetLog2] = 1; s->header[sec::kQuantizer] = 0; },
         SQKV_ERR_SECTION_FIELD, "ALL_KEPT with k before EXACT"},
        {kept_, 0x4, [](RawSection *s) { s->header[sec::kGranularity] = 4; }, SQKV_ERR_PAYLOAD_PARAMS,
         "granularity 4 is unknown: PAYLOAD_PARAMS"},
        {half_, 0x2, [](RawSection *s) { s->header[sec::kGranularity] = 4; }, SQKV_ERR_PAYLOAD_PARAMS,
         "granularity 4 with HALF_TILE_SCALES declared"},
        {three_, 0x1, [](RawSection *s) { s->header[sec::kGranularity] = 0; }, SQKV_ERR_PAYLOAD_PARAMS,
         "3-bit SYMMETRIC with NONE"},
        {three_, 0x1, [](RawSection *s) { s->header[sec::kQuantizer] = 0; }, SQKV_ERR_PAYLOAD_PARAMS,
         "EXACT with 3 bits"},
    };
    for (const Case &c : cases) {
        Bytes f = Edit(*c.base, [&](RawFile *raw) { c.edit(&raw->sections[FirstSparse(*raw)]); });
        Put32(&f, hdr::kRequired, c.required);
        FixHeaderChecksum(&f);
        EXPECT_ERR(f, c.want) << c.what;
    }
    // (Not tested here: SECTION_FIELD before SECTION_RANGE. Coordinates are also in the INDEX entries,
    // which a random-access reader checks when it opens the file, and the streaming decoder checks a
    // section's coordinates before its other fields, for 1.0 rules as well.)
}

TEST_F(Format11Malformed, AllKeptSizeMismatch) {
    const int i = FirstSparse(kept_->raw);
    // decoded_size 8 more or 8 less than scales + payload (the body grows or shrinks with it).
    Bytes longer = Edit(*kept_, [&](RawFile *raw) { raw->sections[i].body.resize(raw->sections[i].body.size() + 8, 0); });
    ExpectBoth(longer, SQKV_ERR_SIZE_MISMATCH, "ALL_KEPT decoded_size + 8");
    Bytes shorter = Edit(*kept_, [&](RawFile *raw) { raw->sections[i].body.resize(raw->sections[i].body.size() - 8); });
    ExpectBoth(shorter, SQKV_ERR_SIZE_MISMATCH, "ALL_KEPT decoded_size - 8");
    // A body laid out as if the bitmaps and offsets were there: far too long.
    Bytes with_bitmaps = Edit(*kept_, [&](RawFile *raw) {
        const SparseStreams l = SparseLayout(raw->sections[i], kD);
        raw->sections[i].body.insert(raw->sections[i].body.begin(), 8 * l.tiles, 0xFF);
    });
    EXPECT_ERR(with_bitmaps, SQKV_ERR_SIZE_MISMATCH);
}

TEST_F(Format11Malformed, ThreeBitPaddingAfterTheLastCode) {
    const int i = FirstSparse(three_->raw);
    const SparseStreams l = SparseLayout(three_->raw.sections[i], kD);
    ASSERT_EQ(l.end, three_->raw.sections[i].body.size()) << "test model of the layout";
    const uint64_t code_bits = 3 * l.kept;
    ASSERT_NE(code_bits % 8, 0u) << "choose a base whose codes end inside a byte";
    const uint64_t payload_bits = 8 * (l.end - l.payload_at);
    for (uint64_t bit : {code_bits, code_bits + 1, (code_bits / 8) * 8 + 7, payload_bits - 1}) {
        if (bit >= payload_bits) continue;
        const Bytes f = Edit(*three_, [&](RawFile *raw) {
            raw->sections[i].body[l.payload_at + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        });
        if (bit == code_bits) ExpectBoth(f, SQKV_ERR_PADDING, "the bit right after the last 3-bit code");
        else EXPECT_ERR(f, SQKV_ERR_PADDING) << "bit " << bit;
    }
    // The last code's own top bit is data, not padding.
    const Bytes g = Edit(*three_, [&](RawFile *raw) {
        const uint64_t bit = code_bits - 1;
        raw->sections[i].body[l.payload_at + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    });
    EXPECT_ERR(g, SQKV_OK);
}

TEST_F(Format11Malformed, NonzeroParameterInAnEmptyHalfTile) {
    // Keys: the last chunk holds token 64 only (S = 65), so for every channel, group 2n + 1 (elements
    // 32..63) of that chunk's tile is all padding: an empty group (§7.4) whose parameters must be +0.
    const int i = FirstSparse(half_->raw, 0);
    const RawSection &s = half_->raw.sections[i];
    const SparseStreams l = SparseLayout(s, kD);
    ASSERT_EQ(l.groups, 2 * l.tiles);
    ASSERT_EQ(l.params, 2u);
    // Chunk 1 (token 64 only), a channel whose element of token 64 was kept.
    uint64_t tile = kD;
    while (tile < 2 * kD && !(Get64(s.body, 8 * tile) >> 63)) tile++;
    ASSERT_LT(tile, 2u * kD);
    const uint64_t group = 2 * tile + 1;
    ASSERT_EQ(Get16(s.body, l.scales_at + 4 * group), 0u);
    ASSERT_EQ(Get16(s.body, l.scales_at + 4 * group + 2), 0u);
    for (int param : {0, 1})
        for (uint16_t value : {uint16_t{0x3C00}, uint16_t{0x8000}, uint16_t{0x0001}}) {
            const Bytes f = Edit(*half_, [&](RawFile *raw) {
                Put16(&raw->sections[i].body, l.scales_at + 4 * group + 2 * param, value);
            });
            if (param == 0 && value == 0x3C00) ExpectBoth(f, SQKV_ERR_SCALE, "s = 1 in an empty half tile");
            else EXPECT_ERR(f, SQKV_ERR_SCALE) << "param " << param << " value " << value;
        }
    // The half of the same tile that holds token 64 is not empty: its parameters are the encoder's.
    EXPECT_TRUE(Get16(s.body, l.scales_at + 4 * (2 * tile)) != 0 || Get16(s.body, l.scales_at + 4 * (2 * tile) + 2) != 0);
}

// The same rule in ALL_KEPT sections (§7.6), whose bitmaps are implied: keys with S = 65 (every
// channel's tile of the last chunk holds one element, so its second half is empty) and values with
// head_dim 20 (every tile's elements 32..63 are padding). The decoder walks the implied bitmaps in
// tile order; every empty group of both heads is edited, one at a time.
TEST(Format11KeepAll, NonzeroParameterInAnEmptyHalfTile) {
    const sqkv_writer_options o = TestOptions(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, SQKV_PRUNE_KEEP_ALL);
    for (uint32_t d : {kD, 20u}) {
        Base b;
        b.opts = o;
        b.cache = MakeRandomCache(MakeGeometry(1, 2, d, kT, kW), SQKV_DTYPE_FP32, 78);
        std::string detail;
        ASSERT_EQ(EncodeCache(b.cache, o, &b.file, &detail), SQKV_OK) << detail;
        ASSERT_TRUE(ParseRaw(b.file, &b.raw));
        ASSERT_EQ(ErrName(DecodeEverything(b.file)), ErrName(SQKV_OK));
        for (int tensor : {0, 1}) {
            const int i = FirstSparse(b.raw, tensor);
            ASSERT_GE(i, 0);
            const RawSection &sec = b.raw.sections[i];
            const SparseStreams l = SparseLayout(sec, d);
            ASSERT_EQ(l.groups, 2 * l.tiles);
            std::vector<uint64_t> empty;  // groups that are all padding, from the tile layout (§7.1)
            const uint64_t per_head = l.tiles / sec.head_count();
            for (uint64_t t = 0; t < l.tiles; t++) {
                const uint64_t n = t % per_head;
                const bool last_key_chunk = tensor == 0 && n >= (kT - kW) / 64 * d;
                if ((tensor == 0 && last_key_chunk && (kT - kW) % 64 <= 32) || (tensor == 1 && d <= 32))
                    empty.push_back(2 * t + 1);
            }
            if (tensor == 1 && d > 32) {
                ASSERT_TRUE(empty.empty());
                continue;
            }
            ASSERT_FALSE(empty.empty()) << "tensor " << tensor << " d " << d;
            for (uint64_t group : empty) {
                ASSERT_EQ(Get16(sec.body, l.scales_at + 4 * group), 0u) << group;
                ASSERT_EQ(Get16(sec.body, l.scales_at + 4 * group + 2), 0u) << group;
                const Bytes f = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[i].body, l.scales_at + 4 * group + 2, 0x0001); });
                ASSERT_EQ(ErrName(DecodeEverything(f)), ErrName(SQKV_ERR_SCALE)) << "tensor " << tensor << " d " << d
                                                                               << " group " << group;
            }
            // A group that holds elements keeps the encoder's parameters (at least one nonzero).
            const uint64_t full = 0;
            EXPECT_TRUE(Get16(sec.body, l.scales_at + 4 * full) != 0 || Get16(sec.body, l.scales_at + 4 * full + 2) != 0);
        }
    }
}

TEST_F(Format11Malformed, AllKeptCodecOneHasFourStreams) {
    // §7.6: with codec 1 the stream table still has four records; the first two describe empty streams.
    const int i = FirstSparse(kept_->raw);
    AssembleOptions keep_sizes;
    keep_sizes.fix_sizes = false;
    const Bytes f =
        Edit(*kept_, [&](RawFile *raw) { raw->sections[i] = ToCodec1(raw->sections[i], kD, {0, 0, 0, 1}); }, keep_sizes);
    RawFile check;
    ASSERT_TRUE(ParseRaw(f, &check));
    EXPECT_EQ(Get64(check.sections[i].body, 8), 0u);
    EXPECT_EQ(Get64(check.sections[i].body, 24), 0u);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(f, &r), SQKV_OK);
    ExpectBoth(f, SQKV_OK, "ALL_KEPT with codec 1");
    // Three records (as if the empty streams were left out) do not add up.
    Bytes three_records = Edit(*kept_, [&](RawFile *raw) {
        RawSection &s = raw->sections[i];
        const SparseStreams l = SparseLayout(s, kD);
        const Bytes scales(s.body.begin() + l.scales_at, s.body.begin() + l.payload_at);
        const Bytes payload(s.body.begin() + l.payload_at, s.body.end());
        const size_t decoded = s.body.size();
        s.body = StreamsStoredBody({{0, Bytes()}, {0, scales}, {1, ZstdFrame(payload)}});
        s.header[sec::kCodec] = 1;
        Put64(&s.header, sec::kStoredSize, s.body.size());
        Put64(&s.header, sec::kDecodedSize, decoded);
    }, keep_sizes);
    EXPECT_NE(ErrName(DecodeEverything(three_records)), ErrName(SQKV_OK));
}

}  // namespace
