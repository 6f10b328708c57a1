/*
 * sqkv.h: the SQKV library's one public header.
 *
 * SQKV stores the KV cache of a transformer after per-token magnitude pruning (64-element bitmap
 * tiles, as Mustafar) and optional 2/4/8-bit quantization of the kept values, with token ids, a model
 * fingerprint, metadata and checksums. The format is specified in spec/FORMAT.md; this header is the
 * C contract of the reference encoder and decoder.
 *
 * Conventions of the whole API
 * - Every fallible function returns an sqkv_error; SQKV_OK (0) is success. sqkv_error_name() gives a
 *   stable identifier, sqkv_error_message() a sentence.
 * - Objects (sqkv_writer, sqkv_reader) hold no global state. One object must not be used by two
 *   threads at once; different objects may be used from different threads freely.
 * - Errors are sticky: once a writer or reader has failed, every later call on it returns the same
 *   error (and sqkv_*_error_detail() keeps the message that describes it), except the destroy call.
 * - Buffers are caller-owned. Functions that fill a caller buffer have a companion that reports the
 *   size needed first (two-phase), and fail with SQKV_ERR_BUFFER_TOO_SMALL rather than write past it.
 * - Tensors are row-major [heads, tokens, head_dim] arrays of the stated dtype, host memory, in the
 *   machine's byte order (little-endian machines only in this version).
 */
#ifndef SQKV_H
#define SQKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQKV_FORMAT_VERSION_MAJOR 1
/* The newest format version this library reads and writes. Files that use no 1.1 feature are written
 * with version_minor 0 (spec/FORMAT.md §4.1), byte for byte as a 1.0 encoder would write them. */
#define SQKV_FORMAT_VERSION_MINOR 1
/* The library's own version: its minor number grows with each API addition (1.2.0: SQKV_ERR_MISALIGNED). */
#define SQKV_LIBRARY_VERSION_STRING "1.2.0"

/* ------------------------------------------------------------------------------------------------
 * Errors. Decoding errors name the spec rule that failed (spec/FORMAT.md uses the same names without
 * the SQKV_ERR_ prefix). Values are stable across library versions; new ones are only appended.
 * ---------------------------------------------------------------------------------------------- */
typedef enum sqkv_error {
    SQKV_OK = 0,
    /* caller and environment */
    SQKV_ERR_INVALID_ARGUMENT = 1,   /* a NULL pointer, an out-of-range option or coordinate */
    SQKV_ERR_OUT_OF_MEMORY = 2,      /* malloc failed */
    SQKV_ERR_IO = 3,                 /* read/write/open/rename/fsync failed; see errno in the detail */
    SQKV_ERR_BUFFER_TOO_SMALL = 4,   /* a caller buffer is smaller than the size function reported */
    SQKV_ERR_STATE = 5,              /* call out of order (e.g. writing before every layer was added) */
    SQKV_ERR_LIMIT = 6,              /* beyond a format maximum or a configured sqkv_limits value */
    SQKV_ERR_NONFINITE_INPUT = 7,    /* encoder input holds NaN or infinity */
    SQKV_ERR_RANGE_INPUT = 8,        /* encoder input rounds to infinity in the element type (fp16: |x| >= 65520) */
    SQKV_ERR_UNSUPPORTED = 9,        /* valid file, but the request cannot be expressed (e.g. Mustafar
                                        layout for a section split not on a 64-token boundary) */
    SQKV_ERR_ABORTED = 10,           /* a caller's callback returned nonzero and so stopped the work */
    SQKV_ERR_MISALIGNED = 11,        /* a device buffer's address is not a multiple of what the CUDA API
                                        requires (sqkv_cuda.h); the CPU API never returns it */
    /* file header */
    SQKV_ERR_TRUNCATED = 20,
    SQKV_ERR_BAD_MAGIC = 21,
    SQKV_ERR_UNSUPPORTED_VERSION = 22,
    SQKV_ERR_HEADER_SIZE = 23,
    SQKV_ERR_HEADER_CHECKSUM = 24,
    SQKV_ERR_UNSUPPORTED_FEATURE = 25,
    SQKV_ERR_RESERVED = 26,
    SQKV_ERR_HEADER_FIELD = 27,
    /* file structure */
    SQKV_ERR_BAD_TAIL = 30,
    SQKV_ERR_SECTION_LAYOUT = 31,
    SQKV_ERR_SECTION_HEADER_CHECKSUM = 32,
    SQKV_ERR_UNKNOWN_SECTION = 33,
    SQKV_ERR_UNSUPPORTED_CODEC = 34,
    SQKV_ERR_SECTION_FIELD = 35,
    SQKV_ERR_SECTION_RANGE = 36,
    SQKV_ERR_SIZE_MISMATCH = 37,
    SQKV_ERR_SECTION_CHECKSUM = 38,
    SQKV_ERR_PADDING = 39,
    SQKV_ERR_INDEX_MISMATCH = 40,
    SQKV_ERR_DUPLICATE_SECTION = 41,
    SQKV_ERR_COVERAGE = 42,
    /* section bodies */
    SQKV_ERR_BITMAP_PADDING = 50,
    SQKV_ERR_OFFSET_MISMATCH = 51,
    SQKV_ERR_PAYLOAD_PARAMS = 52,
    SQKV_ERR_SCALE = 53,
    SQKV_ERR_VALUE = 54,
    SQKV_ERR_TOKENS_COUNT = 55,
    SQKV_ERR_FINGERPRINT_SIZE = 56,
    SQKV_ERR_METADATA = 57,
    SQKV_ERR_COMPRESSED_STREAM = 58, /* a zstd stream is malformed or decodes to the wrong size */
    /* restore check */
    SQKV_ERR_NO_FINGERPRINT = 70,       /* caller expects a fingerprint, the file has none */
    SQKV_ERR_FINGERPRINT_MISMATCH = 71, /* the file belongs to another model */
    SQKV_ERR_GEOMETRY_MISMATCH = 72,    /* layers, heads or head_dim differ from the caller's model */
    SQKV_ERR_NO_TOKENS = 73             /* the file has no TOKENS section to compare the prompt with */
} sqkv_error;

