/*
 * decode_fast.cu: the decoder's fast path for head_dim 128 with PER_HEAD or PER_TILE scales or EXACT
 * values (the general decode_kernel of decode_kernels.cu handles every other case), bit for bit the same
 * output. PER_TILE levels are built per unit in the warp's shared memory (2, 3 and 4 bits: every tile's
 * level table; 8 bits: each tile's parameters, and each kept element's level computed once in binary32,
 * levels8.cuh level8, or per element for units of more than kLevels8 kept elements). 3 bits read a
 * tile's eight levels into registers and select two codes' levels at once (SYMMETRIC: magnitude plus
 * sign).
 *
 * One warp per unit (64 tokens x 128 channels of one head) and no block-wide barrier, so a block's
 * units (eight; four for 4-bit PER_TILE, launch_bits) proceed independently and many units are in
 * flight per multiprocessor:
 *   - the unit's 64-bit bitmaps (lane l: tiles 4l .. 4l + 3) and its first payload element (the
 *     validated offset table plus at most 2^k - 1 popcounts, or the count pass's prefix sums) are
 *     loaded together; a warp scan of the popcounts gives every tile's first element;
 *   - the unit's payload words are copied to the warp's shared memory (coalesced), the level table of
 *     the head is built in the output type; EXACT values are read from global memory instead (16 KB a
 *     unit at most: staged, they would cost most of the occupancy), and so are the codes of 8-bit units
 *     larger than the staging (kStagedWords8);
 *   - every output row is written by the whole warp as 32 consecutive 8-byte stores (256 bytes).
 *     Keys: lane l owns channels 4l .. 4l + 3 (four tiles) and walks down the rows, taking the next
 *     code of a tile when its bit is set. Values: lanes 0-15 / 16-31 own channels 4i .. 4i + 3 of
 *     channel block 0 / 1 and find their first code with one popcount of the row's tile bitmap.
 * The same kernel writes Mustafar's in-memory layout (kMustafar: sqkv_cuda_decode_mustafar_layers and the
 * per-head calls): the same staging, levels in the element type, then the unit's bitmaps, accum_counts
 * and each tile's values padded to groups of eight, at the word base the scan kernel
 * (decode_kernels.cu) gives each unit.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <mutex>
#include <type_traits>

#include "decode_kernels.cuh"
#include "decode_units.cuh"
#include "numeric.cuh"
#include "tile_params.cuh"

namespace sqkv_cuda {

namespace {

constexpr uint32_t kFD = 128;
constexpr uint32_t kWarps = 8;
constexpr uint32_t kFull = 0xFFFFFFFFu;

/* PER_TILE levels of the unit's tiles in the output type: tile t's code c at tl[(t << BITS) + c] (2 and
 * 3 bits); 8 bits: the tile's parameters (s at tl[2t], z at tl[2t + 1]), levels computed per element.
 * 4 bits, laid out so that a warp's loads of one level per lane are free of bank conflicts:
 *   - key_table4 (keys: lane l decodes tiles 4l .. 4l + 3): level c of tile 4l + i at entry
 *     1024 (i >> 1) + 64 c + 2l + (i & 1), i.e. in word 32 (16 (i >> 1) + c) + l, bank l;
 *   - value_slot4 (values: the 16 lanes of half warp h read tile t = h R + r): level c of tile t at entry
 *     16 (64 h + (r ^ h)) + c, so the two tiles of a row use different banks. */
template <uint32_t BITS, bool kTile>
constexpr uint32_t tile_level_slots() {
    return !kTile ? 4u : BITS == 8 ? 2u * kFD : kFD << BITS;
}

/* *p when pred, else 0, without a branch: one predicated non-coherent load (the payload is read-only
 * for the kernel's lifetime). */
__device__ __forceinline__ uint16_t load_u16_if(bool pred, const uint16_t *p) {
    unsigned short x;
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %2, 0;\n\tmov.u16 %0, 0;\n\t@q ld.global.nc.u16 %0, [%1];\n\t}"
        : "=h"(x)
        : "l"(__cvta_generic_to_global(p)), "r"((uint32_t)pred));
    return x;
}

/* Mustafar's layout (kMustafar): each tile's first group of eight output values, in the unit. An empty
 * base otherwise, so that the dense kernels' shared memory, and their occupancy, stay as they were. */
template <bool kMustafar>
struct MustafarGroups {};
template <>
struct MustafarGroups<true> {
    uint16_t gstart[kFD + 8]; /* 272 bytes: the 16-byte alignment of what follows (3-bit tables) */
};

/* Payload words a warp stages: a whole unit's at most (64 x 128 codes), plus the windows' reads past
 * the end, except for 8 bits. There a whole unit took 8 KB a warp and let two blocks of eight warps on a
 * multiprocessor (the decode was latency-bound, results/gpu_bench.md session 20), so units of up to
 * kStagedWords8 words (4096 codes, 64 a row: sparsity 0.5 or more) are staged and larger ones read from
 * global memory. */
constexpr uint32_t kStagedWords8 = 1024;
/* 8-bit PER_TILE dense decode: a unit of at most kLevels8 kept elements has each one's level computed once,
 * into the staging words (the walk over all 8192 elements then copies levels, as EXACT copies values;
 * computing a level per element, kept or not, was most of the kernel's instructions) */
constexpr uint32_t kLevels8 = 2 * kStagedWords8;
template <uint32_t BITS>
constexpr uint32_t staged_words() {
    return BITS >= 16 ? 1u : BITS == 8 ? kStagedWords8 + 4 : 64 * kFD * BITS / 32 + 4;
}

template <uint32_t BITS, bool kTile, bool kMustafar>
struct WarpSmem : MustafarGroups<kMustafar> {
    uint64_t bm[kFD];
    uint16_t tl[tile_level_slots<BITS, kTile>()];
    uint32_t tstart[kFD + 4];
    uint16_t lev[BITS < 16 && !(BITS == 8 && kTile) ? (1u << BITS) : 4]; /* PER_HEAD levels */
    uint32_t words[staged_words<BITS>()];
};

/* kMustafar: the same staging, then Mustafar's arrays of the unit instead of its dense rows; warp wi
 * takes the export's unit wi (mustafar_unit; decode_kernels.cuh, m_* fields). */
/* Blocks a multiprocessor should hold (the launch bound): 8-bit PER_TILE keys' walks would take 73
 * registers, three blocks where its shared memory allows four. EXACT: a minimum of 1 lets ptxas take 50
 * registers instead of 40, and the decode runs 5% faster (H200, results/gpu_bench.md session 20); 0 states
 * no minimum, for the other variants, which a minimum of 1 made slower (4-bit PER_TILE 75 -> 104
 * registers, 2062 -> 1856 GB/s). */
template <uint32_t BITS, bool kTile, bool kMustafar>
constexpr int fast_min_blocks() {
    return BITS == 8 && kTile && !kMustafar ? 4 : BITS == 16 && !kMustafar ? 1 : 0;
}

