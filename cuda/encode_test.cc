/*
 * encode_test.cc: the GPU encoder writes exactly the CPU encoder's file, on fresh random caches, across
 * head_dim, token counts, heads, payload widths, quantizers, scale granularities, section splits,
 * element and source types. Also: device XXH3 against xxHash, input errors, argument checks.
 */
#include <xxhash.h>

#include "cuda_test_util.h"

using namespace sqkv_test;

namespace {

using TensorMaker = std::vector<uint8_t> (*)(std::mt19937_64 &rng, const Case &c);

std::vector<uint8_t> random_case_tensor(std::mt19937_64 &rng, const Case &c) {
    return random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
}

/* The GPU file equals the CPU writer's, the layers encoded in calls of the sizes in batches (repeated;
 * {c.layers} by default) on one workspace. */
void check_case_batches(const Case &c, uint64_t seed, const std::vector<uint32_t> &batches, TensorMaker make = random_case_tensor) {
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
    gpu_file(c, k, v, tokens, batches, &got);
    ASSERT_EQ("", first_difference(want, got)) << "seed " << seed;
}

void check_case(const Case &c, uint64_t seed, uint32_t batch = 0, TensorMaker make = random_case_tensor) {
    check_case_batches(c, seed, {batch ? batch : c.layers}, make);
}

Case base_case() {
    Case c = small_case();
    return c;
}

}  // namespace

TEST(CudaChecksum, MatchesXxh3OnManySizes) {
    SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(seed_of("checksum"));
    std::vector<uint64_t> sizes;
    for (uint64_t s = 0; s < 300; s++) sizes.push_back(s);
    for (uint64_t s : {1023ull, 1024ull, 1025ull, 2047ull, 2048ull, 2049ull, 4096ull + 64, 100000ull, 1048577ull})
        sizes.push_back(s);
    for (int i = 0; i < 40; i++) sizes.push_back(241 + rng() % 300000);
    std::vector<std::vector<uint8_t>> host(sizes.size());
    std::vector<DevBuf> dev(sizes.size());
    std::vector<const void *> ptrs(sizes.size());
    for (size_t i = 0; i < sizes.size(); i++) {
        host[i].resize(sizes[i] + 8);
        for (auto &b : host[i]) b = (uint8_t)rng();
        dev[i].alloc(sizes[i] + 8);
        CUDA_OK(cudaMemcpy(dev[i].p, host[i].data(), sizes[i], cudaMemcpyHostToDevice));
        ptrs[i] = dev[i].p;
    }
    const uint64_t wsz = sqkv_cuda_checksums_workspace(sizes.data(), sizes.size());
    ASSERT_GT(wsz, 0u);
    DevBuf ws(wsz);
    std::vector<uint64_t> got(sizes.size());
    SQ_OK(sqkv_cuda_checksums(ptrs.data(), sizes.data(), sizes.size(), got.data(), ws.p, wsz, 0));
    for (size_t i = 0; i < sizes.size(); i++)
        EXPECT_EQ(XXH3_64bits(host[i].data(), sizes[i]), got[i]) << "size " << sizes[i];
}

TEST(CudaEncode, DefaultOptionsAcrossHeadDims) {
    SKIP_WITHOUT_GPU();
    for (uint32_t D : {64u, 80u, 96u, 128u, 256u}) {
        Case c = base_case();
        c.head_dim = D;
        c.tokens = 64 + 37 + (uint32_t)(D % 7) * 64;
        check_case(c, seed_of("dims") + D);
    }
}

TEST(CudaEncode, PayloadWidthsQuantizersGranularities) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 4u, 8u, 16u})
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 2; gr++) {
                Case c = base_case();
                c.bits = bits;
                if (bits == 16) {
                    if (q == 2 || gr == 2) continue;
                    c.q = SQKV_QUANT_EXACT;
                    c.gran = SQKV_SCALE_NONE;
                } else {
                    c.q = (sqkv_quantizer)q;
                    c.gran = (sqkv_scale_granularity)gr;
                }
                c.head_dim = (n % 2) ? 96 : 128;
                c.tokens = 130 + 17 * (uint32_t)n;
                c.window = (n % 3 == 0) ? 0 : 5 + (uint32_t)n;
                check_case(c, seed_of("widths") + n++);
            }
}

/* Format 1.1 CODE_WIDTHS (§7.5): widths 1, 3, 5, 6, 7, whose codes straddle bytes and 32-bit words,
 * on the general kernels; both quantizers and granularities, every head_dim of the other tests,
 * token counts that are not multiples of 64, dense windows, section splits, offset intervals. The
 * file header must declare CODE_WIDTHS and version 1.1, as the CPU writer's does. */
TEST(CudaEncode, CodeWidths) {
    SKIP_WITHOUT_GPU();
    const uint32_t dims[] = {64, 80, 96, 128, 256};
    uint64_t n = 0;
    for (uint32_t bits : {1u, 3u, 5u, 6u, 7u})
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 2; gr++) {
                Case c = base_case();
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = (sqkv_scale_granularity)gr;
                c.head_dim = dims[n % 5];
                c.heads = 1 + (uint32_t)(n % 4);
                c.hps = 1 + (uint32_t)(n % 3);
                c.tps = (n % 4 == 1) ? 128 : 0;
                c.k = (uint32_t)(n % 6);
                c.tokens = 131 + 23 * (uint32_t)(n % 7);
                c.window = (n % 3 == 0) ? 0 : 3 + (uint32_t)n;
                c.sparsity = n % 5 == 4 ? 0.0 : 0.8;
                c.e = n % 6 == 5 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
                check_case(c, seed_of("code-widths") + n++);
            }
}

/* The candidate default (spec/QUANTIZATION.md §2): 3 bits, SYMMETRIC, PER_TILE, sparsity 0.8, across
 * head_dim and head counts up to 32; the header's features and version checked explicitly. */
TEST(CudaEncode, ThreeBitSymmetricPerTileAcrossGeometries) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t D : {64u, 80u, 96u, 128u, 256u})
        for (uint32_t H : {1u, 8u, 32u}) {
            if (H == 32 && D > 128) continue;
            Case c = base_case();
            c.bits = 3;
            c.q = SQKV_QUANT_SYMMETRIC;
            c.gran = SQKV_SCALE_PER_TILE;
            c.sparsity = 0.8;
            c.head_dim = D;
            c.heads = H;
            c.layers = 1 + (uint32_t)(n % 2);
            c.tokens = 64 * (1 + (uint32_t)(n % 3)) + 1 + (uint32_t)(n * 13 % 63);
            c.window = (uint32_t)(n % 2) * 9;
            SCOPED_TRACE(c.name());
            std::mt19937_64 rng(seed_of("3bit") + n++);
            std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
            for (uint32_t l = 0; l < c.layers; l++) {
                k[l] = random_case_tensor(rng, c);
                v[l] = random_case_tensor(rng, c);
            }
            const std::vector<uint8_t> want = cpu_file(c, k, v, {});
            ASSERT_FALSE(want.empty());
            std::vector<uint8_t> got;
            gpu_file(c, k, v, {}, c.layers, &got);
            ASSERT_GE(got.size(), 64u);
            EXPECT_EQ(1u, (uint32_t)(got[10] | (got[11] << 8))) << "version_minor";
            EXPECT_EQ((uint32_t)SQKV_FEATURE_CODE_WIDTHS, (uint32_t)(got[16] | (got[17] << 8) | (got[18] << 16) |
                                                                     ((uint32_t)got[19] << 24)))
                << "required_features";
            ASSERT_EQ("", first_difference(want, got));
        }
}

