/*
 * sqkv_cuda.h: GPU encode and decode of SQKV sections (spec/FORMAT.md), for KV caches that live on a
 * CUDA device.
 *
 * The GPU encoder produces exactly the bytes of the CPU reference encoder (sqkv_writer) for the same
 * input and options; the GPU decoder produces exactly what sqkv_reader_decode produces.
 *
 * Conventions (those of sqkv.h, plus):
 * - Every fallible function returns an sqkv_cuda_status: SQKV_OK (0), an sqkv_error value, or
 *   SQKV_CUDA_ERROR_BASE + the cudaError_t of a failed CUDA call. No CUDA error is ignored.
 *   sqkv_cuda_status_name() names either kind.
 * - Device memory is the caller's: output, input and workspace buffers are device pointers that the
 *   caller allocates with the sizes the size functions report before any launch. The objects below
 *   hold host memory only (an encoder also a few pinned host buffers and CUDA events, for the results
 *   of its pending batches).
 * - Alignment: workspaces and the encoder's output must be 16-byte aligned; the decoder's device_file
 *   and the buffers given to sqkv_cuda_checksums 8-byte aligned (a file's sections start at multiples
 *   of 8); dense inputs and outputs and the Mustafar arrays aligned to their element size. cudaMalloc's
 *   256-byte alignment meets all of these. Anything else is refused with SQKV_ERR_MISALIGNED before any
 *   launch: inside a kernel, a misaligned access would be a CUDA error that ends the context.
 *   (Encoder sources that are not 16-byte aligned take the general kernels, which are slower.)
 * - Work is queued on the caller's stream. Functions that must read a result back (sizes of encoded
 *   sections, validation verdicts) synchronize that stream and say so.
 * - One object must not be used by two threads at once. Errors are sticky, as in sqkv.h.
 */
#ifndef SQKV_CUDA_H
#define SQKV_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "sqkv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int sqkv_cuda_status;
#define SQKV_CUDA_ERROR_BASE 1000
/* A CUDA runtime error e is reported as SQKV_CUDA_ERROR_BASE + e. */
static inline int sqkv_cuda_status_is_cuda(sqkv_cuda_status s) { return s >= SQKV_CUDA_ERROR_BASE; }

/* "SQKV_ERR_..." for sqkv_error values, "cudaErrorMemoryAllocation" etc. for CUDA errors. */
const char *sqkv_cuda_status_name(sqkv_cuda_status s);
/* One sentence; never NULL. */
const char *sqkv_cuda_status_message(sqkv_cuda_status s);

/* 1 when at least one CUDA device can be used, 0 otherwise (no driver, no device). */
int sqkv_cuda_device_available(void);

/* ------------------------------------------------------------------------------------------------
 * Encoder
 *
 * Life cycle: create (geometry and options as for sqkv_writer_create) -> sizes -> encode_layers for
 * batches of layers (each layer once) -> encode_results for each batch -> optional file output ->
 * destroy.
 * Pending batches: up to SQKV_CUDA_MAX_PENDING_BATCHES batches may be queued before their results are
 * read, each with its own workspace (a workspace holds one pending batch). An engine that saves its
 * cache layer by layer queues layer l + 1 before it reads layer l's results, so that the GPU never
 * waits for the host between layers (results/gpu_bench.md, session 12).
 *
 * Output of one layer: the layer's sections in the file's order (K then V; head groups ascending;
 * for each head group its SPARSE sections, tokens ascending, then its DENSE section), each complete
 * (64-byte header, body, zero padding) at a fixed slot offset inside the layer's region of
 * layer_capacity bytes. Slots are sized for the worst case (every non-padding element kept), so the
 * caller can allocate before encoding; the actual extent of each section is known after
 * encode_results. Section i of a layer starts at byte slot_offset[i] of the layer's region.
 *
 * Format 1.1 (spec/FORMAT.md §4.1): the encoder writes all three features: CODE_WIDTHS (payload
 * widths 1, 3, 5, 6, 7; width 3 also by the fast kernels, the others by the general ones),
 * HALF_TILE_SCALES (SQKV_SCALE_PER_HALF_TILE) and ALL_KEPT (SQKV_PRUNE_KEEP_ALL), the last two with the
 * general kernels; the file header declares the features of the options and version 1.1, as
 * sqkv_writer does. The range search option (§14, opts->range_search, per tensor) is done on the GPU
 * too, for every granularity, with the general kernels (an opt-in quality option: PER_TILE and
 * PER_HALF_TILE groups are searched a thread per group, PER_HEAD groups by a block per head summing in
 * payload order, so the choice and the bytes are sqkv_writer's). (The decoder reads every such file.)
 * ---------------------------------------------------------------------------------------------- */
