/* encode_fast.cuh: the encoder's fast path (encode_fast.cu) and when it applies. */
#ifndef SQKV_CUDA_ENCODE_FAST_CUH
#define SQKV_CUDA_ENCODE_FAST_CUH

#include "encode_kernels.cuh"

namespace sqkv_cuda {

/* Geometry and options the fast kernels handle (the source pointers' alignment is checked by the
 * caller): fp16 elements from an fp16 source or bf16 elements from a bf16 source, head_dim 128,
 * PER_HEAD or PER_TILE scales (2, 3, 4 or 8 bits) or EXACT values. */
bool fast_encode_geometry(const Geometry &g);

/* Whether the fast pruning pass writes the payload itself (PER_TILE codes of every width, EXACT values),
 * so that no packing pass runs (PER_HEAD codes need the whole head's parameters first). A unit's
 * payload start is that of every row keeping `keep` elements: keep times the section's rows before the
 * unit, known before any selection. A row keeps fewer only when it has fewer than `keep` nonzero
 * elements, so the assumption holds for almost every real cache; the section kernel finds out (its kept
 * total is keep times its rows exactly when every row kept keep) and otherwise moves the units to their
 * true starts (encode_fast.cu relocate_units). Measured on the H200 (results/gpu_bench.md, sessions 10 and
 * 13): the staged values made a round trip through device memory as large as the EXACT payload (EXACT
 * 988 -> 1323 GB/s); starts chained between blocks (a ticket per block for the order, a look-back to
 * the previous units' counts) cost the 2- and 3-bit passes more than the packing pass they saved (2-bit
 * 1424 -> 1337 GB/s); assumed starts save it (2-bit 1442 -> 1490-1500 GB/s, 4-bit 1052 -> 1136-1155). */
inline __host__ __device__ bool fast_payload_in_prune(const Geometry &g) {
    return g.quantizer == 0 || g.granularity == 2;
}

/* The three fast passes: pruning (bitmaps, staged values or the payload, unit statistics, unit-relative
 * offset entries), the per-section pass (unit payload positions, offset entries, scales, code boundaries,
 * stream padding) and packing (PER_HEAD codes at their payload positions). */
sqkv_cuda_status launch_prune_fast(const EncodeArgs &a, cudaStream_t stream);
sqkv_cuda_status launch_section_fast(const EncodeArgs &a, cudaStream_t stream);
sqkv_cuda_status launch_pack_fast(const EncodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
