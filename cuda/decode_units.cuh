/* decode_units.cuh: what the decoding kernels (decode_kernels.cu, decode_fast.cu) share: the unit of a
 * call derived from its section list, the conversion of an E value to the output type, and 8-bit levels
 * computed per element. */
#ifndef SQKV_CUDA_DECODE_UNITS_CUH
#define SQKV_CUDA_DECODE_UNITS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "decode_kernels.cuh"
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

/* Level of code c of an 8-bit group (spec/FORMAT.md §7.4) as E bits: quant_level(quantizer, 8, e_bf16,
 * s, z, c) bit for bit, for finite parameters whose values sf and zf are exactly floats (every fp16 and
 * bf16 value is). 256 levels a tile are too many to tabulate for the ~13 codes a tile holds, so each
 * element computes its own, and in binary32: binary64 conversions and arithmetic run at a fraction of
 * the binary32 rate, and kept the 8-bit decode latency-bound (results/gpu_bench.md, session 20).
 *   - SYMMETRIC, (2c + 1 - 256) s: at most 8 + 11 significant bits and within binary32's exponent range
 *     (bf16 subnormals included) or beyond it, where both give infinity, so exact in binary32: one
 *     rounding to E, as quant_level's.
 *   - ASYMMETRIC, x = c s + z: quant_level rounds x to binary64 and then to E; the FMA rounds x once, to
 *     r. x and fl64(x) both lie between r's binary32 neighbours (the midpoints between r and them are
 *     binary64 values, and roundings are monotone), so when both neighbours round to the same E value,
 *     that is the level. Otherwise an E midpoint is within a binary32 step of r (about one level in
 *     4000; r = +-0 and r = +-infinity also land here, through the neighbours' bit patterns), and
 *     binary64 decides as quant_level does. cuda/rounding_test compares this function with quant_level
 *     on constructed double-rounding cases and random parameters (via cuda/selfcheck.cu). */
/* An element that is not kept reads whatever bits follow in the payload as its code and discards the
 * level: used false, it skips the binary64 fallback (empty tiles have s = z = 0, where r is zero and every
 * level would take it). */
static __device__ __forceinline__ uint32_t level8(uint32_t quantizer, bool e_bf16, float sf, float zf, uint32_t c,
                                                  bool used = true) {
    if (quantizer == 1) {
        const float r = (__uint_as_float(0x4B000000u | (2 * c + 1)) - 8388864.0f) * sf; /* 2c + 1 - 256, exactly */
        return e_bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(r)) : __half_as_ushort(__float2half_rn(r));
    }
    /* c as a float by the exponent trick (2^23 + c exactly, less 2^23): I2F runs at a quarter of the rate */
    const float cf = __uint_as_float(0x4B000000u | c) - 8388608.0f;
    const float r = __fmaf_rn(cf, sf, zf);
    const uint32_t rb = __float_as_uint(r);
    const float below = __uint_as_float(rb - 1u), above = __uint_as_float(rb + 1u);
    uint32_t pair; /* E(below) in the low half, E(above) in the high half: one conversion of both */
    if (e_bf16) {
        const __nv_bfloat162 b2 = __floats2bfloat162_rn(below, above);
        memcpy(&pair, &b2, 4);
    } else {
        const __half2 h2 = __floats2half2_rn(below, above);
        memcpy(&pair, &h2, 4);
    }
    if ((pair & 0xFFFFu) == (pair >> 16) || !used) return pair & 0xFFFFu;
    return quant_level(2, 8, e_bf16, (double)sf, (double)zf, c);
}

/* An E value as a float (exact). */
static __device__ __forceinline__ float e_to_float(uint32_t h, bool e_bf16) {
    return e_bf16 ? __uint_as_float(h << 16) : __half2float(__ushort_as_half((uint16_t)h));
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
