/*
 * rounding_test.cc: the device's binary64 -> fp16 / bf16 rounding (numeric.cuh double_to_e, hardware
 * conversions on sm_90) against the host path of numeric.cuh and against codec/src/float16.h, bit for
 * bit, on every value where a rounding can go wrong: all midpoints of neighbouring fp16 and bf16 values
 * and their binary64 neighbours, the quotients range / (L - 1) that choose_step rounds (dense pairs of
 * fp16 extremes), random doubles of every exponent and random doubles near the types' ranges, and the
 * specials (zeros, infinities, NaNs, binary64 subnormals, overflow edges). And 8-bit levels and codes
 * computed in binary32 (levels8.cuh level8 and code8) against quant_level and nearest_code, which work in
 * binary64.
 */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "numeric.cuh"

/* Test hook in cuda/selfcheck.cu. */
extern "C" sqkv_cuda_status sqkv_cuda_internal_round(const double *in, size_t n, uint16_t *fp16_out,
                                                     uint16_t *bf16_out);
extern "C" sqkv_cuda_status sqkv_cuda_internal_level8(const uint16_t *s, const uint16_t *z, size_t n, int quantizer,
                                                      int bf16, uint16_t *out);
extern "C" sqkv_cuda_status sqkv_cuda_internal_code8(const uint16_t *s, const uint16_t *z, const uint16_t *x, size_t n,
                                                     int quantizer, int bf16, int mode, uint16_t *out);

namespace {

double from_bits(uint64_t u) {
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

void push_with_neighbours(std::vector<double> &v, double x) {
    v.push_back(x);
    v.push_back(std::nextafter(x, std::numeric_limits<double>::infinity()));
    v.push_back(std::nextafter(x, -std::numeric_limits<double>::infinity()));
}

/* Every E value of one sign, the midpoints of neighbours (overflow edge: the midpoint of the largest
 * finite value and the next power of two), each with its binary64 neighbours, both signs. */
void add_midpoints(std::vector<double> &v, bool bf16) {
    const uint32_t inf = bf16 ? 0x7F80u : 0x7C00u;
    for (uint32_t h = 0; h < inf; h++) {
        const double a = sqkv_cuda::e_to_double((uint16_t)h, bf16);
        const double b = h + 1 < inf ? sqkv_cuda::e_to_double((uint16_t)(h + 1), bf16)
                                     : std::ldexp(1.0, bf16 ? 128 : 16); /* where infinity would be */
        for (double s : {1.0, -1.0}) {
            push_with_neighbours(v, s * a);
            push_with_neighbours(v, s * ((a + b) * 0.5)); /* exact: both are short binary64 values */
        }
    }
}

/* range / (L - 1) as choose_step computes it, for ranges between fp16 extremes (every hi for a strided
 * set of lo, plus every single magnitude: SYMMETRIC), and L - 1 = 3, 7, 15, 255. */
void add_quotients(std::vector<double> &v) {
    const double divisors[] = {3.0, 7.0, 15.0, 255.0};
    for (uint32_t h = 0; h < 0x7C00u; h++)
        for (double d : divisors) v.push_back(sqkv_cuda::e_to_double((uint16_t)h, false) / d);
    for (uint32_t lo = 0; lo < 0x10000u; lo += 131) {
        if (!sqkv_cuda::e_is_finite((uint16_t)lo, false)) continue;
        const double l = sqkv_cuda::e_to_double((uint16_t)lo, false);
        for (uint32_t hi = 0; hi < 0x10000u; hi++) {
            if (!sqkv_cuda::e_is_finite((uint16_t)hi, false)) continue;
            const double range = sqkv_cuda::e_to_double((uint16_t)hi, false) - l; /* exact */
            if (range > 0) v.push_back(range / 3.0);
        }
    }
}

void add_random(std::vector<double> &v, size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < n; i++) v.push_back(from_bits(rng())); /* every exponent, NaNs included */
    /* exponents around each type's range: subnormals, normals, overflow */
    for (size_t i = 0; i < n; i++) {
        const bool bf16 = i & 1;
        const int lo = bf16 ? -140 : -30, hi = bf16 ? 130 : 18;
        const uint64_t e = (uint64_t)(1023 + lo + (int)(rng() % (uint64_t)(hi - lo)));
        v.push_back(from_bits((rng() & 0x800FFFFFFFFFFFFFull) | (e << 52)));
    }
}

void add_specials(std::vector<double> &v) {
    const double inf = std::numeric_limits<double>::infinity();
    for (double x : {0.0, -0.0, inf, -inf, std::numeric_limits<double>::max(), -std::numeric_limits<double>::max(),
                     std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(),
                     -std::numeric_limits<double>::denorm_min(), (double)std::numeric_limits<float>::max(),
                     (double)std::numeric_limits<float>::min(), (double)std::numeric_limits<float>::denorm_min(),
                     65504.0, 65519.0, 65520.0, 65536.0, std::ldexp(1.0, -24), std::ldexp(1.0, -25),
                     std::ldexp(3.0, -26), std::ldexp(1.0, -133), std::ldexp(1.0, -134), std::ldexp(3.0, -135),
                     std::ldexp(1.0, 128), std::ldexp(1.0, 1023)})
        push_with_neighbours(v, x);
    for (uint64_t nan : {0x7FF8000000000000ull, 0xFFF8000000000000ull, 0x7FF0000000000001ull, 0xFFF0000000000001ull,
                         0x7FFFFFFFFFFFFFFFull, 0x7FF4000000000000ull, 0xFFFFFFFFFFFFFFFFull})
        v.push_back(from_bits(nan));
    for (uint64_t u = 1; u < 0x0010000000000000ull; u = u * 3 + 1) { /* binary64 subnormals */
        v.push_back(from_bits(u));
        v.push_back(from_bits(u | 0x8000000000000000ull));
    }
}

/* Device vs host path vs float16.h; returns the mismatches, the first few printed. */
size_t compare(const std::vector<double> &v) {
    size_t bad = 0;
    constexpr size_t kChunk = (size_t)1 << 24;
    std::vector<uint16_t> f(kChunk), b(kChunk);
    for (size_t at = 0; at < v.size(); at += kChunk) {
        const size_t n = std::min(kChunk, v.size() - at);
        const sqkv_cuda_status st = sqkv_cuda_internal_round(v.data() + at, n, f.data(), b.data());
        EXPECT_EQ(SQKV_OK, st) << sqkv_cuda_status_name(st);
        if (st != SQKV_OK) return v.size();
        for (size_t i = 0; i < n; i++) {
            const double x = v[at + i];
            const uint16_t hf = sqkv_cuda::double_to_e(x, false), hb = sqkv_cuda::double_to_e(x, true);
            const uint16_t rf = sqkv_double_to_fp16(x), rb = sqkv_double_to_bf16(x);
            if (f[i] != hf || hf != rf || b[i] != hb || hb != rb) {
                if (bad++ < 8) {
                    uint64_t u;
                    memcpy(&u, &x, sizeof u);
                    ADD_FAILURE() << std::hex << "x bits 0x" << u << ": fp16 device 0x" << f[i] << " host 0x" << hf
                                  << " float16.h 0x" << rf << "; bf16 device 0x" << b[i] << " host 0x" << hb
                                  << " float16.h 0x" << rb;
                }
            }
        }
    }
    return bad;
}

}  // namespace