TEST(CudaEncode, ElementAndSourceTypes) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16})
        for (sqkv_dtype src : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16, SQKV_DTYPE_FP32})
            for (int q = 1; q <= 2; q++) {
                Case c = base_case();
                c.e = e;
                c.src = src;
                c.q = (sqkv_quantizer)q;
                c.bits = q == 1 ? 4 : 2;
                c.gran = q == 1 ? SQKV_SCALE_PER_TILE : SQKV_SCALE_PER_HEAD;
                c.head_dim = 64 + 16 * (uint32_t)(n % 3);
                c.window = 3;
                check_case(c, seed_of("types") + n++);
            }
}

TEST(CudaEncode, SectionSplitsHeadsAndOffsets) {
    SKIP_WITHOUT_GPU();
    const uint32_t heads[] = {1, 2, 5, 8, 32};
    uint64_t n = 0;
    for (uint32_t H : heads)
        for (uint32_t hps : {1u, 3u})
            for (uint32_t tps : {0u, 64u, 192u}) {
                Case c = base_case();
                c.heads = H;
                c.hps = hps;
                c.tps = tps;
                c.tokens = 250 + (uint32_t)n % 70;
                c.window = (uint32_t)(n % 4) * 7;
                c.k = (uint32_t)(n % 6);
                c.head_dim = H == 32 ? 64 : 128;
                c.layers = 1 + (uint32_t)(n % 2);
                check_case(c, seed_of("splits") + n++);
            }
}

TEST(CudaEncode, SparsityLevelsAndNoPruning) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (double s : {0.0, 0.3, 0.5, 0.9, 0.99}) {
        Case c = base_case();
        c.sparsity = s;
        c.head_dim = 80;
        check_case(c, seed_of("sparsity") + n++);
    }
    Case c = base_case();
    c.prune = SQKV_PRUNE_NONE;
    c.bits = 8;
    c.q = SQKV_QUANT_ASYMMETRIC;
    check_case(c, seed_of("noprune"));
}

/* head_dim 128 with an fp16 source (or bf16 into bf16: FastPathBf16* below) takes the fast kernels
 * (encode_fast.cu) for PER_HEAD and PER_TILE scales and EXACT values; here PER_HEAD and EXACT: every keep
 * count (one element, ties cut inside a row, no pruning at all), both quantizers, every payload width,
 * partial last chunks and token splits. */
TEST(CudaEncode, FastPathKeepCountsQuantizersWidths) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (double sp : {0.0, 0.3, 0.7, 0.9, 0.995}) {
        Case c = base_case();
        c.sparsity = sp;
        c.tokens = 64 * 3 + 5 + (uint32_t)n;
        check_case(c, seed_of("fast-keep") + n++);
    }
    for (uint32_t bits : {2u, 3u, 4u, 8u, 16u})
        for (int q = 1; q <= 2; q++) {
            if (bits == 16 && q == 2) continue;
            Case c = base_case();
            c.bits = bits;
            c.q = bits == 16 ? SQKV_QUANT_EXACT : (sqkv_quantizer)q;
            c.gran = bits == 16 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_HEAD;
            c.heads = 2 + (uint32_t)(n % 3);
            c.hps = 1 + (uint32_t)(n % 2);
            c.tps = (n % 3 == 1) ? 128 : 0;
            c.k = (uint32_t)(n % 5);
            c.tokens = 131 + 61 * (uint32_t)(n % 4);
            c.window = (uint32_t)(n % 2) * 6;
            check_case(c, seed_of("fast-widths") + n++);
        }
    Case c = base_case();
    c.prune = SQKV_PRUNE_NONE;
    check_case(c, seed_of("fast-noprune"));
}

/* PER_TILE on the fast kernels: each tile's parameters and codes come from the pruning pass (boundaries
 * for 2, 3 and 4 bits, the nearest-level search for 8), in both tensors, at every keep count, with empty
 * tiles, partial chunks and section splits. */
TEST(CudaEncode, FastPathPerTileQuantizersWidths) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u})
        for (int q = 1; q <= 2; q++)
            for (double sp : {0.0, 0.8, 0.995}) {
                Case c = base_case();
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = SQKV_SCALE_PER_TILE;
                c.sparsity = sp;
                c.heads = 1 + (uint32_t)(n % 3);
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = (n % 3 == 1) ? 128 : 0;
                c.k = (uint32_t)(n % 5);
                c.tokens = 64 * 2 + 7 + 29 * (uint32_t)(n % 4);
                c.window = (uint32_t)(n % 2) * 6;
                check_case(c, seed_of("fast-tile") + n++);
            }
    Case c = base_case();
    c.gran = SQKV_SCALE_PER_TILE;
    c.q = SQKV_QUANT_ASYMMETRIC;
    c.prune = SQKV_PRUNE_NONE;
    check_case(c, seed_of("fast-tile-noprune"));
}

/* fp16 rows (source fp16) made for the row selection and the kept-element walk: few distinct magnitudes
 * (ties at the threshold), magnitudes around 2^-5 and near the largest finite value, subnormal only,
 * consecutive magnitudes (the threshold needs every bisection step), rows with about the keep count of
 * elements at one magnitude above a run of equal ones, and rows of three magnitudes. */
namespace {

std::vector<uint8_t> tie_heavy_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint64_t rows = (uint64_t)c.heads * c.tokens, D = c.head_dim;
    std::vector<uint8_t> out(rows * D * 2);
    const uint32_t keep = (uint32_t)(D - (uint32_t)(c.sparsity * D)); /* roughly; exactness not needed */
    for (uint64_t row = 0; row < rows; row++) {
        const uint32_t kind = (uint32_t)(rng() % 7);
        uint16_t pool[4];
        for (uint16_t &p : pool) {
            switch (kind) {
                case 0: p = (uint16_t)(0x27FCu + rng() % 9); break;             /* around 2^-5 */
                case 1: p = (uint16_t)(0x7BF8u + rng() % 8); break;             /* near 65504 */
                case 2: p = (uint16_t)(1u + rng() % 0x3FFu); break;             /* subnormal */
                default: p = (uint16_t)(rng() % 0x7C00u); break;
            }
        }
        const uint32_t base = (uint32_t)(rng() % 0x7B00u), start = (uint32_t)(rng() % D);
        const uint32_t n_big = keep + (uint32_t)(rng() % 7) - 3;
        for (uint64_t d = 0; d < D; d++) {
            uint16_t h;
            if (kind <= 3) h = pool[rng() % (kind == 3 ? 2 : 4)];
            else if (kind == 4) h = (uint16_t)(base + (uint32_t)d); /* consecutive magnitudes */
            else if (kind == 5) h = (uint16_t)((d + start) % D < n_big ? std::max<uint32_t>(pool[0], 0x0400u) : pool[1] & 0x03FFu);
            else h = (uint16_t)(0x2800u + (uint32_t)(rng() % 3) - 1u); /* 2^-5 and its neighbours */
            h = (uint16_t)(h | ((rng() & 1) << 15));
            memcpy(&out[2 * (row * D + d)], &h, 2);
        }
    }
    return out;
}

}  // namespace

