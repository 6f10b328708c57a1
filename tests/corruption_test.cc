// corruption_test.cc: every truncation and every single-bit flip of small valid files must be refused
// by open + verify + decode of everything (never SQKV_OK, never a crash or hang; ASan checks reads),
// with the error that names the damaged part of the file.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sqkv_file.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

constexpr uint8_t kEndMagic[8] = {0x1A, 0x0A, 0x0D, 0x56, 0x4B, 0x51, 0x53, 0x89};

sqkv_writer_options Opts(uint32_t bits, sqkv_quantizer q, sqkv_scale_granularity g) {
    sqkv_writer_options o{};
    o.prune = SQKV_PRUNE_MAGNITUDE;
    o.sparsity = 0.6;
    o.payload_bits = bits;
    o.quantizer = q;
    o.scales = g;
    o.offset_interval_log2 = 1;
    o.heads_per_section = 1;
    o.tokens_per_section = 0;
    return o;
}

// Quantized, with every ancillary kind, key and value tile padding, a dense window and section padding.
Bytes SmallQuantizedFile() {
    Cache c = MakeRandomCache(MakeGeometry(1, 1, 16, 40, 6), SQKV_DTYPE_FP32, 2024);
    c.has_tokens = true;
    for (int t = 0; t < 40; t++) c.tokens.push_back(t * 3 - 7);
    c.fingerprint = {1, 2, 3, 4, 5};
    c.metadata = {{"k", "v"}};
    Bytes f;
    EXPECT_EQ(EncodeCache(c, Opts(4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE), &f), SQKV_OK);
    return f;
}

// EXACT bf16 with a dense window, no ancillary sections.
Bytes SmallExactFile() {
    Cache c = MakeRandomCache(MakeGeometry(1, 1, 24, 10, 3, SQKV_DTYPE_BF16), SQKV_DTYPE_FP32, 7);
    Bytes f;
    EXPECT_EQ(EncodeCache(c, Opts(16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE), &f), SQKV_OK);
    return f;
}

// What a flipped bit at each byte offset must produce: the error set of the region it lies in.
std::vector<std::set<sqkv_error>> ExpectedByOffset(const Bytes &file) {
    std::vector<std::set<sqkv_error>> expected(file.size());
    auto mark = [&](size_t from, size_t to, std::set<sqkv_error> errs) {
        for (size_t i = from; i < to; i++) expected[i] = errs;
    };
    mark(0, 8, {SQKV_ERR_BAD_MAGIC});
    mark(8, 10, {SQKV_ERR_UNSUPPORTED_VERSION});
    mark(10, 12, {SQKV_ERR_HEADER_CHECKSUM});
    // A header_size that is still a multiple of 8 in range moves the checksum: HEADER_CHECKSUM;
    // beyond a short file: TRUNCATED.
    mark(12, 16, {SQKV_ERR_HEADER_SIZE, SQKV_ERR_HEADER_CHECKSUM, SQKV_ERR_TRUNCATED});
    mark(16, 64, {SQKV_ERR_HEADER_CHECKSUM});
    for (size_t at : SectionOffsets(file)) {
        const uint64_t stored = Get64(file, at + sec::kStoredSize);
        mark(at, at + 64, {SQKV_ERR_SECTION_HEADER_CHECKSUM});
        mark(at + 64, at + 64 + stored, {SQKV_ERR_SECTION_CHECKSUM});
        mark(at + 64 + stored, at + 64 + ((stored + 7) & ~uint64_t{7}), {SQKV_ERR_PADDING});
    }
    // The index offset in the tail: the reader finds no valid INDEX there; the spec names no single code.
    mark(file.size() - 16, file.size() - 8, {});
    mark(file.size() - 8, file.size(), {SQKV_ERR_BAD_TAIL});
    return expected;
}

void CheckEveryBitFlip(const Bytes &file) {
    ASSERT_EQ(ErrName(DecodeEverything(file)), ErrName(SQKV_OK));
    const std::vector<std::set<sqkv_error>> expected = ExpectedByOffset(file);
    std::map<std::string, int> histogram;
    int wrong_code = 0;
    for (size_t i = 0; i < file.size(); i++)
        for (int bit = 0; bit < 8; bit++) {
            Bytes f = file;
            f[i] ^= static_cast<uint8_t>(1u << bit);
            const sqkv_error err = DecodeEverything(f);
            ASSERT_NE(err, SQKV_OK) << "flip of bit " << bit << " of byte " << i << " was accepted";
            histogram[ErrName(err)]++;
            if (!expected[i].empty() && !expected[i].count(err) && wrong_code++ < 10)
                ADD_FAILURE() << "flip of bit " << bit << " of byte " << i << ": " << ErrName(err)
                              << " does not name the damaged part (expected e.g. " << ErrName(*expected[i].begin())
                              << ")";
        }
    EXPECT_EQ(wrong_code, 0);
    std::string summary;
    for (const auto &kv : histogram) summary += kv.first + "=" + std::to_string(kv.second) + " ";
    std::printf("bit flips of a %zu-byte file: %s\n", file.size(), summary.c_str());
}

