/*
 * decode_kernels.cu: GPU decoding of SPARSE and DENSE sections, equal bit for bit to the CPU decoder.
 *
 *   count_kernel    a warp per unit: popcounts of the unit's bitmaps, padding bits, PER_TILE
 *                   parameter rules.
 *   section_kernel  one block per SPARSE section: prefix sum of the unit counts (each unit's payload
 *                   position), decoded_size against the popcounts, stream padding, PER_HEAD rules,
 *                   bits after the last code.
 *   check_kernel    (validation) the offset table against the popcounts, EXACT values; DENSE values.
 *   decode_kernel   (general; decode_fast.cu takes head_dim 128 with PER_HEAD, PER_TILE or EXACT sections)
 *                   one block per unit: the unit's payload words are staged in shared memory; keys
 *                   are written row by row (a lane owns two adjacent channels and walks down the
 *                   tokens), values a warp per 64-channel row piece.
 *   mustafar_scan_kernel  one block per head of a Mustafar export: each unit's first value word.
 *   mustafar_kernel (general) one block per unit: Mustafar's arrays (decode_fast.cu's kernel writes
 *                   them for the sections it decodes).
 * Until a section is validated, payload positions come from the bitmaps' own prefix sums (the count
 * and section kernels) and the offset table is only compared with them; once the host has read a
 * clean verdict, later calls take each unit's start from the checked offset table plus at most
 * 2^k - 1 popcounts (k <= 8), which leaves a single decoding kernel. Every read stays inside the
 * stream extents the host derived from validated header fields; payload reads are clamped to the
 * payload region as well.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "decode_kernels.cuh"
#include "decode_units.cuh"
#include "numeric.cuh"

namespace sqkv_cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ uint64_t valid_mask(uint32_t valid) {
    return valid >= 64u ? ~0ull : (valid == 0 ? 0ull : ~0ull << (64u - valid));
}

/* Valid elements of unit tile t (keys: the unit's rows; values: channels of the tile's block). */
__device__ __forceinline__ uint32_t tile_valid(const Geometry &g, const DecSection &sec, const UnitPlan &u, uint32_t t) {
    if (sec.tensor == 0) return u.rows;
    const uint32_t h = t / u.rows;
    return min(64u, g.head_dim - 64u * h);
}

/* Bitmap of unit tile t: stored, or with ALL_KEPT (§7.6) the one of every non-padding element. bms is
 * the unit's first stored bitmap and is not read with ALL_KEPT. */
__device__ __forceinline__ uint64_t unit_bitmap(const Geometry &g, const DecSection &sec, const UnitPlan &u,
                                                const uint64_t *bms, uint32_t t) {
    return sec.all_kept ? valid_mask(tile_valid(g, sec, u, t)) : bms[t];
}

/* Parameter groups per tile: 2 with PER_HALF_TILE (group 2n: elements 0..31, bitmap bits 63..32), else 1. */
__device__ __forceinline__ uint32_t groups_per_tile(const DecSection &sec) { return sec.granularity == 3 ? 2u : 1u; }

/* The first payload element of a unit of an ALL_KEPT section: every earlier token of the section's
 * earlier heads and of this head's earlier chunks has all head_dim elements (§7.6). */
__device__ __forceinline__ uint64_t all_kept_first(const Geometry &g, const DecSection &sec, const UnitPlan &u) {
    return ((uint64_t)u.head * sec.token_count + 64ull * u.chunk) * g.head_dim;
}

/* SCALE rule of the PER_TILE or PER_HALF_TILE groups of section tile `tile` with bitmap bm (§7.4). */
__device__ __forceinline__ uint32_t tile_scale_errors(const DecSection &sec, bool bf16, const uint16_t *scales,
                                                      uint64_t tile, uint64_t bm) {
    const uint32_t gpt = groups_per_tile(sec);
    uint32_t err = 0;
    for (uint32_t h = 0; h < gpt; h++) {
        const uint32_t c = gpt == 1 ? __popcll(bm) : __popc(h == 0 ? (uint32_t)(bm >> 32) : (uint32_t)bm);
        const uint64_t grp = (tile * gpt + h) * sec.params_per_group;
        const uint16_t s = scales[grp], z = sec.params_per_group == 2 ? scales[grp + 1] : 0;
        if (c == 0 ? (s != 0 || z != 0) : !quant_params_ok(sec.quantizer, sec.bits, bf16, s, z)) err |= kErrScale;
    }
    return err;
}

__device__ __forceinline__ void block_or(uint32_t *sh_err, uint32_t err) {
    if (err) atomicOr(sh_err, err);
}

