// test_util.cc: see test_util.h.
#include "test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sqkv_test {

uint64_t SplitMix64::Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

sqkv_geometry MakeGeometry(uint32_t layers, uint32_t heads, uint32_t head_dim, uint32_t tokens,
                           uint32_t dense_window, sqkv_dtype value_dtype) {
    sqkv_geometry g{};
    g.n_layers = layers;
    g.n_kv_heads = heads;
    g.head_dim = head_dim;
    g.n_tokens = tokens;
    g.dense_window = dense_window;
    g.value_dtype = value_dtype;
    g.source_dtype = SQKV_DTYPE_FP32;
    return g;
}

size_t DtypeSize(sqkv_dtype dtype) { return dtype == SQKV_DTYPE_FP32 ? 4 : 2; }

namespace {

void StoreElement(double x, sqkv_dtype dtype, uint8_t *p) {
    if (dtype == SQKV_DTYPE_FP32) {
        const float f = static_cast<float>(x);  // callers pass values exact in fp32
        uint32_t u;
        std::memcpy(&u, &f, sizeof u);
        for (int k = 0; k < 4; k++) p[k] = static_cast<uint8_t>(u >> (8 * k));
        return;
    }
    const uint16_t h = dtype == SQKV_DTYPE_BF16 ? refm::DoubleToBf16(x) : refm::DoubleToFp16(x);
    p[0] = static_cast<uint8_t>(h);
    p[1] = static_cast<uint8_t>(h >> 8);
}

Bytes RandomTensor(SplitMix64 *rng, const sqkv_geometry &g, sqkv_dtype dtype) {
    const size_t width = DtypeSize(dtype);
    Bytes out(static_cast<size_t>(g.n_kv_heads) * g.n_tokens * g.head_dim * width);
    size_t i = 0;
    for (uint32_t h = 0; h < g.n_kv_heads; h++)
        for (uint32_t t = 0; t < g.n_tokens; t++)
            for (uint32_t d = 0; d < g.head_dim; d++, i++) {
                const uint64_t r = rng->Next();
                double x = 0;
                if ((r & 15u) != 0) {
                    const int64_t mantissa = static_cast<int64_t>(r >> 40) - (int64_t{1} << 23);
                    x = std::ldexp(static_cast<double>(mantissa), -25 + static_cast<int>((3 * h + 7 * d) % 9));
                }
                StoreElement(x, dtype, out.data() + i * width);
            }
    return out;
}

}  // namespace

Cache MakeRandomCache(const sqkv_geometry &g, sqkv_dtype input_dtype, uint64_t seed) {
    Cache c;
    c.geometry = g;
    c.input_dtype = input_dtype;
    SplitMix64 rng(seed);
    for (uint32_t l = 0; l < g.n_layers; l++) {
        c.k.push_back(RandomTensor(&rng, g, input_dtype));
        c.v.push_back(RandomTensor(&rng, g, input_dtype));
    }
    return c;
}

sqkv_error EncodeCache(const Cache &cache, const sqkv_writer_options &opts, Bytes *file, std::string *detail) {
    sqkv_writer *raw = nullptr;
    sqkv_error err = sqkv_writer_create(&cache.geometry, &opts, &raw);
    if (err != SQKV_OK) {
        if (detail) *detail = "create";
        return err;
    }
    WriterPtr w(raw);
    auto fail = [&](sqkv_error e) {
        if (detail) *detail = sqkv_writer_error_detail(w.get());
        return e;
    };
    if (cache.has_tokens && (err = sqkv_writer_set_tokens(w.get(), cache.tokens.data(), cache.tokens.size())))
        return fail(err);
    if (!cache.fingerprint.empty() &&
        (err = sqkv_writer_set_fingerprint(w.get(), cache.fingerprint.data(), cache.fingerprint.size())))
        return fail(err);
    for (const auto &kv : cache.metadata)
        if ((err = sqkv_writer_add_metadata(w.get(), kv.first.data(), kv.first.size(), kv.second.data(),
                                            kv.second.size())))
            return fail(err);
    for (uint32_t l = 0; l < cache.geometry.n_layers; l++)
        if ((err = sqkv_writer_add_layer(w.get(), l, cache.input_dtype, cache.k[l].data(), cache.v[l].data())))
            return fail(err);
    uint64_t size = 0;
    if ((err = sqkv_writer_file_size(w.get(), &size))) return fail(err);
    file->assign(size, 0);
    size_t written = 0;
    if ((err = sqkv_writer_write_buffer(w.get(), file->data(), file->size(), &written))) return fail(err);
    if (written != size) {
        if (detail) *detail = "write_buffer wrote a size other than file_size";
        return SQKV_ERR_IO;
    }
    return SQKV_OK;
}

