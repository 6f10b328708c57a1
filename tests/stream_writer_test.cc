// stream_writer_test.cc: the streaming writer (sqkv.h sqkv_writer_stream_begin / add_layer /
// stream_finish): byte-identical to the whole-file writer, bytes out before the last layer exists,
// nothing retained, any layer order, and its state and I/O errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sqkv.h"
#include "test_util.h"
#include "writer_internal.h"

namespace {

using sqkv_test::Bytes;
using sqkv_test::Cache;

struct Sink {
    Bytes bytes;
    int fail_after = -1;  // fail on this call (0-based), -1 never
    int calls = 0;
};

int SinkWrite(void *ctx, const void *data, size_t size) {
    Sink *s = static_cast<Sink *>(ctx);
    if (s->calls++ == s->fail_after) return 42;
    const uint8_t *p = static_cast<const uint8_t *>(data);
    s->bytes.insert(s->bytes.end(), p, p + size);
    return 0;
}

Cache TestCache(uint32_t layers, uint32_t window, uint64_t seed, bool ancillary = true) {
    Cache c = sqkv_test::MakeRandomCache(sqkv_test::MakeGeometry(layers, 3, 64, 190, window), SQKV_DTYPE_FP32, seed);
    if (ancillary) {
        c.has_tokens = true;
        c.tokens.resize(190);
        for (uint32_t i = 0; i < 190; i++) c.tokens[i] = static_cast<int32_t>(i * 31);
        c.fingerprint.assign(20, 0x5A);
        c.metadata = {{"a", "1"}, {"b", "2"}};
    }
    return c;
}

sqkv_error SetAncillary(sqkv_writer *w, const Cache &c) {
    sqkv_error err = SQKV_OK;
    if (c.has_tokens) err = sqkv_writer_set_tokens(w, c.tokens.data(), c.tokens.size());
    if (!err && !c.fingerprint.empty()) err = sqkv_writer_set_fingerprint(w, c.fingerprint.data(), c.fingerprint.size());
    for (const auto &kv : c.metadata)
        if (!err) err = sqkv_writer_add_metadata(w, kv.first.data(), kv.first.size(), kv.second.data(), kv.second.size());
    return err;
}

// Streams `cache` with layers in `order`.
sqkv_error Stream(const Cache &c, const sqkv_writer_options &o, const std::vector<uint32_t> &order, Sink *sink,
                  std::string *detail = nullptr) {
    sqkv_writer *raw = nullptr;
    sqkv_error err = sqkv_writer_create(&c.geometry, &o, &raw);
    if (err) return err;
    sqkv_test::WriterPtr w(raw);
    err = SetAncillary(raw, c);
    if (!err) err = sqkv_writer_stream_begin(raw, c.input_dtype, SinkWrite, sink);
    for (uint32_t l : order)
        if (!err) err = sqkv_writer_add_layer(raw, l, c.input_dtype, c.k[l].data(), c.v[l].data());
    if (!err) err = sqkv_writer_stream_finish(raw);
    if (detail) *detail = sqkv_writer_error_detail(raw);
    return err;
}

std::vector<uint32_t> InOrder(uint32_t n) {
    std::vector<uint32_t> v;
    for (uint32_t i = 0; i < n; i++) v.push_back(i);
    return v;
}

sqkv_writer_options Opts(uint32_t zstd, uint32_t tokens_per_section = 0, uint32_t heads_per_section = 1) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.zstd_level = zstd;
    o.tokens_per_section = tokens_per_section;
    o.heads_per_section = heads_per_section;
    return o;
}

