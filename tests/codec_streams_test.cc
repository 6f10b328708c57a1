// codec_streams_test.cc: codec 1 of spec/FORMAT.md §5.1 (a body cut into streams, each stored as is or
// as one zstd frame). Sections of an encoder-written file are re-stored with codec 1 by the test
// (tests/support/sqkv_file.h): valid ones must decode exactly like the original, each broken rule must
// give its error.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "sqkv_file.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

#define EXPECT_ERR(bytes, code) EXPECT_EQ(ErrName(DecodeEverything(bytes)), ErrName(code))

constexpr uint32_t kD = 40;

struct Base {
    Cache cache;
    Bytes file;
    RawFile raw;
};

const Base &TheBase() {
    static const Base *base = [] {
        Base *b = new Base;
        b->cache = MakeRandomCache(MakeGeometry(2, 2, kD, 150, 6), SQKV_DTYPE_FP32, 55);
        b->cache.has_tokens = true;
        for (int t = 0; t < 150; t++) b->cache.tokens.push_back(t % 7);  // compressible
        b->cache.fingerprint = Bytes(40, 0xAB);
        b->cache.metadata = {{"model", std::string(300, 'm')}};
        sqkv_writer_options o{};
        o.prune = SQKV_PRUNE_MAGNITUDE;
        o.sparsity = 0.7;
        o.payload_bits = 4;
        o.quantizer = SQKV_QUANT_ASYMMETRIC;
        o.scales = SQKV_SCALE_PER_TILE;
        o.offset_interval_log2 = 2;
        o.heads_per_section = 1;
        EXPECT_EQ(EncodeCache(b->cache, o, &b->file), SQKV_OK);
        EXPECT_TRUE(ParseRaw(b->file, &b->raw));
        return b;
    }();
    return *base;
}

AssembleOptions KeepSizes() {
    AssembleOptions o;
    o.fix_sizes = false;
    return o;
}

Bytes WithSection(int i, const RawSection &replacement) {
    RawFile f = TheBase().raw;
    f.sections[static_cast<size_t>(i)] = replacement;
    return Assemble(f, KeepSizes());
}

int Find(uint16_t kind, int tensor = -1) {
    const RawFile &f = TheBase().raw;
    for (size_t i = 0; i < f.sections.size(); i++)
        if (f.sections[i].kind() == kind && (tensor < 0 || f.sections[i].tensor() == tensor)) return static_cast<int>(i);
    return -1;
}

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

TEST(CodecStreams, BaseIsValidAndReassemblesExactly) {
    ASSERT_EQ(ErrName(DecodeEverything(TheBase().file)), ErrName(SQKV_OK));
    EXPECT_EQ(Assemble(TheBase().raw), TheBase().file);
}

TEST(CodecStreams, CompressedSectionsDecodeLikeTheOriginal) {
    const Base &b = TheBase();
    const Bytes expected = DecodedAll(b.file);
    ASSERT_FALSE(expected.empty());
    // Every section with codec 1, streams alternately compressed and stored (at least one compressed).
    for (int pattern = 0; pattern < 4; pattern++) {
        RawFile f = b.raw;
        for (RawSection &s : f.sections) {
            const size_t n = StreamBounds(s, kD).size();
            std::vector<uint8_t> methods(n);
            for (size_t i = 0; i < n; i++) methods[i] = static_cast<uint8_t>(((i + pattern) % 2) || n == 1 || pattern == 3);
            s = ToCodec1(s, kD, methods);
        }
        const Bytes file = Assemble(f, KeepSizes());
        ASSERT_EQ(ErrName(DecodeEverything(file)), ErrName(SQKV_OK)) << "pattern " << pattern;
        EXPECT_EQ(DecodedAll(file), expected) << "pattern " << pattern;
        ReaderPtr r;
        ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
        std::vector<int32_t> tokens(150);
        size_t count = 0;
        ASSERT_EQ(sqkv_reader_tokens(r.get(), tokens.data(), tokens.size(), &count), SQKV_OK);
        EXPECT_EQ(tokens, b.cache.tokens);
        const char *key, *value;
        size_t ks, vs;
        ASSERT_EQ(sqkv_reader_metadata_entry(r.get(), 0, &key, &ks, &value, &vs), SQKV_OK);
        EXPECT_EQ(std::string(value, vs), std::string(300, 'm'));
        if (pattern == 3) {
            EXPECT_LT(file.size(), b.file.size()) << "compressible test data should shrink";
        }
    }
}