sqkv_error OpenMemory(const Bytes &file, ReaderPtr *reader, const sqkv_limits *limits, unsigned flags) {
    reader->reset();
    sqkv_reader *raw = nullptr;
    sqkv_error err = sqkv_reader_create(limits, flags, &raw);
    if (err != SQKV_OK) return err;
    ReaderPtr r(raw);
    err = sqkv_reader_open_memory(r.get(), file.data(), file.size());
    if (err != SQKV_OK) return err;
    *reader = std::move(r);
    return SQKV_OK;
}

sqkv_error DecodeTensor(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, sqkv_dtype dtype, Bytes *out) {
    sqkv_geometry g;
    sqkv_error err = sqkv_reader_geometry(r, &g);
    if (err != SQKV_OK) return err;
    const uint64_t size = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, dtype);
    out->assign(size, 0xA5);  // not zero: a decoder that skips an element must be caught
    return sqkv_reader_decode(r, layer, tensor, 0, g.n_kv_heads, dtype, out->data(), out->size());
}

sqkv_error DecodeEverything(const Bytes &file) {
    // A copy in its own allocation: ASan then flags any read past the end of the file's bytes.
    std::unique_ptr<uint8_t[]> copy(new uint8_t[file.size() ? file.size() : 1]);
    if (!file.empty()) std::memcpy(copy.get(), file.data(), file.size());
    sqkv_reader *raw = nullptr;
    sqkv_error err = sqkv_reader_create(nullptr, 0, &raw);
    if (err != SQKV_OK) return err;
    ReaderPtr r(raw);
    if ((err = sqkv_reader_open_memory(r.get(), copy.get(), file.size()))) return err;
    if ((err = sqkv_reader_verify(r.get()))) return err;
    sqkv_geometry g;
    if ((err = sqkv_reader_geometry(r.get(), &g))) return err;
    Bytes out;
    size_t count = 0;
    if ((err = sqkv_reader_tokens(r.get(), nullptr, 0, &count))) return err;
    if ((err = sqkv_reader_fingerprint(r.get(), nullptr, 0, &count))) return err;
    if ((err = sqkv_reader_metadata_count(r.get(), &count))) return err;
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V})
            for (sqkv_dtype d : {SQKV_DTYPE_FP32, SQKV_DTYPE_BF16})
                if ((err = DecodeTensor(r.get(), l, t, d, &out))) return err;
    // Decoding to fp16 last: for bf16 files it may fail with VALUE on valid data (beyond fp16's range),
    // and errors are sticky.
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            err = DecodeTensor(r.get(), l, t, SQKV_DTYPE_FP16, &out);
            if (err == SQKV_ERR_VALUE && g.value_dtype == SQKV_DTYPE_BF16) return SQKV_OK;
            if (err) return err;
        }
    return SQKV_OK;
}

refm::Options ToRefOptions(const sqkv_writer_options &opts) {
    refm::Options o;
    o.prune = opts.prune == SQKV_PRUNE_MAGNITUDE;
    o.keep_all = opts.prune == SQKV_PRUNE_KEEP_ALL;
    o.sparsity = opts.sparsity;
    o.bits = opts.payload_bits;
    o.quantizer = opts.quantizer;
    o.granularity = opts.scales;
    o.heads_per_section = opts.heads_per_section;
    o.tokens_per_section = opts.tokens_per_section;
    o.offset_interval_log2 = opts.offset_interval_log2;
    o.zstd_level = opts.zstd_level;
    return o;
}

refm::Shape ToRefShape(const sqkv_geometry &g) {
    refm::Shape s;
    s.heads = g.n_kv_heads;
    s.tokens = g.n_tokens;
    s.head_dim = g.head_dim;
    s.dense_window = g.dense_window;
    s.e = g.value_dtype;
    return s;
}

