/*
 * encode_range_search_test.cc: the GPU encoder's range search (spec/FORMAT.md §14, options.range_search)
 * writes the CPU writer's bytes: whole files compared on fresh random caches for every granularity
 * (PER_TILE and PER_HALF_TILE searched per group in the pruning kernel, PER_HEAD in its own kernel),
 * widths 1..8, both quantizers, fp16 and bf16, keys only / values only / both, keep-all and magnitude
 * pruning, dense windows, section splits, head_dim 64..256 and token counts off multiples of 64.
 * Inputs hold groups whose candidates tie (constants, two distinct values), groups near the largest E
 * value (where the step rule lowers s), and outliers (where a narrower candidate wins).
 * On the host (no GPU): numeric.cuh's candidate parameters and per-group search against the CPU's.
 */
#include <time.h>
#include <xxhash.h>

#include <algorithm>

#include "cuda_test_util.h"
#include "numeric.cuh"

extern "C" {
#include "quantize.h"
}

using namespace sqkv_test;

namespace {

struct SearchCase {
    Case c;
    uint32_t range_search;
    std::string name() const { return c.name() + " range_search " + std::to_string(range_search); }
};

std::vector<uint8_t> cpu_search_file(const SearchCase &sc, const std::vector<std::vector<uint8_t>> &k,
                                     const std::vector<std::vector<uint8_t>> &v, const std::vector<int32_t> &tokens,
                                     uint32_t range_search) {
    Case c = sc.c;
    c.range_search = range_search;
    return cpu_file(c, k, v, tokens);
}

/* The GPU encoder's file (all layers in one call). */
void gpu_search_file(const SearchCase &sc, const std::vector<std::vector<uint8_t>> &k,
                     const std::vector<std::vector<uint8_t>> &v, const std::vector<int32_t> &tokens,
                     std::vector<uint8_t> *file) {
    Case c = sc.c;
    c.range_search = sc.range_search;
    gpu_file(c, k, v, tokens, c.layers, file);
}

/* x stored in the source type, exactly an E value. */
void put_value(std::vector<uint8_t> &out, uint64_t i, double x, sqkv_dtype src, sqkv_dtype e) {
    const uint16_t eb = e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(x) : sqkv_double_to_fp16(x);
    const double xe = sqkv_e_to_double(eb, e);
    if (src == SQKV_DTYPE_FP32) {
        const float f = (float)xe;
        memcpy(&out[4 * i], &f, 4);
    } else {
        const uint16_t h = src == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(xe) : sqkv_double_to_fp16(xe);
        memcpy(&out[2 * i], &h, 2);
    }
}

/* A magnitude near the largest finite E value that the source type holds too (an fp16 source of bf16
 * elements, or the reverse, stops at values both hold exactly: multiples of 256 below 65504). */
double near_max(std::mt19937_64 &rng, const Case &c, double spread) {
    if (c.src != SQKV_DTYPE_FP32 && c.src != c.e) {
        static const double both[] = {65280.0, 65024.0, 64768.0, 64512.0, 61440.0};
        return both[rng() % 5];
    }
    const double emax = c.e == SQKV_DTYPE_BF16 ? 3.3895313892515355e38 : 65504.0;
    return emax * (1.0 - spread * (double)(rng() % 64) / 64.0);
}

/* A tensor [H, T, D] of 32 x 32 regions (whole half tiles of both tensors), each of one kind: constant
 * (every candidate ties), two distinct values (ties between candidates and between levels), values
 * near the largest finite E value of either sign (steps lowered until the top level is finite),
 * normal values with a few large outliers (a narrower candidate wins), zeros, plain normal values. */
std::vector<uint8_t> search_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint32_t H = c.heads, T = c.tokens, D = c.head_dim;
    const size_t elem = c.src == SQKV_DTYPE_FP32 ? 4 : 2;
    std::vector<uint8_t> out((size_t)H * T * D * elem);
    std::normal_distribution<double> nd(0.0, 1.0);
    const uint32_t tr = (T + 31) / 32, cr = (D + 31) / 32;
    struct Region {
        int kind;
        double scale, a, b;
    };
    std::vector<Region> regions((size_t)H * tr * cr);
    for (auto &r : regions) {
        r.kind = (int)(rng() % 7);
        r.scale = std::ldexp(1.0, (int)(rng() % 14) - 9);
        r.a = nd(rng) * r.scale;
        r.b = nd(rng) * r.scale;
    }
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t d = 0; d < D; d++) {
                const Region &r = regions[((size_t)h * tr + t / 32) * cr + d / 32];
                double x = 0.0;
                switch (r.kind) {
                    case 0: x = r.a; break;
                    case 1: x = (rng() & 1) ? r.a : r.b; break;
                    case 2: {
                        /* within a few percent of the largest value; signs mixed in some regions */
                        const double m = near_max(rng, c, r.scale > 0.1 ? 0.05 : 0.0005);
                        x = (r.a < 0 && (rng() & 1)) ? -m : m;
                        if (r.b < 0) x = -x;
                        break;
                    }
                    case 3: {
                        x = nd(rng) * r.scale;
                        if (rng() % 16 == 0) x *= 12.0;
                        break;
                    }
                    case 4: x = (rng() % 3) ? 0.0 : nd(rng) * r.scale; break;
                    default: x = nd(rng) * r.scale;
                }
                put_value(out, ((uint64_t)h * T + t) * D + d, x, c.src, c.e);
            }
    return out;
}