/* Row selection on tie-heavy rows (tie_heavy_tensor): the writer's default setting and other keep
 * counts, quantizers and granularities on the fast path (head_dim 128, fp16). */
TEST(CudaEncode, FastPathTieHeavyRows) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (double sp : {0.0, 0.3, 0.8, 0.9, 0.995})
        for (int g = 0; g < 3; g++) {
            Case c = base_case();
            c.sparsity = sp;
            c.q = g == 1 ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC;
            c.gran = g == 1 ? SQKV_SCALE_PER_HEAD : SQKV_SCALE_PER_TILE;
            c.bits = g == 2 ? 4 : (n % 2 ? 3 : 2);
            c.heads = 2;
            c.tokens = 64 * 3 + 5 + (uint32_t)n;
            c.window = (uint32_t)(n % 2) * 6;
            check_case(c, seed_of("tie-heavy") + n++, 0, tie_heavy_tensor);
        }
}

/* 8-bit PER_TILE codes on tie-heavy rows: tiles spanning a few fp16 steps have runs of many equal levels
 * among their 256, where the code search (encode_fast.cu tile_code, which walks from an estimated code)
 * must still pick the first code of the nearest run, as the CPU encoder does. */
TEST(CudaEncode, FastPathEightBitTileRuns) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (double sp : {0.0, 0.8, 0.95})
        for (int q = 1; q <= 2; q++) {
            Case c = base_case();
            c.sparsity = sp;
            c.bits = 8;
            c.q = (sqkv_quantizer)q;
            c.gran = SQKV_SCALE_PER_TILE;
            c.heads = 2;
            c.tokens = 64 * 2 + 9 + (uint32_t)n;
            check_case(c, seed_of("eight-bit-runs") + n++, 0, tie_heavy_tensor);
        }
}

/* Keys as real models have them: per head, a few channels large in every token (a key tile that keeps
 * all 64 rows of its unit), a few always zero (empty tiles), the rest ordinary, with signs mixed and
 * some rows of ties. Stresses the fast path's staging of keys by rows (each element's position from its
 * channel's kept rows above it) and the per-channel statistics read back afterwards. */
namespace {

std::vector<uint8_t> outlier_channel_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint64_t D = c.head_dim;
    std::vector<uint8_t> out((uint64_t)c.heads * c.tokens * D * 2);
    std::normal_distribution<double> nd(0.0, 1.0);
    for (uint32_t h = 0; h < c.heads; h++) {
        std::vector<double> gain(D);
        for (auto &g : gain) {
            const uint32_t kind = (uint32_t)(rng() % 16);
            g = kind == 0 ? std::ldexp(1.0, 5 + (int)(rng() % 6)) : kind == 1 ? 0.0 : 1.0;
        }
        const double offset = (double)(rng() % 3) - 1.0; /* all-positive / all-negative outlier channels */
        for (uint32_t t = 0; t < c.tokens; t++) {
            const bool ties = rng() % 8 == 0;
            for (uint64_t d = 0; d < D; d++) {
                double x = ties ? (double)((int)(rng() % 3) - 1) : nd(rng);
                if (gain[d] > 1.0) x = (x + 4.0 * offset) * gain[d];
                else x *= gain[d] * 0.125;
                const uint16_t e = sqkv_double_to_fp16(x);
                memcpy(&out[2 * (((uint64_t)h * c.tokens + t) * D + d)], &e, 2);
            }
        }
    }
    return out;
}

}  // namespace

TEST(CudaEncode, FastPathOutlierChannelKeys) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u})
        for (int g = 0; g < 3; g++)
            for (double sp : {0.8, 0.95, 0.5}) {
                Case c = base_case();
                c.bits = bits;
                c.q = g == 1 ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC;
                c.gran = g == 2 ? SQKV_SCALE_PER_HEAD : SQKV_SCALE_PER_TILE;
                if (g == 0 && n % 2) c.q = SQKV_QUANT_SYMMETRIC;
                c.sparsity = sp;
                c.heads = 2 + (uint32_t)(n % 2);
                c.tokens = 64 * 2 + 11 + 53 * (uint32_t)(n % 3);
                c.window = (uint32_t)(n % 2) * 6;
                check_case(c, seed_of("outlier-keys") + n++, 0, outlier_channel_tensor);
            }
}

/* Units (64-token chunks of a head) whose payload is empty, a few codes or ordinary, so that the units'
 * payload bits meet inside words in every way: the fast pruning pass writes the PER_TILE codes and EXACT
 * values of its unit itself (a unit's start chained from the units before it), and the words units share
 * or fill in part are merged afterwards (encode_fast.cu write_unit_payload, encode_section.cuh
 * merge_unit_edges). A chunk is all zeros (nothing kept), holds 1 to 5 nonzero elements (fewer codes than
 * a word holds), or is random. */
namespace {

std::vector<uint8_t> uneven_chunk_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint64_t D = c.head_dim;
    std::vector<uint8_t> out((uint64_t)c.heads * c.tokens * D * 2, 0);
    std::normal_distribution<double> nd(0.0, 1.0);
    for (uint32_t h = 0; h < c.heads; h++)
        for (uint32_t t0 = 0; t0 < c.tokens; t0 += 64) {
            const uint32_t kind = (uint32_t)(rng() % 3), rows = std::min<uint32_t>(64, c.tokens - t0);
            const uint32_t few = 1 + (uint32_t)(rng() % 5);
            for (uint32_t i = 0; kind == 1 && i < few; i++) {
                const uint64_t at = ((uint64_t)h * c.tokens + t0 + rng() % rows) * D + rng() % D;
                const uint16_t e = sqkv_double_to_fp16(nd(rng));
                memcpy(&out[2 * at], &e, 2);
            }
            for (uint32_t t = t0; kind == 2 && t < t0 + rows; t++)
                for (uint64_t d = 0; d < D; d++) {
                    const uint16_t e = sqkv_double_to_fp16(nd(rng));
                    memcpy(&out[2 * (((uint64_t)h * c.tokens + t) * D + d)], &e, 2);
                }
        }
    return out;
}

}  // namespace

