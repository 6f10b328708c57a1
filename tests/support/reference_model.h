// reference_model.h: an independent model of what an SQKV round trip must produce.
//
// Written from spec/FORMAT.md (§7.4 levels, §11 output conversion, §14 the reference encoder's pruning,
// parameter and code choice) without any code of codec/src, so that a bug shared by encoder and
// decoder (both built on codec/src internals) still shows up as a mismatch. Only the public enums of
// sqkv.h are used, for their names.
#ifndef SQKV_TESTS_SUPPORT_REFERENCE_MODEL_H
#define SQKV_TESTS_SUPPORT_REFERENCE_MODEL_H

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sqkv.h"

namespace refm {

// ---- Element types (own implementation of RNE_E of §7.4) ------------------------------------------

// Exact value of an fp16 / bf16 / fp32 bit pattern.
double Fp16ToDouble(uint16_t h);
double Bf16ToDouble(uint16_t h);
double Fp32ToDouble(uint32_t f);
double EToDouble(uint16_t h, sqkv_dtype e);

// One rounding of x to fp16 / bf16: to nearest, ties to even, with subnormals, overflow to infinity.
// NaN gives a quiet NaN, signed zeros keep their sign.
uint16_t DoubleToFp16(double x);
uint16_t DoubleToBf16(double x);
uint16_t DoubleToE(double x, sqkv_dtype e);

bool EIsFinite(uint16_t h, sqkv_dtype e);
bool EIsZero(uint16_t h);  // +0 or -0 (for both 16-bit types)

// ---- Inputs ---------------------------------------------------------------------------------------

// What the encoder must do with an input value (§14 via sqkv.h add_layer: convert to E first).
enum class InputVerdict { kOk, kNonFinite, kOutOfRange };

// Converts `count` elements of `dtype` at `data` to E. Returns the problem of the first bad element
// (NaN/infinity, or a finite value that rounds to infinity in E), if any.
InputVerdict ConvertInput(const void *data, size_t count, sqkv_dtype dtype, sqkv_dtype e,
                          std::vector<uint16_t> *out);

// ---- The reference encoder and decoder ------------------------------------------------------------

struct Shape {
    uint32_t heads = 1;
    uint32_t tokens = 1;
    uint32_t head_dim = 1;
    uint32_t dense_window = 0;
    sqkv_dtype e = SQKV_DTYPE_FP16;
};

struct Options {
    bool prune = true;            // magnitude pruning (else: keep every nonzero element)
    bool keep_all = false;        // §14 keep-all mode (ALL_KEPT sections): every element, zeros included
    double sparsity = 0.7;
    uint32_t bits = 2;
    sqkv_quantizer quantizer = SQKV_QUANT_SYMMETRIC;
    sqkv_scale_granularity granularity = SQKV_SCALE_PER_HEAD;
    uint32_t heads_per_section = 1;
    uint32_t tokens_per_section = 0;  // 0: the whole sparse region
    uint32_t offset_interval_log2 = 4;  // written as 0 in keep-all mode (§7.6: no table)
    uint32_t zstd_level = 0;            // §5.1 informative: the reference encoder's zstd layer
};

// §4.1: the required_features bits that a SPARSE section written with `opts` uses (0 for EXACT and for
// the 1.0 widths and granularities without keep-all).
uint32_t SectionFeatures(const Options &opts);

// The decoded tensor of one (layer, tensor), as E bit patterns [heads][tokens][head_dim], and which
// elements of the sparse region the encoder keeps (1) or prunes (0); the dense window has kept = 1.
struct Tensor {
    std::vector<uint16_t> decoded;
    std::vector<uint8_t> kept;
};

// The number of elements §14 keeps in a row of D elements (before limiting to the nonzeros).
uint32_t KeepCount(bool prune, double sparsity, uint32_t head_dim);

// Which channels of one row §14 keeps, ascending.
std::vector<uint32_t> KeptChannels(const uint16_t *row, uint32_t head_dim, sqkv_dtype e, bool prune,
                                   double sparsity);

// Parameters (§14) of one group of kept E values.
void ChooseParams(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const std::vector<uint16_t> &values,
                  uint16_t *s, uint16_t *z);

// Levels (§7.4) of a group. Returns false if a level is not finite or s/z break the rules.
bool Levels(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, uint16_t s, uint16_t z,
            std::vector<uint16_t> *levels);

// Code of the level nearest to x, ties to the lower code (§14).
uint32_t NearestCode(const std::vector<uint16_t> &levels, sqkv_dtype e, uint16_t x);
// The same on levels converted to binary64 once (LevelValues), for groups of many elements.
std::vector<double> LevelValues(const std::vector<uint16_t> &levels, sqkv_dtype e);
uint32_t NearestCodeOf(const std::vector<double> &level_values, double x);

// The elements of one parameter group (§7.4) as indices into a [heads][tokens][head_dim] tensor, in
// payload order, for the section [head_start, +head_count) x [token_start, +token_count); padding
// elements are absent. Groups are returned in scales-stream order. Elements are listed whether kept or
// not; callers filter by the kept mask.
std::vector<std::vector<size_t>> GroupsOfSection(sqkv_tensor tensor, sqkv_scale_granularity g, uint32_t tokens,
                                                 uint32_t head_dim, uint32_t head_start, uint32_t head_count,
                                                 uint32_t token_start, uint32_t token_count);

// The section's tiles (§7.1) in section tile order: element i of each tile as an index into the
// [heads][tokens][head_dim] tensor, or SIZE_MAX for a padding element.
std::vector<std::vector<size_t>> TilesOfSection(sqkv_tensor tensor, uint32_t tokens, uint32_t head_dim,
                                                uint32_t head_start, uint32_t head_count, uint32_t token_start,
                                                uint32_t token_count);

// Full model of one tensor: `input` is [heads][tokens][head_dim] already converted to E.
Tensor EncodeDecode(const Shape &shape, const Options &opts, sqkv_tensor tensor,
                    const std::vector<uint16_t> &input);

// §11: converts decoded E bit patterns to the output dtype (little-endian bytes). Returns false when
// a bf16 value overflows fp16, which the reference decoder reports as SQKV_ERR_VALUE.
bool ConvertOutput(const std::vector<uint16_t> &decoded, sqkv_dtype e, sqkv_dtype out_dtype,
                   std::vector<uint8_t> *out);

// ---- Mustafar's in-memory layout (sqkv.h decode_mustafar), from a decoded head -------------------

struct MustafarLayout {
    std::vector<int64_t> bitmaps;
    std::vector<int32_t> accum_counts;
    std::vector<uint16_t> values;  // including the 8 entries of tail slack
};

// `decoded` and `kept` are one head's [tokens][head_dim] slices; the layout covers tokens
// [0, sparse_tokens).
MustafarLayout MustafarFromDecoded(sqkv_tensor tensor, uint32_t sparse_tokens, uint32_t head_dim,
                                   const uint16_t *decoded, const uint8_t *kept);

}  // namespace refm

#endif  // SQKV_TESTS_SUPPORT_REFERENCE_MODEL_H
