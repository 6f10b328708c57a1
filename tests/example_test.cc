// example_test.cc: spec/EXAMPLE.md shows one tiny file byte by byte. The file is the golden vector
// v1_example; the encoder must reproduce it from the example's input, and the document's generated block
// must be exactly what tests/make_vectors --example-doc produces from it, so the two cannot drift.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "example_doc.h"
#include "vector_specs.h"

namespace {

using namespace sqkv_test;

std::string ExampleDocPath() { return SpecDocPath("EXAMPLE.md"); }

TEST(Example, EncoderWritesTheExampleFile) {
    Bytes golden, encoded;
    ASSERT_TRUE(ReadFile(VectorPath(ExampleVector(), VectorsDir()), &golden));
    ASSERT_EQ(EncodeCache(ExampleCache(), ExampleVector().options, &encoded), SQKV_OK);
    EXPECT_EQ(encoded, golden);
    EXPECT_EQ(ErrName(DecodeEverything(golden)), ErrName(SQKV_OK));
}

TEST(Example, DocumentShowsTheExampleFile) {
    Bytes golden, doc_bytes;
    ASSERT_TRUE(ReadFile(VectorPath(ExampleVector(), VectorsDir()), &golden));
    ASSERT_TRUE(ReadFile(ExampleDocPath(), &doc_bytes)) << "spec/EXAMPLE.md not found (set SQKV_SPEC_DIR)";
    std::string block;
    ASSERT_TRUE(ExtractGeneratedBlock(std::string(doc_bytes.begin(), doc_bytes.end()), &block))
        << "markers missing in " << ExampleDocPath();
    EXPECT_EQ(block, ExampleBlock(ExampleCache(), golden))
        << "spec/EXAMPLE.md is stale: run tests/make_vectors --example-doc spec/EXAMPLE.md";
}

TEST(Example, HexDumpBytesAreTheFile) {
    // Independently of the generator: the hex column of the dump, read back, is the file.
    Bytes golden, doc_bytes;
    ASSERT_TRUE(ReadFile(VectorPath(ExampleVector(), VectorsDir()), &golden));
    ASSERT_TRUE(ReadFile(ExampleDocPath(), &doc_bytes));
    std::string block;
    ASSERT_TRUE(ExtractGeneratedBlock(std::string(doc_bytes.begin(), doc_bytes.end()), &block));
    Bytes from_doc;
    size_t expected_offset = 0;
    std::istringstream lines(block.substr(block.find("```")));
    std::string line;
    while (std::getline(lines, line)) {
        if (line.size() < 31 || line.compare(4, 2, "  ") != 0) continue;
        bool is_offset = true;
        for (int i = 0; i < 4; i++) is_offset &= std::isxdigit(static_cast<unsigned char>(line[i])) != 0;
        if (!is_offset) continue;
        const unsigned offset = static_cast<unsigned>(std::stoul(line.substr(0, 4), nullptr, 16));
        ASSERT_EQ(offset, expected_offset) << line;
        for (size_t p = 6; p + 2 <= 30 && line[p] != ' '; p += 3) {
            from_doc.push_back(static_cast<uint8_t>(std::stoul(line.substr(p, 2), nullptr, 16)));
            expected_offset++;
        }
    }
    EXPECT_EQ(from_doc, golden);
}

}  // namespace
