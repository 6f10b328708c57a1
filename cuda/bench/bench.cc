/*
 * bench.cc: GPU encode / decode throughput of SQKV against a device-to-device copy measured in the same
 * run (CUDA events, warm-up, medians). Throughput is in GB/s of dense fp16: bytes read for encode,
 * bytes written for decode; the copy counts bytes read plus bytes written, as usual.
 *
 *   sqkv_cuda_bench [--reps N] [--quick] [--config N] [--no-e2e] [--out FILE] [--kv DIR] [--chunks]
 *
 * --chunks: each encode also as 2, 4, 8, 16 and 32 calls of fewer layers, two workspaces in turn, on one
 * stream and alternating between two (bench_chunked_encode); each decode also one layer per call.
 *
 * --kv DIR: also the real caches of DIR (shared/data/kv: man_bash and py_json_decoder, fp16 [8, 2, 1024,
 * 128] each), tiled to the Llama-3-8B shape (layer l, head h, token t of the input is layer l % 8, head
 * h % 2, token t % 1024 of one of them, the caches alternating by layer), for the writer's default
 * options, 2-bit per-head, 4-bit, EXACT, 8-bit and the bf16 default (the fp16 values rounded to bf16). With --config N, only
 * that configuration, on the synthetic data and then on the real caches.
 */
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "sqkv.h"
#include "sqkv_cuda.h"
extern "C" {
#include "float16.h"
#include "tools/common/kv_npy_cache.h"
}

/* fp16 rounding through the float16 conversion in cuda_fp16 is device-only here; a small host one: */
static uint16_t sqkv_fp16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    int32_t e = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
    uint32_t m = u & 0x7FFFFFu;
    if (e >= 31) return (uint16_t)(sign | 0x7BFF);
    if (e <= 0) return (uint16_t)sign; /* tiny values flush (bench data only) */
    uint32_t h = ((uint32_t)e << 10) | (m >> 13);
    const uint32_t rem = m & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

/* bf16: the top half of a binary32 value, rounded to nearest even (finite values only: bench data) */
static uint16_t sqkv_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

namespace {

int g_reps = 15;
uint32_t g_chunks = 0; /* --chunks: also time the encode as several calls on two streams */
bool g_e2e = true;
/* --kv: the real caches, and whether the shape being measured takes its input from them */
sqkv_npy_cache g_real[2];
bool g_use_real = false;
std::string g_report;

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fputs(buf, stdout);
    fflush(stdout);
    g_report += buf;
}

#define CK(call)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)
#define SK(call)                                                                                          \
    do {                                                                                                  \
        sqkv_cuda_status s_ = (call);                                                                     \
        if (s_ != SQKV_OK) {                                                                              \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, sqkv_cuda_status_name(s_));      \
            exit(1);                                                                                      \
        }                                                                                                 \
    } while (0)

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/* Times fn (which queues work on stream) with events: warm-up runs, then g_reps timed runs; median ms. */
template <typename F>
double time_ms(cudaStream_t stream, F fn, int warm = 3) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < warm; i++) fn();
    CK(cudaStreamSynchronize(stream));
    std::vector<double> t;
    for (int i = 0; i < g_reps; i++) {
        CK(cudaEventRecord(a, stream));
        fn();
        CK(cudaEventRecord(b, stream));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return median(t);
}

/* fp16 (or bf16) bits of a roughly normal value (sum of uniforms), with a per-channel scale as real K caches have
 * (outlier channels). */
void fill_elements(uint16_t *p, size_t n, uint64_t seed, uint32_t D, bool bf16) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        const uint64_t r = x * 0x2545F4914F6CDD1Dull;
        const float u = ((float)(r & 0xFFFF) + (float)((r >> 16) & 0xFFFF) + (float)((r >> 32) & 0xFFFF) +
                         (float)((r >> 48) & 0xFFFF)) / 65536.0f - 2.0f;
        const uint32_t d = (uint32_t)(i % D);
        const float v = u * (d % 17 == 3 ? 8.0f : 1.0f);
        p[i] = bf16 ? sqkv_bf16_bits(v) : sqkv_fp16_bits(v);
    }
}

}  // namespace

namespace {

struct Shape {
    const char *name;
    uint32_t layers, heads, tokens, dim;
};

/* One tensor (tensor 0 K, 1 V) of input layer `layer` of shape sh from the real caches (--kv), as the
 * file comment says. */
void fill_real(uint16_t *p, uint32_t layer, uint32_t tensor, const Shape &sh, bool bf16) {
    const sqkv_npy_cache &c = g_real[layer % 2];
    const uint16_t *src = tensor ? c.v : c.k;
    for (uint32_t h = 0; h < sh.heads; h++)
        for (uint32_t t = 0; t < sh.tokens; t++) {
            const uint16_t *row = src + (((uint64_t)(layer % c.n_layers) * c.n_kv_heads + h % c.n_kv_heads) * c.n_tokens +
                                         t % c.n_tokens) * c.head_dim;
            uint16_t *dst = p + ((uint64_t)h * sh.tokens + t) * sh.dim;
            for (uint32_t d = 0; d < sh.dim; d++)
                dst[d] = bf16 ? sqkv_bf16_bits((float)sqkv_fp16_to_double(row[d])) : row[d];
        }
}

struct Config {
    const char *name;
    uint32_t bits;
    sqkv_quantizer q;
    sqkv_scale_granularity g;
    double sparsity; /* < 0: the writer's default */
    uint32_t zstd; /* options.zstd_level: compressed on the host in write_file, decompressed on the host
                        * into the decode workspace (sqkv_cuda.h) */
    uint32_t range_search; /* options.range_search */
    sqkv_dtype e; /* the file's element type, the source's and the decoder's output's */
};

void bench_copy(cudaStream_t s) {
    const size_t bytes = 2ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    const double ms = time_ms(s, [&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); });
    say("| device-to-device copy, 2 GiB | %.3f ms | %.0f GB/s (read + write) |\n", ms, 2.0 * bytes / ms / 1e6);
    CK(cudaFree(a));
    CK(cudaFree(b));
}