using TensorMaker = std::vector<uint8_t> (*)(std::mt19937_64 &rng, const Case &c);

std::vector<uint8_t> mixed_tensor(std::mt19937_64 &rng, const Case &c) {
    if (rng() % 3 == 0) return random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
    return search_tensor(rng, c);
}

/* Whole-file comparison; returns whether the search changed the CPU's file (so that a sweep can check
 * that it tested something). */
bool check_case(const SearchCase &sc, uint64_t seed, TensorMaker make = mixed_tensor) {
    SCOPED_TRACE(sc.name());
    const Case &c = sc.c;
    std::mt19937_64 rng(seed);
    std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
    for (uint32_t l = 0; l < c.layers; l++) {
        k[l] = make(rng, c);
        v[l] = make(rng, c);
    }
    std::vector<int32_t> tokens(c.tokens);
    for (auto &t : tokens) t = (int32_t)(rng() & 0x7FFFFFFF);
    const std::vector<uint8_t> want = cpu_search_file(sc, k, v, tokens, sc.range_search);
    EXPECT_FALSE(want.empty());
    if (want.empty()) return false;
    std::vector<uint8_t> got;
    gpu_search_file(sc, k, v, tokens, &got);
    EXPECT_EQ("", first_difference(want, got)) << "seed " << seed;
    return want != cpu_search_file(sc, k, v, tokens, 0);
}

Case base_case() {
    Case c = small_case();
    c.bits = 4;
    c.q = SQKV_QUANT_ASYMMETRIC;
    c.gran = SQKV_SCALE_PER_TILE;
    return c;
}

const uint32_t kDims[] = {64, 80, 96, 128, 256};
const sqkv_dtype kSources[] = {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16, SQKV_DTYPE_FP32};
const uint32_t kSearches[] = {SQKV_RANGE_SEARCH_VALUES, SQKV_RANGE_SEARCH_KEYS,
                              SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS};

void vary(Case &c, uint64_t n) {
    c.head_dim = kDims[n % 5];
    c.e = (n / 5) % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
    c.src = kSources[n % 3];
    c.heads = 1 + (uint32_t)(n % 4);
    c.hps = 1 + (uint32_t)(n % 3);
    c.tps = n % 4 == 1 ? 128 : n % 4 == 3 ? 64 : 0;
    c.k = (uint32_t)(n % 6);
    c.tokens = 70 + 29 * (uint32_t)(n % 7);
    c.window = n % 3 == 0 ? 0 : 2 + (uint32_t)(n % 11);
    c.sparsity = n % 5 == 2 ? 0.0 : n % 5 == 4 ? 0.9 : 0.7;
    c.prune = n % 4 == 2 ? SQKV_PRUNE_KEEP_ALL : SQKV_PRUNE_MAGNITUDE;
}

/* The CPU's search of one group (encode_sparse.c search_range, written from §14): candidates from
 * sqkv_quant_candidate_params, the reference codes, a binary64 sum in order, ties to the lower one. */
void cpu_search(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const std::vector<uint16_t> &values, uint16_t *best_s,
                uint16_t *best_z) {
    uint16_t extremes[2];
    if (q == SQKV_QUANT_SYMMETRIC) {
        extremes[0] = 0;
        for (uint16_t x : values) extremes[0] = std::max<uint16_t>(extremes[0], x & 0x7FFFu);
    } else {
        uint32_t lo = 0xFFFFFFFFu, hi = 0;
        for (uint16_t x : values) {
            lo = std::min(lo, sqkv_cuda::e_order_key(x));
            hi = std::max(hi, sqkv_cuda::e_order_key(x));
        }
        extremes[0] = sqkv_cuda::e_from_order_key(lo);
        extremes[1] = sqkv_cuda::e_from_order_key(hi);
    }
    double best = -1.0;
    for (uint32_t i = 0; i < SQKV_RANGE_CANDIDATES; i++) {
        uint16_t s, z, levels[SQKV_MAX_LEVELS];
        sqkv_quant_candidate_params(q, bits, e, extremes, i, &s, &z);
        if (i == 0) {
            *best_s = s;
            *best_z = z;
        }
        if (sqkv_quant_levels(q, bits, e, s, z, levels) != SQKV_OK) continue;
        double error = 0.0;
        for (uint16_t x : values) {
            const double d = sqkv_e_to_double(x, e) - sqkv_e_to_double(levels[sqkv_quant_nearest(levels, 1u << bits, e, x)], e);
            error += d * d;
        }
        if (best < 0 || error < best) {
            best = error;
            *best_s = s;
            *best_z = z;
        }
    }
}

