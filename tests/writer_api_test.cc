// writer_api_test.cc: the writer's contract in sqkv.h: option and geometry validation, call order,
// sticky errors, input errors, determinism, and that every output path gives the same bytes.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using namespace sqkv_test;

sqkv_writer_options Defaults() {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    return o;
}

sqkv_error Create(const sqkv_geometry &g, const sqkv_writer_options &o) {
    sqkv_writer *w = reinterpret_cast<sqkv_writer *>(0x1);  // must be set to NULL on failure
    const sqkv_error err = sqkv_writer_create(&g, &o, &w);
    if (err != SQKV_OK) {
        EXPECT_EQ(w, nullptr) << "*out must be NULL on failure";
    } else {
        sqkv_writer_destroy(w);
    }
    return err;
}

const sqkv_geometry kGeometry = MakeGeometry(2, 2, 64, 70, 6);

TEST(WriterOptions, DefaultsAreTheDocumentedOnes) {
    const sqkv_writer_options o = Defaults();
    EXPECT_EQ(o.prune, SQKV_PRUNE_MAGNITUDE);
    EXPECT_EQ(o.sparsity, 0.8);
    EXPECT_EQ(o.payload_bits, 2u);
    EXPECT_EQ(o.quantizer, SQKV_QUANT_ASYMMETRIC);
    EXPECT_EQ(o.scales, SQKV_SCALE_PER_TILE);
    EXPECT_EQ(o.offset_interval_log2, 4u);
    EXPECT_EQ(o.heads_per_section, 1u);
    EXPECT_EQ(o.tokens_per_section, 0u);
    EXPECT_EQ(Create(kGeometry, o), SQKV_OK);
}

TEST(WriterOptions, BadOptionsAreInvalidArgument) {
    struct Bad {
        const char *what;
        void (*apply)(sqkv_writer_options *);
    };
    const Bad bad[] = {
        {"sparsity 1", [](sqkv_writer_options *o) { o->sparsity = 1.0; }},
        {"sparsity -0.1", [](sqkv_writer_options *o) { o->sparsity = -0.1; }},
        {"sparsity NaN", [](sqkv_writer_options *o) { o->sparsity = std::nan(""); }},
        {"sparsity inf", [](sqkv_writer_options *o) { o->sparsity = INFINITY; }},
        {"prune mode 3", [](sqkv_writer_options *o) { o->prune = static_cast<sqkv_prune_mode>(3); }},
        {"payload_bits 9", [](sqkv_writer_options *o) { o->payload_bits = 9; }},
        {"KEEP_ALL with EXACT",
         [](sqkv_writer_options *o) {
             o->prune = SQKV_PRUNE_KEEP_ALL;
             o->quantizer = SQKV_QUANT_EXACT;
             o->payload_bits = 16;
             o->scales = SQKV_SCALE_NONE;
         }},
        {"payload_bits 0", [](sqkv_writer_options *o) { o->payload_bits = 0; }},
        {"payload_bits 32", [](sqkv_writer_options *o) { o->payload_bits = 32; }},
        {"16 bits with SYMMETRIC", [](sqkv_writer_options *o) { o->payload_bits = 16; }},
        {"EXACT with 2 bits", [](sqkv_writer_options *o) { o->quantizer = SQKV_QUANT_EXACT; }},
        {"EXACT with PER_TILE",
         [](sqkv_writer_options *o) {
             o->quantizer = SQKV_QUANT_EXACT;
             o->payload_bits = 16;
         }},
        {"SYMMETRIC with NONE", [](sqkv_writer_options *o) { o->scales = SQKV_SCALE_NONE; }},
        {"quantizer 3", [](sqkv_writer_options *o) { o->quantizer = static_cast<sqkv_quantizer>(3); }},
        {"granularity 4", [](sqkv_writer_options *o) { o->scales = static_cast<sqkv_scale_granularity>(4); }},
        {"offset_interval_log2 21", [](sqkv_writer_options *o) { o->offset_interval_log2 = 21; }},
        {"heads_per_section 0", [](sqkv_writer_options *o) { o->heads_per_section = 0; }},
        {"tokens_per_section 65", [](sqkv_writer_options *o) { o->tokens_per_section = 65; }},
        {"tokens_per_section 32", [](sqkv_writer_options *o) { o->tokens_per_section = 32; }},
    };
    for (const Bad &b : bad) {
        sqkv_writer_options o = Defaults();
        b.apply(&o);
        EXPECT_EQ(Create(kGeometry, o), SQKV_ERR_INVALID_ARGUMENT) << b.what;
    }
    // Limits that are fine.
    sqkv_writer_options o = Defaults();
    o.offset_interval_log2 = 20;
    o.heads_per_section = 1000;  // more than the heads: one section for all
    o.tokens_per_section = 1u << 20;
    EXPECT_EQ(Create(kGeometry, o), SQKV_OK);
    o = Defaults();
    o.sparsity = 0.0;
    EXPECT_EQ(Create(kGeometry, o), SQKV_OK);
    o.sparsity = std::nextafter(1.0, 0.0);
    EXPECT_EQ(Create(kGeometry, o), SQKV_OK);
}

