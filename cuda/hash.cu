/* hash.cu: XXH3-64 of many device buffers at once: launch_hash and sqkv_cuda_checksums (the kernels are in
 * hash_kernels.cuh). */
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "hash_kernels.cuh"
#include "internal.cuh"
#include "xxh3.cuh"

namespace sqkv_cuda {

namespace {

/* A block per job. */
__global__ void block_map_kernel(const HashJob *jobs, uint32_t *block_job) {
    const HashJob j = jobs[blockIdx.x];
    for (uint64_t b = threadIdx.x; b < j.max_blocks; b += blockDim.x) block_job[j.block_first + b] = blockIdx.x;
}

}  // namespace

sqkv_cuda_status launch_block_map(const HashJob *jobs, uint32_t n_jobs, uint32_t *block_job, cudaStream_t stream) {
    if (n_jobs == 0) return SQKV_OK;
    if (n_jobs > 0x7FFFFFFFu) return SQKV_ERR_LIMIT;
    block_map_kernel<<<n_jobs, 256, 0, stream>>>(jobs, block_job);
    SQKV_CUDA_LAUNCHED();
    return SQKV_OK;
}

sqkv_cuda_status launch_hash(const HashJob *jobs, uint32_t jobs_per_layer, uint32_t n_layers, const uint32_t *block_job,
                             uint64_t blocks_per_layer, uint64_t *sums, uint64_t *results, cudaStream_t stream) {
    return launch_hash_with(jobs, jobs_per_layer, n_layers, block_job, blocks_per_layer, sums, results, NoEpilogue{}, stream);
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
    uint64_t first = 0;
    for (size_t i = 0; i < n; i++) {
        const uint64_t nb = sizes[i] > 240 ? xxh3_full_blocks(sizes[i]) : 0;
        jobs[i] = HashJob{(const uint8_t *)buffers[i], nullptr, sizes[i], first, nb};
        first += nb;
    }
    uint8_t *ws = (uint8_t *)workspace;
    SQKV_CUDA_TRY(cudaMemcpyAsync(ws + l.jobs_at, jobs.data(), n * sizeof(HashJob), cudaMemcpyHostToDevice, stream));
    sqkv_cuda_status st = launch_block_map((const HashJob *)(ws + l.jobs_at), (uint32_t)n, (uint32_t *)(ws + l.map_at), stream);
    if (st != SQKV_OK) return st;
    st = launch_hash((const HashJob *)(ws + l.jobs_at), (uint32_t)n, 1, (const uint32_t *)(ws + l.map_at),
                                      l.blocks, (uint64_t *)(ws + l.sums_at), (uint64_t *)(ws + l.results_at), stream);
    if (st != SQKV_OK) return st;
    SQKV_CUDA_TRY(cudaMemcpyAsync(out, ws + l.results_at, n * 8, cudaMemcpyDeviceToHost, stream));
    SQKV_CUDA_TRY(cudaStreamSynchronize(stream));
    return SQKV_OK;
}
