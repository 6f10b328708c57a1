/*
 * encode_format11_test.cc: the GPU encoder writes format 1.1's PER_HALF_TILE scales (feature
 * HALF_TILE_SCALES) and keep-all mode (feature ALL_KEPT, spec/FORMAT.md §7.6) exactly as the CPU
 * writer does: whole files compared byte for byte on fresh random caches, across widths 1..8, both
 * quantizers, every granularity with keep-all, element and source types, head_dim, token counts that
 * are not multiples of 64, dense windows and section splits. Inputs are rich in what these modes must
 * get right: half tiles of zeros (empty groups, or all-zero groups with keep-all), -0 next to +0, ties.
 * The range search is accepted (encode_range_search_test). On the host: the GPU's code choice (numeric.cuh nearest_code)
 * against the CPU reference, where 8-bit bf16 groups have runs of equal top levels.
 */
#include <time.h>
#include <xxhash.h>

#include <algorithm>

#include "cuda_test_util.h"
#include "numeric.cuh"

extern "C" {
#include "format.h"
#include "quantize.h"
}

using namespace sqkv_test;

namespace {

/* Stores x in the source type, exactly an E value (or, for an fp32 source when `inexact`, x rounded to
 * binary32 only, so that the encoder's own conversion to E is exercised). */
void put_value(std::vector<uint8_t> &out, uint64_t i, double x, sqkv_dtype src, sqkv_dtype e, bool inexact) {
    const uint16_t eb = e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(x) : sqkv_double_to_fp16(x);
    const double xe = sqkv_e_to_double(eb, e);
    if (src == SQKV_DTYPE_FP32) {
        const float f = (float)(inexact ? x : xe);
        memcpy(&out[4 * i], &f, 4);
    } else {
        const uint16_t h = src == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(xe) : sqkv_double_to_fp16(xe);
        memcpy(&out[2 * i], &h, 2);
    }
}

/* A tensor [H, T, D] made of 32-token x 32-channel regions, each of one kind. A region holds whole
 * half tiles of both tensors (keys: one channel x 32 tokens; values: one token x 32 channels), so
 * half tiles come out empty, all +0, all -0, mixed zeros, constant (all ties), few values (ties and
 * zeros), levels that rounding merges, or ordinary values with zeros and subnormals. */
std::vector<uint8_t> region_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint32_t H = c.heads, T = c.tokens, D = c.head_dim;
    const size_t elem = c.src == SQKV_DTYPE_FP32 ? 4 : 2;
    std::vector<uint8_t> out((size_t)H * T * D * elem);
    std::normal_distribution<double> nd(0.0, 1.0);
    const uint32_t tr = (T + 31) / 32, cr = (D + 31) / 32;
    struct Region {
        int kind;
        double scale, constant;
    };
    std::vector<Region> regions((size_t)H * tr * cr);
    for (auto &r : regions) {
        r.kind = (int)(rng() % 9);
        r.scale = std::ldexp(1.0, (int)(rng() % 14) - 9);
        r.constant = nd(rng) * r.scale;
    }
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t d = 0; d < D; d++) {
                const Region &r = regions[((size_t)h * tr + t / 32) * cr + d / 32];
                double x = 0.0;
                switch (r.kind) {
                    case 0: x = 0.0; break;
                    case 1: x = -0.0; break;
                    case 2: x = (rng() & 1) ? 0.0 : -0.0; break;
                    case 3: x = r.constant; break;
                    case 4: x = (double)((int)(rng() % 5) - 2) * r.scale; break;
                    case 5: {
                        x = r.constant * 512.0 + nd(rng) * r.scale;
                        if (std::fabs(x) > 30000.0) x = std::copysign(30000.0, x);
                        break;
                    }
                    case 6: x = std::ldexp(nd(rng), -18); break; /* fp16 subnormals */
                    default: {
                        x = nd(rng) * r.scale;
                        const uint64_t p = rng() % 100;
                        if (p < 10) x = 0.0;
                        else if (p < 15) x = -0.0;
                        else if (p < 20) x = (double)((int)(rng() % 3) - 1) * r.scale;
                    }
                }
                put_value(out, ((uint64_t)h * T + t) * D + d, x, c.src, c.e, r.kind == 8 && (rng() & 1));
            }
    return out;
}

/* Random tensors of the other CUDA tests (zero rows, constant rows, ties) and region tensors, mixed. */
std::vector<uint8_t> mixed_tensor(std::mt19937_64 &rng, const Case &c) {
    if (rng() & 1) return random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
    return region_tensor(rng, c);
}