TEST(WriterOptions, NullArguments) {
    const sqkv_writer_options o = Defaults();
    sqkv_writer *w = nullptr;
    EXPECT_EQ(sqkv_writer_create(nullptr, &o, &w), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_writer_create(&kGeometry, nullptr, &w), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(w, nullptr);
    EXPECT_EQ(sqkv_writer_create(&kGeometry, &o, nullptr), SQKV_ERR_INVALID_ARGUMENT);
    sqkv_writer_destroy(nullptr);  // allowed, like free(NULL)
}

TEST(WriterGeometry, OutOfRangeGeometryIsRefused) {
    const sqkv_writer_options o = Defaults();
    struct Bad {
        const char *what;
        sqkv_geometry g;
    };
    std::vector<Bad> zero = {
        {"0 layers", MakeGeometry(0, 1, 64, 8, 0)},
        {"0 heads", MakeGeometry(1, 0, 64, 8, 0)},
        {"head_dim 0", MakeGeometry(1, 1, 0, 8, 0)},
        {"0 tokens", MakeGeometry(1, 1, 64, 0, 0)},
        {"dense_window > n_tokens", MakeGeometry(1, 1, 64, 8, 9)},
        {"value_dtype FP32", MakeGeometry(1, 1, 64, 8, 0, SQKV_DTYPE_FP32)},
        {"value_dtype 0", MakeGeometry(1, 1, 64, 8, 0, static_cast<sqkv_dtype>(0))},
    };
    for (const Bad &b : zero) EXPECT_EQ(Create(b.g, o), SQKV_ERR_INVALID_ARGUMENT) << b.what;
    // Beyond the format maxima of §3: sqkv.h has both INVALID_ARGUMENT ("out-of-range option") and LIMIT
    // ("beyond a format maximum"); either names the problem, OK would be a bug.
    std::vector<Bad> beyond = {
        {"1025 layers", MakeGeometry(1025, 1, 64, 8, 0)},
        {"1025 heads", MakeGeometry(1, 1025, 64, 8, 0)},
        {"head_dim 1025", MakeGeometry(1, 1, 1025, 8, 0)},
        {"2^28 + 1 tokens", MakeGeometry(1, 1, 64, (1u << 28) + 1, 0)},
    };
    for (const Bad &b : beyond) {
        const sqkv_error err = Create(b.g, o);
        EXPECT_TRUE(err == SQKV_ERR_LIMIT || err == SQKV_ERR_INVALID_ARGUMENT) << b.what << ": " << ErrName(err);
    }
    // The maxima themselves are fine (nothing is allocated at create time for them)...
    sqkv_writer_options all_heads = o;
    all_heads.heads_per_section = 1024;
    EXPECT_EQ(Create(MakeGeometry(1024, 1024, 1024, 2048, 0), all_heads), SQKV_OK);
    EXPECT_EQ(Create(MakeGeometry(1, 1, 15, 1u << 28, 0), o), SQKV_OK);
    // ... but one section may hold at most 2^32 - 1 elements (§3) ...
    EXPECT_EQ(Create(MakeGeometry(1, 1, 16, 1u << 28, 0), o), SQKV_ERR_LIMIT);
    EXPECT_EQ(Create(MakeGeometry(1, 1024, 1024, 4096, 0), all_heads), SQKV_ERR_LIMIT);
    // ... and a file at most 2^20 sections: 1024 layers x 2 tensors x 1024 heads is 2^21.
    EXPECT_EQ(Create(MakeGeometry(1024, 1024, 1024, 64, 0), o), SQKV_ERR_LIMIT);
    // source_dtype is informative and ignored by create.
    sqkv_geometry g = MakeGeometry(1, 1, 64, 8, 0);
    g.source_dtype = static_cast<sqkv_dtype>(99);
    EXPECT_EQ(Create(g, o), SQKV_OK);
}

class WriterFlow : public ::testing::Test {
  protected:
    void SetUp() override {
        cache_ = MakeRandomCache(kGeometry, SQKV_DTYPE_FP32, 9);
        opts_ = Defaults();
        sqkv_writer *w = nullptr;
        ASSERT_EQ(sqkv_writer_create(&cache_.geometry, &opts_, &w), SQKV_OK);
        w_.reset(w);
    }
    sqkv_error AddLayer(uint32_t l) {
        return sqkv_writer_add_layer(w_.get(), l, SQKV_DTYPE_FP32, cache_.k[l].data(), cache_.v[l].data());
    }
    Cache cache_;
    sqkv_writer_options opts_;
    WriterPtr w_;
};

TEST_F(WriterFlow, OutputBeforeEveryLayerIsState) {
    uint64_t size = 0;
    EXPECT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_ERR_STATE);
    SetUp();
    ASSERT_EQ(AddLayer(1), SQKV_OK);  // any order
    Bytes buf(1 << 20);
    size_t written = 0;
    EXPECT_EQ(sqkv_writer_write_buffer(w_.get(), buf.data(), buf.size(), &written), SQKV_ERR_STATE);
    SetUp();
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    EXPECT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_OK);
    EXPECT_GT(size, 0u);
}

