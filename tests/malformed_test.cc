// malformed_test.cc: files that break exactly one rule of spec/FORMAT.md, built by taking a valid file
// apart and putting it back together with every checksum, size, index entry and the tail recomputed
// (tests/support/sqkv_file.h), so the decoder reaches the rule under test. Each case asserts the
// specific error the spec names for that rule.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "sqkv_file.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

// Error names read better than numbers in failure messages.
#define EXPECT_ERR(bytes, code) EXPECT_EQ(ErrName(DecodeEverything(bytes)), ErrName(code))

constexpr uint32_t kD = 40, kT = 70, kW = 5, kS = kT - kW;  // head_dim 40: value tiles have padding;
                                                           // S = 65: the last key chunk has 1 token


// A valid file: 2 layers, 2 heads, with TOKENS (odd count: 70 ids), a 5-byte FINGERPRINT (section
// padding) and METADATA. Head 0's token 3 is all zeros (an empty value tile) and head 1's sparse region
// of layer 1 is all zeros (an empty PER_HEAD group).
struct Base {
    Cache cache;
    sqkv_writer_options opts;
    Bytes file;
    RawFile raw;
};

Base MakeBase(const sqkv_writer_options &opts, sqkv_dtype e = SQKV_DTYPE_FP16) {
    Base b;
    b.opts = opts;
    b.cache = MakeRandomCache(MakeGeometry(2, 2, kD, kT, kW, e), SQKV_DTYPE_FP32, 99);
    for (uint32_t l = 0; l < 2; l++)
        for (Bytes *t : {&b.cache.k[l], &b.cache.v[l]}) {
            std::memset(t->data() + 3 * kD * 4, 0, kD * 4);
            if (l == 1) std::memset(t->data() + static_cast<size_t>(kT) * kD * 4, 0, static_cast<size_t>(kS) * kD * 4);
        }
    b.cache.has_tokens = true;
    for (uint32_t t = 0; t < kT; t++) b.cache.tokens.push_back(static_cast<int32_t>(t * 31));
    b.cache.fingerprint = {0xA1, 0xB2, 0xC3, 0xD4, 0xE5};
    b.cache.metadata = {{"model", "m"}, {"note", "x"}};
    std::string detail;
    EXPECT_EQ(EncodeCache(b.cache, opts, &b.file, &detail), SQKV_OK) << detail;
    EXPECT_TRUE(ParseRaw(b.file, &b.raw));
    return b;
}

// Index in raw.sections of the first section matching.
int Find(const RawFile &f, uint16_t kind, int tensor = -1, int layer = -1, int head = -1) {
    for (size_t i = 0; i < f.sections.size(); i++) {
        const RawSection &s = f.sections[i];
        if (s.kind() != kind) continue;
        if (tensor >= 0 && s.tensor() != tensor) continue;
        if (layer >= 0 && s.layer() != static_cast<uint32_t>(layer)) continue;
        if (head >= 0 && s.head_start() != static_cast<uint32_t>(head)) continue;
        return static_cast<int>(i);
    }
    return -1;
}

Bytes Edit(const Base &b, const std::function<void(RawFile *)> &fn, const AssembleOptions &o = AssembleOptions()) {
    RawFile f = b.raw;
    fn(&f);
    return Assemble(f, o);
}

Bytes EditHeader(const Base &b, size_t off, const Bytes &value, bool fix_checksum = true) {
    Bytes f = b.file;
    std::copy(value.begin(), value.end(), f.begin() + off);
    if (fix_checksum) FixHeaderChecksum(&f);
    return f;
}
Bytes EditHeader32(const Base &b, size_t off, uint32_t v) {
    Bytes f = b.file;
    Put32(&f, off, v);
    FixHeaderChecksum(&f);
    return f;
}
Bytes EditHeader8(const Base &b, size_t off, uint8_t v) { return EditHeader(b, off, Bytes{v}); }

// Decoded output of every (layer, tensor) in fp32, concatenated.
Bytes DecodedAll(const Bytes &file) {
    ReaderPtr r;
    Bytes all, out;
    if (OpenMemory(file, &r) != SQKV_OK) return all;
    for (uint32_t l = 0; l < 2; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            if (DecodeTensor(r.get(), l, t, SQKV_DTYPE_FP32, &out) != SQKV_OK) return Bytes();
            all.insert(all.end(), out.begin(), out.end());
        }
    return all;
}

class Malformed : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        asym_tile_ = new Base(MakeBase(TestOptions(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE)));
        sym_head_ = new Base(MakeBase(TestOptions(2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD)));
        exact_ = new Base(MakeBase(TestOptions(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE)));
    }
    static void TearDownTestSuite() {
        delete asym_tile_;
        delete sym_head_;
        delete exact_;
    }
    void SetUp() override {
        for (const Base *b : {asym_tile_, sym_head_, exact_}) {
            ASSERT_FALSE(b->raw.sections.empty()) << "base file did not encode/parse";
            ASSERT_EQ(ErrName(DecodeEverything(b->file)), ErrName(SQKV_OK)) << "base file must be valid";
            ASSERT_EQ(Assemble(b->raw), b->file) << "test-side assembler must reproduce the encoder's bytes";
        }
    }
    static Base *asym_tile_, *sym_head_, *exact_;
};
Base *Malformed::asym_tile_ = nullptr;
Base *Malformed::sym_head_ = nullptr;
Base *Malformed::exact_ = nullptr;

// ---- file header (§4) ---------------------------------------------------------------------------

TEST_F(Malformed, BadMagic) {
    for (size_t i = 0; i < 8; i++) {
        Bytes f = asym_tile_->file;
        f[i] ^= 0x20;
        EXPECT_ERR(f, SQKV_ERR_BAD_MAGIC) << "magic byte " << i;
    }
}

TEST_F(Malformed, MajorVersionOtherThanOne) {
    for (uint16_t major : {0, 2, 0xFFFF}) {
        Bytes f = asym_tile_->file;
        Put16(&f, hdr::kVersionMajor, major);
        EXPECT_ERR(f, SQKV_ERR_UNSUPPORTED_VERSION) << major << " (checksum not fixed: checked before)";
        FixHeaderChecksum(&f);
        EXPECT_ERR(f, SQKV_ERR_UNSUPPORTED_VERSION) << major;
    }
}

TEST_F(Malformed, AnyMinorVersionIsAccepted) {
    Bytes f = asym_tile_->file;
    Put16(&f, hdr::kVersionMinor, 7);
    FixHeaderChecksum(&f);
    EXPECT_ERR(f, SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(f, &r), SQKV_OK);
    uint32_t major, minor;
    ASSERT_EQ(sqkv_reader_version(r.get(), &major, &minor), SQKV_OK);
    EXPECT_EQ(minor, 7u);
}

TEST_F(Malformed, HeaderSizeOutOfRange) {
    for (uint32_t size : {0u, 56u, 63u, 65u, 68u, 4097u, 4104u, 0xFFFFFFF8u}) {
        Bytes f = asym_tile_->file;
        Put32(&f, hdr::kHeaderSize, size);
        EXPECT_ERR(f, SQKV_ERR_HEADER_SIZE) << size;
    }
}