TEST(DeviceRounding, MidpointsAndNeighboursOfEveryValue) {
    SKIP_WITHOUT_GPU();
    std::vector<double> v;
    add_midpoints(v, false);
    add_midpoints(v, true);
    ASSERT_EQ(12u * (0x7C00u + 0x7F80u), v.size()); /* 772608 */
    EXPECT_EQ(0u, compare(v)) << "of " << v.size();
}

TEST(DeviceRounding, StepQuotients) {
    SKIP_WITHOUT_GPU();
    std::vector<double> v;
    add_quotients(v);
    ASSERT_GT(v.size(), 15000000u);
    EXPECT_EQ(0u, compare(v)) << "of " << v.size();
}

TEST(DeviceRounding, RandomDoublesAndSpecials) {
    SKIP_WITHOUT_GPU();
    std::vector<double> v;
    add_specials(v);
    add_random(v, 8000000, 2026);
    ASSERT_GT(v.size(), 16000000u);
    EXPECT_EQ(0u, compare(v)) << "of " << v.size();
}

/* The hook's argument checks (a test of the hook, so that a broken hook cannot pass the tests above). */
TEST(DeviceRounding, HookRejectsNullBuffers) {
    SKIP_WITHOUT_GPU();
    double x = 1.0;
    uint16_t a = 0, b = 0;
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_internal_round(&x, 1, nullptr, &b));
    ASSERT_EQ(SQKV_OK, sqkv_cuda_internal_round(&x, 1, &a, &b));
    EXPECT_EQ(0x3C00u, a);
    EXPECT_EQ(0x3F80u, b);
}