ReferenceCache ReferenceFor(const Cache &cache, const sqkv_writer_options &opts) {
    ReferenceCache out;
    const refm::Shape shape = ToRefShape(cache.geometry);
    const refm::Options o = ToRefOptions(opts);
    const size_t count = static_cast<size_t>(shape.heads) * shape.tokens * shape.head_dim;
    for (uint32_t l = 0; l < cache.geometry.n_layers; l++) {
        std::vector<uint16_t> k, v;
        if (refm::ConvertInput(cache.k[l].data(), count, cache.input_dtype, shape.e, &k) != refm::InputVerdict::kOk ||
            refm::ConvertInput(cache.v[l].data(), count, cache.input_dtype, shape.e, &v) != refm::InputVerdict::kOk)
            return ReferenceCache{};
        out.k.push_back(refm::EncodeDecode(shape, o, SQKV_TENSOR_K, k));
        out.v.push_back(refm::EncodeDecode(shape, o, SQKV_TENSOR_V, v));
    }
    return out;
}

long long FirstDifference(const Bytes &a, const Bytes &b, size_t width) {
    if (a.size() != b.size()) return 0;
    if (std::memcmp(a.data(), b.data(), a.size()) == 0) return -1;
    for (size_t i = 0; i < a.size(); i += width)
        if (std::memcmp(a.data() + i, b.data() + i, width) != 0) return static_cast<long long>(i / width);
    return -1;
}

uint64_t Xxh3(const void *data, size_t size) { return static_cast<uint64_t>(XXH3_64bits(data, size)); }

bool ReadFile(const std::string &path, Bytes *out) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    out->clear();
    uint8_t buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->insert(out->end(), buf, buf + n);
    const bool ok = !std::ferror(f);
    std::fclose(f);
    return ok;
}

bool WriteFile(const std::string &path, const Bytes &data) {
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
    return std::fclose(f) == 0 && ok;
}

bool FileExists(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

std::string VectorsDir() {
    const char *env = std::getenv("SQKV_TEST_VECTORS");
    return env && *env ? env : "tests/vectors";
}

std::string SpecDocPath(const std::string &name) {
    const char *env = std::getenv("SQKV_SPEC_DIR");
    if (env && *env) return std::string(env) + "/" + name;
    if (FileExists("spec/" + name)) return "spec/" + name;
    for (const std::string &file : ListDir(VectorsDir())) {
        char *real = realpath((VectorsDir() + "/" + file).c_str(), nullptr);
        if (!real) continue;
        std::string path = real;
        std::free(real);
        for (int up = 0; up < 3; up++) path = path.substr(0, path.rfind('/'));  // <repo>/tests/vectors/file
        if (FileExists(path + "/spec/" + name)) return path + "/spec/" + name;
    }
    return "";
}

std::string MakeTempDir(const std::string &tag) {
    const char *base = std::getenv("TEST_TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/sqkv_" + tag + "_XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) return "";
    return std::string(buf.data());
}

std::vector<std::string> ListDir(const std::string &dir) {
    std::vector<std::string> names;
    DIR *d = opendir(dir.c_str());
    if (!d) return names;
    while (struct dirent *e = readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(name);
    }
    closedir(d);
    return names;
}

void RemoveTree(const std::string &dir) {
    for (const std::string &name : ListDir(dir)) {
        const std::string path = dir + "/" + name;
        struct stat st;
        if (lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(path.c_str(), 0700);
            RemoveTree(path);
        } else {
            unlink(path.c_str());
        }
    }
    rmdir(dir.c_str());
}

std::string ErrName(sqkv_error e) { return sqkv_error_name(e); }

sqkv_writer_options TestOptions(uint32_t bits, sqkv_quantizer q, sqkv_scale_granularity g, sqkv_prune_mode prune,
                                uint32_t zstd) {
    sqkv_writer_options o{};
    o.prune = prune;
    o.sparsity = 0.6;
    o.payload_bits = bits;
    o.quantizer = q;
    o.scales = g;
    o.offset_interval_log2 = 2;
    o.heads_per_section = 1;
    o.tokens_per_section = 0;
    o.zstd_level = zstd;
    return o;
}

}  // namespace sqkv_test
