// append_test.cc: growing a file in place (sqkv.h sqkv_append, spec/FORMAT.md §9.1) and recovering from
// an interrupted append (sqkv_find_valid_prefix, sqkv_recover).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "sqkv.h"
#include "test_util.h"

namespace {

using sqkv_test::Bytes;
using sqkv_test::Cache;

// Tokens [t0, t1) of every head of `c` (fp32 input).
Cache Slice(const Cache &c, uint32_t t0, uint32_t t1, uint32_t dense_window) {
    Cache s = c;
    const sqkv_geometry &g = c.geometry;
    s.geometry.n_tokens = t1 - t0;
    s.geometry.dense_window = dense_window;
    for (uint32_t l = 0; l < g.n_layers; l++) {
        for (int t = 0; t < 2; t++) {
            const Bytes &src = t ? c.v[l] : c.k[l];
            Bytes dst(static_cast<size_t>(g.n_kv_heads) * (t1 - t0) * g.head_dim * 4);
            for (uint32_t h = 0; h < g.n_kv_heads; h++)
                memcpy(dst.data() + static_cast<size_t>(h) * (t1 - t0) * g.head_dim * 4,
                       src.data() + (static_cast<size_t>(h) * g.n_tokens + t0) * g.head_dim * 4,
                       static_cast<size_t>(t1 - t0) * g.head_dim * 4);
            (t ? s.v[l] : s.k[l]) = dst;
        }
    }
    if (c.has_tokens) s.tokens.assign(c.tokens.begin() + t0, c.tokens.begin() + t1);
    return s;
}

Cache Full(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens, uint64_t seed, bool with_tokens = true) {
    Cache c = sqkv_test::MakeRandomCache(sqkv_test::MakeGeometry(layers, heads, dim, tokens, 0), SQKV_DTYPE_FP32, seed);
    c.has_tokens = with_tokens;
    if (with_tokens) {
        c.tokens.resize(tokens);
        for (uint32_t i = 0; i < tokens; i++) c.tokens[i] = static_cast<int32_t>(i * 13 % 1000);
    }
    c.fingerprint.assign(24, 0x77);
    c.metadata = {{"model", "append-test"}};
    return c;
}

sqkv_writer_options Opts(uint32_t bits, uint32_t tps = 0, uint32_t zstd = 0, uint32_t hps = 1) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = bits;
    o.quantizer = bits == 16 ? SQKV_QUANT_EXACT : SQKV_QUANT_SYMMETRIC;
    o.scales = bits == 16 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_HEAD;
    o.tokens_per_section = tps;
    o.zstd_level = zstd;
    o.heads_per_section = hps;
    return o;
}

// Appends tokens [t0, t1) of `full` to the file at path.
sqkv_error Append(const std::string &path, const Cache &full, uint32_t t0, uint32_t t1, const sqkv_writer_options &o,
                  std::string *detail = nullptr) {
    const Cache part = Slice(full, t0, t1, 0);
    std::vector<const void *> k, v;
    for (uint32_t l = 0; l < full.geometry.n_layers; l++) {
        k.push_back(part.k[l].data());
        v.push_back(part.v[l].data());
    }
    char text[600];
    const sqkv_error err = sqkv_append(path.c_str(), &full.geometry, &o, nullptr, t1 - t0, full.has_tokens ? part.tokens.data() : nullptr,
                                       SQKV_DTYPE_FP32, k.data(), v.data(), text, sizeof text);
    if (detail) *detail = text;
    return err;
}

std::vector<Bytes> DecodeAll(const Bytes &file, uint32_t layers, sqkv_dtype dtype = SQKV_DTYPE_FP32) {
    sqkv_test::ReaderPtr r;
    EXPECT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    std::vector<Bytes> out;
    if (!r) return out;
    EXPECT_EQ(sqkv_reader_verify(r.get()), SQKV_OK) << sqkv_reader_error_detail(r.get());
    for (uint32_t l = 0; l < layers; l++)
        for (int t = 0; t < 2; t++) {
            Bytes b;
            EXPECT_EQ(sqkv_test::DecodeTensor(r.get(), l, static_cast<sqkv_tensor>(t), dtype, &b), SQKV_OK);
            out.push_back(b);
        }
    return out;
}