TEST_F(Malformed, LongerHeaderOfALaterMinorVersionIsSkipped) {
    // §4: a later minor version may append fields before the checksum; a v1 decoder skips them.
    const Base &b = *asym_tile_;
    const Bytes f = Edit(b, [](RawFile *raw) {
        Bytes h(raw->header.begin(), raw->header.begin() + 56);
        for (int i = 0; i < 8; i++) h.push_back(static_cast<uint8_t>(0xA0 + i));  // unknown new fields
        h.resize(80, 0);                                                           // ... + checksum
        Put32(&h, hdr::kHeaderSize, 80);
        Put16(&h, hdr::kVersionMinor, 1);
        raw->header = h;
    });
    EXPECT_ERR(f, SQKV_OK);
    EXPECT_EQ(DecodedAll(f), DecodedAll(b.file));
}

TEST_F(Malformed, HeaderChecksum) {
    Bytes f = asym_tile_->file;
    f[56] ^= 1;
    EXPECT_ERR(f, SQKV_ERR_HEADER_CHECKSUM);
    f = asym_tile_->file;
    f[hdr::kLayers] ^= 1;  // a field change without the fix-up
    EXPECT_ERR(f, SQKV_ERR_HEADER_CHECKSUM);
}

TEST_F(Malformed, UnknownRequiredFeature) {
    // Bits 0..2 are the 1.1 features (§4.1); the rest are unknown to this decoder.
    for (uint32_t bit : {3u, 7u, 31u}) EXPECT_ERR(EditHeader32(*asym_tile_, hdr::kRequired, 1u << bit), SQKV_ERR_UNSUPPORTED_FEATURE) << bit;
}

TEST_F(Malformed, UnknownOptionalFeatureIsIgnored) {
    EXPECT_ERR(EditHeader32(*asym_tile_, hdr::kOptional, 0x80000001u), SQKV_OK);
}

TEST_F(Malformed, ReservedHeaderBytes) {
    for (size_t i = 0; i < 8; i++) EXPECT_ERR(EditHeader8(*asym_tile_, hdr::kReserved + i, 1), SQKV_ERR_RESERVED) << i;
}

TEST_F(Malformed, HeaderFieldsOutOfRange) {
    const Base &b = *asym_tile_;
    EXPECT_ERR(EditHeader32(b, hdr::kLayers, 0), SQKV_ERR_HEADER_FIELD);
    EXPECT_ERR(EditHeader32(b, hdr::kHeads, 0), SQKV_ERR_HEADER_FIELD);
    EXPECT_ERR(EditHeader32(b, hdr::kHeadDim, 0), SQKV_ERR_HEADER_FIELD);
    EXPECT_ERR(EditHeader32(b, hdr::kTokens, 0), SQKV_ERR_HEADER_FIELD);
    EXPECT_ERR(EditHeader32(b, hdr::kDenseWindow, kT + 1), SQKV_ERR_HEADER_FIELD);
    EXPECT_ERR(EditHeader32(b, hdr::kDenseWindow, 0xFFFFFFFFu), SQKV_ERR_HEADER_FIELD);
    for (uint8_t v : {0, 3, 255}) EXPECT_ERR(EditHeader8(b, hdr::kValueDtype, v), SQKV_ERR_HEADER_FIELD) << int(v);
    for (uint8_t v : {0, 4, 255}) EXPECT_ERR(EditHeader8(b, hdr::kSourceDtype, v), SQKV_ERR_HEADER_FIELD) << int(v);
    for (uint8_t v : {0, 5, 7}) EXPECT_ERR(EditHeader8(b, hdr::kTileLog2, v), SQKV_ERR_HEADER_FIELD) << int(v);
    for (uint8_t v : {0, 2, 255}) EXPECT_ERR(EditHeader8(b, hdr::kChecksumKind, v), SQKV_ERR_HEADER_FIELD) << int(v);
}

TEST_F(Malformed, GeometryBeyondFormatMaximaIsLimit) {
    const Base &b = *asym_tile_;
    EXPECT_ERR(EditHeader32(b, hdr::kLayers, 1025), SQKV_ERR_LIMIT);
    EXPECT_ERR(EditHeader32(b, hdr::kHeads, 1025), SQKV_ERR_LIMIT);
    EXPECT_ERR(EditHeader32(b, hdr::kHeadDim, 1025), SQKV_ERR_LIMIT);
    EXPECT_ERR(EditHeader32(b, hdr::kTokens, (1u << 28) + 1), SQKV_ERR_LIMIT);
    EXPECT_ERR(EditHeader32(b, hdr::kTokens, 0xFFFFFFFFu), SQKV_ERR_LIMIT);
}

TEST_F(Malformed, GeometryThatTheSectionsDoNotCover) {
    const Base &b = *asym_tile_;
    EXPECT_ERR(EditHeader32(b, hdr::kLayers, 3), SQKV_ERR_COVERAGE);  // layer 2 missing
    EXPECT_ERR(EditHeader32(b, hdr::kHeads, 3), SQKV_ERR_COVERAGE);   // head 2 missing
    EXPECT_ERR(EditHeader32(b, hdr::kLayers, 1), SQKV_ERR_SECTION_RANGE);  // sections of layer 1
    EXPECT_ERR(EditHeader32(b, hdr::kHeads, 1), SQKV_ERR_SECTION_RANGE);   // sections of head 1
    // In a file that was never appended to, the header's n_tokens and dense_window must equal the
    // INDEX's (§9.1): a violation is COVERAGE.
    EXPECT_ERR(EditHeader32(b, hdr::kTokens, kT - 1), SQKV_ERR_COVERAGE);
    // INDEX n_tokens below the header's (§5.2): SECTION_FIELD.
    EXPECT_ERR(EditHeader32(b, hdr::kTokens, kT + 1), SQKV_ERR_SECTION_FIELD);
    EXPECT_ERR(EditHeader32(b, hdr::kDenseWindow, kW + 1), SQKV_ERR_COVERAGE);
    // The same geometry change in both places: sections outside the (INDEX's) geometry.
    const Bytes f = Edit(b, [](RawFile *raw) {
        Put32(&raw->header, hdr::kTokens, kT - 1);
        Put32(&raw->header, hdr::kDenseWindow, kW - 1);
        raw->index_n_tokens = kT - 1;
        raw->index_dense_window = kW - 1;
    });
    EXPECT_ERR(f, SQKV_ERR_SECTION_RANGE);
}

// ---- tail and layout (§2, §9) -------------------------------------------------------------------

TEST_F(Malformed, BadEndMagic) {
    for (size_t i = 0; i < 8; i++) {
        Bytes f = asym_tile_->file;
        f[f.size() - 8 + i] ^= 0x01;
        EXPECT_ERR(f, SQKV_ERR_BAD_TAIL) << i;
    }
}