TEST_F(WriterFlow, LayerTwiceIsStateAndSticky) {
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    EXPECT_EQ(AddLayer(0), SQKV_ERR_STATE);
    EXPECT_STRNE(sqkv_writer_error_detail(w_.get()), "");
    // Sticky: every later call returns the same error, even ones that would otherwise succeed.
    EXPECT_EQ(AddLayer(1), SQKV_ERR_STATE);
    uint64_t size;
    EXPECT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_ERR_STATE);
}

TEST_F(WriterFlow, LayerOutOfRangeIsRefused) {
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 2, SQKV_DTYPE_FP32, cache_.k[0].data(), cache_.v[0].data()),
              SQKV_ERR_INVALID_ARGUMENT);
}

TEST_F(WriterFlow, NullTensorIsInvalidArgument) {
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 0, SQKV_DTYPE_FP32, nullptr, cache_.v[0].data()),
              SQKV_ERR_INVALID_ARGUMENT);
}

TEST_F(WriterFlow, BadDtypeIsInvalidArgument) {
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 0, static_cast<sqkv_dtype>(4), cache_.k[0].data(), cache_.v[0].data()),
              SQKV_ERR_INVALID_ARGUMENT);
}

TEST_F(WriterFlow, SettersAfterOutputAreState) {
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    const std::vector<int32_t> tokens(70, 1);
    // Before the first output call the setters may still come after add_layer (writer.c allows any order).
    ASSERT_EQ(sqkv_writer_set_tokens(w_.get(), tokens.data(), tokens.size()), SQKV_OK);
    uint64_t size = 0;
    ASSERT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_OK);
    // After it the bytes are fixed (every output call gives the same bytes): changing them is STATE.
    EXPECT_EQ(sqkv_writer_add_metadata(w_.get(), "k", 1, "v", 1), SQKV_ERR_STATE);
    SetUp();
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    ASSERT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_OK);
    EXPECT_EQ(sqkv_writer_set_tokens(w_.get(), tokens.data(), tokens.size()), SQKV_ERR_STATE);
    SetUp();
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    ASSERT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_OK);
    EXPECT_EQ(sqkv_writer_set_fingerprint(w_.get(), "f", 1), SQKV_ERR_STATE);
}

TEST_F(WriterFlow, SettersTwiceAreState) {
    const std::vector<int32_t> tokens(70, 1);
    ASSERT_EQ(sqkv_writer_set_tokens(w_.get(), tokens.data(), tokens.size()), SQKV_OK);
    EXPECT_EQ(sqkv_writer_set_tokens(w_.get(), tokens.data(), tokens.size()), SQKV_ERR_STATE);
    SetUp();
    ASSERT_EQ(sqkv_writer_set_fingerprint(w_.get(), "f", 1), SQKV_OK);
    EXPECT_EQ(sqkv_writer_set_fingerprint(w_.get(), "g", 1), SQKV_ERR_STATE);
}

