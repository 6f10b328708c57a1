/*
 * sqkv_stream_bench: the measurements of the entropy / streaming / random-access issue, as markdown.
 *
 *   sqkv_stream_bench [--tokens N] [--layers N] [--kv-dir DIR] [--levels 1,3,9] [--reps R]
 *                     [--throughput-levels 0,3] [--no-synthetic]
 *
 * Caches: the synthetic Llama-3-8B-shaped cache (tools/common/synthetic.h; 32 layers, 8 KV heads,
 * head_dim 128, --tokens tokens, dense window 128) and, with --kv-dir, the real caches NAME.{k,v,tokens}.npy
 * listed in shared/data/kv (dense window 64). For each payload setting: file size at each zstd level
 * and per stream; for the default setting: encode, whole-buffer decode and streaming decode throughput
 * (4 KiB, 64 KiB, 1 MiB chunks) with and without zstd, and the bytes a one-layer random access reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "sqkv.h"
#include "tools/common/io_error.h"
#include "tools/common/kv_npy_cache.h"
#include "tools/common/synthetic.h"

#define MAX_LEVELS 8

typedef struct setting {
    const char *name;
    uint32_t bits;
    sqkv_quantizer q;
    sqkv_scale_granularity s;
} setting;

static const setting SETTINGS[] = {
    {"2-bit symmetric, per-head scales (default)", 2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD},
    {"4-bit asymmetric, per-tile scales", 4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE},
    {"16-bit exact", 16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE},
};
#define N_SETTINGS (sizeof SETTINGS / sizeof SETTINGS[0])

typedef struct config {
    uint32_t tokens, layers;
    const char *kv_dir;
    uint32_t levels[MAX_LEVELS], n_levels;
    uint32_t tp_levels[MAX_LEVELS], n_tp_levels;
    int reps, synthetic;
} config;

static int parse_levels(const char *text, uint32_t *out, uint32_t *n) {
    *n = 0;
    char *end;
    while (*text && *n < MAX_LEVELS) {
        const unsigned long v = strtoul(text, &end, 10);
        if (end == text || v > 22) return -1;
        out[(*n)++] = (uint32_t)v;
        text = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *n ? 0 : -1;
}

static sqkv_writer_options options(const setting *s, uint32_t level) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = s->bits;
    o.quantizer = s->q;
    o.scales = s->s;
    o.zstd_level = level;
    return o;
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0.0; }
static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

static void size_tables(const sb_cache *c, const config *cfg, uint8_t **plain_default, size_t *plain_default_size) {
    printf("\n#### %s: file size by zstd level\n\n| setting | zstd off |", c->name);
    for (uint32_t i = 0; i < cfg->n_levels; i++) printf(" level %u |", cfg->levels[i]);
    printf("\n|---|---|");
    for (uint32_t i = 0; i < cfg->n_levels; i++) printf("---|");
    printf("\n");
    for (size_t s = 0; s < N_SETTINGS; s++) {
        uint8_t *plain = NULL;
        size_t plain_size = 0;
        double secs;
        sqkv_writer_options o = options(&SETTINGS[s], 0);
        if (sb_encode(c, &o, 1, &plain, &plain_size, &secs)) exit(1);
        printf("| %s | %.2f MiB |", SETTINGS[s].name, mib(plain_size));
        for (uint32_t i = 0; i < cfg->n_levels; i++) {
            uint8_t *f = NULL;
            size_t n = 0;
            o.zstd_level = cfg->levels[i];
            if (sb_encode(c, &o, 1, &f, &n, &secs)) exit(1);
            printf(" %.2f MiB (%.1f%%) |", mib(n), pct(n, plain_size));
            free(f);
        }
        printf("\n");
        fflush(stdout);
        /* Per-stream breakdown at the middle level listed. */
        const uint32_t level = cfg->levels[cfg->n_levels > 1 ? 1 : 0];
        sb_streams st;
        if (sb_streams_at(plain, plain_size, level, &st)) exit(1);
        fprintf(stderr, "%s / %s: per stream at level %u\n", c->name, SETTINGS[s].name, level);
        static char rows[N_SETTINGS][4096];
        int at = 0;
        for (int k = 0; k < SB_KINDS; k++) {
            if (!st.raw[k]) continue;
            at += snprintf(rows[s] + at, sizeof rows[s] - (size_t)at,
                           "| %s | %s | %.3f MiB | %.1f%% | %.3f MiB (%.1f%%) | %.3f MiB (%.1f%%) |\n", SETTINGS[s].name,
                           sb_kind_names[k], mib(st.raw[k]), pct(st.raw[k], plain_size), mib(st.zstd[k]),
                           pct(st.zstd[k], st.raw[k]), mib(st.stored[k]), pct(st.stored[k], st.raw[k]));
        }
        if (s == 0) {
            *plain_default = plain;
            *plain_default_size = plain_size;
        } else {
            free(plain);
        }
        if (s + 1 == N_SETTINGS) {
            printf("\n#### %s: per stream, zstd level %u\n\n", c->name, level);
            printf("Sizes include section headers (counted with the payload, or the body for one-stream kinds) "
                   "and stream padding. *zstd alone*: every stream compressed, kept or not (padded frame + stream "
                   "table). *Stored*: what the writer's rule keeps (§5.1).\n\n");
            printf("| setting | stream | size, zstd off | share of file | zstd alone | stored |\n|---|---|---|---|---|---|\n");
            for (size_t k = 0; k < N_SETTINGS; k++) printf("%s", rows[k]);
        }
    }
}

