// reader_api_test.cc: the reader's contract in sqkv.h: configured limits (every sqkv_limits field
// lowered below what a file needs gives SQKV_ERR_LIMIT), section listing, version, decode arguments,
// two-phase sizes and BUFFER_TOO_SMALL, call order.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sqkv_file.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

sqkv_writer_options Defaults() {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    return o;
}

class ReaderApi : public ::testing::Test {
  protected:
    void SetUp() override {
        cache_ = MakeRandomCache(MakeGeometry(3, 2, 80, 150, 6), SQKV_DTYPE_FP32, 21);
        cache_.has_tokens = true;
        cache_.tokens.assign(150, 4);
        cache_.fingerprint = Bytes(16, 9);
        ASSERT_EQ(EncodeCache(cache_, Defaults(), &file_), SQKV_OK);
    }
    // Open, verify and decode everything under `limits`; the first error.
    sqkv_error Run(const sqkv_limits &limits) {
        sqkv_reader *raw = nullptr;
        sqkv_error err = sqkv_reader_create(&limits, 0, &raw);
        if (err) return err;
        ReaderPtr r(raw);
        if ((err = sqkv_reader_open_memory(r.get(), file_.data(), file_.size()))) return err;
        if ((err = sqkv_reader_verify(r.get()))) return err;
        Bytes out;
        for (uint32_t l = 0; l < 3; l++)
            for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V})
                if ((err = DecodeTensor(r.get(), l, t, SQKV_DTYPE_FP32, &out))) return err;
        return SQKV_OK;
    }
    Cache cache_;
    Bytes file_;
};

TEST_F(ReaderApi, DefaultLimitsAreTheDocumentedOnes) {
    sqkv_limits l;
    sqkv_limits_default(&l);
    EXPECT_EQ(l.max_file_size, uint64_t{1} << 40);
    EXPECT_EQ(l.max_section_size, uint64_t{1} << 34);
    EXPECT_EQ(l.max_sections, 1u << 20);
    EXPECT_EQ(l.max_layers, 1024u);
    EXPECT_EQ(l.max_heads, 1024u);
    EXPECT_EQ(l.max_head_dim, 1024u);
    EXPECT_EQ(l.max_tokens, 1u << 28);
    EXPECT_EQ(l.max_memory, uint64_t{256} << 20);
    EXPECT_EQ(Run(l), SQKV_OK);
}

TEST_F(ReaderApi, EachLimitJustBelowTheFileIsLimitError) {
    RawFile raw;
    ASSERT_TRUE(ParseRaw(file_, &raw));
    uint64_t largest_section = raw.index.body.size();
    for (const RawSection &s : raw.sections) largest_section = std::max<uint64_t>(largest_section, s.body.size());
    const uint32_t sections = static_cast<uint32_t>(raw.sections.size() + 1);

    struct Case {
        const char *field;
        void (*lower)(sqkv_limits *, uint64_t);
        uint64_t exact;  // the file's need: at this value it passes, one less fails
    };
    const Case cases[] = {
        {"max_file_size", [](sqkv_limits *l, uint64_t v) { l->max_file_size = v; }, file_.size()},
        {"max_section_size", [](sqkv_limits *l, uint64_t v) { l->max_section_size = v; }, largest_section},
        {"max_sections", [](sqkv_limits *l, uint64_t v) { l->max_sections = static_cast<uint32_t>(v); }, sections},
        {"max_layers", [](sqkv_limits *l, uint64_t v) { l->max_layers = static_cast<uint32_t>(v); }, 3},
        {"max_heads", [](sqkv_limits *l, uint64_t v) { l->max_heads = static_cast<uint32_t>(v); }, 2},
        {"max_head_dim", [](sqkv_limits *l, uint64_t v) { l->max_head_dim = static_cast<uint32_t>(v); }, 80},
        {"max_tokens", [](sqkv_limits *l, uint64_t v) { l->max_tokens = static_cast<uint32_t>(v); }, 150},
    };
    for (const Case &c : cases) {
        sqkv_limits l;
        sqkv_limits_default(&l);
        c.lower(&l, c.exact);
        EXPECT_EQ(Run(l), SQKV_OK) << c.field << " = " << c.exact << " (exactly the file's need)";
        c.lower(&l, c.exact - 1);
        EXPECT_EQ(Run(l), SQKV_ERR_LIMIT) << c.field << " = " << c.exact - 1;
    }
    // max_memory: what the reader allocates is implementation-defined; tiny must fail with LIMIT, not crash.
    sqkv_limits l;
    sqkv_limits_default(&l);
    l.max_memory = 16;
    EXPECT_EQ(Run(l), SQKV_ERR_LIMIT);
}