/* Exclusive prefix of per-tile values (popcount or padded words) of nt tiles into out[0..nt]. */
template <typename F>
__device__ void tile_scan(uint32_t nt, F value, uint32_t *out, uint32_t *wsum) {
    const uint32_t tid = threadIdx.x, per = (nt + blockDim.x - 1) / blockDim.x;
    const uint32_t first = min(nt, tid * per), last = min(nt, first + per);
    uint32_t sum = 0;
    for (uint32_t i = first; i < last; i++) sum += value(i);
    const uint32_t incl = warp_inclusive_sum(sum);
    if ((tid & 31) == 31) wsum[tid >> 5] = incl;
    __syncthreads();
    uint32_t run = incl - sum;
    for (uint32_t w = 0; w < (tid >> 5); w++) run += wsum[w];
    for (uint32_t i = first; i < last; i++) {
        out[i] = run;
        run += value(i);
    }
    if (tid == blockDim.x - 1) out[nt] = run;
    __syncthreads();
}

/* Code of payload element e (b = 16: the E value itself); 0 beyond the payload region. */
__device__ __forceinline__ uint32_t code_at(const DecSection &sec, uint32_t bits, uint64_t e) {
    const uint8_t *payload = sec.body + sec.payload_at;
    const uint64_t region = sec.decoded_size - sec.payload_at;
    if (bits == 16) return 2 * e + 2 <= region ? ((const uint16_t *)payload)[e] : 0u;
    const uint64_t bit = e * bits, word = bit >> 5;
    const uint32_t sh = (uint32_t)(bit & 31u);
    if (4 * word + 4 > region) return 0u;
    uint32_t v = ((const uint32_t *)payload)[word] >> sh;
    /* widths 3, 5, 6, 7: the code may go on in the next word (§7.5) */
    if (sh + bits > 32 && 4 * word + 8 <= region) v |= ((const uint32_t *)payload)[word + 1] << (32 - sh);
    return v & ((1u << bits) - 1u);
}

/* ---- count ---------------------------------------------------------------------------------------- */

/* A warp per unit, kThreads / 32 units a block: a block per unit left most of its 256 threads idle (a unit
 * has at most 128 tiles) and ran 31 waves of short, latency-bound blocks for a whole cache (H200, Llama-3-8B
 * shape: 93 us, results/gpu_bench.md session 19). */
__global__ void __launch_bounds__(kThreads) count_kernel(DecodeArgs a) {
    const uint32_t idx = blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (idx >= a.n_units) return; /* whole warps */
    const UnitPlan u = unit_at(a, a.sections, idx);
    const DecSection &sec = a.sections[u.section];
    const Geometry &g = a.g;
    const bool bf16 = g.e_bf16 != 0;
    const uint64_t *bms = (const uint64_t *)sec.body + u.tile0;
    const uint16_t *scales = (const uint16_t *)(sec.body + sec.scales_at);
    uint32_t cnt = 0, padded = 0, err = 0;
    for (uint32_t t = lane; t < u.n_tiles; t += 32) {
        const uint64_t bm = unit_bitmap(g, sec, u, bms, t);
        if (bm & ~valid_mask(tile_valid(g, sec, u, t))) err |= kErrBitmapPad;
        const uint32_t c = __popcll(bm);
        cnt += c;
        padded += (c + 7u) & ~7u;
        if (sec.granularity >= 2) err |= tile_scale_errors(sec, bf16, scales, u.tile0 + t, bm);
    }
    cnt = __reduce_add_sync(0xFFFFFFFFu, cnt);
    padded = __reduce_add_sync(0xFFFFFFFFu, padded);
    err = __reduce_or_sync(0xFFFFFFFFu, err);
    if (lane == 0) {
        UnitStat &st = a.stats[idx];
        st.count = cnt;
        st.padded = padded;
        if (err) atomicOr(&a.errors[u.section], err);
    }
}

/* ---- per section ------------------------------------------------------------------------------------ */

__device__ bool bytes_zero(const uint8_t *p, uint64_t from, uint64_t to) {
    bool ok = true;
    for (uint64_t i = from + threadIdx.x; i < to; i += blockDim.x) ok &= p[i] == 0;
    return ok;
}

