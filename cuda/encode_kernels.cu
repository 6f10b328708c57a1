/*
 * encode_kernels.cu: GPU version of the reference encoder (spec/FORMAT.md §14), byte for byte.
 *
 * These are the general kernels: fp16 from fp16 at head_dim 128 with PER_HEAD scales or EXACT values
 * takes the fast kernels of encode_fast.cu instead (same bytes; SQKV_CUDA_FAST=0 turns them off).
 *
 * Passes over a batch of layers (every kernel covers all layers of the batch: grid.y = layer):
 *   prune_kernel   one 64-thread block per unit: loads the unit's 64 rows once into shared memory
 *                  (converted to E), finds each row's threshold (one thread per row), writes the
 *                  bitmaps, the unit's kept values in payload order to a staging buffer, per-tile
 *                  parameters (PER_TILE), and the unit's statistics.
 *                  With the range search (§14) for the tensor, PER_TILE / PER_HALF_TILE groups are
 *                  searched there too, a thread per group, once the unit's kept values are staged.
 *   section_kernel one block per SPARSE section: prefix sum of the units' kept counts, PER_HEAD
 *                  parameters, stream padding, body size.
 *   head_search_kernel  PER_HEAD with the range search only: one block per head replaces the head's
 *                  parameters by the search's choice, from its staged values.
 *   pack_kernel    one block per unit: codes of the staged values packed at the unit's payload
 *                  position, and the offset-table entries that fall in the unit.
 *   dense_kernel   DENSE sections: the dense window converted to E.
 *   hash kernels   XXH3 of every body (hash_kernels.cuh); the finish kernel's epilogue (HeaderEpilogue)
 *                  packs each 64-byte header from its hash.
 * Why staging instead of one pass: PER_HEAD scales need the whole head's maximum before any code can
 * be chosen, and payload positions need the counts of all earlier units. The staged kept values are
 * about 30% of the input at the default 70% sparsity, so the input is read from HBM once.
 *
 * Row selection (keep the `keep` largest magnitudes, ties to the lower channel, never ±0) is exact:
 * a 64-bin histogram of a coarse digit of the magnitude locates the bin holding the keep-th largest
 * magnitude, the few elements of that bin are gathered (in channel order) and a radix select over
 * the remaining bits finds the exact threshold T and how many elements equal to T are kept. A row is
 * then summarized by (T, cut): element (d, m) is kept iff m > T or (m == T and d < cut), which any
 * thread can evaluate for any element.
 */
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "encode_fast.cuh"
#include "encode_kernels.cuh"
#include "encode_section.cuh"
#include "numeric.cuh"
#include "hash_kernels.cuh"
#include "xxh3.cuh"

