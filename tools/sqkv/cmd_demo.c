/* cmd_demo.c: `sqkv demo`: build a realistic synthetic KV cache, save it, restore it, check it, and
 * show what SQKV does to it (size, error, speed). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mmap, fsync, isatty, ... */
#endif
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common/half.h"
#include "tools/common/kv_metrics.h"
#include "tools/common/synthetic.h"
#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/encode_options.h"
#include "tools/sqkv/output_file.h"
#include "tools/sqkv/progress.h"
#include "tools/sqkv/cli_sqkv.h"

static const char help[] =
    "Usage: sqkv demo [options]\n"
    "\n"
    "Builds a synthetic KV cache with the geometry of Llama-3-8B (32 layers, 8 KV heads, head_dim 128,\n"
    "4096 tokens: 512 MiB as fp16), compresses it into an .sqkv file, reads the file back, verifies every\n"
    "checksum, and prints the fp16 size against the file size, the reconstruction error of K and V, the\n"
    "attention-output error, encode and decode throughput, and where the file is.\n"
    "\n"
    "The synthetic data model (deterministic from --seed):\n"
    "  keys    as cached after the rotary embedding. Before rotation, channel d of token t is\n"
    "          s_d * (b_d + z) with z ~ N(0,1), a per-channel bias b_d ~ N(0,1) and scale\n"
    "          s_d ~ exp(N(0, 0.3^2)), except head_dim/32 outlier channels (4 of 128) with scale 5..10,\n"
    "          placed in the low-frequency rotary pairs. Then rotary embedding, rotate-half convention,\n"
    "          theta 10000, position = token index.\n"
    "  values  sigma * z with z ~ N(0,1) and a per-head sigma ~ exp(N(0, 0.25^2)); with --heavy-tailed,\n"
    "          z is Student-t with 3 degrees of freedom scaled to unit variance.\n"
    "  tokens  ids uniform in [0, 128256); rounded to fp16 like a model's cache.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE          where to save the cache (default sqkv-demo.sqkv; never replaced without -f)\n"
    "      --layers N             layers (default 32)\n"
    "      --heads N              KV heads per layer (default 8)\n"
    "      --head-dim N           channels per head (default 128)\n"
    "      --tokens N             cached tokens (default 4096)\n"
    "      --seed S               seed of the synthetic data (default 1)\n"
    "      --heavy-tailed         Student-t values instead of Gaussian ones\n"
    "      --queries N            random queries per layer and head for the attention error (default 4)\n"
    "\n";

enum { OPT_OUTPUT = 1, OPT_LAYERS, OPT_HEADS, OPT_HEAD_DIM, OPT_TOKENS, OPT_SEED, OPT_HEAVY, OPT_QUERIES };

typedef struct demo_result {
    uint64_t file_size;
    double generate_s, encode_s, save_s, decode_s, verify_s;
    size_t n_sections;
    sqt_diff_stats k, v;
    sqt_attn_stats attn;
} demo_result;

typedef struct demo_job {
    sqkv_synth_config cfg;
    encode_settings enc;
    const char *path;
    uint32_t queries;
    sqkv_synth *synth;
    size_t tensor_elems;
    uint16_t *k, *v, *kr, *vr;  /* fp16 original and restored, one layer */
    float *f[4];                /* fp32 copies for the metrics */
    demo_result r;
} demo_job;

