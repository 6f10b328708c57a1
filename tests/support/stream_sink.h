// stream_sink.h: runs a whole file through the streaming decoder (sqkv.h sqkv_stream_decoder_*) in
// chunks of a given size and rebuilds what it delivers as dense tensors, so tests can compare the
// streaming decoder's output and errors with the random-access reader's.
#ifndef SQKV_TESTS_SUPPORT_STREAM_SINK_H
#define SQKV_TESTS_SUPPORT_STREAM_SINK_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "test_util.h"

namespace sqkv_test {

// The delivered sections as [2 * layer + tensor] tensors [heads, n_tokens, head_dim] of `dtype`.
struct StreamSink {
    sqkv_geometry g{};
    sqkv_dtype dtype = SQKV_DTYPE_FP32;  // the output dtype asked of the decoder
    std::vector<Bytes> tensors;
};

// Pushes `file` in chunks of `chunk` bytes, then finishes; the first error, or SQKV_OK. *detail (may be
// null) receives the decoder's error detail. sink may be null (output discarded).
sqkv_error StreamDecode(const Bytes &file, size_t chunk, StreamSink *sink = nullptr, std::string *detail = nullptr);

// Little-endian 16-bit elements of a byte vector (E bit patterns of a decoded fp16/bf16 tensor).
std::vector<uint16_t> AsU16(const Bytes &b);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_STREAM_SINK_H
