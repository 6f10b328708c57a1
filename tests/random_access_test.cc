// random_access_test.cc: readers over a read_at callback or a file descriptor (sqkv.h
// sqkv_reader_open_callback / open_fd): they read the file header, the tail, the INDEX section and the
// sections asked for, nothing else, and give what open_memory gives.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "sqkv.h"
#include "test_util.h"

namespace {

using sqkv_test::Bytes;
using sqkv_test::Cache;

// A file in memory behind read_at, recording every range read.
struct CountingSource {
    const Bytes *file;
    std::vector<std::pair<uint64_t, uint64_t>> reads;  // (offset, size)
    uint64_t bytes = 0;
    int fail_at_read = -1;
};

int CountingRead(void *ctx, uint64_t offset, void *buf, size_t size) {
    CountingSource *s = static_cast<CountingSource *>(ctx);
    if (static_cast<int>(s->reads.size()) == s->fail_at_read) return -1;
    EXPECT_LE(offset + size, s->file->size());
    s->reads.emplace_back(offset, size);
    s->bytes += size;
    memcpy(buf, s->file->data() + offset, size);
    return 0;
}

Cache TestCache(uint32_t layers, uint64_t seed) {
    Cache c = sqkv_test::MakeRandomCache(sqkv_test::MakeGeometry(layers, 4, 64, 256, 32), SQKV_DTYPE_FP32, seed);
    c.has_tokens = true;
    c.tokens.assign(256, 0);
    for (int i = 0; i < 256; i++) c.tokens[i] = i * 3 - 100;
    c.fingerprint.assign(32, 0x11);
    c.metadata = {{"k", "v"}};
    return c;
}

sqkv_writer_options Opts(uint32_t zstd) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.zstd_level = zstd;
    return o;
}

struct Layout {
    uint64_t index_offset = 0, file_size = 0;
    std::vector<sqkv_section_info> sections;
};

Layout LayoutOf(const Bytes &file) {
    Layout l;
    sqkv_test::ReaderPtr r;
    EXPECT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    size_t n = 0;
    sqkv_reader_section_count(r.get(), &n);
    for (size_t i = 0; i < n; i++) {
        sqkv_section_info info;
        sqkv_reader_section_info(r.get(), i, &info);
        l.sections.push_back(info);
        if (info.kind == 0x0003) l.index_offset = info.offset;
    }
    l.file_size = file.size();
    return l;
}

sqkv_test::ReaderPtr OpenCounting(CountingSource *src, const sqkv_limits *limits = nullptr) {
    sqkv_reader *raw = nullptr;
    EXPECT_EQ(sqkv_reader_create(limits, 0, &raw), SQKV_OK);
    sqkv_test::ReaderPtr r(raw);
    EXPECT_EQ(sqkv_reader_open_callback(raw, CountingRead, src, src->file->size()), SQKV_OK)
        << sqkv_reader_error_detail(raw);
    return r;
}

class RandomAccess : public ::testing::TestWithParam<uint32_t> {};

TEST_P(RandomAccess, OneLayerReadsOnlyHeaderTailIndexAndThatLayer) {
    const uint32_t L = 8;
    const Cache c = TestCache(L, 3);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(c, Opts(GetParam()), &file), SQKV_OK);
    const Layout lay = LayoutOf(file);
    const uint64_t index_size = lay.file_size - lay.index_offset;

    CountingSource src{&file, {}, 0, -1};
    sqkv_test::ReaderPtr r = OpenCounting(&src);
    ASSERT_TRUE(r);
    // Opening: three reads (header, tail, INDEX section).
    ASSERT_EQ(src.reads.size(), 3u);
    using Range = std::pair<uint64_t, uint64_t>;
    EXPECT_EQ(src.reads[0], Range(0, 64));
    EXPECT_EQ(src.reads[1], Range(lay.file_size - 16, 16));
    EXPECT_EQ(src.reads[2], std::make_pair(lay.index_offset, index_size));

    sqkv_test::ReaderPtr mem;
    ASSERT_EQ(sqkv_test::OpenMemory(file, &mem), SQKV_OK);
    const uint32_t layer = 5;
    for (int t = 0; t < 2; t++) {
        Bytes a, b;
        ASSERT_EQ(sqkv_test::DecodeTensor(r.get(), layer, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP32, &a), SQKV_OK)
            << sqkv_reader_error_detail(r.get());
        ASSERT_EQ(sqkv_test::DecodeTensor(mem.get(), layer, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP32, &b), SQKV_OK);
        EXPECT_EQ(a, b);
    }
    // Every later read is exactly one section of that layer.
    uint64_t layer_bytes = 0;
    for (const auto &s : lay.sections)
        if ((s.kind == 1 || s.kind == 2) && s.layer == layer) layer_bytes += 64 + ((s.stored_size + 7) & ~7ull);
    for (size_t i = 3; i < src.reads.size(); i++) {
        const auto it = std::find_if(lay.sections.begin(), lay.sections.end(),
                                     [&](const sqkv_section_info &s) { return s.offset == src.reads[i].first; });
        ASSERT_NE(it, lay.sections.end());
        EXPECT_EQ(it->layer, layer);
        EXPECT_TRUE(it->kind == 1 || it->kind == 2);
    }
    EXPECT_EQ(src.bytes, 64 + 16 + index_size + layer_bytes);
    // The target: one layer reads under 1/L of the file plus the index.
    EXPECT_LT(src.bytes, lay.file_size / L + index_size);
}