class AppendTest : public ::testing::Test {
  protected:
    void SetUp() override { dir_ = sqkv_test::MakeTempDir("append"); }
    void TearDown() override { sqkv_test::RemoveTree(dir_); }
    std::string Path(const std::string &name) const { return dir_ + "/" + name; }
    Bytes Read(const std::string &path) const {
        Bytes b;
        EXPECT_TRUE(sqkv_test::ReadFile(path, &b));
        return b;
    }
    std::string dir_;
};

// The spec'd result (§9.1): the appended file decodes like a one-shot encoding of the grown cache whose
// sections fall on the same token boundaries. With tokens_per_section = S0 the one-shot writer cuts the
// sparse region at S0 too, so even quantized payloads (whose scales depend on the section) match bit
// for bit; the dense window is exact.
TEST_F(AppendTest, DecodesLikeOneShotEncodingOfTheGrownCache) {
    struct Case {
        uint32_t bits, zstd, window, n0, added;
    };
    for (const Case &k : {Case{2, 0, 64, 192, 40}, Case{4, 3, 64, 192, 64}, Case{16, 0, 64, 192, 100},
                          Case{8, 0, 0, 128, 30}, Case{2, 1, 64, 128, 64}}) {
        SCOPED_TRACE(testing::Message() << "bits " << k.bits << " window " << k.window << " added " << k.added);
        const uint32_t n1 = k.n0 + k.added, s0 = k.n0 - k.window;
        const Cache full = Full(2, 3, 64, n1, 17 + k.bits);
        const sqkv_writer_options o = Opts(k.bits, s0, k.zstd);
        Bytes old_file, want;
        ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, k.n0, k.window), o, &old_file), SQKV_OK);
        Cache grown = Slice(full, 0, n1, k.window);
        ASSERT_EQ(sqkv_test::EncodeCache(grown, o, &want), SQKV_OK);
        const std::string path = Path("a.sqkv");
        ASSERT_TRUE(sqkv_test::WriteFile(path, old_file));
        std::string detail;
        ASSERT_EQ(Append(path, full, k.n0, n1, o, &detail), SQKV_OK) << detail;
        const Bytes got = Read(path);
        // The old bytes are untouched.
        ASSERT_GT(got.size(), old_file.size());
        EXPECT_TRUE(std::equal(old_file.begin(), old_file.end(), got.begin()));
        EXPECT_EQ(DecodeAll(got, 2), DecodeAll(want, 2));
        sqkv_test::ReaderPtr r;
        ASSERT_EQ(sqkv_test::OpenMemory(got, &r), SQKV_OK);
        sqkv_geometry g;
        ASSERT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_OK);
        EXPECT_EQ(g.n_tokens, n1);
        EXPECT_EQ(g.dense_window, k.window);
        std::vector<int32_t> ids(n1);
        size_t count = 0;
        ASSERT_EQ(sqkv_reader_tokens(r.get(), ids.data(), ids.size(), &count), SQKV_OK);
        EXPECT_EQ(ids, full.tokens);
        size_t reusable = 0;
        EXPECT_EQ(sqkv_reader_check_restore(r.get(), nullptr, full.fingerprint.data(), full.fingerprint.size(),
                                            full.tokens.data(), n1, &reusable),
                  SQKV_OK);
        EXPECT_EQ(reusable, n1);
    }
}