/* A random group of 1..64 E values of one of the kinds of search_tensor. */
std::vector<uint16_t> random_group(std::mt19937_64 &rng, sqkv_dtype e, bool zeros) {
    std::normal_distribution<double> nd(0.0, 1.0);
    const size_t n = 1 + rng() % 64;
    const double emax = e == SQKV_DTYPE_BF16 ? 3.3895313892515355e38 : 65504.0;
    const int kind = (int)(rng() % 5);
    const double scale = std::ldexp(1.0, (int)(rng() % 30) - 20), a = nd(rng) * scale, b = nd(rng) * scale;
    std::vector<uint16_t> g(n);
    for (auto &h : g) {
        double x;
        switch (kind) {
            case 0: x = a; break;
            case 1: x = (rng() & 1) ? a : b; break;
            case 2: x = (rng() & 1 ? -1.0 : 1.0) * emax * (1.0 - 0.02 * std::fabs(nd(rng))); break;
            case 3: x = nd(rng) * scale * (rng() % 10 == 0 ? 20.0 : 1.0); break;
            default: x = nd(rng) * scale;
        }
        if (zeros && rng() % 4 == 0) x = (rng() & 1) ? 0.0 : -0.0;
        h = e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(x) : sqkv_double_to_fp16(x);
        if (!zeros && (h & 0x7FFFu) == 0) h = e == SQKV_DTYPE_BF16 ? 0x3F80u : 0x3C00u; /* pruning keeps no zero */
    }
    return g;
}

}  // namespace

/* No GPU needed: numeric.cuh's candidate parameters (host build of the device code) are the CPU's, for
 * every candidate, width, quantizer and element type, on extremes of every magnitude (subnormal to the
 * largest finite value, either sign, -0). */
TEST(CudaRangeSearch, CandidateParamsMatchTheCpu) {
    std::mt19937_64 rng(seed_of("candidates"));
    uint64_t checked = 0;
    for (int round = 0; round < 4000; round++) {
        const sqkv_dtype e = round % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        const bool bf16 = e == SQKV_DTYPE_BF16;
        const uint16_t inf = bf16 ? 0x7F80u : 0x7C00u;
        auto finite = [&]() {
            uint16_t h;
            do h = (uint16_t)rng();
            while ((h & 0x7FFFu) >= inf);
            if (rng() % 8 == 0) h = (uint16_t)((h & 0x8000u) | (inf - 1 - rng() % 4)); /* near the largest */
            return h;
        };
        uint16_t a = finite(), b = finite();
        if (round % 50 == 0) a = 0x8000u;
        if (sqkv_cuda::e_order_key(a) > sqkv_cuda::e_order_key(b)) std::swap(a, b);
        for (uint32_t bits = 1; bits <= 8; bits++)
            for (int qi = 1; qi <= 2; qi++) {
                const sqkv_quantizer q = (sqkv_quantizer)qi;
                const uint16_t extremes[2] = {q == SQKV_QUANT_SYMMETRIC ? (uint16_t)(b & 0x7FFFu) : a, b};
                for (uint32_t i = 0; i < SQKV_RANGE_CANDIDATES; i++) {
                    uint16_t s0, z0, s1, z1;
                    sqkv_quant_candidate_params(q, bits, e, extremes, i, &s0, &z0);
                    sqkv_cuda::candidate_params(qi, bits, bf16, extremes[0], sqkv_cuda::e_order_key(a),
                                                sqkv_cuda::e_order_key(b), i, &s1, &z1);
                    ASSERT_EQ(s0, s1) << "bits " << bits << " q " << qi << " e " << (int)e << " candidate " << i
                                      << " extremes " << a << " " << b;
                    if (q == SQKV_QUANT_ASYMMETRIC) {
                        ASSERT_EQ(z0, z1) << "candidate " << i;
                    }
                    /* the §7.4 check the search skips by is sqkv_quant_levels' */
                    uint16_t levels[SQKV_MAX_LEVELS];
                    ASSERT_EQ(sqkv_quant_levels(q, bits, e, s0, z0, levels) == SQKV_OK,
                              sqkv_cuda::quant_params_ok(qi, bits, bf16, s1, z1));
                    checked++;
                }
            }
    }
    EXPECT_EQ(4000u * 8 * 2 * 8, checked);
}