/* Every element the same zero: all groups all-zero (keep-all) or empty (pruning). */
std::vector<uint8_t> zero_tensor(std::mt19937_64 &rng, const Case &c) {
    const size_t elem = c.src == SQKV_DTYPE_FP32 ? 4 : 2;
    const uint64_t n = (uint64_t)c.heads * c.tokens * c.head_dim;
    std::vector<uint8_t> out(n * elem);
    const double zero = (rng() & 1) ? 0.0 : -0.0;
    for (uint64_t i = 0; i < n; i++) put_value(out, i, zero, c.src, c.e, false);
    return out;
}

using TensorMaker = std::vector<uint8_t> (*)(std::mt19937_64 &rng, const Case &c);

uint32_t features_of(const Case &c) {
    uint32_t f = 0;
    if (c.bits != 2 && c.bits != 4 && c.bits != 8 && c.bits != 16) f |= SQKV_FEATURE_CODE_WIDTHS;
    if (c.gran == SQKV_SCALE_PER_HALF_TILE) f |= SQKV_FEATURE_HALF_TILE_SCALES;
    if (c.prune == SQKV_PRUNE_KEEP_ALL) f |= SQKV_FEATURE_ALL_KEPT;
    return f;
}

/* What the file must say of these modes, read from the GPU's bytes: header features and version,
 * and in every SPARSE section header the granularity, the ALL_KEPT flag and offset interval. Then
 * the CPU reader's full verification. */
void check_declarations(const Case &c, const std::vector<uint8_t> &file) {
    ASSERT_GE(file.size(), (size_t)SQKV_HEADER_SIZE_V1);
    const uint32_t features = features_of(c);
    EXPECT_EQ(features, sqkv_load_u32(file.data() + SQKV_HDR_REQUIRED_FEATURES));
    EXPECT_EQ(features ? 1u : 0u, sqkv_load_u16(file.data() + SQKV_HDR_VERSION_MINOR));
    sqkv_reader *r = nullptr;
    ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
    ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size())) << sqkv_reader_error_detail(r);
    size_t n = 0, sparse = 0;
    ASSERT_EQ(SQKV_OK, sqkv_reader_section_count(r, &n));
    for (size_t i = 0; i < n; i++) {
        sqkv_section_info si;
        ASSERT_EQ(SQKV_OK, sqkv_reader_section_info(r, i, &si));
        if (si.kind != SQKV_KIND_SPARSE) continue;
        sparse++;
        const uint8_t *h = file.data() + si.offset;
        const bool all_kept = c.prune == SQKV_PRUNE_KEEP_ALL;
        EXPECT_EQ((unsigned)c.gran, (unsigned)h[SQKV_SEC_SCALE_GRANULARITY]) << "section " << i;
        EXPECT_EQ(all_kept ? 0u : c.k, (unsigned)h[SQKV_SEC_OFFSET_INTERVAL_LOG2]) << "section " << i;
        EXPECT_EQ(all_kept ? SQKV_SECTION_FLAG_ALL_KEPT : 0u, sqkv_load_u32(h + SQKV_SEC_FLAGS)) << "section " << i;
    }
    EXPECT_EQ(c.window < c.tokens, sparse > 0);
    EXPECT_EQ(SQKV_OK, sqkv_reader_verify(r)) << sqkv_reader_error_detail(r);
    sqkv_reader_destroy(r);
}

void check_case(const Case &c, uint64_t seed, TensorMaker make = mixed_tensor, uint32_t batch = 0) {
    SCOPED_TRACE(c.name());
    std::mt19937_64 rng(seed);
    std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
    for (uint32_t l = 0; l < c.layers; l++) {
        k[l] = make(rng, c);
        v[l] = make(rng, c);
    }
    std::vector<int32_t> tokens(c.tokens);
    for (auto &t : tokens) t = (int32_t)(rng() & 0x7FFFFFFF);
    const std::vector<uint8_t> want = cpu_file(c, k, v, tokens);
    ASSERT_FALSE(want.empty());
    std::vector<uint8_t> got;
    gpu_file(c, k, v, tokens, batch ? batch : c.layers, &got);
    ASSERT_EQ("", first_difference(want, got)) << "seed " << seed;
    check_declarations(c, got);
}

Case base_case() {
    Case c = small_case();
    c.bits = 4;
    c.q = SQKV_QUANT_ASYMMETRIC;
    c.gran = SQKV_SCALE_PER_HALF_TILE;
    return c;
}

const uint32_t kDims[] = {64, 80, 96, 128, 256};
const sqkv_dtype kSources[] = {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16, SQKV_DTYPE_FP32};

/* Geometry and split of the n-th case of a sweep: every head_dim, source type, both element types,
 * token counts off multiples of 64, dense windows, head groups, token splits, offset intervals. */
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
}

}  // namespace