template <uint32_t BITS, bool kTile, bool kMustafar>
__global__ void __launch_bounds__(32 * kWarps, fast_min_blocks<BITS, kTile, kMustafar>()) decode_fast_kernel(const __grid_constant__ DecodeArgs a) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    using Smem = WarpSmem<BITS, kTile, kMustafar>;
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint32_t wi = blockIdx.x * (blockDim.x >> 5) + warp;
    if (wi >= (kMustafar ? a.m_n_units : a.n_units)) return; /* whole warps: nothing below synchronizes beyond the warp */
    Smem &s = ((Smem *)smem_raw)[warp];
    static_assert(BITS != 3 || !kTile || sizeof(Smem) % 16 == 0, "3-bit level tables are read as uint4");
    const Geometry &g = a.g;
    const DecSection *const secs = a.sections ? a.sections : a.inline_sections;
    /* a programmatic dependent of the stream's earlier work (launch_bits): nothing is read before it ends.
     * Mustafar's arrays: the earlier kernel is the scan (decode_kernels.cu), which lets this one start at
     * once; everything before it in the stream is done, and only its word bases are waited for, below */
    if constexpr (!kMustafar) cudaGridDependencySynchronize();
    const MustafarUnit mu = kMustafar ? mustafar_unit_warp(a, wi) : MustafarUnit{wi, 0, 0};
    const uint32_t idx = mu.unit;
    const UnitPlan u = unit_at(a, secs, idx);
    const DecSection &sec = secs[u.section];
    const bool e_bf16 = g.e_bf16 != 0;
    /* 8-bit PER_TILE: level of code c of a tile whose parameters are the floats of ctx (tile_ctx), computed
     * per element (level8). The validation kernels have checked every tile with elements (§7.4: finite s
     * and z, every level finite); a tile with none has no level read. */
    auto level_bits = [&](uint2 ctx, uint32_t c, bool kept) -> uint16_t {
        return (uint16_t)level8(sec.quantizer, e_bf16, __uint_as_float(ctx.x), __uint_as_float(ctx.y), c, kept);
    };
    const bool same_type = (a.out_dtype == 2) == e_bf16;
    const uint32_t R = u.rows, nt = u.n_tiles;
    const uint64_t *sec_bms = (const uint64_t *)sec.body;
    const uint64_t *gbm = sec_bms + u.tile0;

    /* bitmaps of tiles 4l .. 4l + 3, and the unit's first payload element */
    uint64_t bm[4];
#pragma unroll
    for (uint32_t i = 0; i < 4; i++) bm[i] = 4 * lane + i < nt ? gbm[4 * lane + i] : 0ull;
    /* 4-bit PER_TILE keys: each lane builds the level tables of the tiles it decodes (key_table4) */
    const bool key4 = BITS == 4 && kTile && sec.tensor == 0;
    /* the unit's scale parameters, loaded with the bitmaps (a global round trip fewer before the level
     * tables): PER_TILE, tile lane + 32 j (nt <= 128), or 4 lane + j for key4; PER_HEAD, the head's
     * group */
    uint16_t ps[4] = {0, 0, 0, 0}, pz[4] = {0, 0, 0, 0};
    if constexpr (BITS < 16) {
        const uint16_t *scales = (const uint16_t *)(sec.body + sec.scales_at);
        const uint32_t ppg = sec.params_per_group;
        if constexpr (kTile) {
            const uint16_t *tsc = scales + u.tile0 * ppg;
#pragma unroll
            for (uint32_t j = 0; j < 4; j++) {
                const uint32_t t = key4 ? 4 * lane + j : lane + 32 * j;
                if (t < nt) {
                    ps[j] = tsc[(uint64_t)t * ppg];
                    pz[j] = ppg == 2 ? tsc[(uint64_t)t * ppg + 1] : 0;
                }
            }
        } else {
            const uint64_t grp = (uint64_t)u.head * ppg;
            ps[0] = scales[grp];
            pz[0] = ppg == 2 ? scales[grp + 1] : 0;
        }
    }
    uint64_t e0;
    if (a.use_offsets) {
        const uint32_t k = sec.offset_log2;
        const uint64_t m = u.tile0 >> k, t_first = m << k;
        const uint32_t base = ((const uint32_t *)(sec.body + sec.offsets_at))[m];
        uint32_t extra = 0;
        for (uint64_t t = t_first + lane; t < u.tile0; t += 32) extra += __popcll(sec_bms[t]);
        e0 = (uint64_t)base + __reduce_add_sync(kFull, extra);
    } else {
        e0 = a.stats[idx].start;
    }
    uint32_t c[4], mine = 0;
#pragma unroll
    for (uint32_t i = 0; i < 4; i++) {
        c[i] = __popcll(bm[i]);
        mine += c[i];
    }
    const uint32_t incl = warp_inclusive_sum(mine);
    const uint32_t total = __shfl_sync(kFull, incl, 31);
    uint32_t ts[4];
    ts[0] = incl - mine;
#pragma unroll
    for (uint32_t i = 1; i < 4; i++) ts[i] = ts[i - 1] + c[i - 1];
