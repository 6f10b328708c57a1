/*
 * encode_streams.h: codec 1 on the encoder side (spec/FORMAT.md §5.1): a finished section is cut into
 * its streams, each stream compressed with zstd on its own, and the section rewritten with codec 1 only
 * when that makes it smaller.
 */
#ifndef SQKV_ENCODE_STREAMS_H
#define SQKV_ENCODE_STREAMS_H

#include <stdint.h>

#include "section_blob.h"
#include "sqkv.h"

/* Highest zstd level the writer accepts (ZSTD_maxCLevel() of the zstd versions we build with). */
#define SQKV_ZSTD_MAX_LEVEL 22u

/* Per-stream outcome of one section, for benchmarks: the decoded length of each stream and what it
 * occupies in the stored body (padded), whichever form was kept. */
typedef struct sqkv_stream_sizes {
    uint32_t count;                 /* 4 for SPARSE, else 1 */
    uint64_t decoded[4];            /* decoded length of each stream (its padding included) */
    uint64_t compressed[4];         /* padded zstd frame length, whether kept or not */
    uint8_t kept_zstd[4];           /* 1 when the stream is stored compressed */
    int codec1;                     /* 1 when the section was rewritten with codec 1 */
} sqkv_stream_sizes;

/* b is a sealed codec-0 section (not INDEX) of a file with this head_dim. Compresses each stream at
 * `level` (1..SQKV_ZSTD_MAX_LEVEL) with the reusable ZSTD_CCtx *cctx (created on first use, freed by
 * the caller with ZSTD_freeCCtx). A stream stays compressed only when its padded frame is shorter than
 * its padded length; the section becomes codec 1 only when the stored body (stream table included) is
 * shorter than align8(decoded_size). Otherwise b is left untouched. sizes may be NULL.
 * Errors: OUT_OF_MEMORY, LIMIT (a stream too large for this platform). On error b is unchanged. */
sqkv_error sqkv_blob_compress_streams(sqkv_section_blob *b, uint32_t head_dim, uint32_t level, void **cctx,
                                      sqkv_stream_sizes *sizes);

#endif
