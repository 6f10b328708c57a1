/*
 * selfcheck.cu: a test hook, not part of the API: runs numeric.cuh's device double_to_e on host-given
 * binary64 values, so that cuda/rounding_test (host code, which cannot launch kernels) can compare the
 * device rounding bit for bit with the host path and with codec/src/float16.h; and compares the fast
 * PER_TILE parameter choice (tile_params.cuh) with its reference on every input, for
 * cuda/tile_params_test; and runs levels8.cuh's 8-bit levels and codes (level8, code8) for
 * cuda/rounding_test. Declared only in those tests.
 */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "levels8.cuh"
#include "numeric.cuh"
#include "sqkv_cuda.h"
#include "tile_params.cuh"

namespace {

__global__ void round_kernel(const double *in, size_t n, uint16_t *fp16_out, uint16_t *bf16_out) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double x = in[i];
        fp16_out[i] = sqkv_cuda::double_to_e(x, false);
        bf16_out[i] = sqkv_cuda::double_to_e(x, true);
    }
}

sqkv_cuda_status cuda_status(cudaError_t e) { return e == cudaSuccess ? SQKV_OK : SQKV_CUDA_ERROR_BASE + (int)e; }

}  // namespace

/* fp16_out[i] / bf16_out[i] = double_to_e(in[i]) as the device computes it; host arrays of n elements
 * (n <= 2^28, so that the device buffers stay small). */
