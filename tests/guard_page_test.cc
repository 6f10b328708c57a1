// guard_page_test: decoding with input and output buffers that end exactly at (or start right after) a
// page made inaccessible with mprotect(PROT_NONE), so that a read or write one byte out of bounds
// faults in any build, sanitizers or not. Valid files of several geometries and options are decoded
// through every public output call; truncated and corrupted files are opened at the page edge; short
// output buffers must be refused before a byte is written past them.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sqkv.h"
#include "support/test_util.h"

namespace {

using sqkv_test::Bytes;
using sqkv_test::ReaderPtr;

// `size` usable bytes placed against an inaccessible page: at its end (kEnd: the last usable byte is
// the one just before the guard) or at its start (kStart: the first usable byte is just after it).
class GuardedBuffer {
  public:
    enum Edge { kEnd, kStart };

    GuardedBuffer(size_t size, Edge edge) : size_(size) {
        const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        const size_t data_pages = (size + page - 1) / page;
        map_size_ = (data_pages + 1) * page;
        void *m = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            ADD_FAILURE() << "mmap failed";
            return;
        }
        map_ = static_cast<uint8_t *>(m);
        if (edge == kEnd) {
            uint8_t *guard = map_ + data_pages * page;
            EXPECT_EQ(0, mprotect(guard, page, PROT_NONE));
            data_ = guard - size;
        } else {
            EXPECT_EQ(0, mprotect(map_, page, PROT_NONE));
            data_ = map_ + page;
        }
    }
    ~GuardedBuffer() {
        if (map_) munmap(map_, map_size_);
    }
    GuardedBuffer(const GuardedBuffer &) = delete;
    GuardedBuffer &operator=(const GuardedBuffer &) = delete;

    uint8_t *data() { return data_; }
    size_t size() const { return size_; }
    // An empty buffer still gets a valid (guard-adjacent) pointer.
    void Fill(const Bytes &b) {
        if (!b.empty()) std::memcpy(data_, b.data(), b.size());
    }
    Bytes Copy() const { return Bytes(data_, data_ + size_); }

  private:
    uint8_t *map_ = nullptr;
    uint8_t *data_ = nullptr;
    size_t map_size_ = 0, size_;
};

struct Case {
    const char *name;
    uint32_t layers, heads, dim, tokens, window;
    sqkv_dtype value_dtype;
    uint32_t bits;
    sqkv_quantizer quantizer;
    sqkv_scale_granularity scales;
    uint32_t k, heads_per_section, tokens_per_section;
    bool ancillary;
};

const Case kCases[] = {
    {"tiny_exact", 1, 1, 1, 1, 0, SQKV_DTYPE_FP16, 16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0, 1, 0, false},
    {"sym2_head_ragged", 2, 2, 65, 130, 3, SQKV_DTYPE_FP16, 2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 4, 1, 0, true},
    {"sym4_tile_split", 1, 3, 33, 200, 5, SQKV_DTYPE_BF16, 4, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 1, 2, 64, true},
    {"asym8_tile", 1, 1, 130, 70, 0, SQKV_DTYPE_BF16, 8, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 20, 1, 0, false},
    {"asym2_head_odd", 3, 1, 7, 9, 2, SQKV_DTYPE_FP16, 2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, 0, 1, 0, true},
    {"dense_only", 1, 2, 64, 64, 64, SQKV_DTYPE_FP16, 16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 4, 1, 0, false},
};

