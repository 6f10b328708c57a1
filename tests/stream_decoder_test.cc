// stream_decoder_test.cc: the streaming decoder (sqkv.h sqkv_stream_decoder_*): chunks of any size give
// what the random-access reader gives, layers complete exactly when their sections have all arrived,
// truncated and damaged streams say what arrived, memory stays bounded by a section, errors are sticky.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "sqkv.h"
#include "sqkv_file.h"
#include "test_util.h"

namespace {

using sqkv_test::Bytes;
using sqkv_test::Cache;

// Rebuilds each (layer, tensor) as [heads, tokens, head_dim] fp32 from the delivered sections and logs
// the order of events.
struct Collector {
    sqkv_geometry g{};
    bool header = false;
    std::vector<Bytes> tensors;  // 2 * layer + tensor
    std::vector<std::string> events;
    std::vector<uint32_t> completed;
    std::vector<uint64_t> delivered_elements;  // per layer
    Bytes tokens, fingerprint, metadata;
    int abort_on_ancillary = 0;
    int abort_on_tensor_number = -1;
    int tensors_seen = 0;
    bool null_data_ok = false;
};

int OnHeader(void *ctx, const sqkv_geometry *g) {
    Collector *c = static_cast<Collector *>(ctx);
    c->g = *g;
    c->header = true;
    c->tensors.assign(2 * g->n_layers, Bytes(sqkv_dense_size(g->n_kv_heads, g->n_tokens, g->head_dim, SQKV_DTYPE_FP32), 0xEE));
    c->delivered_elements.assign(g->n_layers, 0);
    c->events.push_back("header");
    return 0;
}

int OnAncillary(void *ctx, uint16_t kind, const void *body, size_t size) {
    Collector *c = static_cast<Collector *>(ctx);
    const uint8_t *p = static_cast<const uint8_t *>(body);
    Bytes b(p, p + size);
    if (kind == 0x8001) c->tokens = b;
    if (kind == 0x8002) c->fingerprint = b;
    if (kind == 0x8003) c->metadata = b;
    c->events.push_back("ancillary");
    return c->abort_on_ancillary;
}

int OnTensor(void *ctx, const sqkv_stream_tensor *t) {
    Collector *c = static_cast<Collector *>(ctx);
    if (c->tensors_seen++ == c->abort_on_tensor_number) return 7;
    const uint32_t D = c->g.head_dim, T = c->g.n_tokens;
    EXPECT_LE(static_cast<uint64_t>(t->token_start) + t->token_count, T);
    c->delivered_elements[t->layer] += static_cast<uint64_t>(t->head_count) * t->token_count * D;
    if (!t->data) {
        EXPECT_TRUE(c->null_data_ok);
        return 0;
    }
    EXPECT_EQ(t->dtype, SQKV_DTYPE_FP32);
    EXPECT_EQ(t->head_stride, static_cast<size_t>(t->token_count) * D * 4);
    EXPECT_EQ(t->size, static_cast<size_t>(t->head_count) * t->token_count * D * 4);
    Bytes &dst = c->tensors[2 * t->layer + t->tensor];
    const uint8_t *src = static_cast<const uint8_t *>(t->data);
    for (uint32_t h = 0; h < t->head_count; h++)
        memcpy(dst.data() + ((static_cast<size_t>(t->head_start + h) * T + t->token_start) * D) * 4,
               src + static_cast<size_t>(h) * t->token_count * D * 4, static_cast<size_t>(t->token_count) * D * 4);
    c->events.push_back("tensor");
    return 0;
}

int OnLayer(void *ctx, uint32_t layer) {
    Collector *c = static_cast<Collector *>(ctx);
    // Complete means every element of K and V of the layer was delivered.
    EXPECT_EQ(c->delivered_elements[layer], 2ull * c->g.n_kv_heads * c->g.n_tokens * c->g.head_dim);
    c->completed.push_back(layer);
    c->events.push_back("layer");
    return 0;
}

sqkv_stream_callbacks Callbacks(Collector *c) {
    sqkv_stream_callbacks cb{};
    cb.ctx = c;
    cb.on_header = OnHeader;
    cb.on_ancillary = OnAncillary;
    cb.on_tensor = OnTensor;
    cb.on_layer_complete = OnLayer;
    return cb;
}

struct DecoderDeleter {
    void operator()(sqkv_stream_decoder *d) const { sqkv_stream_decoder_destroy(d); }
};
using DecoderPtr = std::unique_ptr<sqkv_stream_decoder, DecoderDeleter>;

DecoderPtr MakeDecoder(Collector *c, const sqkv_limits *limits = nullptr, sqkv_dtype dtype = SQKV_DTYPE_FP32,
                       unsigned flags = 0) {
    sqkv_stream_decoder *raw = nullptr;
    const sqkv_stream_callbacks cb = Callbacks(c);
    EXPECT_EQ(sqkv_stream_decoder_create(limits, flags, dtype, &cb, &raw), SQKV_OK);
    return DecoderPtr(raw);
}

// Pushes `bytes` in chunks of `chunk` bytes (the last one shorter) and finishes.
sqkv_error PushAll(sqkv_stream_decoder *d, const Bytes &bytes, size_t chunk, sqkv_stream_status *status) {
    for (size_t at = 0; at < bytes.size(); at += chunk) {
        const size_t n = std::min(chunk, bytes.size() - at);
        sqkv_error err = sqkv_stream_decoder_push(d, bytes.data() + at, n);
        if (err) {
            sqkv_stream_decoder_finish(d, status);
            return err;
        }
    }
    return sqkv_stream_decoder_finish(d, status);
}

Cache TestCache(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens, uint32_t window, uint64_t seed) {
    Cache c = sqkv_test::MakeRandomCache(sqkv_test::MakeGeometry(layers, heads, dim, tokens, window), SQKV_DTYPE_FP32, seed);
    c.has_tokens = true;
    c.tokens.resize(tokens);
    for (uint32_t i = 0; i < tokens; i++) c.tokens[i] = static_cast<int32_t>(i * 7 + 1);
    c.fingerprint.assign(16, 0x42);
    c.metadata = {{"model", "unit"}};
    return c;
}

sqkv_writer_options Opts(uint32_t bits, uint32_t zstd, uint32_t tps = 0, uint32_t hps = 1) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = bits;
    o.quantizer = bits == 16 ? SQKV_QUANT_EXACT : SQKV_QUANT_SYMMETRIC;
    o.scales = bits == 16 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_TILE;
    o.zstd_level = zstd;
    o.tokens_per_section = tps;
    o.heads_per_section = hps;
    return o;
}

