/* cmd_bench.c: `sqkv bench [FILE]`: encode/decode throughput and size of SQKV against memcpy and zstd,
 * in the same run, on one cache held in memory (like `zstd -b`). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mmap, fsync, isatty, ... */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "tools/common/half.h"
#include "tools/common/strbuf.h"
#include "tools/common/synthetic.h"
#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/dense_input.h"
#include "tools/sqkv/encode_options.h"
#include "tools/sqkv/progress.h"
#include "tools/sqkv/cli_sqkv.h"

static const char help[] =
    "Usage: sqkv bench [options] [FILE]\n"
    "\n"
    "Measures SQKV's encode and decode throughput and size on one KV cache held in memory, with two\n"
    "baselines in the same run: memcpy, and zstd level 3 (ZSTD_compress / ZSTD_decompress on the raw\n"
    "16-bit bytes). Each measurement is repeated --runs times and the median is reported. Throughput\n"
    "is in MB/s (10^6 bytes) of the cache's 16-bit size, for every method.\n"
    "\n"
    "FILE is an .sqkv file (decoded to dense, then re-encoded with the file's options: bits, quantizer,\n"
    "scales, offset interval, section split, dense window, element type, and a sparsity that keeps as\n"
    "many elements per token as the file), or a dense cache in any form `sqkv encode` reads (fp32 input\n"
    "is rounded to fp16 first). Without FILE: the synthetic cache of `sqkv demo` (see its --help).\n"
    "SQKV encode = writer create + add every layer + write the file to memory; decode = reader open\n"
    "(structure checks) + decode every layer's K and V (checksums and body checks included).\n"
    "\n"
    "Options:\n"
    "  -r, --runs N               repetitions per measurement (default 5)\n"
    "      --json                 print one JSON object instead of the table\n"
    "      --layers N, --heads N, --head-dim N, --tokens N, --seed S, --heavy-tailed\n"
    "                             the synthetic cache (as in `sqkv demo`), when no FILE is given\n"
    "\n";

enum { OPT_RUNS = 1, OPT_JSON, OPT_LAYERS, OPT_HEADS, OPT_HEAD_DIM, OPT_TOKENS, OPT_SEED, OPT_HEAVY };

typedef struct bench_row {
    char name[64];
    uint64_t size;
    double encode_s, decode_s;
} bench_row;

typedef struct bench_job {
    encode_settings enc;
    sqkv_synth_config cfg;
    uint32_t runs;
    char source[512];
    sqkv_geometry g;            /* value_dtype = the 16-bit type of `cache` */
    uint16_t *cache;            /* [layer][K, V][heads, tokens, head_dim], 16-bit element type */
    int32_t *tokens;
    size_t tensor_elems;
    bench_row rows[3];
} bench_job;

static uint64_t cache_bytes(const bench_job *j) { return 4ull * j->tensor_elems * j->g.n_layers; }
static uint16_t *layer_k(const bench_job *j, uint32_t l) { return j->cache + 2 * (size_t)l * j->tensor_elems; }
static uint16_t *layer_v(const bench_job *j, uint32_t l) { return layer_k(j, l) + j->tensor_elems; }

static int alloc_cache(bench_job *j) {
    j->tensor_elems = (size_t)j->g.n_kv_heads * j->g.n_tokens * j->g.head_dim;
    j->cache = malloc(cache_bytes(j));
    if (j->cache == NULL) {
        cli_error("bench: out of memory for a %llu-byte cache", (unsigned long long)cache_bytes(j));
        return EXIT_IO;
    }
    return EXIT_OK;
}

static int load_synthetic(bench_job *j) {
    j->g.n_layers = j->cfg.n_layers;
    j->g.n_kv_heads = j->cfg.n_kv_heads;
    j->g.head_dim = j->cfg.head_dim;
    j->g.n_tokens = j->cfg.n_tokens;
    j->g.value_dtype = SQKV_DTYPE_FP16;
    snprintf(j->source, sizeof j->source, "synthetic cache (seed %llu%s)", (unsigned long long)j->cfg.seed,
             j->cfg.heavy_tailed_values ? ", Student-t values" : "");
    if (alloc_cache(j)) return EXIT_IO;
    sqkv_synth *s = sqkv_synth_create(&j->cfg);
    if (s == NULL) {
        cli_error("bench: out of memory");
        return EXIT_IO;
    }
    for (uint32_t l = 0; l < j->g.n_layers; l++) sqkv_synth_generate(s, l, layer_k(j, l), layer_v(j, l));
    sqkv_synth_destroy(s);
    return EXIT_OK;
}