namespace {

/* level8 for every code of each parameter pair against quant_level. Returns the mismatches; traps counts
 * the levels where rounding binary32's FMA result to E (what level8 does when it does not detect the
 * danger) differs from quant_level: the double-rounding cases the comparison must contain to mean
 * anything. */
size_t compare_level8(const std::vector<uint16_t> &s, const std::vector<uint16_t> &z, int quantizer, bool bf16,
                      size_t *traps) {
    std::vector<uint16_t> got(256 * s.size());
    const sqkv_cuda_status st = sqkv_cuda_internal_level8(s.data(), z.data(), s.size(), quantizer, bf16, got.data());
    EXPECT_EQ(SQKV_OK, st) << sqkv_cuda_status_name(st);
    if (st != SQKV_OK) return got.size();
    size_t bad = 0;
    *traps = 0;
    for (size_t i = 0; i < s.size(); i++) {
        const double sd = sqkv_cuda::e_to_double(s[i], bf16), zd = sqkv_cuda::e_to_double(z[i], bf16);
        for (uint32_t c = 0; c < 256; c++) {
            const uint16_t want = sqkv_cuda::quant_level(quantizer, 8, bf16, sd, zd, c);
            if (quantizer == 2) {
                const float r = std::fma((float)c, (float)sd, (float)zd);
                if (sqkv_cuda::double_to_e((double)r, bf16) != want) ++*traps;
            }
            if (got[256 * i + c] != want && bad++ < 8)
                ADD_FAILURE() << std::hex << "s 0x" << s[i] << " z 0x" << z[i] << " code " << std::dec << c
                              << std::hex << ": device 0x" << got[256 * i + c] << ", quant_level 0x" << want;
        }
    }
    return bad;
}

/* Random parameter pairs that §7.4 accepts (finite, s without sign, every level finite), z often far
 * larger than s, where binary32 rounds c s + z; and, for fp16, a constructed trap:
 * s = 1417 * 2^-19, z = 1024, c = 185 gives 1024.5 + 2^-19, which binary32 rounds to the midpoint 1024.5
 * (whose even neighbour is 1024) while quant_level's binary64 keeps it above (1025). */
void level8_params(bool bf16, int quantizer, uint32_t seed, std::vector<uint16_t> &s, std::vector<uint16_t> &z) {
    std::mt19937 rng(seed);
    if (!bf16) {
        s.push_back(0x1989u); /* 1417 * 2^-19 */
        z.push_back(0x6400u); /* 1024 */
    }
    const uint32_t mb = bf16 ? 7 : 10, emax = bf16 ? 254 : 30;
    while (s.size() < ((size_t)1 << 18)) {
        const uint32_t ze = 1 + rng() % emax, gap = rng() % 24;
        const uint16_t zb = (uint16_t)(((rng() & 1u) << 15) | (ze << mb) | (rng() & ((1u << mb) - 1u)));
        const uint16_t sb = (uint16_t)((ze > gap + 1 ? (ze - gap) << mb : 0u) | (rng() & ((1u << mb) - 1u)));
        if (!sqkv_cuda::quant_params_ok(quantizer, 8, bf16, sb, zb)) continue;
        s.push_back(sb);
        z.push_back(zb);
    }
}

}  // namespace

TEST(DeviceLevels, EightBitLevelsMatchBinary64) {
    SKIP_WITHOUT_GPU();
    for (bool bf16 : {false, true})
        for (int q : {1, 2}) {
            SCOPED_TRACE(std::string(bf16 ? "bf16" : "fp16") + (q == 1 ? " SYMMETRIC" : " ASYMMETRIC"));
            std::vector<uint16_t> s, z;
            level8_params(bf16, q, 2026 + 2 * q + bf16, s, z);
            size_t traps = 0;
            EXPECT_EQ(0u, compare_level8(s, z, q, bf16, &traps)) << "of " << 256 * s.size();
            /* fp16 ASYMMETRIC has hundreds (529 in these parameters). SYMMETRIC has none: its products are
             * exact in binary32. bf16 ASYMMETRIC showed none either (c s has at most 16 significant bits,
             * too few to reach from a bf16 midpoint past binary32's last bit), so only the agreement is
             * asserted there. */
            if (q == 2 && !bf16) {
                EXPECT_GT(traps, 100u) << "the parameters should contain double-rounding cases";
            }
            if (q == 1) {
                EXPECT_EQ(0u, traps);
            }
        }
}