typedef struct sqkv_cuda_encoder sqkv_cuda_encoder;

/* Batches an encoder may have queued and not yet read with encode_results. */
#define SQKV_CUDA_MAX_PENDING_BATCHES 4

typedef struct sqkv_cuda_encode_sizes {
    uint32_t sections_per_layer;
    uint64_t layer_capacity;      /* device bytes of output per layer */
    uint64_t workspace_base;      /* device workspace bytes for a call: base + per_layer * n_layers */
    uint64_t workspace_per_layer;
} sqkv_cuda_encode_sizes;

sqkv_cuda_status sqkv_cuda_encoder_create(const sqkv_geometry *geometry, const sqkv_writer_options *opts,
                                          sqkv_cuda_encoder **out);
void sqkv_cuda_encoder_destroy(sqkv_cuda_encoder *e);
const char *sqkv_cuda_encoder_error_detail(const sqkv_cuda_encoder *e);

sqkv_cuda_status sqkv_cuda_encoder_sizes(const sqkv_cuda_encoder *e, sqkv_cuda_encode_sizes *sizes);
/* Byte offset of section i (0 <= i < sections_per_layer) in a layer's output region. */
uint64_t sqkv_cuda_encoder_slot_offset(const sqkv_cuda_encoder *e, uint32_t i);

/* Queues the encoding of layers [first_layer, first_layer + n_layers) on stream. k[i] and v[i] (host
 * arrays of device pointers) are layer first_layer + i as [n_kv_heads, n_tokens, head_dim] arrays of
 * src_dtype (FP16, BF16 or FP32), converted to the element type first as sqkv_writer_add_layer does.
 * out (device) receives n_layers * layer_capacity bytes: layer first_layer + i at out + i *
 * layer_capacity. workspace (device) holds workspace_base + n_layers * workspace_per_layer bytes and
 * must stay untouched until encode_results returns; its first bytes keep the encoder's plan, uploaded
 * by the first call with that workspace pointer and size (the encoder remembers its last
 * SQKV_CUDA_MAX_PENDING_BATCHES workspaces), so leave them untouched between calls with the same
 * workspace. A workspace freed and allocated again may come back at the same address with other
 * contents: call sqkv_cuda_encoder_reset after reallocating workspaces (or pass another size), else
 * the kernels read a stale plan. Every check that needs no data (pointers, sizes, layers neither
 * encoded nor pending, a free workspace) happens here, before any launch.
 * Speed: the fast kernels take head_dim 128 with src_dtype equal to the element type (FP16 into an FP16
 * file, BF16 into a BF16 file), 16-byte aligned sources, PER_HEAD or PER_TILE scales of 2, 3, 4 or 8
 * bits or EXACT values, without the range search or keep-all mode; every other call takes the general
 * kernels, about 5 to 8 times slower on the H200 (results/gpu_bench.md). Both write the same bytes. */
sqkv_cuda_status sqkv_cuda_encode_layers(sqkv_cuda_encoder *e, uint32_t first_layer, uint32_t n_layers,
                                         sqkv_dtype src_dtype, const void *const *k, const void *const *v,
                                         void *out, uint64_t out_size, void *workspace, uint64_t workspace_size,
                                         cudaStream_t stream);

/* Waits for the batch pending on this workspace to finish (that batch alone: work queued after it, on
 * any stream, is not waited for; stream is not used), then reports it: NONFINITE_INPUT or
 * RANGE_INPUT when an input value was NaN/infinite or did not fit the element type (those layers
 * count as not encoded), else SQKV_OK and, when extents is not NULL, extents[i * sections_per_layer +
 * s] = bytes of section s of layer first_layer + i (header, body, padding). */