static int load_dense(bench_job *j, const char *path, const cli_ctx *ctx) {
    dense_input in;
    sqt_error err;
    sqt_error_clear(&err);
    int rc = EXIT_OK;
    if (dense_input_open(path, ctx, &in, &err)) rc = cli_report_io(NULL, &err);
    if (!rc) {
        j->g.n_layers = in.n_layers;
        j->g.n_kv_heads = in.n_heads;
        j->g.head_dim = in.head_dim;
        j->g.n_tokens = in.n_tokens;
        j->g.value_dtype = in.dtype == SQT_BF16 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        snprintf(j->source, sizeof j->source, "%s (%s, %s)", strcmp(path, "-") ? path : "(stdin)", in.form,
                 sqt_dtype_name(in.dtype));
        rc = alloc_cache(j);
    }
    float *tmp = NULL;
    if (!rc && in.dtype == SQT_F32 && (tmp = malloc(j->tensor_elems * sizeof *tmp)) == NULL) {
        cli_error("bench: out of memory");
        rc = EXIT_IO;
    }
    for (uint32_t l = 0; l < j->g.n_layers && !rc; l++) {
        for (int t = 0; t < 2; t++) {
            const uint8_t *src = (t ? in.v : in.k)[l];
            uint16_t *dst = t ? layer_v(j, l) : layer_k(j, l);
            if (in.dtype == SQT_F32) {
                sqt_convert_to_f32(SQT_F32, src, j->tensor_elems, tmp);
                sqt_convert_from_f32(tmp, j->tensor_elems, SQT_F16, dst);
            } else {
                memcpy(dst, src, j->tensor_elems * 2);
            }
        }
    }
    free(tmp);
    dense_input_close(&in);
    return rc;
}

/* Largest number of nonzero elements in one token row of the sparse region (layer 0, K and V). */
static uint32_t kept_per_row(const bench_job *j) {
    const uint32_t d = j->g.head_dim, sparse = j->g.n_tokens - j->g.dense_window;
    uint32_t most = 0;
    for (int t = 0; t < 2; t++) {
        const uint16_t *x = t ? layer_v(j, 0) : layer_k(j, 0);
        for (uint32_t h = 0; h < j->g.n_kv_heads; h++)
            for (uint32_t tok = 0; tok < sparse; tok++) {
                const uint16_t *row = x + ((size_t)h * j->g.n_tokens + tok) * d;
                uint32_t n = 0;
                for (uint32_t c = 0; c < d; c++) n += (row[c] & 0x7FFFu) != 0;
                if (n > most) most = n;
            }
    }
    return most;
}

static int load_sqkv(bench_job *j, const char *path, const cli_ctx *ctx) {
    cli_sqkv in;
    int rc = cli_sqkv_open(path, ctx, 0, &in);
    if (rc) return rc;
    j->g = in.geometry;
    snprintf(j->source, sizeof j->source, "%s (.sqkv, decoded to %s and re-encoded)", in.name, cli_dtype_name(j->g.value_dtype));
    rc = alloc_cache(j);
    for (uint32_t l = 0; l < j->g.n_layers && !rc; l++)
        for (int t = 0; t < 2 && !rc; t++) {
            sqkv_error e = sqkv_reader_decode(in.reader, l, (sqkv_tensor)t, 0, j->g.n_kv_heads, j->g.value_dtype,
                                              t ? layer_v(j, l) : layer_k(j, l), j->tensor_elems * 2);
            if (e) rc = cli_report(in.name, e, sqkv_reader_error_detail(in.reader));
        }
    if (!rc) {
        file_options fo;
        cli_sqkv_options(&in, &fo);
        encode_settings_adopt(&j->enc, &fo, &j->g, kept_per_row(j));
    }
    cli_sqkv_close(&in);
    return rc;
}

static double median_of(double *samples, uint32_t n) { return sqkv_median(samples, n); }

static int bench_memcpy(bench_job *j, uint8_t *scratch, bench_row *row, double *samples) {
    const size_t n = (size_t)cache_bytes(j);
    snprintf(row->name, sizeof row->name, "memcpy");
    row->size = n;
    for (uint32_t r = 0; r < j->runs; r++) {
        double t0 = sqkv_now();
        memcpy(scratch, j->cache, n);
        samples[r] = sqkv_now() - t0;
    }
    row->encode_s = row->decode_s = median_of(samples, j->runs);
    if (memcmp(scratch, j->cache, n) != 0) {
        cli_error("bench: memcpy copy differs (memory error?)");
        return EXIT_DATA;
    }
    return EXIT_OK;
}

