/* hash.cu: XXH3-64 of many device buffers at once (see xxh3.cuh for the split into two kernels). */
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "internal.cuh"
#include "xxh3.cuh"

namespace sqkv_cuda {

namespace {

__device__ __forceinline__ uint64_t job_len(const HashJob &j) { return j.len_at ? *j.len_at : j.len; }

/* One warp per two 1024-byte blocks (both blocks' loads in flight together): lane l reads 32 bytes
 * of each (stripe l/2, half l%2) and adds their contributions to its four accumulator lanes; the 16
 * lanes of each half then sum over stripes. */
constexpr uint32_t kSumsPerWarp = 2;

__global__ void __launch_bounds__(128) block_sums_kernel(const HashJob *jobs, uint32_t jobs_per_layer,
                                                         const uint32_t *block_job, uint64_t blocks_per_layer,
                                                         uint64_t *sums) {
    /* the secret in shared memory: constant memory would serialize the lanes' different addresses */
    __shared__ uint64_t secret[24];
    if (threadIdx.x < 24) secret[threadIdx.x] = secret64(8 * threadIdx.x);
    __syncthreads();
    const uint64_t first = ((uint64_t)blockIdx.x * 4 + (threadIdx.x >> 5)) * kSumsPerWarp;
    if (first >= blocks_per_layer) return;
    const uint32_t lane = threadIdx.x & 31, stripe = lane >> 1, half = lane & 1;
    uint64_t v[kSumsPerWarp][4];
    bool valid[kSumsPerWarp];
#pragma unroll
    for (uint32_t j = 0; j < kSumsPerWarp; j++) {
        const uint64_t local = first + j;
        valid[j] = false;
        if (local < blocks_per_layer) {
            const uint64_t slot = (uint64_t)blockIdx.y * blocks_per_layer + local;
            const HashJob job = jobs[(uint64_t)blockIdx.y * jobs_per_layer + block_job[local]];
            const uint64_t len = job_len(job), b = slot - job.block_first;
            valid[j] = len > 240 && b < xxh3_full_blocks(len); /* the same for the whole warp */
            if (valid[j]) {
                const uint8_t *p = job.data + b * kXxhBlock + stripe * kXxhStripe + half * 32;
#pragma unroll
                for (int q = 0; q < 4; q++) v[j][q] = *(const uint64_t *)(p + 8 * q); /* bodies start 8-aligned */
            }
        }
    }
#pragma unroll
    for (uint32_t j = 0; j < kSumsPerWarp; j++) {
        if (!valid[j]) continue;
        uint64_t acc[4] = {0, 0, 0, 0};
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int i = 4 * half + q;
            const uint64_t k = v[j][q] ^ secret[stripe + i];
            acc[q ^ 1] += v[j][q];
            acc[q] += (k & 0xFFFFFFFFull) * (k >> 32);
        }
#pragma unroll
        for (int off = 2; off < 32; off <<= 1)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[q] += __shfl_xor_sync(0xFFFFFFFFu, acc[q], off);
        if (lane < 2) {
            const uint64_t slot = (uint64_t)blockIdx.y * blocks_per_layer + first + j;
#pragma unroll
            for (int q = 0; q < 4; q++) sums[slot * 8 + 4 * half + q] = acc[q];
        }
    }
}

/* One warp per job. The accumulators are independent of one another through the whole chain (a block
 * adds its sums, then each accumulator is scrambled on its own), so lane q < 8 runs accumulator q's
 * chain; its loads do not depend on the chain and are issued ahead. Lane 0 then finishes the hash. */
constexpr int kFinishWarps = 4;

__global__ void __launch_bounds__(32 * kFinishWarps) finish_kernel(const HashJob *jobs, uint32_t n_jobs,
                                                                  const uint64_t *sums, uint64_t *results) {
    const uint32_t i = blockIdx.x * kFinishWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (i >= n_jobs) return;
    const HashJob job = jobs[i];
    const uint64_t len = job_len(job);
    if (len <= 240) {
        if (lane == 0) results[i] = xxh3_short(job.data, len);
        return;
    }
    uint64_t init[8];
    xxh3_init_acc(init);
    const uint32_t q = lane & 7u;
    uint64_t acc = init[0];
#pragma unroll
    for (uint32_t j = 1; j < 8; j++)
        if (q == j) acc = init[j];
    const uint64_t sec = secret64(192 - 64 + 8 * q);
    const uint64_t nb = xxh3_full_blocks(len);
    const uint64_t *s = sums + job.block_first * 8 + q;
    /* batches of 8 block sums, the next batch's loads in flight while the chain runs over this one */
    uint64_t cur[8], nxt[8];
#pragma unroll
    for (uint32_t j = 0; j < 8; j++) cur[j] = j < nb ? __ldg(s + j * 8) : 0ull;
    for (uint64_t b = 0; b < nb; b += 8) {
#pragma unroll
        for (uint32_t j = 0; j < 8; j++) nxt[j] = b + 8 + j < nb ? __ldg(s + (b + 8 + j) * 8) : 0ull;
#pragma unroll
        for (uint32_t j = 0; j < 8; j++) {
            if (b + j < nb) {
                acc += cur[j];
                acc ^= acc >> 47;
                acc ^= sec;
                acc *= SQKV_XXH_P32_1;
            }
        }
#pragma unroll
        for (uint32_t j = 0; j < 8; j++) cur[j] = nxt[j];
    }
    uint64_t all[8];
#pragma unroll
    for (int j = 0; j < 8; j++) all[j] = __shfl_sync(0xFFFFFFFFu, acc, j);
    if (lane == 0) results[i] = xxh3_long_finish(all, job.data, len);
}

}  // namespace

