// append_format_test.cc: the reader's side of appended files (spec/FORMAT.md §9.1). Appended files are
// built here from encoder-written pieces (tests/support/sqkv_file.h), independently of sqkv_append: the
// old file unchanged, then new sections, then a new INDEX that supersedes the old INDEX, the old TOKENS
// and any replaced tensor sections. The reader must decode the grown cache and enforce the supersede
// rules. (sqkv_append itself is tested in append_writer_test.cc.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "sqkv_file.h"
#include "test_util.h"

namespace {

using namespace sqkv_test;

#define EXPECT_ERR(bytes, code) EXPECT_EQ(ErrName(DecodeEverything(bytes)), ErrName(code))

constexpr uint32_t kL = 2, kH = 2, kD = 40;

sqkv_writer_options Options() {
    sqkv_writer_options o{};
    o.prune = SQKV_PRUNE_MAGNITUDE;
    o.sparsity = 0.7;
    o.payload_bits = 2;
    o.quantizer = SQKV_QUANT_SYMMETRIC;
    o.scales = SQKV_SCALE_PER_HEAD;
    o.offset_interval_log2 = 4;
    o.heads_per_section = 1;
    return o;
}

// Tokens [from, to) of `full` (same layers and heads) as a cache of its own.
Cache Slice(const Cache &full, uint32_t from, uint32_t to, uint32_t dense_window) {
    Cache c;
    c.geometry = full.geometry;
    c.geometry.n_tokens = to - from;
    c.geometry.dense_window = dense_window;
    c.input_dtype = full.input_dtype;
    const size_t w = DtypeSize(full.input_dtype), row = static_cast<size_t>(kD) * w;
    for (uint32_t l = 0; l < kL; l++)
        for (int t = 0; t < 2; t++) {
            const Bytes &src = t ? full.v[l] : full.k[l];
            Bytes dst;
            for (uint32_t h = 0; h < kH; h++) {
                const size_t head = static_cast<size_t>(h) * full.geometry.n_tokens * row;
                dst.insert(dst.end(), src.begin() + head + from * row, src.begin() + head + to * row);
            }
            (t ? c.v : c.k).push_back(dst);
        }
    if (full.has_tokens) {
        c.has_tokens = true;
        c.tokens.assign(full.tokens.begin() + from, full.tokens.begin() + to);
    }
    return c;
}

RawFile Encode(const Cache &c) {
    Bytes file;
    EXPECT_EQ(EncodeCache(c, Options(), &file), SQKV_OK);
    RawFile raw;
    EXPECT_TRUE(ParseRaw(file, &raw));
    return raw;
}

int Find(const RawFile &f, uint16_t kind, int tensor = -1, int layer = -1, int head = -1) {
    for (size_t i = 0; i < f.sections.size(); i++) {
        const RawSection &s = f.sections[i];
        if (s.kind() == kind && (tensor < 0 || s.tensor() == tensor) && (layer < 0 || s.layer() == uint32_t(layer)) &&
            (head < 0 || s.head_start() == uint32_t(head)))
            return static_cast<int>(i);
    }
    return -1;
}

// The old file's sections and INDEX (superseded), then `added`, under a new INDEX.
RawFile AppendTo(const RawFile &old, const std::vector<RawSection> &added, uint32_t n_tokens, uint32_t dense_window,
                 const std::vector<int> &superseded_old_sections) {
    RawFile f = old;
    for (int i : superseded_old_sections) f.sections[static_cast<size_t>(i)].entry_flags |= kEntrySuperseded;
    RawSection old_index = old.index;
    old_index.entry_flags = kEntrySuperseded;
    f.sections.push_back(old_index);
    f.previous_index = static_cast<int>(f.sections.size()) - 1;
    for (const RawSection &s : added) f.sections.push_back(s);
    f.index_n_tokens = n_tokens;
    f.index_dense_window = dense_window;
    return f;
}

class AppendedFile : public ::testing::Test {
  protected:
    void SetUp() override {
        full_ = MakeRandomCache(MakeGeometry(kL, kH, kD, 72, 0), SQKV_DTYPE_FP32, 8);
        full_.has_tokens = true;
        for (int t = 0; t < 72; t++) full_.tokens.push_back(1000 + t);
        // 64 tokens, all sparse; append 6 tokens as a new dense window.
        old_ = Encode(Slice(full_, 0, 64, 0));
        grown_ = Encode(Slice(full_, 0, 70, 6));
        std::vector<RawSection> added;
        for (const RawSection &s : grown_.sections)
            if (s.kind() == kKindDense || s.kind() == kKindTokens) added.push_back(s);
        appended_ = AppendTo(old_, added, 70, 6, {Find(old_, kKindTokens)});
        old_file_ = Assemble(old_);
        file_ = Assemble(appended_);
    }
    Cache full_;
    RawFile old_, grown_, appended_;
    Bytes old_file_, file_;
};

TEST_F(AppendedFile, OldBytesAreUnchanged) {
    ASSERT_GT(file_.size(), old_file_.size());
    EXPECT_TRUE(std::equal(old_file_.begin(), old_file_.end(), file_.begin()));
    // The SPARSE sections the grown cache would have are the old file's (same tokens, same rule).
    for (const RawSection &s : grown_.sections)
        if (s.kind() == kKindSparse) {
            const int i = Find(old_, kKindSparse, s.tensor(), static_cast<int>(s.layer()), static_cast<int>(s.head_start()));
            ASSERT_GE(i, 0);
            EXPECT_EQ(old_.sections[static_cast<size_t>(i)].body, s.body);
        }
}

TEST_F(AppendedFile, DecodesAsTheGrownCache) {
    ASSERT_EQ(ErrName(DecodeEverything(file_)), ErrName(SQKV_OK));
    ReaderPtr r, expected;
    const Bytes grown_file = Assemble(grown_);  // the reader borrows the bytes
    ASSERT_EQ(OpenMemory(file_, &r), SQKV_OK);
    ASSERT_EQ(OpenMemory(grown_file, &expected), SQKV_OK);
    sqkv_geometry g;
    ASSERT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_OK);
    EXPECT_EQ(g.n_tokens, 70u) << "the INDEX's n_tokens counts (§4)";
    EXPECT_EQ(g.dense_window, 6u);
    for (uint32_t l = 0; l < kL; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            Bytes got, want;
            ASSERT_EQ(DecodeTensor(r.get(), l, t, SQKV_DTYPE_FP32, &got), SQKV_OK);
            ASSERT_EQ(DecodeTensor(expected.get(), l, t, SQKV_DTYPE_FP32, &want), SQKV_OK);
            EXPECT_EQ(got, want) << "layer " << l << " tensor " << t;
        }
    std::vector<int32_t> tokens(70);
    size_t count = 0;
    ASSERT_EQ(sqkv_reader_tokens(r.get(), tokens.data(), tokens.size(), &count), SQKV_OK);
    EXPECT_EQ(count, 70u) << "the new TOKENS section, not the superseded one";
    EXPECT_EQ(tokens, std::vector<int32_t>(full_.tokens.begin(), full_.tokens.begin() + 70));
    size_t reusable = 0;
    ASSERT_EQ(sqkv_reader_check_restore(r.get(), nullptr, nullptr, 0, full_.tokens.data(), 72, &reusable), SQKV_OK);
    EXPECT_EQ(reusable, 70u);
    // Every section, superseded ones included, is listed.
    size_t sections = 0;
    ASSERT_EQ(sqkv_reader_section_count(r.get(), &sections), SQKV_OK);
    EXPECT_EQ(sections, appended_.sections.size() + 1);
}