__global__ void __launch_bounds__(kThreads) section_kernel(DecodeArgs a) {
    const DecSection &sec = a.sections[blockIdx.x];
    if (sec.kind != kKindSparse) return;
    const Geometry &g = a.g;
    const bool bf16 = g.e_bf16 != 0;
    UnitStat *st = a.stats + sec.unit_first;
    __shared__ uint64_t warp_sums[kThreads / 32];
    __shared__ uint64_t carry;
    __shared__ uint32_t s_err;
    if (threadIdx.x == 0) {
        carry = 0;
        s_err = 0;
    }
    __syncthreads();
    for (uint32_t base = 0; base < sec.n_units; base += kThreads) {
        const uint32_t i = base + threadIdx.x;
        const uint64_t c = i < sec.n_units ? st[i].count : 0;
        uint64_t incl = c;
        for (int off = 1; off < 32; off <<= 1) {
            const uint64_t v = __shfl_up_sync(0xFFFFFFFFu, incl, off);
            if ((threadIdx.x & 31) >= (uint32_t)off) incl += v;
        }
        if ((threadIdx.x & 31) == 31) warp_sums[threadIdx.x >> 5] = incl;
        __syncthreads();
        uint64_t before = carry;
        for (uint32_t w = 0; w < (threadIdx.x >> 5); w++) before += warp_sums[w];
        if (i < sec.n_units) st[i].start = before + incl - c;
        __syncthreads();
        if (threadIdx.x == kThreads - 1) carry = before + incl;
        __syncthreads();
    }
    const uint64_t P = carry;
    uint32_t err = 0;
    const uint64_t payload_bytes = (P * sec.bits + 7) / 8;
    const bool size_ok = sec.payload_at + align_up(payload_bytes, 8) == sec.decoded_size;
    if (!size_ok) err |= kErrSize;
    if (!bytes_zero(sec.body, sec.offsets_at + 4 * sec.n_offsets, sec.scales_at) ||
        !bytes_zero(sec.body, sec.scales_at + 2 * sec.n_groups * sec.params_per_group, sec.payload_at))
        err |= kErrStreamPad;
    if (threadIdx.x == 0 && !sec.all_kept && ((const uint32_t *)(sec.body + sec.offsets_at))[0] != 0) err |= kErrOffsets;
    if (sec.granularity == 1) {
        const uint16_t *scales = (const uint16_t *)(sec.body + sec.scales_at);
        for (uint32_t j = threadIdx.x; j < sec.head_count; j += blockDim.x) {
            const uint64_t first = st[(uint64_t)j * sec.chunks].start;
            const uint64_t end = j + 1 < sec.head_count ? st[(uint64_t)(j + 1) * sec.chunks].start : P;
            const uint16_t s = scales[(uint64_t)j * sec.params_per_group];
            const uint16_t z = sec.params_per_group == 2 ? scales[(uint64_t)j * sec.params_per_group + 1] : 0;
            if (end == first ? (s != 0 || z != 0) : !quant_params_ok(sec.quantizer, sec.bits, bf16, s, z))
                err |= kErrScale;
        }
    }
    if (size_ok) {
        const uint8_t *payload = sec.body + sec.payload_at;
        const uint64_t bits_used = P * sec.bits;
        if (threadIdx.x == 0 && (bits_used & 7u) && (payload[bits_used >> 3] >> (bits_used & 7u)) != 0)
            err |= kErrPayloadPad;
        if (!bytes_zero(payload, payload_bytes, sec.decoded_size - sec.payload_at)) err |= kErrPayloadBytes;
    }
    block_or(&s_err, err);
    __syncthreads();
    if (threadIdx.x == 0 && s_err) atomicOr(&a.errors[blockIdx.x], s_err);
}

/* ---- validation of the rest ------------------------------------------------------------------------- */

/* A warp per unit, as count_kernel; tstart is the warp's slice of the dynamic shared memory. */
__global__ void __launch_bounds__(kThreads) check_kernel(DecodeArgs a, uint32_t tstart_stride) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint32_t idx = blockIdx.x * (kThreads / 32) + warp;
    if (idx >= a.n_units) return; /* whole warps */
    uint32_t *tstart = (uint32_t *)smem_raw + (size_t)warp * tstart_stride;
    const UnitPlan u = unit_at(a, a.sections, idx);
    const DecSection &sec = a.sections[u.section];
    const UnitStat st = a.stats[idx];
    const bool bf16 = a.g.e_bf16 != 0;
    const uint64_t *bms = (const uint64_t *)sec.body + u.tile0;
    /* exclusive prefix of the tiles' popcounts, 32 tiles a step */
    uint32_t run = 0;
    for (uint32_t base = 0; base < u.n_tiles; base += 32) {
        const uint32_t t = base + lane;
        const uint32_t c = t < u.n_tiles ? (uint32_t)__popcll(unit_bitmap(a.g, sec, u, bms, t)) : 0u;
        const uint32_t incl = warp_inclusive_sum(c);
        if (t < u.n_tiles) tstart[t] = run + incl - c;
        run += __shfl_sync(0xFFFFFFFFu, incl, 31);
    }
    if (lane == 0) tstart[u.n_tiles] = run;
    __syncwarp();
    uint32_t err = 0;
    const uint32_t k = sec.offset_log2;
    const uint64_t t0 = u.tile0, t1 = u.tile0 + u.n_tiles;
    const uint32_t *offs = (const uint32_t *)(sec.body + sec.offsets_at);
    for (uint64_t m = (t0 >> k) + 1 + lane; m < sec.n_offsets; m += 32) {
        const uint64_t tm = min(m << k, sec.n_tiles);
        if (tm > t1) break;
        if ((uint64_t)offs[m] != st.start + tstart[tm - t0]) err |= kErrOffsets;
    }
    if (sec.bits == 16) {
        const uint64_t region = (sec.decoded_size - sec.payload_at) / 2;
        const uint16_t *p = (const uint16_t *)(sec.body + sec.payload_at);
        for (uint32_t i = lane; i < st.count; i += 32) {
            const uint64_t e = st.start + i;
            if (e >= region) break;
            const uint16_t v = p[e];
            if (!e_is_finite(v, bf16) || (v & 0x7FFFu) == 0) err |= kErrValue;
        }
    }
    err = __reduce_or_sync(0xFFFFFFFFu, err);
    if (lane == 0 && err) atomicOr(&a.errors[u.section], err);
}