TEST_F(ReaderApi, LimitsAboveFormatMaximaAreClampedNotTrusted) {
    // A caller may ask for more than the format allows; the file is still held to the format (§3).
    sqkv_limits l;
    sqkv_limits_default(&l);
    l.max_layers = 0xFFFFFFFFu;
    l.max_tokens = 0xFFFFFFFFu;
    l.max_file_size = ~uint64_t{0};
    EXPECT_EQ(Run(l), SQKV_OK);
}

TEST_F(ReaderApi, SectionListingMatchesTheFile) {
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file_, &r), SQKV_OK);
    uint32_t major = 0, minor = 99;
    ASSERT_EQ(sqkv_reader_version(r.get(), &major, &minor), SQKV_OK);
    EXPECT_EQ(major, 1u);
    EXPECT_EQ(minor, 0u);
    const std::vector<size_t> offsets = SectionOffsets(file_);
    size_t count = 0;
    ASSERT_EQ(sqkv_reader_section_count(r.get(), &count), SQKV_OK);
    ASSERT_EQ(count, offsets.size());
    // 2 ancillary + 3 layers * 2 tensors * 2 heads * (SPARSE + DENSE) + INDEX.
    EXPECT_EQ(count, 2u + 3 * 2 * 2 * 2 + 1);
    for (size_t i = 0; i < count; i++) {
        sqkv_section_info info{};
        ASSERT_EQ(sqkv_reader_section_info(r.get(), i, &info), SQKV_OK);
        EXPECT_EQ(info.offset, offsets[i]);
        EXPECT_EQ(info.kind, Get16(file_, offsets[i] + sec::kKind));
        EXPECT_EQ(info.stored_size, Get64(file_, offsets[i] + sec::kStoredSize));
        EXPECT_EQ(info.layer, Get32(file_, offsets[i] + sec::kLayer));
        EXPECT_EQ(info.head_start, Get32(file_, offsets[i] + sec::kHeadStart));
        EXPECT_EQ(info.token_count, Get32(file_, offsets[i] + sec::kTokenCount));
    }
    sqkv_section_info info{};
    EXPECT_EQ(sqkv_reader_section_info(r.get(), count, &info), SQKV_ERR_INVALID_ARGUMENT);
    sqkv_section_info last{};
    ASSERT_EQ(sqkv_reader_section_info(r.get(), count - 1, &last), SQKV_OK);
    EXPECT_EQ(last.kind, kKindIndex);
}

TEST_F(ReaderApi, ReferenceEncoderSectionOrder) {
    // §6 / §14: layer by layer, K before V, heads ascending, tokens ascending; SPARSE then DENSE.
    RawFile raw;
    ASSERT_TRUE(ParseRaw(file_, &raw));
    std::vector<std::tuple<uint32_t, uint8_t, uint32_t, uint32_t>> order;
    for (const RawSection &s : raw.sections)
        if (s.kind() == kKindSparse || s.kind() == kKindDense)
            order.emplace_back(s.layer(), s.tensor(), s.head_start(), s.token_start());
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
    EXPECT_EQ(order.size(), 24u);
}

