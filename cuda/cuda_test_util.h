/* cuda_test_util.h: shared helpers of the CUDA tests (device checks, random caches, CPU reference). */
#ifndef SQKV_CUDA_TEST_UTIL_H
#define SQKV_CUDA_TEST_UTIL_H

#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "sqkv.h"
#include "sqkv_cuda.h"

extern "C" {
#include "float16.h"
}

#define SKIP_WITHOUT_GPU()                                                                     \
    do {                                                                                       \
        if (!sqkv_cuda_device_available())                                                     \
            GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none): GPU test skipped"; \
    } while (0)

#define CUDA_OK(call) ASSERT_EQ(cudaSuccess, (call)) << #call
#define SQ_OK(call)                                                                           \
    do {                                                                                      \
        const sqkv_cuda_status st_ = (call);                                                  \
        ASSERT_EQ(SQKV_OK, st_) << #call << ": " << sqkv_cuda_status_name(st_);               \
    } while (0)

namespace sqkv_test {

/* Device buffer owned by the test. */
struct DevBuf {
    void *p = nullptr;
    size_t n = 0;
    DevBuf() = default;
    explicit DevBuf(size_t bytes) { alloc(bytes); }
    void alloc(size_t bytes) {
        free();
        n = bytes;
        if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) p = nullptr;
    }
    void free() {
        if (p) cudaFree(p);
        p = nullptr;
    }
    ~DevBuf() { free(); }
    DevBuf(const DevBuf &) = delete;
    DevBuf &operator=(const DevBuf &) = delete;
};

/* Random dense values for one tensor [H, T, D] in src dtype, with the cases pruning must get right:
 * repeated magnitudes (ties), zeros, negative zeros, subnormals, whole zero rows, constant rows. */
inline std::vector<uint8_t> random_tensor(std::mt19937_64 &rng, uint32_t H, uint32_t T, uint32_t D, sqkv_dtype src,
                                          sqkv_dtype e) {
    const uint64_t n = (uint64_t)H * T * D;
    const size_t es = src == SQKV_DTYPE_FP32 ? 4 : 2;
    std::vector<uint8_t> out(n * es);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::uniform_int_distribution<int> pick(0, 99);
    for (uint64_t row = 0; row < (uint64_t)H * T; row++) {
        const int kind = pick(rng);
        const double scale = std::ldexp(1.0, (int)(rng() % 12) - 8);
        const double constant = nd(rng) * scale;
        for (uint32_t d = 0; d < D; d++) {
            double x;
            if (kind < 2) x = 0.0;                                    /* zero row */
            else if (kind < 4) x = constant;                          /* constant row: all ties */
            else if (kind < 10) x = (double)((int)(rng() % 7) - 3) * scale; /* few distinct values */
            else if (kind < 13) {
                /* a large offset with a range of a few ulps: ASYMMETRIC levels that rounding merges */
                x = constant * 512.0 + nd(rng) * scale;
                if (std::fabs(x) > 30000.0) x = std::copysign(30000.0, x);
            } else {
                x = nd(rng) * scale;
                const int r = pick(rng);
                if (r < 5) x = 0.0;
                else if (r < 7) x = -0.0;
                else if (r < 9) x = std::ldexp(nd(rng), -20); /* fp16 subnormal range */
                else if (r < 11) x = (double)((int)(rng() % 5) - 2) * scale; /* ties with other rows' values */
            }
            /* Values that fit E after conversion; exact in the source type. */
            const uint16_t eb = e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(x) : sqkv_double_to_fp16(x);
            const double xe = sqkv_e_to_double(eb, e);
            const uint64_t i = row * D + d;
            if (src == SQKV_DTYPE_FP32) {
                float f = (float)(kind % 3 == 0 ? x : xe);
                memcpy(&out[4 * i], &f, 4);
            } else {
                const uint16_t h = src == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(xe) : sqkv_double_to_fp16(xe);
                memcpy(&out[2 * i], &h, 2);
            }
        }
    }
    return out;
}

struct Case {
    uint32_t layers, heads, head_dim, tokens, window;
    sqkv_dtype e, src;
    uint32_t bits;
    sqkv_quantizer q;
    sqkv_scale_granularity gran;
    uint32_t k, hps, tps;
    sqkv_prune_mode prune;
    double sparsity;
    uint32_t zstd = 0; /* options.zstd_level */
    uint32_t range_search = 0; /* options.range_search */
    std::string name() const {
        char b[256];
        snprintf(b, sizeof b, "L%u H%u D%u T%u W%u e%d src%d b%u q%d g%d k%u hps%u tps%u prune%d s%.2f zstd%u", layers,
                 heads, head_dim, tokens, window, (int)e, (int)src, bits, (int)q, (int)gran, k, hps, tps, (int)prune,
                 sparsity, zstd);
        return b;
    }
};

