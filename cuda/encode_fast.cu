/*
 * encode_fast.cu: the encoder's fast path for the common case: fp16 elements from an fp16 source or bf16
 * elements from a bf16 source (kBf16), head_dim 128, PER_HEAD or PER_TILE scales (SYMMETRIC or ASYMMETRIC,
 * 2, 3, 4 or 8 bits) or EXACT values. It writes the same bytes as the general kernels of
 * encode_kernels.cu, which handle every other case. Selection and staging only see 15-bit magnitudes
 * and sign bits, the same for both types; the arithmetic of the parameters differs (tile_params and
 * tile_params's bf16 variant: bf16 midpoints and differences need not be exact in binary64).
 * PER_TILE parameters are local to one tile, so one thread of the pruning pass per tile chooses them
 * (values: the thread that staged the half row; keys, staged by rows: a thread per channel that reads
 * its tile's staged run back), and the pruning pass replaces the staged values by their codes; packing
 * then only places codes.
 *
 *   prune_fast_kernel    one 128-thread block per unit (64 rows x 128 channels): each warp copies the
 *                        16 rows it selects to shared memory with cp.async (16-byte pieces; rows padded
 *                        by 16 bytes so that the row reads below are free of bank conflicts) and starts
 *                        on them without waiting for the other warps; two lanes per row hold the row's
 *                        values in registers, transpose them into bit planes and select the row's
 *                        kept elements bit by bit (select_row); bitmaps come from a warp bit transpose of
 *                        the kept flags (keys) or the kept flags themselves (values);
 *                        kept values are staged in payload order (PER_TILE 2, 3 and 4 bits: their
 *                        codes, as a packed bit stream); offset-table entries that fall in the unit are
 *                        written unit-relative (absolute at the assumed start below when this pass
 *                        writes the payload). Only PER_HEAD values are left for packing: PER_TILE
 *                        codes and EXACT values go to the payload from here (fast_payload_in_prune), at
 *                        the start the unit has when every row keeps `keep` (assumed_unit_start),
 *                        and the words a unit shares with its neighbours are left to the section kernel
 *                        (write_unit_payload).
 *   section_fast_kernel  one block per SPARSE section: unit payload positions, offset entries made
 *                        absolute, PER_HEAD parameters, and the code boundaries of each head (the
 *                        smallest order key of each code, so that packing compares 16-bit keys
 *                        instead of searching binary64 levels), the units moved to their true starts
 *                        where an assumed start was wrong (relocate_units), the payload words units
 *                        share (when the pruning pass wrote the payload), stream padding, body size.
 *   pack_fast_kernel     one warp per unit, PER_HEAD only: codes of the staged values at the unit's
 *                        payload position.
 *
 * Selection is exact (spec/FORMAT.md §14): T is the largest magnitude with count(|x| >= T) >= keep;
 * when the elements equal to T are more than the keep - count(|x| > T) still needed, the lower
 * channels win; zeros are never kept. select_row says how, and why on bit planes.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stddef.h>
#include <stdint.h>

#include <mutex>

#include "encode_fast.cuh"
#include "encode_section.cuh"
#include "levels8.cuh"
#include "numeric.cuh"
#include "tile_params.cuh"

namespace sqkv_cuda {

namespace {

constexpr uint32_t kFD = 128;        /* head_dim of the fast path */
/* Shared-memory row stride in elements: 16 bytes of padding move each row 4 banks along, so that the
 * 16-byte reads of eight rows at one column (P1) hit distinct banks. An XOR swizzle of the pieces did the
 * same, but its addresses cost the copy loop about 25 instructions per piece (ncu: 6.7% of the kernel's
 * instructions) and every reader a swizzle term; with padding the copy's addresses advance by a constant.
 * (Bulk copies of a row each, TMA without a tensor map, measured 5% slower than either.) */
constexpr uint32_t kRow = kFD + 8;
constexpr int kFastThreads = 128;    /* two lanes per row of a 64-row unit */
constexpr uint32_t kFull = 0xFFFFFFFFu;

/* The pruning pass's shared memory, by variant. Nine blocks fit an SM (233472 bytes, 1 KB of them
 * reserved per block) at the writer's default keep (26) for every variant but 4-bit PER_TILE (24.8 KB
 * at the writer's default, 2-bit ASYMMETRIC PER_TILE), eight for 4 bits. A ninth block of four warps
 * gives the issue slots more warps to choose from (results/gpu_bench.md, session 17), so the tables are
 * as small as the variant allows:
 *   - tstart in 16 bits (a unit keeps at most 64 x 128 = 8192 elements);
 *   - tbnd, the coding table (kBndSlots slots per tile), is first the key ballots (ballot_tab, 1 KB,
 *     read before the scan) and then key_tab (two uint2 per channel, written after the scan, read by the
 *     keys' walk before the parameters are written);
 *   - cnt, the tile counts the scan reads, lies in tbnd after the ballots;
 *   - SYMMETRIC PER_TILE keys gather each channel's largest kept magnitude by atomics during the walk,
 *     while key_tab lives, in the rows' padding (channel_max), which nothing else touches. */
template <bool kAsym, uint32_t kTileBits>
struct alignas(16) FastSmem { /* 16: outbuf, which follows it, is read by 16-byte words */
    /* slots per tile: as few as the width uses (bounds 1 .. 2^bits - 1; 8 bits: a Code8Tile), 4-bit tiles 17
     * apart: the coding loop's lanes read neighbouring tiles at one slot, and a stride of 32 or 16 bytes
     * put those reads in the same banks (2-bit, 16 slots: results/gpu_bench.md, session 17) */
    static constexpr uint32_t kBndSlots = kTileBits == 2 ? 4u : kTileBits == 3 ? 8u : kTileBits == 4 ? 17u : 8u;
    static constexpr uint32_t kBallotBytes = 4 * 64 * 4, kKeyTabBytes = kFD * 16;
    static constexpr uint32_t kTbndBytes =
        kTileBits == 0 ? kBallotBytes + kFD * 4 : (kKeyTabBytes > kFD * kBndSlots * 2 ? kKeyTabBytes : kFD * kBndSlots * 2);
    uint16_t tile[64 * kRow];  /* the unit, row r at r * kRow */
    uint16_t tstart[kFD + 8];  /* exclusive prefix of the tile counts; [nt] = unit count */
    alignas(16) uint32_t wsum[4]; /* read as one uint4 (scan128) */
    uint32_t misc[4];          /* [0] largest kept magnitude, [1] smallest / [2] largest kept order key */
    alignas(16) uint16_t tbnd[kTbndBytes / 2];
    /* kept elements per tile (the scan's input) */
    __device__ __forceinline__ uint32_t *cnt() { return (uint32_t *)((uint8_t *)tbnd + kBallotBytes); }
    /* channel c's largest kept magnitude (SYMMETRIC PER_TILE keys): word c & 3 of row c >> 2's padding */
    __device__ __forceinline__ uint32_t *channel_max(uint32_t c) {
        return (uint32_t *)tile + (kRow / 2) * (c >> 2) + kFD / 2 + (c & 3u);
    }
    static_assert(kRow - kFD == 8, "four padding words a row (channel_max)");
    static_assert(kTbndBytes >= kBallotBytes + kFD * 4, "cnt after the ballots");
    static_assert(kTbndBytes >= kBallotBytes, "ballot_tab fits in tbnd");
};

/* Blocks per SM the variant's shared memory allows at the writer's default keep (the launch bound: ptxas
 * then fits 56 registers a thread, without spills). */
template <bool kAsym, uint32_t kTileBits>
constexpr int fast_blocks_per_sm() {
    return kTileBits == 4 ? 8 : 9;
}

__device__ __forceinline__ __half2 as_h2(uint32_t u) {
    __half2 h;
    memcpy(&h, &u, 4);
    return h;
}
__device__ __forceinline__ __nv_bfloat162 as_b2(uint32_t u) {
    __nv_bfloat162 h;
    memcpy(&h, &u, 4);
    return h;
}
template <typename T>
__device__ __forceinline__ uint32_t pair_bits(T h) {
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

/* The element type E of the fast path: fp16, or bf16 from a bf16 source (kBf16). Pairs of E values in a
 * 32-bit word, as numbers: minimum, maximum and the >= mask (the hardware's packed instructions for
 * either type), and the bits of +infinity. Zeros and NaN never reach these (zeros are never kept, and a
 * NaN in the source is an error found by the selection). */
template <bool kBf16>
__device__ __forceinline__ uint32_t e_min2(uint32_t a, uint32_t b) {
    if constexpr (kBf16) return pair_bits(__hmin2(as_b2(a), as_b2(b)));
    else return pair_bits(__hmin2(as_h2(a), as_h2(b)));
}
template <bool kBf16>
__device__ __forceinline__ uint32_t e_max2(uint32_t a, uint32_t b) {
    if constexpr (kBf16) return pair_bits(__hmax2(as_b2(a), as_b2(b)));
    else return pair_bits(__hmax2(as_h2(a), as_h2(b)));
}
template <bool kBf16>
__device__ __forceinline__ uint32_t e_ge2_mask(uint32_t a, uint32_t b) {
    if constexpr (kBf16) return __hge2_mask(as_b2(a), as_b2(b));
    else return __hge2_mask(as_h2(a), as_h2(b));
}
template <bool kBf16>
__host__ __device__ constexpr uint32_t e_inf() { return kBf16 ? 0x7F80u : 0x7C00u; }

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

/* Bits of x where mask is set, of y elsewhere: one LOP3 (the compiler builds (x & m) | (y & ~m) from two
 * when both masks are constants, since an instruction takes one immediate). */
__device__ __forceinline__ uint32_t bit_select(uint32_t x, uint32_t y, uint32_t mask) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xE4;" : "=r"(r) : "r"(x), "r"(y), "r"(mask));
    return r;
}