__global__ void dense_check_kernel(DecodeArgs a, const uint32_t *dense_ids) {
    const uint32_t si = dense_ids[blockIdx.y];
    const DecSection &sec = a.sections[si];
    const bool bf16 = a.g.e_bf16 != 0;
    const uint64_t n = (uint64_t)sec.head_count * sec.token_count * a.g.head_dim;
    const uint16_t *v = (const uint16_t *)sec.body;
    uint32_t err = 0;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        if (!e_is_finite(v[i], bf16)) err |= kErrValue;
    if (blockIdx.x == 0)
        for (uint64_t i = 2 * n + threadIdx.x; i < sec.decoded_size; i += blockDim.x)
            if (sec.body[i]) err |= kErrDensePad;
    if (err) atomicOr(&a.errors[si], err);
}

/* ---- decoding ------------------------------------------------------------------------------------------ */

/* Shared memory of decode_kernel for this geometry and call. */
__host__ __device__ inline size_t decode_smem(uint32_t D, uint32_t hb, uint32_t max_bits) {
    const uint32_t nt = D > 64u * hb ? D : 64u * hb;
    const size_t tiles = align_up(4 * ((size_t)nt + 1), 16);
    const size_t words = align_up(4 * (((size_t)64 * D * max_bits + 31) / 32 + 2), 16);
    const size_t levels = align_up(2 * ((size_t)nt * 16 > 256 ? (size_t)nt * 16 : 256), 16);
    return tiles + words + levels;
}

/* One block per unit. The unit's payload words are copied to shared memory first (its codes are
 * one contiguous run), so decoding reads no global memory but its bitmaps. Keys: a lane owns two
 * adjacent channels (two tiles) and walks down the tokens, so each row of the output is written by
 * consecutive lanes with 4-byte stores and no transpose is needed. Values: a warp per tile, a row
 * piece of 64 channels. */
