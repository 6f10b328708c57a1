// crashers_test: every input that ever crashed a decoder or was handled wrongly, plus hand-made hostile
// files (fuzz/hostile_files.h), kept as regression tests with the error each must give.
//
// tests/crashers/sqkv/NAME.sqkv is listed in tests/crashers/sqkv.expected (hand-made hostile files) or
// tests/crashers/sqkv.found (fuzzer finds) as "NAME EXPECTED WHY...",
// EXPECTED being an error name or several joined by '|' (where the spec lets more than one rule apply).
// Each file is run through the public API as a loader would: open, verify, decode every (layer, tensor)
// in the element type and fp32, tokens, fingerprint, metadata, then the Mustafar layout of every head.
// The first error is the file's result. The other fuzz harnesses' regression inputs
// (tests/crashers/NAME_fuzzer/) are replayed by scripts/fuzz.sh; the encoder's are below as API calls.
#include <dirent.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sqkv.h"

namespace {

std::string CrashersDir() {
    const char *env = std::getenv("SQKV_CRASHERS");
    return env ? env : "tests/crashers";
}

std::vector<uint8_t> ReadAll(const std::string &path, bool *ok) {
    std::ifstream in(path, std::ios::binary);
    *ok = static_cast<bool>(in);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The first error a loader meets, or SQKV_OK.
sqkv_error RunLoader(const std::vector<uint8_t> &file) {
    // Own allocation of the exact size: under ASan a read past the end is a report, not luck.
    std::unique_ptr<uint8_t[]> bytes(new uint8_t[file.empty() ? 1 : file.size()]);
    if (!file.empty()) std::memcpy(bytes.get(), file.data(), file.size());
    sqkv_reader *r = nullptr;
    sqkv_error err = sqkv_reader_create(nullptr, 0, &r);
    if (err != SQKV_OK) return err;
    std::unique_ptr<sqkv_reader, void (*)(sqkv_reader *)> guard(r, sqkv_reader_destroy);
    sqkv_geometry g;
    if ((err = sqkv_reader_open_memory(r, bytes.get(), file.size()))) return err;
    if ((err = sqkv_reader_verify(r))) return err;
    if ((err = sqkv_reader_geometry(r, &g))) return err;
    for (uint32_t layer = 0; layer < g.n_layers; layer++) {
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            for (sqkv_dtype dt : {g.value_dtype, SQKV_DTYPE_FP32}) {
                const uint64_t need = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, dt);
                if (need == 0 || need > (uint64_t{1} << 30)) return SQKV_ERR_LIMIT;  // not a loader's cache
                std::vector<uint8_t> out(static_cast<size_t>(need));
                if ((err = sqkv_reader_decode(r, layer, t, 0, g.n_kv_heads, dt, out.data(), out.size()))) return err;
            }
        }
    }
    size_t count = 0;
    if ((err = sqkv_reader_tokens(r, nullptr, 0, &count))) return err;
    if (count) {
        std::vector<int32_t> tokens(count);
        if ((err = sqkv_reader_tokens(r, tokens.data(), count, &count))) return err;
    }
    uint8_t fp[4096];
    if ((err = sqkv_reader_fingerprint(r, fp, sizeof fp, &count))) return err;
    if ((err = sqkv_reader_metadata_count(r, &count))) return err;
    for (size_t i = 0; i < count; i++) {
        const char *key, *value;
        size_t ks, vs;
        if ((err = sqkv_reader_metadata_entry(r, i, &key, &ks, &value, &vs))) return err;
    }
    // The Mustafar layout last: UNSUPPORTED (a split not on a 64-token boundary, no sparse region) is a
    // refusal of the request, not of the file, and errors are sticky.
    for (uint32_t layer = 0; layer < g.n_layers; layer++) {
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            for (uint32_t head = 0; head < g.n_kv_heads; head++) {
                sqkv_mustafar_sizes sizes;
                err = sqkv_reader_mustafar_sizes(r, layer, t, head, &sizes);
                if (err == SQKV_ERR_UNSUPPORTED) return SQKV_OK;
                if (err) return err;
                std::vector<int64_t> bitmaps(sizes.n_tiles);
                std::vector<int32_t> accum(sizes.n_tiles + 1);
                std::vector<uint16_t> values(sizes.value_count);
                if ((err = sqkv_reader_decode_mustafar(r, layer, t, head, bitmaps.data(), accum.data(), values.data(),
                                                       &sizes)))
                    return err;
            }
        }
    }
    return SQKV_OK;
}

struct Expected {
    std::set<std::string> errors;
    std::string why;
};