std::vector<Bytes> ReaderDecode(const Bytes &file, uint32_t layers) {
    sqkv_test::ReaderPtr r;
    EXPECT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    std::vector<Bytes> out;
    for (uint32_t l = 0; l < layers; l++)
        for (int t = 0; t < 2; t++) {
            Bytes b;
            EXPECT_EQ(sqkv_test::DecodeTensor(r.get(), l, static_cast<sqkv_tensor>(t), SQKV_DTYPE_FP32, &b), SQKV_OK);
            out.push_back(b);
        }
    return out;
}

struct Shape {
    uint32_t bits, zstd, tps, hps, window;
};

class StreamDecode : public ::testing::TestWithParam<Shape> {};

TEST_P(StreamDecode, AnyChunkSizeGivesTheReadersValues) {
    const Shape s = GetParam();
    const Cache cache = TestCache(3, 3, 80, 150, s.window, 100 + s.window);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Opts(s.bits, s.zstd, s.tps, s.hps), &file), SQKV_OK);
    const std::vector<Bytes> want = ReaderDecode(file, 3);
    for (size_t chunk : {size_t{1}, size_t{7}, size_t{64}, size_t{1000}, size_t{4096}, file.size()}) {
        SCOPED_TRACE(chunk);
        Collector c;
        DecoderPtr d = MakeDecoder(&c);
        sqkv_stream_status st;
        ASSERT_EQ(PushAll(d.get(), file, chunk, &st), SQKV_OK) << sqkv_stream_decoder_error_detail(d.get());
        EXPECT_EQ(c.tensors, want);
        EXPECT_TRUE(st.complete);
        EXPECT_TRUE(st.index_received);
        EXPECT_TRUE(st.header_received);
        EXPECT_EQ(st.bytes_received, file.size());
        EXPECT_EQ(st.bytes_verified, file.size());
        EXPECT_EQ(st.layers_complete, 3u);
        EXPECT_EQ(c.completed, (std::vector<uint32_t>{0, 1, 2}));
        // Ancillary sections arrive before any tensor; each layer completes right after its last section.
        ASSERT_GE(c.events.size(), 5u);
        EXPECT_EQ(c.events[0], "header");
        EXPECT_EQ(c.events[1], "ancillary");
        EXPECT_EQ(c.events[3], "ancillary");
        EXPECT_EQ(c.events[4], "tensor");
        const uint32_t per_layer = 2 * ((3 + s.hps - 1) / s.hps) *
                                   ((s.window < 150 ? (s.tps ? (150 - s.window + s.tps - 1) / s.tps : 1) : 0) +
                                    (s.window ? 1 : 0));
        EXPECT_EQ(c.events.size(), 4 + 3 * (per_layer + 1));
        EXPECT_EQ(c.events[4 + per_layer], "layer");
        std::vector<int32_t> ids(c.tokens.size() / 4);
        memcpy(ids.data(), c.tokens.data(), c.tokens.size());
        EXPECT_EQ(ids, cache.tokens);
        EXPECT_EQ(c.fingerprint, cache.fingerprint);
        EXPECT_EQ(c.metadata.size(), 4u + 1 + 5 + 2 + 4);
        int complete = 0;
        ASSERT_EQ(sqkv_stream_decoder_layer_complete(d.get(), 2, &complete), SQKV_OK);
        EXPECT_EQ(complete, 1);
        EXPECT_EQ(sqkv_stream_decoder_push(d.get(), file.data(), 1), SQKV_ERR_STATE) << "push after finish";
    }
}