/* PER_HALF_TILE with pruning: every width 1..8, both quantizers. */
TEST(CudaEncodeFormat11, HalfTileScalesEveryWidth) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits = 1; bits <= 8; bits++)
        for (int q = 1; q <= 2; q++) {
            Case c = base_case();
            c.bits = bits;
            c.q = (sqkv_quantizer)q;
            c.gran = SQKV_SCALE_PER_HALF_TILE;
            vary(c, n);
            check_case(c, seed_of("half-tile") + n++);
        }
}

/* Keep-all mode: every width, both quantizers, every granularity. */
TEST(CudaEncodeFormat11, KeepAllEveryWidthAndGranularity) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits = 1; bits <= 8; bits++)
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 3; gr++) {
                Case c = base_case();
                c.prune = SQKV_PRUNE_KEEP_ALL;
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = (sqkv_scale_granularity)gr;
                vary(c, n + 3);
                check_case(c, seed_of("keep-all") + n++);
            }
}

/* The geometries and types of the fast kernels (fp16 from fp16, head_dim 128, PER_HEAD or PER_TILE,
 * 2/3/4/8 bits): keep-all must leave them for the general kernels and still match. */
TEST(CudaEncodeFormat11, KeepAllWhereTheFastPathWouldRun) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u})
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 2; gr++) {
                Case c = base_case();
                c.prune = SQKV_PRUNE_KEEP_ALL;
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = (sqkv_scale_granularity)gr;
                c.heads = 4;
                c.hps = 1 + (uint32_t)(n % 2);
                c.tokens = 256 + 64 * (uint32_t)(n % 2) + 7 * (uint32_t)(n % 3);
                c.window = (uint32_t)(n % 3) * 9;
                check_case(c, seed_of("keep-all-fast") + n++);
            }
}

/* Half tiles and keep-all on every head_dim and token count near tile edges, several layers encoded one
 * layer per call and in one batch. */
TEST(CudaEncodeFormat11, GeometriesAndBatches) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t D : kDims)
        for (uint32_t T : {1u, 31u, 32u, 33u, 64u, 95u, 129u})
            for (int keep_all = 0; keep_all <= 1; keep_all++) {
                Case c = base_case();
                c.layers = 3;
                c.head_dim = D;
                c.tokens = T + 5;
                c.window = 5;
                c.heads = 2;
                c.prune = keep_all ? SQKV_PRUNE_KEEP_ALL : SQKV_PRUNE_MAGNITUDE;
                c.q = n % 2 ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC;
                c.bits = 1 + (uint32_t)(n % 8);
                c.e = n % 3 == 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
                c.src = kSources[(n / 2) % 3];
                check_case(c, seed_of("geometries") + n, region_tensor, n % 2 ? 1 : 3);
                n++;
            }
}

/* Caches of zeros only, +0 or -0: keep-all groups that are all zero (s = +0, z = the smallest zero),
 * and with pruning empty groups everywhere (all parameters +0). */
TEST(CudaEncodeFormat11, AllZeroCaches) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (int keep_all = 0; keep_all <= 1; keep_all++)
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 3; gr++) {
                Case c = base_case();
                c.prune = keep_all ? SQKV_PRUNE_KEEP_ALL : SQKV_PRUNE_MAGNITUDE;
                c.q = (sqkv_quantizer)q;
                c.gran = (sqkv_scale_granularity)gr;
                c.bits = 2 + (uint32_t)(n % 5);
                c.e = n % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
                c.head_dim = kDims[n % 5];
                c.tokens = 100;
                c.window = n % 2 ? 10 : 0;
                check_case(c, seed_of("zeros") + n++, zero_tensor);
            }
}

/* The range search is accepted with the 1.1 features, for either tensor (encode_range_search_test
 * compares its files). */
TEST(CudaEncodeFormat11, RangeSearchAccepted) {
    Case c = base_case();
    const sqkv_geometry g = geometry_of(c);
    for (uint32_t rs : {SQKV_RANGE_SEARCH_VALUES, SQKV_RANGE_SEARCH_KEYS, SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS})
        for (int keep_all = 0; keep_all <= 1; keep_all++) {
            c.prune = keep_all ? SQKV_PRUNE_KEEP_ALL : SQKV_PRUNE_MAGNITUDE;
            sqkv_writer_options o = options_of(c);
            o.range_search = rs;
            sqkv_cuda_encoder *enc = nullptr;
            EXPECT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc)) << "range_search " << rs;
            EXPECT_NE(nullptr, enc);
            sqkv_cuda_encoder_destroy(enc);
        }
}