TEST_F(Malformed, TrailingBytesAfterTheTail) {
    Bytes f = asym_tile_->file;
    const Bytes tail(f.end() - 16, f.end());
    f.insert(f.end(), tail.begin(), tail.end());  // tail still well-formed, file 16 bytes too long
    EXPECT_ERR(f, SQKV_ERR_SECTION_LAYOUT);
}

TEST_F(Malformed, IndexOffsetInTailPointsElsewhere) {
    const Base &b = *asym_tile_;
    for (int64_t delta : {-8, 8, -64}) {
        Bytes f = b.file;
        Put64(&f, f.size() - 16, Get64(f, f.size() - 16) + delta);
        EXPECT_NE(DecodeEverything(f), SQKV_OK) << delta;
    }
    Bytes f = b.file;
    Put64(&f, f.size() - 16, ~uint64_t{0} - 7);
    EXPECT_NE(DecodeEverything(f), SQKV_OK);
}

TEST_F(Malformed, GapBetweenSections) {
    const Bytes f = Edit(*asym_tile_, [](RawFile *raw) {
        RawSection &s = raw->sections[3];
        s.padding.assign((8 - s.body.size() % 8) % 8 + 8, 0);  // 8 bytes more than align8
    });
    EXPECT_ERR(f, SQKV_ERR_SECTION_LAYOUT);
}

TEST_F(Malformed, IndexListingTooFewSections) {
    const Base &b = *asym_tile_;
    AssembleOptions o;
    o.rebuild_index = false;
    // Drop the last entry; the tail (the INDEX section's own offset, unchanged) stays at the end.
    const Bytes f = Edit(b, [](RawFile *raw) {
        Bytes &body = raw->index.body;
        body.erase(body.end() - kTailSize - kIndexEntry, body.end() - kTailSize);
    }, o);
    EXPECT_ERR(f, SQKV_ERR_SECTION_LAYOUT);
}

TEST_F(Malformed, IndexEntryDisagreesWithSectionHeader) {
    const Base &b = *asym_tile_;
    AssembleOptions o;
    o.rebuild_index = false;  // index keeps the original coordinates
    const int k0 = Find(b.raw, kKindSparse, 0, 0, 0);
    ASSERT_GE(k0, 0);
    for (size_t field : {sec::kLayer, sec::kHeadStart}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { Put32(&raw->sections[k0].header, field, 1); }, o);
        EXPECT_ERR(f, SQKV_ERR_INDEX_MISMATCH) << "field at " << field;
    }
    // A DENSE window relabelled K -> V in its header only (the size is the same for both tensors).
    const int dense = Find(b.raw, kKindDense, 0, 0, 0);
    const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[dense].header[sec::kTensor] = 1; }, o);
    EXPECT_ERR(f, SQKV_ERR_INDEX_MISMATCH) << "tensor";
    // A different kind in the header: its header fields are checked first (§5.2 step 4 before step 6):
    // a SPARSE header with payload_bits 0 is SECTION_FIELD.
    const Bytes g = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[dense].header, sec::kKind, kKindSparse); }, o);
    EXPECT_ERR(g, SQKV_ERR_SECTION_FIELD) << "kind";
    // The stored size in the header differs from the entry's: the walk of the index decides the layout,
    // so the header's size is the disagreement (step 5 or 6: SIZE_MISMATCH or INDEX_MISMATCH).
    const Bytes h = Edit(b, [&](RawFile *raw) {
        RawSection &s = raw->sections[dense];
        Put64(&s.header, sec::kStoredSize, s.body.size() + 8);
        Put64(&s.header, sec::kDecodedSize, s.body.size() + 8);
    }, [] { AssembleOptions a; a.rebuild_index = false; a.fix_sizes = false; return a; }());
    const sqkv_error err = DecodeEverything(h);
    EXPECT_TRUE(err == SQKV_ERR_INDEX_MISMATCH || err == SQKV_ERR_SIZE_MISMATCH) << ErrName(err);
}

TEST_F(Malformed, IndexEntryReservedFlagBits) {
    AssembleOptions o;
    o.rebuild_index = false;
    for (uint8_t flags : {0x02, 0x80}) {
        const Bytes f = Edit(*asym_tile_, [&](RawFile *raw) { raw->index.body[kIndexPrefix + 40 * 2 + 19] = flags; }, o);
        EXPECT_ERR(f, SQKV_ERR_RESERVED) << "entry flags " << int(flags);
    }
}

TEST_F(Malformed, IndexSectionHeaderFields) {
    for (size_t field : {sec::kLayer, sec::kHeadCount, sec::kTokenCount}) {
        const Bytes f = Edit(*asym_tile_, [&](RawFile *raw) { Put32(&raw->index.header, field, 1); });
        EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << field;
    }
    const Bytes f = Edit(*asym_tile_, [&](RawFile *raw) { raw->index.header[sec::kTensor] = 1; });
    EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD);
    // §5.2: an INDEX with codec 1, an INDEX n_tokens below the header's, or an INDEX dense_window above
    // its n_tokens are SECTION_FIELD.
    EXPECT_ERR(Edit(*asym_tile_, [&](RawFile *raw) { raw->index.header[sec::kCodec] = 1; }), SQKV_ERR_SECTION_FIELD);
    EXPECT_ERR(Edit(*asym_tile_, [&](RawFile *raw) { raw->index_n_tokens = kT - 1; }), SQKV_ERR_SECTION_FIELD);
    EXPECT_ERR(Edit(*asym_tile_, [&](RawFile *raw) { raw->index_dense_window = kT + 1; }), SQKV_ERR_SECTION_FIELD);
    // A never-appended file whose INDEX length differs from the header's (§9.1): COVERAGE.
    EXPECT_ERR(Edit(*asym_tile_, [&](RawFile *raw) { raw->index_n_tokens = kT + 1; }), SQKV_ERR_COVERAGE);
    EXPECT_ERR(Edit(*asym_tile_, [&](RawFile *raw) { raw->index_dense_window = kW + 1; }), SQKV_ERR_COVERAGE);
}

// ---- section headers (§5, §6) -------------------------------------------------------------------

TEST_F(Malformed, SectionHeaderChecksum) {
    const Base &b = *asym_tile_;
    for (int i : {0, Find(b.raw, kKindSparse), Find(b.raw, kKindDense)}) {
        AssembleOptions o;
        o.fix_section_checksums = false;
        const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[i].header[sec::kHeaderChecksum + 3] ^= 0x40; }, o);
        EXPECT_ERR(f, SQKV_ERR_SECTION_HEADER_CHECKSUM) << "section " << i;
    }
}

TEST_F(Malformed, SectionBodyChecksum) {
    const Base &b = *asym_tile_;
    for (int i : {0, 1, 2, Find(b.raw, kKindSparse), Find(b.raw, kKindDense)}) {
        AssembleOptions o;
        o.fix_body_checksums = false;
        const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[i].body[1] ^= 0x01; }, o);
        EXPECT_ERR(f, SQKV_ERR_SECTION_CHECKSUM) << "section " << i;
    }
}