extern "C" sqkv_cuda_status sqkv_cuda_internal_round(const double *in, size_t n, uint16_t *fp16_out,
                                                     uint16_t *bf16_out) {
    if (n == 0) return SQKV_OK;
    if (!in || !fp16_out || !bf16_out) return SQKV_ERR_INVALID_ARGUMENT;
    if (n > ((size_t)1 << 28)) return SQKV_ERR_LIMIT;
    double *d_in = nullptr;
    uint16_t *d_out = nullptr;
    cudaError_t e = cudaMalloc(&d_in, n * sizeof(double));
    if (e == cudaSuccess) e = cudaMalloc(&d_out, 2 * n * sizeof(uint16_t));
    if (e == cudaSuccess) e = cudaMemcpy(d_in, in, n * sizeof(double), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        const size_t blocks = (n + 255) / 256;
        round_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256>>>(d_in, n, d_out, d_out + n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(fp16_out, d_out, n * sizeof(uint16_t), cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaMemcpy(bf16_out, d_out + n, n * sizeof(uint16_t), cudaMemcpyDeviceToHost);
    const cudaError_t f1 = cudaFree(d_in), f2 = cudaFree(d_out);
    if (e == cudaSuccess) e = f1 != cudaSuccess ? f1 : f2;
    return cuda_status(e);
}

/* ---- tile_params (tile_params.cuh) against its reference on every input ---------------------------- */

namespace {

struct TileCheckCounts {
    unsigned long long checked, mismatches, first_bad; /* first_bad: min_key << 16 | max_key, smallest */
};

/* ASYMMETRIC: block i takes the smallest key kLo + i and every largest key from it up; SYMMETRIC: one
 * block per 256 magnitudes. Keys kLo .. kHi are the finite fp16 (bf16) values, zeros included. */
template <bool kBf16>
struct FiniteKeys {
    static constexpr uint32_t kLo = kBf16 ? 0x0080u : 0x0400u, kHi = kBf16 ? 0xFF7Fu : 0xFBFFu,
                              kMaxMag = kBf16 ? 0x7F7Fu : 0x7BFFu;
};

template <uint32_t BITS, bool kAsym, bool kBf16>
__global__ void tile_check_kernel(TileCheckCounts *out, unsigned long long sabotage) {
    constexpr uint32_t kLoKey = FiniteKeys<kBf16>::kLo, kHiKey = FiniteKeys<kBf16>::kHi,
                       kMaxFiniteMag = FiniteKeys<kBf16>::kMaxMag;
    constexpr uint32_t L = 1u << BITS;
    unsigned long long checked = 0, bad = 0, first = ~0ull;
    auto one = [&](uint32_t mag, uint32_t lo, uint32_t hi) {
        uint16_t sc_a[2] = {0, 0}, sc_b[2] = {0, 0}, bnd_a[16] = {0}, bnd_b[16] = {0};
        sqkv_cuda::tile_params<BITS, kAsym, kBf16>(1, mag, lo, hi, sc_a, bnd_a);
        const unsigned long long at = kAsym ? ((unsigned long long)lo << 16 | hi) : mag;
        if (at == sabotage) bnd_a[1] ^= 1u; /* the hook's own test: one difference, planted */
        sqkv_cuda::tile_params_reference<BITS, kAsym>(1, mag, lo, hi, sc_b, bnd_b, kBf16);
        bool same = sc_a[0] == sc_b[0] && sc_a[1] == sc_b[1];
        for (uint32_t c = 1; c < L; c++) same = same && bnd_a[c] == bnd_b[c];
        checked++;
        if (!same) {
            bad++;
            first = at < first ? at : first;
        }
    };
    if (kAsym) {
        const uint32_t lo = kLoKey + blockIdx.x;
        for (uint32_t hi = lo + threadIdx.x; hi <= kHiKey; hi += blockDim.x) one(0, lo, hi);
    } else {
        const uint32_t mag = blockIdx.x * blockDim.x + threadIdx.x;
        if (mag <= kMaxFiniteMag) one(mag, 0, 0);
    }
    atomicAdd(&out->checked, checked);
    if (bad) {
        atomicAdd(&out->mismatches, bad);
        atomicMin(&out->first_bad, first);
    }
}

template <uint32_t BITS, bool kAsym, bool kBf16>
cudaError_t run_tile_check(TileCheckCounts *d, unsigned long long sabotage) {
    using K = FiniteKeys<kBf16>;
    const uint32_t blocks = kAsym ? K::kHi - K::kLo + 1 : (K::kMaxMag + 256) / 256;
    tile_check_kernel<BITS, kAsym, kBf16><<<blocks, 256>>>(d, sabotage);
    return cudaGetLastError();
}

template <bool kAsym, bool kBf16>
cudaError_t run_tile_check_bits(uint32_t bits, TileCheckCounts *d, unsigned long long sabotage) {
    switch (bits) {
        case 2: return run_tile_check<2, kAsym, kBf16>(d, sabotage);
        case 3: return run_tile_check<3, kAsym, kBf16>(d, sabotage);
        default: return run_tile_check<4, kAsym, kBf16>(d, sabotage);
    }
}

}  // namespace

/* Compares tile_params<bits, asym, bf16> with tile_params_reference on every finite
 * input of one tile with kept values: ASYMMETRIC every pair of order keys min <= max, SYMMETRIC every largest magnitude. Reports
 * how many inputs were compared, how many differ, and the first that differs (min_key << 16 | max_key, or
 * the magnitude; all ones if none). sabotage names an input (same encoding) whose fast result is altered
 * before the comparison, so that a test can see the hook report a difference; all ones alters none. */
extern "C" sqkv_cuda_status sqkv_cuda_internal_tile_params_check(uint32_t bits, int asym, int bf16, uint64_t sabotage,
                                                                 uint64_t *checked, uint64_t *mismatches,
                                                                 uint64_t *first_bad) {
    if (bits < 2 || bits > 4 || !checked || !mismatches || !first_bad) return SQKV_ERR_INVALID_ARGUMENT;
    TileCheckCounts *d = nullptr;
    const TileCheckCounts init = {0, 0, ~0ull};
    TileCheckCounts got = init;
    cudaError_t e = cudaMalloc(&d, sizeof *d);
    if (e == cudaSuccess) e = cudaMemcpy(d, &init, sizeof init, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        e = asym ? (bf16 ? run_tile_check_bits<true, true>(bits, d, sabotage) : run_tile_check_bits<true, false>(bits, d, sabotage))
                 : (bf16 ? run_tile_check_bits<false, true>(bits, d, sabotage) : run_tile_check_bits<false, false>(bits, d, sabotage));
    }
    if (e == cudaSuccess) e = cudaMemcpy(&got, d, sizeof got, cudaMemcpyDeviceToHost);
    const cudaError_t f = d ? cudaFree(d) : cudaSuccess;
    if (e == cudaSuccess) e = f;
    *checked = got.checked;
    *mismatches = got.mismatches;
    *first_bad = got.first_bad;
    return cuda_status(e);
}

/* ---- 8-bit levels and codes (levels8.cuh) ---------------------------------------------------------- */

namespace {

__global__ void level8_kernel(const uint16_t *s, const uint16_t *z, size_t n, uint32_t quantizer, bool bf16,
                              uint16_t *out) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < 256 * n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t p = i >> 8;
        out[i] = (uint16_t)sqkv_cuda::level8(quantizer, bf16, sqkv_cuda::e_to_float(s[p], bf16),
                                             sqkv_cuda::e_to_float(z[p], bf16), (uint32_t)(i & 255u));
    }
}

}  // namespace

/* out[256 i + c] = level8(quantizer, bf16, s[i], z[i], c) as the decoder computes it, for n parameter
 * pairs (host arrays; n <= 2^20). quantizer 1 (SYMMETRIC, z unused) or 2 (ASYMMETRIC). */
extern "C" sqkv_cuda_status sqkv_cuda_internal_level8(const uint16_t *s, const uint16_t *z, size_t n, int quantizer,
                                                      int bf16, uint16_t *out) {
    if (n == 0) return SQKV_OK;
    if (!s || !z || !out || (quantizer != 1 && quantizer != 2)) return SQKV_ERR_INVALID_ARGUMENT;
    if (n > ((size_t)1 << 20)) return SQKV_ERR_LIMIT;
    uint16_t *d_par = nullptr, *d_out = nullptr;
    cudaError_t e = cudaMalloc(&d_par, 2 * n * sizeof(uint16_t));
    if (e == cudaSuccess) e = cudaMalloc(&d_out, 256 * n * sizeof(uint16_t));
    if (e == cudaSuccess) e = cudaMemcpy(d_par, s, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(d_par + n, z, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        level8_kernel<<<1024, 256>>>(d_par, d_par + n, n, (uint32_t)quantizer, bf16 != 0, d_out);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(out, d_out, 256 * n * sizeof(uint16_t), cudaMemcpyDeviceToHost);
    const cudaError_t f1 = d_par ? cudaFree(d_par) : cudaSuccess, f2 = d_out ? cudaFree(d_out) : cudaSuccess;
    if (e == cudaSuccess) e = f1 != cudaSuccess ? f1 : f2;
    return cuda_status(e);
}

namespace {

template <bool kAsym, bool kBf16>
__global__ void code8_kernel(const uint16_t *s, const uint16_t *z, const uint16_t *x, size_t n, int mode, uint16_t *out) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float sf = sqkv_cuda::e_to_float(s[i], kBf16), zf = sqkv_cuda::e_to_float(z[i], kBf16);
        const sqkv_cuda::Code8Tile t = sqkv_cuda::code8_tile<kAsym, kBf16>(sf, zf);
        uint32_t code = 0xFFFFu;
        if (mode == 0) {
            code = sqkv_cuda::code8<kAsym, kBf16>(x[i], t);
        } else if (mode == 1) {
            code = sqkv_cuda::code8_walk<kAsym, kBf16>(sqkv_cuda::e_to_float(x[i], kBf16), sf, zf);
        } else if constexpr (kAsym) {
            if (!sqkv_cuda::code8_runs<kBf16>(x[i], t, code)) code = 0xFFFFu;
        }
        out[i] = (uint16_t)code;
    }
}

}  // namespace

/* out[i] = code8(x[i]) in the tile with parameters s[i], z[i], as the encoder computes it (mode 0), as
 * code8_walk alone does (mode 1: the path the others leave to it, for every value), or as code8_runs alone
 * does on every tile, whether or not its levels repeat (mode 2, ASYMMETRIC only; 0xFFFF where its brackets
 * fail). For n elements (host arrays; n <= 2^24). quantizer 1 (SYMMETRIC, z unused) or 2 (ASYMMETRIC). */
extern "C" sqkv_cuda_status sqkv_cuda_internal_code8(const uint16_t *s, const uint16_t *z, const uint16_t *x, size_t n,
                                                     int quantizer, int bf16, int mode, uint16_t *out) {
    if (n == 0) return SQKV_OK;
    if (!s || !z || !x || !out || (quantizer != 1 && quantizer != 2) || mode < 0 || mode > 2 || (mode == 2 && quantizer != 2))
        return SQKV_ERR_INVALID_ARGUMENT;
    if (n > ((size_t)1 << 24)) return SQKV_ERR_LIMIT;
    uint16_t *d = nullptr;
    cudaError_t e = cudaMalloc(&d, 4 * n * sizeof(uint16_t));
    if (e == cudaSuccess) e = cudaMemcpy(d, s, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(d + n, z, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(d + 2 * n, x, n * sizeof(uint16_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        auto kernel = quantizer == 2 ? (bf16 ? code8_kernel<true, true> : code8_kernel<true, false>)
                                     : (bf16 ? code8_kernel<false, true> : code8_kernel<false, false>);
        kernel<<<1024, 256>>>(d, d + n, d + 2 * n, n, mode, d + 3 * n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(out, d + 3 * n, n * sizeof(uint16_t), cudaMemcpyDeviceToHost);
    const cudaError_t f = d ? cudaFree(d) : cudaSuccess;
    if (e == cudaSuccess) e = f;
    return cuda_status(e);
}