static int bench_zstd(bench_job *j, uint8_t *scratch, bench_row *row, double *samples) {
    const size_t n = (size_t)cache_bytes(j), bound = ZSTD_compressBound(n);
    snprintf(row->name, sizeof row->name, "zstd -3");
    uint8_t *packed = malloc(bound);
    if (packed == NULL) {
        cli_error("bench: out of memory for zstd's %zu-byte output", bound);
        return EXIT_IO;
    }
    size_t size = 0;
    for (uint32_t r = 0; r < j->runs; r++) {
        double t0 = sqkv_now();
        size = ZSTD_compress(packed, bound, j->cache, n, 3);
        samples[r] = sqkv_now() - t0;
        if (ZSTD_isError(size)) {
            cli_error("bench: zstd compression failed: %s", ZSTD_getErrorName(size));
            free(packed);
            return EXIT_DATA;
        }
    }
    row->encode_s = median_of(samples, j->runs);
    row->size = size;
    for (uint32_t r = 0; r < j->runs; r++) {
        double t0 = sqkv_now();
        size_t out = ZSTD_decompress(scratch, n, packed, size);
        samples[r] = sqkv_now() - t0;
        if (ZSTD_isError(out) || out != n) {
            cli_error("bench: zstd decompression failed");
            free(packed);
            return EXIT_DATA;
        }
    }
    row->decode_s = median_of(samples, j->runs);
    free(packed);
    if (memcmp(scratch, j->cache, n) != 0) {
        cli_error("bench: zstd round trip differs");
        return EXIT_DATA;
    }
    return EXIT_OK;
}

/* One full encode into buf (capacity cap, or size query when buf is NULL). */
static int sqkv_encode_once(bench_job *j, uint8_t *buf, size_t cap, uint64_t *size) {
    sqkv_geometry g = j->g;
    g.dense_window = j->enc.dense_window;
    g.value_dtype = encode_settings_element_type(&j->enc, j->g.value_dtype == SQKV_DTYPE_BF16 ? SQT_BF16 : SQT_F16);
    sqkv_writer *w;
    sqkv_error e = sqkv_writer_create(&g, &j->enc.opts, &w);
    if (e) return cli_report("bench", e, "the geometry or the encoder options were refused");
    for (uint32_t l = 0; l < g.n_layers && !e; l++) e = sqkv_writer_add_layer(w, l, j->g.value_dtype, layer_k(j, l), layer_v(j, l));
    if (!e) e = sqkv_writer_file_size(w, size);
    size_t written;
    if (!e && buf) e = sqkv_writer_write_buffer(w, buf, cap, &written);
    int rc = e ? cli_report("bench: encode", e, sqkv_writer_error_detail(w)) : EXIT_OK;
    sqkv_writer_destroy(w);
    return rc;
}

static int sqkv_decode_once(bench_job *j, const uint8_t *file, size_t size, uint8_t *out) {
    sqkv_reader *r;
    sqkv_error e = sqkv_reader_create(NULL, 0, &r);
    if (!e) e = sqkv_reader_open_memory(r, file, size);
    const size_t tensor_bytes = j->tensor_elems * 2;
    for (uint32_t l = 0; l < j->g.n_layers && !e; l++)
        for (int t = 0; t < 2 && !e; t++)
            e = sqkv_reader_decode(r, l, (sqkv_tensor)t, 0, j->g.n_kv_heads, j->g.value_dtype,
                                   out + (2 * (size_t)l + t) * tensor_bytes, tensor_bytes);
    int rc = e ? cli_report("bench: decode", e, r ? sqkv_reader_error_detail(r) : "") : EXIT_OK;
    sqkv_reader_destroy(r);
    return rc;
}