/* Bit planes of a lane's 64 magnitudes in place: word k of m holds elements 2k (low half) and 2k + 1 (high
 * half); afterwards m[b] holds bit b of elements 0-31 and m[16 + b] of elements 32-63, element 2j at
 * bit j and 2j + 1 at bit 16 + j of the plane word (shuffle32 puts them in order).
 * This is a 32 x 32 bit transpose without its first stage: each stage swaps one bit of the word index
 * with the same bit of the bit index (byte permutes for 8, masked shifts for 4, 2 and 1), and the stage
 * for bit 4 would only pair the elements into words differently, which the plane layout absorbs. */
__device__ __forceinline__ void bit_planes(uint32_t (&m)[32]) {
#pragma unroll
    for (int k = 0; k < 32; k++) {
        if (k & 8) continue;
        const uint32_t a = m[k], b = m[k + 8];
        m[k] = __byte_perm(a, b, 0x6240u);
        m[k + 8] = __byte_perm(a, b, 0x7351u);
    }
#pragma unroll
    for (int st = 0; st < 3; st++) {
        const int sh = 4 >> st;
        const uint32_t lowm = st == 0 ? 0x0F0F0F0Fu : st == 1 ? 0x33333333u : 0x55555555u;
#pragma unroll
        for (int k = 0; k < 32; k++) {
            if (k & sh) continue;
            const uint32_t a = m[k], b = m[k + sh];
            m[k] = bit_select(a, b << sh, lowm);
            m[k + sh] = bit_select(a >> sh, b, lowm);
        }
    }
}

/* One radix step of select_row on candidate set e and plane word m, y all ones when the threshold has
 * the plane's bit: e & m if so, else e & ~m, i.e. e & ~(m ^ y). */
__device__ __forceinline__ uint32_t narrow_candidates(uint32_t e, uint32_t m, uint32_t y) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0x90;" : "=r"(r) : "r"(e), "r"(m), "r"(y));
    return r;
}
/* The kept set g of select_row after a step whose candidates with the bit set are o: when the threshold
 * lacks the bit (y zero) they are all above it, g | (o & ~y). */
__device__ __forceinline__ uint32_t gather_greater(uint32_t g, uint32_t o, uint32_t y) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xF4;" : "=r"(r) : "r"(g), "r"(o), "r"(y));
    return r;
}

/* Bits i + s of x moved to i and bits i to i + s for the bits i of mask (a delta swap), by two bit selects
 * (the xor form, t = (x ^ (x >> s)) & mask; x ^ t ^ (t << s), cost five instructions). */
__device__ __forceinline__ uint32_t delta_swap(uint32_t x, uint32_t s, uint32_t mask) {
    return bit_select(x << s, bit_select(x >> s, x, mask), mask << s);
}

/* Outer perfect shuffle: bit k -> 2k, bit 16 + k -> 2k + 1. Each delta swap exchanges the two inner
 * quarters of each field twice its size; the first one's quarters are the middle bytes, one byte
 * permute. */
__device__ __forceinline__ uint32_t shuffle32(uint32_t x) {
    x = __byte_perm(x, 0, 0x3120u);
    x = delta_swap(x, 4, 0x00F000F0u);
    x = delta_swap(x, 2, 0x0C0C0C0Cu);
    return delta_swap(x, 1, 0x22222222u);
}

/* Exact selection of one row (spec/FORMAT.md §14) by the lane pair that holds it (the partner is lane ^ 8,
 * half 0 holds the lower channels). m holds this lane's 64 magnitudes, word k = elements 2k (low half)
 * and 2k + 1 (high half), and is consumed (bit_planes). Returns the kept flags in plane order (kept0:
 * elements 0-31, element 2j at bit j and 2j + 1 at bit 16 + j; kept1 the same for elements 32-63), and
 * whether any of the lane's elements is an infinity or NaN (all five exponent bits set).
 *
 * Why planes: a threshold search by counting costs a compare and an add per element and probe, about 11
 * probes per warp (which waits for its slowest row); on planes one step of the search takes 32 elements
 * per instruction, and every row takes the same 15 steps. From the top bit down, the candidates E are
 * the elements whose bits above b equal those of T (the keep-th largest magnitude); those of E with bit
 * b set number c. If c >= need (the kept places not yet taken by elements above T), T has bit b and E
 * narrows to them; else they are all kept (G), need drops by c and E keeps the rest. After bit 0, E is
 * the elements equal to T and need of them are kept, the lower channels first; zeros are never kept. */
template <bool kBf16>
__device__ __forceinline__ bool select_row(uint32_t (&m)[32], uint32_t keep, uint32_t half, uint32_t &kept0,
                                           uint32_t &kept1) {
    bit_planes(m);
    /* every exponent bit set: bits 10-14 (fp16) or 7-14 (bf16) */
    uint32_t all0 = m[14], all1 = m[30];
#pragma unroll
    for (int b = kBf16 ? 7 : 10; b < 14; b++) {
        all0 &= m[b];
        all1 &= m[16 + b];
    }
    const bool special = (all0 | all1) != 0;
    uint32_t e0 = kFull, e1 = kFull, g0 = 0, g1 = 0, need = min(keep, kFD);
    bool t_nonzero = false;
#pragma unroll
    for (int b = 14; b >= 0; b--) {
        const uint32_t o0 = e0 & m[b], o1 = e1 & m[16 + b];
        uint32_t c = __popc(o0) + __popc(o1);
        c += __shfl_xor_sync(kFull, c, 8);
        const bool one = c >= need;
        t_nonzero |= one;
        if (!one) need -= c;
        /* E and G each by one LOP3 a half from the step's mask (the selects of E = one ? o : e ^ o and
         * G |= one ? 0 : o cost two instructions a half each) */
        const uint32_t y = one ? kFull : 0u;
        e0 = narrow_candidates(e0, m[b], y);
        e1 = narrow_candidates(e1, m[16 + b], y);
        g0 = gather_greater(g0, o0, y);
        g1 = gather_greater(g1, o1, y);
    }
    /* ties: all of E when they are exactly need (none when T = 0), else the first need by channel */
    const uint32_t eq = __popc(e0) + __popc(e1), eq_other = __shfl_xor_sync(kFull, eq, 8);
    const bool partial = t_nonzero && eq + eq_other > need;
    if (!t_nonzero) e0 = e1 = 0;
    if (__any_sync(kFull, partial) && partial) {
        /* half 0 takes its ties first, each half its lowest channels: those of e0, then of e1. In plane
         * order the lowest element of a word is the lowest set bit of its low half (element 2j at bit j)
         * or of its high half (2j + 1 at bit 16 + j), whichever has the lower j, the low half on a draw
         * (a row mostly takes one or two ties: taking them in place beat putting both words in element
         * order and back, two shuffle32 and their inverses, about 52 instructions, on bf16's frequent ties) */
        const uint32_t first = min(need, half ? eq_other : eq);
        uint32_t n = half ? need - first : first, t0 = 0, t1 = 0;
        auto take_lowest = [](uint32_t &e, uint32_t &t) {
            const uint32_t lo = e & 0xFFFFu, hi = e >> 16;
            const uint32_t a = lo & (0u - lo), b = hi & (0u - hi); /* 0: none */
            const uint32_t bit = a - 1u <= b - 1u ? a : b << 16;
            t |= bit;
            e ^= bit;
        };
        for (; n && e0; n--) take_lowest(e0, t0);
        for (; n; n--) take_lowest(e1, t1);
        e0 = t0;
        e1 = t1;
    }
    kept0 = g0 | e0;
    kept1 = g1 | e1;
    return special;
}

/* One element of the unit's tile, read as such (an asm load, so that the compiler does not forward it
 * from the row words loaded for the selection, P1: one build with plain loads kept those words in local
 * memory, apparently for that). */
__device__ __forceinline__ uint32_t tile_element(const uint16_t *p) {
    unsigned short x;
    asm volatile("ld.shared.u16 %0, [%1];" : "=h"(x) : "r"((uint32_t)__cvta_generic_to_shared(p)));
    return x;
}

/* Index of the highest set bit of a nonzero word (FLO gives it; __clz would count from the top, and the
 * walks below would then rebuild the bit as 0x80000000 >> z). */
__device__ __forceinline__ uint32_t top_bit(uint32_t w) {
    uint32_t b;
    asm("bfind.u32 %0, %1;" : "=r"(b) : "r"(w));
    return b;
}

