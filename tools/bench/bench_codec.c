/* bench_codec.c: see bench_codec.h. */
#include "bench_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "tile_layout.h"
#include "tools/common/util.h"

#include <time.h>

#define MAX_RUNS 101

static double wall_total, cpu_total;

/* One timed run: thread CPU time is what is reported (the machine may be shared, and a single-threaded
 * run that waits for a core is not slower code); wall time is summed to show how much waiting there was. */
typedef struct bench_clock {
    double wall, cpu;
} bench_clock;

static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bench_clock bench_clock_start(void) { return (bench_clock){sqkv_now(), thread_seconds()}; }

static double bench_clock_stop(const bench_clock *c) {
    const double cpu = thread_seconds() - c->cpu;
    wall_total += sqkv_now() - c->wall;
    cpu_total += cpu;
    return cpu;
}

void bench_clock_totals(double *wall, double *cpu) {
    *wall = wall_total;
    *cpu = cpu_total;
}

uint64_t bench_cache_bytes(const bench_cache *c) {
    return 2u * sqkv_dense_size(c->n_layers * c->n_kv_heads, c->n_tokens, c->head_dim, SQKV_DTYPE_FP16);
}

static uint64_t layer_elements(const bench_cache *c) {
    return (uint64_t)c->n_kv_heads * c->n_tokens * c->head_dim;
}

/* Encodes the whole cache; into buf when buf is not NULL (cap bytes), else only sizes it. */
static sqkv_error encode(const bench_cache *c, const sqkv_writer_options *opts, uint32_t dense_window,
                         void *buf, size_t cap, uint64_t *file_size, char *msg, size_t msg_cap) {
    const sqkv_geometry g = {c->n_layers, c->n_kv_heads, c->head_dim, c->n_tokens, dense_window,
                             SQKV_DTYPE_FP16, SQKV_DTYPE_FP16, 0};
    sqkv_writer *w = NULL;
    sqkv_error err = sqkv_writer_create(&g, opts, &w);
    if (err == SQKV_OK && c->tokens) err = sqkv_writer_set_tokens(w, c->tokens, c->n_tokens);
    for (uint32_t l = 0; err == SQKV_OK && l < c->n_layers; l++)
        err = sqkv_writer_add_layer(w, l, SQKV_DTYPE_FP16, c->k + l * layer_elements(c),
                                    c->v + l * layer_elements(c));
    if (err == SQKV_OK) err = sqkv_writer_file_size(w, file_size);
    size_t written = 0;
    if (err == SQKV_OK && buf) err = sqkv_writer_write_buffer(w, buf, cap, &written);
    if (err != SQKV_OK)
        snprintf(msg, msg_cap, "encode: %s (%s)", sqkv_error_name(err), w ? sqkv_writer_error_detail(w) : "");
    sqkv_writer_destroy(w);
    return err;
}

static sqkv_error open_reader(const void *file, size_t size, unsigned flags, sqkv_reader **r) {
    sqkv_error err = sqkv_reader_create(NULL, flags, r);
    if (err == SQKV_OK) err = sqkv_reader_open_memory(*r, file, size);
    return err;
}

/* Decodes every (layer, tensor) into out, [tensor][layer][heads][tokens][dim] of dtype. */
static sqkv_error decode_all(const bench_cache *c, const void *file, size_t size, unsigned flags,
                             sqkv_dtype dtype, uint8_t *out, char *msg, size_t msg_cap) {
    sqkv_reader *r = NULL;
    sqkv_error err = open_reader(file, size, flags, &r);
    const uint64_t per = sqkv_dense_size(c->n_kv_heads, c->n_tokens, c->head_dim, dtype);
    for (uint32_t t = 0; err == SQKV_OK && t < 2; t++)
        for (uint32_t l = 0; err == SQKV_OK && l < c->n_layers; l++)
            err = sqkv_reader_decode(r, l, (sqkv_tensor)t, 0, c->n_kv_heads, dtype,
                                     out + ((uint64_t)t * c->n_layers + l) * per, per);
    if (err != SQKV_OK)
        snprintf(msg, msg_cap, "decode: %s (%s)", sqkv_error_name(err), r ? sqkv_reader_error_detail(r) : "");
    sqkv_reader_destroy(r);
    return err;
}

static sqkv_error verify_all(const void *file, size_t size, char *msg, size_t msg_cap) {
    sqkv_reader *r = NULL;
    sqkv_error err = open_reader(file, size, 0, &r);
    if (err == SQKV_OK) err = sqkv_reader_verify(r);
    if (err != SQKV_OK)
        snprintf(msg, msg_cap, "verify: %s (%s)", sqkv_error_name(err), r ? sqkv_reader_error_detail(r) : "");
    sqkv_reader_destroy(r);
    return err;
}