static int bench_sqkv(bench_job *j, uint8_t *scratch, bench_row *row, double *samples, const cli_ctx *ctx) {
    const sqkv_writer_options *o = &j->enc.opts;
    if (o->quantizer == SQKV_QUANT_EXACT) snprintf(row->name, sizeof row->name, "sqkv exact");
    else snprintf(row->name, sizeof row->name, "sqkv %u-bit %s/%s", (unsigned)o->payload_bits,
                  o->quantizer == SQKV_QUANT_SYMMETRIC ? "sym" : "asym", cli_granularity_name(o->scales));
    uint64_t size;
    int rc = sqkv_encode_once(j, NULL, 0, &size);
    if (rc) return rc;
    uint8_t *file = malloc(size);
    if (file == NULL) {
        cli_error("bench: out of memory");
        return EXIT_IO;
    }
    cli_progress progress;
    cli_progress_start(&progress, ctx, "bench: sqkv");
    for (uint32_t r = 0; r < j->runs && !rc; r++) {
        double t0 = sqkv_now();
        rc = sqkv_encode_once(j, file, size, &row->size);
        samples[r] = sqkv_now() - t0;
        cli_progress_update(&progress, r + 1, 2 * (uint64_t)j->runs);
    }
    if (!rc) row->encode_s = median_of(samples, j->runs);
    for (uint32_t r = 0; r < j->runs && !rc; r++) {
        double t0 = sqkv_now();
        rc = sqkv_decode_once(j, file, size, scratch);
        samples[r] = sqkv_now() - t0;
        cli_progress_update(&progress, j->runs + r + 1, 2 * (uint64_t)j->runs);
    }
    cli_progress_end(&progress);
    if (!rc) row->decode_s = median_of(samples, j->runs);
    free(file);
    return rc;
}

static double mbs(uint64_t bytes, double s) { return s > 0 ? (double)bytes / s / 1e6 : 0.0; }

static void print_table(const bench_job *j) {
    const uint64_t n = cache_bytes(j);
    char a[32], desc[200];
    encode_settings_describe(&j->enc, desc, sizeof desc);
    printf("sqkv bench: %s\n", j->source);
    printf("cache      %u layers x %u KV heads x %u tokens x head_dim %u, %s as %s\n", j->g.n_layers, j->g.n_kv_heads,
           j->g.n_tokens, j->g.head_dim, sqkv_human_size(n, a, sizeof a), cli_dtype_name(j->g.value_dtype));
    printf("sqkv       %s\n", desc);
    printf("runs       %u per measurement, median; MB/s = 10^6 bytes of the 16-bit cache per second\n\n", j->runs);
    printf("%-24s %14s %10s %13s %13s\n", "method", "size (bytes)", "% of 16-bit", "encode MB/s", "decode MB/s");
    for (int i = 0; i < 3; i++) {
        const bench_row *r = &j->rows[i];
        printf("%-24s %14llu %9.2f%% %13.1f %13.1f\n", r->name, (unsigned long long)r->size,
               100.0 * (double)r->size / (double)n, mbs(n, r->encode_s), mbs(n, r->decode_s));
    }
}

static int print_json(const bench_job *j) {
    const uint64_t n = cache_bytes(j);
    sqt_strbuf b;
    sqt_strbuf_init(&b);
    sqt_strbuf_puts(&b, "{\"source\":");
    sqt_strbuf_json_string(&b, j->source, strlen(j->source));
    sqt_strbuf_printf(&b, ",\"n_layers\":%u,\"n_kv_heads\":%u,\"n_tokens\":%u,\"head_dim\":%u,\"bytes\":%llu,\"runs\":%u,"
                      "\"methods\":[", j->g.n_layers, j->g.n_kv_heads, j->g.n_tokens, j->g.head_dim,
                      (unsigned long long)n, j->runs);
    for (int i = 0; i < 3; i++) {
        const bench_row *r = &j->rows[i];
        sqt_strbuf_printf(&b, "%s{\"name\":", i ? "," : "");
        sqt_strbuf_json_string(&b, r->name, strlen(r->name));
        sqt_strbuf_printf(&b, ",\"size\":%llu,\"encode_mb_s\":%.3f,\"decode_mb_s\":%.3f,\"encode_s\":%.6f,\"decode_s\":%.6f}",
                          (unsigned long long)r->size, mbs(n, r->encode_s), mbs(n, r->decode_s), r->encode_s, r->decode_s);
    }
    sqt_strbuf_puts(&b, "]}\n");
    if (b.failed) {
        sqt_strbuf_free(&b);
        cli_error("out of memory");
        return EXIT_IO;
    }
    fwrite(b.data, 1, b.len, stdout);
    sqt_strbuf_free(&b);
    return EXIT_OK;
}

static int is_sqkv_file(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : NULL;
    unsigned char magic[5] = {0};
    int yes = f && fread(magic, 1, 5, f) == 5 && memcmp(magic, "\x89SQKV", 5) == 0;
    if (f) fclose(f);
    return yes;
}