TEST(CudaEncode, FastPathPayloadEdgesBetweenUnits) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u, 16u})
        for (double sp : {0.8, 0.99})
            for (int rep = 0; rep < 3; rep++) {
                Case c = base_case();
                c.bits = bits;
                c.q = bits == 16 ? SQKV_QUANT_EXACT : (n % 2 ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC);
                c.gran = bits == 16 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_TILE;
                c.sparsity = sp;
                c.heads = 1 + (uint32_t)(n % 3);
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = rep == 1 ? 192 : 0;
                c.tokens = 64 * 9 + 13 * (uint32_t)rep;
                c.window = (uint32_t)(n % 2) * 6;
                check_case(c, seed_of("unit-edges") + n++, 0, uneven_chunk_tensor);
            }
}

/* PER_TILE codes and EXACT values: the pruning pass writes each unit's payload at the start it would have
 * if every row kept `keep` (encode_fast.cuh fast_payload_in_prune); a section with a row of fewer
 * nonzero elements than that has its units moved by the section kernel. Full rows everywhere but a few
 * short ones (0 to keep - 1 nonzero elements) in some heads, at the first row, a chunk's first and last
 * row and the last token, so that in one file some sections hold the assumption and others do not, at
 * every position of the short unit in its section. */
namespace {

std::vector<uint8_t> short_rows_tensor(std::mt19937_64 &rng, const Case &c) {
    std::vector<uint8_t> out = random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
    const uint32_t keep = (uint32_t)std::lround((1.0 - c.sparsity) * c.head_dim);
    const uint32_t es = c.src == SQKV_DTYPE_FP32 ? 4 : 2;
    for (uint32_t h = 0; h < c.heads; h++) {
        if (rng() % 3 == 0) continue; /* this head's rows all full */
        const uint32_t picks[] = {0u, 63u, 64u, 127u, c.tokens - 1, (uint32_t)(rng() % c.tokens)};
        for (uint32_t t : picks) {
            if (t >= c.tokens || rng() % 2) continue;
            const uint32_t nonzero = keep ? (uint32_t)(rng() % keep) : 0u;
            uint8_t *row = &out[((uint64_t)h * c.tokens + t) * c.head_dim * es];
            for (uint32_t d = nonzero; d < c.head_dim; d++) memset(row + (uint64_t)((d * 37u + t) % c.head_dim) * es, 0, es);
        }
    }
    return out;
}

}  // namespace

TEST(CudaEncode, FastPathAssumedPayloadStarts) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (uint32_t bits : {2u, 3u, 4u, 8u, 16u})
            for (int q = 1; q <= 2; q++)
                for (int rep = 0; rep < 2; rep++) {
                    if (bits == 16 && q == 2) continue;
                    Case c = base_case();
                    c.bits = bits;
                    c.q = bits == 16 ? SQKV_QUANT_EXACT : (sqkv_quantizer)q;
                    c.gran = bits == 16 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_TILE;
                    c.sparsity = rep ? 0.8 : 0.7;
                    if (bf16) c.e = c.src = SQKV_DTYPE_BF16;
                    c.layers = 2;
                    c.heads = 3;
                    c.hps = 1 + (uint32_t)(n % 2);
                    c.tps = rep ? 128 : 0;
                    c.tokens = 64 * 5 + 21;
                    check_case(c, seed_of("assumed-starts") + n++, 0, short_rows_tensor);
                }
}

/* bf16 elements from a bf16 source take the fast kernels too (head_dim 128). Selection and staging are
 * those of fp16; the parameters are not: bf16 midpoints and the differences the nearest-level rule takes
 * need not be exact in binary64, so the tile bounds come from numeric.cuh group_code_bounds_e. These rows
 * make every such case: rows at scales from 2^-126 to 2^120, so that a key tile (one channel down 64
 * tokens) keeps values far below its levels (a positive value below 2^-53 s ties between -s and s and
 * takes the lower code), subnormal rows, rows at the largest finite values (levels that overflow, steps
 * reduced), rows of huge and tiny values, and rows of a few distinct values (ties). */
namespace {

std::vector<uint8_t> wide_range_bf16_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint64_t rows = (uint64_t)c.heads * c.tokens, D = c.head_dim;
    std::vector<uint8_t> out(rows * D * 2);
    for (uint64_t row = 0; row < rows; row++) {
        const uint32_t kind = (uint32_t)(rng() % 6);
        const uint32_t row_exp = 1u + (uint32_t)(rng() % 247); /* biased exponent of the row's scale */
        uint16_t pool[3];
        for (uint16_t &p : pool) p = (uint16_t)((1u + rng() % 254) << 7 | (rng() & 0x7Fu));
        for (uint64_t d = 0; d < D; d++) {
            uint32_t ex, mant = (uint32_t)(rng() & 0x7Fu);
            switch (kind) {
                case 0: ex = std::min<uint32_t>(254, row_exp + (uint32_t)(rng() % 8)); break;
                case 1: ex = (uint32_t)(rng() % 3); break;                      /* subnormal (and zero) */
                case 2: ex = 254 - (uint32_t)(rng() % 2); break;                /* the largest finite */
                case 3: ex = rng() & 1 ? 227 : 27; break;                       /* 2^100 and 2^-100 */
                case 4: ex = 0; mant = pool[rng() % 3]; break;                  /* a few values: ties */
                default: ex = 107 + (uint32_t)(rng() % 40); break;              /* 2^-20 .. 2^19 */
            }
            uint16_t h = kind == 4 ? (uint16_t)mant : (uint16_t)(ex << 7 | mant);
            h = (uint16_t)(h | ((rng() & 1) << 15));
            memcpy(&out[2 * (row * D + d)], &h, 2);
        }
    }
    return out;
}

Case bf16_case() {
    Case c = base_case();
    c.e = SQKV_DTYPE_BF16;
    c.src = SQKV_DTYPE_BF16;
    return c;
}

}  // namespace

TEST(CudaEncode, FastPathBf16WidthsQuantizersGranularities) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u, 16u})
        for (int q = 1; q <= 2; q++)
            for (int gran = 1; gran <= 2; gran++) {
                if (bits == 16 && (q == 2 || gran == 2)) continue;
                for (double sp : {0.0, 0.8}) {
                    Case c = bf16_case();
                    c.bits = bits;
                    c.q = bits == 16 ? SQKV_QUANT_EXACT : (sqkv_quantizer)q;
                    c.gran = bits == 16 ? SQKV_SCALE_NONE : gran == 1 ? SQKV_SCALE_PER_HEAD : SQKV_SCALE_PER_TILE;
                    c.sparsity = sp;
                    c.heads = 1 + (uint32_t)(n % 3);
                    c.hps = 1 + (uint32_t)(n % 2);
                    c.tps = (n % 3 == 1) ? 128 : 0;
                    c.k = (uint32_t)(n % 5);
                    c.tokens = 64 * 2 + 7 + 29 * (uint32_t)(n % 4);
                    c.window = (uint32_t)(n % 2) * 6;
                    check_case(c, seed_of("bf16-fast") + n, 0, n % 2 ? wide_range_bf16_tensor : random_case_tensor);
                    n++;
                }
            }
}