/* Stable identifier such as "SQKV_ERR_OFFSET_MISMATCH"; "SQKV_ERR_UNKNOWN" for unknown values. */
const char *sqkv_error_name(sqkv_error err);
/* One English sentence describing the error class; never NULL. */
const char *sqkv_error_message(sqkv_error err);

/* ------------------------------------------------------------------------------------------------
 * Types shared by writer and reader
 * ---------------------------------------------------------------------------------------------- */
typedef enum sqkv_dtype {
    SQKV_DTYPE_FP16 = 1,
    SQKV_DTYPE_BF16 = 2,
    SQKV_DTYPE_FP32 = 3
} sqkv_dtype;

typedef enum sqkv_tensor { SQKV_TENSOR_K = 0, SQKV_TENSOR_V = 1 } sqkv_tensor;

typedef enum sqkv_quantizer {
    SQKV_QUANT_EXACT = 0,      /* payload_bits 16: kept values stored exactly */
    SQKV_QUANT_SYMMETRIC = 1,  /* levels (2c + 1 - 2^b) * s */
    SQKV_QUANT_ASYMMETRIC = 2  /* levels z + c * s (KIVI-style min/max on the kept values) */
} sqkv_quantizer;

typedef enum sqkv_scale_granularity {
    SQKV_SCALE_NONE = 0,       /* EXACT only */
    SQKV_SCALE_PER_HEAD = 1,   /* one parameter group per (layer, tensor, head, section) */
    SQKV_SCALE_PER_TILE = 2,   /* one per 64-element tile: keys per channel x 64 tokens,
                                  values per token x 64 channels */
    SQKV_SCALE_PER_HALF_TILE = 3 /* one per 32 elements of a tile (KIVI's groups): keys per channel x 32
                                    tokens, values per token x 32 channels; format 1.1 feature
                                    HALF_TILE_SCALES */
} sqkv_scale_granularity;

/* Required features of format 1.1 (spec/FORMAT.md §4.1): bits of the file header's required_features.
 * A file that uses none of them is a 1.0 file, byte for byte. */
#define SQKV_FEATURE_CODE_WIDTHS 0x1u      /* payload_bits 1, 3, 5, 6, 7 */
#define SQKV_FEATURE_HALF_TILE_SCALES 0x2u /* SQKV_SCALE_PER_HALF_TILE */
#define SQKV_FEATURE_ALL_KEPT 0x4u         /* SPARSE sections without bitmaps (SQKV_PRUNE_KEEP_ALL) */
#define SQKV_FEATURES_KNOWN 0x7u           /* every feature this library decodes */
/* SPARSE section header flag bit 0 (§7.6): every non-padding element kept, no bitmaps stored. */
#define SQKV_SECTION_FLAG_ALL_KEPT 0x1u

/* sqkv_writer_options.range_search bits (an encoder choice; the format is the same). */
#define SQKV_RANGE_SEARCH_VALUES 0x1u
#define SQKV_RANGE_SEARCH_KEYS 0x2u

/* The shape of a cache. value_dtype is the file's element type E (fp16 or bf16): 16-bit payloads,
 * scales and the dense window are stored in it. */