namespace sqkv_cuda {

namespace {

constexpr int kPruneThreads = 256; /* four threads per row of a unit */
constexpr int kHistWords = 32;     /* 64 bins of 16-bit counters */
constexpr int kHistStride = 33;    /* words per thread: odd, so the threads of a warp use distinct banks */
constexpr int kCandCap = 32;       /* gathered candidates per row before the slow path */
constexpr int kCandStride = 33;

struct PruneSmem {
    uint16_t *rows;      /* 64 x row_stride E values, zero beyond D and beyond R */
    uint32_t *thr;       /* 64: T << 16 | cut */
    uint32_t *hist;      /* 64 x kHistStride */
    uint32_t *cand;      /* 64 x kCandStride: mag << 16 | channel */
    uint64_t *bms;       /* unit tiles */
    uint32_t *tstart;    /* unit tiles + 1 */
    uint32_t *tstat;     /* per scale group of the unit (tile, or half tile): max_mag, min_key, max_key */
    uint16_t *outbuf;    /* unit_cap kept values */
    uint32_t *misc;      /* [0] error flags, [1] max_mag, [2] min_key, [3] max_key */
};

__host__ __device__ inline size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

__host__ __device__ inline uint32_t max_unit_tiles(const Geometry &g) {
    return g.head_dim > 64u * g.hb ? g.head_dim : 64u * g.hb;
}

/* PER_HALF_TILE (§7.4): two scale groups per tile, elements 0..31 (bitmap bits 63..32) then 32..63. */
__host__ __device__ inline uint32_t groups_per_tile(const Geometry &g) { return g.granularity == 3 ? 2u : 1u; }
constexpr uint64_t kFirstHalf = 0xFFFFFFFF00000000ull;

/* Bits 63 .. 64 - n set: the first n elements of a tile. */
__device__ __forceinline__ uint64_t first_elements(uint32_t n) {
    return n >= 64u ? ~0ull : n == 0u ? 0ull : ~0ull << (64u - n);
}

/* ALL_KEPT (§7.6): the implied bitmap of tile t of a unit, its non-padding elements. Keys: the unit's
 * rows; values: the channels of the tile's channel block (tile t is block t / R, row t % R). */
__device__ __forceinline__ uint64_t implied_bitmap(const UnitPlan &u, uint32_t t, uint32_t D, bool keys) {
    if (keys) return first_elements(u.rows);
    return first_elements(min(64u, D - 64u * (t / u.rows)));
}

__host__ __device__ inline size_t prune_smem_layout(const Geometry &g, uint64_t unit_cap, PruneSmem *s,
                                                    uint8_t *base) {
    size_t off = 0;
    auto take = [&](size_t bytes) {
        uint8_t *p = base ? base + off : nullptr;
        off = align16(off + bytes);
        return p;
    };
    const uint32_t nt = max_unit_tiles(g);
    uint8_t *rows = take((size_t)64 * g.row_stride * 2);
    uint8_t *thr = take(64 * 4);
    uint8_t *hist = take((size_t)64 * kHistStride * 4);
    uint8_t *cand = take((size_t)64 * kCandStride * 4);
    uint8_t *bms = take((size_t)nt * 8);
    uint8_t *tstart = take((size_t)(nt + 1) * 4);
    uint8_t *tstat = take((size_t)nt * groups_per_tile(g) * 12);
    uint8_t *outbuf = take((size_t)unit_cap * 2);
    uint8_t *misc = take(16);
    if (s) {
        s->rows = (uint16_t *)rows;
        s->thr = (uint32_t *)thr;
        s->hist = (uint32_t *)hist;
        s->cand = (uint32_t *)cand;
        s->bms = (uint64_t *)bms;
        s->tstart = (uint32_t *)tstart;
        s->tstat = (uint32_t *)tstat;
        s->outbuf = (uint16_t *)outbuf;
        s->misc = (uint32_t *)misc;
    }
    return off;
}

/* Loads one source element as float (exact for fp16/bf16/fp32). */
__device__ __forceinline__ float load_src(const void *src, uint32_t dtype, uint64_t i) {
    if (dtype == 3) return ((const float *)src)[i];
    const uint16_t h = ((const uint16_t *)src)[i];
    if (dtype == 2) return __uint_as_float((uint32_t)h << 16);
    return __half2float(__ushort_as_half(h));
}

/* Source element -> E bits with the input checks of sqkv_writer_add_layer. */
__device__ __forceinline__ uint16_t to_e(const void *src, uint32_t dtype, bool bf16, uint64_t i, uint32_t *flags) {
    if ((dtype == 2) == bf16 && dtype != 3) {
        const uint16_t h = ((const uint16_t *)src)[i];
        if (!e_is_finite(h, bf16)) *flags |= 1u;
        return h;
    }
    return float_to_e(load_src(src, dtype, i), bf16, flags);
}

/* ---- row selection ------------------------------------------------------------------------------ */

/* Four consecutive threads (a quad) share one row: each reads its quarter of the row's 16-byte
 * pieces, and every decision is taken on values reduced over the quad, so the four stay together.
 * Four threads per row (not one) because the block's shared memory is fixed by its 64 rows: more
 * threads on the same rows is what keeps enough warps resident to hide latency. */
struct Quad {
    uint32_t mask;  /* the four lanes */
    uint32_t q;     /* 0..3 */
    uint32_t base;  /* lane of member 0 */
};

__device__ __forceinline__ uint32_t quad_sum(const Quad &Q, uint32_t v) {
    v += __shfl_xor_sync(Q.mask, v, 1);
    v += __shfl_xor_sync(Q.mask, v, 2);
    return v;
}
__device__ __forceinline__ uint32_t quad_max(const Quad &Q, uint32_t v) {
    v = max(v, __shfl_xor_sync(Q.mask, v, 1));
    v = max(v, __shfl_xor_sync(Q.mask, v, 2));
    return v;
}
/* Sum of v over the members before this one. */
__device__ __forceinline__ uint32_t quad_excl(const Quad &Q, uint32_t v) {
    const uint32_t a = __shfl_sync(Q.mask, v, Q.base), b = __shfl_sync(Q.mask, v, Q.base + 1),
                   c = __shfl_sync(Q.mask, v, Q.base + 2);
    return (Q.q > 0 ? a : 0u) + (Q.q > 1 ? b : 0u) + (Q.q > 2 ? c : 0u);
}

/* The eight E magnitudes of a 16-byte row piece. */
__device__ __forceinline__ void unpack8(const uint4 &w, uint32_t m[8]) {
    const uint32_t v[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int q = 0; q < 4; q++) {
        m[2 * q] = v[q] & 0x7FFFu;
        m[2 * q + 1] = (v[q] >> 16) & 0x7FFFu;
    }
}

__device__ __forceinline__ void hist_add(uint32_t *hist, uint32_t bin) {
    atomicAdd(hist + (bin >> 1), 1u << ((bin & 1u) << 4)); /* 16-bit counters, two per word */
}
__device__ __forceinline__ uint32_t hist_get(const uint32_t *hist, uint32_t bin) {
    return (hist[bin >> 1] >> ((bin & 1u) << 4)) & 0xFFFFu;
}

/* First bin b (of nbins, a multiple of 4) where the running count reaches target; *before = count of
 * the bins before b, *count = bin b's count. Quad-parallel: each member sums a quarter of the bins. */
__device__ void find_bin(const Quad &Q, const uint32_t *hist, uint32_t nbins, uint32_t target, uint32_t *b,
                         uint32_t *before, uint32_t *count) {
    const uint32_t per = nbins / 4, b0 = Q.q * per;
    uint32_t sum = 0;
    for (uint32_t i = 0; i < per; i++) sum += hist_get(hist, b0 + i);
    const uint32_t ex = quad_excl(Q, sum);
    const uint32_t ballot = (__ballot_sync(Q.mask, ex + sum >= target) >> Q.base) & 0xFu;
    const uint32_t owner = ballot ? (uint32_t)__ffs(ballot) - 1u : 3u;
    uint32_t fb = 0, fbefore = 0, fcount = 0;
    if (Q.q == owner) {
        uint32_t run = ex, i = 0;
        for (; i + 1 < per; i++) {
            const uint32_t c = hist_get(hist, b0 + i);
            if (run + c >= target) break;
            run += c;
        }
        fb = b0 + i;
        fbefore = run;
        fcount = hist_get(hist, b0 + i);
    }
    *b = __shfl_sync(Q.mask, fb, Q.base + owner);
    *before = __shfl_sync(Q.mask, fbefore, Q.base + owner);
    *count = __shfl_sync(Q.mask, fcount, Q.base + owner);
}

/* Elements of this member's pieces with magnitude >= t. */
__device__ uint32_t count_ge(const uint4 *rv, uint32_t v0, uint32_t v1, uint32_t t) {
    uint32_t c = 0;
    for (uint32_t v = v0; v < v1; v++) {
        uint32_t m[8];
        unpack8(rv[v], m);
#pragma unroll
        for (int q = 0; q < 8; q++) c += m[q] >= t ? 1u : 0u;
    }
    return c;
}

/* The threshold of one row (16-byte aligned, zero beyond D up to nv * 8 elements): T << 16 | cut,
 * and the row's largest magnitude in *row_max. Element (d, m) is kept iff m > T or (m == T, d < cut).
 * Level 1: a histogram of quarter-binades counted down from the row maximum (64 bins: 16 binades,
 * the last bin takes everything smaller) finds the bin [lo, hi] holding the keep-th largest
 * magnitude. Level 2, when that bin holds more than kCandCap elements: a histogram of its next bits.
 * Then the bin's elements are gathered in channel order and a radix select over the bits below the
 * bin's common prefix gives T and T's rank among its ties. A bin still too full (many equal values)
 * is resolved by bisection inside its few values, counting over the row. */
__device__ uint32_t select_row(const Quad &Q, const uint16_t *row, uint32_t D, uint32_t nv, uint32_t keep, bool bf16,
                               uint32_t *hist, uint32_t *cand, uint32_t *row_max) {
    const uint4 *rv = (const uint4 *)row;
    const uint32_t per = (nv + 3) / 4, v0 = min(nv, Q.q * per), v1 = min(nv, v0 + per);
    uint32_t mx = 0;
    for (uint32_t v = v0; v < v1; v++) {
        uint32_t m[8];
        unpack8(rv[v], m);
#pragma unroll
        for (int q = 0; q < 8; q++) mx = max(mx, m[q]);
    }
    mx = quad_max(Q, mx);
    *row_max = mx;
    if (keep >= D || mx == 0) return 0; /* every nonzero element (or none): T = 0, cut = 0 */
    const uint32_t sh = bf16 ? 5u : 8u, base = mx >> sh;
#pragma unroll
    for (int w = 0; w < kHistWords / 4; w++) hist[Q.q * (kHistWords / 4) + w] = 0;
    __syncwarp(Q.mask);
    for (uint32_t v = v0; v < v1; v++) {
        uint32_t m[8];
        unpack8(rv[v], m);
#pragma unroll
        for (int q = 0; q < 8; q++) hist_add(hist, min(63u, base - (m[q] >> sh)));
    }
    __syncwarp(Q.mask);
    uint32_t b, before, n_c;
    find_bin(Q, hist, 64, keep, &b, &before, &n_c);
    uint32_t rank = keep - before; /* 1-based rank of T among the bin's magnitudes, largest first */
    uint32_t lo, hi, top;
    if (b < 63) {
        lo = (base - b) << sh;
        hi = lo + (1u << sh) - 1u;
        top = sh; /* bits [0, sh) vary inside the bin */
    } else {
        lo = 0;
        hi = ((base - 62u) << sh) - 1u;
        top = 15;
    }
    if (n_c > (uint32_t)kCandCap && b < 63) {
        const uint32_t sub_sh = sh > 6 ? sh - 6 : 0, nsub = 1u << (sh - sub_sh);
        __syncwarp(Q.mask);
#pragma unroll
        for (int w = 0; w < kHistWords / 4; w++) hist[Q.q * (kHistWords / 4) + w] = 0;
        __syncwarp(Q.mask);
        for (uint32_t v = v0; v < v1; v++) {
            uint32_t m[8];
            unpack8(rv[v], m);
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (m[q] >= lo && m[q] <= hi) hist_add(hist, nsub - 1u - ((m[q] - lo) >> sub_sh));
        }
        __syncwarp(Q.mask);
        uint32_t sb, before2;
        find_bin(Q, hist, nsub, rank, &sb, &before2, &n_c);
        rank -= before2;
        lo += (nsub - 1u - sb) << sub_sh;
        hi = lo + (1u << sub_sh) - 1u;
        top = sub_sh;
    }
    uint32_t T, cut = 0;
    if (n_c <= (uint32_t)kCandCap) {
        uint32_t mine = 0;
        for (uint32_t v = v0; v < v1; v++) {
            uint32_t m[8];
            unpack8(rv[v], m);
#pragma unroll
            for (int q = 0; q < 8; q++) mine += (m[q] >= lo && m[q] <= hi) ? 1u : 0u;
        }
        uint32_t at = quad_excl(Q, mine);
        for (uint32_t v = v0; v < v1; v++) {
            uint32_t m[8];
            unpack8(rv[v], m);
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (m[q] >= lo && m[q] <= hi) cand[at++] = (m[q] << 16) | (v * 8 + q);
        }
        __syncwarp(Q.mask);
        const uint32_t n = n_c;
        uint32_t prefix = top >= 15 ? 0u : lo;
        for (int bit = (int)top - 1; bit >= 0; bit--) {
            const uint32_t target = (prefix >> bit) | 1u;
            uint32_t ones = 0;
            for (uint32_t i = Q.q; i < n; i += 4) ones += (cand[i] >> (16 + bit)) == target ? 1u : 0u;
            ones = quad_sum(Q, ones);
            if (ones >= rank) prefix |= 1u << bit;
            else rank -= ones;
        }
        T = prefix;
        for (uint32_t i = 0; i < n; i++) /* every member scans: the same answer, no broadcast needed */
            if ((cand[i] >> 16) == T && --rank == 0) {
                cut = (cand[i] & 0xFFFFu) + 1;
                break;
            }
    } else {
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo + 1) / 2;
            if (quad_sum(Q, count_ge(rv, v0, v1, mid)) >= keep) lo = mid;
            else hi = mid - 1;
        }
        T = lo;
        const uint32_t need = keep - quad_sum(Q, count_ge(rv, v0, v1, T + 1));
        uint32_t ties = 0;
        for (uint32_t d = v0 * 8; d < v1 * 8; d++) ties += (row[d] & 0x7FFFu) == T ? 1u : 0u;
        uint32_t seen = quad_excl(Q, ties), mycut = 0;
        if (need > seen && need <= seen + ties)
            for (uint32_t d = v0 * 8; d < v1 * 8; d++)
                if ((row[d] & 0x7FFFu) == T && ++seen == need) {
                    mycut = d + 1;
                    break;
                }
        cut = quad_max(Q, mycut);
    }
    if (T == 0) cut = 0; /* the keep-th largest is zero: keep exactly the nonzero elements */
    return (T << 16) | cut;
}