/* 1 << b by one BMSK (the shift of a constant 1 cost a move of the constant as well in the walks' loops,
 * where no register is spare to hold it). */
__device__ __forceinline__ uint32_t bit_at(uint32_t b) {
    uint32_t r;
    asm("bmsk.clamp.b32 %0, %1, 1;" : "=r"(r) : "r"(b));
    return r;
}

/* Exclusive prefix of cnt[0..n) into tstart[0..n] by the block (n <= 128). */
__device__ __forceinline__ void scan128(const uint32_t *cnt, uint16_t *tstart, uint32_t n, uint32_t *wsum) {
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const uint32_t c = tid < n ? cnt[tid] : 0u;
    uint32_t incl = c;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const uint32_t v = __shfl_up_sync(kFull, incl, off);
        if (lane >= (uint32_t)off) incl += v;
    }
    if (lane == 31) wsum[warp] = incl;
    __syncthreads();
    /* the sums of the warps before this one, from one 16-byte read (a loop of up to three reads and
     * adds cost 1.5 warp instructions per row) */
    const uint4 ws = *(const uint4 *)wsum;
    const uint32_t before = (warp > 0 ? ws.x : 0u) + (warp > 1 ? ws.y : 0u) + (warp > 2 ? ws.z : 0u);
    if (tid < n) tstart[tid] = (uint16_t)(before + incl - c);
    if (tid == kFastThreads - 1) tstart[n] = (uint16_t)(before + incl); /* n <= 128: the last thread has the total */
    __syncthreads();
}

/* select_row's kept flags as a half row bitmap (bit 63 - i = channel 64h + i). */
__device__ __forceinline__ uint64_t half_row_bitmap(uint32_t kept0, uint32_t kept1) {
    return ((uint64_t)__brev(shuffle32(kept0)) << 32) | __brev(shuffle32(kept1));
}

/* The 32 x 32 bit matrix of the warp transposed: lane j gets the word whose bit L is bit j of lane L's x.
 * Each stage swaps bit s of the lane index with bit s of the bit index: the lane with that bit clear
 * keeps its bits at positions with bit s clear and takes its partner's other bits, shifted down by s,
 * and the other lane the converse. A rotation stands for both shifts (the bits it wraps around are
 * never taken), so a stage is one funnel shift, one shuffle and one LOP3 per word. (64 ballots of a
 * tested bit each took three times the instructions.) */
__device__ __forceinline__ void warp_transpose32x2(uint32_t &x0, uint32_t &x1, uint32_t lane) {
#pragma unroll
    for (int st = 0; st < 5; st++) {
        const uint32_t sh = 16u >> st;
        const uint32_t low = st == 0 ? 0x0000FFFFu : st == 1 ? 0x00FF00FFu : st == 2 ? 0x0F0F0F0Fu : st == 3 ? 0x33333333u : 0x55555555u;
        const bool upper = (lane & sh) != 0;
        const uint32_t keep_mask = upper ? ~low : low, rot = upper ? 32u - sh : sh;
        const uint32_t y0 = __shfl_xor_sync(kFull, __funnelshift_r(x0, x0, rot), sh);
        const uint32_t y1 = __shfl_xor_sync(kFull, __funnelshift_r(x1, x1, rot), sh);
        x0 = bit_select(x0, y0, keep_mask);
        x1 = bit_select(x1, y1, keep_mask);
    }
}

/* The kept flags of the 64 local channels of this warp's 16 rows by element (keys): raw_warp[i] has bit L
 * set when lane L keeps element i of its half row. kept0 / kept1 are in select_row's plane order (element
 * 2j + p of a word at bit 16p + j), so after the transpose lane j holds element 2j (j < 16) or
 * 2(j - 16) + 1. */
__device__ __forceinline__ void key_ballots(uint32_t kept0, uint32_t kept1, uint32_t *raw_warp, uint32_t lane) {
    warp_transpose32x2(kept0, kept1, lane);
    const uint32_t e = lane < 16 ? 2 * lane : 2 * (lane - 16) + 1;
    raw_warp[e] = kept0;
    raw_warp[32 + e] = kept1;
}

/* PER_TILE: the parameters of one tile from the statistics of its kept values (gathered while staging
 * them), written to the scales stream at sc, and what coding needs in the tile's slots of bnd: 2, 3
 * and 4 bits, the code boundaries (tile_params.cuh tile_params, for either type); 8 bits, the nearest-level
 * search's Code8Tile (levels8.cuh). */
template <uint32_t BITS, bool kAsym, bool kBf16>
__device__ __forceinline__ void choose_tile_params(uint32_t count, uint32_t max_mag, uint32_t min_key,
                                                   uint32_t max_key, uint16_t *sc, uint16_t *bnd) {
    if constexpr (BITS <= 4) {
        tile_params<BITS, kAsym, kBf16>(count, max_mag, min_key, max_key, sc, bnd);
    } else {
        uint16_t sv, zv;
        choose_params(kAsym ? 2 : 1, BITS, kBf16, count, max_mag, min_key, max_key, &sv, &zv);
        sc[0] = sv;
        if (kAsym) sc[1] = zv;
        const Code8Tile t = code8_tile<kAsym, kBf16>(e_to_float(sv, kBf16), e_to_float(zv, kBf16));
        *(float4 *)bnd = make_float4(t.s, t.z, t.mul, t.add);
    }
}

/* Code of staged value x (fp16, or bf16: kBf16) of a tile whose choose_tile_params slots are bnd (3 and 4
 * bits; 8 bits: levels8.cuh code8). */
template <uint32_t BITS>
__device__ __forceinline__ uint32_t tile_code(uint32_t x, const uint16_t *bnd) {
    static_assert(BITS == 3 || BITS == 4, "code boundaries");
    const uint32_t k = x ^ (0x8000u | ((0u - (x >> 15)) & 0x7FFFu)); /* e_order_key */
    uint32_t c = 0;
#pragma unroll
    for (uint32_t step = (1u << BITS) >> 1; step; step >>= 1)
        if (k >= bnd[c + step]) c += step;
    return c;
}

/* 2-bit codes of eight staged values (h: two per word, value 2j + 1 in the high half of h[j]) whose tiles
 * are the bytes of tw, packed (code k at bit 2k). The tile's boundaries are E values, so a packed
 * compare decides two values at once: for a nonzero finite x (zeros are never kept on the fast path)
 * and a boundary key B, order_key(x) >= B exactly when x >= e_from_order_key(B) as numbers (B never
 * falls below the key of the most negative finite value, 0x0400 for fp16, 0x0080 for bf16; B = 0x7FFF /
 * 0x8000 separate the same nonzero values; a code no value gets has a bound whose value is +infinity
 * (bf16) or NaN (fp16: kNoCode), which no finite x reaches). The three masks are nested, so the code is
 * bit 1 = m2, bit 0 = m1 ^ m2 ^ m3. */
template <bool kBf16, uint32_t kBndSlots>
__device__ __forceinline__ uint32_t codes_2bit(const uint32_t (&h)[4], uint2 tw, const uint16_t *tbnd) {
    uint32_t packed = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint32_t t = j < 2 ? tw.x : tw.y;
        const uint32_t t0 = (t >> (16 * (j & 1))) & 0x7Fu, t1 = (t >> (16 * (j & 1) + 8)) & 0x7Fu;
        const uint2 b0 = *(const uint2 *)(tbnd + kBndSlots * t0), b1 = *(const uint2 *)(tbnd + kBndSlots * t1); /* slots 0-3 */
        const uint32_t m1 = e_ge2_mask<kBf16>(h[j], __byte_perm(b0.x, b1.x, 0x7632u));
        const uint32_t m2 = e_ge2_mask<kBf16>(h[j], __byte_perm(b0.y, b1.y, 0x5410u));
        const uint32_t m3 = e_ge2_mask<kBf16>(h[j], __byte_perm(b0.y, b1.y, 0x7632u));
        const uint32_t c2 = ((m1 ^ m2 ^ m3) & 0x00010001u) | (m2 & 0x00020002u); /* codes at bits 0 and 16 */
        packed |= ((c2 | (c2 >> 14)) & 0xFu) << (4 * j);
    }
    return packed;
}

/* The unit's payload: its bit stream (stream, nbits bits from bit 0 of word 0) at payload bit B0 of
 * words. Words the unit fills whole are stored; the first and last word when the unit fills them only in
 * part (they may hold a neighbour's bits, or padding) go, masked to its bits, to the unit's edge fields,
 * which the section kernel merges (merge_unit_edges). */
template <uint32_t kThreads = kFastThreads>
__device__ __forceinline__ void write_unit_payload(const uint32_t *stream, uint64_t nbits, uint64_t B0, uint32_t *words,
                                                   UnitStat *st) {
    if (nbits == 0) return;
    const uint64_t B1 = B0 + nbits, W0 = B0 >> 5;
    const uint32_t sh = (uint32_t)(B0 & 31u), end_bits = (uint32_t)(B1 & 31u);
    const uint32_t nq = (uint32_t)(((B1 - 1) >> 5) - W0 + 1), nsw = (uint32_t)((nbits + 31) >> 5);
    for (uint32_t q = threadIdx.x; q < nq; q += kThreads) {
        const uint32_t hi = q < nsw ? stream[q] : 0u, lo = q ? stream[q - 1] : 0u;
        uint32_t w = __funnelshift_l(lo, hi, sh); /* stream bits [32q - sh, 32q - sh + 32) */
        const bool first = q == 0, last = q == nq - 1;
        if ((first && sh) || (last && end_bits)) {
            if (last && end_bits) w &= (1u << end_bits) - 1u; /* the stream's slack codes, or nothing */
            if (first) st->edge_first = w;
            else st->edge_last = w;
        } else {
            words[W0 + q] = w;
        }
    }
}

