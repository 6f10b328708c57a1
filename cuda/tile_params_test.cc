/*
 * tile_params_test.cc: the fast PER_TILE encoder's parameter choice (cuda/tile_params.cuh tile_params,
 * which avoids the division and the conversions' special cases) equals its reference, numeric.cuh's
 * functions composed as the CPU encoder composes them, on every input: every pair of fp16 extremes
 * (ASYMMETRIC, zeros included: about 2.0e9 pairs) and every largest magnitude (SYMMETRIC), for 2, 3 and 4
 * bits; and the same for bf16 tiles (tile_params<..., true>: every pair of bf16 extremes, about 2.1e9).
 * code_bounds_test and the encode tests tie the reference to the CPU encoder's bytes.
 */
#include "cuda_test_util.h"

/* Test hook in cuda/selfcheck.cu. */
extern "C" sqkv_cuda_status sqkv_cuda_internal_tile_params_check(uint32_t bits, int asym, int bf16, uint64_t sabotage,
                                                                 uint64_t *checked, uint64_t *mismatches,
                                                                 uint64_t *first_bad);

namespace {

/* finite fp16 values as order keys 0x0400 .. 0xFBFF (bf16: 0x0080 .. 0xFF7F); pairs min <= max */
constexpr uint64_t kKeys = 0xFBFFu - 0x0400u + 1u;
constexpr uint64_t kPairs = kKeys * (kKeys + 1) / 2;
constexpr uint64_t kMagnitudes = 0x7C00u;
constexpr uint64_t kKeysBf16 = 0xFF7Fu - 0x0080u + 1u;
constexpr uint64_t kPairsBf16 = kKeysBf16 * (kKeysBf16 + 1) / 2;
constexpr uint64_t kMagnitudesBf16 = 0x7F80u;
constexpr uint64_t kNone = ~0ull;

void expect_equal_everywhere(uint32_t bits, bool asym, bool bf16 = false) {
    uint64_t checked = 0, bad = 0, first = 0;
    SQ_OK(sqkv_cuda_internal_tile_params_check(bits, asym, bf16, kNone, &checked, &bad, &first));
    EXPECT_EQ(asym ? (bf16 ? kPairsBf16 : kPairs) : (bf16 ? kMagnitudesBf16 : kMagnitudes), checked);
    EXPECT_EQ(0u, bad) << "first input that differs: 0x" << std::hex << first;
}

}  // namespace

TEST(TileParams, AsymmetricEveryPairOfExtremes) {
    SKIP_WITHOUT_GPU();
    for (uint32_t bits = 2; bits <= 4; bits++) {
        SCOPED_TRACE(bits);
        expect_equal_everywhere(bits, true);
    }
}

TEST(TileParams, SymmetricEveryLargestMagnitude) {
    SKIP_WITHOUT_GPU();
    for (uint32_t bits = 2; bits <= 4; bits++) {
        SCOPED_TRACE(bits);
        expect_equal_everywhere(bits, false);
    }
}

TEST(TileParams, Bf16AsymmetricEveryPairOfExtremes) {
    SKIP_WITHOUT_GPU();
    for (uint32_t bits = 2; bits <= 4; bits++) {
        SCOPED_TRACE(bits);
        expect_equal_everywhere(bits, true, true);
    }
}

TEST(TileParams, Bf16SymmetricEveryLargestMagnitude) {
    SKIP_WITHOUT_GPU();
    for (uint32_t bits = 2; bits <= 4; bits++) {
        SCOPED_TRACE(bits);
        expect_equal_everywhere(bits, false, true);
    }
}

/* The hook's own test: a difference planted at one input (the fast result altered there) is found,
 * counted once and named, so that a hook that compared nothing could not pass the tests above. */
TEST(TileParams, HookReportsAPlantedDifference) {
    SKIP_WITHOUT_GPU();
    uint64_t checked = 0, bad = 0, first = 0;
    const uint64_t pair = (uint64_t)0x43FFu << 16 | 0xC400u; /* order keys of -1 and +4 */
    SQ_OK(sqkv_cuda_internal_tile_params_check(2, 1, 0, pair, &checked, &bad, &first));
    EXPECT_EQ(kPairs, checked);
    EXPECT_EQ(1u, bad);
    EXPECT_EQ(pair, first);
    SQ_OK(sqkv_cuda_internal_tile_params_check(3, 0, 0, 0x3C00u, &checked, &bad, &first));
    EXPECT_EQ(kMagnitudes, checked);
    EXPECT_EQ(1u, bad);
    EXPECT_EQ(0x3C00u, first);
    const uint64_t pair16 = (uint64_t)0x407Fu << 16 | 0xC080u; /* bf16 order keys of -1 and +4 */
    SQ_OK(sqkv_cuda_internal_tile_params_check(4, 1, 1, pair16, &checked, &bad, &first));
    EXPECT_EQ(kPairsBf16, checked);
    EXPECT_EQ(1u, bad);
    EXPECT_EQ(pair16, first);
}

TEST(TileParams, HookRejectsBadArguments) {
    SKIP_WITHOUT_GPU();
    uint64_t a = 0, b = 0, c = 0;
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_internal_tile_params_check(5, 1, 0, kNone, &a, &b, &c));
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_internal_tile_params_check(2, 1, 0, kNone, nullptr, &b, &c));
}
