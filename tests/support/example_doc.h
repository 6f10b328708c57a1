// example_doc.h: the generated part of spec/EXAMPLE.md: the worked example's input, what the reference
// encoder makes of it, and the file byte by byte with every field annotated. Generated from the example
// vector's bytes, so the document cannot drift from the file (example_test.cc compares them).
#ifndef SQKV_TESTS_SUPPORT_EXAMPLE_DOC_H
#define SQKV_TESTS_SUPPORT_EXAMPLE_DOC_H

#include <string>

#include "test_util.h"

namespace sqkv_test {

// Markers around the generated block in spec/EXAMPLE.md.
extern const char kExampleBegin[];
extern const char kExampleEnd[];

// The generated block (without the markers) for the example cache and its encoded file.
std::string ExampleBlock(const Cache &cache, const Bytes &file);

// Replaces the text between the markers `begin` and `end` of `doc`; false when they are missing.
bool ReplaceGeneratedBlock(std::string *doc, const std::string &block, const char *begin = kExampleBegin,
                           const char *end = kExampleEnd);
// The text between the markers; false when missing.
bool ExtractGeneratedBlock(const std::string &doc, std::string *block, const char *begin = kExampleBegin,
                           const char *end = kExampleEnd);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_EXAMPLE_DOC_H