/* fast_payload_in_prune: the payload start the pruning pass assumes for unit u (every row of the
 * section before it kept `keep`; the units of a section are in payload order, head by head, chunk by
 * chunk, every chunk of 64 rows but a head's last). */
__device__ __forceinline__ uint64_t assumed_unit_start(const Geometry &g, const SectionPlan &sec, const UnitPlan &u) {
    return (uint64_t)min(g.keep, kFD) * ((uint64_t)u.head * sec.token_count + 64ull * u.chunk);
}

/* fast_payload_in_prune, when some row of the section kept fewer than `keep` (its kept total says
 * so): every unit's bit stream is read back from where the pruning pass wrote it (its whole words in the
 * payload, its shared or partial first and last words in its edge fields) into its staging slot in temp,
 * then written at its true start (st[i].start, unit_payload_starts) as the pruning pass writes it,
 * edges to the edge fields for merge_unit_edges. The assumed starts are never below the true ones and
 * the assumed extents never overlap, but a unit's true place may overlap another's assumed one: hence
 * all reads before any write. A rare path, one block per section. */
template <uint32_t kThreads>
__device__ void relocate_units(const EncodeArgs &a, const SectionPlan &sec, UnitStat *st, uint32_t layer, uint32_t bits,
                               uint32_t *words) {
    auto slot = [&](uint32_t i) {
        return (uint32_t *)(a.temp + ((uint64_t)layer * a.n_units + sec.unit_first + i) * a.unit_cap);
    };
    for (uint32_t i = 0; i < sec.n_units; i++) {
        const uint64_t n = st[i].count;
        if (n == 0) continue;
        const uint64_t B0 = assumed_unit_start(a.g, sec, a.units[sec.unit_first + i]) * bits, B1 = B0 + n * bits;
        const uint64_t W0 = B0 >> 5, Wl = (B1 - 1) >> 5;
        const uint32_t sh = (uint32_t)(B0 & 31u);
        const bool first_part = sh != 0 || (Wl == W0 && (B1 & 31u) != 0), last_part = Wl != W0 && (B1 & 31u) != 0;
        const uint32_t edge_first = st[i].edge_first, edge_last = st[i].edge_last;
        /* this unit's bits of payload word W, as write_unit_payload left them */
        auto view = [&](uint64_t W) -> uint32_t {
            if (W > Wl) return 0u;
            if (W == W0 && first_part) return edge_first;
            if (W == Wl && last_part) return edge_last;
            return words[W];
        };
        uint32_t *stream = slot(i);
        const uint32_t nsw = (uint32_t)((n * bits + 31) >> 5);
        for (uint32_t q = threadIdx.x; q < nsw; q += kThreads) stream[q] = __funnelshift_r(view(W0 + q), view(W0 + q + 1), sh);
    }
    __syncthreads(); /* every stream read back before any word is written */
    for (uint32_t i = 0; i < sec.n_units; i++)
        write_unit_payload<kThreads>(slot(i), (uint64_t)st[i].count * bits, st[i].start * bits, words, st + i);
    __syncthreads();
}

