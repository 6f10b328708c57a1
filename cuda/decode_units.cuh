/* decode_units.cuh: what the decoding kernels (decode_kernels.cu, decode_fast.cu) share: the unit of a
 * call derived from its section list and the conversion of an E value to the output type (8-bit levels
 * per element: levels8.cuh). */
#ifndef SQKV_CUDA_DECODE_UNITS_CUH
#define SQKV_CUDA_DECODE_UNITS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "decode_kernels.cuh"
#include "levels8.cuh"
#include "numeric.cuh"

namespace sqkv_cuda {

static __device__ __forceinline__ uint16_t to_out(uint16_t h, bool e_bf16, uint32_t out_dtype, uint32_t *flags) {
    if ((out_dtype == 2) == e_bf16) return h;
    if (e_bf16) {
        const uint16_t r = __half_as_ushort(__float2half_rn(__uint_as_float((uint32_t)h << 16)));
        if ((r & 0x7C00u) == 0x7C00u) *flags |= kErrOverflow;
        return r;
    }
    return __bfloat16_as_ushort(__float2bfloat16_rn(__half2float(__ushort_as_half(h))));
}

/* Inclusive prefix sum of x over the lanes of a whole warp (every lane takes part). */
static __device__ __forceinline__ uint32_t warp_inclusive_sum(uint32_t x) {
    const uint32_t lane = threadIdx.x & 31;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const uint32_t v = __shfl_up_sync(0xFFFFFFFFu, x, off);
        if (lane >= (uint32_t)off) x += v;
    }
    return x;
}

/* Unit idx of the call, derived from the section list secs (sections in unit order; a unit is one head
 * and one 64-token chunk of a SPARSE section), so no per-unit table travels to the device. secs is
 * a.sections, or a.inline_sections in a kernel whose argument is a __grid_constant__ (anywhere else,
 * its address would make the compiler copy the whole argument to local memory). */
static __device__ __forceinline__ UnitPlan unit_at(const DecodeArgs &a, const DecSection *secs, uint32_t idx) {
    uint32_t lo = 0, hi = a.n_sections; /* first section whose unit range ends after idx */
    if (a.units_per_section) {
        /* the common plan (equal SPARSE sections, no DENSE ones): no chain of dependent loads */
        lo = idx / a.units_per_section;
    } else {
        while (lo < hi) {
            const uint32_t mid = (lo + hi) / 2;
            if (secs[mid].unit_first + secs[mid].n_units > idx) hi = mid;
            else lo = mid + 1;
        }
    }
    const DecSection &sec = secs[lo];
    const uint32_t li = idx - sec.unit_first, j = li / sec.chunks, c = li % sec.chunks;
    UnitPlan u;
    u.section = lo;
    u.head = j;
    u.chunk = c;
    u.rows = min(64u, sec.token_count - 64u * c);
    u.tensor = sec.tensor;
    u.src_row = 0;
    if (sec.tensor == 0) {
        u.tile0 = (uint64_t)j * sec.tiles_per_head + (uint64_t)c * a.g.head_dim;
        u.n_tiles = a.g.head_dim;
    } else {
        u.tile0 = (uint64_t)j * sec.tiles_per_head + (uint64_t)64 * a.g.hb * c;
        u.n_tiles = u.rows * a.g.hb;
    }
    return u;
}

}  // namespace sqkv_cuda

#endif