INSTANTIATE_TEST_SUITE_P(Files, StreamDecode,
                         ::testing::Values(Shape{2, 0, 0, 1, 22}, Shape{4, 3, 64, 2, 22}, Shape{16, 0, 0, 3, 0},
                                           Shape{8, 1, 64, 1, 150}, Shape{2, 5, 0, 1, 86}));

TEST(StreamDecoder, LayersInAnyOrderCompleteWhenTheirSectionsHaveArrived) {
    const Cache cache = TestCache(4, 2, 64, 100, 10, 3);
    const sqkv_writer_options o = Opts(2, 0);
    sqkv_writer *raw = nullptr;
    ASSERT_EQ(sqkv_writer_create(&cache.geometry, &o, &raw), SQKV_OK);
    sqkv_test::WriterPtr w(raw);
    Bytes file;
    auto sink = [](void *ctx, const void *data, size_t size) {
        Bytes *b = static_cast<Bytes *>(ctx);
        b->insert(b->end(), static_cast<const uint8_t *>(data), static_cast<const uint8_t *>(data) + size);
        return 0;
    };
    ASSERT_EQ(sqkv_writer_stream_begin(raw, SQKV_DTYPE_FP32, sink, &file), SQKV_OK);
    for (uint32_t l : {3u, 1u, 0u, 2u})
        ASSERT_EQ(sqkv_writer_add_layer(raw, l, SQKV_DTYPE_FP32, cache.k[l].data(), cache.v[l].data()), SQKV_OK);
    ASSERT_EQ(sqkv_writer_stream_finish(raw), SQKV_OK);
    Collector c;
    DecoderPtr d = MakeDecoder(&c);
    sqkv_stream_status st;
    ASSERT_EQ(PushAll(d.get(), file, 333, &st), SQKV_OK) << sqkv_stream_decoder_error_detail(d.get());
    EXPECT_EQ(c.completed, (std::vector<uint32_t>{3, 1, 0, 2}));
    EXPECT_EQ(c.tensors, ReaderDecode(file, 4));
}