static void throughput(const sb_cache *c, const config *cfg, const uint8_t *plain, size_t plain_size) {
    const uint64_t elems = 2ull * c->n_layers * c->n_kv_heads * c->n_tokens * c->head_dim;
    const double gb = (double)elems * 2 / 1e9; /* fp16 bytes of the cache */
    uint16_t *out = malloc((size_t)elems * 2);
    if (!out) exit(1);
    memset(out, 0, (size_t)elems * 2); /* page faults of the first touch are not decoding */
    printf("\n#### %s: throughput (default setting; GB/s of fp16 cache = %.3f GB; median of %d)\n\n", c->name, gb,
           cfg->reps);
    printf("| zstd | file | encode | decode, whole buffer | stream 4 KiB | stream 64 KiB | stream 1 MiB | stream 64 KiB / whole |"
           " stream 64 KiB, copying |\n|---|---|---|---|---|---|---|---|---|\n");
    for (uint32_t i = 0; i < cfg->n_tp_levels; i++) {
        sqkv_writer_options o = options(&SETTINGS[0], cfg->tp_levels[i]);
        uint8_t *f = NULL;
        size_t n = 0;
        double enc, whole, s4, s64, s1m, s64c;
        if (sb_encode(c, &o, cfg->reps, &f, &n, &enc)) exit(1);
        if (sb_decode_whole(f, n, out, cfg->reps, &whole) || sb_decode_stream(f, n, 4096, 0, out, cfg->reps, &s4) ||
            sb_decode_stream(f, n, 65536, 0, out, cfg->reps, &s64) ||
            sb_decode_stream(f, n, 1 << 20, 0, out, cfg->reps, &s1m) ||
            sb_decode_stream(f, n, 65536, 1, out, cfg->reps, &s64c))
            exit(1);
        char label[16];
        snprintf(label, sizeof label, cfg->tp_levels[i] ? "level %u" : "off", cfg->tp_levels[i]);
        printf("| %s | %.2f MiB | %.2f GB/s | %.2f GB/s | %.2f GB/s | %.2f GB/s | %.2f GB/s | %.1f%% | %.2f GB/s |\n",
               label, mib(n), gb / enc, gb / whole, gb / s4, gb / s64, gb / s1m, 100.0 * whole / s64, gb / s64c);
        fflush(stdout);
        free(f);
    }
    uint64_t bytes = 0, index = 0;
    const uint32_t layer = c->n_layers / 2;
    if (sb_random_access(plain, plain_size, layer, &bytes, &index)) exit(1);
    printf("\n#### %s: one-layer random access (layer %u, K and V, all heads; zstd off)\n\n", c->name, layer);
    printf("| file | file / L | index section | bytes read | read / (file / L + index) |\n|---|---|---|---|---|\n");
    printf("| %llu | %llu | %llu | %llu | %.1f%% |\n", (unsigned long long)plain_size,
           (unsigned long long)(plain_size / c->n_layers), (unsigned long long)index, (unsigned long long)bytes,
           pct(bytes, plain_size / c->n_layers + index));
    free(out);
}