__global__ void __launch_bounds__(kThreads) decode_kernel(DecodeArgs a) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    const Geometry &g = a.g;
    const UnitPlan u = unit_at(a, a.sections, blockIdx.x);
    const DecSection &sec = a.sections[u.section];
    const bool bf16 = g.e_bf16 != 0;
    const uint32_t D = g.head_dim, nt = u.n_tiles, R = u.rows, bits = sec.bits, L = 1u << (bits & 15u);
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint32_t nt_max = D > 64u * g.hb ? D : 64u * g.hb;
    uint32_t *tstart = (uint32_t *)smem_raw;
    uint32_t *words = (uint32_t *)(smem_raw + align_up(4 * ((size_t)nt_max + 1), 16));
    uint16_t *levels =
        (uint16_t *)((uint8_t *)words + align_up(4 * (((size_t)64 * D * a.max_bits + 31) / 32 + 2), 16));
    __shared__ uint32_t wsum[kThreads / 32];
    __shared__ uint32_t s_flags;
    __shared__ uint64_t s_extra;
    const uint64_t *sec_bms = (const uint64_t *)sec.body;
    const uint64_t *bms = sec_bms + u.tile0;
    const uint16_t *scales = (const uint16_t *)(sec.body + sec.scales_at);
    /* per_tile: PER_TILE or PER_HALF_TILE groups (gpt per tile); their levels are tabled in shared
     * memory when the unit's tables fit in nt * 16 entries, else computed per element */
    const uint32_t gpt = groups_per_tile(sec);
    const bool exact = bits == 16, per_tile = !exact && sec.granularity >= 2, table16 = per_tile && gpt * L <= 16;
    if (threadIdx.x == 0) {
        s_flags = 0;
        s_extra = 0;
    }
    tile_scan(nt, [&](uint32_t t) { return (uint32_t)__popcll(unit_bitmap(g, sec, u, bms, t)); }, tstart, wsum);
    /* the unit's first payload element: validated offset table plus at most 2^k - 1 popcounts, or
     * the prefix sums of the count pass */
    uint64_t e0;
    if (sec.all_kept) {
        e0 = all_kept_first(g, sec, u);
    } else if (a.use_offsets) {
        const uint32_t k = sec.offset_log2;
        const uint64_t m = u.tile0 >> k, t_first = m << k;
        uint32_t extra = 0;
        for (uint64_t t = t_first + threadIdx.x; t < u.tile0; t += blockDim.x) extra += __popcll(sec_bms[t]);
        if (extra) atomicAdd((unsigned long long *)&s_extra, (unsigned long long)extra);
        __syncthreads();
        e0 = ((const uint32_t *)(sec.body + sec.offsets_at))[m] + s_extra;
    } else {
        e0 = a.stats[blockIdx.x].start;
    }
    const uint32_t count = tstart[nt];
    const uint64_t region_words = (sec.decoded_size - sec.payload_at) / 4;
    const uint64_t w0 = exact ? (e0 * 16) >> 5 : (e0 * bits) >> 5;
    const uint64_t w1 = ((e0 + count) * bits + 31) >> 5;
    const uint32_t *pw = (const uint32_t *)(sec.body + sec.payload_at);
    for (uint64_t w = w0 + threadIdx.x; w < w1; w += blockDim.x) words[w - w0] = w < region_words ? pw[w] : 0u;
    if (!exact) {
        if (!per_tile) {
            const uint64_t grp = (uint64_t)u.head * sec.params_per_group;
            const double sd = e_to_double(scales[grp], bf16);
            const double zd = sec.params_per_group == 2 ? e_to_double(scales[grp + 1], bf16) : 0.0;
            for (uint32_t c = threadIdx.x; c < L; c += blockDim.x)
                levels[c] = quant_level(sec.quantizer, bits, bf16, sd, zd, c);
        } else if (table16) {
            for (uint32_t i = threadIdx.x; i < nt * gpt * L; i += blockDim.x) {
                const uint32_t tg = i / L, c = i % L; /* tg: the unit's group tg (tile tg / gpt) */
                const uint64_t grp = (u.tile0 * gpt + tg) * sec.params_per_group;
                const double sd = e_to_double(scales[grp], bf16);
                const double zd = sec.params_per_group == 2 ? e_to_double(scales[grp + 1], bf16) : 0.0;
                levels[i] = quant_level(sec.quantizer, bits, bf16, sd, zd, c);
            }
        }
    }
    __syncthreads();
    uint32_t flags = 0;
    /* E value of the unit's kept element i (relative to e0) of tile t, in half h of the tile */
    auto value_of = [&](uint32_t t, uint32_t h, uint32_t i) -> uint16_t {
        const uint64_t bit = (e0 + i) * bits - w0 * 32;
        const uint32_t sh = (uint32_t)(bit & 31u);
        uint32_t raw = words[bit >> 5] >> sh;
        /* widths 3, 5, 6, 7: a code that straddles two words (§7.5); w1 covers its last bit */
        if (sh + bits > 32) raw |= words[(bit >> 5) + 1] << (32 - sh);
        const uint32_t code = raw & (exact ? 0xFFFFu : L - 1u);
        uint16_t e;
        if (exact) e = (uint16_t)code;
        else if (!per_tile) e = levels[code];
        else if (table16) e = levels[(t * gpt + h) * L + code];
        else {
            const uint64_t grp = ((u.tile0 + t) * gpt + h) * sec.params_per_group;
            const double sd = e_to_double(scales[grp], bf16);
            const double zd = sec.params_per_group == 2 ? e_to_double(scales[grp + 1], bf16) : 0.0;
            e = quant_level(sec.quantizer, bits, bf16, sd, zd, code);
        }
        return to_out(e, bf16, a.out_dtype, &flags);
    };
    const uint32_t head = sec.head_start + u.head, token0 = sec.token_start + 64u * u.chunk;
    uint16_t *out = (uint16_t *)sec.out + ((uint64_t)head * g.n_tokens + token0) * D;
    /* two elements per 4-byte store where every row start allows it (outputs need only 2-byte alignment,
     * sqkv_cuda.h) */
    const bool word_stores = (D & 1u) == 0 && ((uintptr_t)out & 3u) == 0;
    if (sec.tensor == 0) {
        /* work items: (block of 32 channel pairs, group of rows) */
        const uint32_t pairs = (D + 1) / 2, pblocks = (pairs + 31) / 32;
        const uint32_t rgroups = pblocks >= 8 ? 1u : 8u / pblocks, rows_per = (64 + rgroups - 1) / rgroups;
        for (uint32_t w = warp; w < pblocks * rgroups; w += kThreads / 32) {
            const uint32_t pb = w % pblocks, rg = w / pblocks;
            const uint32_t p = pb * 32 + lane, d0 = 2 * p;
            const bool has0 = d0 < D, has1 = d0 + 1 < D;
            const uint32_t r0 = rg * rows_per, r1 = min(R, r0 + rows_per);
            const uint64_t m0 = has0 ? unit_bitmap(g, sec, u, bms, d0) : 0;
            const uint64_t m1 = has1 ? unit_bitmap(g, sec, u, bms, d0 + 1) : 0;
            uint32_t i0 = (has0 ? tstart[d0] : 0) + (r0 ? __popcll(m0 >> (64 - r0)) : 0u);
            uint32_t i1 = (has1 ? tstart[d0 + 1] : 0) + (r0 ? __popcll(m1 >> (64 - r0)) : 0u);
            for (uint32_t r = r0; r < r1; r++) {
                uint16_t v0 = 0, v1 = 0;
                const uint32_t h = gpt == 2 && r >= 32 ? 1u : 0u; /* a key tile's element r is token r */
                if ((m0 >> (63 - r)) & 1u) v0 = value_of(d0, h, i0++);
                if ((m1 >> (63 - r)) & 1u) v1 = value_of(d0 + 1, h, i1++);
                uint16_t *row = out + (uint64_t)r * D;
                if (word_stores) {
                    if (has0) *(uint32_t *)(row + d0) = (uint32_t)v0 | ((uint32_t)v1 << 16);
                } else {
                    if (has0) row[d0] = v0;
                    if (has1) row[d0 + 1] = v1;
                }
            }
        }
    } else {
        for (uint32_t t = warp; t < nt; t += kThreads / 32) {
            const uint64_t bm = unit_bitmap(g, sec, u, bms, t);
            const uint32_t r = t % R, c0 = 64u * (t / R), lim = min(64u, D - c0);
            const uint32_t i0 = 2 * lane, h = gpt == 2 && i0 >= 32 ? 1u : 0u;
            uint32_t rank = tstart[t] + (i0 ? __popcll(bm >> (64 - i0)) : 0u);
            uint16_t v0 = 0, v1 = 0;
            if ((bm >> (63 - i0)) & 1u) v0 = value_of(t, h, rank++);
            if ((bm >> (62 - i0)) & 1u) v1 = value_of(t, h, rank);
            uint16_t *row = out + (uint64_t)r * D + c0;
            if (word_stores && i0 + 1 < lim) {
                *(uint32_t *)(row + i0) = (uint32_t)v0 | ((uint32_t)v1 << 16);
            } else {
                if (i0 < lim) row[i0] = v0;
                if (i0 + 1 < lim) row[i0 + 1] = v1;
            }
        }
    }
    if (flags) atomicOr(&s_flags, flags);
    __syncthreads();
    if (threadIdx.x == 0 && s_flags) atomicOr(&a.errors[u.section], s_flags);
}