TEST_F(WriterFlow, LayersMustShareOneInputDtype) {
    // The header's source_dtype is one value for the file.
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    const Cache c16 = MakeRandomCache(kGeometry, SQKV_DTYPE_FP16, 9);
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 1, SQKV_DTYPE_FP16, c16.k[1].data(), c16.v[1].data()),
              SQKV_ERR_INVALID_ARGUMENT);
}

TEST_F(WriterFlow, NonFiniteInputIsStickyError) {
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
        SetUp();
        Bytes k = cache_.k[0];
        std::memcpy(&k[4 * 777], &bad, 4);
        EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 0, SQKV_DTYPE_FP32, k.data(), cache_.v[0].data()),
                  SQKV_ERR_NONFINITE_INPUT);
        EXPECT_STRNE(sqkv_writer_error_detail(w_.get()), "");
        EXPECT_EQ(AddLayer(1), SQKV_ERR_NONFINITE_INPUT);
        uint64_t size;
        EXPECT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_ERR_NONFINITE_INPUT);
        Bytes buf(1 << 20);
        size_t written;
        EXPECT_EQ(sqkv_writer_write_buffer(w_.get(), buf.data(), buf.size(), &written), SQKV_ERR_NONFINITE_INPUT);
        EXPECT_EQ(sqkv_writer_set_fingerprint(w_.get(), "x", 1), SQKV_ERR_NONFINITE_INPUT);
    }
}

TEST_F(WriterFlow, NonFiniteInTheDenseWindowToo) {
    Bytes v = cache_.v[0];
    const float bad = std::nanf("");
    std::memcpy(&v[v.size() - 4], &bad, 4);  // last token is in the dense window
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 0, SQKV_DTYPE_FP32, cache_.k[0].data(), v.data()),
              SQKV_ERR_NONFINITE_INPUT);
}

TEST_F(WriterFlow, Fp16InputNaNIsNonFinite) {
    const Cache c16 = MakeRandomCache(kGeometry, SQKV_DTYPE_FP16, 9);
    Bytes k = c16.k[0];
    k[10] = 0x00;
    k[11] = 0x7E;  // fp16 NaN
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 0, SQKV_DTYPE_FP16, k.data(), c16.v[0].data()), SQKV_ERR_NONFINITE_INPUT);
}

TEST_F(WriterFlow, ValueBeyondFp16IsRangeInput) {
    Bytes k = cache_.k[0];
    const float big = 1e6f;
    std::memcpy(&k[4 * 100], &big, 4);
    EXPECT_EQ(sqkv_writer_add_layer(w_.get(), 0, SQKV_DTYPE_FP32, k.data(), cache_.v[0].data()), SQKV_ERR_RANGE_INPUT);
    EXPECT_EQ(AddLayer(1), SQKV_ERR_RANGE_INPUT);  // sticky
}

TEST(WriterInput, RangeEdgeOfFp16FollowsRounding) {
    // 65519 rounds to 65504 (fits); 65520 rounds to infinity (does not fit). elements.h documents
    // "a finite value that rounds to infinity in E".
    for (float x : {65504.0f, 65519.0f, 65520.0f, -65520.0f}) {
        Cache c = MakeRandomCache(MakeGeometry(1, 1, 8, 2, 0), SQKV_DTYPE_FP32, 1);
        std::memcpy(c.k[0].data(), &x, 4);
        Bytes file;
        const sqkv_error expected = std::fabs(x) >= 65520.0f ? SQKV_ERR_RANGE_INPUT : SQKV_OK;
        EXPECT_EQ(EncodeCache(c, Defaults(), &file), expected) << x;
    }
    // bf16 input to an fp16 file.
    Cache c = MakeRandomCache(MakeGeometry(1, 1, 8, 2, 0), SQKV_DTYPE_BF16, 1);
    c.k[0][0] = 0x80;
    c.k[0][1] = 0x47;  // bf16 65536
    Bytes file;
    EXPECT_EQ(EncodeCache(c, Defaults(), &file), SQKV_ERR_RANGE_INPUT);
}