// Every prefix of a file: the stream reports TRUNCATED (OK only for the whole file) and exactly which
// sections and layers were complete.
TEST(StreamDecoder, TruncatedStreamsSayWhatArrived) {
    const Cache cache = TestCache(3, 2, 64, 70, 6, 9);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Opts(4, 3), &file), SQKV_OK);
    sqkv_test::ReaderPtr r;
    ASSERT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    size_t n = 0;
    sqkv_reader_section_count(r.get(), &n);
    std::vector<sqkv_section_info> info(n);
    for (size_t i = 0; i < n; i++) sqkv_reader_section_info(r.get(), i, &info[i]);
    auto end_of = [](const sqkv_section_info &s) { return s.offset + 64 + ((s.stored_size + 7) & ~7ull); };
    // Every cut in the file header, the first sections and around every section boundary; a sample
    // elsewhere (every cut would take long under the sanitizers).
    std::set<size_t> cuts;
    for (size_t cut = 0; cut <= file.size(); cut += (cut < 700 ? 1 : 13)) cuts.insert(cut);
    for (const auto &s : info)
        for (int delta = -2; delta <= 2; delta++) {
            const long long at = static_cast<long long>(s.offset) + delta;
            if (at >= 0 && at <= static_cast<long long>(file.size())) cuts.insert(static_cast<size_t>(at));
        }
    cuts.insert(file.size() - 1);
    cuts.insert(file.size());
    for (size_t cut : cuts) {
        Collector c;
        DecoderPtr d = MakeDecoder(&c);
        Bytes prefix(file.begin(), file.begin() + static_cast<long>(cut));
        sqkv_stream_status st;
        const sqkv_error err = PushAll(d.get(), prefix, 97, &st);
        if (cut == file.size()) {
            EXPECT_EQ(err, SQKV_OK);
            EXPECT_TRUE(st.complete);
            continue;
        }
        ASSERT_EQ(err, SQKV_ERR_TRUNCATED) << cut << " " << sqkv_stream_decoder_error_detail(d.get());
        EXPECT_FALSE(st.complete);
        EXPECT_FALSE(st.index_received);
        EXPECT_EQ(st.header_received, cut >= 64);
        EXPECT_EQ(st.bytes_received, cut);
        uint64_t verified = cut >= 64 ? 64 : 0;
        uint64_t sections = 0;
        std::vector<uint64_t> layer_end(3, 0);
        for (const auto &s : info) {
            if (s.kind == 1 || s.kind == 2) layer_end[s.layer] = std::max<uint64_t>(layer_end[s.layer], end_of(s));
            if (end_of(s) <= cut) {
                verified = end_of(s);
                sections++;
            }
        }
        EXPECT_EQ(st.bytes_verified, verified) << cut;
        EXPECT_EQ(st.sections_verified, sections) << cut;
        uint32_t layers = 0;
        for (uint32_t l = 0; l < 3; l++) {
            layers += layer_end[l] <= cut;
            int complete = -1;
            if (st.header_received) {
                ASSERT_EQ(sqkv_stream_decoder_layer_complete(d.get(), l, &complete), SQKV_OK);
                EXPECT_EQ(complete, layer_end[l] <= cut ? 1 : 0);
            }
        }
        EXPECT_EQ(st.layers_complete, layers) << cut;
        EXPECT_EQ(c.completed.size(), layers);
        const std::string detail = sqkv_stream_decoder_error_detail(d.get());
        EXPECT_NE(detail.find("before the INDEX section"), std::string::npos) << detail;
    }
}