TEST_P(RandomAccess, OneHeadReadsOnlyThatHeadsSections) {
    const Cache c = TestCache(2, 4);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(c, Opts(GetParam()), &file), SQKV_OK);
    const Layout lay = LayoutOf(file);
    CountingSource src{&file, {}, 0, -1};
    sqkv_test::ReaderPtr r = OpenCounting(&src);
    const uint64_t head_bytes = sqkv_dense_size(1, 256, 64, SQKV_DTYPE_FP16);
    Bytes out(head_bytes);
    ASSERT_EQ(sqkv_reader_decode(r.get(), 1, SQKV_TENSOR_V, 2, 1, SQKV_DTYPE_FP16, out.data(), out.size()), SQKV_OK);
    ASSERT_EQ(src.reads.size(), 3u + 2u);  // the head's SPARSE and DENSE sections
    for (size_t i = 3; i < src.reads.size(); i++) {
        const auto it = std::find_if(lay.sections.begin(), lay.sections.end(),
                                     [&](const sqkv_section_info &s) { return s.offset == src.reads[i].first; });
        ASSERT_NE(it, lay.sections.end());
        EXPECT_EQ(it->layer, 1u);
        EXPECT_EQ(it->tensor, 1u);
        EXPECT_EQ(it->head_start, 2u);
    }
}

TEST_P(RandomAccess, FdReaderGivesWhatMemoryGives) {
    const Cache c = TestCache(3, 5);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(c, Opts(GetParam()), &file), SQKV_OK);
    const std::string dir = sqkv_test::MakeTempDir("random_access");
    const std::string path = dir + "/a.sqkv";
    ASSERT_TRUE(sqkv_test::WriteFile(path, file));
    const int fd = open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    sqkv_test::ReaderPtr r(raw);
    ASSERT_EQ(sqkv_reader_open_fd(raw, fd), SQKV_OK) << sqkv_reader_error_detail(raw);
    sqkv_test::ReaderPtr mem;
    ASSERT_EQ(sqkv_test::OpenMemory(file, &mem), SQKV_OK);
    ASSERT_EQ(sqkv_reader_verify(raw), SQKV_OK) << sqkv_reader_error_detail(raw);
    for (uint32_t l = 0; l < 3; l++)
        for (int t = 0; t < 2; t++) {
            Bytes a, b;
            ASSERT_EQ(sqkv_test::DecodeTensor(raw, l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_BF16, &a), SQKV_OK);
            ASSERT_EQ(sqkv_test::DecodeTensor(mem.get(), l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_BF16, &b), SQKV_OK);
            EXPECT_EQ(a, b);
        }
    // Ancillary bodies are copies that outlive later section reads.
    std::vector<int32_t> tokens(256);
    size_t count = 0;
    ASSERT_EQ(sqkv_reader_tokens(raw, tokens.data(), tokens.size(), &count), SQKV_OK);
    EXPECT_EQ(tokens, c.tokens);
    size_t meta = 0;
    ASSERT_EQ(sqkv_reader_metadata_count(raw, &meta), SQKV_OK);
    Bytes tmp;
    ASSERT_EQ(sqkv_test::DecodeTensor(raw, 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &tmp), SQKV_OK);
    const char *key, *value;
    size_t ks, vs;
    ASSERT_EQ(sqkv_reader_metadata_entry(raw, 0, &key, &ks, &value, &vs), SQKV_OK);
    EXPECT_EQ(std::string(key, ks), "k");
    EXPECT_EQ(std::string(value, vs), "v");
    size_t reusable = 0;
    EXPECT_EQ(sqkv_reader_check_restore(raw, nullptr, c.fingerprint.data(), c.fingerprint.size(), c.tokens.data(), 100,
                                        &reusable),
              SQKV_OK);
    EXPECT_EQ(reusable, 100u);
    r.reset();
    close(fd);
    sqkv_test::RemoveTree(dir);
}