template <bool kAsym, uint32_t kTileBits, bool kBf16>
__global__ void __launch_bounds__(kFastThreads, fast_blocks_per_sm<kAsym, kTileBits>()) prune_fast_kernel(EncodeArgs a) {
    using Smem = FastSmem<kAsym, kTileBits>;
    static_assert(offsetof(Smem, tile) % 16 == 0 && (kRow * 2) % 16 == 0, "16-byte copies and row reads");
    static_assert(offsetof(Smem, tbnd) % 16 == 0 && sizeof(Smem) % 16 == 0, "uint4 stores and reads of tbnd and outbuf");
    constexpr uint32_t kBndSlots = Smem::kBndSlots;
    extern __shared__ __align__(16) uint8_t smem_raw[];
    Smem &s = *(Smem *)smem_raw;
    uint32_t *const cnt = s.cnt();
    uint16_t *outbuf = (uint16_t *)(smem_raw + sizeof(Smem));
    /* PER_TILE: the unit tile of each staged value (so that coding is spread evenly over the block); the
     * shared memory holds it only for PER_TILE (prune_fast_smem_bytes) */
    uint8_t *tilemap = (uint8_t *)outbuf + align_up(2 * a.unit_cap, 16);
    const uint32_t tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const uint32_t layer = blockIdx.y, uidx = blockIdx.x;
    /* the plan before the wait: it was uploaded before the kernel this one depends on ran */
    const UnitPlan u = a.units[uidx];
    cudaGridDependencySynchronize(); /* launch_prune_variant: the stream's earlier work */
    /* fast_payload_in_prune: PER_TILE codes and EXACT values go to the payload from here */
    const bool payload_here = kTileBits != 0 || a.g.quantizer == 0;
    const uint32_t R = u.rows, nt = u.n_tiles;
    const bool keys = u.tensor == 0;
    const uint16_t *src = (const uint16_t *)layer_source(a, layer, u.tensor);
    if (tid < 4) s.misc[tid] = tid == 1 ? 0xFFFFFFFFu : 0u; /* used after the first block barrier */

    /* P0: each warp copies its own 16 rows (those P1 reads) to shared memory, coalesced 16-byte pieces,
     * rows beyond R zero, and starts on them as soon as they are in: no block barrier (each warp had
     * waited for the whole unit). The section's plan is loaded while the copy is in flight (the copy
     * needs only the unit's). */
    {
        const uint32_t rw = 16 * warp + (lane >> 4); /* rows rw, rw + 2, ..., rw + 14 */
        const uint16_t *from = src + (u.src_row + rw) * kFD + (lane & 15) * 8;
        uint16_t *to = s.tile + rw * kRow + (lane & 15) * 8;
        if (R == 64) {
            /* every unit but a section's last: no row test, and both addresses a base plus a constant,
             * which the copy instruction takes as an immediate (the tested form cost about 10
             * instructions per piece, 5.7 warp instructions per row) */
            const uint32_t to_s = smem_addr(to);
#pragma unroll
            for (uint32_t r2 = 0; r2 < 16; r2 += 2)
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to_s + r2 * kRow * 2), "l"(from + r2 * kFD)
                             : "memory");
        } else {
#pragma unroll
            for (uint32_t r2 = 0; r2 < 16; r2 += 2) {
                if (rw + r2 < R) cp_async16(to + r2 * kRow, from + r2 * kFD);
                else *(uint4 *)(to + r2 * kRow) = make_uint4(0, 0, 0, 0);
            }
        }
    }
    const SectionPlan &sec = a.sections[u.section];
    cp_async_wait_all();
    __syncwarp(); /* the other lanes' pieces */

    /* P1: row selection. Lanes 0-7 / 16-23 hold channels 0-63 of rows 0-7 / 8-15 of the warp's 16
     * rows, lanes 8-15 / 24-31 channels 64-127 of the same rows: each quarter warp reads eight rows,
     * so the 16-byte reads hit distinct banks. */
    const uint32_t half = (lane >> 3) & 1u, r = warp * 16 + ((lane & 7u) | ((lane >> 4) << 3));
    const uint32_t d0 = 64 * half;
    uint32_t m[32];
    {
        const uint4 *rp = (const uint4 *)(s.tile + r * kRow);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const uint4 v = rp[8 * half + j];
            /* signs included: they become planes 15 and 31, which select_row never reads (masking
             * them here cost 32 instructions per lane) */
            m[4 * j] = v.x;
            m[4 * j + 1] = v.y;
            m[4 * j + 2] = v.z;
            m[4 * j + 3] = v.w;
        }
    }
    /* the row maximum is always kept (keep >= 1): the unit's largest kept magnitude, which only PER_HEAD
     * parameters use (the section kernel's SYMMETRIC scale); into s.misc after the first block barrier */
    uint32_t um = 0;
    if constexpr (kTileBits == 0) {
        uint32_t mx2 = m[0] & 0x7FFF7FFFu;
#pragma unroll
        for (int k = 1; k < 32; k++) mx2 = __vmaxu2(mx2, m[k] & 0x7FFF7FFFu);
        const uint32_t rmax = max(mx2 & 0xFFFFu, mx2 >> 16);
        um = __reduce_max_sync(kFull, rmax < e_inf<kBf16>() ? rmax : 0u);
    }

    uint32_t kept0, kept1; /* this lane's kept flags (select_row) */
    if (select_row<kBf16>(m, a.g.keep, half, kept0, kept1)) atomicOr(a.error, 1u); /* NaN or infinity in the source */

    /* P2: bitmaps and tile counts */
    uint64_t my_bm = 0;  /* keys: the bitmap of channel tid; values: of this lane's half row */
    uint64_t row_bm = 0; /* keys: the kept channels of this lane's half row (bit 63 - i = channel d0 + i) */
    /* keys, for the staging by rows (P3), per channel: {tstart, bitmap rows 0-31} at key_tab[c] and
     * {tstart + the kept rows among 0-31, bitmap rows 32-63} at key_tab[128 + c] (row i of a half at bit
     * 31 - i): the walk's lanes read random channels, and 8-byte entries spread those reads over twice the
     * banks that halves of 16-byte entries did (ncu: 2.0 excess shared wavefronts a read, session 17);
     * before it, per warp and local channel, the ballot of the kept bits (ballot_tab, read before the
     * scan's barriers; key_tab is written after them); tbnd is not used before tile_params */
    uint2 *const key_tab = (uint2 *)s.tbnd;
    uint32_t *const ballot_tab = (uint32_t *)s.tbnd;
    if (keys) {
        key_ballots(kept0, kept1, ballot_tab + warp * 64, lane);
        row_bm = half_row_bitmap(kept0, kept1);
        __syncthreads();
        const uint32_t h = tid >> 6, c = tid & 63, sel = h ? 0x4431u : 0x4420u;
        uint64_t comb = 0;
#pragma unroll
        for (int w = 0; w < 4; w++) comb |= (uint64_t)__byte_perm(ballot_tab[w * 64 + c], 0, sel) << (16 * w);
        my_bm = __brevll(comb);
        cnt[tid] = __popcll(my_bm);
    } else {
        my_bm = half_row_bitmap(kept0, kept1);
        if (r < R) cnt[half * R + r] = __popcll(my_bm);
    }
    __syncthreads();
    if (kTileBits == 0 && lane == 0 && um) atomicMax(&s.misc[0], um);
    scan128(cnt, s.tstart, nt, s.wsum);
    if (keys && kTileBits != 0) {
        const uint32_t hi = (uint32_t)(my_bm >> 32), t = s.tstart[tid];
        key_tab[tid] = make_uint2(t, hi);
        key_tab[kFD + tid] = make_uint2(t + __popc(hi), (uint32_t)my_bm);
        if (!kAsym) *s.channel_max(tid) = 0;
        __syncthreads();
    }

    /* P3: kept values in payload order into outbuf (PER_TILE: also their tiles, and each tile's parameters) */
    uint32_t mnk = 0xFFFFFFFFu, mxk = 0, mxm = 0;
    uint8_t *body = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64;
    uint16_t *tile_scales = (uint16_t *)(body + sec.scales_at) + (uint64_t)sec.params_per_group * u.tile0;
    /* One staged element, without branches (a branch per element costs more than the work): the
     * smallest and largest kept values (ASYMMETRIC) as fp16 minimum / maximum, order keys at the end. */
    constexpr uint32_t pinf = e_inf<kBf16>(), ninf = e_inf<kBf16>() | 0x8000u;
    uint32_t mnv = pinf, mxv = ninf; /* in the low half; the high half is whatever the packed operations give */
    auto take = [&](uint32_t v, uint32_t kept, uint32_t tile, uint32_t &pos) {
        if (kAsym) {
            mnv = e_min2<kBf16>(mnv, kept ? v : pinf);
            mxv = e_max2<kBf16>(mxv, kept ? v : ninf);
        }
        if (kTileBits && !kAsym) mxm = max(mxm, kept ? (v & 0x7FFFu) : 0u);
        if (kept) {
            outbuf[pos] = (uint16_t)v;
            if (kTileBits) tilemap[pos] = (uint8_t)tile;
        }
        pos += kept;
    };
    /* order keys of the kept extremes (none kept: the empty statistics) */
    auto finish_keys = [&]() {
        if (kAsym && (mnv & 0xFFFFu) != pinf) {
            mnk = e_order_key((uint16_t)mnv);
            mxk = e_order_key((uint16_t)mxv);
        }
    };
    constexpr uint32_t kNoTile = 0xFFFFFFFFu;
    uint32_t my_tile = kNoTile, my_count = 0; /* the tile this thread staged (PER_TILE parameters) */
    if (keys && kTileBits == 0) {
        /* PER_HEAD: a thread per channel walks all 64 rows, kept or not (cheap without per-tile
         * statistics: the staging by rows below measured slower on SYMMETRIC PER_HEAD and EXACT) */
        const uint32_t d = tid;
        uint32_t pos = s.tstart[d];
#pragma unroll 1
        for (uint32_t g8 = 0; g8 < 8; g8++) {
            const uint16_t *rows = s.tile + g8 * 8 * kRow + d;
            const uint32_t byte = (uint32_t)(my_bm >> (56 - 8 * g8)); /* rows 8 g8 .. 8 g8 + 7, first at bit 7 */
#pragma unroll
            for (uint32_t q = 0; q < 8; q++) {
                take(rows[q * kRow], (byte >> (7 - q)) & 1u, d, pos);
            }
        }
        finish_keys();
    } else if (keys) {
        /* PER_TILE, by rows: each lane walks the kept elements of its half row (a row keeps `keep`; a
         * thread per channel walked all 64 rows, kept or not, since some channels keep every row and most
         * few). Element (r, c) goes to tstart[c] + the kept rows of channel c above r. The statistics:
         * SYMMETRIC's by a shared-memory atomic per element here, ASYMMETRIC's read back afterwards by a
         * thread per channel from its tile's staged run (a 16-byte load and eight packed minima / maxima
         * per eight values). The warp's loop runs as often as its fullest half row, about `keep` times with
         * outlier channels; the balanced splits tried in session 9 (half of a row's kept elements per
         * lane, or equal runs of payload ranks per thread) halved the iterations but diverged more, and
         * measured slower (results/gpu_bench.md). */
        /* rows 0-31 read the first half of key_tab, rows 32-63 the second (warps 0-1 / 2-3) */
        const uint2 *tab = key_tab + kFD * (warp >> 1) + d0;
        const uint32_t rows_above = ~(0xFFFFFFFFu >> (r & 31u)); /* rows of r's half before r */
        const uint16_t *row = s.tile + r * kRow + d0; /* element i of this half row at row[i] */
        /* 32-bit words (64-bit bit scans cost about three times the instructions): channels 0-31 of
         * the half row, then 32-63; the count ends the walk. Bit b of the word is element last - b:
         * its key_tab entry, tile value and channel are addressed from the word's last element, one
         * multiply-add each (from the element index, five instructions in all) */
        uint32_t word = (uint32_t)(row_bm >> 32);
        const uint2 *tab_last = tab + 31;
        const uint16_t *row_last = row + 31;
        uint32_t channel_last = d0 + 31;
#pragma unroll 1
        for (uint32_t n = (uint32_t)__popcll(row_bm); n; n--) {
            if (word == 0) {
                word = (uint32_t)row_bm;
                tab_last += 32;
                row_last += 32;
                channel_last += 32;
            }
            const uint32_t b = top_bit(word);
            word ^= bit_at(b);
            const uint2 ent = tab_last[-(int32_t)b];
            const uint32_t pos = ent.x + (uint32_t)__popc(ent.y & rows_above);
            const uint32_t v = tile_element(row_last - b);
            outbuf[pos] = (uint16_t)v;
            tilemap[pos] = (uint8_t)(channel_last - b);
            if (!kAsym) atomicMax(s.channel_max(channel_last - b), v & 0x7FFFu);
        }
        __syncthreads();
        const uint32_t b = s.tstart[tid], e = s.tstart[tid + 1];
        my_tile = tid;
        my_count = e - b;
        if constexpr (!kAsym) {
            /* SYMMETRIC: one shared-memory atomic per kept element in the walk gathers the statistic
             * (the read-back below waits for the always-kept outlier channels' runs of 64, about 5
             * times the mean); ASYMMETRIC would need two, which measured slower than the read-back
             * (results/gpu_bench.md, session 15) */
            mxm = *s.channel_max(tid);
        } else {
            /* ASYMMETRIC: the run [b, e) read back by single values, pairs and 8-byte aligned quads */
            uint32_t mn2 = pinf * 0x10001u, mx2 = ninf * 0x10001u; /* +inf, -inf */
            auto take_pair = [&](uint32_t w) {
                mn2 = e_min2<kBf16>(mn2, w);
                mx2 = e_max2<kBf16>(mx2, w);
            };
            auto take_quad = [&](uint2 q) {
                mn2 = e_min2<kBf16>(mn2, e_min2<kBf16>(q.x, q.y));
                mx2 = e_max2<kBf16>(mx2, e_max2<kBf16>(q.x, q.y));
            };
            /* single values, pairs and quads up to a 16-byte boundary, 16-byte words, then a quad,
             * a pair and a single value: the outlier channels' runs of 64, which set the warp's pace,
             * take 8 loads (by 8-byte quads, 16 loads and loop steps cost 6.6 warp instructions per
             * row) */
            uint32_t i = b;
            if ((i & 1u) && i < e) take_pair(outbuf[i++] * 0x10001u);
            if ((i & 2u) && i + 1 < e) {
                take_pair(((const uint32_t *)outbuf)[i >> 1]);
                i += 2;
            }
            if ((i & 4u) && i + 3 < e) {
                take_quad(((const uint2 *)outbuf)[i >> 2]);
                i += 4;
            }
            const uint4 *oct = (const uint4 *)outbuf + (i >> 3);
#pragma unroll 1
            for (uint32_t n = (e - i) >> 3; n; n--, oct++) {
                const uint4 q = *oct;
                mn2 = e_min2<kBf16>(mn2, e_min2<kBf16>(e_min2<kBf16>(q.x, q.y), e_min2<kBf16>(q.z, q.w)));
                mx2 = e_max2<kBf16>(mx2, e_max2<kBf16>(e_max2<kBf16>(q.x, q.y), e_max2<kBf16>(q.z, q.w)));
            }
            i = e - ((e - i) & 7u);
            if (i + 3 < e) {
                take_quad(((const uint2 *)outbuf)[i >> 2]);
                i += 4;
            }
            if (i + 1 < e) {
                take_pair(((const uint32_t *)outbuf)[i >> 1]);
                i += 2;
            }
            if (i < e) take_pair(outbuf[i] * 0x10001u);
            mnv = e_min2<kBf16>(mn2, mn2 >> 16);
            mxv = e_max2<kBf16>(mx2, mx2 >> 16);
            finish_keys();
        }
    } else if (r < R) {
        /* Only the kept elements: a row keeps at most `keep` of its 128 (26 at the writer's default
         * sparsity), so the warp's loop runs at most that often; the branch-free walk over all 64
         * elements cost about 12 instructions per element, kept or not. */
        uint32_t pos = s.tstart[half * R + r];
        if constexpr (!kAsym && kTileBits == 0) {
            /* SYMMETRIC PER_HEAD stages values alone (about 4 instructions per element): the unrolled walk
             * over all 64 measured faster than the loop over the kept ones */
            const uint4 *rp = (const uint4 *)(s.tile + r * kRow);
            const uint32_t bhi = (uint32_t)(my_bm >> 32), blo = (uint32_t)my_bm;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const uint4 v4 = rp[8 * half + j];
                const uint32_t w4[4] = {v4.x, v4.y, v4.z, v4.w};
#pragma unroll
                for (int q = 0; q < 4; q++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int i = 8 * j + 2 * q + e; /* element of the tile */
                        const uint32_t kept = i < 32 ? ((bhi >> (31 - i)) & 1u) : ((blo >> (63 - i)) & 1u);
                        take(e ? w4[q] >> 16 : w4[q] & 0xFFFFu, kept, half * R + r, pos);
                    }
                }
            }
        } else {
            const uint16_t *row = s.tile + r * kRow + d0; /* element i of this half row at row[i] */
            /* bit 63 - i of my_bm: element i kept; walked as two 32-bit words (as the keys above) */
            uint32_t word = (uint32_t)(my_bm >> 32);
            const uint16_t *row_last = row + 31; /* element last - b at bit b of word, at row_last - b */
            const uint32_t end = pos + (uint32_t)__popcll(my_bm);
#pragma unroll 1
            while (pos != end) {
                if (word == 0) {
                    word = (uint32_t)my_bm;
                    row_last += 32;
                }
                const uint32_t b = top_bit(word);
                word ^= bit_at(b);
                take(tile_element(row_last - b), 1u, half * R + r, pos);
            }
        }
        finish_keys();
        my_tile = half * R + r;
        my_count = pos - s.tstart[my_tile];
    }
    /* one call site: the parameter choice is long (binary64), and two inlined copies made the kernel's
     * code larger than the instruction cache serves well (ncu: "no instructions" was the largest stall) */
    if constexpr (kTileBits != 0) {
        if (my_tile != kNoTile)
            choose_tile_params<kTileBits, kAsym, kBf16>(my_count, mxm, mnk, mxk, tile_scales + sec.params_per_group * my_tile,
                                          s.tbnd + kBndSlots * my_tile);
    }
    if (kAsym && kTileBits == 0) {
        mnk = __reduce_min_sync(kFull, mnk);
        mxk = __reduce_max_sync(kFull, mxk);
        if (lane == 0) {
            atomicMin(&s.misc[1], mnk);
            atomicMax(&s.misc[2], mxk);
        }
    }
    __syncthreads();

    /* P4: bitmaps, staged values (or codes), unit-relative offset entries, statistics */
    uint64_t *gbm = (uint64_t *)body + u.tile0;
    if (keys) gbm[tid] = my_bm;
    else if (r < R) gbm[half * R + r] = my_bm;
    const uint32_t kept_total = s.tstart[nt];
    /* the unit's payload bits when this pass writes the payload: PER_TILE codes coded into a stream in
     * the tile's space (free since P3), EXACT values as staged (outbuf); PER_HEAD values are staged in
     * device memory for the packing pass */
    uint32_t *const stream = kTileBits != 0 ? (uint32_t *)s.tile : (uint32_t *)outbuf;
    uint16_t *stage = a.temp + ((uint64_t)layer * a.n_units + uidx) * a.unit_cap;
    uint32_t *const codes_out = payload_here ? stream : (uint32_t *)stage;
    if constexpr (kTileBits == 8) {
        /* codes as bytes in payload order, two values a thread and step: the search (code8) is long, a copy
         * per value of a group of eight made the code larger than the instruction cache serves well, one
         * value a step left the loop bound by the search's latency, and four measured slower than two
         * (1190 against 1235 GB/s); only staged values (the slack after kept_total would search garbage
         * parameters) */
        for (uint32_t p = tid; p < kept_total; p += 2 * kFastThreads) {
            /* two values a step, p and q (q = p when past the end), so that their chains overlap */
            const uint32_t q = p + kFastThreads < kept_total ? p + kFastThreads : p;
            const float4 tp = *(const float4 *)(s.tbnd + kBndSlots * tilemap[p]);
            const float4 tq = *(const float4 *)(s.tbnd + kBndSlots * tilemap[q]);
            const Code8Tile cp{tp.x, tp.y, tp.z, tp.w}, cq{tq.x, tq.y, tq.z, tq.w};
            const uint32_t xp = outbuf[p], xq = outbuf[q];
            uint32_t code_p, code_q;
            const bool usual_p = code8_usual<kAsym, kBf16>(xp, cp, code_p), usual_q = code8_usual<kAsym, kBf16>(xq, cq, code_q);
            if (!usual_p) code_p = code8_rare<kAsym, kBf16>(xp, cp);
            if (!usual_q) code_q = code8_rare<kAsym, kBf16>(xq, cq);
            ((uint8_t *)codes_out)[p] = (uint8_t)code_p;
            ((uint8_t *)codes_out)[q] = (uint8_t)code_q;
        }
    }
    const uint32_t groups = (payload_here && kTileBits == 0) ? 0u : (kept_total + 7) / 8;
    for (uint32_t i = tid; kTileBits != 8 && i < groups; i += kFastThreads) {
        uint4 w = ((const uint4 *)outbuf)[i];
        if constexpr (kTileBits != 0) {
            /* PER_TILE: the codes of eight values. The last group of eight may end past kept_total:
             * its slack tile bytes are whatever the shared memory held, so tile indices are masked to 7
             * bits (& 0x7F, a unit has at most 128 tiles), which keeps those reads inside tbnd; their
             * codes land beyond the count, which packing (or write_unit_payload) ignores. */
            const uint2 tw = ((const uint2 *)tilemap)[i];
            uint32_t h[4] = {w.x, w.y, w.z, w.w};
            /* packed, code k of the group at bit kTileBits * k, so that the unit's codes form a bit stream
             * from bit 0 (placed by whole words; 16-bit codes were 8 or 4 times the bytes to write and
             * read back) */
            if constexpr (kTileBits == 2) {
                ((uint16_t *)codes_out)[i] = (uint16_t)codes_2bit<kBf16, kBndSlots>(h, tw, s.tbnd);
            } else if constexpr (kTileBits == 3 || kTileBits == 4) {
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const uint32_t t0 = ((j < 2 ? tw.x : tw.y) >> (16 * (j & 1))) & 0x7Fu;
                    const uint32_t t1 = ((j < 2 ? tw.x : tw.y) >> (16 * (j & 1) + 8)) & 0x7Fu;
                    h[j] = tile_code<kTileBits>(h[j] & 0xFFFFu, s.tbnd + kBndSlots * t0) |
                           (tile_code<kTileBits>(h[j] >> 16, s.tbnd + kBndSlots * t1) << 16);
                }
                uint32_t packed = 0;
#pragma unroll
                for (int j = 0; j < 4; j++)
                    packed |= ((h[j] | (h[j] >> (16 - kTileBits))) & ((1u << (2 * kTileBits)) - 1u)) << (2 * kTileBits * j);
                if constexpr (kTileBits == 3) {
                    /* 24 bits: three bytes, so the stream stays dense (codes straddle its words) */
                    uint8_t *sb = (uint8_t *)codes_out + 3 * (size_t)i;
                    sb[0] = (uint8_t)packed;
                    sb[1] = (uint8_t)(packed >> 8);
                    sb[2] = (uint8_t)(packed >> 16);
                } else {
                    codes_out[i] = packed;
                }
            }
        } else {
            ((uint4 *)stage)[i] = w; /* PER_HEAD: coded by the packing pass */
        }
    }
    {
        const uint32_t k = a.g.offset_log2;
        const uint64_t t0 = u.tile0, t1 = u.tile0 + nt;
        uint32_t *offs = (uint32_t *)(body + sec.offsets_at);
        /* payload written here: entries absolute at the assumed start (the section kernel corrects them
         * only where the assumption failed); else unit-relative, made absolute by the section kernel */
        const uint32_t base = payload_here ? (uint32_t)assumed_unit_start(a.g, sec, u) : 0u;
        for (uint64_t mm = (t0 >> k) + 1 + tid; mm < sec.n_offsets; mm += kFastThreads) {
            const uint64_t tm = min(mm << k, sec.n_tiles);
            if (tm > t1) break;
            offs[mm] = base + s.tstart[tm - t0];
        }
    }
    UnitStat *const st = a.stats + (uint64_t)layer * a.n_units + uidx;
    if (tid == 0) { /* field by field: write_unit_payload's threads write the edges */
        st->count = kept_total;
        st->max_mag = s.misc[0];
        st->min_key = s.misc[1];
        st->max_key = s.misc[2];
        st->start = 0;
        st->padded = 0;
        st->pad0 = 0;
    }
    if (payload_here) {
        __syncthreads(); /* the stream is complete */
        constexpr uint32_t kBits = kTileBits != 0 ? kTileBits : 16u;
        write_unit_payload(stream, (uint64_t)kept_total * kBits, assumed_unit_start(a.g, sec, u) * kBits,
                           (uint32_t *)(body + sec.payload_at), st);
    }
}