TEST_F(ReaderApi, DecodeArgumentsAreChecked) {
    const uint64_t size = sqkv_dense_size(2, 150, 80, SQKV_DTYPE_FP32);
    Bytes out(size + 4, 0x3C);
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file_, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_decode(r.get(), 0, SQKV_TENSOR_K, 0, 2, SQKV_DTYPE_FP32, out.data(), size - 1),
              SQKV_ERR_BUFFER_TOO_SMALL);
    for (size_t i = 0; i < out.size(); i++) ASSERT_EQ(out[i], 0x3C) << "wrote into a too-small buffer at " << i;
    // Errors are sticky, caller mistakes included (sqkv.h).
    EXPECT_EQ(sqkv_reader_decode(r.get(), 0, SQKV_TENSOR_K, 0, 2, SQKV_DTYPE_FP32, out.data(), size),
              SQKV_ERR_BUFFER_TOO_SMALL);
    ASSERT_EQ(OpenMemory(file_, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_decode(r.get(), 0, SQKV_TENSOR_K, 0, 2, SQKV_DTYPE_FP32, out.data(), size), SQKV_OK);
    EXPECT_EQ(out[size], 0x3C) << "wrote past the tensor";

    struct Bad {
        const char *what;
        uint32_t layer;
        int tensor;  // int, not the enum: out-of-range enum objects are UB in C++ (UBSan -fsanitize=enum)
        uint32_t head_start, head_count;
        int dtype;
        bool null_out;
    };
    const Bad bad[] = {
        {"layer 3 of 3", 3, SQKV_TENSOR_K, 0, 2, SQKV_DTYPE_FP32, false},
        {"tensor 2", 0, 2, 0, 2, SQKV_DTYPE_FP32, false},
        {"heads [1, 3)", 0, SQKV_TENSOR_V, 1, 2, SQKV_DTYPE_FP32, false},
        {"no heads", 0, SQKV_TENSOR_V, 0, 0, SQKV_DTYPE_FP32, false},
        {"head_start + head_count overflows", 0, SQKV_TENSOR_V, 0xFFFFFFFFu, 2, SQKV_DTYPE_FP32, false},
        {"dtype 7", 0, SQKV_TENSOR_V, 0, 2, 7, false},
        {"out NULL", 0, SQKV_TENSOR_V, 0, 2, SQKV_DTYPE_FP32, true},
    };
    for (const Bad &b : bad) {
        ASSERT_EQ(OpenMemory(file_, &r), SQKV_OK);
        EXPECT_EQ(sqkv_reader_decode(r.get(), b.layer, static_cast<sqkv_tensor>(b.tensor), b.head_start, b.head_count,
                                     static_cast<sqkv_dtype>(b.dtype),
                                     b.null_out ? nullptr : out.data(), size),
                  SQKV_ERR_INVALID_ARGUMENT)
            << b.what;
        EXPECT_STRNE(sqkv_reader_error_detail(r.get()), "") << b.what;
    }
}

TEST_F(ReaderApi, QueriesBeforeOpenAreState) {
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    ReaderPtr r(raw);
    sqkv_geometry g;
    EXPECT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_ERR_STATE);
    EXPECT_EQ(sqkv_reader_verify(r.get()), SQKV_ERR_STATE);
    size_t count = 0;
    EXPECT_EQ(sqkv_reader_section_count(r.get(), &count), SQKV_ERR_STATE);
    ASSERT_EQ(OpenMemory(file_, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_OK);
    // Opening a second time is out of order.
    EXPECT_EQ(sqkv_reader_open_memory(r.get(), file_.data(), file_.size()), SQKV_ERR_STATE);
}

TEST_F(ReaderApi, ReaderErrorsAreSticky) {
    Bytes bad = file_;
    bad[bad.size() - 1] ^= 1;  // end magic
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    ReaderPtr r(raw);
    EXPECT_EQ(sqkv_reader_open_memory(r.get(), bad.data(), bad.size()), SQKV_ERR_BAD_TAIL);
    EXPECT_STRNE(sqkv_reader_error_detail(r.get()), "");
    sqkv_geometry g;
    EXPECT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_ERR_BAD_TAIL);
    EXPECT_EQ(sqkv_reader_verify(r.get()), SQKV_ERR_BAD_TAIL);
}