sqkv_cuda_status sqkv_cuda_encode_results(sqkv_cuda_encoder *e, const void *workspace, uint64_t *extents,
                                          cudaStream_t stream);

/* Forgets which layers were encoded (their results too), so that the same encoder encodes a new cache
 * of the same geometry, and which workspaces hold its plan (the next call with each uploads it again).
 * Tokens and fingerprint are kept. */
sqkv_cuda_status sqkv_cuda_encoder_reset(sqkv_cuda_encoder *e);

/* Optional ancillary sections of the file written by sqkv_cuda_encoder_write_file (as sqkv_writer). */
sqkv_cuda_status sqkv_cuda_encoder_set_tokens(sqkv_cuda_encoder *e, const int32_t *tokens, size_t count);
sqkv_cuda_status sqkv_cuda_encoder_set_fingerprint(sqkv_cuda_encoder *e, const void *bytes, size_t size);

/* Once every layer was encoded and its results read: the exact size of the file, and the file itself
 * through write_fn (sqkv.h), the same bytes sqkv_writer writes for the same input, options, tokens and
 * fingerprint. layers[l] is the device region (layer_capacity bytes) that holds layer l's sections.
 * Layers are copied to the host on stream through four pinned layer buffers (copies run ahead of the
 * writing; the call returns after the last copy). write_fn is called from the calling thread only, in
 * file order. With options.zstd_level > 0 the zstd layer (codec 1) is applied on the host by up to 16
 * threads, section by section, before the sections pass to write_fn (the CPU writer's own code, so the
 * bytes stay identical); the file's
 * size is then known only after the compression: file_size returns SQKV_ERR_STATE until write_file has
 * succeeded, and the size of that file afterwards. */
sqkv_cuda_status sqkv_cuda_encoder_file_size(const sqkv_cuda_encoder *e, uint64_t *size);
sqkv_cuda_status sqkv_cuda_encoder_write_file(sqkv_cuda_encoder *e, const void *const *layers,
                                              sqkv_write_fn write_fn, void *ctx, cudaStream_t stream);

/* ------------------------------------------------------------------------------------------------
 * Decoder
 *
 * Built from a file whose bytes are available on the host (host_file, for structure validation) and
 * the same bytes in device memory (device_file). Creation validates on the host, with the CPU
 * library's checks, the file header, tail, index, coverage and the header of every tensor section;
 * nothing from the file reaches a kernel before that. Each decode call then, before any decoding
 * kernel runs:
 *   - computes the body checksums of the sections it reads on the GPU and compares them on the host
 *     (skipped with SQKV_CUDA_TRUSTED);
 *   - checks every body rule of §7 (bitmap padding, offset table, scales, payload padding, EXACT
 *     values) with kernels that read only the stream extents validated on the host, and reads the
 *     verdict back (one stream synchronization);
 * or, with SQKV_CUDA_HOST_VALIDATE, validates each body completely on the host with the CPU
 * decoder's validation instead. A section's element positions come from its bitmaps' prefix sums
 * until the offset table has been checked against them; after that (later calls on the same
 * sections) the decoding kernel reads the checked table. No kernel follows unchecked file content.
 *
 * Every section the CPU reader accepts is decoded: any payload width, PER_HALF_TILE scales and ALL_KEPT
 * sections (format 1.1) on the general kernels, and the zstd layer (codec 1, spec/FORMAT.md §5.1):
 * a codec-1 section's stored bytes are checked on the host at creation (checksum unless
 * SQKV_CUDA_TRUSTED, then the stream table), and each decode call decompresses the call's codec-1
 * sections on the host (up to 16 threads, started by the first such call and kept, idle between calls,
 * with their zstd contexts until destroy; a broken frame is COMPRESSED_STREAM) in batches of at most
 * 8 MiB through two pinned buffers the decoder keeps (each as large as a batch or the largest single
 * decompressed body, freed by destroy), uploading each batch into its workspace
 * (sqkv_cuda_decoder_workspace_size counts that room) while the next one is decompressed; the same
 * kernels then read them. The workspace share is bounded by the file's validated geometry (the reader's
 * limits); a caller bounds it by decoding fewer layers per call.
 * Why on the host: the project has no GPU zstd (nvCOMP is not a dependency); the bodies are small (the
 * compressed file is what crossed the disk or network), and host decompression runs at >1 GB/s.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sqkv_cuda_decoder sqkv_cuda_decoder;

#define SQKV_CUDA_TRUSTED 1u        /* skip body checksums (bytes already verified); rules still checked */
#define SQKV_CUDA_HOST_VALIDATE 2u  /* check bodies on the host (CPU) instead of with validation kernels */