/* No GPU needed: the per-group search of the pruning kernel (range_search_group, host build) chooses the
 * CPU's parameters on groups with ties, near-maximal values, outliers and (keep-all) zeros; and the
 * narrower candidates do win on some of them (the search is not a no-op). */
TEST(CudaRangeSearch, GroupSearchMatchesTheCpu) {
    std::mt19937_64 rng(seed_of("groups"));
    uint32_t narrowed = 0;
    for (int round = 0; round < 3000; round++) {
        const sqkv_dtype e = round % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        const bool bf16 = e == SQKV_DTYPE_BF16;
        const std::vector<uint16_t> g = random_group(rng, e, round % 3 == 0);
        uint32_t mx = 0, lo = 0xFFFFFFFFu, hi = 0;
        for (uint16_t x : g) {
            mx = std::max(mx, (uint32_t)(x & 0x7FFFu));
            lo = std::min(lo, sqkv_cuda::e_order_key(x));
            hi = std::max(hi, sqkv_cuda::e_order_key(x));
        }
        const uint32_t bits = 1 + (uint32_t)(rng() % 8);
        for (int qi = 1; qi <= 2; qi++) {
            const sqkv_quantizer q = (sqkv_quantizer)qi;
            uint16_t s0 = 0, z0 = 0, s1 = 0, z1 = 0, s_plain = 0, z_plain = 0;
            cpu_search(q, bits, e, g, &s0, &z0);
            sqkv_cuda::range_search_group(qi, bits, bf16, mx, lo, hi, [&](uint32_t i) { return g[i]; },
                                          (uint32_t)g.size(), &s1, &z1);
            ASSERT_EQ(s0, s1) << "round " << round << " bits " << bits << " q " << qi;
            if (q == SQKV_QUANT_ASYMMETRIC) {
                ASSERT_EQ(z0, z1) << "round " << round << " bits " << bits;
            }
            sqkv_cuda::choose_params(qi, bits, bf16, 1, mx, lo, hi, &s_plain, &z_plain);
            if (s1 != s_plain || z1 != z_plain) narrowed++;
        }
    }
    EXPECT_GT(narrowed, 100u);
}

/* The GPU accepts the option for every tensor choice, with and without keep-all (no device needed). */
TEST(CudaRangeSearch, EncoderAcceptsTheOption) {
    Case c = base_case();
    const sqkv_geometry g = geometry_of(c);
    for (uint32_t rs : kSearches)
        for (int gr = 1; gr <= 3; gr++) {
            sqkv_writer_options o = options_of(c);
            o.scales = (sqkv_scale_granularity)gr;
            o.range_search = rs;
            sqkv_cuda_encoder *enc = nullptr;
            EXPECT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc)) << "range_search " << rs << " gran " << gr;
            EXPECT_NE(nullptr, enc);
            sqkv_cuda_encoder_destroy(enc);
        }
}

/* Every width and quantizer with every granularity and tensor choice, geometries varied. */
TEST(CudaRangeSearch, EveryWidthQuantizerAndGranularity) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    uint32_t changed = 0;
    for (uint32_t bits = 1; bits <= 8; bits++)
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 3; gr++) {
                SearchCase sc{base_case(), kSearches[n % 3]};
                sc.c.bits = bits;
                sc.c.q = (sqkv_quantizer)q;
                sc.c.gran = (sqkv_scale_granularity)gr;
                vary(sc.c, n);
                changed += check_case(sc, seed_of("every-width") + n++) ? 1u : 0u;
            }
    EXPECT_GT(changed, n / 2); /* the search changed most files: these cases test it */
}

/* fp16 from fp16 at head_dim 128 with PER_HEAD scales is where the fast kernels run without the
 * option: with it, the general kernels run, on several layers, head groups and token splits. */
TEST(CudaRangeSearch, FastPathGeometries) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u})
        for (int q = 1; q <= 2; q++)
            for (uint32_t rs : kSearches) {
                SearchCase sc{base_case(), rs};
                sc.c.layers = 3;
                sc.c.heads = 4;
                sc.c.bits = bits;
                sc.c.q = (sqkv_quantizer)q;
                sc.c.gran = SQKV_SCALE_PER_HEAD;
                sc.c.hps = 1 + (uint32_t)(n % 3);
                sc.c.tps = n % 2 ? 128 : 0;
                sc.c.tokens = 256 + 64 * (uint32_t)(n % 2) + 7 * (uint32_t)(n % 3);
                sc.c.window = (uint32_t)(n % 3) * 9;
                check_case(sc, seed_of("fast-geometries") + n++);
            }
}

