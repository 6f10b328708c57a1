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
    /* Mustafar export of one head */
    /* Mustafar export of the heads of one layer and tensor: head slot s (0 .. m_n_heads - 1) owns row s of
     * m_bitmaps (m_n_tiles entries) and of m_accum (m_n_tiles + 1), and the array m_values[s] */
    const uint32_t *m_units;   /* units of the call's heads, head after head, each in tile order */
    uint32_t m_n_units;
    const uint32_t *m_head_of; /* per m_unit: its head slot */
    const uint32_t *m_head_first; /* per head slot: its first m_unit; [m_n_heads] = m_n_units */
    uint32_t m_n_heads;
    const uint64_t *m_tile_base; /* per m_unit: first tile in its head's arrays */
    uint64_t m_n_tiles;        /* tiles per head */
    uint64_t *m_word_base;     /* per m_unit: accum value before its first tile (scan output) */
    uint64_t *m_head_words;    /* per head slot: the head's value words (scan output) */
    int64_t *m_bitmaps;
    int32_t *m_accum;
    uint16_t *const *m_values;       /* per head slot (device array of device pointers) */
    const uint64_t *m_value_counts;  /* per head slot: entries of its values array */
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

/* Mustafar arrays of the call's heads (m_* fields). */
sqkv_cuda_status launch_decode_mustafar(const DecodeArgs &a, cudaStream_t stream);

}  // namespace sqkv_cuda

#endif
