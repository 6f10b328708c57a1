/*
 * code_bounds_test.cc (host only): group_code_bounds (numeric.cuh), which the fast PER_TILE encoder uses
 * to code 2- and 4-bit values with integer compares, gives nearest_code's code for every finite nonzero
 * fp16 value, on random level sets (with runs of equal levels) and on the levels of reference parameters
 * (including groups whose range is a few ulps, where rounding merges levels).
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "numeric.cuh"

using namespace sqkv_cuda;

namespace {

bool finite16(uint16_t h) { return e_is_finite(h, false); }

uint16_t random_finite(std::mt19937_64 &rng) {
    uint16_t h;
    do h = (uint16_t)rng(); while (!finite16(h));
    return h;
}

template <uint32_t L>
uint32_t mismatches(const uint16_t (&lev)[L]) {
    uint32_t B[L];
    group_code_bounds<L>(lev, B);
    double table[L];
    for (uint32_t c = 0; c < L; c++) table[c] = e_to_double(lev[c], false);
    uint32_t bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (!finite16((uint16_t)h) || (h & 0x7FFFu) == 0) continue; /* kept values are finite and nonzero */
        const uint32_t want = nearest_code(TableLevels{table}, L, e_to_double((uint16_t)h, false));
        const uint32_t k = e_order_key((uint16_t)h);
        uint32_t got = 0;
        for (uint32_t c = 1; c < L; c++) got += k >= B[c] ? 1u : 0u;
        if (got != want) bad++;
    }
    return bad;
}

template <uint32_t L>
void check_many(uint64_t seed) {
    constexpr uint32_t bits = L == 4 ? 2 : 4;
    std::mt19937_64 rng(seed);
    for (int it = 0; it < 240; it++) {
        uint16_t lev[L];
        const int mode = it % 3;
        if (mode == 0) {
            /* arbitrary non-decreasing levels, often repeated */
            uint16_t pool[3];
            for (auto &p : pool) p = random_finite(rng);
            for (uint32_t c = 0; c < L; c++) lev[c] = rng() % 3 == 0 ? pool[rng() % 3] : random_finite(rng);
            std::sort(lev, lev + L, [](uint16_t a, uint16_t b) { return e_to_double(a, false) < e_to_double(b, false); });
        } else {
            /* the reference parameters of a group with these extremes (mode 2: a range of a few ulps) */
            uint16_t lo = random_finite(rng), hi = mode == 2 ? (uint16_t)(lo + rng() % 5) : random_finite(rng);
            if (!finite16(hi)) hi = lo;
            if (e_to_double(lo, false) > e_to_double(hi, false)) std::swap(lo, hi);
            const int q = 1 + (int)(rng() & 1);
            uint16_t s, z;
            choose_params(q, bits, false, 1, std::max<uint32_t>(lo & 0x7FFFu, hi & 0x7FFFu), e_order_key(lo),
                          e_order_key(hi), &s, &z);
            for (uint32_t c = 0; c < L; c++)
                lev[c] = quant_level(q, bits, false, e_to_double(s, false), e_to_double(z, false), c);
        }
        ASSERT_EQ(0u, mismatches<L>(lev)) << "iteration " << it << " seed " << seed;
    }
}

}  // namespace

TEST(CodeBounds, TwoBitGroupsMatchNearestCode) { check_many<4>(11); }
TEST(CodeBounds, FourBitGroupsMatchNearestCode) { check_many<16>(12); }

/* bf16 (group_code_bounds_e, the fast encoder's bounds for bf16 tiles): every finite nonzero bf16 value
 * gets nearest_code's code, on level sets where binary64 rounds the differences nearest_code takes
 * (levels around zero with values far below them: the midpoint guess is then wrong and the search
 * must take over), wide-range extremes, few-ulp ranges and arbitrary levels with runs. */