/* --chunks: the same layers encoded as C calls of layers / C each, as an engine that saves layer by layer
 * does: one encoder, two workspaces in turn, each call queued before the results of the call before it
 * are read (sqkv_cuda.h, pending batches), on one stream or alternating between two. Times one call of all
 * layers (ms_whole) against it, and the host's time to queue a call (encode_layers returns before the
 * GPU is done). */
void bench_chunked_encode(const sqkv_geometry &g, const sqkv_writer_options &o, const Shape &sh, const Config &cf,
                          const std::vector<const void *> &kp, const std::vector<const void *> &vp, uint8_t *out,
                          cudaStream_t s, double ms_whole) {
    const size_t dense_total = 4ull * sh.heads * sh.tokens * sh.dim * sh.layers;
    cudaStream_t s2;
    CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    cudaEvent_t a, b, fork, join;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    sqkv_cuda_encoder *enc = nullptr;
    SK(sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encode_sizes sz;
    SK(sqkv_cuda_encoder_sizes(enc, &sz));
    say("| encode as C calls, two workspaces in turn, 1 or 2 streams (one call of all layers: %.3f ms) | streams | time | "
        "throughput | host |\n",
        ms_whole);
    for (uint32_t C : {2u, 4u, 8u, 16u, 32u}) {
        if (sh.layers % C) continue;
        const uint32_t n = sh.layers / C;
        const uint64_t wsz = sz.workspace_base + sz.workspace_per_layer * n;
        uint8_t *ws[2];
        for (auto &w : ws) CK(cudaMalloc(&w, wsz));
        for (int streams = 1; streams <= 2; streams++) {
            std::vector<double> t, host, queue;
            for (int i = 0; i < 3 + g_reps; i++) {
                CK(cudaEventRecord(a, s));
                CK(cudaEventRecord(fork, s));
                CK(cudaStreamWaitEvent(s2, fork, 0));
                const auto h0 = std::chrono::steady_clock::now();
                double q_us = 0; /* inside encode_layers only: the host's own cost of a call */
                for (uint32_t c = 0; c < C; c++) {
                    cudaStream_t cs = streams == 2 && (c & 1) ? s2 : s;
                    if (c >= 2) SK(sqkv_cuda_encode_results(enc, ws[c & 1], nullptr, cs));
                    const auto q0 = std::chrono::steady_clock::now();
                    SK(sqkv_cuda_encode_layers(enc, c * n, n, cf.e, kp.data() + c * n, vp.data() + c * n,
                                               out + sz.layer_capacity * c * n, sz.layer_capacity * n, ws[c & 1], wsz, cs));
                    q_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - q0).count();
                }
                if (i >= 3) {
                    host.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count() / C);
                    queue.push_back(q_us / C);
                }
                CK(cudaEventRecord(join, s2));
                CK(cudaStreamWaitEvent(s, join, 0));
                CK(cudaEventRecord(b, s));
                for (uint32_t c = C >= 2 ? C - 2 : 0; c < C; c++) SK(sqkv_cuda_encode_results(enc, ws[c & 1], nullptr, s));
                SK(sqkv_cuda_encoder_reset(enc));
                /* the results wait for the batches' own events, which come before b in the stream: b may
                 * not have completed yet (cudaEventElapsedTime then fails with cudaErrorNotReady) */
                CK(cudaEventSynchronize(b));
                float ms;
                CK(cudaEventElapsedTime(&ms, a, b));
                if (i >= 3) t.push_back(ms);
            }
            const double ms = median(t);
            say("| %u calls of %u layers | %d | %.3f ms | %.0f GB/s | host %.1f us per call (queue and earlier results), "
                "%.1f us in encode_layers |\n",
                C, n, streams, ms, dense_total / ms / 1e6, median(host), median(queue));
        }
        for (auto &w : ws) CK(cudaFree(w));
    }
    sqkv_cuda_encoder_destroy(enc);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    CK(cudaEventDestroy(fork));
    CK(cudaEventDestroy(join));
    CK(cudaStreamDestroy(s2));
}