Bytes Encode(const Case &c) {
    sqkv_geometry g = sqkv_test::MakeGeometry(c.layers, c.heads, c.dim, c.tokens, c.window, c.value_dtype);
    sqkv_test::Cache cache = sqkv_test::MakeRandomCache(g, SQKV_DTYPE_FP32, 0xC0FFEE + c.dim);
    if (c.ancillary) {
        cache.has_tokens = true;
        cache.tokens.assign(c.tokens, 0);
        for (uint32_t i = 0; i < c.tokens; i++) cache.tokens[i] = static_cast<int32_t>(i * 7919u);
        cache.fingerprint = Bytes(32, 0xAB);
        cache.metadata = {{"a", "1"}, {"model", "m\xC3\xA9"}};
    }
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = c.bits;
    o.quantizer = c.quantizer;
    o.scales = c.scales;
    o.offset_interval_log2 = c.k;
    o.heads_per_section = c.heads_per_section;
    o.tokens_per_section = c.tokens_per_section;
    Bytes file;
    std::string detail;
    const sqkv_error err = sqkv_test::EncodeCache(cache, o, &file, &detail);
    EXPECT_EQ(SQKV_OK, err) << c.name << ": " << detail;
    return file;
}

ReaderPtr Open(const uint8_t *data, size_t size, sqkv_error *err, unsigned flags = 0) {
    sqkv_reader *raw = nullptr;
    EXPECT_EQ(SQKV_OK, sqkv_reader_create(nullptr, flags, &raw));
    ReaderPtr r(raw);
    *err = sqkv_reader_open_memory(r.get(), data, size);
    return r;
}

// Everything a reader can output, each into a buffer of exactly the announced size that touches a
// guard page; the results must equal decodes into ordinary buffers.
void DecodeAllGuarded(const Bytes &file, GuardedBuffer::Edge edge, unsigned flags) {
    GuardedBuffer in(file.size(), edge);
    in.Fill(file);
    sqkv_error err;
    ReaderPtr r = Open(in.data(), in.size(), &err, flags);
    ASSERT_EQ(SQKV_OK, err) << sqkv_reader_error_detail(r.get());
    ASSERT_EQ(SQKV_OK, sqkv_reader_verify(r.get())) << sqkv_reader_error_detail(r.get());
    ReaderPtr plain = Open(file.data(), file.size(), &err);
    ASSERT_EQ(SQKV_OK, err);
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(r.get(), &g));

    for (uint32_t layer = 0; layer < g.n_layers; layer++) {
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            for (sqkv_dtype dt : {g.value_dtype, SQKV_DTYPE_FP32}) {
                // All heads, then the last head alone (its data ends where the section ends).
                for (uint32_t head_start : {0u, g.n_kv_heads - 1}) {
                    const uint32_t count = g.n_kv_heads - head_start;
                    const size_t need = sqkv_dense_size(count, g.n_tokens, g.head_dim, dt);
                    GuardedBuffer out(need, edge);
                    ASSERT_EQ(SQKV_OK, sqkv_reader_decode(r.get(), layer, t, head_start, count, dt, out.data(), need))
                        << sqkv_reader_error_detail(r.get());
                    Bytes expect(need);
                    ASSERT_EQ(SQKV_OK,
                              sqkv_reader_decode(plain.get(), layer, t, head_start, count, dt, expect.data(), need));
                    EXPECT_EQ(expect, out.Copy()) << "layer " << layer << " tensor " << t << " dtype " << dt;
                }
            }
            if (g.n_tokens == g.dense_window) continue;  // no sparse region: no Mustafar layout
            const uint32_t head = g.n_kv_heads - 1;
            sqkv_mustafar_sizes sizes;
            ASSERT_EQ(SQKV_OK, sqkv_reader_mustafar_sizes(r.get(), layer, t, head, &sizes));
            GuardedBuffer bitmaps(8 * sizes.n_tiles, edge), accum(4 * (sizes.n_tiles + 1), edge),
                values(2 * sizes.value_count, edge);
            ASSERT_EQ(SQKV_OK, sqkv_reader_decode_mustafar(r.get(), layer, t, head,
                                                           reinterpret_cast<int64_t *>(bitmaps.data()),
                                                           reinterpret_cast<int32_t *>(accum.data()),
                                                           reinterpret_cast<uint16_t *>(values.data()), &sizes))
                << sqkv_reader_error_detail(r.get());
        }
    }
    size_t count = 0;
    ASSERT_EQ(SQKV_OK, sqkv_reader_tokens(r.get(), nullptr, 0, &count));
    if (count) {
        GuardedBuffer tokens(count * 4, edge);
        size_t got = 0;
        ASSERT_EQ(SQKV_OK, sqkv_reader_tokens(r.get(), reinterpret_cast<int32_t *>(tokens.data()), count, &got));
        EXPECT_EQ(count, got);
    }
    size_t fp_size = 0;
    ASSERT_EQ(SQKV_OK, sqkv_reader_fingerprint(r.get(), nullptr, 0, &fp_size));
    if (fp_size) {
        GuardedBuffer fp(fp_size, edge);
        size_t got = 0;
        ASSERT_EQ(SQKV_OK, sqkv_reader_fingerprint(r.get(), fp.data(), fp_size, &got));
        EXPECT_EQ(fp_size, got);
    }
    size_t n_meta = 0;
    ASSERT_EQ(SQKV_OK, sqkv_reader_metadata_count(r.get(), &n_meta));
    for (size_t i = 0; i < n_meta; i++) {
        const char *key, *value;
        size_t ks, vs;
        ASSERT_EQ(SQKV_OK, sqkv_reader_metadata_entry(r.get(), i, &key, &ks, &value, &vs));
        // The pointers lie inside the guarded input: reading them all must not fault.
        volatile uint8_t sink = 0;
        for (size_t j = 0; j < ks; j++) sink = sink ^ static_cast<uint8_t>(key[j]);
        for (size_t j = 0; j < vs; j++) sink = sink ^ static_cast<uint8_t>(value[j]);
    }
}