#pragma unroll
    for (uint32_t i = 0; i < 4; i++) {
        s.bm[4 * lane + i] = bm[i];
        s.tstart[4 * lane + i] = ts[i];
    }

    /* payload words of the unit, and the head's levels in the output type */
    const uint8_t *payload = sec.body + sec.payload_at;
    const uint64_t region = sec.decoded_size - sec.payload_at;
    uint64_t w0 = 0;
    uint32_t flags = 0;
    bool ovf = false;
    /* 3-bit PER_TILE: every tile of the unit has a mirrored table (SYMMETRIC, finite scales), so levels
     * are selected as magnitude plus sign (warp-uniform) */
    bool sym3 = false;
    /* the unit's payload words from w0: staged in s.words, or (8 bits, units larger than the staging)
     * in global memory, where reads are clamped to the region's last word, words_last */
    const uint32_t *words = s.words;
    uint32_t words_last = 0xFFFFFFFFu;
    const bool levels_staged = BITS == 8 && kTile && !kMustafar && total <= kLevels8;
    if (BITS < 16) {
        w0 = (e0 * BITS) >> 5;
        const uint64_t w1 = ((e0 + total) * BITS + 31) >> 5, region_words = region / 4;
        const uint32_t *pw = (const uint32_t *)payload;
        if (levels_staged) {
            /* the codes are read once, from global memory, by the conversion below */
        } else if (BITS != 8 || w1 - w0 <= kStagedWords8) {
            for (uint64_t w = w0 + lane; w < w1; w += 32) s.words[w - w0] = w < region_words ? pw[w] : 0u;
        } else if (w1 <= region_words) {
            words = pw + w0;
            words_last = (uint32_t)min(region_words - 1 - w0, (uint64_t)0xFFFFFFFEu);
        } else {
            /* past the region: an invalid file, which the validation kernels report; the reads stay in
             * s.words (a decoder's first call decodes before the host has their verdict) */
            words_last = 0;
        }
        const uint32_t ppg = sec.params_per_group;
        if constexpr (!kTile) {
            const double sd = e_to_double(ps[0], e_bf16);
            const double zd = ppg == 2 ? e_to_double(pz[0], e_bf16) : 0.0;
            for (uint32_t q = lane; q < (1u << BITS); q += 32) {
                uint32_t f = 0;
                s.lev[q] = to_out(quant_level(sec.quantizer, BITS, e_bf16, sd, zd, q), e_bf16, a.out_dtype, &f);
                ovf |= f != 0;
            }
        } else if constexpr (BITS == 8) {
#pragma unroll
            for (uint32_t j = 0; j < 4; j++) {
                const uint32_t t = lane + 32 * j;
                if (t < nt) {
                    s.tl[2 * t] = ps[j];
                    s.tl[2 * t + 1] = pz[j];
                }
            }
            /* levels are computed per element, and to_out flags a conversion that overflows where an
             * element uses it: no output is checked again (check_overflow) */
        } else {
            /* a lane per tile: its parameters are converted once */
            auto build_tile = [&](uint32_t t, double sd, double zd) {
                uint32_t lv[1u << BITS];
                uint32_t f = 0;
#pragma unroll
                for (uint32_t c = 0; c < (1u << BITS); c++)
                    lv[c] = to_out(quant_level(sec.quantizer, BITS, e_bf16, sd, zd, c), e_bf16, a.out_dtype, &f);
                ovf |= f != 0;
                uint2 *dst = (uint2 *)(s.tl + (t << BITS)); /* 8-byte aligned: bm before it, 4 levels per uint2 */
#pragma unroll
                for (uint32_t c = 0; c < (1u << BITS); c += 4)
                    dst[c / 4] = make_uint2(lv[c] | (lv[c + 1] << 16), lv[c + 2] | (lv[c + 3] << 16));
            };
            if constexpr (BITS == 3) {
                bool fin = true;
#pragma unroll
                for (uint32_t j = 0; j < 4; j++) fin &= e_is_finite(ps[j], e_bf16);
                sym3 = __all_sync(kFull, sec.quantizer == 1 && fin);
            }
            if constexpr (BITS == 2 || BITS == 3) {
                /* from the parameters loaded with the bitmaps (unrolled: four or eight levels per tile) */
#pragma unroll
                for (uint32_t j = 0; j < 4; j++) {
                    const uint32_t t = lane + 32 * j;
                    if (t >= nt) break;
                    const double sd = e_to_double(ps[j], e_bf16);
                    if (BITS == 3 && sec.quantizer == 1 && e_is_finite(ps[j], e_bf16)) {
                        /* SYMMETRIC: level 7 - c is RNE(-(2c - 7) s), and with s finite both roundings
                         * (to E, then to the output type) are sign-symmetric: half the levels are computed,
                         * the other half are their sign flips, bit for bit (-0 for s = 0 included) */
                        uint32_t lv[8];
                        uint32_t f = 0;
#pragma unroll
                        for (uint32_t c = 4; c < 8; c++) {
                            lv[c] = to_out(quant_level(1, BITS, e_bf16, sd, 0.0, c), e_bf16, a.out_dtype, &f);
                            lv[7 - c] = lv[c] ^ 0x8000u;
                        }
                        ovf |= f != 0;
                        ((uint4 *)s.tl)[t] = make_uint4(lv[0] | (lv[1] << 16), lv[2] | (lv[3] << 16),
                                                        lv[4] | (lv[5] << 16), lv[6] | (lv[7] << 16));
                    } else {
                        build_tile(t, sd, ppg == 2 ? e_to_double(pz[j], e_bf16) : 0.0);
                    }
                }
            } else {
                /* 4 bits: sixteen levels per tile, 2048 per unit. An fp16 file decoded to fp16 (the common
                 * case) skips to_out, whose runtime type tests were most of a level's instructions. */
                const bool plain = !e_bf16 && a.out_dtype == 1;
                auto levels16 = [&](uint32_t j, uint32_t (&lv)[16]) {
                    const double sd = e_to_double(ps[j], e_bf16), zd = ppg == 2 ? e_to_double(pz[j], e_bf16) : 0.0;
                    uint32_t f = 0;
                    if (plain) {
#pragma unroll
                        for (uint32_t c = 0; c < 16; c++) lv[c] = quant_level(sec.quantizer, 4, false, sd, zd, c);
                    } else {
#pragma unroll
                        for (uint32_t c = 0; c < 16; c++)
                            lv[c] = to_out(quant_level(sec.quantizer, 4, e_bf16, sd, zd, c), e_bf16, a.out_dtype, &f);
                    }
                    ovf |= f != 0;
                };
                if (key4) {
                    /* keys: lane l reads level c of tile 4l + i as 16 bits of word 32 (16 (i >> 1) + c) + l
                     * (key_table4), so the 32 lanes of a load hit 32 banks whatever their codes; in the
                     * tile-major table, 4 lanes' tiles shared each bank (ncu: 4.5-way conflicts, 78% of
                     * the shared-load wavefronts) */
                    uint32_t *tw = (uint32_t *)s.tl;
#pragma unroll
                    for (uint32_t ip = 0; ip < 2; ip++) {
                        uint32_t la[16], lb[16];
                        levels16(2 * ip, la);
                        levels16(2 * ip + 1, lb);
#pragma unroll
                        for (uint32_t c = 0; c < 16; c++) tw[32 * (16 * ip + c) + lane] = la[c] | (lb[c] << 16);
                    }
                } else {
                    /* values: tile t = h R + r at slot 64 h + (r ^ h) (value_slot4): the two half warps'
                     * tiles of a row then sit in different banks */
#pragma unroll
                    for (uint32_t j = 0; j < 4; j++) {
                        const uint32_t t = lane + 32 * j;
                        if (t >= nt) break;
                        uint32_t lv[16];
                        levels16(j, lv);
                        const uint32_t h = t >= R ? 1u : 0u, slot = 64 * h + ((t - h * R) ^ h);
                        uint2 *dst = (uint2 *)(s.tl + 16 * slot);
#pragma unroll
                        for (uint32_t c = 0; c < 16; c += 4)
                            dst[c / 4] = make_uint2(lv[c] | (lv[c + 1] << 16), lv[c + 2] | (lv[c + 3] << 16));
                    }
                }
            }
        }
        /* a level beyond fp16 (bf16 file, fp16 output) is an error only where an element uses it */
        ovf = __any_sync(kFull, ovf);
    }
    __syncwarp();
    if (levels_staged) {
        /* lane l converts the kept elements of its tiles 4l .. 4l + 3 (c[i] from ts[i]) into levels in the
         * output type at s.words, as 16-bit values by payload index; codes past the region (an invalid
         * file, decoded before the validation's verdict) read as 0 */
        uint16_t *const lv = (uint16_t *)s.words;
        const uint8_t *const codes = payload + (e0 < region ? e0 : 0);
        const uint32_t avail8 = e0 < region ? (uint32_t)min(region - e0, (uint64_t)total) : 0u;
#pragma unroll
        for (uint32_t i = 0; i < 4; i++) {
            if (c[i] == 0) continue;
            const uint32_t t = 4 * lane + i;
            const float sf = e_to_float(s.tl[2 * t], e_bf16), zf = e_to_float(s.tl[2 * t + 1], e_bf16);
            const uint32_t end = ts[i] + c[i], load_end = min(end, avail8);
            /* four codes a step, their loads issued together (one at a time, each step waited for its load) */
#pragma unroll 1
            for (uint32_t e = ts[i]; e < end; e += 4) {
                uint32_t code[4];
#pragma unroll
                for (uint32_t j = 0; j < 4; j++) code[j] = e + j < load_end ? (uint32_t)__ldg(codes + e + j) : 0u;
#pragma unroll
                for (uint32_t j = 0; j < 4; j++) {
                    if (e + j >= end) break;
                    uint32_t x = level8(sec.quantizer, e_bf16, sf, zf, code[j]);
                    if (!same_type) {
                        uint32_t f = 0;
                        x = to_out((uint16_t)x, e_bf16, a.out_dtype, &f);
                        flags |= f;
                    }
                    lv[e + j] = (uint16_t)x;
                }
            }
        }
        __syncwarp();
    }
    uint32_t lv01 = 0, lv23 = 0;
    if (BITS == 2 && !kTile) {
        lv01 = (uint32_t)s.lev[0] | ((uint32_t)s.lev[1] << 16);
        lv23 = (uint32_t)s.lev[2] | ((uint32_t)s.lev[3] << 16);
    }
    /* payload word i of the unit (from w0) */
    auto word_at = [&](uint32_t i) -> uint32_t { return BITS == 8 ? words[min(i, words_last)] : s.words[i]; };
    /* EXACT: the unit's values are payload elements e0 .. e0 + total - 1, read from global memory with
     * 32-bit indices. A valid file has them all inside the region; avail keeps the reads inside it when
     * not (a decoder's first call decodes before the host has seen the validation kernels' verdict). */
    const uint64_t region16 = region / 2;
    const uint16_t *p_unit = (const uint16_t *)payload + (e0 < region16 ? e0 : 0);
    const uint32_t avail = e0 < region16 ? (uint32_t)min(region16 - e0, (uint64_t)total) : 0u;
    /* Value of the element whose code starts at bit cur of the staged words (BITS < 16) or whose
     * payload index is e (BITS = 16), or 0 when it is not kept. Computed without branches: the code
     * read is always inside the staged words, and the kept flag selects. */
    /* ctx: where the element's levels are. PER_HEAD: unused (2 bits: lv01/lv23, else s.lev). PER_TILE,
     * 2 bits: the tile's four levels (x: codes 0-1, y: 2-3); 4 bits: x = the tile's first slot in s.tl;
     * 8 bits: the tile's s and z. */
    /* 3-bit PER_TILE: a tile's eight levels in registers (uint4), selected by byte permutes: shared
     * memory reads of per-lane tables conflicted on banks (keys: 32 lanes, 32 tables) */
    using Ctx = typename std::conditional<BITS == 3 && kTile, uint4, uint2>::type;
    auto value = [&](bool kept, uint32_t cur, uint32_t e, uint2 ctx) -> uint32_t {
        if constexpr (BITS == 16) {
            /* a predicated load and no branch (the branch per element and 64-bit index arithmetic were
             * most of this kernel's instructions); 0 converts to 0 without a flag */
            const uint16_t raw = load_u16_if(kept && e < avail, p_unit + e);
            if (same_type) return raw;
            uint32_t f = 0;
            const uint32_t x = to_out(raw, e_bf16, a.out_dtype, &f);
            flags |= f;
            return x;
        } else {
            const uint32_t code = __funnelshift_r(word_at(cur >> 5), 0u, cur) & ((1u << BITS) - 1u);
            uint32_t x;
            if constexpr (!kTile)
                x = BITS == 2 ? __byte_perm(lv01, lv23, 0x10u + 0x22u * code) & 0xFFFFu : (uint32_t)s.lev[code];
            else if constexpr (BITS == 2)
                x = __byte_perm(ctx.x, ctx.y, 0x10u + 0x22u * code) & 0xFFFFu;
            else if constexpr (BITS == 3 || BITS == 4)
                x = s.tl[ctx.x + code];
            else {
                x = level_bits(ctx, code, kept);
                if (!same_type) {
                    uint32_t f = 0;
                    x = to_out(x, e_bf16, a.out_dtype, &f);
                    flags |= kept ? f : 0u;
                }
            }
            return kept ? x : 0u;
        }
    };
    /* the level context of unit tile t (PER_TILE) */
    auto tile_ctx = [&](uint32_t t) -> Ctx {
        if constexpr (!kTile || BITS == 16) return Ctx{};
        else if constexpr (BITS == 2) return ((const uint2 *)s.tl)[t];
        else if constexpr (BITS == 3) return ((const uint4 *)s.tl)[t];
        else if constexpr (BITS == 4) { /* values (value_slot4); keys have key_table4 */
            const uint32_t h = t >= R ? 1u : 0u;
            return make_uint2((64 * h + ((t - h * R) ^ h)) << 4, 0u);
        }
        else /* 8 bits: s and z as floats (level8) */
            return make_uint2(__float_as_uint(e_to_float(s.tl[2 * t], e_bf16)), __float_as_uint(e_to_float(s.tl[2 * t + 1], e_bf16)));
    };
    /* Output rows: plain global stores. Evict-first stores measured the same (session 2: 2441-2468
     * against 2435-2446 GB/s); a runtime choice between the two cost a predicated-off store per row
     * (removing it: 4-bit +5.5%, EXACT +6.5%, results/gpu_bench.md session 8). */
    auto put = [](uint2 *p, uint2 v) {
        /* no memory clobber: the kernel never reads its output, so shared-memory loads may move across */
        asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(__cvta_generic_to_global(p)), "r"(v.x), "r"(v.y));
    };
    auto check_overflow = [&](uint2 pair) {
        if (ovf)
            flags |= (((pair.x & 0x7FFFu) == 0x7C00u) || ((pair.x >> 16 & 0x7FFFu) == 0x7C00u) ||
                      ((pair.y & 0x7FFFu) == 0x7C00u) || ((pair.y >> 16 & 0x7FFFu) == 0x7C00u))
                         ? kErrOverflow
                         : 0u;
    };
    if constexpr (kMustafar) {
        /* Mustafar's arrays of the unit (sqkv.h, sqkv_reader_decode_mustafar): its bitmaps, its tiles'
         * accum_counts, and its tiles' values, each tile's kept values then zeros up to a multiple of 8.
         * The unit's values start at word m_word_base (a multiple of 4: every tile has a multiple of 8
         * values), so they are whole groups of eight values, 16 bytes each (the host checked that every
         * values array is 16-byte aligned); group gi of the unit belongs to the last tile whose first
         * group is at most gi. A lane per group, found by a binary search of the tiles' first groups:
         * the output is contiguous, so the warp's stores are too, whatever the tiles' counts (a lane per
         * tile would wait for the outlier channels' runs of 64, eight groups against a mean of two). */
        cudaGridDependencySynchronize(); /* the scan's word bases; and the output is written only from here */
        const uint32_t slot = mu.slot;
        const uint64_t tile_base = mu.tile_base, wbase = a.m_word_base[wi];
        int64_t *const out_bm = a.m_bitmaps[slot] + tile_base;
        int32_t *const out_acc = a.m_accum[slot] + tile_base;
        uint16_t *const out_val = a.m_values[slot] + 2 * wbase;
        uint32_t groups[4], gmine = 0;
#pragma unroll
        for (uint32_t i = 0; i < 4; i++) {
            groups[i] = (c[i] + 7u) >> 3;
            gmine += groups[i];
        }
        const uint32_t gincl = warp_inclusive_sum(gmine);
        const uint32_t gtotal = __shfl_sync(kFull, gincl, 31);
        uint32_t gs = gincl - gmine;
#pragma unroll
        for (uint32_t i = 0; i < 4; i++) {
            const uint32_t t = 4 * lane + i;
            if (t < nt) s.gstart[t] = (uint16_t)gs;
            gs += groups[i];
        }
        if (lane == 0) s.gstart[nt] = (uint16_t)gtotal;
        __syncwarp();
        /* bitmaps and accum_counts by consecutive tiles per lane: coalesced stores (from the lanes' own
         * tiles 4l .. 4l + 3, 8-byte stores 32 bytes apart, half of each sector written went unused) */
        for (uint32_t t = lane; t < nt; t += 32) {
            out_bm[t] = (int64_t)s.bm[t];
            out_acc[t + 1] = (int32_t)(wbase + 4 * (uint32_t)s.gstart[t + 1]); /* words: four per group */
        }
        if (tile_base == 0 && lane == 0) out_acc[0] = 0; /* the head's first unit */
        const uint32_t mcur0 = BITS < 16 ? (uint32_t)(e0 * BITS - w0 * 32) : 0u;
        /* level of code c of unit tile t (3, 4 and 8 bits; 2 bits select pairs below) */
        auto level_at = [&](uint32_t t, uint32_t c, bool used) -> uint32_t {
            if constexpr (!kTile) {
                return s.lev[c];
            } else if constexpr (BITS == 3) {
                return s.tl[8 * t + c];
            } else if constexpr (BITS == 4) {
                if (sec.tensor == 0) /* key_table4: tile 4l + i, level c at 1024 (i >> 1) + 64 c + 2l + (i & 1) */
                    return s.tl[1024 * ((t & 3u) >> 1) + 64 * c + 2 * (t >> 2) + (t & 1u)];
                const uint32_t h = t >= R ? 1u : 0u; /* value_slot4 */
                return s.tl[16 * (64 * h + ((t - h * R) ^ h)) + c];
            } else {
                return level_bits(tile_ctx(t), c, used);
            }
        };
        for (uint32_t gi = lane; gi < gtotal; gi += 32) {
            uint32_t t = 0;
#pragma unroll
            for (uint32_t step = 64; step; step >>= 1)
                if (t + step < nt && s.gstart[t + step] <= gi) t += step;
            const uint32_t k0 = 8 * (gi - s.gstart[t]);
            const uint32_t n = min(8u, (uint32_t)__popcll(s.bm[t]) - k0); /* values of the group, 1 .. 8 */
            const uint32_t e = s.tstart[t] + k0;                            /* first of them, from e0 */
            uint32_t v[8];
            if constexpr (BITS == 16) {
#pragma unroll
                for (uint32_t j = 0; j < 8; j++) v[j] = load_u16_if(j < n && e + j < avail, p_unit + e + j);
            } else {
                const uint32_t cur = mcur0 + e * BITS, wi0 = cur >> 5;
                /* the group's codes from one 32-bit window (two for 8 bits) */
                const uint32_t wa = __funnelshift_r(word_at(wi0), word_at(wi0 + 1), cur);
                const uint32_t wb = BITS == 8 ? __funnelshift_r(word_at(wi0 + 1), word_at(wi0 + 2), cur) : 0u;
                if constexpr (BITS == 2) {
                    const uint2 lv = kTile ? ((const uint2 *)s.tl)[t] : make_uint2(lv01, lv23);
#pragma unroll
                    for (uint32_t j = 0; j < 8; j += 2) {
                        const uint32_t c2 = (wa >> (2 * j)) & 0xFu; /* codes j (bits 0-1) and j + 1 */
                        const uint32_t pr = __byte_perm(lv.x, lv.y, 0x1010u + 0x22u * ((c2 & 3u) | ((c2 >> 2) << 8)));
                        v[j] = pr & 0xFFFFu;
                        v[j + 1] = pr >> 16;
                    }
                } else {
#pragma unroll
                    for (uint32_t j = 0; j < 8; j++) {
                        const uint32_t code = BITS == 8 ? ((j < 4 ? wa : wb) >> (8 * (j & 3u))) & 0xFFu
                                                        : (wa >> (BITS * j)) & ((1u << BITS) - 1u);
                        v[j] = level_at(t, code, j < n);
                    }
                }
#pragma unroll
                for (uint32_t j = 0; j < 8; j++) v[j] = j < n ? v[j] : 0u;
            }
            *(uint4 *)(out_val + 8 * gi) =
                make_uint4(v[0] | (v[1] << 16), v[2] | (v[3] << 16), v[4] | (v[5] << 16), v[6] | (v[7] << 16));
        }
        if (wi + 1 == a.m_head_first[slot + 1]) { /* the head's last unit: the slack after its values */
            uint16_t *const vals = a.m_values[slot];
            for (uint64_t i = 2 * a.m_head_words[slot] + lane; i < a.m_value_counts[slot]; i += 32) vals[i] = 0;
        }
        return;
    }
    const uint32_t head = sec.head_start + u.head, token0 = sec.token_start + 64u * u.chunk;
    uint16_t *out = (uint16_t *)sec.out + ((uint64_t)head * g.n_tokens + token0) * kFD;
    /* bit position of payload element e0 in the staged words */
    const uint32_t cur0 = BITS < 16 ? (uint32_t)(e0 * BITS - w0 * 32) : 0u;
    /* Values by payload index e (from e0): EXACT's from global memory, or the levels staged above */
    auto element = [&](bool kept, uint32_t e) -> uint32_t {
        if constexpr (BITS == 16) return value(kept, 0u, e, uint2{});
        else return kept ? (uint32_t)((const uint16_t *)s.words)[e] : 0u;
    };
    auto walk_by_index = [&]() {
        if (sec.tensor == 0) {
            /* keys: tiles 4l .. 4l + 3 are channels 4l .. 4l + 3; a lane walks down the rows */
            uint32_t e[4]; /* index from e0 */
#pragma unroll
            for (uint32_t i = 0; i < 4; i++) e[i] = ts[i];
            uint2 *dst = (uint2 *)(out + 4 * lane);
#pragma unroll
            for (uint32_t hh = 0; hh < 2; hh++) {
                uint32_t bw[4];
#pragma unroll
                for (uint32_t i = 0; i < 4; i++) bw[i] = (uint32_t)(bm[i] >> (32 * (1 - hh)));
                /* eight rows per iteration: fully unrolled, the walk was too long for the instruction cache
                 * (ncu: "no instructions" 35% of the stall samples) */
#pragma unroll 8
                for (uint32_t rr = 0; rr < 32; rr++) {
                    const uint32_t r = 32 * hh + rr;
                    if (r >= R) break;
                    uint32_t v[4];
#pragma unroll
                    for (uint32_t i = 0; i < 4; i++) {
                        const bool kept = (bw[i] >> (31 - rr)) & 1u;
                        v[i] = element(kept, e[i]);
                        e[i] += kept ? 1u : 0u;
                    }
                    const uint2 pair = make_uint2(v[0] | (v[1] << 16), v[2] | (v[3] << 16));
                    check_overflow(pair);
                    put(dst + r * (kFD / 4), pair);
                }
            }
        } else {
            /* values: tile h * R + r is row r, channels 64h .. 64h + 63; lane l holds channels 4i .. 4i + 3 of
             * block h (i = l mod 16) and finds its first element with one popcount of the row's bitmap */
            const uint32_t h = lane >> 4, i0 = 4 * (lane & 15u);
            const uint64_t before_mask = ~(~0ull >> i0); /* the tile's elements before i0 */
            uint2 *dst = (uint2 *)(out + 64 * h + i0);
#pragma unroll 4
            for (uint32_t r = 0; r < R; r++) {
                const uint32_t t = h * R + r;
                const uint64_t tb = s.bm[t];
                uint32_t ee = s.tstart[t] + (uint32_t)__popcll(tb & before_mask); /* index from e0 */
                const uint32_t nib = (uint32_t)(tb >> (60 - i0)) & 0xFu;
                uint32_t v[4];
#pragma unroll
                for (uint32_t j = 0; j < 4; j++) {
                    const bool kept = (nib >> (3 - j)) & 1u;
                    v[j] = element(kept, ee);
                    ee += kept ? 1u : 0u;
                }
                const uint2 pair = make_uint2(v[0] | (v[1] << 16), v[2] | (v[3] << 16));
                check_overflow(pair);
                put(dst + (uint64_t)r * (kFD / 4), pair);
            }
        }
    };
    constexpr bool kByIndex = BITS == 16 || (BITS == 8 && kTile); /* the other widths never walk by index */
    if (kByIndex && (BITS == 16 || levels_staged)) {
        if constexpr (kByIndex) walk_by_index();
    } else if constexpr (BITS < 16) {
        /* Codes are read through 32-bit windows: the next codes of a stream from one funnel shift of two
         * staged words, consumed by shifting the window when an element is kept (no per-element shared
         * memory read or bit-position arithmetic). */
        constexpr uint32_t MASK = (1u << BITS) - 1u;
        auto window = [&](uint32_t cur) -> uint32_t {
            const uint32_t wi = cur >> 5;
            return __funnelshift_r(word_at(wi), word_at(wi + 1), cur);
        };
        /* level of code c (0 when not kept), PER_HEAD or PER_TILE (ctx as for value above) */
        auto level_of = [&](uint32_t c, Ctx ctx, uint32_t kept) -> uint32_t {
            uint32_t x;
            if constexpr (BITS == 2)
                x = __byte_perm(kTile ? ctx.x : lv01, kTile ? ctx.y : lv23, 0x10u + 0x22u * c) & 0xFFFFu;
            else if constexpr (!kTile)
                x = s.lev[c];
            else if constexpr (BITS == 3) {
                const uint32_t sel = 0x10u + 0x22u * (c & 3u);
                x = (c & 4u) ? __byte_perm(ctx.z, ctx.w, sel) : __byte_perm(ctx.x, ctx.y, sel);
                x &= 0xFFFFu;
            } else if constexpr (BITS == 4)
                x = s.tl[ctx.x + c];
            else {
                x = level_bits(ctx, c, kept);
                if (!same_type) {
                    uint32_t f = 0;
                    x = to_out(x, e_bf16, a.out_dtype, &f);
                    flags |= kept ? f : 0u;
                }
            }
            return kept ? x : 0u;
        };
        /* two neighbouring elements of one tile: for 2 bits one byte permute selects both levels */
        /* 3-bit PER_TILE, two codes of one tile (bits 0-2 of w0 and of w1): SYM, a mirrored table, whose
         * levels 4-7 (ctx.z, ctx.w) are the magnitudes: one byte permute maps both codes to the
         * magnitudes' byte selector (code c: magnitude c - 4 or 3 - c), a second picks both magnitudes,
         * two more place the sign bits (codes 0-3 are negative). Otherwise bit 2 of each code picks
         * levels 0-3 or 4-7. */
        auto pair3 = [&](auto symc, uint32_t w0c, uint32_t w1c, uint32_t k0, uint32_t k1, Ctx ctx) -> uint32_t {
            if constexpr (!(BITS == 3 && kTile)) {
                return 0u;
            } else if constexpr (decltype(symc)::value) {
                const uint32_t s1 = (w0c & 7u) | ((w1c << 4) & 0x70u);
                const uint32_t sel = __byte_perm(0x10325476u, 0x76543210u, s1);
                const uint32_t mag = __byte_perm(ctx.z, ctx.w, sel);
                const uint32_t sgn = __byte_perm(__byte_perm(0x80808080u, 0u, s1), 0u, 0x1404u);
                return (mag ^ sgn) & ((0u - k0) & 0xFFFFu | ((0u - k1) << 16));
            } else {
                const uint32_t c0 = w0c & 7u, c1 = w1c & 7u;
                const uint32_t sel = 0x1010u + 0x22u * ((c0 & 3u) | ((c1 & 3u) << 8));
                const uint32_t lo = __byte_perm(ctx.x, ctx.y, sel), hi = __byte_perm(ctx.z, ctx.w, sel);
                const uint32_t upper = (0u - ((c0 >> 2) & 1u)) & 0xFFFFu | ((0u - ((c1 >> 2) & 1u)) << 16);
                return ((lo & ~upper) | (hi & upper)) & ((0u - k0) & 0xFFFFu | ((0u - k1) << 16));
            }
        };
        auto pair_of = [&](uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1, Ctx ctx) -> uint32_t {
            if constexpr (BITS == 2) {
                const uint32_t x = __byte_perm(kTile ? ctx.x : lv01, kTile ? ctx.y : lv23, 0x1010u + 0x22u * (c0 | (c1 << 8)));
                return x & ((0u - k0) & 0xFFFFu | ((0u - k1) << 16));
            } else {
                return level_of(c0, ctx, k0) | (level_of(c1, ctx, k1) << 16);
            }
        };
        if constexpr (BITS == 3 && kTile) {
            /* symc: std::true_type where sym3 holds (3-bit PER_TILE only), a loop body per case */
            auto rows3 = [&](auto symc) {
                if (sec.tensor == 0) {
                    /* keys: tiles 4l .. 4l + 3 are channels 4l .. 4l + 3; a lane walks down the rows, G rows per
                     * window of each tile (3 bits: ten, so the last window of a half bitmap has two rows) */
                    constexpr uint32_t G = 32 / BITS, NG = (32 + G - 1) / G;
                    uint32_t cur[4];
                    Ctx ctx[4];
#pragma unroll
                    for (uint32_t i = 0; i < 4; i++) {
                        cur[i] = cur0 + ts[i] * BITS;
                        ctx[i] = tile_ctx(4 * lane + i);
                    }
                    uint2 *dst = (uint2 *)(out + 4 * lane);
#pragma unroll
                    for (uint32_t hh = 0; hh < 2; hh++) {
                        uint32_t bw[4];
#pragma unroll
                        for (uint32_t i = 0; i < 4; i++) bw[i] = (uint32_t)(bm[i] >> (32 * (1 - hh)));
#pragma unroll
                        for (uint32_t gi = 0; gi < NG; gi++) {
                            if (32 * hh + G * gi >= R) break;
                            const uint32_t n = G < 32 - G * gi ? G : 32 - G * gi; /* rows of this window */
                            uint32_t win[4];
#pragma unroll
                            for (uint32_t i = 0; i < 4; i++) win[i] = window(cur[i]);
                            {
                                /* rows in pairs (a window holds an even number of rows): two codes of a tile
                                 * give one 32-bit pair, four pairs give two output rows */
                                static_assert(G % 2 == 0 && (32 - G * (NG - 1)) % 2 == 0, "row pairs");
#pragma unroll
                                for (uint32_t rr = 0; rr < n; rr += 2) {
                                    const uint32_t q = G * gi + rr, r = 32 * hh + q;
                                    if (r >= R) break;
                                    uint32_t pr[4];
#pragma unroll
                                    for (uint32_t i = 0; i < 4; i++) {
                                        const uint32_t k0 = (bw[i] >> (31 - q)) & 1u, k1 = (bw[i] >> (30 - q)) & 1u;
                                        const uint32_t w1 = k0 ? win[i] >> BITS : win[i];
                                        pr[i] = pair3(symc, win[i], w1, k0, k1, ctx[i]);
                                        win[i] = k1 ? w1 >> BITS : w1;
                                    }
                                    const uint2 row0 = make_uint2(__byte_perm(pr[0], pr[1], 0x5410u), __byte_perm(pr[2], pr[3], 0x5410u));
                                    check_overflow(row0);
                                    put(dst + r * (kFD / 4), row0);
                                    if (r + 1 < R) {
                                        const uint2 row1 = make_uint2(__byte_perm(pr[0], pr[1], 0x7632u), __byte_perm(pr[2], pr[3], 0x7632u));
                                        check_overflow(row1);
                                        put(dst + (r + 1) * (kFD / 4), row1);
                                    }
                                }
                            }
#pragma unroll
                            for (uint32_t i = 0; i < 4; i++)
                                cur[i] += BITS * (uint32_t)__popc((bw[i] << (G * gi)) >> (32 - n));
                        }
                    }
                } else {
                    /* values: as below, the lane's four codes from one window */
                    const uint32_t h = lane >> 4, i0 = 4 * (lane & 15u);
                    const uint64_t before_mask = ~(~0ull >> i0);
                    uint2 *dst = (uint2 *)(out + 64 * h + i0);
#pragma unroll 4
                    for (uint32_t r = 0; r < R; r++) {
                        const uint32_t t = h * R + r;
                        const uint64_t tb = s.bm[t];
                        const uint32_t rank = s.tstart[t] + (uint32_t)__popcll(tb & before_mask);
                        const uint32_t nib = (uint32_t)(tb >> (60 - i0)) & 0xFu;
                        uint32_t w = window(cur0 + rank * BITS);
                        const Ctx ctx = tile_ctx(t);
                        const uint32_t k0 = nib >> 3, k1 = (nib >> 2) & 1u, k2 = (nib >> 1) & 1u, k3 = nib & 1u;
                        const uint32_t w1 = k0 ? w >> BITS : w, w2 = k1 ? w1 >> BITS : w1, w3 = k2 ? w2 >> BITS : w2;
                        const uint2 pair = make_uint2(pair3(symc, w, w1, k0, k1, ctx), pair3(symc, w2, w3, k2, k3, ctx));
                        check_overflow(pair);
                        put(dst + (uint64_t)r * (kFD / 4), pair);
                    }
                }
            };
            if (sym3) rows3(std::true_type{});
            else rows3(std::false_type{});
        } else if (sec.tensor == 0) {
            /* keys: tiles 4l .. 4l + 3 are channels 4l .. 4l + 3; a lane walks down the rows, G rows per
             * window of each tile (3 bits: ten, so the last window of a half bitmap has two rows) */
            constexpr uint32_t G = 32 / BITS, NG = (32 + G - 1) / G;
            uint32_t cur[4];
            Ctx ctx[4];
            /* 4-bit PER_TILE (key_table4): level c of tile 4 lane + i at entry ctx.x + 64 c */
            constexpr uint32_t kCodeShift = BITS == 4 && kTile ? 6 : 0;
#pragma unroll
            for (uint32_t i = 0; i < 4; i++) {
                cur[i] = cur0 + ts[i] * BITS;
                ctx[i] = kCodeShift ? make_uint2(1024 * (i >> 1) + 2 * lane + (i & 1), 0u) : tile_ctx(4 * lane + i);
            }
            uint2 *dst = (uint2 *)(out + 4 * lane);
#pragma unroll
            for (uint32_t hh = 0; hh < 2; hh++) {
                uint32_t bw[4];
#pragma unroll
                for (uint32_t i = 0; i < 4; i++) bw[i] = (uint32_t)(bm[i] >> (32 * (1 - hh)));
                /* 8 and 4 bits: two windows per iteration, not all of them. For 8 bits each row computes
                 * four levels in binary64, and the fully unrolled walk was too long for the instruction
                 * cache (ncu: "no instructions" was 44% of the stall samples, issue slots 27% busy); 4 bits
                 * gained 2% the same way, 2 and 3 bits keep the full unrolling */
#pragma unroll(BITS == 8 ? 1 : BITS == 4 ? 2 : NG)
                for (uint32_t gi = 0; gi < NG; gi++) {
                    if (32 * hh + G * gi >= R) break;
                    const uint32_t n = G < 32 - G * gi ? G : 32 - G * gi; /* rows of this window */
                    uint32_t win[4];
#pragma unroll
                    for (uint32_t i = 0; i < 4; i++) win[i] = window(cur[i]);
#pragma unroll
                    for (uint32_t rr = 0; rr < n; rr++) {
                        const uint32_t q = G * gi + rr, r = 32 * hh + q;
                        if (r >= R) break;
                        uint32_t v[4];
#pragma unroll
                        for (uint32_t i = 0; i < 4; i++) {
                            const uint32_t kept = (bw[i] >> (31 - q)) & 1u;
                            v[i] = level_of((win[i] & MASK) << kCodeShift, ctx[i], kept);
                            win[i] = kept ? win[i] >> BITS : win[i];
                        }
                        const uint2 pair = make_uint2(v[0] | (v[1] << 16), v[2] | (v[3] << 16));
                        check_overflow(pair);
                        put(dst + r * (kFD / 4), pair);
                    }
#pragma unroll
                    for (uint32_t i = 0; i < 4; i++)
                        cur[i] += BITS * (uint32_t)__popc((bw[i] << (G * gi)) >> (32 - n));
                }
            }
        } else {
            /* values: as below, the lane's four codes from one window */
            const uint32_t h = lane >> 4, i0 = 4 * (lane & 15u);
            const uint64_t before_mask = ~(~0ull >> i0);
            uint2 *dst = (uint2 *)(out + 64 * h + i0);
#pragma unroll 4
            for (uint32_t r = 0; r < R; r++) {
                const uint32_t t = h * R + r;
                const uint64_t tb = s.bm[t];
                const uint32_t rank = s.tstart[t] + (uint32_t)__popcll(tb & before_mask);
                const uint32_t nib = (uint32_t)(tb >> (60 - i0)) & 0xFu;
                uint32_t w = window(cur0 + rank * BITS);
                /* 4-bit PER_TILE: value_slot4 of t = h R + r, from h and r */
                const Ctx ctx = BITS == 4 && kTile ? make_uint2((64 * h + (r ^ h)) << 4, 0u) : tile_ctx(t);
                const uint32_t k0 = nib >> 3, k1 = (nib >> 2) & 1u, k2 = (nib >> 1) & 1u, k3 = nib & 1u;
                const uint32_t c0 = w & MASK;
                w = k0 ? w >> BITS : w;
                const uint32_t c1 = w & MASK;
                w = k1 ? w >> BITS : w;
                const uint32_t c2 = w & MASK;
                w = k2 ? w >> BITS : w;
                const uint32_t c3 = w & MASK;
                const uint2 pair = make_uint2(pair_of(c0, c1, k0, k1, ctx), pair_of(c2, c3, k2, k3, ctx));
                check_overflow(pair);
                put(dst + (uint64_t)r * (kFD / 4), pair);
            }
        }
    }
    if (flags) atomicOr(&a.errors[u.section], flags);
}