/* ---- per section ---------------------------------------------------------------------------------- */

constexpr int kSectionThreads = 256;

__global__ void __launch_bounds__(kSectionThreads) section_fast_kernel(EncodeArgs a) {
    const uint32_t layer = blockIdx.y;
    const SectionPlan &sec = a.sections[blockIdx.x];
    if (threadIdx.x == 0) write_hash_job(a, layer, blockIdx.x); /* DENSE sections' too */
    if (sec.kind != kKindSparse) return;
    cudaGridDependencySynchronize(); /* launch_dependent: the pruning pass's results from here on */
    const Geometry &g = a.g;
    UnitStat *st = a.stats + (uint64_t)layer * a.n_units + sec.unit_first;
    uint8_t *body = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64;
    __shared__ double levels[256];
    const uint64_t P = unit_payload_starts<kSectionThreads>(st, sec.n_units);
    /* offset entries: the pruning pass wrote each entry relative to the unit holding its last tile, or,
     * when it wrote the payload (fast_payload_in_prune), absolute at that unit's assumed start, which
     * is right unless a row kept fewer than keep (relocate_units below moves the payload then) */
    const bool in_place = fast_payload_in_prune(g);
    const bool assumed_ok = in_place && P == (uint64_t)min(g.keep, kFD) * sec.head_count * sec.token_count;
    {
        uint32_t *offs = (uint32_t *)(body + sec.offsets_at);
        const uint32_t k = g.offset_log2;
        const uint64_t per_unit = sec.tensor == 0 ? (uint64_t)g.head_dim : 64ull * g.hb;
        if (threadIdx.x == 0) offs[0] = 0;
        for (uint64_t mm = 1 + threadIdx.x; mm < sec.n_offsets && !assumed_ok; mm += kSectionThreads) {
            const uint64_t tau = min(mm << k, sec.n_tiles) - 1;
            const uint64_t j = tau / sec.tiles_per_head, c = (tau % sec.tiles_per_head) / per_unit;
            const UnitPlan &u = a.units[sec.unit_first + j * sec.chunks + c];
            offs[mm] += (uint32_t)st[j * sec.chunks + c].start - (in_place ? (uint32_t)assumed_unit_start(g, sec, u) : 0u);
        }
    }
    const bool bf16 = g.e_bf16 != 0;
    if (g.granularity == 1) {
        const uint32_t L = 1u << g.bits;
        for (uint32_t j = 0; j < sec.head_count; j++) {
            uint16_t hs, hz;
            head_group_params<kSectionThreads>(g, sec, st, j, P, body, &hs, &hz);
            /* code boundaries: the smallest order key whose nearest level has code >= c */
            const double sd = e_to_double(hs, bf16), zd = e_to_double(hz, bf16);
            for (uint32_t c = threadIdx.x; c < L; c += kSectionThreads)
                levels[c] = e_to_double(quant_level((int)g.quantizer, g.bits, bf16, sd, zd, c), bf16);
            __syncthreads();
            uint16_t *bnd = a.bounds + ((uint64_t)layer * a.bounds_per_layer + sec.bound_first + j) * 256;
            for (uint32_t c = 1 + threadIdx.x; c < L; c += kSectionThreads) {
                /* finite E values only: order keys of -max_finite .. +max_finite */
                const uint32_t kmin = e_order_key(bf16 ? 0xFF7Fu : 0xFBFFu), kmax = e_order_key(bf16 ? 0x7F7Fu : 0x7BFFu);
                uint32_t lo = kmin, hi = kmax + 1; /* answer in [lo, hi]; hi = none */
                while (lo < hi) {
                    const uint32_t mid = (lo + hi) / 2;
                    const double x = e_to_double(e_from_order_key(mid), bf16);
                    if (nearest_code(TableLevels{levels}, L, x) >= c) hi = mid;
                    else lo = mid + 1;
                }
                bnd[c] = (uint16_t)lo; /* kmax + 1: no finite value has this code */
            }
            __syncthreads();
        }
    }
    uint32_t *const words = (uint32_t *)(body + sec.payload_at);
    if (in_place && !assumed_ok) relocate_units<kSectionThreads>(a, sec, st, layer, g.bits, words);
    if (in_place) merge_unit_edges<kSectionThreads>(st, sec.n_units, g.bits, words);
    finish_sparse_body(g, sec, body, P, &a.results[(uint64_t)layer * a.n_sections + blockIdx.x], in_place);
}