RawSection MakeSection(uint16_t kind, const Bytes &body) {
    RawSection s;
    Put16(&s.header, sec::kKind, kind);
    s.body = body;
    return s;
}

TEST_F(Malformed, UnknownCriticalSectionKind) {
    for (uint16_t kind : {0x0004, 0x0000, 0x7FFF}) {
        const Bytes f = Edit(*asym_tile_, [&](RawFile *raw) {
            raw->sections.insert(raw->sections.begin() + 1, MakeSection(kind, Bytes(12, 7)));
        });
        EXPECT_ERR(f, SQKV_ERR_UNKNOWN_SECTION) << std::hex << kind;
    }
}

TEST_F(Malformed, UnknownAncillarySectionKindIsSkipped) {
    const Base &b = *asym_tile_;
    for (uint16_t kind : {0x8004, 0xFFFF}) {
        const Bytes f = Edit(b, [&](RawFile *raw) {
            raw->sections.insert(raw->sections.begin() + 1, MakeSection(kind, Bytes{1, 2, 3, 4, 5}));
            raw->sections.push_back(MakeSection(kind, Bytes(16, 9)));  // twice: no count rule for unknown kinds
        });
        EXPECT_ERR(f, SQKV_OK) << std::hex << kind;
        EXPECT_EQ(DecodedAll(f), DecodedAll(b.file));
        // Its checksums are still verified (§6).
        AssembleOptions o;
        o.fix_body_checksums = false;
        const Bytes g = Edit(b, [&](RawFile *raw) {
            RawSection s = MakeSection(kind, Bytes{1, 2, 3, 4, 5});
            Put64(&s.header, sec::kStoredSize, 5);
            Put64(&s.header, sec::kDecodedSize, 5);
            Put64(&s.header, sec::kBodyChecksum, 12345);
            raw->sections.insert(raw->sections.begin() + 1, s);
        }, o);
        EXPECT_ERR(g, SQKV_ERR_SECTION_CHECKSUM) << std::hex << kind;
    }
}

TEST_F(Malformed, UnknownAncillaryHeaderFieldsAreNotChecked) {
    // §5.2: for unknown ancillary kinds only the checksums, the size limits and the index agreement
    // apply, so that a later minor version may give their other fields meaning. (codec and flags are
    // left out here: §12 says unknown codecs and flags are rejected, which contradicts §5.2 for them.)
    const Base &b = *asym_tile_;
    const Bytes f = Edit(b, [&](RawFile *raw) {
        RawSection s = MakeSection(0x8123, Bytes{9, 8, 7});
        s.header[sec::kTensor] = 3;
        Put32(&s.header, sec::kLayer, 99);
        Put32(&s.header, sec::kHeadCount, 5);
        s.header[sec::kBits] = 3;
        s.header[sec::kQuantizer] = 9;
        Put32(&s.header, sec::kTokenStart, 0xFFFFFFFFu);
        raw->sections.insert(raw->sections.begin() + 2, s);
    });
    EXPECT_ERR(f, SQKV_OK);
    EXPECT_EQ(DecodedAll(f), DecodedAll(b.file));
    // ... but it must still agree with its index entry.
    AssembleOptions o;
    o.rebuild_index = false;
    RawFile with = b.raw;
    with.sections.insert(with.sections.begin() + 2, MakeSection(0x8123, Bytes(8, 1)));
    const Bytes base = Assemble(with);
    RawFile parsed;
    ASSERT_TRUE(ParseRaw(base, &parsed));
    Put32(&parsed.sections[2].header, sec::kLayer, 1);
    EXPECT_ERR(Assemble(parsed, o), SQKV_ERR_INDEX_MISMATCH);
}

TEST_F(Malformed, UnsupportedCodec) {
    const Base &b = *asym_tile_;
    for (int i : {Find(b.raw, kKindSparse), Find(b.raw, kKindDense), Find(b.raw, kKindTokens)}) {
        for (uint8_t codec : {2, 255}) {
            const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[i].header[sec::kCodec] = codec; });
            EXPECT_ERR(f, SQKV_ERR_UNSUPPORTED_CODEC) << "section " << i << " codec " << int(codec);
        }
    }
}

TEST_F(Malformed, SectionFlags) {
    const Base &b = *asym_tile_;
    for (int i : {Find(b.raw, kKindSparse), Find(b.raw, kKindDense), Find(b.raw, kKindMetadata)}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { Put32(&raw->sections[i].header, sec::kFlags, 0x100); });
        EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << "section " << i;
    }
}

TEST_F(Malformed, FieldsThatMustBeZeroForTheKind) {
    const Base &b = *asym_tile_;
    const int tokens = Find(b.raw, kKindTokens), fp = Find(b.raw, kKindFingerprint), dense = Find(b.raw, kKindDense);
    struct Case {
        int section;
        size_t field;
        int width;
        const char *what;
    };
    const Case cases[] = {
        {tokens, sec::kTensor, 1, "TOKENS tensor"},        {tokens, sec::kLayer, 4, "TOKENS layer"},
        {fp, sec::kHeadCount, 4, "FINGERPRINT head_count"}, {fp, sec::kTokenStart, 4, "FINGERPRINT token_start"},
        {dense, sec::kBits, 1, "DENSE payload_bits"},       {dense, sec::kQuantizer, 1, "DENSE quantizer"},
        {dense, sec::kGranularity, 1, "DENSE scale_granularity"},
        {dense, sec::kOffsetLog2, 1, "DENSE offset_interval_log2"},
    };
    for (const Case &c : cases) {
        const Bytes f = Edit(b, [&](RawFile *raw) {
            if (c.width == 1)
                raw->sections[c.section].header[c.field] = 1;
            else
                Put32(&raw->sections[c.section].header, c.field, 1);
        });
        EXPECT_ERR(f, SQKV_ERR_SECTION_FIELD) << c.what;
    }
}

TEST_F(Malformed, TensorSectionFieldsOutOfDomain) {
    const Base &b = *asym_tile_;
    const int sparse = Find(b.raw, kKindSparse, 0, 0, 0);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[sparse].header[sec::kTensor] = 2; }), SQKV_ERR_SECTION_FIELD);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[sparse].header, sec::kHeadCount, 0); }),
               SQKV_ERR_SECTION_FIELD);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[sparse].header, sec::kTokenCount, 0); }),
               SQKV_ERR_SECTION_FIELD);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[sparse].header[sec::kOffsetLog2] = 21; }),
               SQKV_ERR_SECTION_FIELD);
}

