/*
 * bench_codec.h: the measurements of sqkv_bench on one cache: SQKV encode, decode (fp16, fp32,
 * trusted), verify and Mustafar export, and the memcpy and zstd baselines on the same bytes.
 */
#ifndef SQKV_TOOLS_BENCH_CODEC_H
#define SQKV_TOOLS_BENCH_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "size_breakdown.h"
#include "sqkv.h"

/* One cache: fp16 bits, [layers][heads][tokens][head_dim] for K and for V. */
typedef struct bench_cache {
    const char *name;
    uint32_t n_layers, n_kv_heads, head_dim, n_tokens;
    const uint16_t *k, *v;
    const int32_t *tokens; /* n_tokens ids, or NULL */
} bench_cache;

/* Bytes of the dense fp16 K and V together. */
uint64_t bench_cache_bytes(const bench_cache *c);

/* Seconds summed over every timed run so far: wall clock, and CPU time of the timing thread (the
 * times reported are medians of the CPU time). */
void bench_clock_totals(double *wall, double *cpu);

/* Median seconds (CPU time of the one thread doing the work) of each operation over the runs. */
typedef struct codec_result {
    uint64_t file_size;
    size_breakdown breakdown;
    uint64_t sparse_dense_bytes; /* fp16 bytes of the sparse region (what Mustafar export covers) */
    double encode_s;             /* writer create .. write_buffer into a ready buffer */
    double decode_fp16_s;        /* open + decode of every (layer, tensor), checksums verified */
    double decode_fp16_trusted_s;/* the same with SQKV_READER_TRUSTED (no body checksums) */
    double decode_fp32_s;        /* open + decode to fp32, checksums verified */
    double verify_s;             /* open + sqkv_reader_verify */
    double mustafar_s;           /* open + Mustafar layout export of every (layer, tensor, head) */
} codec_result;

/* Runs every SQKV operation `runs` times. On failure returns the error and writes a sentence to msg. */
sqkv_error bench_codec(const bench_cache *c, const sqkv_writer_options *opts, uint32_t dense_window,
                       int runs, codec_result *out, char *msg, size_t msg_cap);

typedef struct baseline_result {
    double memcpy_s;
    double zstd_compress_s, zstd_decompress_s;
    uint64_t zstd_size;
} baseline_result;

/* memcpy of the dense bytes, and zstd at `level` on the raw fp16 bytes (one frame per tensor). */
int bench_baselines(const bench_cache *c, int level, int runs, baseline_result *out, char *msg,
                    size_t msg_cap);

#endif
