/*
 * hash_kernels.cuh: the XXH3-64 kernels over many device buffers (see xxh3.cuh for the split into two
 * kernels), as templates: hash.cu launches them for the decoder's checks and sqkv_cuda_checksums, and the
 * encoder (encode_kernels.cu) with an epilogue that writes each section's header from its hash.
 */
#ifndef SQKV_CUDA_HASH_KERNELS_CUH
#define SQKV_CUDA_HASH_KERNELS_CUH

#include <stdint.h>

#include "internal.cuh"
#include "xxh3.cuh"

namespace sqkv_cuda {

namespace {


__device__ __forceinline__ uint64_t job_len(const HashJob &j) { return j.len_at ? *j.len_at : j.len; }

/* Lane l reads the 8-byte words l + 32 r (r < 4) of a 1024-byte block: each load of the warp covers
 * 256 contiguous bytes. A word's accumulator index is then l % 8 for all four, its stripe l / 8 + 4 r,
 * and its secret word stripe + index. The same lane pattern reads the stripes after the last full
 * block (any count below 16). */
constexpr uint32_t kLaneWords = kXxhBlock / 8 / 32;

__constant__ uint64_t kSecretWords[24] = {SQKV_XXH_SECRET_ROW(0), SQKV_XXH_SECRET_ROW(64), SQKV_XXH_SECRET_ROW(128)};
/* the last stripe takes the secret 7 bytes before its end; the merge the words from byte 11 */
__constant__ uint64_t kLastStripeSecret[8] = {SQKV_XXH_SECRET_ROW(192 - 64 - 7)};
__constant__ uint64_t kMergeSecret[8] = {SQKV_XXH_SECRET_ROW(11)};
__constant__ uint64_t kInitAcc[8] = {SQKV_XXH_P32_3, SQKV_XXH_P64_1, SQKV_XXH_P64_2, SQKV_XXH_P64_3,
                                     SQKV_XXH_P64_4, SQKV_XXH_P32_2, SQKV_XXH_P64_5, SQKV_XXH_P32_1};

__device__ __forceinline__ void lane_secrets(uint32_t lane, uint64_t sec[kLaneWords]) {
#pragma unroll
    for (uint32_t r = 0; r < kLaneWords; r++) sec[r] = kSecretWords[lane / 8 + 4 * r + lane % 8];
}

/* One word's share: its 32x32 product goes to the lane's own accumulator index i, the word itself to
 * index i ^ 1. */
__device__ __forceinline__ void add_word(uint64_t v, uint64_t sec, uint64_t &prod, uint64_t &raw) {
    const uint64_t k = v ^ sec;
    prod += (k & 0xFFFFFFFFull) * (k >> 32);
    raw += v;
}

/* Sums the shares of the lanes with equal l % 8 (the stripes) and returns accumulator (l % 8)'s total
 * on every lane: its own products plus the words of the lanes of index (l % 8) ^ 1. */
__device__ __forceinline__ uint64_t reduce_shares(uint64_t prod, uint64_t raw) {
    prod += __shfl_xor_sync(0xFFFFFFFFu, prod, 8);
    raw += __shfl_xor_sync(0xFFFFFFFFu, raw, 8);
    prod += __shfl_xor_sync(0xFFFFFFFFu, prod, 16);
    raw += __shfl_xor_sync(0xFFFFFFFFu, raw, 16);
    return prod + __shfl_xor_sync(0xFFFFFFFFu, raw, 1);
}

/* Each warp takes kSumGroup consecutive block slots, all their loads in flight together. On the H200
 * (Llama-3-8B encode) groups of 2, 4 or 8, one warp per group or a stride loop over one or two
 * resident waves, all gave a hash stage of 34-37 us: the simplest of the fast ones is kept. */
constexpr uint32_t kSumWarps = 8, kSumGroup = 4;

/* A read-only load whose L2 line is first in line for eviction: every body byte is read once here. On the
 * H200 (encoder, Llama-3-8B shape, three interleaved rounds) this took the hash stage from 30 to 27-28 us:
 * writer default 1733-1753 -> 1736-1773 GB/s, EXACT 1523-1548 -> 1567-1583. Why is not established: Nsight
 * Compute sees the same 7% L2 hit rate either way, and the pruning pass storing the bodies evict-last
 * (so that more of them would still be in L2 here) gained nothing beside it or alone (session 18). */
__device__ __forceinline__ uint64_t load_evict_first(const uint64_t *p, uint64_t policy) {
    uint64_t v;
    asm volatile("ld.global.nc.L2::cache_hint.b64 %0, [%1], %2;" : "=l"(v) : "l"(p), "l"(policy));
    return v;
}

__global__ void __launch_bounds__(32 * kSumWarps)
    block_sums_kernel(const HashJob *__restrict__ jobs, uint32_t jobs_per_layer, const uint32_t *__restrict__ block_job,
                      uint64_t blocks_per_layer, uint64_t *__restrict__ sums) {
    const uint32_t lane = threadIdx.x & 31;
    uint64_t sec[kLaneWords];
    lane_secrets(lane, sec);
    /* The jobs come from the previous kernel when this one is its programmatic dependent. No early
     * trigger for the finish kernel: what that one may read after its own wait is only what this grid
     * wrote before triggering, and the sums are written last. */
    cudaGridDependencySynchronize();
    const uint64_t g = (uint64_t)blockIdx.x * kSumWarps + (threadIdx.x >> 5);
    if (g * kSumGroup >= blocks_per_layer) return;
    const HashJob *layer_jobs = jobs + (uint64_t)blockIdx.y * jobs_per_layer;
    const uint64_t slot0 = (uint64_t)blockIdx.y * blocks_per_layer;
    uint64_t *layer_sums = sums + slot0 * 8;
    /* lane j < kSumGroup finds block j's bytes: none past the end of the slots or of the job's full
     * blocks (an encoder job's length is known only on the device) */
    const uint8_t *mine = nullptr;
    const uint64_t local = g * kSumGroup + lane;
    if (lane < kSumGroup && local < blocks_per_layer) {
        const HashJob &job = layer_jobs[block_job[local]];
        const uint64_t len = job_len(job), b = slot0 + local - job.block_first;
        if (len > 240 && b < xxh3_full_blocks(len)) mine = job.data + b * kXxhBlock;
    }
    uint64_t policy;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    const uint64_t *block[kSumGroup];
#pragma unroll
    for (uint32_t j = 0; j < kSumGroup; j++)
        block[j] = (const uint64_t *)__shfl_sync(0xFFFFFFFFu, (unsigned long long)mine, j);
    uint64_t v[kSumGroup][kLaneWords];
#pragma unroll
    for (uint32_t j = 0; j < kSumGroup; j++)
#pragma unroll
        for (uint32_t r = 0; r < kLaneWords; r++) v[j][r] = block[j] ? load_evict_first(block[j] + lane + 32 * r, policy) : 0ull;
#pragma unroll
    for (uint32_t j = 0; j < kSumGroup; j++) {
        if (!block[j]) continue; /* the same for the whole warp */
        uint64_t prod = 0, raw = 0;
#pragma unroll
        for (uint32_t r = 0; r < kLaneWords; r++) add_word(v[j][r], sec[r], prod, raw);
        const uint64_t acc = reduce_shares(prod, raw);
        if (lane < 8) layer_sums[(g * kSumGroup + j) * 8 + lane] = acc;
    }
}

/* A job's hash from its block sums, by one warp. The accumulators are independent of one another
 * through the whole chain (a block adds its sums, then each accumulator is scrambled on its own), so
 * lanes with l % 8 == q run accumulator q's chain (four copies: no divergence). The chain reads the
 * block sums from shared memory, staged kStageBlocks at a time by all lanes with coalesced loads; the
 * next stage's loads are in flight while the chain runs. */
constexpr uint32_t kFinishWarps = 4, kStageBlocks = 64, kStageLaneWords = kStageBlocks * 8 / 32;

/* ld.global.cg: the sums come from the previous grid, which may still run when this one starts
 * (programmatic launch): they are read from L2, never through L1. */
__device__ __forceinline__ void load_stage(uint64_t w[kStageLaneWords], const uint64_t *from, uint64_t blocks, uint32_t lane) {
    const uint64_t words = blocks * 8;
#pragma unroll
    for (uint32_t r = 0; r < kStageLaneWords; r++) w[r] = lane + 32 * r < words ? __ldcg(from + lane + 32 * r) : 0ull;
}

/* After the chain only additions remain: the stripes after the last full block, then the last 64
 * bytes (not 8-byte aligned in general: byte loads, by lanes 0..7 only so that the reduction counts
 * them once). They do not depend on the chain, so they can be summed first, their loads in flight
 * with the first stage's. Returns accumulator (lane % 8)'s share. */
__device__ __forceinline__ uint64_t tail_share(const uint8_t *data, uint64_t len, uint32_t lane) {
    const uint64_t nb = xxh3_full_blocks(len);
    const uint64_t *tail = (const uint64_t *)(data + nb * kXxhBlock);
    const uint32_t tail_words = (uint32_t)(((len - 1) - nb * kXxhBlock) / kXxhStripe) * 8;
    uint64_t sec[kLaneWords];
    lane_secrets(lane, sec);
    uint64_t prod = 0, raw = 0;
#pragma unroll
    for (uint32_t r = 0; r < kLaneWords; r++)
        if (lane + 32 * r < tail_words) add_word(__ldg(tail + lane + 32 * r), sec[r], prod, raw);
    if (lane < 8) add_word(xxh_rd64(data + len - kXxhStripe + 8 * lane), kLastStripeSecret[lane], prod, raw);
    return reduce_shares(prod, raw);
}

/* Accumulator (lane % 8) after the scrambles of nb blocks whose sums start at from. */
__device__ __forceinline__ uint64_t chain(const uint64_t *from, uint64_t nb, uint64_t *st, uint32_t lane) {
    const uint32_t q = lane & 7;
    uint64_t next[kStageLaneWords];
    load_stage(next, from, nb < kStageBlocks ? nb : kStageBlocks, lane);
    uint64_t acc = kInitAcc[q];
    const uint64_t scramble_secret = kSecretWords[16 + q];
    for (uint64_t c = 0; c < nb; c += kStageBlocks) {
        __syncwarp(); /* the chain over the previous stage has read it */
#pragma unroll
        for (uint32_t r = 0; r < kStageLaneWords; r++) st[lane + 32 * r] = next[r];
        __syncwarp();
        const uint32_t n = (uint32_t)(nb - c < kStageBlocks ? nb - c : kStageBlocks);
        const uint64_t left = nb - c - n;
        if (left) load_stage(next, from + (c + kStageBlocks) * 8, left < kStageBlocks ? left : kStageBlocks, lane);
#pragma unroll 8
        for (uint32_t b = 0; b < n; b++) {
            acc += st[b * 8 + q];
            acc ^= acc >> 47;
            acc ^= scramble_secret;
            acc *= SQKV_XXH_P32_1;
        }
    }
    return acc;
}

/* The hash from the final accumulators (lane % 8 holds accumulator lane % 8), on every lane: pairs
 * (2 m, 2 m + 1) multiplied and folded, summed over m. */
__device__ __forceinline__ uint64_t merge(uint64_t acc, uint64_t len, uint32_t lane) {
    const uint32_t q = lane & 7;
    const uint64_t x = acc ^ kMergeSecret[q], y = __shfl_xor_sync(0xFFFFFFFFu, x, 1);
    uint64_t m = (q & 1) ? 0ull : xxh_mul128_fold64(x, y);
    m += __shfl_xor_sync(0xFFFFFFFFu, m, 2);
    m += __shfl_xor_sync(0xFFFFFFFFu, m, 4);
    return xxh3_avalanche(len * SQKV_XXH_P64_1 + __shfl_sync(0xFFFFFFFFu, m, 0));
}

/* The finish's default: only the hashes. */
struct NoEpilogue {
    __device__ void operator()(uint32_t, uint64_t) const {}
};

/* One warp per job, after block_sums_kernel. Lane 0 of job i's warp then calls ep(i, hash), after the
 * wait for the block sums (and so for everything before them): the encoder writes the section's header
 * there (encode_kernels.cu), which was a kernel of its own. */
template <class Epilogue>
__global__ void __launch_bounds__(32 * kFinishWarps) finish_kernel(const HashJob *__restrict__ jobs, uint32_t n_jobs,
                                                                  const uint64_t *__restrict__ sums,
                                                                  uint64_t *__restrict__ results, Epilogue ep) {
    __shared__ uint64_t stage[kFinishWarps][kStageBlocks * 8];
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint32_t i = blockIdx.x * kFinishWarps + warp;
    /* Every thread waits for the block sums before it ends (a no-op unless launched as the block sums'
     * programmatic dependent): this kernel's end then implies theirs for the work after it. */
    if (i >= n_jobs) {
        cudaGridDependencySynchronize();
        return;
    }
    const HashJob job = jobs[i];
    const uint64_t len = job_len(job);
    if (len <= 240) {
        const uint64_t h = lane == 0 ? xxh3_short(job.data, len) : 0ull;
        cudaGridDependencySynchronize();
        if (lane == 0) {
            results[i] = h;
            ep(i, h);
        }
        return;
    }
    const uint64_t tail = tail_share(job.data, len, lane);
    cudaGridDependencySynchronize();
    const uint64_t acc = chain(sums + job.block_first * 8, xxh3_full_blocks(len), stage[warp], lane) + tail;
    const uint64_t h = merge(acc, len, lane);
    if (lane == 0) {
        results[i] = h;
        ep(i, h);
    }
}


/* The two kernels over jobs[0 .. jobs_per_layer * n_layers) (launch_hash's contract, internal.cuh), the
 * finish calling ep(job, hash) for each job. */
template <class Epilogue>
sqkv_cuda_status launch_hash_with(const HashJob *jobs, uint32_t jobs_per_layer, uint32_t n_layers, const uint32_t *block_job,
                                  uint64_t blocks_per_layer, uint64_t *sums, uint64_t *results, Epilogue ep,
                                  cudaStream_t stream) {
    const uint64_t n_jobs = (uint64_t)jobs_per_layer * n_layers;
    if (n_jobs == 0) return SQKV_OK;
    if (n_jobs > 0x7FFFFFFFull || n_layers > 65535) return SQKV_ERR_LIMIT;
    const dim3 finish_grid((unsigned)((n_jobs + kFinishWarps - 1) / kFinishWarps)), finish_block(32 * kFinishWarps);
    if (blocks_per_layer == 0) {
        finish_kernel<Epilogue><<<finish_grid, finish_block, 0, stream>>>(jobs, (uint32_t)n_jobs, sums, results, ep);
        SQKV_CUDA_LAUNCHED();
        return SQKV_OK;
    }
    const uint64_t groups = (blocks_per_layer + kSumGroup - 1) / kSumGroup;
    const uint64_t grid = (groups + kSumWarps - 1) / kSumWarps;
    if (grid > 0x7FFFFFFFull) return SQKV_ERR_LIMIT;
    sqkv_cuda_status st = launch_dependent(block_sums_kernel, dim3((unsigned)grid, n_layers), dim3(32 * kSumWarps), 0, stream,
                                           jobs, jobs_per_layer, block_job, blocks_per_layer, sums);
    if (st != SQKV_OK) return st;
    /* the finish's job lookups and tail sums overlap the end of the block sums */
    return launch_dependent(finish_kernel<Epilogue>, finish_grid, finish_block, 0, stream, jobs, (uint32_t)n_jobs,
                            (const uint64_t *)sums, results, ep);
}

}  // namespace

}  // namespace sqkv_cuda

#endif
