// test_util.h: shared helpers of the SQKV GoogleTest suite: deterministic inputs, encoding a whole
// cache through the public API, decoding, file I/O, and comparing against the reference model.
#ifndef SQKV_TESTS_SUPPORT_TEST_UTIL_H
#define SQKV_TESTS_SUPPORT_TEST_UTIL_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "reference_model.h"
#include "sqkv.h"

namespace sqkv_test {

using Bytes = std::vector<uint8_t>;

// SplitMix64: the generator of every random test input (spec/TEST_VECTORS.md documents it).
class SplitMix64 {
  public:
    explicit SplitMix64(uint64_t seed) : state_(seed) {}
    uint64_t Next();

  private:
    uint64_t state_;
};

// RAII handles.
struct WriterDeleter {
    void operator()(sqkv_writer *w) const { sqkv_writer_destroy(w); }
};
struct ReaderDeleter {
    void operator()(sqkv_reader *r) const { sqkv_reader_destroy(r); }
};
using WriterPtr = std::unique_ptr<sqkv_writer, WriterDeleter>;
using ReaderPtr = std::unique_ptr<sqkv_reader, ReaderDeleter>;

// A whole cache as given to the writer: per layer, K and V as [heads, tokens, head_dim] of input_dtype.
struct Cache {
    sqkv_geometry geometry{};
    sqkv_dtype input_dtype = SQKV_DTYPE_FP32;
    std::vector<Bytes> k, v;
    bool has_tokens = false;
    std::vector<int32_t> tokens;
    Bytes fingerprint;  // empty: none
    std::vector<std::pair<std::string, std::string>> metadata;
};

sqkv_geometry MakeGeometry(uint32_t layers, uint32_t heads, uint32_t head_dim, uint32_t tokens,
                           uint32_t dense_window, sqkv_dtype value_dtype = SQKV_DTYPE_FP16);

size_t DtypeSize(sqkv_dtype dtype);

// The documented test-input generator (spec/TEST_VECTORS.md, "Inputs"): for each layer, K then V, each
// element in [head][token][channel] order draws r = Next(): 1/16 of elements are 0, the others are
// (r >> 40) - 2^23 times 2^(-25 + (3h + 7d) mod 9), an exact fp32 value, rounded to input_dtype.
Cache MakeRandomCache(const sqkv_geometry &g, sqkv_dtype input_dtype, uint64_t seed);

// Writer options the format tests share: sparsity 0.6, offset interval 2^2, one head per section, the
// whole sparse region per section, and the given payload, prune mode and zstd level.
sqkv_writer_options TestOptions(uint32_t bits, sqkv_quantizer q, sqkv_scale_granularity g,
                                sqkv_prune_mode prune = SQKV_PRUNE_MAGNITUDE, uint32_t zstd = 0);

// Encodes `cache` with `opts` through the public writer API (tokens, fingerprint, metadata, every
// layer in order, write_buffer). Returns the first error; *file holds the bytes on success.
sqkv_error EncodeCache(const Cache &cache, const sqkv_writer_options &opts, Bytes *file,
                       std::string *detail = nullptr);

// Opens `file` from memory with default limits. On error, *reader is null.
sqkv_error OpenMemory(const Bytes &file, ReaderPtr *reader, const sqkv_limits *limits = nullptr,
                      unsigned flags = 0);

// Decodes one whole (layer, tensor) into out (dtype bytes).
sqkv_error DecodeTensor(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, sqkv_dtype dtype, Bytes *out);

// Open + verify + decode of every (layer, tensor) in every output dtype; the first error, or SQKV_OK.
// The single "is this file accepted?" question of the corruption tests.
sqkv_error DecodeEverything(const Bytes &file);

// Reference model of the same cache: per layer, K and V. Empty on input errors.
struct ReferenceCache {
    std::vector<refm::Tensor> k, v;
};
ReferenceCache ReferenceFor(const Cache &cache, const sqkv_writer_options &opts);
refm::Options ToRefOptions(const sqkv_writer_options &opts);
refm::Shape ToRefShape(const sqkv_geometry &g);

// Index of the first element where a and b (element size `width`) differ; -1 when equal.
long long FirstDifference(const Bytes &a, const Bytes &b, size_t width);

uint64_t Xxh3(const void *data, size_t size);

bool ReadFile(const std::string &path, Bytes *out);
bool WriteFile(const std::string &path, const Bytes &data);
bool FileExists(const std::string &path);

// Directory of the golden vectors: $SQKV_TEST_VECTORS, else "tests/vectors" (Bazel runs tests at the
// runfiles root, see tests/BUILD).
std::string VectorsDir();

// Path of spec/<name> (EXAMPLE.md, TEST_VECTORS.md): $SQKV_SPEC_DIR/<name> if set; else spec/<name>
// from the working directory (the runfiles root when tests/BUILD lists the documents as data, or the
// repository root); else spec/<name> next to the real location of the vectors (in Bazel's runfiles they
// are symlinks into the source tree). "" when none exists.
std::string SpecDocPath(const std::string &name);

// A fresh empty directory for one test ($TEST_TMPDIR under Bazel, else /tmp).
std::string MakeTempDir(const std::string &tag);
std::vector<std::string> ListDir(const std::string &dir);
void RemoveTree(const std::string &dir);

std::string ErrName(sqkv_error e);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_TEST_UTIL_H