// Reads NAME EXPECTED WHY lines of the manifests into out.
void ReadManifestInto(const std::string &path, std::map<std::string, Expected> *out_map) {
    std::map<std::string, Expected> &out = *out_map;
    std::ifstream in(path);
    EXPECT_TRUE(in) << "cannot read " << path << " (is tests/crashers in the test's data?)";
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        std::string name, errors;
        fields >> name >> errors;
        Expected e;
        std::getline(fields, e.why);
        std::stringstream alternatives(errors);
        std::string one;
        while (std::getline(alternatives, one, '|')) e.errors.insert(one);
        EXPECT_TRUE(out.emplace(name, e).second) << "listed twice: " << name;
    }
}

// sqkv.expected: the hand-made hostile files (written by make_corpus --crashers); sqkv.found: fuzzer
// finds, added by hand.
std::map<std::string, Expected> ReadManifest() {
    std::map<std::string, Expected> out;
    ReadManifestInto(CrashersDir() + "/sqkv.expected", &out);
    ReadManifestInto(CrashersDir() + "/sqkv.found", &out);
    return out;
}

std::vector<std::string> ListSqkv(const std::string &dir) {
    std::vector<std::string> names;
    DIR *d = opendir(dir.c_str());
    if (!d) return names;
    while (dirent *e = readdir(d)) {
        const std::string n = e->d_name;
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".sqkv") == 0) names.push_back(n.substr(0, n.size() - 5));
    }
    closedir(d);
    return names;
}

TEST(Crashers, EveryFileIsListedAndEveryListedFileExists) {
    const auto manifest = ReadManifest();
    const auto files = ListSqkv(CrashersDir() + "/sqkv");
    ASSERT_FALSE(files.empty()) << "no regression inputs found in " << CrashersDir() << "/sqkv";
    for (const auto &n : files) EXPECT_TRUE(manifest.count(n)) << n << ".sqkv has no line in sqkv.expected";
    const std::set<std::string> present(files.begin(), files.end());
    for (const auto &m : manifest) EXPECT_TRUE(present.count(m.first)) << m.first << ".sqkv is listed but missing";
}

TEST(Crashers, EachGivesItsError) {
    const auto manifest = ReadManifest();
    ASSERT_FALSE(manifest.empty());
    for (const auto &m : manifest) {
        bool ok = false;
        const auto file = ReadAll(CrashersDir() + "/sqkv/" + m.first + ".sqkv", &ok);
        if (!ok) continue;  // reported by the test above
        const sqkv_error got = RunLoader(file);
        if (std::getenv("SQKV_CRASHERS_VERBOSE")) std::printf("%-34s %s\n", m.first.c_str(), sqkv_error_name(got));
        EXPECT_TRUE(m.second.errors.count(sqkv_error_name(got)))
            << m.first << ":" << m.second.why << "\n  got " << sqkv_error_name(got);
    }
}

// Writer regression (roundtrip_fuzzer, tests/crashers/roundtrip_fuzzer/): a quantized section in which
// nothing is kept (an all-zero sparse region) advanced a NULL pointer by 0 (UBSan: "applying zero offset
// to null pointer", codec/src/encode_sparse.c). It must encode, and decode to zeros.
TEST(Crashers, WriterAllZeroQuantizedSection) {
    for (sqkv_quantizer q : {SQKV_QUANT_SYMMETRIC, SQKV_QUANT_ASYMMETRIC}) {
        for (sqkv_scale_granularity s : {SQKV_SCALE_PER_HEAD, SQKV_SCALE_PER_TILE}) {
            sqkv_geometry g{};
            g.n_layers = 1;
            g.n_kv_heads = 1;
            g.head_dim = 1;
            g.n_tokens = 1;
            g.dense_window = 0;
            g.value_dtype = SQKV_DTYPE_BF16;
            sqkv_writer_options o;
            sqkv_writer_options_default(&o);
            o.quantizer = q;
            o.scales = s;
            o.payload_bits = 8;
            sqkv_writer *w = nullptr;
            ASSERT_EQ(SQKV_OK, sqkv_writer_create(&g, &o, &w));
            const uint16_t zero[1] = {0};
            ASSERT_EQ(SQKV_OK, sqkv_writer_add_layer(w, 0, SQKV_DTYPE_FP16, zero, zero)) << sqkv_writer_error_detail(w);
            uint64_t size = 0;
            ASSERT_EQ(SQKV_OK, sqkv_writer_file_size(w, &size));
            std::vector<uint8_t> file(size);
            size_t written = 0;
            ASSERT_EQ(SQKV_OK, sqkv_writer_write_buffer(w, file.data(), file.size(), &written));
            sqkv_writer_destroy(w);
            EXPECT_EQ(SQKV_OK, RunLoader(file));
        }
    }
}

}  // namespace