TEST(CudaEncode, FastPathBf16WideRangeAndTies) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u})
        for (int g = 0; g < 3; g++)
            for (double sp : {0.0, 0.5, 0.8, 0.95}) {
                Case c = bf16_case();
                c.bits = bits;
                c.q = g == 1 ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC;
                c.gran = g == 2 ? SQKV_SCALE_PER_HEAD : SQKV_SCALE_PER_TILE;
                if (g == 0 && n % 2) c.q = SQKV_QUANT_SYMMETRIC;
                c.sparsity = sp;
                c.heads = 2;
                c.tokens = 64 * 2 + 11 + 53 * (uint32_t)(n % 3);
                check_case(c, seed_of("bf16-wide") + n, 0, n % 3 == 2 ? tie_heavy_tensor : wide_range_bf16_tensor);
                n++;
            }
}

/* Channels far from zero next to their spread (real key caches have many): after pruning, such a channel's
 * tile holds values close to one another and to its centre, so an 8-bit tile's levels repeat (levels8.cuh
 * code8_runs). A quarter of the channels have a centre 16 to 512 times their spread, either sign; the rest
 * are small, so those channels' elements are the ones kept. fp16 or bf16 as c.e says. */
namespace {

std::vector<uint8_t> offset_channel_tensor(std::mt19937_64 &rng, const Case &c) {
    const uint64_t D = c.head_dim;
    std::vector<uint8_t> out((uint64_t)c.heads * c.tokens * D * 2);
    std::normal_distribution<double> nd(0.0, 1.0);
    for (uint32_t h = 0; h < c.heads; h++) {
        std::vector<double> centre(D), spread(D);
        for (uint64_t d = 0; d < D; d++) {
            spread[d] = std::ldexp(1.0, (int)(rng() % 6) - 3);
            const double sign = rng() % 2 ? 1.0 : -1.0;
            centre[d] = rng() % 4 == 0 ? sign * spread[d] * (double)(16u << (rng() % 6)) : 0.0;
            if (centre[d] == 0.0) spread[d] *= 0.01;
        }
        for (uint32_t t = 0; t < c.tokens; t++)
            for (uint64_t d = 0; d < D; d++) {
                const double x = centre[d] + spread[d] * nd(rng);
                const uint16_t e = c.e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(x) : sqkv_double_to_fp16(x);
                memcpy(&out[2 * (((uint64_t)h * c.tokens + t) * D + d)], &e, 2);
            }
    }
    return out;
}

}  // namespace

TEST(CudaEncode, FastPathEightBitOffsetChannels) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (bool bf16 : {false, true})
        for (double sp : {0.8, 0.5, 0.95})
            for (int q = 1; q <= 2; q++) {
                Case c = bf16 ? bf16_case() : base_case();
                c.bits = 8;
                c.q = (sqkv_quantizer)q;
                c.gran = SQKV_SCALE_PER_TILE;
                c.sparsity = sp;
                c.heads = 2;
                c.tokens = 64 * 3 + 5 + 29 * (uint32_t)(n % 3);
                check_case(c, seed_of("eight-bit-offset-channels") + n++, 0, offset_channel_tensor);
            }
}

/* The zstd layer (codec 1) is applied on the host as the sections leave the GPU; the file must still be
 * sqkv_writer's, byte for byte, and actually compressed (smaller than the same file without zstd). */
TEST(CudaEncode, ZstdLayerSameFileAsTheWriter) {
    SKIP_WITHOUT_GPU();
    const uint64_t seed = seed_of("zstd");
    Case c = base_case();
    struct Variant {
        uint32_t bits;
        sqkv_quantizer q;
        sqkv_scale_granularity gran;
        uint32_t window, zstd;
        sqkv_prune_mode prune;
    };
    const Variant variants[] = {
        {2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 0, 1, SQKV_PRUNE_MAGNITUDE}, /* the writer default, zstd 1 */
        {2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 40, 3, SQKV_PRUNE_MAGNITUDE},
        {3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 0, 19, SQKV_PRUNE_MAGNITUDE},
        {16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 70, 3, SQKV_PRUNE_MAGNITUDE},
        /* format 1.1: half tiles, and keep-all (no bitmap or offset streams: two empty stream records) */
        {4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, 10, 3, SQKV_PRUNE_MAGNITUDE},
        {4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, 0, 1, SQKV_PRUNE_KEEP_ALL},
    };
    for (const Variant &v : variants) {
        c.prune = v.prune;
        c.bits = v.bits;
        c.q = v.q;
        c.gran = v.gran;
        c.window = v.window;
        c.sparsity = 0.8;
        c.zstd = v.zstd;
        check_case(c, seed);
        /* the check above is only worth something if zstd changed the file */
        std::mt19937_64 rng(seed);
        std::vector<std::vector<uint8_t>> k(c.layers), vv(c.layers);
        for (uint32_t l = 0; l < c.layers; l++) {
            k[l] = random_case_tensor(rng, c);
            vv[l] = random_case_tensor(rng, c);
        }
        std::vector<int32_t> tokens(c.tokens, 7);
        Case plain = c;
        plain.zstd = 0;
        const size_t with_zstd = cpu_file(c, k, vv, tokens).size(), without = cpu_file(plain, k, vv, tokens).size();
        EXPECT_LT(with_zstd, without) << c.name();
    }
}

TEST(CudaEncode, ManyLayersInBatches) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 7;
    c.heads = 4;
    c.tokens = 300;
    c.window = 20;
    check_case(c, seed_of("batches"), 3);
}

/* Batches above kInlineSourceLayers (32) pass their inputs through the workspace, smaller ones in the
 * kernels' arguments; calls on one workspace use its two slots of error words in turn. Fast path (fp16,
 * head_dim 128) and general kernels (fp32 source, head_dim 96, a dense window). */
TEST(CudaEncode, LargeBatchesAndSuccessiveCalls) {
    SKIP_WITHOUT_GPU();
    for (int general = 0; general < 2; general++) {
        Case c = base_case();
        c.layers = 41;
        c.heads = 1;
        c.tokens = general ? 90 : 70;
        if (general) {
            c.src = SQKV_DTYPE_FP32;
            c.head_dim = 96;
            c.window = 6;
        }
        for (uint32_t batch : {41u, 33u, 32u, 5u, 1u}) check_case(c, seed_of("large-batch") + 64 * general + batch, batch);
    }
}

/* Calls of growing and shrinking layer counts on one workspace: the per-layer arrays of a call sit at
 * offsets that depend on its layer count (encode.cu layer_arrays), so each call finds what a call of
 * another size left there, and must not depend on it. The payloads the pruning pass writes itself
 * (PER_TILE 2 and 3 bits, EXACT), partial chunks, with and without a dense window. */