static int encode_and_save(demo_job *j, const cli_ctx *ctx) {
    sqkv_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = j->cfg.n_layers;
    g.n_kv_heads = j->cfg.n_kv_heads;
    g.head_dim = j->cfg.head_dim;
    g.n_tokens = j->cfg.n_tokens;
    g.dense_window = j->enc.dense_window;
    g.value_dtype = encode_settings_element_type(&j->enc, SQT_F16);
    if (g.dense_window > g.n_tokens) {
        cli_error("--dense-window %u is larger than --tokens %u", g.dense_window, g.n_tokens);
        return EXIT_USAGE;
    }
    sqkv_writer *w;
    sqkv_error e = sqkv_writer_create(&g, &j->enc.opts, &w);
    if (e) return cli_report("demo", e, "the geometry or the encoder options were refused");
    int32_t *tokens = malloc((size_t)j->cfg.n_tokens * sizeof *tokens);
    if (tokens == NULL) {
        sqkv_writer_destroy(w);
        cli_error("out of memory");
        return EXIT_IO;
    }
    sqkv_synth_tokens(&j->cfg, tokens);
    e = sqkv_writer_set_tokens(w, tokens, j->cfg.n_tokens);
    free(tokens);
    static const char fingerprint[] = "sqkv demo: synthetic model, Llama-3-8B KV geometry";
    if (!e) e = sqkv_writer_set_fingerprint(w, fingerprint, sizeof fingerprint - 1);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->cfg.seed);
    const char *model = j->cfg.heavy_tailed_values ? "synthetic (Llama-3-8B geometry, Student-t values)"
                                                   : "synthetic (Llama-3-8B geometry)";
    if (!e) e = sqkv_writer_add_metadata(w, "generator", 9, "sqkv demo", 9);
    if (!e) e = sqkv_writer_add_metadata(w, "model", 5, model, strlen(model));
    if (!e) e = sqkv_writer_add_metadata(w, "seed", 4, seed, strlen(seed));
    int rc = e ? cli_report("demo", e, sqkv_writer_error_detail(w)) : EXIT_OK;

    cli_progress progress;
    cli_progress_start(&progress, ctx, "demo: generate and encode");
    for (uint32_t l = 0; l < j->cfg.n_layers && !rc; l++) {
        double t0 = sqkv_now();
        sqkv_synth_generate(j->synth, l, j->k, j->v);
        double t1 = sqkv_now();
        e = sqkv_writer_add_layer(w, l, SQKV_DTYPE_FP16, j->k, j->v);
        j->r.generate_s += t1 - t0;
        j->r.encode_s += sqkv_now() - t1;
        if (e) rc = cli_report("demo: encode", e, sqkv_writer_error_detail(w));
        cli_progress_update(&progress, l + 1, j->cfg.n_layers);
    }
    cli_progress_end(&progress);
    if (!rc) {
        double t0 = sqkv_now();
        cli_output o;
        sqt_error err;
        sqt_error_clear(&err);
        if (cli_output_open(&o, j->path, ctx, &err)) {
            rc = cli_report_io(NULL, &err);
        } else {
            e = sqkv_writer_write_fd(w, o.fd);
            if (e) rc = cli_report(j->path, e, sqkv_writer_error_detail(w));
            else if (cli_output_commit(&o, &err)) rc = cli_report_io(NULL, &err);
            cli_output_abort(&o);
        }
        j->r.save_s = sqkv_now() - t0;
    }
    sqkv_writer_destroy(w);
    return rc;
}

static int restore_and_check(demo_job *j, const cli_ctx *ctx) {
    cli_sqkv in;
    int rc = cli_sqkv_open(j->path, ctx, 0, &in);
    if (rc) return rc;
    j->r.file_size = in.blob.size;
    j->r.n_sections = in.n_sections;
    double t0 = sqkv_now();
    sqkv_error e = sqkv_reader_verify(in.reader);
    j->r.verify_s = sqkv_now() - t0;
    if (e) rc = cli_report(in.name, e, sqkv_reader_error_detail(in.reader));
    const size_t n = j->tensor_elems, bytes = n * sizeof(uint16_t);
    const size_t per_head = (size_t)j->cfg.n_tokens * j->cfg.head_dim;
    cli_progress progress;
    cli_progress_start(&progress, ctx, "demo: decode and compare");
    for (uint32_t l = 0; l < j->cfg.n_layers && !rc; l++) {
        t0 = sqkv_now();
        e = sqkv_reader_decode(in.reader, l, SQKV_TENSOR_K, 0, j->cfg.n_kv_heads, SQKV_DTYPE_FP16, j->kr, bytes);
        if (!e) e = sqkv_reader_decode(in.reader, l, SQKV_TENSOR_V, 0, j->cfg.n_kv_heads, SQKV_DTYPE_FP16, j->vr, bytes);
        j->r.decode_s += sqkv_now() - t0;
        if (e) {
            rc = cli_report(in.name, e, sqkv_reader_error_detail(in.reader));
            break;
        }
        sqkv_synth_generate(j->synth, l, j->k, j->v);
        sqt_convert_to_f32(SQT_F16, j->k, n, j->f[0]);
        sqt_convert_to_f32(SQT_F16, j->v, n, j->f[1]);
        sqt_convert_to_f32(SQT_F16, j->kr, n, j->f[2]);
        sqt_convert_to_f32(SQT_F16, j->vr, n, j->f[3]);
        sqt_diff_add(&j->r.k, j->f[0], j->f[2], n);
        sqt_diff_add(&j->r.v, j->f[1], j->f[3], n);
        for (uint32_t h = 0; h < j->cfg.n_kv_heads && j->queries; h++) {
            const size_t at = h * per_head;
            if (sqt_attn_compare_head(j->f[0] + at, j->f[1] + at, j->f[2] + at, j->f[3] + at, j->cfg.n_tokens,
                                      j->cfg.head_dim, j->queries, 32, ((uint64_t)l << 32) ^ h, &j->r.attn)) {
                cli_error("out of memory");
                rc = EXIT_IO;
                break;
            }
        }
        cli_progress_update(&progress, l + 1, j->cfg.n_layers);
    }
    cli_progress_end(&progress);
    cli_sqkv_close(&in);
    return rc;
}