static int parse_options(int argc, char **argv, cli_ctx *ctx, bench_job *j, const char **file, int *json) {
    static const cli_option options[] = {
        {"runs", 'r', 1, OPT_RUNS},       {"json", 0, 0, OPT_JSON},       {"layers", 0, 1, OPT_LAYERS},
        {"heads", 0, 1, OPT_HEADS},       {"head-dim", 0, 1, OPT_HEAD_DIM}, {"tokens", 0, 1, OPT_TOKENS},
        {"seed", 0, 1, OPT_SEED},         {"heavy-tailed", 0, 0, OPT_HEAVY}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "bench");
    cli_parser_add_table(&p, encode_option_table);
    const char *value;
    int id, applied;
    while ((id = cli_next(&p, &value)) != CLI_NEXT_END) {
        switch (id) {
        case CLI_NEXT_ERROR: return EXIT_USAGE;
        case CLI_OPT_HELP:
            fputs(help, stdout);
            fputs(encode_options_help, stdout);
            fputs("\n", stdout);
            fputs(cli_common_help, stdout);
            return -1;
        case CLI_NEXT_POSITIONAL:
            if (*file) {
                cli_error("bench: one FILE at a time (got '%s' and '%s')", *file, value);
                return EXIT_USAGE;
            }
            *file = value;
            break;
        case OPT_RUNS: if (cli_parse_u32("--runs", value, 1, 1000, &j->runs)) return EXIT_USAGE; break;
        case OPT_JSON: *json = 1; break;
        case OPT_LAYERS: if (cli_parse_u32("--layers", value, 1, 1024, &j->cfg.n_layers)) return EXIT_USAGE; break;
        case OPT_HEADS: if (cli_parse_u32("--heads", value, 1, 1024, &j->cfg.n_kv_heads)) return EXIT_USAGE; break;
        case OPT_HEAD_DIM: if (cli_parse_u32("--head-dim", value, 1, 1024, &j->cfg.head_dim)) return EXIT_USAGE; break;
        case OPT_TOKENS: if (cli_parse_u32("--tokens", value, 1, 1u << 28, &j->cfg.n_tokens)) return EXIT_USAGE; break;
        case OPT_SEED: if (cli_parse_u64("--seed", value, &j->cfg.seed)) return EXIT_USAGE; break;
        case OPT_HEAVY: j->cfg.heavy_tailed_values = 1; break;
        default:
            if ((applied = encode_settings_apply(&j->enc, id, value)) < 0) return EXIT_USAGE;
            if (!applied && cli_apply_common(ctx, id, value) < 0) return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

int cmd_bench(int argc, char **argv, cli_ctx *ctx) {
    bench_job j;
    memset(&j, 0, sizeof j);
    encode_settings_init(&j.enc);
    sqkv_synth_default(&j.cfg);
    j.runs = 5;
    const char *file = NULL;
    int json = 0;
    int rc = parse_options(argc, argv, ctx, &j, &file, &json);
    if (rc) {
        encode_settings_free(&j.enc);
        return rc < 0 ? EXIT_OK : rc;
    }
    if (file == NULL) rc = load_synthetic(&j);
    else if (is_sqkv_file(file)) rc = load_sqkv(&j, file, ctx);
    else rc = load_dense(&j, file, ctx);
    if (!rc && encode_settings_finish(&j.enc)) rc = EXIT_USAGE;
    if (!rc && j.enc.dense_window > j.g.n_tokens) {
        cli_error("--dense-window %u is larger than the cache's %u tokens", j.enc.dense_window, j.g.n_tokens);
        rc = EXIT_USAGE;
    }
    uint8_t *scratch = NULL;
    double *samples = malloc(j.runs * sizeof *samples);
    if (!rc && (samples == NULL || (scratch = malloc(cache_bytes(&j))) == NULL)) {
        cli_error("bench: out of memory");
        rc = EXIT_IO;
    }
    if (!rc) rc = bench_memcpy(&j, scratch, &j.rows[0], samples);
    if (!rc) rc = bench_zstd(&j, scratch, &j.rows[1], samples);
    if (!rc) rc = bench_sqkv(&j, scratch, &j.rows[2], samples, ctx);
    if (!rc) {
        if (json) rc = print_json(&j);
        else print_table(&j);
    }
    free(samples);
    free(scratch);
    free(j.cache);
    free(j.tokens);
    encode_settings_free(&j.enc);
    return rc;
}