__global__ void dense_decode_kernel(DecodeArgs a, const uint32_t *dense_ids) {
    const uint32_t si = dense_ids[blockIdx.y];
    const DecSection &sec = a.sections[si];
    const Geometry &g = a.g;
    const bool bf16 = g.e_bf16 != 0;
    const uint64_t per_head = (uint64_t)sec.token_count * g.head_dim, n = per_head * sec.head_count;
    const uint16_t *v = (const uint16_t *)sec.body;
    uint16_t *out = (uint16_t *)sec.out;
    uint32_t flags = 0;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        const uint64_t j = i / per_head, rest = i % per_head;
        out[((uint64_t)(sec.head_start + j) * g.n_tokens + sec.token_start) * g.head_dim + rest] =
            to_out(v[i], bf16, a.out_dtype, &flags);
    }
    if (flags) atomicOr(&a.errors[si], flags);
}

/* ---- Mustafar ---------------------------------------------------------------------------------------- */

/* One block per head slot: the value words of each of its units (half their tiles' padded counts) and
 * their exclusive prefix, the units' m_word_base, and the slot's total. The counts come from the count
 * pass's statistics where it ran; on sections already validated (a.use_offsets: the fast kernel alone)
 * the block computes them from the bitmaps, a warp per unit (the count pass also checks every tile's
 * parameters: 93 us for a whole Llama-3-8B cache on the H200). Its dependent, the fast kernel, may start
 * at once: it stages its units (bitmaps, levels, payload) while this runs, and waits for it only to
 * place their values (a thread per unit instead of a warp: 34 us against 29 for a whole cache, alone). */
__global__ void __launch_bounds__(kThreads) mustafar_scan_kernel(DecodeArgs a) {
    cudaTriggerProgrammaticLaunchCompletion();
    const uint32_t slot = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint32_t first = a.m_head_first[slot], end = a.m_head_first[slot + 1];
    __shared__ uint32_t words[kThreads]; /* of the units [base, base + n) */
    __shared__ uint32_t wsum[kThreads / 32];
    uint64_t carry = 0;
    for (uint32_t base = first; base < end; base += kThreads) {
        const uint32_t n = min((uint32_t)kThreads, end - base);
        if (a.use_offsets) {
            for (uint32_t k = warp; k < n; k += kThreads / 32) {
                const UnitPlan u = unit_at(a, a.sections, mustafar_unit_warp(a, base + k).unit);
                const DecSection &sec = a.sections[u.section];
                const uint64_t *bms = (const uint64_t *)sec.body + u.tile0;
                uint32_t padded = 0;
                for (uint32_t t = lane; t < u.n_tiles; t += 32)
                    padded += ((uint32_t)__popcll(unit_bitmap(a.g, sec, u, bms, t)) + 7u) & ~7u;
                padded = __reduce_add_sync(0xFFFFFFFFu, padded);
                if (lane == 0) words[k] = padded / 2;
            }
        } else {
            for (uint32_t k = threadIdx.x; k < n; k += kThreads) words[k] = a.stats[mustafar_unit(a, base + k).unit].padded / 2;
        }
        __syncthreads();
        /* a unit has at most 128 tiles of 32 words: 32-bit sums of 256 units */
        const uint32_t k = threadIdx.x, w = k < n ? words[k] : 0u;
        const uint32_t incl = warp_inclusive_sum(w);
        if (lane == 31) wsum[warp] = incl;
        __syncthreads();
        uint32_t before = 0, total = 0;
#pragma unroll
        for (uint32_t q = 0; q < kThreads / 32; q++) {
            before += q < warp ? wsum[q] : 0u;
            total += wsum[q];
        }
        if (k < n) a.m_word_base[base + k] = carry + before + incl - w;
        carry += total;
        __syncthreads(); /* words and wsum are rewritten by the next round */
    }
    if (threadIdx.x == 0) a.m_head_words[slot] = carry;
}