template <uint32_t BITS, bool kTile, bool kMustafar>
sqkv_cuda_status launch_bits(const DecodeArgs &a, cudaStream_t stream) {
    /* Warps (units) per block: 8, except for 4-bit PER_TILE, whose 9.8 KB of shared memory per warp let
     * only two blocks of 8 (16 warps) on a multiprocessor; blocks of 4 fit five (20 warps): 1793-1806 ->
     * 1963-1964 GB/s on the H200 (Llama shape, validated sections), while 2 and 3 bits lose 4-5% with 4. */
    const uint32_t def_warps = BITS == 4 && kTile ? 4u : kWarps;
    const uint32_t warps = a.fast_warps >= 1 && a.fast_warps <= kWarps ? a.fast_warps : def_warps;
    const size_t smem = sizeof(WarpSmem<BITS, kTile, kMustafar>) * warps;
    const auto kernel = decode_fast_kernel<BITS, kTile, kMustafar>;
    /* The attribute (room for kWarps warps) is set once per device: a per-call driver call is a few
     * microseconds in front of every decode. */
    static std::mutex mu;
    static uint64_t configured = 0; /* devices 0..63 */
    int dev = 0;
    SQKV_CUDA_TRY(cudaGetDevice(&dev));
    const uint64_t bit = dev >= 0 && dev < 64 ? 1ull << dev : 0ull;
    {
        std::lock_guard<std::mutex> lock(mu);
        if (!bit || !(configured & bit)) {
            SQKV_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)(sizeof(WarpSmem<BITS, kTile, kMustafar>) * kWarps)));
            configured |= bit;
        }
    }
    /* a programmatic dependent: its blocks are placed while the kernel before it (often the previous
     * call's, when an engine restores layer by layer) drains, and wait for it before reading anything */
    const uint32_t n = kMustafar ? a.m_n_units : a.n_units;
    return launch_dependent(kernel, dim3((n + warps - 1) / warps), dim3(32 * warps), smem, stream, a);
}