/* Large PER_HEAD groups (thousands of values over many units: the sum crosses many 256-value rounds)
 * and large tile groups with sparsity 0 (64 values each), bf16 and fp16. */
TEST(CudaRangeSearch, LargeGroups) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (int gr = 1; gr <= 3; gr++)
        for (int q = 1; q <= 2; q++) {
            SearchCase sc{base_case(), SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS};
            sc.c.layers = 1;
            sc.c.heads = 2;
            sc.c.hps = 2;
            sc.c.tokens = 1000 + 13 * (uint32_t)n;
            sc.c.window = 7;
            sc.c.sparsity = n % 2 ? 0.0 : 0.5;
            sc.c.e = n % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
            sc.c.src = sc.c.e;
            sc.c.bits = 3 + (uint32_t)(n % 6);
            sc.c.q = (sqkv_quantizer)q;
            sc.c.gran = (sqkv_scale_granularity)gr;
            check_case(sc, seed_of("large") + n++);
        }
}

/* Only regions of near-maximal values, constants and two-valued regions: candidates whose steps are
 * lowered, and ties between candidates, in every granularity, with pruning and keep-all. */
TEST(CudaRangeSearch, TiesAndNearMaximalValues) {
    SKIP_WITHOUT_GPU();
    auto only_hard = [](std::mt19937_64 &rng, const Case &c) {
        const size_t elem = c.src == SQKV_DTYPE_FP32 ? 4 : 2;
        std::vector<uint8_t> t((size_t)c.heads * c.tokens * c.head_dim * elem);
        std::normal_distribution<double> nd(0.0, 1.0);
        const uint32_t tr = (c.tokens + 31) / 32, cr = (c.head_dim + 31) / 32;
        std::vector<double> a((size_t)c.heads * tr * cr), b(a.size());
        std::vector<int> kind(a.size());
        for (size_t i = 0; i < a.size(); i++) {
            kind[i] = (int)(rng() % 3);
            a[i] = nd(rng);
            b[i] = nd(rng) * 4.0;
        }
        for (uint32_t h = 0; h < c.heads; h++)
            for (uint32_t tk = 0; tk < c.tokens; tk++)
                for (uint32_t d = 0; d < c.head_dim; d++) {
                    const size_t r = ((size_t)h * tr + tk / 32) * cr + d / 32;
                    double x = kind[r] == 0 ? a[r] : kind[r] == 1 ? ((rng() & 1) ? a[r] : b[r])
                                                                 : (a[r] < 0 ? -1.0 : 1.0) * near_max(rng, c, 0.04);
                    if (kind[r] == 2 && b[r] < 0 && (rng() & 1)) x = -x;
                    put_value(t, ((uint64_t)h * c.tokens + tk) * c.head_dim + d, x, c.src, c.e);
                }
        return t;
    };
    uint64_t n = 0;
    for (uint32_t bits = 1; bits <= 8; bits++)
        for (int gr = 1; gr <= 3; gr++) {
            SearchCase sc{base_case(), kSearches[n % 3]};
            sc.c.bits = bits;
            sc.c.q = (sqkv_quantizer)(1 + n % 2);
            sc.c.gran = (sqkv_scale_granularity)gr;
            sc.c.e = (n / 2) % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
            sc.c.src = kSources[n % 3];
            sc.c.prune = n % 3 == 1 ? SQKV_PRUNE_KEEP_ALL : SQKV_PRUNE_MAGNITUDE;
            sc.c.tokens = 90 + 17 * (uint32_t)(n % 5);
            sc.c.window = (uint32_t)(n % 2) * 5;
            check_case(sc, seed_of("ties") + n++, only_hard);
        }
}

/* EXACT values: the option has nothing to choose; the files are the CPU's (which ignores it too). */
TEST(CudaRangeSearch, ExactValuesIgnoreIt) {
    SKIP_WITHOUT_GPU();
    for (uint32_t D : {64u, 128u}) {
        SearchCase sc{base_case(), SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS};
        sc.c.head_dim = D;
        sc.c.bits = 16;
        sc.c.q = SQKV_QUANT_EXACT;
        sc.c.gran = SQKV_SCALE_NONE;
        EXPECT_FALSE(check_case(sc, seed_of("exact") + D));
    }
}