/* ---- packing ---------------------------------------------------------------------------------------- */

constexpr int kPackWarps = 8;

/* Order key of an fp16 value (numeric.cuh e_order_key) in three operations. */
__device__ __forceinline__ uint32_t order_key(uint32_t h) { return h ^ (0x8000u | ((0u - (h >> 15)) & 0x7FFFu)); }

/* Code of order key k: the number of boundaries <= k (bnd[1..L-1] ascending). */
template <uint32_t BITS>
__device__ __forceinline__ uint32_t code_of_key(uint32_t k, const uint16_t *bnd, uint32_t b1, uint32_t b2, uint32_t b3) {
    if constexpr (BITS == 2) return (k >= b1 ? 1u : 0u) + (k >= b2 ? 1u : 0u) + (k >= b3 ? 1u : 0u);
    uint32_t c = 0;
#pragma unroll
    for (uint32_t step = (1u << BITS) >> 1; step; step >>= 1)
        if (k >= bnd[c + step]) c += step;
    return c;
}

/* PER_HEAD values, coded here with the head's boundaries (the pruning pass writes every other kind of
 * payload itself). One warp per unit. Widths 2 and 4: lane g takes the 32 / BITS values of group g
 * (one 16- or 32-byte aligned piece of the staging buffer), so its codes are one 32-bit word;
 * that word lands at a fixed bit shift s = (e0 * BITS) mod 32 from the unit's first word, and word W0 + g
 * is the group's low part OR the previous group's high part (one shuffle). Only the unit's first and last
 * words can be shared with a neighbouring unit: those are OR-ed atomically into the zeroed payload. */