/* host_file and device_file hold the same size bytes and must stay valid and unchanged until
 * destroy. limits may be NULL for the defaults. When the file fails a check, *out is still set: the
 * object holds the error (error_detail says which rule, which section) and must be destroyed. */
sqkv_cuda_status sqkv_cuda_decoder_create(const void *host_file, size_t size, const void *device_file,
                                          const sqkv_limits *limits, unsigned flags, sqkv_cuda_decoder **out);
void sqkv_cuda_decoder_destroy(sqkv_cuda_decoder *d);
const char *sqkv_cuda_decoder_error_detail(const sqkv_cuda_decoder *d);
sqkv_cuda_status sqkv_cuda_decoder_geometry(const sqkv_cuda_decoder *d, sqkv_geometry *out);

/* Device workspace for a decode call of n_layers layers, and for a Mustafar call on n_layers layers
 * (n_layers = 1 covers sqkv_cuda_decode_mustafar and sqkv_cuda_decode_mustafar_heads). */
sqkv_cuda_status sqkv_cuda_decoder_workspace_size(const sqkv_cuda_decoder *d, uint32_t n_layers, uint64_t *size);

/* Decodes both tensors of layers [first_layer, first_layer + n_layers): k_out[i] and v_out[i] (host
 * arrays of device pointers) receive layer first_layer + i as [n_kv_heads, n_tokens, head_dim] arrays
 * of out_dtype (FP16 or BF16), each out_size bytes (sqkv_dense_size). Sparse region and dense window.
 * Synchronizes stream once (validation verdict) unless SQKV_CUDA_TRUSTED and the bodies were
 * already checked by an earlier call on this decoder; returns after queuing the decoding kernels.
 * Workspace rule: the call's plan (its table of sections) is uploaded into the first bytes of
 * workspace. When every section of the call was already checked, the decoder keeps that plan, and
 * the next call with the same workspace pointer and size, the same layers, out_dtype and output
 * pointers queues the decoding kernel alone, uploading nothing. So leave the workspace untouched
 * between decode calls that pass the same pointer (or pass another pointer); any other call on this
 * decoder (other layers or outputs, another workspace, a Mustafar call) replaces the kept plan.
 * A call whose sections were all checked before, at most 16 of them (a layer of up to 8 KV heads), on
 * the fast kernel, with no DENSE section, no zstd body and no bf16-to-fp16 output, uploads nothing at all:
 * its sections travel in the kernel's arguments (decoding layer by layer costs no copy per layer). */
sqkv_cuda_status sqkv_cuda_decode_layers(sqkv_cuda_decoder *d, uint32_t first_layer, uint32_t n_layers,
                                         sqkv_dtype out_dtype, void *const *k_out, void *const *v_out,
                                         uint64_t out_size, void *workspace, uint64_t workspace_size,
                                         cudaStream_t stream);

/* Mustafar's in-memory layout of the sparse region of one head, as sqkv_reader_decode_mustafar
 * (sqkv.h) describes it, written to device memory. sizes: as sqkv_reader_mustafar_sizes, computed on the
 * host from the bitmaps: by the CPU reader, which checks the head's sections first (and gives the sizes
 * of every head of the same head range from that one pass), until a call on this decoder has checked
 * them; from then on from those checked bitmaps. Either way they are kept for later calls.
 * bitmaps (n_tiles int64), accum_counts (n_tiles + 1 int32) and values (value_count uint16) are device
 * buffers. */