/* The tests' common starting point: 2 layers, 3 heads, head_dim 128, 200 tokens (a partial last
 * chunk), no window, fp16, 2-bit SYMMETRIC PER_HEAD at sparsity 0.7, offset interval 2^4. */
inline Case small_case() {
    Case c;
    c.layers = 2;
    c.heads = 3;
    c.head_dim = 128;
    c.tokens = 200;
    c.window = 0;
    c.e = SQKV_DTYPE_FP16;
    c.src = SQKV_DTYPE_FP16;
    c.bits = 2;
    c.q = SQKV_QUANT_SYMMETRIC;
    c.gran = SQKV_SCALE_PER_HEAD;
    c.k = 4;
    c.hps = 1;
    c.tps = 0;
    c.prune = SQKV_PRUNE_MAGNITUDE;
    c.sparsity = 0.7;
    return c;
}

inline int vec_write(void *ctx, const void *data, size_t size) {
    auto *v = (std::vector<uint8_t> *)ctx;
    const uint8_t *p = (const uint8_t *)data;
    v->insert(v->end(), p, p + size);
    return 0;
}

inline sqkv_geometry geometry_of(const Case &c) {
    sqkv_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = c.layers;
    g.n_kv_heads = c.heads;
    g.head_dim = c.head_dim;
    g.n_tokens = c.tokens;
    g.dense_window = c.window;
    g.value_dtype = c.e;
    g.source_dtype = c.src;
    return g;
}

inline sqkv_writer_options options_of(const Case &c) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.prune = c.prune;
    o.sparsity = c.sparsity;
    o.payload_bits = c.bits;
    o.quantizer = c.q;
    o.scales = c.gran;
    o.offset_interval_log2 = c.k;
    o.heads_per_section = c.hps;
    o.tokens_per_section = c.tps;
    o.zstd_level = c.zstd;
    o.range_search = c.range_search;
    return o;
}

/* The CPU writer's file for the given layers (k[l], v[l] host tensors). */
inline std::vector<uint8_t> cpu_file(const Case &c, const std::vector<std::vector<uint8_t>> &k,
                                     const std::vector<std::vector<uint8_t>> &v, const std::vector<int32_t> &tokens) {
    const sqkv_geometry g = geometry_of(c);
    const sqkv_writer_options o = options_of(c);
    sqkv_writer *w = nullptr;
    std::vector<uint8_t> out;
    if (sqkv_writer_create(&g, &o, &w) != SQKV_OK) return out;
    if (!tokens.empty()) sqkv_writer_set_tokens(w, tokens.data(), tokens.size());
    for (uint32_t l = 0; l < c.layers; l++)
        if (sqkv_writer_add_layer(w, l, c.src, k[l].data(), v[l].data()) != SQKV_OK) {
            fprintf(stderr, "cpu add_layer: %s\n", sqkv_writer_error_detail(w));
            sqkv_writer_destroy(w);
            return out;
        }
    if (sqkv_writer_write_callback(w, vec_write, &out) != SQKV_OK) out.clear();
    sqkv_writer_destroy(w);
    return out;
}

/* Seed of a test's random inputs: its name and the clock, so every run draws fresh inputs (failures
 * print the seed). */
inline uint64_t seed_of(const char *name) { return XXH3_64bits(name, strlen(name)) ^ (uint64_t)time(nullptr); }

/* Encodes the whole cache on the GPU (layers in batches of `batch`) and returns the file bytes. */
/* The file the GPU encoder writes, its layers encoded in calls of batches[0], batches[1], ... layers (the
 * list repeated as needed) on one workspace sized for the largest. */
