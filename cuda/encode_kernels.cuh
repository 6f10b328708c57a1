/* encode_kernels.cuh: the encoder's kernel arguments and launchers (encode_kernels.cu). */
#ifndef SQKV_CUDA_ENCODE_KERNELS_CUH
#define SQKV_CUDA_ENCODE_KERNELS_CUH

#include "internal.cuh"

namespace sqkv_cuda {

struct EncodeArgs {
    Geometry g;
    const SectionPlan *sections;
    uint32_t n_sections;
    const UnitPlan *units;
    uint32_t n_units;
    uint32_t n_layers;
    uint32_t first_layer;       /* absolute layer number of layer slot 0 (for headers) */
    const void *const *src;     /* [n_layers][2]: K, V inputs */
    uint8_t *out;
    uint64_t layer_capacity;
    UnitStat *stats;            /* [n_layers][n_units] */
    uint16_t *temp;             /* [n_layers][n_units][unit_cap] kept values, tile order */
    /* Fast path when the pruning pass writes the payload itself (PER_TILE codes, EXACT values;
     * fast_payload_in_prune): the units' chained payload starts ([n_layers][n_units], encode_fast.cu
     * publish_unit / unit_start) and the counter that hands out unit order, both zeroed before the
     * pass. They live in temp, which that path does not use for staging. */
    unsigned long long *chain;
    unsigned int *ticket;
    uint64_t unit_cap;          /* a multiple of 8 */
    SectionResult *results;     /* [n_layers][n_sections] */
    uint64_t *hashes;           /* [n_layers][n_sections] body checksums */
    uint32_t *error;            /* bit 0: NaN/inf input, bit 1: value out of range of E */
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

/* Dynamic shared memory of the pruning kernel for this geometry (0 when it cannot fit). */
size_t prune_smem_bytes(const Geometry &g, uint64_t unit_cap);

/* The whole encode of a batch, queued on stream: prune, per-section scan, pack, dense copy,
 * checksums, headers. */
sqkv_cuda_status launch_encode(const EncodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