__device__ __forceinline__ bool kept_elem(uint16_t x, uint32_t thr, uint32_t d) {
    const uint32_t T = thr >> 16, cut = thr & 0xFFFFu, m = x & 0x7FFFu;
    return m >= T + (d >= cut ? 1u : 0u) && m != 0;
}

/* Block-wide exclusive scan of counts[0..n) into starts[0..n] (starts[n] = total). */
__device__ void block_scan(const uint32_t *counts, uint32_t *starts, uint32_t n, uint32_t *wsum) {
    const uint32_t t = threadIdx.x;
    const uint32_t per = (n + blockDim.x - 1) / blockDim.x, first = min(n, t * per), last = min(n, first + per);
    uint32_t sum = 0;
    for (uint32_t i = first; i < last; i++) sum += counts[i];
    uint32_t incl = sum;
    for (int off = 1; off < 32; off <<= 1) {
        const uint32_t v = __shfl_up_sync(0xFFFFFFFFu, incl, off);
        if ((t & 31) >= (uint32_t)off) incl += v;
    }
    if ((t & 31) == 31) wsum[t >> 5] = incl;
    __syncthreads();
    uint32_t run = incl - sum;
    for (uint32_t w = 0; w < (t >> 5); w++) run += wsum[w];
    for (uint32_t i = first; i < last; i++) {
        const uint32_t c = counts[i];
        starts[i] = run;
        run += c;
    }
    if (t == blockDim.x - 1) starts[n] = run;
    __syncthreads();
}

__device__ __forceinline__ void tile_stat_atomic(uint32_t *tstat, uint32_t t, uint16_t x) {
    atomicMax(&tstat[3 * t], (uint32_t)(x & 0x7FFFu));
    const uint32_t k = e_order_key(x);
    atomicMin(&tstat[3 * t + 1], k);
    atomicMax(&tstat[3 * t + 2], k);
}

/* Whether the groups of this tensor (0 keys, 1 values) get the range search. */
__device__ __forceinline__ bool range_searched(const EncodeArgs &a, uint32_t tensor) {
    return (a.range_search & (tensor == 0 ? SQKV_RANGE_SEARCH_KEYS : SQKV_RANGE_SEARCH_VALUES)) != 0;
}

/* Range search of one PER_TILE / PER_HALF_TILE group by one thread (stat: max_mag, min_key, max_key). */
__device__ __noinline__ void search_small_group(const Geometry &g, const uint32_t *stat, const uint16_t *values,
                                                uint32_t count, uint16_t *sc, uint32_t params_per_group) {
    uint16_t sv, zv;
    range_search_group((int)g.quantizer, g.bits, g.e_bf16 != 0, stat[0], stat[1], stat[2],
                       [&](uint32_t k) { return values[k]; }, count, &sv, &zv);
    sc[0] = sv;
    if (params_per_group == 2) sc[1] = zv;
}

/* kHalves: PER_HALF_TILE scales. A template parameter so that the other granularities keep the
 * register count (and so the occupancy) they had before half tiles existed. kSearch: the range search
 * of tile groups for a tensor with the option, likewise (the search needs about 40 more registers). */