TEST(StreamDecoder, HeadProgressIsReported) {
    const Cache cache = TestCache(1, 2, 64, 200, 0, 5);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Opts(2, 0, 64), &file), SQKV_OK);  // 4 token sections per head
    sqkv_test::ReaderPtr r;
    ASSERT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    sqkv_section_info s;
    // Sections: TOKENS, FINGERPRINT, METADATA, then K head 0 tokens 0..63, 64..127, ...
    ASSERT_EQ(sqkv_reader_section_info(r.get(), 4, &s), SQKV_OK);
    ASSERT_EQ(s.token_start, 64u);
    Collector c;
    DecoderPtr d = MakeDecoder(&c);
    ASSERT_EQ(sqkv_stream_decoder_push(d.get(), file.data(), s.offset + 64 + s.stored_size), SQKV_OK);
    uint32_t tokens = 0;
    int complete = -1;
    ASSERT_EQ(sqkv_stream_decoder_head_tokens(d.get(), 0, SQKV_TENSOR_K, 0, &tokens, &complete), SQKV_OK);
    EXPECT_EQ(tokens, 128u);
    EXPECT_EQ(complete, 0);
    ASSERT_EQ(sqkv_stream_decoder_head_tokens(d.get(), 0, SQKV_TENSOR_K, 1, &tokens, &complete), SQKV_OK);
    EXPECT_EQ(tokens, 0u);
    EXPECT_EQ(sqkv_stream_decoder_head_tokens(d.get(), 0, SQKV_TENSOR_K, 2, &tokens, &complete),
              SQKV_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(sqkv_stream_decoder_push(d.get(), file.data() + s.offset + 64 + s.stored_size,
                                       file.size() - (s.offset + 64 + s.stored_size)),
              SQKV_OK);
    ASSERT_EQ(sqkv_stream_decoder_head_tokens(d.get(), 0, SQKV_TENSOR_K, 0, &tokens, &complete), SQKV_OK);
    EXPECT_EQ(tokens, 200u);
    EXPECT_EQ(complete, 1);
    EXPECT_EQ(sqkv_stream_decoder_finish(d.get(), nullptr), SQKV_OK);
}

// Memory is bounded by the largest section, not the file.
TEST(StreamDecoder, MemoryBoundedBySections) {
    const Cache cache = TestCache(16, 4, 128, 512, 32, 13);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Opts(2, 0), &file), SQKV_OK);
    sqkv_test::ReaderPtr r;
    ASSERT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    size_t n = 0;
    sqkv_reader_section_count(r.get(), &n);
    uint64_t largest = 0;
    for (size_t i = 0; i < n; i++) {
        sqkv_section_info s;
        sqkv_reader_section_info(r.get(), i, &s);
        if (s.kind != 3) largest = std::max<uint64_t>(largest, 64 + s.stored_size);
    }
    // Section buffer + the section decoded to fp32 (1 head x 480 tokens x 128 x 4) + 128 KiB for the sparse
    // view, the table of sections seen, the per-head tables and the INDEX tables.
    const uint64_t output = 480ull * 128 * 4;
    sqkv_limits limits;
    sqkv_limits_default(&limits);
    limits.max_memory = largest + output + (128u << 10);
    ASSERT_LT(limits.max_memory * 5, file.size()) << "the file must be much larger than the bound";
    Collector c;
    DecoderPtr d = MakeDecoder(&c, &limits);
    sqkv_stream_status st;
    EXPECT_EQ(PushAll(d.get(), file, 4096, &st), SQKV_OK) << sqkv_stream_decoder_error_detail(d.get());
    // Far too little memory for a section: LIMIT, with the layers before it still complete.
    limits.max_memory = 40000;
    Collector c2;
    DecoderPtr d2 = MakeDecoder(&c2, &limits);
    EXPECT_EQ(PushAll(d2.get(), file, 65536, &st), SQKV_ERR_LIMIT);
    EXPECT_NE(std::string(sqkv_stream_decoder_error_detail(d2.get())).find("max_memory"), std::string::npos);
}