sqkv_cuda_status launch_hash(const HashJob *jobs, uint32_t jobs_per_layer, uint32_t n_layers, const uint32_t *block_job,
                             uint64_t blocks_per_layer, uint64_t *sums, uint64_t *results, cudaStream_t stream) {
    const uint64_t n_jobs = (uint64_t)jobs_per_layer * n_layers;
    if (n_jobs == 0) return SQKV_OK;
    if (n_jobs > 0x7FFFFFFFull || n_layers > 65535) return SQKV_ERR_LIMIT;
    if (blocks_per_layer > 0) {
        const uint64_t grid = (blocks_per_layer + 4 * kSumsPerWarp - 1) / (4 * kSumsPerWarp);
        if (grid > 0x7FFFFFFFull) return SQKV_ERR_LIMIT;
        block_sums_kernel<<<dim3((unsigned)grid, n_layers), 128, 0, stream>>>(jobs, jobs_per_layer, block_job,
                                                                             blocks_per_layer, sums);
        SQKV_CUDA_LAUNCHED();
    }
    finish_kernel<<<(unsigned)((n_jobs + kFinishWarps - 1) / kFinishWarps), 32 * kFinishWarps, 0, stream>>>(
        jobs, (uint32_t)n_jobs, sums, results);
    SQKV_CUDA_LAUNCHED();
    return SQKV_OK;
}

/* Workspace layout of sqkv_cuda_checksums: jobs, block -> job map, block sums, results. */
struct ChecksumLayout {
    uint64_t jobs_at, map_at, sums_at, results_at, total, blocks;
};

static int checksum_layout(const uint64_t *sizes, size_t n, ChecksumLayout *l) {
    uint64_t blocks = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] > (1ull << 40)) return 0;
        blocks += sizes[i] > 240 ? xxh3_full_blocks(sizes[i]) : 0;
    }
    l->blocks = blocks;
    l->jobs_at = 0;
    l->map_at = align_up(n * sizeof(HashJob), 256);
    l->sums_at = l->map_at + align_up(blocks * 4, 256);
    l->results_at = l->sums_at + blocks * 64;
    l->total = l->results_at + align_up(n * 8, 256);
    return 1;
}

}  // namespace sqkv_cuda

using namespace sqkv_cuda;

extern "C" uint64_t sqkv_cuda_checksums_workspace(const uint64_t *sizes, size_t n) {
    ChecksumLayout l;
    if (!sizes && n) return 0;
    if (n > ((uint64_t)1 << 32) || !checksum_layout(sizes, n, &l)) return 0;
    return l.total;
}

extern "C" sqkv_cuda_status sqkv_cuda_checksums(const void *const *buffers, const uint64_t *sizes, size_t n,
                                                uint64_t *out, void *workspace, uint64_t workspace_size,
                                                cudaStream_t stream) {
    if (n == 0) return SQKV_OK;
    if (!buffers || !sizes || !out || !workspace || n > ((uint64_t)1 << 32)) return SQKV_ERR_INVALID_ARGUMENT;
    ChecksumLayout l;
    if (!checksum_layout(sizes, n, &l)) return SQKV_ERR_LIMIT;
    if (workspace_size < l.total) return SQKV_ERR_BUFFER_TOO_SMALL;
    if (!is_aligned(workspace, kWorkspaceAlign)) return SQKV_ERR_MISALIGNED;
    for (size_t i = 0; i < n; i++) {
        if (!buffers[i] && sizes[i]) return SQKV_ERR_INVALID_ARGUMENT;
        if (!is_aligned(buffers[i], kFileAlign)) return SQKV_ERR_MISALIGNED; /* the sums read 8-byte words */
    }
    std::vector<HashJob> jobs(n);
    std::vector<uint32_t> map(l.blocks);
    uint64_t first = 0;
    for (size_t i = 0; i < n; i++) {
        const uint64_t nb = sizes[i] > 240 ? xxh3_full_blocks(sizes[i]) : 0;
        jobs[i] = HashJob{(const uint8_t *)buffers[i], nullptr, sizes[i], first, nb};
        for (uint64_t b = 0; b < nb; b++) map[first + b] = (uint32_t)i;
        first += nb;
    }
    uint8_t *ws = (uint8_t *)workspace;
    SQKV_CUDA_TRY(cudaMemcpyAsync(ws + l.jobs_at, jobs.data(), n * sizeof(HashJob), cudaMemcpyHostToDevice, stream));
    if (l.blocks)
        SQKV_CUDA_TRY(cudaMemcpyAsync(ws + l.map_at, map.data(), l.blocks * 4, cudaMemcpyHostToDevice, stream));
    sqkv_cuda_status st = launch_hash((const HashJob *)(ws + l.jobs_at), (uint32_t)n, 1, (const uint32_t *)(ws + l.map_at),
                                      l.blocks, (uint64_t *)(ws + l.sums_at), (uint64_t *)(ws + l.results_at), stream);
    if (st != SQKV_OK) return st;
    SQKV_CUDA_TRY(cudaMemcpyAsync(out, ws + l.results_at, n * 8, cudaMemcpyDeviceToHost, stream));
    SQKV_CUDA_TRY(cudaStreamSynchronize(stream));
    return SQKV_OK;
}