TEST_F(WriterFlow, OutputCallsAreRepeatableAndAgree) {
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    uint64_t size = 0;
    ASSERT_EQ(sqkv_writer_file_size(w_.get(), &size), SQKV_OK);

    // Two-phase: one byte short is refused without writing past the buffer.
    Bytes small(size - 1 + 16, 0xCC);
    size_t written = 0;
    EXPECT_EQ(sqkv_writer_write_buffer(w_.get(), small.data(), size - 1, &written), SQKV_ERR_BUFFER_TOO_SMALL);
    for (size_t i = size - 1; i < small.size(); i++) ASSERT_EQ(small[i], 0xCC) << "wrote past cap at " << i;

    // Errors are sticky (sqkv.h), caller mistakes included.
    EXPECT_EQ(sqkv_writer_write_buffer(w_.get(), small.data(), small.size(), &written), SQKV_ERR_BUFFER_TOO_SMALL);
    SetUp();
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    Bytes a(size + 8, 0xEE), b(size, 0);
    ASSERT_EQ(sqkv_writer_write_buffer(w_.get(), a.data(), a.size(), &written), SQKV_OK);
    EXPECT_EQ(written, size);
    EXPECT_EQ(a[size], 0xEE);
    a.resize(size);
    ASSERT_EQ(sqkv_writer_write_buffer(w_.get(), b.data(), b.size(), &written), SQKV_OK);
    EXPECT_EQ(a, b) << "second write_buffer differs";

    Bytes streamed;
    size_t calls = 0;
    struct Sink {
        Bytes *out;
        size_t *calls;
    } sink{&streamed, &calls};
    ASSERT_EQ(sqkv_writer_write_callback(
                  w_.get(),
                  [](void *ctx, const void *data, size_t n) {
                      Sink *s = static_cast<Sink *>(ctx);
                      const uint8_t *p = static_cast<const uint8_t *>(data);
                      s->out->insert(s->out->end(), p, p + n);
                      (*s->calls)++;
                      return 0;
                  },
                  &sink),
              SQKV_OK);
    EXPECT_EQ(streamed, a);
    EXPECT_GT(calls, 0u);

    const std::string dir = MakeTempDir("writer_fd");
    ASSERT_FALSE(dir.empty());
    const std::string path = dir + "/out.sqkv";
    const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(sqkv_writer_write_fd(w_.get(), fd), SQKV_OK);
    close(fd);
    Bytes from_fd;
    ASSERT_TRUE(ReadFile(path, &from_fd));
    EXPECT_EQ(from_fd, a);

    ASSERT_EQ(sqkv_writer_save(w_.get(), (dir + "/saved.sqkv").c_str()), SQKV_OK);
    Bytes saved;
    ASSERT_TRUE(ReadFile(dir + "/saved.sqkv", &saved));
    EXPECT_EQ(saved, a);
    RemoveTree(dir);
}

TEST_F(WriterFlow, CallbackFailureIsIo) {
    ASSERT_EQ(AddLayer(0), SQKV_OK);
    ASSERT_EQ(AddLayer(1), SQKV_OK);
    int calls = 0;
    EXPECT_EQ(sqkv_writer_write_callback(
                  w_.get(),
                  [](void *ctx, const void *, size_t) {
                      return ++*static_cast<int *>(ctx) == 2 ? -1 : 0;
                  },
                  &calls),
              SQKV_ERR_IO);
    EXPECT_EQ(calls, 2) << "write_fn must not be called again after it failed";
}

TEST(WriterDeterminism, SameInputTwiceGivesIdenticalBytes) {
    Cache c = MakeRandomCache(MakeGeometry(3, 4, 80, 150, 10), SQKV_DTYPE_FP32, 1234);
    c.has_tokens = true;
    c.tokens.assign(150, 17);
    c.fingerprint = {1, 2, 3};
    c.metadata = {{"b", "2"}, {"a", "1"}};
    sqkv_writer_options o = Defaults();
    o.scales = SQKV_SCALE_PER_TILE;
    o.heads_per_section = 3;
    o.tokens_per_section = 64;
    Bytes first, second;
    ASSERT_EQ(EncodeCache(c, o, &first), SQKV_OK);
    ASSERT_EQ(EncodeCache(c, o, &second), SQKV_OK);
    EXPECT_EQ(first, second);
    // Layer order and metadata insertion order do not change the bytes.
    sqkv_writer *raw = nullptr;
    ASSERT_EQ(sqkv_writer_create(&c.geometry, &o, &raw), SQKV_OK);
    WriterPtr w(raw);
    ASSERT_EQ(sqkv_writer_set_tokens(w.get(), c.tokens.data(), c.tokens.size()), SQKV_OK);
    ASSERT_EQ(sqkv_writer_set_fingerprint(w.get(), c.fingerprint.data(), c.fingerprint.size()), SQKV_OK);
    ASSERT_EQ(sqkv_writer_add_metadata(w.get(), "a", 1, "1", 1), SQKV_OK);
    ASSERT_EQ(sqkv_writer_add_metadata(w.get(), "b", 1, "2", 1), SQKV_OK);
    for (uint32_t l : {2u, 0u, 1u})
        ASSERT_EQ(sqkv_writer_add_layer(w.get(), l, SQKV_DTYPE_FP32, c.k[l].data(), c.v[l].data()), SQKV_OK);
    uint64_t size = 0;
    ASSERT_EQ(sqkv_writer_file_size(w.get(), &size), SQKV_OK);
    Bytes third(size);
    size_t written;
    ASSERT_EQ(sqkv_writer_write_buffer(w.get(), third.data(), third.size(), &written), SQKV_OK);
    EXPECT_EQ(third, first);
}