TEST(StreamDecoder, DamagedStreams) {
    const Cache cache = TestCache(2, 2, 64, 100, 10, 21);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Opts(2, 0), &file), SQKV_OK);
    sqkv_test::ReaderPtr r;
    ASSERT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
    sqkv_section_info s5;
    ASSERT_EQ(sqkv_reader_section_info(r.get(), 5, &s5), SQKV_OK);
    struct Case {
        const char *name;
        Bytes bytes;
        sqkv_error want;
    };
    std::vector<Case> cases;
    {  // first byte wrong: refused at once
        Bytes b = file;
        b[0] = 0x88;
        cases.push_back({"magic", b, SQKV_ERR_BAD_MAGIC});
    }
    {  // a body byte of section 5
        Bytes b = file;
        b[s5.offset + 64 + 3] ^= 1;
        cases.push_back({"body", b, SQKV_ERR_SECTION_CHECKSUM});
    }
    {  // a header byte of section 5
        Bytes b = file;
        b[s5.offset + 5] ^= 1;
        cases.push_back({"section header", b, SQKV_ERR_SECTION_HEADER_CHECKSUM});
    }
    {  // the tail
        Bytes b = file;
        b[b.size() - 1] ^= 1;
        cases.push_back({"tail", b, SQKV_ERR_BAD_TAIL});
    }
    {  // trailing garbage
        Bytes b = file;
        b.insert(b.end(), 24, 0);
        cases.push_back({"trailing", b, SQKV_ERR_SECTION_LAYOUT});
    }
    {  // a section twice, index rebuilt: the second copy overlaps
        sqkv_test::RawFile raw;
        ASSERT_TRUE(sqkv_test::ParseRaw(file, &raw));
        raw.sections.insert(raw.sections.begin() + 6, raw.sections[5]);
        cases.push_back({"duplicate", sqkv_test::Assemble(raw), SQKV_ERR_COVERAGE});
    }
    {  // a section missing, index rebuilt: a gap the INDEX coverage check finds
        sqkv_test::RawFile raw;
        ASSERT_TRUE(sqkv_test::ParseRaw(file, &raw));
        raw.sections.erase(raw.sections.begin() + 5);
        cases.push_back({"missing", sqkv_test::Assemble(raw), SQKV_ERR_COVERAGE});
    }
    {  // an index that is valid on its own but describes other sections than arrived: the head_start of
       // two DENSE entries of equal size swapped (entries 4 and 6: layer 0 K heads 0 and 1), checksums fixed
        Bytes b = file;
        const uint64_t index_at = sqkv_test::Get64(b, b.size() - 16);
        const size_t e4 = index_at + 64 + 16 + 4 * 40, e6 = index_at + 64 + 16 + 6 * 40;
        ASSERT_EQ(sqkv_test::Get16(b, e4 + 16), 2);
        ASSERT_EQ(sqkv_test::Get16(b, e6 + 16), 2);
        sqkv_test::Put32(&b, e4 + 24, 1);
        sqkv_test::Put32(&b, e6 + 24, 0);
        sqkv_test::FixSectionChecksums(&b, index_at);
        sqkv_test::ReaderPtr check;
        ASSERT_EQ(sqkv_test::OpenMemory(b, &check), SQKV_OK) << "the index alone is valid";
        cases.push_back({"index mismatch", b, SQKV_ERR_INDEX_MISMATCH});
    }
    {  // a second TOKENS section
        sqkv_test::RawFile raw;
        ASSERT_TRUE(sqkv_test::ParseRaw(file, &raw));
        raw.sections.insert(raw.sections.begin() + 1, raw.sections[0]);
        cases.push_back({"duplicate tokens", sqkv_test::Assemble(raw), SQKV_ERR_DUPLICATE_SECTION});
    }
    for (const Case &k : cases) {
        for (size_t chunk : {size_t{1}, size_t{4096}}) {
            SCOPED_TRACE(testing::Message() << k.name << " chunk " << chunk);
            Collector c;
            DecoderPtr d = MakeDecoder(&c);
            sqkv_stream_status st;
            const sqkv_error err = PushAll(d.get(), k.bytes, chunk, &st);
            EXPECT_EQ(sqkv_test::ErrName(err), sqkv_test::ErrName(k.want)) << sqkv_stream_decoder_error_detail(d.get());
            EXPECT_FALSE(st.complete);
            // Sticky.
            EXPECT_EQ(sqkv_stream_decoder_push(d.get(), file.data(), 1), err);
            EXPECT_EQ(sqkv_stream_decoder_finish(d.get(), nullptr), err);
        }
    }
    {  // the bad magic is refused at its first byte
        Collector c;
        DecoderPtr d = MakeDecoder(&c);
        const uint8_t b = 0x88;
        EXPECT_EQ(sqkv_stream_decoder_push(d.get(), &b, 1), SQKV_ERR_BAD_MAGIC);
    }
    {  // a damaged body before layer 1: layer 0 stays complete and reported
        Bytes b = file;
        sqkv_section_info last;
        size_t n = 0;
        sqkv_reader_section_count(r.get(), &n);
        ASSERT_EQ(sqkv_reader_section_info(r.get(), n - 2, &last), SQKV_OK);
        ASSERT_EQ(last.layer, 1u);
        b[last.offset + 64] ^= 0x80;
        Collector c;
        DecoderPtr d = MakeDecoder(&c);
        sqkv_stream_status st;
        EXPECT_EQ(PushAll(d.get(), b, 512, &st), SQKV_ERR_SECTION_CHECKSUM);
        EXPECT_EQ(st.layers_complete, 1u);
        EXPECT_EQ(st.bytes_verified, last.offset);
        EXPECT_NE(std::string(sqkv_stream_decoder_error_detail(d.get())).find("layer 1"), std::string::npos);
    }
}

