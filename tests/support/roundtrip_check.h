// roundtrip_check.h: encode a cache, decode every (layer, tensor) in every output dtype, and compare
// each element bit for bit with the independent reference model (tests/support/reference_model.h).
#ifndef SQKV_TESTS_SUPPORT_ROUNDTRIP_CHECK_H
#define SQKV_TESTS_SUPPORT_ROUNDTRIP_CHECK_H

#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace sqkv_test {

// Compares decoded bytes (dtype `dtype`, shape [heads, tokens, head_dim]) with the expected bytes and
// names the first differing element.
::testing::AssertionResult SameElements(const Bytes &expected, const Bytes &actual, sqkv_dtype dtype,
                                        uint32_t tokens, uint32_t head_dim);

// Full round trip of `cache` with `opts`: encode, verify, decode all (layer, tensor, output dtype),
// and a head sub-range where there is more than one head. *file receives the encoded bytes.
::testing::AssertionResult RoundTripMatchesReference(const Cache &cache, const sqkv_writer_options &opts,
                                                     Bytes *file = nullptr);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_ROUNDTRIP_CHECK_H