TEST_F(ReaderApi, CorruptBodyFailsDecodeAndStaysFailed) {
    // Damage the body of layer 1's first SPARSE section: open succeeds (structure only), decoding layer 1
    // fails with SECTION_CHECKSUM, and the failure is sticky.
    RawFile raw;
    ASSERT_TRUE(ParseRaw(file_, &raw));
    const std::vector<size_t> offsets = SectionOffsets(file_);
    size_t target = 0;
    for (size_t i = 0; i < raw.sections.size(); i++)
        if (raw.sections[i].kind() == kKindSparse && raw.sections[i].layer() == 1) {
            target = offsets[i];
            break;
        }
    ASSERT_NE(target, 0u);
    Bytes bad = file_;
    bad[target + 64 + 3] ^= 0x10;
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(bad, &r), SQKV_OK);
    Bytes out;
    EXPECT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_OK);
    EXPECT_EQ(DecodeTensor(r.get(), 1, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_ERR_SECTION_CHECKSUM);
    EXPECT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_ERR_SECTION_CHECKSUM);
}

TEST_F(ReaderApi, TrustedFlagSkipsBodyChecksumsOnly) {
    Bytes bad = file_;
    // Flip a bit in the body checksum field of the first tensor section: only the checksum is wrong.
    RawFile raw;
    ASSERT_TRUE(ParseRaw(file_, &raw));
    const std::vector<size_t> offsets = SectionOffsets(file_);
    const size_t first_tensor = offsets[2];  // after TOKENS and FINGERPRINT
    bad[first_tensor + sec::kBodyChecksum] ^= 1;
    FixSectionChecksums(&bad, first_tensor);  // recomputes both: restore the wrong body checksum
    bad[first_tensor + sec::kBodyChecksum] ^= 1;
    Put64(&bad, first_tensor + sec::kHeaderChecksum, Xxh3(bad.data() + first_tensor, 56));
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(bad, &r), SQKV_OK);
    Bytes out;
    EXPECT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_ERR_SECTION_CHECKSUM);
    ASSERT_EQ(OpenMemory(bad, &r, nullptr, SQKV_READER_TRUSTED), SQKV_OK);
    EXPECT_EQ(DecodeTensor(r.get(), 0, SQKV_TENSOR_K, SQKV_DTYPE_FP32, &out), SQKV_OK);
    // sqkv_reader_verify is the explicit full check: it verifies body checksums even when trusted.
    EXPECT_EQ(sqkv_reader_verify(r.get()), SQKV_ERR_SECTION_CHECKSUM);
    // Structure is still checked in trusted mode.
    Bytes broken = file_;
    broken[sec::kKind + offsets[2] + 1] = 0x00;
    broken[sec::kKind + offsets[2]] = 0x07;  // unknown critical kind
    FixSectionChecksums(&broken, offsets[2]);
    EXPECT_NE(DecodeEverything(broken), SQKV_OK);
    sqkv_reader *tr = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, SQKV_READER_TRUSTED, &tr), SQKV_OK);
    ReaderPtr trusted(tr);
    sqkv_error err = sqkv_reader_open_memory(trusted.get(), broken.data(), broken.size());
    if (err == SQKV_OK) err = sqkv_reader_verify(trusted.get());
    EXPECT_NE(err, SQKV_OK);
}

TEST(ReaderCreate, BadArguments) {
    sqkv_reader *r = nullptr;
    EXPECT_EQ(sqkv_reader_create(nullptr, 0, nullptr), SQKV_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sqkv_reader_create(nullptr, 0x80u, &r), SQKV_ERR_INVALID_ARGUMENT) << "unknown flag";
    EXPECT_EQ(r, nullptr);
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &r), SQKV_OK);
    EXPECT_EQ(sqkv_reader_open_memory(r, nullptr, 100), SQKV_ERR_INVALID_ARGUMENT);
    sqkv_reader_destroy(r);
    sqkv_reader_destroy(nullptr);
}

}  // namespace