TEST_F(Malformed, TensorSectionCoordinatesOutsideTheGeometry) {
    const Base &b = *asym_tile_;
    const int sparse = Find(b.raw, kKindSparse, 0, 1, 1);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[sparse].header, sec::kLayer, 2); }),
               SQKV_ERR_SECTION_RANGE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[sparse].header, sec::kHeadStart, 2); }),
               SQKV_ERR_SECTION_RANGE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[sparse].header, sec::kHeadStart, 0xFFFFFFFFu); }),
               SQKV_ERR_SECTION_RANGE);
    const int dense = Find(b.raw, kKindDense, 1, 1, 1);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[dense].header, sec::kTokenStart, kS + 1); }),
               SQKV_ERR_SECTION_RANGE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[dense].header, sec::kTokenStart, 0xFFFFFFFEu); }),
               SQKV_ERR_SECTION_RANGE);
}

TEST_F(Malformed, StoredAndDecodedSizeDisagreeWithoutCodec) {
    AssembleOptions o;
    o.fix_sizes = false;
    const Base &b = *asym_tile_;
    const int sparse = Find(b.raw, kKindSparse);
    const Bytes f = Edit(b, [&](RawFile *raw) {
        RawSection &s = raw->sections[sparse];
        Put64(&s.header, sec::kDecodedSize, Get64(s.header, sec::kStoredSize) + 8);
    }, o);
    EXPECT_ERR(f, SQKV_ERR_SIZE_MISMATCH);
}

TEST_F(Malformed, BodySizeDisagreesWithContents) {
    const Base &b = *asym_tile_;
    for (int i : {Find(b.raw, kKindSparse, 0), Find(b.raw, kKindSparse, 1), Find(b.raw, kKindDense)}) {
        const Bytes longer = Edit(b, [&](RawFile *raw) { raw->sections[i].body.resize(raw->sections[i].body.size() + 8, 0); });
        EXPECT_ERR(longer, SQKV_ERR_SIZE_MISMATCH) << "section " << i << " + 8 bytes";
        const Bytes shorter = Edit(b, [&](RawFile *raw) { raw->sections[i].body.resize(raw->sections[i].body.size() - 8); });
        EXPECT_ERR(shorter, SQKV_ERR_SIZE_MISMATCH) << "section " << i << " - 8 bytes";
    }
    const Bytes index = Edit(b, [](RawFile *raw) { raw->index.body.resize(raw->index.body.size() - 8); },
                             [] { AssembleOptions o; o.rebuild_index = false; return o; }());
    EXPECT_NE(DecodeEverything(index), SQKV_OK);
}

TEST_F(Malformed, SectionPaddingBytes) {
    const Base &b = *asym_tile_;
    const int fp = Find(b.raw, kKindFingerprint);
    ASSERT_EQ(b.raw.sections[fp].body.size(), 5u);
    for (size_t i = 0; i < 3; i++) {
        const Bytes f = Edit(b, [&](RawFile *raw) {
            raw->sections[fp].padding = Bytes(3, 0);
            raw->sections[fp].padding[i] = 0x80;
        });
        EXPECT_ERR(f, SQKV_ERR_PADDING) << i;
    }
}

TEST_F(Malformed, DuplicatedAncillarySections) {
    const Base &b = *asym_tile_;
    for (uint16_t kind : {kKindTokens, kKindFingerprint, kKindMetadata}) {
        const int i = Find(b.raw, kind);
        const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections.push_back(raw->sections[i]); });
        EXPECT_ERR(f, SQKV_ERR_DUPLICATE_SECTION) << std::hex << kind;
    }
}

TEST_F(Malformed, SecondIndexSection) {
    const Bytes f = Edit(*asym_tile_, [](RawFile *raw) {
        raw->sections.insert(raw->sections.begin(), MakeSection(kKindIndex, Bytes()));
    });
    // §9.1: INDEX sections other than the last must be superseded (COVERAGE).
    EXPECT_ERR(f, SQKV_ERR_COVERAGE);
}

// ---- coverage (§6) ------------------------------------------------------------------------------

TEST_F(Malformed, MissingTensorSection) {
    const Base &b = *asym_tile_;
    for (int i : {Find(b.raw, kKindSparse, 1, 1, 0), Find(b.raw, kKindDense, 0, 0, 1)}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections.erase(raw->sections.begin() + i); });
        EXPECT_ERR(f, SQKV_ERR_COVERAGE) << "without section " << i;
    }
}

TEST_F(Malformed, OverlappingTensorSections) {
    const Base &b = *asym_tile_;
    const int i = Find(b.raw, kKindSparse, 0, 1, 1);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections.push_back(raw->sections[i]); }), SQKV_ERR_COVERAGE);
    // Relabelled: layer 1's K head 0 claims to be layer 0's (overlap there, gap here).
    const int j = Find(b.raw, kKindSparse, 0, 1, 0);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[j].header, sec::kLayer, 0); }), SQKV_ERR_COVERAGE);
    // Head 1's window claims head 0.
    const int d = Find(b.raw, kKindDense, 1, 0, 1);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put32(&raw->sections[d].header, sec::kHeadStart, 0); }), SQKV_ERR_COVERAGE);
    // A K window relabelled as V (sizes are equal for DENSE).
    const int k = Find(b.raw, kKindDense, 0, 0, 0);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[k].header[sec::kTensor] = 1; }), SQKV_ERR_COVERAGE);
}

TEST_F(Malformed, SectionCrossingTheDenseWindowBoundary) {
    const Base &b = *asym_tile_;
    // dense_window changed in the header and the INDEX alike (§4: the INDEX's value counts).
    auto window = [&](uint32_t w) {
        return Edit(b, [&](RawFile *raw) {
            Put32(&raw->header, hdr::kDenseWindow, w);
            raw->index_dense_window = w;
        });
    };
    // dense_window 3: S = 67, the DENSE sections [65, 70) cross it.
    EXPECT_ERR(window(3), SQKV_ERR_COVERAGE);
    // dense_window 8: S = 62, the SPARSE sections [0, 65) cross it.
    EXPECT_ERR(window(8), SQKV_ERR_COVERAGE);
    // dense_window 0: the DENSE sections lie in the sparse region: wrong kind for their range.
    EXPECT_ERR(window(0), SQKV_ERR_COVERAGE);
    // dense_window 70: the SPARSE sections lie in the window.
    EXPECT_ERR(window(kT), SQKV_ERR_COVERAGE);
}

// ---- SPARSE bodies (§7) -------------------------------------------------------------------------

struct SparseTarget {
    int section;
    SparseStreams layout;
};
SparseTarget FindSparse(const Base &b, int tensor, int layer = 0, int head = 0) {
    SparseTarget t;
    t.section = Find(b.raw, kKindSparse, tensor, layer, head);
    t.layout = SparseLayout(b.raw.sections[t.section], kD);
    return t;
}

TEST_F(Malformed, TestModelOfSparseLayoutMatchesEncoder) {
    for (const Base *b : {asym_tile_, sym_head_, exact_})
        for (int tensor : {0, 1}) {
            const SparseTarget t = FindSparse(*b, tensor);
            EXPECT_EQ(t.layout.end, b->raw.sections[t.section].body.size()) << "tensor " << tensor;
        }
}