template <bool kHalves, bool kSearch>
__global__ void __launch_bounds__(kPruneThreads) prune_kernel(EncodeArgs a) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    const Geometry &g = a.g;
    PruneSmem s;
    prune_smem_layout(g, a.unit_cap, &s, smem_raw);
    __shared__ uint32_t wsum[kPruneThreads / 32];
    const uint32_t layer = blockIdx.y, uidx = blockIdx.x, tid = threadIdx.x;
    const UnitPlan u = a.units[uidx];
    const SectionPlan &sec = a.sections[u.section];
    const bool bf16 = g.e_bf16 != 0;
    const uint32_t D = g.head_dim, RS = g.row_stride, R = u.rows, nt = u.n_tiles;
    const void *src = layer_source(a, layer, sec.tensor);
    const uint32_t head = sec.head_start + u.head;
    const uint64_t row0 = ((uint64_t)head * g.n_tokens + sec.token_start + 64ull * u.chunk) * D;
    const bool keys = sec.tensor == 0;
    const bool halves = kHalves, all_kept = a.all_kept != 0;
    const bool tile_stats = g.granularity == 2 || halves, key_stats = g.quantizer == 2;
    constexpr uint32_t per_tile = kHalves ? 2u : 1u; /* scale groups per tile */
    const uint32_t n_groups = nt * per_tile;
    if (tid < 4) s.misc[tid] = tid == 2 ? 0xFFFFFFFFu : 0u;

    /* P0: rows -> shared memory as E (coalesced: the unit's R*D input elements are contiguous), zero
     * outside [R, D); bitmaps and tile statistics cleared. */
    uint32_t flags = 0;
    const uint32_t total = R * D;
    /* zero everything first (16-byte stores; RS is a multiple of 8), then overwrite the rows */
    for (uint32_t i = tid; i < 64u * RS / 8; i += kPruneThreads) ((uint4 *)s.rows)[i] = make_uint4(0, 0, 0, 0);
    for (uint32_t t = tid; t < nt; t += kPruneThreads) s.bms[t] = 0;
    for (uint32_t t = tid; t < n_groups; t += kPruneThreads) {
        s.tstat[3 * t] = 0;
        s.tstat[3 * t + 1] = 0xFFFFFFFFu;
        s.tstat[3 * t + 2] = 0;
    }
    __syncthreads();
    if (g.src_dtype != 3 && (D & 7u) == 0 && (((uintptr_t)src + row0 * 2) & 15u) == 0) {
        const uint4 *v = (const uint4 *)((const uint16_t *)src + row0);
        const bool same = (g.src_dtype == 2) == bf16;
        /* piece i is row i / vpr, column 8 * (i % vpr): one division per thread, then steps */
        const uint32_t vpr = D / 8, step_r = kPruneThreads / vpr, step_c = kPruneThreads % vpr;
        uint32_t r = tid / vpr, c = tid % vpr;
        for (uint32_t i = tid; i < total / 8; i += kPruneThreads) {
            uint4 w = v[i];
            const uint32_t d = 8 * c;
            uint16_t h[8];
            memcpy(h, &w, 16);
#pragma unroll
            for (int q = 0; q < 8; q++) {
                if (same) {
                    if (!e_is_finite(h[q], bf16)) flags |= 1u;
                } else {
                    const float f = g.src_dtype == 2 ? __uint_as_float((uint32_t)h[q] << 16)
                                                     : __half2float(__ushort_as_half(h[q]));
                    h[q] = float_to_e(f, bf16, &flags);
                }
            }
            memcpy(&w, h, 16);
            *(uint4 *)(s.rows + r * RS + d) = w;
            r += step_r;
            c += step_c;
            if (c >= vpr) {
                c -= vpr;
                r++;
            }
        }
    } else {
        for (uint32_t i = tid; i < total; i += kPruneThreads)
            s.rows[(i / D) * RS + i % D] = to_e(src, g.src_dtype, bf16, row0 + i, &flags);
    }
    if (flags) atomicOr(&s.misc[0], flags);
    __syncthreads();
    if (tid == 0 && s.misc[0]) atomicOr(a.error, s.misc[0]);

    /* P1: thresholds, a quad per row (rows beyond R are zero: nothing kept). In keep-all mode keep is
     * D, so only the row maxima are computed. */
    {
        const uint32_t r = tid >> 2;
        Quad Q;
        Q.q = tid & 3u;
        Q.base = (tid & 31u) & ~3u;
        Q.mask = 0xFu << Q.base;
        uint32_t row_max = 0, thr = 0;
        if (r < R)
            thr = select_row(Q, s.rows + r * RS, D, (D + 7) / 8, g.keep, bf16, s.hist + r * kHistStride,
                             s.cand + r * kCandStride, &row_max);
        /* the row maximum is always kept (keep >= 1): the unit's largest kept magnitude is the
         * largest row maximum */
        if (Q.q == 0) {
            s.thr[r] = thr;
            if (row_max) atomicMax(&s.misc[1], row_max);
        }
    }
    __syncthreads();

    /* P2: bitmaps, tile counts and (when a quantizer needs them) tile or half-tile statistics. In
     * keep-all mode every element of the unit's R rows and D channels is kept, zeros included. */
    uint32_t *tcount = s.hist; /* the histograms are free now */
    uint32_t mnk_all = 0xFFFFFFFFu, mxk_all = 0;
    if (keys && !tile_stats && !key_stats && !all_kept && (D & 1u) == 0) {
        /* the common case: a quad per channel pair, each member a quarter of the 64 rows */
        for (uint32_t p0 = 0; p0 < D / 2; p0 += kPruneThreads / 4) {
            const uint32_t p = p0 + (tid >> 2), q = tid & 3u;
            if (p >= D / 2) break; /* whole quads leave together */
            const uint32_t d0 = 2 * p, qmask = 0xFu << ((tid & 31u) & ~3u);
            uint64_t b0 = 0, b1 = 0;
#pragma unroll 4
            for (uint32_t k = 0; k < 16; k++) {
                const uint32_t r = 16 * q + k;
                const uint32_t w = *(const uint32_t *)(s.rows + r * RS + d0);
                const uint32_t thr = s.thr[r], T = thr >> 16, cut = thr & 0xFFFFu;
                const uint64_t bit = 1ull << (63 - r);
                const uint32_t m0 = w & 0x7FFFu, m1 = (w >> 16) & 0x7FFFu;
                if (m0 >= T + (d0 >= cut ? 1u : 0u) && m0) b0 |= bit;
                if (m1 >= T + (d0 + 1 >= cut ? 1u : 0u) && m1) b1 |= bit;
            }
            b0 |= __shfl_xor_sync(qmask, b0, 1);
            b1 |= __shfl_xor_sync(qmask, b1, 1);
            b0 |= __shfl_xor_sync(qmask, b0, 2);
            b1 |= __shfl_xor_sync(qmask, b1, 2);
            if (q == 0) {
                s.bms[d0] = b0;
                s.bms[d0 + 1] = b1;
            }
        }
    } else if (keys) {
        /* a thread per channel; with PER_HALF_TILE the channel's tile is two groups, rows 0..31 and
         * 32..63 (rows beyond R are zero: never kept when pruning, padding with ALL_KEPT) */
        constexpr uint32_t split = kHalves ? 32u : 64u;
        for (uint32_t d = tid; d < D; d += kPruneThreads) {
            uint64_t bm = 0;
            for (uint32_t r0 = 0; r0 < 64u; r0 += split) {
                uint32_t mx = 0, mnk = 0xFFFFFFFFu, mxk = 0;
                for (uint32_t r = r0; r < r0 + split; r++) {
                    const uint16_t x = s.rows[r * RS + d];
                    if (all_kept ? r < R : kept_elem(x, s.thr[r], d)) {
                        bm |= 1ull << (63 - r);
                        mx = max(mx, (uint32_t)(x & 0x7FFFu));
                        const uint32_t k = e_order_key(x);
                        mnk = min(mnk, k);
                        mxk = max(mxk, k);
                    }
                }
                uint32_t *st = s.tstat + 3 * (halves ? 2 * d + r0 / 32u : d);
                st[0] = mx;
                st[1] = mnk;
                st[2] = mxk;
                mnk_all = min(mnk_all, mnk);
                mxk_all = max(mxk_all, mxk);
            }
            s.bms[d] = bm;
        }
    } else {
        /* values: a quad per row, each member its quarter of the channels, bits OR-ed into the tiles */
        const uint32_t r = tid >> 2, q = tid & 3u;
        if (r < R) {
            const uint32_t thr = s.thr[r], nv = (D + 7) / 8, per = (nv + 3) / 4;
            const uint32_t c0 = min(D, 8 * min(nv, q * per)), c1 = min(D, 8 * min(nv, q * per + per));
            uint64_t bm = 0;
            uint32_t cur = c0 / 64;
            for (uint32_t d = c0; d < c1; d++) {
                const uint32_t h = d / 64;
                if (h != cur) {
                    if (bm) atomicOr((unsigned long long *)&s.bms[cur * R + r], (unsigned long long)bm);
                    bm = 0;
                    cur = h;
                }
                const uint16_t x = s.rows[r * RS + d];
                if (all_kept || kept_elem(x, thr, d)) {
                    bm |= 1ull << (63 - (d & 63u));
                    if (tile_stats)
                        tile_stat_atomic(s.tstat, halves ? 2 * (h * R + r) + ((d >> 5) & 1u) : h * R + r, x);
                    if (key_stats) {
                        const uint32_t k = e_order_key(x);
                        mnk_all = min(mnk_all, k);
                        mxk_all = max(mxk_all, k);
                    }
                }
            }
            if (bm) atomicOr((unsigned long long *)&s.bms[cur * R + r], (unsigned long long)bm);
        }
    }
    if (mnk_all != 0xFFFFFFFFu) {
        atomicMin(&s.misc[2], mnk_all);
        atomicMax(&s.misc[3], mxk_all);
    }
    __syncthreads();
    for (uint32_t t = tid; t < nt; t += kPruneThreads) tcount[t] = __popcll(s.bms[t]);
    __syncthreads();
    block_scan(tcount, s.tstart, nt, wsum);

    /* P3: kept values in payload order, bitmaps (none stored with ALL_KEPT) and PER_TILE or
     * PER_HALF_TILE parameters to the section body. */
    uint8_t *body = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64;
    for (uint32_t t = tid; t < nt; t += kPruneThreads) {
        const uint64_t tile_bm = s.bms[t];
        uint64_t bm = tile_bm;
        if (!all_kept) ((uint64_t *)body)[u.tile0 + t] = bm;
        uint32_t pos = s.tstart[t];
        uint32_t r_fixed = 0, d_fixed = 0;
        if (keys) d_fixed = t;
        else {
            r_fixed = t % R;
            d_fixed = 64u * (t / R);
        }
        while (bm) {
            const uint32_t i = __clzll(bm);
            bm &= ~(1ull << (63 - i));
            const uint32_t r = keys ? i : r_fixed, d = keys ? d_fixed : d_fixed + i;
            s.outbuf[pos++] = s.rows[r * RS + d];
        }
        if (tile_stats) {
            for (uint32_t part = 0; part < per_tile; part++) {
                const uint32_t grp = per_tile * t + part;
                const uint32_t count =
                    halves ? __popcll(tile_bm & (part ? ~kFirstHalf : kFirstHalf)) : s.tstart[t + 1] - s.tstart[t];
                uint16_t sv, zv;
                choose_params((int)g.quantizer, g.bits, bf16, count, s.tstat[3 * grp], s.tstat[3 * grp + 1],
                              s.tstat[3 * grp + 2], &sv, &zv);
                uint16_t *sc = (uint16_t *)(body + sec.scales_at) +
                               (uint64_t)sec.params_per_group * ((uint64_t)per_tile * u.tile0 + grp);
                sc[0] = sv;
                if (sec.params_per_group == 2) sc[1] = zv;
            }
        }
    }
    __syncthreads();

    /* Range search (§14) of the tile or half-tile groups, now that the unit's kept values are all in
     * outbuf in payload order: P3's parameters are replaced for every group with kept values. */
    if (kSearch && tile_stats && range_searched(a, sec.tensor)) {
        for (uint32_t grp = tid; grp < n_groups; grp += kPruneThreads) {
            const uint32_t t = grp / per_tile, part = grp % per_tile;
            const uint32_t in_tile = s.tstart[t + 1] - s.tstart[t];
            const uint32_t first = halves ? (uint32_t)__popcll(s.bms[t] & kFirstHalf) : in_tile;
            const uint32_t count = part ? in_tile - first : first;
            if (count == 0) continue;
            uint16_t *sc = (uint16_t *)(body + sec.scales_at) +
                           (uint64_t)sec.params_per_group * ((uint64_t)per_tile * u.tile0 + grp);
            search_small_group(g, s.tstat + 3 * grp, s.outbuf + s.tstart[t] + (part ? first : 0u), count, sc,
                               sec.params_per_group);
        }
    }

    /* P4: staged values (16-byte copies; the slack beyond the count is never read) and statistics. */
    const uint32_t kept = s.tstart[nt];
    uint16_t *stage = a.temp + ((uint64_t)layer * a.n_units + uidx) * a.unit_cap;
    for (uint32_t i = tid; i < (kept + 7) / 8; i += kPruneThreads) ((uint4 *)stage)[i] = ((const uint4 *)s.outbuf)[i];
    if (tid == 0) {
        UnitStat st;
        st.count = kept;
        st.max_mag = s.misc[1];
        st.min_key = s.misc[2];
        st.max_key = s.misc[3];
        st.start = 0;
        st.padded = 0;
        st.pad0 = 0;
        a.stats[(uint64_t)layer * a.n_units + uidx] = st;
    }
}