TEST(StreamWriter, BytesEqualTheWholeFileWriter) {
    struct Case {
        uint32_t window, zstd, tps, hps;
        bool ancillary;
    };
    for (const Case &k : {Case{0, 0, 0, 1, true}, Case{30, 0, 64, 2, true}, Case{30, 3, 0, 1, true},
                          Case{190, 1, 0, 3, false}, Case{5, 9, 128, 1, false}}) {
        SCOPED_TRACE(testing::Message() << "window " << k.window << " zstd " << k.zstd << " tps " << k.tps);
        const Cache c = TestCache(3, k.window, 3 + k.window, k.ancillary);
        const sqkv_writer_options o = Opts(k.zstd, k.tps, k.hps);
        Bytes whole;
        ASSERT_EQ(sqkv_test::EncodeCache(c, o, &whole), SQKV_OK);
        Sink sink;
        std::string detail;
        ASSERT_EQ(Stream(c, o, InOrder(3), &sink, &detail), SQKV_OK) << detail;
        EXPECT_EQ(sink.bytes, whole);
    }
}

TEST(StreamWriter, FirstBytesLeaveBeforeTheLastLayerAndNothingIsRetained) {
    const Cache c = TestCache(4, 20, 9);
    const sqkv_writer_options o = Opts(0);
    Bytes whole;
    ASSERT_EQ(sqkv_test::EncodeCache(c, o, &whole), SQKV_OK);
    // Offset of the first section of layer l in the whole file, from its index.
    sqkv_test::ReaderPtr r;
    ASSERT_EQ(sqkv_test::OpenMemory(whole, &r), SQKV_OK);
    size_t n = 0;
    sqkv_reader_section_count(r.get(), &n);
    std::vector<uint64_t> layer_start(5, 0);
    for (size_t i = n; i-- > 0;) {
        sqkv_section_info info;
        sqkv_reader_section_info(r.get(), i, &info);
        if (info.kind == 0x0001 || info.kind == 0x0002) layer_start[info.layer] = info.offset;
        if (info.kind == 0x0003) layer_start[4] = info.offset;
    }

    sqkv_writer *raw = nullptr;
    ASSERT_EQ(sqkv_writer_create(&c.geometry, &o, &raw), SQKV_OK);
    sqkv_test::WriterPtr w(raw);
    ASSERT_EQ(SetAncillary(raw, c), SQKV_OK);
    Sink sink;
    ASSERT_EQ(sqkv_writer_stream_begin(raw, c.input_dtype, SinkWrite, &sink), SQKV_OK);
    EXPECT_EQ(sink.bytes.size(), layer_start[0]) << "header and ancillary sections go out at begin";
    for (uint32_t l = 0; l < 4; l++) {
        ASSERT_EQ(sqkv_writer_add_layer(raw, l, c.input_dtype, c.k[l].data(), c.v[l].data()), SQKV_OK);
        EXPECT_EQ(sink.bytes.size(), layer_start[l + 1]) << "layer " << l << " is written when it is added";
        EXPECT_EQ(raw->layers[l], nullptr) << "a streamed layer's sections are not kept";
        uint64_t count = 0;
        ASSERT_EQ(sqkv_writer_stream_bytes(raw, &count), SQKV_OK);
        EXPECT_EQ(count, sink.bytes.size());
    }
    ASSERT_EQ(sqkv_writer_stream_finish(raw), SQKV_OK);
    EXPECT_EQ(sink.bytes, whole);
}

TEST(StreamWriter, AnyLayerOrderGivesAValidFileWithTheSameValues) {
    const Cache c = TestCache(4, 10, 21);
    const sqkv_writer_options o = Opts(3);
    Bytes whole;
    ASSERT_EQ(sqkv_test::EncodeCache(c, o, &whole), SQKV_OK);
    Sink sink;
    ASSERT_EQ(Stream(c, o, {2, 0, 3, 1}, &sink), SQKV_OK);
    EXPECT_EQ(sink.bytes.size(), whole.size());
    EXPECT_NE(sink.bytes, whole);
    sqkv_test::ReaderPtr a, b;
    ASSERT_EQ(sqkv_test::OpenMemory(whole, &a), SQKV_OK);
    ASSERT_EQ(sqkv_test::OpenMemory(sink.bytes, &b), SQKV_OK);
    ASSERT_EQ(sqkv_reader_verify(b.get()), SQKV_OK) << sqkv_reader_error_detail(b.get());
    for (uint32_t l = 0; l < 4; l++)
        for (int t = 0; t < 2; t++) {
            Bytes x, y;
            ASSERT_EQ(sqkv_test::DecodeTensor(a.get(), l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP16, &x), SQKV_OK);
            ASSERT_EQ(sqkv_test::DecodeTensor(b.get(), l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP16, &y), SQKV_OK);
            EXPECT_EQ(x, y);
        }
}

