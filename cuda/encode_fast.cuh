/* encode_fast.cuh: the encoder's fast path (encode_fast.cu) and when it applies. */
#ifndef SQKV_CUDA_ENCODE_FAST_CUH
#define SQKV_CUDA_ENCODE_FAST_CUH

#include "encode_kernels.cuh"

namespace sqkv_cuda {

/* Geometry and options the fast kernels handle (the source pointers' alignment is checked by the
 * caller): fp16 elements from an fp16 source or bf16 elements from a bf16 source, head_dim 128,
 * PER_HEAD or PER_TILE scales (2, 3, 4 or 8 bits) or EXACT values. */
bool fast_encode_geometry(const Geometry &g);

/* Whether the fast pruning pass writes the payload itself (EXACT values and 8-bit PER_TILE codes), so
 * that no packing pass runs; the units' payload starts are then chained between the pass's blocks
 * (a.chain, a.ticket zeroed first). Measured on the H200 (results/gpu_bench.md, session 10): EXACT
 * 988 -> 1323 GB/s, since its staged values made a round trip through device memory as large as the
 * payload; but 2-bit PER_TILE 1424 -> 1337 and 3-bit 1218 -> 1169, whose staged codes are small and
 * whose blocks then wait for a ticket and for the look-back. Those write their payload at assumed starts
 * instead (fast_payload_speculative). */
inline __host__ __device__ bool fast_payload_in_prune(const Geometry &g) {
    return g.quantizer == 0 || (g.granularity == 2 && g.bits == 8);
}

/* 2-, 3- and 4-bit PER_TILE: the fast pruning pass writes its unit's codes to the payload too, at the
 * start it would have if every row kept `keep` elements (keep times the section's rows before the unit,
 * known before any selection: no ticket, no look-back). A row keeps fewer only when it has fewer than
 * `keep` nonzero elements, so the assumption holds for almost every real cache; the section kernel finds
 * out (its kept total is keep times its rows exactly when every row kept keep) and otherwise moves the
 * units to their true starts (relocate_units). No packing pass runs. */
inline __host__ __device__ bool fast_payload_speculative(const Geometry &g) {
    return g.quantizer != 0 && g.granularity == 2 && g.bits >= 2 && g.bits <= 4;
}

/* Dynamic shared memory of the fast pruning kernel. */
size_t prune_fast_smem_bytes(uint64_t unit_cap, bool per_tile);

/* The three fast passes: pruning (bitmaps, staged values or the payload, unit statistics, unit-relative
 * offset entries), the per-section pass (unit payload positions, offset entries, scales, code boundaries,
 * stream padding) and packing (PER_HEAD codes at their payload positions). */
sqkv_cuda_status launch_prune_fast(const EncodeArgs &a, cudaStream_t stream);
sqkv_cuda_status launch_section_fast(const EncodeArgs &a, cudaStream_t stream);
sqkv_cuda_status launch_pack_fast(const EncodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