// Repeated appends of EXACT payloads: boundaries do not matter, the values equal a one-shot encoding.
// With quantized payloads, the old tokens keep their decoded values and the window stays exact.
TEST_F(AppendTest, RepeatedAppends) {
    const uint32_t steps[] = {96, 120, 121, 185, 200};
    for (uint32_t bits : {16u, 2u}) {
        SCOPED_TRACE(bits);
        const Cache full = Full(2, 2, 64, 200, 5);
        const uint32_t W = 24;
        const sqkv_writer_options o = Opts(bits, 0, 3, 2);
        Bytes file;
        ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, steps[0], W), o, &file), SQKV_OK);
        const std::string path = Path("r.sqkv");
        ASSERT_TRUE(sqkv_test::WriteFile(path, file));
        std::vector<Bytes> before = DecodeAll(file, 2);
        for (size_t i = 1; i < 5; i++) {
            std::string detail;
            ASSERT_EQ(Append(path, full, steps[i - 1], steps[i], o, &detail), SQKV_OK) << detail;
            const Bytes now = Read(path);
            const std::vector<Bytes> after = DecodeAll(now, 2);
            ASSERT_EQ(after.size(), 4u);
            const uint32_t n_old = steps[i - 1], n_new = steps[i];
            for (size_t t = 0; t < 4; t++)
                for (uint32_t h = 0; h < 2; h++) {
                    // Tokens that were sparse before keep their decoded values.
                    const size_t row = 64 * 4;
                    EXPECT_EQ(0, memcmp(after[t].data() + h * n_new * row, before[t].data() + h * n_old * row,
                                        (n_old - W) * row));
                    // The window is the input, exactly (fp32 input of fp16-representable values).
                    const Bytes &src = (t % 2) ? full.v[t / 2] : full.k[t / 2];
                    Bytes expect(W * row);
                    memcpy(expect.data(), src.data() + (h * 200 + n_new - W) * row, W * row);
                    Bytes got(after[t].begin() + (h * n_new + n_new - W) * row, after[t].begin() + (h * n_new + n_new) * row);
                    // Inputs are exact fp16 values only after rounding: compare against the fp16 rounding.
                    std::vector<uint16_t> h16(W * 64);
                    for (size_t e = 0; e < h16.size(); e++) {
                        float f, g2;
                        memcpy(&f, expect.data() + 4 * e, 4);
                        memcpy(&g2, got.data() + 4 * e, 4);
                        EXPECT_NEAR(g2, f, std::fabs(f) / 1024.0 + 1e-7) << e;
                    }
                }
            before = after;
            if (bits == 16) {
                Bytes want;
                ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, n_new, W), Opts(16), &want), SQKV_OK);
                EXPECT_EQ(after, DecodeAll(want, 2)) << "step " << i;
            }
        }
    }
}

TEST_F(AppendTest, InterruptedAppendAtEveryOffsetIsRecovered) {
    const Cache full = Full(2, 2, 16, 160, 9);
    const sqkv_writer_options o = Opts(2, 0, 0);
    Bytes old_file;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 128, 32), o, &old_file), SQKV_OK);
    const std::string path = Path("c.sqkv");
    ASSERT_TRUE(sqkv_test::WriteFile(path, old_file));
    ASSERT_EQ(Append(path, full, 128, 144, o), SQKV_OK);
    const Bytes appended = Read(path);
    ASSERT_TRUE(std::equal(old_file.begin(), old_file.end(), appended.begin()));
    const std::string torn = Path("torn.sqkv");
    // Every cut within 16 bytes of a section boundary of the new segment (headers, tails, padding), and
    // every 29th byte elsewhere: each cut is a file on disk plus an append attempt and two scans.
    std::set<size_t> cuts;
    {
        sqkv_test::ReaderPtr r;
        ASSERT_EQ(sqkv_test::OpenMemory(appended, &r), SQKV_OK);
        size_t n = 0;
        sqkv_reader_section_count(r.get(), &n);
        for (size_t i = 0; i < n; i++) {
            sqkv_section_info s;
            sqkv_reader_section_info(r.get(), i, &s);
            for (long long d = -16; d <= 16; d++) cuts.insert(static_cast<size_t>(static_cast<long long>(s.offset) + d));
        }
        for (size_t cut = old_file.size(); cut < appended.size(); cut += 29) cuts.insert(cut);
        for (size_t cut = appended.size() - 20; cut < appended.size(); cut++) cuts.insert(cut);
    }
    size_t checked = 0;
    for (size_t cut : cuts) {
        if (cut <= old_file.size() || cut >= appended.size()) continue;
        const Bytes prefix(appended.begin(), appended.begin() + static_cast<long>(cut));
        sqkv_test::ReaderPtr r;
        const sqkv_error open_err = sqkv_test::OpenMemory(prefix, &r);
        ASSERT_TRUE(open_err == SQKV_ERR_BAD_TAIL || open_err == SQKV_ERR_TRUNCATED)
            << cut << " " << sqkv_test::ErrName(open_err);
        ASSERT_TRUE(sqkv_test::WriteFile(torn, prefix));
        // The appender refuses such a file...
        std::string detail;
        ASSERT_EQ(Append(torn, full, 144, 150, o, &detail), open_err) << detail;
        EXPECT_NE(detail.find("sqkv_recover"), std::string::npos) << detail;
        // ... which the read-only scan diagnoses and recovery restores to exactly the old bytes.
        uint64_t size = 0, valid = 0, old_size = 0, new_size = 0;
        char text[600];
        ASSERT_EQ(sqkv_find_valid_prefix(torn.c_str(), nullptr, &size, &valid, text, sizeof text), SQKV_OK) << text;
        EXPECT_EQ(size, cut);
        EXPECT_EQ(valid, old_file.size());
        EXPECT_EQ(Read(torn).size(), cut) << "the scan is read-only";
        checked++;
        if (checked % 8 != 1 && cut != appended.size() - 1) continue;  // recovery fsyncs: a sample
        ASSERT_EQ(sqkv_recover(torn.c_str(), nullptr, &old_size, &new_size, text, sizeof text), SQKV_OK) << text;
        EXPECT_EQ(old_size, cut);
        EXPECT_EQ(new_size, old_file.size());
        ASSERT_EQ(Read(torn), old_file) << cut;
    }
    EXPECT_GT(checked, 300u);
    std::printf("checked %zu cuts of a %zu-byte segment\n", checked, appended.size() - old_file.size());
    // After recovery, appending works again and gives the same file as the first time.
    ASSERT_EQ(Append(torn, full, 128, 144, o), SQKV_OK);
    EXPECT_EQ(Read(torn), appended);
    // A sound file: recovery changes nothing.
    uint64_t old_size = 0, new_size = 0;
    ASSERT_EQ(sqkv_recover(torn.c_str(), nullptr, &old_size, &new_size, nullptr, 0), SQKV_OK);
    EXPECT_EQ(old_size, appended.size());
    EXPECT_EQ(new_size, appended.size());
}