TEST_F(AppendedFile, SlidingWindowSupersedesTheOldWindow) {
    // Old: 64 tokens with an 8-token window (sparse [0, 56), dense [56, 64)). Append 8 tokens: the window
    // slides to [64, 72); tokens [56, 64) become a SPARSE section; the old DENSE sections are superseded.
    const RawFile old = Encode(Slice(full_, 0, 64, 8));
    const RawFile leaving = Encode(Slice(full_, 56, 64, 0));  // SPARSE [0, 8) -> relabelled [56, 64)
    const RawFile window = Encode(Slice(full_, 64, 72, 8));   // DENSE [0, 8) -> relabelled [64, 72)
    std::vector<RawSection> added;
    for (RawSection s : leaving.sections)
        if (s.kind() == kKindSparse) {
            Put32(&s.header, sec::kTokenStart, 56);
            added.push_back(s);
        }
    for (RawSection s : window.sections)
        if (s.kind() == kKindDense) {
            Put32(&s.header, sec::kTokenStart, 64);
            added.push_back(s);
        }
    RawSection tokens = old.sections[static_cast<size_t>(Find(old, kKindTokens))];
    tokens.body.assign(reinterpret_cast<const uint8_t *>(full_.tokens.data()),
                       reinterpret_cast<const uint8_t *>(full_.tokens.data() + 72));
    added.push_back(tokens);
    std::vector<int> superseded = {Find(old, kKindTokens)};
    for (size_t i = 0; i < old.sections.size(); i++)
        if (old.sections[i].kind() == kKindDense) superseded.push_back(static_cast<int>(i));
    const Bytes file = Assemble(AppendTo(old, added, 72, 8, superseded));
    ASSERT_EQ(ErrName(DecodeEverything(file)), ErrName(SQKV_OK));

    ReaderPtr r, r_old, r_leaving, r_window;
    const Bytes old_file = Assemble(old), leaving_file = Assemble(leaving), window_file = Assemble(window);
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    ASSERT_EQ(OpenMemory(old_file, &r_old), SQKV_OK);
    ASSERT_EQ(OpenMemory(leaving_file, &r_leaving), SQKV_OK);
    ASSERT_EQ(OpenMemory(window_file, &r_window), SQKV_OK);
    for (uint32_t l = 0; l < kL; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            Bytes got, a, b, c;
            ASSERT_EQ(DecodeTensor(r.get(), l, t, SQKV_DTYPE_FP32, &got), SQKV_OK);
            ASSERT_EQ(DecodeTensor(r_old.get(), l, t, SQKV_DTYPE_FP32, &a), SQKV_OK);
            ASSERT_EQ(DecodeTensor(r_leaving.get(), l, t, SQKV_DTYPE_FP32, &b), SQKV_OK);
            ASSERT_EQ(DecodeTensor(r_window.get(), l, t, SQKV_DTYPE_FP32, &c), SQKV_OK);
            const size_t row = kD * 4;
            Bytes want;
            for (uint32_t h = 0; h < kH; h++) {
                want.insert(want.end(), a.begin() + h * 64 * row, a.begin() + (h * 64 + 56) * row);
                want.insert(want.end(), b.begin() + h * 8 * row, b.begin() + (h + 1) * 8 * row);
                want.insert(want.end(), c.begin() + h * 8 * row, c.begin() + (h + 1) * 8 * row);
            }
            EXPECT_EQ(got, want) << "layer " << l << " tensor " << t;
        }
}

