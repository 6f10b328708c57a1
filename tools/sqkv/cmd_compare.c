/* cmd_compare.c: `sqkv compare ORIGINAL COMPRESSED`: how far an .sqkv file is from the dense original. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/half.h"
#include "tools/common/kv_metrics.h"
#include "tools/common/strbuf.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/dense_input.h"
#include "tools/sqkv/progress.h"
#include "tools/sqkv/cli_sqkv.h"

static const char help[] =
    "Usage: sqkv compare [options] ORIGINAL COMPRESSED\n"
    "\n"
    "Measures the error of the .sqkv file COMPRESSED against the dense cache ORIGINAL (any input form\n"
    "of `sqkv encode`: PREFIX, FILE.npy, DIR, FILE.safetensors, -). Per layer and in total:\n"
    "  - relative L2 error ||restored - original|| / ||original|| of K and of V;\n"
    "  - maximum absolute error of K and of V;\n"
    "  - attention-output error: for random queries q ~ N(0, I) per layer and KV head,\n"
    "    O = softmax(q K^T / sqrt(head_dim)) V over all tokens, ||O' - O|| / ||O|| with O' from the\n"
    "    restored K and V (sums of squares over all queries);\n"
    "  - top-k agreement: the share of the k tokens with the highest original attention scores that are\n"
    "    also among the k highest restored scores.\n"
    "All arithmetic is fp32 (sums in fp64). The geometries must match (exit 1 otherwise).\n"
    "\n"
    "Options:\n"
    "      --queries N    random queries per layer and head (default 8; 0 skips the attention metrics)\n"
    "      --top-k K      k of the top-k agreement (default 32)\n"
    "      --seed S       seed of the random queries (default 1)\n"
    "      --json         print one JSON object instead of the table\n"
    "\n";

enum { OPT_QUERIES = 1, OPT_TOPK, OPT_SEED, OPT_JSON };

typedef struct layer_result {
    sqt_diff_stats k, v;
    sqt_attn_stats attn;
} layer_result;

typedef struct compare_job {
    dense_input orig;
    cli_sqkv comp;
    uint32_t queries, top_k;
    uint64_t seed;
    float *ko, *vo, *kr, *vr;
    layer_result *layers, total;
} compare_job;

static int check_geometry(const compare_job *j) {
    const sqkv_geometry *g = &j->comp.geometry;
    if (g->n_layers != j->orig.n_layers || g->n_kv_heads != j->orig.n_heads || g->n_tokens != j->orig.n_tokens ||
        g->head_dim != j->orig.head_dim) {
        cli_error("compare: geometries differ: original %u layers x %u heads x %u tokens x %u, compressed %u x %u x %u x %u",
                  j->orig.n_layers, j->orig.n_heads, j->orig.n_tokens, j->orig.head_dim, g->n_layers, g->n_kv_heads,
                  g->n_tokens, g->head_dim);
        return EXIT_DATA;
    }
    return EXIT_OK;
}

static int compare_layer(compare_job *j, uint32_t l) {
    const size_t n = (size_t)j->orig.n_heads * j->orig.n_tokens * j->orig.head_dim;
    sqt_convert_to_f32(j->orig.dtype, j->orig.k[l], n, j->ko);
    sqt_convert_to_f32(j->orig.dtype, j->orig.v[l], n, j->vo);
    for (int t = 0; t < 2; t++) {
        sqkv_error e = sqkv_reader_decode(j->comp.reader, l, (sqkv_tensor)t, 0, j->orig.n_heads, SQKV_DTYPE_FP32,
                                          t ? j->vr : j->kr, n * sizeof(float));
        if (e) {
            char what[512];
            snprintf(what, sizeof what, "%s: layer %u %s", j->comp.name, l, t ? "V" : "K");
            return cli_report(what, e, sqkv_reader_error_detail(j->comp.reader));
        }
    }
    layer_result *r = &j->layers[l];
    sqt_diff_init(&r->k);
    sqt_diff_init(&r->v);
    sqt_attn_init(&r->attn);
    sqt_diff_add(&r->k, j->ko, j->kr, n);
    sqt_diff_add(&r->v, j->vo, j->vr, n);
    const size_t per_head = (size_t)j->orig.n_tokens * j->orig.head_dim;
    for (uint32_t h = 0; h < j->orig.n_heads && j->queries; h++) {
        if (sqt_attn_compare_head(j->ko + h * per_head, j->vo + h * per_head, j->kr + h * per_head, j->vr + h * per_head,
                                  j->orig.n_tokens, j->orig.head_dim, j->queries, j->top_k,
                                  j->seed ^ ((uint64_t)l << 32) ^ h, &r->attn)) {
            cli_error("out of memory");
            return EXIT_IO;
        }
    }
    sqt_diff_merge(&j->total.k, &r->k);
    sqt_diff_merge(&j->total.v, &r->v);
    sqt_attn_merge(&j->total.attn, &r->attn);
    return EXIT_OK;
}

static void print_row(const char *label, const layer_result *r, uint32_t queries) {
    printf("%5s %10.6f %10.6f %11.5g %11.5g", label, sqt_diff_rel_l2(&r->k), sqt_diff_rel_l2(&r->v), r->k.max_abs,
           r->v.max_abs);
    if (queries) printf(" %12.6f %10.4f", sqt_attn_rel_error(&r->attn), sqt_attn_topk_agreement(&r->attn));
    printf("\n");
}

static void print_table(const compare_job *j, const char *orig_name) {
    printf("original     %s (%s, %s)\n", orig_name, j->orig.form, sqt_dtype_name(j->orig.dtype));
    printf("compressed   %s\n", j->comp.name);
    printf("geometry     %u layers x %u KV heads x %u tokens, head_dim %u\n", j->orig.n_layers, j->orig.n_heads,
           j->orig.n_tokens, j->orig.head_dim);
    if (j->queries)
        printf("attention    %u random N(0, I) queries per layer and head, softmax over all %u tokens\n", j->queries,
               j->orig.n_tokens);
    printf("\n%5s %10s %10s %11s %11s", "layer", "K rel L2", "V rel L2", "K max abs", "V max abs");
    char topk[32];
    snprintf(topk, sizeof topk, "top-%u agree", j->top_k < j->orig.n_tokens ? j->top_k : j->orig.n_tokens);
    if (j->queries) printf(" %12s %10s", "attn rel err", topk);
    printf("\n");
    for (uint32_t l = 0; l < j->orig.n_layers; l++) {
        char label[16];
        snprintf(label, sizeof label, "%u", l);
        print_row(label, &j->layers[l], j->queries);
    }
    print_row("all", &j->total, j->queries);
}

static void json_number(sqt_strbuf *b, double v) {
    if (isfinite(v)) sqt_strbuf_printf(b, "%.9g", v);
    else sqt_strbuf_puts(b, "null");
}

static void json_result(sqt_strbuf *b, const layer_result *r, uint32_t queries) {
    sqt_strbuf_puts(b, "\"k_rel_l2\":");
    json_number(b, sqt_diff_rel_l2(&r->k));
    sqt_strbuf_puts(b, ",\"v_rel_l2\":");
    json_number(b, sqt_diff_rel_l2(&r->v));
    sqt_strbuf_puts(b, ",\"k_max_abs\":");
    json_number(b, r->k.max_abs);
    sqt_strbuf_puts(b, ",\"v_max_abs\":");
    json_number(b, r->v.max_abs);
    if (queries) {
        sqt_strbuf_puts(b, ",\"attention_rel_error\":");
        json_number(b, sqt_attn_rel_error(&r->attn));
        sqt_strbuf_puts(b, ",\"topk_agreement\":");
        json_number(b, sqt_attn_topk_agreement(&r->attn));
    }
}

static int print_json(const compare_job *j, const char *orig_name) {
    sqt_strbuf b;
    sqt_strbuf_init(&b);
    sqt_strbuf_puts(&b, "{\"original\":");
    sqt_strbuf_json_string(&b, orig_name, strlen(orig_name));
    sqt_strbuf_puts(&b, ",\"compressed\":");
    sqt_strbuf_json_string(&b, j->comp.name, strlen(j->comp.name));
    sqt_strbuf_printf(&b, ",\"queries\":%u,\"top_k\":%u,\"total\":{", j->queries, j->top_k);
    json_result(&b, &j->total, j->queries);
    sqt_strbuf_puts(&b, "},\"layers\":[");
    for (uint32_t l = 0; l < j->orig.n_layers; l++) {
        sqt_strbuf_printf(&b, "%s{\"layer\":%u,", l ? "," : "", l);
        json_result(&b, &j->layers[l], j->queries);
        sqt_strbuf_puts(&b, "}");
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

static int run(compare_job *j, const cli_ctx *ctx) {
    int rc = check_geometry(j);
    if (rc) return rc;
    const size_t n = (size_t)j->orig.n_heads * j->orig.n_tokens * j->orig.head_dim;
    j->ko = malloc(n * sizeof(float));
    j->vo = malloc(n * sizeof(float));
    j->kr = malloc(n * sizeof(float));
    j->vr = malloc(n * sizeof(float));
    j->layers = calloc(j->orig.n_layers, sizeof *j->layers);
    if (!j->ko || !j->vo || !j->kr || !j->vr || !j->layers) {
        cli_error("out of memory");
        return EXIT_IO;
    }
    cli_progress progress;
    cli_progress_start(&progress, ctx, "compare");
    for (uint32_t l = 0; l < j->orig.n_layers && !rc; l++) {
        rc = compare_layer(j, l);
        cli_progress_update(&progress, l + 1, j->orig.n_layers);
    }
    cli_progress_end(&progress);
    return rc;
}

int cmd_compare(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option options[] = {{"queries", 0, 1, OPT_QUERIES}, {"top-k", 0, 1, OPT_TOPK},
                                         {"seed", 0, 1, OPT_SEED}, {"json", 0, 0, OPT_JSON}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "compare");
    compare_job j;
    memset(&j, 0, sizeof j);
    j.queries = 8;
    j.top_k = 32;
    j.seed = 1;
    const char *paths[2] = {NULL, NULL}, *value;
    int n_paths = 0, id, json = 0;
    while ((id = cli_next(&p, &value)) != CLI_NEXT_END) {
        if (id == CLI_NEXT_ERROR) return EXIT_USAGE;
        if (id == CLI_OPT_HELP) {
            fputs(help, stdout);
            fputs(cli_common_help, stdout);
            return EXIT_OK;
        }
        if (id == OPT_QUERIES) {
            if (cli_parse_u32("--queries", value, 0, 1u << 20, &j.queries)) return EXIT_USAGE;
        } else if (id == OPT_TOPK) {
            if (cli_parse_u32("--top-k", value, 1, 1u << 28, &j.top_k)) return EXIT_USAGE;
        } else if (id == OPT_SEED) {
            if (cli_parse_u64("--seed", value, &j.seed)) return EXIT_USAGE;
        } else if (id == OPT_JSON) {
            json = 1;
        } else if (id == CLI_NEXT_POSITIONAL) {
            if (n_paths == 2) {
                cli_error("compare: too many arguments ('%s'); expected ORIGINAL COMPRESSED", value);
                return EXIT_USAGE;
            }
            paths[n_paths++] = value;
        } else if (cli_apply_common(ctx, id, value) < 0) {
            return EXIT_USAGE;
        }
    }
    if (n_paths != 2) {
        cli_error("compare: expected ORIGINAL and COMPRESSED (see 'sqkv compare --help')");
        return EXIT_USAGE;
    }
    if (strcmp(paths[0], "-") == 0 && strcmp(paths[1], "-") == 0) {
        cli_error("compare: only one of ORIGINAL and COMPRESSED can be stdin");
        return EXIT_USAGE;
    }
    sqt_error err;
    sqt_error_clear(&err);
    int rc = EXIT_OK;
    if (dense_input_open(paths[0], ctx, &j.orig, &err)) rc = cli_report_io(NULL, &err);
    if (!rc) rc = cli_sqkv_open(paths[1], ctx, 0, &j.comp);
    if (!rc) rc = run(&j, ctx);
    const char *orig_name = strcmp(paths[0], "-") ? paths[0] : "(stdin)";
    if (!rc) {
        if (json) rc = print_json(&j, orig_name);
        else print_table(&j, orig_name);
        if (fflush(stdout) != 0 && !rc) {
            cli_error("compare: cannot write to stdout");
            rc = EXIT_IO;
        }
    }
    free(j.ko);
    free(j.vo);
    free(j.kr);
    free(j.vr);
    free(j.layers);
    dense_input_close(&j.orig);
    cli_sqkv_close(&j.comp);
    return rc;
}