TEST(DeviceLevels, EightBitConstructedTrap) {
    SKIP_WITHOUT_GPU();
    const uint16_t s = 0x1989u, z = 0x6400u;
    std::vector<uint16_t> got(256);
    ASSERT_EQ(SQKV_OK, sqkv_cuda_internal_level8(&s, &z, 1, 2, 0, got.data()));
    EXPECT_EQ(0x6401u, got[185]); /* 1025 */
    EXPECT_EQ(0x6400u, sqkv_cuda::double_to_e((double)std::fma(185.0f, 1417.0f / 524288.0f, 1024.0f), false));
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_internal_level8(&s, &z, 1, 3, 0, got.data()));
}

namespace {

/* The E value just above (up) or below h, both finite and nonzero-crossing aware (+0 and -0 step to the
 * smallest subnormals). */
uint16_t e_step(uint16_t h, bool up) {
    const bool neg = (h & 0x8000u) != 0, mag0 = (h & 0x7FFFu) == 0;
    if (mag0) return up ? 0x0001u : 0x8001u;
    return (uint16_t)(up != neg ? h + 1u : h - 1u);
}

/* Elements for code8 in the tiles of level8_params: per tile, values around its levels where the search
 * can go wrong (each of a few random codes' level and its E neighbours, the E value nearest the midpoint
 * of two adjacent levels and its neighbours, values beyond the extreme levels) and random values in
 * the levels' range. Returns the number of elements exactly at a midpoint of two distinct levels (the
 * ties, which the search decides in binary64). */
size_t code8_cases(bool bf16, int quantizer, uint32_t seed, std::vector<uint16_t> &s, std::vector<uint16_t> &z,
                   std::vector<uint16_t> &x) {
    std::vector<uint16_t> ps, pz;
    level8_params(bf16, quantizer, seed, ps, pz);
    std::mt19937 rng(seed + 7);
    size_t ties = 0;
    const uint16_t max_finite = bf16 ? 0x7F7Fu : 0x7BFFu;
    for (size_t i = 0; i < ps.size() && x.size() < ((size_t)1 << 23); i++) {
        const double sd = sqkv_cuda::e_to_double(ps[i], bf16), zd = sqkv_cuda::e_to_double(pz[i], bf16);
        auto level = [&](uint32_t c) { return sqkv_cuda::quant_level(quantizer, 8, bf16, sd, zd, c); };
        auto add = [&](uint16_t h) {
            if ((h & 0x7FFFu) > max_finite) return;
            s.push_back(ps[i]);
            z.push_back(pz[i]);
            x.push_back(h);
        };
        for (int k = 0; k < 3; k++) {
            const uint32_t c = rng() % 255;
            const uint16_t lo = level(c), hi = level(c + 1);
            add(lo);
            add(e_step(lo, true));
            add(e_step(lo, false));
            const double mid = 0.5 * (sqkv_cuda::e_to_double(lo, bf16) + sqkv_cuda::e_to_double(hi, bf16));
            const uint16_t m = sqkv_cuda::double_to_e(mid, bf16);
            if (lo != hi && sqkv_cuda::e_to_double(m, bf16) == mid) ties++;
            add(m);
            add(e_step(m, true));
            add(e_step(m, false));
        }
        add(e_step(level(0), false));
        add(e_step(level(255), true));
        if (i % 64 == 0) {
            /* the same z with s = 0 (a tile of one value): every level is z (SYMMETRIC: zero), code 0 */
            const uint16_t keep_s = ps[i];
            ps[i] = 0;
            add(pz[i]);
            add(e_step(pz[i], true));
            add(e_step(pz[i], false));
            add(e_step(e_step(pz[i], true), true));
            ps[i] = keep_s;
        }
        const double lo_d = sqkv_cuda::e_to_double(level(0), bf16), hi_d = sqkv_cuda::e_to_double(level(255), bf16);
        for (int k = 0; k < 2; k++)
            add(sqkv_cuda::double_to_e(lo_d + (hi_d - lo_d) * std::uniform_real_distribution<double>(0, 1)(rng), bf16));
    }
    return ties;
}

}  // namespace