__global__ void __launch_bounds__(kThreads) mustafar_kernel(DecodeArgs a) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    const Geometry &g = a.g;
    const MustafarUnit mu = mustafar_unit(a, blockIdx.x);
    const uint32_t uidx = mu.unit;
    const UnitPlan u = unit_at(a, a.sections, uidx);
    const DecSection &sec = a.sections[u.section];
    const UnitStat st = a.stats[uidx];
    const bool bf16 = g.e_bf16 != 0;
    const uint32_t nt = u.n_tiles, L = 1u << (sec.bits & 15u);
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    uint32_t *tstart = (uint32_t *)smem_raw;
    uint32_t *wstart = tstart + nt + 1;
    uint16_t *levels = (uint16_t *)(smem_raw + align_up(8 * (nt + 1), 16));
    uint16_t *wlev = levels + 256; /* per warp 2 x 256: a tile's one or two groups */
    __shared__ uint32_t wsum[kThreads / 32];
    const uint64_t *bms = (const uint64_t *)sec.body + u.tile0;
    const uint16_t *scales = (const uint16_t *)(sec.body + sec.scales_at);
    const uint32_t gpt = groups_per_tile(sec);
    tile_scan(nt, [&](uint32_t t) { return (uint32_t)__popcll(unit_bitmap(g, sec, u, bms, t)); }, tstart, wsum);
    tile_scan(nt, [&](uint32_t t) { return (((uint32_t)__popcll(unit_bitmap(g, sec, u, bms, t)) + 7u) & ~7u) / 2u; },
              wstart, wsum);
    const bool exact = sec.bits == 16;
    if (!exact && sec.granularity == 1) {
        const uint64_t grp = (uint64_t)u.head * sec.params_per_group;
        const double sd = e_to_double(scales[grp], bf16);
        const double zd = sec.params_per_group == 2 ? e_to_double(scales[grp + 1], bf16) : 0.0;
        for (uint32_t c = threadIdx.x; c < L; c += blockDim.x) levels[c] = quant_level(sec.quantizer, sec.bits, bf16, sd, zd, c);
    }
    __syncthreads();
    const uint64_t tile_base = mu.tile_base, wbase = a.m_word_base[blockIdx.x];
    const uint32_t slot = mu.slot;
    int64_t *const out_bitmaps = a.m_bitmaps[slot];
    int32_t *const out_accum = a.m_accum[slot];
    uint16_t *const out_values = a.m_values[slot];
    if (tile_base == 0 && threadIdx.x == 0) out_accum[0] = 0; /* the head's first unit */
    for (uint32_t t = threadIdx.x; t < nt; t += blockDim.x) {
        out_bitmaps[tile_base + t] = (int64_t)unit_bitmap(g, sec, u, bms, t);
        out_accum[tile_base + t + 1] = (int32_t)(wbase + wstart[t + 1]);
    }
    for (uint32_t t = warp; t < nt; t += kThreads / 32) {
        const uint64_t bm = unit_bitmap(g, sec, u, bms, t);
        const uint32_t c = __popcll(bm), padded = (c + 7u) & ~7u;
        /* kept elements [0, c_first) are in the tile's first group (elements 0..31 with PER_HALF_TILE) */
        const uint32_t c_first = gpt == 2 ? (uint32_t)__popc((uint32_t)(bm >> 32)) : c;
        const uint64_t e_tile = st.start + tstart[t];
        const uint16_t *table = levels;
        uint32_t table_step = 0; /* table of the second group: table + table_step */
        if (!exact && sec.granularity >= 2) {
            for (uint32_t h = 0; h < gpt; h++) {
                const uint64_t grp = ((u.tile0 + t) * gpt + h) * sec.params_per_group;
                const double sd = e_to_double(scales[grp], bf16);
                const double zd = sec.params_per_group == 2 ? e_to_double(scales[grp + 1], bf16) : 0.0;
                if (h == 0 ? c_first : c - c_first)
                    for (uint32_t q = lane; q < L; q += 32)
                        wlev[warp * 512 + h * 256 + q] = quant_level(sec.quantizer, sec.bits, bf16, sd, zd, q);
            }
            __syncwarp();
            table = wlev + warp * 512;
            table_step = 256;
        }
        uint16_t *dst = out_values + 2 * (wbase + wstart[t]);
        for (uint32_t k = lane; k < padded; k += 32) {
            uint16_t v = 0;
            if (k < c) {
                const uint32_t code = code_at(sec, sec.bits, e_tile + k);
                v = exact ? (uint16_t)code : table[(k < c_first ? 0u : table_step) + code];
            }
            dst[k] = v;
        }
        __syncwarp();
    }
    if (blockIdx.x + 1 == a.m_head_first[slot + 1]) { /* the head's last unit: the slack after its values */
        const uint64_t end = 2 * a.m_head_words[slot];
        for (uint64_t i = end + threadIdx.x; i < a.m_value_counts[slot]; i += blockDim.x) out_values[i] = 0;
    }
}