void CheckEveryTruncation(const Bytes &file) {
    const size_t minimum = 64 + 64 + 32;  // header + INDEX header + the smallest INDEX body (§9)
    for (size_t len = 0; len < file.size(); len++) {
        const Bytes f(file.begin(), file.begin() + len);
        const sqkv_error err = DecodeEverything(f);
        if (len < minimum) {
            ASSERT_EQ(ErrName(err), ErrName(SQKV_ERR_TRUNCATED)) << "length " << len;
        } else if (std::memcmp(f.data() + len - 8, kEndMagic, 8) != 0) {
            ASSERT_EQ(ErrName(err), ErrName(SQKV_ERR_BAD_TAIL)) << "length " << len;
        } else {
            ASSERT_NE(err, SQKV_OK) << "length " << len;
        }
    }
}

TEST(Corruption, EveryTruncationOfQuantizedFile) { CheckEveryTruncation(SmallQuantizedFile()); }
TEST(Corruption, EveryTruncationOfExactFile) { CheckEveryTruncation(SmallExactFile()); }

TEST(Corruption, EveryBitFlipOfQuantizedFile) {
    const Bytes f = SmallQuantizedFile();
    ASSERT_LT(f.size(), 4096u) << "keep the test fast";
    CheckEveryBitFlip(f);
}

TEST(Corruption, EveryBitFlipOfExactFile) { CheckEveryBitFlip(SmallExactFile()); }

TEST(Corruption, EveryByteValueInTheHeaderFields) {
    // All 256 values of each header byte 8..55 with the checksum fixed up: no crash, and only the
    // original value is accepted, except where the spec allows other values (minor version, optional
    // features, source_dtype 1..3, and value_dtype bf16).
    const Bytes file = SmallQuantizedFile();
    for (size_t i = 8; i < 56; i++)
        for (int v = 0; v < 256; v++) {
            if (v == file[i]) continue;
            Bytes f = file;
            f[i] = static_cast<uint8_t>(v);
            if (i >= 12 && i < 16) continue;  // header_size moves the checksum: covered above
            FixHeaderChecksum(&f);
            const sqkv_error err = DecodeEverything(f);
            // value_dtype fp16 -> bf16 reinterprets the stored bits, which may well be valid bf16. Known
            // required features (§4.1: bits 0..2) may be declared without a section that uses them.
            const bool may_pass = (i >= 10 && i < 12) || (i >= 20 && i < 24) || (i == 45 && v >= 1 && v <= 3) ||
                                  (i == 44 && v == 2) || (i == 16 && v <= 7);
            if (!may_pass) {
                ASSERT_NE(err, SQKV_OK) << "byte " << i << " = " << v;
            } else if (i != 44) {
                ASSERT_EQ(ErrName(err), ErrName(SQKV_OK)) << "byte " << i << " = " << v;
            }
        }
}

TEST(Corruption, RandomMultiByteDamageNeverCrashes) {
    const Bytes file = SmallQuantizedFile();
    SplitMix64 rng(77);
    for (int round = 0; round < 3000; round++) {
        Bytes f = file;
        const int edits = 1 + static_cast<int>(rng.Next() % 8);
        for (int e = 0; e < edits; e++) f[rng.Next() % f.size()] = static_cast<uint8_t>(rng.Next());
        // Fix every checksum half the time so the damage reaches the field and body checks.
        if (round % 2) {
            if (Get32(f, hdr::kHeaderSize) >= 64 && Get32(f, hdr::kHeaderSize) <= f.size()) FixHeaderChecksum(&f);
            for (size_t at : SectionOffsets(f))
                if (Get64(f, at + sec::kStoredSize) <= f.size() - at - 64) FixSectionChecksums(&f, at);
        }
        if (f == file) continue;
        (void)DecodeEverything(f);  // any answer but a crash; ASan and UBSan watch
    }
}

}  // namespace