static void run(const sb_cache *c, const config *cfg) {
    printf("\n### %s: %u layers, %u KV heads, head_dim %u, %u tokens, dense window %u\n", c->name, c->n_layers,
           c->n_kv_heads, c->head_dim, c->n_tokens, c->dense_window);
    uint8_t *plain = NULL;
    size_t plain_size = 0;
    size_tables(c, cfg, &plain, &plain_size);
    throughput(c, cfg, plain, plain_size);
    free(plain);
}

int main(int argc, char **argv) {
    config cfg = {4096, 32, NULL, {1, 3, 9}, 3, {0, 3}, 2, 3, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tokens") && v) cfg.tokens = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--layers") && v) cfg.layers = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--kv-dir") && v) cfg.kv_dir = argv[++i];
        else if (!strcmp(a, "--reps") && v) cfg.reps = atoi(argv[++i]);
        else if (!strcmp(a, "--levels") && v) {
            if (parse_levels(argv[++i], cfg.levels, &cfg.n_levels)) goto usage;
        } else if (!strcmp(a, "--throughput-levels") && v) {
            if (parse_levels(argv[++i], cfg.tp_levels, &cfg.n_tp_levels)) goto usage;
        } else if (!strcmp(a, "--no-synthetic")) cfg.synthetic = 0;
        else goto usage;
    }
    if (cfg.reps < 1 || cfg.reps > 16 || cfg.tokens < 129 || cfg.layers < 1) goto usage;
    printf("## sqkv_stream_bench\n");
    if (cfg.synthetic) {
        sqkv_synth_config sc;
        sqkv_synth_default(&sc);
        sc.n_tokens = cfg.tokens;
        sc.n_layers = cfg.layers;
        sqkv_synth *g = sqkv_synth_create(&sc);
        const uint64_t per_layer = (uint64_t)sc.n_kv_heads * sc.n_tokens * sc.head_dim;
        uint16_t *k = malloc((size_t)(per_layer * sc.n_layers * 2)), *v = malloc((size_t)(per_layer * sc.n_layers * 2));
        int32_t *tokens = malloc(sc.n_tokens * sizeof(int32_t));
        if (!g || !k || !v || !tokens) return 1;
        for (uint32_t l = 0; l < sc.n_layers; l++) sqkv_synth_generate(g, l, k + l * per_layer, v + l * per_layer);
        sqkv_synth_tokens(&sc, tokens);
        sqkv_synth_destroy(g);
        const sb_cache c = {"synthetic Llama-3-8B", sc.n_layers, sc.n_kv_heads, sc.head_dim, sc.n_tokens, 128, k, v, tokens};
        run(&c, &cfg);
        free(k);
        free(v);
        free(tokens);
    }
    if (cfg.kv_dir) {
        static const char *const names[] = {"py_json_decoder", "man_bash"};
        for (size_t i = 0; i < 2; i++) {
            sqkv_npy_cache nc;
            sqt_error err;
            sqt_error_clear(&err);
            if (sqkv_npy_cache_load(cfg.kv_dir, names[i], &nc, &err)) {
                fprintf(stderr, "sqkv_stream_bench: %s\n", err.message);
                return 1;
            }
            const sb_cache c = {names[i], nc.n_layers, nc.n_kv_heads, nc.head_dim, nc.n_tokens, 64, nc.k, nc.v, nc.tokens};
            run(&c, &cfg);
            sqkv_npy_cache_free(&nc);
        }
    }
    return 0;
usage:
    fprintf(stderr, "usage: sqkv_stream_bench [--tokens N>128] [--layers N] [--kv-dir DIR] [--levels 1,3,9]\n"
                    "                         [--throughput-levels 0,3] [--reps 1..16] [--no-synthetic]\n");
    return 2;
}