TEST(CodecStreams, MustafarExportFromCompressedSections) {
    const Base &b = TheBase();
    RawFile f = b.raw;
    for (RawSection &s : f.sections)
        if (s.kind() == kKindSparse) s = ToCodec1(s, kD, {1, 1, 1, 1});
    const Bytes file = Assemble(f, KeepSizes());
    for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
        ReaderPtr plain, packed;
        ASSERT_EQ(OpenMemory(b.file, &plain), SQKV_OK);
        ASSERT_EQ(OpenMemory(file, &packed), SQKV_OK);
        sqkv_mustafar_sizes a{}, c{};
        ASSERT_EQ(sqkv_reader_mustafar_sizes(plain.get(), 1, t, 1, &a), SQKV_OK);
        ASSERT_EQ(sqkv_reader_mustafar_sizes(packed.get(), 1, t, 1, &c), SQKV_OK);
        ASSERT_EQ(a.n_tiles, c.n_tiles);
        ASSERT_EQ(a.value_count, c.value_count);
        std::vector<int64_t> b1(a.n_tiles), b2(a.n_tiles);
        std::vector<int32_t> a1(a.n_tiles + 1), a2(a.n_tiles + 1);
        std::vector<uint16_t> v1(a.value_count), v2(a.value_count);
        ASSERT_EQ(sqkv_reader_decode_mustafar(plain.get(), 1, t, 1, b1.data(), a1.data(), v1.data(), &a), SQKV_OK);
        ASSERT_EQ(sqkv_reader_decode_mustafar(packed.get(), 1, t, 1, b2.data(), a2.data(), v2.data(), &c), SQKV_OK);
        EXPECT_EQ(b1, b2);
        EXPECT_EQ(a1, a2);
        EXPECT_EQ(v1, v2);
    }
}

TEST(CodecStreams, NothingCompressedIsSectionField) {
    const int i = Find(kKindSparse);
    EXPECT_ERR(WithSection(i, ToCodec1(TheBase().raw.sections[i], kD, {0, 0, 0, 0})), SQKV_ERR_SECTION_FIELD);
    const int d = Find(kKindDense);
    EXPECT_ERR(WithSection(d, ToCodec1(TheBase().raw.sections[d], kD, {0})), SQKV_ERR_SECTION_FIELD);
}

// Rebuilds section i with codec 1 from explicit stored streams.
Bytes WithStreams(int i, const std::vector<StoredStream> &streams, uint64_t decoded_size = 0) {
    RawSection s = TheBase().raw.sections[static_cast<size_t>(i)];
    const uint64_t decoded = decoded_size ? decoded_size : s.body.size();
    s.body = StreamsStoredBody(streams);
    s.header[sec::kCodec] = 1;
    Put64(&s.header, sec::kStoredSize, s.body.size());
    Put64(&s.header, sec::kDecodedSize, decoded);
    return WithSection(i, s);
}

std::vector<StoredStream> SparseStreamsOf(int i, uint8_t payload_method) {
    const RawSection &s = TheBase().raw.sections[static_cast<size_t>(i)];
    std::vector<StoredStream> streams;
    for (const auto &b : StreamBounds(s, kD)) streams.push_back({0, Bytes(s.body.begin() + b.first, s.body.begin() + b.first + b.second)});
    if (payload_method) streams[3] = {1, ZstdFrame(streams[3].bytes)};
    return streams;
}

TEST(CodecStreams, FrameWithoutContentSize) {
    const int i = Find(kKindSparse);
    auto streams = SparseStreamsOf(i, 0);
    streams[3] = {1, ZstdFrame(streams[3].bytes, /*content_size=*/false)};
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
}