/* No GPU needed: numeric.cuh's nearest_code, the code choice of the general kernels, gives the CPU
 * reference's code (quantize.h) for every width and element type: on level tables of reference-like
 * parameters (groups whose range is a few ulps of a large offset, where rounding merges levels, at the
 * top too) and on arbitrary non-decreasing tables with runs, for values at, between, below and above
 * the levels. Above a run of equal top levels the tie goes to the run's first code. */
TEST(CudaEncodeFormat11, NearestCodeMatchesTheCpuReference) {
    std::mt19937_64 rng(seed_of("nearest"));
    auto random_finite = [&](bool bf16) {
        uint16_t h;
        do h = (uint16_t)rng(); while (!sqkv_cuda::e_is_finite(h, bf16));
        return h;
    };
    uint64_t top_runs = 0, above_top = 0;
    for (int it = 0; it < 6000; it++) {
        const bool bf16 = it % 2 == 1;
        const sqkv_dtype e = bf16 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        const uint32_t bits = 1 + (uint32_t)(rng() % 8), L = 1u << bits;
        uint16_t lev[256];
        const int q = 1 + (int)(rng() & 1);
        uint16_t s = 0, z = 0;
        if (it % 3 != 0) {
            /* parameters of a group: a large offset and a range of a few ulps, or two random extremes */
            uint16_t lo = random_finite(bf16);
            uint16_t hi = it % 3 == 1 ? (uint16_t)(lo + rng() % 64) : random_finite(bf16);
            if (!sqkv_cuda::e_is_finite(hi, bf16) || (hi ^ lo) & 0x8000u) hi = lo;
            if (sqkv_e_to_double(lo, e) > sqkv_e_to_double(hi, e)) std::swap(lo, hi);
            const uint16_t extremes[2] = {lo, hi};
            const uint16_t mag = std::max<uint16_t>(lo & 0x7FFFu, hi & 0x7FFFu);
            if (q == 1) sqkv_quant_choose_params(SQKV_QUANT_SYMMETRIC, bits, e, &mag, 1, &s, &z);
            else sqkv_quant_choose_params(SQKV_QUANT_ASYMMETRIC, bits, e, extremes, 2, &s, &z);
            ASSERT_EQ(SQKV_OK, sqkv_quant_levels((sqkv_quantizer)q, bits, e, s, z, lev));
        } else {
            /* any non-decreasing table, values often repeated, the top ones in half the cases */
            uint16_t pool[3];
            for (auto &p : pool) p = random_finite(bf16);
            for (uint32_t c = 0; c < L; c++) lev[c] = rng() % 3 == 0 ? pool[rng() % 3] : random_finite(bf16);
            std::sort(lev, lev + L, [&](uint16_t a, uint16_t b) { return sqkv_e_to_double(a, e) < sqkv_e_to_double(b, e); });
            if (L > 1 && (rng() & 1)) lev[L - 1] = lev[L - 2];
        }
        double table[256];
        for (uint32_t c = 0; c < L; c++) table[c] = sqkv_e_to_double(lev[c], e);
        const bool top_run = L > 1 && table[L - 1] == table[L - 2];
        top_runs += top_run;
        const double top = table[L - 1];
        std::vector<uint16_t> xs;
        for (uint32_t c = 0; c < L; c++) {
            xs.push_back(lev[c]);
            xs.push_back((uint16_t)(lev[c] + 1));
            xs.push_back((uint16_t)(lev[c] - 1));
        }
        for (int i = 0; i < 64; i++) xs.push_back(random_finite(bf16));
        for (uint16_t x : xs) {
            if (!sqkv_cuda::e_is_finite(x, bf16)) continue;
            const double xd = sqkv_e_to_double(x, e);
            above_top += top_run && xd > top;
            const uint32_t want = sqkv_quant_nearest(lev, L, e, x);
            ASSERT_EQ(want, sqkv_cuda::nearest_code(sqkv_cuda::TableLevels{table}, L, xd))
                << "iteration " << it << " bits " << bits << " bf16 " << bf16 << " x 0x" << std::hex << x;
            if (it % 3 != 0) {
                /* the general kernels' form for PER_TILE and PER_HALF_TILE groups: levels computed when asked */
                const sqkv_cuda::OnTheFlyLevels fly{q, bits, bf16, sqkv_e_to_double(s, e), sqkv_e_to_double(z, e)};
                ASSERT_EQ(want, sqkv_cuda::nearest_code(fly, L, xd))
                    << "iteration " << it << " bits " << bits << " bf16 " << bf16 << " x 0x" << std::hex << x;
            }
        }
    }
    /* the case this test is for must have come up */
    EXPECT_GT(top_runs, 100u);
    EXPECT_GT(above_top, 100u);
}