typedef struct mustafar_buffers {
    int64_t *bitmaps;
    int32_t *counts;
    uint16_t *values;
    uint64_t max_tiles, max_values;
} mustafar_buffers;

/* Exports every (layer, tensor, head); with sizing_only, only grows the buffer requirements. */
static sqkv_error export_all(const bench_cache *c, const void *file, size_t size, mustafar_buffers *b,
                             int sizing_only, char *msg, size_t msg_cap) {
    sqkv_reader *r = NULL;
    sqkv_error err = open_reader(file, size, 0, &r);
    for (uint32_t t = 0; err == SQKV_OK && t < 2; t++)
        for (uint32_t l = 0; err == SQKV_OK && l < c->n_layers; l++)
            for (uint32_t h = 0; err == SQKV_OK && h < c->n_kv_heads; h++) {
                sqkv_mustafar_sizes s;
                err = sqkv_reader_mustafar_sizes(r, l, (sqkv_tensor)t, h, &s);
                if (err != SQKV_OK) break;
                if (sizing_only) {
                    if (s.n_tiles > b->max_tiles) b->max_tiles = s.n_tiles;
                    if (s.value_count > b->max_values) b->max_values = s.value_count;
                } else {
                    err = sqkv_reader_decode_mustafar(r, l, (sqkv_tensor)t, h, b->bitmaps, b->counts,
                                                      b->values, &s);
                }
            }
    if (err != SQKV_OK)
        snprintf(msg, msg_cap, "mustafar export: %s (%s)", sqkv_error_name(err),
                 r ? sqkv_reader_error_detail(r) : "");
    sqkv_reader_destroy(r);
    return err;
}

sqkv_error bench_codec(const bench_cache *c, const sqkv_writer_options *opts, uint32_t dense_window,
                       int runs, codec_result *out, char *msg, size_t msg_cap) {
    memset(out, 0, sizeof *out);
    if (runs < 1 || runs > MAX_RUNS) runs = runs < 1 ? 1 : MAX_RUNS;
    uint64_t size = 0;
    sqkv_error err = encode(c, opts, dense_window, NULL, 0, &size, msg, msg_cap);
    if (err != SQKV_OK) return err;
    const uint64_t dense = bench_cache_bytes(c);
    uint8_t *file = malloc(size);
    uint8_t *decoded = malloc(2 * dense); /* room for fp32 output */
    mustafar_buffers mb = {0};
    if (!file || !decoded) {
        snprintf(msg, msg_cap, "out of memory");
        err = SQKV_ERR_OUT_OF_MEMORY;
        goto done;
    }
    memset(file, 0, size); /* fault the pages in before timing */
    memset(decoded, 0, 2 * dense);
    double samples[MAX_RUNS];

    for (int i = 0; i < runs && err == SQKV_OK; i++) {
        bench_clock t0 = bench_clock_start();
        err = encode(c, opts, dense_window, file, size, &out->file_size, msg, msg_cap);
        samples[i] = bench_clock_stop(&t0);
    }
    if (err != SQKV_OK) goto done;
    out->encode_s = sqkv_median(samples, (size_t)runs);

    sqkv_reader *r = NULL;
    err = open_reader(file, size, 0, &r);
    if (err == SQKV_OK) err = size_breakdown_compute(r, file, size, &out->breakdown);
    sqkv_reader_destroy(r);
    if (err != SQKV_OK) {
        snprintf(msg, msg_cap, "size breakdown: %s", sqkv_error_name(err));
        goto done;
    }

    const struct {
        unsigned flags;
        sqkv_dtype dtype;
        double *result;
    } decodes[] = {{0, SQKV_DTYPE_FP16, &out->decode_fp16_s},
                   {SQKV_READER_TRUSTED, SQKV_DTYPE_FP16, &out->decode_fp16_trusted_s},
                   {0, SQKV_DTYPE_FP32, &out->decode_fp32_s}};
    for (size_t d = 0; d < sizeof decodes / sizeof decodes[0] && err == SQKV_OK; d++) {
        for (int i = 0; i < runs && err == SQKV_OK; i++) {
            bench_clock t0 = bench_clock_start();
            err = decode_all(c, file, size, decodes[d].flags, decodes[d].dtype, decoded, msg, msg_cap);
            samples[i] = bench_clock_stop(&t0);
        }
        if (err == SQKV_OK) *decodes[d].result = sqkv_median(samples, (size_t)runs);
    }
    for (int i = 0; i < runs && err == SQKV_OK; i++) {
        bench_clock t0 = bench_clock_start();
        err = verify_all(file, size, msg, msg_cap);
        samples[i] = bench_clock_stop(&t0);
    }
    if (err != SQKV_OK) goto done;
    out->verify_s = sqkv_median(samples, (size_t)runs);

    const uint32_t sparse_tokens = c->n_tokens - dense_window;
    out->sparse_dense_bytes =
        2u * sqkv_dense_size(c->n_layers * c->n_kv_heads, sparse_tokens, c->head_dim, SQKV_DTYPE_FP16);
    if (sparse_tokens == 0) goto done;
    err = export_all(c, file, size, &mb, 1, msg, msg_cap);
    if (err != SQKV_OK) goto done;
    mb.bitmaps = calloc(mb.max_tiles, sizeof *mb.bitmaps);
    mb.counts = calloc(mb.max_tiles + 1, sizeof *mb.counts);
    mb.values = calloc(mb.max_values, sizeof *mb.values);
    if (!mb.bitmaps || !mb.counts || !mb.values) {
        snprintf(msg, msg_cap, "out of memory");
        err = SQKV_ERR_OUT_OF_MEMORY;
        goto done;
    }
    for (int i = 0; i < runs && err == SQKV_OK; i++) {
        bench_clock t0 = bench_clock_start();
        err = export_all(c, file, size, &mb, 0, msg, msg_cap);
        samples[i] = bench_clock_stop(&t0);
    }
    if (err == SQKV_OK) out->mustafar_s = sqkv_median(samples, (size_t)runs);
done:
    free(mb.bitmaps);
    free(mb.counts);
    free(mb.values);
    free(decoded);
    free(file);
    return err;
}