void bench_shape(const Shape &sh, const Config &cf, cudaStream_t s, bool decode_too) {
    sqkv_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = sh.layers;
    g.n_kv_heads = sh.heads;
    g.head_dim = sh.dim;
    g.n_tokens = sh.tokens;
    g.dense_window = 0;
    g.value_dtype = cf.e;
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = cf.bits;
    o.quantizer = cf.q;
    o.scales = cf.g;
    if (cf.sparsity >= 0) o.sparsity = cf.sparsity;
    o.zstd_level = cf.zstd;
    o.range_search = cf.range_search;
    sqkv_cuda_encoder *enc = nullptr;
    SK(sqkv_cuda_encoder_create(&g, &o, &enc));
    sqkv_cuda_encode_sizes sz;
    SK(sqkv_cuda_encoder_sizes(enc, &sz));
    const size_t tensor = (size_t)sh.heads * sh.tokens * sh.dim * 2;
    const size_t dense_total = 2 * tensor * sh.layers;
    /* distinct layers of data, reused cyclically: at least 128 MB of distinct input (twice the L2), so
     * that no layer's input is still in L2 when it comes round again */
    const size_t per_layer = 2 * tensor;
    const int distinct = (int)std::min<size_t>(sh.layers, std::max<size_t>(2, ((128u << 20) + per_layer - 1) / per_layer));
    std::vector<uint16_t> host(tensor / 2);
    uint8_t *in, *out, *ws;
    CK(cudaMalloc(&in, 2 * tensor * distinct));
    for (int i = 0; i < 2 * distinct; i++) {
        if (g_use_real) fill_real(host.data(), (uint32_t)i / 2, (uint32_t)i % 2, sh, cf.e == SQKV_DTYPE_BF16);
        else fill_elements(host.data(), host.size(), 1000 + i, sh.dim, cf.e == SQKV_DTYPE_BF16);
        CK(cudaMemcpy(in + tensor * i, host.data(), tensor, cudaMemcpyHostToDevice));
    }
    const uint64_t ws_size = sz.workspace_base + sz.workspace_per_layer * sh.layers;
    CK(cudaMalloc(&out, sz.layer_capacity * sh.layers));
    CK(cudaMalloc(&ws, ws_size));
    std::vector<const void *> kp(sh.layers), vp(sh.layers);
    for (uint32_t l = 0; l < sh.layers; l++) {
        kp[l] = in + tensor * (2 * (l % distinct));
        vp[l] = in + tensor * (2 * (l % distinct) + 1);
    }
    std::vector<uint64_t> ext((size_t)sh.layers * sz.sections_per_layer);
    auto encode = [&] {
        SK(sqkv_cuda_encode_layers(enc, 0, sh.layers, cf.e, kp.data(), vp.data(), out,
                                   sz.layer_capacity * sh.layers, ws, ws_size, s));
    };
    /* warm-up and timed runs; results are read (and the encoder reset) outside the timed region */
    std::vector<double> t;
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3 + g_reps; i++) {
        CK(cudaEventRecord(a, s));
        encode();
        CK(cudaEventRecord(b, s));
        SK(sqkv_cuda_encode_results(enc, ws, ext.data(), s));
        CK(cudaEventSynchronize(b)); /* the results wait for the batch's own event, which comes before b */
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (i >= 3) t.push_back(ms);
        if (i + 1 < 3 + g_reps) SK(sqkv_cuda_encoder_reset(enc));
    }
    const double ms = median(t);
    uint64_t comp = 0;
    for (uint64_t x : ext) comp += x;
    if (g_chunks) bench_chunked_encode(g, o, sh, cf, kp, vp, out, s, ms);
    say("| encode %s %s | %u x %u x %u x %u | %.3f ms | %.0f GB/s | %.1f%% of fp16 |\n", sh.name, cf.name, sh.layers,
        sh.heads, sh.tokens, sh.dim, ms, dense_total / ms / 1e6, 100.0 * comp / dense_total);

    /* checksum placement: the bodies hashed on the GPU vs copied to the host and hashed there */
    {
        std::vector<const void *> bodies;
        std::vector<uint64_t> sizes;
        for (uint32_t l = 0; l < sh.layers; l++)
            for (uint32_t i = 0; i < sz.sections_per_layer; i++) {
                bodies.push_back(out + sz.layer_capacity * l + sqkv_cuda_encoder_slot_offset(enc, i) + 64);
                sizes.push_back(ext[(size_t)l * sz.sections_per_layer + i] - 64);
            }
        const uint64_t hw = sqkv_cuda_checksums_workspace(sizes.data(), sizes.size());
        void *hws;
        CK(cudaMalloc(&hws, hw));
        std::vector<uint64_t> sums(sizes.size());
        std::vector<double> gt;
        for (int i = 0; i < 3 + g_reps; i++) {
            const auto t0 = std::chrono::steady_clock::now();
            SK(sqkv_cuda_checksums(bodies.data(), sizes.data(), sizes.size(), sums.data(), hws, hw, s));
            const auto t1 = std::chrono::steady_clock::now();
            if (i >= 3) gt.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
        uint64_t total = 0;
        for (uint64_t x : sizes) total += x;
        uint8_t *pin;
        CK(cudaMallocHost((void **)&pin, total));
        std::vector<double> ht;
        for (int i = 0; i < 3; i++) {
            const auto t0 = std::chrono::steady_clock::now();
            uint64_t off = 0;
            for (size_t q = 0; q < sizes.size(); q++) {
                CK(cudaMemcpyAsync(pin + off, bodies[q], sizes[q], cudaMemcpyDeviceToHost, s));
                off += sizes[q];
            }
            CK(cudaStreamSynchronize(s));
            off = 0;
            uint64_t x = 0;
            for (size_t q = 0; q < sizes.size(); q++) {
                x ^= XXH3_64bits(pin + off, sizes[q]);
                if (i == 0 && XXH3_64bits(pin + off, sizes[q]) != sums[q]) {
                    fprintf(stderr, "checksum mismatch in section %zu\n", q);
                    exit(1);
                }
                off += sizes[q];
            }
            const auto t1 = std::chrono::steady_clock::now();
            if (x == 42) say(" ");
            ht.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
        say("| checksums of those bodies (%.1f MB) | GPU (host clock, incl. launch + sync) %.3f ms | host: copy + XXH3 "
            "one thread %.3f ms |\n",
            total / 1e6, median(gt), median(ht));
        CK(cudaFreeHost(pin));
        CK(cudaFree(hws));
    }
    if (decode_too) {
        /* the encoded cache as a file, then decoded on the GPU */
        std::vector<uint8_t> file;
        auto vw = [](void *ctx, const void *data, size_t size) -> int {
            auto *v = (std::vector<uint8_t> *)ctx;
            v->insert(v->end(), (const uint8_t *)data, (const uint8_t *)data + size);
            return 0;
        };
        std::vector<const void *> lp(sh.layers);
        for (uint32_t l = 0; l < sh.layers; l++) lp[l] = out + sz.layer_capacity * l;
        const auto tw = std::chrono::steady_clock::now();
        SK(sqkv_cuda_encoder_write_file(enc, lp.data(), vw, &file, s));
        say("| file of %s %s (write_file to memory, host clock: %.1f ms) | | | %.2f%% of fp16 |\n", sh.name, cf.name,
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tw).count(),
            100.0 * file.size() / dense_total);
        uint8_t *dfile, *dout, *dws;
        CK(cudaMalloc(&dfile, file.size()));
        CK(cudaMemcpy(dfile, file.data(), file.size(), cudaMemcpyHostToDevice));
        CK(cudaMalloc(&dout, dense_total));
        std::vector<void *> ko(sh.layers), vo(sh.layers);
        for (uint32_t l = 0; l < sh.layers; l++) {
            ko[l] = dout + 2 * tensor * l;
            vo[l] = dout + 2 * tensor * l + tensor;
        }
        for (int trusted = 0; trusted < 2; trusted++) {
            /* A decoder's first call checks what it has not checked yet. Its time is the median over fresh
             * decoders, after one whose call is not counted: the process's first launch of each kernel
             * also loads it (lazy module loading), a one-time cost that a single sample mixed in (1.5 to
             * 3.2 ms for the same work across sessions). */
            sqkv_cuda_decoder *dec = nullptr;
            uint64_t wsz = 0;
            dws = nullptr;
            std::vector<double> firsts;
            for (int fresh = 0; fresh <= (g_reps < 5 ? g_reps : 5); fresh++) {
                if (dec) sqkv_cuda_decoder_destroy(dec);
                SK(sqkv_cuda_decoder_create(file.data(), file.size(), dfile, nullptr, trusted ? SQKV_CUDA_TRUSTED : 0,
                                            &dec));
                if (!dws) {
                    SK(sqkv_cuda_decoder_workspace_size(dec, sh.layers, &wsz));
                    CK(cudaMalloc(&dws, wsz));
                }
                /* the last fresh decoder's call in a range of its own, for Nsight Compute's
                 * --profile-from-start off */
                const bool profiled = !trusted && fresh == (g_reps < 5 ? g_reps : 5);
                if (profiled) CK(cudaProfilerStart());
                const auto t0 = std::chrono::steady_clock::now();
                SK(sqkv_cuda_decode_layers(dec, 0, sh.layers, cf.e, ko.data(), vo.data(), tensor, dws, wsz,
                                           s));
                CK(cudaStreamSynchronize(s));
                if (profiled) CK(cudaProfilerStop());
                if (fresh > 0)
                    firsts.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            }
            const double first = median(firsts);
            const double again = time_ms(s, [&] {
                SK(sqkv_cuda_decode_layers(dec, 0, sh.layers, cf.e, ko.data(), vo.data(), tensor, dws, wsz, s));
            });
            say("| decode %s %s, first call of a decoder (%s + validation kernels + one sync + decode; host clock, median of %zu decoders) | %.3f ms | "
                "%.0f GB/s written |\n",
                sh.name, cf.name, trusted ? "trusted: no checksums" : "GPU checksums", firsts.size(), first,
                dense_total / first / 1e6);
            if (!trusted) {
                say("| decode %s %s, sections already validated (one decode kernel, unit starts from the checked offset tables) | %.3f ms | %.0f GB/s "
                    "written |\n",
                    sh.name, cf.name, again, dense_total / again / 1e6);
                /* the same calls queued back to back: the GPU never waits for the host between them */
                const double piped = time_ms(s, [&] {
                    for (int q = 0; q < 10; q++)
                        SK(sqkv_cuda_decode_layers(dec, 0, sh.layers, cf.e, ko.data(), vo.data(), tensor, dws,
                                                   wsz, s));
                }, 1) / 10;
                say("| decode %s %s, validated, 10 calls queued back to back (per call) | %.3f ms | %.0f GB/s written |\n",
                    sh.name, cf.name, piped, dense_total / piped / 1e6);
                if (g_chunks) {
                    /* layer by layer, as an engine restores a cache while its forward pass runs */
                    std::vector<double> host;
                    const double per_layer = time_ms(s, [&] {
                        const auto h0 = std::chrono::steady_clock::now();
                        for (uint32_t l = 0; l < sh.layers; l++)
                            SK(sqkv_cuda_decode_layers(dec, l, 1, cf.e, ko.data() + l, vo.data() + l, tensor, dws, wsz, s));
                        host.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count() /
                                       sh.layers);
                    });
                    say("| decode %s %s, validated, one layer per call (%u calls) | %.3f ms | %.0f GB/s written | host %.1f us per "
                        "call to queue |\n",
                        sh.name, cf.name, sh.layers, per_layer, dense_total / per_layer / 1e6, median(host));
                    /* the same layer each time: the decoder keeps the call's plan, so each call is the kernel alone */
                    const double same = time_ms(s, [&] {
                        for (uint32_t l = 0; l < sh.layers; l++)
                            SK(sqkv_cuda_decode_layers(dec, 0, 1, cf.e, ko.data(), vo.data(), tensor, dws, wsz, s));
                    });
                    say("| decode %s %s, validated, layer 0 %u times (plan kept: no upload) | %.3f ms | %.0f GB/s written |\n",
                        sh.name, cf.name, sh.layers, same, dense_total / same / 1e6);
                }
                /* Mustafar's layout of every head, the path of engines that run sparse attention on the
                 * cache: one sqkv_cuda_decode_mustafar call per (layer, tensor, head), the arrays of all
                 * heads in three buffers. GB/s of the dense fp16 the sparse regions cover (64 elements per
                 * tile). Checked against the dense decode: every head's value count from accum_counts. */
                {
                    const uint32_t nh = sh.layers * 2 * sh.heads;
                    std::vector<sqkv_mustafar_sizes> msz(nh);
                    std::vector<uint64_t> bo(nh + 1, 0), vo_(nh + 1, 0);
                    for (uint32_t q = 0; q < nh; q++) {
                        SK(sqkv_cuda_decoder_mustafar_sizes(dec, q / (2 * sh.heads), (sqkv_tensor)((q / sh.heads) % 2),
                                                            q % sh.heads, &msz[q]));
                        bo[q + 1] = bo[q] + msz[q].n_tiles;
                        vo_[q + 1] = vo_[q] + ((msz[q].value_count + 7) & ~7ull);
                    }
                    int64_t *mb;
                    int32_t *ma;
                    uint16_t *mv;
                    CK(cudaMalloc(&mb, bo[nh] * 8));
                    CK(cudaMalloc(&ma, (bo[nh] + nh) * 4));
                    CK(cudaMalloc(&mv, vo_[nh] * 2 + 16));
                    auto export_all = [&] {
                        for (uint32_t q = 0; q < nh; q++)
                            SK(sqkv_cuda_decode_mustafar(dec, q / (2 * sh.heads), (sqkv_tensor)((q / sh.heads) % 2),
                                                         q % sh.heads, mb + bo[q], ma + bo[q] + q, mv + vo_[q], &msz[q],
                                                         dws, wsz, s));
                    };
                    const double mms = time_ms(s, export_all, 1);
                    /* the same arrays by sqkv_cuda_decode_mustafar_heads: one call per layer and tensor */
                    std::vector<uint16_t *> vptr(nh);
                    for (uint32_t q = 0; q < nh; q++) vptr[q] = mv + vo_[q];
                    auto export_heads = [&] {
                        for (uint32_t lt = 0; lt < 2 * sh.layers; lt++) {
                            const uint32_t q0 = lt * sh.heads;
                            SK(sqkv_cuda_decode_mustafar_heads(dec, lt / 2, (sqkv_tensor)(lt % 2), 0, sh.heads, mb + bo[q0],
                                                               ma + bo[q0] + q0, vptr.data() + q0, msz.data() + q0, dws,
                                                               wsz, s));
                        }
                    };
                    /* the first export of a decoder that has only decoded (and so checked) the cache once:
                     * the sizes are then computed, not yet kept (host clock, sizes calls included) */
                    double first_ms;
                    {
                        sqkv_cuda_decoder *d2 = nullptr;
                        SK(sqkv_cuda_decoder_create(file.data(), file.size(), dfile, nullptr, 0, &d2));
                        SK(sqkv_cuda_decode_layers(d2, 0, sh.layers, cf.e, ko.data(), vo.data(), tensor, dws,
                                                   wsz, s));
                        CK(cudaStreamSynchronize(s));
                        const auto t0 = std::chrono::steady_clock::now();
                        for (uint32_t q = 0; q < nh; q++) {
                            sqkv_mustafar_sizes z;
                            SK(sqkv_cuda_decoder_mustafar_sizes(d2, q / (2 * sh.heads), (sqkv_tensor)((q / sh.heads) % 2),
                                                                q % sh.heads, &z));
                            SK(sqkv_cuda_decode_mustafar(d2, q / (2 * sh.heads), (sqkv_tensor)((q / sh.heads) % 2),
                                                         q % sh.heads, mb + bo[q], ma + bo[q] + q, mv + vo_[q], &z, dws,
                                                         wsz, s));
                        }
                        CK(cudaStreamSynchronize(s));
                        first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                        sqkv_cuda_decoder_destroy(d2);
                    }
                    const double hms = time_ms(s, export_heads, 1);
                    /* the same arrays by one sqkv_cuda_decode_mustafar_layers call for the whole cache */
                    std::vector<sqkv_cuda_mustafar_out> mk(sh.layers), mvo(sh.layers);
                    for (uint32_t lt = 0; lt < 2 * sh.layers; lt++) {
                        const uint32_t q0 = lt * sh.heads;
                        sqkv_cuda_mustafar_out &o = lt % 2 ? mvo[lt / 2] : mk[lt / 2];
                        o = {mb + bo[q0], ma + bo[q0] + q0, vptr.data() + q0, msz.data() + q0};
                    }
                    auto export_layers = [&] {
                        SK(sqkv_cuda_decode_mustafar_layers(dec, 0, sh.layers, mk.data(), mvo.data(), dws, wsz, s));
                    };
                    CK(cudaMemset(mv, 0x5A, vo_[nh] * 2 + 16)); /* what the call does not write shows below */
                    const double lms = time_ms(s, export_layers, 1); /* last: the check below reads its arrays */
                    /* one more call, for Nsight Compute's --profile-from-start off (a range of its own), and
                     * the host's share: the time to queue the call */
                    double layers_host_ms;
                    {
                        CK(cudaStreamSynchronize(s));
                        CK(cudaProfilerStart());
                        const auto t0 = std::chrono::steady_clock::now();
                        export_layers();
                        layers_host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                        CK(cudaStreamSynchronize(s));
                        CK(cudaProfilerStop());
                    }
                    /* every head against the CPU reader, array for array */
                    bool same = true;
                    {
                        sqkv_reader *rd = nullptr;
                        if (sqkv_reader_create(nullptr, 0, &rd) != SQKV_OK ||
                            sqkv_reader_open_memory(rd, file.data(), file.size()) != SQKV_OK) {
                            fprintf(stderr, "reader: %s\n", rd ? sqkv_reader_error_detail(rd) : "create");
                            exit(1);
                        }
                        for (uint32_t q = 0; q < nh; q++) {
                            const uint32_t l = q / (2 * sh.heads), h = q % sh.heads;
                            const sqkv_tensor t = (sqkv_tensor)((q / sh.heads) % 2);
                            const uint64_t nt = msz[q].n_tiles, nv = msz[q].value_count;
                            std::vector<int64_t> cb(nt), gb(nt);
                            std::vector<int32_t> ca(nt + 1), ga(nt + 1);
                            std::vector<uint16_t> cv(nv), gv(nv);
                            if (sqkv_reader_decode_mustafar(rd, l, t, h, cb.data(), ca.data(), cv.data(), &msz[q]) != SQKV_OK) {
                                fprintf(stderr, "reader mustafar: %s\n", sqkv_reader_error_detail(rd));
                                exit(1);
                            }
                            CK(cudaMemcpy(gb.data(), mb + bo[q], nt * 8, cudaMemcpyDeviceToHost));
                            CK(cudaMemcpy(ga.data(), ma + bo[q] + q, (nt + 1) * 4, cudaMemcpyDeviceToHost));
                            CK(cudaMemcpy(gv.data(), mv + vo_[q], nv * 2, cudaMemcpyDeviceToHost));
                            same = same && cb == gb && ca == ga && cv == gv; /* the slack after the values too */
                        }
                        sqkv_reader_destroy(rd);
                    }
                    const double covered = 128.0 * bo[nh];
                    say("| Mustafar layout of %s %s, every head, sections already validated: one call of "
                        "sqkv_cuda_decode_mustafar_layers | %.3f ms | %.0f GB/s of the dense fp16 covered (%.0f MB), "
                        "host %.3f ms to queue the call; "
                        "%u calls of sqkv_cuda_decode_mustafar_heads (one per layer and tensor): %.3f ms, %.0f GB/s; "
                        "one call per head (%u calls): %.3f ms, %.0f GB/s; a decoder's first "
                        "export by calls per head, after one decode (sizes calls included, host clock): %.3f ms; %s |\n",
                        sh.name, cf.name, lms, covered / lms / 1e6, covered / 1e6, layers_host_ms, 2 * sh.layers, hms,
                        covered / hms / 1e6, nh, mms, covered / mms / 1e6, first_ms,
                        same ? "every head equals the CPU reader's" : "DIFFERENT FROM THE CPU READER");
                    if (!same) exit(1);
                    CK(cudaFree(mb));
                    CK(cudaFree(ma));
                    CK(cudaFree(mv));
                }
            }
            CK(cudaFree(dws));
            sqkv_cuda_decoder_destroy(dec);
        }
        /* end to end once without zstd and once with it */
        static bool e2e_done[2];
        if (g_e2e && !e2e_done[cf.zstd ? 1 : 0]) {
            /* save: GPU cache -> file; restore: file -> GPU cache. SQKV vs the raw fp16 bytes, the same
             * way (pinned staging, write/read through the page cache, no fsync). */
            const char *sq_path = "/tmp/sqkv_bench.sqkv", *raw_path = "/tmp/sqkv_bench.raw";
            uint8_t *pin;
            CK(cudaMallocHost((void **)&pin, dense_total));
            auto fdw = [](void *ctx, const void *data, size_t size) -> int {
                const uint8_t *p = (const uint8_t *)data;
                while (size) {
                    const ssize_t n = write(*(int *)ctx, p, size);
                    if (n <= 0) return 1;
                    p += n;
                    size -= (size_t)n;
                }
                return 0;
            };
            auto now = [] { return std::chrono::steady_clock::now(); };
            auto ms_since = [](std::chrono::steady_clock::time_point a) {
                return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
            };
            std::vector<double> ts[4];
            for (int rep = 0; rep < 3; rep++) {
                SK(sqkv_cuda_encoder_reset(enc));
                auto t = now();
                encode();
                SK(sqkv_cuda_encode_results(enc, ws, nullptr, s));
                int fd = open(sq_path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
                SK(sqkv_cuda_encoder_write_file(enc, lp.data(), fdw, &fd, s));
                close(fd);
                ts[0].push_back(ms_since(t));
                t = now();
                for (uint32_t l = 0; l < sh.layers; l++) {
                    CK(cudaMemcpyAsync(pin + 2 * tensor * l, kp[l], tensor, cudaMemcpyDeviceToHost, s));
                    CK(cudaMemcpyAsync(pin + 2 * tensor * l + tensor, vp[l], tensor, cudaMemcpyDeviceToHost, s));
                }
                CK(cudaStreamSynchronize(s));
                fd = open(raw_path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
                fdw(&fd, pin, dense_total);
                close(fd);
                ts[1].push_back(ms_since(t));
                t = now();
                fd = open(sq_path, O_RDONLY);
                const size_t fsz = file.size();
                size_t got = 0;
                while (got < fsz) {
                    const ssize_t n = read(fd, pin + got, fsz - got);
                    if (n <= 0) break;
                    got += (size_t)n;
                }
                close(fd);
                CK(cudaMemcpyAsync(dfile, pin, fsz, cudaMemcpyHostToDevice, s));
                sqkv_cuda_decoder *dec = nullptr;
                SK(sqkv_cuda_decoder_create(pin, fsz, dfile, nullptr, 0, &dec));
                uint64_t wsz = 0;
                SK(sqkv_cuda_decoder_workspace_size(dec, sh.layers, &wsz));
                CK(cudaMalloc(&dws, wsz));
                SK(sqkv_cuda_decode_layers(dec, 0, sh.layers, cf.e, ko.data(), vo.data(), tensor, dws, wsz, s));
                CK(cudaStreamSynchronize(s));
                ts[2].push_back(ms_since(t));
                sqkv_cuda_decoder_destroy(dec);
                CK(cudaFree(dws));
                t = now();
                fd = open(raw_path, O_RDONLY);
                got = 0;
                while (got < dense_total) {
                    const ssize_t n = read(fd, pin + got, dense_total - got);
                    if (n <= 0) break;
                    got += (size_t)n;
                }
                close(fd);
                CK(cudaMemcpyAsync(dout, pin, dense_total, cudaMemcpyHostToDevice, s));
                CK(cudaStreamSynchronize(s));
                ts[3].push_back(ms_since(t));
            }
            say("| save GPU cache to file (%s): SQKV encode + write %.1f MB | %.1f ms | raw fp16 D2H + write %.1f MB: "
                "%.1f ms |\n",
                sh.name, file.size() / 1e6, median(ts[0]), dense_total / 1e6, median(ts[1]));
            say("| restore file to GPU (%s): SQKV read + H2D + validate + decode | %.1f ms | raw fp16 read + H2D: %.1f ms "
                "|\n",
                sh.name, median(ts[2]), median(ts[3]));
            unlink(sq_path);
            unlink(raw_path);
            CK(cudaFreeHost(pin));
            e2e_done[cf.zstd ? 1 : 0] = true;
        }
        CK(cudaFree(dfile));
        CK(cudaFree(dout));
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    sqkv_cuda_encoder_destroy(enc);
    CK(cudaFree(in));
    CK(cudaFree(out));
    CK(cudaFree(ws));
}

}  // namespace

int main(int argc, char **argv) {
    bool quick = false;
    int only_config = -1; /* --config N: only configs[N], first shape (profiling) */
    const char *out_path = nullptr;
    const char *kv_dir = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) g_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) only_config = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--no-e2e")) g_e2e = false;
        else if (!strcmp(argv[i], "--chunks")) g_chunks = 1;
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc) kv_dir = argv[++i];
    }
    if (kv_dir) { /* before any GPU work: a bad directory fails at once */
        const char *names[2] = {"man_bash", "py_json_decoder"};
        for (int i = 0; i < 2; i++) {
            sqt_error err;
            if (sqkv_npy_cache_load(kv_dir, names[i], &g_real[i], &err) != 0) {
                fprintf(stderr, "--kv: %s/%s: %s\n", kv_dir, names[i], err.message);
                return 1;
            }
            if (g_real[i].head_dim != 128) {
                fprintf(stderr, "--kv: %s has head_dim %u, not 128\n", names[i], g_real[i].head_dim);
                return 1;
            }
        }
        fprintf(stderr, "--kv: loaded %s and %s (%u x %u x %u x %u)\n", names[0], names[1], g_real[0].n_layers,
                g_real[0].n_kv_heads, g_real[0].n_tokens, g_real[0].head_dim);
    }
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    char date[64];
    const time_t now = time(nullptr);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    const char *fast = getenv("SQKV_CUDA_FAST");
    say("GPU: %s, %d SMs, %.0f MB L2, %.1f GiB; %s; medians of %d timed runs after 3 warm-ups; kernels: %s\n\n",
        p.name, p.multiProcessorCount, p.l2CacheSize / 1e6, p.totalGlobalMem / 1073741824.0, date, g_reps,
        fast && fast[0] == '0' ? "general only (SQKV_CUDA_FAST=0)" : "fast paths where they apply");
    say("| what | time | throughput | size |\n|---|---|---|---|\n");
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    bench_copy(s);
    const Shape shapes[] = {{"llama3-8b", 32, 8, 4096, 128}, {"larger", 32, 8, 16384, 128}};
    /* the writer's default options first (2-bit ASYMMETRIC PER_TILE, sparsity 0.8), checked here so that
     * the row's name cannot drift from what it measures */
    sqkv_writer_options d;
    sqkv_writer_options_default(&d);
    if (d.payload_bits != 2 || d.quantizer != SQKV_QUANT_ASYMMETRIC || d.scales != SQKV_SCALE_PER_TILE ||
        d.sparsity != 0.8)
        fprintf(stderr, "note: the writer defaults changed; the first row is named after the old ones\n");
    const sqkv_dtype F16 = SQKV_DTYPE_FP16;
    const Config configs[] = {{"2-bit asym per-tile s=0.8 (writer default)", 2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, -1, 0, 0, F16},
                              {"2-bit sym per-head s=0.7", 2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 0.7, 0, 0, F16},
                              {"4-bit asym per-tile s=0.8", 4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 0.8, 0, 0, F16},
                              {"16-bit exact s=0.7", 16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 0.7, 0, 0, F16},
                              /* the candidate default (spec/QUANTIZATION.md §2) */
                              {"3-bit sym per-tile s=0.8", 3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 0.8, 0, 0, F16},
                              {"writer default + zstd 1", 2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, -1, 1, 0, F16},
                              /* the best measured quality (spec/QUANTIZATION.md §2) */
                              {"3-bit sym per-tile s=0.8 + range search on V", 3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE,
                               0.8, 0, SQKV_RANGE_SEARCH_VALUES, F16},
                              {"8-bit asym per-tile s=0.8", 8, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 0.8, 0, 0, F16},
                              /* bf16 caches (Llama-3's released dtype): bf16 source, file and output */
                              {"bf16, writer default options", 2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, -1, 0, 0,
                               SQKV_DTYPE_BF16},
                              {"bf16, 2-bit sym per-head s=0.7", 2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 0.7, 0, 0,
                               SQKV_DTYPE_BF16},
                              {"bf16, 3-bit sym per-tile s=0.8", 3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 0.8, 0, 0,
                               SQKV_DTYPE_BF16}};
    const size_t n_configs = sizeof configs / sizeof configs[0];
    for (const Shape &sh : shapes) {
        for (const Config &cf : configs) {
            if (only_config >= 0 && &cf != &configs[(size_t)only_config % n_configs]) continue;
            bench_shape(sh, cf, s, true);
            if (quick) break;
        }
        if (only_config >= 0) break;
        if (quick) break;
    }
    if (kv_dir) {
        say("\nReal caches (%s: man_bash, py_json_decoder), tiled to the Llama-3-8B shape:\n\n", kv_dir);
        say("| what | time | throughput | size |\n|---|---|---|---|\n");
        g_use_real = true;
        const Shape real = {"llama3-8b, real KV tiled", 32, 8, 4096, 128};
        for (size_t i : {(size_t)0, (size_t)1, (size_t)2, (size_t)3, (size_t)7, (size_t)8}) {
            if (only_config >= 0 && (size_t)only_config % n_configs != i) continue;
            bench_shape(real, configs[i], s, true);
        }
        for (sqkv_npy_cache &c : g_real) sqkv_npy_cache_free(&c);
    }
    CK(cudaStreamDestroy(s));
    if (out_path) {
        FILE *f = fopen(out_path, "w");
        if (f) {
            fputs(g_report.c_str(), f);
            fclose(f);
        }
    }
    return 0;
}