/* ---- per-section scan --------------------------------------------------------------------------- */

__global__ void __launch_bounds__(256) section_kernel(EncodeArgs a) {
    const uint32_t layer = blockIdx.y;
    const SectionPlan &sec = a.sections[blockIdx.x];
    if (threadIdx.x == 0) write_hash_job(a, layer, blockIdx.x); /* DENSE sections' too */
    if (sec.kind != kKindSparse) return;
    const Geometry &g = a.g;
    UnitStat *st = a.stats + (uint64_t)layer * a.n_units + sec.unit_first;
    uint8_t *body = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64;
    const uint64_t P = unit_payload_starts<256>(st, sec.n_units);
    /* PER_HEAD parameters from the units of each head */
    if (g.granularity == 1) {
        for (uint32_t j = 0; j < sec.head_count; j++) {
            uint16_t hs, hz;
            head_group_params<256>(g, sec, st, j, P, body, &hs, &hz);
        }
    }
    /* offset entry 0 (no table with ALL_KEPT: the scales start there) */
    if (threadIdx.x == 0 && sec.n_offsets > 0) ((uint32_t *)(body + sec.offsets_at))[0] = 0;
    finish_sparse_body(g, sec, body, P, &a.results[(uint64_t)layer * a.n_sections + blockIdx.x]);
}

/* ---- PER_HEAD range search ------------------------------------------------------------------------- */