static double mb_per_s(uint64_t bytes, double seconds) { return seconds > 0 ? (double)bytes / seconds / 1e6 : 0.0; }

static void print_result(const demo_job *j) {
    const demo_result *r = &j->r;
    const uint64_t fp16 = 4ull * j->tensor_elems * j->cfg.n_layers;
    char a[32], b[32], desc[200], where[PATH_MAX];
    encode_settings_describe(&j->enc, desc, sizeof desc);
    const int default_geometry = j->cfg.n_layers == 32 && j->cfg.n_kv_heads == 8 && j->cfg.head_dim == 128 &&
                                 j->cfg.n_tokens == 4096;
    printf("sqkv demo: a synthetic KV cache%s, saved, restored and checked\n\n",
           default_geometry ? " with Llama-3-8B geometry" : "");
    printf("cache        %u layers x %u KV heads x %u tokens x head_dim %u, K and V (synthetic, seed %llu%s)\n",
           j->cfg.n_layers, j->cfg.n_kv_heads, j->cfg.n_tokens, j->cfg.head_dim, (unsigned long long)j->cfg.seed,
           j->cfg.heavy_tailed_values ? ", Student-t values" : "");
    printf("encoding     %s\n", desc);
    printf("fp16 size    %s (%llu bytes)\n", sqkv_human_size(fp16, a, sizeof a), (unsigned long long)fp16);
    printf("file size    %s (%llu bytes): %.2f%% of fp16, %.3f bits per element\n",
           sqkv_human_size(r->file_size, b, sizeof b), (unsigned long long)r->file_size,
           100.0 * (double)r->file_size / (double)fp16, 8.0 * (double)r->file_size / (double)(fp16 / 2));
    printf("K error      relative L2 %.4f, max abs %.4g\n", sqt_diff_rel_l2(&r->k), r->k.max_abs);
    printf("V error      relative L2 %.4f, max abs %.4g\n", sqt_diff_rel_l2(&r->v), r->v.max_abs);
    if (j->queries)
        printf("attention    output relative error %.4f, top-%u agreement %.1f%% (%u random queries per head)\n",
               sqt_attn_rel_error(&r->attn), j->cfg.n_tokens < 32 ? j->cfg.n_tokens : 32,
               100.0 * sqt_attn_topk_agreement(&r->attn), j->queries);
    printf("encode       %.0f MB/s of fp16 (%.2f s)\n", mb_per_s(fp16, r->encode_s), r->encode_s);
    printf("decode       %.0f MB/s of fp16 (%.2f s)\n", mb_per_s(fp16, r->decode_s), r->decode_s);
    printf("verify       OK: %zu sections, every checksum matches (%.2f s, %.0f MB/s of file)\n", r->n_sections,
           r->verify_s, mb_per_s(r->file_size, r->verify_s));
    if (j->path[0] != '/' && getcwd(where, sizeof where) != NULL && strlen(where) + strlen(j->path) + 2 <= sizeof where) {
        strcat(where, "/");
        strcat(where, j->path);
    } else {
        snprintf(where, sizeof where, "%s", j->path);
    }
    printf("file         %s\n", where);
    printf("\nnext: sqkv info %s    sqkv verify %s    sqkv decode %s restored.safetensors\n", j->path, j->path, j->path);
}