TEST(WriterDeterminism, CallerMayFreeTensorsAfterAddLayer) {
    const Cache c = MakeRandomCache(MakeGeometry(2, 1, 64, 40, 5), SQKV_DTYPE_FP32, 5);
    Bytes expected;
    ASSERT_EQ(EncodeCache(c, Defaults(), &expected), SQKV_OK);
    sqkv_writer_options o = Defaults();
    sqkv_writer *raw = nullptr;
    ASSERT_EQ(sqkv_writer_create(&c.geometry, &o, &raw), SQKV_OK);
    WriterPtr w(raw);
    for (uint32_t l = 0; l < 2; l++) {
        std::unique_ptr<uint8_t[]> k(new uint8_t[c.k[l].size()]), v(new uint8_t[c.v[l].size()]);
        std::memcpy(k.get(), c.k[l].data(), c.k[l].size());
        std::memcpy(v.get(), c.v[l].data(), c.v[l].size());
        ASSERT_EQ(sqkv_writer_add_layer(w.get(), l, SQKV_DTYPE_FP32, k.get(), v.get()), SQKV_OK);
        std::memset(k.get(), 0xFF, c.k[l].size());  // then freed: ASan catches a later read
    }
    uint64_t size = 0;
    ASSERT_EQ(sqkv_writer_file_size(w.get(), &size), SQKV_OK);
    Bytes got(size);
    size_t written;
    ASSERT_EQ(sqkv_writer_write_buffer(w.get(), got.data(), got.size(), &written), SQKV_OK);
    EXPECT_EQ(got, expected);
}

TEST(Errors, NamesAndMessagesAreStable) {
    EXPECT_STREQ(sqkv_error_name(SQKV_OK), "SQKV_OK");
    EXPECT_STREQ(sqkv_error_name(SQKV_ERR_OFFSET_MISMATCH), "SQKV_ERR_OFFSET_MISMATCH");
    EXPECT_STREQ(sqkv_error_name(static_cast<sqkv_error>(999)), "SQKV_ERR_UNKNOWN");
    for (int e = 0; e < 100; e++) {
        ASSERT_NE(sqkv_error_message(static_cast<sqkv_error>(e)), nullptr);
        ASSERT_NE(sqkv_error_name(static_cast<sqkv_error>(e)), nullptr);
    }
    EXPECT_EQ(SQKV_ERR_COVERAGE, 42);  // values are part of the ABI
    EXPECT_EQ(SQKV_ERR_NO_TOKENS, 73);
    EXPECT_EQ(SQKV_ERR_MISALIGNED, 11);
    EXPECT_STREQ(sqkv_error_name(SQKV_ERR_MISALIGNED), "SQKV_ERR_MISALIGNED");
}

TEST(DenseSize, ComputesAndRefusesOverflow) {
    EXPECT_EQ(sqkv_dense_size(2, 3, 4, SQKV_DTYPE_FP16), 48u);
    EXPECT_EQ(sqkv_dense_size(2, 3, 4, SQKV_DTYPE_FP32), 96u);
    EXPECT_EQ(sqkv_dense_size(2, 3, 4, static_cast<sqkv_dtype>(0)), 0u);
    EXPECT_EQ(sqkv_dense_size(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, SQKV_DTYPE_FP32), 0u);
    EXPECT_EQ(sqkv_dense_size(1024, 1u << 28, 1024, SQKV_DTYPE_FP32), uint64_t{1} << 50);
}

}  // namespace