constexpr int kSearchThreads = 256;
constexpr int kTermStride = kSearchThreads + 1; /* odd in doubles: the summing threads' rows in distinct banks */

/* Range search (§14) of one PER_HEAD group: block (section, layer, head of the section). Runs after
 * section_kernel (which wrote the extremes' parameters and the unit starts) and before pack_kernel. The
 * head's kept values are its units' staged values, in payload order. The sum of squared errors must be
 * the CPU's sequential binary64 sum, so the block computes the terms of 256 values for all candidates at
 * once and 8 threads (one per candidate) add them in order. */
__global__ void __launch_bounds__(kSearchThreads) head_search_kernel(EncodeArgs a) {
    const uint32_t layer = blockIdx.y, j = blockIdx.z, tid = threadIdx.x;
    const SectionPlan &sec = a.sections[blockIdx.x];
    if (sec.kind != kKindSparse || j >= sec.head_count || !range_searched(a, sec.tensor)) return;
    const Geometry &g = a.g;
    const bool bf16 = g.e_bf16 != 0;
    const int quantizer = (int)g.quantizer;
    const uint32_t L = 1u << g.bits;
    const uint64_t unit0 = (uint64_t)layer * a.n_units + sec.unit_first + (uint64_t)j * sec.chunks;
    const UnitStat *st = a.stats + unit0;
    __shared__ double levels[kRangeCandidates][256];
    __shared__ double terms[kRangeCandidates][kTermStride];
    __shared__ double errors[kRangeCandidates];
    __shared__ uint16_t cand_s[kRangeCandidates], cand_z[kRangeCandidates];
    __shared__ uint32_t red[4];
    __shared__ bool usable[kRangeCandidates];
    if (tid == 0) {
        red[0] = 0;
        red[1] = 0xFFFFFFFFu;
        red[2] = 0;
        red[3] = 0;
    }
    __syncthreads();
    uint32_t mx = 0, mnk = 0xFFFFFFFFu, mxk = 0, any = 0;
    for (uint32_t c = tid; c < sec.chunks; c += kSearchThreads) {
        const UnitStat x = st[c];
        if (x.count) {
            mx = max(mx, x.max_mag);
            mnk = min(mnk, x.min_key);
            mxk = max(mxk, x.max_key);
            any = 1;
        }
    }
    atomicMax(&red[0], mx);
    atomicMin(&red[1], mnk);
    atomicMax(&red[2], mxk);
    if (any) atomicOr(&red[3], 1u);
    __syncthreads();
    if (!red[3]) return; /* no kept values: the +0 parameters stay (the whole block leaves) */
    if (tid < kRangeCandidates) {
        uint16_t sv, zv;
        candidate_params(quantizer, g.bits, bf16, red[0], red[1], red[2], tid, &sv, &zv);
        cand_s[tid] = sv;
        cand_z[tid] = zv;
        usable[tid] = quant_params_ok(quantizer, g.bits, bf16, sv, zv);
        errors[tid] = 0.0;
    }
    __syncthreads();
    for (uint32_t i = tid; i < kRangeCandidates * L; i += kSearchThreads) {
        const uint32_t k = i / L, c = i % L;
        levels[k][c] = usable[k] ? e_to_double(quant_level(quantizer, g.bits, bf16, e_to_double(cand_s[k], bf16),
                                                           e_to_double(cand_z[k], bf16), c),
                                               bf16)
                                 : 0.0;
    }
    __syncthreads();
    double error = 0.0; /* candidate tid's running sum (tid < kRangeCandidates) */
    for (uint32_t c = 0; c < sec.chunks; c++) {
        const uint32_t n = st[c].count;
        const uint16_t *stage = a.temp + (unit0 + c) * a.unit_cap;
        for (uint32_t base = 0; base < n; base += kSearchThreads) {
            const uint32_t m = min((uint32_t)kSearchThreads, n - base);
            if (tid < m) {
                const double x = e_to_double(stage[base + tid], bf16);
                for (uint32_t k = 0; k < kRangeCandidates; k++)
                    if (usable[k]) terms[k][tid] = squared_error(TableLevels{levels[k]}, L, x);
            }
            __syncthreads();
            if (tid < kRangeCandidates && usable[tid])
                for (uint32_t q = 0; q < m; q++) error = dadd(error, terms[tid][q]);
            __syncthreads();
        }
    }
    if (tid < kRangeCandidates) errors[tid] = error;
    __syncthreads();
    if (tid == 0) {
        /* as range_search_group: the first usable candidate, then strictly smaller sums; candidate 0's
         * parameters if none is usable (candidate 0 always is: choose_step lowers s until it is) */
        int best = -1;
        for (uint32_t k = 0; k < kRangeCandidates; k++)
            if (usable[k] && (best < 0 || errors[k] < errors[best])) best = (int)k;
        if (best < 0) best = 0;
        uint16_t *sc = (uint16_t *)(a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64 + sec.scales_at) +
                       (uint64_t)sec.params_per_group * j;
        sc[0] = cand_s[best];
        if (sec.params_per_group == 2) sc[1] = cand_z[best];
    }
}

/* ---- codes and payload -------------------------------------------------------------------------- */

constexpr int kPackThreads = 256;

