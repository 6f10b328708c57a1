/*
 * selfcheck.cu: a test hook, not part of the API: runs numeric.cuh's device double_to_e on host-given
 * binary64 values, so that cuda/rounding_test (host code, which cannot launch kernels) can compare the
 * device rounding bit for bit with the host path and with codec/src/float16.h. Declared only in that
 * test.
 */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "numeric.cuh"
#include "sqkv_cuda.h"

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