TEST_F(AppendedFile, InterruptedAppendIsRefusedAndTheOldPrefixStillDecodes) {
    ASSERT_EQ(ErrName(DecodeEverything(old_file_)), ErrName(SQKV_OK));
    for (size_t len = old_file_.size() + 1; len < file_.size(); len++) {
        const Bytes cut(file_.begin(), file_.begin() + len);
        const sqkv_error err = DecodeEverything(cut);
        ASSERT_TRUE(err == SQKV_ERR_BAD_TAIL || err == SQKV_ERR_TRUNCATED) << len << ": " << ErrName(err);
    }
}

TEST_F(AppendedFile, OldIndexMustBeSuperseded) {
    RawFile f = appended_;
    f.sections[static_cast<size_t>(f.previous_index)].entry_flags = 0;
    EXPECT_ERR(Assemble(f), SQKV_ERR_COVERAGE);
}

TEST_F(AppendedFile, ReplacedTokensMustBeSuperseded) {
    RawFile f = appended_;
    f.sections[static_cast<size_t>(Find(f, kKindTokens))].entry_flags = 0;
    EXPECT_ERR(Assemble(f), SQKV_ERR_DUPLICATE_SECTION);
}

TEST_F(AppendedFile, SupersedingANeededSectionLeavesAGap) {
    RawFile f = appended_;
    f.sections[static_cast<size_t>(Find(f, kKindSparse, 1, 1, 0))].entry_flags = kEntrySuperseded;
    EXPECT_ERR(Assemble(f), SQKV_ERR_COVERAGE);
}