INSTANTIATE_TEST_SUITE_P(Zstd, RandomAccess, ::testing::Values(0u, 3u));

// Damaged files: the callback reader reports what the memory reader reports.
TEST(RandomAccessErrors, SameErrorsAsMemory) {
    const Cache c = TestCache(2, 6);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(c, Opts(0), &file), SQKV_OK);
    std::vector<Bytes> damaged;
    for (size_t cut : {size_t{0}, size_t{10}, size_t{63}, size_t{100}, file.size() / 2, file.size() - 1})
        damaged.emplace_back(file.begin(), file.begin() + static_cast<long>(cut));
    for (size_t at : {size_t{5}, size_t{30}, size_t{70}, file.size() / 3, file.size() - 9, file.size() - 40}) {
        Bytes b = file;
        b[at] ^= 0x20;
        damaged.push_back(b);
    }
    for (const Bytes &b : damaged) {
        sqkv_test::ReaderPtr mem;
        const sqkv_error want = sqkv_test::OpenMemory(b, &mem);
        sqkv_reader *raw = nullptr;
        ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
        sqkv_test::ReaderPtr r(raw);
        CountingSource src{&b, {}, 0, -1};
        sqkv_error got = sqkv_reader_open_callback(raw, CountingRead, &src, b.size());
        EXPECT_EQ(sqkv_test::ErrName(got), sqkv_test::ErrName(want)) << sqkv_reader_error_detail(raw);
        if (want == SQKV_OK) {
            EXPECT_EQ(sqkv_test::ErrName(sqkv_reader_verify(raw)), sqkv_test::ErrName(sqkv_reader_verify(mem.get())));
        }
    }
}

TEST(RandomAccessErrors, ReadFailureAndMemoryLimit) {
    const Cache c = TestCache(2, 7);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(c, Opts(0), &file), SQKV_OK);
    for (int fail_at : {0, 1, 2, 3}) {
        sqkv_reader *raw = nullptr;
        ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
        sqkv_test::ReaderPtr r(raw);
        CountingSource src{&file, {}, 0, fail_at};
        sqkv_error err = sqkv_reader_open_callback(raw, CountingRead, &src, file.size());
        if (fail_at < 3) {
            EXPECT_EQ(err, SQKV_ERR_IO);
        } else {
            ASSERT_EQ(err, SQKV_OK);
            Bytes out;
            EXPECT_EQ(sqkv_test::DecodeTensor(raw, 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_ERR_IO);
            EXPECT_EQ(sqkv_test::DecodeTensor(raw, 1, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_ERR_IO) << "sticky";
        }
    }
    // A section buffer counts against max_memory: enough for the index tables, not for a section.
    const Layout lay = LayoutOf(file);
    sqkv_limits limits;
    sqkv_limits_default(&limits);
    limits.max_memory = 3 * (lay.file_size - lay.index_offset);
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(&limits, 0, &raw), SQKV_OK);
    sqkv_test::ReaderPtr r(raw);
    CountingSource src{&file, {}, 0, -1};
    ASSERT_EQ(sqkv_reader_open_callback(raw, CountingRead, &src, file.size()), SQKV_OK);
    Bytes out;
    EXPECT_EQ(sqkv_test::DecodeTensor(raw, 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_ERR_LIMIT);
    // Arguments.
    sqkv_reader *raw2 = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw2), SQKV_OK);
    sqkv_test::ReaderPtr r2(raw2);
    EXPECT_EQ(sqkv_reader_open_callback(raw2, nullptr, nullptr, 100), SQKV_ERR_INVALID_ARGUMENT);
    sqkv_reader *raw3 = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw3), SQKV_OK);
    sqkv_test::ReaderPtr r3(raw3);
    EXPECT_EQ(sqkv_reader_open_fd(raw3, -1), SQKV_ERR_IO);
}

}  // namespace