__global__ void __launch_bounds__(kPackThreads) pack_kernel(EncodeArgs a) {
    const Geometry &g = a.g;
    const uint32_t layer = blockIdx.y, uidx = blockIdx.x, tid = threadIdx.x;
    const UnitPlan u = a.units[uidx];
    const SectionPlan &sec = a.sections[u.section];
    const bool bf16 = g.e_bf16 != 0;
    const UnitStat st = a.stats[(uint64_t)layer * a.n_units + uidx];
    uint8_t *body = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64;
    const uint16_t *stage = a.temp + ((uint64_t)layer * a.n_units + uidx) * a.unit_cap;
    extern __shared__ __align__(16) uint8_t smem_raw[];
    double *levels = (double *)smem_raw;                   /* 256 (PER_HEAD) */
    uint32_t *tstart = (uint32_t *)(smem_raw + 256 * 8);   /* n_tiles + 1 */
    const uint32_t nt = u.n_tiles;
    const bool keys = sec.tensor == 0, all_kept = a.all_kept != 0;
    const uint64_t *bms = (const uint64_t *)body + u.tile0;
    /* bitmap of tile t of the unit: stored, or implied with ALL_KEPT (no bitmaps stream) */
    auto tile_bm = [&](uint32_t t) -> uint64_t { return all_kept ? implied_bitmap(u, t, g.head_dim, keys) : bms[t]; };

    /* tile prefix of the unit, for the offset table and PER_TILE / PER_HALF_TILE groups */
    {
        const uint32_t per = (nt + kPackThreads - 1) / kPackThreads, first = min(nt, tid * per),
                       last = min(nt, first + per);
        uint32_t sum = 0;
        for (uint32_t i = first; i < last; i++) sum += __popcll(tile_bm(i));
        uint32_t incl = sum;
        for (int off = 1; off < 32; off <<= 1) {
            const uint32_t v = __shfl_up_sync(0xFFFFFFFFu, incl, off);
            if ((tid & 31) >= (uint32_t)off) incl += v;
        }
        __shared__ uint32_t wsum[kPackThreads / 32];
        if ((tid & 31) == 31) wsum[tid >> 5] = incl;
        __syncthreads();
        uint32_t run = incl - sum;
        for (uint32_t w = 0; w < (tid >> 5); w++) run += wsum[w];
        for (uint32_t i = first; i < last; i++) {
            tstart[i] = run;
            run += __popcll(tile_bm(i));
        }
        if (tid == kPackThreads - 1) tstart[nt] = run;
    }
    __syncthreads();

    /* offset-table entries whose tile boundary falls in (tile0, tile0 + nt] (ALL_KEPT: no table) */
    if (sec.n_offsets > 0) {
        const uint32_t k = g.offset_log2;
        const uint64_t t0 = u.tile0, t1 = u.tile0 + nt;
        const uint64_t m_first = (t0 >> k) + 1, m_last = sec.n_offsets - 1;
        uint32_t *offs = (uint32_t *)(body + sec.offsets_at);
        for (uint64_t m = m_first + tid; m <= m_last; m += kPackThreads) {
            const uint64_t tm = min(m << k, sec.n_tiles);
            if (tm > t1) break;
            offs[m] = (uint32_t)(st.start + tstart[tm - t0]);
        }
    }

    if (st.count == 0) return; /* the whole block leaves: no barrier below is reached by anyone */
    const uint32_t L = 1u << g.bits;
    uint16_t head_s = 0, head_z = 0;
    const uint16_t *scales = (const uint16_t *)(body + sec.scales_at);
    if (g.granularity == 1) {
        head_s = scales[(uint64_t)sec.params_per_group * u.head];
        if (sec.params_per_group == 2) head_z = scales[(uint64_t)sec.params_per_group * u.head + 1];
        const double sd = e_to_double(head_s, bf16), zd = e_to_double(head_z, bf16);
        for (uint32_t c = tid; c < L; c += kPackThreads)
            levels[c] = e_to_double(quant_level((int)g.quantizer, g.bits, bf16, sd, zd, c), bf16);
    }
    __syncthreads();

    /* the unit's staged values, read once with 16-byte loads (all in flight together) */
    uint16_t *vals = (uint16_t *)(smem_raw + 256 * 8 + align_up(4 * ((size_t)max_unit_tiles(g) + 1), 16));
    for (uint32_t i = tid; i < (st.count + 7) / 8; i += kPackThreads) ((uint4 *)vals)[i] = ((const uint4 *)stage)[i];
    __syncthreads();
    /* code of kept value i of the unit */
    auto code_of = [&](uint32_t i) -> uint32_t {
        const uint16_t x = vals[i];
        const double xd = e_to_double(x, bf16);
        if (g.granularity == 1) return nearest_code(TableLevels{levels}, L, xd);
        uint32_t lo = 0, hi = nt; /* tile holding element i: last t with tstart[t] <= i */
        while (hi - lo > 1) {
            const uint32_t mid = (lo + hi) / 2;
            if (tstart[mid] <= i) lo = mid;
            else hi = mid;
        }
        /* PER_HALF_TILE: the second group of the tile once the kept elements of its first half
         * (bits 63..32, the first in payload order) are past */
        const uint64_t group = g.granularity == 3
                                   ? 2 * (u.tile0 + lo) + (i - tstart[lo] >= (uint32_t)__popcll(tile_bm(lo) & kFirstHalf))
                                   : u.tile0 + lo;
        const uint64_t grp = group * sec.params_per_group;
        const uint16_t sv = scales[grp], zv = sec.params_per_group == 2 ? scales[grp + 1] : 0;
        return nearest_code(OnTheFlyLevels{(int)g.quantizer, g.bits, bf16, e_to_double(sv, bf16), e_to_double(zv, bf16)},
                            L, xd);
    };

    uint8_t *payload = body + sec.payload_at;
    const uint64_t e0 = st.start;
    if (g.bits == 16) {
        uint16_t *p = (uint16_t *)payload + e0;
        for (uint32_t i = tid; i < st.count; i += kPackThreads) p[i] = vals[i];
    } else if (g.bits == 8) {
        for (uint32_t i = tid; i < st.count; i += kPackThreads) payload[e0 + i] = (uint8_t)code_of(i);
    } else {
        /* Codes first, one element per thread at a time (independent, coalesced loads), then 32-bit
         * words; words shared with a neighbouring unit are OR-ed into the zeroed payload. With widths
         * 3, 5, 6 and 7 (§7.5) a code may straddle two words: each word takes the bits of every code
         * that overlaps it, the low part of the first one shifted down. */
        uint8_t *codes = (uint8_t *)vals + align_up(2 * (size_t)a.unit_cap, 16);
        for (uint32_t i = tid; i < st.count; i += kPackThreads) codes[i] = (uint8_t)code_of(i);
        __syncthreads();
        const uint64_t b0 = e0 * g.bits, b1 = (e0 + st.count) * g.bits;
        const uint64_t w0 = b0 >> 5, w1 = (b1 + 31) >> 5;
        uint32_t *words = (uint32_t *)payload;
        for (uint64_t w = w0 + tid; w < w1; w += kPackThreads) {
            const uint64_t ef = (32 * w) / g.bits, el = (32 * w + 31) / g.bits; /* elements overlapping w */
            const uint32_t i_first = ef > e0 ? (uint32_t)(ef - e0) : 0u;
            const uint32_t i_last = (uint32_t)min((uint64_t)st.count, el + 1 - e0);
            uint32_t word = 0;
            for (uint32_t i = i_first; i < i_last; i++) {
                const int64_t rel = (int64_t)((e0 + i) * g.bits) - (int64_t)(32 * w);
                word |= rel >= 0 ? (uint32_t)codes[i] << rel : (uint32_t)codes[i] >> -rel;
            }
            if (w == w0 || w == w1 - 1) atomicOr(words + w, word);
            else words[w] = word;
        }
    }
}

/* ---- DENSE sections ------------------------------------------------------------------------------ */

/* Launched as a programmatic dependent (launch_dependent), as every kernel after the pruning pass: each
 * waits for its predecessor before anything else, so that a kernel's completion implies that of all
 * the call's kernels before it (the checksums must see every section complete). */
__global__ void dense_kernel(EncodeArgs a) {
    cudaGridDependencySynchronize();
    const Geometry &g = a.g;
    const uint32_t section = a.dense_ids[blockIdx.z];
    const SectionPlan &sec = a.sections[section];
    const uint32_t layer = blockIdx.y;
    const bool bf16 = g.e_bf16 != 0;
    const void *src = layer_source(a, layer, sec.tensor);
    uint8_t *body = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64;
    uint16_t *dst = (uint16_t *)body;
    const uint64_t per_head = (uint64_t)sec.token_count * g.head_dim;
    const uint64_t n = per_head * sec.head_count;
    uint32_t flags = 0;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        const uint64_t j = i / per_head, rest = i % per_head;
        const uint64_t si = ((uint64_t)(sec.head_start + j) * g.n_tokens + sec.token_start) * g.head_dim + rest;
        dst[i] = to_e(src, g.src_dtype, bf16, si, &flags);
    }
    if (blockIdx.x == 0)
        for (uint64_t i = 2 * n + threadIdx.x; i < sec.dense_body; i += blockDim.x) body[i] = 0;
    if (flags) atomicOr(a.error, flags);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        SectionResult r;
        r.stored_size = sec.dense_body;
        r.kept = 0;
        a.results[(uint64_t)layer * a.n_sections + section] = r;
    }
}