TEST(CodecStreams, FrameOfTheWrongSize) {
    const int i = Find(kKindSparse);
    auto streams = SparseStreamsOf(i, 0);
    Bytes shorter(streams[3].bytes.begin(), streams[3].bytes.end() - 8);
    streams[3] = {1, ZstdFrame(shorter)};
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
    // A bomb: a few bytes that claim (and would produce) 64 MiB. Refused from the frame header.
    streams[3] = {1, ZstdFrame(Bytes(64u << 20, 0))};
    ASSERT_LT(streams[3].bytes.size(), 8192u);
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
}

TEST(CodecStreams, TrailingBytesOrSecondFrame) {
    const int i = Find(kKindSparse);
    auto streams = SparseStreamsOf(i, 1);
    const Bytes frame = streams[3].bytes;
    streams[3].bytes.push_back(0);
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
    // Two frames that together make the right length.
    const Bytes payload = SparseStreamsOf(i, 0)[3].bytes;
    const size_t half = payload.size() / 2;
    Bytes two = ZstdFrame(Bytes(payload.begin(), payload.begin() + half));
    const Bytes second = ZstdFrame(Bytes(payload.begin() + half, payload.end()));
    two.insert(two.end(), second.begin(), second.end());
    streams[3].bytes = two;
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
}

TEST(CodecStreams, GarbageFrame) {
    const int i = Find(kKindSparse);
    auto streams = SparseStreamsOf(i, 1);
    for (size_t k = 4; k < streams[3].bytes.size(); k++) streams[3].bytes[k] ^= 0x5A;  // keep the zstd magic
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
    streams[3].bytes.assign(16, 0x00);  // not even a frame
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
    streams[3].bytes.clear();  // empty stored stream
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
}

TEST(CodecStreams, StoredStreamOfTheWrongLength) {
    const int i = Find(kKindSparse);
    auto streams = SparseStreamsOf(i, 1);
    streams[0].bytes.resize(streams[0].bytes.size() - 8);  // bitmaps stored short
    // §5.1: "with method 0 the stored length MUST equal the stream's decoded length ... anything else
    // is COMPRESSED_STREAM".
    EXPECT_ERR(WithStreams(i, streams), SQKV_ERR_COMPRESSED_STREAM);
}

TEST(CodecStreams, UnknownStreamMethodAndReservedBytes) {
    const int i = Find(kKindSparse);
    RawSection s = ToCodec1(TheBase().raw.sections[i], kD, {0, 0, 0, 1});
    RawSection m = s;
    m.body[16 * 1] = 2;  // method 2 for the offsets stream
    EXPECT_ERR(WithSection(i, m), SQKV_ERR_UNSUPPORTED_CODEC);  // §5.2 step 8
    for (size_t b = 1; b < 8; b++) {
        RawSection r = s;
        r.body[16 * 2 + b] = 1;
        EXPECT_ERR(WithSection(i, r), SQKV_ERR_RESERVED) << "reserved byte " << b;
    }
}

TEST(CodecStreams, StoredSizeMustMatchTheTable) {
    const int i = Find(kKindSparse);
    RawSection s = ToCodec1(TheBase().raw.sections[i], kD, {1, 0, 0, 1});
    s.body.resize(s.body.size() + 8, 0);
    Put64(&s.header, sec::kStoredSize, s.body.size());
    EXPECT_ERR(WithSection(i, s), SQKV_ERR_SIZE_MISMATCH);
    RawSection t = ToCodec1(TheBase().raw.sections[i], kD, {1, 0, 0, 1});
    t.body.resize(t.body.size() - 8);
    Put64(&t.header, sec::kStoredSize, t.body.size());
    EXPECT_ERR(WithSection(i, t), SQKV_ERR_SIZE_MISMATCH);
    RawSection u = ToCodec1(TheBase().raw.sections[i], kD, {1, 0, 0, 1});
    u.body.resize(8);  // shorter than its own table
    Put64(&u.header, sec::kStoredSize, u.body.size());
    EXPECT_ERR(WithSection(i, u), SQKV_ERR_SIZE_MISMATCH);
}

