/* decode_kernels.cuh: the decoder's kernel arguments and launchers (decode_kernels.cu). */
#ifndef SQKV_CUDA_DECODE_KERNELS_CUH
#define SQKV_CUDA_DECODE_KERNELS_CUH

#include "internal.cuh"

namespace sqkv_cuda {

/* A tensor section of a decode call; every field comes from a header the host validated. */
struct DecSection {
    const uint8_t *body;     /* device */
    uint8_t *out;            /* device: the [H, T, D] output tensor of this section's layer and tensor */
    uint64_t decoded_size;
    uint8_t kind, tensor, bits, quantizer;
    uint8_t granularity, offset_log2, params_per_group;
    uint8_t all_kept;        /* ALL_KEPT (§7.6): bitmaps implied, no bitmaps or offsets stored */
    uint32_t head_start, head_count, token_start, token_count;
    uint64_t n_tiles, tiles_per_head, n_offsets, n_groups;
    uint64_t offsets_at, scales_at, payload_at;
    uint32_t unit_first, n_units, chunks, pad1;
};

/* Error bits of a section, in the order the CPU decoder checks the rules. */
enum : uint32_t {
    kErrSize = 1u << 0,          /* SIZE_MISMATCH: decoded_size vs the bitmaps' popcounts */
    kErrStreamPad = 1u << 1,     /* PADDING between streams */
    kErrBitmapPad = 1u << 2,     /* BITMAP_PADDING */
    kErrOffsets = 1u << 3,       /* OFFSET_MISMATCH */
    kErrScale = 1u << 4,         /* SCALE */
    kErrPayloadPad = 1u << 5,    /* PADDING: bits after the last code (checked after SCALE) */
    kErrValue = 1u << 6,         /* VALUE: EXACT value zero or not finite, DENSE value not finite */
    kErrDensePad = 1u << 7,      /* PADDING after the DENSE values */
    kErrOverflow = 1u << 8,      /* VALUE: bf16 value beyond fp16 in the output */
    kErrPayloadBytes = 1u << 9   /* PADDING: bytes after the payload (checked before BITMAP_PADDING) */
};

/* Mustafar export: a run of units of one head slot, consecutive in the export's unit order and in their
 * section (the units of one section for one head: its chunks). Export unit m_first + c is call unit
 * unit_first + c, whose first tile in the slot's arrays is tile_base + c * tile_step. One run per head
 * and section instead of a table per unit: the plan of a whole cache's export is a few KB to build and
 * upload, not half a megabyte (results/gpu_bench.md, session 19). */
struct MustafarRun {
    uint32_t m_first, unit_first, slot, tile_step;
    uint64_t tile_base;
};

/* A call whose sections number at most this many (a layer of 8 KV heads, one section per head and
 * tensor), all checked before, with nothing else to upload, passes them in the decoding kernel's
 * arguments (inline_sections) and uploads nothing: the upload was 3.6 us of a one-layer call's 15.4 on
 * the H200 (results/gpu_bench.md, session 12). Only the fast kernel reads them (decode_fast.cu). */
constexpr uint32_t kInlineSections = 16;

struct DecodeArgs {
    Geometry g;
    uint32_t out_dtype;        /* 1 fp16, 2 bf16 */
    const DecSection *sections; /* device; NULL: inline_sections */
    uint32_t n_sections;
    uint32_t n_units;          /* units are derived from the sections on the device (unit_at) */
    UnitStat *stats;
    uint32_t *errors;          /* per section */
    uint32_t use_offsets;      /* unit starts from the (validated) offset tables instead of stats */
    uint32_t max_bits;         /* largest payload_bits of the call's sections (shared memory size) */
    uint32_t fast_bits;        /* payload_bits of every SPARSE section when decode_fast.cu applies, else 0 */
    uint32_t fast_tile;        /* with fast_bits < 16: every SPARSE section has PER_TILE (1) or PER_HEAD (0) */
    uint32_t units_per_section; /* every section of the call has this many units (> 0): unit_at divides
                                 * instead of searching the section list; 0 otherwise */
    uint32_t fast_warps;       /* decode_fast.cu: warps (units) per block, 1..8; 0: its default */
    /* Mustafar export of heads of one or more layers and tensors: head slot s (0 .. m_n_heads - 1) owns
     * the arrays m_bitmaps[s], m_accum[s] and m_values[s] (device arrays of device pointers) */
    const MustafarRun *m_runs; /* the export's units, head slot after head slot, each in tile order */
    uint32_t m_n_runs;
    uint32_t m_n_units;
    const uint32_t *m_head_first; /* per head slot: its first export unit; [m_n_heads] = m_n_units */
    uint32_t m_n_heads;
    uint64_t *m_word_base;     /* per export unit: accum value before its first tile (scan output) */
    uint64_t *m_head_words;    /* per head slot: the head's value words (scan output) */
    int64_t *const *m_bitmaps;       /* per head slot: n_tiles entries */
    int32_t *const *m_accum;         /* per head slot: n_tiles + 1 entries */
    uint16_t *const *m_values;       /* per head slot */
    const uint64_t *m_value_counts;  /* per head slot: entries of its values array */
    uint32_t m_fast;           /* the fast kernel writes the arrays (decode_fast.cu): a.fast_bits set and
                                * every values array 16-byte aligned; with use_offsets, the scan kernel
                                * counts the units' padded tiles itself, the count pass having not run */
    DecSection inline_sections[kInlineSections];
};

/* Count and per-section passes (bitmap padding, PER_TILE and PER_HEAD scales, stream padding, sizes),
 * which also give every unit its payload position. */
sqkv_cuda_status launch_decode_prepare(const DecodeArgs &a, cudaStream_t stream);
/* Validation only: offset table entries, EXACT values, DENSE values and padding. */
sqkv_cuda_status launch_decode_check(const DecodeArgs &a, const uint32_t *dense_ids, uint32_t n_dense,
                                     uint64_t max_dense_elems, cudaStream_t stream);
/* Dense output of every unit and DENSE section. */
sqkv_cuda_status launch_decode_dense(const DecodeArgs &a, const uint32_t *dense_ids, uint32_t n_dense,
                                     uint64_t max_dense_elems, cudaStream_t stream);
/* The fast decoding kernel (decode_fast.cu): head_dim 128, PER_HEAD or PER_TILE scales (one of them,
 * a.fast_tile) or EXACT values, one payload width (a.fast_bits) for every SPARSE section, 16-byte aligned
 * outputs (checked by the host). */
sqkv_cuda_status launch_decode_fast(const DecodeArgs &a, cudaStream_t stream);

/* Mustafar arrays of the call's heads (m_* fields): the scan of the units' value words, then the fast
 * kernel when a.m_fast, else the general one. */
sqkv_cuda_status launch_decode_mustafar(const DecodeArgs &a, cudaStream_t stream);

/* Export unit i of a Mustafar call: its call unit, head slot and first tile in the slot's arrays. */
struct MustafarUnit {
    uint32_t unit, slot;
    uint64_t tile_base;
};
static __device__ __forceinline__ MustafarUnit mustafar_unit(const DecodeArgs &a, uint32_t i) {
    uint32_t lo = 0, hi = a.m_n_runs; /* the last run that starts at or before i */
    while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (a.m_runs[mid].m_first <= i) lo = mid;
        else hi = mid;
    }
    const MustafarRun &r = a.m_runs[lo];
    const uint32_t c = i - r.m_first;
    return {r.unit_first + c, r.slot, r.tile_base + (uint64_t)c * r.tile_step};
}
/* The same by a whole warp (every lane asks for the same i), 32 runs a step: two dependent loads for up
 * to 1024 runs where the bisection took ten, each a round trip to L2 at the start of a unit (a whole
 * cache's export has 512 runs). */
static __device__ __forceinline__ MustafarUnit mustafar_unit_warp(const DecodeArgs &a, uint32_t i) {
    const uint32_t lane = threadIdx.x & 31;
    uint32_t lo = 0, n = a.m_n_runs; /* the run sought is in [lo, lo + n) */
    while (n > 1) {
        const uint32_t step = (n + 31) / 32, at = lo + lane * step;
        const uint32_t ok = __ballot_sync(0xFFFFFFFFu, lane * step < n && a.m_runs[at].m_first <= i);
        const uint32_t k = 31 - __clz(ok); /* lane 0 always holds: runs[lo] starts at or before i */
        lo += k * step;
        n = min(step, n - k * step);
    }
    const MustafarRun &r = a.m_runs[lo];
    const uint32_t c = i - r.m_first;
    return {r.unit_first + c, r.slot, r.tile_base + (uint64_t)c * r.tile_step};
}
/* The fast kernel's Mustafar arrays (decode_fast.cu), after the scan. */
sqkv_cuda_status launch_mustafar_fast(const DecodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