typedef struct sqkv_geometry {
    uint32_t n_layers;
    uint32_t n_kv_heads;
    uint32_t head_dim;
    uint32_t n_tokens;
    uint32_t dense_window;     /* newest tokens stored unpruned, <= n_tokens */
    sqkv_dtype value_dtype;    /* FP16 or BF16 */
    sqkv_dtype source_dtype;   /* informative: what the encoder was given (reader output only) */
    uint32_t required_features; /* reader output only: the file's SQKV_FEATURE_* bits; the writer
                                   ignores it and derives the bits from its options */
} sqkv_geometry;

/* Bytes needed for one dense [head_count, n_tokens, head_dim] tensor of dtype; 0 on overflow or a bad
 * dtype. */
uint64_t sqkv_dense_size(uint32_t head_count, uint32_t n_tokens, uint32_t head_dim, sqkv_dtype dtype);

/* ------------------------------------------------------------------------------------------------
 * Writer (encoder)
 *
 * Life cycle: sqkv_writer_create -> [set_tokens] [set_fingerprint] [add_metadata...] -> add_layer for
 * every layer (any order, each once) -> one of the output calls (they may be called repeatedly; the
 * same bytes are produced each time) -> sqkv_writer_destroy.
 * add_layer compresses immediately and keeps only the compressed sections, so the caller may free its
 * tensors after each call. Output is deterministic: the same inputs and options give the same bytes.
 * ---------------------------------------------------------------------------------------------- */
typedef enum sqkv_prune_mode {
    SQKV_PRUNE_NONE = 0,       /* keep every nonzero element (input already sparse, or sparsity 0) */
    SQKV_PRUNE_MAGNITUDE = 1,  /* per token and head keep the D - floor(sparsity*D) largest |x| */
    SQKV_PRUNE_KEEP_ALL = 2    /* keep every element, zeros included, and store no bitmaps (ALL_KEPT
                                  sections, format 1.1): quantization without pruning, as KIVI does;
                                  not with the EXACT quantizer (a DENSE window is the exact form) */
} sqkv_prune_mode;

typedef struct sqkv_writer_options {
    sqkv_prune_mode prune;
    double sparsity;                    /* in [0, 1), used with SQKV_PRUNE_MAGNITUDE */
    uint32_t payload_bits;              /* 1..8 or 16 (1, 3, 5, 6, 7: format 1.1 feature CODE_WIDTHS) */
    sqkv_quantizer quantizer;           /* EXACT iff payload_bits == 16 */
    sqkv_scale_granularity scales;      /* NONE iff payload_bits == 16 */
    uint32_t offset_interval_log2;      /* 0..20: one offset-table entry per 2^k tiles (ignored, and
                                           written as 0, with SQKV_PRUNE_KEEP_ALL: no table then) */
    uint32_t heads_per_section;         /* >= 1 */
    uint32_t tokens_per_section;        /* 0 = the whole sparse region; else a multiple of 64 */
    /* zstd layer (spec/FORMAT.md §5.1, codec 1): 0 = off; 1..22 = zstd level. Each stream of a section
     * (SPARSE: bitmaps, offsets, scales, payload; other kinds: the body) is compressed on its own and
     * kept compressed only when that makes it smaller; a section uses codec 1 only when its stored
     * body comes out smaller than without it. So it never makes a file larger. The INDEX is never
     * compressed. Same inputs, options and zstd build give the same bytes. */
    uint32_t zstd_level;
    /* Parameter choice for SYMMETRIC and ASYMMETRIC groups (spec/FORMAT.md §14), per tensor: 0 = the
     * group's extremes (the default); with SQKV_RANGE_SEARCH_VALUES and/or
     * SQKV_RANGE_SEARCH_KEYS set, range search for that tensor: try the extremes' range and 7 narrower
     * ones (down to 9/16 of it, about the centre) and keep the one with the least squared error over
     * the group's kept values. Clipping a few outliers gains resolution for every other value: at 4
     * bits without pruning, values' search lowers the attention error by about 1% (results/quality.md).
     * Keys' search lowers their squared error too but raises the attention error (a key's outliers
     * decide which tokens attention picks), so VALUES alone is the useful setting. Encoding is several
     * times slower (the CUDA encoder too: 32 GB/s against 670 GB/s without it, on general kernels);
     * decoders need nothing (the file holds the chosen parameters). */
    uint32_t range_search;
} sqkv_writer_options;

/* Defaults: magnitude pruning at 0.8, 2-bit ASYMMETRIC levels, PER_TILE scales, no range search (about
 * 1.94 bits per element: the lowest attention error per bit near 2 bits among the settings that both
 * the CPU writer and the CUDA encoder write and every 1.x decoder reads, results/quality.md; 3-bit
 * SYMMETRIC per tile is 6.5% better but format 1.1 and 17% slower to decode on the GPU:
 * spec/QUANTIZATION.md §2), k = 4, one
 * head per section, whole sparse region per section, zstd off (level 1 saves about a quarter of the file
 * for 4-33% of the decode speed: results/stream_bench.md). */
