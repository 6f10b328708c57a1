/*
 * code_bounds_test.cc (host only): the code bounds of numeric.cuh, which the fast PER_TILE encoder uses
 * to code values with compares, give nearest_code's code for every finite nonzero value:
 *   - group_code_bounds (fp16, 2 and 4 bits) on random level sets (with runs of equal levels) and on the
 *     levels of reference parameters (including groups whose range is a few ulps, where rounding merges
 *     levels);
 *   - group_code_bounds_e for bf16 (2, 3 and 4 bits) on the same kinds of sets, on wide-range extremes and
 *     on SYMMETRIC levels around zero, where binary64 rounds the differences nearest_code takes (a positive
 *     value below 2^-53 s ties between -s and s and gets the lower code), so the midpoint guess is wrong
 *     and the search must find the bound: the test requires that it meets such sets.
 * (The 8-bit encoder's search, levels8.cuh code8, is device code: cuda/rounding_test checks it.)
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "numeric.cuh"

using namespace sqkv_cuda;

namespace {

uint16_t random_finite(std::mt19937_64 &rng, bool bf16) {
    uint16_t h;
    do h = (uint16_t)rng(); while (!e_is_finite(h, bf16));
    return h;
}

/* The reference parameters (s, z) of a group with random extremes, or with extremes a few ulps apart
 * (narrow: its levels merge into runs), and a random quantizer, which it returns (1 SYMMETRIC, 2
 * ASYMMETRIC). */
int random_group_params(std::mt19937_64 &rng, uint32_t bits, bool bf16, bool narrow, uint16_t *s, uint16_t *z) {
    uint16_t lo = random_finite(rng, bf16), hi = narrow ? (uint16_t)(lo + rng() % 5) : random_finite(rng, bf16);
    if (!e_is_finite(hi, bf16)) hi = lo;
    if (e_to_double(lo, bf16) > e_to_double(hi, bf16)) std::swap(lo, hi);
    const int q = 1 + (int)(rng() & 1);
    choose_params(q, bits, bf16, 1, std::max<uint32_t>(lo & 0x7FFFu, hi & 0x7FFFu), e_order_key(lo), e_order_key(hi), s, z);
    return q;
}

/* Values whose code from the bounds differs from nearest_code's, over every finite nonzero value of
 * the type (kept values are finite and nonzero). bf16 only: *guess_misses counts the bounds that are
 * not the value just above the binary64 midpoint of their levels (where the search found them). */
template <uint32_t L>
uint32_t mismatches(const uint16_t (&lev)[L], bool bf16, uint32_t *guess_misses = nullptr) {
    uint32_t B[L];
    if (bf16) group_code_bounds_e<L>(lev, true, B);
    else group_code_bounds<L>(lev, B);
    double table[L];
    for (uint32_t c = 0; c < L; c++) table[c] = e_to_double(lev[c], bf16);
    uint32_t bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (!e_is_finite((uint16_t)h, bf16) || (h & 0x7FFFu) == 0) continue;
        const uint32_t want = nearest_code(TableLevels{table}, L, e_to_double((uint16_t)h, bf16));
        const uint32_t k = e_order_key((uint16_t)h);
        uint32_t got = 0;
        for (uint32_t c = 1; c < L; c++) got += k >= B[c] ? 1u : 0u;
        if (got != want) bad++;
    }
    for (uint32_t c = 1; guess_misses && c < L; c++) {
        if (!(table[c] > table[c - 1])) continue;
        const double mid = dmul(dadd(table[c - 1], table[c]), 0.5);
        const uint16_t m = double_to_e(mid, true);
        const uint32_t guess = e_to_double(m, true) > mid ? e_order_key(m) : e_order_key(m) + 1u;
        if (guess != B[c]) (*guess_misses)++;
    }
    return bad;
}

/* 120 (bf16) or 240 (fp16) level sets of L levels: arbitrary non-decreasing levels, often repeated; the
 * reference parameters of a group with random extremes, or with a range of a few ulps; bf16 also
 * SYMMETRIC levels of steps from 2^-100 to 2^100 (the middle bound at zero). */
template <uint32_t L>
void check_many(uint64_t seed, bool bf16) {
    constexpr uint32_t bits = L == 4 ? 2 : L == 8 ? 3 : 4;
    std::mt19937_64 rng(seed);
    uint32_t searched = 0; /* sets where some bound is not the midpoint's guess */
    const int sets = bf16 ? 120 : 240, modes = bf16 ? 4 : 3;
    for (int it = 0; it < sets; it++) {
        uint16_t lev[L];
        const int mode = it % modes;
        if (mode == 0) {
            uint16_t pool[3];
            for (auto &p : pool) p = random_finite(rng, bf16);
            for (uint32_t c = 0; c < L; c++) lev[c] = rng() % 3 == 0 ? pool[rng() % 3] : random_finite(rng, bf16);
            std::sort(lev, lev + L, [bf16](uint16_t a, uint16_t b) { return e_to_double(a, bf16) < e_to_double(b, bf16); });
        } else if (mode == 3) {
            const double s = std::ldexp(1.0 + (double)(rng() % 128) / 128.0, (int)(rng() % 200) - 100);
            for (uint32_t c = 0; c < L; c++) lev[c] = quant_level(1, bits, true, e_to_double(double_to_e(s, true), true), 0.0, c);
        } else {
            uint16_t s, z;
            const int q = random_group_params(rng, bits, bf16, mode == 2, &s, &z);
            for (uint32_t c = 0; c < L; c++)
                lev[c] = quant_level(q, bits, bf16, e_to_double(s, bf16), e_to_double(z, bf16), c);
        }
        uint32_t misses = 0;
        ASSERT_EQ(0u, mismatches<L>(lev, bf16, bf16 ? &misses : nullptr)) << "set " << it << " seed " << seed;
        searched += misses ? 1u : 0u;
    }
    if (bf16) {
        EXPECT_GT(searched, 0u) << "no set needed the search";
    }
}

}  // namespace

TEST(CodeBounds, TwoBitGroupsMatchNearestCode) { check_many<4>(11, false); }

TEST(CodeBounds, FourBitGroupsMatchNearestCode) { check_many<16>(12, false); }
TEST(CodeBounds, Bf16TwoBitGroupsMatchNearestCode) { check_many<4>(21, true); }
TEST(CodeBounds, Bf16ThreeBitGroupsMatchNearestCode) { check_many<8>(22, true); }
TEST(CodeBounds, Bf16FourBitGroupsMatchNearestCode) { check_many<16>(23, true); }
