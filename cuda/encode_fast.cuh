/* encode_fast.cuh: the encoder's fast path (encode_fast.cu) and when it applies. */
#ifndef SQKV_CUDA_ENCODE_FAST_CUH
#define SQKV_CUDA_ENCODE_FAST_CUH

#include "encode_kernels.cuh"

namespace sqkv_cuda {

/* Geometry and options the fast kernels handle (the source pointers' alignment is checked by the
 * caller): fp16 elements from an fp16 source, head_dim 128, PER_HEAD or PER_TILE scales (2, 3, 4 or 8 bits)
 * or EXACT values. */
bool fast_encode_geometry(const Geometry &g);

/* Dynamic shared memory of the fast pruning kernel. */
size_t prune_fast_smem_bytes(uint64_t unit_cap, bool per_tile);

/* The three fast passes: pruning (bitmaps, staged values, unit statistics, unit-relative offset
 * entries), the per-section pass (unit payload positions, offset entries, scales, code boundaries,
 * stream padding) and packing (codes at their payload positions). */
sqkv_cuda_status launch_prune_fast(const EncodeArgs &a, cudaStream_t stream);
sqkv_cuda_status launch_section_fast(const EncodeArgs &a, cudaStream_t stream);
sqkv_cuda_status launch_pack_fast(const EncodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
