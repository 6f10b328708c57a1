// vectors_test.cc: the golden vectors of tests/vectors/ (spec/TEST_VECTORS.md). Each must decode to the
// checksums of its sidecar, and the encoder must reproduce its bytes exactly from the documented input.
// A failure of the second kind means the encoder's output changed: add new vectors, never edit these.
#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdlib>
#include <ostream>
#include <string>

#include "example_doc.h"
#include "roundtrip_check.h"
#include "vector_specs.h"

namespace sqkv_test {
// Found by argument-dependent lookup. GoogleTest would otherwise print the spec byte by byte, padding
// included, and valgrind reports those uninitialised padding bytes as a use of uninitialised memory.
void PrintTo(const VectorSpec &spec, std::ostream *os);
void PrintTo(const VectorSpec &spec, std::ostream *os) { *os << spec.name; }
}  // namespace sqkv_test

namespace {

using namespace sqkv_test;

class GoldenVector : public ::testing::TestWithParam<VectorSpec> {};

TEST_P(GoldenVector, DecodesToItsChecksums) {
    const VectorSpec &spec = GetParam();
    Bytes file;
    ASSERT_TRUE(ReadFile(VectorPath(spec, VectorsDir()), &file)) << VectorPath(spec, VectorsDir());
    Bytes sidecar_text;
    ASSERT_TRUE(ReadFile(SidecarPath(spec, VectorsDir()), &sidecar_text));
    Sidecar sidecar;
    ASSERT_TRUE(ParseSidecar(std::string(sidecar_text.begin(), sidecar_text.end()), &sidecar));
    EXPECT_EQ(file.size(), sidecar.file_size);
    EXPECT_EQ(Xxh3(file.data(), file.size()), sidecar.file_xxh3) << "the vector file itself changed";
    EXPECT_LT(file.size(), 8192u) << "vectors stay small";
    std::vector<uint64_t> decoded;
    ASSERT_EQ(ErrName(DecodedChecksums(file, &decoded)), ErrName(SQKV_OK));
    ASSERT_EQ(decoded.size(), sidecar.decoded.size());
    for (size_t i = 0; i < decoded.size(); i++)
        EXPECT_EQ(decoded[i], sidecar.decoded[i]) << "layer " << i / 2 << (i % 2 ? " V" : " K");
    ReaderPtr r;
    ASSERT_EQ(OpenMemory(file, &r), SQKV_OK);
    sqkv_geometry g;
    ASSERT_EQ(sqkv_reader_geometry(r.get(), &g), SQKV_OK);
    EXPECT_EQ(g.n_layers, spec.geometry.n_layers);
    EXPECT_EQ(g.n_tokens, spec.geometry.n_tokens);
    EXPECT_EQ(g.dense_window, spec.geometry.dense_window);
    EXPECT_EQ(g.value_dtype, spec.geometry.value_dtype);
    EXPECT_EQ(g.source_dtype, spec.input_dtype);
}

TEST_P(GoldenVector, OpenFileDecodesLikeOpenMemory) {
    const VectorSpec &spec = GetParam();
    Bytes file;
    ASSERT_TRUE(ReadFile(VectorPath(spec, VectorsDir()), &file));
    sqkv_reader *raw = nullptr;
    ASSERT_EQ(sqkv_reader_create(nullptr, 0, &raw), SQKV_OK);
    ReaderPtr from_file(raw);
    ASSERT_EQ(sqkv_reader_open_file(from_file.get(), VectorPath(spec, VectorsDir()).c_str()), SQKV_OK);
    ASSERT_EQ(sqkv_reader_verify(from_file.get()), SQKV_OK);
    ReaderPtr from_memory;
    ASSERT_EQ(OpenMemory(file, &from_memory), SQKV_OK);
    for (uint32_t l = 0; l < spec.geometry.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            Bytes a, b;
            ASSERT_EQ(DecodeTensor(from_file.get(), l, t, SQKV_DTYPE_BF16, &a), SQKV_OK);
            ASSERT_EQ(DecodeTensor(from_memory.get(), l, t, SQKV_DTYPE_BF16, &b), SQKV_OK);
            EXPECT_EQ(a, b);
        }
}

TEST_P(GoldenVector, EncoderReproducesItsBytes) {
    const VectorSpec &spec = GetParam();
    Bytes golden, encoded;
    ASSERT_TRUE(ReadFile(VectorPath(spec, VectorsDir()), &golden));
    std::string detail;
    ASSERT_EQ(EncodeCache(VectorInput(spec), spec.options, &encoded, &detail), SQKV_OK) << detail;
    ASSERT_EQ(encoded.size(), golden.size());
    const long long at = FirstDifference(golden, encoded, 1);
    EXPECT_EQ(at, -1) << "first differing byte at offset " << at
                      << ": the encoder's output changed. Vectors never change (spec/FORMAT.md §13): add new ones.";
}

TEST_P(GoldenVector, DecodedOutputMatchesReferenceModel) {
    // The third opinion: the sidecar checksums, the decoder and the reference model must all agree.
    const VectorSpec &spec = GetParam();
    EXPECT_TRUE(RoundTripMatchesReference(VectorInput(spec), spec.options));
}

INSTANTIATE_TEST_SUITE_P(All, GoldenVector, ::testing::ValuesIn(GoldenVectors()),
                         [](const ::testing::TestParamInfo<VectorSpec> &info) { return info.param.name; });

TEST(GoldenVectors, TestVectorsDocumentIsCurrent) {
    const std::string path = SpecDocPath("TEST_VECTORS.md");
    Bytes doc;
    ASSERT_TRUE(ReadFile(path, &doc)) << "spec/TEST_VECTORS.md not found (set SQKV_SPEC_DIR)";
    std::string block;
    ASSERT_TRUE(ExtractGeneratedBlock(std::string(doc.begin(), doc.end()), &block, kVectorsBegin, kVectorsEnd));
    EXPECT_EQ(block, VectorsDocBlock(VectorsDir()))
        << "spec/TEST_VECTORS.md is stale: run tests/make_vectors --vectors-doc spec/TEST_VECTORS.md";
}

TEST(GoldenVectors, CoverWhatTheyPromise) {
    bool widths[17] = {}, quantizers[3] = {}, granularities[4] = {}, bf16 = false, window = false, anc = false,
         odd_dim = false, odd_tokens = false, split = false, keep_all = false;
    uint64_t total = 0;
    for (const VectorSpec &s : GoldenVectors()) {
        widths[s.options.payload_bits] = true;
        quantizers[s.options.quantizer] = true;
        granularities[s.options.scales] = true;
        bf16 |= s.geometry.value_dtype == SQKV_DTYPE_BF16;
        window |= s.geometry.dense_window > 0;
        anc |= s.ancillary;
        odd_dim |= s.geometry.head_dim % 64 != 0;
        odd_tokens |= (s.geometry.n_tokens - s.geometry.dense_window) % 64 != 0;
        split |= s.options.tokens_per_section != 0 || s.options.heads_per_section > 1;
        keep_all |= s.options.prune == SQKV_PRUNE_KEEP_ALL;
        Bytes file;
        if (ReadFile(VectorPath(s, VectorsDir()), &file)) total += file.size();
    }
    EXPECT_TRUE(widths[2] && widths[4] && widths[8] && widths[16]);
    EXPECT_TRUE(quantizers[0] && quantizers[1] && quantizers[2]);
    EXPECT_TRUE(granularities[1] && granularities[2]);
    EXPECT_TRUE(bf16 && window && anc && odd_dim && odd_tokens && split);
    EXPECT_TRUE(widths[1] && widths[3] && widths[5] && widths[6] && widths[7] && granularities[3] && keep_all)
        << "format 1.1";
    EXPECT_LT(total, 65536u);
}

}  // namespace