void sqkv_writer_options_default(sqkv_writer_options *opts);

typedef struct sqkv_writer sqkv_writer;

/* Validates geometry (value_dtype must be FP16 or BF16; source_dtype is ignored and taken from
 * add_layer) and options; on success *out is a new writer. On failure *out is NULL. */
sqkv_error sqkv_writer_create(const sqkv_geometry *geometry, const sqkv_writer_options *opts,
                              sqkv_writer **out);
void sqkv_writer_destroy(sqkv_writer *w);
/* Human-readable description of the writer's (sticky) error; "" when none. Never NULL. */
const char *sqkv_writer_error_detail(const sqkv_writer *w);

/* Prompt token ids; count must equal geometry.n_tokens. */
sqkv_error sqkv_writer_set_tokens(sqkv_writer *w, const int32_t *tokens, size_t count);
/* Model fingerprint, 1..4096 opaque bytes. */
sqkv_error sqkv_writer_set_fingerprint(sqkv_writer *w, const void *bytes, size_t size);
/* One UTF-8 key/value pair (key 1..255 bytes, value 0..65535 bytes, no NUL, valid UTF-8). Keys must be
 * unique; they are written sorted. */
sqkv_error sqkv_writer_add_metadata(sqkv_writer *w, const char *key, size_t key_size,
                                    const char *value, size_t value_size);
/* Compresses layer `layer`: k and v are [n_kv_heads, n_tokens, head_dim] arrays of `dtype` (FP16, BF16
 * or FP32). Values are converted to the element type (round to nearest even) before pruning.
 * Errors: NONFINITE_INPUT, RANGE_INPUT (does not fit the element type), STATE (layer added twice). */
sqkv_error sqkv_writer_add_layer(sqkv_writer *w, uint32_t layer, sqkv_dtype dtype, const void *k,
                                 const void *v);

/* Exact size of the file, available once every layer was added. */
sqkv_error sqkv_writer_file_size(sqkv_writer *w, uint64_t *size);
/* Writes the whole file into buf (capacity cap); *written = file size. */
sqkv_error sqkv_writer_write_buffer(sqkv_writer *w, void *buf, size_t cap, size_t *written);
/* Streams the file through write_fn (called with consecutive pieces; nonzero return aborts with
 * SQKV_ERR_IO). */
typedef int (*sqkv_write_fn)(void *ctx, const void *data, size_t size);
sqkv_error sqkv_writer_write_callback(sqkv_writer *w, sqkv_write_fn write_fn, void *ctx);
/* Writes the file to an open descriptor (handles short writes and EINTR; does not fsync or close). */
sqkv_error sqkv_writer_write_fd(sqkv_writer *w, int fd);
/* Crash-safe save: writes "<path>.tmp.<random>" in the same directory, fsyncs it, renames it over path
 * and fsyncs the directory. On any failure the temporary file is removed and an existing file at path
 * is untouched. */
sqkv_error sqkv_writer_save(sqkv_writer *w, const char *path);

/* Streaming output: the file leaves through write_fn while the layers are produced, so its first
 * bytes go out before the last layer exists (a prefill that finishes layer by layer).
 * - sqkv_writer_stream_begin: after the ancillary setters (set_tokens, set_fingerprint, add_metadata,
 *   which are refused from now on) and before any add_layer. Writes the file header and the TOKENS,
 *   FINGERPRINT and METADATA sections. source_dtype (FP16, BF16 or FP32) is recorded in the file
 *   header, so every add_layer must pass that dtype.
 * - Each sqkv_writer_add_layer then writes that layer's sections before it returns and keeps only
 *   their 40-byte index entries (no compressed data is retained beyond the layer being added).
 * - sqkv_writer_stream_finish: once every layer was added, writes the INDEX section, which ends the
 *   file with its tail. SQKV_ERR_STATE before that.
 * Layers may come in any order (the index records where each section went); in order 0..L-1 the
 * bytes are identical to write_buffer's for the same inputs and options. After begin, file_size and
 * the other output calls return SQKV_ERR_STATE. A nonzero return of write_fn is SQKV_ERR_IO, sticky:
 * what was written is then an incomplete file, which every reader refuses. */
sqkv_error sqkv_writer_stream_begin(sqkv_writer *w, sqkv_dtype source_dtype, sqkv_write_fn write_fn, void *ctx);
sqkv_error sqkv_writer_stream_finish(sqkv_writer *w);
/* Bytes handed to write_fn so far (0 before begin). */
sqkv_error sqkv_writer_stream_bytes(const sqkv_writer *w, uint64_t *bytes);