TEST(CudaEncode, BatchSizesVaryOnOneWorkspace) {
    SKIP_WITHOUT_GPU();
    const std::vector<uint32_t> schedule = {1, 3, 2, 1, 4, 2};
    int n = 0;
    for (int kind = 0; kind < 3; kind++)
        for (uint32_t window : {0u, 9u}) {
            Case c = base_case();
            c.layers = 13;
            c.heads = 2;
            c.tokens = 200;
            c.window = window;
            c.q = kind == 2 ? SQKV_QUANT_EXACT : kind == 1 ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC;
            c.bits = kind == 2 ? 16 : kind == 1 ? 3 : 2;
            c.gran = kind == 2 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_TILE;
            check_case_batches(c, seed_of("batch-sizes") + n++, schedule);
        }
}

/* One encoder and one workspace, calls with and without a NaN in turn: each call's verdict is its own
 * (the error words a call uses are zeroed by the call before it, encode.cu). */
TEST(CudaEncode, ErrorVerdictsOfSuccessiveCallsOnOneWorkspace) {
    SKIP_WITHOUT_GPU();
    for (int general = 0; general < 2; general++) {
        Case c = base_case();
        c.layers = 1;
        if (general) c.head_dim = 96;
        const sqkv_geometry g = geometry_of(c);
        const sqkv_writer_options o = options_of(c);
        const size_t n = (size_t)c.heads * c.tokens * c.head_dim;
        std::vector<uint16_t> clean(n), bad;
        std::mt19937_64 rng(seed_of("error-slots") + general);
        for (auto &x : clean) x = (uint16_t)(0x3000u + rng() % 0x0C00u) | (uint16_t)((rng() & 1u) << 15);
        bad = clean;
        bad[n / 3] = 0x7E00u; /* NaN */
        sqkv_cuda_encoder *enc = nullptr;
        SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
        sqkv_cuda_encode_sizes sz;
        SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
        DevBuf cd(n * 2), bd(n * 2), out(sz.layer_capacity), ws(sz.workspace_base + sz.workspace_per_layer);
        CUDA_OK(cudaMemcpy(cd.p, clean.data(), n * 2, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(bd.p, bad.data(), n * 2, cudaMemcpyHostToDevice));
        const bool nan_in[] = {false, true, false, false, true, true, false, true, false};
        for (size_t i = 0; i < sizeof nan_in; i++) {
            const void *kp[1] = {nan_in[i] && (i & 1) ? bd.p : cd.p}, *vp[1] = {nan_in[i] && !(i & 1) ? bd.p : cd.p};
            SQ_OK(sqkv_cuda_encode_layers(enc, 0, 1, c.src, kp, vp, out.p, out.n, ws.p, ws.n, 0));
            EXPECT_EQ(nan_in[i] ? SQKV_ERR_NONFINITE_INPUT : SQKV_OK, sqkv_cuda_encode_results(enc, ws.p, nullptr, 0))
                << "general " << general << " call " << i;
            if (!nan_in[i]) SQ_OK(sqkv_cuda_encoder_reset(enc));
        }
        sqkv_cuda_encoder_destroy(enc);
    }
}

/* Several batches pending at once (sqkv_cuda.h), on up to SQKV_CUDA_MAX_PENDING_BATCHES workspaces and two
 * streams, results read in another order than queued, one batch with a NaN (its verdict is its own and
 * its layer is encoded again): the file is the CPU writer's. Then the refusals: a fifth pending batch, a
 * workspace that holds a pending batch, layers of a pending batch, results where nothing is pending, a
 * reset with batches pending. */
TEST(CudaEncode, PendingBatchesOnSeveralWorkspaces) {
    SKIP_WITHOUT_GPU();
    for (int general = 0; general < 2; general++) {
        Case c = base_case();
        c.layers = 9;
        c.heads = 2;
        c.tokens = 130;
        if (general) c.head_dim = 96;
        const sqkv_geometry g = geometry_of(c);
        const sqkv_writer_options o = options_of(c);
        std::mt19937_64 rng(seed_of("pending") + general);
        std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
        for (uint32_t l = 0; l < c.layers; l++) {
            k[l] = random_case_tensor(rng, c);
            v[l] = random_case_tensor(rng, c);
        }
        std::vector<int32_t> tokens(c.tokens, 3);
        const std::vector<uint8_t> want = cpu_file(c, k, v, tokens);
        ASSERT_FALSE(want.empty());
        sqkv_cuda_encoder *enc = nullptr;
        SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
        sqkv_cuda_encode_sizes sz;
        SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
        const size_t tb = k[0].size();
        DevBuf in(2 * tb * c.layers + tb), out(sz.layer_capacity * c.layers);
        const uint64_t wsz = sz.workspace_base + sz.workspace_per_layer * 2;
        DevBuf ws[SQKV_CUDA_MAX_PENDING_BATCHES + 1];
        for (DevBuf &w : ws) w.alloc(wsz);
        std::vector<const void *> kp(c.layers), vp(c.layers), lp(c.layers);
        for (uint32_t l = 0; l < c.layers; l++) {
            uint8_t *base = (uint8_t *)in.p + 2 * tb * l;
            CUDA_OK(cudaMemcpy(base, k[l].data(), tb, cudaMemcpyHostToDevice));
            CUDA_OK(cudaMemcpy(base + tb, v[l].data(), tb, cudaMemcpyHostToDevice));
            kp[l] = base;
            vp[l] = base + tb;
            lp[l] = (uint8_t *)out.p + sz.layer_capacity * l;
        }
        /* layer 2's keys with a NaN, at the end of the input buffer */
        std::vector<uint16_t> nan_keys(tb / 2);
        memcpy(nan_keys.data(), k[2].data(), tb);
        nan_keys[nan_keys.size() / 2] = 0x7E00u;
        uint8_t *nan_at = (uint8_t *)in.p + 2 * tb * c.layers;
        CUDA_OK(cudaMemcpy(nan_at, nan_keys.data(), tb, cudaMemcpyHostToDevice));
        cudaStream_t st[2];
        CUDA_OK(cudaStreamCreateWithFlags(&st[0], cudaStreamNonBlocking));
        CUDA_OK(cudaStreamCreateWithFlags(&st[1], cudaStreamNonBlocking));
        SQ_OK(sqkv_cuda_encoder_set_tokens(enc, tokens.data(), tokens.size()));
        auto queue = [&](uint32_t first, uint32_t n, int w, const void *const *kk) {
            SQ_OK(sqkv_cuda_encode_layers(enc, first, n, c.src, kk, vp.data() + first, (void *)lp[first],
                                          sz.layer_capacity * n, ws[w].p, wsz, st[w & 1]));
        };
        const void *k2[1] = {nan_at};
        queue(0, 2, 0, kp.data());
        queue(2, 1, 1, k2);
        queue(3, 2, 2, kp.data() + 3);
        queue(5, 1, 3, kp.data() + 5);
        EXPECT_EQ(SQKV_ERR_NONFINITE_INPUT, sqkv_cuda_encode_results(enc, ws[1].p, nullptr, st[1]));
        queue(2, 1, 1, kp.data() + 2); /* again, without the NaN */
        SQ_OK(sqkv_cuda_encode_results(enc, ws[2].p, nullptr, st[0]));
        queue(6, 2, 4, kp.data() + 6); /* a fifth workspace: ws[2]'s slot is free again */
        SQ_OK(sqkv_cuda_encode_results(enc, ws[0].p, nullptr, st[0]));
        SQ_OK(sqkv_cuda_encode_results(enc, ws[3].p, nullptr, st[0]));
        queue(8, 1, 0, kp.data() + 8);
        SQ_OK(sqkv_cuda_encode_results(enc, ws[4].p, nullptr, st[0]));
        SQ_OK(sqkv_cuda_encode_results(enc, ws[1].p, nullptr, st[0]));
        SQ_OK(sqkv_cuda_encode_results(enc, ws[0].p, nullptr, st[0]));
        std::vector<uint8_t> got;
        SQ_OK(sqkv_cuda_encoder_write_file(enc, lp.data(), vec_write, &got, st[0]));
        EXPECT_EQ("", first_difference(want, got)) << "general " << general;
        sqkv_cuda_encoder_destroy(enc);

        /* refusals (each leaves its encoder failed: errors are sticky) */
        auto fresh = [&]() -> sqkv_cuda_encoder * {
            sqkv_cuda_encoder *x = nullptr;
            EXPECT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &x));
            return x;
        };
        auto queue_on = [&](sqkv_cuda_encoder *x, uint32_t first, int w) {
            return sqkv_cuda_encode_layers(x, first, 1, c.src, kp.data() + first, vp.data() + first, (void *)lp[first],
                                           sz.layer_capacity, ws[w].p, wsz, st[0]);
        };
        sqkv_cuda_encoder *x = fresh();
        for (int w = 0; w < SQKV_CUDA_MAX_PENDING_BATCHES; w++) SQ_OK(queue_on(x, (uint32_t)w, w));
        EXPECT_EQ(SQKV_ERR_STATE, queue_on(x, 4, 4));
        sqkv_cuda_encoder_destroy(x);
        x = fresh();
        SQ_OK(queue_on(x, 0, 0));
        EXPECT_EQ(SQKV_ERR_STATE, queue_on(x, 1, 0));
        sqkv_cuda_encoder_destroy(x);
        x = fresh();
        SQ_OK(queue_on(x, 0, 0));
        EXPECT_EQ(SQKV_ERR_STATE, queue_on(x, 0, 1));
        sqkv_cuda_encoder_destroy(x);
        x = fresh();
        SQ_OK(queue_on(x, 0, 0));
        EXPECT_EQ(SQKV_ERR_STATE, sqkv_cuda_encode_results(x, ws[1].p, nullptr, st[0]));
        sqkv_cuda_encoder_destroy(x);
        x = fresh();
        SQ_OK(queue_on(x, 0, 0));
        EXPECT_EQ(SQKV_ERR_STATE, sqkv_cuda_encoder_reset(x));
        sqkv_cuda_encoder_destroy(x);
        CUDA_OK(cudaDeviceSynchronize());
        CUDA_OK(cudaStreamDestroy(st[0]));
        CUDA_OK(cudaStreamDestroy(st[1]));
    }
}

