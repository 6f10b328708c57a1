/* encode_kernels.cuh: the encoder's kernel arguments and launchers (encode_kernels.cu). */
#ifndef SQKV_CUDA_ENCODE_KERNELS_CUH
#define SQKV_CUDA_ENCODE_KERNELS_CUH

#include "internal.cuh"

namespace sqkv_cuda {

constexpr uint32_t kInlineSourceLayers = 32;

struct EncodeArgs {
    Geometry g;
    const SectionPlan *sections;
    uint32_t n_sections;
    const UnitPlan *units;
    uint32_t n_units;
    uint32_t n_layers;
    uint32_t first_layer;       /* absolute layer number of layer slot 0 (for headers) */
    const void *const *src;     /* [n_layers][2]: K, V inputs in the workspace; NULL: src_inline */
    /* Batches of up to kInlineSourceLayers layers pass their inputs here, in the kernels' arguments:
     * an upload of the pointers would be one more operation in the stream, a few microseconds of idle
     * GPU per call, which calls of one layer each (an engine saving layer by layer) pay every time. */
    const void *src_inline[2 * kInlineSourceLayers];
    uint8_t *out;
    uint64_t layer_capacity;
    UnitStat *stats;            /* [n_layers][n_units] */
    uint16_t *temp;             /* [n_layers][n_units][unit_cap] kept values, tile order; the fast
                                 * path's units whose payload the pruning pass wrote at a wrong
                                 * assumed start (encode_fast.cu relocate_units) */
    uint64_t unit_cap;          /* a multiple of 8 */
    SectionResult *results;     /* [n_layers][n_sections] */
    uint64_t *hashes;           /* [n_layers][n_sections] body checksums */
    uint32_t *error;            /* bit 0: NaN/inf input, bit 1: value out of range of E */
    uint32_t *error_next;       /* the next call's four error words, zeroed by this call's header kernel */
    uint64_t *host_results;     /* pinned host memory, mapped: [0] error word, [1 + i] body size of job i
                                 * (written by the header kernel; encode_results reads them) */
    const uint32_t *dense_ids;  /* the DENSE sections of a layer */
    uint32_t n_dense;
    uint64_t max_dense_elems;   /* largest DENSE section, elements */
    HashJob *jobs;              /* [n_layers][n_sections], filled on the device */
    const uint32_t *block_map;  /* [blocks_per_layer]: block-sum slot -> section */
    uint64_t blocks_per_layer;
    uint64_t *sums;             /* [n_layers][blocks_per_layer][8] */
    /* fast path (encode_fast.cu) */
    uint32_t fast;              /* 1: the fast kernels run (geometry and source alignment checked) */
    uint16_t *bounds;           /* [n_layers][bounds_per_layer][256]: PER_HEAD code boundaries */
    uint64_t bounds_per_layer;  /* scale groups of a layer's SPARSE sections (sum of head_count) */
    /* Keep-all mode (spec/FORMAT.md §7.6, §14): every SPARSE section is ALL_KEPT: every non-padding
     * element kept, zeros included; no bitmaps or offsets streams (the bitmaps are implied). */
    uint32_t all_kept;
    /* Range search (spec/FORMAT.md §14): SQKV_RANGE_SEARCH_VALUES / _KEYS bits of the tensors whose
     * groups get it (0 with EXACT values: nothing to choose). The fast kernels never run with it. */
    uint32_t range_search;
    uint32_t max_head_count;    /* largest head_count of a SPARSE section (PER_HEAD search grid) */
};

/* Input tensor (0 K, 1 V) of layer slot `layer` of the batch. */
__device__ __forceinline__ const void *layer_source(const EncodeArgs &a, uint32_t layer, uint32_t tensor) {
    return a.src ? a.src[2 * layer + tensor] : a.src_inline[2 * layer + tensor];
}

/* Thread 0 of a section kernel's block: the XXH3 job of section si of layer slot `layer`, its body's
 * length read from the section's result once the section kernel (or the DENSE kernel) has written it.
 * The jobs need no result, so the section kernels write them (a kernel of their own was one more
 * launch per call). */
__device__ __forceinline__ void write_hash_job(const EncodeArgs &a, uint32_t layer, uint32_t si) {
    const uint64_t i = (uint64_t)layer * a.n_sections + si;
    HashJob j;
    j.data = a.out + (uint64_t)layer * a.layer_capacity + a.sections[si].slot + 64;
    j.len_at = &a.results[i].stored_size;
    j.len = 0;
    j.block_first = (uint64_t)layer * a.blocks_per_layer + a.sections[si].xxh_block_first;
    j.max_blocks = 0;
    a.jobs[i] = j;
}

/* Dynamic shared memory of the pruning kernel for this geometry (0 when it cannot fit). */
size_t prune_smem_bytes(const Geometry &g, uint64_t unit_cap);

/* The whole encode of a batch, queued on stream: prune, per-section scan, pack, dense copy,
 * checksums, headers. */
sqkv_cuda_status launch_encode(const EncodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