/* ------------------------------------------------------------------------------------------------
 * Reader (decoder)
 *
 * Life cycle: sqkv_reader_create -> open_memory, open_file, open_fd or open_callback -> queries and
 * decodes -> destroy.
 * Opening validates the file header, the tail, the index and the coverage rules (the whole structure
 * of the file, without reading section bodies). Each decode validates and checksums the sections it
 * reads before writing output; sqkv_reader_verify checks every section of the file.
 * Nothing the file says is trusted before it is checked against the spec and the limits.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sqkv_limits {
    uint64_t max_file_size;        /* bytes; default 2^40 */
    uint64_t max_section_size;     /* stored or decoded body bytes; default 2^34 */
    uint32_t max_sections;         /* default 2^20 */
    uint32_t max_layers;           /* default 1024 */
    uint32_t max_heads;            /* default 1024 */
    uint32_t max_head_dim;         /* default 1024 */
    uint32_t max_tokens;           /* default 2^28 */
    uint64_t max_memory;           /* bytes the reader itself may allocate; default 256 MiB */
} sqkv_limits;

void sqkv_limits_default(sqkv_limits *limits);

typedef struct sqkv_reader sqkv_reader;

/* Flags for sqkv_reader_create. */
#define SQKV_READER_TRUSTED 1u   /* skip body checksums (bytes already verified); structure is still
                                    validated. Never use on bytes from disk or network. */

/* limits may be NULL for the defaults. */
sqkv_error sqkv_reader_create(const sqkv_limits *limits, unsigned flags, sqkv_reader **out);
void sqkv_reader_destroy(sqkv_reader *r);
const char *sqkv_reader_error_detail(const sqkv_reader *r);

/* The reader borrows data: it must stay valid and unchanged until destroy. */
sqkv_error sqkv_reader_open_memory(sqkv_reader *r, const void *data, size_t size);
/* Maps the file read-only (mmap); unmapped by destroy. */
sqkv_error sqkv_reader_open_file(sqkv_reader *r, const char *path);

/* Random access without mapping the file: the reader asks for the bytes it needs. Opening reads the
 * file header, the last 16 bytes and the INDEX section (three reads); each decode then reads the
 * sections that hold the requested heads, one at a time, into one buffer that grows to the largest
 * section read and is counted against limits.max_memory (as are copies of the TOKENS, FINGERPRINT and
 * METADATA bodies, kept once read). Nothing else of the file is read.
 * read_at must fill buf with exactly `size` bytes from `offset` (always inside [0, file_size)) and
 * return 0, or return nonzero for a failure (SQKV_ERR_IO, sticky). ctx must stay valid until destroy,
 * and the bytes must not change meanwhile. */
typedef int (*sqkv_read_at_fn)(void *ctx, uint64_t offset, void *buf, size_t size);
sqkv_error sqkv_reader_open_callback(sqkv_reader *r, sqkv_read_at_fn read_at, void *ctx, uint64_t file_size);
/* The same through pread(2) on fd, a regular file open for reading; the reader borrows fd (the caller
 * closes it after sqkv_reader_destroy). */
sqkv_error sqkv_reader_open_fd(sqkv_reader *r, int fd);

sqkv_error sqkv_reader_geometry(const sqkv_reader *r, sqkv_geometry *out);
/* Format version of the file as written in its header. */
sqkv_error sqkv_reader_version(const sqkv_reader *r, uint32_t *major, uint32_t *minor);

typedef struct sqkv_section_info {
    uint64_t offset;           /* of the section header in the file */
    uint64_t stored_size;      /* body bytes as stored */
    uint16_t kind;             /* 0x0001 SPARSE, 0x0002 DENSE, 0x0003 INDEX, 0x8001 TOKENS,
                                  0x8002 FINGERPRINT, 0x8003 METADATA, others ancillary unknown */
    uint8_t tensor;
    uint32_t layer, head_start, head_count, token_start, token_count;
} sqkv_section_info;

/* Sections in file order, including the INDEX section as the last one. */
sqkv_error sqkv_reader_section_count(const sqkv_reader *r, size_t *count);
sqkv_error sqkv_reader_section_info(const sqkv_reader *r, size_t i, sqkv_section_info *out);

/* Checks every section: header and body checksums and every body rule. SQKV_OK only if the whole
 * file is sound; the detail names the first failing section. */
sqkv_error sqkv_reader_verify(sqkv_reader *r);

/* Token ids: *count is set to the number of ids (0 when the file has no TOKENS section); tokens may be
 * NULL to query the count; otherwise cap ids are available and count must fit. */
sqkv_error sqkv_reader_tokens(sqkv_reader *r, int32_t *tokens, size_t cap, size_t *count);
/* Fingerprint bytes, same two-phase pattern; *size = 0 when absent. */
sqkv_error sqkv_reader_fingerprint(sqkv_reader *r, void *buf, size_t cap, size_t *size);
/* Metadata entries: count, then each entry's key and value as pointers into the file's bytes, or into
 * the reader's decompressed copy when the section is zstd-compressed (not NUL-terminated; valid until
 * destroy either way). */