inline void gpu_file(const Case &c, const std::vector<std::vector<uint8_t>> &k, const std::vector<std::vector<uint8_t>> &v,
              const std::vector<int32_t> &tokens, const std::vector<uint32_t> &batches, std::vector<uint8_t> *file) {
    ASSERT_FALSE(batches.empty());
    const uint32_t batch = *std::max_element(batches.begin(), batches.end());
    ASSERT_GT(batch, 0u);
    const sqkv_geometry g = geometry_of(c);
    const sqkv_writer_options o = options_of(c);
    sqkv_cuda_encoder *enc = nullptr;
    SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encode_sizes sz;
    SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
    const size_t es = c.src == SQKV_DTYPE_FP32 ? 4 : 2;
    const size_t tensor_bytes = (size_t)c.heads * c.tokens * c.head_dim * es;
    DevBuf in(2 * tensor_bytes * c.layers), out(sz.layer_capacity * c.layers);
    const uint64_t ws_size = sz.workspace_base + sz.workspace_per_layer * batch;
    DevBuf ws(ws_size);
    ASSERT_TRUE(in.p && out.p && ws.p);
    /* poison the output: every byte of the file must be written by the encoder */
    CUDA_OK(cudaMemset(out.p, 0xA5, out.n));
    std::vector<const void *> kp(c.layers), vp(c.layers), lp(c.layers);
    for (uint32_t l = 0; l < c.layers; l++) {
        uint8_t *base = (uint8_t *)in.p + 2 * tensor_bytes * l;
        CUDA_OK(cudaMemcpy(base, k[l].data(), tensor_bytes, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(base + tensor_bytes, v[l].data(), tensor_bytes, cudaMemcpyHostToDevice));
        kp[l] = base;
        vp[l] = base + tensor_bytes;
        lp[l] = (uint8_t *)out.p + sz.layer_capacity * l;
    }
    if (!tokens.empty()) SQ_OK(sqkv_cuda_encoder_set_tokens(enc, tokens.data(), tokens.size()));
    size_t call = 0;
    for (uint32_t l0 = 0, n = 0; l0 < c.layers; l0 += n, call++) {
        n = std::min(batches[call % batches.size()], c.layers - l0);
        SQ_OK(sqkv_cuda_encode_layers(enc, l0, n, c.src, kp.data() + l0, vp.data() + l0, (void *)lp[l0],
                                      sz.layer_capacity * n, ws.p, ws_size, 0));
        std::vector<uint64_t> ext((size_t)n * sz.sections_per_layer);
        SQ_OK(sqkv_cuda_encode_results(enc, ws.p, ext.data(), 0));
        for (uint64_t x : ext) ASSERT_GE(x, 64u);
    }
    uint64_t fsize = 0;
    if (c.zstd > 0) {
        /* compressed sizes are known only once write_file has compressed the sections */
        EXPECT_EQ(SQKV_ERR_STATE, sqkv_cuda_encoder_file_size(enc, &fsize));
        SQ_OK(sqkv_cuda_encoder_write_file(enc, lp.data(), vec_write, file, 0));
        SQ_OK(sqkv_cuda_encoder_file_size(enc, &fsize));
    } else {
        SQ_OK(sqkv_cuda_encoder_file_size(enc, &fsize));
        SQ_OK(sqkv_cuda_encoder_write_file(enc, lp.data(), vec_write, file, 0));
    }
    EXPECT_EQ(fsize, file->size());
    sqkv_cuda_encoder_destroy(enc);
}

inline void gpu_file(const Case &c, const std::vector<std::vector<uint8_t>> &k, const std::vector<std::vector<uint8_t>> &v,
              const std::vector<int32_t> &tokens, uint32_t batch, std::vector<uint8_t> *file) {
    gpu_file(c, k, v, tokens, std::vector<uint32_t>{batch}, file);
}

/* First differing byte, with the section it falls in (file order of the index of a), or "" when equal. */
inline std::string first_difference(const std::vector<uint8_t> &a, const std::vector<uint8_t> &b) {
    if (a == b) return "";
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) i++;
    char buf[200];
    snprintf(buf, sizeof buf, "sizes %zu vs %zu, first difference at byte %zu", a.size(), b.size(), i);
    std::string s = buf;
    sqkv_reader *r = nullptr;
    if (sqkv_reader_create(nullptr, 0, &r) == SQKV_OK && sqkv_reader_open_memory(r, a.data(), a.size()) == SQKV_OK) {
        size_t n = 0;
        sqkv_reader_section_count(r, &n);
        for (size_t q = 0; q < n; q++) {
            sqkv_section_info si;
            sqkv_reader_section_info(r, q, &si);
            if (i >= si.offset && i < si.offset + 64 + si.stored_size) {
                snprintf(buf, sizeof buf, " in section %zu (kind %u tensor %u layer %u heads %u+%u tokens %u+%u), +%llu",
                         q, si.kind, si.tensor, si.layer, si.head_start, si.head_count, si.token_start, si.token_count,
                         (unsigned long long)(i - si.offset));
                s += buf;
            }
        }
    }
    sqkv_reader_destroy(r);
    return s;
}

}  // namespace sqkv_test

#endif