// Fuzzing finding 7: the scan for a valid prefix read the file backward in 64 KiB blocks but stopped
// after the first, so an interrupted append that had written more than 64 KiB left no recoverable
// prefix. Torn tails of 64 KiB - 8 .. 200 KiB (zeros, and copies of the file's own bytes, whose end
// magic at aligned ends makes false candidates) must all go back to the old file.
TEST_F(AppendTest, LongTornTailIsRecovered) {
    const Cache full = Full(1, 2, 16, 100, 12);
    Bytes old_file;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 100, 10), Opts(2), &old_file), SQKV_OK);
    const std::string path = Path("long.sqkv");
    for (size_t tail : {size_t{65536 - 8}, size_t{65536}, size_t{65536 + 8}, size_t{140000}, size_t{200000}}) {
        for (int copies : {0, 1}) {
            Bytes torn = old_file;
            while (torn.size() < old_file.size() + tail) {
                if (copies) torn.insert(torn.end(), old_file.begin(), old_file.end());
                else torn.push_back(0);
            }
            torn.resize(old_file.size() + tail);
            ASSERT_TRUE(sqkv_test::WriteFile(path, torn));
            uint64_t size = 0, valid = 0, old_size = 0, new_size = 0;
            char text[600];
            ASSERT_EQ(sqkv_find_valid_prefix(path.c_str(), nullptr, &size, &valid, text, sizeof text), SQKV_OK)
                << "tail " << tail << " copies " << copies << ": " << text;
            EXPECT_EQ(size, torn.size());
            EXPECT_EQ(valid, old_file.size()) << "tail " << tail << " copies " << copies;
            ASSERT_EQ(sqkv_recover(path.c_str(), nullptr, &old_size, &new_size, text, sizeof text), SQKV_OK) << text;
            EXPECT_EQ(new_size, old_file.size());
            EXPECT_EQ(Read(path), old_file) << "tail " << tail << " copies " << copies;
        }
    }
}