int bench_baselines(const bench_cache *c, int level, int runs, baseline_result *out, char *msg,
                    size_t msg_cap) {
    memset(out, 0, sizeof *out);
    if (runs < 1 || runs > MAX_RUNS) runs = runs < 1 ? 1 : MAX_RUNS;
    const size_t tensor = (size_t)(bench_cache_bytes(c) / 2);
    const uint16_t *src[2] = {c->k, c->v};
    const size_t bound = ZSTD_compressBound(tensor);
    uint8_t *copy = malloc(2 * tensor);
    uint8_t *packed = malloc(2 * bound);
    int rc = -1;
    if (!copy || !packed) {
        snprintf(msg, msg_cap, "out of memory");
        goto done;
    }
    memset(copy, 0, 2 * tensor);
    memset(packed, 0, 2 * bound);
    double samples[MAX_RUNS];
    for (int i = 0; i < runs; i++) {
        bench_clock t0 = bench_clock_start();
        for (int t = 0; t < 2; t++) memcpy(copy + t * tensor, src[t], tensor);
        samples[i] = bench_clock_stop(&t0);
    }
    out->memcpy_s = sqkv_median(samples, (size_t)runs);

    size_t packed_size[2] = {0, 0};
    for (int i = 0; i < runs; i++) {
        bench_clock t0 = bench_clock_start();
        for (int t = 0; t < 2; t++) {
            packed_size[t] = ZSTD_compress(packed + t * bound, bound, src[t], tensor, level);
            if (ZSTD_isError(packed_size[t])) {
                snprintf(msg, msg_cap, "zstd compress: %s", ZSTD_getErrorName(packed_size[t]));
                goto done;
            }
        }
        samples[i] = bench_clock_stop(&t0);
    }
    out->zstd_compress_s = sqkv_median(samples, (size_t)runs);
    out->zstd_size = packed_size[0] + packed_size[1];
    for (int i = 0; i < runs; i++) {
        bench_clock t0 = bench_clock_start();
        for (int t = 0; t < 2; t++) {
            const size_t n = ZSTD_decompress(copy + t * tensor, tensor, packed + t * bound, packed_size[t]);
            if (ZSTD_isError(n) || n != tensor) {
                snprintf(msg, msg_cap, "zstd decompress failed");
                goto done;
            }
        }
        samples[i] = bench_clock_stop(&t0);
    }
    out->zstd_decompress_s = sqkv_median(samples, (size_t)runs);
    if (memcmp(copy, c->k, tensor) || memcmp(copy + tensor, c->v, tensor)) {
        snprintf(msg, msg_cap, "zstd round trip differs from the input");
        goto done;
    }
    rc = 0;
done:
    free(copy);
    free(packed);
    return rc;
}