template <uint32_t BITS>
__global__ void __launch_bounds__(32 * kPackWarps) pack_fast_kernel(EncodeArgs a) {
    __shared__ uint16_t s_bnd[kPackWarps][256];
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31, layer = blockIdx.y;
    const uint32_t uidx = blockIdx.x * kPackWarps + warp;
    if (uidx >= a.n_units) return; /* whole warps; no block-wide barrier below */
    const UnitPlan u = a.units[uidx];
    const SectionPlan &sec = a.sections[u.section];
    cudaGridDependencySynchronize(); /* launch_dependent: the section kernel's results from here on */
    const UnitStat st = a.stats[(uint64_t)layer * a.n_units + uidx];
    uint16_t *bnd = s_bnd[warp];
    uint32_t b1 = 0, b2 = 0, b3 = 0;
    {
        const uint16_t *gb = a.bounds + ((uint64_t)layer * a.bounds_per_layer + sec.bound_first + u.head) * 256;
        for (uint32_t c = lane; c < (1u << BITS); c += 32) bnd[c] = c ? gb[c] : 0;
        __syncwarp();
        if (BITS == 2) {
            b1 = bnd[1];
            b2 = bnd[2];
            b3 = bnd[3];
        }
    }
    const uint32_t count = st.count;
    if (count == 0) return;
    uint8_t *payload = a.out + (uint64_t)layer * a.layer_capacity + sec.slot + 64 + sec.payload_at;
    const uint16_t *stage = a.temp + ((uint64_t)layer * a.n_units + uidx) * a.unit_cap;
    const uint64_t e0 = st.start;
    if constexpr (BITS == 8) {
        for (uint32_t i = lane; i < count; i += 32) payload[e0 + i] = (uint8_t)code_of_key<8>(order_key(stage[i]), bnd, 0, 0, 0);
    } else if constexpr (BITS == 3) {
        /* 3 bits: codes straddle words. Word W0 + q of the payload is bits [32q - s, 32q - s + 32) of the
         * unit's code stream (s = (e0 * 3) mod 32; stream bits from 3 * count on are zero): a lane codes
         * the staged values overlapping its word. */
        const uint32_t s = (uint32_t)((e0 * BITS) & 31u);
        const uint64_t W0 = (e0 * BITS) >> 5, Wlast = ((e0 + count) * BITS - 1) >> 5;
        const uint32_t nq = (uint32_t)(Wlast - W0 + 1);
        const int32_t nbits = (int32_t)(BITS * count);
        uint32_t *words = (uint32_t *)payload;
        for (uint32_t q = lane; q < nq; q += 32) {
            const int32_t lo = 32 * (int32_t)q - (int32_t)s; /* stream bit of the word's bit 0 */
            uint32_t word = 0;
            const int32_t first = lo > 0 ? lo / 3 : 0, last = min((lo + 31) / 3, (int32_t)count - 1);
            for (int32_t i = first; i <= last; i++) {
                const uint32_t c = code_of_key<3>(order_key(stage[i]), bnd, 0, 0, 0);
                const int32_t rel = 3 * i - lo;
                word |= rel >= 0 ? c << rel : c >> -rel;
            }
            const int32_t valid = nbits - lo; /* at least 1 */
            if (valid < 32) word &= (1u << valid) - 1u;
            if (q == 0 || q == nq - 1) atomicOr(words + W0 + q, word);
            else words[W0 + q] = word;
        }
    } else {
        constexpr uint32_t G = 32 / BITS; /* codes per word */
        const uint32_t ngroups = (count + G - 1) / G;
        const uint32_t s = (uint32_t)((e0 * BITS) & 31u);
        const uint64_t W0 = (e0 * BITS) >> 5, Wlast = ((e0 + count) * BITS - 1) >> 5;
        uint32_t *words = (uint32_t *)payload;
        uint32_t carry = 0; /* high part of the previous iteration's last group */
        for (uint32_t base = 0; base <= ngroups; base += 32) {
            const uint32_t g = base + lane;
            uint32_t cw = 0;
            if (g < ngroups) {
                uint32_t h[G / 2]; /* G values as G / 2 words */
                const uint4 *src = (const uint4 *)(stage + (size_t)g * G);
#pragma unroll
                for (uint32_t q = 0; q < G / 8; q++) {
                    const uint4 v = src[q];
                    h[4 * q] = v.x;
                    h[4 * q + 1] = v.y;
                    h[4 * q + 2] = v.z;
                    h[4 * q + 3] = v.w;
                }
                const uint32_t valid = min(G, count - g * G);
#pragma unroll
                for (uint32_t j = 0; j < G; j++) {
                    const uint32_t x = (j & 1) ? h[j / 2] >> 16 : h[j / 2] & 0xFFFFu;
                    const uint32_t c = code_of_key<BITS>(order_key(x), bnd, b1, b2, b3);
                    cw |= (j < valid ? c : 0u) << (BITS * j);
                }
            }
            const uint32_t hi = s ? cw >> (32 - s) : 0u;
            uint32_t prev = __shfl_up_sync(kFull, hi, 1);
            if (lane == 0) prev = carry;
            carry = __shfl_sync(kFull, hi, 31);
            const uint64_t W = W0 + g;
            if (g <= ngroups && W <= Wlast) {
                const uint32_t word = (cw << s) | prev;
                if (W == W0 || W == Wlast) atomicOr(words + W, word);
                else words[W] = word;
            }
        }
    }
}

}  // namespace

bool fast_encode_geometry(const Geometry &g) {
    /* the source is copied as it is: fp16 into fp16 elements, bf16 into bf16 */
    if (g.head_dim != kFD || g.src_dtype != (g.e_bf16 ? 2u : 1u)) return false;
    if (g.quantizer == 0) return g.bits == 16;
    return (g.quantizer == 1 || g.quantizer == 2) && (g.granularity == 1 || g.granularity == 2) &&
           (g.bits == 2 || g.bits == 3 || g.bits == 4 || g.bits == 8);
}

namespace {

/* Dynamic shared memory of the fast pruning kernel: its tables, the staged values (outbuf) and, for
 * PER_TILE, the tile of each staged value. */
template <bool kAsym, uint32_t kTileBits>
size_t prune_fast_smem_bytes(uint64_t unit_cap) {
    return sizeof(FastSmem<kAsym, kTileBits>) + align_up(2 * unit_cap, 16) + (kTileBits != 0 ? align_up(unit_cap, 16) : 0);
}

template <bool kAsym, uint32_t kTileBits, bool kBf16>
sqkv_cuda_status launch_prune_variant(const EncodeArgs &a, cudaStream_t stream) {
    const auto kernel = prune_fast_kernel<kAsym, kTileBits, kBf16>;
    const size_t smem = prune_fast_smem_bytes<kAsym, kTileBits>(a.unit_cap);
    /* attributes once per device (driver calls in front of every encode otherwise), at the largest size
     * any call asked for */
    static std::mutex mu;
    static uint64_t configured = 0; /* devices 0..63 set to configured_smem */
    static size_t configured_smem = 0;
    int dev = 0;
    SQKV_CUDA_TRY(cudaGetDevice(&dev));
    const uint64_t bit = dev >= 0 && dev < 64 ? 1ull << dev : 0ull;
    {
        std::lock_guard<std::mutex> lock(mu);
        if (!bit || !(configured & bit) || configured_smem < smem) {
            const size_t want = smem > configured_smem ? smem : configured_smem;
            SQKV_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)want));
            /* all of the unified L1 as shared memory: residency is then set by fast_blocks_per_sm */
            SQKV_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                               (int)cudaSharedmemCarveoutMaxShared));
            if (want > configured_smem) {
                configured = 0; /* the other devices still have the smaller size */
                configured_smem = want;
            }
            configured |= bit;
        }
    }
    /* a programmatic dependent of whatever the stream ran before (the previous call's header kernel when
     * calls follow each other): its blocks are placed while that kernel drains, and wait for it first */
    return launch_dependent(kernel, dim3(a.n_units, a.n_layers), dim3(kFastThreads), smem, stream, a);
}

/* fp16 or bf16 elements (kBf16), from a source of the same type */
template <bool kBf16>
sqkv_cuda_status launch_prune_for_type(const EncodeArgs &a, cudaStream_t stream) {
    const bool asym = a.g.quantizer == 2;
    if (a.g.granularity != 2)
        return asym ? launch_prune_variant<true, 0, kBf16>(a, stream) : launch_prune_variant<false, 0, kBf16>(a, stream);
    switch (a.g.bits) {
        case 2: return asym ? launch_prune_variant<true, 2, kBf16>(a, stream) : launch_prune_variant<false, 2, kBf16>(a, stream);
        case 3: return asym ? launch_prune_variant<true, 3, kBf16>(a, stream) : launch_prune_variant<false, 3, kBf16>(a, stream);
        case 4: return asym ? launch_prune_variant<true, 4, kBf16>(a, stream) : launch_prune_variant<false, 4, kBf16>(a, stream);
        case 8: return asym ? launch_prune_variant<true, 8, kBf16>(a, stream) : launch_prune_variant<false, 8, kBf16>(a, stream);
        default: return SQKV_ERR_STATE;
    }
}

}  // namespace

sqkv_cuda_status launch_prune_fast(const EncodeArgs &a, cudaStream_t stream) {
    if (a.n_units == 0) return SQKV_OK;
    return a.g.e_bf16 ? launch_prune_for_type<true>(a, stream) : launch_prune_for_type<false>(a, stream);
}

sqkv_cuda_status launch_section_fast(const EncodeArgs &a, cudaStream_t stream) {
    return launch_dependent(section_fast_kernel, dim3(a.n_sections, a.n_layers), dim3(kSectionThreads), 0, stream, a);
}

sqkv_cuda_status launch_pack_fast(const EncodeArgs &a, cudaStream_t stream) {
    /* PER_HEAD only: the pruning pass writes every other payload */
    if (a.n_units == 0 || fast_payload_in_prune(a.g)) return SQKV_OK;
    const dim3 grid((a.n_units + kPackWarps - 1) / kPackWarps, a.n_layers);
    const dim3 block(32 * kPackWarps);
    switch (a.g.bits) {
        case 2: return launch_dependent(pack_fast_kernel<2>, grid, block, 0, stream, a);
        case 3: return launch_dependent(pack_fast_kernel<3>, grid, block, 0, stream, a);
        case 4: return launch_dependent(pack_fast_kernel<4>, grid, block, 0, stream, a);
        case 8: return launch_dependent(pack_fast_kernel<8>, grid, block, 0, stream, a);
        default: return SQKV_ERR_STATE;
    }
}

}  // namespace sqkv_cuda