// A crash after the tail became durable but before a section did (writes reach the disk in any order
// without the appender's fsync between them): the file opens but does not verify. Recovery goes back
// to the previous state, and the appender refuses to build on the torn segment.
TEST_F(AppendTest, TornSegmentBehindAValidTail) {
    const Cache full = Full(1, 2, 64, 200, 10);
    const sqkv_writer_options o = Opts(4);
    Bytes old_file;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 100, 20), o, &old_file), SQKV_OK);
    const std::string path = Path("t.sqkv");
    ASSERT_TRUE(sqkv_test::WriteFile(path, old_file));
    ASSERT_EQ(Append(path, full, 100, 150, o), SQKV_OK);
    const Bytes first = Read(path);
    ASSERT_EQ(Append(path, full, 150, 170, o), SQKV_OK);
    Bytes second = Read(path);
    // Zero a page's worth in the middle of the second segment.
    const size_t mid = first.size() + (second.size() - first.size()) / 3;
    std::fill(second.begin() + static_cast<long>(mid), second.begin() + static_cast<long>(mid) + 64, 0);
    ASSERT_TRUE(sqkv_test::WriteFile(path, second));
    sqkv_test::ReaderPtr r;
    ASSERT_EQ(sqkv_test::OpenMemory(second, &r), SQKV_OK);
    EXPECT_NE(sqkv_reader_verify(r.get()), SQKV_OK);
    std::string detail;
    EXPECT_NE(Append(path, full, 170, 171, o, &detail), SQKV_OK);
    EXPECT_EQ(Read(path), second) << "a refused append writes nothing";
    uint64_t old_size = 0, new_size = 0;
    char text[600];
    ASSERT_EQ(sqkv_recover(path.c_str(), nullptr, &old_size, &new_size, text, sizeof text), SQKV_OK) << text;
    EXPECT_EQ(new_size, first.size());
    EXPECT_EQ(Read(path), first);
}

TEST_F(AppendTest, FailuresLeaveTheFileAsItWas) {
    const Cache full = Full(2, 2, 64, 200, 12);
    const sqkv_writer_options o = Opts(2);
    Bytes old_file;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 100, 10), o, &old_file), SQKV_OK);
    const std::string path = Path("f.sqkv");
    ASSERT_TRUE(sqkv_test::WriteFile(path, old_file));
    const Cache part = Slice(full, 100, 110, 0);
    std::vector<const void *> k = {part.k[0].data(), part.k[1].data()}, v = {part.v[0].data(), part.v[1].data()};
    char text[600];
    // token ids are required for a file with TOKENS
    EXPECT_EQ(sqkv_append(path.c_str(), &full.geometry, &o, nullptr, 10, nullptr, SQKV_DTYPE_FP32, k.data(), v.data(), text, sizeof text),
              SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(text).find("token_ids"), std::string::npos) << text;
    // NaN in layer 1's new values: fails after layer 0 was written; the file gets its old size back
    Bytes bad = part.v[1];
    const float nan = NAN;
    memcpy(bad.data() + 4 * 70, &nan, 4);
    std::vector<const void *> v_bad = {part.v[0].data(), bad.data()};
    EXPECT_EQ(sqkv_append(path.c_str(), &full.geometry, &o, nullptr, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v_bad.data(), text,
                          sizeof text),
              SQKV_ERR_NONFINITE_INPUT);
    EXPECT_NE(std::string(text).find("layer 1 V head 0 new token 1 channel 6"), std::string::npos) << text;
    EXPECT_EQ(Read(path), old_file);
    // bad arguments
    EXPECT_EQ(sqkv_append(path.c_str(), &full.geometry, &o, nullptr, 0, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v.data(), text,
                          sizeof text),
              SQKV_ERR_INVALID_ARGUMENT);
    // k and v of another shape than the file's cache: refused before anything is read from them
    sqkv_geometry other = full.geometry;
    other.n_kv_heads = 3;
    EXPECT_EQ(sqkv_append(path.c_str(), &other, &o, nullptr, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v.data(),
                          text, sizeof text),
              SQKV_ERR_GEOMETRY_MISMATCH);
    EXPECT_NE(std::string(text).find("3 heads"), std::string::npos) << text;
    EXPECT_EQ(sqkv_append(path.c_str(), nullptr, &o, nullptr, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v.data(),
                          text, sizeof text),
              SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(Read(path), old_file);
    sqkv_writer_options bad_opts = o;
    bad_opts.zstd_level = 99;
    EXPECT_EQ(sqkv_append(path.c_str(), &full.geometry, &bad_opts, nullptr, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v.data(),
                          text, sizeof text),
              SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_append(Path("missing.sqkv").c_str(), &full.geometry, &o, nullptr, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(),
                          v.data(), text, sizeof text),
              SQKV_ERR_IO);
    // another process holds the lock
    const int fd = open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(flock(fd, LOCK_EX), 0);
    EXPECT_EQ(sqkv_append(path.c_str(), &full.geometry, &o, nullptr, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v.data(), text,
                          sizeof text),
              SQKV_ERR_IO);
    EXPECT_NE(std::string(text).find("flock"), std::string::npos) << text;
    close(fd);
    EXPECT_EQ(Read(path), old_file);
    // beyond the token limit
    sqkv_limits limits;
    sqkv_limits_default(&limits);
    limits.max_tokens = 105;
    EXPECT_EQ(sqkv_append(path.c_str(), &full.geometry, &o, &limits, 10, part.tokens.data(), SQKV_DTYPE_FP32, k.data(), v.data(), text,
                          sizeof text),
              SQKV_ERR_LIMIT);
    EXPECT_EQ(Read(path), old_file);
    // no valid prefix at all: recovery refuses and leaves the file
    const std::string junk = Path("junk.sqkv");
    ASSERT_TRUE(sqkv_test::WriteFile(junk, Bytes(500, 0x1A)));
    uint64_t a = 0, b = 0;
    EXPECT_EQ(sqkv_recover(junk.c_str(), nullptr, &a, &b, text, sizeof text), SQKV_ERR_BAD_MAGIC);
    EXPECT_EQ(Read(junk).size(), 500u);
}