sqkv_cuda_status sqkv_cuda_decoder_mustafar_sizes(sqkv_cuda_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                                  uint32_t head, sqkv_mustafar_sizes *sizes);
sqkv_cuda_status sqkv_cuda_decode_mustafar(sqkv_cuda_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                           uint32_t head, int64_t *bitmaps, int32_t *accum_counts,
                                           uint16_t *values, const sqkv_mustafar_sizes *sizes,
                                           void *workspace, uint64_t workspace_size, cudaStream_t stream);
/* The same for heads [head_start, head_start + head_count) of one layer and tensor in one call, in
 * Mustafar's batched shape: bitmaps is [head_count][n_tiles] int64 and accum_counts
 * [head_count][n_tiles + 1] int32, row i as sqkv_cuda_decode_mustafar writes head head_start + i;
 * values[i] (a host array of head_count device pointers) receives that head's values, sizes[i] its
 * sizes. Every head of one layer and tensor has the same n_tiles. Prefer it to calls per head: each
 * call uploads a plan and launches its kernels, tens of microseconds that a head's export does not
 * amortize (results/gpu_bench.md). The workspace rule is decode_mustafar's. */
sqkv_cuda_status sqkv_cuda_decode_mustafar_heads(sqkv_cuda_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                                 uint32_t head_start, uint32_t head_count, int64_t *bitmaps,
                                                 int32_t *accum_counts, uint16_t *const *values,
                                                 const sqkv_mustafar_sizes *sizes, void *workspace,
                                                 uint64_t workspace_size, cudaStream_t stream);
/* Where sqkv_cuda_decode_mustafar_layers puts every head of one layer and tensor: the arguments of
 * sqkv_cuda_decode_mustafar_heads for heads [0, n_kv_heads). */
typedef struct sqkv_cuda_mustafar_out {
    int64_t *bitmaps;                 /* device, [n_kv_heads][n_tiles] */
    int32_t *accum_counts;            /* device, [n_kv_heads][n_tiles + 1] */
    uint16_t *const *values;          /* host array of n_kv_heads device pointers */
    const sqkv_mustafar_sizes *sizes; /* host array of n_kv_heads, from sqkv_cuda_decoder_mustafar_sizes */
} sqkv_cuda_mustafar_out;
/* Every head of both tensors of layers [first_layer, first_layer + n_layers) in one call: k_out[i] and
 * v_out[i] (host arrays of n_layers) describe layer first_layer + i, each written as
 * sqkv_cuda_decode_mustafar_heads writes it. Workspace: sqkv_cuda_decoder_workspace_size(d, n_layers).
 * One plan, one upload and one set of kernels for the whole range: an engine restoring a whole cache
 * into Mustafar's layout pays the call's fixed cost once instead of twice per layer.
 * Like sqkv_cuda_decode_layers, it synchronizes stream once (validation verdict) when a section of the
 * range was not checked yet by this decoder, and otherwise only queues work.
 * Speed (all three Mustafar calls): with head_dim 128, one payload width and one scale granularity
 * (PER_HEAD, PER_TILE or EXACT values) in all the sections, no ALL_KEPT section, and every values array
 * 16-byte aligned (cudaMalloc's are), the arrays come from decode_fast.cu's kernel; otherwise from the
 * general one, several times slower. */
sqkv_cuda_status sqkv_cuda_decode_mustafar_layers(sqkv_cuda_decoder *d, uint32_t first_layer, uint32_t n_layers,
                                                  const sqkv_cuda_mustafar_out *k_out,
                                                  const sqkv_cuda_mustafar_out *v_out, void *workspace,
                                                  uint64_t workspace_size, cudaStream_t stream);

/* ------------------------------------------------------------------------------------------------
 * Checksums on the device: XXH3-64 (seed 0) of n device buffers in one launch.
 * ---------------------------------------------------------------------------------------------- */
/* Device workspace for sqkv_cuda_checksums over buffers of these sizes. */
uint64_t sqkv_cuda_checksums_workspace(const uint64_t *sizes, size_t n);
/* out (host) receives the n checksums; synchronizes stream. */
sqkv_cuda_status sqkv_cuda_checksums(const void *const *buffers, const uint64_t *sizes, size_t n,
                                     uint64_t *out, void *workspace, uint64_t workspace_size,
                                     cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* SQKV_CUDA_H */