TEST(StreamWriter, StateErrors) {
    const Cache c = TestCache(2, 0, 4);
    const sqkv_writer_options o = Opts(0);
    Sink sink;
    auto make = [&]() {
        sqkv_writer *raw = nullptr;
        EXPECT_EQ(sqkv_writer_create(&c.geometry, &o, &raw), SQKV_OK);
        return sqkv_test::WriterPtr(raw);
    };
    {  // setters after begin
        auto w = make();
        ASSERT_EQ(sqkv_writer_stream_begin(w.get(), c.input_dtype, SinkWrite, &sink), SQKV_OK);
        EXPECT_EQ(sqkv_writer_set_tokens(w.get(), c.tokens.data(), 190), SQKV_ERR_STATE);
    }
    {  // finish before every layer; sticky afterwards
        auto w = make();
        ASSERT_EQ(sqkv_writer_stream_begin(w.get(), c.input_dtype, SinkWrite, &sink), SQKV_OK);
        ASSERT_EQ(sqkv_writer_add_layer(w.get(), 1, c.input_dtype, c.k[1].data(), c.v[1].data()), SQKV_OK);
        EXPECT_EQ(sqkv_writer_stream_finish(w.get()), SQKV_ERR_STATE);
        EXPECT_NE(std::string(sqkv_writer_error_detail(w.get())).find("layer 0 missing"), std::string::npos);
        EXPECT_EQ(sqkv_writer_add_layer(w.get(), 0, c.input_dtype, c.k[0].data(), c.v[0].data()), SQKV_ERR_STATE);
    }
    {  // dtype other than the one announced; whole-file output after begin; begin after add_layer
        auto w = make();
        ASSERT_EQ(sqkv_writer_stream_begin(w.get(), SQKV_DTYPE_FP16, SinkWrite, &sink), SQKV_OK);
        EXPECT_EQ(sqkv_writer_add_layer(w.get(), 0, SQKV_DTYPE_FP32, c.k[0].data(), c.v[0].data()),
                  SQKV_ERR_INVALID_ARGUMENT);
        auto w2 = make();
        ASSERT_EQ(sqkv_writer_stream_begin(w2.get(), c.input_dtype, SinkWrite, &sink), SQKV_OK);
        uint64_t size;
        EXPECT_EQ(sqkv_writer_file_size(w2.get(), &size), SQKV_ERR_STATE);
        auto w3 = make();
        ASSERT_EQ(sqkv_writer_add_layer(w3.get(), 0, c.input_dtype, c.k[0].data(), c.v[0].data()), SQKV_OK);
        EXPECT_EQ(sqkv_writer_stream_begin(w3.get(), c.input_dtype, SinkWrite, &sink), SQKV_ERR_STATE);
        auto w4 = make();
        EXPECT_EQ(sqkv_writer_stream_finish(w4.get()), SQKV_ERR_STATE);
        auto w5 = make();
        EXPECT_EQ(sqkv_writer_stream_begin(w5.get(), c.input_dtype, nullptr, &sink), SQKV_ERR_INVALID_ARGUMENT);
    }
}

TEST(StreamWriter, WriteFailureIsStickyIo) {
    const Cache c = TestCache(2, 8, 5);
    for (int fail_at : {0, 1, 4, 7}) {
        Sink sink;
        sink.fail_after = fail_at;
        std::string detail;
        EXPECT_EQ(Stream(c, Opts(0), InOrder(2), &sink, &detail), SQKV_ERR_IO) << fail_at;
        EXPECT_NE(detail.find("returned 42"), std::string::npos) << detail;
        // What went out is not a file any reader accepts.
        sqkv_test::ReaderPtr r;
        EXPECT_NE(sqkv_test::OpenMemory(sink.bytes, &r), SQKV_OK);
    }
}

}  // namespace