/* ---- headers -------------------------------------------------------------------------------------- */

__device__ void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
__device__ void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
__device__ void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The checksum's epilogue (hash_kernels.cuh finish_kernel): job i is section i % n_sections of layer slot
 * i / n_sections, and with its hash its 64-byte header (section_header.c sqkv_section_header_pack) is
 * complete. A header kernel of its own, after the checksums, was one more dependent launch per call.
 * Job 0 also hands the call's verdict to the host and zeroes the next call's error words (encode.cu:
 * two slots in turn); every kernel that sets them has ended (the finish waited for the block sums,
 * which waited for the kernels before them). */
struct HeaderEpilogue {
    EncodeArgs a;
    __device__ void operator()(uint32_t i, uint64_t hash) const {
        if (i == 0) {
            a.host_results[0] = *(volatile uint32_t *)a.error;
            for (int q = 0; q < 4; q++) a.error_next[q] = 0;
        }
        const uint32_t layer = i / a.n_sections, si = i % a.n_sections;
        const SectionPlan &sec = a.sections[si];
        const SectionResult r = a.results[i];
        a.host_results[1 + (uint64_t)i] = r.stored_size;
        uint8_t h[64];
        for (int q = 0; q < 64; q++) h[q] = 0;
        put16(h + 0, sec.kind);
        h[2] = 0;
        h[3] = sec.tensor;
        put32(h + 4, a.first_layer + layer);
        put32(h + 8, sec.head_start);
        put32(h + 12, sec.head_count);
        put32(h + 16, sec.token_start);
        put32(h + 20, sec.token_count);
        if (sec.kind == kKindSparse) {
            h[24] = sec.payload_bits;
            h[25] = sec.quantizer;
            h[26] = sec.granularity;
            h[27] = sec.offset_log2;
            if (a.all_kept) put32(h + 28, 1u); /* section flag ALL_KEPT (§5, §7.6) */
        }
        put64(h + 32, r.stored_size);
        put64(h + 40, r.stored_size);
        put64(h + 48, hash);
        put64(h + 56, xxh3_short(h, 56));
        uint64_t *dst = (uint64_t *)(a.out + (uint64_t)layer * a.layer_capacity + sec.slot);
        for (int q = 0; q < 8; q++) {
            uint64_t v = 0;
            for (int b = 7; b >= 0; b--) v = (v << 8) | h[8 * q + b];
            dst[q] = v;
        }
    }
};

}  // namespace

size_t prune_smem_bytes(const Geometry &g, uint64_t unit_cap) { return prune_smem_layout(g, unit_cap, nullptr, nullptr); }

/* Stage timing for tuning: with SQKV_CUDA_PROFILE set in the environment, events between the stages,
 * printed to stderr after a synchronization (never in normal use). */
struct StageTimer {
    bool on = false;
    cudaStream_t stream;
    cudaEvent_t ev[12];
    const char *name[12];
    int n = 0;
    explicit StageTimer(cudaStream_t s) : stream(s) {
        const char *env = getenv("SQKV_CUDA_PROFILE");
        on = env && *env;
        if (on) mark("start");
    }
    void mark(const char *what) {
        if (!on || n >= 12) return;
        cudaEventCreate(&ev[n]);
        cudaEventRecord(ev[n], stream);
        name[n++] = what;
    }
    ~StageTimer() {
        if (!on) return;
        cudaEventSynchronize(ev[n - 1]);
        fprintf(stderr, "encode stages:");
        for (int i = 1; i < n; i++) {
            float ms = 0;
            cudaEventElapsedTime(&ms, ev[i - 1], ev[i]);
            fprintf(stderr, " %s %.3f ms;", name[i], ms);
        }
        fprintf(stderr, "\n");
        for (int i = 0; i < n; i++) cudaEventDestroy(ev[i]);
    }
};

sqkv_cuda_status launch_encode(const EncodeArgs &a, cudaStream_t stream) {
    if (a.n_layers == 0) return SQKV_OK;
    if (a.n_layers > 65535 || a.n_units > 0x7FFFFFFFu || a.n_sections > 0x7FFFFFFFu || a.n_dense > 65535)
        return SQKV_ERR_LIMIT;
    StageTimer timer(stream);
    if (a.fast) {
        sqkv_cuda_status st = launch_prune_fast(a, stream);
        if (st != SQKV_OK) return st;
        timer.mark("prune");
        st = launch_section_fast(a, stream);
        if (st != SQKV_OK) return st;
        timer.mark("section");
        st = launch_pack_fast(a, stream);
        if (st != SQKV_OK) return st;
        timer.mark("pack");
    } else if (a.n_units > 0) {
        const size_t smem = prune_smem_bytes(a.g, a.unit_cap);
        const bool search = a.range_search != 0 && a.g.granularity != 1;
        const auto kernel = a.g.granularity == 3 ? (search ? prune_kernel<true, true> : prune_kernel<true, false>)
                                                 : (search ? prune_kernel<false, true> : prune_kernel<false, false>);
        SQKV_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        kernel<<<dim3(a.n_units, a.n_layers), kPruneThreads, smem, stream>>>(a);
        SQKV_CUDA_LAUNCHED();
    }
    if (!a.fast) {
        timer.mark("prune");
        section_kernel<<<dim3(a.n_sections, a.n_layers), 256, 0, stream>>>(a);
        SQKV_CUDA_LAUNCHED();
        if (a.range_search && a.g.granularity == 1 && a.max_head_count > 0) {
            if (a.max_head_count > 65535) return SQKV_ERR_LIMIT;
            head_search_kernel<<<dim3(a.n_sections, a.n_layers, a.max_head_count), kSearchThreads, 0, stream>>>(a);
            SQKV_CUDA_LAUNCHED();
        }
        timer.mark("section");
    }
    if (!a.fast && a.n_units > 0) {
        const size_t pack_smem = 256 * 8 + align_up(4 * ((size_t)max_unit_tiles(a.g) + 1), 16) +
                                 align_up(2 * (size_t)a.unit_cap, 16) + a.unit_cap;
        SQKV_CUDA_TRY(cudaFuncSetAttribute(pack_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)pack_smem));
        pack_kernel<<<dim3(a.n_units, a.n_layers), kPackThreads, pack_smem, stream>>>(a);
        SQKV_CUDA_LAUNCHED();
    }
    if (!a.fast) timer.mark("pack");
    if (a.n_dense > 0) {
        const uint64_t blocks = (a.max_dense_elems + 2047) / 2048;
        const sqkv_cuda_status ds =
            launch_dependent(dense_kernel, dim3((unsigned)(blocks < 1024 ? blocks : 1024), a.n_layers, a.n_dense), dim3(256), 0, stream, a);
        if (ds != SQKV_OK) return ds;
    }
    timer.mark("dense");
    const sqkv_cuda_status st = launch_hash_with(a.jobs, a.n_sections, a.n_layers, a.block_map, a.blocks_per_layer, a.sums,
                                                 a.hashes, HeaderEpilogue{a}, stream);
    if (st != SQKV_OK) return st;
    timer.mark("hash+header");
    return SQKV_OK;
}

}  // namespace sqkv_cuda
