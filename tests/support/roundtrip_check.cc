// roundtrip_check.cc: see roundtrip_check.h.
#include "roundtrip_check.h"

#include <cstring>
#include <sstream>

namespace sqkv_test {

::testing::AssertionResult SameElements(const Bytes &expected, const Bytes &actual, sqkv_dtype dtype,
                                        uint32_t tokens, uint32_t head_dim) {
    const size_t width = DtypeSize(dtype);
    if (expected.size() != actual.size())
        return ::testing::AssertionFailure() << "size " << actual.size() << ", expected " << expected.size();
    const long long i = FirstDifference(expected, actual, width);
    if (i < 0) return ::testing::AssertionSuccess();
    size_t mismatches = 0;
    for (size_t j = 0; j < expected.size(); j += width)
        mismatches += std::memcmp(expected.data() + j, actual.data() + j, width) != 0;
    uint64_t e = 0, a = 0;
    std::memcpy(&e, expected.data() + i * width, width);
    std::memcpy(&a, actual.data() + i * width, width);
    const uint64_t per_head = static_cast<uint64_t>(tokens) * head_dim;
    return ::testing::AssertionFailure()
           << mismatches << " elements differ; first at head " << i / per_head << " token "
           << (i % per_head) / head_dim << " channel " << i % head_dim << ": got 0x" << std::hex << a
           << ", expected 0x" << e << " (dtype " << std::dec << dtype << ")";
}

::testing::AssertionResult RoundTripMatchesReference(const Cache &cache, const sqkv_writer_options &opts,
                                                     Bytes *file_out) {
    Bytes file;
    std::string detail;
    sqkv_error err = EncodeCache(cache, opts, &file, &detail);
    if (err != SQKV_OK)
        return ::testing::AssertionFailure() << "encode: " << ErrName(err) << " (" << detail << ")";
    if (file_out) *file_out = file;
    const ReferenceCache ref = ReferenceFor(cache, opts);
    const sqkv_geometry &g = cache.geometry;
    if (ref.k.size() != g.n_layers) return ::testing::AssertionFailure() << "reference model rejected the input";

    ReaderPtr r;
    if ((err = OpenMemory(file, &r))) return ::testing::AssertionFailure() << "open: " << ErrName(err);
    if ((err = sqkv_reader_verify(r.get())))
        return ::testing::AssertionFailure() << "verify: " << ErrName(err) << " "
                                             << sqkv_reader_error_detail(r.get());
    sqkv_geometry got;
    if ((err = sqkv_reader_geometry(r.get(), &got))) return ::testing::AssertionFailure() << "geometry";
    if (got.n_layers != g.n_layers || got.n_kv_heads != g.n_kv_heads || got.head_dim != g.head_dim ||
        got.n_tokens != g.n_tokens || got.dense_window != g.dense_window || got.value_dtype != g.value_dtype ||
        got.source_dtype != cache.input_dtype)
        return ::testing::AssertionFailure() << "geometry does not round trip";

    Bytes expected, actual;
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            const refm::Tensor &rt = t == SQKV_TENSOR_K ? ref.k[l] : ref.v[l];
            for (sqkv_dtype d : {SQKV_DTYPE_FP32, SQKV_DTYPE_FP16, SQKV_DTYPE_BF16}) {
                const bool representable = refm::ConvertOutput(rt.decoded, g.value_dtype, d, &expected);
                if (!representable) {
                    // Errors are sticky (sqkv.h): the expected failure gets a reader of its own.
                    ReaderPtr fresh;
                    if ((err = OpenMemory(file, &fresh)) == SQKV_OK) err = DecodeTensor(fresh.get(), l, t, d, &actual);
                    if (err != SQKV_ERR_VALUE)
                        return ::testing::AssertionFailure()
                               << "layer " << l << " tensor " << t << " to dtype " << d
                               << ": expected SQKV_ERR_VALUE for a bf16 value beyond fp16, got " << ErrName(err);
                    continue;
                }
                err = DecodeTensor(r.get(), l, t, d, &actual);
                if (err != SQKV_OK)
                    return ::testing::AssertionFailure() << "decode layer " << l << " tensor " << t << " dtype "
                                                         << d << ": " << ErrName(err) << " "
                                                         << sqkv_reader_error_detail(r.get());
                ::testing::AssertionResult same = SameElements(expected, actual, d, g.n_tokens, g.head_dim);
                if (!same) return same << " [layer " << l << ", tensor " << (t ? "V" : "K") << "]";
            }
            // A head sub-range that starts inside the first section (when there are 3+ heads).
            if (g.n_kv_heads >= 3) {
                const uint32_t hs = 1, hc = g.n_kv_heads - 2;
                const size_t per_head = static_cast<size_t>(g.n_tokens) * g.head_dim * 4;
                refm::ConvertOutput(rt.decoded, g.value_dtype, SQKV_DTYPE_FP32, &expected);
                Bytes slice(expected.begin() + hs * per_head, expected.begin() + (hs + hc) * per_head);
                actual.assign(slice.size(), 0x5A);
                err = sqkv_reader_decode(r.get(), l, t, hs, hc, SQKV_DTYPE_FP32, actual.data(), actual.size());
                if (err != SQKV_OK)
                    return ::testing::AssertionFailure() << "decode of heads [1, " << hs + hc << "): " << ErrName(err);
                ::testing::AssertionResult same = SameElements(slice, actual, SQKV_DTYPE_FP32, g.n_tokens, g.head_dim);
                if (!same) return same << " [head sub-range, layer " << l << "]";
            }
        }
    return ::testing::AssertionSuccess();
}

}  // namespace sqkv_test