TEST_F(Malformed, OffsetTableDisagreesWithPopcounts) {
    const Base &b = *asym_tile_;
    const SparseTarget t = FindSparse(b, 0);
    ASSERT_GE(t.layout.offset_entries, 3u);
    for (uint64_t entry : {uint64_t{0}, uint64_t{1}, t.layout.offset_entries - 1})
        for (int delta : {1, -1}) {
            if (entry == 0 && delta < 0) continue;
            const Bytes f = Edit(b, [&](RawFile *raw) {
                Bytes &body = raw->sections[t.section].body;
                const size_t at = t.layout.offsets_at + 4 * entry;
                Put32(&body, at, Get32(body, at) + delta);
            });
            EXPECT_ERR(f, SQKV_ERR_OFFSET_MISMATCH) << "entry " << entry << " delta " << delta;
        }
}

// Moves one kept bit of a tile to a padding element of the same tile: popcounts, offsets and sizes are
// unchanged, only the padding rule is broken.
TEST_F(Malformed, BitmapPaddingBitSet) {
    const Base &b = *asym_tile_;
    // Values: head_dim 40, so elements 40..63 of every value tile are padding.
    {
        const SparseTarget t = FindSparse(b, 1);
        Bytes body = b.raw.sections[t.section].body;
        uint64_t tile = 0;
        while (tile < t.layout.tiles && Get64(body, 8 * tile) == 0) tile++;
        ASSERT_LT(tile, t.layout.tiles);
        const Bytes f = Edit(b, [&](RawFile *raw) {
            Bytes &bb = raw->sections[t.section].body;
            uint64_t bits = Get64(bb, 8 * tile);
            bits &= bits - 1;                  // clear the lowest set (a kept element)
            bits |= uint64_t{1} << (63 - 40);  // set element 40: padding
            Put64(&bb, 8 * tile, bits);
        });
        EXPECT_ERR(f, SQKV_ERR_BITMAP_PADDING) << "value tile " << tile;
    }
    // Keys: S = 65, so chunk 1 has one token and elements 1..63 of its tiles are padding.
    {
        const SparseTarget t = FindSparse(b, 0);
        uint64_t tile = kD;  // first tile of chunk 1
        while (tile < t.layout.tiles && Get64(b.raw.sections[t.section].body, 8 * tile) == 0) tile++;
        ASSERT_LT(tile, t.layout.tiles);
        const Bytes f = Edit(b, [&](RawFile *raw) {
            Put64(&raw->sections[t.section].body, 8 * tile, uint64_t{1} << 62);  // element 1 instead of 0
        });
        EXPECT_ERR(f, SQKV_ERR_BITMAP_PADDING) << "key tile " << tile;
    }
}

TEST_F(Malformed, NonzeroPaddingInsideSparseBody) {
    int cases = 0;
    for (const Base *base : {asym_tile_, sym_head_, exact_})
        for (int tensor : {0, 1}) {
            const Base &b = *base;
            const SparseTarget t = FindSparse(b, tensor);
            const SparseStreams &l = t.layout;
            const uint32_t bits = b.raw.sections[t.section].header[sec::kBits];
            std::vector<size_t> pads;  // byte offsets of padding inside the body
            for (size_t at = l.offsets_at + 4 * l.offset_entries; at < l.scales_at; at++) pads.push_back(at);
            for (size_t at = l.scales_at + 2 * l.groups * l.params; at < l.payload_at; at++) pads.push_back(at);
            for (size_t at = l.payload_at + l.payload_bytes; at < l.end; at++) pads.push_back(at);
            for (size_t at : pads) {
                const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[t.section].body[at] = 0x01; });
                EXPECT_ERR(f, SQKV_ERR_PADDING) << "byte " << at << " of tensor " << tensor;
                cases++;
            }
            // Bits after the last code in the payload's last byte.
            const uint64_t used_bits = l.kept * bits;
            if (used_bits % 8) {
                const size_t last = l.payload_at + used_bits / 8;
                const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[t.section].body[last] |= 0x80; });
                EXPECT_ERR(f, SQKV_ERR_PADDING) << "payload tail bits of tensor " << tensor;
                cases++;
            }
        }
    EXPECT_GE(cases, 6) << "the base files must have padding to test";
}

// E value helpers.
uint16_t F16(double x) { return static_cast<uint16_t>(refm::DoubleToFp16(x)); }

TEST_F(Malformed, BadScaleParameters) {
    const Base &b = *asym_tile_;
    const SparseTarget t = FindSparse(b, 1);  // values, PER_TILE, ASYMMETRIC: (s, z) per tile
    const Bytes &body = b.raw.sections[t.section].body;
    uint64_t full = 0, empty = 0;
    while (full < t.layout.tiles && Get64(body, 8 * full) == 0) full++;
    while (empty < t.layout.tiles && Get64(body, 8 * empty) != 0) empty++;
    ASSERT_LT(full, t.layout.tiles);
    ASSERT_LT(empty, t.layout.tiles) << "token 3 of head 0 is zero: its value tile is empty";
    auto with_param = [&](uint64_t group, int which, uint16_t value) {
        return Edit(b, [&](RawFile *raw) {
            Put16(&raw->sections[t.section].body, t.layout.scales_at + 2 * (2 * group + which), value);
        });
    };
    EXPECT_ERR(with_param(full, 0, 0x7E00), SQKV_ERR_SCALE) << "s NaN";
    EXPECT_ERR(with_param(full, 0, 0x7C00), SQKV_ERR_SCALE) << "s infinite";
    EXPECT_ERR(with_param(full, 0, F16(-0.5)), SQKV_ERR_SCALE) << "s negative";
    EXPECT_ERR(with_param(full, 0, 0x8000), SQKV_ERR_SCALE) << "s = -0";
    EXPECT_ERR(with_param(full, 1, 0x7E00), SQKV_ERR_SCALE) << "z NaN";
    EXPECT_ERR(with_param(full, 1, 0xFC00), SQKV_ERR_SCALE) << "z -infinity";
    EXPECT_ERR(with_param(full, 0, F16(30000)), SQKV_ERR_SCALE) << "top level 15 * 30000 overflows";
    EXPECT_ERR(with_param(empty, 0, F16(1)), SQKV_ERR_SCALE) << "empty group with s != 0";
    EXPECT_ERR(with_param(empty, 1, F16(1)), SQKV_ERR_SCALE) << "empty group with z != 0";
    EXPECT_ERR(with_param(empty, 0, 0x8000), SQKV_ERR_SCALE) << "empty group with s = -0";
    EXPECT_ERR(with_param(empty, 1, 0x8000), SQKV_ERR_SCALE) << "empty group with z = -0";
}