TEST_F(AppendTest, WithoutTokensAndWholeWindow) {
    // No TOKENS section; a cache that is all dense window (S0 = 0).
    const Cache full = Full(1, 3, 32, 90, 14, false);
    const sqkv_writer_options o = Opts(16);
    Bytes old_file, want;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 40, 40), o, &old_file), SQKV_OK);
    const std::string path = Path("w.sqkv");
    ASSERT_TRUE(sqkv_test::WriteFile(path, old_file));
    std::string detail;
    ASSERT_EQ(Append(path, full, 40, 90, o, &detail), SQKV_OK) << detail;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 90, 40), o, &want), SQKV_OK);
    EXPECT_EQ(DecodeAll(Read(path), 1), DecodeAll(want, 1));
}

// The streaming decoder delivers an appended file's first state and then refuses the rest.
TEST_F(AppendTest, StreamingDecoderRefusesAppendedFiles) {
    const Cache full = Full(1, 2, 64, 150, 15);
    const sqkv_writer_options o = Opts(2);
    Bytes old_file;
    ASSERT_EQ(sqkv_test::EncodeCache(Slice(full, 0, 100, 20), o, &old_file), SQKV_OK);
    const std::string path = Path("s.sqkv");
    ASSERT_TRUE(sqkv_test::WriteFile(path, old_file));
    ASSERT_EQ(Append(path, full, 100, 150, o), SQKV_OK);
    const Bytes file = Read(path);
    sqkv_stream_decoder *d = nullptr;
    ASSERT_EQ(sqkv_stream_decoder_create(nullptr, 0, SQKV_DTYPE_FP32, nullptr, &d), SQKV_OK);
    EXPECT_EQ(sqkv_stream_decoder_push(d, file.data(), file.size()), SQKV_ERR_UNSUPPORTED);
    sqkv_stream_status st;
    EXPECT_EQ(sqkv_stream_decoder_finish(d, &st), SQKV_ERR_UNSUPPORTED);
    EXPECT_TRUE(st.index_received);
    EXPECT_FALSE(st.complete);
    EXPECT_EQ(st.layers_complete, 1u);
    EXPECT_EQ(st.bytes_verified, old_file.size());
    EXPECT_EQ(st.geometry.n_tokens, 100u);
    EXPECT_NE(std::string(sqkv_stream_decoder_error_detail(d)).find("appended"), std::string::npos);
    sqkv_stream_decoder_destroy(d);
}

}  // namespace