static int parse_options(int argc, char **argv, cli_ctx *ctx, demo_job *j) {
    static const cli_option options[] = {
        {"output", 'o', 1, OPT_OUTPUT}, {"layers", 0, 1, OPT_LAYERS},     {"heads", 0, 1, OPT_HEADS},
        {"head-dim", 0, 1, OPT_HEAD_DIM}, {"tokens", 0, 1, OPT_TOKENS},   {"seed", 0, 1, OPT_SEED},
        {"heavy-tailed", 0, 0, OPT_HEAVY}, {"queries", 0, 1, OPT_QUERIES}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "demo");
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
        case CLI_NEXT_POSITIONAL: cli_error("demo: unexpected argument '%s' (see 'sqkv demo --help')", value); return EXIT_USAGE;
        case OPT_OUTPUT: j->path = value; break;
        case OPT_LAYERS: if (cli_parse_u32("--layers", value, 1, 1024, &j->cfg.n_layers)) return EXIT_USAGE; break;
        case OPT_HEADS: if (cli_parse_u32("--heads", value, 1, 1024, &j->cfg.n_kv_heads)) return EXIT_USAGE; break;
        case OPT_HEAD_DIM: if (cli_parse_u32("--head-dim", value, 1, 1024, &j->cfg.head_dim)) return EXIT_USAGE; break;
        case OPT_TOKENS: if (cli_parse_u32("--tokens", value, 1, 1u << 28, &j->cfg.n_tokens)) return EXIT_USAGE; break;
        case OPT_SEED: if (cli_parse_u64("--seed", value, &j->cfg.seed)) return EXIT_USAGE; break;
        case OPT_HEAVY: j->cfg.heavy_tailed_values = 1; break;
        case OPT_QUERIES: if (cli_parse_u32("--queries", value, 0, 1u << 20, &j->queries)) return EXIT_USAGE; break;
        default:
            if ((applied = encode_settings_apply(&j->enc, id, value)) < 0) return EXIT_USAGE;
            if (!applied && cli_apply_common(ctx, id, value) < 0) return EXIT_USAGE;
        }
    }
    return encode_settings_finish(&j->enc) ? EXIT_USAGE : EXIT_OK;
}

int cmd_demo(int argc, char **argv, cli_ctx *ctx) {
    demo_job j;
    memset(&j, 0, sizeof j);
    sqkv_synth_default(&j.cfg);
    encode_settings_init(&j.enc);
    j.path = "sqkv-demo.sqkv";
    j.queries = 4;
    int rc = parse_options(argc, argv, ctx, &j);
    if (rc) {
        encode_settings_free(&j.enc);
        return rc < 0 ? EXIT_OK : rc;
    }
    sqt_error err;
    sqt_error_clear(&err);
    if (strcmp(j.path, "-") == 0) {
        cli_error("demo: the demo reads its file back; give a file name with -o, not stdout");
        rc = EXIT_USAGE;
    } else if (cli_output_check(j.path, ctx, &err)) {
        rc = cli_report_io(NULL, &err);
    }
    if (!rc) {
        j.tensor_elems = (size_t)j.cfg.n_kv_heads * j.cfg.n_tokens * j.cfg.head_dim;
        j.synth = sqkv_synth_create(&j.cfg);
        j.k = malloc(j.tensor_elems * 2);
        j.v = malloc(j.tensor_elems * 2);
        j.kr = malloc(j.tensor_elems * 2);
        j.vr = malloc(j.tensor_elems * 2);
        for (int i = 0; i < 4; i++) j.f[i] = malloc(j.tensor_elems * sizeof(float));
        if (!j.synth || !j.k || !j.v || !j.kr || !j.vr || !j.f[0] || !j.f[1] || !j.f[2] || !j.f[3]) {
            cli_error("demo: out of memory");
            rc = EXIT_IO;
        }
    }
    if (!rc) rc = encode_and_save(&j, ctx);
    if (!rc) rc = restore_and_check(&j, ctx);
    if (!rc) {
        print_result(&j);
        cli_note(ctx, 2, "generating the synthetic cache took %.2f s, saving the file %.2f s", j.r.generate_s,
                 j.r.save_s);
    }
    sqkv_synth_destroy(j.synth);
    free(j.k);
    free(j.v);
    free(j.kr);
    free(j.vr);
    for (int i = 0; i < 4; i++) free(j.f[i]);
    encode_settings_free(&j.enc);
    return rc;
}