TEST_F(AppendedFile, NewSectionsMustCoverTheGrownTokens) {
    RawFile f = appended_;
    f.index_n_tokens = 71;  // one token that no section holds
    f.index_dense_window = 7;
    EXPECT_ERR(Assemble(f), SQKV_ERR_COVERAGE);
}

TEST_F(AppendedFile, PreviousIndexOffsetMustPointAtAListedIndex) {
    RawFile f = appended_;
    f.previous_index = Find(f, kKindSparse);  // a SPARSE section, not an INDEX
    EXPECT_ERR(Assemble(f), SQKV_ERR_SECTION_LAYOUT);
    // An offset that is no section's.
    Bytes file = Assemble(appended_);
    const size_t index_at = SectionOffsets(file).back();
    Put64(&file, index_at + 64 + 8, Get64(file, index_at + 64 + 8) + 8);
    FixSectionChecksums(&file, index_at);
    EXPECT_ERR(file, SQKV_ERR_SECTION_LAYOUT);
}

TEST_F(AppendedFile, SupersededEntriesNeedAPreviousIndex) {
    // previous_index_offset 0: a file that was never appended to has no superseded entry (§9.1).
    RawFile f = old_;
    f.sections[0].entry_flags = kEntrySuperseded;
    EXPECT_ERR(Assemble(f), SQKV_ERR_COVERAGE);
}

TEST_F(AppendedFile, SupersededSectionsAreStillVerified) {
    Bytes file = file_;
    const size_t tokens_at = SectionOffsets(file)[static_cast<size_t>(Find(old_, kKindTokens))];
    file[tokens_at + 64 + 5] ^= 0x01;  // body of the superseded TOKENS, checksum not fixed
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    EXPECT_EQ(ErrName(sqkv_reader_verify(r.get())), ErrName(SQKV_ERR_SECTION_CHECKSUM));
}

TEST_F(AppendedFile, SupersededSectionsKeepTheirOwnRules) {
    // §9.1: a superseded TOKENS section must still hold a whole number of ids, but not n_tokens of them.
    const int tokens = Find(appended_, kKindTokens);
    RawFile whole = appended_;
    whole.sections[static_cast<size_t>(tokens)].body.resize(4 * 63);
    // The TOKENS section itself is fine, but the old INDEX section still lists its former size: an old
    // index must describe the same sections as the current one (§9.1), found when it is verified.
    EXPECT_ERR(Assemble(whole), SQKV_ERR_INDEX_MISMATCH);
    RawFile partial = appended_;
    partial.sections[static_cast<size_t>(tokens)].body.resize(4 * 63 + 2);
    EXPECT_ERR(Assemble(partial), SQKV_ERR_TOKENS_COUNT);
    // A superseded SPARSE section is checked by its body rules too: supersede one, append an identical
    // active copy (coverage stays intact), and break the superseded one's offset table.
    RawFile bad = appended_;
    const size_t old_sparse = static_cast<size_t>(Find(bad, kKindSparse, 0, 0, 0));
    RawSection copy = bad.sections[old_sparse];
    bad.sections.push_back(copy);
    RawSection &superseded = bad.sections[old_sparse];
    superseded.entry_flags = kEntrySuperseded;
    const SparseStreams l = SparseLayout(superseded, kD);
    Put32(&superseded.body, l.offsets_at + 4, Get32(superseded.body, l.offsets_at + 4) + 1);
    EXPECT_ERR(Assemble(bad), SQKV_ERR_OFFSET_MISMATCH);
}

TEST_F(AppendedFile, HeaderKeepsTheOriginalGeometry) {
    // The header says 64 tokens (as first written); the INDEX says 70. An INDEX n_tokens below the
    // header's is SECTION_FIELD (§5.2).
    RawFile f = appended_;
    f.index_n_tokens = 63;
    f.index_dense_window = 0;
    EXPECT_ERR(Assemble(f), SQKV_ERR_SECTION_FIELD);
    EXPECT_EQ(Get32(file_, hdr::kTokens), 64u);
}

}  // namespace
