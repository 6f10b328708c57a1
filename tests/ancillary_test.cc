// ancillary_test.cc: TOKENS, FINGERPRINT and METADATA round trips (spec/FORMAT.md §10), the writer's
// argument checks on them, and the restore check (sqkv_reader_check_restore).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "sqkv_file.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

sqkv_writer_options DefaultOptions() {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    return o;
}

Cache SmallCache(uint32_t tokens = 20) {
    return MakeRandomCache(MakeGeometry(2, 2, 64, tokens, 4), SQKV_DTYPE_FP32, 42);
}

Cache CacheWithAncillary() {
    Cache c = SmallCache();
    c.has_tokens = true;
    for (int32_t t = 0; t < 20; t++) c.tokens.push_back(t == 3 ? -2147483647 - 1 : t == 4 ? 2147483647 : 1000 + 7 * t);
    for (int i = 0; i < 32; i++) c.fingerprint.push_back(static_cast<uint8_t>(0xF0 ^ i));
    c.metadata = {{"zeta", "last"}, {"alpha", ""}, {"model", "llama-3-8b"}, {"\xC3\xA9t\xC3\xA9", "\xE2\x82\xAC 5"}};
    return c;
}

TEST(Ancillary, TokensFingerprintMetadataRoundTrip) {
    const Cache c = CacheWithAncillary();
    Bytes file;
    ASSERT_EQ(EncodeCache(c, DefaultOptions(), &file), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    ASSERT_EQ(sqkv_reader_verify(r.get()), SQKV_OK);

    size_t count = 99;
    ASSERT_EQ(sqkv_reader_tokens(r.get(), nullptr, 0, &count), SQKV_OK);
    ASSERT_EQ(count, 20u);
    std::vector<int32_t> tokens(20, 0);
    ASSERT_EQ(sqkv_reader_tokens(r.get(), tokens.data(), tokens.size(), &count), SQKV_OK);
    EXPECT_EQ(tokens, c.tokens);

    size_t size = 99;
    ASSERT_EQ(sqkv_reader_fingerprint(r.get(), nullptr, 0, &size), SQKV_OK);
    ASSERT_EQ(size, 32u);
    Bytes fp(40, 0xEE);
    ASSERT_EQ(sqkv_reader_fingerprint(r.get(), fp.data(), fp.size(), &size), SQKV_OK);
    EXPECT_EQ(Bytes(fp.begin(), fp.begin() + 32), c.fingerprint);
    EXPECT_EQ(fp[32], 0xEE) << "wrote past the fingerprint";

    ASSERT_EQ(sqkv_reader_metadata_count(r.get(), &count), SQKV_OK);
    ASSERT_EQ(count, 4u);
    // Written sorted bytewise (§10.3): "alpha" < "model" < "zeta" < "\xC3\xA9t\xC3\xA9".
    const std::vector<std::pair<std::string, std::string>> sorted = {
        {"alpha", ""}, {"model", "llama-3-8b"}, {"zeta", "last"}, {"\xC3\xA9t\xC3\xA9", "\xE2\x82\xAC 5"}};
    for (size_t i = 0; i < 4; i++) {
        const char *key, *value;
        size_t key_size, value_size;
        ASSERT_EQ(sqkv_reader_metadata_entry(r.get(), i, &key, &key_size, &value, &value_size), SQKV_OK);
        EXPECT_EQ(std::string(key, key_size), sorted[i].first);
        EXPECT_EQ(std::string(value, value_size), sorted[i].second);
    }
    const char *key, *value;
    size_t key_size, value_size;
    EXPECT_EQ(sqkv_reader_metadata_entry(r.get(), 4, &key, &key_size, &value, &value_size), SQKV_ERR_INVALID_ARGUMENT);
}

TEST(Ancillary, AncillarySectionsComeFirstAndAreOptional) {
    const Cache c = CacheWithAncillary();
    Bytes file;
    ASSERT_EQ(EncodeCache(c, DefaultOptions(), &file), SQKV_OK);
    RawFile raw;
    ASSERT_TRUE(ParseRaw(file, &raw));
    ASSERT_GE(raw.sections.size(), 3u);
    // §2 SHOULD / §14: TOKENS, FINGERPRINT, METADATA before the tensor sections.
    EXPECT_EQ(raw.sections[0].kind(), kKindTokens);
    EXPECT_EQ(raw.sections[1].kind(), kKindFingerprint);
    EXPECT_EQ(raw.sections[2].kind(), kKindMetadata);

    Bytes bare;
    ASSERT_EQ(EncodeCache(SmallCache(), DefaultOptions(), &bare), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(bare, &r), SQKV_OK);
    size_t count = 99;
    ASSERT_EQ(sqkv_reader_tokens(r.get(), nullptr, 0, &count), SQKV_OK);
    EXPECT_EQ(count, 0u);
    ASSERT_EQ(sqkv_reader_fingerprint(r.get(), nullptr, 0, &count), SQKV_OK);
    EXPECT_EQ(count, 0u);
    ASSERT_EQ(sqkv_reader_metadata_count(r.get(), &count), SQKV_OK);
    EXPECT_EQ(count, 0u);
}

TEST(Ancillary, TwoPhaseQueriesRefuseSmallBuffers) {
    const Cache c = CacheWithAncillary();
    Bytes file;
    ASSERT_EQ(EncodeCache(c, DefaultOptions(), &file), SQKV_OK);
    {
        ReaderPtr r;
        ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
        std::vector<int32_t> tokens(20, 77);
        size_t count = 0;
        EXPECT_EQ(sqkv_reader_tokens(r.get(), tokens.data(), 19, &count), SQKV_ERR_BUFFER_TOO_SMALL);
        EXPECT_EQ(tokens[19], 77) << "wrote past cap";
    }
    {
        ReaderPtr r;
        ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
        Bytes fp(32, 0x11);
        size_t size = 0;
        EXPECT_EQ(sqkv_reader_fingerprint(r.get(), fp.data(), 31, &size), SQKV_ERR_BUFFER_TOO_SMALL);
        EXPECT_EQ(fp[31], 0x11) << "wrote past cap";
    }
}

TEST(Ancillary, WriterRejectsBadAncillaryArguments) {
    const Cache c = SmallCache();
    sqkv_writer_options o = DefaultOptions();
    auto fresh = [&]() {
        sqkv_writer *w = nullptr;
        EXPECT_EQ(sqkv_writer_create(&c.geometry, &o, &w), SQKV_OK);
        return WriterPtr(w);
    };
    const std::vector<int32_t> tokens(21, 5);
    EXPECT_EQ(sqkv_writer_set_tokens(fresh().get(), tokens.data(), 19), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_writer_set_tokens(fresh().get(), tokens.data(), 21), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_writer_set_tokens(fresh().get(), nullptr, 20), SQKV_ERR_INVALID_ARGUMENT);
    const Bytes big(4097, 1);
    EXPECT_EQ(sqkv_writer_set_fingerprint(fresh().get(), big.data(), 0), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_writer_set_fingerprint(fresh().get(), big.data(), 4097), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_writer_set_fingerprint(fresh().get(), big.data(), 4096), SQKV_OK);
    const std::string key256(256, 'k'), key255(255, 'k'), value65536(65536, 'v'), value65535(65535, 'v');
    auto meta = [&](const std::string &k, const std::string &v) {
        return sqkv_writer_add_metadata(fresh().get(), k.data(), k.size(), v.data(), v.size());
    };
    EXPECT_EQ(meta("", "x"), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(meta(key256, "x"), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(meta(key255, "x"), SQKV_OK);
    EXPECT_EQ(meta("k", value65536), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(meta("k", value65535), SQKV_OK);
    EXPECT_EQ(meta(std::string("a\0b", 3), "x"), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(meta("k", std::string("a\0b", 3)), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(meta("\xC0\xAF", "x"), SQKV_ERR_INVALID_ARGUMENT);      // overlong '/'
    EXPECT_EQ(meta("k", "\xED\xA0\x80"), SQKV_ERR_INVALID_ARGUMENT);  // surrogate U+D800
    EXPECT_EQ(meta("k", "\xF4\x90\x80\x80"), SQKV_ERR_INVALID_ARGUMENT);  // above U+10FFFF
    EXPECT_EQ(meta("k", "\xE2\x82"), SQKV_ERR_INVALID_ARGUMENT);      // truncated sequence
    WriterPtr w = fresh();
    ASSERT_EQ(sqkv_writer_add_metadata(w.get(), "dup", 3, "1", 1), SQKV_OK);
    EXPECT_EQ(sqkv_writer_add_metadata(w.get(), "dup", 3, "2", 1), SQKV_ERR_INVALID_ARGUMENT);
}

TEST(Ancillary, MetadataAtItsLimits) {
    // 1024 entries is the maximum (§3); the 1025th is refused.
    Cache c = SmallCache();
    sqkv_writer_options o = DefaultOptions();
    sqkv_writer *raw = nullptr;
    ASSERT_EQ(sqkv_writer_create(&c.geometry, &o, &raw), SQKV_OK);
    WriterPtr w(raw);
    char key[16];
    for (int i = 0; i < 1024; i++) {
        std::snprintf(key, sizeof key, "key%04d", 1023 - i);
        ASSERT_EQ(sqkv_writer_add_metadata(w.get(), key, std::strlen(key), "v", 1), SQKV_OK) << i;
    }
    EXPECT_NE(sqkv_writer_add_metadata(w.get(), "one-more", 8, "v", 1), SQKV_OK);
}

// ---- restore check ----------------------------------------------------------------------------------

class Restore : public ::testing::Test {
  protected:
    void SetUp() override {
        cache_ = CacheWithAncillary();
        ASSERT_EQ(EncodeCache(cache_, DefaultOptions(), &file_), SQKV_OK);
        ASSERT_EQ(OpenMemory(file_, &r_), SQKV_OK);
        expected_ = cache_.geometry;
    }
    // Every check on a reader of its own: a refusal is an error, and errors are sticky (sqkv.h).
    sqkv_error Check(const sqkv_geometry *g, const Bytes *fp, const std::vector<int32_t> &prompt, size_t *reusable) {
        *reusable = 12345;
        EXPECT_EQ(OpenMemory(file_, &r_), SQKV_OK);
        return sqkv_reader_check_restore(r_.get(), g, fp ? fp->data() : nullptr, fp ? fp->size() : 0, prompt.data(),
                                         prompt.size(), reusable);
    }
    Cache cache_;
    Bytes file_;
    ReaderPtr r_;
    sqkv_geometry expected_;
};

TEST_F(Restore, FullMatchReusesEveryToken) {
    size_t reusable;
    EXPECT_EQ(Check(&expected_, &cache_.fingerprint, cache_.tokens, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 20u);
}

TEST_F(Restore, LongerPromptReusesTheWholeCache) {
    std::vector<int32_t> prompt = cache_.tokens;
    prompt.insert(prompt.end(), {9, 9, 9});
    size_t reusable;
    EXPECT_EQ(Check(&expected_, &cache_.fingerprint, prompt, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 20u);
}

TEST_F(Restore, PartialPrefix) {
    std::vector<int32_t> prompt = cache_.tokens;
    prompt[11] ^= 1;
    size_t reusable;
    EXPECT_EQ(Check(&expected_, &cache_.fingerprint, prompt, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 11u);
    prompt.resize(7);
    EXPECT_EQ(Check(&expected_, &cache_.fingerprint, prompt, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 7u);
    prompt[0] ^= 1;
    EXPECT_EQ(Check(&expected_, &cache_.fingerprint, prompt, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 0u) << "nothing reusable is a valid answer";
}

TEST_F(Restore, OptionalChecksMayBeSkipped) {
    size_t reusable;
    EXPECT_EQ(Check(nullptr, nullptr, cache_.tokens, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 20u);
}

TEST_F(Restore, FingerprintMismatch) {
    Bytes other = cache_.fingerprint;
    other[31] ^= 0x80;
    size_t reusable;
    EXPECT_EQ(Check(&expected_, &other, cache_.tokens, &reusable), SQKV_ERR_FINGERPRINT_MISMATCH);
    Bytes shorter(cache_.fingerprint.begin(), cache_.fingerprint.end() - 1);
    EXPECT_EQ(Check(&expected_, &shorter, cache_.tokens, &reusable), SQKV_ERR_FINGERPRINT_MISMATCH);
    Bytes longer = cache_.fingerprint;
    longer.push_back(0);
    EXPECT_EQ(Check(&expected_, &longer, cache_.tokens, &reusable), SQKV_ERR_FINGERPRINT_MISMATCH);
}

TEST_F(Restore, GeometryMismatch) {
    size_t reusable;
    for (int field = 0; field < 3; field++) {
        sqkv_geometry g = expected_;
        (field == 0 ? g.n_layers : field == 1 ? g.n_kv_heads : g.head_dim) += 1;
        EXPECT_EQ(Check(&g, &cache_.fingerprint, cache_.tokens, &reusable), SQKV_ERR_GEOMETRY_MISMATCH) << field;
    }
    // n_tokens and dense_window are not part of the model: a different value is no mismatch.
    sqkv_geometry g = expected_;
    g.n_tokens = 4096;
    g.dense_window = 0;
    EXPECT_EQ(Check(&g, &cache_.fingerprint, cache_.tokens, &reusable), SQKV_OK);
}

TEST(RestoreWithoutAncillary, MissingFingerprintAndTokens) {
    Bytes file;
    const Cache c = SmallCache();
    ASSERT_EQ(EncodeCache(c, DefaultOptions(), &file), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    const uint8_t fp[4] = {1, 2, 3, 4};
    const int32_t prompt[3] = {1, 2, 3};
    size_t reusable = 0;
    EXPECT_EQ(sqkv_reader_check_restore(r.get(), &c.geometry, fp, 4, prompt, 3, &reusable), SQKV_ERR_NO_FINGERPRINT);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_check_restore(r.get(), &c.geometry, nullptr, 0, prompt, 3, &reusable), SQKV_ERR_NO_TOKENS);
}

TEST(RestoreWithoutAncillary, TokensButNoFingerprint) {
    Cache c = SmallCache();
    c.has_tokens = true;
    c.tokens.assign(20, 3);
    Bytes file;
    ASSERT_EQ(EncodeCache(c, DefaultOptions(), &file), SQKV_OK);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    const uint8_t fp[1] = {9};
    size_t reusable = 0;
    EXPECT_EQ(sqkv_reader_check_restore(r.get(), nullptr, fp, 1, c.tokens.data(), 20, &reusable),
              SQKV_ERR_NO_FINGERPRINT);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_check_restore(r.get(), nullptr, nullptr, 0, c.tokens.data(), 20, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 20u);
}

}  // namespace