namespace {

bool finite_bf16(uint16_t h) { return e_is_finite(h, true); }

uint16_t random_finite_bf16(std::mt19937_64 &rng) {
    uint16_t h;
    do h = (uint16_t)rng(); while (!finite_bf16(h));
    return h;
}

template <uint32_t L>
uint32_t mismatches_bf16(const uint16_t (&lev)[L], uint32_t *guess_misses = nullptr) {
    uint32_t B[L];
    group_code_bounds_e<L>(lev, true, B);
    double table[L];
    for (uint32_t c = 0; c < L; c++) table[c] = e_to_double(lev[c], true);
    uint32_t bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (!finite_bf16((uint16_t)h) || (h & 0x7FFFu) == 0) continue;
        const uint32_t want = nearest_code(TableLevels{table}, L, e_to_double((uint16_t)h, true));
        const uint32_t k = e_order_key((uint16_t)h);
        uint32_t got = 0;
        for (uint32_t c = 1; c < L; c++) got += k >= B[c] ? 1u : 0u;
        if (got != want) bad++;
    }
    if (guess_misses) {
        /* boundaries that are not the bf16 value just above the binary64 midpoint of their levels: there
         * the midpoint guess was wrong and the search found the bound */
        for (uint32_t c = 1; c < L; c++) {
            if (!(table[c] > table[c - 1])) continue;
            const double mid = dmul(dadd(table[c - 1], table[c]), 0.5);
            const uint16_t m = double_to_e(mid, true);
            const uint32_t guess = e_to_double(m, true) > mid ? e_order_key(m) : e_order_key(m) + 1u;
            if (guess != B[c]) (*guess_misses)++;
        }
    }
    return bad;
}

template <uint32_t L>
void check_many_bf16(uint64_t seed) {
    constexpr uint32_t bits = L == 4 ? 2 : L == 8 ? 3 : 4;
    std::mt19937_64 rng(seed);
    uint32_t rounded = 0; /* sets where the bounds differ from the exact midpoints */
    for (int it = 0; it < 120; it++) {
        uint16_t lev[L];
        const int mode = it % 4;
        if (mode == 0) {
            uint16_t pool[3];
            for (auto &p : pool) p = random_finite_bf16(rng);
            for (uint32_t c = 0; c < L; c++) lev[c] = rng() % 3 == 0 ? pool[rng() % 3] : random_finite_bf16(rng);
            std::sort(lev, lev + L, [](uint16_t a, uint16_t b) { return e_to_double(a, true) < e_to_double(b, true); });
        } else if (mode == 1) {
            /* SYMMETRIC levels (2c + 1 - L) s: the middle boundary sits at zero, and positive values below
             * 2^-53 s tie in binary64 */
            const double s = std::ldexp(1.0 + (double)(rng() % 128) / 128.0, (int)(rng() % 200) - 100);
            for (uint32_t c = 0; c < L; c++) lev[c] = quant_level(1, bits, true, e_to_double(double_to_e(s, true), true), 0.0, c);
        } else {
            uint16_t lo = random_finite_bf16(rng), hi = mode == 3 ? (uint16_t)(lo + rng() % 5) : random_finite_bf16(rng);
            if (!finite_bf16(hi)) hi = lo;
            if (e_to_double(lo, true) > e_to_double(hi, true)) std::swap(lo, hi);
            const int q = 1 + (int)(rng() & 1);
            uint16_t s, z;
            choose_params(q, bits, true, 1, std::max<uint32_t>(lo & 0x7FFFu, hi & 0x7FFFu), e_order_key(lo),
                          e_order_key(hi), &s, &z);
            for (uint32_t c = 0; c < L; c++)
                lev[c] = quant_level(q, bits, true, e_to_double(s, true), e_to_double(z, true), c);
        }
        uint32_t misses = 0;
        ASSERT_EQ(0u, mismatches_bf16<L>(lev, &misses)) << "iteration " << it << " seed " << seed;
        rounded += misses ? 1u : 0u;
    }
    /* the test reaches the case the search exists for */
    EXPECT_GT(rounded, 0u);
}

}  // namespace

TEST(CodeBounds, Bf16TwoBitGroupsMatchNearestCode) { check_many_bf16<4>(21); }
TEST(CodeBounds, Bf16ThreeBitGroupsMatchNearestCode) { check_many_bf16<8>(22); }
TEST(CodeBounds, Bf16FourBitGroupsMatchNearestCode) { check_many_bf16<16>(23); }