sqkv_error sqkv_reader_metadata_count(sqkv_reader *r, size_t *count);
sqkv_error sqkv_reader_metadata_entry(sqkv_reader *r, size_t i, const char **key, size_t *key_size,
                                      const char **value, size_t *value_size);

/* Decodes heads [head_start, head_start + head_count) of tensor `tensor` of layer `layer` (all
 * n_tokens tokens, sparse region and dense window) into out as [head_count, n_tokens, head_dim] of
 * dtype. out_size must be at least sqkv_dense_size(head_count, n_tokens, head_dim, dtype).
 * Reads only the sections that hold those heads. */
sqkv_error sqkv_reader_decode(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head_start,
                              uint32_t head_count, sqkv_dtype dtype, void *out, size_t out_size);

/* Mustafar's in-memory layout of the sparse region of one head (tokens [0, n_tokens - dense_window)):
 * bitmaps: n_tiles int64 (element i of a tile in bit 63 - i, tile order of spec/FORMAT.md §7.1);
 * accum_counts: n_tiles + 1 int32, exclusive prefix sum of ((nnz + 7) & ~7) / 2 (32-bit words);
 * values: fp16 (element type E bits), each tile's kept values then zeros up to a multiple of 8,
 *         value_count = 2 * accum_counts[n_tiles] entries, plus 8 zero entries of tail slack because
 *         Mustafar's kernel reads 16 bytes past a tile whose count is a multiple of 8.
 * Element type bf16 is returned as bf16 bits. Fails with SQKV_ERR_UNSUPPORTED when the sparse region is
 * split into sections at a token offset that is not a multiple of 64, or is empty. */
typedef struct sqkv_mustafar_sizes {
    uint64_t n_tiles;
    uint64_t value_count;      /* fp16 entries to allocate for values, slack included */
} sqkv_mustafar_sizes;
sqkv_error sqkv_reader_mustafar_sizes(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                                      sqkv_mustafar_sizes *sizes);
sqkv_error sqkv_reader_decode_mustafar(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                                       int64_t *bitmaps, int32_t *accum_counts, uint16_t *values,
                                       const sqkv_mustafar_sizes *sizes);

/* Restore check: may this cache be restored into the caller's model for this prompt?
 * - expected geometry (may be NULL): n_layers, n_kv_heads and head_dim must match
 *   (SQKV_ERR_GEOMETRY_MISMATCH).
 * - fingerprint (may be NULL/0): the file's FINGERPRINT must exist (SQKV_ERR_NO_FINGERPRINT) and be
 *   byte-identical (SQKV_ERR_FINGERPRINT_MISMATCH).
 * - prompt: the file's TOKENS must exist (SQKV_ERR_NO_TOKENS); *reusable_tokens is the length of the
 *   common prefix of the file's tokens and the prompt (0 is a valid answer: nothing reusable).
 * Returns SQKV_OK when the cache may be used for the first *reusable_tokens positions. */
sqkv_error sqkv_reader_check_restore(sqkv_reader *r, const sqkv_geometry *expected,
                                     const void *fingerprint, size_t fingerprint_size,
                                     const int32_t *prompt, size_t prompt_count,
                                     size_t *reusable_tokens);

/* ------------------------------------------------------------------------------------------------
 * Streaming decoder (the wire: spec/FORMAT.md §2)
 *
 * Life cycle: sqkv_stream_decoder_create -> sqkv_stream_decoder_push as bytes arrive (chunks of any
 * size, down to 1 byte) -> sqkv_stream_decoder_finish when the input ends -> destroy.
 * Each section is checked completely (header, sizes, checksums, body rules) as soon as its last byte
 * arrives and only then delivered; nothing unchecked reaches a callback. The decoder buffers one
 * section at a time, never the file: its memory (counted against limits.max_memory, LIMIT beyond) is
 * about the largest section (stored + decoded body + the section decoded to the output dtype) plus
 * small per-head tables (12 bytes per layer x tensor x head) and 48 bytes per section seen.
 * At the INDEX section it checks that the index describes exactly the sections that arrived (offsets,
 * sizes, coordinates: INDEX_MISMATCH otherwise) and the coverage rules, and the tail that ends it.
 * Errors are sticky; the detail names the section and its offset in the stream.
 * A file that was appended to (§9.1) cannot be decoded in one pass: the decoder delivers the cache as
 * first written (up to its first INDEX section), then fails with SQKV_ERR_UNSUPPORTED when a section
 * header follows that INDEX (SECTION_LAYOUT for other trailing bytes). Use a sqkv_reader for such files.
 * ---------------------------------------------------------------------------------------------- */
