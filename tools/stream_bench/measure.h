/*
 * measure.h: the measurements of sqkv_stream_bench: file sizes per stream with and without the zstd
 * layer, encode / whole-buffer decode / streaming decode throughput, and the bytes a one-layer random
 * access reads.
 */
#ifndef SQKV_STREAM_BENCH_MEASURE_H
#define SQKV_STREAM_BENCH_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include "sqkv.h"

/* A cache in memory: per layer K and V, [heads, tokens, head_dim] fp16 bits. */
typedef struct sb_cache {
    const char *name;
    uint32_t n_layers, n_kv_heads, head_dim, n_tokens, dense_window;
    const uint16_t *k, *v; /* [layers][heads][tokens][head_dim] */
    const int32_t *tokens; /* may be NULL */
} sb_cache;

/* Stream categories of the per-stream table. */
enum { SB_BITMAPS, SB_OFFSETS, SB_SCALES, SB_PAYLOAD, SB_DENSE, SB_TOKENS, SB_OTHER, SB_INDEX, SB_KINDS };
extern const char *const sb_kind_names[SB_KINDS];

typedef struct sb_streams {
    uint64_t raw[SB_KINDS];      /* decoded bytes (codec 0) */
    uint64_t zstd[SB_KINDS];     /* each stream compressed on its own, padded */
    uint64_t stored[SB_KINDS];   /* as the writer's rule stores it (stream tables counted with payload) */
} sb_streams;

/* Encodes c with opts (zstd_level as given) into a new buffer (*file, *size); *seconds: the median
 * wall time of `reps` encodes. Returns 0 or prints why and returns -1. */
int sb_encode(const sb_cache *c, const sqkv_writer_options *opts, int reps, uint8_t **file, size_t *size,
              double *seconds);
/* Per-stream sizes of a codec-0 file at `level`. */
int sb_streams_at(const uint8_t *file, size_t size, uint32_t level, sb_streams *out);
/* Whole-buffer decode of every layer and tensor to fp16 into out (the full cache); median seconds. */
int sb_decode_whole(const uint8_t *file, size_t size, uint16_t *out, int reps, double *seconds);
/* The same through the streaming decoder, pushing `chunk` bytes at a time; decoding straight into out
 * (the destination callback), or with copy set, into the decoder's buffer and copied from on_tensor. */
int sb_decode_stream(const uint8_t *file, size_t size, size_t chunk, int copy, uint16_t *out, int reps,
                     double *seconds);
/* Bytes read through a read_at callback to open the file and decode layer `layer` (K and V); index_size
 * is the INDEX section's size. */
int sb_random_access(const uint8_t *file, size_t size, uint32_t layer, uint64_t *bytes_read, uint64_t *index_size);

#endif