TEST_F(Malformed, EmptyPerHeadGroupMustHaveZeroScale) {
    // Layer 1, head 1: the sparse region is all zeros, so the PER_HEAD group is empty.
    const Base &b = *sym_head_;
    const SparseTarget t = FindSparse(b, 0, 1, 1);
    ASSERT_EQ(t.layout.kept, 0u);
    ASSERT_EQ(t.layout.groups * t.layout.params, 1u);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[t.section].body, t.layout.scales_at, F16(0.25)); }),
               SQKV_ERR_SCALE);
    // Its neighbour (head 0) is not empty: a symmetric overflow there is SCALE too (3 * 65504).
    const SparseTarget u = FindSparse(b, 0, 1, 0);
    ASSERT_GT(u.layout.kept, 0u);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[u.section].body, u.layout.scales_at, 0x7BFF); }),
               SQKV_ERR_SCALE);
}

TEST_F(Malformed, ZeroSymmetricScaleIsValid) {
    // §7.4 allows s = +0 for a non-empty group; every level is then a zero (odd multiples of +0:
    // -0 for the lower half of the codes, +0 for the upper half).
    const Base &b = *sym_head_;
    const SparseTarget t = FindSparse(b, 0, 0, 0);
    const Bytes f = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[t.section].body, t.layout.scales_at, 0); });
    ASSERT_EQ(ErrName(DecodeEverything(f)), ErrName(SQKV_OK));
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(f, &r), SQKV_OK);
    Bytes out;
    ASSERT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP16, &out), SQKV_OK);
    // Head 0's sparse region: every element is +0 or -0; -0 exactly where the code is 0 or 1.
    size_t negative_zeros = 0;
    for (size_t i = 0; i < static_cast<size_t>(kS) * kD; i++) {
        const uint16_t h = Get16(out, 2 * i);
        ASSERT_TRUE(h == 0 || h == 0x8000) << i;
        negative_zeros += h == 0x8000;
    }
    EXPECT_GT(negative_zeros, 0u);
}

TEST_F(Malformed, ExactPayloadValues) {
    const Base &b = *exact_;
    const SparseTarget t = FindSparse(b, 1);
    ASSERT_GT(t.layout.kept, 5u);
    for (uint16_t bad : {0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[t.section].body, t.layout.payload_at + 2 * 5, bad); });
        EXPECT_ERR(f, SQKV_ERR_VALUE) << std::hex << bad;
    }
    // A subnormal is a fine nonzero value.
    const Bytes f = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[t.section].body, t.layout.payload_at + 2 * 5, 0x8001); });
    EXPECT_ERR(f, SQKV_OK);
}

TEST_F(Malformed, DenseValues) {
    const Base &b = *asym_tile_;
    const int d = Find(b.raw, kKindDense, 1, 1, 0);
    for (uint16_t bad : {0x7C00, 0xFC00, 0x7E00, 0xFE01}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[d].body, 2 * 17, bad); });
        EXPECT_ERR(f, SQKV_ERR_VALUE) << std::hex << bad;
    }
    // Zeros, negative zeros and subnormals are ordinary dense values.
    for (uint16_t fine : {0x0000, 0x8000, 0x0001}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { Put16(&raw->sections[d].body, 2 * 17, fine); });
        EXPECT_ERR(f, SQKV_OK) << std::hex << fine;
    }
}

TEST_F(Malformed, Bf16DenseAndExactValues) {
    const Base b = MakeBase(TestOptions(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE), SQKV_DTYPE_BF16);
    ASSERT_EQ(ErrName(DecodeEverything(b.file)), ErrName(SQKV_OK));
    const int d = Find(b.raw, kKindDense, 0, 0, 0);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[d].body, 4, 0x7F80); }), SQKV_ERR_VALUE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[d].body, 4, 0x7FC1); }), SQKV_ERR_VALUE);
    // 0x7C00 is a finite bf16 (2^121): fine in a bf16 file.
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[d].body, 4, 0x7C00); }), SQKV_OK);
    const SparseTarget t = FindSparse(b, 0);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[t.section].body, t.layout.payload_at, 0x8000); }),
               SQKV_ERR_VALUE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { Put16(&raw->sections[t.section].body, t.layout.payload_at, 0xFF80); }),
               SQKV_ERR_VALUE);
}

TEST_F(Malformed, PayloadParameterCombinations) {
    // EXACT with a scale granularity: Q = 0, so the sizes stay the same and only the combination is wrong.
    const Base &b = *exact_;
    const SparseTarget t = FindSparse(b, 0);
    for (uint8_t g : {1, 2}) {
        const Bytes f = Edit(b, [&](RawFile *raw) { raw->sections[t.section].header[sec::kGranularity] = g; });
        EXPECT_ERR(f, SQKV_ERR_PAYLOAD_PARAMS) << "EXACT with granularity " << int(g);
    }
    // §5.2 step 4 (header fields, before any size): PAYLOAD_PARAMS for a quantizer or granularity that is
    // unknown or does not fit the payload width; SECTION_FIELD for a payload width outside 2, 4, 8, 16.
    struct Combo {
        const Base *base;
        int field;
        uint8_t value;
        sqkv_error expected;
        const char *what;
    };
    const Combo combos[] = {
        {exact_, sec::kBits, 4, SQKV_ERR_PAYLOAD_PARAMS, "EXACT with 4 bits"},
        {exact_, sec::kQuantizer, 1, SQKV_ERR_PAYLOAD_PARAMS, "SYMMETRIC with 16 bits"},
        {sym_head_, sec::kGranularity, 0, SQKV_ERR_PAYLOAD_PARAMS, "SYMMETRIC with NONE"},
        {sym_head_, sec::kQuantizer, 0, SQKV_ERR_PAYLOAD_PARAMS, "EXACT with 2 bits"},
        {sym_head_, sec::kQuantizer, 3, SQKV_ERR_PAYLOAD_PARAMS, "quantizer 3"},
        {sym_head_, sec::kGranularity, 3, SQKV_ERR_SECTION_FIELD, "granularity 3 without HALF_TILE_SCALES"},
        {sym_head_, sec::kGranularity, 4, SQKV_ERR_PAYLOAD_PARAMS, "granularity 4"},
        {asym_tile_, sec::kQuantizer, 255, SQKV_ERR_PAYLOAD_PARAMS, "quantizer 255"},
        {sym_head_, sec::kBits, 3, SQKV_ERR_SECTION_FIELD, "3 bits"},
        {sym_head_, sec::kBits, 1, SQKV_ERR_SECTION_FIELD, "1 bit"},
        {sym_head_, sec::kBits, 0, SQKV_ERR_SECTION_FIELD, "0 bits"},
        {sym_head_, sec::kBits, 32, SQKV_ERR_SECTION_FIELD, "32 bits"},
    };
    for (const Combo &c : combos) {
        const SparseTarget s = FindSparse(*c.base, 0);
        const Bytes f = Edit(*c.base, [&](RawFile *raw) { raw->sections[s.section].header[c.field] = c.value; });
        EXPECT_ERR(f, c.expected) << c.what;
    }
}

