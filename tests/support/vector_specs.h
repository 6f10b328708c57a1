// vector_specs.h: the golden test vectors of tests/vectors/ (spec/TEST_VECTORS.md): what each one is,
// how its input is made, and its checksum sidecar. Shared by vectors_test.cc (checks them) and
// make_vectors.cc (writes missing ones, never overwrites).
#ifndef SQKV_TESTS_SUPPORT_VECTOR_SPECS_H
#define SQKV_TESTS_SUPPORT_VECTOR_SPECS_H

#include <cstdint>
#include <string>
#include <vector>

#include "test_util.h"

namespace sqkv_test {

struct VectorSpec {
    std::string name;    // tests/vectors/<name>.sqkv and <name>.decoded.txt
    std::string covers;  // one line for TEST_VECTORS.md and failure messages
    sqkv_geometry geometry;
    sqkv_dtype input_dtype;
    sqkv_writer_options options;
    uint64_t seed;        // MakeRandomCache seed (unused by the hand-written example)
    bool ancillary;       // TOKENS + FINGERPRINT + METADATA from the seed
    bool hand_written;    // input is ExampleCache(), not the generator
};

// Every vector, in the order of spec/TEST_VECTORS.md. Append only: a vector's definition never
// changes once its file exists.
const std::vector<VectorSpec> &GoldenVectors();
const VectorSpec &ExampleVector();

// The deterministic input of a vector.
Cache VectorInput(const VectorSpec &spec);

// The worked example of spec/EXAMPLE.md: hand-written input of 1 layer, 1 head, head_dim 8, 4 tokens.
Cache ExampleCache();

// XXH3-64 of the decoded fp32 output of every (layer, tensor): [2 * layer + tensor].
sqkv_error DecodedChecksums(const Bytes &file, std::vector<uint64_t> *checksums);

struct Sidecar {
    uint64_t file_size = 0;
    uint64_t file_xxh3 = 0;
    std::vector<uint64_t> decoded;  // [2 * layer + tensor]
};
std::string SidecarPath(const VectorSpec &spec, const std::string &dir);
std::string VectorPath(const VectorSpec &spec, const std::string &dir);
std::string FormatSidecar(const VectorSpec &spec, const Sidecar &s);
bool ParseSidecar(const std::string &text, Sidecar *out);

// The generated block of spec/TEST_VECTORS.md: one entry per vector (what it covers, geometry, options,
// seed, file size and checksums), from the specs and the sidecars in `dir`. Between kExampleBegin-style
// markers kVectorsBegin / kVectorsEnd.
extern const char kVectorsBegin[];
extern const char kVectorsEnd[];
std::string VectorsDocBlock(const std::string &dir);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_VECTOR_SPECS_H