class GuardPageTest : public ::testing::TestWithParam<Case> {};

TEST_P(GuardPageTest, DecodesEverythingAgainstTheEndOfBothBuffers) {
    const Bytes file = Encode(GetParam());
    ASSERT_FALSE(file.empty());
    DecodeAllGuarded(file, GuardedBuffer::kEnd, 0);
    DecodeAllGuarded(file, GuardedBuffer::kEnd, SQKV_READER_TRUSTED);
}

TEST_P(GuardPageTest, DecodesEverythingRightAfterAGuardPage) {
    const Bytes file = Encode(GetParam());
    ASSERT_FALSE(file.empty());
    DecodeAllGuarded(file, GuardedBuffer::kStart, 0);
}

// Every prefix of the file, ending at the guard page: open (and verify and decode, where open
// accepts a prefix, which it must not) never touches a byte past the prefix.
TEST_P(GuardPageTest, TruncatedFilesEndingAtTheGuardAreRefused) {
    const Bytes file = Encode(GetParam());
    ASSERT_FALSE(file.empty());
    const size_t step = file.size() > 4096 ? 7 : 1;
    for (size_t len = 0; len < file.size(); len += step) {
        GuardedBuffer in(len, GuardedBuffer::kEnd);
        in.Fill(Bytes(file.begin(), file.begin() + static_cast<long>(len)));
        sqkv_error err;
        ReaderPtr r = Open(in.data(), len, &err);
        EXPECT_NE(SQKV_OK, err) << "a " << len << "-byte prefix of a " << file.size() << "-byte file opened";
    }
}

// Files whose tail, index or section sizes point past the end: the guard page sits right after the
// last byte the file has, so reading what those fields promise would fault.
TEST_P(GuardPageTest, LengthFieldsPointingPastTheEndFaultNothing) {
    const Bytes file = Encode(GetParam());
    ASSERT_FALSE(file.empty());
    const size_t tail = file.size() - 16;  // §9: the INDEX body ends with the tail
    size_t index_at = 0;
    for (int b = 0; b < 8; b++) index_at |= static_cast<size_t>(file[tail + b]) << (8 * b);
    ASSERT_LT(index_at, file.size());
    const std::vector<size_t> fields = {
        tail,             // the tail's INDEX offset
        index_at + 32,    // the INDEX section's stored_size
        index_at + 40,    // and decoded_size
        64 + 32,          // the first section's stored_size
        index_at + 64 + 16 + 8,  // the first index entry's stored_size
    };
    for (size_t at : fields) {
        for (uint64_t value : {uint64_t{file.size()}, uint64_t{file.size() - 8}, ~uint64_t{0}, uint64_t{1} << 40}) {
            Bytes bad = file;
            for (int b = 0; b < 8 && at + b < bad.size(); b++) bad[at + b] = static_cast<uint8_t>(value >> (8 * b));
            GuardedBuffer in(bad.size(), GuardedBuffer::kEnd);
            in.Fill(bad);
            sqkv_error err;
            ReaderPtr r = Open(in.data(), in.size(), &err);
            if (err == SQKV_OK) err = sqkv_reader_verify(r.get());
            EXPECT_NE(SQKV_OK, err) << "field at " << at << " set to " << value;
        }
    }
}