TEST(CodecStreams, StreamPaddingMustBeZero) {
    const int i = Find(kKindSparse);
    auto streams = SparseStreamsOf(i, 1);
    ASSERT_NE(streams[3].bytes.size() % 8, 0u) << "need a frame that is not a multiple of 8";
    RawSection s = TheBase().raw.sections[static_cast<size_t>(i)];
    const uint64_t decoded = s.body.size();
    s.body = StreamsStoredBody(streams);
    s.body.back() = 0x01;  // padding after the last stream
    s.header[sec::kCodec] = 1;
    Put64(&s.header, sec::kStoredSize, s.body.size());
    Put64(&s.header, sec::kDecodedSize, decoded);
    EXPECT_ERR(WithSection(i, s), SQKV_ERR_PADDING);
}

TEST(CodecStreams, SparsePayloadStreamLengthRules) {
    const int i = Find(kKindSparse);
    const RawSection &orig = TheBase().raw.sections[static_cast<size_t>(i)];
    const SparseStreams l = SparseLayout(orig, kD);
    auto streams = SparseStreamsOf(i, 1);
    // decoded_size not leaving a multiple of 8 for the payload, or less than the first three streams, or
    // more than a section whose every element is kept.
    for (uint64_t decoded : {uint64_t{orig.body.size() + 4}, uint64_t{l.payload_at - 8},
                             uint64_t{l.payload_at + (64 * l.tiles * 4 / 8) + 64}}) {
        EXPECT_ERR(WithStreams(i, streams, decoded), SQKV_ERR_SIZE_MISMATCH) << decoded;
    }
    // Far beyond: the configured max_section_size (2^34 by default) may answer first.
    const sqkv_error err = DecodeEverything(WithStreams(i, streams, uint64_t{1} << 40));
    EXPECT_TRUE(err == SQKV_ERR_SIZE_MISMATCH || err == SQKV_ERR_LIMIT) << ErrName(err);
}

TEST(CodecStreams, ChecksumCoversTheStoredBody) {
    const int i = Find(kKindSparse);
    RawSection s = ToCodec1(TheBase().raw.sections[i], kD, {1, 1, 1, 1});
    RawFile f = TheBase().raw;
    f.sections[static_cast<size_t>(i)] = s;
    Bytes file = Assemble(f, KeepSizes());
    const size_t at = SectionOffsets(file)[static_cast<size_t>(i)];
    file[at + 64 + 16 * 4 + 6] ^= 0x01;  // inside the first frame, checksum not fixed
    EXPECT_ERR(file, SQKV_ERR_SECTION_CHECKSUM);
}

TEST(CodecStreams, IndexMustUseCodecZero) {
    RawFile f = TheBase().raw;
    f.index.header[sec::kCodec] = 1;
    EXPECT_ERR(Assemble(f), SQKV_ERR_SECTION_FIELD);  // §5.2
}

TEST(CodecStreams, BitFlipsInACompressedBodyNeverCrash) {
    RawFile g = TheBase().raw;
    const int i = Find(kKindSparse, 1);
    g.sections[static_cast<size_t>(i)] = ToCodec1(g.sections[static_cast<size_t>(i)], kD, {1, 1, 1, 1});
    const Bytes file = Assemble(g, KeepSizes());
    ASSERT_EQ(ErrName(DecodeEverything(file)), ErrName(SQKV_OK));
    const size_t at = SectionOffsets(file)[static_cast<size_t>(i)];
    const uint64_t stored = Get64(file, at + sec::kStoredSize);
    // Every bit of the stored body, with the checksums fixed so that the stream checks are reached: any
    // answer but a crash, and never a silent change of the decoded data with SQKV_OK... unless the frame
    // still decodes to valid data (zstd frames here carry no checksum of their own).
    const Bytes expected = DecodedAll(file);
    int accepted_changes = 0;
    for (size_t byte = 0; byte < stored; byte += 3) {
        Bytes h = file;
        h[at + 64 + byte] ^= static_cast<uint8_t>(1u << (byte % 8));
        FixSectionChecksums(&h, at);
        const sqkv_error err = DecodeEverything(h);
        if (err == SQKV_OK && DecodedAll(h) != expected) accepted_changes++;
    }
    std::printf("bit flips in a compressed body that still decode (to other valid data): %d\n", accepted_changes);
}

}  // namespace