/* A workspace freed and allocated again (often at the same address) with other contents, after a reset:
 * the plan is uploaded again and the output is the same (sqkv_cuda.h, encode_layers). */
TEST(CudaEncode, WorkspaceReallocatedAfterReset) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 1;
    const sqkv_geometry g = geometry_of(c);
    const sqkv_writer_options o = options_of(c);
    std::mt19937_64 rng(seed_of("realloc"));
    const std::vector<uint8_t> k = random_case_tensor(rng, c), v = random_case_tensor(rng, c);
    sqkv_cuda_encoder *enc = nullptr;
    SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encode_sizes sz;
    SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
    DevBuf kd(k.size()), vd(v.size()), out(sz.layer_capacity);
    CUDA_OK(cudaMemcpy(kd.p, k.data(), k.size(), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(vd.p, v.data(), v.size(), cudaMemcpyHostToDevice));
    const void *kp[1] = {kd.p}, *vp[1] = {vd.p};
    const uint64_t wsz = sz.workspace_base + sz.workspace_per_layer;
    std::vector<uint8_t> first(sz.layer_capacity), again(sz.layer_capacity);
    for (int round = 0; round < 3; round++) {
        DevBuf ws(wsz);
        CUDA_OK(cudaMemset(ws.p, round == 0 ? 0 : 0xFF, wsz));
        CUDA_OK(cudaMemset(out.p, 0, out.n));
        SQ_OK(sqkv_cuda_encode_layers(enc, 0, 1, c.src, kp, vp, out.p, out.n, ws.p, wsz, 0));
        SQ_OK(sqkv_cuda_encode_results(enc, ws.p, nullptr, 0));
        CUDA_OK(cudaMemcpy(round == 0 ? first.data() : again.data(), out.p, out.n, cudaMemcpyDeviceToHost));
        if (round > 0) {
            EXPECT_TRUE(first == again) << "round " << round;
        }
        SQ_OK(sqkv_cuda_encoder_reset(enc));
    }
    sqkv_cuda_encoder_destroy(enc);
}

/* write_file with more layers than its ring of host buffers (encode.cu put_layers: 4), with and without
 * zstd (the compression pool), one and several sections per layer: the writer's bytes. */
TEST(CudaEncode, WriteFileThroughTheLayerRing) {
    SKIP_WITHOUT_GPU();
    for (uint32_t zstd : {0u, 1u, 3u})
        for (uint32_t layers : {1u, 4u, 5u, 11u}) {
            Case c = base_case();
            c.layers = layers;
            c.heads = 3;
            c.tokens = 260;
            c.window = 10;
            c.zstd = zstd;
            c.q = SQKV_QUANT_ASYMMETRIC;
            c.gran = SQKV_SCALE_PER_TILE;
            c.tps = layers == 11 ? 128 : 0; /* several sections per (layer, tensor, head) */
            check_case(c, seed_of("write-ring") + 16 * zstd + layers, 2);
        }
}