typedef struct sqkv_stream_decoder sqkv_stream_decoder;

/* One verified tensor section, decoded (valid only during the callback). */
typedef struct sqkv_stream_tensor {
    uint32_t layer;
    sqkv_tensor tensor;
    uint16_t kind;             /* 0x0001 SPARSE (sparse region) or 0x0002 DENSE (dense window) */
    uint32_t head_start, head_count;
    uint32_t token_start, token_count;
    sqkv_dtype dtype;          /* the output dtype given to create; 0 when decoding is off */
    const void *data;          /* head j's [token_count, head_dim] rows of dtype at data + j * head_stride;
                                  NULL when decoding is off */
    size_t size;               /* bytes from data to the end of the last head's rows */
    size_t head_stride;        /* bytes between heads: token_count * head_dim * dtype size, or the stride
                                  a destination function gave */
} sqkv_stream_tensor;

/* Every callback may be NULL. A nonzero return stops the decoder with SQKV_ERR_ABORTED (sticky). */
typedef struct sqkv_stream_callbacks {
    void *ctx;
    /* The file header was checked: the geometry of the cache (n_tokens and dense_window as written). */
    int (*on_header)(void *ctx, const sqkv_geometry *geometry);
    /* A TOKENS (0x8001: n_tokens little-endian int32 ids), FINGERPRINT (0x8002) or METADATA (0x8003,
     * spec §10.3, already checked) body. Encoders write these first, so a receiver can refuse the cache
     * (return nonzero) before the bulk arrives. Unknown ancillary kinds are checked and skipped. */
    int (*on_ancillary)(void *ctx, uint16_t kind, const void *body, size_t size);
    /* A SPARSE or DENSE section, decoded. */
    int (*on_tensor)(void *ctx, const sqkv_stream_tensor *section);
    /* Every section of this layer (K and V, every head, every token) arrived, was verified and was
     * delivered, and together they cover the layer exactly (§6). Called once per layer. */
    int (*on_layer_complete)(void *ctx, uint32_t layer);
} sqkv_stream_callbacks;

/* What arrived, as finish reports it. */
typedef struct sqkv_stream_status {
    uint64_t bytes_received;    /* bytes pushed */
    uint64_t bytes_verified;    /* the file header and every complete, verified section: a prefix */
    int header_received;        /* the file header arrived and was checked; geometry is valid */
    sqkv_geometry geometry;
    uint64_t sections_verified; /* sections (any kind, the INDEX included) that passed every check */
    uint32_t layers_complete;   /* layers for which on_layer_complete was called */
    int index_received;         /* the INDEX arrived, was verified and agrees with the sections seen */
    int complete;               /* the INDEX and its tail verified and the stream ended right there */
} sqkv_stream_status;

/* Optional, for receivers that hold the whole cache: where to decode a verified tensor section
 * (section->data is NULL during this call; ctx is the callbacks' ctx). Return the address of head
 * head_start's first row for tokens [token_start, token_start + token_count) and set *head_stride to the
 * bytes between heads (at least token_count * head_dim * dtype size), or return NULL to use the
 * decoder's own buffer. The decoder writes head_count heads there, then calls on_tensor with data at that
 * address. This saves a copy of every decoded value: to decode straight into a [heads, n_tokens,
 * head_dim] tensor, return base + (head_start * n_tokens + token_start) * head_dim * size and set the
 * stride to n_tokens * head_dim * size. A stride shorter than a head's rows is INVALID_ARGUMENT. */
typedef void *(*sqkv_stream_destination_fn)(void *ctx, const sqkv_stream_tensor *section, size_t *head_stride);

/* limits may be NULL (defaults). flags: 0 or SQKV_READER_TRUSTED (skip body checksums). output_dtype:
 * FP16, BF16 or FP32 for decoded sections, or 0 to check sections without decoding them (on_tensor
 * then gets data NULL). callbacks may be NULL. */
sqkv_error sqkv_stream_decoder_create(const sqkv_limits *limits, unsigned flags, sqkv_dtype output_dtype,
                                      const sqkv_stream_callbacks *callbacks, sqkv_stream_decoder **out);
void sqkv_stream_decoder_destroy(sqkv_stream_decoder *d);
const char *sqkv_stream_decoder_error_detail(const sqkv_stream_decoder *d);
/* Sets (or with NULL clears) the destination function; call it before the bytes it should apply to. */
sqkv_error sqkv_stream_decoder_set_destination(sqkv_stream_decoder *d, sqkv_stream_destination_fn destination);
/* Consumes size bytes (data may be NULL when size is 0). Callbacks run inside this call. */
sqkv_error sqkv_stream_decoder_push(sqkv_stream_decoder *d, const void *data, size_t size);
/* The input ended. SQKV_OK only when the whole file arrived and verified (status->complete); the
 * sticky error when one occurred; SQKV_ERR_TRUNCATED when the stream stopped early, with a detail that
 * says where (inside which section) and what is missing. status (may be NULL) is filled in every
 * case. Later pushes return SQKV_ERR_STATE. */