// A buffer one element (or one byte) too small that ends at the guard page: the call must refuse it
// with BUFFER_TOO_SMALL, having written nothing past it (a write would fault).
TEST_P(GuardPageTest, ShortOutputBuffersAreRefusedWithoutWritingPastThem) {
    const Bytes file = Encode(GetParam());
    ASSERT_FALSE(file.empty());
    sqkv_error err;
    ReaderPtr probe = Open(file.data(), file.size(), &err);
    ASSERT_EQ(SQKV_OK, err);
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(probe.get(), &g));
    for (sqkv_dtype dt : {SQKV_DTYPE_FP16, SQKV_DTYPE_FP32}) {
        const size_t need = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, dt);
        for (size_t short_by : {size_t{1}, size_t{2}, size_t{4}, need}) {
            if (short_by > need) continue;
            const size_t have = need - short_by;
            GuardedBuffer out(have, GuardedBuffer::kEnd);
            ReaderPtr r = Open(file.data(), file.size(), &err);  // errors are sticky: a fresh reader
            EXPECT_EQ(SQKV_ERR_BUFFER_TOO_SMALL,
                      sqkv_reader_decode(r.get(), 0, SQKV_TENSOR_V, 0, g.n_kv_heads, dt, out.data(), have))
                << "need " << need << ", have " << have;
        }
    }
    size_t count = 0;
    ASSERT_EQ(SQKV_OK, sqkv_reader_tokens(probe.get(), nullptr, 0, &count));
    if (count) {
        GuardedBuffer tokens((count - 1) * 4, GuardedBuffer::kEnd);
        ReaderPtr r = Open(file.data(), file.size(), &err);
        size_t got = 0;
        EXPECT_EQ(SQKV_ERR_BUFFER_TOO_SMALL,
                  sqkv_reader_tokens(r.get(), reinterpret_cast<int32_t *>(tokens.data()), count - 1, &got));
    }
    if (g.n_tokens != g.dense_window) {
        sqkv_mustafar_sizes sizes;
        ASSERT_EQ(SQKV_OK, sqkv_reader_mustafar_sizes(probe.get(), 0, SQKV_TENSOR_K, 0, &sizes));
        sqkv_mustafar_sizes fewer = sizes;
        fewer.value_count -= 1;
        GuardedBuffer bitmaps(8 * sizes.n_tiles, GuardedBuffer::kEnd), accum(4 * (sizes.n_tiles + 1), GuardedBuffer::kEnd),
            values(2 * fewer.value_count, GuardedBuffer::kEnd);
        ReaderPtr r = Open(file.data(), file.size(), &err);
        const sqkv_error got = sqkv_reader_decode_mustafar(r.get(), 0, SQKV_TENSOR_K, 0,
                                                           reinterpret_cast<int64_t *>(bitmaps.data()),
                                                           reinterpret_cast<int32_t *>(accum.data()),
                                                           reinterpret_cast<uint16_t *>(values.data()), &fewer);
        EXPECT_TRUE(got == SQKV_ERR_BUFFER_TOO_SMALL || got == SQKV_ERR_INVALID_ARGUMENT) << sqkv_error_name(got);
    }
}

INSTANTIATE_TEST_SUITE_P(Files, GuardPageTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case> &info) { return std::string(info.param.name); });

}  // namespace