__host__ uint32_t max_tiles(const Geometry &g) { return g.head_dim > 64u * g.hb ? g.head_dim : 64u * g.hb; }

}  // namespace

sqkv_cuda_status launch_decode_prepare(const DecodeArgs &a, cudaStream_t stream) {
    if (a.n_units > 0x7FFFFFFFu || a.n_sections > 0x7FFFFFFFu) return SQKV_ERR_LIMIT;
    if (a.n_units) {
        count_kernel<<<(a.n_units + kThreads / 32 - 1) / (kThreads / 32), kThreads, 0, stream>>>(a);
        SQKV_CUDA_LAUNCHED();
    }
    if (a.n_sections) {
        section_kernel<<<a.n_sections, kThreads, 0, stream>>>(a);
        SQKV_CUDA_LAUNCHED();
    }
    return SQKV_OK;
}

sqkv_cuda_status launch_decode_check(const DecodeArgs &a, const uint32_t *dense_ids, uint32_t n_dense,
                                     uint64_t max_dense_elems, cudaStream_t stream) {
    if (a.n_units) {
        /* a tile start per tile and one for the end, per warp (the stride keeps 16-byte alignment) */
        const uint32_t stride = (uint32_t)align_up((uint64_t)max_tiles(a.g) + 1, 4);
        const size_t smem = 4 * (size_t)stride * (kThreads / 32);
        SQKV_CUDA_TRY(cudaFuncSetAttribute(check_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        check_kernel<<<(a.n_units + kThreads / 32 - 1) / (kThreads / 32), kThreads, smem, stream>>>(a, stride);
        SQKV_CUDA_LAUNCHED();
    }
    if (n_dense) {
        if (n_dense > 65535) return SQKV_ERR_LIMIT;
        const uint64_t blocks = (max_dense_elems + 2047) / 2048;
        dense_check_kernel<<<dim3((unsigned)(blocks < 1024 ? (blocks ? blocks : 1) : 1024), n_dense), 256, 0, stream>>>(
            a, dense_ids);
        SQKV_CUDA_LAUNCHED();
    }
    return SQKV_OK;
}

sqkv_cuda_status launch_decode_dense(const DecodeArgs &a, const uint32_t *dense_ids, uint32_t n_dense,
                                     uint64_t max_dense_elems, cudaStream_t stream) {
    if (a.n_units && a.fast_bits) {
        const sqkv_cuda_status st = launch_decode_fast(a, stream);
        if (st != SQKV_OK) return st;
    } else if (a.n_units) {
        const size_t smem = decode_smem(a.g.head_dim, a.g.hb, a.max_bits);
        if (smem > 227 * 1024) return SQKV_ERR_UNSUPPORTED;
        SQKV_CUDA_TRY(cudaFuncSetAttribute(decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        decode_kernel<<<a.n_units, kThreads, smem, stream>>>(a);
        SQKV_CUDA_LAUNCHED();
    }
    if (n_dense) {
        if (n_dense > 65535) return SQKV_ERR_LIMIT;
        const uint64_t blocks = (max_dense_elems + 2047) / 2048;
        dense_decode_kernel<<<dim3((unsigned)(blocks < 1024 ? (blocks ? blocks : 1) : 1024), n_dense), 256, 0, stream>>>(
            a, dense_ids);
        SQKV_CUDA_LAUNCHED();
    }
    return SQKV_OK;
}

sqkv_cuda_status launch_decode_mustafar(const DecodeArgs &a, cudaStream_t stream) {
    if (a.m_n_units == 0) return SQKV_OK;
    if (a.m_n_heads == 0 || a.m_n_heads > 0x7FFFFFFFu) return SQKV_ERR_LIMIT;
    mustafar_scan_kernel<<<a.m_n_heads, kThreads, 0, stream>>>(a);
    SQKV_CUDA_LAUNCHED();
    if (a.m_fast) return launch_mustafar_fast(a, stream);
    const size_t smem = align_up(8 * ((size_t)max_tiles(a.g) + 1), 16) + 2 * 256 + 2 * 8 * 512;
    SQKV_CUDA_TRY(cudaFuncSetAttribute(mustafar_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    mustafar_kernel<<<a.m_n_units, kThreads, smem, stream>>>(a);
    SQKV_CUDA_LAUNCHED();
    return SQKV_OK;
}

}  // namespace sqkv_cuda