TEST(CudaEncode, NonFiniteAndOutOfRangeInputAreErrors) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 1;
    c.src = SQKV_DTYPE_FP32;
    const sqkv_geometry g = geometry_of(c);
    const sqkv_writer_options o = options_of(c);
    const size_t n = (size_t)c.heads * c.tokens * c.head_dim;
    for (int which = 0; which < 2; which++) {
        std::vector<float> host(n, 0.5f);
        host[n / 2 + 3] = which == 0 ? NAN : 1e6f; /* 1e6 does not fit fp16 */
        sqkv_cuda_encoder *enc = nullptr;
        SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
        sqkv_cuda_encode_sizes sz;
        SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
        DevBuf in(n * 4), out(sz.layer_capacity), ws(sz.workspace_base + sz.workspace_per_layer);
        CUDA_OK(cudaMemcpy(in.p, host.data(), n * 4, cudaMemcpyHostToDevice));
        const void *kp[1] = {in.p}, *vp[1] = {in.p};
        SQ_OK(sqkv_cuda_encode_layers(enc, 0, 1, SQKV_DTYPE_FP32, kp, vp, out.p, out.n, ws.p, ws.n, 0));
        EXPECT_EQ(which == 0 ? SQKV_ERR_NONFINITE_INPUT : SQKV_ERR_RANGE_INPUT,
                  sqkv_cuda_encode_results(enc, ws.p, nullptr, 0));
        sqkv_cuda_encoder_destroy(enc);
    }
}

/* The fast path (fp16 or bf16 source, head_dim 128) finds infinities and NaN while it selects (bf16 has
 * three more exponent bits to test): every channel position class (first and last of each half row), keys
 * and values, PER_HEAD and PER_TILE; the same input without the special value encodes. */
TEST(CudaEncode, FastPathNonFiniteInputIsAnError) {
    SKIP_WITHOUT_GPU();
    for (int type_gran = 0; type_gran < 4; type_gran++) {
        const int gran = type_gran & 1;
        const bool bf16 = type_gran >= 2;
        Case c = base_case();
        c.layers = 1;
        if (bf16) c.e = c.src = SQKV_DTYPE_BF16;
        if (gran) {
            c.q = SQKV_QUANT_ASYMMETRIC;
            c.gran = SQKV_SCALE_PER_TILE;
            c.sparsity = 0.8;
        }
        const sqkv_geometry g = geometry_of(c);
        const sqkv_writer_options o = options_of(c);
        const size_t n = (size_t)c.heads * c.tokens * c.head_dim;
        const uint16_t specials[2][3] = {{0x7E00u, 0x7C00u, 0xFC00u}, {0x7FC0u, 0x7F80u, 0xFF80u}}; /* NaN, +inf, -inf */
        const uint32_t channels[4] = {0, 63, 64, 127};
        for (int trial = 0; trial < 13; trial++) {
            std::vector<uint16_t> keys(n), values(n);
            std::mt19937_64 rng(seed_of("fast-nonfinite") + trial);
            for (size_t i = 0; i < n; i++) {
                keys[i] = (uint16_t)(0x3000u + rng() % 0x0C00u) | (uint16_t)((rng() & 1u) << 15);
                values[i] = (uint16_t)(0x3000u + rng() % 0x0C00u) | (uint16_t)((rng() & 1u) << 15);
            }
            if (trial < 12) { /* trial 12: no special value */
                const size_t row = (size_t)(rng() % (c.heads * c.tokens));
                std::vector<uint16_t> &t = trial & 1 ? values : keys;
                t[row * c.head_dim + channels[(trial >> 1) % 4]] = specials[bf16][trial % 3];
            }
            sqkv_cuda_encoder *enc = nullptr;
            SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
            sqkv_cuda_encode_sizes sz;
            SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
            DevBuf kd(n * 2), vd(n * 2), out(sz.layer_capacity), ws(sz.workspace_base + sz.workspace_per_layer);
            CUDA_OK(cudaMemcpy(kd.p, keys.data(), n * 2, cudaMemcpyHostToDevice));
            CUDA_OK(cudaMemcpy(vd.p, values.data(), n * 2, cudaMemcpyHostToDevice));
            const void *kp[1] = {kd.p}, *vp[1] = {vd.p};
            SQ_OK(sqkv_cuda_encode_layers(enc, 0, 1, c.src, kp, vp, out.p, out.n, ws.p, ws.n, 0));
            EXPECT_EQ(trial < 12 ? SQKV_ERR_NONFINITE_INPUT : SQKV_OK, sqkv_cuda_encode_results(enc, ws.p, nullptr, 0))
                << "granularity " << gran << " bf16 " << bf16 << " trial " << trial;
            sqkv_cuda_encoder_destroy(enc);
        }
    }
}

TEST(CudaEncode, ArgumentChecksBeforeLaunch) {
    /* No GPU needed: every check here happens before anything is queued. */
    Case c = base_case();
    const sqkv_geometry g = geometry_of(c);
    sqkv_writer_options o = options_of(c);
    sqkv_cuda_encoder *enc = nullptr;
    /* the format 1.1 features (encode_format11_test) and the range search (encode_range_search_test)
     * are written by the GPU */
    o.scales = SQKV_SCALE_PER_HALF_TILE;
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encoder_destroy(enc);
    enc = nullptr;
    o = options_of(c);
    o.prune = SQKV_PRUNE_KEEP_ALL;
    o.offset_interval_log2 = 0;
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encoder_destroy(enc);
    enc = nullptr;
    o = options_of(c);
    o.range_search = SQKV_RANGE_SEARCH_KEYS;
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encoder_destroy(enc);
    enc = nullptr;
    o = options_of(c);
    o.payload_bits = 9; /* invalid for the CPU writer too */
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_encoder_create(&g, &o, &enc));
    EXPECT_EQ(nullptr, enc);
    o = options_of(c);
    o.payload_bits = 3; /* CODE_WIDTHS: written by the GPU */
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encoder_destroy(enc);
    enc = nullptr;
    o = options_of(c);
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encode_sizes sz;
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_sizes(enc, &sz));
    EXPECT_GT(sz.layer_capacity, 0u);
    const void *kp[1] = {(void *)0x1000}, *vp[1] = {(void *)0x1000};
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT,
              sqkv_cuda_encode_layers(enc, 5, 1, SQKV_DTYPE_FP16, kp, vp, (void *)0x1000, sz.layer_capacity,
                                      (void *)0x1000, 1ull << 40, 0));
    sqkv_cuda_encoder_destroy(enc);
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    EXPECT_EQ(SQKV_ERR_BUFFER_TOO_SMALL,
              sqkv_cuda_encode_layers(enc, 0, 1, SQKV_DTYPE_FP16, kp, vp, (void *)0x1000, sz.layer_capacity - 1,
                                      (void *)0x1000, 1ull << 40, 0));
    sqkv_cuda_encoder_destroy(enc);
    ASSERT_EQ(SQKV_OK, sqkv_cuda_encoder_create(&g, &o, &enc));
    EXPECT_EQ(SQKV_ERR_BUFFER_TOO_SMALL,
              sqkv_cuda_encode_layers(enc, 0, 1, SQKV_DTYPE_FP16, kp, vp, (void *)0x1000, sz.layer_capacity,
                                      (void *)0x1000, 16, 0));
    EXPECT_STRNE("", sqkv_cuda_encoder_error_detail(enc));
    sqkv_cuda_encoder_destroy(enc);
}
