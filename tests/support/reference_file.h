// reference_file.h: the test suite's own byte-level model of an SQKV file (spec/FORMAT.md §4, §5, §7 to
// §10, and the reference encoder of §5.1 and §14), built on reference_model.h for the numbers and on
// sqkv_file.h for the framing (index, tail, checksums). Written from the spec, not from codec/src, so
// that "the library writes these bytes" and "the library decodes these values" are checked against a
// second implementation rather than against the library itself.
#ifndef SQKV_TESTS_SUPPORT_REFERENCE_FILE_H
#define SQKV_TESTS_SUPPORT_REFERENCE_FILE_H

#include <cstdint>
#include <string>
#include <vector>

#include "reference_model.h"
#include "sqkv_file.h"
#include "test_util.h"

namespace sqkv_test {

// A SPARSE body (codec 0) of the section [head_start, +head_count) x [token_start, +token_count) of one
// (layer, tensor) whose whole input is `input` ([heads][tokens][head_dim], E bit patterns), and the
// decoded length of each of its four streams (§7.2, padding included).
struct ReferenceSparse {
    Bytes body;
    size_t stream_lengths[4] = {0, 0, 0, 0};
};
ReferenceSparse ReferenceSparseBody(const refm::Shape &shape, const refm::Options &opts, sqkv_tensor tensor,
                                    const std::vector<uint16_t> &input, uint32_t head_start, uint32_t head_count,
                                    uint32_t token_start, uint32_t token_count);

// The whole file the reference encoder (§14, §5.1) writes for `cache` with `opts`. False (with *why) when
// the input or options are outside what the model covers (non-finite input, EXACT with keep-all, ...).
bool ReferenceEncodeFile(const Cache &cache, const sqkv_writer_options &opts, Bytes *out, std::string *why);

// Decodes one SPARSE section from its header and its decoded (codec 0) body, per §7 only (no rule
// checks beyond what decoding needs): E values [head_count][token_count][head_dim], +0 where not kept.
bool ReferenceDecodeSparse(const RawSection &s, uint32_t head_dim, sqkv_dtype e, std::vector<uint16_t> *values,
                           std::string *why);

// Undoes codec 1 (§5.1) of a tensor or ancillary section: the decoded body. Codec 0: the body as is.
bool ReferenceDecodedBody(const RawSection &s, uint32_t head_dim, Bytes *body, std::string *why);

// Decodes every (layer, tensor) of a file from its sections that are not superseded: [2 * layer + tensor]
// of E values [heads][n_tokens][head_dim] (n_tokens of the INDEX).
bool ReferenceDecodeFile(const Bytes &file, std::vector<std::vector<uint16_t>> *tensors, std::string *why);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_REFERENCE_FILE_H