template <bool kMustafar>
sqkv_cuda_status launch_width(const DecodeArgs &a, cudaStream_t stream) {
    const bool tile = a.fast_tile != 0;
    switch (a.fast_bits) {
        case 2: return tile ? launch_bits<2, true, kMustafar>(a, stream) : launch_bits<2, false, kMustafar>(a, stream);
        case 3: return tile ? launch_bits<3, true, kMustafar>(a, stream) : launch_bits<3, false, kMustafar>(a, stream);
        case 4: return tile ? launch_bits<4, true, kMustafar>(a, stream) : launch_bits<4, false, kMustafar>(a, stream);
        case 8: return tile ? launch_bits<8, true, kMustafar>(a, stream) : launch_bits<8, false, kMustafar>(a, stream);
        case 16: return launch_bits<16, false, kMustafar>(a, stream);
        default: return SQKV_ERR_STATE;
    }
}

}  // namespace

sqkv_cuda_status launch_decode_fast(const DecodeArgs &a, cudaStream_t stream) {
    if (a.n_units == 0) return SQKV_OK;
    if (a.g.head_dim != kFD) return SQKV_ERR_STATE;
    return launch_width<false>(a, stream);
}

sqkv_cuda_status launch_mustafar_fast(const DecodeArgs &a, cudaStream_t stream) {
    if (a.m_n_units == 0) return SQKV_OK;
    if (a.g.head_dim != kFD) return SQKV_ERR_STATE;
    /* Mustafar's values are the element type's bits: the level tables are built in it */
    DecodeArgs m = a;
    m.out_dtype = a.g.e_bf16 ? 2u : 1u;
    return launch_width<true>(m, stream);
}

}  // namespace sqkv_cuda