TEST(DeviceLevels, EightBitCodesMatchNearestCode) {
    SKIP_WITHOUT_GPU();
    for (bool bf16 : {false, true})
        for (int q : {1, 2}) {
            SCOPED_TRACE(std::string(bf16 ? "bf16" : "fp16") + (q == 1 ? " SYMMETRIC" : " ASYMMETRIC"));
            std::vector<uint16_t> s, z, x;
            const size_t ties = code8_cases(bf16, q, 4052 + 2 * q + bf16, s, z, x);
            /* code8 as the encoder calls it, and code8_walk alone on every value (the usual path leaves it
             * few: tiles with possible runs, failed brackets) */
            std::vector<uint16_t> got(x.size()), walked(x.size()), by_runs(x.size(), 0xFFFFu);
            sqkv_cuda_status st = sqkv_cuda_internal_code8(s.data(), z.data(), x.data(), x.size(), q, bf16, 0, got.data());
            ASSERT_EQ(SQKV_OK, st) << sqkv_cuda_status_name(st);
            st = sqkv_cuda_internal_code8(s.data(), z.data(), x.data(), x.size(), q, bf16, 1, walked.data());
            ASSERT_EQ(SQKV_OK, st) << sqkv_cuda_status_name(st);
            /* ASYMMETRIC: code8_runs alone, on every tile (it is exact wherever its brackets hold) */
            if (q == 2) {
                st = sqkv_cuda_internal_code8(s.data(), z.data(), x.data(), x.size(), q, bf16, 2, by_runs.data());
                ASSERT_EQ(SQKV_OK, st) << sqkv_cuda_status_name(st);
            }
            size_t bad = 0, bad_walk = 0, runs = 0, bad_runs = 0, runs_undecided = 0, runs_in_run = 0;
            double levels[256];
            for (size_t i = 0; i < x.size(); i++) {
                if (i == 0 || s[i] != s[i - 1] || z[i] != z[i - 1]) {
                    const double sd = sqkv_cuda::e_to_double(s[i], bf16), zd = sqkv_cuda::e_to_double(z[i], bf16);
                    for (uint32_t c = 0; c < 256; c++)
                        levels[c] = sqkv_cuda::e_to_double(sqkv_cuda::quant_level(q, 8, bf16, sd, zd, c), bf16);
                    for (uint32_t c = 1; c < 256; c++) runs += levels[c] == levels[c - 1];
                }
                const uint32_t want = sqkv_cuda::nearest_code(sqkv_cuda::TableLevels{levels}, 256,
                                                              sqkv_cuda::e_to_double(x[i], bf16));
                if (got[i] != want && bad++ < 8)
                    ADD_FAILURE() << std::hex << "s 0x" << s[i] << " z 0x" << z[i] << " x 0x" << x[i] << std::dec
                                  << ": device " << got[i] << ", nearest_code " << want;
                if (walked[i] != want && bad_walk++ < 8)
                    ADD_FAILURE() << std::hex << "s 0x" << s[i] << " z 0x" << z[i] << " x 0x" << x[i] << std::dec
                                  << ": code8_walk " << walked[i] << ", nearest_code " << want;
                if (q == 2) {
                    if (by_runs[i] == 0xFFFFu) {
                        runs_undecided++;
                    } else {
                        if (by_runs[i] != want && bad_runs++ < 8)
                            ADD_FAILURE() << std::hex << "s 0x" << s[i] << " z 0x" << z[i] << " x 0x" << x[i] << std::dec
                                          << ": code8_runs " << by_runs[i] << ", nearest_code " << want;
                        /* below the first level >= x by more than one: the first of a run, which its second
                         * search found */
                        const double xd = sqkv_cuda::e_to_double(x[i], bf16);
                        runs_in_run += s[i] != 0 && want + 1 < (uint32_t)(std::lower_bound(levels, levels + 256, xd) - levels);
                    }
                }
            }
            EXPECT_EQ(0u, bad) << "of " << x.size();
            EXPECT_EQ(0u, bad_walk) << "of " << x.size();
            if (q == 2) {
                EXPECT_EQ(0u, bad_runs) << "of " << x.size();
                /* its brackets may fail where s = 0 (code8_rare leaves those to code8_walk) and, bf16, where
                 * one of its six levels meets level8's double-rounding case (about 8% of these values, whose
                 * levels are built to have few significant bits), which code8_walk takes */
                EXPECT_LT(runs_undecided, x.size() / (bf16 ? 5 : 100));
                EXPECT_GT(runs_in_run, 1000u);
                printf("%s: code8_runs undecided %zu of %zu, codes that start a run %zu\n", bf16 ? "bf16" : "fp16",
                       runs_undecided, x.size(), runs_in_run);
            }
            /* the cases must reach the paths that decide rarely: exact ties between two levels, and (ASYMMETRIC:
             * z far above s) runs of equal levels */
            EXPECT_GT(ties, 1000u);
            if (q == 2) {
                EXPECT_GT(runs, 1000u);
            }
        }
    uint16_t s = 0x3C00u, z = 0, x = 0x3C00u, out = 0;
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_internal_code8(&s, &z, &x, 1, 3, 0, 0, &out));
}