sqkv_error sqkv_stream_decoder_finish(sqkv_stream_decoder *d, sqkv_stream_status *status);
/* At any time (also after an error): whether layer `layer` was completed, and for one head how many
 * of its tokens were delivered in verified sections and whether they are all of them. INVALID_ARGUMENT
 * before the header arrived or outside the geometry. */
sqkv_error sqkv_stream_decoder_layer_complete(const sqkv_stream_decoder *d, uint32_t layer, int *complete);
sqkv_error sqkv_stream_decoder_head_tokens(const sqkv_stream_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                           uint32_t head, uint32_t *tokens_delivered, int *complete);

/* ------------------------------------------------------------------------------------------------
 * Appending (spec/FORMAT.md §9.1) and recovery
 *
 * These work on a file path and report failures as an error code plus an optional sentence in
 * detail[0..detail_size) (NUL-terminated; may be NULL / 0).
 * ---------------------------------------------------------------------------------------------- */

/* Grows the cache in the file at path by new_tokens positions, never modifying a byte already there:
 * writes new sections and a new INDEX section after the current end (§9.1), then fsyncs.
 * - expected: the shape of the caller's k and v (n_layers, n_kv_heads, head_dim; other fields ignored).
 *   It must equal the file's (GEOMETRY_MISMATCH otherwise; NULL is INVALID_ARGUMENT): the file decides
 *   how much of k and v is read, so a file other than the one the caller has in mind must not make
 *   the appender read past the caller's arrays.
 * - k[l] and v[l] (l < n_layers) are [n_kv_heads, new_tokens, head_dim] arrays of dtype (FP16, BF16 or
 *   FP32), converted to the file's element type like add_layer's input.
 * - token_ids: new_tokens ids when the file has a TOKENS section (a new TOKENS section replaces it),
 *   NULL when it has none; anything else is INVALID_ARGUMENT.
 * - The dense window keeps its length: tokens that leave it are pruned and compressed with opts (its
 *   pruning, payload, quantizer, scales, offset interval, tokens_per_section and zstd_level; use the
 *   options the file was written with) from the exact stored window values, into new SPARSE sections;
 *   the new window goes into new DENSE sections; the old DENSE sections, the old TOKENS section and
 *   the old INDEX section become superseded. New sections keep the file's head grouping
 *   (opts.heads_per_section is ignored; UNSUPPORTED when the file's grouping is not one size for all
 *   heads, as the reference encoder writes it).
 * - Crash safety: the new sections are written and fsynced first, then the INDEX section with its tail,
 *   fsynced again. A crash at any moment leaves the old file as a prefix, which sqkv_recover restores.
 *   On a failure the file is truncated back to its old size (best effort).
 * - The file must end with a valid tail and structure: a file left by an interrupted append is refused
 *   (with the reader's error, BAD_TAIL or TRUNCATED typically); run sqkv_recover first. Before anything
 *   is written, the sections of the last append (those after the previous INDEX section) are verified,
 *   and the DENSE and TOKENS sections it reads are checked like any section a reader reads. An exclusive
 *   flock(2) keeps two appenders (and sqkv_recover) apart: IO when the file is locked.
 * limits (may be NULL) bound what is read; the caller's own memory for k/v is not counted. */
sqkv_error sqkv_append(const char *path, const sqkv_geometry *expected, const sqkv_writer_options *opts,
                       const sqkv_limits *limits,
                       uint32_t new_tokens, const int32_t *token_ids, sqkv_dtype dtype, const void *const *k,
                       const void *const *v, char *detail, size_t detail_size);

/* Read-only: the length of the longest prefix of the file that is a complete, valid SQKV file (it ends
 * with an INDEX section and its tail, opens, and every section verifies: spec §9.1 "Crash safety").
 * *file_size is the current size; *valid_size == *file_size when the file is sound. When no prefix is
 * valid, returns the error of opening the whole file (and *valid_size = 0). */
sqkv_error sqkv_find_valid_prefix(const char *path, const sqkv_limits *limits, uint64_t *file_size,
                                  uint64_t *valid_size, char *detail, size_t detail_size);
/* sqkv_find_valid_prefix, then truncates the file to that prefix and fsyncs (nothing is written when
 * the file is already sound: *old_size == *new_size). When no prefix is valid the file is left as it is
 * and the error is returned. */
sqkv_error sqkv_recover(const char *path, const sqkv_limits *limits, uint64_t *old_size, uint64_t *new_size,
                        char *detail, size_t detail_size);

#ifdef __cplusplus
}
#endif

#endif /* SQKV_H */