TEST(StreamDecoder, CallbacksMayAbortAndDecodingMayBeOff) {
    const Cache cache = TestCache(2, 2, 64, 100, 10, 22);
    Bytes file;
    ASSERT_EQ(sqkv_test::EncodeCache(cache, Opts(2, 3), &file), SQKV_OK);
    {  // refuse after the fingerprint: no tensor is decoded
        Collector c;
        c.abort_on_ancillary = 1;
        DecoderPtr d = MakeDecoder(&c);
        sqkv_stream_status st;
        EXPECT_EQ(PushAll(d.get(), file, 4096, &st), SQKV_ERR_ABORTED);
        EXPECT_EQ(c.tensors_seen, 0);
        EXPECT_NE(std::string(sqkv_stream_decoder_error_detail(d.get())).find("on_ancillary"), std::string::npos);
    }
    {
        Collector c;
        c.abort_on_tensor_number = 2;
        DecoderPtr d = MakeDecoder(&c);
        sqkv_stream_status st;
        EXPECT_EQ(PushAll(d.get(), file, 4096, &st), SQKV_ERR_ABORTED);
        EXPECT_EQ(c.tensors_seen, 3);
    }
    {  // output dtype 0: checked, not decoded
        Collector c;
        c.null_data_ok = true;
        DecoderPtr d = MakeDecoder(&c, nullptr, static_cast<sqkv_dtype>(0));
        sqkv_stream_status st;
        EXPECT_EQ(PushAll(d.get(), file, 100, &st), SQKV_OK);
        EXPECT_EQ(st.layers_complete, 2u);
    }
    {  // other output dtypes give the reader's values
        sqkv_test::ReaderPtr r;
        ASSERT_EQ(sqkv_test::OpenMemory(file, &r), SQKV_OK);
        Bytes want;
        ASSERT_EQ(sqkv_test::DecodeTensor(r.get(), 1, SQKV_TENSOR_V, SQKV_DTYPE_BF16, &want), SQKV_OK);
        struct Grab {
            Bytes got;
            uint32_t T = 100, D = 64;
        } g;
        g.got.assign(want.size(), 0);
        sqkv_stream_callbacks cb{};
        cb.ctx = &g;
        cb.on_tensor = [](void *ctx, const sqkv_stream_tensor *t) {
            Grab *gr = static_cast<Grab *>(ctx);
            if (t->layer != 1 || t->tensor != SQKV_TENSOR_V) return 0;
            const uint8_t *src = static_cast<const uint8_t *>(t->data);
            for (uint32_t h = 0; h < t->head_count; h++)
                memcpy(gr->got.data() + ((static_cast<size_t>(t->head_start + h) * gr->T + t->token_start) * gr->D) * 2,
                       src + h * t->head_stride,
                       static_cast<size_t>(t->token_count) * gr->D * 2);
            return 0;
        };
        sqkv_stream_decoder *raw = nullptr;
        ASSERT_EQ(sqkv_stream_decoder_create(nullptr, 0, SQKV_DTYPE_BF16, &cb, &raw), SQKV_OK);
        DecoderPtr d(raw);
        sqkv_stream_status st;
        EXPECT_EQ(PushAll(raw, file, 65536, &st), SQKV_OK);
        EXPECT_EQ(g.got, want);
    }
    {  // decoding straight into the caller's tensors (the destination callback): the reader's values
        struct Full {
            std::vector<Bytes> t;
            uint32_t T = 100, D = 64, H = 2;
            size_t stride_shortfall = 0;
            int delivered = 0;
        } full;
        full.t.assign(4, Bytes(2 * 100 * 64 * 4, 0));
        sqkv_stream_callbacks cb{};
        cb.ctx = &full;
        sqkv_stream_destination_fn destination = [](void *ctx, const sqkv_stream_tensor *t, size_t *head_stride) -> void * {
            Full *f = static_cast<Full *>(ctx);
            EXPECT_EQ(t->data, nullptr);
            *head_stride = f->stride_shortfall ? static_cast<size_t>(t->token_count) * f->D * 4 - f->stride_shortfall
                                               : static_cast<size_t>(f->T) * f->D * 4;
            return f->t[2 * t->layer + t->tensor].data() + (static_cast<size_t>(t->head_start) * f->T + t->token_start) * f->D * 4;
        };
        cb.on_tensor = [](void *ctx, const sqkv_stream_tensor *t) {
            Full *f = static_cast<Full *>(ctx);
            EXPECT_EQ(t->head_stride, static_cast<size_t>(f->T) * f->D * 4);
            EXPECT_EQ(t->data, f->t[2 * t->layer + t->tensor].data() +
                                   (static_cast<size_t>(t->head_start) * f->T + t->token_start) * f->D * 4);
            f->delivered++;
            return 0;
        };
        sqkv_stream_decoder *raw = nullptr;
        ASSERT_EQ(sqkv_stream_decoder_create(nullptr, 0, SQKV_DTYPE_FP32, &cb, &raw), SQKV_OK);
        DecoderPtr d(raw);
        ASSERT_EQ(sqkv_stream_decoder_set_destination(raw, destination), SQKV_OK);
        sqkv_stream_status st;
        EXPECT_EQ(PushAll(raw, file, 65536, &st), SQKV_OK) << sqkv_stream_decoder_error_detail(raw);
        EXPECT_EQ(full.t, ReaderDecode(file, 2));
        EXPECT_EQ(full.delivered, 16);
        // A stride shorter than a head's rows is refused before anything is written.
        full.stride_shortfall = 4;
        sqkv_stream_decoder *raw2 = nullptr;
        ASSERT_EQ(sqkv_stream_decoder_create(nullptr, 0, SQKV_DTYPE_FP32, &cb, &raw2), SQKV_OK);
        DecoderPtr d2(raw2);
        ASSERT_EQ(sqkv_stream_decoder_set_destination(raw2, destination), SQKV_OK);
        EXPECT_EQ(PushAll(raw2, file, 65536, &st), SQKV_ERR_INVALID_ARGUMENT);
    }
    sqkv_stream_decoder *raw = nullptr;
    EXPECT_EQ(sqkv_stream_decoder_create(nullptr, 4, SQKV_DTYPE_FP32, nullptr, &raw), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_stream_decoder_create(nullptr, 0, static_cast<sqkv_dtype>(9), nullptr, &raw),
              SQKV_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(sqkv_stream_decoder_create(nullptr, 0, SQKV_DTYPE_FP32, nullptr, &raw), SQKV_OK);  // no callbacks
    DecoderPtr d(raw);
    sqkv_stream_status st;
    EXPECT_EQ(PushAll(raw, file, 3, &st), SQKV_OK);
    EXPECT_EQ(st.geometry.n_tokens, 100u);
    int complete;
    EXPECT_EQ(sqkv_stream_decoder_layer_complete(raw, 2, &complete), SQKV_ERR_INVALID_ARGUMENT);
}

}  // namespace
