/*
 * internal.cuh: what the encoder, the decoder and the checksum code share: the work plan that the host
 * computes and the kernels read, status handling, and launch helpers.
 *
 * Work is cut into *units*: one head of one SPARSE section and one 64-token chunk (keys: token chunk c;
 * values: token block q). A unit's tiles are one contiguous range of the section's tile order (keys:
 * the D tiles c*D .. c*D + D - 1; values: the R*HB tiles of block q), so its kept elements are one
 * contiguous run of the payload, and its dense counterpart is one contiguous [R, D] block of rows. One
 * thread block handles one unit; the only dependency between units is the prefix sum of kept counts
 * (and, for PER_HEAD scales, the head's statistics), handled by a small per-section kernel between
 * the per-unit kernels.
 */
#ifndef SQKV_CUDA_INTERNAL_CUH
#define SQKV_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include "sqkv_cuda.h"

namespace sqkv_cuda {

#define SQKV_CUDA_TRY(call)                                                   \
    do {                                                                      \
        const cudaError_t sqkv_e_ = (call);                                   \
        if (sqkv_e_ != cudaSuccess) return SQKV_CUDA_ERROR_BASE + (int)sqkv_e_; \
    } while (0)

/* After a launch: the launch error (bad configuration) is reported, never dropped. */
#define SQKV_CUDA_LAUNCHED() SQKV_CUDA_TRY(cudaGetLastError())

/* Programmatic dependent launch: the kernel may start while the previous one in the stream drains; it
 * must call cudaGridDependencySynchronize() before it reads anything that one wrote (and reads only
 * what was written before that kernel, such as the plan, ahead of it). What it saves is the gap between
 * the kernels (H200, Llama-3-8B encode: checksum stage 0.035 -> 0.032 ms). */
template <typename... Params, typename... Args>
sqkv_cuda_status launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                  Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    SQKV_CUDA_TRY(cudaLaunchKernelEx(&cfg, kernel, args...));
    return SQKV_OK;
}

constexpr uint32_t kTile = 64;
constexpr uint8_t kKindSparse = 1, kKindDense = 2;

/* One tensor section of a layer (the same for every layer). */
struct SectionPlan {
    uint8_t kind, tensor, payload_bits, quantizer;
    uint8_t granularity, offset_log2, params_per_group, pad0;
    uint32_t head_start, head_count, token_start, token_count;
    uint64_t slot;            /* offset of the section (its header) in the layer's region */
    uint64_t slot_size;       /* worst-case extent */
    /* SPARSE */
    uint64_t n_tiles, tiles_per_head, n_offsets, n_groups;
    uint64_t offsets_at, scales_at, payload_at;
    uint32_t unit_first, n_units, chunks;     /* units: head-major, chunk-minor */
    uint32_t xxh_block_first;                 /* this section's first block-sum slot in the layer */
    uint32_t bound_first;                     /* this section's first scale group in the layer */
    uint32_t pad1;
    /* DENSE: body bytes (align8 of the elements) */
    uint64_t dense_body;
};

/* One unit of a layer. */
struct UnitPlan {
    uint32_t section;
    uint32_t head;       /* within the section */
    uint32_t chunk;      /* 64-token chunk within the section */
    uint32_t rows;       /* R = min(64, token_count - 64 * chunk) */
    uint64_t tile0;      /* first section tile of the unit */
    uint32_t n_tiles;    /* keys: D; values: R * HB */
    uint32_t tensor;     /* the section's tensor (0 K, 1 V) */
    /* encoder: the unit's first row in its input tensor ([heads, tokens] rows), so that the pruning pass
     * starts its copy from the unit's plan alone (the section's is a second dependent load); 0 in the
     * decoder */
    uint64_t src_row;
};

/* Per unit results of the first encode pass / decode count pass. */
struct UnitStat {
    uint32_t count;      /* kept elements */
    uint32_t max_mag;    /* SYMMETRIC statistic (15-bit magnitude) */
    uint32_t min_key;    /* ASYMMETRIC statistics (order keys) */
    uint32_t max_key;
    uint64_t start;      /* kept elements of the section before this unit */
    uint32_t padded;     /* decode: sum over tiles of (popcount + 7) & ~7 (Mustafar) */
    uint32_t pad0;
    /* encode, payload written by the pruning pass (encode_fast.cu): the unit's bits in the first and
     * the last payload word it shares with a neighbour or fills only in part (the section kernel
     * merges them); the words it fills whole are already in place */
    uint32_t edge_first, edge_last;
};

/* Per section results. */
struct SectionResult {
    uint64_t stored_size;
    uint64_t kept;
};

/* Geometry and options of a call, by value in every kernel. */
struct Geometry {
    uint32_t n_heads, n_tokens, head_dim, keep;
    uint32_t e_bf16;      /* element type is bf16 */
    uint32_t src_dtype;   /* encoder input: 1 fp16, 2 bf16, 3 fp32 */
    uint32_t bits, quantizer, granularity, offset_log2;
    uint32_t hb;          /* ceil(D / 64) */
    uint32_t row_stride;  /* shared-memory row stride in elements: align8(D) + 8 */
};

/* XXH3 job: hash len bytes at data (len read from *len_at when not NULL), result to *out. */
struct HashJob {
    const uint8_t *data;
    const uint64_t *len_at;
    uint64_t len;
    uint64_t block_first;   /* first slot in the block-sum array */
    uint64_t max_blocks;    /* slots reserved */
};

/* Launch the two XXH3 kernels over jobs[0 .. jobs_per_layer * n_layers) (device array), in n_layers
 * groups of the same shape: block_job (device, blocks_per_layer u32) maps a block-sum slot of a group
 * to the job within the group; sums holds n_layers * blocks_per_layer * 8 u64; results[i] (device)
 * receives the hash of job i. */
/* block_job[j.block_first .. j.block_first + j.max_blocks) = j's index, for each of the n_jobs jobs (device
 * array, block ranges disjoint, within the map), written on the device: a decoder's first call over a
 * whole Llama-3-8B cache has some 63,000 blocks, whose map the host spent about 0.15 ms building and
 * 0.05 ms uploading (results/gpu_bench.md, session 19). */
sqkv_cuda_status launch_block_map(const HashJob *jobs, uint32_t n_jobs, uint32_t *block_job, cudaStream_t stream);
sqkv_cuda_status launch_hash(const HashJob *jobs, uint32_t jobs_per_layer, uint32_t n_layers, const uint32_t *block_job,
                             uint64_t blocks_per_layer, uint64_t *sums, uint64_t *results, cudaStream_t stream);

__host__ __device__ inline uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

/* The alignment contract of sqkv_cuda.h (checked before any launch: a misaligned access inside a kernel
 * is a sticky CUDA error that ends the whole context, not just the call). Workspaces and the encoder's
 * output take vector loads and stores; the decoder reads a file's 8-byte words (sections start at
 * multiples of 8); dense arrays need their element size. */
constexpr uintptr_t kWorkspaceAlign = 16, kEncodeOutAlign = 16, kFileAlign = 8;
inline bool is_aligned(const void *p, uintptr_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* The fast kernels (encode_fast.cu, decode_fast.cu) run wherever they apply, unless the environment
 * sets SQKV_CUDA_FAST=0: the general kernels then run everywhere (comparisons, a fallback). */
inline bool fast_path_enabled() {
    const char *v = getenv("SQKV_CUDA_FAST");
    return !(v && v[0] == '0');
}

}  // namespace sqkv_cuda

#endif /* SQKV_CUDA_INTERNAL_CUH */