// §5.2 step 9: the order of the SPARSE body rules, when a section breaks two of them at once.
TEST_F(Malformed, SparseBodyRulesAreCheckedInTheSpecifiedOrder) {
    const Base &b = *asym_tile_;
    const SparseTarget t = FindSparse(b, 1);  // values: padding elements 40..63 in every tile
    const SparseStreams &l = t.layout;
    uint64_t full = 0;
    while (Get64(b.raw.sections[t.section].body, 8 * full) == 0) full++;
    auto bitmap_padding = [&](Bytes *body) {
        uint64_t bits = Get64(*body, 8 * full);
        bits = (bits & (bits - 1)) | (uint64_t{1} << (63 - 40));
        Put64(body, 8 * full, bits);
    };
    auto offsets = [&](Bytes *body) { Put32(body, l.offsets_at + 4, Get32(*body, l.offsets_at + 4) + 1); };
    auto scale = [&](Bytes *body) { Put16(body, l.scales_at + 4 * full, 0x7E00); };
    auto scales_padding = [&](Bytes *body) { (*body)[l.payload_at - 1] = 1; };
    auto both = [&](auto first, auto second) {
        return Edit(b, [&](RawFile *raw) {
            first(&raw->sections[t.section].body);
            second(&raw->sections[t.section].body);
        });
    };
    ASSERT_LT(l.scales_at + 2 * l.groups * l.params, l.payload_at) << "need padding after the scales";
    EXPECT_ERR(both(bitmap_padding, offsets), SQKV_ERR_BITMAP_PADDING);
    EXPECT_ERR(both(offsets, scale), SQKV_ERR_OFFSET_MISMATCH);
    EXPECT_ERR(both(scales_padding, bitmap_padding), SQKV_ERR_PADDING);
    EXPECT_ERR(both(scales_padding, scale), SQKV_ERR_PADDING);
    // A body of the wrong decoded_size with broken rules inside: SIZE_MISMATCH first.
    const Bytes f = Edit(b, [&](RawFile *raw) {
        Bytes &body = raw->sections[t.section].body;
        bitmap_padding(&body);
        body.resize(body.size() + 8, 0);
    });
    EXPECT_ERR(f, SQKV_ERR_SIZE_MISMATCH);
}

TEST_F(Malformed, PayloadTailBitsComeAfterScales) {
    // The payload's bits after the last code are checked after the scale groups (§5.2 step 9).
    for (const Base *base : {asym_tile_, sym_head_})
        for (int tensor : {0, 1}) {
            const SparseTarget t = FindSparse(*base, tensor);
            const uint32_t bits = base->raw.sections[t.section].header[sec::kBits];
            const uint64_t used_bits = t.layout.kept * bits;
            if (used_bits % 8 == 0) continue;
            const Bytes f = Edit(*base, [&](RawFile *raw) {
                Bytes &body = raw->sections[t.section].body;
                body[t.layout.payload_at + used_bits / 8] |= 0x80;
                Put16(&body, t.layout.scales_at, 0x7E00);  // first group's s: NaN
            });
            EXPECT_ERR(f, SQKV_ERR_SCALE) << "tensor " << tensor;
        }
}

// ---- ancillary bodies (§10) ---------------------------------------------------------------------

TEST_F(Malformed, TokensCount) {
    const Base &b = *asym_tile_;
    const int i = Find(b.raw, kKindTokens);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.resize(4 * (kT - 1)); }), SQKV_ERR_TOKENS_COUNT);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.resize(4 * (kT + 1)); }), SQKV_ERR_TOKENS_COUNT);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.resize(4 * kT + 2); }), SQKV_ERR_TOKENS_COUNT);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.clear(); }), SQKV_ERR_TOKENS_COUNT);
}

TEST_F(Malformed, FingerprintSize) {
    const Base &b = *asym_tile_;
    const int i = Find(b.raw, kKindFingerprint);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.clear(); }), SQKV_ERR_FINGERPRINT_SIZE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.assign(4097, 1); }), SQKV_ERR_FINGERPRINT_SIZE);
    EXPECT_ERR(Edit(b, [&](RawFile *raw) { raw->sections[i].body.assign(4096, 1); }), SQKV_OK);
}

Bytes MetadataBody(const std::vector<std::pair<std::string, std::string>> &entries, int count_override = -1) {
    Bytes body(4, 0);
    Put32(&body, 0, count_override >= 0 ? static_cast<uint32_t>(count_override) : static_cast<uint32_t>(entries.size()));
    for (const auto &e : entries) {
        body.push_back(static_cast<uint8_t>(e.first.size()));
        body.insert(body.end(), e.first.begin(), e.first.end());
        body.push_back(static_cast<uint8_t>(e.second.size()));
        body.push_back(static_cast<uint8_t>(e.second.size() >> 8));
        body.insert(body.end(), e.second.begin(), e.second.end());
    }
    return body;
}

TEST_F(Malformed, MetadataRules) {
    const Base &b = *asym_tile_;
    const int i = Find(b.raw, kKindMetadata);
    ASSERT_EQ(b.raw.sections[i].body, MetadataBody({{"model", "m"}, {"note", "x"}})) << "test model of §10.3";
    auto with = [&](const Bytes &body) { return Edit(b, [&](RawFile *raw) { raw->sections[i].body = body; }); };
    EXPECT_ERR(with(MetadataBody({{"a", "1"}, {"b", ""}})), SQKV_OK);
    struct Case {
        const char *what;
        Bytes body;
    };
    std::vector<Case> cases = {
        {"zero entries", MetadataBody({})},
        {"count larger than entries", MetadataBody({{"a", "1"}}, 2)},
        {"count smaller than entries", MetadataBody({{"a", "1"}, {"b", "2"}}, 1)},
        {"count 1025", MetadataBody({{"a", "1"}}, 1025)},
        {"keys not ascending", MetadataBody({{"b", "1"}, {"a", "2"}})},
        {"duplicate keys", MetadataBody({{"a", "1"}, {"a", "2"}})},
        {"empty key", MetadataBody({{"", "1"}})},
        {"NUL in key", MetadataBody({{std::string("a\0b", 3), "1"}})},
        {"NUL in value", MetadataBody({{"a", std::string("1\0", 2)}})},
        {"invalid UTF-8 in key", MetadataBody({{"\xFF", "1"}})},
        {"overlong UTF-8 in value", MetadataBody({{"a", "\xC0\x80"}})},
        {"surrogate in value", MetadataBody({{"a", "\xED\xBF\xBF"}})},
        {"above U+10FFFF in value", MetadataBody({{"a", "\xF4\x90\x80\x80"}})},
        {"truncated UTF-8 in value", MetadataBody({{"a", "\xE2\x82"}})},
    };
    Bytes trailing = MetadataBody({{"a", "1"}});
    trailing.push_back('x');
    cases.push_back({"trailing byte", trailing});
    Bytes cut = MetadataBody({{"abc", "1234"}});
    cut.resize(cut.size() - 2);
    cases.push_back({"value runs past the body", cut});
    Bytes short_count(3, 0);
    cases.push_back({"body shorter than the count", short_count});
    for (const Case &c : cases) EXPECT_ERR(with(c.body), SQKV_ERR_METADATA) << c.what;
}

}  // namespace
